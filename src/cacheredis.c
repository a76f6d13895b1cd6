/*
 * cacheredis.c
 *    The result cache's link to Redis: one thread, two hiredis connections, the invalidations
 *    published, received and acknowledged, the lease and the L2; see cacheredis.h.
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
 * Messages, on <prefix>:inv unless said:
 *   "inv <instance> <seq> <target>\n<relname>..."  relnames of target changed
 *   "all <instance> <seq>"                          anything of any target may have changed
 *   "ping <instance> <sent_ms>"
 *   "<seq> <instance>"                              on <prefix>:ack:<publisher>
 * A relname that cannot be a hash field or a line ("!epoch", or one holding a newline) is
 * bumped, read and published as "", every table of the target: more is invalidated, never
 * less. A message that starts like an invalidation but does not parse is applied as "anything
 * may have changed" and not acknowledged; other messages that do not parse are ignored; either
 * is logged once per session.
 *
 * Waits on the publishing side (wait_ms) are the lease plus 10 %, so that instances whose
 * clocks run at slightly different rates still agree that a lease is over. A publish completes
 * before its wait is over only when all of these hold: its own message came back (this instance
 * was among the subscribers the PUBLISH counted), as many other instances acknowledged as the
 * PUBLISH reached, every instance heard from within wait_ms acknowledged, and the peers were
 * listened to for all of the last wait_ms (the subscription is that old, and no peer was left
 * untracked for lack of room). An instance that stayed fresh without applying the invalidation
 * must have had a ping of its own come back within its lease, which this instance heard too.
 *
 * Resets. A remembered target gets HINCRBY "" 1 and an "inv" of "". Past MAX_REMEMBERED
 * targets, every generations hash in Redis (SCAN <prefix>:g:*) is deleted instead, which gives
 * each target a new epoch and so ends every L2 entry, and one "all" message follows: "every
 * target" is every target that has L2 entries, and every instance's memory. Both rely
 * on the caller listing "" among the relnames of every get (cache.c does, for its reads).
 *
 * A HINCRBY of a publish or a reset that fails (Redis out of memory under "noeviction", say)
 * leaves L2 entries current that are not. The generations hash is then deleted (DEL is allowed
 * where writes are refused) and the message published again with a new seq, whose
 * acknowledgements are the ones waited for: an instance that read the old entry between the
 * first message and the DEL applies the second one after it.
 *
 * L2 entries, version 1, integers big-endian:
 *   u8 1 | u32 keylen | key | u64 epoch | u8 n | n x (u8 len | relname | i64 generation) | value
 *
 * The fields under "the thread's own" are touched only by the thread, and by cacheredis_stop
 * once the thread is gone; status and the queue are under the lock.
 */
#include "cacheredis.h"

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

/* Other instances tracked, and distinct acknowledgements recorded per publish. Past it, a
 * publish completes by its wait only. */
#define MAX_PEERS 64

/* Targets remembered for a reset; past it, every target is reset. */
#define MAX_REMEMBERED 64

/* Keys a SCAN of the generations hashes asks for at a time. */
#define SCAN_COUNT "100"

#define INSTANCE_HEX  16
#define EPOCH_FIELD   "!epoch"
#define ENTRY_VERSION 1

/* The configured prefix, with its NUL. */
#define PREFIX_LEN sizeof(((cacheredis_config_t *)NULL)->prefix)

/* A key or channel: the prefix, ":g:" or the like, and a target (the longest part). */
#define KEY_LEN (PREFIX_LEN + 8 + CACHEREDIS_TARGET_LEN)

/* The longest message: "inv ", an instance, a seq, a target and the relnames on their lines. */
#define MESSAGE_LEN (64 + CACHEREDIS_TARGET_LEN + CACHEREDIS_MAX_DEPS * CACHEREDIS_NAME_LEN)

/* The state of the session; changed only by set_state. */
typedef enum link_state {
    LINK_DOWN,       /* no connection: the next attempt is at retry_at */
    LINK_CONNECTING, /* both connections made, their handshakes under way until connect_deadline */
    LINK_UP,         /* both connections ready and subscribed: requests are sent */
} link_state_t;

typedef enum request_kind { REQUEST_PUBLISH, REQUEST_GET, REQUEST_PUT } request_kind_t;

typedef struct request request_t;
struct request {
    request_t *next; /* in the queue or one of the thread's lists */
    request_kind_t kind;
    cacheredis_done_fn done; /* publish */
    cacheredis_got_fn got;   /* get */
    void *arg;
    char target[CACHEREDIS_TARGET_LEN]; /* publish, get */
    /* A publish: the relnames. A get: the relnames, then the epoch and generations read. */
    cacheredis_gens_t deps;
    uint64_t hash; /* get, put */

    /* A publish, on the thread. */
    uint64_t seq;      /* of the message last sent */
    int64_t deadline;  /* waiting: when it completes unsent; sent and answered: by its wait */
    long long reached; /* the PUBLISH's reply: the subscribers; -1 before it */
    bool echoed;       /* its message came back on the subscription */
    bool reissued;     /* a HINCRBY failed and the message went out again */
    int n_acked;
    uint64_t acked[MAX_PEERS]; /* other instances that acknowledged seq */

    /* A get, on the thread: the GET's reply until the HMGET's comes. */
    redisReply *entry;

    int64_t ttl_ms; /* put */
    size_t len;     /* bytes in data: a get's key, a put's entry */
    uint8_t data[];
};

typedef struct list {
    request_t *head;
    request_t *tail;
} list_t;

