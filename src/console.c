/*
 * console.c
 *    The admin console: command parsing, result sets, and the gathering of counts from every
 *    worker; see console.h.
 */
#include "console.h"

#include "cache.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "stats.h"
#include "tls.h"
#include "worker.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONSOLE_VERSION "pgturbo 0.1.0"
#define MAX_WORDS       4
#define WORD_LEN        CONFIG_NAME_LEN

typedef struct column {
    const char *name;
    uint32_t type;
} column_t;

#define TEXT(name)                                                                                 \
    {                                                                                              \
        name, PROTO_OID_TEXT                                                                       \
    }
#define INT(name)                                                                                  \
    {                                                                                              \
        name, PROTO_OID_INT8                                                                       \
    }
#define N_COLUMNS(cols) ((int)(sizeof(cols) / sizeof(cols[0])))

static const column_t pool_columns[] = {
    TEXT("database"),
    TEXT("user"),
    INT("cl_active"),
    INT("cl_waiting"),
    INT("cl_active_cancel_req"),
    INT("cl_waiting_cancel_req"),
    INT("sv_active"),
    INT("sv_active_cancel"),
    INT("sv_being_canceled"),
    INT("sv_idle"),
    INT("sv_used"),
    INT("sv_tested"),
    INT("sv_login"),
    INT("maxwait"),
    INT("maxwait_us"),
    TEXT("pool_mode"),
};

static const column_t stats_columns[] = {
    TEXT("database"),        INT("total_xact_count"), INT("total_query_count"),
    INT("total_received"),   INT("total_sent"),       INT("total_xact_time"),
    INT("total_query_time"), INT("total_wait_time"),  INT("avg_xact_count"),
    INT("avg_query_count"),  INT("avg_recv"),         INT("avg_sent"),
    INT("avg_xact_time"),    INT("avg_query_time"),   INT("avg_wait_time"),
};

/* SHOW CLIENTS and SHOW SERVERS have the same columns. */
static const column_t connection_columns[] = {
    TEXT("type"),         TEXT("user"),      TEXT("database"),
    TEXT("state"),        TEXT("addr"),      INT("port"),
    TEXT("local_addr"),   INT("local_port"), TEXT("connect_time"),
    TEXT("request_time"), INT("wait"),       INT("wait_us"),
    INT("close_needed"),  TEXT("ptr"),       TEXT("link"),
    INT("remote_pid"),    TEXT("tls"),       TEXT("application_name"),
};

static const column_t database_columns[] = {
    TEXT("name"),
    TEXT("host"),
    INT("port"),
    TEXT("database"),
    TEXT("force_user"),
    INT("pool_size"),
    INT("min_pool_size"),
    INT("reserve_pool"),
    TEXT("pool_mode"),
    INT("max_connections"),
    INT("current_connections"),
    INT("paused"),
    INT("disabled"),
};

static const column_t config_columns[] = {
    TEXT("key"),
    TEXT("value"),
    TEXT("default"),
    TEXT("changeable"),
};

static const column_t version_columns[] = {TEXT("version")};

/* SHOW CACHE: one row per [cache] rule, one for the pgturbo_cache tag, and the total. */
static const column_t cache_columns[] = {
    TEXT("rule"),     TEXT("ttl"),     INT("hits"),    INT("misses"), TEXT("hit_ratio"),
    INT("entries"),   INT("bytes"),    INT("evictions"), INT("invalidations"),
    TEXT("compression_ratio"),
};

/* SHOW QUERIES: pg_stat_statements' names where it has them. */
static const column_t query_columns[] = {
    TEXT("database"),
    TEXT("fingerprint"),
    TEXT("kind"),
    TEXT("query"),
    INT("calls"),
    INT("errors"),
    INT("rows"),
    TEXT("total_exec_time"),
    TEXT("mean_exec_time"),
    TEXT("min_exec_time"),
    TEXT("max_exec_time"),
    TEXT("p50"),
    TEXT("p95"),
    TEXT("p99"),
    TEXT("p999"),
    TEXT("wait_time"),
};

typedef enum gather_kind {
    GATHER_POOLS,
    GATHER_STATS,
    GATHER_CLIENTS,
    GATHER_SERVERS,
    GATHER_QUERIES,
} gather_kind_t;

