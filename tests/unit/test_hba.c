/*
 * test_hba.c
 *    Unit tests of hba.c: first-match order, connection types against Unix sockets and TLS,
 *    database and user lists and keywords, IPv4 and IPv6 prefixes and netmasks, ignored
 *    options, and the exact "path:line: what is wrong" errors.
 *
 * The tests write their files into a directory that mkdtemp() makes for the whole group and
 * that the group teardown removes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "hba.h"

static char dir[64];

static int make_dir(void **state)
{
    strcpy(dir, "/tmp/pgturbo-hba-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int remove_dir(void **state)
{
    return rmdir(dir);
}

/* Writes len bytes of text to <dir>/hba.conf and puts that path in path. */
static void write_file(char *path, size_t size, const char *text, size_t len)
{
    FILE *f;

    snprintf(path, size, "%s/hba.conf", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Loads text, which must be valid; the caller frees the result with hba_free(). */
static hba_t *load_ok(const char *text)
{
    char path[128];
    char err[512] = "";
    hba_t *hba = NULL;
    int rc;

    write_file(path, sizeof(path), text, strlen(text));
    rc = hba_load(path, &hba, err, sizeof(err));
    unlink(path);
    if (rc != 0)
        fail_msg("hba_load failed: %s", err);
    assert_non_null(hba);
    assert_string_equal(err, "");
    return hba;
}

/* Loads the len bytes of text and checks that the error is the file's path, then expected. */
static void expect_error_bytes(const char *text, size_t len, const char *expected)
{
    char path[128];
    char err[512] = "";
    char want[1024];
    hba_t *hba = (hba_t *)&hba;
    int rc;

    write_file(path, sizeof(path), text, len);
    rc = hba_load(path, &hba, err, sizeof(err));
    unlink(path);
    assert_int_equal(rc, -1);
    assert_null(hba);
    snprintf(want, sizeof(want), "%s%s", path, expected);
    assert_string_equal(err, want);
}

static void expect_error(const char *text, const char *expected)
{
    expect_error_bytes(text, strlen(text), expected);
}

/* The peer address ip (IPv4 or IPv6 text), as accept() would give it. */
static struct sockaddr_storage peer(const char *ip)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(40000);
        assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

        sin->sin_family = AF_INET;
        sin->sin_port = htons(40000);
        assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    }
    return ss;
}

/* The method for a TCP client at ip, without TLS. */
static hba_method_t tcp(const hba_t *hba, const char *ip, const char *database, const char *user)
{
    struct sockaddr_storage ss = peer(ip);

    return hba_match(hba, false, false, &ss, database, user);
}

/* The method for a TCP client at ip, over TLS. */
static hba_method_t tls(const hba_t *hba, const char *ip, const char *database, const char *user)
{
    struct sockaddr_storage ss = peer(ip);

    return hba_match(hba, false, true, &ss, database, user);
}

/* The method for a client on a Unix socket (no address). */
static hba_method_t unix_client(const hba_t *hba, const char *database, const char *user)
{
    return hba_match(hba, true, false, NULL, database, user);
}

static void test_first_matching_rule_wins(void **state)
{
    hba_t *hba = load_ok("host all all 10.0.0.0/8 reject\n"
                         "host all all 10.1.0.0/16 trust\n"
                         "host all all 0.0.0.0/0 md5\n");

    assert_int_equal(tcp(hba, "10.1.2.3", "app", "alice"), HBA_REJECT);
    assert_int_equal(tcp(hba, "192.168.1.1", "app", "alice"), HBA_MD5);
    hba_free(hba);

    hba = load_ok("host all all 10.1.0.0/16 trust\n"
                  "host all all 10.0.0.0/8 reject\n"
                  "host all all 0.0.0.0/0 md5\n");
    assert_int_equal(tcp(hba, "10.1.2.3", "app", "alice"), HBA_TRUST);
    assert_int_equal(tcp(hba, "10.2.0.1", "app", "alice"), HBA_REJECT);
    assert_int_equal(tcp(hba, "11.0.0.1", "app", "alice"), HBA_MD5);
    hba_free(hba);
}

