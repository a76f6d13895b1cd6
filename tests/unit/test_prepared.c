/*
 * test_prepared.c
 *    Unit tests of prepared: body hashing, server-side names, the client statement map
 *    (including deletion inside probe runs) and the server LRU statement cache.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "prepared.h"

#include <stdio.h>
#include <string.h>

/* A deterministic generator, so that failures reproduce. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t text_hash(const char *s)
{
    return prepared_hash((const uint8_t *)s, (uint32_t)strlen(s));
}

/* ---- hash and server name ---- */

static void hash_is_fnv1a_64(void **state)
{
    /* Reference values of 64-bit FNV-1a. */
    assert_int_equal(prepared_hash((const uint8_t *)"", 0), UINT64_C(0xcbf29ce484222325));
    assert_int_equal(text_hash("a"), UINT64_C(0xaf63dc4c8601ec8c));
    assert_int_equal(text_hash("foobar"), UINT64_C(0x85944171f73967e8));
}

static void hash_is_equal_for_equal_bodies_in_different_memory(void **state)
{
    const uint8_t a[] = {'S', 'E', 'L', 'E', 'C', 'T', ' ', '$', '1', 0, 0, 1, 0, 0, 0, 23};
    uint8_t b[sizeof(a)];
    memcpy(b, a, sizeof(a));
    assert_int_equal(prepared_hash(a, sizeof(a)), prepared_hash(b, sizeof(b)));
}

static void hash_differs_for_different_bodies(void **state)
{
    const uint8_t int4[] = {'S', 'E', 'L', 'E', 'C', 'T', ' ', '$', '1', 0, 0, 1, 0, 0, 0, 23};
    const uint8_t text[] = {'S', 'E', 'L', 'E', 'C', 'T', ' ', '$', '1', 0, 0, 1, 0, 0, 0, 25};
    assert_int_not_equal(prepared_hash(int4, sizeof(int4)), prepared_hash(text, sizeof(text)));
    /* A prefix of a body is a different body. */
    assert_int_not_equal(prepared_hash(int4, sizeof(int4)), prepared_hash(int4, sizeof(int4) - 1));
    assert_int_not_equal(text_hash("SELECT 1"), text_hash("SELECT 2"));
}

static void server_name_is_prefix_and_16_lowercase_hex_digits(void **state)
{
    char name[PREPARED_NAME_LEN];
    prepared_server_name(UINT64_C(0x0123456789abcdef), name);
    assert_string_equal(name, "_pgt_0123456789abcdef");
    prepared_server_name(0, name);
    assert_string_equal(name, "_pgt_0000000000000000");
    prepared_server_name(UINT64_MAX, name);
    assert_string_equal(name, "_pgt_ffffffffffffffff");
    prepared_server_name(UINT64_C(0xABC), name);
    assert_string_equal(name, "_pgt_0000000000000abc");
    assert_int_equal(strlen(name), 21);
}

/* ---- client map ---- */

static void map_starts_empty(void **state)
{
    prepared_map_t *map = prepared_map_create();
    assert_non_null(map);
    assert_int_equal(prepared_map_count(map), 0);
    assert_null(prepared_map_get(map, "s1"));
    assert_null(prepared_map_get(map, ""));
    assert_false(prepared_map_remove(map, "s1"));
    prepared_map_free(map);
}

static void map_free_accepts_null(void **state)
{
    prepared_map_free(NULL);
}

