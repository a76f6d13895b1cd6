/*
 * harness.h
 *    Integration-test harness: the throwaway PostgreSQL cluster that the ctest fixture
 *    "cluster" started (tests/harness/cluster.sh), pgturbo daemons started per test on free
 *    loopback ports, and libpq / raw-socket helpers. Tests are cmocka tests; helpers fail the
 *    test (cmocka fail_msg) when something they need cannot be done.
 */
#ifndef PGTURBO_HARNESS_H
#define PGTURBO_HARNESS_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct pgturbo_proc {
    pid_t pid;
    int port;
    char dir[256]; /* temp directory holding pgturbo.ini and pgturbo.log */
    char ini[300];
    char log[300];
} pgturbo_proc_t;

/* Port of the test cluster (user postgres, trust auth, database postgres). */
int harness_pg_port(void);

/* Directory of the test cluster's certificates (tests/harness/certs.sh: ca.crt, the CA that
 * signed its server.crt for localhost and 127.0.0.1 and client-pgturbo_cert.crt, and
 * other-ca.crt, which signed neither); a static string. */
const char *harness_pg_certs(void);

/* A free 127.0.0.1 TCP port below the ephemeral range. */
int harness_free_port(void);

/*
 * Writes a pgturbo.ini with [databases] "postgres" and "*" entries pointing at the test
 * cluster (plus the lines in extra_databases, may be NULL), [pgturbo] listen_addr 127.0.0.1,
 * a free listen_port, workers = 2 (plus the lines in extra_pgturbo, e.g.
 * "pool_mode = transaction\ndefault_pool_size = 5\n"), starts pgturbo serve on it and waits
 * until it accepts connections. Fails the test on error.
 */
void harness_start_pgturbo(pgturbo_proc_t *p, const char *extra_pgturbo,
                           const char *extra_databases);

/* Like harness_start_pgturbo, but [databases] holds only the lines in databases (to make an
 * entry other than the test cluster's the first one). */
void harness_start_pgturbo_databases(pgturbo_proc_t *p, const char *extra_pgturbo,
                                     const char *databases);

/* Rewrites the ini with new extra lines and sends SIGHUP (the listen port stays). */
void harness_reload_pgturbo(pgturbo_proc_t *p, const char *extra_pgturbo,
                            const char *extra_databases);

/* SIGTERM, waits up to timeout_s; returns the exit status (or -1 when it had to be killed).
 * Removes the temp directory. Prints the daemon's log when it did not exit with 0. */
int harness_stop_pgturbo(pgturbo_proc_t *p, int timeout_s);

/* True while the daemon process is alive. */
bool harness_pgturbo_alive(const pgturbo_proc_t *p);

/* libpq connection to 127.0.0.1:port as user postgres; extra is appended to the conninfo
 * (e.g. "application_name=x"). Fails the test when the connection fails. */
PGconn *harness_connect(int port, const char *dbname, const char *extra);

/* Like harness_connect but returns the failed PGconn too (caller checks PQstatus). */
PGconn *harness_try_connect(int port, const char *dbname, const char *extra);

/* Runs sql, asserts success, returns the first column of the first row as a malloc'd string
 * (NULL for no rows or NULL value). */
char *harness_query_value(PGconn *conn, const char *sql);

/* Runs sql and asserts it succeeds (command or tuples). */
void harness_exec_ok(PGconn *conn, const char *sql);

/* Runs sql, expects an error, returns its SQLSTATE as a static string. The SQLSTATE is the
 * one of the first error result, so a FATAL error that the proxy or server sends just before
 * closing the connection is reported as sent (PQexec would return libpq's own "server closed
 * the connection" error instead, which has none); "" when no error carried a SQLSTATE. */
const char *harness_exec_error(PGconn *conn, const char *sql);

/* Like harness_exec_error, and copies the first error's message (may be NULL). */
const char *harness_exec_error_message(PGconn *conn, const char *sql, char *message, size_t len);

/* Direct connection to the test cluster, bypassing pgturbo. */
PGconn *harness_connect_direct(const char *dbname);

/* Runs a shell command; captures stdout+stderr (truncated to outlen); returns exit status. */
int harness_shell(const char *cmd, char *out, size_t outlen);

