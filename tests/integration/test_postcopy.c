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
 *     source's ferryd, (c) the destination's, is SIGKILLed and restarted:
 *     the other waits, the restarted one takes the job up from its
 *     journal, and the move completes and verifies; (d) the source host
 *     dies: B waits until the operator gives up (ferry cancel), then its
 *     copy is destroyed and both jobs say "lost". Never two copies, never
 *     a stale one run.
 *  4. The link fails mid post-copy (a proxy cuts it): both hosts keep
 *     their halves and wait, and the move goes on when it returns, by
 *     itself or with ferry migrate --resume at a new address.
 *  5. The same with the hosts in network namespaces on a bridge, the
 *     source's switch port down and up.
 *  3. --postcopy for a protected VM, and a destination that refuses post-
 *     copy, are refused with clear errors and the guest runs on at A.
 */
#include "tests/integration/checks.h"
#include "tests/integration/daemon.h"
#include "tests/integration/netns.h"
#include "tests/integration/proxy.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
 * sent once (by demand or in the background; once is per session: after a
 * failure, what was on its way goes again), and a latency for demands. */
static void check_postcopy_stats(const json_t *job, bool once)
{
	double miss = td_jnum(job, "stats.postcopy.missing_pages");
	double dem = td_jnum(job, "stats.postcopy.demand_pages");
	double bg = td_jnum(job, "stats.postcopy.background_pages");

	if (isnan(miss) || isnan(dem) || isnan(bg))
		fail_msg("no post-copy figures: %s", dumps(job));
	if (miss < 1)
		fail_msg("a post-copy with nothing missing: %s", dumps(job));
	if (once && dem + bg > miss)
		fail_msg("%.0f frames sent on demand and %.0f in the background, of %.0f missing: "
			 "a frame went twice: %s", dem, bg, miss, dumps(job));
	if (dem > 0 && !(td_jnum(job, "stats.postcopy.fault_latency_ms.max") > 0))
		fail_msg("demands, but no fault latency: %s", dumps(job));
}

/* 1. */
static void test_never_converges(void **state)
{
	unsigned rounds = 1; /* long: the rounds setting is for short tests */
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
		check_postcopy_stats(o, true);
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
		check_postcopy_stats(job, true);
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
	char *id;

	td_create(&A, vm, MEM, 2, "dirtier:ws=64M,rate=max,prefill=1");
	td_wait_running(&A, vm, 5000);
	/* 8 MiB/s: the first pass and the background pass take seconds. */
	id = td_migrate(&A, vm, B.port, "s:b, s:I", "postcopy", 1, "bandwidth",
			(json_int_t)(8 << 20));
	json_decref(wait_stage(&A, id, "postcopy", 120000));
	return id;
}

static void assert_moved(const char *vm, const char *id, unsigned r, const char *how);

/* 2. */
static void test_restarts(void **state)
{
	unsigned rounds = 1; /* long: the rounds setting is for short tests */

	(void)state;
	td_test_begin("pc2-restarts");
	start_ab();
	for (unsigned r = 0; r < rounds; r++) {
		struct td_rt_info ri;
		json_t *ja, *jb;
		pid_t rt[4];
		char *id, *out;

		/* (a) The source's runtime dies: its memory is ferryd's memfd
		 * too, and the guest is paused there for good, so nothing is
		 * lost: the move completes. */
		id = start_slow_postcopy("pc2a");
		if (td_runtimes(A.run_dir, "pc2a", rt, 4) != 1)
			fail_msg("no runtime of pc2a on A during post-copy");
		kill(rt[0], SIGKILL);
		assert_moved("pc2a", id, r, "with the source's runtime killed");
		free(id);

		/* (b) The source's ferryd is SIGKILLed: B holds its half and
		 * waits; A, restarted, takes the job up from its journal. */
		id = start_slow_postcopy("pc2b");
		td_kill(&A);
		json_decref(wait_stage(&B, id, "postcopy-paused", 20000));
		td_start(&A, NULL);
		assert_moved("pc2b", id, r, "with the source's ferryd restarted");
		free(id);

		/* (c) The destination's ferryd is SIGKILLed: A retries; B,
		 * restarted, takes its faults up again and waits for A. */
		id = start_slow_postcopy("pc2c");
		td_kill(&B);
		json_decref(wait_stage(&A, id, "postcopy-paused", 20000));
		td_start(&B, NULL);
		assert_moved("pc2c", id, r, "with the destination's ferryd restarted");
		free(id);

		/* (d) The source host dies (its ferryd and its guests): B waits
		 * until the operator gives up; then its copy is destroyed and
		 * its job says "lost". A, back, finds nothing to go on with.
		 * Never two copies, never a stale one run. */
		id = start_slow_postcopy("pc2d");
		kill_host(&A);
		json_decref(wait_stage(&B, id, "postcopy-paused", 20000));
		if (td_cli(&B, &out, "cancel", id, NULL) != 0)
			fail_msg("ferry cancel %s on B: %s", id, out);
		free(out);
		jb = td_wait_job(&B, id, NULL, 30000);
		if (strcmp(td_jstr(jb, "stage"), "lost") != 0 || !strstr(td_jstr(jb, "error"), "lost"))
			fail_msg("B's job after A's host died in post-copy: %s", dumps(jb));
		td_wait_no_runtime(B.run_dir, "pc2d", 10000);
		td_start(&A, NULL);
		ja = td_wait_job(&A, id, NULL, 30000);
		if (strcmp(td_jstr(ja, "stage"), "lost") != 0)
			fail_msg("A's job after its host died in post-copy: %s", dumps(ja));
		if (td_rt_info(A.run_dir, "pc2d", &ri) == 0)
			fail_msg("a runtime of pc2d on A after its host died");
		if (r == 0)
			print_message("A's host died in post-copy: B says: %s\nA says: %s\n",
				      td_jstr(jb, "error"), td_jstr(ja, "error"));
		json_decref(ja);
		json_decref(jb);
		free(id);
		json_decref(td_call(&A, "{s:s, s:s}", "op", "destroy", "name", "pc2d"));
		td_assert_quiet(&A);
		td_assert_quiet(&B);
	}
	passed();
}

