/*
 * test_tls.c
 *    TLS between two ends of a non-blocking socketpair, with the certificates of
 *    tests/harness/certs.sh: handshakes driven step by step like the event loop drives them,
 *    data both ways, certificate and host checks, client certificates, protocol versions,
 *    and the errors of bad settings and of a peer that goes away.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tls.h"

#include <limits.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENT_CN "alice"
#define BIG       (100 * 1024) /* several TLS records */

#define PATH_LEN 64 /* the mkdtemp directory and a file name in it */

static char dir[32];

/* Paths of the files certs.sh makes, and of some it does not. */
static struct {
    char ca[PATH_LEN], ca_key[PATH_LEN], other_ca[PATH_LEN];
    char server_crt[PATH_LEN], server_key[PATH_LEN];
    char client_crt[PATH_LEN], client_key[PATH_LEN];
    char missing_crt[PATH_LEN], missing_key[PATH_LEN];
} files;

static void name_file(char *path, const char *name)
{
    snprintf(path, PATH_LEN, "%s/%s", dir, name);
}

static int make_certificates(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    strcpy(dir, "/tmp/pgturbo-tls.XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    name_file(files.ca, "ca.crt");
    name_file(files.ca_key, "ca.key");
    name_file(files.other_ca, "other-ca.crt");
    name_file(files.server_crt, "server.crt");
    name_file(files.server_key, "server.key");
    name_file(files.client_crt, "client-" CLIENT_CN ".crt");
    name_file(files.client_key, "client-" CLIENT_CN ".key");
    name_file(files.missing_crt, "missing.crt");
    name_file(files.missing_key, "missing.key");
    char cmd[PATH_MAX + 2 * PATH_LEN];
    snprintf(cmd, sizeof(cmd), "%s/tests/harness/certs.sh %s %s", PGTURBO_SOURCE_DIR, dir,
             CLIENT_CN);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_certificates(void **state)
{
    char cmd[PATH_LEN + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* pgturbo facing an application, with server.crt; no client certificates asked for. */
static tls_settings_t server_settings(tls_mode_t mode)
{
    return (tls_settings_t){
        .mode = mode, .cert_file = files.server_crt, .key_file = files.server_key};
}

/* pgturbo facing PostgreSQL, trusting ca.crt. */
static tls_settings_t client_settings(tls_mode_t mode)
{
    return (tls_settings_t){.mode = mode, .ca_file = files.ca};
}

/* Both ends of one connection: "server" accepts, "client" connects. */
typedef struct pair {
    SSL_CTX *server_ctx, *client_ctx;
    SSL *server, *client;
    int fds[2]; /* [0] the server's end, [1] the client's */
    int server_result, client_result;
    char server_err[256], client_err[256];
} pair_t;

static void pair_open(pair_t *p, const tls_settings_t *ss, const tls_settings_t *cs,
                      const char *host)
{
    char err[256] = "";
    memset(p, 0, sizeof(*p));
    p->server_ctx = tls_server_context(ss, err, sizeof(err));
    assert_non_null(p->server_ctx);
    p->client_ctx = tls_client_context(cs, err, sizeof(err));
    assert_non_null(p->client_ctx);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fds), 0);
    p->server = tls_accept_new(p->server_ctx, p->fds[0]);
    assert_non_null(p->server);
    p->client = tls_connect_new(p->client_ctx, p->fds[1], host, cs->mode);
    assert_non_null(p->client);
}

static void pair_close(pair_t *p)
{
    tls_free(p->server);
    tls_free(p->client);
    tls_context_free(p->server_ctx);
    tls_context_free(p->client_ctx);
    for (int i = 0; i < 2; i++) {
        if (p->fds[i] >= 0)
            close(p->fds[i]);
    }
}

static bool in_progress(int result)
{
    return result == TLS_WANT_READ || result == TLS_WANT_WRITE;
}

/*
 * Steps both handshakes in turn until neither wants more, as an event loop would when each
 * socket becomes ready. An end whose peer failed without a word stays in progress: the
 * rounds are bounded.
 */
static void pair_handshake(pair_t *p)
{
    p->client_result = p->server_result = TLS_WANT_READ;
    for (int round = 0;
         round < 50 && (in_progress(p->client_result) || in_progress(p->server_result)); round++) {
        if (in_progress(p->client_result))
            p->client_result = tls_handshake(p->client, p->client_err, sizeof(p->client_err));
        if (in_progress(p->server_result))
            p->server_result = tls_handshake(p->server, p->server_err, sizeof(p->server_err));
    }
}

static bool readable(SSL *ssl)
{
    struct pollfd pfd = {.fd = SSL_get_fd(ssl), .events = POLLIN};
    return poll(&pfd, 1, 0) == 1;
}

/* Moves the n bytes at *block to a new heap block, as a growing output buffer might. */
static void move_block(uint8_t **block, size_t n)
{
    uint8_t *moved = malloc(n);
    assert_non_null(moved);
    memcpy(moved, *block, n);
    free(*block);
    *block = moved;
}

/* Reads what the socket and OpenSSL hold, into in + *got up to n, chunk bytes at a time. */
static void receive(SSL *to, uint8_t *in, size_t *got, size_t n, size_t chunk)
{
    if (!readable(to))
        return;
    do {
        size_t want = n - *got < chunk ? n - *got : chunk;
        ssize_t r = tls_read(to, in + *got, want);
        assert_true(r > 0 || r == NET_AGAIN);
        *got += r > 0 ? (size_t)r : 0;
    } while (tls_pending(to) > 0);
}

/*
 * Writes from out (the bytes from *sent on) until all are written or the socket is full; then
 * moves them elsewhere before the retry, as a growing output buffer might. Returns 1 when a
 * write would block, else 0.
 */
static int flush(SSL *from, uint8_t **out, size_t *sent, size_t n)
{
    while (*sent < n) {
        ssize_t w = tls_write(from, *out, n - *sent);
        if (w == NET_AGAIN) {
            move_block(out, n - *sent);
            return 1;
        }
        assert_true(w > 0);
        *sent += (size_t)w;
        memmove(*out, *out + w, n - *sent);
    }
    return 0;
}

/*
 * Sends n bytes from one end and reads them at the other as an event loop does: the writer
 * writes while it can, the reader reads once up to chunk bytes when its socket is readable,
 * then more while tls_pending says OpenSSL holds some. Checks the bytes arrive whole and in
 * order; returns how often a write would block.
 */
static int transfer(SSL *from, SSL *to, size_t n, size_t chunk)
{
    uint8_t *expected = malloc(n), *in = malloc(n), *out = malloc(n);
    assert_non_null(expected);
    assert_non_null(in);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++)
        expected[i] = (uint8_t)(i * 7 + i / 251);
    memcpy(out, expected, n);
    size_t sent = 0, got = 0;
    int blocked = 0;
    for (int round = 0; got < n && round < 100000; round++) {
        blocked += flush(from, &out, &sent, n);
        receive(to, in, &got, n, chunk);
    }
    assert_int_equal(got, n);
    assert_memory_equal(in, expected, n);
    free(expected);
    free(in);
    free(out);
    return blocked;
}

static void expect_established(const char *host)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    pair_open(&p, &ss, &cs, host);
    pair_handshake(&p);
    assert_int_equal(p.client_result, TLS_DONE);
    assert_int_equal(p.server_result, TLS_DONE);
    assert_int_equal(transfer(p.client, p.server, 5, 1000), 0);
    assert_int_equal(transfer(p.server, p.client, 5, 1000), 0);
    pair_close(&p);
}

