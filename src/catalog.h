/*
 * catalog.h
 *    An immutable snapshot of the catalog facts of one database that decide what the query
 *    result cache may keep and what a write must invalidate: which relations a read depends
 *    on (views resolved to what they read), which relations a write can change (partitions,
 *    foreign-key actions, views written through, triggers and rules that make the answer
 *    "anything"), and which functions are safe to call in a cached read.
 *
 * The daemon runs catalog_query() on an authenticated server connection of the pool (any
 * role may: it reads only catalogs that PUBLIC may read) and hands the single value of its
 * single row to catalog_parse(), which precomputes every closure, so that the lookups on the
 * hot path only hash a name and copy a precomputed list: they allocate nothing and never
 * block.
 *
 * Relations are named for invalidation by their unqualified relname (the "generation key"),
 * so same-named tables in different schemas share one key: that over-invalidates, never
 * serves stale rows. Names given to the lookups are as sqlparse gives them: "users",
 * "public.users", "Users" (case kept, quotes already removed). An unqualified name stands for
 * every relation (or function) of that name in any schema, because the snapshot does not know
 * the session's search_path.
 *
 * A snapshot is only as fresh as the catalog it was read from: a relation or function made
 * after it is unknown (reads not cached, writes invalidate everything), and a function whose
 * volatility changed or a trigger added since is judged by the old facts until the daemon
 * reads a new snapshot, which it must do after DDL.
 *
 * Threads: a snapshot never changes after catalog_parse(), so any thread may look up in it
 * without locks; references are counted atomically, so a thread may swap in a new snapshot
 * while others still use the old one.
 */
#ifndef PGTURBO_CATALOG_H
#define PGTURBO_CATALOG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct catalog catalog_t;

/*
 * The most generation keys a lookup can give, whatever its max: a read that depends on more
 * is not cacheable and a write that reaches more reaches everything. Bounding the closures
 * bounds the memory and the parse time of a snapshot whose foreign keys chain thousands of
 * tables, which would otherwise grow with the square of their number.
 */
#define CATALOG_MAX_KEYS 256

/*
 * The one query whose single value catalog_parse() reads: one statement, one row, one json
 * column, for PostgreSQL 13 and later. Static text. Its planner cost stays far below the
 * default jit_above_cost on ordinary catalogs; on a catalog of tens of thousands of relations
 * JIT may start to cost more than the query, so the connection that runs it may set jit = off.
 */
const char *catalog_query(void);

/*
 * Parses the query's value (len bytes, borrowed; NUL not needed) into a snapshot and
 * precomputes every closure, analyzing the bodies of STABLE SQL functions with sqlparse.
 * NULL, with a message in err, when the value is malformed or memory runs out. The snapshot
 * starts with one reference, which the caller owns and drops with catalog_unref().
 */
__attribute__((warn_unused_result)) catalog_t *catalog_parse(const char *json, size_t len,
                                                             char *err, size_t errlen);

/* Takes one more reference to c for the caller. Any thread may take or drop references. */
void catalog_ref(catalog_t *c);
/* Drops the caller's reference; the last one frees the snapshot. NULL is accepted. */
void catalog_unref(catalog_t *c);

/*
 * The generation keys that a READ of name depends on, written to out (at most max; the
 * strings are owned by the snapshot and live as long as it): the relation itself and, for a
 * view, recursively everything it reads, including the relations read by the STABLE SQL
 * functions it calls; a materialized view depends only on itself, and a partitioned table
 * only on itself (writes to a partition bump its ancestors). Returns the count, or -1 when
 * the read must not be cached: name is not a permanent table, partitioned table, view or
 * materialized view of a non-system schema (a temporary relation or a name that some
 * session's temporary relation has, a foreign table, a table with row-level security, a
 * pg_catalog relation or a name one shadows, an unknown name), a view reads something that
 * is not cacheable (a function catalog_function_deps() refuses, CURRENT_DATE and the other
 * SQL value functions, a sequence, a system relation, TABLESAMPLE), or there are more than
 * max (or CATALOG_MAX_KEYS) keys. Allocates nothing.
 */
__attribute__((warn_unused_result)) int catalog_read_deps(const catalog_t *c, const char *name,
                                                          const char **out, int max);

