/*
 * test_cachekey.c
 *    Unit tests of cachekey: keys of simple queries and of extended-protocol units read back
 *    into the request they were written from (comments gone) and written again into the same
 *    key, the messages that send a decoded request again, and keys the decoder refuses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cachekey.h"
#include "config.h"
#include "proto.h"

#include <string.h>

/* A request with every known parameter set but IntervalStyle. */
static cachekey_request_t request_of(uint8_t kind, const char *text)
{
    cachekey_request_t r = {.kind = kind, .ns = 7, .user = "alice", .text = text};
    r.text_len = strlen(text);
    r.params[PARAM_CLIENT_ENCODING] = "UTF8";
    r.params[PARAM_DATESTYLE] = "ISO, MDY";
    r.params[PARAM_TIMEZONE] = "Europe/Paris";
    r.params[PARAM_INTERVALSTYLE] = "";
    r.params[PARAM_STANDARD_CONFORMING_STRINGS] = "on";
    r.params[PARAM_APPLICATION_NAME] = "not in keys";
    r.params[PARAM_EXTRA_FLOAT_DIGITS] = "3";
    return r;
}

/* Parse's rest for two parameters, int4 (23) and text (25). */
static const uint8_t types[] = {0, 2, 0, 0, 0, 23, 0, 0, 0, 25};

/* Bind's rest: one format (text) for all, values "42" and NULL, one result format (binary). */
static const uint8_t bind_rest[] = {
    0,    1,    0,    0,    /* one format for all: text */
    0,    2,                /* two values: */
    0,    0,    0,    2,    /* "42" */
    '4',  '2',  0xff, 0xff, /* and NULL */
    0xff, 0xff, 0,    1,    /* one result format: */
    0,    1,                /* binary */
};

static cachekey_request_t unit_request(void)
{
    cachekey_request_t r = request_of(CACHEKEY_UNIT, "SELECT v FROM t WHERE id = $1 AND k = $2");
    r.describe = true;
    r.types = types;
    r.types_len = sizeof(types);
    r.bind = bind_rest;
    r.bind_len = sizeof(bind_rest);
    return r;
}

static void encode(buf_t *k, const cachekey_request_t *r)
{
    assert_int_equal(cachekey_encode(k, r), 0);
}

/* Decoding k and encoding what it gave writes k again, byte for byte. */
static void assert_reencodes(const buf_t *k, cachekey_request_t *decoded)
{
    assert_true(cachekey_decode(buf_head(k), buf_len(k), decoded));
    buf_t again = {0};
    encode(&again, decoded);
    assert_int_equal(buf_len(&again), buf_len(k));
    assert_memory_equal(buf_head(&again), buf_head(k), buf_len(k));
    buf_free(&again);
}

static void query_key_round_trips_without_comments(void **state)
{
    cachekey_request_t r =
        request_of(CACHEKEY_QUERY, "  SELECT v /* why */ FROM t -- note\n WHERE id = 1  ");
    buf_t k = {0};
    encode(&k, &r);
    cachekey_request_t d;
    assert_reencodes(&k, &d);
    assert_int_equal(d.kind, CACHEKEY_QUERY);
    assert_false(d.describe);
    assert_int_equal(d.ns, 7);
    assert_string_equal(d.user, "alice");
    assert_string_equal(d.text, "SELECT v FROM t WHERE id = 1");
    assert_int_equal(d.text_len, strlen("SELECT v FROM t WHERE id = 1"));
    for (int id = 0; id < PARAM_COUNT; id++)
        if (id != PARAM_APPLICATION_NAME)
            assert_string_equal(d.params[id], r.params[id]);
    assert_string_equal(d.params[PARAM_APPLICATION_NAME], "");
    assert_null(d.types);
    assert_null(d.bind);
    buf_free(&k);
}

static void unit_key_round_trips_with_types_values_and_formats(void **state)
{
    cachekey_request_t r = unit_request();
    buf_t k = {0};
    encode(&k, &r);
    cachekey_request_t d;
    assert_reencodes(&k, &d);
    assert_int_equal(d.kind, CACHEKEY_UNIT);
    assert_true(d.describe);
    assert_string_equal(d.text, r.text);
    assert_int_equal(d.types_len, sizeof(types));
    assert_memory_equal(d.types, types, sizeof(types));
    assert_int_equal(d.bind_len, sizeof(bind_rest));
    assert_memory_equal(d.bind, bind_rest, sizeof(bind_rest));
    buf_free(&k);
}

