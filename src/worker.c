/*
 * worker.c
 *    Worker threads: accept, mailbox, periodic checks, shutdown; see worker.h.
 */
#include "worker.h"

#include "authquery.h"
#include "buf.h"
#include "cancel.h"
#include "client.h"
#include "console.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "profile.h"
#include "server.h"
#include "sqlparse.h"
#include "stats.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define TICK_MS        200
#define SQL_CACHE_SIZE 10000 /* distinct query texts a worker remembers the parse of */

typedef enum mail_kind {
    MAIL_SERVER,   /* a server connection handed over by another worker */
    MAIL_REQUEST,  /* another worker wants an idle server of a pool */
    MAIL_CLOSE,    /* another worker wants an idle server of a pool closed */
    MAIL_CANCEL,   /* a cancel request for a client of this worker */
    MAIL_RELOAD,   /* a new config */
    MAIL_GATHER,   /* a console request wants this worker's part */
    MAIL_GATHERED, /* a console request of a client of this worker is complete */
    MAIL_KILL,     /* close every connection of a database */
    MAIL_AUTH,     /* an auth_query answer for a client of this worker */
    MAIL_CALL,     /* run a function in this worker's thread (worker_call_all) */
    MAIL_RUN,      /* run a function in this worker's thread, nobody waiting (worker_post_run) */
    MAIL_SHUTDOWN, /* stop accepting, finish, exit */
} mail_kind_t;

typedef struct mail {
    mail_kind_t kind;
    server_t *server;
    pool_t *pool;
    worker_t *from;
    const config_t *cfg;
    int32_t cancel_pid, cancel_key;
    struct console_request *request;
    struct authquery_request *auth;
    struct call *call;
    void (*run)(worker_t *w, void *arg);
    void *run_arg;
    char database[CONFIG_NAME_LEN];
    struct mail *next;
} mail_t;

/* A worker_call_all in progress: the caller waits until every worker has run fn. */
typedef struct call {
    void (*fn)(worker_t *w, void *arg);
    void *arg;
    pthread_mutex_t lock;
    pthread_cond_t done;
    int pending;
} call_t;

worker_t *workers;
int n_workers;
_Atomic int total_clients;
int64_t worker_started_at;

static void post(worker_t *w, mail_t *m)
{
    m->next = NULL;
    pthread_mutex_lock(&w->mail_lock);
    if (w->mail_tail != NULL)
        w->mail_tail->next = m;
    else
        w->mail_head = m;
    w->mail_tail = m;
    pthread_mutex_unlock(&w->mail_lock);
    uint64_t one = 1;
    ssize_t n = write(w->mail_fd, &one, sizeof(one));
    (void)n; /* an eventfd write only fails when the counter is already huge: still woken */
}

static mail_t *new_mail(mail_kind_t kind)
{
    mail_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        log_error("out of memory posting to a worker");
    else
        m->kind = kind;
    return m;
}

/* ---- lists ---- */

void worker_add_client(worker_t *w, client_t *c)
{
    c->prev = NULL;
    c->next = w->clients;
    if (w->clients != NULL)
        w->clients->prev = c;
    w->clients = c;
}

void worker_add_server(worker_t *w, server_t *s)
{
    s->prev = NULL;
    s->next = w->servers;
    if (w->servers != NULL)
        w->servers->prev = s;
    w->servers = s;
}

