/*
 * test_health.c
 *    Unit tests of health.c, the judgments behind pgturbo report: the cache-hit assessment,
 *    the health score formula and its caps, duplicate and redundant indexes, the bloat
 *    estimate, the VACUUM/ANALYZE and sequence rules, sizes and severity names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- cache hit ratio ---- */

static void cache_assessment_boundaries_are_99_95_and_90(void **state)
{
    assert_string_equal(health_cache_assessment(100), "excellent");
    assert_string_equal(health_cache_assessment(99), "excellent");
    assert_string_equal(health_cache_assessment(98.99), "good");
    assert_string_equal(health_cache_assessment(95), "good");
    assert_string_equal(health_cache_assessment(94.99), "fair");
    assert_string_equal(health_cache_assessment(90), "fair");
    assert_string_equal(health_cache_assessment(89.99), "poor");
    assert_string_equal(health_cache_assessment(0), "poor");
    assert_string_equal(health_cache_assessment(-1), "no data");
}

static void hit_percent_is_unknown_without_blocks(void **state)
{
    assert_true(health_hit_percent(0, 0) < 0);
    assert_float_equal(health_hit_percent(99, 1), 99.0, 1e-9);
    assert_float_equal(health_hit_percent(0, 5), 0.0, 1e-9);
}

/* ---- score ---- */

static health_inputs_t unknown_inputs(void)
{
    return (health_inputs_t){
        .cache_hit_percent = -1, .connection_percent = -1, .slow_query_ratio = -1};
}

static double penalty_of(const health_score_t *s, const char *factor)
{
    for (int i = 0; i < HEALTH_FACTORS; i++)
        if (strcmp(s->penalties[i].factor, factor) == 0)
            return s->penalties[i].penalty;
    fail_msg("no factor %s", factor);
    return -1;
}

static void score_is_100_when_nothing_is_known_or_wrong(void **state)
{
    health_inputs_t in = unknown_inputs();
    health_score_t s;
    health_score(&in, &s);
    assert_int_equal(s.score, 100);
    for (int i = 0; i < HEALTH_FACTORS; i++)
        assert_float_equal(s.penalties[i].penalty, 0, 1e-9);
    in.cache_hit_percent = 99.5;
    in.connection_percent = 70;
    in.slow_query_ratio = 0;
    health_score(&in, &s);
    assert_int_equal(s.score, 100);
}

static void score_follows_the_documented_formula(void **state)
{
    health_inputs_t in = {
        .cache_hit_percent = 95,  /* (99 - 95) x 2.5 = 10 */
        .connection_percent = 85, /* (85 - 70) x 2/3 = 10 */
        .slow_query_ratio = 0.01, /* x 400 = 4 */
        .wasted_bytes = 100,      /* 100 / 1000 x 30 = 3 */
        .relation_bytes = 1000,
        .unused_index_bytes = 50, /* 50 / 1000 x 20 = 1, plus 2 x 1 */
        .index_bytes = 1000,
        .bad_indexes = 1,
        .tables_needing_vacuum = 1, /* 2 + 1 */
        .tables_needing_analyze = 1,
        .problem_sessions = 1, /* 5 */
        .fk_without_index = 1, /* 2 + 3 */
        .sequences_warning = 1,
        .lagging_replicas = 0,
    };
    health_score_t s;
    health_score(&in, &s);
    assert_float_equal(penalty_of(&s, "cache_hit_ratio"), 10, 1e-9);
    assert_float_equal(penalty_of(&s, "connections"), 10, 1e-9);
    assert_float_equal(penalty_of(&s, "slow_queries"), 4, 1e-9);
    assert_float_equal(penalty_of(&s, "bloat"), 3, 1e-9);
    assert_float_equal(penalty_of(&s, "indexes"), 3, 1e-9);
    assert_float_equal(penalty_of(&s, "maintenance"), 3, 1e-9);
    assert_float_equal(penalty_of(&s, "sessions"), 5, 1e-9);
    assert_float_equal(penalty_of(&s, "schema"), 5, 1e-9);
    assert_float_equal(penalty_of(&s, "replication"), 0, 1e-9);
    assert_int_equal(s.score, 100 - 43);
}

