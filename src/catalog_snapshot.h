/*
 * catalog_snapshot.h
 *    The inside of a catalog snapshot (catalog.h), shared by catalog.c (the lookups),
 *    catalog_parse.c (building it from the query's value) and catalog_snapshot.c (its arena,
 *    string maps and name readings). Not for use outside those three files.
 *
 * A snapshot is a graph of relations and function groups whose strings and arrays all live in
 * one arena, freed in one walk by the last catalog_unref().
 */
#ifndef PGTURBO_CATALOG_SNAPSHOT_H
#define PGTURBO_CATALOG_SNAPSHOT_H

#include "catalog.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Function groups: every overload of one name in one schema, judged together. */
#define GROUP_IMMUTABLE 'i'
#define GROUP_STABLE    's' /* STABLE SQL, judged by what its bodies read and call */
#define GROUP_REFUSED   'x'

/* Modes of the write walk: a relation reached going up from a partition bumps its ancestors
 * only, one reached going down its descendants only, one written bumps both. */
#define WALK_UP      1
#define WALK_DOWN    2
#define WALK_WRITTEN (WALK_UP | WALK_DOWN)

/* A name of a qualified reference may itself hold dots ("a.b.c" is schema "a", relation
 * "b.c" or schema "a.b", relation "c"); every reading is tried, up to this many dots. */
#define MAX_DOTS 8

/* A precomputed list of generation keys; n is -1 for "not cacheable". */
typedef struct key_list {
    const char **keys;
    int n;
} key_list_t;

typedef struct rel {
    uint32_t oid;
    char kind; /* relkind: 'r' table, 'p' partitioned, 'v' view, 'm' matview, 'f' foreign */
    bool temp, rls, shadowed, triggers, rules;
    bool unsafe;        /* a view whose query is not cacheable by itself */
    bool unknown_links; /* a parent, cascade or read oid the snapshot does not hold */
    bool calls_refused; /* a view calling a function that is refused or unknown */
    const char *schema; /* interned */
    int key;            /* index into keys: the relname */
    int next_same_name; /* next relation of the same relname; -1 ends the chain */
    int *parents, n_parents, *children, n_children, *cascades, n_cascades;
    int *reads, n_reads; /* a view: relations its query reads */
    int *calls, n_calls; /* a view: function groups its query calls */
    key_list_t read_deps;
    key_list_t write_keys;
    bool write_everything;
} rel_t;

typedef struct group {
    const char *schema, *name; /* interned */
    char status;               /* GROUP_IMMUTABLE, GROUP_STABLE or GROUP_REFUSED */
    bool unsafe;               /* a STABLE body that is not a plain read of known objects */
    int next_same_name;
    int *reads, n_reads, *calls, n_calls;
    key_list_t deps;
} group_t;

/* A generation key: one distinct relname, and the first relation of that name. */
typedef struct gen_key {
    const char *name;
    int first_rel;
} gen_key_t;

/* Open addressing over strings; the string of an occupied slot is interned in the arena. */
typedef struct slot {
    const char *text;
    size_t len;
    uint64_t hash;
    int value;
} slot_t;

typedef struct strmap {
    slot_t *slots;
    size_t mask;
} strmap_t;

typedef struct block {
    struct block *next;
    size_t used, cap;
    char data[];
} block_t;

struct catalog {
    atomic_int refs;
    block_t *blocks;
    rel_t *rels;
    int n_rels;
    group_t *groups;
    int n_groups;
    gen_key_t *keys;
    int n_keys;
    strmap_t relnames;       /* relname -> index into keys */
    strmap_t fnames;         /* function name -> first group of that name */
    strmap_t schemas;        /* schema name, interned; value unused */
    const char **unsafe_ops; /* sorted for bsearch */
    int n_unsafe_ops;
};

/* One reading of a name: an unqualified relname (schema NULL) or schema and relname. */
typedef struct reading {
    const char *schema;
    size_t schema_len;
    const char *name;
    size_t name_len;
} reading_t;

/*
 * Walks the relations (or, for groups, the function groups) that the readings of a name
 * denote: chain_start() finds the chain of a reading's name, snapshot_name_walk_next()
 * steps through it, keeping those of the reading's schema, then on to the next reading. A relation
 * that several readings denote is visited once per reading, which the callers' merges absorb.
 */
typedef struct name_walk {
    const catalog_t *c;
    reading_t readings[MAX_DOTS + 1];
    int n_readings, reading, next;
    bool groups;
} name_walk_t;

/* Memory for the life of the snapshot, 8-byte aligned and zeroed; NULL when memory runs out. */
void *snapshot_arena_alloc(catalog_t *c, size_t size);
/* A NUL-terminated copy of the len bytes at s in the arena; NULL when memory runs out. */
char *snapshot_arena_strndup(catalog_t *c, const char *s, size_t len);
/* A copy of n ints in the arena (NULL for n 0, or when memory runs out). */
int *snapshot_arena_ints(catalog_t *c, const int *src, int n);

/* Sizes m for expected strings; false when memory runs out. */
bool snapshot_strmap_init(catalog_t *c, strmap_t *m, size_t expected);
/* The slot of the len bytes at s, or NULL. Allocates nothing. */
const slot_t *snapshot_strmap_find(const strmap_t *m, const char *s, size_t len);
/* The slot of s, added (string interned, value -1) when missing; NULL when memory runs out.
 * The map was sized for every string it will hold, so it never fills. */
slot_t *snapshot_strmap_add(catalog_t *c, strmap_t *m, const char *s, size_t len);

/* Starts a walk of what name denotes (function groups when groups); false when name has too
 * many dots to try every reading. */
bool snapshot_name_walk_init(name_walk_t *w, const catalog_t *c, const char *name, bool groups);
/* The next relation (or group) denoted, -1 at the end; *qualified tells how it was named. */
int snapshot_name_walk_next(name_walk_t *w, bool *qualified);
/* The group schema.name (exact), -1 when there is none. */
int snapshot_group_find(const catalog_t *c, const char *schema, const char *name);

/* qsort/bsearch order of an array of strings (the unsafe operators). */
int snapshot_compare_strings(const void *a, const void *b);

#endif /* PGTURBO_CATALOG_SNAPSHOT_H */
