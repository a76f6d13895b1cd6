/*
 * stats.c
 *    Per-worker query statistics and the readers' merged views; see stats.h.
 */
#include "stats.h"

#include "jsontext.h"
#include "log.h"

#include <pthread.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TABLE_BUCKETS  4096 /* hash chains of the fingerprint table (a power of two) */
#define TEXT_MAX       1024 /* query text kept in a slow-log entry or finding */
#define PARAMS_MAX     512
#define FINDINGS_MAX   200 /* N+1 findings kept per worker */
#define REQUESTS_MAX   200 /* slow requests kept per worker */
#define ROUTES_MAX     1000
#define ROUTE_LEN      SQLPARSE_TAG_VALUE
#define REQUEST_ID_LEN SQLPARSE_TAG_VALUE

/* One (database, fingerprint) of one worker. */
typedef struct entry {
    uint64_t fingerprint;
    char database[CONFIG_NAME_LEN];
    sql_kind_t kind;
    char *query; /* normalized text, owned; "" when the parser gave none */
    uint64_t calls, errors, rows, total_us, wait_us, min_us, max_us;
    histogram_t *hist;                  /* allocated on the first record */
    char *sample_text[STATS_SAMPLES];   /* a simple query as sent, or NULL */
    char *sample_params[STATS_SAMPLES]; /* JSON array of Bind parameters, or NULL */
    int n_samples;
    struct entry *chain;
    struct entry *newer, *older; /* the LRU list */
} entry_t;

typedef struct slow_entry {
    int64_t time_ms; /* Unix */
    char database[CONFIG_NAME_LEN];
    char user[CONFIG_NAME_LEN];
    bool error_level;
    int64_t duration_us;
    uint64_t fingerprint;
    char query[TEXT_MAX];
    char parameters[PARAMS_MAX];
    bool has_parameters;
} slow_entry_t;

typedef struct finding {
    int64_t time_ms;
    char database[CONFIG_NAME_LEN];
    char scope[16];
    char request_id[REQUEST_ID_LEN];
    uint64_t fingerprint, preceding;
    int count;
    char query[TEXT_MAX];
    char preceding_query[TEXT_MAX];
} finding_t;

typedef struct slow_request {
    int64_t time_ms;
    char request_id[REQUEST_ID_LEN];
    char route[ROUTE_LEN];
    int queries;
    int64_t db_time_us;
    bool error_level;
} slow_request_t;

typedef struct route {
    char name[ROUTE_LEN];
    uint64_t requests, slow_requests;
    histogram_t db_time;   /* per request, us */
    histogram_t n_queries; /* per request */
} route_t;

/* A ring of fixed-size records, oldest overwritten. */
typedef struct ring {
    void *items;
    size_t item_size;
    int cap, next, count;
} ring_t;

typedef struct db_hist {
    char database[CONFIG_NAME_LEN];
    histogram_t hist;
} db_hist_t;