static void test_verify_full_accepts_the_dns_name(void **state)
{
    expect_established("localhost");
}

static void test_verify_full_accepts_the_ip_address(void **state)
{
    expect_established("127.0.0.1");
}

static void test_verify_full_refuses_another_host(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    pair_open(&p, &ss, &cs, "example.com");
    pair_handshake(&p);
    assert_int_equal(p.client_result, TLS_FAILED);
    assert_string_equal(p.client_err,
                        "server certificate verify failed: hostname mismatch: \"example.com\"");
    assert_int_equal(p.server_result, TLS_FAILED);
    assert_string_equal(p.server_err, "sslv3 alert bad certificate");
    assert_int_equal(ERR_peek_error(), 0); /* nothing left for the thread's next connection */
    pair_close(&p);
}

static void test_verify_full_refuses_another_address(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    pair_open(&p, &ss, &cs, "127.0.0.2");
    pair_handshake(&p);
    assert_int_equal(p.client_result, TLS_FAILED);
    assert_string_equal(p.client_err, "server certificate verify failed: IP address mismatch");
    pair_close(&p);
}

static void test_verify_ca_ignores_the_host(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_CA);
    pair_open(&p, &ss, &cs, "example.com");
    pair_handshake(&p);
    assert_int_equal(p.client_result, TLS_DONE);
    assert_int_equal(p.server_result, TLS_DONE);
    pair_close(&p);
}

