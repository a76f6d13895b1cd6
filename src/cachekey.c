/*
 * cachekey.c
 *    The result cache's keys, written from a request and read back into one; see cachekey.h
 *    for the layout.
 *
 * The decoder checks a unit's Parse and Bind rests as PostgreSQL reads them, so that the
 * messages cachekey_build_request makes of any key it accepts are well formed.
 */
#include "cachekey.h"

#include "config.h"
#include "proto.h"
#include "sqlparse.h"

#include <string.h>

#define HEAD_LEN 7 /* version, kind, describe, namespace */

/* ---- encoding ---- */

static int append_string(buf_t *k, const char *s)
{
    return buf_append(k, s, strlen(s) + 1);
}

/* Appends text (len bytes) without its comments, and a NUL. */
static int append_text(buf_t *k, const char *text, size_t len)
{
    if (buf_reserve(k, len + 1) < 0)
        return -1;
    size_t n = sqlparse_strip_comments(text, len, (char *)buf_tail(k));
    buf_tail(k)[n] = '\0';
    buf_produce(k, (uint32_t)n + 1);
    return 0;
}

int cachekey_encode(buf_t *k, const cachekey_request_t *r)
{
    uint8_t head[HEAD_LEN] = {CACHEKEY_VERSION, r->kind, r->describe ? 1 : 0};
    memcpy(head + 3, &r->ns, sizeof(r->ns));
    buf_consume(k, buf_len(k));
    if (buf_append(k, head, sizeof(head)) < 0 || append_string(k, r->user) < 0)
        return -1;
    for (int id = 0; id < PARAM_COUNT; id++)
        if (id != PARAM_APPLICATION_NAME && append_string(k, r->params[id]) < 0)
            return -1;
    if (append_text(k, r->text, r->text_len) < 0)
        return -1;
    if (r->kind != CACHEKEY_UNIT)
        return 0;
    if (buf_append(k, r->types, r->types_len) < 0 || buf_append(k, r->bind, r->bind_len) < 0)
        return -1;
    return 0;
}

/* ---- decoding ---- */

/* The NUL-terminated string at *at, shorter than max bytes; *at moves past it. */
static const char *take_string(const uint8_t *key, size_t len, size_t *at, size_t max)
{
    const uint8_t *nul = memchr(key + *at, '\0', len - *at);
    if (nul == NULL || (size_t)(nul - (key + *at)) >= max)
        return NULL;
    const char *s = (const char *)key + *at;
    *at = (size_t)(nul - key) + 1;
    return s;
}

/* Skips n int16 values; false when r holds fewer. */
static bool skip_int16s(proto_reader_t *r, int16_t n)
{
    return n >= 0 && proto_get_bytes(r, (uint32_t)n * 2) != NULL;
}

/* The rest of a Parse after its text: a parameter type count and that many OIDs. */
static bool read_types(proto_reader_t *r)
{
    int16_t n = proto_get_int16(r);
    return proto_reader_ok(r) && n >= 0 && proto_get_bytes(r, (uint32_t)n * 4) != NULL;
}

/* The rest of a Bind after its names: formats, values (length -1 for NULL), result formats. */
static bool read_bind(proto_reader_t *r)
{
    if (!skip_int16s(r, proto_get_int16(r)))
        return false;
    int16_t n = proto_get_int16(r);
    if (!proto_reader_ok(r) || n < 0)
        return false;
    for (int16_t i = 0; i < n; i++) {
        int32_t vlen = proto_get_int32(r);
        if (!proto_reader_ok(r) || vlen < -1 ||
            (vlen > 0 && proto_get_bytes(r, (uint32_t)vlen) == NULL))
            return false;
    }
    return skip_int16s(r, proto_get_int16(r)) && proto_reader_ok(r);
}

/* A unit's Parse and Bind rests, from *at to the end of the key. */
static bool decode_unit(const uint8_t *key, size_t len, size_t at, cachekey_request_t *out)
{
    proto_reader_t r;
    proto_reader_init(&r, key + at, (uint32_t)(len - at));
    if (!read_types(&r))
        return false;
    out->types = key + at;
    out->types_len = r.pos;
    uint32_t bind_at = r.pos;
    if (!read_bind(&r) || !proto_reader_done(&r))
        return false;
    out->bind = key + at + bind_at;
    out->bind_len = r.pos - bind_at;
    return true;
}

bool cachekey_decode(const uint8_t *key, size_t len, cachekey_request_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len < HEAD_LEN || len > UINT32_MAX || key[0] != CACHEKEY_VERSION || key[2] > 1)
        return false;
    out->kind = key[1];
    out->describe = key[2] == 1;
    if (out->kind != CACHEKEY_UNIT && (out->kind != CACHEKEY_QUERY || out->describe))
        return false;
    memcpy(&out->ns, key + 3, sizeof(out->ns));
    size_t at = HEAD_LEN;
    if ((out->user = take_string(key, len, &at, CONFIG_NAME_LEN)) == NULL)
        return false;
    for (int id = 0; id < PARAM_COUNT; id++) {
        out->params[id] =
            id == PARAM_APPLICATION_NAME ? "" : take_string(key, len, &at, PARAMS_VALUE_LEN);
        if (out->params[id] == NULL)
            return false;
    }
    size_t text_at = at;
    if ((out->text = take_string(key, len, &at, len)) == NULL)
        return false;
    out->text_len = at - text_at - 1;
    if (out->kind == CACHEKEY_QUERY)
        return at == len;
    return decode_unit(key, len, at, out);
}

/* ---- the request again ---- */

/* Parse "" with the text and its parameter types. */
static int build_parse(buf_t *out, const cachekey_request_t *r)
{
    uint32_t mark;
    if (proto_begin(out, 'P', &mark) < 0 || proto_put_string(out, "") < 0 ||
        proto_put_bytes(out, r->text, r->text_len) < 0 || proto_put_byte(out, 0) < 0 ||
        proto_put_bytes(out, r->types, r->types_len) < 0)
        return -1;
    proto_end(out, mark);
    return 0;
}

/* Bind of portal "" to statement "" with the values of the key. */
static int build_bind(buf_t *out, const cachekey_request_t *r)
{
    uint32_t mark;
    if (proto_begin(out, 'B', &mark) < 0 || proto_put_string(out, "") < 0 ||
        proto_put_string(out, "") < 0 || proto_put_bytes(out, r->bind, r->bind_len) < 0)
        return -1;
    proto_end(out, mark);
    return 0;
}

/* Describe of portal "" (only when the unit asks for it), Execute "" of all rows, Sync. */
static int build_rest(buf_t *out, const cachekey_request_t *r)
{
    uint32_t mark;
    if (r->describe) {
        if (proto_begin(out, 'D', &mark) < 0 || proto_put_byte(out, 'P') < 0 ||
            proto_put_string(out, "") < 0)
            return -1;
        proto_end(out, mark);
    }
    if (proto_begin(out, 'E', &mark) < 0 || proto_put_string(out, "") < 0 ||
        proto_put_int32(out, 0) < 0)
        return -1;
    proto_end(out, mark);
    return proto_build_empty(out, 'S');
}

int cachekey_build_request(buf_t *out, const cachekey_request_t *r)
{
    if (r->kind == CACHEKEY_QUERY)
        return proto_build_query(out, r->text);
    if (build_parse(out, r) < 0 || build_bind(out, r) < 0 || build_rest(out, r) < 0)
        return -1;
    return 0;
}
