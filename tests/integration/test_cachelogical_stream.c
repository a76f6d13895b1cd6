/*
 * test_cachelogical_stream.c
 *    cachelogical against the test cluster: the consumer streams the logical decoding of a
 *    database of its own (pt_logical, so that no other test's writes show) and reports, after
 *    each commit and never before it, exactly the tables the transaction changed: INSERT, UPDATE,
 *    DELETE and a TRUNCATE of two tables in one transaction, quoted names, nothing for a rolled
 *    back transaction, 256 distinct tables one by one and 257 as "any table". The first report
 *    is "any table"; a walsender killed with pg_terminate_backend means a reconnect through a
 *    new slot, "any table" again, and later writes still reported. The confirmed position
 *    reaches the server. A commit that waits for the consumer as its synchronous standby is
 *    reported before other sessions see it and visible once they do, and every report's token
 *    comes back once. A stop is prompt whether the consumer streams, waits to reconnect to a
 *    server that is down or waits for an old transaction to make its slot, and the slot goes
 *    with it.
 *
 *    Each transaction's reports are read up to a marker: a row inserted into public.marker in a
 *    transaction of its own, which the stream reports after everything committed before it.
 */
#include "harness.h"

#include "cachelogical.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DATABASE    "pt_logical"
#define PREFIX      "pt_logical_test"
#define WAIT_MS     10000 /* the longest a report may take, reconnects included */
#define WIDE_TABLES (CACHELOGICAL_MAX_TABLES + 1)
#define MAX_EVENTS  1024

/* One call of the callback. */
typedef struct event {
    char table[2 * CACHELOGICAL_NAME_LEN + 2]; /* "schema|relname", or "*" for any table */
    long long at_ms;                           /* harness_now_ms() when it came */
} event_t;

/* What the callbacks collected. */
typedef struct collector {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int n;
    event_t events[MAX_EVENTS];
    int read;          /* events before this one have been checked */
    int commits;       /* commit() calls, whose tokens are 1, 2 ... */
    int visible;       /* visible() calls */
    bool token_misuse; /* a token came back twice, or one never given */
    bool given_back[MAX_EVENTS + 1];
    /* When probe is set: probe_sql's value on it, as seen by the consumer's thread in the last
     * commit() and in the last visible(). */
    PGconn *probe;
    const char *probe_sql;
    char at_commit[32], at_visible[32];
} collector_t;

static void add_event(collector_t *c, const char *schema, const char *relname)
{
    if (c->n == MAX_EVENTS)
        return;
    event_t *e = &c->events[c->n++];
    if (schema == NULL)
        snprintf(e->table, sizeof(e->table), "*");
    else
        snprintf(e->table, sizeof(e->table), "%s|%s", schema, relname);
    e->at_ms = harness_now_ms();
}

/* probe_sql's value, read on the consumer's thread, into out. */
static void run_probe(collector_t *c, char out[32])
{
    char *v = harness_query_value(c->probe, c->probe_sql);
    snprintf(out, 32, "%s", v != NULL ? v : "(null)");
    free(v);
}

static void *on_commit(void *arg, const cachelogical_table_t *tables, int n)
{
    collector_t *c = arg;
    if (c->probe != NULL)
        run_probe(c, c->at_commit);
    pthread_mutex_lock(&c->lock);
    if (tables == NULL)
        add_event(c, NULL, NULL);
    for (int i = 0; i < n; i++)
        add_event(c, tables[i].schema, tables[i].relname);
    intptr_t token = ++c->commits;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return (void *)token;
}

