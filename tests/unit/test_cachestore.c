/*
 * test_cachestore.c
 *    Unit tests of cachestore: round trips, replacement, staleness by generation, expiry, the
 *    entry and memory bounds with the segmented LRU's choice of victims, lz4, removal by
 *    dependency and rule, per-rule counters, the most hit entries, and threads sharing a store.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cachestore.h"

#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
/* From libasan; GCC ships no header for it (clang's sanitizer/allocator_interface.h). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define NEVER INT64_MAX
#define NOW   1000

static uint64_t hash_of(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint64_t h = UINT64_C(14695981039346656037);
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static cachestore_limits_t limits_of(size_t max_memory, uint32_t max_entries)
{
    return (cachestore_limits_t){.max_memory = max_memory,
                                 .max_entries = max_entries,
                                 .max_entry_size = 1 << 20,
                                 .compress_min = 1024};
}

static cachestore_t *store_of(size_t max_memory, uint32_t max_entries)
{
    cachestore_limits_t limits = limits_of(max_memory, max_entries);
    cachestore_t *s = cachestore_create(&limits);
    assert_non_null(s);
    return s;
}

/* Stores string value under string key, with deps, expiry and rule. */
static int put(cachestore_t *s, const char *key, const char *value, const cachestore_dep_t *deps,
               int ndeps, int64_t expires_ms, uint16_t rule)
{
    return cachestore_put(s, hash_of(key, strlen(key)), key, strlen(key), value, strlen(value),
                          deps, ndeps, expires_ms, rule);
}

/* Looks up string key at now_ms into out, which is emptied first. */
static int get(cachestore_t *s, const char *key, int64_t now_ms, buf_t *out, uint16_t *rule)
{
    buf_consume(out, buf_len(out));
    return cachestore_get(s, hash_of(key, strlen(key)), key, strlen(key), now_ms, out, rule);
}

static cachestore_counters_t counters(cachestore_t *s)
{
    cachestore_counters_t c;
    cachestore_counters(s, &c);
    return c;
}

static void assert_value(const buf_t *out, const char *value)
{
    assert_int_equal(buf_len(out), strlen(value));
    assert_memory_equal(buf_head(out), value, strlen(value));
}

/* A deterministic stream of pseudo-random numbers (xorshift64). */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static void put_then_get_returns_value_and_rule(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    buf_t out = {0};
    uint16_t rule = 0;
    assert_int_equal(put(s, "select 1", "one row", NULL, 0, NEVER, 7), 0);
    assert_int_equal(get(s, "select 1", NOW, &out, &rule), CACHESTORE_HIT);
    assert_value(&out, "one row");
    assert_int_equal(rule, 7);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.hits, 1);
    assert_int_equal(c.misses, 0);
    assert_int_equal(c.inserts, 1);
    assert_int_equal(c.entries, 1);
    assert_int_equal(c.value_bytes, 7);
    assert_int_equal(c.stored_bytes, 7);
    buf_free(&out);
    cachestore_free(s);
}

static void get_appends_after_bytes_already_in_out(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    buf_t out = {0};
    uint16_t rule;
    assert_int_equal(put(s, "k", "value", NULL, 0, NEVER, 0), 0);
    assert_int_equal(buf_append(&out, "head:", 5), 0);
    assert_int_equal(cachestore_get(s, hash_of("k", 1), "k", 1, NOW, &out, &rule), CACHESTORE_HIT);
    assert_value(&out, "head:value");
    buf_free(&out);
    cachestore_free(s);
}

static void get_of_absent_key_misses_and_appends_nothing(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    buf_t out = {0};
    uint16_t rule = 99;
    assert_int_equal(put(s, "a", "1", NULL, 0, NEVER, 0), 0);
    assert_int_equal(get(s, "b", NOW, &out, &rule), CACHESTORE_MISS);
    assert_int_equal(buf_len(&out), 0);
    assert_int_equal(rule, 99);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.misses, 1);
    assert_int_equal(c.hits, 0);
    assert_int_equal(c.stale, 0);
    assert_int_equal(c.expired, 0);
    cachestore_free(s);
}

static void same_hash_different_key_is_a_miss(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    buf_t out = {0};
    uint16_t rule;
    assert_int_equal(cachestore_put(s, 42, "key-a", 5, "A", 1, NULL, 0, NEVER, 0), 0);
    assert_int_equal(cachestore_get(s, 42, "key-b", 5, NOW, &out, &rule), CACHESTORE_MISS);
    assert_int_equal(cachestore_put(s, 42, "key-b", 5, "B", 1, NULL, 0, NEVER, 0), 0);
    assert_int_equal(cachestore_get(s, 42, "key-a", 5, NOW, &out, &rule), CACHESTORE_HIT);
    assert_int_equal(cachestore_get(s, 42, "key-b", 5, NOW, &out, &rule), CACHESTORE_HIT);
    assert_value(&out, "AB");
    assert_int_equal(counters(s).entries, 2);
    buf_free(&out);
    cachestore_free(s);
}

