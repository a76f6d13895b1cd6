/*
 * test_cache_consistency.c
 *    The consistency checker of issue 7: no read answered by pgturbo, from its cache or not, is
 *    older than a write that was committed before the read started.
 *
 *    Writers increment counters (a table of COUNTERS rows) through pgturbo and, once a commit
 *    has returned, raise committed[id] to the value their UPDATE ... RETURNING gave. Readers
 *    take floor = committed[id] before each read, read the row through pgturbo, and count the
 *    read stale when the value is below floor. Reads alternate between the two instances and
 *    between the simple and the extended protocol, so that both of the cache's paths are
 *    checked. Writers are paced by the readers (one write per READS_PER_WRITE reads), so that
 *    the cache answers most reads between two writes: a run in which it answered few would
 *    prove nothing, and is failed.
 *
 *    The same checker runs in four configurations, and once more as 2 with Redis killed and
 *    started again a quarter into the run:
 *     1. one instance, no Redis;
 *     2. two instances sharing a Redis (cache_redis_host), which invalidate each other's
 *        answers and each wait for the other's acknowledgement before a commit reaches its
 *        client;
 *     3. as 2, with cache_invalidation = logical: both instances' logical consumers
 *        (application_name pgturbo_cache_<database>) are made the cluster's synchronous
 *        standbys for the test (synchronous_standby_names = 'ANY 2 (pgturbo_cache_...)', reset
 *        after it; as the cluster runs with synchronous_commit = off, only sessions that turn
 *        it on wait; test_cache.c does the same, so ctest runs the two apart);
 *     4. as 3, with one more writer straight to PostgreSQL with synchronous_commit = on, whose
 *        commits the consumers report before they become visible and mark pending until they
 *        are (see cachelogical.h).
 *    With PGTURBO_TEST_SKIP_REDIS set in the environment, 2 to 4 are skipped.
 */
#include "harness.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define DB           "cache_consistency_test"
#define TOKEN        "it-cache-consistency-token"
#define REDIS_PREFIX "pgturbo_it"

#define COUNTERS        8
#define READERS         4
#define WRITERS         3 /* through pgturbo; configuration 4 adds one straight to PostgreSQL */
#define READS_WANTED    200000 /* per configuration */
#define READS_PER_WRITE 150
#define RUN_LIMIT_MS    60000 /* a run that has not read READS_WANTED by then fails */
#define OUTAGE_MS       1500  /* how long Redis stays down in test_redis_killed_and_restarted */
#define MAX_REPORTED    5     /* stale reads described in full */

#define READ_SIMPLE   "SELECT v FROM counters WHERE id = %d"
#define READ_EXTENDED "SELECT v FROM counters WHERE id = $1"
#define INCREMENT     "UPDATE counters SET v = v + 1 WHERE id = $1 RETURNING v"

/* A pgturbo instance and its admin port. */
typedef struct instance {
    pgturbo_proc_t proc;
    int admin;
} instance_t;

/* What the threads of one run share. */
typedef struct run {
    _Atomic long long committed[COUNTERS]; /* highest value whose commit has returned */
    _Atomic long long reads, stale, writes, direct_writes, write_tickets, errors;
    _Atomic bool stop;
    int port[2];             /* of the instances the readers alternate between */
    harness_redis_t *outage; /* killed a quarter into the run, started again OUTAGE_MS later */
    pthread_mutex_t lock;    /* over the texts below */
    char stale_reads[MAX_REPORTED][160];
    char first_error[320];
} run_t;

/* One thread: its run, its two connections (to A and B, or both to one server) and its own
 * random numbers. */
typedef struct worker {
    run_t *run;
    PGconn *conn[2];
    unsigned seed;
    bool direct;        /* a writer straight to PostgreSQL */
    bool sync_canceled; /* PostgreSQL stopped waiting for the synchronous standby */
    pthread_t thread;
} worker_t;

static PGconn *direct;

