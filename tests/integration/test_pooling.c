/*
 * test_pooling.c
 *    Pooling behaviour of pgturbo against a real server: limits (pool size, max_client_conn,
 *    max_db_connections), the three pool modes, session state carried across server switches,
 *    every timeout, reload, graceful shutdown, and what happens to a server when its client or
 *    its backend goes away mid-transaction.
 *
 *    Each test routes its clients to a database of its own (through the "*" entry), so the
 *    backends pgturbo opens for it are counted exactly in pg_stat_activity over a direct
 *    connection, whatever other test programs run at the same time.
 */
#include "harness.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static const char *const databases[] = {
    "it_pool_tx",     "it_pool_state",    "it_pool_session", "it_pool_stmt",    "it_pool_wait",
    "it_pool_idletx", "it_pool_qtimeout", "it_pool_srvidle", "it_pool_minpool", "it_pool_maxdb",
    "it_pool_maxdb2", "it_pool_reload",   "it_pool_sigterm", "it_pool_kill",    "it_pool_dirty",
    "it_pool_clidle", "it_pool_maxcli",
};
#define N_DATABASES (sizeof(databases) / sizeof(databases[0]))

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
    harness_exec_ok(c, "DROP ROLE IF EXISTS it_pool_user2");
    harness_exec_ok(c, "CREATE ROLE it_pool_user2 LOGIN SUPERUSER");
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
    harness_exec_ok(c, "DROP ROLE IF EXISTS it_pool_user2");
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

/* Waits up to timeout_ms for the backend count of db to become want; returns the last count. */
static int wait_backends(PGconn *direct, const char *db, int want, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    int n;
    while ((n = backends(direct, db)) != want && harness_now_ms() < deadline)
        harness_sleep_ms(50);
    return n;
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

static void stop_ok(pgturbo_proc_t *p)
{
    assert_int_equal(harness_stop_pgturbo(p, 10), 0);
}

/* ---- many clients on a small pool ---- */

struct tx_client {
    int port;
    const char *db;
    int transactions;
    atomic_int *errors;
    char error[256];
};

/* Runs the client's transactions without cmocka (it is not thread-safe); records errors. */
static void *tx_client_main(void *arg)
{
    struct tx_client *t = arg;
    PGconn *c = harness_try_connect(t->port, t->db, NULL);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(t->error, sizeof(t->error), "connect: %s", PQerrorMessage(c));
        atomic_fetch_add(t->errors, 1);
        PQfinish(c);
        return NULL;
    }
    static const char *const steps[] = {"BEGIN", "UPDATE counter SET n = n + 1 WHERE id = 1",
                                        "COMMIT"};
    for (int i = 0; i < t->transactions; i++) {
        for (int k = 0; k < 3; k++) {
            PGresult *res = PQexec(c, steps[k]);
            if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                snprintf(t->error, sizeof(t->error), "%s: %s", steps[k], PQerrorMessage(c));
                atomic_fetch_add(t->errors, 1);
            }
            PQclear(res);
        }
    }
    PQfinish(c);
    return NULL;
}

struct monitor {
    PGconn *direct;
    const char *db;
    atomic_bool stop;
    int max;
    int samples;
};

static void *monitor_main(void *arg)
{
    struct monitor *m = arg;
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' "
             "AND backend_type = 'client backend' AND application_name <> 'it_direct'",
             m->db);
    while (!atomic_load(&m->stop)) {
        PGresult *res = PQexec(m->direct, sql);
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            int n = atoi(PQgetvalue(res, 0, 0));
            if (n > m->max)
                m->max = n;
            m->samples++;
        }
        PQclear(res);
        harness_sleep_ms(5);
    }
    return NULL;
}

static void test_transaction_pooling_50_clients_on_5_servers(void **state)
{
    (void)state;
    const char *db = "it_pool_tx";
    PGconn *direct = direct_connect(db);
    harness_exec_ok(direct, "CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)");
    harness_exec_ok(direct, "INSERT INTO counter VALUES (1, 0)");
    PGconn *monconn = direct_connect("postgres");

    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 5\n", NULL);

    enum { CLIENTS = 50, TRANSACTIONS = 20 };
    atomic_int errors = 0;
    struct tx_client clients[CLIENTS];
    pthread_t threads[CLIENTS];
    struct monitor mon = {.direct = monconn, .db = db};
    pthread_t mon_thread;
    assert_int_equal(pthread_create(&mon_thread, NULL, monitor_main, &mon), 0);
    for (int i = 0; i < CLIENTS; i++) {
        clients[i] = (struct tx_client){p.port, db, TRANSACTIONS, &errors, ""};
        assert_int_equal(pthread_create(&threads[i], NULL, tx_client_main, &clients[i]), 0);
    }
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(threads[i], NULL);
    atomic_store(&mon.stop, true);
    pthread_join(mon_thread, NULL);

    for (int i = 0; i < CLIENTS; i++)
        if (clients[i].error[0] != '\0')
            fprintf(stderr, "client %d: %s", i, clients[i].error);
    assert_int_equal(atomic_load(&errors), 0);
    assert_value(direct, "SELECT n FROM counter WHERE id = 1", "1000");
    fprintf(stderr, "max backends seen: %d in %d samples\n", mon.max, mon.samples);
    assert_true(mon.samples > 0);
    assert_int_equal(mon.max, 5);
    assert_int_equal(backends(direct, db), 5);

    stop_ok(&p);
    assert_int_equal(wait_backends(direct, db, 0, 5000), 0);
    harness_exec_ok(direct, "DROP TABLE counter");
    PQfinish(monconn);
    PQfinish(direct);
}