static void map_put_copies_body_and_derives_server_name(void **state)
{
    uint8_t body[] = {'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0, 0, 0};
    prepared_map_t *map = prepared_map_create();
    prepared_stmt_t *stmt = prepared_map_put(map, "s1", body, sizeof(body));
    assert_non_null(stmt);
    assert_int_equal(stmt->hash, prepared_hash(body, sizeof(body)));
    char expected_name[PREPARED_NAME_LEN];
    prepared_server_name(stmt->hash, expected_name);
    assert_string_equal(stmt->server_name, expected_name);
    assert_int_equal(stmt->body_len, sizeof(body));
    assert_ptr_not_equal(stmt->body, body);
    assert_memory_equal(stmt->body, body, sizeof(body));
    body[0] = 'X'; /* the map holds its own copy */
    assert_int_equal(stmt->body[0], 'S');
    assert_ptr_equal(prepared_map_get(map, "s1"), stmt);
    assert_int_equal(prepared_map_count(map), 1);
    prepared_map_free(map);
}

static void map_unnamed_statement_is_a_name_like_any_other(void **state)
{
    const uint8_t body[] = {'x', 0, 0, 0};
    prepared_map_t *map = prepared_map_create();
    assert_non_null(prepared_map_put(map, "", body, sizeof(body)));
    assert_non_null(prepared_map_get(map, ""));
    assert_null(prepared_map_get(map, "x"));
    assert_true(prepared_map_remove(map, ""));
    assert_int_equal(prepared_map_count(map), 0);
    prepared_map_free(map);
}

static void map_equal_bodies_under_different_names_share_server_name(void **state)
{
    const uint8_t body[] = {'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0, 0, 0};
    prepared_map_t *map = prepared_map_create();
    prepared_stmt_t *a = prepared_map_put(map, "a", body, sizeof(body));
    prepared_stmt_t *b = prepared_map_put(map, "b", body, sizeof(body));
    assert_ptr_not_equal(a, b);
    assert_string_equal(a->server_name, b->server_name);
    assert_int_equal(prepared_map_count(map), 2);
    prepared_map_free(map);
}

static void map_put_of_existing_name_replaces_statement(void **state)
{
    const uint8_t one[] = {'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0, 0, 0};
    const uint8_t two[] = {'S', 'E', 'L', 'E', 'C', 'T', ' ', '2', 0, 0, 0};
    prepared_map_t *map = prepared_map_create();
    assert_non_null(prepared_map_put(map, "s", one, sizeof(one)));
    prepared_stmt_t *stmt = prepared_map_put(map, "s", two, sizeof(two));
    assert_non_null(stmt);
    assert_int_equal(prepared_map_count(map), 1);
    assert_ptr_equal(prepared_map_get(map, "s"), stmt);
    assert_memory_equal(stmt->body, two, sizeof(two));
    assert_int_equal(stmt->hash, prepared_hash(two, sizeof(two)));
    prepared_map_free(map);
}

static void map_remove_forgets_only_that_name(void **state)
{
    const uint8_t body[] = {'q', 0, 0, 0};
    prepared_map_t *map = prepared_map_create();
    assert_non_null(prepared_map_put(map, "a", body, sizeof(body)));
    assert_non_null(prepared_map_put(map, "b", body, sizeof(body)));
    assert_true(prepared_map_remove(map, "a"));
    assert_false(prepared_map_remove(map, "a"));
    assert_null(prepared_map_get(map, "a"));
    assert_non_null(prepared_map_get(map, "b"));
    assert_int_equal(prepared_map_count(map), 1);
    prepared_map_free(map);
}

static void map_clear_removes_everything_and_map_stays_usable(void **state)
{
    const uint8_t body[] = {'q', 0, 0, 0};
    char name[16];
    prepared_map_t *map = prepared_map_create();
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        assert_non_null(prepared_map_put(map, name, body, sizeof(body)));
    }
    prepared_map_clear(map);
    assert_int_equal(prepared_map_count(map), 0);
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        assert_null(prepared_map_get(map, name));
    }
    assert_non_null(prepared_map_put(map, "s3", body, sizeof(body)));
    assert_int_equal(prepared_map_count(map), 1);
    assert_non_null(prepared_map_get(map, "s3"));
    prepared_map_free(map);
}

/* Puts "s<i>" with body "body <i>" (NUL included) for i in [from, to). */
static void put_numbered(prepared_map_t *map, int from, int to)
{
    char name[16], body[32];
    for (int i = from; i < to; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        int n = snprintf(body, sizeof(body), "body %d", i) + 1;
        assert_non_null(prepared_map_put(map, name, (const uint8_t *)body, (uint32_t)n));
    }
}

/* Asserts that "s<i>" holds "body <i>" when present[i], and is absent otherwise. */
static void assert_numbered(const prepared_map_t *map, const bool *present, int n)
{
    char name[16], body[32];
    int count = 0;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        prepared_stmt_t *stmt = prepared_map_get(map, name);
        if (!present[i]) {
            assert_null(stmt);
            continue;
        }
        count++;
        assert_non_null(stmt);
        int len = snprintf(body, sizeof(body), "body %d", i) + 1;
        assert_int_equal(stmt->body_len, len);
        assert_memory_equal(stmt->body, body, (size_t)len);
    }
    assert_int_equal(prepared_map_count(map), count);
}

