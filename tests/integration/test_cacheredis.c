/*
 * test_cacheredis.c
 *    cacheredis against a redis-server of the test's own, with two or three links in this one
 *    process, each on a key prefix of its test: a publish reaches the other instance (its
 *    callback runs before the publisher's completion), completes promptly when nobody else
 *    listens, and waits out the lease for a subscriber that never acknowledges or a peer that
 *    pings but never acknowledges; links become fresh shortly after their start; the L2 round
 *    trip (no epoch, MISS with generations, put, HIT, and the MISSes of a write, another relname
 *    list, another order, another key with the same hash, stale generations and an expiry);
 *    messages that do not parse; Redis killed (not fresh, a publish completes unsent after the
 *    lease, gets DOWN, puts dropped) and restarted (fn(NULL), fresh again, the remembered
 *    target reset in Redis and at the other instance, acknowledged publishes again); one link
 *    cut off through a relay while Redis and the other link stay up (its reset reaches the
 *    other and Redis's own hash; past 64 targets every hash goes and an "all" message follows);
 *    a stop that completes what is pending; AUTH and SELECT, and a wrong password.
 *
 *    Waits poll a condition every few milliseconds up to a deadline. The one fixed wait is the
 *    lease after a link becomes fresh: a publish completes early only once the link has listened
 *    to its peers for that long.
 */
#include "harness.h"

#include "cacheredis.h"
#include "loop.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define LEASE_MS    300
#define WAIT_MS     (LEASE_MS + LEASE_MS / 10) /* how long a publisher waits at most */
#define DEADLINE_MS 5000                       /* the longest any condition may take */
#define MAX_EVENTS  256
#define FAKE_PEER   "0123456789abcdef"
#define TARGET      "127.0.0.1:5432/db"

/* ---- what the callbacks saw ---- */

/* Every callback of every link takes this lock and the next order number, so that the test
 * can tell which came first across links. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int order;

/* One call of a link's cacheredis_inv_fn. */
typedef struct event {
    int order;
    bool any; /* fn(NULL, NULL, 0) */
    char target[CACHEREDIS_TARGET_LEN];
    int n;
    char relnames[4][CACHEREDIS_NAME_LEN];
} event_t;

/* One link under test and what its callback saw. */
typedef struct node {
    cacheredis_t *link;
    int delay_ms; /* how long its callback takes before it records */
    int n_events;
    event_t events[MAX_EVENTS];
} node_t;

typedef struct completion {
    int order; /* 0 until done */
    long long at_ms;
} completion_t;

typedef struct answer {
    bool came;
    cacheredis_result_t result;
    char value[64];
    size_t len;
    bool has_gens;
    cacheredis_gens_t gens;
} answer_t;

static void on_inv(void *arg, const char *target, const char *const *relnames, int n)
{
    node_t *node = arg;

    if (node->delay_ms > 0)
        harness_sleep_ms(node->delay_ms);
    pthread_mutex_lock(&lock);
    if (node->n_events < MAX_EVENTS) {
        event_t *e = &node->events[node->n_events++];
        memset(e, 0, sizeof(*e));
        e->order = ++order;
        e->any = target == NULL;
        if (target != NULL)
            snprintf(e->target, sizeof(e->target), "%s", target);
        e->n = n;
        for (int i = 0; i < n && i < 4; i++)
            snprintf(e->relnames[i], sizeof(e->relnames[i]), "%s", relnames[i]);
    }
    pthread_mutex_unlock(&lock);
}

static void on_done(void *arg)
{
    completion_t *c = arg;

    pthread_mutex_lock(&lock);
    c->order = ++order;
    c->at_ms = harness_now_ms();
    pthread_mutex_unlock(&lock);
}

static void on_got(void *arg, cacheredis_result_t result, const uint8_t *value, size_t len,
                   const cacheredis_gens_t *gens)
{
    answer_t *a = arg;

    pthread_mutex_lock(&lock);
    a->result = result;
    a->len = len;
    if (value != NULL)
        memcpy(a->value, value, len < sizeof(a->value) - 1 ? len : sizeof(a->value) - 1);
    a->has_gens = gens != NULL;
    if (gens != NULL)
        a->gens = *gens;
    a->came = true;
    pthread_mutex_unlock(&lock);
}

/* ---- waiting ---- */

/* Polls cond(arg) every 2 ms until it holds (true) or timeout_ms passed (false). */
static bool wait_for(bool (*cond)(void *), void *arg, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;

    for (;;) {
        if (cond(arg))
            return true;
        if (harness_now_ms() >= deadline)
            return false;
        harness_sleep_ms(2);
    }
}

