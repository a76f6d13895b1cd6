/*
 * jsontext.h
 *    JSON strings from text that may not be UTF-8: names, application_name, query texts and
 *    sqlcommenter values come from clients, and jansson refuses invalid UTF-8.
 */
#ifndef PGTURBO_JSONTEXT_H
#define PGTURBO_JSONTEXT_H

#include <jansson.h>

/* A new JSON string of s, with each byte of an invalid UTF-8 sequence replaced by '?';
 * NULL s gives "". NULL only when memory runs out. */
json_t *jsontext_string(const char *s);

#endif /* PGTURBO_JSONTEXT_H */
