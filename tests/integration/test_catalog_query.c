/*
 * test_catalog_query.c
 *    catalog_query() against the test cluster, run by a role that is no superuser and has no
 *    privilege on the schema's objects, and catalog_parse() of its value: the exact keys of
 *    every lookup over two schemas with a table items each, a view over a view, views that
 *    read the clock, a system catalog or a volatile operator, a matview, a partitioned table
 *    referenced by a cascading foreign key, a foreign-key cascade cycle and a NO ACTION
 *    reference, plpgsql triggers (on a table, cloned to a partition, INSTEAD OF on a view), a
 *    rule, deferrable unique constraints (whose internal triggers are no user code),
 *    row-level security, another session's temporary table, and IMMUTABLE, STABLE SQL
 *    (classic and BEGIN ATOMIC), STABLE plpgsql and VOLATILE functions and a user aggregate.
 *    The query takes less than 200 ms there; the size of its value for a fresh database is
 *    printed.
 */
#include "harness.h"

#include "catalog.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DB       "catalog_test"
#define FRESH_DB "catalog_fresh"
#define READER   "pgturbo_catalog_reader"

static const char schema_sql[] =
    "CREATE SCHEMA s1;"
    "CREATE SCHEMA s2;"
    "CREATE TABLE s1.items (id int PRIMARY KEY, name text);"
    "CREATE TABLE s2.items (id int PRIMARY KEY, name text);"
    "CREATE TABLE public.users (id int PRIMARY KEY, name text);"
    "CREATE VIEW public.user_items AS SELECT u.id, u.name, i.name AS item"
    " FROM public.users u JOIN s1.items i ON i.id = u.id;"
    "CREATE VIEW public.named_user_items AS SELECT * FROM public.user_items"
    " WHERE name IS NOT NULL;"
    "CREATE VIEW public.recent_users AS SELECT * FROM public.users"
    " WHERE id > extract(day FROM current_date);"
    "CREATE VIEW public.now_users AS SELECT *, now() AS at FROM public.users;"
    "CREATE VIEW public.class_names AS SELECT relname FROM pg_catalog.pg_class;"
    "CREATE MATERIALIZED VIEW public.user_counts AS SELECT count(*) FROM public.users;"
    "CREATE TABLE public.events (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);"
    "CREATE TABLE public.events_2024 PARTITION OF public.events"
    " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
    "CREATE TABLE public.events_2025 PARTITION OF public.events"
    " FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');"
    "CREATE TABLE public.event_tags (id int, event_id int, at date,"
    " FOREIGN KEY (event_id, at) REFERENCES public.events ON DELETE CASCADE);"
    /* orders -> order_lines (CASCADE) -> line_notes (SET NULL) -> orders (ON UPDATE
     * CASCADE): a cycle; order_audit references orders with NO ACTION. */
    "CREATE TABLE public.orders (id int PRIMARY KEY, note_id int);"
    "CREATE TABLE public.order_lines (id int PRIMARY KEY,"
    " order_id int REFERENCES public.orders ON DELETE CASCADE);"
    "CREATE TABLE public.line_notes (id int PRIMARY KEY,"
    " line_id int REFERENCES public.order_lines ON DELETE SET NULL);"
    "ALTER TABLE public.orders ADD FOREIGN KEY (note_id) REFERENCES public.line_notes"
    " ON UPDATE CASCADE;"
    "CREATE TABLE public.order_audit (id int, order_id int REFERENCES public.orders);"
    "CREATE FUNCTION public.audit_row() RETURNS trigger LANGUAGE plpgsql"
    " AS $$BEGIN RETURN NEW; END$$;"
    "CREATE TABLE public.feeds (id int PRIMARY KEY);"
    "CREATE TABLE public.audited (id int, feed_id int REFERENCES public.feeds ON DELETE CASCADE);"
    "CREATE TRIGGER audited_row AFTER INSERT ON public.audited"
    " FOR EACH ROW EXECUTE FUNCTION public.audit_row();"
    "CREATE TABLE public.logs (id int, at date) PARTITION BY RANGE (at);"
    "CREATE TABLE public.logs_2024 PARTITION OF public.logs"
    " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
    "CREATE TRIGGER logs_row AFTER INSERT ON public.logs"
    " FOR EACH ROW EXECUTE FUNCTION public.audit_row();"
    /* Deferrable unique constraints have internal triggers, cloned to partitions: no user
     * code runs. */
    "CREATE TABLE public.codes (code int UNIQUE DEFERRABLE INITIALLY DEFERRED);"
    "CREATE TABLE public.slots (id int, at date, UNIQUE (id, at) DEFERRABLE)"
    " PARTITION BY RANGE (at);"
    "CREATE TABLE public.slots_2024 PARTITION OF public.slots"
    " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
    "CREATE TABLE public.ruled (id int);"
    "CREATE RULE ruled_copy AS ON INSERT TO public.ruled"
    " DO ALSO INSERT INTO public.users VALUES (NEW.id, 'x');"
    "CREATE VIEW public.users_view AS SELECT id, name FROM public.users;"
    "CREATE VIEW public.users_instead AS SELECT id, name FROM public.users;"
    "CREATE TRIGGER users_instead_insert INSTEAD OF INSERT ON public.users_instead"
    " FOR EACH ROW EXECUTE FUNCTION public.audit_row();"
    "CREATE TABLE public.secrets (id int);"
    "ALTER TABLE public.secrets ENABLE ROW LEVEL SECURITY;"
    "CREATE FUNCTION public.add_one(int) RETURNS int IMMUTABLE LANGUAGE sql"
    " AS 'SELECT $1 + 1';"
    "CREATE FUNCTION public.user_name(int) RETURNS text STABLE LANGUAGE sql"
    " AS 'SELECT name FROM public.users WHERE id = $1';"
    "CREATE FUNCTION public.item_user(int) RETURNS text STABLE LANGUAGE sql"
    " BEGIN ATOMIC SELECT u.name FROM public.user_items u WHERE u.id = $1; END;"
    "CREATE FUNCTION public.user_count() RETURNS bigint STABLE LANGUAGE plpgsql"
    " AS $$BEGIN RETURN (SELECT count(*) FROM public.users); END$$;"
    "CREATE FUNCTION public.next_id() RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 1';"
    "CREATE FUNCTION public.today_users() RETURNS bigint STABLE LANGUAGE sql"
    " AS 'SELECT count(*) FROM public.users WHERE id > extract(day FROM current_date)';"
    "CREATE VIEW public.named_users AS SELECT public.user_name(id) AS n FROM s2.items;"
    "CREATE VIEW public.volatile_users AS SELECT public.next_id() AS n FROM public.users;"
    "CREATE FUNCTION public.rand_sum(int, int) RETURNS int VOLATILE LANGUAGE sql"
    " AS 'SELECT $1 + $2';"
    "CREATE AGGREGATE public.rand_total(int) (SFUNC = public.rand_sum, STYPE = int);"
    "CREATE FUNCTION public.jitter_eq(int, int) RETURNS bool VOLATILE LANGUAGE sql"
    " AS 'SELECT $1 = $2';"
    "CREATE OPERATOR public.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.jitter_eq);"
    "CREATE VIEW public.jitter_users AS SELECT * FROM public.users WHERE id === 1;";

