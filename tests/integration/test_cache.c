/*
 * test_cache.c
 *    The result cache of a running pgturbo against the test cluster: reads answered from
 *    memory, and never a stale answer after a write through pgturbo, whatever path the write
 *    takes (simple or extended protocol, a transaction, a foreign-key cascade, a trigger, a
 *    partition, a view's base table, DDL); each exclusion (volatile function, transaction,
 *    FOR UPDATE, temporary table, session state, the pgturbo_cache tag), the bounds (TTL,
 *    entries, memory, compression), and the warm of the most hit answers.
 *
 *    A read is shown to come from the cache by changing its row straight in PostgreSQL, which
 *    pgturbo cannot see (cache_invalidation = proxy): a cached read still gives the old value,
 *    a read that went to the server gives the new one.
 */
#include "harness.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define DB    "cache_test"
#define TOKEN "it-cache-token"

static PGconn *direct;

/* A figure of the test database's object in the cache API (or of its member object, when
 * member is not NULL): a number, a boolean as 0 or 1, or -1 when there is none. */
static long long database_figure(int admin_port, const char *member, const char *key)
{
    json_t *api = harness_cache_get(admin_port, TOKEN);
    long long figure = -1;
    size_t i;
    json_t *db;
    json_array_foreach(json_object_get(api, "databases"), i, db)
    {
        const char *target = json_string_value(json_object_get(db, "target"));
        json_t *o = member != NULL ? json_object_get(db, member) : db;
        json_t *v = json_object_get(o, key);
        if (target == NULL || strstr(target, "/" DB) == NULL || v == NULL)
            continue;
        figure = json_is_boolean(v) ? json_is_true(v) : (long long)json_integer_value(v);
    }
    json_decref(api);
    return figure;
}

static bool database_flag(int admin_port, const char *member, const char *flag)
{
    return database_figure(admin_port, member, flag) == 1;
}

/*
 * Starts pgturbo with an admin API and the [cache] lines given (a rule at least), and waits
 * until it has read the test database's catalog: the first read of a database asks for it,
 * and until it is in no read is cached.
 */
static void start_mode(pgturbo_proc_t *p, int *admin_port, const char *mode,
                       const char *cache_lines)
{
    char extra[2048];
    *admin_port = harness_free_port();
    snprintf(extra, sizeof(extra),
             "admin_listen = 127.0.0.1:%d\nadmin_token = %s\npool_mode = %s\n"
             "[cache]\n%s\n",
             *admin_port, TOKEN, mode, cache_lines);
    harness_start_pgturbo(p, extra, NULL);
    PGconn *c = harness_connect(p->port, DB, NULL);
    harness_cache_wait_catalog(c, *admin_port, TOKEN, DB);
    PQfinish(c);
}

/* start_mode in transaction mode, the mode the cache is mostly used with. */
static void start(pgturbo_proc_t *p, int *admin_port, const char *cache_lines)
{
    start_mode(p, admin_port, "transaction", cache_lines);
}

static PGconn *connect_via(const pgturbo_proc_t *p)
{
    return harness_connect(p->port, DB, NULL);
}

/* The first value of sql's first row, compared with want. */
static void expect_read(PGconn *conn, const char *sql, const char *want)
{
    char *got = harness_query_value(conn, sql);
    if (got == NULL || strcmp(got, want) != 0)
        fail_msg("%s: expected \"%s\", got \"%s\"", sql, want, got != NULL ? got : "(null)");
    free(got);
}

/* Changes the value behind pgturbo's back. */
static void set_directly(const char *sql)
{
    harness_exec_ok(direct, sql);
}

static int setup(void **state)
{
    harness_create_database(DB);
    direct = harness_connect_direct(DB);
    harness_silence_notices(direct);
    return 0;
}

static int teardown(void **state)
{
    PQfinish(direct);
    harness_drop_database(DB);
    return 0;
}

/* A read of a table with a rule is answered from memory: a change that bypasses pgturbo is
 * not seen until a write through pgturbo invalidates it. */
static void test_cached_read_until_a_write_through_pgturbo(void **state)
{
    set_directly("CREATE TABLE items (id int PRIMARY KEY, v text);"
                 "INSERT INTO items VALUES (1, 'one'), (2, 'two')");
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "items = 60");
    PGconn *c = connect_via(&p);
    const char *q = "SELECT v FROM items WHERE id = 1";
    expect_read(c, q, "one"); /* stored */
    set_directly("UPDATE items SET v = 'uno' WHERE id = 1");
    expect_read(c, q, "one"); /* from the cache */
    json_t *api = harness_cache_get(admin, TOKEN);
    assert_true(harness_cache_total(api, "hits") >= 1);
    assert_true(harness_cache_total(api, "entries") >= 1);
    json_decref(api);
    harness_exec_ok(c, "UPDATE items SET v = 'eins' WHERE id = 1");
    expect_read(c, q, "eins");
    /* Another client of another worker sees the same. */
    PGconn *c2 = connect_via(&p);
    expect_read(c2, q, "eins");
    PQfinish(c2);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE items");
}

/* The extended protocol, unnamed (PQexecParams) and named (PQprepare), is cached by its
 * parameter values, and invalidated by an extended-protocol write. */
