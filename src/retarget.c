/*
 * retarget.c
 *    Query texts rewritten to read another table; see retarget.h.
 *
 * The parse tree gives the location of each reference to the table (a RangeVar); the text is
 * rewritten from the last one back, each qualified name replaced whole.
 */
#include "retarget.h"

#include "sqlparse.h"

#include <ctype.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool is_ident_start(unsigned char c)
{
    return isalpha(c) || c == '_' || c >= 0x80;
}

static bool is_ident_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

/* The end of the identifier at s[i], quoted or not; i when there is none. */
static size_t skip_ident(const char *s, size_t i)
{
    if (s[i] == '"') {
        size_t j = i + 1;
        for (;;) {
            if (s[j] == '\0')
                return i;
            if (s[j] == '"') {
                if (s[j + 1] != '"')
                    return j + 1;
                j++;
            }
            j++;
        }
    }
    if (!is_ident_start((unsigned char)s[i]))
        return i;
    size_t j = i;
    while (is_ident_char((unsigned char)s[j]))
        j++;
    return j;
}

/* The end of the qualified name (a.b.c) at s[i]; i when there is none. */
static size_t skip_qualified_name(const char *s, size_t i)
{
    size_t end = skip_ident(s, i);
    if (end == i)
        return i;
    for (;;) {
        size_t j = end;
        while (isspace((unsigned char)s[j]))
            j++;
        if (s[j] != '.')
            return end;
        j++;
        while (isspace((unsigned char)s[j]))
            j++;
        size_t next = skip_ident(s, j);
        if (next == j)
            return end;
        end = next;
    }
}

typedef struct location_list {
    long *at;
    int n, cap;
    bool oom;
} location_list_t;

static bool grow_locations(location_list_t *l)
{
    if (l->n < l->cap)
        return true;
    int cap = l->cap == 0 ? 8 : l->cap * 2;
    long *p = realloc(l->at, (size_t)cap * sizeof(*p));
    if (p == NULL)
        return false;
    l->at = p;
    l->cap = cap;
    return true;
}

static void find_range_vars(json_t *v, const char *schema, const char *table, location_list_t *l)
{
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            find_range_vars(item, schema, table, l);
        }
        return;
    }
    if (!json_is_object(v))
        return;
    const char *rel = json_string_value(json_object_get(v, "relname"));
    if (rel != NULL) {
        const char *sch = json_string_value(json_object_get(v, "schemaname"));
        if (strcmp(rel, table) == 0 && strcmp(sch == NULL ? "" : sch, schema) == 0) {
            if (!grow_locations(l)) {
                l->oom = true;
                return;
            }
            l->at[l->n++] = (long)json_integer_value(json_object_get(v, "location"));
        }
    }
    const char *key;
    json_t *child;
    json_object_foreach(v, key, child)
    {
        find_range_vars(child, schema, table, l);
    }
}

static int compare_long_desc(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x > y ? -1 : x < y;
}

char *retarget_table(const char *text, const char *schema, const char *table,
                     const char *replacement)
{
    bool oom;
    json_t *root = sqlparse_tree(text, &oom);
    if (root == NULL)
        return NULL;
    location_list_t l = {0};
    find_range_vars(root, schema, table, &l);
    json_decref(root);
    char *result = NULL;
    if (l.oom || l.n == 0)
        goto done;
    qsort(l.at, (size_t)l.n, sizeof(long), compare_long_desc);
    result = strdup(text);
    for (int i = 0; result != NULL && i < l.n; i++) {
        size_t len = strlen(result);
        if (l.at[i] < 0 || (size_t)l.at[i] >= len || (i > 0 && l.at[i] == l.at[i - 1]))
            continue;
        size_t start = (size_t)l.at[i];
        size_t end = skip_qualified_name(result, start);
        if (end == start) {
            free(result);
            result = NULL;
            break;
        }
        size_t rlen = strlen(replacement);
        char *next = malloc(len - (end - start) + rlen + 1);
        if (next == NULL) {
            free(result);
            result = NULL;
            break;
        }
        memcpy(next, result, start);
        memcpy(next + start, replacement, rlen);
        memcpy(next + start + rlen, result + end, len - end + 1);
        free(result);
        result = next;
    }
done:
    free(l.at);
    return result;
}
