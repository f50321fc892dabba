/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/pool — the pool planner: how many hosts consolidate leaves in use
 * against the optimum (GLPK, on pools small enough to solve), and how long
 * planning takes on a large pool. JSON lines (bench/README.md).
 *
 *   bench/pool [--seeds N] [--limit-ms MS] [--big-hosts H --big-vms V]
 *
 * Pools: tests/poolgen.h (random sizes, uniformly over powers of two).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/jline.h"
#include "bench/stats.h"
#include "pool/plan.h"
#include "tests/poolgen.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static unsigned holding(const struct plan_pool *p)
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

/* Heuristic against the optimum, on nseeds pools of nh hosts and nv VMs. */
static void quality(size_t nh, size_t nv, unsigned nseeds, double headroom, int limit_ms)
{
	struct plan_host *hosts = calloc(nh, sizeof *hosts);
	struct plan_vm *vms = calloc(nv, sizeof *vms);
	double ratios[256], worst = 1, plan_ms = 0, exact_ms = 0;
	unsigned n = 0, optimal_n = 0, equal = 0, before = 0, after = 0, solved = 0;
	struct jline j = { .len = 0 };

	if (!hosts || !vms)
		exit(1);
	for (unsigned seed = 1; seed <= nseeds && n < 256; seed++) {
		struct plan_pool p = { hosts, nh, vms, 0 };
		struct plan pl;
		unsigned best;
		bool optimal;
		double t0;

		p.nvms = poolgen(seed * 7919 + nv, nh, nv, 0, hosts, vms);
		t0 = now_ms();
		if (plan_consolidate(&p, headroom, 4, &pl))
			continue;
		plan_ms += now_ms() - t0;
		t0 = now_ms();
		if (plan_min_hosts(&p, headroom, limit_ms, &best, &optimal) == 0) {
			exact_ms += now_ms() - t0;
			solved++;
			optimal_n += optimal;
			ratios[n] = (double)pl.hosts_used / best;
			if (ratios[n] > worst)
				worst = ratios[n];
			equal += pl.hosts_used == best;
			n++;
		}
		before += holding(&p);
		after += pl.hosts_used;
		plan_free(&pl);
	}
	jl_add(&j, "{\"bench\":\"pool\",\"case\":\"quality\"");
	jl_u64(&j, "hosts", nh);
	jl_u64(&j, "vms", nv);
	jl_num(&j, "headroom", headroom, true);
	jl_u64(&j, "pools", n);
	jl_u64(&j, "optimum_proved", optimal_n);
	jl_u64(&j, "heuristic_equals_optimum", equal);
	jl_num(&j, "hosts_used_to_optimum_median", stats_of(ratios, n).med, n > 0);
	jl_num(&j, "hosts_used_to_optimum_worst", worst, n > 0);
	jl_num(&j, "hosts_in_use_before_mean", (double)before / (n ? n : 1), n > 0);
	jl_num(&j, "hosts_in_use_after_mean", (double)after / (n ? n : 1), n > 0);
	jl_num(&j, "plan_ms_mean", plan_ms / (n ? n : 1), n > 0);
	jl_num(&j, "glpk_ms_mean", exact_ms / (solved ? solved : 1), solved > 0);
	jl_add(&j, "}");
	puts(j.buf);
	fflush(stdout);
	free(hosts);
	free(vms);
}

/* Time to plan on a large pool: consolidate, drain one host, spread. VMs
 * half the quality pools' size, so that 1,000 fit on 100 hosts (~60 % of
 * the vCPUs); consolidate asks for no headroom. */
static void speed(size_t nh, size_t nv, unsigned reps)
{
	struct plan_host *hosts = calloc(nh, sizeof *hosts);
	struct plan_vm *vms = calloc(nv, sizeof *vms);
	double t[3][16];
	unsigned moves[3] = { 0 }, used = 0, placed = 0;
	struct jline j = { .len = 0 };

	if (!hosts || !vms || reps > 16)
		exit(1);
	for (unsigned r = 0; r < reps; r++) {
		struct plan_pool p = { hosts, nh, vms, 0 };
		struct plan pl;
		double t0;

		p.nvms = poolgen(1000 + r, nh, nv, 1, hosts, vms);
		placed = (unsigned)p.nvms;
		t0 = now_ms();
		if (plan_consolidate(&p, 0, 8, &pl))
			exit(1);
		t[0][r] = now_ms() - t0;
		moves[0] = (unsigned)pl.nmoves;
		used = pl.hosts_used;
		plan_free(&pl);
		t0 = now_ms();
		if (plan_drain(&p, 0, 8, &pl))
			exit(1);
		t[1][r] = now_ms() - t0;
		moves[1] = (unsigned)pl.nmoves;
		plan_free(&pl);
		t0 = now_ms();
		if (plan_spread(&p, 8, &pl))
			exit(1);
		t[2][r] = now_ms() - t0;
		moves[2] = (unsigned)pl.nmoves;
		plan_free(&pl);
	}
	jl_add(&j, "{\"bench\":\"pool\",\"case\":\"speed\"");
	jl_u64(&j, "hosts", nh);
	jl_u64(&j, "vms", placed);
	jl_u64(&j, "reps", reps);
	jl_num(&j, "consolidate_ms", stats_of(t[0], reps).med, true);
	jl_u64(&j, "consolidate_moves", moves[0]);
	jl_u64(&j, "consolidate_hosts_used", used);
	jl_num(&j, "drain_ms", stats_of(t[1], reps).med, true);
	jl_u64(&j, "drain_moves", moves[1]);
	jl_num(&j, "spread_ms", stats_of(t[2], reps).med, true);
	jl_u64(&j, "spread_moves", moves[2]);
	jl_add(&j, "}");
	puts(j.buf);
	free(hosts);
	free(vms);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seeds", required_argument, 0, 's' },	   { "limit-ms", required_argument, 0, 'l' },
		{ "big-hosts", required_argument, 0, 'H' }, { "big-vms", required_argument, 0, 'V' },
		{ "help", no_argument, 0, 'h' },	   { 0 }
	};
	unsigned seeds = 20, big_h = 100, big_v = 1000;
	int limit_ms = 10000, c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': seeds = (unsigned)atoi(optarg); break;
		case 'l': limit_ms = atoi(optarg); break;
		case 'H': big_h = (unsigned)atoi(optarg); break;
		case 'V': big_v = (unsigned)atoi(optarg); break;
		default:
			fputs("usage: bench/pool [--seeds N] [--limit-ms MS] [--big-hosts H --big-vms V]\n",
			      c == 'h' ? stdout : stderr);
			return c == 'h' ? 0 : 2;
		}
	}
	quality(6, 16, seeds, 0, limit_ms);
	quality(8, 24, seeds, 0, limit_ms);
	quality(8, 24, seeds, 0.2, limit_ms);
	quality(12, 36, seeds, 0, limit_ms);
	speed(big_h, big_v, 5);
	return 0;
}
