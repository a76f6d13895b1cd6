/*
 * test_buf.c
 *    Unit tests of buf: reserve, append, consume, compaction, growth, release to the
 *    per-thread free list and reuse from it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "buf.h"

#include <string.h>

/* Fills p with a pattern that differs at every offset within 251 bytes. */
static void fill_pattern(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i + seed) % 251);
}

/* Gives back the blocks each test left on the thread's free list. */
static int teardown_blocks(void **state)
{
    buf_thread_cleanup();
    return 0;
}

static void new_buffer_holds_no_block(void **state)
{
    buf_t b = {0};
    assert_null(b.data);
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(buf_room(&b), 0);
}

static void reserve_on_empty_buffer_takes_a_default_block(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_reserve(&b, 10), 0);
    assert_non_null(b.data);
    assert_int_equal(b.cap, BUF_DEFAULT_SIZE);
    assert_int_equal(b.start, 0);
    assert_int_equal(b.end, 0);
    assert_int_equal(buf_room(&b), BUF_DEFAULT_SIZE);
    buf_free(&b);
}

static void reserve_more_than_default_on_empty_buffer_allocates_enough(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_reserve(&b, 3 * BUF_DEFAULT_SIZE), 0);
    assert_non_null(b.data);
    assert_true(buf_room(&b) >= 3 * BUF_DEFAULT_SIZE);
    assert_int_equal(buf_len(&b), 0);
    buf_free(&b);
}

static void reserve_past_two_gib_fails_and_keeps_bytes(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    uint8_t *block = b.data;
    assert_int_equal(buf_reserve(&b, (size_t)1 << 31), -1);
    assert_ptr_equal(b.data, block);
    assert_int_equal(buf_len(&b), 3);
    assert_memory_equal(buf_head(&b), "abc", 3);
    buf_free(&b);
}

static void append_then_consume_returns_bytes_in_order(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "hello", 5), 0);
    assert_int_equal(buf_append(&b, " world", 6), 0);
    assert_int_equal(buf_len(&b), 11);
    assert_memory_equal(buf_head(&b), "hello world", 11);
    buf_consume(&b, 6);
    assert_int_equal(buf_len(&b), 5);
    assert_int_equal(b.start, 6);
    assert_memory_equal(buf_head(&b), "world", 5);
    buf_free(&b);
}

static void consume_everything_rewinds_to_the_front(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "abcdef", 6), 0);
    buf_consume(&b, 2);
    buf_consume(&b, 4);
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(b.start, 0);
    assert_int_equal(b.end, 0);
    assert_int_equal(buf_room(&b), BUF_DEFAULT_SIZE);
    buf_free(&b);
}

static void append_of_nothing_changes_nothing(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_append(&b, NULL, 0), 0);
    assert_int_equal(buf_len(&b), 0);
    assert_int_equal(buf_append(&b, "ab", 2), 0);
    assert_int_equal(buf_append(&b, NULL, 0), 0);
    assert_int_equal(buf_len(&b), 2);
    assert_memory_equal(buf_head(&b), "ab", 2);
    buf_free(&b);
}

static void produce_marks_bytes_written_at_tail(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "ab", 2), 0);
    assert_int_equal(buf_reserve(&b, 3), 0);
    memcpy(buf_tail(&b), "cde", 3);
    buf_produce(&b, 3);
    assert_int_equal(buf_len(&b), 5);
    assert_memory_equal(buf_head(&b), "abcde", 5);
    buf_free(&b);
}

