/*
 * test_config.c
 *    Unit tests of config.c: defaults, every kind of value, [databases] connection strings and
 *    their inherited defaults, [scheduler] jobs, lookup, SHOW CONFIG's masking of secrets, and
 *    the exact "path:line: what is wrong" errors.
 *
 * Each test writes its ini text to a fresh file under /tmp, loads it and removes it again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* Writes len bytes of text to a new file under /tmp and puts its name in path. */
static void write_temp(char *path, size_t size, const char *text, size_t len)
{
    int fd;

    assert_true(size > strlen("/tmp/pgturbo-config-XXXXXX"));
    strcpy(path, "/tmp/pgturbo-config-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* Loads text, which must be valid; the caller frees the result with config_free(). */
static config_t *load_ok(const char *text)
{
    char path[64];
    char err[512] = "";
    config_t *cfg = NULL;
    int rc;

    write_temp(path, sizeof(path), text, strlen(text));
    rc = config_load(path, &cfg, err, sizeof(err));
    unlink(path);
    if (rc != 0)
        fail_msg("config_load failed: %s", err);
    assert_non_null(cfg);
    return cfg;
}

/* Loads the len bytes of text and checks that the error is the file's path, then expected. */
static void expect_error_bytes(const char *text, size_t len, const char *expected)
{
    char path[64];
    char err[512] = "";
    char want[600];
    config_t *cfg = (config_t *)&cfg;
    int rc;

    write_temp(path, sizeof(path), text, len);
    rc = config_load(path, &cfg, err, sizeof(err));
    unlink(path);
    assert_int_equal(rc, -1);
    assert_null(cfg);
    snprintf(want, sizeof(want), "%s%s", path, expected);
    assert_string_equal(err, want);
}

static void expect_error(const char *text, const char *expected)
{
    expect_error_bytes(text, strlen(text), expected);
}

/* Returns "[pgturbo]\n<key> = <value>\n" in buf. */
static const char *one_setting(char *buf, size_t size, const char *key, const char *value)
{
    snprintf(buf, size, "[pgturbo]\n%s = %s\n", key, value);
    return buf;
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

static void test_empty_file_gives_documented_defaults(void **state)
{
    config_t *cfg = load_ok("");

    assert_string_equal(cfg->listen_addr, "127.0.0.1");
    assert_int_equal(cfg->listen_port, 6432);
    assert_int_equal(cfg->workers, 0);
    assert_int_equal(cfg->pool_mode, POOL_MODE_SESSION);
    assert_int_equal(cfg->default_pool_size, 20);
    assert_int_equal(cfg->min_pool_size, 0);
    assert_int_equal(cfg->reserve_pool_size, 0);
    assert_int_equal(cfg->reserve_pool_timeout, 5000);
    assert_int_equal(cfg->max_client_conn, 100);
    assert_int_equal(cfg->max_db_connections, 0);
    assert_int_equal(cfg->max_prepared_statements, 200);
    assert_int_equal(cfg->server_lifetime, 3600000);
    assert_int_equal(cfg->server_idle_timeout, 600000);
    assert_int_equal(cfg->server_connect_timeout, 15000);
    assert_string_equal(cfg->server_check_query, "select 1");
    assert_int_equal(cfg->server_check_delay, 30000);
    assert_string_equal(cfg->server_reset_query, "DISCARD ALL");
    assert_false(cfg->server_reset_query_always);
    assert_int_equal(cfg->query_timeout, 0);
    assert_int_equal(cfg->query_wait_timeout, 120000);
    assert_int_equal(cfg->client_idle_timeout, 0);
    assert_int_equal(cfg->client_login_timeout, 60000);
    assert_int_equal(cfg->idle_transaction_timeout, 0);
    assert_int_equal(cfg->shutdown_timeout, 30000);
    assert_int_equal(cfg->max_packet_size, 2147483647);
    assert_false(cfg->verbose);
    assert_null(cfg->databases);
    assert_int_equal(cfg->n_databases, 0);
    assert_true(cfg->run_at_start);
    assert_null(cfg->jobs);
    assert_int_equal(cfg->n_jobs, 0);
    config_free(cfg);
}

static void test_load_records_the_path(void **state)
{
    char path[64];
    char err[256] = "";
    config_t *cfg = NULL;
    int rc;

    write_temp(path, sizeof(path), "", 0);
    rc = config_load(path, &cfg, err, sizeof(err));
    unlink(path);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg->path, path);
    assert_string_equal(err, "");
    config_free(cfg);
}

static void test_every_pgturbo_key_is_stored(void **state)
{
    config_t *cfg = load_ok("; a comment\n"
                            "# another comment\n"
                            "[pgturbo]\n"
                            "listen_addr = *\n"
                            "listen_port = 7432\n"
                            "workers = 256\n"
                            "pool_mode = transaction\n"
                            "default_pool_size = 1\n"
                            "min_pool_size = 3\n"
                            "reserve_pool_size = 4\n"
                            "reserve_pool_timeout = 2.5\n"
                            "max_client_conn = 5000\n"
                            "max_db_connections = 60\n"
                            "max_prepared_statements = 0\n"
                            "server_lifetime = 0\n"
                            "server_idle_timeout = 60\n"
                            "server_connect_timeout = 3\n"
                            "server_check_query =\n"
                            "server_check_delay = 0.1\n"
                            "server_reset_query = RESET ALL\n"
                            "server_reset_query_always = yes\n"
                            "query_timeout = 30\n"
                            "query_wait_timeout = 0\n"
                            "client_idle_timeout = 600\n"
                            "client_login_timeout = 10\n"
                            "idle_transaction_timeout = 0.75\n"
                            "shutdown_timeout = 1\n"
                            "max_packet_size = 1024\n"
                            "verbose = on\n");

    assert_string_equal(cfg->listen_addr, "*");
    assert_int_equal(cfg->listen_port, 7432);
    assert_int_equal(cfg->workers, 256);
    assert_int_equal(cfg->pool_mode, POOL_MODE_TRANSACTION);
    assert_int_equal(cfg->default_pool_size, 1);
    assert_int_equal(cfg->min_pool_size, 3);
    assert_int_equal(cfg->reserve_pool_size, 4);
    assert_int_equal(cfg->reserve_pool_timeout, 2500);
    assert_int_equal(cfg->max_client_conn, 5000);
    assert_int_equal(cfg->max_db_connections, 60);
    assert_int_equal(cfg->max_prepared_statements, 0);
    assert_int_equal(cfg->server_lifetime, 0);
    assert_int_equal(cfg->server_idle_timeout, 60000);
    assert_int_equal(cfg->server_connect_timeout, 3000);
    assert_string_equal(cfg->server_check_query, "");
    assert_int_equal(cfg->server_check_delay, 100);
    assert_string_equal(cfg->server_reset_query, "RESET ALL");
    assert_true(cfg->server_reset_query_always);
    assert_int_equal(cfg->query_timeout, 30000);
    assert_int_equal(cfg->query_wait_timeout, 0);
    assert_int_equal(cfg->client_idle_timeout, 600000);
    assert_int_equal(cfg->client_login_timeout, 10000);
    assert_int_equal(cfg->idle_transaction_timeout, 750);
    assert_int_equal(cfg->shutdown_timeout, 1000);
    assert_int_equal(cfg->max_packet_size, 1024);
    assert_true(cfg->verbose);
    config_free(cfg);
}

static void test_pgbouncer_section_is_an_alias(void **state)
{
    config_t *cfg = load_ok("[pgbouncer]\nlisten_port = 6000\n[pgturbo]\nworkers = 2\n");

    assert_int_equal(cfg->listen_port, 6000);
    assert_int_equal(cfg->workers, 2);
    config_free(cfg);
}

static void test_pgbouncer_only_keys_are_ignored(void **state)
{
    config_t *cfg = load_ok("[pgbouncer]\n"
                            "logfile = /var/log/pgbouncer.log\n"
                            "pidfile = /run/pgbouncer.pid\n"
                            "auth_type = scram-sha-256\n"
                            "auth_file = /etc/pgbouncer/userlist.txt\n"
                            "auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename=$1\n"
                            "auth_user = pgbouncer\n"
                            "admin_users = admin, root\n"
                            "stats_users = stats\n"
                            "unix_socket_dir = /tmp\n"
                            "ignore_startup_parameters = extra_float_digits\n"
                            "server_round_robin = 1\n"
                            "log_connections = 0\n"
                            "log_disconnections = 0\n"
                            "log_pooler_errors = 1\n"
                            "stats_period = 60\n"
                            "tcp_keepalive = 1\n"
                            "so_reuseport = 1\n"
                            "application_name_add_host = 1\n"
                            "track_extra_parameters = IntervalStyle\n"
                            "listen_port = 6433\n");

    assert_int_equal(cfg->listen_port, 6433);
    assert_int_equal(cfg->n_databases, 0);
    config_free(cfg);
}

static void test_later_value_of_a_key_wins(void **state)
{
    config_t *cfg = load_ok("[pgturbo]\nlisten_port = 1\nlisten_port = 2\n");

    assert_int_equal(cfg->listen_port, 2);
    config_free(cfg);
}

static void test_times_are_seconds_stored_as_milliseconds(void **state)
{
    config_t *cfg = load_ok("[pgturbo]\n"
                            "query_timeout = 0.5\n"
                            "query_wait_timeout = .25\n"
                            "client_idle_timeout = 15\n"
                            "client_login_timeout = 2.5000\n"
                            "idle_transaction_timeout = 7.\n"
                            "shutdown_timeout = 0.0001\n"
                            "server_lifetime = 1.2345\n"
                            "server_idle_timeout = 0.000\n"
                            "server_check_delay = 9223372036854774\n");

    assert_int_equal(cfg->query_timeout, 500);
    assert_int_equal(cfg->query_wait_timeout, 250);
    assert_int_equal(cfg->client_idle_timeout, 15000);
    assert_int_equal(cfg->client_login_timeout, 2500);
    assert_int_equal(cfg->idle_transaction_timeout, 7000);
    assert_int_equal(cfg->shutdown_timeout, 1);
    assert_int_equal(cfg->server_lifetime, 1235);
    assert_int_equal(cfg->server_idle_timeout, 0);
    assert_true(cfg->server_check_delay == INT64_C(9223372036854774000));
    config_free(cfg);
}

static void test_bools_accept_every_spelling(void **state)
{
    static const char *const truths[] = {"1", "yes", "on", "true", "TRUE", "Yes"};
    static const char *const lies[] = {"0", "no", "off", "false", "FALSE", "Off"};
    char text[128];
    config_t *cfg;

    for (size_t i = 0; i < sizeof(truths) / sizeof(truths[0]); i++) {
        cfg = load_ok(one_setting(text, sizeof(text), "server_reset_query_always", truths[i]));
        assert_true(cfg->server_reset_query_always);
        config_free(cfg);
        cfg = load_ok(one_setting(text, sizeof(text), "server_reset_query_always", lies[i]));
        assert_false(cfg->server_reset_query_always);
        config_free(cfg);
    }
}

static void test_verbose_accepts_pgbouncer_levels(void **state)
{
    char text[128];
    config_t *cfg;

    cfg = load_ok(one_setting(text, sizeof(text), "verbose", "2"));
    assert_true(cfg->verbose);
    config_free(cfg);
    cfg = load_ok(one_setting(text, sizeof(text), "verbose", "0"));
    assert_false(cfg->verbose);
    config_free(cfg);
    cfg = load_ok(one_setting(text, sizeof(text), "verbose", "true"));
    assert_true(cfg->verbose);
    config_free(cfg);
}

static void test_pool_modes_are_parsed(void **state)
{
    static const char *const names[] = {"session", "transaction", "statement", "Statement"};
    static const pool_mode_t modes[] = {POOL_MODE_SESSION, POOL_MODE_TRANSACTION,
                                        POOL_MODE_STATEMENT, POOL_MODE_STATEMENT};
    char text[128];
    config_t *cfg;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        cfg = load_ok(one_setting(text, sizeof(text), "pool_mode", names[i]));
        assert_int_equal(cfg->pool_mode, modes[i]);
        config_free(cfg);
    }
}

static void test_pool_mode_names(void **state)
{
    assert_string_equal(config_pool_mode_name(POOL_MODE_SESSION), "session");
    assert_string_equal(config_pool_mode_name(POOL_MODE_TRANSACTION), "transaction");
    assert_string_equal(config_pool_mode_name(POOL_MODE_STATEMENT), "statement");
    assert_string_equal(config_pool_mode_name((pool_mode_t)42), "unknown");
}

static void test_semicolons_and_hashes_inside_values_are_kept(void **state)
{
    config_t *cfg = load_ok("[pgturbo]\nserver_check_query = select 1 ; -- # not a comment\n");

    assert_string_equal(cfg->server_check_query, "select 1 ; -- # not a comment");
    config_free(cfg);
}

static void test_crlf_line_endings_are_accepted(void **state)
{
    config_t *cfg = load_ok("[pgturbo]\r\nlisten_port = 7000\r\nlisten_addr = ::1\r\n");

    assert_int_equal(cfg->listen_port, 7000);
    assert_string_equal(cfg->listen_addr, "::1");
    config_free(cfg);
}

static void test_long_lines_are_read_whole(void **state)
{
    char *query = repeat('q', 1023);
    size_t size = strlen(query) + 64;
    char *text = malloc(size);
    config_t *cfg;

    assert_non_null(text);
    snprintf(text, size, "[pgturbo]\nserver_check_query = %s\nlisten_port = 7001\n", query);
    cfg = load_ok(text);
    assert_string_equal(cfg->server_check_query, query);
    assert_int_equal(cfg->listen_port, 7001);
    config_free(cfg);
    free(text);
    free(query);
}

static void test_database_entry_with_every_key(void **state)
{
    config_t *cfg = load_ok("[databases]\n"
                            "app = host=db.example port=6543 dbname=app_prod user=app_user "
                            "password=secret pool_size=7 min_pool_size=2 reserve_pool=3 "
                            "max_db_connections=40 pool_mode=statement\n");
    const config_database_t *db = &cfg->databases[0];

    assert_int_equal(cfg->n_databases, 1);
    assert_string_equal(db->name, "app");
    assert_string_equal(db->host, "db.example");
    assert_int_equal(db->port, 6543);
    assert_string_equal(db->dbname, "app_prod");
    assert_string_equal(db->user, "app_user");
    assert_string_equal(db->password, "secret");
    assert_int_equal(db->pool_size, 7);
    assert_int_equal(db->min_pool_size, 2);
    assert_int_equal(db->reserve_pool_size, 3);
    assert_int_equal(db->max_db_connections, 40);
    assert_int_equal(db->pool_mode, POOL_MODE_STATEMENT);
    config_free(cfg);
}

static void test_database_entry_defaults(void **state)
{
    config_t *cfg = load_ok("[databases]\nplain =\n");
    const config_database_t *db = &cfg->databases[0];

    assert_string_equal(db->name, "plain");
    assert_string_equal(db->host, "127.0.0.1");
    assert_int_equal(db->port, 5432);
    assert_string_equal(db->dbname, "");
    assert_string_equal(db->user, "");
    assert_string_equal(db->password, "");
    assert_int_equal(db->pool_size, 20);
    assert_int_equal(db->min_pool_size, 0);
    assert_int_equal(db->reserve_pool_size, 0);
    assert_int_equal(db->max_db_connections, 0);
    assert_int_equal(db->pool_mode, POOL_MODE_SESSION);
    config_free(cfg);
}

static void test_database_defaults_come_from_a_later_pgturbo_section(void **state)
{
    config_t *cfg = load_ok("[databases]\n"
                            "inherits = dbname=x\n"
                            "overrides = pool_size=3 min_pool_size=0 reserve_pool_size=0 "
                            "max_db_connections=0 pool_mode=session\n"
                            "[pgturbo]\n"
                            "default_pool_size = 11\n"
                            "min_pool_size = 1\n"
                            "reserve_pool_size = 4\n"
                            "max_db_connections = 50\n"
                            "pool_mode = transaction\n");
    const config_database_t *inherits = &cfg->databases[0];
    const config_database_t *overrides = &cfg->databases[1];

    assert_int_equal(inherits->pool_size, 11);
    assert_int_equal(inherits->min_pool_size, 1);
    assert_int_equal(inherits->reserve_pool_size, 4);
    assert_int_equal(inherits->max_db_connections, 50);
    assert_int_equal(inherits->pool_mode, POOL_MODE_TRANSACTION);
    assert_int_equal(overrides->pool_size, 3);
    assert_int_equal(overrides->min_pool_size, 0);
    assert_int_equal(overrides->reserve_pool_size, 0);
    assert_int_equal(overrides->max_db_connections, 0);
    assert_int_equal(overrides->pool_mode, POOL_MODE_SESSION);
    config_free(cfg);
}

static void test_connection_string_quoting_and_escapes(void **state)
{
    config_t *cfg = load_ok("[databases]\n"
                            "quoted = dbname='my db' password='it\\'s a \\\\ secret' user=''\n"
                            "spaced =   host = /var/run/postgresql\tport= 5433  user=a\\ b\n"
                            "equals = password=a=b;c\n");
    const config_database_t *quoted = &cfg->databases[0];
    const config_database_t *spaced = &cfg->databases[1];
    const config_database_t *equals = &cfg->databases[2];

    assert_string_equal(quoted->dbname, "my db");
    assert_string_equal(quoted->password, "it's a \\ secret");
    assert_string_equal(quoted->user, "");
    assert_string_equal(spaced->host, "/var/run/postgresql");
    assert_int_equal(spaced->port, 5433);
    assert_string_equal(spaced->user, "a b");
    assert_string_equal(equals->password, "a=b;c");
    config_free(cfg);
}

static void test_databases_keep_file_order_past_growth(void **state)
{
    char text[1024] = "[databases]\n";
    char name[48];
    config_t *cfg;

    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "db%02d = port=%d\n", i, 5000 + i);
        strcat(text, name);
    }
    cfg = load_ok(text);
    assert_int_equal(cfg->n_databases, 20);
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "db%02d", i);
        assert_string_equal(cfg->databases[i].name, name);
        assert_int_equal(cfg->databases[i].port, 5000 + i);
    }
    config_free(cfg);
}

