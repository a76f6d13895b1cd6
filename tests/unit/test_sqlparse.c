/*
 * test_sqlparse.c
 *    Unit tests of sqlparse: fingerprints and normalized text from libpg_query, statement
 *    kinds, tables read and written, volatile functions, FOR UPDATE, unparseable text, the
 *    memo cache (hits, comments, LRU eviction, churn) and sqlcommenter tags.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "sqlparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A deterministic generator, so that failures reproduce. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static sql_info_t *analyze(const char *text)
{
    sql_info_t *info = sqlparse_analyze(text);
    assert_non_null(info);
    return info;
}

static uint64_t fingerprint(const char *text)
{
    sql_info_t *info = analyze(text);
    uint64_t fp = info->fingerprint;
    sql_info_free(info);
    return fp;
}

/* Asserts that list holds exactly the names given (NULL-terminated), in that order. */
static void assert_names(const char (*list)[SQLPARSE_NAME_LEN], int n, ...)
{
    va_list ap;
    va_start(ap, n);
    int i = 0;
    for (const char *name; (name = va_arg(ap, const char *)) != NULL; i++) {
        assert_true(i < n);
        assert_string_equal(list[i], name);
    }
    va_end(ap);
    assert_int_equal(n, i);
}

#define assert_read(info, ...) assert_names((info)->tables_read, (info)->n_read, __VA_ARGS__)
#define assert_written(info, ...)                                                                  \
    assert_names((info)->tables_written, (info)->n_written, __VA_ARGS__)

/* ---- fingerprints and normalized text ---- */

static void fingerprint_is_pg_query_fingerprint(void **state)
{
    /* libpg_query's published value for SELECT 1 (any single-constant SELECT). */
    assert_int_equal(fingerprint("SELECT 1"), UINT64_C(0x50fde20626009aba));
}

static void fingerprint_ignores_constants_whitespace_case_and_comments(void **state)
{
    uint64_t fp = fingerprint("SELECT * FROM users WHERE id = 1 AND name = 'bob'");
    assert_int_equal(fingerprint("select *\n  from users\twhere id = 42 and name = 'alice'"), fp);
    assert_int_equal(fingerprint("SELECT * FROM users WHERE id = $1 AND name = $2"), fp);
    assert_int_equal(fingerprint("SELECT * FROM users /* a comment */ WHERE id = 7 AND name = "
                                 "'x' -- and another"),
                     fp);
}

static void fingerprint_ignores_in_list_and_values_list_length(void **state)
{
    uint64_t in = fingerprint("SELECT * FROM t WHERE id IN (1, 2)");
    assert_int_equal(fingerprint("SELECT * FROM t WHERE id IN (5, 6, 7, 8, 9)"), in);
    assert_int_equal(fingerprint("SELECT * FROM t WHERE id IN ($1)"), in);
    uint64_t values = fingerprint("INSERT INTO t (a, b) VALUES (1, 'x')");
    assert_int_equal(fingerprint("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')"),
                     values);
}

static void fingerprint_differs_for_different_tables_columns_and_operators(void **state)
{
    uint64_t fp = fingerprint("SELECT a FROM t WHERE id = 1");
    assert_int_not_equal(fingerprint("SELECT a FROM u WHERE id = 1"), fp);
    assert_int_not_equal(fingerprint("SELECT b FROM t WHERE id = 1"), fp);
    assert_int_not_equal(fingerprint("SELECT a FROM t WHERE key = 1"), fp);
    assert_int_not_equal(fingerprint("SELECT a FROM t WHERE id > 1"), fp);
    assert_int_not_equal(fingerprint("SELECT a FROM public.t WHERE id = 1"), fp);
    assert_int_not_equal(fingerprint("UPDATE t SET a = 1 WHERE id = 1"), fp);
}

