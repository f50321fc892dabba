/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_fence.c — protected VMs fenced by a real etcd (DESIGN.md §7,
 * daemon/fence.h), through real ferryd, runtimes and ferry-kv:
 *
 *  1 on loopback: the primary's host is killed under 32 writing clients;
 *    the standby takes over once the primary's lease has expired (never
 *    before) and the check passes; etcd then says where the VM runs;
 *  2 in network namespaces (hosts A, B, clients on C, etcd on E, one
 *    bridge), a split between A and B while both reach etcd: no takeover;
 *    A serves on, degraded; A is then killed: B is not in sync any more, so
 *    it holds its copy and says why; only the operator's `takeover --force`
 *    runs it, and the check then finds the writes it lacks;
 *  3 A cut off from everything (its link down): B takes over after A's
 *    lease expired, the clients follow the address, the check passes; A
 *    steps down (fenced) and, once the link is back, destroys its copy;
 *  4 A's ferryd stopped (SIGSTOP) past its lease, then continued: B has
 *    taken over; A releases nothing B lacks, steps down and destroys its
 *    copy; the check passes; the pool's record (daemon/registry.h) names B
 *    from the failover on, and A, deposed, never writes it back nor
 *    removes it;
 *  5 A's ferryd restarted inside its lease keeps the VM and the same
 *    pairing resyncs B, staged; killed inside that resync, B runs the copy
 *    it kept (the check passes) and A, back past the lease, destroys its
 *    copy;
 *  6 A killed just after its staged resync is whole, while B still makes
 *    it its copy: B finishes, runs the new copy, and the check passes.
 * etcd, daemons, runtimes, clients and namespaces end also on failure.
 */
#include "tests/integration/checks.h"
#include "tests/integration/daemon.h"
#include "tests/integration/etcd.h"
#include "tests/integration/kvtool.h"
#include "tests/integration/netns.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mtime.h"
#include "common/util.h"

#define LOAD "--clients 32 --depth 2 --rate 6000 --keys 2000 --logs 200"
#define TTL "1"

static const char *ttl = TTL; /* the daemons' coord-ttl */
static const char *b_failpoints; /* B's, for the whole test */

static struct td A, B;
static struct te E;
static struct tnet T;
static bool have_net;

static int teardown(void **state)
{
	(void)state;
	soft_reset();
	kt_netns = NULL;
	ttl = TTL;
	b_failpoints = NULL;
	int r = td_test_end();
	te_stop(&E);
	if (have_net)
		tn_teardown(&T);
	have_net = false;
	return r;
}

/* Both daemons fenced by etcd at E.url (ns: in namespaces 0 and 1, with the
 * net hook, plaintext: the test PKI names 127.0.0.1 only). */
static void start_pair(bool ns)
{
	for (struct td *d = &A; d; d = d == &A ? &B : NULL) {
		unsigned k = 0;

		if (ns) {
			d->netns = T.ns[d == &A ? 0 : 1];
			d->plaintext = true;
			d->extra_args[k++] = "--net-hook";
			d->extra_args[k++] = td_net_hook();
		}
		d->extra_args[k++] = "--coord";
		d->extra_args[k++] = E.url;
		d->extra_args[k++] = "--coord-ttl";
		d->extra_args[k++] = ttl;
		d->extra_args[k] = NULL;
		td_start(d, d == &B ? b_failpoints : NULL);
	}
}

/* Protect vm on p with a standby on b, fenced (ns: b's address on the
 * namespaces' subnet). */
static char *protect(struct td *p, struct td *b, const char *vm, bool ns)
{
	char peer[32];

	if (ns)
		snprintf(peer, sizeof peer, TN_SUBNET ".%d:%u", b == &A ? 1 : 2, b->port);
	else
		snprintf(peer, sizeof peer, "127.0.0.1:%u", b->port);
	return protect_ok(p, peer, vm, false);
}