static void map_keeps_100_names_through_growth(void **state)
{
    bool present[100];
    prepared_map_t *map = prepared_map_create();
    for (int i = 0; i < 100; i++) {
        put_numbered(map, i, i + 1);
        for (int j = 0; j < 100; j++)
            present[j] = j <= i;
        assert_numbered(map, present, 100);
    }
    prepared_map_free(map);
}

static void map_removals_keep_every_other_name_findable(void **state)
{
    bool present[100];
    prepared_map_t *map = prepared_map_create();
    put_numbered(map, 0, 100);
    for (int i = 0; i < 100; i++)
        present[i] = true;
    /* Every third name, then every remaining odd one, checking all names after each step. */
    char name[16];
    for (int i = 0; i < 100; i += 3) {
        snprintf(name, sizeof(name), "s%d", i);
        assert_true(prepared_map_remove(map, name));
        present[i] = false;
        assert_numbered(map, present, 100);
    }
    for (int i = 1; i < 100; i += 2) {
        snprintf(name, sizeof(name), "s%d", i);
        assert_int_equal(prepared_map_remove(map, name), present[i]);
        present[i] = false;
        assert_numbered(map, present, 100);
    }
    put_numbered(map, 0, 100);
    for (int i = 0; i < 100; i++)
        present[i] = true;
    assert_numbered(map, present, 100);
    prepared_map_free(map);
}

/*
 * Finds count names "<prefix><k>" whose hashes share the low bits home (under mask), so that
 * they probe the same slots of a table of mask + 1 slots.
 */
static void names_with_home(const char *prefix, uint32_t home, uint32_t mask, int count,
                            char out[][16])
{
    int found = 0;
    for (int k = 0; found < count; k++) {
        snprintf(out[found], 16, "%s%d", prefix, k);
        if ((uint32_t)(text_hash(out[found]) & mask) == home)
            found++;
    }
}

/* Asserts that exactly the names of names[] marked in present[] are in the map. */
static void assert_names(const prepared_map_t *map, char names[][16], const bool *present,
                         int n)
{
    for (int i = 0; i < n; i++) {
        if (present[i])
            assert_non_null(prepared_map_get(map, names[i]));
        else
            assert_null(prepared_map_get(map, names[i]));
    }
}

static void map_removal_inside_a_probe_run_keeps_the_rest_findable(void **state)
{
    /* Four names of one home slot (in an 8-slot table) form a run; removing any one of them
     * must leave the others reachable. Tried for each position in the run and for a run that
     * wraps around the end of the table. */
    const uint8_t body[] = {'q', 0, 0, 0};
    for (uint32_t home = 3; home <= 7; home += 4) {
        char names[4][16];
        names_with_home("c", home, 7, 4, names);
        for (int victim = 0; victim < 4; victim++) {
            prepared_map_t *map = prepared_map_create();
            bool present[4] = {true, true, true, true};
            for (int i = 0; i < 4; i++)
                assert_non_null(prepared_map_put(map, names[i], body, sizeof(body)));
            assert_true(prepared_map_remove(map, names[victim]));
            present[victim] = false;
            assert_names(map, names, present, 4);
            assert_int_equal(prepared_map_count(map), 3);
            prepared_map_free(map);
        }
    }
}

static void map_removal_shifts_entries_of_later_homes_back(void **state)
{
    /* Two names of home 3 and two of home 4 interleave into one run 3..6; removing the first
     * must pull the others back without putting a home-4 name before slot 4. */
    const uint8_t body[] = {'q', 0, 0, 0};
    char at3[2][16], at4[2][16];
    names_with_home("h", 3, 7, 2, at3);
    names_with_home("k", 4, 7, 2, at4);
    char names[4][16];
    memcpy(names[0], at3[0], 16);
    memcpy(names[1], at4[0], 16);
    memcpy(names[2], at3[1], 16);
    memcpy(names[3], at4[1], 16);
    for (int victim = 0; victim < 4; victim++) {
        prepared_map_t *map = prepared_map_create();
        bool present[4] = {true, true, true, true};
        for (int i = 0; i < 4; i++)
            assert_non_null(prepared_map_put(map, names[i], body, sizeof(body)));
        assert_true(prepared_map_remove(map, names[victim]));
        present[victim] = false;
        assert_names(map, names, present, 4);
        /* A second removal in the shifted run, then a re-insert of both. */
        int second = (victim + 2) % 4;
        assert_true(prepared_map_remove(map, names[second]));
        present[second] = false;
        assert_names(map, names, present, 4);
        assert_non_null(prepared_map_put(map, names[victim], body, sizeof(body)));
        assert_non_null(prepared_map_put(map, names[second], body, sizeof(body)));
        present[victim] = present[second] = true;
        assert_names(map, names, present, 4);
        assert_int_equal(prepared_map_count(map), 4);
        prepared_map_free(map);
    }
}

