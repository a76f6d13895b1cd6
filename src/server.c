/*
 * server.c
 *    Server connections: login, the queue of owed responses, forwarding to the client.
 *
 * See server.h for the model. The invariant that keeps the response order right: the head of
 * the pending queue is never a fake entry once a function of this file returns, because fakes
 * are paid to the client as soon as everything before them has been answered.
 */
#include "server.h"

#include "authfile.h"
#include "cache.h"
#include "client.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "profile.h"
#include "proto.h"
#include "scram.h"
#include "tls.h"
#include "worker.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Above this much unsent output to a client, stop reading its server until it drains. */
#define CLIENT_OUT_HIGH_WATER   (512 * 1024)
#define MAX_MESSAGE_FROM_SERVER 0x7fffffffu

static _Atomic int next_server_id;

static void on_io(void *arg, int events);
static void handle_input(server_t *s);

static ssize_t io_read(server_t *s, void *p, size_t n)
{
    return s->ssl != NULL ? tls_read(s->ssl, p, n) : net_read(s->fd, p, n);
}

static ssize_t io_write(server_t *s, const void *p, size_t n)
{
    return s->ssl != NULL ? tls_write(s->ssl, p, n) : net_write(s->fd, p, n);
}

static void update_watch(server_t *s)
{
    if (s->state == SERVER_CLOSED)
        return;
    int mask = s->reading_paused ? 0 : LOOP_READ;
    bool connecting = s->state == SERVER_CONNECTING && !s->tls_requested && !s->tls_handshaking;
    if (buf_len(&s->out) > 0 || connecting || s->tls_want_write)
        mask |= LOOP_WRITE;
    if (loop_watch(s->worker->loop, &s->io, mask) < 0)
        server_close(s, "epoll_ctl failed");
}

server_t *server_connect(pool_t *pool, worker_t *w)
{
    server_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->id = atomic_fetch_add(&next_server_id, 1) + 1;
    s->pool = pool;
    s->worker = w;
    s->state = SERVER_CONNECTING;
    s->txn_status = 'I';
    s->connected_at = loop_now(w->loop);
    s->idle_since = s->used_at = s->connected_at;

    pool_target_t t;
    pthread_mutex_lock(&pool->lock);
    t = pool->target;
    pthread_mutex_unlock(&pool->lock);
    char err[256];
    s->fd = net_connect(t.host, t.port, err, sizeof(err));
    if (s->fd < 0) {
        server_log(LOG_WARNING, s, "%s", err);
        free(s);
        return NULL;
    }
    if (loop_add(w->loop, &s->io, s->fd, LOOP_READ | LOOP_WRITE, on_io, s) < 0) {
        close(s->fd);
        free(s);
        return NULL;
    }
    worker_add_server(w, s);
    atomic_fetch_add_explicit(&w->counters.server_connects, 1, memory_order_relaxed);
    server_log(LOG_DEBUG, s, "connecting to %s:%d", t.host, t.port);
    return s;
}

void server_close(server_t *s, const char *reason)
{
    if (s->state == SERVER_CLOSED)
        return;
    bool never_ready = s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN;
    server_log(never_ready ? LOG_WARNING : LOG_DEBUG, s, "closing: %s", reason);
    if (never_ready && s->fail_sqlstate[0] == '\0') {
        snprintf(s->fail_sqlstate, sizeof(s->fail_sqlstate), "08006");
        snprintf(s->fail_message, sizeof(s->fail_message), "server connection failed: %s", reason);
    }
    if (s->state == SERVER_IDLE)
        pool_remove_idle(s);
    client_t *c = s->client;
    s->client = NULL;
    loop_forget(&s->io);
    close(s->fd);
    s->state = SERVER_CLOSED;
    if (c != NULL) {
        c->server = NULL;
        char msg[300];
        snprintf(msg, sizeof(msg), "server connection lost: %s", reason);
        client_close(c, "08006", msg);
    }
    cache_server_gone(s);
    pool_server_gone(s, never_ready);
    worker_bury_server(s->worker, s);
}

const char *server_state_name(server_state_t state)
{
    switch (state) {
    case SERVER_CONNECTING:
    case SERVER_LOGIN:
        return "login";
    case SERVER_IDLE:
        return "idle";
    case SERVER_ACTIVE:
    case SERVER_MOVING:
        return "active";
    case SERVER_CLOSED:
        break;
    }
    return "closed";
}

