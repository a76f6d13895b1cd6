/*
 * test_console.c
 *    The admin console against a running pgturbo: every SHOW command's columns (PgBouncer 1.18
 *    names, in order) and rows that match what the test's own clients are doing, PAUSE,
 *    RESUME, KILL, RELOAD and SHUTDOWN, and the refusals (unknown command, a stats user running
 *    an admin command, a user in neither list, the extended protocol).
 *
 *    Each test sends its pooled clients to a database of its own (through the "*" entry), so
 *    the rows it looks at hold only its own clients and servers. Console logins use the user
 *    names it_admin (admin_users) and it_stats (stats_users); auth_type is trust.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define SETTINGS                                                                                   \
    "pool_mode = transaction\n"                                                                    \
    "default_pool_size = 3\n"                                                                      \
    "admin_users = it_admin\n"                                                                     \
    "stats_users = it_stats, it_stats2\n"

static const char *const databases[] = {
    "it_con_pools", "it_con_wait",   "it_con_clients", "it_con_servers",
    "it_con_pause", "it_con_kill",   "it_con_workers", "it_con_other",
    "it_con_early", "it_con_reload", "it_con_stats",
};
#define N_DATABASES (sizeof(databases) / sizeof(databases[0]))

static const char *const pool_columns[] = {
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
};

static const char *const stats_columns[] = {
    "database",        "total_xact_count", "total_query_count", "total_received", "total_sent",
    "total_xact_time", "total_query_time", "total_wait_time",   "avg_xact_count", "avg_query_count",
    "avg_recv",        "avg_sent",         "avg_xact_time",     "avg_query_time", "avg_wait_time",
};

static const char *const connection_columns[] = {
    "type",         "user",       "database",     "state",        "addr", "port",
    "local_addr",   "local_port", "connect_time", "request_time", "wait", "wait_us",
    "close_needed", "ptr",        "link",         "remote_pid",   "tls",  "application_name",
};

static const char *const database_columns[] = {
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool",
    "pool_mode",
    "max_connections",
    "current_connections",
    "paused",
    "disabled",
};

static const char *const config_columns[] = {"key", "value", "default", "changeable"};

#define N_OF(a) ((int)(sizeof(a) / sizeof(a[0])))

/* ---- helpers ---- */

/* Direct connections are named so that backend counts leave them out. */
static PGconn *direct_connect(const char *db)
{
    return harness_connect(harness_pg_port(), db, "application_name=it_direct");
}

static int setup_databases(void **state)
{
    (void)state;
    PGconn *c = direct_connect("postgres");
    harness_silence_notices(c);
    for (size_t i = 0; i < N_DATABASES; i++) {
        char sql[256];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", databases[i]);
        harness_exec_ok(c, sql);
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", databases[i]);
        harness_exec_ok(c, sql);
    }
    PQfinish(c);
    return 0;
}

static int teardown_databases(void **state)
{
    (void)state;
    PGconn *c = direct_connect("postgres");
    harness_silence_notices(c);
    for (size_t i = 0; i < N_DATABASES; i++) {
        char sql[256];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", databases[i]);
        harness_exec_ok(c, sql);
    }
    PQfinish(c);
    return 0;
}

/* Client backends connected to database db (pgturbo's servers for that test). */
static int backends(PGconn *direct, const char *db)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' "
             "AND backend_type = 'client backend' AND application_name <> 'it_direct'",
             db);
    char *v = harness_query_value(direct, sql);
    int n = atoi(v);
    free(v);
    return n;
}

static int wait_backends(PGconn *direct, const char *db, int want, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    int n;
    while ((n = backends(direct, db)) != want && harness_now_ms() < deadline)
        harness_sleep_ms(50);
    return n;
}

/* A console connection as user (to the database "pgturbo" unless dbname says otherwise). */
static PGconn *console_as(int port, const char *dbname, const char *user)
{
    char extra[128];
    snprintf(extra, sizeof(extra), "user=%s", user);
    return harness_connect(port, dbname, extra);
}

static PGconn *admin_console(int port)
{
    return console_as(port, "pgturbo", "it_admin");
}

/* Runs a console command that returns rows; fails the test on anything else. */
static PGresult *show(PGconn *console, const char *command)
{
    PGresult *res = PQexec(console, command);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(console));
        PQclear(res);
        fail_msg("\"%s\" failed: %s", command, msg);
    }
    return res;
}

/* Runs a console command that returns no rows and checks its command tag. */
static void command_ok(PGconn *console, const char *command, const char *tag)
{
    PGresult *res = PQexec(console, command);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(console));
        PQclear(res);
        fail_msg("\"%s\" failed: %s", command, msg);
    }
    assert_string_equal(PQcmdStatus(res), tag);
    PQclear(res);
}

static void assert_columns(const PGresult *res, const char *const *names, int n)
{
    assert_int_equal(PQnfields(res), n);
    for (int i = 0; i < n; i++)
        assert_string_equal(PQfname(res, i), names[i]);
}

static int column(const PGresult *res, const char *name)
{
    int i = PQfnumber(res, name);
    if (i < 0)
        fail_msg("no column %s", name);
    return i;
}

/* The value of column name in row (NULL for SQL NULL). */
static const char *cell(const PGresult *res, int row, const char *name)
{
    int col = column(res, name);
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static long long cell_int(const PGresult *res, int row, const char *name)
{
    const char *v = cell(res, row, name);
    if (v == NULL)
        fail_msg("column %s of row %d is NULL", name, row);
    char *end;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end != '\0')
        fail_msg("column %s of row %d is \"%s\", not a number", name, row, v);
    return n;
}

/* The first row whose column name is value, or -1. */
static int find_row(const PGresult *res, const char *name, const char *value)
{
    int col = column(res, name);
    for (int r = 0; r < PQntuples(res); r++)
        if (!PQgetisnull(res, r, col) && strcmp(PQgetvalue(res, r, col), value) == 0)
            return r;
    return -1;
}

static int must_find_row(const PGresult *res, const char *name, const char *value)
{
    int r = find_row(res, name, value);
    if (r < 0)
        fail_msg("no row with %s = %s among %d rows", name, value, PQntuples(res));
    return r;
}

