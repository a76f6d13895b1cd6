/*
 * cachelogical.c
 *    The logical-decoding consumer's thread and test_decoding's line parser; see cachelogical.h.
 *
 * A connection goes through three steps, each without blocking the thread past a stop: connect
 * (PQconnectPoll), CREATE_REPLICATION_SLOT ... TEMPORARY LOGICAL test_decoding, and
 * START_REPLICATION, after which the server streams CopyData messages: XLogData ('w'), one line
 * of test_decoding's output each, and keepalives ('k'); the consumer answers with standby status
 * updates ('r').
 *
 * The distinct tables of the transaction being read are kept in a fixed array, found again
 * through a small open-addressing hash, and reported at its COMMIT. test_decoding sends only
 * committed transactions, and a transaction cut off by a lost connection is never reported
 * table by table: the report of "any table" after the reconnect covers it.
 *
 * What the consumer confirms to the server as flushed is the end of the last transaction it
 * reported or, between transactions, the WAL end of a keepalive: by then the server has sent
 * every transaction that committed before that point. Since the slot is temporary and never
 * resumed, the confirmation serves two ends: the server recycles WAL, and a commit that waits
 * for the consumer as a synchronous standby (synchronous_standby_names naming its
 * application_name) goes on only once the consumer reported its tables. The confirmation
 * therefore goes out as soon as a transaction is reported, not only every second.
 *
 * A transaction is reported (commit) before it is confirmed, and tracked until it is visible
 * by cachelogical_visible.c, which shares the struct and the libpq helpers through
 * cachelogical_link.h.
 */
#include "cachelogical_link.h"

#include "log.h"
#include "loop.h"
#include "pqmsg.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* How long a connect may take before the attempt counts as failed. libpq leaves this to the
 * application when it is driven with PQconnectPoll. */
#define CONNECT_TIMEOUT_MS 10000

/* How often a standby status update goes out, whatever the server asks. */
#define STATUS_INTERVAL_MS 1000

/* The wait after the first failure, and the most it grows to by doubling. */
#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS   30000

/* How the connection shows in pg_stat_activity and pg_stat_replication, unless the connection
 * string says otherwise. */
#define APPLICATION_NAME "pgturbo_cache"

/* XLogData: 'w', WAL start, WAL end and send time, then the data. Primary keepalive: 'k', WAL
 * end, send time and whether a reply is wanted. Standby status update: 'r', the written,
 * flushed and applied positions, the client's time and whether a reply is wanted. */
#define XLOGDATA_HEADER_LEN 25
#define KEEPALIVE_LEN       18
#define STATUS_UPDATE_LEN   34

/* PostgreSQL's epoch, 2000-01-01, in Unix microseconds: its timestamps count from there. */
#define POSTGRES_EPOCH_US INT64_C(946684800000000)

/* ---- test_decoding's lines ---- */

/* The bytes of a line not yet read. */
typedef struct cursor {
    const char *p;
    const char *end;
} cursor_t;

/* Reads s when the line goes on with it. */
static bool take(cursor_t *c, const char *s)
{
    size_t n = strlen(s);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return false;
    c->p += n;
    return true;
}

/* Whether the line is word alone, or word, a space and more. */
static bool is_word(const char *line, size_t len, const char *word)
{
    size_t n = strlen(word);

    return len >= n && memcmp(line, word, n) == 0 && (len == n || line[n] == ' ');
}

/* The bytes that end an unquoted identifier: what may follow one in a change line. PostgreSQL
 * quotes every identifier with other bytes than lowercase letters, digits and underscores. */
static bool ends_identifier(char ch)
{
    return ch == '.' || ch == ',' || ch == ':' || ch == ' ' || ch == '"' || ch == '\0';
}

/*
 * Reads one identifier, quoted or not, into out, unquoted and NUL-terminated. Returns false when
 * there is none, or its quotes do not close, or it is longer than PostgreSQL allows or holds a
 * NUL, neither of which a real name does.
 */
