/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.h — leveled logging, one line per event.
 *
 * Lines go to stderr as "ferry-mvm[1234]: warn: text". The level threshold
 * comes from log_init() or the FERRY_LOG environment variable
 * (error|warn|info|debug). Safe to call from any thread: each line is one
 * write(2).
 *
 * Under journald (stderr is the stream JOURNAL_STREAM names, as systemd
 * sets it for a service), each line starts with its syslog priority
 * instead, "<3>text" for an error (sd-daemon(3)): journald files it at that
 * level and adds the identifier and PID itself. Only the unit's main
 * daemon drops its "prog[pid]: " tag there (log_set_journal_tag); any other
 * process writing to the same stream keeps it after the priority, so that
 * its lines can be told apart.
 *
 * Error convention for all of ferry: functions return 0 (or a count) on
 * success and a negative errno value on failure, and log a message naming the
 * object (domain, job) at the point where the cause is known. Only a
 * process's top level calls fatal().
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_init(const char *progname, enum log_level level);
/* Parse "error", "warn", "info", "debug"; returns -EINVAL for anything else. */
int log_parse_level(const char *s, enum log_level *out);
void log_set_level(enum log_level level);
/* Whether lines carry the "prog[pid]: " tag under journald (default: yes;
 * the unit's main daemon turns it off). */
void log_set_journal_tag(bool on);
/* Whether stderr is journald's stream (decided by log_init). */
bool log_to_journal(void);
enum log_level log_get_level(void);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { \
		if (log_get_level() >= LOG_DEBUG) \
			log_msg(LOG_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
