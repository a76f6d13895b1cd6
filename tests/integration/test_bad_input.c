/*
 * test_bad_input.c
 *    Integration tests of bad input from clients, written byte by byte on raw sockets: broken
 *    startup packets, impossible or oversized message lengths, unknown message types,
 *    garbage, truncated messages, clients that vanish in the middle of a transaction or a
 *    query, and too many clients. For every case the tests check the SQLSTATE the client is
 *    told, whether its connection is closed, that the daemon lives on, and that other clients
 *    (one of them in the middle of a transaction while the bad input arrives) are unaffected.
 *
 *    pgturbo runs in transaction mode with two server connections per pool unless a test says
 *    otherwise. The table bad_input_t (in database postgres) belongs to this file, so that it
 *    may run in parallel with the other integration tests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BASE_SETTINGS       "pool_mode = transaction\ndefault_pool_size = 2\n"
#define PROTOCOL_2_0        131072
#define PROTOCOL_3_0        196608
#define SSL_REQUEST_CODE    80877103
#define GSSENC_REQUEST_CODE 80877104
#define MSG_CAP             8192
#define BAD_CLIENT_THREADS  50
#define GOOD_QUERIES        100

/* One test's daemon and the libpq client that is mid-transaction while the bad input comes. */
typedef struct fixture {
    pgturbo_proc_t proc;
    bool running;
    PGconn *witness;
    char witness_pid[32]; /* pg_backend_pid() of the witness's server inside its transaction */
    int fds[16];          /* raw sockets a failed test may leave open; -1 when closed */
    int n_fds;
    PGconn *conns[8]; /* libpq connections likewise; NULL when closed */
    int n_conns;
} fixture_t;

/* Fields of an ErrorResponse read from a raw socket. */
typedef struct raw_error {
    char severity[16];
    char sqlstate[6];
    char message[256];
} raw_error_t;

/* ---- time ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- writing protocol bytes by hand ---- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Sends a typed message header whose length field says len, whatever follows it. */
static void send_header(int fd, char type, uint32_t len)
{
    uint8_t h[5];
    h[0] = (uint8_t)type;
    put32(h + 1, len);
    harness_raw_send(fd, h, sizeof(h));
}

/* Sends a well-formed Query message. */
static void send_query(int fd, const char *sql)
{
    size_t n = strlen(sql) + 1;
    send_header(fd, 'Q', (uint32_t)(4 + n));
    harness_raw_send(fd, sql, n);
}

/*
 * Builds a startup-phase packet into out: the length, the code (protocol version or request
 * code) and the NULL-terminated list of name, value pairs followed by the final NUL (when
 * pairs is NULL, the packet is just length and code, as an SSLRequest is). Returns its length.
 */
static size_t build_startup(uint8_t *out, size_t cap, uint32_t code, const char *const *pairs)
{
    size_t n = 8;
    assert_true(cap >= 9);
    put32(out + 4, code);
    if (pairs != NULL) {
        for (const char *const *p = pairs; *p != NULL; p++) {
            size_t l = strlen(*p) + 1;
            assert_true(n + l + 1 <= cap);
            memcpy(out + n, *p, l);
            n += l;
        }
        out[n++] = '\0';
    }
    put32(out, (uint32_t)n);
    return n;
}

static void send_startup(int fd, uint32_t code, const char *const *pairs)
{
    uint8_t pkt[1024];
    size_t n = build_startup(pkt, sizeof(pkt), code, pairs);
    harness_raw_send(fd, pkt, n);
}

/* Sends what it can and ignores a peer that has already gone: for bytes sent after a
 * message pgturbo is expected to refuse, when it may close the socket at any moment. */
static void send_best_effort(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            return;
        }
        b += w;
        n -= (size_t)w;
    }
}

/* ---- reading what pgturbo says ---- */

static void parse_error(const char *body, size_t len, raw_error_t *e)
{
    memset(e, 0, sizeof(*e));
    size_t i = 0;
    while (i < len && body[i] != '\0') {
        char field = body[i++];
        const char *value = body + i;
        size_t vlen = strnlen(value, len - i);
        if (field == 'S' && e->severity[0] == '\0')
            snprintf(e->severity, sizeof(e->severity), "%.*s", (int)vlen, value);
        else if (field == 'V')
            snprintf(e->severity, sizeof(e->severity), "%.*s", (int)vlen, value);
        else if (field == 'C')
            snprintf(e->sqlstate, sizeof(e->sqlstate), "%.*s", (int)vlen, value);
        else if (field == 'M')
            snprintf(e->message, sizeof(e->message), "%.*s", (int)vlen, value);
        i += vlen + 1;
    }
}

/*
 * Reads messages until an ErrorResponse, EOF or a timeout. Returns 'E' (with *e filled), 0 on
 * EOF, -1 on timeout or a read error.
 */
static int read_until_error(int fd, raw_error_t *e)
{
    static char body[MSG_CAP];
    for (;;) {
        size_t len = 0;
        int type = harness_raw_read_message(fd, body, sizeof(body), &len);
        if (type <= 0)
            return type;
        if (type == 'E') {
            parse_error(body, len < sizeof(body) ? len : sizeof(body), e);
            return 'E';
        }
    }
}

