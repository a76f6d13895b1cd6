/*
 * test_params.c
 *    Unit tests of params: lookup of tracked names, bounded values, and the exact SQL of the
 *    SET statements that bring a server's session in line with a client's.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "buf.h"
#include "params.h"

#include <string.h>

/* Asserts that sql holds exactly the text expected (sql is not NUL-terminated). */
static void assert_sql(const buf_t *sql, const char *expected)
{
    assert_int_equal(buf_len(sql), strlen(expected));
    if (buf_len(sql) > 0)
        assert_memory_equal(buf_head(sql), expected, strlen(expected));
}

static int teardown_blocks(void **state)
{
    buf_thread_cleanup();
    return 0;
}

static void find_knows_every_tracked_name(void **state)
{
    assert_int_equal(params_find("client_encoding"), PARAM_CLIENT_ENCODING);
    assert_int_equal(params_find("DateStyle"), PARAM_DATESTYLE);
    assert_int_equal(params_find("TimeZone"), PARAM_TIMEZONE);
    assert_int_equal(params_find("IntervalStyle"), PARAM_INTERVALSTYLE);
    assert_int_equal(params_find("standard_conforming_strings"),
                     PARAM_STANDARD_CONFORMING_STRINGS);
    assert_int_equal(params_find("application_name"), PARAM_APPLICATION_NAME);
    assert_int_equal(params_find("extra_float_digits"), PARAM_EXTRA_FLOAT_DIGITS);
}

static void find_ignores_case(void **state)
{
    assert_int_equal(params_find("timezone"), PARAM_TIMEZONE);
    assert_int_equal(params_find("TIMEZONE"), PARAM_TIMEZONE);
    assert_int_equal(params_find("datestyle"), PARAM_DATESTYLE);
    assert_int_equal(params_find("Application_Name"), PARAM_APPLICATION_NAME);
}

static void find_unknown_name_is_minus_one(void **state)
{
    assert_int_equal(params_find("search_path"), -1);
    assert_int_equal(params_find(""), -1);
    assert_int_equal(params_find("timezone "), -1);
    assert_int_equal(params_find("time"), -1);
}

static void name_is_canonical_spelling(void **state)
{
    assert_string_equal(params_name(PARAM_DATESTYLE), "DateStyle");
    assert_string_equal(params_name(PARAM_TIMEZONE), "TimeZone");
    assert_string_equal(params_name(PARAM_CLIENT_ENCODING), "client_encoding");
    for (int i = 0; i < PARAM_COUNT; i++)
        assert_int_equal(params_find(params_name((params_id_t)i)), i);
}

static void set_stores_value_and_marks_it_known(void **state)
{
    params_t p = {0};
    assert_true(params_set(&p, PARAM_TIMEZONE, "UTC"));
    assert_string_equal(p.value[PARAM_TIMEZONE], "UTC");
    assert_int_equal(p.known, 1u << PARAM_TIMEZONE);
    assert_true(params_set(&p, PARAM_TIMEZONE, "Europe/Paris"));
    assert_string_equal(p.value[PARAM_TIMEZONE], "Europe/Paris");
}

