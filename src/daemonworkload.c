/*
 * daemonworkload.c
 *    advise's workload from the daemon's admin API; see daemonworkload.h.
 *
 * The API is plain HTTP on a loopback or private address: one GET per request over HTTP/1.0,
 * so that the server closes the connection after the answer and the body is what follows the
 * headers.
 */
#include "daemonworkload.h"

#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define ANSWER_MAX (64 * 1024 * 1024) /* a larger answer is refused */
#define TIMEOUT_S  10

static int connect_api(const char *api, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(api, ':');
    if (colon == NULL || (size_t)(colon - api) >= sizeof(host) || colon[1] == '\0') {
        snprintf(err, errlen, "--api: expected host:port, got \"%s\"", api);
        return -1;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - api), api);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "--api %s: %s", api, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        struct timeval tv = {.tv_sec = TIMEOUT_S};
        if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
                        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
                        connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "cannot connect to the admin API at %s", api);
    return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads until the server closes; the malloc'd answer, NUL-terminated, or NULL. */
static char *read_all(int fd, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n + 1 == cap) {
            char *bigger = cap < ANSWER_MAX ? realloc(buf, cap * 2) : NULL;
            if (bigger == NULL) {
                free(buf);
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (buf != NULL)
        buf[n] = '\0';
    *len = n;
    return buf;
}

/* Percent-encodes s for a query string into out (truncated to size). */
static void url_escape(const char *s, char *out, size_t size)
{
    size_t n = 0;
    for (; *s != '\0' && n + 4 <= size; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, size - n, "%%%02X", c);
    }
    out[n] = '\0';
}

/* GET path: the JSON of a 200 answer, or NULL with err set. */
static json_t *api_get(const char *api, const char *token, const char *path, char *err,
                       size_t errlen)
{
    int fd = connect_api(api, err, errlen);
    if (fd < 0)
        return NULL;
    char request[2048];
    int n = snprintf(request, sizeof(request),
                     "GET %s HTTP/1.0\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", path, api,
                     token);
    size_t len = 0;
    char *answer = n > 0 && (size_t)n < sizeof(request) && send_all(fd, request, (size_t)n)
                       ? read_all(fd, &len)
                       : NULL;
    close(fd);
    if (answer == NULL) {
        snprintf(err, errlen, "no answer from the admin API at %s for %s", api, path);
        return NULL;
    }
    int status = 0;
    const char *body = strstr(answer, "\r\n\r\n");
    json_t *doc = NULL;
    if (sscanf(answer, "HTTP/%*d.%*d %d", &status) != 1 || body == NULL)
        snprintf(err, errlen, "the admin API at %s answered something that is not HTTP", api);
    else if (status != 200)
        snprintf(err, errlen, "the admin API at %s answered %d for %s: %.200s", api, status, path,
                 body + 4);
    else if ((doc = json_loads(body + 4, 0, NULL)) == NULL)
        snprintf(err, errlen, "the admin API at %s answered %s with invalid JSON", api, path);
    free(answer);
    return doc;
}

/* Writes text with each $n replaced by the n-th parameter, quoted as a string literal (NULL
 * as NULL); the result is a real run of the query for advise to read constants from. NULL
 * when a parameter was sent in binary (false) or memory runs out. */
static char *with_parameters(const char *text, const json_t *params)
{
    size_t cap = strlen(text) + 1;
    size_t i;
    const json_t *p;
    json_array_foreach(params, i, p)
    {
        if (json_is_false(p)) /* sent in binary: its text is not known */
            return NULL;
        cap += json_is_string(p) ? 2 * json_string_length(p) + 2 : 4;
    }
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    size_t n = 0;
    for (const char *s = text; *s != '\0';) {
        if (*s == '$' && s[1] >= '1' && s[1] <= '9') {
            char *end;
            long k = strtol(s + 1, &end, 10);
            const json_t *v = json_array_get(params, (size_t)(k - 1));
            if (v != NULL) {
                if (json_is_string(v)) {
                    out[n++] = '\'';
                    for (const char *c = json_string_value(v); *c != '\0'; c++) {
                        if (*c == '\'')
                            out[n++] = '\'';
                        out[n++] = *c;
                    }
                    out[n++] = '\'';
                } else {
                    memcpy(out + n, "NULL", 4);
                    n += 4;
                }
                s = end;
                continue;
            }
        }
        out[n++] = *s++;
    }
    out[n] = '\0';
    return out;
}

/* The first sample of fingerprint into q: its real text, and the text as prepared when its
 * values were bound; both stay NULL when the daemon kept none. */
static void sample_of(const char *api, const char *token, const char *fingerprint,
                      const char *database, workload_query_t *q)
{
    char path[128], err[256];
    snprintf(path, sizeof(path), "/api/v1/samples/%s", fingerprint);
    json_t *samples = api_get(api, token, path, err, sizeof(err));
    size_t i;
    json_t *s;
    json_array_foreach(samples, i, s)
    {
        const char *db = json_string_value(json_object_get(s, "database"));
        const char *query = json_string_value(json_object_get(s, "query"));
        json_t *params = json_object_get(s, "parameters");
        if (db == NULL || query == NULL || strcmp(db, database) != 0)
            continue;
        if (!json_is_array(params)) {
            q->sample = strdup(query);
        } else if ((q->sample = with_parameters(query, params)) != NULL &&
                   (q->prepared = strdup(query)) == NULL) {
            free(q->sample);
            q->sample = NULL;
        }
        break;
    }
    json_decref(samples);
}

/* Copies one row of /api/v1/queries into q; false when it is not one or memory runs out. */
static bool take_row(const char *api, const char *token, const char *database, json_t *row,
                     workload_query_t *q)
{
    const char *text = json_string_value(json_object_get(row, "query"));
    const char *fingerprint = json_string_value(json_object_get(row, "fingerprint"));
    const char *kind = json_string_value(json_object_get(row, "kind"));
    if (text == NULL || fingerprint == NULL || text[0] == '\0' ||
        (kind != NULL && strcmp(kind, "read") != 0 && strcmp(kind, "write") != 0))
        return false;
    char *repaired = workload_repair_text(text);
    q->text = repaired != NULL ? repaired : strdup(text);
    if (q->text == NULL)
        return false;
    q->queryid = (int64_t)strtoull(fingerprint, NULL, 16);
    q->calls = json_number_value(json_object_get(row, "calls"));
    q->total_ms = json_number_value(json_object_get(row, "total_exec_time"));
    q->rows = json_number_value(json_object_get(row, "rows"));
    sample_of(api, token, fingerprint, database, q);
    return true;
}

advise_status_t daemon_workload_load(const char *api, const char *token, const char *database,
                                     workload_t *w, char *err, size_t errlen)
{
    char path[512], db[3 * 64 + 1];
    url_escape(database, db, sizeof(db));
    snprintf(path, sizeof(path), "/api/v1/queries?sort=total&limit=%d&db=%s", WORKLOAD_MAX_QUERIES,
             db);
    json_t *rows = api_get(api, token, path, err, errlen);
    if (rows == NULL)
        return ADVISE_FAIL_DB;
    w->queries = calloc(json_array_size(rows) + 1, sizeof(*w->queries));
    if (w->queries == NULL) {
        json_decref(rows);
        snprintf(err, errlen, "out of memory");
        return ADVISE_FAIL_DB;
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        workload_query_t *q = &w->queries[w->n];
        if (!take_row(api, token, database, row, q))
            continue;
        w->n_samples += q->sample != NULL;
        w->total_ms += q->total_ms;
        w->total_calls += q->calls;
        w->n++;
    }
    json_decref(rows);
    return ADVISE_OK;
}
