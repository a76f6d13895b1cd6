/*
 * cacheredis_inv.c
 *    The invalidations of the result cache's link to Redis (cacheredis_link.h): publishes sent
 *    and the acknowledgements they wait for, the resets of what was written while Redis was
 *    unreachable, the messages received and acknowledged, and the other instances heard from.
 *
 * Messages ("inv", "all", "ping" on <prefix>:inv, acknowledgements on <prefix>:ack:<publisher>;
 * their formats are in cacheredis_wire.c). A message that starts like an invalidation but does
 * not parse is applied as "anything may have changed" and not acknowledged; other messages that
 * do not parse are ignored; either is logged once per session.
 *
 * Waits on the publishing side (wait_ms) are the lease plus 10 %, so that instances whose
 * clocks run at slightly different rates still agree that a lease is over. A publish completes
 * before its wait is over only when all of these hold: its own message came back (this instance
 * was among the subscribers the PUBLISH counted), as many other instances acknowledged as the
 * PUBLISH reached, every instance heard from within wait_ms acknowledged, and the peers were
 * listened to for all of the last wait_ms (the subscription is that old, and no peer was left
 * untracked for lack of room). An instance that stayed fresh without applying the invalidation
 * must have had a ping of its own come back within its lease, which this instance heard too.
 *
 * Resets. A remembered target gets HINCRBY "" 1 and an "inv" of "". Past MAX_REMEMBERED
 * targets, every generations hash in Redis (SCAN <prefix>:g:*) is deleted instead, which gives
 * each target a new epoch and so ends every L2 entry, and one "all" message follows: "every
 * target" is every target that has L2 entries, and every instance's memory. Both rely
 * on the caller listing "" among the relnames of every get (cache.c does, for its reads).
 *
 * A HINCRBY of a publish or a reset that fails (Redis out of memory under "noeviction", say)
 * leaves L2 entries current that are not. The generations hash is then deleted (DEL is allowed
 * where writes are refused) and the message published again with a new seq, whose
 * acknowledgements are the ones waited for: an instance that read the old entry between the
 * first message and the DEL applies the second one after it.
 */
#include "cacheredis_link.h"

#include "log.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys a SCAN of the generations hashes asks for at a time. */
#define SCAN_COUNT "100"

/* ---- peers ---- */

static void peer_heard(cacheredis_t *r, uint64_t id, int64_t now)
{
    peer_t *room = NULL;

    for (int i = 0; i < MAX_PEERS; i++) {
        peer_t *p = &r->peers[i];
        if (p->used && p->id == id) {
            p->heard_ms = now;
            return;
        }
        if (room == NULL && (!p->used || now - p->heard_ms >= r->wait_ms))
            room = p;
    }
    if (room != NULL) {
        *room = (peer_t){.used = true, .id = id, .heard_ms = now};
        return;
    }
    /* Untracked, it might be fresh without having acknowledged: no publish completes early
     * for a while. */
    r->peers_overflow_at = now;
    if (!r->warned_peers)
        log_warning("cache redis: %s: more than %d other instances: publishes wait out their "
                    "lease",
                    r->where, MAX_PEERS);
    r->warned_peers = true;
}

/* The other instances heard from within the lease, into the status when it changed. */
void inv_report_peers(cacheredis_t *r, int64_t now)
{
    int live = 0;

    for (int i = 0; i < MAX_PEERS; i++)
        if (r->peers[i].used && now - r->peers[i].heard_ms < r->cfg.lease_ms)
            live++;
    if (live == r->reported_peers)
        return;
    r->reported_peers = live;
    pthread_mutex_lock(&r->lock);
    r->status.peers = live;
    pthread_mutex_unlock(&r->lock);
}

/* ---- publishes ---- */

static bool has_acked(const request_t *req, uint64_t id)
{
    for (int i = 0; i < req->n_acked; i++)
        if (req->acked[i] == id)
            return true;
    return false;
}

static request_t *find_publish(cacheredis_t *r, uint64_t seq)
{
    for (request_t *req = r->publishing.head; req != NULL; req = req->next)
        if (req->seq == seq)
            return req;
    return NULL;
}

/* Whether every acknowledgement that lets req complete before its wait is in (see above). */
static bool publish_acked(const cacheredis_t *r, const request_t *req, int64_t now)
{
    if (!req->echoed || req->n_acked < req->reached - 1)
        return false;
    if (now < r->subscribed_at + r->wait_ms || now < r->peers_overflow_at + r->wait_ms)
        return false;
    for (int i = 0; i < MAX_PEERS; i++) {
        const peer_t *p = &r->peers[i];
        if (p->used && now - p->heard_ms < r->wait_ms && !has_acked(req, p->id))
            return false;
    }
    return true;
}

