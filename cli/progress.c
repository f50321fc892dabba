/* progress.c — see progress.h. */
#include "cli/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "common/mtime.h"

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
	char bar[31];
	int fill = (int)(frac * 30);

	if (!p->on || (now - p->last < 100 * NSEC_PER_MSEC && done < total))
		return;
	p->last = now;
	for (int i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[30] = '\0';
	fprintf(stderr, "\r%s [%s] %3.0f%%  %7.1f MiB/s  %5.1fs", p->what, bar, frac * 100,
		secs > 0 ? (double)done * (double)p->unit / secs / (1 << 20) : 0.0, secs);
	fflush(stderr);
}

void progress_end(struct progress *p)
{
	if (p->on)
		fprintf(stderr, "\r\033[K");
}
