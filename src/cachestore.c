/*
 * cachestore.c
 *    The shared query result store: sharded hash table, segmented LRU, lz4; see cachestore.h.
 *
 * A shard is a mutex, a chained hash table of entries, two LRU lists (probation and
 * protected) and its counters. Every operation on an entry happens under its shard's lock and
 * nothing takes two shard locks at once, so there is no lock order to keep. The caller's hash
 * is mixed once more before use: its top bits pick the shard and its low bits the bucket, so
 * a caller's hash whose high bits are weak still spreads over the shards.
 *
 * The bucket array doubles whenever the shard holds as many entries as buckets, so it holds
 * between one and two pointers per entry (16 bytes of the per-entry overhead); it never
 * shrinks, but it is bounded by what max_memory lets the shard hold at its peak. If doubling
 * fails the shard keeps working with longer chains.
 *
 * Values are compressed outside the lock, in a scratch block, and the entry is allocated at
 * its final size, so what an entry costs is known before it is stored. A hit copies (or
 * decompresses) the value straight into the caller's buffer under the lock: the entry may be
 * evicted the moment the lock is released, and taking it out first would cost an allocation
 * and a second copy on every hit.
 */
#include "cachestore.h"

#include <lz4.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SHARD_BITS        4
#define INITIAL_BUCKETS   64
#define PROTECTED_PERCENT 80

/* An entry's header, followed in the same allocation by its dependencies, its key and its
 * stored value. */
typedef struct entry {
    struct entry *chain;         /* next entry in the same bucket */
    struct entry *newer, *older; /* neighbours in its segment's list */
    uint64_t hash;               /* the caller's hash of the key */
    uint64_t hits;
    int64_t expires_ms;
    uint32_t keylen;
    uint32_t vlen;   /* the value's raw length */
    uint32_t stored; /* bytes stored: vlen when raw, fewer when compressed */
    uint16_t rule;
    uint8_t ndeps;
    uint8_t protected; /* in the protected segment, else in probation */
    cachestore_dep_t deps[];
} entry_t;

/* The header, the allocator's chunk header (8 bytes) and rounding to 16 (up to 15 more, 16
 * counted), and one to two bucket pointers (16). */
_Static_assert(sizeof(entry_t) + 16 + 16 + 8 <= CACHESTORE_ENTRY_OVERHEAD,
               "CACHESTORE_ENTRY_OVERHEAD must cover the entry header and what surrounds it");
_Static_assert(CACHESTORE_SHARDS == 1 << SHARD_BITS, "shard count and bits disagree");

/* One LRU list, newest at the head. */
typedef struct segment {
    entry_t *newest, *oldest;
    uint32_t entries;
    size_t bytes;
} segment_t;

/* A rule's share of a shard. */
typedef struct rule_counts {
    uint64_t hits, entries, bytes;
} rule_counts_t;

typedef struct shard {
    pthread_mutex_t lock;
    entry_t **buckets;
    uint32_t mask; /* buckets - 1 */
    segment_t probation, protected;
    uint32_t max_entries; /* this shard's share of the limits */
    size_t max_memory;
    cachestore_counters_t counts;
    rule_counts_t rules[CACHESTORE_MAX_RULES];
} shard_t;

struct cachestore {
    shard_t shards[CACHESTORE_SHARDS];
    /* Read by cachestore_put before it takes a lock; set_limits may change them meanwhile. */
    _Atomic size_t max_entry_size;
    _Atomic size_t compress_min;
    _Atomic uint64_t rule_misses[CACHESTORE_MAX_RULES];
};

static uint64_t mix(uint64_t hash)
{
    hash *= UINT64_C(0x9E3779B97F4A7C15);
    return hash ^ (hash >> 32);
}

static shard_t *shard_of(cachestore_t *s, uint64_t hash)
{
    return &s->shards[mix(hash) >> (64 - SHARD_BITS)];
}

static const uint8_t *entry_key(const entry_t *e)
{
    return (const uint8_t *)(e->deps + e->ndeps);
}

static const uint8_t *entry_value(const entry_t *e)
{
    return entry_key(e) + e->keylen;
}