static void empty_key_and_empty_value_round_trip(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    buf_t out = {0};
    uint16_t rule = 0;
    assert_int_equal(cachestore_put(s, 0, NULL, 0, NULL, 0, NULL, 0, NEVER, 3), 0);
    assert_int_equal(cachestore_get(s, 0, NULL, 0, NOW, &out, &rule), CACHESTORE_HIT);
    assert_int_equal(buf_len(&out), 0);
    assert_int_equal(rule, 3);
    assert_int_equal(counters(s).bytes, CACHESTORE_ENTRY_OVERHEAD);
    cachestore_free(s);
}

static void put_of_same_key_replaces_value(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    buf_t out = {0};
    uint16_t rule;
    assert_int_equal(put(s, "k", "old value", NULL, 0, NEVER, 1), 0);
    assert_int_equal(put(s, "k", "new", NULL, 0, NEVER, 2), 0);
    assert_int_equal(get(s, "k", NOW, &out, &rule), CACHESTORE_HIT);
    assert_value(&out, "new");
    assert_int_equal(rule, 2);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.entries, 1);
    assert_int_equal(c.inserts, 2);
    assert_int_equal(c.evictions, 0);
    assert_int_equal(c.value_bytes, 3);
    assert_int_equal(c.bytes, CACHESTORE_ENTRY_OVERHEAD + 1 + 3);
    buf_free(&out);
    cachestore_free(s);
}

static void bytes_count_overhead_key_stored_value_and_deps(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    cachegen_counter_t a = 1, b = 1;
    cachestore_dep_t deps[] = {{&a, 1}, {&b, 1}};
    assert_int_equal(put(s, "key", "value", deps, 2, NEVER, 0), 0);
    assert_int_equal(counters(s).bytes,
                     CACHESTORE_ENTRY_OVERHEAD + 3 + 5 + 2 * sizeof(cachestore_dep_t));
    assert_int_equal(cachestore_clear(s), 1);
    assert_int_equal(counters(s).bytes, 0);
    cachestore_free(s);
}

static void bumped_dependency_makes_next_get_a_stale_miss(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    cachegen_counter_t users = 5, orders = 9;
    cachestore_dep_t deps[] = {{&users, 5}, {&orders, 9}};
    buf_t out = {0};
    uint16_t rule;
    assert_int_equal(put(s, "join", "rows", deps, 2, NEVER, 0), 0);
    assert_int_equal(get(s, "join", NOW, &out, &rule), CACHESTORE_HIT);
    cachegen_bump(&orders);
    assert_int_equal(get(s, "join", NOW, &out, &rule), CACHESTORE_MISS);
    assert_int_equal(buf_len(&out), 0);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.stale, 1);
    assert_int_equal(c.misses, 1);
    assert_int_equal(c.entries, 0);
    assert_int_equal(c.bytes, 0);
    /* The entry is gone: the next lookup is a plain miss. */
    assert_int_equal(get(s, "join", NOW, &out, &rule), CACHESTORE_MISS);
    c = counters(s);
    assert_int_equal(c.stale, 1);
    assert_int_equal(c.misses, 2);
    buf_free(&out);
    cachestore_free(s);
}

static void put_refused_when_dependency_moved_since_seen(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    cachegen_counter_t users = 1;
    cachestore_dep_t deps[] = {{&users, cachegen_read(&users)}};
    cachegen_bump(&users); /* a write committed while the read ran */
    assert_int_equal(put(s, "q", "rows", deps, 1, NEVER, 0), 1);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.rejected, 1);
    assert_int_equal(c.inserts, 0);
    assert_int_equal(c.entries, 0);
    buf_t out = {0};
    uint16_t rule;
    assert_int_equal(get(s, "q", NOW, &out, &rule), CACHESTORE_MISS);
    cachestore_free(s);
}

static void put_refused_when_dependency_was_pending_when_seen(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    cachegen_counter_t users = 1;
    cachegen_begin_pending(&users); /* committed, not yet visible to the read */
    cachestore_dep_t deps[] = {{&users, cachegen_read(&users)}};
    assert_int_equal(put(s, "q", "rows", deps, 1, NEVER, 0), 1);
    cachegen_end_pending(&users);
    cachestore_dep_t after[] = {{&users, cachegen_read(&users)}};
    assert_int_equal(put(s, "q", "rows", after, 1, NEVER, 0), 0);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.rejected, 1);
    assert_int_equal(c.inserts, 1);
    cachestore_free(s);
}

