/*
 * partbounds.h
 *    The calendar of range partitions: intervals (day, ISO week, month, year), the range of
 *    each, its partition's name and its bound literals. Pure functions, no database.
 *
 * A day is a count of days since 1970-01-01 (proleptic Gregorian), so ranges compare as
 * integers. Bounds are whole days: a timestamptz column's partitions start at midnight UTC.
 */
#ifndef PGTURBO_PARTBOUNDS_H
#define PGTURBO_PARTBOUNDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PARTBOUNDS_NAME_LEN 64 /* NAMEDATALEN */

typedef enum part_interval {
    PART_DAY,   /* <table>_YYYY_MM_DD */
    PART_WEEK,  /* ISO weeks from Monday: <table>_YYYY_wWW, YYYY the ISO week's year */
    PART_MONTH, /* <table>_YYYY_MM */
    PART_YEAR,  /* <table>_YYYY */
} part_interval_t;

/* "day", "week", "month" or "year" into *out; false for anything else. */
bool partbounds_parse_interval(const char *s, part_interval_t *out);
const char *partbounds_interval_name(part_interval_t iv);

/* The day of y-m-d (m 1-12, d 1-31; not checked against the month's length). */
int64_t partbounds_day(int y, int m, int d);
/* The year, month and day of day. */
void partbounds_civil(int64_t day, int *y, int *m, int *d);

/* Parses "YYYY-MM-DD" (anything after the day, such as a time, is ignored) into *day; false
 * when s does not start with a valid date. */
bool partbounds_parse_day(const char *s, int64_t *day);

/* The first day of the interval of kind iv that holds day. */
int64_t partbounds_floor(int64_t day, part_interval_t iv);
/* The first day of the interval n intervals (n may be negative) after the one starting at
 * start (a partbounds_floor() result). */
int64_t partbounds_add(int64_t start, part_interval_t iv, int n);

/*
 * The name of table's partition for the interval starting at start: table + "_" + suffix,
 * the table's part cut (at a UTF-8 character boundary) so that the whole fits in 63 bytes.
 */
void partbounds_name(const char *table, int64_t start, part_interval_t iv,
                     char out[PARTBOUNDS_NAME_LEN]);

/* table + suffix, the table's part cut (at a UTF-8 character boundary) so that the whole fits
 * in 63 bytes: the name of a partition, or of a table made beside table. */
void partbounds_cut_name(const char *table, const char *suffix, char out[PARTBOUNDS_NAME_LEN]);

/* day as a bound literal's text: "2025-11-01", or "2025-11-01 00:00:00+00" with_tz. */
void partbounds_literal(int64_t day, bool with_tz, char *out, size_t len);

#endif /* PGTURBO_PARTBOUNDS_H */
