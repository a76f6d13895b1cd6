/*
 * proto.c
 *    PostgreSQL protocol v3: framing, bounds-checked reading and building of messages.
 *
 * See proto.h. Integers on the wire are big-endian; the length field of a message counts
 * itself and the body but not the type byte.
 */
#include "proto.h"

#include <arpa/inet.h>
#include <string.h>

static uint32_t read_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

proto_frame_result_t proto_frame(const uint8_t *buf, size_t avail, uint32_t max_len,
                                 proto_msg_t *msg)
{
    if (avail < PROTO_HEADER_LEN)
        return PROTO_FRAME_SHORT;
    uint32_t field = read_u32(buf + 1);
    if (field < 4)
        return PROTO_FRAME_BAD_LENGTH;
    if (max_len == 0 || field > max_len - 1 || field == UINT32_MAX)
        return PROTO_FRAME_TOO_LARGE;
    msg->type = buf[0];
    msg->len = field + 1;
    msg->body = buf + PROTO_HEADER_LEN;
    msg->body_len = field - 4;
    return avail >= msg->len ? PROTO_FRAME_COMPLETE : PROTO_FRAME_PARTIAL;
}

proto_frame_result_t proto_frame_startup(const uint8_t *buf, size_t avail, proto_msg_t *msg)
{
    if (avail < 4)
        return PROTO_FRAME_SHORT;
    uint32_t field = read_u32(buf);
    if (field < 8)
        return PROTO_FRAME_BAD_LENGTH;
    if (field > PROTO_STARTUP_MAX)
        return PROTO_FRAME_TOO_LARGE;
    msg->type = 0;
    msg->len = field;
    msg->body = buf + 4;
    msg->body_len = field - 4;
    return avail >= field ? PROTO_FRAME_COMPLETE : PROTO_FRAME_PARTIAL;
}

void proto_reader_init(proto_reader_t *r, const uint8_t *data, uint32_t len)
{
    r->data = data;
    r->len = len;
    r->pos = 0;
    r->failed = false;
}

static bool reader_take(proto_reader_t *r, uint32_t n)
{
    if (r->failed || r->len - r->pos < n) {
        r->failed = true;
        return false;
    }
    return true;
}

uint8_t proto_get_byte(proto_reader_t *r)
{
    if (!reader_take(r, 1))
        return 0;
    return r->data[r->pos++];
}

int16_t proto_get_int16(proto_reader_t *r)
{
    if (!reader_take(r, 2))
        return 0;
    uint16_t v = (uint16_t)((r->data[r->pos] << 8) | r->data[r->pos + 1]);
    r->pos += 2;
    return (int16_t)v;
}

int32_t proto_get_int32(proto_reader_t *r)
{
    if (!reader_take(r, 4))
        return 0;
    uint32_t v = read_u32(r->data + r->pos);
    r->pos += 4;
    return (int32_t)v;
}

const char *proto_get_string(proto_reader_t *r)
{
    if (r->failed || r->pos >= r->len) {
        r->failed = true;
        return "";
    }
    const uint8_t *start = r->data + r->pos;
    const uint8_t *nul = memchr(start, 0, r->len - r->pos);
    if (nul == NULL) {
        r->failed = true;
        return "";
    }
    r->pos += (uint32_t)(nul - start) + 1;
    return (const char *)start;
}

const uint8_t *proto_get_bytes(proto_reader_t *r, uint32_t n)
{
    if (!reader_take(r, n))
        return NULL;
    const uint8_t *p = r->data + r->pos;
    r->pos += n;
    return p;
}

