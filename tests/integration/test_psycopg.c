/*
 * test_psycopg.c
 *    Prepared statements of a real driver (psycopg 3, Debian's /usr/bin/python3) through
 *    pgturbo in transaction mode, with more clients than server connections.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <stdio.h>
#include <string.h>

static void test_psycopg_prepared_statements_move_between_servers(void **state)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 2\n", NULL);
    char cmd[512], out[8192];
    snprintf(cmd, sizeof(cmd), "timeout 120 /usr/bin/python3 %s/psycopg_prepared.py %d",
             PGTURBO_SOURCE_DIR "/tests/integration", p.port);
    int rc = harness_shell(cmd, out, sizeof(out));
    if (rc != 0)
        fprintf(stderr, "%s\n", out);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "ok 12\n");
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_psycopg_prepared_statements_move_between_servers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
