/* SPDX-License-Identifier: Apache-2.0 */
/*
 * plan_exact.c — the fewest hosts, exactly: two-dimensional bin packing as
 * a mixed integer program, solved by GLPK; see plan.h.
 *
 *   minimise   sum_h y_h
 *   subject to sum_h x_vh = 1                         every VM on one host
 *              sum_v ram_v x_vh <= room * RAM_h y_h    every host, RAM
 *              sum_v cpu_v x_vh <= room * CPU_h y_h    every host, vCPUs
 *              x_vh <= y_h                             (a tighter relaxation)
 *              x, y binary; only hosts that accept VMs
 */
#include "pool/plan.h"

#include <errno.h>
#include <glpk.h>
#include <stdlib.h>

int plan_min_hosts(const struct plan_pool *p, double headroom, int time_limit_ms,
		   unsigned *hosts, bool *optimal)
{
	const double room = 1.0 - headroom;
	size_t nv = p->nvms, nh = p->nhosts, nx = nv * nh;
	size_t nz = 0, maxnz = 5 * nx + 2 * nh; /* the rows below, entry by entry */
	int *ia = malloc((maxnz + 1) * sizeof *ia), *ja = malloc((maxnz + 1) * sizeof *ja);
	double *ar = malloc((maxnz + 1) * sizeof *ar);
	glp_prob *lp = NULL;
	glp_iocp parm;
	int r = -ENOMEM, row = 0, ret, st;

	if (!(headroom >= 0 && headroom < 1) || nh > 10000 || nv > 100000)
		r = -EINVAL;
	else if (ia && ja && ar && (lp = glp_create_prob()))
		r = 0;
	if (r)
		goto out;
	glp_term_out(GLP_OFF);
	glp_set_obj_dir(lp, GLP_MIN);
	/* Columns: x_vh (v * nh + h + 1), then y_h (nx + h + 1). */
	glp_add_cols(lp, (int)(nx + nh));
	for (size_t c = 1; c <= nx + nh; c++) {
		size_t h = c <= nx ? (c - 1) % nh : c - nx - 1;

		glp_set_col_kind(lp, (int)c, GLP_BV);
		if (!p->hosts[h].accepts)
			glp_set_col_bnds(lp, (int)c, GLP_FX, 0, 0);
		glp_set_obj_coef(lp, (int)c, c > nx ? 1 : 0);
	}
	glp_add_rows(lp, (int)(nv + 2 * nh + nx));
	for (size_t v = 0; v < nv; v++) {
		glp_set_row_bnds(lp, ++row, GLP_FX, 1, 1);
		for (size_t h = 0; h < nh; h++)
			ia[++nz] = row, ja[nz] = (int)(v * nh + h + 1), ar[nz] = 1;
	}
	for (size_t h = 0; h < nh; h++) {
		int y = (int)(nx + h + 1);

		glp_set_row_bnds(lp, ++row, GLP_UP, 0, 0);
		for (size_t v = 0; v < nv; v++)
			ia[++nz] = row, ja[nz] = (int)(v * nh + h + 1), ar[nz] = (double)p->vms[v].ram;
		ia[++nz] = row, ja[nz] = y, ar[nz] = -room * (double)p->hosts[h].ram;
		glp_set_row_bnds(lp, ++row, GLP_UP, 0, 0);
		for (size_t v = 0; v < nv; v++)
			ia[++nz] = row, ja[nz] = (int)(v * nh + h + 1), ar[nz] = p->vms[v].vcpus;
		ia[++nz] = row, ja[nz] = y, ar[nz] = -room * (double)p->hosts[h].cpus;
	}
	for (size_t v = 0; v < nv; v++)
		for (size_t h = 0; h < nh; h++) {
			glp_set_row_bnds(lp, ++row, GLP_UP, 0, 0);
			ia[++nz] = row, ja[nz] = (int)(v * nh + h + 1), ar[nz] = 1;
			ia[++nz] = row, ja[nz] = (int)(nx + h + 1), ar[nz] = -1;
		}
	glp_load_matrix(lp, (int)nz, ia, ja, ar);
	glp_init_iocp(&parm);
	parm.presolve = GLP_ON;
	parm.msg_lev = GLP_MSG_OFF;
	parm.tm_lim = time_limit_ms;
	ret = glp_intopt(lp, &parm);
	st = glp_mip_status(lp);
	if (st == GLP_OPT || st == GLP_FEAS) {
		*hosts = (unsigned)(glp_mip_obj_val(lp) + 0.5);
		*optimal = st == GLP_OPT;
	} else if (st == GLP_NOFEAS || ret == GLP_ENOPFS) {
		r = -ENOSPC;
	} else {
		r = ret == GLP_ETMLIM ? -ETIMEDOUT : -EIO;
	}
out:
	if (lp)
		glp_delete_prob(lp);
	free(ia);
	free(ja);
	free(ar);
	return r;
}