static void unlink_server(worker_t *w, server_t *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        w->servers = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

void worker_bury_client(worker_t *w, client_t *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = w->dead_clients;
    w->dead_clients = c;
}

void worker_bury_server(worker_t *w, server_t *s)
{
    unlink_server(w, s);
    s->next = w->dead_servers;
    w->dead_servers = s;
}

void worker_send_server(worker_t *self, server_t *s, worker_t *target)
{
    server_detach(s);
    unlink_server(self, s);
    s->worker = target; /* only a hint until the target attaches it */
    s->next = self->outgoing;
    self->outgoing = s;
}

void worker_request_server(worker_t *self, pool_t *pool, worker_t *target)
{
    mail_t *m = new_mail(MAIL_REQUEST);
    if (m == NULL)
        return;
    m->pool = pool;
    m->from = self;
    post(target, m);
}

void worker_request_close(worker_t *self, pool_t *pool, worker_t *target)
{
    mail_t *m = new_mail(MAIL_CLOSE);
    if (m == NULL)
        return;
    m->pool = pool;
    m->from = self;
    post(target, m);
}

void worker_post_cancel(worker_t *target, int32_t pid, int32_t key)
{
    mail_t *m = new_mail(MAIL_CANCEL);
    if (m == NULL)
        return;
    m->cancel_pid = pid;
    m->cancel_key = key;
    post(target, m);
}

void worker_post_gather(worker_t *target, struct console_request *req)
{
    mail_t *m = new_mail(MAIL_GATHER);
    if (m == NULL) {
        console_collect(NULL, req); /* counts as answered, with nothing added */
        return;
    }
    m->request = req;
    post(target, m);
}

void worker_post_gathered(worker_t *origin, struct console_request *req)
{
    mail_t *m = new_mail(MAIL_GATHERED);
    if (m == NULL)
        return; /* the console client waits until it times out or leaves */
    m->request = req;
    post(origin, m);
}

void worker_post_auth_answer(worker_t *target, struct authquery_request *req)
{
    mail_t *m = new_mail(MAIL_AUTH);
    if (m == NULL) {
        free(req); /* the client waits until client_login_timeout */
        return;
    }
    m->auth = req;
    post(target, m);
}

void worker_post_kill(worker_t *target, const char *database)
{
    mail_t *m = new_mail(MAIL_KILL);
    if (m == NULL)
        return;
    snprintf(m->database, sizeof(m->database), "%s", database);
    post(target, m);
}

static void call_finished(call_t *call)
{
    pthread_mutex_lock(&call->lock);
    if (--call->pending == 0)
        pthread_cond_signal(&call->done);
    pthread_mutex_unlock(&call->lock);
}

int worker_post_run(worker_t *target, void (*fn)(worker_t *w, void *arg), void *arg)
{
    mail_t *m = new_mail(MAIL_RUN);
    if (m == NULL)
        return -1;
    m->run = fn;
    m->run_arg = arg;
    post(target, m);
    return 0;
}

int worker_call_all(void (*fn)(worker_t *w, void *arg), void *arg)
{
    call_t call = {.fn = fn, .arg = arg, .pending = n_workers};
    mail_t **mails = calloc((size_t)n_workers, sizeof(*mails));
    int ready = 0;
    for (; mails != NULL && ready < n_workers; ready++)
        if ((mails[ready] = new_mail(MAIL_CALL)) == NULL)
            break;
    if (mails == NULL || ready < n_workers) {
        for (int i = 0; i < ready; i++)
            free(mails[i]);
        free(mails);
        return -1;
    }
    pthread_mutex_init(&call.lock, NULL);
    pthread_cond_init(&call.done, NULL);
    for (int i = 0; i < n_workers; i++) {
        mails[i]->call = &call;
        post(&workers[i], mails[i]);
    }
    free(mails);
    pthread_mutex_lock(&call.lock);
    while (call.pending > 0)
        pthread_cond_wait(&call.done, &call.lock);
    pthread_mutex_unlock(&call.lock);
    pthread_cond_destroy(&call.done);
    pthread_mutex_destroy(&call.lock);
    return 0;
}

/* KILL: closes every client and server of the database's pools in this worker. */
static void kill_database(worker_t *w, const char *database)
{
    client_t *c = w->clients;
    while (c != NULL) {
        client_t *next = c->next;
        if (c->pool != NULL && strcmp(c->pool->database, database) == 0)
            client_close(c, "57P01", "database killed from the admin console");
        c = next;
    }
    server_t *s = w->servers;
    while (s != NULL) {
        server_t *next = s->next;
        if (strcmp(s->pool->database, database) == 0)
            server_close(s, "database killed from the admin console");
        s = next;
    }
}

/* ---- after each batch: free the dead, send what moves ---- */

static void after_batch(void *arg)
{
    worker_t *w = arg;
    while (w->dead_clients != NULL) {
        client_t *c = w->dead_clients;
        w->dead_clients = c->next;
        buf_free(&c->in);
        buf_free(&c->out);
        prepared_map_free(c->stmts);
        free(c);
    }
    while (w->dead_servers != NULL) {
        server_t *s = w->dead_servers;
        w->dead_servers = s->next;
        server_free(s);
    }
    while (w->outgoing != NULL) {
        server_t *s = w->outgoing;
        w->outgoing = s->next;
        s->next = NULL;
        mail_t *m = new_mail(MAIL_SERVER);
        if (m == NULL) {
            s->worker = w;
            worker_add_server(w, s);
            server_close(s, "out of memory");
            continue;
        }
        m->server = s;
        post(s->worker, m);
    }
}

/* ---- mailbox ---- */

static void receive_server(worker_t *w, server_t *s)
{
    if (server_attach(s, w) < 0) {
        worker_add_server(w, s);
        s->pool->shards[w->id].n_servers++;
        server_close(s, "cannot watch a moved server");
        return;
    }
    s->state = SERVER_ACTIVE;
    pool_server_arrived(s);
}

static void send_idle_server(worker_t *w, pool_t *pool, worker_t *to)
{
    pool_shard_t *sh = &pool->shards[w->id];
    server_t *s = sh->idle;
    if (s == NULL || w->shutting_down || to->shutting_down)
        return;
    pool_remove_idle(s);
    sh->n_servers--;
    worker_send_server(w, s, to);
}

static void begin_shutdown(worker_t *w);

static void on_mail(void *arg, int events)
{
    worker_t *w = arg;
    uint64_t count;
    ssize_t n = read(w->mail_fd, &count, sizeof(count));
    (void)n; /* the counter is only a wake-up; the list says what came */
    pthread_mutex_lock(&w->mail_lock);
    mail_t *m = w->mail_head;
    w->mail_head = w->mail_tail = NULL;
    pthread_mutex_unlock(&w->mail_lock);
    while (m != NULL) {
        mail_t *next = m->next;
        switch (m->kind) {
        case MAIL_SERVER:
            receive_server(w, m->server);
            break;
        case MAIL_REQUEST:
            send_idle_server(w, m->pool, m->from);
            break;
        case MAIL_CLOSE:
            if (m->pool->shards[w->id].idle != NULL)
                server_close(m->pool->shards[w->id].idle,
                             "max_db_connections: room for another user's pool");
            break;
        case MAIL_CANCEL:
            cancel_deliver(w, m->cancel_pid, m->cancel_key);
            break;
        case MAIL_RELOAD:
            w->cfg = m->cfg;
            break;
        case MAIL_GATHER:
            console_collect(w, m->request);
            break;
        case MAIL_GATHERED:
            console_deliver(m->request);
            break;
        case MAIL_KILL:
            kill_database(w, m->database);
            break;
        case MAIL_AUTH:
            authquery_answered(m->auth);
            break;
        case MAIL_CALL:
            m->call->fn(w, m->call->arg);
            call_finished(m->call);
            break;
        case MAIL_RUN:
            m->run(w, m->run_arg);
            break;
        case MAIL_SHUTDOWN:
            begin_shutdown(w);
            break;
        }
        free(m);
        m = next;
    }
}

/* ---- accept ---- */

static void on_accept(void *arg, int events)
{
    worker_t *w = arg;
    for (int i = 0; i < 64; i++) {
        char peer[NET_ADDR_LEN];
        struct sockaddr_storage addr;
        int fd = net_accept(w->listen_fd, &addr, peer, sizeof(peer));
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                log_error("worker %d: cannot accept: %s", w->id, strerror(errno));
            return;
        }
        client_accept(w, fd, &addr, peer);
    }
}