/* One pool's numbers, summed over the workers. */
typedef struct pool_counts {
    int64_t cl_active, cl_waiting, sv_active, sv_idle, sv_login;
    int64_t maxwait_us;
    uint64_t xact_count, query_count, received, sent, xact_time, query_time, wait_time;
} pool_counts_t;

struct console_request {
    pthread_mutex_t lock;
    int pending; /* workers yet to add their part */
    gather_kind_t kind;
    worker_t *origin;
    client_t *client; /* touched by the origin only; NULL once the client closed */
    int n_pools;
    pool_t **pools;
    pool_counts_t *counts;
    buf_t rows; /* DataRow messages (SHOW CLIENTS, SHOW SERVERS) */
    int n_rows;
    bool failed;        /* memory ran out somewhere */
    stats_view_t *view; /* SHOW QUERIES */
};

bool console_is_database(const char *name)
{
    return strcmp(name, "pgturbo") == 0 || strcmp(name, "pgbouncer") == 0;
}

bool console_allows(const client_t *c, bool *admin)
{
    const config_t *cfg = c->worker->cfg;
    *admin = config_list_has(cfg->admin_users, c->user);
    return *admin || config_list_has(cfg->stats_users, c->user);
}

void console_welcome(client_t *c)
{
    static const char *const params[][2] = {
        {"server_version", "15.0"},      {"server_encoding", "UTF8"},
        {"client_encoding", "UTF8"},     {"DateStyle", "ISO, MDY"},
        {"integer_datetimes", "on"},     {"standard_conforming_strings", "on"},
        {"application_name", "pgturbo"},
    };
    int rc = proto_build_auth_ok(&c->out);
    for (size_t i = 0; rc == 0 && i < sizeof(params) / sizeof(params[0]); i++)
        rc = proto_build_parameter_status(&c->out, params[i][0], params[i][1]);
    if (rc == 0)
        rc = proto_build_backend_key(&c->out, c->id, 0);
    if (rc == 0)
        rc = proto_build_ready(&c->out, 'I');
    if (rc < 0) {
        client_close(c, "53200", "out of memory");
        return;
    }
    c->console = true;
    c->state = CLIENT_IDLE;
    client_log(LOG_INFO, c, "admin console login (%s)", c->console_admin ? "admin" : "stats");
    client_flush(c);
}

/* ---- answers ---- */

static int send_header(client_t *c, const column_t *cols, int n)
{
    const char *names[32];
    uint32_t types[32];
    for (int i = 0; i < n; i++) {
        names[i] = cols[i].name;
        types[i] = cols[i].type;
    }
    return proto_build_row_description(&c->out, n, names, types);
}

/* Ends an answer: CommandComplete with tag, ReadyForQuery, and a flush. */
static void finish(client_t *c, int rc, const char *tag)
{
    if (rc == 0)
        rc = proto_build_command_complete(&c->out, tag);
    if (rc == 0)
        rc = proto_build_ready(&c->out, 'I');
    if (rc < 0) {
        client_close(c, "53200", "out of memory");
        return;
    }
    client_flush(c);
}

/* An ErrorResponse (the console stays usable) and ReadyForQuery. */
static void refuse(client_t *c, const char *sqlstate, const char *message)
{
    if (proto_build_error(&c->out, "ERROR", sqlstate, message) < 0 ||
        proto_build_ready(&c->out, 'I') < 0) {
        client_close(c, "53200", "out of memory");
        return;
    }
    client_flush(c);
}

