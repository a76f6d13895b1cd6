/*
 * scheduler.c
 *    The scheduler's thread and the state of its jobs; see scheduler.h.
 *
 * The jobs live in one array, which the thread that calls start, reload and stop replaces
 * only while the scheduler's thread is stopped; so the scheduler's thread may run a job
 * without the lock, and records its outcome under it. Everything else about the jobs (when
 * each is due, its info) is read and written under the lock, which the scheduler's thread
 * holds except while it runs a job or sleeps.
 */
#include "scheduler.h"

#include "log.h"
#include "loop.h"
#include "partition.h"

#include <assert.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds a run may take to connect, unless the job's connection string says otherwise. */
#define CONNECT_TIMEOUT_S "10"

/* How a run's connection shows in pg_stat_activity, unless the connection string says. */
#define APPLICATION_NAME "pgturbo scheduler"

/* One job: its line of the config and its state. */
typedef struct job {
    const config_job_t *cfg;   /* borrowed from the config the scheduler was given */
    int64_t due;               /* loop_clock_ms() time of the next run */
    scheduler_job_info_t info; /* what scheduler_snapshot copies */
} job_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t wake_made = PTHREAD_ONCE_INIT;
static pthread_cond_t wake; /* on CLOCK_MONOTONIC, the clock of loop_clock_ms() */
static pthread_t thread;
static bool running;  /* the thread exists; only the caller of start, reload and stop uses it */
static bool stopping; /* the thread is to return */
static job_t *jobs;   /* in the order of the config; NULL when there are none */
static int n_jobs;

static void make_wake(void)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&wake, &attr);
    pthread_condattr_destroy(&attr);
}

static int64_t wall_clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Makes job due at the loop_clock_ms() time due, which the snapshot shows as wall time. */
static void set_due(job_t *job, int64_t due)
{
    job->due = due;
    job->info.next_run = wall_clock_ms() + (due - loop_clock_ms());
}

/* ---- one run ---- */

/* Logs each line a run wrote, one action each; returns how many there were. */
static int log_actions(const char *dbname, char *text)
{
    int n = 0;

    for (char *line = text; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (end != NULL)
            *end = '\0';
        if (line[0] != '\0') {
            log_info("scheduler: partition maintain %s: %s", dbname, line);
            n++;
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return n;
}

/*
 * Connects with the job's connection string and runs partition_maintain() on every table of
 * the database's pgturbo.partition_config, logging each action. Returns true with the number
 * of actions in *actions, or false with the reason, on one line, in msg.
 */
static bool maintain(const config_job_t *job, int *actions, char *msg, size_t len)
{
    /* libpq reads the keywords in order and the connection string (dbname, expanded) comes
     * last, so the first two are defaults that the job's own settings override. */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const values[] = {CONNECT_TIMEOUT_S, APPLICATION_NAME, job->conninfo, NULL};
    char err[SCHEDULER_MESSAGE_LEN] = "";
    char *text = NULL;
    size_t size = 0;
    FILE *out;
    partition_status_t rc;
    bool ok = false;
    PGconn *conn = PQconnectdbParams(keys, values, 1);

    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(msg, len, "cannot connect: %s",
                 conn != NULL ? PQerrorMessage(conn) : "out of memory");
        goto done;
    }
    out = open_memstream(&text, &size);
    if (out == NULL) {
        snprintf(msg, len, "out of memory");
        goto done;
    }
    rc = partition_maintain(conn, NULL, 0, out, err, sizeof(err));
    if (fclose(out) != 0) {
        snprintf(msg, len, "out of memory");
        goto done;
    }
    *actions = log_actions(job->dbname, text);
    if (rc != PARTITION_OK) {
        snprintf(msg, len, "%s", err[0] != '\0' ? err : "partition_maintain failed");
        goto done;
    }
    ok = true;
done:
    if (!ok)
        log_one_line(msg);
    free(text);
    PQfinish(conn);
    return ok;
}

/* Runs job once, logs the outcome and records it. Called without the lock. */
static void run_job(job_t *job)
{
    const config_job_t *cfg = job->cfg;
    char msg[SCHEDULER_MESSAGE_LEN];
    int actions = 0;
    int64_t started_wall = wall_clock_ms();
    int64_t started = loop_clock_ms();
    bool ok = maintain(cfg, &actions, msg, sizeof(msg));
    int64_t ended = loop_clock_ms();

    if (ok) {
        snprintf(msg, sizeof(msg), "done in %lld ms (%d actions)", (long long)(ended - started),
                 actions);
        log_info("scheduler: partition maintain %s: %s", cfg->dbname, msg);
    } else {
        log_error("scheduler: partition maintain %s: failed: %s", cfg->dbname, msg);
    }

    pthread_mutex_lock(&lock);
    scheduler_job_info_t *info = &job->info;
    info->runs++;
    info->failures += ok ? 0 : 1;
    info->status = ok ? SCHEDULER_OK : SCHEDULER_FAILED;
    info->last_started = started_wall;
    info->last_duration_ms = ended - started;
    if (ok)
        info->last_success = wall_clock_ms();
    snprintf(info->last_message, sizeof(info->last_message), "%s", msg);
    /* A run longer than the interval waits a whole interval, rather than running back to
     * back with the next. */
    int64_t due = started + cfg->interval;
    set_due(job, due > ended ? due : ended + cfg->interval);
    pthread_mutex_unlock(&lock);
}

/* ---- the thread ---- */

/* The job due first. Caller holds the lock; there is at least one job. */
static job_t *first_due(void)
{
    job_t *first = &jobs[0];

    for (int i = 1; i < n_jobs; i++)
        if (jobs[i].due < first->due)
            first = &jobs[i];
    return first;
}

static void *scheduler_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!stopping) {
        job_t *job = first_due();
        if (job->due > loop_clock_ms()) {
            struct timespec until = {.tv_sec = job->due / 1000,
                                     .tv_nsec = (long)(job->due % 1000) * 1000000};
            /* Woken early by a stop, or spuriously: the loop looks again either way. */
            pthread_cond_timedwait(&wake, &lock, &until);
            continue;
        }
        pthread_mutex_unlock(&lock);
        run_job(job);
        pthread_mutex_lock(&lock);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* Starts the thread when there are jobs. Returns 0, or -1 with the reason in err. */
static int start_thread(char *err, size_t errlen)
{
    if (n_jobs == 0)
        return 0;
    pthread_once(&wake_made, make_wake);
    pthread_mutex_lock(&lock);
    stopping = false;
    pthread_mutex_unlock(&lock);
    int rc = pthread_create(&thread, NULL, scheduler_main, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "scheduler: cannot start its thread: %s", strerror(rc));
        return -1;
    }
    running = true;
    for (int i = 0; i < n_jobs; i++)
        log_info("scheduler: partition maintain %s every %.10g s", jobs[i].cfg->dbname,
                 (double)jobs[i].cfg->interval / 1000);
    return 0;
}

