/*
 * cacheredis_wire.c
 *    The formats of the result cache's link to Redis (cacheredis_wire.h): keys, L2 entries,
 *    channel messages and readings of replies, as pure functions over bytes.
 *
 * Messages, on <prefix>:inv unless said:
 *   "inv <instance> <seq> <target>\n<relname>..."  relnames of target changed
 *   "all <instance> <seq>"                          anything of any target may have changed
 *   "ping <instance> <sent_ms>"
 *   "<seq> <instance>"                              on <prefix>:ack:<publisher>
 * A relname that cannot be a hash field or a line ("!epoch", or one holding a newline) is
 * bumped, read and published as "", every table of the target: more is invalidated, never less.
 * A parser reads the whole message or fails; what a failure means is cacheredis_inv.c's call.
 *
 * L2 entries, version 1, integers big-endian:
 *   u8 1 | u32 keylen | key | u64 epoch | u8 n | n x (u8 len | relname | i64 generation) | value
 * A get is a hit only when the entry's key, epoch, relnames and generations are exactly those
 * just read, so an entry is never parsed, only compared.
 */
#include "cacheredis_wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_VERSION 1

/* ---- keys ---- */

const char *wire_field_name(const char *relname)
{
    if (strcmp(relname, EPOCH_FIELD) == 0 || strchr(relname, '\n') != NULL)
        return "";
    return relname;
}

void wire_gens_key(const char *prefix, const char *target, char key[KEY_LEN])
{
    snprintf(key, KEY_LEN, "%s:g:%s", prefix, target);
}

void wire_entry_key(const char *prefix, uint64_t hash, char key[KEY_LEN])
{
    snprintf(key, KEY_LEN, "%s:e:%016" PRIx64, prefix, hash);
}

/* ---- replies ---- */

const char *wire_reply_text(const redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR || reply->type == REDIS_REPLY_STATUS)
        return reply->str;
    return "an unexpected reply";
}

/* A reply that is a decimal string or an integer, as a signed 64-bit number. */
static bool reply_i64(const redisReply *reply, int64_t *out)
{
    char *end;

    if (reply->type == REDIS_REPLY_INTEGER) {
        *out = reply->integer;
        return true;
    }
    if (reply->type != REDIS_REPLY_STRING || reply->len == 0 || reply->len > 20)
        return false;
    errno = 0;
    *out = strtoll(reply->str, &end, 10);
    return errno == 0 && end == reply->str + reply->len;
}

/* A reply that is a decimal string of digits only, as an unsigned 64-bit number. */
static bool reply_u64(const redisReply *reply, uint64_t *out)
{
    char *end;

    if (reply->type != REDIS_REPLY_STRING || reply->len == 0 || reply->len > 20 ||
        strspn(reply->str, "0123456789") != reply->len)
        return false;
    errno = 0;
    *out = strtoull(reply->str, &end, 10);
    return errno == 0 && end == reply->str + reply->len;
}

/* ---- L2 entries ---- */

static uint8_t *put_u8(uint8_t *p, uint8_t v)
{
    *p = v;
    return p + 1;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)(v & 0xff);
    return p + 4;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)(v & 0xff);
    return p + 8;
}

static uint8_t *put_bytes(uint8_t *p, const void *s, size_t n)
{
    if (n > 0)
        memcpy(p, s, n);
    return p + n;
}

size_t wire_entry_head_size(size_t keylen, const cacheredis_gens_t *gens)
{
    size_t n = 1 + 4 + keylen + 8 + 1;

    for (int i = 0; i < gens->n; i++)
        n += 1 + strlen(gens->relnames[i]) + 8;
    return n;
}