static void test_no_matching_rule_rejects(void **state)
{
    hba_t *hba = load_ok("host app alice 10.0.0.0/8 trust\n");

    assert_int_equal(tcp(hba, "10.0.0.1", "app", "bob"), HBA_REJECT);
    assert_int_equal(tcp(hba, "10.0.0.1", "other", "alice"), HBA_REJECT);
    assert_int_equal(tcp(hba, "11.0.0.1", "app", "alice"), HBA_REJECT);
    assert_int_equal(unix_client(hba, "app", "alice"), HBA_REJECT);
    assert_int_equal(tcp(hba, "10.0.0.1", "app", "alice"), HBA_TRUST);
    hba_free(hba);

    hba = load_ok("# nothing but comments\n\n");
    assert_int_equal(tcp(hba, "10.0.0.1", "app", "alice"), HBA_REJECT);
    assert_int_equal(unix_client(hba, "app", "alice"), HBA_REJECT);
    hba_free(hba);
}

static void test_every_method_is_parsed(void **state)
{
    hba_t *hba = load_ok("host db1 all all trust\n"
                         "host db2 all all reject\n"
                         "host db3 all all password\n"
                         "host db4 all all md5\n"
                         "host db5 all all scram-sha-256\n"
                         "hostssl db6 all all cert\n");

    assert_int_equal(tcp(hba, "10.0.0.1", "db1", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "10.0.0.1", "db2", "u"), HBA_REJECT);
    assert_int_equal(tcp(hba, "10.0.0.1", "db3", "u"), HBA_PASSWORD);
    assert_int_equal(tcp(hba, "10.0.0.1", "db4", "u"), HBA_MD5);
    assert_int_equal(tcp(hba, "10.0.0.1", "db5", "u"), HBA_SCRAM);
    assert_int_equal(tls(hba, "10.0.0.1", "db6", "u"), HBA_CERT);
    assert_int_equal(tcp(hba, "10.0.0.1", "db6", "u"), HBA_REJECT);
    hba_free(hba);
}

static void test_method_names(void **state)
{
    assert_string_equal(hba_method_name(HBA_REJECT), "reject");
    assert_string_equal(hba_method_name(HBA_TRUST), "trust");
    assert_string_equal(hba_method_name(HBA_PASSWORD), "password");
    assert_string_equal(hba_method_name(HBA_MD5), "md5");
    assert_string_equal(hba_method_name(HBA_SCRAM), "scram-sha-256");
    assert_string_equal(hba_method_name(HBA_CERT), "cert");
}

static void test_database_and_user_lists(void **state)
{
    hba_t *hba = load_ok("host app,\"Other DB\" alice,bob 0.0.0.0/0 scram-sha-256\n"
                         "host sameuser all 0.0.0.0/0 trust\n"
                         "host all carol , dave 0.0.0.0/0 password\n"
                         "host reports, \"a\"\"b\" all 0.0.0.0/0 md5\n");

    assert_int_equal(tcp(hba, "1.2.3.4", "app", "alice"), HBA_SCRAM);
    assert_int_equal(tcp(hba, "1.2.3.4", "Other DB", "bob"), HBA_SCRAM);
    assert_int_equal(tcp(hba, "1.2.3.4", "other db", "bob"), HBA_REJECT);
    assert_int_equal(tcp(hba, "1.2.3.4", "app", "Alice"), HBA_REJECT);
    /* sameuser: the database named like the user, whoever that is */
    assert_int_equal(tcp(hba, "1.2.3.4", "erin", "erin"), HBA_TRUST);
    assert_int_equal(tcp(hba, "1.2.3.4", "alice", "alice"), HBA_TRUST);
    assert_int_equal(tcp(hba, "1.2.3.4", "erin", "frank"), HBA_REJECT);
    /* blanks around a comma keep the list going */
    assert_int_equal(tcp(hba, "1.2.3.4", "anything", "carol"), HBA_PASSWORD);
    assert_int_equal(tcp(hba, "1.2.3.4", "anything", "dave"), HBA_PASSWORD);
    assert_int_equal(tcp(hba, "1.2.3.4", "reports", "zed"), HBA_MD5);
    assert_int_equal(tcp(hba, "1.2.3.4", "a\"b", "zed"), HBA_MD5);
    hba_free(hba);
}

