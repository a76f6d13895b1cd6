/*
 * authfile.c
 *    Loading of the auth_file (userlist.txt) into an open-addressing hash table.
 *
 * Every name and secret is copied, unquoted, into one growing string pool; entries refer to
 * them by offset, because the pool moves while it grows. Once the whole file is read, the
 * entries go into a hash table in file order, so that a later line of the same user replaces
 * the earlier one. The table is at most half full, so a lookup probes only a few slots.
 *
 * The file is read with getline(), so lines have no length limit of their own; a NUL byte in
 * a line is an error, since everything after it would silently be lost.
 */
#include "authfile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define SCRAM_PREFIX "SCRAM-SHA-256$"
#define MD5_HEX_LEN  32

/* One user: where its name and secret are in the pool. */
typedef struct entry {
    size_t name;   /* offset in the pool */
    size_t secret; /* offset in the pool */
    uint64_t hash; /* of the name */
} entry_t;

struct authfile {
    char *pool;         /* every name and secret, each ending in NUL */
    entry_t *entries;   /* in file order, duplicates included */
    size_t n_entries;   /* used in entries */
    uint32_t *slots;    /* hash table: index + 1 into entries, 0 for an empty slot */
    size_t slot_mask;   /* number of slots - 1; the number is a power of two */
    size_t n_users;     /* distinct names */
    size_t pool_len;    /* bytes used in pool */
    size_t pool_cap;    /* bytes allocated for pool */
    size_t entries_cap; /* entries allocated */
};

/* The state of one authfile_load(): the file being read and the first error met. */
typedef struct load_ctx {
    authfile_t *af;
    const char *path;
    int line;        /* the line being parsed, counted from 1 */
    char error[256]; /* the error of that line, without "path:line: " */
} load_ctx_t;

/* Records the error of the current line; returns -1 so that parsers can return its result. */
__attribute__((format(printf, 2, 3))) static int fail(load_ctx_t *ctx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(ctx->error, sizeof(ctx->error), fmt, ap);
    va_end(ap);
    return -1;
}