static void refused_put_keeps_entry_of_same_key(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    cachegen_counter_t users = 1, orders = 1;
    cachestore_dep_t old_deps[] = {{&users, 1}};
    cachestore_dep_t new_deps[] = {{&orders, 0}};
    buf_t out = {0};
    uint16_t rule;
    assert_int_equal(put(s, "q", "old", old_deps, 1, NEVER, 0), 0);
    assert_int_equal(put(s, "q", "new", new_deps, 1, NEVER, 0), 1);
    assert_int_equal(get(s, "q", NOW, &out, &rule), CACHESTORE_HIT);
    assert_value(&out, "old");
    buf_free(&out);
    cachestore_free(s);
}

static void entry_expires_at_its_expiry_time(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    buf_t out = {0};
    uint16_t rule;
    assert_int_equal(put(s, "k", "v", NULL, 0, 5000, 0), 0);
    assert_int_equal(get(s, "k", 4999, &out, &rule), CACHESTORE_HIT);
    assert_int_equal(get(s, "k", 5000, &out, &rule), CACHESTORE_MISS);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.hits, 1);
    assert_int_equal(c.expired, 1);
    assert_int_equal(c.misses, 1);
    assert_int_equal(c.entries, 0);
    buf_free(&out);
    cachestore_free(s);
}

static void value_longer_than_max_entry_size_is_rejected(void **state)
{
    cachestore_limits_t limits = limits_of(1 << 20, 100);
    limits.max_entry_size = 10;
    cachestore_t *s = cachestore_create(&limits);
    assert_int_equal(put(s, "a", "0123456789", NULL, 0, NEVER, 0), 0);
    assert_int_equal(put(s, "b", "0123456789x", NULL, 0, NEVER, 0), 1);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.inserts, 1);
    assert_int_equal(c.rejected, 1);
    assert_int_equal(c.entries, 1);
    cachestore_free(s);
}

static void too_many_deps_are_rejected(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    cachegen_counter_t counter = 1;
    cachestore_dep_t deps[CACHESTORE_MAX_DEPS + 1];
    for (int i = 0; i <= CACHESTORE_MAX_DEPS; i++)
        deps[i] = (cachestore_dep_t){&counter, 1};
    assert_int_equal(put(s, "a", "v", deps, CACHESTORE_MAX_DEPS, NEVER, 0), 0);
    assert_int_equal(put(s, "b", "v", deps, CACHESTORE_MAX_DEPS + 1, NEVER, 0), 1);
    assert_int_equal(put(s, "c", "v", deps, -1, NEVER, 0), 1);
    assert_int_equal(counters(s).rejected, 2);
    cachestore_free(s);
}

static void entry_larger_than_shard_share_of_memory_is_rejected(void **state)
{
    /* Each shard may hold 1000 bytes; an entry of 1001 can never fit. */
    cachestore_t *s = store_of(CACHESTORE_SHARDS * 1000, 100);
    char fits[1000 - CACHESTORE_ENTRY_OVERHEAD];
    char too_big[1000 - CACHESTORE_ENTRY_OVERHEAD + 1];
    memset(fits, 'a', sizeof(fits) - 1);
    fits[sizeof(fits) - 1] = '\0'; /* 1 byte of key + value = 1000 - overhead */
    memset(too_big, 'a', sizeof(too_big) - 1);
    too_big[sizeof(too_big) - 1] = '\0';
    assert_int_equal(put(s, "k", fits, NULL, 0, NEVER, 0), 0);
    assert_int_equal(put(s, "l", too_big, NULL, 0, NEVER, 0), 1);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.bytes, 1000);
    assert_int_equal(c.rejected, 1);
    cachestore_free(s);
}

static void zero_max_entries_stores_nothing(void **state)
{
    cachestore_t *s = store_of(1 << 20, 0);
    assert_int_equal(put(s, "k", "v", NULL, 0, NEVER, 0), 1);
    assert_int_equal(counters(s).entries, 0);
    cachestore_free(s);
}

/* Puts key "<prefix><i>" with a short value under rule. */
static void put_numbered(cachestore_t *s, const char *prefix, int i, uint16_t rule)
{
    char key[64];
    snprintf(key, sizeof(key), "%s%d", prefix, i);
    assert_int_equal(put(s, key, "v", NULL, 0, NEVER, rule), 0);
}