/* The user functions above that the snapshot holds: every one but the trigger function. */
#define USER_FUNCTIONS 9
/* The relations above, and the temporary one. */
#define RELATIONS 32

static catalog_t *cat;
static catalog_t *fresh;
static size_t fresh_size, test_size;
static long long query_ms;
static PGconn *temp_holder; /* the session that holds the temporary table */

static void drop_reader(void)
{
    PGconn *c = harness_connect_direct("postgres");
    harness_silence_notices(c);
    harness_exec_ok(c, "DROP ROLE IF EXISTS " READER);
    PQfinish(c);
}

/* Runs catalog_query() on dbname as the reader and parses the value; its size and the time
 * the query took go to *size and *ms. */
static catalog_t *snapshot(const char *dbname, size_t *size, long long *ms)
{
    PGconn *conn = harness_connect(harness_pg_port(), dbname, "user=" READER);
    char *super = harness_query_value(conn, "SELECT rolsuper FROM pg_catalog.pg_roles"
                                            " WHERE rolname = current_user");
    assert_string_equal(super, "f");
    free(super);
    long long start = harness_now_ms();
    PGresult *res = PQexec(conn, catalog_query());
    *ms = harness_now_ms() - start;
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("catalog_query() on %s: %s", dbname, PQresultErrorMessage(res));
    assert_int_equal(PQntuples(res), 1);
    assert_int_equal(PQnfields(res), 1);
    *size = (size_t)PQgetlength(res, 0, 0);
    char err[256];
    catalog_t *c = catalog_parse(PQgetvalue(res, 0, 0), *size, err, sizeof(err));
    if (c == NULL)
        fail_msg("catalog_parse of %s: %s", dbname, err);
    PQclear(res);
    PQfinish(conn);
    return c;
}

