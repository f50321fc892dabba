/* SPDX-License-Identifier: Apache-2.0 */
/* plan.c — the pool manager's planner; see plan.h. */
#include "pool/plan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a host holds while a plan is made. */
struct use {
	uint64_t ram, cpus;
};

double plan_load(const struct plan_host *h, uint64_t ram, uint64_t vcpus)
{
	double r = h->ram ? (double)ram / (double)h->ram : (ram ? INFINITY : 0);
	double c = h->cpus ? (double)vcpus / (double)h->cpus : (vcpus ? INFINITY : 0);

	return r > c ? r : c;
}

static double load_of(const struct plan_pool *p, const struct use *u, int h)
{
	return plan_load(&p->hosts[h], u[h].ram, u[h].cpus);
}

/* Host h, holding u, has room for v within room (1 − headroom) of its capacity. */
static bool fits(const struct plan_host *h, const struct use *u, const struct plan_vm *v,
		 double room)
{
	return (double)(u->ram + v->ram) <= (double)h->ram * room &&
	       (double)(u->cpus + v->vcpus) <= (double)h->cpus * room;
}

static void add(struct use *u, const struct plan_vm *v)
{
	u->ram += v->ram;
	u->cpus += v->vcpus;
}

static void sub(struct use *u, const struct plan_vm *v)
{
	u->ram -= v->ram;
	u->cpus -= v->vcpus;
}

static int check_pool(const struct plan_pool *p, unsigned parallel)
{
	if (!parallel || (p->nvms && !p->vms) || (p->nhosts && !p->hosts) || p->nhosts > INT32_MAX ||
	    p->nvms > INT32_MAX)
		return -EINVAL;
	for (size_t v = 0; v < p->nvms; v++)
		if (p->vms[v].host < 0 || (size_t)p->vms[v].host >= p->nhosts)
			return -EINVAL;
	return 0;
}

/* Per-host use of an assignment (where[v] for each VM). */
static struct use *use_of(const struct plan_pool *p, const int *where)
{
	struct use *u = calloc(p->nhosts ? p->nhosts : 1, sizeof *u);

	if (u)
		for (size_t v = 0; v < p->nvms; v++)
			add(&u[where[v]], &p->vms[v]);
	return u;
}

static int *current(const struct plan_pool *p)
{
	int *t = malloc((p->nvms ? p->nvms : 1) * sizeof *t);

	if (t)
		for (size_t v = 0; v < p->nvms; v++)
			t[v] = p->vms[v].host;
	return t;
}

/* VM indices, largest first (RAM, then vCPUs, then index: deterministic). */
static int by_size_desc(const void *a, const void *b, void *ctx)
{
	const struct plan_vm *vms = ctx;
	const struct plan_vm *x = &vms[*(const int *)a], *y = &vms[*(const int *)b];

	if (x->ram != y->ram)
		return x->ram > y->ram ? -1 : 1;
	if (x->vcpus != y->vcpus)
		return x->vcpus > y->vcpus ? -1 : 1;
	return *(const int *)a - *(const int *)b;
}

static int *vms_by_size(const struct plan_pool *p)
{
	int *idx = malloc((p->nvms ? p->nvms : 1) * sizeof *idx);

	if (!idx)
		return NULL;
	for (size_t v = 0; v < p->nvms; v++)
		idx[v] = (int)v;
	qsort_r(idx, p->nvms, sizeof *idx, by_size_desc, (void *)p->vms);
	return idx;
}

static void say_no_room(struct plan *out, const struct plan_vm *v, int vm, const char *where)
{
	snprintf(out->why, sizeof out->why, "VM %d (%llu MiB, %u vCPUs) fits on no %s", vm,
		 (unsigned long long)(v->ram >> 20), v->vcpus, where);
}

/* ---- the order of the moves ---- */

