/*
 * auth.h
 *    Client authentication: which method a login must pass (auth_type, or the first matching
 *    line of auth_hba_file), the secret it is checked against (auth_file, or auth_query run as
 *    auth_user), and the exchange itself: cleartext password, md5, SCRAM-SHA-256 or a TLS
 *    client certificate.
 *
 * A login that names an unknown user goes through the same exchange as one with a wrong
 * password (SCRAM with a made-up verifier, md5 with a real salt) and fails the same way, with
 * 28P01 at the end, so that the answer does not tell which users exist.
 */
#ifndef PGTURBO_AUTH_H
#define PGTURBO_AUTH_H

#include "proto.h"
#include "scram.h"

#include <stdbool.h>
#include <stdint.h>

struct authquery_request;
struct client;

/* The longest message accepted from a client while it authenticates. */
#define AUTH_MESSAGE_MAX 8192

typedef enum auth_result {
    AUTH_WAIT,   /* the exchange goes on: more messages (or the auth_query answer) to come */
    AUTH_OK,     /* the client proved who it is; call client_authenticated() */
    AUTH_CLOSED, /* the client failed and was closed with an error */
} auth_result_t;

/* Starts authenticating c after its startup packet (c->user, c->database set). */
auth_result_t auth_begin(struct client *c);

/* Handles one 'p' message (password, SASLInitialResponse, SASLResponse) of c. */
auth_result_t auth_handle(struct client *c, const proto_msg_t *m);

/*
 * After a successful SCRAM login with a stored verifier: the ClientKey the client proved and
 * the verifier's ServerKey, with which pgturbo can log in to PostgreSQL as that user without
 * knowing the password. False when the login gave none.
 */
bool auth_scram_keys(const struct client *c, uint8_t client_key[SCRAM_KEY_LEN],
                     uint8_t server_key[SCRAM_KEY_LEN]);

/* The auth_query answer for c arrived (in c's worker): the exchange starts, or c fails. */
void auth_lookup_done(struct client *c, const struct authquery_request *req);

/* Frees c's exchange state; a no-op when there is none. */
void auth_free(struct client *c);

#endif /* PGTURBO_AUTH_H */
