/*
 * hba.c
 *    Loading of the auth_hba_file into an array of rules, and first-match evaluation.
 *
 * A line is read as tokens: words (which may have double-quoted parts) and commas; '#'
 * outside quotes ends the line. A column is one token, or for DATABASE and USER a list of tokens
 * joined by commas (blanks are allowed around a comma, as in PgBouncer). Keywords are recognised
 * only unquoted, so `"all"` is a database named all, as in PostgreSQL.
 *
 * Addresses are kept as 16 bytes of address and 16 of mask (the first 4 of each for IPv4),
 * the address already masked, so that a match is a masked compare. The names of a list are
 * packed into one block, each ending in NUL and the block in an empty name, since lists are
 * short and walked in order.
 */
#include "hba.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define NAME_MAX_BYTES 63 /* NAMEDATALEN - 1 */

/* Longest address column worth parsing: an IPv6 address with an IPv4 tail and "/128". */
#define ADDRESS_MAX_BYTES (INET6_ADDRSTRLEN + 4)

/* The TYPE column. */
typedef enum conn_type {
    CONN_LOCAL,     /* Unix socket */
    CONN_HOST,      /* TCP, with or without TLS */
    CONN_HOSTSSL,   /* TCP with TLS */
    CONN_HOSTNOSSL, /* TCP without TLS */
} conn_type_t;

/* Keywords of a DATABASE or USER column, as bits. */
enum {
    NAMES_ALL = 1u << 0,         /* all: any name */
    NAMES_SAMEUSER = 1u << 1,    /* sameuser: the database named like the user */
    NAMES_REPLICATION = 1u << 2, /* replication: replication connections, which never come */
};

typedef struct name_list {
    unsigned keywords; /* NAMES_* bits */
    char *names;       /* "a\0b\0\0": each name ends in NUL, the list in an empty name */
    size_t len;        /* bytes used in names, without the final NUL */
} name_list_t;

typedef struct rule {
    conn_type_t type;
    int family;       /* AF_INET, AF_INET6, or AF_UNSPEC for local lines and address all */
    uint8_t addr[16]; /* the address, masked; network byte order */
    uint8_t mask[16];
    name_list_t databases;
    name_list_t users;
    hba_method_t method;
} rule_t;

struct hba {
    rule_t *rules; /* in file order */
    size_t n_rules;
    size_t cap;
};

typedef enum token_kind {
    TOKEN_END,   /* end of line or a comment */
    TOKEN_COMMA, /* , */
    TOKEN_WORD,  /* a bare word or a quoted name; text in load_ctx_t.token */
} token_kind_t;