/* How many rows have column name equal to value. */
static int count_rows(const PGresult *res, const char *name, const char *value)
{
    int col = column(res, name);
    int n = 0;
    for (int r = 0; r < PQntuples(res); r++)
        if (!PQgetisnull(res, r, col) && strcmp(PQgetvalue(res, r, col), value) == 0)
            n++;
    return n;
}

/* The row of a SHOW CLIENTS / SHOW SERVERS answer whose port column is port, or -1. */
static int row_with_port(const PGresult *res, const char *port_column, int port)
{
    char text[16];
    snprintf(text, sizeof(text), "%d", port);
    return find_row(res, port_column, text);
}

/* The local TCP port of a libpq connection (the "port" pgturbo sees the client on). */
static int local_port(PGconn *conn)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    if (getsockname(PQsocket(conn), (struct sockaddr *)&sa, &len) != 0)
        fail_msg("getsockname failed");
    return ntohs(sa.sin_port);
}

static void assert_value(PGconn *conn, const char *sql, const char *expected)
{
    char *v = harness_query_value(conn, sql);
    if (v == NULL || strcmp(v, expected) != 0) {
        char got[256];
        snprintf(got, sizeof(got), "%s", v ? v : "(null)");
        free(v);
        fail_msg("\"%s\": expected \"%s\", got \"%s\"", sql, expected, got);
    }
    free(v);
}

/* True when the result of an asynchronous query has arrived within timeout_ms. */
static bool result_ready(PGconn *c, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    do {
        if (!PQconsumeInput(c))
            return true;
        if (!PQisBusy(c))
            return true;
        harness_sleep_ms(10);
    } while (harness_now_ms() < deadline);
    return false;
}

/* Collects the result of an asynchronous single-row, single-column query and checks it. */
static void expect_async_value(PGconn *c, const char *expected)
{
    PGresult *res = PQgetResult(c);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(c));
        PQclear(res);
        fail_msg("asynchronous query failed: %s", msg);
    }
    assert_string_equal(PQgetvalue(res, 0, 0), expected);
    PQclear(res);
    assert_null(PQgetResult(c));
}

/*
 * Collects every result of a query sent with PQsendQueryParams or PQsendPrepare; returns the
 * SQLSTATE of the first error ("" for none) and copies its message. PQexecParams would
 * report libpq's own "server closed the connection" instead of an ErrorResponse that came
 * just before the close.
 */
static const char *first_error(PGconn *c, char *message, size_t len)
{
    static char sqlstate[6];
    sqlstate[0] = '\0';
    message[0] = '\0';
    bool have_error = false;
    PGresult *res;
    while ((res = PQgetResult(c)) != NULL) {
        if (!have_error && PQresultStatus(res) == PGRES_FATAL_ERROR) {
            const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            snprintf(sqlstate, sizeof(sqlstate), "%s", code ? code : "");
            snprintf(message, len, "%s", PQresultErrorMessage(res));
            have_error = true;
        }
        PQclear(res);
    }
    return sqlstate;
}

/* Starts a connection as user postgres without waiting for it; see connect_done(). */
static PGconn *connect_start(int port, const char *db, PostgresPollingStatusType *st)
{
    char conninfo[256];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=%s user=postgres", port,
             db);
    PGconn *c = PQconnectStart(conninfo);
    assert_non_null(c);
    assert_int_not_equal(PQstatus(c), CONNECTION_BAD);
    *st = PGRES_POLLING_WRITING; /* what libpq says to assume before the first poll */
    return c;
}

/* Drives a connection from connect_start() for up to timeout_ms; true once it is up. */
static bool connect_done(PGconn *c, PostgresPollingStatusType *st, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    for (;;) {
        if (*st == PGRES_POLLING_OK)
            return true;
        if (*st == PGRES_POLLING_FAILED)
            fail_msg("connection failed: %s", PQerrorMessage(c));
        long long left = deadline - harness_now_ms();
        if (left <= 0)
            return false;
        struct pollfd pfd = {PQsocket(c), *st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        if (poll(&pfd, 1, (int)left) == 0)
            return false;
        *st = PQconnectPoll(c);
    }
}

static const char *console_error(PGconn *console, const char *command)
{
    return harness_exec_error(console, command);
}

static void stop_ok(pgturbo_proc_t *p)
{
    assert_int_equal(harness_stop_pgturbo(p, 10), 0);
}

/* ---- SHOW POOLS ---- */

static void test_show_pools_counts_active_clients_and_servers(void **state)
{
    (void)state;
    const char *db = "it_con_pools";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = harness_connect(p.port, db, NULL);
        assert_value(c[i], "SELECT 1", "1");
    }
    harness_exec_ok(c[0], "BEGIN");
    assert_value(c[0], "SELECT 'in a transaction'", "in a transaction");

    PGconn *console = admin_console(p.port);
    PGresult *res = show(console, "SHOW POOLS");
    assert_columns(res, pool_columns, N_OF(pool_columns));
    int r = must_find_row(res, "database", db);
    assert_string_equal(cell(res, r, "user"), "postgres");
    assert_int_equal(cell_int(res, r, "cl_active"), 3);
    assert_int_equal(cell_int(res, r, "cl_waiting"), 0);
    assert_int_equal(cell_int(res, r, "sv_active"), 1);
    assert_true(cell_int(res, r, "sv_idle") <= 2);
    assert_int_equal(cell_int(res, r, "sv_login"), 0);
    assert_int_equal(cell_int(res, r, "maxwait"), 0);
    assert_int_equal(cell_int(res, r, "maxwait_us"), 0);
    assert_string_equal(cell(res, r, "pool_mode"), "transaction");
    /* The console's own connection is no pool's client. */
    assert_int_equal(find_row(res, "database", "pgturbo"), -1);
    PQclear(res);

    /* The transaction ends: its server goes back to the pool. */
    harness_exec_ok(c[0], "COMMIT");
    res = show(console, "show pools;");
    r = must_find_row(res, "database", db);
    assert_int_equal(cell_int(res, r, "cl_active"), 3);
    assert_int_equal(cell_int(res, r, "sv_active"), 0);
    assert_true(cell_int(res, r, "sv_idle") >= 1);
    PQclear(res);

    /* A client leaves. */
    PQfinish(c[2]);
    long long deadline = harness_now_ms() + 3000;
    long long active;
    for (;;) {
        res = show(console, "SHOW POOLS");
        active = cell_int(res, must_find_row(res, "database", db), "cl_active");
        PQclear(res);
        if (active == 2 || harness_now_ms() > deadline)
            break;
        harness_sleep_ms(20);
    }
    assert_int_equal(active, 2);

    PQfinish(console);
    PQfinish(c[0]);
    PQfinish(c[1]);
    stop_ok(&p);
}

