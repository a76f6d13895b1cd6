/*
 * test_proxy.c
 *    The PostgreSQL protocol through pgturbo with libpq: simple and extended queries, prepared
 *    statements shared by clients on one server, COPY both ways, notices, LISTEN/NOTIFY,
 *    pipelining, errors inside transactions and large results. Every value is checked exactly.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define TX_POOL   "pool_mode = transaction\ndefault_pool_size = 5\n"
#define TX_POOL_1 "pool_mode = transaction\ndefault_pool_size = 1\n"

static void stop_ok(pgturbo_proc_t *p)
{
    assert_int_equal(harness_stop_pgturbo(p, 10), 0);
}

static void assert_value(PGconn *conn, const char *sql, const char *expected)
{
    char *v = harness_query_value(conn, sql);
    if (expected == NULL) {
        if (v != NULL)
            fail_msg("\"%s\": expected NULL, got \"%s\"", sql, v);
    } else {
        if (v == NULL)
            fail_msg("\"%s\": expected \"%s\", got NULL", sql, expected);
        if (strcmp(v, expected) != 0) {
            char got[256];
            snprintf(got, sizeof(got), "%s", v);
            free(v);
            fail_msg("\"%s\": expected \"%s\", got \"%s\"", sql, expected, got);
        }
    }
    free(v);
}

/* Checks a result's status and, on failure, prints its error. Takes ownership of res. */
static void check_status(PGresult *res, ExecStatusType want, const char *what)
{
    ExecStatusType st = PQresultStatus(res);
    if (st != want) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : "(no result)");
        PQclear(res);
        fail_msg("%s: expected %s, got %s: %s", what, PQresStatus(want), PQresStatus(st), msg);
    }
}

static void test_simple_query(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, TX_POOL, NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);

    PGresult *res = PQexec(c, "SELECT 1 + 1 AS two, 'hello'::text AS greeting, NULL::int AS n");
    check_status(res, PGRES_TUPLES_OK, "simple select");
    assert_int_equal(PQntuples(res), 1);
    assert_int_equal(PQnfields(res), 3);
    assert_string_equal(PQfname(res, 0), "two");
    assert_string_equal(PQfname(res, 1), "greeting");
    assert_string_equal(PQgetvalue(res, 0, 0), "2");
    assert_string_equal(PQgetvalue(res, 0, 1), "hello");
    assert_true(PQgetisnull(res, 0, 2));
    assert_int_equal(PQftype(res, 0), 23);
    assert_int_equal(PQftype(res, 1), 25);
    PQclear(res);

    res = PQexec(c, "");
    check_status(res, PGRES_EMPTY_QUERY, "empty query");
    PQclear(res);
    assert_value(c, "SELECT current_database()", "postgres");
    assert_value(c, "SELECT current_user", "postgres");
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);

    PQfinish(c);
    stop_ok(&p);
}

static void test_multi_statement_query(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, TX_POOL, NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);

    assert_int_equal(PQsendQuery(c, "SELECT 1; SELECT 'x', 2; SELECT generate_series(1, 3)"), 1);
    PGresult *res = PQgetResult(c);
    check_status(res, PGRES_TUPLES_OK, "first statement");
    assert_int_equal(PQntuples(res), 1);
    assert_string_equal(PQgetvalue(res, 0, 0), "1");
    PQclear(res);
    res = PQgetResult(c);
    check_status(res, PGRES_TUPLES_OK, "second statement");
    assert_int_equal(PQnfields(res), 2);
    assert_string_equal(PQgetvalue(res, 0, 0), "x");
    assert_string_equal(PQgetvalue(res, 0, 1), "2");
    PQclear(res);
    res = PQgetResult(c);
    check_status(res, PGRES_TUPLES_OK, "third statement");
    assert_int_equal(PQntuples(res), 3);
    for (int i = 0; i < 3; i++) {
        char want[8];
        snprintf(want, sizeof(want), "%d", i + 1);
        assert_string_equal(PQgetvalue(res, i, 0), want);
    }
    PQclear(res);
    assert_null(PQgetResult(c));

    /* An error stops the rest of the string; the statements before it still ran. */
    assert_int_equal(PQsendQuery(c, "SELECT 10; SELECT 1/0; SELECT 30"), 1);
    res = PQgetResult(c);
    check_status(res, PGRES_TUPLES_OK, "statement before the error");
    assert_string_equal(PQgetvalue(res, 0, 0), "10");
    PQclear(res);
    res = PQgetResult(c);
    check_status(res, PGRES_FATAL_ERROR, "division by zero");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22012");
    PQclear(res);
    assert_null(PQgetResult(c));
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);

    /* A multi-statement string is one implicit transaction. */
    harness_exec_ok(c, "CREATE TABLE IF NOT EXISTS it_proxy_multi (v int)");
    harness_exec_ok(c, "TRUNCATE it_proxy_multi");
    res =
        PQexec(c, "INSERT INTO it_proxy_multi VALUES (1); INSERT INTO it_proxy_multi VALUES (1/0)");
    check_status(res, PGRES_FATAL_ERROR, "implicit transaction");
    PQclear(res);
    assert_value(c, "SELECT count(*) FROM it_proxy_multi", "0");
    harness_exec_ok(c, "DROP TABLE it_proxy_multi");

    PQfinish(c);
    stop_ok(&p);
}

