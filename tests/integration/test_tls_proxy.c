/*
 * test_tls_proxy.c
 *    TLS through a running pgturbo, on both of its sides. Facing applications: libpq clients
 *    with each sslmode against each client_tls_sslmode, certificate checks both ways,
 *    auth_type cert, large results, COPY and a client that does not read, all through TLS
 *    records, transaction pooling with many TLS clients, plain cancel requests, and
 *    client_tls_sslmode changed by a reload. Facing PostgreSQL: server_tls_sslmode require,
 *    disable, prefer and verify-full against the test cluster, which accepts TLS
 *    (tests/harness/cluster.sh) and has the role pgturbo_tls that pg_hba.conf lets in over TLS
 *    only, Unix sockets, and fake servers: one that refuses TLS, one whose records are cut to
 *    leave decrypted bytes inside OpenSSL. And bad input on raw sockets: a ClientHello cut
 *    short, garbage instead of one, and bytes sent after an SSLRequest before pgturbo's answer.
 *
 *    Each test makes its own CA for the client side with tests/harness/certs.sh (server.crt
 *    for pgturbo, client-postgres and client-alice certificates for the applications); the
 *    server side uses the cluster's certificates (harness_pg_certs). Connection errors are
 *    asked for in libpq's verbose form, "FATAL:  28000: SSL required", so that the tests can
 *    check their SQLSTATE. Where a test needs TLS records of chosen sizes it speaks TLS with
 *    OpenSSL itself. The table tls_proxy_copy belongs to this file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PATH_LEN          256
#define CONNINFO_LEN      1024
#define BIG_VALUE         1000000
#define MANY_ROWS         100000
#define COPY_ROWS         20000
#define POOLED_CLIENTS    20
#define POOLED_TXNS       10
#define TLS13_PREFIX      "TLSv1.3/"
#define SSL_REQUEST_BYTES "\x00\x00\x00\x08\x04\xd2\x16\x2f" /* length 8, code 1234.5679 */

/* One test's certificates and daemon. */
typedef struct fixture {
    char dir[64]; /* mkdtemp directory of certs.sh's files */
    pgturbo_proc_t proc;
    bool running;
} fixture_t;

/* ---- files ---- */

/* Writes the path of file name in the fixture's directory into out (PATH_LEN bytes). */
static void cert_path(const fixture_t *f, const char *name, char *out)
{
    snprintf(out, PATH_LEN, "%s/%s", f->dir, name);
}

/* Whether the daemon's log has a line containing needle within timeout_ms. */
static bool log_has(const fixture_t *f, const char *needle, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    do {
        FILE *fp = fopen(f->proc.log, "r");
        if (fp != NULL) {
            char line[4096];
            bool found = false;
            while (!found && fgets(line, sizeof(line), fp) != NULL)
                found = strstr(line, needle) != NULL;
            fclose(fp);
            if (found)
                return true;
        }
        harness_sleep_ms(50);
    } while (harness_now_ms() < deadline);
    return false;
}

static void assert_log_has(const fixture_t *f, const char *needle)
{
    if (!log_has(f, needle, 3000))
        fail_msg("pgturbo's log has no line with \"%s\"", needle);
}

/* ---- the daemon ---- */

/*
 * Writes into out the [pgturbo] lines of client_tls_sslmode mode with pgturbo's server.crt
 * from the fixture's CA, the fixture's ca.crt as client_tls_ca_file when with_ca, admin_users
 * postgres, and the extra lines.
 */
static void settings(const fixture_t *f, char *out, size_t len, const char *mode, bool with_ca,
                     const char *extra)
{
    int n = snprintf(out, len,
                     "client_tls_sslmode = %s\n"
                     "client_tls_cert_file = %s/server.crt\n"
                     "client_tls_key_file = %s/server.key\n"
                     "admin_users = postgres\n",
                     mode, f->dir, f->dir);
    if (with_ca)
        n += snprintf(out + n, len - (size_t)n, "client_tls_ca_file = %s/ca.crt\n", f->dir);
    snprintf(out + n, len - (size_t)n, "%s", extra ? extra : "");
}

/* Starts pgturbo with the settings above and the extra [databases] lines. */
static void start(fixture_t *f, const char *mode, bool with_ca, const char *extra_pgturbo,
                  const char *extra_databases)
{
    char lines[2048];
    settings(f, lines, sizeof(lines), mode, with_ca, extra_pgturbo);
    harness_start_pgturbo(&f->proc, lines, extra_databases);
    f->running = true;
}

/* Stops the daemon and asserts that it exited cleanly (which also means no sanitizer report). */
static void finish(fixture_t *f)
{
    f->running = false;
    assert_int_equal(harness_stop_pgturbo(&f->proc, 20), 0);
}

/* ---- libpq clients ---- */

/*
 * The TLS options of a libpq client: sslmode, the root certificate it trusts (rootcert, a file
 * of the fixture's directory; NULL for none) and the client certificate client-CN it presents
 * (cn NULL for none). Files that do not exist stand for "none", so that nothing from ~/.postgresql
 * is used.
 */
static void tls_opts(const fixture_t *f, char *out, size_t len, const char *sslmode,
                     const char *rootcert, const char *cn)
{
    char root[PATH_LEN], crt[PATH_LEN], key[PATH_LEN];
    cert_path(f, rootcert != NULL ? rootcert : "no-root.crt", root);
    if (cn != NULL) {
        char name[96];
        snprintf(name, sizeof(name), "client-%s.crt", cn);
        cert_path(f, name, crt);
        snprintf(name, sizeof(name), "client-%s.key", cn);
        cert_path(f, name, key);
    } else {
        cert_path(f, "no-client.crt", crt);
        cert_path(f, "no-client.key", key);
    }
    snprintf(out, len, "sslmode=%s sslrootcert=%s sslcert=%s sslkey=%s", sslmode, root, crt, key);
}

/*
 * Connects to 127.0.0.1:port as postgres (extra, appended, may override that) with libpq's
 * verbose errors, so that a refused connection's message carries its SQLSTATE. Returns the
 * connection, good or bad; the caller checks PQstatus and frees it with PQfinish.
 */
static PGconn *connect_verbose(int port, const char *dbname, const char *extra)
{
    char conninfo[CONNINFO_LEN + 128];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=%s user=postgres %s", port,
             dbname, extra ? extra : "");
    PGconn *c = PQconnectStart(conninfo);
    assert_non_null(c);
    PQsetErrorVerbosity(c, PQERRORS_VERBOSE);
    PostgresPollingStatusType st =
        PQstatus(c) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PGRES_POLLING_WRITING;
    long long deadline = harness_now_ms() + 10000;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        struct pollfd pfd = {PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        long long left = deadline - harness_now_ms();
        if (left <= 0)
            fail_msg("connecting to port %d (%s) took over 10 s", port, conninfo);
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
            fail_msg("poll: %s", strerror(errno));
        st = PQconnectPoll(c);
    }
    return c;
}

/* connect_verbose that must succeed. */
static PGconn *connect_ok(int port, const char *dbname, const char *extra)
{
    PGconn *c = connect_verbose(port, dbname, extra);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQfinish(c);
        fail_msg("connect to port %d, database %s (%s) failed: %s", port, dbname,
                 extra ? extra : "", msg);
    }
    return c;
}

/* connect_verbose that must fail with an error message containing each of the needles. */
static void connect_fails(int port, const char *dbname, const char *extra, const char *needle,
                          const char *needle2)
{
    PGconn *c = connect_verbose(port, dbname, extra);
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
    ConnStatusType st = PQstatus(c);
    PQfinish(c);
    const char *opts = extra != NULL ? extra : "";
    if (st == CONNECTION_OK)
        fail_msg("connect to port %d (%s) succeeded; expected \"%s\"", port, opts, needle);
    if (strstr(msg, needle) == NULL || (needle2 != NULL && strstr(msg, needle2) == NULL))
        fail_msg("connect to port %d (%s) failed with \"%s\"; expected \"%s\"%s%s", port, opts, msg,
                 needle, needle2 ? " and " : "", needle2 ? needle2 : "");
}

/* Asserts that sql returns exactly expected (a single value). */
static void assert_value(PGconn *c, const char *sql, const char *expected)
{
    char *v = harness_query_value(c, sql);
    if (v == NULL || strcmp(v, expected) != 0) {
        char got[128];
        snprintf(got, sizeof(got), "%s", v ? v : "(null)");
        free(v);
        fail_msg("\"%s\" returned \"%s\", expected \"%s\"", sql, got, expected);
    }
    free(v);
}

/* The connection uses TLS 1.3, as libpq sees it. */
static void assert_tls13(PGconn *c)
{
    assert_int_equal(PQsslInUse(c), 1);
    const char *protocol = PQsslAttribute(c, "protocol");
    assert_non_null(protocol);
    assert_string_equal(protocol, "TLSv1.3");
}

/* The server connection behind c (in its transaction or session) does (or does not) use TLS. */
static void assert_server_tls(PGconn *c, bool tls)
{
    assert_value(c, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", tls ? "t" : "f");
}

/*
 * Runs a SHOW command of the admin console on admin and returns (malloc'd) the value of
 * column in the first row whose column key equals value; fails the test when there is none.
 */
static char *console_lookup(PGconn *admin, const char *show, const char *key, const char *value,
                            const char *column)
{
    PGresult *r = PQexec(admin, show);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
        PQclear(r);
        fail_msg("%s failed: %s", show, msg);
    }
    int k = PQfnumber(r, key), col = PQfnumber(r, column);
    assert_true(k >= 0);
    assert_true(col >= 0);
    char *found = NULL;
    for (int i = 0; i < PQntuples(r) && found == NULL; i++)
        if (strcmp(PQgetvalue(r, i, k), value) == 0)
            found = strdup(PQgetvalue(r, i, col));
    int rows = PQntuples(r);
    PQclear(r);
    if (found == NULL)
        fail_msg("%s: no row (of %d) with %s = %s", show, rows, key, value);
    return found;
}

