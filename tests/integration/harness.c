/*
 * harness.c
 *    Integration-test harness: finds the test cluster the ctest fixture started, runs pgturbo
 *    daemons on free loopback ports (killed at exit even when a test fails), and offers libpq
 *    and raw-socket helpers that fail the running cmocka test when they cannot do their job.
 *
 *    Daemons are children of the test process. Each one is started with PR_SET_PDEATHSIG so the
 *    kernel kills it if the test dies from a signal, and an atexit handler kills the ones that
 *    are still running when the test exits normally (a failed cmocka test does not stop its
 *    daemon otherwise, because fail_msg jumps out of the test body).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define MAX_DAEMONS 64
#define PORT_LOW    15000

/* Daemons started by this process; status is valid once reaped is set. */
struct daemon_slot {
    pid_t pid;
    bool reaped;
    int status;
    char dir[256];
};

static struct daemon_slot daemons[MAX_DAEMONS];
static bool atexit_registered;

long long harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void harness_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static struct daemon_slot *slot_find(pid_t pid)
{
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (daemons[i].pid == pid)
            return &daemons[i];
    return NULL;
}

static void print_log_tail(const char *path, int lines);
static void remove_dir(const char *dir);

/* At exit: daemons a failed test left running are killed, their log tail is printed (it
 * tells what the daemon saw of the failure) and their directory removed. */
static void kill_all_daemons(void)
{
    for (int i = 0; i < MAX_DAEMONS; i++) {
        if (daemons[i].pid > 0 && !daemons[i].reaped) {
            kill(daemons[i].pid, SIGKILL);
            waitpid(daemons[i].pid, NULL, 0);
            daemons[i].reaped = true;
            char log[300];
            snprintf(log, sizeof(log), "%s/pgturbo.log", daemons[i].dir);
            fprintf(stderr, "pgturbo (pid %d) was still running at exit; killed\n",
                    (int)daemons[i].pid);
            print_log_tail(log, 40);
            remove_dir(daemons[i].dir);
        }
    }
}

/* Reaps the daemon if it has exited, without blocking; true while it still runs. */
static bool slot_poll(struct daemon_slot *s)
{
    if (s->reaped)
        return false;
    int status;
    pid_t r = waitpid(s->pid, &status, WNOHANG);
    if (r == 0)
        return true;
    s->reaped = true;
    s->status = r == s->pid ? status : -1;
    return false;
}

static int status_code(int status)
{
    if (status == -1)
        return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

static void read_testenv_file(const char *name, char *out, size_t outlen)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", PGTURBO_TESTENV, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s: %s (is the cluster fixture running?)", path, strerror(errno));
    if (fgets(out, (int)outlen, f) == NULL) {
        fclose(f);
        fail_msg("%s is empty", path);
    }
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
}

int harness_pg_port(void)
{
    static int port;
    if (port == 0) {
        char buf[32];
        read_testenv_file("pg.port", buf, sizeof(buf));
        port = atoi(buf);
        if (port <= 0 || port > 65535)
            fail_msg("bad port \"%s\" in pg.port", buf);
    }
    return port;
}

const char *harness_pg_certs(void)
{
    static char dir[512];
    if (dir[0] == '\0')
        read_testenv_file("pg.certs", dir, sizeof(dir));
    return dir;
}

static int ephemeral_low(void)
{
    int low = 32768, high = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%d %d", &low, &high) != 2)
            low = 32768;
        fclose(f);
    }
    if (low <= PORT_LOW + 100)
        low = 32768;
    return low;
}

/* True when nothing listens on or is connected from 127.0.0.1:port and we can bind it. */
static bool port_is_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* No SO_REUSEADDR: a port with connections in TIME_WAIT counts as taken too. */
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/*
 * Claims port among the test processes on this machine: pgturbo listens with SO_REUSEPORT, so
 * two daemons given the same port by two test programs at the same moment would both start and
 * share its connections. The claim is an flock on a file named after the port, held (fd kept
 * open) until the process exits, when the kernel drops it.
 */
