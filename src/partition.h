/*
 * partition.h
 *    pgturbo partition: range partitions by time of a PostgreSQL table, made ahead, filled
 *    from the default partition, and retired after a retention, with their settings kept in
 *    the database (pgturbo.partition_config) so that maintain, from the command line or the
 *    daemon's scheduler, needs only a connection.
 *
 * Every statement that changes the database goes through part_exec_sql() (partsql.h), which
 * prints it instead under --dry-run. Every name in generated SQL is quoted with
 * PQescapeIdentifier and every literal with PQescapeLiteral.
 */
#ifndef PGTURBO_PARTITION_H
#define PGTURBO_PARTITION_H

#include "partbounds.h"
#include "partsql.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes of the partition commands. */
typedef enum partition_status {
    PARTITION_OK = 0,
    PARTITION_FAIL_DB = 1,      /* unreachable, no privilege, or a statement failed */
    PARTITION_FAIL_USAGE = 2,   /* a bad command line */
    PARTITION_FAIL_REFUSED = 3, /* the table cannot be done as asked: nothing was changed */
} partition_status_t;

typedef enum part_retention {
    PART_RETENTION_DROP,   /* retired partitions are dropped */
    PART_RETENTION_DETACH, /* ... detached and kept as tables (in archive_schema when set) */
} part_retention_t;

/* How one table is partitioned and kept. */
typedef struct part_settings {
    char column[PARTBOUNDS_NAME_LEN]; /* the partition key: date, timestamp or timestamptz */
    part_interval_t interval;
    int premake; /* future partitions kept made beyond the current one (default 4) */
    int retain;  /* past partitions kept before the current one; -1 = keep all (default) */
    part_retention_t retention;
    char archive_schema[PARTBOUNDS_NAME_LEN]; /* detach: where retired partitions go; "" = stay */
    bool default_partition;                   /* keep a DEFAULT partition for stray rows */
} part_settings_t;

#define PART_DEFAULT_PREMAKE 4

/* A table as partition sees it. */
typedef struct part_table {
    unsigned oid;
    char schema[PARTBOUNDS_NAME_LEN];
    char name[PARTBOUNDS_NAME_LEN];
    char relkind;                          /* 'r' plain, 'p' partitioned */
    char stem[PARTBOUNDS_NAME_LEN];        /* partitions are <stem>_<suffix>: the name */
    char column_type[PARTBOUNDS_NAME_LEN]; /* format_type() of the key column */
    bool with_tz;                          /* timestamptz: bounds at midnight UTC */
} part_table_t;

/*
 * Finds table (as a user writes it: "name" or "schema.name", resolved with the session's
 * search_path) and checks that column is its date, timestamp or timestamptz column (column
 * NULL: no check; column_type is then ""). Sets up the session (UTC, lock timeout). Returns
 * PARTITION_OK, PARTITION_FAIL_REFUSED (no such table, no such column, a column of another
 * type; the reason in err) or PARTITION_FAIL_DB.
 */
__attribute__((warn_unused_result)) partition_status_t
partition_resolve(PGconn *conn, const char *table, const char *column, part_table_t *out, char *err,
                  size_t errlen);

/* The first day of the current interval, from the server's clock in UTC; -1 on failure. */
int64_t partition_today(PGconn *conn, part_interval_t iv, char *err, size_t errlen);

/*
 * Makes the missing partitions of parent (partitioned by range on s->column) for every
 * interval from the one starting at first to the one starting at last (both
 * partbounds_floor() days), moving into each new partition the rows of its range that sit in
 * the default partition (so they never block it). An interval that an existing partition
 * covers exactly is skipped; one that an existing partition overlaps otherwise is refused
 * (err names both). *made counts the partitions made. Returns PARTITION_OK, _REFUSED or
 * _FAIL_DB.
 */
__attribute__((warn_unused_result)) partition_status_t
partition_make(part_exec_t *x, const part_table_t *parent, const part_settings_t *s, int64_t first,
               int64_t last, int *made, char *err, size_t errlen);

/* Makes parent's DEFAULT partition (<name>_default) unless it has one. */
__attribute__((warn_unused_result)) partition_status_t
partition_make_default(part_exec_t *x, const part_table_t *parent, char *err, size_t errlen);

#define PARTITION_FROM_TODAY INT64_MIN

/*
 * pgturbo partition create: table must be partitioned by RANGE (s->column). Makes, in one
 * transaction, the default partition when asked, a partition for the rows already in the
 * default one, one for every interval from the one holding day from (PARTITION_FROM_TODAY:
 * the current one) to s->premake intervals after the current one, and records s in
 * pgturbo.partition_config. Prints what it does (and under dry_run the statements) to out.
 */
__attribute__((warn_unused_result)) partition_status_t
partition_create(PGconn *conn, const char *table, const part_settings_t *s, int64_t from,
                 bool dry_run, FILE *out, char *err, size_t errlen);

/* Prints the partitions of table (NULL: of every table pgturbo.partition_config has) with
 * their ranges, row estimates and sizes. */
__attribute__((warn_unused_result)) partition_status_t
partition_list(PGconn *conn, const char *table, FILE *out, char *err, size_t errlen);

/* Records (or replaces) the settings of parent in pgturbo.partition_config, creating the
 * schema and the table when missing. */
__attribute__((warn_unused_result)) partition_status_t
partition_config_save(part_exec_t *x, const part_table_t *parent, const part_settings_t *s,
                      char *err, size_t errlen);

/*
 * Maintains the tables named (as users write them), or every table of
 * pgturbo.partition_config when n_tables is 0: makes the current and the premake future
 * partitions, moves the rows that sit in the default partition into partitions of their own,
 * and retires the partitions older than the retention as the settings say. Idempotent: a
 * second run does nothing. Writes one line per action to out. Returns PARTITION_OK when every
 * table was maintained, else the worst status, with the first problem in err.
 */
__attribute__((warn_unused_result)) partition_status_t partition_maintain(PGconn *conn,
                                                                          const char *const *tables,
                                                                          int n_tables, FILE *out,
                                                                          char *err, size_t errlen);

#endif /* PGTURBO_PARTITION_H */
