/*
 * profile.c
 *    Query measurement, N+1 detection and request tracking per client; see profile.h.
 */
#include "profile.h"

#include "client.h"
#include "loopdetect.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "sqlparse.h"
#include "stats.h"
#include "worker.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUEST_IDLE_MS 1000 /* a request with no query for this long is over */
#define MAX_TAGS        8
#define PARAMS_TEXT_MAX 512
#define SAMPLE_TEXT_MAX 8192 /* longest query text kept as a sample */

typedef struct named {
    uint64_t name_hash;
    uint64_t fingerprint;
    sql_kind_t kind;
    char *text; /* its Parse text, kept only while stats wants a sample of it */
} named_t;

struct profile_state {
    uint64_t unnamed_fp, portal_fp, portal_params;
    char *unnamed_text; /* the unnamed statement's text, kept only for a sample */
    sql_kind_t unnamed_kind, portal_kind;
    named_t *names; /* named statements of the client */
    int n_names, cap_names;
    int64_t wait_us;
    loop_scope_t txn, req;
    bool in_request;
    char request_id[SQLPARSE_TAG_VALUE];
    char route[SQLPARSE_TAG_VALUE];
    int req_queries;
    int64_t req_db_us;
    int64_t req_last_ms;
    char params_text[PARAMS_TEXT_MAX];
};

static bool enabled(const client_t *c)
{
    return c->worker->cfg->query_stats && c->pool != NULL;
}

static profile_state_t *state(client_t *c)
{
    if (c->prof == NULL)
        c->prof = calloc(1, sizeof(*c->prof));
    return c->prof;
}

/* ---- N+1 ---- */

static void count_run(client_t *c, loop_scope_t *sc, const char *scope_name, uint64_t fp,
                      uint64_t params)
{
    const config_t *cfg = c->worker->cfg;
    uint64_t preceding = 0;
    int count = loop_scope_run(sc, fp, params, cfg->n_plus_one_threshold, &preceding);
    if (count == 0)
        return;
    stats_n_plus_one_t f = {
        .database = c->pool->database,
        .scope = scope_name,
        .request_id = sc == &c->prof->req ? c->prof->request_id : "",
        .fingerprint = fp,
        .preceding = preceding,
        .count = count,
    };
    stats_record_n_plus_one(c->worker->stats, cfg, &f);
}

/* A read or write query is starting: count it in the open transaction and request. */
static void count_loops(client_t *c, uint64_t fp, sql_kind_t kind, uint64_t params)
{
    if (kind != SQL_READ && kind != SQL_WRITE)
        return;
    profile_state_t *ps = c->prof;
    if (c->server != NULL && c->server->txn_status != 'I')
        count_run(c, &ps->txn, "transaction", fp, params);
    if (ps->in_request)
        count_run(c, &ps->req, "request", fp, params);
}

/* ---- requests ---- */

static void end_request(client_t *c)
{
    profile_state_t *ps = c->prof;
    if (ps == NULL || !ps->in_request)
        return;
    stats_request_t r = {
        .route = ps->route,
        .request_id = ps->request_id,
        .queries = ps->req_queries,
        .db_time_us = ps->req_db_us,
    };
    stats_record_request(c->worker->stats, c->worker->cfg, &r);
    ps->in_request = false;
    loop_scope_reset(&ps->req);
}

/* Reads the sqlcommenter tags of a query and follows its request. */
static void follow_request(client_t *c, const char *text, size_t len)
{
    profile_state_t *ps = c->prof;
    if (memchr(text, '*', len) == NULL) /* no comment: the common case, one scan */
        return;
    sql_tag_t tags[MAX_TAGS];
    int n = sqlparse_comment_tags(text, len, tags, MAX_TAGS);
    const char *request_id = NULL, *route = "";
    for (int i = 0; i < n; i++) {
        if (strcmp(tags[i].key, "request_id") == 0 || strcmp(tags[i].key, "traceparent") == 0)
            request_id = request_id != NULL ? request_id : tags[i].value;
        else if (strcmp(tags[i].key, "route") == 0)
            route = tags[i].value;
    }
    if (request_id == NULL)
        return;
    if (ps->in_request && strcmp(ps->request_id, request_id) == 0)
        return;
    end_request(c);
    ps->in_request = true;
    snprintf(ps->request_id, sizeof(ps->request_id), "%s", request_id);
    snprintf(ps->route, sizeof(ps->route), "%s", route);
    ps->req_queries = 0;
    ps->req_db_us = 0;
    ps->req_last_ms = loop_now(c->worker->loop);
}

/* ---- statements ---- */

/* The description of text, noted in the worker's statistics; *want_sample says whether this
 * run should be kept as a sample. */
static const sql_info_t *analyze(client_t *c, const char *text, size_t len, bool *want_sample)
{
    const sql_info_t *info = sqlparse_cache_get(c->worker->sql, text, len);
    *want_sample =
        info != NULL && stats_note_query(c->worker->stats, c->worker->cfg, c->pool->database, info);
    return info;
}

