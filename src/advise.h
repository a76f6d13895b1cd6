/*
 * advise.h
 *    `pgturbo advise`: index advice proven with the planner, from a database's real workload.
 *
 * One run: the workload (workload.h) -> index candidates from each query's parse tree
 * (candidates.h) -> those not already served by an existing index -> each proven or refuted
 * with the planner (proof.h: HypoPG, or a real index on a sampled copy of the table) -> a
 * greedy choice charged for index size and the table's write rate -> the advice as a table or
 * JSON, migration files, and optionally their application (migrations.h). Queries that no
 * index fixes get hints instead.
 */
#ifndef PGTURBO_ADVISE_H
#define PGTURBO_ADVISE_H

#include <stdbool.h>

/* The exit codes of `pgturbo advise`, documented in the README and the usage text. */
typedef enum advise_status {
    ADVISE_OK = 0,             /* advice given (or nothing to advise), applied, rolled back */
    ADVISE_FAIL_DB = 1,        /* the database is unreachable, or a query of advise failed */
    ADVISE_FAIL_USAGE = 2,     /* a bad command line, or a source that is not available */
    ADVISE_FAIL_EXTENSION = 3, /* HypoPG or pg_stat_statements missing, or the privileges to
                                  use them */
    ADVISE_FAIL_MIGRATION = 4, /* a migration refused (checksum mismatch, unknown version) or
                                  failed (lock timeout, invalid index dropped) */
} advise_status_t;

typedef enum advise_source {
    ADVISE_SOURCE_PG_STAT_STATEMENTS, /* the extension's view in the target database */
    ADVISE_SOURCE_DAEMON,             /* the daemon's statistics and samples (admin API) */
} advise_source_t;

#define ADVISE_DEFAULT_MIN_IMPROVEMENT 50

typedef struct advise_options {
    advise_source_t source;
    bool json;                    /* JSON on stdout instead of the table */
    int min_improvement;          /* percent (1-100) by which an index must cut the cost of
                                     at least one frequent query */
    const char *migrations_dir;   /* write migration pairs here (NULL: none) */
    bool apply;                   /* run the up migrations */
    const char *rollback_version; /* run this version's down migration, and nothing else */
    const char *conninfo;         /* libpq connection string or URI */
    const char *api;              /* --source daemon: the admin API's host:port */
    const char *token;            /* --source daemon: its admin_token */
} advise_options_t;

/* Runs advise with opts (borrowed). Prints the advice on stdout and problems on stderr.
 * Returns the exit code. */
advise_status_t advise_run(const advise_options_t *opts);

#endif /* PGTURBO_ADVISE_H */