void wire_entry_write(uint8_t *p, const void *key, size_t keylen, const cacheredis_gens_t *gens,
                      const void *value, size_t value_len)
{
    p = put_u8(p, ENTRY_VERSION);
    p = put_u32(p, (uint32_t)keylen);
    p = put_bytes(p, key, keylen);
    p = put_u64(p, gens->epoch);
    p = put_u8(p, (uint8_t)gens->n);
    for (int i = 0; i < gens->n; i++) {
        size_t len = strlen(gens->relnames[i]);
        p = put_u8(p, (uint8_t)len);
        p = put_bytes(p, gens->relnames[i], len);
        p = put_u64(p, (uint64_t)gens->values[i]);
    }
    put_bytes(p, value, value_len);
}

/* The bytes of an entry not yet compared. */
typedef struct bytes {
    const uint8_t *p;
    const uint8_t *end;
} bytes_t;

/* Whether the bytes go on with expected (n bytes); skips them if so. */
static bool same(bytes_t *b, const void *expected, size_t n)
{
    if ((size_t)(b->end - b->p) < n || (n > 0 && memcmp(b->p, expected, n) != 0))
        return false;
    b->p += n;
    return true;
}

static bool same_u64(bytes_t *b, uint64_t v)
{
    uint8_t buf[8];

    put_u64(buf, v);
    return same(b, buf, sizeof(buf));
}

/* Whether the entry in b is of key with exactly gens; b is left at its value if so. */
static bool entry_matches(bytes_t *b, const void *key, size_t keylen, const cacheredis_gens_t *gens)
{
    uint8_t head[5], n = (uint8_t)gens->n;

    put_u32(put_u8(head, ENTRY_VERSION), (uint32_t)keylen);
    if (!same(b, head, sizeof(head)) || !same(b, key, keylen) || !same_u64(b, gens->epoch) ||
        !same(b, &n, 1))
        return false;
    for (int i = 0; i < gens->n; i++) {
        uint8_t len = (uint8_t)strlen(gens->relnames[i]);
        if (!same(b, &len, 1) || !same(b, gens->relnames[i], len) ||
            !same_u64(b, (uint64_t)gens->values[i]))
            return false;
    }
    return true;
}

cacheredis_result_t wire_read_gens(cacheredis_gens_t *gens, const redisReply *reply, bool *no_epoch)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != (size_t)gens->n + 1)
        return CACHEREDIS_DOWN;
    if (reply->element[0]->type == REDIS_REPLY_NIL) {
        *no_epoch = true;
        return CACHEREDIS_DOWN;
    }
    if (!reply_u64(reply->element[0], &gens->epoch))
        return CACHEREDIS_DOWN;
    for (int i = 0; i < gens->n; i++) {
        const redisReply *value = reply->element[1 + i];
        gens->values[i] = 0;
        if (value->type != REDIS_REPLY_NIL && !reply_i64(value, &gens->values[i]))
            return CACHEREDIS_DOWN;
    }
    return CACHEREDIS_MISS;
}

cacheredis_result_t wire_read_entry(const redisReply *e, const void *key, size_t keylen,
                                    const cacheredis_gens_t *gens, const uint8_t **value,
                                    size_t *len)
{
    if (e == NULL || (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_NIL))
        return CACHEREDIS_DOWN;
    if (e->type == REDIS_REPLY_NIL)
        return CACHEREDIS_MISS;
    bytes_t b = {(const uint8_t *)e->str, (const uint8_t *)e->str + e->len};
    if (!entry_matches(&b, key, keylen, gens))
        return CACHEREDIS_MISS;
    *value = b.p;
    *len = (size_t)(b.end - b.p);
    return CACHEREDIS_HIT;
}

/* ---- messages ---- */

void wire_format_inv(char out[MESSAGE_LEN], const char *instance, uint64_t seq, const char *target,
                     const cacheredis_gens_t *deps)
{
    size_t used =
        (size_t)snprintf(out, MESSAGE_LEN, "inv %s %" PRIu64 " %s", instance, seq, target);

    if (deps == NULL) {
        snprintf(out + used, MESSAGE_LEN - used, "\n");
        return;
    }
    for (int i = 0; i < deps->n; i++)
        used += (size_t)snprintf(out + used, MESSAGE_LEN - used, "\n%s",
                                 wire_field_name(deps->relnames[i]));
}

