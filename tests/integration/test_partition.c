/*
 * test_partition.c
 *    pgturbo partition against the test cluster: create makes the current and exactly the
 *    premade future partitions (also for an empty table, pg_partman #193 and #738), with the
 *    parent's indexes on each; rows route to their partition and a 30-day query scans only the
 *    partitions in range; rows in the default partition never block the partition they belong
 *    to (#605) and maintain moves them out; retention drops or detaches exactly as told
 *    (#864); maintain is idempotent; --dry-run changes nothing. Bad input: a missing table, a
 *    column that is no timestamp, a plain table, a table partitioned otherwise, an overlapping
 *    partition, names needing quotes, a role without privileges, bad command lines.
 *    convert keeps every row of the kept range while the table is written during the copy,
 *    and the old table intact; an interrupted convert is cleaned up by the next run; tables it
 *    cannot convert are refused untouched; --dry-run prints the statements. The daemon's
 *    scheduler runs maintain by itself.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define DB "partition_test"

static char out[1 << 16];
static PGconn *db;

/* Runs `pgturbo partition ARGS CONNINFO` as user; exit code, output (both streams) in out. */
static int partition_as(const char *user, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "%s partition %s 'host=127.0.0.1 port=%d user=%s dbname=" DB "' 2>&1", PGTURBO_BIN,
             args, harness_pg_port(), user);
    return harness_shell(cmd, out, sizeof(out));
}

static int partition(const char *args)
{
    return partition_as("postgres", args);
}

static char *value(const char *sql)
{
    return harness_query_value(db, sql);
}

static void assert_value(const char *sql, const char *want)
{
    char *v = value(sql);
    if (strcmp(v, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", sql, v, want);
    free(v);
}

/* The partitions of table, "name from..to" per line, by name. */
static char *partitions_of(const char *table)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(string_agg(c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid), "
             "E'\\n' ORDER BY c.relname), '') FROM pg_inherits i JOIN pg_class c "
             "ON c.oid = i.inhrelid WHERE i.inhparent = '%s'::regclass",
             table);
    return value(sql);
}

/* The name table_YYYY_MM of the month n months from now (UTC). */
static void month_name(const char *table, int n, char *name, size_t len)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '%d month', "
             "'YYYY_MM')",
             n);
    char *v = value(sql);
    snprintf(name, len, "%s_%s", table, v);
    free(v);
}

static int setup(void **state)
{
    harness_create_database(DB);
    db = harness_connect_direct(DB);
    harness_silence_notices(db);
    harness_exec_ok(db, "SET TimeZone = 'UTC'");
    return 0;
}

static int teardown(void **state)
{
    PQfinish(db);
    harness_drop_database(DB);
    return 0;
}

static void test_create_makes_current_and_exactly_premake_future_partitions(void **state)
{
    /* An empty table: no data to go by, and the future partitions are made all the same. */
    harness_exec_ok(db, "CREATE TABLE events (id bigserial, kind text NOT NULL, "
                        "created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)");
    harness_exec_ok(db, "CREATE INDEX events_kind_idx ON events (kind, created_at)");
    assert_int_equal(partition("create events --column created_at --interval month "
                               "--premake 3"),
                     0);
    assert_non_null(strstr(out, "4 partitions made"));
    char *parts = partitions_of("events");
    char want[1024] = "", name[64], line[256];
    for (int i = 0; i <= 3; i++) {
        month_name("events", i, name, sizeof(name));
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT 'FOR VALUES FROM (''' || (date_trunc('month', now() AT TIME ZONE 'UTC') "
                 "+ interval '%d month')::date || ' 00:00:00+00'') TO (''' || "
                 "(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '%d month')::date || "
                 "' 00:00:00+00'')'",
                 i, i + 1);
        char *bound = value(sql);
        snprintf(line, sizeof(line), "%s%s %s", i == 0 ? "" : "\n", name, bound);
        strcat(want, line);
        free(bound);
    }
    assert_string_equal(parts, want);
    free(parts);
    /* The parent's index is on each partition. */
    assert_value("SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                 "WHERE i.inhparent = 'events_kind_idx'::regclass",
                 "4");
    assert_value("SELECT premake || ' ' || coalesce(retain::text, 'all') || ' ' || "
                 "partition_interval FROM pgturbo.partition_config WHERE parent_table = 'events'",
                 "3 all month");
}