static void on_visible(void *arg, void *token)
{
    collector_t *c = arg;
    intptr_t t = (intptr_t)token;
    if (c->probe != NULL)
        run_probe(c, c->at_visible);
    pthread_mutex_lock(&c->lock);
    if (t < 1 || t > c->commits || t > MAX_EVENTS || c->given_back[t])
        c->token_misuse = true;
    else
        c->given_back[t] = true;
    c->visible++;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static collector_t *collector_new(void)
{
    collector_t *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    return c;
}

static void collector_free(collector_t *c)
{
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int collected(collector_t *c)
{
    pthread_mutex_lock(&c->lock);
    int n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* Waits until the callback was called at least n times in all; false after timeout_ms. */
static bool wait_events(collector_t *c, int n, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->lock);
    int rc = 0;
    while (c->n < n && rc == 0)
        rc = pthread_cond_timedwait(&c->cond, &c->lock, &until);
    bool reached = c->n >= n;
    pthread_mutex_unlock(&c->lock);
    return reached;
}

/* Waits for the next event, which must be table ("*" for any table); returns when it came. */
static long long expect_next(collector_t *c, const char *table)
{
    if (!wait_events(c, c->read + 1, WAIT_MS))
        fail_msg("no report of %s within %d ms", table, WAIT_MS);
    pthread_mutex_lock(&c->lock);
    event_t e = c->events[c->read++];
    pthread_mutex_unlock(&c->lock);
    if (strcmp(e.table, table) != 0)
        fail_msg("expected a report of %s, got %s", table, e.table);
    return e.at_ms;
}

/* Waits for the next event, without checking it; returns when it came. */
static long long next_event_at(collector_t *c)
{
    if (!wait_events(c, c->read + 1, WAIT_MS))
        fail_msg("no report within %d ms", WAIT_MS);
    pthread_mutex_lock(&c->lock);
    long long at = c->events[c->read].at_ms;
    pthread_mutex_unlock(&c->lock);
    return at;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Commits a marker row on conn, waits for its report and asserts that the reports since the
 * last check, before the marker's, are exactly the n tables of expected ("schema|relname"), in
 * any order.
 */
static void expect_reports(collector_t *c, PGconn *conn, const char *const *expected, int n)
{
    harness_exec_ok(conn, "INSERT INTO public.marker VALUES (1)");
    long long deadline = harness_now_ms() + WAIT_MS;
    int marker = -1;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        int seen = c->n;
        for (int i = c->read; i < seen && marker < 0; i++)
            if (strcmp(c->events[i].table, "public|marker") == 0)
                marker = i;
        pthread_mutex_unlock(&c->lock);
        if (marker >= 0)
            break;
        if (!wait_events(c, seen + 1, (int)(deadline - harness_now_ms())))
            fail_msg("the marker was not reported within %d ms", WAIT_MS);
    }

    const char *got[MAX_EVENTS];
    const char *want[MAX_EVENTS];
    int n_got = marker - c->read;
    for (int i = 0; i < n_got; i++)
        got[i] = c->events[c->read + i].table;
    for (int i = 0; i < n; i++)
        want[i] = expected[i];
    qsort(got, (size_t)n_got, sizeof(got[0]), compare_strings);
    qsort(want, (size_t)n, sizeof(want[0]), compare_strings);
    for (int i = 0; i < n_got || i < n; i++)
        if (i >= n_got || i >= n || strcmp(got[i], want[i]) != 0)
            fail_msg("reports differ at %d of %d (expected %d): got %s, expected %s", i, n_got, n,
                     i < n_got ? got[i] : "(none)", i < n ? want[i] : "(none)");
    c->read = marker + 1;
}

/* Every token commit() gave came back through visible() once, and no other. */
static void assert_tokens_all_back(collector_t *c)
{
    pthread_mutex_lock(&c->lock);
    int commits = c->commits, visible = c->visible;
    bool misuse = c->token_misuse;
    pthread_mutex_unlock(&c->lock);
    assert_false(misuse);
    assert_int_equal(visible, commits);
}

/* Waits until visible() was called as often as commit(). */
static void wait_all_visible(collector_t *c)
{
    long long deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        bool all = c->visible == c->commits;
        pthread_mutex_unlock(&c->lock);
        if (all)
            return;
        if (harness_now_ms() > deadline)
            fail_msg("a transaction was not reported visible within %d ms", WAIT_MS);
        harness_sleep_ms(5);
    }
}

/* ---- the cluster ---- */

/* Named apart from pgturbo's own consumers (pgturbo_cache_<db>), which tests make synchronous
 * standbys: this one must never be mistaken for theirs. */
static char *consumer_conninfo(void)
{
    static char conninfo[256];
    snprintf(conninfo, sizeof(conninfo),
             "host=127.0.0.1 port=%d user=postgres application_name=cachelogical_test "
             "dbname=" DATABASE,
             harness_pg_port());
    return conninfo;
}

/* A connection to the test's database whose commits are flushed before they return, as on
 * most servers (the cluster itself runs with synchronous_commit = off). */
static PGconn *writer(void)
{
    PGconn *conn = harness_connect_direct(DATABASE);
    harness_silence_notices(conn);
    harness_exec_ok(conn, "SET synchronous_commit = on");
    return conn;
}

/* Whether the slot named slot exists, seen from conn. */
static bool slot_exists(PGconn *conn, const char *slot)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s'",
             slot);
    char *n = harness_query_value(conn, sql);
    bool exists = strcmp(n, "0") != 0;
    free(n);
    return exists;
}