static void map_matches_a_model_over_random_puts_and_removes(void **state)
{
    enum { NAMES = 64, OPS = 5000 };
    int version[NAMES] = {0}; /* 0 = absent, else the body's version */
    uint64_t seed = 0x9e3779b97f4a7c15u;
    prepared_map_t *map = prepared_map_create();
    char name[16], body[32];
    for (int op = 0; op < OPS; op++) {
        int i = (int)(next_random(&seed) % NAMES);
        snprintf(name, sizeof(name), "n%d", i);
        if (next_random(&seed) % 3 != 0) {
            int n = snprintf(body, sizeof(body), "%d/%d", i, op) + 1;
            assert_non_null(prepared_map_put(map, name, (const uint8_t *)body, (uint32_t)n));
            version[i] = op + 1;
        } else {
            assert_int_equal(prepared_map_remove(map, name), version[i] != 0);
            version[i] = 0;
        }
        int count = 0;
        for (int j = 0; j < NAMES; j++) {
            snprintf(name, sizeof(name), "n%d", j);
            prepared_stmt_t *stmt = prepared_map_get(map, name);
            if (version[j] == 0) {
                assert_null(stmt);
                continue;
            }
            count++;
            assert_non_null(stmt);
            int n = snprintf(body, sizeof(body), "%d/%d", j, version[j] - 1) + 1;
            assert_int_equal(stmt->body_len, n);
            assert_memory_equal(stmt->body, body, (size_t)n);
        }
        assert_int_equal(prepared_map_count(map), count);
    }
    prepared_map_free(map);
}

/* ---- server cache ---- */

static void cache_starts_empty(void **state)
{
    prepared_cache_t *cache = prepared_cache_create(4);
    assert_non_null(cache);
    assert_int_equal(prepared_cache_count(cache), 0);
    assert_false(prepared_cache_lookup(cache, 42));
    assert_false(prepared_cache_lookup(cache, 0));
    prepared_cache_free(cache);
}

static void cache_free_accepts_null(void **state)
{
    prepared_cache_free(NULL);
}

static void cache_add_then_lookup_finds_it(void **state)
{
    prepared_cache_t *cache = prepared_cache_create(4);
    uint64_t evicted = 7;
    assert_false(prepared_cache_add(cache, 42, &evicted));
    assert_int_equal(evicted, 7); /* untouched when nothing was evicted */
    assert_true(prepared_cache_lookup(cache, 42));
    assert_false(prepared_cache_lookup(cache, 43));
    assert_int_equal(prepared_cache_count(cache), 1);
    prepared_cache_free(cache);
}

static void cache_hash_zero_is_a_valid_statement(void **state)
{
    prepared_cache_t *cache = prepared_cache_create(2);
    uint64_t evicted;
    assert_false(prepared_cache_add(cache, 0, &evicted));
    assert_true(prepared_cache_lookup(cache, 0));
    assert_int_equal(prepared_cache_count(cache), 1);
    prepared_cache_remove(cache, 0);
    assert_false(prepared_cache_lookup(cache, 0));
    prepared_cache_free(cache);
}

static void cache_add_of_present_statement_changes_nothing(void **state)
{
    prepared_cache_t *cache = prepared_cache_create(2);
    uint64_t evicted;
    assert_false(prepared_cache_add(cache, 1, &evicted));
    assert_false(prepared_cache_add(cache, 2, &evicted));
    assert_false(prepared_cache_add(cache, 1, &evicted));
    assert_int_equal(prepared_cache_count(cache), 2);
    prepared_cache_free(cache);
}

static void cache_remove_forgets_statement(void **state)
{
    prepared_cache_t *cache = prepared_cache_create(4);
    uint64_t evicted;
    assert_false(prepared_cache_add(cache, 1, &evicted));
    assert_false(prepared_cache_add(cache, 2, &evicted));
    prepared_cache_remove(cache, 1);
    assert_false(prepared_cache_lookup(cache, 1));
    assert_true(prepared_cache_lookup(cache, 2));
    assert_int_equal(prepared_cache_count(cache), 1);
    prepared_cache_remove(cache, 99); /* unknown: nothing happens */
    prepared_cache_remove(cache, 1);
    assert_int_equal(prepared_cache_count(cache), 1);
    prepared_cache_free(cache);
}