static void test_verify_ca_refuses_a_server_of_another_ca(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_CA);
    cs.ca_file = files.other_ca;
    pair_open(&p, &ss, &cs, "localhost");
    pair_handshake(&p);
    assert_int_equal(p.client_result, TLS_FAILED);
    assert_string_equal(p.client_err,
                        "server certificate verify failed: unable to get local issuer certificate");
    assert_int_equal(p.server_result, TLS_FAILED);
    assert_string_equal(p.server_err, "tlsv1 alert unknown ca");
    pair_close(&p);
}

static void test_require_does_not_check_the_server_certificate(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = {.mode = TLS_REQUIRE};
    pair_open(&p, &ss, &cs, "example.com");
    pair_handshake(&p);
    assert_int_equal(p.client_result, TLS_DONE);
    assert_int_equal(p.server_result, TLS_DONE);
    char cn[64];
    assert_int_equal(tls_peer_common_name(p.client, cn, sizeof(cn)), -1);
    assert_int_equal(tls_peer_common_name(p.server, cn, sizeof(cn)), -1);
    pair_close(&p);
}

static void test_data_larger_than_a_record_goes_both_ways(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    pair_open(&p, &ss, &cs, "localhost");
    pair_handshake(&p);
    assert_int_equal(p.client_result, TLS_DONE);
    assert_int_equal(p.server_result, TLS_DONE);
    assert_int_equal(transfer(p.client, p.server, BIG, 1000), 0);
    assert_int_equal(transfer(p.server, p.client, BIG, 1000), 0);
    assert_int_equal(transfer(p.server, p.client, BIG, BIG), 0);
    pair_close(&p);
}

static void test_blocked_write_is_retried_from_a_moved_buffer(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    pair_open(&p, &ss, &cs, "localhost");
    pair_handshake(&p);
    /* More than the socket buffers hold: writes block, and are retried from elsewhere. */
    assert_true(transfer(p.client, p.server, 40 * BIG, 1000) > 0);
    assert_true(transfer(p.server, p.client, 40 * BIG, BIG) > 0);
    pair_close(&p);
}

