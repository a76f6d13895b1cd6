/*
 * test_loop.c
 *    Unit tests of loop over socketpairs: events reach the callback, pausing reads makes no
 *    system call until bytes come that nobody asked for (then EPOLLIN is taken back and the
 *    callback is not called), resuming delivers what waited, and EPOLLOUT is dropped at once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "loop.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct fixture {
    loop_t *loop;
    int fds[2]; /* fds[0] is watched, the test writes to fds[1] */
    loop_io_t io;
    int calls;       /* callback calls */
    int last_events; /* what the last call got */
} fixture_t;

static void on_event(void *arg, int events)
{
    fixture_t *f = arg;
    f->calls++;
    f->last_events = events;
}

/* Stops loop_run after one batch. */
static void stop_after_batch(void *arg)
{
    loop_stop(arg);
}

/* One batch of the loop; with nothing to do it returns at the 20 ms tick. */
static void run_once(fixture_t *f)
{
    loop_run(f->loop);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = loop_create();
    assert_non_null(f->loop);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f->fds), 0);
    assert_int_equal(loop_add(f->loop, &f->io, f->fds[0], LOOP_READ, on_event, f), 0);
    loop_set_after(f->loop, stop_after_batch, f->loop);
    loop_set_tick(f->loop, 20, stop_after_batch, f->loop);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    loop_remove(f->loop, &f->io);
    close(f->fds[0]);
    close(f->fds[1]);
    loop_free(f->loop);
    free(f);
    return 0;
}

static void send_byte(fixture_t *f)
{
    assert_int_equal(write(f->fds[1], "x", 1), 1);
}

static void readable_socket_reaches_the_callback(void **state)
{
    fixture_t *f = *state;
    send_byte(f);
    run_once(f);
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->last_events, LOOP_READ);
}

static void pausing_reads_keeps_epollin_armed_until_bytes_come(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(loop_watch(f->loop, &f->io, 0), 0);
    assert_int_equal(f->io.mask, 0);
    assert_int_equal(f->io.armed, LOOP_READ); /* no epoll_ctl: nothing came yet */

    /* Resuming before anything came costs no system call either. */
    assert_int_equal(loop_watch(f->loop, &f->io, LOOP_READ), 0);
    assert_int_equal(f->io.armed, LOOP_READ);
    assert_int_equal(loop_watch(f->loop, &f->io, 0), 0);

    /* Bytes come while paused: taken back, not delivered. */
    send_byte(f);
    run_once(f);
    assert_int_equal(f->calls, 0);
    assert_int_equal(f->io.armed, 0);

    /* Once taken back, the bytes do not wake the loop again. */
    run_once(f);
    assert_int_equal(f->calls, 0);

    /* Resuming arms it again and what waited is delivered. */
    assert_int_equal(loop_watch(f->loop, &f->io, LOOP_READ), 0);
    assert_int_equal(f->io.armed, LOOP_READ);
    run_once(f);
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->last_events, LOOP_READ);
}

static void epollout_is_dropped_at_once(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(loop_watch(f->loop, &f->io, LOOP_READ | LOOP_WRITE), 0);
    run_once(f);
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->last_events, LOOP_WRITE);

    assert_int_equal(loop_watch(f->loop, &f->io, LOOP_READ), 0);
    assert_int_equal(f->io.armed, LOOP_READ);
    run_once(f); /* writable, but no longer asked for: nothing */
    assert_int_equal(f->calls, 1);

    /* Pausing everything keeps only EPOLLIN in the kernel. */
    assert_int_equal(loop_watch(f->loop, &f->io, LOOP_WRITE), 0);
    assert_int_equal(f->io.armed, LOOP_READ | LOOP_WRITE);
    assert_int_equal(loop_watch(f->loop, &f->io, 0), 0);
    assert_int_equal(f->io.armed, LOOP_READ);
    run_once(f);
    assert_int_equal(f->calls, 1);
}

static void removed_io_gets_no_event(void **state)
{
    fixture_t *f = *state;
    send_byte(f);
    loop_forget(&f->io);
    assert_int_equal(f->io.armed, 0);
    run_once(f); /* still registered in the kernel, so the event comes, and is skipped */
    assert_int_equal(f->calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(readable_socket_reaches_the_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(pausing_reads_keeps_epollin_armed_until_bytes_come, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(epollout_is_dropped_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(removed_io_gets_no_event, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