static void cache_full_evicts_in_insertion_order_without_lookups(void **state)
{
    prepared_cache_t *cache = prepared_cache_create(2);
    uint64_t evicted = 0;
    assert_false(prepared_cache_add(cache, 10, &evicted));
    assert_false(prepared_cache_add(cache, 20, &evicted));
    assert_true(prepared_cache_add(cache, 30, &evicted));
    assert_int_equal(evicted, 10);
    assert_true(prepared_cache_add(cache, 40, &evicted));
    assert_int_equal(evicted, 20);
    assert_int_equal(prepared_cache_count(cache), 2);
    assert_false(prepared_cache_lookup(cache, 10));
    assert_false(prepared_cache_lookup(cache, 20));
    assert_true(prepared_cache_lookup(cache, 30));
    assert_true(prepared_cache_lookup(cache, 40));
    prepared_cache_free(cache);
}

static void cache_evicts_least_recently_used_not_least_recently_added(void **state)
{
    prepared_cache_t *cache = prepared_cache_create(3);
    uint64_t evicted = 0;
    assert_false(prepared_cache_add(cache, 0xa, &evicted));
    assert_false(prepared_cache_add(cache, 0xb, &evicted));
    assert_false(prepared_cache_add(cache, 0xc, &evicted));
    assert_true(prepared_cache_lookup(cache, 0xa)); /* a is now the most recently used */
    assert_true(prepared_cache_add(cache, 0xd, &evicted));
    assert_int_equal(evicted, 0xb);
    assert_false(prepared_cache_lookup(cache, 0xb));
    assert_true(prepared_cache_lookup(cache, 0xc)); /* order of use now: a, d, c */
    assert_true(prepared_cache_add(cache, 0xe, &evicted));
    assert_int_equal(evicted, 0xa);
    assert_true(prepared_cache_lookup(cache, 0xc));
    assert_true(prepared_cache_lookup(cache, 0xd));
    assert_true(prepared_cache_lookup(cache, 0xe));
    assert_int_equal(prepared_cache_count(cache), 3);
    prepared_cache_free(cache);
}

static void cache_re_add_counts_as_a_use(void **state)
{
    prepared_cache_t *cache = prepared_cache_create(2);
    uint64_t evicted = 0;
    assert_false(prepared_cache_add(cache, 1, &evicted));
    assert_false(prepared_cache_add(cache, 2, &evicted));
    assert_false(prepared_cache_add(cache, 1, &evicted));
    assert_true(prepared_cache_add(cache, 3, &evicted));
    assert_int_equal(evicted, 2);
    prepared_cache_free(cache);
}

static void cache_of_capacity_one_keeps_only_the_last(void **state)
{
    prepared_cache_t *cache = prepared_cache_create(1);
    uint64_t evicted = 0;
    assert_false(prepared_cache_add(cache, 5, &evicted));
    assert_true(prepared_cache_add(cache, 6, &evicted));
    assert_int_equal(evicted, 5);
    assert_int_equal(prepared_cache_count(cache), 1);
    assert_false(prepared_cache_lookup(cache, 5));
    assert_true(prepared_cache_lookup(cache, 6));
    assert_false(prepared_cache_add(cache, 6, &evicted));
    assert_int_equal(prepared_cache_count(cache), 1);
    prepared_cache_remove(cache, 6);
    assert_int_equal(prepared_cache_count(cache), 0);
    evicted = 99;
    assert_false(prepared_cache_add(cache, 7, &evicted));
    assert_int_equal(evicted, 99);
    prepared_cache_free(cache);
}

static void cache_after_remove_has_room_without_eviction(void **state)
{
    prepared_cache_t *cache = prepared_cache_create(2);
    uint64_t evicted = 0;
    assert_false(prepared_cache_add(cache, 1, &evicted));
    assert_false(prepared_cache_add(cache, 2, &evicted));
    prepared_cache_remove(cache, 1);
    assert_false(prepared_cache_add(cache, 3, &evicted));
    assert_int_equal(prepared_cache_count(cache), 2);
    assert_true(prepared_cache_lookup(cache, 2));
    assert_true(prepared_cache_lookup(cache, 3));
    prepared_cache_free(cache);
}

