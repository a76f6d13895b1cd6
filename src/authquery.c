/*
 * authquery.c
 *    The auth_query lookup thread; see authquery.h.
 */
#include "authquery.h"

#include "auth.h"
#include "client.h"
#include "log.h"
#include "worker.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Connections the thread keeps, one per (host, port, dbname, auth_user). */
typedef struct lookup_conn {
    char key[CONFIG_HOST_LEN + 3 * CONFIG_NAME_LEN + 16];
    PGconn *conn;
    struct lookup_conn *next;
} lookup_conn_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static authquery_request_t *queue_head, *queue_tail;
static bool stopping, running;
static pthread_t thread;
static lookup_conn_t *conns; /* the thread's own */

static void request_key(const authquery_request_t *req, char *out, size_t len)
{
    snprintf(out, len, "%s|%d|%s|%s", req->host, req->port, req->dbname, req->auth_user);
}

/* An open connection for the request's target, made or reused; NULL with req->error set. */
static PGconn *connection_for(authquery_request_t *req)
{
    char key[sizeof(conns->key)];
    request_key(req, key, sizeof(key));
    for (lookup_conn_t *lc = conns; lc != NULL; lc = lc->next)
        if (strcmp(lc->key, key) == 0) {
            if (PQstatus(lc->conn) == CONNECTION_OK)
                return lc->conn;
            PQreset(lc->conn);
            if (PQstatus(lc->conn) == CONNECTION_OK)
                return lc->conn;
            snprintf(req->error, sizeof(req->error), "%s", PQerrorMessage(lc->conn));
            return NULL;
        }
    char port[16];
    snprintf(port, sizeof(port), "%d", req->port);
    const char *keys[] = {"host",
                          "port",
                          "dbname",
                          "user",
                          "password",
                          "sslmode",
                          "sslrootcert",
                          "connect_timeout",
                          "application_name",
                          NULL};
    const char *values[] = {req->host,
                            port,
                            req->dbname,
                            req->auth_user,
                            req->password,
                            req->sslmode,
                            req->sslrootcert[0] != '\0' ? req->sslrootcert : NULL,
                            "10",
                            "pgturbo auth_query",
                            NULL};
    lookup_conn_t *lc = calloc(1, sizeof(*lc));
    if (lc == NULL) {
        snprintf(req->error, sizeof(req->error), "out of memory");
        return NULL;
    }
    snprintf(lc->key, sizeof(lc->key), "%s", key);
    lc->conn = PQconnectdbParams(keys, values, 0);
    lc->next = conns;
    conns = lc;
    if (PQstatus(lc->conn) != CONNECTION_OK) {
        snprintf(req->error, sizeof(req->error), "%s", PQerrorMessage(lc->conn));
        return NULL;
    }
    return lc->conn;
}

/* Runs the query for req->user: the second column of its first row is the secret. */
static void run_lookup(authquery_request_t *req)
{
    PGconn *conn = connection_for(req);
    if (conn == NULL)
        return;
    const char *params[] = {req->user};
    PGresult *res = PQexecParams(conn, req->query, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(req->error, sizeof(req->error), "%s", PQresultErrorMessage(res));
    } else if (PQnfields(res) < 2) {
        snprintf(req->error, sizeof(req->error), "auth_query returns fewer than two columns");
    } else if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 1) &&
               strlen(PQgetvalue(res, 0, 1)) < sizeof(req->secret)) {
        snprintf(req->secret, sizeof(req->secret), "%s", PQgetvalue(res, 0, 1));
        req->found = true;
    }
    PQclear(res);
}

static void *lookup_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (queue_head == NULL && !stopping)
            pthread_cond_wait(&wake, &lock);
        authquery_request_t *req = queue_head;
        if (req == NULL)
            break;
        queue_head = req->next;
        if (queue_head == NULL)
            queue_tail = NULL;
        bool stop = stopping;
        pthread_mutex_unlock(&lock);
        if (stop)
            snprintf(req->error, sizeof(req->error), "pgturbo is shutting down");
        else
            run_lookup(req);
        if (req->error[0] != '\0')
            log_warning("auth_query for user %s failed: %s", req->user, req->error);
        worker_post_auth_answer(req->worker, req);
        pthread_mutex_lock(&lock);
    }
    pthread_mutex_unlock(&lock);
    while (conns != NULL) {
        lookup_conn_t *next = conns->next;
        PQfinish(conns->conn);
        free(conns);
        conns = next;
    }
    return NULL;
}

int authquery_start(void)
{
    stopping = false;
    if (pthread_create(&thread, NULL, lookup_main, NULL) != 0)
        return -1;
    running = true;
    return 0;
}

void authquery_stop(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
    running = false;
}

void authquery_submit(authquery_request_t *req)
{
    req->next = NULL;
    pthread_mutex_lock(&lock);
    if (queue_tail != NULL)
        queue_tail->next = req;
    else
        queue_head = req;
    queue_tail = req;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
}

void authquery_answered(authquery_request_t *req)
{
    if (req->client != NULL)
        auth_lookup_done(req->client, req);
    free(req);
}