int plan_order(const struct plan_pool *p, const int *target, unsigned parallel, struct plan *out)
{
	size_t n = p->nvms, npend = 0, cap = 2 * n + 1;
	int *cur = NULL, *pend = NULL, *order = NULL;
	struct use *use = NULL, *fin = NULL, *now = NULL;
	bool *busy = NULL;
	int r = check_pool(p, parallel);

	if (r)
		return r;
	memset(out, 0, sizeof *out);
	for (size_t v = 0; v < n; v++)
		if (target[v] < 0 || (size_t)target[v] >= p->nhosts)
			return -EINVAL;
	cur = current(p);
	use = use_of(p, cur);
	fin = use_of(p, target);
	now = use_of(p, cur);
	order = vms_by_size(p);
	pend = malloc((n ? n : 1) * sizeof *pend);
	busy = calloc(p->nhosts ? p->nhosts : 1, sizeof *busy);
	out->target = malloc((n ? n : 1) * sizeof *out->target);
	out->moves = malloc(cap * sizeof *out->moves);
	r = -ENOMEM;
	if (!cur || !use || !fin || !now || !order || !pend || !busy || !out->target || !out->moves)
		goto fail;
	memcpy(out->target, target, n * sizeof *target);
	/* A host may end over capacity only if it was already and nothing
	 * more comes to it. */
	for (size_t h = 0; h < p->nhosts; h++)
		if ((fin[h].ram > p->hosts[h].ram && fin[h].ram > now[h].ram) ||
		    (fin[h].cpus > p->hosts[h].cpus && fin[h].cpus > now[h].cpus)) {
			snprintf(out->why, sizeof out->why, "the target holds more than host %zu has", h);
			r = -ENOSPC;
			goto fail;
		}
	for (size_t i = 0; i < n; i++)
		if (cur[order[i]] != target[order[i]])
			pend[npend++] = order[i];

	for (unsigned wave = 0; npend; wave++) {
		size_t first = out->nmoves, started = 0;

		for (size_t i = 0; i < npend && started < parallel; i++) {
			int v = pend[i], t = out->target[v];

			if (fits(&p->hosts[t], &use[t], &p->vms[v], 1.0)) {
				add(&use[t], &p->vms[v]);
				out->moves[out->nmoves++] = (struct plan_move){ v, cur[v], t, wave };
				started++;
			}
		}
		if (!started) {
			/*
			 * Every pending move waits for room that another pending
			 * move would free: a cycle. Move one VM that holds such
			 * room, the smallest, to a third host with room, the
			 * emptiest, and go on from there.
			 */
			int bv = -1, bh = -1;
			double best = INFINITY;

			for (size_t h = 0; h < p->nhosts; h++)
				busy[h] = false;
			for (size_t i = 0; i < npend; i++)
				busy[out->target[pend[i]]] = true;
			for (size_t i = npend; i-- > 0;) { /* smallest first */
				int v = pend[i];

				if (!busy[cur[v]])
					continue;
				for (size_t h = 0; h < p->nhosts; h++) {
					double l;

					if ((int)h == cur[v] || (int)h == out->target[v] ||
					    !p->hosts[h].accepts ||
					    !fits(&p->hosts[h], &use[h], &p->vms[v], 1.0))
						continue;
					l = load_of(p, use, (int)h);
					if (l < best)
						best = l, bv = v, bh = (int)h;
				}
				if (bv >= 0)
					break;
			}
			if (bv < 0 || out->bounces >= n) {
				snprintf(out->why, sizeof out->why,
					 "%zu moves wait on each other for room, and no third host "
					 "has room to let one of them through", npend);
				r = -ENOSPC;
				goto fail;
			}
			add(&use[bh], &p->vms[bv]);
			out->moves[out->nmoves++] = (struct plan_move){ bv, cur[bv], bh, wave };
			out->bounces++;
		}
		/* The wave ends: each VM leaves its source. */
		for (size_t m = first; m < out->nmoves; m++) {
			const struct plan_move *mv = &out->moves[m];

			sub(&use[mv->from], &p->vms[mv->vm]);
			cur[mv->vm] = mv->to;
		}
		{
			size_t k = 0;

			for (size_t i = 0; i < npend; i++)
				if (cur[pend[i]] != out->target[pend[i]])
					pend[k++] = pend[i];
			npend = k;
		}
		out->waves = wave + 1;
		if (out->nmoves + parallel + 1 > cap && npend) {
			struct plan_move *m;

			cap = cap * 2 + parallel + 1;
			m = realloc(out->moves, cap * sizeof *m);
			if (!m)
				goto fail;
			out->moves = m;
		}
	}
	for (size_t h = 0; h < p->nhosts; h++)
		out->hosts_used += fin[h].ram || fin[h].cpus;
	r = 0;
	goto done;
fail:
	{
		char why[sizeof out->why];

		memcpy(why, out->why, sizeof why);
		plan_free(out);
		memcpy(out->why, why, sizeof why);
	}
done:
	free(cur);
	free(use);
	free(fin);
	free(now);
	free(order);
	free(pend);
	free(busy);
	return r;
}

