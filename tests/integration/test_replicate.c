/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_replicate.c — protected VMs through real ferryd (DESIGN.md §7):
 *
 *  1 soak: a kvstore guest protected A -> B under 32 writing clients; the
 *    primary host is killed (SIGKILL of its ferryd and its guest's runtime)
 *    at a random moment; the standby takes over and `ferry-kv check` passes
 *    over every history so far; the dead host comes back, the survivor is
 *    protected to it, and so on, FERRY_TEST_ROUNDS kills (10 by default);
 *  2 a failpoint that releases output one epoch early makes the check fail:
 *    the test is able to see a lost acknowledged write;
 *  3 a partial epoch (the primary dies after some channels committed it, not
 *    all) is never applied: on the deterministic dirtier workload `ferry
 *    verify` proves the survivor's image is the replay of its context; also
 *    when the link is cut while one channel lags behind the other (the
 *    epoch only the other delivered is dropped whole);
 *  4 the backup's host is killed: the primary serves on, degraded, and the
 *    check passes; the backup's ferryd restarted, the primary pairs with it
 *    again by itself; protected again to a third host, a later failover passes
 *    the check too;
 *  5 protect refuses without a fencing authority unless told
 *    unsafe_no_fencing; unprotect ends the pair and the standby is gone.
 */
#include "tests/integration/checks.h"
#include "tests/integration/daemon.h"
#include "tests/integration/kvtool.h"
#include "tests/integration/proxy.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mtime.h"
#include "common/util.h"

#define JOB_ID 16
#define LOAD "--clients 32 --depth 2 --rate 8000 --keys 2000 --logs 200"

static struct td A, B, C;

static int teardown(void **state)
{
	(void)state;
	soft_reset();
	return td_test_end();
}

/* Kill the primary p now; the standby on b (job id, as on p) must take
 * over. */
static void failover(struct td *p, struct td *b, const char *id, const char *vm)
{
	json_t *job;

	kill_host(p);
	job = td_wait_job(b, id, NULL, 10000);
	if (strcmp(td_jstr(job, "stage"), "failed-over"))
		fail_msg("%s did not fail over to %s: %s", vm, b->name, dumps(job));
	print_message("  %s: %s\n", b->name, td_jstr(job, "error"));
	json_decref(job);
	td_wait_running(b, vm, 5000);
}

/* Protect vm on p with a standby on b, unfenced (no etcd here). */
static char *protect(struct td *p, struct td *b, const char *vm)
{
	char peer[32];

	snprintf(peer, sizeof peer, "127.0.0.1:%u", b->port);
	return protect_ok(p, peer, vm, true);
}

static void test_soak(void **state)
{
	unsigned rounds = h_rounds(10);
	uint16_t port = td_free_port();
	char addr[32], out[8192], (*hist)[300] = calloc(rounds, sizeof *hist);
	const char **hp = calloc(rounds, sizeof *hp);
	uint64_t acked = 0, reconnects = 0;
	double worst = 0;
	struct td *p = &A, *b = &B;

	(void)state;
	assert_non_null(hist);
	assert_non_null(hp);
	td_test_begin("r1-soak");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	td_start(&A, NULL);
	td_start(&B, NULL);
	kt_create(&A, "db1", port);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	srand((unsigned)mono_ns());
	for (unsigned r = 0; r < rounds; r++) {
		struct kt_load l;
		char tag[16], *id;
		int st;

		id = protect(p, b, "db1");
		snprintf(tag, sizeof tag, "r%u", r);
		snprintf(hist[r], sizeof hist[r], "%s/%s.hist", A.dir, tag);
		hp[r] = hist[r];
		kt_load_start(&l, A.dir, tag, addr, hist[r], LOAD);
		h_sleep_ms(300 + (unsigned)(rand() % 700));
		failover(p, b, id, "db1");
		free(id);
		h_sleep_ms(300);
		kt_load_stop(&l);
		acked += l.acked;
		reconnects += l.reconnects;
		worst = MAX(worst, l.max_wait_ms);
		st = kt_check(A.dir, addr, hp, r + 1, out, sizeof out);
		if (st != 0)
			fail_msg("kill %u (%s lost, %s took over): check failed: %s", r + 1, p->name,
				 b->name, out);
		/* The lost host comes back empty; the survivor is protected to it. */
		td_start(p, NULL);
		{
			struct td *t = p;
			p = b;
			b = t;
		}
	}
	print_message("%u kills of the primary under 32 clients: %lu requests acknowledged, %lu "
		      "reconnects, longest client wait %.1f ms; check passed after each\n", rounds,
		      (unsigned long)acked, (unsigned long)reconnects, worst);
	td_destroy(p, "db1");
	free(hist);
	free(hp);
	passed();
}

/* Output released one epoch early: some kill must lose an acknowledged
 * write, and the check must say so. */
static void test_early_release_caught(void **state)
{
	char addr[32], out[8192], hist[300], vm[16];
	const char *hp[1] = { hist };
	bool caught = false;

	(void)state;
	td_test_begin("r2-early-release");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	td_start(&B, NULL);
	for (unsigned r = 0; r < 5 && !caught; r++) {
		uint16_t port = td_free_port();
		struct kt_load l;
		char tag[16], *id;

		td_start(&A, "repl-release-early=error");
		snprintf(vm, sizeof vm, "db2-%u", r);
		snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
		kt_create(&A, vm, port);
		id = protect(&A, &B, vm);
		snprintf(tag, sizeof tag, "e%u", r);
		snprintf(hist, sizeof hist, "%s/%s.hist", A.dir, tag);
		kt_load_start(&l, A.dir, tag, addr, hist, LOAD);
		h_sleep_ms(500);
		failover(&A, &B, id, vm);
		free(id);
		h_sleep_ms(200);
		kt_load_stop(&l);
		caught = kt_check(A.dir, addr, hp, 1, out, sizeof out) == 1;
		if (caught)
			print_message("early release, kill %u: check says: %.*s\n", r + 1,
				      (int)strcspn(out, "\n"), out);
		td_destroy(&B, vm);
	}
	if (!caught)
		fail_msg("output released an epoch early, 5 kills, and the check never failed");
	passed();
}

/* The primary dies after channel 1 committed an epoch and before channel 0
 * did: the backup applies none of it; the image verifies. */
static void test_partial_epoch(void **state)
{
	json_t *job, *r;
	char id[JOB_ID];

	(void)state;
	td_test_begin("r3-partial-epoch");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	A.channels = 2;
	B.channels = 2;
	td_start(&A, "repl-primary-commit=stop");
	td_start(&B, NULL);
	td_create(&A, "d3", "128M", 1, "dirtier:ws=32M,rate=64");
	{
		char peer[32];

		snprintf(peer, sizeof peer, "127.0.0.1:%u", B.port);
		r = td_ok(&A, "{s:s, s:s, s:s, s:i, s:i, s:b}", "op", "protect", "name", "d3",
			  "peer", peer, "epoch_ms", 25, "heartbeat_ms", 300, "unsafe_no_fencing", 1);
		snprintf(id, sizeof id, "%s", td_jstr(r, "job"));
		json_decref(r);
	}
	/* Stopped inside epoch 1, after channel 1's COMMIT went out. */
	td_wait_stopped(&A, 30000);
	h_sleep_ms(50);
	kill_host(&A);
	job = td_wait_job(&B, id, NULL, 10000);
	if (strcmp(td_jstr(job, "stage"), "failed-over"))
		fail_msg("d3 did not fail over: %s", dumps(job));
	if (!strstr(td_jstr(job, "error"), "epoch 0"))
		fail_msg("the backup applied part of epoch 1: %s", td_jstr(job, "error"));
	json_decref(job);
	td_verify_ok(&B, "d3");
	td_wait_running(&B, "d3", 5000);
	td_verify_ok(&B, "d3");
	td_destroy(&B, "d3");
	passed();
}

/* The link is cut while one channel lags 150 ms behind the other (a proxy
 * holds its bytes back): an epoch the lagging channel had not delivered (the
 * other had begun it, or had it whole) is dropped whole, and the survivor's
 * image verifies. A cut can also fall just after a whole epoch, with nothing
 * partial to drop (the leading channel was acknowledging it): every cut is
 * verified, and cuts go on (up to 8) until one has dropped a partial epoch. */
static void test_partial_epoch_delayed(void **state)
{
	struct proxy_opts po = { .delay_ms = 150, .delay_conn = 1, .flip_conn = -1 };
	unsigned cut, dropped = 0;

	(void)state;
	td_test_begin("r3b-partial-delayed");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	A.channels = 2;
	B.channels = 2;
	td_start(&B, NULL);
	for (cut = 1; cut <= 8 && !dropped; cut++) {
		struct proxy *px;
		char peer[32], *id;
		json_t *job;

		td_start(&A, NULL);
		td_create(&A, "d6", "128M", 1, "dirtier:ws=32M,rate=64");
		assert_non_null(px = proxy_start_opts(B.port, &po));
		snprintf(peer, sizeof peer, "127.0.0.1:%u", proxy_port(px));
		id = protect_ok(&A, peer, "d6", true);
		h_sleep_ms(700 + 37 * cut);
		proxy_stop(px); /* every connection reset, the held bytes lost */
		kill_host(&A);
		job = td_wait_job(&B, id, NULL, 10000);
		print_message("cut %u, B: %s\n", cut, td_jstr(job, "error"));
		if (strcmp(td_jstr(job, "stage"), "failed-over"))
			fail_msg("d6 did not fail over: %s", dumps(job));
		dropped += strstr(td_jstr(job, "error"), "had not reached every channel whole") != NULL;
		json_decref(job);
		free(id);
		td_verify_ok(&B, "d6");
		td_wait_running(&B, "d6", 5000);
		td_verify_ok(&B, "d6");
		td_destroy(&B, "d6");
		td_wait_no_runtime(B.run_dir, "d6", 5000);
	}
	if (!dropped)
		fail_msg("8 cuts, and none fell inside an epoch: the lag did not show");
	passed();
}

/* The backup is lost: degraded, still serving; protected again to C, then a
 * failover there passes the check. */
static void test_backup_lost(void **state)
{
	uint16_t port = td_free_port();
	char addr[32], out[8192], h1[300], h2[300];
	const char *hp[2] = { h1, h2 };
	struct kt_load l;
	json_t *job;
	char *id;
	int st;

	(void)state;
	td_test_begin("r4-backup-lost");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	td_init(&C, "C", PTO);
	td_start(&A, NULL);
	td_start(&B, NULL);
	td_start(&C, NULL);
	kt_create(&A, "db4", port);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	snprintf(h1, sizeof h1, "%s/h1.hist", A.dir);
	snprintf(h2, sizeof h2, "%s/h2.hist", A.dir);
	id = protect(&A, &B, "db4");
	kt_load_start(&l, A.dir, "h1", addr, h1, LOAD);
	h_sleep_ms(400);
	kill_host(&B);
	job = td_wait_job(&A, id, "active", 5000);
	json_decref(job);
	for (uint64_t until = mono_ns() + 5 * NSEC_PER_SEC;; h_sleep_ms(20)) {
		job = td_job(&A, id);
		if (!strcmp(td_jstr(job, "stage"), "degraded"))
			break;
		if (mono_ns() > until)
			fail_msg("the primary is not degraded after its backup was lost: %s",
				 dumps(job));
		json_decref(job);
	}
	print_message("degraded: %s\n", td_jstr(job, "error"));
	json_decref(job);
	h_sleep_ms(400);
	kt_load_stop(&l);
	if (l.acked < 1000)
		fail_msg("only %lu writes acknowledged: did the degraded primary serve?",
			 (unsigned long)l.acked);
	st = kt_check(A.dir, addr, hp, 1, out, sizeof out);
	if (st)
		fail_msg("check after the backup was lost: %s", out);
	/* B's ferryd comes back (empty): A pairs with it again by itself. */
	td_start(&B, NULL);
	job = wait_stage(&A, id, "protected", 30000);
	print_message("protected again with B by itself, attempt %d\n",
		      (int)json_integer_value(json_object_get(job, "resync_attempts")));
	json_decref(job);
	json_decref(td_ok(&A, "{s:s, s:s}", "op", "unprotect", "name", "db4"));
	json_decref(wait_stage(&A, id, "completed", 10000));
	free(id);
	/* Again, to C; then A is lost. */
	id = protect(&A, &C, "db4");
	kt_load_start(&l, A.dir, "h2", addr, h2, LOAD);
	h_sleep_ms(500);
	failover(&A, &C, id, "db4");
	free(id);
	h_sleep_ms(300);
	kt_load_stop(&l);
	st = kt_check(A.dir, addr, hp, 2, out, sizeof out);
	if (st)
		fail_msg("check after the failover to C: %s", out);
	td_destroy(&C, "db4");
	passed();
}

static void test_refusals_and_unprotect(void **state)
{
	char peer[32], *id;
	json_t *r;

	(void)state;
	td_test_begin("r5-refusals");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	td_start(&A, NULL);
	td_start(&B, NULL);
	td_create(&A, "d5", "64M", 1, "dirtier:ws=8M,rate=16");
	snprintf(peer, sizeof peer, "127.0.0.1:%u", B.port);
	r = td_err(&A, "{s:s, s:s, s:s}", "op", "protect", "name", "d5", "peer", peer);
	assert_non_null(strstr(td_errstr(r), "unsafe_no_fencing"));
	json_decref(r);
	r = td_err(&A, "{s:s, s:s, s:s, s:i, s:b}", "op", "protect", "name", "d5", "peer", peer,
		   "heartbeat_ms", 10, "unsafe_no_fencing", 1);
	json_decref(r);
	id = protect(&A, &B, "d5");
	assert_true(td_listed(&B, "d5", NULL));
	json_decref(td_ok(&A, "{s:s, s:s}", "op", "unprotect", "name", "d5"));
	r = td_wait_job(&B, id, NULL, 5000);
	assert_string_equal(td_jstr(r, "stage"), "completed");
	json_decref(r);
	free(id);
	td_wait_no_runtime(B.run_dir, "d5", 5000);
	td_wait_running(&A, "d5", 3000);
	td_destroy(&A, "d5");
	td_assert_quiet(&B);
	passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_refusals_and_unprotect, teardown),
		cmocka_unit_test_teardown(test_partial_epoch, teardown),
		cmocka_unit_test_teardown(test_soak, teardown),
		cmocka_unit_test_teardown(test_partial_epoch_delayed, teardown),
		cmocka_unit_test_teardown(test_backup_lost, teardown),
		cmocka_unit_test_teardown(test_early_release_caught, teardown),
	};

	return cmocka_run_group_tests(tests, td_group_setup, td_group_teardown);
}
