/*
 * client.c
 *    Client connections: startup, the welcome, and forwarding of the client's messages to the
 *    server it borrows, with prepared statements mapped to server-side names in transaction
 *    and statement mode.
 */
#include "client.h"

#include "auth.h"
#include "cache.h"
#include "cancel.h"
#include "console.h"
#include "log.h"
#include "pool.h"
#include "profile.h"
#include "proto.h"
#include "server.h"
#include "tls.h"
#include "worker.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

/* Above this much unsent output to a server, stop reading its client until it drains. */
#define SERVER_OUT_HIGH_WATER (512 * 1024)

static _Atomic int next_client_id;

static void on_io(void *arg, int events);
static void client_process(client_t *c);
static int forward_deallocate(client_t *c, server_t *s, const char *query, const uint8_t *rest,
                              uint32_t rest_len);

/*
 * The next cancel key of this thread: xorshift64*, seeded once per thread from getrandom, so
 * that a login costs no system call for it. Keys are unguessable enough for the purpose
 * PostgreSQL gives them (a random 32-bit secret per connection).
 */
static uint32_t cancel_key_next(void)
{
    static __thread uint64_t state;
    while (state == 0)
        if (getrandom(&state, sizeof(state), 0) != sizeof(state))
            state = (uint64_t)loop_clock_ms() * 0x9E3779B97F4A7C15ull;
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return (uint32_t)((state * 0x2545F4914F6CDD1Dull) >> 32);
}

static ssize_t io_read(client_t *c, void *p, size_t n)
{
    return c->ssl != NULL ? tls_read(c->ssl, p, n) : net_read(c->fd, p, n);
}

static ssize_t io_write(client_t *c, const void *p, size_t n)
{
    return c->ssl != NULL ? tls_write(c->ssl, p, n) : net_write(c->fd, p, n);
}

/* The shard of c's pool in c's worker, whose counters SHOW STATS reads; NULL without a pool. */
static pool_shard_t *shard(const client_t *c)
{
    return c->pool != NULL ? &c->pool->shards[c->worker->id] : NULL;
}

static uint32_t sendable(const client_t *c);

static void update_watch(client_t *c)
{
    if (c->state == CLIENT_CLOSED)
        return;
    int mask = c->reading_paused ? 0 : LOOP_READ;
    if (sendable(c) > 0 || c->tls_want_write)
        mask |= LOOP_WRITE;
    if (loop_watch(c->worker->loop, &c->io, mask) < 0)
        client_close(c, NULL, "epoll_ctl failed");
}

void client_accept(worker_t *w, int fd, const struct sockaddr_storage *addr, const char *peer)
{
    client_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->id = atomic_fetch_add(&next_client_id, 1) + 1;
    c->worker = w;
    c->fd = fd;
    c->state = CLIENT_LOGIN;
    c->connected_at = c->active_at = loop_now(w->loop);
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->addr = *addr;
    if (loop_add(w->loop, &c->io, fd, LOOP_READ, on_io, c) < 0) {
        close(fd);
        free(c);
        return;
    }
    atomic_fetch_add(&total_clients, 1);
    c->counted = true;
    worker_add_client(w, c);
    atomic_fetch_add_explicit(&w->counters.clients_accepted, 1, memory_order_relaxed);
    if (w->defer_accept)
        on_io(c, LOOP_READ); /* its first bytes are in: read them now, not after a wait */
}

void client_close(client_t *c, const char *sqlstate, const char *message)
{
    if (c->state == CLIENT_CLOSED)
        return;
    if (sqlstate != NULL) {
        client_log(LOG_INFO, c, "closing: %s (%s)", message, sqlstate);
        if (proto_build_error(&c->out, "FATAL", sqlstate, message) == 0) {
            while (buf_len(&c->out) > 0 && !c->tls_handshaking) {
                ssize_t n = io_write(c, buf_head(&c->out), buf_len(&c->out));
                if (n <= 0)
                    break;
                buf_consume(&c->out, (uint32_t)n);
            }
        }
    } else {
        client_log(LOG_DEBUG, c, "closing: %s", message);
    }
    if (c->state == CLIENT_WAITING)
        pool_unqueue(c->pool, c);
    if (c->welcomed)
        cancel_unregister(c);
    auth_free(c);
    console_client_closed(c);
    profile_client_gone(c);
    cache_client_gone(c);
    c->state = CLIENT_CLOSED;
    server_t *s = c->server;
    c->server = NULL;
    if (s != NULL) {
        s->client = NULL;
        server_client_left(s);
    }
    loop_forget(&c->io);
    tls_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
    if (c->counted)
        atomic_fetch_sub(&total_clients, 1);
    worker_bury_client(c->worker, c);
}

/* How many bytes at the head of c->out may be sent now. */
static uint32_t sendable(const client_t *c)
{
    return c->holds > 0 ? c->sendable : buf_len(&c->out);
}

