/*
 * test_cachelogical.c
 *    Unit tests of cachelogical_parse_line, test_decoding's line parser: BEGIN and COMMIT with
 *    and without an xid, INSERT, UPDATE and DELETE lines with their values, quoted identifiers
 *    with "" escapes, dots, commas, colons and spaces inside, a TRUNCATE of several tables,
 *    lines that are not changes, and change lines that do not parse (none of whose tables is
 *    reported). Lines are given by length, not NUL-terminated. And cachelogical_start's
 *    refusals, which come before any thread or connection: a connection string that does not
 *    parse and slot prefixes that would not make valid slot names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "cachelogical.h"

#include <stdio.h>
#include <string.h>

/* The tables a line named, as "schema|relname" each, in order. */
typedef struct seen {
    int n;
    char tables[8][2 * CACHELOGICAL_NAME_LEN + 2];
} seen_t;

static void collect(void *arg, const char *schema, const char *relname)
{
    seen_t *s = arg;
    assert_non_null(schema);
    assert_non_null(relname);
    assert_true(s->n < 8);
    snprintf(s->tables[s->n++], sizeof(s->tables[0]), "%s|%s", schema, relname);
}

/* Parses text (without its NUL) and returns what it is; *s gets the tables. */
static cachelogical_line_t parse(const char *text, seen_t *s)
{
    memset(s, 0, sizeof(*s));
    return cachelogical_parse_line(text, strlen(text), collect, s);
}

/* Asserts that text is a change of exactly one table, "schema|relname". */
static void assert_change(const char *text, const char *table)
{
    seen_t s;
    assert_int_equal(parse(text, &s), CACHELOGICAL_LINE_CHANGE);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.tables[0], table);
}

/* Asserts that text is a change line that does not parse, and names no table. */
static void assert_unknown(const char *text)
{
    seen_t s;
    if (parse(text, &s) != CACHELOGICAL_LINE_UNKNOWN)
        fail_msg("not UNKNOWN: \"%s\"", text);
    assert_int_equal(s.n, 0);
}

static void assert_other(const char *text)
{
    seen_t s;
    if (parse(text, &s) != CACHELOGICAL_LINE_OTHER)
        fail_msg("not OTHER: \"%s\"", text);
    assert_int_equal(s.n, 0);
}

static void test_begin_and_commit(void **state)
{
    seen_t s;
    assert_int_equal(parse("BEGIN", &s), CACHELOGICAL_LINE_BEGIN);
    assert_int_equal(parse("BEGIN 742", &s), CACHELOGICAL_LINE_BEGIN);
    assert_int_equal(parse("COMMIT", &s), CACHELOGICAL_LINE_COMMIT);
    assert_int_equal(parse("COMMIT 742", &s), CACHELOGICAL_LINE_COMMIT);
    assert_int_equal(parse("COMMIT 742 (at 2025-01-01 00:00:00+00)", &s), CACHELOGICAL_LINE_COMMIT);
    assert_int_equal(s.n, 0);
    assert_other("BEGINNING");
    assert_other("COMMITTED");
    assert_other("begin");
    assert_other(" BEGIN");
}

static uint32_t xid_of(const char *text)
{
    return cachelogical_line_xid(text, strlen(text));
}

static void test_xid_of_begin_and_commit(void **state)
{
    assert_int_equal(xid_of("COMMIT 742"), 742);
    assert_int_equal(xid_of("BEGIN 742"), 742);
    assert_int_equal(xid_of("COMMIT 742 (at 2025-01-01 00:00:00+00)"), 742);
    assert_int_equal(xid_of("COMMIT 4294967295"), 4294967295u);
    assert_int_equal(xid_of("COMMIT 4294967296"), 0);
    assert_int_equal(xid_of("COMMIT 99999999999999999999999"), 0);
    assert_int_equal(xid_of("COMMIT"), 0);
    assert_int_equal(xid_of("COMMIT "), 0);
    assert_int_equal(xid_of("COMMIT x"), 0);
    assert_int_equal(xid_of("COMMIT 12x"), 0);
    assert_int_equal(xid_of("COMMITTED 12"), 0);
    assert_int_equal(xid_of("table public.t: INSERT: id[integer]:1"), 0);
    /* The length bounds the line. */
    assert_int_equal(cachelogical_line_xid("COMMIT 7421", 10), 742);
}

