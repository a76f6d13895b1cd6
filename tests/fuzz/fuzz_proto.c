/*
 * fuzz_proto.c
 *    libFuzzer target for proto: frames the input as a stream of typed messages and as a
 *    startup packet, and runs the readers and parsers over whatever it frames.
 *
 * Beyond "never crash", it checks the promises of proto.h and aborts when one is broken:
 * a framed message lies inside the input, a reader never leaves its body, and a Query,
 * ErrorResponse or StartupMessage that parses builds back to the same bytes.
 */
#include "buf.h"
#include "proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond))                                                                          \
            abort();                                                                          \
    } while (0)

/* Reads a body field by field, in an order picked by the message type, as a handler would. */
static void read_fields(uint8_t type, const uint8_t *body, uint32_t len)
{
    proto_reader_t r;
    proto_reader_init(&r, body, len);
    switch (type) {
    case 'P': /* Parse: name, query, int16 n, n int32 OIDs */ {
        (void)proto_get_string(&r);
        (void)proto_get_string(&r);
        int16_t n = proto_get_int16(&r);
        for (int i = 0; i < n && proto_reader_ok(&r); i++)
            (void)proto_get_int32(&r);
        break;
    }
    case 'B': /* Bind: portal, statement, formats, values, result formats */ {
        (void)proto_get_string(&r);
        (void)proto_get_string(&r);
        int16_t n = proto_get_int16(&r);
        for (int i = 0; i < n && proto_reader_ok(&r); i++)
            (void)proto_get_int16(&r);
        n = proto_get_int16(&r);
        for (int i = 0; i < n && proto_reader_ok(&r); i++) {
            int32_t vlen = proto_get_int32(&r);
            if (vlen > 0 && proto_get_bytes(&r, (uint32_t)vlen) == NULL)
                CHECK(!proto_reader_ok(&r));
        }
        break;
    }
    case 'S': /* ParameterStatus: name, value */
        (void)proto_get_string(&r);
        (void)proto_get_string(&r);
        break;
    case 'K': /* BackendKeyData */
        (void)proto_get_int32(&r);
        (void)proto_get_int32(&r);
        break;
    case 'R': /* Authentication: code, then data */
        (void)proto_get_int32(&r);
        (void)proto_get_bytes(&r, len > 4 ? len - 4 : 0);
        break;
    default:
        while (proto_reader_ok(&r) && r.pos < r.len)
            (void)proto_get_byte(&r);
        break;
    }
    CHECK(r.pos <= r.len);
    if (!proto_reader_ok(&r)) {
        /* Failure is sticky and yields zeros. */
        CHECK(proto_get_byte(&r) == 0);
        CHECK(proto_get_int32(&r) == 0);
        CHECK(proto_get_string(&r)[0] == '\0');
        CHECK(proto_get_bytes(&r, 0) == NULL);
    }
}

/*
 * Makes out ready for the next message built into it and returns where that message will
 * start. Bytes already held stay (trimmed now and then), so builders run with start > 0 and
 * their appends move or grow the block.
 */
static uint32_t out_prepare(buf_t *out)
{
    if (buf_len(out) > 4096)
        buf_consume(out, buf_len(out) - 100);
    return buf_len(out);
}

/* Rebuilds a Query from its text; the bytes must equal the message framed. */
static void check_query_round_trip(const proto_msg_t *msg, buf_t *out)
{
    proto_reader_t r;
    proto_reader_init(&r, msg->body, msg->body_len);
    const char *sql = proto_get_string(&r);
    if (!proto_reader_done(&r))
        return;
    uint32_t at = out_prepare(out);
    CHECK(proto_build_query(out, sql) == 0);
    CHECK(buf_len(out) - at == msg->len);
    CHECK(memcmp(buf_head(out) + at, msg->body - PROTO_HEADER_LEN, msg->len) == 0);
}

