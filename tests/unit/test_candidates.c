/*
 * test_candidates.c
 *    Unit tests of candidates: the indexes proposed for query texts (composite, ORDER BY with
 *    directions, partial, covering, expression, GIN, joins), their names and SQL, the facts
 *    behind hints, and retargeting a query at another table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "candidate_sql.h"
#include "candidates.h"
#include "retarget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PQescapeIdentifier and PQescapeLiteral, as far as these tests need them. */
static char *quote_with(const char *s, char q)
{
    size_t n = strlen(s);
    char *out = malloc(2 * n + 3);
    size_t k = 0;
    out[k++] = q;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == q)
            out[k++] = q;
        out[k++] = s[i];
    }
    out[k++] = q;
    out[k] = '\0';
    return out;
}

static char *ident(void *ctx, const char *s)
{
    return quote_with(s, '"');
}

static char *literal(void *ctx, const char *s)
{
    return quote_with(s, '\'');
}

static const cand_quoting_t quoting = {ident, literal, NULL};

/* A catalog of three tables for queries that do not qualify their columns. */
static bool has_column(void *ctx, const char *schema, const char *table, const char *column)
{
    static const char *const columns[][2] = {
        {"orders", "id"},         {"orders", "user_id"}, {"orders", "status"},
        {"orders", "created_at"}, {"users", "id"},       {"users", "email"},
        {"users", "name"},        {"items", "order_id"}, {"items", "sku"},
    };
    for (size_t i = 0; i < sizeof(columns) / sizeof(columns[0]); i++)
        if (strcmp(columns[i][0], table) == 0 && strcmp(columns[i][1], column) == 0)
            return true;
    return false;
}

static const cand_catalog_t catalog = {has_column, NULL};

/* "name: table definition" of every candidate, one per line, in the order found. */
static char *describe(const char *text, const cand_catalog_t *cat)
{
    cand_analysis_t a = {0};
    assert_int_equal(candidates_analyze(text, cat, &a), 0);
    size_t cap = 8192, n = 0;
    char *out = calloc(1, cap);
    for (int i = 0; i < a.n_cands; i++) {
        char name[CAND_NAME_LEN];
        candidate_name(&a.cands[i], name);
        char *def = candidate_definition(&a.cands[i], &quoting);
        assert_non_null(def);
        n += (size_t)snprintf(out + n, cap - n, "%s%s: %s %s", n > 0 ? "\n" : "", name,
                              a.cands[i].table, def);
        free(def);
    }
    cand_analysis_free(&a);
    return out;
}

#define assert_candidates(text, expected) assert_candidates_in(text, NULL, expected)
#define assert_candidates_in(text, cat, expected)                                                  \
    do {                                                                                           \
        char *got_ = describe(text, cat);                                                          \
        assert_string_equal(got_, expected);                                                       \
        free(got_);                                                                                \
    } while (0)

static void test_equality_columns_then_range_column(void **state)
{
    assert_candidates("SELECT * FROM orders WHERE user_id = $1 AND status = $2 AND created_at > $3",
                      "idx_orders_user_id_status_created_at: orders (\"user_id\", \"status\", "
                      "\"created_at\")");
}

static void test_between_is_a_range_and_two_ranges_give_two_candidates(void **state)
{
    assert_candidates(
        "SELECT id FROM orders o WHERE o.user_id = $1 AND o.created_at BETWEEN $2 AND $3 "
        "AND o.id < $4",
        "idx_orders_user_id_created_at: orders (\"user_id\", \"created_at\")\n"
        "idx_orders_user_id_created_at_incl_id: orders (\"user_id\", \"created_at\") INCLUDE "
        "(\"id\")\n"
        "idx_orders_user_id_id: orders (\"user_id\", \"id\")\n"
        "idx_orders_user_id_id_incl_created_at: orders (\"user_id\", \"id\") INCLUDE "
        "(\"created_at\")");
}

