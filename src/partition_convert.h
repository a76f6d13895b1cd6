/*
 * partition_convert.h
 *    pgturbo partition convert: a plain table turned into a range-partitioned one while the
 *    application keeps reading and writing it, the old table kept as <table>_old.
 *
 * The steps: a partitioned copy <table>_pgturbo_new is made with the table's columns,
 * defaults, checks and indexes (unique ones with the partition key added, as PostgreSQL
 * requires), and a trigger starts recording the primary keys of the rows written from then on
 * into <table>_pgturbo_changes. The rows of the kept range are copied in batches of block
 * ranges (TID range scans, no index needed), then, in one short transaction that blocks
 * writes (reads go on): the recorded rows are copied again, the row counts compared, the
 * trigger dropped, the tables renamed, the indexes given their names back and the sequences
 * handed to the new table. Until that transaction commits the table is untouched; a convert
 * interrupted before it leaves a copy that the next run drops before it starts again.
 */
#ifndef PGTURBO_PARTITION_CONVERT_H
#define PGTURBO_PARTITION_CONVERT_H

#include "partition.h"

#define CONVERT_DEFAULT_BATCH 10000

typedef struct convert_options {
    const char *table;        /* as the user wrote it; borrowed */
    part_settings_t settings; /* the partitioning, recorded in pgturbo.partition_config */
    int keep;                 /* intervals of rows copied before the current one; -1 = all */
    int batch;                /* rows per copy step, about */
    bool dry_run;             /* print the statements instead */
} convert_options_t;

/*
 * Converts o->table, printing progress (and under dry_run the statements) to out. Returns
 * PARTITION_OK; PARTITION_FAIL_REFUSED when the table cannot be converted as it is (already
 * partitioned, no primary key, referenced by a foreign key, <table>_old taken ...) with the
 * reason in err and nothing changed; PARTITION_FAIL_DB when a statement failed (the table is
 * then as before, and a copy may be left for the next run to drop).
 */
__attribute__((warn_unused_result)) partition_status_t
partition_convert(PGconn *conn, const convert_options_t *o, FILE *out, char *err, size_t errlen);

#endif /* PGTURBO_PARTITION_CONVERT_H */