/* ---- session state across servers ---- */

struct client_state {
    const char *set_sql;
    const char *timezone, *datestyle, *app, *encoding, *scs, *intervalstyle;
    const char *hour, *date, *interval, *e_acute, *backslash_len;
};

static const struct client_state client_states[4] = {
    {"SET TimeZone = 'America/New_York'; SET DateStyle = 'ISO, MDY'; "
     "SET application_name = 'client0'; SET client_encoding = 'UTF8'; "
     "SET standard_conforming_strings = on; SET IntervalStyle = 'postgres'",
     "America/New_York", "ISO, MDY", "client0", "UTF8", "on", "postgres", "07", "2024-03-05",
     "1 day 02:00:00", "\xc3\xa9", "3"},
    {"SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'SQL, DMY'; "
     "SET application_name = 'client1'; SET client_encoding = 'LATIN1'; "
     "SET standard_conforming_strings = off; SET IntervalStyle = 'iso_8601'",
     "Asia/Tokyo", "SQL, DMY", "client1", "LATIN1", "off", "iso_8601", "21", "05/03/2024", "P1DT2H",
     "\xe9", "2"},
    {"SET TimeZone = 'UTC'; SET DateStyle = 'German, DMY'; "
     "SET application_name = 'client2'; SET client_encoding = 'UTF8'; "
     "SET standard_conforming_strings = on; SET IntervalStyle = 'sql_standard'",
     "UTC", "German, DMY", "client2", "UTF8", "on", "sql_standard", "12", "05.03.2024", "1 2:00:00",
     "\xc3\xa9", "3"},
    {"SET TimeZone = 'Europe/Berlin'; SET DateStyle = 'Postgres, MDY'; "
     "SET application_name = 'client3'; SET client_encoding = 'LATIN1'; "
     "SET standard_conforming_strings = off; SET IntervalStyle = 'postgres_verbose'",
     "Europe/Berlin", "Postgres, MDY", "client3", "LATIN1", "off", "postgres_verbose", "13",
     "03-05-2024", "@ 1 day 2 hours", "\xe9", "2"},
};

/* The check query: settings as the server sees them, and their effect on real values. The
 * literal 'a\b' is three characters with standard_conforming_strings on and two without. */
static const char *const state_query =
    "SELECT current_setting('TimeZone'), current_setting('DateStyle'), "
    "current_setting('application_name'), current_setting('client_encoding'), "
    "current_setting('standard_conforming_strings'), current_setting('IntervalStyle'), "
    "to_char(timestamptz '2024-01-01 12:00:00+00', 'HH24'), date '2024-03-05'::text, "
    "interval '1 day 2 hours'::text, chr(233), length('a\\b'), pg_backend_pid()";

/* Runs the check query on client i and compares every column; returns the backend pid. */
static int check_state(PGconn *c, int i, int round)
{
    const struct client_state *s = &client_states[i];
    PGresult *res = PQexec(c, state_query);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
        PQclear(res);
        fail_msg("client %d round %d: %s", i, round, msg);
    }
    const char *want[11] = {s->timezone, s->datestyle,     s->app,          s->encoding,
                            s->scs,      s->intervalstyle, s->hour,         s->date,
                            s->interval, s->e_acute,       s->backslash_len};
    for (int k = 0; k < 11; k++) {
        if (strcmp(PQgetvalue(res, 0, k), want[k]) != 0) {
            char got[128];
            snprintf(got, sizeof(got), "%s", PQgetvalue(res, 0, k));
            PQclear(res);
            fail_msg("client %d round %d column %d: expected \"%s\", got \"%s\"", i, round, k + 1,
                     want[k], got);
        }
    }
    int pid = atoi(PQgetvalue(res, 0, 11));
    PQclear(res);
    return pid;
}