/* Asserts that a tls column says TLS 1.3 with a cipher ("TLSv1.3/TLS_AES_256_GCM_SHA384"). */
static void assert_tls13_column(const char *tls)
{
    if (strncmp(tls, TLS13_PREFIX, strlen(TLS13_PREFIX)) != 0 ||
        strlen(tls) <= strlen(TLS13_PREFIX) || strstr(tls, "(NONE)") != NULL)
        fail_msg("tls column is \"%s\", expected TLSv1.3/<cipher>", tls);
    assert_non_null(strstr(tls, "TLS_"));
}

/* ---- raw sockets ---- */

/* Reads one byte within the socket's receive timeout: the byte, 0 on EOF, -1 otherwise. */
static int raw_read_byte(int fd)
{
    unsigned char b;
    ssize_t r;
    do
        r = recv(fd, &b, 1, 0);
    while (r < 0 && errno == EINTR);
    return r == 1 ? b : r == 0 ? 0 : -1;
}

/* A raw connection that has sent an SSLRequest and been answered 'S'. */
static int raw_ssl_request(const fixture_t *f)
{
    int fd = harness_raw_connect(f->proc.port);
    harness_raw_send(fd, SSL_REQUEST_BYTES, 8);
    assert_int_equal(raw_read_byte(fd), 'S');
    return fd;
}

/* A real ClientHello, as OpenSSL's client sends it first; returns its length. */
static size_t make_client_hello(uint8_t *out, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    assert_non_null(rbio);
    assert_non_null(wbio);
    SSL_set_bio(ssl, rbio, wbio); /* ssl owns both from here */
    SSL_set_connect_state(ssl);
    int rc = SSL_do_handshake(ssl);
    assert_int_equal(SSL_get_error(ssl, rc), SSL_ERROR_WANT_READ);
    int n = BIO_read(wbio, out, (int)cap);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    assert_true(n > 100);
    assert_int_equal(out[0], 0x16); /* a handshake record */
    return (size_t)n;
}

/* Fields of an ErrorResponse body. */
static void parse_error(const char *body, size_t len, char *severity, char *sqlstate, char *message,
                        size_t message_len)
{
    severity[0] = sqlstate[0] = message[0] = '\0';
    size_t i = 0;
    while (i < len && body[i] != '\0') {
        char field = body[i++];
        const char *value = body + i;
        size_t vlen = strnlen(value, len - i);
        if (field == 'V')
            snprintf(severity, 16, "%.*s", (int)vlen, value);
        else if (field == 'C')
            snprintf(sqlstate, 6, "%.*s", (int)vlen, value);
        else if (field == 'M')
            snprintf(message, message_len, "%.*s", (int)vlen, value);
        i += vlen + 1;
    }
}

/* The next message on fd is a FATAL ErrorResponse sqlstate / message, then the close. */
static void raw_expect_fatal(int fd, const char *sqlstate, const char *message)
{
    char body[4096], severity[16], code[6], text[512];
    size_t len = 0;
    int type = harness_raw_read_message(fd, body, sizeof(body), &len);
    if (type != 'E')
        fail_msg("expected ErrorResponse %s, got %s", sqlstate,
                 type == 0  ? "EOF"
                 : type < 0 ? "a timeout"
                            : "another message");
    parse_error(body, len, severity, code, text, sizeof(text));
    assert_string_equal(severity, "FATAL");
    assert_string_equal(code, sqlstate);
    assert_string_equal(text, message);
    assert_true(harness_raw_closed(fd, 2000));
}

/*
 * The daemon lives and serves new TLS clients (several: they spread over both workers). They
 * present the client-postgres certificate, which every client_tls_sslmode and auth_type of
 * these tests accepts for user postgres.
 */
static void others_served(const fixture_t *f)
{
    assert_true(harness_pgturbo_alive(&f->proc));
    char opts[CONNINFO_LEN];
    tls_opts(f, opts, sizeof(opts), "require", NULL, "postgres");
    for (int i = 0; i < 4; i++) {
        PGconn *c = connect_ok(f->proc.port, "postgres", opts);
        assert_tls13(c);
        assert_value(c, "SELECT 1", "1");
        PQfinish(c);
    }
}

/* A StartupMessage for user postgres, database postgres, protocol 3.0; returns its length. */
static size_t build_startup(uint8_t *out, size_t cap)
{
    static const char params[] = "user\0postgres\0database\0postgres\0"; /* and a final NUL */
    uint32_t len = 8 + sizeof(params);
    assert_true(cap >= len);
    const uint8_t head[8] = {0, 0, 0, (uint8_t)len, 0, 3, 0, 0};
    memcpy(out, head, 8);
    memcpy(out + 8, params, sizeof(params));
    return len;
}

/*
 * A client that speaks TLS with OpenSSL directly (blocking, with the raw socket's 5 s receive
 * timeout), so that a test decides where its TLS records begin and end, which libpq does not
 * let it do.
 */
typedef struct raw_tls {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
} raw_tls_t;

/* Sends all n bytes of p in one SSL_write: TLS records of up to 16384 bytes each. */
static void raw_tls_send(raw_tls_t *t, const void *p, size_t n)
{
    size_t written = 0;
    if (SSL_write_ex(t->ssl, p, n, &written) != 1 || written != n)
        fail_msg("SSL_write of %zu bytes failed", n);
}

/* Reads exactly n bytes: true when done, false on EOF, timeout or error. */
static bool raw_tls_read_full(raw_tls_t *t, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        size_t got = 0;
        if (SSL_read_ex(t->ssl, b, n, &got) != 1)
            return false;
        b += got;
        n -= got;
    }
    return true;
}

/* Reads one message (body up to cap bytes; longer ones fail the test); returns its type, or -1
 * on EOF, timeout or error. */
static int raw_tls_read_message(raw_tls_t *t, char *body, size_t cap, size_t *len)
{
    uint8_t h[5];
    if (!raw_tls_read_full(t, h, 5))
        return -1;
    uint32_t mlen = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
    if (mlen < 4 || mlen - 4 > cap)
        fail_msg("message '%c' of length %u", h[0], mlen);
    *len = mlen - 4;
    return raw_tls_read_full(t, body, *len) ? h[0] : -1;
}

/*
 * Connects, starts TLS and logs in as postgres to database postgres. With gssenc, it first
 * asks for GSSAPI encryption, as libpq does when it has Kerberos credentials, and expects 'N'.
 */
static void raw_tls_login(const fixture_t *f, raw_tls_t *t, bool gssenc)
{
    if (gssenc) {
        t->fd = harness_raw_connect(f->proc.port);
        harness_raw_send(t->fd, "\x00\x00\x00\x08\x04\xd2\x16\x30", 8); /* 1234.5680 */
        assert_int_equal(raw_read_byte(t->fd), 'N');
        harness_raw_send(t->fd, SSL_REQUEST_BYTES, 8);
        assert_int_equal(raw_read_byte(t->fd), 'S');
    } else {
        t->fd = raw_ssl_request(f);
    }
    t->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(t->ctx);
    t->ssl = SSL_new(t->ctx);
    assert_non_null(t->ssl);
    assert_int_equal(SSL_set_fd(t->ssl, t->fd), 1);
    if (SSL_connect(t->ssl) != 1)
        fail_msg("TLS handshake with pgturbo failed");
    uint8_t pkt[128];
    raw_tls_send(t, pkt, build_startup(pkt, sizeof(pkt)));
    char body[4096];
    size_t len;
    int type;
    while ((type = raw_tls_read_message(t, body, sizeof(body), &len)) != 'Z')
        if (type < 0 || type == 'E')
            fail_msg("login over raw TLS failed (%s)", type < 0 ? "no answer" : "ErrorResponse");
}

static void raw_tls_close(raw_tls_t *t)
{
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    close(t->fd);
}

/* ---- setup ---- */

static int setup_group(void **state)
{
    (void)state;
    PGconn *c = harness_connect_direct("postgres");
    harness_silence_notices(c);
    harness_exec_ok(c, "DROP ROLE IF EXISTS pgturbo_tls");
    harness_exec_ok(c, "CREATE ROLE pgturbo_tls LOGIN");
    harness_exec_ok(c, "DROP ROLE IF EXISTS pgturbo_cert");
    harness_exec_ok(c, "CREATE ROLE pgturbo_cert LOGIN");
    harness_exec_ok(c, "DROP TABLE IF EXISTS tls_proxy_copy");
    harness_exec_ok(c, "CREATE TABLE tls_proxy_copy (id int PRIMARY KEY, payload text)");
    PQfinish(c);
    return 0;
}

static int teardown_group(void **state)
{
    (void)state;
    PGconn *c = harness_connect_direct("postgres");
    harness_silence_notices(c);
    harness_exec_ok(c, "DROP TABLE IF EXISTS tls_proxy_copy");
    harness_exec_ok(c, "DROP ROLE IF EXISTS pgturbo_tls");
    harness_exec_ok(c, "DROP ROLE IF EXISTS pgturbo_cert");
    PQfinish(c);
    return 0;
}

