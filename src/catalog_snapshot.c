/*
 * catalog_snapshot.c
 *    The memory and the names of a catalog snapshot (catalog_snapshot.h): an arena of 64 kB
 *    blocks, open-addressing string maps whose strings are interned in it, and the readings
 *    of a possibly qualified name ("a.b.c": relation "a.b.c", schema "a" and relation "b.c",
 *    or schema "a.b" and relation "c") walked over the relations or function groups they
 *    denote.
 */
#include "catalog_snapshot.h"

#include "sqlparse.h"

#include <stdlib.h>
#include <string.h>

/* ---- the arena ---- */

#define BLOCK_SIZE 65536

/* Memory for the life of the snapshot, 8-byte aligned and zeroed; NULL when memory runs out. */
void *snapshot_arena_alloc(catalog_t *c, size_t size)
{
    size = (size + 7) & ~(size_t)7;
    block_t *b = c->blocks;
    if (b == NULL || b->cap - b->used < size) {
        size_t cap = size > BLOCK_SIZE / 2 ? size : BLOCK_SIZE;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            return NULL;
        b->cap = cap;
        b->used = 0;
        /* A big allocation gets a block of its own behind the current one, so that the rest
         * of the current block is still used. */
        if (cap > BLOCK_SIZE && c->blocks != NULL) {
            b->next = c->blocks->next;
            c->blocks->next = b;
        } else {
            b->next = c->blocks;
            c->blocks = b;
        }
    }
    void *p = b->data + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

char *snapshot_arena_strndup(catalog_t *c, const char *s, size_t len)
{
    char *p = snapshot_arena_alloc(c, len + 1);
    if (p != NULL)
        memcpy(p, s, len);
    return p;
}

int *snapshot_arena_ints(catalog_t *c, const int *src, int n)
{
    if (n == 0)
        return NULL;
    int *p = snapshot_arena_alloc(c, (size_t)n * sizeof(int));
    if (p != NULL)
        memcpy(p, src, (size_t)n * sizeof(int));
    return p;
}

/* ---- string maps ---- */

bool snapshot_strmap_init(catalog_t *c, strmap_t *m, size_t expected)
{
    size_t cap = 8;
    while (cap < expected * 2)
        cap *= 2;
    m->slots = snapshot_arena_alloc(c, cap * sizeof(slot_t));
    m->mask = cap - 1;
    return m->slots != NULL;
}

const slot_t *snapshot_strmap_find(const strmap_t *m, const char *s, size_t len)
{
    uint64_t h = sqlparse_hash(s, len);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const slot_t *slot = &m->slots[i];
        if (slot->text == NULL)
            return NULL;
        if (slot->hash == h && slot->len == len && memcmp(slot->text, s, len) == 0)
            return slot;
    }
}

/* The slot of s, added (string interned, value -1) when missing; NULL when memory runs out.
 * The map was sized for every string it will hold, so it never fills. */
slot_t *snapshot_strmap_add(catalog_t *c, strmap_t *m, const char *s, size_t len)
{
    uint64_t h = sqlparse_hash(s, len);
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        slot_t *slot = &m->slots[i];
        if (slot->text == NULL) {
            char *text = snapshot_arena_strndup(c, s, len);
            if (text == NULL)
                return NULL;
            slot->text = text;
            slot->len = len;
            slot->hash = h;
            slot->value = -1;
            return slot;
        }
        if (slot->hash == h && slot->len == len && memcmp(slot->text, s, len) == 0)
            return slot;
    }
}

/* ---- names ---- */

/*
 * Every reading of name: the whole of it unqualified, then each split at a dot. Returns how
 * many, or -1 when it has more dots than are tried (so that no reading is silently missed).
 */
static int name_readings(const char *name, reading_t *out)
{
    size_t len = strlen(name);
    int n = 0;
    out[n++] = (reading_t){NULL, 0, name, len};
    for (size_t i = 0; i < len; i++) {
        if (name[i] != '.')
            continue;
        if (n == MAX_DOTS + 1)
            return -1;
        out[n++] = (reading_t){name, i, name + i + 1, len - i - 1};
    }
    return n;
}

static bool schema_is(const char *schema, const reading_t *r)
{
    return strlen(schema) == r->schema_len && memcmp(schema, r->schema, r->schema_len) == 0;
}

static int chain_start(const name_walk_t *w, const reading_t *r)
{
    if (w->groups) {
        const slot_t *slot = snapshot_strmap_find(&w->c->fnames, r->name, r->name_len);
        return slot == NULL ? -1 : slot->value;
    }
    const slot_t *slot = snapshot_strmap_find(&w->c->relnames, r->name, r->name_len);
    return slot == NULL ? -1 : w->c->keys[slot->value].first_rel;
}

static int chain_next(const name_walk_t *w, int i)
{
    return w->groups ? w->c->groups[i].next_same_name : w->c->rels[i].next_same_name;
}

static const char *chain_schema(const name_walk_t *w, int i)
{
    return w->groups ? w->c->groups[i].schema : w->c->rels[i].schema;
}

/* False when name has too many dots to try every reading. */
bool snapshot_name_walk_init(name_walk_t *w, const catalog_t *c, const char *name, bool groups)
{
    w->c = c;
    w->groups = groups;
    w->n_readings = name_readings(name, w->readings);
    w->reading = 0;
    w->next = w->n_readings > 0 ? chain_start(w, &w->readings[0]) : -1;
    return w->n_readings > 0;
}

/* The next relation (or group) denoted, -1 at the end; *qualified tells how it was named. */
int snapshot_name_walk_next(name_walk_t *w, bool *qualified)
{
    for (;;) {
        while (w->next >= 0) {
            int i = w->next;
            const reading_t *r = &w->readings[w->reading];
            w->next = chain_next(w, i);
            if (r->schema == NULL || schema_is(chain_schema(w, i), r)) {
                *qualified = r->schema != NULL;
                return i;
            }
        }
        if (++w->reading >= w->n_readings)
            return -1;
        w->next = chain_start(w, &w->readings[w->reading]);
    }
}

/* The group schema.name (exact), -1 when there is none. */
int snapshot_group_find(const catalog_t *c, const char *schema, const char *name)
{
    const slot_t *slot = snapshot_strmap_find(&c->fnames, name, strlen(name));
    for (int g = slot == NULL ? -1 : slot->value; g >= 0; g = c->groups[g].next_same_name)
        if (strcmp(c->groups[g].schema, schema) == 0)
            return g;
    return -1;
}

int snapshot_compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}
