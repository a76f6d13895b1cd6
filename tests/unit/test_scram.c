/*
 * test_scram.c
 *    SCRAM-SHA-256 client and server against the test vector of RFC 7677 section 3 and the
 *    verifier PostgreSQL stores for it; both sides against each other, with a password and in
 *    pass-through with keys; malformed messages and verifiers; and PostgreSQL's md5 password
 *    answer against a value computed independently.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "scram.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

static const char server_first[] =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

static void start(scram_client_t *sc)
{
    char out[256];
    int n = scram_client_first(sc, "user", "rOprNGfwEbeRWgbNEkqO", out, sizeof(out));
    assert_string_equal(out, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    assert_int_equal(n, (int)strlen(out));
}

/* Checks the RFC's client-final message and that the client accepts the RFC's signature. */
static void assert_rfc_client_final(const scram_client_t *sc, const char *out, int n)
{
    assert_string_equal(out, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                             "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    assert_int_equal(n, (int)strlen(out));
    assert_true(scram_client_verify(sc, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
}

static void test_rfc7677_client_final_and_server_signature(void **state)
{
    scram_client_t sc;
    start(&sc);
    char out[256];
    const char *why = NULL;
    int n = scram_client_final(&sc, "pencil", server_first, out, sizeof(out), &why);
    assert_rfc_client_final(&sc, out, n);
}

static void test_wrong_server_signature_is_refused(void **state)
{
    scram_client_t sc;
    start(&sc);
    char out[256];
    const char *why = NULL;
    assert_true(scram_client_final(&sc, "pencil", server_first, out, sizeof(out), &why) > 0);
    assert_false(scram_client_verify(&sc, "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
    assert_false(scram_client_verify(&sc, "e=invalid-proof"));
    assert_false(scram_client_verify(&sc, "v=short"));
}

static void test_server_nonce_must_extend_client_nonce(void **state)
{
    scram_client_t sc;
    start(&sc);
    char out[256];
    const char *why = NULL;
    assert_int_equal(scram_client_final(&sc, "pencil",
                                        "r=somebodyElse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", out,
                                        sizeof(out), &why),
                     -1);
    assert_string_equal(why, "SCRAM server nonce does not extend the client nonce");
    assert_int_equal(scram_client_final(&sc, "pencil",
                                        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                                        out, sizeof(out), &why),
                     -1);
}

static void test_malformed_server_first_is_refused(void **state)
{
    scram_client_t sc;
    char out[256];
    const char *why = NULL;
    const char *bad[] = {
        "",
        "r=rOprNGfwEbeRWgbNEkqOxx,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        "r=rOprNGfwEbeRWgbNEkqOxx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096x",
        "r=rOprNGfwEbeRWgbNEkqOxx,s=***,i=4096",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        start(&sc);
        assert_int_equal(scram_client_final(&sc, "pencil", bad[i], out, sizeof(out), &why), -1);
    }
}

static void test_random_nonces_differ(void **state)
{
    scram_client_t a, b;
    char out_a[256], out_b[256];
    assert_true(scram_client_first(&a, "", NULL, out_a, sizeof(out_a)) > 0);
    assert_true(scram_client_first(&b, "", NULL, out_b, sizeof(out_b)) > 0);
    assert_int_equal(strncmp(out_a, "n,,n=,r=", 8), 0);
    assert_string_not_equal(out_a, out_b);
}

static void test_md5_password_answer(void **state)
{
    /* md5(md5("secret" + "alice") + "\x01\x02\x03\x04"), computed with Python's hashlib. */
    const uint8_t salt[4] = {1, 2, 3, 4};
    char out[36];
    assert_int_equal(scram_md5_password("alice", "secret", salt, out), 0);
    assert_string_equal(out, "md598a0412b9c31436fc53776e863350083");
}

/* ---- Verifiers ---- */

/* What PostgreSQL stores for password "pencil" with the salt of RFC 7677. */
static const char rfc_secret[] = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
                                 "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
                                 "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

/* Derives the keys of a password with OpenSSL directly, independently of scram.c. */
static void derive(const char *password, const uint8_t *salt, int salt_len, int iterations,
                   uint8_t client_key[SCRAM_KEY_LEN], uint8_t stored_key[SCRAM_KEY_LEN],
                   uint8_t server_key[SCRAM_KEY_LEN])
{
    uint8_t salted[SCRAM_KEY_LEN];
    unsigned int len = SCRAM_KEY_LEN;
    assert_int_equal(PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, salt_len, iterations,
                                       EVP_sha256(), SCRAM_KEY_LEN, salted),
                     1);
    assert_non_null(HMAC(EVP_sha256(), salted, SCRAM_KEY_LEN, (const uint8_t *)"Client Key", 10,
                         client_key, &len));
    assert_non_null(HMAC(EVP_sha256(), salted, SCRAM_KEY_LEN, (const uint8_t *)"Server Key", 10,
                         server_key, &len));
    assert_non_null(SHA256(client_key, SCRAM_KEY_LEN, stored_key));
}

static void test_rfc7677_verifier_is_postgresql_s(void **state)
{
    const uint8_t salt[] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
                            0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};
    uint8_t client_key[SCRAM_KEY_LEN], stored_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
    derive("pencil", salt, sizeof(salt), 4096, client_key, stored_key, server_key);
    char salt64[32], stored64[64], server64[64], built[256];
    EVP_EncodeBlock((uint8_t *)salt64, salt, sizeof(salt));
    EVP_EncodeBlock((uint8_t *)stored64, stored_key, SCRAM_KEY_LEN);
    EVP_EncodeBlock((uint8_t *)server64, server_key, SCRAM_KEY_LEN);
    snprintf(built, sizeof(built), "SCRAM-SHA-256$4096:%s$%s:%s", salt64, stored64, server64);
    assert_string_equal(built, rfc_secret);

    scram_secret_t secret;
    assert_int_equal(scram_secret_parse(rfc_secret, &secret), 0);
    assert_int_equal(secret.iterations, 4096);
    assert_int_equal(secret.salt_len, sizeof(salt));
    assert_memory_equal(secret.salt, salt, sizeof(salt));
    assert_memory_equal(secret.stored_key, stored_key, SCRAM_KEY_LEN);
    assert_memory_equal(secret.server_key, server_key, SCRAM_KEY_LEN);
}

static void test_secret_from_password_has_postgresql_defaults(void **state)
{
    scram_secret_t a, b;
    assert_int_equal(scram_secret_from_password("pencil", &a), 0);
    assert_int_equal(scram_secret_from_password("pencil", &b), 0);
    assert_int_equal(a.iterations, 4096);
    assert_int_equal(a.salt_len, 16);
    assert_memory_not_equal(a.salt, b.salt, 16);

    uint8_t client_key[SCRAM_KEY_LEN], stored_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
    derive("pencil", a.salt, a.salt_len, a.iterations, client_key, stored_key, server_key);
    assert_memory_equal(a.stored_key, stored_key, SCRAM_KEY_LEN);
    assert_memory_equal(a.server_key, server_key, SCRAM_KEY_LEN);
}

static void test_secret_from_password_salt_gives_postgresql_s_verifier(void **state)
{
    scram_secret_t expected, secret;
    assert_int_equal(scram_secret_parse(rfc_secret, &expected), 0);
    assert_int_equal(
        scram_secret_from_password_salt("pencil", expected.salt, expected.salt_len, &secret), 0);
    assert_memory_equal(&secret, &expected, sizeof(secret));
    /* The salt may be the one of *out itself, as auth.c passes the mock verifier's. */
    assert_int_equal(
        scram_secret_from_password_salt("pencil", secret.salt, secret.salt_len, &secret), 0);
    assert_memory_equal(&secret, &expected, sizeof(secret));
    assert_int_equal(scram_secret_from_password_salt("pencil", expected.salt, 0, &secret), -1);
    assert_int_equal(scram_secret_from_password_salt("pencil", expected.salt, 65, &secret), -1);
}

static void test_secret_parse_accepts_a_64_byte_salt(void **state)
{
    char s[256];
    snprintf(s, sizeof(s), "SCRAM-SHA-256$1:%.84sAA==$%s", /* 88 characters: 64 bytes */
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
             "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
             "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
    scram_secret_t secret;
    assert_int_equal(scram_secret_parse(s, &secret), 0);
    assert_int_equal(secret.salt_len, 64);
    assert_int_equal(secret.iterations, 1);
}

static void test_secret_parse_refuses_malformed_verifiers(void **state)
{
#define KEY  "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
#define SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
    const char *bad[] = {
        "",
        "SCRAM-SHA-256",
        "SCRAM-SHA-256$",
        "md5" KEY,
        "SCRAM-SHA-1$4096:" SALT "$" KEY ":" KEY,
        "scram-sha-256$4096:" SALT "$" KEY ":" KEY,
        "SCRAM-SHA-256$:" SALT "$" KEY ":" KEY,
        "SCRAM-SHA-256$0:" SALT "$" KEY ":" KEY,
        "SCRAM-SHA-256$-1:" SALT "$" KEY ":" KEY,
        "SCRAM-SHA-256$+4096:" SALT "$" KEY ":" KEY,
        "SCRAM-SHA-256$ 4096:" SALT "$" KEY ":" KEY,
        "SCRAM-SHA-256$4096x:" SALT "$" KEY ":" KEY,
        "SCRAM-SHA-256$99999999999:" SALT "$" KEY ":" KEY,
        "SCRAM-SHA-256$4096$" SALT "$" KEY ":" KEY,
        "SCRAM-SHA-256$4096:$" KEY ":" KEY,
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$" KEY ":" KEY,
        "SCRAM-SHA-256$4096:W22Z=J0SNY7soEsUEjb6gQ==$" KEY ":" KEY,
        "SCRAM-SHA-256$4096:W22Z J0SNY7soEsUEjb6gQ==$" KEY ":" KEY,
        "SCRAM-SHA-256$4096:====$" KEY ":" KEY,
        /* A salt of 65 bytes. */
        "SCRAM-SHA-256$4096:"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        "$" KEY ":" KEY,
        "SCRAM-SHA-256$4096:" SALT,
        "SCRAM-SHA-256$4096:" SALT "$" KEY,
        "SCRAM-SHA-256$4096:" SALT "$" KEY ":",
        "SCRAM-SHA-256$4096:" SALT "$" KEY ":" KEY ":" KEY,
        "SCRAM-SHA-256$4096:" SALT "$" KEY ":" KEY "$",
        "SCRAM-SHA-256$4096:" SALT "$" KEY ":" KEY "AAAA",
        "SCRAM-SHA-256$4096:" SALT "$" SALT ":" KEY,
        "SCRAM-SHA-256$4096:" SALT "$" KEY ":" SALT,
        "SCRAM-SHA-256$4096:" SALT "$" KEY ":!G5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
        "SCRAM-SHA-256$4096:" SALT "$" KEY ":" KEY "\n",
    };
#undef KEY
#undef SALT
    const scram_secret_t zero = {0};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        scram_secret_t secret;
        if (scram_secret_parse(bad[i], &secret) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_memory_equal(&secret, &zero, sizeof(secret));
    }
    scram_secret_t secret;
    assert_int_equal(scram_secret_parse(NULL, &secret), -1);
}

static void test_mock_secret_is_stable_per_user_and_key(void **state)
{
    const uint8_t key[SCRAM_KEY_LEN] = {1, 2, 3};
    const uint8_t other_key[SCRAM_KEY_LEN] = {3, 2, 1};
    scram_secret_t a, b, c, d;
    scram_secret_mock("nobody", key, &a);
    scram_secret_mock("nobody", key, &b);
    scram_secret_mock("somebody", key, &c);
    scram_secret_mock("nobody", other_key, &d);
    assert_memory_equal(&a, &b, sizeof(a));
    assert_memory_not_equal(a.salt, c.salt, 16);
    assert_memory_not_equal(a.salt, d.salt, 16);
    assert_int_equal(a.iterations, 4096);
    assert_int_equal(a.salt_len, 16);

    /* The salt is SHA-256(user || mock_key), cut to 16 bytes. */
    uint8_t input[6 + SCRAM_KEY_LEN], hash[SCRAM_KEY_LEN];
    memcpy(input, "nobody", 6);
    memcpy(input + 6, key, SCRAM_KEY_LEN);
    SHA256(input, sizeof(input), hash);
    assert_memory_equal(a.salt, hash, 16);
}

/* ---- The server side ---- */

/* Copies msg into a buffer of exactly len bytes with no NUL after them, so that
 * AddressSanitizer catches a read past the message. The caller frees it. */
static char *exact_copy(const char *msg, size_t len)
{
    char *copy = malloc(len > 0 ? len : 1);
    assert_non_null(copy);
    memcpy(copy, msg, len);
    return copy;
}

static int feed_client_first(scram_server_t *ss, const scram_secret_t *secret, const char *msg,
                             size_t len, char *out, size_t outlen, const char **why)
{
    char *copy = exact_copy(msg, len);
    int n = scram_server_first(ss, secret, copy, len, out, outlen, why);
    free(copy);
    return n;
}

static int feed_client_final(scram_server_t *ss, const char *msg, size_t len, char *out,
                             size_t outlen, const char **why)
{
    char *copy = exact_copy(msg, len);
    int n = scram_server_final(ss, copy, len, out, outlen, why);
    free(copy);
    return n;
}

static void test_rfc7677_server_side(void **state)
{
    scram_secret_t secret;
    scram_server_t ss;
    char out[256];
    const char *why = NULL;
    const char client_first[] = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    assert_int_equal(scram_secret_parse(rfc_secret, &secret), 0);
    int n =
        feed_client_first(&ss, &secret, client_first, strlen(client_first), out, sizeof(out), &why);
    assert_int_equal(n, (int)strlen(out));
    assert_int_equal(strncmp(out, "r=rOprNGfwEbeRWgbNEkqO", 22), 0);
    const char *tail = ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    assert_string_equal(out + n - strlen(tail), tail);
    assert_int_equal(n, 22 + 32 + strlen(tail)); /* 24 random bytes in base64 */
    assert_string_equal(ss.gs2_header, "n,,");
    assert_string_equal(ss.client_first_bare, "n=user,r=rOprNGfwEbeRWgbNEkqO");

    /* The server nonce is random: put the RFC's in its place to check the exact answer. */
    strcpy(ss.server_first, server_first);
    strcpy(ss.nonce, "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    const char client_final[] = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    n = feed_client_final(&ss, client_final, strlen(client_final), out, sizeof(out), &why);
    assert_string_equal(out, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    assert_int_equal(n, (int)strlen(out));

    uint8_t client_key[SCRAM_KEY_LEN], stored_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
    derive("pencil", secret.salt, secret.salt_len, 4096, client_key, stored_key, server_key);
    assert_memory_equal(ss.client_key, client_key, SCRAM_KEY_LEN);
}

/* One exchange of scram_client_t against scram_server_t, with the messages it left. */
typedef struct exchange {
    scram_client_t sc;
    scram_server_t ss;
    char client_final[SCRAM_MESSAGE_MAX];
    char server_final[SCRAM_MESSAGE_MAX];
    const char *why;
} exchange_t;

/* Runs an exchange in which the client logs in with password, or with keys when client_key is
 * not NULL. Returns what scram_server_final returns. */
static int exchange(exchange_t *x, const scram_secret_t *secret, const char *password,
                    const uint8_t *client_key, const uint8_t *server_key)
{
    char client_first[SCRAM_MESSAGE_MAX], first[SCRAM_MESSAGE_MAX];
    memset(x, 0, sizeof(*x));
    int n = scram_client_first(&x->sc, "", NULL, client_first, sizeof(client_first));
    assert_true(n > 0);
    n = feed_client_first(&x->ss, secret, client_first, (size_t)n, first, sizeof(first), &x->why);
    assert_true(n > 0);
    n = client_key ? scram_client_final_keys(&x->sc, client_key, server_key, first, x->client_final,
                                             sizeof(x->client_final), &x->why)
                   : scram_client_final(&x->sc, password, first, x->client_final,
                                        sizeof(x->client_final), &x->why);
    assert_true(n > 0);
    return feed_client_final(&x->ss, x->client_final, (size_t)n, x->server_final,
                             sizeof(x->server_final), &x->why);
}

/* Starts x's server side again with the same client-first message and, as if the server had
 * drawn the same nonce again, the nonce of x's client-final message, which is then valid
 * again: a base for altering that message. */
static void replay_server_first(exchange_t *x, const scram_secret_t *secret)
{
    char client_first[SCRAM_MESSAGE_MAX], first[SCRAM_MESSAGE_MAX];
    const char *why = NULL;
    int n = snprintf(client_first, sizeof(client_first), "n,,%s", x->sc.client_first_bare);
    assert_true(
        feed_client_first(&x->ss, secret, client_first, (size_t)n, first, sizeof(first), &why) > 0);
    const char *nonce = strstr(x->client_final, ",r=") + 3;
    snprintf(x->ss.nonce, sizeof(x->ss.nonce), "%.*s", (int)strcspn(nonce, ","), nonce);
    n = snprintf(x->ss.server_first, sizeof(x->ss.server_first), "r=%s%s", x->ss.nonce,
                 strstr(first, ",s="));
    assert_true(n > 0 && (size_t)n < sizeof(x->ss.server_first));
}

static void test_exchange_with_the_right_password_succeeds(void **state)
{
    scram_secret_t secret;
    exchange_t x;
    assert_int_equal(scram_secret_from_password("s3cret", &secret), 0);
    int n = exchange(&x, &secret, "s3cret", NULL, NULL);
    assert_int_equal(n, 2 + 44);
    assert_int_equal(n, (int)strlen(x.server_final));
    assert_true(scram_client_verify(&x.sc, x.server_final));

    uint8_t client_key[SCRAM_KEY_LEN], stored_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
    derive("s3cret", secret.salt, secret.salt_len, 4096, client_key, stored_key, server_key);
    assert_memory_equal(x.ss.client_key, client_key, SCRAM_KEY_LEN);
}

static void test_exchange_with_a_wrong_password_is_a_bad_proof(void **state)
{
    scram_secret_t secret;
    exchange_t x;
    assert_int_equal(scram_secret_from_password("s3cret", &secret), 0);
    assert_int_equal(exchange(&x, &secret, "s3cret!", NULL, NULL), SCRAM_BAD_PROOF);
    assert_string_equal(x.why, "SCRAM proof does not match the password");
    const uint8_t zero[SCRAM_KEY_LEN] = {0};
    assert_memory_equal(x.ss.client_key, zero, SCRAM_KEY_LEN);
}

static void test_exchange_with_a_mock_secret_is_a_bad_proof(void **state)
{
    const uint8_t key[SCRAM_KEY_LEN] = {42};
    scram_secret_t secret;
    exchange_t x;
    scram_secret_mock("nobody", key, &secret);
    assert_int_equal(exchange(&x, &secret, "", NULL, NULL), SCRAM_BAD_PROOF);
    assert_int_equal(exchange(&x, &secret, "nobody", NULL, NULL), SCRAM_BAD_PROOF);
}

static void test_replayed_client_final_is_refused(void **state)
{
    scram_secret_t secret;
    exchange_t first, second;
    assert_int_equal(scram_secret_from_password("s3cret", &secret), 0);
    assert_true(exchange(&first, &secret, "s3cret", NULL, NULL) > 0);

    /* The same exchange cannot take a client-final twice. */
    char out[256];
    const char *why = NULL;
    assert_int_equal(feed_client_final(&first.ss, first.client_final, strlen(first.client_final),
                                       out, sizeof(out), &why),
                     -1);
    assert_string_equal(why, "SCRAM client-final message outside an exchange");

    /* A new exchange with the same client nonce has another server nonce. */
    const char *bare = first.sc.client_first_bare;
    char client_first[SCRAM_MESSAGE_MAX];
    int n = snprintf(client_first, sizeof(client_first), "n,,%s", bare);
    assert_true(feed_client_first(&second.ss, &secret, client_first, (size_t)n, out, sizeof(out),
                                  &why) > 0);
    assert_int_equal(feed_client_final(&second.ss, first.client_final, strlen(first.client_final),
                                       out, sizeof(out), &why),
                     -1);
    assert_string_equal(why, "SCRAM nonce does not match the server-first message");
}

static void test_malformed_client_first_is_refused(void **state)
{
    static char huge[4096];
    memset(huge, 'r', sizeof(huge));
    memcpy(huge, "n,,n=,r=", 8);
    const struct {
        const char *msg;
        size_t len; /* 0: strlen */
        const char *why;
    } bad[] = {
        {"", 0, "malformed SCRAM client-first message"},
        {"no commas at all", 0, "malformed SCRAM client-first message"},
        {huge, sizeof(huge), "SCRAM message too long"},
        {"p=tls-server-end-point,,n=,r=abc", 0, "SCRAM channel binding is not supported"},
        {"n,a=bob,n=,r=abc", 0, "SCRAM authorization identity is not supported"},
        {"n,,m=ext,n=,r=abc", 0, "mandatory SCRAM extensions are not supported"},
        {"n,,n=,r=ab\001c", 0, "SCRAM client nonce is not printable"},
        {"n,,n=,r=ab\xc3\xa9", 0, "SCRAM client nonce is not printable"},
        {"n,,n=,r=", 0, "SCRAM client nonce is not printable"},
        {"n,,n=,r=a\0bc", 11, "malformed SCRAM client-first message"},
        {"n,,r=abc", 0, "malformed SCRAM client-first message"},
        {"n,,n=", 0, "malformed SCRAM client-first message"},
        {"n,,n=,", 0, "malformed SCRAM client-first message"},
        {"n,,n=,r=abc,", 0, "malformed SCRAM client-first message"},
        {"n,,n=,r=abc,,", 0, "malformed SCRAM client-first message"},
        {"x,,n=,r=abc", 0, "malformed SCRAM client-first message"},
        {"n,n=,r=abc", 0, "malformed SCRAM client-first message"},
        {"n", 0, "malformed SCRAM client-first message"},
        {"n,", 0, "malformed SCRAM client-first message"},
        {"n,a", 0, "malformed SCRAM client-first message"},
        {"n,a=", 0, "SCRAM authorization identity is not supported"},
    };
    scram_secret_t secret;
    scram_server_t ss;
    char out[256];
    assert_int_equal(scram_secret_parse(rfc_secret, &secret), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].msg);
        assert_int_equal(feed_client_first(&ss, &secret, bad[i].msg, len, out, sizeof(out), &why),
                         -1);
        assert_string_equal(why, bad[i].why);
        assert_int_equal(feed_client_final(&ss, "c=biws,r=abc,p=x", 16, out, sizeof(out), &why),
                         -1);
    }
    /* The server-first message must fit in out. */
    const char *why = NULL;
    assert_int_equal(feed_client_first(&ss, &secret, "n,,n=,r=abc", 11, out, 20, &why), -1);
    assert_string_equal(why, "SCRAM server-first message does not fit");
}

static void test_client_first_variants_are_accepted(void **state)
{
    const char *good[] = {
        "n,,n=,r=abc",
        "y,,n=,r=abc",
        "n,a=,n=,r=abc",
        "n,,n=someone=2Celse,r=abc",
        "n,,n=user,r=abc,x=extension,y=",
        "n,,n=,r=!\"#$%&'()*+-./~",
    };
    scram_secret_t secret;
    scram_server_t ss;
    char out[256];
    const char *why = NULL;
    assert_int_equal(scram_secret_parse(rfc_secret, &secret), 0);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int n = feed_client_first(&ss, &secret, good[i], strlen(good[i]), out, sizeof(out), &why);
        if (n <= 0)
            fail_msg("refused %s: %s", good[i], why);
    }
    assert_string_equal(ss.client_first_bare, good[5] + 3);
}

static void test_malformed_client_final_is_refused(void **state)
{
    scram_secret_t secret;
    exchange_t x;
    assert_int_equal(scram_secret_from_password("s3cret", &secret), 0);
    assert_true(exchange(&x, &secret, "s3cret", NULL, NULL) > 0);
    /* Variations on a good client-final message: "c=biws,r=<nonce>,p=<proof>". */
    const char *good = x.client_final;
    const char *nonce = strstr(good, ",r=") + 3;
    int nonce_len = (int)(strstr(good, ",p=") - nonce);
    const char *proof = strstr(good, ",p=") + 3;
    static char huge[4096];
    memset(huge, 'c', sizeof(huge));
    char msg[64][SCRAM_MESSAGE_MAX];
    const char *why[64];
    int k = 0;
#define BAD(reason, ...)                                                                           \
    do {                                                                                           \
        snprintf(msg[k], sizeof(msg[k]), __VA_ARGS__);                                             \
        why[k++] = (reason);                                                                       \
    } while (0)
    const char *malformed = "malformed SCRAM client-final message";
    BAD(malformed, "%s", "");
    BAD(malformed, "%s", "garbage");
    BAD(malformed, "c=biws,r=%.*s", nonce_len, nonce);
    BAD(malformed, "c=biws,r=%.*s,", nonce_len, nonce);
    BAD(malformed, "c=biws,r=%.*s,p=", nonce_len, nonce);
    BAD(malformed, "c=biws,r=%.*s,p=!%s", nonce_len, nonce, proof + 1);
    BAD(malformed, "c=biws,r=%.*s,p=AAAA", nonce_len, nonce);
    BAD(malformed, "c=biws,r=%.*s,p=%sAAAA", nonce_len, nonce, proof);
    BAD(malformed, "c=biws,r=%.*s,p=%s,x=1", nonce_len, nonce, proof);
    BAD(malformed, "c=biws,r=%.*s,p=%s,", nonce_len, nonce, proof);
    BAD(malformed, "c=bi,r=%.*s,p=%s", nonce_len, nonce, proof);
    BAD(malformed, "c=,r=%.*s,p=%s", nonce_len, nonce, proof);
    BAD(malformed, "r=%.*s,c=biws,p=%s", nonce_len, nonce, proof);
    BAD(malformed, "c=biws,p=%s", proof);
    BAD(malformed, "c=biws,r=%.*s,,p=%s", nonce_len, nonce, proof);
    BAD("SCRAM channel binding does not match the client-first message", "c=eSws,r=%.*s,p=%s",
        nonce_len, nonce, proof);
    BAD("SCRAM channel binding does not match the client-first message",
        "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=%.*s,p=%s", nonce_len, nonce, proof);
    BAD("SCRAM nonce does not match the server-first message", "c=biws,r=%.*sx,p=%s", nonce_len,
        nonce, proof);
    BAD("SCRAM nonce does not match the server-first message", "c=biws,r=%.*s,p=%s", nonce_len - 1,
        nonce, proof);
    BAD("SCRAM nonce does not match the server-first message", "c=biws,r=,p=%s", proof);
#undef BAD
    for (int i = 0; i < k + 2; i++) {
        char out[256];
        const char *reason = NULL;
        replay_server_first(&x, &secret);
        if (i == k) { /* too long */
            assert_int_equal(
                feed_client_final(&x.ss, huge, sizeof(huge), out, sizeof(out), &reason), -1);
            assert_string_equal(reason, "SCRAM message too long");
            continue;
        }
        if (i == k + 1) { /* the good one still passes after all that */
            assert_true(feed_client_final(&x.ss, good, strlen(good), out, sizeof(out), &reason) >
                        0);
            assert_true(scram_client_verify(&x.sc, out));
            continue;
        }
        int rc = feed_client_final(&x.ss, msg[i], strlen(msg[i]), out, sizeof(out), &reason);
        if (rc != -1 || strcmp(reason, why[i]) != 0)
            fail_msg("%s: %d %s", msg[i], rc, reason);
    }
}

static void test_altered_client_final_is_a_bad_proof(void **state)
{
    scram_secret_t secret;
    exchange_t x;
    char altered[SCRAM_MESSAGE_MAX], out[256];
    const char *why = NULL;
    assert_int_equal(scram_secret_from_password("s3cret", &secret), 0);
    assert_true(exchange(&x, &secret, "s3cret", NULL, NULL) > 0);
    replay_server_first(&x, &secret);
    /* An extension before the proof is allowed but is part of what the proof signs. */
    const char *proof = strstr(x.client_final, ",p=");
    int n = snprintf(altered, sizeof(altered), "%.*s,x=1%s", (int)(proof - x.client_final),
                     x.client_final, proof);
    assert_int_equal(feed_client_final(&x.ss, altered, (size_t)n, out, sizeof(out), &why),
                     SCRAM_BAD_PROOF);
}

static void test_server_final_must_fit(void **state)
{
    scram_secret_t secret;
    exchange_t x;
    char out[2 + 44]; /* "v=" and the signature, without room for the NUL */
    const char *why = NULL;
    assert_int_equal(scram_secret_from_password("s3cret", &secret), 0);
    assert_true(exchange(&x, &secret, "s3cret", NULL, NULL) > 0);
    replay_server_first(&x, &secret);
    assert_int_equal(
        feed_client_final(&x.ss, x.client_final, strlen(x.client_final), out, sizeof(out), &why),
        -1);
    assert_string_equal(why, "SCRAM server-final message does not fit");
}

/* ---- Pass-through ---- */

static void test_rfc7677_client_final_with_keys(void **state)
{
    /* The keys of "pencil" prove the same as the password: the RFC's exact proof. */
    scram_secret_t secret;
    scram_client_t sc;
    uint8_t client_key[SCRAM_KEY_LEN], stored_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
    char out[256];
    const char *why = NULL;
    assert_int_equal(scram_secret_parse(rfc_secret, &secret), 0);
    derive("pencil", secret.salt, secret.salt_len, 4096, client_key, stored_key, server_key);
    start(&sc);
    int n = scram_client_final_keys(&sc, client_key, secret.server_key, server_first, out,
                                    sizeof(out), &why);
    assert_rfc_client_final(&sc, out, n);
}

static void test_pass_through_logs_in_with_the_client_s_keys(void **state)
{
    scram_secret_t secret;
    exchange_t client, server;
    assert_int_equal(scram_secret_from_password("s3cret", &secret), 0);
    assert_true(exchange(&client, &secret, "s3cret", NULL, NULL) > 0);
    assert_true(exchange(&server, &secret, NULL, client.ss.client_key, secret.server_key) > 0);
    assert_true(scram_client_verify(&server.sc, server.server_final));
}

static void test_pass_through_checks_the_server_s_signature(void **state)
{
    scram_secret_t secret;
    exchange_t client, server;
    uint8_t wrong_server_key[SCRAM_KEY_LEN];
    assert_int_equal(scram_secret_from_password("s3cret", &secret), 0);
    assert_true(exchange(&client, &secret, "s3cret", NULL, NULL) > 0);
    memcpy(wrong_server_key, secret.server_key, SCRAM_KEY_LEN);
    wrong_server_key[0] ^= 1;
    assert_true(exchange(&server, &secret, NULL, client.ss.client_key, wrong_server_key) > 0);
    assert_false(scram_client_verify(&server.sc, server.server_final));
}

static void test_pass_through_to_another_verifier_is_a_bad_proof(void **state)
{
    /* Same password, another salt: the keys of one verifier do not prove the other. */
    scram_secret_t secret, other;
    exchange_t client, server;
    assert_int_equal(scram_secret_from_password("s3cret", &secret), 0);
    assert_int_equal(scram_secret_from_password("s3cret", &other), 0);
    assert_true(exchange(&client, &secret, "s3cret", NULL, NULL) > 0);
    assert_int_equal(exchange(&server, &other, NULL, client.ss.client_key, secret.server_key),
                     SCRAM_BAD_PROOF);
}

static void test_client_final_keys_refuses_a_malformed_server_first(void **state)
{
    scram_client_t sc;
    start(&sc);
    char out[256];
    const char *why = NULL;
    const uint8_t key[SCRAM_KEY_LEN] = {0};
    assert_int_equal(scram_client_final_keys(&sc, key, key, "r=rOprNGfwEbeRWgbNEkqOxx,i=4096", out,
                                             sizeof(out), &why),
                     -1);
    assert_string_equal(why, "malformed SCRAM server-first message");
    assert_int_equal(scram_client_final_keys(&sc, key, key,
                                             "r=other,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", out,
                                             sizeof(out), &why),
                     -1);
    assert_string_equal(why, "SCRAM server nonce does not extend the client nonce");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7677_client_final_and_server_signature),
        cmocka_unit_test(test_wrong_server_signature_is_refused),
        cmocka_unit_test(test_server_nonce_must_extend_client_nonce),
        cmocka_unit_test(test_malformed_server_first_is_refused),
        cmocka_unit_test(test_random_nonces_differ),
        cmocka_unit_test(test_md5_password_answer),
        cmocka_unit_test(test_rfc7677_verifier_is_postgresql_s),
        cmocka_unit_test(test_secret_from_password_has_postgresql_defaults),
        cmocka_unit_test(test_secret_from_password_salt_gives_postgresql_s_verifier),
        cmocka_unit_test(test_secret_parse_accepts_a_64_byte_salt),
        cmocka_unit_test(test_secret_parse_refuses_malformed_verifiers),
        cmocka_unit_test(test_mock_secret_is_stable_per_user_and_key),
        cmocka_unit_test(test_rfc7677_server_side),
        cmocka_unit_test(test_exchange_with_the_right_password_succeeds),
        cmocka_unit_test(test_exchange_with_a_wrong_password_is_a_bad_proof),
        cmocka_unit_test(test_exchange_with_a_mock_secret_is_a_bad_proof),
        cmocka_unit_test(test_replayed_client_final_is_refused),
        cmocka_unit_test(test_malformed_client_first_is_refused),
        cmocka_unit_test(test_client_first_variants_are_accepted),
        cmocka_unit_test(test_malformed_client_final_is_refused),
        cmocka_unit_test(test_altered_client_final_is_a_bad_proof),
        cmocka_unit_test(test_server_final_must_fit),
        cmocka_unit_test(test_rfc7677_client_final_with_keys),
        cmocka_unit_test(test_pass_through_logs_in_with_the_client_s_keys),
        cmocka_unit_test(test_pass_through_checks_the_server_s_signature),
        cmocka_unit_test(test_pass_through_to_another_verifier_is_a_bad_proof),
        cmocka_unit_test(test_client_final_keys_refuses_a_malformed_server_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