static void format_time(int64_t mono_ms, char *out, size_t len)
{
    time_t wall = time(NULL) - (time_t)((loop_clock_ms() - mono_ms) / 1000);
    struct tm tm;
    gmtime_r(&wall, &tm);
    strftime(out, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* ---- gathering from the workers ---- */

static int pool_index(const struct console_request *req, const pool_t *pool)
{
    for (int i = 0; i < req->n_pools; i++)
        if (req->pools[i] == pool)
            return i;
    return -1;
}

static void count_clients(worker_t *w, struct console_request *req, int64_t now)
{
    for (client_t *c = w->clients; c != NULL; c = c->next) {
        int i = c->pool != NULL ? pool_index(req, c->pool) : -1;
        if (i < 0)
            continue;
        pool_counts_t *pc = &req->counts[i];
        if (c->state == CLIENT_WAITING) {
            pc->cl_waiting++;
            int64_t waited = (now - c->wait_since) * 1000;
            if (waited > pc->maxwait_us)
                pc->maxwait_us = waited;
        } else if (c->state == CLIENT_IDLE || c->state == CLIENT_ACTIVE) {
            pc->cl_active++;
        }
    }
}

static void count_servers(worker_t *w, struct console_request *req)
{
    for (server_t *s = w->servers; s != NULL; s = s->next) {
        int i = pool_index(req, s->pool);
        if (i < 0)
            continue;
        pool_counts_t *pc = &req->counts[i];
        if (s->state == SERVER_ACTIVE)
            pc->sv_active++;
        else if (s->state == SERVER_IDLE)
            pc->sv_idle++;
        else if (s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN)
            pc->sv_login++;
    }
}

static void add_stats(worker_t *w, struct console_request *req)
{
    for (int i = 0; i < req->n_pools; i++) {
        const pool_shard_t *sh = &req->pools[i]->shards[w->id];
        pool_counts_t *pc = &req->counts[i];
        pc->xact_count += sh->xact_count;
        pc->query_count += sh->query_count;
        pc->received += sh->bytes_received;
        pc->sent += sh->bytes_sent;
        pc->xact_time += sh->xact_time_us;
        pc->query_time += sh->query_time_us;
        pc->wait_time += sh->wait_time_us;
    }
}

/* Splits "addr:port" (the peer as logged) into its parts. */
static void split_peer(const char *peer, char *addr, size_t len, char *port, size_t plen)
{
    const char *colon = strrchr(peer, ':');
    size_t n = colon != NULL ? (size_t)(colon - peer) : strlen(peer);
    snprintf(addr, len, "%.*s", (int)n, peer);
    snprintf(port, plen, "%s", colon != NULL ? colon + 1 : "0");
}

static void local_address(int fd, char *addr, size_t len, char *port, size_t plen)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    snprintf(addr, len, "unix");
    snprintf(port, plen, "0");
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 || ss.ss_family != AF_INET)
        return;
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &in->sin_addr, addr, (socklen_t)len);
    snprintf(port, plen, "%u", ntohs(in->sin_port));
}

/* The strings of one SHOW CLIENTS / SHOW SERVERS row. */
typedef struct connection_row {
    char addr[CONFIG_HOST_LEN], port[16], laddr[NET_ADDR_LEN], lport[16];
    char connect_time[40], request_time[40], wait[24], wait_us[24];
    char ptr[24], link[24], pid[16], tls[96];
} connection_row_t;

static void describe_tls(SSL *ssl, char *out, size_t len)
{
    if (ssl == NULL)
        out[0] = '\0';
    else
        snprintf(out, len, "%s/%s", tls_version_name(ssl), tls_cipher_name(ssl));
}

static int add_connection_row(struct console_request *req, const char *type, const char *user,
                              const char *database, const char *state, const connection_row_t *r,
                              const char *app)
{
    const char *values[] = {type,    user,       database, state,           r->addr,
                            r->port, r->laddr,   r->lport, r->connect_time, r->request_time,
                            r->wait, r->wait_us, "0",      r->ptr,          r->link,
                            r->pid,  r->tls,     app};
    req->n_rows++;
    return proto_build_data_row(&req->rows, N_COLUMNS(connection_columns), values);
}

static int add_client_rows(worker_t *w, struct console_request *req, int64_t now)
{
    for (client_t *c = w->clients; c != NULL; c = c->next) {
        connection_row_t r;
        split_peer(c->peer, r.addr, sizeof(r.addr), r.port, sizeof(r.port));
        local_address(c->fd, r.laddr, sizeof(r.laddr), r.lport, sizeof(r.lport));
        format_time(c->connected_at, r.connect_time, sizeof(r.connect_time));
        format_time(c->active_at, r.request_time, sizeof(r.request_time));
        int64_t waited = c->state == CLIENT_WAITING ? now - c->wait_since : 0;
        snprintf(r.wait, sizeof(r.wait), "%" PRId64, waited / 1000);
        snprintf(r.wait_us, sizeof(r.wait_us), "%" PRId64, (waited % 1000) * 1000);
        snprintf(r.ptr, sizeof(r.ptr), "%p", (void *)c);
        snprintf(r.link, sizeof(r.link), "%s", "");
        if (c->server != NULL)
            snprintf(r.link, sizeof(r.link), "%p", (void *)c->server);
        snprintf(r.pid, sizeof(r.pid), "0");
        describe_tls(c->ssl, r.tls, sizeof(r.tls));
        const char *app = (c->params.known & (1u << PARAM_APPLICATION_NAME))
                              ? c->params.value[PARAM_APPLICATION_NAME]
                              : "";
        if (add_connection_row(req, "C", c->user, c->database,
                               c->state == CLIENT_IDLE ? "active" : client_state_name(c->state), &r,
                               app) < 0)
            return -1;
    }
    return 0;
}