static size_t entry_cost(const entry_t *e)
{
    return CACHESTORE_ENTRY_OVERHEAD + e->ndeps * sizeof(cachestore_dep_t) + e->keylen + e->stored;
}

static rule_counts_t *rule_counts(shard_t *sh, uint16_t rule)
{
    return rule < CACHESTORE_MAX_RULES ? &sh->rules[rule] : NULL;
}

/* Share i of total split CACHESTORE_SHARDS ways, the remainder going to the first shards. */
static size_t share(size_t total, int i)
{
    return total / CACHESTORE_SHARDS + ((size_t)i < total % CACHESTORE_SHARDS ? 1 : 0);
}

/* ---- the segments ---- */

static segment_t *segment_of(shard_t *sh, const entry_t *e)
{
    return e->protected ? &sh->protected : &sh->probation;
}

static void segment_unlink(shard_t *sh, entry_t *e)
{
    segment_t *seg = segment_of(sh, e);
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        seg->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        seg->oldest = e->newer;
    e->newer = e->older = NULL;
    seg->entries--;
    seg->bytes -= entry_cost(e);
}

static void segment_push(shard_t *sh, entry_t *e, bool protected)
{
    e->protected = protected;
    segment_t *seg = segment_of(sh, e);
    e->newer = NULL;
    e->older = seg->newest;
    if (seg->newest != NULL)
        seg->newest->newer = e;
    seg->newest = e;
    if (seg->oldest == NULL)
        seg->oldest = e;
    seg->entries++;
    seg->bytes += entry_cost(e);
}

/* Moves the protected segment's least recent entries to the head of probation until it is
 * within its share of the shard's limits. */
static void protected_trim(shard_t *sh)
{
    uint32_t max_entries = (uint32_t)((uint64_t)sh->max_entries * PROTECTED_PERCENT / 100);
    size_t max_bytes = sh->max_memory / 100 * PROTECTED_PERCENT;
    while (sh->protected.entries > max_entries || sh->protected.bytes > max_bytes) {
        entry_t *e = sh->protected.oldest;
        segment_unlink(sh, e);
        segment_push(sh, e, false);
    }
}

/* ---- the table ---- */

static uint32_t bucket_of(const shard_t *sh, uint64_t hash)
{
    return (uint32_t)mix(hash) & sh->mask;
}

/* The link that points at key's entry, or at NULL at the end of its chain. */
static entry_t **table_find(shard_t *sh, uint64_t hash, const void *key, size_t keylen)
{
    entry_t **link = &sh->buckets[bucket_of(sh, hash)];
    for (entry_t *e; (e = *link) != NULL; link = &e->chain)
        if (e->hash == hash && e->keylen == keylen &&
            (keylen == 0 || memcmp(entry_key(e), key, keylen) == 0)) /* key may be NULL */
            return link;
    return link;
}

/* Doubles the bucket array; on failure keeps the old one. */
static void table_grow(shard_t *sh)
{
    uint32_t size = (sh->mask + 1) * 2;
    entry_t **buckets = calloc(size, sizeof(*buckets));
    if (buckets == NULL)
        return;
    for (uint32_t i = 0; i <= sh->mask; i++) {
        for (entry_t *e = sh->buckets[i], *next; e != NULL; e = next) {
            next = e->chain;
            uint32_t b = (uint32_t)mix(e->hash) & (size - 1);
            e->chain = buckets[b];
            buckets[b] = e;
        }
    }
    free(sh->buckets);
    sh->buckets = buckets;
    sh->mask = size - 1;
}

/* Links e at the end of link's chain (where table_find() ended) and into probation. */
static void entry_link(shard_t *sh, entry_t **link, entry_t *e)
{
    e->chain = NULL;
    *link = e;
    segment_push(sh, e, false);
    size_t cost = entry_cost(e);
    sh->counts.entries++;
    sh->counts.bytes += cost;
    sh->counts.value_bytes += e->vlen;
    sh->counts.stored_bytes += e->stored;
    rule_counts_t *rc = rule_counts(sh, e->rule);
    if (rc != NULL) {
        rc->entries++;
        rc->bytes += cost;
    }
    if (sh->counts.entries > sh->mask)
        table_grow(sh);
}

