/* SPDX-License-Identifier: Apache-2.0 */
/* xen_netbuf.c — epoch-held output for Xen vifs; see xen_netbuf.h. */
#include "hv/xen_netbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/action.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/matchall.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/plug.h>
#include <netlink/route/tc.h>

#include "common/log.h"

/* ---- the gate ---- */

int xen_gate_hold(struct xen_gate *g, uint64_t epoch, bool held)
{
	int r = 0;

	g->cur = epoch;
	g->sealed = 0;
	g->joined = false;
	/* What waits from before belongs to the epochs before this one. */
	if (held && epoch > 1 && !(r = g->plug(g->ctx, XEN_PLUG_BUFFER)))
		g->sealed = epoch - 1;
	return r;
}

int xen_gate_mark(struct xen_gate *g, uint64_t epoch)
{
	int r = 0;

	g->cur = epoch;
	if (g->sealed)
		g->joined = true; /* sch_plug has one sealed slot: join the current buffer */
	else if (!(r = g->plug(g->ctx, XEN_PLUG_BUFFER)))
		g->sealed = epoch - 1;
	return r;
}

int xen_gate_release(struct xen_gate *g, uint64_t epoch)
{
	int r;

	if (!g->sealed || epoch < g->sealed)
		return 0;
	if ((r = g->plug(g->ctx, XEN_PLUG_RELEASE_ONE)))
		return r;
	g->sealed = 0;
	if (g->joined) {
		/* The current buffer holds epochs up to the running one: seal it
		 * under that label. */
		g->joined = false;
		if ((r = g->plug(g->ctx, XEN_PLUG_BUFFER)))
			return r;
		g->sealed = g->cur;
	}
	return 0;
}

int xen_gate_open(struct xen_gate *g)
{
	g->sealed = 0;
	g->joined = false;
	return g->plug(g->ctx, XEN_PLUG_RELEASE_ALL);
}

/* ---- rtnetlink ---- */

struct xen_netbuf {
	struct nl_sock *sk;
	char vif[IF_NAMESIZE], ifb[IF_NAMESIZE];
	int vif_index, ifb_index;
};

