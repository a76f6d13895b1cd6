/*
 * loop.h
 *    A small epoll event loop, one per worker thread, that knows nothing about PostgreSQL.
 *
 * Interest is level-triggered and set per file descriptor with loop_watch(); a connection
 * normally keeps EPOLLIN on for its whole life and asks for EPOLLOUT only while a write is
 * pending, so the forwarding path makes no epoll_ctl calls at all. Dropping EPOLLIN is lazy:
 * the kernel keeps reporting it until an event actually comes that nobody asked for, and only
 * then is it taken back, so a client that pauses while it waits for a server, and sends
 * nothing meanwhile, pauses and resumes without a system call. Time is read once per
 * iteration (loop_now) and periodic ticks drive every timeout: a tick that scans connections
 * costs less than a timer per connection that is almost never due.
 */
#ifndef PGTURBO_LOOP_H
#define PGTURBO_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct loop loop_t;

#define LOOP_READ  1
#define LOOP_WRITE 2

/* Called with the events that fired (LOOP_READ/LOOP_WRITE; errors and hangups as LOOP_READ). */
typedef void (*loop_io_fn)(void *arg, int events);
/* Called every period by loop_run. */
typedef void (*loop_tick_fn)(void *arg);

/* An I/O registration; embedded in the object it belongs to, which must outlive it. */
typedef struct loop_io {
    int fd;
    int mask;  /* events asked for: the callback gets only these */
    int armed; /* events the kernel reports: mask, plus LOOP_READ not yet taken back */
    loop_io_fn fn;
    void *arg;
} loop_io_t;

/* Creates a loop; NULL when epoll_create fails. Free with loop_free(). */
loop_t *loop_create(void);
void loop_free(loop_t *loop);

/* Registers fd with the events in mask. Returns 0 or -errno. */
__attribute__((warn_unused_result)) int loop_add(loop_t *loop, loop_io_t *io, int fd, int mask,
                                                 loop_io_fn fn, void *arg);
/* Changes the events asked for; a no-op when mask is unchanged. Returns 0 or -errno. */
__attribute__((warn_unused_result)) int loop_watch(loop_t *loop, loop_io_t *io, int mask);
/* Unregisters (the fd stays open, the caller closes it). */
void loop_remove(loop_t *loop, loop_io_t *io);

/*
 * Forgets io without a system call, for a caller about to close its fd (closing removes it
 * from epoll). Events already fetched for it in this batch are skipped, as after loop_remove.
 */
void loop_forget(loop_io_t *io);

/* Sets the tick: fn(arg) every period_ms while the loop runs. One tick per loop. */
void loop_set_tick(loop_t *loop, int period_ms, loop_tick_fn fn, void *arg);

/*
 * Sets fn(arg) to run after each batch of events. An object unregistered during a batch may
 * still have an event later in the same batch (which loop_run skips); objects are therefore
 * freed, or handed to another thread, only from this hook.
 */
void loop_set_after(loop_t *loop, loop_tick_fn fn, void *arg);

/* Runs until loop_stop(). */
void loop_run(loop_t *loop);
/* Makes loop_run return after the current iteration; call from the loop's own thread. */
void loop_stop(loop_t *loop);

/* Monotonic milliseconds, as read at the start of the current iteration. */
int64_t loop_now(const loop_t *loop);

/* Monotonic milliseconds, read now. */
int64_t loop_clock_ms(void);

/* Monotonic microseconds, read now (a vDSO call, no system call). */
int64_t loop_clock_us(void);

#endif /* PGTURBO_LOOP_H */
