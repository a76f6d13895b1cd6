/*
 * test_histogram.c
 *    Unit tests of histogram: bucket geometry, the 1/128 error bound at both ends of every
 *    bucket, percentiles of a million uniform, exponential and log-normal values against the
 *    exact ones from a sorted copy, exact count/sum/min/max, merge, clamping, saturation and
 *    cumulative counts for Prometheus.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "histogram.h"

#include <stdlib.h>
#include <string.h>

#define SAMPLES 1000000

/* ---- deterministic random values, without libm ---- */

/* splitmix64: the same numbers on every libc. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]. */
static double next_unit(uint64_t *state)
{
    return (double)((next_random(state) >> 11) + 1) / 9007199254740992.0;
}

/* Natural logarithm of x > 0 (normal doubles): exponent times ln 2, plus the logarithm of the
 * mantissa m in [1, 2) from 2 atanh((m - 1) / (m + 1)), whose series converges by 1/9 a term. */
static double log_of(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int e = (int)((bits >> 52) & 0x7ff) - 1023;
    bits = (bits & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1023) << 52);
    double m;
    memcpy(&m, &bits, sizeof m);
    double t = (m - 1) / (m + 1), term = t, sum = 0;
    for (int k = 1; k < 40; k += 2) {
        sum += term / k;
        term *= t * t;
    }
    return e * 0.6931471805599453 + 2 * sum;
}

