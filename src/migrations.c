/*
 * migrations.c
 *    Migration files for advised indexes, their application and rollback; see migrations.h.
 */
#include "migrations.h"

#include "pqmsg.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* A migration found in a directory. */
typedef struct file_migration {
    char version[MIGRATION_VERSION_LEN];
    char name[CAND_NAME_LEN];
    char *up;   /* the up file's content */
    char *down; /* the down file's content; NULL when the file is missing */
    char up_path[4096];
} file_migration_t;

typedef struct migration_list {
    file_migration_t *items;
    int n;
} migration_list_t;

/* A version recorded in pgturbo.migrations. */
typedef struct applied {
    char version[MIGRATION_VERSION_LEN];
    char checksum[65];
} applied_t;

typedef struct applied_list {
    applied_t *items;
    int n;
} applied_list_t;

void migrations_checksum(const char *data, size_t len, char out[65])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(data, len, digest, &n, EVP_sha256(), NULL) != 1)
        n = 0;
    for (unsigned int i = 0; i < n && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    out[2 * (n < 32 ? n : 32)] = '\0';
}

/* ---- files ---- */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (n + 1 == cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    bool failed = ferror(f);
    fclose(f);
    if (buf == NULL || failed) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Writes a new file (never over an existing one). */
static bool write_new_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "wx");
    if (f == NULL)
        return false;
    bool ok = fputs(content, f) >= 0;
    return fclose(f) == 0 && ok;
}

static void list_free(migration_list_t *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->items[i].up);
        free(l->items[i].down);
    }
    free(l->items);
    memset(l, 0, sizeof(*l));
}

static int compare_files(const void *a, const void *b)
{
    return strcmp(((const file_migration_t *)a)->version, ((const file_migration_t *)b)->version);
}

/* True when name is "<16 digits>_<index name>.up.sql"; gives the version and index name. */
static bool parse_up_name(const char *name, char *version, char *index)
{
    size_t len = strlen(name);
    const char *suffix = ".up.sql";
    size_t slen = strlen(suffix);
    if (len <= MIGRATION_VERSION_LEN + slen || strcmp(name + len - slen, suffix) != 0 ||
        name[MIGRATION_VERSION_LEN - 1] != '_')
        return false;
    for (int i = 0; i < MIGRATION_VERSION_LEN - 1; i++)
        if (name[i] < '0' || name[i] > '9')
            return false;
    size_t index_len = len - slen - MIGRATION_VERSION_LEN;
    if (index_len == 0 || index_len >= CAND_NAME_LEN)
        return false;
    memcpy(version, name, MIGRATION_VERSION_LEN - 1);
    version[MIGRATION_VERSION_LEN - 1] = '\0';
    memcpy(index, name + MIGRATION_VERSION_LEN, index_len);
    index[index_len] = '\0';
    return true;
}

/* The migrations of dir, by version; a missing dir has none. */
static advise_status_t list_dir(const char *dir, migration_list_t *l, char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return ADVISE_OK;
        snprintf(err, errlen, "cannot read %s: %s", dir, strerror(errno));
        return ADVISE_FAIL_MIGRATION;
    }
    struct dirent *e;
    int cap = 0;
    advise_status_t status = ADVISE_OK;
    while ((e = readdir(d)) != NULL) {
        file_migration_t m = {0};
        if (!parse_up_name(e->d_name, m.version, m.name))
            continue;
        if (l->n == cap) {
            cap = cap ? cap * 2 : 16;
            file_migration_t *bigger = realloc(l->items, sizeof(*bigger) * (size_t)cap);
            if (bigger == NULL) {
                snprintf(err, errlen, "out of memory");
                status = ADVISE_FAIL_MIGRATION;
                break;
            }
            l->items = bigger;
        }
        char down_path[4096];
        snprintf(m.up_path, sizeof(m.up_path), "%s/%s", dir, e->d_name);
        snprintf(down_path, sizeof(down_path), "%s/%s_%s.down.sql", dir, m.version, m.name);
        m.up = read_file(m.up_path);
        m.down = read_file(down_path);
        if (m.up == NULL) {
            free(m.down);
            snprintf(err, errlen, "cannot read %s: %s", m.up_path, strerror(errno));
            status = ADVISE_FAIL_MIGRATION;
            break;
        }
        l->items[l->n++] = m;
    }
    closedir(d);
    if (status == ADVISE_OK && l->n > 1)
        qsort(l->items, (size_t)l->n, sizeof(*l->items), compare_files);
    return status;
}

