/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_listener.c — a migration listener that no stranger can block
 * (daemon/gate.c, session/greet.c). Pool hosts A, B and D and a stranger C
 * in network namespaces on one bridge, TLS with a PKI naming the
 * namespaces' addresses. While the stranger holds 200 idle connections to
 * B (re-opened as soon as B closes them), sends random bytes on 20 and
 * attempts TLS with another CA's certificate on 20, A migrates a 256 MiB
 * dirtier to B:
 *
 *  1. from an address outside the pool's range (10.251.9.3);
 *  2. from the pool's own range (10.251.1.3), not a pool host;
 *     and with only the TLS handshakes (10.251.9.4), which get it penalised;
 *  3. a pool host misbehaving: A itself holds the idle connections and
 *     sends garbage, while D, a second pool host, migrates to B.
 *
 * Each time the migration completes and verifies within twice the time of
 * the same move without abuse (the stranger shares the 2 cores), B holds
 * fewer than 20 threads throughout, its file descriptors return to their
 * baseline once the abuse ends, and its counters say what happened.
 * Each case runs once, ten times at soak strength (scripts/soak).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/mtime.h"
#include "common/util.h"

#include "tests/integration/abuser.h"
#include "tests/integration/daemon.h"
#include "tests/integration/netns.h"

#define PTO 15000
#define MEM "256M"
#define WORKLOAD "dirtier:ws=128M,rate=32"

static struct td A, B, D;
static struct tnet T;
static char pki[300], foreign[300];

static int teardown(void **state)
{
	(void)state;
	abuser_stop_all(); /* a failed case may leave its stranger running */
	td_test_end();
	tn_teardown(&T);
	return 0;
}

static void passed(void)
{
	td_test_passed();
}

static unsigned threads_of(pid_t pid)
{
	char v[64];

	h_proc_status(pid, NULL, "Threads", v, sizeof v);
	return (unsigned)atoi(v);
}

/* Move vm from s to B, verify it there: the move's total in ms. B's
 * most threads meanwhile into *max_threads. */
static double move(struct td *s, const char *vm, unsigned *max_threads)
{
	char dest[64];
	uint64_t t0 = mono_ns();
	const char *st;
	json_t *job;
	double ms;

	snprintf(dest, sizeof dest, TN_SUBNET ".2:%u", B.port);
	job = td_ok(s, "{s:s, s:s, s:s}", "op", "migrate", "name", vm, "dest", dest);
	for (;;) {
		json_t *j = td_job(s, td_jstr(job, "job"));

		st = td_jstr(j, "state");
		*max_threads = MAX(*max_threads, threads_of(B.pid));
		if (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0 ||
		    strcmp(st, "cancelled") == 0) {
			if (strcmp(st, "completed") != 0)
				fail_msg("the move of %s to B %s: %s", vm, st, td_jstr(j, "error"));
			json_decref(j);
			break;
		}
		json_decref(j);
		if (mono_ns() - t0 > 60 * NSEC_PER_SEC)
			fail_msg("the move of %s to B did not end in 60 s", vm);
		h_sleep_ms(20);
	}
	ms = (double)(mono_ns() - t0) / 1e6;
	json_decref(job);
	td_verify_ok(&B, vm);
	return ms;
}

/* Bring vm back from B to s, untimed, so that the next move starts alike. */
static void back(struct td *s, const char *vm, const char *s_addr)
{
	char dest[64];
	json_t *job;

	snprintf(dest, sizeof dest, "%s:%u", s_addr, s->port);
	job = td_ok(&B, "{s:s, s:s, s:s}", "op", "migrate", "name", vm, "dest", dest);
	json_decref(td_wait_job(&B, td_jstr(job, "job"), "completed", 60000));
	json_decref(job);
}

static json_t *listener(void)
{
	json_t *h = td_ok(&B, "{s:s}", "op", "host");
	json_t *l = json_incref(json_object_get(json_object_get(h, "host"), "listener"));

	json_decref(h);
	assert_non_null(l);
	return l;
}

static long long count(const json_t *l, const char *group, const char *key)
{
	return (long long)json_integer_value(json_object_get(json_object_get(l, group), key));
}

/* Lines of B's log that speak of incoming connections. */
static unsigned log_lines(void)
{
	char line[1024];
	unsigned n = 0;
	FILE *f = fopen(B.log, "r");

	assert_non_null(f);
	while (fgets(line, sizeof line, f))
		n += strstr(line, "incoming") != NULL;
	fclose(f);
	return n;
}

