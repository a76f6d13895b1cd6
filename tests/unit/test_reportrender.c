/*
 * test_reportrender.c
 *    Unit tests of reportrender.c: HTML escaping, text cleaning, the HTML page and the text of
 *    a small report with hostile names, and documents with missing or odd sections.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "reportrender.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- rendering ---- */

/* What fn writes for doc, as a malloc'd string. */
static char *rendered(void (*fn)(const json_t *, FILE *), const json_t *doc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    fn(doc, f);
    assert_int_equal(fclose(f), 0);
    return text;
}

static void escape_cb(const json_t *doc, FILE *f)
{
    report_html_escape(json_string_value(doc), f);
}

static void html_escape_replaces_the_five_special_characters(void **state)
{
    json_t *s = json_string("<script>alert('x') & \"y\"</script>");
    char *out = rendered(escape_cb, s);
    assert_string_equal(out, "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;");
    free(out);
    json_decref(s);
}

static void text_clean_replaces_control_characters_and_truncates(void **state)
{
    char out[16];
    report_text_clean("a\nb\x1b[31mc\x7f", out, sizeof(out));
    assert_string_equal(out, "a?b?[31mc?");
    report_text_clean("0123456789abcdefghij", out, 8);
    assert_string_equal(out, "0123456");
    report_text_clean(NULL, out, sizeof(out));
    assert_string_equal(out, "");
    report_text_clean("ünïcode", out, sizeof(out));
    assert_string_equal(out, "ünïcode");
}

static json_t *small_doc(void)
{
    json_error_t e;
    json_t *doc = json_loads(
        "{\"database\": {\"name\": \"app\", \"server\": \"h:5432\", \"version\": \"15\","
        " \"size_bytes\": 1048576, \"stats_reset\": null},"
        " \"score\": 88,"
        " \"score_breakdown\": [{\"factor\": \"bloat\", \"penalty\": 12.0, \"max\": 15.0}],"
        " \"recommendations\": [{\"category\": \"indexes\", \"severity\": \"warning\","
        "   \"message\": \"Index i on public.\\\"<script>x\\\" is unused\","
        "   \"action\": \"DROP INDEX CONCURRENTLY IF EXISTS \\\"public\\\".\\\"i\\\";\","
        "   \"check\": \"unused_index\", \"object\": \"public.<script>x\"}],"
        " \"tables\": {\"largest\": [{\"schema\": \"public\", \"table\": \"<script>x\\n\","
        "   \"total_bytes\": 8192, \"table_bytes\": 8192, \"index_bytes\": 0,"
        "   \"toast_bytes\": 0, \"rows\": 1}]},"
        " \"skipped\": [{\"check\": \"bloat_exact\", \"reason\": \"no pgstattuple\"}]}",
        0, &e);
    assert_non_null(doc);
    return doc;
}

static void html_is_one_page_with_every_name_escaped(void **state)
{
    json_t *doc = small_doc();
    char *html = rendered(report_render_html, doc);
    assert_non_null(strstr(html, "<!DOCTYPE html>"));
    assert_non_null(strstr(html, "<html"));
    assert_non_null(strstr(html, "</html>"));
    assert_null(strstr(html, "<script"));
    assert_non_null(strstr(html, "&lt;script&gt;x"));
    assert_non_null(strstr(html, "class=\"sev warning\""));
    assert_null(strstr(html, "http://")); /* nothing external */
    assert_null(strstr(html, "https://"));
    free(html);
    json_decref(doc);
}

static void text_shows_score_recommendations_and_clean_names(void **state)
{
    json_t *doc = small_doc();
    char *text = rendered(report_render_text, doc);
    assert_non_null(strstr(text, "Health score: 88/100 (bloat -12.0)"));
    assert_non_null(strstr(text, "WARNING  [indexes] Index i on public.\"<script>x\" is unused"));
    assert_non_null(strstr(text, "public.<script>x?"));
    assert_non_null(strstr(text, "bloat_exact: no pgstattuple"));
    free(text);
    json_decref(doc);
}

static void renderers_survive_an_empty_or_odd_document(void **state)
{
    json_error_t e;
    const char *docs[] = {"{}", "{\"tables\": 5, \"indexes\": [], \"recommendations\": {},"
                                " \"database\": \"x\", \"cache\": {\"heap\": 1}}"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        json_t *doc = json_loads(docs[i], 0, &e);
        assert_non_null(doc);
        free(rendered(report_render_text, doc));
        char *html = rendered(report_render_html, doc);
        assert_non_null(strstr(html, "</html>"));
        free(html);
        json_decref(doc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(html_escape_replaces_the_five_special_characters),
        cmocka_unit_test(text_clean_replaces_control_characters_and_truncates),
        cmocka_unit_test(html_is_one_page_with_every_name_escaped),
        cmocka_unit_test(text_shows_score_recommendations_and_clean_names),
        cmocka_unit_test(renderers_survive_an_empty_or_odd_document),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