static void reserve_moves_held_bytes_to_front_when_that_makes_room(void **state)
{
    static uint8_t data[BUF_DEFAULT_SIZE];
    fill_pattern(data, sizeof(data), 7);
    buf_t b = {0};
    assert_int_equal(buf_append(&b, data, 16000), 0);
    buf_consume(&b, 15000);
    uint8_t *block = b.data;
    assert_int_equal(buf_room(&b), BUF_DEFAULT_SIZE - 16000);
    assert_int_equal(buf_reserve(&b, 10000), 0);
    assert_ptr_equal(b.data, block);
    assert_int_equal(b.cap, BUF_DEFAULT_SIZE);
    assert_int_equal(b.start, 0);
    assert_int_equal(b.end, 1000);
    assert_memory_equal(buf_head(&b), data + 15000, 1000);
    assert_true(buf_room(&b) >= 10000);
    buf_free(&b);
}

static void reserve_with_enough_room_moves_nothing(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "abcdef", 6), 0);
    buf_consume(&b, 3);
    assert_int_equal(buf_reserve(&b, 100), 0);
    assert_int_equal(b.start, 3);
    assert_int_equal(b.end, 6);
    buf_free(&b);
}

static void append_beyond_default_size_grows_and_keeps_bytes(void **state)
{
    static uint8_t data[3 * BUF_DEFAULT_SIZE];
    fill_pattern(data, sizeof(data), 1);
    buf_t b = {0};
    assert_int_equal(buf_append(&b, data, BUF_DEFAULT_SIZE), 0);
    assert_int_equal(b.cap, BUF_DEFAULT_SIZE);
    assert_int_equal(buf_append(&b, data + BUF_DEFAULT_SIZE, 2 * BUF_DEFAULT_SIZE), 0);
    assert_true(b.cap >= 3 * BUF_DEFAULT_SIZE);
    assert_int_equal(buf_len(&b), sizeof(data));
    assert_memory_equal(buf_head(&b), data, sizeof(data));
    buf_free(&b);
}

static void growth_after_consume_keeps_only_held_bytes(void **state)
{
    static uint8_t data[2 * BUF_DEFAULT_SIZE];
    fill_pattern(data, sizeof(data), 3);
    buf_t b = {0};
    assert_int_equal(buf_append(&b, data, 1000), 0);
    buf_consume(&b, 400);
    assert_int_equal(buf_append(&b, data + 1000, sizeof(data) - 1000), 0);
    assert_int_equal(b.start, 0);
    assert_int_equal(buf_len(&b), sizeof(data) - 400);
    assert_memory_equal(buf_head(&b), data + 400, sizeof(data) - 400);
    buf_free(&b);
}

static void release_of_non_empty_buffer_keeps_its_bytes(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "keep", 4), 0);
    uint8_t *block = b.data;
    buf_release(&b);
    assert_ptr_equal(b.data, block);
    assert_int_equal(buf_len(&b), 4);
    assert_memory_equal(buf_head(&b), "keep", 4);
    buf_free(&b);
}

static void release_of_empty_buffer_drops_its_block(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "x", 1), 0);
    buf_consume(&b, 1);
    buf_release(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.start, 0);
    assert_int_equal(b.end, 0);
    buf_release(&b); /* releasing again is harmless */
    assert_null(b.data);
}

static void released_default_block_is_reused_by_next_reserve(void **state)
{
    buf_t a = {0}, b = {0};
    assert_int_equal(buf_append(&a, "first", 5), 0);
    uint8_t *block = a.data;
    buf_consume(&a, 5);
    buf_release(&a);
    assert_int_equal(buf_append(&b, "second", 6), 0);
    assert_ptr_equal(b.data, block);
    assert_int_equal(b.cap, BUF_DEFAULT_SIZE);
    assert_int_equal(buf_len(&b), 6);
    assert_memory_equal(buf_head(&b), "second", 6);
    buf_free(&b);
}

static void append_after_release_works(void **state)
{
    buf_t b = {0};
    for (int round = 0; round < 3; round++) {
        assert_int_equal(buf_append(&b, "abc", 3), 0);
        assert_int_equal(buf_len(&b), 3);
        assert_memory_equal(buf_head(&b), "abc", 3);
        buf_consume(&b, 3);
        buf_release(&b);
        assert_null(b.data);
    }
}