static void test_session_state_follows_client_across_servers(void **state)
{
    (void)state;
    const char *db = "it_pool_state";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 2\n", NULL);
    PGconn *c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = harness_connect(p.port, db, NULL);
        harness_silence_notices(c[i]);
        harness_exec_ok(c[i], client_states[i].set_sql);
        assert_string_equal(PQparameterStatus(c[i], "client_encoding"), client_states[i].encoding);
        assert_string_equal(PQparameterStatus(c[i], "application_name"), client_states[i].app);
    }

    /* Each round one client holds a server in a transaction, so the other three share the
     * other server, one after the other, and the holder changes every round. */
    int pids[2] = {0, 0};
    int n_pids = 0;
    for (int round = 0; round < 24; round++) {
        int holder = round % 4;
        harness_exec_ok(c[holder], "BEGIN");
        for (int k = 0; k < 4; k++) {
            int i = (holder + 1 + k) % 4;
            int pid = check_state(c[i], i, round);
            if (pid != pids[0] && pid != pids[1]) {
                if (n_pids == 2)
                    fail_msg("a third backend pid %d on a pool of 2", pid);
                pids[n_pids++] = pid;
            }
        }
        harness_exec_ok(c[holder], "COMMIT");
    }
    assert_int_equal(n_pids, 2);

    for (int i = 0; i < 4; i++) {
        char *tz = harness_query_value(c[i], "SHOW TimeZone");
        assert_string_equal(tz, client_states[i].timezone);
        free(tz);
        char *ds = harness_query_value(c[i], "SHOW DateStyle");
        assert_string_equal(ds, client_states[i].datestyle);
        free(ds);
        char *is = harness_query_value(c[i], "SHOW IntervalStyle");
        assert_string_equal(is, client_states[i].intervalstyle);
        free(is);
        char *enc = harness_query_value(c[i], "SHOW client_encoding");
        assert_string_equal(enc, client_states[i].encoding);
        free(enc);
        assert_string_equal(PQparameterStatus(c[i], "client_encoding"), client_states[i].encoding);
    }

    /* RESET brings back the default of the client's session. */
    harness_exec_ok(c[1], "RESET TimeZone");
    char *def =
        harness_query_value(c[0], "SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'");
    for (int round = 0; round < 4; round++) {
        check_state(c[0], 0, 100 + round);
        char *tz = harness_query_value(c[1], "SHOW TimeZone");
        assert_string_equal(tz, def);
        free(tz);
    }
    free(def);

    for (int i = 0; i < 4; i++)
        PQfinish(c[i]);
    stop_ok(&p);
}

/* ---- session mode ---- */

static void test_session_mode_keeps_server_and_resets_it(void **state)
{
    (void)state;
    const char *db = "it_pool_session";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = session\ndefault_pool_size = 1\n", NULL);

    PGconn *a = harness_connect(p.port, db, NULL);
    char *pid_a = harness_query_value(a, "SELECT pg_backend_pid()");
    harness_exec_ok(a, "CREATE TEMP TABLE tmp_a (v int)");
    harness_exec_ok(a, "INSERT INTO tmp_a VALUES (1), (2)");
    harness_exec_ok(a, "SET work_mem = '77MB'");
    harness_exec_ok(a, "PREPARE sess_stmt AS SELECT 1");
    for (int i = 0; i < 10; i++) {
        harness_exec_ok(a, "BEGIN");
        char *pid = harness_query_value(a, "SELECT pg_backend_pid()");
        assert_string_equal(pid, pid_a);
        free(pid);
        harness_exec_ok(a, "COMMIT");
    }
    assert_value(a, "SELECT count(*) FROM tmp_a", "2");
    assert_value(a, "SHOW work_mem", "77MB");
    PQfinish(a);

    PGconn *b = harness_connect(p.port, db, NULL);
    char *pid_b = harness_query_value(b, "SELECT pg_backend_pid()");
    assert_string_equal(pid_b, pid_a);
    char *reg = harness_query_value(b, "SELECT to_regclass('pg_temp.tmp_a')::text");
    assert_null(reg);
    assert_string_equal(harness_exec_error(b, "SELECT * FROM tmp_a"), "42P01");
    assert_value(b, "SHOW work_mem", "4MB");
    assert_value(b, "SELECT count(*) FROM pg_prepared_statements", "0");
    PQfinish(b);

    free(pid_a);
    free(pid_b);
    stop_ok(&p);
}

/* ---- statement mode ---- */

struct notice_codes {
    char codes[128];
};

static void record_notice(void *arg, const PGresult *res)
{
    struct notice_codes *n = arg;
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    size_t used = strlen(n->codes);
    snprintf(n->codes + used, sizeof(n->codes) - used, "%s ", code ? code : "?");
}