void server_free(server_t *s)
{
    cache_server_gone(s);
    buf_free(&s->in);
    buf_free(&s->out);
    buf_free(&s->welcome);
    tls_free(s->ssl);
    free(s->scram);
    prepared_cache_free(s->prepared);
    free(s->pending);
    free(s);
}

int server_flush(server_t *s)
{
    while (buf_len(&s->out) > 0 && !s->tls_handshaking) {
        ssize_t n = io_write(s, buf_head(&s->out), buf_len(&s->out));
        if (n == NET_AGAIN)
            break;
        if (n < 0) {
            server_close(s, "cannot write to server");
            return -1;
        }
        buf_consume(&s->out, (uint32_t)n);
    }
    if (buf_len(&s->out) == 0) {
        buf_release(&s->out);
        client_t *c = s->client;
        if (c != NULL && c->reading_paused && c->state == CLIENT_ACTIVE)
            client_pause_reading(c, false);
    }
    update_watch(s);
    return s->state == SERVER_CLOSED ? -1 : 0;
}

void server_pause_reading(server_t *s, bool pause)
{
    if (s->reading_paused == pause || s->state == SERVER_CLOSED)
        return;
    s->reading_paused = pause;
    update_watch(s);
    /* What was read before the pause may be all the server sends: handle it now. */
    if (!pause && s->state != SERVER_CLOSED && buf_len(&s->in) > 0)
        handle_input(s);
}

/* ---- the pending queue ---- */

static pending_t *pending_head(server_t *s)
{
    return s->pend_count > 0 ? &s->pending[s->pend_head] : NULL;
}

static void pending_pop(server_t *s)
{
    s->pend_head = (s->pend_head + 1) % s->pend_cap;
    s->pend_count--;
}

int server_expect(server_t *s, pending_kind_t kind, bool swallow, uint64_t hash)
{
    if (s->pend_count == s->pend_cap) {
        uint32_t cap = s->pend_cap ? s->pend_cap * 2 : 16;
        pending_t *p = malloc(cap * sizeof(*p));
        if (p == NULL)
            return -1;
        for (uint32_t i = 0; i < s->pend_count; i++)
            p[i] = s->pending[(s->pend_head + i) % s->pend_cap];
        free(s->pending);
        s->pending = p;
        s->pend_cap = cap;
        s->pend_head = 0;
    }
    if (s->pend_count == 0 && !swallow) {
        s->query_started_us = loop_clock_us();
        if (s->txn_status == 'I')
            s->xact_started_us = s->query_started_us;
    }
    pending_t *e = &s->pending[(s->pend_head + s->pend_count) % s->pend_cap];
    e->kind = (uint8_t)kind;
    e->mark = PENDING_MARK_NONE;
    e->swallow = swallow;
    e->hash = hash;
    e->failed = false;
    e->rows = 0;
    e->fingerprint = 0;
    s->pend_count++;
    return 0;
}

void server_pay_fakes(server_t *s)
{
    pending_t *head;
    while ((head = pending_head(s)) != NULL &&
           (head->kind == PENDING_FAKE_PARSE || head->kind == PENDING_FAKE_CLOSE)) {
        uint8_t type = head->kind == PENDING_FAKE_PARSE ? '1' /* ParseComplete */
                                                        : '3' /* CloseComplete */;
        pending_pop(s);
        if (s->client != NULL && proto_build_empty(&s->client->out, type) < 0)
            client_close(s->client, "53200", "out of memory");
    }
}

int server_run_query(server_t *s, const char *sql)
{
    if (proto_build_query(&s->out, sql) < 0)
        return -1;
    return server_expect(s, PENDING_QUERY, true, 0);
}

bool server_is_idle(const server_t *s)
{
    return s->pend_count == 0 && !s->sync_pending && s->txn_status == 'I' && s->stream_left == 0;
}

/* ---- login ---- */

static int send_startup(server_t *s)
{
    pool_t *pool = s->pool;
    pthread_mutex_lock(&pool->lock);
    const char *names[] = {"user", "database"};
    const char *values[] = {pool->target.user[0] ? pool->target.user : pool->user,
                            pool->target.dbname[0] ? pool->target.dbname : pool->database};
    int rc = proto_build_startup(&s->out, names, values, 2);
    pthread_mutex_unlock(&pool->lock);
    if (rc < 0)
        return -1;
    s->state = SERVER_LOGIN;
    return server_flush(s);
}

