/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_cli.c — the command line's own pieces, without a daemon: the
 * status line never exceeds the terminal's width (pieces that do not fit
 * are left out, in order of importance), the width comes from $COLUMNS
 * when stderr is no terminal, and durations and bars read as documented.
 * (Options and errors against a live ferryd: tests/integration/test_cli.c.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cli/progress.h"

static void fill(struct status_line *l)
{
	status_line_add(l, "web1 iterating");
	status_line_add(l, "pass 3 [#####.....]  50%%");
	status_line_add(l, "ETA 12 s");
	status_line_add(l, "512.0 MiB/s");
	status_line_add(l, "downtime ~4 ms");
	status_line_add(l, "sent 1.2 GiB (120%% of RAM)");
	status_line_add(l, "dirty 16384 p/s");
}

static void test_fits_width(void **state)
{
	static const unsigned widths[] = { 10, 20, 40, 60, 80, 100, 132, 200, 1000 };

	(void)state;
	for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
		struct status_line l;

		status_line_init(&l, widths[i]);
		fill(&l);
		assert_int_equal(strlen(l.buf), l.len);
		/* One column stays free; a line never wraps. */
		if (widths[i] > 20)
			assert_true(l.len <= widths[i] - 1);
		else
			assert_true(l.len <= 20);
		/* The most important piece first, always there from 20 columns. */
		assert_memory_equal(l.buf, "web1 iterating", 14);
	}
}

static void test_order_of_importance(void **state)
{
	struct status_line l;

	(void)state;
	status_line_init(&l, 80);
	fill(&l);
	/* 80 columns: the pass and the ETA fit, the dirty rate does not. */
	assert_non_null(strstr(l.buf, "pass 3"));
	assert_non_null(strstr(l.buf, "ETA 12 s"));
	assert_null(strstr(l.buf, "dirty"));
	status_line_init(&l, 200);
	fill(&l);
	assert_non_null(strstr(l.buf, "dirty 16384 p/s"));
	/* A piece that does not fit does not stop a smaller one after it. */
	status_line_init(&l, 30);
	status_line_add(&l, "0123456789");
	assert_false(status_line_add(&l, "a piece far too long to fit in here"));
	assert_true(status_line_add(&l, "short"));
	assert_string_equal(l.buf, "0123456789  short");
}

static void test_columns_from_env(void **state)
{
	(void)state;
	/* stderr is not a terminal under the test runner. */
	setenv("COLUMNS", "57", 1);
	assert_int_equal(terminal_columns(), 57);
	setenv("COLUMNS", "junk", 1);
	assert_int_equal(terminal_columns(), 80);
	unsetenv("COLUMNS");
	assert_int_equal(terminal_columns(), 80);
}

static void test_durations_and_bars(void **state)
{
	char b[32];

	(void)state;
	assert_string_equal(fmt_duration(0.4, b, sizeof b), "0 s");
	assert_string_equal(fmt_duration(42, b, sizeof b), "42 s");
	assert_string_equal(fmt_duration(185, b, sizeof b), "3 min 5 s");
	assert_string_equal(fmt_duration(3720, b, sizeof b), "1 h 2 min");
	assert_string_equal(fmt_duration(-3, b, sizeof b), "0 s");
	assert_string_equal(status_bar(b, 10, 0.5), "[#####.....]");
	assert_string_equal(status_bar(b, 4, 2), "[####]");
	assert_string_equal(status_bar(b, 4, -1), "[....]");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fits_width),
		cmocka_unit_test(test_order_of_importance),
		cmocka_unit_test(test_columns_from_env),
		cmocka_unit_test(test_durations_and_bars),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
