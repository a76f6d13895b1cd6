/*
 * auth.c
 *    Client authentication: method choice, secret lookup and the password exchanges; see
 *    auth.h.
 */
#include "auth.h"

#include "authfile.h"
#include "authquery.h"
#include "client.h"
#include "config.h"
#include "hba.h"
#include "log.h"
#include "tls.h"
#include "worker.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SASL_MECHANISM "SCRAM-SHA-256"

typedef enum auth_step {
    STEP_PASSWORD,      /* sent AuthenticationCleartextPassword */
    STEP_MD5,           /* sent AuthenticationMD5Password */
    STEP_SASL_INITIAL,  /* sent AuthenticationSASL; SASLInitialResponse next */
    STEP_SASL_RESPONSE, /* sent the server-first message; the client-final next */
    STEP_DONE,          /* succeeded */
} auth_step_t;

struct auth_state {
    auth_step_t step;
    hba_method_t method;
    authquery_request_t *lookup; /* the auth_query under way, or NULL */
    bool known;                  /* the user has a secret the method can check */
    bool has_keys;               /* a SCRAM login proved the keys below */
    char secret[AUTHFILE_SECRET_MAX + 1];
    uint8_t salt[4];         /* md5 */
    scram_secret_t verifier; /* SCRAM: the user's, or a mock one */
    scram_server_t scram;
    uint8_t client_key[SCRAM_KEY_LEN];
};

/* A per-process secret that makes the mock verifiers of unknown users stable but unguessable. */
static uint8_t mock_key[SCRAM_KEY_LEN];
static pthread_once_t mock_once = PTHREAD_ONCE_INIT;

static void make_mock_key(void)
{
    if (RAND_bytes(mock_key, sizeof(mock_key)) != 1)
        log_error("RAND_bytes failed: mock SCRAM salts are predictable");
}

/* ---- method ---- */

static hba_method_t method_for(const client_t *c)
{
    const config_t *cfg = c->worker->cfg;
    switch (cfg->auth_type) {
    case AUTH_TYPE_TRUST:
        return HBA_TRUST;
    case AUTH_TYPE_PLAIN:
        return HBA_PASSWORD;
    case AUTH_TYPE_MD5:
        return HBA_MD5;
    case AUTH_TYPE_SCRAM:
        return HBA_SCRAM;
    case AUTH_TYPE_CERT:
        return HBA_CERT;
    case AUTH_TYPE_HBA:
        break;
    }
    return hba_match(cfg->hba, false, c->ssl != NULL, &c->addr, c->database, c->user);
}

static auth_result_t fail(client_t *c, const char *sqlstate, const char *message)
{
    client_close(c, sqlstate, message);
    return AUTH_CLOSED;
}

static auth_result_t fail_password(client_t *c)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "password authentication failed for user \"%s\"", c->user);
    return fail(c, "28P01", msg);
}

static auth_result_t check_certificate(client_t *c)
{
    char cn[CONFIG_NAME_LEN];
    if (c->ssl == NULL || tls_peer_common_name(c->ssl, cn, sizeof(cn)) < 0 ||
        strcmp(cn, c->user) != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "certificate authentication failed for user \"%s\"", c->user);
        return fail(c, "28000", msg);
    }
    return AUTH_OK;
}

/* ---- the exchanges ---- */

static auth_result_t send_request(client_t *c, int32_t code, const void *data, size_t n)
{
    if (proto_build_auth_request(&c->out, code, data, n) < 0)
        return fail(c, "53200", "out of memory");
    return client_flush(c) < 0 ? AUTH_CLOSED : AUTH_WAIT;
}

/*
 * The verifier SCRAM checks against: the user's, one derived from a plain secret, or a mock.
 * The one derived from a plain secret has the salt of the mock: a random salt, new for each
 * login, would tell such a user from an unknown one, whose salt stays the same.
 */
static void prepare_verifier(struct auth_state *a, const char *user)
{
    pthread_once(&mock_once, make_mock_key);
    if (a->known) {
        auth_secret_kind_t kind = authfile_secret_kind(a->secret);
        if (kind == AUTH_SECRET_SCRAM && scram_secret_parse(a->secret, &a->verifier) == 0)
            return;
        if (kind == AUTH_SECRET_PLAIN) {
            scram_secret_mock(user, mock_key, &a->verifier);
            if (scram_secret_from_password_salt(a->secret, a->verifier.salt, a->verifier.salt_len,
                                                &a->verifier) == 0)
                return;
        }
        a->known = false; /* an md5 secret cannot check a SCRAM proof */
    }
    scram_secret_mock(user, mock_key, &a->verifier);
}

