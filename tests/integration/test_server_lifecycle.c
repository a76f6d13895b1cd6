/*
 * test_server_lifecycle.c
 *    What pgturbo does to server connections between clients: the check query after
 *    server_check_delay, server_lifetime, the reserve pool, server_connect_timeout, and a
 *    custom server_reset_query in session mode.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* The value of a custom setting on the server the client's next statement runs on. */
static char *checked_mark(PGconn *c)
{
    return harness_query_value(c, "SELECT coalesce(current_setting('pgturbo_it.mark', true), '')");
}

static void test_check_query_runs_when_server_idle_past_delay(void **state)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(
        &p,
        "pool_mode = transaction\ndefault_pool_size = 1\n"
        "server_check_delay = 0\n"
        "server_check_query = SELECT set_config('pgturbo_it.mark', 'checked', false)\n",
        NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(c, "SELECT 1");
    char *mark = checked_mark(c);
    assert_string_equal(mark, "checked");
    free(mark);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_check_query_skipped_within_delay(void **state)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(
        &p,
        "pool_mode = transaction\ndefault_pool_size = 1\n"
        "server_check_delay = 60\n"
        "server_check_query = SELECT set_config('pgturbo_it.mark', 'checked', false)\n",
        NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(c, "SELECT 1");
    char *mark = checked_mark(c);
    assert_string_equal(mark, "");
    free(mark);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_server_lifetime_replaces_old_servers(void **state)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(
        &p, "pool_mode = transaction\ndefault_pool_size = 1\nserver_lifetime = 1\n", NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    char *first = harness_query_value(c, "SELECT pg_backend_pid()");
    char *again = harness_query_value(c, "SELECT pg_backend_pid()");
    assert_string_equal(first, again);
    usleep(1700 * 1000);
    char *later = harness_query_value(c, "SELECT pg_backend_pid()");
    assert_string_not_equal(first, later);
    free(first);
    free(again);
    free(later);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_reserve_pool_serves_a_client_that_waited(void **state)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(&p,
                          "pool_mode = transaction\ndefault_pool_size = 1\nreserve_pool_size = 1\n"
                          "reserve_pool_timeout = 0.5\nquery_wait_timeout = 20\n",
                          NULL);
    PGconn *holder = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(holder, "BEGIN");
    harness_exec_ok(holder, "SELECT 1");
    PGconn *waiter = harness_connect(p.port, "postgres", NULL);
    long long start = harness_now_ms();
    char *v = harness_query_value(waiter, "SELECT 42");
    long long waited = harness_now_ms() - start;
    assert_string_equal(v, "42");
    assert_true(waited >= 400);
    assert_true(waited < 5000);
    free(v);
    harness_exec_ok(holder, "COMMIT");
    PQfinish(holder);
    PQfinish(waiter);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

/* A TCP listener that completes handshakes but never answers: a server that hangs in login. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void test_server_connect_timeout_fails_waiting_client(void **state)
{
    int port;
    int lfd = silent_listener(&port);
    char db[128];
    snprintf(db, sizeof(db), "silent = host=127.0.0.1 port=%d dbname=postgres\n", port);
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\nserver_connect_timeout = 1\n", db);
    long long start = harness_now_ms();
    PGconn *c = harness_try_connect(p.port, "silent", NULL);
    long long took = harness_now_ms() - start;
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_non_null(strstr(PQerrorMessage(c), "server_connect_timeout"));
    assert_true(took >= 900);
    assert_true(took < 4000);
    PQfinish(c);
    PGconn *ok = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(ok, "SELECT 1");
    PQfinish(ok);
    close(lfd);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void test_session_mode_runs_custom_reset_query(void **state)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(
        &p,
        "pool_mode = session\ndefault_pool_size = 1\n"
        "server_reset_query = SELECT set_config('pgturbo_it.mark', 'reset', false)\n",
        NULL);
    PGconn *a = harness_connect(p.port, "postgres", NULL);
    char *pid_a = harness_query_value(a, "SELECT pg_backend_pid()");
    PQfinish(a);
    PGconn *b = harness_connect(p.port, "postgres", NULL);
    char *pid_b = harness_query_value(b, "SELECT pg_backend_pid()");
    char *mark = checked_mark(b);
    assert_string_equal(pid_a, pid_b);
    assert_string_equal(mark, "reset");
    free(pid_a);
    free(pid_b);
    free(mark);
    PQfinish(b);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

/* A client that does not read for a while: pgturbo stops reading the server, then sends the
 * whole result once the client reads again. */
static void test_slow_reader_gets_the_whole_result(void **state)
{
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 1\n", NULL);
    int fd = harness_raw_connect(p.port);
    harness_raw_startup(fd, "postgres", "postgres");
    assert_true(harness_raw_wait_ready(fd, NULL));
    static const char sql[] = "SELECT repeat('x', 2000) FROM generate_series(1, 10000)";
    uint32_t len = htonl((uint32_t)(4 + sizeof(sql)));
    char q[sizeof(sql) + 5] = {'Q'};
    memcpy(q + 1, &len, 4);
    memcpy(q + 5, sql, sizeof(sql));
    harness_raw_send(fd, q, sizeof(q));
    harness_sleep_ms(1500);
    static char body[8192];
    size_t n;
    int type, rows = 0;
    while ((type = harness_raw_read_message(fd, body, sizeof(body), &n)) > 0 && type != 'Z')
        rows += type == 'D';
    assert_int_equal(type, 'Z');
    assert_int_equal(rows, 10000);
    close(fd);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(c, "SELECT 1");
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_query_runs_when_server_idle_past_delay),
        cmocka_unit_test(test_check_query_skipped_within_delay),
        cmocka_unit_test(test_server_lifetime_replaces_old_servers),
        cmocka_unit_test(test_reserve_pool_serves_a_client_that_waited),
        cmocka_unit_test(test_server_connect_timeout_fails_waiting_client),
        cmocka_unit_test(test_session_mode_runs_custom_reset_query),
        cmocka_unit_test(test_slow_reader_gets_the_whole_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
