/*
 * config.h
 *    pgturbo.ini: loading, validation and lookup of the daemon's settings.
 *
 * The file uses PgBouncer's sections and key names where they exist, so that an existing
 * pgbouncer.ini mostly works as is: [databases] maps a client-visible database name to a
 * connection string ("host=... port=... dbname=... user=... password=... pool_size=...
 * pool_mode=..."), and [pgturbo] (or [pgbouncer], accepted as an alias) holds the settings.
 * [scheduler], pgturbo's own, lists the maintenance jobs the daemon runs periodically, one
 * "partition_maintain = <seconds> <conninfo>" line per database (see scheduler.h).
 * Times are given in seconds (fractions allowed) as in PgBouncer and stored in milliseconds.
 *
 * A config is immutable once loaded; a reload (SIGHUP) loads a new one and swaps it in.
 */
#ifndef PGTURBO_CONFIG_H
#define PGTURBO_CONFIG_H

#include "tls.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct authfile;
struct hba;

#define CONFIG_NAME_LEN     64 /* NAMEDATALEN: identifiers, including the terminating NUL */
#define CONFIG_HOST_LEN     256
#define CONFIG_SECRET_LEN   256
#define CONFIG_QUERY_LEN    1024
#define CONFIG_PATH_LEN     4096
#define CONFIG_LIST_LEN     1024 /* a comma-separated list of names */
#define CONFIG_CONNINFO_LEN 4096 /* a libpq connection string or URI */
#define CONFIG_MAX_JOBS     16   /* [scheduler] jobs */
#define CONFIG_MAX_RULES    60   /* [cache] rules */

typedef enum pool_mode {
    POOL_MODE_SESSION = 0,     /* a server connection for the client's whole session */
    POOL_MODE_TRANSACTION = 1, /* a server connection per transaction */
    POOL_MODE_STATEMENT = 2,   /* a server connection per statement; multi-statement txns refused */
} pool_mode_t;

/* How clients prove who they are (PgBouncer's auth_type). */
typedef enum auth_type {
    AUTH_TYPE_TRUST = 0, /* no password asked */
    AUTH_TYPE_PLAIN = 1, /* cleartext password, checked against any kind of secret */
    AUTH_TYPE_MD5 = 2,   /* md5 challenge; SCRAM instead for users whose secret is SCRAM */
    AUTH_TYPE_SCRAM = 3, /* SCRAM-SHA-256 */
    AUTH_TYPE_CERT = 4,  /* a TLS client certificate whose CN is the user name */
    AUTH_TYPE_HBA = 5,   /* per connection, from the first matching line of auth_hba_file */
} auth_type_t;

/* TLS settings of one side (client_tls_* or server_tls_*). */
typedef struct config_tls {
    tls_mode_t sslmode;
    char cert_file[CONFIG_PATH_LEN];
    char key_file[CONFIG_PATH_LEN];
    char ca_file[CONFIG_PATH_LEN];
    char protocols[CONFIG_NAME_LEN];
    char ciphers[CONFIG_QUERY_LEN];
} config_tls_t;

/* One [databases] entry. Fields not given in the entry take the [pgturbo] default. */
typedef struct config_database {
    char name[CONFIG_NAME_LEN];   /* name clients ask for; "*" is the fallback entry */
    char host[CONFIG_HOST_LEN];   /* host name, address, or a directory for a Unix socket */
    int port;                     /* default 5432 */
    char dbname[CONFIG_NAME_LEN]; /* real database name; empty = same as name (or client's) */
    char user[CONFIG_NAME_LEN];   /* forced server user; empty = the client's user */
    char password[CONFIG_SECRET_LEN];
    int pool_size;          /* default_pool_size unless set */
    int min_pool_size;      /* min_pool_size unless set */
    int reserve_pool_size;  /* reserve_pool_size unless set */
    int max_db_connections; /* max_db_connections unless set; 0 = no limit */
    pool_mode_t pool_mode;  /* pool_mode unless set */
} config_database_t;

/* One partition_maintain line of [scheduler]: a job that runs partition_maintain()
 * (partition.h) on one database every interval. */
typedef struct config_job {
    int64_t interval;                   /* ms between runs, at least 1000 */
    char conninfo[CONFIG_CONNINFO_LEN]; /* libpq connection string or URI, as written */
    char dbname[CONFIG_NAME_LEN];       /* the database it names: the job's name in logs, the API
                                           and metrics, unique among the jobs */
    int line;                           /* where the line is, for messages about the job */
} config_job_t;

/* How the result cache learns of writes (cache_invalidation). */
typedef enum cache_invalidation {
    CACHE_INVALIDATION_PROXY = 0,   /* writes through pgturbo only; TTLs bound the others */
    CACHE_INVALIDATION_LOGICAL = 1, /* also PostgreSQL's logical replication stream */
} cache_invalidation_t;