static bool read_identifier(cursor_t *c, char out[CACHELOGICAL_NAME_LEN])
{
    size_t n = 0;

    if (c->p < c->end && *c->p == '"') {
        c->p++;
        for (;;) {
            if (c->p == c->end)
                return false;
            char ch = *c->p++;
            if (ch == '"') {
                if (c->p == c->end || *c->p != '"')
                    break;
                c->p++; /* "" inside quotes is one " */
            }
            if (ch == '\0' || n == CACHELOGICAL_NAME_LEN - 1)
                return false;
            out[n++] = ch;
        }
    } else {
        while (c->p < c->end && !ends_identifier(*c->p)) {
            if (n == CACHELOGICAL_NAME_LEN - 1)
                return false;
            out[n++] = *c->p++;
        }
    }
    out[n] = '\0';
    return n > 0;
}

/*
 * Reads the tables of a change: "schema.table", or several separated by ", " (a TRUNCATE), and
 * calls table_fn(arg, ...) for each unless table_fn is NULL. Returns how many it read, 0 when
 * the list does not parse.
 */
static int read_tables(cursor_t *c, cachelogical_fn table_fn, void *arg)
{
    int n = 0;

    do {
        char schema[CACHELOGICAL_NAME_LEN];
        char relname[CACHELOGICAL_NAME_LEN];
        if (!read_identifier(c, schema) || !take(c, ".") || !read_identifier(c, relname))
            return 0;
        if (table_fn != NULL)
            table_fn(arg, schema, relname);
        n++;
    } while (take(c, ", "));
    return n;
}

cachelogical_line_t cachelogical_parse_line(const char *line, size_t len, cachelogical_fn table_fn,
                                            void *arg)
{
    cursor_t c = {line, line + len};

    if (is_word(line, len, "BEGIN"))
        return CACHELOGICAL_LINE_BEGIN;
    if (is_word(line, len, "COMMIT"))
        return CACHELOGICAL_LINE_COMMIT;
    if (!take(&c, "table "))
        return CACHELOGICAL_LINE_OTHER;

    /* The names are read twice, so that table_fn hears of none on a line that turns out not to
     * parse further on. */
    cursor_t names = c;
    int n = read_tables(&c, NULL, NULL);
    if (n == 0)
        return CACHELOGICAL_LINE_UNKNOWN;
    bool known =
        take(&c, ": TRUNCATE:") ||
        (n == 1 && (take(&c, ": INSERT:") || take(&c, ": UPDATE:") || take(&c, ": DELETE:")));
    if (!known)
        return CACHELOGICAL_LINE_UNKNOWN;
    read_tables(&names, table_fn, arg);
    return CACHELOGICAL_LINE_CHANGE;
}

uint32_t cachelogical_line_xid(const char *line, size_t len)
{
    size_t i = is_word(line, len, "BEGIN") ? 5 : is_word(line, len, "COMMIT") ? 6 : len;
    uint64_t xid = 0;

    if (i == len || line[i] != ' ')
        return 0;
    for (i++; i < len && line[i] >= '0' && line[i] <= '9' && xid <= UINT32_MAX; i++)
        xid = xid * 10 + (uint64_t)(line[i] - '0');
    if (xid > UINT32_MAX || (i < len && line[i] != ' '))
        return 0;
    return (uint32_t)xid;
}

/* ---- clocks and bytes ---- */

static int64_t wall_clock_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A big-endian 64-bit integer of the replication protocol; p holds at least 8 bytes. */
static uint64_t get_u64(const char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | (uint8_t)p[i];
    return v;
}

static void put_u64(char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (char)(v & 0xff);
}

/* ---- the transaction being read ---- */

static void begin_transaction(cachelogical_t *l)
{
    l->in_transaction = true;
    l->any_table = false;
    l->changes = 0;
    l->n_tables = 0;
    memset(l->buckets, 0, sizeof(l->buckets));
}

