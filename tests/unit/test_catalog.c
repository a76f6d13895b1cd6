/*
 * test_catalog.c
 *    Unit tests of catalog: a hand-written value of the shape catalog_query() returns, and the
 *    exact keys of every lookup: a view over a view over two tables, partitions up and down
 *    (not sideways), a foreign-key cascade cycle, a trigger or rule that makes a write reach
 *    everything, one name in two schemas, temporary, unknown, shadowed, foreign and
 *    row-secured relations, views that call functions or read the clock, IMMUTABLE, STABLE
 *    SQL (classic and BEGIN ATOMIC), STABLE plpgsql and VOLATILE functions, limits (the
 *    caller's max and CATALOG_MAX_KEYS), dotted names, reference counting across threads
 *    and malformed values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "catalog.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The snapshot under test, written with ' for " to stay readable. Oids: 1-5 plain tables and
 * views, 10-13 a partition tree two levels deep, 20-23 foreign keys (a -> b -> c -> a cascade,
 * d references a with NO ACTION, so no relation lists it), 30-31 triggers, 40-44 names in
 * two schemas and special relations, 45-51 views of every kind, 60-65 more names.
 */
static const char fixture[] =
    "{'version': 1,"
    " 'relations': ["
    "  {'oid': 1, 'schema': 'public', 'name': 't1', 'kind': 'r'},"
    "  {'oid': 2, 'schema': 'public', 'name': 't2', 'kind': 'r'},"
    "  {'oid': 3, 'schema': 'public', 'name': 'v1', 'kind': 'v', 'reads': [1, 2]},"
    "  {'oid': 4, 'schema': 'public', 'name': 'v2', 'kind': 'v', 'reads': [3]},"
    "  {'oid': 5, 'schema': 'public', 'name': 'mv', 'kind': 'm'},"
    "  {'oid': 10, 'schema': 'public', 'name': 'events', 'kind': 'p'},"
    "  {'oid': 11, 'schema': 'public', 'name': 'events_2024', 'kind': 'r', 'parents': [10]},"
    "  {'oid': 12, 'schema': 'public', 'name': 'events_2025', 'kind': 'p', 'parents': [10]},"
    "  {'oid': 13, 'schema': 'public', 'name': 'events_2025_01', 'kind': 'r',"
    "   'parents': [12]},"
    "  {'oid': 20, 'schema': 'public', 'name': 'a', 'kind': 'r', 'cascades': [21]},"
    "  {'oid': 21, 'schema': 'public', 'name': 'b', 'kind': 'r', 'cascades': [22]},"
    "  {'oid': 22, 'schema': 'public', 'name': 'c', 'kind': 'r', 'cascades': [20]},"
    "  {'oid': 23, 'schema': 'public', 'name': 'd', 'kind': 'r'},"
    "  {'oid': 30, 'schema': 'public', 'name': 'audited', 'kind': 'r', 'triggers': true},"
    "  {'oid': 31, 'schema': 'public', 'name': 'feeds', 'kind': 'r', 'cascades': [30]},"
    "  {'oid': 40, 'schema': 's1', 'name': 'items', 'kind': 'r'},"
    "  {'oid': 41, 'schema': 's2', 'name': 'items', 'kind': 'r'},"
    "  {'oid': 42, 'schema': 'pg_temp', 'name': 'scratch', 'kind': 'r', 'temp': true},"
    "  {'oid': 43, 'schema': 'public', 'name': 'secure', 'kind': 'r', 'rls': true},"
    "  {'oid': 44, 'schema': 'public', 'name': 'remote', 'kind': 'f'},"
    "  {'oid': 45, 'schema': 'public', 'name': 'v_now', 'kind': 'v', 'reads': [1],"
    "   'unsafe': true},"
    "  {'oid': 46, 'schema': 'public', 'name': 'v_sys', 'kind': 'v', 'reads': [1259]},"
    "  {'oid': 47, 'schema': 'public', 'name': 'v_fn', 'kind': 'v', 'reads': [41],"
    "   'calls': [['public', 'f_stable'], ['pg_catalog', 'lower']]},"
    "  {'oid': 48, 'schema': 'public', 'name': 'v_vol', 'kind': 'v', 'reads': [1],"
    "   'calls': [['public', 'f_vol']]},"
    "  {'oid': 49, 'schema': 'public', 'name': 'v_instead', 'kind': 'v', 'reads': [1],"
    "   'triggers': true},"
    "  {'oid': 50, 'schema': 'public', 'name': 'v_rule', 'kind': 'v', 'reads': [2],"
    "   'rules': true},"
    "  {'oid': 51, 'schema': 'public', 'name': 'v_now_call', 'kind': 'v', 'reads': [1],"
    "   'calls': [['pg_catalog', 'now']]},"
    "  {'oid': 60, 'schema': 's1', 'name': 'report', 'kind': 'v', 'reads': [1]},"
    "  {'oid': 61, 'schema': 's2', 'name': 'report', 'kind': 'r'},"
    "  {'oid': 62, 'schema': 'public', 'name': 'tmpish', 'kind': 'r'},"
    "  {'oid': 63, 'schema': 'pg_temp', 'name': 'tmpish', 'kind': 'r', 'temp': true},"
    "  {'oid': 64, 'schema': 'public', 'name': 'pg_class', 'kind': 'r', 'shadowed': true},"
    "  {'oid': 65, 'schema': 'x', 'name': 'a.b', 'kind': 'r'},"
    "  {'oid': 66, 'schema': 'public', 'name': 'Users', 'kind': 'r'}"
    " ],"
    " 'immutable_functions': ["
    "  {'schema': 'pg_catalog', 'names': ['abs', 'count', 'lower']},"
    "  {'schema': 'public', 'names': ['dup', 'f_imm']}"
    " ],"
    " 'refused_functions': ["
    "  {'schema': 'public', 'names': ['f_plpgsql', 'f_vol']},"
    "  {'schema': 's1', 'names': ['dup']}"
    " ],"
    " 'stable_functions': ["
    "  {'schema': 'public', 'name': 'f_stable',"
    "   'bodies': [{'sql': 'SELECT name FROM public.t1 WHERE id = $1'}]},"
    "  {'schema': 'public', 'name': 'f_stable2',"
    "   'bodies': [{'sql': 'SELECT lower(x) FROM t2 JOIN v1 USING (id) WHERE id BETWEEN 1 AND"
    " 2'}, {'sql': 'SELECT count(*) FROM mv'}]},"
    "  {'schema': 'public', 'name': 'f_atomic',"
    "   'bodies': [{'reads': [40], 'calls': [['pg_catalog', 'lower']]}]},"
    "  {'schema': 'public', 'name': 'f_atomic_now', 'bodies': [{'reads': [1], 'unsafe': true}]},"
    "  {'schema': 'public', 'name': 'f_atomic_sys', 'bodies': [{'reads': [2609]}]},"
    "  {'schema': 'public', 'name': 'f_calls_vol', 'bodies': [{'sql': 'SELECT f_vol()'}]},"
    "  {'schema': 'public', 'name': 'f_calls_stable',"
    "   'bodies': [{'sql': 'SELECT public.f_stable(id) FROM t2'}]},"
    "  {'schema': 'public', 'name': 'f_date', 'bodies': [{'sql': 'SELECT current_date'}]},"
    "  {'schema': 'public', 'name': 'f_cast', 'bodies': [{'sql': 'SELECT $$now$$::date'}]},"
    "  {'schema': 'public', 'name': 'f_write',"
    "   'bodies': [{'sql': 'UPDATE t1 SET id = 1 RETURNING id'}]},"
    "  {'schema': 'public', 'name': 'f_lock', 'bodies': [{'sql': 'SELECT id FROM t1 FOR UPDATE'}]},"
    "  {'schema': 'public', 'name': 'f_rec', 'bodies': [{'sql': 'SELECT public.f_rec($1 - 1)'}]},"
    "  {'schema': 'public', 'name': 'f_temp', 'bodies': [{'sql': 'SELECT * FROM scratch'}]},"
    "  {'schema': 'public', 'name': 'f_nothing', 'bodies': [{'sql': 'SELECT * FROM nothing'}]},"
    "  {'schema': 'public', 'name': 'f_op', 'bodies': [{'sql': 'SELECT $1 === 1'}]},"
    "  {'schema': 'public', 'name': 'f_view', 'bodies': [{'sql': 'SELECT * FROM v_now'}]},"
    "  {'schema': 'public', 'name': 'f_bad_sql', 'bodies': [{'sql': 'SELEC nonsense'}]}"
    " ],"
    " 'unsafe_operators': ['===']}";

