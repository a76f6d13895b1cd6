/*
 * test_admin_api.c
 *    The admin HTTP API against a running pgturbo, through a small HTTP/1.1 client on plain
 *    sockets (one request per connection, "Connection: close"): /health without a token, the
 *    token model (401 without or with a wrong token, 200 with either token on the GET
 *    endpoints, 403 for the stats token on POST), 404, 405 and 400, what pools, clients,
 *    servers and /metrics show of a connected client, tokens changed by a reload, no listener
 *    without admin_token, exit status 1 on a busy admin_listen, and 503 from /health when the
 *    first [databases] entry is down.
 *
 *    Each test runs its own daemon; the pooled client goes to a database of its own (through
 *    the "*" entry), so the rows looked at are the test's own.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#define ADMIN_TOKEN "it-admin-token-1"
#define STATS_TOKEN "it-stats-token-1"
#define DATABASE    "it_admin_api"

/* Every GET endpoint of the API (the fingerprint one answers 404 for an unknown one). */
static const char *const get_paths[] = {
    "/metrics",           "/api/v1/pools",
    "/api/v1/clients",    "/api/v1/servers",
    "/api/v1/queries",    "/api/v1/queries?sort=p95&limit=5&db=postgres",
    "/api/v1/slow",       "/api/v1/slow?since=2026-01-01T00:00:00Z&limit=10",
    "/api/v1/routes",     "/api/v1/requests/slow",
    "/api/v1/n-plus-one", "/api/v1/alerts",
    "/api/v1/scheduler",
};
#define N_GET_PATHS (sizeof(get_paths) / sizeof(get_paths[0]))

/* ---- a tiny HTTP client ---- */

/* As harness_http, with "Bearer <token>" when token is not NULL. */
static harness_response_t http(int port, const char *method, const char *path, const char *token)
{
    char auth[256];
    if (token != NULL)
        snprintf(auth, sizeof(auth), "Bearer %s", token);
    return harness_http(port, method, path, token != NULL ? auth : NULL);
}

/* The value of header name (case-insensitive), copied into out; false when absent. */
static bool header(const harness_response_t *r, const char *name, char *out, size_t len)
{
    size_t n = strlen(name);
    for (const char *line = strstr(r->head, "\r\n"); line != NULL && line[2] != '\0';
         line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
            const char *v = h + n + 1 + strspn(h + n + 1, " ");
            size_t vlen = strcspn(v, "\r\n");
            snprintf(out, len, "%.*s", (int)vlen, v);
            return true;
        }
    }
    return false;
}

static void assert_header(const harness_response_t *r, const char *name, const char *expected)
{
    char value[256];
    if (!header(r, name, value, sizeof(value)))
        fail_msg("no %s header in:\n%s", name, r->head);
    assert_string_equal(value, expected);
}

/* The body as JSON (fails the test when it is not JSON). Release with json_decref. */
static json_t *body_json(const harness_response_t *r)
{
    json_error_t error;
    json_t *v = json_loads(r->body, 0, &error);
    if (v == NULL)
        fail_msg("body is not JSON (%s): \"%.200s\"", error.text, r->body);
    return v;
}

/* Checks status, the JSON type and an {"error": "..."} body that mentions needle. */
static void expect_error(int port, const char *method, const char *path, const char *token,
                         int status, const char *needle)
{
    harness_response_t r = http(port, method, path, token);
    if (r.status != status)
        fail_msg("%s %s: expected %d, got %d: %s", method, path, status, r.status, r.body);
    assert_header(&r, "Content-Type", "application/json");
    json_t *v = body_json(&r);
    const char *error = json_string_value(json_object_get(v, "error"));
    if (error == NULL || strstr(error, needle) == NULL)
        fail_msg("%s %s: error \"%s\" does not mention \"%s\"", method, path,
                 error ? error : "(none)", needle);
    json_decref(v);
    harness_response_free(&r);
}

/* GET path with token: 200 and a JSON array. Release with json_decref. */
static json_t *get_array(int port, const char *path, const char *token)
{
    harness_response_t r = http(port, "GET", path, token);
    if (r.status != 200)
        fail_msg("GET %s: expected 200, got %d: %s", path, r.status, r.body);
    assert_header(&r, "Content-Type", "application/json");
    json_t *v = body_json(&r);
    if (!json_is_array(v))
        fail_msg("GET %s: not an array: %s", path, r.body);
    harness_response_free(&r);
    return v;
}