static void release_of_grown_block_then_append_works(void **state)
{
    static uint8_t data[2 * BUF_DEFAULT_SIZE];
    fill_pattern(data, sizeof(data), 5);
    buf_t b = {0};
    assert_int_equal(buf_append(&b, data, sizeof(data)), 0);
    buf_consume(&b, sizeof(data));
    buf_release(&b);
    assert_null(b.data);
    assert_int_equal(buf_append(&b, "ok", 2), 0);
    assert_int_equal(b.cap, BUF_DEFAULT_SIZE);
    assert_memory_equal(buf_head(&b), "ok", 2);
    buf_free(&b);
}

static void many_released_blocks_are_all_reusable(void **state)
{
    enum { N = 64 };
    buf_t bufs[N];
    memset(bufs, 0, sizeof(bufs));
    for (int i = 0; i < N; i++)
        assert_int_equal(buf_append(&bufs[i], &i, sizeof(i)), 0);
    for (int i = 0; i < N; i++) {
        buf_consume(&bufs[i], sizeof(i));
        buf_release(&bufs[i]);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(buf_append(&bufs[i], &i, sizeof(i)), 0);
    /* Every buffer got its own block: none of the writes overlapped. */
    for (int i = 0; i < N; i++) {
        int v;
        memcpy(&v, buf_head(&bufs[i]), sizeof(v));
        assert_int_equal(v, i);
    }
    for (int i = 0; i < N; i++)
        buf_free(&bufs[i]);
}

static void free_drops_block_whatever_it_holds(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "data", 4), 0);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    assert_int_equal(buf_len(&b), 0);
    buf_free(&b); /* freeing again is harmless */
    assert_int_equal(buf_append(&b, "z", 1), 0);
    assert_memory_equal(buf_head(&b), "z", 1);
    buf_free(&b);
}

static void thread_cleanup_empties_free_list_and_buffers_still_work(void **state)
{
    buf_t b = {0};
    assert_int_equal(buf_append(&b, "a", 1), 0);
    buf_free(&b);
    buf_thread_cleanup();
    buf_thread_cleanup(); /* a second call finds nothing to free */
    assert_int_equal(buf_append(&b, "b", 1), 0);
    assert_int_equal(b.cap, BUF_DEFAULT_SIZE);
    assert_memory_equal(buf_head(&b), "b", 1);
    buf_free(&b);
    buf_thread_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_buffer_holds_no_block),
        cmocka_unit_test(reserve_on_empty_buffer_takes_a_default_block),
        cmocka_unit_test(reserve_more_than_default_on_empty_buffer_allocates_enough),
        cmocka_unit_test(reserve_past_two_gib_fails_and_keeps_bytes),
        cmocka_unit_test(append_then_consume_returns_bytes_in_order),
        cmocka_unit_test(consume_everything_rewinds_to_the_front),
        cmocka_unit_test(append_of_nothing_changes_nothing),
        cmocka_unit_test(produce_marks_bytes_written_at_tail),
        cmocka_unit_test(reserve_moves_held_bytes_to_front_when_that_makes_room),
        cmocka_unit_test(reserve_with_enough_room_moves_nothing),
        cmocka_unit_test(append_beyond_default_size_grows_and_keeps_bytes),
        cmocka_unit_test(growth_after_consume_keeps_only_held_bytes),
        cmocka_unit_test(release_of_non_empty_buffer_keeps_its_bytes),
        cmocka_unit_test(release_of_empty_buffer_drops_its_block),
        cmocka_unit_test(released_default_block_is_reused_by_next_reserve),
        cmocka_unit_test(append_after_release_works),
        cmocka_unit_test(release_of_grown_block_then_append_works),
        cmocka_unit_test(many_released_blocks_are_all_reusable),
        cmocka_unit_test(free_drops_block_whatever_it_holds),
        cmocka_unit_test(thread_cleanup_empties_free_list_and_buffers_still_work),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_blocks);
}