static int setup_fixture(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/pgturbo-tlsp.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char cmd[512], out[4096];
    snprintf(cmd, sizeof(cmd), "%s/tests/harness/certs.sh %s postgres alice", PGTURBO_SOURCE_DIR,
             f->dir);
    if (harness_shell(cmd, out, sizeof(out)) != 0)
        fail_msg("certs.sh failed:\n%s", out);
    *state = f;
    return 0;
}

static int teardown_fixture(void **state)
{
    fixture_t *f = *state;
    if (f->running)
        harness_stop_pgturbo(&f->proc, 20);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    harness_shell(cmd, NULL, 0);
    free(f);
    return 0;
}

/* ---- clients facing pgturbo over TLS ---- */

static void require_client_runs_queries_over_tls(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, NULL, NULL);
    char opts[CONNINFO_LEN], app[CONNINFO_LEN + 64];
    tls_opts(f, opts, sizeof(opts), "require", NULL, NULL);
    snprintf(app, sizeof(app), "%s application_name=tls-app", opts);
    PGconn *c = connect_ok(f->proc.port, "postgres", app);
    assert_tls13(c);
    assert_value(c, "SELECT 1", "1");
    assert_value(c, "SELECT current_user", "postgres");

    /* The console sees the client's TLS; it must come over TLS itself. */
    PGconn *admin = connect_ok(f->proc.port, "pgturbo", opts);
    char *tls = console_lookup(admin, "SHOW CLIENTS", "application_name", "tls-app", "tls");
    assert_tls13_column(tls);
    free(tls);
    PQfinish(admin);
    PQfinish(c);
    finish(f);
}

static void verify_full_client_checks_pgturbo_certificate(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, NULL, NULL);
    char opts[CONNINFO_LEN], extra[CONNINFO_LEN + 64];
    tls_opts(f, opts, sizeof(opts), "verify-full", "ca.crt", NULL);

    snprintf(extra, sizeof(extra), "%s host=localhost", opts);
    PGconn *c = connect_ok(f->proc.port, "postgres", extra);
    assert_tls13(c);
    assert_value(c, "SELECT 1", "1");
    PQfinish(c);

    snprintf(extra, sizeof(extra), "%s host=localhost hostaddr=127.0.0.1", opts);
    c = connect_ok(f->proc.port, "postgres", extra);
    assert_tls13(c);
    assert_value(c, "SELECT 1", "1");
    PQfinish(c);
    finish(f);
}

static void verify_full_client_refuses_certificate_of_untrusted_ca(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, NULL, NULL);
    char opts[CONNINFO_LEN], extra[CONNINFO_LEN + 64];
    tls_opts(f, opts, sizeof(opts), "verify-full", "other-ca.crt", NULL);
    snprintf(extra, sizeof(extra), "%s host=localhost hostaddr=127.0.0.1", opts);
    connect_fails(f->proc.port, "postgres", extra, "certificate verify failed", NULL);
    assert_log_has(f, "TLS handshake failed: tlsv1 alert unknown ca");
    others_served(f);
    finish(f);
}

static void plain_client_is_refused_when_tls_is_required(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, NULL, NULL);
    char opts[CONNINFO_LEN];
    tls_opts(f, opts, sizeof(opts), "disable", NULL, NULL);
    connect_fails(f->proc.port, "postgres", opts, "FATAL:  28000: SSL required", NULL);
    connect_fails(f->proc.port, "pgturbo", opts, "FATAL:  28000: SSL required", NULL);

    /* On the wire: a StartupMessage without SSLRequest gets the error in plain, then the close. */
    int fd = harness_raw_connect(f->proc.port);
    harness_raw_startup(fd, "postgres", "postgres");
    raw_expect_fatal(fd, "28000", "SSL required");
    close(fd);
    others_served(f);
    finish(f);
}

/* client_tls_sslmode prefer or allow: plain and TLS clients alike. */
static void plain_and_tls_clients_both_accepted(fixture_t *f, const char *mode)
{
    start(f, mode, false, NULL, NULL);
    char opts[CONNINFO_LEN], extra[CONNINFO_LEN + 64];
    tls_opts(f, opts, sizeof(opts), "disable", NULL, NULL);
    snprintf(extra, sizeof(extra), "%s application_name=plain-app", opts);
    PGconn *plain = connect_ok(f->proc.port, "postgres", extra);
    assert_int_equal(PQsslInUse(plain), 0);
    assert_value(plain, "SELECT 1", "1");

    /* libpq's default sslmode, prefer, gets TLS. */
    tls_opts(f, opts, sizeof(opts), "prefer", NULL, NULL);
    snprintf(extra, sizeof(extra), "%s application_name=tls-app", opts);
    PGconn *tls = connect_ok(f->proc.port, "postgres", extra);
    assert_tls13(tls);
    assert_value(tls, "SELECT 2", "2");

    PGconn *admin = connect_ok(f->proc.port, "pgturbo", opts);
    char *column = console_lookup(admin, "SHOW CLIENTS", "application_name", "plain-app", "tls");
    assert_string_equal(column, "");
    free(column);
    column = console_lookup(admin, "SHOW CLIENTS", "application_name", "tls-app", "tls");
    assert_tls13_column(column);
    free(column);
    PQfinish(admin);
    PQfinish(tls);
    PQfinish(plain);
    finish(f);
}

static void plain_and_tls_clients_both_accepted_when_tls_is_preferred(void **state)
{
    plain_and_tls_clients_both_accepted(*state, "prefer");
}

static void plain_and_tls_clients_both_accepted_when_tls_is_allowed(void **state)
{
    plain_and_tls_clients_both_accepted(*state, "allow");
}

/* client_tls_sslmode verify-ca or verify-full: a certificate of client_tls_ca_file or nothing. */
static void client_certificate_of_the_ca_required(fixture_t *f, const char *mode)
{
    start(f, mode, true, NULL, NULL);
    char opts[CONNINFO_LEN];

    /* TLS 1.3 lets the client finish first: it learns of the refusal when it reads. */
    tls_opts(f, opts, sizeof(opts), "require", NULL, NULL);
    connect_fails(f->proc.port, "postgres", opts, "certificate required", NULL);
    assert_log_has(f, "TLS handshake failed: peer did not return a certificate");

    tls_opts(f, opts, sizeof(opts), "disable", NULL, NULL);
    connect_fails(f->proc.port, "postgres", opts, "FATAL:  28000: SSL required", NULL);

    tls_opts(f, opts, sizeof(opts), "require", NULL, "postgres");
    PGconn *c = connect_ok(f->proc.port, "postgres", opts);
    assert_tls13(c);
    assert_value(c, "SELECT 1", "1");
    PQfinish(c);

    /* The CN need not match the user unless auth_type is cert. */
    tls_opts(f, opts, sizeof(opts), "verify-full", "ca.crt", "alice");
    char extra[CONNINFO_LEN + 64];
    snprintf(extra, sizeof(extra), "%s host=localhost hostaddr=127.0.0.1", opts);
    c = connect_ok(f->proc.port, "postgres", extra);
    assert_value(c, "SELECT current_user", "postgres");
    PQfinish(c);
    finish(f);
}

static void verify_ca_requires_a_client_certificate_of_the_ca(void **state)
{
    client_certificate_of_the_ca_required(*state, "verify-ca");
}

static void verify_full_requires_a_client_certificate_of_the_ca(void **state)
{
    client_certificate_of_the_ca_required(*state, "verify-full");
}

/* client_tls_protocols and client_tls_ciphers choose what libpq gets. */
static void client_tls_protocols_and_ciphers_are_applied(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false,
          "client_tls_protocols = tlsv1.2\nclient_tls_ciphers = ECDHE-ECDSA-AES128-GCM-SHA256\n",
          NULL);
    char opts[CONNINFO_LEN], extra[CONNINFO_LEN + 64];
    tls_opts(f, opts, sizeof(opts), "require", NULL, NULL);
    snprintf(extra, sizeof(extra), "%s application_name=tls12-app", opts);
    PGconn *c = connect_ok(f->proc.port, "postgres", extra);
    assert_string_equal(PQsslAttribute(c, "protocol"), "TLSv1.2");
    assert_string_equal(PQsslAttribute(c, "cipher"), "ECDHE-ECDSA-AES128-GCM-SHA256");
    assert_value(c, "SELECT 1", "1");
    PGconn *admin = connect_ok(f->proc.port, "pgturbo", opts);
    char *tls = console_lookup(admin, "SHOW CLIENTS", "application_name", "tls12-app", "tls");
    assert_string_equal(tls, "TLSv1.2/ECDHE-ECDSA-AES128-GCM-SHA256");
    free(tls);
    PQfinish(admin);
    PQfinish(c);

    /* A client that wants TLS 1.3 only finds no common version. */
    snprintf(extra, sizeof(extra), "%s ssl_min_protocol_version=TLSv1.3", opts);
    connect_fails(f->proc.port, "postgres", extra, "SSL error", NULL);
    assert_log_has(f, "TLS handshake failed: unsupported protocol");
    finish(f);

    /* The default ("secure") still speaks TLS 1.2 to a client that goes no higher. */
    start(f, "require", false, NULL, NULL);
    snprintf(extra, sizeof(extra), "%s ssl_max_protocol_version=TLSv1.2", opts);
    c = connect_ok(f->proc.port, "postgres", extra);
    assert_string_equal(PQsslAttribute(c, "protocol"), "TLSv1.2");
    assert_value(c, "SELECT 1", "1");
    PQfinish(c);
    finish(f);
}