/* Waits up to 5 s for the server to drop the temporary slot of a connection that ended. */
static void assert_slot_goes(PGconn *conn, const char *slot)
{
    long long deadline = harness_now_ms() + 5000;
    while (slot_exists(conn, slot)) {
        if (harness_now_ms() > deadline)
            fail_msg("slot %s is still there 5 s after its connection ended", slot);
        harness_sleep_ms(20);
    }
}

/* Stops l, asserting it takes less than 2 s. */
static void stop_promptly(cachelogical_t *l)
{
    long long started = harness_now_ms();
    cachelogical_stop(l);
    long long took = harness_now_ms() - started;
    if (took >= 2000)
        fail_msg("cachelogical_stop took %lld ms", took);
}

static cachelogical_t *start(collector_t *c, const char *conninfo)
{
    char err[256] = "";
    cachelogical_callbacks_t cb = {on_commit, on_visible, c};
    cachelogical_t *l = cachelogical_start(conninfo, PREFIX, &cb, err, sizeof(err));
    if (l == NULL)
        fail_msg("cachelogical_start: %s", err);
    return l;
}

static int setup_database(void **state)
{
    harness_create_database(DATABASE);
    PGconn *conn = harness_connect_direct(DATABASE);
    harness_exec_ok(conn, "CREATE TABLE marker (n int);"
                          "CREATE TABLE users (id int PRIMARY KEY, name text);"
                          "CREATE TABLE orders (id int PRIMARY KEY, total int);"
                          "CREATE TABLE items (id int PRIMARY KEY);"
                          "CREATE TABLE logs (line text);"
                          "CREATE TABLE audit (line text);"
                          "CREATE SCHEMA \"My Schema\";"
                          "CREATE TABLE \"My Schema\".\"Odd.Name\" (id int);"
                          "CREATE TABLE \"say \"\"hi\"\"\" (id int);"
                          "INSERT INTO orders VALUES (1, 10);"
                          "INSERT INTO items VALUES (1), (2);"
                          "INSERT INTO logs VALUES ('a');");
    char sql[256];
    snprintf(sql, sizeof(sql),
             "DO $$ BEGIN FOR i IN 1..%d LOOP EXECUTE format('CREATE TABLE wide_%%s (id int)', "
             "i); END LOOP; END $$",
             WIDE_TABLES);
    harness_exec_ok(conn, sql);
    PQfinish(conn);
    return 0;
}

static int teardown_database(void **state)
{
    harness_drop_database(DATABASE);
    return 0;
}

/* ---- tests ---- */