/*
 * Asserts that the next thing pgturbo says is a FATAL ErrorResponse with sqlstate (and, when
 * message is not NULL, exactly that message), and that it then closes the connection.
 */
static void expect_fatal(int fd, const char *sqlstate, const char *message)
{
    raw_error_t e;
    int rc = read_until_error(fd, &e);
    if (rc != 'E')
        fail_msg("expected ErrorResponse %s, got %s", sqlstate,
                 rc == 0 ? "EOF without an error" : "a timeout");
    assert_string_equal(e.sqlstate, sqlstate);
    assert_string_equal(e.severity, "FATAL");
    if (message != NULL)
        assert_string_equal(e.message, message);
    assert_true(harness_raw_closed(fd, 2000));
}

/* Reads until ReadyForQuery and returns its transaction status; fails on an ErrorResponse. */
static char wait_ready_status(int fd)
{
    char body[MSG_CAP];
    char seen[64] = "";
    for (size_t n_seen = 0;; n_seen++) {
        size_t len = 0;
        errno = 0;
        int type = harness_raw_read_message(fd, body, sizeof(body), &len);
        if (type == 'E') {
            raw_error_t e;
            parse_error(body, len, &e);
            fail_msg("unexpected error %s: %s", e.sqlstate, e.message);
        }
        if (type <= 0)
            fail_msg("no ReadyForQuery (%s; messages before: \"%s\")",
                     type == 0 ? "EOF"
                     : errno   ? strerror(errno)
                               : "bad length field",
                     seen);
        if (n_seen + 1 < sizeof(seen))
            seen[n_seen] = (char)type;
        if (type == 'Z') {
            assert_int_equal(len, 1);
            return body[0];
        }
    }
}

/* Runs sql on a raw connection; returns the transaction status it ends in. */
static char raw_query(int fd, const char *sql)
{
    send_query(fd, sql);
    return wait_ready_status(fd);
}

/* ---- connections the teardown closes when a test fails half-way ---- */

/* A raw connection to the daemon. */
static int raw_connect(fixture_t *f)
{
    int fd = harness_raw_connect(f->proc.port);
    int i = 0;
    while (i < f->n_fds && f->fds[i] >= 0)
        i++;
    assert_true(i < (int)(sizeof(f->fds) / sizeof(f->fds[0])));
    f->fds[i] = fd;
    if (i == f->n_fds)
        f->n_fds++;
    return fd;
}

static void raw_close(fixture_t *f, int fd)
{
    for (int i = 0; i < f->n_fds; i++)
        if (f->fds[i] == fd)
            f->fds[i] = -1;
    close(fd);
}

/* A raw connection that has logged in as postgres to database postgres. */
static int raw_login(fixture_t *f)
{
    int fd = raw_connect(f);
    harness_raw_startup(fd, "postgres", "postgres");
    char sqlstate[6] = "";
    if (!harness_raw_wait_ready(fd, sqlstate))
        fail_msg("raw login failed (%s)", sqlstate[0] ? sqlstate : "no ReadyForQuery");
    return fd;
}

/* A libpq connection through the daemon, with application_name app. */
static PGconn *pg_open(fixture_t *f, const char *app)
{
    char extra[64];
    snprintf(extra, sizeof(extra), "application_name=%s", app);
    PGconn *c = harness_connect(f->proc.port, "postgres", extra);
    int i = 0;
    while (i < f->n_conns && f->conns[i] != NULL)
        i++;
    assert_true(i < (int)(sizeof(f->conns) / sizeof(f->conns[0])));
    f->conns[i] = c;
    if (i == f->n_conns)
        f->n_conns++;
    return c;
}

static void pg_close(fixture_t *f, PGconn *c)
{
    for (int i = 0; i < f->n_conns; i++)
        if (f->conns[i] == c)
            f->conns[i] = NULL;
    PQfinish(c);
}

/* ---- the daemon and the other clients ---- */

static void start(fixture_t *f, const char *extra)
{
    char settings[512];
    snprintf(settings, sizeof(settings), "%s%s", BASE_SETTINGS, extra ? extra : "");
    harness_start_pgturbo(&f->proc, settings, NULL);
    f->running = true;
}

/* Connects the witness and leaves it inside a transaction, holding one server connection. */
static void witness_begin(fixture_t *f)
{
    f->witness = harness_connect(f->proc.port, "postgres", "application_name=witness");
    harness_exec_ok(f->witness, "BEGIN");
    char *pid = harness_query_value(f->witness, "SELECT pg_backend_pid()");
    assert_non_null(pid);
    snprintf(f->witness_pid, sizeof(f->witness_pid), "%s", pid);
    free(pid);
    assert_int_equal(PQtransactionStatus(f->witness), PQTRANS_INTRANS);
}

/* A new libpq client can run SELECT 1 through pgturbo. */
static void fresh_client_works(fixture_t *f)
{
    PGconn *c = pg_open(f, "fresh");
    char *v = harness_query_value(c, "SELECT 1");
    assert_non_null(v);
    assert_string_equal(v, "1");
    free(v);
    pg_close(f, c);
}

/*
 * The daemon is alive; the witness (when there is one) is still in its transaction on the
 * same server and commits; a new client works.
 */
