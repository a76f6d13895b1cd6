/*
 * cache_warm.c
 *    POST /api/v1/cache/warm: the entries with the most hits run again, so that answers that
 *    writes made stale are recorded anew before clients ask for them; see cache.h.
 *
 * Each entry runs through an internal client, the way a client's miss runs: the admin API's
 * thread decodes the entry's key (cachekey.h) into the request it stands for and hands a
 * worker one end of a socketpair, with the key's database target, user and session
 * parameters. In the worker, warm_log_in finds the [databases] entry that reaches the target
 * and makes the client with client_adopt, logged in without a password: only this in-process
 * path can make one, since no user ever holds either end of the pair. The admin thread then
 * speaks the protocol on its end: it waits for the welcome, sends the request, and reads to
 * its ReadyForQuery. On its way the request meets cache_answer, the pool and a server like any
 * client's, so the answer is recorded under the same key, with the same dependencies, rule and
 * TTL, in memory and in the L2 of cache_redis_host.
 *
 * One warm runs at a time and takes one entry at a time, so it never holds more than one
 * server of a pool, and what cache.c counts for internal clients (cache.warmed, an answer
 * recorded; cache.warm_fresh, one found current) tells what became of each entry.
 */
#include "cache_internal.h"

#include "authfile.h"
#include "cachekey.h"
#include "console.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "params.h"
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ENTRY_TIMEOUT_MS 10000        /* one entry, from the handover to its ReadyForQuery */
#define WARM_TIMEOUT_MS  60000        /* a whole warm: the entries left then are not run */
#define ERROR_MAX_LEN    8192         /* longer ErrorResponses are skipped, not read */
#define WARM_PEER        "cache warm" /* the internal clients' peer, in logs and SHOW CLIENTS */

/* One warm at a time: the counters of internal clients then speak of its entry alone. */
static pthread_mutex_t warm_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned next_worker;
static _Atomic bool warm_allowed = true; /* cache_warm_allow */

/* What a worker needs to make the internal client of one entry; warm_log_in owns it. */
typedef struct warm_login {
    int fd; /* the client's end of the socketpair */
    char target[sizeof(cache.ns[0].target)];
    char user[CONFIG_NAME_LEN];
    params_t params;
} warm_login_t;

/* The admin thread's end of one entry's socketpair. */
typedef struct warm_conn {
    int fd;
    buf_t in;
    uint32_t skip;    /* bytes of a long message still to be dropped as they come */
    int64_t deadline; /* loop_clock_ms */
} warm_conn_t;

/* What became of one entry. */
typedef enum warm_outcome {
    WARM_WARMED,  /* its answer was recorded again */
    WARM_FRESH,   /* its answer was current: answered from memory */
    WARM_SKIPPED, /* not run: its key, its database or its user is not one to run */
    WARM_FAILED,  /* run, but nothing recorded */
} warm_outcome_t;

/* One warm: its result, and when it must end. */
typedef struct warm_run {
    cache_warm_result_t *result;
    int64_t deadline;
} warm_run_t;

/* ---- in the worker ---- */

/*
 * The [databases] entry of cfg through which a client reaches target, with the database name
 * it asks for in database; NULL when there is none. A "*" entry without dbname reaches the
 * database clients name; any entry counts only when the name it is reached by leads to it.
 */
static const config_database_t *target_entry(const config_t *cfg, const char *target,
                                             char database[CONFIG_NAME_LEN])
{
    for (int i = 0; i < cfg->n_databases; i++) {
        const config_database_t *db = &cfg->databases[i];
        bool fallback = strcmp(db->name, "*") == 0;
        char prefix[sizeof(cache.ns[0].target)];
        cache_target_name(prefix, sizeof(prefix), db->host, db->port, "");
        size_t n = strlen(prefix);
        if (strncmp(target, prefix, n) != 0)
            continue;
        const char *dbname = target + n;
        if ((!fallback || db->dbname[0] != '\0') && strcmp(db->dbname, dbname) != 0)
            continue;
        const char *name = fallback ? dbname : db->name;
        if (strlen(name) >= CONFIG_NAME_LEN || console_is_database(name) ||
            config_find_database(cfg, name) != db)
            continue;
        memcpy(database, name, strlen(name) + 1);
        return db;
    }
    return NULL;
}