static void test_xid_visible_only_below_xmax_and_not_running(void **state)
{
    const uint32_t running[] = {90, 95};
    assert_true(cachelogical_xid_visible(89, 100, running, 2));
    assert_true(cachelogical_xid_visible(99, 100, running, 2));
    assert_false(cachelogical_xid_visible(95, 100, running, 2));
    assert_false(cachelogical_xid_visible(90, 100, running, 2));
    /* At or past xmax: the newest transaction, waiting for its standby, is not in running. */
    assert_false(cachelogical_xid_visible(100, 100, NULL, 0));
    assert_false(cachelogical_xid_visible(101, 100, NULL, 0));
    /* Modulo 2^32: just before and after a wraparound. */
    assert_true(cachelogical_xid_visible(4294967295u, 3, NULL, 0));
    assert_false(cachelogical_xid_visible(3, 4294967295u, NULL, 0));
    assert_true(cachelogical_xid_visible(3, 4, NULL, 0));
}

static void test_plain_changes(void **state)
{
    assert_change("table public.users: INSERT: id[integer]:1 name[text]:'ann'", "public|users");
    assert_change("table public.users: UPDATE: id[integer]:1 name[text]:'bob'", "public|users");
    assert_change("table public.users: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2",
                  "public|users");
    assert_change("table public.users: DELETE: id[integer]:2", "public|users");
    assert_change("table public.users: DELETE: (no-tuple-data)", "public|users");
    assert_change("table app_2.t_1: INSERT:", "app_2|t_1");
    /* Values may hold anything, lines and quotes included: only the head is read. */
    assert_change("table s.t: INSERT: v[text]:'x\ntable a.b: DELETE: \"'", "s|t");
}

static void test_quoted_identifiers(void **state)
{
    assert_change("table \"My Schema\".\"Odd.Name\": UPDATE: id[integer]:1", "My Schema|Odd.Name");
    assert_change("table public.\"say \"\"hi\"\"\": INSERT: id[integer]:1", "public|say \"hi\"");
    assert_change("table \"a, b: c\".\"d.e: INSERT:\": DELETE: id[integer]:1",
                  "a, b: c|d.e: INSERT:");
    assert_change("table \"\"\"\".\"x\": INSERT: id[integer]:1", "\"|x");
    assert_change("table public.\"user\": INSERT: id[integer]:1", "public|user");
    assert_change("table \"Caf\xc3\xa9\".\"T\xc3\xa4\": INSERT: id[integer]:1",
                  "Caf\xc3\xa9|T\xc3\xa4");
}

static void test_truncate_of_several_tables(void **state)
{
    seen_t s;
    assert_int_equal(parse("table public.a, \"Other\".\"b, c\", x.\"y.z\": TRUNCATE: restart_seqs "
                           "cascade",
                           &s),
                     CACHELOGICAL_LINE_CHANGE);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.tables[0], "public|a");
    assert_string_equal(s.tables[1], "Other|b, c");
    assert_string_equal(s.tables[2], "x|y.z");
    assert_change("table public.tab1: TRUNCATE: (no-flags)", "public|tab1");
}

static void test_identifier_lengths(void **state)
{
    char line[256];
    char name[70];

    memset(name, 'n', 63);
    name[63] = '\0';
    snprintf(line, sizeof(line), "table s.%s: INSERT: id[integer]:1", name);
    seen_t s;
    assert_int_equal(parse(line, &s), CACHELOGICAL_LINE_CHANGE);
    assert_int_equal(strlen(s.tables[0]), 2 + 63);
    snprintf(line, sizeof(line), "table s.\"%s\": INSERT: id[integer]:1", name);
    assert_int_equal(parse(line, &s), CACHELOGICAL_LINE_CHANGE);

    /* No name of PostgreSQL is 64 bytes long. */
    snprintf(line, sizeof(line), "table s.%sn: INSERT: id[integer]:1", name);
    assert_unknown(line);
    snprintf(line, sizeof(line), "table \"%sn\".t: INSERT: id[integer]:1", name);
    assert_unknown(line);
}

static void test_lines_that_are_not_changes(void **state)
{
    assert_other("");
    assert_other("message: transactional: 1 prefix: p, sz: 11 content:table a.b: INSERT:");
    assert_other("tables public.a: INSERT:");
    assert_other("table");
    assert_other("PREPARE TRANSACTION 'x'");
    assert_other("\x01\x02garbage");
}

