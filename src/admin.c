/*
 * admin.c
 *    The admin HTTP API on libmicrohttpd; see admin.h and docs/api.md.
 *
 * A request goes through one function, route(): find the endpoint by path, check the token
 * (every path but /health), the method, and the token's right to write; then the endpoint's
 * function builds a reply (status, body, type) that route() sends and logs. Bodies of
 * requests are read and dropped: no endpoint takes one.
 *
 * The config whose tokens are checked is read with an atomic load at each request. serve.c
 * frees replaced configs only at exit, after admin_stop, so a request may keep using the one
 * it read while a reload swaps in another.
 *
 * /health opens a connection to PostgreSQL. It needs no token, so to keep a flood of requests
 * from becoming a flood of connections, one check runs at a time and its answer is reused
 * for HEALTH_REUSE_MS.
 */
#include "admin.h"

#include "cache.h"
#include "inspect.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"

#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* limit: the default and the largest accepted. */
#define DEFAULT_LIMIT 100
#define MAX_LIMIT     10000

/* top of POST /api/v1/cache/warm: the default and the largest accepted. */
#define DEFAULT_WARM_TOP 20
#define MAX_WARM_TOP     1000

#define HEALTH_REUSE_MS 1000

#define JSON_TYPE "application/json"

/* What a token may do. */
typedef enum role {
    ROLE_NONE,  /* no token, or one that matches neither */
    ROLE_STATS, /* admin_stats_token: the GET endpoints */
    ROLE_ADMIN, /* admin_token: everything */
} role_t;

/* The answer to one request, sent by route(). */
typedef struct reply {
    unsigned status;
    char *body; /* malloc'd; NULL only for the out-of-memory answer, which is static */
    size_t len;
    const char *type;
    const char *header; /* one extra header (WWW-Authenticate, Allow), or NULL */
    const char *value;
} reply_t;

/* The request as the endpoint functions see it. */
typedef struct request {
    struct MHD_Connection *conn;
    const char *rest; /* what follows a prefix path (the fingerprint), or "" */
} request_t;

typedef void (*serve_fn)(const request_t *req, reply_t *out);

typedef struct endpoint {
    const char *path; /* exact; or, ending in '/', a prefix followed by one more segment */
    const char *method;
    bool open;  /* no token needed */
    bool write; /* admin_token only */
    serve_fn serve;
} endpoint_t;

static struct MHD_Daemon *httpd;
static const config_t *current;            /* atomic: tokens are read from it per request */
static char listening_on[CONFIG_HOST_LEN]; /* the admin_listen httpd was started with */

static pthread_mutex_t health_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t health_checked_at = -1; /* loop_clock_ms of the last check; -1 = none yet */
static bool health_ok;
static char health_why[512];

/* ---- replies ---- */

static const char oom_body[] = "{\"error\":\"out of memory\"}\n";

static void reply_oom(reply_t *out)
{
    free(out->body);
    *out = (reply_t){.status = MHD_HTTP_INTERNAL_SERVER_ERROR, .type = JSON_TYPE};
}

/* Takes ownership of value (NULL means memory ran out) and makes it the body, compact, with
 * a newline for terminals. */
static void reply_json(reply_t *out, unsigned status, json_t *value)
{
    char *text = value != NULL ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(value);
    if (text == NULL) {
        reply_oom(out);
        return;
    }
    size_t len = strlen(text);
    char *body = realloc(text, len + 2);
    if (body == NULL) {
        free(text);
        reply_oom(out);
        return;
    }
    body[len] = '\n';
    body[len + 1] = '\0';
    free(out->body);
    *out = (reply_t){.status = status, .body = body, .len = len + 1, .type = JSON_TYPE};
}