int client_flush(client_t *c)
{
    pool_shard_t *sh = shard(c);
    while (sendable(c) > 0 && !c->tls_handshaking) {
        ssize_t n = io_write(c, buf_head(&c->out), sendable(c));
        if (n == NET_AGAIN)
            break;
        if (n < 0) {
            client_close(c, NULL, "cannot write to client");
            return -1;
        }
        buf_consume(&c->out, (uint32_t)n);
        if (c->holds > 0)
            c->sendable -= (uint32_t)n;
        if (sh != NULL)
            sh->bytes_sent += (uint64_t)n;
    }
    if (buf_len(&c->out) == 0) {
        buf_release(&c->out);
        if (c->server != NULL && c->server->reading_paused)
            server_pause_reading(c->server, false);
    }
    update_watch(c);
    return c->state == CLIENT_CLOSED ? -1 : 0;
}

void client_hold_output(client_t *c)
{
    if (c->holds++ == 0)
        c->sendable = buf_len(&c->out);
}

void client_release_output(client_t *c)
{
    if (c->holds > 0 && --c->holds == 0 && c->state != CLIENT_CLOSED && buf_len(&c->out) > 0)
        client_flush(c);
}

void client_pause_reading(client_t *c, bool pause)
{
    if (c->reading_paused == pause || c->state == CLIENT_CLOSED)
        return;
    c->reading_paused = pause;
    update_watch(c);
    if (!pause && buf_len(&c->in) > 0)
        client_process(c);
}

/* ---- startup ---- */

static int apply_startup_params(client_t *c, const proto_startup_t *st)
{
    char msg[128];
    for (int i = 0; i < st->n_params; i++) {
        const char *name = st->names[i];
        if (strcmp(name, "user") == 0 || strcmp(name, "database") == 0)
            continue;
        int id = params_find(name);
        if (id < 0) {
            snprintf(msg, sizeof(msg), "unsupported startup parameter: %.64s", name);
            client_close(c, "08P01", msg);
            return -1;
        }
        if (!params_set(&c->params, id, st->values[i])) {
            snprintf(msg, sizeof(msg), "value of startup parameter %s is too long", name);
            client_close(c, "08P01", msg);
            return -1;
        }
    }
    return 0;
}

/* Checks the startup packet's user and database and takes its parameters. */
static int check_startup(client_t *c, const proto_startup_t *st)
{
    const char *user = proto_startup_get(st, "user");
    const char *database = proto_startup_get(st, "database");
    if (database == NULL || database[0] == '\0')
        database = user;
    if (strlen(user) >= CONFIG_NAME_LEN || strlen(database) >= CONFIG_NAME_LEN) {
        client_close(c, "08P01", "user or database name is too long");
        return -1;
    }
    snprintf(c->user, sizeof(c->user), "%s", user);
    snprintf(c->database, sizeof(c->database), "%s", database);
    const config_t *cfg = c->worker->cfg;
    if (c->worker->shutting_down) {
        client_close(c, "57P01", "pgturbo is shutting down");
        return -1;
    }
    if (atomic_load(&total_clients) > cfg->max_client_conn) {
        atomic_fetch_add_explicit(&c->worker->counters.clients_refused, 1, memory_order_relaxed);
        client_close(c, "53300", "no more connections allowed (max_client_conn)");
        return -1;
    }
    if (cfg->client_tls.sslmode >= TLS_REQUIRE && c->ssl == NULL) {
        client_close(c, "28000", "SSL required");
        return -1;
    }
    if (console_is_database(database))
        return 0;
    c->db = config_find_database(cfg, database);
    if (c->db == NULL) {
        char msg[128];
        snprintf(msg, sizeof(msg), "no such database: %s", database);
        client_close(c, "3D000", msg);
        return -1;
    }
    return apply_startup_params(c, st);
}

/* c, logged in, joins the pool of its database and user: it gets the welcome, at once when
 * the pool knows it, else once the pool's first server is in. */
static void join_pool(client_t *c)
{
    c->pool = pool_get(c->db, c->database, c->user);
    if (c->pool == NULL) {
        client_close(c, "53200", "out of memory");
        return;
    }
    uint8_t client_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
    if (auth_scram_keys(c, client_key, server_key) &&
        (c->db->user[0] == '\0' || strcmp(c->db->user, c->user) == 0))
        pool_set_scram_keys(c->pool, client_key, server_key);
    auth_free(c);
    client_log(LOG_DEBUG, c, "login");
    if (atomic_load(&c->pool->has_welcome)) {
        client_welcome(c);
        return;
    }
    /* The first client of a pool waits for a server to learn what to tell it. */
    server_t *s = pool_acquire(c->pool, c);
    if (s == NULL && c->state == CLIENT_WAITING)
        client_pause_reading(c, true);
    else if (s != NULL && !client_take_server(c, s))
        pool_release(s);
}

void client_authenticated(client_t *c)
{
    if (console_is_database(c->database)) {
        auth_free(c);
        if (!console_allows(c, &c->console_admin)) {
            client_close(c, "42501",
                         "not allowed to use the admin console (user is in neither "
                         "admin_users nor stats_users)");
            return;
        }
        console_welcome(c);
        return;
    }
    join_pool(c);
}