static void test_extended_protocol_reads_and_writes(void **state)
{
    set_directly("CREATE TABLE xitems (id int PRIMARY KEY, v text);"
                 "INSERT INTO xitems VALUES (1, 'one'), (2, 'two')");
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "xitems = 60");
    PGconn *c = connect_via(&p);
    const char *q = "SELECT v FROM xitems WHERE id = $1";
    const char *one[] = {"1"}, *two[] = {"2"};
    for (int round = 0; round < 3; round++) {
        PGresult *r = PQexecParams(c, q, 1, NULL, one, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        assert_string_equal(PQgetvalue(r, 0, 0), "one");
        PQclear(r);
    }
    PGresult *r = PQprepare(c, "get", q, 1, NULL);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    for (int round = 0; round < 3; round++) {
        r = PQexecPrepared(c, "get", 1, two, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        assert_string_equal(PQgetvalue(r, 0, 0), "two");
        PQclear(r);
    }
    set_directly("UPDATE xitems SET v = v || '!'");
    r = PQexecParams(c, q, 1, NULL, one, NULL, NULL, 0);
    assert_string_equal(PQgetvalue(r, 0, 0), "one"); /* cached */
    PQclear(r);
    r = PQexecPrepared(c, "get", 1, two, NULL, NULL, 0);
    assert_string_equal(PQgetvalue(r, 0, 0), "two"); /* cached, by its value */
    PQclear(r);
    const char *upd[] = {"1"};
    r = PQexecParams(c, "UPDATE xitems SET v = 'new' WHERE id = $1", 1, NULL, upd, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexecParams(c, q, 1, NULL, one, NULL, NULL, 0);
    assert_string_equal(PQgetvalue(r, 0, 0), "new");
    PQclear(r);
    r = PQexecPrepared(c, "get", 1, two, NULL, NULL, 0);
    assert_string_equal(PQgetvalue(r, 0, 0), "two!");
    PQclear(r);
    /* A binary result format is another answer. */
    int binary = 1;
    r = PQexecParams(c, "SELECT id FROM xitems WHERE id = $1", 1, NULL, one, NULL, NULL, binary);
    assert_int_equal(PQgetlength(r, 0, 0), 4);
    PQclear(r);
    r = PQexecParams(c, "SELECT id FROM xitems WHERE id = $1", 1, NULL, one, NULL, NULL, 0);
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE xitems");
}

/* A write inside a transaction invalidates when it is sent and when the transaction ends; a
 * read inside a transaction is neither served nor stored (it may see uncommitted rows). */
static void test_transactions(void **state)
{
    set_directly("CREATE TABLE titems (id int PRIMARY KEY, v int);"
                 "INSERT INTO titems VALUES (1, 10)");
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "titems = 60");
    PGconn *a = connect_via(&p), *b = connect_via(&p);
    const char *q = "SELECT v FROM titems WHERE id = 1";
    expect_read(b, q, "10");
    expect_read(b, q, "10");
    harness_exec_ok(a, "BEGIN");
    harness_exec_ok(a, "UPDATE titems SET v = 11 WHERE id = 1");
    expect_read(a, q, "11"); /* inside: its own write */
    expect_read(b, q, "10"); /* outside: the committed value */
    expect_read(b, q, "10"); /* stored again meanwhile, perhaps */
    harness_exec_ok(a, "COMMIT");
    expect_read(b, q, "11"); /* the commit's bump */
    harness_exec_ok(a, "BEGIN");
    harness_exec_ok(a, "UPDATE titems SET v = 99 WHERE id = 1");
    expect_read(a, q, "99");
    harness_exec_ok(a, "ROLLBACK");
    expect_read(b, q, "11"); /* the uncommitted 99 was never stored */
    set_directly("UPDATE titems SET v = 12");
    harness_exec_ok(a, "BEGIN");
    expect_read(a, q, "12"); /* inside a transaction: not from the cache */
    harness_exec_ok(a, "COMMIT");
    PQfinish(a);
    PQfinish(b);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE titems");
}

/* Reads that must never be cached: each would show the direct change. */
static void test_exclusions(void **state)
{
    set_directly("CREATE TABLE eitems (id int PRIMARY KEY, v int, at timestamptz DEFAULT now());"
                 "INSERT INTO eitems VALUES (1, 1);"
                 "CREATE FUNCTION bump_v(int) RETURNS int VOLATILE LANGUAGE sql AS 'SELECT $1';"
                 "CREATE FUNCTION same_v(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1'");
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "eitems = 60");
    PGconn *c = connect_via(&p);
    const char *never[] = {
        "SELECT v FROM eitems WHERE id = 1 AND at < now() + interval '1 day'",
        "SELECT bump_v(v) FROM eitems WHERE id = 1",
        "SELECT v FROM eitems WHERE id = 1 FOR UPDATE",
        "SELECT v FROM eitems WHERE id = 1 AND random() >= 0",
        "/* pgturbo_cache='off' */ SELECT v + 0 FROM eitems WHERE id = 1",
    };
    int v = 1;
    char sql[128], want[16];
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        snprintf(want, sizeof(want), "%d", v);
        expect_read(c, never[i], want);
        expect_read(c, never[i], want);
        v++;
        snprintf(sql, sizeof(sql), "UPDATE eitems SET v = %d", v);
        set_directly(sql);
        snprintf(want, sizeof(want), "%d", v);
        expect_read(c, never[i], want);
    }
    /* An immutable function is no obstacle. */
    const char *immutable = "SELECT same_v(v) FROM eitems WHERE id = 1";
    snprintf(want, sizeof(want), "%d", v);
    expect_read(c, immutable, want);
    expect_read(c, immutable, want);
    set_directly("UPDATE eitems SET v = 100");
    expect_read(c, immutable, want);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE eitems; DROP FUNCTION bump_v(int); DROP FUNCTION same_v(int)");
}

