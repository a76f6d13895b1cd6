/*
 * test_loopdetect.c
 *    N+1 detection on scripted sequences of fingerprints and parameters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "loopdetect.h"

enum { LIST = 1, ITEM = 2, OTHER = 3 };

static void test_a_loop_is_found_at_the_threshold_with_the_query_before_it(void **state)
{
    loop_scope_t sc = {0};
    uint64_t before = 99;
    assert_int_equal(loop_scope_run(&sc, LIST, 1, 10, &before), 0);
    for (uint64_t id = 1; id < 10; id++)
        assert_int_equal(loop_scope_run(&sc, ITEM, id, 10, &before), 0);
    assert_int_equal(before, 99); /* untouched until a finding */
    assert_int_equal(loop_scope_run(&sc, ITEM, 10, 10, &before), 10);
    assert_int_equal(before, LIST);
}

static void test_a_loop_is_reported_once_per_scope(void **state)
{
    loop_scope_t sc = {0};
    uint64_t before;
    for (uint64_t id = 1; id <= 5; id++)
        loop_scope_run(&sc, ITEM, id, 5, &before);
    for (uint64_t id = 6; id <= 20; id++)
        assert_int_equal(loop_scope_run(&sc, ITEM, id, 5, &before), 0);
    loop_scope_reset(&sc);
    for (uint64_t id = 1; id < 5; id++)
        assert_int_equal(loop_scope_run(&sc, ITEM, id, 5, &before), 0);
    assert_int_equal(loop_scope_run(&sc, ITEM, 5, 5, &before), 5);
    assert_int_equal(before, 0); /* nothing ran before it in the new scope */
}

static void test_repeats_with_the_same_parameters_are_no_loop(void **state)
{
    loop_scope_t sc = {0};
    uint64_t before;
    for (int i = 0; i < 50; i++)
        assert_int_equal(loop_scope_run(&sc, ITEM, 7, 10, &before), 0);
}

static void test_interleaved_queries_keep_their_own_counts(void **state)
{
    loop_scope_t sc = {0};
    uint64_t before = 0;
    int found = 0;
    for (uint64_t id = 1; id <= 10; id++) {
        found += loop_scope_run(&sc, ITEM, id, 10, &before) > 0;
        found += loop_scope_run(&sc, OTHER, id, 10, &before) > 0;
    }
    assert_int_equal(found, 2);
}

static void test_fingerprints_beyond_the_slots_are_ignored(void **state)
{
    loop_scope_t sc = {0};
    uint64_t before;
    for (uint64_t fp = 100; fp < 100 + LOOP_SLOTS; fp++)
        loop_scope_run(&sc, fp, 1, 3, &before);
    for (uint64_t id = 1; id <= 10; id++)
        assert_int_equal(loop_scope_run(&sc, ITEM, id, 3, &before), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_loop_is_found_at_the_threshold_with_the_query_before_it),
        cmocka_unit_test(test_a_loop_is_reported_once_per_scope),
        cmocka_unit_test(test_repeats_with_the_same_parameters_are_no_loop),
        cmocka_unit_test(test_interleaved_queries_keep_their_own_counts),
        cmocka_unit_test(test_fingerprints_beyond_the_slots_are_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
