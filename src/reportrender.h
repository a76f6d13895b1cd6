/*
 * reportrender.h
 *    The report document of report.h printed for people: text for a terminal, or one
 *    self-contained HTML page (inline CSS, no scripts, no external resources).
 *
 * Both read the document defensively: a missing section or key prints as absent, never
 * crashes, so a document from another version (or the daemon) renders too. Every string
 * from the database is sanitized for its medium: control characters become '?' in text (a
 * table name cannot move the cursor), and HTML's special characters become entities.
 */
#ifndef PGTURBO_REPORTRENDER_H
#define PGTURBO_REPORTRENDER_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/* Writes doc as text to out. Borrows both; the caller checks ferror(out). */
void report_render_text(const json_t *doc, FILE *out);

/* Writes doc as one HTML page to out. Borrows both; the caller checks ferror(out). */
void report_render_html(const json_t *doc, FILE *out);

/* Writes s (NULL as nothing) to out with &, <, >, " and ' as HTML entities. */
void report_html_escape(const char *s, FILE *out);

/* Copies s into out (at most len - 1 bytes, always terminated) with ASCII control characters
 * (below 0x20, and 0x7f) replaced by '?'; NULL s gives "". */
void report_text_clean(const char *s, char *out, size_t len);

#endif /* PGTURBO_REPORTRENDER_H */