static void each_penalty_stops_at_its_cap_and_the_score_at_zero(void **state)
{
    health_inputs_t in = {
        .cache_hit_percent = 0,
        .connection_percent = 150,
        .slow_query_ratio = 1,
        .wasted_bytes = 1000,
        .relation_bytes = 1000,
        .unused_index_bytes = 1000,
        .index_bytes = 1000,
        .bad_indexes = 50,
        .tables_needing_vacuum = 50,
        .problem_sessions = 50,
        .fk_without_index = 50,
        .sequences_critical = 5,
        .lagging_replicas = 5,
    };
    health_score_t s;
    health_score(&in, &s);
    static const struct {
        const char *factor;
        double cap;
    } caps[] = {{"cache_hit_ratio", 25}, {"connections", 20}, {"slow_queries", 20},
                {"bloat", 15},           {"indexes", 10},     {"maintenance", 10},
                {"sessions", 15},        {"schema", 15},      {"replication", 10}};
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        assert_float_equal(penalty_of(&s, caps[i].factor), caps[i].cap, 1e-9);
        assert_float_equal(s.penalties[i].max, caps[i].cap, 1e-9);
    }
    assert_int_equal(s.score, 0);
}

static void score_rounds_to_the_nearest_integer(void **state)
{
    health_inputs_t in = unknown_inputs();
    in.cache_hit_percent = 98.5; /* 1.25 */
    health_score_t s;
    health_score(&in, &s);
    assert_int_equal(s.score, 99);
    in.cache_hit_percent = 98.7; /* 0.75 */
    health_score(&in, &s);
    assert_int_equal(s.score, 99);
    in.cache_hit_percent = 98.9; /* 0.25 */
    health_score(&in, &s);
    assert_int_equal(s.score, 100);
}

/* ---- indexes ---- */

static health_index_t btree(unsigned table, const char *keys)
{
    health_index_t x = {.table = table, .am = "btree", .valid = true};
    x.natts = x.nkeys = health_parse_vector(keys, x.keys, HEALTH_INDEX_MAX_KEYS);
    for (int k = 0; k < x.nkeys; k++) {
        x.opclasses[k] = 3124; /* int4_ops */
        x.collations[k] = 0;
        x.options[k] = 0;
    }
    return x;
}

static void parse_vector_reads_int2vector_text(void **state)
{
    long v[4];
    assert_int_equal(health_parse_vector("1 3 2", v, 4), 3);
    assert_int_equal(v[0], 1);
    assert_int_equal(v[1], 3);
    assert_int_equal(v[2], 2);
    assert_int_equal(health_parse_vector("", v, 4), 0);
    assert_int_equal(health_parse_vector("0", v, 4), 1);
    assert_int_equal(v[0], 0);
    assert_int_equal(health_parse_vector("1 x", v, 4), -1);
    assert_int_equal(health_parse_vector("1 2 3 4 5", v, 4), -1);
}

static void same_definition_is_a_duplicate_of_the_first(void **state)
{
    health_index_t idx[] = {btree(1, "2 3"), btree(1, "2 3"), btree(1, "2 3"), btree(2, "2 3")};
    int dup[4], cov[4];
    health_index_overlaps(idx, 4, dup, cov);
    assert_int_equal(dup[0], -1);
    assert_int_equal(dup[1], 0);
    assert_int_equal(dup[2], 0);
    assert_int_equal(dup[3], -1); /* another table */
    for (int i = 0; i < 4; i++)
        assert_int_equal(cov[i], -1);
}

