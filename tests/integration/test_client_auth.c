/*
 * test_client_auth.c
 *    Integration tests of how pgturbo authenticates its clients: auth_type plain, md5 and
 *    scram-sha-256 against auth_file secrets of each kind (plain, md5, SCRAM verifier), unknown
 *    users (who go through the same exchange and get the same error as a wrong password, with
 *    a SCRAM salt that is stable per user name), auth_type hba, the admin console's
 *    admin_users / stats_users check, pgturbo's own login to PostgreSQL with auth_file secrets
 *    and with SCRAM pass-through, and bad input during authentication, byte by byte on raw
 *    sockets. Raw clients do the exchanges with the project's scram_client_* functions.
 *
 *    The client users pgturbo_ca_* belong to this file; PostgreSQL trusts them, so that only
 *    pgturbo checks their passwords. The server users pgturbo_pass (scram-sha-256),
 *    pgturbo_pass_md5 (md5) and pgturbo_pass_plain (password) belong to this file too; the test
 *    cluster's pg_hba.conf requires a password of them (tests/harness/cluster.sh).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"
#include "scram.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MSG_CAP            8192
#define CANCEL_REQUEST     80877102
#define ADVISORY_LOCK_ID   "7700411"
#define AUTH_OK            0
#define AUTH_CLEARTEXT     3
#define AUTH_MD5           5
#define AUTH_SASL          10
#define AUTH_SASL_CONTINUE 11
#define AUTH_SASL_FINAL    12
#define NO_REQUEST         (-1) /* refused before any authentication request */

/* Client users: PostgreSQL trusts them; the auth_file holds a secret of each kind. */
#define USER_PLAIN "pgturbo_ca_plain"
#define USER_MD5   "pgturbo_ca_md5"
#define USER_SCRAM "pgturbo_ca_scram"
#define USER_ALICE "pgturbo_ca_alice"
#define PW_PLAIN   "plain pw"
#define PW_MD5     "md5 pw"
#define PW_SCRAM   "scram pw"
#define PW_ALICE   "alice pw"

/* Server users whose pg_hba.conf lines require scram-sha-256, md5 and password. */
#define PASS_SCRAM "pgturbo_pass"
#define PASS_MD5   "pgturbo_pass_md5"
#define PASS_PLAIN "pgturbo_pass_plain"
#define PW_PASS    "pass secret"

#define NO_PASSWORD_FOR_SERVER                                                                     \
    "the server asks for a password and pgturbo has none for this user (password= in "             \
    "[databases], or auth_file)"
#define CONSOLE_REFUSED                                                                            \
    "not allowed to use the admin console (user is in neither admin_users nor stats_users)"

/* Secrets read from the cluster by the group setup. */
static char scram_verifier[512]; /* pg_authid.rolpassword of USER_SCRAM */
static char md5_secret[64];      /* "md5" + md5(PW_MD5 || USER_MD5) */
static char pass_verifier[512];  /* pg_authid.rolpassword of PASS_SCRAM */
static char pass_md5_secret[64]; /* pg_authid.rolpassword of PASS_MD5 */
static char other_verifier[512]; /* PW_PASS with another salt than pass_verifier's */
static char userlist[4096];      /* the auth_file of the client users */

/* One test's daemon, its files, and the raw sockets a failed test may leave open. */
typedef struct fixture {
    pgturbo_proc_t proc;
    bool running;
    char dir[64]; /* mkdtemp directory of the auth_file and auth_hba_file */
    char auth_file[128];
    char hba_file[128];
    int fds[16]; /* -1 when closed */
    int n_fds;
} fixture_t;

/* Fields of an ErrorResponse. */
typedef struct raw_error {
    char severity[16];
    char sqlstate[6];
    char message[256];
} raw_error_t;

/* What a raw client saw while logging in. */
typedef struct login {
    int32_t codes[8]; /* the Authentication request codes, in order */
    int n_codes;
    bool ready;  /* ReadyForQuery came */
    bool failed; /* an ErrorResponse came instead; see error */
    raw_error_t error;
    int32_t pid, key;                     /* BackendKeyData */
    char nonce[64];                       /* the SCRAM client nonce */
    char client_final[SCRAM_MESSAGE_MAX]; /* the SCRAM client-final message sent */
} login_t;

/* ---- files ---- */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0)
        fail_msg("cannot write %s: %s", path, strerror(errno));
}

/* Runs sql on c and copies its single value into out; fails when there is none. */
static void direct_value(PGconn *c, const char *sql, char *out, size_t len)
{
    char *v = harness_query_value(c, sql);
    if (v == NULL)
        fail_msg("\"%s\" returned no value", sql);
    snprintf(out, len, "%s", v);
    free(v);
}

