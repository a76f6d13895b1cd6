/*
 * inspect.c
 *    JSON snapshots for the admin API, gathered from the workers; see inspect.h.
 */
#include "inspect.h"

#include "client.h"
#include "config.h"
#include "jsontext.h"
#include "pool.h"
#include "report.h"
#include "alerts.h"
#include "log.h"
#include "scheduler.h"
#include "server.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One pool's numbers, summed over the workers. */
typedef struct pool_row {
    pool_t *pool;
    json_int_t cl_active, cl_waiting, sv_active, sv_idle, sv_login, maxwait_us;
} pool_row_t;

/* What the workers fill in, each in its own thread, under lock. */
typedef struct gathering {
    pthread_mutex_t lock;
    pool_row_t *rows;
    int n_rows, cap;
    json_t *array; /* clients or servers */
    bool failed;
} gathering_t;

static const config_t *current_config(void)
{
    return __atomic_load_n(&workers[0].cfg, __ATOMIC_ACQUIRE);
}

/* "2026-11-24T21:55:26Z" of a monotonic time in ms. */
static void iso_time(int64_t mono_ms, char *out, size_t len)
{
    time_t wall = time(NULL) - (time_t)((loop_clock_ms() - mono_ms) / 1000);
    struct tm tm;
    gmtime_r(&wall, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void tls_text(SSL *ssl, char *out, size_t len)
{
    if (ssl == NULL)
        out[0] = '\0';
    else
        snprintf(out, len, "%s/%s", tls_version_name(ssl), tls_cipher_name(ssl));
}

/* ---- pools ---- */

static pool_row_t *row_of(gathering_t *g, pool_t *pool)
{
    for (int i = 0; i < g->n_rows; i++)
        if (g->rows[i].pool == pool)
            return &g->rows[i];
    if (g->n_rows == g->cap) {
        int cap = g->cap ? 2 * g->cap : 16;
        pool_row_t *rows = realloc(g->rows, (size_t)cap * sizeof(*rows));
        if (rows == NULL)
            return NULL;
        g->rows = rows;
        g->cap = cap;
    }
    pool_row_t *r = &g->rows[g->n_rows++];
    memset(r, 0, sizeof(*r));
    r->pool = pool;
    return r;
}

static void count_pools(worker_t *w, void *arg)
{
    gathering_t *g = arg;
    int64_t now = loop_now(w->loop);
    pthread_mutex_lock(&g->lock);
    for (client_t *c = w->clients; c != NULL; c = c->next) {
        pool_row_t *r = c->pool != NULL ? row_of(g, c->pool) : NULL;
        if (r == NULL)
            continue;
        if (c->state == CLIENT_WAITING) {
            r->cl_waiting++;
            if ((now - c->wait_since) * 1000 > r->maxwait_us)
                r->maxwait_us = (now - c->wait_since) * 1000;
        } else if (c->state == CLIENT_IDLE || c->state == CLIENT_ACTIVE) {
            r->cl_active++;
        }
    }
    for (server_t *s = w->servers; s != NULL; s = s->next) {
        pool_row_t *r = row_of(g, s->pool);
        if (r == NULL)
            continue;
        if (s->state == SERVER_ACTIVE)
            r->sv_active++;
        else if (s->state == SERVER_IDLE)
            r->sv_idle++;
        else if (s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN)
            r->sv_login++;
    }
    pthread_mutex_unlock(&g->lock);
}

static void list_pool(pool_t *pool, void *arg)
{
    row_of(arg, pool);
}

json_t *inspect_pools(void)
{
    gathering_t g = {.lock = PTHREAD_MUTEX_INITIALIZER};
    pool_foreach(list_pool, &g); /* idle pools too */
    json_t *out = NULL;
    if (worker_call_all(count_pools, &g) < 0 || (out = json_array()) == NULL)
        goto done;
    for (int i = 0; i < g.n_rows; i++) {
        const pool_row_t *r = &g.rows[i];
        json_t *o =
            json_pack("{s:o, s:o, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "database",
                      jsontext_string(r->pool->database), "user", jsontext_string(r->pool->user),
                      "pool_mode", config_pool_mode_name((pool_mode_t)atomic_load(&r->pool->mode)),
                      "cl_active", r->cl_active, "cl_waiting", r->cl_waiting, "sv_active",
                      r->sv_active, "sv_idle", r->sv_idle, "sv_login", r->sv_login, "maxwait_us",
                      r->maxwait_us, "paused", atomic_load(&r->pool->paused));
        if (o == NULL || json_array_append_new(out, o) < 0) {
            json_decref(out);
            out = NULL;
            break;
        }
    }
done:
    free(g.rows);
    return out;
}

/* ---- clients and servers ---- */

static void add_clients(worker_t *w, void *arg)
{
    gathering_t *g = arg;
    int64_t now = loop_now(w->loop);
    pthread_mutex_lock(&g->lock);
    for (client_t *c = w->clients; c != NULL && !g->failed; c = c->next) {
        char addr[NET_ADDR_LEN], when[32], tls[96];
        snprintf(addr, sizeof(addr), "%s", c->peer);
        char *colon = strrchr(addr, ':');
        int port = colon != NULL ? atoi(colon + 1) : 0;
        if (colon != NULL)
            *colon = '\0';
        iso_time(c->connected_at, when, sizeof(when));
        tls_text(c->ssl, tls, sizeof(tls));
        const char *app = (c->params.known & (1u << PARAM_APPLICATION_NAME))
                              ? c->params.value[PARAM_APPLICATION_NAME]
                              : "";
        json_int_t wait_us = c->state == CLIENT_WAITING ? (now - c->wait_since) * 1000 : 0;
        json_t *o = json_pack("{s:i, s:o, s:o, s:s, s:s, s:i, s:s, s:o, s:s, s:I}", "id", c->id,
                              "user", jsontext_string(c->user), "database",
                              jsontext_string(c->database), "state", client_state_name(c->state),
                              "addr", addr, "port", port, "tls", tls, "application_name",
                              jsontext_string(app), "connect_time", when, "wait_us", wait_us);
        if (o == NULL || json_array_append_new(g->array, o) < 0)
            g->failed = true;
    }
    pthread_mutex_unlock(&g->lock);
}

static void add_servers(worker_t *w, void *arg)
{
    gathering_t *g = arg;
    pthread_mutex_lock(&g->lock);
    for (server_t *s = w->servers; s != NULL && !g->failed; s = s->next) {
        pool_target_t t;
        pthread_mutex_lock(&s->pool->lock);
        t = s->pool->target;
        pthread_mutex_unlock(&s->pool->lock);
        char when[32], tls[96];
        iso_time(s->connected_at, when, sizeof(when));
        tls_text(s->ssl, tls, sizeof(tls));
        json_t *o = json_pack("{s:i, s:o, s:o, s:s, s:s, s:i, s:s, s:i, s:s, s:o}", "id", s->id,
                              "user", jsontext_string(t.user[0] != '\0' ? t.user : s->pool->user),
                              "database", jsontext_string(s->pool->database), "state",
                              server_state_name(s->state), "addr", t.host, "port", t.port, "tls",
                              tls, "backend_pid", s->backend_pid, "connect_time", when, "client_id",
                              s->client != NULL ? json_integer(s->client->id) : json_null());
        if (o == NULL || json_array_append_new(g->array, o) < 0)
            g->failed = true;
    }
    pthread_mutex_unlock(&g->lock);
}

static json_t *gather_array(void (*fn)(worker_t *w, void *arg))
{
    gathering_t g = {.lock = PTHREAD_MUTEX_INITIALIZER, .array = json_array()};
    if (g.array == NULL)
        return NULL;
    if (worker_call_all(fn, &g) < 0 || g.failed) {
        json_decref(g.array);
        return NULL;
    }
    return g.array;
}

json_t *inspect_clients(void)
{
    return gather_array(add_clients);
}

json_t *inspect_servers(void)
{
    return gather_array(add_servers);
}

/* ---- health ---- */

/* A connection to the first [databases] entry as its user (postgres by default); NULL with
 * a reason in why when there is none or it fails. */
static PGconn *connect_first_database(const char *timeout_s, char *why, size_t len)
{
    const config_t *cfg = current_config();
    if (cfg->n_databases == 0) {
        snprintf(why, len, "no [databases] entry");
        return NULL;
    }
    const config_database_t *db = &cfg->databases[0];
    char port[16];
    snprintf(port, sizeof(port), "%d", db->port);
    const char *keys[] = {"host",    "port", "dbname", "user", "password", "connect_timeout",
                          "sslmode", NULL};
    const char *values[] = {db->host,
                            port,
                            db->dbname[0] != '\0' ? db->dbname : "postgres",
                            db->user[0] != '\0' ? db->user : "postgres",
                            db->password[0] != '\0' ? db->password : NULL,
                            timeout_s,
                            "prefer",
                            NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 0);
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(why, len, "%s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

bool inspect_health(char *why, size_t len)
{
    PGconn *conn = connect_first_database("2", why, len);
    bool ok = conn != NULL;
    if (ok) {
        PGresult *res = PQexec(conn, "SELECT 1");
        ok = PQresultStatus(res) == PGRES_TUPLES_OK;
        if (!ok)
            snprintf(why, len, "%s", PQresultErrorMessage(res));
        PQclear(res);
    }
    PQfinish(conn);
    return ok;
}

/* ---- query statistics (stats.c) ---- */

typedef struct view_gathering {
    pthread_mutex_t lock;
    stats_view_t *view;
    bool failed;
} view_gathering_t;

static void add_view(worker_t *w, void *arg)
{
    view_gathering_t *g = arg;
    pthread_mutex_lock(&g->lock);
    if (stats_view_add(g->view, w->stats) < 0)
        g->failed = true;
    pthread_mutex_unlock(&g->lock);
}

/* Every worker's statistics merged; NULL when memory runs out. */
static stats_view_t *gather_view(void)
{
    view_gathering_t g = {.lock = PTHREAD_MUTEX_INITIALIZER, .view = stats_view_create()};
    if (g.view == NULL)
        return NULL;
    if (worker_call_all(add_view, &g) < 0 || g.failed) {
        stats_view_free(g.view);
        return NULL;
    }
    return g.view;
}

static const char *sort_name(inspect_sort_t sort)
{
    switch (sort) {
    case INSPECT_SORT_TOTAL:
        break;
    case INSPECT_SORT_P95:
        return "p95";
    case INSPECT_SORT_CALLS:
        return "calls";
    case INSPECT_SORT_ERRORS:
        return "errors";
    }
    return "total";
}

/* What a question to the merged view needs; each answer reads the fields it uses. */
typedef struct question {
    const char *sort;
    int limit;
    const char *database;
    int64_t since_ms;
    uint64_t fingerprint;
} question_t;

typedef json_t *(*answer_fn)(const stats_view_t *v, const question_t *q);

/* Gathers every worker's statistics and answers q from them; NULL when memory runs out. */
static json_t *ask(answer_fn answer, const question_t *q)
{
    stats_view_t *v = gather_view();
    json_t *out = v != NULL ? answer(v, q) : NULL;
    stats_view_free(v);
    return out;
}

static json_t *answer_queries(const stats_view_t *v, const question_t *q)
{
    return stats_view_queries(v, q->sort, q->limit, q->database);
}

static json_t *answer_query(const stats_view_t *v, const question_t *q)
{
    return stats_view_query(v, q->fingerprint);
}

static json_t *answer_samples(const stats_view_t *v, const question_t *q)
{
    return stats_view_samples(v, q->fingerprint);
}

static json_t *answer_slow(const stats_view_t *v, const question_t *q)
{
    return stats_view_slow(v, q->since_ms, q->limit);
}

static json_t *answer_routes(const stats_view_t *v, const question_t *q)
{
    (void)q;
    return stats_view_routes(v);
}

static json_t *answer_slow_requests(const stats_view_t *v, const question_t *q)
{
    return stats_view_slow_requests(v, q->limit);
}

static json_t *answer_n_plus_one(const stats_view_t *v, const question_t *q)
{
    return stats_view_n_plus_one(v, q->limit);
}

static json_t *answer_metrics(const stats_view_t *v, const question_t *q)
{
    return stats_view_metrics(v, q->limit);
}

json_t *inspect_queries(inspect_sort_t sort, int limit, const char *database)
{
    question_t q = {.sort = sort_name(sort), .limit = limit, .database = database};
    return ask(answer_queries, &q);
}

json_t *inspect_query(uint64_t fingerprint)
{
    question_t q = {.fingerprint = fingerprint};
    return ask(answer_query, &q);
}

json_t *inspect_samples(uint64_t fingerprint)
{
    question_t q = {.fingerprint = fingerprint};
    return ask(answer_samples, &q);
}

json_t *inspect_slow(int64_t since_ms, int limit)
{
    question_t q = {.since_ms = since_ms, .limit = limit};
    return ask(answer_slow, &q);
}

json_t *inspect_routes(void)
{
    question_t q = {0};
    return ask(answer_routes, &q);
}

json_t *inspect_slow_requests(int limit)
{
    question_t q = {.limit = limit};
    return ask(answer_slow_requests, &q);
}

json_t *inspect_n_plus_one(int limit)
{
    question_t q = {.limit = limit};
    return ask(answer_n_plus_one, &q);
}

json_t *inspect_alerts(void)
{
    return alerts_active();
}

/* "2026-11-24T21:55:26Z" of a Unix time in ms; null for 0, which stands for never. */
static json_t *iso_unix_time(int64_t unix_ms)
{
    char text[32];
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (unix_ms == 0)
        return json_null();
    gmtime_r(&t, &tm);
    strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(text);
}

/* Milliseconds as seconds, as the config writes them: an integer unless there is a fraction. */
static json_t *seconds_of_ms(int64_t ms)
{
    return ms % 1000 == 0 ? json_integer(ms / 1000) : json_real((double)ms / 1000);
}

static json_t *scheduler_job_json(const scheduler_job_info_t *j)
{
    bool never = j->status == SCHEDULER_NEVER;
    return json_pack("{s:s, s:o, s:o, s:I, s:s, s:o, s:o, s:o, s:o}", "job",
                     SCHEDULER_JOB_PARTITION_MAINTAIN, "database", jsontext_string(j->database),
                     "interval_s", seconds_of_ms(j->interval_ms), "runs", (json_int_t)j->runs,
                     "last_status", scheduler_status_name(j->status), "last_started",
                     iso_unix_time(j->last_started), "last_duration_ms",
                     never ? json_null() : json_integer(j->last_duration_ms), "last_message",
                     never ? json_null() : jsontext_string(j->last_message), "next_run",
                     iso_unix_time(j->next_run));
}

json_t *inspect_scheduler(void)
{
    scheduler_job_info_t jobs[CONFIG_MAX_JOBS];
    int n = scheduler_snapshot(jobs);
    json_t *array = json_array();
    for (int i = 0; array != NULL && i < n; i++) {
        json_t *o = scheduler_job_json(&jobs[i]);
        if (o == NULL || json_array_append_new(array, o) != 0) {
            json_decref(array);
            array = NULL;
        }
    }
    return array;
}

json_t *inspect_metrics(int top_n)
{
    question_t q = {.limit = top_n};
    return ask(answer_metrics, &q);
}

json_t *inspect_report(char *why, size_t len)
{
    stats_view_t *v = gather_view();
    json_t *pools = inspect_pools();
    json_t *daemon = v != NULL && pools != NULL
                         ? json_pack("{s:O, s:{s:I, s:I}}", "pools", pools, "queries", "total",
                                     (json_int_t)stats_view_calls(v), "slow",
                                     (json_int_t)stats_view_slow_queries(v))
                         : NULL;
    json_decref(pools);
    stats_view_free(v);
    if (daemon == NULL) {
        snprintf(why, len, "out of memory");
        return NULL;
    }
    json_t *out = NULL;
    PGconn *conn = connect_first_database("5", why, len);
    if (conn != NULL) {
        report_options_t opt;
        report_options_init(&opt);
        opt.daemon = daemon;
        out = report_build(conn, &opt, why, len);
        PQfinish(conn);
    }
    json_decref(daemon);
    return out;
}

static void reset_worker(worker_t *w, void *arg)
{
    (void)arg;
    stats_reset(w->stats);
}

void inspect_reset(void)
{
    if (worker_call_all(reset_worker, NULL) < 0)
        log_error("stats reset failed: out of memory");
}
