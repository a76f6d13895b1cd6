/*
 * buf.h
 *    Byte buffers for connection I/O and for building protocol messages.
 *
 * A buf_t holds the bytes between start and end of a heap block. Reading appends at end,
 * consuming advances start; when start catches up with end both return to zero, so a buffer
 * that is drained between messages never moves data. Blocks of the default size are recycled
 * through a per-thread free list: an idle connection holds no block at all (buf_release), and
 * taking one back costs no malloc on the forwarding path.
 */
#ifndef PGTURBO_BUF_H
#define PGTURBO_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BUF_DEFAULT_SIZE (16 * 1024)

typedef struct buf {
    uint8_t *data;  /* NULL until the first reserve */
    uint32_t start; /* first unconsumed byte */
    uint32_t end;   /* one past the last byte */
    uint32_t cap;   /* size of data */
} buf_t;

/* Bytes held. */
static inline uint32_t buf_len(const buf_t *b)
{
    return b->end - b->start;
}

/* First byte held (valid only while buf_len() > 0 or right after buf_reserve). */
static inline uint8_t *buf_head(const buf_t *b)
{
    return b->data + b->start;
}

/* Where the next appended byte goes; buf_reserve() first. */
static inline uint8_t *buf_tail(const buf_t *b)
{
    return b->data + b->end;
}

/* Room after end. */
static inline uint32_t buf_room(const buf_t *b)
{
    return b->cap - b->end;
}

/*
 * Makes room for at least n more bytes after end, moving held bytes to the front or growing
 * the block. Returns 0, or -1 when memory runs out or n would take the buffer past 2 GiB.
 */
__attribute__((warn_unused_result)) int buf_reserve(buf_t *b, size_t n);

/* Appends n bytes; returns 0 or -1 as buf_reserve(). */
__attribute__((warn_unused_result)) int buf_append(buf_t *b, const void *p, size_t n);

/* Marks n bytes as written after a caller filled buf_tail() directly. */
static inline void buf_produce(buf_t *b, uint32_t n)
{
    b->end += n;
}

/* Drops what was appended after the first n bytes held (n <= buf_len()). */
static inline void buf_truncate(buf_t *b, uint32_t n)
{
    b->end = b->start + n;
}

/* Drops n bytes from the front. */
void buf_consume(buf_t *b, uint32_t n);

/* Gives the block back (to the thread's free list if it has the default size) when empty. */
void buf_release(buf_t *b);

/* Frees the block whatever it holds. */
void buf_free(buf_t *b);

/* Frees the calling thread's free list; called when a worker thread ends. */
void buf_thread_cleanup(void);

#endif /* PGTURBO_BUF_H */
