/*
 * test_partbounds.c
 *    Unit tests of partbounds: days and dates both ways over four centuries (leap days, the
 *    century rule, before 1970), interval floors and steps across month ends and year ends,
 *    ISO week names at the turn of the year, names cut to 63 bytes on a character boundary,
 *    bound literals, and strict parsing of dates and interval words.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "partbounds.h"

#include <string.h>

static int64_t day(const char *s)
{
    int64_t d;
    assert_true(partbounds_parse_day(s, &d));
    return d;
}

static void test_days_and_dates_round_trip(void **state)
{
    assert_int_equal(partbounds_day(1970, 1, 1), 0);
    assert_int_equal(partbounds_day(1969, 12, 31), -1);
    assert_int_equal(partbounds_day(2000, 3, 1) - partbounds_day(2000, 2, 28), 2);
    assert_int_equal(partbounds_day(1900, 3, 1) - partbounds_day(1900, 2, 28), 1);
    assert_int_equal(partbounds_day(2026, 11, 25), 20782); /* date +%s / 86400 */
    int64_t prev = partbounds_day(1800, 1, 1) - 1;
    for (int64_t d = partbounds_day(1800, 1, 1); d < partbounds_day(2200, 1, 1); d++) {
        int y, m, dd;
        partbounds_civil(d, &y, &m, &dd);
        assert_int_equal(partbounds_day(y, m, dd), d);
        assert_int_equal(d, prev + 1);
        prev = d;
    }
}

static void test_parse_day_is_strict(void **state)
{
    assert_int_equal(day("2024-02-29"), partbounds_day(2024, 2, 29));
    assert_int_equal(day("2025-11-01 00:00:00+00"), partbounds_day(2025, 11, 1));
    int64_t d;
    assert_false(partbounds_parse_day("2025-02-29", &d));
    assert_false(partbounds_parse_day("2025-13-01", &d));
    assert_false(partbounds_parse_day("2025-1-01", &d));
    assert_false(partbounds_parse_day("today", &d));
    assert_false(partbounds_parse_day("", &d));
}

static void test_interval_words(void **state)
{
    part_interval_t iv;
    assert_true(partbounds_parse_interval("week", &iv));
    assert_int_equal(iv, PART_WEEK);
    assert_string_equal(partbounds_interval_name(PART_MONTH), "month");
    assert_false(partbounds_parse_interval("Month", &iv));
    assert_false(partbounds_parse_interval("quarter", &iv));
}

static void test_floor_and_add(void **state)
{
    assert_int_equal(partbounds_floor(day("2025-11-24"), PART_MONTH), day("2025-11-01"));
    assert_int_equal(partbounds_floor(day("2025-11-24"), PART_YEAR), day("2025-01-01"));
    assert_int_equal(partbounds_floor(day("2025-11-24"), PART_DAY), day("2025-11-24"));
    /* 2025-11-24 is a Monday; 2025-11-30 a Sunday; 1970-01-01 a Thursday. */
    assert_int_equal(partbounds_floor(day("2025-11-24"), PART_WEEK), day("2025-11-24"));
    assert_int_equal(partbounds_floor(day("2025-11-30"), PART_WEEK), day("2025-11-24"));
    assert_int_equal(partbounds_floor(0, PART_WEEK), day("1969-12-29"));
    assert_int_equal(partbounds_add(day("2025-11-01"), PART_MONTH, 2), day("2026-01-01"));
    assert_int_equal(partbounds_add(day("2025-01-01"), PART_MONTH, -1), day("2024-12-01"));
    assert_int_equal(partbounds_add(day("2025-03-01"), PART_MONTH, -14), day("2024-01-01"));
    assert_int_equal(partbounds_add(day("2024-02-28"), PART_DAY, 1), day("2024-02-29"));
    assert_int_equal(partbounds_add(day("2025-12-29"), PART_WEEK, 1), day("2026-01-05"));
    assert_int_equal(partbounds_add(day("2025-01-01"), PART_YEAR, -30), day("1995-01-01"));
}

static void assert_name(const char *table, const char *date, part_interval_t iv,
                        const char *want)
{
    char name[PARTBOUNDS_NAME_LEN];
    partbounds_name(table, partbounds_floor(day(date), iv), iv, name);
    assert_string_equal(name, want);
}

static void test_names(void **state)
{
    assert_name("activity_logs", "2025-11-24", PART_MONTH, "activity_logs_2025_11");
    assert_name("activity_logs", "2025-11-24", PART_DAY, "activity_logs_2025_11_24");
    assert_name("activity_logs", "2025-11-24", PART_YEAR, "activity_logs_2025");
    assert_name("Events", "2025-11-24", PART_WEEK, "Events_2025_w48");
    /* ISO weeks: 2024-12-30 starts week 1 of 2025; 2021-01-03 is in week 53 of 2020. */
    assert_name("t", "2024-12-31", PART_WEEK, "t_2025_w01");
    assert_name("t", "2021-01-03", PART_WEEK, "t_2020_w53");
    char long_name[80];
    memset(long_name, 'x', 60);
    strcpy(long_name + 60, "\xc3\xa9tail"); /* an é across the cut */
    char name[PARTBOUNDS_NAME_LEN];
    partbounds_name(long_name, day("2025-11-01"), PART_MONTH, name);
    assert_int_equal(strlen(name), 63);
    partbounds_name(long_name + 6, day("2025-11-01"), PART_MONTH, name);
    assert_int_equal(strlen(name), 63 - 1); /* the é did not fit whole */
    assert_string_equal(name + 54, "_2025_11");
}

static void test_literals(void **state)
{
    char lit[32];
    partbounds_literal(day("2025-11-01"), false, lit, sizeof(lit));
    assert_string_equal(lit, "2025-11-01");
    partbounds_literal(day("2025-11-01"), true, lit, sizeof(lit));
    assert_string_equal(lit, "2025-11-01 00:00:00+00");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days_and_dates_round_trip),
        cmocka_unit_test(test_parse_day_is_strict),
        cmocka_unit_test(test_interval_words),
        cmocka_unit_test(test_floor_and_add),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_literals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