/* ---- tick and shutdown ---- */

static void maintain_pool(pool_t *pool, void *arg)
{
    pool_maintain(pool, arg);
}

static void begin_shutdown(worker_t *w)
{
    if (w->shutting_down)
        return;
    w->shutting_down = true;
    w->shutdown_deadline = loop_now(w->loop) + w->cfg->shutdown_timeout;
    if (w->listen_fd >= 0) {
        loop_remove(w->loop, &w->listen_io);
        close(w->listen_fd);
        w->listen_fd = -1;
    }
}

/* During shutdown: close every client not inside a transaction; stop when none is left. */
static void shutdown_step(worker_t *w, int64_t now)
{
    bool force = now >= w->shutdown_deadline;
    client_t *c = w->clients;
    while (c != NULL) {
        client_t *next = c->next;
        if (force || c->state != CLIENT_ACTIVE)
            client_close(c, "57P01", "pgturbo is shutting down");
        c = next;
    }
    pool_foreach(maintain_pool, w);
    if (force)
        while (w->servers != NULL)
            server_close(w->servers, "shutting down");
    if (w->clients == NULL && w->servers == NULL)
        loop_stop(w->loop);
}

static void on_tick(void *arg)
{
    worker_t *w = arg;
    int64_t now = loop_now(w->loop);
    client_t *c = w->clients;
    while (c != NULL) {
        client_t *next = c->next;
        client_check_timeouts(c, now);
        if (c->state != CLIENT_CLOSED)
            profile_tick(c, now);
        c = next;
    }
    server_t *s = w->servers;
    while (s != NULL) {
        server_t *next = s->next;
        if ((s->state == SERVER_CONNECTING || s->state == SERVER_LOGIN) &&
            now - s->connected_at > w->cfg->server_connect_timeout)
            server_close(s, "server_connect_timeout");
        s = next;
    }
    cancel_expire(w, now);
    if (w->shutting_down)
        shutdown_step(w, now);
    else
        pool_foreach(maintain_pool, w);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    loop_run(w->loop);
    after_batch(w);
    buf_thread_cleanup();
    return NULL;
}