static void others_unaffected(fixture_t *f)
{
    assert_true(harness_pgturbo_alive(&f->proc));
    if (f->witness != NULL) {
        assert_int_equal(PQstatus(f->witness), CONNECTION_OK);
        assert_int_equal(PQtransactionStatus(f->witness), PQTRANS_INTRANS);
        char *pid = harness_query_value(f->witness, "SELECT pg_backend_pid()");
        assert_non_null(pid);
        assert_string_equal(pid, f->witness_pid);
        free(pid);
        char *v = harness_query_value(f->witness, "SELECT 1");
        assert_non_null(v);
        assert_string_equal(v, "1");
        free(v);
        harness_exec_ok(f->witness, "COMMIT");
        assert_int_equal(PQtransactionStatus(f->witness), PQTRANS_IDLE);
        PQfinish(f->witness);
        f->witness = NULL;
    }
    fresh_client_works(f);
    assert_true(harness_pgturbo_alive(&f->proc));
}

/* Stops the daemon and asserts that it exits cleanly (no crash, no sanitizer report). */
static void finish(fixture_t *f)
{
    if (f->witness != NULL) {
        PQfinish(f->witness);
        f->witness = NULL;
    }
    f->running = false;
    assert_int_equal(harness_stop_pgturbo(&f->proc, 20), 0);
}

/* Sets the row's value directly on the cluster. */
static void set_row(int id, int v)
{
    PGconn *d = harness_connect_direct("postgres");
    char sql[128];
    snprintf(sql, sizeof(sql), "UPDATE bad_input_t SET v = %d WHERE id = %d", v, id);
    harness_exec_ok(d, sql);
    PQfinish(d);
}

/*
 * Through pgturbo, adds 10 to the row in a transaction whose lock_timeout is 2 s, and asserts
 * that this took less than 2 s (no lock left behind by a vanished client) and that the row
 * then holds expected (the vanished client's change was not committed).
 */
static void row_is_free_and_holds(fixture_t *f, int id, int expected)
{
    PGconn *c = pg_open(f, "updater");
    char sql[128];
    double t0 = now_s();
    harness_exec_ok(c, "BEGIN");
    harness_exec_ok(c, "SET LOCAL lock_timeout = '2s'");
    snprintf(sql, sizeof(sql), "UPDATE bad_input_t SET v = v + 10 WHERE id = %d", id);
    harness_exec_ok(c, sql);
    harness_exec_ok(c, "COMMIT");
    double took = now_s() - t0;
    if (took >= 2.0)
        fail_msg("the row stayed locked for %.2f s", took);
    snprintf(sql, sizeof(sql), "SELECT v FROM bad_input_t WHERE id = %d", id);
    char *v = harness_query_value(c, sql);
    assert_non_null(v);
    assert_int_equal(atoi(v), expected);
    free(v);
    pg_close(f, c);
}

static int setup_table(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    PGconn *d = harness_connect_direct("postgres");
    harness_exec_ok(d, "DROP TABLE IF EXISTS bad_input_t");
    harness_exec_ok(d, "CREATE TABLE bad_input_t (id int PRIMARY KEY, v int NOT NULL)");
    harness_exec_ok(d, "INSERT INTO bad_input_t SELECT g, 0 FROM generate_series(1, 10) g");
    PQfinish(d);
    return 0;
}

static int teardown_table(void **state)
{
    (void)state;
    PGconn *d = harness_connect_direct("postgres");
    harness_exec_ok(d, "DROP TABLE IF EXISTS bad_input_t");
    PQfinish(d);
    return 0;
}

static int setup_fixture(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    *state = f;
    return 0;
}

/* Prints the last lines of the daemon's log (the many-clients test writes megabytes). */
static void print_log_tail(const char *path)
{
    enum { TAIL = 60 };
    static char lines[TAIL][512];
    FILE *log = fopen(path, "r");
    if (log == NULL)
        return;
    long n = 0;
    while (fgets(lines[n % TAIL], sizeof(lines[0]), log) != NULL)
        n++;
    fclose(log);
    fprintf(stderr, "---- last lines of %s ----\n", path);
    for (long i = n > TAIL ? n - TAIL : 0; i < n; i++)
        fputs(lines[i % TAIL], stderr);
}

/* Closes what a failed test left open, shows the log of its daemon and stops it. */
static int teardown_fixture(void **state)
{
    fixture_t *f = *state;
    if (f->witness != NULL)
        PQfinish(f->witness);
    for (int i = 0; i < f->n_conns; i++)
        if (f->conns[i] != NULL)
            PQfinish(f->conns[i]);
    for (int i = 0; i < f->n_fds; i++)
        if (f->fds[i] >= 0)
            close(f->fds[i]);
    if (f->running) {
        print_log_tail(f->proc.log);
        harness_stop_pgturbo(&f->proc, 20);
    }
    free(f);
    return 0;
}

/* ---- typed messages after startup ---- */

static void message_length_below_four_is_refused_and_closed(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    const uint32_t lengths[] = {0, 2, 3};
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        int fd = raw_login(f);
        send_header(fd, 'Q', lengths[i]);
        expect_fatal(fd, "08P01", NULL);
        raw_close(f, fd);
    }
    others_unaffected(f);
    finish(f);
}

