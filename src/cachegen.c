/*
 * cachegen.c
 *    Generation counters of tables, interned by name; see cachegen.h.
 *
 * Named counters live in one open-addressing table (linear probing) of pointers sized at
 * least twice the capacity and never resized, so it is never more than half full and a probe
 * always reaches an empty slot. Nothing is ever removed, so a probe that meets an empty slot
 * has proved the name absent: readers need neither tombstones nor a lock. A writer holds the
 * mutex, fills a new counter completely, then publishes its pointer with a release store; a
 * reader's acquire load of a slot therefore sees the counter whole or not at all.
 *
 * Namespaces are an append-only array published the same way: the writer stores the new
 * record, then the new length with release; a reader loads the length with acquire and reads
 * only records below it.
 */
#include "cachegen.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct counter {
    cachegen_counter_t value;
    uint64_t hash;
    uint32_t ns;
    char name[CACHEGEN_NAME_LEN];
} counter_t;

typedef struct space {
    cachegen_counter_t all; /* the namespace-wide counter, the name "" */
    char target[];
} space_t;

struct cachegen {
    pthread_mutex_t lock; /* serializes creation of counters and namespaces */
    _Atomic(counter_t *) *slots;
    uint32_t mask; /* slots - 1 */
    uint32_t capacity;
    _Atomic uint32_t count;
    space_t *spaces[CACHEGEN_MAX_NAMESPACES];
    _Atomic uint32_t nspaces;
};

cachegen_t *cachegen_create(uint32_t capacity)
{
    if (capacity > CACHEGEN_MAX_CAPACITY)
        return NULL;
    cachegen_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    uint32_t size = 8;
    while (size < capacity * 2)
        size *= 2;
    g->slots = calloc(size, sizeof(*g->slots));
    if (g->slots == NULL) {
        free(g);
        return NULL;
    }
    for (uint32_t i = 0; i < size; i++)
        atomic_init(&g->slots[i], NULL);
    g->mask = size - 1;
    g->capacity = capacity;
    atomic_init(&g->count, 0);
    atomic_init(&g->nspaces, 0);
    pthread_mutex_init(&g->lock, NULL);
    return g;
}

void cachegen_free(cachegen_t *g)
{
    if (g == NULL)
        return;
    for (uint32_t i = 0; i <= g->mask; i++)
        free(atomic_load_explicit(&g->slots[i], memory_order_relaxed));
    uint32_t nspaces = atomic_load_explicit(&g->nspaces, memory_order_relaxed);
    for (uint32_t i = 0; i < nspaces; i++)
        free(g->spaces[i]);
    free(g->slots);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

/* The namespace record of id ns, or NULL when no namespace has that id. */
static space_t *space_of(const cachegen_t *g, uint32_t ns)
{
    uint32_t nspaces = atomic_load_explicit(&g->nspaces, memory_order_acquire);
    if (ns == 0 || ns > nspaces)
        return NULL;
    return g->spaces[ns - 1];
}

/* The id of target among the published namespaces, or 0. */
static uint32_t space_find(const cachegen_t *g, const char *target)
{
    uint32_t nspaces = atomic_load_explicit(&g->nspaces, memory_order_acquire);
    for (uint32_t i = 0; i < nspaces; i++)
        if (strcmp(g->spaces[i]->target, target) == 0)
            return i + 1;
    return 0;
}

uint32_t cachegen_namespace(cachegen_t *g, const char *target)
{
    uint32_t id = space_find(g, target);
    if (id != 0)
        return id;
    pthread_mutex_lock(&g->lock);
    /* Another thread may have added target since the search above. */
    id = space_find(g, target);
    uint32_t nspaces = atomic_load_explicit(&g->nspaces, memory_order_relaxed);
    if (id == 0 && nspaces < CACHEGEN_MAX_NAMESPACES) {
        size_t len = strlen(target);
        space_t *space = malloc(sizeof(*space) + len + 1);
        if (space != NULL) {
            atomic_init(&space->all, 1);
            memcpy(space->target, target, len + 1);
            g->spaces[nspaces] = space;
            atomic_store_explicit(&g->nspaces, nspaces + 1, memory_order_release);
            id = nspaces + 1;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return id;
}

static uint64_t name_hash(uint32_t ns, const char *name, size_t len)
{
    uint64_t h = UINT64_C(14695981039346656037) ^ ns;
    h *= UINT64_C(1099511628211);
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)name[i];
        h *= UINT64_C(1099511628211);
    }
    return h ^ (h >> 32);
}

/* The counter of (ns, name); when absent, NULL with *slot set to the empty slot that ends
 * the probe, where a writer holding the lock may put it. */
static counter_t *counter_find(const cachegen_t *g, uint64_t hash, uint32_t ns, const char *name,
                               uint32_t *slot)
{
    for (uint32_t i = (uint32_t)hash & g->mask;; i = (i + 1) & g->mask) {
        counter_t *c = atomic_load_explicit(&g->slots[i], memory_order_acquire);
        if (c == NULL) {
            *slot = i;
            return NULL;
        }
        if (c->hash == hash && c->ns == ns && strcmp(c->name, name) == 0)
            return c;
    }
}

/* Checks ns and name; on success *hash is the name's hash, *space its namespace. */
static bool name_valid(const cachegen_t *g, uint32_t ns, const char *name, uint64_t *hash,
                       space_t **space)
{
    *space = space_of(g, ns);
    if (*space == NULL)
        return false;
    size_t len = strnlen(name, CACHEGEN_NAME_LEN);
    if (len == CACHEGEN_NAME_LEN)
        return false;
    *hash = name_hash(ns, name, len);
    return true;
}

cachegen_counter_t *cachegen_find(const cachegen_t *g, uint32_t ns, const char *name)
{
    uint64_t hash;
    space_t *space;
    uint32_t slot;
    if (!name_valid(g, ns, name, &hash, &space))
        return NULL;
    if (name[0] == '\0')
        return &space->all;
    counter_t *c = counter_find(g, hash, ns, name, &slot);
    return c != NULL ? &c->value : NULL;
}

cachegen_counter_t *cachegen_get(cachegen_t *g, uint32_t ns, const char *name)
{
    uint64_t hash;
    space_t *space;
    uint32_t slot;
    if (!name_valid(g, ns, name, &hash, &space))
        return NULL;
    if (name[0] == '\0')
        return &space->all;
    counter_t *c = counter_find(g, hash, ns, name, &slot);
    if (c != NULL)
        return &c->value;

    pthread_mutex_lock(&g->lock);
    /* Writers are serialized here, so the slot this probe ends at stays empty until the
     * store below; the probe also finds the counter a racing thread made meanwhile. */
    c = counter_find(g, hash, ns, name, &slot);
    uint32_t count = atomic_load_explicit(&g->count, memory_order_relaxed);
    if (c == NULL && count < g->capacity && (c = malloc(sizeof(*c))) != NULL) {
        atomic_init(&c->value, 1);
        c->hash = hash;
        c->ns = ns;
        strcpy(c->name, name);
        atomic_store_explicit(&g->slots[slot], c, memory_order_release);
        atomic_store_explicit(&g->count, count + 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&g->lock);
    return c != NULL ? &c->value : NULL;
}

const char *cachegen_name(const cachegen_counter_t *c)
{
    /* A named counter is the first member of its counter_t. */
    return ((const counter_t *)(const void *)c)->name;
}

uint32_t cachegen_count(const cachegen_t *g)
{
    return atomic_load_explicit(&g->count, memory_order_relaxed);
}
