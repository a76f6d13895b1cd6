/*
 * cachestore.h
 *    The query result store that every worker thread shares: a key -> value map bounded in
 *    memory and entries, whose entries die with the table generations they were filled at.
 *
 * Keys and values are opaque bytes; the caller hashes the key (any good 64-bit hash) and the
 * store compares the full key. Each entry remembers, for every table the query read, a
 * generation counter (cachegen.h) and the value it had before the query was sent; a lookup
 * that finds any counter moved, or the entry past its expiry, removes the entry and misses.
 * So a writer invalidates by bumping a counter, without touching the store.
 *
 * The store is split into CACHESTORE_SHARDS shards by hash, each with its own mutex, table
 * and share of the limits (1/CACHESTORE_SHARDS of max_memory and max_entries, the remainders
 * spread over the first shards). Within a shard eviction is a segmented LRU: a new entry
 * enters the probation segment; its first hit moves it to the protected segment, which holds
 * at most 80% of the shard's entries and bytes and pushes its least recent entries back to
 * the head of probation when over. Eviction takes the tail of probation first, so entries
 * hit at least once outlive any flood of entries that are never read again, as long as they
 * fit in the protected segment.
 *
 * Memory: every entry is one allocation holding its header, dependencies, key and value.
 * Values of at least compress_min bytes are stored lz4-compressed when that makes them
 * smaller. An entry counts against max_memory as CACHESTORE_ENTRY_OVERHEAD + key length +
 * stored value length + 16 bytes per dependency; the overhead covers the entry header, the
 * allocator's chunk header and rounding, and the entry's share of the hash table's buckets.
 * Not counted: the store's fixed 37 KB (shards and their first buckets), and the page
 * rounding of entries large enough for the allocator to mmap them (glibc: 128 KB and up),
 * under 4 KB each.
 */
#ifndef PGTURBO_CACHESTORE_H
#define PGTURBO_CACHESTORE_H

#include "buf.h"
#include "cachegen.h"

#include <stddef.h>
#include <stdint.h>

#define CACHESTORE_SHARDS         16
#define CACHESTORE_MAX_RULES      64 /* rules with counters of their own */
#define CACHESTORE_MAX_DEPS       64 /* dependencies of one entry */
#define CACHESTORE_ENTRY_OVERHEAD 104
#define CACHESTORE_MAX_LEN        (UINT32_C(1) << 30) /* keys and values must be shorter */

/* One table an entry read: its counter and the value the counter had before the query. */
typedef struct cachestore_dep {
    cachegen_counter_t *counter;
    uint64_t seen;
} cachestore_dep_t;

typedef struct cachestore_limits {
    size_t max_memory;     /* bytes counted over all entries (see above) */
    uint32_t max_entries;  /* entries over all shards */
    size_t max_entry_size; /* longest value stored, before compression */
    size_t compress_min;   /* values at least this long are tried with lz4 */
} cachestore_limits_t;

/* Totals since create, and current sizes. */
typedef struct cachestore_counters {
    uint64_t hits, misses;
    uint64_t stale;         /* found, but a dependency had moved: removed, counted a miss */
    uint64_t expired;       /* found, but past its expiry: removed, counted a miss */
    uint64_t evictions;     /* removed to make room */
    uint64_t inserts;       /* stored by cachestore_put (replacements included) */
    uint64_t rejected;      /* not stored: too big, or a dependency already moved */
    uint64_t invalidations; /* removed by cachestore_remove_dep/remove_rule/clear */
    uint64_t entries;       /* now: entries held */
    uint64_t bytes;         /* now: bytes counted against max_memory */
    uint64_t value_bytes;   /* now: the values' raw length */
    uint64_t stored_bytes;  /* now: the values' stored (maybe compressed) length */
} cachestore_counters_t;

typedef struct cachestore cachestore_t;

typedef enum cachestore_result {
    CACHESTORE_MISS = 0,
    CACHESTORE_HIT = 1,
} cachestore_result_t;

/* Makes an empty store with limits (borrowed, copied). Returns NULL when memory runs out.
 * Caller frees with cachestore_free(). */
cachestore_t *cachestore_create(const cachestore_limits_t *limits);

/* Frees s and every entry; NULL accepted. */
void cachestore_free(cachestore_t *s);

