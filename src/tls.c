/*
 * tls.c
 *    TLS contexts, handshakes and record I/O on non-blocking sockets; see tls.h.
 *
 * Every call that can fail starts from an empty OpenSSL error queue and leaves it empty, so
 * that the queue, which is per thread, never carries one connection's error into another's.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const mode_names[] = {
    [TLS_DISABLE] = "disable", [TLS_ALLOW] = "allow",         [TLS_PREFER] = "prefer",
    [TLS_REQUIRE] = "require", [TLS_VERIFY_CA] = "verify-ca", [TLS_VERIFY_FULL] = "verify-full",
};

/* TLS versions in protocol masks, oldest first. */
static const struct {
    const char *name;
    int version;
} versions[] = {
    {"tlsv1.0", TLS1_VERSION},
    {"tlsv1.1", TLS1_1_VERSION},
    {"tlsv1.2", TLS1_2_VERSION},
    {"tlsv1.3", TLS1_3_VERSION},
};
#define N_VERSIONS  (sizeof(versions) / sizeof(versions[0]))
#define MASK_ALL    0xFu /* one bit per entry of versions */
#define MASK_SECURE 0xCu /* tlsv1.2, tlsv1.3 */

/* OpenSSL options that exclude each entry of versions, to leave holes in a range. */
static const uint64_t version_off[N_VERSIONS] = {SSL_OP_NO_TLSv1, SSL_OP_NO_TLSv1_1,
                                                 SSL_OP_NO_TLSv1_2, SSL_OP_NO_TLSv1_3};

/* PgBouncer's cipher words and the TLS 1.2 cipher lists they stand for. */
static const struct {
    const char *word;
    const char *list;
} cipher_words[] = {
    {"default", "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL"},
    {"secure", "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL"},
    {"normal", "HIGH:!aNULL"},
    {"fast", "ECDHE+AESGCM:ECDHE+CHACHA20:HIGH:+AES256:!aNULL"}, /* AES-128 first */
    {"compat", "HIGH:MEDIUM:!aNULL"},
    {"legacy", "HIGH:MEDIUM:!aNULL"},
    {"all", "ALL:!aNULL:!eNULL"},
    {"insecure", "ALL:!aNULL:!eNULL"},
};

#define PEER_CLOSED "peer closed the connection during the TLS handshake"