/* The parts a key is made of each make another key. */
static void keys_differ_by_user_parameter_and_describe(void **state)
{
    cachekey_request_t a = unit_request(), b = unit_request();
    buf_t ka = {0}, kb = {0};
    encode(&ka, &a);
    b.user = "bob";
    encode(&kb, &b);
    assert_false(buf_len(&ka) == buf_len(&kb) &&
                 memcmp(buf_head(&ka), buf_head(&kb), buf_len(&ka)) == 0);
    b = unit_request();
    b.params[PARAM_TIMEZONE] = "UTC";
    encode(&kb, &b);
    assert_false(buf_len(&ka) == buf_len(&kb) &&
                 memcmp(buf_head(&ka), buf_head(&kb), buf_len(&ka)) == 0);
    b = unit_request();
    b.describe = false;
    encode(&kb, &b);
    assert_int_equal(buf_len(&ka), buf_len(&kb));
    assert_memory_not_equal(buf_head(&ka), buf_head(&kb), buf_len(&ka));
    /* application_name is not part of a key. */
    b = unit_request();
    b.params[PARAM_APPLICATION_NAME] = "other";
    encode(&kb, &b);
    assert_int_equal(buf_len(&ka), buf_len(&kb));
    assert_memory_equal(buf_head(&ka), buf_head(&kb), buf_len(&ka));
    buf_free(&ka);
    buf_free(&kb);
}

/* Frames the next message of out at *at: its type and body. */
static proto_msg_t next_message(const buf_t *out, uint32_t *at)
{
    proto_msg_t m;
    assert_int_equal(proto_frame(buf_head(out) + *at, buf_len(out) - *at, UINT32_MAX, &m),
                     PROTO_FRAME_COMPLETE);
    *at += m.len;
    return m;
}

static void query_request_is_one_query_message(void **state)
{
    cachekey_request_t r = request_of(CACHEKEY_QUERY, "SELECT 1 /* c */");
    buf_t k = {0}, out = {0};
    encode(&k, &r);
    cachekey_request_t d;
    assert_true(cachekey_decode(buf_head(&k), buf_len(&k), &d));
    assert_int_equal(cachekey_build_request(&out, &d), 0);
    uint32_t at = 0;
    proto_msg_t m = next_message(&out, &at);
    assert_int_equal(m.type, 'Q');
    assert_int_equal(m.body_len, sizeof("SELECT 1"));
    assert_string_equal((const char *)m.body, "SELECT 1");
    assert_int_equal(at, buf_len(&out));
    buf_free(&k);
    buf_free(&out);
}

static void unit_request_is_parse_bind_describe_execute_sync(void **state)
{
    cachekey_request_t r = unit_request();
    buf_t k = {0}, out = {0};
    encode(&k, &r);
    cachekey_request_t d;
    assert_true(cachekey_decode(buf_head(&k), buf_len(&k), &d));
    assert_int_equal(cachekey_build_request(&out, &d), 0);
    uint32_t at = 0;
    proto_msg_t m = next_message(&out, &at);
    assert_int_equal(m.type, 'P');
    size_t text = strlen(r.text) + 1;
    assert_int_equal(m.body_len, 1 + text + sizeof(types));
    assert_int_equal(m.body[0], '\0');
    assert_string_equal((const char *)m.body + 1, r.text);
    assert_memory_equal(m.body + 1 + text, types, sizeof(types));
    m = next_message(&out, &at);
    assert_int_equal(m.type, 'B');
    assert_int_equal(m.body_len, 2 + sizeof(bind_rest));
    assert_memory_equal(m.body, "\0\0", 2);
    assert_memory_equal(m.body + 2, bind_rest, sizeof(bind_rest));
    m = next_message(&out, &at);
    assert_int_equal(m.type, 'D');
    assert_int_equal(m.body_len, 2);
    assert_memory_equal(m.body, "P\0", 2);
    m = next_message(&out, &at);
    assert_int_equal(m.type, 'E');
    assert_int_equal(m.body_len, 5);
    assert_memory_equal(m.body, "\0\0\0\0\0", 5);
    m = next_message(&out, &at);
    assert_int_equal(m.type, 'S');
    assert_int_equal(m.body_len, 0);
    assert_int_equal(at, buf_len(&out));
    /* Without Describe, the unit goes from Bind to Execute. */
    d.describe = false;
    buf_consume(&out, buf_len(&out));
    assert_int_equal(cachekey_build_request(&out, &d), 0);
    at = 0;
    assert_int_equal(next_message(&out, &at).type, 'P');
    assert_int_equal(next_message(&out, &at).type, 'B');
    assert_int_equal(next_message(&out, &at).type, 'E');
    buf_free(&k);
    buf_free(&out);
}