static void test_order_by_keeps_directions_after_equality(void **state)
{
    assert_candidates(
        "SELECT * FROM activity_logs WHERE user_id = $1 ORDER BY created_at DESC LIMIT 20",
        "idx_activity_logs_user_id_created_at_desc: activity_logs (\"user_id\", \"created_at\" "
        "DESC)");
    assert_candidates("SELECT * FROM t ORDER BY a DESC, b ASC NULLS FIRST LIMIT 5",
                      "idx_t_a_desc_b: t (\"a\" DESC, \"b\" NULLS FIRST)");
    /* Spelling out the default placement of NULLs is the default. */
    assert_candidates("SELECT * FROM t ORDER BY a DESC NULLS FIRST LIMIT 5",
                      "idx_t_a_desc: t (\"a\" DESC)");
}

static void test_order_and_range_each_make_a_candidate(void **state)
{
    assert_candidates(
        "SELECT * FROM t WHERE user_id = $1 AND created_at > $2 ORDER BY id DESC LIMIT 10",
        "idx_t_user_id_id_desc: t (\"user_id\", \"id\" DESC)\n"
        "idx_t_user_id_created_at: t (\"user_id\", \"created_at\")");
}

static void test_order_by_column_fixed_by_equality_is_skipped(void **state)
{
    assert_candidates("SELECT * FROM t WHERE a = $1 ORDER BY a, b LIMIT 3",
                      "idx_t_a_b: t (\"a\", \"b\")");
}

static void test_order_by_over_two_tables_is_not_an_index_order(void **state)
{
    assert_candidates_in("SELECT * FROM orders o JOIN users u ON u.id = o.user_id "
                         "WHERE u.email = $1 ORDER BY o.created_at, u.name LIMIT 1",
                         &catalog,
                         "idx_orders_user_id: orders (\"user_id\")\n"
                         "idx_users_email: users (\"email\")\n"
                         "idx_users_id: users (\"id\")");
}

static void test_constant_in_list_makes_partial_index(void **state)
{
    assert_candidates(
        "SELECT * FROM workflow_runs WHERE status IN ('running', 'failed') "
        "ORDER BY started_at DESC LIMIT 50",
        "idx_workflow_runs_status_started_at_desc: workflow_runs (\"status\", \"started_at\" "
        "DESC)\n"
        "idx_workflow_runs_started_at_desc_where_status: workflow_runs (\"started_at\" DESC) WHERE "
        "\"status\" IN ('running', 'failed')");
}

static void test_null_tests_make_partial_indexes_only(void **state)
{
    assert_candidates("SELECT * FROM form_responses WHERE workflow_run_id IS NOT NULL "
                      "AND form_schema_id = $1",
                      "idx_form_responses_form_schema_id: form_responses (\"form_schema_id\")\n"
                      "idx_form_responses_form_schema_id_where_workflow_run_id: form_responses "
                      "(\"form_schema_id\") WHERE \"workflow_run_id\" IS NOT NULL");
    assert_candidates("SELECT * FROM jobs WHERE finished_at IS NULL",
                      "idx_jobs_finished_at_where_finished_at: jobs (\"finished_at\") WHERE "
                      "\"finished_at\" IS NULL");
}

static void test_constants_of_every_kind_in_predicates(void **state)
{
    assert_candidates("SELECT * FROM t WHERE a = -3 AND b = true AND c = 'it''s' AND d = 0 "
                      "AND e = 1.5e3 AND f = 'x'::text ORDER BY g LIMIT 1",
                      "idx_t_a_b_c_g: t (\"a\", \"b\", \"c\", \"g\")\n"
                      "idx_t_g_where_a_b_c: t (\"g\") WHERE \"a\" = -3 AND \"b\" = true AND "
                      "\"c\" = 'it''s'");
}

static void test_parameters_in_list_is_an_equality_column(void **state)
{
    /* What pg_stat_statements keeps of status IN ('a', 'b'). */
    assert_candidates("SELECT id FROM orders WHERE status IN ($1, $2) AND user_id = ANY($3)",
                      "idx_orders_status_user_id: orders (\"status\", \"user_id\")\n"
                      "idx_orders_status_user_id_incl_id: orders (\"status\", \"user_id\") "
                      "INCLUDE (\"id\")");
}

static void test_small_select_list_gets_covering_twin(void **state)
{
    assert_candidates("SELECT email, name FROM users WHERE id > $1 AND email = $2",
                      "idx_users_email_id: users (\"email\", \"id\")\n"
                      "idx_users_email_id_incl_name: users (\"email\", \"id\") INCLUDE (\"name\")");
    /* Too many columns, or *, make no covering index. */
    assert_candidates("SELECT a, b, c, d FROM t WHERE k = $1", "idx_t_k: t (\"k\")");
    assert_candidates("SELECT * FROM t WHERE k = $1", "idx_t_k: t (\"k\")");
}