/* The state of one hba_load(): the line being tokenised and the error met. */
typedef struct load_ctx {
    const char *p;     /* next character of the line */
    int line;          /* the line being parsed, counted from 1 */
    char *token;       /* text of the last TOKEN_WORD, quotes undone */
    size_t token_cap;  /* bytes allocated for token: at least the line's length + 1 */
    bool token_quoted; /* the last TOKEN_WORD was in double quotes */
    char error[512];   /* the error of the line, without "path:line: " */
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

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static void skip_blanks(load_ctx_t *ctx)
{
    while (is_blank(*ctx->p))
        ctx->p++;
}

/*
 * Reads the next token into *kind (and a word's text into ctx->token). A word runs to a blank,
 * comma or '#' outside double quotes; quoted parts of it are taken as they are, "" in them
 * being one quote, as PostgreSQL reads pg_hba.conf. Returns 0, or -1 with the error recorded
 * for a quote that is not closed.
 */
static int next_token(load_ctx_t *ctx, token_kind_t *kind)
{
    const char *s;
    bool in_quote = false;
    size_t n = 0;

    skip_blanks(ctx);
    s = ctx->p;
    ctx->token[0] = '\0';
    ctx->token_quoted = false;
    if (*s == '\0' || *s == '#') {
        *kind = TOKEN_END;
        return 0;
    }
    if (*s == ',') {
        ctx->p = s + 1;
        *kind = TOKEN_COMMA;
        return 0;
    }
    while (*s != '\0' && (in_quote || !(is_blank(*s) || *s == ',' || *s == '#'))) {
        if (*s == '"' && in_quote && s[1] == '"') {
            ctx->token[n++] = '"';
            s += 2;
        } else if (*s == '"') {
            in_quote = !in_quote;
            ctx->token_quoted = true;
            s++;
        } else {
            ctx->token[n++] = *s++;
        }
    }
    ctx->token[n] = '\0';
    if (in_quote)
        return fail(ctx, "closing quote is missing");
    ctx->p = s;
    *kind = TOKEN_WORD;
    return 0;
}

/* Appends name to the list; returns false when memory runs out. */
static bool add_name(name_list_t *list, const char *name)
{
    size_t len = strlen(name);
    char *names = realloc(list->names, list->len + len + 2);

    if (names == NULL)
        return false;
    memcpy(names + list->len, name, len + 1);
    list->len += len + 1;
    names[list->len] = '\0';
    list->names = names;
    return true;
}

static bool list_contains(const name_list_t *list, const char *name)
{
    if (list->names == NULL)
        return false;
    for (const char *s = list->names; *s != '\0'; s += strlen(s) + 1) {
        if (strcmp(s, name) == 0)
            return true;
    }
    return false;
}

/* Takes the word in ctx->token as an element of the DATABASE (is_db) or USER column. */
static int add_element(load_ctx_t *ctx, name_list_t *list, bool is_db, const char *column)
{
    const char *t = ctx->token;

    if (!ctx->token_quoted) {
        if (strcmp(t, "all") == 0) {
            list->keywords |= NAMES_ALL;
            return 0;
        }
        if (is_db && strcmp(t, "sameuser") == 0) {
            list->keywords |= NAMES_SAMEUSER;
            return 0;
        }
        if (is_db && strcmp(t, "replication") == 0) {
            list->keywords |= NAMES_REPLICATION;
            return 0;
        }
        if (is_db && (strcmp(t, "samerole") == 0 || strcmp(t, "samegroup") == 0))
            return fail(ctx, "%s \"%s\" is not supported", column, t);
        if (t[0] == '+')
            return fail(ctx, "%s \"%s\": group membership (+role) is not supported", column, t);
        if (t[0] == '@')
            return fail(ctx, "%s \"%s\": including a file (@file) is not supported", column, t);
    }
    if (t[0] == '\0')
        return fail(ctx, "%s: empty name", column);
    if (strlen(t) > NAME_MAX_BYTES)
        return fail(ctx, "%s: name \"%s\" is longer than %d bytes", column, t, NAME_MAX_BYTES);
    if (!add_name(list, t))
        return fail(ctx, "out of memory");
    return 0;
}

/* Reads the DATABASE (is_db) or USER column: names and keywords joined by commas. */
static int parse_names(load_ctx_t *ctx, name_list_t *list, bool is_db)
{
    const char *column = is_db ? "database" : "user";
    token_kind_t kind;

    if (next_token(ctx, &kind) != 0)
        return -1;
    if (kind == TOKEN_END)
        return fail(ctx, "missing the %s column", column);
    for (;;) {
        if (kind != TOKEN_WORD)
            return fail(ctx, "%s: empty name in the list", column);
        if (add_element(ctx, list, is_db, column) != 0)
            return -1;
        skip_blanks(ctx);
        if (*ctx->p != ',')
            return 0;
        ctx->p++;
        if (next_token(ctx, &kind) != 0)
            return -1;
        if (kind == TOKEN_END)
            return fail(ctx, "%s: the list ends with a comma", column);
    }
}

/* Parses text as an address of family; fills the first 4 or 16 bytes of out. */
static bool parse_ip(int family, const char *text, uint8_t out[16])
{
    memset(out, 0, 16);
    return inet_pton(family, text, out) == 1;
}

/* Parses a prefix length of at most max bits ("0" to "128", digits only). */
static bool parse_prefix(const char *text, int max, int *bits)
{
    int n = 0;

    if (text[0] == '\0' || strlen(text) > 3)
        return false;
    for (const char *s = text; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
        n = n * 10 + (*s - '0');
    }
    if (n > max)
        return false;
    *bits = n;
    return true;
}

static void prefix_mask(int bits, uint8_t mask[16])
{
    memset(mask, 0, 16);
    for (int i = 0; i < bits / 8; i++)
        mask[i] = 0xff;
    if (bits % 8 != 0)
        mask[bits / 8] = (uint8_t)(0xff << (8 - bits % 8));
}

/* Reads the ADDRESS column of a host* line, and the NETMASK column when it has no prefix. */
static int parse_address(load_ctx_t *ctx, rule_t *rule)
{
    char text[ADDRESS_MAX_BYTES + 1];
    token_kind_t kind;
    char *slash;
    int bits;

    if (next_token(ctx, &kind) != 0)
        return -1;
    /* A comma would have continued the user list, so the token is a word or the end. */
    if (kind != TOKEN_WORD)
        return fail(ctx, "missing the address column");
    if (strcmp(ctx->token, "all") == 0) {
        rule->family = AF_UNSPEC;
        return 0;
    }
    if (strcmp(ctx->token, "samehost") == 0 || strcmp(ctx->token, "samenet") == 0)
        return fail(ctx, "address \"%s\" is not supported", ctx->token);
    if (strlen(ctx->token) > ADDRESS_MAX_BYTES)
        return fail(ctx, "invalid address \"%.*s...\" (host names are not supported)",
                    ADDRESS_MAX_BYTES, ctx->token);
    strcpy(text, ctx->token);
    slash = strchr(text, '/');
    if (slash != NULL)
        *slash = '\0';
    rule->family = strchr(text, ':') != NULL ? AF_INET6 : AF_INET;
    if (!parse_ip(rule->family, text, rule->addr)) {
        if (slash != NULL)
            *slash = '/';
        return fail(ctx, "invalid address \"%s\" (host names are not supported)", text);
    }
    if (slash != NULL) {
        if (!parse_prefix(slash + 1, rule->family == AF_INET ? 32 : 128, &bits))
            return fail(ctx, "invalid prefix length \"/%s\" for %s address %s", slash + 1,
                        rule->family == AF_INET ? "an IPv4" : "an IPv6", text);
        prefix_mask(bits, rule->mask);
    } else {
        if (next_token(ctx, &kind) != 0)
            return -1;
        if (kind != TOKEN_WORD)
            return fail(ctx, "address \"%s\" needs a /prefix length or a netmask column", text);
        if (!parse_ip(rule->family, ctx->token, rule->mask))
            return fail(ctx, "address \"%s\" has no /prefix length, and \"%s\" is not a netmask",
                        text, ctx->token);
    }
    for (int i = 0; i < 16; i++)
        rule->addr[i] &= rule->mask[i];
    return 0;
}

static int parse_type(load_ctx_t *ctx, conn_type_t *type)
{
    static const struct {
        const char *name;
        conn_type_t type;
    } types[] = {
        {"local", CONN_LOCAL},
        {"host", CONN_HOST},
        {"hostssl", CONN_HOSTSSL},
        {"hostnossl", CONN_HOSTNOSSL},
    };
    const char *t = ctx->token;

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(t, types[i].name) == 0) {
            *type = types[i].type;
            return 0;
        }
    }
    if (strcmp(t, "hostgssenc") == 0 || strcmp(t, "hostnogssenc") == 0)
        return fail(ctx, "connection type \"%s\" is not supported", t);
    return fail(ctx, "unknown connection type \"%s\" (expected local, host, hostssl or hostnossl)",
                t);
}