static void test_extended_query(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, TX_POOL, NULL);
    PGconn *c = harness_connect(p.port, "postgres", "client_encoding=UTF8");

    const char *params[3] = {"40", "2", "h\xc3\xa9llo"};
    PGresult *res = PQexecParams(c, "SELECT $1::int + $2::int, upper($3::text), $3::text IS NULL",
                                 3, NULL, params, NULL, NULL, 0);
    check_status(res, PGRES_TUPLES_OK, "PQexecParams");
    assert_string_equal(PQgetvalue(res, 0, 0), "42");
    assert_string_equal(PQgetvalue(res, 0, 1), "H\xc3\x89LLO");
    assert_string_equal(PQgetvalue(res, 0, 2), "f");
    PQclear(res);

    /* NULL parameter, typed parameter, binary result format. */
    const char *p2[2] = {NULL, "7"};
    Oid types[2] = {25, 23};
    res = PQexecParams(c, "SELECT $1 IS NULL, $2 * 6", 2, types, p2, NULL, NULL, 1);
    check_status(res, PGRES_TUPLES_OK, "binary result");
    assert_int_equal(PQfformat(res, 1), 1);
    assert_int_equal(PQgetlength(res, 0, 0), 1);
    assert_int_equal(PQgetvalue(res, 0, 0)[0], 1);
    assert_int_equal(PQgetlength(res, 0, 1), 4);
    uint32_t be;
    memcpy(&be, PQgetvalue(res, 0, 1), 4);
    assert_int_equal(ntohl(be), 42);
    PQclear(res);

    /* Binary parameter. */
    uint32_t v = htonl(123456);
    const char *p3[1] = {(const char *)&v};
    int lens[1] = {4};
    int fmts[1] = {1};
    Oid t3[1] = {23};
    res = PQexecParams(c, "SELECT $1 + 1", 1, t3, p3, lens, fmts, 0);
    check_status(res, PGRES_TUPLES_OK, "binary parameter");
    assert_string_equal(PQgetvalue(res, 0, 0), "123457");
    PQclear(res);

    /* An error in the extended protocol, then the connection is still good. */
    res = PQexecParams(c, "SELECT 1/$1::int", 1, NULL, (const char *[]){"0"}, NULL, NULL, 0);
    check_status(res, PGRES_FATAL_ERROR, "extended error");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22012");
    PQclear(res);
    res = PQexecParams(c, "SELECT no_such_column", 0, NULL, NULL, NULL, NULL, 0);
    check_status(res, PGRES_FATAL_ERROR, "parse error");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42703");
    PQclear(res);
    res = PQexecParams(c, "SELECT $1::int * 2", 1, NULL, (const char *[]){"21"}, NULL, NULL, 0);
    check_status(res, PGRES_TUPLES_OK, "after errors");
    assert_string_equal(PQgetvalue(res, 0, 0), "42");
    PQclear(res);

    PQfinish(c);
    stop_ok(&p);
}

/* Executes a prepared statement with one text parameter and returns its first value. */
static void exec_prepared_expect(PGconn *c, const char *name, const char *param,
                                 const char *expected)
{
    const char *params[1] = {param};
    PGresult *res = PQexecPrepared(c, name, param ? 1 : 0, params, NULL, NULL, 0);
    char what[128];
    snprintf(what, sizeof(what), "execute %s(%s)", name, param ? param : "");
    check_status(res, PGRES_TUPLES_OK, what);
    if (strcmp(PQgetvalue(res, 0, 0), expected) != 0) {
        char got[128];
        snprintf(got, sizeof(got), "%s", PQgetvalue(res, 0, 0));
        PQclear(res);
        fail_msg("%s: expected \"%s\", got \"%s\"", what, expected, got);
    }
    PQclear(res);
}