static void test_quoted_keywords_are_names(void **state)
{
    hba_t *hba = load_ok("host \"all\" \"all\" 0.0.0.0/0 trust\n"
                         "host \"sameuser\" all 0.0.0.0/0 md5\n");

    assert_int_equal(tcp(hba, "1.2.3.4", "all", "all"), HBA_TRUST);
    assert_int_equal(tcp(hba, "1.2.3.4", "all", "alice"), HBA_REJECT);
    assert_int_equal(tcp(hba, "1.2.3.4", "app", "all"), HBA_REJECT);
    assert_int_equal(tcp(hba, "1.2.3.4", "sameuser", "bob"), HBA_MD5);
    assert_int_equal(tcp(hba, "1.2.3.4", "bob", "bob"), HBA_REJECT);
    hba_free(hba);
}

static void test_sameuser_is_a_name_in_the_user_column(void **state)
{
    hba_t *hba = load_ok("host all sameuser 0.0.0.0/0 trust\n");

    assert_int_equal(tcp(hba, "1.2.3.4", "sameuser", "sameuser"), HBA_TRUST);
    assert_int_equal(tcp(hba, "1.2.3.4", "bob", "bob"), HBA_REJECT);
    hba_free(hba);
}

static void test_replication_matches_no_connection(void **state)
{
    hba_t *hba = load_ok("host replication all 0.0.0.0/0 trust\n"
                         "host replication,app all 0.0.0.0/0 md5\n");

    assert_int_equal(tcp(hba, "1.2.3.4", "replication", "alice"), HBA_REJECT);
    assert_int_equal(tcp(hba, "1.2.3.4", "app", "alice"), HBA_MD5);
    hba_free(hba);
}

static void test_ipv4_prefixes(void **state)
{
    hba_t *hba = load_ok("host d0 all 0.0.0.0/0 trust\n"
                         "host d8 all 10.0.0.0/8 trust\n"
                         "host d12 all 172.16.0.0/12 trust\n"
                         "host d32 all 192.168.1.10/32 trust\n"
                         "host dhost all 10.1.2.3/8 trust\n");

    assert_int_equal(tcp(hba, "0.0.0.0", "d0", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "255.255.255.255", "d0", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "2001:db8::1", "d0", "u"), HBA_REJECT);

    assert_int_equal(tcp(hba, "10.0.0.0", "d8", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "10.255.255.255", "d8", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "11.0.0.0", "d8", "u"), HBA_REJECT);
    assert_int_equal(tcp(hba, "9.255.255.255", "d8", "u"), HBA_REJECT);

    assert_int_equal(tcp(hba, "172.16.0.1", "d12", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "172.31.255.255", "d12", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "172.32.0.0", "d12", "u"), HBA_REJECT);
    assert_int_equal(tcp(hba, "172.15.255.255", "d12", "u"), HBA_REJECT);

    assert_int_equal(tcp(hba, "192.168.1.10", "d32", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "192.168.1.11", "d32", "u"), HBA_REJECT);
    assert_int_equal(tcp(hba, "192.168.1.9", "d32", "u"), HBA_REJECT);

    /* bits of the address beyond the prefix are ignored, as in PostgreSQL */
    assert_int_equal(tcp(hba, "10.200.0.1", "dhost", "u"), HBA_TRUST);
    hba_free(hba);
}

static void test_ipv6_prefixes(void **state)
{
    hba_t *hba = load_ok("host d128 all ::1/128 trust\n"
                         "host d32 all 2001:db8::/32 trust\n"
                         "host d0 all ::/0 trust\n");

    assert_int_equal(tcp(hba, "::1", "d128", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "::2", "d128", "u"), HBA_REJECT);
    assert_int_equal(tcp(hba, "127.0.0.1", "d128", "u"), HBA_REJECT);

    assert_int_equal(tcp(hba, "2001:db8::1", "d32", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "d32", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "2001:db9::1", "d32", "u"), HBA_REJECT);

    assert_int_equal(tcp(hba, "fe80::1", "d0", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "10.0.0.1", "d0", "u"), HBA_REJECT);
    hba_free(hba);
}

