/*
 * scram.c
 *    SCRAM-SHA-256, client and server sides, and PostgreSQL's md5 hash; see scram.h.
 *
 * Both sides parse what the other sends with the same few helpers: attributes are read in
 * order ("k=value" up to the next comma), base64 is decoded strictly (the alphabet, padding
 * only at the end), and the AuthMessage both sides sign is built in one place. The server
 * copies a client's message, which is not NUL-terminated, into a string before reading it.
 */
#include "scram.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITERATIONS     10000000
#define DEFAULT_ITERATIONS 4096 /* PostgreSQL's scram_iterations */
#define DEFAULT_SALT_LEN   16   /* PostgreSQL's SCRAM_DEFAULT_SALT_LEN */

static const char secret_prefix[] = "SCRAM-SHA-256$";

static int base64_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    if (n > SCRAM_MESSAGE_MAX || outlen < 4 * ((n + 2) / 3) + 1)
        return -1;
    return EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Decodes base64 into out, which holds outlen bytes; returns the decoded length, or -1 when
 * in is not base64 (EVP_DecodeBlock alone would let blanks and misplaced '=' through) or its
 * data does not fit. */
static int base64_decode(const char *in, size_t n, uint8_t *out, size_t outlen)
{
    uint8_t data[SCRAM_MESSAGE_MAX];
    if (n == 0 || n % 4 != 0 || 3 * (n / 4) > sizeof(data))
        return -1;
    for (size_t i = 0; i < n; i++) {
        bool padding = in[i] == '=' && (i == n - 1 || (i == n - 2 && in[n - 1] == '='));
        if (!isalnum((unsigned char)in[i]) && in[i] != '+' && in[i] != '/' && !padding)
            return -1;
    }
    int len = EVP_DecodeBlock(data, (const unsigned char *)in, (int)n);
    if (len < 0)
        return -1;
    len -= (in[n - 1] == '=') + (in[n - 2] == '=');
    if ((size_t)len > outlen)
        return -1;
    memcpy(out, data, (size_t)len);
    return len;
}

/* Decodes the base64 of a key, which must be SCRAM_KEY_LEN bytes long. */
static bool base64_decode_key(const char *in, size_t n, uint8_t out[SCRAM_KEY_LEN])
{
    return base64_decode(in, n, out, SCRAM_KEY_LEN) == SCRAM_KEY_LEN;
}

static bool hmac(const uint8_t *key, size_t keylen, const void *data, size_t n,
                 uint8_t out[SCRAM_KEY_LEN])
{
    unsigned int len = SCRAM_KEY_LEN;
    return HMAC(EVP_sha256(), key, (int)keylen, data, n, out, &len) != NULL;
}

