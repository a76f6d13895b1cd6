/*
 * cancel.c
 *    The registry of client cancel keys and the forwarding of cancels; see cancel.h.
 *
 * The registry is one hash table under a mutex, touched at login, at logout and by cancel
 * requests, never on the per-message path. A client pointer found in it is used only on the
 * client's own worker, which alone frees clients and unregisters them first.
 */
#include "cancel.h"

#include "client.h"
#include "log.h"
#include "net.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "worker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CANCEL_CONN_TIMEOUT_MS 5000

typedef struct entry {
    int32_t pid; /* 0 = empty slot */
    int32_t key;
    int worker;
    client_t *client;
} entry_t;

/* A connection to PostgreSQL that carries one CancelRequest. */
typedef struct cancel_conn {
    loop_io_t io;
    int fd;
    worker_t *worker;
    int64_t started;
    uint8_t packet[16];
    struct cancel_conn *next, *prev;
} cancel_conn_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry_t *table;
static uint32_t mask; /* capacity - 1 */
static uint32_t count;

static uint32_t slot_of(int32_t pid)
{
    return ((uint32_t)pid * 2654435761u) & mask;
}

static uint32_t find(int32_t pid)
{
    uint32_t i = slot_of(pid);
    while (table[i].pid != 0 && table[i].pid != pid)
        i = (i + 1) & mask;
    return i;
}

static int grow(void)
{
    uint32_t old_cap = table ? mask + 1 : 0;
    uint32_t cap = old_cap ? old_cap * 2 : 1024;
    entry_t *old = table;
    table = calloc(cap, sizeof(entry_t));
    if (table == NULL) {
        table = old;
        return -1;
    }
    mask = cap - 1;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i].pid != 0)
            table[find(old[i].pid)] = old[i];
    free(old);
    return 0;
}

int cancel_register(client_t *c)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    if ((table == NULL || (count + 1) * 2 > mask + 1) && grow() < 0) {
        rc = -1;
    } else {
        entry_t *e = &table[find(c->id)];
        if (e->pid == 0)
            count++;
        *e = (entry_t){.pid = c->id, .key = c->cancel_key, .worker = c->worker->id, .client = c};
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void cancel_unregister(client_t *c)
{
    pthread_mutex_lock(&lock);
    uint32_t i = table ? find(c->id) : 0;
    if (table != NULL && table[i].pid != 0) {
        table[i].pid = 0;
        count--;
        /* Backward-shift the rest of the probe run into the hole. */
        for (uint32_t j = (i + 1) & mask; table[j].pid != 0; j = (j + 1) & mask) {
            uint32_t home = slot_of(table[j].pid);
            if (((j - home) & mask) >= ((j - i) & mask)) {
                table[i] = table[j];
                table[j].pid = 0;
                i = j;
            }
        }
    }
    pthread_mutex_unlock(&lock);
}

/* The registered entry for (pid, key), copied; false when there is none. */
static bool lookup(int32_t pid, int32_t key, entry_t *out)
{
    bool found = false;
    pthread_mutex_lock(&lock);
    if (table != NULL && pid != 0) {
        entry_t *e = &table[find(pid)];
        if (e->pid == pid && e->key == key) {
            *out = *e;
            found = true;
        }
    }
    pthread_mutex_unlock(&lock);
    return found;
}

void cancel_request(int32_t pid, int32_t key)
{
    entry_t e;
    if (lookup(pid, key, &e))
        worker_post_cancel(&workers[e.worker], pid, key);
}

static void conn_free(cancel_conn_t *cc)
{
    loop_forget(&cc->io);
    close(cc->fd);
    if (cc->prev != NULL)
        cc->prev->next = cc->next;
    else
        cc->worker->cancels = cc->next;
    if (cc->next != NULL)
        cc->next->prev = cc->prev;
    free(cc);
}

static void on_conn_io(void *arg, int events)
{
    cancel_conn_t *cc = arg;
    if (net_socket_error(cc->fd) == 0)
        (void)net_write(cc->fd, cc->packet, sizeof(cc->packet)); /* PostgreSQL answers nothing */
    conn_free(cc);
}

/* Opens a connection to s's PostgreSQL and sends it a CancelRequest for s's backend. */
static void send_cancel(worker_t *w, server_t *s)
{
    pool_target_t t;
    pthread_mutex_lock(&s->pool->lock);
    t = s->pool->target;
    pthread_mutex_unlock(&s->pool->lock);
    char err[256];
    cancel_conn_t *cc = calloc(1, sizeof(*cc));
    if (cc == NULL)
        return;
    cc->fd = net_connect(t.host, t.port, err, sizeof(err));
    if (cc->fd < 0) {
        server_log(LOG_WARNING, s, "cannot forward a cancel request: %s", err);
        free(cc);
        return;
    }
    buf_t b = {.data = cc->packet, .cap = sizeof(cc->packet)};
    if (proto_put_int32(&b, 16) < 0 || proto_put_int32(&b, PROTO_CANCEL_REQUEST) < 0 ||
        proto_put_int32(&b, s->backend_pid) < 0 || proto_put_int32(&b, s->backend_key) < 0 ||
        loop_add(w->loop, &cc->io, cc->fd, LOOP_WRITE, on_conn_io, cc) < 0) {
        close(cc->fd);
        free(cc);
        return;
    }
    cc->worker = w;
    cc->started = loop_now(w->loop);
    cc->next = w->cancels;
    if (w->cancels != NULL)
        w->cancels->prev = cc;
    w->cancels = cc;
    server_log(LOG_INFO, s, "forwarding a cancel request to backend %d", s->backend_pid);
}

void cancel_deliver(worker_t *w, int32_t pid, int32_t key)
{
    entry_t e;
    if (!lookup(pid, key, &e) || e.worker != w->id)
        return;
    client_t *c = e.client;
    server_t *s = c->server;
    if (c->state == CLIENT_ACTIVE && s != NULL && s->state == SERVER_ACTIVE && s->pend_count > 0)
        send_cancel(w, s);
}

void cancel_expire(worker_t *w, int64_t now)
{
    cancel_conn_t *cc = w->cancels;
    while (cc != NULL) {
        cancel_conn_t *next = cc->next;
        if (now - cc->started > CANCEL_CONN_TIMEOUT_MS || w->shutting_down)
            conn_free(cc);
        cc = next;
    }
}

void cancel_free_all(void)
{
    pthread_mutex_lock(&lock);
    free(table);
    table = NULL;
    mask = count = 0;
    pthread_mutex_unlock(&lock);
}
