/*
 * cacheredis.c
 *    The result cache's link to Redis: the thread, its sessions and connections, the pipelined
 *    commands and their replies, the L2's gets and puts, and the interface of cacheredis.h. The
 *    invalidations (publishes, resets, messages received, peers) are in cacheredis_inv.c, the
 *    formats on the wire in cacheredis_wire.c; what the files share (struct cacheredis, whose
 *    fields say who may touch them) is in cacheredis_link.h.
 *
 * Sessions. The thread runs one session at a time: two non-blocking hiredis contexts, the
 * subscriber and the command connection, made and lost together, so that "connected" always
 * means both. It waits with poll() on both sockets and on an eventfd that every new request and
 * cacheredis_stop write, so a stop reaches it wherever it waits. (The DNS lookup of a host name,
 * inside redisConnectNonBlock, is the one step that may block.) A connect, its AUTH, SELECT,
 * PING and SUBSCRIBE included, must be over within CONNECT_TIMEOUT_MS; a session whose own
 * pings stop coming back for SILENT_LEASES leases is taken as lost, so that a Redis that hangs
 * without closing the connection cannot hold requests forever.
 *
 * Replies. The command connection is pipelined: every command appended to it pushes onto a
 * ring what its reply means (and the request it belongs to, if any), and replies are matched to
 * the ring in order. The subscriber's replies are those of its AUTH and SELECT, then the
 * confirmations of its two subscriptions, then messages.
 *
 * Requests. A request is one allocation and belongs to exactly one place at a time: the queue
 * (under the lock), the ring (a get from its GET to its HMGET's reply, a put until its SET's
 * reply), the list of publishes waiting for a session, or the list of publishes sent. The ring
 * also names a sent publish, at its PUBLISH, without owning it. When a session is lost, the
 * publishes not yet answered go back to waiting: the next session sends them again, or they
 * complete unsent one wait after the loss and their target is remembered for a reset.
 *
 * L2 entries (their layout is in cacheredis_wire.c) are a hit only when their key, the epoch
 * and every generation match what the get's HMGET just read.
 */
#include "cacheredis.h"

#include "cacheredis_link.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

/* How long a connect may take, its AUTH, SELECT, PING and SUBSCRIBE included. */
#define CONNECT_TIMEOUT_MS 1000

/* The wait after the first failure, and the most it grows to by doubling. */
#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS   5000

/* A session whose own pings have not come back for this many leases is taken as lost. */
#define SILENT_LEASES 3

/* ---- small things ---- */

__attribute__((format(printf, 2, 3))) bool link_fail(cacheredis_t *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
    log_one_line(r->why);
    return false;
}

/* A random number other than 0. */
static uint64_t random_u64(void)
{
    uint64_t v;

    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
        v = (uint64_t)loop_clock_us() * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)getpid();
    return v != 0 ? v : 1;
}

/* t, when it is after now and before *next. */
void link_soonest(int64_t *next, int64_t t, int64_t now)
{
    if (t > now && t < *next)
        *next = t;
}

void link_list_push(list_t *l, request_t *req)
{
    req->next = NULL;
    if (l->tail != NULL)
        l->tail->next = req;
    else
        l->head = req;
    l->tail = req;
}

request_t *link_list_pop(list_t *l)
{
    request_t *req = l->head;

    if (req != NULL) {
        l->head = req->next;
        if (l->head == NULL)
            l->tail = NULL;
        req->next = NULL;
    }
    return req;
}

/* ---- status ---- */

void link_count(cacheredis_t *r, uint64_t *counter)
{
    pthread_mutex_lock(&r->lock);
    (*counter)++;
    pthread_mutex_unlock(&r->lock);
}