static bool port_claim(int port)
{
    const char *dir = "/tmp/pgturbo-it-ports";
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return true; /* No claims possible; the bind check alone has to do. */
    char path[128];
    snprintf(path, sizeof(path), "%s/%d", dir, port);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return true;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return false;
    }
    return true;
}

int harness_free_port(void)
{
    static unsigned seed;
    static int handed_out[256];
    static int n_handed;
    if (seed == 0)
        seed = (unsigned)getpid() ^ (unsigned)harness_now_ms();
    int low = ephemeral_low();
    for (int attempt = 0; attempt < 1000; attempt++) {
        int port = PORT_LOW + (int)(rand_r(&seed) % (unsigned)(low - PORT_LOW));
        if (port == harness_pg_port())
            continue;
        bool used = false;
        for (int i = 0; i < n_handed; i++)
            used = used || handed_out[i] == port;
        if (used || !port_is_free(port) || !port_claim(port))
            continue;
        handed_out[n_handed++ % 256] = port;
        return port;
    }
    fail_msg("no free port found in [%d, %d)", PORT_LOW, low);
    return -1;
}

/* With own_databases, the [databases] section is extra_databases alone. */
static void write_ini(const pgturbo_proc_t *p, const char *extra_pgturbo,
                      const char *extra_databases, bool own_databases)
{
    FILE *f = fopen(p->ini, "w");
    if (f == NULL)
        fail_msg("cannot write %s: %s", p->ini, strerror(errno));
    int pg = harness_pg_port();
    fprintf(f, "[databases]\n");
    if (!own_databases)
        fprintf(f,
                "postgres = host=127.0.0.1 port=%d dbname=postgres\n"
                "* = host=127.0.0.1 port=%d\n",
                pg, pg);
    fprintf(f,
            "%s\n"
            "[pgturbo]\n"
            "listen_addr = 127.0.0.1\n"
            "listen_port = %d\n"
            "workers = 2\n"
            "auth_type = trust\n"
            "%s\n",
            extra_databases ? extra_databases : "", p->port, extra_pgturbo ? extra_pgturbo : "");
    if (fclose(f) != 0)
        fail_msg("cannot write %s: %s", p->ini, strerror(errno));
}

static bool tcp_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static void print_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    fprintf(stderr, "---- %s ----\n", path);
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL)
        fputs(line, stderr);
    fprintf(stderr, "---- end of log ----\n");
    fclose(f);
}

