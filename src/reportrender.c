/*
 * reportrender.c
 *    The report as text and as one HTML page; see reportrender.h.
 *
 * Text has a fixed order: header, score, recommendations (most severe first), then each
 * section in a few lines. HTML shows the same, and every list of the document as a table
 * whose columns are the keys of its rows, so a section added to report.c shows up without a
 * change here.
 */
#include "reportrender.h"

#include "health.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CELL 256 /* longest cleaned name or value printed in a text line */

/* ---- reading the document ---- */

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static double dbl(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

static bool present(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return v != NULL && !json_is_null(v);
}

static const json_t *section(const json_t *o, const char *path)
{
    /* "a.b" walks two levels. */
    char key[64];
    const char *dot = strchr(path, '.');
    if (dot == NULL)
        return json_object_get(o, path);
    snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
    return json_object_get(json_object_get(o, key), dot + 1);
}

void report_text_clean(const char *s, char *out, size_t len)
{
    size_t n = 0;
    if (len == 0)
        return;
    for (; s != NULL && s[n] != '\0' && n + 1 < len; n++)
        out[n] = ((unsigned char)s[n] < 0x20 || s[n] == 0x7f) ? '?' : s[n];
    out[n] = '\0';
}

/* "schema.name" of a row, cleaned. */
static void qualified(const json_t *row, const char *name_key, char *out, size_t len)
{
    char raw[2 * CELL];
    snprintf(raw, sizeof(raw), "%s.%s", str(row, "schema") ? str(row, "schema") : "?",
             str(row, name_key) ? str(row, name_key) : "?");
    report_text_clean(raw, out, len);
}

static const char *bytes(const json_t *o, const char *key, char *out, size_t len)
{
    health_format_bytes(dbl(o, key), out, len);
    return out;
}

/* ---- text ---- */

static void text_header(const json_t *doc, FILE *out)
{
    const json_t *db = json_object_get(doc, "database");
    char name[CELL], server[CELL], version[CELL], when[CELL], size[32], reset[CELL];
    report_text_clean(str(db, "name"), name, sizeof(name));
    report_text_clean(str(db, "server"), server, sizeof(server));
    report_text_clean(str(db, "version"), version, sizeof(version));
    report_text_clean(str(doc, "generated_at"), when, sizeof(when));
    report_text_clean(str(db, "stats_reset"), reset, sizeof(reset));
    fprintf(out, "pgturbo report of database %s on %s (PostgreSQL %s), %s\n", name, server, version,
            when);
    fprintf(out, "Database size %s; statistics %s%s\n\n",
            bytes(db, "size_bytes", size, sizeof(size)), reset[0] ? "since " : "never reset",
            reset);

    fprintf(out, "Health score: %d/100", (int)json_integer_value(json_object_get(doc, "score")));
    const char *sep = " (";
    size_t i;
    const json_t *p;
    json_array_foreach(json_object_get(doc, "score_breakdown"), i, p)
    {
        if (dbl(p, "penalty") <= 0)
            continue;
        fprintf(out, "%s%s -%.1f", sep, str(p, "factor") ? str(p, "factor") : "?",
                dbl(p, "penalty"));
        sep = ", ";
    }
    fprintf(out, "%s\n", sep[0] == ',' ? ")" : "");
}

static void text_recommendations(const json_t *doc, FILE *out)
{
    fprintf(out, "\nRecommendations\n");
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(doc, "recommendations"), i, r)
    {
        char msg[2 * CELL], action[2 * CELL], sev[16], cat[32];
        report_text_clean(str(r, "severity"), sev, sizeof(sev));
        report_text_clean(str(r, "category"), cat, sizeof(cat));
        report_text_clean(str(r, "message"), msg, sizeof(msg));
        report_text_clean(str(r, "action"), action, sizeof(action));
        for (char *c = sev; *c; c++)
            *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        fprintf(out, "  %-8s [%s] %s\n           -> %s\n", sev, cat, msg, action);
    }
}

static void text_tables(const json_t *doc, FILE *out)
{
    const json_t *list = section(doc, "tables.largest");
    fprintf(out, "\nLargest tables\n");
    if (json_array_size(list) == 0) {
        fprintf(out, "  (no tables)\n");
        return;
    }
    fprintf(out, "  %-40s %10s %10s %10s %10s %12s\n", "table", "total", "table", "indexes",
            "toast", "rows");
    size_t i;
    const json_t *t;
    json_array_foreach(list, i, t)
    {
        char name[CELL], a[32], b[32], c[32], d[32];
        qualified(t, "table", name, sizeof(name));
        fprintf(out, "  %-40s %10s %10s %10s %10s %12.0f\n", name,
                bytes(t, "total_bytes", a, sizeof(a)), bytes(t, "table_bytes", b, sizeof(b)),
                bytes(t, "index_bytes", c, sizeof(c)), bytes(t, "toast_bytes", d, sizeof(d)),
                dbl(t, "rows"));
    }
}