static void reports_each_commits_tables_after_it(void **state)
{
    collector_t *c = collector_new();
    PGconn *conn = writer();
    cachelogical_t *l = start(c, consumer_conninfo());
    cachelogical_status_t st;

    /* The first report: anything may have changed before the slot existed. */
    expect_next(c, "*");
    cachelogical_status(l, &st);
    assert_true(st.connected);
    assert_int_equal(strlen(st.slot), strlen(PREFIX) + 1 + 12);
    assert_memory_equal(st.slot, PREFIX "_", strlen(PREFIX) + 1);
    assert_true(slot_exists(conn, st.slot));
    char slot[sizeof(st.slot)];
    snprintf(slot, sizeof(slot), "%s", st.slot);

    /* Nothing until the COMMIT, then every table once, the twice-written one too. */
    harness_exec_ok(conn, "BEGIN");
    harness_exec_ok(conn, "INSERT INTO users VALUES (1, 'ann')");
    harness_exec_ok(conn, "UPDATE orders SET total = 11 WHERE id = 1");
    harness_exec_ok(conn, "DELETE FROM items WHERE id = 1");
    harness_exec_ok(conn, "TRUNCATE logs, audit");
    harness_exec_ok(conn, "INSERT INTO users VALUES (2, 'bob')");
    harness_sleep_ms(300);
    assert_int_equal(collected(c), c->read);
    harness_exec_ok(conn, "COMMIT");
    long long committed = harness_now_ms();
    long long latency = next_event_at(c) - committed;
    const char *const first[] = {"public|users", "public|orders", "public|items", "public|logs",
                                 "public|audit"};
    expect_reports(c, conn, first, 5);

    /* A rolled back transaction: nothing at all. */
    harness_exec_ok(conn, "BEGIN");
    harness_exec_ok(conn, "INSERT INTO users VALUES (3, 'cy')");
    harness_exec_ok(conn, "TRUNCATE orders");
    harness_exec_ok(conn, "ROLLBACK");
    expect_reports(c, conn, NULL, 0);

    /* Quoted names, unquoted in the reports. */
    harness_exec_ok(conn, "INSERT INTO \"My Schema\".\"Odd.Name\" VALUES (1)");
    const char *const quoted[] = {"My Schema|Odd.Name"};
    expect_reports(c, conn, quoted, 1);
    harness_exec_ok(conn, "INSERT INTO \"say \"\"hi\"\"\" VALUES (1)");
    const char *const escaped[] = {"public|say \"hi\""};
    expect_reports(c, conn, escaped, 1);

    /* Transactions: the first, the quoted two and four markers; changes: five lines in the
     * first, one in each of the others. */
    cachelogical_status(l, &st);
    assert_true(st.connected);
    assert_int_equal(st.transactions, 7);
    assert_int_equal(st.changes, 5 + 6);
    assert_int_equal(st.reconnects, 0);
    assert_string_equal(st.last_error, "");
    assert_true(st.last_change_ms > 1700000000000LL);

    /* Within a status interval or two, the server has the position of the last commit. */
    char *lsn = harness_query_value(conn, "SELECT pg_current_wal_lsn()");
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT confirmed_flush_lsn >= '%s' FROM pg_replication_slots WHERE slot_name = '%s'",
             lsn, slot);
    long long deadline = harness_now_ms() + 5000;
    for (;;) {
        char *reached = harness_query_value(conn, sql);
        bool ok = reached != NULL && strcmp(reached, "t") == 0;
        free(reached);
        if (ok)
            break;
        if (harness_now_ms() > deadline)
            fail_msg("confirmed_flush_lsn of %s did not reach %s within 5 s", slot, lsn);
        harness_sleep_ms(100);
    }
    free(lsn);
    cachelogical_status(l, &st);
    assert_true(st.received_lsn > 0);
    assert_true(st.flushed_lsn > 0);
    assert_true(st.flushed_lsn <= st.received_lsn);

    print_message("from COMMIT to its report: %lld ms\n", latency);
    stop_promptly(l);
    assert_tokens_all_back(c);
    assert_slot_goes(conn, slot);
    PQfinish(conn);
    collector_free(c);
}