/* Prints the last lines of a log file to stderr. */
static void print_log_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    int total = 0;
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL)
        total++;
    rewind(f);
    fprintf(stderr, "---- last %d lines of %s ----\n", lines, path);
    for (int n = 0; fgets(line, sizeof(line), f) != NULL; n++)
        if (n >= total - lines)
            fputs(line, stderr);
    fprintf(stderr, "---- end of log ----\n");
    fclose(f);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_dir(const char *dir)
{
    if (dir[0] != '\0')
        nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/*
 * Starts argv[0] (a path) as a child that dies with the test process, with stdin from
 * /dev/null, stdout and stderr appended to log, and no signal blocked (the test process may
 * block signals in threads).
 */
static pid_t spawn_child(char *const argv[], const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            close(devnull);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static pid_t spawn(const pgturbo_proc_t *p)
{
    char *const argv[] = {PGTURBO_BIN, "serve", (char *)p->ini, NULL};
    return spawn_child(argv, p->log);
}

static struct daemon_slot *slot_add(pid_t pid, const char *dir)
{
    for (int i = 0; i < MAX_DAEMONS; i++) {
        if (daemons[i].pid == 0 || daemons[i].reaped) {
            daemons[i].pid = pid;
            daemons[i].reaped = false;
            daemons[i].status = 0;
            snprintf(daemons[i].dir, sizeof(daemons[i].dir), "%s", dir);
            return &daemons[i];
        }
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("more than %d pgturbo daemons at once", MAX_DAEMONS);
    return NULL;
}

static void start_pgturbo(pgturbo_proc_t *p, const char *extra_pgturbo, const char *extra_databases,
                          bool own_databases)
{
    if (!atexit_registered) {
        atexit(kill_all_daemons);
        atexit_registered = true;
    }
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "/tmp/pgturbo-it.XXXXXX");
    if (mkdtemp(p->dir) == NULL)
        fail_msg("mkdtemp: %s", strerror(errno));
    snprintf(p->ini, sizeof(p->ini), "%s/pgturbo.ini", p->dir);
    snprintf(p->log, sizeof(p->log), "%s/pgturbo.log", p->dir);

    /* Another test process may grab the same port between our check and pgturbo's bind;
     * a daemon that exits during start-up is therefore retried on a new port. */
    for (int attempt = 0; attempt < 3; attempt++) {
        p->port = harness_free_port();
        write_ini(p, extra_pgturbo, extra_databases, own_databases);
        p->pid = spawn(p);
        struct daemon_slot *s = slot_add(p->pid, p->dir);
        long long deadline = harness_now_ms() + 10000;
        while (harness_now_ms() < deadline) {
            if (!slot_poll(s))
                break;
            if (tcp_accepts(p->port))
                return;
            harness_sleep_ms(20);
        }
        if (slot_poll(s)) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
            s->reaped = true;
            print_log(p->log);
            remove_dir(p->dir);
            fail_msg("pgturbo did not accept connections on port %d within 10 s", p->port);
        }
        fprintf(stderr, "pgturbo exited during start-up (status %d), attempt %d:\n",
                status_code(s->status), attempt + 1);
        print_log(p->log);
    }
    remove_dir(p->dir);
    fail_msg("pgturbo failed to start three times; see the logs above");
}

void harness_start_pgturbo(pgturbo_proc_t *p, const char *extra_pgturbo,
                           const char *extra_databases)
{
    start_pgturbo(p, extra_pgturbo, extra_databases, false);
}

void harness_start_pgturbo_databases(pgturbo_proc_t *p, const char *extra_pgturbo,
                                     const char *databases)
{
    start_pgturbo(p, extra_pgturbo, databases, true);
}

int harness_count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int n = 0;
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, needle) != NULL)
            n++;
    fclose(f);
    return n;
}

void harness_reload_pgturbo(pgturbo_proc_t *p, const char *extra_pgturbo,
                            const char *extra_databases)
{
    int done_before = harness_count_in_file(p->log, "config reloaded");
    int failed_before = harness_count_in_file(p->log, "reload failed");
    write_ini(p, extra_pgturbo, extra_databases, false);
    if (kill(p->pid, SIGHUP) != 0)
        fail_msg("kill(SIGHUP, %d): %s", (int)p->pid, strerror(errno));
    /* Waits for the daemon to say it has applied (or refused) the new file. */
    long long deadline = harness_now_ms() + 5000;
    while (harness_now_ms() < deadline) {
        if (harness_count_in_file(p->log, "config reloaded") > done_before)
            return;
        if (harness_count_in_file(p->log, "reload failed") > failed_before) {
            print_log(p->log);
            fail_msg("pgturbo refused the reloaded config");
        }
        harness_sleep_ms(20);
    }
    print_log(p->log);
    fail_msg("pgturbo did not log a reload within 5 s");
}

int harness_stop_pgturbo(pgturbo_proc_t *p, int timeout_s)
{
    if (p->pid <= 0)
        return -1;
    struct daemon_slot *s = slot_find(p->pid);
    int code;
    if (s == NULL) {
        code = -1;
    } else {
        if (slot_poll(s))
            kill(p->pid, SIGTERM);
        long long deadline = harness_now_ms() + (long long)timeout_s * 1000;
        while (slot_poll(s) && harness_now_ms() < deadline)
            harness_sleep_ms(20);
        if (slot_poll(s)) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, NULL, 0);
            s->reaped = true;
            code = -1;
            fprintf(stderr, "pgturbo (pid %d) did not exit within %d s of SIGTERM; killed\n",
                    (int)p->pid, timeout_s);
        } else {
            code = status_code(s->status);
        }
        s->pid = 0;
    }
    if (code != 0)
        print_log(p->log);
    remove_dir(p->dir);
    p->pid = 0;
    return code;
}