static int get_numbered(cachestore_t *s, const char *prefix, int i)
{
    char key[64];
    buf_t out = {0};
    uint16_t rule;
    snprintf(key, sizeof(key), "%s%d", prefix, i);
    int result = get(s, key, NOW, &out, &rule);
    buf_free(&out);
    return result;
}

static void entry_hit_once_survives_flood_of_one_time_entries(void **state)
{
    uint32_t max_entries = 4 * CACHESTORE_SHARDS;
    cachestore_t *s = store_of(64 << 20, max_entries);
    put_numbered(s, "early-", 0, 0);
    put_numbered(s, "hot-", 0, 0);
    assert_int_equal(get_numbered(s, "hot-", 0), CACHESTORE_HIT);
    for (int i = 0; i < 10000; i++)
        put_numbered(s, "flood-", i, 0);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.entries, max_entries);
    assert_int_equal(c.inserts, 10002);
    assert_int_equal(c.evictions, 10002 - max_entries);
    assert_int_equal(get_numbered(s, "hot-", 0), CACHESTORE_HIT);
    assert_int_equal(get_numbered(s, "early-", 0), CACHESTORE_MISS);
    assert_int_equal(get_numbered(s, "flood-", 0), CACHESTORE_MISS);
    assert_int_equal(get_numbered(s, "flood-", 9999), CACHESTORE_HIT);
    cachestore_free(s);
}

static void protected_segment_keeps_at_most_80_percent_of_a_shard(void **state)
{
    /* 10 entries a shard, so protected holds at most 8 of them. */
    cachestore_t *s = store_of(64 << 20, 10 * CACHESTORE_SHARDS);
    for (int i = 0; i < 40 * CACHESTORE_SHARDS; i++) {
        put_numbered(s, "hit-", i, 1);
        assert_int_equal(get_numbered(s, "hit-", i), CACHESTORE_HIT);
    }
    for (int i = 0; i < 10000; i++)
        put_numbered(s, "flood-", i, 2);
    cachestore_counters_t hit, flood;
    cachestore_rule_counters(s, 1, &hit);
    cachestore_rule_counters(s, 2, &flood);
    assert_int_equal(hit.entries, 8 * CACHESTORE_SHARDS);
    assert_int_equal(flood.entries, 2 * CACHESTORE_SHARDS);
    cachestore_free(s);
}

static void bytes_never_exceed_max_memory_under_flood(void **state)
{
    size_t max_memory = 4 << 20;
    cachestore_t *s = store_of(max_memory, 1000000);
    uint64_t rnd = 12345;
    char key[64], value[600];
    memset(value, 'v', sizeof(value));
    for (int i = 0; i < 100000; i++) {
        int keylen = snprintf(key, sizeof(key), "select * from t where id = %d", i);
        size_t vlen = 50 + next_random(&rnd) % 500;
        assert_int_equal(cachestore_put(s, hash_of(key, (size_t)keylen), key, (size_t)keylen, value,
                                        vlen, NULL, 0, NEVER, 0),
                         0);
        if (i % 1000 == 999)
            assert_true(counters(s).bytes <= max_memory);
    }
    cachestore_counters_t c = counters(s);
    assert_true(c.bytes <= max_memory);
    /* Full to within one largest entry per shard. */
    assert_true(c.bytes > max_memory - CACHESTORE_SHARDS * (CACHESTORE_ENTRY_OVERHEAD + 600));
    assert_int_equal(c.inserts, 100000);
    assert_int_equal(c.evictions, 100000 - c.entries);
    cachestore_free(s);
}

/* Bytes the allocator has handed out and not had back. Under AddressSanitizer its allocator
 * replaces glibc's, so mallinfo2() would see none of them. */
