/*
 * cacheredis.h
 *    The result cache's link to Redis, which pgturbo instances share: the invalidations an
 *    instance publishes (and waits until every other instance has applied), those it receives
 *    from the others, and a second-level store (L2) of answers that every instance can read.
 *
 * One thread per instance owns two connections to Redis (hiredis): one subscribed to the
 * instance's channels, one for commands, pipelined. Workers hand it requests through a queue
 * and learn of their completion through a callback that runs on that thread (the caller moves
 * it to its own thread). Nothing here blocks a worker.
 *
 * What lives in Redis (every name starts with the configured prefix and ":"):
 *  - g:<target>: a hash per database target ("host:port/dbname") of global generations, one
 *    field per relname ("" = every table of the target), incremented (HINCRBY) by the instance
 *    that publishes a write, before it publishes. Field "!epoch" holds a random number set once
 *    (HSETNX): an L2 entry records it, so that an entry never outlives the hash it was checked
 *    against (a Redis restart that lost the hash makes a new epoch, and generations that start
 *    again from 0 can never match an old entry by accident).
 *  - e:<16 hex digits of the key's hash>: one L2 entry, with PX expiry: the whole key (compared
 *    on every read, so hash collisions are misses), the epoch and the (relname, generation)
 *    pairs it was filled at, and the value.
 *  - inv: the channel of invalidations: "inv <instance> <seq> <target>" followed by one
 *    "\n<relname>" per table ("" = everything of the target), or "all <instance> <seq>"
 *    (anything of any target, after a reset past its bound, see below); and of pings,
 *    "ping <instance> <sent_ms>". Every instance subscribes to it. A relname that cannot be a
 *    hash field or a line ("!epoch", or one holding a newline) is bumped, read and published
 *    as "": more is invalidated, never less.
 *  - ack:<instance>: the channel on which the other instances acknowledge, "<seq> <instance>",
 *    an invalidation of <instance> once they applied it. Each instance subscribes to its own.
 *
 * Instances are named by 16 random hexadecimal digits, new at every start.
 *
 * Never stale, across instances:
 *  - A receiving instance applies an invalidation (cacheredis_inv_fn) before it acknowledges.
 *  - A publishing instance completes a publish (the caller then lets its client see the
 *    commit) once every instance that the PUBLISH reached (its reply counts the subscribers,
 *    this instance's own included, whose "acknowledgement" is its own message coming back)
 *    and every instance heard from (a ping or an ack) within the last lease has acknowledged
 *    it; or at the latest one lease after the PUBLISH's reply. Every wait of a publisher is
 *    the lease plus 10 %, for clocks that run at slightly different rates. For one lease after
 *    each (re)subscription, and while more than 64 other instances are heard from, a publish
 *    waits out its lease: the instances that might be fresh were not all listened to.
 *  - Lease: every lease/5 the thread PUBLISHes a ping of its own; when that ping comes back on
 *    the subscription, the instance is fresh until sent_ms + lease (monotonic clock). An
 *    instance that is not fresh must not answer from memory what another instance's write may
 *    have changed (cacheredis_fresh). So an instance that cannot hear the channel stops
 *    answering before any publisher stops waiting for it.
 *  - After every (re)subscription the thread reports that anything may have changed
 *    (fn(arg, NULL, NULL, 0)) before the instance can be fresh again: what was published
 *    meanwhile was never heard.
 *  - Redis unreachable: a publish that cannot be sent completes one lease after the moment the
 *    connection was lost (at once when that is longer ago), and its target is remembered; after
 *    the next connect the thread first publishes, for each such target, an invalidation of
 *    everything (HINCRBY "" and the message), so that what was written meanwhile reaches the
 *    others and the L2 alike. The L2 half relies on every get listing "" among its relnames.
 *    Past 64 remembered targets, every generations hash is deleted instead (SCAN, DEL: every
 *    target gets a new epoch) and one "all" message goes out. A publish whose connection was
 *    lost before its PUBLISH was answered is sent again if a session comes back within that
 *    lease, and counts as unsent otherwise.
 *  - A HINCRBY that Redis refuses (out of memory, say) deletes the target's hash (DEL is still
 *    allowed) and the message is published again, after the DEL.
 *
 * Reconnects: 100 ms after a failure, doubling up to 5 s; a connect (with AUTH, SELECT and
 * SUBSCRIBE) must be over within 1 s, and a session whose own pings stop coming back for three
 * leases is taken as lost. Each loss and each recovery is one log line, and the state is in
 * cacheredis_status.
 */
#ifndef PGTURBO_CACHEREDIS_H
#define PGTURBO_CACHEREDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHEREDIS_MAX_DEPS     32  /* relnames of one get or put */
#define CACHEREDIS_NAME_LEN     64  /* a relname with its NUL (NAMEDATALEN) */
#define CACHEREDIS_TARGET_LEN   336 /* a database target (host:port/dbname) with its NUL */
#define CACHEREDIS_MIN_LEASE_MS 50
#define CACHEREDIS_MAX_LEASE_MS 60000

typedef struct cacheredis cacheredis_t;

typedef struct cacheredis_config {
    char host[256];     /* a host name or an address */
    int port;           /* 6379 */
    char password[128]; /* "" = no AUTH */
    int db;             /* SELECT'ed when not 0 */
    char prefix[64];    /* of every key and channel, e.g. "pgturbo": letters, digits, "_.:-" */
    int lease_ms;       /* 500; CACHEREDIS_MIN_LEASE_MS to CACHEREDIS_MAX_LEASE_MS */
} cacheredis_config_t;