static void test_change_lines_that_do_not_parse(void **state)
{
    assert_unknown("table ");
    assert_unknown("table public: INSERT: id[integer]:1");
    assert_unknown("table public.: INSERT: id[integer]:1");
    assert_unknown("table .users: INSERT: id[integer]:1");
    assert_unknown("table public.users INSERT: id[integer]:1");
    assert_unknown("table public.users: MERGE: id[integer]:1");
    assert_unknown("table public.users:");
    assert_unknown("table \"public.users: INSERT: id[integer]:1");
    assert_unknown("table \"\".users: INSERT: id[integer]:1");
    assert_unknown("table public.users, public.orders: INSERT: id[integer]:1");
    assert_unknown("table public.a, : TRUNCATE: (no-flags)");
    assert_unknown("table public.a,public.b: TRUNCATE: (no-flags)");
    assert_unknown("table a.b.c: INSERT: id[integer]:1");
}

static void test_length_bounds_the_line(void **state)
{
    seen_t s;
    const char *text = "table public.users: INSERT: id[integer]:1";
    const char *colon = strchr(text, ':');

    /* Cut before the action, the line is a change cut short, whatever follows in memory. */
    memset(&s, 0, sizeof(s));
    assert_int_equal(cachelogical_parse_line(text, (size_t)(colon - text), collect, &s),
                     CACHELOGICAL_LINE_UNKNOWN);
    assert_int_equal(s.n, 0);
    assert_int_equal(cachelogical_parse_line("BEGINx", 5, collect, &s), CACHELOGICAL_LINE_BEGIN);
    /* A NUL is a byte like any other, and none can be in a name. */
    assert_int_equal(cachelogical_parse_line("table s.\"a\0b\": INSERT:", 22, collect, &s),
                     CACHELOGICAL_LINE_UNKNOWN);
    assert_int_equal(cachelogical_parse_line("BEGIN\0", 6, collect, &s), CACHELOGICAL_LINE_OTHER);
    assert_int_equal(s.n, 0);
}

static void *never_committed(void *arg, const cachelogical_table_t *tables, int n)
{
    fail_msg("commit called for %d tables", n);
    return NULL;
}

static void never_visible(void *arg, void *token)
{
    fail_msg("visible called");
}

/* Asserts that cachelogical_start refuses, with an error that starts with expected. */
static void assert_refused(const char *conninfo, const char *prefix, const char *expected)
{
    char err[256] = "";
    cachelogical_callbacks_t cb = {never_committed, never_visible, NULL};
    cachelogical_t *l = cachelogical_start(conninfo, prefix, &cb, err, sizeof(err));
    if (l != NULL) {
        cachelogical_stop(l);
        fail_msg("started with \"%s\" and prefix \"%s\"", conninfo, prefix);
    }
    if (strncmp(err, expected, strlen(expected)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", err, expected);
    assert_null(strchr(err, '\n'));
}

static void test_start_refuses_bad_arguments(void **state)
{
    char long_prefix[64];

    assert_refused("host=localhost nonsense", "pgturbo",
                   "cache logical: the connection string does not parse: missing \"=\" after "
                   "\"nonsense\"");
    assert_refused("postgresql://[::1", "pgturbo",
                   "cache logical: the connection string does not parse: ");
    assert_refused("dbname=x", "", "cache logical: the slot prefix \"\" is not 1 to 50 ");
    assert_refused("dbname=x", "Pgturbo", "cache logical: the slot prefix \"Pgturbo\" is not");
    assert_refused("dbname=x", "pg-turbo", "cache logical: the slot prefix \"pg-turbo\" is not");
    memset(long_prefix, 'p', 51);
    long_prefix[51] = '\0';
    assert_refused("dbname=x", long_prefix, "cache logical: the slot prefix \"ppp");
    cachelogical_stop(NULL);
    cachelogical_status_t st;
    memset(&st, 0xff, sizeof(st));
    cachelogical_status(NULL, &st);
    assert_false(st.connected);
    assert_int_equal(st.transactions, 0);
    assert_string_equal(st.slot, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_begin_and_commit),
        cmocka_unit_test(test_xid_of_begin_and_commit),
        cmocka_unit_test(test_xid_visible_only_below_xmax_and_not_running),
        cmocka_unit_test(test_plain_changes),
        cmocka_unit_test(test_quoted_identifiers),
        cmocka_unit_test(test_truncate_of_several_tables),
        cmocka_unit_test(test_identifier_lengths),
        cmocka_unit_test(test_lines_that_are_not_changes),
        cmocka_unit_test(test_change_lines_that_do_not_parse),
        cmocka_unit_test(test_length_bounds_the_line),
        cmocka_unit_test(test_start_refuses_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