/* A reply that is an error but does not end the session: noted in the status and the log. */
__attribute__((format(printf, 2, 3))) void link_note_error(cacheredis_t *r, const char *fmt, ...)
{
    char text[sizeof(r->status.last_error)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    log_one_line(text);
    log_warning("cache redis: %s: %s", r->where, text);
    pthread_mutex_lock(&r->lock);
    snprintf(r->status.last_error, sizeof(r->status.last_error), "%s", text);
    pthread_mutex_unlock(&r->lock);
}

static void set_state(cacheredis_t *r, link_state_t state)
{
    r->state = state;
    pthread_mutex_lock(&r->lock);
    r->status.connected = state == LINK_UP;
    pthread_mutex_unlock(&r->lock);
}

/* ---- commands ---- */

/* Makes room in the ring for more expected replies. */
bool link_ring_reserve(cacheredis_t *r, size_t more)
{
    size_t cap = r->ring_cap > 0 ? r->ring_cap : 64;

    if (r->ring_len + more <= r->ring_cap)
        return true;
    while (cap < r->ring_len + more)
        cap *= 2;
    expect_t *ring = malloc(cap * sizeof(*ring));
    if (ring == NULL)
        return link_fail(r, "out of memory");
    for (size_t i = 0; i < r->ring_len; i++)
        ring[i] = r->ring[(r->ring_head + i) % r->ring_cap];
    free(r->ring);
    r->ring = ring;
    r->ring_cap = cap;
    r->ring_head = 0;
    return true;
}

/* What the next reply means; the room was reserved. */
void link_ring_push(cacheredis_t *r, expect_t e)
{
    r->ring[(r->ring_head + r->ring_len++) % r->ring_cap] = e;
}

static expect_t ring_pop(cacheredis_t *r)
{
    expect_t e = r->ring[r->ring_head];

    r->ring_head = (r->ring_head + 1) % r->ring_cap;
    r->ring_len--;
    return e;
}

/* Appends a command to c; lens NULL: every argument is a string. */
bool link_append(cacheredis_t *r, redisContext *c, int argc, const char **argv, const size_t *lens)
{
    size_t sizes[3 + CACHEREDIS_MAX_DEPS];

    if (lens == NULL) {
        for (int i = 0; i < argc; i++)
            sizes[i] = strlen(argv[i]);
        lens = sizes;
    }
    if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK)
        return link_fail(r, "cannot queue a command: %s", c->errstr);
    return true;
}

/* Appends a command of strings to the command connection, and what its reply means. */
bool link_send_one(cacheredis_t *r, reply_kind_t kind, int argc, const char **argv)
{
    if (!link_ring_reserve(r, 1) || !link_append(r, r->cmd, argc, argv, NULL))
        return false;
    link_ring_push(r, (expect_t){.kind = kind});
    return true;
}

bool link_send_publish_text(cacheredis_t *r, reply_kind_t kind, const char *channel,
                            const char *text)
{
    return link_send_one(r, kind, 3, (const char *[]){"PUBLISH", channel, text});
}

/* Writes what c holds to its socket, as far as it takes it. */
static bool flush(cacheredis_t *r, redisContext *c, bool *want_write)
{
    int done = 0;

    if (redisBufferWrite(c, &done) != REDIS_OK)
        return link_fail(r, "cannot send: %s", c->errstr);
    *want_write = !done;
    return true;
}

/* ---- gets and puts ---- */

/* Completes a get: counted, answered, freed. */
static void complete_get(cacheredis_t *r, request_t *req, cacheredis_result_t result,
                         const uint8_t *value, size_t len)
{
    pthread_mutex_lock(&r->lock);
    if (result == CACHEREDIS_HIT)
        r->status.hits++;
    else if (result == CACHEREDIS_MISS)
        r->status.misses++;
    else
        r->status.get_errors++;
    pthread_mutex_unlock(&r->lock);
    req->got(req->arg, result, result == CACHEREDIS_HIT ? value : NULL,
             result == CACHEREDIS_HIT ? len : 0, result == CACHEREDIS_MISS ? &req->deps : NULL);
    if (req->entry != NULL)
        freeReplyObject(req->entry);
    free(req);
}

static void drop_put(cacheredis_t *r, request_t *req)
{
    link_count(r, &r->status.put_errors);
    free(req);
}

static bool send_get(cacheredis_t *r, request_t *req)
{
    char ekey[KEY_LEN], gkey[KEY_LEN];
    const char *argv[3 + CACHEREDIS_MAX_DEPS] = {"HMGET", gkey, EPOCH_FIELD};
    int n = req->deps.n;

    wire_entry_key(r->cfg.prefix, req->hash, ekey);
    wire_gens_key(r->cfg.prefix, req->target, gkey);
    for (int i = 0; i < n; i++)
        argv[3 + i] = wire_field_name(req->deps.relnames[i]);
    if (!link_ring_reserve(r, 2) ||
        !link_append(r, r->cmd, 2, (const char *[]){"GET", ekey}, NULL) ||
        !link_append(r, r->cmd, 3 + n, argv, NULL)) {
        complete_get(r, req, CACHEREDIS_DOWN, NULL, 0);
        return false;
    }
    link_ring_push(r, (expect_t){.kind = REPLY_GET_ENTRY, .req = req});
    link_ring_push(r, (expect_t){.kind = REPLY_GET_GENS, .req = req});
    return true;
}

