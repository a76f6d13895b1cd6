/*
 * config.c
 *    Loading of pgturbo.ini with libinih: one table of keys per section, strict value parsing,
 *    and "path:line: what is wrong" errors.
 *
 * inih reads the file through read_chunk(), which counts lines so that the entry handler knows
 * the line it is looking at, and which stops on the two kinds of line inih would silently
 * mangle (one longer than its line buffer, one with a NUL byte). The handler stores the first
 * error it meets in the load context and returns 0, which makes inih stop; syntax errors that
 * inih finds on its own arrive only as the line number it returns.
 *
 * [databases] entries may come before the [pgturbo] settings they inherit, so each entry
 * remembers which inheritable fields it set, and the others are filled in once the whole file
 * has been read.
 *
 * A [scheduler] job's connection string goes to libpq's own parser at load time, so that a
 * mistake in it stops the start (or the reload) with its line, rather than failing every run
 * of the job; the parse also gives the dbname that names the job.
 */
#include "config.h"

#include "authfile.h"
#include "hba.h"

#include <errno.h>
#include <ini.h>
#include <libpq-fe.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* inih's line buffer grows up to this size; a line must leave room for '\n' and '\0'. */
#define LINE_BUFFER_SIZE 65536
#define LINE_MAX_BYTES   (LINE_BUFFER_SIZE - 2)

/* Room for one connection-string value: the largest string field of a database entry. */
#define CONNSTR_VALUE_SIZE CONFIG_HOST_LEN

#define DEFAULT_SERVER_HOST "127.0.0.1"
#define DEFAULT_SERVER_PORT 5432

/* The shortest interval of a [scheduler] job: each run opens a connection to PostgreSQL. */
#define MIN_JOB_INTERVAL_MS 1000

/* What SHOW CONFIG shows instead of a secret. */
#define SECRET_MASK "********"

/* How a key's text becomes the value of its field. */
typedef enum value_kind {
    VALUE_INT,       /* an int within the key's bounds */
    VALUE_TIME,      /* seconds, fractions allowed, stored as int64_t milliseconds */
    VALUE_BOOL,      /* 1/0, yes/no, on/off, true/false */
    VALUE_VERBOSE,   /* a bool, or a PgBouncer verbosity level where any level above 0 is true */
    VALUE_POOL_MODE, /* session, transaction or statement */
    VALUE_AUTH_TYPE, /* trust, any, plain, md5, scram-sha-256, cert or hba */
    VALUE_TLS_MODE,  /* disable, allow, prefer, require, verify-ca or verify-full */
    VALUE_STRING,    /* text that must fit the field's buffer with its NUL */
    VALUE_IGNORED,   /* a PgBouncer key pgturbo accepts so that pgbouncer.ini loads, and ignores */
    VALUE_SIZE,      /* bytes: digits with an optional unit B, kB, MB or GB (int64_t) */
    VALUE_INVALIDATION, /* proxy or logical */
} value_kind_t;

/* Bits of the database fields that, when an entry does not set them, come from [pgturbo]. */
enum {
    DB_SET_POOL_SIZE = 1u << 0,
    DB_SET_MIN_POOL_SIZE = 1u << 1,
    DB_SET_RESERVE_POOL_SIZE = 1u << 2,
    DB_SET_MAX_DB_CONNECTIONS = 1u << 3,
    DB_SET_POOL_MODE = 1u << 4,
};

/* One key of a section: where its value goes in the section's struct and what it may be. */
typedef struct setting {
    const char *key;
    size_t offset; /* of the field in config_t or config_database_t */
    size_t size;   /* of the field: the buffer of a VALUE_STRING */
    value_kind_t kind;
    int min; /* VALUE_INT bounds, inclusive */
    int max;
    unsigned set_bit; /* database fields only: the DB_SET_* bit of an inheritable field */
} setting_t;

/* The offset and size of a field, the middle of a setting_t. */
#define FIELD(type, field)   offsetof(type, field), sizeof(((type *)NULL)->field)
#define PGTURBO_FIELD(field) #field, FIELD(config_t, field)
#define DB_FIELD(field)      FIELD(config_database_t, field)

static const setting_t pgturbo_settings[] = {
    {PGTURBO_FIELD(listen_addr), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(listen_port), VALUE_INT, 1, 65535, 0},
    {PGTURBO_FIELD(workers), VALUE_INT, 0, 256, 0},
    {PGTURBO_FIELD(tcp_defer_accept), VALUE_INT, 0, 3600, 0},
    {PGTURBO_FIELD(pool_mode), VALUE_POOL_MODE, 0, 0, 0},
    {PGTURBO_FIELD(default_pool_size), VALUE_INT, 1, INT_MAX, 0},
    {PGTURBO_FIELD(min_pool_size), VALUE_INT, 0, INT_MAX, 0},
    {PGTURBO_FIELD(reserve_pool_size), VALUE_INT, 0, INT_MAX, 0},
    {PGTURBO_FIELD(reserve_pool_timeout), VALUE_TIME, 0, 0, 0},
    {PGTURBO_FIELD(max_client_conn), VALUE_INT, 1, INT_MAX, 0},
    {PGTURBO_FIELD(max_db_connections), VALUE_INT, 0, INT_MAX, 0},
    {PGTURBO_FIELD(max_prepared_statements), VALUE_INT, 0, INT_MAX, 0},
    {PGTURBO_FIELD(server_lifetime), VALUE_TIME, 0, 0, 0},
    {PGTURBO_FIELD(server_idle_timeout), VALUE_TIME, 0, 0, 0},
    {PGTURBO_FIELD(server_connect_timeout), VALUE_TIME, 0, 0, 0},
    {PGTURBO_FIELD(server_check_query), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(server_check_delay), VALUE_TIME, 0, 0, 0},
    {PGTURBO_FIELD(server_reset_query), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(server_reset_query_always), VALUE_BOOL, 0, 0, 0},
    {PGTURBO_FIELD(query_timeout), VALUE_TIME, 0, 0, 0},
    {PGTURBO_FIELD(query_wait_timeout), VALUE_TIME, 0, 0, 0},
    {PGTURBO_FIELD(client_idle_timeout), VALUE_TIME, 0, 0, 0},
    {PGTURBO_FIELD(client_login_timeout), VALUE_TIME, 0, 0, 0},
    {PGTURBO_FIELD(idle_transaction_timeout), VALUE_TIME, 0, 0, 0},
    {PGTURBO_FIELD(shutdown_timeout), VALUE_TIME, 0, 0, 0},
    {PGTURBO_FIELD(max_packet_size), VALUE_INT, 1024, INT_MAX, 0},
    {PGTURBO_FIELD(verbose), VALUE_VERBOSE, 0, 0, 0},
    {PGTURBO_FIELD(query_stats), VALUE_BOOL, 0, 0, 0},
    {PGTURBO_FIELD(slow_query_warn_ms), VALUE_INT, 0, INT_MAX, 0},
    {PGTURBO_FIELD(slow_query_error_ms), VALUE_INT, 0, INT_MAX, 0},
    {PGTURBO_FIELD(log_parameters), VALUE_BOOL, 0, 0, 0},
    {PGTURBO_FIELD(slow_request_warn_ms), VALUE_INT, 0, INT_MAX, 0},
    {PGTURBO_FIELD(slow_request_error_ms), VALUE_INT, 0, INT_MAX, 0},
    {PGTURBO_FIELD(n_plus_one_threshold), VALUE_INT, 2, INT_MAX, 0},
    {PGTURBO_FIELD(stats_max_fingerprints), VALUE_INT, 10, 1000000, 0},
    {PGTURBO_FIELD(slow_log_size), VALUE_INT, 1, 1000000, 0},
    {PGTURBO_FIELD(alert_p95_ms), VALUE_INT, 1, INT_MAX, 0},
    {PGTURBO_FIELD(alert_error_rate), VALUE_INT, 1, 100, 0},
    {PGTURBO_FIELD(alert_waiting_clients), VALUE_INT, 1, INT_MAX, 0},
    {PGTURBO_FIELD(alert_cache_hit_ratio), VALUE_INT, 0, 100, 0},
    {PGTURBO_FIELD(admin_listen), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(admin_token), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(admin_stats_token), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(auth_type), VALUE_AUTH_TYPE, 0, 0, 0},
    {PGTURBO_FIELD(auth_file), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(auth_hba_file), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(auth_query), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(auth_user), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(admin_users), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(stats_users), VALUE_STRING, 0, 0, 0},
    {"client_tls_sslmode", FIELD(config_t, client_tls.sslmode), VALUE_TLS_MODE, 0, 0, 0},
    {"client_tls_cert_file", FIELD(config_t, client_tls.cert_file), VALUE_STRING, 0, 0, 0},
    {"client_tls_key_file", FIELD(config_t, client_tls.key_file), VALUE_STRING, 0, 0, 0},
    {"client_tls_ca_file", FIELD(config_t, client_tls.ca_file), VALUE_STRING, 0, 0, 0},
    {"client_tls_protocols", FIELD(config_t, client_tls.protocols), VALUE_STRING, 0, 0, 0},
    {"client_tls_ciphers", FIELD(config_t, client_tls.ciphers), VALUE_STRING, 0, 0, 0},
    {"server_tls_sslmode", FIELD(config_t, server_tls.sslmode), VALUE_TLS_MODE, 0, 0, 0},
    {"server_tls_cert_file", FIELD(config_t, server_tls.cert_file), VALUE_STRING, 0, 0, 0},
    {"server_tls_key_file", FIELD(config_t, server_tls.key_file), VALUE_STRING, 0, 0, 0},
    {"server_tls_ca_file", FIELD(config_t, server_tls.ca_file), VALUE_STRING, 0, 0, 0},
    {"server_tls_protocols", FIELD(config_t, server_tls.protocols), VALUE_STRING, 0, 0, 0},
    {"server_tls_ciphers", FIELD(config_t, server_tls.ciphers), VALUE_STRING, 0, 0, 0},
    {"logfile", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"pidfile", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"unix_socket_dir", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"ignore_startup_parameters", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"server_round_robin", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"log_connections", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"log_disconnections", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"log_pooler_errors", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"stats_period", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"tcp_keepalive", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"so_reuseport", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"application_name_add_host", 0, 0, VALUE_IGNORED, 0, 0, 0},
    {"track_extra_parameters", 0, 0, VALUE_IGNORED, 0, 0, 0},
};