/* ---- protocol bytes ---- */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int32_t get32(const char *p)
{
    const uint8_t *u = (const uint8_t *)p;
    return (int32_t)(((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) | ((uint32_t)u[2] << 8) |
                     (uint32_t)u[3]);
}

/* Sends a typed message whose length field says 4 + n, in one write. */
static void send_msg(int fd, char type, const void *body, size_t n)
{
    uint8_t msg[MSG_CAP];
    assert_true(n + 5 <= sizeof(msg));
    msg[0] = (uint8_t)type;
    put32(msg + 1, (uint32_t)(4 + n));
    if (n > 0)
        memcpy(msg + 5, body, n);
    harness_raw_send(fd, msg, n + 5);
}

/* PasswordMessage: the string with its NUL. */
static void send_password(int fd, const char *password)
{
    send_msg(fd, 'p', password, strlen(password) + 1);
}

/*
 * SASLInitialResponse: the mechanism name with its NUL (or without it, when terminate is
 * false), then an Int32 that says declared, then n bytes of data.
 */
static void send_sasl_initial(int fd, const char *mechanism, bool terminate, int32_t declared,
                              const char *data, size_t n)
{
    uint8_t body[MSG_CAP];
    size_t m = strlen(mechanism) + (terminate ? 1 : 0);
    assert_true(m + 4 + n <= sizeof(body));
    memcpy(body, mechanism, m);
    put32(body + m, (uint32_t)declared);
    if (n > 0)
        memcpy(body + m + 4, data, n);
    send_msg(fd, 'p', body, m + 4 + n);
}

/* SASLResponse: the data as it is, without a NUL. */
static void send_sasl_response(int fd, const char *data)
{
    send_msg(fd, 'p', data, strlen(data));
}

static void parse_error(const char *body, size_t len, raw_error_t *e)
{
    memset(e, 0, sizeof(*e));
    size_t i = 0;
    while (i < len && body[i] != '\0') {
        char field = body[i++];
        const char *value = body + i;
        size_t vlen = strnlen(value, len - i);
        if (field == 'V' || (field == 'S' && e->severity[0] == '\0'))
            snprintf(e->severity, sizeof(e->severity), "%.*s", (int)vlen, value);
        else if (field == 'C')
            snprintf(e->sqlstate, sizeof(e->sqlstate), "%.*s", (int)vlen, value);
        else if (field == 'M')
            snprintf(e->message, sizeof(e->message), "%.*s", (int)vlen, value);
        i += vlen + 1;
    }
}

/*
 * Reads the next message, which must be an AuthenticationRequest with code; copies its data
 * (after the code, NUL-terminated) into data. Fails on anything else, saying what came.
 */
static void expect_auth(int fd, int32_t code, char *data, size_t cap)
{
    char body[MSG_CAP];
    size_t len = 0;
    int type = harness_raw_read_message(fd, body, sizeof(body) - 1, &len);
    if (type == 'E') {
        raw_error_t e;
        parse_error(body, len, &e);
        fail_msg("expected AuthenticationRequest %d, got error %s: %s", code, e.sqlstate,
                 e.message);
    }
    if (type != 'R' || len < 4)
        fail_msg("expected AuthenticationRequest %d, got %s", code,
                 type == 0  ? "EOF"
                 : type < 0 ? "a timeout"
                            : "another message");
    assert_int_equal(get32(body), code);
    body[len] = '\0';
    if (data != NULL)
        snprintf(data, cap, "%s", body + 4);
}

/*
 * Asserts that the next message is a FATAL ErrorResponse with sqlstate (and, when message is
 * not NULL, exactly that message), and that pgturbo then closes the connection.
 */
static void expect_fatal(int fd, const char *sqlstate, const char *message)
{
    char body[MSG_CAP];
    size_t len = 0;
    int type = harness_raw_read_message(fd, body, sizeof(body), &len);
    if (type != 'E')
        fail_msg("expected ErrorResponse %s, got %s", sqlstate,
                 type == 0  ? "EOF"
                 : type < 0 ? "a timeout"
                            : "another message");
    raw_error_t e;
    parse_error(body, len, &e);
    assert_string_equal(e.severity, "FATAL");
    assert_string_equal(e.sqlstate, sqlstate);
    if (message != NULL)
        assert_string_equal(e.message, message);
    assert_true(harness_raw_closed(fd, 2000));
}

/* Reads until ReadyForQuery; fails on an ErrorResponse or EOF. */
static void expect_ready(int fd)
{
    char body[MSG_CAP];
    for (;;) {
        size_t len = 0;
        int type = harness_raw_read_message(fd, body, sizeof(body), &len);
        if (type == 'E') {
            raw_error_t e;
            parse_error(body, len, &e);
            fail_msg("unexpected error %s: %s", e.sqlstate, e.message);
        }
        if (type <= 0)
            fail_msg("no ReadyForQuery (%s)", type == 0 ? "EOF" : "timeout");
        if (type == 'Z')
            return;
    }
}

/* The value of attribute k ("s", "i", "r") of a SCRAM message, copied into out. */
static void scram_attribute(const char *msg, char k, char *out, size_t len)
{
    for (const char *p = msg; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        if (n >= 2 && p[0] == k && p[1] == '=') {
            snprintf(out, len, "%.*s", (int)(n - 2), p + 2);
            return;
        }
        p += n + (end != NULL ? 1 : 0);
    }
    fail_msg("SCRAM message \"%s\" has no %c=", msg, k);
}

/* ---- raw connections the teardown closes when a test fails half-way ---- */

static int raw_open(fixture_t *f)
{
    int fd = harness_raw_connect(f->proc.port);
    int i = 0;
    while (i < f->n_fds && f->fds[i] >= 0)
        i++;
    assert_true(i < (int)(sizeof(f->fds) / sizeof(f->fds[0])));
    f->fds[i] = fd;
    if (i == f->n_fds)
        f->n_fds++;
    return fd;
}

static void raw_close(fixture_t *f, int fd)
{
    for (int i = 0; i < f->n_fds; i++)
        if (f->fds[i] == fd)
            f->fds[i] = -1;
    close(fd);
}

/*
 * Logs in on fd as user to db, answering whatever pgturbo asks with password (cleartext,
 * md5 or SCRAM-SHA-256, which must be offered), and checks the server's SCRAM signature.
 * Stops at ReadyForQuery or at an ErrorResponse; *l says what happened.
 */
static void raw_login_on(int fd, const char *user, const char *db, const char *password, login_t *l)
{
    memset(l, 0, sizeof(*l));
    harness_raw_startup(fd, user, db);
    scram_client_t sc;
    memset(&sc, 0, sizeof(sc));
    char body[MSG_CAP], msg[SCRAM_MESSAGE_MAX];
    for (;;) {
        size_t len = 0;
        int type = harness_raw_read_message(fd, body, sizeof(body) - 1, &len);
        if (type <= 0)
            fail_msg("login as %s: %s before ReadyForQuery", user, type == 0 ? "EOF" : "timeout");
        body[len] = '\0';
        if (type == 'E') {
            parse_error(body, len, &l->error);
            l->failed = true;
            return;
        }
        if (type == 'Z') {
            l->ready = true;
            return;
        }
        if (type == 'K' && len == 8) {
            l->pid = get32(body);
            l->key = get32(body + 4);
        }
        if (type != 'R')
            continue;
        assert_true(len >= 4);
        int32_t code = get32(body);
        assert_true(l->n_codes < (int)(sizeof(l->codes) / sizeof(l->codes[0])));
        l->codes[l->n_codes++] = code;
        if (code != AUTH_OK && password == NULL)
            fail_msg("login as %s: asked for a password (request %d) without one", user, code);
        const char *why = "";
        int n;
        switch (code) {
        case AUTH_OK:
            break;
        case AUTH_CLEARTEXT:
            send_password(fd, password);
            break;
        case AUTH_MD5:
            assert_int_equal(len, 8);
            assert_int_equal(scram_md5_password(user, password, (const uint8_t *)body + 4, msg), 0);
            send_password(fd, msg);
            break;
        case AUTH_SASL:
            /* The mechanism list: exactly SCRAM-SHA-256, and the empty name that ends it. */
            assert_int_equal(len, 4 + sizeof("SCRAM-SHA-256") + 1);
            assert_memory_equal(body + 4, "SCRAM-SHA-256\0", sizeof("SCRAM-SHA-256") + 1);
            n = scram_client_first(&sc, "", NULL, msg, sizeof(msg));
            assert_true(n > 0);
            snprintf(l->nonce, sizeof(l->nonce), "%s", sc.nonce);
            send_sasl_initial(fd, "SCRAM-SHA-256", true, n, msg, (size_t)n);
            break;
        case AUTH_SASL_CONTINUE:
            n = scram_client_final(&sc, password, body + 4, msg, sizeof(msg), &why);
            if (n < 0)
                fail_msg("server-first \"%s\": %s", body + 4, why);
            snprintf(l->client_final, sizeof(l->client_final), "%s", msg);
            send_sasl_response(fd, msg);
            break;
        case AUTH_SASL_FINAL:
            assert_true(scram_client_verify(&sc, body + 4));
            break;
        default:
            fail_msg("login as %s: unexpected authentication request %d", user, code);
        }
    }
}

/* Sends Terminate and closes. */
static void raw_quit(fixture_t *f, int fd)
{
    send_msg(fd, 'X', NULL, 0);
    raw_close(f, fd);
}

/* ---- libpq ---- */

/* A libpq connection as user with password (NULL: none; no password file is read). */
static PGconn *pq_open(const fixture_t *f, const char *db, const char *user, const char *password)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", f->proc.port);
    const char *keys[] = {"host",     "port",     "dbname", "user", "connect_timeout",
                          "passfile", "password", NULL};
    char passfile[160];
    snprintf(passfile, sizeof(passfile), "%s/no-pgpass", f->dir);
    const char *values[] = {"127.0.0.1", port, db, user, "10", passfile, password, NULL};
    PGconn *c = PQconnectdbParams(keys, values, 0);
    assert_non_null(c);
    return c;
}

/* libpq logs in as user and finds that current_user is server_user. */
static void pq_logs_in_as(const fixture_t *f, const char *db, const char *user,
                          const char *password, const char *server_user)
{
    PGconn *c = pq_open(f, db, user, password);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQfinish(c);
        fail_msg("libpq login as %s to %s failed: %s", user, db, msg);
    }
    char *who = harness_query_value(c, "SELECT current_user");
    PQfinish(c);
    assert_non_null(who);
    assert_string_equal(who, server_user);
    free(who);
}

