/*
 * report_indexes.h
 *    The index checks of pgturbo report: most used, unused since the statistics reset,
 *    duplicate, redundant and invalid indexes, and foreign keys without an index.
 */
#ifndef PGTURBO_REPORT_INDEXES_H
#define PGTURBO_REPORT_INDEXES_H

#include "reportctx.h"

/* Adds the "indexes" section and its recommendations. */
void report_check_indexes(report_ctx_t *c);

/* Adds the "foreign_keys" section: foreign keys no index serves. */
void report_check_foreign_keys(report_ctx_t *c);

#endif /* PGTURBO_REPORT_INDEXES_H */
