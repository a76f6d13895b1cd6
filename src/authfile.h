/*
 * authfile.h
 *    The auth_file (userlist.txt): the users clients may log in as, and their secrets.
 *
 * The format is PgBouncer's: one user per line, `"username" "secret"`, both in double quotes,
 * a double quote inside either written twice (""). Text after the secret is ignored. Blank
 * lines and lines whose first non-blank character is ';' or '#' are comments. The secret is
 * a plain password, an md5 hash ("md5" + md5hex(password + username)) or a SCRAM-SHA-256
 * verifier ("SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"), as in pg_authid.
 *
 * A loaded file is immutable, so worker threads look users up in it without locks; a reload
 * loads a new one and swaps it in.
 */
#ifndef PGTURBO_AUTHFILE_H
#define PGTURBO_AUTHFILE_H

#include <stddef.h>

#define AUTHFILE_NAME_MAX   63   /* NAMEDATALEN - 1: longest user name, in bytes */
#define AUTHFILE_SECRET_MAX 1023 /* longest secret, in bytes */

typedef struct authfile authfile_t;

typedef enum auth_secret_kind {
    AUTH_SECRET_PLAIN, /* the password itself */
    AUTH_SECRET_MD5,   /* "md5" + 32 lowercase hex digits of md5(password + username) */
    AUTH_SECRET_SCRAM, /* a SCRAM-SHA-256 verifier, "SCRAM-SHA-256$..." */
} auth_secret_kind_t;

/*
 * Loads the auth file at path. On success returns 0 and sets *out to a file the caller frees
 * with authfile_free(). On failure returns -1, leaves *out NULL and writes "path:line: what is
 * wrong" (or "path: cannot open: <reason>" and the like for whole-file problems) into err,
 * truncated to errlen. A user name longer than AUTHFILE_NAME_MAX bytes or a secret longer than
 * AUTHFILE_SECRET_MAX bytes (both counted after "" is undone) is an error, as is an empty user
 * name. A user listed twice gets the secret of the later line, as in PgBouncer.
 */
__attribute__((warn_unused_result)) int authfile_load(const char *path, authfile_t **out, char *err,
                                                      size_t errlen);

/* Frees a file from authfile_load(); NULL is allowed. */
void authfile_free(authfile_t *af);

/* The number of distinct users in af. */
size_t authfile_count(const authfile_t *af);

/*
 * Returns the secret of user (compared byte for byte), or NULL when af does not list user.
 * The result is borrowed from af and lives as long as it. Takes O(1) time on average.
 */
const char *authfile_lookup(const authfile_t *af, const char *user);

/*
 * What kind of secret s is: "md5" followed by exactly 32 lowercase hex digits is
 * AUTH_SECRET_MD5, anything starting with "SCRAM-SHA-256$" is AUTH_SECRET_SCRAM, and anything
 * else (including a near miss such as "md5" + 31 hex digits) is AUTH_SECRET_PLAIN.
 */
auth_secret_kind_t authfile_secret_kind(const char *s);

#endif /* PGTURBO_AUTHFILE_H */