static void test_show_pools_counts_waiting_client(void **state)
{
    (void)state;
    const char *db = "it_con_wait";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p,
                          "pool_mode = transaction\ndefault_pool_size = 1\n"
                          "admin_users = it_admin\n",
                          NULL);
    PGconn *a = harness_connect(p.port, db, NULL);
    PGconn *b = harness_connect(p.port, db, NULL);
    harness_exec_ok(a, "BEGIN");
    assert_value(a, "SELECT 'holding'", "holding");
    assert_int_equal(PQsendQuery(b, "SELECT 'b got a server'"), 1);
    assert_false(result_ready(b, 300));

    PGconn *console = admin_console(p.port);
    PGresult *res = show(console, "SHOW POOLS");
    int r = must_find_row(res, "database", db);
    assert_int_equal(cell_int(res, r, "cl_active"), 1);
    assert_int_equal(cell_int(res, r, "cl_waiting"), 1);
    assert_int_equal(cell_int(res, r, "sv_active"), 1);
    assert_int_equal(cell_int(res, r, "sv_idle"), 0);
    long long maxwait = cell_int(res, r, "maxwait");
    long long maxwait_us = cell_int(res, r, "maxwait_us");
    assert_true(maxwait >= 0);
    assert_true(maxwait_us >= 0 && maxwait_us < 1000000);
    long long waited_us = maxwait * 1000000 + maxwait_us;
    fprintf(stderr, "maxwait %lld s %lld us\n", maxwait, maxwait_us);
    assert_true(waited_us >= 250000 && waited_us < 10000000);
    PQclear(res);

    /* SHOW CLIENTS agrees: b waits, a is active. */
    res = show(console, "SHOW CLIENTS");
    int rb = row_with_port(res, "port", local_port(b));
    int ra = row_with_port(res, "port", local_port(a));
    assert_true(ra >= 0 && rb >= 0);
    assert_string_equal(cell(res, rb, "state"), "waiting");
    assert_string_equal(cell(res, ra, "state"), "active");
    long long b_wait_us = cell_int(res, rb, "wait") * 1000000 + cell_int(res, rb, "wait_us");
    assert_true(b_wait_us >= 250000 && b_wait_us < 10000000);
    assert_int_equal(cell_int(res, ra, "wait"), 0);
    assert_int_equal(cell_int(res, ra, "wait_us"), 0);
    /* a holds the server: its link names it. */
    assert_true(strlen(cell(res, ra, "link")) > 0);
    assert_string_equal(cell(res, rb, "link"), "");
    PQclear(res);

    harness_exec_ok(a, "COMMIT");
    assert_true(result_ready(b, 3000));
    expect_async_value(b, "b got a server");

    res = show(console, "SHOW POOLS");
    r = must_find_row(res, "database", db);
    assert_int_equal(cell_int(res, r, "cl_active"), 2);
    assert_int_equal(cell_int(res, r, "cl_waiting"), 0);
    assert_int_equal(cell_int(res, r, "maxwait"), 0);
    assert_int_equal(cell_int(res, r, "maxwait_us"), 0);
    PQclear(res);

    PQfinish(console);
    PQfinish(a);
    PQfinish(b);
    stop_ok(&p);
}

/* ---- SHOW STATS ---- */

typedef struct stats {
    long long xact_count, query_count, received, sent, xact_time, query_time, avg_xact_time;
} stats_t;

static stats_t database_stats(PGconn *console, const char *db)
{
    PGresult *res = show(console, "SHOW STATS");
    assert_columns(res, stats_columns, N_OF(stats_columns));
    assert_int_equal(count_rows(res, "database", db), 1);
    int r = must_find_row(res, "database", db);
    stats_t s = {
        cell_int(res, r, "total_xact_count"), cell_int(res, r, "total_query_count"),
        cell_int(res, r, "total_received"),   cell_int(res, r, "total_sent"),
        cell_int(res, r, "total_xact_time"),  cell_int(res, r, "total_query_time"),
        cell_int(res, r, "avg_xact_time"),
    };
    PQclear(res);
    return s;
}

static void test_show_stats_counts_queries_exactly(void **state)
{
    (void)state;
    const char *db = "it_con_stats";
    harness_create_database(db);
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *c = harness_connect(p.port, db, NULL);
    PGconn *console = console_as(p.port, "pgturbo", "it_stats");
    stats_t before = database_stats(console, db);
    assert_int_equal(before.xact_count, 0);
    assert_int_equal(before.query_count, 0);

    enum { N = 10 };
    long long query_bytes = 0;
    for (int i = 0; i < N; i++) {
        char sql[64], want[16];
        snprintf(sql, sizeof(sql), "SELECT %d", i);
        snprintf(want, sizeof(want), "%d", i);
        assert_value(c, sql, want);
        query_bytes += 1 + 4 + (long long)strlen(sql) + 1; /* a Query message */
    }
    stats_t after = database_stats(console, db);
    assert_int_equal(after.xact_count - before.xact_count, N);
    assert_int_equal(after.query_count - before.query_count, N);
    assert_int_equal(after.received - before.received, query_bytes);
    assert_true(after.received > 0);
    assert_true(after.sent > before.sent);
    assert_true(after.xact_time > 0);
    assert_true(after.query_time > 0);
    assert_true(after.avg_xact_time > 0);
    assert_int_equal(after.avg_xact_time, after.xact_time / after.xact_count);

    /* A transaction of three statements: one more transaction, three more queries. */
    harness_exec_ok(c, "BEGIN");
    assert_value(c, "SELECT 'a'", "a");
    harness_exec_ok(c, "COMMIT");
    stats_t tx = database_stats(console, db);
    assert_int_equal(tx.xact_count - after.xact_count, 1);
    assert_int_equal(tx.query_count - after.query_count, 3);

    /* The console's own commands count in no pool's statistics. */
    stats_t again = database_stats(console, db);
    assert_int_equal(again.xact_count, tx.xact_count);
    assert_int_equal(again.query_count, tx.query_count);

    PQfinish(console);
    PQfinish(c);
    stop_ok(&p);
    harness_drop_database(db);
}