/* libpq is refused, with an error message that contains message. */
static void pq_refused(const fixture_t *f, const char *db, const char *user, const char *password,
                       const char *message)
{
    PGconn *c = pq_open(f, db, user, password);
    char got[512];
    snprintf(got, sizeof(got), "%s", PQerrorMessage(c));
    ConnStatusType st = PQstatus(c);
    PQfinish(c);
    if (st != CONNECTION_BAD)
        fail_msg("libpq login as %s to %s succeeded; expected \"%s\"", user, db, message);
    if (strstr(got, message) == NULL)
        fail_msg("libpq error \"%s\" does not contain \"%s\"", got, message);
}

/* ---- both ---- */

/*
 * A raw client logging in as user to database postgres is first asked for first_code and gets
 * in (after AuthenticationOk); libpq gets in too and current_user is user.
 */
static void logs_in(fixture_t *f, const char *user, const char *password, int32_t first_code)
{
    int fd = raw_open(f);
    login_t l;
    raw_login_on(fd, user, "postgres", password, &l);
    if (!l.ready)
        fail_msg("raw login as %s refused: %s %s", user, l.error.sqlstate, l.error.message);
    assert_true(l.n_codes >= 1);
    assert_int_equal(l.codes[0], first_code);
    assert_int_equal(l.codes[l.n_codes - 1], AUTH_OK);
    raw_quit(f, fd);
    pq_logs_in_as(f, "postgres", user, password, user);
}

/*
 * A raw client logging in as user to db is asked for first_code (NO_REQUEST: nothing), goes
 * through the whole exchange and gets a FATAL sqlstate with exactly message, never
 * AuthenticationOk (pgturbo sends it with the welcome only), and is closed; libpq is refused
 * with message.
 */
static void refused_on(fixture_t *f, const char *db, const char *user, const char *password,
                       int32_t first_code, const char *sqlstate, const char *message)
{
    int fd = raw_open(f);
    login_t l;
    raw_login_on(fd, user, db, password, &l);
    if (!l.failed)
        fail_msg("raw login as %s to %s succeeded; expected %s", user, db, sqlstate);
    if (first_code == NO_REQUEST) {
        assert_int_equal(l.n_codes, 0);
    } else {
        assert_true(l.n_codes >= 1);
        assert_int_equal(l.codes[0], first_code);
    }
    for (int i = 0; i < l.n_codes; i++)
        assert_int_not_equal(l.codes[i], AUTH_OK);
    assert_string_equal(l.error.severity, "FATAL");
    assert_string_equal(l.error.sqlstate, sqlstate);
    assert_string_equal(l.error.message, message);
    assert_true(harness_raw_closed(fd, 2000));
    raw_close(f, fd);
    pq_refused(f, db, user, password, message);
}

/* user with password gets 28P01 "password authentication failed for user", asked first_code. */
static void password_refused(fixture_t *f, const char *user, const char *password,
                             int32_t first_code)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "password authentication failed for user \"%s\"", user);
    refused_on(f, "postgres", user, password, first_code, "28P01", msg);
}

/* ---- the daemon ---- */

/*
 * Starts pgturbo in transaction mode with auth_type, an auth_file holding users (NULL: the
 * client users' userlist), an auth_hba_file holding hba (NULL: none), and extra lines.
 */
static void start(fixture_t *f, const char *auth_type, const char *users, const char *hba,
                  const char *extra_pgturbo, const char *extra_databases)
{
    char settings[1024];
    write_text(f->auth_file, users != NULL ? users : userlist);
    int n = snprintf(settings, sizeof(settings),
                     "pool_mode = transaction\ndefault_pool_size = 4\nauth_type = %s\n"
                     "auth_file = %s\n",
                     auth_type, f->auth_file);
    if (hba != NULL) {
        write_text(f->hba_file, hba);
        n += snprintf(settings + n, sizeof(settings) - (size_t)n, "auth_hba_file = %s\n",
                      f->hba_file);
    }
    snprintf(settings + n, sizeof(settings) - (size_t)n, "%s",
             extra_pgturbo != NULL ? extra_pgturbo : "");
    harness_start_pgturbo(&f->proc, settings, extra_databases);
    f->running = true;
}

/* The daemon lives, and a client that logs in with a right password runs a query. */
static void others_unaffected(fixture_t *f)
{
    assert_true(harness_pgturbo_alive(&f->proc));
    PGconn *c = pq_open(f, "postgres", USER_PLAIN, PW_PLAIN);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQfinish(c);
        fail_msg("a normal client cannot log in: %s", msg);
    }
    char *v = harness_query_value(c, "SELECT 41 + 1");
    PQfinish(c);
    assert_non_null(v);
    assert_string_equal(v, "42");
    free(v);
    assert_true(harness_pgturbo_alive(&f->proc));
}

/* Stops the daemon and asserts that it exits cleanly (no crash, no sanitizer report). */
static void finish(fixture_t *f)
{
    f->running = false;
    assert_int_equal(harness_stop_pgturbo(&f->proc, 20), 0);
}

/* ---- setup ---- */

static int setup_roles(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    static const char *const roles[] = {USER_PLAIN, USER_MD5, USER_SCRAM, USER_ALICE,
                                        PASS_SCRAM, PASS_MD5, PASS_PLAIN, "pgturbo_ca_other"};
    char sql[256];
    PGconn *c = harness_connect_direct("postgres");
    harness_silence_notices(c);
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        snprintf(sql, sizeof(sql), "DROP ROLE IF EXISTS %s", roles[i]);
        harness_exec_ok(c, sql);
    }
    harness_exec_ok(c, "SET password_encryption = 'scram-sha-256'");
    harness_exec_ok(c, "CREATE ROLE " USER_PLAIN " LOGIN");
    harness_exec_ok(c, "CREATE ROLE " USER_MD5 " LOGIN");
    harness_exec_ok(c, "CREATE ROLE " USER_SCRAM " LOGIN PASSWORD '" PW_SCRAM "'");
    harness_exec_ok(c, "CREATE ROLE " USER_ALICE " LOGIN");
    harness_exec_ok(c, "CREATE ROLE " PASS_SCRAM " LOGIN PASSWORD '" PW_PASS "'");
    harness_exec_ok(c, "CREATE ROLE " PASS_PLAIN " LOGIN PASSWORD '" PW_PASS "'");
    harness_exec_ok(c, "CREATE ROLE pgturbo_ca_other PASSWORD '" PW_PASS "'");
    harness_exec_ok(c, "SET password_encryption = 'md5'");
    harness_exec_ok(c, "CREATE ROLE " PASS_MD5 " LOGIN PASSWORD '" PW_PASS "'");
    direct_value(c, "SELECT rolpassword FROM pg_authid WHERE rolname = '" USER_SCRAM "'",
                 scram_verifier, sizeof(scram_verifier));
    direct_value(c, "SELECT rolpassword FROM pg_authid WHERE rolname = '" PASS_SCRAM "'",
                 pass_verifier, sizeof(pass_verifier));
    direct_value(c, "SELECT rolpassword FROM pg_authid WHERE rolname = '" PASS_MD5 "'",
                 pass_md5_secret, sizeof(pass_md5_secret));
    direct_value(c, "SELECT rolpassword FROM pg_authid WHERE rolname = 'pgturbo_ca_other'",
                 other_verifier, sizeof(other_verifier));
    direct_value(c, "SELECT 'md5' || md5('" PW_MD5 USER_MD5 "')", md5_secret, sizeof(md5_secret));
    harness_exec_ok(c, "DROP ROLE pgturbo_ca_other");
    PQfinish(c);
    assert_int_equal(strncmp(scram_verifier, "SCRAM-SHA-256$4096:", 19), 0);
    assert_int_equal(strncmp(pass_md5_secret, "md5", 3), 0);
    assert_string_not_equal(pass_verifier, other_verifier);
    snprintf(userlist, sizeof(userlist),
             ";; client users, one secret of each kind\n"
             "\"%s\" \"%s\"\n"
             "\"%s\" \"%s\"\n"
             "\"%s\" \"%s\"\n"
             "\"%s\" \"%s\"\n",
             USER_PLAIN, PW_PLAIN, USER_MD5, md5_secret, USER_SCRAM, scram_verifier, USER_ALICE,
             PW_ALICE);
    return 0;
}