static void text_ratio(const json_t *cache, const char *key, const char *label, FILE *out)
{
    const json_t *r = json_object_get(cache, key);
    if (present(r, "ratio_percent"))
        fprintf(out, "%s %.2f %% (%s)", label, dbl(r, "ratio_percent"), str(r, "assessment"));
    else
        fprintf(out, "%s no data", label);
}

static void text_cache(const json_t *doc, FILE *out)
{
    const json_t *cache = json_object_get(doc, "cache");
    if (cache == NULL)
        return;
    fprintf(out, "\nCache hit ratio: ");
    text_ratio(cache, "heap", "heap", out);
    text_ratio(cache, "index", ", index", out);
    text_ratio(cache, "overall", ", overall", out);
    fprintf(out, "\n");
}

/* One line per row of a list of indexes, with extra (a key of the row) after it. */
static void text_index_list(const json_t *list, const char *title, const char *extra_key,
                            const char *extra_label, FILE *out)
{
    if (json_array_size(list) == 0)
        return;
    fprintf(out, "  %s:\n", title);
    size_t i;
    const json_t *x;
    json_array_foreach(list, i, x)
    {
        char name[CELL], table[CELL], size[32], extra[CELL] = "";
        qualified(x, "index", name, sizeof(name));
        report_text_clean(str(x, "table"), table, sizeof(table));
        if (extra_key != NULL && json_is_string(json_object_get(x, extra_key)))
            report_text_clean(str(x, extra_key), extra, sizeof(extra));
        else if (extra_key != NULL && json_is_number(json_object_get(x, extra_key)))
            snprintf(extra, sizeof(extra), "%.0f", dbl(x, extra_key));
        fprintf(out, "    %s on %s, %s%s%s\n", name, table,
                bytes(x, "size_bytes", size, sizeof(size)), extra[0] ? extra_label : "", extra);
    }
}

static void text_indexes(const json_t *doc, FILE *out)
{
    const json_t *idx = json_object_get(doc, "indexes");
    if (idx == NULL)
        return;
    fprintf(out, "\nIndexes\n");
    static const char *const lists[] = {"most_used", "unused", "duplicate", "redundant", "invalid"};
    size_t total = json_array_size(json_object_get(doc, "foreign_keys_without_index"));
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        total += json_array_size(json_object_get(idx, lists[i]));
    if (total == 0)
        fprintf(out, "  (nothing to show)\n");
    text_index_list(json_object_get(idx, "most_used"), "most used", "scans", ", scans ", out);
    text_index_list(json_object_get(idx, "unused"), "unused since the statistics reset", "severity",
                    ", ", out);
    text_index_list(json_object_get(idx, "duplicate"), "duplicate", "duplicate_of", ", same as ",
                    out);
    text_index_list(json_object_get(idx, "redundant"), "redundant", "covered_by", ", covered by ",
                    out);
    text_index_list(json_object_get(idx, "invalid"), "invalid", NULL, "", out);
    const json_t *fks = json_object_get(doc, "foreign_keys_without_index");
    if (json_array_size(fks) > 0) {
        fprintf(out, "  foreign keys without an index:\n");
        size_t i;
        const json_t *f;
        json_array_foreach(fks, i, f)
        {
            char table[CELL], con[CELL], cols[CELL] = "";
            qualified(f, "table", table, sizeof(table));
            report_text_clean(str(f, "constraint"), con, sizeof(con));
            size_t k;
            const json_t *col;
            json_array_foreach(json_object_get(f, "columns"), k, col)
            {
                char clean[CELL];
                size_t used = strlen(cols);
                report_text_clean(json_string_value(col), clean, sizeof(clean));
                if (used + 2 + strlen(clean) < sizeof(cols))
                    snprintf(cols + used, sizeof(cols) - used, "%s%.*s", k > 0 ? ", " : "",
                             (int)(sizeof(cols) - used - 3), clean);
            }
            fprintf(out, "    %s (%s): %s\n", table, cols, con);
        }
    }
}