/* ---- the table of applied migrations ---- */

static advise_status_t ensure_table(PGconn *conn, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, "CREATE SCHEMA IF NOT EXISTS pgturbo; "
                                 "CREATE TABLE IF NOT EXISTS pgturbo.migrations ("
                                 "version text PRIMARY KEY, name text NOT NULL, "
                                 "checksum text NOT NULL, sql text NOT NULL, "
                                 "down_sql text NOT NULL, "
                                 "applied_at timestamptz NOT NULL DEFAULT now())");
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        pqmsg_describe(err, errlen, "cannot create pgturbo.migrations", conn);
        return ADVISE_FAIL_DB;
    }
    return ADVISE_OK;
}

/* The applied versions; none when the table does not exist. */
static advise_status_t load_applied(PGconn *conn, applied_list_t *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    PGresult *res = PQexec(conn, "SELECT to_regclass('pgturbo.migrations') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        pqmsg_describe(err, errlen, "cannot look for pgturbo.migrations", conn);
        return ADVISE_FAIL_DB;
    }
    bool exists = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!exists)
        return ADVISE_OK;
    res = PQexec(conn, "SELECT version, checksum FROM pgturbo.migrations ORDER BY version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        pqmsg_describe(err, errlen, "cannot read pgturbo.migrations", conn);
        return ADVISE_FAIL_DB;
    }
    int n = PQntuples(res);
    a->items = calloc(n > 0 ? (size_t)n : 1, sizeof(*a->items));
    if (a->items == NULL) {
        PQclear(res);
        snprintf(err, errlen, "out of memory");
        return ADVISE_FAIL_DB;
    }
    for (int i = 0; i < n; i++) {
        snprintf(a->items[i].version, sizeof(a->items[i].version), "%s", PQgetvalue(res, i, 0));
        snprintf(a->items[i].checksum, sizeof(a->items[i].checksum), "%s", PQgetvalue(res, i, 1));
    }
    a->n = n;
    PQclear(res);
    return ADVISE_OK;
}

static const applied_t *find_applied(const applied_list_t *a, const char *version)
{
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->items[i].version, version) == 0)
            return &a->items[i];
    return NULL;
}

/* ---- versions ---- */

static bool version_taken(const char *v, const migration_list_t *files, const applied_list_t *a,
                          char (*mine)[MIGRATION_VERSION_LEN], int n_mine)
{
    for (int i = 0; i < files->n; i++)
        if (strcmp(files->items[i].version, v) == 0)
            return true;
    for (int i = 0; i < n_mine; i++)
        if (strcmp(mine[i], v) == 0)
            return true;
    return find_applied(a, v) != NULL;
}

/* A new version: now (UTC) and the first sequence number nobody has. */
static void new_version(char out[MIGRATION_VERSION_LEN], const migration_list_t *files,
                        const applied_list_t *a, char (*mine)[MIGRATION_VERSION_LEN], int n_mine)
{
    for (time_t now = time(NULL);; now++) {
        struct tm tm;
        char stamp[16];
        gmtime_r(&now, &tm);
        if (strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm) != 14)
            continue;
        for (int seq = 1; seq < 100; seq++) {
            memcpy(out, stamp, 14);
            out[14] = (char)('0' + seq / 10);
            out[15] = (char)('0' + seq % 10);
            out[16] = '\0';
            if (!version_taken(out, files, a, mine, n_mine))
                return;
        }
    }
}

/* ---- applying ---- */

static bool exec_ok(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    return ok;
}

/* Drops the invalid indexes named name that a failed concurrent build left; tells how many
 * it dropped, or -1 when it cannot look. */
