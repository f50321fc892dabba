/* SPDX-License-Identifier: Apache-2.0 */
/* progress.c — see progress.h. */
#include "cli/progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/mtime.h"

#define WIDTH_MIN 20

unsigned terminal_columns(void)
{
	struct winsize ws;
	const char *env = getenv("COLUMNS");
	long c;

	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col)
		return ws.ws_col;
	if (env && (c = strtol(env, NULL, 10)) > 0 && c < 10000)
		return (unsigned)c;
	return 80;
}

void status_line_init(struct status_line *l, unsigned width)
{
	/* The last column stays free: a terminal wraps when it is written. */
	l->width = width > WIDTH_MIN ? width - 1 : WIDTH_MIN;
	if (l->width > sizeof l->buf - 1)
		l->width = sizeof l->buf - 1;
	l->len = 0;
	l->buf[0] = '\0';
}

bool status_line_add(struct status_line *l, const char *fmt, ...)
{
	char piece[256];
	unsigned sep = l->len ? 2 : 0;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(piece, sizeof piece, fmt, ap);
	va_end(ap);
	if (n < 0 || (unsigned)n >= sizeof piece || l->len + sep + (unsigned)n > l->width)
		return false;
	snprintf(l->buf + l->len, sizeof l->buf - l->len, "%s%s", sep ? "  " : "", piece);
	l->len += sep + (unsigned)n;
	return true;
}

void status_line_draw(const struct status_line *l)
{
	fprintf(stderr, "\r\033[K%s", l->buf);
	fflush(stderr);
}

void status_line_clear(void)
{
	fprintf(stderr, "\r\033[K");
	fflush(stderr);
}

const char *status_bar(char *buf, unsigned n, double frac)
{
	unsigned fill = frac <= 0 ? 0 : frac >= 1 ? n : (unsigned)(frac * n);

	buf[0] = '[';
	for (unsigned i = 0; i < n; i++)
		buf[1 + i] = i < fill ? '#' : '.';
	buf[n + 1] = ']';
	buf[n + 2] = '\0';
	return buf;
}

const char *fmt_duration(double secs, char *buf, unsigned len)
{
	unsigned long s = secs < 0 ? 0 : (unsigned long)(secs + 0.5);

	if (s < 60)
		snprintf(buf, len, "%lu s", s);
	else if (s < 3600)
		snprintf(buf, len, "%lu min %lu s", s / 60, s % 60);
	else
		snprintf(buf, len, "%lu h %lu min", s / 3600, s / 60 % 60);
	return buf;
}

void progress_init(struct progress *p, const char *what, uint64_t unit)
{
	p->what = what;
	p->unit = unit;
	p->t0 = mono_ns();
	p->last = 0;
	p->on = isatty(STDERR_FILENO);
}

void progress_update(void *arg, uint64_t done, uint64_t total)
{
	struct progress *p = arg;
	uint64_t now = mono_ns();
	double frac = total ? (double)done / (double)total : 1, secs = ns_to_sec(now - p->t0);
	struct status_line l;
	char bar[40], d[32];

	if (!p->on || (now - p->last < 100 * NSEC_PER_MSEC && done < total))
		return;
	p->last = now;
	status_line_init(&l, terminal_columns());
	status_line_add(&l, "%s", p->what);
	status_line_add(&l, "%s %3.0f%%", status_bar(bar, l.width >= 100 ? 30 : 10, frac),
			frac * 100);
	status_line_add(&l, "%.1f MiB/s",
			secs > 0 ? (double)done * (double)p->unit / secs / (1 << 20) : 0.0);
	status_line_add(&l, "%s", fmt_duration(secs, d, sizeof d));
	status_line_draw(&l);
}

void progress_end(struct progress *p)
{
	if (p->on)
		status_line_clear();
}
