/*
 * partbounds.c
 *    The calendar of range partitions; see partbounds.h.
 *
 * Days and dates convert with the era arithmetic of the proleptic Gregorian calendar: a
 * 400-year era has 146097 days, and counting years from March puts the leap day last, so a
 * day of the year follows from the month by one linear formula.
 */
#include "partbounds.h"

#include <stdio.h>
#include <string.h>

#define DAYS_PER_ERA    146097
#define DAY_OF_1970     719468 /* days from 0000-03-01 to 1970-01-01 */
#define THURSDAY_OFFSET 3      /* 1970-01-01 was a Thursday: (day + 3) % 7 is 0 on Mondays */

static const char *const interval_names[] = {"day", "week", "month", "year"};

bool partbounds_parse_interval(const char *s, part_interval_t *out)
{
    for (int i = 0; i <= PART_YEAR; i++)
        if (strcmp(s, interval_names[i]) == 0) {
            *out = (part_interval_t)i;
            return true;
        }
    return false;
}

const char *partbounds_interval_name(part_interval_t iv)
{
    return interval_names[iv];
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

int64_t partbounds_day(int y, int m, int d)
{
    int64_t year = y - (m <= 2);
    int64_t era = floor_div(year, 400);
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * DAYS_PER_ERA + day_of_era - DAY_OF_1970;
}

void partbounds_civil(int64_t day, int *y, int *m, int *d)
{
    int64_t z = day + DAY_OF_1970;
    int64_t era = floor_div(z, DAYS_PER_ERA);
    int64_t day_of_era = z - era * DAYS_PER_ERA;
    int64_t year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    int64_t month_from_march = (5 * day_of_year + 2) / 153;
    *d = (int)(day_of_year - (153 * month_from_march + 2) / 5 + 1);
    *m = (int)(month_from_march < 10 ? month_from_march + 3 : month_from_march - 9);
    *y = (int)(year_of_era + era * 400 + (*m <= 2));
}

static int month_length(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

bool partbounds_parse_day(const char *s, int64_t *day)
{
    int y, m, d, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 || y < 1 || m < 1 || m > 12 ||
        d < 1 || d > month_length(y, m))
        return false;
    *day = partbounds_day(y, m, d);
    return true;
}

static int64_t monday_of(int64_t day)
{
    return day - (((day + THURSDAY_OFFSET) % 7 + 7) % 7);
}

int64_t partbounds_floor(int64_t day, part_interval_t iv)
{
    int y, m, d;
    partbounds_civil(day, &y, &m, &d);
    switch (iv) {
    case PART_DAY:
        return day;
    case PART_WEEK:
        return monday_of(day);
    case PART_MONTH:
        return partbounds_day(y, m, 1);
    case PART_YEAR:
        return partbounds_day(y, 1, 1);
    }
    return day;
}

int64_t partbounds_add(int64_t start, part_interval_t iv, int n)
{
    int y, m, d;
    partbounds_civil(start, &y, &m, &d);
    switch (iv) {
    case PART_DAY:
        return start + n;
    case PART_WEEK:
        return start + 7 * (int64_t)n;
    case PART_MONTH: {
        int64_t months = (int64_t)y * 12 + (m - 1) + n;
        return partbounds_day((int)floor_div(months, 12),
                              (int)(months - floor_div(months, 12) * 12) + 1, 1);
    }
    case PART_YEAR:
        return partbounds_day(y + n, 1, 1);
    }
    return start;
}

/* The ISO year and week of the week starting on Monday monday. */
static void iso_week(int64_t monday, int *year, int *week)
{
    int m, d;
    partbounds_civil(monday + 3, year, &m, &d); /* the week's Thursday names its year */
    *week = (int)((monday + 3 - partbounds_day(*year, 1, 1)) / 7 + 1);
}

static void suffix_of(int64_t start, part_interval_t iv, char *out, size_t len)
{
    int y, m, d;
    partbounds_civil(start, &y, &m, &d);
    switch (iv) {
    case PART_DAY:
        snprintf(out, len, "_%04d_%02d_%02d", y, m, d);
        break;
    case PART_WEEK: {
        int week;
        iso_week(start, &y, &week);
        snprintf(out, len, "_%04d_w%02d", y, week);
        break;
    }
    case PART_MONTH:
        snprintf(out, len, "_%04d_%02d", y, m);
        break;
    case PART_YEAR:
        snprintf(out, len, "_%04d", y);
        break;
    }
}

void partbounds_cut_name(const char *table, const char *suffix, char out[PARTBOUNDS_NAME_LEN])
{
    size_t room = PARTBOUNDS_NAME_LEN - 1 - strlen(suffix);
    size_t n = strlen(table);
    if (n > room) {
        n = room;
        while (n > 0 && ((unsigned char)table[n] & 0xC0) == 0x80)
            n--; /* not inside a UTF-8 character */
    }
    snprintf(out, PARTBOUNDS_NAME_LEN, "%.*s%s", (int)n, table, suffix);
}

void partbounds_name(const char *table, int64_t start, part_interval_t iv,
                     char out[PARTBOUNDS_NAME_LEN])
{
    char suffix[32];
    suffix_of(start, iv, suffix, sizeof(suffix));
    partbounds_cut_name(table, suffix, out);
}

void partbounds_literal(int64_t day, bool with_tz, char *out, size_t len)
{
    int y, m, d;
    partbounds_civil(day, &y, &m, &d);
    snprintf(out, len, with_tz ? "%04d-%02d-%02d 00:00:00+00" : "%04d-%02d-%02d", y, m, d);
}