/* When publish_acked may turn true by time alone, or req's wait ends, if sooner than *next. */
void inv_next_check(const cacheredis_t *r, const request_t *req, int64_t now, int64_t *next)
{
    link_soonest(next, req->deadline, now);
    link_soonest(next, r->subscribed_at + r->wait_ms, now);
    link_soonest(next, r->peers_overflow_at + r->wait_ms, now);
    for (int i = 0; i < MAX_PEERS; i++) {
        const peer_t *p = &r->peers[i];
        if (p->used && !has_acked(req, p->id))
            link_soonest(next, p->heard_ms + r->wait_ms, now);
    }
}

void inv_finish_publish(request_t *req)
{
    req->done(req->arg);
    free(req);
}

/* Sends req's message again, under a new seq: what it waits for starts over. */
static bool send_publish_message(cacheredis_t *r, request_t *req)
{
    char msg[MESSAGE_LEN];
    uint64_t seq = ++r->seq;

    wire_format_inv(msg, r->name, seq, req->target, &req->deps);
    if (!link_ring_reserve(r, 1) ||
        !link_append(r, r->cmd, 3, (const char *[]){"PUBLISH", r->inv_channel, msg}, NULL))
        return false;
    link_ring_push(r, (expect_t){.kind = REPLY_PUBLISH, .req = req, .seq = seq});
    req->seq = seq;
    req->reached = -1;
    req->echoed = false;
    req->n_acked = 0;
    return true;
}

/* Sends the HINCRBYs and the message of req, which joins the publishes sent; on a failure it
 * goes back to waiting. */
bool inv_send_publish(cacheredis_t *r, request_t *req)
{
    char key[KEY_LEN];
    int n = req->deps.n;

    wire_gens_key(r->cfg.prefix, req->target, key);
    req->reissued = false;
    req->reached = -1;
    bool ok = link_ring_reserve(r, (size_t)n);
    for (int i = 0; ok && i < n; i++)
        ok = link_append(
            r, r->cmd, 4,
            (const char *[]){"HINCRBY", key, wire_field_name(req->deps.relnames[i]), "1"}, NULL);
    if (!ok) {
        link_list_push(&r->waiting, req);
        return false;
    }
    for (int i = 0; i < n; i++)
        link_ring_push(r, (expect_t){.kind = REPLY_BUMP, .req = req, .target = req->target});
    /* A failure from here on still leaves it waiting: the ring only names it. */
    link_list_push(&r->publishing, req);
    return send_publish_message(r, req);
}

/* The PUBLISH of req's message seq was answered. */
bool inv_publish_reply(cacheredis_t *r, request_t *req, uint64_t seq, const redisReply *reply,
                       int64_t now)
{
    if (reply->type != REDIS_REPLY_INTEGER)
        return link_fail(r, "PUBLISH: %s", wire_reply_text(reply));
    if (seq != req->seq)
        return true; /* a message sent again since */
    req->reached = reply->integer;
    req->deadline = now + r->wait_ms;
    link_count(r, &r->status.published);
    return true;
}

/* ---- resets ---- */

/* Remembers target for a reset at the next connect: in the set, or past its bound as "every
 * target". */
static void remember(cacheredis_t *r, const char *target)
{
    for (int i = 0; i < r->n_remembered; i++)
        if (strcmp(r->remembered[i], target) == 0)
            return;
    if (r->n_remembered < MAX_REMEMBERED) {
        snprintf(r->remembered[r->n_remembered++], CACHEREDIS_TARGET_LEN, "%s", target);
        return;
    }
    if (!r->remember_all)
        log_warning("cache redis: %s: more than %d targets written while Redis was unreachable: "
                    "every target is reset at the next connect",
                    r->where, MAX_REMEMBERED);
    r->remember_all = true;
}

/* The message that ends a reset of target ("inv" of "") or of every target ("all"). */
static bool send_reset_message(cacheredis_t *r, const char *target)
{
    char msg[MESSAGE_LEN];
    uint64_t seq = ++r->seq;

    if (target != NULL)
        wire_format_inv(msg, r->name, seq, target, NULL);
    else
        wire_format_all(msg, r->name, seq);
    return link_send_publish_text(r, REPLY_RESET, r->inv_channel, msg);
}