static void prepare_ok(PGconn *c, const char *name, const char *sql, int nparams)
{
    PGresult *res = PQprepare(c, name, sql, nparams, NULL);
    char what[256];
    snprintf(what, sizeof(what), "prepare %s as %s", name, sql);
    check_status(res, PGRES_COMMAND_OK, what);
    PQclear(res);
}

static void test_prepared_statements_interleaved_on_one_server(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, TX_POOL_1, NULL);
    PGconn *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = harness_connect(p.port, "postgres", NULL);

    /* The same name with a different text on every client, and a name of each client's own. */
    for (int i = 0; i < 3; i++) {
        char sql[128], name[32];
        snprintf(sql, sizeof(sql), "SELECT $1::int * %d", i + 1);
        prepare_ok(c[i], "s", sql, 1);
        snprintf(name, sizeof(name), "own_%d", i);
        snprintf(sql, sizeof(sql), "SELECT 'client%d:' || $1::text", i);
        prepare_ok(c[i], name, sql, 1);
    }
    /* Two clients with the same name and the same text. */
    prepare_ok(c[0], "same", "SELECT 'same ' || $1::text", 1);
    prepare_ok(c[2], "same", "SELECT 'same ' || $1::text", 1);

    for (int round = 1; round <= 10; round++) {
        for (int i = 0; i < 3; i++) {
            char param[16], want[64], name[32];
            snprintf(param, sizeof(param), "%d", round);
            snprintf(want, sizeof(want), "%d", round * (i + 1));
            exec_prepared_expect(c[i], "s", param, want);
            snprintf(name, sizeof(name), "own_%d", i);
            snprintf(want, sizeof(want), "client%d:%d", i, round);
            exec_prepared_expect(c[i], name, param, want);
            if (i != 1) {
                snprintf(want, sizeof(want), "same %d", round);
                exec_prepared_expect(c[i], "same", param, want);
            }
        }
    }

    /* Another client's statement name is not visible. */
    PGresult *res = PQexecPrepared(c[1], "own_0", 1, (const char *[]){"1"}, NULL, NULL, 0);
    check_status(res, PGRES_FATAL_ERROR, "other client's statement");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "26000");
    PQclear(res);

    /* Prepared statements inside an explicit transaction, interleaved with another client. */
    harness_exec_ok(c[0], "BEGIN");
    exec_prepared_expect(c[0], "s", "5", "5");
    exec_prepared_expect(c[0], "own_0", "x", "client0:x");
    harness_exec_ok(c[0], "COMMIT");
    exec_prepared_expect(c[2], "s", "5", "15");

    /* The unnamed statement. */
    prepare_ok(c[1], "", "SELECT $1::int - 1", 1);
    exec_prepared_expect(c[1], "", "10", "9");

    for (int i = 0; i < 3; i++)
        PQfinish(c[i]);
    stop_ok(&p);
}

static void test_prepared_statements_beyond_server_cache(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, TX_POOL_1 "max_prepared_statements = 2\n", NULL);
    PGconn *a = harness_connect(p.port, "postgres", NULL);
    PGconn *b = harness_connect(p.port, "postgres", NULL);

    /* Five statements per client on one server that keeps two: each use after an eviction
     * has to prepare it on the server again. */
    for (int i = 0; i < 5; i++) {
        char name[16], sql[64];
        snprintf(name, sizeof(name), "e%d", i);
        snprintf(sql, sizeof(sql), "SELECT 'a%d:' || $1::text", i);
        prepare_ok(a, name, sql, 1);
        snprintf(sql, sizeof(sql), "SELECT 'b%d:' || $1::text", i);
        prepare_ok(b, name, sql, 1);
    }
    for (int round = 0; round < 6; round++) {
        for (int i = 4; i >= 0; i--) {
            char name[16], param[16], want[32];
            snprintf(name, sizeof(name), "e%d", (i + round) % 5);
            snprintf(param, sizeof(param), "%d", round);
            snprintf(want, sizeof(want), "a%d:%d", (i + round) % 5, round);
            exec_prepared_expect(a, name, param, want);
            snprintf(want, sizeof(want), "b%d:%d", (i + round) % 5, round);
            exec_prepared_expect(b, name, param, want);
        }
    }
    /* The server never holds more than the cache allows. */
    assert_value(a, "SELECT count(*) <= 2 FROM pg_prepared_statements", "t");

    PQfinish(a);
    PQfinish(b);
    stop_ok(&p);
}