static int add_server_rows(worker_t *w, struct console_request *req)
{
    for (server_t *s = w->servers; s != NULL; s = s->next) {
        connection_row_t r;
        pool_target_t t;
        pthread_mutex_lock(&s->pool->lock);
        t = s->pool->target;
        pthread_mutex_unlock(&s->pool->lock);
        snprintf(r.addr, sizeof(r.addr), "%s", t.host);
        snprintf(r.port, sizeof(r.port), "%d", t.port);
        local_address(s->fd, r.laddr, sizeof(r.laddr), r.lport, sizeof(r.lport));
        format_time(s->connected_at, r.connect_time, sizeof(r.connect_time));
        format_time(s->used_at, r.request_time, sizeof(r.request_time));
        snprintf(r.wait, sizeof(r.wait), "0");
        snprintf(r.wait_us, sizeof(r.wait_us), "0");
        snprintf(r.ptr, sizeof(r.ptr), "%p", (void *)s);
        snprintf(r.link, sizeof(r.link), "%s", "");
        if (s->client != NULL)
            snprintf(r.link, sizeof(r.link), "%p", (void *)s->client);
        snprintf(r.pid, sizeof(r.pid), "%d", s->backend_pid);
        describe_tls(s->ssl, r.tls, sizeof(r.tls));
        const char *user = t.user[0] != '\0' ? t.user : s->pool->user;
        if (add_connection_row(req, "S", user, s->pool->database, server_state_name(s->state), &r,
                               "") < 0)
            return -1;
    }
    return 0;
}

/* Adds worker w's part to req; w NULL (its mail could not be posted) adds nothing. */
static int collect(worker_t *w, struct console_request *req)
{
    if (w == NULL)
        return 0;
    int64_t now = loop_now(w->loop);
    switch (req->kind) {
    case GATHER_POOLS:
        count_clients(w, req, now);
        count_servers(w, req);
        break;
    case GATHER_STATS:
        add_stats(w, req);
        break;
    case GATHER_CLIENTS:
        return add_client_rows(w, req, now);
    case GATHER_SERVERS:
        return add_server_rows(w, req);
    case GATHER_QUERIES:
        return req->view != NULL ? stats_view_add(req->view, w->stats) : -1;
    }
    return 0;
}

void console_collect(worker_t *w, struct console_request *req)
{
    pthread_mutex_lock(&req->lock);
    if (collect(w, req) < 0)
        req->failed = true;
    bool last = --req->pending == 0;
    pthread_mutex_unlock(&req->lock);
    if (last)
        worker_post_gathered(req->origin, req);
}

static void request_free(struct console_request *req)
{
    pthread_mutex_destroy(&req->lock);
    free(req->pools);
    free(req->counts);
    buf_free(&req->rows);
    stats_view_free(req->view);
    free(req);
}

typedef struct pool_list {
    pool_t **pools;
    int n, cap;
    bool failed;
} pool_list_t;

static void list_pool(pool_t *pool, void *arg)
{
    pool_list_t *l = arg;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        pool_t **p = realloc(l->pools, (size_t)cap * sizeof(*p));
        if (p == NULL) {
            l->failed = true;
            return;
        }
        l->pools = p;
        l->cap = cap;
    }
    l->pools[l->n++] = pool;
}