static void reply_error(reply_t *out, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_error(reply_t *out, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Messages quote what the client sent, which need not be UTF-8 (JSON strings must be). */
    for (char *p = msg; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    reply_json(out, status, json_pack("{s:s}", "error", msg));
}

/* ---- query parameters ---- */

static const char *param(const request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* limit=N: 1 to MAX_LIMIT, DEFAULT_LIMIT when absent. False with a 400 reply otherwise. */
static bool param_limit(const request_t *req, int *limit, reply_t *out)
{
    const char *v = param(req, "limit");
    *limit = DEFAULT_LIMIT;
    if (v == NULL)
        return true;
    long n = 0;
    size_t len = strlen(v);
    bool digits = len > 0 && len <= 9 && strspn(v, "0123456789") == len;
    if (digits)
        n = strtol(v, NULL, 10);
    if (!digits || n < 1 || n > MAX_LIMIT) {
        reply_error(out, MHD_HTTP_BAD_REQUEST,
                    "limit: expected an integer from 1 to %d, got \"%.64s\"", MAX_LIMIT, v);
        return false;
    }
    *limit = (int)n;
    return true;
}

/* db=name: a database name, or NULL (all databases) when absent. */
static bool param_database(const request_t *req, const char **database, reply_t *out)
{
    *database = param(req, "db");
    if (*database != NULL && ((*database)[0] == '\0' || strlen(*database) >= CONFIG_NAME_LEN)) {
        reply_error(out, MHD_HTTP_BAD_REQUEST, "db: expected a database name of 1 to %d bytes",
                    CONFIG_NAME_LEN - 1);
        return false;
    }
    return true;
}

static bool param_sort(const request_t *req, inspect_sort_t *sort, reply_t *out)
{
    static const struct {
        const char *name;
        inspect_sort_t sort;
    } sorts[] = {
        {"total", INSPECT_SORT_TOTAL},
        {"p95", INSPECT_SORT_P95},
        {"calls", INSPECT_SORT_CALLS},
        {"errors", INSPECT_SORT_ERRORS},
    };
    const char *v = param(req, "sort");
    *sort = INSPECT_SORT_TOTAL;
    if (v == NULL)
        return true;
    for (size_t i = 0; i < sizeof(sorts) / sizeof(sorts[0]); i++) {
        if (strcmp(v, sorts[i].name) == 0) {
            *sort = sorts[i].sort;
            return true;
        }
    }
    reply_error(out, MHD_HTTP_BAD_REQUEST,
                "sort: expected total, p95, calls or errors, got \"%.64s\"", v);
    return false;
}

/*
 * since=: Unix time in milliseconds, or an ISO 8601 UTC time as the API writes them
 * ("2026-11-24T21:55:26Z", fractions of a second allowed). 0 (all) when absent.
 */
static bool param_since(const request_t *req, int64_t *since_ms, reply_t *out)
{
    const char *v = param(req, "since");
    *since_ms = 0;
    if (v == NULL)
        return true;
    size_t len = strlen(v);
    if (len > 0 && len <= 15 && strspn(v, "0123456789") == len) {
        *since_ms = strtoll(v, NULL, 10);
        return true;
    }
    struct tm tm = {0};
    const char *rest = strptime(v, "%Y-%m-%dT%H:%M:%S", &tm);
    int64_t ms = 0;
    if (rest != NULL && *rest == '.') {
        int64_t scale = 100;
        for (rest++; isdigit((unsigned char)*rest); rest++) {
            ms += (*rest - '0') * scale;
            scale /= 10;
        }
    }
    if (rest == NULL || strcmp(rest, "Z") != 0) {
        reply_error(out, MHD_HTTP_BAD_REQUEST,
                    "since: expected Unix milliseconds or a UTC time such as "
                    "2026-01-31T12:00:00Z, got \"%.64s\"",
                    v);
        return false;
    }
    time_t t = timegm(&tm);
    *since_ms = (int64_t)t * 1000 + ms;
    if (*since_ms < 0)
        *since_ms = 0;
    return true;
}

/* ---- endpoints ---- */

/* 200 with an inspect_* snapshot (taken over; NULL means memory ran out: 500). */
static void serve_snapshot(reply_t *out, json_t *value)
{
    reply_json(out, MHD_HTTP_OK, value);
}

static void serve_pools(const request_t *req, reply_t *out)
{
    serve_snapshot(out, inspect_pools());
}

static void serve_clients(const request_t *req, reply_t *out)
{
    serve_snapshot(out, inspect_clients());
}

static void serve_servers(const request_t *req, reply_t *out)
{
    serve_snapshot(out, inspect_servers());
}

static void serve_routes(const request_t *req, reply_t *out)
{
    serve_snapshot(out, inspect_routes());
}

static void serve_alerts(const request_t *req, reply_t *out)
{
    serve_snapshot(out, inspect_alerts());
}

static void serve_scheduler(const request_t *req, reply_t *out)
{
    serve_snapshot(out, inspect_scheduler());
}

static void serve_queries(const request_t *req, reply_t *out)
{
    inspect_sort_t sort;
    int limit;
    const char *database;
    if (param_sort(req, &sort, out) && param_limit(req, &limit, out) &&
        param_database(req, &database, out))
        serve_snapshot(out, inspect_queries(sort, limit, database));
}

/* A fingerprint in the path: true, or false with a 400 reply. */
static bool path_fingerprint(const request_t *req, reply_t *out, uint64_t *fingerprint)
{
    const char *hex = req->rest;
    if (strlen(hex) != 16 || strspn(hex, "0123456789abcdefABCDEF") != 16) {
        reply_error(out, MHD_HTTP_BAD_REQUEST, "fingerprint: expected 16 hex digits, got \"%.64s\"",
                    hex);
        return false;
    }
    *fingerprint = strtoull(hex, NULL, 16);
    return true;
}

static void serve_query(const request_t *req, reply_t *out)
{
    uint64_t fingerprint;
    if (!path_fingerprint(req, out, &fingerprint))
        return;
    json_t *rows = inspect_query(fingerprint);
    if (rows != NULL && json_array_size(rows) == 0) {
        json_decref(rows);
        reply_error(out, MHD_HTTP_NOT_FOUND, "unknown fingerprint %s", req->rest);
        return;
    }
    serve_snapshot(out, rows);
}

static void serve_samples(const request_t *req, reply_t *out)
{
    uint64_t fingerprint;
    if (path_fingerprint(req, out, &fingerprint))
        serve_snapshot(out, inspect_samples(fingerprint));
}

static void serve_slow(const request_t *req, reply_t *out)
{
    int64_t since_ms;
    int limit;
    if (param_since(req, &since_ms, out) && param_limit(req, &limit, out))
        serve_snapshot(out, inspect_slow(since_ms, limit));
}

static void serve_slow_requests(const request_t *req, reply_t *out)
{
    int limit;
    if (param_limit(req, &limit, out))
        serve_snapshot(out, inspect_slow_requests(limit));
}

static void serve_n_plus_one(const request_t *req, reply_t *out)
{
    int limit;
    if (param_limit(req, &limit, out))
        serve_snapshot(out, inspect_n_plus_one(limit));
}

static void serve_reset(const request_t *req, reply_t *out)
{
    inspect_reset();
    log_info("admin API: query statistics reset");
    reply_json(out, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
}

static void serve_cache(const request_t *req, reply_t *out)
{
    json_t *snapshot = cache_snapshot();
    if (snapshot == NULL)
        reply_error(out, MHD_HTTP_SERVICE_UNAVAILABLE, "the result cache is not running");
    else
        reply_json(out, MHD_HTTP_OK, snapshot);
}

/* POST /api/v1/cache/clear[?table=relname | ?schema=name]: without either, everything. */
static void serve_cache_clear(const request_t *req, reply_t *out)
{
    const char *table = param(req, "table");
    const char *schema = param(req, "schema");
    if ((table != NULL && (table[0] == '\0' || strlen(table) >= CONFIG_NAME_LEN)) ||
        (schema != NULL && (schema[0] == '\0' || strlen(schema) >= CONFIG_NAME_LEN))) {
        reply_error(out, MHD_HTTP_BAD_REQUEST, "table, schema: expected a name of 1 to %d bytes",
                    CONFIG_NAME_LEN - 1);
        return;
    }
    if (table != NULL && schema != NULL) {
        reply_error(out, MHD_HTTP_BAD_REQUEST, "give table or schema, not both");
        return;
    }
    size_t n = cache_clear(schema, table);
    log_info("admin API: cache cleared (%s%s): %zu entries",
             table != NULL ? "table " : schema != NULL ? "schema " : "",
             table != NULL ? table : schema != NULL ? schema : "all", n);
    reply_json(out, MHD_HTTP_OK, json_pack("{s:s, s:I}", "status", "ok", "entries", (json_int_t)n));
}

/* top=N: 1 to MAX_WARM_TOP, DEFAULT_WARM_TOP when absent. False with a 400 reply otherwise. */
static bool param_top(const request_t *req, size_t *top, reply_t *out)
{
    const char *v = param(req, "top");
    *top = DEFAULT_WARM_TOP;
    if (v == NULL)
        return true;
    size_t len = strlen(v);
    bool digits = len > 0 && len <= 9 && strspn(v, "0123456789") == len;
    long n = digits ? strtol(v, NULL, 10) : 0;
    if (n < 1 || n > MAX_WARM_TOP) {
        reply_error(out, MHD_HTTP_BAD_REQUEST,
                    "top: expected an integer from 1 to %d, got \"%.64s\"", MAX_WARM_TOP, v);
        return false;
    }
    *top = (size_t)n;
    return true;
}

/* POST /api/v1/cache/warm[?top=N]: the N entries with the most hits run again. */
static void serve_cache_warm(const request_t *req, reply_t *out)
{
    size_t top;
    if (!param_top(req, &top, out))
        return;
    cache_warm_result_t r;
    int rc = cache_warm(top, &r);
    if (rc == CACHE_WARM_BUSY) {
        reply_error(out, MHD_HTTP_CONFLICT, "a warm is already running");
        return;
    }
    if (rc < 0) {
        reply_error(out, MHD_HTTP_SERVICE_UNAVAILABLE, "the result cache is not running");
        return;
    }
    log_info("admin API: cache warm of the top %zu: %zu entries, %zu warmed, %zu fresh, "
             "%zu skipped, %zu failed",
             r.requested, r.entries, r.warmed, r.fresh, r.skipped, r.failed);
    reply_json(out, MHD_HTTP_OK,
               json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "requested", (json_int_t)r.requested,
                         "entries", (json_int_t)r.entries, "warmed", (json_int_t)r.warmed, "fresh",
                         (json_int_t)r.fresh, "skipped", (json_int_t)r.skipped, "failed",
                         (json_int_t)r.failed));
}

static void serve_health(const request_t *req, reply_t *out)
{
    char why[sizeof(health_why)];
    pthread_mutex_lock(&health_lock);
    int64_t now = loop_clock_ms();
    if (health_checked_at < 0 || now - health_checked_at >= HEALTH_REUSE_MS) {
        health_why[0] = '\0';
        health_ok = inspect_health(health_why, sizeof(health_why));
        log_one_line(health_why);
        health_checked_at = loop_clock_ms();
    }
    bool ok = health_ok;
    memcpy(why, health_why, sizeof(why));
    pthread_mutex_unlock(&health_lock);
    if (ok)
        reply_json(out, MHD_HTTP_OK, json_pack("{s:s, s:s}", "status", "ok", "postgres", "ok"));
    else
        reply_json(out, MHD_HTTP_SERVICE_UNAVAILABLE,
                   json_pack("{s:s, s:s}", "status", "unhealthy", "postgres",
                             why[0] != '\0' ? why : "unreachable"));
}

static void serve_report(const request_t *req, reply_t *out)
{
    (void)req;
    char why[512] = "";
    json_t *report = inspect_report(why, sizeof(why));
    if (report == NULL) {
        log_one_line(why);
        reply_error(out, MHD_HTTP_SERVICE_UNAVAILABLE, "report failed: %s", why);
        return;
    }
    reply_json(out, MHD_HTTP_OK, report);
}

static void serve_metrics(const request_t *req, reply_t *out)
{
    size_t len = 0;
    char *text = metrics_collect(&len);
    if (text == NULL) {
        reply_oom(out);
        return;
    }
    free(out->body);
    *out = (reply_t){.status = MHD_HTTP_OK, .body = text, .len = len, .type = METRICS_CONTENT_TYPE};
}

static const endpoint_t endpoints[] = {
    {"/health", "GET", true, false, serve_health},
    {"/metrics", "GET", false, false, serve_metrics},
    {"/api/v1/pools", "GET", false, false, serve_pools},
    {"/api/v1/clients", "GET", false, false, serve_clients},
    {"/api/v1/servers", "GET", false, false, serve_servers},
    {"/api/v1/queries", "GET", false, false, serve_queries},
    {"/api/v1/queries/", "GET", false, false, serve_query},
    {"/api/v1/samples/", "GET", false, true, serve_samples},
    {"/api/v1/slow", "GET", false, false, serve_slow},
    {"/api/v1/routes", "GET", false, false, serve_routes},
    {"/api/v1/requests/slow", "GET", false, false, serve_slow_requests},
    {"/api/v1/n-plus-one", "GET", false, false, serve_n_plus_one},
    {"/api/v1/alerts", "GET", false, false, serve_alerts},
    {"/api/v1/report", "GET", false, false, serve_report},
    {"/api/v1/scheduler", "GET", false, false, serve_scheduler},
    {"/api/v1/stats/reset", "POST", false, true, serve_reset},
    {"/api/v1/cache", "GET", false, false, serve_cache},
    {"/api/v1/cache/clear", "POST", false, true, serve_cache_clear},
    {"/api/v1/cache/warm", "POST", false, true, serve_cache_warm},
};

/* The endpoint of url, with *rest set to what follows a prefix path; NULL when none. */
static const endpoint_t *find_endpoint(const char *url, const char **rest)
{
    *rest = "";
    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
        const endpoint_t *e = &endpoints[i];
        size_t n = strlen(e->path);
        if (e->path[n - 1] != '/') {
            if (strcmp(url, e->path) == 0)
                return e;
        } else if (strncmp(url, e->path, n) == 0 && url[n] != '\0' &&
                   strchr(url + n, '/') == NULL) {
            *rest = url + n;
            return e;
        }
    }
    return NULL;
}

/* ---- authentication ---- */

/* Whether given (len bytes) is the configured token expected. Both are hashed first, so the
 * comparison takes the same time whatever the lengths and wherever they differ. */
static bool token_matches(const char *expected, const char *given, size_t len)
{
    unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
    unsigned int alen = 0, blen = 0;
    if (EVP_Digest(expected, strlen(expected), a, &alen, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(given, len, b, &blen, EVP_sha256(), NULL) != 1 || alen != blen)
        return false;
    bool same = CRYPTO_memcmp(a, b, alen) == 0;
    return same && expected[0] != '\0';
}

/* The role of the request's "Authorization: Bearer <token>", checked against cfg. */
static role_t authenticate(struct MHD_Connection *conn, const config_t *cfg)
{
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL)
        return ROLE_NONE;
    h += strspn(h, " \t");
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return ROLE_NONE;
    const char *token = h + 6 + strspn(h + 6, " \t");
    size_t len = strlen(token);
    while (len > 0 && (token[len - 1] == ' ' || token[len - 1] == '\t'))
        len--;
    /* Both comparisons always run, so timing does not tell which token was close. */
    bool admin = token_matches(cfg->admin_token, token, len);
    bool stats = token_matches(cfg->admin_stats_token, token, len);
    return admin ? ROLE_ADMIN : stats ? ROLE_STATS : ROLE_NONE;
}

/* ---- the request path ---- */

/* Whether endpoint e takes method; GET endpoints take HEAD too (libmicrohttpd sends no body). */
static bool takes_method(const endpoint_t *e, const char *method)
{
    if (strcmp(method, e->method) == 0)
        return true;
    return strcmp(e->method, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

static void route(struct MHD_Connection *conn, const char *url, const char *method, reply_t *out)
{
    request_t req = {.conn = conn};
    const endpoint_t *e = find_endpoint(url, &req.rest);
    role_t role = ROLE_NONE;

    /* The token first, so that without one every path but /health looks the same. */
    if (e == NULL || !e->open) {
        role = authenticate(conn, __atomic_load_n(&current, __ATOMIC_ACQUIRE));
        if (role == ROLE_NONE) {
            reply_error(out, MHD_HTTP_UNAUTHORIZED,
                        "missing or wrong token: send Authorization: Bearer <token>");
            out->header = MHD_HTTP_HEADER_WWW_AUTHENTICATE;
            out->value = "Bearer realm=\"pgturbo\"";
            return;
        }
    }
    if (e == NULL) {
        reply_error(out, MHD_HTTP_NOT_FOUND, "no such endpoint: %.200s", url);
        return;
    }
    if (!takes_method(e, method)) {
        reply_error(out, MHD_HTTP_METHOD_NOT_ALLOWED, "%s takes %s, not %.16s", e->path, e->method,
                    method);
        out->header = MHD_HTTP_HEADER_ALLOW;
        out->value = strcmp(e->method, "GET") == 0 ? "GET, HEAD" : e->method;
        return;
    }
    if (e->write && role != ROLE_ADMIN) {
        reply_error(out, MHD_HTTP_FORBIDDEN, "%s needs admin_token, not admin_stats_token",
                    e->path);
        return;
    }
    e->serve(&req, out);
}

static void peer_text(struct MHD_Connection *conn, char *out, size_t len)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char host[NI_MAXHOST], port[NI_MAXSERV];
    snprintf(out, len, "?");
    if (info == NULL || info->client_addr == NULL)
        return;
    socklen_t salen = info->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                               : sizeof(struct sockaddr_in);
    if (getnameinfo(info->client_addr, salen, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(out, len, "%s:%s", host, port);
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, reply_t *r)
{
    struct MHD_Response *resp;
    if (r->body != NULL)
        resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
    else
        resp = MHD_create_response_from_buffer(sizeof(oom_body) - 1, (void *)oom_body,
                                               MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        free(r->body);
        return MHD_NO;
    }
    enum MHD_Result ok =
        (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->type) == MHD_YES &&
         MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES &&
         (r->header == NULL || MHD_add_response_header(resp, r->header, r->value) == MHD_YES))
            ? MHD_queue_response(conn, r->status, resp)
            : MHD_NO;
    MHD_destroy_response(resp);
    return ok;
}

/*
 * libmicrohttpd calls this once when the headers are in, once per piece of body, and once
 * when the request is complete; the reply is made on that last call.
 */
static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **request_state)
{
    static int headers_seen;
    if (*request_state == NULL) {
        *request_state = &headers_seen;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* bodies are not used */
        return MHD_YES;
    }
    reply_t r = {0};
    route(conn, url, method, &r);
    if (log_enabled(LOG_DEBUG)) {
        char peer[NI_MAXHOST + NI_MAXSERV + 2];
        peer_text(conn, peer, sizeof(peer));
        log_debug("admin API: %s %s %s -> %u", peer, method, url, r.status);
    }
    return send_reply(conn, &r);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\r\n")] = '\0';
    log_warning("admin API: %s", msg);
}

/* ---- listening ---- */

/*
 * Splits admin_listen into host and port: "host:port", "[v6 address]:port", or "*:port"
 * (host "*" = every IPv4 address). False with a message in err.
 */
static bool split_listen(const char *text, char *host, size_t hostlen, char *port, size_t portlen,
                         char *err, size_t errlen)
{
    const char *colon;
    const char *h = text;
    size_t hlen;
    if (text[0] == '[') {
        const char *bracket = strchr(text, ']');
        if (bracket == NULL || bracket[1] != ':')
            goto malformed;
        h = text + 1;
        hlen = (size_t)(bracket - h);
        colon = bracket + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL)
            goto malformed;
        hlen = (size_t)(colon - text);
        if (memchr(text, ':', hlen) != NULL) {
            snprintf(err, errlen,
                     "admin_listen \"%s\": write an IPv6 address in brackets, "
                     "as [::1]:9930",
                     text);
            return false;
        }
    }
    const char *p = colon + 1;
    size_t plen = strlen(p);
    long n = plen > 0 && plen <= 5 && strspn(p, "0123456789") == plen ? strtol(p, NULL, 10) : 0;
    if (n < 1 || n > 65535) {
        snprintf(err, errlen, "admin_listen \"%s\": the port must be from 1 to 65535", text);
        return false;
    }
    if (hlen == 0 || hlen >= hostlen)
        goto malformed;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, portlen, "%ld", n);
    return true;
malformed:
    snprintf(err, errlen, "admin_listen \"%s\": expected host:port, [IPv6 address]:port or *:port",
             text);
    return false;
}

/* A listening socket on admin_listen, or -1 with a message naming the address in err. */
static int open_listener(const char *addr, char *err, size_t errlen)
{
    char host[CONFIG_HOST_LEN], port[8];
    if (!split_listen(addr, host, sizeof(host), port, sizeof(port), err, errlen))
        return -1;
    bool any = strcmp(host, "*") == 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_family = any ? AF_INET : AF_UNSPEC,
                             .ai_flags = AI_NUMERICSERV | (any ? AI_PASSIVE : 0)};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(any ? NULL : host, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "admin_listen %s: cannot resolve \"%s\": %s", addr, host,
                 gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    /* SO_REUSEADDR only: a restart may bind over connections in TIME_WAIT, but not share the
     * port with another listener (no SO_REUSEPORT, unlike the workers). */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "admin_listen %s: cannot listen: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int start_httpd(const config_t *cfg, char *err, size_t errlen)
{
    int fd = open_listener(cfg->admin_listen, err, errlen);
    if (fd < 0)
        return -1;
    /* A thread per connection, because answers block on the workers; poll rather than
     * select, since the daemon's descriptors go far past FD_SETSIZE with many clients. */
    httpd = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0, NULL,
        NULL, handle, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET,
        (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)ADMIN_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)ADMIN_IDLE_TIMEOUT, MHD_OPTION_END);
    if (httpd == NULL) {
        close(fd);
        snprintf(err, errlen, "admin_listen %s: cannot start the HTTP server", cfg->admin_listen);
        return -1;
    }
    snprintf(listening_on, sizeof(listening_on), "%s", cfg->admin_listen);
    cache_warm_allow(true);
    log_info("admin API listening on %s", cfg->admin_listen);
    return 0;
}