static void cert_auth_accepts_only_the_user_named_by_the_certificate(void **state)
{
    fixture_t *f = *state;
    start(f, "verify-ca", true, "auth_type = cert\n", NULL);
    char opts[CONNINFO_LEN];
    tls_opts(f, opts, sizeof(opts), "require", NULL, "postgres");
    PGconn *c = connect_ok(f->proc.port, "postgres", opts);
    assert_tls13(c);
    assert_value(c, "SELECT current_user", "postgres");
    PQfinish(c);

    tls_opts(f, opts, sizeof(opts), "require", NULL, "alice");
    connect_fails(f->proc.port, "postgres", opts,
                  "FATAL:  28000: certificate authentication failed for user \"postgres\"", NULL);
    others_served(f);
    finish(f);
}

static void cert_auth_without_client_certificate_is_refused(void **state)
{
    fixture_t *f = *state;
    /* prefer with a CA: certificates are checked when sent, but not asked for. */
    start(f, "prefer", true, "auth_type = cert\n", NULL);
    char opts[CONNINFO_LEN];
    tls_opts(f, opts, sizeof(opts), "require", NULL, NULL);
    connect_fails(f->proc.port, "postgres", opts,
                  "FATAL:  28000: certificate authentication failed for user \"postgres\"", NULL);
    tls_opts(f, opts, sizeof(opts), "disable", NULL, NULL);
    connect_fails(f->proc.port, "postgres", opts,
                  "FATAL:  28000: certificate authentication failed for user \"postgres\"", NULL);
    tls_opts(f, opts, sizeof(opts), "require", NULL, "postgres");
    PGconn *c = connect_ok(f->proc.port, "postgres", opts);
    assert_value(c, "SELECT current_user", "postgres");
    PQfinish(c);
    finish(f);
}

/* ---- data through TLS on both sides ---- */

static void large_results_stream_through_tls_on_both_sides(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, "pool_mode = transaction\ndefault_pool_size = 2\n", NULL);
    char opts[CONNINFO_LEN];
    tls_opts(f, opts, sizeof(opts), "require", NULL, NULL);
    PGconn *c = connect_ok(f->proc.port, "postgres", opts);
    assert_tls13(c);
    assert_server_tls(c, true);

    /* One value of 1 MB: a DataRow over many TLS records each way. */
    PGresult *r = PQexec(c, "SELECT repeat('x', 1000000)");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    assert_int_equal(PQgetlength(r, 0, 0), BIG_VALUE);
    assert_int_equal(strspn(PQgetvalue(r, 0, 0), "x"), BIG_VALUE);
    PQclear(r);

    /* 100,000 small rows. */
    r = PQexec(c, "SELECT g, md5(g::text) FROM generate_series(1, 100000) g");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), MANY_ROWS);
    for (int i = 0; i < MANY_ROWS; i++) {
        if (atoi(PQgetvalue(r, i, 0)) != i + 1 || PQgetlength(r, i, 1) != 32)
            fail_msg("row %d is (%s, %s)", i, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
    }
    PQclear(r);

    /* A 1 MB query the other way. */
    size_t cap = BIG_VALUE + 128;
    char *sql = malloc(cap);
    assert_non_null(sql);
    int n = snprintf(sql, cap, "SELECT length(v) || ' ' || (v = repeat('x', %d)) FROM (SELECT '",
                     BIG_VALUE);
    memset(sql + n, 'x', BIG_VALUE);
    snprintf(sql + n + BIG_VALUE, cap - (size_t)n - BIG_VALUE, "'::text AS v) s");
    assert_value(c, sql, "1000000 true");
    free(sql);
    assert_value(c, "SELECT 1", "1");
    PQfinish(c);
    finish(f);
}

/* Row id of tls_proxy_copy as COPY's text format has it: "id\tpayload\n"; returns its length. */
static int copy_line(char *out, size_t cap, int id)
{
    char payload[101];
    memset(payload, 'a' + id % 26, 100);
    payload[100] = '\0';
    return snprintf(out, cap, "%d\t%s\n", id, payload);
}

static void copy_in_and_out_through_tls(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, "pool_mode = transaction\ndefault_pool_size = 2\n", NULL);
    char opts[CONNINFO_LEN];
    tls_opts(f, opts, sizeof(opts), "require", NULL, NULL);
    PGconn *c = connect_ok(f->proc.port, "postgres", opts);
    assert_tls13(c);
    harness_exec_ok(c, "TRUNCATE tls_proxy_copy");

    PGresult *r = PQexec(c, "COPY tls_proxy_copy (id, payload) FROM STDIN");
    assert_int_equal(PQresultStatus(r), PGRES_COPY_IN);
    PQclear(r);
    static char chunk[65536];
    size_t used = 0;
    long long total = 0;
    for (int id = 1; id <= COPY_ROWS; id++) {
        int n = copy_line(chunk + used, sizeof(chunk) - used, id);
        used += (size_t)n;
        total += n;
        if (used > sizeof(chunk) - 256 || id == COPY_ROWS) {
            assert_int_equal(PQputCopyData(c, chunk, (int)used), 1);
            used = 0;
        }
    }
    assert_int_equal(PQputCopyEnd(c, NULL), 1);
    r = PQgetResult(c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("COPY FROM STDIN: %s", PQresultErrorMessage(r));
    assert_string_equal(PQcmdTuples(r), "20000");
    PQclear(r);
    assert_null(PQgetResult(c));
    assert_value(c, "SELECT count(*) FROM tls_proxy_copy", "20000");
    assert_value(c, "SELECT sum(id) FROM tls_proxy_copy", "200010000");
    assert_value(c,
                 "SELECT count(*) FROM tls_proxy_copy "
                 "WHERE payload <> repeat(chr(97 + id % 26), 100)",
                 "0");

    /* And back out, line by line. */
    r = PQexec(c, "COPY (SELECT id, payload FROM tls_proxy_copy ORDER BY id) TO STDOUT");
    assert_int_equal(PQresultStatus(r), PGRES_COPY_OUT);
    PQclear(r);
    int rows = 0;
    long long bytes = 0;
    char *line;
    int len;
    while ((len = PQgetCopyData(c, &line, 0)) > 0) {
        char expected[160];
        int n = copy_line(expected, sizeof(expected), rows + 1);
        if (len != n || memcmp(line, expected, (size_t)n) != 0)
            fail_msg("COPY TO STDOUT line %d is \"%.*s\"", rows + 1, len, line);
        bytes += len;
        rows++;
        PQfreemem(line);
    }
    assert_int_equal(len, -1);
    r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    assert_null(PQgetResult(c));
    assert_int_equal(rows, COPY_ROWS);
    assert_int_equal(bytes, total);
    harness_exec_ok(c, "TRUNCATE tls_proxy_copy");
    PQfinish(c);
    finish(f);
}

/* One of the TLS clients that share a pool of two servers. */
typedef struct pooled_client {
    pthread_t thread;
    char conninfo[CONNINFO_LEN + 128];
    bool tls;              /* PQsslInUse said so */
    int done;              /* transactions committed */
    int pids[POOLED_TXNS]; /* server backend of each transaction */
    char error[256];       /* the first failure, or "" */
} pooled_client_t;