static void test_rows_route_and_a_30_day_query_is_pruned(void **state)
{
    harness_exec_ok(db, "CREATE TABLE logs (id bigserial, level text, "
                        "created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)");
    char args[256];
    char *from = value("SELECT (now() - interval '11 months')::date");
    snprintf(args, sizeof(args),
             "create logs --column created_at --interval month --premake 1 --from %s", from);
    free(from);
    assert_int_equal(partition(args), 0);
    harness_exec_ok(db, "INSERT INTO logs (level, created_at) SELECT 'info', "
                        "now() - (i % 300) * interval '1 day' FROM generate_series(1, 30000) i");
    /* Every row is in the partition of its month. */
    assert_value("SELECT count(*) FROM logs WHERE to_char(created_at AT TIME ZONE 'UTC', "
                 "'\"logs_\"YYYY_MM') <> tableoid::regclass::text",
                 "0");
    assert_value("SELECT count(DISTINCT tableoid) > 8 FROM logs", "t");
    harness_exec_ok(db, "ANALYZE logs");
    PGresult *res = PQexec(db, "EXPLAIN (COSTS OFF) SELECT count(*) FROM logs "
                               "WHERE created_at >= now() - interval '30 days' "
                               "AND created_at < now()");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    int scanned = 0, removed = 0;
    char plan[8192] = "";
    for (int i = 0; i < PQntuples(res); i++) {
        const char *line = PQgetvalue(res, i, 0);
        scanned += strstr(line, "Scan on logs_") != NULL;
        if (strstr(line, "Subplans Removed: ") != NULL)
            removed = atoi(strstr(line, "Subplans Removed: ") + 18);
        snprintf(plan + strlen(plan), sizeof(plan) - strlen(plan), "%s\n", line);
    }
    PQclear(res);
    /* now() is known when the executor starts: the current month and the one before are
     * scanned, the 11 other partitions pruned. */
    if (scanned < 1 || scanned > 2 || removed != 13 - scanned)
        fail_msg("not pruned to the last 30 days:\n%s", plan);
}

static void test_default_rows_never_block_and_maintain_moves_them(void **state)
{
    harness_exec_ok(db, "CREATE TABLE clicks (id bigint, at timestamp NOT NULL) "
                        "PARTITION BY RANGE (at)");
    assert_int_equal(partition("create clicks --column at --interval month --premake 1 "
                               "--default"),
                     0);
    /* Rows three and four months ahead, and five months back, land in the default. */
    harness_exec_ok(db, "INSERT INTO clicks SELECT i, date_trunc('month', now() AT TIME ZONE "
                        "'UTC') + interval '3 months' + i * interval '1 hour' "
                        "FROM generate_series(1, 50) i");
    harness_exec_ok(db, "INSERT INTO clicks SELECT i, date_trunc('month', now() AT TIME ZONE "
                        "'UTC') - interval '5 months' + i * interval '1 hour' "
                        "FROM generate_series(1, 20) i");
    assert_value("SELECT count(*) FROM clicks_default", "70");
    /* premake 3 now needs the month of the rows in the default: it is made, the rows moved. */
    harness_exec_ok(db, "UPDATE pgturbo.partition_config SET premake = 3 "
                        "WHERE parent_table = 'clicks'");
    assert_int_equal(partition("maintain clicks"), 0);
    char name[64], says[128];
    month_name("clicks", 3, name, sizeof(name));
    snprintf(says, sizeof(says), "moved 50 rows from clicks_default into %s", name);
    assert_non_null(strstr(out, says));
    month_name("clicks", -5, name, sizeof(name));
    snprintf(says, sizeof(says), "moved 20 rows from clicks_default into %s", name);
    assert_non_null(strstr(out, says));
    assert_value("SELECT count(*) FROM clicks_default", "0");
    assert_value("SELECT count(*) FROM clicks", "70");
    /* Current, three ahead, the old month of the stray rows, and the default. */
    assert_value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'clicks'::regclass", "6");
}