static void test_find_database_prefers_exact_name_then_fallback(void **state)
{
    config_t *cfg = load_ok("[databases]\n* = port=1\napp = port=2\n");

    assert_int_equal(config_find_database(cfg, "app")->port, 2);
    assert_int_equal(config_find_database(cfg, "other")->port, 1);
    assert_int_equal(config_find_database(cfg, "*")->port, 1);
    config_free(cfg);
}

static void test_find_database_without_fallback_returns_null(void **state)
{
    config_t *cfg = load_ok("[databases]\napp = port=2\n");

    assert_ptr_equal(config_find_database(cfg, "app"), &cfg->databases[0]);
    assert_null(config_find_database(cfg, "App"));
    assert_null(config_find_database(cfg, "ap"));
    config_free(cfg);
}

static void test_missing_file_is_reported(void **state)
{
    char err[256];
    config_t *cfg = (config_t *)&cfg;

    assert_int_equal(config_load("/tmp/pgturbo-no-such-dir/pgturbo.ini", &cfg, err, sizeof(err)),
                     -1);
    assert_null(cfg);
    assert_string_equal(err, "/tmp/pgturbo-no-such-dir/pgturbo.ini: cannot open: No such file or "
                             "directory");
}

static void test_unreadable_file_is_reported(void **state)
{
    char err[256];
    config_t *cfg = NULL;

    assert_int_equal(config_load("/tmp", &cfg, err, sizeof(err)), -1);
    assert_null(cfg);
    assert_string_equal(err, "/tmp: cannot read: Is a directory");
}

