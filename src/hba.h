/*
 * hba.h
 *    The auth_hba_file: pg_hba.conf-style rules choosing how a client must authenticate.
 *
 * Each line is `TYPE DATABASE USER [ADDRESS [NETMASK]] METHOD [OPTIONS]`, as in PostgreSQL's
 * pg_hba.conf and PgBouncer's auth_hba_file; '#' starts a comment outside quotes.
 *   TYPE      local (Unix socket), host (TCP, with or without TLS), hostssl (TCP with TLS only)
 *             or hostnossl (TCP without TLS only).
 *   DATABASE  a comma-separated list of database names and the keywords all (any database),
 *             sameuser (the database named like the user) and replication (which matches no
 *             connection: pgturbo does not serve replication connections).
 *   USER      a comma-separated list of user names and the keyword all.
 *             In both lists, blanks may follow or precede a comma, and names (or parts of
 *             them) may be in double quotes, with "" for a quote inside; a name with quotes
 *             is never a keyword ("all" is a database named all). Names are compared byte for
 *             byte, and may be at most 63 bytes long.
 *   ADDRESS   host* lines only: all (any address), an IPv4 or IPv6 address with a prefix
 *             length (10.0.0.0/8, ::1/128), or an address followed by a NETMASK column
 *             (10.0.0.0 255.0.0.0). Address bits outside the prefix are ignored, as in
 *             PostgreSQL. An IPv4-mapped IPv6 peer (::ffff:a.b.c.d) is matched as the IPv4
 *             address a.b.c.d, so that a dual-stack listener works with IPv4 rules.
 *   METHOD    trust, reject, password, md5, scram-sha-256 or cert (hostssl lines only).
 *   OPTIONS   name=value pairs after the method (clientcert=verify-full, ...) are ignored.
 * Host names, samehost, samenet, samerole, +group, @file and the other authentication
 * methods of PostgreSQL are refused with a "not supported" error rather than skipped, so that
 * a rule never silently disappears.
 *
 * A loaded file is immutable, so worker threads match against it without locks; a reload
 * loads a new one and swaps it in.
 */
#ifndef PGTURBO_HBA_H
#define PGTURBO_HBA_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

typedef struct hba hba_t;

typedef enum hba_method {
    HBA_REJECT,   /* refuse the connection */
    HBA_TRUST,    /* accept the connection without a password */
    HBA_PASSWORD, /* ask for the password in clear text */
    HBA_MD5,      /* md5 challenge (PostgreSQL does SCRAM instead for a SCRAM secret) */
    HBA_SCRAM,    /* SCRAM-SHA-256 */
    HBA_CERT,     /* the TLS client certificate's common name must be the user name */
} hba_method_t;

/*
 * Loads the rules of the file at path. On success returns 0 and sets *out to rules the caller
 * frees with hba_free(). On failure returns -1, leaves *out NULL and writes "path:line: what
 * is wrong" (or "path: cannot open: <reason>" and the like for whole-file problems) into err,
 * truncated to errlen. The first bad line fails the whole file: PgBouncer skips bad lines
 * instead, which can leave a rule out and let a later, looser rule decide.
 */
__attribute__((warn_unused_result)) int hba_load(const char *path, hba_t **out, char *err,
                                                 size_t errlen);

/* Frees rules from hba_load(); NULL is allowed. */
void hba_free(hba_t *hba);

/*
 * Returns the method of the first rule that matches a connection, or HBA_REJECT when none
 * does, as PostgreSQL. unix_socket tells whether the client came over a Unix socket (then only
 * local lines match, and addr is not looked at and may be NULL); tls whether it uses TLS
 * (hostssl lines match only then, hostnossl lines only otherwise); addr is the peer address as
 * accept() gives it, AF_INET or AF_INET6 (any other family matches no host* line); database
 * and user are what the client asked for. Borrows everything; keeps nothing.
 */
hba_method_t hba_match(const hba_t *hba, bool unix_socket, bool tls,
                       const struct sockaddr_storage *addr, const char *database, const char *user);

/* The method's name as written in the file: "trust", "scram-sha-256", ... */
const char *hba_method_name(hba_method_t m);

#endif /* PGTURBO_HBA_H */
