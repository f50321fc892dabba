/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_migrate.c — the pre-copy engine between two real ferry-mvm processes
 * over loopback TCP channels, one or several (no daemon: tests/integration/
 * test_ferryd.c has the daemons).
 */
#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrate/precopy.h"
#include "session/session.h"
#include "transport/chan.h"
#include "transport/tcp.h"

#define MAX_CH 4

/* A connected loopback TCP pair. */
static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
	*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(*a, (struct sockaddr *)&sa, sizeof sa), 0);
	*b = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(*b >= 0);
	close(l);
}

struct recv_job {
	struct chan *ch[MAX_CH];
	unsigned n;
	const char *name;
	int close_after_ms; /* > 0: hang up early instead of receiving */
	int r;
	struct hv_domain *d;
	char err[256];
};

static void *receiver(void *arg)
{
	struct recv_job *j = arg;
	struct migrate_opts o;
	struct session *s;

	if (j->close_after_ms) {
		h_sleep_ms((unsigned)j->close_after_ms);
		for (unsigned i = 0; i < j->n; i++)
			chan_shutdown(j->ch[i]);
		j->r = -ECONNRESET;
		return NULL;
	}
	migrate_opts_default(&o);
	o.peer_timeout_ms = 10000;
	assert_int_equal(session_wrap(j->ch, j->n, o.peer_timeout_ms, &s), 0);
	memset(j->ch, 0, sizeof j->ch); /* the session's now */
	j->r = migrate_recv(s, j->name, &o, &j->d, j->err, sizeof j->err);
	session_free(s);
	return NULL;
}

static void verify_ok(struct hv_domain *d)
{
	struct mvm_verify v;

	assert_int_equal(hv_mvm_verify(d, &v), 0);
	if (v.why != MVM_VERIFY_OK)
		fail_msg("verify: %s", v.msg);
}

/* Migrate d to a new domain named to over nch channels; returns the
 * engine's result. */
static int move_n(struct hv_domain *d, const char *to, unsigned nch, const struct migrate_opts *o,
		  struct migrate_stats *st, struct hv_domain **out, int close_after_ms)
{
	struct recv_job j = { .name = to, .n = nch, .close_after_ms = close_after_ms };
	struct chan *sch[MAX_CH] = { 0 };
	struct session *s;
	pthread_t t;
	char err[256];
	int r;

	for (unsigned i = 0; i < nch; i++) {
		int a, b;

		tcp_pair(&a, &b);
		assert_int_equal(chan_tcp_new(a, &sch[i]), 0);
		assert_int_equal(chan_tcp_new(b, &j.ch[i]), 0);
	}
	assert_int_equal(session_wrap(sch, nch, o->peer_timeout_ms, &s), 0);
	assert_int_equal(pthread_create(&t, NULL, receiver, &j), 0);
	r = migrate_send(d, s, o, st, err, sizeof err);
	session_free(s);
	pthread_join(t, NULL);
	for (unsigned i = 0; i < nch; i++)
		chan_free(j.ch[i]);
	if (r && getenv("FERRY_TEST_TRACE"))
		print_message("source: %s; destination: %s\n", err, j.err);
	if (r == 0) {
		struct hv_info info;
		if (j.r)
			fail_msg("source done, destination failed: %s", j.err);
		assert_int_equal(hv_info(j.d, &info), 0);
		h_track_pid(info.pid);
		*out = j.d;
	} else {
		char uri[96];

		assert_int_not_equal(j.r, 0); /* the destination discarded its copy */
		snprintf(uri, sizeof uri, "mvm:%s", to);
		assert_int_equal(hv_open(uri, out), -ENOENT);
	}
	return r;
}

static int move(struct hv_domain *d, const char *to, const struct migrate_opts *o,
		struct migrate_stats *st, struct hv_domain **out, int close_after_ms)
{
	return move_n(d, to, 1, o, st, out, close_after_ms);
}

/* idle, fill and dirtier guests move A→B and back; verify after each move. */
static void test_there_and_back(void **state)
{
	static const char *const cfgs[] = {
		"mem=256M vcpus=1 workload=idle",
		"mem=256M vcpus=2 workload=fill:ws=64M",
		"mem=256M vcpus=2 workload=dirtier:ws=128M,rate=16",
	};

	(void)state;
	for (unsigned round = 0; round < h_rounds(20) / 10 + 1; round++)
		for (unsigned k = 0; k < 3; k++) {
			struct hv_domain *a = h_launch("mig-a", cfgs[k], false), *b, *c;
			struct migrate_opts o;
			struct migrate_stats st;

			migrate_opts_default(&o);
			h_sleep_ms(200);
			assert_int_equal(move(a, "mig-b", &o, &st, &b, 0), 0);
			hv_close(a);
			if (round == 0)
				print_message("%s: %u iterations, %.1f MiB sent, downtime %.1f ms, "
					      "total %.0f ms\n", cfgs[k], st.iterations,
					      (double)st.bytes / (1 << 20), st.downtime_ns / 1e6,
					      st.total_ns / 1e6);
			assert_true(st.committed);
			assert_int_equal(hv_open("mvm:mig-a", &a), -ENOENT);
			verify_ok(b);
			h_sleep_ms(100);
			assert_int_equal(move(b, "mig-a", &o, &st, &c, 0), 0);
			hv_close(b);
			verify_ok(c);
			h_destroy(c);
		}
}

