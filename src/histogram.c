/*
 * histogram.c
 *    Log-linear latency histograms; see histogram.h for the layout and the error bound.
 *
 * Bucket index of a value v (clamped to HISTOGRAM_MAX_US): with shift = the number of bits of
 * v above the top 7 (0 when v < 128), the index is (shift << 6) + (v >> shift). Below 128 that
 * is v itself; from 128 up, v >> shift lies in [64, 128), so every power of two adds 64
 * buckets after the 128 of the exact range, and the widest bucket, 2^shift, is at most 1/64
 * of the smallest value in it, 64 << shift.
 */
#include "histogram.h"

#include <assert.h>

/* The owner thread stores, any thread loads: relaxed atomics, no locked instructions. */
#define LOAD(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

#define SUB_COUNT (1 << HISTOGRAM_SUB_BITS)           /* buckets per power of two: 64 */
#define EXACT_TOP (UINT64_C(2) << HISTOGRAM_SUB_BITS) /* values below have own buckets: 128 */

_Static_assert(HISTOGRAM_BUCKETS == 1728, "1728 buckets, as the header comment says");
_Static_assert(sizeof(histogram_t) == 6944, "6944 bytes, as the header comment says");

static inline int bucket_of(uint64_t v)
{
    if (v > HISTOGRAM_MAX_US)
        v = HISTOGRAM_MAX_US;
    /* 63 - clz is the top bit; the top 7 bits stay, so shift = top bit - 6, at least 0. */
    int shift = 63 - HISTOGRAM_SUB_BITS - __builtin_clzll(v | (EXACT_TOP - 1));
    return (shift << HISTOGRAM_SUB_BITS) + (int)(v >> shift);
}

int histogram_bucket_index(uint64_t value_us)
{
    return bucket_of(value_us);
}

void histogram_bucket_range(int index, uint64_t *lowest_us, uint64_t *highest_us)
{
    assert(index >= 0 && index < HISTOGRAM_BUCKETS);
    if (index < SUB_COUNT) {
        *lowest_us = *highest_us = (uint64_t)index;
        return;
    }
    int shift = (index >> HISTOGRAM_SUB_BITS) - 1;
    uint64_t top7 = (uint64_t)(SUB_COUNT + (index & (SUB_COUNT - 1)));
    *lowest_us = top7 << shift;
    *highest_us = *lowest_us + (UINT64_C(1) << shift) - 1;
}

/* The value a percentile in bucket index reads as: its middle, rounded down. */
static uint64_t bucket_middle(int index)
{
    uint64_t lowest, highest;
    histogram_bucket_range(index, &lowest, &highest);
    return lowest + (highest - lowest) / 2;
}

static inline histogram_count_t saturating_add(histogram_count_t a, histogram_count_t b)
{
    histogram_count_t s = a + b;
    return s < a ? HISTOGRAM_COUNT_MAX : s;
}

void histogram_init(histogram_t *h)
{
    histogram_reset(h);
}

void histogram_reset(histogram_t *h)
{
    STORE(&h->count, 0);
    STORE(&h->sum_us, 0);
    STORE(&h->min_us, 0);
    STORE(&h->max_us, 0);
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++)
        STORE(&h->buckets[i], 0);
}

void histogram_record(histogram_t *h, uint64_t value_us)
{
    /* min and max first: a reader that sees the new counter has them in practice (the
     * stores are relaxed, so nothing promises it), and clamps its percentile to them. */
    uint64_t n = LOAD(&h->count);
    if (n == 0 || value_us < LOAD(&h->min_us))
        STORE(&h->min_us, value_us);
    if (value_us > LOAD(&h->max_us))
        STORE(&h->max_us, value_us);

    histogram_count_t *counter = &h->buckets[bucket_of(value_us)];
    histogram_count_t c = LOAD(counter);
    STORE(counter, c + (c != HISTOGRAM_COUNT_MAX));
    STORE(&h->sum_us, LOAD(&h->sum_us) + value_us);
    STORE(&h->count, n + 1);
}

void histogram_merge(histogram_t *into, const histogram_t *from)
{
    uint64_t from_count = LOAD(&from->count);
    uint64_t into_count = LOAD(&into->count);

    for (int i = 0; i < HISTOGRAM_BUCKETS; i++) {
        histogram_count_t c = LOAD(&from->buckets[i]);
        if (c != 0)
            STORE(&into->buckets[i], saturating_add(LOAD(&into->buckets[i]), c));
    }
    /* An empty from has no min and max; an empty into has none yet. */
    if (from_count != 0) {
        uint64_t min = LOAD(&from->min_us);
        uint64_t max = LOAD(&from->max_us);
        if (into_count == 0 || min < LOAD(&into->min_us))
            STORE(&into->min_us, min);
        if (max > LOAD(&into->max_us))
            STORE(&into->max_us, max);
    }
    STORE(&into->sum_us, LOAD(&into->sum_us) + LOAD(&from->sum_us));
    STORE(&into->count, into_count + from_count);
}

uint64_t histogram_percentile(const histogram_t *h, double p)
{
    /* The buckets, not count, give the total: they agree with themselves even when a record
     * races this read or a counter has saturated. */
    uint64_t total = 0;
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++)
        total += LOAD(&h->buckets[i]);
    if (total == 0)
        return 0;

    uint64_t min = LOAD(&h->min_us);
    uint64_t max = LOAD(&h->max_us);
    if (!(p > 0)) /* also NaN */
        return min;
    if (p >= 100)
        return max;

    /* Nearest rank, ceil(p / 100 * total), without libm; multiplying first keeps it exact
     * for the usual p and totals. */
    double r = p * (double)total / 100.0;
    uint64_t rank;
    if (r >= (double)total) {
        rank = total;
    } else {
        rank = (uint64_t)r;
        if ((double)rank < r)
            rank++;
    }
    if (rank <= 1)
        return min;
    if (rank >= total)
        return max;

    uint64_t seen = 0;
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++) {
        seen += LOAD(&h->buckets[i]);
        if (seen >= rank) {
            uint64_t v = bucket_middle(i);
            return v < min ? min : v > max ? max : v;
        }
    }
    return max; /* not reached: seen ends at total */
}

void histogram_cumulative(const histogram_t *h, const uint64_t *bounds_us, size_t n,
                          uint64_t *out_counts)
{
    uint64_t seen = 0;
    int next = 0; /* first bucket not yet in seen */
    for (size_t i = 0; i < n; i++) {
        assert(i == 0 || bounds_us[i] >= bounds_us[i - 1]);
        int last = bucket_of(bounds_us[i]);
        for (; next <= last; next++)
            seen += LOAD(&h->buckets[next]);
        out_counts[i] = seen;
    }
}