static auth_result_t start_exchange(client_t *c, hba_method_t method)
{
    struct auth_state *a = c->auth;
    bool scram_secret = a->known && authfile_secret_kind(a->secret) == AUTH_SECRET_SCRAM;
    if (method == HBA_PASSWORD) {
        a->step = STEP_PASSWORD;
        return send_request(c, 3 /* AuthenticationCleartextPassword */, NULL, 0);
    }
    if (method == HBA_MD5 && !scram_secret) {
        if (RAND_bytes(a->salt, sizeof(a->salt)) != 1)
            return fail(c, "53200", "cannot make a random salt");
        a->step = STEP_MD5;
        return send_request(c, 5 /* AuthenticationMD5Password */, a->salt, sizeof(a->salt));
    }
    prepare_verifier(a, c->user);
    a->step = STEP_SASL_INITIAL;
    static const char mechanisms[] = SASL_MECHANISM "\0"; /* the list ends with an empty name */
    return send_request(c, 10 /* AuthenticationSASL */, mechanisms, sizeof(mechanisms));
}

/* Asks auth_query for the user's secret, as auth_user on the client's database. */
static auth_result_t start_lookup(client_t *c)
{
    const config_t *cfg = c->worker->cfg;
    const config_database_t *db = c->db;
    authquery_request_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return fail(c, "53200", "out of memory");
    req->worker = c->worker;
    req->client = c;
    snprintf(req->user, sizeof(req->user), "%s", c->user);
    snprintf(req->host, sizeof(req->host), "%s", db->host);
    req->port = db->port;
    snprintf(req->dbname, sizeof(req->dbname), "%s",
             db->dbname[0] != '\0' ? db->dbname : c->database);
    snprintf(req->auth_user, sizeof(req->auth_user), "%s", cfg->auth_user);
    const char *own = cfg->users != NULL ? authfile_lookup(cfg->users, cfg->auth_user) : NULL;
    bool plain = own != NULL && authfile_secret_kind(own) == AUTH_SECRET_PLAIN;
    snprintf(req->password, sizeof(req->password), "%s", plain ? own : db->password);
    snprintf(req->sslmode, sizeof(req->sslmode), "%s", tls_mode_name(cfg->server_tls.sslmode));
    snprintf(req->sslrootcert, sizeof(req->sslrootcert), "%s", cfg->server_tls.ca_file);
    snprintf(req->query, sizeof(req->query), "%s", cfg->auth_query);
    c->auth->lookup = req;
    authquery_submit(req);
    return AUTH_WAIT;
}

auth_result_t auth_begin(client_t *c)
{
    c->state = CLIENT_AUTH;
    hba_method_t method = method_for(c);
    switch (method) {
    case HBA_TRUST:
        return AUTH_OK;
    case HBA_REJECT: {
        char msg[320];
        snprintf(msg, sizeof(msg),
                 "no auth_hba_file line allows host \"%s\", user \"%s\", database \"%s\", %s",
                 c->peer, c->user, c->database, c->ssl != NULL ? "TLS on" : "TLS off");
        return fail(c, "28000", msg);
    }
    case HBA_CERT:
        return check_certificate(c);
    case HBA_PASSWORD:
    case HBA_MD5:
    case HBA_SCRAM:
        break;
    }
    c->auth = calloc(1, sizeof(*c->auth));
    if (c->auth == NULL)
        return fail(c, "53200", "out of memory");
    c->auth->method = method;
    const config_t *cfg = c->worker->cfg;
    const char *secret = cfg->users != NULL ? authfile_lookup(cfg->users, c->user) : NULL;
    if (secret != NULL) {
        c->auth->known = true;
        snprintf(c->auth->secret, sizeof(c->auth->secret), "%s", secret);
    } else if (cfg->auth_user[0] != '\0' && c->db != NULL) {
        return start_lookup(c);
    }
    return start_exchange(c, method);
}

void auth_lookup_done(client_t *c, const authquery_request_t *req)
{
    struct auth_state *a = c->auth;
    if (a == NULL || a->lookup != req)
        return;
    a->lookup = NULL;
    if (req->error[0] != '\0') {
        fail(c, "28000", "auth_query failed (pgturbo's log says why)");
        return;
    }
    if (req->found) {
        a->known = true;
        snprintf(a->secret, sizeof(a->secret), "%s", req->secret);
    }
    start_exchange(c, a->method);
}

/* Compares two strings in time that depends only on their lengths. */
static bool same_secret(const char *a, const char *b)
{
    size_t n = strlen(a);
    return n == strlen(b) && CRYPTO_memcmp(a, b, n) == 0;
}

/* Checks a cleartext password against any kind of secret. */
static bool password_matches(const struct auth_state *a, const char *user, const char *password)
{
    char md5[36];
    scram_secret_t v;
    switch (authfile_secret_kind(a->secret)) {
    case AUTH_SECRET_PLAIN:
        return same_secret(a->secret, password);
    case AUTH_SECRET_MD5:
        return scram_md5_secret(user, password, md5) == 0 && same_secret(a->secret, md5);
    case AUTH_SECRET_SCRAM:
        return scram_secret_parse(a->secret, &v) == 0 && scram_secret_verify_password(&v, password);
    }
    return false;
}