/* Frames typed messages one after another until the input runs out or stops framing. */
static void fuzz_stream(const uint8_t *data, size_t size, uint32_t max_len, buf_t *out)
{
    size_t pos = 0;
    while (pos < size) {
        proto_msg_t msg;
        proto_frame_result_t res = proto_frame(data + pos, size - pos, max_len, &msg);
        if (res == PROTO_FRAME_SHORT) {
            CHECK(size - pos < PROTO_HEADER_LEN);
            return;
        }
        if (res == PROTO_FRAME_BAD_LENGTH || res == PROTO_FRAME_TOO_LARGE)
            return;
        CHECK(msg.type == data[pos]);
        CHECK(msg.len >= PROTO_HEADER_LEN);
        CHECK(msg.len <= max_len);
        CHECK(msg.body == data + pos + PROTO_HEADER_LEN);
        CHECK(msg.body_len == msg.len - PROTO_HEADER_LEN);
        if (res == PROTO_FRAME_PARTIAL) {
            CHECK(msg.len > size - pos);
            return;
        }
        CHECK(res == PROTO_FRAME_COMPLETE);
        CHECK(msg.len <= size - pos);

        if (msg.type == 'E' || msg.type == 'N') {
            proto_error_t e;
            if (proto_parse_error(msg.body, msg.body_len, &e) == 0) {
                /* Fields are strings inside the body (or the static ""). */
                CHECK(strlen(e.severity) < msg.body_len);
                CHECK(strlen(e.sqlstate) < msg.body_len);
                CHECK(strlen(e.message) < msg.body_len);
                uint32_t at = out_prepare(out);
                CHECK(proto_build_error(out, e.severity, e.sqlstate, e.message) == 0);
                proto_msg_t again;
                CHECK(proto_frame(buf_head(out) + at, buf_len(out) - at, UINT32_MAX, &again) ==
                      PROTO_FRAME_COMPLETE);
                CHECK(again.len == buf_len(out) - at);
                proto_error_t e2;
                CHECK(proto_parse_error(again.body, again.body_len, &e2) == 0);
                CHECK(strcmp(e.severity, e2.severity) == 0);
                CHECK(strcmp(e.sqlstate, e2.sqlstate) == 0);
                CHECK(strcmp(e.message, e2.message) == 0);
            }
        } else if (msg.type == 'Q') {
            check_query_round_trip(&msg, out);
        }
        read_fields(msg.type, msg.body, msg.body_len);
        pos += msg.len;
    }
}

/* Frames the input as a startup packet and parses it. */
static void fuzz_startup(const uint8_t *data, size_t size, buf_t *out)
{
    proto_msg_t msg;
    proto_frame_result_t res = proto_frame_startup(data, size, &msg);
    if (res != PROTO_FRAME_COMPLETE)
        return;
    CHECK(msg.len >= 8 && msg.len <= PROTO_STARTUP_MAX && msg.len <= size);
    CHECK(msg.body == data + 4 && msg.body_len == msg.len - 4);
    proto_startup_t s;
    const char *why = NULL;
    if (proto_parse_startup(&msg, &s, &why) != 0) {
        CHECK(why != NULL && why[0] != '\0');
        return;
    }
    if (s.code != PROTO_VERSION_3 && (s.code >> 16) == 3) {
        CHECK(proto_startup_get(&s, "user") != NULL);
        return;
    }
    if (s.code != PROTO_VERSION_3)
        return;
    CHECK(s.n_params >= 1 && s.n_params <= PROTO_MAX_STARTUP_PARAMS);
    const char *user = proto_startup_get(&s, "user");
    CHECK(user != NULL && user[0] != '\0');
    /* A 3.0 packet that parses builds back to the same bytes. */
    uint32_t at = out_prepare(out);
    CHECK(proto_build_startup(out, s.names, s.values, s.n_params) == 0);
    CHECK(buf_len(out) - at == msg.len);
    CHECK(memcmp(buf_head(out) + at, data, msg.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    buf_t out = {0};
    /* Start the output buffer part-consumed by an amount the input picks. */
    if (size > 0) {
        uint8_t pad[BUF_DEFAULT_SIZE];
        uint32_t fill = (uint32_t)data[0] * 64;
        memset(pad, 'p', fill);
        CHECK(buf_append(&out, pad, fill) == 0);
        buf_consume(&out, fill / 2);
    }
    fuzz_stream(data, size, 1u << 20, &out);
    fuzz_stream(data, size, 64, &out);
    fuzz_startup(data, size, &out);
    buf_free(&out);
    buf_thread_cleanup();
    return 0;
}
