/*
 * test_server_auth.c
 *    pgturbo logging in to PostgreSQL with the password of its [databases] entry, for each
 *    method PostgreSQL may ask: scram-sha-256, md5 and password (cleartext). The test cluster's
 *    pg_hba.conf requires these methods for the roles pgturbo_scram, pgturbo_md5 and
 *    pgturbo_plain (tests/harness/cluster.sh).
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int setup(void **state)
{
    PGconn *c = harness_connect_direct("postgres");
    harness_silence_notices(c);
    harness_exec_ok(c, "DROP ROLE IF EXISTS pgturbo_scram");
    harness_exec_ok(c, "DROP ROLE IF EXISTS pgturbo_md5");
    harness_exec_ok(c, "DROP ROLE IF EXISTS pgturbo_plain");
    harness_exec_ok(c, "SET password_encryption = 'scram-sha-256'");
    harness_exec_ok(c, "CREATE ROLE pgturbo_scram LOGIN PASSWORD 'scram secret'");
    harness_exec_ok(c, "CREATE ROLE pgturbo_plain LOGIN PASSWORD 'plain secret'");
    harness_exec_ok(c, "SET password_encryption = 'md5'");
    harness_exec_ok(c, "CREATE ROLE pgturbo_md5 LOGIN PASSWORD 'md5 secret'");
    PQfinish(c);
    return 0;
}

/* Starts pgturbo with a database "target" logging in as user with password. */
static void start_with(pgturbo_proc_t *p, const char *user, const char *password)
{
    char db[512];
    snprintf(db, sizeof(db),
             "target = host=127.0.0.1 port=%d dbname=postgres user=%s password='%s'\n",
             harness_pg_port(), user, password);
    harness_start_pgturbo(p, "pool_mode = transaction\n", db);
}

static void logs_in_as(const char *user, const char *password)
{
    pgturbo_proc_t p;
    start_with(&p, user, password);
    PGconn *c = harness_connect(p.port, "target", NULL);
    char *who = harness_query_value(c, "SELECT current_user");
    assert_string_equal(who, user);
    free(who);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_scram_sha_256_login(void **state)
{
    logs_in_as("pgturbo_scram", "scram secret");
}

static void test_md5_login(void **state)
{
    logs_in_as("pgturbo_md5", "md5 secret");
}

static void test_cleartext_password_login(void **state)
{
    logs_in_as("pgturbo_plain", "plain secret");
}

static void wrong_password_is_refused(const char *user)
{
    pgturbo_proc_t p;
    start_with(&p, user, "wrong");
    PGconn *c = harness_try_connect(p.port, "target", NULL);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    char expected[128];
    snprintf(expected, sizeof(expected), "password authentication failed for user \"%s\"", user);
    assert_non_null(strstr(PQerrorMessage(c), expected));
    PQfinish(c);
    PGconn *ok = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(ok, "SELECT 1");
    PQfinish(ok);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_wrong_password_is_refused_scram(void **state)
{
    wrong_password_is_refused("pgturbo_scram");
}

static void test_wrong_password_is_refused_md5(void **state)
{
    wrong_password_is_refused("pgturbo_md5");
}

static void test_missing_password_is_refused(void **state)
{
    pgturbo_proc_t p;
    char db[256];
    snprintf(db, sizeof(db), "target = host=127.0.0.1 port=%d dbname=postgres user=pgturbo_scram\n",
             harness_pg_port());
    harness_start_pgturbo(&p, "pool_mode = transaction\n", db);
    PGconn *c = harness_try_connect(p.port, "target", NULL);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_non_null(
        strstr(PQerrorMessage(c), "the server asks for a password and pgturbo has none"));
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scram_sha_256_login),
        cmocka_unit_test(test_md5_login),
        cmocka_unit_test(test_cleartext_password_login),
        cmocka_unit_test(test_wrong_password_is_refused_scram),
        cmocka_unit_test(test_wrong_password_is_refused_md5),
        cmocka_unit_test(test_missing_password_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
