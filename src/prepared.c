/*
 * prepared.c
 *    Client statement maps and server statement caches; see prepared.h.
 *
 * Both are open-addressing hash tables with linear probing and backward-shift deletion, so
 * no tombstones build up on clients that prepare and close statements all day.
 */
#include "prepared.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a, 64-bit: fast on short texts, and good enough as names are not adversarial keys
 * between clients (a collision needs two different texts in one pool). */
uint64_t prepared_hash(const uint8_t *body, uint32_t len)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (uint32_t i = 0; i < len; i++) {
        h ^= body[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

void prepared_server_name(uint64_t hash, char *out)
{
    snprintf(out, PREPARED_NAME_LEN, "_pgt_%016llx", (unsigned long long)hash);
}

static uint64_t string_hash(const char *s)
{
    return prepared_hash((const uint8_t *)s, (uint32_t)strlen(s));
}

/* ---- client map: name -> statement ---- */

typedef struct map_slot {
    char *name; /* NULL = empty */
    prepared_stmt_t *stmt;
} map_slot_t;

struct prepared_map {
    map_slot_t *slots;
    uint32_t mask; /* capacity - 1; capacity is a power of two */
    int count;
};

prepared_map_t *prepared_map_create(void)
{
    prepared_map_t *map = calloc(1, sizeof(*map));
    if (map == NULL)
        return NULL;
    map->slots = calloc(8, sizeof(map_slot_t));
    if (map->slots == NULL) {
        free(map);
        return NULL;
    }
    map->mask = 7;
    return map;
}

static void slot_clear(map_slot_t *slot)
{
    free(slot->name);
    free(slot->stmt);
    slot->name = NULL;
    slot->stmt = NULL;
}

void prepared_map_clear(prepared_map_t *map)
{
    for (uint32_t i = 0; i <= map->mask; i++)
        if (map->slots[i].name != NULL)
            slot_clear(&map->slots[i]);
    map->count = 0;
}

void prepared_map_free(prepared_map_t *map)
{
    if (map == NULL)
        return;
    prepared_map_clear(map);
    free(map->slots);
    free(map);
}

static uint32_t map_find(const prepared_map_t *map, const char *name)
{
    uint32_t i = (uint32_t)string_hash(name) & map->mask;
    while (map->slots[i].name != NULL && strcmp(map->slots[i].name, name) != 0)
        i = (i + 1) & map->mask;
    return i;
}

static int map_grow(prepared_map_t *map)
{
    uint32_t old_cap = map->mask + 1;
    map_slot_t *old = map->slots;
    map_slot_t *slots = calloc((size_t)old_cap * 2, sizeof(map_slot_t));
    if (slots == NULL)
        return -1;
    map->slots = slots;
    map->mask = old_cap * 2 - 1;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i].name != NULL)
            map->slots[map_find(map, old[i].name)] = old[i];
    free(old);
    return 0;
}

prepared_stmt_t *prepared_map_put(prepared_map_t *map, const char *name, const uint8_t *body,
                                  uint32_t len)
{
    if ((uint32_t)(map->count + 1) * 2 > map->mask + 1 && map_grow(map) < 0)
        return NULL;
    prepared_stmt_t *stmt = malloc(sizeof(*stmt) + len);
    if (stmt == NULL)
        return NULL;
    stmt->hash = prepared_hash(body, len);
    prepared_server_name(stmt->hash, stmt->server_name);
    stmt->body_len = len;
    memcpy(stmt->body, body, len);
    map_slot_t *slot = &map->slots[map_find(map, name)];
    if (slot->name != NULL) {
        free(slot->stmt);
        slot->stmt = stmt;
        return stmt;
    }
    slot->name = strdup(name);
    if (slot->name == NULL) {
        free(stmt);
        return NULL;
    }
    slot->stmt = stmt;
    map->count++;
    return stmt;
}

prepared_stmt_t *prepared_map_get(const prepared_map_t *map, const char *name)
{
    return map->slots[map_find(map, name)].stmt;
}

