/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_postcopy.c — post-copy migration between two real ferryd on
 * loopback (TLS, their defaults), with microVMs whose faults are served by
 * the destination daemon through the runtime's userfaultfd:
 *
 *  1. A guest that writes faster than any pre-copy converges (dirtier
 *     rate=max) cannot be moved by pre-copy with a target it cannot meet
 *     (abort says so), but moves with --postcopy (the command line) and
 *     with the postcopy no-converge policy, and verifies on B: every page
 *     is the one the guest wrote last, the vCPUs carried on over missing
 *     memory. The job reports the demanded and background frames and the
 *     fault latency; nothing is left on A.
 *  2. While the guest runs on B with frames missing: (a) the source's
 *     runtime is killed — its RAM is ferryd's memfd too and the guest is
 *     paused there for good, so the move completes and verifies; (b) the
 *     source's ferryd is killed — B destroys its copy and its job says
 *     "lost"; A's copy is stale and stays paused, also after A restarts
 *     (its job says "lost" too). Never two copies, never a stale one run.
 *  3. --postcopy for a protected VM, and a destination that refuses post-
 *     copy, are refused with clear errors and the guest runs on at A.
 */
#include "tests/integration/checks.h"
#include "tests/integration/daemon.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mtime.h"
#include "common/util.h"

static struct td A, B;

static int teardown(void **state)
{
	(void)state;
	soft_reset();
	return td_test_end();
}

static void start_ab(void)
{
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	td_start(&A, NULL);
	td_start(&B, NULL);
}

/* A completed post-copy job's figures: frames missing at the switch, each
 * sent once (by demand or in the background), and a latency for demands. */
static void check_postcopy_stats(const json_t *job)
{
	double miss = td_jnum(job, "stats.postcopy.missing_pages");
	double dem = td_jnum(job, "stats.postcopy.demand_pages");
	double bg = td_jnum(job, "stats.postcopy.background_pages");

	if (isnan(miss) || isnan(dem) || isnan(bg))
		fail_msg("no post-copy figures: %s", dumps(job));
	if (miss < 1)
		fail_msg("a post-copy with nothing missing: %s", dumps(job));
	if (dem + bg > miss)
		fail_msg("%.0f frames sent on demand and %.0f in the background, of %.0f missing: "
			 "a frame went twice: %s", dem, bg, miss, dumps(job));
	if (dem > 0 && !(td_jnum(job, "stats.postcopy.fault_latency_ms.max") > 0))
		fail_msg("demands, but no fault latency: %s", dumps(job));
}

