/*
 * test_auth_query.c
 *    auth_query: users that auth_file does not list are looked up in PostgreSQL as auth_user,
 *    with PgBouncer's default query on pg_shadow or a query of the user's own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROLE     "pgturbo_aq"
#define PASSWORD "aq-secret"

static int setup(void **state)
{
    PGconn *c = harness_connect_direct("postgres");
    harness_exec_ok(c, "SET password_encryption = 'scram-sha-256'");
    harness_exec_ok(c, "DROP ROLE IF EXISTS " ROLE);
    harness_exec_ok(c, "CREATE ROLE " ROLE " LOGIN PASSWORD '" PASSWORD "'");
    PQfinish(c);
    return 0;
}

static int teardown(void **state)
{
    PGconn *c = harness_connect_direct("postgres");
    harness_exec_ok(c, "DROP ROLE IF EXISTS " ROLE);
    PQfinish(c);
    return 0;
}

static PGconn *login(int port, const char *user, const char *password)
{
    char extra[200];
    snprintf(extra, sizeof(extra), "user=%s password=%s", user, password);
    return harness_try_connect(port, "postgres", extra);
}

static void start(pgturbo_proc_t *p, const char *auth_type, const char *query)
{
    char ini[512];
    snprintf(ini, sizeof(ini), "auth_type = %s\nauth_user = postgres\n%s%s%s", auth_type,
             query != NULL ? "auth_query = " : "", query != NULL ? query : "",
             query != NULL ? "\n" : "");
    harness_start_pgturbo(p, ini, NULL);
}

static void test_scram_login_with_the_secret_from_pg_shadow(void **state)
{
    pgturbo_proc_t p;
    start(&p, "scram-sha-256", NULL);
    PGconn *c = login(p.port, ROLE, PASSWORD);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    char *user = harness_query_value(c, "SELECT current_user");
    assert_string_equal(user, ROLE);
    free(user);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_md5_auth_type_does_scram_for_a_scram_secret(void **state)
{
    pgturbo_proc_t p;
    start(&p, "md5", NULL);
    PGconn *c = login(p.port, ROLE, PASSWORD);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_wrong_password_and_unknown_user_fail_alike(void **state)
{
    pgturbo_proc_t p;
    start(&p, "scram-sha-256", NULL);
    PGconn *c = login(p.port, ROLE, "wrong");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_non_null(
        strstr(PQerrorMessage(c), "password authentication failed for user \"" ROLE "\""));
    PQfinish(c);
    c = login(p.port, "pgturbo_nobody", "wrong");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_non_null(
        strstr(PQerrorMessage(c), "password authentication failed for user \"pgturbo_nobody\""));
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_own_query_is_used(void **state)
{
    pgturbo_proc_t p;
    /* A query that knows the role under another password: only that one works. */
    start(&p, "plain", "SELECT $1::text, 'from-query'::text");
    PGconn *c = login(p.port, ROLE, PASSWORD);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    PQfinish(c);
    c = login(p.port, ROLE, "from-query");
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_failing_query_refuses_the_login_and_the_daemon_goes_on(void **state)
{
    pgturbo_proc_t p;
    start(&p, "scram-sha-256", "SELECT no_such_column FROM pg_shadow WHERE usename = $1");
    PGconn *c = login(p.port, ROLE, PASSWORD);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_non_null(strstr(PQerrorMessage(c), "auth_query failed"));
    PQfinish(c);
    assert_true(harness_pgturbo_alive(&p));
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_auth_file_user_skips_the_query(void **state)
{
    char dir[] = "/tmp/pgturbo-aq.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[300], ini[512];
    snprintf(path, sizeof(path), "%s/users.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "\"" ROLE "\" \"file-password\"\n");
    fclose(f);
    snprintf(ini, sizeof(ini),
             "auth_type = plain\nauth_user = postgres\nauth_file = %s\n"
             "auth_query = SELECT no_such_column FROM pg_shadow WHERE usename = $1\n",
             path);
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, ini, NULL);
    PGconn *c = login(p.port, ROLE, "file-password");
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scram_login_with_the_secret_from_pg_shadow),
        cmocka_unit_test(test_md5_auth_type_does_scram_for_a_scram_secret),
        cmocka_unit_test(test_wrong_password_and_unknown_user_fail_alike),
        cmocka_unit_test(test_own_query_is_used),
        cmocka_unit_test(test_failing_query_refuses_the_login_and_the_daemon_goes_on),
        cmocka_unit_test(test_auth_file_user_skips_the_query),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