static int teardown_roles(void **state)
{
    (void)state;
    static const char *const roles[] = {USER_PLAIN, USER_MD5, USER_SCRAM, USER_ALICE,
                                        PASS_SCRAM, PASS_MD5, PASS_PLAIN};
    char conninfo[128], sql[128];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=postgres user=postgres",
             harness_pg_port());
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) == CONNECTION_OK) {
        harness_silence_notices(c);
        for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
            snprintf(sql, sizeof(sql), "DROP ROLE IF EXISTS %s", roles[i]);
            PQclear(PQexec(c, sql));
        }
    }
    PQfinish(c);
    return 0;
}

static int setup_fixture(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/pgturbo-auth.XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->auth_file, sizeof(f->auth_file), "%s/userlist.txt", f->dir);
    snprintf(f->hba_file, sizeof(f->hba_file), "%s/hba.conf", f->dir);
    *state = f;
    return 0;
}

static int teardown_fixture(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < f->n_fds; i++)
        if (f->fds[i] >= 0)
            close(f->fds[i]);
    if (f->running)
        harness_stop_pgturbo(&f->proc, 20);
    unlink(f->auth_file);
    unlink(f->hba_file);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- auth_type against each kind of secret ---- */

static void plain_auth_type_checks_every_kind_of_secret(void **state)
{
    fixture_t *f = *state;
    start(f, "plain", NULL, NULL, NULL, NULL);
    logs_in(f, USER_PLAIN, PW_PLAIN, AUTH_CLEARTEXT);
    logs_in(f, USER_MD5, PW_MD5, AUTH_CLEARTEXT);
    logs_in(f, USER_SCRAM, PW_SCRAM, AUTH_CLEARTEXT);
    password_refused(f, USER_PLAIN, "wrong", AUTH_CLEARTEXT);
    password_refused(f, USER_MD5, "wrong", AUTH_CLEARTEXT);
    password_refused(f, USER_SCRAM, "wrong", AUTH_CLEARTEXT);
    password_refused(f, "pgturbo_ca_nobody", PW_PLAIN, AUTH_CLEARTEXT);
    /* The secret itself is not a password: an md5 hash sent in clear does not log in. */
    password_refused(f, USER_MD5, md5_secret, AUTH_CLEARTEXT);
    others_unaffected(f);
    finish(f);
}

static void md5_auth_type_checks_every_kind_of_secret(void **state)
{
    fixture_t *f = *state;
    start(f, "md5", NULL, NULL, NULL, NULL);
    logs_in(f, USER_PLAIN, PW_PLAIN, AUTH_MD5);
    logs_in(f, USER_MD5, PW_MD5, AUTH_MD5);
    logs_in(f, USER_SCRAM, PW_SCRAM, AUTH_SASL);
    password_refused(f, USER_PLAIN, "wrong", AUTH_MD5);
    password_refused(f, USER_MD5, "wrong", AUTH_MD5);
    password_refused(f, USER_SCRAM, "wrong", AUTH_SASL);
    password_refused(f, "pgturbo_ca_nobody", PW_PLAIN, AUTH_MD5);
    others_unaffected(f);
    finish(f);
}

static void scram_auth_type_checks_plain_and_scram_secrets(void **state)
{
    fixture_t *f = *state;
    start(f, "scram-sha-256", NULL, NULL, NULL, NULL);
    logs_in(f, USER_PLAIN, PW_PLAIN, AUTH_SASL);
    logs_in(f, USER_SCRAM, PW_SCRAM, AUTH_SASL);
    password_refused(f, USER_PLAIN, "wrong", AUTH_SASL);
    password_refused(f, USER_SCRAM, "wrong", AUTH_SASL);
    password_refused(f, "pgturbo_ca_nobody", PW_PLAIN, AUTH_SASL);
    /* An md5 hash cannot check a SCRAM proof: even the right password fails, as unknown. */
    password_refused(f, USER_MD5, PW_MD5, AUTH_SASL);
    others_unaffected(f);
    finish(f);
}

/* ---- unknown users look like known ones ---- */

/*
 * Starts a SCRAM exchange as user: checks AuthenticationSASL, sends a client-first message
 * and returns the server-first message in server_first (its nonce extends the client's, the
 * iteration count is 4096). sc and fd stay ready for the client-final message.
 */
static void scram_until_server_first(int fd, scram_client_t *sc, const char *user,
                                     char *server_first, size_t len)
{
    char data[MSG_CAP], msg[SCRAM_MESSAGE_MAX], nonce[256], iterations[16];
    harness_raw_startup(fd, user, "postgres");
    expect_auth(fd, AUTH_SASL, data, sizeof(data));
    assert_string_equal(data, "SCRAM-SHA-256");
    int n = scram_client_first(sc, "", NULL, msg, sizeof(msg));
    assert_true(n > 0);
    send_sasl_initial(fd, "SCRAM-SHA-256", true, n, msg, (size_t)n);
    expect_auth(fd, AUTH_SASL_CONTINUE, server_first, len);
    scram_attribute(server_first, 'r', nonce, sizeof(nonce));
    assert_int_equal(strncmp(nonce, sc->nonce, strlen(sc->nonce)), 0);
    assert_true(strlen(nonce) > strlen(sc->nonce));
    scram_attribute(server_first, 'i', iterations, sizeof(iterations));
    assert_string_equal(iterations, "4096");
}

/* The salt pgturbo sends user (base64), after which the exchange is dropped. */
static void salt_of(fixture_t *f, const char *user, char *salt, size_t len)
{
    int fd = raw_open(f);
    scram_client_t sc;
    char server_first[SCRAM_MESSAGE_MAX];
    scram_until_server_first(fd, &sc, user, server_first, sizeof(server_first));
    scram_attribute(server_first, 's', salt, len);
    raw_quit(f, fd);
}

static void unknown_user_gets_a_scram_salt_stable_per_name(void **state)
{
    fixture_t *f = *state;
    char a1[128], a2[128], b[128], known[128], expected[128];
    start(f, "scram-sha-256", NULL, NULL, NULL, NULL);
    salt_of(f, "pgturbo_ca_nobody_a", a1, sizeof(a1));
    salt_of(f, "pgturbo_ca_nobody_a", a2, sizeof(a2));
    salt_of(f, "pgturbo_ca_nobody_b", b, sizeof(b));
    assert_string_equal(a1, a2);
    assert_string_not_equal(a1, b);
    /* 16 bytes, as PostgreSQL's own salts, so that the length gives nothing away either. */
    assert_int_equal(strlen(a1), 24);
    assert_int_equal(strlen(b), 24);
    /* A user with a SCRAM secret gets the salt of the verifier, also 16 bytes. */
    salt_of(f, USER_SCRAM, known, sizeof(known));
    const char *s = strchr(scram_verifier, ':') + 1;
    snprintf(expected, sizeof(expected), "%.*s", (int)(strchr(s, '$') - s), s);
    assert_string_equal(known, expected);
    assert_int_equal(strlen(known), 24);

    /* The unknown user's exchange goes to the end and fails like a wrong password. */
    int fd = raw_open(f);
    scram_client_t sc;
    char server_first[SCRAM_MESSAGE_MAX], final[SCRAM_MESSAGE_MAX];
    const char *why = "";
    scram_until_server_first(fd, &sc, "pgturbo_ca_nobody_a", server_first, sizeof(server_first));
    assert_true(scram_client_final(&sc, "any password", server_first, final, sizeof(final), &why) >
                0);
    send_sasl_response(fd, final);
    expect_fatal(fd, "28P01", "password authentication failed for user \"pgturbo_ca_nobody_a\"");
    raw_close(f, fd);
    others_unaffected(f);
    finish(f);
}

