/*
 * progress.h — a one-line progress bar on a terminal (stderr), nothing when
 * stderr is not a terminal.
 */
#ifndef FERRY_CLI_PROGRESS_H
#define FERRY_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
	const char *what;   /* "saving web1" */
	uint64_t unit;      /* bytes per item, for the rate (page size) */
	uint64_t t0, last;  /* ns */
	bool on;
};

void progress_init(struct progress *p, const char *what, uint64_t unit);
/* done of total items; redraws at most 10 times a second. */
void progress_update(void *p, uint64_t done, uint64_t total);
/* Clear the line. */
void progress_end(struct progress *p);

#endif
