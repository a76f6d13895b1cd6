/*
 * test_restart.c
 *    A PostgreSQL restart under load: pgbench runs through pgturbo while the server restarts;
 *    pgbench must end (with errors or not), and pgturbo must serve new queries soon after.
 *
 *    NOTE: this test restarts the shared test cluster (pg_ctl restart -m fast), which drops every
 *    connection of every other test running at the same time. It must run alone: the lead sets
 *    RUN_SERIAL on integration_test_restart.
 */
#include "harness.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define DB      "pgbench_restart_it"
#define OUT_LEN 65536

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

struct background {
    char cmd[512];
    char out[OUT_LEN];
    int rc;
};

static void *background_main(void *arg)
{
    struct background *b = arg;
    b->rc = harness_shell(b->cmd, b->out, sizeof(b->out));
    return NULL;
}

/* One query through pgturbo on a new connection; true when it returned the expected value. */
static bool query_works(int port)
{
    PGconn *c = harness_try_connect(port, DB, "connect_timeout=2");
    bool ok = false;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *res = PQexec(c, "SELECT count(*) FROM pgbench_branches");
        ok = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "1") == 0;
        PQclear(res);
    }
    PQfinish(c);
    return ok;
}

static void test_server_restart_under_load(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 5\n", NULL);

    static struct background bench;
    snprintf(bench.cmd, sizeof(bench.cmd),
             "timeout 30 pgbench -h 127.0.0.1 -p %d -U postgres -S -c 10 -j 2 -T 6 " DB, p.port);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, background_main, &bench), 0);
    harness_sleep_ms(2000);

    char datadir[512] = "";
    char path[600];
    snprintf(path, sizeof(path), "%s/pg.datadir", PGTURBO_TESTENV);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(datadir, sizeof(datadir), f));
    fclose(f);
    datadir[strcspn(datadir, "\r\n")] = '\0';

    /* The server's output goes to its log file, not to our pipe, which would never close. */
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "%s /usr/lib/postgresql/15/bin/pg_ctl -D %s/pgdata -l %s/postgres.log -m fast -w "
             "-t 60 restart",
             getuid() == 0 ? "runuser -u postgres --" : "", datadir, datadir);
    static char out[OUT_LEN];
    long long t0 = harness_now_ms();
    int rc = harness_shell(cmd, out, sizeof(out));
    if (rc != 0) {
        pthread_join(thread, NULL);
        fail_msg("pg_ctl restart failed (%d):\n%s", rc, out);
    }
    fprintf(stderr, "server restarted in %lld ms\n", harness_now_ms() - t0);

    pthread_join(thread, NULL);
    fprintf(stderr, "pgbench exit %d:\n%s\n", bench.rc, bench.out);
    /* pgbench may fail (its connections were cut) but must not hang. */
    if (bench.rc == 124 || bench.rc == 128 + 9)
        fail_msg("pgbench hung through the restart:\n%s", bench.out);
    assert_true(harness_pgturbo_alive(&p));

    long long deadline = harness_now_ms() + 5000;
    bool ok;
    t0 = harness_now_ms();
    while (!(ok = query_works(p.port)) && harness_now_ms() < deadline)
        harness_sleep_ms(100);
    assert_true(ok);
    fprintf(stderr, "first query after the restart took %lld ms to succeed\n",
            harness_now_ms() - t0);

    /* Every server in the pool is good again: a short run has no failures. */
    snprintf(bench.cmd, sizeof(bench.cmd),
             "timeout 30 pgbench -h 127.0.0.1 -p %d -U postgres -S -c 10 -j 2 -T 2 " DB, p.port);
    bench.rc = harness_shell(bench.cmd, bench.out, sizeof(bench.out));
    if (bench.rc != 0 || strstr(bench.out, "number of failed transactions: 0") == NULL)
        fail_msg("pgbench after the restart: exit %d\n%s", bench.rc, bench.out);

    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_restart_under_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
