/*
 * test_hints.c
 *    Unit tests of hints: which facts of a query deserve a hint for which tables (wide or
 *    not, large or not, the column indexed or not), and what the hint says.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "hints.h"

#include <stdio.h>
#include <string.h>

static column_info_t columns[12];
static index_info_t indexes[1];

/* A table of n_columns columns of width bytes each, rows rows, and an index on email. */
static table_info_t table(int n_columns, int width, double rows)
{
    table_info_t t = {.relkind = 'r',
                      .reltuples = rows,
                      .columns = columns,
                      .n_columns = n_columns,
                      .indexes = indexes,
                      .n_indexes = 1};
    strcpy(t.schema, "public");
    strcpy(t.name, "users");
    for (int i = 0; i < n_columns; i++) {
        snprintf(columns[i].name, sizeof(columns[i].name), "c%d", i);
        columns[i].avg_width = width;
    }
    strcpy(indexes[0].name, "users_email_idx");
    strcpy(indexes[0].method, "btree");
    indexes[0].valid = true;
    indexes[0].n_keys = 1;
    strcpy(indexes[0].keys[0], "email");
    return t;
}

static cand_hint_t fact(cand_hint_kind_t kind, const char *column, const char *detail, long value)
{
    cand_hint_t h = {.kind = kind, .value = value};
    strcpy(h.table, "users");
    strcpy(h.column, column);
    strcpy(h.detail, detail);
    return h;
}

static char msg[512];

static void test_select_star_only_on_wide_tables(void **state)
{
    cand_hint_t f = fact(CAND_HINT_SELECT_STAR, "", "", 0);
    table_info_t narrow = table(5, 20, 1000);
    assert_false(hints_message(&f, &narrow, msg, sizeof(msg)));
    table_info_t many = table(12, 8, 1000);
    assert_true(hints_message(&f, &many, msg, sizeof(msg)));
    assert_string_equal(msg, "SELECT * reads all 12 columns of public.users (about 96 bytes a "
                             "row): name the columns the code uses, so that less is read and "
                             "sent, and an index can cover the query");
    table_info_t wide = table(3, 200, 1000);
    assert_true(hints_message(&f, &wide, msg, sizeof(msg)));
}

static void test_order_without_limit_and_offset_on_large_tables(void **state)
{
    cand_hint_t order = fact(CAND_HINT_ORDER_NO_LIMIT, "", "", 0);
    cand_hint_t param = fact(CAND_HINT_OFFSET, "", "", -1);
    cand_hint_t deep = fact(CAND_HINT_OFFSET, "", "", 5000);
    cand_hint_t shallow = fact(CAND_HINT_OFFSET, "", "", 40);
    table_info_t small = table(3, 8, 5000);
    assert_false(hints_message(&order, &small, msg, sizeof(msg)));
    assert_false(hints_message(&param, &small, msg, sizeof(msg)));
    assert_false(hints_message(&shallow, &small, msg, sizeof(msg)));
    assert_true(hints_message(&deep, &small, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "OFFSET 5000 makes PostgreSQL read and throw away 5000 rows"));
    table_info_t large = table(3, 8, 250000);
    assert_true(hints_message(&order, &large, msg, sizeof(msg)));
    assert_string_equal(msg, "ORDER BY without LIMIT over public.users (about 250000 rows) "
                             "sorts every row it returns: add a LIMIT, or page by key");
    assert_true(hints_message(&param, &large, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "OFFSET pagination over public.users"));
}

static void test_function_hint_only_for_indexed_columns(void **state)
{
    table_info_t t = table(3, 8, 1000);
    cand_hint_t on_indexed = fact(CAND_HINT_FUNCTION_ON_COLUMN, "email", "substr()", 0);
    cand_hint_t on_plain = fact(CAND_HINT_FUNCTION_ON_COLUMN, "created_at", "::date", 0);
    assert_true(hints_message(&on_indexed, &t, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "substr() around public.users.email keeps index "
                                "users_email_idx from serving the condition"));
    assert_false(hints_message(&on_plain, &t, msg, sizeof(msg)));
    indexes[0].valid = false;
    assert_false(hints_message(&on_indexed, &t, msg, sizeof(msg)));
}

static void test_like_in_lists_and_hidden_keys(void **state)
{
    table_info_t t = table(3, 8, 1000);
    cand_hint_t like = fact(CAND_HINT_LEADING_WILDCARD, "name", "%son", 0);
    assert_true(hints_message(&like, &t, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "LIKE '%son' on public.users.name starts with a wildcard"));
    assert_non_null(strstr(msg, "USING gin (name gin_trgm_ops)"));
    cand_hint_t short_list = fact(CAND_HINT_LARGE_IN_LIST, "id", "", 99);
    cand_hint_t long_list = fact(CAND_HINT_LARGE_IN_LIST, "id", "", 150);
    assert_false(hints_message(&short_list, &t, msg, sizeof(msg)));
    assert_true(hints_message(&long_list, &t, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "IN list of 150 values on public.users.id"));
    cand_hint_t hidden = fact(CAND_HINT_HIDDEN_CONSTANT, "data", "", 0);
    assert_true(hints_message(&hidden, &t, msg, sizeof(msg)));
    assert_non_null(strstr(msg, "public.users.data ->> $n: pg_stat_statements hides the JSON "
                                "key"));
    assert_false(hints_message(&hidden, NULL, msg, sizeof(msg)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_star_only_on_wide_tables),
        cmocka_unit_test(test_order_without_limit_and_offset_on_large_tables),
        cmocka_unit_test(test_function_hint_only_for_indexed_columns),
        cmocka_unit_test(test_like_in_lists_and_hidden_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
