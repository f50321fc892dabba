/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_xen_netbuf.c — a Xen guest's output held per epoch (hv/xen_netbuf.c):
 *  - the gate against a model of sch_plug (its two counts, as
 *    net/sched/sch_plug.c keeps them), driven by random epochs, packets and
 *    late acknowledgements: no packet leaves before its epoch is
 *    acknowledged, and everything leaves once gating ends;
 *  - the plumbing in a network namespace of its own, a veth standing in
 *    for the vif: set up, and on a kernel without sch_plug (this machine's)
 *    a clear error and nothing left behind (no IFB, no ingress qdisc).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hv/xen_netbuf.h"

/* ---- sch_plug, as net/sched/sch_plug.c counts ---- */

#define MAXP 200000

struct plug {
	uint64_t q[MAXP]; /* epochs of the queued packets, FIFO */
	size_t head, tail;
	uint64_t cur, last, to_release;
	bool indefinite;
	uint64_t acked; /* the standby has epochs up to this */
	unsigned buffers, releases;
};

static void leave(struct plug *p)
{
	while (p->head < p->tail && (p->indefinite || p->to_release)) {
		uint64_t e = p->q[p->head++];

		if (!p->indefinite) {
			p->to_release--;
			if (e > p->acked)
				fail_msg("a packet of epoch %llu left with epochs up to %llu acknowledged",
					 (unsigned long long)e, (unsigned long long)p->acked);
		}
	}
}

static int plug_op(void *ctx, enum xen_plug_op op)
{
	struct plug *p = ctx;

	switch (op) {
	case XEN_PLUG_BUFFER: /* TCQ_PLUG_BUFFER */
		p->last = p->cur;
		p->cur = 0;
		p->indefinite = false;
		p->buffers++;
		break;
	case XEN_PLUG_RELEASE_ONE: /* TCQ_PLUG_RELEASE_ONE */
		p->to_release += p->last;
		p->last = 0;
		p->releases++;
		break;
	case XEN_PLUG_RELEASE_ALL: /* TCQ_PLUG_RELEASE_INDEFINITE */
		p->indefinite = true;
		p->cur = p->last = 0;
		break;
	}
	leave(p);
	return 0;
}

static void send_pkt(struct plug *p, uint64_t epoch)
{
	assert_true(p->tail < MAXP);
	p->q[p->tail++] = epoch;
	p->cur++;
	leave(p);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Epochs with packets; acknowledgements arrive late, sometimes several
 * epochs late, always in order (as the primary's monitor delivers them). */
static void test_gate_never_early(void **state)
{
	static struct plug p;
	uint64_t seed = 0x9e3779b97f4a7c15ULL;

	(void)state;
	for (int round = 0; round < 50; round++) {
		struct xen_gate g = { .plug = plug_op, .ctx = &p };
		uint64_t epoch = 1, acked = 0;
		bool restart = round % 5 == 4;

		memset(&p, 0, sizeof p);
		if (restart) {
			/* A restarted daemon: output of epoch 6 (and before) waits. */
			for (int i = 0; i < 10; i++)
				send_pkt(&p, 6);
			epoch = 7;
			acked = 5;
			p.acked = acked;
		}
		assert_int_equal(xen_gate_hold(&g, epoch, restart), 0);
		for (int e = 0; e < 300; e++) {
			unsigned k = (unsigned)(rnd(&seed) % 20);

			for (unsigned i = 0; i < k; i++)
				send_pkt(&p, epoch);
			/* the epoch ends: the guest pauses, a new one begins */
			epoch++;
			assert_int_equal(xen_gate_mark(&g, epoch), 0);
			/* acknowledgements of finished epochs, maybe late, in order */
			while (acked + 1 < epoch && rnd(&seed) % 3) {
				p.acked = ++acked;
				assert_int_equal(xen_gate_release(&g, acked), 0);
			}
		}
		/* Everything acknowledged: all but the running epoch's output is out. */
		while (acked + 1 < epoch) {
			p.acked = ++acked;
			assert_int_equal(xen_gate_release(&g, acked), 0);
		}
		assert_int_equal(xen_gate_mark(&g, epoch + 1), 0);
		p.acked = epoch;
		assert_int_equal(xen_gate_release(&g, epoch), 0);
		assert_int_equal(p.head, p.tail);
		/* Gating ends: what comes now leaves at once. */
		assert_int_equal(xen_gate_open(&g), 0);
		send_pkt(&p, epoch + 5);
		assert_int_equal(p.head, p.tail);
		assert_true(p.buffers > 10 && p.releases > 10);
	}
}

/* ---- the plumbing, in a namespace of our own ---- */

static int run(const char *cmd)
{
	int st = system(cmd);

	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int in_netns(void)
{
	struct xen_netbuf *nb = NULL;
	char err[256] = "", ifb[16];
	bool held;
	int r;

	if (unshare(CLONE_NEWNET))
		return 10;
	if (run("ip link add vif7.0 type veth peer name dom7peer && ip link set vif7.0 up && "
		"ip link set dom7peer up"))
		return 11;
	xen_netbuf_ifb_name("vif7.0", ifb);
	if (strcmp(ifb, "fyvif7.0"))
		return 12;
	r = xen_netbuf_setup("vif7.0", &nb, &held, err, sizeof err);
	if (r == 0) {
		/* A kernel with sch_plug: set up, then everything goes again. */
		if (held || run("ip link show fyvif7.0 >/dev/null 2>&1") ||
		    run("tc filter show dev vif7.0 ingress | grep -q mirred"))
			return 13;
		xen_netbuf_teardown(nb);
	} else {
		fprintf(stderr, "setup: %s\n", err);
		if (r != -EOPNOTSUPP || !strstr(err, "sch_plug"))
			return 14;
	}
	/* Nothing is left: no IFB, no ingress qdisc on the vif. */
	if (!run("ip link show fyvif7.0 >/dev/null 2>&1"))
		return 15;
	if (!run("tc qdisc show dev vif7.0 | grep -q ingress"))
		return 16;
	/* A vif that does not exist is an error that says so. */
	if (xen_netbuf_setup("vif9.9", &nb, &held, err, sizeof err) != -ENODEV ||
	    !strstr(err, "vif9.9"))
		return 17;
	return 0;
}

static void test_plumbing(void **state)
{
	pid_t pid;
	int st;

	(void)state;
	if (geteuid() != 0) {
		skip();
		return;
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(in_netns());
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gate_never_early),
		cmocka_unit_test(test_plumbing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
