/*
 * cachegen.h
 *    Generation counters of tables, interned by name, shared by every worker thread.
 *
 * The result cache serves an entry only while the tables it read are unchanged. Each table
 * has a counter that every write to it bumps; a cache fill records the values it saw and the
 * entry is dead once any of them moves (see cachestore.h). This module turns a (namespace,
 * table name) pair into the address of that counter, so that the query path pays a name
 * lookup once per table and then only atomic loads.
 *
 * A namespace is one database target ("127.0.0.1:5432/app"): the same table name in two
 * databases is two tables. Each namespace also has a namespace-wide counter under the empty
 * name "", which a writer bumps when it cannot name what it changed (DO, CALL, a table past
 * the capacity). That counter is made with the namespace and does not count against the
 * capacity, so it always exists for a valid namespace id.
 *
 * Counters are never removed: their addresses stay valid until cachegen_free(), which is what
 * lets a cache entry keep raw pointers to them. Lookups of names that exist take no lock; only
 * the creation of a new name takes the mutex.
 */
#ifndef PGTURBO_CACHEGEN_H
#define PGTURBO_CACHEGEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef _Atomic uint64_t cachegen_counter_t;
typedef struct cachegen cachegen_t;

#define CACHEGEN_NAME_LEN       64  /* a relname (NAMEDATALEN) including its NUL */
#define CACHEGEN_MAX_NAMESPACES 256 /* distinct database targets */
#define CACHEGEN_MAX_CAPACITY   (UINT32_C(1) << 30)

/*
 * Makes an empty set of counters that can hold up to capacity named counters over all
 * namespaces (at most CACHEGEN_MAX_CAPACITY). Returns NULL when memory runs out or capacity
 * is too large. Caller frees with cachegen_free().
 */
cachegen_t *cachegen_create(uint32_t capacity);

/* Frees g and every counter in it; NULL accepted. No pointer cachegen_get() gave may be used
 * after this. */
void cachegen_free(cachegen_t *g);

/*
 * The id of the namespace named target (borrowed; copied on first use), interned: the same
 * target always gives the same id for the life of g. Ids start at 1. Returns 0 when
 * CACHEGEN_MAX_NAMESPACES targets are already known or memory runs out. Thread-safe; a target
 * already known is found without a lock.
 */
uint32_t cachegen_namespace(cachegen_t *g, const char *target);

/*
 * The counter of name (borrowed; at most CACHEGEN_NAME_LEN - 1 bytes) in namespace ns,
 * created with the value 1 on first use. The pointer is owned by g and stays valid until
 * cachegen_free(). The empty name gives the namespace-wide counter, which always exists.
 *
 * Returns NULL when ns is not an id cachegen_namespace() gave, when name is too long, when
 * capacity named counters already exist, or when memory runs out. The caller then must not
 * cache what it read, and bumps the namespace-wide counter for what it wrote. Thread-safe:
 * threads racing to create the same name all get the same pointer, and a name that exists is
 * found without a lock.
 */
__attribute__((warn_unused_result)) cachegen_counter_t *cachegen_get(cachegen_t *g, uint32_t ns,
                                                                     const char *name);

/* Like cachegen_get() but never creates: NULL when name has no counter (yet). Never locks. */
__attribute__((warn_unused_result)) cachegen_counter_t *
cachegen_find(const cachegen_t *g, uint32_t ns, const char *name);

/* The name of a counter that cachegen_get() gave for a non-empty name (not a namespace-wide
 * counter): owned by g, valid until cachegen_free(). */
const char *cachegen_name(const cachegen_counter_t *c);

/* The counter's value. The acquire pairs with the bump's release, so a reader that sees a
 * new generation also sees what the writer did before bumping it. */
static inline uint64_t cachegen_read(const cachegen_counter_t *c)
{
    return atomic_load_explicit(c, memory_order_acquire);
}

/* Bumps the counter; returns its new value. */
static inline uint64_t cachegen_bump(cachegen_counter_t *c)
{
    return atomic_fetch_add_explicit(c, 1, memory_order_acq_rel) + 1;
}

/*
 * A counter can also be marked pending: a change to its table is committed but not yet visible
 * to every new snapshot (a commit that waits for pgturbo's logical consumer as a synchronous
 * standby). The mark lives in the counter's high bits, so that one atomic load tells both; an
 * answer read while a mark is set must not be kept (cachestore_put refuses it), and marks
 * nest. Each begin bumps the generation and each end bumps it again, so that nothing recorded
 * while marked stays current after. Generations stay far below the mark's bit.
 */
#define CACHEGEN_PENDING (UINT64_C(1) << 48)

static inline void cachegen_begin_pending(cachegen_counter_t *c)
{
    atomic_fetch_add_explicit(c, CACHEGEN_PENDING + 1, memory_order_acq_rel);
}

static inline void cachegen_end_pending(cachegen_counter_t *c)
{
    atomic_fetch_add_explicit(c, UINT64_C(1) - CACHEGEN_PENDING, memory_order_acq_rel);
}

/* Whether a value cachegen_read() gave carries a pending mark. */
static inline bool cachegen_is_pending(uint64_t generation)
{
    return generation >= CACHEGEN_PENDING;
}

/* How many named counters exist (at most the capacity); namespace-wide counters are not
 * counted. */
uint32_t cachegen_count(const cachegen_t *g);

#endif /* PGTURBO_CACHEGEN_H */