/*
 * A plain auth_file secret has no salt: pgturbo derives a verifier for each login. Were its
 * salt new each time, two connections would tell such a user from an unknown one, whose salt
 * stays the same.
 */
static void plain_secret_user_gets_a_stable_scram_salt_too(void **state)
{
    fixture_t *f = *state;
    char first[128], second[128];
    start(f, "scram-sha-256", NULL, NULL, NULL, NULL);
    salt_of(f, USER_PLAIN, first, sizeof(first));
    salt_of(f, USER_PLAIN, second, sizeof(second));
    assert_string_equal(first, second);
    assert_int_equal(strlen(first), 24);
    logs_in(f, USER_PLAIN, PW_PLAIN, AUTH_SASL);
    password_refused(f, USER_PLAIN, "wrong", AUTH_SASL);
    finish(f);
}

static void unknown_user_gets_an_md5_challenge_then_28P01(void **state)
{
    fixture_t *f = *state;
    char salt[16];
    start(f, "md5", NULL, NULL, NULL, NULL);
    int fd = raw_open(f);
    harness_raw_startup(fd, "pgturbo_ca_nobody", "postgres");
    char body[MSG_CAP];
    size_t len = 0;
    assert_int_equal(harness_raw_read_message(fd, body, sizeof(body), &len), 'R');
    assert_int_equal(len, 8); /* the code and a 4-byte salt */
    assert_int_equal(get32(body), AUTH_MD5);
    memcpy(salt, body + 4, 4);
    char answer[36];
    assert_int_equal(scram_md5_password("pgturbo_ca_nobody", "guess", (uint8_t *)salt, answer), 0);
    send_password(fd, answer);
    expect_fatal(fd, "28P01", "password authentication failed for user \"pgturbo_ca_nobody\"");
    raw_close(f, fd);
    others_unaffected(f);
    finish(f);
}

static void md5_auth_type_asks_for_scram_when_the_secret_is_a_verifier(void **state)
{
    fixture_t *f = *state;
    start(f, "md5", NULL, NULL, NULL, NULL);
    int fd = raw_open(f);
    char data[MSG_CAP];
    harness_raw_startup(fd, USER_SCRAM, "postgres");
    expect_auth(fd, AUTH_SASL, data, sizeof(data));
    assert_string_equal(data, "SCRAM-SHA-256");
    raw_quit(f, fd);
    /* and the exchange succeeds, ending with the verifier's server signature */
    fd = raw_open(f);
    login_t l;
    raw_login_on(fd, USER_SCRAM, "postgres", PW_SCRAM, &l);
    assert_true(l.ready);
    assert_int_equal(l.n_codes, 4);
    assert_int_equal(l.codes[0], AUTH_SASL);
    assert_int_equal(l.codes[1], AUTH_SASL_CONTINUE);
    assert_int_equal(l.codes[2], AUTH_SASL_FINAL);
    assert_int_equal(l.codes[3], AUTH_OK);
    raw_quit(f, fd);
    finish(f);
}

/* ---- auth_type hba ---- */

static void hba_first_matching_line_decides(void **state)
{
    fixture_t *f = *state;
    static const char hba[] = "# first match wins\n"
                              "host all " USER_MD5 " 127.0.0.1/32 reject\n"
                              "host all " USER_ALICE " 127.0.0.1/32 trust\n"
                              "host all " USER_ALICE " 127.0.0.1/32 reject\n"
                              "host all " USER_PLAIN " 127.0.0.1/32 password\n"
                              "host all all 127.0.0.1/32 scram-sha-256\n"
                              "host all " USER_MD5 " 127.0.0.1/32 trust\n";
    start(f, "hba", NULL, hba, NULL, NULL);
    /* alice is trusted: AuthenticationOk at once, no password asked */
    int fd = raw_open(f);
    login_t l;
    raw_login_on(fd, USER_ALICE, "postgres", NULL, &l);
    assert_true(l.ready);
    assert_int_equal(l.n_codes, 1);
    assert_int_equal(l.codes[0], AUTH_OK);
    raw_quit(f, fd);
    pq_logs_in_as(f, "postgres", USER_ALICE, NULL, USER_ALICE);
    /* USER_PLAIN sends a cleartext password; everybody else on 127.0.0.1 must do SCRAM */
    logs_in(f, USER_PLAIN, PW_PLAIN, AUTH_CLEARTEXT);
    password_refused(f, USER_PLAIN, "wrong", AUTH_CLEARTEXT);
    logs_in(f, USER_SCRAM, PW_SCRAM, AUTH_SASL);
    password_refused(f, USER_SCRAM, "wrong", AUTH_SASL);
    password_refused(f, "pgturbo_ca_nobody", "wrong", AUTH_SASL);
    /* the reject line comes before the trust line and the scram line */
    fd = raw_open(f);
    raw_login_on(fd, USER_MD5, "postgres", PW_MD5, &l);
    assert_true(l.failed);
    assert_int_equal(l.n_codes, 0);
    assert_string_equal(l.error.severity, "FATAL");
    assert_string_equal(l.error.sqlstate, "28000");
    int port = 0;
    char user[64] = "";
    assert_int_equal(sscanf(l.error.message,
                            "no auth_hba_file line allows host \"127.0.0.1:%d\", user \"%63[^\"]\"",
                            &port, user),
                     2);
    assert_true(port > 0);
    assert_string_equal(user, USER_MD5);
    assert_non_null(strstr(l.error.message, ", database \"postgres\", TLS off"));
    assert_true(harness_raw_closed(fd, 2000));
    raw_close(f, fd);
    pq_refused(f, "postgres", USER_MD5, PW_MD5, "no auth_hba_file line allows host");
    others_unaffected(f);
    finish(f);
}

static void hba_line_order_matters(void **state)
{
    fixture_t *f = *state;
    /* The same two lines the other way round: the scram line now comes first for alice. */
    static const char hba[] = "host all all 127.0.0.1/32 scram-sha-256\n"
                              "host all " USER_ALICE " 127.0.0.1/32 trust\n";
    start(f, "hba", NULL, hba, NULL, NULL);
    pq_refused(f, "postgres", USER_ALICE, NULL, "no password supplied");
    logs_in(f, USER_ALICE, PW_ALICE, AUTH_SASL);
    password_refused(f, USER_ALICE, "wrong", AUTH_SASL);
    finish(f);
}

static void hba_without_matching_line_refuses_with_28000(void **state)
{
    fixture_t *f = *state;
    /* Each line misses on one column: address, TLS, database, user, connection type. */
    static const char hba[] = "host all all 10.0.0.0/8 trust\n"
                              "hostssl all all 127.0.0.1/32 trust\n"
                              "host other all 127.0.0.1/32 trust\n"
                              "host all " USER_ALICE " 127.0.0.1/32 trust\n"
                              "local all all trust\n";
    char databases[256];
    snprintf(databases, sizeof(databases), "other = host=127.0.0.1 port=%d dbname=postgres\n",
             harness_pg_port());
    start(f, "hba", NULL, hba, NULL, databases);
    int fd = raw_open(f);
    login_t l;
    raw_login_on(fd, USER_PLAIN, "postgres", PW_PLAIN, &l);
    assert_true(l.failed);
    assert_int_equal(l.n_codes, 0);
    assert_string_equal(l.error.severity, "FATAL");
    assert_string_equal(l.error.sqlstate, "28000");
    assert_int_equal(strncmp(l.error.message, "no auth_hba_file line allows host \"127.0.0.1:", 45),
                     0);
    assert_non_null(
        strstr(l.error.message, "\", user \"" USER_PLAIN "\", database \"postgres\", TLS off"));
    assert_true(harness_raw_closed(fd, 2000));
    raw_close(f, fd);
    pq_refused(f, "postgres", USER_PLAIN, PW_PLAIN, "no auth_hba_file line allows host");
    /* the database and user lines do match what they name */
    pq_logs_in_as(f, "other", USER_PLAIN, NULL, USER_PLAIN);
    pq_logs_in_as(f, "postgres", USER_ALICE, NULL, USER_ALICE);
    finish(f);
}

