/*
 * loopdetect.h
 *    N+1 detection within one scope (a transaction, or one request_id): the same fingerprint
 *    run again and again with different parameters, as an ORM does when it loads a list and
 *    then each item's relations one query at a time.
 *
 * A scope follows up to LOOP_SLOTS fingerprints; for each it counts runs whose parameters
 * differ from the run before (a repeat with the same parameters is a retry or a poll, not a
 * loop), and remembers the fingerprint run just before its first run: the query that produced
 * the list. Pure and allocation-free, so it is unit-tested with scripted sequences.
 */
#ifndef PGTURBO_LOOPDETECT_H
#define PGTURBO_LOOPDETECT_H

#include <stdbool.h>
#include <stdint.h>

#define LOOP_SLOTS 32

typedef struct loop_slot {
    uint64_t fingerprint;
    uint64_t preceding;
    uint64_t last_params;
    int count;
    bool reported;
} loop_slot_t;

typedef struct loop_scope {
    loop_slot_t slots[LOOP_SLOTS];
    int n;
    uint64_t last; /* the fingerprint run last in the scope */
} loop_scope_t;

/* Empties the scope (the transaction or request ended). */
void loop_scope_reset(loop_scope_t *sc);

/*
 * Counts one run of fingerprint with parameters (a hash of them). Returns the run count when
 * this run makes the fingerprint reach threshold for the first time in the scope (a finding;
 * *preceding gets the query before the loop, 0 if none), else 0.
 */
int loop_scope_run(loop_scope_t *sc, uint64_t fingerprint, uint64_t params, int threshold,
                   uint64_t *preceding);

#endif /* PGTURBO_LOOPDETECT_H */