/* Asks every worker for its part; the answer comes through console_deliver(). */
static void gather(client_t *c, gather_kind_t kind)
{
    struct console_request *req = calloc(1, sizeof(*req));
    pool_list_t l = {0};
    pool_foreach(list_pool, &l);
    if (req == NULL || l.failed ||
        (req->counts = calloc((size_t)l.n + 1, sizeof(*req->counts))) == NULL) {
        free(l.pools);
        if (req != NULL)
            free(req->counts);
        free(req);
        client_close(c, "53200", "out of memory");
        return;
    }
    if (kind == GATHER_QUERIES && (req->view = stats_view_create()) == NULL) {
        free(l.pools);
        free(req->counts);
        free(req);
        client_close(c, "53200", "out of memory");
        return;
    }
    pthread_mutex_init(&req->lock, NULL);
    req->kind = kind;
    req->origin = c->worker;
    req->client = c;
    req->pools = l.pools;
    req->n_pools = l.n;
    req->pending = n_workers;
    c->console_req = req;
    client_pause_reading(c, true);
    for (int i = 0; i < n_workers; i++)
        worker_post_gather(&workers[i], req);
}

static void deliver_pools(client_t *c, const struct console_request *req)
{
    int rc = send_header(c, pool_columns, N_COLUMNS(pool_columns));
    for (int i = 0; rc == 0 && i < req->n_pools; i++) {
        const pool_t *p = req->pools[i];
        const pool_counts_t *pc = &req->counts[i];
        char n[7][24];
        int64_t nums[] = {
            pc->cl_active, pc->cl_waiting,           pc->sv_active,           pc->sv_idle,
            pc->sv_login,  pc->maxwait_us / 1000000, pc->maxwait_us % 1000000};
        for (int k = 0; k < 7; k++)
            snprintf(n[k], sizeof(n[k]), "%" PRId64, nums[k]);
        const char *values[] = {
            p->database, p->user, n[0], n[1],
            "0",         "0",     n[2], "0",
            "0",         n[3],    "0",  "0",
            n[4],        n[5],    n[6], config_pool_mode_name((pool_mode_t)atomic_load(&p->mode))};
        rc = proto_build_data_row(&c->out, N_COLUMNS(pool_columns), values);
    }
    finish(c, rc, "SHOW");
}

/* Sums the pools of one database (from index first on) into *sum. */
static void sum_database(const struct console_request *req, int first, pool_counts_t *sum,
                         bool *done)
{
    memset(sum, 0, sizeof(*sum));
    for (int i = first; i < req->n_pools; i++) {
        if (done[i] || strcmp(req->pools[i]->database, req->pools[first]->database) != 0)
            continue;
        const pool_counts_t *pc = &req->counts[i];
        sum->xact_count += pc->xact_count;
        sum->query_count += pc->query_count;
        sum->received += pc->received;
        sum->sent += pc->sent;
        sum->xact_time += pc->xact_time;
        sum->query_time += pc->query_time;
        sum->wait_time += pc->wait_time;
        done[i] = true;
    }
}

static uint64_t per(uint64_t total, uint64_t count)
{
    return count > 0 ? total / count : 0;
}

static int stats_row(client_t *c, const char *database, const pool_counts_t *s, uint64_t seconds)
{
    uint64_t nums[] = {s->xact_count,
                       s->query_count,
                       s->received,
                       s->sent,
                       s->xact_time,
                       s->query_time,
                       s->wait_time,
                       per(s->xact_count, seconds),
                       per(s->query_count, seconds),
                       per(s->received, seconds),
                       per(s->sent, seconds),
                       per(s->xact_time, s->xact_count),
                       per(s->query_time, s->query_count),
                       per(s->wait_time, s->xact_count)};
    char text[14][24];
    const char *values[15] = {database};
    for (int k = 0; k < 14; k++) {
        snprintf(text[k], sizeof(text[k]), "%" PRIu64, nums[k]);
        values[k + 1] = text[k];
    }
    return proto_build_data_row(&c->out, N_COLUMNS(stats_columns), values);
}

static void deliver_stats(client_t *c, const struct console_request *req)
{
    bool *done = calloc((size_t)req->n_pools + 1, sizeof(bool));
    if (done == NULL) {
        client_close(c, "53200", "out of memory");
        return;
    }
    uint64_t seconds = (uint64_t)((loop_clock_ms() - worker_started_at) / 1000);
    int rc = send_header(c, stats_columns, N_COLUMNS(stats_columns));
    for (int i = 0; rc == 0 && i < req->n_pools; i++) {
        if (done[i])
            continue;
        pool_counts_t sum;
        sum_database(req, i, &sum, done);
        rc = stats_row(c, req->pools[i]->database, &sum, seconds);
    }
    free(done);
    finish(c, rc, "SHOW");
}

