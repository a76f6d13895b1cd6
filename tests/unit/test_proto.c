/*
 * test_proto.c
 *    Unit tests of proto: framing, the bounds-checked reader, startup and error parsing, and
 *    the exact bytes of every message builder (checked against the PostgreSQL protocol docs,
 *    "Message Formats").
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "buf.h"
#include "proto.h"

#include <stdio.h>
#include <string.h>

/* Asserts that b holds exactly the n bytes of expected. */
static void assert_buf_bytes(const buf_t *b, const uint8_t *expected, size_t n)
{
    assert_int_equal(buf_len(b), n);
    assert_memory_equal(buf_head(b), expected, n);
}

/* Frees the test's buffer and the blocks the test thread keeps for reuse. */
static int teardown_blocks(void **state)
{
    buf_thread_cleanup();
    return 0;
}

/* ---- proto_frame ---- */

static void frame_complete_message_gives_type_len_and_body(void **state)
{
    const uint8_t in[] = {'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0};
    proto_msg_t msg;
    assert_int_equal(proto_frame(in, sizeof(in), 1024, &msg), PROTO_FRAME_COMPLETE);
    assert_int_equal(msg.type, 'Q');
    assert_int_equal(msg.len, 14);
    assert_ptr_equal(msg.body, in + 5);
    assert_int_equal(msg.body_len, 9);
}

static void frame_ignores_bytes_after_the_message(void **state)
{
    const uint8_t in[] = {'Z', 0, 0, 0, 5, 'I', 'X', 0, 0, 0, 4};
    proto_msg_t msg;
    assert_int_equal(proto_frame(in, sizeof(in), 1024, &msg), PROTO_FRAME_COMPLETE);
    assert_int_equal(msg.type, 'Z');
    assert_int_equal(msg.len, 6);
    assert_int_equal(msg.body_len, 1);
    assert_int_equal(msg.body[0], 'I');
    assert_int_equal(proto_frame(in + msg.len, sizeof(in) - msg.len, 1024, &msg),
                     PROTO_FRAME_COMPLETE);
    assert_int_equal(msg.type, 'X');
    assert_int_equal(msg.len, 5);
    assert_int_equal(msg.body_len, 0);
}

static void frame_header_only_message_with_empty_body_is_complete(void **state)
{
    const uint8_t in[] = {'S', 0, 0, 0, 4};
    proto_msg_t msg;
    assert_int_equal(proto_frame(in, sizeof(in), 1024, &msg), PROTO_FRAME_COMPLETE);
    assert_int_equal(msg.type, 'S');
    assert_int_equal(msg.len, 5);
    assert_ptr_equal(msg.body, in + 5);
    assert_int_equal(msg.body_len, 0);
}

static void frame_partial_body_fills_header_fields(void **state)
{
    const uint8_t in[] = {'D', 0, 0, 0x01, 0x00, 1, 2, 3};
    proto_msg_t msg;
    assert_int_equal(proto_frame(in, sizeof(in), 1 << 20, &msg), PROTO_FRAME_PARTIAL);
    assert_int_equal(msg.type, 'D');
    assert_int_equal(msg.len, 257);
    assert_ptr_equal(msg.body, in + 5);
    assert_int_equal(msg.body_len, 252);
}

static void frame_one_byte_short_of_the_body_is_partial(void **state)
{
    const uint8_t in[] = {'Q', 0, 0, 0, 6, 'x', 0};
    proto_msg_t msg;
    assert_int_equal(proto_frame(in, sizeof(in) - 1, 1024, &msg), PROTO_FRAME_PARTIAL);
    assert_int_equal(proto_frame(in, sizeof(in), 1024, &msg), PROTO_FRAME_COMPLETE);
}

static void frame_less_than_a_header_is_short(void **state)
{
    const uint8_t in[] = {'Q', 0, 0, 0, 13};
    proto_msg_t msg;
    for (size_t n = 0; n < sizeof(in); n++)
        assert_int_equal(proto_frame(in, n, 1024, &msg), PROTO_FRAME_SHORT);
}

static void frame_length_below_four_is_bad(void **state)
{
    proto_msg_t msg;
    for (uint8_t len = 0; len < 4; len++) {
        const uint8_t in[] = {'Q', 0, 0, 0, len, 0, 0, 0};
        assert_int_equal(proto_frame(in, sizeof(in), 1024, &msg), PROTO_FRAME_BAD_LENGTH);
    }
}

static void frame_length_with_high_bit_set_is_too_large(void **state)
{
    const uint8_t in[] = {'Q', 0xff, 0xff, 0xff, 0xff};
    proto_msg_t msg;
    assert_int_equal(proto_frame(in, sizeof(in), 1 << 30, &msg), PROTO_FRAME_TOO_LARGE);
}

static void frame_respects_max_len_on_the_whole_message(void **state)
{
    /* len counts the type byte: a length field of 99 makes a 100-byte message. */
    const uint8_t at_limit[] = {'Q', 0, 0, 0, 99};
    const uint8_t over_limit[] = {'Q', 0, 0, 0, 100};
    proto_msg_t msg;
    assert_int_equal(proto_frame(at_limit, sizeof(at_limit), 100, &msg), PROTO_FRAME_PARTIAL);
    assert_int_equal(msg.len, 100);
    assert_int_equal(proto_frame(over_limit, sizeof(over_limit), 100, &msg),
                     PROTO_FRAME_TOO_LARGE);
}

/* ---- proto_frame_startup ---- */

static void frame_startup_complete_packet(void **state)
{
    const uint8_t in[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}; /* SSLRequest */
    proto_msg_t msg;
    assert_int_equal(proto_frame_startup(in, sizeof(in), &msg), PROTO_FRAME_COMPLETE);
    assert_int_equal(msg.type, 0);
    assert_int_equal(msg.len, 8);
    assert_ptr_equal(msg.body, in + 4);
    assert_int_equal(msg.body_len, 4);
}

static void frame_startup_partial_and_short(void **state)
{
    const uint8_t in[] = {0, 0, 0, 16, 0, 3, 0, 0, 'u'};
    proto_msg_t msg;
    assert_int_equal(proto_frame_startup(in, sizeof(in), &msg), PROTO_FRAME_PARTIAL);
    assert_int_equal(msg.len, 16);
    assert_int_equal(msg.body_len, 12);
    for (size_t n = 0; n < 4; n++)
        assert_int_equal(proto_frame_startup(in, n, &msg), PROTO_FRAME_SHORT);
}

static void frame_startup_length_below_eight_is_bad(void **state)
{
    proto_msg_t msg;
    for (uint8_t len = 0; len < 8; len++) {
        const uint8_t in[] = {0, 0, 0, len, 0, 0, 0, 0};
        assert_int_equal(proto_frame_startup(in, sizeof(in), &msg), PROTO_FRAME_BAD_LENGTH);
    }
}

static void frame_startup_larger_than_startup_max_is_too_large(void **state)
{
    const uint8_t at_max[] = {0, 0, (PROTO_STARTUP_MAX >> 8) & 0xff, PROTO_STARTUP_MAX & 0xff};
    const uint8_t over[] = {0, 0, ((PROTO_STARTUP_MAX + 1) >> 8) & 0xff,
                            (PROTO_STARTUP_MAX + 1) & 0xff};
    proto_msg_t msg;
    assert_int_equal(proto_frame_startup(at_max, sizeof(at_max), &msg), PROTO_FRAME_PARTIAL);
    assert_int_equal(msg.len, PROTO_STARTUP_MAX);
    assert_int_equal(proto_frame_startup(over, sizeof(over), &msg), PROTO_FRAME_TOO_LARGE);
}

/* ---- reader ---- */

static void reader_reads_big_endian_fields_in_order(void **state)
{
    const uint8_t in[] = {0x7f, 0xff, 0xfe, 0x12, 0x34, 0x56, 0x78, 'a', 'b', 0, 9, 8};
    proto_reader_t r;
    proto_reader_init(&r, in, sizeof(in));
    assert_int_equal(proto_get_byte(&r), 0x7f);
    assert_int_equal(proto_get_int16(&r), -2);
    assert_int_equal(proto_get_int32(&r), 0x12345678);
    assert_string_equal(proto_get_string(&r), "ab");
    const uint8_t *rest = proto_get_bytes(&r, 2);
    assert_ptr_equal(rest, in + 10);
    assert_true(proto_reader_ok(&r));
    assert_true(proto_reader_done(&r));
}

static void reader_negative_int32(void **state)
{
    const uint8_t in[] = {0xff, 0xff, 0xff, 0xfe};
    proto_reader_t r;
    proto_reader_init(&r, in, sizeof(in));
    assert_int_equal(proto_get_int32(&r), -2);
    assert_true(proto_reader_done(&r));
}

static void reader_not_done_while_bytes_remain(void **state)
{
    const uint8_t in[] = {1, 2};
    proto_reader_t r;
    proto_reader_init(&r, in, sizeof(in));
    assert_int_equal(proto_get_byte(&r), 1);
    assert_true(proto_reader_ok(&r));
    assert_false(proto_reader_done(&r));
}

static void reader_byte_past_end_fails_and_returns_zero(void **state)
{
    const uint8_t in[] = {5};
    proto_reader_t r;
    proto_reader_init(&r, in, 0);
    assert_int_equal(proto_get_byte(&r), 0);
    assert_false(proto_reader_ok(&r));
    assert_false(proto_reader_done(&r));
}

static void reader_int16_with_one_byte_left_fails(void **state)
{
    const uint8_t in[] = {0x12, 0x34};
    proto_reader_t r;
    proto_reader_init(&r, in, 1);
    assert_int_equal(proto_get_int16(&r), 0);
    assert_false(proto_reader_ok(&r));
}

static void reader_int32_with_three_bytes_left_fails(void **state)
{
    const uint8_t in[] = {1, 2, 3, 4};
    proto_reader_t r;
    proto_reader_init(&r, in, 3);
    assert_int_equal(proto_get_int32(&r), 0);
    assert_false(proto_reader_ok(&r));
}

static void reader_bytes_beyond_end_return_null(void **state)
{
    const uint8_t in[] = {1, 2, 3};
    proto_reader_t r;
    proto_reader_init(&r, in, sizeof(in));
    assert_null(proto_get_bytes(&r, 4));
    assert_false(proto_reader_ok(&r));
}

static void reader_zero_bytes_at_end_are_in_bounds(void **state)
{
    const uint8_t in[] = {1};
    proto_reader_t r;
    proto_reader_init(&r, in, sizeof(in));
    assert_int_equal(proto_get_byte(&r), 1);
    assert_ptr_equal(proto_get_bytes(&r, 0), in + 1);
    assert_true(proto_reader_done(&r));
}

static void reader_unterminated_string_fails_and_returns_empty(void **state)
{
    const uint8_t in[] = {'a', 'b', 'c'};
    proto_reader_t r;
    proto_reader_init(&r, in, sizeof(in));
    assert_string_equal(proto_get_string(&r), "");
    assert_false(proto_reader_ok(&r));
}

static void reader_string_terminator_outside_body_is_not_seen(void **state)
{
    /* The NUL lies just past the body: the reader must not look at it. */
    const uint8_t in[] = {'a', 'b', 0};
    proto_reader_t r;
    proto_reader_init(&r, in, 2);
    assert_string_equal(proto_get_string(&r), "");
    assert_false(proto_reader_ok(&r));
}

static void reader_string_at_end_of_body_fails(void **state)
{
    const uint8_t in[] = {'a', 0};
    proto_reader_t r;
    proto_reader_init(&r, in, sizeof(in));
    assert_string_equal(proto_get_string(&r), "a");
    assert_string_equal(proto_get_string(&r), "");
    assert_false(proto_reader_ok(&r));
}

static void reader_failure_is_sticky(void **state)
{
    const uint8_t in[] = {1, 2, 3, 4, 5, 6, 7, 8, 'x', 0};
    proto_reader_t r;
    proto_reader_init(&r, in, sizeof(in));
    assert_null(proto_get_bytes(&r, 11));
    /* Everything after a failure returns zeros, "" and NULL even though bytes are there. */
    assert_int_equal(proto_get_byte(&r), 0);
    assert_int_equal(proto_get_int16(&r), 0);
    assert_int_equal(proto_get_int32(&r), 0);
    assert_string_equal(proto_get_string(&r), "");
    assert_null(proto_get_bytes(&r, 1));
    assert_false(proto_reader_ok(&r));
    assert_false(proto_reader_done(&r));
}

/* ---- proto_parse_startup ---- */

/* Frames a startup packet given as body bytes (after the length field) and parses it. */
static int parse_startup_body(const uint8_t *body, size_t body_len, proto_startup_t *out,
                              const char **why)
{
    static uint8_t packet[PROTO_STARTUP_MAX];
    uint32_t len = (uint32_t)body_len + 4;
    assert_true(len <= sizeof(packet));
    packet[0] = (uint8_t)(len >> 24);
    packet[1] = (uint8_t)(len >> 16);
    packet[2] = (uint8_t)(len >> 8);
    packet[3] = (uint8_t)len;
    memcpy(packet + 4, body, body_len);
    proto_msg_t msg;
    assert_int_equal(proto_frame_startup(packet, len, &msg), PROTO_FRAME_COMPLETE);
    *why = NULL;
    return proto_parse_startup(&msg, out, why);
}

#define V3 0, 3, 0, 0

static void parse_startup_reads_user_database_and_application_name(void **state)
{
    const uint8_t body[] = {V3, 'u', 's', 'e', 'r', 0, 'a', 'l', 'i', 'c', 'e', 0,
                            'd', 'a', 't', 'a', 'b', 'a', 's', 'e', 0, 's', 'h', 'o', 'p', 0,
                            'a', 'p', 'p', 'l', 'i', 'c', 'a', 't', 'i', 'o', 'n', '_', 'n', 'a',
                            'm', 'e', 0, 'p', 's', 'q', 'l', 0, 0};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), 0);
    assert_null(why);
    assert_int_equal(s.code, PROTO_VERSION_3);
    assert_int_equal(s.n_params, 3);
    assert_string_equal(s.names[0], "user");
    assert_string_equal(s.values[0], "alice");
    assert_string_equal(s.names[1], "database");
    assert_string_equal(s.values[1], "shop");
    assert_string_equal(s.names[2], "application_name");
    assert_string_equal(s.values[2], "psql");
    assert_string_equal(proto_startup_get(&s, "user"), "alice");
    assert_string_equal(proto_startup_get(&s, "database"), "shop");
    assert_string_equal(proto_startup_get(&s, "application_name"), "psql");
    assert_null(proto_startup_get(&s, "options"));
}