/* A session with state pgturbo does not follow gets no answer from the cache, and gives it
 * none: a temporary table of the same name, another search_path (in session mode, where a
 * SET stays with its client). */
static void test_session_state_keeps_the_client_out(void **state)
{
    set_directly("CREATE TABLE sitems (id int PRIMARY KEY, v text);"
                 "INSERT INTO sitems VALUES (1, 'shared');"
                 "CREATE SCHEMA other; CREATE TABLE other.sitems (id int, v text);"
                 "INSERT INTO other.sitems VALUES (1, 'other')");
    pgturbo_proc_t p;
    int admin;
    start_mode(&p, &admin, "session", "sitems = 60");
    PGconn *plain = connect_via(&p);
    const char *q = "SELECT v FROM sitems WHERE id = 1";
    expect_read(plain, q, "shared");
    expect_read(plain, q, "shared");
    PGconn *path = connect_via(&p);
    expect_read(path, q, "shared"); /* from the cache */
    harness_exec_ok(path, "SET search_path = other");
    expect_read(path, q, "other");
    expect_read(path, q, "other");
    expect_read(plain, q, "shared");
    set_directly("UPDATE sitems SET v = 'changed'");
    expect_read(plain, q, "shared"); /* the clean sessions' answer is still cached */
    harness_exec_ok(plain, "UPDATE sitems SET v = 'shared'");
    /* A temporary table of the name: its session reads it, never the cached answer. */
    PGconn *temp = connect_via(&p);
    expect_read(temp, q, "shared");
    harness_exec_ok(temp, "CREATE TEMP TABLE sitems (id int, v text)");
    harness_exec_ok(temp, "INSERT INTO sitems VALUES (1, 'temporary')");
    expect_read(temp, q, "temporary");
    expect_read(temp, q, "temporary");
    expect_read(plain, q, "shared");
    expect_read(plain, q, "shared");
    PQfinish(temp);
    PQfinish(path);
    PQfinish(plain);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE sitems; DROP SCHEMA other CASCADE");
}

/* Names as written do not matter (public.t and t are one table); same-named tables of two
 * schemas keep their own answers; a write to either is seen by reads of both spellings. */
static void test_schema_qualified_and_same_named_tables(void **state)
{
    set_directly("CREATE SCHEMA s1; CREATE SCHEMA s2;"
                 "CREATE TABLE s1.items (v text); INSERT INTO s1.items VALUES ('s1');"
                 "CREATE TABLE s2.items (v text); INSERT INTO s2.items VALUES ('s2');"
                 "CREATE TABLE public.qitems (v text); INSERT INTO qitems VALUES ('q')");
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "items = 60\nqitems = 60");
    PGconn *c = connect_via(&p);
    for (int i = 0; i < 2; i++) {
        expect_read(c, "SELECT v FROM s1.items", "s1");
        expect_read(c, "SELECT v FROM s2.items", "s2");
        expect_read(c, "SELECT v FROM public.qitems", "q");
        expect_read(c, "SELECT v FROM qitems", "q");
    }
    harness_exec_ok(c, "UPDATE qitems SET v = 'q2'");
    expect_read(c, "SELECT v FROM public.qitems", "q2");
    harness_exec_ok(c, "UPDATE public.qitems SET v = 'q3'");
    expect_read(c, "SELECT v FROM qitems", "q3");
    harness_exec_ok(c, "UPDATE s2.items SET v = 's2b'");
    expect_read(c, "SELECT v FROM s2.items", "s2b");
    expect_read(c, "SELECT v FROM s1.items", "s1");
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP SCHEMA s1 CASCADE; DROP SCHEMA s2 CASCADE; DROP TABLE qitems");
}

/* Writes that reach other tables: an ON DELETE CASCADE child, a trigger's target, a
 * partition's parent, a view's base table; DDL reaches everything. */
