/*
 * test_cachegen.c
 *    Unit tests of cachegen: interning of namespaces and names, the namespace-wide counter,
 *    capacity, name length, bumps, and threads racing to create the same names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cachegen.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static void namespaces_are_interned_from_one(void **state)
{
    cachegen_t *g = cachegen_create(16);
    assert_non_null(g);
    assert_int_equal(cachegen_namespace(g, "127.0.0.1:5432/app"), 1);
    assert_int_equal(cachegen_namespace(g, "127.0.0.1:5432/other"), 2);
    assert_int_equal(cachegen_namespace(g, "127.0.0.1:5432/app"), 1);
    assert_int_equal(cachegen_namespace(g, ""), 3);
    cachegen_free(g);
}

static void namespace_table_holds_256_then_gives_zero(void **state)
{
    cachegen_t *g = cachegen_create(16);
    char target[32];
    for (int i = 0; i < CACHEGEN_MAX_NAMESPACES; i++) {
        snprintf(target, sizeof(target), "host:5432/db%d", i);
        assert_int_equal(cachegen_namespace(g, target), i + 1);
    }
    assert_int_equal(cachegen_namespace(g, "host:5432/one-too-many"), 0);
    assert_int_equal(cachegen_namespace(g, "host:5432/db255"), 256);
    cachegen_free(g);
}

static void get_creates_at_one_and_returns_same_pointer(void **state)
{
    cachegen_t *g = cachegen_create(16);
    uint32_t ns = cachegen_namespace(g, "db");
    cachegen_counter_t *users = cachegen_get(g, ns, "users");
    assert_non_null(users);
    assert_int_equal(cachegen_read(users), 1);
    assert_ptr_equal(cachegen_get(g, ns, "users"), users);
    assert_ptr_equal(cachegen_find(g, ns, "users"), users);
    assert_int_equal(cachegen_count(g), 1);
    cachegen_free(g);
}

static void find_never_creates(void **state)
{
    cachegen_t *g = cachegen_create(16);
    uint32_t ns = cachegen_namespace(g, "db");
    assert_null(cachegen_find(g, ns, "orders"));
    assert_int_equal(cachegen_count(g), 0);
    assert_non_null(cachegen_get(g, ns, "orders"));
    assert_non_null(cachegen_find(g, ns, "orders"));
    cachegen_free(g);
}

static void bump_returns_new_value_and_read_sees_it(void **state)
{
    cachegen_t *g = cachegen_create(16);
    uint32_t ns = cachegen_namespace(g, "db");
    cachegen_counter_t *c = cachegen_get(g, ns, "t");
    assert_int_equal(cachegen_bump(c), 2);
    assert_int_equal(cachegen_bump(c), 3);
    assert_int_equal(cachegen_read(c), 3);
    assert_int_equal(cachegen_read(cachegen_get(g, ns, "t")), 3);
    cachegen_free(g);
}

static void pending_marks_nest_and_each_step_moves_the_generation(void **state)
{
    cachegen_counter_t c = 7;
    cachegen_begin_pending(&c);
    uint64_t first = cachegen_read(&c);
    assert_true(cachegen_is_pending(first));
    cachegen_begin_pending(&c);
    cachegen_end_pending(&c);
    uint64_t still = cachegen_read(&c);
    assert_true(cachegen_is_pending(still));
    assert_true(still != first);
    cachegen_end_pending(&c);
    assert_false(cachegen_is_pending(cachegen_read(&c)));
    assert_int_equal(cachegen_read(&c), 7 + 4);
    assert_int_equal(cachegen_bump(&c), 7 + 5);
}

static void same_name_in_two_namespaces_is_two_counters(void **state)
{
    cachegen_t *g = cachegen_create(16);
    uint32_t a = cachegen_namespace(g, "host:5432/a");
    uint32_t b = cachegen_namespace(g, "host:5432/b");
    cachegen_counter_t *ca = cachegen_get(g, a, "users");
    cachegen_counter_t *cb = cachegen_get(g, b, "users");
    assert_non_null(ca);
    assert_non_null(cb);
    assert_ptr_not_equal(ca, cb);
    cachegen_bump(ca);
    assert_int_equal(cachegen_read(ca), 2);
    assert_int_equal(cachegen_read(cb), 1);
    assert_int_equal(cachegen_count(g), 2);
    cachegen_free(g);
}

static void empty_name_is_namespace_wide_counter_outside_capacity(void **state)
{
    cachegen_t *g = cachegen_create(1);
    uint32_t a = cachegen_namespace(g, "a");
    uint32_t b = cachegen_namespace(g, "b");
    assert_non_null(cachegen_get(g, a, "t"));
    assert_null(cachegen_get(g, a, "u"));
    cachegen_counter_t *all_a = cachegen_find(g, a, "");
    cachegen_counter_t *all_b = cachegen_get(g, b, "");
    assert_non_null(all_a);
    assert_non_null(all_b);
    assert_ptr_not_equal(all_a, all_b);
    assert_ptr_equal(cachegen_get(g, a, ""), all_a);
    assert_int_equal(cachegen_read(all_a), 1);
    assert_int_equal(cachegen_bump(all_a), 2);
    assert_int_equal(cachegen_read(all_b), 1);
    assert_int_equal(cachegen_count(g), 1);
    cachegen_free(g);
}

static void capacity_reached_gives_null_but_existing_names_still_found(void **state)
{
    cachegen_t *g = cachegen_create(3);
    uint32_t ns = cachegen_namespace(g, "db");
    cachegen_counter_t *c[3];
    c[0] = cachegen_get(g, ns, "t0");
    c[1] = cachegen_get(g, ns, "t1");
    c[2] = cachegen_get(g, ns, "t2");
    for (int i = 0; i < 3; i++)
        assert_non_null(c[i]);
    assert_null(cachegen_get(g, ns, "t3"));
    assert_null(cachegen_find(g, ns, "t3"));
    assert_int_equal(cachegen_count(g), 3);
    assert_ptr_equal(cachegen_get(g, ns, "t1"), c[1]);
    cachegen_free(g);
}

static void zero_capacity_gives_only_namespace_counters(void **state)
{
    cachegen_t *g = cachegen_create(0);
    assert_non_null(g);
    uint32_t ns = cachegen_namespace(g, "db");
    assert_null(cachegen_get(g, ns, "t"));
    assert_non_null(cachegen_get(g, ns, ""));
    cachegen_free(g);
}

static void capacity_beyond_maximum_is_refused(void **state)
{
    assert_null(cachegen_create(CACHEGEN_MAX_CAPACITY + 1));
}

static void name_of_63_bytes_accepted_and_64_refused(void **state)
{
    cachegen_t *g = cachegen_create(4);
    uint32_t ns = cachegen_namespace(g, "db");
    char name[CACHEGEN_NAME_LEN + 1];
    memset(name, 'x', CACHEGEN_NAME_LEN - 1);
    name[CACHEGEN_NAME_LEN - 1] = '\0';
    cachegen_counter_t *longest = cachegen_get(g, ns, name);
    assert_non_null(longest);
    assert_ptr_equal(cachegen_find(g, ns, name), longest);
    name[CACHEGEN_NAME_LEN - 1] = 'x';
    name[CACHEGEN_NAME_LEN] = '\0';
    assert_null(cachegen_get(g, ns, name));
    assert_null(cachegen_find(g, ns, name));
    assert_int_equal(cachegen_count(g), 1);
    cachegen_free(g);
}

static void unknown_namespace_gives_null(void **state)
{
    cachegen_t *g = cachegen_create(4);
    assert_null(cachegen_get(g, 0, "t"));
    assert_null(cachegen_get(g, 1, "t"));
    assert_null(cachegen_get(g, 1, ""));
    assert_int_equal(cachegen_namespace(g, "db"), 1);
    assert_null(cachegen_get(g, 2, "t"));
    assert_null(cachegen_find(g, 2, ""));
    assert_int_equal(cachegen_count(g), 0);
    cachegen_free(g);
}

static void free_accepts_null(void **state)
{
    cachegen_free(NULL);
}

/* ---- threads racing ---- */