static int drop_invalid(PGconn *conn, const char *name)
{
    const char *params[] = {name};
    PGresult *res = PQexecParams(conn,
                                 "SELECT n.nspname FROM pg_class c "
                                 "JOIN pg_index i ON i.indexrelid = c.oid "
                                 "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE c.relname = $1 AND NOT i.indisvalid",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        return -1;
    }
    int dropped = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *schema = PQgetvalue(res, i, 0);
        char *s = PQescapeIdentifier(conn, schema, strlen(schema));
        char *n = PQescapeIdentifier(conn, name, strlen(name));
        if (s != NULL && n != NULL) {
            char sql[512];
            snprintf(sql, sizeof(sql), "DROP INDEX CONCURRENTLY IF EXISTS %s.%s", s, n);
            dropped += exec_ok(conn, sql);
        }
        PQfreemem(s);
        PQfreemem(n);
    }
    PQclear(res);
    return dropped;
}

/* Runs one up migration and records it. */
static advise_status_t apply_one(PGconn *conn, const char *version, const char *name,
                                 const char *up, const char *down, FILE *out, char *err,
                                 size_t errlen)
{
    if (!exec_ok(conn,
                 "SET statement_timeout = 0; SET lock_timeout = '" MIGRATION_LOCK_TIMEOUT "'")) {
        pqmsg_describe(err, errlen, "cannot set lock_timeout", conn);
        return ADVISE_FAIL_DB;
    }
    PGresult *res = PQexec(conn, up);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        char why[512];
        pqmsg_describe(why, sizeof(why), "failed", conn);
        int dropped = drop_invalid(conn, name);
        snprintf(err, errlen, "migration %s (%s) %s%s", version, name, why,
                 dropped > 0 ? "; the invalid index it left was dropped" : "");
        return PQstatus(conn) == CONNECTION_OK ? ADVISE_FAIL_MIGRATION : ADVISE_FAIL_DB;
    }
    const char *params[] = {name};
    res = PQexecParams(conn,
                       "SELECT bool_and(i.indisvalid), count(*) FROM pg_class c "
                       "JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = $1",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        pqmsg_describe(err, errlen, "cannot check the new index", conn);
        return ADVISE_FAIL_DB;
    }
    bool valid = PQgetvalue(res, 0, 0)[0] == 't';
    bool found = atoi(PQgetvalue(res, 0, 1)) > 0;
    PQclear(res);
    if (!found || !valid) {
        if (!valid)
            drop_invalid(conn, name);
        snprintf(err, errlen, "migration %s (%s): %s", version, name,
                 found ? "the index was built invalid (pg_index.indisvalid); it was dropped"
                       : "no index of that name exists after it ran");
        return ADVISE_FAIL_MIGRATION;
    }
    char checksum[65];
    migrations_checksum(up, strlen(up), checksum);
    const char *row[] = {version, name, checksum, up, down};
    res = PQexecParams(conn,
                       "INSERT INTO pgturbo.migrations (version, name, checksum, sql, down_sql) "
                       "VALUES ($1, $2, $3, $4, $5)",
                       5, NULL, row, NULL, NULL, 0);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        pqmsg_describe(err, errlen, "cannot record the migration", conn);
        return ADVISE_FAIL_DB;
    }
    fprintf(out, "applied %s: index %s built and valid\n", version, name);
    return ADVISE_OK;
}

/* The content of the up and down files of advice a. */
static char *file_content(const advice_t *a, const char *sql, bool up)
{
    char size[32];
    snprintf(size, sizeof(size), "%.0f", a->size_bytes);
    size_t len = strlen(sql) + strlen(a->name) + 2 * CAND_NAME_LEN + 256;
    char *text = malloc(len);
    if (text == NULL)
        return NULL;
    snprintf(text, len,
             "-- pgturbo advise: %s index %s on %s.%s (proof: %s, estimated size %s bytes)\n"
             "%s;\n",
             up ? "create" : "drop", a->name, a->table->schema, a->table->name,
             a->proof == ADVICE_PROOF_SAMPLE ? "sample" : "hypopg", size, sql);
    return text;
}