static void test_writes_reach_dependent_tables(void **state)
{
    set_directly(
        "CREATE TABLE parents (id int PRIMARY KEY);"
        "CREATE TABLE children (id int, parent int REFERENCES parents ON DELETE CASCADE);"
        "INSERT INTO parents VALUES (1), (2); INSERT INTO children VALUES (1, 1), (2, 2);"
        "CREATE TABLE audited (id int); CREATE TABLE audit_log (n int);"
        "CREATE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN INSERT INTO audit_log VALUES (NEW.id); RETURN NEW; END$$;"
        "CREATE TRIGGER audit AFTER INSERT ON audited FOR EACH ROW EXECUTE FUNCTION log_it();"
        "CREATE TABLE measures (at date, v int) PARTITION BY RANGE (at);"
        "CREATE TABLE measures_2026 PARTITION OF measures "
        "FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
        "CREATE VIEW big_measures AS SELECT * FROM measures WHERE v > 10");
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "* = 60");
    PGconn *c = connect_via(&p);
    const char *children = "SELECT count(*) FROM children";
    const char *log = "SELECT count(*) FROM audit_log";
    const char *parent = "SELECT count(*) FROM measures";
    const char *view = "SELECT count(*) FROM big_measures";
    for (int i = 0; i < 2; i++) {
        expect_read(c, children, "2");
        expect_read(c, log, "0");
        expect_read(c, parent, "0");
        expect_read(c, view, "0");
    }
    harness_exec_ok(c, "DELETE FROM parents WHERE id = 1");
    expect_read(c, children, "1");
    harness_exec_ok(c, "INSERT INTO audited VALUES (7)");
    expect_read(c, log, "1");
    harness_exec_ok(c, "INSERT INTO measures_2026 VALUES ('2026-05-01', 50)");
    expect_read(c, parent, "1");
    expect_read(c, view, "1");
    expect_read(c, children, "1"); /* stored again: the trigger's write reached everything */
    set_directly("INSERT INTO children VALUES (3, 2)");
    expect_read(c, children, "1"); /* cached */
    harness_exec_ok(c, "ALTER TABLE audit_log ADD COLUMN note text");
    expect_read(c, children, "2"); /* DDL: everything of the database */
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE children, parents, audited, audit_log, measures CASCADE;"
                 "DROP FUNCTION log_it()");
}

/* A rule's TTL ends an answer; the tag gives one to a table without a rule. */
static void test_ttl_and_tag(void **state)
{
    set_directly("CREATE TABLE ttl_items (v int); INSERT INTO ttl_items VALUES (1);"
                 "CREATE TABLE untagged (v int); INSERT INTO untagged VALUES (1)");
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "ttl_items = 0.5\n* = off");
    PGconn *c = connect_via(&p);
    const char *q = "SELECT v FROM ttl_items";
    expect_read(c, q, "1");
    expect_read(c, q, "1");
    set_directly("UPDATE ttl_items SET v = 2");
    expect_read(c, q, "1");
    harness_sleep_ms(700);
    expect_read(c, q, "2");
    const char *tagged = "SELECT v FROM untagged /* pgturbo_cache='60' */";
    const char *plain = "SELECT v + 0 FROM untagged";
    expect_read(c, tagged, "1");
    expect_read(c, tagged, "1");
    expect_read(c, plain, "1");
    set_directly("UPDATE untagged SET v = 2");
    expect_read(c, tagged, "1");
    expect_read(c, plain, "2");
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE ttl_items, untagged");
}

/* cache_max_entries holds; large results are compressed and come back whole. */
static void test_bounds_and_compression(void **state)
{
    set_directly("CREATE TABLE bitems (id int PRIMARY KEY, body text);"
                 "INSERT INTO bitems SELECT g, repeat(md5(g::text), 200) "
                 "FROM generate_series(1, 300) g");
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "bitems = 60\ncache_max_entries = 100\ncache_compress_min = 1kB");
    PGconn *c = connect_via(&p);
    char sql[128];
    expect_read(c, "SELECT length(body) FROM bitems WHERE id = 1", "6400");
    for (int i = 1; i <= 300; i++) {
        snprintf(sql, sizeof(sql), "SELECT body FROM bitems WHERE id = %d", i);
        char *v = harness_query_value(c, sql);
        assert_int_equal(strlen(v), 6400);
        free(v);
    }
    json_t *api = harness_cache_get(admin, TOKEN);
    assert_true(harness_cache_total(api, "entries") <= 100);
    assert_true(harness_cache_total(api, "evictions") >= 200 - 1);
    json_decref(api);
    /* The last ones are in; their answers are whole after decompression. */
    char *first = harness_query_value(c, "SELECT body FROM bitems WHERE id = 300");
    char *again = harness_query_value(c, "SELECT body FROM bitems WHERE id = 300");
    assert_string_equal(first, again);
    free(first);
    free(again);
    api = harness_cache_get(admin, TOKEN);
    double ratio =
        json_real_value(json_object_get(json_object_get(api, "totals"), "compression_ratio"));
    assert_true(ratio > 1.5);
    json_decref(api);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE bitems");
}

/* POST /api/v1/cache/clear[?query] on the instance whose admin API is on admin_port. */
static void clear(int admin_port, const char *query)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/cache/clear%s", query);
    harness_response_t r = harness_http(admin_port, "POST", path, "Bearer " TOKEN);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
}

/* POST /api/v1/cache/clear drops answers by table and all of them. */
static void test_clear_through_the_api(void **state)
{
    set_directly("CREATE TABLE citems (v int); INSERT INTO citems VALUES (1)");
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "citems = 60");
    PGconn *c = connect_via(&p);
    const char *q = "SELECT v FROM citems";
    expect_read(c, q, "1");
    expect_read(c, q, "1");
    set_directly("UPDATE citems SET v = 2");
    expect_read(c, q, "1");
    clear(admin, "?table=citems");
    expect_read(c, q, "2");
    set_directly("UPDATE citems SET v = 3");
    expect_read(c, q, "2");
    clear(admin, "");
    expect_read(c, q, "3");
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE citems");
}

/* POST /api/v1/cache/warm?top=N with the admin token; the JSON answer, after a 200. */
static json_t *warm(int admin_port, int top)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/cache/warm?top=%d", top);
    harness_response_t r = harness_http(admin_port, "POST", path, "Bearer " TOKEN);
    if (r.status != 200)
        fail_msg("POST %s: %d %.300s", path, r.status, r.body);
    json_error_t e;
    json_t *j = json_loads(r.body, 0, &e);
    harness_response_free(&r);
    assert_non_null(j);
    return j;
}

