/*
 * migrations.h
 *    Migration pairs for advised indexes: written as files, applied, rolled back, and
 *    recorded in the table pgturbo.migrations (version, name, checksum, sql, down_sql,
 *    applied_at) of the target database.
 *
 * A migration is one index: <version>_<index name>.up.sql holds CREATE INDEX CONCURRENTLY
 * IF NOT EXISTS, <version>_<index name>.down.sql DROP INDEX CONCURRENTLY IF EXISTS, every
 * identifier quoted with libpq's PQescapeIdentifier. A version is the UTC time it was
 * written (YYYYMMDDHHMMSS) and two digits of sequence: sixteen digits that sort in the order
 * of writing. A directory keeps one migration per index name, so running advise again does
 * not write the same index twice.
 *
 * Applying runs the up SQL with lock_timeout (a build never queues behind a long lock while
 * blocking others), then checks pg_index.indisvalid: a concurrent build that failed leaves an
 * invalid index behind, which is dropped, and the migration fails. The checksum (SHA-256 of
 * the up file) is recorded; a file whose version is applied but whose content changed since
 * is refused, before anything is applied.
 */
#ifndef PGTURBO_MIGRATIONS_H
#define PGTURBO_MIGRATIONS_H

#include "advice.h"
#include "advise.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define MIGRATION_VERSION_LEN  17 /* 16 digits and the NUL */
#define MIGRATION_LOCK_TIMEOUT "5s"

/*
 * Writes a pair of files into dir (created if missing) for each advice of s that dir has no
 * migration for yet, and gives in versions[i] the version of the migration of s->advice[i],
 * new or found. Versions already in dir or applied in the database (conn) are never reused.
 * Tells what it wrote on out. Returns ADVISE_OK, or ADVISE_FAIL_MIGRATION (message in err).
 */
__attribute__((warn_unused_result)) advise_status_t
migrations_write(PGconn *conn, const char *dir, const advice_set_t *s,
                 char (*versions)[MIGRATION_VERSION_LEN], FILE *out, char *err, size_t errlen);

/*
 * Applies every migration of dir not applied yet, in version order, after checking that the
 * applied ones are unchanged. Tells what it does on out. Returns ADVISE_OK,
 * ADVISE_FAIL_MIGRATION (a changed file, a failed or invalid build: message in err), or
 * ADVISE_FAIL_DB.
 */
__attribute__((warn_unused_result)) advise_status_t
migrations_apply_dir(PGconn *conn, const char *dir, FILE *out, char *err, size_t errlen);

/* Applies the advice of s directly (no files), each under a new version. As
 * migrations_apply_dir(). */
__attribute__((warn_unused_result)) advise_status_t
migrations_apply_advice(PGconn *conn, const advice_set_t *s, FILE *out, char *err, size_t errlen);

/*
 * Runs the down migration of applied version: from dir when given (after checking that its
 * up file is the one applied), else as recorded, and forgets the version. Returns ADVISE_OK,
 * ADVISE_FAIL_MIGRATION (not applied, changed file, failed drop) or ADVISE_FAIL_DB.
 */
__attribute__((warn_unused_result)) advise_status_t migrations_rollback(PGconn *conn,
                                                                        const char *version,
                                                                        const char *dir, FILE *out,
                                                                        char *err, size_t errlen);

/* The SHA-256 of len bytes as 64 lower-case hex digits and a NUL. */
void migrations_checksum(const char *data, size_t len, char out[65]);

#endif /* PGTURBO_MIGRATIONS_H */