static void test_pending_tells_of_bytes_the_socket_no_longer_shows(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    pair_open(&p, &ss, &cs, "localhost");
    pair_handshake(&p);
    uint8_t data[100];
    memset(data, 'x', sizeof(data));
    for (int i = 0; i < 10; i++) /* ten small records */
        assert_int_equal(tls_write(p.client, data, sizeof(data)), (ssize_t)sizeof(data));
    assert_int_equal(tls_pending(p.server), 0);
    uint8_t in[2000];
    assert_int_equal(tls_read(p.server, in, 100), 100);
    /* Read ahead took every record from the socket: only tls_pending shows the rest. */
    assert_false(readable(p.server));
    size_t got = 100;
    while (tls_pending(p.server)) {
        ssize_t n = tls_read(p.server, in, sizeof(in));
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_int_equal(got, 1000);
    assert_int_equal(tls_read(p.server, in, sizeof(in)), NET_AGAIN);
    pair_close(&p);
}

static void test_read_returns_zero_when_the_peer_closes(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    pair_open(&p, &ss, &cs, "localhost");
    pair_handshake(&p);
    uint8_t in[16];
    assert_int_equal(tls_read(p.server, in, sizeof(in)), NET_AGAIN);
    tls_free(p.client);
    p.client = NULL;
    close(p.fds[1]);
    p.fds[1] = -1;
    assert_int_equal(tls_read(p.server, in, sizeof(in)), 0);
    pair_close(&p);
}

/* pgturbo facing applications that must present a certificate of ca.crt. */
static tls_settings_t verifying_server_settings(void)
{
    tls_settings_t ss = server_settings(TLS_VERIFY_CA);
    ss.ca_file = files.ca;
    return ss;
}

static void test_verify_ca_server_refuses_a_client_without_certificate(void **state)
{
    pair_t p;
    tls_settings_t ss = verifying_server_settings(), cs = client_settings(TLS_VERIFY_FULL);
    pair_open(&p, &ss, &cs, "localhost");
    pair_handshake(&p);
    assert_int_equal(p.server_result, TLS_FAILED);
    assert_string_equal(p.server_err, "peer did not return a certificate");
    /* In TLS 1.3 the client is done first, and learns of the refusal when it reads. */
    assert_int_equal(p.client_result, TLS_DONE);
    uint8_t in[16];
    assert_int_equal(tls_read(p.client, in, sizeof(in)), NET_ERROR);
    assert_int_equal(ERR_peek_error(), 0);
    pair_close(&p);
}

static void test_verify_ca_server_accepts_a_client_certificate(void **state)
{
    pair_t p;
    tls_settings_t ss = verifying_server_settings(), cs = client_settings(TLS_VERIFY_FULL);
    cs.cert_file = files.client_crt;
    cs.key_file = files.client_key;
    pair_open(&p, &ss, &cs, "localhost");
    pair_handshake(&p);
    assert_int_equal(p.client_result, TLS_DONE);
    assert_int_equal(p.server_result, TLS_DONE);
    assert_int_equal(transfer(p.client, p.server, 5, 1000), 0);
    char cn[64];
    assert_int_equal(tls_peer_common_name(p.server, cn, sizeof(cn)), 0);
    assert_string_equal(cn, CLIENT_CN);
    assert_int_equal(tls_peer_common_name(p.server, cn, strlen(CLIENT_CN)), -1);
    assert_int_equal(tls_peer_common_name(p.client, cn, sizeof(cn)), 0);
    assert_string_equal(cn, "localhost");
    pair_close(&p);
}

static void test_verify_ca_server_refuses_a_client_of_another_ca(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_VERIFY_CA), cs = client_settings(TLS_VERIFY_FULL);
    ss.ca_file = files.other_ca;
    cs.cert_file = files.client_crt;
    cs.key_file = files.client_key;
    pair_open(&p, &ss, &cs, "localhost");
    pair_handshake(&p);
    assert_int_equal(p.server_result, TLS_FAILED);
    /* The client completes its chain from the CA it trusts, which the server does not. */
    assert_string_equal(p.server_err,
                        "client certificate verify failed: self-signed certificate in certificate "
                        "chain");
    pair_close(&p);
}

static void test_tlsv13_only_negotiates_tlsv13(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    ss.protocols = cs.protocols = "tlsv1.3";
    pair_open(&p, &ss, &cs, "localhost");
    pair_handshake(&p);
    assert_int_equal(p.client_result, TLS_DONE);
    assert_int_equal(p.server_result, TLS_DONE);
    assert_string_equal(tls_version_name(p.client), "TLSv1.3");
    assert_string_equal(tls_version_name(p.server), "TLSv1.3");
    assert_string_equal(tls_cipher_name(p.server), "TLS_AES_256_GCM_SHA384");
    pair_close(&p);
}

static void test_tlsv12_only_negotiates_tlsv12_with_a_secure_cipher(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    ss.protocols = "secure";
    cs.protocols = "TLSv1.2";
    pair_open(&p, &ss, &cs, "localhost");
    pair_handshake(&p);
    assert_int_equal(p.client_result, TLS_DONE);
    assert_int_equal(p.server_result, TLS_DONE);
    assert_string_equal(tls_version_name(p.client), "TLSv1.2");
    assert_string_equal(tls_cipher_name(p.client), "ECDHE-ECDSA-AES256-GCM-SHA384");
    assert_int_equal(transfer(p.client, p.server, BIG, 1000), 0);
    pair_close(&p);
}