static void test_describe_prepared(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, TX_POOL_1, NULL);
    PGconn *a = harness_connect(p.port, "postgres", NULL);
    PGconn *b = harness_connect(p.port, "postgres", NULL);

    prepare_ok(a, "d", "SELECT 1 AS other", 0);
    prepare_ok(b, "d", "SELECT $1::int AS a, $2::text AS b, now() AS c", 2);
    /* a uses the server in between. */
    exec_prepared_expect(a, "d", NULL, "1");

    PGresult *res = PQdescribePrepared(b, "d");
    check_status(res, PGRES_COMMAND_OK, "describe");
    assert_int_equal(PQnparams(res), 2);
    assert_int_equal(PQparamtype(res, 0), 23);
    assert_int_equal(PQparamtype(res, 1), 25);
    assert_int_equal(PQnfields(res), 3);
    assert_string_equal(PQfname(res, 0), "a");
    assert_string_equal(PQfname(res, 1), "b");
    assert_string_equal(PQfname(res, 2), "c");
    assert_int_equal(PQftype(res, 0), 23);
    assert_int_equal(PQftype(res, 1), 25);
    assert_int_equal(PQftype(res, 2), 1184);
    PQclear(res);

    res = PQdescribePrepared(a, "d");
    check_status(res, PGRES_COMMAND_OK, "describe a");
    assert_int_equal(PQnparams(res), 0);
    assert_int_equal(PQnfields(res), 1);
    assert_string_equal(PQfname(res, 0), "other");
    PQclear(res);

    res = PQdescribePrepared(a, "no_such_statement");
    check_status(res, PGRES_FATAL_ERROR, "describe unknown");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "26000");
    PQclear(res);

    /* Describe a portal through the extended protocol too. */
    res = PQexecParams(b, "SELECT $1::int AS x", 1, NULL, (const char *[]){"3"}, NULL, NULL, 0);
    check_status(res, PGRES_TUPLES_OK, "exec after describe");
    assert_string_equal(PQfname(res, 0), "x");
    PQclear(res);

    PQfinish(a);
    PQfinish(b);
    stop_ok(&p);
}

static void test_deallocate_and_reprepare(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, TX_POOL_1, NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    PGconn *other = harness_connect(p.port, "postgres", NULL);

    prepare_ok(c, "p1", "SELECT 'first ' || $1::text", 1);
    prepare_ok(c, "p2", "SELECT 'second ' || $1::text", 1);
    prepare_ok(other, "p1", "SELECT 'other ' || $1::text", 1);
    exec_prepared_expect(c, "p1", "a", "first a");

    harness_exec_ok(c, "DEALLOCATE p1");
    PGresult *res = PQexecPrepared(c, "p1", 1, (const char *[]){"x"}, NULL, NULL, 0);
    check_status(res, PGRES_FATAL_ERROR, "deallocated statement");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "26000");
    PQclear(res);
    exec_prepared_expect(c, "p2", "still", "second still");
    exec_prepared_expect(other, "p1", "o", "other o");

    prepare_ok(c, "p1", "SELECT 'renewed ' || $1::text", 1);
    exec_prepared_expect(c, "p1", "c", "renewed c");

    harness_exec_ok(c, "DEALLOCATE PREPARE p1");
    const char *code = harness_exec_error(c, "DEALLOCATE p1");
    assert_string_equal(code, "26000");

    prepare_ok(c, "p1", "SELECT 'third ' || $1::text", 1);
    harness_exec_ok(c, "DEALLOCATE ALL");
    res = PQexecPrepared(c, "p1", 1, (const char *[]){"x"}, NULL, NULL, 0);
    check_status(res, PGRES_FATAL_ERROR, "p1 after DEALLOCATE ALL");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "26000");
    PQclear(res);
    res = PQexecPrepared(c, "p2", 1, (const char *[]){"x"}, NULL, NULL, 0);
    check_status(res, PGRES_FATAL_ERROR, "p2 after DEALLOCATE ALL");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "26000");
    PQclear(res);
    /* DEALLOCATE ALL on one client leaves the other's statements alone. */
    exec_prepared_expect(other, "p1", "still", "other still");

    prepare_ok(c, "p1", "SELECT 'fourth ' || $1::text", 1);
    prepare_ok(c, "p2", "SELECT 'first ' || $1::text", 1);
    exec_prepared_expect(c, "p1", "d", "fourth d");
    exec_prepared_expect(c, "p2", "e", "first e");

    /* SQL-level PREPARE / EXECUTE in the same transaction. */
    harness_exec_ok(c, "BEGIN");
    harness_exec_ok(c, "PREPARE sqlp(int) AS SELECT $1 + 100");
    assert_value(c, "EXECUTE sqlp(1)", "101");
    harness_exec_ok(c, "DEALLOCATE sqlp");
    harness_exec_ok(c, "COMMIT");

    PQfinish(c);
    PQfinish(other);
    stop_ok(&p);
}