static void test_error_is_truncated_to_errlen(void **state)
{
    char err[8] = "xxxxxxx";
    config_t *cfg = NULL;

    assert_int_equal(config_load("/tmp/pgturbo-no-such-dir/x.ini", &cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "/tmp/pg");
}

static void test_unknown_key_is_named_with_its_section(void **state)
{
    expect_error("[pgturbo]\nlisten_port = 6432\npoolsize = 5\n",
                 ":3: unknown key \"poolsize\" in [pgturbo]");
    expect_error("[pgbouncer]\n\nfoo = 1\n", ":3: unknown key \"foo\" in [pgbouncer]");
    expect_error("[pgturbo]\nListen_Port = 1\n", ":2: unknown key \"Listen_Port\" in [pgturbo]");
}

static void test_unknown_section_is_an_error(void **state)
{
    expect_error("[pgturbo]\nworkers = 1\n\n[users]\nalice = x\n", ":5: unknown section [users]");
    expect_error("[Databases]\napp =\n", ":2: unknown section [Databases]");
}

static void test_key_outside_any_section_is_an_error(void **state)
{
    expect_error("\n; comment\nlisten_port = 1\n", ":3: key \"listen_port\" is not in a section");
}

static void test_syntax_errors_report_their_line(void **state)
{
    expect_error("[pgturbo]\nlisten_port\n", ":2: line is not \"key = value\"");
    expect_error("[pgturbo\nlisten_port = 1\n", ":1: line is not \"key = value\"");
    expect_error("[pgturbo]\nserver_check_query = select\n  1\n",
                 ":3: line is not \"key = value\"");
}

static void test_first_error_is_the_one_reported(void **state)
{
    expect_error("[pgturbo]\nlisten_port = 0\nworkers = 999\nnonsense\n",
                 ":2: listen_port: must be between 1 and 65535, got \"0\"");
}

static void test_bad_pool_mode_is_reported(void **state)
{
    expect_error("; pgturbo.ini\n"
                 "\n"
                 "[databases]\n"
                 "app = host=localhost\n"
                 "\n"
                 "[pgturbo]\n"
                 "pool_mode = foo\n",
                 ":7: pool_mode: expected session, transaction or statement, got \"foo\"");
}

static void test_bad_integers_are_reported(void **state)
{
    static const struct {
        const char *key;
        const char *value;
        const char *error;
    } cases[] = {
        {"listen_port", "abc", ":2: listen_port: expected an integer, got \"abc\""},
        {"listen_port", "12abc", ":2: listen_port: expected an integer, got \"12abc\""},
        {"listen_port", "", ":2: listen_port: expected an integer, got \"\""},
        {"listen_port", "+5", ":2: listen_port: expected an integer, got \"+5\""},
        {"listen_port", "1 2", ":2: listen_port: expected an integer, got \"1 2\""},
        {"listen_port", "0x10", ":2: listen_port: expected an integer, got \"0x10\""},
        {"listen_port", "-", ":2: listen_port: expected an integer, got \"-\""},
        {"listen_port", "0", ":2: listen_port: must be between 1 and 65535, got \"0\""},
        {"listen_port", "65536", ":2: listen_port: must be between 1 and 65535, got \"65536\""},
        {"listen_port", "-1", ":2: listen_port: must be between 1 and 65535, got \"-1\""},
        {"listen_port", "99999999999999999999",
         ":2: listen_port: must be between 1 and 65535, got \"99999999999999999999\""},
        {"workers", "257", ":2: workers: must be between 0 and 256, got \"257\""},
        {"workers", "-1", ":2: workers: must be between 0 and 256, got \"-1\""},
        {"default_pool_size", "0", ":2: default_pool_size: must be at least 1, got \"0\""},
        {"max_client_conn", "0", ":2: max_client_conn: must be at least 1, got \"0\""},
        {"min_pool_size", "-3", ":2: min_pool_size: must be at least 0, got \"-3\""},
        {"reserve_pool_size", "-1", ":2: reserve_pool_size: must be at least 0, got \"-1\""},
        {"max_db_connections", "-1", ":2: max_db_connections: must be at least 0, got \"-1\""},
        {"max_prepared_statements", "2147483648",
         ":2: max_prepared_statements: must be at least 0, got \"2147483648\""},
        {"max_packet_size", "1023", ":2: max_packet_size: must be at least 1024, got \"1023\""},
    };
    char text[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(one_setting(text, sizeof(text), cases[i].key, cases[i].value), cases[i].error);
}

static void test_bad_times_are_reported(void **state)
{
    static const char *const bad[] = {"abc", "-1", "1.5s", "1e3", "", ".", "1.2.3", "1,5", "+1"};
    char text[256];
    char error[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(error, sizeof(error),
                 ":2: query_timeout: expected a number of seconds such as 15 or 0.5, got \"%s\"",
                 bad[i]);
        expect_error(one_setting(text, sizeof(text), "query_timeout", bad[i]), error);
    }
    expect_error(one_setting(text, sizeof(text), "server_lifetime", "9223372036854775"),
                 ":2: server_lifetime: too large, got \"9223372036854775\"");
    expect_error(one_setting(text, sizeof(text), "server_lifetime", "99999999999999999999.5"),
                 ":2: server_lifetime: too large, got \"99999999999999999999.5\"");
}

static void test_bad_bools_are_reported(void **state)
{
    char text[256];

    expect_error(one_setting(text, sizeof(text), "server_reset_query_always", "maybe"),
                 ":2: server_reset_query_always: expected a boolean (1/0, yes/no, on/off, "
                 "true/false), got \"maybe\"");
    expect_error(one_setting(text, sizeof(text), "server_reset_query_always", "2"),
                 ":2: server_reset_query_always: expected a boolean (1/0, yes/no, on/off, "
                 "true/false), got \"2\"");
    expect_error(one_setting(text, sizeof(text), "verbose", "-1"),
                 ":2: verbose: expected a boolean (1/0, yes/no, on/off, true/false), got \"-1\"");
}

static void test_strings_longer_than_their_field_are_reported(void **state)
{
    char *addr = repeat('a', 256);
    char *query = repeat('q', 1024);
    char text[1200];

    expect_error(one_setting(text, sizeof(text), "listen_addr", addr),
                 ":2: listen_addr: value too long (at most 255 bytes)");
    expect_error(one_setting(text, sizeof(text), "server_reset_query", query),
                 ":2: server_reset_query: value too long (at most 1023 bytes)");
    addr[255] = '\0';
    config_free(load_ok(one_setting(text, sizeof(text), "listen_addr", addr)));
    free(addr);
    free(query);
}

static void test_bad_database_entries_are_reported(void **state)
{
    static const struct {
        const char *entry;
        const char *error;
    } cases[] = {
        {"app = host=x poolsize=3", ":2: database \"app\": unknown key \"poolsize\""},
        {"app = connect_query='select 1'", ":2: database \"app\": unknown key \"connect_query\""},
        {"app = =x", ":2: database \"app\": unknown key \"\""},
        {"app = host", ":2: database \"app\": expected \"=\" after \"host\""},
        {"app = host localhost", ":2: database \"app\": expected \"=\" after \"host\""},
        {"app = password='abc", ":2: database \"app\": password: quoted value is not closed"},
        {"app = password='abc\\'", ":2: database \"app\": password: quoted value is not closed"},
        {"app = password='abc'port=1",
         ":2: database \"app\": password: expected a space after the closing quote"},
        {"app = port=0", ":2: database \"app\": port: must be between 1 and 65535, got \"0\""},
        {"app = port=five", ":2: database \"app\": port: expected an integer, got \"five\""},
        {"app = pool_size=0", ":2: database \"app\": pool_size: must be at least 1, got \"0\""},
        {"app = min_pool_size=-1",
         ":2: database \"app\": min_pool_size: must be at least 0, got \"-1\""},
        {"app = reserve_pool=x", ":2: database \"app\": reserve_pool: expected an integer, got "
                                 "\"x\""},
        {"app = max_db_connections=1.5",
         ":2: database \"app\": max_db_connections: expected an integer, got \"1.5\""},
        {"app = pool_mode=txn", ":2: database \"app\": pool_mode: expected session, transaction "
                                "or statement, got \"txn\""},
        {"= host=x", ":2: database name is empty"},
    };
    char text[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "[databases]\n%s\n", cases[i].entry);
        expect_error(text, cases[i].error);
    }
}

static void test_duplicate_database_is_reported_on_its_second_line(void **state)
{
    expect_error("[databases]\napp =\nother =\n\napp = host=x\n",
                 ":5: database \"app\" is defined twice (first on line 2)");
}

static void test_database_name_longer_than_63_bytes_is_reported(void **state)
{
    char *name = repeat('n', 64);
    char text[256];
    char error[256];

    snprintf(text, sizeof(text), "[databases]\n%s = port=1\n", name);
    snprintf(error, sizeof(error), ":2: database name \"%s\" is longer than 63 bytes", name);
    expect_error(text, error);
    name[63] = '\0';
    snprintf(text, sizeof(text), "[databases]\n%s = port=1\n", name);
    config_free(load_ok(text));
    free(name);
}

static void test_database_values_longer_than_their_field_are_reported(void **state)
{
    char *dbname = repeat('d', 64);
    char *password = repeat('p', 300);
    char text[512];

    snprintf(text, sizeof(text), "[databases]\napp = dbname=%s\n", dbname);
    expect_error(text, ":2: database \"app\": dbname: value too long (at most 63 bytes)");
    snprintf(text, sizeof(text), "[databases]\napp = password='%s'\n", password);
    expect_error(text, ":2: database \"app\": password: value too long (at most 255 bytes)");
    password[255] = '\0';
    snprintf(text, sizeof(text), "[databases]\napp = password=%s\n", password);
    config_free(load_ok(text));
    free(dbname);
    free(password);
}

static void test_line_longer_than_the_limit_is_reported(void **state)
{
    char *comment = repeat('#', 65535);
    size_t size = strlen(comment) + 64;
    char *text = malloc(size);

    assert_non_null(text);
    snprintf(text, size, "[pgturbo]\n%s\nlisten_port = 1\n", comment);
    expect_error(text, ":2: line is longer than 65534 bytes");
    free(text);
    free(comment);
}

static void test_line_at_the_limit_keeps_line_numbers(void **state)
{
    char *comment = repeat('#', 65534);
    size_t size = 2 * strlen(comment) + 64;
    char *text = malloc(size);

    assert_non_null(text);
    snprintf(text, size, "[pgturbo]\n%s\n%s\nnonsense\n", comment, comment);
    expect_error(text, ":4: line is not \"key = value\"");
    free(text);
    free(comment);
}

static void test_nul_byte_is_reported(void **state)
{
    static const char text[] = "[pgturbo]\nlisten_port = 1\nworkers = 1\0 2\n";

    expect_error_bytes(text, sizeof(text) - 1, ":3: line contains a NUL byte");
}

static void test_scheduler_jobs_are_stored_in_file_order(void **state)
{
    config_t *cfg = load_ok("[scheduler]\n"
                            "partition_maintain = 3600 host=127.0.0.1 port=5432 dbname=app\n"
                            "run_at_start = no\n"
                            "\n"
                            "partition_maintain =  1.5\t  dbname='my db' user=postgres  \n"
                            "partition_maintain = 86400 postgresql://u@db.example:5433/reports\n");

    assert_false(cfg->run_at_start);
    assert_int_equal(cfg->n_jobs, 3);
    assert_int_equal(cfg->jobs[0].interval, 3600000);
    assert_string_equal(cfg->jobs[0].conninfo, "host=127.0.0.1 port=5432 dbname=app");
    assert_string_equal(cfg->jobs[0].dbname, "app");
    assert_int_equal(cfg->jobs[0].line, 2);
    assert_int_equal(cfg->jobs[1].interval, 1500);
    assert_string_equal(cfg->jobs[1].conninfo, "dbname='my db' user=postgres");
    assert_string_equal(cfg->jobs[1].dbname, "my db");
    assert_int_equal(cfg->jobs[1].line, 5);
    assert_int_equal(cfg->jobs[2].interval, 86400000);
    assert_string_equal(cfg->jobs[2].conninfo, "postgresql://u@db.example:5433/reports");
    assert_string_equal(cfg->jobs[2].dbname, "reports");
    config_free(cfg);
}

static void test_sixteen_jobs_are_allowed(void **state)
{
    char text[2048] = "[scheduler]\n";

    for (int i = 0; i < 16; i++) {
        size_t used = strlen(text);
        snprintf(text + used, sizeof(text) - used, "partition_maintain = 60 dbname=db%d\n", i);
    }
    config_t *cfg = load_ok(text);
    assert_int_equal(cfg->n_jobs, 16);
    assert_string_equal(cfg->jobs[15].dbname, "db15");
    config_free(cfg);
}

static void test_bad_scheduler_lines_are_reported(void **state)
{
    static const struct {
        const char *line;
        const char *error;
    } cases[] = {
        {"partition_maintain = abc dbname=x",
         ":2: partition_maintain: expected a number of seconds such as 3600, got \"abc\""},
        {"partition_maintain = 1h dbname=x",
         ":2: partition_maintain: expected a number of seconds such as 3600, got \"1h\""},
        {"partition_maintain = -60 dbname=x",
         ":2: partition_maintain: expected a number of seconds such as 3600, got \"-60\""},
        {"partition_maintain = 0 dbname=x",
         ":2: partition_maintain: must be at least 1 second, got \"0\""},
        {"partition_maintain = 0.999 dbname=x",
         ":2: partition_maintain: must be at least 1 second, got \"0.999\""},
        {"partition_maintain = 99999999999999999999 dbname=x",
         ":2: partition_maintain: too large, got \"99999999999999999999\""},
        {"partition_maintain = 3600",
         ":2: partition_maintain: expected \"<seconds> <connection string>\", got \"3600\""},
        {"partition_maintain = dbname=x",
         ":2: partition_maintain: expected \"<seconds> <connection string>\", got \"dbname=x\""},
        {"partition_maintain =", ":2: partition_maintain: expected \"<seconds> <connection "
                                 "string>\", got \"\""},
        {"partition_maintain = 3600 host=x dbname",
         ":2: partition_maintain: bad connection string: missing \"=\" after \"dbname\" in "
         "connection info string"},
        {"partition_maintain = 3600 dbname=x hots=y",
         ":2: partition_maintain: bad connection string: invalid connection option \"hots\""},
        {"partition_maintain = 3600 dbname='x",
         ":2: partition_maintain: bad connection string: unterminated quoted string in "
         "connection info string"},
        {"partition_maintain = 3600 host=127.0.0.1 user=postgres",
         ":2: partition_maintain: the connection string names no dbname"},
        {"partition_maintain = 3600 postgresql://127.0.0.1",
         ":2: partition_maintain: the connection string names no dbname"},
        {"run_at_start = sometimes", ":2: run_at_start: expected a boolean (1/0, yes/no, on/off, "
                                     "true/false), got \"sometimes\""},
        {"partition_maintan = 3600 dbname=x", ":2: unknown key \"partition_maintan\" in "
                                              "[scheduler]"},
        {"listen_port = 6432", ":2: unknown key \"listen_port\" in [scheduler]"},
    };
    char text[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "[scheduler]\n%s\n", cases[i].line);
        expect_error(text, cases[i].error);
    }
}