static void test_ipv4_mapped_ipv6_peer_matches_ipv4_rules(void **state)
{
    hba_t *hba = load_ok("host all all 10.0.0.0/8 trust\n"
                         "host all all ::/0 md5\n");

    assert_int_equal(tcp(hba, "::ffff:10.1.2.3", "app", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "::ffff:11.1.2.3", "app", "u"), HBA_REJECT);
    assert_int_equal(tcp(hba, "2001:db8::1", "app", "u"), HBA_MD5);
    hba_free(hba);
}

static void test_netmask_column(void **state)
{
    hba_t *hba = load_ok("host d4 all 192.168.0.0 255.255.0.0 trust\n"
                         "host d6 all fd00:: ffff:ffff:: md5\n");

    assert_int_equal(tcp(hba, "192.168.77.1", "d4", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "192.169.0.1", "d4", "u"), HBA_REJECT);
    assert_int_equal(tcp(hba, "fd00::1", "d6", "u"), HBA_MD5);
    assert_int_equal(tcp(hba, "fd00:0:ffff::1", "d6", "u"), HBA_MD5);
    assert_int_equal(tcp(hba, "fd00:1::1", "d6", "u"), HBA_REJECT);
    assert_int_equal(tcp(hba, "fd01::1", "d6", "u"), HBA_REJECT);
    hba_free(hba);
}

static void test_address_all_matches_ipv4_and_ipv6(void **state)
{
    hba_t *hba = load_ok("host all all all scram-sha-256\n");

    assert_int_equal(tcp(hba, "10.0.0.1", "app", "u"), HBA_SCRAM);
    assert_int_equal(tcp(hba, "2001:db8::1", "app", "u"), HBA_SCRAM);
    assert_int_equal(unix_client(hba, "app", "u"), HBA_REJECT);
    hba_free(hba);
}

static void test_ssl_types_follow_tls(void **state)
{
    hba_t *hba = load_ok("hostssl sslonly all 0.0.0.0/0 scram-sha-256\n"
                         "hostnossl nossl all 0.0.0.0/0 password\n"
                         "host any all 0.0.0.0/0 md5\n");

    assert_int_equal(tls(hba, "1.2.3.4", "sslonly", "u"), HBA_SCRAM);
    assert_int_equal(tcp(hba, "1.2.3.4", "sslonly", "u"), HBA_REJECT);
    assert_int_equal(tcp(hba, "1.2.3.4", "nossl", "u"), HBA_PASSWORD);
    assert_int_equal(tls(hba, "1.2.3.4", "nossl", "u"), HBA_REJECT);
    assert_int_equal(tcp(hba, "1.2.3.4", "any", "u"), HBA_MD5);
    assert_int_equal(tls(hba, "1.2.3.4", "any", "u"), HBA_MD5);
    hba_free(hba);
}

static void test_hostssl_and_hostnossl_fall_through_to_later_rules(void **state)
{
    hba_t *hba = load_ok("hostssl all all 0.0.0.0/0 scram-sha-256\n"
                         "hostnossl all all 0.0.0.0/0 reject\n");

    assert_int_equal(tls(hba, "1.2.3.4", "app", "u"), HBA_SCRAM);
    assert_int_equal(tcp(hba, "1.2.3.4", "app", "u"), HBA_REJECT);
    hba_free(hba);

    hba = load_ok("hostnossl all all 0.0.0.0/0 password\n"
                  "host all all 0.0.0.0/0 scram-sha-256\n");
    assert_int_equal(tcp(hba, "1.2.3.4", "app", "u"), HBA_PASSWORD);
    assert_int_equal(tls(hba, "1.2.3.4", "app", "u"), HBA_SCRAM);
    hba_free(hba);
}