static void login_failed(server_t *s, const proto_msg_t *m)
{
    proto_error_t e;
    if (proto_parse_error(m->body, m->body_len, &e) == 0) {
        snprintf(s->fail_sqlstate, sizeof(s->fail_sqlstate), "%s", e.sqlstate);
        snprintf(s->fail_message, sizeof(s->fail_message), "%s", e.message);
    }
    server_close(s, s->fail_message[0] ? s->fail_message : "login failed");
}

static void record_parameter(server_t *s, const proto_msg_t *m)
{
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    const char *name = proto_get_string(&r);
    const char *value = proto_get_string(&r);
    int id = params_find(name);
    if (!proto_reader_ok(&r) || id < 0)
        return;
    params_set(&s->params, id, value);
    if (s->client != NULL)
        params_set(&s->client->params, id, value);
}

/* Fails the login with a message for the clients waiting on it. */
static void auth_failed(server_t *s, const char *sqlstate, const char *message)
{
    snprintf(s->fail_sqlstate, sizeof(s->fail_sqlstate), "%s", sqlstate);
    snprintf(s->fail_message, sizeof(s->fail_message), "%s", message);
    server_close(s, message);
}

/* Sends a PasswordMessage / SASLInitialResponse / SASLResponse ('p'). With a mechanism, the
 * data is length-prefixed as SASLInitialResponse wants. */
static int send_password_message(server_t *s, const char *mechanism, const void *data, size_t n)
{
    uint32_t mark;
    if (proto_begin(&s->out, 'p', &mark) < 0 ||
        (mechanism != NULL &&
         (proto_put_string(&s->out, mechanism) < 0 || proto_put_int32(&s->out, (int32_t)n) < 0)) ||
        proto_put_bytes(&s->out, data, n) < 0)
        return -1;
    proto_end(&s->out, mark);
    return server_flush(s);
}

/* Copies the rest of an Authentication message (SASL data) as a C string into out. */
static bool sasl_data(proto_reader_t *r, char *out, size_t outlen)
{
    uint32_t n = r->len - r->pos;
    if (n >= outlen)
        return false;
    memcpy(out, proto_get_bytes(r, n), n);
    out[n] = '\0';
    return true;
}

/* What pgturbo can prove itself with when PostgreSQL asks for a password. */
typedef struct credentials {
    const char *password;   /* plain: from [databases], or a plain auth_file secret */
    const char *md5_secret; /* an auth_file "md5..." secret (answers md5 only) */
    const pool_target_t *t; /* SCRAM keys a client proved, when t->has_keys */
} credentials_t;

static credentials_t find_credentials(const server_t *s, const pool_target_t *t, const char *user)
{
    credentials_t cr = {.password = t->password[0] != '\0' ? t->password : NULL, .t = t};
    const authfile_t *users = s->worker->cfg->users;
    const char *secret = users != NULL ? authfile_lookup(users, user) : NULL;
    if (cr.password == NULL && secret != NULL) {
        auth_secret_kind_t kind = authfile_secret_kind(secret);
        if (kind == AUTH_SECRET_PLAIN)
            cr.password = secret;
        else if (kind == AUTH_SECRET_MD5)
            cr.md5_secret = secret;
    }
    return cr;
}

static int answer_md5(server_t *s, const credentials_t *cr, const char *user, proto_reader_t *r)
{
    char msg[36];
    const uint8_t *salt = proto_get_bytes(r, 4);
    if (!proto_reader_ok(r))
        return -1;
    int rc = cr->password != NULL ? scram_md5_password(user, cr->password, salt, msg)
                                  : scram_md5_salted(cr->md5_secret, salt, msg);
    return rc < 0 ? -1 : send_password_message(s, NULL, msg, strlen(msg) + 1);
}

static int answer_sasl(server_t *s, proto_reader_t *r)
{
    char msg[SCRAM_MESSAGE_MAX];
    const char *mech = proto_get_string(r);
    while (proto_reader_ok(r) && mech[0] != '\0' && strcmp(mech, "SCRAM-SHA-256") != 0)
        mech = proto_get_string(r);
    if (!proto_reader_ok(r) || mech[0] == '\0') {
        auth_failed(s, "28000", "the server offers no SASL mechanism pgturbo knows");
        return 0;
    }
    s->scram = malloc(sizeof(*s->scram));
    int n = s->scram ? scram_client_first(s->scram, "", NULL, msg, sizeof(msg)) : -1;
    return n < 0 ? -1 : send_password_message(s, mech, msg, (size_t)n);
}