static size_t heap_in_use(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

static void heap_growth_stays_within_max_memory_plus_30_percent(void **state)
{
    size_t max_memory = 8 << 20;
    size_t before = heap_in_use();
    cachestore_t *s = store_of(max_memory, 1000000);
    uint64_t rnd = 777;
    char key[64], value[400];
    memset(value, 'v', sizeof(value));
    for (int i = 0; i < 100000; i++) {
        int keylen = snprintf(key, sizeof(key), "k%d", i);
        size_t vlen = next_random(&rnd) % 400;
        assert_int_equal(cachestore_put(s, hash_of(key, (size_t)keylen), key, (size_t)keylen, value,
                                        vlen, NULL, 0, NEVER, 0),
                         0);
    }
    size_t growth = heap_in_use() - before;
    print_message("heap growth %zu bytes for max_memory %zu (%.3fx), %" PRIu64 " entries\n", growth,
                  max_memory, (double)growth / (double)max_memory, counters(s).entries);
    assert_true(growth <= max_memory + max_memory * 3 / 10);
    cachestore_free(s);
}

static void set_limits_evicts_down_at_once(void **state)
{
    cachestore_t *s = store_of(1 << 20, 1000);
    for (int i = 0; i < 500; i++)
        put_numbered(s, "k", i, 0);
    assert_int_equal(counters(s).entries, 500);
    cachestore_limits_t smaller = limits_of(1 << 20, 5 * CACHESTORE_SHARDS);
    cachestore_set_limits(s, &smaller);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.entries, 5 * CACHESTORE_SHARDS);
    assert_int_equal(c.evictions, 500 - 5 * CACHESTORE_SHARDS);
    smaller.max_memory = 0;
    cachestore_set_limits(s, &smaller);
    assert_int_equal(counters(s).entries, 0);
    assert_int_equal(counters(s).bytes, 0);
    cachestore_free(s);
}

static void compressible_value_is_stored_compressed_and_read_back_whole(void **state)
{
    cachestore_t *s = store_of(16 << 20, 100);
    size_t len = 64 * 1024;
    char *value = malloc(len);
    for (size_t i = 0; i < len; i++)
        value[i] = "id|name|email\n1|ann|ann@example.com\n"[i % 36];
    assert_int_equal(cachestore_put(s, 1, "big", 3, value, len, NULL, 0, NEVER, 0), 0);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.value_bytes, len);
    assert_true(c.stored_bytes < len / 10);
    assert_int_equal(c.bytes, CACHESTORE_ENTRY_OVERHEAD + 3 + c.stored_bytes);
    buf_t out = {0};
    uint16_t rule;
    assert_int_equal(cachestore_get(s, 1, "big", 3, NOW, &out, &rule), CACHESTORE_HIT);
    assert_int_equal(buf_len(&out), len);
    assert_memory_equal(buf_head(&out), value, len);
    buf_free(&out);
    free(value);
    cachestore_free(s);
}

static void incompressible_value_is_stored_raw(void **state)
{
    cachestore_t *s = store_of(16 << 20, 100); /* a shard's share must hold 64 KB */
    size_t len = 64 * 1024;
    uint8_t *value = malloc(len);
    uint64_t rnd = 99;
    for (size_t i = 0; i < len; i++)
        value[i] = (uint8_t)next_random(&rnd);
    assert_int_equal(cachestore_put(s, 1, "random", 6, value, len, NULL, 0, NEVER, 0), 0);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.value_bytes, len);
    assert_int_equal(c.stored_bytes, len);
    buf_t out = {0};
    uint16_t rule;
    assert_int_equal(cachestore_get(s, 1, "random", 6, NOW, &out, &rule), CACHESTORE_HIT);
    assert_int_equal(buf_len(&out), len);
    assert_memory_equal(buf_head(&out), value, len);
    buf_free(&out);
    free(value);
    cachestore_free(s);
}

static void value_shorter_than_compress_min_is_stored_raw(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    char value[1024];
    memset(value, 'a', sizeof(value));
    assert_int_equal(cachestore_put(s, 1, "k", 1, value, 1023, NULL, 0, NEVER, 0), 0);
    assert_int_equal(counters(s).stored_bytes, 1023);
    /* One byte more reaches compress_min, and 1024 equal bytes compress well. */
    assert_int_equal(cachestore_put(s, 2, "l", 1, value, 1024, NULL, 0, NEVER, 0), 0);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.value_bytes, 1023 + 1024);
    assert_true(c.stored_bytes < 1023 + 100);
    cachestore_free(s);
}

static void remove_dep_removes_only_entries_that_depend_on_counter(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    cachegen_counter_t users = 1, orders = 1;
    cachestore_dep_t u[] = {{&users, 1}};
    cachestore_dep_t o[] = {{&orders, 1}};
    cachestore_dep_t uo[] = {{&users, 1}, {&orders, 1}};
    assert_int_equal(put(s, "u", "1", u, 1, NEVER, 0), 0);
    assert_int_equal(put(s, "o", "2", o, 1, NEVER, 0), 0);
    assert_int_equal(put(s, "uo", "3", uo, 2, NEVER, 0), 0);
    assert_int_equal(put(s, "none", "4", NULL, 0, NEVER, 0), 0);
    assert_int_equal(cachestore_remove_dep(s, &users), 2);
    buf_t out = {0};
    uint16_t rule;
    assert_int_equal(get(s, "u", NOW, &out, &rule), CACHESTORE_MISS);
    assert_int_equal(get(s, "uo", NOW, &out, &rule), CACHESTORE_MISS);
    assert_int_equal(get(s, "o", NOW, &out, &rule), CACHESTORE_HIT);
    assert_int_equal(get(s, "none", NOW, &out, &rule), CACHESTORE_HIT);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.invalidations, 2);
    assert_int_equal(c.entries, 2);
    assert_int_equal(c.stale, 0);
    assert_int_equal(cachestore_remove_dep(s, &users), 0);
    buf_free(&out);
    cachestore_free(s);
}

