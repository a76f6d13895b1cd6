/*
 * test_cache_memory.c
 *    The result cache's memory bound holds under a flood of distinct cacheable reads whose
 *    answers add up to many times cache_max_memory: the bytes it counts stay under the bound,
 *    it evicts, it still answers, and the daemon's resident memory grows by a bounded amount
 *    (ReadySet's issues #1659 and #1045 are caches that grew until the kernel killed them).
 *
 *    Every read of the flood has a different text or parameter value (the literal or the
 *    parameter n below), so each one is a miss whose answer of about 1 kB is stored, and the
 *    store must evict to take it. Several libpq connections, in threads, keep the flood short;
 *    they alternate the simple and the extended protocol, whose answers the cache keys apart.
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

#include <cmocka.h>

#define DB    "cache_memory_test"
#define TOKEN "it-cache-memory-token"

#define MAX_MEMORY_MB 8
#define MAX_MEMORY    ((long long)MAX_MEMORY_MB * 1024 * 1024)
#define ROWS          1000
#define BODY_LEN      960 /* 30 md5 digests of 32 hex digits */
#define THREADS       4
#define WARMUP_READS  2000
#define FLOOD_READS   120000 /* ~1.1 kB each: ~130 MB of answers, 16 times the bound */
/* The resident memory the flood may add: the entries (what the cache counts, at most
 * MAX_MEMORY) twice over for the allocator's and AddressSanitizer's rounding, redzones and
 * free lists, plus 32 MB for everything else (buffers of the connections, the 1 MB quarantine,
 * the allocator's caches of other threads). A cache that kept every answer would add ~130 MB. */
#define RSS_GROWTH_MAX (MAX_MEMORY * 3 + 32LL * 1024 * 1024)

static PGconn *direct;

/* A range of reads for one connection: n runs from first to first + count - 1. */
typedef struct flood_job {
    PGconn *conn;
    long long first, count;
    long long failures; /* reads that failed or answered something else */
    char failure[256];  /* the first one */
} flood_job_t;

/* The read of number n: row n % ROWS + 1, with n in the answer so that no two answers (and no
 * two keys) are alike. Even n go through the simple protocol, odd n through the extended one. */
static PGresult *read_n(PGconn *conn, long long n)
{
    char id[24], num[24];
    snprintf(id, sizeof(id), "%lld", n % ROWS + 1);
    snprintf(num, sizeof(num), "%lld", n);
    if (n % 2 == 0) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT body, %s AS n FROM flood WHERE id = %s", num, id);
        return PQexec(conn, sql);
    }
    const char *values[] = {num, id};
    return PQexecParams(conn, "SELECT body, $1::bigint AS n FROM flood WHERE id = $2::int", 2, NULL,
                        values, NULL, NULL, 0);
}

/* Whether r is the answer of read n; describes it in why otherwise. */
static bool answer_ok(const PGresult *r, long long n, char *why, size_t len)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(why, len, "read %lld: %s", n, PQresultErrorMessage(r));
        return false;
    }
    if (PQntuples(r) != 1 || strlen(PQgetvalue(r, 0, 0)) != BODY_LEN ||
        strtoll(PQgetvalue(r, 0, 1), NULL, 10) != n) {
        snprintf(why, len, "read %lld: %d rows, body of %zu bytes, n %s", n, PQntuples(r),
                 PQntuples(r) > 0 ? strlen(PQgetvalue(r, 0, 0)) : 0,
                 PQntuples(r) > 0 ? PQgetvalue(r, 0, 1) : "-");
        return false;
    }
    return true;
}

/* A thread: runs its job's reads, counting the failures (cmocka cannot fail from a thread). */
static void *flood_thread(void *arg)
{
    flood_job_t *job = arg;
    for (long long n = job->first; n < job->first + job->count; n++) {
        PGresult *r = read_n(job->conn, n);
        char why[256];
        if (!answer_ok(r, n, why, sizeof(why)) && job->failures++ == 0)
            snprintf(job->failure, sizeof(job->failure), "%s", why);
        PQclear(r);
    }
    return NULL;
}