static void parse_startup_accepts_minor_version_3_x(void **state)
{
    const uint8_t body[] = {0, 3, 0, 2, 'u', 's', 'e', 'r', 0, 'b', 0, 0};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), 0);
    assert_int_equal(s.code, 0x00030002);
    assert_int_equal(s.n_params, 1);
}

static void parse_startup_ssl_request(void **state)
{
    const uint8_t body[] = {0x04, 0xd2, 0x16, 0x2f};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), 0);
    assert_int_equal(s.code, PROTO_SSL_REQUEST);
    assert_int_equal(s.n_params, 0);
}

static void parse_startup_gssenc_request(void **state)
{
    const uint8_t body[] = {0x04, 0xd2, 0x16, 0x30};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), 0);
    assert_int_equal(s.code, PROTO_GSSENC_REQUEST);
}

static void parse_startup_ssl_request_with_trailing_bytes_is_malformed(void **state)
{
    const uint8_t body[] = {0x04, 0xd2, 0x16, 0x2f, 0};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), -1);
    assert_string_equal(why, "malformed startup packet");
}

static void parse_startup_cancel_request_gives_pid_and_key(void **state)
{
    const uint8_t body[] = {0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), 0);
    assert_int_equal(s.code, PROTO_CANCEL_REQUEST);
    assert_int_equal(s.cancel_pid, 12345);
    assert_int_equal(s.cancel_key, (int32_t)0xdeadbeef);
}