/* ---- SHOW CLIENTS and SHOW SERVERS ---- */

static void test_show_clients_lists_console_and_clients(void **state)
{
    (void)state;
    const char *db = "it_con_clients";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *a = harness_connect(p.port, db, "application_name=it_app_a");
    PGconn *b = harness_connect(p.port, db, "application_name=it_app_b");
    assert_value(a, "SELECT 1", "1");
    PGconn *console = admin_console(p.port);

    PGresult *res = show(console, "SHOW CLIENTS");
    assert_columns(res, connection_columns, N_OF(connection_columns));
    assert_int_equal(PQntuples(res), 3);
    assert_int_equal(count_rows(res, "type", "C"), 3);

    int rc = row_with_port(res, "port", local_port(console));
    assert_true(rc >= 0);
    assert_string_equal(cell(res, rc, "user"), "it_admin");
    assert_string_equal(cell(res, rc, "database"), "pgturbo");
    assert_string_equal(cell(res, rc, "state"), "active");
    assert_string_equal(cell(res, rc, "addr"), "127.0.0.1");
    assert_string_equal(cell(res, rc, "local_addr"), "127.0.0.1");
    assert_int_equal(cell_int(res, rc, "local_port"), p.port);

    PGconn *clients[] = {a, b};
    const char *apps[] = {"it_app_a", "it_app_b"};
    for (int i = 0; i < 2; i++) {
        int r = row_with_port(res, "port", local_port(clients[i]));
        assert_true(r >= 0);
        assert_string_equal(cell(res, r, "type"), "C");
        assert_string_equal(cell(res, r, "user"), "postgres");
        assert_string_equal(cell(res, r, "database"), db);
        assert_string_equal(cell(res, r, "state"), "active");
        assert_string_equal(cell(res, r, "addr"), "127.0.0.1");
        assert_string_equal(cell(res, r, "local_addr"), "127.0.0.1");
        assert_int_equal(cell_int(res, r, "local_port"), p.port);
        assert_string_equal(cell(res, r, "application_name"), apps[i]);
        assert_int_equal(cell_int(res, r, "wait"), 0);
        assert_int_equal(cell_int(res, r, "close_needed"), 0);
        assert_string_equal(cell(res, r, "link"), ""); /* idle in transaction mode */
        assert_string_equal(cell(res, r, "tls"), "");
        const char *t = cell(res, r, "connect_time");
        assert_non_null(t);
        assert_int_equal(strlen(t), strlen("2024-01-01 00:00:00 UTC"));
        assert_non_null(strstr(t, " UTC"));
    }
    PQclear(res);

    /* A client that leaves leaves the list. */
    int b_port = local_port(b);
    PQfinish(b);
    long long deadline = harness_now_ms() + 3000;
    bool gone;
    for (;;) {
        res = show(console, "SHOW CLIENTS");
        gone = row_with_port(res, "port", b_port) < 0 && PQntuples(res) == 2;
        PQclear(res);
        if (gone || harness_now_ms() > deadline)
            break;
        harness_sleep_ms(20);
    }
    assert_true(gone);

    PQfinish(console);
    PQfinish(a);
    stop_ok(&p);
}

static void test_show_servers_shows_backend_pids(void **state)
{
    (void)state;
    const char *db = "it_con_servers";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *a = harness_connect(p.port, db, NULL);
    harness_exec_ok(a, "BEGIN");
    char *pid = harness_query_value(a, "SELECT pg_backend_pid()");
    PGconn *console = admin_console(p.port);

    PGresult *res = show(console, "SHOW SERVERS");
    assert_columns(res, connection_columns, N_OF(connection_columns));
    int r = must_find_row(res, "remote_pid", pid);
    assert_string_equal(cell(res, r, "type"), "S");
    assert_string_equal(cell(res, r, "user"), "postgres");
    assert_string_equal(cell(res, r, "database"), db);
    assert_string_equal(cell(res, r, "state"), "active");
    assert_string_equal(cell(res, r, "addr"), "127.0.0.1");
    assert_int_equal(cell_int(res, r, "port"), harness_pg_port());
    assert_string_equal(cell(res, r, "local_addr"), "127.0.0.1");
    assert_true(cell_int(res, r, "local_port") > 0);
    const char *link = cell(res, r, "link");
    assert_true(link != NULL && strlen(link) > 0);
    char server_ptr[32];
    snprintf(server_ptr, sizeof(server_ptr), "%s", cell(res, r, "ptr"));
    char client_ptr[32];
    snprintf(client_ptr, sizeof(client_ptr), "%s", link);
    /* Every server of the database is listed, and no more than the pool allows. */
    assert_true(count_rows(res, "database", db) >= 1 && count_rows(res, "database", db) <= 3);
    PQclear(res);

    /* The client row links back to the server row. */
    res = show(console, "SHOW CLIENTS");
    int rc = row_with_port(res, "port", local_port(a));
    assert_true(rc >= 0);
    assert_string_equal(cell(res, rc, "ptr"), client_ptr);
    assert_string_equal(cell(res, rc, "link"), server_ptr);
    PQclear(res);

    /* The backend seen directly is the one listed, connected from the listed local port. */
    PGconn *direct = direct_connect("postgres");
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT datname || ' ' || client_port FROM pg_stat_activity WHERE pid = %s", pid);
    char *seen = harness_query_value(direct, sql);
    res = show(console, "SHOW SERVERS");
    r = must_find_row(res, "remote_pid", pid);
    char want[128];
    snprintf(want, sizeof(want), "%s %s", db, cell(res, r, "local_port"));
    assert_string_equal(seen, want);
    PQclear(res);
    free(seen);

    /* After the transaction the server is idle and unlinked. */
    harness_exec_ok(a, "COMMIT");
    res = show(console, "SHOW SERVERS");
    r = must_find_row(res, "remote_pid", pid);
    assert_string_equal(cell(res, r, "state"), "idle");
    assert_string_equal(cell(res, r, "link"), "");
    PQclear(res);

    free(pid);
    PQfinish(direct);
    PQfinish(console);
    PQfinish(a);
    stop_ok(&p);
}