static bool is_done(void *arg)
{
    pthread_mutex_lock(&lock);
    bool done = ((completion_t *)arg)->order != 0;
    pthread_mutex_unlock(&lock);
    return done;
}

static bool has_answer(void *arg)
{
    pthread_mutex_lock(&lock);
    bool came = ((answer_t *)arg)->came;
    pthread_mutex_unlock(&lock);
    return came;
}

static bool is_fresh(void *arg)
{
    return cacheredis_fresh(((node_t *)arg)->link, loop_clock_ms());
}

static bool is_stale(void *arg)
{
    return !is_fresh(arg);
}

static cacheredis_status_t status_of(const node_t *node)
{
    cacheredis_status_t s;

    cacheredis_status(node->link, &s);
    return s;
}

static bool has_one_peer(void *arg)
{
    return status_of(arg).peers == 1;
}

static int events_of(node_t *node)
{
    pthread_mutex_lock(&lock);
    int n = node->n_events;
    pthread_mutex_unlock(&lock);
    return n;
}

/* A copy of node's event i, waited for up to DEADLINE_MS. */
static event_t event_at(node_t *node, int i)
{
    long long deadline = harness_now_ms() + DEADLINE_MS;

    while (events_of(node) <= i) {
        if (harness_now_ms() >= deadline)
            fail_msg("no event %d within %d ms", i, DEADLINE_MS);
        harness_sleep_ms(2);
    }
    pthread_mutex_lock(&lock);
    event_t e = node->events[i];
    pthread_mutex_unlock(&lock);
    return e;
}

/* How many of node's events are fn(NULL, NULL, 0). */
static int anys_of(node_t *node)
{
    int n = 0;

    pthread_mutex_lock(&lock);
    for (int i = 0; i < node->n_events; i++)
        n += node->events[i].any;
    pthread_mutex_unlock(&lock);
    return n;
}

/* ---- links ---- */

static void start_node_as(node_t *node, int port, const char *prefix, const char *password, int db)
{
    cacheredis_config_t cfg = {.port = port, .db = db, .lease_ms = LEASE_MS};
    char err[256] = "";

    memset(node, 0, sizeof(*node));
    snprintf(cfg.host, sizeof(cfg.host), "127.0.0.1");
    snprintf(cfg.prefix, sizeof(cfg.prefix), "%s", prefix);
    snprintf(cfg.password, sizeof(cfg.password), "%s", password);
    node->link = cacheredis_start(&cfg, on_inv, node, err, sizeof(err));
    if (node->link == NULL)
        fail_msg("cacheredis_start: %s", err);
}

static void start_node(node_t *node, int port, const char *prefix)
{
    start_node_as(node, port, prefix, "", 0);
}

static void stop_node(node_t *node)
{
    cacheredis_stop(node->link);
    node->link = NULL;
}

/* Fresh, and listening long enough for a publish to complete by acknowledgements. */
static void settle(node_t *node)
{
    assert_true(wait_for(is_fresh, node, DEADLINE_MS));
    harness_sleep_ms(WAIT_MS + 20);
}

static void publish(node_t *node, const char *target, const char *const *relnames, int n,
                    completion_t *c)
{
    memset(c, 0, sizeof(*c));
    assert_int_equal(cacheredis_publish(node->link, target, relnames, n, on_done, c), 0);
}

/* Publishes and waits for the completion; returns how long it took. */
static long long publish_wait(node_t *node, const char *target, const char *const *relnames, int n,
                              completion_t *c)
{
    long long start = harness_now_ms();

    publish(node, target, relnames, n, c);
    assert_true(wait_for(is_done, c, DEADLINE_MS));
    return c->at_ms - start;
}

static answer_t get_key(node_t *node, uint64_t hash, const char *key, const char *target,
                        const char *const *relnames, int n)
{
    answer_t a = {0};

    assert_int_equal(
        cacheredis_get(node->link, hash, key, strlen(key), target, relnames, n, on_got, &a), 0);
    assert_true(wait_for(has_answer, &a, DEADLINE_MS));
    pthread_mutex_lock(&lock);
    answer_t copy = a;
    pthread_mutex_unlock(&lock);
    return copy;
}

static void put_value(node_t *node, uint64_t hash, const char *key, const cacheredis_gens_t *gens,
                      const char *value, int64_t ttl_ms)
{
    assert_int_equal(
        cacheredis_put(node->link, hash, key, strlen(key), gens, value, strlen(value), ttl_ms), 0);
}

/* ---- Redis, directly ---- */

static redisContext *redis_connect(int port)
{
    redisContext *c = redisConnect("127.0.0.1", port);

    assert_non_null(c);
    if (c->err != 0)
        fail_msg("redisConnect: %s", c->errstr);
    return c;
}

