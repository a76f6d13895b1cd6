/*
 * config.h
 *    pgturbo.ini: loading, validation and lookup of the daemon's settings.
 *
 * The file uses PgBouncer's sections and key names where they exist, so that an existing
 * pgbouncer.ini mostly works as is: [databases] maps a client-visible database name to a
 * connection string ("host=... port=... dbname=... user=... password=... pool_size=...
 * pool_mode=..."), and [pgturbo] (or [pgbouncer], accepted as an alias) holds the settings.
 * Times are given in seconds (fractions allowed) as in PgBouncer and stored in milliseconds.
 *
 * A config is immutable once loaded; a reload (SIGHUP) loads a new one and swaps it in.
 */
#ifndef PGTURBO_CONFIG_H
#define PGTURBO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_NAME_LEN   64 /* NAMEDATALEN: identifiers, including the terminating NUL */
#define CONFIG_HOST_LEN   256
#define CONFIG_SECRET_LEN 256
#define CONFIG_QUERY_LEN  1024

typedef enum pool_mode {
    POOL_MODE_SESSION = 0,     /* a server connection for the client's whole session */
    POOL_MODE_TRANSACTION = 1, /* a server connection per transaction */
    POOL_MODE_STATEMENT = 2,   /* a server connection per statement; multi-statement txns refused */
} pool_mode_t;

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

typedef struct config {
    char path[4096]; /* the file it was loaded from */

    /* [pgturbo] listening */
    char listen_addr[CONFIG_HOST_LEN]; /* default "127.0.0.1"; "*" = all addresses */
    int listen_port;                   /* default 6432 */
    int workers;                       /* default 0 = number of online CPUs */

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

    /* [pgturbo] logging */
    bool verbose; /* default false: log every connection and disconnection */

    config_database_t *databases; /* [databases] entries in file order */
    int n_databases;
} config_t;

/*
 * Loads and validates the ini file at path. On success returns 0 and sets *out to a config
 * the caller frees with config_free(). On failure returns -1, leaves *out NULL and writes
 * "path:line: what is wrong" (or "path: what is wrong" for whole-file problems such as an
 * unreadable file) into err, truncated to errlen.
 */
__attribute__((warn_unused_result)) int config_load(const char *path, config_t **out, char *err,
                                                    size_t errlen);

/* Frees a config from config_load(); NULL is allowed. */
void config_free(config_t *cfg);

/*
 * Returns the [databases] entry for the database a client asked for, the "*" entry if there is
 * none of that name, or NULL. The result is borrowed from cfg.
 */
const config_database_t *config_find_database(const config_t *cfg, const char *name);

/* "session", "transaction" or "statement". */
const char *config_pool_mode_name(pool_mode_t mode);

#endif /* PGTURBO_CONFIG_H */