static void message_over_max_packet_size_is_refused_and_closed(void **state)
{
    fixture_t *f = *state;
    start(f, "max_packet_size = 1024\n");
    witness_begin(f);
    int fd = raw_login(f);
    /* The header and the first 5000 bytes of the query go in one write. */
    static uint8_t msg[5 + 5000];
    msg[0] = 'Q';
    put32(msg + 1, 100000);
    memcpy(msg + 5, "SELECT '", 8);
    memset(msg + 13, 'x', sizeof(msg) - 13);
    send_best_effort(fd, msg, sizeof(msg));
    expect_fatal(fd, "08P01", "message exceeds max_packet_size");
    raw_close(f, fd);

    /* A message of exactly max_packet_size bytes still passes. */
    fd = raw_login(f);
    char sql[1024 - 5];
    memset(sql, ' ', sizeof(sql) - 1);
    memcpy(sql, "SELECT 1", 8);
    sql[sizeof(sql) - 1] = '\0';
    assert_int_equal(raw_query(fd, sql), 'I');
    raw_close(f, fd);
    others_unaffected(f);
    finish(f);
}

static void unknown_message_type_is_refused_and_closed(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    int fd = raw_login(f);
    send_header(fd, 'y', 8);
    harness_raw_send(fd, "abcd", 4);
    expect_fatal(fd, "08P01", NULL);
    raw_close(f, fd);

    /* The same inside a transaction: the server is rolled back, not handed out dirty. */
    set_row(4, 0);
    fd = raw_login(f);
    assert_int_equal(raw_query(fd, "BEGIN"), 'T');
    assert_int_equal(raw_query(fd, "UPDATE bad_input_t SET v = v + 1 WHERE id = 4"), 'T');
    send_header(fd, 'y', 4);
    expect_fatal(fd, "08P01", NULL);
    raw_close(f, fd);
    row_is_free_and_holds(f, 4, 10);
    others_unaffected(f);
    finish(f);
}

/*
 * An unknown message type is refused at once, as PostgreSQL and PgBouncer do, even when every
 * server connection is busy: checking it must not wait for (or use) a server.
 */
static void unknown_message_type_is_refused_while_all_servers_are_busy(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    PGconn *blocker = pg_open(f, "blocker");
    harness_exec_ok(blocker, "BEGIN");
    harness_exec_ok(blocker, "SELECT 1");
    int fd = raw_login(f);
    double t0 = now_s();
    send_header(fd, 'y', 8);
    harness_raw_send(fd, "abcd", 4);
    raw_error_t e;
    int rc = read_until_error(fd, &e);
    double took = now_s() - t0;
    if (rc != 'E')
        fail_msg("no ErrorResponse within %.1f s (%s): the unknown message waits for a server",
                 took, rc == 0 ? "EOF" : "timeout");
    assert_string_equal(e.sqlstate, "08P01");
    if (took >= 1.0)
        fail_msg("refused only after %.2f s (%s)", took, e.message);
    assert_true(harness_raw_closed(fd, 2000));
    raw_close(f, fd);
    harness_exec_ok(blocker, "COMMIT");
    pg_close(f, blocker);
    others_unaffected(f);
    finish(f);
}

/* ---- startup packets ---- */

static void startup_length_out_of_bounds_is_refused_and_closed(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    const uint32_t lengths[] = {10001, 100000, 0x7fffffff, 0xffffffff, 7, 4, 0};
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        int fd = raw_connect(f);
        uint8_t pkt[8];
        put32(pkt, lengths[i]);
        put32(pkt + 4, PROTOCOL_3_0);
        send_best_effort(fd, pkt, sizeof(pkt));
        expect_fatal(fd, "08P01", NULL);
        raw_close(f, fd);
    }
    others_unaffected(f);
    finish(f);
}

static void startup_with_protocol_2_is_refused_and_closed(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    int fd = raw_connect(f);
    const char *const pairs[] = {"user", "postgres", "database", "postgres", NULL};
    send_startup(fd, PROTOCOL_2_0, pairs);
    expect_fatal(fd, "08P01", NULL);
    raw_close(f, fd);
    others_unaffected(f);
    finish(f);
}

static void startup_without_user_is_refused_and_closed(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    const char *const no_user[] = {"database", "postgres", NULL};
    const char *const empty_user[] = {"user", "", "database", "postgres", NULL};
    const char *const *cases[] = {no_user, empty_user};
    for (size_t i = 0; i < 2; i++) {
        int fd = raw_connect(f);
        send_startup(fd, PROTOCOL_3_0, cases[i]);
        expect_fatal(fd, "08P01", "no PostgreSQL user name specified in startup packet");
        raw_close(f, fd);
    }
    others_unaffected(f);
    finish(f);
}

static void startup_with_unsupported_parameter_is_refused_and_closed(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    int fd = raw_connect(f);
    const char *const pairs[] = {"user",    "postgres",        "database", "postgres",
                                 "options", "-c work_mem=1MB", NULL};
    send_startup(fd, PROTOCOL_3_0, pairs);
    expect_fatal(fd, "08P01", "unsupported startup parameter: options");
    raw_close(f, fd);
    others_unaffected(f);
    finish(f);
}

