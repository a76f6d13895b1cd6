/*
 * cachelogical.h
 *    The result cache's view of writes that bypass pgturbo (cache_invalidation = logical): one
 *    thread that streams PostgreSQL's logical decoding of the database, through the test_decoding
 *    plugin over the replication protocol, and reports every table each committed transaction
 *    changed, so that the cache bumps those tables' generations.
 *
 * The slot is TEMPORARY: it belongs to the consumer's connection and goes with it, so a pgturbo
 * that dies never leaves a slot behind that holds WAL forever. The price is that whatever commits
 * while the consumer has no connection is never decoded: after every connect (the first one
 * too) the consumer therefore reports that any table may have changed.
 *
 * The thread never blocks where a stop cannot reach it: it waits with poll() on its connection
 * and on an eventfd that cachelogical_stop writes, so a stop ends a connect, a slot creation
 * that waits for old transactions, a read or a back-off wait at once. (Only the DNS lookup of
 * a host name, inside libpq, cannot be interrupted.)
 *
 * The line parser is a pure function over test_decoding's text, exported for the unit tests.
 */
#ifndef PGTURBO_CACHELOGICAL_H
#define PGTURBO_CACHELOGICAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* PostgreSQL's NAMEDATALEN: schema and table names are at most 63 bytes, plus the NUL. */
#define CACHELOGICAL_NAME_LEN 64

/* Past this many distinct tables in one transaction, the transaction is reported as "any table
 * may have changed" instead of table by table, so that memory stays bounded. */
#define CACHELOGICAL_MAX_TABLES 256

typedef struct cachelogical cachelogical_t;

/* The table a parsed change names (cachelogical_parse_line), as PostgreSQL stores its schema
 * and relname (unquoted); the strings are valid only during the call. */
typedef void (*cachelogical_fn)(void *arg, const char *schema, const char *relname);

/* One table a committed transaction changed. */
typedef struct cachelogical_table {
    const char *schema;
    const char *relname;
} cachelogical_table_t;

/*
 * What the consumer reports, on its thread, without any lock of the consumer's held; both must
 * be quick (they hold up the stream) and thread-safe.
 *
 * commit(arg, tables, n): a transaction committed that inserted into, updated, deleted from or
 * truncated the n distinct tables given (valid only during the call; n may be 0 for one that
 * only emitted logical messages), or tables == NULL and n == 0 when changes may have been
 * missed (after every connect, the first one too, and for a transaction that changed more
 * than CACHELOGICAL_MAX_TABLES tables or whose changes could not be read): the caller must then
 * treat every table as changed. It is called before the
 * consumer confirms the transaction to the server, so a commit that waits for the consumer as
 * a synchronous standby returns to its client only after. Returns a token (NULL allowed).
 *
 * visible(arg, token): the transaction commit() reported is visible to every snapshot taken
 * from now on. A commit that waits for a synchronous standby becomes visible only after the
 * standby confirmed it, so between commit() and visible() a new snapshot may still miss the
 * changes. Called exactly once per token, in no particular order between transactions: when a
 * fresh snapshot no longer lists the transaction as running, at once for a report of "any
 * table", after a reconnect once the new slot exists (its creation waits for every transaction
 * that was running), and at the stop.
 */
typedef struct cachelogical_callbacks {
    void *(*commit)(void *arg, const cachelogical_table_t *tables, int n);
    void (*visible)(void *arg, void *token);
    void *arg;
} cachelogical_callbacks_t;

/* A copy of the consumer's state. */
typedef struct cachelogical_status {
    bool connected;         /* streaming through a slot now */
    uint64_t transactions;  /* committed transactions with changes, reported through commit */
    uint64_t changes;       /* change lines (one per row, or one per TRUNCATE) in those */
    uint64_t reconnects;    /* connection attempts after the first one */
    int64_t last_change_ms; /* wall clock (Unix ms) of the last such transaction; 0 = never */
    char last_error[256];   /* the last error, kept after a reconnect; "" = none yet */
    char slot[64];          /* the slot of the current connection; "" without one */
    uint64_t received_lsn;  /* the furthest WAL position the server has sent */
    uint64_t flushed_lsn;   /* the position last confirmed to the server as processed */
    uint32_t invisible;     /* reported transactions not yet known to be visible */
} cachelogical_status_t;