void plan_free(struct plan *pl)
{
	free(pl->target);
	free(pl->moves);
	memset(pl, 0, sizeof *pl);
}

/* ---- targets ---- */

/*
 * The host for v among those allowed (ok[h]), holding u, within room:
 * tightest: the one whose load after is highest (packing); else the one
 * whose load after is lowest (spreading). -1 if none has room.
 */
static int place(const struct plan_pool *p, const struct use *u, const bool *ok, int v,
		 double room, bool tightest)
{
	double best = tightest ? -1 : INFINITY;
	int bh = -1;

	for (size_t h = 0; h < p->nhosts; h++) {
		struct use after = u[h];
		double l;

		if (!ok[h] || !fits(&p->hosts[h], &u[h], &p->vms[v], room))
			continue;
		add(&after, &p->vms[v]);
		l = plan_load(&p->hosts[h], after.ram, after.cpus);
		if (tightest ? l > best : l < best)
			best = l, bh = (int)h;
	}
	return bh;
}

/* VMs move off host `from` (or, with from < 0, off every host not in
 * ok[]) to the emptiest host in ok[] that has room. */
static int move_off(const struct plan_pool *p, const int *order, int *target, struct use *u,
		    const bool *ok, int from, struct plan *out)
{
	for (size_t i = 0; i < p->nvms; i++) {
		int v = order[i], h = target[v], to;

		if (from >= 0 ? h != from : ok[h])
			continue;
		to = place(p, u, ok, v, 1.0, false);
		if (to < 0) {
			say_no_room(out, &p->vms[v], v, "other host that takes VMs");
			return -ENOSPC;
		}
		sub(&u[h], &p->vms[v]);
		add(&u[to], &p->vms[v]);
		target[v] = to;
	}
	return 0;
}

int plan_drain(const struct plan_pool *p, int h, unsigned parallel, struct plan *out)
{
	int *target = NULL, *order = NULL, r = check_pool(p, parallel);
	struct use *u = NULL;
	bool *ok = NULL;

	memset(out, 0, sizeof *out);
	if (!r && (h < 0 || (size_t)h >= p->nhosts))
		r = -EINVAL;
	if (r)
		return r;
	target = current(p);
	order = vms_by_size(p);
	u = target ? use_of(p, target) : NULL;
	ok = calloc(p->nhosts ? p->nhosts : 1, sizeof *ok);
	r = -ENOMEM;
	if (target && order && u && ok) {
		for (size_t i = 0; i < p->nhosts; i++)
			ok[i] = p->hosts[i].accepts && (int)i != h;
		/* Only h's VMs move: others on hosts that do not accept stay. */
		if ((r = move_off(p, order, target, u, ok, h, out)))
			goto out;
		r = plan_order(p, target, parallel, out);
	}
out:
	free(target);
	free(order);
	free(u);
	free(ok);
	return r;
}

/* What a VM or host weighs against the pool's whole demand: both
 * dimensions count, in the share of the total they are. */