#define RACE_THREADS 4
#define RACE_NAMES   500

typedef struct racer {
    cachegen_t *g;
    int index;
    uint32_t ns[2];
    pthread_barrier_t *start;
    cachegen_counter_t *got[2][RACE_NAMES];
} racer_t;

/* Creates the same names as every other racer, in an order of its own, bumping each. */
static void *race(void *arg)
{
    racer_t *r = arg;
    char name[CACHEGEN_NAME_LEN];
    pthread_barrier_wait(r->start);
    for (int k = 0; k < RACE_NAMES; k++) {
        int i = (k * 7 + r->index * 101) % RACE_NAMES; /* 7 is prime to 500: all names */
        snprintf(name, sizeof(name), "table_%d", i);
        for (int n = 0; n < 2; n++) {
            r->got[n][i] = cachegen_get(r->g, r->ns[n], name);
            if (r->got[n][i] != NULL)
                cachegen_bump(r->got[n][i]);
        }
    }
    return NULL;
}

static void threads_racing_to_create_same_names_get_same_pointers(void **state)
{
    cachegen_t *g = cachegen_create(2 * RACE_NAMES);
    uint32_t ns[2] = {cachegen_namespace(g, "db1"), cachegen_namespace(g, "db2")};
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACE_THREADS);
    static racer_t racers[RACE_THREADS];
    pthread_t threads[RACE_THREADS];
    for (int t = 0; t < RACE_THREADS; t++) {
        racers[t] = (racer_t){.g = g, .index = t, .ns = {ns[0], ns[1]}, .start = &start};
        assert_int_equal(pthread_create(&threads[t], NULL, race, &racers[t]), 0);
    }
    for (int t = 0; t < RACE_THREADS; t++)
        pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&start);

    assert_int_equal(cachegen_count(g), 2 * RACE_NAMES);
    char name[CACHEGEN_NAME_LEN];
    for (int n = 0; n < 2; n++) {
        for (int i = 0; i < RACE_NAMES; i++) {
            snprintf(name, sizeof(name), "table_%d", i);
            cachegen_counter_t *c = cachegen_find(g, ns[n], name);
            assert_non_null(c);
            for (int t = 0; t < RACE_THREADS; t++)
                assert_ptr_equal(racers[t].got[n][i], c);
            /* Created at 1, then bumped once by every racer. */
            assert_int_equal(cachegen_read(c), 1 + RACE_THREADS);
        }
    }
    cachegen_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(namespaces_are_interned_from_one),
        cmocka_unit_test(namespace_table_holds_256_then_gives_zero),
        cmocka_unit_test(get_creates_at_one_and_returns_same_pointer),
        cmocka_unit_test(find_never_creates),
        cmocka_unit_test(bump_returns_new_value_and_read_sees_it),
        cmocka_unit_test(pending_marks_nest_and_each_step_moves_the_generation),
        cmocka_unit_test(same_name_in_two_namespaces_is_two_counters),
        cmocka_unit_test(empty_name_is_namespace_wide_counter_outside_capacity),
        cmocka_unit_test(capacity_reached_gives_null_but_existing_names_still_found),
        cmocka_unit_test(zero_capacity_gives_only_namespace_counters),
        cmocka_unit_test(capacity_beyond_maximum_is_refused),
        cmocka_unit_test(name_of_63_bytes_accepted_and_64_refused),
        cmocka_unit_test(unknown_namespace_gives_null),
        cmocka_unit_test(free_accepts_null),
        cmocka_unit_test(threads_racing_to_create_same_names_get_same_pointers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