/* Whether user may still log in as far as cfg says: not when auth_file decides and lacks it. */
static bool user_known(const config_t *cfg, const char *user)
{
    return cfg->auth_type == AUTH_TYPE_TRUST || cfg->users == NULL || cfg->auth_user[0] != '\0' ||
           authfile_lookup(cfg->users, user) != NULL;
}

/* Tells the warm why there is no client (an ErrorResponse, as a login would get), and closes
 * fd. When the message cannot be made or sent, the warm sees the pair closed: a failure. */
static void refuse(int fd, const char *sqlstate, const char *message)
{
    buf_t b = {0};
    if (proto_build_error(&b, "FATAL", sqlstate, message) == 0)
        (void)net_write(fd, buf_head(&b), buf_len(&b)); /* an empty pair takes it whole */
    buf_free(&b);
    close(fd);
}

/* Makes the internal client of one entry (worker_post_run). */
static void warm_log_in(worker_t *w, void *arg)
{
    warm_login_t *l = arg;
    char database[CONFIG_NAME_LEN];
    const config_database_t *db = w != NULL ? target_entry(w->cfg, l->target, database) : NULL;
    if (w == NULL)
        close(l->fd);
    else if (db == NULL)
        refuse(l->fd, "3D000", "no [databases] entry reaches the target any more");
    else if (!user_known(w->cfg, l->user))
        refuse(l->fd, "28000", "auth_file no longer names the user");
    else if (client_adopt(w, l->fd, db, database, l->user, &l->params, WARM_PEER) < 0)
        log_warning("cache: warm: cannot make a client for %s@%s", l->user, database);
    free(l);
}

/* ---- in the admin API's thread ---- */

/* Waits until fd is ready for events, or wc's deadline. */
static bool wait_for(const warm_conn_t *wc, short events)
{
    for (;;) {
        int64_t left = wc->deadline - loop_clock_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = wc->fd, .events = events};
        int rc = poll(&p, 1, (int)left);
        if (rc > 0)
            return true;
        if (rc < 0 && errno != EINTR)
            return false;
    }
}

/* Sends n bytes at p. */
static bool send_all(warm_conn_t *wc, const uint8_t *p, uint32_t n)
{
    while (n > 0) {
        ssize_t sent = net_write(wc->fd, p, n);
        if (sent == NET_AGAIN && wait_for(wc, POLLOUT))
            continue;
        if (sent <= 0)
            return false;
        p += sent;
        n -= (uint32_t)sent;
    }
    return true;
}

/* Reads what has come into wc->in. False at the end of the stream, an error or the deadline. */
static bool read_more(warm_conn_t *wc)
{
    for (;;) {
        if (buf_reserve(&wc->in, BUF_DEFAULT_SIZE) < 0)
            return false;
        ssize_t n = net_read(wc->fd, buf_tail(&wc->in), buf_room(&wc->in));
        if (n > 0) {
            buf_produce(&wc->in, (uint32_t)n);
            return true;
        }
        if (n != NET_AGAIN || !wait_for(wc, POLLIN))
            return false;
    }
}

/*
 * The type of the next message, or -1 when none comes. An ErrorResponse's SQLSTATE goes to
 * sqlstate ("" when it is too long to read); other long messages are dropped as they come.
 */