struct weigh_ctx {
	const struct plan_pool *p;
	const struct use *u;
	double ram, cpus; /* the total demand (at least 1) */
};

/* Hosts to keep first: the ones that cover most of the demand in their
 * scarcer dimension, among equals the most loaded (its VMs need not
 * move), then by index. */
static double covers(const struct weigh_ctx *c, int h)
{
	double r = (double)c->p->hosts[h].ram / c->ram, k = (double)c->p->hosts[h].cpus / c->cpus;

	return r < k ? r : k;
}

static int by_keep(const void *a, const void *b, void *ctx)
{
	const struct weigh_ctx *c = ctx;
	int x = *(const int *)a, y = *(const int *)b;
	double cx = covers(c, x), cy = covers(c, y), lx, ly;

	if (cx != cy)
		return cx > cy ? -1 : 1;
	lx = load_of(c->p, c->u, x);
	ly = load_of(c->p, c->u, y);
	if (lx != ly)
		return lx > ly ? -1 : 1;
	return x - y;
}

/* VMs to place first: the heaviest, both dimensions summed. */
static int by_weight(const void *a, const void *b, void *ctx)
{
	const struct weigh_ctx *c = ctx;
	int x = *(const int *)a, y = *(const int *)b;
	const struct plan_vm *vx = &c->p->vms[x], *vy = &c->p->vms[y];
	double wx = (double)vx->ram / c->ram + vx->vcpus / c->cpus;
	double wy = (double)vy->ram / c->ram + vy->vcpus / c->cpus;

	if (wx != wy)
		return wx > wy ? -1 : 1;
	return x - y;
}

/*
 * Keep the first k hosts of keep[]: VMs on them stay (a host over the
 * headroom gives up its heaviest VMs), the rest go best fit, heaviest
 * first (order[]: heaviest first).
 * 0 and target[], or -ENOSPC.
 */
static int pack_into(const struct plan_pool *p, const int *order, const int *keep, size_t k,
		     double room, int *target, struct use *u, bool *ok)
{
	size_t nh = p->nhosts;

	memset(u, 0, nh * sizeof *u);
	memset(ok, 0, nh * sizeof *ok);
	for (size_t i = 0; i < k; i++)
		ok[keep[i]] = true;
	/* Smallest first, so that what stays on an overfull host is its
	 * small VMs and what moves is its large ones. */
	for (size_t i = p->nvms; i-- > 0;) {
		int v = order[i], h = p->vms[v].host;

		target[v] = -1;
		if (ok[h] && fits(&p->hosts[h], &u[h], &p->vms[v], room)) {
			add(&u[h], &p->vms[v]);
			target[v] = h;
		}
	}
	for (size_t i = 0; i < p->nvms; i++) {
		int v = order[i], to;

		if (target[v] >= 0)
			continue;
		if ((to = place(p, u, ok, v, room, true)) < 0)
			return -ENOSPC;
		add(&u[to], &p->vms[v]);
		target[v] = to;
	}
	return 0;
}

int plan_consolidate(const struct plan_pool *p, double headroom, unsigned parallel,
		     struct plan *out)
{
	const double room = 1.0 - headroom;
	int *target = NULL, *order = NULL, *keep = NULL;
	struct use *u = NULL, need = { 0, 0 }, have = { 0, 0 };
	bool *ok = NULL;
	size_t nh = p->nhosts, nkeep = 0, k;
	int r = check_pool(p, parallel);