/* Asserts a warm's answer: {"requested": ..., "entries": ..., "warmed": ..., ...}. */
static void assert_warm(json_t *answer, int requested, int entries, int warmed, int fresh,
                        int skipped, int failed)
{
    const char *keys[] = {"requested", "entries", "warmed", "fresh", "skipped", "failed"};
    int want[] = {requested, entries, warmed, fresh, skipped, failed};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (json_integer_value(json_object_get(answer, keys[i])) != want[i])
            fail_msg("warm: %s is %lld, expected %d", keys[i],
                     (long long)json_integer_value(json_object_get(answer, keys[i])), want[i]);
    json_decref(answer);
}

/* PQexecParams of the extended-protocol read of the warm test, for id; its value. */
static void expect_extended_read(PGconn *c, const char *id, const char *want)
{
    const char *values[] = {id};
    PGresult *r =
        PQexecParams(c, "SELECT v FROM witems WHERE id = $1", 1, NULL, values, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), want);
    PQclear(r);
}

/*
 * POST /api/v1/cache/warm runs the most hit entries again after a write through pgturbo made
 * them stale: the next reads are hits, with the data the write left. A change made behind
 * pgturbo's back after the warm is not seen: those answers came from memory. Entries still
 * current are left as they are; one cached for a pgturbo_cache tag is skipped. In pool_mode.
 */
static void warm_refills_the_most_hit_answers(const char *mode)
{
    set_directly("CREATE TABLE witems (id int PRIMARY KEY, v text);"
                 "INSERT INTO witems VALUES (1, 'one'), (2, 'two'), (3, 'three')");
    pgturbo_proc_t p;
    int admin;
    start_mode(&p, &admin, mode, "witems = 60");
    PGconn *c = connect_via(&p);
    const char *simple = "SELECT v FROM witems WHERE id = 1";
    const char *tagged = "SELECT v FROM witems WHERE id = 3 /* pgturbo_cache='60' */";
    for (int i = 0; i < 4; i++)
        expect_read(c, simple, "one"); /* 3 hits */
    for (int i = 0; i < 3; i++)
        expect_extended_read(c, "2", "two"); /* 2 hits */
    for (int i = 0; i < 2; i++)
        expect_read(c, tagged, "three"); /* 1 hit */
    harness_exec_ok(c, "UPDATE witems SET v = v || '+'");
    /* The two most hit: both stale, both recorded again. */
    assert_warm(warm(admin, 2), 2, 2, 2, 0, 0, 0);
    set_directly("UPDATE witems SET v = 'behind pgturbo'");
    json_t *api = harness_cache_get(admin, TOKEN);
    long long hits = harness_cache_total(api, "hits");
    assert_int_equal(harness_cache_total(api, "warms"), 1);
    assert_int_equal(harness_cache_total(api, "warmed"), 2);
    json_decref(api);
    expect_read(c, simple, "one+");
    expect_extended_read(c, "2", "two+");
    api = harness_cache_get(admin, TOKEN);
    assert_int_equal(harness_cache_total(api, "hits") - hits, 2);
    json_decref(api);
    /* Nothing written since: the two are current; the tagged entry is not run. */
    assert_warm(warm(admin, 20), 20, 3, 0, 2, 1, 0);
    api = harness_cache_get(admin, TOKEN);
    assert_int_equal(harness_cache_total(api, "warms"), 2);
    assert_int_equal(harness_cache_total(api, "warm_fresh"), 2);
    json_decref(api);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE witems");
}

static void test_warm_refills_the_most_hit_answers(void **state)
{
    warm_refills_the_most_hit_answers("transaction");
}

/* The warm's client keeps its server for its session there, as any client does. */
static void test_warm_in_session_mode(void **state)
{
    warm_refills_the_most_hit_answers("session");
}

/* An entry whose read now fails (its table dropped behind pgturbo's back) counts as failed,
 * and the warm goes on with the next. */
static void test_warm_counts_a_read_that_now_fails(void **state)
{
    set_directly("CREATE TABLE fitems (v int); INSERT INTO fitems VALUES (1);"
                 "CREATE TABLE kitems (v int); INSERT INTO kitems VALUES (1)");
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "* = 60");
    PGconn *c = connect_via(&p);
    for (int i = 0; i < 3; i++)
        expect_read(c, "SELECT v FROM fitems", "1");
    for (int i = 0; i < 2; i++)
        expect_read(c, "SELECT v FROM kitems", "1");
    harness_exec_ok(c, "UPDATE fitems SET v = 2");
    harness_exec_ok(c, "UPDATE kitems SET v = 2");
    set_directly("DROP TABLE fitems");
    assert_warm(warm(admin, 20), 20, 2, 1, 0, 0, 1);
    set_directly("UPDATE kitems SET v = 3");
    expect_read(c, "SELECT v FROM kitems", "2");
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE kitems");
}

/* Writes the auth_file at path: users and their passwords, in clear. */
static void write_users(const char *path, const char *lines)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(lines, f);
    assert_int_equal(fclose(f), 0);
}

/* A user whom a reload took out of auth_file: the warm skips the answers cached for it, and
 * still runs those of the others. */