/* Takes e out of the table, its segment and the counters, and frees it. */
static void entry_remove(shard_t *sh, entry_t *e)
{
    entry_t **link = &sh->buckets[bucket_of(sh, e->hash)];
    while (*link != e)
        link = &(*link)->chain;
    *link = e->chain;
    segment_unlink(sh, e);
    size_t cost = entry_cost(e);
    sh->counts.entries--;
    sh->counts.bytes -= cost;
    sh->counts.value_bytes -= e->vlen;
    sh->counts.stored_bytes -= e->stored;
    rule_counts_t *rc = rule_counts(sh, e->rule);
    if (rc != NULL) {
        rc->entries--;
        rc->bytes -= cost;
    }
    free(e);
}

/* Evicts until the shard has room for entries more entries of bytes more bytes, or is empty:
 * probation's least recent first, then protected's. */
static void shard_make_room(shard_t *sh, uint32_t entries, size_t bytes)
{
    while (sh->counts.entries + entries > sh->max_entries ||
           sh->counts.bytes + bytes > sh->max_memory) {
        entry_t *victim =
            sh->probation.oldest != NULL ? sh->probation.oldest : sh->protected.oldest;
        if (victim == NULL)
            return;
        entry_remove(sh, victim);
        sh->counts.evictions++;
    }
}

/* Whether every counter e depends on still holds the value e saw. */
static bool deps_current(const entry_t *e)
{
    for (int i = 0; i < e->ndeps; i++)
        if (cachegen_read(e->deps[i].counter) != e->deps[i].seen)
            return false;
    return true;
}

/* Whether e may be stored: its counters still hold the values it saw, and none of them was
 * marked pending then (a change committed but not visible yet may be missing from it). */
static bool deps_storable(const entry_t *e)
{
    for (int i = 0; i < e->ndeps; i++)
        if (cachegen_is_pending(e->deps[i].seen))
            return false;
    return deps_current(e);
}

/* ---- the store ---- */

static void shard_set_limits(shard_t *sh, const cachestore_limits_t *limits, int i)
{
    sh->max_entries = (uint32_t)share(limits->max_entries, i);
    sh->max_memory = share(limits->max_memory, i);
}

cachestore_t *cachestore_create(const cachestore_limits_t *limits)
{
    cachestore_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    for (int i = 0; i < CACHESTORE_SHARDS; i++) {
        shard_t *sh = &s->shards[i];
        sh->buckets = calloc(INITIAL_BUCKETS, sizeof(*sh->buckets));
        if (sh->buckets == NULL) {
            while (i-- > 0) {
                free(s->shards[i].buckets);
                pthread_mutex_destroy(&s->shards[i].lock);
            }
            free(s);
            return NULL;
        }
        sh->mask = INITIAL_BUCKETS - 1;
        shard_set_limits(sh, limits, i);
        pthread_mutex_init(&sh->lock, NULL);
    }
    atomic_init(&s->max_entry_size, limits->max_entry_size);
    atomic_init(&s->compress_min, limits->compress_min);
    for (int r = 0; r < CACHESTORE_MAX_RULES; r++)
        atomic_init(&s->rule_misses[r], 0);
    return s;
}