/* ---- life cycle ---- */

static int worker_init(worker_t *w, int id, const config_t *cfg, char *err, size_t errlen)
{
    w->id = id;
    w->cfg = cfg;
    w->listen_fd = w->mail_fd = -1;
    pthread_mutex_init(&w->mail_lock, NULL);
    w->loop = loop_create();
    if (w->loop == NULL) {
        snprintf(err, errlen, "cannot create an event loop: %s", strerror(errno));
        return -1;
    }
    w->listen_fd =
        net_listen(cfg->listen_addr, cfg->listen_port, cfg->tcp_defer_accept, err, errlen);
    w->defer_accept = cfg->tcp_defer_accept > 0;
    if (w->listen_fd < 0)
        return -1;
    w->mail_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->mail_fd < 0 ||
        loop_add(w->loop, &w->listen_io, w->listen_fd, LOOP_READ, on_accept, w) < 0 ||
        loop_add(w->loop, &w->mail_io, w->mail_fd, LOOP_READ, on_mail, w) < 0) {
        snprintf(err, errlen, "cannot set up worker %d: %s", id, strerror(errno));
        return -1;
    }
    w->stats = stats_create();
    w->sql = sqlparse_cache_create(SQL_CACHE_SIZE);
    if (w->stats == NULL || w->sql == NULL) {
        snprintf(err, errlen, "cannot set up worker %d: out of memory", id);
        return -1;
    }
    loop_set_tick(w->loop, TICK_MS, on_tick, w);
    loop_set_after(w->loop, after_batch, w);
    return 0;
}

static void worker_destroy(worker_t *w)
{
    if (w->loop != NULL)
        cancel_expire(w, INT64_MAX);
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    if (w->mail_fd >= 0)
        close(w->mail_fd);
    mail_t *m = w->mail_head;
    while (m != NULL) {
        mail_t *next = m->next;
        if (m->kind == MAIL_SERVER) {
            close(m->server->fd);
            server_free(m->server);
        } else if (m->kind == MAIL_AUTH) {
            free(m->auth);
        } else if (m->kind == MAIL_CALL) {
            call_finished(m->call); /* the worker is gone: nothing more to run there */
        } else if (m->kind == MAIL_RUN) {
            m->run(NULL, m->run_arg);
        } else if (m->kind == MAIL_GATHER || m->kind == MAIL_GATHERED) {
            console_abandon(m->request, m->kind == MAIL_GATHERED);
        }
        free(m);
        m = next;
    }
    loop_free(w->loop);
    stats_free(w->stats);
    sqlparse_cache_free(w->sql);
    pthread_mutex_destroy(&w->mail_lock);
}

int worker_start_all(const config_t *cfg, int n, char *err, size_t errlen)
{
    worker_started_at = loop_clock_ms();
    workers = calloc((size_t)n, sizeof(worker_t));
    if (workers == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    n_workers = n;
    int ready = 0;
    for (; ready < n; ready++)
        if (worker_init(&workers[ready], ready, cfg, err, errlen) < 0)
            goto fail;
    /* Signals go to the main thread only: workers block them all. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int started = 0;
    for (; started < n; started++)
        if (pthread_create(&workers[started].thread, NULL, worker_main, &workers[started]) != 0)
            break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started == n)
        return 0;
    snprintf(err, errlen, "cannot start worker threads");
    n_workers = started;
    worker_shutdown_all();
    n_workers = n;
    worker_free_all();
    return -1;
fail:
    /* Worker ready failed halfway: its fds are -1 or open, its loop NULL or made. */
    for (int i = 0; i <= ready; i++)
        worker_destroy(&workers[i]);
    free(workers);
    workers = NULL;
    n_workers = 0;
    return -1;
}

void worker_reload_all(const config_t *cfg)
{
    for (int i = 0; i < n_workers; i++) {
        mail_t *m = new_mail(MAIL_RELOAD);
        if (m == NULL)
            continue;
        m->cfg = cfg;
        post(&workers[i], m);
    }
}

void worker_shutdown_all(void)
{
    for (int i = 0; i < n_workers; i++) {
        mail_t *m = new_mail(MAIL_SHUTDOWN);
        if (m != NULL)
            post(&workers[i], m);
    }
    for (int i = 0; i < n_workers; i++)
        pthread_join(workers[i].thread, NULL);
}

void worker_free_all(void)
{
    for (int i = 0; i < n_workers; i++)
        worker_destroy(&workers[i]);
    free(workers);
    workers = NULL;
    n_workers = 0;
}
