/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_repl.c — what the replication engine agrees to protect
 * (repl_can_protect): a domain without writable disks is accepted; one with
 * any is refused with -EOPNOTSUPP and a reason that names the disks, since
 * epochs carry memory only (docs/replication.md, Disks). The microVM has no
 * disks, so ferry protect's refusal is exercised here on the hv_info a disk
 * backend reports.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "hv/hv.h"
#include "replicate/replicate.h"

static void test_no_disks(void **state)
{
	struct hv_info i = { .page_size = 4096, .nr_vcpus = 2, .nr_frames = 1024 };
	char err[300] = "";

	(void)state;
	assert_int_equal(repl_can_protect(&i, err, sizeof err), 0);
	assert_string_equal(err, "");
}

static void test_writable_disks(void **state)
{
	struct hv_info i = { .page_size = 4096, .nr_vcpus = 2, .nr_frames = 1024, .rw_disks = 1 };
	char err[300] = "";

	(void)state;
	assert_int_equal(repl_can_protect(&i, err, sizeof err), -EOPNOTSUPP);
	assert_non_null(strstr(err, "1 writable disk:"));
	i.rw_disks = 3;
	assert_int_equal(repl_can_protect(&i, err, sizeof err), -EOPNOTSUPP);
	assert_non_null(strstr(err, "3 writable disks"));
	assert_non_null(strstr(err, "memory only"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_disks),
		cmocka_unit_test(test_writable_disks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