/* HGET key field as a string in out ("" for none); false when the field does not exist. */
static bool redis_hget(int port, const char *key, const char *field, char *out, size_t len)
{
    redisContext *c = redis_connect(port);
    redisReply *reply = redisCommand(c, "HGET %s %s", key, field);

    assert_non_null(reply);
    bool found = reply->type == REDIS_REPLY_STRING;
    snprintf(out, len, "%s", found ? reply->str : "");
    freeReplyObject(reply);
    redisFree(c);
    return found;
}

/* Runs a command of strings and asserts that it is not an error. */
static void redis_run(int port, int argc, const char **argv)
{
    redisContext *c = redis_connect(port);
    redisReply *reply = redisCommandArgv(c, argc, argv, NULL);

    assert_non_null(reply);
    if (reply->type == REDIS_REPLY_ERROR)
        fail_msg("%s: %s", argv[0], reply->str);
    freeReplyObject(reply);
    redisFree(c);
}

static void redis_publish(int port, const char *channel, const char *text)
{
    redis_run(port, 3, (const char *[]){"PUBLISH", channel, text});
}

/* A connection subscribed to channel, its confirmation read. */
static redisContext *redis_subscribe(int port, const char *channel)
{
    redisContext *c = redis_connect(port);
    redisReply *reply = redisCommand(c, "SUBSCRIBE %s", channel);

    assert_non_null(reply);
    freeReplyObject(reply);
    return c;
}

/* The payload of the next message on a subscribed connection (5 s at most), into out. */
static void redis_next_message(redisContext *c, char *out, size_t len)
{
    redisReply *reply = NULL;
    struct timeval tv = {.tv_sec = 5};

    redisSetTimeout(c, tv);
    if (redisGetReply(c, (void **)&reply) != REDIS_OK || reply == NULL)
        fail_msg("no message: %s", c->errstr);
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->elements, 3);
    snprintf(out, len, "%s", reply->element[2]->str);
    freeReplyObject(reply);
}

/* ---- a relay that can cut one link off while Redis stays up ---- */

#define RELAY_PAIRS 8

typedef struct relay {
    int redis_port;
    int port;
    int listen_fd;
    pthread_t thread;
    atomic_bool stopping;
    atomic_bool cut;
    int fds[RELAY_PAIRS][2]; /* the client's side and Redis's; -1 when free */
} relay_t;

static void relay_close(relay_t *y, int i)
{
    if (y->fds[i][0] >= 0) {
        close(y->fds[i][0]);
        close(y->fds[i][1]);
    }
    y->fds[i][0] = y->fds[i][1] = -1;
}

static void relay_accept(relay_t *y)
{
    int fd = accept(y->listen_fd, NULL, NULL);

    if (fd < 0)
        return;
    int up = atomic_load(&y->cut) ? -1 : harness_raw_try_connect(y->redis_port);
    for (int i = 0; up >= 0 && i < RELAY_PAIRS; i++) {
        if (y->fds[i][0] < 0) {
            y->fds[i][0] = fd;
            y->fds[i][1] = up;
            return;
        }
    }
    close(fd);
    if (up >= 0)
        close(up);
}

/* Moves what one side of pair i sent to the other; closes the pair at its end. */
static void relay_pass(relay_t *y, int i, int from)
{
    char buf[65536];
    ssize_t n = read(y->fds[i][from], buf, sizeof(buf));

    for (ssize_t off = 0; n > 0 && off < n;) {
        ssize_t w = write(y->fds[i][1 - from], buf + off, (size_t)(n - off));
        if (w <= 0) {
            n = -1;
            break;
        }
        off += w;
    }
    if (n <= 0)
        relay_close(y, i);
}

static void *relay_main(void *arg)
{
    relay_t *y = arg;

    while (!atomic_load(&y->stopping)) {
        struct pollfd fds[1 + 2 * RELAY_PAIRS] = {{.fd = y->listen_fd, .events = POLLIN}};
        for (int i = 0; i < RELAY_PAIRS; i++) {
            if (atomic_load(&y->cut))
                relay_close(y, i);
            fds[1 + 2 * i] = (struct pollfd){.fd = y->fds[i][0], .events = POLLIN};
            fds[2 + 2 * i] = (struct pollfd){.fd = y->fds[i][1], .events = POLLIN};
        }
        if (poll(fds, 1 + 2 * RELAY_PAIRS, 5) <= 0)
            continue;
        if (fds[0].revents != 0)
            relay_accept(y);
        for (int i = 0; i < RELAY_PAIRS; i++)
            for (int side = 0; side < 2; side++)
                if (fds[1 + 2 * i + side].revents != 0 && y->fds[i][0] >= 0)
                    relay_pass(y, i, side);
    }
    for (int i = 0; i < RELAY_PAIRS; i++)
        relay_close(y, i);
    return NULL;
}