static void test_disjoint_protocols_fail(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    ss.protocols = "tlsv1.3";
    cs.protocols = "tlsv1.2";
    pair_open(&p, &ss, &cs, "localhost");
    pair_handshake(&p);
    assert_int_equal(p.server_result, TLS_FAILED);
    assert_string_equal(p.server_err, "unsupported protocol");
    assert_int_equal(p.client_result, TLS_FAILED);
    assert_string_equal(p.client_err, "tlsv1 alert protocol version");
    pair_close(&p);
}

static void test_server_closing_during_the_handshake_fails_it(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    pair_open(&p, &ss, &cs, "localhost");
    char err[256];
    assert_int_equal(tls_handshake(p.client, err, sizeof(err)), TLS_WANT_READ);
    close(p.fds[0]);
    p.fds[0] = -1;
    assert_int_equal(tls_handshake(p.client, err, sizeof(err)), TLS_FAILED);
    assert_string_equal(err, "peer closed the connection during the TLS handshake");
    pair_close(&p);
}

static void test_client_closing_during_the_handshake_fails_it(void **state)
{
    pair_t p;
    tls_settings_t ss = server_settings(TLS_REQUIRE), cs = client_settings(TLS_VERIFY_FULL);
    pair_open(&p, &ss, &cs, "localhost");
    char err[256];
    assert_int_equal(tls_handshake(p.server, err, sizeof(err)), TLS_WANT_READ);
    close(p.fds[1]);
    p.fds[1] = -1;
    assert_int_equal(tls_handshake(p.server, err, sizeof(err)), TLS_FAILED);
    assert_string_equal(err, "peer closed the connection during the TLS handshake");
    pair_close(&p);
}

static void test_mode_words_parse_and_print(void **state)
{
    const char *words[] = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"};
    for (int i = 0; i < 6; i++) {
        tls_mode_t mode = TLS_VERIFY_FULL;
        assert_int_equal(tls_mode_parse(words[i], &mode), 0);
        assert_int_equal(mode, i);
        assert_string_equal(tls_mode_name(mode), words[i]);
    }
    tls_mode_t mode = TLS_ALLOW;
    assert_int_equal(tls_mode_parse("verify", &mode), -1);
    assert_int_equal(tls_mode_parse("", &mode), -1);
    assert_int_equal(tls_mode_parse("Require", &mode), -1);
    assert_int_equal(mode, TLS_ALLOW);
}

