/*
 * cacheredis_link.h
 *    The inside of the result cache's link to Redis (struct cacheredis, its requests and the
 *    ring of expected replies), shared by cacheredis.c (the thread, sessions, commands, gets,
 *    puts and the interface) and cacheredis_inv.c (the invalidations: publishes, resets,
 *    messages received, peers). Private to those two files; not part of cacheredis.h's API.
 *
 * The fields under "the thread's own" are touched only by the thread, and by cacheredis_stop
 * once the thread is gone; status and the queue are under the lock. So every function here runs
 * on the thread (or in cacheredis_stop once it is gone); those that touch the status take the
 * lock.
 */
#ifndef PGTURBO_CACHEREDIS_LINK_H
#define PGTURBO_CACHEREDIS_LINK_H

#include "cacheredis.h"

#include "cacheredis_wire.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Other instances tracked, and distinct acknowledgements recorded per publish. Past it, a
 * publish completes by its wait only. */
#define MAX_PEERS 64

/* Targets remembered for a reset; past it, every target is reset. */
#define MAX_REMEMBERED 64

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

/* ---- cacheredis.c ---- */

/* Puts why the session fails into r->why, on one line, for lose_session's log line and the
 * status; returns false, for "return link_fail(...)". */
__attribute__((format(printf, 2, 3))) bool link_fail(cacheredis_t *r, const char *fmt, ...);
/* A reply that is an error but does not end the session: into the status (under the lock) and
 * the log. */
__attribute__((format(printf, 2, 3))) void link_note_error(cacheredis_t *r, const char *fmt, ...);
/* Adds one to a counter of r->status, under the lock. */
void link_count(cacheredis_t *r, uint64_t *counter);
/* Sets *next to t when t is after now and before *next. */
void link_soonest(int64_t *next, int64_t t, int64_t now);

/* Appends req (which the list then owns) to l. */
void link_list_push(list_t *l, request_t *req);
/* Takes the first request off l (the caller owns it), or NULL. */
request_t *link_list_pop(list_t *l);

/* Makes room in the ring for more expected replies; false (the session fails) when memory runs
 * out. */
bool link_ring_reserve(cacheredis_t *r, size_t more);
/* What the next reply means; the room was reserved. */
void link_ring_push(cacheredis_t *r, expect_t e);
/* Appends a command to c (argv borrowed; hiredis copies it); lens NULL: every argument is a
 * string. */
bool link_append(cacheredis_t *r, redisContext *c, int argc, const char **argv, const size_t *lens);
/* Appends a command of strings to the command connection, and what its reply means. */
bool link_send_one(cacheredis_t *r, reply_kind_t kind, int argc, const char **argv);
/* PUBLISH of text on channel, on the command connection. */
bool link_send_publish_text(cacheredis_t *r, reply_kind_t kind, const char *channel,
                            const char *text);

/* ---- cacheredis_inv.c ---- */

/* Sends the HINCRBYs and the message of req (taking ownership), which joins the publishes sent;
 * on a failure it goes back to waiting. */
bool inv_send_publish(cacheredis_t *r, request_t *req);
/* The PUBLISH of req's message seq was answered. */
bool inv_publish_reply(cacheredis_t *r, request_t *req, uint64_t seq, const redisReply *reply,
                       int64_t now);
/* Completes req: calls its done and frees it. */
void inv_finish_publish(request_t *req);
/* Completes the publishes that were waited for long enough. */
void inv_complete_publishes(cacheredis_t *r, int64_t now);
/* Sets *next to when a sent and answered req may complete by time alone, if sooner. */
void inv_next_check(const cacheredis_t *r, const request_t *req, int64_t now, int64_t *next);

/* Sends the resets of the targets remembered while Redis was unreachable. */
bool inv_send_resets(cacheredis_t *r);
/* One reset message was answered. */
bool inv_reset_reply(cacheredis_t *r, const redisReply *reply);
/* A page of the SCAN of every generations hash was answered. */
bool inv_scan_reply(cacheredis_t *r, const redisReply *reply);
/* A HINCRBY of e's target failed: the hash is deleted and the message sent again. */
bool inv_bump_failed(cacheredis_t *r, const expect_t *e, const redisReply *reply);

/* A message on a subscribed channel (both replies borrowed). */
bool inv_handle_message(cacheredis_t *r, const redisReply *channel, const redisReply *payload,
                        int64_t now);
/* The other instances heard from within the lease, into the status when it changed. */
void inv_report_peers(cacheredis_t *r, int64_t now);

#endif /* PGTURBO_CACHEREDIS_LINK_H */