/* The first element of array whose string member key is value, or NULL. */
static json_t *find(const json_t *array, const char *key, const char *value)
{
    size_t i;
    json_t *o;
    json_array_foreach(array, i, o)
    {
        const char *v = json_string_value(json_object_get(o, key));
        if (v != NULL && strcmp(v, value) == 0)
            return o;
    }
    return NULL;
}

static json_int_t int_member(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("member %s is missing or not an integer", key);
    return json_integer_value(v);
}

/* ---- daemons ---- */

/* Waits until the admin API accepts connections: it starts just after the workers, which
 * harness_start_pgturbo waits for. */
static void wait_listening(int port)
{
    long long deadline = harness_now_ms() + 5000;
    for (;;) {
        int fd = harness_raw_try_connect(port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        if (harness_now_ms() > deadline)
            fail_msg("the admin API is not listening on port %d", port);
        harness_sleep_ms(20);
    }
}

/* The [pgturbo] lines of the admin API on port, with the two tokens. */
static void admin_settings(char *out, size_t len, int port, const char *admin_token,
                           const char *more)
{
    snprintf(out, len,
             "admin_listen = 127.0.0.1:%d\nadmin_token = %s\nadmin_stats_token = " STATS_TOKEN
             "\n%s",
             port, admin_token, more ? more : "");
}

/* Starts pgturbo with the API on a free port, which it returns. */
static int start_with_api(pgturbo_proc_t *p)
{
    char settings[512];
    int port = harness_free_port();
    admin_settings(settings, sizeof(settings), port, ADMIN_TOKEN, NULL);
    harness_start_pgturbo(p, settings, NULL);
    wait_listening(port);
    return port;
}

static int count_lines_with(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int n = 0;
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* ---- tests ---- */

static void health_is_200_without_a_token(void **state)
{
    pgturbo_proc_t p;
    int port = start_with_api(&p);
    harness_response_t r = http(port, "GET", "/health", NULL);
    assert_int_equal(r.status, 200);
    assert_header(&r, "Content-Type", "application/json");
    assert_string_equal(r.body, "{\"status\":\"ok\",\"postgres\":\"ok\"}\n");
    harness_response_free(&r);
    /* HEAD as GET, without the body. */
    r = http(port, "HEAD", "/health", NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    harness_response_free(&r);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void every_endpoint_but_health_needs_a_token(void **state)
{
    pgturbo_proc_t p;
    int port = start_with_api(&p);
    for (size_t i = 0; i < N_GET_PATHS; i++) {
        const char *path = get_paths[i];
        harness_response_t r = http(port, "GET", path, NULL);
        if (r.status != 401)
            fail_msg("GET %s without a token: expected 401, got %d", path, r.status);
        assert_header(&r, "WWW-Authenticate", "Bearer realm=\"pgturbo\"");
        harness_response_free(&r);
        expect_error(port, "GET", path, "wrong-token", 401, "token");
        expect_error(port, "GET", path, ADMIN_TOKEN "x", 401, "token");
        expect_error(port, "GET", path, "", 401, "token");

        /* Another scheme, or the token alone, is not a bearer token. */
        r = harness_http(port, "GET", path, "Basic " ADMIN_TOKEN);
        assert_int_equal(r.status, 401);
        harness_response_free(&r);
        r = harness_http(port, "GET", path, ADMIN_TOKEN);
        assert_int_equal(r.status, 401);
        harness_response_free(&r);

        const char *tokens[] = {ADMIN_TOKEN, STATS_TOKEN};
        for (int t = 0; t < 2; t++) {
            r = http(port, "GET", path, tokens[t]);
            if (r.status != 200)
                fail_msg("GET %s with %s: expected 200, got %d: %s", path, tokens[t], r.status,
                         r.body);
            if (strcmp(path, "/metrics") != 0) {
                json_t *v = body_json(&r);
                assert_true(json_is_array(v));
                json_decref(v);
            }
            harness_response_free(&r);
        }
    }
    /* The scheme is case-insensitive, and spaces around the token do not count. */
    harness_response_t r = harness_http(port, "GET", "/api/v1/pools", "bearer   " STATS_TOKEN "  ");
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    /* A token is checked before the path: an unknown path without one is 401 too. */
    expect_error(port, "GET", "/api/v1/nothing", NULL, 401, "token");
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void reset_needs_the_admin_token(void **state)
{
    pgturbo_proc_t p;
    int port = start_with_api(&p);
    expect_error(port, "POST", "/api/v1/stats/reset", NULL, 401, "token");
    expect_error(port, "POST", "/api/v1/stats/reset", STATS_TOKEN, 403, "admin_token");
    harness_response_t r = http(port, "POST", "/api/v1/stats/reset", ADMIN_TOKEN);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}\n");
    harness_response_free(&r);
    assert_int_equal(count_lines_with(p.log, "admin API: query statistics reset"), 1);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void wrong_method_is_405_with_allow(void **state)
{
    pgturbo_proc_t p;
    int port = start_with_api(&p);
    expect_error(port, "GET", "/api/v1/stats/reset", ADMIN_TOKEN, 405, "POST");
    harness_response_t r = http(port, "GET", "/api/v1/stats/reset", ADMIN_TOKEN);
    assert_header(&r, "Allow", "POST");
    harness_response_free(&r);
    expect_error(port, "POST", "/api/v1/pools", ADMIN_TOKEN, 405, "GET");
    r = http(port, "DELETE", "/api/v1/pools", STATS_TOKEN);
    assert_int_equal(r.status, 405);
    assert_header(&r, "Allow", "GET, HEAD");
    harness_response_free(&r);
    expect_error(port, "POST", "/health", NULL, 405, "GET");
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void unknown_paths_and_fingerprints_are_404(void **state)
{
    pgturbo_proc_t p;
    int port = start_with_api(&p);
    expect_error(port, "GET", "/api/v1/nothing", ADMIN_TOKEN, 404, "/api/v1/nothing");
    expect_error(port, "GET", "/", STATS_TOKEN, 404, "no such endpoint");
    expect_error(port, "GET", "/api/v1/pools/", STATS_TOKEN, 404, "no such endpoint");
    expect_error(port, "GET", "/api/v2/pools", STATS_TOKEN, 404, "no such endpoint");
    /* A path that is not UTF-8 is quoted with '?' for the bytes JSON cannot hold. */
    expect_error(port, "GET", "/api/%ff%0a", STATS_TOKEN, 404, "/api/??");
    expect_error(port, "GET", "/api/v1/queries/0123456789abcdef", STATS_TOKEN, 404,
                 "unknown fingerprint 0123456789abcdef");
    expect_error(port, "GET", "/api/v1/queries/0123456789abcdef/x", STATS_TOKEN, 404,
                 "no such endpoint");
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void bad_query_parameters_are_400(void **state)
{
    static const char *const bad[][2] = {
        {"/api/v1/queries?sort=foo", "sort"},
        {"/api/v1/queries?sort=", "sort"},
        {"/api/v1/queries?limit=-1", "limit"},
        {"/api/v1/queries?limit=0", "limit"},
        {"/api/v1/queries?limit=10001", "limit"},
        {"/api/v1/queries?limit=ten", "limit"},
        {"/api/v1/queries?db=", "db"},
        {"/api/v1/queries/xyz", "fingerprint"},
        {"/api/v1/queries/0123456789abcdeg", "fingerprint"},
        {"/api/v1/slow?since=yesterday", "since"},
        {"/api/v1/slow?since=2026-01-01T00:00:00", "since"},
        {"/api/v1/slow?limit=-5", "limit"},
        {"/api/v1/requests/slow?limit=x", "limit"},
        {"/api/v1/n-plus-one?limit=100000", "limit"},
    };
    pgturbo_proc_t p;
    int port = start_with_api(&p);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_error(port, "GET", bad[i][0], STATS_TOKEN, 400, bad[i][1]);
    /* Each form of since that is accepted. */
    json_decref(get_array(port, "/api/v1/slow?since=1767225600000", STATS_TOKEN));
    json_decref(get_array(port, "/api/v1/slow?since=2026-01-01T00:00:00.250Z", STATS_TOKEN));
    json_decref(get_array(port, "/api/v1/queries?sort=errors&limit=10000", STATS_TOKEN));
    json_decref(get_array(port, "/api/v1/queries?sort=calls&unknown=1", STATS_TOKEN));
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

/* The line of /metrics that starts with prefix, as text; fails when there is none. */
static void assert_metric(const char *text, const char *expected_line)
{
    char needle[512];
    snprintf(needle, sizeof(needle), "\n%s\n", expected_line);
    if (strstr(text, needle) == NULL)
        fail_msg("no line \"%s\" in /metrics:\n%s", expected_line, text);
}

static void pools_clients_servers_and_metrics_show_a_connected_client(void **state)
{
    harness_create_database(DATABASE);
    pgturbo_proc_t p;
    int port = start_with_api(&p);
    PGconn *c = harness_connect(p.port, DATABASE, "application_name=it_admin_client");
    char *pid = harness_query_value(c, "SELECT pg_backend_pid()");

    json_t *pools = get_array(port, "/api/v1/pools", STATS_TOKEN);
    json_t *pool = find(pools, "database", DATABASE);
    if (pool == NULL)
        fail_msg("no pool of %s in /api/v1/pools", DATABASE);
    assert_string_equal(json_string_value(json_object_get(pool, "user")), "postgres");
    assert_string_equal(json_string_value(json_object_get(pool, "pool_mode")), "session");
    assert_int_equal(int_member(pool, "cl_active"), 1);
    assert_int_equal(int_member(pool, "cl_waiting"), 0);
    assert_int_equal(int_member(pool, "sv_active"), 1);
    assert_int_equal(int_member(pool, "sv_idle"), 0);
    assert_int_equal(int_member(pool, "sv_login"), 0);
    assert_int_equal(int_member(pool, "maxwait_us"), 0);
    assert_true(json_is_false(json_object_get(pool, "paused")));

    json_t *clients = get_array(port, "/api/v1/clients", ADMIN_TOKEN);
    assert_int_equal(json_array_size(clients), 1);
    json_t *client = find(clients, "application_name", "it_admin_client");
    if (client == NULL)
        fail_msg("the client is not in /api/v1/clients");
    assert_string_equal(json_string_value(json_object_get(client, "database")), DATABASE);
    assert_string_equal(json_string_value(json_object_get(client, "user")), "postgres");
    /* Session mode: the client holds its server connection, so it is active. */
    assert_string_equal(json_string_value(json_object_get(client, "state")), "active");
    assert_string_equal(json_string_value(json_object_get(client, "addr")), "127.0.0.1");
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);
    assert_int_equal(getsockname(PQsocket(c), (struct sockaddr *)&sa, &salen), 0);
    assert_int_equal(int_member(client, "port"), ntohs(sa.sin_port));

    json_t *servers = get_array(port, "/api/v1/servers", STATS_TOKEN);
    json_t *server = find(servers, "database", DATABASE);
    if (server == NULL)
        fail_msg("no server of %s in /api/v1/servers", DATABASE);
    assert_int_equal(int_member(server, "backend_pid"), atoi(pid));
    assert_int_equal(int_member(server, "client_id"), int_member(client, "id"));
    assert_int_equal(int_member(server, "port"), harness_pg_port());

    harness_response_t r = http(port, "GET", "/metrics", STATS_TOKEN);
    assert_int_equal(r.status, 200);
    assert_header(&r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    assert_metric(r.body, "# TYPE pgturbo_clients gauge");
    assert_metric(r.body, "pgturbo_clients 1");
    assert_metric(r.body, "pgturbo_servers 1");
    assert_metric(r.body,
                  "pgturbo_pool_clients_active{database=\"" DATABASE "\",user=\"postgres\"} 1");
    assert_metric(r.body,
                  "pgturbo_pool_clients_waiting{database=\"" DATABASE "\",user=\"postgres\"} 0");
    assert_metric(r.body,
                  "pgturbo_pool_servers_active{database=\"" DATABASE "\",user=\"postgres\"} 1");
    assert_metric(r.body,
                  "pgturbo_pool_servers_idle{database=\"" DATABASE "\",user=\"postgres\"} 0");
    assert_metric(r.body,
                  "pgturbo_pool_maxwait_seconds{database=\"" DATABASE "\",user=\"postgres\"} 0");
    assert_metric(r.body, "# TYPE pgturbo_query_duration_seconds histogram");
    harness_response_free(&r);

    json_decref(pools);
    json_decref(clients);
    json_decref(servers);
    free(pid);
    PQfinish(c);

    /* Once the client has gone, it is gone from the API too. */
    long long deadline = harness_now_ms() + 5000;
    for (;;) {
        clients = get_array(port, "/api/v1/clients", STATS_TOKEN);
        size_t n = json_array_size(clients);
        json_decref(clients);
        if (n == 0)
            break;
        if (harness_now_ms() > deadline)
            fail_msg("the client is still listed 5 s after it disconnected");
        harness_sleep_ms(20);
    }
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
    harness_drop_database(DATABASE);
}

static void reload_changes_tokens_and_turns_the_api_off_and_on(void **state)
{
    pgturbo_proc_t p;
    char settings[512];
    int port = start_with_api(&p);

    admin_settings(settings, sizeof(settings), port, "it-admin-token-2", NULL);
    harness_reload_pgturbo(&p, settings, NULL);
    expect_error(port, "GET", "/api/v1/pools", ADMIN_TOKEN, 401, "token");
    json_decref(get_array(port, "/api/v1/pools", "it-admin-token-2"));
    json_decref(get_array(port, "/api/v1/pools", STATS_TOKEN));

    /* No admin_token: the API stops listening. */
    snprintf(settings, sizeof(settings), "admin_listen = 127.0.0.1:%d\n", port);
    harness_reload_pgturbo(&p, settings, NULL);
    assert_int_equal(harness_raw_try_connect(port), -1);
    assert_int_equal(count_lines_with(p.log, "admin API off: no admin_token set"), 1);

    /* A token again: it listens again, on the same address. */
    admin_settings(settings, sizeof(settings), port, ADMIN_TOKEN, NULL);
    harness_reload_pgturbo(&p, settings, NULL);
    wait_listening(port);
    json_decref(get_array(port, "/api/v1/pools", ADMIN_TOKEN));

    /* A new admin_listen waits for a restart; the old address keeps serving. */
    int other = harness_free_port();
    admin_settings(settings, sizeof(settings), other, ADMIN_TOKEN, NULL);
    harness_reload_pgturbo(&p, settings, NULL);
    assert_int_equal(count_lines_with(p.log, "until pgturbo restarts"), 1);
    json_decref(get_array(port, "/api/v1/pools", ADMIN_TOKEN));
    assert_int_equal(harness_raw_try_connect(other), -1);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void show_config_hides_the_tokens_and_fixes_admin_listen(void **state)
{
    pgturbo_proc_t p;
    char settings[512], listen[64];
    int port = harness_free_port();
    admin_settings(settings, sizeof(settings), port, ADMIN_TOKEN, "admin_users = it_admin\n");
    harness_start_pgturbo(&p, settings, NULL);
    PGconn *console = harness_connect(p.port, "pgturbo", "user=it_admin");
    PGresult *res = PQexec(console, "SHOW CONFIG");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    const char *const expected[][3] = {
        {"admin_listen", listen, "no"},
        {"admin_token", "********", "yes"},
        {"admin_stats_token", "********", "yes"},
    };
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        int row = -1;
        for (int r = 0; r < PQntuples(res); r++)
            if (strcmp(PQgetvalue(res, r, 0), expected[i][0]) == 0)
                row = r;
        if (row < 0)
            fail_msg("no %s in SHOW CONFIG", expected[i][0]);
        assert_string_equal(PQgetvalue(res, row, PQfnumber(res, "value")), expected[i][1]);
        assert_string_equal(PQgetvalue(res, row, PQfnumber(res, "changeable")), expected[i][2]);
    }
    PQclear(res);
    PQfinish(console);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void no_admin_token_means_no_listener(void **state)
{
    pgturbo_proc_t p;
    char settings[256];
    int port = harness_free_port();
    snprintf(settings, sizeof(settings),
             "admin_listen = 127.0.0.1:%d\nadmin_stats_token = " STATS_TOKEN "\n", port);
    harness_start_pgturbo(&p, settings, NULL);
    /* The log line comes before the workers' "listening", which harness_start_pgturbo saw
     * the effect of; give the API the same time it would need to start. */
    harness_sleep_ms(200);
    assert_int_equal(harness_raw_try_connect(port), -1);
    assert_int_equal(count_lines_with(p.log, "admin API off: no admin_token set"), 1);
    assert_int_equal(count_lines_with(p.log, "admin API listening"), 0);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void busy_admin_listen_exits_1_naming_the_address(void **state)
{
    int busy = harness_free_port();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)busy)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 1), 0);

    char dir[] = "/tmp/pgturbo-admin.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char ini[64], cmd[512], out[4096], expected[256];
    snprintf(ini, sizeof(ini), "%s/pgturbo.ini", dir);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fprintf(f,
            "[databases]\npostgres = host=127.0.0.1 port=%d\n[pgturbo]\nlisten_port = %d\n"
            "workers = 1\nauth_type = trust\nadmin_listen = 127.0.0.1:%d\n"
            "admin_token = " ADMIN_TOKEN "\n",
            harness_pg_port(), harness_free_port(), busy);
    fclose(f);
    /* timeout: should pgturbo start after all, the test fails rather than hangs. */
    snprintf(cmd, sizeof(cmd), "timeout -s KILL 30 %s serve %s", PGTURBO_BIN, ini);
    int status = harness_shell(cmd, out, sizeof(out));
    close(fd);
    unlink(ini);
    rmdir(dir);
    if (status != 1)
        fail_msg("expected exit status 1, got %d; output:\n%s", status, out);
    snprintf(expected, sizeof(expected),
             "pgturbo: admin_listen 127.0.0.1:%d: cannot listen: Address already in use\n", busy);
    if (strstr(out, expected) == NULL)
        fail_msg("no \"%s\" in the output:\n%s", expected, out);
}

static void malformed_admin_listen_exits_1(void **state)
{
    static const char *const bad[][2] = {
        {"9930", "expected host:port"},
        {"127.0.0.1:0", "the port must be from 1 to 65535"},
        {"127.0.0.1:99999", "the port must be from 1 to 65535"},
        {"::1:9930", "in brackets"},
        {"no-such-host.invalid:9930", "cannot resolve"},
    };
    char dir[] = "/tmp/pgturbo-admin.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char ini[64], cmd[512], out[4096];
    snprintf(ini, sizeof(ini), "%s/pgturbo.ini", dir);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f = fopen(ini, "w");
        assert_non_null(f);
        fprintf(f,
                "[databases]\npostgres = host=127.0.0.1 port=%d\n[pgturbo]\nlisten_port = %d\n"
                "workers = 1\nauth_type = trust\nadmin_listen = %s\nadmin_token = x\n",
                harness_pg_port(), harness_free_port(), bad[i][0]);
        fclose(f);
        snprintf(cmd, sizeof(cmd), "timeout -s KILL 30 %s serve %s", PGTURBO_BIN, ini);
        int status = harness_shell(cmd, out, sizeof(out));
        if (status != 1 || strstr(out, bad[i][1]) == NULL || strstr(out, bad[i][0]) == NULL)
            fail_msg("admin_listen = %s: expected exit 1 and \"%s\", got %d:\n%s", bad[i][0],
                     bad[i][1], status, out);
    }
    unlink(ini);
    rmdir(dir);
}

static void health_is_503_when_the_first_database_is_down(void **state)
{
    pgturbo_proc_t p;
    char settings[512], databases[256];
    int port = harness_free_port();
    int dead = harness_free_port(); /* claimed by this test, so nothing listens on it */
    admin_settings(settings, sizeof(settings), port, ADMIN_TOKEN, NULL);
    snprintf(databases, sizeof(databases),
             "down = host=127.0.0.1 port=%d dbname=postgres\n* = host=127.0.0.1 port=%d\n", dead,
             harness_pg_port());
    harness_start_pgturbo_databases(&p, settings, databases);
    wait_listening(port);

    harness_response_t r = http(port, "GET", "/health", NULL);
    assert_int_equal(r.status, 503);
    assert_header(&r, "Content-Type", "application/json");
    json_t *v = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(v, "status")), "unhealthy");
    const char *why = json_string_value(json_object_get(v, "postgres"));
    char port_text[32];
    snprintf(port_text, sizeof(port_text), "port %d", dead);
    if (why == NULL || strstr(why, port_text) == NULL || strchr(why, '\n') != NULL)
        fail_msg("postgres: expected one line naming %s, got \"%s\"", port_text,
                 why ? why : "(none)");
    json_decref(v);
    harness_response_free(&r);

    /* The other endpoints do not depend on PostgreSQL. */
    json_decref(get_array(port, "/api/v1/pools", STATS_TOKEN));
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

/* A known mix of queries; what the API and /metrics say of it. */
static void run_known_mix(int port)
{
    PGconn *c = harness_connect(port, "postgres", NULL);
    for (int i = 0; i < 10; i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT %d AS api_fast", i);
        harness_exec_ok(c, sql);
    }
    for (int i = 0; i < 3; i++)
        harness_exec_ok(c, "SELECT pg_sleep(0.12) AS api_slow");
    for (int i = 0; i < 2; i++)
        assert_string_equal(harness_exec_error(c, "SELECT 1/0 AS api_err"), "22012");
    harness_exec_ok(c, "BEGIN");
    harness_exec_ok(c, "SELECT generate_series(1, 5) AS api_list");
    for (int i = 1; i <= 5; i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "SELECT %d + 1 AS api_item", i);
        harness_exec_ok(c, sql);
    }
    harness_exec_ok(c, "COMMIT");
    PQfinish(c);
}

static double real_member(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v))
        fail_msg("member %s is missing or not a number", key);
    return json_number_value(v);
}

static void query_statistics_show_the_known_mix(void **state)
{
    pgturbo_proc_t p;
    char settings[512];
    int port = harness_free_port();
    admin_settings(settings, sizeof(settings), port, ADMIN_TOKEN, "n_plus_one_threshold = 5\n");
    harness_start_pgturbo(&p, settings, NULL);
    wait_listening(port);
    run_known_mix(p.port);

    json_t *rows = get_array(port, "/api/v1/queries?sort=calls&limit=100", ADMIN_TOKEN);
    json_t *fast = find(rows, "query", "SELECT $1 AS api_fast");
    json_t *slow = find(rows, "query", "SELECT pg_sleep($1) AS api_slow");
    json_t *err = find(rows, "query", "SELECT $1/$2 AS api_err");
    assert_non_null(fast);
    assert_non_null(slow);
    assert_non_null(err);
    char fast_fp[17];
    snprintf(fast_fp, sizeof(fast_fp), "%s",
             json_string_value(json_object_get(fast, "fingerprint")));
    assert_int_equal(int_member(fast, "calls"), 10);
    assert_int_equal(int_member(fast, "rows"), 10);
    assert_int_equal(int_member(slow, "calls"), 3);
    assert_true(real_member(slow, "p50") >= 120.0 && real_member(slow, "p50") < 1000.0);
    assert_true(real_member(slow, "min_exec_time") >= 120.0);
    assert_int_equal(int_member(err, "errors"), 2);
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/queries/%s",
             json_string_value(json_object_get(slow, "fingerprint")));
    json_decref(rows);

    json_t *one = get_array(port, path, STATS_TOKEN);
    assert_int_equal(json_array_size(one), 1);
    assert_int_equal(int_member(json_array_get(one, 0), "calls"), 3);
    json_decref(one);

    rows = get_array(port, "/api/v1/queries?sort=p95&limit=1", STATS_TOKEN);
    assert_int_equal(json_array_size(rows), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "query")),
                        "SELECT pg_sleep($1) AS api_slow");
    json_decref(rows);

    json_t *slowlog = get_array(port, "/api/v1/slow", STATS_TOKEN);
    assert_int_equal(json_array_size(slowlog), 3); /* exactly the slow ones */
    size_t i;
    json_t *entry;
    json_array_foreach(slowlog, i, entry)
    {
        assert_string_equal(json_string_value(json_object_get(entry, "query")),
                            "SELECT pg_sleep($1) AS api_slow");
        assert_true(real_member(entry, "duration") >= 120.0);
    }
    json_decref(slowlog);

    json_t *findings = get_array(port, "/api/v1/n-plus-one", STATS_TOKEN);
    assert_int_equal(json_array_size(findings), 1);
    json_t *f = json_array_get(findings, 0);
    assert_string_equal(json_string_value(json_object_get(f, "query")),
                        "SELECT $1 + $2 AS api_item");
    assert_string_equal(json_string_value(json_object_get(f, "preceding_query")),
                        "SELECT generate_series($1, $2) AS api_list");
    assert_string_equal(json_string_value(json_object_get(f, "scope")), "transaction");
    assert_int_equal(int_member(f, "count"), 5);
    json_decref(findings);

    harness_response_t m = http(port, "GET", "/metrics", STATS_TOKEN);
    assert_int_equal(m.status, 200);
    assert_non_null(strstr(m.body, "pgturbo_slow_queries_total 3"));
    assert_non_null(strstr(m.body, "pgturbo_query_errors_total 2"));
    /* 10 + 3 + 2 + BEGIN + list + 5 items + COMMIT */
    assert_non_null(
        strstr(m.body, "pgturbo_query_duration_seconds_count{database=\"postgres\"} 23"));
    harness_response_free(&m);

    /* Samples: real runs, for admin_token only. */
    snprintf(path, sizeof(path), "/api/v1/samples/%s", fast_fp);
    expect_error(port, "GET", path, STATS_TOKEN, 403, "admin_token");
    json_t *samples = get_array(port, path, ADMIN_TOKEN);
    assert_int_equal(json_array_size(samples), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(samples, 0), "query")),
                        "SELECT 0 AS api_fast");
    json_decref(samples);
    PGconn *ext = harness_connect(p.port, "postgres", NULL);
    const char *param[] = {"42"};
    PGresult *er =
        PQexecParams(ext, "SELECT abs($1::int) AS api_ext", 1, NULL, param, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(er), PGRES_TUPLES_OK);
    PQclear(er);
    PQfinish(ext);
    rows = get_array(port, "/api/v1/queries?sort=calls&limit=100", ADMIN_TOKEN);
    json_t *extrow = find(rows, "query", "SELECT abs($1::int) AS api_ext");
    assert_non_null(extrow);
    snprintf(path, sizeof(path), "/api/v1/samples/%s",
             json_string_value(json_object_get(extrow, "fingerprint")));
    json_decref(rows);
    samples = get_array(port, path, ADMIN_TOKEN);
    assert_int_equal(json_array_size(samples), 1);
    json_t *params = json_object_get(json_array_get(samples, 0), "parameters");
    assert_int_equal(json_array_size(params), 1);
    assert_string_equal(json_string_value(json_array_get(params, 0)), "42");
    json_decref(samples);

    harness_response_t r = http(port, "POST", "/api/v1/stats/reset", ADMIN_TOKEN);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    rows = get_array(port, "/api/v1/queries", STATS_TOKEN);
    assert_int_equal(json_array_size(rows), 0);
    json_decref(rows);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