static void test_maintain_is_idempotent(void **state)
{
    char *before = partitions_of("clicks");
    assert_int_equal(partition("maintain"), 0);
    assert_string_equal(out, "nothing to do\n");
    char *after = partitions_of("clicks");
    assert_string_equal(after, before);
    free(before);
    free(after);
}

static void test_retention_drops_or_detaches_exactly_as_told(void **state)
{
    harness_exec_ok(db, "CREATE TABLE audit (id bigint, day date NOT NULL) "
                        "PARTITION BY RANGE (day)");
    char args[256];
    char *from = value("SELECT (now() - interval '6 months')::date");
    snprintf(args, sizeof(args), "create audit --column day --interval month --premake 0 --from %s",
             from);
    free(from);
    assert_int_equal(partition(args), 0);
    harness_exec_ok(db, "INSERT INTO audit SELECT i, (now() - i * interval '1 day')::date "
                        "FROM generate_series(0, 150) i");
    /* Detach into an archive schema: keep the current month and two before. */
    harness_exec_ok(db, "UPDATE pgturbo.partition_config SET retain = 2, "
                        "retention = 'detach', archive_schema = 'audit archive' "
                        "WHERE parent_table = 'audit'");
    assert_int_equal(partition("maintain audit"), 0);
    assert_value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit'::regclass", "3");
    assert_value("SELECT count(*) FROM pg_tables WHERE schemaname = 'audit archive'", "4");
    char name[64], sql[256];
    month_name("audit", -3, name, sizeof(name));
    snprintf(sql, sizeof(sql), "SELECT count(*) > 0 FROM \"audit archive\".%s", name);
    assert_value(sql, "t"); /* detached, not dropped: the rows are there */
    /* Drop: one month fewer kept; the archived tables are not touched. */
    harness_exec_ok(db, "UPDATE pgturbo.partition_config SET retain = 1, retention = 'drop', "
                        "archive_schema = NULL WHERE parent_table = 'audit'");
    assert_int_equal(partition("maintain audit"), 0);
    month_name("audit", -2, name, sizeof(name));
    char says[128];
    snprintf(says, sizeof(says), "dropped %s", name);
    assert_non_null(strstr(out, says));
    snprintf(sql, sizeof(sql), "SELECT to_regclass('%s') IS NULL", name);
    assert_value(sql, "t");
    assert_value("SELECT count(*) FROM pg_tables WHERE schemaname = 'audit archive'", "4");
    assert_value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit'::regclass", "2");
}

static void test_names_needing_quotes(void **state)
{
    harness_exec_ok(db, "CREATE SCHEMA \"My App\"");
    harness_exec_ok(db, "CREATE TABLE \"My App\".\"Event Log\" (\"Created At\" timestamp NOT "
                        "NULL, \"select\" int) PARTITION BY RANGE (\"Created At\")");
    assert_int_equal(partition("create '\"My App\".\"Event Log\"' --column 'Created At' "
                               "--interval week --premake 2 --default"),
                     0);
    assert_value("SELECT count(*) FROM pg_inherits "
                 "WHERE inhparent = '\"My App\".\"Event Log\"'::regclass",
                 "4");
    assert_value("SELECT count(*) FROM pg_class WHERE relname ~ '^Event Log_[0-9]{4}_w[0-9]{2}$'",
                 "3");
    harness_exec_ok(db, "INSERT INTO \"My App\".\"Event Log\" VALUES (now(), 1)");
    assert_int_equal(partition("list '\"My App\".\"Event Log\"'"), 0);
    assert_non_null(strstr(out, "My App.Event Log: 4 partitions"));
    assert_non_null(strstr(out, "Event Log_default"));
}

static void test_dry_run_prints_and_changes_nothing(void **state)
{
    harness_exec_ok(db, "CREATE TABLE dry (at date NOT NULL) PARTITION BY RANGE (at)");
    assert_int_equal(partition("create dry --column at --interval year --premake 1 --dry-run"), 0);
    assert_non_null(strstr(out, "BEGIN;\nCREATE TABLE \"public\".\"dry_"));
    assert_non_null(strstr(out, "INSERT INTO pgturbo.partition_config"));
    assert_value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'dry'::regclass", "0");
    assert_value("SELECT count(*) FROM pgturbo.partition_config WHERE parent_table = 'dry'", "0");
}

