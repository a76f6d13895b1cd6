/*
 * tls.h
 *    TLS on pgturbo's non-blocking sockets, over OpenSSL 3: contexts built from the
 *    client_tls_* and server_tls_* settings, handshakes advanced a step at a time from the event
 *    loop, and reads and writes that report "would block" the way net_read and net_write do.
 *
 * The module knows nothing of PostgreSQL: the caller negotiates TLS first (SSLRequest and its
 * 'S' answer) and only then hands the connected socket to tls_accept_new (pgturbo as the TLS
 * server, facing applications) or tls_connect_new (pgturbo as the TLS client, facing
 * PostgreSQL). Contexts are built once per configuration and shared by every connection made
 * from them; connections belong to the thread that drives them.
 *
 * As PostgreSQL does, contexts turn off session tickets and resumption, compression and
 * renegotiation. OpenSSL reads ahead (one read(2) takes what the socket holds, several records
 * at once), so bytes may wait in OpenSSL's buffer, decrypted or not, while the socket is no
 * longer readable for a level-triggered epoll: tls_pending says so, and the caller reads again
 * until it says no more. OpenSSL writes to the socket with write(2),
 * so the process must block or ignore SIGPIPE.
 */
#ifndef PGTURBO_TLS_H
#define PGTURBO_TLS_H

#include "net.h" /* NET_AGAIN, NET_ERROR */

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/types.h>

/* The sslmode words of libpq and PgBouncer, weakest first. */
typedef enum tls_mode {
    TLS_DISABLE,     /* no TLS */
    TLS_ALLOW,       /* TLS when the other side asks for it */
    TLS_PREFER,      /* TLS when the other side can */
    TLS_REQUIRE,     /* TLS or no connection; certificates are not checked */
    TLS_VERIFY_CA,   /* and the peer's certificate chains to ca_file */
    TLS_VERIFY_FULL, /* and (as a client) the server's certificate names the host */
} tls_mode_t;

/* Reads an sslmode word ("disable" ... "verify-full") into *out: 0, or -1 for another word. */
__attribute__((warn_unused_result)) int tls_mode_parse(const char *word, tls_mode_t *out);

/* The word of a mode, as tls_mode_parse reads it; a static string. */
const char *tls_mode_name(tls_mode_t mode);

/*
 * Settings of one side, as the configuration gives them; borrowed while a context is built.
 * Strings that are NULL or "" are not given.
 */
typedef struct tls_settings {
    tls_mode_t mode;
    const char *cert_file; /* PEM certificate chain, leaf first */
    const char *key_file;  /* PEM private key of cert_file; readable by its owner only */
    const char *ca_file;   /* PEM certificates trusted to sign the peer's certificate */
    /*
     * PgBouncer's syntax: TLS versions "tlsv1.0" ... "tlsv1.3" separated by commas or spaces,
     * and the shortcuts "secure" (tlsv1.2,tlsv1.3: the default), "all" and "legacy" (every
     * version). OpenSSL 3's default security level still refuses TLS 1.0 and 1.1 handshakes.
     */
    const char *protocols;
    /*
     * PgBouncer's words "default" or "secure" (the default: forward-secret AEAD suites),
     * "normal", "fast" and "all", or an OpenSSL cipher list. They choose TLS 1.2 suites only;
     * TLS 1.3 always offers OpenSSL's three default suites.
     */
    const char *ciphers;
} tls_settings_t;

/*
 * Builds the context for accepting applications (pgturbo is the TLS server; the settings are
 * the client_tls_* ones, named so in messages). Unless mode is TLS_DISABLE, cert_file and
 * key_file are required. From TLS_VERIFY_CA up, clients must present a certificate that
 * chains to ca_file, which is then required; below it, a ca_file that is given lets clients
 * present a certificate, which is then verified, but does not require one.
 * Returns the context (caller frees with tls_context_free), or NULL with a message in err, such
 * as "client_tls_key_file /x/y: cannot load: No such file or directory".
 */
__attribute__((warn_unused_result)) SSL_CTX *tls_server_context(const tls_settings_t *s, char *err,
                                                                size_t errlen);

/*
 * Builds the context for connecting to PostgreSQL (pgturbo is the TLS client; the settings
 * are the server_tls_* ones). From TLS_VERIFY_CA up, ca_file is required and the server's
 * chain must lead to it (the host is checked per connection, by tls_connect_new); below it,
 * the server's certificate is not checked. cert_file and key_file, given together or not at
 * all, are the certificate pgturbo presents when PostgreSQL asks for one.
 * Returns the context (caller frees with tls_context_free), or NULL with a message in err.
 */