/* e^y for |y| < 700: 2^k times e^r with |r| <= ln 2 / 2, r by its Taylor series. */
static double exp_of(double y)
{
    int k = (int)(y / 0.6931471805599453 + (y < 0 ? -0.5 : 0.5));
    double r = y - k * 0.6931471805599453, term = 1, sum = 1;
    for (int i = 1; i < 25; i++) {
        term *= r / i;
        sum += term;
    }
    uint64_t bits = (uint64_t)(k + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return sum * scale;
}

static uint64_t uniform_us(uint64_t *state)
{
    return 1 + next_random(state) % 10000000; /* 1 us .. 10 s */
}

static uint64_t exponential_us(uint64_t *state)
{
    return (uint64_t)(-2000.0 * log_of(next_unit(state))); /* mean 2 ms */
}

/* Median 1 ms, sigma 2: from microseconds to minutes. The normal variate is the sum of twelve
 * uniforms minus 6, close enough for a test of a histogram. */
static uint64_t log_normal_us(uint64_t *state)
{
    double z = -6;
    for (int i = 0; i < 12; i++)
        z += next_unit(state);
    return (uint64_t)exp_of(6.907755278982137 + 2 * z);
}

static uint64_t *random_values(uint64_t (*draw)(uint64_t *), uint64_t seed)
{
    uint64_t *v = malloc(SAMPLES * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < SAMPLES; i++)
        v[i] = draw(&seed);
    return v;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Exact nearest-rank percentile p = tenths / 10 of sorted[0..n), in integers. */
static uint64_t exact_percentile(const uint64_t *sorted, size_t n, unsigned tenths)
{
    uint64_t rank = ((uint64_t)tenths * n + 999) / 1000;
    return sorted[rank == 0 ? 0 : rank - 1];
}

static uint64_t distance(uint64_t a, uint64_t b)
{
    return a > b ? a - b : b - a;
}

/*
 * Records n values, checks count, sum, min and max exactly, then every percentile from 0 to
 * 100 by tenths against the exact one: within 1/128 (the documented bound), which for P50,
 * P95, P99 and P99.9 is the issue's 1 %.
 */
static void check_percentiles(uint64_t *values, size_t n)
{
    histogram_t h = {0};
    uint64_t sum = 0, min = UINT64_MAX, max = 0;
    for (size_t i = 0; i < n; i++) {
        histogram_record(&h, values[i]);
        sum += values[i];
        min = values[i] < min ? values[i] : min;
        max = values[i] > max ? values[i] : max;
    }
    assert_int_equal(h.count, n);
    assert_int_equal(h.sum_us, sum);
    assert_int_equal(h.min_us, min);
    assert_int_equal(h.max_us, max);

    qsort(values, n, sizeof *values, compare_u64);
    assert_int_equal(histogram_percentile(&h, 0), values[0]);
    assert_int_equal(histogram_percentile(&h, 100), values[n - 1]);
    for (unsigned tenths = 0; tenths <= 1000; tenths++) {
        uint64_t exact = exact_percentile(values, n, tenths);
        uint64_t got = histogram_percentile(&h, tenths / 10.0);
        if (distance(got, exact) * 128 > exact)
            fail_msg("P%.1f: got %llu, exact %llu", tenths / 10.0, (unsigned long long)got,
                     (unsigned long long)exact);
    }
    static const unsigned issue_tenths[] = {500, 950, 990, 999};
    for (size_t i = 0; i < sizeof issue_tenths / sizeof issue_tenths[0]; i++) {
        uint64_t exact = exact_percentile(values, n, issue_tenths[i]);
        uint64_t got = histogram_percentile(&h, issue_tenths[i] / 10.0);
        assert_true(distance(got, exact) * 100 <= exact);
    }
}

/* ---- tests ---- */

static void buckets_tile_the_range_and_are_at_most_one_64th_of_their_values(void **state)
{
    uint64_t expected_lowest = 0;
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++) {
        uint64_t lowest, highest;
        histogram_bucket_range(i, &lowest, &highest);
        assert_int_equal(lowest, expected_lowest);
        assert_true(highest >= lowest);
        assert_int_equal(histogram_bucket_index(lowest), i);
        assert_int_equal(histogram_bucket_index(highest), i);
        if (lowest < 128)
            assert_int_equal(highest, lowest);
        else
            assert_true((highest - lowest + 1) * 64 <= lowest);
        expected_lowest = highest + 1;
    }
    assert_int_equal(expected_lowest - 1, HISTOGRAM_MAX_US);
    assert_true(HISTOGRAM_MAX_US >= UINT64_C(3600000000)); /* an hour */
    assert_int_equal(histogram_bucket_index(HISTOGRAM_MAX_US + 1), HISTOGRAM_BUCKETS - 1);
    assert_int_equal(histogram_bucket_index(UINT64_MAX), HISTOGRAM_BUCKETS - 1);
}

/* The worst cases of the bound: a value at either end of its bucket, read back as a median
 * that min and max do not clamp. */
static void percentile_is_within_one_128th_at_both_ends_of_every_bucket(void **state)
{
    histogram_t h;
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++) {
        uint64_t ends[2];
        histogram_bucket_range(i, &ends[0], &ends[1]);
        for (int e = 0; e < 2; e++) {
            histogram_init(&h);
            histogram_record(&h, 0);
            histogram_record(&h, ends[e]);
            histogram_record(&h, ends[e]);
            histogram_record(&h, UINT64_MAX);
            uint64_t got = histogram_percentile(&h, 50);
            assert_int_equal(histogram_bucket_index(got), i);
            assert_true(distance(got, ends[e]) * 128 <= ends[e]);
        }
    }
}

static void empty_histogram_reads_zero_everywhere(void **state)
{
    histogram_t h, zero = {0};
    memset(&h, 0xa5, sizeof h);
    histogram_init(&h);
    assert_memory_equal(&h, &zero, sizeof h);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.min_us, 0);
    assert_int_equal(h.max_us, 0);
    assert_int_equal(histogram_percentile(&h, 0), 0);
    assert_int_equal(histogram_percentile(&h, 50), 0);
    assert_int_equal(histogram_percentile(&h, 100), 0);
    uint64_t bounds[] = {0, 1000, UINT64_MAX}, out[3] = {9, 9, 9};
    histogram_cumulative(&h, bounds, 3, out);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 0);
    assert_int_equal(out[2], 0);
}