static int setup(void **state)
{
    drop_reader();
    PGconn *admin = harness_connect_direct("postgres");
    harness_exec_ok(admin, "CREATE ROLE " READER " LOGIN");
    PQfinish(admin);
    harness_create_database(FRESH_DB);
    long long fresh_ms;
    fresh = snapshot(FRESH_DB, &fresh_size, &fresh_ms);
    harness_create_database(DB);
    PGconn *db = harness_connect_direct(DB);
    harness_exec_ok(db, schema_sql);
    PQfinish(db);
    temp_holder = harness_connect_direct(DB);
    harness_exec_ok(temp_holder, "CREATE TEMPORARY TABLE scratch (id int)");
    cat = snapshot(DB, &test_size, &query_ms);
    print_message("catalog_query(): %zu bytes for a fresh database (%lld ms), %zu bytes and "
                  "%lld ms for the test schema\n",
                  fresh_size, fresh_ms, test_size, query_ms);
    return 0;
}

static int teardown(void **state)
{
    catalog_unref(cat);
    catalog_unref(fresh);
    PQfinish(temp_holder);
    harness_drop_database(DB);
    harness_drop_database(FRESH_DB);
    drop_reader();
    return 0;
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Keys as one sorted, space-separated string ("-1" for a refusal, "everything" appended when
 * set). */
static const char *joined(int n, const char **keys, bool everything)
{
    static char buf[2048];
    if (n < 0)
        return "-1";
    qsort(keys, (size_t)n, sizeof(keys[0]), compare_keys);
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        strcat(buf, i == 0 ? "" : " ");
        strcat(buf, keys[i]);
    }
    if (everything)
        strcat(buf, n == 0 ? "everything" : " everything");
    return buf;
}

static const char *reads(const char *name)
{
    const char *out[64];
    return joined(catalog_read_deps(cat, name, out, 64), out, false);
}

static const char *writes(const char *name)
{
    const char *out[64];
    bool everything = true;
    int n = catalog_write_closure(cat, name, out, 64, &everything);
    return joined(n, out, everything);
}

static const char *calls(const char *name)
{
    const char *out[64];
    return joined(catalog_function_deps(cat, name, out, 64), out, false);
}

static void the_query_is_fast_and_a_fresh_database_small(void **state)
{
    if (query_ms >= 200)
        fail_msg("catalog_query() took %lld ms", query_ms);
    if (fresh_size >= 32768)
        fail_msg("a fresh database's value is %zu bytes", fresh_size);
    assert_int_equal(catalog_relation_count(fresh), 0);
}

static void every_relation_and_user_function_is_counted(void **state)
{
    assert_int_equal(catalog_relation_count(cat), RELATIONS);
    assert_int_equal(catalog_function_count(cat) - catalog_function_count(fresh), USER_FUNCTIONS);
}

static void views_depend_on_what_they_read(void **state)
{
    assert_string_equal(reads("user_items"), "items user_items users");
    assert_string_equal(reads("named_user_items"), "items named_user_items user_items users");
    assert_string_equal(reads("public.named_user_items"),
                        "items named_user_items user_items users");
    assert_string_equal(reads("named_users"), "items named_users users");
    assert_string_equal(reads("user_counts"), "user_counts");
    assert_string_equal(reads("users"), "users");
}

static void views_of_the_clock_the_catalog_or_volatile_code_are_not_cacheable(void **state)
{
    assert_string_equal(reads("recent_users"), "-1");
    assert_string_equal(reads("now_users"), "-1");
    assert_string_equal(reads("class_names"), "-1");
    assert_string_equal(reads("volatile_users"), "-1");
    assert_string_equal(reads("jitter_users"), "-1");
}