static void text_bloat_list(const json_t *list, bool indexes, FILE *out)
{
    size_t i;
    const json_t *b;
    json_array_foreach(list, i, b)
    {
        char name[CELL], wasted[32], size[32];
        qualified(b, indexes ? "index" : "table", name, sizeof(name));
        fprintf(out, "    %-40s %s of %s (%.0f %%, %s)\n", name,
                bytes(b, "wasted_bytes", wasted, sizeof(wasted)),
                bytes(b, "size_bytes", size, sizeof(size)), dbl(b, "wasted_percent"),
                str(b, "method") ? str(b, "method") : "?");
    }
}

static void text_bloat(const json_t *doc, FILE *out)
{
    const json_t *bloat = json_object_get(doc, "bloat");
    if (bloat == NULL)
        return;
    char total[32];
    fprintf(out, "\nBloat (%s): %s wasted\n", str(bloat, "method") ? str(bloat, "method") : "?",
            bytes(bloat, "wasted_bytes", total, sizeof(total)));
    text_bloat_list(json_object_get(bloat, "tables"), false, out);
    text_bloat_list(json_object_get(bloat, "indexes"), true, out);
}

static void text_maintenance(const json_t *doc, FILE *out)
{
    const json_t *m = json_object_get(doc, "maintenance");
    if (json_array_size(json_object_get(m, "vacuum")) +
            json_array_size(json_object_get(m, "analyze")) ==
        0)
        return;
    fprintf(out, "\nMaintenance\n");
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(m, "vacuum"), i, t)
    {
        char name[CELL];
        qualified(t, "table", name, sizeof(name));
        fprintf(out, "  needs VACUUM:  %s, %.0f dead rows (%.1f %%), last autovacuum %s%s\n", name,
                dbl(t, "dead"), dbl(t, "dead_percent"),
                present(t, "last_autovacuum") ? str(t, "last_autovacuum") : "never",
                json_is_false(json_object_get(t, "autovacuum_enabled")) ? ", autovacuum disabled"
                                                                        : "");
    }
    json_array_foreach(json_object_get(m, "analyze"), i, t)
    {
        char name[CELL];
        qualified(t, "table", name, sizeof(name));
        fprintf(out, "  needs ANALYZE: %s, %.0f rows changed, last autoanalyze %s\n", name,
                dbl(t, "modified"),
                present(t, "last_autoanalyze") ? str(t, "last_autoanalyze") : "never");
    }
}

static void text_sessions(const json_t *doc, FILE *out)
{
    const json_t *conn = json_object_get(doc, "connections");
    if (conn != NULL) {
        fprintf(out, "\nConnections: %.0f of %.0f (%.1f %%)", dbl(conn, "total"),
                dbl(conn, "max_connections"), dbl(conn, "usage_percent"));
        const char *key;
        const json_t *n;
        const char *sep = ": ";
        json_object_foreach((json_t *)json_object_get(conn, "by_state"), key, n)
        {
            char clean[CELL];
            report_text_clean(key, clean, sizeof(clean));
            fprintf(out, "%s%s %lld", sep, clean, (long long)json_integer_value(n));
            sep = ", ";
        }
        fprintf(out, "\n");
    }
    const json_t *s = json_object_get(doc, "sessions");
    static const struct {
        const char *key, *label, *seconds;
    } kinds[] = {{"long_running", "long-running", "query_s"},
                 {"idle_in_transaction", "idle in transaction", "idle_s"}};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        size_t i;
        const json_t *x;
        json_array_foreach(json_object_get(s, kinds[k].key), i, x)
        {
            char user[CELL], query[CELL];
            report_text_clean(str(x, "user"), user, sizeof(user));
            report_text_clean(str(x, "query"), query, sizeof(query));
            fprintf(out, "  %s: pid %lld (%s), %.0f s: %s\n", kinds[k].label,
                    (long long)json_integer_value(json_object_get(x, "pid")), user,
                    dbl(x, kinds[k].seconds), query);
        }
    }
    size_t i;
    const json_t *w;
    json_array_foreach(section(doc, "locks.waits"), i, w)
    {
        fprintf(out, "  lock wait: pid %lld waits %.0f s for",
                (long long)json_integer_value(json_object_get(w, "pid")), dbl(w, "waiting_s"));
        size_t k;
        const json_t *b;
        json_array_foreach(json_object_get(w, "blocked_by"), k, b)
        {
            char state[CELL];
            report_text_clean(str(b, "state"), state, sizeof(state));
            fprintf(out, "%s pid %lld (%s)", k > 0 ? "," : "",
                    (long long)json_integer_value(json_object_get(b, "pid")),
                    state[0] ? state : "?");
        }
        fprintf(out, "\n");
    }
}