int client_adopt(worker_t *w, int fd, const config_database_t *db, const char *database,
                 const char *user, const params_t *params, const char *peer)
{
    /* The console is never reached this way: its users are checked at login. */
    bool refused = w->shutting_down || console_is_database(database);
    client_t *c = refused ? NULL : calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return -1;
    }
    c->id = atomic_fetch_add(&next_client_id, 1) + 1;
    c->worker = w;
    c->fd = fd;
    c->internal = true;
    c->state = CLIENT_AUTH;
    c->connected_at = c->active_at = loop_now(w->loop);
    c->db = db;
    c->params = *params;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    snprintf(c->user, sizeof(c->user), "%s", user);
    snprintf(c->database, sizeof(c->database), "%s", database);
    if (loop_add(w->loop, &c->io, fd, LOOP_READ, on_io, c) < 0) {
        close(fd);
        free(c);
        return -1;
    }
    worker_add_client(w, c);
    join_pool(c);
    return 0;
}

/* The client asked for TLS: 'S' and the handshake when configured, else 'N'. */
static int answer_ssl_request(client_t *c)
{
    SSL_CTX *ctx = c->worker->cfg->client_ctx;
    if (c->ssl != NULL) {
        client_close(c, "08P01", "SSLRequest on a connection already using TLS");
        return -1;
    }
    if (ctx == NULL)
        return buf_append(&c->out, "N", 1) < 0 ? -1 : client_flush(c);
    if (buf_len(&c->in) > 0) { /* bytes sent before our answer would bypass TLS */
        client_close(c, "08P01", "unexpected data after SSLRequest");
        return -1;
    }
    if (buf_append(&c->out, "S", 1) < 0 || client_flush(c) < 0)
        return -1;
    if (buf_len(&c->out) > 0 || (c->ssl = tls_accept_new(ctx, c->fd)) == NULL) {
        client_close(c, NULL, "cannot start TLS");
        return -1;
    }
    c->tls_handshaking = true;
    return 1;
}

/* Reads startup-phase packets until the client logs in, starts TLS, or closes. */
static void handle_startup(client_t *c)
{
    while (c->state == CLIENT_LOGIN && !c->tls_handshaking) {
        proto_msg_t m;
        proto_frame_result_t r = proto_frame_startup(buf_head(&c->in), buf_len(&c->in), &m);
        if (r == PROTO_FRAME_SHORT || r == PROTO_FRAME_PARTIAL)
            return;
        if (r < 0) {
            client_close(c, "08P01", "invalid startup packet length");
            return;
        }
        proto_startup_t st;
        const char *why = NULL;
        if (proto_parse_startup(&m, &st, &why) < 0) {
            client_close(c, "08P01", why);
            return;
        }
        if (st.code == PROTO_SSL_REQUEST || st.code == PROTO_GSSENC_REQUEST) {
            buf_consume(&c->in, m.len);
            int rc = st.code == PROTO_SSL_REQUEST
                         ? answer_ssl_request(c)
                         : (buf_append(&c->out, "N", 1) < 0 ? -1 : client_flush(c));
            if (rc < 0)
                return;
            continue;
        }
        if (st.code == PROTO_CANCEL_REQUEST) {
            cancel_request(st.cancel_pid, st.cancel_key);
            client_close(c, NULL, "cancel request");
            return;
        }
        if (check_startup(c, &st) < 0)
            return;
        buf_consume(&c->in, m.len); /* st points into it: not used from here on */
        auth_result_t ar = auth_begin(c);
        if (ar == AUTH_OK)
            client_authenticated(c);
    }
}

/* Password messages while authenticating. */
static void handle_auth(client_t *c)
{
    while (c->state == CLIENT_AUTH) {
        proto_msg_t m;
        proto_frame_result_t r =
            proto_frame(buf_head(&c->in), buf_len(&c->in), AUTH_MESSAGE_MAX, &m);
        if (r == PROTO_FRAME_SHORT || r == PROTO_FRAME_PARTIAL)
            return;
        if (r < 0) {
            client_close(c, "08P01", "invalid authentication message length");
            return;
        }
        if (m.type == 'X' /* Terminate */) {
            client_close(c, NULL, "client left during authentication");
            return;
        }
        if (m.type != 'p' /* PasswordMessage, SASLInitialResponse, SASLResponse */) {
            client_close(c, "08P01", "expected a password message during authentication");
            return;
        }
        auth_result_t ar = auth_handle(c, &m);
        if (ar == AUTH_CLOSED)
            return;
        buf_consume(&c->in, m.len);
        if (ar == AUTH_OK)
            client_authenticated(c);
    }
}