static void startup_for_unknown_database_gets_3d000(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    int fd = raw_connect(f);
    harness_raw_startup(fd, "postgres", "bad_input_no_such_db");
    expect_fatal(fd, "3D000", NULL);
    raw_close(f, fd);
    others_unaffected(f);
    finish(f);
}

/* Reads exactly one byte, the answer to an SSLRequest or GSSENCRequest. */
static char read_one_byte(int fd)
{
    char b = 0;
    ssize_t n;
    do {
        n = recv(fd, &b, 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n != 1)
        fail_msg("no answer byte (%s)", n == 0 ? "EOF" : strerror(errno));
    return b;
}

/* Asserts that nothing more than the one answer byte came. */
static void nothing_pending(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) != 0) {
        unsigned char junk[16];
        ssize_t n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
        char hex[64] = "";
        for (ssize_t i = 0; i < n && i < 16; i++)
            snprintf(hex + 3 * i, sizeof(hex) - 3 * (size_t)i, " %02x", junk[i]);
        fail_msg("more than one byte came: recv %zd%s%s", n, n < 0 ? " " : "",
                 n < 0 ? strerror(errno) : hex);
    }
}

static void ssl_and_gssenc_requests_get_n_and_startup_goes_on(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    const uint32_t codes[][2] = {
        {SSL_REQUEST_CODE, 0}, {GSSENC_REQUEST_CODE, 0}, {GSSENC_REQUEST_CODE, SSL_REQUEST_CODE}};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        int fd = raw_connect(f);
        for (int j = 0; j < 2 && codes[i][j] != 0; j++) {
            send_startup(fd, codes[i][j], NULL);
            assert_int_equal(read_one_byte(fd), 'N');
            nothing_pending(fd);
        }
        harness_raw_startup(fd, "postgres", "postgres");
        assert_int_equal(wait_ready_status(fd), 'I');
        assert_int_equal(raw_query(fd, "SELECT 1"), 'I');
        raw_close(f, fd);
    }
    others_unaffected(f);
    finish(f);
}

static void startup_that_never_completes_is_closed_by_login_timeout(void **state)
{
    fixture_t *f = *state;
    start(f, "client_login_timeout = 1\n");
    witness_begin(f);
    int fd = raw_connect(f);
    uint8_t half[4];
    put32(half, 8 + 9); /* a startup packet of 17 bytes, of which only the length comes */
    double t0 = now_s();
    harness_raw_send(fd, half, sizeof(half));
    /* Others work while it hangs. */
    fresh_client_works(f);
    raw_error_t e;
    int rc = read_until_error(fd, &e);
    if (rc == 'E') {
        assert_string_equal(e.sqlstate, "08P01");
        assert_true(harness_raw_closed(fd, 3000));
    } else if (rc != 0) {
        fail_msg("the half startup was not closed (timeout)");
    }
    double took = now_s() - t0;
    if (took > 3.0 || took < 0.9)
        fail_msg("closed after %.2f s, expected about 1 s", took);
    raw_close(f, fd);
    others_unaffected(f);
    finish(f);
}

/*
 * tcp_defer_accept (on by default): a connection that has sent nothing is still the kernel's,
 * so no login timeout runs for it; once it speaks, it logs in at once.
 */
static void silent_connection_waits_for_its_first_bytes(void **state)
{
    fixture_t *f = *state;
    start(f, "client_login_timeout = 1\n");
    int fd = raw_connect(f);
    if (harness_raw_closed(fd, 2500))
        fail_msg("a silent connection was accepted and closed by client_login_timeout");
    harness_raw_startup(fd, "postgres", "postgres");
    char sqlstate[6] = "";
    if (!harness_raw_wait_ready(fd, sqlstate))
        fail_msg("login after the wait failed (%s)", sqlstate[0] ? sqlstate : "no ReadyForQuery");
    assert_int_equal(raw_query(fd, "SELECT 1"), 'I');
    raw_close(f, fd);
    finish(f);
}

/* With tcp_defer_accept = 0 the same silent connection is accepted and timed out. */
static void silent_connection_is_timed_out_without_defer_accept(void **state)
{
    fixture_t *f = *state;
    start(f, "client_login_timeout = 1\ntcp_defer_accept = 0\n");
    int fd = raw_connect(f);
    double t0 = now_s();
    raw_error_t e;
    int rc = read_until_error(fd, &e);
    if (rc == 'E')
        assert_string_equal(e.sqlstate, "08P01");
    else if (rc != 0)
        fail_msg("the silent connection was not closed");
    assert_true(harness_raw_closed(fd, 3000));
    double took = now_s() - t0;
    if (took > 3.0 || took < 0.9)
        fail_msg("closed after %.2f s, expected about 1 s", took);
    raw_close(f, fd);
    finish(f);
}

/* ---- truncated messages and vanishing clients ---- */