/* [cache] settings; every other key of [cache] is a rule (add_cache_rule). */
static const setting_t cache_settings[] = {
    {PGTURBO_FIELD(cache_max_memory), VALUE_SIZE, 0, 0, 0},
    {PGTURBO_FIELD(cache_max_entries), VALUE_INT, 1, INT_MAX, 0},
    {PGTURBO_FIELD(cache_max_entry_size), VALUE_SIZE, 0, 0, 0},
    {PGTURBO_FIELD(cache_compress_min), VALUE_SIZE, 0, 0, 0},
    {PGTURBO_FIELD(cache_invalidation), VALUE_INVALIDATION, 0, 0, 0},
    {PGTURBO_FIELD(cache_redis_host), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(cache_redis_port), VALUE_INT, 1, 65535, 0},
    {PGTURBO_FIELD(cache_redis_password), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(cache_redis_db), VALUE_INT, 0, 65535, 0},
    {PGTURBO_FIELD(cache_redis_prefix), VALUE_STRING, 0, 0, 0},
    {PGTURBO_FIELD(cache_redis_lease), VALUE_TIME, 0, 0, 0},
};

/* [scheduler] keys but partition_maintain, which may repeat and is read by add_job(). */
static const setting_t scheduler_settings[] = {
    {PGTURBO_FIELD(run_at_start), VALUE_BOOL, 0, 0, 0},
};

static const setting_t database_settings[] = {
    {"host", DB_FIELD(host), VALUE_STRING, 0, 0, 0},
    {"port", DB_FIELD(port), VALUE_INT, 1, 65535, 0},
    {"dbname", DB_FIELD(dbname), VALUE_STRING, 0, 0, 0},
    {"user", DB_FIELD(user), VALUE_STRING, 0, 0, 0},
    {"password", DB_FIELD(password), VALUE_STRING, 0, 0, 0},
    {"pool_size", DB_FIELD(pool_size), VALUE_INT, 1, INT_MAX, DB_SET_POOL_SIZE},
    {"min_pool_size", DB_FIELD(min_pool_size), VALUE_INT, 0, INT_MAX, DB_SET_MIN_POOL_SIZE},
    {"reserve_pool", DB_FIELD(reserve_pool_size), VALUE_INT, 0, INT_MAX, DB_SET_RESERVE_POOL_SIZE},
    {"reserve_pool_size", DB_FIELD(reserve_pool_size), VALUE_INT, 0, INT_MAX,
     DB_SET_RESERVE_POOL_SIZE},
    {"max_db_connections", DB_FIELD(max_db_connections), VALUE_INT, 0, INT_MAX,
     DB_SET_MAX_DB_CONNECTIONS},
    {"pool_mode", DB_FIELD(pool_mode), VALUE_POOL_MODE, 0, 0, DB_SET_POOL_MODE},
};

/* What config_load() knows about a database entry beyond its config_database_t. */
typedef struct database_extra {
    unsigned set; /* DB_SET_* bits of the inheritable fields the entry gave */
    int line;     /* where the entry is, for the error about a second entry of that name */
} database_extra_t;

/* The state of one config_load(): the config being filled and the first error met. */
typedef struct load_ctx {
    config_t *cfg;
    FILE *file;
    database_extra_t *extra; /* parallel to cfg->databases */
    int db_capacity;         /* of cfg->databases and extra */
    int line;                /* the line read_chunk() last started, counted from 1 */
    size_t line_len;         /* bytes of that line read so far */
    bool at_line_start;      /* the next chunk starts a new line */
    int read_errno;          /* errno of a failed read, kept from before inih's cleanup */
    int error_line;          /* line of the first error; 0 while there is none */
    int auth_file_line;      /* where auth_file was set, for errors about the file it names */
    int hba_file_line;       /* the same for auth_hba_file */
    int client_tls_line;     /* the last client_tls_* key, for errors loading the certificates */
    int server_tls_line;     /* the same for server_tls_* */
    char error[512];         /* that error, without "path:line: " */
} load_ctx_t;

/*
 * Records the message as the error of the current line unless an earlier one is recorded.
 * Returns 0, the value that tells inih an entry failed, so that handlers can return its result.
 */