static int answer_sasl_continue(server_t *s, const credentials_t *cr, proto_reader_t *r)
{
    char msg[SCRAM_MESSAGE_MAX], in[SCRAM_MESSAGE_MAX];
    const char *why = "SCRAM exchange failed";
    int n = -1;
    if (s->scram != NULL && sasl_data(r, in, sizeof(in)))
        n = cr->password != NULL
                ? scram_client_final(s->scram, cr->password, in, msg, sizeof(msg), &why)
                : scram_client_final_keys(s->scram, cr->t->client_key, cr->t->server_key, in, msg,
                                          sizeof(msg), &why);
    if (n < 0) {
        auth_failed(s, "08P01", why);
        return 0;
    }
    return send_password_message(s, NULL, msg, (size_t)n);
}

/*
 * Answers an authentication request of PostgreSQL: with the [databases] entry's password,
 * else the user's auth_file secret, else (SCRAM) the keys a client of the pool proved.
 */
static void handle_auth(server_t *s, proto_reader_t *r)
{
    int32_t code = proto_get_int32(r);
    if (code == 0 /* AuthenticationOk */)
        return;
    pool_target_t t;
    pthread_mutex_lock(&s->pool->lock);
    t = s->pool->target;
    pthread_mutex_unlock(&s->pool->lock);
    const char *user = t.user[0] ? t.user : s->pool->user;
    credentials_t cr = find_credentials(s, &t, user);
    bool scram = code == 10 || code == 11 || code == 12;
    if (cr.password == NULL && !(code == 5 && cr.md5_secret != NULL) && !(scram && t.has_keys)) {
        auth_failed(s, "28P01",
                    "the server asks for a password and pgturbo has none for this "
                    "user (password= in [databases], or auth_file)");
        return;
    }
    char in[SCRAM_MESSAGE_MAX];
    int rc = 0;
    switch (code) {
    case 3: /* AuthenticationCleartextPassword */
        rc = send_password_message(s, NULL, cr.password, strlen(cr.password) + 1);
        break;
    case 5: /* AuthenticationMD5Password */
        rc = answer_md5(s, &cr, user, r);
        break;
    case 10: /* AuthenticationSASL: the mechanisms offered */
        rc = answer_sasl(s, r);
        break;
    case 11: /* AuthenticationSASLContinue: the server-first message */
        rc = answer_sasl_continue(s, &cr, r);
        break;
    case 12: /* AuthenticationSASLFinal: the server's signature */
        if (s->scram == NULL || !sasl_data(r, in, sizeof(in)) ||
            !scram_client_verify(s->scram, in)) {
            auth_failed(s, "08P01", "the server's SCRAM signature is wrong");
            return;
        }
        free(s->scram);
        s->scram = NULL;
        break;
    default:
        auth_failed(s, "28000", "the server asks for an authentication method pgturbo does not do");
        return;
    }
    if (rc < 0 && s->state != SERVER_CLOSED)
        auth_failed(s, "53200", "out of memory during server login");
}

static void handle_login(server_t *s, const proto_msg_t *m)
{
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    switch (m->type) {
    case 'R': /* Authentication* */
        handle_auth(s, &r);
        break;
    case 'S': /* ParameterStatus */
        record_parameter(s, m);
        if (!atomic_load(&s->pool->has_welcome) &&
            buf_append(&s->welcome, m->body - PROTO_HEADER_LEN, m->len) < 0)
            server_close(s, "out of memory");
        break;
    case 'K': /* BackendKeyData */
        s->backend_pid = proto_get_int32(&r);
        s->backend_key = proto_get_int32(&r);
        break;
    case 'E': /* ErrorResponse */
        login_failed(s, m);
        break;
    case 'N': /* NoticeResponse */
        break;
    case 'Z': /* ReadyForQuery */
        if (!atomic_load(&s->pool->has_welcome))
            pool_set_welcome(s->pool, &s->welcome, &s->params);
        buf_free(&s->welcome);
        s->txn_status = 'I';
        server_log(LOG_DEBUG, s, "logged in, backend pid %d", s->backend_pid);
        pool_server_ready(s);
        break;
    default:
        server_close(s, "unexpected message during login");
    }
}

/* ---- forwarding ---- */