/* Runs on its own thread: no cmocka assertions here. */
static void *pooled_client_main(void *arg)
{
    pooled_client_t *pc = arg;
    PGconn *c = PQconnectdb(pc->conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(pc->error, sizeof(pc->error), "connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    pc->tls = PQsslInUse(c) == 1;
    for (int i = 0; i < POOLED_TXNS; i++) {
        PGresult *b = PQexec(c, "BEGIN");
        PGresult *s1 = PQexec(c, "SELECT pg_backend_pid()");
        PGresult *s2 = PQexec(c, "SELECT pg_backend_pid() FROM pg_sleep(0.01)");
        PGresult *e = PQexec(c, "COMMIT");
        bool ok = PQresultStatus(b) == PGRES_COMMAND_OK && PQresultStatus(s1) == PGRES_TUPLES_OK &&
                  PQresultStatus(s2) == PGRES_TUPLES_OK && PQresultStatus(e) == PGRES_COMMAND_OK &&
                  PQntuples(s1) == 1 && PQntuples(s2) == 1;
        if (ok && strcmp(PQgetvalue(s1, 0, 0), PQgetvalue(s2, 0, 0)) != 0)
            snprintf(pc->error, sizeof(pc->error), "transaction %d moved from backend %s to %s", i,
                     PQgetvalue(s1, 0, 0), PQgetvalue(s2, 0, 0));
        else if (!ok)
            snprintf(pc->error, sizeof(pc->error), "transaction %d: %s", i, PQerrorMessage(c));
        else
            pc->pids[pc->done++] = atoi(PQgetvalue(s1, 0, 0));
        PQclear(b);
        PQclear(s1);
        PQclear(s2);
        PQclear(e);
        if (pc->error[0] != '\0')
            break;
    }
    PQfinish(c);
    return NULL;
}

static void transaction_pooling_of_many_tls_clients_over_two_servers(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, "pool_mode = transaction\ndefault_pool_size = 2\n", NULL);
    char opts[CONNINFO_LEN];
    tls_opts(f, opts, sizeof(opts), "require", NULL, NULL);
    static pooled_client_t pcs[POOLED_CLIENTS];
    memset(pcs, 0, sizeof(pcs));
    for (int i = 0; i < POOLED_CLIENTS; i++) {
        snprintf(pcs[i].conninfo, sizeof(pcs[i].conninfo),
                 "host=127.0.0.1 port=%d dbname=postgres user=postgres connect_timeout=30 %s",
                 f->proc.port, opts);
        assert_int_equal(pthread_create(&pcs[i].thread, NULL, pooled_client_main, &pcs[i]), 0);
    }
    int backends[2 * POOLED_CLIENTS * POOLED_TXNS];
    int n_backends = 0;
    for (int i = 0; i < POOLED_CLIENTS; i++)
        assert_int_equal(pthread_join(pcs[i].thread, NULL), 0);
    for (int i = 0; i < POOLED_CLIENTS; i++) {
        if (pcs[i].error[0] != '\0')
            fail_msg("client %d: %s", i, pcs[i].error);
        assert_true(pcs[i].tls);
        assert_int_equal(pcs[i].done, POOLED_TXNS);
        for (int t = 0; t < POOLED_TXNS; t++) {
            bool seen = false;
            for (int k = 0; k < n_backends; k++)
                seen = seen || backends[k] == pcs[i].pids[t];
            if (!seen)
                backends[n_backends++] = pcs[i].pids[t];
        }
    }
    if (n_backends > 2)
        fail_msg("%d server backends served a pool of 2", n_backends);
    others_served(f);
    finish(f);
}

/*
 * Decrypted bytes that OpenSSL holds after a read, with nothing left in the socket, must be read
 * at once: epoll will not say so. A Query of 28672 bytes goes in two TLS records, 12288 then
 * 16384 bytes. pgturbo keeps the first in a buffer of 16384 bytes that then has room for 4096
 * more, so its read of the second record leaves 12288 bytes in OpenSSL and none in the socket;
 * the client sends nothing more until it is answered.
 */
static void client_bytes_held_in_openssl_are_read_at_once(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, NULL, NULL);
    raw_tls_t t;
    raw_tls_login(f, &t, false);
    enum { FIRST = 12288, TOTAL = 12288 + 16384 };
    static char msg[TOTAL];
    const char *head = "SELECT length('", *tail = "')";
    size_t xs = TOTAL - 5 - strlen(head) - strlen(tail) - 1;
    msg[0] = 'Q';
    msg[1] = (char)(((TOTAL - 1) >> 24) & 0xff);
    msg[2] = (char)(((TOTAL - 1) >> 16) & 0xff);
    msg[3] = (char)(((TOTAL - 1) >> 8) & 0xff);
    msg[4] = (char)((TOTAL - 1) & 0xff);
    memcpy(msg + 5, head, strlen(head));
    memset(msg + 5 + strlen(head), 'x', xs);
    memcpy(msg + 5 + strlen(head) + xs, tail, strlen(tail) + 1);
    raw_tls_send(&t, msg, FIRST);
    harness_sleep_ms(200);
    raw_tls_send(&t, msg + FIRST, TOTAL - FIRST);
    char body[4096], expected[16];
    snprintf(expected, sizeof(expected), "%zu", xs);
    size_t len;
    int type;
    bool seen_row = false;
    while ((type = raw_tls_read_message(&t, body, sizeof(body), &len)) != 'Z') {
        if (type < 0)
            fail_msg("no answer to the query within 5 s: pgturbo did not read what OpenSSL held");
        assert_true(type != 'E');
        if (type == 'D') {
            /* One column: int16 count, int32 length, the text. */
            assert_true(len == 6 + strlen(expected));
            assert_memory_equal(body + 6, expected, strlen(expected));
            seen_row = true;
        }
    }
    assert_true(seen_row);
    raw_tls_close(&t);
    finish(f);
}

/* A GSSENCRequest refused with 'N', then an SSLRequest on the same connection: TLS. */
static void ssl_request_after_refused_gssenc_request_starts_tls(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, NULL, NULL);
    raw_tls_t t;
    raw_tls_login(f, &t, true);
    static const char query[] = "Q\0\0\0\x0eSELECT 42";
    raw_tls_send(&t, query, sizeof(query)); /* the length counts the final NUL */
    char body[256];
    size_t len;
    int type;
    bool seen = false;
    while ((type = raw_tls_read_message(&t, body, sizeof(body), &len)) != 'Z') {
        assert_true(type > 0 && type != 'E');
        if (type == 'D') {
            assert_int_equal(len, 8);
            assert_memory_equal(body + 6, "42", 2);
            seen = true;
        }
    }
    assert_true(seen);
    raw_tls_close(&t);
    finish(f);
}

/*
 * A client that does not read while 20 MB of result come: pgturbo's TLS writes to it would
 * block, its buffer fills past the high-water mark and it stops reading the server; then the
 * client reads everything, which must arrive intact and in order.
 */
static void slow_tls_client_gets_a_large_result_intact(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, "pool_mode = transaction\n", NULL);
    char opts[CONNINFO_LEN];
    tls_opts(f, opts, sizeof(opts), "require", NULL, NULL);
    PGconn *c = connect_ok(f->proc.port, "postgres", opts);
    assert_server_tls(c, true);
    assert_int_equal(PQsendQuery(c, "SELECT g, repeat(md5(g::text), 30) "
                                    "FROM generate_series(1, 20000) g"),
                     1);
    harness_sleep_ms(1500);
    PGresult *r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 20000);
    for (int i = 0; i < 20000; i++) {
        if (atoi(PQgetvalue(r, i, 0)) != i + 1 || PQgetlength(r, i, 1) != 960)
            fail_msg("row %d is (%s, %d bytes)", i, PQgetvalue(r, i, 0), PQgetlength(r, i, 1));
    }
    PQclear(r);
    assert_null(PQgetResult(c));
    assert_value(c, "SELECT 1", "1");
    PQfinish(c);
    finish(f);
}

/* ---- pgturbo facing PostgreSQL over TLS ---- */

/* The [databases] line of "tlsonly": the cluster as pgturbo_tls, which pg_hba lets in over
 * TLS only. */
static void tls_only_database(char *out, size_t len)
{
    snprintf(out, len, "tlsonly = host=127.0.0.1 port=%d dbname=postgres user=pgturbo_tls\n",
             harness_pg_port());
}

static void server_tls_require_reaches_a_tls_only_role(void **state)
{
    fixture_t *f = *state;
    char db[256];
    tls_only_database(db, sizeof(db));
    start(f, "disable", false, "server_tls_sslmode = require\n", db);
    PGconn *c = connect_ok(f->proc.port, "tlsonly", NULL);
    assert_int_equal(PQsslInUse(c), 0);
    assert_value(c, "SELECT current_user", "pgturbo_tls");
    assert_server_tls(c, true);
    PGconn *admin = connect_ok(f->proc.port, "pgturbo", NULL);
    char *tls = console_lookup(admin, "SHOW SERVERS", "user", "pgturbo_tls", "tls");
    assert_tls13_column(tls);
    free(tls);
    /* The client side of the same connection is plain. */
    tls = console_lookup(admin, "SHOW CLIENTS", "database", "tlsonly", "tls");
    assert_string_equal(tls, "");
    free(tls);
    PQfinish(admin);
    PQfinish(c);
    finish(f);
}

static void server_tls_disable_cannot_reach_a_tls_only_role(void **state)
{
    fixture_t *f = *state;
    char db[256];
    tls_only_database(db, sizeof(db));
    start(f, "disable", false, "server_tls_sslmode = disable\n", db);
    connect_fails(f->proc.port, "tlsonly", NULL,
                  "FATAL:  28000: pg_hba.conf rejects connection for host \"127.0.0.1\", user "
                  "\"pgturbo_tls\", database \"postgres\", no encryption",
                  NULL);
    /* Other users still get in, over plain connections. */
    PGconn *c = connect_ok(f->proc.port, "postgres", NULL);
    assert_server_tls(c, false);
    PGconn *admin = connect_ok(f->proc.port, "pgturbo", NULL);
    char *tls = console_lookup(admin, "SHOW SERVERS", "database", "postgres", "tls");
    assert_string_equal(tls, "");
    free(tls);
    PQfinish(admin);
    PQfinish(c);
    finish(f);
}

static void server_tls_prefer_is_the_default_and_uses_tls(void **state)
{
    fixture_t *f = *state;
    start(f, "disable", false, NULL, NULL);
    PGconn *c = connect_ok(f->proc.port, "postgres", NULL);
    assert_server_tls(c, true);
    PGconn *admin = connect_ok(f->proc.port, "pgturbo", NULL);
    char *tls = console_lookup(admin, "SHOW SERVERS", "database", "postgres", "tls");
    assert_tls13_column(tls);
    free(tls);
    PQfinish(admin);
    PQfinish(c);
    finish(f);
}

static void server_tls_verify_full_checks_the_cluster_certificate(void **state)
{
    fixture_t *f = *state;
    char settings[512], db[256];
    snprintf(settings, sizeof(settings),
             "server_tls_sslmode = verify-full\nserver_tls_ca_file = %s/ca.crt\n",
             harness_pg_certs());
    /* By name: the certificate's DNS:localhost. */
    snprintf(db, sizeof(db), "byname = host=localhost port=%d dbname=postgres\n",
             harness_pg_port());
    start(f, "disable", false, settings, db);
    /* By address (the harness's "postgres" entry): the certificate's IP:127.0.0.1. */
    PGconn *c = connect_ok(f->proc.port, "postgres", NULL);
    assert_value(c, "SELECT 1", "1");
    assert_server_tls(c, true);
    PGconn *byname = connect_ok(f->proc.port, "byname", NULL);
    assert_server_tls(byname, true);
    PGconn *admin = connect_ok(f->proc.port, "pgturbo", NULL);
    char *tls = console_lookup(admin, "SHOW SERVERS", "database", "postgres", "tls");
    assert_tls13_column(tls);
    free(tls);
    tls = console_lookup(admin, "SHOW SERVERS", "database", "byname", "tls");
    assert_tls13_column(tls);
    free(tls);
    PQfinish(admin);
    PQfinish(byname);
    PQfinish(c);
    finish(f);
}