static void truncated_message_blocks_no_one(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    int fd = raw_login(f);
    send_header(fd, 'Q', 100);
    harness_raw_send(fd, "SELECT 1; ", 10);
    /* With the socket open, the client waits for the rest and others go on. */
    fresh_client_works(f);
    fresh_client_works(f);
    assert_false(harness_raw_closed(fd, 300));
    raw_close(f, fd);
    others_unaffected(f);

    /* A truncated message inside a transaction: the server must be rolled back. */
    set_row(2, 0);
    fd = raw_login(f);
    assert_int_equal(raw_query(fd, "BEGIN"), 'T');
    assert_int_equal(raw_query(fd, "UPDATE bad_input_t SET v = v + 1 WHERE id = 2"), 'T');
    send_header(fd, 'Q', 100);
    harness_raw_send(fd, "COMMIT; --", 10);
    fresh_client_works(f);
    raw_close(f, fd);
    row_is_free_and_holds(f, 2, 10);
    assert_true(harness_pgturbo_alive(&f->proc));
    finish(f);
}

static void client_gone_mid_transaction_is_rolled_back(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    set_row(1, 0);
    int fd = raw_login(f);
    assert_int_equal(raw_query(fd, "BEGIN"), 'T');
    assert_int_equal(raw_query(fd, "UPDATE bad_input_t SET v = v + 1 WHERE id = 1"), 'T');
    raw_close(f, fd);
    row_is_free_and_holds(f, 1, 10);
    others_unaffected(f);
    finish(f);
}

static void client_gone_mid_query_frees_the_only_server(void **state)
{
    fixture_t *f = *state;
    start(f, "default_pool_size = 1\n");
    PGconn *idle = pg_open(f, "idle");
    harness_exec_ok(idle, "SELECT 1");
    int fd = raw_login(f);
    send_query(fd, "SELECT pg_sleep(3)");
    harness_sleep_ms(200);
    raw_close(f, fd);
    double t0 = now_s();
    fresh_client_works(f);
    char *v = harness_query_value(idle, "SELECT 2");
    assert_non_null(v);
    assert_string_equal(v, "2");
    free(v);
    double took = now_s() - t0;
    if (took >= 2.0)
        fail_msg("the next queries waited %.2f s for the server", took);
    pg_close(f, idle);
    others_unaffected(f);
    finish(f);
}

static void terminate_closes_without_error(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    char body[MSG_CAP];
    size_t len;

    int fd = raw_login(f);
    send_header(fd, 'X', 4);
    assert_int_equal(harness_raw_read_message(fd, body, sizeof(body), &len), 0);
    raw_close(f, fd);

    /* Terminate inside a transaction: closed without error, the transaction rolled back. */
    set_row(3, 0);
    fd = raw_login(f);
    assert_int_equal(raw_query(fd, "BEGIN"), 'T');
    assert_int_equal(raw_query(fd, "UPDATE bad_input_t SET v = v + 1 WHERE id = 3"), 'T');
    send_header(fd, 'X', 4);
    assert_int_equal(harness_raw_read_message(fd, body, sizeof(body), &len), 0);
    raw_close(f, fd);
    row_is_free_and_holds(f, 3, 10);
    others_unaffected(f);
    finish(f);
}

/* ---- garbage ---- */

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void fill_garbage(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(xorshift(&s) >> 24);
}

static void garbage_instead_of_startup_is_refused(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    witness_begin(f);
    for (uint32_t seed = 1; seed <= 20; seed++) {
        uint8_t junk[4096];
        fill_garbage(junk, sizeof(junk), seed);
        int fd = raw_connect(f);
        send_best_effort(fd, junk, sizeof(junk));
        raw_error_t e;
        int rc = read_until_error(fd, &e);
        if (rc == 'E') {
            if (strcmp(e.sqlstate, "08P01") != 0)
                fail_msg("seed %u: got %s (%s), expected 08P01", seed, e.sqlstate, e.message);
            assert_true(harness_raw_closed(fd, 2000));
        } else if (rc != 0) {
            fail_msg("seed %u: neither an error nor a close within the timeout", seed);
        }
        raw_close(f, fd);
    }
    others_unaffected(f);
    finish(f);
}

/* ---- too many clients ---- */

static void client_over_max_client_conn_gets_53300(void **state)
{
    fixture_t *f = *state;
    start(f, "max_client_conn = 3\n");
    /* Let the daemon see the end of the harness's readiness probe. */
    harness_sleep_ms(300);
    int fds[3];
    for (int i = 0; i < 3; i++)
        fds[i] = raw_login(f);
    int extra = raw_connect(f);
    harness_raw_startup(extra, "postgres", "postgres");
    expect_fatal(extra, "53300", NULL);
    raw_close(f, extra);
    for (int i = 0; i < 3; i++)
        assert_int_equal(raw_query(fds[i], "SELECT 1"), 'I');

    /* Once one leaves, a libpq client gets in (allow for the close to be seen). */
    send_header(fds[0], 'X', 4);
    assert_true(harness_raw_closed(fds[0], 2000));
    raw_close(f, fds[0]);
    PGconn *c = NULL;
    for (int tries = 0; tries < 20; tries++) {
        c = harness_try_connect(f->proc.port, "postgres", NULL);
        if (PQstatus(c) == CONNECTION_OK)
            break;
        PQfinish(c);
        c = NULL;
        harness_sleep_ms(100);
    }
    assert_non_null(c);
    char *v = harness_query_value(c, "SELECT 1");
    assert_string_equal(v, "1");
    free(v);
    PQfinish(c);
    for (int i = 1; i < 3; i++) {
        assert_int_equal(raw_query(fds[i], "SELECT 1"), 'I');
        raw_close(f, fds[i]);
    }
    assert_true(harness_pgturbo_alive(&f->proc));
    finish(f);
}