static void test_local_matches_only_unix_sockets(void **state)
{
    hba_t *hba = load_ok("local all all trust\n"
                         "host all all 0.0.0.0/0 md5\n");
    struct sockaddr_storage unix_peer;

    assert_int_equal(unix_client(hba, "app", "u"), HBA_TRUST);
    assert_int_equal(hba_match(hba, true, true, NULL, "app", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "127.0.0.1", "app", "u"), HBA_MD5);
    hba_free(hba);

    hba = load_ok("host all all all trust\n");
    assert_int_equal(unix_client(hba, "app", "u"), HBA_REJECT);
    /* An address of another family on a TCP connection matches no host line. */
    memset(&unix_peer, 0, sizeof(unix_peer));
    unix_peer.ss_family = AF_UNIX;
    assert_int_equal(hba_match(hba, false, false, &unix_peer, "app", "u"), HBA_REJECT);
    assert_int_equal(hba_match(hba, false, false, NULL, "app", "u"), HBA_REJECT);
    hba_free(hba);

    hba = load_ok("local app alice reject\nlocal all all password\n");
    assert_int_equal(unix_client(hba, "app", "alice"), HBA_REJECT);
    assert_int_equal(unix_client(hba, "app", "bob"), HBA_PASSWORD);
    assert_int_equal(tcp(hba, "127.0.0.1", "app", "bob"), HBA_REJECT);
    hba_free(hba);
}

static void test_comments_blank_lines_and_options(void **state)
{
    hba_t *hba = load_ok("# TYPE DATABASE USER ADDRESS METHOD\n"
                         "\n"
                         "   \t\n"
                         "hostssl all all 0.0.0.0/0 cert clientcert=verify-full # trailing\n"
                         "host \"we#ird\" all all md5 foo=bar baz=\"q x\"\r\n"
                         "\thost\tall\tall\t::/0\ttrust\n");

    assert_int_equal(tls(hba, "1.2.3.4", "app", "u"), HBA_CERT);
    assert_int_equal(tcp(hba, "1.2.3.4", "we#ird", "u"), HBA_MD5);
    assert_int_equal(tcp(hba, "::1", "app", "u"), HBA_TRUST);
    assert_int_equal(tcp(hba, "1.2.3.4", "app", "u"), HBA_REJECT);
    hba_free(hba);
}

static void test_unknown_method_is_an_error_on_its_line(void **state)
{
    expect_error("local all all trust\n"
                 "# comment\n"
                 "host all all 0.0.0.0/0 md6\n",
                 ":3: unknown method \"md6\" (expected trust, reject, password, md5, "
                 "scram-sha-256 or cert)");
    expect_error("host all all all SCRAM-SHA-256\n",
                 ":1: unknown method \"SCRAM-SHA-256\" (expected trust, reject, password, md5, "
                 "scram-sha-256 or cert)");
    expect_error("\nlocal all all peer\n", ":2: method \"peer\" is not supported");
    expect_error("host all all all ldap ldapserver=x\n", ":1: method \"ldap\" is not supported");
}

static void test_bad_addresses_are_errors_on_their_line(void **state)
{
    static const struct {
        const char *line;
        const char *error;
    } cases[] = {
        {"host all all 10.0.0.256/8 md5",
         ":2: invalid address \"10.0.0.256/8\" (host names are not supported)"},
        {"host all all db.example.com md5",
         ":2: invalid address \"db.example.com\" (host names are not supported)"},
        {"host all all ::g/128 md5",
         ":2: invalid address \"::g/128\" (host names are not supported)"},
        {"host all all 10.0.0.0/33 md5",
         ":2: invalid prefix length \"/33\" for an IPv4 address 10.0.0.0"},
        {"host all all ::/129 md5", ":2: invalid prefix length \"/129\" for an IPv6 address ::"},
        {"host all all 10.0.0.0/ md5",
         ":2: invalid prefix length \"/\" for an IPv4 address 10.0.0.0"},
        {"host all all 10.0.0.0/-1 md5",
         ":2: invalid prefix length \"/-1\" for an IPv4 address 10.0.0.0"},
        {"host all all 10.0.0.0/8x md5",
         ":2: invalid prefix length \"/8x\" for an IPv4 address 10.0.0.0"},
        {"host all all 10.0.0.1 md5",
         ":2: address \"10.0.0.1\" has no /prefix length, and \"md5\" is not a netmask"},
        {"host all all 10.0.0.0 ffff:: md5",
         ":2: address \"10.0.0.0\" has no /prefix length, and \"ffff::\" is not a netmask"},
        {"host all all 10.0.0.1", ":2: address \"10.0.0.1\" needs a /prefix length or a netmask "
                                  "column"},
        {"host all all samehost md5", ":2: address \"samehost\" is not supported"},
        {"host all all samenet md5", ":2: address \"samenet\" is not supported"},
        {"host all all", ":2: missing the address column"},
    };
    char text[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "local all all trust\n%s\n", cases[i].line);
        expect_error(text, cases[i].error);
    }
}

