/*
 * scram.h
 *    SCRAM-SHA-256 (RFC 5802, RFC 7677), both sides: the client side, as pgturbo uses it to
 *    log in to PostgreSQL with a password or, in pass-through, with the keys of a client it
 *    has verified; the server side, as it uses it to verify its own clients against a stored
 *    verifier; and the md5 password hash PostgreSQL's md5 method asks for.
 *
 * Pure functions over strings, on OpenSSL's primitives (PBKDF2, HMAC, SHA-256). Channel
 * binding is not used: the client sends "n,,", the server does not offer SCRAM-SHA-256-PLUS.
 * Passwords are used as given: PostgreSQL applies SASLprep, which leaves ASCII passwords
 * unchanged.
 *
 * Pass-through (what PgBouncer does since 1.14): a verified client's proof yields its
 * ClientKey; with it and the verifier's ServerKey, pgturbo can log in to a server that holds
 * the same verifier without ever knowing the password.
 */
#ifndef PGTURBO_SCRAM_H
#define PGTURBO_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_NONCE_LEN   24   /* random bytes, sent base64-encoded */
#define SCRAM_MESSAGE_MAX 1024 /* longest SCRAM message accepted or built */
#define SCRAM_KEY_LEN     32
#define SCRAM_BAD_PROOF   (-2) /* scram_server_final: the client does not know the password */

/*
 * A stored SCRAM verifier, as in pg_authid.rolpassword and PgBouncer's auth_file:
 * "SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>".
 */
typedef struct scram_secret {
    int iterations;
    uint8_t salt[64];
    int salt_len;
    uint8_t stored_key[SCRAM_KEY_LEN]; /* H(ClientKey): checks a client's proof */
    uint8_t server_key[SCRAM_KEY_LEN]; /* signs the server-final message */
} scram_secret_t;

/* The state of a client's exchange: what the client side sent and the key that checks the
 * server's signature. */
typedef struct scram_client {
    char client_first_bare[SCRAM_MESSAGE_MAX]; /* "n=user,r=nonce" */
    char nonce[64];
    uint8_t server_key[SCRAM_KEY_LEN];
    char auth_message[3 * SCRAM_MESSAGE_MAX];
} scram_client_t;

/* The state of the server's exchange with one client. */
typedef struct scram_server {
    scram_secret_t secret;                     /* the verifier the client must prove */
    char gs2_header[8];                        /* "n,," or "y,,", as the client sent it */
    char client_first_bare[SCRAM_MESSAGE_MAX]; /* "n=user,r=client nonce[,extensions]" */
    char server_first[SCRAM_MESSAGE_MAX];      /* "r=nonce,s=salt,i=iterations" */
    char nonce[SCRAM_MESSAGE_MAX];             /* client's + server's; empty once it is over */
    uint8_t client_key[SCRAM_KEY_LEN];         /* the client's ClientKey, after a good proof */
} scram_server_t;

/*
 * Reads a verifier string into *out. Returns 0, or -1 (with *out zeroed) when s is not a
 * well-formed SCRAM-SHA-256 verifier: wrong prefix, an iteration count out of range, bad
 * base64, a salt of more than 64 bytes, or keys that are not SCRAM_KEY_LEN bytes long.
 */
__attribute__((warn_unused_result)) int scram_secret_parse(const char *s, scram_secret_t *out);

/*
 * Derives the verifier of a plain password with a random 16-byte salt and 4096 iterations,
 * PostgreSQL's defaults. Returns 0, or -1 when OpenSSL fails.
 */
__attribute__((warn_unused_result)) int scram_secret_from_password(const char *password,
                                                                   scram_secret_t *out);

/*
 * Like scram_secret_from_password, with the given salt (1 to 64 bytes) instead of a random
 * one. Returns 0, or -1 when the salt length is out of range or OpenSSL fails.
 */
__attribute__((warn_unused_result)) int scram_secret_from_password_salt(const char *password,
                                                                        const uint8_t *salt,
                                                                        int salt_len,
                                                                        scram_secret_t *out);

/*
 * Makes the fake verifier of a user that does not exist, so that the exchange looks the same
 * as for a real one and fails only at the proof (PostgreSQL's scram_mock_salt): the salt is
 * SHA-256(user || mock_key) cut to 16 bytes, so a user always sees the same one; 4096
 * iterations; keys derived from the same hash, which no proof matches. mock_key is a random
 * secret the caller draws once per process and keeps.
 */
void scram_secret_mock(const char *user, const uint8_t mock_key[SCRAM_KEY_LEN],
                       scram_secret_t *out);

/*
 * Starts an exchange: writes the client-first message ("n,,n=user,r=nonce") into out.
 * nonce is the client nonce to use (printable, no comma), or NULL for a random one.
 * Returns the message length, or -1 when it does not fit or randomness fails.
 */