static void test_warm_skips_a_user_gone_from_the_config(void **state)
{
    set_directly("CREATE TABLE uitems (v text); INSERT INTO uitems VALUES ('one');"
                 "DROP ROLE IF EXISTS warmer; CREATE ROLE warmer LOGIN;"
                 "GRANT SELECT ON uitems TO warmer");
    char users[] = "/tmp/pgturbo-warm-users.XXXXXX";
    int fd = mkstemp(users);
    assert_true(fd >= 0);
    close(fd);
    write_users(users, "\"postgres\" \"pw\"\n\"warmer\" \"pw2\"\n");
    char extra[1024];
    int admin = harness_free_port();
    snprintf(extra, sizeof(extra),
             "admin_listen = 127.0.0.1:%d\nadmin_token = %s\npool_mode = transaction\n"
             "auth_type = md5\nauth_file = %s\n[cache]\nuitems = 60\n",
             admin, TOKEN, users);
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, extra, NULL);
    PGconn *c = harness_connect(p.port, DB, "password=pw");
    harness_cache_wait_catalog(c, admin, TOKEN, DB);
    PGconn *w = harness_connect(p.port, DB, "user=warmer password=pw2");
    const char *q = "SELECT v FROM uitems";
    expect_read(w, q, "one");
    expect_read(w, q, "one");
    expect_read(c, q, "one");
    harness_exec_ok(c, "UPDATE uitems SET v = 'two'");
    PQfinish(w);
    write_users(users, "\"postgres\" \"pw\"\n");
    harness_reload_pgturbo(&p, extra, NULL);
    assert_warm(warm(admin, 20), 20, 2, 1, 0, 1, 0);
    set_directly("UPDATE uitems SET v = 'behind pgturbo'");
    expect_read(c, q, "two");
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    unlink(users);
    set_directly("DROP TABLE uitems; DROP ROLE warmer");
}

/* Until the instance on admin_port trusts its memory: its Redis link is fresh. */
static void wait_for_fresh_link(int admin_port)
{
    long long deadline = harness_now_ms() + 10000;
    for (;;) {
        json_t *api = harness_cache_get(admin_port, TOKEN);
        bool fresh = json_is_true(json_object_get(json_object_get(api, "redis"), "fresh"));
        json_decref(api);
        if (fresh)
            return;
        if (harness_now_ms() > deadline)
            fail_msg("the Redis link was not fresh within 10 s");
        harness_sleep_ms(50);
    }
}

static long long redis_total(int admin_port, const char *key)
{
    json_t *api = harness_cache_get(admin_port, TOKEN);
    long long n =
        (long long)json_integer_value(json_object_get(json_object_get(api, "redis"), key));
    json_decref(api);
    return n;
}

/* Two instances sharing a Redis, each caching table for 60 s. */
typedef struct redis_pair {
    harness_redis_t redis;
    pgturbo_proc_t proc[2];
    int admin[2];
} redis_pair_t;

/* Creates table (id int PRIMARY KEY, v text) with the row (1, 'one'), starts Redis and both
 * instances, and waits until both trust their memory. Skips without Redis. */
static void redis_pair_start(redis_pair_t *pair, const char *table)
{
    if (getenv("PGTURBO_TEST_SKIP_REDIS") != NULL)
        skip();
    char sql[160];
    snprintf(sql, sizeof(sql),
             "CREATE TABLE %s (id int PRIMARY KEY, v text); INSERT INTO %s VALUES (1, 'one')",
             table, table);
    set_directly(sql);
    harness_start_redis(&pair->redis);
    char lines[256];
    snprintf(lines, sizeof(lines), "%s = 60\ncache_redis_host = 127.0.0.1\ncache_redis_port = %d",
             table, pair->redis.port);
    for (int i = 0; i < 2; i++)
        start(&pair->proc[i], &pair->admin[i], lines);
    for (int i = 0; i < 2; i++)
        wait_for_fresh_link(pair->admin[i]);
}

static void redis_pair_stop(redis_pair_t *pair, const char *table)
{
    for (int i = 0; i < 2; i++)
        assert_int_equal(harness_stop_pgturbo(&pair->proc[i], 10), 0);
    harness_stop_redis(&pair->redis);
    char sql[96];
    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    set_directly(sql);
}

/* With cache_redis_host, a warm stores its answers in the L2 too: another instance sharing
 * the Redis gets the warm's answer from there, not from PostgreSQL. */
static void test_warm_stores_in_the_l2(void **state)
{
    redis_pair_t pair;
    redis_pair_start(&pair, "l2items");
    int admin_a = pair.admin[0], admin_b = pair.admin[1];
    PGconn *c = connect_via(&pair.proc[0]);
    const char *q = "SELECT v FROM l2items WHERE id = 1";
    expect_read(c, q, "one");
    expect_read(c, q, "one");
    harness_exec_ok(c, "UPDATE l2items SET v = 'two'");
    long long puts = redis_total(admin_a, "puts");
    assert_warm(warm(admin_a, 1), 1, 1, 1, 0, 0, 0);
    assert_int_equal(redis_total(admin_a, "puts") - puts, 1);
    set_directly("UPDATE l2items SET v = 'behind pgturbo'");
    long long l2_hits = redis_total(admin_b, "hits");
    PGconn *other = connect_via(&pair.proc[1]);
    expect_read(other, q, "two");
    assert_int_equal(redis_total(admin_b, "hits") - l2_hits, 1);
    /* After a write, the same client's next read of the same text misses memory: it asks the
     * L2 again (the L2 read before is used up) and stores what the server answers there. */
    harness_exec_ok(c, "UPDATE l2items SET v = 'three'");
    long long gets_b = redis_total(admin_b, "gets"), puts_b = redis_total(admin_b, "puts");
    expect_read(other, q, "three");
    assert_int_equal(redis_total(admin_b, "gets") - gets_b, 1);
    assert_int_equal(redis_total(admin_b, "puts") - puts_b, 1);
    PQfinish(other);
    PQfinish(c);
    redis_pair_stop(&pair, "l2items");
}