advise_status_t migrations_write(PGconn *conn, const char *dir, const advice_set_t *s,
                                 char (*versions)[MIGRATION_VERSION_LEN], FILE *out, char *err,
                                 size_t errlen)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return ADVISE_FAIL_MIGRATION;
    }
    migration_list_t files;
    applied_list_t applied;
    advise_status_t status = list_dir(dir, &files, err, errlen);
    if (status != ADVISE_OK)
        return status;
    status = load_applied(conn, &applied, err, errlen);
    if (status != ADVISE_OK) {
        list_free(&files);
        return status;
    }
    for (int i = 0; i < s->n_advice && status == ADVISE_OK; i++) {
        const advice_t *a = &s->advice[i];
        versions[i][0] = '\0';
        for (int f = 0; f < files.n; f++)
            if (strcmp(files.items[f].name, a->name) == 0)
                snprintf(versions[i], MIGRATION_VERSION_LEN, "%s", files.items[f].version);
        if (versions[i][0] != '\0') {
            fprintf(out, "%s/%s_%s.up.sql is there already\n", dir, versions[i], a->name);
            continue;
        }
        new_version(versions[i], &files, &applied, versions, i);
        char up_path[4096], down_path[4096];
        snprintf(up_path, sizeof(up_path), "%s/%s_%s.up.sql", dir, versions[i], a->name);
        snprintf(down_path, sizeof(down_path), "%s/%s_%s.down.sql", dir, versions[i], a->name);
        char *up = file_content(a, a->up_sql, true), *down = file_content(a, a->down_sql, false);
        if (up == NULL || down == NULL || !write_new_file(up_path, up) ||
            !write_new_file(down_path, down)) {
            snprintf(err, errlen, "cannot write %s: %s", up_path,
                     up == NULL || down == NULL ? "out of memory" : strerror(errno));
            status = ADVISE_FAIL_MIGRATION;
        } else {
            fprintf(out, "wrote %s and .down.sql\n", up_path);
        }
        free(up);
        free(down);
    }
    list_free(&files);
    free(applied.items);
    return status;
}

advise_status_t migrations_apply_dir(PGconn *conn, const char *dir, FILE *out, char *err,
                                     size_t errlen)
{
    migration_list_t files;
    applied_list_t applied = {0};
    advise_status_t status = list_dir(dir, &files, err, errlen);
    if (status == ADVISE_OK)
        status = ensure_table(conn, err, errlen);
    if (status == ADVISE_OK)
        status = load_applied(conn, &applied, err, errlen);
    /* Every applied file must be as it was applied, before anything runs. */
    for (int i = 0; i < files.n && status == ADVISE_OK; i++) {
        const file_migration_t *m = &files.items[i];
        const applied_t *a = find_applied(&applied, m->version);
        char checksum[65];
        migrations_checksum(m->up, strlen(m->up), checksum);
        if (a != NULL && strcmp(a->checksum, checksum) != 0) {
            snprintf(err, errlen,
                     "%s changed after version %s was applied (checksum mismatch): restore it, "
                     "or write the change as a new migration; nothing was applied",
                     m->up_path, m->version);
            status = ADVISE_FAIL_MIGRATION;
        } else if (a == NULL && m->down == NULL) {
            snprintf(err, errlen, "%s has no .down.sql; nothing was applied", m->up_path);
            status = ADVISE_FAIL_MIGRATION;
        }
    }
    int done = 0;
    for (int i = 0; i < files.n && status == ADVISE_OK; i++) {
        const file_migration_t *m = &files.items[i];
        if (find_applied(&applied, m->version) != NULL)
            continue;
        status = apply_one(conn, m->version, m->name, m->up, m->down, out, err, errlen);
        done += status == ADVISE_OK;
    }
    if (status == ADVISE_OK && done == 0)
        fprintf(out, "every migration in %s is applied\n", dir);
    list_free(&files);
    free(applied.items);
    return status;
}