/* ---- SHOW DATABASES, CONFIG, VERSION ---- */

static void test_show_databases_lists_entries(void **state)
{
    (void)state;
    char entries[512];
    snprintf(entries, sizeof(entries),
             "it_con_alias = host=127.0.0.1 port=%d dbname=it_con_other pool_size=7 "
             "pool_mode=session\n",
             harness_pg_port());
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, entries);
    PGconn *console = console_as(p.port, "pgturbo", "it_stats");
    PGresult *res = show(console, "SHOW DATABASES");
    assert_columns(res, database_columns, N_OF(database_columns));
    assert_int_equal(PQntuples(res), 3);
    char pg_port[16];
    snprintf(pg_port, sizeof(pg_port), "%d", harness_pg_port());

    int r = must_find_row(res, "name", "it_con_alias");
    assert_string_equal(cell(res, r, "host"), "127.0.0.1");
    assert_string_equal(cell(res, r, "port"), pg_port);
    assert_string_equal(cell(res, r, "database"), "it_con_other");
    assert_null(cell(res, r, "force_user"));
    assert_int_equal(cell_int(res, r, "pool_size"), 7);
    assert_int_equal(cell_int(res, r, "min_pool_size"), 0);
    assert_int_equal(cell_int(res, r, "reserve_pool"), 0);
    assert_string_equal(cell(res, r, "pool_mode"), "session");
    assert_int_equal(cell_int(res, r, "current_connections"), 0);
    assert_int_equal(cell_int(res, r, "paused"), 0);
    assert_int_equal(cell_int(res, r, "disabled"), 0);

    r = must_find_row(res, "name", "postgres");
    assert_string_equal(cell(res, r, "database"), "postgres");
    assert_int_equal(cell_int(res, r, "pool_size"), 3); /* default_pool_size */
    assert_string_equal(cell(res, r, "pool_mode"), "transaction");

    r = must_find_row(res, "name", "*");
    assert_string_equal(cell(res, r, "port"), pg_port);
    assert_int_equal(cell_int(res, r, "pool_size"), 3);
    PQclear(res);

    /* A client of the alias opens a server: current_connections counts it. */
    PGconn *c = harness_connect(p.port, "it_con_alias", NULL);
    assert_value(c, "SELECT current_database()", "it_con_other");
    res = show(console, "SHOW DATABASES");
    r = must_find_row(res, "name", "it_con_alias");
    assert_int_equal(cell_int(res, r, "current_connections"), 1);
    PQclear(res);

    PQfinish(c);
    PQfinish(console);
    stop_ok(&p);
}

static void test_show_config_lists_settings(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *console = admin_console(p.port);
    PGresult *res = show(console, "SHOW CONFIG");
    assert_columns(res, config_columns, N_OF(config_columns));
    assert_int_equal(count_rows(res, "key", "listen_port"), 1);

    char port[16];
    snprintf(port, sizeof(port), "%d", p.port);
    int r = must_find_row(res, "key", "listen_port");
    assert_string_equal(cell(res, r, "value"), port);
    assert_string_equal(cell(res, r, "default"), "6432");
    assert_string_equal(cell(res, r, "changeable"), "no");

    r = must_find_row(res, "key", "default_pool_size");
    assert_string_equal(cell(res, r, "value"), "3");
    assert_string_equal(cell(res, r, "default"), "20");
    assert_string_equal(cell(res, r, "changeable"), "yes");

    r = must_find_row(res, "key", "pool_mode");
    assert_string_equal(cell(res, r, "value"), "transaction");
    assert_string_equal(cell(res, r, "default"), "session");

    r = must_find_row(res, "key", "workers");
    assert_string_equal(cell(res, r, "value"), "2");
    assert_string_equal(cell(res, r, "changeable"), "no");

    r = must_find_row(res, "key", "admin_users");
    assert_string_equal(cell(res, r, "value"), "it_admin");
    r = must_find_row(res, "key", "auth_type");
    assert_string_equal(cell(res, r, "value"), "trust");

    /* Keys pgturbo only accepts for compatibility are not shown. */
    assert_int_equal(find_row(res, "key", "logfile"), -1);
    PQclear(res);
    PQfinish(console);
    stop_ok(&p);
}

static void test_show_version_on_both_console_names(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    const char *names[] = {"pgturbo", "pgbouncer"};
    const char *commands[] = {"SHOW VERSION", "  show Version ; "};
    for (int i = 0; i < 2; i++) {
        PGconn *console = console_as(p.port, names[i], "it_stats");
        PGresult *res = show(console, commands[i]);
        assert_int_equal(PQnfields(res), 1);
        assert_string_equal(PQfname(res, 0), "version");
        assert_int_equal(PQntuples(res), 1);
        assert_int_equal(strncmp(PQgetvalue(res, 0, 0), "pgturbo", 7), 0);
        assert_string_equal(PQcmdStatus(res), "SHOW");
        PQclear(res);
        PQfinish(console);
    }
    stop_ok(&p);
}

/* ---- PAUSE, RESUME, KILL ---- */

static void test_pause_holds_queries_until_resume(void **state)
{
    (void)state;
    const char *db = "it_con_pause";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *c = harness_connect(p.port, db, NULL);
    assert_value(c, "SELECT 'before'", "before");
    PGconn *other = harness_connect(p.port, "it_con_other", NULL);
    PGconn *console = admin_console(p.port);

    command_ok(console, "PAUSE it_con_pause", "PAUSE");
    assert_int_equal(PQsendQuery(c, "SELECT 'after resume'"), 1);
    assert_false(result_ready(c, 300));
    /* Another database is not paused. */
    assert_value(other, "SELECT 'other'", "other");

    PGresult *res = show(console, "SHOW POOLS");
    int r = must_find_row(res, "database", db);
    assert_int_equal(cell_int(res, r, "cl_waiting"), 1);
    PQclear(res);

    long long t0 = harness_now_ms();
    command_ok(console, "resume it_con_pause;", "RESUME");
    assert_true(result_ready(c, 3000));
    fprintf(stderr, "served %lld ms after RESUME\n", harness_now_ms() - t0);
    expect_async_value(c, "after resume");
    assert_value(c, "SELECT 'again'", "again");

    /* PAUSE without a database pauses all of them. */
    command_ok(console, "PAUSE", "PAUSE");
    assert_int_equal(PQsendQuery(other, "SELECT 'other after resume'"), 1);
    assert_false(result_ready(other, 300));
    command_ok(console, "RESUME", "RESUME");
    assert_true(result_ready(other, 3000));
    expect_async_value(other, "other after resume");

    /* Unknown databases are refused, and the console stays usable. */
    assert_string_equal(console_error(console, "PAUSE it_con_no_such_db"), "3D000");
    assert_string_equal(console_error(console, "RESUME it_con_no_such_db"), "3D000");
    assert_string_equal(console_error(console, "KILL it_con_no_such_db"), "3D000");
    res = show(console, "SHOW VERSION");
    PQclear(res);

    PQfinish(console);
    PQfinish(other);
    PQfinish(c);
    stop_ok(&p);
}