/* What the reply to a command on the command connection means. */
typedef enum reply_kind {
    REPLY_HANDSHAKE, /* AUTH, SELECT or PING of a connect: an error fails the connect */
    REPLY_IGNORE,    /* a ping, an acknowledgement, an HSETNX, a DEL: an error is noted */
    REPLY_BUMP,      /* HINCRBY of target for req (NULL: for a reset) */
    REPLY_PUBLISH,   /* the PUBLISH of req's message seq */
    REPLY_RESET,     /* the PUBLISH that ends one reset */
    REPLY_SCAN,      /* a SCAN of the generations hashes */
    REPLY_GET_ENTRY, /* the GET of req's entry */
    REPLY_GET_GENS,  /* the HMGET of req's generations: completes it */
    REPLY_PUT,       /* the SET of req's entry: frees it */
} reply_kind_t;

typedef struct expect {
    reply_kind_t kind;
    request_t *req;
    const char *target; /* REPLY_BUMP: req's or a remembered one, alive until the reply */
    uint64_t seq;       /* REPLY_PUBLISH */
} expect_t;

/* Another instance heard from. */
typedef struct peer {
    bool used;
    uint64_t id;
    int64_t heard_ms;
} peer_t;

struct cacheredis {
    /* Set by cacheredis_start, then only read. */
    cacheredis_config_t cfg;
    cacheredis_inv_fn fn;
    void *arg;
    uint64_t instance;
    char name[INSTANCE_HEX + 1];
    char where[sizeof(((cacheredis_config_t *)NULL)->host) + 8]; /* "host:port", for the log */
    char inv_channel[KEY_LEN];
    char ack_channel[KEY_LEN];
    int64_t wait_ms; /* the lease and its margin */
    int wake_fd;     /* an eventfd: a new request, or a stop */
    pthread_t thread;
    atomic_bool stopping;
    _Atomic int64_t fresh_until; /* loop_clock_ms() time; 0 = not fresh */

    /* The thread's own. */
    link_state_t state;
    redisContext *sub;
    redisContext *cmd;
    bool sub_want_write, cmd_want_write; /* output is left that the socket did not take */
    int sub_handshake_left;              /* replies of AUTH and SELECT still due on sub */
    int cmd_handshake_left;
    int channels; /* subscriptions confirmed */
    expect_t *ring;
    size_t ring_cap, ring_head, ring_len;
    int64_t retry_at, retry_delay, connect_deadline;
    int64_t lost_at;       /* when the last session was lost (or the link started) */
    int64_t subscribed_at; /* when the current subscription was confirmed */
    int64_t next_ping, last_alive;
    bool ever_up;          /* a session was up once */
    bool down_logged;      /* the current outage has had its log line */
    bool warned_malformed; /* this session logged a message that does not parse */
    bool warned_peers;     /* the peer table was found full */
    uint64_t seq;
    list_t waiting, publishing;
    peer_t peers[MAX_PEERS];
    int64_t peers_overflow_at; /* when a peer last found no room */
    int reported_peers;
    char remembered[MAX_REMEMBERED][CACHEREDIS_TARGET_LEN];
    int n_remembered;
    bool remember_all;
    int resets_pending; /* reset messages (and the SCAN) of this session not yet answered */
    char why[256];      /* why the session is failing */

    /* Under the lock. */
    pthread_mutex_t lock;
    list_t queue;
    cacheredis_status_t status;
};

/* ---- small things ---- */

__attribute__((format(printf, 2, 3))) static bool fail(cacheredis_t *r, const char *fmt, ...)
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
static void soonest(int64_t *next, int64_t t, int64_t now)
{
    if (t > now && t < *next)
        *next = t;
}

static void list_push(list_t *l, request_t *req)
{
    req->next = NULL;
    if (l->tail != NULL)
        l->tail->next = req;
    else
        l->head = req;
    l->tail = req;
}

static request_t *list_pop(list_t *l)
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

/* The hash field of relname: "" for a name that cannot be a field or a line of a message. */
static const char *field_name(const char *relname)
{
    if (strcmp(relname, EPOCH_FIELD) == 0 || strchr(relname, '\n') != NULL)
        return "";
    return relname;
}

static void gens_key(const cacheredis_t *r, const char *target, char key[KEY_LEN])
{
    snprintf(key, KEY_LEN, "%s:g:%s", r->cfg.prefix, target);
}

static void entry_key(const cacheredis_t *r, uint64_t hash, char key[KEY_LEN])
{
    snprintf(key, KEY_LEN, "%s:e:%016" PRIx64, r->cfg.prefix, hash);
}

/* The text of an error or status reply, for a message. */
static const char *reply_text(const redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR || reply->type == REDIS_REPLY_STATUS)
        return reply->str;
    return "an unexpected reply";
}

/* A reply that is a decimal string or an integer, as a signed 64-bit number. */
static bool reply_i64(const redisReply *reply, int64_t *out)
{
    char *end;

    if (reply->type == REDIS_REPLY_INTEGER) {
        *out = reply->integer;
        return true;
    }
    if (reply->type != REDIS_REPLY_STRING || reply->len == 0 || reply->len > 20)
        return false;
    errno = 0;
    *out = strtoll(reply->str, &end, 10);
    return errno == 0 && end == reply->str + reply->len;
}

/* A reply that is a decimal string of digits only, as an unsigned 64-bit number. */
static bool reply_u64(const redisReply *reply, uint64_t *out)
{
    char *end;

    if (reply->type != REDIS_REPLY_STRING || reply->len == 0 || reply->len > 20 ||
        strspn(reply->str, "0123456789") != reply->len)
        return false;
    errno = 0;
    *out = strtoull(reply->str, &end, 10);
    return errno == 0 && end == reply->str + reply->len;
}

/* ---- status ---- */

static void count(cacheredis_t *r, uint64_t *counter)
{
    pthread_mutex_lock(&r->lock);
    (*counter)++;
    pthread_mutex_unlock(&r->lock);
}

/* A reply that is an error but does not end the session: noted in the status and the log. */
__attribute__((format(printf, 2, 3))) static void note_error(cacheredis_t *r, const char *fmt, ...)
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

/* ---- L2 entries ---- */