static void relay_start(relay_t *y, int redis_port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);

    memset(y, 0, sizeof(*y));
    y->redis_port = redis_port;
    for (int i = 0; i < RELAY_PAIRS; i++)
        y->fds[i][0] = y->fds[i][1] = -1;
    y->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(y->listen_fd >= 0);
    assert_int_equal(bind(y->listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(y->listen_fd, 8), 0);
    assert_int_equal(getsockname(y->listen_fd, (struct sockaddr *)&addr, &len), 0);
    y->port = ntohs(addr.sin_port);
    assert_int_equal(pthread_create(&y->thread, NULL, relay_main, y), 0);
}

static void relay_stop(relay_t *y)
{
    atomic_store(&y->stopping, true);
    pthread_join(y->thread, NULL);
    close(y->listen_fd);
}

/* ---- the tests ---- */

static harness_redis_t redis;

static int start_redis(void **state)
{
    harness_start_redis(&redis);
    return 0;
}

static int stop_redis(void **state)
{
    harness_stop_redis(&redis);
    return 0;
}

static void a_link_becomes_fresh_shortly_after_its_start(void **state)
{
    node_t *a = calloc(1, sizeof(*a));
    long long start = harness_now_ms();

    start_node(a, redis.port, "fresh");
    assert_true(wait_for(is_fresh, a, DEADLINE_MS));
    assert_true(harness_now_ms() - start < 1000);
    cacheredis_status_t s = status_of(a);
    assert_true(s.connected);
    assert_true(s.fresh);
    assert_int_equal(strlen(s.instance), 16);
    assert_int_equal(strspn(s.instance, "0123456789abcdef"), 16);
    /* The subscription reported "anything may have changed" before the link got fresh. */
    event_t e = event_at(a, 0);
    assert_true(e.any);
    assert_int_equal(events_of(a), 1);
    stop_node(a);
    free(a);
}

static void a_publish_reaches_the_other_link_before_it_completes(void **state)
{
    node_t *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    const char *rels[] = {"orders", "lines"};
    completion_t done;
    char value[32];

    start_node(a, redis.port, "reach");
    start_node(b, redis.port, "reach");
    assert_true(wait_for(has_one_peer, a, DEADLINE_MS));
    assert_true(wait_for(has_one_peer, b, DEADLINE_MS));
    settle(a);
    /* A slow callback: an acknowledgement sent before it returned would let a complete first. */
    pthread_mutex_lock(&lock);
    b->delay_ms = 50;
    pthread_mutex_unlock(&lock);
    int before = events_of(b);
    long long took = publish_wait(a, TARGET, rels, 2, &done);

    event_t e = event_at(b, before);
    assert_false(e.any);
    assert_string_equal(e.target, TARGET);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.relnames[0], "orders");
    assert_string_equal(e.relnames[1], "lines");
    assert_true(e.order < done.order);
    /* Completed by the acknowledgement, not the lease; a's own message was not applied. */
    assert_true(took >= 50);
    assert_true(took < LEASE_MS);
    assert_int_equal(status_of(a).publish_timeouts, 0);
    assert_int_equal(status_of(a).published, 1);
    assert_int_equal(status_of(b).received, 1);
    assert_int_equal(anys_of(a), events_of(a));
    assert_true(redis_hget(redis.port, "reach:g:" TARGET, "orders", value, sizeof(value)));
    assert_string_equal(value, "1");
    assert_true(redis_hget(redis.port, "reach:g:" TARGET, "lines", value, sizeof(value)));
    assert_string_equal(value, "1");
    stop_node(a);
    stop_node(b);
    free(a);
    free(b);
}

static void a_publish_with_no_other_link_completes_promptly(void **state)
{
    node_t *a = calloc(1, sizeof(*a));
    const char *rels[] = {"t"};
    completion_t done;

    start_node(a, redis.port, "alone");
    settle(a);
    assert_true(publish_wait(a, TARGET, rels, 1, &done) < LEASE_MS / 3);
    assert_int_equal(status_of(a).publish_timeouts, 0);
    assert_int_equal(status_of(a).publish_unsent, 0);
    stop_node(a);
    free(a);
}