static void test_statement_mode_refuses_transaction_blocks(void **state)
{
    (void)state;
    const char *db = "it_pool_stmt";
    PGconn *direct = direct_connect(db);
    harness_exec_ok(direct, "CREATE TABLE t (v int)");
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = statement\ndefault_pool_size = 2\n", NULL);

    PGconn *c = harness_connect(p.port, db, NULL);
    harness_exec_ok(c, "INSERT INTO t VALUES (1)");
    harness_exec_ok(c, "INSERT INTO t VALUES (2)");
    assert_value(c, "SELECT sum(v) FROM t", "3");
    PGresult *res =
        PQexecParams(c, "SELECT $1::int * 2", 1, NULL, (const char *[]){"21"}, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), "42");
    PQclear(res);

    /* pgturbo, like PgBouncer, sees the transaction block when the server reports it and
     * then closes the client with 25001: on BEGIN itself or on the statement after it. */
    struct notice_codes seen = {0};
    PQsetNoticeReceiver(c, record_notice, &seen);
    res = PQexec(c, "BEGIN");
    if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
        const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        assert_string_equal(code ? code : "", "25001");
    } else {
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        char msg[256];
        const char *code =
            harness_exec_error_message(c, "INSERT INTO t VALUES (99)", msg, sizeof(msg));
        fprintf(stderr, "statement after BEGIN: %s (notices: %s)\n", msg, seen.codes);
        assert_true(strcmp(code, "25001") == 0 || strstr(seen.codes, "25001") != NULL);
    }
    PQclear(res);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    PQfinish(c);

    c = harness_connect(p.port, db, NULL);
    harness_exec_ok(c, "INSERT INTO t VALUES (3)");
    assert_value(c, "SELECT sum(v) FROM t", "6");
    assert_value(c, "SELECT count(*) FROM t WHERE v = 99", "0");
    PQfinish(c);
    assert_value(direct,
                 "SELECT count(*) FROM pg_stat_activity WHERE datname = 'it_pool_stmt' "
                 "AND state LIKE 'idle in transaction%'",
                 "0");

    stop_ok(&p);
    harness_exec_ok(direct, "DROP TABLE t");
    PQfinish(direct);
}

/* ---- timeouts ---- */

static void test_query_wait_timeout(void **state)
{
    (void)state;
    const char *db = "it_pool_wait";
    pgturbo_proc_t p;
    harness_start_pgturbo(
        &p, "pool_mode = transaction\ndefault_pool_size = 1\nquery_wait_timeout = 1\n", NULL);
    PGconn *a = harness_connect(p.port, db, NULL);
    PGconn *b = harness_connect(p.port, db, NULL);
    harness_exec_ok(a, "BEGIN");
    assert_value(a, "SELECT 'holding'", "holding");

    long long t0 = harness_now_ms();
    char msg[256];
    const char *code = harness_exec_error_message(b, "SELECT 'waiting'", msg, sizeof(msg));
    long long elapsed = harness_now_ms() - t0;
    assert_string_equal(code, "08P01");
    assert_non_null(strstr(msg, "query_wait_timeout"));
    fprintf(stderr, "query_wait_timeout fired after %lld ms\n", elapsed);
    assert_true(elapsed >= 900 && elapsed < 3000);

    /* The holder is unaffected and the pool serves new clients afterwards. */
    assert_value(a, "SELECT 'still holding'", "still holding");
    harness_exec_ok(a, "COMMIT");
    PGconn *c = harness_connect(p.port, db, NULL);
    assert_value(c, "SELECT 'next'", "next");

    PQfinish(a);
    PQfinish(b);
    PQfinish(c);
    stop_ok(&p);
}

static void test_idle_transaction_timeout(void **state)
{
    (void)state;
    const char *db = "it_pool_idletx";
    PGconn *direct = direct_connect(db);
    harness_exec_ok(direct, "CREATE TABLE t (v int)");
    pgturbo_proc_t p;
    harness_start_pgturbo(
        &p, "pool_mode = transaction\ndefault_pool_size = 1\nidle_transaction_timeout = 1\n", NULL);
    PGconn *a = harness_connect(p.port, db, NULL);
    PGconn *b = harness_connect(p.port, db, NULL);
    harness_exec_ok(a, "BEGIN");
    harness_exec_ok(a, "INSERT INTO t VALUES (1)");

    /* b waits for the only server, which a gives up when its idle transaction times out. */
    long long t0 = harness_now_ms();
    assert_value(b, "SELECT 'b got the server'", "b got the server");
    long long waited = harness_now_ms() - t0;
    fprintf(stderr, "b waited %lld ms\n", waited);
    assert_true(waited >= 800 && waited < 3000);

    char msg[256];
    const char *code = harness_exec_error_message(a, "INSERT INTO t VALUES (2)", msg, sizeof(msg));
    fprintf(stderr, "a after the timeout: %s", msg);
    assert_string_equal(code, "25P03");
    assert_int_equal(PQstatus(a), CONNECTION_BAD);

    /* a's transaction was rolled back, not committed by a later client. */
    assert_value(b, "SELECT count(*) FROM t", "0");
    assert_value(direct, "SELECT count(*) FROM t", "0");

    PQfinish(a);
    PQfinish(b);
    stop_ok(&p);
    harness_exec_ok(direct, "DROP TABLE t");
    PQfinish(direct);
}