static uint8_t *put_u8(uint8_t *p, uint8_t v)
{
    *p = v;
    return p + 1;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)(v & 0xff);
    return p + 4;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)(v & 0xff);
    return p + 8;
}

static uint8_t *put_bytes(uint8_t *p, const void *s, size_t n)
{
    if (n > 0)
        memcpy(p, s, n);
    return p + n;
}

/* The bytes of an entry before its value. */
static size_t entry_head_size(size_t keylen, const cacheredis_gens_t *gens)
{
    size_t n = 1 + 4 + keylen + 8 + 1;

    for (int i = 0; i < gens->n; i++)
        n += 1 + strlen(gens->relnames[i]) + 8;
    return n;
}

/* Writes an entry's head at p (entry_head_size bytes); returns where its value goes. */
static uint8_t *entry_write_head(uint8_t *p, const void *key, size_t keylen,
                                 const cacheredis_gens_t *gens)
{
    p = put_u8(p, ENTRY_VERSION);
    p = put_u32(p, (uint32_t)keylen);
    p = put_bytes(p, key, keylen);
    p = put_u64(p, gens->epoch);
    p = put_u8(p, (uint8_t)gens->n);
    for (int i = 0; i < gens->n; i++) {
        size_t len = strlen(gens->relnames[i]);
        p = put_u8(p, (uint8_t)len);
        p = put_bytes(p, gens->relnames[i], len);
        p = put_u64(p, (uint64_t)gens->values[i]);
    }
    return p;
}

/* The bytes of an entry not yet compared. */
typedef struct bytes {
    const uint8_t *p;
    const uint8_t *end;
} bytes_t;

/* Whether the bytes go on with expected (n bytes); skips them if so. */
static bool same(bytes_t *b, const void *expected, size_t n)
{
    if ((size_t)(b->end - b->p) < n || (n > 0 && memcmp(b->p, expected, n) != 0))
        return false;
    b->p += n;
    return true;
}

static bool same_u64(bytes_t *b, uint64_t v)
{
    uint8_t buf[8];

    put_u64(buf, v);
    return same(b, buf, sizeof(buf));
}

/* Whether the entry in b is of key with exactly gens; b is left at its value if so. */
static bool entry_matches(bytes_t *b, const void *key, size_t keylen, const cacheredis_gens_t *gens)
{
    uint8_t head[5], n = (uint8_t)gens->n;

    put_u32(put_u8(head, ENTRY_VERSION), (uint32_t)keylen);
    if (!same(b, head, sizeof(head)) || !same(b, key, keylen) || !same_u64(b, gens->epoch) ||
        !same(b, &n, 1))
        return false;
    for (int i = 0; i < gens->n; i++) {
        uint8_t len = (uint8_t)strlen(gens->relnames[i]);
        if (!same(b, &len, 1) || !same(b, gens->relnames[i], len) ||
            !same_u64(b, (uint64_t)gens->values[i]))
            return false;
    }
    return true;
}

/* ---- commands ---- */

/* Makes room in the ring for more expected replies. */
static bool ring_reserve(cacheredis_t *r, size_t more)
{
    size_t cap = r->ring_cap > 0 ? r->ring_cap : 64;

    if (r->ring_len + more <= r->ring_cap)
        return true;
    while (cap < r->ring_len + more)
        cap *= 2;
    expect_t *ring = malloc(cap * sizeof(*ring));
    if (ring == NULL)
        return fail(r, "out of memory");
    for (size_t i = 0; i < r->ring_len; i++)
        ring[i] = r->ring[(r->ring_head + i) % r->ring_cap];
    free(r->ring);
    r->ring = ring;
    r->ring_cap = cap;
    r->ring_head = 0;
    return true;
}

/* What the next reply means; the room was reserved. */
static void ring_push(cacheredis_t *r, expect_t e)
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
static bool append(cacheredis_t *r, redisContext *c, int argc, const char **argv,
                   const size_t *lens)
{
    size_t sizes[3 + CACHEREDIS_MAX_DEPS];

    if (lens == NULL) {
        for (int i = 0; i < argc; i++)
            sizes[i] = strlen(argv[i]);
        lens = sizes;
    }
    if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK)
        return fail(r, "cannot queue a command: %s", c->errstr);
    return true;
}

/* Appends a command of strings to the command connection, and what its reply means. */
static bool send_one(cacheredis_t *r, reply_kind_t kind, int argc, const char **argv)
{
    if (!ring_reserve(r, 1) || !append(r, r->cmd, argc, argv, NULL))
        return false;
    ring_push(r, (expect_t){.kind = kind});
    return true;
}

static bool send_publish_text(cacheredis_t *r, reply_kind_t kind, const char *channel,
                              const char *text)
{
    return send_one(r, kind, 3, (const char *[]){"PUBLISH", channel, text});
}

/* Writes what c holds to its socket, as far as it takes it. */
static bool flush(cacheredis_t *r, redisContext *c, bool *want_write)
{
    int done = 0;

    if (redisBufferWrite(c, &done) != REDIS_OK)
        return fail(r, "cannot send: %s", c->errstr);
    *want_write = !done;
    return true;
}

/* ---- peers ---- */

static void peer_heard(cacheredis_t *r, uint64_t id, int64_t now)
{
    peer_t *room = NULL;

    for (int i = 0; i < MAX_PEERS; i++) {
        peer_t *p = &r->peers[i];
        if (p->used && p->id == id) {
            p->heard_ms = now;
            return;
        }
        if (room == NULL && (!p->used || now - p->heard_ms >= r->wait_ms))
            room = p;
    }
    if (room != NULL) {
        *room = (peer_t){.used = true, .id = id, .heard_ms = now};
        return;
    }
    /* Untracked, it might be fresh without having acknowledged: no publish completes early
     * for a while. */
    r->peers_overflow_at = now;
    if (!r->warned_peers)
        log_warning("cache redis: %s: more than %d other instances: publishes wait out their "
                    "lease",
                    r->where, MAX_PEERS);
    r->warned_peers = true;
}