static void test_scheduler_job_dbname_longer_than_63_bytes_is_reported(void **state)
{
    char *dbname = repeat('d', 64);
    char text[256];
    char error[256];

    snprintf(text, sizeof(text), "[scheduler]\npartition_maintain = 60 dbname=%s\n", dbname);
    snprintf(error, sizeof(error), ":2: partition_maintain: dbname \"%s\" is longer than 63 bytes",
             dbname);
    expect_error(text, error);
    free(dbname);
}

static void test_scheduler_connection_string_longer_than_its_field_is_reported(void **state)
{
    char *appname = repeat('a', 4096);
    char text[4400];

    snprintf(text, sizeof(text),
             "[scheduler]\npartition_maintain = 60 dbname=x application_name=%s\n", appname);
    expect_error(text, ":2: partition_maintain: connection string too long (at most 4095 bytes)");
    free(appname);
}

static void test_second_job_on_a_database_is_reported(void **state)
{
    expect_error("[scheduler]\n"
                 "partition_maintain = 60 host=a dbname=app\n"
                 "partition_maintain = 60 dbname=other\n"
                 "partition_maintain = 3600 host=b dbname=app\n",
                 ":4: partition_maintain: database \"app\" has a job already (line 2)");
}

static void test_seventeenth_job_is_reported(void **state)
{
    char text[2048] = "[scheduler]\n";

    for (int i = 0; i < 17; i++) {
        size_t used = strlen(text);
        snprintf(text + used, sizeof(text) - used, "partition_maintain = 60 dbname=db%d\n", i);
    }
    expect_error(text, ":18: partition_maintain: more than 16 jobs");
}