static void test_groups_files_and_unsupported_keywords_are_errors(void **state)
{
    expect_error("host all +admins 0.0.0.0/0 md5\n",
                 ":1: user \"+admins\": group membership (+role) is not supported");
    expect_error("host app,+admins all 0.0.0.0/0 md5\n",
                 ":1: database \"+admins\": group membership (+role) is not supported");
    expect_error("\n\nhost all alice,@users.txt 0.0.0.0/0 md5\n",
                 ":3: user \"@users.txt\": including a file (@file) is not supported");
    expect_error("host @dbs.txt all 0.0.0.0/0 md5\n",
                 ":1: database \"@dbs.txt\": including a file (@file) is not supported");
    expect_error("host samerole all 0.0.0.0/0 md5\n", ":1: database \"samerole\" is not supported");
    expect_error("host samegroup all 0.0.0.0/0 md5\n",
                 ":1: database \"samegroup\" is not supported");
}

static void test_quoted_parts_join_the_word_around_them(void **state)
{
    hba_t *hba = load_ok("host \"my app\"_v2,x\"a,b\" a\"l\"l 0.0.0.0/0 trust\n");

    assert_int_equal(tcp(hba, "1.2.3.4", "my app_v2", "all"), HBA_TRUST);
    assert_int_equal(tcp(hba, "1.2.3.4", "xa,b", "all"), HBA_TRUST);
    assert_int_equal(tcp(hba, "1.2.3.4", "my app_v2", "bob"), HBA_REJECT);
    hba_free(hba);
}

static void test_quoted_plus_and_at_are_names(void **state)
{
    hba_t *hba = load_ok("host all \"+admins\",\"@x\" 0.0.0.0/0 trust\n");

    assert_int_equal(tcp(hba, "1.2.3.4", "app", "+admins"), HBA_TRUST);
    assert_int_equal(tcp(hba, "1.2.3.4", "app", "@x"), HBA_TRUST);
    assert_int_equal(tcp(hba, "1.2.3.4", "app", "admins"), HBA_REJECT);
    hba_free(hba);
}

static void test_malformed_lines_are_errors(void **state)
{
    static const struct {
        const char *line;
        const char *error;
    } cases[] = {
        {"hots all all all md5",
         ":1: unknown connection type \"hots\" (expected local, host, hostssl or hostnossl)"},
        {"Host all all all md5",
         ":1: unknown connection type \"Host\" (expected local, host, hostssl or hostnossl)"},
        {"hostgssenc all all all md5", ":1: connection type \"hostgssenc\" is not supported"},
        {", all all all md5", ":1: expected a connection type, got \",\""},
        {"local", ":1: missing the database column"},
        {"local all # comment", ":1: missing the user column"},
        {"local all all", ":1: missing the method column"},
        {"local all all 127.0.0.1/32 trust",
         ":1: unknown method \"127.0.0.1/32\" (expected trust, reject, password, md5, "
         "scram-sha-256 or cert)"},
        {"host all all all , md5", ":1: expected a method, got \",\""},
        /* a comma continues the user list, which then takes the method as a name */
        {"host all all , md5", ":1: missing the address column"},
        {"host app, all all md5", ":1: invalid address \"md5\" (host names are not supported)"},
        {"host app,", ":1: database: the list ends with a comma"},
        {"host app,,b all all md5", ":1: database: empty name in the list"},
        {"host ,app all all md5", ":1: database: empty name in the list"},
        {"host all \"\" all md5", ":1: user: empty name"},
        {"host \"app all all md5", ":1: closing quote is missing"},
        {"host all all all md5 opt=\"x", ":1: closing quote is missing"},
        {"host all all all md5 clientcert", ":1: option \"clientcert\" after the method is not "
                                            "name=value"},
        {"host all all all md5 =x", ":1: option \"=x\" after the method is not name=value"},
        {"host all all all cert", ":1: method \"cert\" is only allowed on hostssl lines"},
        {"local all all cert", ":1: method \"cert\" is only allowed on hostssl lines"},
    };
    char text[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "%s\n", cases[i].line);
        expect_error(text, cases[i].error);
    }
}