void client_welcome(client_t *c)
{
    pool_t *pool = c->pool;
    for (int i = 0; i < PARAM_COUNT; i++)
        if (!(c->params.known & (1u << i)) && (pool->defaults.known & (1u << i)))
            params_set(&c->params, i, pool->defaults.value[i]);
    int rc = proto_build_auth_ok(&c->out);
    proto_msg_t m;
    const buf_t *w = &pool->welcome;
    for (uint32_t off = 0; rc == 0 && off < buf_len(w); off += m.len) {
        if (proto_frame(buf_head(w) + off, buf_len(w) - off, UINT32_MAX, &m) !=
            PROTO_FRAME_COMPLETE)
            break;
        proto_reader_t r;
        proto_reader_init(&r, m.body, m.body_len);
        const char *name = proto_get_string(&r);
        const char *value = proto_get_string(&r);
        int id = params_find(name);
        if (id >= 0)
            value = c->params.value[id];
        rc = proto_build_parameter_status(&c->out, name, value);
    }
    c->cancel_key = (int32_t)cancel_key_next();
    if (rc == 0)
        rc = proto_build_backend_key(&c->out, c->id, c->cancel_key);
    if (rc == 0)
        rc = proto_build_ready(&c->out, 'I');
    if (rc < 0) {
        client_close(c, "53200", "out of memory");
        return;
    }
    if (cancel_register(c) < 0) {
        client_close(c, "53200", "out of memory");
        return;
    }
    c->welcomed = true;
    c->state = CLIENT_IDLE;
    client_flush(c);
}

/* ---- prepared statements (transaction and statement mode) ---- */

/* Whether pgturbo keeps the client's named statements itself: in transaction and statement
 * mode, unless max_prepared_statements = 0 asks for PgBouncer's old pass-through. */
static bool maps_statements(const client_t *c)
{
    return atomic_load_explicit(&c->pool->mode, memory_order_relaxed) != POOL_MODE_SESSION &&
           c->worker->cfg->max_prepared_statements > 0;
}

/* Makes sure s has stmt; a Parse sent for that is the client's own (visible) or pgturbo's. */
static int ensure_prepared(server_t *s, const prepared_stmt_t *stmt, bool visible)
{
    if (s->prepared == NULL) {
        s->prepared = prepared_cache_create(s->worker->cfg->max_prepared_statements);
        if (s->prepared == NULL)
            return -1;
    }
    if (prepared_cache_lookup(s->prepared, stmt->hash)) {
        if (visible && server_expect(s, PENDING_FAKE_PARSE, false, 0) < 0)
            return -1;
        server_pay_fakes(s);
        return 0;
    }
    uint64_t evicted;
    if (prepared_cache_add(s->prepared, stmt->hash, &evicted)) {
        char name[PREPARED_NAME_LEN];
        prepared_server_name(evicted, name);
        if (proto_build_close(&s->out, 'S', name) < 0 ||
            server_expect(s, PENDING_CLOSE, true, 0) < 0)
            return -1;
    }
    uint32_t mark;
    if (proto_begin(&s->out, 'P' /* Parse */, &mark) < 0 ||
        proto_put_string(&s->out, stmt->server_name) < 0 ||
        proto_put_bytes(&s->out, stmt->body, stmt->body_len) < 0)
        return -1;
    proto_end(&s->out, mark);
    return server_expect(s, PENDING_PARSE, !visible, stmt->hash);
}

static int forward_parse(client_t *c, server_t *s, const proto_msg_t *m)
{
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    const char *name = proto_get_string(&r);
    if (!proto_reader_ok(&r))
        return -2;
    if (name[0] == '\0') {
        const char *query = proto_get_string(&r);
        int rc = proto_reader_ok(&r)
                     ? forward_deallocate(c, s, query, m->body + r.pos, r.len - r.pos)
                     : 0;
        if (rc != 0)
            return rc < 0 ? -1 : 0;
        return buf_append(&s->out, m->body - PROTO_HEADER_LEN, m->len) < 0
                   ? -1
                   : server_expect(s, PENDING_PARSE, false, 0);
    }
    if (c->stmts == NULL && (c->stmts = prepared_map_create()) == NULL)
        return -1;
    prepared_stmt_t *old = prepared_map_get(c->stmts, name);
    if (old != NULL) {
        /* PostgreSQL refuses a second Parse of a name (42P05) and keeps the first statement:
         * let it, by parsing again under the name the server has it by. */
        uint32_t mark;
        if (ensure_prepared(s, old, false) < 0 || proto_begin(&s->out, 'P', &mark) < 0 ||
            proto_put_string(&s->out, old->server_name) < 0 ||
            proto_put_bytes(&s->out, m->body + r.pos, r.len - r.pos) < 0)
            return -1;
        proto_end(&s->out, mark);
        return server_expect(s, PENDING_PARSE, false, 0);
    }
    prepared_stmt_t *stmt = prepared_map_put(c->stmts, name, m->body + r.pos, r.len - r.pos);
    if (stmt == NULL)
        return -1;
    return ensure_prepared(s, stmt, true);
}