/* What config_show() reported: the rows of one key, in order. */
typedef struct shown {
    const char *key;
    char values[4][512];
    char defaults[4][64];
    int n;
} shown_t;

static void collect_rows(void *arg, const char *key, const char *value, const char *dflt,
                         bool changeable)
{
    shown_t *shown = arg;

    if (strcmp(key, shown->key) != 0)
        return;
    assert_true(shown->n < 4);
    assert_true(changeable);
    snprintf(shown->values[shown->n], sizeof(shown->values[0]), "%s", value);
    snprintf(shown->defaults[shown->n], sizeof(shown->defaults[0]), "%s", dflt);
    shown->n++;
}

static void test_show_config_lists_jobs_with_their_passwords_masked(void **state)
{
    config_t *cfg = load_ok(
        "[pgturbo]\n"
        "admin_token = hunter2\n"
        "[scheduler]\n"
        "partition_maintain = 3600 host=127.0.0.1 dbname=app user=postgres password=hunter2\n"
        "partition_maintain = 90.5 postgresql://u:hunter2@db.example/reports?sslmode=require\n"
        "partition_maintain = 60 dbname=logs password='it\\'s a secret' application_name='a b'\n"
        "partition_maintain = 60 dbname=plain\n");
    shown_t jobs = {.key = "partition_maintain"};
    shown_t start = {.key = "run_at_start"};
    shown_t token = {.key = "admin_token"};

    config_show(cfg, collect_rows, &jobs);
    config_show(cfg, collect_rows, &start);
    config_show(cfg, collect_rows, &token);
    assert_int_equal(jobs.n, 4);
    assert_string_equal(jobs.values[0],
                        "3600 user=postgres password=******** dbname=app host=127.0.0.1");
    assert_string_equal(jobs.values[1], "90.500 user=u password=******** dbname=reports "
                                        "host=db.example sslmode=require");
    assert_string_equal(jobs.values[2], "60 password=******** dbname=logs application_name='a b'");
    assert_string_equal(jobs.values[3], "60 dbname=plain");
    assert_string_equal(jobs.defaults[0], "");
    assert_int_equal(start.n, 1);
    assert_string_equal(start.values[0], "1");
    assert_string_equal(start.defaults[0], "1");
    assert_int_equal(token.n, 1);
    assert_string_equal(token.values[0], "********");
    config_free(cfg);
}