int proto_parse_startup(const proto_msg_t *msg, proto_startup_t *out, const char **why)
{
    proto_reader_t r;
    proto_reader_init(&r, msg->body, msg->body_len);
    memset(out, 0, sizeof(*out));
    out->code = proto_get_int32(&r);
    if (out->code == PROTO_CANCEL_REQUEST) {
        out->cancel_pid = proto_get_int32(&r);
        out->cancel_key = proto_get_int32(&r);
        if (!proto_reader_done(&r))
            goto malformed;
        return 0;
    }
    if (out->code == PROTO_SSL_REQUEST || out->code == PROTO_GSSENC_REQUEST)
        return proto_reader_done(&r) ? 0 : (*why = "malformed startup packet", -1);
    if ((out->code >> 16) != 3) {
        *why = "unsupported frontend protocol: pgturbo speaks protocol 3.0";
        return -1;
    }
    while (proto_reader_ok(&r) && r.pos < r.len && r.data[r.pos] != '\0') {
        const char *name = proto_get_string(&r);
        const char *value = proto_get_string(&r);
        if (out->n_params == PROTO_MAX_STARTUP_PARAMS) {
            *why = "too many startup parameters";
            return -1;
        }
        out->names[out->n_params] = name;
        out->values[out->n_params] = value;
        out->n_params++;
    }
    if (proto_get_byte(&r) != '\0' || !proto_reader_done(&r))
        goto malformed;
    const char *user = proto_startup_get(out, "user");
    if (user == NULL || user[0] == '\0') {
        *why = "no PostgreSQL user name specified in startup packet";
        return -1;
    }
    return 0;
malformed:
    *why = "malformed startup packet";
    return -1;
}

const char *proto_startup_get(const proto_startup_t *s, const char *name)
{
    for (int i = 0; i < s->n_params; i++)
        if (strcmp(s->names[i], name) == 0)
            return s->values[i];
    return NULL;
}

int proto_parse_error(const uint8_t *body, uint32_t len, proto_error_t *out)
{
    proto_reader_t r;
    proto_reader_init(&r, body, len);
    out->severity = out->sqlstate = out->message = "";
    for (;;) {
        uint8_t field = proto_get_byte(&r);
        if (field == '\0')
            break;
        const char *value = proto_get_string(&r);
        if (field == 'V' || (field == 'S' && out->severity[0] == '\0'))
            out->severity = value;
        else if (field == 'C')
            out->sqlstate = value;
        else if (field == 'M')
            out->message = value;
    }
    return proto_reader_done(&r) ? 0 : -1;
}

int proto_begin(buf_t *b, uint8_t type, uint32_t *mark)
{
    if (buf_reserve(b, PROTO_HEADER_LEN) < 0)
        return -1;
    uint8_t *p = buf_tail(b);
    p[0] = type;
    memset(p + 1, 0, 4);
    /* Relative to start: appending may move the held bytes to the front of the block. */
    *mark = b->end - b->start + 1;
    buf_produce(b, PROTO_HEADER_LEN);
    return 0;
}

void proto_end(buf_t *b, uint32_t mark)
{
    uint32_t n = htonl(b->end - b->start - mark);
    memcpy(b->data + b->start + mark, &n, 4);
}

int proto_put_byte(buf_t *b, uint8_t v)
{
    return buf_append(b, &v, 1);
}

int proto_put_int16(buf_t *b, int16_t v)
{
    uint16_t n = htons((uint16_t)v);
    return buf_append(b, &n, 2);
}

int proto_put_int32(buf_t *b, int32_t v)
{
    uint32_t n = htonl((uint32_t)v);
    return buf_append(b, &n, 4);
}

int proto_put_string(buf_t *b, const char *s)
{
    return buf_append(b, s, strlen(s) + 1);
}

int proto_put_bytes(buf_t *b, const void *p, size_t n)
{
    return buf_append(b, p, n);
}