static void test_prepare_of_existing_name_is_an_error(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, TX_POOL_1, NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);

    prepare_ok(c, "dup", "SELECT 'first ' || $1::text", 1);
    /* As on PostgreSQL, a second Parse of a name that exists fails and keeps the first. */
    PGresult *res = PQprepare(c, "dup", "SELECT 'second ' || $1::text", 1, NULL);
    check_status(res, PGRES_FATAL_ERROR, "duplicate prepare");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42P05");
    PQclear(res);
    exec_prepared_expect(c, "dup", "b", "first b");

    PQfinish(c);
    stop_ok(&p);
}

static void test_copy_from_stdin_and_to_stdout(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, TX_POOL, NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(c, "SET client_min_messages = warning");
    harness_exec_ok(c, "DROP TABLE IF EXISTS it_proxy_copy");
    harness_exec_ok(c, "RESET client_min_messages");
    harness_exec_ok(c, "CREATE TABLE it_proxy_copy (id int PRIMARY KEY, name text)");

    const int rows = 5000;
    PGresult *res = PQexec(c, "COPY it_proxy_copy FROM STDIN");
    check_status(res, PGRES_COPY_IN, "COPY FROM STDIN");
    PQclear(res);
    size_t cap = (size_t)rows * 32, used = 0;
    char *expected = malloc(cap);
    assert_non_null(expected);
    for (int i = 1; i <= rows; i++) {
        char line[64];
        int n = i % 7 == 0 ? snprintf(line, sizeof(line), "%d\t\\N\n", i)
                           : snprintf(line, sizeof(line), "%d\tname %d\n", i, i);
        memcpy(expected + used, line, (size_t)n);
        used += (size_t)n;
    }
    for (size_t off = 0; off < used; off += 1000) {
        size_t n = used - off < 1000 ? used - off : 1000;
        /* Pieces of 1000 bytes that do not line up with rows. */
        assert_int_equal(PQputCopyData(c, expected + off, (int)n), 1);
    }
    assert_int_equal(PQputCopyEnd(c, NULL), 1);
    res = PQgetResult(c);
    check_status(res, PGRES_COMMAND_OK, "end of COPY FROM");
    assert_string_equal(PQcmdTuples(res), "5000");
    PQclear(res);
    assert_null(PQgetResult(c));

    assert_value(c, "SELECT count(*) FROM it_proxy_copy", "5000");
    assert_value(c, "SELECT sum(id) FROM it_proxy_copy", "12502500");
    assert_value(c, "SELECT name FROM it_proxy_copy WHERE id = 14", NULL);
    assert_value(c, "SELECT count(name) FROM it_proxy_copy", "4286");
    assert_value(c, "SELECT name FROM it_proxy_copy WHERE id = 15", "name 15");

    res = PQexec(c, "COPY (SELECT * FROM it_proxy_copy ORDER BY id) TO STDOUT");
    check_status(res, PGRES_COPY_OUT, "COPY TO STDOUT");
    PQclear(res);
    char *got = malloc(used + 1);
    assert_non_null(got);
    size_t got_len = 0;
    int nrows = 0;
    for (;;) {
        char *buf;
        int n = PQgetCopyData(c, &buf, 0);
        if (n < 0)
            break;
        nrows++;
        if (got_len + (size_t)n <= used)
            memcpy(got + got_len, buf, (size_t)n);
        got_len += (size_t)n;
        PQfreemem(buf);
    }
    res = PQgetResult(c);
    check_status(res, PGRES_COMMAND_OK, "end of COPY TO");
    assert_string_equal(PQcmdTuples(res), "5000");
    PQclear(res);
    assert_null(PQgetResult(c));
    assert_int_equal(nrows, rows);
    assert_int_equal(got_len, used);
    /* COPY TO writes exactly the bytes COPY FROM read, NULLs as \N included. */
    assert_memory_equal(got, expected, used);
    free(got);
    free(expected);

    /* Exact COPY TO output of a small table. */
    res =
        PQexec(c, "COPY (SELECT id, name FROM it_proxy_copy WHERE id IN (1, 7, 5000) ORDER BY id) "
                  "TO STDOUT WITH (FORMAT csv, HEADER)");
    check_status(res, PGRES_COPY_OUT, "COPY csv");
    PQclear(res);
    char csv[256] = "";
    for (;;) {
        char *buf;
        int n = PQgetCopyData(c, &buf, 0);
        if (n < 0)
            break;
        strncat(csv, buf,
                (size_t)n < sizeof(csv) - strlen(csv) - 1 ? (size_t)n
                                                          : sizeof(csv) - strlen(csv) - 1);
        PQfreemem(buf);
    }
    res = PQgetResult(c);
    check_status(res, PGRES_COMMAND_OK, "end of COPY csv");
    PQclear(res);
    assert_null(PQgetResult(c));
    assert_string_equal(csv, "id,name\n1,name 1\n7,\n5000,name 5000\n");

    /* COPY FROM with bad data fails, and the connection stays usable. */
    res = PQexec(c, "COPY it_proxy_copy FROM STDIN");
    check_status(res, PGRES_COPY_IN, "second COPY FROM");
    PQclear(res);
    const char *bad = "6000\tok\nnot-a-number\tbad\n";
    assert_int_equal(PQputCopyData(c, bad, (int)strlen(bad)), 1);
    assert_int_equal(PQputCopyEnd(c, NULL), 1);
    res = PQgetResult(c);
    check_status(res, PGRES_FATAL_ERROR, "bad COPY data");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22P02");
    PQclear(res);
    assert_null(PQgetResult(c));

    /* COPY aborted by the client. */
    res = PQexec(c, "COPY it_proxy_copy FROM STDIN");
    check_status(res, PGRES_COPY_IN, "third COPY FROM");
    PQclear(res);
    assert_int_equal(PQputCopyData(c, "7000\tx\n", 7), 1);
    assert_int_equal(PQputCopyEnd(c, "client gave up"), 1);
    res = PQgetResult(c);
    check_status(res, PGRES_FATAL_ERROR, "client abort");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "57014");
    PQclear(res);
    assert_null(PQgetResult(c));
    assert_value(c, "SELECT count(*) FROM it_proxy_copy", "5000");

    harness_exec_ok(c, "DROP TABLE it_proxy_copy");
    PQfinish(c);
    stop_ok(&p);
}