static void a_subscriber_that_never_acknowledges_holds_a_publish_for_the_lease(void **state)
{
    node_t *a = calloc(1, sizeof(*a));
    const char *rels[] = {"t", ""};
    completion_t done;
    char message[256], expected[256];

    start_node(a, redis.port, "mute");
    settle(a);
    redisContext *sub = redis_subscribe(redis.port, "mute:inv");
    long long took = publish_wait(a, TARGET, rels, 2, &done);
    assert_true(took >= LEASE_MS);
    assert_true(took < WAIT_MS + 200);
    assert_int_equal(status_of(a).publish_timeouts, 1);

    /* What went out, after the pings before it. */
    snprintf(expected, sizeof(expected), "inv %s ", status_of(a).instance);
    do
        redis_next_message(sub, message, sizeof(message));
    while (strncmp(message, "ping ", 5) == 0);
    assert_memory_equal(message, expected, strlen(expected));
    const char *rest =
        message + strlen(expected) + strspn(message + strlen(expected), "0123456789");
    assert_string_equal(rest, " " TARGET "\nt\n");
    redisFree(sub);
    stop_node(a);
    free(a);
}

static void a_peer_that_pings_holds_a_publish_until_it_acknowledges(void **state)
{
    node_t *a = calloc(1, sizeof(*a));
    const char *rels[] = {"t"};
    completion_t done;
    char ping[64], message[256], channel[64], ack[64];

    start_node(a, redis.port, "peer");
    settle(a);
    snprintf(ping, sizeof(ping), "ping " FAKE_PEER " %lld", (long long)loop_clock_ms());
    redis_publish(redis.port, "peer:inv", ping);
    assert_true(wait_for(has_one_peer, a, DEADLINE_MS));

    /* Heard, not subscribed: only the lease since it was heard ends the wait. */
    long long took = publish_wait(a, TARGET, rels, 1, &done);
    assert_true(took >= LEASE_MS - 50);

    /* Heard and acknowledging (the test's subscriber counts as the one other subscriber). */
    redisContext *sub = redis_subscribe(redis.port, "peer:inv");
    redis_publish(redis.port, "peer:inv", ping);
    assert_true(wait_for(has_one_peer, a, DEADLINE_MS));
    long long start = harness_now_ms();
    publish(a, TARGET, rels, 1, &done);
    do
        redis_next_message(sub, message, sizeof(message));
    while (strncmp(message, "inv ", 4) != 0);
    unsigned long long seq = strtoull(message + 4 + 17, NULL, 10);
    snprintf(channel, sizeof(channel), "peer:ack:%s", status_of(a).instance);
    snprintf(ack, sizeof(ack), "%llu " FAKE_PEER, seq);
    redis_publish(redis.port, channel, ack);
    assert_true(wait_for(is_done, &done, DEADLINE_MS));
    assert_true(done.at_ms - start < LEASE_MS);
    assert_int_equal(status_of(a).publish_timeouts, 0);
    redisFree(sub);
    stop_node(a);
    free(a);
}

static void the_l2_holds_an_entry_while_its_generations_hold(void **state)
{
    node_t *a = calloc(1, sizeof(*a));
    const char *rels[] = {"", "t1"};
    const char *other_rels[] = {"", "t2"};
    const char *swapped[] = {"t1", ""};
    const char *bump[] = {"t1"};
    const uint64_t hash = 0x1234abcd5678ef00u;
    completion_t done;

    start_node(a, redis.port, "l2");
    settle(a);
    /* No epoch yet: DOWN, and one is set. */
    assert_int_equal(get_key(a, hash, "select 1", TARGET, rels, 2).result, CACHEREDIS_DOWN);
    answer_t miss = get_key(a, hash, "select 1", TARGET, rels, 2);
    assert_int_equal(miss.result, CACHEREDIS_MISS);
    assert_true(miss.has_gens);
    assert_true(miss.gens.epoch != 0);
    assert_int_equal(miss.gens.n, 2);
    assert_string_equal(miss.gens.relnames[0], "");
    assert_string_equal(miss.gens.relnames[1], "t1");
    assert_int_equal(miss.gens.values[0], 0);
    assert_int_equal(miss.gens.values[1], 0);

    put_value(a, hash, "select 1", &miss.gens, "value one", 60000);
    answer_t hit = get_key(a, hash, "select 1", TARGET, rels, 2);
    assert_int_equal(hit.result, CACHEREDIS_HIT);
    assert_int_equal(hit.len, strlen("value one"));
    assert_string_equal(hit.value, "value one");
    assert_false(hit.has_gens);

    /* A write of t1 ends it; a put with the new generations makes it current again. */
    publish_wait(a, TARGET, bump, 1, &done);
    answer_t after = get_key(a, hash, "select 1", TARGET, rels, 2);
    assert_int_equal(after.result, CACHEREDIS_MISS);
    assert_int_equal(after.gens.epoch, miss.gens.epoch);
    assert_int_equal(after.gens.values[0], 0);
    assert_int_equal(after.gens.values[1], 1);
    put_value(a, hash, "select 1", &after.gens, "value two", 60000);
    hit = get_key(a, hash, "select 1", TARGET, rels, 2);
    assert_int_equal(hit.result, CACHEREDIS_HIT);
    assert_string_equal(hit.value, "value two");

    /* Other relnames, the same in another order, another key of the same hash: misses. */
    assert_int_equal(get_key(a, hash, "select 1", TARGET, other_rels, 2).result, CACHEREDIS_MISS);
    assert_int_equal(get_key(a, hash, "select 1", TARGET, swapped, 2).result, CACHEREDIS_MISS);
    assert_int_equal(get_key(a, hash, "select 2", TARGET, rels, 2).result, CACHEREDIS_MISS);

    /* An entry put with generations read before the write is never a hit. */
    put_value(a, hash, "select 1", &miss.gens, "stale", 60000);
    assert_int_equal(get_key(a, hash, "select 1", TARGET, rels, 2).result, CACHEREDIS_MISS);

    /* An entry expires. */
    put_value(a, hash, "select 1", &after.gens, "short", 50);
    harness_sleep_ms(120);
    assert_int_equal(get_key(a, hash, "select 1", TARGET, rels, 2).result, CACHEREDIS_MISS);

    cacheredis_status_t s = status_of(a);
    assert_int_equal(s.gets, 10);
    assert_int_equal(s.hits, 2);
    assert_int_equal(s.misses, 7);
    assert_int_equal(s.get_errors, 1);
    assert_int_equal(s.puts, 4);
    assert_int_equal(s.put_errors, 0);
    stop_node(a);
    free(a);
}