/* The other instances heard from within the lease, into the status when it changed. */
static void report_peers(cacheredis_t *r, int64_t now)
{
    int live = 0;

    for (int i = 0; i < MAX_PEERS; i++)
        if (r->peers[i].used && now - r->peers[i].heard_ms < r->cfg.lease_ms)
            live++;
    if (live == r->reported_peers)
        return;
    r->reported_peers = live;
    pthread_mutex_lock(&r->lock);
    r->status.peers = live;
    pthread_mutex_unlock(&r->lock);
}

/* ---- publishes ---- */

static bool has_acked(const request_t *req, uint64_t id)
{
    for (int i = 0; i < req->n_acked; i++)
        if (req->acked[i] == id)
            return true;
    return false;
}

static request_t *find_publish(cacheredis_t *r, uint64_t seq)
{
    for (request_t *req = r->publishing.head; req != NULL; req = req->next)
        if (req->seq == seq)
            return req;
    return NULL;
}

/* Whether every acknowledgement that lets req complete before its wait is in (see above). */
static bool publish_acked(const cacheredis_t *r, const request_t *req, int64_t now)
{
    if (!req->echoed || req->n_acked < req->reached - 1)
        return false;
    if (now < r->subscribed_at + r->wait_ms || now < r->peers_overflow_at + r->wait_ms)
        return false;
    for (int i = 0; i < MAX_PEERS; i++) {
        const peer_t *p = &r->peers[i];
        if (p->used && now - p->heard_ms < r->wait_ms && !has_acked(req, p->id))
            return false;
    }
    return true;
}

/* When publish_acked may turn true by time alone, or req's wait ends, if sooner than *next. */
static void publish_next_check(const cacheredis_t *r, const request_t *req, int64_t now,
                               int64_t *next)
{
    soonest(next, req->deadline, now);
    soonest(next, r->subscribed_at + r->wait_ms, now);
    soonest(next, r->peers_overflow_at + r->wait_ms, now);
    for (int i = 0; i < MAX_PEERS; i++) {
        const peer_t *p = &r->peers[i];
        if (p->used && !has_acked(req, p->id))
            soonest(next, p->heard_ms + r->wait_ms, now);
    }
}

static void finish_publish(request_t *req)
{
    req->done(req->arg);
    free(req);
}

/* "inv <instance> <seq> <target>" and a line per relname, into out. */
static void format_inv(const cacheredis_t *r, uint64_t seq, const char *target,
                       const cacheredis_gens_t *deps, char out[MESSAGE_LEN])
{
    size_t used = (size_t)snprintf(out, MESSAGE_LEN, "inv %s %" PRIu64 " %s", r->name, seq, target);

    for (int i = 0; i < deps->n; i++)
        used +=
            (size_t)snprintf(out + used, MESSAGE_LEN - used, "\n%s", field_name(deps->relnames[i]));
}

/* Sends req's message again, under a new seq: what it waits for starts over. */
static bool send_publish_message(cacheredis_t *r, request_t *req)
{
    char msg[MESSAGE_LEN];
    uint64_t seq = ++r->seq;

    format_inv(r, seq, req->target, &req->deps, msg);
    if (!ring_reserve(r, 1) ||
        !append(r, r->cmd, 3, (const char *[]){"PUBLISH", r->inv_channel, msg}, NULL))
        return false;
    ring_push(r, (expect_t){.kind = REPLY_PUBLISH, .req = req, .seq = seq});
    req->seq = seq;
    req->reached = -1;
    req->echoed = false;
    req->n_acked = 0;
    return true;
}

/* Sends the HINCRBYs and the message of req, which joins the publishes sent; on a failure it
 * goes back to waiting. */
static bool send_publish(cacheredis_t *r, request_t *req)
{
    char key[KEY_LEN];
    int n = req->deps.n;

    gens_key(r, req->target, key);
    req->reissued = false;
    req->reached = -1;
    bool ok = ring_reserve(r, (size_t)n);
    for (int i = 0; ok && i < n; i++)
        ok = append(r, r->cmd, 4,
                    (const char *[]){"HINCRBY", key, field_name(req->deps.relnames[i]), "1"}, NULL);
    if (!ok) {
        list_push(&r->waiting, req);
        return false;
    }
    for (int i = 0; i < n; i++)
        ring_push(r, (expect_t){.kind = REPLY_BUMP, .req = req, .target = req->target});
    /* A failure from here on still leaves it waiting: the ring only names it. */
    list_push(&r->publishing, req);
    return send_publish_message(r, req);
}

/* The PUBLISH of req's message seq was answered. */
static bool publish_reply(cacheredis_t *r, request_t *req, uint64_t seq, const redisReply *reply,
                          int64_t now)
{
    if (reply->type != REDIS_REPLY_INTEGER)
        return fail(r, "PUBLISH: %s", reply_text(reply));
    if (seq != req->seq)
        return true; /* a message sent again since */
    req->reached = reply->integer;
    req->deadline = now + r->wait_ms;
    count(r, &r->status.published);
    return true;
}

/* ---- resets ---- */

/* Remembers target for a reset at the next connect: in the set, or past its bound as "every
 * target". */
static void remember(cacheredis_t *r, const char *target)
{
    for (int i = 0; i < r->n_remembered; i++)
        if (strcmp(r->remembered[i], target) == 0)
            return;
    if (r->n_remembered < MAX_REMEMBERED) {
        snprintf(r->remembered[r->n_remembered++], CACHEREDIS_TARGET_LEN, "%s", target);
        return;
    }
    if (!r->remember_all)
        log_warning("cache redis: %s: more than %d targets written while Redis was unreachable: "
                    "every target is reset at the next connect",
                    r->where, MAX_REMEMBERED);
    r->remember_all = true;
}