struct notices {
    int count;
    char severity[32];
    char primary[256];
};

static void notice_receiver(void *arg, const PGresult *res)
{
    struct notices *n = arg;
    n->count++;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(n->severity, sizeof(n->severity), "%s", sev ? sev : "");
    snprintf(n->primary, sizeof(n->primary), "%s", msg ? msg : "");
}

static void test_notice_passthrough(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, TX_POOL, NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    struct notices n = {0};
    PQsetNoticeReceiver(c, notice_receiver, &n);

    harness_exec_ok(c, "DO $$BEGIN RAISE NOTICE 'hello %, from pgturbo', 42; END$$");
    assert_int_equal(n.count, 1);
    assert_string_equal(n.severity, "NOTICE");
    assert_string_equal(n.primary, "hello 42, from pgturbo");

    harness_exec_ok(c, "DO $$BEGIN RAISE WARNING 'careful'; RAISE NOTICE 'second'; END$$");
    assert_int_equal(n.count, 3);
    assert_string_equal(n.primary, "second");

    /* Notices below client_min_messages are not sent. */
    harness_exec_ok(c, "BEGIN");
    harness_exec_ok(c, "SET LOCAL client_min_messages = warning");
    harness_exec_ok(c, "DO $$BEGIN RAISE NOTICE 'hidden'; END$$");
    harness_exec_ok(c, "COMMIT");
    assert_int_equal(n.count, 3);

    PQfinish(c);
    stop_ok(&p);
}

static PGnotify *wait_notify(PGconn *c, int timeout_ms)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (PQconsumeInput(c) == 0)
            return NULL;
        PGnotify *n = PQnotifies(c);
        if (n != NULL)
            return n;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed >= timeout_ms)
            return NULL;
        struct pollfd pfd = {PQsocket(c), POLLIN, 0};
        poll(&pfd, 1, (int)(timeout_ms - elapsed));
    }
}

static void test_listen_notify_in_session_mode(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = session\ndefault_pool_size = 5\n", NULL);
    PGconn *listener = harness_connect(p.port, "postgres", NULL);
    PGconn *sender = harness_connect(p.port, "postgres", NULL);

    harness_exec_ok(listener, "LISTEN it_channel");
    char *sender_pid = harness_query_value(sender, "SELECT pg_backend_pid()");
    harness_exec_ok(sender, "NOTIFY it_channel, 'payload one'");
    harness_exec_ok(sender, "SELECT pg_notify('it_channel', 'payload two')");

    PGnotify *n = wait_notify(listener, 5000);
    assert_non_null(n);
    assert_string_equal(n->relname, "it_channel");
    assert_string_equal(n->extra, "payload one");
    assert_int_equal(n->be_pid, atoi(sender_pid));
    PQfreemem(n);
    n = wait_notify(listener, 5000);
    assert_non_null(n);
    assert_string_equal(n->extra, "payload two");
    PQfreemem(n);

    /* A notification sent while the listener is idle arrives without a query. */
    harness_exec_ok(sender, "NOTIFY it_channel, 'idle'");
    n = wait_notify(listener, 5000);
    assert_non_null(n);
    assert_string_equal(n->extra, "idle");
    PQfreemem(n);

    harness_exec_ok(listener, "UNLISTEN it_channel");
    harness_exec_ok(sender, "NOTIFY it_channel, 'unheard'");
    n = wait_notify(listener, 300);
    assert_null(n);

    free(sender_pid);
    PQfinish(listener);
    PQfinish(sender);
    stop_ok(&p);
}