static void remove_rule_removes_only_that_rule(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    for (int i = 0; i < 10; i++)
        put_numbered(s, "k", i, (uint16_t)(i % 3));
    assert_int_equal(cachestore_remove_rule(s, 1), 3);
    assert_int_equal(get_numbered(s, "k", 1), CACHESTORE_MISS);
    assert_int_equal(get_numbered(s, "k", 2), CACHESTORE_HIT);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.entries, 7);
    assert_int_equal(c.invalidations, 3);
    assert_int_equal(cachestore_remove_rule(s, 1), 0);
    assert_int_equal(cachestore_remove_rule(s, 1000), 0);
    cachestore_free(s);
}

static void clear_removes_everything_from_both_segments(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    for (int i = 0; i < 20; i++)
        put_numbered(s, "k", i, 0);
    for (int i = 0; i < 10; i++) /* half of them into protected */
        assert_int_equal(get_numbered(s, "k", i), CACHESTORE_HIT);
    assert_int_equal(cachestore_clear(s), 20);
    cachestore_counters_t c = counters(s);
    assert_int_equal(c.entries, 0);
    assert_int_equal(c.bytes, 0);
    assert_int_equal(c.value_bytes, 0);
    assert_int_equal(c.stored_bytes, 0);
    assert_int_equal(c.invalidations, 20);
    assert_int_equal(get_numbered(s, "k", 0), CACHESTORE_MISS);
    assert_int_equal(cachestore_clear(s), 0);
    cachestore_free(s);
}

static void rule_counters_count_hits_misses_entries_and_bytes(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    assert_int_equal(put(s, "a", "12345", NULL, 0, NEVER, 3), 0);
    assert_int_equal(put(s, "b", "1", NULL, 0, NEVER, 3), 0);
    assert_int_equal(put(s, "c", "1", NULL, 0, NEVER, 4), 0);
    buf_t out = {0};
    uint16_t rule;
    assert_int_equal(get(s, "a", NOW, &out, &rule), CACHESTORE_HIT);
    assert_int_equal(get(s, "a", NOW, &out, &rule), CACHESTORE_HIT);
    assert_int_equal(get(s, "c", NOW, &out, &rule), CACHESTORE_HIT);
    assert_int_equal(get(s, "d", NOW, &out, &rule), CACHESTORE_MISS);
    cachestore_count_miss(s, 3);
    cachestore_count_miss(s, CACHESTORE_MAX_RULES); /* not counted anywhere */
    cachestore_counters_t r3, r4, r5, out_of_range;
    cachestore_rule_counters(s, 3, &r3);
    cachestore_rule_counters(s, 4, &r4);
    cachestore_rule_counters(s, 5, &r5);
    cachestore_rule_counters(s, CACHESTORE_MAX_RULES, &out_of_range);
    assert_int_equal(r3.hits, 2);
    assert_int_equal(r3.misses, 1);
    assert_int_equal(r3.entries, 2);
    assert_int_equal(r3.bytes, 2 * CACHESTORE_ENTRY_OVERHEAD + 2 + 5 + 1);
    assert_int_equal(r3.stale, 0);
    assert_int_equal(r4.hits, 1);
    assert_int_equal(r4.misses, 0);
    assert_int_equal(r4.entries, 1);
    assert_int_equal(r5.hits + r5.misses + r5.entries + r5.bytes, 0);
    assert_int_equal(out_of_range.misses, 0);
    assert_int_equal(cachestore_remove_rule(s, 3), 2);
    cachestore_rule_counters(s, 3, &r3);
    assert_int_equal(r3.entries, 0);
    assert_int_equal(r3.bytes, 0);
    assert_int_equal(r3.hits, 2);
    buf_free(&out);
    cachestore_free(s);
}

typedef struct seen_entry {
    char key[16];
    uint64_t hits;
    uint16_t rule;
} seen_entry_t;

typedef struct seen {
    seen_entry_t entries[8];
    int n;
} seen_t;

