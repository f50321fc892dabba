/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_kv.c — kvstore guests with real clients (ferry-kv) through real
 * ferryd:
 *
 *  1 `ferry-kv check` fails when it must: a store that drops an APPEND it
 *    acknowledged, one that applies it twice (runtime failpoints), and a
 *    stale image (the guest restored from a snapshot older than writes its
 *    clients were told about);
 *  2 a kvstore guest migrated there and back under 32 clients on loopback,
 *    FERRY_TEST_ROUNDS moves (20 by default), passes the check after every
 *    move: clients reconnect to the service address, which moves with the
 *    guest, and their retries are applied once;
 *  3 in network namespaces (hosts A and B, the clients on C, one bridge) the
 *    service address is a virtual IP that the net hook moves with the guest
 *    (address and gratuitous ARP): the clients reconnect to the same address
 *    and the check passes.
 */
#include "tests/integration/checks.h"
#include "tests/integration/daemon.h"
#include "tests/integration/kvtool.h"
#include "tests/integration/netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint/snapshot.h"
#include "common/mtime.h"
#include "common/util.h"


static struct td A, B;

static int teardown(void **state)
{
	int r;

	(void)state;
	kt_netns = NULL;
	soft_reset();
	r = td_test_end();
	return r;
}

/* A store with a fault in it: a load of APPENDs, then check must fail and
 * say what it found. */
static void faulty(const char *failpoint, const char *want)
{
	char addr[32], hist[300], out[8192];
	const char *h[1] = { hist };
	uint16_t port = td_free_port();
	struct kt_load l;
	int st;

	td_init(&A, "A", PTO);
	td_start(&A, failpoint);
	kt_create(&A, "kvf", port);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	snprintf(hist, sizeof hist, "%s/%s.hist", A.dir, failpoint);
	kt_load_start(&l, A.dir, "load", addr, hist, "--clients 4 --mix 10,30,60,0 --logs 20");
	h_sleep_ms(1000);
	kt_load_stop(&l);
	assert_true(l.acked > 100);
	st = kt_check(A.dir, addr, h, 1, out, sizeof out);
	if (st != 1 || !strstr(out, want))
		fail_msg("check with %s: exit %d, expected 1 and \"%s\": %s", failpoint, st, want, out);
	print_message("%s: check says: %.*s\n", failpoint, (int)strcspn(out, "\n"), out);
	td_destroy(&A, "kvf");
	assert_int_not_equal(td_term(&A, 5000), -1);
}

static void test_check_catches_faults(void **state)
{
	(void)state;
	td_test_begin("k1-check-faults");
	faulty("kv-drop-append=error", "lost the acknowledged APPEND");
	faulty("kv-double-append=error", "twice");
	passed();
}

/* A listening socket on 127.0.0.1:port (the port just freed by a guest). */
static int listener_on(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(fd, 64), 0);
	return fd;
}

/* The guest brought back from a snapshot older than acknowledged writes:
 * check must say they are lost or stale. */
static void test_check_catches_stale(void **state)
{
	char addr[32], h1[300], h2[300], snap[300], out[8192], err[256];
	const char *h[2] = { h1, h2 };
	struct snapshot_opts so = { .keep_running = true };
	struct snapshot_stats ss;
	uint16_t port = td_free_port();
	struct hv_domain *d;
	struct kt_load l;
	int st;

	(void)state;
	td_test_begin("k2-check-stale");
	td_init(&A, "A", PTO); /* only for its directory */
	codec_opts_default(&so.codec);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	snprintf(h1, sizeof h1, "%s/before.hist", A.dir);
	snprintf(h2, sizeof h2, "%s/after.hist", A.dir);
	snprintf(snap, sizeof snap, "%s/old.snap", A.dir);
	d = h_launch("kvstale", "mem=64M vcpus=1 workload=" KT_KVCONF, false);
	assert_int_equal(hv_net_attach(d, listener_on(port)), 0);
	kt_load_start(&l, A.dir, "l1", addr, h1, "--clients 4");
	h_sleep_ms(700);
	kt_load_stop(&l);
	assert_int_equal(snapshot_save(d, snap, &so, &ss, err, sizeof err), 0);
	kt_load_start(&l, A.dir, "l2", addr, h2, "--clients 4");
	h_sleep_ms(700);
	kt_load_stop(&l);
	assert_true(l.acked > 100);
	/* The image comes back from before the second run. */
	h_destroy(d);
	so.keep_running = false;
	assert_int_equal(snapshot_restore(snap, "kvstale", &so, &d, &ss, err, sizeof err), 0);
	assert_int_equal(hv_net_attach(d, listener_on(port)), 0);
	st = kt_check(A.dir, addr, h, 2, out, sizeof out);
	if (st != 1)
		fail_msg("check of a stale image: exit %d, expected 1: %s", st, out);
	print_message("stale image: check says: %.*s\n", (int)strcspn(out, "\n"), out);
	h_destroy(d);
	passed();
}