static void test_missing_key_file_is_named(void **state)
{
    tls_settings_t ss = server_settings(TLS_REQUIRE);
    ss.key_file = files.missing_key;
    char err[512], expected[512];
    assert_null(tls_server_context(&ss, err, sizeof(err)));
    snprintf(expected, sizeof(expected),
             "client_tls_key_file %s: cannot load: No such file or directory", ss.key_file);
    assert_string_equal(err, expected);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_mismatched_key_file_is_named(void **state)
{
    tls_settings_t ss = server_settings(TLS_REQUIRE);
    ss.key_file = files.ca_key;
    char err[512], expected[512];
    assert_null(tls_server_context(&ss, err, sizeof(err)));
    snprintf(expected, sizeof(expected),
             "client_tls_key_file %s: does not match client_tls_cert_file %s", ss.key_file,
             ss.cert_file);
    assert_string_equal(err, expected);
}

static void test_settings_missing_for_the_mode_are_named(void **state)
{
    char err[512];
    tls_settings_t ss = {.mode = TLS_PREFER};
    assert_null(tls_server_context(&ss, err, sizeof(err)));
    assert_string_equal(
        err, "client_tls_sslmode prefer needs client_tls_cert_file and client_tls_key_file");
    ss = server_settings(TLS_VERIFY_FULL);
    assert_null(tls_server_context(&ss, err, sizeof(err)));
    assert_string_equal(err, "client_tls_sslmode verify-full needs client_tls_ca_file");
    tls_settings_t cs = {.mode = TLS_VERIFY_CA};
    assert_null(tls_client_context(&cs, err, sizeof(err)));
    assert_string_equal(err, "server_tls_sslmode verify-ca needs server_tls_ca_file");
    cs = (tls_settings_t){.mode = TLS_REQUIRE, .cert_file = files.client_crt};
    assert_null(tls_client_context(&cs, err, sizeof(err)));
    assert_string_equal(err, "server_tls_cert_file and server_tls_key_file go together");
    cs = (tls_settings_t){.mode = TLS_VERIFY_CA, .ca_file = files.missing_crt};
    char expected[512];
    snprintf(expected, sizeof(expected),
             "server_tls_ca_file %s: cannot load: No such file or directory", cs.ca_file);
    assert_null(tls_client_context(&cs, err, sizeof(err)));
    assert_string_equal(err, expected);
}

static void test_bad_protocols_and_ciphers_are_named(void **state)
{
    char err[512];
    tls_settings_t ss = server_settings(TLS_REQUIRE);
    ss.protocols = "tlsv1.2, sslv3";
    assert_null(tls_server_context(&ss, err, sizeof(err)));
    assert_string_equal(err,
                        "client_tls_protocols \"tlsv1.2, sslv3\": unknown protocol \"sslv3\" "
                        "(expected tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3, secure, all or legacy)");
    tls_settings_t cs = {.mode = TLS_REQUIRE, .ciphers = "NOSUCHCIPHER"};
    assert_null(tls_client_context(&cs, err, sizeof(err)));
    assert_string_equal(err, "server_tls_ciphers \"NOSUCHCIPHER\": no cipher match");
    const char *words[] = {"default", "secure", "normal", "fast", "all", "legacy", "HIGH"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        cs.ciphers = words[i];
        SSL_CTX *ctx = tls_client_context(&cs, err, sizeof(err));
        assert_non_null(ctx);
        tls_context_free(ctx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_full_accepts_the_dns_name),
        cmocka_unit_test(test_verify_full_accepts_the_ip_address),
        cmocka_unit_test(test_verify_full_refuses_another_host),
        cmocka_unit_test(test_verify_full_refuses_another_address),
        cmocka_unit_test(test_verify_ca_ignores_the_host),
        cmocka_unit_test(test_verify_ca_refuses_a_server_of_another_ca),
        cmocka_unit_test(test_require_does_not_check_the_server_certificate),
        cmocka_unit_test(test_data_larger_than_a_record_goes_both_ways),
        cmocka_unit_test(test_blocked_write_is_retried_from_a_moved_buffer),
        cmocka_unit_test(test_pending_tells_of_bytes_the_socket_no_longer_shows),
        cmocka_unit_test(test_read_returns_zero_when_the_peer_closes),
        cmocka_unit_test(test_verify_ca_server_refuses_a_client_without_certificate),
        cmocka_unit_test(test_verify_ca_server_accepts_a_client_certificate),
        cmocka_unit_test(test_verify_ca_server_refuses_a_client_of_another_ca),
        cmocka_unit_test(test_tlsv13_only_negotiates_tlsv13),
        cmocka_unit_test(test_tlsv12_only_negotiates_tlsv12_with_a_secure_cipher),
        cmocka_unit_test(test_disjoint_protocols_fail),
        cmocka_unit_test(test_server_closing_during_the_handshake_fails_it),
        cmocka_unit_test(test_client_closing_during_the_handshake_fails_it),
        cmocka_unit_test(test_mode_words_parse_and_print),
        cmocka_unit_test(test_missing_key_file_is_named),
        cmocka_unit_test(test_mismatched_key_file_is_named),
        cmocka_unit_test(test_settings_missing_for_the_mode_are_named),
        cmocka_unit_test(test_bad_protocols_and_ciphers_are_named),
    };
    return cmocka_run_group_tests(tests, make_certificates, remove_certificates);
}
