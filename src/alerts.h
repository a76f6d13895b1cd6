/*
 * alerts.h
 *    The alerts of seed 002, evaluated every few seconds by the daemon's main thread: a
 *    fingerprint whose P95 is over alert_p95_ms, a fingerprint whose error rate is over
 *    alert_error_rate percent (both over the statistics since start or the last reset, once a
 *    fingerprint has ALERTS_MIN_CALLS calls), and a pool with alert_waiting_clients or more
 *    clients waiting for a server, and a [cache] rule whose hit ratio since the start is under
 *    alert_cache_hit_ratio percent (once it had ALERTS_MIN_LOOKUPS lookups). Each alert is
 *    logged once when raised and once when cleared.
 */
#ifndef PGTURBO_ALERTS_H
#define PGTURBO_ALERTS_H

#include "config.h"

#include <jansson.h>

#define ALERTS_MIN_CALLS   20
#define ALERTS_MIN_LOOKUPS 100

/* Evaluates the rules now (not from a worker: it gathers from them). */
void alerts_evaluate(const config_t *cfg);

/* The active alerts (shape in inspect.h), a new JSON array; NULL when memory runs out. */
json_t *alerts_active(void);

/* Forgets every alert (at exit). */
void alerts_free(void);

#endif /* PGTURBO_ALERTS_H */