/* ---- many bad clients at once ---- */

/* How one round of a bad client ended. */
typedef enum outcome {
    OUTCOME_NONE = 0,
    OUTCOME_ERROR_08P01, /* an 08P01 ErrorResponse, then (or without) the close */
    OUTCOME_OTHER_ERROR, /* an ErrorResponse with another SQLSTATE */
    OUTCOME_CLOSED,      /* closed without an ErrorResponse */
    OUTCOME_TIMEOUT,     /* neither within 5 s */
    OUTCOME_NO_LOGIN,    /* the startup itself did not reach ReadyForQuery */
    OUTCOME_NO_CONNECT,  /* could not connect */
} outcome_t;

typedef struct bad_client {
    pthread_t thread;
    int index;
    int port;
    atomic_bool *stop;
    int rounds;
    int counts[OUTCOME_NO_CONNECT + 1];
    char last_other[64];
} bad_client_t;

/* Thread-safe socket code: cmocka's assertions must not run outside the main thread. */
static int thread_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int thread_read_exact(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r == 0)
            return 0;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 1;
}

/* Reads one message; returns its type, 0 on EOF, -1 on timeout or error. */
static int thread_read_message(int fd, uint8_t *body, size_t cap, size_t *len)
{
    uint8_t h[5];
    int rc = thread_read_exact(fd, h, 5);
    if (rc <= 0)
        return rc;
    uint32_t l = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
    if (l < 4 || l - 4 > cap)
        return -1;
    *len = l - 4;
    rc = thread_read_exact(fd, body, *len);
    return rc <= 0 ? rc : h[0];
}

static outcome_t thread_outcome(bad_client_t *bc, int fd)
{
    uint8_t body[MSG_CAP];
    for (;;) {
        size_t len = 0;
        int type = thread_read_message(fd, body, sizeof(body), &len);
        if (type == 0)
            return OUTCOME_CLOSED;
        if (type < 0)
            return errno == ECONNRESET ? OUTCOME_CLOSED : OUTCOME_TIMEOUT;
        if (type == 'E') {
            raw_error_t e;
            parse_error((const char *)body, len, &e);
            if (strcmp(e.sqlstate, "08P01") == 0)
                return OUTCOME_ERROR_08P01;
            snprintf(bc->last_other, sizeof(bc->last_other), "%s %.50s", e.sqlstate, e.message);
            return OUTCOME_OTHER_ERROR;
        }
    }
}

static bool thread_login(int fd)
{
    uint8_t pkt[128];
    const char *const pairs[] = {"user", "postgres", "database", "postgres", NULL};
    size_t n = build_startup(pkt, sizeof(pkt), PROTOCOL_3_0, pairs);
    if (send(fd, pkt, n, MSG_NOSIGNAL) != (ssize_t)n)
        return false;
    uint8_t body[MSG_CAP];
    for (;;) {
        size_t len = 0;
        int type = thread_read_message(fd, body, sizeof(body), &len);
        if (type <= 0 || type == 'E')
            return false;
        if (type == 'Z')
            return true;
    }
}

/*
 * Each round, one kind of bad input by index: garbage instead of a startup packet; after a
 * proper startup, an unknown message type, a length below 4, or a message over
 * max_packet_size; or garbage after a proper startup. Rounds are 10 ms apart; with
 * BAD_INPUT_HAMMER set in the environment they follow each other without a pause.
 */
static void *bad_client_main(void *arg)
{
    bad_client_t *bc = arg;
    int kind = bc->index % 5;
    uint8_t junk[4096];
    do {
        outcome_t o;
        int fd = thread_connect(bc->port);
        if (fd < 0) {
            bc->counts[OUTCOME_NO_CONNECT]++;
            bc->rounds++;
            continue;
        }
        fill_garbage(junk, sizeof(junk), (uint32_t)(bc->index * 1000 + bc->rounds));
        if (kind == 0) {
            junk[0] |= 0x01; /* a length far above the startup limit */
            send_best_effort(fd, junk, sizeof(junk));
            o = thread_outcome(bc, fd);
        } else if (!thread_login(fd)) {
            o = OUTCOME_NO_LOGIN;
        } else {
            if (kind == 1) {
                memcpy(junk, "y\0\0\0\x08zzzz", 9);
                send_best_effort(fd, junk, 9);
            } else if (kind == 2) {
                memcpy(junk, "Q\0\0\0\x02", 5);
                send_best_effort(fd, junk, 5);
            } else if (kind == 3) {
                memcpy(junk, "Q\0\x01\0\0", 5);
                send_best_effort(fd, junk, sizeof(junk));
            } else {
                junk[0] = 'y';
                send_best_effort(fd, junk, sizeof(junk));
            }
            o = thread_outcome(bc, fd);
        }
        close(fd);
        bc->counts[o]++;
        bc->rounds++;
        if (getenv("BAD_INPUT_HAMMER") == NULL)
            harness_sleep_ms(10);
    } while (!atomic_load(bc->stop));
    return NULL;
}