static void collect(void *arg, const void *key, size_t keylen, uint64_t hits, uint16_t rule)
{
    seen_t *seen = arg;
    seen_entry_t *e = &seen->entries[seen->n++];
    assert_true(keylen < sizeof(e->key));
    memcpy(e->key, key, keylen);
    e->key[keylen] = '\0';
    e->hits = hits;
    e->rule = rule;
}

static void top_lists_most_hit_entries_first(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    const char *keys[] = {"a", "b", "c", "d", "e"};
    int hits[] = {3, 1, 5, 0, 2};
    buf_t out = {0};
    uint16_t rule;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(put(s, keys[i], "v", NULL, 0, NEVER, (uint16_t)(10 + i)), 0);
        for (int h = 0; h < hits[i]; h++)
            assert_int_equal(get(s, keys[i], NOW, &out, &rule), CACHESTORE_HIT);
    }
    seen_t seen = {0};
    assert_int_equal(cachestore_top(s, 3, collect, &seen), 3);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.entries[0].key, "c");
    assert_int_equal(seen.entries[0].hits, 5);
    assert_int_equal(seen.entries[0].rule, 12);
    assert_string_equal(seen.entries[1].key, "a");
    assert_int_equal(seen.entries[1].hits, 3);
    assert_string_equal(seen.entries[2].key, "e");
    assert_int_equal(seen.entries[2].hits, 2);

    seen = (seen_t){0};
    assert_int_equal(cachestore_top(s, 8, collect, &seen), 5);
    assert_string_equal(seen.entries[3].key, "b");
    assert_string_equal(seen.entries[4].key, "d");
    assert_int_equal(seen.entries[4].hits, 0);
    buf_free(&out);
    cachestore_free(s);
}

static void top_of_empty_store_calls_nothing(void **state)
{
    cachestore_t *s = store_of(1 << 20, 100);
    seen_t seen = {0};
    assert_int_equal(cachestore_top(s, 10, collect, &seen), 0);
    assert_int_equal(seen.n, 0);
    cachestore_free(s);
}

static void free_accepts_null(void **state)
{
    cachestore_free(NULL);
}

/* ---- threads sharing a store ---- */

#define SMOKE_THREADS 4
#define SMOKE_KEYS    2000
#define SMOKE_TABLES  8

typedef struct smoker {
    cachestore_t *s;
    cachegen_counter_t *tables;
    int index;
    uint64_t gets, hits, puts, bumps;
    uint64_t failures; /* cmocka's asserts may only fail on the main thread */
} smoker_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * For a second: gets, puts and bumps of random keys. A value names its key and the generation
 * its table had before it was made, padded (every tenth time past compress_min, so that lz4
 * runs too). A hit must return the value of its own key and rule, made at a generation no
 * older than the table's just before the lookup: a generation is never served stale.
 */
static void *smoke(void *arg)
{
    smoker_t *sm = arg;
    uint64_t rnd = 0x9E3779B97F4A7C15 * (uint64_t)(sm->index + 1);
    char key[32], value[4096];
    buf_t out = {0};
    int64_t end = now_ms() + 1000;
    while (now_ms() < end) {
        for (int round = 0; round < 100; round++) {
            int k = (int)(next_random(&rnd) % SMOKE_KEYS);
            cachegen_counter_t *table = &sm->tables[k % SMOKE_TABLES];
            int keylen = snprintf(key, sizeof(key), "key-%d", k);
            uint64_t hash = hash_of(key, (size_t)keylen);
            uint64_t dice = next_random(&rnd) % 100;
            if (dice < 80) {
                uint16_t rule = UINT16_MAX;
                uint64_t before = cachegen_read(table);
                buf_consume(&out, buf_len(&out));
                int result =
                    cachestore_get(sm->s, hash, key, (size_t)keylen, now_ms(), &out, &rule);
                sm->gets++;
                if (result == CACHESTORE_HIT) {
                    int got_k = -1;
                    unsigned long long got_gen = 0;
                    if (buf_append(&out, "", 1) < 0 ||
                        sscanf((char *)buf_head(&out), "%d:%llu", &got_k, &got_gen) != 2 ||
                        got_k != k || got_gen < before || rule != k % CACHESTORE_MAX_RULES)
                        sm->failures++;
                    sm->hits++;
                } else if (result != CACHESTORE_MISS) {
                    sm->failures++;
                }
            } else if (dice < 98) {
                uint64_t seen = cachegen_read(table);
                size_t vlen =
                    (size_t)snprintf(value, sizeof(value), "%d:%llu:", k, (unsigned long long)seen);
                size_t padded = next_random(&rnd) % 10 == 0 ? 2048 : 64;
                memset(value + vlen, 'p', padded - vlen);
                cachestore_dep_t dep = {table, seen};
                int result = cachestore_put(sm->s, hash, key, (size_t)keylen, value, padded, &dep,
                                            1, now_ms() + 50, (uint16_t)(k % CACHESTORE_MAX_RULES));
                if (result != 0 && result != 1)
                    sm->failures++;
                sm->puts++;
            } else {
                cachegen_bump(table);
                sm->bumps++;
            }
        }
    }
    buf_free(&out);
    buf_thread_cleanup();
    return NULL;
}

