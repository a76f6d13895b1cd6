/*
 * log.h
 *    Log lines on stderr: "time [level] message", one write per line so that lines of
 *    different workers never interleave. Lines about a connection name it (see client.h and
 *    server.h for their log macros).
 */
#ifndef PGTURBO_LOG_H
#define PGTURBO_LOG_H

#include <stdbool.h>

typedef enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERROR } log_level_t;

/* Lines below this level are dropped; LOG_INFO by default, LOG_DEBUG with verbose. */
void log_set_level(log_level_t level);
bool log_enabled(log_level_t level);

void log_write(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Puts a multi-line message (libpq's, say) on one line, in place: each run of newlines, tabs
 * and spaces becomes one space, and leading and trailing ones go. */
void log_one_line(char *s);

#define log_debug(...)   (log_enabled(LOG_DEBUG) ? log_write(LOG_DEBUG, __VA_ARGS__) : (void)0)
#define log_info(...)    log_write(LOG_INFO, __VA_ARGS__)
#define log_warning(...) log_write(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_write(LOG_ERROR, __VA_ARGS__)

#endif /* PGTURBO_LOG_H */