static void server_tls_verify_full_refuses_a_certificate_of_another_ca(void **state)
{
    fixture_t *f = *state;
    char settings[512];
    snprintf(settings, sizeof(settings),
             "server_tls_sslmode = verify-full\nserver_tls_ca_file = %s/other-ca.crt\n",
             harness_pg_certs());
    start(f, "disable", false, settings, NULL);
    connect_fails(f->proc.port, "postgres", NULL, "FATAL:  08006: ", "certificate verify failed");
    assert_log_has(f, "TLS handshake with the server failed: server certificate verify failed");
    assert_true(harness_pgturbo_alive(&f->proc));
    finish(f);
}

static void server_tls_protocols_and_ciphers_are_applied(void **state)
{
    fixture_t *f = *state;
    start(f, "disable", false,
          "server_tls_sslmode = require\nserver_tls_protocols = tlsv1.2\n"
          "server_tls_ciphers = ECDHE-ECDSA-AES128-GCM-SHA256\n",
          NULL);
    PGconn *c = connect_ok(f->proc.port, "postgres", NULL);
    assert_value(c, "SELECT version || ' ' || cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                 "TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256");
    PGconn *admin = connect_ok(f->proc.port, "pgturbo", NULL);
    char *tls = console_lookup(admin, "SHOW SERVERS", "database", "postgres", "tls");
    assert_string_equal(tls, "TLSv1.2/ECDHE-ECDSA-AES128-GCM-SHA256");
    free(tls);
    PQfinish(admin);
    PQfinish(c);
    finish(f);
}

/*
 * server_tls_cert_file and server_tls_key_file: the certificate pgturbo shows PostgreSQL, for
 * the role pgturbo_cert, which pg_hba.conf lets in only with a certificate of the cluster's
 * CA that names it.
 */
static void server_tls_client_certificate_logs_in_with_cert_auth(void **state)
{
    fixture_t *f = *state;
    const char *certs = harness_pg_certs();
    char settings_[2048], db[256];
    snprintf(settings_, sizeof(settings_),
             "server_tls_sslmode = verify-full\nserver_tls_ca_file = %s/ca.crt\n"
             "server_tls_cert_file = %s/client-pgturbo_cert.crt\n"
             "server_tls_key_file = %s/client-pgturbo_cert.key\n",
             certs, certs, certs);
    snprintf(db, sizeof(db),
             "certonly = host=127.0.0.1 port=%d dbname=postgres user=pgturbo_cert\n",
             harness_pg_port());
    start(f, "disable", false, settings_, db);
    PGconn *c = connect_ok(f->proc.port, "certonly", NULL);
    assert_value(c, "SELECT current_user", "pgturbo_cert");
    assert_value(c, "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                 "/CN=pgturbo_cert");
    PQfinish(c);
    finish(f);

    /* Without the certificate PostgreSQL refuses the role. */
    snprintf(settings_, sizeof(settings_),
             "server_tls_sslmode = verify-full\nserver_tls_ca_file = %s/ca.crt\n", certs);
    start(f, "disable", false, settings_, db);
    connect_fails(f->proc.port, "certonly", NULL,
                  "FATAL:  28000: connection requires a valid client certificate", NULL);
    finish(f);
}

/* The cluster's Unix socket directory (its data directory, from cluster.sh's ENVDIR). */
static void cluster_socket_dir(char *out, size_t len)
{
    FILE *fp = fopen(PGTURBO_TESTENV "/pg.datadir", "r");
    assert_non_null(fp);
    if (fgets(out, (int)len, fp) == NULL)
        out[0] = '\0';
    fclose(fp);
    out[strcspn(out, "\r\n")] = '\0';
    assert_true(out[0] == '/');
}

static void server_tls_require_does_not_apply_to_unix_sockets(void **state)
{
    fixture_t *f = *state;
    char dir[512], db[800];
    cluster_socket_dir(dir, sizeof(dir));
    snprintf(db, sizeof(db), "unix = host=%s port=%d dbname=postgres\n", dir, harness_pg_port());
    start(f, "disable", false, "server_tls_sslmode = require\n", db);
    PGconn *c = connect_ok(f->proc.port, "unix", NULL);
    assert_value(c, "SELECT 1", "1");
    assert_server_tls(c, false);
    PGconn *admin = connect_ok(f->proc.port, "pgturbo", NULL);
    char *tls = console_lookup(admin, "SHOW SERVERS", "database", "unix", "tls");
    assert_string_equal(tls, "");
    free(tls);
    PQfinish(admin);
    PQfinish(c);
    finish(f);
}

/*
 * A fake PostgreSQL that answers every SSLRequest with 'N'; when a StartupMessage follows (in
 * plain), it refuses it with a FATAL 28000 and closes.
 */
typedef struct fake_server {
    pthread_t thread;
    int listen_fd;
    int port;
    atomic_bool stop;
    atomic_int ssl_requests;
    atomic_int plain_startups;
} fake_server_t;

static bool fake_read(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void fake_serve(fake_server_t *fs, int fd)
{
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t hdr[8];
    while (fake_read(fd, hdr, 8)) {
        uint32_t len = get32(hdr), code = get32(hdr + 4);
        if (len == 8 && code == 80877103) {
            atomic_fetch_add(&fs->ssl_requests, 1);
            if (send(fd, "N", 1, MSG_NOSIGNAL) != 1)
                return;
            continue;
        }
        if (len < 8 || len > 10000)
            return;
        uint8_t body[10000];
        if (!fake_read(fd, body, len - 8))
            return;
        atomic_fetch_add(&fs->plain_startups, 1);
        static const char error[] = "SFATAL\0VFATAL\0C28000\0Mfake server: plain startup "
                                    "received\0";
        uint8_t msg[5 + sizeof(error)];
        msg[0] = 'E';
        uint32_t n = 4 + sizeof(error); /* the fields and the terminating NUL */
        msg[1] = (uint8_t)(n >> 24);
        msg[2] = (uint8_t)(n >> 16);
        msg[3] = (uint8_t)(n >> 8);
        msg[4] = (uint8_t)n;
        memcpy(msg + 5, error, sizeof(error));
        ssize_t w = send(fd, msg, sizeof(msg), MSG_NOSIGNAL);
        (void)w;
        return;
    }
}

static void *fake_server_main(void *arg)
{
    fake_server_t *fs = arg;
    while (!atomic_load(&fs->stop)) {
        struct pollfd pfd = {fs->listen_fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        int fd = accept(fs->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        fake_serve(fs, fd);
        close(fd);
    }
    return NULL;
}

static void fake_server_start(fake_server_t *fs)
{
    memset(fs, 0, sizeof(*fs));
    fs->port = harness_free_port();
    fs->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fs->listen_fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fs->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fs->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fs->listen_fd, 16), 0);
    assert_int_equal(pthread_create(&fs->thread, NULL, fake_server_main, fs), 0);
}

static void fake_server_stop(fake_server_t *fs)
{
    atomic_store(&fs->stop, true);
    pthread_join(fs->thread, NULL);
    close(fs->listen_fd);
}

/*
 * A fake PostgreSQL that speaks TLS (with the cluster's server.crt), logs anyone in, answers
 * other queries with "SET", and answers the query "SELECT 'held'" with a result it writes in
 * two TLS records chosen to leave decrypted bytes in pgturbo's OpenSSL: 12288 bytes (a
 * RowDescription and most of a DataRow of 14261 bytes, which pgturbo keeps whole in a buffer
 * of 16384 bytes that then has room for 4096 more), then 10141 bytes (the rest of that row,
 * eight rows of 1011 bytes, CommandComplete and ReadyForQuery).
 */
#define HELD_FIRST_RECORD 12288
#define HELD_BIG_VALUE    14250
#define HELD_SMALL_VALUE  1000
#define HELD_SMALL_ROWS   8

typedef struct fake_tls_server {
    pthread_t thread;
    int listen_fd;
    int port;
    SSL_CTX *ctx;
    atomic_bool stop;
    atomic_int held_queries; /* "SELECT 'held'" answered */
} fake_tls_server_t;

static bool ssl_read_full(SSL *ssl, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        size_t got = 0;
        if (SSL_read_ex(ssl, b, n, &got) != 1)
            return false;
        b += got;
        n -= got;
    }
    return true;
}

static bool ssl_write_all(SSL *ssl, const void *p, size_t n)
{
    size_t written = 0;
    return SSL_write_ex(ssl, p, n, &written) == 1 && written == n;
}

/* Appends message type with the n bytes of body to out at *used (out is big enough). */
static void put_message(uint8_t *out, size_t *used, char type, const void *body, uint32_t n)
{
    out[*used] = (uint8_t)type;
    uint32_t len = n + 4;
    out[*used + 1] = (uint8_t)(len >> 24);
    out[*used + 2] = (uint8_t)(len >> 16);
    out[*used + 3] = (uint8_t)(len >> 8);
    out[*used + 4] = (uint8_t)len;
    memcpy(out + *used + 5, body, n);
    *used += 5 + n;
}

/* Appends a DataRow of one text column of n copies of c. */
static void put_data_row(uint8_t *out, size_t *used, char c, uint32_t n)
{
    static uint8_t body[6 + HELD_BIG_VALUE];
    body[0] = 0;
    body[1] = 1;
    body[2] = (uint8_t)(n >> 24);
    body[3] = (uint8_t)(n >> 16);
    body[4] = (uint8_t)(n >> 8);
    body[5] = (uint8_t)n;
    memset(body + 6, c, n);
    put_message(out, used, 'D', body, 6 + n);
}

static void fake_tls_answer_held(fake_tls_server_t *fs, SSL *ssl)
{
    static uint8_t out[32768];
    size_t used = 0;
    /* One column "v" of type text (oid 25), length -1, typmod -1, text format. */
    static const uint8_t row_description[] = {0, 1, 'v', 0,    0,    0,    0,    0,    0,    0, 0,
                                              0, 0, 25,  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0};
    put_message(out, &used, 'T', row_description, sizeof(row_description));
    put_data_row(out, &used, 'b', HELD_BIG_VALUE);
    for (int i = 0; i < HELD_SMALL_ROWS; i++)
        put_data_row(out, &used, 's', HELD_SMALL_VALUE);
    put_message(out, &used, 'C', "SELECT 9", 9);
    put_message(out, &used, 'Z', "I", 1);
    if (ssl_write_all(ssl, out, HELD_FIRST_RECORD)) {
        harness_sleep_ms(100);
        if (ssl_write_all(ssl, out + HELD_FIRST_RECORD, used - HELD_FIRST_RECORD))
            atomic_fetch_add(&fs->held_queries, 1);
    }
}

static void fake_tls_serve(fake_tls_server_t *fs, int fd)
{
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    uint8_t hdr[8];
    if (!fake_read(fd, hdr, 8) || get32(hdr) != 8 || get32(hdr + 4) != 80877103 ||
        send(fd, "S", 1, MSG_NOSIGNAL) != 1)
        return;
    SSL *ssl = SSL_new(fs->ctx);
    if (ssl == NULL)
        return;
    static uint8_t body[65536];
    if (SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1 || !ssl_read_full(ssl, hdr, 4) ||
        get32(hdr) < 8 || get32(hdr) > sizeof(body) || !ssl_read_full(ssl, body, get32(hdr) - 4))
        goto done;
    /* AuthenticationOk, a ParameterStatus, BackendKeyData (pid 12345, key 42), ReadyForQuery. */
    static const uint8_t auth_ok[4] = {0, 0, 0, 0}, key_data[8] = {0, 0, 0x30, 0x39, 0, 0, 0, 42};
    static const char version[] = "server_version\0"
                                  "15.0";
    uint8_t login[128];
    size_t n = 0;
    put_message(login, &n, 'R', auth_ok, sizeof(auth_ok));
    put_message(login, &n, 'S', version, sizeof(version));
    put_message(login, &n, 'K', key_data, sizeof(key_data));
    put_message(login, &n, 'Z', "I", 1);
    if (!ssl_write_all(ssl, login, n))
        goto done;
    for (;;) {
        uint8_t h[5];
        if (!ssl_read_full(ssl, h, 5))
            break;
        uint32_t len =
            ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
        if (len < 4 || len - 4 > sizeof(body) - 1 || !ssl_read_full(ssl, body, len - 4))
            break;
        body[len - 4] = '\0';
        if (h[0] == 'X')
            break;
        if (h[0] != 'Q')
            continue;
        if (strcmp((const char *)body, "SELECT 'held'") == 0) {
            fake_tls_answer_held(fs, ssl);
            continue;
        }
        static const uint8_t set[] = {'C', 0, 0, 0, 8, 'S', 'E', 'T', 0, 'Z', 0, 0, 0, 5, 'I'};
        if (!ssl_write_all(ssl, set, sizeof(set)))
            break;
    }
done:
    SSL_free(ssl);
}

static void *fake_tls_server_main(void *arg)
{
    fake_tls_server_t *fs = arg;
    while (!atomic_load(&fs->stop)) {
        struct pollfd pfd = {fs->listen_fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        int fd = accept(fs->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        fake_tls_serve(fs, fd);
        close(fd);
    }
    return NULL;
}

static void fake_tls_server_start(fake_tls_server_t *fs)
{
    memset(fs, 0, sizeof(*fs));
    char crt[PATH_LEN * 4], key[PATH_LEN * 4];
    snprintf(crt, sizeof(crt), "%s/server.crt", harness_pg_certs());
    snprintf(key, sizeof(key), "%s/server.key", harness_pg_certs());
    fs->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(fs->ctx);
    assert_int_equal(SSL_CTX_use_certificate_chain_file(fs->ctx, crt), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(fs->ctx, key, SSL_FILETYPE_PEM), 1);
    fs->port = harness_free_port();
    fs->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fs->listen_fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fs->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fs->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fs->listen_fd, 16), 0);
    assert_int_equal(pthread_create(&fs->thread, NULL, fake_tls_server_main, fs), 0);
}

static void fake_tls_server_stop(fake_tls_server_t *fs)
{
    atomic_store(&fs->stop, true);
    pthread_join(fs->thread, NULL);
    close(fs->listen_fd);
    SSL_CTX_free(fs->ctx);
}

/* The server side of client_bytes_held_in_openssl_are_read_at_once, with the fake above. */
static void server_bytes_held_in_openssl_are_read_at_once(void **state)
{
    fixture_t *f = *state;
    static fake_tls_server_t fs;
    fake_tls_server_start(&fs);
    char db[256];
    snprintf(db, sizeof(db), "fake = host=127.0.0.1 port=%d dbname=fake\n", fs.port);
    start(f, "disable", false, "server_tls_sslmode = require\n", db);
    PGconn *c = connect_ok(f->proc.port, "fake", NULL);
    assert_int_equal(PQsendQuery(c, "SELECT 'held'"), 1);
    long long deadline = harness_now_ms() + 5000;
    while (PQisBusy(c)) {
        long long left = deadline - harness_now_ms();
        if (left <= 0)
            fail_msg("no complete answer within 5 s: pgturbo did not read what OpenSSL held");
        struct pollfd pfd = {PQsocket(c), POLLIN, 0};
        poll(&pfd, 1, (int)left);
        assert_int_equal(PQconsumeInput(c), 1);
    }
    PGresult *r = PQgetResult(c);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1 + HELD_SMALL_ROWS);
    assert_int_equal(PQgetlength(r, 0, 0), HELD_BIG_VALUE);
    assert_int_equal(strspn(PQgetvalue(r, 0, 0), "b"), HELD_BIG_VALUE);
    for (int i = 1; i <= HELD_SMALL_ROWS; i++)
        assert_int_equal(strspn(PQgetvalue(r, i, 0), "s"), HELD_SMALL_VALUE);
    PQclear(r);
    assert_null(PQgetResult(c));
    PQfinish(c);
    finish(f);
    fake_tls_server_stop(&fs);
    assert_int_equal(atomic_load(&fs.held_queries), 1);
}

static void server_tls_require_fails_against_a_server_without_tls(void **state)
{
    fixture_t *f = *state;
    static fake_server_t fs;
    fake_server_start(&fs);
    char db[256];
    snprintf(db, sizeof(db), "fake = host=127.0.0.1 port=%d dbname=postgres\n", fs.port);
    start(f, "disable", false, "server_tls_sslmode = require\n", db);
    connect_fails(f->proc.port, "fake", NULL,
                  "FATAL:  08006: the server does not accept TLS, which server_tls_sslmode "
                  "requires",
                  NULL);
    int requests = atomic_load(&fs.ssl_requests), startups = atomic_load(&fs.plain_startups);
    finish(f);

    /* prefer goes on in plain after the 'N'. */
    start(f, "disable", false, "server_tls_sslmode = prefer\n", db);
    connect_fails(f->proc.port, "fake", NULL, "FATAL:  28000: fake server: plain startup received",
                  NULL);
    int startups_prefer = atomic_load(&fs.plain_startups);
    finish(f);
    fake_server_stop(&fs);
    assert_true(requests >= 1);
    assert_int_equal(startups, 0);
    assert_true(startups_prefer >= 1);
}

/* libpq 15 sends cancels in plain, on a new connection: pgturbo must take them even when it
 * requires TLS, and forward them to a server that only lets the role in over TLS. */
static void plain_cancel_reaches_a_query_over_tls(void **state)
{
    fixture_t *f = *state;
    char db[256];
    tls_only_database(db, sizeof(db));
    start(f, "require", false, "pool_mode = transaction\nserver_tls_sslmode = require\n", db);
    char opts[CONNINFO_LEN];
    tls_opts(f, opts, sizeof(opts), "require", NULL, NULL);
    PGconn *c = connect_ok(f->proc.port, "tlsonly", opts);
    assert_tls13(c);
    PGcancel *cancel = PQgetCancel(c);
    assert_non_null(cancel);
    long long t0 = harness_now_ms();
    assert_int_equal(PQsendQuery(c, "SELECT pg_sleep(20)"), 1);
    harness_sleep_ms(300);
    char err[256];
    if (!PQcancel(cancel, err, sizeof(err)))
        fail_msg("PQcancel: %s", err);
    PQfreeCancel(cancel);
    PGresult *r;
    const char *sqlstate = NULL;
    char code[6] = "";
    while ((r = PQgetResult(c)) != NULL) {
        if (PQresultStatus(r) == PGRES_FATAL_ERROR &&
            (sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE)) != NULL)
            snprintf(code, sizeof(code), "%s", sqlstate);
        PQclear(r);
    }
    assert_string_equal(code, "57014");
    if (harness_now_ms() - t0 > 5000)
        fail_msg("the cancel took %lld ms", harness_now_ms() - t0);
    assert_value(c, "SELECT current_user", "pgturbo_tls");
    PQfinish(c);
    finish(f);
}