static void to_client(server_t *s, const uint8_t *p, uint32_t n)
{
    client_t *c = s->client;
    if (buf_append(&c->out, p, n) < 0) {
        client_close(c, "53200", "out of memory");
        return;
    }
    if (buf_len(&c->out) > CLIENT_OUT_HIGH_WATER && client_flush(c) == 0 &&
        buf_len(&c->out) > CLIENT_OUT_HIGH_WATER)
        server_pause_reading(s, true);
}

/* After an error, the server skips to the next Sync: so do the owed responses. */
static void skip_to_sync(server_t *s)
{
    pending_t *head;
    while ((head = pending_head(s)) != NULL && head->kind != PENDING_SYNC &&
           head->kind != PENDING_QUERY)
        pending_pop(s);
}

static bool is_terminal(uint8_t type, const pending_t *head)
{
    switch (type) {
    case 'Z': /* ReadyForQuery */
        return head->kind == PENDING_QUERY || head->kind == PENDING_SYNC;
    case '1': /* ParseComplete */
        return head->kind == PENDING_PARSE;
    case '2': /* BindComplete */
        return head->kind == PENDING_BIND;
    case '3': /* CloseComplete */
        return head->kind == PENDING_CLOSE;
    case 'T': /* RowDescription */
    case 'n': /* NoData */
        return head->kind == PENDING_DESCRIBE;
    case 'C': /* CommandComplete */
    case 'I': /* EmptyQueryResponse */
    case 's': /* PortalSuspended */
        return head->kind == PENDING_EXECUTE;
    default:
        return false;
    }
}

static void handle_error(server_t *s, const proto_msg_t *m, pending_t *head, bool *forward)
{
    if (head->kind == PENDING_PARSE && head->hash != 0 && s->prepared != NULL)
        prepared_cache_remove(s->prepared, head->hash);
    if (head->kind == PENDING_PARSE && s->client != NULL)
        *forward = true; /* a Parse made for the client's Bind fails for the client */
    if (head->swallow && !*forward && log_enabled(LOG_DEBUG)) {
        proto_error_t e;
        if (proto_parse_error(m->body, m->body_len, &e) == 0)
            server_log(LOG_DEBUG, s, "own query failed: %s %s", e.sqlstate, e.message);
    }
}

void server_measure_last(server_t *s, uint64_t fingerprint)
{
    if (fingerprint == 0 || s->pend_count == 0)
        return;
    pending_t *e = &s->pending[(s->pend_head + s->pend_count - 1) % s->pend_cap];
    e->fingerprint = fingerprint;
    e->started_us = loop_clock_us();
}

void server_mark_last(server_t *s, pending_mark_t mark)
{
    if (s->pend_count == 0)
        return;
    s->pending[(s->pend_head + s->pend_count - 1) % s->pend_cap].mark = (uint8_t)mark;
}

