/*
 * test_scram.c
 *    SCRAM-SHA-256 client against the test vector of RFC 7677 section 3, and PostgreSQL's md5
 *    password answer against a value computed independently.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "scram.h"

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

static void test_rfc7677_client_final_and_server_signature(void **state)
{
    scram_client_t sc;
    start(&sc);
    char out[256];
    const char *why = NULL;
    int n = scram_client_final(&sc, "pencil", server_first, out, sizeof(out), &why);
    assert_string_equal(out, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                             "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    assert_int_equal(n, (int)strlen(out));
    assert_true(scram_client_verify(&sc, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7677_client_final_and_server_signature),
        cmocka_unit_test(test_wrong_server_signature_is_refused),
        cmocka_unit_test(test_server_nonce_must_extend_client_nonce),
        cmocka_unit_test(test_malformed_server_first_is_refused),
        cmocka_unit_test(test_random_nonces_differ),
        cmocka_unit_test(test_md5_password_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