/* The SQLSTATE and message of the last error or notice libpq passed to a notice receiver. */
typedef struct notice {
    char sqlstate[6];
    char message[256];
} notice_t;

static void keep_notice(void *arg, const PGresult *res)
{
    notice_t *n = arg;
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(n->sqlstate, sizeof(n->sqlstate), "%s", code ? code : "");
    snprintf(n->message, sizeof(n->message), "%s", message ? message : "");
}

/*
 * SIGTERM closes idle clients with FATAL 57P01, which a TLS client must get encrypted: libpq
 * hands an error that comes while no query runs to the notice receiver.
 */
static void shutdown_tells_idle_tls_clients_why(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, "pool_mode = transaction\n", NULL);
    char opts[CONNINFO_LEN];
    tls_opts(f, opts, sizeof(opts), "require", NULL, NULL);
    PGconn *c = connect_ok(f->proc.port, "postgres", opts);
    assert_value(c, "SELECT 1", "1");
    notice_t n = {"", ""};
    PQsetNoticeReceiver(c, keep_notice, &n);
    assert_int_equal(kill(f->proc.pid, SIGTERM), 0);
    long long deadline = harness_now_ms() + 10000;
    while (harness_pgturbo_alive(&f->proc) && harness_now_ms() < deadline)
        harness_sleep_ms(20);
    assert_false(harness_pgturbo_alive(&f->proc));
    for (int i = 0; i < 3 && n.sqlstate[0] == '\0'; i++) {
        PQconsumeInput(c);
        (void)PQisBusy(c); /* parses what was read */
    }
    assert_string_equal(n.sqlstate, "57P01");
    assert_string_equal(n.message, "pgturbo is shutting down");
    PQfinish(c);
    finish(f);
}