/* Start a post-copy of vm from A to B through px, slow enough to be cut in
 * the middle; wait until it is in post-copy. */
static char *start_postcopy_via(const char *vm, struct proxy *px)
{
	char *id;

	td_create(&A, vm, MEM, 2, "dirtier:ws=64M,rate=max,prefill=1");
	td_wait_running(&A, vm, 5000);
	id = td_migrate(&A, vm, proxy_port(px), "s:b, s:I", "postcopy", 1, "bandwidth",
			(json_int_t)(8 << 20));
	json_decref(wait_stage(&A, id, "postcopy", 120000));
	return id;
}

/* Both hosts hold their halves while the link is down: both jobs paused,
 * both runtimes there. */
static void assert_paused_halves(const char *vm, const char *id)
{
	pid_t rt[4];

	json_decref(wait_stage(&A, id, "postcopy-paused", 20000));
	json_decref(wait_stage(&B, id, "postcopy-paused", 20000));
	if (td_runtimes(A.run_dir, vm, rt, 4) != 1 || td_runtimes(B.run_dir, vm, rt, 4) != 1)
		fail_msg("a half of %s is gone while post-copy is paused", vm);
}

/* The move completed after a pause: verified on B, gone from A. */
static void assert_moved(const char *vm, const char *id, unsigned r, const char *how)
{
	json_t *job = td_wait_job(&A, id, NULL, 120000);

	if (strcmp(td_jstr(job, "state"), "completed") != 0)
		fail_msg("post-copy %s: %s", how, dumps(job));
	check_postcopy_stats(job, false);
	if (r == 0)
		print_message("post-copy %s: completed in %.0f ms (post-copy %.0f ms), %.0f frames on "
			      "demand; fault latency p99 %.1f ms, max %.1f ms\n", how,
			      td_jnum(job, "stats.total_ms"), td_jnum(job, "stats.postcopy.ms"),
			      td_jnum(job, "stats.postcopy.demand_pages"),
			      td_jnum(job, "stats.postcopy.fault_latency_ms.p99"),
			      td_jnum(job, "stats.postcopy.fault_latency_ms.max"));
	json_decref(job);
	wait_dest_running(&A, &B, vm, NULL);
	assert_intact(&B, vm, true);
	assert_absent(&A, vm, 5000);
	td_destroy(&B, vm);
	td_wait_no_runtime(B.run_dir, vm, 5000);
}

/* 4. The link fails in the middle of a post-copy: both hosts keep their
 * halves and wait (postcopy-paused); (a) the link comes back and the move
 * goes on by itself; (b) the destination's old address is gone, and
 * `ferry migrate --resume JOB HOST` gives a new one. Either way the guest
 * verifies on B and nothing is left on A. */