static void test_failover_after_expiry(void **state)
{
	uint16_t port = td_free_port();
	char addr[32], out[8192], hist[300], key[64], *id, *v;
	const char *hp[1] = { hist };
	struct kt_load l;
	json_t *job;
	uint64_t t0;
	double ms;

	(void)state;
	if (!te_available())
		skip();
	td_test_begin("f1-expiry");
	te_start(&E, td_base(), "127.0.0.1", NULL);
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	start_pair(false);
	kt_create(&A, "f1", port);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	id = protect(&A, &B, "f1", false);
	v = te_get(&E, "/ferry/vm/f1/owner");
	assert_non_null(v);
	assert_string_equal(v, "A");
	free(v);
	v = te_get(&E, "/ferry/vm/f1/in-sync");
	assert_non_null(v);
	snprintf(key, sizeof key, "job=%s", id);
	assert_string_equal(v, key);
	free(v);
	snprintf(hist, sizeof hist, "%s/f1.hist", A.dir);
	kt_load_start(&l, A.dir, "f1", addr, hist, LOAD);
	h_sleep_ms(700);
	t0 = mono_ns();
	kill_host(&A);
	job = wait_stage(&B, id, "failed-over", 10000);
	ms = ns_to_ms(mono_ns() - t0);
	print_message("failed over %.0f ms after the kill (lease TTL %s s): %s\n", ms, TTL,
		      td_jstr(job, "error"));
	if (ms < 800)
		fail_msg("the standby took over %.0f ms after the kill, before the primary's %s s "
			 "lease could have expired", ms, TTL);
	json_decref(job);
	h_sleep_ms(300);
	kt_load_stop(&l);
	if (kt_check(A.dir, addr, hp, 1, out, sizeof out))
		fail_msg("check after the fenced failover: %s", out);
	v = te_get(&E, "/ferry/vm/f1/host");
	assert_non_null(v);
	assert_string_equal(v, "B");
	free(v);
	free(id);
	td_destroy(&B, "f1");
	passed();
}

/* Namespaces: A .1, B .2, clients C .3, etcd E .4; VIP .10. */
static void ns_setup(const char *test)
{
	static const char *const hosts[] = { "A", "B", "C", "E" };

	td_test_begin(test);
	tn_setup(&T, hosts, 4);
	have_net = true;
	te_start(&E, td_base(), TN_SUBNET ".4", T.ns[3]);
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	start_pair(true);
	json_decref(td_ok(&A, "{s:s, s:s, s:s, s:i, s:s, s:s}", "op", "create", "name", "db",
			  "mem", "128M", "vcpus", 1, "workload", KT_KVCONF, "net",
			  TN_SUBNET ".10:7000"));
	td_wait_net_state(&A, "db", "listening, address claimed");
	kt_netns = T.ns[2];
}

static void test_split_no_takeover(void **state)
{
	const char *addr = TN_SUBNET ".10:7000";
	char hist[300], out[8192], *id;
	const char *hp[1] = { hist };
	struct kt_load l;
	json_t *job, *r;
	uint64_t acked;

	(void)state;
	if (!te_available() || !tn_available())
		skip();
	ns_setup("f2-split");
	id = protect(&A, &B, "db", true);
	snprintf(hist, sizeof hist, "%s/f2.hist", A.dir);
	kt_load_start(&l, A.dir, "f2", addr, hist, LOAD);
	h_sleep_ms(500);
	/* A and B cannot see each other; both see etcd and the clients. */
	tn_sh("ip -n %s route add blackhole " TN_SUBNET ".2/32 && "
	      "ip -n %s route add blackhole " TN_SUBNET ".1/32", T.ns[0], T.ns[1]);
	job = wait_stage(&A, id, "degraded", 5000);
	print_message("A: %s\n", td_jstr(job, "error"));
	json_decref(job);
	job = wait_stage(&B, id, "held", 5000);
	print_message("B: %s\n", td_jstr(job, "error"));
	if (!strstr(td_jstr(job, "error"), "not the one in sync"))
		fail_msg("B holds its copy but does not say it is out of sync: %s", dumps(job));
	json_decref(job);
	/* A serves on, degraded: its clients are answered. */
	h_sleep_ms(800);
	kt_load_stop(&l);
	acked = l.acked;
	if (acked < 1000)
		fail_msg("only %lu acknowledged: did degraded A serve?", (unsigned long)acked);
	if (kt_check(A.dir, addr, hp, 1, out, sizeof out))
		fail_msg("check while A is degraded: %s", out);
	/* A is lost now; B is not in sync: nothing resumes by itself. */
	kill_host(&A);
	h_sleep_ms(2500);
	job = td_job(&B, id);
	assert_string_equal(td_jstr(job, "stage"), "held");
	json_decref(job);
	{
		struct td_rt_info ri;

		assert_int_equal(td_rt_info(B.run_dir, "db", &ri), 0);
		assert_true(ri.paused);
	}
	/* The operator forces it: the reply says what is lost, and it is. */
	r = td_ok(&B, "{s:s, s:s, s:b}", "op", "takeover", "name", "db", "force", 1);
	assert_non_null(strstr(td_jstr(r, "warning"), "lost"));
	json_decref(r);
	json_decref(wait_stage(&B, id, "failed-over", 5000));
	td_wait_net_state(&B, "db", "listening, address claimed");
	if (kt_check(A.dir, addr, hp, 1, out, sizeof out) != 1)
		fail_msg("the forced copy lacks the degraded primary's writes, yet check passed: "
			 "%s", out);
	print_message("forced takeover: check says: %.*s\n", (int)strcspn(out, "\n"), out);
	free(id);
	td_destroy(&B, "db");
	passed();
}