/* The message that ends a reset of target ("inv" of "") or of every target ("all"). */
static bool send_reset_message(cacheredis_t *r, const char *target)
{
    char msg[MESSAGE_LEN];
    uint64_t seq = ++r->seq;

    if (target != NULL)
        snprintf(msg, sizeof(msg), "inv %s %" PRIu64 " %s\n", r->name, seq, target);
    else
        snprintf(msg, sizeof(msg), "all %s %" PRIu64, r->name, seq);
    return send_publish_text(r, REPLY_RESET, r->inv_channel, msg);
}

static bool send_scan(cacheredis_t *r, const char *cursor)
{
    char pattern[KEY_LEN];

    snprintf(pattern, sizeof(pattern), "%s:g:*", r->cfg.prefix);
    return send_one(r, REPLY_SCAN, 6,
                    (const char *[]){"SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT});
}

/* Sends the resets of what was remembered; resets_pending counts what they wait for. Past the
 * bound, the SCAN's DELs and the "all" message cover the remembered targets too. */
static bool send_resets(cacheredis_t *r)
{
    char key[KEY_LEN];

    if (r->remember_all) {
        r->resets_pending++;
        return send_scan(r, "0");
    }
    for (int i = 0; i < r->n_remembered; i++) {
        const char *target = r->remembered[i];
        gens_key(r, target, key);
        if (!ring_reserve(r, 1) ||
            !append(r, r->cmd, 4, (const char *[]){"HINCRBY", key, "", "1"}, NULL))
            return false;
        ring_push(r, (expect_t){.kind = REPLY_BUMP, .target = target});
        r->resets_pending++;
        if (!send_reset_message(r, target))
            return false;
    }
    return true;
}

/* One reset message was answered; the last one forgets what was remembered. */
static bool reset_reply(cacheredis_t *r, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_INTEGER)
        return fail(r, "PUBLISH of a reset: %s", reply_text(reply));
    if (--r->resets_pending > 0)
        return true;
    log_info("cache redis: %s: reset %d target(s)%s written while Redis was unreachable", r->where,
             r->n_remembered, r->remember_all ? " and every other one" : "");
    r->n_remembered = 0;
    r->remember_all = false;
    return true;
}

/* A page of the SCAN of every target's generations hash: each is deleted, then the next page
 * is asked for or, after the last, the "all" message is sent. */
static bool scan_reply(cacheredis_t *r, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY)
        return fail(r, "SCAN: %s", reply_text(reply));
    const redisReply *keys = reply->element[1];
    for (size_t i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING)
            return fail(r, "SCAN: a key that is not a string");
        if (!send_one(r, REPLY_IGNORE, 2, (const char *[]){"DEL", keys->element[i]->str}))
            return false;
    }
    if (strcmp(reply->element[0]->str, "0") != 0)
        return send_scan(r, reply->element[0]->str);
    return send_reset_message(r, NULL);
}

/* A HINCRBY of e's target failed: its L2 entries may be current that are not. The hash goes,
 * and the message goes out again, after the DEL (see above). */
static bool bump_failed(cacheredis_t *r, const expect_t *e, const redisReply *reply)
{
    char key[KEY_LEN];

    note_error(r, "HINCRBY of %s: %s; deleting the hash", e->target, reply_text(reply));
    gens_key(r, e->target, key);
    if (!send_one(r, REPLY_IGNORE, 2, (const char *[]){"DEL", key}))
        return false;
    if (e->req == NULL) {
        r->resets_pending++;
        return send_reset_message(r, e->target);
    }
    if (e->req->reissued)
        return true;
    e->req->reissued = true;
    return send_publish_message(r, e->req);
}

/* Completes the publishes that were waited for long enough: those waiting for a session when
 * their wait since the loss is over (unsent), those sent when every acknowledgement is in or
 * their wait is over. */
static void complete_publishes(cacheredis_t *r, int64_t now)
{
    list_t keep = {0};

    for (request_t *req; (req = list_pop(&r->waiting)) != NULL;) {
        if (now < req->deadline) {
            list_push(&keep, req);
            continue;
        }
        remember(r, req->target);
        count(r, &r->status.publish_unsent);
        finish_publish(req);
    }
    r->waiting = keep;

    keep = (list_t){0};
    for (request_t *req; (req = list_pop(&r->publishing)) != NULL;) {
        if (req->reached < 0 || (now < req->deadline && !publish_acked(r, req, now))) {
            list_push(&keep, req);
            continue;
        }
        if (!publish_acked(r, req, now))
            count(r, &r->status.publish_timeouts);
        finish_publish(req);
    }
    r->publishing = keep;
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
    count(r, &r->status.put_errors);
    free(req);
}

static bool send_get(cacheredis_t *r, request_t *req)
{
    char ekey[KEY_LEN], gkey[KEY_LEN];
    const char *argv[3 + CACHEREDIS_MAX_DEPS] = {"HMGET", gkey, EPOCH_FIELD};
    int n = req->deps.n;

    entry_key(r, req->hash, ekey);
    gens_key(r, req->target, gkey);
    for (int i = 0; i < n; i++)
        argv[3 + i] = field_name(req->deps.relnames[i]);
    if (!ring_reserve(r, 2) || !append(r, r->cmd, 2, (const char *[]){"GET", ekey}, NULL) ||
        !append(r, r->cmd, 3 + n, argv, NULL)) {
        complete_get(r, req, CACHEREDIS_DOWN, NULL, 0);
        return false;
    }
    ring_push(r, (expect_t){.kind = REPLY_GET_ENTRY, .req = req});
    ring_push(r, (expect_t){.kind = REPLY_GET_GENS, .req = req});
    return true;
}

static bool send_put(cacheredis_t *r, request_t *req)
{
    char key[KEY_LEN], ttl[24];

    entry_key(r, req->hash, key);
    snprintf(ttl, sizeof(ttl), "%" PRId64, req->ttl_ms);
    const char *argv[] = {"SET", key, (const char *)req->data, "PX", ttl};
    const size_t lens[] = {3, strlen(key), req->len, 2, strlen(ttl)};
    if (!ring_reserve(r, 1) || !append(r, r->cmd, 5, argv, lens)) {
        drop_put(r, req);
        return false;
    }
    ring_push(r, (expect_t){.kind = REPLY_PUT, .req = req});
    return true;
}