__attribute__((format(printf, 3, 4))) static void set_error(char *err, size_t errlen,
                                                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool given(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/*
 * Writes the reason of the oldest error in OpenSSL's queue into buf (the root cause: later
 * entries only say which call gave up), with the detail OpenSSL attached to it if asked (what
 * a file held instead of PEM, say), and empties the queue. Returns buf.
 */
static const char *openssl_reason(char *buf, size_t len, bool detail)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_peek_error_data(&data, &flags);
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    if (e == 0)
        snprintf(buf, len, "unknown error");
    else if (ERR_SYSTEM_ERROR(e)) /* its detail only names the call that failed */
        snprintf(buf, len, "%s", strerror(ERR_GET_REASON(e)));
    else if (reason != NULL && detail && (flags & ERR_TXT_STRING) && data[0] != '\0')
        snprintf(buf, len, "%s: %s", reason, data);
    else if (reason != NULL)
        snprintf(buf, len, "%s", reason);
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

int tls_mode_parse(const char *word, tls_mode_t *out)
{
    for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
        if (strcmp(word, mode_names[i]) == 0) {
            *out = (tls_mode_t)i;
            return 0;
        }
    }
    return -1;
}

const char *tls_mode_name(tls_mode_t mode)
{
    if ((size_t)mode >= sizeof(mode_names) / sizeof(mode_names[0]))
        return "unknown";
    return mode_names[mode];
}

#define SEPARATORS ", \t"

/* Whether the len bytes at p are word, in any case. */
static bool word_is(const char *p, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(p, word, len) == 0;
}

/* The mask of the word of len bytes at p in a protocols setting, or 0 for an unknown word. */
static unsigned protocol_word_mask(const char *p, size_t len)
{
    if (word_is(p, len, "secure"))
        return MASK_SECURE;
    if (word_is(p, len, "all") || word_is(p, len, "legacy"))
        return MASK_ALL;
    for (size_t i = 0; i < N_VERSIONS; i++) {
        if (word_is(p, len, versions[i].name))
            return 1u << i;
    }
    return 0;
}

/* Parses a protocols setting into a mask of versions; -1 with a message for a bad word. */
static int protocol_mask(const char *prefix, const char *list, unsigned *mask, char *err,
                         size_t errlen)
{
    *mask = 0;
    for (const char *p = list + strspn(list, SEPARATORS); *p != '\0'; p += strspn(p, SEPARATORS)) {
        size_t len = strcspn(p, SEPARATORS);
        unsigned m = protocol_word_mask(p, len);
        if (m == 0) {
            set_error(err, errlen,
                      "%s_protocols \"%s\": unknown protocol \"%.*s\" (expected tlsv1.0, "
                      "tlsv1.1, tlsv1.2, tlsv1.3, secure, all or legacy)",
                      prefix, list, (int)len, p);
            return -1;
        }
        *mask |= m;
        p += len;
    }
    if (*mask == 0)
        *mask = MASK_SECURE;
    return 0;
}

/* Restricts ctx to the versions of a protocols setting. */
static int apply_protocols(SSL_CTX *ctx, const char *prefix, const char *list, char *err,
                           size_t errlen)
{
    unsigned mask = MASK_SECURE;
    if (given(list) && protocol_mask(prefix, list, &mask, err, errlen) < 0)
        return -1;
    size_t lo = 0, hi = N_VERSIONS - 1;
    while (!(mask & (1u << lo)))
        lo++;
    while (!(mask & (1u << hi)))
        hi--;
    for (size_t i = lo; i < hi; i++) {
        if (!(mask & (1u << i)))
            SSL_CTX_set_options(ctx, version_off[i]);
    }
    if (!SSL_CTX_set_min_proto_version(ctx, versions[lo].version) ||
        !SSL_CTX_set_max_proto_version(ctx, versions[hi].version)) {
        char why[256];
        set_error(err, errlen, "%s_protocols \"%s\": %s", prefix, list,
                  openssl_reason(why, sizeof(why), true));
        return -1;
    }
    return 0;
}

/* Sets the TLS 1.2 cipher list of a ciphers setting. */
static int apply_ciphers(SSL_CTX *ctx, const char *prefix, const char *setting, char *err,
                         size_t errlen)
{
    const char *list = given(setting) ? setting : "default";
    for (size_t i = 0; i < sizeof(cipher_words) / sizeof(cipher_words[0]); i++) {
        if (strcmp(list, cipher_words[i].word) == 0) {
            list = cipher_words[i].list;
            break;
        }
    }
    if (!SSL_CTX_set_cipher_list(ctx, list)) {
        char why[256];
        set_error(err, errlen, "%s_ciphers \"%s\": %s", prefix, setting,
                  openssl_reason(why, sizeof(why), true));
        return -1;
    }
    return 0;
}

/* A context with what both roles share: options, modes, protocols and ciphers. */
static SSL_CTX *context_new(const SSL_METHOD *method, const tls_settings_t *s, const char *prefix,
                            char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL) {
        char why[256];
        set_error(err, errlen, "%s: cannot create a TLS context: %s", prefix,
                  openssl_reason(why, sizeof(why), true));
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /*
     * Partial writes let tls_write return after each record instead of holding on to the
     * caller's buffer, which may move before the retry. Released buffers keep the memory of an
     * idle connection to its SSL object.
     */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* Read ahead: one read takes what the socket has, not a record header and then its body
     * (and an EAGAIN); tls_pending tells the caller what is left in OpenSSL's buffer. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (apply_protocols(ctx, prefix, s->protocols, err, errlen) < 0 ||
        apply_ciphers(ctx, prefix, s->ciphers, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Loads cert_file and key_file, which must both be given and match. */
static int load_keypair(SSL_CTX *ctx, const tls_settings_t *s, const char *prefix, char *err,
                        size_t errlen)
{
    char why[256];
    if (SSL_CTX_use_certificate_chain_file(ctx, s->cert_file) != 1) {
        set_error(err, errlen, "%s_cert_file %s: cannot load: %s", prefix, s->cert_file,
                  openssl_reason(why, sizeof(why), true));
        return -1;
    }
    /* OpenSSL checks the key against the certificate loaded before it. */
    if (SSL_CTX_use_PrivateKey_file(ctx, s->key_file, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_error();
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            set_error(err, errlen, "%s_key_file %s: does not match %s_cert_file %s", prefix,
                      s->key_file, prefix, s->cert_file);
        else
            set_error(err, errlen, "%s_key_file %s: cannot load: %s", prefix, s->key_file,
                      openssl_reason(why, sizeof(why), true));
        ERR_clear_error();
        return -1;
    }
    return 0;
}

/* Trusts the certificates of ca_file for verifying peers. */
static int load_ca(SSL_CTX *ctx, const tls_settings_t *s, const char *prefix, char *err,
                   size_t errlen)
{
    if (SSL_CTX_load_verify_locations(ctx, s->ca_file, NULL) != 1) {
        char why[256];
        set_error(err, errlen, "%s_ca_file %s: cannot load: %s", prefix, s->ca_file,
                  openssl_reason(why, sizeof(why), true));
        return -1;
    }
    return 0;
}

/*
 * Makes a server context ask clients for certificates signed by ca_file (required ones when
 * required is set), naming those CAs in the request so that clients pick the right one.
 */
static int request_client_certificates(SSL_CTX *ctx, const tls_settings_t *s, bool required,
                                       char *err, size_t errlen)
{
    if (load_ca(ctx, s, "client_tls", err, errlen) < 0)
        return -1;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->ca_file);
    if (names == NULL) {
        char why[256];
        set_error(err, errlen, "client_tls_ca_file %s: no certificate names: %s", s->ca_file,
                  openssl_reason(why, sizeof(why), true));
        return -1;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (required ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                       NULL);
    return 0;
}

SSL_CTX *tls_server_context(const tls_settings_t *s, char *err, size_t errlen)
{
    const char *mode = tls_mode_name(s->mode);
    if (s->mode != TLS_DISABLE && (!given(s->cert_file) || !given(s->key_file))) {
        set_error(err, errlen,
                  "client_tls_sslmode %s needs client_tls_cert_file and client_tls_key_file", mode);
        return NULL;
    }
    if (s->mode >= TLS_VERIFY_CA && !given(s->ca_file)) {
        set_error(err, errlen, "client_tls_sslmode %s needs client_tls_ca_file", mode);
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = context_new(TLS_server_method(), s, "client_tls", err, errlen);
    if (ctx == NULL)
        return NULL;
    /* No tickets either in TLS 1.3, where SSL_OP_NO_TICKET alone still sends stateful ones. */
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if ((given(s->cert_file) && given(s->key_file) &&
         load_keypair(ctx, s, "client_tls", err, errlen) < 0) ||
        (given(s->ca_file) &&
         request_client_certificates(ctx, s, s->mode >= TLS_VERIFY_CA, err, errlen) < 0)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *tls_client_context(const tls_settings_t *s, char *err, size_t errlen)
{
    if (given(s->cert_file) != given(s->key_file)) {
        set_error(err, errlen, "server_tls_cert_file and server_tls_key_file go together");
        return NULL;
    }
    if (s->mode >= TLS_VERIFY_CA && !given(s->ca_file)) {
        set_error(err, errlen, "server_tls_sslmode %s needs server_tls_ca_file",
                  tls_mode_name(s->mode));
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = context_new(TLS_client_method(), s, "server_tls", err, errlen);
    if (ctx == NULL)
        return NULL;
    if ((given(s->cert_file) && load_keypair(ctx, s, "server_tls", err, errlen) < 0) ||
        (s->mode >= TLS_VERIFY_CA && load_ca(ctx, s, "server_tls", err, errlen) < 0)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, s->mode >= TLS_VERIFY_CA ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    return ctx;
}

void tls_context_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

/* A connection on fd, or NULL (with the error queue emptied). */
static SSL *connection_new(SSL_CTX *ctx, int fd)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    return ssl;
}

SSL *tls_accept_new(SSL_CTX *ctx, int fd)
{
    SSL *ssl = connection_new(ctx, fd);
    if (ssl != NULL)
        SSL_set_accept_state(ssl);
    return ssl;
}

static bool is_address(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/* Sends host as SNI when it is a name, and requires the certificate to name it if full. */
static bool set_host(SSL *ssl, const char *host, bool full)
{
    if (!given(host))
        return !full;
    if (is_address(host))
        return !full || X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    if (SSL_set_tlsext_host_name(ssl, host) != 1)
        return false;
    if (!full)
        return true;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(ssl, host) == 1;
}

SSL *tls_connect_new(SSL_CTX *ctx, int fd, const char *host, tls_mode_t mode)
{
    SSL *ssl = connection_new(ctx, fd);
    if (ssl == NULL)
        return NULL;
    if (!set_host(ssl, host, mode == TLS_VERIFY_FULL)) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

/* Explains a failed certificate check of the peer's certificate. */
static void verify_error(SSL *ssl, long result, char *err, size_t errlen)
{
    const char *whose = SSL_is_server(ssl) ? "client" : "server";
    const char *host = X509_VERIFY_PARAM_get0_host(SSL_get0_param(ssl), 0);
    if (result == X509_V_ERR_HOSTNAME_MISMATCH && host != NULL)
        set_error(err, errlen, "%s certificate verify failed: hostname mismatch: \"%s\"", whose,
                  host);
    else
        set_error(err, errlen, "%s certificate verify failed: %s", whose,
                  X509_verify_cert_error_string(result));
}

/*
 * Whether a failed step (SSL_get_error's code, the errno it left, the oldest queued error e)
 * met the end of the stream: a close_notify, or the socket closed without one, which OpenSSL 3
 * reports as an error and OpenSSL 1.1 as a system error with no errno.
 */
static bool end_of_stream(int code, int saved_errno, unsigned long e)
{
    return code == SSL_ERROR_ZERO_RETURN || (code == SSL_ERROR_SYSCALL && saved_errno == 0) ||
           (code == SSL_ERROR_SSL && ERR_GET_LIB(e) == ERR_LIB_SSL &&
            ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
}

/*
 * Whether a failed step saw the peer go away. Whether that shows as the end of the stream, a
 * reset or a broken pipe depends only on timing (on whether the peer had unread data when it
 * closed), so they are one case.
 */
static bool peer_closed(int code, int saved_errno, unsigned long e)
{
    return end_of_stream(code, saved_errno, e) ||
           (code == SSL_ERROR_SYSCALL && (saved_errno == ECONNRESET || saved_errno == EPIPE));
}

/* Explains a failed handshake step, from SSL_get_error's code and the errno it left. */
static void handshake_error(SSL *ssl, int code, int saved_errno, char *err, size_t errlen)
{
    unsigned long e = ERR_peek_error();
    char why[256];
    if (peer_closed(code, saved_errno, e))
        set_error(err, errlen, PEER_CLOSED);
    else if (code == SSL_ERROR_SYSCALL)
        set_error(err, errlen, "TLS handshake: %s", strerror(saved_errno));
    else if (ERR_GET_LIB(e) == ERR_LIB_SSL &&
             ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
             SSL_get_verify_result(ssl) != X509_V_OK)
        verify_error(ssl, SSL_get_verify_result(ssl), err, errlen);
    else
        set_error(err, errlen, "%s", openssl_reason(why, sizeof(why), false));
    ERR_clear_error();
}

int tls_handshake(SSL *ssl, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(ssl);
    int saved_errno = errno;
    if (r == 1)
        return TLS_DONE;
    int code = SSL_get_error(ssl, r);
    if (code == SSL_ERROR_WANT_READ)
        return TLS_WANT_READ;
    if (code == SSL_ERROR_WANT_WRITE)
        return TLS_WANT_WRITE;
    handshake_error(ssl, code, saved_errno, err, errlen);
    return TLS_FAILED;
}

/* The length OpenSSL's int-sized calls take for n bytes. */
static int io_len(size_t n)
{
    return n > INT_MAX ? INT_MAX : (int)n;
}

/*
 * Maps a failed SSL_read or SSL_write (result r, errno saved_errno) to NET_AGAIN, 0 for the
 * end of the stream when reading, or NET_ERROR; empties the error queue.
 */
static ssize_t io_result(SSL *ssl, int r, int saved_errno, bool reading)
{
    int code = SSL_get_error(ssl, r);
    unsigned long e = ERR_peek_error();
    ERR_clear_error();
    if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE)
        return NET_AGAIN;
    return reading && end_of_stream(code, saved_errno, e) ? 0 : NET_ERROR;
}

ssize_t tls_read(SSL *ssl, void *p, size_t n)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(ssl, p, io_len(n));
    if (r > 0)
        return r;
    return io_result(ssl, r, errno, true);
}

ssize_t tls_write(SSL *ssl, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(ssl, p, io_len(n));
    if (r > 0)
        return r;
    return io_result(ssl, r, errno, false);
}

int tls_pending(const SSL *ssl)
{
    return SSL_has_pending(ssl);
}

void tls_free(SSL *ssl)
{
    SSL_free(ssl);
}

int tls_peer_common_name(SSL *ssl, char *out, size_t outlen)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (cert == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return -1;
    X509_NAME *subject = X509_get_subject_name(cert);
    int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i < 0)
        return -1;
    unsigned char *cn = NULL;
    int len = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
    int rc = -1;
    if (len >= 0 && (size_t)len < outlen && memchr(cn, '\0', (size_t)len) == NULL) {
        memcpy(out, cn, (size_t)len);
        out[len] = '\0';
        rc = 0;
    }
    OPENSSL_free(cn);
    ERR_clear_error();
    return rc;
}

const char *tls_version_name(const SSL *ssl)
{
    return SSL_get_version(ssl);
}

const char *tls_cipher_name(const SSL *ssl)
{
    return SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
}