static void test_isolated_primary(void **state)
{
	const char *addr = TN_SUBNET ".10:7000";
	char hist[300], out[8192], *id;
	const char *hp[1] = { hist };
	struct kt_load l;
	json_t *job;
	uint64_t t0;

	(void)state;
	if (!te_available() || !tn_available())
		skip();
	ns_setup("f3-isolated");
	id = protect(&A, &B, "db", true);
	snprintf(hist, sizeof hist, "%s/f3.hist", A.dir);
	kt_load_start(&l, A.dir, "f3", addr, hist, LOAD);
	h_sleep_ms(500);
	t0 = mono_ns();
	tn_sh("ip -n %s link set eth0 down", T.ns[0]);
	job = wait_stage(&B, id, "failed-over", 15000);
	print_message("B took over %.0f ms after A's link went down: %s\n",
		      ns_to_ms(mono_ns() - t0), td_jstr(job, "error"));
	json_decref(job);
	td_wait_net_state(&B, "db", "listening, address claimed");
	job = wait_stage(&A, id, "fenced", 10000);
	print_message("A: %s\n", td_jstr(job, "error"));
	json_decref(job);
	h_sleep_ms(1500);
	kt_load_stop(&l);
	if (kt_check(A.dir, addr, hp, 1, out, sizeof out))
		fail_msg("check after A was cut off: %s", out);
	/* The link heals: A learns B owns the VM and destroys its copy. */
	tn_sh("ip -n %s link set eth0 up", T.ns[0]);
	for (uint64_t until = mono_ns() + 15 * NSEC_PER_SEC; td_listed(&A, "db", NULL);
	     h_sleep_ms(100))
		if (mono_ns() > until)
			fail_msg("A still lists its fenced copy 15 s after the heal");
	td_wait_no_runtime(A.run_dir, "db", 5000);
	free(id);
	td_destroy(&B, "db");
	passed();
}

/* The pool's record of vm names host within timeout_ms, and still does
 * hold_ms later. */
static void expect_record(const char *vm, const char *host, int timeout_ms, int hold_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC, end = 0;
	char key[128], want[96], *v = NULL;

	snprintf(key, sizeof key, "/ferry/pool/vms/%s", vm);
	snprintf(want, sizeof want, "\"host\":\"%s\"", host);
	for (;; h_sleep_ms(100)) {
		bool ok;

		free(v);
		v = te_get(&E, key);
		ok = v && strstr(v, want);
		if (ok && !end)
			end = mono_ns() + (uint64_t)hold_ms * NSEC_PER_MSEC;
		if (!ok && end)
			fail_msg("the pool's record of %s changed from %s to %s", vm, host,
				 v ? v : "(absent)");
		if (end && mono_ns() >= end)
			break;
		if (!end && mono_ns() > until)
			fail_msg("the pool's record of %s is %s, not on %s", vm, v ? v : "(absent)",
				 host);
	}
	free(v);
}