/* Sets a random epoch on target's hash unless another instance did first. */
static bool send_epoch(cacheredis_t *r, const char *target)
{
    char key[KEY_LEN], epoch[24];

    gens_key(r, target, key);
    snprintf(epoch, sizeof(epoch), "%" PRIu64, random_u64());
    return send_one(r, REPLY_IGNORE, 4, (const char *[]){"HSETNX", key, EPOCH_FIELD, epoch});
}

/* The HMGET's reply into gens: MISS when it holds an epoch and a number per relname (absent
 * fields are 0), DOWN otherwise, with *no_epoch when only the epoch is missing. */
static cacheredis_result_t read_gens(cacheredis_gens_t *gens, const redisReply *reply,
                                     bool *no_epoch)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != (size_t)gens->n + 1)
        return CACHEREDIS_DOWN;
    if (reply->element[0]->type == REDIS_REPLY_NIL) {
        *no_epoch = true;
        return CACHEREDIS_DOWN;
    }
    if (!reply_u64(reply->element[0], &gens->epoch))
        return CACHEREDIS_DOWN;
    for (int i = 0; i < gens->n; i++) {
        const redisReply *value = reply->element[1 + i];
        gens->values[i] = 0;
        if (value->type != REDIS_REPLY_NIL && !reply_i64(value, &gens->values[i]))
            return CACHEREDIS_DOWN;
    }
    return CACHEREDIS_MISS;
}

/* The GET's reply against req (generations read): HIT with *value inside it, MISS or DOWN. */
static cacheredis_result_t read_entry(const request_t *req, const uint8_t **value, size_t *len)
{
    const redisReply *e = req->entry;

    if (e == NULL || (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_NIL))
        return CACHEREDIS_DOWN;
    if (e->type == REDIS_REPLY_NIL)
        return CACHEREDIS_MISS;
    bytes_t b = {(const uint8_t *)e->str, (const uint8_t *)e->str + e->len};
    if (!entry_matches(&b, req->data, req->len, &req->deps))
        return CACHEREDIS_MISS;
    *value = b.p;
    *len = (size_t)(b.end - b.p);
    return CACHEREDIS_HIT;
}

/* The HMGET of req was answered (its GET before it): req completes. */
static bool finish_get(cacheredis_t *r, request_t *req, const redisReply *reply)
{
    bool no_epoch = false;
    const uint8_t *value = NULL;
    size_t len = 0;

    cacheredis_result_t result = read_gens(&req->deps, reply, &no_epoch);
    if (result != CACHEREDIS_DOWN)
        result = read_entry(req, &value, &len);
    bool ok = !no_epoch || send_epoch(r, req->target);
    complete_get(r, req, result, value, len);
    return ok;
}

/* ---- requests from the queue ---- */

static bool send_request(cacheredis_t *r, request_t *req)
{
    switch (req->kind) {
    case REQUEST_PUBLISH:
        return send_publish(r, req);
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
        list_push(&r->waiting, req);
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
    for (request_t *req; (req = list_pop(&taken)) != NULL;) {
        if (ok && r->state == LINK_UP)
            ok = send_request(r, req);
        else
            hold_request(r, req);
    }
    return ok;
}

/* ---- messages ---- */

/* The bytes of a message not yet read. */
typedef struct cursor {
    const char *p;
    const char *end;
} cursor_t;

static bool take(cursor_t *c, const char *s)
{
    size_t n = strlen(s);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return false;
    c->p += n;
    return true;
}

/* An instance's name: 16 lowercase hexadecimal digits. */
static bool take_instance(cursor_t *c, uint64_t *id)
{
    *id = 0;
    for (int i = 0; i < INSTANCE_HEX; i++, c->p++) {
        if (c->p == c->end)
            return false;
        char ch = *c->p;
        int digit = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (digit < 0)
            return false;
        *id = *id << 4 | (uint64_t)digit;
    }
    return true;
}

/* A decimal number without sign, at most INT64_MAX. */
static bool take_number(cursor_t *c, uint64_t *v)
{
    const char *start = c->p;

    *v = 0;
    for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++) {
        if (*v > (uint64_t)(INT64_MAX - 9) / 10)
            return false;
        *v = *v * 10 + (uint64_t)(*c->p - '0');
    }
    return c->p > start;
}

/* The rest of the line (up to a newline or the end) into out, which must hold it and a NUL. */
static bool take_line(cursor_t *c, char *out, size_t cap)
{
    const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
    size_t n = (size_t)((nl != NULL ? nl : c->end) - c->p);

    if (n >= cap || memchr(c->p, '\0', n) != NULL)
        return false;
    memcpy(out, c->p, n);
    out[n] = '\0';
    c->p += n;
    return true;
}

/* An "inv" message, read. */
typedef struct inv_message {
    uint64_t origin, seq;
    char target[CACHEREDIS_TARGET_LEN];
    int n;
    char relnames[CACHEREDIS_MAX_DEPS][CACHEREDIS_NAME_LEN];
} inv_message_t;

static bool parse_inv(const char *p, size_t len, inv_message_t *m)
{
    cursor_t c = {p, p + len};

    if (!take(&c, "inv ") || !take_instance(&c, &m->origin) || !take(&c, " ") ||
        !take_number(&c, &m->seq) || !take(&c, " ") ||
        !take_line(&c, m->target, sizeof(m->target)) || m->target[0] == '\0')
        return false;
    for (m->n = 0; take(&c, "\n"); m->n++)
        if (m->n == CACHEREDIS_MAX_DEPS ||
            !take_line(&c, m->relnames[m->n], sizeof(m->relnames[m->n])))
            return false;
    return m->n > 0;
}

