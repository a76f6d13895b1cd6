/*
 * jsontext.c
 *    JSON strings from text that may not be UTF-8; see jsontext.h.
 */
#include "jsontext.h"

#include <stdlib.h>
#include <string.h>

json_t *jsontext_string(const char *s)
{
    if (s == NULL)
        s = "";
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return NULL;
    /* Keep ASCII, replace every other byte: crude, but valid and never longer. */
    for (size_t i = 0; i <= n; i++)
        copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    j = json_string(copy);
    free(copy);
    return j;
}