static void test_bad_tables_are_refused_and_change_nothing(void **state)
{
    harness_exec_ok(db, "CREATE TABLE plain (id int, at timestamptz)");
    harness_exec_ok(db, "CREATE TABLE by_list (kind text, at timestamptz) "
                        "PARTITION BY LIST (kind)");
    harness_exec_ok(db, "CREATE TABLE overlap (at timestamptz NOT NULL) "
                        "PARTITION BY RANGE (at)");
    harness_exec_ok(db, "CREATE TABLE overlap_odd PARTITION OF overlap FOR VALUES FROM "
                        "(date_trunc('month', now()) + interval '15 days') "
                        "TO (date_trunc('month', now()) + interval '45 days')");
    static const struct {
        const char *args;
        const char *says;
    } cases[] = {
        {"create nosuch --column at --interval month", "table \"nosuch\" does not exist"},
        {"create plain --column id --interval month",
         "column \"id\" of public.plain is integer, not a date, timestamp or timestamptz"},
        {"create plain --column nope --interval month",
         "table public.plain has no column \"nope\""},
        {"create plain --column at --interval month",
         "public.plain is a plain table, not a partitioned one: pgturbo partition convert"},
        {"create by_list --column at --interval month",
         "public.by_list is partitioned by LIST (kind), not by RANGE (at)"},
        {"create overlap --column at --interval month",
         "partition public.overlap_odd of public.overlap overlaps the range starting"},
        {"create 'a b c' --column at --interval month", "\"a b c\" is not a table name"},
        {"maintain plain", "\"plain\" is not managed by pgturbo partition"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = partition(cases[i].args);
        if (rc != 3 || strstr(out, cases[i].says) == NULL)
            fail_msg("%s: exit %d, want 3 and \"%s\":\n%s", cases[i].args, rc, cases[i].says, out);
    }
    assert_value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'overlap'::regclass", "1");
}

static void test_no_privilege_is_a_database_error(void **state)
{
    harness_exec_ok(db, "DROP ROLE IF EXISTS partition_nobody");
    harness_exec_ok(db, "CREATE ROLE partition_nobody LOGIN");
    assert_int_equal(partition_as("partition_nobody", "create events --column created_at "
                                                      "--interval month --premake 6"),
                     1);
    if (strstr(out, "must be owner of table events") == NULL &&
        strstr(out, "permission denied for schema public") == NULL)
        fail_msg("no privilege error in:\n%s", out);
    assert_value("SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass", "4");
    harness_exec_ok(db, "DROP OWNED BY partition_nobody");
    harness_exec_ok(db, "DROP ROLE partition_nobody");
}

static void test_bad_command_lines_exit_2(void **state)
{
    static const struct {
        const char *args;
        const char *says;
    } cases[] = {
        {"create events --interval month", "create needs --column and --interval"},
        {"create events --column at --interval quarter", "--interval: expected day, week"},
        {"create events --column at --interval month --premake -1", "--premake: expected"},
        {"create events --column at --interval month --from 2025-02-30", "--from: expected"},
        {"create events --column at --interval month --archive-schema x",
         "--archive-schema goes with --retention detach"},
        {"maintain --column at", "maintain reads its settings from pgturbo.partition_config"},
        {"shuffle events", "unknown command \"shuffle\""},
        {"create events --column at --interval month --frobnicate", "unknown option"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = partition(cases[i].args);
        if (rc != 2 || strstr(out, cases[i].says) == NULL)
            fail_msg("%s: exit %d, want 2 and \"%s\":\n%s", cases[i].args, rc, cases[i].says, out);
    }
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "%s partition list 'host=127.0.0.1 port=%d user=postgres dbname=x' 2>&1", PGTURBO_BIN,
             harness_free_port());
    assert_int_equal(harness_shell(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "cannot connect"));
}

/* Starts `pgturbo partition ARGS` in the background, its output in log; its pid. */
static int start_background(const char *args, const char *log)
{
    char cmd[2048], pid[32];
    snprintf(cmd, sizeof(cmd),
             "%s partition %s 'host=127.0.0.1 port=%d user=postgres dbname=" DB "' > %s 2>&1 & "
             "echo $!",
             PGTURBO_BIN, args, harness_pg_port(), log);
    assert_int_equal(harness_shell(cmd, pid, sizeof(pid)), 0);
    return atoi(pid);
}

/* Waits up to 60 s for sql to answer "t". */
static void wait_for(const char *sql)
{
    for (int i = 0; i < 6000; i++) {
        char *v = value(sql);
        bool yes = strcmp(v, "t") == 0;
        free(v);
        if (yes)
            return;
        harness_sleep_ms(10);
    }
    fail_msg("timed out waiting for %s", sql);
}

static void wait_exit(int pid)
{
    for (int i = 0; i < 6000 && kill(pid, 0) == 0; i++)
        harness_sleep_ms(10);
    assert_int_not_equal(kill(pid, 0), 0);
}

static void read_log(const char *log)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "cat %s", log);
    assert_int_equal(harness_shell(cmd, out, sizeof(out)), 0);
}

