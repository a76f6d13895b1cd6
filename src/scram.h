/*
 * scram.h
 *    SCRAM-SHA-256 (RFC 5802, RFC 7677), the client side, as pgturbo uses it to log in to
 *    PostgreSQL; and the md5 password hash PostgreSQL's md5 method asks for.
 *
 * Pure functions over strings, on OpenSSL's primitives (PBKDF2, HMAC, SHA-256). Channel
 * binding is not used ("n,,"). Passwords are used as given: PostgreSQL applies SASLprep,
 * which leaves ASCII passwords unchanged.
 */
#ifndef PGTURBO_SCRAM_H
#define PGTURBO_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_NONCE_LEN   24   /* random bytes, sent base64-encoded */
#define SCRAM_MESSAGE_MAX 1024 /* longest SCRAM message accepted or built */
#define SCRAM_KEY_LEN     32

typedef struct scram_client {
    char client_first_bare[SCRAM_MESSAGE_MAX]; /* "n=user,r=nonce" */
    char nonce[64];
    uint8_t server_key[SCRAM_KEY_LEN];
    char auth_message[3 * SCRAM_MESSAGE_MAX];
} scram_client_t;

/*
 * Starts an exchange: writes the client-first message ("n,,n=user,r=nonce") into out.
 * nonce is the client nonce to use (printable, no comma), or NULL for a random one.
 * Returns the message length, or -1 when it does not fit or randomness fails.
 */
int scram_client_first(scram_client_t *sc, const char *user, const char *nonce, char *out,
                       size_t outlen);

/*
 * Answers the server-first message ("r=...,s=...,i=...") with the client-final message
 * ("c=biws,r=...,p=proof") in out. Returns its length, or -1 with a reason in *why when the
 * server's message is malformed, its nonce does not extend ours, or the iteration count is
 * out of range.
 */
int scram_client_final(scram_client_t *sc, const char *password, const char *server_first,
                       char *out, size_t outlen, const char **why);

/* Checks the server-final message ("v=signature"): true when the server knew the password. */
bool scram_client_verify(const scram_client_t *sc, const char *server_final);

/*
 * Writes PostgreSQL's md5 answer, "md5" + md5hex(md5hex(password + user) + salt), into out
 * (36 bytes with the NUL). Returns 0, or -1 when OpenSSL fails.
 */
int scram_md5_password(const char *user, const char *password, const uint8_t salt[4], char out[36]);

#endif /* PGTURBO_SCRAM_H */