static void test_pipeline_mode(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 2\n", NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    PGconn *busy = harness_connect(p.port, "postgres", NULL);

    assert_int_equal(PQenterPipelineMode(c), 1);
    for (int i = 1; i <= 5; i++) {
        char v[8];
        snprintf(v, sizeof(v), "%d", i);
        const char *params[1] = {v};
        assert_int_equal(
            PQsendQueryParams(c, "SELECT $1::int * 10", 1, NULL, params, NULL, NULL, 0), 1);
    }
    assert_int_equal(PQsendPrepare(c, "pipe_stmt", "SELECT $1::text || '!'", 1, NULL), 1);
    assert_int_equal(PQsendQueryPrepared(c, "pipe_stmt", 1, (const char *[]){"hi"}, NULL, NULL, 0),
                     1);
    assert_int_equal(PQpipelineSync(c), 1);
    /* Second segment: an error aborts the rest up to the next sync. */
    assert_int_equal(PQsendQueryParams(c, "SELECT 1/0", 0, NULL, NULL, NULL, NULL, 0), 1);
    assert_int_equal(PQsendQueryParams(c, "SELECT 'skipped'", 0, NULL, NULL, NULL, NULL, 0), 1);
    assert_int_equal(PQpipelineSync(c), 1);
    /* Third segment: back to normal. */
    assert_int_equal(
        PQsendQueryPrepared(c, "pipe_stmt", 1, (const char *[]){"again"}, NULL, NULL, 0), 1);
    assert_int_equal(PQpipelineSync(c), 1);

    /* Another client uses the pool while the pipeline's results are pending. */
    assert_value(busy, "SELECT 'other client'", "other client");

    for (int i = 1; i <= 5; i++) {
        PGresult *res = PQgetResult(c);
        check_status(res, PGRES_TUPLES_OK, "pipelined query");
        char want[8];
        snprintf(want, sizeof(want), "%d", i * 10);
        assert_string_equal(PQgetvalue(res, 0, 0), want);
        PQclear(res);
        assert_null(PQgetResult(c));
    }
    PGresult *res = PQgetResult(c);
    check_status(res, PGRES_COMMAND_OK, "pipelined prepare");
    PQclear(res);
    assert_null(PQgetResult(c));
    res = PQgetResult(c);
    check_status(res, PGRES_TUPLES_OK, "pipelined execute");
    assert_string_equal(PQgetvalue(res, 0, 0), "hi!");
    PQclear(res);
    assert_null(PQgetResult(c));
    res = PQgetResult(c);
    check_status(res, PGRES_PIPELINE_SYNC, "first sync");
    PQclear(res);

    res = PQgetResult(c);
    check_status(res, PGRES_FATAL_ERROR, "error in pipeline");
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22012");
    PQclear(res);
    assert_null(PQgetResult(c));
    res = PQgetResult(c);
    check_status(res, PGRES_PIPELINE_ABORTED, "aborted query");
    PQclear(res);
    assert_null(PQgetResult(c));
    res = PQgetResult(c);
    check_status(res, PGRES_PIPELINE_SYNC, "second sync");
    PQclear(res);

    res = PQgetResult(c);
    check_status(res, PGRES_TUPLES_OK, "execute after abort");
    assert_string_equal(PQgetvalue(res, 0, 0), "again!");
    PQclear(res);
    assert_null(PQgetResult(c));
    res = PQgetResult(c);
    check_status(res, PGRES_PIPELINE_SYNC, "third sync");
    PQclear(res);

    assert_int_equal(PQexitPipelineMode(c), 1);
    assert_value(c, "SELECT 'after pipeline'", "after pipeline");

    PQfinish(c);
    PQfinish(busy);
    stop_ok(&p);
}

