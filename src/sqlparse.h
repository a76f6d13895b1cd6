/*
 * sqlparse.h
 *    What a query text does, from the real PostgreSQL 15 parser (libpg_query).
 *
 * For each query text: its fingerprint (the same for texts that differ only in constants,
 * whitespace, comments or the length of an IN list), its normalized text (constants replaced
 * by $1, $2 ...), its statement kind, the tables it reads and writes, and whether it calls
 * functions whose results may change between two runs over unchanged tables. Text the parser
 * rejects is still described (kind SQL_UNPARSED, fingerprint = hash of the text), so that the
 * proxy can forward it untouched and count it.
 *
 * Parsing costs tens of microseconds, so a worker asks its own sqlparse_cache_t, which parses
 * each distinct text once. The cache keys on the text without its comments: sqlcommenter
 * comments carry a request id or a trace id that differs on every request, and would otherwise
 * make every text distinct. Read the tags of each query with sqlparse_comment_tags(), which is
 * cheap and allocates nothing.
 *
 * Threads: libpg_query keeps a memory context per thread, created on first use and freed when
 * the thread exits, so sqlparse_analyze() may run on any thread. A cache belongs to one thread.
 */
#ifndef PGTURBO_SQLPARSE_H
#define PGTURBO_SQLPARSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What a text does. A text of several statements takes the strongest kind among them, in the
 * order DDL > WRITE > TRANSACTION > UTILITY > READ: it is a read only when every statement is
 * one, and a DDL that travels with a write still shows as DDL, whose consumers (invalidation
 * of everything that depends on a table's shape) react more broadly than a write's.
 */
typedef enum sql_kind {
    SQL_READ,        /* SELECT (also with FOR UPDATE/SHARE: see for_update), VALUES, TABLE */
    SQL_WRITE,       /* INSERT, UPDATE, DELETE, MERGE, COPY FROM, REFRESH MATERIALIZED VIEW,
                        a SELECT with a data-modifying WITH, EXPLAIN ANALYZE of a write, and
                        DO and CALL, which run arbitrary code (tables unknown, volatile) */
    SQL_DDL,         /* CREATE, ALTER, DROP, TRUNCATE, GRANT, REVOKE, COMMENT, SELECT INTO ... */
    SQL_TRANSACTION, /* BEGIN, COMMIT, ROLLBACK, SAVEPOINT, PREPARE TRANSACTION ... */
    SQL_UTILITY,     /* SET, SHOW, EXPLAIN, VACUUM, ANALYZE, LOCK, LISTEN, NOTIFY, DISCARD,
                        PREPARE, EXECUTE, DEALLOCATE, cursors, COPY TO, the empty query ... */
    SQL_UNPARSED,    /* the parser rejected the text (or it nests too deeply to walk) */
} sql_kind_t;

#define SQLPARSE_MAX_TABLES    16
#define SQLPARSE_MAX_FUNCTIONS 8
#define SQLPARSE_NAME_LEN   128 /* "schema.relation": two identifiers of NAMEDATALEN - 1 */
#define SQLPARSE_TAG_KEY    64
#define SQLPARSE_TAG_VALUE  256

/*
 * The description of one text; immutable once made, so it may be shared read-only.
 *
 * Table names are as PostgreSQL resolves identifiers, without quotes: unquoted names folded to
 * lower case, quoted ones kept as written, and schema-qualified only when the text qualifies
 * them ("public.users" for public.users, "users" for users or USERS, "Users" for "Users"). The
 * names of a statement's WITH queries are not tables. Each list is sorted and has no
 * duplicates; a table both read and written (UPDATE t SET x = (SELECT max(x) FROM t)) is in
 * both.
 *
 * tables_written names what a write targets (INSERT/UPDATE/DELETE/MERGE, COPY FROM, SELECT
 * INTO) and what DDL acts on (the table created, altered, dropped, truncated, granted on,
 * indexed, referenced by a new foreign key: more than strictly changes, never less). It names
 * the targets also where the text does not run them now (EXPLAIN without ANALYZE, PREPARE).
 */
typedef struct sql_info {
    uint64_t fingerprint; /* pg_query_fingerprint(); for unparsed text sqlparse_hash() */
    sql_kind_t kind;
    int n_statements;        /* statements in the text; 0 for the empty query and unparsed */
    bool volatile_functions; /* calls a function not on the list of known immutable or
                                stable built-ins (so now(), random(), nextval(), every user
                                function), reads CURRENT_TIMESTAMP, CURRENT_USER and other
                                session values, casts 'now'/'today', or uses TABLESAMPLE
                                without REPEATABLE */
    bool reads_clock;        /* the part of volatile_functions no catalog can clear: reads
                                the clock or the session (CURRENT_TIMESTAMP, CURRENT_USER,
                                'now' casts), TABLESAMPLE without REPEATABLE, DO, CALL */
    bool runs_unknown;       /* runs code whose tables the text does not show: DO, CALL and
                                EXECUTE of an SQL-level prepared statement */
    bool session_state;      /* changes session state that results may depend on and that
                                pgturbo does not follow: SET or RESET of a setting not on the
                                list of harmless ones (search_path, role, ...), RESET ALL,
                                DISCARD, LOAD, set_config(), a temporary relation created.
                                SET LOCAL is not counted: it ends with its transaction */
    bool for_update;         /* FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE anywhere: a read that
                                locks, so it must run on the primary and never be cached */
    bool too_many_tables;    /* more than SQLPARSE_MAX_TABLES read or written: the lists are
                                incomplete, so the reads must not be cached and the writes
                                must invalidate broadly */
    bool too_many_functions; /* more than SQLPARSE_MAX_FUNCTIONS in functions */
    int n_read, n_written, n_functions;
    char tables_read[SQLPARSE_MAX_TABLES][SQLPARSE_NAME_LEN];
    char tables_written[SQLPARSE_MAX_TABLES][SQLPARSE_NAME_LEN];
    /* Functions called that are not on the list of known immutable or stable built-ins, as
       written ("f", "s.f"; lower-cased unless quoted), sorted, no duplicates: only the
       catalog knows whether they are volatile. */
    char functions[SQLPARSE_MAX_FUNCTIONS][SQLPARSE_NAME_LEN];
    char *normalized; /* pg_query_normalize(): constants as $n; NULL when unparsed */
} sql_info_t;

/* One sqlcommenter tag, decoded; both strings always NUL-terminated. */
typedef struct sql_tag {
    char key[SQLPARSE_TAG_KEY];
    char value[SQLPARSE_TAG_VALUE];
} sql_tag_t;

typedef struct sqlparse_cache sqlparse_cache_t;

/* "read", "write", "ddl", "transaction", "utility", "unparsed" ("?" for other values). */
const char *sql_kind_name(sql_kind_t kind);

/*
 * The parse tree of text as JSON (libpg_query's form), for modules that read more than
 * sql_info_t says (advise's candidates). NULL when the parser rejects text or the tree nests
 * past jansson's limit (*oom false), or memory runs out (*oom true). Caller releases with
 * json_decref.
 */
json_t *sqlparse_tree(const char *text, bool *oom);

/* A 64-bit hash of len bytes (FNV-1a): the cache's key and the fingerprint of unparsed text. */
uint64_t sqlparse_hash(const char *text, size_t len);

/*
 * Parses text (NUL-terminated, borrowed) and describes it. Never fails on bad SQL (kind
 * SQL_UNPARSED); returns NULL only when memory runs out. Parses three times (tree,
 * fingerprint, normalized text): call it through a cache. Caller frees with sql_info_free().
 */
__attribute__((warn_unused_result)) sql_info_t *sqlparse_analyze(const char *text);
/* Frees an info from sqlparse_analyze(); NULL is accepted. Never for an info of a cache. */
void sql_info_free(sql_info_t *info);

/* Creates a cache of at most capacity texts (capacity >= 1); NULL when memory runs out. Free
 * with sqlparse_cache_free(). Owned by one thread: there are no locks. */
sqlparse_cache_t *sqlparse_cache_create(int capacity);
/* Frees the cache and every info it holds; NULL is accepted. */
void sqlparse_cache_free(sqlparse_cache_t *cache);
/*
 * The description of text (len bytes, borrowed, NUL not needed), analyzed on a miss. The key
 * is the text without comments (a comment and the whitespace around it count as one space)
 * and without whitespace at either end: texts that differ only there share one description,
 * made from the text without comments, so its normalized text carries no request ids. When
 * the cache is full, a miss evicts the least recently used text. The info is borrowed from
 * the cache and valid until the next sqlparse_cache_get() on it: copy what must live longer.
 * NULL only when memory runs out.
 */
const sql_info_t *sqlparse_cache_get(sqlparse_cache_t *cache, const char *text, size_t len);
/* Number of texts held. */
int sqlparse_cache_count(const sqlparse_cache_t *cache);
/* Lookups answered from the cache, and misses (analyses), since it was created. */
void sqlparse_cache_counters(const sqlparse_cache_t *cache, uint64_t *hits, uint64_t *misses);

/*
 * Copies text (len bytes, borrowed) into out (at least len bytes) without its comments and
 * without whitespace at either end: the form the cache keys on. A comment and the whitespace
 * around it become one space (none at either end), so that "a", a block comment, "b" gives
 * "a b" with or without spaces around the comment, as does "a -- c", newline, "b". Whitespace
 * elsewhere, and all of string literals, stay as they are. Returns the length written. Pure.
 */
size_t sqlparse_strip_comments(const char *text, size_t len, char *out);

/*
 * sqlcommenter tags (route, controller, action, request_id, traceparent ...) of text (len
 * bytes, NUL not needed): those of the last block comment whose whole content is
 * key='value' pairs separated by commas (a comment of any other shape carries no tags).
 * Comments are found as PostgreSQL's lexer finds them, so a comment opener inside a string, a
 * quoted identifier or a dollar-quoted body opens nothing. Keys and values are URL-decoded
 * (%XX) and \ escapes the character after it (\' is a quote). Writes at most max tags into
 * out, in the comment's order, truncating a long key or value at a UTF-8 character boundary,
 * and returns how many it wrote. Pure: no allocation, no state.
 */
int sqlparse_comment_tags(const char *text, size_t len, sql_tag_t *out, int max);

/*
 * True when type_cast, a TypeCast node of libpg_query's JSON tree, casts one of the words
 * 'now', 'today', 'tomorrow', 'yesterday' (any case, blanks around): PostgreSQL reads the
 * clock when it analyzes such a cast.
 */
bool sqlparse_cast_reads_clock(json_t *type_cast);

#endif /* PGTURBO_SQLPARSE_H */