#define SYNC_NAME "cachelogical_sync_test"

/* Makes the consumer named SYNC_NAME the synchronous standby and waits until it is. */
static void require_synchronous_standby(PGconn *conn)
{
    harness_exec_ok(conn, "ALTER SYSTEM SET synchronous_standby_names = '" SYNC_NAME "'");
    harness_exec_ok(conn, "SELECT pg_reload_conf()");
    long long deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        char *n = harness_query_value(conn, "SELECT count(*) FROM pg_stat_replication "
                                            "WHERE application_name = '" SYNC_NAME "' "
                                            "AND sync_state = 'sync'");
        bool sync = n != NULL && strcmp(n, "1") == 0;
        free(n);
        if (sync)
            return;
        if (harness_now_ms() > deadline)
            fail_msg("the consumer did not become the synchronous standby");
        harness_sleep_ms(20);
    }
}

static int reset_synchronous_standby(void **state)
{
    PGconn *conn = harness_connect_direct(DATABASE);
    harness_exec_ok(conn, "ALTER SYSTEM RESET synchronous_standby_names");
    harness_exec_ok(conn, "SELECT pg_reload_conf()");
    PQfinish(conn);
    return 0;
}

/*
 * A commit that waits for the consumer as its synchronous standby: commit() comes while other
 * sessions cannot see it yet (so a cache that only bumped then could keep an old answer read
 * meanwhile), and visible() only once they can. Each seen from the consumer's own thread.
 */
static void a_synchronous_commit_is_reported_before_it_is_visible(void **state)
{
    collector_t *c = collector_new();
    PGconn *conn = writer();
    c->probe = harness_connect_direct(DATABASE);
    c->probe_sql = "SELECT count(*) FROM users WHERE id BETWEEN 300 AND 399";
    char conninfo[256];
    snprintf(conninfo, sizeof(conninfo),
             "host=127.0.0.1 port=%d user=postgres application_name=" SYNC_NAME " dbname=" DATABASE,
             harness_pg_port());
    cachelogical_t *l = start(c, conninfo);
    expect_next(c, "*");
    wait_all_visible(c);
    require_synchronous_standby(conn);

    for (int i = 0; i < 3; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "INSERT INTO users VALUES (%d, 'sync')", 300 + i);
        harness_exec_ok(conn, sql);
        expect_next(c, "public|users");
        wait_all_visible(c);
        char before[8], after[8];
        snprintf(before, sizeof(before), "%d", i);
        snprintf(after, sizeof(after), "%d", i + 1);
        assert_string_equal(c->at_commit, before);
        assert_string_equal(c->at_visible, after);
    }
    cachelogical_status_t st;
    long long deadline = harness_now_ms() + WAIT_MS;
    do {
        harness_sleep_ms(5);
        cachelogical_status(l, &st);
    } while (st.invisible != 0 && harness_now_ms() < deadline);
    assert_int_equal(st.invisible, 0);

    /* The snapshot connection ended while idle (idle_session_timeout would do the same): the
     * next check opens a new one, and the stream goes on in the same session. */
    deadline = harness_now_ms() + WAIT_MS;
    for (;;) {
        char *ended = harness_query_value(conn, "SELECT count(pg_terminate_backend(pid)) "
                                                "FROM pg_stat_activity WHERE application_name = "
                                                "'pgturbo_cache_visibility'");
        bool one = ended != NULL && strcmp(ended, "1") == 0;
        free(ended);
        if (one)
            break;
        if (harness_now_ms() > deadline)
            fail_msg("no snapshot connection to end");
        harness_sleep_ms(20);
    }
    harness_exec_ok(conn, "INSERT INTO users VALUES (303, 'sync')");
    expect_next(c, "public|users");
    wait_all_visible(c);
    assert_string_equal(c->at_visible, "4");
    cachelogical_status(l, &st);
    assert_int_equal(st.reconnects, 0);
    assert_true(st.connected);

    /* While the consumer still confirms: the commit waits for it. */
    harness_exec_ok(conn, "DELETE FROM users WHERE id BETWEEN 300 AND 399");
    stop_promptly(l);
    assert_tokens_all_back(c);
    PQfinish(c->probe);
    PQfinish(conn);
    collector_free(c);
}