static void single_value_is_every_percentile_exactly(void **state)
{
    histogram_t h = {0};
    histogram_record(&h, 12345); /* in a bucket 64 wide */
    assert_int_equal(h.count, 1);
    assert_int_equal(h.sum_us, 12345);
    assert_int_equal(h.min_us, 12345);
    assert_int_equal(h.max_us, 12345);
    assert_int_equal(h.buckets[histogram_bucket_index(12345)], 1);
    assert_int_equal(histogram_percentile(&h, 0), 12345);
    assert_int_equal(histogram_percentile(&h, 50), 12345);
    assert_int_equal(histogram_percentile(&h, 99.9), 12345);
    assert_int_equal(histogram_percentile(&h, 100), 12345);
}

static void small_values_give_exact_nearest_rank_percentiles(void **state)
{
    /* 0..99, ten times each: below 128 every value has its own bucket. */
    uint64_t values[1000];
    histogram_t h = {0};
    for (int i = 0; i < 1000; i++) {
        values[i] = (uint64_t)(i % 100);
        histogram_record(&h, values[i]);
    }
    qsort(values, 1000, sizeof *values, compare_u64);
    for (unsigned tenths = 0; tenths <= 1000; tenths++)
        assert_int_equal(histogram_percentile(&h, tenths / 10.0),
                         exact_percentile(values, 1000, tenths));
}

static void percentile_outside_zero_to_hundred_reads_as_min_or_max(void **state)
{
    histogram_t h = {0};
    histogram_record(&h, 20);
    histogram_record(&h, 10);
    histogram_record(&h, 30);
    assert_int_equal(histogram_percentile(&h, -5), 10);
    assert_int_equal(histogram_percentile(&h, 0), 10);
    assert_int_equal(histogram_percentile(&h, __builtin_nan("")), 10);
    assert_int_equal(histogram_percentile(&h, 33.3), 10);
    assert_int_equal(histogram_percentile(&h, 34), 20);
    assert_int_equal(histogram_percentile(&h, 50), 20);
    assert_int_equal(histogram_percentile(&h, 66.7), 30);
    assert_int_equal(histogram_percentile(&h, 100), 30);
    assert_int_equal(histogram_percentile(&h, 150), 30);
}

static void uniform_percentiles_are_within_bound(void **state)
{
    uint64_t *v = random_values(uniform_us, 1);
    check_percentiles(v, SAMPLES);
    free(v);
}

static void exponential_percentiles_are_within_bound(void **state)
{
    uint64_t *v = random_values(exponential_us, 2);
    check_percentiles(v, SAMPLES);
    free(v);
}

static void log_normal_percentiles_are_within_bound(void **state)
{
    uint64_t *v = random_values(log_normal_us, 3);
    check_percentiles(v, SAMPLES);
    free(v);
}

static void merge_equals_recording_everything_into_one(void **state)
{
    uint64_t *v = random_values(log_normal_us, 4);
    histogram_t *all = calloc(1, sizeof *all);
    histogram_t *worker = calloc(3, sizeof *worker);
    histogram_t *merged = calloc(1, sizeof *merged);
    assert_non_null(all);
    assert_non_null(worker);
    assert_non_null(merged);
    for (size_t i = 0; i < SAMPLES; i++) {
        histogram_record(all, v[i]);
        histogram_record(&worker[i % 2], v[i]); /* worker[2] stays empty */
    }
    histogram_merge(merged, &worker[2]);
    histogram_merge(merged, &worker[0]);
    histogram_merge(merged, &worker[2]);
    histogram_merge(merged, &worker[1]);
    assert_int_equal(merged->count, all->count);
    assert_int_equal(merged->sum_us, all->sum_us);
    assert_int_equal(merged->min_us, all->min_us);
    assert_int_equal(merged->max_us, all->max_us);
    assert_memory_equal(merged->buckets, all->buckets, sizeof all->buckets);
    free(merged);
    free(worker);
    free(all);
    free(v);
}

static void merge_keeps_the_smaller_min_and_the_larger_max(void **state)
{
    histogram_t a = {0}, b = {0};
    histogram_record(&a, 500);
    histogram_record(&a, 700);
    histogram_record(&b, 50);
    histogram_record(&b, 600);
    histogram_merge(&a, &b);
    assert_int_equal(a.count, 4);
    assert_int_equal(a.sum_us, 1850);
    assert_int_equal(a.min_us, 50);
    assert_int_equal(a.max_us, 700);
    assert_int_equal(histogram_percentile(&a, 0), 50);
    assert_int_equal(histogram_percentile(&a, 100), 700);
}

