/* SPDX-License-Identifier: Apache-2.0 */
/*
 * progress.h — progress on a terminal (stderr) that fits its width, and
 * nothing when stderr is not a terminal.
 *
 * A status line is built from pieces in order of importance; a piece that
 * would not fit is left out, so that a redraw never wraps (a wrapped line
 * scrolls the screen on every redraw). The width is the terminal's, one
 * column kept free.
 */
#ifndef FERRY_CLI_PROGRESS_H
#define FERRY_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct status_line {
	char buf[512];
	unsigned len, width;
};

/* The terminal's width: stderr's (TIOCGWINSZ), else $COLUMNS, else 80. */
unsigned terminal_columns(void);
/* An empty line at most width columns wide (ASCII only). */
void status_line_init(struct status_line *l, unsigned width);
/* Append the piece, after two spaces unless it is the first, if it fits;
 * whether it did. */
bool status_line_add(struct status_line *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Draw it over the current line of stderr. */
void status_line_draw(const struct status_line *l);
/* Clear the current line of stderr. */
void status_line_clear(void);
/* "[#####.....]" of n cells into buf (n + 3 bytes). */
const char *status_bar(char *buf, unsigned n, double frac);
/* "42 s", "3 min 5 s", "1 h 2 min" into buf. */
const char *fmt_duration(double secs, char *buf, unsigned len);

/* A save or restore: a bar of items done, the rate and the time taken. */
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