static catalog_t *cat;

/* text with every ' turned into ", in a buffer the caller frees. */
static char *json_of(const char *text)
{
    char *s = strdup(text);
    assert_non_null(s);
    for (char *q = s; *q != '\0'; q++)
        if (*q == '\'')
            *q = '"';
    return s;
}

static catalog_t *parse(const char *text, char *err, size_t errlen)
{
    char *json = json_of(text);
    catalog_t *c = catalog_parse(json, strlen(json), err, errlen);
    free(json);
    return c;
}

static int setup(void **state)
{
    char err[256];
    cat = parse(fixture, err, sizeof(err));
    if (cat == NULL)
        fail_msg("%s", err);
    return 0;
}

static int teardown(void **state)
{
    catalog_unref(cat);
    return 0;
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Keys as one sorted, space-separated string ("-1" for a refusal, "everything" appended when
 * set): the order of keys is no part of the contract, the set is. */
static const char *joined(int n, const char **keys, bool everything)
{
    static char buf[1024];
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

static const char *reads_n(const char *name, int max)
{
    const char *out[64];
    return joined(catalog_read_deps(cat, name, out, max), out, false);
}

static const char *reads(const char *name)
{
    return reads_n(name, 64);
}

static const char *writes_n(const char *name, int max)
{
    const char *out[64];
    bool everything = true;
    int n = catalog_write_closure(cat, name, out, max, &everything);
    return joined(n, out, everything);
}

static const char *writes(const char *name)
{
    return writes_n(name, 64);
}

static const char *calls_n(const char *name, int max)
{
    const char *out[64];
    return joined(catalog_function_deps(cat, name, out, max), out, false);
}

static const char *calls(const char *name)
{
    return calls_n(name, 64);
}

static void a_view_over_a_view_depends_on_both_and_their_tables(void **state)
{
    assert_string_equal(reads("v2"), "t1 t2 v1 v2");
    assert_string_equal(reads("public.v1"), "t1 t2 v1");
    assert_string_equal(reads("t1"), "t1");
    assert_string_equal(reads("public.t1"), "t1");
}

static void a_matview_depends_only_on_itself(void **state)
{
    assert_string_equal(reads("mv"), "mv");
    assert_string_equal(writes("mv"), "mv");
}

static void a_write_through_a_view_reaches_its_base_relations(void **state)
{
    assert_string_equal(writes("v2"), "t1 t2 v1 v2");
    assert_string_equal(writes("t1"), "t1");
}

static void a_partition_write_bumps_its_ancestors_but_not_its_siblings(void **state)
{
    assert_string_equal(writes("events_2025_01"), "events events_2025 events_2025_01");
    assert_string_equal(writes("events_2024"), "events events_2024");
    assert_string_equal(writes("events_2025"), "events events_2025 events_2025_01");
}

static void a_parent_write_bumps_every_descendant(void **state)
{
    assert_string_equal(writes("events"), "events events_2024 events_2025 events_2025_01");
}

static void a_partitioned_read_depends_on_itself(void **state)
{
    assert_string_equal(reads("events"), "events");
    assert_string_equal(reads("events_2025_01"), "events_2025_01");
}

static void cascades_are_followed_around_a_cycle(void **state)
{
    assert_string_equal(writes("a"), "a b c");
    assert_string_equal(writes("b"), "a b c");
    assert_string_equal(writes("c"), "a b c");
}

static void a_no_action_reference_is_not_in_the_closure(void **state)
{
    assert_string_equal(writes("d"), "d");
    assert_null(strstr(writes("a"), "d"));
}

static void a_trigger_in_the_closure_makes_a_write_reach_everything(void **state)
{
    assert_string_equal(writes("audited"), "audited everything");
    assert_string_equal(writes("feeds"), "audited feeds everything");
    assert_string_equal(reads("audited"), "audited");
}

static void instead_of_triggers_and_rules_on_views_reach_everything(void **state)
{
    assert_string_equal(writes("v_instead"), "t1 v_instead everything");
    assert_string_equal(writes("v_rule"), "t2 v_rule everything");
    assert_string_equal(reads("v_instead"), "t1 v_instead");
}

static void a_name_in_two_schemas_is_the_union_and_has_no_schema(void **state)
{
    assert_string_equal(reads("items"), "items");
    assert_string_equal(reads("report"), "report t1");
    assert_string_equal(reads("s2.report"), "report");
    assert_string_equal(reads("s1.report"), "report t1");
    /* The view s1.report writes through to t1. */
    assert_string_equal(writes("report"), "report t1");
    assert_string_equal(writes("s2.report"), "report");
    assert_null(catalog_schema_of(cat, "items"));
    assert_null(catalog_schema_of(cat, "report"));
    assert_string_equal(catalog_schema_of(cat, "s1.items"), "s1");
    assert_string_equal(catalog_schema_of(cat, "s2.report"), "s2");
}

static void the_schema_of_a_name_of_one_relation(void **state)
{
    assert_string_equal(catalog_schema_of(cat, "t1"), "public");
    assert_string_equal(catalog_schema_of(cat, "public.t1"), "public");
    assert_string_equal(catalog_schema_of(cat, "scratch"), "pg_temp");
    /* A qualified name of no relation still has its schema, when the snapshot knows it. */
    assert_string_equal(catalog_schema_of(cat, "s1.later"), "s1");
    assert_null(catalog_schema_of(cat, "nowhere.t1"));
    assert_null(catalog_schema_of(cat, "nothing"));
    assert_null(catalog_schema_of(cat, "tmpish"));
}

static void temporary_and_unknown_relations_are_not_cacheable(void **state)
{
    assert_string_equal(reads("scratch"), "-1");
    assert_string_equal(reads("pg_temp.scratch"), "-1");
    /* An unqualified name that some session's temporary relation has may be that one. */
    assert_string_equal(reads("tmpish"), "-1");
    assert_string_equal(reads("public.tmpish"), "tmpish");
    assert_string_equal(reads("nothing"), "-1");
    assert_string_equal(reads("public.nothing"), "-1");
    assert_string_equal(reads("s1.t1"), "-1");
}

static void a_write_to_an_unknown_name_reaches_everything(void **state)
{
    assert_string_equal(writes("nothing"), "everything");
    assert_string_equal(writes("scratch"), "scratch");
}

static void system_foreign_and_row_secured_relations_are_not_cacheable(void **state)
{
    assert_string_equal(reads("pg_class"), "-1");
    assert_string_equal(reads("pg_catalog.pg_class"), "-1");
    assert_string_equal(reads("public.pg_class"), "pg_class");
    assert_string_equal(reads("remote"), "-1");
    assert_string_equal(writes("remote"), "remote");
    assert_string_equal(reads("secure"), "-1");
    assert_string_equal(writes("secure"), "secure");
}

static void names_keep_their_case(void **state)
{
    assert_string_equal(reads("Users"), "Users");
    assert_string_equal(reads("users"), "-1");
    assert_string_equal(reads("public.Users"), "Users");
}

static void a_dotted_relname_is_found_by_every_reading(void **state)
{
    assert_string_equal(reads("x.a.b"), "a.b");
    assert_string_equal(catalog_schema_of(cat, "x.a.b"), "x");
    assert_string_equal(reads("a.b.c.d.e.f.g.h.i.j"), "-1");
    assert_string_equal(writes("a.b.c.d.e.f.g.h.i.j"), "everything");
}

static void views_of_uncacheable_things_are_not_cacheable(void **state)
{
    assert_string_equal(reads("v_now"), "-1");
    assert_string_equal(reads("v_sys"), "-1");
    assert_string_equal(reads("v_vol"), "-1");
    assert_string_equal(reads("v_now_call"), "-1");
    assert_string_equal(writes("v_now"), "t1 v_now");
}

static void writes_through_views_that_may_run_unknown_code_reach_everything(void **state)
{
    assert_string_equal(writes("v_sys"), "v_sys everything");
    assert_string_equal(writes("v_vol"), "t1 v_vol everything");
    assert_string_equal(writes("v_now_call"), "t1 v_now_call everything");
}

static void a_view_calling_a_stable_sql_function_depends_on_its_tables(void **state)
{
    assert_string_equal(reads("v_fn"), "items t1 v_fn");
    assert_string_equal(writes("v_fn"), "items v_fn");
}

static void immutable_functions_have_no_dependencies(void **state)
{
    assert_string_equal(calls("lower"), "");
    assert_string_equal(calls("pg_catalog.lower"), "");
    assert_string_equal(calls("count"), "");
    assert_string_equal(calls("f_imm"), "");
    assert_string_equal(calls("public.f_imm"), "");
}

static void stable_sql_functions_depend_on_what_their_bodies_read(void **state)
{
    assert_string_equal(calls("f_stable"), "t1");
    assert_string_equal(calls("public.f_stable"), "t1");
    /* Through a view, over two overloads. */
    assert_string_equal(calls("f_stable2"), "mv t1 t2 v1");
    assert_string_equal(calls("f_atomic"), "items");
    assert_string_equal(calls("f_calls_stable"), "t1 t2");
    assert_string_equal(calls("f_rec"), "");
}

static void stable_sql_functions_that_are_not_plain_reads_are_refused(void **state)
{
    assert_string_equal(calls("f_calls_vol"), "-1");
    assert_string_equal(calls("f_date"), "-1");
    assert_string_equal(calls("f_cast"), "-1");
    assert_string_equal(calls("f_write"), "-1");
    assert_string_equal(calls("f_lock"), "-1");
    assert_string_equal(calls("f_temp"), "-1");
    assert_string_equal(calls("f_nothing"), "-1");
    assert_string_equal(calls("f_op"), "-1");
    assert_string_equal(calls("f_view"), "-1");
    assert_string_equal(calls("f_bad_sql"), "-1");
    assert_string_equal(calls("f_atomic_now"), "-1");
    assert_string_equal(calls("f_atomic_sys"), "-1");
}

static void volatile_plpgsql_and_unknown_functions_are_refused(void **state)
{
    assert_string_equal(calls("f_vol"), "-1");
    assert_string_equal(calls("f_plpgsql"), "-1");
    assert_string_equal(calls("now"), "-1");
    assert_string_equal(calls("pg_catalog.now"), "-1");
    assert_string_equal(calls("public.lower"), "-1");
    assert_string_equal(calls("nothing"), "-1");
}

static void an_unqualified_function_is_judged_over_every_schema(void **state)
{
    assert_string_equal(calls("dup"), "-1");
    assert_string_equal(calls("public.dup"), "");
    assert_string_equal(calls("s1.dup"), "-1");
}

/* Refused functions outside pg_catalog may write; built-ins the snapshot does not ship are
 * taken for built-ins; a qualified unknown name in a user schema may write. */
static void functions_that_may_write(void **state)
{
    assert_true(catalog_function_may_write(cat, "f_vol"));
    assert_true(catalog_function_may_write(cat, "f_plpgsql"));
    assert_true(catalog_function_may_write(cat, "dup"));
    assert_true(catalog_function_may_write(cat, "s1.dup"));
    assert_true(catalog_function_may_write(cat, "app.made_since"));
    assert_false(catalog_function_may_write(cat, "public.dup"));
    assert_false(catalog_function_may_write(cat, "now"));
    assert_false(catalog_function_may_write(cat, "pg_catalog.random"));
    assert_false(catalog_function_may_write(cat, "f_rec"));
}

static void relations_of_a_schema(void **state)
{
    const char *out[16];
    int n = catalog_relations_in(cat, "s1", out, 16);
    assert_int_equal(n, 2);
    assert_string_equal(out[0], "items");
    assert_string_equal(out[1], "report");
    assert_int_equal(catalog_relations_in(cat, "s1", out, 1), 1);
    assert_int_equal(catalog_relations_in(cat, "nowhere", out, 16), 0);
}

static void operators_of_volatile_functions_are_refused(void **state)
{
    assert_false(catalog_operator_cacheable(cat, "==="));
    assert_true(catalog_operator_cacheable(cat, "+"));
    assert_true(catalog_operator_cacheable(cat, "=="));
}

static void more_keys_than_max_refuse_a_read_and_reach_everything(void **state)
{
    assert_string_equal(reads_n("v2", 4), "t1 t2 v1 v2");
    assert_string_equal(reads_n("v2", 3), "-1");
    assert_string_equal(calls_n("f_stable2", 3), "-1");
    const char *out[2];
    bool everything = false;
    assert_int_equal(catalog_write_closure(cat, "events", out, 2, &everything), 2);
    assert_true(everything);
    assert_int_equal(catalog_read_deps(cat, "t1", out, 0), -1);
}

/* A chain of n relations, each oid i + 1 named ti: views each reading the next, or tables
 * each cascading to the next. */
static catalog_t *chain(int n, bool views)
{
    size_t cap = (size_t)n * 128 + 512, len = 0;
    char *json = malloc(cap);
    assert_non_null(json);
    len += (size_t)snprintf(json + len, cap - len, "{\"version\": 1, \"relations\": [");
    for (int i = 0; i < n; i++) {
        char link[64] = "";
        if (i + 1 < n)
            snprintf(link, sizeof(link), ", \"%s\": [%d]", views ? "reads" : "cascades", i + 2);
        len += (size_t)snprintf(json + len, cap - len,
                                "%s{\"oid\": %d, \"schema\": \"public\", \"name\": \"t%d\", "
                                "\"kind\": \"%s\"%s}",
                                i == 0 ? "" : ", ", i + 1, i, views && i + 1 < n ? "v" : "r", link);
    }
    snprintf(json + len, cap - len,
             "], \"immutable_functions\": [], \"refused_functions\": [],"
             " \"stable_functions\": [], \"unsafe_operators\": []}");
    char err[256];
    catalog_t *c = catalog_parse(json, strlen(json), err, sizeof(err));
    free(json);
    if (c == NULL)
        fail_msg("%s", err);
    return c;
}

static void closures_are_bounded_by_catalog_max_keys(void **state)
{
    static const char *out[CATALOG_MAX_KEYS + 10];
    bool everything = false;
    catalog_t *c = chain(CATALOG_MAX_KEYS, false);
    assert_int_equal(catalog_write_closure(c, "t0", out, CATALOG_MAX_KEYS + 10, &everything),
                     CATALOG_MAX_KEYS);
    assert_false(everything);
    catalog_unref(c);
    c = chain(CATALOG_MAX_KEYS + 1, false);
    assert_int_equal(catalog_write_closure(c, "t0", out, CATALOG_MAX_KEYS + 10, &everything),
                     CATALOG_MAX_KEYS);
    assert_true(everything);
    assert_int_equal(catalog_write_closure(c, "t1", out, CATALOG_MAX_KEYS + 10, &everything),
                     CATALOG_MAX_KEYS);
    assert_false(everything);
    catalog_unref(c);
    c = chain(CATALOG_MAX_KEYS, true);
    assert_int_equal(catalog_read_deps(c, "t0", out, CATALOG_MAX_KEYS + 10), CATALOG_MAX_KEYS);
    catalog_unref(c);
    c = chain(CATALOG_MAX_KEYS + 1, true);
    assert_int_equal(catalog_read_deps(c, "t0", out, CATALOG_MAX_KEYS + 10), -1);
    assert_int_equal(catalog_read_deps(c, "t1", out, CATALOG_MAX_KEYS + 10), CATALOG_MAX_KEYS);
    catalog_unref(c);
}

static void counts_are_of_relations_and_function_names(void **state)
{
    assert_int_equal(catalog_relation_count(cat), 34);
    assert_int_equal(catalog_function_count(cat), 5 + 3 + 17);
}

struct ref_worker {
    catalog_t *c;
    int rounds;
};

static void *take_and_drop(void *arg)
{
    struct ref_worker *w = arg;
    const char *out[8];
    for (int i = 0; i < w->rounds; i++) {
        catalog_ref(w->c);
        if (catalog_read_deps(w->c, "v1", out, 8) != 3)
            abort();
        catalog_unref(w->c);
    }
    catalog_unref(w->c);
    return NULL;
}

/* Each thread owns one reference and churns more; the last drop frees (ASan checks that it
 * happens exactly once, after every use). */
static void references_are_counted_across_threads(void **state)
{
    char err[256];
    catalog_t *c = parse(fixture, err, sizeof(err));
    assert_non_null(c);
    pthread_t threads[4];
    struct ref_worker w = {c, 20000};
    for (int i = 0; i < 4; i++) {
        catalog_ref(c);
        assert_int_equal(pthread_create(&threads[i], NULL, take_and_drop, &w), 0);
    }
    catalog_unref(c);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    catalog_unref(NULL);
}

static void an_empty_catalog_knows_nothing(void **state)
{
    char err[256];
    catalog_t *c = parse("{'version': 1, 'relations': [], 'immutable_functions': [],"
                         " 'refused_functions': [], 'stable_functions': [],"
                         " 'unsafe_operators': []}",
                         err, sizeof(err));
    assert_non_null(c);
    const char *out[4];
    bool everything = false;
    assert_int_equal(catalog_read_deps(c, "t", out, 4), -1);
    assert_int_equal(catalog_write_closure(c, "t", out, 4, &everything), 0);
    assert_true(everything);
    assert_int_equal(catalog_function_deps(c, "lower", out, 4), -1);
    assert_null(catalog_schema_of(c, "public.t"));
    assert_true(catalog_operator_cacheable(c, "+"));
    assert_int_equal(catalog_relation_count(c), 0);
    assert_int_equal(catalog_function_count(c), 0);
    catalog_unref(c);
}

#define EMPTY_LISTS                                                                                \
    "'immutable_functions': [], 'refused_functions': [], 'stable_functions': [],"                  \
    " 'unsafe_operators': []"

static void malformed_values_are_refused_with_a_message(void **state)
{
    static const struct {
        const char *json, *message;
    } cases[] = {
        {"{", "catalog: not JSON: "},
        {"", "catalog: not JSON: "},
        {"[]", "catalog: the value is not a JSON object"},
        {"{'relations': []}", "catalog: \"version\" is not 1"},
        {"{'version': 2, 'relations': [], " EMPTY_LISTS "}", "catalog: \"version\" is not 1"},
        {"{'version': 1, " EMPTY_LISTS "}", "catalog: the value: \"relations\" is not an array"},
        {"{'version': 1, 'relations': {}, " EMPTY_LISTS "}",
         "catalog: the value: \"relations\" is not an array"},
        {"{'version': 1, 'relations': [{'oid': 1, 'schema': 'public', 'kind': 'r'}], " EMPTY_LISTS
         "}",
         "catalog: relations[0]: \"name\" is not a non-empty string"},
        {"{'version': 1, 'relations': [{'oid': 1, 'schema': 'public', 'name': 't', 'kind': "
         "'x'}], " EMPTY_LISTS "}",
         "catalog: relations[0]: kind \"x\" is not one of r, p, v, m, f"},
        {"{'version': 1, 'relations': [{'oid': -1, 'schema': 'public', 'name': 't', 'kind': "
         "'r'}], " EMPTY_LISTS "}",
         "catalog: relations[0]: an oid is not an integer in 1..4294967295"},
        {"{'version': 1, 'relations': [{'oid': 1, 'schema': 'public', 'name': 't', 'kind': 'r'},"
         " {'oid': 1, 'schema': 'public', 'name': 'u', 'kind': 'r'}], " EMPTY_LISTS "}",
         "catalog: oid 1 is there twice"},
        {"{'version': 1, 'relations': [{'oid': 1, 'schema': 'public', 'name': 't', 'kind': 'r'},"
         " {'oid': 2, 'schema': 'public', 'name': 't', 'kind': 'r'}], " EMPTY_LISTS "}",
         "catalog: relations[1]: public.t is there twice"},
        {"{'version': 1, 'relations': [{'oid': 1, 'schema': 'public', 'name': 't', 'kind': 'v', "
         "'reads': 5}], " EMPTY_LISTS "}",
         "catalog: relations[0]: \"reads\" is not an array"},
        {"{'version': 1, 'relations': [{'oid': 1, 'schema': 'public', 'name': 't', 'kind': 'v', "
         "'calls': [['f']]}], " EMPTY_LISTS "}",
         "catalog: relations[0]: a call is not a [schema, name] pair"},
        {"{'version': 1, 'relations': [{'oid': 1, 'schema': 'public', 'name': 't', 'kind': 'r', "
         "'temp': 1}], " EMPTY_LISTS "}",
         "catalog: relations[0]: \"temp\" is not a boolean"},
        {"{'version': 1, 'relations': [], 'immutable_functions': [{'schema': 'public', 'names': "
         "['f', 'f']}], 'refused_functions': [], 'stable_functions': [], 'unsafe_operators': []}",
         "catalog: immutable_functions[0]: function public.f is there twice"},
        {"{'version': 1, 'relations': [], 'immutable_functions': [], 'refused_functions': [], "
         "'stable_functions': [{'schema': 'public', 'name': 'f', 'bodies': [{'sql': 5}]}], "
         "'unsafe_operators': []}",
         "catalog: stable_functions[0]: \"sql\" is not a string"},
        {"{'version': 1, 'relations': [], 'immutable_functions': [], 'refused_functions': [], "
         "'stable_functions': [], 'unsafe_operators': [1]}",
         "catalog: unsafe_operators[0] is not a non-empty string"},
        {"{'version': 1, 'version': 1}", "catalog: not JSON: "},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256] = "untouched";
        catalog_t *c = parse(cases[i].json, err, sizeof(err));
        if (c != NULL)
            fail_msg("case %zu was accepted", i);
        if (strncmp(err, cases[i].message, strlen(cases[i].message)) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].message);
    }
}