bool harness_pgturbo_alive(const pgturbo_proc_t *p)
{
    if (p->pid <= 0)
        return false;
    struct daemon_slot *s = slot_find(p->pid);
    return s != NULL && slot_poll(s);
}

PGconn *harness_try_connect(int port, const char *dbname, const char *extra)
{
    char conninfo[2048];
    snprintf(conninfo, sizeof(conninfo),
             "host=127.0.0.1 port=%d dbname=%s user=postgres connect_timeout=10 %s", port, dbname,
             extra ? extra : "");
    return PQconnectdb(conninfo);
}

PGconn *harness_connect(int port, const char *dbname, const char *extra)
{
    PGconn *conn = harness_try_connect(port, dbname, extra);
    if (conn == NULL)
        fail_msg("PQconnectdb(port %d, %s): out of memory", port, dbname);
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
        PQfinish(conn);
        fail_msg("connect to port %d, database %s failed: %s", port, dbname, msg);
    }
    return conn;
}

PGconn *harness_connect_direct(const char *dbname)
{
    return harness_connect(harness_pg_port(), dbname, NULL);
}

char *harness_query_value(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        PQclear(res);
        fail_msg("query \"%s\" failed (%s): %s", sql, PQresStatus(st), msg);
    }
    char *value = NULL;
    if (PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0))
        value = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return value;
}

void harness_exec_ok(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        PQclear(res);
        fail_msg("query \"%s\" failed (%s): %s", sql, PQresStatus(st), msg);
    }
    PQclear(res);
}

const char *harness_exec_error_message(PGconn *conn, const char *sql, char *message, size_t len)
{
    static __thread char sqlstate[6];
    if (message != NULL && len > 0)
        message[0] = '\0';
    if (!PQsendQuery(conn, sql)) {
        /* libpq could not even send it (e.g. the connection is known to be closed). */
        if (message != NULL && len > 0)
            snprintf(message, len, "%s", PQerrorMessage(conn));
        sqlstate[0] = '\0';
        return sqlstate;
    }
    bool have_error = false;
    ExecStatusType other = PGRES_EMPTY_QUERY;
    PGresult *res;
    while ((res = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_FATAL_ERROR && !have_error) {
            const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            snprintf(sqlstate, sizeof(sqlstate), "%s", code ? code : "");
            if (message != NULL && len > 0)
                snprintf(message, len, "%s", PQresultErrorMessage(res));
            have_error = true;
        } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(res);
            fail_msg("query \"%s\" started a COPY; harness_exec_error cannot handle that", sql);
        } else if (st != PGRES_FATAL_ERROR) {
            other = st;
        }
        PQclear(res);
    }
    if (!have_error)
        fail_msg("query \"%s\" was expected to fail but returned %s", sql, PQresStatus(other));
    return sqlstate;
}

const char *harness_exec_error(PGconn *conn, const char *sql)
{
    return harness_exec_error_message(conn, sql, NULL, 0);
}

int harness_shell(const char *cmd, char *out, size_t outlen)
{
    size_t cmdlen = strlen(cmd) + 32;
    char *full = malloc(cmdlen);
    if (full == NULL)
        fail_msg("out of memory");
    snprintf(full, cmdlen, "( %s ) 2>&1", cmd);
    FILE *f = popen(full, "r");
    free(full);
    if (f == NULL)
        fail_msg("popen(%s): %s", cmd, strerror(errno));
    size_t used = 0;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (out != NULL && outlen > 0 && used < outlen - 1) {
            size_t take = n < outlen - 1 - used ? n : outlen - 1 - used;
            memcpy(out + used, chunk, take);
            used += take;
        }
    }
    if (out != NULL && outlen > 0)
        out[used] = '\0';
    int status = pclose(f);
    return status_code(status);
}

int harness_raw_try_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("socket: %s", strerror(errno));
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int harness_raw_connect(int port)
{
    int fd = harness_raw_try_connect(port);
    if (fd < 0)
        fail_msg("connect to 127.0.0.1:%d: %s", port, strerror(errno));
    return fd;
}