static void test_client_idle_timeout(void **state)
{
    (void)state;
    const char *db = "it_pool_clidle";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\nclient_idle_timeout = 1\n", NULL);

    int fd = harness_raw_connect(p.port);
    harness_raw_startup(fd, "postgres", db);
    char sqlstate[6] = "";
    assert_true(harness_raw_wait_ready(fd, sqlstate));
    assert_string_equal(sqlstate, "");
    long long t0 = harness_now_ms();

    /* A client that keeps talking stays connected past the timeout. */
    PGconn *busy = harness_connect(p.port, db, NULL);
    for (int i = 0; i < 8; i++) {
        assert_value(busy, "SELECT 'alive'", "alive");
        harness_sleep_ms(300);
    }

    assert_true(harness_raw_closed(fd, 3000));
    long long elapsed = harness_now_ms() - t0;
    fprintf(stderr, "idle client closed after %lld ms\n", elapsed);
    assert_true(elapsed >= 900 && elapsed < 4000);
    close(fd);
    assert_value(busy, "SELECT 'still alive'", "still alive");

    PQfinish(busy);
    stop_ok(&p);
}

static void test_query_timeout(void **state)
{
    (void)state;
    const char *db = "it_pool_qtimeout";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 1\nquery_timeout = 1\n",
                          NULL);
    PGconn *a = harness_connect(p.port, db, NULL);
    long long t0 = harness_now_ms();
    char msg[256];
    const char *code = harness_exec_error_message(a, "SELECT pg_sleep(5)", msg, sizeof(msg));
    long long elapsed = harness_now_ms() - t0;
    fprintf(stderr, "after %lld ms: %s", elapsed, msg);
    assert_string_equal(code, "57014");
    assert_true(elapsed >= 900 && elapsed < 3000);
    PQfinish(a);

    /* The pool still works, without waiting for the sleeping query. */
    t0 = harness_now_ms();
    PGconn *b = harness_connect(p.port, db, NULL);
    assert_value(b, "SELECT 'pool works'", "pool works");
    assert_true(harness_now_ms() - t0 < 2500);
    for (int i = 0; i < 5; i++)
        assert_value(b, "SELECT 1", "1");
    PQfinish(b);
    stop_ok(&p);
}

static void test_server_idle_timeout_keeps_min_pool_size(void **state)
{
    (void)state;
    const char *db = "it_pool_srvidle";
    PGconn *direct = direct_connect("postgres");
    pgturbo_proc_t p;
    harness_start_pgturbo(&p,
                          "pool_mode = transaction\ndefault_pool_size = 5\nmin_pool_size = 1\n"
                          "server_idle_timeout = 1\n",
                          NULL);
    PGconn *c[5];
    for (int i = 0; i < 5; i++) {
        c[i] = harness_connect(p.port, db, NULL);
        harness_exec_ok(c[i], "BEGIN");
        assert_value(c[i], "SELECT 1", "1");
    }
    assert_int_equal(backends(direct, db), 5);
    for (int i = 0; i < 5; i++)
        harness_exec_ok(c[i], "COMMIT");

    long long t0 = harness_now_ms();
    int n = wait_backends(direct, db, 1, 6000);
    fprintf(stderr, "%d backends after %lld ms\n", n, harness_now_ms() - t0);
    assert_int_equal(n, 1);
    assert_true(harness_now_ms() - t0 >= 800);
    /* It stays at min_pool_size. */
    harness_sleep_ms(1500);
    assert_int_equal(backends(direct, db), 1);
    /* The clients are still connected and get a server again. */
    for (int i = 0; i < 5; i++) {
        assert_value(c[i], "SELECT 'again'", "again");
        PQfinish(c[i]);
    }
    stop_ok(&p);
    PQfinish(direct);
}

static void test_min_pool_size_opens_servers_ahead(void **state)
{
    (void)state;
    const char *db = "it_pool_minpool";
    PGconn *direct = direct_connect("postgres");
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 5\nmin_pool_size = 3\n",
                          NULL);
    PGconn *c = harness_connect(p.port, db, NULL);
    assert_value(c, "SELECT 1", "1");
    int n = wait_backends(direct, db, 3, 5000);
    assert_int_equal(n, 3);
    /* No more than min_pool_size while one client is served. */
    for (int i = 0; i < 10; i++)
        assert_value(c, "SELECT 2", "2");
    harness_sleep_ms(300);
    assert_int_equal(backends(direct, db), 3);
    PQfinish(c);
    stop_ok(&p);
    PQfinish(direct);
}

/* ---- limits ---- */