advise_status_t migrations_apply_advice(PGconn *conn, const advice_set_t *s, FILE *out, char *err,
                                        size_t errlen)
{
    migration_list_t none = {0};
    applied_list_t applied = {0};
    if (s->n_advice == 0) {
        fprintf(out, "nothing to apply\n");
        return ADVISE_OK;
    }
    advise_status_t status = ensure_table(conn, err, errlen);
    if (status == ADVISE_OK)
        status = load_applied(conn, &applied, err, errlen);
    char(*versions)[MIGRATION_VERSION_LEN] = calloc((size_t)s->n_advice + 1, MIGRATION_VERSION_LEN);
    if (versions == NULL && status == ADVISE_OK) {
        snprintf(err, errlen, "out of memory");
        status = ADVISE_FAIL_DB;
    }
    for (int i = 0; i < s->n_advice && status == ADVISE_OK; i++) {
        const advice_t *a = &s->advice[i];
        new_version(versions[i], &none, &applied, versions, i);
        char *up = file_content(a, a->up_sql, true), *down = file_content(a, a->down_sql, false);
        if (up == NULL || down == NULL) {
            snprintf(err, errlen, "out of memory");
            status = ADVISE_FAIL_DB;
        } else {
            status = apply_one(conn, versions[i], a->name, up, down, out, err, errlen);
        }
        free(up);
        free(down);
    }
    free(versions);
    free(applied.items);
    return status;
}

advise_status_t migrations_rollback(PGconn *conn, const char *version, const char *dir, FILE *out,
                                    char *err, size_t errlen)
{
    applied_list_t applied;
    advise_status_t status = load_applied(conn, &applied, err, errlen);
    if (status != ADVISE_OK)
        return status;
    const applied_t *a = find_applied(&applied, version);
    if (a == NULL) {
        snprintf(err, errlen, "version %s is not applied in database \"%s\"", version, PQdb(conn));
        free(applied.items);
        return ADVISE_FAIL_MIGRATION;
    }
    char *down = NULL;
    char name[CAND_NAME_LEN] = "";
    const char *params[] = {version};
    PGresult *res = PQexecParams(conn,
                                 "SELECT name, down_sql FROM pgturbo.migrations "
                                 "WHERE version = $1",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        PQclear(res);
        free(applied.items);
        pqmsg_describe(err, errlen, "cannot read pgturbo.migrations", conn);
        return ADVISE_FAIL_DB;
    }
    snprintf(name, sizeof(name), "%s", PQgetvalue(res, 0, 0));
    down = strdup(PQgetvalue(res, 0, 1));
    PQclear(res);
    if (dir != NULL) {
        migration_list_t files;
        status = list_dir(dir, &files, err, errlen);
        for (int i = 0; i < files.n && status == ADVISE_OK; i++) {
            const file_migration_t *m = &files.items[i];
            if (strcmp(m->version, version) != 0)
                continue;
            char checksum[65];
            migrations_checksum(m->up, strlen(m->up), checksum);
            if (strcmp(checksum, a->checksum) != 0) {
                snprintf(err, errlen,
                         "%s changed after version %s was applied (checksum mismatch): "
                         "restore it first; nothing was rolled back",
                         m->up_path, version);
                status = ADVISE_FAIL_MIGRATION;
            } else if (m->down != NULL) {
                free(down);
                down = strdup(m->down);
            }
        }
        list_free(&files);
    }
    free(applied.items);
    if (status != ADVISE_OK) {
        free(down);
        return status;
    }
    if (down == NULL) {
        snprintf(err, errlen, "out of memory");
        return ADVISE_FAIL_DB;
    }
    if (!exec_ok(conn,
                 "SET statement_timeout = 0; SET lock_timeout = '" MIGRATION_LOCK_TIMEOUT "'") ||
        !exec_ok(conn, down)) {
        pqmsg_describe(err, errlen, "the down migration failed", conn);
        free(down);
        return PQstatus(conn) == CONNECTION_OK ? ADVISE_FAIL_MIGRATION : ADVISE_FAIL_DB;
    }
    free(down);
    res = PQexecParams(conn, "DELETE FROM pgturbo.migrations WHERE version = $1", 1, NULL, params,
                       NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) {
        pqmsg_describe(err, errlen, "cannot forget the migration", conn);
        return ADVISE_FAIL_DB;
    }
    fprintf(out, "rolled back %s: index %s dropped\n", version, name);
    return ADVISE_OK;
}