/*
 * With cache_redis_host, a clear on one instance reaches the L2 and the other instances: after
 * a change behind pgturbo's back, neither instance answers the old rows from its memory or
 * from Redis.
 */
static void test_clear_reaches_the_l2_and_other_instances(void **state)
{
    redis_pair_t pair;
    redis_pair_start(&pair, "clitems");
    int admin_a = pair.admin[0];
    PGconn *ca = connect_via(&pair.proc[0]), *cb = connect_via(&pair.proc[1]);
    const char *q = "SELECT v FROM clitems WHERE id = 1";
    const char *expected[] = {"two", "three"};
    const char *updates[] = {"UPDATE clitems SET v = 'two'", "UPDATE clitems SET v = 'three'"};
    const char *how[] = {"?table=clitems", ""};
    for (int i = 0; i < 2; i++) {
        expect_read(cb, q, i == 0 ? "one" : "two"); /* b from the server, then memory */
        expect_read(cb, q, i == 0 ? "one" : "two");
        set_directly(updates[i]);
        clear(admin_a, how[i]);
        /* a forgot, and must not take the old answer back from the L2 */
        expect_read(ca, q, expected[i]);
        /* b heard it: its memory no longer answers */
        long long deadline = harness_now_ms() + 5000;
        for (;;) {
            char *v = harness_query_value(cb, q);
            bool fresh = v != NULL && strcmp(v, expected[i]) == 0;
            free(v);
            if (fresh)
                break;
            if (harness_now_ms() > deadline)
                fail_msg("instance b still answers the rows from before the clear (%s)", how[i]);
            harness_sleep_ms(20);
        }
    }
    PQfinish(ca);
    PQfinish(cb);
    redis_pair_stop(&pair, "clitems");
}

/* POST /api/v1/cache/warm takes top from 1 to 1000 and the admin token alone. */
static void test_warm_checks_top_and_token(void **state)
{
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "* = 60");
    const char *bad[] = {"0", "1001", "abc", "-1", "", "10x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[64];
        snprintf(path, sizeof(path), "/api/v1/cache/warm?top=%s", bad[i]);
        harness_response_t r = harness_http(admin, "POST", path, "Bearer " TOKEN);
        assert_int_equal(r.status, 400);
        assert_non_null(strstr(r.body, "\"error\""));
        assert_non_null(strstr(r.body, "top"));
        harness_response_free(&r);
    }
    harness_response_t r = harness_http(admin, "POST", "/api/v1/cache/warm", NULL);
    assert_int_equal(r.status, 401);
    harness_response_free(&r);
    r = harness_http(admin, "POST", "/api/v1/cache/warm", "Bearer wrong-token");
    assert_int_equal(r.status, 401);
    harness_response_free(&r);
    r = harness_http(admin, "GET", "/api/v1/cache/warm", "Bearer " TOKEN);
    assert_int_equal(r.status, 405);
    harness_response_free(&r);
    /* An empty cache: nothing to run, the default top. */
    assert_warm(warm(admin, 20), 20, 0, 0, 0, 0, 0);
    r = harness_http(admin, "POST", "/api/v1/cache/warm", "Bearer " TOKEN);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"requested\":20"));
    harness_response_free(&r);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

/* A rule whose reads mostly miss raises the cache_hit_ratio alert (evaluated every 5 s). */
static void test_low_hit_ratio_raises_an_alert(void **state)
{
    set_directly("CREATE TABLE ritems (id int); INSERT INTO ritems SELECT generate_series(1, 200)");
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin, "ritems = 60");
    PGconn *c = connect_via(&p);
    char sql[96];
    for (int i = 1; i <= 150; i++) {
        snprintf(sql, sizeof(sql), "SELECT id FROM ritems WHERE id = %d", i);
        char *v = harness_query_value(c, sql);
        free(v);
    }
    long long deadline = harness_now_ms() + 12000;
    bool raised = false;
    while (!raised && harness_now_ms() < deadline) {
        harness_response_t r = harness_http(admin, "GET", "/api/v1/alerts", "Bearer " TOKEN);
        raised = r.status == 200 && strstr(r.body, "\"cache_hit_ratio\"") != NULL &&
                 strstr(r.body, "\"ritems\"") != NULL;
        harness_response_free(&r);
        if (!raised)
            harness_sleep_ms(200);
    }
    assert_true(raised);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE ritems");
}