/* No prefix of a key, and no key with a byte more, is a key. */
static void cut_or_extended_keys_are_refused(void **state)
{
    cachekey_request_t reqs[] = {request_of(CACHEKEY_QUERY, "SELECT 1"), unit_request()};
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        buf_t k = {0};
        encode(&k, &reqs[i]);
        cachekey_request_t d;
        for (uint32_t len = 0; len < buf_len(&k); len++)
            assert_false(cachekey_decode(buf_head(&k), len, &d));
        assert_int_equal(buf_append(&k, "", 1), 0);
        assert_false(cachekey_decode(buf_head(&k), buf_len(&k), &d));
        buf_free(&k);
    }
}

/* Decodes k after setting byte at to v; what cachekey_decode says. */
static bool decodes_with(const buf_t *k, uint32_t at, uint8_t v)
{
    uint8_t copy[512];
    assert_true(buf_len(k) <= sizeof(copy));
    memcpy(copy, buf_head(k), buf_len(k));
    copy[at] = v;
    cachekey_request_t d;
    return cachekey_decode(copy, buf_len(k), &d);
}

static void other_versions_kinds_and_malformed_units_are_refused(void **state)
{
    cachekey_request_t r = unit_request();
    buf_t k = {0};
    encode(&k, &r);
    assert_true(decodes_with(&k, 0, CACHEKEY_VERSION));
    assert_false(decodes_with(&k, 0, CACHEKEY_VERSION + 1));
    assert_false(decodes_with(&k, 1, 'Z'));
    assert_false(decodes_with(&k, 2, 2));
    /* A negative parameter type count, or more types than there are. */
    uint32_t types_at = buf_len(&k) - sizeof(bind_rest) - sizeof(types);
    assert_false(decodes_with(&k, types_at, 0x80));
    assert_false(decodes_with(&k, types_at + 1, 3));
    /* A value length under -1, or past the end. */
    uint32_t value_len_at = buf_len(&k) - sizeof(bind_rest) + 6;
    assert_false(decodes_with(&k, value_len_at, 0xfe));
    assert_false(decodes_with(&k, value_len_at + 3, 9));
    buf_free(&k);
    /* A simple Query does not ask for a description. */
    r = request_of(CACHEKEY_QUERY, "SELECT 1");
    encode(&k, &r);
    assert_false(decodes_with(&k, 2, 1));
    buf_free(&k);
}

static void overlong_user_or_parameter_is_refused(void **state)
{
    char user[CONFIG_NAME_LEN + 1];
    memset(user, 'u', sizeof(user) - 1);
    user[sizeof(user) - 1] = '\0';
    cachekey_request_t r = request_of(CACHEKEY_QUERY, "SELECT 1");
    r.user = user;
    buf_t k = {0};
    encode(&k, &r);
    cachekey_request_t d;
    assert_false(cachekey_decode(buf_head(&k), buf_len(&k), &d));
    char value[PARAMS_VALUE_LEN + 1];
    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    r = request_of(CACHEKEY_QUERY, "SELECT 1");
    r.params[PARAM_TIMEZONE] = value;
    encode(&k, &r);
    assert_false(cachekey_decode(buf_head(&k), buf_len(&k), &d));
    buf_free(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(query_key_round_trips_without_comments),
        cmocka_unit_test(unit_key_round_trips_with_types_values_and_formats),
        cmocka_unit_test(keys_differ_by_user_parameter_and_describe),
        cmocka_unit_test(query_request_is_one_query_message),
        cmocka_unit_test(unit_request_is_parse_bind_describe_execute_sync),
        cmocka_unit_test(cut_or_extended_keys_are_refused),
        cmocka_unit_test(other_versions_kinds_and_malformed_units_are_refused),
        cmocka_unit_test(overlong_user_or_parameter_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