/* The rows of a and b that the other lacks, both ways: "0 0" when they are the same. */
static void assert_same_rows(const char *a, const char *b)
{
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM (%s EXCEPT ALL %s) x) || ' ' || "
             "(SELECT count(*) FROM (%s EXCEPT ALL %s) y)",
             a, b, b, a);
    assert_value(sql, "0 0");
}

static void test_convert_keeps_every_row_while_the_table_is_written(void **state)
{
    harness_exec_ok(db, "CREATE TABLE people (id bigserial PRIMARY KEY, email text)");
    harness_exec_ok(db, "INSERT INTO people (email) SELECT 'p' || i "
                        "FROM generate_series(1, 100) i");
    harness_exec_ok(db, "CREATE TABLE applog (id bigserial PRIMARY KEY, person bigint NOT NULL "
                        "REFERENCES people (id), action text NOT NULL, "
                        "created_at timestamptz NOT NULL DEFAULT now())");
    harness_exec_ok(db, "CREATE INDEX applog_person_idx ON applog (person, created_at DESC)");
    harness_exec_ok(db, "INSERT INTO applog (person, action, created_at) SELECT 1 + i % 100, "
                        "'a' || i, now() - (i % 360) * interval '1 day' "
                        "FROM generate_series(1, 100000) i");
    harness_exec_ok(db, "ANALYZE applog");
    int pid = start_background("convert applog --column created_at --interval month "
                               "--keep-months 6 --batch 100 --premake 2",
                               "/tmp/pgturbo-convert-applog.log");
    /* Writes while the copy runs: new rows, rows changed in copied and uncopied blocks, rows
     * deleted; the trigger records each. */
    wait_for("SELECT count(*) > 0 FROM pg_trigger WHERE tgname = 'pgturbo_capture'");
    harness_exec_ok(db, "INSERT INTO applog (person, action) SELECT 1 + i % 100, 'new' || i "
                        "FROM generate_series(1, 200) i");
    harness_exec_ok(db, "UPDATE applog SET action = 'changed' WHERE id % 1000 = 7");
    harness_exec_ok(db, "DELETE FROM applog WHERE id % 1000 = 11");
    wait_exit(pid);
    read_log("/tmp/pgturbo-convert-applog.log");
    if (strstr(out, "public.applog: converted; the old table is public.applog_old") == NULL)
        fail_msg("convert did not finish:\n%s", out);
    assert_non_null(strstr(out, "copied "));
    assert_non_null(strstr(out, "applog_pkey (id) becomes (id, created_at)"));
    assert_value("SELECT relkind FROM pg_class WHERE oid = 'applog'::regclass", "p");
    /* The old table has every row, the writes included; the new one its kept range. */
    assert_value("SELECT count(*) FROM applog_old", "100099"); /* 100,200 rows, 101 deleted */
    assert_same_rows("SELECT * FROM applog_old WHERE created_at >= (date_trunc('month', now() "
                     "AT TIME ZONE 'UTC') - interval '6 months') AT TIME ZONE 'UTC'",
                     "SELECT * FROM applog");
    /* Indexes keep their names (the old table's get _old), the sequence goes on, the foreign
     * key holds, and maintain knows the table. */
    assert_value("SELECT string_agg(indexname, ' ' ORDER BY indexname) FROM pg_indexes "
                 "WHERE tablename IN ('applog', 'applog_old')",
                 "applog_person_idx applog_person_idx_old applog_pkey applog_pkey_old");
    assert_value("SELECT pg_get_serial_sequence('applog', 'id')", "public.applog_id_seq");
    assert_value("INSERT INTO applog (person, action) VALUES (1, 'after') "
                 "RETURNING id > (SELECT max(id) FROM applog_old)",
                 "t");
    assert_string_equal(harness_exec_error(db, "INSERT INTO applog (person, action) "
                                               "VALUES (1000, 'x')"),
                        "23503");
    assert_value("SELECT partition_interval FROM pgturbo.partition_config "
                 "WHERE parent_table = 'applog'",
                 "month");
}