/*
 * The generation keys that a WRITE to name must bump, written to out (at most max; strings
 * owned by the snapshot): the relation itself; for a partition or inheritance child every
 * ancestor, for a parent every descendant; the tables whose rows foreign-key actions (ON
 * DELETE/UPDATE CASCADE, SET NULL, SET DEFAULT) can change, recursively through cycles; for a
 * view, the relations it reads (a superset of the one it writes through). Sets *everything,
 * and still returns the count, when the write can reach relations the snapshot cannot name: a
 * user trigger (INSTEAD OF ones included) or a rule other than a view's _RETURN rule on any
 * relation of the closure, a view that calls a function that is not cacheable or reads a
 * relation the snapshot does not hold, an unknown name, or more than max (or
 * CATALOG_MAX_KEYS) keys. Returns the count. Allocates nothing.
 */
__attribute__((warn_unused_result)) int catalog_write_closure(const catalog_t *c, const char *name,
                                                              const char **out, int max,
                                                              bool *everything);

/*
 * Whether a function call (name "f" or "schema.f", as written) may appear in a cached read:
 * every function of that name (all overloads, all schemas when unqualified) is IMMUTABLE, or
 * STABLE and in LANGUAGE sql with a body that is a plain read (no FOR UPDATE, no write, no
 * CURRENT_DATE or other SQL value function, no volatile operator) calling only acceptable
 * functions. The generation keys of the relations those bodies read, recursively, go to out
 * (at most max; strings owned by the snapshot). Returns the count (0 for IMMUTABLE
 * functions), or -1 when the call must not be cached: a VOLATILE overload, a STABLE one in
 * any other language (plpgsql, C, internal: now() is one), an unknown name, a user-defined
 * aggregate with a non-IMMUTABLE support function, or more than max (or CATALOG_MAX_KEYS)
 * keys. Allocates nothing.
 */
__attribute__((warn_unused_result)) int catalog_function_deps(const catalog_t *c, const char *name,
                                                              const char **out, int max);

/*
 * Whether an operator (its name as written, "+" or "===", without schema) may appear in a
 * cached read: false when some operator of that name runs a VOLATILE function, or a
 * non-IMMUTABLE one outside pg_catalog. The built-in operators that are STABLE (timestamptz
 * against date or timestamp, timestamptz + interval, text || anyelement, @@) are allowed:
 * they depend on TimeZone, DateStyle and default_text_search_config, never on time. Allocates
 * nothing.
 */
__attribute__((warn_unused_result)) bool catalog_operator_cacheable(const catalog_t *c,
                                                                    const char *name);

/*
 * The schema of name for matching cache rules ("schema.table" or "schema.*"): when name is
 * qualified, its schema if the snapshot holds a relation in that schema; when it is not, the
 * schema of the only relation of that relname ("pg_temp" for a temporary one). NULL when
 * there is none or more than one. The string is owned by the snapshot.
 */
const char *catalog_schema_of(const catalog_t *c, const char *name);

/*
 * Whether a call of function name ("f" or "schema.f", as written) may write tables: some
 * function of that name outside pg_catalog is refused by catalog_function_deps() (VOLATILE,
 * or STABLE in a language other than sql: more than can write, never less), or name is
 * qualified with a schema other than pg_catalog that the snapshot has no such function in
 * (made since). An unqualified unknown name is taken for a built-in (now(), random()): the
 * snapshot ships no refused built-in. Allocates nothing.
 */
__attribute__((warn_unused_result)) bool catalog_function_may_write(const catalog_t *c,
                                                                    const char *name);

/*
 * The generation keys of every relation of schema, written to out (at most max; strings
 * owned by the snapshot; a relname two relations share may come twice). Returns the count.
 */
int catalog_relations_in(const catalog_t *c, const char *schema, const char **out, int max);

/* Relations in the snapshot (temporary ones included), for logs and the API. */
int catalog_relation_count(const catalog_t *c);
/* Functions in the snapshot, counted once per schema and name (overloads are one), for logs
 * and the API. */
int catalog_function_count(const catalog_t *c);

#endif /* PGTURBO_CATALOG_H */