/*
 * One rule of [cache]: "table = seconds", "schema.table = seconds", "schema.* = seconds" or
 * "* = seconds", where seconds may be "off" (or 0). The most specific rule that matches a
 * table decides: schema.table, then table, then schema.*, then *.
 */
typedef struct config_cache_rule {
    char schema[CONFIG_NAME_LEN]; /* "" = any schema */
    char table[CONFIG_NAME_LEN];  /* "*" = every table of the schema (or of all) */
    int64_t ttl;                  /* ms; 0 = not cached */
    int line;                     /* where the rule is, for messages */
} config_cache_rule_t;

typedef struct config {
    char path[CONFIG_PATH_LEN]; /* the file it was loaded from */

    /* [pgturbo] listening */
    char listen_addr[CONFIG_HOST_LEN]; /* default "127.0.0.1"; "*" = all addresses */
    int listen_port;                   /* default 6432 */
    int workers;                       /* default 0 = number of online CPUs */
    int tcp_defer_accept;              /* seconds, default 45; 0 = off (TCP_DEFER_ACCEPT) */

    /* [pgturbo] pooling */
    pool_mode_t pool_mode;        /* default session, as PgBouncer */
    int default_pool_size;        /* default 20 */
    int min_pool_size;            /* default 0 */
    int reserve_pool_size;        /* default 0 */
    int64_t reserve_pool_timeout; /* ms, default 5000 */
    int max_client_conn;          /* default 100 */
    int max_db_connections;       /* default 0 = no limit */
    int max_prepared_statements;  /* per server connection, default 200; 0 = off */

    /* [pgturbo] server connections */
    int64_t server_lifetime;                   /* ms, default 3600000; 0 = no limit */
    int64_t server_idle_timeout;               /* ms, default 600000; 0 = no limit */
    int64_t server_connect_timeout;            /* ms, default 15000 */
    char server_check_query[CONFIG_QUERY_LEN]; /* default "select 1"; empty = no check */
    int64_t server_check_delay;                /* ms, default 30000 */
    char server_reset_query[CONFIG_QUERY_LEN]; /* default "DISCARD ALL" (session mode only) */
    bool server_reset_query_always;            /* default false: run it in transaction mode too */

    /* [pgturbo] client limits and timeouts */
    int64_t query_timeout;            /* ms, default 0 = off */
    int64_t query_wait_timeout;       /* ms, default 120000; 0 = wait forever */
    int64_t client_idle_timeout;      /* ms, default 0 = off */
    int64_t client_login_timeout;     /* ms, default 60000 */
    int64_t idle_transaction_timeout; /* ms, default 0 = off */
    int64_t shutdown_timeout; /* ms, default 30000: how long SIGTERM waits for transactions */
    int max_packet_size;      /* bytes, default 2147483647 */

    /* [pgturbo] authentication */
    auth_type_t auth_type;               /* default md5, as PgBouncer */
    char auth_file[CONFIG_PATH_LEN];     /* PgBouncer's userlist format; empty = none */
    char auth_hba_file[CONFIG_PATH_LEN]; /* rules for auth_type hba */
    char auth_query[CONFIG_QUERY_LEN];   /* run as auth_user for users auth_file lacks */
    char auth_user[CONFIG_NAME_LEN];     /* empty = no auth_query */
    char admin_users[CONFIG_LIST_LEN];   /* may use every console command */
    char stats_users[CONFIG_LIST_LEN];   /* may use the console's SHOW commands */

    /* [pgturbo] TLS */
    config_tls_t client_tls; /* clients to pgturbo; sslmode default disable */
    config_tls_t server_tls; /* pgturbo to PostgreSQL; sslmode default prefer */

    /* [pgturbo] query statistics */
    bool query_stats;           /* default true: measure every query */
    int slow_query_warn_ms;     /* default 100: a query this slow is logged as a warning */
    int slow_query_error_ms;    /* default 500: ... as an error */
    bool log_parameters;        /* default false: parameter values in the slow log */
    int slow_request_warn_ms;   /* default 200: a request (request_id) with this much DB time */
    int slow_request_error_ms;  /* default 1000 */
    int n_plus_one_threshold;   /* default 10: same fingerprint this often in a txn/request */
    int stats_max_fingerprints; /* default 5000 per worker; the coldest are evicted */
    int slow_log_size;          /* default 1000 entries kept for the API */
    int alert_p95_ms;           /* default 100 */
    int alert_error_rate;       /* default 10 (percent) */
    int alert_waiting_clients;  /* default 1: clients waiting for a server */
    int alert_cache_hit_ratio;  /* default 60 (percent): a cache rule's hit ratio under it */

    /* [pgturbo] admin HTTP API */
    char admin_listen[CONFIG_HOST_LEN];        /* default "127.0.0.1:9930"; a restart changes it */
    char admin_token[CONFIG_SECRET_LEN];       /* every endpoint; empty = API off */
    char admin_stats_token[CONFIG_SECRET_LEN]; /* read-only endpoints */

    /* [pgturbo] logging */
    bool verbose; /* default false: log every connection and disconnection */

    /* [cache] the query result cache (cache.h) */
    int64_t cache_max_memory;     /* bytes, default 64 MB */
    int cache_max_entries;        /* default 100000 */
    int64_t cache_max_entry_size; /* bytes of one result, default 1 MB */
    int64_t cache_compress_min;   /* results this large are lz4-compressed, default 4 kB */
    cache_invalidation_t cache_invalidation; /* default proxy */
    char cache_redis_host[CONFIG_HOST_LEN];  /* Redis shared by instances; "" = none (default) */
    int cache_redis_port;                    /* default 6379 */
    char cache_redis_password[CONFIG_SECRET_LEN]; /* default "": no AUTH */
    int cache_redis_db;                           /* default 0 */
    char cache_redis_prefix[CONFIG_NAME_LEN];     /* of keys and channels, default "pgturbo" */
    int64_t cache_redis_lease;        /* ms, default 500: how long an instance trusts its memory
                                       * without hearing Redis (cacheredis.h) */
    config_cache_rule_t *cache_rules; /* in file order, at most CONFIG_MAX_RULES */
    int n_cache_rules;

    config_database_t *databases; /* [databases] entries in file order */
    int n_databases;

    /* [scheduler] */
    bool run_at_start;  /* default true: a job first runs at start, not one interval later */
    config_job_t *jobs; /* partition_maintain lines in file order, at most CONFIG_MAX_JOBS */
    int n_jobs;

    /* Loaded from the files the settings name, owned by the config. */
    struct authfile *users; /* auth_file, or NULL */
    struct hba *hba;        /* auth_hba_file, or NULL */
    SSL_CTX *client_ctx;    /* for accepting clients; NULL when client_tls_sslmode = disable */
    SSL_CTX *server_ctx;    /* for connecting to servers; NULL when server_tls_sslmode = disable */
} config_t;