/* The md5 answer: "md5" + md5hex(md5hex(password + user) + salt), from any secret but SCRAM. */
static bool md5_matches(const struct auth_state *a, const char *user, const char *answer)
{
    char inner[36], expected[36];
    const char *secret = a->secret;
    switch (authfile_secret_kind(secret)) {
    case AUTH_SECRET_PLAIN:
        if (scram_md5_secret(user, secret, inner) < 0)
            return false;
        secret = inner;
        break;
    case AUTH_SECRET_MD5:
        break;
    case AUTH_SECRET_SCRAM:
        return false;
    }
    return scram_md5_salted(secret, a->salt, expected) == 0 && same_secret(expected, answer);
}

/* A PasswordMessage: the string it carries, or NULL when it is malformed. */
static const char *password_of(const proto_msg_t *m)
{
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    const char *p = proto_get_string(&r);
    return proto_reader_done(&r) ? p : NULL;
}

static auth_result_t sasl_initial(client_t *c, const proto_msg_t *m)
{
    struct auth_state *a = c->auth;
    proto_reader_t r;
    proto_reader_init(&r, m->body, m->body_len);
    const char *mechanism = proto_get_string(&r);
    int32_t len = proto_get_int32(&r);
    if (!proto_reader_ok(&r) || len < 0 || (uint32_t)len != r.len - r.pos)
        return fail(c, "08P01", "malformed SASLInitialResponse message");
    if (strcmp(mechanism, SASL_MECHANISM) != 0)
        return fail(c, "28000", "client selected an invalid SASL authentication mechanism");
    const char *why = "malformed SCRAM message";
    char out[SCRAM_MESSAGE_MAX];
    int n = scram_server_first(&a->scram, &a->verifier,
                               (const char *)proto_get_bytes(&r, (uint32_t)len), (size_t)len, out,
                               sizeof(out), &why);
    if (n < 0)
        return fail(c, "08P01", why);
    a->step = STEP_SASL_RESPONSE;
    return send_request(c, 11 /* AuthenticationSASLContinue */, out, (size_t)n);
}

static auth_result_t sasl_response(client_t *c, const proto_msg_t *m)
{
    struct auth_state *a = c->auth;
    const char *why = "malformed SCRAM message";
    char out[SCRAM_MESSAGE_MAX];
    int n =
        scram_server_final(&a->scram, (const char *)m->body, m->body_len, out, sizeof(out), &why);
    if (n == SCRAM_BAD_PROOF || (n >= 0 && !a->known))
        return fail_password(c);
    if (n < 0)
        return fail(c, "08P01", why);
    if (authfile_secret_kind(a->secret) == AUTH_SECRET_SCRAM) {
        memcpy(a->client_key, a->scram.client_key, SCRAM_KEY_LEN);
        a->has_keys = true;
    }
    a->step = STEP_DONE;
    if (proto_build_auth_request(&c->out, 12 /* AuthenticationSASLFinal */, out, (size_t)n) < 0)
        return fail(c, "53200", "out of memory");
    return AUTH_OK; /* AuthenticationOk follows with the welcome */
}

auth_result_t auth_handle(client_t *c, const proto_msg_t *m)
{
    struct auth_state *a = c->auth;
    const char *password;
    if (a == NULL)
        return fail(c, "08P01", "unexpected password message");
    switch (a->step) {
    case STEP_PASSWORD:
    case STEP_MD5:
        password = password_of(m);
        if (password == NULL)
            return fail(c, "08P01", "malformed password message");
        if (!a->known || !(a->step == STEP_PASSWORD ? password_matches(a, c->user, password)
                                                    : md5_matches(a, c->user, password)))
            return fail_password(c);
        a->step = STEP_DONE;
        return AUTH_OK;
    case STEP_SASL_INITIAL:
        return sasl_initial(c, m);
    case STEP_SASL_RESPONSE:
        return sasl_response(c, m);
    case STEP_DONE:
        break;
    }
    return fail(c, "08P01", "unexpected password message");
}

bool auth_scram_keys(const client_t *c, uint8_t client_key[SCRAM_KEY_LEN],
                     uint8_t server_key[SCRAM_KEY_LEN])
{
    const struct auth_state *a = c->auth;
    if (a == NULL || !a->has_keys)
        return false;
    memcpy(client_key, a->client_key, SCRAM_KEY_LEN);
    memcpy(server_key, a->verifier.server_key, SCRAM_KEY_LEN);
    return true;
}

void auth_free(client_t *c)
{
    if (c->auth == NULL)
        return;
    if (c->auth->lookup != NULL)
        c->auth->lookup->client = NULL; /* the answer finds no one */
    OPENSSL_cleanse(c->auth, sizeof(*c->auth));
    free(c->auth);
    c->auth = NULL;
}
