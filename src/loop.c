/*
 * loop.c
 *    epoll event loop with a periodic tick; see loop.h.
 */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct loop {
    int epfd;
    bool stopping;
    int64_t now;
    int tick_period;
    int64_t next_tick;
    loop_tick_fn tick_fn;
    void *tick_arg;
    loop_tick_fn after_fn;
    void *after_arg;
};

int64_t loop_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t loop_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

loop_t *loop_create(void)
{
    loop_t *loop = calloc(1, sizeof(*loop));
    if (loop == NULL)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    loop->now = loop_clock_ms();
    return loop;
}

void loop_free(loop_t *loop)
{
    if (loop == NULL)
        return;
    close(loop->epfd);
    free(loop);
}

static uint32_t epoll_mask(int mask)
{
    uint32_t ev = 0;
    if (mask & LOOP_READ)
        ev |= EPOLLIN | EPOLLRDHUP;
    if (mask & LOOP_WRITE)
        ev |= EPOLLOUT;
    return ev;
}

int loop_add(loop_t *loop, loop_io_t *io, int fd, int mask, loop_io_fn fn, void *arg)
{
    io->fd = fd;
    io->mask = io->armed = mask;
    io->fn = fn;
    io->arg = arg;
    struct epoll_event ev = {.events = epoll_mask(mask), .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

static int arm(loop_t *loop, loop_io_t *io, int armed)
{
    struct epoll_event ev = {.events = epoll_mask(armed), .data.ptr = io};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return -errno;
    io->armed = armed;
    return 0;
}

int loop_watch(loop_t *loop, loop_io_t *io, int mask)
{
    io->mask = mask;
    /* A readable socket stays armed (see loop.h); a writable one would fire at once. */
    int armed = mask | (io->armed & LOOP_READ);
    return armed == io->armed ? 0 : arm(loop, io, armed);
}

void loop_remove(loop_t *loop, loop_io_t *io)
{
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->mask = io->armed = 0;
}

void loop_forget(loop_io_t *io)
{
    io->mask = io->armed = 0;
}

void loop_set_tick(loop_t *loop, int period_ms, loop_tick_fn fn, void *arg)
{
    loop->tick_period = period_ms;
    loop->tick_fn = fn;
    loop->tick_arg = arg;
    loop->next_tick = loop_clock_ms() + period_ms;
}

void loop_set_after(loop_t *loop, loop_tick_fn fn, void *arg)
{
    loop->after_fn = fn;
    loop->after_arg = arg;
}

void loop_stop(loop_t *loop)
{
    loop->stopping = true;
}

int64_t loop_now(const loop_t *loop)
{
    return loop->now;
}

static int wait_timeout(const loop_t *loop)
{
    if (loop->tick_fn == NULL)
        return -1;
    int64_t left = loop->next_tick - loop->now;
    return left < 0 ? 0 : (int)left;
}

void loop_run(loop_t *loop)
{
    struct epoll_event events[MAX_EVENTS];
    loop->stopping = false;
    while (!loop->stopping) {
        int n = epoll_wait(loop->epfd, events, MAX_EVENTS, wait_timeout(loop));
        loop->now = loop_clock_ms();
        for (int i = 0; i < n; i++) {
            loop_io_t *io = events[i].data.ptr;
            uint32_t e = events[i].events;
            if (io->armed == 0)
                continue; /* unregistered earlier in this batch */
            int fired = 0;
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                fired |= LOOP_READ;
            if (e & EPOLLOUT)
                fired |= LOOP_WRITE;
            /* Take back what nobody asks for any more; a MOD of a registered fd does not
             * fail, and if it did the event would simply come again. */
            if ((fired & ~io->mask) != 0 && arm(loop, io, io->mask) < 0)
                continue;
            fired &= io->mask;
            if (fired != 0)
                io->fn(io->arg, fired);
        }
        if (loop->after_fn != NULL)
            loop->after_fn(loop->after_arg);
        if (loop->tick_fn != NULL && loop->now >= loop->next_tick) {
            loop->next_tick = loop->now + loop->tick_period;
            loop->tick_fn(loop->tick_arg);
        }
    }
}