static int parse_method(load_ctx_t *ctx, hba_method_t *method)
{
    static const hba_method_t methods[] = {HBA_TRUST, HBA_REJECT, HBA_PASSWORD,
                                           HBA_MD5,   HBA_SCRAM,  HBA_CERT};
    static const char *const unsupported[] = {"peer", "ident",  "gss", "sspi", "pam",
                                              "ldap", "radius", "bsd", "oauth"};
    const char *t = ctx->token;

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strcmp(t, hba_method_name(methods[i])) == 0) {
            *method = methods[i];
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        if (strcmp(t, unsupported[i]) == 0)
            return fail(ctx, "method \"%s\" is not supported", t);
    }
    return fail(ctx,
                "unknown method \"%s\" (expected trust, reject, password, md5, scram-sha-256 "
                "or cert)",
                t);
}

/* Reads what follows the method: name=value options, which are accepted and ignored. */
static int skip_options(load_ctx_t *ctx)
{
    token_kind_t kind;

    for (;;) {
        if (next_token(ctx, &kind) != 0)
            return -1;
        if (kind == TOKEN_END)
            return 0;
        if (kind == TOKEN_WORD && (ctx->token[0] == '=' || strchr(ctx->token, '=') == NULL))
            return fail(ctx, "option \"%s\" after the method is not name=value", ctx->token);
    }
}