/* client_tls_sslmode changes on SIGHUP for new clients; clients already in keep their way. */
static void reload_changes_client_tls_mode_for_new_clients(void **state)
{
    fixture_t *f = *state;
    start(f, "disable", false, NULL, NULL);
    char plain_opts[CONNINFO_LEN], tls_opts_[CONNINFO_LEN], lines[2048];
    tls_opts(f, plain_opts, sizeof(plain_opts), "disable", NULL, NULL);
    tls_opts(f, tls_opts_, sizeof(tls_opts_), "require", NULL, NULL);
    connect_fails(f->proc.port, "postgres", tls_opts_, "server does not support SSL", NULL);
    PGconn *plain = connect_ok(f->proc.port, "postgres", plain_opts);

    settings(f, lines, sizeof(lines), "require", false, NULL);
    harness_reload_pgturbo(&f->proc, lines, NULL);
    connect_fails(f->proc.port, "postgres", plain_opts, "FATAL:  28000: SSL required", NULL);
    PGconn *tls = connect_ok(f->proc.port, "postgres", tls_opts_);
    assert_tls13(tls);
    assert_value(tls, "SELECT 1", "1");
    assert_value(plain, "SELECT 2", "2");

    settings(f, lines, sizeof(lines), "disable", false, NULL);
    harness_reload_pgturbo(&f->proc, lines, NULL);
    connect_fails(f->proc.port, "postgres", tls_opts_, "server does not support SSL", NULL);
    assert_value(tls, "SELECT 3", "3");
    assert_value(plain, "SELECT 4", "4");
    PQfinish(tls);
    PQfinish(plain);
    finish(f);
}

/* ---- bad input on raw sockets ---- */

static void truncated_client_hello_blocks_no_one(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, "client_login_timeout = 1\n", NULL);
    uint8_t hello[4096];
    size_t n = make_client_hello(hello, sizeof(hello));

    /* Half a ClientHello, then the client goes away. */
    int fd = raw_ssl_request(f);
    harness_raw_send(fd, hello, n / 2);
    harness_sleep_ms(100);
    close(fd);
    assert_log_has(f, "TLS handshake failed: peer closed the connection during the TLS handshake");
    others_served(f);

    /* Half a ClientHello, and the client stays: others are served meanwhile, and
     * client_login_timeout ends the handshake. */
    fd = raw_ssl_request(f);
    harness_raw_send(fd, hello, n / 2);
    others_served(f);
    assert_true(harness_raw_closed(fd, 4000));
    close(fd);
    assert_log_has(f, "client_login_timeout");
    others_served(f);
    finish(f);
}

static void garbage_instead_of_client_hello_is_dropped(void **state)
{
    fixture_t *f = *state;
    start(f, "require", false, NULL, NULL);
    static const char garbage[] = "this is not a TLS ClientHello, it is plain text; "
                                  "this is not a TLS ClientHello, it is plain text\n";
    int fd = raw_ssl_request(f);
    harness_raw_send(fd, garbage, sizeof(garbage) - 1);
    assert_true(harness_raw_closed(fd, 2000));
    close(fd);
    assert_log_has(f, "TLS handshake failed: ");
    others_served(f);

    /* A handshake record header that announces more than a record may hold. */
    static const uint8_t oversized[] = {0x16, 0x03, 0x01, 0x7f, 0xff, 0x01, 0x00, 0x00};
    fd = raw_ssl_request(f);
    harness_raw_send(fd, oversized, sizeof(oversized));
    assert_true(harness_raw_closed(fd, 2000));
    close(fd);
    others_served(f);

    /* A plain StartupMessage where the ClientHello belongs. */
    fd = raw_ssl_request(f);
    harness_raw_startup(fd, "postgres", "postgres");
    assert_true(harness_raw_closed(fd, 2000));
    close(fd);
    others_served(f);
    finish(f);
}

/* SSLRequest and a StartupMessage in one write: the startup would bypass TLS. */
static void data_after_ssl_request_gets_08p01(void **state)
{
    fixture_t *f = *state;
    start(f, "prefer", false, NULL, NULL);
    uint8_t pkt[128];
    memcpy(pkt, SSL_REQUEST_BYTES, 8);
    size_t len = build_startup(pkt + 8, sizeof(pkt) - 8);
    int fd = harness_raw_connect(f->proc.port);
    harness_raw_send(fd, pkt, 8 + len);
    raw_expect_fatal(fd, "08P01", "unexpected data after SSLRequest");
    close(fd);

    /* The same with the start of a ClientHello after the SSLRequest. */
    uint8_t hello[4096 + 8];
    memcpy(hello, SSL_REQUEST_BYTES, 8);
    size_t n = make_client_hello(hello + 8, sizeof(hello) - 8);
    fd = harness_raw_connect(f->proc.port);
    harness_raw_send(fd, hello, 8 + n);
    raw_expect_fatal(fd, "08P01", "unexpected data after SSLRequest");
    close(fd);
    others_served(f);
    finish(f);
}

#define TLS_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup_fixture, teardown_fixture)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TLS_TEST(require_client_runs_queries_over_tls),
        TLS_TEST(verify_full_client_checks_pgturbo_certificate),
        TLS_TEST(verify_full_client_refuses_certificate_of_untrusted_ca),
        TLS_TEST(plain_client_is_refused_when_tls_is_required),
        TLS_TEST(plain_and_tls_clients_both_accepted_when_tls_is_preferred),
        TLS_TEST(plain_and_tls_clients_both_accepted_when_tls_is_allowed),
        TLS_TEST(verify_ca_requires_a_client_certificate_of_the_ca),
        TLS_TEST(verify_full_requires_a_client_certificate_of_the_ca),
        TLS_TEST(client_tls_protocols_and_ciphers_are_applied),
        TLS_TEST(cert_auth_accepts_only_the_user_named_by_the_certificate),
        TLS_TEST(cert_auth_without_client_certificate_is_refused),
        TLS_TEST(large_results_stream_through_tls_on_both_sides),
        TLS_TEST(client_bytes_held_in_openssl_are_read_at_once),
        TLS_TEST(ssl_request_after_refused_gssenc_request_starts_tls),
        TLS_TEST(slow_tls_client_gets_a_large_result_intact),
        TLS_TEST(copy_in_and_out_through_tls),
        TLS_TEST(transaction_pooling_of_many_tls_clients_over_two_servers),
        TLS_TEST(server_tls_require_reaches_a_tls_only_role),
        TLS_TEST(server_tls_disable_cannot_reach_a_tls_only_role),
        TLS_TEST(server_tls_prefer_is_the_default_and_uses_tls),
        TLS_TEST(server_tls_verify_full_checks_the_cluster_certificate),
        TLS_TEST(server_tls_verify_full_refuses_a_certificate_of_another_ca),
        TLS_TEST(server_tls_protocols_and_ciphers_are_applied),
        TLS_TEST(server_tls_client_certificate_logs_in_with_cert_auth),
        TLS_TEST(server_tls_require_does_not_apply_to_unix_sockets),
        TLS_TEST(server_tls_require_fails_against_a_server_without_tls),
        TLS_TEST(server_bytes_held_in_openssl_are_read_at_once),
        TLS_TEST(plain_cancel_reaches_a_query_over_tls),
        TLS_TEST(reload_changes_client_tls_mode_for_new_clients),
        TLS_TEST(shutdown_tells_idle_tls_clients_why),
        TLS_TEST(truncated_client_hello_blocks_no_one),
        TLS_TEST(garbage_instead_of_client_hello_is_dropped),
        TLS_TEST(data_after_ssl_request_gets_08p01),
    };
    /* TLS_PROXY_FILTER=pattern runs only the matching tests (cmocka's wildcards). */
    const char *filter = getenv("TLS_PROXY_FILTER");
    if (filter != NULL)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
