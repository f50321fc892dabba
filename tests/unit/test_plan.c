/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_plan.c — the pool planner: every plan, replayed wave by wave, keeps
 * every host within its capacity with each VM in flight counted on both
 * hosts, and ends where it says; drain empties, consolidate packs (never
 * below GLPK's optimum, never more hosts than before), spread evens out;
 * cycles go through a third host, or are refused with a reason.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pool/plan.h"
#include "tests/poolgen.h"

#define GIB (1ull << 30)

/* Replay pl over p: the rule holds in every wave; returns the final
 * placement's per-host RAM into ram_out (nhosts). */
static void replay(const struct plan_pool *p, const struct plan *pl, uint64_t *ram_out)
{
	size_t nh = p->nhosts;
	uint64_t *ram = calloc(nh, sizeof *ram), *cpu = calloc(nh, sizeof *cpu);
	int *at = malloc(p->nvms * sizeof *at);
	size_t m = 0;

	assert_non_null(ram);
	assert_non_null(cpu);
	assert_non_null(at);
	for (size_t v = 0; v < p->nvms; v++) {
		at[v] = p->vms[v].host;
		ram[at[v]] += p->vms[v].ram;
		cpu[at[v]] += p->vms[v].vcpus;
	}
	for (unsigned w = 0; w < pl->waves; w++) {
		size_t first = m;

		/* The wave starts: each VM now also holds its destination. */
		for (; m < pl->nmoves && pl->moves[m].wave == w; m++) {
			const struct plan_move *mv = &pl->moves[m];

			assert_int_equal(at[mv->vm], mv->from);
			assert_int_not_equal(mv->from, mv->to);
			assert_true(p->hosts[mv->to].accepts);
			ram[mv->to] += p->vms[mv->vm].ram;
			cpu[mv->to] += p->vms[mv->vm].vcpus;
		}
		assert_true(m > first);
		for (size_t h = 0; h < nh; h++) {
			bool entered = false;

			for (size_t k = first; k < m; k++)
				entered |= pl->moves[k].to == (int)h;
			if (entered) {
				assert_true(ram[h] <= p->hosts[h].ram);
				assert_true(cpu[h] <= p->hosts[h].cpus);
			}
		}
		for (size_t k = first; k < m; k++) {
			const struct plan_move *mv = &pl->moves[k];

			ram[mv->from] -= p->vms[mv->vm].ram;
			cpu[mv->from] -= p->vms[mv->vm].vcpus;
			at[mv->vm] = mv->to;
		}
	}
	assert_int_equal(m, pl->nmoves);
	for (size_t v = 0; v < p->nvms; v++)
		assert_int_equal(at[v], pl->target[v]);
	if (ram_out)
		memcpy(ram_out, ram, nh * sizeof *ram);
	free(ram);
	free(cpu);
	free(at);
}

static unsigned hosts_holding(const struct plan_pool *p)
{
	unsigned n = 0;

	for (size_t h = 0; h < p->nhosts; h++)
		for (size_t v = 0; v < p->nvms; v++)
			if (p->vms[v].host == (int)h) {
				n++;
				break;
			}
	return n;
}

static void test_drain(void **state)
{
	struct plan_host hosts[3] = { { 64 * GIB, 32, true }, { 64 * GIB, 32, true },
				      { 64 * GIB, 32, true } };
	struct plan_vm vms[] = { { 16 * GIB, 4, 0 }, { 16 * GIB, 4, 0 }, { 8 * GIB, 2, 0 },
				 { 32 * GIB, 8, 1 }, { 8 * GIB, 2, 2 } };
	struct plan_pool p = { hosts, 3, vms, 5 };
	struct plan pl;
	uint64_t ram[3];

	(void)state;
	assert_int_equal(plan_drain(&p, 0, 2, &pl), 0);
	replay(&p, &pl, ram);
	assert_int_equal(ram[0], 0);
	assert_int_equal(pl.nmoves, 3);
	/* Spread by room: host 2 (8 GiB used) gets the first 16 GiB VM. */
	assert_int_equal(pl.target[0], 2);
	plan_free(&pl);

	/* No room: refused, with the VM that does not fit. */
	vms[3].ram = 60 * GIB;
	vms[4].ram = 60 * GIB;
	assert_int_equal(plan_drain(&p, 0, 2, &pl), -ENOSPC);
	assert_non_null(strstr(pl.why, "fits on no"));
	assert_null(pl.moves);
}

/* Two full hosts swap their VMs: through the empty third host, or not at all. */
static void test_cycle(void **state)
{
	struct plan_host hosts[3] = { { 8 * GIB, 8, true }, { 8 * GIB, 8, true },
				      { 8 * GIB, 8, true } };
	struct plan_vm vms[] = { { 8 * GIB, 4, 0 }, { 8 * GIB, 4, 1 } };
	struct plan_pool p = { hosts, 3, vms, 2 };
	const int swap[2] = { 1, 0 };
	struct plan pl;

	(void)state;
	assert_int_equal(plan_order(&p, swap, 4, &pl), 0);
	replay(&p, &pl, NULL);
	assert_int_equal(pl.bounces, 1);
	assert_int_equal(pl.nmoves, 3);
	plan_free(&pl);

	hosts[2].accepts = false; /* the only free host takes nothing */
	assert_int_equal(plan_order(&p, swap, 4, &pl), -ENOSPC);
	assert_non_null(strstr(pl.why, "wait on each other"));
	p.nhosts = 2;
	assert_int_equal(plan_order(&p, swap, 4, &pl), -ENOSPC);
}

/* Many random pools: every plan keeps the rule; consolidate never uses
 * more hosts than were in use, never fewer than the optimum. */
static void test_random_pools(void **state)
{
	struct plan_host hosts[8];
	struct plan_vm vms[40];
	unsigned exact = 0;

	(void)state;
	for (unsigned seed = 1; seed <= 200; seed++) {
		size_t nh = 3 + seed % 6, nv = poolgen(seed, nh, 8 + seed % 33, 0, hosts, vms);
		struct plan_pool p = { hosts, nh, vms, nv };
		unsigned parallel = 1 + seed % 4, best;
		double headroom = (seed % 3) * 0.1;
		struct plan pl;
		uint64_t ram[8];
		bool optimal;
		int r;

		r = plan_consolidate(&p, headroom, parallel, &pl);
		if (r == 0) {
			replay(&p, &pl, ram);
			if (headroom == 0)
				assert_true(pl.hosts_used <= hosts_holding(&p));
			for (size_t h = 0; h < nh; h++)
				assert_true((double)ram[h] <= (double)hosts[h].ram * (1 - headroom));
			if (nv <= 24 && plan_min_hosts(&p, headroom, 2000, &best, &optimal) == 0 &&
			    optimal) {
				assert_true(pl.hosts_used >= best);
				exact++;
			}
			plan_free(&pl);
		} else {
			assert_int_equal(r, -ENOSPC);
		}
		r = plan_drain(&p, (int)(seed % nh), parallel, &pl);
		if (r == 0) {
			replay(&p, &pl, ram);
			assert_int_equal(ram[seed % nh], 0);
			plan_free(&pl);
		} else {
			assert_int_equal(r, -ENOSPC);
		}
		assert_int_equal(plan_spread(&p, parallel, &pl), 0);
		replay(&p, &pl, NULL);
		plan_free(&pl);
	}
	assert_true(exact >= 50); /* the optimum was there to compare with */
}

static void test_consolidate_and_spread(void **state)
{
	struct plan_host hosts[4] = { { 64 * GIB, 32, true }, { 64 * GIB, 32, true },
				      { 64 * GIB, 32, true }, { 64 * GIB, 32, true } };
	struct plan_vm vms[8];
	struct plan_pool p = { hosts, 4, vms, 8 };
	struct plan pl;
	uint64_t ram[4];
	unsigned best;
	bool optimal;

	(void)state;
	/* 8 VMs of 16 GiB, two per host: two hosts hold them all. */
	for (int v = 0; v < 8; v++)
		vms[v] = (struct plan_vm){ 16 * GIB, 4, v % 4 };
	assert_int_equal(plan_consolidate(&p, 0, 2, &pl), 0);
	replay(&p, &pl, ram);
	assert_int_equal(pl.hosts_used, 2);
	assert_int_equal(pl.nmoves, 4);
	assert_int_equal(plan_min_hosts(&p, 0, 5000, &best, &optimal), 0);
	assert_true(optimal);
	assert_int_equal(best, 2);
	/* With 25 % headroom three are needed (48 GiB each). */
	plan_free(&pl);
	assert_int_equal(plan_consolidate(&p, 0.25, 2, &pl), 0);
	replay(&p, &pl, ram);
	assert_int_equal(pl.hosts_used, 3);
	for (int h = 0; h < 4; h++)
		assert_true(ram[h] <= 48 * GIB);
	plan_free(&pl);
	assert_int_equal(plan_min_hosts(&p, 0.25, 5000, &best, &optimal), 0);
	assert_int_equal(best, 3);

	/* All on one host, twice over its capacity: spread gives each host
	 * two (moving off an overfull host is always allowed). */
	for (int v = 0; v < 8; v++)
		vms[v].host = 0;
	assert_int_equal(plan_spread(&p, 3, &pl), 0);
	replay(&p, &pl, ram);
	for (int h = 0; h < 4; h++)
		assert_int_equal(ram[h], 32 * GIB);
	plan_free(&pl);

	/* A host that does not accept is emptied by consolidate too. */
	for (int v = 0; v < 8; v++)
		vms[v].host = v % 4;
	hosts[3].accepts = false;
	assert_int_equal(plan_consolidate(&p, 0, 1, &pl), 0);
	replay(&p, &pl, ram);
	assert_int_equal(ram[3], 0);
	assert_int_equal(pl.hosts_used, 2);
	plan_free(&pl);

	/* Bad input. */
	vms[0].host = 9;
	assert_int_equal(plan_spread(&p, 1, &pl), -EINVAL);
	vms[0].host = 0;
	assert_int_equal(plan_consolidate(&p, 1.0, 1, &pl), -EINVAL);
	assert_int_equal(plan_drain(&p, 0, 0, &pl), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_drain),
		cmocka_unit_test(test_cycle),
		cmocka_unit_test(test_consolidate_and_spread),
		cmocka_unit_test(test_random_pools),
	};
	return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