__attribute__((format(printf, 2, 3))) static int fail(load_ctx_t *ctx, const char *fmt, ...)
{
    va_list ap;

    if (ctx->error_line != 0)
        return 0;
    ctx->error_line = ctx->line;
    va_start(ap, fmt);
    vsnprintf(ctx->error, sizeof(ctx->error), fmt, ap);
    va_end(ap);
    return 0;
}

/* getc() that keeps the errno of a read error for the message about it. */
static int next_char(load_ctx_t *ctx)
{
    int c = getc(ctx->file);

    if (c == EOF && ferror(ctx->file))
        ctx->read_errno = errno;
    return c;
}

/*
 * The ini_reader for inih: like fgets(), plus line counting. It refuses a NUL byte (inih would
 * end the line there and its line numbers would drift from ours) and a line that fills inih's
 * largest buffer (inih would cut it in two and read the rest as a line of its own).
 */
static char *read_chunk(char *buf, int size, void *stream)
{
    load_ctx_t *ctx = stream;
    int n = 0;
    int c = next_char(ctx);

    if (c == EOF)
        return NULL;
    ungetc(c, ctx->file);
    if (ctx->at_line_start) {
        ctx->line++;
        ctx->line_len = 0;
    }
    c = EOF;
    while (n < size - 1 && (c = next_char(ctx)) != EOF) {
        if (c == '\0') {
            fail(ctx, "line contains a NUL byte");
            return NULL;
        }
        buf[n++] = (char)c;
        if (c == '\n')
            break;
    }
    buf[n] = '\0';
    ctx->line_len += (size_t)n;
    ctx->at_line_start = c == '\n';
    if (c != '\n' && c != EOF && ctx->line_len > LINE_MAX_BYTES) {
        fail(ctx, "line is longer than %d bytes", LINE_MAX_BYTES);
        return NULL;
    }
    return buf;
}

/*
 * Parses a decimal integer: an optional '-' and digits, nothing else. A number too large for
 * long long comes back clamped to LLONG_MIN or LLONG_MAX by strtoll(), outside every int bound.
 */
static bool parse_int(const char *text, long long *out)
{
    const char *digits = text[0] == '-' ? text + 1 : text;
    char *end;

    if (digits[0] < '0' || digits[0] > '9')
        return false;
    *out = strtoll(text, &end, 10);
    return *end == '\0';
}

/*
 * Parses the len bytes at text, seconds written as digits with an optional fraction ("15",
 * "0.5", ".25"), into milliseconds, rounding a fraction of a millisecond up so that a small
 * timeout never becomes 0, which means "off" for most of them. Returns 0, -1 for text that is
 * not such a number, or -2 for a number too large to count in int64_t milliseconds.
 */
static int parse_seconds(const char *text, size_t len, int64_t *out_ms)
{
    const int64_t max_seconds = (INT64_MAX - 1000) / 1000;
    const char *end = text + len;
    int64_t seconds = 0;
    int64_t ms = 0;
    int scale = 100; /* what the next fraction digit is worth in milliseconds */
    bool round_up = false;
    size_t digits = 0;
    const char *p = text;

    for (; p < end && *p >= '0' && *p <= '9'; p++, digits++) {
        seconds = seconds * 10 + (*p - '0');
        if (seconds > max_seconds)
            return -2;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++, digits++) {
            if (scale == 0)
                round_up = round_up || *p != '0';
            ms += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (p != end || digits == 0)
        return -1;
    *out_ms = seconds * 1000 + ms + (round_up ? 1 : 0);
    return 0;
}

/*
 * Parses a size: digits and an optional unit (B, kB, MB, GB, as PostgreSQL writes memory
 * settings; case-insensitive, a space allowed before it) into bytes. Returns 0, -1 for text
 * that is not such a size, or -2 for a size too large for int64_t.
 */
static int parse_size(const char *text, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t factor;
    } units[] = {{"", 1}, {"b", 1}, {"kb", 1024}, {"mb", 1024 * 1024}, {"gb", 1024 * 1024 * 1024}};
    const char *p = text;
    int64_t n = 0;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (INT64_MAX - 9) / 10)
            return -2;
        n = n * 10 + (*p - '0');
    }
    while (*p == ' ')
        p++;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(p, units[i].unit) != 0)
            continue;
        if (n > INT64_MAX / units[i].factor)
            return -2;
        *out = n * units[i].factor;
        return 0;
    }
    return -1;
}