void cachestore_free(cachestore_t *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < CACHESTORE_SHARDS; i++) {
        shard_t *sh = &s->shards[i];
        entry_t *lists[] = {sh->probation.newest, sh->protected.newest};
        for (int l = 0; l < 2; l++) {
            for (entry_t *e = lists[l], *next; e != NULL; e = next) {
                next = e->older;
                free(e);
            }
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    free(s);
}

void cachestore_set_limits(cachestore_t *s, const cachestore_limits_t *limits)
{
    atomic_store_explicit(&s->max_entry_size, limits->max_entry_size, memory_order_relaxed);
    atomic_store_explicit(&s->compress_min, limits->compress_min, memory_order_relaxed);
    for (int i = 0; i < CACHESTORE_SHARDS; i++) {
        shard_t *sh = &s->shards[i];
        pthread_mutex_lock(&sh->lock);
        shard_set_limits(sh, limits, i);
        protected_trim(sh);
        shard_make_room(sh, 0, 0);
        pthread_mutex_unlock(&sh->lock);
    }
}

/* Appends e's value to out, decompressing it if stored compressed. Returns 0 or -1. */
static int value_copy(const entry_t *e, buf_t *out)
{
    if (e->stored == e->vlen)
        return buf_append(out, entry_value(e), e->vlen);
    if (buf_reserve(out, e->vlen) < 0)
        return -1;
    int n = LZ4_decompress_safe((const char *)entry_value(e), (char *)buf_tail(out), (int)e->stored,
                                (int)e->vlen);
    if (n != (int)e->vlen) /* the store wrote these bytes, so this means memory corruption */
        return -1;
    buf_produce(out, e->vlen);
    return 0;
}

int cachestore_get(cachestore_t *s, uint64_t hash, const void *key, size_t keylen, int64_t now_ms,
                   buf_t *out, uint16_t *rule)
{
    shard_t *sh = shard_of(s, hash);
    int result = CACHESTORE_MISS;
    pthread_mutex_lock(&sh->lock);
    entry_t *e = *table_find(sh, hash, key, keylen);
    if (e == NULL) {
        sh->counts.misses++;
    } else if (now_ms >= e->expires_ms) {
        entry_remove(sh, e);
        sh->counts.expired++;
        sh->counts.misses++;
    } else if (!deps_current(e)) {
        entry_remove(sh, e);
        sh->counts.stale++;
        sh->counts.misses++;
    } else if (value_copy(e, out) < 0) {
        result = -1;
    } else {
        e->hits++;
        sh->counts.hits++;
        rule_counts_t *rc = rule_counts(sh, e->rule);
        if (rc != NULL)
            rc->hits++;
        /* A hit moves the entry to the head of protected; promotion from probation may push
         * protected's least recent entries back to probation. */
        bool promoted = !e->protected;
        segment_unlink(sh, e);
        segment_push(sh, e, true);
        if (promoted)
            protected_trim(sh);
        *rule = e->rule;
        result = CACHESTORE_HIT;
    }
    pthread_mutex_unlock(&sh->lock);
    return result;
}

/*
 * Makes the entry to store, with the value lz4-compressed when it is at least compress_min
 * long and compression makes it smaller. Returns NULL when memory runs out.
 */
static entry_t *entry_make(cachestore_t *s, uint64_t hash, const void *key, size_t keylen,
                           const void *value, size_t vlen, const cachestore_dep_t *deps, int ndeps,
                           int64_t expires_ms, uint16_t rule)
{
    char *scratch = NULL;
    const void *stored = value;
    size_t stored_len = vlen;
    entry_t *e = NULL;
    if (vlen > 0 && vlen >= atomic_load_explicit(&s->compress_min, memory_order_relaxed)) {
        int bound = LZ4_compressBound((int)vlen);
        scratch = malloc((size_t)bound);
        if (scratch == NULL)
            goto done;
        int n = LZ4_compress_default(value, scratch, (int)vlen, bound);
        if (n > 0 && (size_t)n < vlen) {
            stored = scratch;
            stored_len = (size_t)n;
        }
    }
    size_t deps_len = (size_t)ndeps * sizeof(cachestore_dep_t);
    e = malloc(sizeof(*e) + deps_len + keylen + stored_len);
    if (e == NULL)
        goto done;
    e->chain = e->newer = e->older = NULL;
    e->hash = hash;
    e->hits = 0;
    e->expires_ms = expires_ms;
    e->keylen = (uint32_t)keylen;
    e->vlen = (uint32_t)vlen;
    e->stored = (uint32_t)stored_len;
    e->rule = rule;
    e->ndeps = (uint8_t)ndeps;
    e->protected = false;
    /* memcpy must not see the NULL pointers that go with zero lengths. */
    if (deps_len > 0)
        memcpy(e->deps, deps, deps_len);
    if (keylen > 0)
        memcpy((uint8_t *)entry_key(e), key, keylen);
    if (stored_len > 0)
        memcpy((uint8_t *)entry_value(e), stored, stored_len);
done:
    free(scratch);
    return e;
}

int cachestore_put(cachestore_t *s, uint64_t hash, const void *key, size_t keylen,
                   const void *value, size_t vlen, const cachestore_dep_t *deps, int ndeps,
                   int64_t expires_ms, uint16_t rule)
{
    shard_t *sh = shard_of(s, hash);
    entry_t *e = NULL;
    int result = 1;
    if (ndeps < 0 || ndeps > CACHESTORE_MAX_DEPS || keylen >= CACHESTORE_MAX_LEN ||
        vlen >= CACHESTORE_MAX_LEN ||
        vlen > atomic_load_explicit(&s->max_entry_size, memory_order_relaxed)) {
        pthread_mutex_lock(&sh->lock);
        goto done;
    }
    e = entry_make(s, hash, key, keylen, value, vlen, deps, ndeps, expires_ms, rule);
    if (e == NULL)
        return -1;
    pthread_mutex_lock(&sh->lock);
    if (entry_cost(e) > sh->max_memory || sh->max_entries == 0 || !deps_storable(e))
        goto done;
    entry_t **link = table_find(sh, hash, key, keylen);
    if (*link != NULL)
        entry_remove(sh, *link);
    shard_make_room(sh, 1, entry_cost(e));
    /* Eviction may have unlinked entries of this chain, so find its end again. */
    entry_link(sh, table_find(sh, hash, key, keylen), e);
    sh->counts.inserts++;
    e = NULL;
    result = 0;
done:
    if (result == 1)
        sh->counts.rejected++;
    pthread_mutex_unlock(&sh->lock);
    free(e);
    return result;
}

/* Removes, in every shard, the entries for which match(e, arg) holds, as invalidations.
 * Returns how many. */
static size_t remove_matching(cachestore_t *s, bool (*match)(const entry_t *, const void *),
                              const void *arg)
{
    size_t removed = 0;
    for (int i = 0; i < CACHESTORE_SHARDS; i++) {
        shard_t *sh = &s->shards[i];
        pthread_mutex_lock(&sh->lock);
        entry_t *lists[] = {sh->probation.newest, sh->protected.newest};
        for (int l = 0; l < 2; l++) {
            for (entry_t *e = lists[l], *next; e != NULL; e = next) {
                next = e->older;
                if (match(e, arg)) {
                    entry_remove(sh, e);
                    sh->counts.invalidations++;
                    removed++;
                }
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
    return removed;
}

static bool depends_on(const entry_t *e, const void *counter)
{
    for (int i = 0; i < e->ndeps; i++)
        if ((const void *)e->deps[i].counter == counter)
            return true;
    return false;
}

static bool has_rule(const entry_t *e, const void *rule)
{
    return e->rule == *(const uint16_t *)rule;
}

static bool any(const entry_t *e, const void *unused)
{
    return true;
}

size_t cachestore_remove_dep(cachestore_t *s, const cachegen_counter_t *counter)
{
    return remove_matching(s, depends_on, (const void *)counter);
}

size_t cachestore_remove_rule(cachestore_t *s, uint16_t rule)
{
    return remove_matching(s, has_rule, &rule);
}

size_t cachestore_clear(cachestore_t *s)
{
    return remove_matching(s, any, NULL);
}

void cachestore_counters(cachestore_t *s, cachestore_counters_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < CACHESTORE_SHARDS; i++) {
        shard_t *sh = &s->shards[i];
        pthread_mutex_lock(&sh->lock);
        const cachestore_counters_t *c = &sh->counts;
        out->hits += c->hits;
        out->misses += c->misses;
        out->stale += c->stale;
        out->expired += c->expired;
        out->evictions += c->evictions;
        out->inserts += c->inserts;
        out->rejected += c->rejected;
        out->invalidations += c->invalidations;
        out->entries += c->entries;
        out->bytes += c->bytes;
        out->value_bytes += c->value_bytes;
        out->stored_bytes += c->stored_bytes;
        pthread_mutex_unlock(&sh->lock);
    }
}

void cachestore_count_miss(cachestore_t *s, uint16_t rule)
{
    if (rule < CACHESTORE_MAX_RULES)
        atomic_fetch_add_explicit(&s->rule_misses[rule], 1, memory_order_relaxed);
}

void cachestore_rule_counters(cachestore_t *s, uint16_t rule, cachestore_counters_t *out)
{
    memset(out, 0, sizeof(*out));
    if (rule >= CACHESTORE_MAX_RULES)
        return;
    out->misses = atomic_load_explicit(&s->rule_misses[rule], memory_order_relaxed);
    for (int i = 0; i < CACHESTORE_SHARDS; i++) {
        shard_t *sh = &s->shards[i];
        pthread_mutex_lock(&sh->lock);
        out->hits += sh->rules[rule].hits;
        out->entries += sh->rules[rule].entries;
        out->bytes += sh->rules[rule].bytes;
        pthread_mutex_unlock(&sh->lock);
    }
}

/* ---- the most hit entries ---- */

/* A copied entry among the best found so far. */
typedef struct candidate {
    uint64_t hits;
    uint8_t *key;
    uint32_t keylen;
    uint16_t rule;
} candidate_t;

/* Restores the min-heap order (fewest hits at the root) below slot i of heap[0..n). */
static void heap_sift_down(candidate_t *heap, size_t n, size_t i)
{
    for (;;) {
        size_t least = i, l = 2 * i + 1, r = 2 * i + 2;
        if (l < n && heap[l].hits < heap[least].hits)
            least = l;
        if (r < n && heap[r].hits < heap[least].hits)
            least = r;
        if (least == i)
            return;
        candidate_t t = heap[i];
        heap[i] = heap[least];
        heap[least] = t;
        i = least;
    }
}

static void heap_sift_up(candidate_t *heap, size_t i)
{
    while (i > 0 && heap[(i - 1) / 2].hits > heap[i].hits) {
        candidate_t t = heap[i];
        heap[i] = heap[(i - 1) / 2];
        heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

/* Offers e to the heap of at most max candidates (n of them now), copying its key if it is
 * taken. */
static void heap_offer(candidate_t *heap, size_t *n, size_t max, const entry_t *e)
{
    if (*n == max && e->hits <= heap[0].hits)
        return;
    uint8_t *key = malloc(e->keylen > 0 ? e->keylen : 1);
    if (key == NULL)
        return;
    memcpy(key, entry_key(e), e->keylen);
    candidate_t c = {.hits = e->hits, .key = key, .keylen = e->keylen, .rule = e->rule};
    if (*n == max) {
        free(heap[0].key);
        heap[0] = c;
        heap_sift_down(heap, *n, 0);
    } else {
        heap[*n] = c;
        heap_sift_up(heap, (*n)++);
    }
}

static int by_hits_descending(const void *a, const void *b)
{
    uint64_t ha = ((const candidate_t *)a)->hits, hb = ((const candidate_t *)b)->hits;
    return ha < hb ? 1 : ha > hb ? -1 : 0;
}

size_t cachestore_top(cachestore_t *s, size_t max, cachestore_entry_fn fn, void *arg)
{
    cachestore_counters_t totals;
    cachestore_counters(s, &totals);
    /* Entries stored after this count can only displace others, never enlarge the heap. */
    if (max > totals.entries)
        max = totals.entries;
    if (max == 0)
        return 0;
    candidate_t *heap = malloc(max * sizeof(*heap));
    if (heap == NULL)
        return 0;
    size_t n = 0;
    for (int i = 0; i < CACHESTORE_SHARDS; i++) {
        shard_t *sh = &s->shards[i];
        pthread_mutex_lock(&sh->lock);
        entry_t *lists[] = {sh->probation.newest, sh->protected.newest};
        for (int l = 0; l < 2; l++)
            for (const entry_t *e = lists[l]; e != NULL; e = e->older)
                heap_offer(heap, &n, max, e);
        pthread_mutex_unlock(&sh->lock);
    }
    qsort(heap, n, sizeof(*heap), by_hits_descending);
    for (size_t i = 0; i < n; i++) {
        fn(arg, heap[i].key, heap[i].keylen, heap[i].hits, heap[i].rule);
        free(heap[i].key);
    }
    free(heap);
    return n;
}