static void test_names_longer_than_63_bytes_are_errors(void **state)
{
    char name[65];
    char text[256];
    char error[256];
    hba_t *hba;

    memset(name, 'n', 64);
    name[64] = '\0';
    snprintf(text, sizeof(text), "host all %s all md5\n", name);
    snprintf(error, sizeof(error), ":1: user: name \"%s\" is longer than 63 bytes", name);
    expect_error(text, error);
    name[63] = '\0';
    snprintf(text, sizeof(text), "host %s all all md5\n", name);
    hba = load_ok(text);
    assert_int_equal(tcp(hba, "1.2.3.4", name, "u"), HBA_MD5);
    hba_free(hba);
}

static void test_nul_byte_is_an_error(void **state)
{
    static const char text[] = "local all all trust\nhost all all all md5\0\n";

    expect_error_bytes(text, sizeof(text) - 1, ":2: line contains a NUL byte");
}

static void test_missing_file_is_reported(void **state)
{
    char path[128];
    char err[512] = "";
    char want[600];
    hba_t *hba = (hba_t *)&hba;

    snprintf(path, sizeof(path), "%s/no-such-file.conf", dir);
    assert_int_equal(hba_load(path, &hba, err, sizeof(err)), -1);
    assert_null(hba);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);
}

static void test_many_rules_keep_file_order(void **state)
{
    enum { N = 200 };
    size_t size = (size_t)N * 64;
    char *text = malloc(size);
    size_t len = 0;
    char database[32];
    hba_t *hba;

    assert_non_null(text);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(text + len, size - len, "host db%d all 10.0.0.%d/32 %s\n", i,
                                i % 256, i % 2 == 0 ? "trust" : "md5");
    hba = load_ok(text);
    for (int i = 0; i < N; i++) {
        char ip[32];

        snprintf(database, sizeof(database), "db%d", i);
        snprintf(ip, sizeof(ip), "10.0.0.%d", i % 256);
        assert_int_equal(tcp(hba, ip, database, "u"), i % 2 == 0 ? HBA_TRUST : HBA_MD5);
    }
    hba_free(hba);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_matching_rule_wins),
        cmocka_unit_test(test_no_matching_rule_rejects),
        cmocka_unit_test(test_every_method_is_parsed),
        cmocka_unit_test(test_method_names),
        cmocka_unit_test(test_database_and_user_lists),
        cmocka_unit_test(test_quoted_keywords_are_names),
        cmocka_unit_test(test_sameuser_is_a_name_in_the_user_column),
        cmocka_unit_test(test_replication_matches_no_connection),
        cmocka_unit_test(test_ipv4_prefixes),
        cmocka_unit_test(test_ipv6_prefixes),
        cmocka_unit_test(test_ipv4_mapped_ipv6_peer_matches_ipv4_rules),
        cmocka_unit_test(test_netmask_column),
        cmocka_unit_test(test_address_all_matches_ipv4_and_ipv6),
        cmocka_unit_test(test_ssl_types_follow_tls),
        cmocka_unit_test(test_hostssl_and_hostnossl_fall_through_to_later_rules),
        cmocka_unit_test(test_local_matches_only_unix_sockets),
        cmocka_unit_test(test_comments_blank_lines_and_options),
        cmocka_unit_test(test_unknown_method_is_an_error_on_its_line),
        cmocka_unit_test(test_bad_addresses_are_errors_on_their_line),
        cmocka_unit_test(test_groups_files_and_unsupported_keywords_are_errors),
        cmocka_unit_test(test_quoted_parts_join_the_word_around_them),
        cmocka_unit_test(test_quoted_plus_and_at_are_names),
        cmocka_unit_test(test_malformed_lines_are_errors),
        cmocka_unit_test(test_names_longer_than_63_bytes_are_errors),
        cmocka_unit_test(test_nul_byte_is_an_error),
        cmocka_unit_test(test_missing_file_is_reported),
        cmocka_unit_test(test_many_rules_keep_file_order),
    };

    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