static bool send_put(cacheredis_t *r, request_t *req)
{
    char key[KEY_LEN], ttl[24];

    wire_entry_key(r->cfg.prefix, req->hash, key);
    snprintf(ttl, sizeof(ttl), "%" PRId64, req->ttl_ms);
    const char *argv[] = {"SET", key, (const char *)req->data, "PX", ttl};
    const size_t lens[] = {3, strlen(key), req->len, 2, strlen(ttl)};
    if (!link_ring_reserve(r, 1) || !link_append(r, r->cmd, 5, argv, lens)) {
        drop_put(r, req);
        return false;
    }
    link_ring_push(r, (expect_t){.kind = REPLY_PUT, .req = req});
    return true;
}

/* Sets a random epoch on target's hash unless another instance did first. */
static bool send_epoch(cacheredis_t *r, const char *target)
{
    char key[KEY_LEN], epoch[24];

    wire_gens_key(r->cfg.prefix, target, key);
    snprintf(epoch, sizeof(epoch), "%" PRIu64, random_u64());
    return link_send_one(r, REPLY_IGNORE, 4, (const char *[]){"HSETNX", key, EPOCH_FIELD, epoch});
}

/* The HMGET of req was answered (its GET before it): req completes. */
static bool finish_get(cacheredis_t *r, request_t *req, const redisReply *reply)
{
    bool no_epoch = false;
    const uint8_t *value = NULL;
    size_t len = 0;

    cacheredis_result_t result = wire_read_gens(&req->deps, reply, &no_epoch);
    if (result != CACHEREDIS_DOWN)
        result = wire_read_entry(req->entry, req->data, req->len, &req->deps, &value, &len);
    bool ok = !no_epoch || send_epoch(r, req->target);
    complete_get(r, req, result, value, len);
    return ok;
}

/* ---- requests from the queue ---- */

static bool send_request(cacheredis_t *r, request_t *req)
{
    switch (req->kind) {
    case REQUEST_PUBLISH:
        return inv_send_publish(r, req);
    case REQUEST_GET:
        return send_get(r, req);
    case REQUEST_PUT:
        return send_put(r, req);
    }
    return true;
}

/* A request while no session is up: a publish waits until one is or its wait since the loss
 * is over; a get is DOWN, a put dropped. */
static void hold_request(cacheredis_t *r, request_t *req)
{
    switch (req->kind) {
    case REQUEST_PUBLISH:
        req->deadline = r->lost_at + r->wait_ms;
        link_list_push(&r->waiting, req);
        break;
    case REQUEST_GET:
        complete_get(r, req, CACHEREDIS_DOWN, NULL, 0);
        break;
    case REQUEST_PUT:
        drop_put(r, req);
        break;
    }
}

static bool drain_queue(cacheredis_t *r)
{
    bool ok = true;

    pthread_mutex_lock(&r->lock);
    list_t taken = r->queue;
    r->queue = (list_t){0};
    pthread_mutex_unlock(&r->lock);
    for (request_t *req; (req = link_list_pop(&taken)) != NULL;) {
        if (ok && r->state == LINK_UP)
            ok = send_request(r, req);
        else
            hold_request(r, req);
    }
    return ok;
}

/* ---- replies ---- */

/* Both subscriptions are confirmed: whatever was published before went unheard. */
static void subscribed(cacheredis_t *r, int64_t now)
{
    r->subscribed_at = now;
    r->fn(r->arg, NULL, NULL, 0);
}

