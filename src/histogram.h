/*
 * histogram.h
 *    Latency histograms of microsecond values: fixed size, no allocation, a few integer
 *    operations per recorded value, percentiles within 1/128 of the exact value.
 *
 * Layout. Buckets are log-linear, as in HdrHistogram with 2 significant digits (its
 * "sub-bucket count" 128): values 0..127 each have a bucket of their own, and every power of
 * two above, [2^e, 2^(e+1)) for e = 7..31, is cut into 64 equal buckets of width 2^(e-6). A
 * value's bucket comes from one count-leading-zeros, a shift and an add; no floating point.
 * The range is 0 .. HISTOGRAM_MAX_US = 2^32 - 1 us (71 min 34 s); larger values are counted in
 * the top bucket, while sum_us and max_us keep them exactly.
 *
 * Error bound. No bucket is wider than 1/64 of its lowest value, and a percentile reads as
 * the middle of the bucket holding the value of that rank, clamped to [min_us, max_us]. So
 * |reported - exact| <= exact / 128 (0.78 %), and values below 128 us are exact; only a
 * percentile that falls among values above HISTOGRAM_MAX_US reads lower, as about 71 minutes.
 * The exact value is the nearest rank: with n values recorded, the smallest value v such that
 * at least ceil(p / 100 * n) of them are <= v.
 *
 * Size. 1728 counters of 32 bits and four 64-bit fields: sizeof(histogram_t) = 6944 bytes,
 * 139 MB for 10,000 fingerprints on 2 workers. 64-bit counters would double that; 128 buckets
 * per power of two (error 1/256) would double it again. A sparse layout (pages of buckets per
 * power of two, taken on first use) would save memory only by allocating on record or by
 * losing the bound once a fixed pool of pages runs out, so the layout stays dense: callers
 * keep the count down instead, by giving a worker histograms only for the fingerprints it
 * has seen and by evicting cold ones.
 *
 * Counters. A counter saturates at HISTOGRAM_COUNT_MAX instead of wrapping: 4.29 billion
 * values in one bucket, which at 100,000 values a second all in that bucket takes 12 hours,
 * and days with a realistic spread. Past that the percentiles lean away from the saturated
 * bucket (but never wrap to nonsense); count and sum_us stay exact. Histograms that live that
 * long should be reset, or switched to 64-bit counters by changing histogram_count_t.
 *
 * Threads. One thread records into a histogram (its worker); any other thread may read it at
 * the same time with histogram_merge(), histogram_percentile() or histogram_cumulative(). Every
 * field is written by that one thread with a relaxed atomic store and read with a relaxed
 * atomic load, so there is no data race and no locked instruction on the record path. A read
 * racing a record is not a snapshot: it may see the bucket of a value but not yet its count,
 * say; the reading functions go by the buckets and tolerate that. Readers merge each worker's
 * histogram into one of their own and compute from that.
 */
#ifndef PGTURBO_HISTOGRAM_H
#define PGTURBO_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

#define HISTOGRAM_SUB_BITS  6                         /* 64 buckets per power of two */
#define HISTOGRAM_MAX_US    ((UINT64_C(1) << 32) - 1) /* top of the range */
#define HISTOGRAM_BUCKETS   ((32 - HISTOGRAM_SUB_BITS + 1) << HISTOGRAM_SUB_BITS) /* 1728 */
#define HISTOGRAM_COUNT_MAX UINT32_MAX

typedef uint32_t histogram_count_t;

/* All zero is an empty histogram, so "histogram_t h = {0}" needs no histogram_init(). */
typedef struct histogram {
    uint64_t count;  /* values recorded */
    uint64_t sum_us; /* their sum, exact (wraps only past 2^64 us) */
    uint64_t min_us; /* smallest value, 0 while empty */
    uint64_t max_us; /* largest value, exact even above HISTOGRAM_MAX_US; 0 while empty */
    histogram_count_t buckets[HISTOGRAM_BUCKETS];
} histogram_t;

/* Makes h empty. */
void histogram_init(histogram_t *h);

/*
 * Counts one value. Only the thread that owns h calls this; it costs a count-leading-zeros, a
 * few shifts, adds and compares, and touches the header and one counter.
 */
void histogram_record(histogram_t *h, uint64_t value_us);

/*
 * Adds the values of from to into, bucket for bucket: the result is what recording all of
 * them into one histogram gives (counters saturate as in histogram_record). from may be
 * recorded into by its owner meanwhile; into belongs to the caller. Borrows both.
 */
void histogram_merge(histogram_t *into, const histogram_t *from);

/*
 * The p-th percentile, p in [0, 100]: within the error bound of the nearest-rank value, never
 * below min_us nor above max_us. p <= 0 (and NaN) gives min_us exactly, p >= 100 gives max_us
 * exactly, and so does any p whose rank is the first or the last value. 0 when h is empty.
 */
uint64_t histogram_percentile(const histogram_t *h, double p);

/* Makes h empty again. Only the owner calls it: a record racing a reset may be half kept. */
void histogram_reset(histogram_t *h);

/*
 * Cumulative counts for Prometheus-style "le" buckets: out_counts[i] = the number of values
 * v <= bounds_us[i], for n bounds in ascending order (equal ones allowed). The count goes by
 * buckets: it takes every value whose bucket is not above the bucket of the bound. So a value
 * on the bound counts, the count is exact for every value outside the bound's bucket, and it
 * also takes the values above the bound in the same bucket, all below bound * (1 + 1/64).
 * A bound >= HISTOGRAM_MAX_US takes everything: use UINT64_MAX as the last bound for the
 * "+Inf" bucket, which then agrees with the others even where count does not (a record in
 * flight, a saturated counter).
 */
void histogram_cumulative(const histogram_t *h, const uint64_t *bounds_us, size_t n,
                          uint64_t *out_counts);

/* The bucket value_us is counted in: 0 .. HISTOGRAM_BUCKETS - 1. */
int histogram_bucket_index(uint64_t value_us);

/* The lowest and highest value of bucket index; the top bucket also counts every value above
 * HISTOGRAM_MAX_US. */
void histogram_bucket_range(int index, uint64_t *lowest_us, uint64_t *highest_us);

#endif