static void parse_startup_short_cancel_request_is_malformed(void **state)
{
    const uint8_t body[] = {0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), -1);
    assert_string_equal(why, "malformed startup packet");
}

static void parse_startup_without_user_is_rejected(void **state)
{
    const uint8_t body[] = {V3, 'd', 'a', 't', 'a', 'b', 'a', 's', 'e', 0, 'x', 0, 0};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), -1);
    assert_string_equal(why, "no PostgreSQL user name specified in startup packet");
}

static void parse_startup_with_empty_user_is_rejected(void **state)
{
    const uint8_t body[] = {V3, 'u', 's', 'e', 'r', 0, 0, 0};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), -1);
    assert_string_equal(why, "no PostgreSQL user name specified in startup packet");
}

static void parse_startup_rejects_protocol_2(void **state)
{
    const uint8_t body[] = {0, 2, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 0, 0};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), -1);
    assert_string_equal(why, "unsupported frontend protocol: pgturbo speaks protocol 3.0");
}

static void parse_startup_rejects_protocol_4(void **state)
{
    const uint8_t body[] = {0, 4, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 0, 0};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), -1);
    assert_string_equal(why, "unsupported frontend protocol: pgturbo speaks protocol 3.0");
}

/* Writes a body with user=u and then n - 1 parameters p1=v ... ; returns its length. */
static size_t startup_body_with_params(uint8_t *out, int n)
{
    const uint8_t head[] = {V3, 'u', 's', 'e', 'r', 0, 'u', 0};
    size_t len = sizeof(head);
    memcpy(out, head, len);
    for (int i = 1; i < n; i++) {
        len += (size_t)sprintf((char *)out + len, "p%d", i) + 1;
        len += (size_t)sprintf((char *)out + len, "v") + 1;
    }
    out[len++] = 0;
    return len;
}

