/*
 * cachekey.h
 *    The keys of the result cache: how a cacheable request is written into one, how one is
 *    read back into the request it stands for, and the protocol messages that send that
 *    request again (how POST /api/v1/cache/warm runs an entry once more).
 *
 * A key is, in order: the format (CACHEKEY_VERSION), the kind of request (CACHEKEY_QUERY, a
 * simple Query; CACHEKEY_UNIT, an extended-protocol unit) and whether the unit asks for the row
 * description, the cachegen namespace of the database target (4 bytes, host order), the user,
 * then one value per session parameter of params.h that shapes results (all but
 * application_name, "" for one not known), each NUL-terminated; then the query text without
 * its comments (sqlparse_strip_comments) and a NUL. A unit goes on with the rest of its Parse
 * (the parameter type count and OIDs) and the rest of its Bind (parameter formats, values,
 * result formats), as the client sent them.
 *
 * Encoding a decoded key gives the same key back: the text in a key has no comments left to
 * strip. Everything here is pure: no state, no allocation but the caller's buffers' growth.
 */
#ifndef PGTURBO_CACHEKEY_H
#define PGTURBO_CACHEKEY_H

#include "buf.h"
#include "params.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHEKEY_VERSION 1
#define CACHEKEY_QUERY   'Q' /* a simple Query holding one SELECT */
#define CACHEKEY_UNIT    'X' /* Parse "" Bind "" [Describe portal ""] Execute "" 0 Sync */

/* What a key is made of. Strings are NUL-terminated; a decoded request's pointers point into
 * the key it was read from. */
typedef struct cachekey_request {
    uint8_t kind;                    /* CACHEKEY_QUERY or CACHEKEY_UNIT */
    bool describe;                   /* a unit that asks for the row description */
    uint32_t ns;                     /* cachegen namespace of the database target */
    const char *user;                /* the user the pool logs clients in as */
    const char *params[PARAM_COUNT]; /* by params_id_t, "" when not known; application_name
                                      * is not part of a key (decoded as "") */
    const char *text;                /* the query text: a decoded one has no comments */
    size_t text_len;                 /* bytes of text before its NUL */
    const uint8_t *types;            /* a unit: the Parse after its text (int16 count, OIDs) */
    uint32_t types_len;
    const uint8_t *bind; /* a unit: the Bind after its names (formats, values, formats) */
    uint32_t bind_len;
} cachekey_request_t;

/*
 * Replaces what k holds with the key of r (borrowed); r->text is written without its
 * comments. Returns 0, or -1 when memory runs out.
 */
__attribute__((warn_unused_result)) int cachekey_encode(buf_t *k, const cachekey_request_t *r);

/*
 * Reads key (len bytes, borrowed) into *out, whose pointers then point into key. Returns
 * false, with *out undefined, when key is not one cachekey_encode writes (another format
 * version, a field cut short, a unit whose Parse or Bind rest is malformed, a user of
 * CONFIG_NAME_LEN bytes or more, a parameter value of PARAMS_VALUE_LEN or more).
 */
__attribute__((warn_unused_result)) bool cachekey_decode(const uint8_t *key, size_t len,
                                                         cachekey_request_t *out);

/*
 * Appends to out the messages a client sends for r (borrowed, a decoded request): a Query, or
 * Parse "" Bind "" [Describe portal ""] Execute "" 0 Sync. Returns 0, or -1 when memory runs
 * out (out then holds part of them).
 */
__attribute__((warn_unused_result)) int cachekey_build_request(buf_t *out,
                                                               const cachekey_request_t *r);

#endif /* PGTURBO_CACHEKEY_H */
