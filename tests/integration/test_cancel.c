/*
 * test_cancel.c
 *    Cancel requests through pgturbo: libpq's PQcancel stops a running query (57014) in
 *    transaction and session mode, wherever the cancel connection lands among the workers; a
 *    wrong key and a cancel for a client with nothing running change nothing.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* Starts pg_sleep(10) on c, cancels it after 300 ms, and returns how long the query took. */
static long long cancel_sleep(PGconn *c)
{
    assert_int_equal(PQsendQuery(c, "SELECT pg_sleep(10)"), 1);
    harness_sleep_ms(300);
    long long start = harness_now_ms();
    PGcancel *cancel = PQgetCancel(c);
    char err[256];
    assert_int_equal(PQcancel(cancel, err, sizeof(err)), 1);
    PQfreeCancel(cancel);
    PGresult *r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "57014");
    PQclear(r);
    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
    return harness_now_ms() - start;
}

static void cancel_in_mode(const char *settings)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, settings, NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    for (int i = 0; i < 6; i++) {
        long long took = cancel_sleep(c);
        assert_true(took < 1000);
        char *v = harness_query_value(c, "SELECT 7");
        assert_string_equal(v, "7");
        free(v);
    }
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_cancel_in_transaction_mode(void **state)
{
    cancel_in_mode("pool_mode = transaction\ndefault_pool_size = 2\n");
}

static void test_cancel_in_session_mode(void **state)
{
    cancel_in_mode("pool_mode = session\n");
}

/* Sends a CancelRequest for (pid, key) on a new raw connection. */
static void raw_cancel(int port, uint32_t pid, uint32_t key)
{
    int fd = harness_raw_connect(port);
    uint32_t packet[4] = {htonl(16), htonl(80877102), htonl(pid), htonl(key)};
    harness_raw_send(fd, packet, sizeof(packet));
    assert_true(harness_raw_closed(fd, 2000));
    close(fd);
}

static void test_cancel_with_wrong_key_is_ignored(void **state)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\n", NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    int pid = PQbackendPID(c);
    assert_int_equal(PQsendQuery(c, "SELECT pg_sleep(1), 'done'"), 1);
    harness_sleep_ms(200);
    raw_cancel(p.port, (uint32_t)pid, 12345);
    raw_cancel(p.port, 999999, 12345);
    PGresult *r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 1), "done");
    PQclear(r);
    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_cancel_of_idle_client_does_nothing(void **state)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\n", NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    PGcancel *cancel = PQgetCancel(c);
    char err[256];
    assert_int_equal(PQcancel(cancel, err, sizeof(err)), 1);
    PQfreeCancel(cancel);
    harness_sleep_ms(200);
    char *v = harness_query_value(c, "SELECT 'still fine'");
    assert_string_equal(v, "still fine");
    free(v);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_in_transaction_mode),
        cmocka_unit_test(test_cancel_in_session_mode),
        cmocka_unit_test(test_cancel_with_wrong_key_is_ignored),
        cmocka_unit_test(test_cancel_of_idle_client_does_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