static void cache_matches_an_lru_model_with_colliding_hashes(void **state)
{
    /* Half of the hashes are multiples of 64, so they share a home slot and probe runs get
     * long; removals and evictions inside those runs must keep every other hash findable. */
    enum { KEYS = 48, CAPACITY = 16, OPS = 20000 };
    uint64_t keys[KEYS];
    uint64_t used[KEYS] = {0}; /* 0 = absent, else the model's clock when last used */
    uint64_t clock = 0, seed = 12345;
    for (int i = 0; i < KEYS; i++)
        keys[i] = i % 2 ? (uint64_t)i << 6 : (uint64_t)(i + 1) * UINT64_C(0x9e3779b97f4a7c15);
    prepared_cache_t *cache = prepared_cache_create(CAPACITY);
    for (int op = 0; op < OPS; op++) {
        int k = (int)(next_random(&seed) % KEYS);
        uint64_t r = next_random(&seed) % 4;
        int count = 0;
        for (int i = 0; i < KEYS; i++)
            count += used[i] != 0;
        if (r == 0) {
            prepared_cache_remove(cache, keys[k]);
            used[k] = 0;
        } else if (r == 1) {
            assert_int_equal(prepared_cache_lookup(cache, keys[k]), used[k] != 0);
            if (used[k] != 0)
                used[k] = ++clock;
        } else {
            uint64_t evicted = 0;
            bool did_evict = prepared_cache_add(cache, keys[k], &evicted);
            if (used[k] == 0 && count == CAPACITY) {
                int oldest = -1;
                for (int i = 0; i < KEYS; i++)
                    if (used[i] != 0 && (oldest < 0 || used[i] < used[oldest]))
                        oldest = i;
                assert_true(did_evict);
                assert_int_equal(evicted, keys[oldest]);
                used[oldest] = 0;
            } else {
                assert_false(did_evict);
            }
            used[k] = ++clock;
        }
        count = 0;
        for (int i = 0; i < KEYS; i++)
            count += used[i] != 0;
        assert_int_equal(prepared_cache_count(cache), count);
    }
    /* Every lookup refreshes, so check membership only at the end. */
    for (int i = 0; i < KEYS; i++)
        assert_int_equal(prepared_cache_lookup(cache, keys[i]), used[i] != 0);
    prepared_cache_free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_is_fnv1a_64),
        cmocka_unit_test(hash_is_equal_for_equal_bodies_in_different_memory),
        cmocka_unit_test(hash_differs_for_different_bodies),
        cmocka_unit_test(server_name_is_prefix_and_16_lowercase_hex_digits),
        cmocka_unit_test(map_starts_empty),
        cmocka_unit_test(map_free_accepts_null),
        cmocka_unit_test(map_put_copies_body_and_derives_server_name),
        cmocka_unit_test(map_unnamed_statement_is_a_name_like_any_other),
        cmocka_unit_test(map_equal_bodies_under_different_names_share_server_name),
        cmocka_unit_test(map_put_of_existing_name_replaces_statement),
        cmocka_unit_test(map_remove_forgets_only_that_name),
        cmocka_unit_test(map_clear_removes_everything_and_map_stays_usable),
        cmocka_unit_test(map_keeps_100_names_through_growth),
        cmocka_unit_test(map_removals_keep_every_other_name_findable),
        cmocka_unit_test(map_removal_inside_a_probe_run_keeps_the_rest_findable),
        cmocka_unit_test(map_removal_shifts_entries_of_later_homes_back),
        cmocka_unit_test(map_matches_a_model_over_random_puts_and_removes),
        cmocka_unit_test(cache_starts_empty),
        cmocka_unit_test(cache_free_accepts_null),
        cmocka_unit_test(cache_add_then_lookup_finds_it),
        cmocka_unit_test(cache_hash_zero_is_a_valid_statement),
        cmocka_unit_test(cache_add_of_present_statement_changes_nothing),
        cmocka_unit_test(cache_remove_forgets_statement),
        cmocka_unit_test(cache_full_evicts_in_insertion_order_without_lookups),
        cmocka_unit_test(cache_evicts_least_recently_used_not_least_recently_added),
        cmocka_unit_test(cache_re_add_counts_as_a_use),
        cmocka_unit_test(cache_of_capacity_one_keeps_only_the_last),
        cmocka_unit_test(cache_after_remove_has_room_without_eviction),
        cmocka_unit_test(cache_matches_an_lru_model_with_colliding_hashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