static void test_interrupted_convert_is_cleaned_up_and_run_again(void **state)
{
    harness_exec_ok(db, "CREATE TABLE jobs (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                        "at timestamp NOT NULL, payload text)");
    harness_exec_ok(db, "INSERT INTO jobs (at, payload) SELECT now() - (i % 90) * interval "
                        "'1 day', repeat('x', 100) FROM generate_series(1, 100000) i");
    harness_exec_ok(db, "ANALYZE jobs");
    int pid = start_background("convert jobs --column at --interval week --batch 20",
                               "/tmp/pgturbo-convert-jobs.log");
    wait_for("SELECT coalesce(sum(pg_relation_size(inhrelid)), 0) > 0 FROM pg_inherits "
             "WHERE inhparent = to_regclass('jobs_pgturbo_new')");
    kill(pid, SIGKILL);
    wait_exit(pid);
    /* The table is as it was; the copy is left. */
    assert_value("SELECT relkind FROM pg_class WHERE oid = 'jobs'::regclass", "r");
    assert_value("SELECT count(*) FROM jobs", "100000");
    assert_value("SELECT to_regclass('jobs_old') IS NULL", "t");
    assert_int_equal(partition("convert jobs --column at --interval week --batch 20000"), 0);
    assert_non_null(strstr(out, "dropped jobs_pgturbo_new, the copy of an interrupted convert"));
    assert_same_rows("SELECT * FROM jobs_old", "SELECT * FROM jobs");
    assert_value("INSERT INTO jobs (at) VALUES (now()) RETURNING id", "100001");
    assert_value("SELECT count(*) FROM pg_trigger WHERE tgname = 'pgturbo_capture'", "0");
}