/* Dirtier guests over 2, 3 and 4 channels, with deltas and LZ4 on: every
 * move verifies, and every channel carried part of the guest. */
static void test_channels(void **state)
{
	(void)state;
	for (unsigned round = 0; round < h_rounds(20) / 5 + 1; round++)
		for (unsigned n = 2; n <= MAX_CH; n++) {
			struct hv_domain *a = h_launch("ch-a", "mem=256M vcpus=2 "
						       "workload=dirtier:ws=128M,rate=32", false);
			struct hv_domain *b, *c;
			struct migrate_opts o;
			struct migrate_stats st;

			/* An unreachable target and a few passes: pages go again and
			 * again, as deltas, on their channels. */
			migrate_opts_default(&o);
			o.downtime_ns = 1000;
			o.max_iters = 4;
			o.on_no_converge = NOCONV_STOP;
			h_sleep_ms(150);
			assert_int_equal(move_n(a, "ch-b", n, &o, &st, &b, 0), 0);
			hv_close(a);
			assert_int_equal(st.channels, n);
			assert_true(st.iterations >= 1);
			if (round == 0)
				print_message("%u channels: %u iterations, %.1f MiB, %" PRIu64 " delta "
					      "pages, downtime %.1f ms\n", n, st.iterations,
					      (double)st.bytes / (1 << 20), st.pages[STREAM_ENC_DELTA],
					      st.downtime_ns / 1e6);
			verify_ok(b);
			assert_int_equal(move_n(b, "ch-a", n, &o, &st, &c, 0), 0);
			hv_close(b);
			verify_ok(c);
			h_destroy(c);
		}
}

/* The destination hangs up mid-way, over one channel and over three: the
 * source rolls back and runs on. */
static void test_dest_vanishes(void **state)
{
	static const unsigned nch[] = { 1, 3 };

	(void)state;
	for (unsigned k = 0; k < 2; k++) {
		struct hv_domain *a = h_launch("stay", "mem=256M vcpus=2 "
					       "workload=dirtier:ws=128M,rate=32", false), *b = NULL;
		struct migrate_opts o;
		struct migrate_stats st;
		struct hv_info info;

		migrate_opts_default(&o);
		h_sleep_ms(100);
		assert_int_not_equal(move_n(a, "gone", nch[k], &o, &st, &b, 5), 0);
		assert_false(st.committed);
		assert_int_equal(hv_info(a, &info), 0);
		assert_int_equal(info.paused, 0);
		assert_int_equal(info.logdirty, 0);
		verify_ok(a);
		h_destroy(a);
	}
}

/* A guest dirtying faster than the target allows: abort leaves it running
 * and intact; stop moves it anyway; throttle slows it and moves it. */
static void test_no_converge(void **state)
{
	static const enum noconv_policy pol[] = { NOCONV_ABORT, NOCONV_STOP, NOCONV_THROTTLE };

	(void)state;
	for (unsigned k = 0; k < 3; k++) {
		struct hv_domain *a = h_launch("hot", "mem=128M vcpus=2 workload=dirtier:ws=128M,rate=max",
					       false), *b = NULL;
		struct migrate_opts o;
		struct migrate_stats st;
		struct hv_info info;
		int r;

		migrate_opts_default(&o);
		o.downtime_ns = 1000; /* 1 µs: unreachable */
		o.max_iters = 3;
		o.on_no_converge = pol[k];
		h_sleep_ms(100);
		r = move(a, "hot-b", &o, &st, &b, 0);
		if (r == 0 && st.expected_downtime_ns <= o.downtime_ns) {
			/* The guest wrote nothing in an iteration (starved of CPU on a
			 * loaded machine), so it converged: the policy had nothing to do. */
			print_message("policy %u not exercised: the guest was idle\n", k);
			hv_close(a);
			verify_ok(b);
			h_destroy(b);
			continue;
		}
		if (pol[k] == NOCONV_ABORT) {
			assert_int_equal(r, -ETIMEDOUT);
			assert_int_equal(hv_info(a, &info), 0);
			assert_int_equal(info.paused, 0);
			verify_ok(a);
			h_destroy(a);
			continue;
		}
		assert_int_equal(r, 0);
		if (pol[k] == NOCONV_THROTTLE)
			assert_true(st.throttle > 0);
		hv_close(a);
		verify_ok(b);
		h_destroy(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_there_and_back),
		cmocka_unit_test(test_dest_vanishes),
		cmocka_unit_test(test_channels),
		cmocka_unit_test(test_no_converge),
	};
	return cmocka_run_group_tests_name("migrate", tests, h_group_setup, h_group_teardown);
}