/* Runs reads first .. first + count - 1 over the connections, one thread each; fails the test
 * when one read failed. */
static void flood(PGconn **conns, long long first, long long count)
{
    pthread_t threads[THREADS];
    flood_job_t jobs[THREADS];
    long long share = count / THREADS;
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (flood_job_t){.conn = conns[i], .first = first + i * share, .count = share};
        if (i == THREADS - 1)
            jobs[i].count = count - share * (THREADS - 1);
        assert_int_equal(pthread_create(&threads[i], NULL, flood_thread, &jobs[i]), 0);
    }
    long long failures = 0;
    const char *why = NULL;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        failures += jobs[i].failures;
        if (why == NULL && jobs[i].failures > 0)
            why = jobs[i].failure;
    }
    if (failures > 0)
        fail_msg("%lld of %lld reads failed; the first: %s", failures, count, why);
}

/* The value of field ("VmRSS", "VmHWM") of /proc/<pid>/status, in bytes. */
static long long proc_status_bytes(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot read %s", path);
    long long kb = -1;
    size_t len = strlen(field);
    while (kb < 0 && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, len) == 0 && line[len] == ':')
            kb = strtoll(line + len + 1, NULL, 10);
    fclose(f);
    if (kb < 0)
        fail_msg("%s has no %s", path, field);
    return kb * 1024;
}

/*
 * Starts pgturbo with the admin API, the rule on flood and the bound. AddressSanitizer keeps
 * freed blocks in a quarantine of 256 MB by default before it reuses them, so an evicting cache
 * would look like one that never frees: the daemon gets a quarantine of 1 MB (it inherits the
 * environment at fork; ours is restored right after).
 */