/* ---- pgturbo's own login to PostgreSQL ---- */

static void scram_pass_through_logs_in_with_the_clients_keys(void **state)
{
    fixture_t *f = *state;
    char users[1024], databases[256];
    snprintf(users, sizeof(users), "\"%s\" \"%s\"\n", PASS_SCRAM, pass_verifier);
    /* No password and no user: the server user is the client user, whose password pgturbo
     * does not know. */
    snprintf(databases, sizeof(databases), "passdb = host=127.0.0.1 port=%d dbname=postgres\n",
             harness_pg_port());
    start(f, "scram-sha-256", users, NULL, NULL, databases);

    /* A raw client sees the server signature of the verifier. */
    int fd = raw_open(f);
    login_t l;
    raw_login_on(fd, PASS_SCRAM, "passdb", PW_PASS, &l);
    if (!l.ready)
        fail_msg("pass-through login refused: %s %s", l.error.sqlstate, l.error.message);
    assert_int_equal(l.codes[0], AUTH_SASL);
    raw_quit(f, fd);

    /* Two clients in transactions: two fresh server connections, both logged in with keys. */
    PGconn *a = pq_open(f, "passdb", PASS_SCRAM, PW_PASS);
    PGconn *b = pq_open(f, "passdb", PASS_SCRAM, PW_PASS);
    assert_int_equal(PQstatus(a), CONNECTION_OK);
    assert_int_equal(PQstatus(b), CONNECTION_OK);
    harness_exec_ok(a, "BEGIN");
    harness_exec_ok(b, "BEGIN");
    char *pid_a = harness_query_value(a, "SELECT pg_backend_pid()");
    char *pid_b = harness_query_value(b, "SELECT pg_backend_pid()");
    char *who_a = harness_query_value(a, "SELECT current_user");
    char *who_b = harness_query_value(b, "SELECT session_user");
    harness_exec_ok(a, "COMMIT");
    harness_exec_ok(b, "COMMIT");
    PQfinish(a);
    PQfinish(b);
    assert_string_not_equal(pid_a, pid_b);
    assert_string_equal(who_a, PASS_SCRAM);
    assert_string_equal(who_b, PASS_SCRAM);
    free(pid_a);
    free(pid_b);
    free(who_a);
    free(who_b);

    /* PostgreSQL really asked: it logged both in with scram-sha-256 (pg_hba.conf). */
    PGconn *d = harness_connect_direct("postgres");
    char *method = harness_query_value(
        d, "SELECT auth_method FROM pg_hba_file_rules WHERE '" PASS_SCRAM "' = ANY(user_name)");
    PQfinish(d);
    assert_string_equal(method, "scram-sha-256");
    free(method);

    password_refused(f, PASS_SCRAM, "wrong", AUTH_SASL);
    finish(f);
}

static void scram_pass_through_needs_the_servers_verifier(void **state)
{
    fixture_t *f = *state;
    char users[1024], databases[256];
    /* The same password, another salt: the client proves it to pgturbo, but the keys are not
     * those PostgreSQL holds. */
    snprintf(users, sizeof(users), "\"%s\" \"%s\"\n", PASS_SCRAM, other_verifier);
    snprintf(databases, sizeof(databases), "passdb = host=127.0.0.1 port=%d dbname=postgres\n",
             harness_pg_port());
    start(f, "scram-sha-256", users, NULL, NULL, databases);
    int fd = raw_open(f);
    login_t l;
    raw_login_on(fd, PASS_SCRAM, "passdb", PW_PASS, &l);
    assert_true(l.failed);
    /* pgturbo accepted the client (AuthenticationSASLFinal came, with a good signature)... */
    assert_true(l.n_codes >= 3);
    assert_int_equal(l.codes[2], AUTH_SASL_FINAL);
    /* ...and PostgreSQL refused the keys. */
    assert_string_equal(l.error.sqlstate, "28P01");
    assert_string_equal(l.error.message,
                        "password authentication failed for user \"" PASS_SCRAM "\"");
    raw_close(f, fd);
    finish(f);
}

static void server_login_uses_a_plain_auth_file_secret(void **state)
{
    fixture_t *f = *state;
    char users[512], databases[512];
    int pg = harness_pg_port();
    snprintf(users, sizeof(users), "\"%s\" \"%s\"\n\"%s\" \"%s\"\n\"%s\" \"%s\"\n", PASS_PLAIN,
             PW_PASS, PASS_MD5, PW_PASS, PASS_SCRAM, PW_PASS);
    snprintf(databases, sizeof(databases),
             "srv_plain = host=127.0.0.1 port=%d dbname=postgres user=" PASS_PLAIN "\n"
             "srv_md5 = host=127.0.0.1 port=%d dbname=postgres user=" PASS_MD5 "\n"
             "srv_scram = host=127.0.0.1 port=%d dbname=postgres user=" PASS_SCRAM "\n",
             pg, pg, pg);
    start(f, "trust", users, NULL, NULL, databases);
    pq_logs_in_as(f, "srv_plain", "postgres", NULL, PASS_PLAIN); /* password */
    pq_logs_in_as(f, "srv_md5", "postgres", NULL, PASS_MD5);     /* md5 */
    pq_logs_in_as(f, "srv_scram", "postgres", NULL, PASS_SCRAM); /* scram-sha-256 */
    finish(f);
}

static void server_login_answers_md5_with_an_md5_auth_file_secret(void **state)
{
    fixture_t *f = *state;
    char users[1024], databases[512];
    int pg = harness_pg_port();
    /* An md5 secret answers md5 but not cleartext; a verifier of another user's login (no
     * client proved its keys for this pool) answers nothing. */
    snprintf(users, sizeof(users), "\"%s\" \"%s\"\n\"%s\" \"%s\"\n\"%s\" \"%s\"\n", PASS_MD5,
             pass_md5_secret, PASS_PLAIN, pass_md5_secret, PASS_SCRAM, pass_verifier);
    snprintf(databases, sizeof(databases),
             "srv_plain = host=127.0.0.1 port=%d dbname=postgres user=" PASS_PLAIN "\n"
             "srv_md5 = host=127.0.0.1 port=%d dbname=postgres user=" PASS_MD5 "\n"
             "srv_scram = host=127.0.0.1 port=%d dbname=postgres user=" PASS_SCRAM "\n",
             pg, pg, pg);
    start(f, "trust", users, NULL, NULL, databases);
    pq_logs_in_as(f, "srv_md5", "postgres", NULL, PASS_MD5);
    refused_on(f, "srv_plain", "postgres", NULL, NO_REQUEST, "28P01", NO_PASSWORD_FOR_SERVER);
    refused_on(f, "srv_scram", "postgres", NULL, NO_REQUEST, "28P01", NO_PASSWORD_FOR_SERVER);
    others_unaffected(f);
    finish(f);
}

/* ---- bad input during authentication ---- */

/* A raw connection as USER_SCRAM that has received AuthenticationSASL. */
static int sasl_started(fixture_t *f)
{
    int fd = raw_open(f);
    harness_raw_startup(fd, USER_SCRAM, "postgres");
    expect_auth(fd, AUTH_SASL, NULL, 0);
    return fd;
}

