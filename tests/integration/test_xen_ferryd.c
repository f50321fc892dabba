/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_xen_ferryd.c — the whole ferryd path with Xen domains, the SHIM of
 * tests/xenshim standing in for the hypervisor (preloaded into real ferryd
 * and ferry processes; each daemon's "host" is its own shim directory):
 * `ferry adopt` and `ferry list`, a live migration between two ferryd over
 * TLS with a guest writing all along, verified page by page on the
 * destination, `ferry save` / `ferry restore` of a Xen domain, and `ferry
 * protect`: epochs into a standby built by libxl's restore, then the
 * primary host lost and the standby running the last epoch. None of this
 * has run on a Xen host.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/integration/checks.h"
#include "tests/integration/daemon.h"
#include "tests/xenshim/shim.h"


static struct td A, B;
static char hostA[300], hostB[300];
static char envA[320], envB[320], preload[PATH_MAX], asan[512];


/* Two shim hosts and a ferryd on each, the shim preloaded. */
static void hosts(const char *test)
{
	const char *ao = getenv("ASAN_OPTIONS");

	td_test_begin(test);
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	snprintf(hostA, sizeof hostA, "%s/xen", A.dir);
	snprintf(hostB, sizeof hostB, "%s/xen", B.dir);
	assert_int_equal(mkdir(hostA, 0700), 0);
	assert_int_equal(mkdir(hostB, 0700), 0);
	snprintf(envA, sizeof envA, "FERRY_XEN_RUN_DIR=%s", hostA);
	snprintf(envB, sizeof envB, "FERRY_XEN_RUN_DIR=%s", hostB);
	snprintf(preload, sizeof preload, "LD_PRELOAD=%s", XENSHIM_LIB);
	/* An instrumented ferryd with a library preloaded ahead of it. */
	snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%sverify_asan_link_order=0", ao ? ao : "",
		 ao && *ao ? ":" : "");
	A.env[0] = envA, A.env[1] = preload, A.env[2] = asan;
	B.env[0] = envB, B.env[1] = preload, B.env[2] = asan;
	td_start(&A, NULL);
	td_start(&B, NULL);
}

static int teardown(void **state)
{
	(void)state;
	if (hostA[0])
		shim_tool(hostA, "destroy-all");
	if (hostB[0])
		shim_tool(hostB, "destroy-all");
	hostA[0] = hostB[0] = '\0';
	return td_test_end();
}

static void cli_ok(struct td *d, const char *what, char **out, const char *a1, const char *a2,
		   const char *a3, const char *a4)
{
	int st = td_cli(d, out, a1, a2, a3, a4, NULL);

	if (st != 0)
		fail_msg("ferry %s on %s: exit %d: %s", what, d->name, st, out && *out ? *out : "");
}

/* adopt, list, migrate A -> B while the guest writes; the guest checks out
 * on B and keeps running there; A has nothing left. */
static void test_migrate(void **state)
{
	char *out = NULL, st[32];
	json_t *job, *v;
	uint32_t domid;
	char *id;

	(void)state;
	hosts("x1-migrate");
	assert_int_equal(shim_tool(hostA, "create web1 131072 8000 4000"), 0);
	cli_ok(&A, "adopt", &out, "adopt", "xen:web1", NULL, NULL);
	free(out);
	assert_true(td_listed(&A, "web1", st));
	v = td_info(&A, "web1");
	assert_string_equal(json_string_value(json_object_get(v, "uri")), "xen:web1");
	json_decref(v);
	/* Adopting it twice, or a domain that is not there, is refused. */
	assert_int_not_equal(td_cli(&A, NULL, "adopt", "xen:web1", NULL), 0);
	assert_int_not_equal(td_cli(&A, NULL, "adopt", "xen:nosuch", NULL), 0);
	cli_ok(&A, "list", &out, "list", "--json", NULL, NULL);
	assert_non_null(strstr(out, "xen:web1"));
	free(out);

	id = td_migrate(&A, "web1", B.port, NULL);
	job = td_wait_job(&A, id, NULL, 60000);
	if (strcmp(td_jstr(job, "state"), "completed") != 0)
		fail_msg("the move ended %s", td_jstr(job, "state"));
	/* A live move: passes while the guest wrote, then the pause. */
	assert_true(json_integer_value(json_object_get(json_object_get(job, "stats"), "iterations")) >= 1);
	json_decref(job);
	free(id);
	for (int i = 0; i < 200 && td_listed(&A, "web1", NULL); i++)
		usleep(10000);
	assert_false(td_listed(&A, "web1", NULL));
	assert_true(td_listed(&B, "web1", st));
	v = td_info(&B, "web1");
	assert_string_equal(json_string_value(json_object_get(v, "uri")), "xen:web1");
	json_decref(v);
	assert_int_equal(shim_dom_find(hostA, "web1", &domid), -ENOENT);
	assert_int_equal(shim_dom_find(hostB, "web1", &domid), 0);
	assert_int_equal(shim_tool(hostB, "verify web1"), 0);
	{
		/* It runs on B: its steps go on. */
		struct shim_map m;
		uint64_t s0;

		assert_int_equal(shim_dom_map(hostB, domid, &m), 0);
		s0 = m.st->regs.steps;
		for (int i = 0; i < 200 && m.st->regs.steps == s0; i++)
			usleep(10000);
		assert_true(m.st->regs.steps > s0);
		shim_dom_unmap(&m);
	}
	td_test_passed();
}