static int next_message(warm_conn_t *wc, char sqlstate[6])
{
    for (;;) {
        if (wc->skip > 0 && buf_len(&wc->in) > 0) {
            uint32_t n = wc->skip < buf_len(&wc->in) ? wc->skip : buf_len(&wc->in);
            buf_consume(&wc->in, n);
            wc->skip -= n;
            continue;
        }
        proto_msg_t m;
        proto_frame_result_t r =
            wc->skip > 0 ? PROTO_FRAME_SHORT
                         : proto_frame(buf_head(&wc->in), buf_len(&wc->in), UINT32_MAX, &m);
        if (r < 0)
            return -1;
        if (r == PROTO_FRAME_COMPLETE || (r == PROTO_FRAME_PARTIAL && m.len > ERROR_MAX_LEN)) {
            proto_error_t e;
            bool whole = r == PROTO_FRAME_COMPLETE;
            sqlstate[0] = '\0';
            if (m.type == 'E' && whole && proto_parse_error(m.body, m.body_len, &e) == 0)
                snprintf(sqlstate, 6, "%s", e.sqlstate);
            uint32_t held = whole ? m.len : buf_len(&wc->in);
            wc->skip = m.len - held;
            buf_consume(&wc->in, held);
            return m.type;
        }
        if (!read_more(wc))
            return -1;
    }
}

/*
 * Reads to the next ReadyForQuery: true when it came. *error tells whether an ErrorResponse
 * came before it, and sqlstate says the first one's SQLSTATE.
 */
static bool read_to_ready(warm_conn_t *wc, bool *error, char sqlstate[6])
{
    char state[6];
    *error = false;
    for (;;) {
        int type = next_message(wc, state);
        if (type < 0)
            return false;
        if (type == 'E' && !*error) {
            *error = true;
            memcpy(sqlstate, state, sizeof(state));
        }
        if (type == 'Z')
            return true;
    }
}

/* Reads the welcome: true when it came; else false, with *outcome WARM_SKIPPED when the worker
 * or PostgreSQL said the database or the user is gone, WARM_FAILED otherwise. */
static bool welcomed(warm_conn_t *wc, warm_outcome_t *outcome, const char **why)
{
    bool error;
    char sqlstate[6] = "";
    if (read_to_ready(wc, &error, sqlstate) && !error)
        return true;
    bool gone = strcmp(sqlstate, "3D000") == 0 || strncmp(sqlstate, "28", 2) == 0;
    *outcome = gone ? WARM_SKIPPED : WARM_FAILED;
    *why = gone ? "its database or its user is gone" : "no login";
    return false;
}

/* Sends r on wc's client and reads its answer; what became of it. */
static warm_outcome_t run_request(warm_conn_t *wc, const cachekey_request_t *r, const char **why)
{
    warm_outcome_t outcome = WARM_FAILED;
    if (!welcomed(wc, &outcome, why))
        return outcome;
    buf_t out = {0};
    uint64_t warmed = atomic_load(&cache.warmed), fresh = atomic_load(&cache.warm_fresh);
    bool sent = cachekey_build_request(&out, r) == 0 && send_all(wc, buf_head(&out), buf_len(&out));
    buf_free(&out);
    bool error;
    char sqlstate[6] = "";
    if (!sent || !read_to_ready(wc, &error, sqlstate)) {
        *why = sent ? "no answer in time" : "cannot send the request";
        return WARM_FAILED;
    }
    if (atomic_load(&cache.warmed) != warmed)
        return WARM_WARMED;
    if (atomic_load(&cache.warm_fresh) != fresh)
        return WARM_FRESH;
    *why = error ? "PostgreSQL answered with an error" : "the answer was not recorded";
    return WARM_FAILED;
}

/* The target of namespace id in out (sizeof(cache.ns[0].target)); false when it has none. */
static bool target_of(uint32_t id, char *out)
{
    if (id == 0 || id > MAX_NAMESPACES)
        return false;
    cache_ns_target(&cache.ns[id], out, sizeof(cache.ns[id].target));
    return out[0] != '\0';
}

/* The login of r's client at target, for warm_log_in; NULL when memory runs out. */
static warm_login_t *login_of(const cachekey_request_t *r, const char *target)
{
    warm_login_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    snprintf(l->target, sizeof(l->target), "%s", target);
    snprintf(l->user, sizeof(l->user), "%s", r->user);
    for (int id = 0; id < PARAM_COUNT; id++)
        if (r->params[id][0] != '\0')
            (void)params_set(&l->params, id, r->params[id]); /* decoded keys' values fit */
    return l;
}

