/*
 * params.h
 *    Session parameters that pgturbo keeps right when a client moves between server
 *    connections in transaction mode.
 *
 * Each client holds the values its session should see; each server connection holds the values
 * it has. The server reports changes with ParameterStatus (all of these but extra_float_digits
 * are GUC_REPORT), pgturbo records them on both sides, and before a server runs a client's
 * transaction the differing values are SET on it.
 */
#ifndef PGTURBO_PARAMS_H
#define PGTURBO_PARAMS_H

#include "buf.h"

#include <stdbool.h>

#define PARAMS_VALUE_LEN 64

typedef enum params_id {
    PARAM_CLIENT_ENCODING,
    PARAM_DATESTYLE,
    PARAM_TIMEZONE,
    PARAM_INTERVALSTYLE,
    PARAM_STANDARD_CONFORMING_STRINGS,
    PARAM_APPLICATION_NAME,
    PARAM_EXTRA_FLOAT_DIGITS,
    PARAM_COUNT
} params_id_t;

/* Values by params_id_t; bit id of known is set once a value is known. */
typedef struct params {
    char value[PARAM_COUNT][PARAMS_VALUE_LEN];
    unsigned known;
} params_t;

/* The id of a tracked parameter (names compare case-insensitively), or -1. */
int params_find(const char *name);

/* The canonical name of a tracked parameter. */
const char *params_name(params_id_t id);

/* Sets a value (and marks it known); returns false, changing nothing, when it does not fit. */
bool params_set(params_t *p, params_id_t id, const char *value);

/*
 * Appends to sql one SET per parameter whose wanted value is known and differs from the value
 * the server has (or the server's is unknown), e.g. "SET TimeZone TO E'UTC';". Returns how many it
 * wrote, or -1 when memory runs out. sql is left NUL-free; the caller terminates it.
 */
int params_build_sync(const params_t *want, const params_t *have, buf_t *sql);

#endif /* PGTURBO_PARAMS_H */