/* FNV-1a over schema, a NUL and relname. */
static uint32_t table_hash(const char *schema, const char *relname)
{
    uint32_t h = 2166136261u;

    for (const char *s = schema; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    h *= 16777619u;
    for (const char *s = relname; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* A table of a change (a cachelogical_fn for the parser): added to the transaction unless it is
 * there already, or the transaction already has as many as it may keep. */
static void add_table(void *arg, const char *schema, const char *relname)
{
    cachelogical_t *l = arg;
    uint32_t i = table_hash(schema, relname) % CACHELOGICAL_BUCKETS;

    if (!l->in_transaction)
        begin_transaction(l);
    if (l->any_table)
        return;
    for (; l->buckets[i] != 0; i = (i + 1) % CACHELOGICAL_BUCKETS) {
        const cachelogical_name_t *t = &l->tables[l->buckets[i] - 1];
        if (strcmp(t->relname, relname) == 0 && strcmp(t->schema, schema) == 0)
            return;
    }
    if (l->n_tables == CACHELOGICAL_MAX_TABLES) {
        l->any_table = true;
        return;
    }
    cachelogical_name_t *t = &l->tables[l->n_tables++];
    /* The parser gives names of at most CACHELOGICAL_NAME_LEN - 1 bytes. */
    snprintf(t->schema, sizeof(t->schema), "%s", schema);
    snprintf(t->relname, sizeof(t->relname), "%s", relname);
    l->buckets[i] = (uint16_t)l->n_tables;
}

/* What commit() is told of the transaction: its tables, or NULL for any table. */
static const cachelogical_table_t *report_of(cachelogical_t *l, int *n)
{
    *n = 0;
    if (l->any_table)
        return NULL;
    for (int i = 0; i < l->n_tables; i++)
        l->report[i] = (cachelogical_table_t){l->tables[i].schema, l->tables[i].relname};
    *n = l->n_tables;
    return l->report;
}

/*
 * The COMMIT of transaction xid, whose end is at lsn: counted, reported, and waited for until
 * visible. Returns true, or false with the reason in err (a COMMIT without its xid, which
 * include-xids always prints, cannot be waited for: the session ends and the reconnect covers
 * it).
 */
static bool commit_transaction(cachelogical_t *l, uint32_t xid, uint64_t lsn, char *err,
                               size_t errlen)
{
    if (!l->in_transaction)
        return true;
    l->in_transaction = false;
    if (lsn > l->processed_lsn)
        l->processed_lsn = lsn;

    /* Counted first, so that whoever sees the report sees the counters that include it. */
    pthread_mutex_lock(&l->lock);
    l->status.transactions++;
    l->status.changes += l->changes;
    l->status.last_change_ms = wall_clock_us() / 1000;
    pthread_mutex_unlock(&l->lock);

    int n;
    const cachelogical_table_t *tables = report_of(l, &n);
    void *token = l->cb.commit(l->cb.arg, tables, n);
    if (xid == 0) {
        l->cb.visible(l->cb.arg, token);
        snprintf(err, errlen, "a COMMIT without its transaction id");
        return false;
    }
    return cachelogical_visible_track(l, xid, token, err, errlen);
}

/* Logs the head of a change line that does not parse, on one line. */
static void warn_unknown(const cachelogical_t *l, const char *line, size_t len)
{
    char head[121];

    snprintf(head, sizeof(head), "%.*s", (int)(len < sizeof(head) - 1 ? len : sizeof(head) - 1),
             line);
    log_one_line(head);
    log_warning("cache logical: %s: slot %s: a change that does not parse, taken as a change of "
                "every table: \"%s\"",
                l->where, l->slot, head);
}

/* One line of test_decoding's output, sent at lsn. Returns true, or false with the reason in
 * err. */
static bool handle_line(cachelogical_t *l, const char *line, size_t len, uint64_t lsn, char *err,
                        size_t errlen)
{
    switch (cachelogical_parse_line(line, len, add_table, l)) {
    case CACHELOGICAL_LINE_BEGIN:
        begin_transaction(l);
        break;
    case CACHELOGICAL_LINE_CHANGE:
        l->changes++;
        break;
    case CACHELOGICAL_LINE_UNKNOWN:
        /* A change of tables that cannot be named: safe only as a change of any table. */
        if (!l->in_transaction)
            begin_transaction(l);
        l->any_table = true;
        l->changes++;
        if (!l->warned_unknown)
            warn_unknown(l, line, len);
        l->warned_unknown = true;
        break;
    case CACHELOGICAL_LINE_COMMIT:
        return commit_transaction(l, cachelogical_line_xid(line, len), lsn, err, errlen);
    case CACHELOGICAL_LINE_OTHER:
        break;
    }
    return true;
}

/* ---- waiting ---- */

cachelogical_wait_t cachelogical_wait(cachelogical_t *l, int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd fds[2] = {{.fd = l->wake_fd, .events = POLLIN}, {.fd = fd, .events = events}};
        int timeout = -1;
        if (deadline >= 0) {
            int64_t left = deadline - loop_clock_ms();
            timeout = left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
        }
        int n = poll(fds, 2, timeout); /* poll skips an fd of -1 */
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return CACHELOGICAL_FAILED;
        if (fds[0].revents != 0)
            return CACHELOGICAL_STOP;
        if (n > 0)
            return CACHELOGICAL_READY;
        if (deadline >= 0 && loop_clock_ms() >= deadline)
            return CACHELOGICAL_TIMEOUT;
    }
}

/* Only a connect waits with a deadline that ends it. */
void cachelogical_describe_wait(char *err, size_t errlen, const char *what, cachelogical_wait_t w)
{
    if (w == CACHELOGICAL_FAILED)
        snprintf(err, errlen, "%s: poll: %s", what, strerror(errno));
    else if (w == CACHELOGICAL_TIMEOUT)
        snprintf(err, errlen, "%s: no answer within %d s", what, CONNECT_TIMEOUT_MS / 1000);
    else
        snprintf(err, errlen, "%s: stopped", what);
}

/* ---- libpq without blocking ---- */

/* The server's notices and warnings, as log lines rather than libpq's lines on stderr. */
static void log_notice(void *arg, const char *message)
{
    const cachelogical_t *l = arg;
    char line[512];

    snprintf(line, sizeof(line), "%s", message);
    log_one_line(line);
    log_warning("cache logical: %s: slot %s: the server says: %s", l->where, l->slot, line);
}

/*
 * libpq reads the keywords in order and the connection string comes after the defaults, so its
 * own settings override them; replication comes last, so that nothing overrides it, and the
 * snapshot connection's name after the string, so that it shows apart from the stream's.
 */
bool cachelogical_connect(cachelogical_t *l, PGconn **conn, bool replication,
                          const char *application_name, char *err, size_t errlen)
{
    const char *keys[8] = {"application_name", "keepalives_idle", "keepalives_interval",
                           "keepalives_count", "dbname"};
    const char *values[8] = {APPLICATION_NAME, "10", "5", "3", l->conninfo};
    int n = 5;
    if (replication) {
        keys[n] = "replication";
        values[n++] = "database";
    } else {
        keys[n] = "application_name";
        values[n++] = application_name;
    }
    keys[n] = values[n] = NULL;
    const char *what = "cannot connect";
    PostgresPollingStatusType polled = PGRES_POLLING_WRITING;
    int64_t deadline = loop_clock_ms() + CONNECT_TIMEOUT_MS;

    *conn = PQconnectStartParams(keys, values, 1);
    if (*conn == NULL) {
        snprintf(err, errlen, "%s: out of memory", what);
        return false;
    }
    PQsetNoticeProcessor(*conn, log_notice, l);
    if (PQstatus(*conn) == CONNECTION_BAD) {
        pqmsg_describe(err, errlen, what, *conn);
        return false;
    }
    /* Known from here on: libpq has read the options. */
    if (replication)
        snprintf(l->where, sizeof(l->where), "database %s on %s:%s", PQdb(*conn), PQhost(*conn),
                 PQport(*conn));
    while (polled != PGRES_POLLING_OK) {
        if (polled == PGRES_POLLING_FAILED) {
            pqmsg_describe(err, errlen, what, *conn);
            return false;
        }
        short events = polled == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        cachelogical_wait_t w = cachelogical_wait(l, PQsocket(*conn), events, deadline);
        if (w != CACHELOGICAL_READY) {
            cachelogical_describe_wait(err, errlen, what, w);
            return false;
        }
        polled = PQconnectPoll(*conn);
    }
    if (PQsetnonblocking(*conn, 1) != 0) {
        pqmsg_describe(err, errlen, what, *conn);
        return false;
    }
    return true;
}

bool cachelogical_await(cachelogical_t *l, PGconn *conn, PGresult **res, const char *what,
                        char *err, size_t errlen)
{
    for (;;) {
        int unsent = PQflush(conn);
        if (unsent < 0)
            break;
        if (unsent == 0 && !PQisBusy(conn)) {
            *res = PQgetResult(conn);
            return true;
        }
        short events = (short)(POLLIN | (unsent > 0 ? POLLOUT : 0));
        cachelogical_wait_t w = cachelogical_wait(l, PQsocket(conn), events, -1);
        if (w != CACHELOGICAL_READY) {
            cachelogical_describe_wait(err, errlen, what, w);
            return false;
        }
        if (!PQconsumeInput(conn))
            break;
    }
    pqmsg_describe(err, errlen, what, conn);
    return false;
}

void cachelogical_describe_result(char *err, size_t errlen, const char *what, const PGresult *res,
                                  PGconn *conn)
{
    const char *message = res != NULL ? PQresultErrorMessage(res) : "";

    if (res == NULL) {
        pqmsg_describe(err, errlen, what, conn);
    } else if (message[0] != '\0') {
        snprintf(err, errlen, "%s: %s", what, message);
        log_one_line(err);
    } else {
        snprintf(err, errlen, "%s (%s)", what, PQresStatus(PQresultStatus(res)));
    }
}

/*
 * Sends sql and waits for its result, which must have the status expected. For a command that
 * returns rows, it also reads the end of its results, as libpq needs before the next command.
 * Returns true, or false with the reason, starting with what, in err.
 */
static bool run_command(cachelogical_t *l, const char *sql, ExecStatusType expected,
                        const char *what, char *err, size_t errlen)
{
    PGresult *res;

    if (!PQsendQuery(l->conn, sql)) {
        pqmsg_describe(err, errlen, what, l->conn);
        return false;
    }
    if (!cachelogical_await(l, l->conn, &res, what, err, errlen))
        return false;
    bool ok = PQresultStatus(res) == expected;
    if (!ok)
        cachelogical_describe_result(err, errlen, what, res, l->conn);
    PQclear(res);
    /* A stream has no end to read until it ends. */
    while (ok && expected != PGRES_COPY_BOTH) {
        if (!cachelogical_await(l, l->conn, &res, what, err, errlen))
            return false;
        if (res == NULL)
            break;
        PQclear(res);
    }
    return ok;
}

/* ---- the stream ---- */

/* Sends a standby status update: received, and processed (as flushed and applied). Returns
 * true, or false with the reason in err. */
static bool send_status(cachelogical_t *l, char *err, size_t errlen)
{
    char msg[STATUS_UPDATE_LEN];

    msg[0] = 'r'; /* Standby status update */
    put_u64(msg + 1, l->received_lsn);
    put_u64(msg + 9, l->processed_lsn);
    put_u64(msg + 17, l->processed_lsn);
    put_u64(msg + 25, (uint64_t)(wall_clock_us() - POSTGRES_EPOCH_US));
    msg[33] = 0; /* no reply wanted */
    if (PQputCopyData(l->conn, msg, sizeof(msg)) != 1 || PQflush(l->conn) < 0) {
        pqmsg_describe(err, errlen, "cannot send a status update", l->conn);
        return false;
    }
    l->next_status = loop_clock_ms() + STATUS_INTERVAL_MS;

    pthread_mutex_lock(&l->lock);
    l->status.received_lsn = l->received_lsn;
    l->status.flushed_lsn = l->processed_lsn;
    pthread_mutex_unlock(&l->lock);
    return true;
}

static void note_received(cachelogical_t *l, uint64_t lsn)
{
    if (lsn > l->received_lsn)
        l->received_lsn = lsn;
}

/* One CopyData message of the stream. Returns true, or false with the reason in err. */
static bool handle_message(cachelogical_t *l, const char *msg, size_t len, char *err, size_t errlen)
{
    switch (msg[0]) {
    case 'w': /* XLogData */
        if (len < XLOGDATA_HEADER_LEN)
            break;
        note_received(l, get_u64(msg + 1));
        note_received(l, get_u64(msg + 9));
        uint64_t before = l->processed_lsn;
        if (!handle_line(l, msg + XLOGDATA_HEADER_LEN, len - XLOGDATA_HEADER_LEN, get_u64(msg + 1),
                         err, errlen))
            return false;
        /* At once: a commit waiting for this consumer as a synchronous standby goes on. */
        return l->processed_lsn == before || send_status(l, err, errlen);
    case 'k': /* Primary keepalive */
        if (len < KEEPALIVE_LEN)
            break;
        uint64_t wal_end = get_u64(msg + 1);
        note_received(l, wal_end);
        /* Inside a transaction, the server may have sent only part of it. A keepalive that
         * moves the position on (past transactions with no changes) is answered too, for the
         * commits that wait for this consumer as a synchronous standby. */
        bool moved = !l->in_transaction && wal_end > l->processed_lsn;
        if (moved)
            l->processed_lsn = wal_end;
        return (msg[17] == 0 && !moved) || send_status(l, err, errlen);
    default:
        snprintf(err, errlen, "unexpected message '%c' in the stream", msg[0]);
        return false;
    }
    snprintf(err, errlen, "a '%c' message of %zu bytes is too short", msg[0], len);
    return false;
}

/* Reads the stream until it fails (the reason in err) or a stop is asked for. */
static void stream(cachelogical_t *l, char *err, size_t errlen)
{
    while (!atomic_load(&l->stopping)) {
        char *msg = NULL;

        /* Due even while messages keep coming, so checked before each. */
        if (loop_clock_ms() >= l->next_status && !send_status(l, err, errlen))
            return;
        if (!cachelogical_visible_check(l, err, errlen))
            return;
        int n = PQgetCopyData(l->conn, &msg, 1);
        if (n > 0) {
            bool ok = handle_message(l, msg, (size_t)n, err, errlen);
            PQfreemem(msg);
            if (!ok)
                return;
            continue;
        }
        if (n == -1) {
            PGresult *res;
            if (cachelogical_await(l, l->conn, &res, "the server ended the stream", err, errlen)) {
                cachelogical_describe_result(err, errlen, "the server ended the stream", res,
                                             l->conn);
                PQclear(res);
            }
            return;
        }
        if (n < 0) {
            pqmsg_describe(err, errlen, "cannot read the stream", l->conn);
            return;
        }
        int unsent = PQflush(l->conn);
        if (unsent < 0) {
            pqmsg_describe(err, errlen, "cannot send a status update", l->conn);
            return;
        }
        short events = (short)(POLLIN | (unsent > 0 ? POLLOUT : 0));
        int64_t due = cachelogical_visible_due(l);
        int64_t deadline = due >= 0 && due < l->next_status ? due : l->next_status;
        cachelogical_wait_t w = cachelogical_wait(l, PQsocket(l->conn), events, deadline);
        if (w == CACHELOGICAL_STOP || w == CACHELOGICAL_FAILED) {
            cachelogical_describe_wait(err, errlen, "cannot read the stream", w);
            return;
        }
        if (w == CACHELOGICAL_READY && !PQconsumeInput(l->conn)) {
            pqmsg_describe(err, errlen, "cannot read the stream", l->conn);
            return;
        }
    }
}

/* A new slot name: the prefix, "_" and CACHELOGICAL_SUFFIX_HEX random hexadecimal digits. */
static void make_slot_name(cachelogical_t *l)
{
    uint8_t r[CACHELOGICAL_SUFFIX_HEX / 2];
    char hex[CACHELOGICAL_SUFFIX_HEX + 1];

    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* Only uniqueness matters, which the clock gives too. */
        uint64_t t = (uint64_t)loop_clock_us() ^ (uint64_t)wall_clock_us() << 20;
        memcpy(r, &t, sizeof(r));
    }
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    snprintf(l->slot, sizeof(l->slot), "%s_%s", l->prefix, hex);
}

/*
 * One connection: connects, creates a new slot, starts streaming, reports "any table", and
 * streams until an error or a stop. Returns whether it got as far as streaming; the reason it
 * ended is in err. Leaves l->conn for the caller to close.
 */
static bool run_session(cachelogical_t *l, char *err, size_t errlen)
{
    char sql[256];

    l->received_lsn = 0;
    l->processed_lsn = 0;
    l->in_transaction = false;
    l->warned_unknown = false;
    snprintf(l->where, sizeof(l->where), "%s", "the server");
    make_slot_name(l);
    if (!cachelogical_connect(l, &l->conn, true, NULL, err, errlen))
        return false;
    /* No snapshot: nothing reads the database as of the slot's start. */
    snprintf(sql, sizeof(sql),
             "CREATE_REPLICATION_SLOT %s TEMPORARY LOGICAL test_decoding NOEXPORT_SNAPSHOT",
             l->slot);
    if (!run_command(l, sql, PGRES_TUPLES_OK, "cannot create the slot", err, errlen))
        return false;
    /* 0/0: from where the slot starts. Xids, to wait for their visibility, and no BEGIN and
     * COMMIT without changes. */
    snprintf(sql, sizeof(sql),
             "START_REPLICATION SLOT %s LOGICAL 0/0 (\"include-xids\" '1', "
             "\"skip-empty-xacts\" '1')",
             l->slot);
    if (!run_command(l, sql, PGRES_COPY_BOTH, "cannot start streaming", err, errlen))
        return false;

    pthread_mutex_lock(&l->lock);
    l->status.connected = true;
    snprintf(l->status.slot, sizeof(l->status.slot), "%s", l->slot);
    pthread_mutex_unlock(&l->lock);
    log_info("cache logical: %s: streaming its changes through temporary slot %s", l->where,
             l->slot);
    /* The slot's creation waited for every transaction that was running: all are visible. */
    cachelogical_visible_release_all(l);
    /* Whatever committed before the slot existed was never decoded. */
    l->cb.visible(l->cb.arg, l->cb.commit(l->cb.arg, NULL, 0));
    l->next_status = loop_clock_ms() + STATUS_INTERVAL_MS;
    stream(l, err, errlen);
    return true;
}

/* ---- the thread ---- */

static void *consumer_main(void *arg)
{
    cachelogical_t *l = arg;
    int delay_ms = RETRY_FIRST_MS;

    for (bool first = true; !atomic_load(&l->stopping); first = false) {
        char err[sizeof(l->status.last_error)] = "";

        if (!first) {
            pthread_mutex_lock(&l->lock);
            l->status.reconnects++;
            pthread_mutex_unlock(&l->lock);
        }
        bool streamed = run_session(l, err, sizeof(err));
        /* The server drops the temporary slot when the connection ends. */
        PQfinish(l->conn);
        l->conn = NULL;
        bool stopping = atomic_load(&l->stopping);

        pthread_mutex_lock(&l->lock);
        l->status.connected = false;
        l->status.slot[0] = '\0';
        if (!stopping)
            snprintf(l->status.last_error, sizeof(l->status.last_error), "%s", err);
        pthread_mutex_unlock(&l->lock);
        if (stopping)
            break;

        if (streamed)
            delay_ms = RETRY_FIRST_MS;
        log_error("cache logical: %s: slot %s: %s; connecting again in %d s", l->where, l->slot,
                  err, delay_ms / 1000);
        if (cachelogical_wait(l, -1, 0, loop_clock_ms() + delay_ms) == CACHELOGICAL_STOP)
            break;
        delay_ms = delay_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : delay_ms * 2;
    }
    cachelogical_visible_release_all(l);
    cachelogical_visible_close(l);
    return NULL;
}

/* Whether prefix makes valid slot names: lowercase letters, digits and underscores, with room
 * for the suffix. */
static bool valid_prefix(const char *prefix)
{
    size_t n = strlen(prefix);

    return n > 0 && n <= CACHELOGICAL_PREFIX_MAX &&
           strspn(prefix, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

cachelogical_t *cachelogical_start(const char *conninfo, const char *slot_prefix,
                                   const cachelogical_callbacks_t *cb, char *err, size_t errlen)
{
    char *message = NULL;
    PQconninfoOption *options = PQconninfoParse(conninfo, &message);
    cachelogical_t *l;
    int rc;

    if (options == NULL) {
        snprintf(err, errlen, "cache logical: the connection string does not parse: %s",
                 message != NULL ? message : "out of memory");
        log_one_line(err);
        PQfreemem(message);
        return NULL;
    }
    PQconninfoFree(options);
    if (!valid_prefix(slot_prefix)) {
        snprintf(err, errlen,
                 "cache logical: the slot prefix \"%s\" is not 1 to %d lowercase letters, digits "
                 "and underscores",
                 slot_prefix, CACHELOGICAL_PREFIX_MAX);
        return NULL;
    }

    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        snprintf(err, errlen, "cache logical: out of memory");
        return NULL;
    }
    pthread_mutex_init(&l->lock, NULL);
    atomic_init(&l->stopping, false);
    l->cb = *cb;
    snprintf(l->prefix, sizeof(l->prefix), "%s", slot_prefix);
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->wake_fd < 0) {
        snprintf(err, errlen, "cache logical: eventfd: %s", strerror(errno));
        goto fail;
    }
    l->conninfo = strdup(conninfo);
    if (l->conninfo == NULL) {
        snprintf(err, errlen, "cache logical: out of memory");
        goto fail;
    }
    rc = pthread_create(&l->thread, NULL, consumer_main, l);
    if (rc != 0) {
        snprintf(err, errlen, "cache logical: cannot start its thread: %s", strerror(rc));
        goto fail;
    }
    return l;

fail:
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    pthread_mutex_destroy(&l->lock);
    free(l->conninfo);
    free(l);
    return NULL;
}

void cachelogical_stop(cachelogical_t *l)
{
    uint64_t one = 1;

    if (l == NULL)
        return;
    atomic_store(&l->stopping, true);
    /* Only an eventfd counter that is already huge refuses a write, and it is readable then. */
    ssize_t n = write(l->wake_fd, &one, sizeof(one));
    (void)n;
    pthread_join(l->thread, NULL);
    close(l->wake_fd);
    pthread_mutex_destroy(&l->lock);
    free(l->conninfo);
    free(l);
}

void cachelogical_status(cachelogical_t *l, cachelogical_status_t *out)
{
    if (l == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    pthread_mutex_lock(&l->lock);
    *out = l->status;
    pthread_mutex_unlock(&l->lock);
}