/* Bind and Describe of a named statement: prepare it if needed, use the server-side name. */
static int forward_statement_use(client_t *c, server_t *s, const proto_msg_t *m)
{
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    const char *portal = NULL;
    uint8_t kind = 'S';
    if (m->type == 'B')
        portal = proto_get_string(&r);
    else
        kind = proto_get_byte(&r);
    const char *name = proto_get_string(&r);
    if (!proto_reader_ok(&r))
        return -2;
    pending_kind_t expect = m->type == 'B' ? PENDING_BIND : PENDING_DESCRIBE;
    prepared_stmt_t *stmt = (kind == 'S' && name[0] != '\0' && c->stmts != NULL)
                                ? prepared_map_get(c->stmts, name)
                                : NULL;
    if (stmt == NULL)
        return buf_append(&s->out, m->body - PROTO_HEADER_LEN, m->len) < 0
                   ? -1
                   : server_expect(s, expect, false, 0);
    if (ensure_prepared(s, stmt, false) < 0)
        return -1;
    uint32_t mark;
    int rc = proto_begin(&s->out, m->type, &mark);
    if (rc == 0 && portal != NULL)
        rc = proto_put_string(&s->out, portal);
    else if (rc == 0)
        rc = proto_put_byte(&s->out, kind);
    if (rc == 0)
        rc = proto_put_string(&s->out, stmt->server_name);
    if (rc == 0)
        rc = proto_put_bytes(&s->out, m->body + r.pos, r.len - r.pos);
    if (rc < 0)
        return -1;
    proto_end(&s->out, mark);
    return server_expect(s, expect, false, 0);
}

static int forward_close(client_t *c, server_t *s, const proto_msg_t *m)
{
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    uint8_t kind = proto_get_byte(&r);
    const char *name = proto_get_string(&r);
    if (!proto_reader_ok(&r))
        return -2;
    if (kind == 'S' && name[0] != '\0' && c->stmts != NULL && prepared_map_remove(c->stmts, name)) {
        /* The statement stays prepared on the server for whoever uses the same text. */
        if (server_expect(s, PENDING_FAKE_CLOSE, false, 0) < 0)
            return -1;
        server_pay_fakes(s);
        return 0;
    }
    return buf_append(&s->out, m->body - PROTO_HEADER_LEN, m->len) < 0
               ? -1
               : server_expect(s, PENDING_CLOSE, false, 0);
}

/*
 * Recognises "DEALLOCATE [PREPARE] name|ALL" (case-insensitive, unquoted names folded to
 * lower case as PostgreSQL does). Returns true with the name in name (or *all set).
 */
static bool parse_deallocate(const char *p, char *name, size_t len, bool *all)
{
    while (isspace((unsigned char)*p))
        p++;
    if (strncasecmp(p, "deallocate", 10) != 0 || !isspace((unsigned char)p[10]))
        return false;
    p += 10;
    while (isspace((unsigned char)*p))
        p++;
    if (strncasecmp(p, "prepare", 7) == 0 && isspace((unsigned char)p[7]))
        for (p += 7; isspace((unsigned char)*p); p++)
            ;
    size_t n = 0;
    bool quoted = *p == '"';
    for (p += quoted; *p && n + 1 < len; p++) {
        if (quoted ? *p == '"' : !(isalnum((unsigned char)*p) || *p == '_' || *p == '$'))
            break;
        name[n++] = quoted ? *p : (char)tolower((unsigned char)*p);
    }
    name[n] = '\0';
    for (p += quoted; isspace((unsigned char)*p) || *p == ';'; p++)
        ;
    *all = !quoted && strcmp(name, "all") == 0;
    return n > 0 && *p == '\0';
}

/*
 * A simple-query DEALLOCATE of statements the client prepared through the protocol: those
 * live in pgturbo's map, so pgturbo answers. Returns true when it did.
 */
static bool answer_deallocate(client_t *c, const proto_msg_t *m)
{
    char name[CONFIG_NAME_LEN];
    bool all;
    if (c->stmts == NULL || m->body_len == 0 || m->body[m->body_len - 1] != '\0' ||
        !parse_deallocate((const char *)m->body, name, sizeof(name), &all))
        return false;
    if (all)
        prepared_map_clear(c->stmts);
    else if (!prepared_map_remove(c->stmts, name))
        return false;
    char status = c->server != NULL ? c->server->txn_status : 'I';
    if (proto_build_command_complete(&c->out, all ? "DEALLOCATE ALL" : "DEALLOCATE") < 0 ||
        proto_build_ready(&c->out, status) < 0)
        client_close(c, "53200", "out of memory");
    return true;
}

/*
 * An unnamed Parse of "DEALLOCATE name" (psycopg sends it so) for a statement in the
 * client's map: the server deallocates the statement's server-side name instead, prepared
 * first if needed, so the client gets PostgreSQL's own responses. DEALLOCATE ALL runs as is
 * and empties the map and the server's cache. Returns 1 when handled, 0 when not, -1 on OOM.
 */