/* ferry save and ferry restore of a Xen domain (the CLI opens it itself). */
static void test_save_restore(void **state)
{
	char *out = NULL, file[400];
	uint32_t domid;

	(void)state;
	hosts("x2-save-restore");
	assert_int_equal(shim_tool(hostA, "create db1 65536 4000 4000"), 0);
	snprintf(file, sizeof file, "%s/db1.ferry", A.dir);
	cli_ok(&A, "save", &out, "save", "xen:db1", file, NULL);
	free(out);
	assert_int_equal(shim_dom_find(hostA, "db1", &domid), -ENOENT); /* saved, then stopped */
	/* Restored on the other host, from the file alone. */
	cli_ok(&B, "restore", &out, "restore", file, NULL, NULL);
	free(out);
	assert_int_equal(shim_dom_find(hostB, "db1", &domid), 0);
	assert_int_equal(shim_tool(hostB, "verify db1"), 0);
	/* A corrupt file is refused and leaves nothing. */
	{
		FILE *f = fopen(file, "r+");

		assert_non_null(f);
		fseek(f, 300, SEEK_SET);
		fputc(0x5a, f);
		fclose(f);
	}
	assert_int_equal(shim_tool(hostB, "destroy db1"), 0);
	assert_int_not_equal(td_cli(&B, NULL, "restore", file, NULL), 0);
	assert_int_equal(shim_dom_find(hostB, "db1", &domid), -ENOENT);
	assert_int_equal(shim_dom_find(hostB, "db1--incoming", &domid), -ENOENT);
	td_test_passed();
}

/* The guest on host runs: its step count goes on. */
static void assert_runs(const char *host, const char *name)
{
	struct shim_map m;
	uint32_t domid;
	uint64_t s0;

	assert_int_equal(shim_dom_find(host, name, &domid), 0);
	assert_int_equal(shim_dom_map(host, domid, &m), 0);
	s0 = m.st->regs.steps;
	for (int i = 0; i < 300 && m.st->regs.steps == s0; i++)
		usleep(10000);
	if (m.st->regs.steps == s0)
		fail_msg("%s on %s made no step in 3 s", name, host);
	shim_dom_unmap(&m);
}

/* protect: epochs into a standby on B; a guest with a writable disk is
 * refused; the primary host dies and B runs the last epoch, whole. */
static void test_protect(void **state)
{
	char peer[32], *id, *out = NULL;
	json_t *job, *r;
	uint32_t domid;
	uint64_t epochs = 0;

	(void)state;
	hosts("x3-protect");
	assert_int_equal(shim_tool(hostA, "create db1 131072 8000 3000"), 0);
	assert_int_equal(shim_tool(hostA, "create disky 65536 100 100 rw-disk"), 0);
	cli_ok(&A, "adopt", &out, "adopt", "xen:db1", NULL, NULL);
	free(out);
	cli_ok(&A, "adopt", &out, "adopt", "xen:disky", NULL, NULL);
	free(out);
	snprintf(peer, sizeof peer, "127.0.0.1:%u", B.port);
	r = td_err(&A, "{s:s, s:s, s:s, s:b}", "op", "protect", "name", "disky", "peer", peer,
		   "unsafe_no_fencing", 1);
	{
		const char *e = json_string_value(json_object_get(r, "error"));

		if (!e || !strstr(e, "writable disk"))
			fail_msg("protecting a guest with a writable disk: %s", dumps(r));
	}
	json_decref(r);
	assert_int_equal(shim_dom_find(hostB, "disky--incoming", &domid), -ENOENT);

	id = protect_ok(&A, peer, "db1", true);
	/* The standby is the libxl-built copy, paused, on B. */
	assert_int_equal(shim_dom_find(hostB, "db1--incoming", &domid), 0);
	for (int i = 0; i < 300 && epochs < 20; i++) {
		h_sleep_ms(20);
		job = td_job(&A, id);
		epochs = (uint64_t)json_integer_value(
			json_object_get(json_object_get(job, "replication"), "epochs"));
		json_decref(job);
	}
	if (epochs < 20)
		fail_msg("only %llu epochs in 6 s", (unsigned long long)epochs);
	/* The primary host dies: its ferryd and its guest. */
	td_kill(&A);
	assert_int_equal(shim_tool(hostA, "destroy-all"), 0);
	job = td_wait_job(&B, id, NULL, 15000);
	if (strcmp(td_jstr(job, "stage"), "failed-over"))
		fail_msg("db1 did not fail over to B: %s", dumps(job));
	json_decref(job);
	for (int i = 0; i < 300 && shim_dom_find(hostB, "db1", &domid); i++)
		h_sleep_ms(10);
	assert_int_equal(shim_dom_find(hostB, "db1", &domid), 0);
	assert_runs(hostB, "db1");
	assert_int_equal(shim_tool(hostB, "verify db1"), 0);
	assert_true(td_listed(&B, "db1", NULL));
	free(id);
	td_test_passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_migrate, teardown),
		cmocka_unit_test_teardown(test_save_restore, teardown),
		cmocka_unit_test_teardown(test_protect, teardown),
	};

	return cmocka_run_group_tests(tests, td_group_setup, td_group_teardown);
}