static void wrong_sasl_mechanism_is_refused_with_28000(void **state)
{
    fixture_t *f = *state;
    static const char *const mechanisms[] = {"SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", "", "PLAIN"};
    static const char first[] = "n,,n=,r=abcdefghijklmnop";
    start(f, "scram-sha-256", NULL, NULL, NULL, NULL);
    for (size_t i = 0; i < sizeof(mechanisms) / sizeof(mechanisms[0]); i++) {
        int fd = sasl_started(f);
        send_sasl_initial(fd, mechanisms[i], true, (int32_t)strlen(first), first, strlen(first));
        expect_fatal(fd, "28000", "client selected an invalid SASL authentication mechanism");
        raw_close(f, fd);
    }
    others_unaffected(f);
    finish(f);
}

static void malformed_sasl_initial_response_is_refused_with_08P01(void **state)
{
    fixture_t *f = *state;
    static const char first[] = "n,,n=,r=abcdefghijklmnop";
    const size_t n = strlen(first);
    start(f, "scram-sha-256", NULL, NULL, NULL, NULL);
    static const char malformed[] = "malformed SASLInitialResponse message";
    /* the mechanism name without its NUL: the message ends inside the name */
    int fd = sasl_started(f);
    send_msg(fd, 'p', "SCRAM-SHA-256", 13);
    expect_fatal(fd, "08P01", malformed);
    raw_close(f, fd);
    /* no length after the name */
    fd = sasl_started(f);
    send_msg(fd, 'p', "SCRAM-SHA-256", 14);
    expect_fatal(fd, "08P01", malformed);
    raw_close(f, fd);
    /* a length that is negative (-1 is "no initial response", which SCRAM cannot do) */
    static const int32_t bad_lengths[] = {-1, -2, INT32_MIN};
    for (size_t i = 0; i < sizeof(bad_lengths) / sizeof(bad_lengths[0]); i++) {
        fd = sasl_started(f);
        send_sasl_initial(fd, "SCRAM-SHA-256", true, bad_lengths[i], first, n);
        expect_fatal(fd, "08P01", malformed);
        raw_close(f, fd);
    }
    /* a length longer, then shorter, than the data */
    fd = sasl_started(f);
    send_sasl_initial(fd, "SCRAM-SHA-256", true, (int32_t)n + 1, first, n);
    expect_fatal(fd, "08P01", malformed);
    raw_close(f, fd);
    fd = sasl_started(f);
    send_sasl_initial(fd, "SCRAM-SHA-256", true, (int32_t)n - 1, first, n);
    expect_fatal(fd, "08P01", malformed);
    raw_close(f, fd);
    /* a well-framed client-first message that is not SCRAM */
    static const char *const garbage[] = {"hello", "", "n,,r=nonce", "x,,n=,r=abc", "n,,n=,r=a,"};
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        fd = sasl_started(f);
        size_t g = strlen(garbage[i]);
        send_sasl_initial(fd, "SCRAM-SHA-256", true, (int32_t)g, garbage[i], g);
        expect_fatal(fd, "08P01", "malformed SCRAM client-first message");
        raw_close(f, fd);
    }
    /* an empty nonce, or one with a byte that is not printable ASCII */
    static const char *const nonces[] = {"n,,n=,r=", "n,,n=,r=ab\tc"};
    for (size_t i = 0; i < sizeof(nonces) / sizeof(nonces[0]); i++) {
        fd = sasl_started(f);
        size_t g = strlen(nonces[i]);
        send_sasl_initial(fd, "SCRAM-SHA-256", true, (int32_t)g, nonces[i], g);
        expect_fatal(fd, "08P01", "SCRAM client nonce is not printable");
        raw_close(f, fd);
    }
    /* channel binding, which pgturbo does not offer */
    static const char binding[] = "p=tls-server-end-point,,n=,r=abcdefgh";
    fd = sasl_started(f);
    send_sasl_initial(fd, "SCRAM-SHA-256", true, (int32_t)strlen(binding), binding,
                      strlen(binding));
    expect_fatal(fd, "08P01", "SCRAM channel binding is not supported");
    raw_close(f, fd);
    others_unaffected(f);
    finish(f);
}

static void malformed_client_final_is_refused_with_08P01(void **state)
{
    fixture_t *f = *state;
    start(f, "scram-sha-256", NULL, NULL, NULL, NULL);
    static const char *const users[] = {USER_SCRAM, "pgturbo_ca_nobody"};
    for (size_t u = 0; u < sizeof(users) / sizeof(users[0]); u++) {
        /* Well-formed up to the proof, then: no proof; a proof that is not base64; a proof of
         * the wrong length; garbage. Known and unknown users get the same answer. */
        static const char *const tails[] = {"", ",p=!!!!not base64!!!!", ",p=AAAA", ",x"};
        for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]) + 1; i++) {
            int fd = raw_open(f);
            scram_client_t sc;
            char server_first[SCRAM_MESSAGE_MAX], final[SCRAM_MESSAGE_MAX], nonce[256];
            scram_until_server_first(fd, &sc, users[u], server_first, sizeof(server_first));
            scram_attribute(server_first, 'r', nonce, sizeof(nonce));
            if (i < sizeof(tails) / sizeof(tails[0]))
                snprintf(final, sizeof(final), "c=biws,r=%s%s", nonce, tails[i]);
            else
                snprintf(final, sizeof(final), "%s", "garbage");
            send_sasl_response(fd, final);
            expect_fatal(fd, "08P01", "malformed SCRAM client-final message");
            raw_close(f, fd);
        }
    }
    others_unaffected(f);
    finish(f);
}

static void replayed_client_final_is_refused_with_08P01(void **state)
{
    fixture_t *f = *state;
    start(f, "scram-sha-256", NULL, NULL, NULL, NULL);
    /* An exchange that succeeds, recorded. */
    int fd = raw_open(f);
    login_t l;
    raw_login_on(fd, USER_SCRAM, "postgres", PW_SCRAM, &l);
    assert_true(l.ready);
    assert_true(l.client_final[0] != '\0');
    raw_quit(f, fd);
    /* Replayed on a new connection, with the same client nonce: pgturbo's nonce is new. */
    fd = raw_open(f);
    scram_client_t sc;
    char msg[SCRAM_MESSAGE_MAX], server_first[SCRAM_MESSAGE_MAX];
    harness_raw_startup(fd, USER_SCRAM, "postgres");
    expect_auth(fd, AUTH_SASL, NULL, 0);
    int n = scram_client_first(&sc, "", l.nonce, msg, sizeof(msg));
    assert_true(n > 0);
    send_sasl_initial(fd, "SCRAM-SHA-256", true, n, msg, (size_t)n);
    expect_auth(fd, AUTH_SASL_CONTINUE, server_first, sizeof(server_first));
    send_sasl_response(fd, l.client_final);
    expect_fatal(fd, "08P01", "SCRAM nonce does not match the server-first message");
    raw_close(f, fd);
    others_unaffected(f);
    /* The recorded client still logs in with a new exchange. */
    logs_in(f, USER_SCRAM, PW_SCRAM, AUTH_SASL);
    finish(f);
}

