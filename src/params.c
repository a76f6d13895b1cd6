/*
 * params.c
 *    Tracked session parameters; see params.h.
 */
#include "params.h"

#include <string.h>
#include <strings.h>

static const char *const names[PARAM_COUNT] = {
    [PARAM_CLIENT_ENCODING] = "client_encoding",
    [PARAM_DATESTYLE] = "DateStyle",
    [PARAM_TIMEZONE] = "TimeZone",
    [PARAM_INTERVALSTYLE] = "IntervalStyle",
    [PARAM_STANDARD_CONFORMING_STRINGS] = "standard_conforming_strings",
    [PARAM_APPLICATION_NAME] = "application_name",
    [PARAM_EXTRA_FLOAT_DIGITS] = "extra_float_digits",
};

int params_find(const char *name)
{
    for (int i = 0; i < PARAM_COUNT; i++)
        if (strcasecmp(names[i], name) == 0)
            return i;
    return -1;
}

const char *params_name(params_id_t id)
{
    return names[id];
}

bool params_set(params_t *p, params_id_t id, const char *value)
{
    size_t n = strlen(value);
    if (n >= PARAMS_VALUE_LEN)
        return false;
    memcpy(p->value[id], value, n + 1);
    p->known |= 1u << id;
    return true;
}

/* Appends value as a string literal that means the same whatever standard_conforming_strings
 * is: E'...' with quotes and backslashes doubled. */
static int append_literal(buf_t *sql, const char *value)
{
    if (buf_append(sql, "E'", 2) < 0)
        return -1;
    for (const char *c = value; *c; c++) {
        if ((*c == '\'' || *c == '\\') && buf_append(sql, c, 1) < 0)
            return -1;
        if (buf_append(sql, c, 1) < 0)
            return -1;
    }
    return buf_append(sql, "'", 1);
}

int params_build_sync(const params_t *want, const params_t *have, buf_t *sql)
{
    int n = 0;
    for (int i = 0; i < PARAM_COUNT; i++) {
        const char *w = want->value[i];
        unsigned bit = 1u << i;
        if (!(want->known & bit) || ((have->known & bit) && strcmp(w, have->value[i]) == 0))
            continue;
        if (buf_append(sql, "SET ", 4) < 0 || buf_append(sql, names[i], strlen(names[i])) < 0 ||
            buf_append(sql, " TO ", 4) < 0 || append_literal(sql, w) < 0 ||
            buf_append(sql, ";", 1) < 0)
            return -1;
        n++;
    }
    return n;
}