	memset(out, 0, sizeof *out);
	if (!r && !(headroom >= 0 && headroom < 1))
		r = -EINVAL;
	if (r)
		return r;
	target = current(p);
	order = vms_by_size(p);
	u = target ? use_of(p, target) : NULL;
	keep = malloc((nh ? nh : 1) * sizeof *keep);
	ok = calloc(nh ? nh : 1, sizeof *ok);
	r = -ENOMEM;
	if (!target || !order || !u || !keep || !ok)
		goto out;
	/*
	 * The fewest of the largest hosts that can hold it all: from the
	 * least number whose capacity covers the demand, one more host at a
	 * time until the VMs pack into them.
	 */
	for (size_t v = 0; v < p->nvms; v++)
		add(&need, &p->vms[v]);
	{
		struct weigh_ctx c = { p, u, need.ram ? (double)need.ram : 1,
				       need.cpus ? (double)need.cpus : 1 };

		for (size_t h = 0; h < nh; h++)
			if (p->hosts[h].accepts)
				keep[nkeep++] = (int)h;
		qsort_r(keep, nkeep, sizeof *keep, by_keep, &c);
		qsort_r(order, p->nvms, sizeof *order, by_weight, &c);
	}
	for (k = 0; k < nkeep && ((double)have.ram < (double)need.ram ||
				  (double)have.cpus < (double)need.cpus); k++) {
		have.ram += (uint64_t)((double)p->hosts[keep[k]].ram * room);
		have.cpus += (uint64_t)((double)p->hosts[keep[k]].cpus * room);
	}
	for (r = -ENOSPC; r && k <= nkeep; k++)
		r = pack_into(p, order, keep, k, room, target, u, ok);
	if (r) {
		snprintf(out->why, sizeof out->why, "the VMs do not fit within %.0f %% of the "
			 "hosts that take VMs", room * 100);
		goto out;
	}
	r = plan_order(p, target, parallel, out);
out:
	free(target);
	free(order);
	free(u);
	free(keep);
	free(ok);
	return r;
}

int plan_spread(const struct plan_pool *p, unsigned parallel, struct plan *out)
{
	int *target = NULL, *order = NULL, r = check_pool(p, parallel);
	struct use *u = NULL;
	bool *ok = NULL;
	size_t nh = p->nhosts;

	memset(out, 0, sizeof *out);
	if (r)
		return r;
	target = current(p);
	order = vms_by_size(p);
	u = target ? use_of(p, target) : NULL;
	ok = calloc(nh ? nh : 1, sizeof *ok);
	r = -ENOMEM;
	if (!target || !order || !u || !ok)
		goto out;
	for (size_t h = 0; h < nh; h++)
		ok[h] = p->hosts[h].accepts;
	if ((r = move_off(p, order, target, u, ok, -1, out)))
		goto out;
	/*
	 * Then, while it helps: from the most loaded host to the least loaded,
	 * the VM that leaves the pair's higher load lowest. Each step lowers
	 * that pair's maximum, so it ends; 4 steps a VM at most.
	 */
	for (size_t step = 0; step < 4 * p->nvms; step++) {
		int hi = -1, lo = -1, bv = -1;
		double lhi = -1, llo = INFINITY, best;

		for (size_t h = 0; h < nh; h++) {
			double l = load_of(p, u, (int)h);

			if (!ok[h])
				continue;
			if (l > lhi)
				lhi = l, hi = (int)h;
			if (l < llo)
				llo = l, lo = (int)h;
		}
		if (hi < 0 || hi == lo)
			break;
		best = lhi;
		for (size_t v = 0; v < p->nvms; v++) {
			struct use a = u[hi], b = u[lo];
			double m;

			if (target[v] != hi || !fits(&p->hosts[lo], &u[lo], &p->vms[v], 1.0))
				continue;
			sub(&a, &p->vms[v]);
			add(&b, &p->vms[v]);
			m = fmax(plan_load(&p->hosts[hi], a.ram, a.cpus),
				 plan_load(&p->hosts[lo], b.ram, b.cpus));
			if (m < best - 1e-9)
				best = m, bv = (int)v;
		}
		if (bv < 0)
			break;
		sub(&u[hi], &p->vms[bv]);
		add(&u[lo], &p->vms[bv]);
		target[bv] = lo;
	}
	r = plan_order(p, target, parallel, out);
out:
	free(target);
	free(order);
	free(u);
	free(ok);
	return r;
}