/* Raw TCP connection to 127.0.0.1:port (blocking, 5 s receive timeout); fails the test. */
int harness_raw_connect(int port);
/* Like harness_raw_connect, but -1 (errno set) when nothing listens. */
int harness_raw_try_connect(int port);

/* An HTTP answer: status, head (status line and headers) and body (malloc'd, NUL-terminated). */
typedef struct harness_response {
    int status;
    char head[4096];
    char *body;
    size_t body_len;
} harness_response_t;

/* Sends method path to 127.0.0.1:port over HTTP/1.1, with an "Authorization: <authorization>"
 * header unless NULL, and reads the whole answer (the server closes after it); fails the test
 * when there is none. Release with harness_response_free. */
harness_response_t harness_http(int port, const char *method, const char *path,
                                const char *authorization);
void harness_response_free(harness_response_t *r);

/* How many lines of the file at path hold needle (0 when it cannot be read). */
int harness_count_in_file(const char *path, const char *needle);

/* Sends all bytes or fails the test. */
void harness_raw_send(int fd, const void *p, size_t n);

/* Sends a v3 StartupMessage for user/database. */
void harness_raw_startup(int fd, const char *user, const char *database);

/*
 * Reads one backend message (type, body into buf up to cap). Returns the type byte, 0 on EOF,
 * -1 on timeout or error. *len gets the body length.
 */
int harness_raw_read_message(int fd, char *buf, size_t cap, size_t *len);

/* Reads messages until ReadyForQuery ('Z'); returns true when it came. If an ErrorResponse
 * came first and sqlstate is not NULL, copies its SQLSTATE (6 bytes) into sqlstate. */
bool harness_raw_wait_ready(int fd, char *sqlstate);

/* Reads messages until an ErrorResponse and returns its SQLSTATE in sqlstate (6 bytes);
 * returns false on EOF/timeout without one. */
bool harness_raw_expect_error(int fd, char *sqlstate);

/* True when the peer has closed the connection (read returns EOF within timeout_ms). */
bool harness_raw_closed(int fd, int timeout_ms);

/* Monotonic milliseconds. */
long long harness_now_ms(void);

/* Sleeps ms milliseconds (through signals). */
void harness_sleep_ms(int ms);

/* Drops NOTICEs on conn (such as "does not exist, skipping"). */
void harness_silence_notices(PGconn *conn);

/* Drops (with FORCE) and creates database name on the test cluster, directly. */
void harness_create_database(const char *name);

/* Drops database name (with FORCE) on the test cluster, directly. */
void harness_drop_database(const char *name);

/* Creates database name and fills it with pgbench -i -s scale; fails the test on error. */
void harness_pgbench_init(const char *name, int scale);

/* A redis-server of a test's own: on a free 127.0.0.1 port, no persistence, its log in dir. */
typedef struct harness_redis {
    pid_t pid;
    int port;
    char dir[256];
} harness_redis_t;

/* Starts redis-server (Debian's /usr/bin/redis-server) on a free port and waits until it
 * answers PING; fails the test otherwise. Killed at exit if the test leaves it running. */
void harness_start_redis(harness_redis_t *r);

/* Kills it (SIGKILL: as a crash would) and waits for it to go; the port is kept. */
void harness_kill_redis(harness_redis_t *r);

/* Starts it again on the same port after harness_kill_redis, empty; fails the test otherwise. */
void harness_restart_redis(harness_redis_t *r);

/* Stops it and removes its directory. */
void harness_stop_redis(harness_redis_t *r);

/* ---- the result cache's admin API ---- */

/* GET /api/v1/cache on admin_port with "Authorization: Bearer token"; fails the test unless
 * the answer is 200 with JSON. Caller releases with json_decref. */
json_t *harness_cache_get(int admin_port, const char *token);

/* The integer totals.key of a GET /api/v1/cache answer (borrowed); 0 when there is none. */
long long harness_cache_total(const json_t *api, const char *key);

/* Reads through conn (a connection to database dbname through the daemon on admin_port) until
 * the daemon has read dbname's catalog, without which it caches nothing; fails the test after
 * 10 s. */
void harness_cache_wait_catalog(PGconn *conn, int admin_port, const char *token,
                                const char *dbname);

#endif /* PGTURBO_HARNESS_H */
