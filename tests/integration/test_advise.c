/*
 * test_advise.c
 *    pgturbo advise against the test cluster: bad input (an unreachable database, the daemon
 *    source, an empty workload).
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static char out[1 << 16];

/* Runs `pgturbo advise ARGS 'CONNINFO of db'` and returns its exit code; output in out. */
static int advise(const char *db, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s advise %s 'host=127.0.0.1 port=%d user=postgres dbname=%s'",
             PGTURBO_BIN, args, harness_pg_port(), db);
    return harness_shell(cmd, out, sizeof(out));
}

static void test_unreachable_database_exits_1(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s advise 'host=127.0.0.1 port=%d user=postgres dbname=x'",
             PGTURBO_BIN, harness_free_port());
    assert_int_equal(harness_shell(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "pgturbo advise: cannot connect: "));
    assert_non_null(strstr(out, "Connection refused"));
}

static void test_daemon_source_is_not_available_yet(void **state)
{
    assert_int_equal(advise("postgres", "--source daemon"), 2);
    assert_non_null(strstr(out, "--source daemon is not available yet"));
}

static void test_bad_command_lines_exit_2(void **state)
{
    assert_int_equal(advise("postgres", "--min-improvement 0"), 2);
    assert_non_null(strstr(out, "--min-improvement: expected a whole percentage"));
    assert_int_equal(advise("postgres", "--source elsewhere"), 2);
    assert_int_equal(advise("postgres", "--frobnicate"), 2);
    assert_non_null(strstr(out, "unknown option \"--frobnicate\""));
    assert_int_equal(advise("postgres", "--rollback 1 --apply"), 2);
}

static void test_empty_workload_has_nothing_to_advise(void **state)
{
    harness_create_database("advise_empty");
    PGconn *c = harness_connect_direct("advise_empty");
    harness_exec_ok(c, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    PQfinish(c);
    assert_int_equal(advise("advise_empty", ""), 0);
    assert_non_null(strstr(out, "nothing to advise"));
    harness_drop_database("advise_empty");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unreachable_database_exits_1),
        cmocka_unit_test(test_daemon_source_is_not_available_yet),
        cmocka_unit_test(test_bad_command_lines_exit_2),
        cmocka_unit_test(test_empty_workload_has_nothing_to_advise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