/* 1. */
static void test_never_converges(void **state)
{
	unsigned rounds = h_rounds(3);
	char dest[32], *out, *id;
	json_t *job, *o;
	int st;

	(void)state;
	td_test_begin("pc1-never-converges");
	start_ab();
	snprintf(dest, sizeof dest, "127.0.0.1:%u", B.port);
	for (unsigned r = 0; r < rounds; r++) {
		td_create(&A, "pc1", MEM, 2, "dirtier:ws=64M,rate=max,prefill=1");
		td_wait_running(&A, "pc1", 5000);
		/* Pre-copy cannot: the guest rewrites its set faster than the
		 * link (32 MiB/s) carries it, so the dirty set never shrinks to
		 * what a 300 ms pause could send. */
		id = td_migrate(&A, "pc1", B.port, "s:i, s:I, s:s", "max_iters", 3, "bandwidth",
				(json_int_t)(32 << 20), "on_no_converge", "abort");
		job = td_wait_job(&A, id, "failed", 30000);
		if (!strstr(td_jstr(job, "error"), "did not converge"))
			fail_msg("pre-copy of a rate=max dirtier: %s", dumps(job));
		json_decref(job);
		free(id);
		assert_absent(&B, "pc1", 5000);

		/* Post-copy from the command line. */
		st = td_cli(&A, &out, "migrate", "pc1", dest, "--postcopy", "--bandwidth", "32M",
			    "--json", NULL);
		o = json_loads(out, 0, NULL);
		if (st != 0 || !o || strcmp(td_jstr(o, "state"), "completed") != 0)
			fail_msg("ferry migrate --postcopy: exit %d, output %s", st, out);
		check_postcopy_stats(o);
		if (r == 0)
			print_message("--postcopy: %.0f frames missing at the switch, %.0f on demand, "
				      "%.0f in the background, in %.0f ms; fault latency p50 %.2f ms, "
				      "p99 %.2f ms, max %.2f ms; downtime %.1f ms\n",
				      td_jnum(o, "stats.postcopy.missing_pages"),
				      td_jnum(o, "stats.postcopy.demand_pages"),
				      td_jnum(o, "stats.postcopy.background_pages"),
				      td_jnum(o, "stats.postcopy.ms"),
				      td_jnum(o, "stats.postcopy.fault_latency_ms.p50"),
				      td_jnum(o, "stats.postcopy.fault_latency_ms.p99"),
				      td_jnum(o, "stats.postcopy.fault_latency_ms.max"),
				      td_jnum(o, "stats.downtime_ms"));
		json_decref(o);
		free(out);
		wait_dest_running(&A, &B, "pc1", NULL);
		assert_intact(&B, "pc1", true);
		assert_absent(&A, "pc1", 5000);

		/* Back by the policy: pre-copy first, post-copy once it stalls. */
		id = td_migrate(&B, "pc1", A.port, "s:i, s:I, s:s", "max_iters", 2, "bandwidth",
				(json_int_t)(32 << 20), "on_no_converge", "postcopy");
		job = td_wait_job(&B, id, "completed", 60000);
		check_postcopy_stats(job);
		if (td_jnum(job, "stats.iterations") < 1)
			fail_msg("the policy switched before any iteration: %s", dumps(job));
		json_decref(job);
		free(id);
		wait_dest_running(&B, &A, "pc1", NULL);
		assert_intact(&A, "pc1", true);
		assert_absent(&B, "pc1", 5000);
		td_destroy(&A, "pc1");
		td_wait_no_runtime(A.run_dir, "pc1", 5000);

		/* A guest that converges, with post-copy agreed but not needed:
		 * a plain pre-copy over the channels but the post-copy one. */
		td_create(&A, "pc1c", MEM, 1, "dirtier:ws=16M,rate=8");
		td_wait_running(&A, "pc1c", 5000);
		id = td_migrate(&A, "pc1c", B.port, "s:s", "on_no_converge", "postcopy");
		job = td_wait_job(&A, id, "completed", 60000);
		if (json_object_get(json_object_get(job, "stats"), "postcopy") ||
		    !json_is_true(json_object_get(job, "postcopy_channel")))
			fail_msg("a converging move with post-copy agreed: %s", dumps(job));
		json_decref(job);
		free(id);
		wait_dest_running(&A, &B, "pc1c", NULL);
		assert_intact(&B, "pc1c", true);
		td_destroy(&B, "pc1c");
		td_wait_no_runtime(B.run_dir, "pc1c", 5000);
		td_assert_quiet(&A);
		td_assert_quiet(&B);
	}
	passed();
}

/* Start a post-copy of vm from A to B over a slow link and wait until it is
 * in post-copy (the guest runs on B, frames still at A): its job id. */
static char *start_slow_postcopy(const char *vm)
{
	json_t *job;
	char *id;

	td_create(&A, vm, MEM, 2, "dirtier:ws=128M,rate=max,prefill=1");
	td_wait_running(&A, vm, 5000);
	/* 4 MiB/s: the first pass and the background pass take seconds. */
	id = td_migrate(&A, vm, B.port, "s:b, s:I", "postcopy", 1, "bandwidth",
			(json_int_t)(4 << 20));
	for (uint64_t until = mono_ns() + 120 * NSEC_PER_SEC;;) {
		job = td_job(&A, id);
		if (strcmp(td_jstr(job, "stage"), "postcopy") == 0)
			break;
		if (strcmp(td_jstr(job, "state"), "active") != 0 || mono_ns() > until)
			fail_msg("no post-copy stage: %s", dumps(job));
		json_decref(job);
		h_sleep_ms(50);
	}
	json_decref(job);
	return id;
}