static void rule_destroy(rule_t *rule)
{
    free(rule->databases.names);
    free(rule->users.names);
}

/* Parses one line into *rule; sets *empty for a blank or comment line. */
static int parse_rule(load_ctx_t *ctx, rule_t *rule, bool *empty)
{
    token_kind_t kind;

    *empty = false;
    if (next_token(ctx, &kind) != 0)
        return -1;
    if (kind == TOKEN_END) {
        *empty = true;
        return 0;
    }
    if (kind == TOKEN_COMMA)
        return fail(ctx, "expected a connection type, got \",\"");
    if (parse_type(ctx, &rule->type) != 0)
        return -1;
    if (parse_names(ctx, &rule->databases, true) != 0)
        return -1;
    if (parse_names(ctx, &rule->users, false) != 0)
        return -1;
    if (rule->type == CONN_LOCAL)
        rule->family = AF_UNSPEC;
    else if (parse_address(ctx, rule) != 0)
        return -1;
    if (next_token(ctx, &kind) != 0)
        return -1;
    if (kind == TOKEN_END)
        return fail(ctx, "missing the method column");
    if (kind == TOKEN_COMMA)
        return fail(ctx, "expected a method, got \",\"");
    if (parse_method(ctx, &rule->method) != 0)
        return -1;
    if (rule->method == HBA_CERT && rule->type != CONN_HOSTSSL)
        return fail(ctx, "method \"cert\" is only allowed on hostssl lines");
    return skip_options(ctx);
}

/* Parses one line, without its line ending, and appends its rule to hba. */
static int parse_line(load_ctx_t *ctx, hba_t *hba, const char *line, size_t len)
{
    rule_t rule = {0};
    bool empty;

    if (ctx->token_cap < len + 1) {
        char *token = realloc(ctx->token, len + 1);

        if (token == NULL)
            return fail(ctx, "out of memory");
        ctx->token = token;
        ctx->token_cap = len + 1;
    }
    ctx->p = line;
    if (parse_rule(ctx, &rule, &empty) != 0)
        goto fail;
    if (empty)
        return 0;
    if (hba->n_rules == hba->cap) {
        size_t cap = hba->cap == 0 ? 16 : hba->cap * 2;
        rule_t *rules = realloc(hba->rules, cap * sizeof(*rules));

        if (rules == NULL) {
            fail(ctx, "out of memory");
            goto fail;
        }
        hba->rules = rules;
        hba->cap = cap;
    }
    hba->rules[hba->n_rules++] = rule;
    return 0;
fail:
    rule_destroy(&rule);
    return -1;
}

/* Reads the open file into hba; returns 0, or -1 with the error written into err. */
static int parse_file(hba_t *hba, FILE *file, const char *path, char *err, size_t errlen)
{
    load_ctx_t ctx = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = -1;

    errno = 0;
    while ((len = getline(&line, &cap, file)) >= 0) {
        ctx.line++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (strlen(line) != (size_t)len) {
            fail(&ctx, "line contains a NUL byte");
            goto fail;
        }
        if (parse_line(&ctx, hba, line, (size_t)len) != 0)
            goto fail;
    }
    if (ferror(file)) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
    goto out;
fail:
    snprintf(err, errlen, "%s:%d: %s", path, ctx.line, ctx.error);
out:
    free(ctx.token);
    free(line);
    return rc;
}