static void test_max_client_conn(void **state)
{
    (void)state;
    const char *db = "it_pool_maxcli";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\nmax_client_conn = 3\n", NULL);
    PGconn *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = harness_connect(p.port, db, NULL);

    int fd = harness_raw_connect(p.port);
    harness_raw_startup(fd, "postgres", db);
    char sqlstate[6] = "";
    assert_true(harness_raw_expect_error(fd, sqlstate));
    assert_string_equal(sqlstate, "53300");
    assert_true(harness_raw_closed(fd, 2000));
    close(fd);

    PGconn *extra = harness_try_connect(p.port, db, NULL);
    assert_int_equal(PQstatus(extra), CONNECTION_BAD);
    PQfinish(extra);

    for (int i = 0; i < 3; i++)
        assert_value(c[i], "SELECT 'served'", "served");

    /* A slot frees when a client leaves. */
    PQfinish(c[0]);
    long long deadline = harness_now_ms() + 3000;
    for (;;) {
        extra = harness_try_connect(p.port, db, NULL);
        if (PQstatus(extra) == CONNECTION_OK || harness_now_ms() > deadline)
            break;
        PQfinish(extra);
        harness_sleep_ms(50);
    }
    assert_int_equal(PQstatus(extra), CONNECTION_OK);
    assert_value(extra, "SELECT 'in'", "in");
    PQfinish(extra);
    PQfinish(c[1]);
    PQfinish(c[2]);
    stop_ok(&p);
}

struct sleeper {
    int port;
    const char *db;
    const char *user;
    int transactions;
    atomic_int *errors;
    char error[256];
};

static void *sleeper_main(void *arg)
{
    struct sleeper *s = arg;
    char extra[64];
    snprintf(extra, sizeof(extra), "user=%s", s->user);
    PGconn *c = harness_try_connect(s->port, s->db, extra);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(s->error, sizeof(s->error), "connect: %s", PQerrorMessage(c));
        atomic_fetch_add(s->errors, 1);
        PQfinish(c);
        return NULL;
    }
    for (int i = 0; i < s->transactions; i++) {
        PGresult *res = PQexec(c, "BEGIN; SELECT pg_sleep(0.05); COMMIT");
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            snprintf(s->error, sizeof(s->error), "%s", PQerrorMessage(c));
            atomic_fetch_add(s->errors, 1);
        }
        PQclear(res);
    }
    PQfinish(c);
    return NULL;
}

/* Runs n clients (as postgres, or alternating with it_pool_user2 when two_users) and returns
 * the most backends of db seen meanwhile. */
static int run_sleepers(int port, const char *db, int n, int transactions, bool two_users,
                        atomic_int *errors)
{
    PGconn *monconn = direct_connect("postgres");
    struct monitor mon = {.direct = monconn, .db = db};
    pthread_t mon_thread;
    assert_int_equal(pthread_create(&mon_thread, NULL, monitor_main, &mon), 0);
    struct sleeper s[16];
    pthread_t threads[16];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++) {
        s[i] = (struct sleeper){
            port, db, two_users && i % 2 ? "it_pool_user2" : "postgres", transactions, errors, ""};
        assert_int_equal(pthread_create(&threads[i], NULL, sleeper_main, &s[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    atomic_store(&mon.stop, true);
    pthread_join(mon_thread, NULL);
    for (int i = 0; i < n; i++)
        if (s[i].error[0] != '\0')
            fprintf(stderr, "client %d (%s): %s", i, s[i].user, s[i].error);
    PQfinish(monconn);
    return mon.max;
}

static void test_max_db_connections_limits_backends(void **state)
{
    (void)state;
    const char *db = "it_pool_maxdb";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p,
                          "pool_mode = transaction\ndefault_pool_size = 5\nmax_db_connections = 2\n"
                          "query_wait_timeout = 20\n",
                          NULL);
    /* Eight clients of one user: the database limit (2) is below the pool size (5). */
    atomic_int errors = 0;
    PGconn *direct = direct_connect("postgres");
    int max = run_sleepers(p.port, db, 8, 5, false, &errors);
    assert_int_equal(atomic_load(&errors), 0);
    fprintf(stderr, "max backends: %d\n", max);
    assert_int_equal(max, 2);
    assert_true(backends(direct, db) <= 2);
    PQfinish(direct);
    stop_ok(&p);
}

static void test_max_db_connections_shared_by_pools_of_two_users(void **state)
{
    (void)state;
    const char *db = "it_pool_maxdb2";
    pgturbo_proc_t p;
    harness_start_pgturbo(&p,
                          "pool_mode = transaction\ndefault_pool_size = 5\nmax_db_connections = 2\n"
                          "query_wait_timeout = 5\n",
                          NULL);
    PGconn *direct = direct_connect("postgres");
    /* The first user's pool takes both allowed connections, which then sit idle. */
    PGconn *u1[2];
    for (int i = 0; i < 2; i++) {
        u1[i] = harness_connect(p.port, db, NULL);
        harness_exec_ok(u1[i], "BEGIN");
    }
    assert_int_equal(backends(direct, db), 2);
    for (int i = 0; i < 2; i++)
        harness_exec_ok(u1[i], "COMMIT");
    /* The second user must still get a server: an idle one of the other pool gives way. */
    long long t0 = harness_now_ms();
    PGconn *u2 = harness_try_connect(p.port, db, "user=it_pool_user2");
    if (PQstatus(u2) != CONNECTION_OK) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(u2));
        PQfinish(u2);
        fail_msg("second user could not log in after %lld ms while the first user's pool held "
                 "the database's max_db_connections servers idle: %s",
                 harness_now_ms() - t0, msg);
    }
    PGresult *res = PQexec(u2, "SELECT current_user");
    long long elapsed = harness_now_ms() - t0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(res));
        PQclear(res);
        fail_msg("second user's query failed after %lld ms: %s", elapsed, msg);
    }
    assert_string_equal(PQgetvalue(res, 0, 0), "it_pool_user2");
    PQclear(res);
    assert_true(backends(direct, db) <= 2);

    /* Mixed load of both users stays within the limit and completes. */
    atomic_int errors = 0;
    int max = run_sleepers(p.port, db, 8, 5, true, &errors);
    fprintf(stderr, "max backends with two users: %d\n", max);
    assert_int_equal(atomic_load(&errors), 0);
    assert_true(max <= 2);

    PQfinish(u1[0]);
    PQfinish(u1[1]);
    PQfinish(u2);
    PQfinish(direct);
    stop_ok(&p);
}