/* 2. */
static void test_source_dies(void **state)
{
	unsigned rounds = h_rounds(2);

	(void)state;
	td_test_begin("pc2-source-dies");
	start_ab();
	for (unsigned r = 0; r < rounds; r++) {
		struct td_rt_info ri;
		json_t *ja, *jb;
		pid_t rt[4];
		char *id;

		/* (a) The source's runtime dies: its memory is ferryd's memfd
		 * too, and the guest is paused there for good, so nothing is
		 * lost: the move completes. */
		id = start_slow_postcopy("pc2a");
		if (td_runtimes(A.run_dir, "pc2a", rt, 4) != 1)
			fail_msg("no runtime of pc2a on A during post-copy");
		kill(rt[0], SIGKILL);
		ja = td_wait_job(&A, id, NULL, 120000);
		if (strcmp(td_jstr(ja, "state"), "completed") != 0)
			fail_msg("A's runtime killed in post-copy: %s", dumps(ja));
		json_decref(ja);
		free(id);
		wait_dest_running(&A, &B, "pc2a", NULL);
		assert_intact(&B, "pc2a", true);
		assert_absent(&A, "pc2a", 5000);
		td_destroy(&B, "pc2a");

		/* (b) The source's ferryd dies: B cannot finish. Its copy is
		 * destroyed and its job says the guest is lost; A's copy is
		 * stale and stays paused, also after A restarts. Never two. */
		id = start_slow_postcopy("pc2b");
		td_kill(&A);
		jb = td_wait_job(&B, id, NULL, 30000);
		if (strcmp(td_jstr(jb, "stage"), "lost") != 0 || !strstr(td_jstr(jb, "error"), "lost"))
			fail_msg("B's job after A died in post-copy: %s", dumps(jb));
		td_wait_no_runtime(B.run_dir, "pc2b", 10000);
		td_start(&A, NULL);
		ja = td_wait_job(&A, id, NULL, 30000);
		if (strcmp(td_jstr(ja, "stage"), "lost") != 0)
			fail_msg("A's job after its restart in post-copy: %s", dumps(ja));
		if (td_rt_info(A.run_dir, "pc2b", &ri) != 0 || !ri.paused)
			fail_msg("A's stale copy of pc2b is not there, paused");
		td_assert_frozen(&A, "pc2b", 300);
		if (r == 0)
			print_message("A died in post-copy: B says: %s\nA says: %s\n",
				      td_jstr(jb, "error"), td_jstr(ja, "error"));
		json_decref(ja);
		json_decref(jb);
		free(id);
		td_destroy(&A, "pc2b");
		td_wait_no_runtime(A.run_dir, "pc2b", 5000);
		td_assert_quiet(&B);
	}
	passed();
}

/* 3. */
static void test_refusals(void **state)
{
	char peer[32], *pid, *id;
	json_t *r, *job;

	(void)state;
	td_test_begin("pc3-refusals");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	B.channels = 1; /* it agrees to one channel: none left for post-copy */
	td_start(&A, NULL);
	td_start(&B, NULL);
	td_create(&A, "pc3", MEM, 1, "dirtier:ws=16M,rate=16");
	td_wait_running(&A, "pc3", 5000);
	snprintf(peer, sizeof peer, "127.0.0.1:%u", B.port);
	pid = protect_ok(&A, peer, "pc3", true);
	r = td_err(&A, "{s:s, s:s, s:s, s:b}", "op", "migrate", "name", "pc3", "dest", peer,
		   "postcopy", 1);
	if (!strstr(td_errstr(r), "protect"))
		fail_msg("--postcopy of a protected VM: %s", dumps(r));
	json_decref(r);
	json_decref(td_ok(&A, "{s:s, s:s}", "op", "unprotect", "name", "pc3"));
	json_decref(td_wait_job(&A, pid, NULL, 15000));
	free(pid);
	r = td_err(&A, "{s:s, s:s, s:s, s:s}", "op", "migrate", "name", "pc3", "dest", peer,
		   "postcopy", "yes");
	if (!strstr(td_errstr(r), "postcopy"))
		fail_msg("postcopy: \"yes\": %s", dumps(r));
	json_decref(r);
	/* B cannot give post-copy a channel of its own: refused before
	 * anything moved, and the guest runs on here. */
	id = td_migrate(&A, "pc3", B.port, "s:b", "postcopy", 1);
	job = td_wait_job(&A, id, "failed", 30000);
	if (!strstr(td_jstr(job, "error"), "post-copy"))
		fail_msg("post-copy to a one-channel destination: %s", dumps(job));
	json_decref(job);
	free(id);
	assert_absent(&B, "pc3", 5000);
	assert_intact(&A, "pc3", true);
	td_destroy(&A, "pc3");
	td_assert_quiet(&A);
	td_assert_quiet(&B);
	passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_never_converges, teardown),
		cmocka_unit_test_teardown(test_source_dies, teardown),
		cmocka_unit_test_teardown(test_refusals, teardown),
	};
	if (getenv("FERRY_TEST_ONLY"))
		cmocka_set_test_filter(getenv("FERRY_TEST_ONLY"));
	return cmocka_run_group_tests_name("postcopy", tests, td_group_setup, td_group_teardown);
}