static void many_tables_one_by_one_up_to_the_limit(void **state)
{
    collector_t *c = collector_new();
    PGconn *conn = writer();
    cachelogical_t *l = start(c, consumer_conninfo());
    char sql[256];
    static char names[CACHELOGICAL_MAX_TABLES][32];
    const char *expected[CACHELOGICAL_MAX_TABLES];

    expect_next(c, "*");
    /* As many tables as a transaction may report one by one: each of them. */
    snprintf(sql, sizeof(sql),
             "DO $$ BEGIN FOR i IN 1..%d LOOP EXECUTE format('INSERT INTO wide_%%s VALUES (1)', "
             "i); END LOOP; END $$",
             CACHELOGICAL_MAX_TABLES);
    harness_exec_ok(conn, sql);
    for (int i = 0; i < CACHELOGICAL_MAX_TABLES; i++) {
        snprintf(names[i], sizeof(names[i]), "public|wide_%d", i + 1);
        expected[i] = names[i];
    }
    expect_reports(c, conn, expected, CACHELOGICAL_MAX_TABLES);

    /* One more: a single report of any table. */
    snprintf(sql, sizeof(sql),
             "DO $$ BEGIN FOR i IN 1..%d LOOP EXECUTE format('INSERT INTO wide_%%s VALUES (2)', "
             "i); END LOOP; END $$",
             WIDE_TABLES);
    harness_exec_ok(conn, sql);
    const char *const any[] = {"*"};
    expect_reports(c, conn, any, 1);

    cachelogical_status_t st;
    cachelogical_status(l, &st);
    char slot[sizeof(st.slot)];
    snprintf(slot, sizeof(slot), "%s", st.slot);
    stop_promptly(l);
    assert_slot_goes(conn, slot);
    PQfinish(conn);
    collector_free(c);
}

static void a_killed_walsender_means_a_new_slot_and_any_table(void **state)
{
    collector_t *c = collector_new();
    PGconn *conn = writer();
    cachelogical_t *l = start(c, consumer_conninfo());
    cachelogical_status_t st;
    char sql[512];

    expect_next(c, "*");
    cachelogical_status(l, &st);
    char old_slot[sizeof(st.slot)];
    snprintf(old_slot, sizeof(old_slot), "%s", st.slot);

    snprintf(sql, sizeof(sql),
             "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a "
             "JOIN pg_replication_slots s ON s.active_pid = a.pid "
             "WHERE a.backend_type = 'walsender' AND s.slot_name = '%s'",
             old_slot);
    char *killed = harness_query_value(conn, sql);
    assert_string_equal(killed, "1");
    free(killed);

    /* One second's wait, a new slot, and anything may have changed meanwhile. */
    expect_next(c, "*");
    cachelogical_status(l, &st);
    assert_true(st.connected);
    assert_int_equal(st.reconnects, 1);
    assert_string_not_equal(st.slot, old_slot);
    assert_memory_equal(st.slot, PREFIX "_", strlen(PREFIX) + 1);
    if (strstr(st.last_error, "terminating connection due to administrator command") == NULL)
        fail_msg("last_error: \"%s\"", st.last_error);
    assert_slot_goes(conn, old_slot);

    harness_exec_ok(conn, "INSERT INTO users VALUES (100, 'after')");
    const char *const users[] = {"public|users"};
    expect_reports(c, conn, users, 1);

    char new_slot[sizeof(st.slot)];
    snprintf(new_slot, sizeof(new_slot), "%s", st.slot);
    stop_promptly(l);
    assert_slot_goes(conn, new_slot);
    PQfinish(conn);
    collector_free(c);
}