static void zero_and_one_have_their_own_buckets(void **state)
{
    histogram_t h = {0};
    histogram_record(&h, 0);
    assert_int_equal(h.buckets[0], 1);
    assert_int_equal(h.count, 1);
    assert_int_equal(h.min_us, 0);
    assert_int_equal(h.max_us, 0);
    assert_int_equal(histogram_percentile(&h, 50), 0);
    histogram_record(&h, 1);
    assert_int_equal(h.buckets[1], 1);
    assert_int_equal(h.min_us, 0);
    assert_int_equal(h.max_us, 1);
    assert_int_equal(h.sum_us, 1);
    assert_int_equal(histogram_percentile(&h, 50), 0);
    assert_int_equal(histogram_percentile(&h, 51), 1);
}

static void huge_values_count_in_the_top_bucket_and_stay_exact_in_max_and_sum(void **state)
{
    const uint64_t ten_hours = UINT64_C(36000000000);
    histogram_t h = {0};
    histogram_record(&h, ten_hours);
    assert_int_equal(h.buckets[HISTOGRAM_BUCKETS - 1], 1);
    assert_int_equal(h.max_us, ten_hours);
    assert_int_equal(h.sum_us, ten_hours);
    assert_int_equal(histogram_percentile(&h, 50), ten_hours); /* min = max = the value */

    histogram_record(&h, 100);
    histogram_record(&h, ten_hours);
    assert_int_equal(h.count, 3);
    assert_int_equal(h.sum_us, 2 * ten_hours + 100);
    /* The median is a clamped value: it reads as the middle of the top bucket. */
    uint64_t lowest, highest;
    histogram_bucket_range(HISTOGRAM_BUCKETS - 1, &lowest, &highest);
    assert_int_equal(highest, HISTOGRAM_MAX_US);
    assert_int_equal(histogram_percentile(&h, 50), lowest + (highest - lowest) / 2);
    assert_int_equal(histogram_percentile(&h, 0), 100);
    assert_int_equal(histogram_percentile(&h, 100), ten_hours);

    histogram_t m = {0};
    histogram_record(&m, UINT64_MAX);
    assert_int_equal(m.buckets[HISTOGRAM_BUCKETS - 1], 1);
    assert_int_equal(m.max_us, UINT64_MAX);
    assert_int_equal(histogram_percentile(&m, 99), UINT64_MAX);
}

static void full_counter_saturates_instead_of_wrapping(void **state)
{
    histogram_t h = {0}, other = {0};
    int i = histogram_bucket_index(5000);
    h.buckets[i] = HISTOGRAM_COUNT_MAX - 1;
    histogram_record(&h, 5000);
    assert_int_equal(h.buckets[i], HISTOGRAM_COUNT_MAX);
    histogram_record(&h, 5000);
    assert_int_equal(h.buckets[i], HISTOGRAM_COUNT_MAX);
    assert_int_equal(h.count, 2);
    assert_int_equal(h.sum_us, 10000);

    histogram_record(&other, 5000);
    other.buckets[i] = HISTOGRAM_COUNT_MAX - 1;
    histogram_merge(&other, &h);
    assert_int_equal(other.buckets[i], HISTOGRAM_COUNT_MAX);
}

static void reset_empties_a_used_histogram(void **state)
{
    histogram_t h = {0}, zero = {0};
    histogram_record(&h, 7);
    histogram_record(&h, 7000000);
    histogram_reset(&h);
    assert_memory_equal(&h, &zero, sizeof h);
    histogram_record(&h, 900);
    assert_int_equal(h.min_us, 900);
    assert_int_equal(h.max_us, 900);
}

static const uint64_t prometheus_bounds[] = {1000,   5000,    10000,   50000,     100000,
                                             500000, 1000000, 5000000, UINT64_MAX};
#define PROMETHEUS_BOUNDS (sizeof prometheus_bounds / sizeof prometheus_bounds[0])