/* There and back under 32 clients; the check passes after every move. */
static void test_migrate_under_load(void **state)
{
	unsigned rounds = h_rounds(20);
	uint16_t port = td_free_port();
	char addr[32], out[8192], (*hist)[300] = calloc(rounds, sizeof *hist);
	const char **hp = calloc(rounds, sizeof *hp);
	uint64_t reconnects = 0, acked = 0;
	double worst = 0;

	(void)state;
	assert_non_null(hist);
	assert_non_null(hp);
	td_test_begin("k3-migrate-under-load");
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	td_start(&A, NULL);
	td_start(&B, NULL);
	kt_create(&A, "kvm", port);
	snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
	for (unsigned r = 0; r < rounds; r++) {
		struct td *from = r % 2 ? &B : &A, *to = r % 2 ? &A : &B;
		struct kt_load l;
		json_t *job;
		char tag[16];
		int st;

		snprintf(tag, sizeof tag, "r%u", r);
		snprintf(hist[r], sizeof hist[r], "%s/%s.hist", A.dir, tag);
		hp[r] = hist[r];
		kt_load_start(&l, A.dir, tag, addr, hist[r],
			      "--clients 32 --depth 2 --rate 8000 --keys 2000 --logs 200");
		h_sleep_ms(400);
		job = move_ok(from, to, "kvm");
		if (td_jnum(job, "stats.downtime_ms") > worst)
			worst = td_jnum(job, "stats.downtime_ms");
		json_decref(job);
		h_sleep_ms(400);
		kt_load_stop(&l);
		reconnects += l.reconnects;
		acked += l.acked;
		st = kt_check(A.dir, addr, hp, r + 1, out, sizeof out);
		if (st != 0)
			fail_msg("round %u (%s to %s): check failed: %s", r + 1, from->name, to->name,
				 out);
		if (l.reconnects < 32)
			fail_msg("round %u: only %lu reconnects: did the clients move?", r + 1,
				 (unsigned long)l.reconnects);
	}
	print_message("%u moves under 32 clients: %lu requests acknowledged, %lu reconnects, "
		      "worst downtime %.1f ms; check passed after each\n", rounds,
		      (unsigned long)acked, (unsigned long)reconnects, worst);
	td_destroy(rounds % 2 ? &B : &A, "kvm");
	free(hist);
	free(hp);
	passed();
}

static void test_vip_follows(void **state)
{
	static const char *const hosts[] = { "A", "B", "C" };
	const char *vip = TN_SUBNET ".10", *h[1];
	char addr[32], dest[32], hist[300], out[8192];
	struct tnet t;
	struct kt_load l;
	json_t *job;

	(void)state;
	if (!tn_available())
		skip();
	td_test_begin("k4-vip-follows");
	tn_setup(&t, hosts, 3);
	td_init(&A, "A", PTO);
	td_init(&B, "B", PTO);
	for (struct td *d = &A; d; d = d == &A ? &B : NULL) {
		d->netns = t.ns[d == &A ? 0 : 1];
		d->plaintext = true; /* the test PKI names 127.0.0.1, not these addresses */
		d->extra_args[0] = "--net-hook";
		d->extra_args[1] = td_net_hook();
		td_start(d, NULL);
	}
	snprintf(addr, sizeof addr, "%s:7000", vip);
	json_decref(td_ok(&A, "{s:s, s:s, s:s, s:i, s:s, s:s}", "op", "create", "name", "kvv",
			  "mem", "128M", "vcpus", 1, "workload", KT_KVCONF, "net", addr));
	td_wait_net_state(&A, "kvv", "listening, address claimed");
	assert_true(tn_has_addr(t.ns[0], vip));
	kt_netns = t.ns[2];
	snprintf(hist, sizeof hist, "%s/vip.hist", A.dir);
	h[0] = hist;
	kt_load_start(&l, A.dir, "vip", addr, hist, "--clients 32 --depth 2 --rate 5000");
	h_sleep_ms(500);
	snprintf(dest, sizeof dest, TN_SUBNET ".2:%u", B.port);
	job = td_ok(&A, "{s:s, s:s, s:s}", "op", "migrate", "name", "kvv", "dest", dest);
	json_decref(td_wait_job(&A, td_jstr(job, "job"), "completed", 30000));
	json_decref(job);
	td_wait_net_state(&B, "kvv", "listening, address claimed");
	assert_true(tn_has_addr(t.ns[1], vip));
	assert_false(tn_has_addr(t.ns[0], vip));
	h_sleep_ms(500);
	snprintf(dest, sizeof dest, TN_SUBNET ".1:%u", A.port);
	job = td_ok(&B, "{s:s, s:s, s:s}", "op", "migrate", "name", "kvv", "dest", dest);
	json_decref(td_wait_job(&B, td_jstr(job, "job"), "completed", 30000));
	json_decref(job);
	td_wait_net_state(&A, "kvv", "listening, address claimed");
	h_sleep_ms(500);
	kt_load_stop(&l);
	if (kt_check(A.dir, addr, h, 1, out, sizeof out) != 0)
		fail_msg("check after two moves in namespaces: %s", out);
	if (l.reconnects < 32 || l.acked < 1000)
		fail_msg("%lu acknowledged, %lu reconnects: did the clients follow the address?",
			 (unsigned long)l.acked, (unsigned long)l.reconnects);
	print_message("the address followed the guest there and back: %lu requests "
		      "acknowledged, %lu reconnects, longest wait %.0f ms\n",
		      (unsigned long)l.acked, (unsigned long)l.reconnects, l.max_wait_ms);
	assert_true(tn_has_addr(t.ns[0], vip) && !tn_has_addr(t.ns[1], vip));
	kt_netns = NULL;
	td_destroy(&A, "kvv");
	assert_int_not_equal(td_term(&A, 5000), -1);
	assert_int_not_equal(td_term(&B, 5000), -1);
	tn_teardown(&t);
	passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_check_catches_faults, teardown),
		cmocka_unit_test_teardown(test_check_catches_stale, teardown),
		cmocka_unit_test_teardown(test_migrate_under_load, teardown),
		cmocka_unit_test_teardown(test_vip_follows, teardown),
	};

	if (getenv("FERRY_TEST_ONLY"))
		cmocka_set_test_filter(getenv("FERRY_TEST_ONLY"));
	return cmocka_run_group_tests_name("kv", tests, td_group_setup, td_group_teardown);
}