/* Notes an error (the first is kept) and stops the run: cmocka cannot fail from a thread. */
static void run_error(run_t *run, const char *what, const char *message)
{
    pthread_mutex_lock(&run->lock);
    if (atomic_fetch_add(&run->errors, 1) == 0)
        snprintf(run->first_error, sizeof(run->first_error), "%s: %s", what, message);
    pthread_mutex_unlock(&run->lock);
    atomic_store(&run->stop, true);
}

/* Raises *x to v unless it is higher already. */
static void raise_to(_Atomic long long *x, long long v)
{
    long long seen = atomic_load(x);
    while (seen < v && !atomic_compare_exchange_weak(x, &seen, v))
        ;
}

/* ---- readers ---- */

/* Reads counter id through conn, in the simple or the extended protocol; -1 on an error. */
static long long read_counter(run_t *run, PGconn *conn, int id, bool extended)
{
    PGresult *r;
    char sql[64], param[16];
    if (extended) {
        snprintf(param, sizeof(param), "%d", id);
        const char *values[] = {param};
        r = PQexecParams(conn, READ_EXTENDED, 1, NULL, values, NULL, NULL, 0);
    } else {
        snprintf(sql, sizeof(sql), READ_SIMPLE, id);
        r = PQexec(conn, sql);
    }
    long long v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else
        run_error(run, extended ? "extended read" : "simple read", PQresultErrorMessage(r));
    PQclear(r);
    return v;
}

static void note_stale(run_t *run, int id, long long floor, long long v, int via, bool extended)
{
    long long n = atomic_fetch_add(&run->stale, 1);
    if (n >= MAX_REPORTED)
        return;
    pthread_mutex_lock(&run->lock);
    snprintf(run->stale_reads[n], sizeof(run->stale_reads[n]),
             "counter %d read %lld through pgturbo on port %d (%s protocol), %lld committed "
             "before",
             id, v, run->port[via], extended ? "extended" : "simple", floor);
    pthread_mutex_unlock(&run->lock);
}

static void *reader_main(void *arg)
{
    worker_t *w = arg;
    run_t *run = w->run;
    for (unsigned i = 0; !atomic_load(&run->stop); i++) {
        int id = (int)(rand_r(&w->seed) % COUNTERS) + 1;
        int via = (int)(i % 2);
        bool extended = (i / 2) % 2 == 1;
        long long floor = atomic_load(&run->committed[id - 1]);
        long long v = read_counter(run, w->conn[via], id, extended);
        if (v < 0)
            break;
        if (v < floor)
            note_stale(run, id, floor, v, via, extended);
        if (atomic_fetch_add(&run->reads, 1) + 1 >= READS_WANTED)
            atomic_store(&run->stop, true);
    }
    return NULL;
}

/* ---- writers ---- */

/* Waits until the readers have done READS_PER_WRITE reads for each write before this one;
 * false when the run stopped meanwhile. */
static bool wait_turn(run_t *run)
{
    long long ticket = atomic_fetch_add(&run->write_tickets, 1);
    const struct timespec pause = {0, 200000};
    while (atomic_load(&run->reads) < ticket * READS_PER_WRITE) {
        if (atomic_load(&run->stop))
            return false;
        nanosleep(&pause, NULL);
    }
    return !atomic_load(&run->stop);
}

/* PostgreSQL warns when it stops waiting for a synchronous standby (statement_timeout): the
 * commit then happened without pgturbo having seen it, and its value must not count. */
static void notice_receiver(void *arg, const PGresult *r)
{
    worker_t *w = arg;
    const char *message = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (message != NULL && strstr(message, "synchronous replication") != NULL)
        w->sync_canceled = true;
}