static void duplicate_keeps_the_one_backing_a_constraint(void **state)
{
    health_index_t idx[] = {btree(1, "1"), btree(1, "1")};
    idx[0].unique = idx[1].unique = true;
    idx[1].constraint = true; /* the primary key, created second */
    int dup[2], cov[2];
    health_index_overlaps(idx, 2, dup, cov);
    assert_int_equal(dup[0], 1);
    assert_int_equal(dup[1], -1);
}

static void differences_that_make_indexes_distinct(void **state)
{
    health_index_t base = btree(1, "2 3");
    health_index_t other[6];
    for (int i = 0; i < 6; i++)
        other[i] = base;
    other[0].opclasses[1] = 3128; /* another operator class */
    other[1].options[0] = 3;      /* DESC NULLS FIRST */
    other[2].pred = "(x > 0)";    /* partial */
    other[3].unique = true;       /* enforces something */
    other[4].am = "hash";         /* another method */
    other[5].collations[0] = 950; /* another collation */
    for (int i = 0; i < 6; i++) {
        health_index_t pair[] = {base, other[i]};
        int dup[2], cov[2];
        health_index_overlaps(pair, 2, dup, cov);
        assert_int_equal(dup[0], -1);
        assert_int_equal(dup[1], -1);
    }
}

static void prefix_of_a_wider_btree_is_covered_by_the_widest(void **state)
{
    health_index_t idx[] = {btree(1, "2"), btree(1, "2 3"), btree(1, "2 3 4"), btree(1, "3")};
    int dup[4], cov[4];
    health_index_overlaps(idx, 4, dup, cov);
    assert_int_equal(cov[0], 2);
    assert_int_equal(cov[1], 2);
    assert_int_equal(cov[2], -1);
    assert_int_equal(cov[3], -1); /* 3 leads nothing */
    for (int i = 0; i < 4; i++)
        assert_int_equal(dup[i], -1);
}

static void plain_index_with_a_unique_twin_is_covered(void **state)
{
    health_index_t idx[] = {btree(1, "2"), btree(1, "2")};
    idx[1].unique = true;
    int dup[2], cov[2];
    health_index_overlaps(idx, 2, dup, cov);
    assert_int_equal(dup[0], -1);
    assert_int_equal(cov[0], 1);
    assert_int_equal(cov[1], -1);
}

static void indexes_that_are_never_redundant(void **state)
{
    health_index_t wide = btree(1, "2 3");
    health_index_t narrow[7];
    for (int i = 0; i < 7; i++)
        narrow[i] = btree(1, "2");
    narrow[0].unique = true;     /* enforces uniqueness of column 2 alone */
    narrow[1].constraint = true; /* backs a constraint */
    narrow[2].keys[0] = 0;       /* an expression */
    narrow[2].exprs = "lower(name)";
    narrow[3].natts = 2; /* INCLUDE (4) */
    narrow[3].keys[1] = 4;
    narrow[4].am = "hash";                   /* prefixes mean nothing to hash */
    narrow[5].pred = "(deleted_at IS NULL)"; /* partial, wide is not */
    narrow[6].options[0] = 3;                /* DESC where wide is ASC */
    for (int i = 0; i < 7; i++) {
        health_index_t pair[] = {narrow[i], wide};
        if (strcmp(pair[0].am, "hash") == 0)
            pair[1].am = "hash";
        int dup[2], cov[2];
        health_index_overlaps(pair, 2, dup, cov);
        assert_int_equal(cov[0], -1);
    }
}

static void invalid_indexes_take_no_part(void **state)
{
    health_index_t idx[] = {btree(1, "2"), btree(1, "2"), btree(1, "2 3")};
    idx[1].valid = false;
    idx[2].valid = false;
    int dup[3], cov[3];
    health_index_overlaps(idx, 3, dup, cov);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(dup[i], -1);
        assert_int_equal(cov[i], -1);
    }
}

static void a_duplicate_is_not_also_covered(void **state)
{
    health_index_t idx[] = {btree(1, "2"), btree(1, "2"), btree(1, "2 3")};
    int dup[3], cov[3];
    health_index_overlaps(idx, 3, dup, cov);
    assert_int_equal(dup[1], 0);
    assert_int_equal(cov[1], -1);
    assert_int_equal(cov[0], 2);
}