static void cumulative_counts_values_on_bounds_and_well_inside_buckets_exactly(void **state)
{
    static const uint64_t values[] = {500,    1000,    3000,    5000,    7000,   10000,
                                      20000,  50000,   70000,   100000,  200000, 500000,
                                      700000, 1000000, 2000000, 5000000, 9000000};
    static const uint64_t expected[PROMETHEUS_BOUNDS] = {2, 4, 6, 8, 10, 12, 14, 16, 17};
    histogram_t h = {0};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        histogram_record(&h, values[i]);
    uint64_t out[PROMETHEUS_BOUNDS];
    histogram_cumulative(&h, prometheus_bounds, PROMETHEUS_BOUNDS, out);
    assert_memory_equal(out, expected, sizeof expected);
}

static void cumulative_takes_values_above_a_bound_only_within_its_bucket(void **state)
{
    uint64_t bound = 5000, lowest, highest;
    histogram_bucket_range(histogram_bucket_index(bound), &lowest, &highest);
    assert_true(lowest <= bound && bound < highest);
    assert_true(highest * 64 < bound * 65);

    histogram_t h = {0};
    histogram_record(&h, highest);     /* above the bound, in its bucket: counted */
    histogram_record(&h, highest + 1); /* the next bucket: not counted */
    uint64_t out;
    histogram_cumulative(&h, &bound, 1, &out);
    assert_int_equal(out, 1);
}

static void cumulative_of_random_values_matches_bucket_granularity_exactly(void **state)
{
    uint64_t *v = random_values(log_normal_us, 5);
    histogram_t *h = calloc(1, sizeof *h);
    assert_non_null(h);
    for (size_t i = 0; i < SAMPLES; i++)
        histogram_record(h, v[i]);
    uint64_t out[PROMETHEUS_BOUNDS];
    histogram_cumulative(h, prometheus_bounds, PROMETHEUS_BOUNDS, out);
    for (size_t b = 0; b < PROMETHEUS_BOUNDS; b++) {
        uint64_t lowest, highest, expected = 0;
        histogram_bucket_range(histogram_bucket_index(prometheus_bounds[b]), &lowest, &highest);
        if (b == PROMETHEUS_BOUNDS - 1)
            highest = UINT64_MAX; /* the top bucket takes everything above the range */
        for (size_t i = 0; i < SAMPLES; i++)
            expected += v[i] <= highest;
        assert_int_equal(out[b], expected);
    }
    assert_int_equal(out[PROMETHEUS_BOUNDS - 1], SAMPLES);
    free(h);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buckets_tile_the_range_and_are_at_most_one_64th_of_their_values),
        cmocka_unit_test(percentile_is_within_one_128th_at_both_ends_of_every_bucket),
        cmocka_unit_test(empty_histogram_reads_zero_everywhere),
        cmocka_unit_test(single_value_is_every_percentile_exactly),
        cmocka_unit_test(small_values_give_exact_nearest_rank_percentiles),
        cmocka_unit_test(percentile_outside_zero_to_hundred_reads_as_min_or_max),
        cmocka_unit_test(uniform_percentiles_are_within_bound),
        cmocka_unit_test(exponential_percentiles_are_within_bound),
        cmocka_unit_test(log_normal_percentiles_are_within_bound),
        cmocka_unit_test(merge_equals_recording_everything_into_one),
        cmocka_unit_test(merge_keeps_the_smaller_min_and_the_larger_max),
        cmocka_unit_test(zero_and_one_have_their_own_buckets),
        cmocka_unit_test(huge_values_count_in_the_top_bucket_and_stay_exact_in_max_and_sum),
        cmocka_unit_test(full_counter_saturates_instead_of_wrapping),
        cmocka_unit_test(reset_empties_a_used_histogram),
        cmocka_unit_test(cumulative_counts_values_on_bounds_and_well_inside_buckets_exactly),
        cmocka_unit_test(cumulative_takes_values_above_a_bound_only_within_its_bucket),
        cmocka_unit_test(cumulative_of_random_values_matches_bucket_granularity_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