int admin_start(const config_t *cfg, char *err, size_t errlen)
{
    __atomic_store_n(&current, cfg, __ATOMIC_RELEASE);
    if (cfg->admin_token[0] == '\0') {
        log_info("admin API off: no admin_token set");
        return 0;
    }
    return start_httpd(cfg, err, errlen);
}

void admin_reload(const config_t *cfg)
{
    __atomic_store_n(&current, cfg, __ATOMIC_RELEASE);
    if (httpd == NULL) {
        char err[512];
        if (cfg->admin_token[0] != '\0' && start_httpd(cfg, err, sizeof(err)) < 0)
            log_error("admin API not started: %s", err);
        return;
    }
    if (cfg->admin_token[0] == '\0') {
        admin_stop();
        log_info("admin API off: no admin_token set");
        return;
    }
    if (strcmp(cfg->admin_listen, listening_on) != 0)
        log_warning("admin_listen changed to %s: the admin API stays on %s until pgturbo restarts",
                    cfg->admin_listen, listening_on);
}

void admin_stop(void)
{
    if (httpd == NULL)
        return;
    cache_warm_allow(false); /* else a warm under way would hold the stop for up to a minute */
    MHD_stop_daemon(httpd);
    httpd = NULL;
    listening_on[0] = '\0';
}