static void test_json_field_and_lower_make_expression_keys(void **state)
{
    assert_candidates("SELECT * FROM form_responses WHERE data->>'email' = $1",
                      "idx_form_responses_data_email: form_responses ((\"data\" ->> 'email'))");
    assert_candidates("SELECT * FROM users WHERE lower(email) = $1",
                      "idx_users_lower_email: users (lower(\"email\"))");
}

static void test_json_key_as_parameter_makes_no_candidate_but_a_hint(void **state)
{
    cand_analysis_t a = {0};
    assert_int_equal(
        candidates_analyze("SELECT * FROM form_responses WHERE data->>$1 = $2", NULL, &a), 0);
    assert_int_equal(a.n_cands, 0);
    assert_int_equal(a.n_hints, 2);
    assert_int_equal(a.hints[0].kind, CAND_HINT_HIDDEN_CONSTANT);
    assert_string_equal(a.hints[0].table, "form_responses");
    assert_string_equal(a.hints[0].column, "data");
    assert_int_equal(a.hints[1].kind, CAND_HINT_SELECT_STAR);
    cand_analysis_free(&a);
}

static void test_containment_makes_gin_with_jsonb_path_ops(void **state)
{
    assert_candidates("SELECT id FROM form_responses WHERE data @> $1",
                      "idx_form_responses_data_gin: form_responses USING gin (\"data\" "
                      "jsonb_path_ops)");
    assert_candidates("SELECT id FROM form_responses f WHERE '{\"a\":1}' <@ f.metadata",
                      "idx_form_responses_metadata_gin: form_responses USING gin (\"metadata\" "
                      "jsonb_path_ops)");
}

static void test_join_columns_are_candidates_on_both_sides(void **state)
{
    assert_candidates("SELECT o.id FROM orders o JOIN items i ON i.order_id = o.id "
                      "WHERE o.user_id = $1",
                      "idx_orders_user_id: orders (\"user_id\")\n"
                      "idx_orders_user_id_incl_id: orders (\"user_id\") INCLUDE (\"id\")\n"
                      "idx_orders_id: orders (\"id\")\n"
                      "idx_items_order_id: items (\"order_id\")");
}

static void test_unqualified_columns_are_placed_by_the_catalog(void **state)
{
    assert_candidates_in("SELECT sku FROM orders, items WHERE order_id = id AND status = $1",
                         &catalog,
                         "idx_orders_status: orders (\"status\")\n"
                         "idx_orders_status_incl_id: orders (\"status\") INCLUDE (\"id\")\n"
                         "idx_orders_id: orders (\"id\")\n"
                         "idx_items_order_id: items (\"order_id\")");
    /* Without a catalog an unqualified column of a join is nobody's. */
    cand_analysis_t a = {0};
    assert_int_equal(candidates_analyze("SELECT 1 FROM orders, items WHERE status = $1", NULL, &a),
                     0);
    assert_int_equal(a.n_cands, 0);
    assert_int_equal(a.n_tables, 2);
    cand_analysis_free(&a);
}

static void test_subqueries_ctes_and_correlation(void **state)
{
    assert_candidates(
        "WITH recent AS (SELECT * FROM orders WHERE created_at > $1) "
        "SELECT * FROM recent r WHERE EXISTS (SELECT 1 FROM items i WHERE i.order_id = r.id "
        "AND i.sku = $2)",
        "idx_orders_created_at: orders (\"created_at\")\n"
        "idx_items_order_id_sku: items (\"order_id\", \"sku\")");
    assert_candidates("SELECT * FROM (SELECT id FROM users WHERE email = $1) u",
                      "idx_users_email: users (\"email\")\n"
                      "idx_users_email_incl_id: users (\"email\") INCLUDE (\"id\")");
}

static void test_update_and_delete_filters(void **state)
{
    assert_candidates("UPDATE sessions SET seen_at = now() WHERE token = $1",
                      "idx_sessions_token: sessions (\"token\")");
    assert_candidates("DELETE FROM events WHERE created_at < $1 AND kind = 'debug'",
                      "idx_events_kind_created_at: events (\"kind\", \"created_at\")\n"
                      "idx_events_created_at_where_kind: events (\"created_at\") WHERE \"kind\" = "
                      "'debug'");
}