static void report_is_served_with_the_daemon_figures(void **state)
{
    pgturbo_proc_t p;
    int port = start_with_api(&p);
    PGconn *c = harness_connect(p.port, "postgres", NULL);
    harness_exec_ok(c, "SELECT 1");
    PQfinish(c);
    harness_response_t r = http(port, "GET", "/api/v1/report", STATS_TOKEN);
    assert_int_equal(r.status, 200);
    json_t *doc = body_json(&r);
    assert_true(json_is_object(doc));
    json_int_t score = int_member(doc, "score");
    assert_true(score >= 0 && score <= 100);
    assert_true(json_is_array(json_object_get(doc, "recommendations")));
    json_decref(doc);
    harness_response_free(&r);
    r = http(port, "GET", "/api/v1/report", NULL);
    assert_int_equal(r.status, 401);
    harness_response_free(&r);
    assert_int_equal(harness_stop_pgturbo(&p, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(health_is_200_without_a_token),
        cmocka_unit_test(every_endpoint_but_health_needs_a_token),
        cmocka_unit_test(reset_needs_the_admin_token),
        cmocka_unit_test(wrong_method_is_405_with_allow),
        cmocka_unit_test(unknown_paths_and_fingerprints_are_404),
        cmocka_unit_test(bad_query_parameters_are_400),
        cmocka_unit_test(pools_clients_servers_and_metrics_show_a_connected_client),
        cmocka_unit_test(reload_changes_tokens_and_turns_the_api_off_and_on),
        cmocka_unit_test(show_config_hides_the_tokens_and_fixes_admin_listen),
        cmocka_unit_test(no_admin_token_means_no_listener),
        cmocka_unit_test(busy_admin_listen_exits_1_naming_the_address),
        cmocka_unit_test(malformed_admin_listen_exits_1),
        cmocka_unit_test(health_is_503_when_the_first_database_is_down),
        cmocka_unit_test(query_statistics_show_the_known_mix),
        cmocka_unit_test(report_is_served_with_the_daemon_figures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