static void test_stopped_primary(void **state)
{
	const char *addr = TN_SUBNET ".10:7000";
	char hist[300], out[8192], *id;
	const char *hp[1] = { hist };
	struct kt_load l;
	json_t *job;

	(void)state;
	if (!te_available() || !tn_available())
		skip();
	ns_setup("f4-stopped");
	id = protect(&A, &B, "db", true);
	snprintf(hist, sizeof hist, "%s/f4.hist", A.dir);
	kt_load_start(&l, A.dir, "f4", addr, hist, LOAD);
	h_sleep_ms(500);
	kill(A.pid, SIGSTOP);
	job = wait_stage(&B, id, "failed-over", 15000);
	print_message("B: %s\n", td_jstr(job, "error"));
	json_decref(job);
	expect_record("db", "B", 5000, 0);
	h_sleep_ms(500);
	kill(A.pid, SIGCONT);
	job = wait_stage(&A, id, "fenced", 10000);
	print_message("A, continued: %s\n", td_jstr(job, "error"));
	json_decref(job);
	for (uint64_t until = mono_ns() + 15 * NSEC_PER_SEC; td_listed(&A, "db", NULL);
	     h_sleep_ms(100))
		if (mono_ns() > until)
			fail_msg("A still lists its fenced copy 15 s after it was continued");
	/* A, deposed, neither wrote the record back nor removed it. */
	expect_record("db", "B", 1000, 2000);
	h_sleep_ms(800);
	kt_load_stop(&l);
	if (kt_check(A.dir, addr, hp, 1, out, sizeof out))
		fail_msg("check after A was stopped past its lease: %s", out);
	free(id);
	td_destroy(&B, "db");
	passed();
}

/* Unix milliseconds now. */
static json_int_t now_ms(void)
{
	return (json_int_t)(real_ns() / NSEC_PER_MSEC);
}

/* Wait until job id on d is at stage now, having gone through stage via
 * since Unix ms; returns the job. */
static json_t *wait_again(struct td *d, const char *id, json_int_t since, const char *via,
			  const char *now, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;

	for (;; h_sleep_ms(50)) {
		json_t *job = td_job(d, id), *step;
		bool passed = false;
		size_t i;

		json_array_foreach(json_object_get(job, "history"), i, step)
			passed |= !strcmp(td_jstr(step, "stage"), via) &&
				  json_integer_value(json_object_get(step, "at_ms")) >= since;
		if (passed && !strcmp(td_jstr(job, "stage"), now))
			return job;
		if (mono_ns() > until)
			fail_msg("job %s on %s: not %s through %s: %s", id, d->name, now, via,
				 dumps(job));
		json_decref(job);
	}
}

/*
 * ferryd of the primary restarts (its guest runs on): inside the lease it
 * keeps the VM — its claim lives on — and the same pairing resyncs the
 * standby, staged: the standby keeps its copy, still named in sync, until
 * the resync is whole. Then A restarts again and is killed in the middle of
 * that resync (at its stop-and-copy, the guest paused): B runs the copy it
 * kept once A's lease has expired, and the check passes — nothing a client
 * was told is lost. Restarted past the lease, A steps down and destroys its
 * copy.
 */
