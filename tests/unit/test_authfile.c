/*
 * test_authfile.c
 *    Unit tests of authfile.c: the userlist.txt format (quotes, "" escapes, comments, text
 *    after the secret), limits, duplicates, the kind of a secret, lookup in a large file, and
 *    the exact "path:line: what is wrong" errors.
 *
 * The tests write their files into a directory that mkdtemp() makes for the whole group and
 * that the group teardown removes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authfile.h"

static char dir[64];

static int make_dir(void **state)
{
    strcpy(dir, "/tmp/pgturbo-authfile-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int remove_dir(void **state)
{
    return rmdir(dir);
}

/* Writes len bytes of text to <dir>/userlist.txt and puts that path in path. */
static void write_file(char *path, size_t size, const char *text, size_t len)
{
    FILE *f;

    snprintf(path, size, "%s/userlist.txt", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Loads the len bytes of text, which must be valid; the caller frees with authfile_free(). */
static authfile_t *load_ok_bytes(const char *text, size_t len)
{
    char path[128];
    char err[512] = "";
    authfile_t *af = NULL;
    int rc;

    write_file(path, sizeof(path), text, len);
    rc = authfile_load(path, &af, err, sizeof(err));
    unlink(path);
    if (rc != 0)
        fail_msg("authfile_load failed: %s", err);
    assert_non_null(af);
    assert_string_equal(err, "");
    return af;
}

static authfile_t *load_ok(const char *text)
{
    return load_ok_bytes(text, strlen(text));
}

/* Loads the len bytes of text and checks that the error is the file's path, then expected. */
static void expect_error_bytes(const char *text, size_t len, const char *expected)
{
    char path[128];
    char err[512] = "";
    char want[1024];
    authfile_t *af = (authfile_t *)&af;
    int rc;

    write_file(path, sizeof(path), text, len);
    rc = authfile_load(path, &af, err, sizeof(err));
    unlink(path);
    assert_int_equal(rc, -1);
    assert_null(af);
    snprintf(want, sizeof(want), "%s%s", path, expected);
    assert_string_equal(err, want);
}

static void expect_error(const char *text, const char *expected)
{
    expect_error_bytes(text, strlen(text), expected);
}

/* Returns a malloc'ed string of n copies of c; the caller frees it. */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);

    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_users_and_secrets_are_loaded(void **state)
{
    authfile_t *af = load_ok("\"alice\" \"secret1\"\n"
                             "\"bob\" \"md5a3556571e93b0d20722ba62be61e8c2d\"\n"
                             "\"carol\" \"SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy\"\n");

    assert_int_equal(authfile_count(af), 3);
    assert_string_equal(authfile_lookup(af, "alice"), "secret1");
    assert_string_equal(authfile_lookup(af, "bob"), "md5a3556571e93b0d20722ba62be61e8c2d");
    assert_string_equal(authfile_lookup(af, "carol"),
                        "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy");
    authfile_free(af);
}

static void test_lookup_is_exact(void **state)
{
    authfile_t *af = load_ok("\"alice\" \"pw\"\n");

    assert_null(authfile_lookup(af, "Alice"));
    assert_null(authfile_lookup(af, "alic"));
    assert_null(authfile_lookup(af, "alice "));
    assert_null(authfile_lookup(af, ""));
    assert_null(authfile_lookup(af, "nobody"));
    assert_string_equal(authfile_lookup(af, "alice"), "pw");
    authfile_free(af);
}

static void test_doubled_quotes_are_one_quote(void **state)
{
    authfile_t *af = load_ok("\"a\"\"b\" \"p\"\"w\"\"\"\n"
                             "\"\"\"q\"\"\" \"\"\"\"\n"
                             "\"empty\" \"\"\n");

    assert_int_equal(authfile_count(af), 3);
    assert_string_equal(authfile_lookup(af, "a\"b"), "p\"w\"");
    assert_string_equal(authfile_lookup(af, "\"q\""), "\"");
    assert_string_equal(authfile_lookup(af, "empty"), "");
    assert_null(authfile_lookup(af, "a\"\"b"));
    authfile_free(af);
}

static void test_spaces_and_semicolons_inside_quotes_are_kept(void **state)
{
    authfile_t *af = load_ok("\"first last\" \"p w;#x\"\n");

    assert_string_equal(authfile_lookup(af, "first last"), "p w;#x");
    authfile_free(af);
}

static void test_comments_and_blank_lines_are_skipped(void **state)
{
    authfile_t *af = load_ok("; a comment\n"
                             "# another \"x\" \"y\"\n"
                             "\n"
                             "   \t \n"
                             "  ; indented comment\n"
                             "\t# indented comment\n"
                             "  \"alice\"\t\"pw\"\n");

    assert_int_equal(authfile_count(af), 1);
    assert_string_equal(authfile_lookup(af, "alice"), "pw");
    assert_null(authfile_lookup(af, "x"));
    authfile_free(af);
}

static void test_text_after_the_secret_is_ignored(void **state)
{
    authfile_t *af = load_ok("\"alice\" \"pw\" \"extra\" more text\n"
                             "\"bob\" \"pw2\"trailing\n");

    assert_int_equal(authfile_count(af), 2);
    assert_string_equal(authfile_lookup(af, "alice"), "pw");
    assert_string_equal(authfile_lookup(af, "bob"), "pw2");
    assert_null(authfile_lookup(af, "extra"));
    authfile_free(af);
}

static void test_crlf_and_a_missing_final_newline_are_accepted(void **state)
{
    authfile_t *af = load_ok("\"alice\" \"pw\"\r\n\"bob\" \"pw2\"");

    assert_string_equal(authfile_lookup(af, "alice"), "pw");
    assert_string_equal(authfile_lookup(af, "bob"), "pw2");
    authfile_free(af);
}

static void test_empty_file_has_no_users(void **state)
{
    authfile_t *af = load_ok("");

    assert_int_equal(authfile_count(af), 0);
    assert_null(authfile_lookup(af, "alice"));
    authfile_free(af);
}

static void test_later_line_of_a_user_wins(void **state)
{
    authfile_t *af = load_ok("\"alice\" \"old\"\n"
                             "\"bob\" \"b\"\n"
                             "\"alice\" \"new\"\n");

    assert_int_equal(authfile_count(af), 2);
    assert_string_equal(authfile_lookup(af, "alice"), "new");
    assert_string_equal(authfile_lookup(af, "bob"), "b");
    authfile_free(af);
}

static void test_name_of_63_bytes_and_secret_of_1023_bytes_are_accepted(void **state)
{
    char *name = repeat('n', 63);
    char *secret = repeat('s', 1023);
    char text[1200];
    authfile_t *af;

    snprintf(text, sizeof(text), "\"%s\" \"%s\"\n", name, secret);
    af = load_ok(text);
    assert_string_equal(authfile_lookup(af, name), secret);
    authfile_free(af);
    free(name);
    free(secret);
}

static void test_limits_count_unquoted_bytes(void **state)
{
    /* 62 bytes and one doubled quote: 64 bytes in the file, 63 once unquoted. */
    char *name = repeat('n', 64);
    char text[200];
    authfile_t *af;

    name[10] = '"';
    name[11] = '"';
    snprintf(text, sizeof(text), "\"%s\" \"pw\"\n", name);
    af = load_ok(text);
    memmove(name + 11, name + 12, strlen(name + 12) + 1);
    assert_int_equal(strlen(name), 63);
    assert_string_equal(authfile_lookup(af, name), "pw");
    authfile_free(af);
    free(name);
}

static void test_name_of_64_bytes_is_an_error_on_its_line(void **state)
{
    char *name = repeat('n', 64);
    char text[256];

    snprintf(text, sizeof(text), "; users\n\"alice\" \"pw\"\n\"%s\" \"pw\"\n\"bob\" \"pw\"\n",
             name);
    expect_error(text, ":3: user name is longer than 63 bytes");
    free(name);
}

static void test_secret_of_1024_bytes_is_an_error_on_its_line(void **state)
{
    char *secret = repeat('s', 1024);
    char text[1200];

    snprintf(text, sizeof(text), "\n\"alice\" \"%s\"\n", secret);
    expect_error(text, ":2: user \"alice\": secret is longer than 1023 bytes");
    free(secret);
}

static void test_missing_closing_quote_is_an_error_on_its_line(void **state)
{
    expect_error("\"alice\" \"pw\"\n# comment\n\"bob \"pw\"\n",
                 ":3: user \"bob \": expected a secret in double quotes after the name");
    expect_error("\"alice\" \"pw\"\n\n\"bob\n\"carol\" \"pw\"\n",
                 ":3: user name: closing quote is missing");
    expect_error("\"alice\" \"pw\"\n\"bob\" \"pw\n\"carol\" \"pw\"\n",
                 ":2: user \"bob\": secret: closing quote is missing");
    expect_error("\"alice\" \"pw\"\"\n", ":1: user \"alice\": secret: closing quote is missing");
}

static void test_malformed_lines_are_errors(void **state)
{
    expect_error("alice pw\n", ":1: expected a user name in double quotes");
    expect_error("\"alice\" pw\n",
                 ":1: user \"alice\": expected a secret in double quotes after the name");
    expect_error("\"alice\"\n",
                 ":1: user \"alice\": expected a secret in double quotes after the name");
    expect_error("\"alice\"\n\"pw\"\n",
                 ":1: user \"alice\": expected a secret in double quotes after the name");
    expect_error("\"\" \"pw\"\n", ":1: user name is empty");
}

static void test_nul_byte_is_an_error(void **state)
{
    static const char text[] = "\"alice\" \"pw\"\n\"bob\" \"p\0w\"\n";

    expect_error_bytes(text, sizeof(text) - 1, ":2: line contains a NUL byte");
}

static void test_missing_file_is_reported(void **state)
{
    char path[128];
    char err[512] = "";
    char want[600];
    authfile_t *af = (authfile_t *)&af;

    snprintf(path, sizeof(path), "%s/no-such-file.txt", dir);
    assert_int_equal(authfile_load(path, &af, err, sizeof(err)), -1);
    assert_null(af);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);
}