/* B's file descriptors, once they have settled back to at most base. */
static int settled_fds(int base)
{
	uint64_t until = mono_ns() + 10 * NSEC_PER_SEC;
	int n;

	while ((n = td_fd_count(B.pid, NULL)) > base && mono_ns() < until)
		h_sleep_ms(100);
	return n;
}

/* The hosts, and D only if with_d (a daemon set up is one whose log the
 * harness shows on failure). */
static void setup_hosts(bool with_d)
{
	static const char *const names[] = { "A", "B", "C", "D" };
	static const char *const ips[] = { TN_SUBNET ".1", TN_SUBNET ".2", NULL, TN_SUBNET ".4" };
	struct td *ds[] = { &A, &B, NULL, &D };
	time_t now = time(NULL);

	tn_setup(&T, names, 4);
	/* The stranger's other address, outside the pool's range: on C's
	 * link, and routed there from B. */
	tn_sh("ip -n %s addr add 10.251.9.3/24 dev eth0 && ip -n %s addr add 10.251.9.4/24 dev eth0 "
	      "&& ip -n %s route add 10.251.9.0/24 dev eth0", T.ns[2], T.ns[2], T.ns[1]);
	snprintf(pki, sizeof pki, "%s/pki-ns", td_base());
	snprintf(foreign, sizeof foreign, "%s/pki-foreign", td_base());
	td_make_ca(pki);
	td_make_ca(foreign);
	td_make_cert(foreign, foreign, "C", TN_SUBNET ".3", now - 3600, now + 86400);
	for (unsigned i = 0; i < 4; i++) {
		if (!ds[i] || (ds[i] == &D && !with_d))
			continue;
		td_make_cert(pki, pki, names[i], ips[i], now - 3600, now + 86400);
		td_init(ds[i], names[i], PTO);
		ds[i]->netns = T.ns[i];
		ds[i]->pki_dir = pki;
	}
}

/* One case: a baseline move from src (to B and back), then the same under
 * abuse from ab; the figures printed, the limits asserted. */
static void run_case(const char *what, struct td *src, const char *src_addr,
		     const struct abuser_conf *ab)
{
	/* Once in the suite; ten times at soak strength (scripts/soak: 200). */
	unsigned rounds = MAX(1u, h_rounds(20) / 20), thr = 0, thr_base = 0, lines0, lines;
	int fd_base;

	td_create(src, "lv", MEM, 1, WORKLOAD);
	td_wait_running(src, "lv", 10000);
	h_sleep_ms(1500); /* the working set written */
	for (unsigned r = 0; r < rounds; r++) {
		struct abuser_stats st;
		double base, abused;
		json_t *l0, *l1;
		pid_t pid;

		base = move(src, "lv", &thr_base);
		h_sleep_ms(300);
		fd_base = td_fd_count(B.pid, NULL); /* with the guest here, as after the next */
		back(src, "lv", src_addr);
		l0 = listener();
		lines0 = log_lines();
		pid = abuser_start(ab);
		h_sleep_ms(2000); /* the abuse in full swing */
		abused = move(src, "lv", &thr);
		h_sleep_ms(500);
		thr = MAX(thr, threads_of(B.pid));
		abuser_stop(pid, &st);
		l1 = listener();
		lines = log_lines() - lines0;
		print_message("%s, round %u: move %.0f ms without abuse, %.0f ms under it "
			      "(x%.2f); B's threads at most %u (%u without); the stranger opened "
			      "%lu idle, %lu garbage, %lu TLS connections; B refused %lld "
			      "(penalised %lld, per source %lld, busy %lld, early %lld), failed "
			      "%lld handshakes, %lld garbage, %lld idle; %lld penalties; %u lines "
			      "in B's log\n",
			      what, r + 1, base, abused, abused / base, thr, thr_base, st.idle,
			      st.garbage, st.tls,
			      count(l1, "refused", "penalised") - count(l0, "refused", "penalised") +
				      count(l1, "refused", "source") - count(l0, "refused", "source") +
				      count(l1, "refused", "busy") - count(l0, "refused", "busy") +
				      count(l1, "refused", "early") - count(l0, "refused", "early"),
			      count(l1, "refused", "penalised") - count(l0, "refused", "penalised"),
			      count(l1, "refused", "source") - count(l0, "refused", "source"),
			      count(l1, "refused", "busy") - count(l0, "refused", "busy"),
			      count(l1, "refused", "early") - count(l0, "refused", "early"),
			      count(l1, "failed", "handshake") - count(l0, "failed", "handshake"),
			      count(l1, "failed", "garbage") - count(l0, "failed", "garbage"),
			      count(l1, "failed", "timeout") - count(l0, "failed", "timeout"),
			      (long long)json_integer_value(json_object_get(l1, "penalties")) -
				      (long long)json_integer_value(json_object_get(l0, "penalties")),
			      lines);
		/* Once per address per 10 s, with counts: not a line per connection. */
		if (lines > 10)
			fail_msg("%s: %u lines about incoming connections in B's log", what, lines);
		if (st.idle < ab->idle)
			fail_msg("the stranger opened only %lu idle connections", st.idle);
		if (abused > 2 * base)
			fail_msg("%s: the move took %.0f ms under abuse, %.0f ms without: more than "
				 "twice", what, abused, base);
		if (thr >= 20)
			fail_msg("%s: B held %u threads under abuse", what, thr);
		if (settled_fds(fd_base) > fd_base)
			fail_msg("%s: B's descriptors did not return to %d after the abuse (%d)",
				 what, fd_base, td_fd_count(B.pid, NULL));
		/* The abuse was seen for what it was. */
		assert_true(count(l1, "failed", "timeout") + count(l1, "refused", "source") +
				    count(l1, "refused", "penalised") >
			    count(l0, "failed", "timeout") + count(l0, "refused", "source") +
				    count(l0, "refused", "penalised"));
		json_decref(l0);
		json_decref(l1);
		back(src, "lv", src_addr);
	}
	td_destroy(src, "lv");
}