/* Runs sql (no result rows) on conn; false after noting an error. */
static bool exec_command(worker_t *w, PGconn *conn, const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        run_error(w->run, sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* Increments counter id on conn; its new value, or -1 after noting an error. */
static long long increment(worker_t *w, PGconn *conn, int id)
{
    char param[16];
    snprintf(param, sizeof(param), "%d", id);
    const char *values[] = {param};
    PGresult *r = PQexecParams(conn, INCREMENT, 1, NULL, values, NULL, NULL, 0);
    long long v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    else
        run_error(w->run, INCREMENT, PQresultErrorMessage(r));
    PQclear(r);
    return v;
}

/* The commit that just returned: its values count unless PostgreSQL stopped waiting for the
 * synchronous standby. */
static bool commit_counts(worker_t *w)
{
    if (!w->sync_canceled)
        return true;
    run_error(w->run, "a direct commit",
              "PostgreSQL stopped waiting for the synchronous standby pgturbo_cache "
              "(statement_timeout): pgturbo's logical consumer did not confirm the commit");
    return false;
}

/* One autocommit increment of a random counter. */
static bool write_one(worker_t *w, PGconn *conn)
{
    int id = (int)(rand_r(&w->seed) % COUNTERS) + 1;
    long long v = increment(w, conn, id);
    if (v < 0 || !commit_counts(w))
        return false;
    raise_to(&w->run->committed[id - 1], v);
    return true;
}

/* Two counters in one transaction, the lower id first (so that two of them never deadlock). */
static bool write_two(worker_t *w, PGconn *conn)
{
    int a = (int)(rand_r(&w->seed) % COUNTERS) + 1;
    int b = a % COUNTERS + 1;
    int first = a < b ? a : b, second = a < b ? b : a;
    if (!exec_command(w, conn, "BEGIN"))
        return false;
    long long v1 = increment(w, conn, first);
    long long v2 = v1 < 0 ? -1 : increment(w, conn, second);
    if (v2 < 0 || !exec_command(w, conn, "COMMIT") || !commit_counts(w))
        return false;
    raise_to(&w->run->committed[first - 1], v1);
    raise_to(&w->run->committed[second - 1], v2);
    return true;
}

/* Writes in turn: through A and B alternately, one write in four a transaction of two. */
static void *writer_main(void *arg)
{
    worker_t *w = arg;
    run_t *run = w->run;
    for (unsigned n = 0; wait_turn(run); n++) {
        PGconn *conn = w->conn[n % 2];
        if (!(n % 4 == 3 ? write_two(w, conn) : write_one(w, conn)))
            break;
        atomic_fetch_add(w->direct ? &run->direct_writes : &run->writes, 1);
    }
    return NULL;
}

/* ---- instances ---- */

/* Starts an instance with the rule on counters and the [cache] lines in cache_lines. */
static void instance_start(instance_t *in, const char *cache_lines)
{
    char extra[1024], entry[160];
    in->admin = harness_free_port();
    snprintf(extra, sizeof(extra),
             "admin_listen = 127.0.0.1:%d\nadmin_token = %s\npool_mode = transaction\n"
             "[cache]\ncounters = 60\n%s\n",
             in->admin, TOKEN, cache_lines);
    /* Logical consumers follow the databases [databases] names, not those of "*": the test's
     * database alone, so that each instance has one consumer. */
    snprintf(entry, sizeof(entry), DB " = host=127.0.0.1 port=%d dbname=" DB "\n",
             harness_pg_port());
    harness_start_pgturbo_databases(&in->proc, extra, entry);
    PGconn *c = harness_connect(in->proc.port, DB, NULL);
    harness_cache_wait_catalog(c, in->admin, TOKEN, DB);
    PQfinish(c);
}

static void instance_stop(instance_t *in)
{
    assert_int_equal(harness_stop_pgturbo(&in->proc, 10), 0);
}

static long long instance_hits(const instance_t *in)
{
    json_t *api = harness_cache_get(in->admin, TOKEN);
    long long hits = harness_cache_total(api, "hits");
    json_decref(api);
    return hits;
}

/* Reads through in until the cache answers (the catalog is in and, with logical
 * invalidation, the stream is up: until then nothing is answered from memory); fails after
 * 10 s. */
static void instance_wait_answers(const instance_t *in)
{
    PGconn *c = harness_connect(in->proc.port, DB, NULL);
    long long before = instance_hits(in), deadline = harness_now_ms() + 10000;
    while (instance_hits(in) == before) {
        if (harness_now_ms() > deadline)
            fail_msg("pgturbo on port %d answered no read from its cache within 10 s",
                     in->proc.port);
        harness_exec_ok(c, "SELECT v FROM counters WHERE id = 1");
        harness_sleep_ms(20);
    }
    PQfinish(c);
}

/* How many clients of the Redis at port are subscribed to channel (-1 when redis-cli fails). */
static int redis_subscribers(int port, const char *channel)
{
    char cmd[256], out[256];
    snprintf(cmd, sizeof(cmd), "redis-cli -p %d PUBSUB NUMSUB %s", port, channel);
    if (harness_shell(cmd, out, sizeof(out)) != 0)
        return -1;
    const char *count = strchr(out, '\n'); /* the channel's name, then its count */
    return count != NULL ? atoi(count + 1) : -1;
}

/* Both instances are subscribed to the invalidations' channel (cacheredis.h: <prefix>:inv):
 * without it the run would test two caches that know nothing of each other. */
static void wait_both_on_redis(const harness_redis_t *redis)
{
    long long deadline = harness_now_ms() + 10000;
    int n;
    while ((n = redis_subscribers(redis->port, REDIS_PREFIX ":inv")) != 2) {
        if (harness_now_ms() > deadline)
            fail_msg("%d pgturbo instances, not 2, subscribed to %s:inv on Redis within 10 s", n,
                     REDIS_PREFIX);
        harness_sleep_ms(50);
    }
}

/* ---- the checker ---- */

static void connect_pair(worker_t *w, const instance_t *a, const instance_t *b)
{
    w->conn[0] = harness_connect(a->proc.port, DB, NULL);
    w->conn[1] = harness_connect(b->proc.port, DB, NULL);
}

/* A writer straight to PostgreSQL whose commits wait for the synchronous standby, at most 5 s
 * each (statement_timeout). */
static void connect_direct_writer(worker_t *w)
{
    w->direct = true;
    w->conn[0] = w->conn[1] = harness_connect_direct(DB);
    PQsetNoticeReceiver(w->conn[0], notice_receiver, w);
    harness_exec_ok(w->conn[0], "SET synchronous_commit = on");
    harness_exec_ok(w->conn[0], "SET statement_timeout = '5s'");
}

static void disconnect(worker_t *w)
{
    PQfinish(w->conn[0]);
    if (w->conn[1] != w->conn[0])
        PQfinish(w->conn[1]);
}

static void print_run(const char *name, const run_t *run, long long hits, long long ms)
{
    long long reads = atomic_load(&run->reads);
    printf("%s: %lld reads in %lld ms, %lld stale; %lld writes through pgturbo, %lld direct; "
           "%lld hits (%.1f %% of the reads)\n",
           name, reads, ms, (long long)atomic_load(&run->stale),
           (long long)atomic_load(&run->writes), (long long)atomic_load(&run->direct_writes), hits,
           reads > 0 ? 100.0 * (double)hits / (double)reads : 0.0);
    for (long long i = 0; i < atomic_load(&run->stale) && i < MAX_REPORTED; i++)
        printf("  stale: %s\n", run->stale_reads[i]);
}

/* The floors to start from: the counters as they are (earlier runs left them there). */
static void start_floors(run_t *run)
{
    PGresult *r = PQexec(direct, "SELECT id, v FROM counters ORDER BY id");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), COUNTERS);
    for (int i = 0; i < COUNTERS; i++)
        atomic_store(&run->committed[i], strtoll(PQgetvalue(r, i, 1), NULL, 10));
    PQclear(r);
}