static void test_error_is_truncated_to_errlen(void **state)
{
    char path[128];
    char err[8];
    authfile_t *af = NULL;

    snprintf(path, sizeof(path), "%s/no-such-file.txt", dir);
    memset(err, 'x', sizeof(err));
    assert_int_equal(authfile_load(path, &af, err, sizeof(err)), -1);
    assert_int_equal(strlen(err), sizeof(err) - 1);
    assert_memory_equal(err, path, sizeof(err) - 1);
}

static void test_ten_thousand_users_are_found(void **state)
{
    enum { N = 10000 };
    size_t size = (size_t)N * 64;
    char *text = malloc(size);
    size_t len = 0;
    char name[32];
    char secret[32];
    authfile_t *af;

    assert_non_null(text);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(text + len, size - len, "\"user%d\" \"secret%d\"\n", i, i);
    af = load_ok_bytes(text, len);
    assert_int_equal(authfile_count(af), N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "user%d", i);
        snprintf(secret, sizeof(secret), "secret%d", i);
        assert_string_equal(authfile_lookup(af, name), secret);
    }
    assert_null(authfile_lookup(af, "user10000"));
    assert_null(authfile_lookup(af, "user"));
    authfile_free(af);
    free(text);
}

static void test_md5_secret_is_md5_and_exactly_32_lowercase_hex(void **state)
{
    assert_int_equal(authfile_secret_kind("md5a3556571e93b0d20722ba62be61e8c2d"), AUTH_SECRET_MD5);
    assert_int_equal(authfile_secret_kind("md50123456789abcdef0123456789abcdef"), AUTH_SECRET_MD5);
    /* 31 and 33 hex digits */
    assert_int_equal(authfile_secret_kind("md5a3556571e93b0d20722ba62be61e8c2"), AUTH_SECRET_PLAIN);
    assert_int_equal(authfile_secret_kind("md5a3556571e93b0d20722ba62be61e8c2d0"),
                     AUTH_SECRET_PLAIN);
    /* uppercase hex, a non-hex letter, an uppercase prefix */
    assert_int_equal(authfile_secret_kind("md5A3556571E93B0D20722BA62BE61E8C2D"),
                     AUTH_SECRET_PLAIN);
    assert_int_equal(authfile_secret_kind("md5g3556571e93b0d20722ba62be61e8c2d"),
                     AUTH_SECRET_PLAIN);
    assert_int_equal(authfile_secret_kind("MD5a3556571e93b0d20722ba62be61e8c2d"),
                     AUTH_SECRET_PLAIN);
    assert_int_equal(authfile_secret_kind("md5"), AUTH_SECRET_PLAIN);
}