static int forward_deallocate(client_t *c, server_t *s, const char *query, const uint8_t *rest,
                              uint32_t rest_len)
{
    char name[CONFIG_NAME_LEN];
    bool all;
    if (c->stmts == NULL || !parse_deallocate(query, name, sizeof(name), &all))
        return 0;
    if (all) {
        prepared_map_clear(c->stmts);
        prepared_cache_free(s->prepared);
        s->prepared = NULL;
        return 0;
    }
    prepared_stmt_t *stmt = prepared_map_get(c->stmts, name);
    if (stmt == NULL)
        return 0;
    char sql[PREPARED_NAME_LEN + 16];
    snprintf(sql, sizeof(sql), "DEALLOCATE %s", stmt->server_name);
    uint32_t mark;
    if (ensure_prepared(s, stmt, false) < 0 || proto_begin(&s->out, 'P', &mark) < 0 ||
        proto_put_string(&s->out, "") < 0 || proto_put_string(&s->out, sql) < 0 ||
        proto_put_bytes(&s->out, rest, rest_len) < 0)
        return -1;
    proto_end(&s->out, mark);
    prepared_cache_remove(s->prepared, stmt->hash);
    prepared_map_remove(c->stmts, name);
    return server_expect(s, PENDING_PARSE, false, 0) < 0 ? -1 : 1;
}

/*
 * A client without a server that prepares a statement the pool already knows to be valid
 * (Parse ... Sync, as PQprepare sends) gets ParseComplete and ReadyForQuery from pgturbo: the
 * statement is prepared on a server when the client first uses it. Besides saving a round
 * trip, this keeps clients that prepare synchronously while every server is busy (pgbench -M
 * prepared with fewer threads than clients) from waiting on each other. Returns true when the
 * message was answered.
 */
static bool answer_locally(client_t *c, const proto_msg_t *m)
{
    if (m->type == 'S' /* Sync */ || m->type == 'H' /* Flush */) {
        if (!c->parsed_locally)
            return false;
        c->parsed_locally = m->type == 'H';
        if (m->type == 'S' && proto_build_ready(&c->out, 'I') < 0)
            client_close(c, "53200", "out of memory");
        return true;
    }
    if (m->type != 'P')
        return false;
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    const char *name = proto_get_string(&r);
    if (!proto_reader_ok(&r) || name[0] == '\0' ||
        (c->stmts != NULL && prepared_map_get(c->stmts, name) != NULL) ||
        !pool_statement_known(c->pool, prepared_hash(m->body + r.pos, r.len - r.pos)))
        return false;
    if ((c->stmts == NULL && (c->stmts = prepared_map_create()) == NULL) ||
        prepared_map_put(c->stmts, name, m->body + r.pos, r.len - r.pos) == NULL ||
        proto_build_empty(&c->out, '1' /* ParseComplete */) < 0) {
        client_close(c, "53200", "out of memory");
        return true;
    }
    c->parsed_locally = true;
    return true;
}

static void count_query(client_t *c)
{
    atomic_fetch_add_explicit(&c->worker->counters.queries, 1, memory_order_relaxed);
    c->pool->shards[c->worker->id].query_count++;
}

/* Sends one client message on to its server. Returns 0, -1 (out of memory), -2 (malformed). */
static int forward_message(client_t *c, server_t *s, const proto_msg_t *m)
{
    bool mapped = maps_statements(c);
    const uint8_t *whole = m->body - PROTO_HEADER_LEN;
    pending_kind_t expect;
    uint64_t fingerprint = 0;
    switch (m->type) {
    case 'Q': /* Query */
        count_query(c);
        fingerprint =
            profile_query(c, (const char *)m->body, strnlen((const char *)m->body, m->body_len));
        expect = PENDING_QUERY;
        break;
    case 'F': /* FunctionCall */
        count_query(c);
        expect = PENDING_QUERY;
        break;
    case 'P': /* Parse */
        s->sync_pending = true;
        if (mapped)
            return forward_parse(c, s, m);
        expect = PENDING_PARSE;
        break;
    case 'B': /* Bind */
    case 'D': /* Describe */
        s->sync_pending = true;
        if (mapped)
            return forward_statement_use(c, s, m);
        expect = m->type == 'B' ? PENDING_BIND : PENDING_DESCRIBE;
        break;
    case 'C': /* Close */
        s->sync_pending = true;
        if (mapped)
            return forward_close(c, s, m);
        expect = PENDING_CLOSE;
        break;
    case 'E': /* Execute */
        count_query(c);
        fingerprint = profile_execute(c);
        s->sync_pending = true;
        expect = PENDING_EXECUTE;
        break;
    case 'S': /* Sync */
        s->sync_pending = false;
        expect = PENDING_SYNC;
        break;
    case 'H': /* Flush */
    case 'd': /* CopyData */
    case 'c': /* CopyDone */
    case 'f': /* CopyFail */
        return buf_append(&s->out, whole, m->len);
    default:
        return -2;
    }
    if (buf_append(&s->out, whole, m->len) < 0 || server_expect(s, expect, false, 0) < 0)
        return -1;
    server_measure_last(s, fingerprint);
    return 0;
}

/* Tells profile.c about the statements a client prepares, binds and closes (whoever answers
 * them: the server, or pgturbo itself for a statement the pool knows). */