/* Connects READERS readers and WRITERS writers to a and b, and the direct writer when
 * with_direct_writer; returns how many workers there are. */
static int workers_connect(worker_t *workers, run_t *run, const instance_t *a, const instance_t *b,
                           bool with_direct_writer)
{
    int n = 0;
    for (; n < READERS + WRITERS; n++) {
        workers[n] = (worker_t){.run = run, .seed = (unsigned)n + 1};
        connect_pair(&workers[n], a, b);
    }
    if (with_direct_writer) {
        workers[n] = (worker_t){.run = run, .seed = (unsigned)n + 1};
        connect_direct_writer(&workers[n++]);
    }
    return n;
}

/* Runs the n workers (the first READERS read) until the readers have read READS_WANTED, an
 * error stopped them, or RUN_LIMIT_MS passed; returns the milliseconds it took. */
static long long workers_run(worker_t *workers, int n, run_t *run)
{
    long long started = harness_now_ms();
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&workers[i].thread, NULL,
                                        i < READERS ? reader_main : writer_main, &workers[i]),
                         0);
    long long killed_at = 0;
    while (!atomic_load(&run->stop) && harness_now_ms() - started < RUN_LIMIT_MS) {
        harness_sleep_ms(50);
        if (run->outage != NULL && killed_at == 0 && atomic_load(&run->reads) > READS_WANTED / 4) {
            harness_kill_redis(run->outage);
            killed_at = harness_now_ms();
        }
        if (killed_at > 0 && run->outage->pid == 0 && harness_now_ms() - killed_at > OUTAGE_MS)
            harness_restart_redis(run->outage);
    }
    if (killed_at > 0 && run->outage->pid == 0)
        harness_restart_redis(run->outage);
    atomic_store(&run->stop, true);
    for (int i = 0; i < n; i++)
        pthread_join(workers[i].thread, NULL);
    return harness_now_ms() - started;
}

