/*
 * report_bloat.h
 *    The bloat check of pgturbo report: tables and btree indexes, estimated from catalog
 *    statistics, or measured with pgstattuple for the largest when it is installed.
 */
#ifndef PGTURBO_REPORT_BLOAT_H
#define PGTURBO_REPORT_BLOAT_H

#include "reportctx.h"

/* Adds the "bloat" section and its recommendations. */
void report_check_bloat(report_ctx_t *c);

#endif /* PGTURBO_REPORT_BLOAT_H */