static void observe_statement(client_t *c, const proto_msg_t *m)
{
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    if (m->type == 'P') {
        const char *name = proto_get_string(&r);
        const char *query = proto_get_string(&r);
        if (proto_reader_ok(&r))
            profile_parse(c, name, query, strlen(query));
    } else if (m->type == 'B') {
        (void)proto_get_string(&r); /* portal */
        const char *name = proto_get_string(&r);
        if (proto_reader_ok(&r))
            profile_bind(c, name, m->body + r.pos, r.len - r.pos);
    } else if (m->type == 'C' && proto_get_byte(&r) == 'S') {
        const char *name = proto_get_string(&r);
        if (proto_reader_ok(&r))
            profile_close_statement(c, name);
    }
}

/* Handles the client's whole messages; a client without a server asks its pool for one. */
static void client_process(client_t *c)
{
    while ((c->state == CLIENT_IDLE || c->state == CLIENT_ACTIVE) && !c->reading_paused) {
        uint32_t avail = buf_len(&c->in);
        if (avail == 0)
            break;
        proto_msg_t m;
        proto_frame_result_t r =
            proto_frame(buf_head(&c->in), avail, (uint32_t)c->worker->cfg->max_packet_size, &m);
        if (r == PROTO_FRAME_SHORT)
            break;
        if (r == PROTO_FRAME_PARTIAL)
            break; /* the buffer grows as the bytes come, not as the length claims */
        if (r < 0) {
            client_close(c, "08P01",
                         r == PROTO_FRAME_TOO_LARGE ? "message exceeds max_packet_size"
                                                    : "invalid message length");
            return;
        }
        if (m.type == 'X' /* Terminate */) {
            client_close(c, NULL, "client sent Terminate");
            return;
        }
        if (strchr("QFPBDCESHdcf", m.type) == NULL || m.type == '\0') {
            char msg[64];
            snprintf(msg, sizeof(msg), "invalid frontend message type %d", m.type);
            client_close(c, "08P01", msg);
            return;
        }
        if (c->console) {
            console_handle(c, &m);
            if (c->state == CLIENT_CLOSED)
                return;
            buf_consume(&c->in, m.len);
            continue;
        }
        if (m.type == 'P' || m.type == 'B' || m.type == 'C')
            observe_statement(c, &m);
        if (m.type == 'P' || m.type == 'C')
            cache_observe(c, &m);
        if (m.type == 'Q' || m.type == 'P' || m.type == 'B') {
            int answered = cache_answer(c, &m);
            if (answered == CACHE_WAIT)
                break;
            if (answered < 0) {
                client_close(c, "53200", "out of memory");
                return;
            }
            if (answered > 0) {
                buf_consume(&c->in, (uint32_t)answered);
                continue;
            }
        }
        bool mapped = maps_statements(c);
        if (m.type == 'Q' && mapped && (c->server == NULL || c->server->pend_count == 0) &&
            answer_deallocate(c, &m)) {
            buf_consume(&c->in, m.len);
            continue;
        }
        if (c->server == NULL && mapped && answer_locally(c, &m)) {
            if (c->state == CLIENT_CLOSED)
                return;
            buf_consume(&c->in, m.len);
            continue;
        }
        if (c->server == NULL) {
            c->parsed_locally = false;
            server_t *s = pool_acquire(c->pool, c);
            if (s == NULL) {
                client_pause_reading(c, true);
                break;
            }
            c->server = s;
            c->state = CLIENT_ACTIVE;
            if (server_link(s, c) < 0) {
                client_close(c, "53200", "out of memory");
                return;
            }
        }
        int rc = forward_message(c, c->server, &m);
        if (rc == 0 && cache_forwarded(c, c->server, &m) < 0)
            rc = -1;
        if (rc < 0) {
            client_close(c, rc == -1 ? "53200" : "08P01",
                         rc == -1 ? "out of memory" : "malformed message");
            return;
        }
        buf_consume(&c->in, m.len);
    }
    if (buf_len(&c->in) == 0)
        buf_release(&c->in);
    if (c->state == CLIENT_CLOSED)
        return;
    server_t *s = c->server;
    if (s != NULL && server_flush(s) == 0 && buf_len(&s->out) > SERVER_OUT_HIGH_WATER)
        client_pause_reading(c, true);
    if (c->state != CLIENT_CLOSED && buf_len(&c->out) > 0)
        client_flush(c);
}

void client_continue(client_t *c)
{
    if (c->state == CLIENT_IDLE || c->state == CLIENT_ACTIVE)
        client_process(c);
}

bool client_take_server(client_t *c, server_t *s)
{
    if (c->state == CLIENT_CLOSED)
        return false;
    if (!c->welcomed) {
        client_welcome(c);
        if (c->state == CLIENT_CLOSED)
            return false;
    }
    if (s == NULL || buf_len(&c->in) == 0) {
        /* It waited only for the welcome: it goes on without a server. */
        c->state = CLIENT_IDLE;
        client_pause_reading(c, false);
        return false;
    }
    c->server = s;
    c->state = CLIENT_ACTIVE;
    if (server_link(s, c) < 0) {
        client_close(c, "53200", "out of memory");
        return true;
    }
    c->reading_paused = false;
    update_watch(c);
    client_process(c);
    return true;
}