/* Hands l to a worker with the client's end of a new socketpair; the warm's end, or -1. */
static int hand_over(warm_login_t *l)
{
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0) {
        free(l);
        return -1;
    }
    l->fd = pair[0];
    worker_t *w = &workers[atomic_fetch_add(&next_worker, 1) % (unsigned)n_workers];
    if (worker_post_run(w, warm_log_in, l) < 0) {
        close(pair[0]);
        close(pair[1]);
        free(l);
        return -1;
    }
    return pair[1];
}

/* Runs the entry whose key decoded into r, through a client of its own. */
static warm_outcome_t warm_request(const cachekey_request_t *r, int64_t deadline, const char **why)
{
    char target[sizeof(cache.ns[0].target)];
    if (!target_of(r->ns, target)) {
        *why = "its database target is unknown";
        return WARM_SKIPPED;
    }
    warm_login_t *l = login_of(r, target);
    if (l == NULL) {
        *why = "out of memory";
        return WARM_FAILED;
    }
    warm_conn_t wc = {.fd = hand_over(l), .deadline = deadline};
    if (wc.fd < 0) {
        *why = "cannot hand it to a worker";
        return WARM_FAILED;
    }
    warm_outcome_t outcome = run_request(&wc, r, why);
    close(wc.fd);
    buf_free(&wc.in);
    return outcome;
}

/* What became of one entry (its key, its rule), with why when it was not recorded. */
static warm_outcome_t warm_one(warm_run_t *run, const void *key, size_t keylen, uint16_t rule,
                               const char **why)
{
    cachekey_request_t r;
    int64_t now = loop_clock_ms();
    if (now >= run->deadline || !atomic_load(&warm_allowed)) {
        *why = "the warm ran out of time, or the admin API is stopping";
        return WARM_FAILED;
    }
    if (rule == RULE_TAG) {
        /* The key holds the text without the comment that gave the TTL. */
        *why = "cached for a pgturbo_cache tag";
        return WARM_SKIPPED;
    }
    if (!cachekey_decode(key, keylen, &r)) {
        *why = "its key is not one pgturbo reads";
        return WARM_SKIPPED;
    }
    int64_t until = now + ENTRY_TIMEOUT_MS < run->deadline ? now + ENTRY_TIMEOUT_MS : run->deadline;
    warm_outcome_t outcome = warm_request(&r, until, why);
    /* An entry that took all its time ends the warm: PostgreSQL or the pool is slow now. */
    if (loop_clock_ms() >= until)
        run->deadline = 0;
    return outcome;
}

/* One entry cachestore_top passed (the most hit first): run, and counted in the result. */
static void warm_entry(void *arg, const void *key, size_t keylen, uint64_t hits, uint16_t rule)
{
    warm_run_t *run = arg;
    const char *why = "";
    warm_outcome_t outcome = warm_one(run, key, keylen, rule, &why);
    size_t *counts[] = {&run->result->warmed, &run->result->fresh, &run->result->skipped,
                        &run->result->failed};
    run->result->entries++;
    (*counts[outcome])++;
    if (outcome == WARM_SKIPPED || outcome == WARM_FAILED)
        log_debug("cache: warm: an entry of %llu hits %s: %s", (unsigned long long)hits,
                  outcome == WARM_SKIPPED ? "skipped" : "failed", why);
}

void cache_warm_allow(bool allowed)
{
    atomic_store(&warm_allowed, allowed);
}

int cache_warm(size_t top, cache_warm_result_t *out)
{
    memset(out, 0, sizeof(*out));
    out->requested = top;
    if (cache.store == NULL || n_workers == 0)
        return -1;
    if (pthread_mutex_trylock(&warm_lock) != 0)
        return CACHE_WARM_BUSY;
    atomic_fetch_add_explicit(&cache.warms, 1, memory_order_relaxed);
    warm_run_t run = {.result = out, .deadline = loop_clock_ms() + WARM_TIMEOUT_MS};
    (void)cachestore_top(cache.store, top, warm_entry, &run);
    pthread_mutex_unlock(&warm_lock);
    /* This thread is not a worker: its buffers' free list goes now. */
    buf_thread_cleanup();
    return 0;
}
