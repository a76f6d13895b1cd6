/*
 * scram.c
 *    SCRAM-SHA-256 client and PostgreSQL's md5 hash; see scram.h.
 */
#include "scram.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITERATIONS 10000000

static int base64_encode(const uint8_t *in, size_t n, char *out, size_t outlen)
{
    if (outlen < 4 * ((n + 2) / 3) + 1)
        return -1;
    return EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Decodes base64 into out; returns the decoded length or -1. */
static int base64_decode(const char *in, size_t n, uint8_t *out, size_t outlen)
{
    if (n == 0 || n % 4 != 0 || outlen < 3 * (n / 4))
        return -1;
    int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (len < 0)
        return -1;
    if (in[n - 1] == '=')
        len--;
    if (in[n - 2] == '=')
        len--;
    return len;
}

static bool hmac(const uint8_t *key, size_t keylen, const void *data, size_t n,
                 uint8_t out[SCRAM_KEY_LEN])
{
    unsigned int len = SCRAM_KEY_LEN;
    return HMAC(EVP_sha256(), key, (int)keylen, data, n, out, &len) != NULL;
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

int scram_client_final(scram_client_t *sc, const char *password, const char *server_first,
                       char *out, size_t outlen, const char **why)
{
    size_t nonce_len, salt_len, iter_len;
    const char *nonce = attribute(server_first, 'r', &nonce_len);
    const char *salt64 = attribute(server_first, 's', &salt_len);
    const char *iter = attribute(server_first, 'i', &iter_len);
    *why = "malformed SCRAM server-first message";
    if (nonce == NULL || salt64 == NULL || iter == NULL ||
        strlen(server_first) >= SCRAM_MESSAGE_MAX)
        return -1;
    size_t ours = strlen(sc->nonce);
    if (nonce_len <= ours || strncmp(nonce, sc->nonce, ours) != 0) {
        *why = "SCRAM server nonce does not extend the client nonce";
        return -1;
    }
    char *end;
    long iterations = strtol(iter, &end, 10);
    if (end != iter + iter_len || iterations < 1 || iterations > MAX_ITERATIONS) {
        *why = "SCRAM iteration count out of range";
        return -1;
    }
    uint8_t salt[SCRAM_MESSAGE_MAX];
    int salt_n = base64_decode(salt64, salt_len, salt, sizeof(salt));
    if (salt_n <= 0)
        return -1;

    uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], stored_key[SCRAM_KEY_LEN];
    uint8_t signature[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
    if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, salt_n, (int)iterations,
                          EVP_sha256(), SCRAM_KEY_LEN, salted) != 1 ||
        !hmac(salted, sizeof(salted), "Client Key", 10, client_key) ||
        !hmac(salted, sizeof(salted), "Server Key", 10, sc->server_key) ||
        SHA256(client_key, sizeof(client_key), stored_key) == NULL) {
        *why = "SCRAM computation failed";
        return -1;
    }
    char without_proof[SCRAM_MESSAGE_MAX];
    int n = snprintf(without_proof, sizeof(without_proof), "c=biws,r=%.*s", (int)nonce_len, nonce);
    if (n < 0 || (size_t)n >= sizeof(without_proof))
        return -1;
    n = snprintf(sc->auth_message, sizeof(sc->auth_message), "%s,%s,%s", sc->client_first_bare,
                 server_first, without_proof);
    if (n < 0 || (size_t)n >= sizeof(sc->auth_message) ||
        !hmac(stored_key, sizeof(stored_key), sc->auth_message, (size_t)n, signature))
        return -1;
    for (int i = 0; i < SCRAM_KEY_LEN; i++)
        proof[i] = client_key[i] ^ signature[i];
    char proof64[64];
    if (base64_encode(proof, sizeof(proof), proof64, sizeof(proof64)) < 0)
        return -1;
    n = snprintf(out, outlen, "%s,p=%s", without_proof, proof64);
    return (n < 0 || (size_t)n >= outlen) ? -1 : n;
}

bool scram_client_verify(const scram_client_t *sc, const char *server_final)
{
    size_t len;
    const char *v = attribute(server_final, 'v', &len);
    uint8_t expected[SCRAM_KEY_LEN], got[SCRAM_MESSAGE_MAX];
    if (v == NULL || !hmac(sc->server_key, sizeof(sc->server_key), sc->auth_message,
                           strlen(sc->auth_message), expected))
        return false;
    int n = base64_decode(v, len, got, sizeof(got));
    return n == SCRAM_KEY_LEN && CRYPTO_memcmp(got, expected, SCRAM_KEY_LEN) == 0;
}

static int md5_hex(const void *a, size_t an, const void *b, size_t bn, char out[33])
{
    uint8_t digest[16];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, a, an) == 1 && EVP_DigestUpdate(ctx, b, bn) == 1 &&
             EVP_DigestFinal_ex(ctx, digest, &len) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

int scram_md5_password(const char *user, const char *password, const uint8_t salt[4], char out[36])
{
    char inner[33];
    if (md5_hex(password, strlen(password), user, strlen(user), inner) < 0)
        return -1;
    memcpy(out, "md5", 3);
    return md5_hex(inner, 32, salt, 4, out + 3);
}