static bool parse_bool(const char *text, bool *out)
{
    static const char *const truths[] = {"1", "yes", "on", "true"};
    static const char *const lies[] = {"0", "no", "off", "false"};

    for (size_t i = 0; i < sizeof(truths) / sizeof(truths[0]); i++) {
        if (strcasecmp(text, truths[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(text, lies[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool parse_pool_mode(const char *text, pool_mode_t *out)
{
    static const pool_mode_t modes[] = {POOL_MODE_SESSION, POOL_MODE_TRANSACTION,
                                        POOL_MODE_STATEMENT};

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcasecmp(text, config_pool_mode_name(modes[i])) == 0) {
            *out = modes[i];
            return true;
        }
    }
    return false;
}

static bool parse_auth_type(const char *text, auth_type_t *out)
{
    static const auth_type_t types[] = {AUTH_TYPE_TRUST, AUTH_TYPE_PLAIN, AUTH_TYPE_MD5,
                                        AUTH_TYPE_SCRAM, AUTH_TYPE_CERT,  AUTH_TYPE_HBA};

    if (strcasecmp(text, "any") == 0) { /* PgBouncer's trust that ignores the user name */
        *out = AUTH_TYPE_TRUST;
        return true;
    }
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcasecmp(text, config_auth_type_name(types[i])) == 0) {
            *out = types[i];
            return true;
        }
    }
    return false;
}

static int set_int(load_ctx_t *ctx, const char *prefix, const setting_t *s, const char *value,
                   int *field)
{
    long long n;

    if (!parse_int(value, &n))
        return fail(ctx, "%s%s: expected an integer, got \"%s\"", prefix, s->key, value);
    if (n < s->min || n > s->max) {
        if (s->max == INT_MAX)
            return fail(ctx, "%s%s: must be at least %d, got \"%s\"", prefix, s->key, s->min,
                        value);
        return fail(ctx, "%s%s: must be between %d and %d, got \"%s\"", prefix, s->key, s->min,
                    s->max, value);
    }
    *field = (int)n;
    return 1;
}

static int set_time(load_ctx_t *ctx, const char *prefix, const setting_t *s, const char *value,
                    int64_t *field)
{
    int rc = parse_seconds(value, strlen(value), field);

    if (rc == -2)
        return fail(ctx, "%s%s: too large, got \"%s\"", prefix, s->key, value);
    if (rc != 0)
        return fail(ctx, "%s%s: expected a number of seconds such as 15 or 0.5, got \"%s\"", prefix,
                    s->key, value);
    return 1;
}

static int set_bool(load_ctx_t *ctx, const char *prefix, const setting_t *s, const char *value,
                    bool *field)
{
    if (parse_bool(value, field))
        return 1;
    return fail(ctx, "%s%s: expected a boolean (1/0, yes/no, on/off, true/false), got \"%s\"",
                prefix, s->key, value);
}

/* A verbosity level (PgBouncer's form of the key) or a bool. */
static int set_verbose(load_ctx_t *ctx, const char *prefix, const setting_t *s, const char *value,
                       bool *field)
{
    long long level;

    if (parse_int(value, &level) && level >= 0) {
        *field = level > 0;
        return 1;
    }
    return set_bool(ctx, prefix, s, value, field);
}

static int set_string(load_ctx_t *ctx, const char *prefix, const setting_t *s, const char *value,
                      char *field)
{
    size_t len = strlen(value);

    if (len >= s->size)
        return fail(ctx, "%s%s: value too long (at most %zu bytes)", prefix, s->key, s->size - 1);
    memcpy(field, value, len + 1);
    return 1;
}

/*
 * Stores value in the field of s inside base (a config_t or a config_database_t). prefix starts
 * every error message ("" or `database "name": `). Returns 1, or 0 with the error recorded.
 */
static int set_value(load_ctx_t *ctx, const char *prefix, const setting_t *s, const char *value,
                     void *base)
{
    char *field = (char *)base + s->offset;

    switch (s->kind) {
    case VALUE_INT:
        return set_int(ctx, prefix, s, value, (int *)(void *)field);
    case VALUE_TIME:
        return set_time(ctx, prefix, s, value, (int64_t *)(void *)field);
    case VALUE_BOOL:
        return set_bool(ctx, prefix, s, value, (bool *)field);
    case VALUE_VERBOSE:
        return set_verbose(ctx, prefix, s, value, (bool *)field);
    case VALUE_POOL_MODE:
        if (parse_pool_mode(value, (pool_mode_t *)(void *)field))
            return 1;
        return fail(ctx, "%s%s: expected session, transaction or statement, got \"%s\"", prefix,
                    s->key, value);
    case VALUE_AUTH_TYPE:
        if (parse_auth_type(value, (auth_type_t *)(void *)field))
            return 1;
        return fail(ctx,
                    "%s%s: expected trust, any, plain, md5, scram-sha-256, cert or hba, got "
                    "\"%s\"",
                    prefix, s->key, value);
    case VALUE_TLS_MODE:
        if (tls_mode_parse(value, (tls_mode_t *)(void *)field) == 0)
            return 1;
        return fail(ctx,
                    "%s%s: expected disable, allow, prefer, require, verify-ca or "
                    "verify-full, got \"%s\"",
                    prefix, s->key, value);
    case VALUE_STRING:
        return set_string(ctx, prefix, s, value, field);
    case VALUE_SIZE:
        switch (parse_size(value, (int64_t *)(void *)field)) {
        case 0:
            return 1;
        case -2:
            return fail(ctx, "%s%s: too large, got \"%s\"", prefix, s->key, value);
        default:
            return fail(ctx, "%s%s: expected a size such as 65536, 512kB or 64MB, got \"%s\"",
                        prefix, s->key, value);
        }
    case VALUE_INVALIDATION:
        if (strcmp(value, "proxy") == 0 || strcmp(value, "logical") == 0) {
            *(cache_invalidation_t *)(void *)field =
                value[0] == 'p' ? CACHE_INVALIDATION_PROXY : CACHE_INVALIDATION_LOGICAL;
            return 1;
        }
        return fail(ctx, "%s%s: expected proxy or logical, got \"%s\"", prefix, s->key, value);
    case VALUE_IGNORED:
        break;
    }
    return 1;
}

/* The setting named by the len bytes at key, or NULL. */
static const setting_t *find_setting(const setting_t *table, size_t n, const char *key, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (strncmp(table[i].key, key, len) == 0 && table[i].key[len] == '\0')
            return &table[i];
    }
    return NULL;
}

static int set_pgturbo_key(load_ctx_t *ctx, const char *section, const char *key, const char *value)
{
    size_t n = sizeof(pgturbo_settings) / sizeof(pgturbo_settings[0]);
    const setting_t *s = find_setting(pgturbo_settings, n, key, strlen(key));

    if (s == NULL)
        return fail(ctx, "unknown key \"%s\" in [%s]", key, section);
    if (strcmp(key, "auth_file") == 0)
        ctx->auth_file_line = ctx->line;
    else if (strcmp(key, "auth_hba_file") == 0)
        ctx->hba_file_line = ctx->line;
    else if (strncmp(key, "client_tls_", 11) == 0)
        ctx->client_tls_line = ctx->line;
    else if (strncmp(key, "server_tls_", 11) == 0)
        ctx->server_tls_line = ctx->line;
    return set_value(ctx, "", s, value, ctx->cfg);
}

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/*
 * Copies the connection-string value at *p into buf, unquoting a '...' value and resolving
 * backslash escapes as libpq does, and moves *p past it. Returns 0, -1 for a quote that is not
 * closed, -2 for a value that does not fit buf, or -3 for a closing quote followed by something
 * other than a space.
 */
static int read_connstr_value(const char **p, char *buf, size_t size)
{
    const char *s = *p;
    bool quoted = *s == '\'';
    size_t n = 0;

    if (quoted)
        s++;
    while (*s != '\0' && (quoted ? *s != '\'' : (*s != ' ' && *s != '\t'))) {
        if (*s == '\\' && s[1] != '\0')
            s++;
        if (n + 1 >= size)
            return -2;
        buf[n++] = *s++;
    }
    buf[n] = '\0';
    if (quoted && *s != '\'')
        return -1;
    if (quoted && s[1] != '\0' && s[1] != ' ' && s[1] != '\t')
        return -3;
    *p = quoted ? s + 1 : s;
    return 0;
}

/* Reads one key=value pair of a connection string at *p into db and moves *p past it. */
static int set_connstr_pair(load_ctx_t *ctx, const char *prefix, config_database_t *db,
                            database_extra_t *extra, const char **p)
{
    size_t n = sizeof(database_settings) / sizeof(database_settings[0]);
    const char *key = *p;
    size_t len = strcspn(key, " \t=");
    const setting_t *s = find_setting(database_settings, n, key, len);
    char value[CONNSTR_VALUE_SIZE];
    int rc;

    if (s == NULL)
        return fail(ctx, "%sunknown key \"%.*s\"", prefix, (int)len, key);
    *p = skip_spaces(key + len);
    if (**p != '=')
        return fail(ctx, "%sexpected \"=\" after \"%s\"", prefix, s->key);
    *p = skip_spaces(*p + 1);
    rc = read_connstr_value(p, value, sizeof(value));
    if (rc == -1)
        return fail(ctx, "%s%s: quoted value is not closed", prefix, s->key);
    if (rc == -2)
        return fail(ctx, "%s%s: value too long (at most %zu bytes)", prefix, s->key,
                    (s->kind == VALUE_STRING ? s->size : sizeof(value)) - 1);
    if (rc == -3)
        return fail(ctx, "%s%s: expected a space after the closing quote", prefix, s->key);
    extra->set |= s->set_bit;
    return set_value(ctx, prefix, s, value, db);
}

/* Makes room for one more database entry; returns false when memory runs out. */
static bool grow_databases(load_ctx_t *ctx)
{
    config_t *cfg = ctx->cfg;
    int capacity = ctx->db_capacity == 0 ? 8 : ctx->db_capacity * 2;
    config_database_t *dbs;
    database_extra_t *extra;

    if (cfg->n_databases < ctx->db_capacity)
        return true;
    dbs = realloc(cfg->databases, (size_t)capacity * sizeof(*dbs));
    if (dbs == NULL)
        return false;
    cfg->databases = dbs;
    extra = realloc(ctx->extra, (size_t)capacity * sizeof(*extra));
    if (extra == NULL)
        return false;
    ctx->extra = extra;
    ctx->db_capacity = capacity;
    return true;
}

static int add_database(load_ctx_t *ctx, const char *name, const char *connstr)
{
    config_t *cfg = ctx->cfg;
    char prefix[CONFIG_NAME_LEN + 16];
    config_database_t *db;
    database_extra_t *extra;
    const char *p;

    if (name[0] == '\0')
        return fail(ctx, "database name is empty");
    if (strlen(name) >= CONFIG_NAME_LEN)
        return fail(ctx, "database name \"%s\" is longer than %d bytes", name, CONFIG_NAME_LEN - 1);
    for (int i = 0; i < cfg->n_databases; i++) {
        if (strcmp(cfg->databases[i].name, name) == 0)
            return fail(ctx, "database \"%s\" is defined twice (first on line %d)", name,
                        ctx->extra[i].line);
    }
    if (!grow_databases(ctx))
        return fail(ctx, "out of memory");
    db = &cfg->databases[cfg->n_databases];
    extra = &ctx->extra[cfg->n_databases];
    cfg->n_databases++;
    memset(db, 0, sizeof(*db));
    memcpy(db->name, name, strlen(name) + 1);
    strcpy(db->host, DEFAULT_SERVER_HOST);
    db->port = DEFAULT_SERVER_PORT;
    extra->set = 0;
    extra->line = ctx->line;

    snprintf(prefix, sizeof(prefix), "database \"%s\": ", name);
    for (p = skip_spaces(connstr); *p != '\0'; p = skip_spaces(p)) {
        if (!set_connstr_pair(ctx, prefix, db, extra, &p))
            return 0;
    }
    return 1;
}

/*
 * Checks a job's connection string with libpq's parser and stores it with the dbname it names
 * in job. Returns 1, or 0 with the error recorded.
 */
static int set_job_conninfo(load_ctx_t *ctx, config_job_t *job, const char *conninfo)
{
    char *why = NULL;
    PQconninfoOption *options;
    const char *dbname = NULL;
    int rc;

    if (strlen(conninfo) >= sizeof(job->conninfo))
        return fail(ctx, "partition_maintain: connection string too long (at most %zu bytes)",
                    sizeof(job->conninfo) - 1);
    options = PQconninfoParse(conninfo, &why);
    if (options == NULL) {
        /* libpq's messages end with a newline, and are NULL when memory ran out. */
        rc = why != NULL ? fail(ctx, "partition_maintain: bad connection string: %.*s",
                                (int)strcspn(why, "\n"), why)
                         : fail(ctx, "out of memory");
        PQfreemem(why);
        return rc;
    }
    for (const PQconninfoOption *o = options; o->keyword != NULL; o++)
        if (strcmp(o->keyword, "dbname") == 0)
            dbname = o->val;
    if (dbname == NULL || dbname[0] == '\0') {
        rc = fail(ctx, "partition_maintain: the connection string names no dbname");
    } else if (strlen(dbname) >= sizeof(job->dbname)) {
        rc = fail(ctx, "partition_maintain: dbname \"%s\" is longer than %d bytes", dbname,
                  CONFIG_NAME_LEN - 1);
    } else {
        memcpy(job->dbname, dbname, strlen(dbname) + 1);
        memcpy(job->conninfo, conninfo, strlen(conninfo) + 1);
        rc = 1;
    }
    PQconninfoFree(options);
    return rc;
}

/* "partition_maintain = <seconds> <connection string>": one more job, at most one per dbname. */
static int add_job(load_ctx_t *ctx, const char *value)
{
    config_t *cfg = ctx->cfg;
    size_t n = strcspn(value, " \t");
    const char *conninfo = skip_spaces(value + n);
    config_job_t *jobs;
    config_job_t *job;
    int64_t interval = 0;
    int rc;

    if (cfg->n_jobs == CONFIG_MAX_JOBS)
        return fail(ctx, "partition_maintain: more than %d jobs", CONFIG_MAX_JOBS);
    if (n == 0 || conninfo[0] == '\0')
        return fail(ctx,
                    "partition_maintain: expected \"<seconds> <connection string>\", got \"%s\"",
                    value);
    rc = parse_seconds(value, n, &interval);
    if (rc == -2)
        return fail(ctx, "partition_maintain: too large, got \"%.*s\"", (int)n, value);
    if (rc != 0)
        return fail(ctx,
                    "partition_maintain: expected a number of seconds such as 3600, got \"%.*s\"",
                    (int)n, value);
    if (interval < MIN_JOB_INTERVAL_MS)
        return fail(ctx, "partition_maintain: must be at least %d second, got \"%.*s\"",
                    MIN_JOB_INTERVAL_MS / 1000, (int)n, value);
    jobs = realloc(cfg->jobs, (size_t)(cfg->n_jobs + 1) * sizeof(*jobs));
    if (jobs == NULL)
        return fail(ctx, "out of memory");
    cfg->jobs = jobs;
    job = &jobs[cfg->n_jobs];
    memset(job, 0, sizeof(*job));
    job->interval = interval;
    job->line = ctx->line;
    if (!set_job_conninfo(ctx, job, conninfo))
        return 0;
    for (int i = 0; i < cfg->n_jobs; i++) {
        if (strcmp(jobs[i].dbname, job->dbname) == 0)
            return fail(ctx, "partition_maintain: database \"%s\" has a job already (line %d)",
                        job->dbname, jobs[i].line);
    }
    cfg->n_jobs++;
    return 1;
}

static int set_scheduler_key(load_ctx_t *ctx, const char *key, const char *value)
{
    size_t n = sizeof(scheduler_settings) / sizeof(scheduler_settings[0]);
    const setting_t *s = find_setting(scheduler_settings, n, key, strlen(key));

    if (strcmp(key, "partition_maintain") == 0)
        return add_job(ctx, value);
    if (s == NULL)
        return fail(ctx, "unknown key \"%s\" in [scheduler]", key);
    return set_value(ctx, "", s, value, ctx->cfg);
}

/* Whether s is a name as a rule may write it: not empty, at most NAMEDATALEN - 1 bytes, no
 * dot, no space or control character. */
static bool is_rule_name(const char *s, size_t len)
{
    if (len == 0 || len >= CONFIG_NAME_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '.' || (unsigned char)s[i] <= ' ')
            return false;
    return true;
}

/* A [cache] rule: "table", "schema.table", "schema.*" or "*" = seconds or off. */
static int add_cache_rule(load_ctx_t *ctx, const char *key, const char *value)
{
    config_t *cfg = ctx->cfg;
    const char *dot = strchr(key, '.');
    const char *table = dot != NULL ? dot + 1 : key;
    size_t schema_len = dot != NULL ? (size_t)(dot - key) : 0;
    config_cache_rule_t rule = {.line = ctx->line};
    bool enabled = false;

    if ((dot != NULL && !is_rule_name(key, schema_len)) || !is_rule_name(table, strlen(table)) ||
        (strchr(table, '*') != NULL && strcmp(table, "*") != 0))
        return fail(ctx,
                    "unknown key \"%s\" in [cache]: expected a setting, or a rule named table, "
                    "schema.table, schema.* or *",
                    key);
    if (parse_bool(value, &enabled) && !enabled)
        rule.ttl = 0;
    else if (parse_seconds(value, strlen(value), &rule.ttl) != 0)
        return fail(ctx, "%s: expected a number of seconds such as 60, or off, got \"%s\"", key,
                    value);
    memcpy(rule.schema, key, schema_len);
    snprintf(rule.table, sizeof(rule.table), "%s", table);
    for (int i = 0; i < cfg->n_cache_rules; i++) {
        const config_cache_rule_t *r = &cfg->cache_rules[i];
        if (strcmp(r->schema, rule.schema) == 0 && strcmp(r->table, rule.table) == 0)
            return fail(ctx, "%s: the rule is already given (line %d)", key, r->line);
    }
    if (cfg->n_cache_rules == CONFIG_MAX_RULES)
        return fail(ctx, "%s: more than %d rules", key, CONFIG_MAX_RULES);
    config_cache_rule_t *rules =
        realloc(cfg->cache_rules, (size_t)(cfg->n_cache_rules + 1) * sizeof(*rules));
    if (rules == NULL)
        return fail(ctx, "out of memory");
    cfg->cache_rules = rules;
    rules[cfg->n_cache_rules++] = rule;
    return 1;
}

static int set_cache_key(load_ctx_t *ctx, const char *key, const char *value)
{
    size_t n = sizeof(cache_settings) / sizeof(cache_settings[0]);
    const setting_t *s = find_setting(cache_settings, n, key, strlen(key));

    /* A misspelt setting must not become a rule on a table of that name; a table whose
     * name starts with cache_ is named with its schema (public.cache_items). */
    if (s == NULL && strncmp(key, "cache_", 6) == 0)
        return fail(ctx,
                    "unknown cache setting \"%s\" (a table named so takes its schema: "
                    "public.%s)",
                    key, key);
    if (s == NULL)
        return add_cache_rule(ctx, key, value);
    return set_value(ctx, "", s, value, ctx->cfg);
}

int config_cache_rule_find(const config_t *cfg, const char *schema, const char *table)
{
    int best = -1, best_rank = 0;

    for (int i = 0; i < cfg->n_cache_rules; i++) {
        const config_cache_rule_t *r = &cfg->cache_rules[i];
        bool any_table = strcmp(r->table, "*") == 0;
        int rank;
        if (r->schema[0] != '\0' && (schema == NULL || strcmp(r->schema, schema) != 0))
            continue;
        if (!any_table && strcmp(r->table, table) != 0)
            continue;
        if (r->schema[0] != '\0')
            rank = any_table ? 2 : 4;
        else
            rank = any_table ? 1 : 3;
        if (rank > best_rank) {
            best = i;
            best_rank = rank;
        }
    }
    return best;
}

/* The ini_handler for inih: one "key = value" entry of section. Returns 0 on an error. */
static int handle_entry(void *user, const char *section, const char *key, const char *value)
{
    load_ctx_t *ctx = user;

    if (strcmp(section, "pgturbo") == 0 || strcmp(section, "pgbouncer") == 0)
        return set_pgturbo_key(ctx, section, key, value);
    if (strcmp(section, "databases") == 0)
        return add_database(ctx, key, value);
    if (strcmp(section, "scheduler") == 0)
        return set_scheduler_key(ctx, key, value);
    if (strcmp(section, "cache") == 0)
        return set_cache_key(ctx, key, value);
    if (section[0] == '\0')
        return fail(ctx, "key \"%s\" is not in a section", key);
    return fail(ctx, "unknown section [%s]", section);
}

static void set_defaults(config_t *cfg)
{
    strcpy(cfg->listen_addr, "127.0.0.1");
    cfg->listen_port = 6432;
    cfg->workers = 0;
    cfg->tcp_defer_accept = 45;
    cfg->pool_mode = POOL_MODE_SESSION;
    cfg->default_pool_size = 20;
    cfg->min_pool_size = 0;
    cfg->reserve_pool_size = 0;
    cfg->reserve_pool_timeout = 5000;
    cfg->max_client_conn = 100;
    cfg->max_db_connections = 0;
    cfg->max_prepared_statements = 200;
    cfg->server_lifetime = 3600000;
    cfg->server_idle_timeout = 600000;
    cfg->server_connect_timeout = 15000;
    strcpy(cfg->server_check_query, "select 1");
    cfg->server_check_delay = 30000;
    strcpy(cfg->server_reset_query, "DISCARD ALL");
    cfg->server_reset_query_always = false;
    cfg->query_timeout = 0;
    cfg->query_wait_timeout = 120000;
    cfg->client_idle_timeout = 0;
    cfg->client_login_timeout = 60000;
    cfg->idle_transaction_timeout = 0;
    cfg->shutdown_timeout = 30000;
    cfg->max_packet_size = 2147483647;
    cfg->verbose = false;
    cfg->query_stats = true;
    cfg->slow_query_warn_ms = 100;
    cfg->slow_query_error_ms = 500;
    cfg->slow_request_warn_ms = 200;
    cfg->slow_request_error_ms = 1000;
    cfg->n_plus_one_threshold = 10;
    cfg->stats_max_fingerprints = 5000;
    cfg->slow_log_size = 1000;
    cfg->alert_p95_ms = 100;
    cfg->alert_error_rate = 10;
    cfg->alert_waiting_clients = 1;
    cfg->alert_cache_hit_ratio = 60;
    strcpy(cfg->admin_listen, "127.0.0.1:9930");
    cfg->auth_type = AUTH_TYPE_MD5;
    strcpy(cfg->auth_query, "SELECT usename, passwd FROM pg_shadow WHERE usename=$1");
    cfg->client_tls.sslmode = TLS_DISABLE;
    cfg->server_tls.sslmode = TLS_PREFER;
    cfg->run_at_start = true;
    cfg->cache_max_memory = 64 * 1024 * 1024;
    cfg->cache_max_entries = 100000;
    cfg->cache_max_entry_size = 1024 * 1024;
    cfg->cache_compress_min = 4096;
    cfg->cache_invalidation = CACHE_INVALIDATION_PROXY;
    cfg->cache_redis_port = 6379;
    snprintf(cfg->cache_redis_prefix, sizeof(cfg->cache_redis_prefix), "pgturbo");
    cfg->cache_redis_lease = 500;
}

/* Gives every database entry the [pgturbo] value of each inheritable field it did not set. */
static void inherit_database_defaults(config_t *cfg, const database_extra_t *extra)
{
    for (int i = 0; i < cfg->n_databases; i++) {
        config_database_t *db = &cfg->databases[i];
        unsigned set = extra[i].set;

        if (!(set & DB_SET_POOL_SIZE))
            db->pool_size = cfg->default_pool_size;
        if (!(set & DB_SET_MIN_POOL_SIZE))
            db->min_pool_size = cfg->min_pool_size;
        if (!(set & DB_SET_RESERVE_POOL_SIZE))
            db->reserve_pool_size = cfg->reserve_pool_size;
        if (!(set & DB_SET_MAX_DB_CONNECTIONS))
            db->max_db_connections = cfg->max_db_connections;
        if (!(set & DB_SET_POOL_MODE))
            db->pool_mode = cfg->pool_mode;
    }
}

/*
 * Sets inih's run-time options (this libinih build keeps them in globals) to what pgturbo.ini
 * needs: a line buffer that grows, no continuation lines (an indented line is a mistake, not
 * part of the value above it), no inline comments (';' may be part of a password or a query,
 * and PgBouncer only knows whole-line comments), and a stop at the first error. The values are
 * the same on every call, so loading a config from two threads at once stores the same thing.
 */
static void configure_inih(void)
{
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = LINE_BUFFER_SIZE;
    ini_allow_multiline = false;
    ini_allow_inline_comments = false;
    ini_allow_no_value = false;
    ini_stop_on_first_error = true;
}

/* Reads the open file into ctx->cfg; returns 0, or -1 with the error written into err. */
static int parse_file(load_ctx_t *ctx, char *err, size_t errlen)
{
    const char *path = ctx->cfg->path;
    int rc;

    configure_inih();
    ctx->at_line_start = true;
    rc = ini_parse_stream(read_chunk, ctx, handle_entry, ctx);
    if (ferror(ctx->file)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(ctx->read_errno));
        return -1;
    }
    if (ctx->error_line != 0) {
        snprintf(err, errlen, "%s:%d: %s", path, ctx->error_line, ctx->error);
        return -1;
    }
    if (rc > 0) {
        snprintf(err, errlen, "%s:%d: line is not \"key = value\"", path, rc);
        return -1;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    return 0;
}

static tls_settings_t tls_settings(const config_tls_t *t)
{
    tls_settings_t s = {
        .mode = t->sslmode,
        .cert_file = t->cert_file,
        .key_file = t->key_file,
        .ca_file = t->ca_file,
        .protocols = t->protocols,
        .ciphers = t->ciphers,
    };
    return s;
}

/* "path:line: " of a setting, or "path: " for one left at its default. */
static void where(const config_t *cfg, int line, char *out, size_t len)
{
    if (line > 0)
        snprintf(out, len, "%s:%d: ", cfg->path, line);
    else
        snprintf(out, len, "%s: ", cfg->path);
}

/*
 * Loads what the settings point to: auth_file, auth_hba_file and the TLS certificates, each
 * error naming the line of the setting. Returns 0, or -1 with the error in err.
 */
static int load_files(load_ctx_t *ctx, char *err, size_t errlen)
{
    config_t *cfg = ctx->cfg;
    char at[CONFIG_PATH_LEN + 32];
    char why[512];

    if (cfg->auth_file[0] != '\0' &&
        authfile_load(cfg->auth_file, &cfg->users, why, sizeof(why)) < 0) {
        where(cfg, ctx->auth_file_line, at, sizeof(at));
        snprintf(err, errlen, "%sauth_file: %s", at, why);
        return -1;
    }
    if (cfg->auth_type == AUTH_TYPE_HBA && cfg->auth_hba_file[0] == '\0') {
        snprintf(err, errlen, "%s: auth_type hba needs auth_hba_file", cfg->path);
        return -1;
    }
    if (cfg->auth_hba_file[0] != '\0' &&
        hba_load(cfg->auth_hba_file, &cfg->hba, why, sizeof(why)) < 0) {
        where(cfg, ctx->hba_file_line, at, sizeof(at));
        snprintf(err, errlen, "%sauth_hba_file: %s", at, why);
        return -1;
    }
    tls_settings_t client = tls_settings(&cfg->client_tls);
    if (client.mode != TLS_DISABLE &&
        (cfg->client_ctx = tls_server_context(&client, why, sizeof(why))) == NULL) {
        where(cfg, ctx->client_tls_line, at, sizeof(at));
        snprintf(err, errlen, "%s%s", at, why);
        return -1;
    }
    tls_settings_t server = tls_settings(&cfg->server_tls);
    if (server.mode != TLS_DISABLE &&
        (cfg->server_ctx = tls_client_context(&server, why, sizeof(why))) == NULL) {
        where(cfg, ctx->server_tls_line, at, sizeof(at));
        snprintf(err, errlen, "%s%s", at, why);
        return -1;
    }
    return 0;
}

int config_load(const char *path, config_t **out, char *err, size_t errlen)
{
    load_ctx_t ctx = {0};
    config_t *cfg = NULL;
    int rc = -1;

    *out = NULL;
    if (strlen(path) >= sizeof(cfg->path)) {
        snprintf(err, errlen, "%s: path is too long", path);
        goto fail;
    }
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    set_defaults(cfg);
    strcpy(cfg->path, path);
    ctx.cfg = cfg;
    ctx.file = fopen(path, "r");
    if (ctx.file == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (parse_file(&ctx, err, errlen) != 0)
        goto fail;
    inherit_database_defaults(cfg, ctx.extra);
    if (load_files(&ctx, err, errlen) != 0)
        goto fail;
    *out = cfg;
    cfg = NULL;
    rc = 0;
fail:
    if (ctx.file != NULL)
        fclose(ctx.file);
    free(ctx.extra);
    config_free(cfg);
    return rc;
}

void config_free(config_t *cfg)
{
    if (cfg == NULL)
        return;
    authfile_free(cfg->users);
    hba_free(cfg->hba);
    tls_context_free(cfg->client_ctx);
    tls_context_free(cfg->server_ctx);
    free(cfg->databases);
    free(cfg->jobs);
    free(cfg->cache_rules);
    free(cfg);
}

/* Milliseconds as the file's seconds: "15", or "0.500" for a fraction. */
static void format_ms(int64_t ms, char *out, size_t len)
{
    if (ms % 1000 == 0)
        snprintf(out, len, "%lld", (long long)(ms / 1000));
    else
        snprintf(out, len, "%lld.%03lld", (long long)(ms / 1000), (long long)(ms % 1000));
}

/* The text of a setting's value in cfg, as SHOW CONFIG prints it. */
static void format_value(const config_t *cfg, const setting_t *s, char *out, size_t len)
{
    const char *field = (const char *)cfg + s->offset;

    switch (s->kind) {
    case VALUE_INT:
        snprintf(out, len, "%d", *(const int *)(const void *)field);
        break;
    case VALUE_TIME:
        format_ms(*(const int64_t *)(const void *)field, out, len);
        break;
    case VALUE_BOOL:
    case VALUE_VERBOSE:
        snprintf(out, len, "%d", *(const bool *)field ? 1 : 0);
        break;
    case VALUE_POOL_MODE:
        snprintf(out, len, "%s", config_pool_mode_name(*(const pool_mode_t *)(const void *)field));
        break;
    case VALUE_AUTH_TYPE:
        snprintf(out, len, "%s", config_auth_type_name(*(const auth_type_t *)(const void *)field));
        break;
    case VALUE_TLS_MODE:
        snprintf(out, len, "%s", tls_mode_name(*(const tls_mode_t *)(const void *)field));
        break;
    case VALUE_STRING:
        snprintf(out, len, "%s", field);
        break;
    case VALUE_SIZE:
        snprintf(out, len, "%lld", (long long)*(const int64_t *)(const void *)field);
        break;
    case VALUE_INVALIDATION:
        snprintf(out, len, "%s",
                 *(const cache_invalidation_t *)(const void *)field == CACHE_INVALIDATION_LOGICAL
                     ? "logical"
                     : "proxy");
        break;
    case VALUE_IGNORED:
        out[0] = '\0';
        break;
    }
}

/* One SHOW CONFIG row per [cache] rule: its key and "seconds" or "off". */
static void show_cache_rules(const config_t *cfg, config_show_fn fn, void *arg)
{
    char key[2 * CONFIG_NAME_LEN];
    char ttl[32];

    for (int i = 0; i < cfg->n_cache_rules; i++) {
        const config_cache_rule_t *r = &cfg->cache_rules[i];
        snprintf(key, sizeof(key), "%s%s%s", r->schema, r->schema[0] != '\0' ? "." : "", r->table);
        if (r->ttl == 0)
            strcpy(ttl, "off");
        else
            format_ms(r->ttl, ttl, sizeof(ttl));
        fn(arg, key, ttl, "", true);
    }
}

/* Calls fn for each setting of table, as config_show() says. */
static void show_settings(const setting_t *table, size_t n, const config_t *cfg,
                          const config_t *defaults, config_show_fn fn, void *arg)
{
    /* Read at start only; admin_listen is also read when a reload turns the API on. The
     * cache's Redis link and logical consumers start with the daemon too. */
    static const char *const fixed[] = {
        "listen_addr",      "listen_port",        "workers",
        "tcp_defer_accept", "admin_listen",       "cache_invalidation",
        "cache_redis_host", "cache_redis_port",   "cache_redis_password",
        "cache_redis_db",   "cache_redis_prefix", "cache_redis_lease"};
    char value[CONFIG_PATH_LEN], dflt[CONFIG_PATH_LEN];

    for (size_t i = 0; i < n; i++) {
        const setting_t *s = &table[i];
        bool changeable = true;
        if (s->kind == VALUE_IGNORED)
            continue;
        for (size_t k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++)
            if (strcmp(s->key, fixed[k]) == 0)
                changeable = false;
        format_value(cfg, s, value, sizeof(value));
        if ((strstr(s->key, "token") != NULL || strstr(s->key, "password") != NULL) &&
            value[0] != '\0')
            strcpy(value, SECRET_MASK); /* a secret: SHOW CONFIG only says it is set */
        dflt[0] = '\0';
        if (defaults != NULL)
            format_value(defaults, s, dflt, sizeof(dflt));
        fn(arg, s->key, value, dflt, changeable);
    }
}

/* Appends the NUL-terminated text to out (len bytes, *used of them filled); what does not fit
 * is dropped, and out stays NUL-terminated. */
static void put_text(char *out, size_t len, size_t *used, const char *text)
{
    for (; *text != '\0' && *used + 1 < len; text++)
        out[(*used)++] = *text;
    out[*used] = '\0';
}

void config_put_conninfo_value(char *out, size_t len, size_t *used, const char *value)
{
    bool quote = value[0] == '\0' || strpbrk(value, " \t\n\r\f\v'\\") != NULL;
    char c[2] = {0};

    if (quote)
        put_text(out, len, used, "'");
    for (const char *p = value; *p != '\0'; p++) {
        if (quote && (*p == '\'' || *p == '\\'))
            put_text(out, len, used, "\\");
        c[0] = *p;
        put_text(out, len, used, c);
    }
    if (quote)
        put_text(out, len, used, "'");
}

/*
 * A job's connection string as SHOW CONFIG shows it: the options libpq reads from it, as
 * keyword=value pairs, with a password shown as SECRET_MASK however it was written (as a
 * keyword, inside a URI or in a URI's query). Empty when memory runs out.
 */
static void show_conninfo(const char *conninfo, char *out, size_t len)
{
    PQconninfoOption *options = PQconninfoParse(conninfo, NULL);
    size_t used = 0;

    out[0] = '\0';
    if (options == NULL)
        return;
    for (const PQconninfoOption *o = options; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        bool secret = strcmp(o->keyword, "password") == 0 && o->val[0] != '\0';
        if (used > 0)
            put_text(out, len, &used, " ");
        put_text(out, len, &used, o->keyword);
        put_text(out, len, &used, "=");
        config_put_conninfo_value(out, len, &used, secret ? SECRET_MASK : o->val);
    }
    PQconninfoFree(options);
}

/* One SHOW CONFIG row per [scheduler] job: "<seconds> <connection string>". */
static void show_jobs(const config_t *cfg, config_show_fn fn, void *arg)
{
    char seconds[32];
    char conninfo[2 * CONFIG_CONNINFO_LEN];
    char value[sizeof(seconds) + sizeof(conninfo)];

    for (int i = 0; i < cfg->n_jobs; i++) {
        format_ms(cfg->jobs[i].interval, seconds, sizeof(seconds));
        show_conninfo(cfg->jobs[i].conninfo, conninfo, sizeof(conninfo));
        snprintf(value, sizeof(value), "%s %s", seconds, conninfo);
        fn(arg, "partition_maintain", value, "", true);
    }
}

void config_show(const config_t *cfg, config_show_fn fn, void *arg)
{
    config_t *defaults = calloc(1, sizeof(*defaults));

    if (defaults != NULL)
        set_defaults(defaults);
    show_settings(pgturbo_settings, sizeof(pgturbo_settings) / sizeof(pgturbo_settings[0]), cfg,
                  defaults, fn, arg);
    show_settings(scheduler_settings, sizeof(scheduler_settings) / sizeof(scheduler_settings[0]),
                  cfg, defaults, fn, arg);
    show_jobs(cfg, fn, arg);
    show_settings(cache_settings, sizeof(cache_settings) / sizeof(cache_settings[0]), cfg, defaults,
                  fn, arg);
    show_cache_rules(cfg, fn, arg);
    free(defaults);
}

bool config_list_has(const char *list, const char *name)
{
    size_t len = strlen(name);

    for (const char *p = list; *p != '\0';) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        size_t trimmed = n;
        while (trimmed > 0 && (p[trimmed - 1] == ' ' || p[trimmed - 1] == '\t'))
            trimmed--;
        if (trimmed == len && len > 0 && strncmp(p, name, len) == 0)
            return true;
        p += n;
    }
    return false;
}

const char *config_auth_type_name(auth_type_t type)
{
    switch (type) {
    case AUTH_TYPE_TRUST:
        return "trust";
    case AUTH_TYPE_PLAIN:
        return "plain";
    case AUTH_TYPE_MD5:
        return "md5";
    case AUTH_TYPE_SCRAM:
        return "scram-sha-256";
    case AUTH_TYPE_CERT:
        return "cert";
    case AUTH_TYPE_HBA:
        return "hba";
    }
    return "unknown";
}

const config_database_t *config_find_database(const config_t *cfg, const char *name)
{
    const config_database_t *fallback = NULL;

    for (int i = 0; i < cfg->n_databases; i++) {
        if (strcmp(cfg->databases[i].name, name) == 0)
            return &cfg->databases[i];
        if (strcmp(cfg->databases[i].name, "*") == 0)
            fallback = &cfg->databases[i];
    }
    return fallback;
}

const char *config_pool_mode_name(pool_mode_t mode)
{
    switch (mode) {
    case POOL_MODE_SESSION:
        return "session";
    case POOL_MODE_TRANSACTION:
        return "transaction";
    case POOL_MODE_STATEMENT:
        return "statement";
    }
    return "unknown";
}