static void text_rest(const json_t *doc, FILE *out)
{
    size_t i;
    const json_t *x;
    const json_t *seqs = json_object_get(doc, "sequences");
    if (json_array_size(seqs) > 0) {
        fprintf(out, "\nSequences at least half used\n");
        json_array_foreach(seqs, i, x)
        {
            char name[CELL];
            qualified(x, "sequence", name, sizeof(name));
            fprintf(out, "  %s %.1f %%\n", name, dbl(x, "used_percent"));
        }
    }
    const json_t *rep = json_object_get(doc, "replication");
    if (rep != NULL) {
        fprintf(out, "\nReplication: %s, %zu replica%s\n",
                str(rep, "role") ? str(rep, "role") : "?",
                json_array_size(json_object_get(rep, "replicas")),
                json_array_size(json_object_get(rep, "replicas")) == 1 ? "" : "s");
        json_array_foreach(json_object_get(rep, "replicas"), i, x)
        {
            char name[CELL];
            report_text_clean(str(x, "application_name"), name, sizeof(name));
            fprintf(out, "  %s: %s, replay lag %.1f s\n", name,
                    str(x, "state") ? str(x, "state") : "?", dbl(x, "replay_lag_s"));
        }
    }
    const json_t *skipped = json_object_get(doc, "skipped");
    if (json_array_size(skipped) > 0) {
        fprintf(out, "\nSkipped or partial checks\n");
        json_array_foreach(skipped, i, x)
        {
            char check[CELL], reason[2 * CELL];
            report_text_clean(str(x, "check"), check, sizeof(check));
            report_text_clean(str(x, "reason"), reason, sizeof(reason));
            fprintf(out, "  %s: %s\n", check, reason);
        }
    }
}

void report_render_text(const json_t *doc, FILE *out)
{
    text_header(doc, out);
    text_recommendations(doc, out);
    text_tables(doc, out);
    text_cache(doc, out);
    text_indexes(doc, out);
    text_bloat(doc, out);
    text_maintenance(doc, out);
    text_sessions(doc, out);
    text_rest(doc, out);
}

/* ---- HTML ---- */

void report_html_escape(const char *s, FILE *out)
{
    for (; s != NULL && *s != '\0'; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc(*s, out);
        }
    }
}

/* A JSON value as cell text: strings as they are, the rest as compact JSON; escaped. */
static void html_value(const json_t *v, FILE *out)
{
    if (v == NULL || json_is_null(v))
        return;
    if (json_is_string(v)) {
        report_html_escape(json_string_value(v), out);
        return;
    }
    if (json_is_real(v)) {
        fprintf(out, "%.1f", json_real_value(v));
        return;
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    report_html_escape(text, out);
    free(text);
}

/* A list of objects as a table whose columns are the first row's keys, under title (none
 * when NULL). */
static void html_table(const char *title, const json_t *list, FILE *out)
{
    if (title != NULL) {
        fprintf(out, "<h3>");
        report_html_escape(title, out);
        fprintf(out, "</h3>\n");
    }
    if (json_array_size(list) == 0) {
        fprintf(out, "<p class=\"none\">none</p>\n");
        return;
    }
    const json_t *first = json_array_get(list, 0);
    const char *key;
    const json_t *v;
    fprintf(out, "<table><tr>");
    json_object_foreach((json_t *)first, key, v)
    {
        fprintf(out, "<th>");
        report_html_escape(key, out);
        fprintf(out, "</th>");
    }
    fprintf(out, "</tr>\n");
    size_t i;
    const json_t *row;
    json_array_foreach(list, i, row)
    {
        fprintf(out, "<tr>");
        json_object_foreach((json_t *)first, key, v)
        {
            const json_t *cell = json_object_get(row, key);
            const char *sev = strcmp(key, "severity") == 0 ? json_string_value(cell) : NULL;
            if (sev != NULL && strspn(sev, "abcdefghijklmnopqrstuvwxyz") == strlen(sev))
                fprintf(out, "<td class=\"sev %s\">", sev);
            else
                fprintf(out, "<td>");
            html_value(cell, out);
            fprintf(out, "</td>");
        }
        fprintf(out, "</tr>\n");
    }
    fprintf(out, "</table>\n");
}

static const char STYLE_CSS[] =
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:80em}"
    "h1{margin-bottom:0}.meta{color:#666}"
    ".score{font-size:3em;font-weight:bold;display:inline-block;padding:.2em .5em;"
    "border-radius:.3em;color:#fff}"
    ".good{background:#2e7d32}.fair{background:#f9a825}.poor{background:#c62828}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}"
    "th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top;"
    "word-break:break-word}th{background:#f5f5f5}"
    "td.sev{font-weight:bold}.critical{color:#c62828}.warning{color:#e65100}"
    ".info{color:#1565c0}.success{color:#2e7d32}.none{color:#888}";