/* Stops the thread, after the run in progress if there is one. */
static void stop_thread(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
    running = false;
}

/* ---- jobs ---- */

/* The job of old (n_old of them) with connection string conninfo, or NULL. */
static const job_t *find_job(const job_t *old, int n_old, const char *conninfo)
{
    for (int i = 0; i < n_old; i++)
        if (strcmp(old[i].cfg->conninfo, conninfo) == 0)
            return &old[i];
    return NULL;
}

/*
 * The jobs of cfg, with the state of the job of old (n_old of them, may be NULL) that has the
 * same connection string, or else due now (run_at_start) or one interval from now. NULL when
 * cfg has no jobs or memory runs out; the caller frees the array with free().
 */
static job_t *make_jobs(const config_t *cfg, const job_t *old, int n_old)
{
    int64_t now = loop_clock_ms();
    job_t *made = cfg->n_jobs > 0 ? calloc((size_t)cfg->n_jobs, sizeof(*made)) : NULL;

    if (made == NULL)
        return NULL;
    for (int i = 0; i < cfg->n_jobs; i++) {
        job_t *job = &made[i];
        const job_t *was = find_job(old, n_old, cfg->jobs[i].conninfo);
        job->cfg = &cfg->jobs[i];
        if (was != NULL) {
            job->info = was->info;
            set_due(job, was->due - was->info.interval_ms + job->cfg->interval);
        } else {
            snprintf(job->info.database, sizeof(job->info.database), "%s", job->cfg->dbname);
            job->info.last_duration_ms = -1;
            set_due(job, cfg->run_at_start ? now : now + job->cfg->interval);
        }
        job->info.interval_ms = job->cfg->interval;
    }
    return made;
}

int scheduler_start(const config_t *cfg, char *err, size_t errlen)
{
    job_t *made = make_jobs(cfg, NULL, 0);

    if (made == NULL && cfg->n_jobs > 0) {
        snprintf(err, errlen, "scheduler: out of memory");
        return -1;
    }
    pthread_mutex_lock(&lock);
    jobs = made;
    n_jobs = cfg->n_jobs;
    pthread_mutex_unlock(&lock);
    return start_thread(err, errlen);
}

void scheduler_reload(const config_t *cfg)
{
    char err[256];

    stop_thread();
    pthread_mutex_lock(&lock);
    job_t *old = jobs;
    int n_old = n_jobs;
    job_t *made = make_jobs(cfg, old, n_old);
    bool failed = made == NULL && cfg->n_jobs > 0;
    if (!failed) {
        jobs = made;
        n_jobs = cfg->n_jobs;
    }
    pthread_mutex_unlock(&lock);
    if (failed) {
        log_error("scheduler: out of memory: the jobs stay as they were");
    } else {
        free(old);
        if (n_jobs == 0 && n_old > 0)
            log_info("scheduler: no jobs");
    }
    if (start_thread(err, sizeof(err)) < 0)
        log_error("%s", err);
}

void scheduler_stop(void)
{
    stop_thread();
    pthread_mutex_lock(&lock);
    free(jobs);
    jobs = NULL;
    n_jobs = 0;
    pthread_mutex_unlock(&lock);
}

int scheduler_snapshot(scheduler_job_info_t out[CONFIG_MAX_JOBS])
{
    pthread_mutex_lock(&lock);
    int n = n_jobs;
    assert(n <= CONFIG_MAX_JOBS);
    for (int i = 0; i < n; i++)
        out[i] = jobs[i].info;
    pthread_mutex_unlock(&lock);
    return n;
}

const char *scheduler_status_name(scheduler_status_t status)
{
    switch (status) {
    case SCHEDULER_NEVER:
        return "never";
    case SCHEDULER_OK:
        return "ok";
    case SCHEDULER_FAILED:
        return "failed";
    }
    return "unknown";
}