void client_server_released(client_t *c)
{
    if (c->state != CLIENT_ACTIVE)
        return;
    c->state = CLIENT_IDLE;
    if (c->worker->shutting_down) {
        client_close(c, "57P01", "pgturbo is shutting down");
        return;
    }
    if (buf_len(&c->in) > 0)
        client_process(c);
}

/* Advances the TLS handshake; false while it is not done (or the client was closed). */
static bool continue_handshake(client_t *c)
{
    char err[256];
    int rc = tls_handshake(c->ssl, err, sizeof(err));
    if (rc == TLS_FAILED) {
        c->tls_handshaking = false;
        tls_free(c->ssl); /* nothing more can be said over a failed handshake */
        c->ssl = NULL;
        char msg[300];
        snprintf(msg, sizeof(msg), "TLS handshake failed: %s", err);
        c->out.start = c->out.end = 0;
        client_log(LOG_INFO, c, "%s", msg);
        client_close(c, NULL, msg);
        return false;
    }
    c->tls_want_write = rc == TLS_WANT_WRITE;
    c->tls_handshaking = rc != TLS_DONE;
    update_watch(c);
    return !c->tls_handshaking;
}

/* Hands what was read to the handler of the client's state. */
static void client_input(client_t *c)
{
    if (c->state == CLIENT_LOGIN)
        handle_startup(c);
    if (c->state == CLIENT_AUTH)
        handle_auth(c);
    if (c->state == CLIENT_IDLE || c->state == CLIENT_ACTIVE)
        client_process(c);
}

static void client_read(client_t *c)
{
    pool_shard_t *sh = shard(c);
    ssize_t n;
    bool got = false;
    do {
        if (buf_reserve(&c->in, 4096) < 0) {
            client_close(c, "53200", "out of memory");
            return;
        }
        n = io_read(c, buf_tail(&c->in), buf_room(&c->in));
        if (n <= 0)
            break;
        buf_produce(&c->in, (uint32_t)n);
        got = true;
        if (sh != NULL)
            sh->bytes_received += (uint64_t)n;
    } while (c->ssl != NULL && tls_pending(c->ssl) > 0); /* OpenSSL may hold more */
    if (got) {
        c->active_at = loop_now(c->worker->loop);
        client_input(c);
    }
    if (n != NET_AGAIN && n <= 0 && c->state != CLIENT_CLOSED)
        client_close(c, NULL, n == 0 ? "client closed the connection" : "cannot read from client");
}

static void on_io(void *arg, int events)
{
    client_t *c = arg;
    if (c->tls_handshaking && !continue_handshake(c))
        return;
    if ((events & LOOP_WRITE) && client_flush(c) < 0)
        return;
    if ((events & LOOP_READ) && c->state != CLIENT_CLOSED && !c->reading_paused)
        client_read(c);
}

const char *client_state_name(client_state_t state)
{
    switch (state) {
    case CLIENT_LOGIN:
    case CLIENT_AUTH:
        return "login";
    case CLIENT_WAITING:
        return "waiting";
    case CLIENT_IDLE:
        return "idle";
    case CLIENT_ACTIVE:
        return "active";
    case CLIENT_CLOSED:
        break;
    }
    return "closed";
}

void client_check_timeouts(client_t *c, int64_t now)
{
    const config_t *cfg = c->worker->cfg;
    server_t *s = c->server;
    switch (c->state) {
    case CLIENT_LOGIN:
    case CLIENT_AUTH:
        if (cfg->client_login_timeout > 0 && now - c->connected_at > cfg->client_login_timeout)
            client_close(c, "08P01", "client_login_timeout");
        break;
    case CLIENT_WAITING:
        if (cfg->query_wait_timeout > 0 && now - c->wait_since > cfg->query_wait_timeout)
            client_close(c, "08P01", "query_wait_timeout");
        break;
    case CLIENT_IDLE:
        if (cfg->client_idle_timeout > 0 && now - c->active_at > cfg->client_idle_timeout)
            client_close(c, "08P01", "client_idle_timeout");
        break;
    case CLIENT_ACTIVE:
        if (s->pend_count > 0) {
            if (cfg->query_timeout > 0 && now - c->active_at > cfg->query_timeout)
                client_close(c, "57014", "query_timeout");
        } else if (s->txn_status != 'I') {
            if (cfg->idle_transaction_timeout > 0 &&
                now - c->active_at > cfg->idle_transaction_timeout)
                client_close(c, "25P03", "idle_transaction_timeout");
        } else if (cfg->client_idle_timeout > 0 && now - c->active_at > cfg->client_idle_timeout) {
            client_close(c, "08P01", "client_idle_timeout");
        }
        break;
    case CLIENT_CLOSED:
        break;
    }
}