static void a_message_is_cut_to_the_buffer(void **state)
{
    char err[12];
    assert_null(parse("[]", err, sizeof(err)));
    assert_string_equal(err, "catalog: th");
    assert_null(parse("[]", NULL, 0));
}

static void the_query_is_one_statement_returning_json(void **state)
{
    const char *q = catalog_query();
    assert_non_null(strstr(q, "pg_catalog.json_build_object("));
    assert_null(strchr(q, ';'));
    assert_null(strchr(q, '\\'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_view_over_a_view_depends_on_both_and_their_tables),
        cmocka_unit_test(a_matview_depends_only_on_itself),
        cmocka_unit_test(a_write_through_a_view_reaches_its_base_relations),
        cmocka_unit_test(a_partition_write_bumps_its_ancestors_but_not_its_siblings),
        cmocka_unit_test(a_parent_write_bumps_every_descendant),
        cmocka_unit_test(a_partitioned_read_depends_on_itself),
        cmocka_unit_test(cascades_are_followed_around_a_cycle),
        cmocka_unit_test(a_no_action_reference_is_not_in_the_closure),
        cmocka_unit_test(a_trigger_in_the_closure_makes_a_write_reach_everything),
        cmocka_unit_test(instead_of_triggers_and_rules_on_views_reach_everything),
        cmocka_unit_test(a_name_in_two_schemas_is_the_union_and_has_no_schema),
        cmocka_unit_test(the_schema_of_a_name_of_one_relation),
        cmocka_unit_test(temporary_and_unknown_relations_are_not_cacheable),
        cmocka_unit_test(a_write_to_an_unknown_name_reaches_everything),
        cmocka_unit_test(system_foreign_and_row_secured_relations_are_not_cacheable),
        cmocka_unit_test(names_keep_their_case),
        cmocka_unit_test(a_dotted_relname_is_found_by_every_reading),
        cmocka_unit_test(views_of_uncacheable_things_are_not_cacheable),
        cmocka_unit_test(writes_through_views_that_may_run_unknown_code_reach_everything),
        cmocka_unit_test(a_view_calling_a_stable_sql_function_depends_on_its_tables),
        cmocka_unit_test(immutable_functions_have_no_dependencies),
        cmocka_unit_test(stable_sql_functions_depend_on_what_their_bodies_read),
        cmocka_unit_test(stable_sql_functions_that_are_not_plain_reads_are_refused),
        cmocka_unit_test(volatile_plpgsql_and_unknown_functions_are_refused),
        cmocka_unit_test(an_unqualified_function_is_judged_over_every_schema),
        cmocka_unit_test(operators_of_volatile_functions_are_refused),
        cmocka_unit_test(more_keys_than_max_refuse_a_read_and_reach_everything),
        cmocka_unit_test(closures_are_bounded_by_catalog_max_keys),
        cmocka_unit_test(counts_are_of_relations_and_function_names),
        cmocka_unit_test(references_are_counted_across_threads),
        cmocka_unit_test(an_empty_catalog_knows_nothing),
        cmocka_unit_test(functions_that_may_write),
        cmocka_unit_test(relations_of_a_schema),
        cmocka_unit_test(malformed_values_are_refused_with_a_message),
        cmocka_unit_test(a_message_is_cut_to_the_buffer),
        cmocka_unit_test(the_query_is_one_statement_returning_json),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
