/* SPDX-License-Identifier: Apache-2.0 */
/* log.c — see log.h. */
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *prog = "ferry";
static enum log_level threshold = LOG_INFO;
static const char *const names[] = { "error", "warn", "info", "debug" };
static const int priorities[] = { 3, 4, 6, 7 }; /* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
static bool journal, journal_tag = true;

/* JOURNAL_STREAM is "DEVICE:INODE" of the stream systemd connected. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	       (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int log_parse_level(const char *s, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	return -EINVAL;
}

void log_init(const char *progname, enum log_level level)
{
	const char *env = getenv("FERRY_LOG");
	enum log_level l;

	prog = progname;
	threshold = level;
	journal = stderr_is_journal();
	if (env && log_parse_level(env, &l) == 0)
		threshold = l;
}

void log_set_level(enum log_level level) { threshold = level; }
void log_set_journal_tag(bool on) { journal_tag = on; }
bool log_to_journal(void) { return journal; }
enum log_level log_get_level(void) { return threshold; }

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[1024];
	int n, m;

	if (level > threshold)
		return;
	if (!journal)
		n = snprintf(line, sizeof line, "%s[%d]: %s: ", prog, (int)getpid(), names[level]);
	else if (journal_tag)
		n = snprintf(line, sizeof line, "<%d>%s[%d]: ", priorities[level], prog, (int)getpid());
	else
		n = snprintf(line, sizeof line, "<%d>", priorities[level]);
	m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof line - 2)
		n = sizeof line - 2;
	line[n++] = '\n';
	/* One write per line so that threads and processes do not interleave. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
	errno = saved;
}

void fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}