static void parse_startup_accepts_max_params(void **state)
{
    uint8_t body[1024];
    size_t len = startup_body_with_params(body, PROTO_MAX_STARTUP_PARAMS);
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, len, &s, &why), 0);
    assert_int_equal(s.n_params, PROTO_MAX_STARTUP_PARAMS);
    assert_string_equal(s.names[PROTO_MAX_STARTUP_PARAMS - 1], "p31");
    assert_string_equal(s.values[PROTO_MAX_STARTUP_PARAMS - 1], "v");
}

static void parse_startup_rejects_one_param_too_many(void **state)
{
    uint8_t body[1024];
    size_t len = startup_body_with_params(body, PROTO_MAX_STARTUP_PARAMS + 1);
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, len, &s, &why), -1);
    assert_string_equal(why, "too many startup parameters");
}

static void parse_startup_without_final_nul_is_malformed(void **state)
{
    const uint8_t body[] = {V3, 'u', 's', 'e', 'r', 0, 'a', 0};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), -1);
    assert_string_equal(why, "malformed startup packet");
}

static void parse_startup_key_without_value_is_malformed(void **state)
{
    /* The final NUL would be read as an empty value, leaving no terminator. */
    const uint8_t body[] = {V3, 'u', 's', 'e', 'r', 0, 'a', 0, 'd', 'b', 0, 0};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), -1);
    assert_string_equal(why, "malformed startup packet");
}

static void parse_startup_unterminated_key_is_malformed(void **state)
{
    const uint8_t body[] = {V3, 'u', 's', 'e', 'r', 0, 'a', 0, 'd', 'b'};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), -1);
    assert_string_equal(why, "malformed startup packet");
}

static void parse_startup_bytes_after_final_nul_are_malformed(void **state)
{
    const uint8_t body[] = {V3, 'u', 's', 'e', 'r', 0, 'a', 0, 0, 'x'};
    proto_startup_t s;
    const char *why;
    assert_int_equal(parse_startup_body(body, sizeof(body), &s, &why), -1);
    assert_string_equal(why, "malformed startup packet");
}

/* ---- proto_parse_error ---- */