/* Hashes a || b with md into out, which holds md's digest; false when OpenSSL fails. */
static bool digest(const EVP_MD *md, const void *a, size_t an, const void *b, size_t bn,
                   uint8_t *out)
{
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx != NULL && EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
              EVP_DigestUpdate(ctx, a, an) == 1 && EVP_DigestUpdate(ctx, b, bn) == 1 &&
              EVP_DigestFinal_ex(ctx, out, &len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* Computes the keys of a password: SaltedPassword = PBKDF2(password, salt, iterations),
 * ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = H(ClientKey), ServerKey =
 * HMAC(SaltedPassword, "Server Key"). */
static bool derive_keys(const char *password, const uint8_t *salt, int salt_len, int iterations,
                        uint8_t client_key[SCRAM_KEY_LEN], uint8_t stored_key[SCRAM_KEY_LEN],
                        uint8_t server_key[SCRAM_KEY_LEN])
{
    uint8_t salted[SCRAM_KEY_LEN];
    bool ok = PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, salt_len, iterations,
                                EVP_sha256(), SCRAM_KEY_LEN, salted) == 1 &&
              hmac(salted, sizeof(salted), "Client Key", 10, client_key) &&
              hmac(salted, sizeof(salted), "Server Key", 10, server_key) &&
              SHA256(client_key, SCRAM_KEY_LEN, stored_key) != NULL;
    OPENSSL_cleanse(salted, sizeof(salted));
    return ok;
}

/* out = in XOR HMAC(StoredKey, AuthMessage): the proof from the ClientKey on the client's
 * side, and the ClientKey back from the proof on the server's. */
static bool xor_signature(const uint8_t stored_key[SCRAM_KEY_LEN], const char *auth_message,
                          size_t n, const uint8_t in[SCRAM_KEY_LEN], uint8_t out[SCRAM_KEY_LEN])
{
    uint8_t signature[SCRAM_KEY_LEN];
    if (!hmac(stored_key, SCRAM_KEY_LEN, auth_message, n, signature))
        return false;
    for (int i = 0; i < SCRAM_KEY_LEN; i++)
        out[i] = in[i] ^ signature[i];
    return true;
}

/* Builds AuthMessage = client-first-bare "," server-first "," client-final-without-proof,
 * the last one final_len bytes long; returns its length, or -1 when it does not fit. */
static int auth_message(char *out, size_t outlen, const char *client_first_bare,
                        const char *server_first, const char *final, size_t final_len)
{
    int n =
        snprintf(out, outlen, "%s,%s,%.*s", client_first_bare, server_first, (int)final_len, final);
    return (n < 0 || (size_t)n >= outlen) ? -1 : n;
}

/* Reads a decimal iteration count of len characters; false unless it is digits only and in
 * 1..MAX_ITERATIONS. */
static bool parse_iterations(const char *s, size_t len, int *out)
{
    long v = 0;
    if (len == 0 || len > 8)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = 10 * v + (s[i] - '0');
    }
    if (v < 1 || v > MAX_ITERATIONS)
        return false;
    *out = (int)v;
    return true;
}

int scram_secret_parse(const char *s, scram_secret_t *out)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL || strncmp(s, secret_prefix, sizeof(secret_prefix) - 1) != 0)
        goto fail;
    /* <iterations>:<salt>$<StoredKey>:<ServerKey>; base64 has neither ':' nor '$'. */
    const char *iter = s + sizeof(secret_prefix) - 1;
    const char *salt = strchr(iter, ':');
    const char *stored = salt ? strchr(salt, '$') : NULL;
    const char *server = stored ? strchr(stored, ':') : NULL;
    if (server == NULL || !parse_iterations(iter, (size_t)(salt - iter), &out->iterations))
        goto fail;
    salt++, stored++, server++;
    out->salt_len = base64_decode(salt, (size_t)(stored - 1 - salt), out->salt, sizeof(out->salt));
    if (out->salt_len <= 0 ||
        !base64_decode_key(stored, (size_t)(server - 1 - stored), out->stored_key) ||
        !base64_decode_key(server, strlen(server), out->server_key))
        goto fail;
    return 0;
fail:
    memset(out, 0, sizeof(*out));
    return -1;
}

