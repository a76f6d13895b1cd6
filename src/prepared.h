/*
 * prepared.h
 *    Prepared statements in transaction mode.
 *
 * A client's named statements live in its prepared_map_t: name -> statement, where a statement
 * keeps the body of the client's Parse (query and parameter types) and a server-side name
 * derived from a 64-bit hash of that body ("_pgt_<hex>"). Equal statements from any client, on
 * any worker, get the same server-side name, so a server connection prepares each text once,
 * whoever asked first. Each server connection keeps a prepared_cache_t of the statements it has,
 * bounded by max_prepared_statements with least-recently-used eviction.
 */
#ifndef PGTURBO_PREPARED_H
#define PGTURBO_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PREPARED_NAME_LEN 24 /* "_pgt_" + 16 hex digits + NUL, rounded up */

typedef struct prepared_stmt {
    uint64_t hash;
    char server_name[PREPARED_NAME_LEN];
    uint32_t body_len;
    uint8_t body[]; /* Parse body after the statement name: query, int16 n, n int32 OIDs */
} prepared_stmt_t;

typedef struct prepared_map prepared_map_t;
typedef struct prepared_cache prepared_cache_t;

/* The hash of a Parse body (query and parameter types). */
uint64_t prepared_hash(const uint8_t *body, uint32_t len);

/* Creates an empty map; NULL when memory runs out. Free with prepared_map_free(). */
prepared_map_t *prepared_map_create(void);
void prepared_map_free(prepared_map_t *map);

/*
 * Adds (or replaces) the statement name with a copy of body. Returns the statement, owned by
 * the map, or NULL when memory runs out.
 */
prepared_stmt_t *prepared_map_put(prepared_map_t *map, const char *name, const uint8_t *body,
                                  uint32_t len);
/* The statement of that name, borrowed from the map, or NULL. */
prepared_stmt_t *prepared_map_get(const prepared_map_t *map, const char *name);
/* Removes the statement of that name; returns false if there was none. */
bool prepared_map_remove(prepared_map_t *map, const char *name);
/* Removes every statement. */
void prepared_map_clear(prepared_map_t *map);
/* Number of statements. */
int prepared_map_count(const prepared_map_t *map);

/* Creates a cache for at most capacity statements (capacity >= 1). Free with _free(). */
prepared_cache_t *prepared_cache_create(int capacity);
void prepared_cache_free(prepared_cache_t *cache);
/* True when the server has the statement; marks it as just used. */
bool prepared_cache_lookup(prepared_cache_t *cache, uint64_t hash);
/*
 * Records that the server now has the statement. When the cache was full, the least recently
 * used statement is dropped from it, *evicted is set to its hash and true is returned: the
 * caller closes that statement on the server.
 */
bool prepared_cache_add(prepared_cache_t *cache, uint64_t hash, uint64_t *evicted);
/* Forgets a statement (its Parse failed, or it was closed). */
void prepared_cache_remove(prepared_cache_t *cache, uint64_t hash);
/* Number of statements recorded. */
int prepared_cache_count(const prepared_cache_t *cache);

/* Writes the server-side name for hash into out (PREPARED_NAME_LEN bytes). */
void prepared_server_name(uint64_t hash, char *out);

#endif /* PGTURBO_PREPARED_H */