static void two_schemas_share_the_key_and_have_no_schema(void **state)
{
    assert_string_equal(reads("items"), "items");
    assert_string_equal(reads("s2.items"), "items");
    assert_string_equal(writes("items"), "items");
    assert_null(catalog_schema_of(cat, "items"));
    assert_string_equal(catalog_schema_of(cat, "s1.items"), "s1");
    assert_string_equal(catalog_schema_of(cat, "users"), "public");
}

static void partitions_reach_up_and_down_and_their_cascades(void **state)
{
    assert_string_equal(reads("events"), "events");
    assert_string_equal(reads("events_2025"), "events_2025");
    assert_string_equal(writes("events"), "event_tags events events_2024 events_2025");
    /* PostgreSQL clones a foreign key to every partition of the table it references. */
    assert_string_equal(writes("events_2024"), "event_tags events events_2024");
    assert_string_equal(writes("event_tags"), "event_tags");
}

static void a_cascade_cycle_is_closed_and_no_action_left_out(void **state)
{
    assert_string_equal(writes("orders"), "line_notes order_lines orders");
    assert_string_equal(writes("line_notes"), "line_notes order_lines orders");
    assert_string_equal(writes("order_audit"), "order_audit");
}

static void triggers_and_rules_make_a_write_reach_everything(void **state)
{
    assert_string_equal(writes("audited"), "audited everything");
    assert_string_equal(writes("feeds"), "audited feeds everything");
    assert_string_equal(writes("logs_2024"), "logs logs_2024 everything");
    assert_string_equal(writes("logs"), "logs logs_2024 everything");
    assert_string_equal(writes("ruled"), "ruled everything");
    assert_string_equal(writes("users_instead"), "users users_instead everything");
    assert_string_equal(writes("users_view"), "users users_view");
    assert_string_equal(writes("volatile_users"), "users volatile_users everything");
    assert_string_equal(writes("users"), "users");
    assert_string_equal(writes("codes"), "codes");
    assert_string_equal(writes("slots_2024"), "slots slots_2024");
}

static void temporary_secured_system_and_unknown_relations_are_not_cacheable(void **state)
{
    assert_string_equal(reads("scratch"), "-1");
    assert_string_equal(writes("scratch"), "scratch");
    assert_string_equal(catalog_schema_of(cat, "scratch"), "pg_temp");
    assert_string_equal(reads("secrets"), "-1");
    assert_string_equal(reads("pg_class"), "-1");
    assert_string_equal(reads("pg_catalog.pg_class"), "-1");
    assert_string_equal(reads("nothing"), "-1");
    assert_string_equal(writes("nothing"), "everything");
}

static void functions_are_judged_by_volatility_language_and_body(void **state)
{
    assert_string_equal(calls("add_one"), "");
    assert_string_equal(calls("public.add_one"), "");
    assert_string_equal(calls("lower"), "");
    assert_string_equal(calls("count"), "");
    assert_string_equal(calls("user_name"), "users");
    assert_string_equal(calls("item_user"), "items user_items users");
    assert_string_equal(calls("user_count"), "-1");
    assert_string_equal(calls("next_id"), "-1");
    assert_string_equal(calls("today_users"), "-1");
    assert_string_equal(calls("rand_total"), "-1");
    assert_string_equal(calls("now"), "-1");
    assert_string_equal(calls("random"), "-1");
    assert_string_equal(calls("nothing"), "-1");
}

static void volatile_operators_are_refused(void **state)
{
    assert_false(catalog_operator_cacheable(cat, "==="));
    assert_true(catalog_operator_cacheable(cat, "+"));
    assert_true(catalog_operator_cacheable(fresh, "==="));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_query_is_fast_and_a_fresh_database_small),
        cmocka_unit_test(every_relation_and_user_function_is_counted),
        cmocka_unit_test(views_depend_on_what_they_read),
        cmocka_unit_test(views_of_the_clock_the_catalog_or_volatile_code_are_not_cacheable),
        cmocka_unit_test(two_schemas_share_the_key_and_have_no_schema),
        cmocka_unit_test(partitions_reach_up_and_down_and_their_cascades),
        cmocka_unit_test(a_cascade_cycle_is_closed_and_no_action_left_out),
        cmocka_unit_test(triggers_and_rules_make_a_write_reach_everything),
        cmocka_unit_test(temporary_secured_system_and_unknown_relations_are_not_cacheable),
        cmocka_unit_test(functions_are_judged_by_volatility_language_and_body),
        cmocka_unit_test(volatile_operators_are_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