harness_response_t harness_http(int port, const char *method, const char *path,
                                const char *authorization)
{
    harness_response_t r = {0};
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s%s%s%s\r\n",
                     method, path, port, authorization ? "Authorization: " : "",
                     authorization ? authorization : "", authorization ? "\r\n" : "",
                     strcmp(method, "POST") == 0 ? "Content-Length: 0\r\n" : "");
    int fd = harness_raw_connect(port);
    harness_raw_send(fd, req, (size_t)n);
    size_t cap = 65536, len = 0;
    char *all = malloc(cap);
    assert_non_null(all);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            all = realloc(all, cap);
            assert_non_null(all);
        }
        ssize_t got = recv(fd, all + len, cap - 1 - len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            fail_msg("%s %s: reading the answer: %s", method, path, strerror(errno));
        if (got == 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    all[len] = '\0';
    char *end = strstr(all, "\r\n\r\n");
    if (end == NULL || sscanf(all, "HTTP/1.%*d %d", &r.status) != 1)
        fail_msg("%s %s: not an HTTP answer: \"%.200s\"", method, path, all);
    size_t head_len = (size_t)(end - all) + 2;
    if (head_len >= sizeof(r.head))
        fail_msg("%s %s: headers too long", method, path);
    memcpy(r.head, all, head_len);
    r.head[head_len] = '\0';
    r.body_len = len - head_len - 2;
    r.body = malloc(r.body_len + 1);
    assert_non_null(r.body);
    memcpy(r.body, end + 4, r.body_len + 1);
    free(all);
    return r;
}

void harness_response_free(harness_response_t *r)
{
    free(r->body);
    r->body = NULL;
}

void harness_raw_send(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            fail_msg("send: %s", w < 0 ? strerror(errno) : "wrote nothing");
        c += w;
        n -= (size_t)w;
    }
}

static void put_u32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

void harness_raw_startup(int fd, const char *user, const char *database)
{
    char msg[1024];
    size_t n = 8;
    int w = snprintf(msg + n, sizeof(msg) - n - 1, "user%c%s%cdatabase%c%s%c", 0, user, 0, 0,
                     database, 0);
    if (w < 0 || (size_t)w >= sizeof(msg) - n - 1)
        fail_msg("startup message too long");
    n += (size_t)w;
    msg[n++] = '\0';
    put_u32(msg, (uint32_t)n);
    put_u32(msg + 4, 196608); /* protocol 3.0 */
    harness_raw_send(fd, msg, n);
}

/* Reads exactly n bytes: 1 when done, 0 on EOF, -1 on timeout or error. */
static int read_full(int fd, char *buf, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, buf, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return 0;
        if (r < 0)
            return errno == ECONNRESET ? 0 : -1;
        buf += r;
        n -= (size_t)r;
    }
    return 1;
}

/*
 * The body is copied up to cap bytes and the rest of it is read and dropped; *len gets the
 * number of bytes stored in buf, so it never exceeds cap.
 */
int harness_raw_read_message(int fd, char *buf, size_t cap, size_t *len)
{
    char hdr[5];
    *len = 0;
    int r = read_full(fd, hdr, 5);
    if (r <= 0)
        return r;
    uint32_t mlen = ((uint32_t)(unsigned char)hdr[1] << 24) |
                    ((uint32_t)(unsigned char)hdr[2] << 16) |
                    ((uint32_t)(unsigned char)hdr[3] << 8) | (uint32_t)(unsigned char)hdr[4];
    if (mlen < 4)
        return -1;
    size_t body = mlen - 4;
    size_t keep = body < cap ? body : cap;
    if (keep > 0 && (r = read_full(fd, buf, keep)) <= 0)
        return r;
    char sink[4096];
    for (size_t rest = body - keep; rest > 0;) {
        size_t take = rest < sizeof(sink) ? rest : sizeof(sink);
        if ((r = read_full(fd, sink, take)) <= 0)
            return r;
        rest -= take;
    }
    *len = keep;
    return (unsigned char)hdr[0];
}