/* The hits of a and b together (of a alone when b is a). */
static long long hits_of(const instance_t *a, const instance_t *b)
{
    return instance_hits(a) + (a == b ? 0 : instance_hits(b));
}

/* Runs the checker through a and b (the same instance twice for one), with one direct writer
 * more when with_direct_writer, and asserts: no error, READS_WANTED reads, no stale one,
 * writes in the pace asked for, and more than half of the reads answered from the cache. */
static void check(const char *name, const instance_t *a, const instance_t *b,
                  bool with_direct_writer, harness_redis_t *outage)
{
    static run_t run;
    worker_t workers[READERS + WRITERS + 1];
    memset(&run, 0, sizeof(run));
    run.outage = outage;
    pthread_mutex_init(&run.lock, NULL);
    start_floors(&run);
    run.port[0] = a->proc.port;
    run.port[1] = b->proc.port;
    int n = workers_connect(workers, &run, a, b, with_direct_writer);
    long long hits = hits_of(a, b);
    long long elapsed = workers_run(workers, n, &run);
    hits = hits_of(a, b) - hits;
    for (int i = 0; i < n; i++)
        disconnect(&workers[i]);
    pthread_mutex_destroy(&run.lock);
    print_run(name, &run, hits, elapsed);

    if (atomic_load(&run.errors) > 0)
        fail_msg("%lld errors; the first: %s", (long long)atomic_load(&run.errors),
                 run.first_error);
    if (atomic_load(&run.reads) < READS_WANTED)
        fail_msg("only %lld reads in %d s", (long long)atomic_load(&run.reads),
                 RUN_LIMIT_MS / 1000);
    assert_int_equal(atomic_load(&run.stale), 0);
    assert_true(atomic_load(&run.writes) >= READS_WANTED / READS_PER_WRITE / 2);
    assert_true(!with_direct_writer || atomic_load(&run.direct_writes) > 0);
    assert_true(hits * 2 > atomic_load(&run.reads));
}

/* ---- the configurations ---- */

static void skip_without_redis(void)
{
    if (getenv("PGTURBO_TEST_SKIP_REDIS") != NULL)
        skip();
}

/* The lines that make an instance share the Redis at port. */
static void redis_lines(char *out, size_t len, int port, const char *more)
{
    snprintf(out, len,
             "cache_redis_host = 127.0.0.1\ncache_redis_port = %d\ncache_redis_prefix = %s\n%s",
             port, REDIS_PREFIX, more);
}

