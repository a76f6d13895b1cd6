/*
 * serve.h
 *    `pgturbo serve`: runs the proxy until SIGTERM/SIGINT, reloading the config on SIGHUP.
 */
#ifndef PGTURBO_SERVE_H
#define PGTURBO_SERVE_H

/* Runs the daemon with the config at path. Returns the process exit code: 0 after a clean
 * shutdown, 2 for a bad config, 1 for other startup failures. */
int serve_run(const char *path);

#endif /* PGTURBO_SERVE_H */