static void messages_that_do_not_parse_are_survived(void **state)
{
    node_t *a = calloc(1, sizeof(*a));
    char channel[64], message[64];

    start_node(a, redis.port, "junk");
    settle(a);
    snprintf(channel, sizeof(channel), "junk:ack:%s", status_of(a).instance);
    redisContext *acks = redis_subscribe(redis.port, "junk:ack:" FAKE_PEER);
    int anys = anys_of(a);

    redis_publish(redis.port, "junk:inv", "garbage");
    redis_publish(redis.port, "junk:inv", "ping zz 1");
    redis_publish(redis.port, "junk:inv", "ping " FAKE_PEER " -1");
    redis_publish(redis.port, channel, "x " FAKE_PEER);
    redis_publish(redis.port, channel, "");
    /* Invalidations that do not parse are taken as a change of anything. */
    redis_publish(redis.port, "junk:inv", "inv " FAKE_PEER " 5 " TARGET);
    redis_publish(redis.port, "junk:inv", "all nothex");
    /* A well-formed one after them is applied and acknowledged. */
    redis_publish(redis.port, "junk:inv", "inv " FAKE_PEER " 7 " TARGET "\nt9");
    redis_next_message(acks, message, sizeof(message));
    snprintf(channel, sizeof(channel), "7 %s", status_of(a).instance);
    assert_string_equal(message, channel);

    event_t e = event_at(a, events_of(a) - 1);
    assert_false(e.any);
    assert_string_equal(e.target, TARGET);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.relnames[0], "t9");
    assert_int_equal(anys_of(a), anys + 2);
    assert_true(status_of(a).connected);
    assert_int_equal(status_of(a).received, 1);
    redisFree(acks);
    stop_node(a);
    free(a);
}

static bool is_disconnected(void *arg)
{
    return !status_of(arg).connected;
}

static bool has_put_error(void *arg)
{
    return status_of(arg).put_errors == 1;
}