static void test_restart(void **state)
{
	const char *addr = TN_SUBNET ".10:7000";
	char out[8192], h1[300], h2[300], *id;
	const char *hp[2] = { h1, h2 };
	struct kt_load l;
	json_int_t t;
	json_t *job;

	(void)state;
	if (!te_available() || !tn_available())
		skip();
	ttl = "3";
	ns_setup("f5-restart");
	snprintf(h1, sizeof h1, "%s/h1.hist", A.dir);
	snprintf(h2, sizeof h2, "%s/h2.hist", A.dir);

	/* Inside the lease: the same pairing, resynced. */
	id = protect(&A, &B, "db", true);
	kt_load_start(&l, A.dir, "h1", addr, h1, LOAD);
	h_sleep_ms(500);
	t = now_ms();
	td_kill(&A);
	td_start(&A, NULL);
	json_decref(wait_again(&A, id, t, "syncing", "protected", 30000));
	json_decref(wait_again(&B, id, t, "syncing", "standby", 5000));
	print_message("protected again after the restart (job %s, staged resync)\n", id);
	h_sleep_ms(500);
	kt_load_stop(&l);
	if (l.acked < 1000)
		fail_msg("only %lu acknowledged around the restart", (unsigned long)l.acked);
	/* Checked with the second history after the failover below: while the
	 * VM is protected, each of the check's sequential reads waits for its
	 * epoch. */

	/* Restarted again and killed inside the resync, then down past the
	 * lease: B runs the copy it kept. */
	kt_load_start(&l, A.dir, "h2", addr, h2, LOAD);
	h_sleep_ms(500);
	td_kill(&A);
	td_start(&A, "mig-src-stopcopy=stop");
	td_wait_stopped(&A, 20000);
	job = td_job(&B, id);
	print_message("B, A stopped inside the resync: %s (%s)\n", td_jstr(job, "stage"),
		      td_jstr(job, "error"));
	json_decref(job);
	td_kill(&A);
	job = wait_stage(&B, id, "failed-over", 15000);
	print_message("B, A's ferryd killed inside the resync: %s\n", td_jstr(job, "error"));
	json_decref(job);
	td_start(&A, NULL);
	job = wait_stage(&A, id, "fenced", 10000);
	print_message("A restarted past the lease: %s\n", td_jstr(job, "error"));
	json_decref(job);
	for (uint64_t until = mono_ns() + 10 * NSEC_PER_SEC; td_listed(&A, "db", NULL);
	     h_sleep_ms(100))
		if (mono_ns() > until)
			fail_msg("A still lists its copy 10 s after its restart past the lease");
	td_wait_no_runtime(A.run_dir, "db", 5000);
	h_sleep_ms(500);
	kt_load_stop(&l);
	if (kt_check(A.dir, addr, hp, 2, out, sizeof out))
		fail_msg("check after a takeover from inside the resync: %s", out);
	free(id);
	td_destroy(&B, "db");
	passed();
}

/*
 * The primary lost right after its staged resync was whole (READY said)
 * while the standby was still making the image its copy: the standby
 * finishes that step, then runs the new copy, and the check passes — the
 * output held since the restart left only with an acknowledged epoch, or
 * never.
 */
static void test_restart_apply(void **state)
{
	const char *addr = TN_SUBNET ".10:7000";
	char out[8192], hist[300], *id;
	const char *hp[1] = { hist };
	struct kt_load l;
	json_int_t t;
	json_t *job;

	(void)state;
	if (!te_available() || !tn_available())
		skip();
	ttl = "2";
	b_failpoints = "repl-resync-apply=sleep:1500";
	ns_setup("f6-restart-apply");
	snprintf(hist, sizeof hist, "%s/h.hist", A.dir);
	id = protect(&A, &B, "db", true);
	kt_load_start(&l, A.dir, "h", addr, hist, LOAD);
	h_sleep_ms(500);
	t = now_ms();
	td_kill(&A);
	td_start(&A, NULL);
	/* A is protected again once READY came; B sleeps before its apply. */
	json_decref(wait_again(&A, id, t, "syncing", "protected", 30000));
	td_kill(&A);
	job = wait_stage(&B, id, "failed-over", 15000);
	print_message("B, A killed while B applied the resync: %s\n", td_jstr(job, "error"));
	json_decref(job);
	{
		char cmd[600];

		snprintf(cmd, sizeof cmd, "grep -q 'the staged resync (' '%s'", B.log);
		if (system(cmd) != 0)
			fail_msg("B took over without making the resync its copy first");
	}
	td_start(&A, NULL);
	json_decref(wait_stage(&A, id, "fenced", 10000));
	for (uint64_t until = mono_ns() + 10 * NSEC_PER_SEC; td_listed(&A, "db", NULL);
	     h_sleep_ms(100))
		if (mono_ns() > until)
			fail_msg("A still lists its copy 10 s after its restart past the lease");
	td_wait_no_runtime(A.run_dir, "db", 5000);
	h_sleep_ms(500);
	kt_load_stop(&l);
	if (kt_check(A.dir, addr, hp, 1, out, sizeof out))
		fail_msg("check after a takeover during the resync's apply: %s", out);
	free(id);
	td_destroy(&B, "db");
	passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_failover_after_expiry, teardown),
		cmocka_unit_test_teardown(test_split_no_takeover, teardown),
		cmocka_unit_test_teardown(test_isolated_primary, teardown),
		cmocka_unit_test_teardown(test_stopped_primary, teardown),
		cmocka_unit_test_teardown(test_restart, teardown),
		cmocka_unit_test_teardown(test_restart_apply, teardown),
	};

	return cmocka_run_group_tests(tests, td_group_setup, td_group_teardown);
}