static void deliver_rows(client_t *c, const struct console_request *req)
{
    int rc = send_header(c, connection_columns, N_COLUMNS(connection_columns));
    if (rc == 0)
        rc = buf_append(&c->out, buf_head(&req->rows), buf_len(&req->rows));
    finish(c, rc, "SHOW");
}

/* A JSON value of a query row as text: strings as they are, numbers printed. */
static void value_text(json_t *v, char *out, size_t len)
{
    if (json_is_string(v))
        snprintf(out, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, len, "%.3f", json_real_value(v));
    else
        out[0] = '\0';
}

static void deliver_queries(client_t *c, const struct console_request *req)
{
    json_t *rows = stats_view_queries(req->view, "total", 0, NULL);
    int rc = rows != NULL ? send_header(c, query_columns, N_COLUMNS(query_columns)) : -1;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        enum { N = N_COLUMNS(query_columns) };
        char text[N][1024];
        const char *values[N];
        for (int k = 0; k < N; k++) {
            value_text(json_object_get(row, query_columns[k].name), text[k], sizeof(text[k]));
            values[k] = text[k];
        }
        if (rc == 0)
            rc = proto_build_data_row(&c->out, N, values);
    }
    json_decref(rows);
    finish(c, rc, "SHOW");
}

void console_deliver(struct console_request *req)
{
    client_t *c = req->client;
    if (c != NULL) {
        c->console_req = NULL;
        if (req->failed) {
            refuse(c, "53200", "out of memory");
        } else if (req->kind == GATHER_POOLS) {
            deliver_pools(c, req);
        } else if (req->kind == GATHER_STATS) {
            deliver_stats(c, req);
        } else if (req->kind == GATHER_QUERIES) {
            deliver_queries(c, req);
        } else {
            deliver_rows(c, req);
        }
        if (c->state != CLIENT_CLOSED)
            client_pause_reading(c, false);
    }
    request_free(req);
}

void console_abandon(struct console_request *req, bool gathered)
{
    if (!gathered) {
        pthread_mutex_lock(&req->lock);
        bool last = --req->pending == 0;
        pthread_mutex_unlock(&req->lock);
        if (!last)
            return;
    }
    request_free(req);
}

void console_client_closed(client_t *c)
{
    if (c->console_req != NULL)
        c->console_req->client = NULL;
    c->console_req = NULL;
}

/* ---- answers from this thread ---- */

static int database_row(client_t *c, const config_database_t *db)
{
    int current = 0, paused = 0;
    pool_list_t l = {0};
    pool_foreach(list_pool, &l);
    for (int i = 0; i < l.n; i++)
        if (config_find_database(c->worker->cfg, l.pools[i]->database) == db) {
            current += atomic_load(&l.pools[i]->n_servers);
            paused |= atomic_load(&l.pools[i]->paused);
        }
    free(l.pools);
    char n[7][24];
    int nums[] = {
        db->port, db->pool_size, db->min_pool_size, db->reserve_pool_size, db->max_db_connections,
        current,  paused};
    for (int k = 0; k < 7; k++)
        snprintf(n[k], sizeof(n[k]), "%d", nums[k]);
    const char *values[] = {db->name,
                            db->host,
                            n[0],
                            db->dbname[0] != '\0' ? db->dbname : db->name,
                            db->user[0] != '\0' ? db->user : NULL,
                            n[1],
                            n[2],
                            n[3],
                            config_pool_mode_name(db->pool_mode),
                            n[4],
                            n[5],
                            n[6],
                            "0"};
    return proto_build_data_row(&c->out, N_COLUMNS(database_columns), values);
}

static void show_databases(client_t *c)
{
    const config_t *cfg = c->worker->cfg;
    int rc = send_header(c, database_columns, N_COLUMNS(database_columns));
    for (int i = 0; rc == 0 && i < cfg->n_databases; i++)
        rc = database_row(c, &cfg->databases[i]);
    finish(c, rc, "SHOW");
}

typedef struct config_rows {
    client_t *c;
    int rc;
} config_rows_t;