/* Whether the client is inside a transaction or a request, where N+1 loops are looked for. */
static bool in_scope(const client_t *c)
{
    return (c->server != NULL && c->server->txn_status != 'I') || c->prof->in_request;
}

static named_t *named_find(profile_state_t *ps, uint64_t name_hash)
{
    for (int i = 0; i < ps->n_names; i++)
        if (ps->names[i].name_hash == name_hash)
            return &ps->names[i];
    return NULL;
}

static uint64_t name_hash(const char *name)
{
    return sqlparse_hash(name, strlen(name));
}

uint64_t profile_query(client_t *c, const char *text, size_t len)
{
    if (!enabled(c) || state(c) == NULL)
        return 0;
    follow_request(c, text, len);
    bool want_sample;
    const sql_info_t *info = analyze(c, text, len, &want_sample);
    if (info == NULL)
        return 0;
    c->prof->params_text[0] = '\0';
    if (want_sample)
        stats_add_sample(c->worker->stats, c->pool->database, info->fingerprint, text,
                         len < SAMPLE_TEXT_MAX ? len : SAMPLE_TEXT_MAX, NULL);
    if (in_scope(c)) /* the text's hash tells its parameters apart */
        count_loops(c, info->fingerprint, info->kind, sqlparse_hash(text, len));
    if (c->prof->in_request)
        c->prof->req_queries++;
    return info->fingerprint;
}

void profile_parse(client_t *c, const char *name, const char *text, size_t len)
{
    if (!enabled(c) || state(c) == NULL)
        return;
    follow_request(c, text, len);
    bool want_sample;
    const sql_info_t *info = analyze(c, text, len, &want_sample);
    if (info == NULL)
        return;
    profile_state_t *ps = c->prof;
    char *keep = NULL; /* the text, for the Binds that follow to make a sample with */
    if (want_sample)
        keep = strndup(text, len < SAMPLE_TEXT_MAX ? len : SAMPLE_TEXT_MAX);
    if (name[0] == '\0') {
        ps->unnamed_fp = info->fingerprint;
        ps->unnamed_kind = info->kind;
        free(ps->unnamed_text);
        ps->unnamed_text = keep;
        return;
    }
    uint64_t h = name_hash(name);
    named_t *n = named_find(ps, h);
    if (n == NULL) {
        if (ps->n_names == ps->cap_names) {
            int cap = ps->cap_names ? 2 * ps->cap_names : 8;
            named_t *p = realloc(ps->names, (size_t)cap * sizeof(*p));
            if (p == NULL) {
                free(keep);
                return;
            }
            ps->names = p;
            ps->cap_names = cap;
        }
        n = &ps->names[ps->n_names++];
        n->name_hash = h;
        n->text = NULL;
    }
    n->fingerprint = info->fingerprint;
    n->kind = info->kind;
    free(n->text);
    n->text = keep;
}

/* Calls fn for each parameter of a Bind (the body after the portal and statement names):
 * its text, or NULL for SQL NULL or a binary value (binary true then). */
static void for_each_parameter(const uint8_t *body, size_t len,
                               void (*fn)(void *arg, int i, const uint8_t *v, int32_t n,
                                          bool binary),
                               void *arg)
{
    proto_reader_t r;
    proto_reader_init(&r, body, (uint32_t)len);
    int16_t n_formats = proto_get_int16(&r);
    int16_t formats[64] = {0};
    for (int i = 0; i < n_formats && proto_reader_ok(&r); i++) {
        int16_t f = proto_get_int16(&r);
        if (i < 64)
            formats[i] = f;
    }
    int16_t n = proto_get_int16(&r);
    for (int i = 0; i < n && proto_reader_ok(&r); i++) {
        int32_t vlen = proto_get_int32(&r);
        int16_t format = n_formats == 1 ? formats[0] : (i < 64 ? formats[i] : 1);
        const uint8_t *v = vlen > 0 ? proto_get_bytes(&r, (uint32_t)vlen) : NULL;
        if (!proto_reader_ok(&r))
            break;
        if (vlen == 0)
            v = (const uint8_t *)"";
        fn(arg, i, v, vlen, format != 0);
    }
}

typedef struct text_out {
    char *out;
    size_t size, used;
} text_out_t;

/* The slow log's text of the parameters: 'a', 'b', (binary), NULL. */
static void describe_one(void *arg, int i, const uint8_t *v, int32_t n, bool binary)
{
    text_out_t *t = arg;
    if (t->used + 1 >= t->size)
        return;
    int w;
    if (v == NULL)
        w = snprintf(t->out + t->used, t->size - t->used, "%sNULL", i ? ", " : "");
    else if (binary)
        w = snprintf(t->out + t->used, t->size - t->used, "%s(binary)", i ? ", " : "");
    else
        w = snprintf(t->out + t->used, t->size - t->used, "%s'%.*s'", i ? ", " : "", (int)n, v);
    if (w > 0)
        t->used += (size_t)w;
}

