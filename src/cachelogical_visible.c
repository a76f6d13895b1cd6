/*
 * cachelogical_visible.c
 *    When the transactions the logical consumer reported become visible; see cachelogical.h.
 *
 * A commit that waits for a synchronous standby is written, confirmed by the standby, and only
 * then leaves PostgreSQL's list of running transactions, which is when new snapshots see it.
 * The consumer reports a transaction before it confirms it, so the cache stops answering from
 * what it knew, and it must also learn when the transaction is visible, so the cache may keep
 * answers again: until then a read can still miss the change. A transaction is visible once a
 * fresh snapshot (pg_current_snapshot() on an ordinary connection) does not list its xid as in
 * progress and its xmax is past it: it committed, so it is either running still or visible to
 * every new snapshot.
 *
 * The snapshot is read at most every CHECK_INTERVAL_MS while transactions wait, on a connection
 * opened at first need and kept. That connection sits idle between writes, so a server's
 * idle_session_timeout (or a network in between) may have ended it: a read that fails on it is
 * tried once more on a new one. Only when that fails too does the stream's session end: the
 * reconnect that follows reports every table changed and every waiting transaction visible
 * once the new slot exists, which is when no transaction that ran before can still be running.
 */
#include "cachelogical_link.h"

#include "loop.h"
#include "pqmsg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The least time between two reads of the snapshot. */
#define CHECK_INTERVAL_MS 1

/* How the snapshot connection shows in pg_stat_activity. */
#define SIDE_APPLICATION_NAME "pgturbo_cache_visibility"

/* A fresh snapshot's xmax and each of its running xids (NULL when none), in 32 bits as
 * test_decoding prints xids. */
#define RUNNING_SQL                                                                                \
    "SELECT pg_snapshot_xmax(s)::text::int8 & 4294967295, x::text::int8 & 4294967295 "           \
    "FROM pg_current_snapshot() AS s LEFT JOIN pg_snapshot_xip(s) AS x ON true"

/* Reports the waiting transaction at index i visible, and forgets it (the order of the others
 * does not matter). */
static void release(cachelogical_t *l, int i)
{
    void *token = l->invisible[i].token;
    l->invisible[i] = l->invisible[--l->n_invisible];
    l->cb.visible(l->cb.arg, token);
}

static void publish_count(cachelogical_t *l)
{
    pthread_mutex_lock(&l->lock);
    l->status.invisible = (uint32_t)l->n_invisible;
    pthread_mutex_unlock(&l->lock);
}

/* Whether the committed transaction xid is visible to the snapshot res describes. */
static bool visible_in(const PGresult *res, uint32_t xid)
{
    int rows = PQntuples(res);
    if (rows == 0)
        return false;
    uint32_t xmax = (uint32_t)strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    if (!cachelogical_xid_visible(xid, xmax, NULL, 0))
        return false;
    for (int i = 0; i < rows; i++) {
        uint32_t running = (uint32_t)strtoull(PQgetvalue(res, i, 1), NULL, 10);
        if (!PQgetisnull(res, i, 1) && !cachelogical_xid_visible(xid, xmax, &running, 1))
            return false;
    }
    return true;
}

/* Sends RUNNING_SQL on the snapshot connection, connecting it first when needed, and reads its
 * result into *res. Returns true, or false with the reason in err. */
static bool read_running(cachelogical_t *l, PGresult **res, char *err, size_t errlen)
{
    const char *what = "cannot read which transactions run";
    if (l->side == NULL &&
        !cachelogical_connect(l, &l->side, false, SIDE_APPLICATION_NAME, err, errlen))
        return false;
    if (!PQsendQuery(l->side, RUNNING_SQL)) {
        pqmsg_describe(err, errlen, what, l->side);
        return false;
    }
    if (!cachelogical_await(l, l->side, res, what, err, errlen))
        return false;
    bool ok = *res != NULL && PQresultStatus(*res) == PGRES_TUPLES_OK;
    if (!ok)
        cachelogical_describe_result(err, errlen, what, *res, l->side);
    /* The end of the results, which libpq needs before the next command. */
    while (ok) {
        PGresult *more = NULL;
        ok = cachelogical_await(l, l->side, &more, what, err, errlen);
        if (ok && more == NULL)
            break;
        PQclear(more);
    }
    if (!ok) {
        PQclear(*res);
        *res = NULL;
    }
    return ok;
}

/* Reads the snapshot now and reports every waiting transaction it does not list. */
static bool check_now(cachelogical_t *l, char *err, size_t errlen)
{
    PGresult *res;
    l->next_check = loop_clock_ms() + CHECK_INTERVAL_MS;
    bool kept = l->side != NULL;
    if (!read_running(l, &res, err, errlen)) {
        cachelogical_visible_close(l);
        if (!kept || !read_running(l, &res, err, errlen)) {
            cachelogical_visible_close(l);
            return false;
        }
    }
    for (int i = l->n_invisible - 1; i >= 0; i--)
        if (visible_in(res, l->invisible[i].xid))
            release(l, i);
    PQclear(res);
    publish_count(l);
    return true;
}

bool cachelogical_visible_check(cachelogical_t *l, char *err, size_t errlen)
{
    if (l->n_invisible == 0 || loop_clock_ms() < l->next_check)
        return true;
    return check_now(l, err, errlen);
}

bool cachelogical_visible_track(cachelogical_t *l, uint32_t xid, void *token, char *err,
                                size_t errlen)
{
    while (l->n_invisible == CACHELOGICAL_MAX_INVISIBLE) {
        cachelogical_wait_t w = cachelogical_wait(l, -1, 0, l->next_check);
        if (w == CACHELOGICAL_STOP || w == CACHELOGICAL_FAILED) {
            cachelogical_describe_wait(err, errlen, "cannot wait for a transaction's visibility",
                                       w);
            l->cb.visible(l->cb.arg, token);
            return false;
        }
        if (!check_now(l, err, errlen)) {
            l->cb.visible(l->cb.arg, token);
            return false;
        }
    }
    if (l->n_invisible == 0)
        l->next_check = loop_clock_ms() + CHECK_INTERVAL_MS;
    l->invisible[l->n_invisible++] = (cachelogical_invisible_t){.xid = xid, .token = token};
    publish_count(l);
    return true;
}

int64_t cachelogical_visible_due(const cachelogical_t *l)
{
    return l->n_invisible > 0 ? l->next_check : -1;
}

void cachelogical_visible_release_all(cachelogical_t *l)
{
    while (l->n_invisible > 0)
        release(l, l->n_invisible - 1);
    publish_count(l);
}

void cachelogical_visible_close(cachelogical_t *l)
{
    PQfinish(l->side);
    l->side = NULL;
}

bool cachelogical_xid_visible(uint32_t xid, uint32_t xmax, const uint32_t *running, int n)
{
    if ((int32_t)(xid - xmax) >= 0)
        return false;
    for (int i = 0; i < n; i++)
        if (running[i] == xid)
            return false;
    return true;
}