/* ---- bloat ---- */

static void table_bloat_is_pages_beyond_what_live_rows_need(void **state)
{
    /* Tuple: header 23 -> 24, data 100 -> 104, line pointer 4: 132 bytes; 8168 / 132 = 61
     * a page; 10000 rows need 164 pages. */
    health_table_stats_t t = {.pages = 200,
                              .tuples = 10000,
                              .block_size = 8192,
                              .fillfactor = 100,
                              .data_width = 100,
                              .natts = 3};
    assert_float_equal(health_table_bloat(&t), 36.0 * 8192, 1e-6);
    t.pages = 164;
    assert_float_equal(health_table_bloat(&t), 0, 1e-6);
    t.pages = 100; /* smaller than expected: no negative bloat */
    assert_float_equal(health_table_bloat(&t), 0, 1e-6);
    /* Fillfactor 50 leaves 4096 bytes free: 4072 / 132 = 30 a page, 334 pages. */
    t.fillfactor = 50;
    t.pages = 400;
    assert_float_equal(health_table_bloat(&t), 66.0 * 8192, 1e-6);
    /* Nulls in 9 columns: 23 + 2 bitmap bytes -> 32; 32 + 104 + 4 = 140, 58 a page, 173. */
    t.fillfactor = 100;
    t.natts = 9;
    t.has_nulls = true;
    t.pages = 200;
    assert_float_equal(health_table_bloat(&t), 27.0 * 8192, 1e-6);
}

static void table_bloat_is_unknown_before_analyze_and_all_pages_when_empty(void **state)
{
    health_table_stats_t t = {.pages = 50,
                              .tuples = -1,
                              .block_size = 8192,
                              .fillfactor = 100,
                              .data_width = 10,
                              .natts = 1};
    assert_true(health_table_bloat(&t) < 0);
    t.tuples = 0;
    assert_float_equal(health_table_bloat(&t), 50.0 * 8192, 1e-6);
}

static void btree_bloat_counts_leaves_inner_pages_and_the_metapage(void **state)
{
    /* Tuple: 8 + 8 -> 16, + 4 = 20 bytes; 8152 x 0.9 / 20 = 366 a leaf; 10000 entries: 28
     * leaves, one root, one metapage: 30 pages. */
    health_btree_stats_t b = {
        .pages = 60, .tuples = 10000, .block_size = 8192, .fillfactor = 90, .data_width = 8};
    assert_float_equal(health_btree_bloat(&b), 30.0 * 8192, 1e-6);
    b.pages = 30;
    assert_float_equal(health_btree_bloat(&b), 0, 1e-6);
    b.tuples = 0; /* an empty btree is a metapage and a root */
    b.pages = 2;
    assert_float_equal(health_btree_bloat(&b), 0, 1e-6);
    b.tuples = -1;
    assert_true(health_btree_bloat(&b) < 0);
}

/* ---- maintenance, sequences, sizes ---- */

static void vacuum_needs_1000_dead_rows_and_a_fifth(void **state)
{
    assert_true(health_needs_vacuum(4000, 1000));
    assert_false(health_needs_vacuum(4001, 1000));
    assert_false(health_needs_vacuum(10, 999));
    assert_true(health_needs_vacuum(0, 45000));
}

static void analyze_needs_1000_changed_rows_and_a_fifth_or_none_yet(void **state)
{
    assert_true(health_needs_analyze(1000, 0, false));
    assert_false(health_needs_analyze(999, 0, false));
    assert_true(health_needs_analyze(5000, 1000, true));
    assert_false(health_needs_analyze(5001, 1000, true));
    assert_false(health_needs_analyze(100, 999, true));
}