static void normalized_text_replaces_constants_with_numbered_parameters(void **state)
{
    sql_info_t *info = analyze("SELECT * FROM users WHERE id = 42 AND name = 'bob'");
    assert_string_equal(info->normalized, "SELECT * FROM users WHERE id = $1 AND name = $2");
    sql_info_free(info);
    info = analyze("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')");
    assert_string_equal(info->normalized, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
    sql_info_free(info);
    /* Parameters already there keep their numbers; constants take the next ones. */
    info = analyze("SELECT * FROM t WHERE a = $1 AND b = 5");
    assert_string_equal(info->normalized, "SELECT * FROM t WHERE a = $1 AND b = $2");
    sql_info_free(info);
    info = analyze("SELECT * FROM t WHERE id IN (1, 2, 3)");
    assert_string_equal(info->normalized, "SELECT * FROM t WHERE id IN ($1, $2, $3)");
    sql_info_free(info);
}

/* ---- statement kinds ---- */

static void kinds_of_single_statements(void **state)
{
    static const struct {
        const char *text;
        sql_kind_t kind;
    } cases[] = {
        {"SELECT 1", SQL_READ},
        {"SELECT * FROM t WHERE id = 1", SQL_READ},
        {"VALUES (1), (2)", SQL_READ},
        {"TABLE t", SQL_READ},
        {"SELECT * FROM t FOR UPDATE", SQL_READ},
        {"WITH c AS (SELECT 1) SELECT * FROM c", SQL_READ},
        {"INSERT INTO t VALUES (1)", SQL_WRITE},
        {"UPDATE t SET a = 1", SQL_WRITE},
        {"DELETE FROM t", SQL_WRITE},
        {"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", SQL_WRITE},
        {"COPY t FROM STDIN", SQL_WRITE},
        {"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", SQL_WRITE},
        {"EXPLAIN ANALYZE UPDATE t SET a = 1", SQL_WRITE},
        {"EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t", SQL_WRITE},
        {"REFRESH MATERIALIZED VIEW mv", SQL_WRITE},
        {"DO $$BEGIN PERFORM 1; END$$", SQL_WRITE},
        {"CALL archive_orders(30)", SQL_WRITE},
        {"CREATE TABLE t (id int PRIMARY KEY)", SQL_DDL},
        {"CREATE INDEX CONCURRENTLY t_a ON t (a)", SQL_DDL},
        {"ALTER TABLE t ADD COLUMN b text", SQL_DDL},
        {"DROP TABLE IF EXISTS t", SQL_DDL},
        {"TRUNCATE t", SQL_DDL},
        {"GRANT SELECT ON t TO bob", SQL_DDL},
        {"REVOKE SELECT ON t FROM bob", SQL_DDL},
        {"COMMENT ON TABLE t IS 'orders'", SQL_DDL},
        {"CREATE VIEW v AS SELECT * FROM t", SQL_DDL},
        {"CREATE TABLE t2 AS SELECT * FROM t", SQL_DDL},
        {"SELECT * INTO t2 FROM t", SQL_DDL},
        {"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", SQL_DDL},
        {"ALTER SEQUENCE s RESTART", SQL_DDL},
        {"BEGIN", SQL_TRANSACTION},
        {"START TRANSACTION ISOLATION LEVEL SERIALIZABLE", SQL_TRANSACTION},
        {"COMMIT", SQL_TRANSACTION},
        {"ROLLBACK", SQL_TRANSACTION},
        {"SAVEPOINT s1", SQL_TRANSACTION},
        {"RELEASE SAVEPOINT s1", SQL_TRANSACTION},
        {"ROLLBACK TO SAVEPOINT s1", SQL_TRANSACTION},
        {"SET search_path = app, public", SQL_UTILITY},
        {"RESET ALL", SQL_UTILITY},
        {"SHOW work_mem", SQL_UTILITY},
        {"EXPLAIN SELECT * FROM t", SQL_UTILITY},
        {"EXPLAIN (ANALYZE false) DELETE FROM t", SQL_UTILITY},
        {"EXPLAIN ANALYZE SELECT * FROM t", SQL_UTILITY},
        {"VACUUM ANALYZE t", SQL_UTILITY},
        {"ANALYZE t", SQL_UTILITY},
        {"LOCK TABLE t IN ACCESS EXCLUSIVE MODE", SQL_UTILITY},
        {"LISTEN jobs", SQL_UTILITY},
        {"NOTIFY jobs, 'x'", SQL_UTILITY},
        {"DISCARD ALL", SQL_UTILITY},
        {"PREPARE p (int) AS SELECT * FROM t WHERE id = $1", SQL_UTILITY},
        {"EXECUTE p (1)", SQL_UTILITY},
        {"DEALLOCATE p", SQL_UTILITY},
        {"DECLARE c CURSOR FOR SELECT * FROM t", SQL_UTILITY},
        {"FETCH 10 FROM c", SQL_UTILITY},
        {"CLOSE c", SQL_UTILITY},
        {"COPY t TO STDOUT", SQL_UTILITY},
        {"CHECKPOINT", SQL_UTILITY},
        {"", SQL_UTILITY},
        {"SELEC 1", SQL_UNPARSED},
        {"SELECT * FROM", SQL_UNPARSED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sql_info_t *info = analyze(cases[i].text);
        if (info->kind != cases[i].kind)
            fail_msg("%s: %s, expected %s", cases[i].text, sql_kind_name(info->kind),
                     sql_kind_name(cases[i].kind));
        sql_info_free(info);
    }
}

static void kind_names(void **state)
{
    assert_string_equal(sql_kind_name(SQL_READ), "read");
    assert_string_equal(sql_kind_name(SQL_WRITE), "write");
    assert_string_equal(sql_kind_name(SQL_DDL), "ddl");
    assert_string_equal(sql_kind_name(SQL_TRANSACTION), "transaction");
    assert_string_equal(sql_kind_name(SQL_UTILITY), "utility");
    assert_string_equal(sql_kind_name(SQL_UNPARSED), "unparsed");
    assert_string_equal(sql_kind_name((sql_kind_t)99), "?");
}

static void several_statements_take_the_strongest_kind_and_merge_tables(void **state)
{
    sql_info_t *info = analyze("SELECT * FROM a; UPDATE b SET x = 1; SELECT * FROM c");
    assert_int_equal(info->kind, SQL_WRITE);
    assert_int_equal(info->n_statements, 3);
    assert_read(info, "a", "c", NULL);
    assert_written(info, "b", NULL);
    sql_info_free(info);

    info = analyze("BEGIN; CREATE TABLE q (id int); INSERT INTO q VALUES (1); COMMIT");
    assert_int_equal(info->kind, SQL_DDL);
    assert_int_equal(info->n_statements, 4);
    assert_written(info, "q", NULL);
    sql_info_free(info);

    info = analyze("BEGIN; SELECT * FROM a; COMMIT");
    assert_int_equal(info->kind, SQL_TRANSACTION);
    assert_read(info, "a", NULL);
    sql_info_free(info);

    info = analyze("SET x = 1; SELECT 1");
    assert_int_equal(info->kind, SQL_UTILITY);
    sql_info_free(info);

    info = analyze("SELECT 1; SELECT 2;");
    assert_int_equal(info->kind, SQL_READ);
    assert_int_equal(info->n_statements, 2);
    sql_info_free(info);
}

static void empty_query_is_utility_without_statements(void **state)
{
    const char *texts[] = {"", "  ", ";", "-- only a comment", "/* only a comment */"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        sql_info_t *info = analyze(texts[i]);
        assert_int_equal(info->kind, SQL_UTILITY);
        assert_int_equal(info->n_statements, 0);
        assert_int_equal(info->n_read + info->n_written, 0);
        sql_info_free(info);
    }
}

/* ---- tables ---- */

static void tables_of_a_join(void **state)
{
    sql_info_t *info = analyze("SELECT * FROM orders o JOIN users u ON u.id = o.user_id "
                               "LEFT JOIN items ON items.order_id = o.id, regions");
    assert_int_equal(info->kind, SQL_READ);
    assert_read(info, "items", "orders", "regions", "users", NULL);
    assert_written(info, NULL);
    sql_info_free(info);
}

static void tables_of_subqueries_everywhere(void **state)
{
    sql_info_t *info = analyze("SELECT (SELECT count(*) FROM a), x FROM (SELECT * FROM b) s "
                               "WHERE x IN (SELECT y FROM c WHERE z = (SELECT max(z) FROM d)) "
                               "AND EXISTS (SELECT 1 FROM e) UNION SELECT 1, 2 FROM f ORDER BY 1");
    assert_read(info, "a", "b", "c", "d", "e", "f", NULL);
    assert_written(info, NULL);
    sql_info_free(info);
}

static void tables_are_listed_once_and_sorted(void **state)
{
    sql_info_t *info = analyze("SELECT * FROM z, a, m, a AS a2 WHERE EXISTS (SELECT 1 FROM z)");
    assert_read(info, "a", "m", "z", NULL);
    sql_info_free(info);
}

static void tables_schema_qualified_as_written(void **state)
{
    sql_info_t *info = analyze("SELECT * FROM public.users JOIN users ON true "
                               "JOIN billing.invoices ON true");
    assert_read(info, "billing.invoices", "public.users", "users", NULL);
    sql_info_free(info);
}

static void tables_unquoted_fold_to_lower_case_quoted_keep_case(void **state)
{
    sql_info_t *info = analyze("SELECT * FROM USERS, \"Orders\", App.\"LineItems\", "
                               "\"my schema\".\"odd.name\"");
    assert_read(info, "Orders", "app.LineItems", "my schema.odd.name", "users", NULL);
    sql_info_free(info);
}

static void tables_with_names_are_not_tables(void **state)
{
    sql_info_t *info = analyze("WITH recent AS (SELECT * FROM orders WHERE at > $1), "
                               "top AS (SELECT * FROM recent ORDER BY total DESC LIMIT 10) "
                               "SELECT * FROM top JOIN users ON users.id = top.user_id");
    assert_int_equal(info->kind, SQL_READ);
    assert_read(info, "orders", "users", NULL);
    sql_info_free(info);

    /* A qualified name is always a table, even if a WITH query has its last part. */
    info = analyze("WITH users AS (SELECT 1) SELECT * FROM users, public.users");
    assert_read(info, "public.users", NULL);
    sql_info_free(info);

    /* Recursive WITH queries see their own name. */
    info = analyze("WITH RECURSIVE tree AS (SELECT id FROM nodes WHERE parent IS NULL "
                   "UNION ALL SELECT n.id FROM nodes n JOIN tree ON n.parent = tree.id) "
                   "SELECT * FROM tree");
    assert_read(info, "nodes", NULL);
    sql_info_free(info);
}

static void tables_with_scope_follows_postgresql(void **state)
{
    /* Without RECURSIVE, a WITH query sees only the ones before it: the b in a is a table. */
    sql_info_t *info = analyze("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b");
    assert_read(info, "b", NULL);
    sql_info_free(info);

    /* A WITH name is visible in the subqueries of its statement, not outside it. */
    info = analyze("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) s, t");
    assert_read(info, "t", NULL);
    sql_info_free(info);

    info = analyze("WITH t AS (SELECT * FROM base) SELECT * FROM (SELECT * FROM t) s");
    assert_read(info, "base", NULL);
    sql_info_free(info);
}

static void tables_of_insert_select(void **state)
{
    sql_info_t *info = analyze("INSERT INTO archive (id, total) SELECT o.id, o.total FROM "
                               "orders o JOIN users u ON u.id = o.user_id WHERE u.gone");
    assert_int_equal(info->kind, SQL_WRITE);
    assert_read(info, "orders", "users", NULL);
    assert_written(info, "archive", NULL);
    sql_info_free(info);

    info = analyze("INSERT INTO t (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = "
                   "t.n + (SELECT count(*) FROM log) RETURNING *");
    assert_read(info, "log", NULL);
    assert_written(info, "t", NULL);
    sql_info_free(info);
}

static void tables_of_update_from_and_delete_using(void **state)
{
    sql_info_t *info = analyze("UPDATE accounts a SET balance = a.balance - p.amount FROM "
                               "payments p WHERE p.account_id = a.id");
    assert_read(info, "payments", NULL);
    assert_written(info, "accounts", NULL);
    sql_info_free(info);

    info = analyze("DELETE FROM sessions s USING users u WHERE s.user_id = u.id AND u.banned");
    assert_read(info, "users", NULL);
    assert_written(info, "sessions", NULL);
    sql_info_free(info);

    /* A table both written and read is in both lists. */
    info = analyze("UPDATE t SET x = (SELECT max(x) FROM t) + 1");
    assert_read(info, "t", NULL);
    assert_written(info, "t", NULL);
    sql_info_free(info);
}

static void tables_of_merge(void **state)
{
    sql_info_t *info = analyze("MERGE INTO stock s USING deliveries d ON s.item = d.item "
                               "WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty "
                               "WHEN NOT MATCHED THEN INSERT VALUES (d.item, d.qty)");
    assert_int_equal(info->kind, SQL_WRITE);
    assert_read(info, "deliveries", NULL);
    assert_written(info, "stock", NULL);
    sql_info_free(info);
}

static void tables_of_data_modifying_with(void **state)
{
    sql_info_t *info = analyze("WITH moved AS (DELETE FROM inbox WHERE done RETURNING *) "
                               "INSERT INTO archive SELECT * FROM moved");
    assert_int_equal(info->kind, SQL_WRITE);
    assert_read(info, NULL);
    assert_written(info, "archive", "inbox", NULL);
    sql_info_free(info);

    /* The target of a write is a table even when a WITH query has its name. */
    info = analyze("WITH t AS (SELECT * FROM src) INSERT INTO t SELECT * FROM t");
    assert_read(info, "src", NULL);
    assert_written(info, "t", NULL);
    sql_info_free(info);
}

static void tables_of_copy(void **state)
{
    sql_info_t *info = analyze("COPY public.events FROM STDIN WITH (FORMAT csv)");
    assert_written(info, "public.events", NULL);
    assert_read(info, NULL);
    sql_info_free(info);

    info = analyze("COPY (SELECT * FROM events JOIN users ON true) TO STDOUT");
    assert_int_equal(info->kind, SQL_UTILITY);
    assert_read(info, "events", "users", NULL);
    assert_written(info, NULL);
    sql_info_free(info);
}

static void tables_of_ddl_are_written_and_their_queries_read(void **state)
{
    sql_info_t *info = analyze("CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100");
    assert_written(info, "big_orders", NULL);
    assert_read(info, "orders", NULL);
    sql_info_free(info);

    info = analyze("CREATE TABLE summary AS SELECT user_id, count(*) FROM orders GROUP BY 1");
    assert_written(info, "summary", NULL);
    assert_read(info, "orders", NULL);
    sql_info_free(info);

    info = analyze("SELECT * INTO TEMP snapshot FROM orders");
    assert_written(info, "snapshot", NULL);
    assert_read(info, "orders", NULL);
    sql_info_free(info);

    info = analyze("ALTER TABLE orders ADD COLUMN user_id int REFERENCES users (id)");
    assert_written(info, "orders", "users", NULL);
    sql_info_free(info);

    info = analyze("CREATE INDEX ON app.orders (user_id)");
    assert_written(info, "app.orders", NULL);
    sql_info_free(info);

    info = analyze("DROP TABLE public.a, b CASCADE");
    assert_written(info, "b", "public.a", NULL);
    sql_info_free(info);

    info = analyze("DROP INDEX orders_user_id");
    assert_written(info, NULL);
    sql_info_free(info);

    info = analyze("TRUNCATE a, s.b RESTART IDENTITY");
    assert_int_equal(info->kind, SQL_DDL);
    assert_written(info, "a", "s.b", NULL);
    sql_info_free(info);

    info = analyze("GRANT SELECT, UPDATE ON orders, users TO app");
    assert_written(info, "orders", "users", NULL);
    sql_info_free(info);
}

static void tables_of_utility_statements_are_read(void **state)
{
    sql_info_t *info = analyze("EXPLAIN SELECT * FROM orders JOIN users ON true");
    assert_read(info, "orders", "users", NULL);
    assert_written(info, NULL);
    sql_info_free(info);

    info = analyze("LOCK TABLE orders IN SHARE MODE");
    assert_read(info, "orders", NULL);
    assert_written(info, NULL);
    sql_info_free(info);

    /* The target of a statement that is not run now is still named as written. */
    info = analyze("EXPLAIN DELETE FROM orders");
    assert_int_equal(info->kind, SQL_UTILITY);
    assert_written(info, "orders", NULL);
    sql_info_free(info);
}

static void tables_beyond_the_limit_set_too_many_tables(void **state)
{
    char text[1024] = "SELECT * FROM t0";
    for (int i = 1; i < SQLPARSE_MAX_TABLES; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), ", t%d", i);
    sql_info_t *info = analyze(text);
    assert_int_equal(info->n_read, SQLPARSE_MAX_TABLES);
    assert_false(info->too_many_tables);
    sql_info_free(info);

    snprintf(text + strlen(text), sizeof(text) - strlen(text), ", t%d", SQLPARSE_MAX_TABLES);
    info = analyze(text);
    assert_int_equal(info->n_read, SQLPARSE_MAX_TABLES);
    assert_true(info->too_many_tables);
    sql_info_free(info);
}

static void tables_with_longest_identifiers_fit(void **state)
{
    char schema[64], rel[64], text[256], expected[SQLPARSE_NAME_LEN];
    memset(schema, 's', 63);
    schema[63] = '\0';
    memset(rel, 'r', 63);
    rel[63] = '\0';
    snprintf(text, sizeof(text), "SELECT * FROM %s.%s", schema, rel);
    snprintf(expected, sizeof(expected), "%s.%s", schema, rel);
    sql_info_t *info = analyze(text);
    assert_read(info, expected, NULL);
    sql_info_free(info);
}

/* ---- volatile functions and FOR UPDATE ---- */

static void volatile_functions_are_detected(void **state)
{
    const char *texts[] = {
        "SELECT now()",
        "SELECT * FROM t WHERE created > now() - interval '1 day'",
        "SELECT random()",
        "SELECT nextval('s')",
        "SELECT setval('s', 1)",
        "SELECT clock_timestamp()",
        "SELECT txid_current()",
        "SELECT gen_random_uuid()",
        "SELECT current_setting('app.tenant')",
        "SELECT * FROM t ORDER BY random() LIMIT 1",
        "SELECT CURRENT_TIMESTAMP",
        "SELECT * FROM t WHERE d = CURRENT_DATE",
        "SELECT CURRENT_USER",
        "SELECT 'now'::timestamptz",
        "SELECT * FROM t WHERE d > ' Today '::date",
        "SELECT my_function(id) FROM t",
        "SELECT app.lower(name) FROM t",
        "SELECT * FROM t TABLESAMPLE SYSTEM (10)",
        "SELECT * FROM generate_series(1, 3), lateral (SELECT random()) r",
        "INSERT INTO t (id, at) VALUES (1, now())",
        "SELECT count(*) FROM t WHERE x = (SELECT nextval('s'))",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        sql_info_t *info = analyze(texts[i]);
        if (!info->volatile_functions)
            fail_msg("%s: not volatile", texts[i]);
        sql_info_free(info);
    }
}

static void stable_functions_are_not_volatile(void **state)
{
    const char *texts[] = {
        "SELECT 1",
        "SELECT * FROM t WHERE id = $1",
        "SELECT lower(name), upper(name), length(name) FROM users",
        "SELECT count(*), sum(total), avg(total), max(at) FROM orders GROUP BY user_id",
        "SELECT coalesce(a, b), nullif(a, 0), greatest(a, b) FROM t",
        "SELECT date_trunc('day', at), extract(year FROM at) FROM t",
        "SELECT trim(name), substring(name FROM 1 FOR 3), position('a' IN name) FROM t",
        "SELECT pg_catalog.lower(name) FROM t",
        "SELECT row_number() OVER (ORDER BY id) FROM t",
        "SELECT jsonb_build_object('id', id) FROM t",
        "SELECT * FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (42)",
        "SELECT '2024-01-01'::date",
        "SELECT at AT TIME ZONE 'UTC' FROM t",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        sql_info_t *info = analyze(texts[i]);
        if (info->volatile_functions)
            fail_msg("%s: volatile", texts[i]);
        sql_info_free(info);
    }
}

static void do_and_call_are_volatile_writes(void **state)
{
    sql_info_t *info = analyze("CALL refresh_totals()");
    assert_int_equal(info->kind, SQL_WRITE);
    assert_true(info->volatile_functions);
    assert_int_equal(info->n_written, 0);
    sql_info_free(info);
}

static void for_update_and_share_are_detected(void **state)
{
    const char *locking[] = {
        "SELECT * FROM t WHERE id = 1 FOR UPDATE",
        "SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED",
        "SELECT * FROM t FOR SHARE NOWAIT",
        "SELECT * FROM t FOR KEY SHARE",
        "SELECT * FROM jobs j JOIN queues q ON true FOR UPDATE OF j",
        "SELECT * FROM (SELECT * FROM t FOR UPDATE) s",
        "WITH c AS (SELECT * FROM t FOR UPDATE) SELECT * FROM c",
    };
    for (size_t i = 0; i < sizeof(locking) / sizeof(locking[0]); i++) {
        sql_info_t *info = analyze(locking[i]);
        if (!info->for_update || info->kind != SQL_READ)
            fail_msg("%s: for_update %d, kind %s", locking[i], info->for_update,
                     sql_kind_name(info->kind));
        sql_info_free(info);
    }
    sql_info_t *info = analyze("SELECT * FROM jobs j JOIN queues q ON true FOR UPDATE OF j");
    assert_read(info, "jobs", "queues", NULL);
    sql_info_free(info);
    info = analyze("SELECT * FROM t WHERE note = 'FOR UPDATE'");
    assert_false(info->for_update);
    sql_info_free(info);
}

/* ---- unparsed text ---- */

static void unparseable_text_is_unparsed_with_a_text_hash_fingerprint(void **state)
{
    sql_info_t *info = analyze("SELEC 1");
    assert_int_equal(info->kind, SQL_UNPARSED);
    assert_int_equal(info->n_statements, 0);
    assert_int_equal(info->n_read + info->n_written, 0);
    assert_null(info->normalized);
    assert_false(info->volatile_functions);
    /* 64-bit FNV-1a of "SELEC 1". */
    assert_int_equal(info->fingerprint, UINT64_C(0xbc2edfe0afbcd6c0));
    assert_int_equal(info->fingerprint, sqlparse_hash("SELEC 1", 7));
    sql_info_free(info);
    /* Stable across calls, different for different text. */
    assert_int_equal(fingerprint("SELEC 1"), UINT64_C(0xbc2edfe0afbcd6c0));
    assert_int_not_equal(fingerprint("SELEC 2"), UINT64_C(0xbc2edfe0afbcd6c0));
}

static void hash_is_fnv1a_64(void **state)
{
    assert_int_equal(sqlparse_hash("", 0), UINT64_C(0xcbf29ce484222325));
    assert_int_equal(sqlparse_hash("a", 1), UINT64_C(0xaf63dc4c8601ec8c));
}

static void text_in_another_encoding_still_parses(void **state)
{
    /* LATIN1 bytes (invalid UTF-8) in a literal and in an identifier. */
    sql_info_t *info = analyze("SELECT * FROM t WHERE name = 'caf\xe9' AND \"x\xff\" = 1");
    assert_int_equal(info->kind, SQL_READ);
    assert_read(info, "t", NULL);
    sql_info_free(info);
    info = analyze("SELECT * FROM \"caf\xe9\"");
    assert_int_equal(info->kind, SQL_READ);
    assert_read(info, "caf?", NULL);
    sql_info_free(info);
}

static char *nested_subqueries(int depth)
{
    size_t size = (size_t)depth * 20 + 32;
    char *text = malloc(size);
    assert_non_null(text);
    strcpy(text, "SELECT ");
    for (int i = 0; i < depth; i++)
        strcat(text, "(SELECT ");
    strcat(text, "1");
    for (int i = 0; i < depth; i++)
        strcat(text, " FROM t)");
    return text;
}

static void deeply_nested_text_is_described_or_unparsed_without_crashing(void **state)
{
    char *text = nested_subqueries(50);
    sql_info_t *info = analyze(text);
    assert_int_equal(info->kind, SQL_READ);
    assert_read(info, "t", NULL);
    sql_info_free(info);
    free(text);

    text = nested_subqueries(2000);
    info = analyze(text);
    assert_int_equal(info->kind, SQL_UNPARSED);
    sql_info_free(info);
    free(text);
}

static void free_accepts_null(void **state)
{
    sql_info_free(NULL);
    sqlparse_cache_free(NULL);
}

/* ---- the cache ---- */

static const sql_info_t *get(sqlparse_cache_t *cache, const char *text)
{
    const sql_info_t *info = sqlparse_cache_get(cache, text, strlen(text));
    assert_non_null(info);
    return info;
}

static void cache_returns_the_same_info_for_the_same_text(void **state)
{
    sqlparse_cache_t *cache = sqlparse_cache_create(8);
    uint64_t hits, misses;
    const sql_info_t *a = get(cache, "SELECT * FROM t WHERE id = 1");
    assert_int_equal(a->kind, SQL_READ);
    assert_ptr_equal(get(cache, "SELECT * FROM t WHERE id = 1"), a);
    assert_ptr_not_equal(get(cache, "SELECT * FROM u WHERE id = 1"), a);
    assert_int_equal(sqlparse_cache_count(cache), 2);
    sqlparse_cache_counters(cache, &hits, &misses);
    assert_int_equal(hits, 1);
    assert_int_equal(misses, 2);
    sqlparse_cache_free(cache);
}

static void cache_shares_texts_that_differ_only_in_constants(void **state)
{
    sqlparse_cache_t *cache = sqlparse_cache_create(8);
    const sql_info_t *a = get(cache, "SELECT * FROM t WHERE id = 1 AND name = 'x' AND f > 1.5e3");
    assert_ptr_equal(get(cache, "SELECT * FROM t WHERE id = 22 AND name = 'it''s' AND f > .5"),
                     a);
    assert_ptr_equal(get(cache, "SELECT * FROM t WHERE id = 3 AND name = $$y$$ AND f > 7"), a);
    /* Digits inside identifiers and $n parameters are not constants. */
    assert_ptr_not_equal(get(cache, "SELECT * FROM t2 WHERE id = 1 AND name = 'x' AND f > 1"),
                         a);
    const sql_info_t *p = get(cache, "SELECT * FROM t WHERE id = $1");
    assert_ptr_not_equal(get(cache, "SELECT * FROM t WHERE id = $2"), p);
    assert_string_equal(a->normalized, "SELECT * FROM t WHERE id = $1 AND name = $2 AND f > $3");
    assert_int_equal(sqlparse_cache_count(cache), 4);
    sqlparse_cache_free(cache);
}

static void cache_shares_texts_that_differ_only_in_comments(void **state)
{
    sqlparse_cache_t *cache = sqlparse_cache_create(8);
    const sql_info_t *a = get(cache, "SELECT * FROM t /*route='/a',request_id='1'*/ WHERE id = $1");
    assert_ptr_equal(get(cache, "SELECT * FROM t /*request_id='2'*/ WHERE id = $1"), a);
    assert_ptr_equal(get(cache, "SELECT * FROM t WHERE id = $1"), a);
    assert_ptr_equal(get(cache, "  SELECT * FROM t WHERE id = $1 /*traceparent='00-1'*/\n"), a);
    assert_ptr_equal(get(cache, "/* leading */ SELECT * FROM t -- trailing\n WHERE id = $1"), a);
    assert_ptr_equal(get(cache, "SELECT * FROM t/**/WHERE id = $1"), a);
    /* The normalized text comes without the comments of the first text seen. */
    assert_string_equal(a->normalized, "SELECT * FROM t WHERE id = $1");
    assert_int_equal(sqlparse_cache_count(cache), 1);
    sqlparse_cache_free(cache);
}

static void cache_keeps_comment_lookalikes_inside_strings(void **state)
{
    sqlparse_cache_t *cache = sqlparse_cache_create(8);
    /* Strings are constants, whatever they hold: the same shape. */
    const sql_info_t *a = get(cache, "SELECT '/* a */'");
    assert_ptr_equal(get(cache, "SELECT '/* b */'"), a);
    assert_string_equal(a->normalized, "SELECT $1");
    const sql_info_t *d = get(cache, "SELECT $$-- a$$");
    assert_ptr_equal(get(cache, "SELECT $$-- b$$"), d);
    const sql_info_t *q = get(cache, "SELECT 1 AS \"/*a*/\"");
    assert_ptr_not_equal(get(cache, "SELECT 1 AS \"/*b*/\""), q);
    const sql_info_t *e = get(cache, "SELECT E'\\'/* a */'");
    assert_ptr_equal(get(cache, "SELECT E'\\'/* b */'"), e);
    assert_int_equal(e->kind, SQL_READ);
    /* A comment glued between two tokens still separates them. */
    const sql_info_t *glued = get(cache, "SELECT/**/1");
    assert_int_equal(glued->kind, SQL_READ);
    assert_string_equal(glued->normalized, "SELECT $1");
    sqlparse_cache_free(cache);
}

static void cache_reads_only_len_bytes(void **state)
{
    sqlparse_cache_t *cache = sqlparse_cache_create(4);
    const char buf[] = {'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', ' ', 'F', 'R', 'O', 'M'};
    const sql_info_t *info = sqlparse_cache_get(cache, buf, 8);
    assert_non_null(info);
    assert_int_equal(info->kind, SQL_READ);
    assert_ptr_equal(get(cache, "SELECT 1"), info);
    info = sqlparse_cache_get(cache, "", 0);
    assert_non_null(info);
    assert_int_equal(info->kind, SQL_UTILITY);
    sqlparse_cache_free(cache);
}

static void cache_keeps_unparsed_texts_too(void **state)
{
    sqlparse_cache_t *cache = sqlparse_cache_create(4);
    const sql_info_t *info = get(cache, "SELEC 1 /* x */");
    assert_int_equal(info->kind, SQL_UNPARSED);
    assert_int_equal(info->fingerprint, sqlparse_hash("SELEC 1", 7));
    assert_ptr_equal(get(cache, "SELEC 1"), info);
    sqlparse_cache_free(cache);
}

static void cache_evicts_the_least_recently_used(void **state)
{
    sqlparse_cache_t *cache = sqlparse_cache_create(2);
    uint64_t hits, misses;
    get(cache, "SELECT a FROM t");
    get(cache, "SELECT b FROM t");
    get(cache, "SELECT a FROM t"); /* a is now the most recently used */
    get(cache, "SELECT c FROM t"); /* evicts b */
    assert_int_equal(sqlparse_cache_count(cache), 2);
    sqlparse_cache_counters(cache, &hits, &misses);
    assert_int_equal(hits, 1);
    assert_int_equal(misses, 3);
    get(cache, "SELECT a FROM t");
    get(cache, "SELECT c FROM t");
    sqlparse_cache_counters(cache, &hits, &misses);
    assert_int_equal(hits, 3);
    assert_int_equal(misses, 3);
    get(cache, "SELECT b FROM t"); /* a miss again; evicts a */
    sqlparse_cache_counters(cache, &hits, &misses);
    assert_int_equal(misses, 4);
    get(cache, "SELECT c FROM t");
    sqlparse_cache_counters(cache, &hits, &misses);
    assert_int_equal(hits, 4);
    get(cache, "SELECT a FROM t");
    sqlparse_cache_counters(cache, &hits, &misses);
    assert_int_equal(misses, 5);
    assert_int_equal(sqlparse_cache_count(cache), 2);
    sqlparse_cache_free(cache);
}

static void cache_of_capacity_one_keeps_only_the_last(void **state)
{
    sqlparse_cache_t *cache = sqlparse_cache_create(1);
    uint64_t hits, misses;
    const sql_info_t *a = get(cache, "SELECT * FROM a");
    assert_read(a, "a", NULL);
    const sql_info_t *b = get(cache, "SELECT * FROM b");
    assert_read(b, "b", NULL);
    assert_ptr_equal(get(cache, "SELECT * FROM b"), b);
    assert_int_equal(sqlparse_cache_count(cache), 1);
    sqlparse_cache_counters(cache, &hits, &misses);
    assert_int_equal(hits, 1);
    assert_int_equal(misses, 2);
    sqlparse_cache_free(cache);
}

static void cache_matches_an_lru_model(void **state)
{
    /* 40 texts through a cache of 12, checked against a model of recency. */
    enum { TEXTS = 40, CAPACITY = 12, OPS = 3000 };
    uint64_t used[TEXTS] = {0}, clock = 0, seed = 77, hits, misses, model_misses = 0;
    char text[64];
    sqlparse_cache_t *cache = sqlparse_cache_create(CAPACITY);
    for (int op = 0; op < OPS; op++) {
        int k = (int)(next_random(&seed) % TEXTS);
        snprintf(text, sizeof(text), "SELECT * FROM t%d", k);
        const sql_info_t *info = get(cache, text);
        snprintf(text, sizeof(text), "t%d", k);
        assert_read(info, text, NULL);
        if (used[k] == 0) {
            model_misses++;
            int count = 0, oldest = -1;
            for (int i = 0; i < TEXTS; i++)
                if (used[i] != 0) {
                    count++;
                    if (oldest < 0 || used[i] < used[oldest])
                        oldest = i;
                }
            if (count == CAPACITY)
                used[oldest] = 0;
        }
        used[k] = ++clock;
        sqlparse_cache_counters(cache, &hits, &misses);
        assert_int_equal(misses, model_misses);
        assert_int_equal(hits + misses, (uint64_t)op + 1);
    }
    sqlparse_cache_free(cache);
}

static void cache_survives_100k_distinct_texts_at_capacity_1000(void **state)
{
    sqlparse_cache_t *cache = sqlparse_cache_create(1000);
    char text[64], table[16];
    for (int i = 0; i < 100000; i++) {
        snprintf(text, sizeof(text), "SELECT a FROM t%d", i);
        const sql_info_t *info = get(cache, text);
        if (i % 997 == 0) {
            snprintf(table, sizeof(table), "t%d", i);
            assert_read(info, table, NULL);
        }
        assert_true(sqlparse_cache_count(cache) <= 1000);
    }
    assert_int_equal(sqlparse_cache_count(cache), 1000);
    /* The last 1000 are still there; the one before them is not. */
    uint64_t hits, misses;
    get(cache, "SELECT a FROM t99000");
    get(cache, "SELECT a FROM t99999");
    sqlparse_cache_counters(cache, &hits, &misses);
    assert_int_equal(hits, 2);
    get(cache, "SELECT a FROM t98999");
    sqlparse_cache_counters(cache, &hits, &misses);
    assert_int_equal(misses, 100001);
    sqlparse_cache_free(cache);
}

/* ---- sqlcommenter tags ---- */

static int tags(const char *text, sql_tag_t *out, int max)
{
    return sqlparse_comment_tags(text, strlen(text), out, max);
}

static void tags_of_the_sqlcommenter_example(void **state)
{
    sql_tag_t t[8];
    const char *text = "SELECT * FROM agents WHERE id = $1 "
                       "/*route='/api/agents',controller='agents',request_id='a1b2-c3'*/";
    assert_int_equal(tags(text, t, 8), 3);
    assert_string_equal(t[0].key, "route");
    assert_string_equal(t[0].value, "/api/agents");
    assert_string_equal(t[1].key, "controller");
    assert_string_equal(t[1].value, "agents");
    assert_string_equal(t[2].key, "request_id");
    assert_string_equal(t[2].value, "a1b2-c3");
}

static void tags_are_url_decoded(void **state)
{
    sql_tag_t t[4];
    const char *text = "SELECT 1 /*action='index',framework='spring%3A5.2%20RELEASE',"
                       "route='%2Fapi%2fagents%2F%7Bid%7D',odd='100%25%zz%4'*/";
    assert_int_equal(tags(text, t, 4), 4);
    assert_string_equal(t[1].value, "spring:5.2 RELEASE");
    assert_string_equal(t[2].value, "/api/agents/{id}");
    /* A % not followed by two hex digits stays as it is. */
    assert_string_equal(t[3].value, "100%%zz%4");
    assert_int_equal(tags("SELECT 1 /*my%20key='v'*/", t, 4), 1);
    assert_string_equal(t[0].key, "my key");
}

static void tags_unescape_quotes(void **state)
{
    sql_tag_t t[4];
    assert_int_equal(tags("SELECT 1 /*action='it\\'s',path='a\\\\b'*/", t, 4), 2);
    assert_string_equal(t[0].value, "it's");
    assert_string_equal(t[1].value, "a\\b");
}

static void tags_read_traceparent(void **state)
{
    sql_tag_t t[4];
    const char *text =
        "UPDATE t SET a = 1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
        "01',tracestate='congo%3Dt61rcWkgMzE'*/";
    assert_int_equal(tags(text, t, 4), 2);
    assert_string_equal(t[0].key, "traceparent");
    assert_string_equal(t[0].value, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert_string_equal(t[1].value, "congo=t61rcWkgMzE");
}

static void tags_at_the_start_or_end_and_the_last_comment_wins(void **state)
{
    sql_tag_t t[4];
    assert_int_equal(tags("/*route='/start'*/ SELECT 1", t, 4), 1);
    assert_string_equal(t[0].value, "/start");
    assert_int_equal(tags("SELECT 1 /*route='/end'*/", t, 4), 1);
    assert_string_equal(t[0].value, "/end");
    assert_int_equal(tags("/*route='/start'*/ SELECT 1 /*route='/end',x='y'*/", t, 4), 2);
    assert_string_equal(t[0].value, "/end");
    /* A later comment that is not tags does not hide the tags before it. */
    assert_int_equal(tags("SELECT 1 /*route='/r'*/ /* just a note */ -- x='y'", t, 4), 1);
    assert_string_equal(t[0].value, "/r");
    /* Whitespace around the pairs is accepted. */
    assert_int_equal(tags("SELECT 1 /* route = '/r' , action = 'show' */", t, 4), 2);
    assert_string_equal(t[1].key, "action");
    assert_string_equal(t[1].value, "show");
}

static void tags_none_without_a_comment(void **state)
{
    sql_tag_t t[4];
    assert_int_equal(tags("SELECT 1", t, 4), 0);
    assert_int_equal(tags("", t, 4), 0);
    assert_int_equal(sqlparse_comment_tags(NULL, 0, t, 4), 0);
    assert_int_equal(tags("SELECT 1 -- route='/line-comments-carry-no-tags'", t, 4), 0);
    assert_int_equal(tags("SELECT 1 /*route='x'*/", NULL, 4), 0);
    assert_int_equal(tags("SELECT 1 /*route='x'*/", t, 0), 0);
}

static void tags_none_in_malformed_comments(void **state)
{
    const char *texts[] = {
        "SELECT 1 /*route='x*/",
        "SELECT 1 /*route=x*/",
        "SELECT 1 /*route*/",
        "SELECT 1 /*='x'*/",
        "SELECT 1 /*route='x' action='y'*/",
        "SELECT 1 /*route='x',,action='y'*/",
        "SELECT 1 /*route='x'",
        "SELECT 1 /*route='x'*",
        "SELECT 1 /**/",
        "SELECT 1 /*   */",
        "SELECT 1 /*route='x\\'*/",
        "SELECT 1 /* outer /*route='x'*/ still outer */",
        "SELECT '/*route=''x''*/'",
        "SELECT E'\\'/*route=''x''*/'",
        "SELECT $$/*route='x'*/$$",
        "SELECT $tag$/*route='x'*/$tag$",
        "SELECT 1 AS \"/*route='x'*/\"",
        "SELECT '/*route=''x''*/",
        "/",
        "/*",
        "*/",
        "'",
    };
    sql_tag_t t[4];
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        if (tags(texts[i], t, 4) != 0)
            fail_msg("%s: tags found", texts[i]);
}

static void tags_after_strings_and_parameters_are_found(void **state)
{
    sql_tag_t t[4];
    assert_int_equal(tags("SELECT 'it''s', $1, a$b, $$x$$ /*route='/r'*/", t, 4), 1);
    assert_string_equal(t[0].value, "/r");
    assert_int_equal(tags("SELECT E'\\'' /*route='/e'*/", t, 4), 1);
    assert_string_equal(t[0].value, "/e");
}

static void tags_stop_at_max(void **state)
{
    sql_tag_t t[2];
    assert_int_equal(tags("SELECT 1 /*a='1',b='2',c='3'*/", t, 2), 2);
    assert_string_equal(t[0].key, "a");
    assert_string_equal(t[1].key, "b");
}

static void tags_long_keys_and_values_are_truncated(void **state)
{
    char text[4096];
    char long_key[200], long_value[1000];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    memset(long_value, 'v', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    snprintf(text, sizeof(text), "SELECT 1 /*%s='%s',next='ok'*/", long_key, long_value);
    sql_tag_t t[4];
    assert_int_equal(tags(text, t, 4), 2);
    assert_int_equal(strlen(t[0].key), SQLPARSE_TAG_KEY - 1);
    assert_int_equal(strlen(t[0].value), SQLPARSE_TAG_VALUE - 1);
    assert_string_equal(t[1].key, "next");
    assert_string_equal(t[1].value, "ok");

    /* Two-byte characters (é): the cut falls between characters, never inside one. */
    char value[1024] = "";
    for (int i = 0; i < 200; i++)
        strcat(value, i % 2 ? "%C3%A9" : "\xc3\xa9");
    snprintf(text, sizeof(text), "SELECT 1 /*v='%s'*/", value);
    assert_int_equal(tags(text, t, 4), 1);
    assert_int_equal(strlen(t[0].value), 254); /* 127 characters; the 128th would not fit */
    assert_int_equal((unsigned char)t[0].value[252], 0xc3);
    assert_int_equal((unsigned char)t[0].value[253], 0xa9);
    /* One byte more and the last character fits whole. */
    snprintf(text, sizeof(text), "SELECT 1 /*v='x%s'*/", value);
    assert_int_equal(tags(text, t, 4), 1);
    assert_int_equal(strlen(t[0].value), 255);
}

static void tags_survive_random_input(void **state)
{
    static const char alphabet[] = "/*'=\\,%$-\"aE1 \n";
    uint64_t seed = 0x2545f4914f6cdd1d;
    char text[80];
    sql_tag_t t[3];
    for (int round = 0; round < 20000; round++) {
        size_t len = next_random(&seed) % sizeof(text);
        for (size_t i = 0; i < len; i++)
            text[i] = alphabet[next_random(&seed) % (sizeof(alphabet) - 1)];
        int n = sqlparse_comment_tags(text, len, t, 3);
        assert_true(n >= 0 && n <= 3);
        for (int i = 0; i < n; i++) {
            assert_true(strlen(t[i].key) < SQLPARSE_TAG_KEY);
            assert_true(strlen(t[i].value) < SQLPARSE_TAG_VALUE);
        }
    }
}

/* The functions the stable list does not know are named for the catalog to judge. */
static void unknown_functions_are_listed_as_written(void **state)
{
    sql_info_t *info = analyze("SELECT lower(name), app.price(id), Total(x), now() FROM t "
                               "WHERE f(1) AND f(2) AND pg_catalog.upper(name) = 'A'");
    assert_true(info->volatile_functions);
    assert_false(info->reads_clock);
    assert_names((const char (*)[SQLPARSE_NAME_LEN])info->functions, info->n_functions,
                 "app.price", "f", "now", "total", NULL);
    sql_info_free(info);

    info = analyze("SELECT lower(name) FROM t");
    assert_false(info->volatile_functions);
    assert_int_equal(info->n_functions, 0);
    sql_info_free(info);
}

static void too_many_functions_is_flagged(void **state)
{
    sql_info_t *info = analyze("SELECT f1(), f2(), f3(), f4(), f5(), f6(), f7(), f8(), f9()");
    assert_int_equal(info->n_functions, SQLPARSE_MAX_FUNCTIONS);
    assert_true(info->too_many_functions);
    sql_info_free(info);
}

/* What no catalog can clear: the clock, the session, sampling and code blocks. */
static void clock_and_session_reads_are_flagged(void **state)
{
    const char *clock[] = {
        "SELECT CURRENT_TIMESTAMP",
        "SELECT * FROM t WHERE d > 'now'::timestamptz",
        "SELECT current_user",
        "SELECT * FROM t TABLESAMPLE SYSTEM (10)",
        "DO $$ BEGIN END $$",
        "CALL p()",
    };
    for (size_t i = 0; i < sizeof(clock) / sizeof(clock[0]); i++) {
        sql_info_t *info = analyze(clock[i]);
        assert_true(info->reads_clock);
        assert_true(info->volatile_functions);
        sql_info_free(info);
    }
    sql_info_t *info = analyze("SELECT * FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (1)");
    assert_false(info->reads_clock);
    sql_info_free(info);
}

static void code_of_unknown_tables_is_flagged(void **state)
{
    const char *unknown[] = {"DO $$ BEGIN END $$", "CALL p()", "EXECUTE ins(1)"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        sql_info_t *info = analyze(unknown[i]);
        assert_true(info->runs_unknown);
        sql_info_free(info);
    }
    sql_info_t *info = analyze("SELECT f(1)");
    assert_false(info->runs_unknown);
    sql_info_free(info);
}

/* Session changes that the cache's key cannot carry, and the harmless ones it can. */
static void session_state_changes_are_flagged(void **state)
{
    const char *changes[] = {
        "SET search_path = app, public",
        "SET ROLE reporting",
        "SET SESSION AUTHORIZATION alice",
        "RESET ALL",
        "RESET search_path",
        "SET row_security = off",
        "SET extra_float_digits = 3",
        "DISCARD ALL",
        "LOAD 'auto_explain'",
        "SELECT set_config('app.tenant', '7', false)",
        "CREATE TEMP TABLE scratch (id int)",
        "CREATE TEMPORARY VIEW v AS SELECT 1",
        "SELECT * INTO TEMP copy FROM t",
    };
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        sql_info_t *info = analyze(changes[i]);
        if (!info->session_state)
            fail_msg("not flagged: %s", changes[i]);
        sql_info_free(info);
    }
    const char *harmless[] = {
        "SET statement_timeout = 5000",
        "SET TIME ZONE 'UTC'",
        "SET application_name = 'web'",
        "SET DateStyle = ISO",
        "SET enable_seqscan = off",
        "SET NAMES 'UTF8'",
        "SET LOCAL search_path = app",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SELECT * FROM t",
        "CREATE TABLE kept (id int)",
    };
    for (size_t i = 0; i < sizeof(harmless) / sizeof(harmless[0]); i++) {
        sql_info_t *info = analyze(harmless[i]);
        if (info->session_state)
            fail_msg("flagged: %s", harmless[i]);
        sql_info_free(info);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fingerprint_is_pg_query_fingerprint),
        cmocka_unit_test(fingerprint_ignores_constants_whitespace_case_and_comments),
        cmocka_unit_test(fingerprint_ignores_in_list_and_values_list_length),
        cmocka_unit_test(fingerprint_differs_for_different_tables_columns_and_operators),
        cmocka_unit_test(normalized_text_replaces_constants_with_numbered_parameters),
        cmocka_unit_test(kinds_of_single_statements),
        cmocka_unit_test(unknown_functions_are_listed_as_written),
        cmocka_unit_test(too_many_functions_is_flagged),
        cmocka_unit_test(clock_and_session_reads_are_flagged),
        cmocka_unit_test(code_of_unknown_tables_is_flagged),
        cmocka_unit_test(session_state_changes_are_flagged),
        cmocka_unit_test(kind_names),
        cmocka_unit_test(several_statements_take_the_strongest_kind_and_merge_tables),
        cmocka_unit_test(empty_query_is_utility_without_statements),
        cmocka_unit_test(tables_of_a_join),
        cmocka_unit_test(tables_of_subqueries_everywhere),
        cmocka_unit_test(tables_are_listed_once_and_sorted),
        cmocka_unit_test(tables_schema_qualified_as_written),
        cmocka_unit_test(tables_unquoted_fold_to_lower_case_quoted_keep_case),
        cmocka_unit_test(tables_with_names_are_not_tables),
        cmocka_unit_test(tables_with_scope_follows_postgresql),
        cmocka_unit_test(tables_of_insert_select),
        cmocka_unit_test(tables_of_update_from_and_delete_using),
        cmocka_unit_test(tables_of_merge),
        cmocka_unit_test(tables_of_data_modifying_with),
        cmocka_unit_test(tables_of_copy),
        cmocka_unit_test(tables_of_ddl_are_written_and_their_queries_read),
        cmocka_unit_test(tables_of_utility_statements_are_read),
        cmocka_unit_test(tables_beyond_the_limit_set_too_many_tables),
        cmocka_unit_test(tables_with_longest_identifiers_fit),
        cmocka_unit_test(volatile_functions_are_detected),
        cmocka_unit_test(stable_functions_are_not_volatile),
        cmocka_unit_test(do_and_call_are_volatile_writes),
        cmocka_unit_test(for_update_and_share_are_detected),
        cmocka_unit_test(unparseable_text_is_unparsed_with_a_text_hash_fingerprint),
        cmocka_unit_test(hash_is_fnv1a_64),
        cmocka_unit_test(text_in_another_encoding_still_parses),
        cmocka_unit_test(deeply_nested_text_is_described_or_unparsed_without_crashing),
        cmocka_unit_test(free_accepts_null),
        cmocka_unit_test(cache_returns_the_same_info_for_the_same_text),
        cmocka_unit_test(cache_shares_texts_that_differ_only_in_constants),
        cmocka_unit_test(cache_shares_texts_that_differ_only_in_comments),
        cmocka_unit_test(cache_keeps_comment_lookalikes_inside_strings),
        cmocka_unit_test(cache_reads_only_len_bytes),
        cmocka_unit_test(cache_keeps_unparsed_texts_too),
        cmocka_unit_test(cache_evicts_the_least_recently_used),
        cmocka_unit_test(cache_of_capacity_one_keeps_only_the_last),
        cmocka_unit_test(cache_matches_an_lru_model),
        cmocka_unit_test(cache_survives_100k_distinct_texts_at_capacity_1000),
        cmocka_unit_test(tags_of_the_sqlcommenter_example),
        cmocka_unit_test(tags_are_url_decoded),
        cmocka_unit_test(tags_unescape_quotes),
        cmocka_unit_test(tags_read_traceparent),
        cmocka_unit_test(tags_at_the_start_or_end_and_the_last_comment_wins),
        cmocka_unit_test(tags_none_without_a_comment),
        cmocka_unit_test(tags_none_in_malformed_comments),
        cmocka_unit_test(tags_after_strings_and_parameters_are_found),
        cmocka_unit_test(tags_stop_at_max),
        cmocka_unit_test(tags_long_keys_and_values_are_truncated),
        cmocka_unit_test(tags_survive_random_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