/* "<head> <instance> <number>", all of it. */
static bool parse_pair(const char *p, size_t len, const char *head, uint64_t *id, uint64_t *v)
{
    cursor_t c = {p, p + len};

    return take(&c, head) && take_instance(&c, id) && take(&c, " ") && take_number(&c, v) &&
           c.p == c.end;
}

static void warn_malformed(cacheredis_t *r, const char *what, const char *p, size_t len)
{
    char head[121];

    if (r->warned_malformed)
        return;
    r->warned_malformed = true;
    snprintf(head, sizeof(head), "%.*s", (int)(len < sizeof(head) - 1 ? len : sizeof(head) - 1), p);
    log_one_line(head);
    log_warning("cache redis: %s: a message that does not parse, %s: \"%s\"", r->where, what, head);
}

static bool send_ack(cacheredis_t *r, uint64_t origin, uint64_t seq)
{
    char channel[KEY_LEN], text[64];

    snprintf(channel, sizeof(channel), "%s:ack:%016" PRIx64, r->cfg.prefix, origin);
    snprintf(text, sizeof(text), "%" PRIu64 " %s", seq, r->name);
    return send_publish_text(r, REPLY_IGNORE, channel, text);
}

/* Another instance's invalidation is applied, then acknowledged; this instance's own marks
 * its publish as heard. */
static bool handle_inv(cacheredis_t *r, const char *p, size_t len, int64_t now)
{
    inv_message_t m;
    const char *names[CACHEREDIS_MAX_DEPS];

    if (!parse_inv(p, len, &m)) {
        warn_malformed(r, "taken as a change of anything", p, len);
        r->fn(r->arg, NULL, NULL, 0);
        return true;
    }
    if (m.origin == r->instance) {
        request_t *req = find_publish(r, m.seq);
        if (req != NULL)
            req->echoed = true;
        return true;
    }
    peer_heard(r, m.origin, now);
    for (int i = 0; i < m.n; i++)
        names[i] = m.relnames[i];
    r->fn(r->arg, m.target, names, m.n);
    count(r, &r->status.received);
    return send_ack(r, m.origin, m.seq);
}

/* "all": anything of any target may have changed. */
static bool handle_all(cacheredis_t *r, const char *p, size_t len, int64_t now)
{
    cursor_t c = {p, p + len};
    uint64_t origin, seq;

    if (!take(&c, "all ") || !take_instance(&c, &origin) || !take(&c, " ") ||
        !take_number(&c, &seq) || c.p != c.end) {
        warn_malformed(r, "taken as a change of anything", p, len);
        r->fn(r->arg, NULL, NULL, 0);
        return true;
    }
    if (origin == r->instance)
        return true;
    peer_heard(r, origin, now);
    r->fn(r->arg, NULL, NULL, 0);
    count(r, &r->status.received);
    return send_ack(r, origin, seq);
}

/* A ping of this instance makes it fresh; another's is a sign of life. */
static void handle_ping(cacheredis_t *r, const char *p, size_t len, int64_t now)
{
    uint64_t id, sent;

    if (!parse_pair(p, len, "ping ", &id, &sent)) {
        warn_malformed(r, "ignored", p, len);
        return;
    }
    if (id != r->instance) {
        peer_heard(r, id, now);
        return;
    }
    if (r->state != LINK_UP)
        return;
    r->last_alive = now;
    int64_t until = (int64_t)sent + r->cfg.lease_ms;
    if (until > atomic_load_explicit(&r->fresh_until, memory_order_relaxed))
        atomic_store_explicit(&r->fresh_until, until, memory_order_release);
}

/* "<seq> <instance>" on this instance's ack channel. */
static void handle_ack(cacheredis_t *r, const char *p, size_t len, int64_t now)
{
    cursor_t c = {p, p + len};
    uint64_t seq, id;

    if (!take_number(&c, &seq) || !take(&c, " ") || !take_instance(&c, &id) || c.p != c.end) {
        warn_malformed(r, "ignored", p, len);
        return;
    }
    if (id == r->instance)
        return;
    peer_heard(r, id, now);
    request_t *req = find_publish(r, seq);
    if (req != NULL && !has_acked(req, id) && req->n_acked < MAX_PEERS)
        req->acked[req->n_acked++] = id;
}

