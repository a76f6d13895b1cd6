/*
 * test_reportcli.c
 *    Unit tests of pgturbo report's argument parsing: formats, output, thresholds, and every
 *    kind of bad usage (exit code 2) with its message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "reportcli.h"

#include <stdio.h>
#include <string.h>

/* ---- command line ---- */

static int parse(report_cli_t *cli, char *err, ...)
{
    char *argv[16] = {"report"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 15;)
        argv[argc++] = a;
    va_end(ap);
    return report_cli_parse(argc, argv, cli, err, 256);
}

static void cli_reads_formats_output_and_thresholds(void **state)
{
    report_cli_t cli;
    char err[256];
    assert_int_equal(parse(&cli, err, "host=h dbname=app", NULL), 0);
    assert_int_equal(cli.format, REPORT_FORMAT_TEXT);
    assert_null(cli.output);
    assert_string_equal(cli.conninfo, "host=h dbname=app");
    assert_float_equal(cli.options.idle_in_xact_s, 60, 1e-9);
    assert_int_equal(cli.options.top, 10);

    assert_int_equal(parse(&cli, err, "--json", "--output", "/tmp/r.json", "--idle-seconds=1.5",
                           "--long-query-seconds", "2", "--top", "3", "postgresql://u@h/app", NULL),
                     0);
    assert_int_equal(cli.format, REPORT_FORMAT_JSON);
    assert_string_equal(cli.output, "/tmp/r.json");
    assert_float_equal(cli.options.idle_in_xact_s, 1.5, 1e-9);
    assert_float_equal(cli.options.long_query_s, 2, 1e-9);
    assert_int_equal(cli.options.top, 3);
    assert_string_equal(cli.conninfo, "postgresql://u@h/app");

    assert_int_equal(parse(&cli, err, "app", "--html", NULL), 0);
    assert_int_equal(cli.format, REPORT_FORMAT_HTML);
    assert_string_equal(cli.conninfo, "app");

    assert_int_equal(parse(&cli, err, "--help", NULL), 0);
    assert_true(cli.help);
}

static void cli_refuses_bad_usage_with_exit_code_2(void **state)
{
    report_cli_t cli;
    char err[256];
    assert_int_equal(parse(&cli, err, NULL), 2);
    assert_non_null(strstr(err, "a connection string is needed"));
    assert_int_equal(parse(&cli, err, "--json", "--html", "app", NULL), 2);
    assert_string_equal(err, "--json and --html exclude each other");
    assert_int_equal(parse(&cli, err, "--idle-seconds", "soon", "app", NULL), 2);
    assert_string_equal(err, "--idle-seconds: expected a number of seconds, got \"soon\"");
    assert_int_equal(parse(&cli, err, "--top", "0", "app", NULL), 2);
    assert_int_equal(parse(&cli, err, "app", "--output", NULL), 2);
    assert_string_equal(err, "--output: expected a value");
    assert_int_equal(parse(&cli, err, "--frobnicate", "app", NULL), 2);
    assert_string_equal(err, "unknown option \"--frobnicate\"");
    assert_int_equal(parse(&cli, err, "app", "other", NULL), 2);
    assert_int_equal(parse(&cli, err, "host=h port", NULL), 2);
    assert_non_null(strstr(err, "bad connection string: "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cli_reads_formats_output_and_thresholds),
        cmocka_unit_test(cli_refuses_bad_usage_with_exit_code_2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