static void test_or_and_not_equal_serve_no_index(void **state)
{
    assert_candidates("SELECT * FROM t WHERE a = $1 OR b = $2", "");
    assert_candidates("SELECT * FROM t WHERE a <> $1 AND NOT (b = $2)", "");
}

static void test_quoted_names_keep_their_case_and_spaces(void **state)
{
    assert_candidates("SELECT * FROM public.\"Order Items\" oi WHERE oi.\"Order Id\" = $1",
                      "idx_order_items_order_id: Order Items (\"Order Id\")");
    cand_analysis_t a = {0};
    assert_int_equal(candidates_analyze("SELECT 1 FROM public.\"Order Items\" WHERE \"select\" = "
                                        "$1",
                                        NULL, &a),
                     0);
    assert_int_equal(a.n_cands, 1);
    assert_string_equal(a.cands[0].schema, "public");
    assert_string_equal(a.cands[0].table, "Order Items");
    assert_string_equal(a.cands[0].keys[0].expr.column, "select");
    cand_analysis_free(&a);
}

static void test_long_names_are_cut_with_a_hash(void **state)
{
    candidate_t c = {.method = CAND_BTREE, .n_keys = 3};
    strcpy(c.table, "a_table_with_a_rather_long_name_for_an_index");
    strcpy(c.keys[0].expr.column, "first_long_column_name");
    strcpy(c.keys[1].expr.column, "second_long_column_name");
    strcpy(c.keys[2].expr.column, "third");
    char name[CAND_NAME_LEN], other[CAND_NAME_LEN];
    candidate_name(&c, name);
    assert_int_equal(strlen(name), 63);
    assert_memory_equal(name, "idx_a_table_with_a_rather_long_name_for_an_index_first_", 55);
    strcpy(c.keys[2].expr.column, "fourth");
    candidate_name(&c, other);
    assert_int_equal(strlen(other), 63);
    assert_string_not_equal(name, other);
}

static int count_hints(const cand_analysis_t *a, cand_hint_kind_t kind)
{
    int n = 0;
    for (int i = 0; i < a->n_hints; i++)
        n += a->hints[i].kind == kind;
    return n;
}

static const cand_hint_t *find_hint(const cand_analysis_t *a, cand_hint_kind_t kind)
{
    for (int i = 0; i < a->n_hints; i++)
        if (a->hints[i].kind == kind)
            return &a->hints[i];
    return NULL;
}

static void test_hint_facts(void **state)
{
    cand_analysis_t a = {0};
    assert_int_equal(candidates_analyze("SELECT * FROM users WHERE name LIKE '%son' "
                                        "AND date(created_at) = $1 AND id IN (1, 2, 3) "
                                        "ORDER BY name OFFSET 5000",
                                        NULL, &a),
                     0);
    assert_int_equal(count_hints(&a, CAND_HINT_SELECT_STAR), 1);
    assert_int_equal(count_hints(&a, CAND_HINT_ORDER_NO_LIMIT), 1);
    const cand_hint_t *h = find_hint(&a, CAND_HINT_OFFSET);
    assert_non_null(h);
    assert_int_equal(h->value, 5000);
    h = find_hint(&a, CAND_HINT_LEADING_WILDCARD);
    assert_non_null(h);
    assert_string_equal(h->column, "name");
    assert_string_equal(h->detail, "%son");
    h = find_hint(&a, CAND_HINT_FUNCTION_ON_COLUMN);
    assert_non_null(h);
    assert_string_equal(h->column, "created_at");
    assert_string_equal(h->detail, "date()");
    h = find_hint(&a, CAND_HINT_LARGE_IN_LIST);
    assert_non_null(h);
    assert_int_equal(h->value, 3);
    cand_analysis_free(&a);

    /* A cast around a column; a LIMIT; an OFFSET parameter; a prefix LIKE. */
    assert_int_equal(candidates_analyze("SELECT id FROM t WHERE created_at::date = $1 AND "
                                        "name LIKE 'ab%' ORDER BY id LIMIT 10 OFFSET $2",
                                        NULL, &a),
                     0);
    h = find_hint(&a, CAND_HINT_FUNCTION_ON_COLUMN);
    assert_non_null(h);
    assert_string_equal(h->detail, "::date");
    assert_int_equal(count_hints(&a, CAND_HINT_ORDER_NO_LIMIT), 0);
    assert_int_equal(count_hints(&a, CAND_HINT_LEADING_WILDCARD), 0);
    assert_int_equal(count_hints(&a, CAND_HINT_SELECT_STAR), 0);
    h = find_hint(&a, CAND_HINT_OFFSET);
    assert_non_null(h);
    assert_int_equal(h->value, -1);
    cand_analysis_free(&a);
}