static void test_error_in_transaction_then_rollback(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, "pool_mode = transaction\ndefault_pool_size = 1\n", NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    PGconn *other = harness_connect(p.port, "postgres", NULL);

    harness_exec_ok(c, "BEGIN");
    assert_int_equal(PQtransactionStatus(c), PQTRANS_INTRANS);
    assert_string_equal(harness_exec_error(c, "SELECT 1/0"), "22012");
    assert_int_equal(PQtransactionStatus(c), PQTRANS_INERROR);
    assert_string_equal(harness_exec_error(c, "SELECT 1"), "25P02");
    assert_int_equal(PQtransactionStatus(c), PQTRANS_INERROR);
    PGresult *res = PQexec(c, "ROLLBACK");
    check_status(res, PGRES_COMMAND_OK, "rollback");
    assert_string_equal(PQcmdStatus(res), "ROLLBACK");
    PQclear(res);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
    assert_value(c, "SELECT 'recovered'", "recovered");

    /* The failed transaction ends with COMMIT too (reported as ROLLBACK). */
    harness_exec_ok(c, "BEGIN");
    assert_string_equal(harness_exec_error(c, "SELECT no_such_column"), "42703");
    res = PQexec(c, "COMMIT");
    check_status(res, PGRES_COMMAND_OK, "commit of failed transaction");
    assert_string_equal(PQcmdStatus(res), "ROLLBACK");
    PQclear(res);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);

    /* The single server went back to the pool clean: the other client can use it. */
    assert_value(other, "SELECT 'other works'", "other works");

    PQfinish(c);
    PQfinish(other);
    stop_ok(&p);
}

static void test_large_results(void **state)
{
    (void)state;
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, TX_POOL, NULL);
    PGconn *c = harness_connect(p.port, "postgres", NULL);

    PGresult *res = PQexec(c, "SELECT i, 'row ' || i FROM generate_series(1, 100000) AS i");
    check_status(res, PGRES_TUPLES_OK, "100k rows");
    assert_int_equal(PQntuples(res), 100000);
    for (int i = 0; i < 100000; i++) {
        char want[32];
        snprintf(want, sizeof(want), "%d", i + 1);
        if (strcmp(PQgetvalue(res, i, 0), want) != 0)
            fail_msg("row %d: got %s", i, PQgetvalue(res, i, 0));
        char want2[40];
        snprintf(want2, sizeof(want2), "row %d", i + 1);
        if (strcmp(PQgetvalue(res, i, 1), want2) != 0)
            fail_msg("row %d: got %s", i, PQgetvalue(res, i, 1));
    }
    PQclear(res);

    /* A 5 MB value in one DataRow. */
    const size_t big = 5 * 1024 * 1024;
    res = PQexec(c, "SELECT repeat('0123456789abcdef', 327680)");
    check_status(res, PGRES_TUPLES_OK, "5 MB value");
    assert_int_equal(PQgetlength(res, 0, 0), big);
    const char *v = PQgetvalue(res, 0, 0);
    for (size_t i = 0; i < big; i++)
        if (v[i] != "0123456789abcdef"[i % 16])
            fail_msg("byte %zu of the 5 MB value differs", i);
    PQclear(res);

    /* A 5 MB parameter the other way, checked by its md5. */
    char *param = malloc(big + 1);
    assert_non_null(param);
    for (size_t i = 0; i < big; i++)
        param[i] = "0123456789abcdef"[i % 16];
    param[big] = '\0';
    const char *params[1] = {param};
    res = PQexecParams(c,
                       "SELECT length($1::text), md5($1::text) = md5(repeat('0123456789abcdef', "
                       "327680))",
                       1, NULL, params, NULL, NULL, 0);
    check_status(res, PGRES_TUPLES_OK, "5 MB parameter");
    assert_string_equal(PQgetvalue(res, 0, 0), "5242880");
    assert_string_equal(PQgetvalue(res, 0, 1), "t");
    PQclear(res);
    free(param);

    assert_value(c, "SELECT 'still fine'", "still fine");
    PQfinish(c);
    stop_ok(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_query),
        cmocka_unit_test(test_multi_statement_query),
        cmocka_unit_test(test_extended_query),
        cmocka_unit_test(test_prepared_statements_interleaved_on_one_server),
        cmocka_unit_test(test_prepared_statements_beyond_server_cache),
        cmocka_unit_test(test_describe_prepared),
        cmocka_unit_test(test_deallocate_and_reprepare),
        cmocka_unit_test(test_prepare_of_existing_name_is_an_error),
        cmocka_unit_test(test_copy_from_stdin_and_to_stdout),
        cmocka_unit_test(test_notice_passthrough),
        cmocka_unit_test(test_listen_notify_in_session_mode),
        cmocka_unit_test(test_pipeline_mode),
        cmocka_unit_test(test_error_in_transaction_then_rollback),
        cmocka_unit_test(test_large_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