static void redis_killed_and_restarted(void **state)
{
    node_t *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    const char *rels[] = {"t1"};
    const char *all[] = {""};
    completion_t done;
    char value[32];

    start_node(a, redis.port, "kill");
    start_node(b, redis.port, "kill");
    assert_true(wait_for(has_one_peer, a, DEADLINE_MS));
    settle(a);

    long long killed = harness_now_ms();
    harness_kill_redis(&redis);
    /* At once, not when the last ping's lease runs out. */
    assert_true(wait_for(is_stale, a, LEASE_MS / 3));
    assert_true(wait_for(is_stale, b, LEASE_MS / 3));
    assert_true(wait_for(is_disconnected, a, DEADLINE_MS));
    assert_int_equal(status_of(a).disconnects, 1);

    /* Unsent: complete one lease (and the margin) after the loss. */
    publish(a, TARGET, rels, 1, &done);
    assert_true(wait_for(is_done, &done, DEADLINE_MS));
    assert_true(done.at_ms - killed >= LEASE_MS);
    assert_true(done.at_ms - killed < WAIT_MS + 200);
    assert_int_equal(status_of(a).publish_unsent, 1);
    assert_int_equal(status_of(a).published, 0);
    long long asked = harness_now_ms();
    assert_int_equal(get_key(a, 1, "k", TARGET, all, 1).result, CACHEREDIS_DOWN);
    assert_true(harness_now_ms() - asked < 100);
    cacheredis_gens_t gens = {.epoch = 1};
    put_value(a, 1, "k", &gens, "v", 1000);
    assert_true(wait_for(has_put_error, a, DEADLINE_MS));

    int anys_a = anys_of(a), anys_b = anys_of(b), events_b = events_of(b);
    harness_restart_redis(&redis);
    assert_true(wait_for(is_fresh, a, DEADLINE_MS));
    assert_true(wait_for(is_fresh, b, DEADLINE_MS));
    assert_int_equal(anys_of(a), anys_a + 1);
    assert_int_equal(anys_of(b), anys_b + 1);

    /* The remembered target was reset in Redis (empty after the restart) and, once b was back
     * in time to hear it, at b; either way b dropped everything at its resubscription. */
    long long deadline = harness_now_ms() + DEADLINE_MS;
    while (!redis_hget(redis.port, "kill:g:" TARGET, "", value, sizeof(value)) &&
           harness_now_ms() < deadline)
        harness_sleep_ms(5);
    assert_string_equal(value, "1");
    assert_false(redis_hget(redis.port, "kill:g:" TARGET, "t1", value, sizeof(value)));

    /* Acknowledged publishes again. */
    assert_true(wait_for(has_one_peer, a, DEADLINE_MS));
    settle(a);
    events_b = events_of(b);
    publish_wait(a, TARGET, rels, 1, &done);
    event_t e = event_at(b, events_b);
    while (e.any || strcmp(e.relnames[0], "t1") != 0)
        e = event_at(b, ++events_b);
    assert_string_equal(e.target, TARGET);
    assert_true(e.order < done.order);
    assert_int_equal(status_of(a).publish_timeouts, 0);
    assert_int_equal(status_of(a).published, 1);
    stop_node(a);
    stop_node(b);
    free(a);
    free(b);
}

static void a_link_cut_off_resets_its_target_when_back(void **state)
{
    node_t *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    relay_t *relay = calloc(1, sizeof(*relay));
    const char *rels[] = {"t1"};
    completion_t done;
    char value[32];

    relay_start(relay, redis.port);
    redis_run(redis.port, 4, (const char *[]){"HSET", "cut:g:" TARGET, "", "5"});
    start_node(a, relay->port, "cut");
    start_node(b, redis.port, "cut");
    assert_true(wait_for(has_one_peer, b, DEADLINE_MS));
    settle(a);

    atomic_store(&relay->cut, true);
    assert_true(wait_for(is_disconnected, a, DEADLINE_MS));
    assert_false(is_fresh(a));
    publish(a, TARGET, rels, 1, &done);
    assert_true(wait_for(is_done, &done, DEADLINE_MS));
    assert_int_equal(status_of(a).publish_unsent, 1);
    /* b heard nothing of it, and stays fresh. */
    assert_true(is_fresh(b));
    int events_b = events_of(b);

    atomic_store(&relay->cut, false);
    event_t e = event_at(b, events_b);
    assert_false(e.any);
    assert_string_equal(e.target, TARGET);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.relnames[0], "");
    assert_true(redis_hget(redis.port, "cut:g:" TARGET, "", value, sizeof(value)));
    assert_string_equal(value, "6");
    assert_true(wait_for(is_fresh, a, DEADLINE_MS));
    stop_node(a);
    stop_node(b);
    relay_stop(relay);
    free(relay);
    free(a);
    free(b);
}

static bool has_65_unsent(void *arg)
{
    return status_of(arg).publish_unsent == 65;
}

static void past_64_targets_cut_off_every_hash_goes(void **state)
{
    node_t *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    relay_t *relay = calloc(1, sizeof(*relay));
    const char *rels[] = {"t1"};
    completion_t done[65];
    char target[64], value[32];

    relay_start(relay, redis.port);
    redis_run(redis.port, 4, (const char *[]){"HSET", "many:g:h:1/other", "!epoch", "7"});
    start_node(a, relay->port, "many");
    start_node(b, redis.port, "many");
    assert_true(wait_for(has_one_peer, b, DEADLINE_MS));
    settle(a);

    atomic_store(&relay->cut, true);
    assert_true(wait_for(is_disconnected, a, DEADLINE_MS));
    for (int i = 0; i < 65; i++) {
        snprintf(target, sizeof(target), "h:1/db%d", i);
        publish(a, target, rels, 1, &done[i]);
    }
    assert_true(wait_for(has_65_unsent, a, DEADLINE_MS));
    int anys_b = anys_of(b);
    uint64_t received_b = status_of(b).received;

    atomic_store(&relay->cut, false);
    assert_true(wait_for(is_fresh, a, DEADLINE_MS));
    long long deadline = harness_now_ms() + DEADLINE_MS;
    while (anys_of(b) == anys_b && harness_now_ms() < deadline)
        harness_sleep_ms(5);
    assert_int_equal(anys_of(b), anys_b + 1);
    assert_int_equal(status_of(b).received, received_b + 1);
    assert_false(redis_hget(redis.port, "many:g:h:1/other", "!epoch", value, sizeof(value)));
    for (int i = 0; i < 65; i++)
        assert_true(is_done(&done[i]));
    stop_node(a);
    stop_node(b);
    relay_stop(relay);
    free(relay);
    free(a);
    free(b);
}