static bool send_scan(cacheredis_t *r, const char *cursor)
{
    char pattern[KEY_LEN];

    snprintf(pattern, sizeof(pattern), "%s:g:*", r->cfg.prefix);
    return link_send_one(r, REPLY_SCAN, 6,
                         (const char *[]){"SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT});
}

/* Sends the resets of what was remembered; resets_pending counts what they wait for. Past the
 * bound, the SCAN's DELs and the "all" message cover the remembered targets too. */
bool inv_send_resets(cacheredis_t *r)
{
    char key[KEY_LEN];

    if (r->remember_all) {
        r->resets_pending++;
        return send_scan(r, "0");
    }
    for (int i = 0; i < r->n_remembered; i++) {
        const char *target = r->remembered[i];
        wire_gens_key(r->cfg.prefix, target, key);
        if (!link_ring_reserve(r, 1) ||
            !link_append(r, r->cmd, 4, (const char *[]){"HINCRBY", key, "", "1"}, NULL))
            return false;
        link_ring_push(r, (expect_t){.kind = REPLY_BUMP, .target = target});
        r->resets_pending++;
        if (!send_reset_message(r, target))
            return false;
    }
    return true;
}

/* One reset message was answered; the last one forgets what was remembered. */
bool inv_reset_reply(cacheredis_t *r, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_INTEGER)
        return link_fail(r, "PUBLISH of a reset: %s", wire_reply_text(reply));
    if (--r->resets_pending > 0)
        return true;
    log_info("cache redis: %s: reset %d target(s)%s written while Redis was unreachable", r->where,
             r->n_remembered, r->remember_all ? " and every other one" : "");
    r->n_remembered = 0;
    r->remember_all = false;
    return true;
}

/* A page of the SCAN of every target's generations hash: each is deleted, then the next page
 * is asked for or, after the last, the "all" message is sent. */
bool inv_scan_reply(cacheredis_t *r, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY)
        return link_fail(r, "SCAN: %s", wire_reply_text(reply));
    const redisReply *keys = reply->element[1];
    for (size_t i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING)
            return link_fail(r, "SCAN: a key that is not a string");
        if (!link_send_one(r, REPLY_IGNORE, 2, (const char *[]){"DEL", keys->element[i]->str}))
            return false;
    }
    if (strcmp(reply->element[0]->str, "0") != 0)
        return send_scan(r, reply->element[0]->str);
    return send_reset_message(r, NULL);
}

/* A HINCRBY of e's target failed: its L2 entries may be current that are not. The hash goes,
 * and the message goes out again, after the DEL (see above). */
bool inv_bump_failed(cacheredis_t *r, const expect_t *e, const redisReply *reply)
{
    char key[KEY_LEN];

    link_note_error(r, "HINCRBY of %s: %s; deleting the hash", e->target, wire_reply_text(reply));
    wire_gens_key(r->cfg.prefix, e->target, key);
    if (!link_send_one(r, REPLY_IGNORE, 2, (const char *[]){"DEL", key}))
        return false;
    if (e->req == NULL) {
        r->resets_pending++;
        return send_reset_message(r, e->target);
    }
    if (e->req->reissued)
        return true;
    e->req->reissued = true;
    return send_publish_message(r, e->req);
}

/* Completes the publishes that were waited for long enough: those waiting for a session when
 * their wait since the loss is over (unsent), those sent when every acknowledgement is in or
 * their wait is over. */
void inv_complete_publishes(cacheredis_t *r, int64_t now)
{
    list_t keep = {0};

    for (request_t *req; (req = link_list_pop(&r->waiting)) != NULL;) {
        if (now < req->deadline) {
            link_list_push(&keep, req);
            continue;
        }
        remember(r, req->target);
        link_count(r, &r->status.publish_unsent);
        inv_finish_publish(req);
    }
    r->waiting = keep;

    keep = (list_t){0};
    for (request_t *req; (req = link_list_pop(&r->publishing)) != NULL;) {
        if (req->reached < 0 || (now < req->deadline && !publish_acked(r, req, now))) {
            link_list_push(&keep, req);
            continue;
        }
        if (!publish_acked(r, req, now))
            link_count(r, &r->status.publish_timeouts);
        inv_finish_publish(req);
    }
    r->publishing = keep;
}

/* ---- messages ---- */