/* One reply on the subscriber connection. */
static bool sub_reply(cacheredis_t *r, const redisReply *reply, int64_t now)
{
    if (reply->type == REDIS_REPLY_ERROR)
        return link_fail(r, "the subscriber connection: %s", reply->str);
    if (r->sub_handshake_left > 0) {
        r->sub_handshake_left--;
        return true;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return link_fail(r, "the subscriber connection: %s", wire_reply_text(reply));
    const char *kind = reply->element[0]->str;
    if (strcmp(kind, "message") == 0)
        return inv_handle_message(r, reply->element[1], reply->element[2], now);
    if (strcmp(kind, "subscribe") != 0)
        return link_fail(r, "the subscriber connection: an unexpected \"%s\"", kind);
    if (++r->channels == 2)
        subscribed(r, now);
    return true;
}

static bool handle_sub_reply(cacheredis_t *r, redisReply *reply, int64_t now)
{
    bool ok = sub_reply(r, reply, now);

    freeReplyObject(reply);
    return ok;
}

/* One reply on the command connection, matched to the oldest command unanswered. */
static bool cmd_reply(cacheredis_t *r, const expect_t *e, const redisReply *reply, int64_t now)
{
    bool error = reply->type == REDIS_REPLY_ERROR;

    switch (e->kind) {
    case REPLY_HANDSHAKE:
        if (error)
            return link_fail(r, "the command connection: %s", reply->str);
        r->cmd_handshake_left--;
        return true;
    case REPLY_IGNORE:
        if (error)
            link_note_error(r, "%s", reply->str);
        return true;
    case REPLY_BUMP:
        return !error || inv_bump_failed(r, e, reply);
    case REPLY_PUBLISH:
        return inv_publish_reply(r, e->req, e->seq, reply, now);
    case REPLY_RESET:
        return inv_reset_reply(r, reply);
    case REPLY_SCAN:
        return inv_scan_reply(r, reply);
    case REPLY_GET_GENS:
        return finish_get(r, e->req, reply);
    case REPLY_PUT:
        if (error) {
            link_note_error(r, "SET of an L2 entry: %s", reply->str);
            link_count(r, &r->status.put_errors);
        }
        free(e->req);
        return true;
    case REPLY_GET_ENTRY:
        break;
    }
    return true;
}

static bool handle_cmd_reply(cacheredis_t *r, redisReply *reply, int64_t now)
{
    if (r->ring_len == 0) {
        freeReplyObject(reply);
        return link_fail(r, "a reply that no command asked for");
    }
    expect_t e = ring_pop(r);
    if (e.kind == REPLY_GET_ENTRY) {
        e.req->entry = reply; /* until the HMGET's reply */
        return true;
    }
    bool ok = cmd_reply(r, &e, reply, now);
    freeReplyObject(reply);
    return ok;
}

/* Reads what c's socket holds and handles every whole reply in it. */
static bool read_replies(cacheredis_t *r, redisContext *c,
                         bool (*handle)(cacheredis_t *, redisReply *, int64_t))
{
    if (redisBufferRead(c) != REDIS_OK)
        return link_fail(r, "%s", c->errstr);
    for (;;) {
        void *reply = NULL;
        if (redisGetReply(c, &reply) != REDIS_OK)
            return link_fail(r, "%s", c->errstr);
        if (reply == NULL)
            return true;
        if (!handle(r, reply, loop_clock_ms()))
            return false;
    }
}

/* ---- sessions ---- */

static redisContext *connect_one(cacheredis_t *r)
{
    redisContext *c = redisConnectNonBlock(r->cfg.host, r->cfg.port);

    if (c == NULL) {
        link_fail(r, "cannot connect: out of memory");
        return NULL;
    }
    if (c->err != 0) {
        link_fail(r, "cannot connect: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    /* A dead peer is found by the pings anyway; keepalives only free the socket sooner. */
    (void)redisEnableKeepAlive(c);
    return c;
}

/* Appends AUTH and SELECT, as configured, to c; returns how many replies they make. */
static int append_login(cacheredis_t *r, redisContext *c, bool *ok)
{
    char db[16];
    int n = 0;

    if (*ok && r->cfg.password[0] != '\0') {
        *ok = link_append(r, c, 2, (const char *[]){"AUTH", r->cfg.password}, NULL);
        n++;
    }
    if (*ok && r->cfg.db != 0) {
        snprintf(db, sizeof(db), "%d", r->cfg.db);
        *ok = link_append(r, c, 2, (const char *[]){"SELECT", db}, NULL);
        n++;
    }
    return n;
}

/* Starts both connections and appends their handshakes; the state is LINK_CONNECTING. */
static bool start_session(cacheredis_t *r, int64_t now)
{
    bool ok = true;

    set_state(r, LINK_CONNECTING);
    r->connect_deadline = now + CONNECT_TIMEOUT_MS;
    r->channels = 0;
    r->warned_malformed = false;
    r->sub = connect_one(r);
    r->cmd = r->sub != NULL ? connect_one(r) : NULL;
    if (r->cmd == NULL)
        return false;
    r->sub_handshake_left = append_login(r, r->sub, &ok);
    ok = ok && link_append(r, r->sub, 3,
                           (const char *[]){"SUBSCRIBE", r->inv_channel, r->ack_channel}, NULL);
    /* The PING makes the command connection's handshake never empty, so that its connect is
     * seen through. */
    int n = append_login(r, r->cmd, &ok);
    ok = ok && link_ring_reserve(r, (size_t)n + 1) &&
         link_append(r, r->cmd, 1, (const char *[]){"PING"}, NULL);
    if (!ok)
        return false;
    for (int i = 0; i <= n; i++)
        link_ring_push(r, (expect_t){.kind = REPLY_HANDSHAKE});
    r->cmd_handshake_left = n + 1;
    return true;
}

/* Both connections are ready: resets first, then the publishes that waited. */
static bool become_up(cacheredis_t *r, int64_t now)
{
    set_state(r, LINK_UP);
    log_info("cache redis: %s: connected%s, instance %s", r->where, r->down_logged ? " again" : "",
             r->name);
    r->down_logged = false;
    r->retry_delay = RETRY_FIRST_MS;
    r->last_alive = now;
    r->next_ping = now;
    if (!inv_send_resets(r))
        return false;
    list_t waiting = r->waiting;
    r->waiting = (list_t){0};
    bool ok = true;
    for (request_t *req; (req = link_list_pop(&waiting)) != NULL;) {
        if (ok)
            ok = inv_send_publish(r, req);
        else
            link_list_push(&r->waiting, req);
    }
    return ok;
}

/* The connects' progress: up once both handshakes are answered, failed past the deadline. */
static bool advance_connect(cacheredis_t *r, int64_t now)
{
    if (r->cmd_handshake_left == 0 && r->channels == 2)
        return become_up(r, now);
    if (now >= r->connect_deadline)
        return link_fail(r, "cannot connect: no answer within %d ms", CONNECT_TIMEOUT_MS);
    return true;
}

/* Pings every lease/5; a session whose pings stopped coming back is failed. */
static bool keep_alive(cacheredis_t *r, int64_t now)
{
    char text[SHORT_MESSAGE_LEN];

    if (now - r->last_alive > (int64_t)SILENT_LEASES * r->cfg.lease_ms)
        return link_fail(r, "no ping came back within %d ms", SILENT_LEASES * r->cfg.lease_ms);
    if (now < r->next_ping)
        return true;
    r->next_ping = now + r->cfg.lease_ms / 5;
    wire_format_ping(text, r->name, now);
    return link_send_publish_text(r, REPLY_IGNORE, r->inv_channel, text);
}

/*
 * Frees both connections and what their replies would have completed: a get is DOWN, a put
 * freed, and a publish not yet answered goes back to waiting or, when final (the stop), every
 * publish sent completes.
 */
static void close_session(cacheredis_t *r, bool final)
{
    list_t keep = {0};

    while (r->ring_len > 0) {
        expect_t e = ring_pop(r);
        if (e.kind == REPLY_GET_GENS)
            complete_get(r, e.req, CACHEREDIS_DOWN, NULL, 0);
        else if (e.kind == REPLY_PUT)
            free(e.req);
    }
    for (request_t *req; (req = link_list_pop(&r->publishing)) != NULL;) {
        if (final)
            inv_finish_publish(req);
        else if (req->reached < 0)
            link_list_push(&r->waiting, req);
        else
            link_list_push(&keep, req);
    }
    r->publishing = keep;
    redisFree(r->sub);
    redisFree(r->cmd);
    r->sub = NULL;
    r->cmd = NULL;
    r->sub_want_write = false;
    r->cmd_want_write = false;
    r->sub_handshake_left = 0;
    r->cmd_handshake_left = 0;
}

/* The session failed (r->why says why): not fresh at once, connections closed, the next
 * attempt scheduled. One log line per outage. */
static void lose_session(cacheredis_t *r, int64_t now)
{
    bool was_up = r->state == LINK_UP;

    atomic_store_explicit(&r->fresh_until, 0, memory_order_release);
    close_session(r, false);
    r->resets_pending = 0;
    r->state = LINK_DOWN;
    /* One update, so that a reader never sees the link down and the loss not yet counted. */
    pthread_mutex_lock(&r->lock);
    r->status.connected = false;
    if (was_up)
        r->status.disconnects++;
    snprintf(r->status.last_error, sizeof(r->status.last_error), "%s", r->why);
    pthread_mutex_unlock(&r->lock);
    if (was_up) {
        r->lost_at = now;
        r->retry_delay = RETRY_FIRST_MS;
        /* What waits now was sent or to be sent by the session just lost. */
        for (request_t *req = r->waiting.head; req != NULL; req = req->next)
            req->deadline = now + r->wait_ms;
    }
    r->retry_at = now + r->retry_delay;
    if (!r->down_logged)
        log_error("cache redis: %s: %s%s; connecting again in %" PRId64 " ms, then up to every "
                  "%d ms",
                  r->where, was_up ? "lost: " : "", r->why, r->retry_delay, RETRY_MAX_MS);
    else
        log_debug("cache redis: %s: %s", r->where, r->why);
    r->down_logged = true;
    r->retry_delay = r->retry_delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : r->retry_delay * 2;
}

/* ---- the thread ---- */

/* Everything due at now that may fail the session: a connect, the queue, pings, writes. The
 * publishes that are due complete whatever happens. */
static bool step(cacheredis_t *r, int64_t now)
{
    bool ok = true;

    if (r->state == LINK_DOWN && now >= r->retry_at)
        ok = start_session(r, now);
    if (ok && r->state == LINK_CONNECTING)
        ok = advance_connect(r, now);
    ok = drain_queue(r) && ok;
    if (ok && r->state == LINK_UP)
        ok = keep_alive(r, now);
    inv_complete_publishes(r, now);
    inv_report_peers(r, now);
    if (ok && r->state != LINK_DOWN)
        ok = flush(r, r->sub, &r->sub_want_write) && flush(r, r->cmd, &r->cmd_want_write);
    return ok;
}

/* When step has something to do again without an event. */
static int64_t next_wakeup(const cacheredis_t *r, int64_t now)
{
    int64_t next = now + RETRY_MAX_MS;

    if (r->state == LINK_DOWN)
        link_soonest(&next, r->retry_at, now);
    if (r->state == LINK_CONNECTING)
        link_soonest(&next, r->connect_deadline, now);
    if (r->state == LINK_UP) {
        link_soonest(&next, r->next_ping, now);
        link_soonest(&next, r->last_alive + (int64_t)SILENT_LEASES * r->cfg.lease_ms + 1, now);
    }
    for (const request_t *req = r->waiting.head; req != NULL; req = req->next)
        link_soonest(&next, req->deadline, now);
    for (const request_t *req = r->publishing.head; req != NULL; req = req->next)
        if (req->reached >= 0)
            inv_next_check(r, req, now, &next);
    return next;
}

static short poll_events(bool want_write)
{
    return (short)(POLLIN | (want_write ? POLLOUT : 0));
}

/* Waits until next, a request, a stop or a socket's event, and handles what came. */
static bool wait_events(cacheredis_t *r, int64_t next)
{
    struct pollfd fds[3] = {
        {.fd = r->wake_fd, .events = POLLIN},
        {.fd = r->sub != NULL ? r->sub->fd : -1, .events = poll_events(r->sub_want_write)},
        {.fd = r->cmd != NULL ? r->cmd->fd : -1, .events = poll_events(r->cmd_want_write)},
    };
    int64_t left = next - loop_clock_ms();
    int timeout = left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
    const short readable = POLLIN | POLLERR | POLLHUP;

    if (poll(fds, 3, timeout) < 0)
        return errno == EINTR || link_fail(r, "poll: %s", strerror(errno));
    if (fds[0].revents != 0) {
        uint64_t v;
        ssize_t n = read(r->wake_fd, &v, sizeof(v)); /* the loop looks at the queue anyway */
        (void)n;
    }
    if ((fds[1].revents & POLLOUT) && !flush(r, r->sub, &r->sub_want_write))
        return false;
    if ((fds[1].revents & readable) && !read_replies(r, r->sub, handle_sub_reply))
        return false;
    if ((fds[2].revents & POLLOUT) && !flush(r, r->cmd, &r->cmd_want_write))
        return false;
    if ((fds[2].revents & readable) && !read_replies(r, r->cmd, handle_cmd_reply))
        return false;
    return true;
}

static void *link_main(void *arg)
{
    cacheredis_t *r = arg;

    while (!atomic_load(&r->stopping)) {
        int64_t now = loop_clock_ms();
        if (!step(r, now)) {
            lose_session(r, now);
            continue;
        }
        if (!wait_events(r, next_wakeup(r, now)))
            lose_session(r, loop_clock_ms());
    }
    return NULL;
}

/* ---- the interface ---- */

/* Letters, digits and "_.:-": nothing that a SCAN pattern would read as a wildcard. */
static bool valid_prefix(const char *prefix)
{
    size_t n = strnlen(prefix, PREFIX_LEN);

    return n > 0 && n < PREFIX_LEN &&
           strspn(prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-") ==
               n;
}

static bool valid_config(const cacheredis_config_t *cfg, char *err, size_t errlen)
{
    size_t host = strnlen(cfg->host, sizeof(cfg->host));

    if (host == 0 || host == sizeof(cfg->host))
        snprintf(err, errlen, "cache redis: no host");
    else if (cfg->port < 1 || cfg->port > 65535)
        snprintf(err, errlen, "cache redis: the port %d is not 1 to 65535", cfg->port);
    else if (strnlen(cfg->password, sizeof(cfg->password)) == sizeof(cfg->password))
        snprintf(err, errlen, "cache redis: the password is too long");
    else if (cfg->db < 0)
        snprintf(err, errlen, "cache redis: the database %d is negative", cfg->db);
    else if (!valid_prefix(cfg->prefix))
        snprintf(err, errlen,
                 "cache redis: the prefix is not 1 to %zu letters, digits and \"_.:-\"",
                 PREFIX_LEN - 1);
    else if (cfg->lease_ms < CACHEREDIS_MIN_LEASE_MS || cfg->lease_ms > CACHEREDIS_MAX_LEASE_MS)
        snprintf(err, errlen, "cache redis: the lease of %d ms is not %d to %d ms", cfg->lease_ms,
                 CACHEREDIS_MIN_LEASE_MS, CACHEREDIS_MAX_LEASE_MS);
    else
        return true;
    return false;
}

cacheredis_t *cacheredis_start(const cacheredis_config_t *cfg, cacheredis_inv_fn fn, void *arg,
                               char *err, size_t errlen)
{
    cacheredis_t *r;
    int rc;

    if (!valid_config(cfg, err, errlen))
        return NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "cache redis: out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    r->fn = fn;
    r->arg = arg;
    r->instance = random_u64();
    snprintf(r->name, sizeof(r->name), "%016" PRIx64, r->instance);
    snprintf(r->where, sizeof(r->where), "%s:%d", cfg->host, cfg->port);
    snprintf(r->inv_channel, sizeof(r->inv_channel), "%s:inv", cfg->prefix);
    snprintf(r->ack_channel, sizeof(r->ack_channel), "%s:ack:%s", cfg->prefix, r->name);
    r->wait_ms = cfg->lease_ms + cfg->lease_ms / 10;
    r->state = LINK_DOWN;
    r->retry_delay = RETRY_FIRST_MS;
    r->lost_at = loop_clock_ms();
    r->subscribed_at = INT64_MIN / 2;
    r->peers_overflow_at = INT64_MIN / 2;
    atomic_init(&r->stopping, false);
    atomic_init(&r->fresh_until, 0);
    pthread_mutex_init(&r->lock, NULL);
    snprintf(r->status.instance, sizeof(r->status.instance), "%s", r->name);
    r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->wake_fd < 0) {
        snprintf(err, errlen, "cache redis: eventfd: %s", strerror(errno));
        goto fail;
    }
    rc = pthread_create(&r->thread, NULL, link_main, r);
    if (rc != 0) {
        snprintf(err, errlen, "cache redis: cannot start its thread: %s", strerror(rc));
        goto fail;
    }
    return r;

fail:
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    pthread_mutex_destroy(&r->lock);
    free(r);
    return NULL;
}

/* Completes a request that never reached the thread, as if Redis were down. */
static void abandon_request(cacheredis_t *r, request_t *req)
{
    switch (req->kind) {
    case REQUEST_PUBLISH:
        inv_finish_publish(req);
        break;
    case REQUEST_GET:
        complete_get(r, req, CACHEREDIS_DOWN, NULL, 0);
        break;
    case REQUEST_PUT:
        free(req);
        break;
    }
}

void cacheredis_stop(cacheredis_t *r)
{
    uint64_t one = 1;

    if (r == NULL)
        return;
    atomic_store(&r->stopping, true);
    /* Only an eventfd counter that is already huge refuses a write, and it is readable then. */
    ssize_t n = write(r->wake_fd, &one, sizeof(one));
    (void)n;
    pthread_join(r->thread, NULL);

    close_session(r, true);
    for (request_t *req; (req = link_list_pop(&r->waiting)) != NULL;)
        inv_finish_publish(req);
    for (request_t *req; (req = link_list_pop(&r->queue)) != NULL;)
        abandon_request(r, req);
    free(r->ring);
    close(r->wake_fd);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

bool cacheredis_fresh(const cacheredis_t *r, int64_t now_ms)
{
    return r != NULL && now_ms < atomic_load_explicit(&r->fresh_until, memory_order_acquire);
}

/* Queues req for the thread and wakes it; counter (may be NULL) counts it. */
static void enqueue(cacheredis_t *r, request_t *req, uint64_t *counter)
{
    uint64_t one = 1;

    pthread_mutex_lock(&r->lock);
    link_list_push(&r->queue, req);
    if (counter != NULL)
        (*counter)++;
    pthread_mutex_unlock(&r->lock);
    ssize_t n = write(r->wake_fd, &one, sizeof(one));
    (void)n;
}

/* A target that fits, is not empty and has no newline (it ends a message's first line). */
static bool valid_target(const char *target)
{
    size_t n = target != NULL ? strnlen(target, CACHEREDIS_TARGET_LEN) : 0;

    return n > 0 && n < CACHEREDIS_TARGET_LEN && memchr(target, '\n', n) == NULL;
}

/* Copies relnames[0 .. n-1] into deps, unless one is missing or too long. */
static bool copy_relnames(cacheredis_gens_t *deps, const char *const *relnames, int n)
{
    deps->n = n;
    for (int i = 0; i < n; i++) {
        if (relnames[i] == NULL || strnlen(relnames[i], CACHEREDIS_NAME_LEN) == CACHEREDIS_NAME_LEN)
            return false;
        memcpy(deps->relnames[i], relnames[i], strlen(relnames[i]) + 1);
    }
    return true;
}

/* A request of kind with extra bytes of data, or NULL. */
static request_t *new_request(request_kind_t kind, size_t extra)
{
    if (extra > SIZE_MAX - sizeof(request_t))
        return NULL;
    request_t *req = malloc(sizeof(request_t) + extra);
    if (req != NULL) {
        memset(req, 0, sizeof(*req));
        req->kind = kind;
        req->reached = -1;
        req->len = extra;
    }
    return req;
}

int cacheredis_publish(cacheredis_t *r, const char *target, const char *const *relnames, int n,
                       cacheredis_done_fn done, void *arg)
{
    if (n < 1 || n > CACHEREDIS_MAX_DEPS || relnames == NULL || done == NULL ||
        !valid_target(target))
        return -1;
    request_t *req = new_request(REQUEST_PUBLISH, 0);
    if (req == NULL)
        return -1;
    if (!copy_relnames(&req->deps, relnames, n)) {
        free(req);
        return -1;
    }
    memcpy(req->target, target, strlen(target) + 1);
    req->done = done;
    req->arg = arg;
    enqueue(r, req, NULL);
    return 0;
}

int cacheredis_get(cacheredis_t *r, uint64_t hash, const void *key, size_t keylen,
                   const char *target, const char *const *relnames, int n, cacheredis_got_fn got,
                   void *arg)
{
    if (n < 0 || n > CACHEREDIS_MAX_DEPS || (n > 0 && relnames == NULL) || got == NULL ||
        (key == NULL && keylen > 0) || keylen > UINT32_MAX || !valid_target(target))
        return -1;
    request_t *req = new_request(REQUEST_GET, keylen);
    if (req == NULL)
        return -1;
    if (!copy_relnames(&req->deps, relnames, n)) {
        free(req);
        return -1;
    }
    memcpy(req->target, target, strlen(target) + 1);
    if (keylen > 0)
        memcpy(req->data, key, keylen);
    req->hash = hash;
    req->got = got;
    req->arg = arg;
    enqueue(r, req, &r->status.gets);
    return 0;
}

/* Whether gens is what a get could have returned: n in range, each relname NUL-terminated. */
static bool valid_gens(const cacheredis_gens_t *gens)
{
    if (gens == NULL || gens->n < 0 || gens->n > CACHEREDIS_MAX_DEPS)
        return false;
    for (int i = 0; i < gens->n; i++)
        if (strnlen(gens->relnames[i], CACHEREDIS_NAME_LEN) == CACHEREDIS_NAME_LEN)
            return false;
    return true;
}

int cacheredis_put(cacheredis_t *r, uint64_t hash, const void *key, size_t keylen,
                   const cacheredis_gens_t *gens, const void *value, size_t len, int64_t ttl_ms)
{
    if (!valid_gens(gens) || ttl_ms <= 0 || (key == NULL && keylen > 0) ||
        (value == NULL && len > 0) || keylen > UINT32_MAX)
        return -1;
    size_t head = wire_entry_head_size(keylen, gens);
    if (len > SIZE_MAX - head)
        return -1;
    request_t *req = new_request(REQUEST_PUT, head + len);
    if (req == NULL)
        return -1;
    wire_entry_write(req->data, key, keylen, gens, value, len);
    req->hash = hash;
    req->ttl_ms = ttl_ms;
    enqueue(r, req, &r->status.puts);
    return 0;
}

void cacheredis_status(cacheredis_t *r, cacheredis_status_t *out)
{
    if (r == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    pthread_mutex_lock(&r->lock);
    *out = r->status;
    pthread_mutex_unlock(&r->lock);
    out->fresh = cacheredis_fresh(r, loop_clock_ms());
}