/*
 * Another instance's invalidation, on the Redis thread: relnames[0 .. n-1] of target (each
 * "" = every table of target) changed. With target == NULL (and relnames NULL, n 0): anything
 * of any target may have changed. Borrowed strings, valid during the call. Must bump before it
 * returns (the acknowledgement goes out after), and be quick and thread-safe.
 */
typedef void (*cacheredis_inv_fn)(void *arg, const char *target, const char *const *relnames,
                                  int n);

/*
 * Starts the thread, which connects on its own (Redis down at start is not an error: it keeps
 * trying). cfg is copied; fn and arg are borrowed until cacheredis_stop returns. Returns the
 * link, or NULL with the reason in err (bad config, out of memory, no thread).
 */
__attribute__((warn_unused_result)) cacheredis_t *cacheredis_start(const cacheredis_config_t *cfg,
                                                                   cacheredis_inv_fn fn, void *arg,
                                                                   char *err, size_t errlen);

/*
 * Stops the thread and frees r. Every request still pending completes first, on the calling
 * thread, as if Redis were down (publish: done; get: CACHEREDIS_DOWN), so that callers free
 * what they own. NULL is accepted.
 */
void cacheredis_stop(cacheredis_t *r);

/* Whether the instance is fresh (see above) at now_ms (loop_clock_ms's clock). Lock-free. */
bool cacheredis_fresh(const cacheredis_t *r, int64_t now_ms);

/* Called once when a publish completes, on the Redis thread (or in cacheredis_stop). */
typedef void (*cacheredis_done_fn)(void *arg);

/*
 * Publishes that relnames[0 .. n-1] of target (1 <= n <= CACHEREDIS_MAX_DEPS; "" = every table
 * of target; a target is not empty and holds no newline) changed: HINCRBY of their global
 * generations, then the message, then the wait for the acknowledgements described above;
 * done(arg) runs when that is over. All strings are copied. Returns 0, or -1 when memory runs
 * out or the arguments are out of range (then done is never called). Thread-safe.
 */
__attribute__((warn_unused_result)) int cacheredis_publish(cacheredis_t *r, const char *target,
                                                           const char *const *relnames, int n,
                                                           cacheredis_done_fn done, void *arg);

/* The global generations an L2 read saw: what a later put of the same read must carry. */
typedef struct cacheredis_gens {
    uint64_t epoch;
    int n;
    char relnames[CACHEREDIS_MAX_DEPS][CACHEREDIS_NAME_LEN];
    int64_t values[CACHEREDIS_MAX_DEPS];
} cacheredis_gens_t;

typedef enum cacheredis_status_code {
    CACHEREDIS_HIT,  /* the entry exists, its key, epoch and generations are current */
    CACHEREDIS_MISS, /* no current entry; gens holds the generations as read now */
    CACHEREDIS_DOWN, /* Redis could not answer (or the hash has no epoch yet): no gens */
} cacheredis_result_t;

/*
 * The completion of a get, on the Redis thread (or in cacheredis_stop): for a HIT, value
 * (len bytes) is the stored value; for a MISS, gens the generations to put with. Both are
 * valid only during the call; NULL when not given.
 */
typedef void (*cacheredis_got_fn)(void *arg, cacheredis_result_t result, const uint8_t *value,
                                  size_t len, const cacheredis_gens_t *gens);

/*
 * Reads the L2 entry of key (keylen bytes, hash = the caller's 64-bit hash of it) and, in the
 * same pipeline, the epoch and the global generations of relnames[0 .. n-1] of target
 * (0 <= n <= CACHEREDIS_MAX_DEPS). A HIT needs the entry's key equal to key, its epoch equal
 * to the hash's, and exactly these relnames, in this order, with the generations read. When
 * the hash has no epoch yet, it is set (HSETNX) and the result is DOWN. All arguments are
 * copied. Returns 0, or -1 when memory runs out or arguments are out of range (then got is
 * never called). Thread-safe.
 */
__attribute__((warn_unused_result)) int
cacheredis_get(cacheredis_t *r, uint64_t hash, const void *key, size_t keylen, const char *target,
               const char *const *relnames, int n, cacheredis_got_fn got, void *arg);

/*
 * Stores an L2 entry for key with the generations a get returned as a MISS (gens), expiring
 * after ttl_ms, without waiting for the reply (a failure is only counted). All arguments are
 * copied. Returns 0, or -1 when memory runs out or arguments are out of range. Thread-safe.
 */
__attribute__((warn_unused_result)) int
cacheredis_put(cacheredis_t *r, uint64_t hash, const void *key, size_t keylen,
               const cacheredis_gens_t *gens, const void *value, size_t len, int64_t ttl_ms);

/* A copy of the link's state and counters. */
typedef struct cacheredis_status {
    bool connected;            /* both connections up and subscribed */
    bool fresh;                /* as cacheredis_fresh now */
    char instance[17];         /* this instance's name */
    int peers;                 /* other instances heard from within the lease */
    uint64_t published;        /* invalidations published */
    uint64_t publish_timeouts; /* completed by the lease, not by every acknowledgement */
    uint64_t publish_unsent;   /* completed while Redis was unreachable */
    uint64_t received;         /* invalidations of other instances applied */
    uint64_t gets, hits, misses;
    uint64_t get_errors; /* gets answered DOWN */
    uint64_t puts;
    uint64_t put_errors;  /* puts dropped while down, or refused */
    uint64_t disconnects; /* connections lost */
    char last_error[256]; /* "" = none yet */
} cacheredis_status_t;

/* Copies r's state into out. Thread-safe. */
void cacheredis_status(cacheredis_t *r, cacheredis_status_t *out);

#endif /* PGTURBO_CACHEREDIS_H */