static void a_stop_completes_what_is_pending(void **state)
{
    node_t *a = calloc(1, sizeof(*a));
    const char *rels[] = {"t1"};
    completion_t done;

    start_node(a, redis.port, "stop");
    settle(a);
    /* A publish waiting for an acknowledgement that will not come. */
    redisContext *sub = redis_subscribe(redis.port, "stop:inv");
    publish(a, TARGET, rels, 1, &done);
    harness_sleep_ms(20);
    assert_false(is_done(&done));
    long long start = harness_now_ms();
    stop_node(a);
    assert_true(is_done(&done));
    assert_true(harness_now_ms() - start < LEASE_MS);
    redisFree(sub);
    free(a);
}

/* The test's own connection to a Redis with a password. */
static redisContext *redis_connect_auth(int port)
{
    redisContext *c = redis_connect(port);
    redisReply *reply = redisCommand(c, "AUTH secret");

    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_STATUS);
    freeReplyObject(reply);
    return c;
}

static bool has_wrongpass(void *arg)
{
    return strstr(status_of(arg).last_error, "WRONGPASS") != NULL;
}

static void auth_and_select_are_used_on_both_connections(void **state)
{
    node_t *a = calloc(1, sizeof(*a)), *bad = calloc(1, sizeof(*bad));
    const char *rels[] = {"t1"};
    completion_t done;

    redis_run(redis.port, 4, (const char *[]){"CONFIG", "SET", "requirepass", "secret"});
    start_node_as(a, redis.port, "auth", "secret", 3);
    settle(a);
    assert_true(publish_wait(a, TARGET, rels, 1, &done) < LEASE_MS / 3);
    assert_int_equal(status_of(a).publish_timeouts, 0);

    /* The generation went to database 3, not 0. */
    redisContext *c = redis_connect_auth(redis.port);
    redisReply *reply = redisCommand(c, "HGET auth:g:%s t1", TARGET);
    assert_int_equal(reply->type, REDIS_REPLY_NIL);
    freeReplyObject(reply);
    reply = redisCommand(c, "SELECT 3");
    freeReplyObject(reply);
    reply = redisCommand(c, "HGET auth:g:%s t1", TARGET);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    assert_string_equal(reply->str, "1");
    freeReplyObject(reply);

    /* A wrong password: never connected, and the status says why. */
    start_node_as(bad, redis.port, "auth", "wrong", 3);
    assert_true(wait_for(has_wrongpass, bad, DEADLINE_MS));
    assert_false(status_of(bad).connected);
    assert_false(is_fresh(bad));
    stop_node(bad);
    stop_node(a);

    reply = redisCommand(c, "CONFIG SET requirepass %s", "");
    assert_int_equal(reply->type, REDIS_REPLY_STATUS);
    freeReplyObject(reply);
    redisFree(c);
    free(a);
    free(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_link_becomes_fresh_shortly_after_its_start),
        cmocka_unit_test(a_publish_reaches_the_other_link_before_it_completes),
        cmocka_unit_test(a_publish_with_no_other_link_completes_promptly),
        cmocka_unit_test(a_subscriber_that_never_acknowledges_holds_a_publish_for_the_lease),
        cmocka_unit_test(a_peer_that_pings_holds_a_publish_until_it_acknowledges),
        cmocka_unit_test(the_l2_holds_an_entry_while_its_generations_hold),
        cmocka_unit_test(messages_that_do_not_parse_are_survived),
        cmocka_unit_test(a_link_cut_off_resets_its_target_when_back),
        cmocka_unit_test(past_64_targets_cut_off_every_hash_goes),
        cmocka_unit_test(a_stop_completes_what_is_pending),
        cmocka_unit_test(redis_killed_and_restarted),
        cmocka_unit_test(auth_and_select_are_used_on_both_connections),
    };
    return cmocka_run_group_tests(tests, start_redis, stop_redis);
}