/* Takes new limits (borrowed, copied), on config reload; evicts down to them at once.
 * Thread-safe. */
void cachestore_set_limits(cachestore_t *s, const cachestore_limits_t *limits);

/*
 * Looks up key (borrowed, keylen bytes; hash is the caller's 64-bit hash of it). An entry
 * found past its expiry (now_ms >= expires_ms) or with a dependency whose counter no longer
 * holds the value seen is removed and the lookup is a miss (counted expired or stale).
 *
 * On a hit appends the value, decompressed, to out (borrowed) with buf_append, sets *rule to
 * the entry's rule and returns CACHESTORE_HIT. Returns CACHESTORE_MISS, or -1 when out cannot
 * grow (nothing appended, the entry kept). Allocates nothing but out's growth. Thread-safe.
 */
__attribute__((warn_unused_result)) int cachestore_get(cachestore_t *s, uint64_t hash,
                                                       const void *key, size_t keylen,
                                                       int64_t now_ms, buf_t *out, uint16_t *rule);

/*
 * Stores copies of key, value, and deps (ndeps of them, 0 to CACHESTORE_MAX_DEPS), expiring
 * at expires_ms, under rule; all arguments are borrowed. An entry of the same key is replaced.
 * Evicts the least valuable entries of the shard to make room.
 *
 * Just before storing, every dependency counter is read again; if one no longer holds its
 * seen value, or a seen value carries cachegen's pending mark, the value may already be stale
 * and is not stored. Returns 0 when stored; 1 when not (value longer than max_entry_size, key
 * or value of CACHESTORE_MAX_LEN or more, ndeps out of range, a dependency moved or was
 * pending, or the entry larger than its shard's share of max_memory or that share of
 * max_entries 0), counted rejected, with any entry of the same key kept; -1 when memory runs
 * out. The counters must outlive the entry (cachegen counters live until
 * cachegen_free, so free the store first). Thread-safe.
 */
__attribute__((warn_unused_result)) int cachestore_put(cachestore_t *s, uint64_t hash,
                                                       const void *key, size_t keylen,
                                                       const void *value, size_t vlen,
                                                       const cachestore_dep_t *deps, int ndeps,
                                                       int64_t expires_ms, uint16_t rule);

/* Removes every entry that depends on counter (borrowed; compared by address), as for POST
 * /cache/clear of one table. Returns how many; they count as invalidations. */
size_t cachestore_remove_dep(cachestore_t *s, const cachegen_counter_t *counter);

/* Removes every entry stored under rule. Returns how many; they count as invalidations. */
size_t cachestore_remove_rule(cachestore_t *s, uint16_t rule);

/* Removes every entry. Returns how many; they count as invalidations. */
size_t cachestore_clear(cachestore_t *s);

/* Fills *out (borrowed) with the store's counters, summed shard by shard, each under its lock:
 * a consistent total only when nothing else runs. */
void cachestore_counters(cachestore_t *s, cachestore_counters_t *out);

/* Counts one miss for rule: cachestore_get cannot tell a miss's rule, the caller can. Rules
 * of CACHESTORE_MAX_RULES or more are not counted. Lock-free. */
void cachestore_count_miss(cachestore_t *s, uint16_t rule);

/* Fills *out (borrowed) with rule's hits, misses, entries and bytes; the other fields are 0,
 * and all are 0 for a rule of CACHESTORE_MAX_RULES or more. */
void cachestore_rule_counters(cachestore_t *s, uint16_t rule, cachestore_counters_t *out);

/* One entry cachestore_top() passes: key (keylen bytes, valid only during the call), its
 * hits and its rule. */
typedef void (*cachestore_entry_fn)(void *arg, const void *key, size_t keylen, uint64_t hits,
                                    uint16_t rule);

/*
 * Calls fn(arg, ...) for up to max entries with the most hits, most hits first (ties in no
 * particular order), to warm a cache with. Keys are copied under the shard locks and fn runs
 * with no lock held, so fn may use the store. An entry whose key copy cannot be allocated is
 * skipped. Returns how many calls were made.
 */
size_t cachestore_top(cachestore_t *s, size_t max, cachestore_entry_fn fn, void *arg);

#endif /* PGTURBO_CACHESTORE_H */