/* FNV-1a: fast and good enough for names an administrator writes, which are not hostile. */
static uint64_t hash_name(const char *s)
{
    uint64_t h = 14695981039346656037ull;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

/* Makes room for len more bytes in the pool; returns false when memory runs out. */
static bool pool_reserve(authfile_t *af, size_t len)
{
    size_t cap = af->pool_cap == 0 ? 4096 : af->pool_cap;
    char *pool;

    if (af->pool_len + len <= af->pool_cap)
        return true;
    while (cap < af->pool_len + len)
        cap *= 2;
    pool = realloc(af->pool, cap);
    if (pool == NULL)
        return false;
    af->pool = pool;
    af->pool_cap = cap;
    return true;
}

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/*
 * Copies the quoted string that starts at *p (on its opening quote) to the end of the pool,
 * undoing "" escapes and adding a NUL, and moves *p past the closing quote. Returns the length
 * of the copy; -1 when the quote is not closed on this line, -2 when the copy would be longer
 * than max bytes, or -3 when memory runs out, in which three cases the pool keeps nothing.
 */
static ssize_t read_quoted(authfile_t *af, const char **p, size_t max)
{
    const char *s = *p + 1;
    size_t start = af->pool_len;
    size_t n = 0;

    /* The unquoted text is never longer than the quoted one, so reserve that much at once. */
    if (!pool_reserve(af, strlen(s) + 1))
        return -3;
    for (;;) {
        if (*s == '\0')
            return -1;
        if (*s == '"') {
            if (s[1] != '"')
                break;
            s++;
        }
        if (n == max)
            return -2;
        af->pool[start + n++] = *s++;
    }
    af->pool[start + n] = '\0';
    af->pool_len += n + 1;
    *p = s + 1;
    return (ssize_t)n;
}

/* Appends an entry for the name and secret at the given pool offsets. */
static int add_entry(load_ctx_t *ctx, size_t name, size_t secret)
{
    authfile_t *af = ctx->af;

    if (af->n_entries == UINT32_MAX - 1)
        return fail(ctx, "too many users");
    if (af->n_entries == af->entries_cap) {
        size_t cap = af->entries_cap == 0 ? 64 : af->entries_cap * 2;
        entry_t *entries = realloc(af->entries, cap * sizeof(*entries));

        if (entries == NULL)
            return fail(ctx, "out of memory");
        af->entries = entries;
        af->entries_cap = cap;
    }
    af->entries[af->n_entries].name = name;
    af->entries[af->n_entries].secret = secret;
    af->entries[af->n_entries].hash = hash_name(af->pool + name);
    af->n_entries++;
    return 0;
}

/* Parses one line, without its line ending; returns 0, or -1 with the error recorded. */
static int parse_line(load_ctx_t *ctx, const char *line)
{
    authfile_t *af = ctx->af;
    const char *p = skip_blanks(line);
    size_t name = af->pool_len;
    size_t secret;
    ssize_t len;

    if (*p == '\0' || *p == ';' || *p == '#')
        return 0;
    if (*p != '"')
        return fail(ctx, "expected a user name in double quotes");
    len = read_quoted(af, &p, AUTHFILE_NAME_MAX);
    if (len == -1)
        return fail(ctx, "user name: closing quote is missing");
    if (len == -2)
        return fail(ctx, "user name is longer than %d bytes", AUTHFILE_NAME_MAX);
    if (len == -3)
        return fail(ctx, "out of memory");
    if (len == 0)
        return fail(ctx, "user name is empty");

    p = skip_blanks(p);
    if (*p != '"')
        return fail(ctx, "user \"%s\": expected a secret in double quotes after the name",
                    af->pool + name);
    secret = af->pool_len;
    len = read_quoted(af, &p, AUTHFILE_SECRET_MAX);
    if (len == -1)
        return fail(ctx, "user \"%s\": secret: closing quote is missing", af->pool + name);
    if (len == -2)
        return fail(ctx, "user \"%s\": secret is longer than %d bytes", af->pool + name,
                    AUTHFILE_SECRET_MAX);
    if (len == -3)
        return fail(ctx, "out of memory");
    return add_entry(ctx, name, secret);
}

/*
 * Returns the slot of name in the table: the one holding it, or the empty one where it would
 * go. The table always has an empty slot, so the probe ends.
 */
static size_t find_slot(const authfile_t *af, const char *name, uint64_t hash)
{
    size_t i = (size_t)hash & af->slot_mask;

    for (;; i = (i + 1) & af->slot_mask) {
        uint32_t slot = af->slots[i];
        const entry_t *e;

        if (slot == 0)
            return i;
        e = &af->entries[slot - 1];
        if (e->hash == hash && strcmp(af->pool + e->name, name) == 0)
            return i;
    }
}

/* Builds the hash table over the entries; a later entry of a name replaces an earlier one. */
static bool build_table(authfile_t *af)
{
    size_t n_slots = 16;

    while (n_slots < 2 * af->n_entries)
        n_slots *= 2;
    af->slots = calloc(n_slots, sizeof(*af->slots));
    if (af->slots == NULL)
        return false;
    af->slot_mask = n_slots - 1;
    for (size_t i = 0; i < af->n_entries; i++) {
        const entry_t *e = &af->entries[i];
        size_t slot = find_slot(af, af->pool + e->name, e->hash);

        if (af->slots[slot] == 0)
            af->n_users++;
        af->slots[slot] = (uint32_t)(i + 1);
    }
    return true;
}

/* Reads the open file into ctx->af; returns 0, or -1 with the error written into err. */
static int parse_file(load_ctx_t *ctx, FILE *file, char *err, size_t errlen)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = -1;

    errno = 0;
    while ((len = getline(&line, &cap, file)) >= 0) {
        ctx->line++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
        if (strlen(line) != (size_t)len) {
            fail(ctx, "line contains a NUL byte");
            goto fail;
        }
        if (parse_line(ctx, line) != 0)
            goto fail;
    }
    if (ferror(file)) {
        snprintf(err, errlen, "%s: cannot read: %s", ctx->path, strerror(errno));
        goto out;
    }
    rc = 0;
    goto out;
fail:
    snprintf(err, errlen, "%s:%d: %s", ctx->path, ctx->line, ctx->error);
out:
    free(line);
    return rc;
}

int authfile_load(const char *path, authfile_t **out, char *err, size_t errlen)
{
    load_ctx_t ctx = {.path = path};
    authfile_t *af = NULL;
    FILE *file = NULL;
    int rc = -1;

    *out = NULL;
    af = calloc(1, sizeof(*af));
    if (af == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    ctx.af = af;
    file = fopen(path, "r");
    if (file == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (parse_file(&ctx, file, err, errlen) != 0)
        goto fail;
    if (!build_table(af)) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    *out = af;
    af = NULL;
    rc = 0;
fail:
    if (file != NULL)
        fclose(file);
    authfile_free(af);
    return rc;
}

void authfile_free(authfile_t *af)
{
    if (af == NULL)
        return;
    free(af->pool);
    free(af->entries);
    free(af->slots);
    free(af);
}

size_t authfile_count(const authfile_t *af)
{
    return af->n_users;
}

const char *authfile_lookup(const authfile_t *af, const char *user)
{
    uint32_t slot = af->slots[find_slot(af, user, hash_name(user))];

    if (slot == 0)
        return NULL;
    return af->pool + af->entries[slot - 1].secret;
}

auth_secret_kind_t authfile_secret_kind(const char *s)
{
    if (strncmp(s, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) == 0)
        return AUTH_SECRET_SCRAM;
    if (strncmp(s, "md5", 3) != 0)
        return AUTH_SECRET_PLAIN;
    for (int i = 0; i < MD5_HEX_LEN; i++) {
        char c = s[3 + i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return AUTH_SECRET_PLAIN;
    }
    return s[3 + MD5_HEX_LEN] == '\0' ? AUTH_SECRET_MD5 : AUTH_SECRET_PLAIN;
}