static void parse_error_reads_severity_sqlstate_and_message(void **state)
{
    const uint8_t body[] = "SERROR\0VERROR\0C42P01\0Mrelation \"t\" does not exist\0P15\0";
    proto_error_t e;
    assert_int_equal(proto_parse_error(body, sizeof(body), &e), 0); /* sizeof counts the final NUL */
    assert_string_equal(e.severity, "ERROR");
    assert_string_equal(e.sqlstate, "42P01");
    assert_string_equal(e.message, "relation \"t\" does not exist");
}

static void parse_error_prefers_unlocalized_severity(void **state)
{
    const uint8_t body[] = "SFEHLER\0VERROR\0C23505\0Mdup\0";
    proto_error_t e;
    assert_int_equal(proto_parse_error(body, sizeof(body), &e), 0);
    assert_string_equal(e.severity, "ERROR");
    const uint8_t v_first[] = "VFATAL\0SFATAL-LOCALIZED\0C28P01\0Mno\0";
    assert_int_equal(proto_parse_error(v_first, sizeof(v_first), &e), 0);
    assert_string_equal(e.severity, "FATAL");
}

static void parse_error_uses_localized_severity_without_v(void **state)
{
    const uint8_t body[] = "SWARNING\0C01000\0Mcareful\0";
    proto_error_t e;
    assert_int_equal(proto_parse_error(body, sizeof(body), &e), 0);
    assert_string_equal(e.severity, "WARNING");
    assert_string_equal(e.sqlstate, "01000");
    assert_string_equal(e.message, "careful");
}

static void parse_error_missing_fields_are_empty(void **state)
{
    const uint8_t body[] = {0};
    proto_error_t e;
    assert_int_equal(proto_parse_error(body, sizeof(body), &e), 0);
    assert_string_equal(e.severity, "");
    assert_string_equal(e.sqlstate, "");
    assert_string_equal(e.message, "");
}

static void parse_error_without_terminator_fails(void **state)
{
    const uint8_t body[] = "SERROR\0C42601\0Mx"; /* sizeof - 1: stop before the implicit NUL */
    proto_error_t e;
    assert_int_equal(proto_parse_error(body, sizeof(body) - 1, &e), -1);
    const uint8_t no_final[] = {'S', 'E', 0};
    assert_int_equal(proto_parse_error(no_final, sizeof(no_final), &e), -1);
}

static void parse_error_empty_body_fails(void **state)
{
    const uint8_t body[] = {0};
    proto_error_t e;
    assert_int_equal(proto_parse_error(body, 0, &e), -1);
}

static void parse_error_bytes_after_terminator_fail(void **state)
{
    const uint8_t body[] = {'M', 'x', 0, 0, 'C'};
    proto_error_t e;
    assert_int_equal(proto_parse_error(body, sizeof(body), &e), -1);
}

/* ---- builders ---- */