static void threads_sharing_store_see_only_their_keys_values(void **state)
{
    size_t max_memory = 256 << 10;
    cachestore_t *s = store_of(max_memory, 500);
    static cachegen_counter_t tables[SMOKE_TABLES];
    for (int t = 0; t < SMOKE_TABLES; t++)
        atomic_init(&tables[t], 1);
    smoker_t smokers[SMOKE_THREADS];
    pthread_t threads[SMOKE_THREADS];
    for (int t = 0; t < SMOKE_THREADS; t++) {
        smokers[t] = (smoker_t){.s = s, .tables = tables, .index = t};
        assert_int_equal(pthread_create(&threads[t], NULL, smoke, &smokers[t]), 0);
    }
    uint64_t gets = 0, hits = 0, puts = 0, failures = 0;
    for (int t = 0; t < SMOKE_THREADS; t++) {
        pthread_join(threads[t], NULL);
        gets += smokers[t].gets;
        hits += smokers[t].hits;
        puts += smokers[t].puts;
        failures += smokers[t].failures;
    }
    cachestore_counters_t c = counters(s);
    print_message("%" PRIu64 " gets (%" PRIu64 " hits), %" PRIu64 " puts\n", gets, hits, puts);
    assert_int_equal(failures, 0);
    assert_true(hits > 0);
    assert_int_equal(c.hits, hits);
    assert_int_equal(c.hits + c.misses, gets);
    assert_int_equal(c.inserts + c.rejected, puts);
    assert_true(c.stale > 0);
    assert_true(c.entries <= 500);
    assert_true(c.bytes <= max_memory);
    cachestore_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_then_get_returns_value_and_rule),
        cmocka_unit_test(get_appends_after_bytes_already_in_out),
        cmocka_unit_test(get_of_absent_key_misses_and_appends_nothing),
        cmocka_unit_test(same_hash_different_key_is_a_miss),
        cmocka_unit_test(empty_key_and_empty_value_round_trip),
        cmocka_unit_test(put_of_same_key_replaces_value),
        cmocka_unit_test(bytes_count_overhead_key_stored_value_and_deps),
        cmocka_unit_test(bumped_dependency_makes_next_get_a_stale_miss),
        cmocka_unit_test(put_refused_when_dependency_moved_since_seen),
        cmocka_unit_test(put_refused_when_dependency_was_pending_when_seen),
        cmocka_unit_test(refused_put_keeps_entry_of_same_key),
        cmocka_unit_test(entry_expires_at_its_expiry_time),
        cmocka_unit_test(value_longer_than_max_entry_size_is_rejected),
        cmocka_unit_test(too_many_deps_are_rejected),
        cmocka_unit_test(entry_larger_than_shard_share_of_memory_is_rejected),
        cmocka_unit_test(zero_max_entries_stores_nothing),
        cmocka_unit_test(entry_hit_once_survives_flood_of_one_time_entries),
        cmocka_unit_test(protected_segment_keeps_at_most_80_percent_of_a_shard),
        cmocka_unit_test(bytes_never_exceed_max_memory_under_flood),
        cmocka_unit_test(heap_growth_stays_within_max_memory_plus_30_percent),
        cmocka_unit_test(set_limits_evicts_down_at_once),
        cmocka_unit_test(compressible_value_is_stored_compressed_and_read_back_whole),
        cmocka_unit_test(incompressible_value_is_stored_raw),
        cmocka_unit_test(value_shorter_than_compress_min_is_stored_raw),
        cmocka_unit_test(remove_dep_removes_only_entries_that_depend_on_counter),
        cmocka_unit_test(remove_rule_removes_only_that_rule),
        cmocka_unit_test(clear_removes_everything_from_both_segments),
        cmocka_unit_test(rule_counters_count_hits_misses_entries_and_bytes),
        cmocka_unit_test(top_lists_most_hit_entries_first),
        cmocka_unit_test(top_of_empty_store_calls_nothing),
        cmocka_unit_test(free_accepts_null),
        cmocka_unit_test(threads_sharing_store_see_only_their_keys_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