static void test_unknown_database(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\n", NULL);
    int fd = harness_raw_connect(p.port);
    harness_raw_startup(fd, "postgres", "it_no_such_database");
    char sqlstate[6] = "";
    assert_true(harness_raw_expect_error(fd, sqlstate));
    assert_string_equal(sqlstate, "3D000");
    assert_true(harness_raw_closed(fd, 3000));
    close(fd);

    PGconn *c = harness_try_connect(p.port, "it_no_such_database", NULL);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    assert_non_null(strstr(PQerrorMessage(c), "it_no_such_database"));
    PQfinish(c);

    /* The daemon is fine afterwards. */
    c = harness_connect(p.port, "postgres", NULL);
    assert_value(c, "SELECT 'ok'", "ok");
    PQfinish(c);
    stop_ok(&p);
}

/* ---- reload and shutdown ---- */

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

static void test_sighup_changes_pool_size_keeping_clients(void **state)
{
    (void)state;
    const char *db = "it_pool_reload";
    PGconn *direct = direct_connect("postgres");
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 2\n", NULL);
    PGconn *c[4];
    for (int i = 0; i < 4; i++)
        c[i] = harness_connect(p.port, db, NULL);
    for (int i = 0; i < 2; i++) {
        harness_exec_ok(c[i], "BEGIN");
        assert_value(c[i], "SELECT 'held'", "held");
    }
    assert_int_equal(backends(direct, db), 2);
    /* The third client waits: the pool is full. */
    assert_int_equal(PQsendQuery(c[2], "SELECT 'third'"), 1);
    assert_false(result_ready(c[2], 500));

    harness_reload_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 4\n", NULL);

    /* The waiting client gets a new server under the new limit, the holders keep working. */
    assert_true(result_ready(c[2], 3000));
    PGresult *res = PQgetResult(c[2]);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), "third");
    PQclear(res);
    assert_null(PQgetResult(c[2]));
    for (int i = 0; i < 2; i++) {
        assert_value(c[i], "SELECT 'still held'", "still held");
        assert_int_equal(PQtransactionStatus(c[i]), PQTRANS_INTRANS);
    }
    /* Four transactions at once now. */
    harness_exec_ok(c[2], "BEGIN");
    assert_value(c[2], "SELECT 3", "3");
    harness_exec_ok(c[3], "BEGIN");
    assert_value(c[3], "SELECT 4", "4");
    assert_int_equal(backends(direct, db), 4);
    for (int i = 0; i < 4; i++)
        harness_exec_ok(c[i], "COMMIT");

    for (int i = 0; i < 4; i++)
        PQfinish(c[i]);
    PQfinish(direct);
    stop_ok(&p);
}

static void test_sigterm_lets_open_transaction_finish(void **state)
{
    (void)state;
    const char *db = "it_pool_sigterm";
    PGconn *direct = direct_connect(db);
    harness_exec_ok(direct, "CREATE TABLE t (v int)");
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\nshutdown_timeout = 5\n", NULL);
    PGconn *a = harness_connect(p.port, db, NULL);
    PGconn *idle = harness_connect(p.port, db, NULL);
    assert_value(idle, "SELECT 1", "1");
    harness_exec_ok(a, "BEGIN");
    harness_exec_ok(a, "INSERT INTO t VALUES (1)");

    assert_int_equal(kill(p.pid, SIGTERM), 0);
    harness_sleep_ms(300);
    assert_true(harness_pgturbo_alive(&p));

    /* New connections are refused. */
    PGconn *late = harness_try_connect(p.port, db, NULL);
    assert_int_equal(PQstatus(late), CONNECTION_BAD);
    PQfinish(late);

    /* The open transaction may go on and commit. */
    harness_exec_ok(a, "INSERT INTO t VALUES (2)");
    harness_exec_ok(a, "COMMIT");
    assert_value(direct, "SELECT sum(v) FROM t", "3");

    long long deadline = harness_now_ms() + 4000;
    while (harness_pgturbo_alive(&p) && harness_now_ms() < deadline)
        harness_sleep_ms(20);
    assert_false(harness_pgturbo_alive(&p));
    assert_int_equal(harness_stop_pgturbo(&p, 1), 0);

    PQfinish(a);
    PQfinish(idle);
    harness_exec_ok(direct, "DROP TABLE t");
    PQfinish(direct);
}