/*
 * PAUSE of a [databases] entry no client has used yet holds its first client too: that client
 * cannot even log in (its welcome comes from a first server) until RESUME.
 */
static void test_pause_before_first_client(void **state)
{
    (void)state;
    char entries[256];
    snprintf(entries, sizeof(entries), "it_con_early = host=127.0.0.1 port=%d\n",
             harness_pg_port());
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, entries);
    PGconn *console = admin_console(p.port);
    command_ok(console, "PAUSE it_con_early", "PAUSE");
    PostgresPollingStatusType st;
    PGconn *c = connect_start(p.port, "it_con_early", &st);
    assert_false(connect_done(c, &st, 300));
    PGresult *res = show(console, "SHOW POOLS");
    int r = must_find_row(res, "database", "it_con_early");
    assert_int_equal(cell_int(res, r, "cl_waiting"), 1);
    assert_int_equal(cell_int(res, r, "sv_active") + cell_int(res, r, "sv_idle") +
                         cell_int(res, r, "sv_login"),
                     0);
    PQclear(res);
    res = show(console, "SHOW DATABASES");
    assert_int_equal(cell_int(res, must_find_row(res, "name", "it_con_early"), "paused"), 1);
    PQclear(res);

    command_ok(console, "RESUME it_con_early", "RESUME");
    assert_true(connect_done(c, &st, 3000));
    assert_value(c, "SELECT current_database()", "it_con_early");
    PQfinish(c);

    /* PAUSE of all databases holds databases no client has used yet as well. */
    command_ok(console, "PAUSE", "PAUSE");
    c = connect_start(p.port, "it_con_other", &st);
    assert_false(connect_done(c, &st, 300));
    command_ok(console, "RESUME", "RESUME");
    assert_true(connect_done(c, &st, 3000));
    assert_value(c, "SELECT current_database()", "it_con_other");
    PQfinish(c);

    /* A database only "*" would accept is not known until a client has used it. */
    assert_string_equal(console_error(console, "PAUSE it_con_pause"), "3D000");
    c = harness_connect(p.port, "it_con_pause", NULL);
    assert_value(c, "SELECT 1", "1");
    command_ok(console, "PAUSE it_con_pause", "PAUSE");
    command_ok(console, "RESUME it_con_pause", "RESUME");
    PQfinish(c);

    PQfinish(console);
    stop_ok(&p);
}

static void test_kill_closes_clients_and_pauses_database(void **state)
{
    (void)state;
    const char *db = "it_con_kill";
    PGconn *direct = direct_connect("postgres");
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *victim = harness_connect(p.port, db, NULL);
    assert_value(victim, "SELECT 'alive'", "alive");
    PGconn *bystander = harness_connect(p.port, "it_con_other", NULL);
    assert_value(bystander, "SELECT 1", "1");
    assert_int_equal(backends(direct, db), 1);
    PGconn *console = admin_console(p.port);

    command_ok(console, "KILL it_con_kill", "KILL");
    char msg[512];
    const char *code = harness_exec_error_message(victim, "SELECT 'dead?'", msg, sizeof(msg));
    fprintf(stderr, "killed client: [%s] %s", code, msg);
    assert_true(strcmp(code, "57P01") == 0 || strstr(msg, "server closed the connection") != NULL);
    if (strcmp(code, "57P01") == 0)
        assert_non_null(strstr(msg, "killed"));
    assert_int_equal(PQstatus(victim), CONNECTION_BAD);
    /* Its servers are closed too; the other database keeps its client and server. */
    assert_int_equal(wait_backends(direct, db, 0, 3000), 0);
    assert_value(bystander, "SELECT 2", "2");

    /* The database stays paused: a new client logs in but its query waits. */
    PGconn *late = harness_connect(p.port, db, NULL);
    assert_int_equal(PQsendQuery(late, "SELECT 'after kill'"), 1);
    assert_false(result_ready(late, 300));
    assert_int_equal(backends(direct, db), 0);
    command_ok(console, "RESUME it_con_kill", "RESUME");
    assert_true(result_ready(late, 3000));
    expect_async_value(late, "after kill");

    PQfinish(late);
    PQfinish(victim);
    PQfinish(bystander);
    PQfinish(console);
    PQfinish(direct);
    stop_ok(&p);
}

/* ---- RELOAD and SHUTDOWN ---- */