void report_render_html(const json_t *doc, FILE *out)
{
    const json_t *db = json_object_get(doc, "database");
    int score = (int)json_integer_value(json_object_get(doc, "score"));
    fprintf(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                 "<title>pgturbo report: ");
    report_html_escape(str(db, "name"), out);
    fprintf(out, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>pgturbo report: ", STYLE_CSS);
    report_html_escape(str(db, "name"), out);
    fprintf(out, "</h1>\n<p class=\"meta\">");
    report_html_escape(str(db, "server"), out);
    fprintf(out, ", PostgreSQL ");
    report_html_escape(str(db, "version"), out);
    char size[32];
    fprintf(out, ", %s, generated ", bytes(db, "size_bytes", size, sizeof(size)));
    report_html_escape(str(doc, "generated_at"), out);
    fprintf(out, "; statistics since ");
    report_html_escape(present(db, "stats_reset") ? str(db, "stats_reset") : "never reset", out);
    fprintf(out, "</p>\n<h2>Health score</h2>\n<div class=\"score %s\">%d</div>\n",
            score >= 80   ? "good"
            : score >= 60 ? "fair"
                          : "poor",
            score);
    html_table("Score breakdown (penalties)", json_object_get(doc, "score_breakdown"), out);

    fprintf(out, "<h2>Recommendations</h2>\n");
    html_table(NULL, json_object_get(doc, "recommendations"), out);

    const json_t *cache = json_object_get(doc, "cache");
    json_t *ratios = json_array();
    static const char *const kinds[] = {"heap", "index", "overall"};
    for (size_t i = 0; i < 3; i++) {
        json_t *row = json_object();
        json_object_set_new(row, "blocks", json_string(kinds[i]));
        json_object_update(row, json_object_get(cache, kinds[i]));
        json_array_append_new(ratios, row);
    }
    fprintf(out, "<h2>Database</h2>\n");
    html_table("Cache hit ratio", ratios, out);
    json_decref(ratios);
    html_table("Largest tables", section(doc, "tables.largest"), out);

    fprintf(out, "<h2>Indexes</h2>\n");
    html_table("Most used", section(doc, "indexes.most_used"), out);
    html_table("Unused since the statistics reset", section(doc, "indexes.unused"), out);
    html_table("Duplicate", section(doc, "indexes.duplicate"), out);
    html_table("Redundant", section(doc, "indexes.redundant"), out);
    html_table("Invalid", section(doc, "indexes.invalid"), out);
    html_table("Foreign keys without an index", json_object_get(doc, "foreign_keys_without_index"),
               out);

    fprintf(out, "<h2>Bloat and maintenance</h2>\n");
    html_table("Table bloat", section(doc, "bloat.tables"), out);
    html_table("Index bloat", section(doc, "bloat.indexes"), out);
    html_table("Tables needing VACUUM", section(doc, "maintenance.vacuum"), out);
    html_table("Tables needing ANALYZE", section(doc, "maintenance.analyze"), out);

    fprintf(out, "<h2>Activity</h2>\n");
    const json_t *conn = json_object_get(doc, "connections");
    fprintf(out, "<p>Connections: %.0f of %.0f (%.1f %%)</p>\n", dbl(conn, "total"),
            dbl(conn, "max_connections"), dbl(conn, "usage_percent"));
    json_t *states = json_array();
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(conn, "by_state"), key, v)
    {
        json_t *row = json_object();
        json_object_set_new(row, "state", json_string(key));
        json_object_set(row, "connections", (json_t *)v);
        json_array_append_new(states, row);
    }
    html_table("Connections by state", states, out);
    json_decref(states);
    html_table("Long-running queries", section(doc, "sessions.long_running"), out);
    html_table("Idle in transaction", section(doc, "sessions.idle_in_transaction"), out);
    html_table("Lock waits", section(doc, "locks.waits"), out);
    html_table("Sequences at least half used", json_object_get(doc, "sequences"), out);
    html_table("Replicas", section(doc, "replication.replicas"), out);
    if (present(doc, "daemon"))
        html_table("Pools", section(doc, "daemon.pools"), out);
    html_table("Skipped or partial checks", json_object_get(doc, "skipped"), out);
    fprintf(out, "</body>\n</html>\n");
}