static int build_error_fields(buf_t *b, uint8_t type, const char *severity, const char *sqlstate,
                              const char *message)
{
    uint32_t mark;
    if (proto_begin(b, type, &mark) < 0 || proto_put_byte(b, 'S') < 0 ||
        proto_put_string(b, severity) < 0 || proto_put_byte(b, 'V') < 0 ||
        proto_put_string(b, severity) < 0 || proto_put_byte(b, 'C') < 0 ||
        proto_put_string(b, sqlstate) < 0 || proto_put_byte(b, 'M') < 0 ||
        proto_put_string(b, message) < 0 || proto_put_byte(b, '\0') < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}

int proto_build_error(buf_t *b, const char *severity, const char *sqlstate, const char *message)
{
    return build_error_fields(b, 'E' /* ErrorResponse */, severity, sqlstate, message);
}

int proto_build_notice(buf_t *b, const char *sqlstate, const char *message)
{
    return build_error_fields(b, 'N' /* NoticeResponse */, "NOTICE", sqlstate, message);
}

int proto_build_auth_ok(buf_t *b)
{
    uint32_t mark;
    if (proto_begin(b, 'R' /* AuthenticationOk */, &mark) < 0 || proto_put_int32(b, 0) < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}

int proto_build_auth_request(buf_t *b, int32_t code, const void *data, size_t n)
{
    uint32_t mark;
    if (proto_begin(b, 'R' /* Authentication* */, &mark) < 0 || proto_put_int32(b, code) < 0 ||
        proto_put_bytes(b, data, n) < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}

int proto_build_row_description(buf_t *b, int n, const char *const *names, const uint32_t *types)
{
    uint32_t mark;
    if (proto_begin(b, 'T' /* RowDescription */, &mark) < 0 || proto_put_int16(b, (int16_t)n) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        int16_t size = types[i] == PROTO_OID_INT8 ? 8 : -1;
        if (proto_put_string(b, names[i]) < 0 || proto_put_int32(b, 0) < 0 ||
            proto_put_int16(b, 0) < 0 || proto_put_int32(b, (int32_t)types[i]) < 0 ||
            proto_put_int16(b, size) < 0 || proto_put_int32(b, -1) < 0 || proto_put_int16(b, 0) < 0)
            return -1;
    }
    proto_end(b, mark);
    return 0;
}

int proto_build_data_row(buf_t *b, int n, const char *const *values)
{
    uint32_t mark;
    if (proto_begin(b, 'D' /* DataRow */, &mark) < 0 || proto_put_int16(b, (int16_t)n) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (values[i] == NULL) {
            if (proto_put_int32(b, -1) < 0)
                return -1;
            continue;
        }
        size_t len = strlen(values[i]);
        if (proto_put_int32(b, (int32_t)len) < 0 || proto_put_bytes(b, values[i], len) < 0)
            return -1;
    }
    proto_end(b, mark);
    return 0;
}

int proto_build_parameter_status(buf_t *b, const char *name, const char *value)
{
    uint32_t mark;
    if (proto_begin(b, 'S' /* ParameterStatus */, &mark) < 0 || proto_put_string(b, name) < 0 ||
        proto_put_string(b, value) < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}

int proto_build_backend_key(buf_t *b, int32_t pid, int32_t key)
{
    uint32_t mark;
    if (proto_begin(b, 'K' /* BackendKeyData */, &mark) < 0 || proto_put_int32(b, pid) < 0 ||
        proto_put_int32(b, key) < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}

int proto_build_ready(buf_t *b, char status)
{
    uint32_t mark;
    if (proto_begin(b, 'Z' /* ReadyForQuery */, &mark) < 0 ||
        proto_put_byte(b, (uint8_t)status) < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}

int proto_build_query(buf_t *b, const char *sql)
{
    uint32_t mark;
    if (proto_begin(b, 'Q' /* Query */, &mark) < 0 || proto_put_string(b, sql) < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}

int proto_build_command_complete(buf_t *b, const char *tag)
{
    uint32_t mark;
    if (proto_begin(b, 'C' /* CommandComplete */, &mark) < 0 || proto_put_string(b, tag) < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}

int proto_build_empty(buf_t *b, uint8_t type)
{
    uint32_t mark;
    if (proto_begin(b, type, &mark) < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}

int proto_build_terminate(buf_t *b)
{
    return proto_build_empty(b, 'X' /* Terminate */);
}

int proto_build_startup(buf_t *b, const char *const *names, const char *const *values, int n)
{
    uint32_t mark = b->end - b->start;
    if (proto_put_int32(b, 0) < 0 || proto_put_int32(b, PROTO_VERSION_3) < 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (proto_put_string(b, names[i]) < 0 || proto_put_string(b, values[i]) < 0)
            return -1;
    if (proto_put_byte(b, '\0') < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}

int proto_build_parse(buf_t *b, const char *name, const char *query, const uint8_t *param_types,
                      int16_t n_params)
{
    uint32_t mark;
    if (proto_begin(b, 'P' /* Parse */, &mark) < 0 || proto_put_string(b, name) < 0 ||
        proto_put_string(b, query) < 0 || proto_put_int16(b, n_params) < 0 ||
        proto_put_bytes(b, param_types, (size_t)n_params * 4) < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}

int proto_build_close(buf_t *b, char kind, const char *name)
{
    uint32_t mark;
    if (proto_begin(b, 'C' /* Close */, &mark) < 0 || proto_put_byte(b, (uint8_t)kind) < 0 ||
        proto_put_string(b, name) < 0)
        return -1;
    proto_end(b, mark);
    return 0;
}
