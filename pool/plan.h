/* SPDX-License-Identifier: Apache-2.0 */
/*
 * plan.h — the pool manager's planner: where each VM should run, and the
 * order of the moves that gets it there.
 *
 * A pool is hosts with a capacity in two dimensions, RAM and vCPUs (a
 * host's cores times the pool's vCPU ratio), and VMs of a size in both,
 * each on one host. A plan is a target host for every VM and the moves from
 * here to there, in waves: the moves of a wave run at once (at most
 * `parallel` of them), and a wave starts when the one before has ended.
 *
 * The rule every plan keeps: no host is ever asked to hold more than its
 * capacity, counting each VM in flight on both its hosts (a migrating VM
 * holds its RAM on the source until the destination runs it). Targets are
 * packed within capacity × (1 − headroom); the moves only within capacity.
 * When moves wait on each other in a cycle (two full hosts swapping VMs),
 * one VM goes through a third host with room; with none, the plan is
 * infeasible and says why. Heuristics, not an optimum: plan_min_hosts()
 * gives the optimum (GLPK) to measure them against on small pools.
 *
 * Pure computation: no I/O, no globals; a pool is never changed.
 */
#ifndef FERRY_POOL_PLAN_H
#define FERRY_POOL_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct plan_host {
	uint64_t ram;  /* bytes its guests may use */
	uint32_t cpus; /* vCPUs it may run */
	bool accepts;  /* may receive VMs (false: being drained, or going away) */
};

struct plan_vm {
	uint64_t ram;
	uint32_t vcpus;
	int host; /* index into the pool's hosts */
};

struct plan_pool {
	const struct plan_host *hosts;
	size_t nhosts;
	const struct plan_vm *vms;
	size_t nvms;
};

struct plan_move {
	int vm;
	int from, to;
	unsigned wave; /* 0, 1, ...: a wave's moves run at once */
};

struct plan {
	int *target;             /* per VM: the host it ends on */
	struct plan_move *moves; /* by wave */
	size_t nmoves;
	unsigned waves;
	unsigned bounces;        /* moves through a third host, to break a cycle */
	unsigned hosts_used;     /* hosts that hold a VM at the end */
	char why[200];           /* set when a plan function returns -ENOSPC */
};

/*
 * Each returns 0 and a plan (free it with plan_free), -ENOSPC when no plan
 * keeps the rule (plan->why says what does not fit; nothing else is set),
 * -EINVAL for a pool that breaks its own rules (a VM on no host, a host
 * over capacity is allowed: moves then only make it better), -ENOMEM.
 * parallel: most moves in flight at once, >= 1.
 */

/* Empty host h: its VMs go where there is the most room left (spreading
 * the load). Hosts that do not accept take nothing. */
int plan_drain(const struct plan_pool *p, int h, unsigned parallel, struct plan *out);

/* Pack the VMs onto as few hosts as fit within the headroom (0 <= headroom
 * < 1): keep the hosts that cover most of the demand in their scarcer
 * dimension, as few as hold everything; VMs already on a kept host stay
 * (one over the headroom gives up its heaviest), the others go best fit,
 * heaviest first. Hosts that do not accept are never kept. The hosts with
 * no VM at the end are the ones to power down. */
int plan_consolidate(const struct plan_pool *p, double headroom, unsigned parallel,
		     struct plan *out);

/* Spread the VMs over every host that accepts, evening out the load (the
 * larger of RAM and vCPU share per host) with as few moves as do it. */
int plan_spread(const struct plan_pool *p, unsigned parallel, struct plan *out);

/* The moves from where the VMs run to target[] (one host per VM), in waves
 * that keep the rule. Used by the three above; target must fit the
 * capacities. */
int plan_order(const struct plan_pool *p, const int *target, unsigned parallel,
	       struct plan *out);

void plan_free(struct plan *pl);

/* A host's load: the larger of its RAM and vCPU shares, given its RAM and
 * vCPUs in use (0 for a host with no capacity). */
double plan_load(const struct plan_host *h, uint64_t ram, uint64_t vcpus);

/*
 * The fewest hosts that can hold every VM within the headroom, as a mixed
 * integer program solved by GLPK (bin packing in two dimensions), giving
 * up after time_limit_ms. 0 and *hosts, with *optimal true if GLPK proved
 * it; -ETIMEDOUT with nothing found in time; -ENOSPC if no assignment fits.
 */
int plan_min_hosts(const struct plan_pool *p, double headroom, int time_limit_ms,
		   unsigned *hosts, bool *optimal);

#endif