static void config_row(void *arg, const char *key, const char *value, const char *dflt,
                       bool changeable)
{
    config_rows_t *r = arg;
    const char *values[] = {key, value, dflt, changeable ? "yes" : "no"};
    if (r->rc == 0)
        r->rc = proto_build_data_row(&r->c->out, N_COLUMNS(config_columns), values);
}

static void show_config(client_t *c)
{
    config_rows_t r = {c, send_header(c, config_columns, N_COLUMNS(config_columns))};
    if (r.rc == 0)
        config_show(c->worker->cfg, config_row, &r);
    finish(c, r.rc, "SHOW");
}

/* One SHOW CACHE row from an object of cache_snapshot(); rule and ttl given. */
static int cache_row(client_t *c, const char *rule, const char *ttl, json_t *o)
{
    static const char *const keys[] = {"hits",      "misses",        "hit_ratio",
                                       "entries",   "bytes",         "evictions",
                                       "invalidations", "compression_ratio"};
    char text[8][32];
    const char *values[10] = {rule, ttl};
    for (int k = 0; k < 8; k++) {
        json_t *v = json_object_get(o, keys[k]);
        value_text(v, text[k], sizeof(text[k]));
        values[k + 2] = v != NULL ? text[k] : NULL;
    }
    return proto_build_data_row(&c->out, N_COLUMNS(cache_columns), values);
}

static void show_cache(client_t *c)
{
    json_t *snapshot = cache_snapshot();
    int rc = snapshot != NULL ? send_header(c, cache_columns, N_COLUMNS(cache_columns)) : -1;
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(snapshot, "rules"), i, r)
    {
        char ttl[32];
        value_text(json_object_get(r, "ttl_seconds"), ttl, sizeof(ttl));
        if (rc == 0)
            rc = cache_row(c, json_string_value(json_object_get(r, "rule")),
                           ttl[0] != '\0' ? ttl : NULL, r);
    }
    if (rc == 0)
        rc = cache_row(c, "total", NULL, json_object_get(snapshot, "totals"));
    json_decref(snapshot);
    finish(c, rc, "SHOW");
}

static void show_version(client_t *c)
{
    const char *values[] = {CONSOLE_VERSION};
    int rc = send_header(c, version_columns, N_COLUMNS(version_columns));
    if (rc == 0)
        rc = proto_build_data_row(&c->out, 1, values);
    finish(c, rc, "SHOW");
}

typedef struct pool_search {
    const char *database;
    bool found;
} pool_search_t;

static void match_pool(pool_t *pool, void *arg)
{
    pool_search_t *q = arg;
    if (strcmp(pool->database, q->database) == 0)
        q->found = true;
}

/*
 * Whether PAUSE, RESUME and KILL may name database: it has a [databases] entry of its own, or
 * clients reached it through "*" (it has a pool). As in PgBouncer, a name that only "*" would
 * accept is no database yet.
 */
static bool database_known(const client_t *c, const char *database)
{
    const config_database_t *db = config_find_database(c->worker->cfg, database);
    if (db != NULL && strcmp(db->name, database) == 0)
        return true;
    pool_search_t q = {database, false};
    pool_foreach(match_pool, &q);
    return q.found;
}

/* Refuses with 3D000 and returns false when database is unknown (see database_known). */
static bool check_database(client_t *c, const char *database)
{
    if (database_known(c, database))
        return true;
    char msg[128];
    snprintf(msg, sizeof(msg), "no such database: %s", database);
    refuse(c, "3D000", msg);
    return false;
}

static void pause_resume(client_t *c, const char *database, bool pause, const char *tag)
{
    if (database != NULL && !check_database(c, database))
        return;
    if (pool_pause(database, pause) < 0) {
        refuse(c, "53200", "out of memory");
        return;
    }
    log_info("admin console: %s %s by %s", tag, database != NULL ? database : "all databases",
             c->user);
    finish(c, 0, tag);
}

static void kill_database(client_t *c, const char *database)
{
    if (!check_database(c, database))
        return;
    if (pool_pause(database, true) < 0) {
        refuse(c, "53200", "out of memory");
        return;
    }
    for (int i = 0; i < n_workers; i++)
        worker_post_kill(&workers[i], database);
    log_info("admin console: KILL %s by %s", database, c->user);
    finish(c, 0, "KILL");
}