void wire_format_all(char out[SHORT_MESSAGE_LEN], const char *instance, uint64_t seq)
{
    snprintf(out, SHORT_MESSAGE_LEN, "all %s %" PRIu64, instance, seq);
}

void wire_format_ping(char out[SHORT_MESSAGE_LEN], const char *instance, int64_t sent_ms)
{
    snprintf(out, SHORT_MESSAGE_LEN, "ping %s %" PRId64, instance, sent_ms);
}

void wire_format_ack(char out[SHORT_MESSAGE_LEN], uint64_t seq, const char *instance)
{
    snprintf(out, SHORT_MESSAGE_LEN, "%" PRIu64 " %s", seq, instance);
}

/* The bytes of a message not yet read. */
typedef struct cursor {
    const char *p;
    const char *end;
} cursor_t;

static bool take(cursor_t *c, const char *s)
{
    size_t n = strlen(s);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return false;
    c->p += n;
    return true;
}

/* An instance's name: 16 lowercase hexadecimal digits. */
static bool take_instance(cursor_t *c, uint64_t *id)
{
    *id = 0;
    for (int i = 0; i < INSTANCE_HEX; i++, c->p++) {
        if (c->p == c->end)
            return false;
        char ch = *c->p;
        int digit = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (digit < 0)
            return false;
        *id = *id << 4 | (uint64_t)digit;
    }
    return true;
}

/* A decimal number without sign, at most INT64_MAX. */
static bool take_number(cursor_t *c, uint64_t *v)
{
    const char *start = c->p;

    *v = 0;
    for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++) {
        if (*v > (uint64_t)(INT64_MAX - 9) / 10)
            return false;
        *v = *v * 10 + (uint64_t)(*c->p - '0');
    }
    return c->p > start;
}

/* The rest of the line (up to a newline or the end) into out, which must hold it and a NUL. */
static bool take_line(cursor_t *c, char *out, size_t cap)
{
    const char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
    size_t n = (size_t)((nl != NULL ? nl : c->end) - c->p);

    if (n >= cap || memchr(c->p, '\0', n) != NULL)
        return false;
    memcpy(out, c->p, n);
    out[n] = '\0';
    c->p += n;
    return true;
}

bool wire_parse_inv(const char *p, size_t len, wire_inv_t *m)
{
    cursor_t c = {p, p + len};

    if (!take(&c, "inv ") || !take_instance(&c, &m->origin) || !take(&c, " ") ||
        !take_number(&c, &m->seq) || !take(&c, " ") ||
        !take_line(&c, m->target, sizeof(m->target)) || m->target[0] == '\0')
        return false;
    for (m->n = 0; take(&c, "\n"); m->n++)
        if (m->n == CACHEREDIS_MAX_DEPS ||
            !take_line(&c, m->relnames[m->n], sizeof(m->relnames[m->n])))
            return false;
    return m->n > 0;
}

/* "<head> <instance> <number>", all of it. */
static bool parse_pair(const char *p, size_t len, const char *head, uint64_t *id, uint64_t *v)
{
    cursor_t c = {p, p + len};

    return take(&c, head) && take_instance(&c, id) && take(&c, " ") && take_number(&c, v) &&
           c.p == c.end;
}

bool wire_parse_all(const char *p, size_t len, uint64_t *origin, uint64_t *seq)
{
    return parse_pair(p, len, "all ", origin, seq);
}

bool wire_parse_ping(const char *p, size_t len, uint64_t *origin, uint64_t *sent_ms)
{
    return parse_pair(p, len, "ping ", origin, sent_ms);
}

bool wire_parse_ack(const char *p, size_t len, uint64_t *seq, uint64_t *origin)
{
    cursor_t c = {p, p + len};

    return take_number(&c, seq) && take(&c, " ") && take_instance(&c, origin) && c.p == c.end;
}