static void many_bad_clients_do_not_disturb_good_queries(void **state)
{
    fixture_t *f = *state;
    start(f, "max_packet_size = 1024\nmax_client_conn = 200\n");
    witness_begin(f);
    PGconn *good = pg_open(f, "good");
    atomic_bool stop = false;
    static bad_client_t bcs[BAD_CLIENT_THREADS];
    memset(bcs, 0, sizeof(bcs));
    for (int i = 0; i < BAD_CLIENT_THREADS; i++) {
        bcs[i].index = i;
        bcs[i].port = f->proc.port;
        bcs[i].stop = &stop;
        assert_int_equal(pthread_create(&bcs[i].thread, NULL, bad_client_main, &bcs[i]), 0);
    }
    int ok = 0;
    char first_failure[256] = "";
    for (int i = 0; i < GOOD_QUERIES; i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        PGresult *r = PQexec(good, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
            atoi(PQgetvalue(r, 0, 0)) == i)
            ok++;
        else if (first_failure[0] == '\0')
            snprintf(first_failure, sizeof(first_failure), "query %d: %s", i, PQerrorMessage(good));
        PQclear(r);
    }
    atomic_store(&stop, true);
    int totals[OUTCOME_NO_CONNECT + 1] = {0};
    int rounds = 0;
    const char *other = NULL;
    int timeouts_by_kind[5] = {0};
    for (int i = 0; i < BAD_CLIENT_THREADS; i++) {
        assert_int_equal(pthread_join(bcs[i].thread, NULL), 0);
        rounds += bcs[i].rounds;
        timeouts_by_kind[i % 5] += bcs[i].counts[OUTCOME_TIMEOUT];
        for (int o = 0; o <= OUTCOME_NO_CONNECT; o++)
            totals[o] += bcs[i].counts[o];
        if (bcs[i].last_other[0] != '\0' && other == NULL)
            other = bcs[i].last_other;
    }
    print_message("bad rounds %d: 08P01 %d, other error %d, closed %d, timeout %d, "
                  "no login %d, no connect %d\n",
                  rounds, totals[OUTCOME_ERROR_08P01], totals[OUTCOME_OTHER_ERROR],
                  totals[OUTCOME_CLOSED], totals[OUTCOME_TIMEOUT], totals[OUTCOME_NO_LOGIN],
                  totals[OUTCOME_NO_CONNECT]);
    print_message("timeouts by kind: startup garbage %d, unknown type %d, length 2 %d, "
                  "over max_packet_size %d, garbage after startup %d\n",
                  timeouts_by_kind[0], timeouts_by_kind[1], timeouts_by_kind[2],
                  timeouts_by_kind[3], timeouts_by_kind[4]);
    if (ok != GOOD_QUERIES)
        fail_msg("%d of %d good queries succeeded; first failure %s", ok, GOOD_QUERIES,
                 first_failure);
    if (other != NULL)
        fail_msg("a bad client got an unexpected error: %s", other);
    assert_int_equal(totals[OUTCOME_TIMEOUT], 0);
    assert_int_equal(totals[OUTCOME_NO_LOGIN], 0);
    assert_int_equal(totals[OUTCOME_NO_CONNECT], 0);
    assert_true(rounds >= BAD_CLIENT_THREADS);
    pg_close(f, good);
    others_unaffected(f);
    finish(f);
}

#define BAD_INPUT_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup_fixture, teardown_fixture)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BAD_INPUT_TEST(message_length_below_four_is_refused_and_closed),
        BAD_INPUT_TEST(message_over_max_packet_size_is_refused_and_closed),
        BAD_INPUT_TEST(unknown_message_type_is_refused_and_closed),
        BAD_INPUT_TEST(unknown_message_type_is_refused_while_all_servers_are_busy),
        BAD_INPUT_TEST(startup_length_out_of_bounds_is_refused_and_closed),
        BAD_INPUT_TEST(startup_with_protocol_2_is_refused_and_closed),
        BAD_INPUT_TEST(startup_without_user_is_refused_and_closed),
        BAD_INPUT_TEST(startup_with_unsupported_parameter_is_refused_and_closed),
        BAD_INPUT_TEST(startup_for_unknown_database_gets_3d000),
        BAD_INPUT_TEST(ssl_and_gssenc_requests_get_n_and_startup_goes_on),
        BAD_INPUT_TEST(startup_that_never_completes_is_closed_by_login_timeout),
        BAD_INPUT_TEST(silent_connection_waits_for_its_first_bytes),
        BAD_INPUT_TEST(silent_connection_is_timed_out_without_defer_accept),
        BAD_INPUT_TEST(truncated_message_blocks_no_one),
        BAD_INPUT_TEST(client_gone_mid_transaction_is_rolled_back),
        BAD_INPUT_TEST(client_gone_mid_query_frees_the_only_server),
        BAD_INPUT_TEST(terminate_closes_without_error),
        BAD_INPUT_TEST(garbage_instead_of_startup_is_refused),
        BAD_INPUT_TEST(client_over_max_client_conn_gets_53300),
        BAD_INPUT_TEST(many_bad_clients_do_not_disturb_good_queries),
    };
    /* BAD_INPUT_FILTER=pattern runs only the matching tests (cmocka's wildcards). */
    const char *filter = getenv("BAD_INPUT_FILTER");
    if (filter != NULL)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, setup_table, teardown_table);
}