static void other_messages_during_authentication_are_refused_with_08P01(void **state)
{
    fixture_t *f = *state;
    static const char expected[] = "expected a password message during authentication";
    start(f, "scram-sha-256", NULL, NULL, NULL, NULL);
    /* a Query instead of SASLInitialResponse */
    int fd = sasl_started(f);
    send_msg(fd, 'Q', "SELECT 1", 9);
    expect_fatal(fd, "08P01", expected);
    raw_close(f, fd);
    /* a Sync in the middle of the exchange, instead of the client-final message */
    fd = raw_open(f);
    scram_client_t sc;
    char server_first[SCRAM_MESSAGE_MAX];
    scram_until_server_first(fd, &sc, USER_SCRAM, server_first, sizeof(server_first));
    send_msg(fd, 'S', NULL, 0);
    expect_fatal(fd, "08P01", expected);
    raw_close(f, fd);
    /* a second startup packet, read as a message of type 0 whose length is made of the
     * packet's length and code: 0x00003100 bytes for this one, too long */
    fd = sasl_started(f);
    harness_raw_startup(fd, USER_SCRAM, "postgres");
    expect_fatal(fd, "08P01", "invalid authentication message length");
    raw_close(f, fd);
    /* an authentication message longer than pgturbo accepts */
    fd = sasl_started(f);
    uint8_t header[5] = {'p'};
    put32(header + 1, 1u << 20);
    harness_raw_send(fd, header, sizeof(header));
    expect_fatal(fd, "08P01", "invalid authentication message length");
    raw_close(f, fd);
    /* a password message without its NUL, to the cleartext method */
    finish(f);
    start(f, "plain", NULL, NULL, NULL, NULL);
    fd = raw_open(f);
    harness_raw_startup(fd, USER_PLAIN, "postgres");
    expect_auth(fd, AUTH_CLEARTEXT, NULL, 0);
    send_msg(fd, 'p', PW_PLAIN, strlen(PW_PLAIN));
    expect_fatal(fd, "08P01", "malformed password message");
    raw_close(f, fd);
    others_unaffected(f);
    finish(f);
}

/* Sends a CancelRequest for pid/key on a new connection; pgturbo closes it and says nothing. */
static void send_cancel(fixture_t *f, int32_t pid, int32_t key)
{
    uint8_t pkt[16];
    put32(pkt, sizeof(pkt));
    put32(pkt + 4, CANCEL_REQUEST);
    put32(pkt + 8, (uint32_t)pid);
    put32(pkt + 12, (uint32_t)key);
    int fd = raw_open(f);
    harness_raw_send(fd, pkt, sizeof(pkt));
    char body[64];
    size_t len = 0;
    assert_int_equal(harness_raw_read_message(fd, body, sizeof(body), &len), 0); /* EOF */
    raw_close(f, fd);
}

static void cancel_request_with_a_key_of_nobody_changes_nothing(void **state)
{
    fixture_t *f = *state;
    start(f, "scram-sha-256", NULL, NULL, NULL, NULL);
    /* A witness blocked on a lock that a direct connection holds. */
    PGconn *d = harness_connect_direct("postgres");
    harness_exec_ok(d, "SELECT pg_advisory_lock(" ADVISORY_LOCK_ID ")");
    int w = raw_open(f);
    login_t l;
    raw_login_on(w, USER_SCRAM, "postgres", PW_SCRAM, &l);
    assert_true(l.ready);
    static const char blocked[] = "SELECT pg_advisory_xact_lock(" ADVISORY_LOCK_ID ")";
    send_msg(w, 'Q', blocked, sizeof(blocked));
    char *waiting = NULL;
    for (int i = 0; i < 500; i++) {
        waiting = harness_query_value(d, "SELECT count(*) FROM pg_stat_activity WHERE "
                                         "wait_event_type = 'Lock' AND query LIKE "
                                         "'SELECT pg_advisory_xact_lock(" ADVISORY_LOCK_ID ")%'");
        if (strcmp(waiting, "1") == 0)
            break;
        free(waiting);
        waiting = NULL;
        harness_sleep_ms(20);
    }
    if (waiting == NULL)
        fail_msg("the witness's query never waited for the advisory lock");
    free(waiting);
    /* The witness's process id with a wrong key, and a process id that nobody has. */
    send_cancel(f, l.pid, l.key ^ 0x5a5a5a5a);
    send_cancel(f, l.pid + 100000, l.key);
    send_cancel(f, 0, 0);
    /* The witness's query was not cancelled: it completes when the lock is free. */
    harness_exec_ok(d, "SELECT pg_advisory_unlock(" ADVISORY_LOCK_ID ")");
    PQfinish(d);
    expect_ready(w);
    send_msg(w, 'Q', "SELECT 1", 9);
    expect_ready(w);
    raw_quit(f, w);
    others_unaffected(f);
    finish(f);
}

/* ---- admin console ---- */

static void console_refuses_users_outside_admin_and_stats_users(void **state)
{
    fixture_t *f = *state;
    start(f, "trust", NULL, NULL, "admin_users = " USER_ALICE "\nstats_users = " USER_MD5 "\n",
          NULL);
    refused_on(f, "pgturbo", "postgres", NULL, NO_REQUEST, "42501", CONSOLE_REFUSED);
    refused_on(f, "pgturbo", USER_PLAIN, NULL, NO_REQUEST, "42501", CONSOLE_REFUSED);
    /* the users listed get in */
    static const char *const listed[] = {USER_ALICE, USER_MD5};
    for (size_t i = 0; i < sizeof(listed) / sizeof(listed[0]); i++) {
        int fd = raw_open(f);
        login_t l;
        raw_login_on(fd, listed[i], "pgturbo", NULL, &l);
        assert_true(l.ready);
        raw_quit(f, fd);
    }
    finish(f);
}

static void console_checks_the_password_before_admin_users(void **state)
{
    fixture_t *f = *state;
    start(f, "md5", NULL, NULL, "admin_users = " USER_ALICE "\n", NULL);
    /* A wrong password fails as anywhere else, whether the user may use the console or not. */
    char msg[160];
    snprintf(msg, sizeof(msg), "password authentication failed for user \"%s\"", USER_PLAIN);
    refused_on(f, "pgturbo", USER_PLAIN, "wrong", AUTH_MD5, "28P01", msg);
    snprintf(msg, sizeof(msg), "password authentication failed for user \"%s\"", USER_ALICE);
    refused_on(f, "pgturbo", USER_ALICE, "wrong", AUTH_MD5, "28P01", msg);
    /* The right password: then the console check. */
    refused_on(f, "pgturbo", USER_PLAIN, PW_PLAIN, AUTH_MD5, "42501", CONSOLE_REFUSED);
    int fd = raw_open(f);
    login_t l;
    raw_login_on(fd, USER_ALICE, "pgturbo", PW_ALICE, &l);
    assert_true(l.ready);
    assert_int_equal(l.codes[0], AUTH_MD5);
    raw_quit(f, fd);
    finish(f);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup_fixture, teardown_fixture)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(plain_auth_type_checks_every_kind_of_secret),
        TEST(md5_auth_type_checks_every_kind_of_secret),
        TEST(scram_auth_type_checks_plain_and_scram_secrets),
        TEST(unknown_user_gets_a_scram_salt_stable_per_name),
        TEST(plain_secret_user_gets_a_stable_scram_salt_too),
        TEST(unknown_user_gets_an_md5_challenge_then_28P01),
        TEST(md5_auth_type_asks_for_scram_when_the_secret_is_a_verifier),
        TEST(hba_first_matching_line_decides),
        TEST(hba_line_order_matters),
        TEST(hba_without_matching_line_refuses_with_28000),
        TEST(scram_pass_through_logs_in_with_the_clients_keys),
        TEST(scram_pass_through_needs_the_servers_verifier),
        TEST(server_login_uses_a_plain_auth_file_secret),
        TEST(server_login_answers_md5_with_an_md5_auth_file_secret),
        TEST(wrong_sasl_mechanism_is_refused_with_28000),
        TEST(malformed_sasl_initial_response_is_refused_with_08P01),
        TEST(malformed_client_final_is_refused_with_08P01),
        TEST(replayed_client_final_is_refused_with_08P01),
        TEST(other_messages_during_authentication_are_refused_with_08P01),
        TEST(cancel_request_with_a_key_of_nobody_changes_nothing),
        TEST(console_refuses_users_outside_admin_and_stats_users),
        TEST(console_checks_the_password_before_admin_users),
    };
    return cmocka_run_group_tests(tests, setup_roles, teardown_roles);
}