bool prepared_map_remove(prepared_map_t *map, const char *name)
{
    uint32_t i = map_find(map, name);
    if (map->slots[i].name == NULL)
        return false;
    slot_clear(&map->slots[i]);
    map->count--;
    /* Backward-shift: move later entries of the probe run into the hole when they may. */
    for (uint32_t j = (i + 1) & map->mask; map->slots[j].name != NULL; j = (j + 1) & map->mask) {
        uint32_t home = (uint32_t)string_hash(map->slots[j].name) & map->mask;
        if (((j - home) & map->mask) >= ((j - i) & map->mask)) {
            map->slots[i] = map->slots[j];
            map->slots[j].name = NULL;
            map->slots[j].stmt = NULL;
            i = j;
        }
    }
    return true;
}

int prepared_map_count(const prepared_map_t *map)
{
    return map->count;
}

/* ---- server cache: set of hashes with LRU eviction ---- */

typedef struct cache_slot {
    uint64_t hash;
    uint64_t used; /* 0 = empty, else the cache's clock when last used */
} cache_slot_t;

struct prepared_cache {
    cache_slot_t *slots;
    uint32_t mask;
    int capacity;
    int count;
    uint64_t clock;
};

prepared_cache_t *prepared_cache_create(int capacity)
{
    prepared_cache_t *cache = calloc(1, sizeof(*cache));
    if (cache == NULL)
        return NULL;
    uint32_t size = 8;
    while (size < (uint32_t)capacity * 2)
        size *= 2;
    cache->slots = calloc(size, sizeof(cache_slot_t));
    if (cache->slots == NULL) {
        free(cache);
        return NULL;
    }
    cache->mask = size - 1;
    cache->capacity = capacity;
    return cache;
}

void prepared_cache_free(prepared_cache_t *cache)
{
    if (cache == NULL)
        return;
    free(cache->slots);
    free(cache);
}

static uint32_t cache_find(const prepared_cache_t *cache, uint64_t hash)
{
    uint32_t i = (uint32_t)(hash ^ (hash >> 32)) & cache->mask;
    while (cache->slots[i].used != 0 && cache->slots[i].hash != hash)
        i = (i + 1) & cache->mask;
    return i;
}

bool prepared_cache_lookup(prepared_cache_t *cache, uint64_t hash)
{
    cache_slot_t *slot = &cache->slots[cache_find(cache, hash)];
    if (slot->used == 0)
        return false;
    slot->used = ++cache->clock;
    return true;
}

void prepared_cache_remove(prepared_cache_t *cache, uint64_t hash)
{
    uint32_t i = cache_find(cache, hash);
    if (cache->slots[i].used == 0)
        return;
    cache->slots[i].used = 0;
    cache->count--;
    for (uint32_t j = (i + 1) & cache->mask; cache->slots[j].used != 0; j = (j + 1) & cache->mask) {
        uint64_t h = cache->slots[j].hash;
        uint32_t home = (uint32_t)(h ^ (h >> 32)) & cache->mask;
        if (((j - home) & cache->mask) >= ((j - i) & cache->mask)) {
            cache->slots[i] = cache->slots[j];
            cache->slots[j].used = 0;
            i = j;
        }
    }
}

static uint64_t least_recent(const prepared_cache_t *cache)
{
    uint64_t best = 0, best_used = UINT64_MAX;
    for (uint32_t i = 0; i <= cache->mask; i++)
        if (cache->slots[i].used != 0 && cache->slots[i].used < best_used) {
            best_used = cache->slots[i].used;
            best = cache->slots[i].hash;
        }
    return best;
}

bool prepared_cache_add(prepared_cache_t *cache, uint64_t hash, uint64_t *evicted)
{
    bool evict = false;
    if (prepared_cache_lookup(cache, hash))
        return false;
    if (cache->count >= cache->capacity) {
        *evicted = least_recent(cache);
        prepared_cache_remove(cache, *evicted);
        evict = true;
    }
    cache_slot_t *slot = &cache->slots[cache_find(cache, hash)];
    slot->hash = hash;
    slot->used = ++cache->clock;
    cache->count++;
    return evict;
}

int prepared_cache_count(const prepared_cache_t *cache)
{
    return cache->count;
}