static void test_cache_settings_and_defaults(void **state)
{
    config_t *cfg = load_ok("[cache]\n");
    assert_int_equal(cfg->cache_max_memory, 64 * 1024 * 1024);
    assert_int_equal(cfg->cache_max_entries, 100000);
    assert_int_equal(cfg->cache_max_entry_size, 1024 * 1024);
    assert_int_equal(cfg->cache_compress_min, 4096);
    assert_int_equal(cfg->cache_invalidation, CACHE_INVALIDATION_PROXY);
    assert_int_equal(cfg->n_cache_rules, 0);
    config_free(cfg);

    cfg = load_ok("[cache]\ncache_max_memory = 256MB\ncache_max_entries = 500\n"
                  "cache_max_entry_size = 512 kB\ncache_compress_min = 100\n"
                  "cache_invalidation = logical\n");
    assert_int_equal(cfg->cache_max_memory, 256LL * 1024 * 1024);
    assert_int_equal(cfg->cache_max_entries, 500);
    assert_int_equal(cfg->cache_max_entry_size, 512 * 1024);
    assert_int_equal(cfg->cache_compress_min, 100);
    assert_int_equal(cfg->cache_invalidation, CACHE_INVALIDATION_LOGICAL);
    config_free(cfg);
}

static void test_cache_redis_settings(void **state)
{
    config_t *cfg = load_ok("[cache]\n");
    assert_string_equal(cfg->cache_redis_host, "");
    assert_int_equal(cfg->cache_redis_port, 6379);
    assert_int_equal(cfg->cache_redis_db, 0);
    assert_string_equal(cfg->cache_redis_prefix, "pgturbo");
    assert_int_equal(cfg->cache_redis_lease, 500);
    config_free(cfg);

    cfg = load_ok("[cache]\ncache_redis_host = 10.0.0.5\ncache_redis_port = 6380\n"
                  "cache_redis_password = s3cret\ncache_redis_db = 2\n"
                  "cache_redis_prefix = app1\ncache_redis_lease = 0.25\n");
    assert_string_equal(cfg->cache_redis_host, "10.0.0.5");
    assert_int_equal(cfg->cache_redis_port, 6380);
    assert_string_equal(cfg->cache_redis_password, "s3cret");
    assert_int_equal(cfg->cache_redis_db, 2);
    assert_string_equal(cfg->cache_redis_prefix, "app1");
    assert_int_equal(cfg->cache_redis_lease, 250);
    assert_int_equal(cfg->n_cache_rules, 0);
    config_free(cfg);
    expect_error("[cache]\ncache_redis_port = 0\n",
                 ":2: cache_redis_port: must be between 1 and 65535, got \"0\"");
}