/* Copies the 'C' field of an ErrorResponse body into sqlstate (6 bytes). */
static void error_sqlstate(const char *body, size_t len, char *sqlstate)
{
    if (sqlstate == NULL)
        return;
    sqlstate[0] = '\0';
    size_t i = 0;
    while (i < len && body[i] != '\0') {
        char field = body[i++];
        const char *value = body + i;
        size_t vlen = strnlen(value, len - i);
        if (field == 'C') {
            size_t k = vlen < 5 ? vlen : 5;
            memcpy(sqlstate, value, k);
            sqlstate[k] = '\0';
            return;
        }
        i += vlen + 1;
    }
}

bool harness_raw_wait_ready(int fd, char *sqlstate)
{
    char buf[65536];
    bool have_error = false;
    for (;;) {
        size_t len;
        int type = harness_raw_read_message(fd, buf, sizeof(buf), &len);
        if (type <= 0)
            return false;
        if (type == 'E' && !have_error) {
            error_sqlstate(buf, len, sqlstate);
            have_error = true;
        }
        if (type == 'Z')
            return true;
    }
}

bool harness_raw_expect_error(int fd, char *sqlstate)
{
    char buf[65536];
    for (;;) {
        size_t len;
        int type = harness_raw_read_message(fd, buf, sizeof(buf), &len);
        if (type <= 0)
            return false;
        if (type == 'E') {
            char code[6];
            error_sqlstate(buf, len, code);
            if (sqlstate != NULL)
                memcpy(sqlstate, code, 6);
            return true;
        }
    }
}

bool harness_raw_closed(int fd, int timeout_ms)
{
    long long deadline = harness_now_ms() + timeout_ms;
    char sink[4096];
    for (;;) {
        long long left = deadline - harness_now_ms();
        if (left < 0)
            left = 0;
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n == 0)
            return true;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return true;
        /* Data before the close (e.g. an ErrorResponse) is dropped. */
    }
}

static void ignore_notice(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

void harness_silence_notices(PGconn *conn)
{
    PQsetNoticeReceiver(conn, ignore_notice, NULL);
}

void harness_drop_database(const char *name)
{
    char sql[256];
    PGconn *c = harness_connect_direct("postgres");
    harness_silence_notices(c);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    harness_exec_ok(c, sql);
    PQfinish(c);
}

void harness_create_database(const char *name)
{
    char sql[256];
    harness_drop_database(name);
    PGconn *c = harness_connect_direct("postgres");
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    harness_exec_ok(c, sql);
    PQfinish(c);
}

void harness_pgbench_init(const char *name, int scale)
{
    static char out[65536];
    char cmd[512];
    harness_create_database(name);
    snprintf(cmd, sizeof(cmd), "pgbench -i -s %d -q -h 127.0.0.1 -p %d -U postgres %s", scale,
             harness_pg_port(), name);
    int rc = harness_shell(cmd, out, sizeof(out));
    if (rc != 0)
        fail_msg("pgbench -i failed (%d):\n%s", rc, out);
}

/* ---- redis-server ---- */

/* Whether the Redis at port answers PING with +PONG. */
static bool redis_answers(int port)
{
    int fd = harness_raw_try_connect(port);
    if (fd < 0)
        return false;
    char reply[16] = "";
    bool ok = write(fd, "PING\r\n", 6) == 6 && read(fd, reply, sizeof(reply) - 1) >= 5 &&
              strncmp(reply, "+PONG", 5) == 0;
    close(fd);
    return ok;
}

static pid_t spawn_redis(const harness_redis_t *r)
{
    char port[16], log[300];
    snprintf(port, sizeof(port), "%d", r->port);
    snprintf(log, sizeof(log), "%s/redis.log", r->dir);
    char *const argv[] = {"/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", port,
                          "--save", "", "--appendonly", "no", "--dir", (char *)r->dir,
                          "--logfile", log, "--protected-mode", "no", NULL};
    return spawn_child(argv, log);
}

/* Starts redis-server on r->port; true once it answers, false when it exited or timed out. */
static bool launch_redis(harness_redis_t *r)
{
    r->pid = spawn_redis(r);
    struct daemon_slot *s = slot_add(r->pid, r->dir);
    long long deadline = harness_now_ms() + 10000;
    while (harness_now_ms() < deadline && slot_poll(s)) {
        if (redis_answers(r->port))
            return true;
        harness_sleep_ms(20);
    }
    if (slot_poll(s)) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        s->reaped = true;
    }
    r->pid = 0;
    return false;
}