void xen_netbuf_ifb_name(const char *vif, char out[16])
{
	uint32_t h = 2166136261u;

	if (strlen(vif) + 2 <= 15) {
		snprintf(out, 16, "fy%s", vif);
		return;
	}
	for (const char *p = vif; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	snprintf(out, 16, "fy%08x", h);
}

static int ifindex(struct xen_netbuf *nb, const char *name)
{
	struct rtnl_link *l = NULL;
	int i;

	if (rtnl_link_get_kernel(nb->sk, 0, name, &l) < 0)
		return -ENODEV;
	i = rtnl_link_get_ifindex(l);
	rtnl_link_put(l);
	return i;
}

static struct rtnl_qdisc *plug_qdisc(const struct xen_netbuf *nb)
{
	struct rtnl_qdisc *q = rtnl_qdisc_alloc();

	if (!q)
		return NULL;
	rtnl_tc_set_ifindex(TC_CAST(q), nb->ifb_index);
	rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
	rtnl_tc_set_handle(TC_CAST(q), TC_HANDLE(1, 0));
	if (rtnl_tc_set_kind(TC_CAST(q), "plug") < 0) {
		rtnl_qdisc_put(q);
		return NULL;
	}
	return q;
}

/* Whether the IFB's root qdisc is a plug already (left by an earlier ferryd). */
static bool has_plug(struct xen_netbuf *nb)
{
	struct nl_cache *c = NULL;
	struct rtnl_qdisc *q;
	bool yes = false;

	if (rtnl_qdisc_alloc_cache(nb->sk, &c) < 0)
		return false;
	q = rtnl_qdisc_get_by_parent(c, nb->ifb_index, TC_H_ROOT);
	if (q) {
		yes = rtnl_tc_get_kind(TC_CAST(q)) && !strcmp(rtnl_tc_get_kind(TC_CAST(q)), "plug");
		rtnl_qdisc_put(q);
	}
	nl_cache_free(c);
	return yes;
}

static int make_ifb(struct xen_netbuf *nb, char *err, size_t errlen)
{
	struct rtnl_link *l = rtnl_link_alloc(), *up = rtnl_link_alloc(), *cur = NULL;
	int e = -ENOMEM;

	if (l && up) {
		rtnl_link_set_name(l, nb->ifb);
		rtnl_link_set_type(l, "ifb");
		e = rtnl_link_add(nb->sk, l, NLM_F_CREATE | NLM_F_EXCL);
		if (e < 0)
			snprintf(err, errlen, "creating %s (type ifb): %s", nb->ifb, nl_geterror(e));
		else if ((e = rtnl_link_get_kernel(nb->sk, 0, nb->ifb, &cur)) >= 0) {
			rtnl_link_set_flags(up, IFF_UP);
			e = rtnl_link_change(nb->sk, cur, up, 0);
			if (e < 0)
				snprintf(err, errlen, "bringing %s up: %s", nb->ifb, nl_geterror(e));
		}
		e = e < 0 ? -EIO : 0;
	}
	if (cur)
		rtnl_link_put(cur);
	if (l)
		rtnl_link_put(l);
	if (up)
		rtnl_link_put(up);
	return e;
}

static void del_ifb(struct xen_netbuf *nb)
{
	struct rtnl_link *l = rtnl_link_alloc();

	if (!l)
		return;
	rtnl_link_set_name(l, nb->ifb);
	rtnl_link_delete(nb->sk, l);
	rtnl_link_put(l);
}

/* The vif's ingress qdisc; removing it removes its filters too. */
static struct rtnl_qdisc *ingress_qdisc(const struct xen_netbuf *nb)
{
	struct rtnl_qdisc *q = rtnl_qdisc_alloc();

	if (!q)
		return NULL;
	rtnl_tc_set_ifindex(TC_CAST(q), nb->vif_index);
	rtnl_tc_set_parent(TC_CAST(q), TC_H_INGRESS);
	rtnl_tc_set_handle(TC_CAST(q), TC_HANDLE(0xffff, 0));
	rtnl_tc_set_kind(TC_CAST(q), "ingress");
	return q;
}

/* ingress qdisc on the vif, and a matchall filter: mirred egress redirect
 * to the IFB (remus-netbuf-setup's `tc filter ... action mirred egress
 * redirect dev $IFB`). */
static int redirect(struct xen_netbuf *nb, char *err, size_t errlen)
{
	struct rtnl_qdisc *q = ingress_qdisc(nb);
	struct rtnl_cls *c = rtnl_cls_alloc();
	struct rtnl_act *a = rtnl_act_alloc();
	int e = -ENOMEM;

	if (!q || !c || !a)
		goto out;
	e = rtnl_qdisc_add(nb->sk, q, NLM_F_CREATE);
	if (e < 0 && e != -NLE_EXIST) {
		snprintf(err, errlen, "adding an ingress qdisc to %s: %s", nb->vif, nl_geterror(e));
		goto out;
	}
	rtnl_tc_set_ifindex(TC_CAST(c), nb->vif_index);
	rtnl_tc_set_parent(TC_CAST(c), TC_HANDLE(0xffff, 0));
	rtnl_tc_set_kind(TC_CAST(c), "matchall");
	rtnl_cls_set_protocol(c, ETH_P_ALL);
	rtnl_cls_set_prio(c, 1);
	rtnl_tc_set_kind(TC_CAST(a), "mirred");
	rtnl_mirred_set_action(a, TCA_EGRESS_REDIR);
	rtnl_mirred_set_policy(a, TC_ACT_STOLEN);
	rtnl_mirred_set_ifindex(a, (uint32_t)nb->ifb_index);
	rtnl_mall_append_action(c, a);
	e = rtnl_cls_add(nb->sk, c, NLM_F_CREATE | NLM_F_EXCL);
	if (e == -NLE_EXIST)
		e = 0; /* ours, from before */
	if (e < 0)
		snprintf(err, errlen, "redirecting %s to %s: %s", nb->vif, nb->ifb, nl_geterror(e));
out:
	if (a)
		rtnl_act_put(a);
	if (c)
		rtnl_cls_put(c);
	if (q)
		rtnl_qdisc_put(q);
	return e < 0 ? -EIO : e;
}

static void unredirect(struct xen_netbuf *nb)
{
	struct rtnl_qdisc *q = ingress_qdisc(nb);

	if (q) {
		rtnl_qdisc_delete(nb->sk, q);
		rtnl_qdisc_put(q);
	}
}

int xen_netbuf_setup(const char *vif, struct xen_netbuf **out, bool *held, char *err,
		     size_t errlen)
{
	struct xen_netbuf *nb = calloc(1, sizeof *nb);
	bool made = false;
	int e;

	*held = false;
	if (!nb)
		return -ENOMEM;
	snprintf(nb->vif, sizeof nb->vif, "%s", vif);
	xen_netbuf_ifb_name(vif, nb->ifb);
	if (!(nb->sk = nl_socket_alloc()) || nl_connect(nb->sk, NETLINK_ROUTE) < 0) {
		snprintf(err, errlen, "no rtnetlink socket");
		e = -EIO;
		goto fail;
	}
	if ((nb->vif_index = ifindex(nb, vif)) < 0) {
		snprintf(err, errlen, "no interface %s", vif);
		e = -ENODEV;
		goto fail;
	}
	if ((nb->ifb_index = ifindex(nb, nb->ifb)) < 0) {
		if ((e = make_ifb(nb, err, errlen)))
			goto fail;
		made = true;
		if ((nb->ifb_index = ifindex(nb, nb->ifb)) < 0) {
			snprintf(err, errlen, "%s vanished", nb->ifb);
			e = -ENODEV;
			goto fail;
		}
	}
	if (!made && has_plug(nb)) {
		*held = true;
	} else {
		struct rtnl_qdisc *q = plug_qdisc(nb);

		e = q ? rtnl_qdisc_add(nb->sk, q, NLM_F_CREATE | NLM_F_REPLACE) : -NLE_NOMEM;
		if (q)
			rtnl_qdisc_put(q);
		if (e < 0) {
			snprintf(err, errlen, "a plug qdisc on %s: %s%s", nb->ifb, nl_geterror(e),
				 e == -NLE_OBJ_NOTFOUND || e == -NLE_OPNOTSUPP
					 ? " (this kernel has no sch_plug: CONFIG_NET_SCH_PLUG)" : "");
			e = -EOPNOTSUPP;
			goto fail;
		}
	}
	if ((e = redirect(nb, err, errlen))) {
		unredirect(nb);
		goto fail;
	}
	*out = nb;
	return 0;
fail:
	if (made)
		del_ifb(nb);
	if (nb->sk)
		nl_socket_free(nb->sk);
	free(nb);
	return e;
}

int xen_netbuf_plug(struct xen_netbuf *nb, enum xen_plug_op op)
{
	struct rtnl_qdisc *q = plug_qdisc(nb);
	int e;

	if (!q)
		return -ENOMEM;
	e = op == XEN_PLUG_BUFFER	 ? rtnl_qdisc_plug_buffer(q)
	    : op == XEN_PLUG_RELEASE_ONE ? rtnl_qdisc_plug_release_one(q)
					 : rtnl_qdisc_plug_release_indefinite(q);
	/* As libxl_netbuffer.c: the changed qdisc, sent as a request. */
	if (e >= 0)
		e = rtnl_qdisc_add(nb->sk, q, NLM_F_REQUEST);
	rtnl_qdisc_put(q);
	if (e < 0) {
		log_error("xen: %s's plug qdisc on %s: %s", nb->vif, nb->ifb, nl_geterror(e));
		return -EIO;
	}
	return 0;
}

void xen_netbuf_teardown(struct xen_netbuf *nb)
{
	if (!nb)
		return;
	/* Everything held leaves first, then the redirect goes, then the IFB. */
	xen_netbuf_plug(nb, XEN_PLUG_RELEASE_ALL);
	unredirect(nb);
	del_ifb(nb);
	xen_netbuf_forget(nb);
}

void xen_netbuf_forget(struct xen_netbuf *nb)
{
	if (!nb)
		return;
	nl_socket_free(nb->sk);
	free(nb);
}