static void warn_malformed(cacheredis_t *r, const char *what, const char *p, size_t len)
{
    char head[121];

    if (r->warned_malformed)
        return;
    r->warned_malformed = true;
    snprintf(head, sizeof(head), "%.*s", (int)(len < sizeof(head) - 1 ? len : sizeof(head) - 1), p);
    log_one_line(head);
    log_warning("cache redis: %s: a message that does not parse, %s: \"%s\"", r->where, what, head);
}

static bool send_ack(cacheredis_t *r, uint64_t origin, uint64_t seq)
{
    char channel[KEY_LEN], text[SHORT_MESSAGE_LEN];

    snprintf(channel, sizeof(channel), "%s:ack:%016" PRIx64, r->cfg.prefix, origin);
    wire_format_ack(text, seq, r->name);
    return link_send_publish_text(r, REPLY_IGNORE, channel, text);
}

/* Another instance's invalidation is applied, then acknowledged; this instance's own marks
 * its publish as heard. */
static bool handle_inv(cacheredis_t *r, const char *p, size_t len, int64_t now)
{
    wire_inv_t m;
    const char *names[CACHEREDIS_MAX_DEPS];

    if (!wire_parse_inv(p, len, &m)) {
        warn_malformed(r, "taken as a change of anything", p, len);
        r->fn(r->arg, NULL, NULL, 0);
        return true;
    }
    if (m.origin == r->instance) {
        request_t *req = find_publish(r, m.seq);
        if (req != NULL)
            req->echoed = true;
        return true;
    }
    peer_heard(r, m.origin, now);
    for (int i = 0; i < m.n; i++)
        names[i] = m.relnames[i];
    r->fn(r->arg, m.target, names, m.n);
    link_count(r, &r->status.received);
    return send_ack(r, m.origin, m.seq);
}

/* "all": anything of any target may have changed. */
static bool handle_all(cacheredis_t *r, const char *p, size_t len, int64_t now)
{
    uint64_t origin, seq;

    if (!wire_parse_all(p, len, &origin, &seq)) {
        warn_malformed(r, "taken as a change of anything", p, len);
        r->fn(r->arg, NULL, NULL, 0);
        return true;
    }
    if (origin == r->instance)
        return true;
    peer_heard(r, origin, now);
    r->fn(r->arg, NULL, NULL, 0);
    link_count(r, &r->status.received);
    return send_ack(r, origin, seq);
}

/* A ping of this instance makes it fresh; another's is a sign of life. */
static void handle_ping(cacheredis_t *r, const char *p, size_t len, int64_t now)
{
    uint64_t id, sent;

    if (!wire_parse_ping(p, len, &id, &sent)) {
        warn_malformed(r, "ignored", p, len);
        return;
    }
    if (id != r->instance) {
        peer_heard(r, id, now);
        return;
    }
    if (r->state != LINK_UP)
        return;
    r->last_alive = now;
    int64_t until = (int64_t)sent + r->cfg.lease_ms;
    if (until > atomic_load_explicit(&r->fresh_until, memory_order_relaxed))
        atomic_store_explicit(&r->fresh_until, until, memory_order_release);
}

/* "<seq> <instance>" on this instance's ack channel. */
static void handle_ack(cacheredis_t *r, const char *p, size_t len, int64_t now)
{
    uint64_t seq, id;

    if (!wire_parse_ack(p, len, &seq, &id)) {
        warn_malformed(r, "ignored", p, len);
        return;
    }
    if (id == r->instance)
        return;
    peer_heard(r, id, now);
    request_t *req = find_publish(r, seq);
    if (req != NULL && !has_acked(req, id) && req->n_acked < MAX_PEERS)
        req->acked[req->n_acked++] = id;
}

bool inv_handle_message(cacheredis_t *r, const redisReply *channel, const redisReply *payload,
                        int64_t now)
{
    if (channel->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING)
        return link_fail(r, "a message that is not a string");
    const char *p = payload->str;
    size_t len = payload->len;
    if (strcmp(channel->str, r->ack_channel) == 0) {
        handle_ack(r, p, len, now);
        return true;
    }
    if (strcmp(channel->str, r->inv_channel) != 0)
        return true;
    if (len >= 4 && memcmp(p, "inv ", 4) == 0)
        return handle_inv(r, p, len, now);
    if (len >= 4 && memcmp(p, "all ", 4) == 0)
        return handle_all(r, p, len, now);
    if (len >= 5 && memcmp(p, "ping ", 5) == 0)
        handle_ping(r, p, len, now);
    else
        warn_malformed(r, "ignored", p, len);
    return true;
}