/* The rows a CommandComplete tag reports: its last number ("SELECT 5", "INSERT 0 3"). */
static uint32_t tag_rows(const proto_msg_t *m)
{
    const uint8_t *end = memchr(m->body, '\0', m->body_len);
    if (end == NULL)
        return 0;
    const uint8_t *p = end;
    while (p > m->body && p[-1] >= '0' && p[-1] <= '9')
        p--;
    if (p == end || p == m->body || p[-1] != ' ')
        return 0;
    uint64_t n = 0;
    for (; p < end && n < UINT32_MAX; p++)
        n = n * 10 + (uint64_t)(*p - '0');
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* A response to a measured query: counts rows and errors, and ends it when it is over. */
static void measure_response(server_t *s, const proto_msg_t *m, pending_t *head, bool terminal)
{
    if (m->type == 'C')
        head->rows += tag_rows(m);
    else if (m->type == 'E')
        head->failed = true;
    if (terminal || (m->type == 'E' && head->kind == PENDING_EXECUTE))
        profile_finish(s, head);
}

/* A ReadyForQuery: the transaction status, and the counters of SHOW STATS. */
static void count_ready(server_t *s, const proto_msg_t *m, const pending_t *head)
{
    s->txn_status = m->body_len > 0 ? (char)m->body[0] : 'I';
    if (head->swallow)
        return;
    pool_shard_t *sh = &s->pool->shards[s->worker->id];
    int64_t now = loop_clock_us();
    sh->query_time_us += (uint64_t)(now - s->query_started_us);
    s->query_started_us = now;
    if (s->txn_status == 'I') {
        atomic_fetch_add_explicit(&s->worker->counters.transactions, 1, memory_order_relaxed);
        sh->xact_count++;
        sh->xact_time_us += (uint64_t)(now - s->xact_started_us);
    }
}

/* A response message while serving: forward or drop it, and pop what it answers. */
static void handle_response(server_t *s, const proto_msg_t *m)
{
    pending_t *head = pending_head(s);
    bool forward = s->client != NULL && (head == NULL || !head->swallow);
    if (head == NULL) {
        if (s->client != NULL)
            to_client(s, m->body - PROTO_HEADER_LEN, m->len);
        return;
    }
    bool error = m->type == 'E';
    if (error)
        handle_error(s, m, head, &forward);
    bool terminal = is_terminal(m->type, head);
    if (head->mark != PENDING_MARK_NONE)
        cache_response(s, m, head);
    if (m->type == 'Z') {
        count_ready(s, m, head);
        cache_ready(s, head);
    }
    if (head->fingerprint != 0)
        measure_response(s, m, head, terminal);
    if (m->type == 'Z' && s->txn_status == 'I' && s->client != NULL && !head->swallow)
        profile_transaction_end(s->client);
    if (forward)
        to_client(s, m->body - PROTO_HEADER_LEN, m->len);
    if (terminal && m->type == '1' && head->hash != 0)
        pool_statement_learned(s->pool, head->hash);
    if (terminal)
        pending_pop(s);
    else if (error && head->kind != PENDING_QUERY)
        skip_to_sync(s);
    server_pay_fakes(s);
}

static void handle_message(server_t *s, const proto_msg_t *m)
{
    if (s->state == SERVER_LOGIN) {
        handle_login(s, m);
        return;
    }
    pending_t *head = pending_head(s);
    bool swallowing = head != NULL && head->swallow;
    if (head != NULL && head->mark == PENDING_MARK_FILL && strchr("SNA", m->type) != NULL)
        cache_response(s, m, head); /* a notice or a parameter change: not replayable */
    switch (m->type) {
    case 'S': /* ParameterStatus */
        record_parameter(s, m);
        if (s->client != NULL && !swallowing)
            to_client(s, m->body - PROTO_HEADER_LEN, m->len);
        return;
    case 'N': /* NoticeResponse */
    case 'A': /* NotificationResponse */
        if (s->client != NULL && !swallowing)
            to_client(s, m->body - PROTO_HEADER_LEN, m->len);
        return;
    default:
        break;
    }
    if (s->state == SERVER_IDLE) {
        server_close(s, "unexpected message from an idle server");
        return;
    }
    handle_response(s, m);
}

/* Starts passing a long DataRow/CopyData through without holding all of it. */
static void start_stream(server_t *s, const proto_msg_t *m, uint32_t avail)
{
    pending_t *head = pending_head(s);
    s->stream_forward = s->client != NULL && (head == NULL || !head->swallow);
    s->stream_copy = head != NULL && head->mark == PENDING_MARK_FILL;
    s->stream_left = m->len - avail;
    if (s->stream_copy)
        cache_stream(s, buf_head(&s->in), avail);
    if (s->stream_forward)
        to_client(s, buf_head(&s->in), avail);
    buf_consume(&s->in, avail);
}

static void continue_stream(server_t *s)
{
    uint32_t n = buf_len(&s->in);
    if (n > s->stream_left)
        n = s->stream_left;
    if (s->stream_copy)
        cache_stream(s, buf_head(&s->in), n);
    if (s->stream_forward && s->client != NULL)
        to_client(s, buf_head(&s->in), n);
    buf_consume(&s->in, n);
    s->stream_left -= n;
}

/* Handles every whole message in s->in; returns false when s was closed. */
static bool process_input(server_t *s)
{
    while (s->state != SERVER_CLOSED && buf_len(&s->in) > 0 && !s->reading_paused) {
        if (s->stream_left > 0) {
            continue_stream(s);
            continue;
        }
        proto_msg_t m;
        uint32_t avail = buf_len(&s->in);
        proto_frame_result_t r = proto_frame(buf_head(&s->in), avail, MAX_MESSAGE_FROM_SERVER, &m);
        if (r == PROTO_FRAME_SHORT)
            break;
        if (r < 0) {
            server_close(s, "invalid message length from server");
            return false;
        }
        if (r == PROTO_FRAME_PARTIAL) {
            const pending_t *head = pending_head(s);
            bool keep_whole = head != NULL && head->mark == PENDING_MARK_CATALOG;
            if ((m.type == 'D' || m.type == 'd') && m.len > BUF_DEFAULT_SIZE &&
                s->state == SERVER_ACTIVE && !keep_whole) {
                start_stream(s, &m, avail);
                continue;
            }
            if (buf_reserve(&s->in, m.len - avail) < 0) {
                server_close(s, "out of memory");
                return false;
            }
            break;
        }
        handle_message(s, &m);
        buf_consume(&s->in, m.len);
    }
    return s->state != SERVER_CLOSED;
}

/* After input: give the server back to the pool when the client's transaction is over. */
static void after_input(server_t *s)
{
    if (s->state != SERVER_ACTIVE)
        return;
    client_t *c = s->client;
    pool_mode_t mode = (pool_mode_t)atomic_load_explicit(&s->pool->mode, memory_order_relaxed);
    if (!server_is_idle(s)) {
        if (mode == POOL_MODE_STATEMENT && c != NULL && s->pend_count == 0 && !s->sync_pending &&
            s->txn_status != 'I')
            client_close(c, "25001", "transaction blocks not allowed in statement pooling mode");
        return;
    }
    if (c == NULL) {
        pool_release(s);
        return;
    }
    if (mode == POOL_MODE_SESSION)
        return;
    c->server = NULL;
    s->client = NULL;
    pool_release(s);
    client_server_released(c);
}

/* Handles what s->in holds, sends it on, and frees the server if its client is done. */
static void handle_input(server_t *s)
{
    if (!process_input(s))
        return;
    if (buf_len(&s->in) == 0)
        buf_release(&s->in);
    if (s->client != NULL && client_flush(s->client) < 0 && s->state == SERVER_CLOSED)
        return;
    after_input(s);
}

static void server_read(server_t *s)
{
    ssize_t n;
    bool got = false;
    do {
        if (buf_reserve(&s->in, 4096) < 0) {
            server_close(s, "out of memory");
            return;
        }
        n = io_read(s, buf_tail(&s->in), buf_room(&s->in));
        if (n <= 0)
            break;
        buf_produce(&s->in, (uint32_t)n);
        got = true;
    } while (s->ssl != NULL && tls_pending(s->ssl) > 0); /* OpenSSL may hold more */
    /* What came before an end of stream (an ErrorResponse, say) is handled first. */
    if (got)
        handle_input(s);
    /* A server handed to another worker meanwhile is that worker's now: it sees the end of
     * the stream itself once it watches the socket. */
    if (n != NET_AGAIN && n <= 0 && s->state != SERVER_CLOSED && s->state != SERVER_MOVING)
        server_close(s, n == 0 ? "server closed the connection" : "cannot read from server");
}

/* Whether to ask this server for TLS: server_tls_sslmode prefer or stricter, over TCP. */
static bool wants_tls(const server_t *s, const char *host)
{
    const config_t *cfg = s->worker->cfg;
    return cfg->server_ctx != NULL && cfg->server_tls.sslmode >= TLS_PREFER && host[0] != '/';
}

static void start_login(server_t *s)
{
    if (send_startup(s) < 0 && s->state != SERVER_CLOSED)
        server_close(s, "out of memory");
}

static void continue_handshake(server_t *s)
{
    char err[256];
    int rc = tls_handshake(s->ssl, err, sizeof(err));
    if (rc == TLS_FAILED) {
        char msg[300];
        snprintf(msg, sizeof(msg), "TLS handshake with the server failed: %s", err);
        auth_failed(s, "08006", msg);
        return;
    }
    s->tls_want_write = rc == TLS_WANT_WRITE;
    s->tls_handshaking = rc != TLS_DONE;
    update_watch(s);
    if (rc == TLS_DONE)
        start_login(s);
}

/* Reads PostgreSQL's one-byte answer to the SSLRequest: 'S' starts TLS, 'N' refuses it. */
static void read_tls_answer(server_t *s)
{
    char answer;
    ssize_t n = net_read(s->fd, &answer, 1);
    if (n == NET_AGAIN)
        return;
    if (n <= 0) {
        server_close(s, "server closed the connection after SSLRequest");
        return;
    }
    s->tls_requested = false;
    const config_t *cfg = s->worker->cfg;
    if (answer == 'N' && cfg->server_tls.sslmode < TLS_REQUIRE) {
        start_login(s);
        return;
    }
    if (answer != 'S') {
        auth_failed(s, "08006",
                    answer == 'N' ? "the server does not accept TLS, which "
                                    "server_tls_sslmode requires"
                                  : "the server answered SSLRequest wrongly");
        return;
    }
    pool_target_t t;
    pthread_mutex_lock(&s->pool->lock);
    t = s->pool->target;
    pthread_mutex_unlock(&s->pool->lock);
    s->ssl = tls_connect_new(cfg->server_ctx, s->fd, t.host, cfg->server_tls.sslmode);
    if (s->ssl == NULL) {
        server_close(s, "cannot start TLS");
        return;
    }
    s->tls_handshaking = true;
    continue_handshake(s);
}

static void finish_connect(server_t *s)
{
    int e = net_socket_error(s->fd);
    if (e != 0) {
        server_close(s, strerror(e));
        return;
    }
    pool_target_t t;
    pthread_mutex_lock(&s->pool->lock);
    t = s->pool->target;
    pthread_mutex_unlock(&s->pool->lock);
    if (!wants_tls(s, t.host)) {
        start_login(s);
        return;
    }
    /* SSLRequest: length 8, code 1234.5679 */
    static const uint8_t ssl_request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    s->tls_requested = true;
    if (buf_append(&s->out, ssl_request, sizeof(ssl_request)) < 0) {
        server_close(s, "out of memory");
        return;
    }
    server_flush(s);
}

static void on_io(void *arg, int events)
{
    server_t *s = arg;
    if (s->state == SERVER_CONNECTING) {
        if (s->tls_handshaking)
            continue_handshake(s);
        else if (s->tls_requested)
            read_tls_answer(s);
        else
            finish_connect(s);
        return;
    }
    if ((events & LOOP_WRITE) && server_flush(s) < 0)
        return;
    if (events & LOOP_READ)
        server_read(s);
}

/* ---- serving clients ---- */

int server_link(server_t *s, client_t *c)
{
    const config_t *cfg = s->worker->cfg;
    int64_t now = loop_now(s->worker->loop);
    s->client = c;
    s->state = SERVER_ACTIVE;
    s->query_started_us = s->xact_started_us = loop_clock_us();
    if (cfg->server_check_query[0] != '\0' && now - s->idle_since >= cfg->server_check_delay &&
        server_run_query(s, cfg->server_check_query) < 0)
        return -1;
    s->used_at = now;
    buf_t sql = {0};
    int n = params_build_sync(&c->params, &s->params, &sql);
    int rc = 0;
    if (n > 0) {
        rc = buf_append(&sql, "", 1) < 0 ? -1 : server_run_query(s, (const char *)buf_head(&sql));
        for (int i = 0; i < PARAM_COUNT; i++)
            if (c->params.known & (1u << i))
                params_set(&s->params, i, c->params.value[i]);
    }
    buf_free(&sql);
    return n < 0 ? -1 : rc;
}

void server_client_left(server_t *s)
{
    if (s->state != SERVER_ACTIVE)
        return;
    if (s->pend_count > 0 || s->sync_pending || s->stream_left > 0) {
        server_close(s, "client left in the middle of a query");
        return;
    }
    const config_t *cfg = s->worker->cfg;
    pool_mode_t mode = (pool_mode_t)atomic_load_explicit(&s->pool->mode, memory_order_relaxed);
    int rc = 0;
    if (s->txn_status != 'I')
        rc = server_run_query(s, "ROLLBACK");
    if (rc == 0 && cfg->server_reset_query[0] != '\0' &&
        (mode == POOL_MODE_SESSION || cfg->server_reset_query_always)) {
        rc = server_run_query(s, cfg->server_reset_query);
        if (s->prepared != NULL) {
            prepared_cache_free(s->prepared);
            s->prepared = NULL;
        }
    }
    if (rc < 0) {
        server_close(s, "out of memory");
        return;
    }
    if (s->pend_count == 0) {
        pool_release(s);
        return;
    }
    server_flush(s);
}

int server_attach(server_t *s, worker_t *w)
{
    s->worker = w;
    s->reading_paused = false;
    if (loop_add(w->loop, &s->io, s->fd, LOOP_READ, on_io, s) < 0)
        return -1;
    worker_add_server(w, s);
    return 0;
}

void server_detach(server_t *s)
{
    loop_remove(s->worker->loop, &s->io);
    s->state = SERVER_MOVING;
}