static void describe_parameters(char *out, size_t size, const uint8_t *body, size_t len)
{
    text_out_t t = {out, size, 0};
    out[0] = '\0';
    for_each_parameter(body, len, describe_one, &t);
}

/* For advise's samples: a JSON array of the parameters' texts, null for SQL NULL and false
 * for a binary value (its type is not known here, so it cannot be written as text). */
static void json_one(void *arg, int i, const uint8_t *v, int32_t n, bool binary)
{
    (void)i;
    json_t *value = v == NULL ? json_null()
                    : binary  ? json_false()
                              : json_stringn((const char *)v, (size_t)n);
    json_array_append_new(arg, value != NULL ? value : json_null());
}

/* Keeps this run (the statement's text and its parameters) as a sample when stats wants one
 * and the text was kept at Parse. */
static void sample_parameters(client_t *c, uint64_t fp, const char *text, const uint8_t *body,
                              size_t len)
{
    stats_t *st = c->worker->stats;
    if (fp == 0 || text == NULL || !stats_wants_sample(st, c->pool->database, fp))
        return;
    json_t *array = json_array();
    if (array == NULL)
        return;
    for_each_parameter(body, len, json_one, array);
    char *json = json_dumps(array, JSON_COMPACT);
    if (json != NULL)
        stats_add_sample(st, c->pool->database, fp, text, strlen(text), json);
    free(json);
    json_decref(array);
}

void profile_bind(client_t *c, const char *name, const uint8_t *params, size_t len)
{
    if (!enabled(c) || state(c) == NULL)
        return;
    profile_state_t *ps = c->prof;
    const char *text = NULL;
    if (name[0] == '\0') {
        ps->portal_fp = ps->unnamed_fp;
        ps->portal_kind = ps->unnamed_kind;
        text = ps->unnamed_text;
    } else {
        const named_t *n = named_find(ps, name_hash(name));
        ps->portal_fp = n != NULL ? n->fingerprint : 0;
        ps->portal_kind = n != NULL ? n->kind : SQL_UNPARSED;
        text = n != NULL ? n->text : NULL;
    }
    ps->portal_params = sqlparse_hash((const char *)params, len);
    sample_parameters(c, ps->portal_fp, text, params, len);
    ps->params_text[0] = '\0';
    if (c->worker->cfg->log_parameters)
        describe_parameters(ps->params_text, sizeof(ps->params_text), params, len);
}

uint64_t profile_execute(client_t *c)
{
    if (!enabled(c) || c->prof == NULL || c->prof->portal_fp == 0)
        return 0;
    profile_state_t *ps = c->prof;
    count_loops(c, ps->portal_fp, ps->portal_kind, ps->portal_params);
    if (ps->in_request)
        ps->req_queries++;
    return ps->portal_fp;
}

void profile_close_statement(client_t *c, const char *name)
{
    profile_state_t *ps = c->prof;
    if (ps == NULL || name[0] == '\0')
        return;
    named_t *n = named_find(ps, name_hash(name));
    if (n != NULL) {
        free(n->text);
        *n = ps->names[--ps->n_names];
    }
}

void profile_waited(client_t *c, int64_t wait_us)
{
    if (c->prof != NULL || (enabled(c) && state(c) != NULL))
        c->prof->wait_us += wait_us;
}

/* ---- the end of a query ---- */

void profile_finish(server_t *s, const pending_t *p)
{
    client_t *c = s->client;
    int64_t duration = loop_clock_us() - p->started_us;
    int64_t wait_us = 0;
    const char *parameters = NULL;
    if (c != NULL && c->prof != NULL) {
        wait_us = c->prof->wait_us;
        c->prof->wait_us = 0;
        if (c->prof->params_text[0] != '\0')
            parameters = c->prof->params_text;
        if (c->prof->in_request) {
            c->prof->req_db_us += duration;
            c->prof->req_last_ms = loop_now(c->worker->loop);
        }
    }
    stats_query_result_t q = {
        .fingerprint = p->fingerprint,
        .database = s->pool->database,
        .user = s->pool->user,
        .duration_us = duration,
        .wait_us = wait_us,
        .rows = p->rows,
        .error = p->failed,
        .parameters = parameters,
    };
    stats_record(s->worker->stats, s->worker->cfg, &q);
}

void profile_transaction_end(client_t *c)
{
    if (c->prof != NULL)
        loop_scope_reset(&c->prof->txn);
}

void profile_tick(client_t *c, int64_t now_ms)
{
    profile_state_t *ps = c->prof;
    if (ps != NULL && ps->in_request && ps->req_last_ms > 0 &&
        now_ms - ps->req_last_ms > REQUEST_IDLE_MS &&
        (c->server == NULL || c->server->pend_count == 0))
        end_request(c);
}

void profile_client_gone(client_t *c)
{
    if (c->prof == NULL)
        return;
    end_request(c);
    for (int i = 0; i < c->prof->n_names; i++)
        free(c->prof->names[i].text);
    free(c->prof->unnamed_text);
    free(c->prof->names);
    free(c->prof);
    c->prof = NULL;
}