/* A misspelt setting is an error, not a rule on a table of that name. */
static void test_cache_unknown_setting_is_an_error(void **state)
{
    expect_error("[cache]\ncache_max_entires = 1000\n",
                 ":2: unknown cache setting \"cache_max_entires\" (a table named so takes its "
                 "schema: public.cache_max_entires)");
    config_t *cfg = load_ok("[cache]\npublic.cache_items = 60\n");
    assert_int_equal(cfg->n_cache_rules, 1);
    assert_string_equal(cfg->cache_rules[0].table, "cache_items");
    config_free(cfg);
}

static void test_cache_rules_are_read_in_order(void **state)
{
    config_t *cfg = load_ok("[cache]\nusers = 600\npublic.sessions = 3600\nanalytics.* = 1.5\n"
                            "* = off\nbalances = 0\n");
    assert_int_equal(cfg->n_cache_rules, 5);
    assert_string_equal(cfg->cache_rules[0].schema, "");
    assert_string_equal(cfg->cache_rules[0].table, "users");
    assert_int_equal(cfg->cache_rules[0].ttl, 600000);
    assert_int_equal(cfg->cache_rules[0].line, 2);
    assert_string_equal(cfg->cache_rules[1].schema, "public");
    assert_string_equal(cfg->cache_rules[1].table, "sessions");
    assert_string_equal(cfg->cache_rules[2].schema, "analytics");
    assert_string_equal(cfg->cache_rules[2].table, "*");
    assert_int_equal(cfg->cache_rules[2].ttl, 1500);
    assert_string_equal(cfg->cache_rules[3].table, "*");
    assert_int_equal(cfg->cache_rules[3].ttl, 0);
    assert_int_equal(cfg->cache_rules[4].ttl, 0);
    config_free(cfg);
}