/* ---- servers and clients that go away ---- */

static void test_server_killed_mid_query(void **state)
{
    (void)state;
    const char *db = "it_pool_kill";
    PGconn *direct = direct_connect("postgres");
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 1\n", NULL);
    PGconn *a = harness_connect(p.port, db, NULL);
    assert_int_equal(PQsendQuery(a, "SELECT pg_sleep(30)"), 1);

    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT pid FROM pg_stat_activity WHERE datname = '%s' AND query = "
             "'SELECT pg_sleep(30)' AND state = 'active'",
             db);
    char *pid = NULL;
    long long deadline = harness_now_ms() + 5000;
    while ((pid = harness_query_value(direct, sql)) == NULL && harness_now_ms() < deadline)
        harness_sleep_ms(20);
    assert_non_null(pid);
    char kill_sql[128];
    snprintf(kill_sql, sizeof(kill_sql), "SELECT pg_terminate_backend(%s)", pid);
    assert_value(direct, kill_sql, "t");
    free(pid);

    long long t0 = harness_now_ms();
    assert_true(result_ready(a, 5000));
    PGresult *res = PQgetResult(a);
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    fprintf(stderr, "after %lld ms: %s", harness_now_ms() - t0, PQresultErrorMessage(res));
    PQclear(res);
    while ((res = PQgetResult(a)) != NULL)
        PQclear(res);
    PQfinish(a);

    /* A new client gets a new server. */
    t0 = harness_now_ms();
    PGconn *b = harness_connect(p.port, db, NULL);
    assert_value(b, "SELECT 'new server'", "new server");
    assert_true(harness_now_ms() - t0 < 5000);
    PQfinish(b);
    PQfinish(direct);
    stop_ok(&p);
}

static void test_client_gone_mid_transaction_releases_locks(void **state)
{
    (void)state;
    const char *db = "it_pool_dirty";
    PGconn *direct = direct_connect(db);
    harness_exec_ok(direct, "CREATE TABLE t (id int PRIMARY KEY, v int)");
    harness_exec_ok(direct, "INSERT INTO t VALUES (1, 0)");
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 1\n", NULL);

    PGconn *a = harness_connect(p.port, db, NULL);
    harness_exec_ok(a, "BEGIN");
    harness_exec_ok(a, "UPDATE t SET v = v + 100 WHERE id = 1");
    PQfinish(a);

    /* b gets the only server (or its replacement); it must not be inside a's transaction. */
    PGconn *b = harness_connect(p.port, db, NULL);
    long long t0 = harness_now_ms();
    harness_exec_ok(b, "BEGIN");
    assert_int_equal(PQtransactionStatus(b), PQTRANS_INTRANS);
    harness_exec_ok(b, "SET LOCAL lock_timeout = '2s'");
    harness_exec_ok(b, "UPDATE t SET v = v + 1 WHERE id = 1");
    harness_exec_ok(b, "COMMIT");
    assert_true(harness_now_ms() - t0 < 2500);
    assert_value(b, "SELECT v FROM t WHERE id = 1", "1");
    assert_value(direct, "SELECT v FROM t WHERE id = 1", "1");
    PQfinish(b);

    stop_ok(&p);
    harness_exec_ok(direct, "DROP TABLE t");
    PQfinish(direct);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transaction_pooling_50_clients_on_5_servers),
        cmocka_unit_test(test_session_state_follows_client_across_servers),
        cmocka_unit_test(test_session_mode_keeps_server_and_resets_it),
        cmocka_unit_test(test_statement_mode_refuses_transaction_blocks),
        cmocka_unit_test(test_query_wait_timeout),
        cmocka_unit_test(test_idle_transaction_timeout),
        cmocka_unit_test(test_client_idle_timeout),
        cmocka_unit_test(test_query_timeout),
        cmocka_unit_test(test_server_idle_timeout_keeps_min_pool_size),
        cmocka_unit_test(test_min_pool_size_opens_servers_ahead),
        cmocka_unit_test(test_max_client_conn),
        cmocka_unit_test(test_max_db_connections_limits_backends),
        cmocka_unit_test(test_max_db_connections_shared_by_pools_of_two_users),
        cmocka_unit_test(test_unknown_database),
        cmocka_unit_test(test_sighup_changes_pool_size_keeping_clients),
        cmocka_unit_test(test_sigterm_lets_open_transaction_finish),
        cmocka_unit_test(test_server_killed_mid_query),
        cmocka_unit_test(test_client_gone_mid_transaction_releases_locks),
    };
    return cmocka_run_group_tests(tests, setup_databases, teardown_databases);
}