static bool handle_message(cacheredis_t *r, const redisReply *channel, const redisReply *payload,
                           int64_t now)
{
    if (channel->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING)
        return fail(r, "a message that is not a string");
    const char *p = payload->str;
    size_t len = payload->len;
    if (strcmp(channel->str, r->ack_channel) == 0) {
        handle_ack(r, p, len, now);
        return true;
    }
    if (strcmp(channel->str, r->inv_channel) != 0)
        return true;
    if (len >= 4 && memcmp(p, "inv ", 4) == 0)
        return handle_inv(r, p, len, now);
    if (len >= 4 && memcmp(p, "all ", 4) == 0)
        return handle_all(r, p, len, now);
    if (len >= 5 && memcmp(p, "ping ", 5) == 0)
        handle_ping(r, p, len, now);
    else
        warn_malformed(r, "ignored", p, len);
    return true;
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
        return fail(r, "the subscriber connection: %s", reply->str);
    if (r->sub_handshake_left > 0) {
        r->sub_handshake_left--;
        return true;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return fail(r, "the subscriber connection: %s", reply_text(reply));
    const char *kind = reply->element[0]->str;
    if (strcmp(kind, "message") == 0)
        return handle_message(r, reply->element[1], reply->element[2], now);
    if (strcmp(kind, "subscribe") != 0)
        return fail(r, "the subscriber connection: an unexpected \"%s\"", kind);
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
            return fail(r, "the command connection: %s", reply->str);
        r->cmd_handshake_left--;
        return true;
    case REPLY_IGNORE:
        if (error)
            note_error(r, "%s", reply->str);
        return true;
    case REPLY_BUMP:
        return !error || bump_failed(r, e, reply);
    case REPLY_PUBLISH:
        return publish_reply(r, e->req, e->seq, reply, now);
    case REPLY_RESET:
        return reset_reply(r, reply);
    case REPLY_SCAN:
        return scan_reply(r, reply);
    case REPLY_GET_GENS:
        return finish_get(r, e->req, reply);
    case REPLY_PUT:
        if (error) {
            note_error(r, "SET of an L2 entry: %s", reply->str);
            count(r, &r->status.put_errors);
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
        return fail(r, "a reply that no command asked for");
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
        return fail(r, "%s", c->errstr);
    for (;;) {
        void *reply = NULL;
        if (redisGetReply(c, &reply) != REDIS_OK)
            return fail(r, "%s", c->errstr);
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
        fail(r, "cannot connect: out of memory");
        return NULL;
    }
    if (c->err != 0) {
        fail(r, "cannot connect: %s", c->errstr);
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
        *ok = append(r, c, 2, (const char *[]){"AUTH", r->cfg.password}, NULL);
        n++;
    }
    if (*ok && r->cfg.db != 0) {
        snprintf(db, sizeof(db), "%d", r->cfg.db);
        *ok = append(r, c, 2, (const char *[]){"SELECT", db}, NULL);
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
    ok = ok &&
         append(r, r->sub, 3, (const char *[]){"SUBSCRIBE", r->inv_channel, r->ack_channel}, NULL);
    /* The PING makes the command connection's handshake never empty, so that its connect is
     * seen through. */
    int n = append_login(r, r->cmd, &ok);
    ok = ok && ring_reserve(r, (size_t)n + 1) &&
         append(r, r->cmd, 1, (const char *[]){"PING"}, NULL);
    if (!ok)
        return false;
    for (int i = 0; i <= n; i++)
        ring_push(r, (expect_t){.kind = REPLY_HANDSHAKE});
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
    if (!send_resets(r))
        return false;
    list_t waiting = r->waiting;
    r->waiting = (list_t){0};
    bool ok = true;
    for (request_t *req; (req = list_pop(&waiting)) != NULL;) {
        if (ok)
            ok = send_publish(r, req);
        else
            list_push(&r->waiting, req);
    }
    return ok;
}

/* The connects' progress: up once both handshakes are answered, failed past the deadline. */
static bool advance_connect(cacheredis_t *r, int64_t now)
{
    if (r->cmd_handshake_left == 0 && r->channels == 2)
        return become_up(r, now);
    if (now >= r->connect_deadline)
        return fail(r, "cannot connect: no answer within %d ms", CONNECT_TIMEOUT_MS);
    return true;
}

/* Pings every lease/5; a session whose pings stopped coming back is failed. */
static bool keep_alive(cacheredis_t *r, int64_t now)
{
    char text[64];

    if (now - r->last_alive > (int64_t)SILENT_LEASES * r->cfg.lease_ms)
        return fail(r, "no ping came back within %d ms", SILENT_LEASES * r->cfg.lease_ms);
    if (now < r->next_ping)
        return true;
    r->next_ping = now + r->cfg.lease_ms / 5;
    snprintf(text, sizeof(text), "ping %s %" PRId64, r->name, now);
    return send_publish_text(r, REPLY_IGNORE, r->inv_channel, text);
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
    for (request_t *req; (req = list_pop(&r->publishing)) != NULL;) {
        if (final)
            finish_publish(req);
        else if (req->reached < 0)
            list_push(&r->waiting, req);
        else
            list_push(&keep, req);
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
    set_state(r, LINK_DOWN);
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

    pthread_mutex_lock(&r->lock);
    if (was_up)
        r->status.disconnects++;
    snprintf(r->status.last_error, sizeof(r->status.last_error), "%s", r->why);
    pthread_mutex_unlock(&r->lock);
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
    complete_publishes(r, now);
    report_peers(r, now);
    if (ok && r->state != LINK_DOWN)
        ok = flush(r, r->sub, &r->sub_want_write) && flush(r, r->cmd, &r->cmd_want_write);
    return ok;
}

/* When step has something to do again without an event. */
static int64_t next_wakeup(const cacheredis_t *r, int64_t now)
{
    int64_t next = now + RETRY_MAX_MS;

    if (r->state == LINK_DOWN)
        soonest(&next, r->retry_at, now);
    if (r->state == LINK_CONNECTING)
        soonest(&next, r->connect_deadline, now);
    if (r->state == LINK_UP) {
        soonest(&next, r->next_ping, now);
        soonest(&next, r->last_alive + (int64_t)SILENT_LEASES * r->cfg.lease_ms + 1, now);
    }
    for (const request_t *req = r->waiting.head; req != NULL; req = req->next)
        soonest(&next, req->deadline, now);
    for (const request_t *req = r->publishing.head; req != NULL; req = req->next)
        if (req->reached >= 0)
            publish_next_check(r, req, now, &next);
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
        return errno == EINTR || fail(r, "poll: %s", strerror(errno));
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
    else if (cfg->lease_ms < 50 || cfg->lease_ms > 600000)
        snprintf(err, errlen, "cache redis: the lease of %d ms is not 50 ms to 10 minutes",
                 cfg->lease_ms);
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
        finish_publish(req);
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
    for (request_t *req; (req = list_pop(&r->waiting)) != NULL;)
        finish_publish(req);
    for (request_t *req; (req = list_pop(&r->queue)) != NULL;)
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
    list_push(&r->queue, req);
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
    put_bytes(req->data, key, keylen);
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
    size_t head = entry_head_size(keylen, gens);
    if (len > SIZE_MAX - head)
        return -1;
    request_t *req = new_request(REQUEST_PUT, head + len);
    if (req == NULL)
        return -1;
    put_bytes(entry_write_head(req->data, key, keylen, gens), value, len);
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