static void start(pgturbo_proc_t *p, int *admin_port)
{
    char extra[512], asan[512];
    const char *old = getenv("ASAN_OPTIONS");
    char *saved = old != NULL ? strdup(old) : NULL;
    snprintf(asan, sizeof(asan), "%s%squarantine_size_mb=1", old != NULL ? old : "",
             old != NULL && old[0] != '\0' ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    *admin_port = harness_free_port();
    snprintf(extra, sizeof(extra),
             "admin_listen = 127.0.0.1:%d\nadmin_token = %s\npool_mode = transaction\n"
             "[cache]\nflood = 600\ncache_max_memory = %dMB\n",
             *admin_port, TOKEN, MAX_MEMORY_MB);
    harness_start_pgturbo(p, extra, NULL);
    if (saved != NULL)
        setenv("ASAN_OPTIONS", saved, 1);
    else
        unsetenv("ASAN_OPTIONS");
    free(saved);
}

static int setup(void **state)
{
    harness_create_database(DB);
    direct = harness_connect_direct(DB);
    harness_silence_notices(direct);
    /* md5 digests of distinct strings: lz4 finds little to take out of them. */
    char sql[512];
    snprintf(sql, sizeof(sql),
             "CREATE TABLE flood (id int PRIMARY KEY, body text NOT NULL);"
             "INSERT INTO flood SELECT id, (SELECT string_agg(md5(id || ':' || g), '' ORDER BY g)"
             " FROM generate_series(1, %d) g) FROM generate_series(1, %d) id",
             BODY_LEN / 32, ROWS);
    harness_exec_ok(direct, sql);
    return 0;
}

static int teardown(void **state)
{
    PQfinish(direct);
    harness_drop_database(DB);
    return 0;
}

/* The flood, then the bound: counted bytes, entries, evictions, resident memory; and a read
 * that is answered from memory afterwards. */
static void test_memory_bound_holds_under_a_flood(void **state)
{
    pgturbo_proc_t p;
    int admin;
    start(&p, &admin);
    PGconn *conns[THREADS];
    for (int i = 0; i < THREADS; i++)
        conns[i] = harness_connect(p.port, DB, NULL);
    harness_cache_wait_catalog(conns[0], admin, TOKEN, DB);
    /* The reads that waited for the catalog may have been counted as misses. */
    json_t *api = harness_cache_get(admin, TOKEN);
    long long misses_before = harness_cache_total(api, "misses");
    json_decref(api);

    flood(conns, 0, WARMUP_READS);
    long long rss_before = proc_status_bytes(p.pid, "VmRSS");
    long long started = harness_now_ms();
    flood(conns, WARMUP_READS, FLOOD_READS);
    long long elapsed = harness_now_ms() - started;
    long long rss_after = proc_status_bytes(p.pid, "VmRSS");
    long long rss_peak = proc_status_bytes(p.pid, "VmHWM");

    api = harness_cache_get(admin, TOKEN);
    long long bytes = harness_cache_total(api, "bytes");
    long long entries = harness_cache_total(api, "entries");
    long long inserts = harness_cache_total(api, "inserts");
    long long evictions = harness_cache_total(api, "evictions");
    long long misses = harness_cache_total(api, "misses");
    long long hits = harness_cache_total(api, "hits");
    long long value_bytes = harness_cache_total(api, "value_bytes");
    json_decref(api);
    printf("flood: %d reads in %lld ms; cache: %lld bytes (bound %lld), %lld entries, "
           "%lld inserts, %lld evictions; RSS %lld MB before, %lld MB after, peak %lld MB "
           "(growth allowed %lld MB)\n",
           FLOOD_READS, elapsed, bytes, MAX_MEMORY, entries, inserts, evictions, rss_before >> 20,
           rss_after >> 20, rss_peak >> 20, RSS_GROWTH_MAX >> 20);

    /* Every read was a distinct miss, and every answer was stored. */
    assert_int_equal(hits, 0);
    assert_int_equal(misses - misses_before, WARMUP_READS + FLOOD_READS);
    assert_int_equal(inserts, WARMUP_READS + FLOOD_READS);
    /* The bound holds, and the cache is full to it, not emptied by the flood. */
    assert_true(bytes <= MAX_MEMORY);
    assert_true(bytes >= MAX_MEMORY * 3 / 4);
    assert_true(entries <= MAX_MEMORY / BODY_LEN);
    assert_true(value_bytes > entries * BODY_LEN);
    /* What is not held any more was evicted (nothing else removes entries here). */
    assert_int_equal(evictions, inserts - entries);
    /* The peak since the start counts too: a cache that freed only at the end would pass the
     * final reading. */
    assert_true(rss_after - rss_before < RSS_GROWTH_MAX);
    assert_true(rss_peak - rss_before < RSS_GROWTH_MAX);

    /* The cache still answers: a read after the flood is stored (the most recent entry; the
     * flood's last read need not be, as its threads end at different times), and a change
     * that bypasses pgturbo is not seen in its next answer. */
    long long last = WARMUP_READS + FLOOD_READS;
    char why[256];
    PGresult *r = read_n(conns[0], last);
    if (!answer_ok(r, last, why, sizeof(why)))
        fail_msg("after the flood: %s", why);
    PQclear(r);
    char update[96];
    snprintf(update, sizeof(update), "UPDATE flood SET body = repeat('x', %d) WHERE id = %lld",
             BODY_LEN, last % ROWS + 1);
    harness_exec_ok(direct, update);
    r = read_n(conns[0], last);
    if (!answer_ok(r, last, why, sizeof(why)))
        fail_msg("after the flood: %s", why);
    assert_int_not_equal(PQgetvalue(r, 0, 0)[0], 'x');
    PQclear(r);
    api = harness_cache_get(admin, TOKEN);
    assert_int_equal(harness_cache_total(api, "hits"), 1);
    json_decref(api);

    for (int i = 0; i < THREADS; i++)
        PQfinish(conns[i]);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_bound_holds_under_a_flood),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