/*
 * Starts the consumer: a thread that connects with conninfo (a libpq connection string or URI,
 * with replication=database forced), creates a TEMPORARY logical slot named slot_prefix, "_"
 * and 12 random hexadecimal digits with the test_decoding plugin, streams its changes and
 * reports them through cb as described above, confirming to the server what it has processed
 * (at once after each transaction, every second, and when the server asks) so that the server
 * can recycle WAL. To tell when a reported transaction is visible it reads pg_current_snapshot()
 * on a second, ordinary connection (application_name pgturbo_cache_visibility). On any error
 * of either connection it logs one line, waits (1 s, doubling up to 30 s; back to 1 s once a
 * connection has streamed), connects again with a new slot and reports "any table". A server
 * that is down is therefore not an error here: the thread keeps trying.
 *
 * conninfo and slot_prefix are copied; *cb is copied and cb->arg borrowed until
 * cachelogical_stop returns. slot_prefix is 1 to 50 lowercase letters, digits and underscores.
 * Returns the consumer, which the caller ends with cachelogical_stop, or NULL with the reason in
 * err when conninfo does not parse, slot_prefix is not valid, memory runs out or the thread
 * cannot be started.
 */
__attribute__((warn_unused_result)) cachelogical_t *
cachelogical_start(const char *conninfo, const char *slot_prefix,
                   const cachelogical_callbacks_t *cb, char *err, size_t errlen);

/* Stops the thread, promptly, whatever it is waiting for, reports every token not yet visible
 * as visible, closes its connections (the server drops the temporary slot with them) and frees
 * l. No callback happens after it returns. NULL is accepted. */
void cachelogical_stop(cachelogical_t *l);

/* Copies l's state into out; all zero when l is NULL. Thread-safe: callable from any thread
 * while l runs. */
void cachelogical_status(cachelogical_t *l, cachelogical_status_t *out);

/* What one line of test_decoding's output is. */
typedef enum cachelogical_line {
    CACHELOGICAL_LINE_OTHER,   /* not a transaction's bound nor a change (a logical message ...) */
    CACHELOGICAL_LINE_BEGIN,   /* "BEGIN", perhaps followed by a space and more (an xid) */
    CACHELOGICAL_LINE_COMMIT,  /* "COMMIT", likewise */
    CACHELOGICAL_LINE_CHANGE,  /* an INSERT, UPDATE or DELETE of one table, a TRUNCATE of some */
    CACHELOGICAL_LINE_UNKNOWN, /* starts as a change does ("table ") but does not parse */
} cachelogical_line_t;

/*
 * Whether committed transaction xid is visible to a snapshot whose xmax and running xids
 * (running[0 .. n-1]) are given, all in 32 bits: it precedes xmax (a transaction at or past
 * xmax counts as running, and the newest one often is: xmax is one past the latest transaction
 * that ended, so a commit waiting for a synchronous standby may be at it) and is not running.
 * Xids compare modulo 2^32, as PostgreSQL's do: xid is far more recent than 2^31 transactions.
 * Pure.
 */
bool cachelogical_xid_visible(uint32_t xid, uint32_t xmax, const uint32_t *running, int n);

/* The transaction id of a BEGIN or COMMIT line that carries one ("COMMIT 742"), or 0 (which
 * is never a transaction's). Pure. */
uint32_t cachelogical_line_xid(const char *line, size_t len);

/*
 * Reads one line of test_decoding's output: the len bytes at line (a whole XLogData payload,
 * which need not end with a NUL and may hold newlines inside quoted values). For a change, calls
 * table_fn(arg, schema, relname) once for each table it names, in order (a TRUNCATE may name
 * several), with the names unquoted ("" inside quotes read as ") and never NULL; it calls
 * table_fn only once the names and the action after them have parsed, never for an UNKNOWN line
 * (the row values that follow the action are not read). Pure: no state, no allocation.
 */
cachelogical_line_t cachelogical_parse_line(const char *line, size_t len, cachelogical_fn table_fn,
                                            void *arg);

#endif /* PGTURBO_CACHELOGICAL_H */
