/*
 * test_cli.c
 *    The pgturbo command line: exit codes and the file:line message of a bad config, at start
 *    and on reload (where the running config is kept).
 */
#include "harness.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char out[8192];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_bad_config_exits_2_naming_file_and_line(void **state)
{
    char dir[] = "/tmp/pgturbo-cli.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char ini[64], cmd[256], expected[256];
    snprintf(ini, sizeof(ini), "%s/bad.ini", dir);
    write_file(ini, "[pgturbo]\nlisten_port = 6543\npool_mode = sometimes\n");
    snprintf(cmd, sizeof(cmd), "%s serve %s", PGTURBO_BIN, ini);
    assert_int_equal(harness_shell(cmd, out, sizeof(out)), 2);
    snprintf(expected, sizeof(expected),
             "pgturbo: %s:3: pool_mode: expected session, transaction or statement, got "
             "\"sometimes\"\n",
             ini);
    assert_string_equal(out, expected);
    unlink(ini);
    rmdir(dir);
}

static void test_missing_config_exits_2(void **state)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%s serve /nonexistent/pgturbo.ini", PGTURBO_BIN);
    assert_int_equal(harness_shell(cmd, out, sizeof(out)), 2);
    assert_string_equal(
        out, "pgturbo: /nonexistent/pgturbo.ini: cannot open: No such file or directory\n");
}

static void test_unknown_command_exits_2_and_version_exits_0(void **state)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "%s frobnicate", PGTURBO_BIN);
    assert_int_equal(harness_shell(cmd, out, sizeof(out)), 2);
    assert_non_null(strstr(out, "unknown command \"frobnicate\""));
    snprintf(cmd, sizeof(cmd), "%s version", PGTURBO_BIN);
    assert_int_equal(harness_shell(cmd, out, sizeof(out)), 0);
    assert_int_equal(strncmp(out, "pgturbo ", 8), 0);
}

static void test_bad_config_on_reload_keeps_running_config(void **state)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\n", NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(c, "SELECT 1");
    write_file(p.ini, "[pgturbo]\nlisten_port = 1\ndefault_pool_size = many\n");
    assert_int_equal(kill(p.pid, SIGHUP), 0);
    bool logged = false;
    for (int i = 0; i < 50 && !logged; i++) {
        harness_sleep_ms(100);
        char cmd[1024];
        snprintf(cmd, sizeof(cmd),
                 "grep -c 'reload failed, keeping the current config: %s:3: "
                 "default_pool_size' %s",
                 p.ini, p.log);
        logged = harness_shell(cmd, out, sizeof(out)) == 0;
    }
    assert_true(logged);
    harness_exec_ok(c, "SELECT 2");
    PGconn *d = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(d, "SELECT 3");
    PQfinish(c);
    PQfinish(d);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_config_exits_2_naming_file_and_line),
        cmocka_unit_test(test_missing_config_exits_2),
        cmocka_unit_test(test_unknown_command_exits_2_and_version_exits_0),
        cmocka_unit_test(test_bad_config_on_reload_keeps_running_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