__attribute__((warn_unused_result)) int scram_client_first(scram_client_t *sc, const char *user,
                                                           const char *nonce, char *out,
                                                           size_t outlen);

/*
 * Answers the server-first message ("r=...,s=...,i=...") with the client-final message
 * ("c=biws,r=...,p=proof") in out. Returns its length, or -1 with a reason in *why when the
 * server's message is malformed, its nonce does not extend ours, or the iteration count is
 * out of range.
 */
__attribute__((warn_unused_result)) int scram_client_final(scram_client_t *sc, const char *password,
                                                           const char *server_first, char *out,
                                                           size_t outlen, const char **why);

/*
 * Pass-through: like scram_client_final, but proves the keys of a verifier instead of a
 * password: proof = client_key XOR HMAC(H(client_key), AuthMessage), and scram_client_verify
 * then checks the server's signature with server_key. The salt and iteration count the server
 * sends are checked for form but not used: when they are not the ones the keys came from, the
 * server holds another verifier and refuses the proof.
 */
__attribute__((warn_unused_result)) int
scram_client_final_keys(scram_client_t *sc, const uint8_t client_key[SCRAM_KEY_LEN],
                        const uint8_t server_key[SCRAM_KEY_LEN], const char *server_first,
                        char *out, size_t outlen, const char **why);

/* Checks the server-final message ("v=signature"): true when the server knew the password. */
__attribute__((warn_unused_result)) bool scram_client_verify(const scram_client_t *sc,
                                                             const char *server_final);

/*
 * Starts the server's side of an exchange: reads the client-first message (the data of
 * SASLInitialResponse, len bytes, not NUL-terminated) and writes the server-first message
 * ("r=<client nonce><server nonce>,s=<salt>,i=<iterations>") into out. Copies *secret.
 *
 * Accepts the gs2 headers "n,," and "y,," (the client could bind the channel but thinks we
 * cannot: right, we offer no SCRAM-SHA-256-PLUS). Refuses channel binding ("p=..."), an
 * authorization identity other than an empty one, mandatory extensions ("m=") and a nonce
 * that is empty or holds other than printable ASCII. The user name ("n=") is ignored, as
 * PostgreSQL does: the one of the startup packet counts. Returns the length of the message,
 * or -1 with a static reason in *why.
 */
__attribute__((warn_unused_result)) int
scram_server_first(scram_server_t *ss, const scram_secret_t *secret, const char *client_first,
                   size_t len, char *out, size_t outlen, const char **why);

/*
 * Ends the server's side: reads the client-final message ("c=<gs2 header base64>,r=<nonce>,
 * p=<proof>", len bytes, not NUL-terminated) and checks that c= is the gs2 header of the
 * client-first message, that r= is exactly the nonce of the server-first message, and the
 * proof. ss must have gone through a successful scram_server_first; the exchange is over
 * after this call, whatever its result, and a second call fails.
 *
 * Returns the length of the server-final message ("v=<ServerSignature>") written into out,
 * and then ss->client_key holds the client's ClientKey (for scram_client_final_keys);
 * SCRAM_BAD_PROOF when the proof is wrong (a wrong password, or a mock verifier); -1 when the
 * message is malformed or does not match the exchange. *why gets a static reason on both
 * failures. Secrets are compared in constant time.
 */
__attribute__((warn_unused_result)) int scram_server_final(scram_server_t *ss,
                                                           const char *client_final, size_t len,
                                                           char *out, size_t outlen,
                                                           const char **why);

/*
 * Writes PostgreSQL's md5 answer, "md5" + md5hex(md5hex(password + user) + salt), into out
 * (36 bytes with the NUL). Returns 0, or -1 when OpenSSL fails.
 */
__attribute__((warn_unused_result)) int scram_md5_password(const char *user, const char *password,
                                                           const uint8_t salt[4], char out[36]);

/* Writes the md5 secret PostgreSQL stores, "md5" + md5hex(password + user), into out (36
 * bytes with the NUL). Returns 0, or -1 when OpenSSL fails. */
__attribute__((warn_unused_result)) int scram_md5_secret(const char *user, const char *password,
                                                         char out[36]);

/* The md5 answer from a stored md5 secret: "md5" + md5hex(secret without "md5" + salt).
 * Returns 0, or -1 when md5_secret is not "md5" + 32 characters or OpenSSL fails. */
__attribute__((warn_unused_result)) int scram_md5_salted(const char *md5_secret,
                                                         const uint8_t salt[4], char out[36]);

/* Whether a cleartext password is the one a verifier was made from (auth_type plain against a
 * SCRAM secret). */
__attribute__((warn_unused_result)) bool scram_secret_verify_password(const scram_secret_t *secret,
                                                                      const char *password);

#endif /* PGTURBO_SCRAM_H */