/* schema.table, then table, then schema.*, then *. */
static void test_cache_rule_find_takes_the_most_specific(void **state)
{
    config_t *cfg = load_ok("[cache]\n* = 5\nanalytics.* = 60\nusers = 600\n"
                            "analytics.users = 30\n");
    assert_int_equal(config_cache_rule_find(cfg, "analytics", "users"), 3);
    assert_int_equal(config_cache_rule_find(cfg, "public", "users"), 2);
    assert_int_equal(config_cache_rule_find(cfg, NULL, "users"), 2);
    assert_int_equal(config_cache_rule_find(cfg, "analytics", "events"), 1);
    assert_int_equal(config_cache_rule_find(cfg, "public", "events"), 0);
    assert_int_equal(config_cache_rule_find(cfg, NULL, "events"), 0);
    config_free(cfg);

    cfg = load_ok("[cache]\nanalytics.* = 60\n");
    assert_int_equal(config_cache_rule_find(cfg, NULL, "events"), -1);
    assert_int_equal(config_cache_rule_find(cfg, "public", "events"), -1);
    config_free(cfg);
}

static void test_bad_cache_lines_are_reported_with_their_line(void **state)
{
    expect_error("[cache]\nusers = soon\n",
                 ":2: users: expected a number of seconds such as 60, or off, got \"soon\"");
    expect_error("[cache]\nusers = 60\nusers = 30\n",
                 ":3: users: the rule is already given (line 2)");
    expect_error("[cache]\na.b.c = 60\n",
                 ":2: unknown key \"a.b.c\" in [cache]: expected a setting, or a rule named "
                 "table, schema.table, schema.* or *");
    expect_error("[cache]\nuse*rs = 60\n",
                 ":2: unknown key \"use*rs\" in [cache]: expected a setting, or a rule named "
                 "table, schema.table, schema.* or *");
    expect_error("[cache]\ncache_max_memory = lots\n",
                 ":2: cache_max_memory: expected a size such as 65536, 512kB or 64MB, got "
                 "\"lots\"");
    expect_error("[cache]\ncache_max_memory = 99999999999GB\n",
                 ":2: cache_max_memory: too large, got \"99999999999GB\"");
    expect_error("[cache]\ncache_invalidation = redis\n",
                 ":2: cache_invalidation: expected proxy or logical, got \"redis\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_file_gives_documented_defaults),
        cmocka_unit_test(test_load_records_the_path),
        cmocka_unit_test(test_every_pgturbo_key_is_stored),
        cmocka_unit_test(test_pgbouncer_section_is_an_alias),
        cmocka_unit_test(test_pgbouncer_only_keys_are_ignored),
        cmocka_unit_test(test_later_value_of_a_key_wins),
        cmocka_unit_test(test_times_are_seconds_stored_as_milliseconds),
        cmocka_unit_test(test_bools_accept_every_spelling),
        cmocka_unit_test(test_verbose_accepts_pgbouncer_levels),
        cmocka_unit_test(test_pool_modes_are_parsed),
        cmocka_unit_test(test_pool_mode_names),
        cmocka_unit_test(test_semicolons_and_hashes_inside_values_are_kept),
        cmocka_unit_test(test_crlf_line_endings_are_accepted),
        cmocka_unit_test(test_long_lines_are_read_whole),
        cmocka_unit_test(test_database_entry_with_every_key),
        cmocka_unit_test(test_database_entry_defaults),
        cmocka_unit_test(test_database_defaults_come_from_a_later_pgturbo_section),
        cmocka_unit_test(test_connection_string_quoting_and_escapes),
        cmocka_unit_test(test_databases_keep_file_order_past_growth),
        cmocka_unit_test(test_find_database_prefers_exact_name_then_fallback),
        cmocka_unit_test(test_find_database_without_fallback_returns_null),
        cmocka_unit_test(test_missing_file_is_reported),
        cmocka_unit_test(test_unreadable_file_is_reported),
        cmocka_unit_test(test_error_is_truncated_to_errlen),
        cmocka_unit_test(test_unknown_key_is_named_with_its_section),
        cmocka_unit_test(test_unknown_section_is_an_error),
        cmocka_unit_test(test_key_outside_any_section_is_an_error),
        cmocka_unit_test(test_syntax_errors_report_their_line),
        cmocka_unit_test(test_first_error_is_the_one_reported),
        cmocka_unit_test(test_bad_pool_mode_is_reported),
        cmocka_unit_test(test_bad_integers_are_reported),
        cmocka_unit_test(test_bad_times_are_reported),
        cmocka_unit_test(test_bad_bools_are_reported),
        cmocka_unit_test(test_strings_longer_than_their_field_are_reported),
        cmocka_unit_test(test_bad_database_entries_are_reported),
        cmocka_unit_test(test_duplicate_database_is_reported_on_its_second_line),
        cmocka_unit_test(test_database_name_longer_than_63_bytes_is_reported),
        cmocka_unit_test(test_database_values_longer_than_their_field_are_reported),
        cmocka_unit_test(test_line_longer_than_the_limit_is_reported),
        cmocka_unit_test(test_line_at_the_limit_keeps_line_numbers),
        cmocka_unit_test(test_nul_byte_is_reported),
        cmocka_unit_test(test_scheduler_jobs_are_stored_in_file_order),
        cmocka_unit_test(test_sixteen_jobs_are_allowed),
        cmocka_unit_test(test_bad_scheduler_lines_are_reported),
        cmocka_unit_test(test_scheduler_job_dbname_longer_than_63_bytes_is_reported),
        cmocka_unit_test(test_scheduler_connection_string_longer_than_its_field_is_reported),
        cmocka_unit_test(test_second_job_on_a_database_is_reported),
        cmocka_unit_test(test_seventeenth_job_is_reported),
        cmocka_unit_test(test_show_config_lists_jobs_with_their_passwords_masked),
        cmocka_unit_test(test_cache_settings_and_defaults),
        cmocka_unit_test(test_cache_redis_settings),
        cmocka_unit_test(test_cache_unknown_setting_is_an_error),
        cmocka_unit_test(test_cache_rules_are_read_in_order),
        cmocka_unit_test(test_cache_rule_find_takes_the_most_specific),
        cmocka_unit_test(test_bad_cache_lines_are_reported_with_their_line),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
