/*
 * test_pgbench.c
 *    pgbench through pgturbo in transaction mode: the TPC-B script and the select-only script in
 *    each query mode (simple, extended, prepared) with more clients than servers, and a new
 *    connection per transaction (-C). Every run must end with exit status 0, no failed
 *    transactions and some processed ones. The tables are made directly on the server.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DB      "pgbench_it"
#define OUT_LEN 65536

static char out[OUT_LEN];

static int setup(void **state)
{
    (void)state;
    harness_pgbench_init(DB, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    harness_drop_database(DB);
    return 0;
}

/* The number after "label" in pgbench's report, or -1 when it is not there. */
static long long report_number(const char *report, const char *label)
{
    const char *p = strstr(report, label);
    if (p == NULL)
        return -1;
    return strtoll(p + strlen(label), NULL, 10);
}

/* Runs pgbench with args through a transaction-mode pgturbo with 5 servers and checks its
 * report: exit status 0, no failed transactions, some processed. */
static void run_pgbench(const char *args)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 5\n", NULL);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "timeout 60 pgbench -h 127.0.0.1 -p %d -U postgres %s " DB, p.port,
             args);
    int rc = harness_shell(cmd, out, sizeof(out));
    long long processed = report_number(out, "number of transactions actually processed: ");
    long long failed = report_number(out, "number of failed transactions: ");
    bool alive = harness_pgturbo_alive(&p);
    int stop = harness_stop_pgturbo(&p, 10);
    if (rc != 0 || failed != 0 || processed <= 0 || !alive || stop != 0)
        fail_msg("%s: exit %d%s, processed %lld, failed %lld, pgturbo %s, stop %d\n%s", cmd, rc,
                 rc == 124 ? " (timed out: pgbench hung)" : "", processed, failed,
                 alive ? "alive" : "dead", stop, out);
    fprintf(stderr, "pgbench %s: %lld transactions\n", args, processed);
}

static void test_tpcb_simple(void **state)
{
    (void)state;
    run_pgbench("-M simple -c 20 -j 4 -T 3");
}

static void test_tpcb_extended(void **state)
{
    (void)state;
    run_pgbench("-M extended -c 20 -j 4 -T 3");
}

/* pgbench prepares with a blocking PQprepare; with -j < -c a thread can block in it while the
 * other clients of the thread hold every server, unless the pooler answers the Parse itself. */
static void test_tpcb_prepared(void **state)
{
    (void)state;
    run_pgbench("-M prepared -c 20 -j 4 -T 3");
}

static void test_select_only_simple(void **state)
{
    (void)state;
    run_pgbench("-S -M simple -c 20 -j 4 -T 3");
}

static void test_select_only_extended(void **state)
{
    (void)state;
    run_pgbench("-S -M extended -c 20 -j 4 -T 3");
}

static void test_select_only_prepared(void **state)
{
    (void)state;
    run_pgbench("-S -M prepared -c 20 -j 4 -T 3");
}

static void test_new_connection_per_transaction(void **state)
{
    (void)state;
    run_pgbench("-C -c 8 -j 2 -T 3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tpcb_simple),
        cmocka_unit_test(test_tpcb_extended),
        cmocka_unit_test(test_tpcb_prepared),
        cmocka_unit_test(test_select_only_simple),
        cmocka_unit_test(test_select_only_extended),
        cmocka_unit_test(test_select_only_prepared),
        cmocka_unit_test(test_new_connection_per_transaction),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
