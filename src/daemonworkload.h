/*
 * daemonworkload.h
 *    The workload of `pgturbo advise --source daemon`: the running daemon's own query
 *    statistics (GET /api/v1/queries of its admin API) and the real runs it keeps of each
 *    fingerprint (GET /api/v1/samples/{fingerprint}, admin_token only), which give advise the
 *    constants pg_stat_statements hides. A sample of the extended protocol is its Parse text
 *    and its Bind values: advise reads the query's shape from the Parse text, where a bound
 *    value is a $n parameter and a literal a real constant, and costs it with the values.
 */
#ifndef PGTURBO_DAEMONWORKLOAD_H
#define PGTURBO_DAEMONWORKLOAD_H

#include "workload.h"

#include <stddef.h>

/*
 * Loads the queries of database from the admin API at api ("host:port") with token into w
 * (zeroed by the caller). Returns ADVISE_OK, or ADVISE_FAIL_DB with one line in err when the
 * API cannot be reached or answers an error. Free w with workload_free() in every case.
 */
__attribute__((warn_unused_result)) advise_status_t
daemon_workload_load(const char *api, const char *token, const char *database, workload_t *w,
                     char *err, size_t errlen);

#endif /* PGTURBO_DAEMONWORKLOAD_H */