static void test_convert_refuses_what_it_cannot_do_untouched(void **state)
{
    harness_exec_ok(db, "CREATE TABLE nokey (at timestamptz NOT NULL)");
    harness_exec_ok(db, "CREATE TABLE taken (id int PRIMARY KEY, at date NOT NULL)");
    harness_exec_ok(db, "CREATE TABLE taken_old (id int)");
    harness_exec_ok(db, "CREATE TABLE holes (id int PRIMARY KEY, at date)");
    harness_exec_ok(db, "INSERT INTO holes VALUES (1, NULL), (2, now())");
    harness_exec_ok(db, "ALTER TABLE people ADD COLUMN at date NOT NULL DEFAULT now()");
    static const struct {
        const char *args;
        const char *says;
    } cases[] = {
        {"convert events --column created_at --interval month", "is partitioned already"},
        {"convert nokey --column at --interval month", "nokey has no primary key"},
        {"convert taken --column at --interval month",
         "public.taken_old exists: the old table would take that name"},
        {"convert holes --column at --interval month", "1 rows of holes have no at: add --default"},
        {"convert people --column at --interval month",
         "people is referenced by the foreign keys of"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = partition(cases[i].args);
        if (rc != 3 || strstr(out, cases[i].says) == NULL)
            fail_msg("%s: exit %d, want 3 and \"%s\":\n%s", cases[i].args, rc, cases[i].says, out);
    }
    assert_value("SELECT string_agg(relkind::text, '' ORDER BY relname) FROM pg_class "
                 "WHERE relname IN ('nokey', 'taken', 'holes', 'people')",
                 "rrrr");
    assert_value("SELECT count(*) FROM pg_class WHERE relname ~ '_pgturbo_'", "0");
}

static void test_convert_dry_run_prints_every_statement(void **state)
{
    assert_int_equal(partition("convert holes --column at --interval year --default --dry-run"), 0);
    static const char *const statements[] = {
        "CREATE TABLE \"public\".\"holes_pgturbo_new\" (LIKE \"public\".\"holes\"",
        "PARTITION BY RANGE (\"at\")",
        "ALTER TABLE \"public\".\"holes_pgturbo_new\" ADD CONSTRAINT \"holes_pkey_pgturbo\" "
        "PRIMARY KEY (id, \"at\")",
        "PARTITION OF \"public\".\"holes_pgturbo_new\" DEFAULT",
        "CREATE TRIGGER pgturbo_capture AFTER INSERT OR UPDATE OR DELETE ON \"public\".\"holes\"",
        "-- ... and so on",
        "LOCK TABLE \"public\".\"holes\" IN EXCLUSIVE MODE",
        "ALTER TABLE \"public\".\"holes\" RENAME TO \"holes_old\"",
        "ALTER INDEX \"public\".\"holes_pkey_pgturbo\" RENAME TO \"holes_pkey\"",
        "COMMIT;",
    };
    for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++)
        if (strstr(out, statements[i]) == NULL)
            fail_msg("no \"%s\" in:\n%s", statements[i], out);
    assert_value("SELECT relkind FROM pg_class WHERE oid = 'holes'::regclass", "r");
    assert_value("SELECT count(*) FROM pg_class WHERE relname ~ '_pgturbo_'", "0");
}

/* The daemon's scheduler maintains the tables of pgturbo.partition_config on its own: a
 * premade partition dropped by hand is made again, and the log says so. */
static void test_the_scheduler_runs_maintain(void **state)
{
    char name[64], sql[256], ini[512];
    month_name("events", 3, name, sizeof(name));
    snprintf(sql, sizeof(sql), "DROP TABLE %s", name);
    harness_exec_ok(db, sql);
    snprintf(ini, sizeof(ini),
             "[scheduler]\npartition_maintain = 1 host=127.0.0.1 port=%d user=postgres "
             "dbname=" DB "\n",
             harness_pg_port());
    pgturbo_proc_t p;
    harness_start_pgturbo(&p, ini, NULL);
    snprintf(sql, sizeof(sql), "SELECT to_regclass('%s') IS NOT NULL", name);
    wait_for(sql);
    char says[160];
    snprintf(says, sizeof(says), "scheduler: partition maintain " DB ": public.events: made %s",
             name);
    for (int i = 0; i < 100 && harness_count_in_file(p.log, says) == 0; i++)
        harness_sleep_ms(100);
    assert_int_equal(harness_count_in_file(p.log, says), 1);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_makes_current_and_exactly_premake_future_partitions),
        cmocka_unit_test(test_rows_route_and_a_30_day_query_is_pruned),
        cmocka_unit_test(test_default_rows_never_block_and_maintain_moves_them),
        cmocka_unit_test(test_maintain_is_idempotent),
        cmocka_unit_test(test_retention_drops_or_detaches_exactly_as_told),
        cmocka_unit_test(test_names_needing_quotes),
        cmocka_unit_test(test_dry_run_prints_and_changes_nothing),
        cmocka_unit_test(test_bad_tables_are_refused_and_change_nothing),
        cmocka_unit_test(test_no_privilege_is_a_database_error),
        cmocka_unit_test(test_bad_command_lines_exit_2),
        cmocka_unit_test(test_convert_keeps_every_row_while_the_table_is_written),
        cmocka_unit_test(test_interrupted_convert_is_cleaned_up_and_run_again),
        cmocka_unit_test(test_convert_refuses_what_it_cannot_do_untouched),
        cmocka_unit_test(test_convert_dry_run_prints_every_statement),
        cmocka_unit_test(test_the_scheduler_runs_maintain),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
