/*
 * serve.c
 *    The daemon's main thread: starts the workers, the admin HTTP API and then the scheduler,
 *    then waits for signals. SIGHUP loads the config again and hands it to the pools, workers,
 *    admin API and scheduler (a bad file is reported and the old one kept); SIGTERM and SIGINT
 *    stop the scheduler and the admin API, stop accepting and let transactions finish, up to
 *    shutdown_timeout.
 */
#include "serve.h"

#include "admin.h"
#include "alerts.h"
#include "cache.h"
#include "authquery.h"
#include "cancel.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "scheduler.h"
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* How often the main thread evaluates the alerts, in seconds. */
#define ALERT_PERIOD_S 5

/* Configs replaced by a reload. Connections may still point into them, so they are freed
 * only at exit; each reload keeps one file's worth of memory. */
typedef struct retired {
    config_t *cfg;
    struct retired *next;
} retired_t;

static int worker_count(const config_t *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void log_summary(void)
{
    uint64_t accepted = 0, transactions = 0, queries = 0, connects = 0;
    for (int i = 0; i < n_workers; i++) {
        accepted += atomic_load(&workers[i].counters.clients_accepted);
        transactions += atomic_load(&workers[i].counters.transactions);
        queries += atomic_load(&workers[i].counters.queries);
        connects += atomic_load(&workers[i].counters.server_connects);
    }
    log_info("served %llu clients, %llu transactions, %llu queries with %llu server connections",
             (unsigned long long)accepted, (unsigned long long)transactions,
             (unsigned long long)queries, (unsigned long long)connects);
}

static config_t *reload(const char *path, config_t *current, retired_t **retired)
{
    char err[512];
    config_t *next = NULL;
    if (config_load(path, &next, err, sizeof(err)) < 0) {
        log_error("reload failed, keeping the current config: %s", err);
        return current;
    }
    retired_t *r = malloc(sizeof(*r));
    if (r == NULL) {
        config_free(next);
        log_error("reload failed: out of memory");
        return current;
    }
    r->cfg = current;
    r->next = *retired;
    *retired = r;
    log_set_level(next->verbose ? LOG_DEBUG : LOG_INFO);
    cache_reconfigure(current, next);
    pool_reload_all(next);
    worker_reload_all(next);
    admin_reload(next);
    scheduler_reload(next);
    log_info("config reloaded from %s", path);
    return next;
}

/* What serve_run has started, in the order it starts them. */
typedef enum started {
    STARTED_CACHE,
    STARTED_WORKERS,
    STARTED_AUTHQUERY,
    STARTED_ADMIN,
    STARTED_SCHEDULER, /* everything: the daemon ran */
} started_t;

static int start_authquery(char *err, size_t errlen)
{
    if (authquery_start() == 0)
        return 0;
    snprintf(err, errlen, "cannot start the auth_query thread");
    return -1;
}

/* Starts what follows the cache; returns the last part that started (STARTED_SCHEDULER: all),
 * with the reason in err when one did not. */
static started_t start_rest(const config_t *cfg, int n, char *err, size_t errlen)
{
    if (worker_start_all(cfg, n, err, errlen) < 0)
        return STARTED_CACHE;
    if (start_authquery(err, errlen) < 0)
        return STARTED_WORKERS;
    /* After the workers, whom its requests call into; a bad admin_listen stops the start. */
    if (admin_start(cfg, err, errlen) < 0)
        return STARTED_AUTHQUERY;
    /* Last: its jobs connect to PostgreSQL on their own, and the API shows their state. */
    if (scheduler_start(cfg, err, errlen) < 0)
        return STARTED_ADMIN;
    return STARTED_SCHEDULER;
}

/*
 * Stops what was started up to last, in the reverse order, and frees cfg: first a scheduler
 * run in progress, then the API, whose requests in progress wait for the workers to answer,
 * then the workers, which let transactions finish (shutdown_timeout).
 */
static void stop_started(started_t last, config_t *cfg)
{
    if (last >= STARTED_SCHEDULER)
        scheduler_stop();
    if (last >= STARTED_ADMIN)
        admin_stop();
    if (last >= STARTED_WORKERS)
        worker_shutdown_all();
    if (last >= STARTED_AUTHQUERY)
        authquery_stop();
    if (last >= STARTED_WORKERS) {
        cache_stop_links();
        if (last == STARTED_SCHEDULER)
            log_summary();
        worker_free_all();
        alerts_free();
        pool_free_all();
        cancel_free_all();
    }
    cache_stop();
    config_free(cfg);
}

int serve_run(const char *path)
{
    char err[512];
    config_t *cfg = NULL;
    if (config_load(path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "pgturbo: %s\n", err);
        return 2;
    }
    log_set_level(cfg->verbose ? LOG_DEBUG : LOG_INFO);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    int n = worker_count(cfg);
    if (cache_start(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "pgturbo: %s\n", err);
        config_free(cfg);
        return 1;
    }
    started_t started = start_rest(cfg, n, err, sizeof(err));
    if (started != STARTED_SCHEDULER) {
        fprintf(stderr, "pgturbo: %s\n", err);
        stop_started(started, cfg);
        return 1;
    }
    log_info("pgturbo listening on %s:%d with %d workers, pool_mode %s", cfg->listen_addr,
             cfg->listen_port, n, config_pool_mode_name(cfg->pool_mode));

    retired_t *retired = NULL;
    for (;;) {
        const struct timespec period = {.tv_sec = ALERT_PERIOD_S};
        int sig = sigtimedwait(&set, NULL, &period);
        if (sig < 0) {
            if (errno == EAGAIN && cfg->query_stats)
                alerts_evaluate(cfg);
            continue;
        }
        if (sig == SIGHUP)
            cfg = reload(path, cfg, &retired);
        else if (sig == SIGTERM || sig == SIGINT)
            break;
    }
    log_info("shutting down: waiting up to %lld ms for transactions to finish",
             (long long)cfg->shutdown_timeout);
    stop_started(STARTED_SCHEDULER, cfg);
    while (retired != NULL) {
        retired_t *next = retired->next;
        config_free(retired->cfg);
        free(retired);
        retired = next;
    }
    log_info("stopped");
    return 0;
}