static void a_server_that_is_down_is_retried_and_the_stop_is_prompt(void **state)
{
    collector_t *c = collector_new();
    char conninfo[256];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres dbname=x",
             harness_free_port());
    cachelogical_t *l = start(c, conninfo);
    cachelogical_status_t st;

    /* The first attempt fails at once; the second comes a second later. */
    long long deadline = harness_now_ms() + 5000;
    do {
        harness_sleep_ms(50);
        cachelogical_status(l, &st);
    } while (st.reconnects < 1 && harness_now_ms() < deadline);
    assert_int_equal(st.reconnects, 1);
    assert_false(st.connected);
    assert_string_equal(st.slot, "");
    if (strstr(st.last_error, "Connection refused") == NULL)
        fail_msg("last_error: \"%s\"", st.last_error);

    /* Now in its two-second wait. */
    harness_sleep_ms(200);
    stop_promptly(l);
    assert_int_equal(collected(c), 0);
    collector_free(c);
}

static void a_slot_waiting_for_an_old_transaction_stops_promptly(void **state)
{
    collector_t *c = collector_new();
    PGconn *old = writer();
    PGconn *conn = writer();

    /* A logical slot is ready only once the transactions running when it was asked for end. */
    harness_exec_ok(old, "BEGIN");
    harness_exec_ok(old, "INSERT INTO users VALUES (200, 'old')");
    cachelogical_t *l = start(c, consumer_conninfo());
    cachelogical_status_t st;
    long long deadline = harness_now_ms() + 5000;
    char *waiting = NULL;
    for (;;) {
        free(waiting);
        waiting = harness_query_value(conn, "SELECT count(*) FROM pg_replication_slots "
                                            "WHERE slot_name LIKE '" PREFIX "\\_%'");
        if (strcmp(waiting, "1") == 0 || harness_now_ms() > deadline)
            break;
        harness_sleep_ms(20);
    }
    assert_string_equal(waiting, "1");
    free(waiting);
    harness_sleep_ms(300);
    cachelogical_status(l, &st);
    assert_false(st.connected);
    assert_int_equal(collected(c), 0);

    stop_promptly(l);
    assert_int_equal(collected(c), 0);
    /* The walsender notices that the consumer has gone only once the wait ends. */
    harness_exec_ok(old, "ROLLBACK");
    deadline = harness_now_ms() + 5000;
    for (;;) {
        waiting = harness_query_value(conn, "SELECT count(*) FROM pg_replication_slots "
                                            "WHERE slot_name LIKE '" PREFIX "\\_%'");
        bool gone = strcmp(waiting, "0") == 0;
        free(waiting);
        if (gone)
            break;
        if (harness_now_ms() > deadline)
            fail_msg("the slot is still there 5 s after the old transaction ended");
        harness_sleep_ms(20);
    }
    PQfinish(old);
    PQfinish(conn);
    collector_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reports_each_commits_tables_after_it),
        cmocka_unit_test_teardown(a_synchronous_commit_is_reported_before_it_is_visible,
                                  reset_synchronous_standby),
        cmocka_unit_test(many_tables_one_by_one_up_to_the_limit),
        cmocka_unit_test(a_killed_walsender_means_a_new_slot_and_any_table),
        cmocka_unit_test(a_server_that_is_down_is_retried_and_the_stop_is_prompt),
        cmocka_unit_test(a_slot_waiting_for_an_old_transaction_stops_promptly),
    };
    return cmocka_run_group_tests(tests, setup_database, teardown_database);
}