/*
 * Loads and validates the ini file at path. On success returns 0 and sets *out to a config
 * the caller frees with config_free(). On failure returns -1, leaves *out NULL and writes
 * "path:line: what is wrong" (or "path: what is wrong" for whole-file problems such as an
 * unreadable file) into err, truncated to errlen.
 */
__attribute__((warn_unused_result)) int config_load(const char *path, config_t **out, char *err,
                                                    size_t errlen);

/*
 * The index in cfg->cache_rules of the rule for a table: the most specific of "schema.table",
 * "table", "schema.*" and "*". schema may be NULL (unknown): then only "table" and "*" rules
 * match. -1 when no rule matches.
 */
int config_cache_rule_find(const config_t *cfg, const char *schema, const char *table);

/*
 * Appends a connection-string value to out (len bytes, *used of them filled, kept
 * NUL-terminated; what does not fit is dropped): in single quotes, with ' and \ escaped by a
 * backslash, when it is empty or holds a space, a quote or a backslash, as libpq reads it.
 */
void config_put_conninfo_value(char *out, size_t len, size_t *used, const char *value);

/* Frees a config from config_load(); NULL is allowed. */
void config_free(config_t *cfg);

/*
 * Returns the [databases] entry for the database a client asked for, the "*" entry if there is
 * none of that name, or NULL. The result is borrowed from cfg.
 */
const config_database_t *config_find_database(const config_t *cfg, const char *name);

/*
 * Calls fn for every [pgturbo] setting pgturbo uses, in the order of the README, then for
 * run_at_start and each partition_maintain line of [scheduler]: its key, its value in cfg and
 * its default as text, and whether a reload can change it. Secrets are shown as "********":
 * the tokens, and any password in a job's connection string.
 */
typedef void (*config_show_fn)(void *arg, const char *key, const char *value,
                               const char *default_value, bool changeable);
void config_show(const config_t *cfg, config_show_fn fn, void *arg);

/* Whether name is in the comma-separated list (spaces around names allowed). */
bool config_list_has(const char *list, const char *name);

/* "trust", "plain", "md5", "scram-sha-256", "cert" or "hba". */
const char *config_auth_type_name(auth_type_t type);

/* "session", "transaction" or "statement". */
const char *config_pool_mode_name(pool_mode_t mode);

#endif /* PGTURBO_CONFIG_H */