int hba_load(const char *path, hba_t **out, char *err, size_t errlen)
{
    hba_t *hba = NULL;
    FILE *file = NULL;
    int rc = -1;

    *out = NULL;
    hba = calloc(1, sizeof(*hba));
    if (hba == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    file = fopen(path, "r");
    if (file == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (parse_file(hba, file, path, err, errlen) != 0)
        goto fail;
    *out = hba;
    hba = NULL;
    rc = 0;
fail:
    if (file != NULL)
        fclose(file);
    hba_free(hba);
    return rc;
}

void hba_free(hba_t *hba)
{
    if (hba == NULL)
        return;
    for (size_t i = 0; i < hba->n_rules; i++)
        rule_destroy(&hba->rules[i]);
    free(hba->rules);
    free(hba);
}

/*
 * Puts the family and bytes of a peer address into *family and bytes, an IPv4-mapped IPv6
 * address becoming the IPv4 address it carries. Returns false for any other family.
 */
static bool peer_address(const struct sockaddr_storage *addr, int *family, uint8_t bytes[16])
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    memset(bytes, 0, 16);
    if (addr == NULL)
        return false;
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)addr;

        *family = AF_INET;
        memcpy(bytes, &sin->sin_addr, 4);
        return true;
    }
    if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)addr;

        if (memcmp(sin6->sin6_addr.s6_addr, v4_mapped, sizeof(v4_mapped)) == 0) {
            *family = AF_INET;
            memcpy(bytes, sin6->sin6_addr.s6_addr + 12, 4);
        } else {
            *family = AF_INET6;
            memcpy(bytes, sin6->sin6_addr.s6_addr, 16);
        }
        return true;
    }
    return false;
}

static bool address_matches(const rule_t *rule, int family, const uint8_t bytes[16])
{
    if (rule->family == AF_UNSPEC)
        return true;
    if (rule->family != family)
        return false;
    for (int i = 0; i < 16; i++) {
        if ((bytes[i] & rule->mask[i]) != rule->addr[i])
            return false;
    }
    return true;
}

static bool database_matches(const name_list_t *list, const char *database, const char *user)
{
    if (list->keywords & NAMES_ALL)
        return true;
    if ((list->keywords & NAMES_SAMEUSER) && strcmp(database, user) == 0)
        return true;
    return list_contains(list, database);
}

static bool user_matches(const name_list_t *list, const char *user)
{
    return (list->keywords & NAMES_ALL) || list_contains(list, user);
}

hba_method_t hba_match(const hba_t *hba, bool unix_socket, bool tls,
                       const struct sockaddr_storage *addr, const char *database, const char *user)
{
    uint8_t bytes[16];
    int family = AF_UNSPEC;
    bool has_address = !unix_socket && peer_address(addr, &family, bytes);

    for (size_t i = 0; i < hba->n_rules; i++) {
        const rule_t *rule = &hba->rules[i];

        if (unix_socket) {
            if (rule->type != CONN_LOCAL)
                continue;
        } else {
            if (rule->type == CONN_LOCAL || !has_address)
                continue;
            if ((rule->type == CONN_HOSTSSL && !tls) || (rule->type == CONN_HOSTNOSSL && tls))
                continue;
            if (!address_matches(rule, family, bytes))
                continue;
        }
        if (database_matches(&rule->databases, database, user) && user_matches(&rule->users, user))
            return rule->method;
    }
    return HBA_REJECT;
}

const char *hba_method_name(hba_method_t m)
{
    switch (m) {
    case HBA_REJECT:
        return "reject";
    case HBA_TRUST:
        return "trust";
    case HBA_PASSWORD:
        return "password";
    case HBA_MD5:
        return "md5";
    case HBA_SCRAM:
        return "scram-sha-256";
    case HBA_CERT:
        return "cert";
    }
    return "unknown";
}