static void signal_self(client_t *c, int sig, const char *tag)
{
    log_info("admin console: %s by %s", tag, c->user);
    finish(c, 0, tag);
    kill(getpid(), sig);
}

/* ---- commands ---- */

/* Splits the query into at most MAX_WORDS words; false when there are more or one is long. */
static bool split_words(const char *q, char words[MAX_WORDS][WORD_LEN], int *n)
{
    *n = 0;
    for (const char *p = q;;) {
        while (isspace((unsigned char)*p) || *p == ';')
            p++;
        if (*p == '\0')
            return true;
        size_t len = 0;
        while (p[len] != '\0' && !isspace((unsigned char)p[len]) && p[len] != ';')
            len++;
        if (*n == MAX_WORDS || len >= WORD_LEN)
            return false;
        memcpy(words[*n], p, len);
        words[(*n)++][len] = '\0';
        p += len;
    }
}

static bool is(const char *word, const char *keyword)
{
    return strcasecmp(word, keyword) == 0;
}

static bool run_show(client_t *c, const char *what)
{
    if (is(what, "pools"))
        gather(c, GATHER_POOLS);
    else if (is(what, "stats"))
        gather(c, GATHER_STATS);
    else if (is(what, "clients"))
        gather(c, GATHER_CLIENTS);
    else if (is(what, "servers"))
        gather(c, GATHER_SERVERS);
    else if (is(what, "queries"))
        gather(c, GATHER_QUERIES);
    else if (is(what, "databases"))
        show_databases(c);
    else if (is(what, "config"))
        show_config(c);
    else if (is(what, "version"))
        show_version(c);
    else if (is(what, "cache"))
        show_cache(c);
    else
        return false;
    return true;
}

/* The admin-only commands; false when the words are none of them. */
static bool run_admin(client_t *c, char words[MAX_WORDS][WORD_LEN], int n)
{
    const char *arg = n == 2 ? words[1] : NULL;
    if (n == 1 && is(words[0], "reload"))
        signal_self(c, SIGHUP, "RELOAD");
    else if (n == 1 && is(words[0], "shutdown"))
        signal_self(c, SIGTERM, "SHUTDOWN");
    else if (n <= 2 && is(words[0], "pause"))
        pause_resume(c, arg, true, "PAUSE");
    else if (n <= 2 && is(words[0], "resume"))
        pause_resume(c, arg, false, "RESUME");
    else if (n == 2 && is(words[0], "kill"))
        kill_database(c, arg);
    else
        return false;
    return true;
}

static bool is_admin_command(const char *word)
{
    static const char *const admin[] = {"reload", "shutdown", "pause", "resume", "kill"};
    for (size_t i = 0; i < sizeof(admin) / sizeof(admin[0]); i++)
        if (is(word, admin[i]))
            return true;
    return false;
}

static void answer_empty(client_t *c)
{
    if (proto_build_empty(&c->out, 'I' /* EmptyQueryResponse */) < 0 ||
        proto_build_ready(&c->out, 'I') < 0) {
        client_close(c, "53200", "out of memory");
        return;
    }
    client_flush(c);
}

static void run_query(client_t *c, const char *query)
{
    char words[MAX_WORDS][WORD_LEN];
    int n;
    bool parsed = split_words(query, words, &n);
    if (parsed && n == 0) {
        answer_empty(c);
        return;
    }
    if (parsed && n == 2 && is(words[0], "show") && run_show(c, words[1]))
        return;
    if (parsed && is_admin_command(words[0])) {
        if (!c->console_admin) {
            refuse(c, "42501", "admin console: only admin_users may run this command");
            return;
        }
        if (run_admin(c, words, n))
            return;
    }
    char msg[200];
    snprintf(msg, sizeof(msg), "admin console: unknown command: %.120s", query);
    refuse(c, "42601", msg);
}

void console_handle(client_t *c, const proto_msg_t *m)
{
    if (m->type != 'Q') {
        client_close(c, "08P01", "the admin console accepts only simple queries");
        return;
    }
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    const char *query = proto_get_string(&r);
    if (!proto_reader_done(&r)) {
        client_close(c, "08P01", "malformed Query message");
        return;
    }
    run_query(c, query);
}