struct stats {
    entry_t *buckets[TABLE_BUCKETS];
    entry_t *newest, *oldest;
    int n_entries;
    ring_t slow, findings, requests;
    route_t **routes;
    int n_routes;
    db_hist_t **dbs;
    int n_dbs;
    uint64_t queries, errors, unparsed, slow_queries, n_plus_one, requests_total;
    uint64_t random; /* xorshift state for sampling */
};

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void copy_text(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* ---- rings ---- */

static void *ring_push(ring_t *r, size_t item_size, int cap)
{
    if (r->items == NULL || r->cap != cap) {
        free(r->items);
        r->items = calloc((size_t)cap, item_size);
        r->item_size = item_size;
        r->cap = r->items != NULL ? cap : 0;
        r->next = r->count = 0;
        if (r->items == NULL)
            return NULL;
    }
    void *slot = (char *)r->items + (size_t)r->next * item_size;
    r->next = (r->next + 1) % r->cap;
    if (r->count < r->cap)
        r->count++;
    memset(slot, 0, item_size);
    return slot;
}

static const void *ring_at(const ring_t *r, int i)
{
    return (const char *)r->items + (size_t)i * r->item_size;
}

static void ring_clear(ring_t *r)
{
    free(r->items);
    memset(r, 0, sizeof(*r));
}

/* ---- the fingerprint table ---- */

static size_t bucket_of(uint64_t fingerprint, const char *database)
{
    uint64_t h = fingerprint ^ sqlparse_hash(database, strlen(database));
    return (size_t)(h ^ (h >> 29)) & (TABLE_BUCKETS - 1);
}

static void lru_unlink(stats_t *st, entry_t *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        st->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        st->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(stats_t *st, entry_t *e)
{
    e->older = st->newest;
    e->newer = NULL;
    if (st->newest != NULL)
        st->newest->newer = e;
    st->newest = e;
    if (st->oldest == NULL)
        st->oldest = e;
}

static entry_t *find(stats_t *st, uint64_t fingerprint, const char *database)
{
    for (entry_t *e = st->buckets[bucket_of(fingerprint, database)]; e != NULL; e = e->chain)
        if (e->fingerprint == fingerprint && strcmp(e->database, database) == 0)
            return e;
    return NULL;
}

static void entry_free(entry_t *e)
{
    for (int i = 0; i < STATS_SAMPLES; i++) {
        free(e->sample_text[i]);
        free(e->sample_params[i]);
    }
    free(e->query);
    free(e->hist);
    free(e);
}

static void forget(stats_t *st, entry_t *e)
{
    entry_t **p = &st->buckets[bucket_of(e->fingerprint, e->database)];
    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    lru_unlink(st, e);
    st->n_entries--;
    entry_free(e);
}

/* The entry of (fingerprint, database), made when missing; NULL when memory runs out. */
static entry_t *entry_get(stats_t *st, const config_t *cfg, uint64_t fingerprint,
                          const char *database)
{
    entry_t *e = find(st, fingerprint, database);
    if (e != NULL) {
        if (st->newest != e) {
            lru_unlink(st, e);
            lru_push(st, e);
        }
        return e;
    }
    while (st->n_entries >= cfg->stats_max_fingerprints && st->oldest != NULL)
        forget(st, st->oldest);
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->fingerprint = fingerprint;
    copy_text(e->database, sizeof(e->database), database);
    e->kind = SQL_UNPARSED;
    size_t b = bucket_of(fingerprint, database);
    e->chain = st->buckets[b];
    st->buckets[b] = e;
    lru_push(st, e);
    st->n_entries++;
    return e;
}

stats_t *stats_create(void)
{
    stats_t *st = calloc(1, sizeof(stats_t));
    if (st != NULL)
        st->random = (uint64_t)unix_ms() | 1;
    return st;
}

static void free_routes_and_dbs(stats_t *st)
{
    for (int i = 0; i < st->n_routes; i++)
        free(st->routes[i]);
    free(st->routes);
    st->routes = NULL;
    st->n_routes = 0;
    for (int i = 0; i < st->n_dbs; i++)
        free(st->dbs[i]);
    free(st->dbs);
    st->dbs = NULL;
    st->n_dbs = 0;
}

void stats_reset(stats_t *st)
{
    while (st->oldest != NULL)
        forget(st, st->oldest);
    ring_clear(&st->slow);
    ring_clear(&st->findings);
    ring_clear(&st->requests);
    free_routes_and_dbs(st);
    st->queries = st->errors = st->unparsed = st->slow_queries = 0;
    st->n_plus_one = st->requests_total = 0;
}

void stats_free(stats_t *st)
{
    if (st == NULL)
        return;
    stats_reset(st);
    free(st);
}

/* A copy of a normalized text on one line: each run of whitespace becomes one space (its
 * constants are $n by now, so no string literal is changed). NULL when memory runs out. */
static char *one_line(const char *text)
{
    char *out = malloc(strlen(text) + 1);
    if (out == NULL)
        return NULL;
    size_t n = 0;
    for (const char *p = text; *p != '\0'; p++) {
        bool space = *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r';
        if (space && (n == 0 || out[n - 1] == ' '))
            continue;
        out[n++] = space ? ' ' : *p;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    return out;
}

/* Whether a run of e should be kept as a sample (see stats.h). */
static bool wants_sample(stats_t *st, const entry_t *e)
{
    if (e->n_samples < STATS_SAMPLES)
        return true;
    st->random ^= st->random << 13;
    st->random ^= st->random >> 7;
    st->random ^= st->random << 17;
    return (st->random & 255) == 0;
}

bool stats_note_query(stats_t *st, const config_t *cfg, const char *database,
                      const sql_info_t *info)
{
    entry_t *e = entry_get(st, cfg, info->fingerprint, database);
    if (e == NULL)
        return false;
    if (e->query == NULL) {
        e->kind = info->kind;
        e->query = one_line(info->normalized != NULL ? info->normalized : "");
        if (info->kind == SQL_UNPARSED)
            st->unparsed++;
    }
    return wants_sample(st, e);
}

bool stats_wants_sample(stats_t *st, const char *database, uint64_t fingerprint)
{
    const entry_t *e = find(st, fingerprint, database);
    return e != NULL && wants_sample(st, e);
}

void stats_add_sample(stats_t *st, const char *database, uint64_t fingerprint, const char *text,
                      size_t len, const char *parameters)
{
    entry_t *e = find(st, fingerprint, database);
    if (e == NULL)
        return;
    int slot = e->n_samples < STATS_SAMPLES ? e->n_samples++ : (int)(st->random % STATS_SAMPLES);
    free(e->sample_text[slot]);
    free(e->sample_params[slot]);
    e->sample_text[slot] = text != NULL ? strndup(text, len) : NULL;
    e->sample_params[slot] = parameters != NULL ? strdup(parameters) : NULL;
}

void stats_count_unparsed(stats_t *st)
{
    st->unparsed++;
}

/* ---- recording ---- */

static histogram_t *database_histogram(stats_t *st, const char *database)
{
    for (int i = 0; i < st->n_dbs; i++)
        if (strcmp(st->dbs[i]->database, database) == 0)
            return &st->dbs[i]->hist;
    db_hist_t **dbs = realloc(st->dbs, (size_t)(st->n_dbs + 1) * sizeof(*dbs));
    if (dbs == NULL)
        return NULL;
    st->dbs = dbs;
    db_hist_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    copy_text(d->database, sizeof(d->database), database);
    st->dbs[st->n_dbs++] = d;
    return &d->hist;
}

static void log_slow(stats_t *st, const config_t *cfg, const stats_query_result_t *q,
                     const entry_t *e, bool error_level)
{
    st->slow_queries++;
    log_write(error_level ? LOG_ERROR : LOG_WARNING,
              "slow query: db=%s user=%s duration=%.3f ms fingerprint=%016llx query=%s%s%s",
              q->database, q->user, (double)q->duration_us / 1000.0,
              (unsigned long long)q->fingerprint, e->query != NULL ? e->query : "",
              q->parameters != NULL ? " parameters=" : "",
              q->parameters != NULL ? q->parameters : "");
    slow_entry_t *s = ring_push(&st->slow, sizeof(slow_entry_t), cfg->slow_log_size);
    if (s == NULL)
        return;
    s->time_ms = unix_ms();
    copy_text(s->database, sizeof(s->database), q->database);
    copy_text(s->user, sizeof(s->user), q->user);
    s->error_level = error_level;
    s->duration_us = q->duration_us;
    s->fingerprint = q->fingerprint;
    copy_text(s->query, sizeof(s->query), e->query);
    s->has_parameters = q->parameters != NULL;
    copy_text(s->parameters, sizeof(s->parameters), q->parameters);
}

void stats_record(stats_t *st, const config_t *cfg, const stats_query_result_t *q)
{
    entry_t *e = entry_get(st, cfg, q->fingerprint, q->database);
    if (e == NULL)
        return;
    if (e->hist == NULL && (e->hist = calloc(1, sizeof(*e->hist))) == NULL)
        return;
    uint64_t us = q->duration_us > 0 ? (uint64_t)q->duration_us : 0;
    e->calls++;
    e->errors += q->error;
    e->rows += q->rows;
    e->total_us += us;
    e->wait_us += q->wait_us > 0 ? (uint64_t)q->wait_us : 0;
    if (e->calls == 1 || us < e->min_us)
        e->min_us = us;
    if (us > e->max_us)
        e->max_us = us;
    histogram_record(e->hist, us);
    histogram_t *dh = database_histogram(st, q->database);
    if (dh != NULL)
        histogram_record(dh, us);
    st->queries++;
    st->errors += q->error;
    if (cfg->slow_query_error_ms > 0 && us >= (uint64_t)cfg->slow_query_error_ms * 1000)
        log_slow(st, cfg, q, e, true);
    else if (cfg->slow_query_warn_ms > 0 && us >= (uint64_t)cfg->slow_query_warn_ms * 1000)
        log_slow(st, cfg, q, e, false);
}

static const char *text_of(stats_t *st, uint64_t fingerprint, const char *database)
{
    const entry_t *e = fingerprint != 0 ? find(st, fingerprint, database) : NULL;
    return e != NULL && e->query != NULL ? e->query : "";
}

void stats_record_n_plus_one(stats_t *st, const config_t *cfg, const stats_n_plus_one_t *f)
{
    (void)cfg;
    st->n_plus_one++;
    const char *query = text_of(st, f->fingerprint, f->database);
    log_warning("N+1: db=%s %s%s%s: %d runs of fingerprint=%016llx query=%s", f->database, f->scope,
                f->request_id[0] != '\0' ? " " : "", f->request_id, f->count,
                (unsigned long long)f->fingerprint, query);
    finding_t *x = ring_push(&st->findings, sizeof(finding_t), FINDINGS_MAX);
    if (x == NULL)
        return;
    x->time_ms = unix_ms();
    copy_text(x->database, sizeof(x->database), f->database);
    copy_text(x->scope, sizeof(x->scope), f->scope);
    copy_text(x->request_id, sizeof(x->request_id), f->request_id);
    x->fingerprint = f->fingerprint;
    x->preceding = f->preceding;
    x->count = f->count;
    copy_text(x->query, sizeof(x->query), query);
    copy_text(x->preceding_query, sizeof(x->preceding_query),
              text_of(st, f->preceding, f->database));
}

static route_t *route_get(stats_t *st, const char *name)
{
    for (int i = 0; i < st->n_routes; i++)
        if (strcmp(st->routes[i]->name, name) == 0)
            return st->routes[i];
    if (st->n_routes >= ROUTES_MAX)
        return NULL;
    route_t **routes = realloc(st->routes, (size_t)(st->n_routes + 1) * sizeof(*routes));
    if (routes == NULL)
        return NULL;
    st->routes = routes;
    route_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    copy_text(r->name, sizeof(r->name), name);
    st->routes[st->n_routes++] = r;
    return r;
}

void stats_record_request(stats_t *st, const config_t *cfg, const stats_request_t *req)
{
    st->requests_total++;
    route_t *r = route_get(st, req->route[0] != '\0' ? req->route : "(none)");
    bool error_level = cfg->slow_request_error_ms > 0 &&
                       req->db_time_us >= (int64_t)cfg->slow_request_error_ms * 1000;
    bool slow = error_level || (cfg->slow_request_warn_ms > 0 &&
                                req->db_time_us >= (int64_t)cfg->slow_request_warn_ms * 1000);
    if (r != NULL) {
        r->requests++;
        r->slow_requests += slow;
        histogram_record(&r->db_time, (uint64_t)req->db_time_us);
        histogram_record(&r->n_queries, (uint64_t)req->queries);
    }
    if (!slow)
        return;
    log_write(error_level ? LOG_ERROR : LOG_WARNING,
              "slow request: route=%s request_id=%s queries=%d db_time=%.3f ms", req->route,
              req->request_id, req->queries, (double)req->db_time_us / 1000.0);
    slow_request_t *s = ring_push(&st->requests, sizeof(slow_request_t), REQUESTS_MAX);
    if (s == NULL)
        return;
    s->time_ms = unix_ms();
    copy_text(s->request_id, sizeof(s->request_id), req->request_id);
    copy_text(s->route, sizeof(s->route), req->route);
    s->queries = req->queries;
    s->db_time_us = req->db_time_us;
    s->error_level = error_level;
}

/* ---- views ---- */

typedef struct view_entry {
    uint64_t fingerprint;
    char database[CONFIG_NAME_LEN];
    sql_kind_t kind;
    char *query;
    uint64_t calls, errors, rows, total_us, wait_us, min_us, max_us;
    histogram_t hist;
    json_t *samples; /* array of {"database", "query", "parameters"} */
} view_entry_t;

typedef struct view_route {
    char name[ROUTE_LEN];
    uint64_t requests, slow_requests;
    histogram_t db_time, n_queries;
} view_route_t;

struct stats_view {
    view_entry_t **entries;
    int n_entries, cap_entries;
    slow_entry_t *slow;
    int n_slow;
    finding_t *findings;
    int n_findings;
    slow_request_t *requests;
    int n_requests;
    view_route_t **routes;
    int n_routes;
    db_hist_t **dbs;
    int n_dbs;
    uint64_t queries, errors, unparsed, slow_queries, n_plus_one, requests_total;
};

stats_view_t *stats_view_create(void)
{
    return calloc(1, sizeof(stats_view_t));
}

void stats_view_free(stats_view_t *v)
{
    if (v == NULL)
        return;
    for (int i = 0; i < v->n_entries; i++) {
        free(v->entries[i]->query);
        json_decref(v->entries[i]->samples);
        free(v->entries[i]);
    }
    free(v->entries);
    free(v->slow);
    free(v->findings);
    free(v->requests);
    for (int i = 0; i < v->n_routes; i++)
        free(v->routes[i]);
    free(v->routes);
    for (int i = 0; i < v->n_dbs; i++)
        free(v->dbs[i]);
    free(v->dbs);
    free(v);
}

static view_entry_t *view_entry(stats_view_t *v, const entry_t *e)
{
    for (int i = 0; i < v->n_entries; i++)
        if (v->entries[i]->fingerprint == e->fingerprint &&
            strcmp(v->entries[i]->database, e->database) == 0)
            return v->entries[i];
    if (v->n_entries == v->cap_entries) {
        int cap = v->cap_entries ? 2 * v->cap_entries : 64;
        view_entry_t **p = realloc(v->entries, (size_t)cap * sizeof(*p));
        if (p == NULL)
            return NULL;
        v->entries = p;
        v->cap_entries = cap;
    }
    view_entry_t *ve = calloc(1, sizeof(*ve));
    if (ve == NULL || (ve->query = strdup(e->query != NULL ? e->query : "")) == NULL) {
        free(ve);
        return NULL;
    }
    ve->fingerprint = e->fingerprint;
    memcpy(ve->database, e->database, sizeof(ve->database));
    ve->kind = e->kind;
    v->entries[v->n_entries++] = ve;
    return ve;
}

static int add_samples(view_entry_t *ve, const entry_t *e)
{
    if (e->n_samples > 0 && ve->samples == NULL && (ve->samples = json_array()) == NULL)
        return -1;
    for (int i = 0; i < e->n_samples; i++) {
        json_t *params =
            e->sample_params[i] != NULL ? json_loads(e->sample_params[i], 0, NULL) : NULL;
        json_t *s =
            json_pack("{s:o, s:o, s:o}", "database", jsontext_string(e->database), "query",
                      jsontext_string(e->sample_text[i] != NULL ? e->sample_text[i] : e->query),
                      "parameters", params != NULL ? params : json_null());
        if (s == NULL || json_array_append_new(ve->samples, s) < 0)
            return -1;
    }
    return 0;
}

static int add_entries(stats_view_t *v, const stats_t *st)
{
    for (const entry_t *e = st->newest; e != NULL; e = e->older) {
        if (e->calls == 0)
            continue;
        view_entry_t *ve = view_entry(v, e);
        if (ve == NULL)
            return -1;
        if (ve->calls == 0 || e->min_us < ve->min_us)
            ve->min_us = e->min_us;
        if (e->max_us > ve->max_us)
            ve->max_us = e->max_us;
        ve->calls += e->calls;
        ve->errors += e->errors;
        ve->rows += e->rows;
        ve->total_us += e->total_us;
        ve->wait_us += e->wait_us;
        if (e->hist != NULL)
            histogram_merge(&ve->hist, e->hist);
        if (add_samples(ve, e) < 0)
            return -1;
    }
    return 0;
}

/* Appends a ring's items to an array of the view. */
static int add_ring(void **items, int *n, const ring_t *r, size_t item_size)
{
    if (r->count == 0)
        return 0;
    void *p = realloc(*items, (size_t)(*n + r->count) * item_size);
    if (p == NULL)
        return -1;
    *items = p;
    for (int i = 0; i < r->count; i++)
        memcpy((char *)p + (size_t)(*n + i) * item_size, ring_at(r, i), item_size);
    *n += r->count;
    return 0;
}

static int add_routes(stats_view_t *v, const stats_t *st)
{
    for (int i = 0; i < st->n_routes; i++) {
        const route_t *r = st->routes[i];
        view_route_t *vr = NULL;
        for (int k = 0; k < v->n_routes && vr == NULL; k++)
            if (strcmp(v->routes[k]->name, r->name) == 0)
                vr = v->routes[k];
        if (vr == NULL) {
            view_route_t **p = realloc(v->routes, (size_t)(v->n_routes + 1) * sizeof(*p));
            if (p == NULL)
                return -1;
            v->routes = p;
            if ((vr = calloc(1, sizeof(*vr))) == NULL)
                return -1;
            memcpy(vr->name, r->name, sizeof(vr->name));
            v->routes[v->n_routes++] = vr;
        }
        vr->requests += r->requests;
        vr->slow_requests += r->slow_requests;
        histogram_merge(&vr->db_time, &r->db_time);
        histogram_merge(&vr->n_queries, &r->n_queries);
    }
    return 0;
}

static int add_dbs(stats_view_t *v, const stats_t *st)
{
    for (int i = 0; i < st->n_dbs; i++) {
        db_hist_t *d = NULL;
        for (int k = 0; k < v->n_dbs && d == NULL; k++)
            if (strcmp(v->dbs[k]->database, st->dbs[i]->database) == 0)
                d = v->dbs[k];
        if (d == NULL) {
            db_hist_t **p = realloc(v->dbs, (size_t)(v->n_dbs + 1) * sizeof(*p));
            if (p == NULL)
                return -1;
            v->dbs = p;
            if ((d = calloc(1, sizeof(*d))) == NULL)
                return -1;
            memcpy(d->database, st->dbs[i]->database, sizeof(d->database));
            v->dbs[v->n_dbs++] = d;
        }
        histogram_merge(&d->hist, &st->dbs[i]->hist);
    }
    return 0;
}

int stats_view_add(stats_view_t *v, const stats_t *st)
{
    v->queries += st->queries;
    v->errors += st->errors;
    v->unparsed += st->unparsed;
    v->slow_queries += st->slow_queries;
    v->n_plus_one += st->n_plus_one;
    v->requests_total += st->requests_total;
    if (add_entries(v, st) < 0 ||
        add_ring((void **)&v->slow, &v->n_slow, &st->slow, sizeof(slow_entry_t)) < 0 ||
        add_ring((void **)&v->findings, &v->n_findings, &st->findings, sizeof(finding_t)) < 0 ||
        add_ring((void **)&v->requests, &v->n_requests, &st->requests, sizeof(slow_request_t)) <
            0 ||
        add_routes(v, st) < 0 || add_dbs(v, st) < 0)
        return -1;
    return 0;
}

uint64_t stats_view_calls(const stats_view_t *v)
{
    return v->queries;
}

uint64_t stats_view_slow_queries(const stats_view_t *v)
{
    return v->slow_queries;
}

/* ---- JSON ---- */

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static void iso_time(int64_t unix_time_ms, char *out, size_t len)
{
    time_t t = (time_t)(unix_time_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03dZ", (int)(unix_time_ms % 1000));
}

static void hex(uint64_t fingerprint, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)fingerprint);
}

static json_t *query_row(const view_entry_t *e)
{
    char fp[17];
    hex(e->fingerprint, fp);
    return json_pack("{s:s, s:o, s:s, s:o, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, "
                     "s:f, s:f}",
                     "fingerprint", fp, "database", jsontext_string(e->database), "kind",
                     sql_kind_name(e->kind), "query", jsontext_string(e->query), "calls",
                     (json_int_t)e->calls, "errors", (json_int_t)e->errors, "rows",
                     (json_int_t)e->rows, "total_exec_time", ms(e->total_us), "mean_exec_time",
                     e->calls ? ms(e->total_us) / e->calls : 0.0, "min_exec_time", ms(e->min_us),
                     "max_exec_time", ms(e->max_us), "p50", ms(histogram_percentile(&e->hist, 50)),
                     "p95", ms(histogram_percentile(&e->hist, 95)), "p99",
                     ms(histogram_percentile(&e->hist, 99)), "p999",
                     ms(histogram_percentile(&e->hist, 99.9)), "wait_time", ms(e->wait_us));
}

static const char *sort_key;

static uint64_t sort_value(const view_entry_t *e)
{
    if (strcmp(sort_key, "p95") == 0)
        return histogram_percentile(&e->hist, 95);
    if (strcmp(sort_key, "calls") == 0)
        return e->calls;
    if (strcmp(sort_key, "errors") == 0)
        return e->errors;
    return e->total_us;
}

static int by_sort_key(const void *a, const void *b)
{
    uint64_t x = sort_value(*(view_entry_t *const *)a);
    uint64_t y = sort_value(*(view_entry_t *const *)b);
    return x < y ? 1 : x > y ? -1 : 0;
}

static json_t *append_or_fail(json_t *array, json_t *item)
{
    if (item == NULL || json_array_append_new(array, item) < 0) {
        json_decref(array);
        return NULL;
    }
    return array;
}

json_t *stats_view_queries(const stats_view_t *v, const char *sort, int limit, const char *database)
{
    static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;
    json_t *out = json_array();
    view_entry_t **sorted = malloc(((size_t)v->n_entries + 1) * sizeof(*sorted));
    if (out == NULL || sorted == NULL) {
        free(sorted);
        json_decref(out);
        return NULL;
    }
    int n = 0;
    for (int i = 0; i < v->n_entries; i++)
        if (database == NULL || strcmp(v->entries[i]->database, database) == 0)
            sorted[n++] = v->entries[i];
    pthread_mutex_lock(&sort_lock); /* qsort has no context argument in C11 */
    sort_key = sort;
    qsort(sorted, (size_t)n, sizeof(*sorted), by_sort_key);
    pthread_mutex_unlock(&sort_lock);
    for (int i = 0; i < n && (limit <= 0 || i < limit) && out != NULL; i++)
        out = append_or_fail(out, query_row(sorted[i]));
    free(sorted);
    return out;
}

json_t *stats_view_query(const stats_view_t *v, uint64_t fingerprint)
{
    json_t *out = json_array();
    for (int i = 0; i < v->n_entries && out != NULL; i++)
        if (v->entries[i]->fingerprint == fingerprint)
            out = append_or_fail(out, query_row(v->entries[i]));
    return out;
}

/* For qsort, newest first: slow_entry_t, finding_t and slow_request_t all begin with time_ms. */
json_t *stats_view_samples(const stats_view_t *v, uint64_t fingerprint)
{
    json_t *out = json_array();
    for (int i = 0; i < v->n_entries && out != NULL; i++) {
        const view_entry_t *e = v->entries[i];
        if (e->fingerprint != fingerprint || e->samples == NULL)
            continue;
        if (json_array_extend(out, e->samples) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

static int newest_first(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

json_t *stats_view_slow(const stats_view_t *v, int64_t since_ms, int limit)
{
    json_t *out = json_array();
    if (v->n_slow > 0)
        qsort(v->slow, (size_t)v->n_slow, sizeof(*v->slow), newest_first);
    int n = 0;
    for (int i = 0; i < v->n_slow && out != NULL && (limit <= 0 || n < limit); i++) {
        const slow_entry_t *s = &v->slow[i];
        if (s->time_ms <= since_ms)
            continue;
        char when[40], fp[17];
        iso_time(s->time_ms, when, sizeof(when));
        hex(s->fingerprint, fp);
        json_t *row = json_pack("{s:s, s:o, s:o, s:s, s:f, s:s, s:o}", "time", when, "database",
                                jsontext_string(s->database), "user", jsontext_string(s->user),
                                "level", s->error_level ? "error" : "warning", "duration",
                                ms((uint64_t)s->duration_us), "fingerprint", fp, "query",
                                jsontext_string(s->query));
        if (row != NULL && s->has_parameters)
            json_object_set_new(row, "parameters", jsontext_string(s->parameters));
        out = append_or_fail(out, row);
        n++;
    }
    return out;
}

static const char *suggestion_for(const finding_t *f)
{
    (void)f;
    return "run it once for all the values: WHERE col = ANY($1) with an array parameter, or "
           "JOIN it to the query that produced the values";
}

json_t *stats_view_n_plus_one(const stats_view_t *v, int limit)
{
    json_t *out = json_array();
    if (v->n_findings > 0)
        qsort(v->findings, (size_t)v->n_findings, sizeof(*v->findings), newest_first);
    for (int i = 0; i < v->n_findings && out != NULL && (limit <= 0 || i < limit); i++) {
        const finding_t *f = &v->findings[i];
        char when[40], fp[17];
        iso_time(f->time_ms, when, sizeof(when));
        hex(f->fingerprint, fp);
        out = append_or_fail(
            out, json_pack("{s:s, s:o, s:s, s:o, s:s, s:o, s:i, s:o, s:s}", "time", when,
                           "database", jsontext_string(f->database), "scope", f->scope,
                           "request_id", jsontext_string(f->request_id), "fingerprint", fp, "query",
                           jsontext_string(f->query), "count", f->count, "preceding_query",
                           jsontext_string(f->preceding_query), "suggestion", suggestion_for(f)));
    }
    return out;
}

static json_t *summary(const histogram_t *h, double scale)
{
    double mean = h->count ? (double)h->sum_us / (double)h->count : 0.0;
    return json_pack("{s:f, s:f, s:f, s:f}", "mean", mean * scale, "p50",
                     (double)histogram_percentile(h, 50) * scale, "p95",
                     (double)histogram_percentile(h, 95) * scale, "p99",
                     (double)histogram_percentile(h, 99) * scale);
}

json_t *stats_view_routes(const stats_view_t *v)
{
    json_t *out = json_array();
    for (int i = 0; i < v->n_routes && out != NULL; i++) {
        const view_route_t *r = v->routes[i];
        out = append_or_fail(out, json_pack("{s:o, s:I, s:I, s:o, s:o}", "route",
                                            jsontext_string(r->name), "requests",
                                            (json_int_t)r->requests, "slow_requests",
                                            (json_int_t)r->slow_requests, "queries_per_request",
                                            summary(&r->n_queries, 1.0), "db_time_per_request",
                                            summary(&r->db_time, 0.001)));
    }
    return out;
}

json_t *stats_view_slow_requests(const stats_view_t *v, int limit)
{
    json_t *out = json_array();
    if (v->n_requests > 0)
        qsort(v->requests, (size_t)v->n_requests, sizeof(*v->requests), newest_first);
    for (int i = 0; i < v->n_requests && out != NULL && (limit <= 0 || i < limit); i++) {
        const slow_request_t *r = &v->requests[i];
        char when[40];
        iso_time(r->time_ms, when, sizeof(when));
        out = append_or_fail(out, json_pack("{s:s, s:o, s:o, s:i, s:f, s:s}", "time", when,
                                            "request_id", jsontext_string(r->request_id), "route",
                                            jsontext_string(r->route), "queries", r->queries,
                                            "db_time", ms((uint64_t)r->db_time_us), "level",
                                            r->error_level ? "error" : "warning"));
    }
    return out;
}

static const uint64_t metric_bounds[] = {1000,   5000,   10000,   25000,   50000,   100000,
                                         250000, 500000, 1000000, 2500000, 5000000, UINT64_MAX};
#define N_BOUNDS (sizeof(metric_bounds) / sizeof(metric_bounds[0]))

static json_t *histogram_json(const histogram_t *h)
{
    uint64_t counts[N_BOUNDS];
    histogram_cumulative(h, metric_bounds, N_BOUNDS, counts);
    json_t *le = json_array(), *buckets = json_array();
    for (size_t i = 0; i + 1 < N_BOUNDS && le != NULL && buckets != NULL; i++) {
        json_array_append_new(le, json_integer((json_int_t)metric_bounds[i]));
        json_array_append_new(buckets, json_integer((json_int_t)counts[i]));
    }
    return json_pack("{s:I, s:I, s:o, s:o}", "count", (json_int_t)counts[N_BOUNDS - 1], "sum_us",
                     (json_int_t)h->sum_us, "le", le, "buckets", buckets);
}

json_t *stats_view_metrics(const stats_view_t *v, int top_n)
{
    json_t *out = json_pack("{s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:[], s:[]}", "counters", "queries",
                            (json_int_t)v->queries, "query_errors", (json_int_t)v->errors,
                            "unparsed_queries", (json_int_t)v->unparsed, "slow_queries",
                            (json_int_t)v->slow_queries, "n_plus_one", (json_int_t)v->n_plus_one,
                            "requests", (json_int_t)v->requests_total, "databases", "fingerprints");
    if (out == NULL)
        return NULL;
    json_t *dbs = json_object_get(out, "databases");
    for (int i = 0; i < v->n_dbs; i++) {
        json_t *h = histogram_json(&v->dbs[i]->hist);
        if (h == NULL || json_object_set_new(h, "database", jsontext_string(v->dbs[i]->database)) ||
            json_array_append_new(dbs, h) < 0) {
            json_decref(out);
            return NULL;
        }
    }
    json_t *top = stats_view_queries(v, "total", top_n, NULL);
    json_t *fps = json_object_get(out, "fingerprints");
    size_t i;
    json_t *row;
    json_array_foreach(top, i, row)
    {
        const char *fp = json_string_value(json_object_get(row, "fingerprint"));
        const char *db = json_string_value(json_object_get(row, "database"));
        for (int k = 0; k < v->n_entries; k++) {
            const view_entry_t *e = v->entries[k];
            char hexfp[17];
            hex(e->fingerprint, hexfp);
            if (strcmp(hexfp, fp) != 0 || strcmp(e->database, db) != 0)
                continue;
            json_t *h = histogram_json(&e->hist);
            if (h != NULL) {
                json_object_set_new(h, "fingerprint", json_string(fp));
                json_object_set_new(h, "database", jsontext_string(db));
                json_array_append_new(fps, h);
            }
        }
    }
    json_decref(top);
    return out;
}