__attribute__((warn_unused_result)) SSL_CTX *tls_client_context(const tls_settings_t *s, char *err,
                                                                size_t errlen);

/* Frees a context; connections made from it keep their own reference. NULL is allowed. */
void tls_context_free(SSL_CTX *ctx);

/*
 * Starts the server side of TLS on fd, a connected non-blocking socket, which stays the
 * caller's (tls_free does not close it). Borrows ctx. Returns the connection (caller frees with
 * tls_free), or NULL when memory runs out. Nothing is sent until tls_handshake.
 */
__attribute__((warn_unused_result)) SSL *tls_accept_new(SSL_CTX *ctx, int fd);

/*
 * Starts the client side of TLS on fd, like tls_accept_new. host, the name or address that fd
 * is connected to (not NULL; borrowed), goes out as SNI when it is a name; when mode is
 * TLS_VERIFY_FULL, the server's certificate must name it (a DNS name, or for an address an IP
 * subjectAltName). Returns the connection (caller frees with tls_free), or NULL when memory
 * runs out or host is not a usable name.
 */
__attribute__((warn_unused_result)) SSL *tls_connect_new(SSL_CTX *ctx, int fd, const char *host,
                                                         tls_mode_t mode);

/* Results of tls_handshake. */
#define TLS_DONE       0
#define TLS_WANT_READ  1    /* call again when fd is readable */
#define TLS_WANT_WRITE 2    /* call again when fd is writable */
#define TLS_FAILED     (-1) /* the connection is unusable; free it */

/*
 * Advances the handshake as far as the socket allows. On TLS_FAILED err says why: the
 * certificate check that failed ("server certificate verify failed: hostname mismatch:
 * \"db.example.com\"", "client certificate verify failed: unable to get local issuer
 * certificate"), "peer closed the connection during the TLS handshake" (also when it shows as
 * a reset), or OpenSSL's reason ("unsupported protocol", "peer did not return a certificate",
 * "tlsv1 alert unknown ca" ...).
 * In TLS 1.3 the client finishes before the server has checked its certificate: a client
 * certificate the server refuses shows on the client as TLS_DONE, then NET_ERROR on reading.
 */
__attribute__((warn_unused_result)) int tls_handshake(SSL *ssl, char *err, size_t errlen);

/*
 * Reads up to n decrypted bytes into p, once the handshake is done. Returns the bytes read, 0
 * at the end of the stream (close_notify, or the socket closed without one: the PostgreSQL
 * protocol frames its messages, so a truncation shows there), NET_AGAIN when it would block,
 * or NET_ERROR (also when the peer refused the handshake after this end finished it).
 * After a read, more bytes may be waiting in OpenSSL rather than in the socket: read again
 * while tls_pending says so.
 */
__attribute__((warn_unused_result)) ssize_t tls_read(SSL *ssl, void *p, size_t n);

/*
 * Encrypts and sends up to n bytes of p. Returns the bytes taken (at least one TLS record,
 * or all n), NET_AGAIN when it would block, or NET_ERROR. After NET_AGAIN the next write must
 * offer the same bytes again, at least as many, from wherever they now are: a buffer consumed
 * only by what is written, which may grow or move meanwhile, does that by itself.
 */
__attribute__((warn_unused_result)) ssize_t tls_write(SSL *ssl, const void *p, size_t n);

/* Nonzero while OpenSSL holds bytes (records, or a part of one) read from the socket that a
 * tls_read may return without the socket being readable. */
int tls_pending(const SSL *ssl);

/*
 * Frees a connection at once, sending no close_notify and never blocking; fd stays open.
 * NULL is allowed.
 */
void tls_free(SSL *ssl);

/*
 * Writes the subject CN of the peer's certificate into out (for auth_type cert). Returns 0,
 * or -1 when the peer presented no certificate, it was not verified, it has no CN (or one with
 * a NUL byte), or the CN does not fit in outlen.
 */
__attribute__((warn_unused_result)) int tls_peer_common_name(SSL *ssl, char *out, size_t outlen);

/* The protocol version of a connection ("TLSv1.3"); a static string. */
const char *tls_version_name(const SSL *ssl);

/* OpenSSL's name of the cipher in use ("TLS_AES_256_GCM_SHA384"), or "(NONE)"; static. */
const char *tls_cipher_name(const SSL *ssl);

#endif /* PGTURBO_TLS_H */