/* Replaces the first occurrence of from by to in the file at path. */
static void edit_file(const char *path, const char *from, const char *to)
{
    char text[8192];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    char *at = strstr(text, from);
    if (at == NULL)
        fail_msg("\"%s\" is not in %s", from, path);
    char out[8400];
    snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(out, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static char *config_value(PGconn *console, const char *key)
{
    PGresult *res = show(console, "SHOW CONFIG");
    char *v = strdup(cell(res, must_find_row(res, "key", key), "value"));
    PQclear(res);
    return v;
}

static void test_reload_applies_edited_config(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *console = admin_console(p.port);
    PGconn *c = harness_connect(p.port, "it_con_reload", NULL);
    assert_value(c, "SELECT 1", "1");
    char *v = config_value(console, "default_pool_size");
    assert_string_equal(v, "3");
    free(v);

    edit_file(p.ini, "default_pool_size = 3", "default_pool_size = 7");
    command_ok(console, "RELOAD", "RELOAD");
    long long deadline = harness_now_ms() + 5000;
    for (;;) {
        v = config_value(console, "default_pool_size");
        if (strcmp(v, "7") == 0 || harness_now_ms() > deadline)
            break;
        free(v);
        harness_sleep_ms(20);
    }
    assert_string_equal(v, "7");
    free(v);

    /* The pools took the new size too, and nothing was dropped. */
    PGresult *res = show(console, "SHOW DATABASES");
    assert_int_equal(cell_int(res, must_find_row(res, "name", "*"), "pool_size"), 7);
    PQclear(res);
    assert_value(c, "SELECT 2", "2");
    assert_true(harness_pgturbo_alive(&p));

    PQfinish(c);
    PQfinish(console);
    stop_ok(&p);
}

static void test_shutdown_stops_daemon(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *c = harness_connect(p.port, "it_con_other", NULL);
    assert_value(c, "SELECT 1", "1");
    PGconn *console = admin_console(p.port);
    command_ok(console, "SHUTDOWN", "SHUTDOWN");
    long long deadline = harness_now_ms() + 5000;
    while (harness_pgturbo_alive(&p) && harness_now_ms() < deadline)
        harness_sleep_ms(20);
    assert_false(harness_pgturbo_alive(&p));
    /* The daemon exited by itself; its exit status is what the harness reports. */
    assert_int_equal(harness_stop_pgturbo(&p, 1), 0);
    PGconn *late = harness_try_connect(p.port, "it_con_other", NULL);
    assert_int_equal(PQstatus(late), CONNECTION_BAD);
    PQfinish(late);
    PQfinish(c);
    PQfinish(console);
}

/* ---- refusals ---- */

static void test_unknown_command_keeps_console_usable(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *console = admin_console(p.port);
    const char *bad[] = {"SHOW NOTHING", "SELECT 1",       "KILL",
                         "PAUSE a b",    "SHOW POOLS NOW", "SHUTDOWN NOW"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[512];
        const char *code = harness_exec_error_message(console, bad[i], msg, sizeof(msg));
        if (strcmp(code, "42601") != 0)
            fail_msg("\"%s\": expected 42601, got %s: %s", bad[i], code, msg);
        assert_int_equal(PQstatus(console), CONNECTION_OK);
    }
    /* An empty query gets EmptyQueryResponse. */
    PGresult *res = PQexec(console, ";");
    assert_int_equal(PQresultStatus(res), PGRES_EMPTY_QUERY);
    PQclear(res);
    res = show(console, "SHOW VERSION");
    assert_int_equal(strncmp(PQgetvalue(res, 0, 0), "pgturbo", 7), 0);
    PQclear(res);
    assert_true(harness_pgturbo_alive(&p));
    PQfinish(console);
    stop_ok(&p);
}

static void test_stats_user_cannot_run_admin_commands(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *c = harness_connect(p.port, "it_con_other", NULL);
    assert_value(c, "SELECT 1", "1");
    PGconn *console = console_as(p.port, "pgturbo", "it_stats2");
    const char *admin[] = {"PAUSE",   "PAUSE it_con_other", "RESUME", "KILL it_con_other", "RELOAD",
                           "SHUTDOWN"};
    for (size_t i = 0; i < sizeof(admin) / sizeof(admin[0]); i++) {
        char msg[512];
        const char *code = harness_exec_error_message(console, admin[i], msg, sizeof(msg));
        if (strcmp(code, "42501") != 0)
            fail_msg("\"%s\": expected 42501, got %s: %s", admin[i], code, msg);
        assert_int_equal(PQstatus(console), CONNECTION_OK);
    }
    /* Nothing happened: the daemon runs and the database is neither paused nor killed. */
    assert_true(harness_pgturbo_alive(&p));
    assert_value(c, "SELECT 2", "2");
    PGresult *res = show(console, "SHOW POOLS");
    assert_true(PQntuples(res) >= 1);
    PQclear(res);
    PQfinish(console);
    PQfinish(c);
    stop_ok(&p);
}

static void test_user_in_neither_list_is_refused_at_login(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    const char *names[] = {"pgturbo", "pgbouncer"};
    for (int i = 0; i < 2; i++) {
        int fd = harness_raw_connect(p.port);
        harness_raw_startup(fd, "it_nobody", names[i]);
        char sqlstate[6];
        assert_true(harness_raw_expect_error(fd, sqlstate));
        assert_string_equal(sqlstate, "42501");
        assert_true(harness_raw_closed(fd, 2000));
        close(fd);
    }
    /* libpq sees a failed connection. */
    PGconn *c = harness_try_connect(p.port, "pgturbo", "user=postgres");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_non_null(strstr(PQerrorMessage(c), "admin"));
    PQfinish(c);
    stop_ok(&p);
}

static void test_extended_protocol_is_refused(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    char msg[512];

    PGconn *console = admin_console(p.port);
    assert_int_equal(PQsendQueryParams(console, "SHOW VERSION", 0, NULL, NULL, NULL, NULL, 0), 1);
    assert_string_equal(first_error(console, msg, sizeof(msg)), "08P01");
    assert_non_null(strstr(msg, "simple queries"));
    assert_int_equal(PQstatus(console), CONNECTION_BAD);
    PQfinish(console);

    console = admin_console(p.port);
    assert_int_equal(PQsendPrepare(console, "s", "SHOW POOLS", 0, NULL), 1);
    assert_string_equal(first_error(console, msg, sizeof(msg)), "08P01");
    assert_int_equal(PQstatus(console), CONNECTION_BAD);
    PQfinish(console);

    /* PQexecParams fails too (libpq reports the closed connection rather than the FATAL). */
    console = admin_console(p.port);
    PGresult *res = PQexecParams(console, "SHOW VERSION", 0, NULL, NULL, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    PQclear(res);
    assert_non_null(strstr(PQerrorMessage(console), "simple queries"));
    PQfinish(console);

    /* The daemon is unaffected. */
    console = admin_console(p.port);
    res = show(console, "SHOW VERSION");
    PQclear(res);
    PQfinish(console);
    stop_ok(&p);
}

/* ---- both workers ---- */

static void test_show_sees_clients_of_both_workers(void **state)
{
    (void)state;
    const char *db = "it_con_workers";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    /* Connections spread over the two workers by SO_REUSEPORT's hash; with 16 the chance that
     * one worker gets them all is 2^-15. */
    enum { N = 16 };
    PGconn *c[N];
    for (int i = 0; i < N; i++) {
        c[i] = harness_connect(p.port, db, NULL);
        assert_value(c[i], "SELECT 1", "1");
    }
    PGconn *console = admin_console(p.port);
    PGresult *res = show(console, "SHOW POOLS");
    int r = must_find_row(res, "database", db);
    assert_int_equal(cell_int(res, r, "cl_active"), N);
    assert_int_equal(cell_int(res, r, "cl_waiting"), 0);
    assert_int_equal(count_rows(res, "database", db), 1);
    PQclear(res);

    res = show(console, "SHOW CLIENTS");
    assert_int_equal(count_rows(res, "database", db), N);
    for (int i = 0; i < N; i++)
        assert_true(row_with_port(res, "port", local_port(c[i])) >= 0);
    assert_int_equal(PQntuples(res), N + 1);
    PQclear(res);

    /* Each worker runs its own servers; all of them are listed. */
    res = show(console, "SHOW SERVERS");
    int servers = count_rows(res, "database", db);
    PQclear(res);
    PGconn *direct = direct_connect("postgres");
    assert_int_equal(servers, backends(direct, db));
    PQfinish(direct);

    /* Statistics of both workers add up. */
    res = show(console, "SHOW STATS");
    r = must_find_row(res, "database", db);
    assert_int_equal(cell_int(res, r, "total_query_count"), N);
    assert_int_equal(cell_int(res, r, "total_xact_count"), N);
    PQclear(res);

    for (int i = 0; i < N; i++)
        PQfinish(c[i]);
    PQfinish(console);
    stop_ok(&p);
}

/* ---- pipelining ---- */

/* Appends a Query message for sql to buf at *n. */
static void put_query(char *buf, size_t *n, const char *sql)
{
    uint32_t len = htonl((uint32_t)(4 + strlen(sql) + 1));
    buf[(*n)++] = 'Q';
    memcpy(buf + *n, &len, 4);
    *n += 4;
    memcpy(buf + *n, sql, strlen(sql) + 1);
    *n += strlen(sql) + 1;
}

/* Reads one answer: returns the name of its first column and the number of DataRows. */
static void read_answer(int fd, char *first_column, size_t len, int *rows)
{
    char buf[65536];
    *rows = 0;
    first_column[0] = '\0';
    for (;;) {
        size_t n;
        int type = harness_raw_read_message(fd, buf, sizeof(buf), &n);
        if (type <= 0)
            fail_msg("connection ended before ReadyForQuery");
        if (type == 'E')
            fail_msg("unexpected ErrorResponse");
        if (type == 'T' && n > 2) {
            size_t name_len = strnlen(buf + 2, len - 1);
            memcpy(first_column, buf + 2, name_len);
            first_column[name_len] = '\0';
        }
        if (type == 'D')
            (*rows)++;
        if (type == 'Z')
            return;
    }
}

static void test_pipelined_commands_are_answered_in_order(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, SETTINGS, NULL);
    PGconn *c = harness_connect(p.port, "it_con_other", NULL);
    assert_value(c, "SELECT 1", "1");

    int fd = harness_raw_connect(p.port);
    harness_raw_startup(fd, "it_admin", "pgturbo");
    assert_true(harness_raw_wait_ready(fd, NULL));
    char msg[512];
    size_t n = 0;
    put_query(msg, &n, "SHOW CLIENTS");
    put_query(msg, &n, "SHOW VERSION");
    put_query(msg, &n, "SHOW POOLS");
    put_query(msg, &n, "SHOW CONFIG");
    put_query(msg, &n, "SHOW STATS");
    harness_raw_send(fd, msg, n);

    char first[64];
    int rows;
    read_answer(fd, first, sizeof(first), &rows);
    assert_string_equal(first, "type");
    assert_int_equal(rows, 2);
    read_answer(fd, first, sizeof(first), &rows);
    assert_string_equal(first, "version");
    assert_int_equal(rows, 1);
    read_answer(fd, first, sizeof(first), &rows);
    assert_string_equal(first, "database");
    assert_true(rows >= 1);
    read_answer(fd, first, sizeof(first), &rows);
    assert_string_equal(first, "key");
    assert_true(rows > 10);
    read_answer(fd, first, sizeof(first), &rows);
    assert_string_equal(first, "database");
    assert_true(rows >= 1);

    /* A console client that leaves while an answer is being gathered harms no one. */
    n = 0;
    put_query(msg, &n, "SHOW SERVERS");
    harness_raw_send(fd, msg, n);
    close(fd);
    PGconn *console = admin_console(p.port);
    PGresult *res = show(console, "SHOW SERVERS");
    PQclear(res);
    PQfinish(console);
    assert_value(c, "SELECT 2", "2");

    PQfinish(c);
    stop_ok(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_show_pools_counts_active_clients_and_servers),
        cmocka_unit_test(test_show_pools_counts_waiting_client),
        cmocka_unit_test(test_show_stats_counts_queries_exactly),
        cmocka_unit_test(test_show_clients_lists_console_and_clients),
        cmocka_unit_test(test_show_servers_shows_backend_pids),
        cmocka_unit_test(test_show_databases_lists_entries),
        cmocka_unit_test(test_show_config_lists_settings),
        cmocka_unit_test(test_show_version_on_both_console_names),
        cmocka_unit_test(test_pause_holds_queries_until_resume),
        cmocka_unit_test(test_pause_before_first_client),
        cmocka_unit_test(test_kill_closes_clients_and_pauses_database),
        cmocka_unit_test(test_reload_applies_edited_config),
        cmocka_unit_test(test_shutdown_stops_daemon),
        cmocka_unit_test(test_unknown_command_keeps_console_usable),
        cmocka_unit_test(test_stats_user_cannot_run_admin_commands),
        cmocka_unit_test(test_user_in_neither_list_is_refused_at_login),
        cmocka_unit_test(test_extended_protocol_is_refused),
        cmocka_unit_test(test_show_sees_clients_of_both_workers),
        cmocka_unit_test(test_pipelined_commands_are_answered_in_order),
    };
    return cmocka_run_group_tests(tests, setup_databases, teardown_databases);
}