int scram_secret_from_password(const char *password, scram_secret_t *out)
{
    uint8_t salt[DEFAULT_SALT_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    return scram_secret_from_password_salt(password, salt, sizeof(salt), out);
}

int scram_secret_from_password_salt(const char *password, const uint8_t *salt, int salt_len,
                                    scram_secret_t *out)
{
    uint8_t client_key[SCRAM_KEY_LEN], copy[sizeof(out->salt)];
    if (salt_len < 1 || (size_t)salt_len > sizeof(copy)) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    memcpy(copy, salt, (size_t)salt_len); /* salt may point into *out */
    memset(out, 0, sizeof(*out));
    out->iterations = DEFAULT_ITERATIONS;
    out->salt_len = salt_len;
    memcpy(out->salt, copy, (size_t)salt_len);
    if (!derive_keys(password, out->salt, out->salt_len, out->iterations, client_key,
                     out->stored_key, out->server_key)) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    OPENSSL_cleanse(client_key, sizeof(client_key));
    return 0;
}

void scram_secret_mock(const char *user, const uint8_t mock_key[SCRAM_KEY_LEN], scram_secret_t *out)
{
    /* Should OpenSSL fail, the keys stay zero: no ClientKey hashes to a zero StoredKey
     * either, so the exchange still fails at the proof. */
    uint8_t seed[SCRAM_KEY_LEN] = {0};
    memset(out, 0, sizeof(*out));
    out->iterations = DEFAULT_ITERATIONS;
    out->salt_len = DEFAULT_SALT_LEN;
    if (digest(EVP_sha256(), user, strlen(user), mock_key, SCRAM_KEY_LEN, seed) &&
        hmac(seed, sizeof(seed), "Stored Key", 10, out->stored_key))
        (void)hmac(seed, sizeof(seed), "Server Key", 10, out->server_key);
    memcpy(out->salt, seed, DEFAULT_SALT_LEN);
}

int scram_client_first(scram_client_t *sc, const char *user, const char *nonce, char *out,
                       size_t outlen)
{
    memset(sc, 0, sizeof(*sc));
    if (nonce != NULL) {
        if (strlen(nonce) >= sizeof(sc->nonce))
            return -1;
        strcpy(sc->nonce, nonce);
    } else {
        uint8_t raw[SCRAM_NONCE_LEN];
        if (RAND_bytes(raw, sizeof(raw)) != 1 ||
            base64_encode(raw, sizeof(raw), sc->nonce, sizeof(sc->nonce)) < 0)
            return -1;
    }
    int n = snprintf(sc->client_first_bare, sizeof(sc->client_first_bare), "n=%s,r=%s", user,
                     sc->nonce);
    if (n < 0 || (size_t)n >= sizeof(sc->client_first_bare))
        return -1;
    n = snprintf(out, outlen, "n,,%s", sc->client_first_bare);
    return (n < 0 || (size_t)n >= outlen) ? -1 : n;
}

/* Finds "k=" at the start of a comma-separated attribute in msg; returns its value's start
 * and length through *len, or NULL. */
static const char *attribute(const char *msg, char k, size_t *len)
{
    for (const char *p = msg; p != NULL && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        if (p[0] == k && p[1] == '=') {
            const char *end = strchr(p + 2, ',');
            *len = end ? (size_t)(end - p - 2) : strlen(p + 2);
            return p + 2;
        }
    }
    return NULL;
}

/* What the client takes from a server-first message. */
typedef struct server_first {
    const char *nonce; /* the combined nonce, inside the message */
    size_t nonce_len;
    uint8_t salt[SCRAM_MESSAGE_MAX];
    int salt_len;
    int iterations;
} server_first_t;

/* Reads a server-first message into *sf; false with *why when it is malformed, its nonce does
 * not extend the client's, or its iteration count is out of range. */
static bool read_server_first(const scram_client_t *sc, const char *server_first,
                              server_first_t *sf, const char **why)
{
    size_t salt_len = 0, iter_len = 0;
    const char *salt64 = attribute(server_first, 's', &salt_len);
    const char *iter = attribute(server_first, 'i', &iter_len);
    sf->nonce = attribute(server_first, 'r', &sf->nonce_len);
    *why = "malformed SCRAM server-first message";
    if (sf->nonce == NULL || salt64 == NULL || iter == NULL ||
        strlen(server_first) >= SCRAM_MESSAGE_MAX)
        return false;
    size_t ours = strlen(sc->nonce);
    if (sf->nonce_len <= ours || strncmp(sf->nonce, sc->nonce, ours) != 0) {
        *why = "SCRAM server nonce does not extend the client nonce";
        return false;
    }
    if (!parse_iterations(iter, iter_len, &sf->iterations)) {
        *why = "SCRAM iteration count out of range";
        return false;
    }
    sf->salt_len = base64_decode(salt64, salt_len, sf->salt, sizeof(sf->salt));
    return sf->salt_len > 0;
}

/* Writes the client-final message that proves client_key, and keeps server_key and the
 * AuthMessage for scram_client_verify. */
static int write_client_final(scram_client_t *sc, const uint8_t client_key[SCRAM_KEY_LEN],
                              const uint8_t server_key[SCRAM_KEY_LEN], const char *server_first,
                              const server_first_t *sf, char *out, size_t outlen, const char **why)
{
    uint8_t stored_key[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
    char without_proof[SCRAM_MESSAGE_MAX], proof64[64];
    memcpy(sc->server_key, server_key, SCRAM_KEY_LEN);
    *why = "SCRAM client-final message does not fit";
    int n = snprintf(without_proof, sizeof(without_proof), "c=biws,r=%.*s", (int)sf->nonce_len,
                     sf->nonce);
    if (n < 0 || (size_t)n >= sizeof(without_proof))
        return -1;
    int am = auth_message(sc->auth_message, sizeof(sc->auth_message), sc->client_first_bare,
                          server_first, without_proof, (size_t)n);
    if (am < 0)
        return -1;
    *why = "SCRAM computation failed";
    if (SHA256(client_key, SCRAM_KEY_LEN, stored_key) == NULL ||
        !xor_signature(stored_key, sc->auth_message, (size_t)am, client_key, proof) ||
        base64_encode(proof, sizeof(proof), proof64, sizeof(proof64)) < 0)
        return -1;
    *why = "SCRAM client-final message does not fit";
    n = snprintf(out, outlen, "%s,p=%s", without_proof, proof64);
    return (n < 0 || (size_t)n >= outlen) ? -1 : n;
}

int scram_client_final(scram_client_t *sc, const char *password, const char *server_first,
                       char *out, size_t outlen, const char **why)
{
    server_first_t sf;
    uint8_t client_key[SCRAM_KEY_LEN], stored_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
    if (!read_server_first(sc, server_first, &sf, why))
        return -1;
    if (!derive_keys(password, sf.salt, sf.salt_len, sf.iterations, client_key, stored_key,
                     server_key)) {
        *why = "SCRAM computation failed";
        return -1;
    }
    int n = write_client_final(sc, client_key, server_key, server_first, &sf, out, outlen, why);
    OPENSSL_cleanse(client_key, sizeof(client_key));
    return n;
}

int scram_client_final_keys(scram_client_t *sc, const uint8_t client_key[SCRAM_KEY_LEN],
                            const uint8_t server_key[SCRAM_KEY_LEN], const char *server_first,
                            char *out, size_t outlen, const char **why)
{
    server_first_t sf;
    if (!read_server_first(sc, server_first, &sf, why))
        return -1;
    return write_client_final(sc, client_key, server_key, server_first, &sf, out, outlen, why);
}

bool scram_client_verify(const scram_client_t *sc, const char *server_final)
{
    size_t len;
    const char *v = attribute(server_final, 'v', &len);
    uint8_t expected[SCRAM_KEY_LEN], got[SCRAM_KEY_LEN];
    if (v == NULL || !hmac(sc->server_key, sizeof(sc->server_key), sc->auth_message,
                           strlen(sc->auth_message), expected))
        return false;
    return base64_decode_key(v, len, got) && CRYPTO_memcmp(got, expected, SCRAM_KEY_LEN) == 0;
}

/* Copies a client's message of len bytes into msg as a string; false with *why when it is
 * empty, too long, or holds a NUL. */
static bool copy_message(const char *in, size_t len, char msg[SCRAM_MESSAGE_MAX], const char **why)
{
    if (len >= SCRAM_MESSAGE_MAX) {
        *why = "SCRAM message too long";
        return false;
    }
    if (in == NULL || len == 0 || memchr(in, '\0', len) != NULL)
        return false;
    memcpy(msg, in, len);
    msg[len] = '\0';
    return true;
}

/* Reads the attribute at *p, "k=value" with k a letter and the value running to the next
 * comma or the end, and leaves *p there. Returns the value and stores k and the value's
 * length, or returns NULL when *p does not start an attribute. */
static const char *read_attribute(const char **p, char *name, size_t *len)
{
    const char *s = *p;
    if (!isalpha((unsigned char)s[0]) || s[1] != '=')
        return NULL;
    *name = s[0];
    *len = strcspn(s + 2, ",");
    *p = s + 2 + *len;
    return s + 2;
}

/* Steps over the comma that separates two attributes; false when there is none. */
static bool skip_comma(const char **p)
{
    if (**p != ',')
        return false;
    (*p)++;
    return true;
}

/* True when s (len bytes) is a valid nonce: printable ASCII without a comma. */
static bool printable(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
            return false;
    return len > 0;
}

/* Reads the gs2 header ("n,," or "y,,", with an empty "a=" allowed) at the start of a
 * client-first message; returns its length, or -1 with *why. */
static int read_gs2_header(const char *msg, const char **why)
{
    const char *p = msg;
    if (p[0] == 'p' && p[1] == '=') {
        *why = "SCRAM channel binding is not supported";
        return -1;
    }
    if ((p[0] != 'n' && p[0] != 'y') || p[1] != ',')
        return -1;
    p += 2;
    if (p[0] == 'a' && p[1] == '=') {
        p += 2;
        if (*p != ',') {
            *why = "SCRAM authorization identity is not supported";
            return -1;
        }
    }
    return skip_comma(&p) ? (int)(p - msg) : -1;
}

int scram_server_first(scram_server_t *ss, const scram_secret_t *secret, const char *client_first,
                       size_t len, char *out, size_t outlen, const char **why)
{
    char msg[SCRAM_MESSAGE_MAX], salt64[128], server_nonce[64], name = 0;
    uint8_t raw[SCRAM_NONCE_LEN];
    size_t n = 0;
    memset(ss, 0, sizeof(*ss));
    *why = "malformed SCRAM client-first message";
    if (!copy_message(client_first, len, msg, why))
        goto fail;
    int header = read_gs2_header(msg, why);
    if (header < 0)
        goto fail;
    const char *bare = msg + header, *p = bare;
    if (read_attribute(&p, &name, &n) != NULL && name == 'm') {
        *why = "mandatory SCRAM extensions are not supported";
        goto fail;
    }
    const char *nonce = name == 'n' && skip_comma(&p) ? read_attribute(&p, &name, &n) : NULL;
    if (nonce == NULL || name != 'r')
        goto fail;
    if (!printable(nonce, n)) {
        *why = "SCRAM client nonce is not printable";
        goto fail;
    }
    /* Optional extensions follow; PostgreSQL ignores them too. */
    size_t nonce_len = n;
    while (skip_comma(&p))
        if (read_attribute(&p, &name, &n) == NULL)
            goto fail;

    memcpy(ss->gs2_header, msg, (size_t)header);
    strcpy(ss->client_first_bare, bare);
    ss->secret = *secret;
    *why = "SCRAM computation failed";
    if (secret->salt_len < 1 || (size_t)secret->salt_len > sizeof(secret->salt) ||
        RAND_bytes(raw, sizeof(raw)) != 1 ||
        base64_encode(raw, sizeof(raw), server_nonce, sizeof(server_nonce)) < 0 ||
        base64_encode(secret->salt, (size_t)secret->salt_len, salt64, sizeof(salt64)) < 0)
        goto fail;
    *why = "SCRAM server-first message does not fit";
    int w = snprintf(ss->nonce, sizeof(ss->nonce), "%.*s%s", (int)nonce_len, nonce, server_nonce);
    if (w < 0 || (size_t)w >= sizeof(ss->nonce))
        goto fail;
    w = snprintf(ss->server_first, sizeof(ss->server_first), "r=%s,s=%s,i=%d", ss->nonce, salt64,
                 secret->iterations);
    if (w < 0 || (size_t)w >= sizeof(ss->server_first) || (size_t)w >= outlen)
        goto fail;
    memcpy(out, ss->server_first, (size_t)w + 1);
    return w;
fail:
    ss->nonce[0] = '\0';
    return -1;
}

int scram_server_final(scram_server_t *ss, const char *client_final, size_t len, char *out,
                       size_t outlen, const char **why)
{
    char msg[SCRAM_MESSAGE_MAX], am[3 * SCRAM_MESSAGE_MAX], signature64[64], name = 0;
    uint8_t binding[SCRAM_MESSAGE_MAX], proof[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
    uint8_t stored_key[SCRAM_KEY_LEN], signature[SCRAM_KEY_LEN];
    size_t n = 0, gs2_len = strlen(ss->gs2_header), nonce_len = strlen(ss->nonce);
    int rc = -1;
    *why = "malformed SCRAM client-final message";
    if (nonce_len == 0) {
        *why = "SCRAM client-final message outside an exchange";
        return -1;
    }
    if (!copy_message(client_final, len, msg, why))
        goto done;
    const char *p = msg, *value = read_attribute(&p, &name, &n);
    int binding_len = value && name == 'c' ? base64_decode(value, n, binding, sizeof(binding)) : -1;
    if (binding_len < 0)
        goto done;
    if ((size_t)binding_len != gs2_len || CRYPTO_memcmp(binding, ss->gs2_header, gs2_len) != 0) {
        *why = "SCRAM channel binding does not match the client-first message";
        goto done;
    }
    value = skip_comma(&p) ? read_attribute(&p, &name, &n) : NULL;
    if (value == NULL || name != 'r')
        goto done;
    if (n != nonce_len || CRYPTO_memcmp(value, ss->nonce, n) != 0) {
        *why = "SCRAM nonce does not match the server-first message";
        goto done;
    }
    /* Extensions may come before the proof, which is last and not part of the AuthMessage. */
    size_t without_proof = 0;
    do {
        without_proof = (size_t)(p - msg);
        value = skip_comma(&p) ? read_attribute(&p, &name, &n) : NULL;
    } while (value != NULL && name != 'p');
    if (value == NULL || *p != '\0' || !base64_decode_key(value, n, proof))
        goto done;

    *why = "SCRAM computation failed";
    int am_len =
        auth_message(am, sizeof(am), ss->client_first_bare, ss->server_first, msg, without_proof);
    if (am_len < 0 ||
        !xor_signature(ss->secret.stored_key, am, (size_t)am_len, proof, client_key) ||
        SHA256(client_key, sizeof(client_key), stored_key) == NULL)
        goto done;
    if (CRYPTO_memcmp(stored_key, ss->secret.stored_key, SCRAM_KEY_LEN) != 0) {
        *why = "SCRAM proof does not match the password";
        rc = SCRAM_BAD_PROOF;
        goto done;
    }
    if (!hmac(ss->secret.server_key, SCRAM_KEY_LEN, am, (size_t)am_len, signature) ||
        base64_encode(signature, sizeof(signature), signature64, sizeof(signature64)) < 0)
        goto done;
    *why = "SCRAM server-final message does not fit";
    int w = snprintf(out, outlen, "v=%s", signature64);
    if (w < 0 || (size_t)w >= outlen)
        goto done;
    memcpy(ss->client_key, client_key, SCRAM_KEY_LEN);
    rc = w;
done:
    OPENSSL_cleanse(client_key, sizeof(client_key));
    ss->nonce[0] = '\0'; /* one client-final per exchange */
    return rc;
}

static int md5_hex(const void *a, size_t an, const void *b, size_t bn, char out[33])
{
    uint8_t md[16];
    if (!digest(EVP_md5(), a, an, b, bn, md))
        return -1;
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int scram_md5_secret(const char *user, const char *password, char out[36])
{
    memcpy(out, "md5", 3);
    return md5_hex(password, strlen(password), user, strlen(user), out + 3);
}

int scram_md5_salted(const char *md5_secret, const uint8_t salt[4], char out[36])
{
    if (strlen(md5_secret) != 35 || strncmp(md5_secret, "md5", 3) != 0)
        return -1;
    memcpy(out, "md5", 3);
    return md5_hex(md5_secret + 3, 32, salt, 4, out + 3);
}

int scram_md5_password(const char *user, const char *password, const uint8_t salt[4], char out[36])
{
    char secret[36];
    if (scram_md5_secret(user, password, secret) < 0)
        return -1;
    return scram_md5_salted(secret, salt, out);
}

bool scram_secret_verify_password(const scram_secret_t *secret, const char *password)
{
    uint8_t client_key[SCRAM_KEY_LEN], stored_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
    bool ok = derive_keys(password, secret->salt, secret->salt_len, secret->iterations, client_key,
                          stored_key, server_key) &&
              CRYPTO_memcmp(stored_key, secret->stored_key, SCRAM_KEY_LEN) == 0;
    OPENSSL_cleanse(client_key, sizeof(client_key));
    return ok;
}