static void sequence_use_counts_from_the_start_in_its_direction(void **state)
{
    /* smallint sequence at 32000 of 1..32767 */
    assert_float_equal(health_sequence_used_percent(32000, true, 1, 32767, 1, 0),
                       31999.0 * 100 / 32766, 1e-6);
    /* a bigint sequence feeding an integer column: the column's limit counts */
    assert_float_equal(
        health_sequence_used_percent(2000000000, true, 1, 9223372036854775807.0L, 1, 2147483647),
        1999999999.0 * 100 / 2147483646, 1e-6);
    /* descending from -1 towards -32768 */
    assert_float_equal(health_sequence_used_percent(-16384, true, -32768, -1, -1, 0),
                       16383.0 * 100 / 32767, 1e-6);
    assert_float_equal(health_sequence_used_percent(0, false, 1, 100, 1, 0), 0, 1e-9);
    assert_float_equal(health_sequence_used_percent(100, true, 1, 100, 1, 0), 100, 1e-9);
}

static void sizes_read_like_pg_size_pretty(void **state)
{
    char out[32];
    health_format_bytes(0, out, sizeof(out));
    assert_string_equal(out, "0 bytes");
    health_format_bytes(1023, out, sizeof(out));
    assert_string_equal(out, "1023 bytes");
    health_format_bytes(1024, out, sizeof(out));
    assert_string_equal(out, "1.0 kB");
    health_format_bytes(1536, out, sizeof(out));
    assert_string_equal(out, "1.5 kB");
    health_format_bytes(10239, out, sizeof(out));
    assert_string_equal(out, "10 kB");
    health_format_bytes(245.0 * 1024 * 1024, out, sizeof(out));
    assert_string_equal(out, "245 MB");
    health_format_bytes(3.2 * 1024 * 1024 * 1024, out, sizeof(out));
    assert_string_equal(out, "3.2 GB");
}

static void severity_names(void **state)
{
    assert_string_equal(health_severity_name(HEALTH_SUCCESS), "success");
    assert_string_equal(health_severity_name(HEALTH_INFO), "info");
    assert_string_equal(health_severity_name(HEALTH_WARNING), "warning");
    assert_string_equal(health_severity_name(HEALTH_CRITICAL), "critical");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cache_assessment_boundaries_are_99_95_and_90),
        cmocka_unit_test(hit_percent_is_unknown_without_blocks),
        cmocka_unit_test(score_is_100_when_nothing_is_known_or_wrong),
        cmocka_unit_test(score_follows_the_documented_formula),
        cmocka_unit_test(each_penalty_stops_at_its_cap_and_the_score_at_zero),
        cmocka_unit_test(score_rounds_to_the_nearest_integer),
        cmocka_unit_test(parse_vector_reads_int2vector_text),
        cmocka_unit_test(same_definition_is_a_duplicate_of_the_first),
        cmocka_unit_test(duplicate_keeps_the_one_backing_a_constraint),
        cmocka_unit_test(differences_that_make_indexes_distinct),
        cmocka_unit_test(prefix_of_a_wider_btree_is_covered_by_the_widest),
        cmocka_unit_test(plain_index_with_a_unique_twin_is_covered),
        cmocka_unit_test(indexes_that_are_never_redundant),
        cmocka_unit_test(invalid_indexes_take_no_part),
        cmocka_unit_test(a_duplicate_is_not_also_covered),
        cmocka_unit_test(table_bloat_is_pages_beyond_what_live_rows_need),
        cmocka_unit_test(table_bloat_is_unknown_before_analyze_and_all_pages_when_empty),
        cmocka_unit_test(btree_bloat_counts_leaves_inner_pages_and_the_metapage),
        cmocka_unit_test(vacuum_needs_1000_dead_rows_and_a_fifth),
        cmocka_unit_test(analyze_needs_1000_changed_rows_and_a_fifth_or_none_yet),
        cmocka_unit_test(sequence_use_counts_from_the_start_in_its_direction),
        cmocka_unit_test(sizes_read_like_pg_size_pretty),
        cmocka_unit_test(severity_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