static void test_scram_secret_starts_with_scram_sha_256_dollar(void **state)
{
    assert_int_equal(authfile_secret_kind("SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"),
                     AUTH_SECRET_SCRAM);
    assert_int_equal(authfile_secret_kind("SCRAM-SHA-256$"), AUTH_SECRET_SCRAM);
    assert_int_equal(authfile_secret_kind("SCRAM-SHA-256"), AUTH_SECRET_PLAIN);
    assert_int_equal(authfile_secret_kind("scram-sha-256$4096:c2FsdA==$a:b"), AUTH_SECRET_PLAIN);
    assert_int_equal(authfile_secret_kind("SCRAM-SHA-1$4096:c2FsdA==$a:b"), AUTH_SECRET_PLAIN);
}

static void test_other_secrets_are_plain(void **state)
{
    assert_int_equal(authfile_secret_kind(""), AUTH_SECRET_PLAIN);
    assert_int_equal(authfile_secret_kind("secret"), AUTH_SECRET_PLAIN);
    assert_int_equal(authfile_secret_kind(" md5a3556571e93b0d20722ba62be61e8c2d"),
                     AUTH_SECRET_PLAIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_users_and_secrets_are_loaded),
        cmocka_unit_test(test_lookup_is_exact),
        cmocka_unit_test(test_doubled_quotes_are_one_quote),
        cmocka_unit_test(test_spaces_and_semicolons_inside_quotes_are_kept),
        cmocka_unit_test(test_comments_and_blank_lines_are_skipped),
        cmocka_unit_test(test_text_after_the_secret_is_ignored),
        cmocka_unit_test(test_crlf_and_a_missing_final_newline_are_accepted),
        cmocka_unit_test(test_empty_file_has_no_users),
        cmocka_unit_test(test_later_line_of_a_user_wins),
        cmocka_unit_test(test_name_of_63_bytes_and_secret_of_1023_bytes_are_accepted),
        cmocka_unit_test(test_limits_count_unquoted_bytes),
        cmocka_unit_test(test_name_of_64_bytes_is_an_error_on_its_line),
        cmocka_unit_test(test_secret_of_1024_bytes_is_an_error_on_its_line),
        cmocka_unit_test(test_missing_closing_quote_is_an_error_on_its_line),
        cmocka_unit_test(test_malformed_lines_are_errors),
        cmocka_unit_test(test_nul_byte_is_an_error),
        cmocka_unit_test(test_missing_file_is_reported),
        cmocka_unit_test(test_error_is_truncated_to_errlen),
        cmocka_unit_test(test_ten_thousand_users_are_found),
        cmocka_unit_test(test_md5_secret_is_md5_and_exactly_32_lowercase_hex),
        cmocka_unit_test(test_scram_secret_starts_with_scram_sha_256_dollar),
        cmocka_unit_test(test_other_secrets_are_plain),
    };

    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