static void test_link_cut(void **state)
{
	unsigned rounds = 1; /* long: the rounds setting is for short tests */

	(void)state;
	td_test_begin("pc4-link-cut");
	start_ab();
	for (unsigned r = 0; r < rounds; r++) {
		struct proxy *px, *px2;
		char dest[32], *out, *id;
		json_t *o;
		int st;

		/* (a) */
		assert_non_null(px = proxy_start(B.port, 0));
		id = start_postcopy_via("pc4a", px);
		proxy_cut(px, true);
		assert_paused_halves("pc4a", id);
		h_sleep_ms(500);
		proxy_cut(px, false);
		assert_moved("pc4a", id, r, "cut and mended");
		free(id);
		proxy_stop(px);

		/* (b) */
		assert_non_null(px = proxy_start(B.port, 0));
		id = start_postcopy_via("pc4b", px);
		proxy_stop(px); /* that address is gone for good */
		assert_paused_halves("pc4b", id);
		assert_non_null(px2 = proxy_start(B.port, 0));
		snprintf(dest, sizeof dest, "127.0.0.1:%u", proxy_port(px2));
		st = td_cli(&A, &out, "migrate", "--resume", id, dest, "--json", NULL);
		o = json_loads(out, 0, NULL);
		if (st != 0 || !o || strcmp(td_jstr(o, "state"), "completed") != 0)
			fail_msg("ferry migrate --resume %s %s: exit %d, output %s", id, dest, st, out);
		json_decref(o);
		free(out);
		assert_moved("pc4b", id, r, "resumed at a new address");
		free(id);
		proxy_stop(px2);
		td_assert_quiet(&A);
		td_assert_quiet(&B);
	}
	passed();
}

/* 5. The same in network namespaces: two hosts on one bridge, the
 * source's switch port taken down mid post-copy (frames dropped silently,
 * as a failed switch does) and up again. */
static struct tnet T;

static int teardown_ns(void **state)
{
	int r = teardown(state);

	tn_teardown(&T);
	return r;
}

static void test_netns_cut(void **state)
{
	static const char *const names[] = { "A", "B" };
	char pki[300], dest[64], *id;
	time_t now = time(NULL);
	json_t *r;

	(void)state;
	if (!tn_available()) {
		print_message("no network namespaces here (needs root and iproute2)\n");
		skip();
	}
	td_test_begin("pc5-netns-cut");
	tn_setup(&T, names, 2);
	snprintf(pki, sizeof pki, "%s/pki-pc5", td_base());
	td_make_ca(pki);
	for (unsigned i = 0; i < 2; i++) {
		struct td *d = i ? &B : &A;
		char ip[32];

		snprintf(ip, sizeof ip, TN_SUBNET ".%u", i + 1);
		td_make_cert(pki, pki, names[i], ip, now - 3600, now + 86400);
		td_init(d, names[i], PTO);
		d->netns = T.ns[i];
		d->pki_dir = pki;
		td_start(d, NULL);
	}
	td_create(&A, "pc5", MEM, 2, "dirtier:ws=64M,rate=max,prefill=1");
	td_wait_running(&A, "pc5", 5000);
	snprintf(dest, sizeof dest, TN_SUBNET ".2:%u", B.port);
	r = td_ok(&A, "{s:s, s:s, s:s, s:b, s:I}", "op", "migrate", "name", "pc5", "dest", dest,
		  "postcopy", 1, "bandwidth", (json_int_t)(8 << 20));
	id = strdup(td_jstr(r, "job"));
	json_decref(r);
	json_decref(wait_stage(&A, id, "postcopy", 120000));
	tn_sh("ip -n %s link set p0%d down", T.sw, (int)getpid());
	assert_paused_halves("pc5", id);
	h_sleep_ms(500);
	tn_sh("ip -n %s link set p0%d up", T.sw, (int)getpid());
	assert_moved("pc5", id, 0, "across a switch port down and up (namespaces)");
	free(id);
	td_assert_quiet(&A);
	td_assert_quiet(&B);
	assert_int_not_equal(td_term(&A, 5000), -1);
	assert_int_not_equal(td_term(&B, 5000), -1);
	tn_teardown(&T);
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
		cmocka_unit_test_teardown(test_restarts, teardown),
		cmocka_unit_test_teardown(test_refusals, teardown),
		cmocka_unit_test_teardown(test_link_cut, teardown),
		cmocka_unit_test_teardown(test_netns_cut, teardown_ns),
	};
	if (getenv("FERRY_TEST_ONLY"))
		cmocka_set_test_filter(getenv("FERRY_TEST_ONLY"));
	return cmocka_run_group_tests_name("postcopy", tests, td_group_setup, td_group_teardown);
}