static void build_error_bytes(void **state)
{
    const uint8_t expected[] = {'E', 0,   0,   0,   32,  'S', 'E', 'R', 'R', 'O', 'R', 0,
                                'V', 'E', 'R', 'R', 'O', 'R', 0,   'C', '4', '2', 'P', '0',
                                '1', 0,   'M', 'n', 'o', 'p', 'e', 0,   0};
    buf_t b = {0};
    assert_int_equal(proto_build_error(&b, "ERROR", "42P01", "nope"), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

static void build_notice_bytes(void **state)
{
    const uint8_t expected[] = {'N', 0,   0,   0,   32,  'S', 'N', 'O', 'T', 'I', 'C',
                                'E', 0,   'V', 'N', 'O', 'T', 'I', 'C', 'E', 0,   'C',
                                '0', '1', '0', '0', '0', 0,   'M', 'h', 'i', 0,   0};
    buf_t b = {0};
    assert_int_equal(proto_build_notice(&b, "01000", "hi"), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

static void build_error_parses_back(void **state)
{
    buf_t b = {0};
    assert_int_equal(proto_build_error(&b, "FATAL", "08P01", "bad packet"), 0);
    proto_msg_t msg;
    assert_int_equal(proto_frame(buf_head(&b), buf_len(&b), 1024, &msg), PROTO_FRAME_COMPLETE);
    assert_int_equal(msg.len, buf_len(&b));
    proto_error_t e;
    assert_int_equal(proto_parse_error(msg.body, msg.body_len, &e), 0);
    assert_string_equal(e.severity, "FATAL");
    assert_string_equal(e.sqlstate, "08P01");
    assert_string_equal(e.message, "bad packet");
    buf_free(&b);
}

static void build_auth_ok_bytes(void **state)
{
    const uint8_t expected[] = {'R', 0, 0, 0, 8, 0, 0, 0, 0};
    buf_t b = {0};
    assert_int_equal(proto_build_auth_ok(&b), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

static void build_parameter_status_bytes(void **state)
{
    const uint8_t expected[] = {'S', 0,   0,   0,   17,  'T', 'i', 'm', 'e',
                                'Z', 'o', 'n', 'e', 0,   'U', 'T', 'C', 0};
    buf_t b = {0};
    assert_int_equal(proto_build_parameter_status(&b, "TimeZone", "UTC"), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

static void build_backend_key_bytes(void **state)
{
    const uint8_t expected[] = {'K', 0, 0, 0, 12, 0, 0, 0x04, 0xd2, 0xff, 0xff, 0xff, 0xfe};
    buf_t b = {0};
    assert_int_equal(proto_build_backend_key(&b, 1234, -2), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

static void build_ready_bytes_for_each_status(void **state)
{
    const uint8_t idle[] = {'Z', 0, 0, 0, 5, 'I'};
    const uint8_t in_tx[] = {'Z', 0, 0, 0, 5, 'T'};
    const uint8_t failed_tx[] = {'Z', 0, 0, 0, 5, 'E'};
    buf_t b = {0};
    assert_int_equal(proto_build_ready(&b, 'I'), 0);
    assert_buf_bytes(&b, idle, sizeof(idle));
    buf_consume(&b, buf_len(&b));
    assert_int_equal(proto_build_ready(&b, 'T'), 0);
    assert_buf_bytes(&b, in_tx, sizeof(in_tx));
    buf_consume(&b, buf_len(&b));
    assert_int_equal(proto_build_ready(&b, 'E'), 0);
    assert_buf_bytes(&b, failed_tx, sizeof(failed_tx));
    buf_free(&b);
}

static void build_query_bytes(void **state)
{
    const uint8_t expected[] = {'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0};
    buf_t b = {0};
    assert_int_equal(proto_build_query(&b, "SELECT 1"), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

static void build_command_complete_bytes(void **state)
{
    const uint8_t expected[] = {'C', 0, 0, 0, 15, 'I', 'N', 'S', 'E', 'R',
                                'T', ' ', '0', ' ', '1', 0};
    buf_t b = {0};
    assert_int_equal(proto_build_command_complete(&b, "INSERT 0 1"), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

static void build_empty_bytes(void **state)
{
    const uint8_t sync[] = {'S', 0, 0, 0, 4};
    buf_t b = {0};
    assert_int_equal(proto_build_empty(&b, 'S'), 0);
    assert_buf_bytes(&b, sync, sizeof(sync));
    buf_free(&b);
}

static void build_terminate_bytes(void **state)
{
    const uint8_t expected[] = {'X', 0, 0, 0, 4};
    buf_t b = {0};
    assert_int_equal(proto_build_terminate(&b), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

static void build_startup_bytes(void **state)
{
    const char *const names[] = {"user", "database"};
    const char *const values[] = {"bob", "db"};
    const uint8_t expected[] = {0,   0,   0,   30,  0,   3,   0,   0,   'u', 's', 'e',
                                'r', 0,   'b', 'o', 'b', 0,   'd', 'a', 't', 'a', 'b',
                                'a', 's', 'e', 0,   'd', 'b', 0,   0};
    buf_t b = {0};
    assert_int_equal(proto_build_startup(&b, names, values, 2), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

static void build_startup_parses_back(void **state)
{
    const char *const names[] = {"user", "database", "application_name"};
    const char *const values[] = {"bob", "db", "pgturbo"};
    buf_t b = {0};
    assert_int_equal(proto_build_startup(&b, names, values, 3), 0);
    proto_msg_t msg;
    assert_int_equal(proto_frame_startup(buf_head(&b), buf_len(&b), &msg), PROTO_FRAME_COMPLETE);
    assert_int_equal(msg.len, buf_len(&b));
    proto_startup_t s;
    const char *why = NULL;
    assert_int_equal(proto_parse_startup(&msg, &s, &why), 0);
    assert_int_equal(s.n_params, 3);
    assert_string_equal(proto_startup_get(&s, "application_name"), "pgturbo");
    buf_free(&b);
}

static void build_parse_with_two_param_types_bytes(void **state)
{
    const uint8_t types[] = {0, 0, 0, 23, 0, 0, 0, 25}; /* int4, text */
    const uint8_t expected[] = {'P', 0,   0,   0,   31,  's', '1', 0,   'S', 'E', 'L',
                                'E', 'C', 'T', ' ', '$', '1', ',', ' ', '$', '2', 0,
                                0,   2,   0,   0,   0,   23,  0,   0,   0,   25};
    buf_t b = {0};
    assert_int_equal(proto_build_parse(&b, "s1", "SELECT $1, $2", types, 2), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

static void build_parse_unnamed_without_param_types_bytes(void **state)
{
    const uint8_t expected[] = {'P', 0, 0, 0, 16, 0, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0,
                                0,   0};
    buf_t b = {0};
    /* No types: the type array may be NULL. */
    assert_int_equal(proto_build_parse(&b, "", "SELECT 1", NULL, 0), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

static void build_close_statement_and_portal_bytes(void **state)
{
    const uint8_t statement[] = {'C', 0, 0, 0, 8, 'S', 's', '1', 0};
    const uint8_t portal[] = {'C', 0, 0, 0, 6, 'P', 0};
    buf_t b = {0};
    assert_int_equal(proto_build_close(&b, 'S', "s1"), 0);
    assert_buf_bytes(&b, statement, sizeof(statement));
    buf_consume(&b, buf_len(&b));
    assert_int_equal(proto_build_close(&b, 'P', ""), 0);
    assert_buf_bytes(&b, portal, sizeof(portal));
    buf_free(&b);
}

static void builders_append_after_existing_bytes(void **state)
{
    const uint8_t expected[] = {'C', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0,
                                'Z', 0, 0, 0, 5,  'I'};
    buf_t b = {0};
    assert_int_equal(proto_build_command_complete(&b, "SELECT 1"), 0);
    assert_int_equal(proto_build_ready(&b, 'I'), 0);
    assert_buf_bytes(&b, expected, sizeof(expected));
    buf_free(&b);
}

/* Fills b with n bytes of 'x' and consumes all but keep of them, so that start > 0. */
static void fill_and_consume(buf_t *b, uint32_t n, uint32_t keep)
{
    static uint8_t junk[BUF_DEFAULT_SIZE];
    memset(junk, 'x', sizeof(junk));
    assert_true(n <= sizeof(junk));
    assert_int_equal(buf_append(b, junk, n), 0);
    buf_consume(b, n - keep);
    assert_int_equal(b->start, n - keep);
}

/* Checks that b holds keep bytes of 'x' then a Query of text sql. */
static void assert_kept_then_query(const buf_t *b, uint32_t keep, const char *sql)
{
    size_t sql_len = strlen(sql);
    assert_int_equal(buf_len(b), keep + 5 + sql_len + 1);
    for (uint32_t i = 0; i < keep; i++)
        assert_int_equal(buf_head(b)[i], 'x');
    proto_msg_t msg;
    assert_int_equal(proto_frame(buf_head(b) + keep, buf_len(b) - keep, UINT32_MAX, &msg),
                     PROTO_FRAME_COMPLETE);
    assert_int_equal(msg.type, 'Q');
    assert_int_equal(msg.len, 5 + sql_len + 1);
    assert_int_equal(msg.body_len, sql_len + 1);
    assert_memory_equal(msg.body, sql, sql_len + 1);
}

static void build_after_consume_when_reserve_compacts(void **state)
{
    /* 1000 bytes held at offset 15000: the query does not fit after them, but does once they
     * move to the front of the block. */
    static char sql[8001];
    memset(sql, 'q', sizeof(sql) - 1);
    sql[sizeof(sql) - 1] = '\0';
    buf_t b = {0};
    fill_and_consume(&b, 16000, 1000);
    uint8_t *block = b.data;
    assert_int_equal(proto_build_query(&b, sql), 0);
    assert_ptr_equal(b.data, block);
    assert_int_equal(b.start, 0);
    assert_int_equal(b.cap, BUF_DEFAULT_SIZE);
    assert_kept_then_query(&b, 1000, sql);
    buf_free(&b);
}

static void build_after_consume_when_reserve_grows(void **state)
{
    static char sql[40000];
    memset(sql, 'g', sizeof(sql) - 1);
    sql[sizeof(sql) - 1] = '\0';
    buf_t b = {0};
    fill_and_consume(&b, 10000, 300);
    assert_int_equal(proto_build_query(&b, sql), 0);
    assert_true(b.cap >= buf_len(&b));
    assert_kept_then_query(&b, 300, sql);
    buf_free(&b);
}

static void build_error_after_consume_when_header_lands_at_block_end(void **state)
{
    /* The 5-byte header just fits at the end of the block; the fields then force a move. */
    buf_t b = {0};
    fill_and_consume(&b, BUF_DEFAULT_SIZE - 5, 7);
    assert_int_equal(proto_build_error(&b, "ERROR", "42P01", "nope"), 0);
    const uint8_t expected[] = {'E', 0,   0,   0,   32,  'S', 'E', 'R', 'R', 'O', 'R', 0,
                                'V', 'E', 'R', 'R', 'O', 'R', 0,   'C', '4', '2', 'P', '0',
                                '1', 0,   'M', 'n', 'o', 'p', 'e', 0,   0};
    assert_int_equal(buf_len(&b), 7 + sizeof(expected));
    assert_memory_equal(buf_head(&b), "xxxxxxx", 7);
    assert_memory_equal(buf_head(&b) + 7, expected, sizeof(expected));
    buf_free(&b);
}

static void build_startup_after_consume_when_reserve_compacts(void **state)
{
    static char long_value[6000];
    memset(long_value, 'v', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    const char *const names[] = {"user", "options"};
    const char *const values[] = {"u", long_value};
    buf_t b = {0};
    fill_and_consume(&b, 12000, 10);
    assert_int_equal(proto_build_startup(&b, names, values, 2), 0);
    assert_int_equal(b.start, 0);
    proto_msg_t msg;
    assert_int_equal(proto_frame_startup(buf_head(&b) + 10, buf_len(&b) - 10, &msg),
                     PROTO_FRAME_COMPLETE);
    assert_int_equal(msg.len, buf_len(&b) - 10);
    assert_int_equal(msg.len, 8 + 5 + 2 + 8 + sizeof(long_value) + 1);
    proto_startup_t s;
    const char *why = NULL;
    assert_int_equal(proto_parse_startup(&msg, &s, &why), 0);
    assert_string_equal(proto_startup_get(&s, "options"), long_value);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frame_complete_message_gives_type_len_and_body),
        cmocka_unit_test(frame_ignores_bytes_after_the_message),
        cmocka_unit_test(frame_header_only_message_with_empty_body_is_complete),
        cmocka_unit_test(frame_partial_body_fills_header_fields),
        cmocka_unit_test(frame_one_byte_short_of_the_body_is_partial),
        cmocka_unit_test(frame_less_than_a_header_is_short),
        cmocka_unit_test(frame_length_below_four_is_bad),
        cmocka_unit_test(frame_length_with_high_bit_set_is_too_large),
        cmocka_unit_test(frame_respects_max_len_on_the_whole_message),
        cmocka_unit_test(frame_startup_complete_packet),
        cmocka_unit_test(frame_startup_partial_and_short),
        cmocka_unit_test(frame_startup_length_below_eight_is_bad),
        cmocka_unit_test(frame_startup_larger_than_startup_max_is_too_large),
        cmocka_unit_test(reader_reads_big_endian_fields_in_order),
        cmocka_unit_test(reader_negative_int32),
        cmocka_unit_test(reader_not_done_while_bytes_remain),
        cmocka_unit_test(reader_byte_past_end_fails_and_returns_zero),
        cmocka_unit_test(reader_int16_with_one_byte_left_fails),
        cmocka_unit_test(reader_int32_with_three_bytes_left_fails),
        cmocka_unit_test(reader_bytes_beyond_end_return_null),
        cmocka_unit_test(reader_zero_bytes_at_end_are_in_bounds),
        cmocka_unit_test(reader_unterminated_string_fails_and_returns_empty),
        cmocka_unit_test(reader_string_terminator_outside_body_is_not_seen),
        cmocka_unit_test(reader_string_at_end_of_body_fails),
        cmocka_unit_test(reader_failure_is_sticky),
        cmocka_unit_test(parse_startup_reads_user_database_and_application_name),
        cmocka_unit_test(parse_startup_accepts_minor_version_3_x),
        cmocka_unit_test(parse_startup_ssl_request),
        cmocka_unit_test(parse_startup_gssenc_request),
        cmocka_unit_test(parse_startup_ssl_request_with_trailing_bytes_is_malformed),
        cmocka_unit_test(parse_startup_cancel_request_gives_pid_and_key),
        cmocka_unit_test(parse_startup_short_cancel_request_is_malformed),
        cmocka_unit_test(parse_startup_without_user_is_rejected),
        cmocka_unit_test(parse_startup_with_empty_user_is_rejected),
        cmocka_unit_test(parse_startup_rejects_protocol_2),
        cmocka_unit_test(parse_startup_rejects_protocol_4),
        cmocka_unit_test(parse_startup_accepts_max_params),
        cmocka_unit_test(parse_startup_rejects_one_param_too_many),
        cmocka_unit_test(parse_startup_without_final_nul_is_malformed),
        cmocka_unit_test(parse_startup_key_without_value_is_malformed),
        cmocka_unit_test(parse_startup_unterminated_key_is_malformed),
        cmocka_unit_test(parse_startup_bytes_after_final_nul_are_malformed),
        cmocka_unit_test(parse_error_reads_severity_sqlstate_and_message),
        cmocka_unit_test(parse_error_prefers_unlocalized_severity),
        cmocka_unit_test(parse_error_uses_localized_severity_without_v),
        cmocka_unit_test(parse_error_missing_fields_are_empty),
        cmocka_unit_test(parse_error_without_terminator_fails),
        cmocka_unit_test(parse_error_empty_body_fails),
        cmocka_unit_test(parse_error_bytes_after_terminator_fail),
        cmocka_unit_test(build_error_bytes),
        cmocka_unit_test(build_notice_bytes),
        cmocka_unit_test(build_error_parses_back),
        cmocka_unit_test(build_auth_ok_bytes),
        cmocka_unit_test(build_parameter_status_bytes),
        cmocka_unit_test(build_backend_key_bytes),
        cmocka_unit_test(build_ready_bytes_for_each_status),
        cmocka_unit_test(build_query_bytes),
        cmocka_unit_test(build_command_complete_bytes),
        cmocka_unit_test(build_empty_bytes),
        cmocka_unit_test(build_terminate_bytes),
        cmocka_unit_test(build_startup_bytes),
        cmocka_unit_test(build_startup_parses_back),
        cmocka_unit_test(build_parse_with_two_param_types_bytes),
        cmocka_unit_test(build_parse_unnamed_without_param_types_bytes),
        cmocka_unit_test(build_close_statement_and_portal_bytes),
        cmocka_unit_test(builders_append_after_existing_bytes),
        cmocka_unit_test(build_after_consume_when_reserve_compacts),
        cmocka_unit_test(build_after_consume_when_reserve_grows),
        cmocka_unit_test(build_error_after_consume_when_header_lands_at_block_end),
        cmocka_unit_test(build_startup_after_consume_when_reserve_compacts),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_blocks);
}