static void test_unparseable_text_and_utility_statements(void **state)
{
    cand_analysis_t a = {0};
    assert_int_equal(candidates_analyze("SELEC oops", NULL, &a), 1);
    assert_int_equal(a.n_cands, 0);
    cand_analysis_free(&a);
    assert_int_equal(candidates_analyze("VACUUM t", NULL, &a), 0);
    assert_int_equal(a.n_cands + a.n_hints + a.n_tables, 0);
    cand_analysis_free(&a);
    assert_int_equal(candidates_analyze("INSERT INTO t (a) VALUES ($1)", NULL, &a), 0);
    assert_int_equal(a.n_cands, 0);
    assert_int_equal(a.n_tables, 1);
    cand_analysis_free(&a);
}

static void test_retarget_replaces_every_reference(void **state)
{
    char *s = retarget_table("SELECT * FROM users u JOIN public . users v ON u.id = v.id "
                             "WHERE EXISTS (SELECT 1 FROM \"users\")",
                             "", "users", "pg_temp.s");
    assert_non_null(s);
    assert_string_equal(s, "SELECT * FROM pg_temp.s u JOIN public . users v ON u.id = v.id "
                           "WHERE EXISTS (SELECT 1 FROM pg_temp.s)");
    free(s);
    s = retarget_table("SELECT * FROM ONLY public.\"Order Items\" WHERE x = $1", "public",
                       "Order Items", "pg_temp.s");
    assert_non_null(s);
    assert_string_equal(s, "SELECT * FROM ONLY pg_temp.s WHERE x = $1");
    free(s);
    assert_null(retarget_table("SELECT 1 FROM other", "", "users", "x"));
    assert_null(retarget_table("not sql", "", "users", "x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equality_columns_then_range_column),
        cmocka_unit_test(test_between_is_a_range_and_two_ranges_give_two_candidates),
        cmocka_unit_test(test_order_by_keeps_directions_after_equality),
        cmocka_unit_test(test_order_and_range_each_make_a_candidate),
        cmocka_unit_test(test_order_by_column_fixed_by_equality_is_skipped),
        cmocka_unit_test(test_order_by_over_two_tables_is_not_an_index_order),
        cmocka_unit_test(test_constant_in_list_makes_partial_index),
        cmocka_unit_test(test_null_tests_make_partial_indexes_only),
        cmocka_unit_test(test_constants_of_every_kind_in_predicates),
        cmocka_unit_test(test_parameters_in_list_is_an_equality_column),
        cmocka_unit_test(test_small_select_list_gets_covering_twin),
        cmocka_unit_test(test_json_field_and_lower_make_expression_keys),
        cmocka_unit_test(test_json_key_as_parameter_makes_no_candidate_but_a_hint),
        cmocka_unit_test(test_containment_makes_gin_with_jsonb_path_ops),
        cmocka_unit_test(test_join_columns_are_candidates_on_both_sides),
        cmocka_unit_test(test_unqualified_columns_are_placed_by_the_catalog),
        cmocka_unit_test(test_subqueries_ctes_and_correlation),
        cmocka_unit_test(test_update_and_delete_filters),
        cmocka_unit_test(test_or_and_not_equal_serve_no_index),
        cmocka_unit_test(test_quoted_names_keep_their_case_and_spaces),
        cmocka_unit_test(test_long_names_are_cut_with_a_hash),
        cmocka_unit_test(test_hint_facts),
        cmocka_unit_test(test_unparseable_text_and_utility_statements),
        cmocka_unit_test(test_retarget_replaces_every_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