static void test_one_instance(void **state)
{
    instance_t a;
    instance_start(&a, "");
    instance_wait_answers(&a);
    check("one instance", &a, &a, false, NULL);
    instance_stop(&a);
}

/* Two instances sharing a Redis of their own. */
typedef struct pair {
    harness_redis_t redis;
    instance_t a, b;
} pair_t;

/* Makes both instances' consumers the synchronous standbys that direct commits wait for, and
 * waits until PostgreSQL counts them so. */
static void require_synchronous_standbys(void)
{
    harness_exec_ok(direct,
                    "ALTER SYSTEM SET synchronous_standby_names = 'ANY 2 (pgturbo_cache_" DB ")'");
    harness_exec_ok(direct, "SELECT pg_reload_conf()");
    long long deadline = harness_now_ms() + 10000;
    for (;;) {
        char *n = harness_query_value(direct, "SELECT count(*) FROM pg_stat_replication "
                                              "WHERE application_name = 'pgturbo_cache_" DB "' "
                                              "AND sync_state = 'quorum'");
        bool both = n != NULL && strcmp(n, "2") == 0;
        free(n);
        if (both)
            return;
        if (harness_now_ms() > deadline)
            fail_msg("the two consumers pgturbo_cache did not become synchronous standbys "
                     "within 10 s");
        harness_sleep_ms(50);
    }
}

static int reset_synchronous_standbys(void **state)
{
    harness_exec_ok(direct, "ALTER SYSTEM RESET synchronous_standby_names");
    harness_exec_ok(direct, "SELECT pg_reload_conf()");
    return 0;
}

/* Starts a Redis and two instances on it with the [cache] lines more (logical invalidation
 * makes their consumers synchronous standbys), and waits until both answer from memory. */
static void pair_start(pair_t *p, const char *more)
{
    harness_start_redis(&p->redis);
    char lines[512];
    redis_lines(lines, sizeof(lines), p->redis.port, more);
    instance_start(&p->a, lines);
    instance_start(&p->b, lines);
    wait_both_on_redis(&p->redis);
    if (strstr(more, "logical") != NULL)
        require_synchronous_standbys();
    instance_wait_answers(&p->a);
    instance_wait_answers(&p->b);
}

static void pair_stop(pair_t *p)
{
    instance_stop(&p->a);
    instance_stop(&p->b);
    harness_stop_redis(&p->redis);
}

/* A figure of GET /api/v1/cache's "redis" object of in (false/true as 0/1). */
static long long redis_figure(const instance_t *in, const char *key)
{
    json_t *api = harness_cache_get(in->admin, TOKEN);
    json_t *v = json_object_get(json_object_get(api, "redis"), key);
    long long n = json_is_boolean(v) ? json_is_true(v) : (long long)json_integer_value(v);
    json_decref(api);
    return n;
}

/* The run went through Redis: answers came from the L2, commits waited for the other
 * instance, and each instance applied the other's writes. */
static void assert_shared(const pair_t *p)
{
    assert_true(redis_figure(&p->a, "hits") + redis_figure(&p->b, "hits") > 0);
    assert_true(redis_figure(&p->a, "commits_held") > 0);
    assert_true(redis_figure(&p->b, "commits_held") > 0);
    assert_true(redis_figure(&p->a, "received") > 0);
    assert_true(redis_figure(&p->b, "received") > 0);
}

/* A figure of the instance's logical consumer of the test database; -1 when there is none. */
static long long logical_figure(const instance_t *in, const char *key)
{
    json_t *api = harness_cache_get(in->admin, TOKEN);
    long long n = -1;
    size_t i;
    json_t *db;
    json_array_foreach(json_object_get(api, "databases"), i, db)
    {
        const char *target = json_string_value(json_object_get(db, "target"));
        json_t *v = json_object_get(json_object_get(db, "logical"), key);
        if (target != NULL && strstr(target, "/" DB) != NULL && v != NULL)
            n = json_is_boolean(v) ? json_is_true(v) : (long long)json_integer_value(v);
    }
    json_decref(api);
    return n;
}