static void set_accepts_longest_value_that_fits(void **state)
{
    char value[PARAMS_VALUE_LEN];
    memset(value, 'a', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    params_t p = {0};
    assert_true(params_set(&p, PARAM_APPLICATION_NAME, value));
    assert_string_equal(p.value[PARAM_APPLICATION_NAME], value);
}

static void set_rejects_too_long_value_and_changes_nothing(void **state)
{
    char value[PARAMS_VALUE_LEN + 1];
    memset(value, 'a', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    params_t p = {0};
    assert_false(params_set(&p, PARAM_APPLICATION_NAME, value));
    assert_int_equal(p.known, 0);
    assert_string_equal(p.value[PARAM_APPLICATION_NAME], "");

    assert_true(params_set(&p, PARAM_APPLICATION_NAME, "app"));
    assert_false(params_set(&p, PARAM_APPLICATION_NAME, value));
    assert_int_equal(p.known, 1u << PARAM_APPLICATION_NAME);
    assert_string_equal(p.value[PARAM_APPLICATION_NAME], "app");
}

static void sync_writes_nothing_when_values_are_equal(void **state)
{
    params_t want = {0}, have = {0};
    assert_true(params_set(&want, PARAM_TIMEZONE, "UTC"));
    assert_true(params_set(&want, PARAM_DATESTYLE, "ISO, MDY"));
    assert_true(params_set(&have, PARAM_TIMEZONE, "UTC"));
    assert_true(params_set(&have, PARAM_DATESTYLE, "ISO, MDY"));
    buf_t sql = {0};
    assert_int_equal(params_build_sync(&want, &have, &sql), 0);
    assert_int_equal(buf_len(&sql), 0);
    buf_free(&sql);
}

static void sync_writes_nothing_when_nothing_is_known(void **state)
{
    params_t want = {0}, have = {0};
    buf_t sql = {0};
    assert_int_equal(params_build_sync(&want, &have, &sql), 0);
    assert_int_equal(buf_len(&sql), 0);
    buf_free(&sql);
}

static void sync_sets_only_differing_values(void **state)
{
    params_t want = {0}, have = {0};
    assert_true(params_set(&want, PARAM_TIMEZONE, "UTC"));
    assert_true(params_set(&want, PARAM_DATESTYLE, "ISO, MDY"));
    assert_true(params_set(&have, PARAM_TIMEZONE, "Europe/Paris"));
    assert_true(params_set(&have, PARAM_DATESTYLE, "ISO, MDY"));
    buf_t sql = {0};
    assert_int_equal(params_build_sync(&want, &have, &sql), 1);
    assert_sql(&sql, "SET TimeZone TO E'UTC';");
    buf_free(&sql);
}

static void sync_treats_value_unknown_on_server_as_differing(void **state)
{
    params_t want = {0}, have = {0};
    assert_true(params_set(&want, PARAM_CLIENT_ENCODING, "UTF8"));
    buf_t sql = {0};
    assert_int_equal(params_build_sync(&want, &have, &sql), 1);
    assert_sql(&sql, "SET client_encoding TO E'UTF8';");
    buf_free(&sql);
}

static void sync_treats_unknown_server_value_as_differing_even_if_bytes_match(void **state)
{
    /* have's slot holds the same text, but it was never marked known. */
    params_t want = {0}, have = {0};
    assert_true(params_set(&want, PARAM_TIMEZONE, "UTC"));
    memcpy(have.value[PARAM_TIMEZONE], "UTC", 4);
    buf_t sql = {0};
    assert_int_equal(params_build_sync(&want, &have, &sql), 1);
    assert_sql(&sql, "SET TimeZone TO E'UTC';");
    buf_free(&sql);
}

static void sync_skips_values_the_client_never_had(void **state)
{
    params_t want = {0}, have = {0};
    assert_true(params_set(&have, PARAM_TIMEZONE, "UTC"));
    assert_true(params_set(&have, PARAM_APPLICATION_NAME, "other"));
    buf_t sql = {0};
    assert_int_equal(params_build_sync(&want, &have, &sql), 0);
    assert_int_equal(buf_len(&sql), 0);
    buf_free(&sql);
}

static void sync_writes_several_sets_in_parameter_order(void **state)
{
    params_t want = {0}, have = {0};
    assert_true(params_set(&want, PARAM_EXTRA_FLOAT_DIGITS, "3"));
    assert_true(params_set(&want, PARAM_APPLICATION_NAME, "web"));
    assert_true(params_set(&want, PARAM_CLIENT_ENCODING, "UTF8"));
    assert_true(params_set(&want, PARAM_STANDARD_CONFORMING_STRINGS, "on"));
    assert_true(params_set(&have, PARAM_CLIENT_ENCODING, "LATIN1"));
    assert_true(params_set(&have, PARAM_STANDARD_CONFORMING_STRINGS, "on"));
    assert_true(params_set(&have, PARAM_APPLICATION_NAME, "batch"));
    buf_t sql = {0};
    assert_int_equal(params_build_sync(&want, &have, &sql), 3);
    assert_sql(&sql, "SET client_encoding TO E'UTF8';"
                     "SET application_name TO E'web';"
                     "SET extra_float_digits TO E'3';");
    buf_free(&sql);
}

static void sync_doubles_quotes_and_backslashes(void **state)
{
    params_t want = {0}, have = {0};
    assert_true(params_set(&want, PARAM_APPLICATION_NAME, "it's a \\ test"));
    buf_t sql = {0};
    assert_int_equal(params_build_sync(&want, &have, &sql), 1);
    assert_sql(&sql, "SET application_name TO E'it''s a \\\\ test';");
    buf_free(&sql);
}

static void sync_quotes_value_made_only_of_quotes_and_backslashes(void **state)
{
    params_t want = {0}, have = {0};
    assert_true(params_set(&want, PARAM_APPLICATION_NAME, "'\\'"));
    buf_t sql = {0};
    assert_int_equal(params_build_sync(&want, &have, &sql), 1);
    assert_sql(&sql, "SET application_name TO E'''\\\\''';");
    buf_free(&sql);
}

static void sync_sets_empty_value(void **state)
{
    params_t want = {0}, have = {0};
    assert_true(params_set(&want, PARAM_APPLICATION_NAME, ""));
    assert_true(params_set(&have, PARAM_APPLICATION_NAME, "psql"));
    buf_t sql = {0};
    assert_int_equal(params_build_sync(&want, &have, &sql), 1);
    assert_sql(&sql, "SET application_name TO E'';");
    buf_free(&sql);
}

static void sync_appends_after_existing_text(void **state)
{
    params_t want = {0}, have = {0};
    assert_true(params_set(&want, PARAM_TIMEZONE, "UTC"));
    buf_t sql = {0};
    assert_int_equal(buf_append(&sql, "BEGIN;", 6), 0);
    assert_int_equal(params_build_sync(&want, &have, &sql), 1);
    assert_sql(&sql, "BEGIN;SET TimeZone TO E'UTC';");
    buf_free(&sql);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(find_knows_every_tracked_name),
        cmocka_unit_test(find_ignores_case),
        cmocka_unit_test(find_unknown_name_is_minus_one),
        cmocka_unit_test(name_is_canonical_spelling),
        cmocka_unit_test(set_stores_value_and_marks_it_known),
        cmocka_unit_test(set_accepts_longest_value_that_fits),
        cmocka_unit_test(set_rejects_too_long_value_and_changes_nothing),
        cmocka_unit_test(sync_writes_nothing_when_values_are_equal),
        cmocka_unit_test(sync_writes_nothing_when_nothing_is_known),
        cmocka_unit_test(sync_sets_only_differing_values),
        cmocka_unit_test(sync_treats_value_unknown_on_server_as_differing),
        cmocka_unit_test(sync_treats_unknown_server_value_as_differing_even_if_bytes_match),
        cmocka_unit_test(sync_skips_values_the_client_never_had),
        cmocka_unit_test(sync_writes_several_sets_in_parameter_order),
        cmocka_unit_test(sync_doubles_quotes_and_backslashes),
        cmocka_unit_test(sync_quotes_value_made_only_of_quotes_and_backslashes),
        cmocka_unit_test(sync_sets_empty_value),
        cmocka_unit_test(sync_appends_after_existing_text),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_blocks);
}
