/*
 * cachelogical_link.h
 *    The inside of the logical-decoding consumer (struct cachelogical and its libpq helpers that
 *    never block past a stop), shared by cachelogical.c (the thread, the stream and the parser)
 *    and cachelogical_visible.c (when the transactions it reported become visible). Private to
 *    those two files; not part of cachelogical.h's API.
 *
 * The fields under "the thread's own" are touched only by the consumer's thread; status is
 * written by it and read by cachelogical_status under the lock.
 */
#ifndef PGTURBO_CACHELOGICAL_LINK_H
#define PGTURBO_CACHELOGICAL_LINK_H

#include "cachelogical.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The random part of a slot's name, and the longest prefix that leaves room for it and "_" in
 * PostgreSQL's 63 bytes. */
#define CACHELOGICAL_SUFFIX_HEX 12
#define CACHELOGICAL_PREFIX_MAX (CACHELOGICAL_NAME_LEN - 1 - 1 - CACHELOGICAL_SUFFIX_HEX)

/* Buckets of the hash of a transaction's tables: twice the tables, so a probe stays short and
 * a free bucket always exists. */
#define CACHELOGICAL_BUCKETS (2 * CACHELOGICAL_MAX_TABLES)

/* Reported transactions whose visibility the consumer waits for at most; a transaction more
 * waits until one of them is visible. */
#define CACHELOGICAL_MAX_INVISIBLE 1024

/* One table of the transaction being read. */
typedef struct cachelogical_name {
    char schema[CACHELOGICAL_NAME_LEN];
    char relname[CACHELOGICAL_NAME_LEN];
} cachelogical_name_t;

/* A reported transaction not yet known to be visible. */
typedef struct cachelogical_invisible {
    uint32_t xid;
    void *token; /* what commit() gave, for visible() */
} cachelogical_invisible_t;

struct cachelogical {
    /* Set by cachelogical_start, then only read. */
    char *conninfo;
    char prefix[CACHELOGICAL_PREFIX_MAX + 1];
    cachelogical_callbacks_t cb;
    int wake_fd; /* an eventfd that cachelogical_stop makes readable, for good */
    pthread_t thread;
    atomic_bool stopping;

    /* The thread's own. */
    PGconn *conn;    /* the stream's connection; NULL between attempts */
    PGconn *side;    /* the ordinary connection that reads snapshots; NULL until needed */
    char where[256]; /* "database D on H:P" of the connection, for the log */
    char slot[CACHELOGICAL_NAME_LEN];
    uint64_t received_lsn;  /* of this connection */
    uint64_t processed_lsn; /* of this connection: what the next status update confirms */
    int64_t next_status;    /* loop_clock_ms() time of the next status update */
    bool warned_unknown;    /* a line that does not parse was logged on this connection */
    bool in_transaction;    /* a BEGIN or a change came, and its COMMIT not yet */
    bool any_table;         /* the transaction is reported as "any table may have changed" */
    uint64_t changes;       /* change lines of the transaction */
    int n_tables;
    cachelogical_name_t tables[CACHELOGICAL_MAX_TABLES];
    uint16_t buckets[CACHELOGICAL_BUCKETS]; /* 1 + the index of a table in tables; 0 = free */
    cachelogical_table_t report[CACHELOGICAL_MAX_TABLES]; /* what commit() is given */
    int n_invisible;
    cachelogical_invisible_t invisible[CACHELOGICAL_MAX_INVISIBLE];
    int64_t next_check; /* loop_clock_ms() time of the next snapshot read, while some wait */

    pthread_mutex_t lock;
    cachelogical_status_t status;
};

typedef enum cachelogical_wait {
    CACHELOGICAL_READY,   /* the socket has what was waited for (or an error libpq will tell) */
    CACHELOGICAL_TIMEOUT, /* the deadline passed */
    CACHELOGICAL_STOP,    /* a stop was asked for */
    CACHELOGICAL_FAILED,  /* poll failed; errno says why */
} cachelogical_wait_t;

/* Waits until fd (none when -1) has events, the loop_clock_ms() time deadline passes (never
 * when -1) or a stop is asked for, whichever comes first. */
cachelogical_wait_t cachelogical_wait(cachelogical_t *l, int fd, short events, int64_t deadline);

/* The reason a wait that was not CACHELOGICAL_READY ended, into err. */
void cachelogical_describe_wait(char *err, size_t errlen, const char *what, cachelogical_wait_t w);

/* Connects *conn (set even on failure, for the caller to PQfinish) with l->conninfo: in
 * replication mode when replication, else as an ordinary session named application_name.
 * Returns true, or false with the reason in err. */
bool cachelogical_connect(cachelogical_t *l, PGconn **conn, bool replication,
                          const char *application_name, char *err, size_t errlen);

/* Waits until libpq can give the next result of what was sent on conn, then sets *res to it
 * (NULL when there are no more). Returns false with the reason in err when the connection
 * fails. */
bool cachelogical_await(cachelogical_t *l, PGconn *conn, PGresult **res, const char *what,
                        char *err, size_t errlen);

/* Why a command's result (NULL when there was none) is not the one expected, into err. */
void cachelogical_describe_result(char *err, size_t errlen, const char *what, const PGresult *res,
                                  PGconn *conn);

/* ---- cachelogical_visible.c ---- */

/* Waits for the visibility of the reported transaction xid, whose commit() gave token; when
 * CACHELOGICAL_MAX_INVISIBLE already wait, first reads snapshots until one is visible.
 * Returns true, or false with the reason in err (token then counts as visible already). */
bool cachelogical_visible_track(cachelogical_t *l, uint32_t xid, void *token, char *err,
                                size_t errlen);

/* Reads a snapshot when transactions wait and it is due, and reports those no longer running.
 * Returns true, or false with the reason in err when the snapshot cannot be read. */
bool cachelogical_visible_check(cachelogical_t *l, char *err, size_t errlen);

/* The loop_clock_ms() time of the next snapshot read, or -1 when no transaction waits. */
int64_t cachelogical_visible_due(const cachelogical_t *l);

/* Reports every waiting transaction visible (after a new slot exists, and at the stop). */
void cachelogical_visible_release_all(cachelogical_t *l);

/* Closes the snapshot connection, when there is one. */
void cachelogical_visible_close(cachelogical_t *l);

#endif /* PGTURBO_CACHELOGICAL_LINK_H */