static void test_stranger(void **state)
{
	struct abuser_conf out = { .src = "10.251.9.3", .dst = TN_SUBNET ".2", .idle = 200,
				   .garbage = 20, .tls = 20, .tls_name = "C" };
	struct abuser_conf in = out, tls = out;

	(void)state;
	if (!tn_available())
		skip();
	td_test_begin("l1-stranger");
	setup_hosts(false);
	td_start(&A, NULL);
	td_start(&B, NULL);
	out.netns = in.netns = T.ns[2];
	out.port = in.port = B.port;
	out.tls_pki = in.tls_pki = foreign;
	in.src = TN_SUBNET ".3";
	tls.netns = T.ns[2];
	tls.port = B.port;
	tls.tls_pki = foreign;
	tls.src = "10.251.9.4";
	tls.idle = tls.garbage = 0;
	tls.tls = 4; /* under the per-source limit: the handshakes fail */
	run_case("a stranger from outside the pool's range", &A, TN_SUBNET ".1", &out);
	run_case("a stranger from the pool's own range", &A, TN_SUBNET ".1", &in);
	/* Only handshakes with another CA's certificate (4 at a time, under
	 * the per-source limit): failed, and penalised for that. */
	{
		json_t *l0 = listener(), *l1;

		run_case("a stranger with another CA's certificate only", &A, TN_SUBNET ".1", &tls);
		l1 = listener();
		assert_true(count(l1, "failed", "handshake") - count(l0, "failed", "handshake") >= 1);
		assert_true(json_integer_value(json_object_get(l1, "penalties")) >
			    json_integer_value(json_object_get(l0, "penalties")));
		json_decref(l0);
		json_decref(l1);
	}
	td_assert_quiet(&A);
	assert_int_not_equal(td_term(&A, 5000), -1);
	assert_int_not_equal(td_term(&B, 5000), -1);
	tn_teardown(&T);
	passed();
}

static void test_pool_host_misbehaves(void **state)
{
	struct abuser_conf ab = { .src = TN_SUBNET ".1", .dst = TN_SUBNET ".2", .idle = 200,
				  .garbage = 20 };

	(void)state;
	if (!tn_available())
		skip();
	td_test_begin("l2-pool-host");
	setup_hosts(true);
	td_start(&A, NULL);
	td_start(&B, NULL);
	td_start(&D, NULL);
	/* A becomes a pool host in B's eyes by migrating there once. */
	td_create(&A, "la", "64M", 1, "dirtier:ws=16M,rate=8");
	td_wait_running(&A, "la", 10000);
	{
		unsigned t = 0;

		move(&A, "la", &t);
	}
	td_destroy(&B, "la");
	ab.netns = T.ns[0];
	ab.port = B.port;
	run_case("pool host A misbehaving, D migrating", &D, TN_SUBNET ".4", &ab);
	assert_int_not_equal(td_term(&A, 5000), -1);
	assert_int_not_equal(td_term(&B, 5000), -1);
	assert_int_not_equal(td_term(&D, 5000), -1);
	tn_teardown(&T);
	passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_stranger, teardown),
		cmocka_unit_test_teardown(test_pool_host_misbehaves, teardown),
	};

	if (getenv("FERRY_TEST_ONLY"))
		cmocka_set_test_filter(getenv("FERRY_TEST_ONLY"));
	return cmocka_run_group_tests_name("listener", tests, td_group_setup,
					   td_group_teardown);
}