void harness_start_redis(harness_redis_t *r)
{
    if (!atexit_registered) {
        atexit(kill_all_daemons);
        atexit_registered = true;
    }
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "/tmp/pgturbo-redis.XXXXXX");
    if (mkdtemp(r->dir) == NULL)
        fail_msg("mkdtemp: %s", strerror(errno));
    /* Another process may take the port between the check and the bind: a new one then. */
    for (int attempt = 0; attempt < 3; attempt++) {
        r->port = harness_free_port();
        if (launch_redis(r))
            return;
    }
    char log[300];
    snprintf(log, sizeof(log), "%s/redis.log", r->dir);
    print_log(log);
    remove_dir(r->dir);
    fail_msg("redis-server failed to start three times");
}

/* The slot of pid, reaped when it exited. */
static void reap(pid_t pid, int sig)
{
    for (int i = 0; i < MAX_DAEMONS; i++) {
        if (daemons[i].pid == pid && !daemons[i].reaped) {
            kill(pid, sig);
            waitpid(pid, NULL, 0);
            daemons[i].reaped = true;
        }
    }
}

void harness_kill_redis(harness_redis_t *r)
{
    if (r->pid > 0)
        reap(r->pid, SIGKILL);
    r->pid = 0;
}

void harness_restart_redis(harness_redis_t *r)
{
    /* The port may linger for a moment after the kill. */
    for (int attempt = 0; attempt < 50; attempt++) {
        if (launch_redis(r))
            return;
        harness_sleep_ms(100);
    }
    fail_msg("redis-server did not start again on port %d", r->port);
}

void harness_stop_redis(harness_redis_t *r)
{
    if (r->pid > 0)
        reap(r->pid, SIGTERM);
    r->pid = 0;
    remove_dir(r->dir);
}

/* ---- the result cache's admin API ---- */

json_t *harness_cache_get(int admin_port, const char *token)
{
    char authorization[256];
    snprintf(authorization, sizeof(authorization), "Bearer %s", token);
    harness_response_t r = harness_http(admin_port, "GET", "/api/v1/cache", authorization);
    if (r.status != 200) {
        char body[301];
        snprintf(body, sizeof(body), "%s", r.body != NULL ? r.body : "");
        harness_response_free(&r);
        fail_msg("GET /api/v1/cache: %d %s", r.status, body);
    }
    json_error_t e;
    json_t *api = json_loads(r.body, 0, &e);
    harness_response_free(&r);
    if (api == NULL)
        fail_msg("GET /api/v1/cache: not JSON: %s", e.text);
    return api;
}

long long harness_cache_total(const json_t *api, const char *key)
{
    return (long long)json_integer_value(json_object_get(json_object_get(api, "totals"), key));
}

/* Whether the answer lists a target of database dbname ("host:port/dbname") whose catalog is
 * loaded. */
static bool cache_catalog_loaded(const json_t *api, const char *dbname)
{
    size_t i;
    json_t *db;
    json_array_foreach(json_object_get(api, "databases"), i, db)
    {
        const char *target = json_string_value(json_object_get(db, "target"));
        const char *slash = target != NULL ? strrchr(target, '/') : NULL;
        if (slash != NULL && strcmp(slash + 1, dbname) == 0 &&
            json_is_true(json_object_get(db, "catalog_loaded")))
            return true;
    }
    return false;
}

void harness_cache_wait_catalog(PGconn *conn, int admin_port, const char *token, const char *dbname)
{
    long long deadline = harness_now_ms() + 10000;
    for (;;) {
        harness_exec_ok(conn, "SELECT count(*) FROM pg_class");
        json_t *api = harness_cache_get(admin_port, token);
        bool loaded = cache_catalog_loaded(api, dbname);
        json_decref(api);
        if (loaded)
            return;
        if (harness_now_ms() > deadline)
            fail_msg("the catalog of %s was not read within 10 s", dbname);
        harness_sleep_ms(20);
    }
}