/* Each instance's consumer streamed the run's commits and has none left waiting to be
 * visible (so the run was checked with logical invalidation, not Redis alone). */
static void assert_logical_streamed(const pair_t *p)
{
    const instance_t *both[] = {&p->a, &p->b};
    for (int i = 0; i < 2; i++) {
        assert_true(logical_figure(both[i], "transactions") > 0);
        long long deadline = harness_now_ms() + 10000;
        while (logical_figure(both[i], "invisible") != 0) {
            if (harness_now_ms() > deadline)
                fail_msg("instance %d: commits still waiting to be visible", i);
            harness_sleep_ms(20);
        }
    }
}

static void test_two_instances_sharing_redis(void **state)
{
    skip_without_redis();
    pair_t p;
    pair_start(&p, "");
    check("two instances, Redis", &p.a, &p.b, false, NULL);
    assert_shared(&p);
    pair_stop(&p);
}

/* The Redis of the instances' L2 and invalidations is killed a quarter into the run and started
 * again (empty) OUTAGE_MS later: no client sees an error, no read is stale, and both instances
 * saw the loss and are connected again at the end. */
static void test_redis_killed_and_restarted(void **state)
{
    skip_without_redis();
    pair_t p;
    pair_start(&p, "");
    check("two instances, Redis killed and restarted", &p.a, &p.b, false, &p.redis);
    const instance_t *both[] = {&p.a, &p.b};
    for (int i = 0; i < 2; i++) {
        long long deadline = harness_now_ms() + 10000;
        while (redis_figure(both[i], "connected") != 1 ||
               redis_figure(both[i], "disconnects") < 1) {
            if (harness_now_ms() > deadline)
                fail_msg("instance %d: not connected again after the restart, or no loss seen", i);
            harness_sleep_ms(50);
        }
    }
    pair_stop(&p);
}

/* The consumers also report (and publish) the commits made through pgturbo. */
static void test_two_instances_redis_and_logical(void **state)
{
    skip_without_redis();
    pair_t p;
    pair_start(&p, "cache_invalidation = logical\n");
    check("two instances, Redis, logical", &p.a, &p.b, false, NULL);
    assert_shared(&p);
    assert_logical_streamed(&p);
    pair_stop(&p);
}

/*
 * A direct commit becomes visible to other sessions only after the synchronous standbys
 * confirmed it: a read that runs between a consumer's report and that moment must not keep the
 * old rows (the tables are pending until the commit is visible).
 */
static void test_two_instances_redis_logical_and_a_direct_writer(void **state)
{
    skip_without_redis();
    pair_t p;
    pair_start(&p, "cache_invalidation = logical\n");
    check("two instances, Redis, logical, a direct writer", &p.a, &p.b, true, NULL);
    assert_shared(&p);
    assert_logical_streamed(&p);
    pair_stop(&p);
}

static int setup(void **state)
{
    harness_create_database(DB);
    direct = harness_connect_direct(DB);
    harness_silence_notices(direct);
    char sql[192];
    snprintf(sql, sizeof(sql),
             "CREATE TABLE counters (id int PRIMARY KEY, v bigint NOT NULL);"
             "INSERT INTO counters SELECT id, 0 FROM generate_series(1, %d) id",
             COUNTERS);
    harness_exec_ok(direct, sql);
    return 0;
}

static int teardown(void **state)
{
    PQfinish(direct);
    harness_drop_database(DB);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_instance),
        cmocka_unit_test(test_two_instances_sharing_redis),
        cmocka_unit_test(test_redis_killed_and_restarted),
        cmocka_unit_test_teardown(test_two_instances_redis_and_logical, reset_synchronous_standbys),
        cmocka_unit_test_teardown(test_two_instances_redis_logical_and_a_direct_writer,
                                  reset_synchronous_standbys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
