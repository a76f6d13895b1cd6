/*
 * scheduler.h
 *    The daemon's scheduler: one thread that runs the [scheduler] jobs of the config every
 *    interval, and keeps the state of each job for the admin API (GET /api/v1/scheduler) and
 *    /metrics. The one kind of job is partition_maintain: partition_maintain() of partition.h
 *    on one database, for every table of its pgturbo.partition_config.
 *
 * A run opens a libpq connection of its own (connect_timeout 10 s unless the job's connection
 * string sets one), maintains, logs each line of partition_maintain's output and then a
 * summary, and closes the connection. It blocks only the scheduler's thread, never a worker.
 * A run that fails is logged and counted, and the job runs again at its next interval. Jobs
 * run one at a time, each when it falls due; the next run of a job is due one interval after
 * its last one started, or one interval after it ended when it ran longer than its interval.
 *
 * The thread sleeps on a condition variable until the next job is due, so stopping it never
 * waits for a sleep, only for a run in progress to end.
 */
#ifndef PGTURBO_SCHEDULER_H
#define PGTURBO_SCHEDULER_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>

#define SCHEDULER_MESSAGE_LEN 512

/* The name of the one kind of job, as the API and /metrics show it. */
#define SCHEDULER_JOB_PARTITION_MAINTAIN "partition_maintain"

typedef enum scheduler_status {
    SCHEDULER_NEVER,  /* the job has not finished a run yet */
    SCHEDULER_OK,     /* its last run succeeded */
    SCHEDULER_FAILED, /* its last run failed: no connection, or partition_maintain failed */
} scheduler_status_t;

/* A copy of one job's state. Times are Unix milliseconds. */
typedef struct scheduler_job_info {
    char database[CONFIG_NAME_LEN]; /* the dbname of the job's connection string */
    int64_t interval_ms;
    uint64_t runs;     /* finished runs, failed ones included */
    uint64_t failures; /* failed runs */
    scheduler_status_t status;
    int64_t last_started;                     /* when the last finished run started; 0 = never */
    int64_t last_duration_ms;                 /* how long it took; -1 = never */
    int64_t last_success;                     /* when the last successful run ended; 0 = never */
    int64_t next_run;                         /* when the next run is due */
    char last_message[SCHEDULER_MESSAGE_LEN]; /* "done in N ms (K actions)" or the error */
} scheduler_job_info_t;

/*
 * Starts the thread for the jobs of cfg (none when cfg has no jobs). With run_at_start, each
 * job is due at once; without, one interval from now. cfg is borrowed: it, and every config
 * later given to scheduler_reload, must stay valid until scheduler_stop returns (serve.c frees
 * replaced configs only at exit). Returns 0, or -1 with the reason in err when the thread
 * cannot be started.
 */
__attribute__((warn_unused_result)) int scheduler_start(const config_t *cfg, char *err,
                                                        size_t errlen);

/*
 * Takes the jobs of cfg: stops the thread (waiting for a run in progress to end) and starts it
 * again with them. A job whose connection string is the same as one of the old jobs' keeps
 * that job's state and stays due one (possibly new) interval after its last run; the others
 * start as at scheduler_start. Failures are logged. Called from the thread that calls
 * scheduler_start and scheduler_stop.
 */
void scheduler_reload(const config_t *cfg);

/* Stops the thread, waiting for a run in progress to end, and forgets the jobs. Nothing
 * happens when it is not running. */
void scheduler_stop(void);

/*
 * Copies the state of every job, in the order of the config, into out; returns how many.
 * Thread-safe: callable from any thread at any time (0 when the scheduler is stopped).
 */
int scheduler_snapshot(scheduler_job_info_t out[CONFIG_MAX_JOBS]);

/* "never", "ok" or "failed". */
const char *scheduler_status_name(scheduler_status_t status);

#endif /* PGTURBO_SCHEDULER_H */