/* Until the consumer pgturbo_cache is the cluster's synchronous standby. */
static void wait_for_synchronous_consumer(void)
{
    long long deadline = harness_now_ms() + 10000;
    for (;;) {
        char *n = harness_query_value(direct, "SELECT count(*) FILTER (WHERE sync_state = 'sync') "
                                              "|| '/' || count(*) FROM pg_stat_replication "
                                              "WHERE application_name = 'pgturbo_cache_" DB "'");
        bool sync = n != NULL && strcmp(n, "1/1") == 0;
        free(n);
        if (sync)
            return;
        if (harness_now_ms() > deadline)
            fail_msg("pgturbo_cache did not become a synchronous standby within 10 s");
        harness_sleep_ms(50);
    }
}

static int reset_synchronous_standby(void **state)
{
    harness_exec_ok(direct, "ALTER SYSTEM RESET synchronous_standby_names");
    harness_exec_ok(direct, "SELECT pg_reload_conf()");
    return 0;
}

/*
 * cache_invalidation = logical, with pgturbo's consumer made the synchronous standby that
 * direct commits wait for: a read through pgturbo right after a direct commit returns is never
 * the old answer, though the read before it was cached.
 */
/* Waits until the consumer knows every commit it reported to be visible. */
static void wait_all_visible(int admin_port)
{
    long long deadline = harness_now_ms() + 10000;
    while (database_figure(admin_port, "logical", "invisible") != 0) {
        if (harness_now_ms() > deadline)
            fail_msg("a commit the consumer reported was not visible within 10 s");
        harness_sleep_ms(1);
    }
}

static void test_logical_invalidation_of_direct_writes(void **state)
{
    set_directly(
        "CREATE TABLE litems (id int PRIMARY KEY, v int); INSERT INTO litems VALUES (1, 0)");
    /* A consumer follows each database that [databases] names (not those of "*"): the test's
     * alone, so that the one pgturbo_cache standby is the consumer of its writes. */
    char extra[1024], entry[128];
    int admin = harness_free_port();
    snprintf(extra, sizeof(extra),
             "admin_listen = 127.0.0.1:%d\nadmin_token = %s\npool_mode = transaction\n"
             "[cache]\ncache_invalidation = logical\nlitems = 600\n",
             admin, TOKEN);
    snprintf(entry, sizeof(entry), DB " = host=127.0.0.1 port=%d dbname=" DB "\n",
             harness_pg_port());
    pgturbo_proc_t p;
    harness_start_pgturbo_databases(&p, extra, entry);
    PGconn *first = connect_via(&p);
    harness_cache_wait_catalog(first, admin, TOKEN, DB);
    PQfinish(first);
    long long deadline = harness_now_ms() + 10000;
    while (!database_flag(admin, "logical", "streaming")) {
        if (harness_now_ms() > deadline)
            fail_msg("the logical consumer did not stream within 10 s");
        harness_sleep_ms(50);
    }
    harness_exec_ok(direct, "ALTER SYSTEM SET synchronous_standby_names = 'pgturbo_cache_" DB "'");
    harness_exec_ok(direct, "SELECT pg_reload_conf()");
    wait_for_synchronous_consumer();
    PGconn *writer = harness_connect_direct(DB);
    harness_exec_ok(writer, "SET synchronous_commit = on");
    PGconn *c = connect_via(&p);
    const char *q = "SELECT v FROM litems WHERE id = 1";
    json_t *api = harness_cache_get(admin, TOKEN);
    long long hits_before = harness_cache_total(api, "hits");
    json_decref(api);
    char sql[64], want[16];
    for (int i = 1; i <= 200; i++) {
        snprintf(sql, sizeof(sql), "UPDATE litems SET v = %d WHERE id = 1", i);
        harness_exec_ok(writer, sql);
        snprintf(want, sizeof(want), "%d", i);
        expect_read(c, q, want); /* not kept while the commit may be invisible to others */
        wait_all_visible(admin);
        expect_read(c, q, want); /* filled ... */
        expect_read(c, q, want); /* ... and answered from memory */
    }
    api = harness_cache_get(admin, TOKEN);
    assert_true(harness_cache_total(api, "hits") - hits_before >= 190);
    json_decref(api);
    PQfinish(writer);
    PQfinish(c);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    set_directly("DROP TABLE litems");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cached_read_until_a_write_through_pgturbo),
        cmocka_unit_test(test_extended_protocol_reads_and_writes),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_exclusions),
        cmocka_unit_test(test_session_state_keeps_the_client_out),
        cmocka_unit_test(test_schema_qualified_and_same_named_tables),
        cmocka_unit_test(test_writes_reach_dependent_tables),
        cmocka_unit_test(test_ttl_and_tag),
        cmocka_unit_test(test_bounds_and_compression),
        cmocka_unit_test(test_clear_through_the_api),
        cmocka_unit_test(test_warm_refills_the_most_hit_answers),
        cmocka_unit_test(test_warm_in_session_mode),
        cmocka_unit_test(test_warm_checks_top_and_token),
        cmocka_unit_test(test_warm_counts_a_read_that_now_fails),
        cmocka_unit_test(test_warm_skips_a_user_gone_from_the_config),
        cmocka_unit_test(test_warm_stores_in_the_l2),
        cmocka_unit_test(test_clear_reaches_the_l2_and_other_instances),
        cmocka_unit_test(test_low_hit_ratio_raises_an_alert),
        cmocka_unit_test_teardown(test_logical_invalidation_of_direct_writes,
                                  reset_synchronous_standby),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
