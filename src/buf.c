/*
 * buf.c
 *    Byte buffers for connection I/O, with a per-thread free list of default-size blocks.
 */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

#define FREE_LIST_MAX 4096
#define BUF_MAX_SIZE  (UINT32_C(1) << 31)

/* Default-size blocks given back by buffers of this thread, ready for reuse. */
static __thread uint8_t *free_list[FREE_LIST_MAX];
static __thread int free_count;

static uint8_t *block_take(void)
{
    if (free_count > 0)
        return free_list[--free_count];
    return malloc(BUF_DEFAULT_SIZE);
}

static void block_give(uint8_t *block, uint32_t cap)
{
    if (cap == BUF_DEFAULT_SIZE && free_count < FREE_LIST_MAX)
        free_list[free_count++] = block;
    else
        free(block);
}

int buf_reserve(buf_t *b, size_t n)
{
    if (b->cap - b->end >= n)
        return 0;
    if (b->data == NULL && n <= BUF_DEFAULT_SIZE) {
        b->data = block_take();
        if (b->data == NULL)
            return -1;
        b->cap = BUF_DEFAULT_SIZE;
        b->start = b->end = 0;
        return 0;
    }
    uint32_t held = b->end - b->start;
    if ((size_t)held + n > BUF_MAX_SIZE)
        return -1;
    if (b->start > 0 && b->cap - held >= n) {
        memmove(b->data, b->data + b->start, held);
        b->start = 0;
        b->end = held;
        return 0;
    }
    size_t cap = b->cap ? b->cap : BUF_DEFAULT_SIZE;
    while (cap < held + n)
        cap *= 2;
    if (cap > BUF_MAX_SIZE)
        cap = BUF_MAX_SIZE;
    uint8_t *data = malloc(cap);
    if (data == NULL)
        return -1;
    if (held > 0)
        memcpy(data, b->data + b->start, held);
    if (b->data != NULL)
        block_give(b->data, b->cap);
    b->data = data;
    b->cap = (uint32_t)cap;
    b->start = 0;
    b->end = held;
    return 0;
}

int buf_append(buf_t *b, const void *p, size_t n)
{
    if (n == 0) /* p may be NULL then, and memcpy must not see it */
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->end, p, n);
    b->end += (uint32_t)n;
    return 0;
}

void buf_consume(buf_t *b, uint32_t n)
{
    b->start += n;
    if (b->start == b->end)
        b->start = b->end = 0;
}

void buf_release(buf_t *b)
{
    if (b->data == NULL || b->start != b->end)
        return;
    block_give(b->data, b->cap);
    b->data = NULL;
    b->cap = b->start = b->end = 0;
}

void buf_free(buf_t *b)
{
    if (b->data != NULL)
        block_give(b->data, b->cap);
    b->data = NULL;
    b->cap = b->start = b->end = 0;
}

void buf_thread_cleanup(void)
{
    while (free_count > 0)
        free(free_list[--free_count]);
}
