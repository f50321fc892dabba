/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xen_netbuf.h — a Xen guest's network output, held per replication epoch.
 *
 * As Remus does (tools/hotplug/Linux/remus-netbuf-setup and
 * tools/libs/light/libxl_netbuffer.c): each of the guest's vifs gets an IFB
 * twin; what the guest sends arrives on the vif's ingress, is redirected
 * (mirred) to the IFB, and waits there in a plug qdisc (sch_plug) until
 * released.
 *
 * sch_plug keeps two counts only — the packets of the sealed buffer and of
 * the current one: TCQ_PLUG_BUFFER seals the current buffer (and forgets a
 * sealed buffer's count that was not released), TCQ_PLUG_RELEASE_ONE lets
 * the sealed one go. Remus alternates the two. ferry's primary pipelines
 * (an epoch's acknowledgement arrives during the next), so the gate below
 * seals only when nothing sealed is waiting, and otherwise lets later
 * epochs join the current buffer, labelled with the newest of them: output
 * may leave later than it could, never before its epoch is acknowledged.
 */
#ifndef FERRY_HV_XEN_NETBUF_H
#define FERRY_HV_XEN_NETBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the gate: which plug operations an epoch's events call for ---- */

enum xen_plug_op { XEN_PLUG_BUFFER = 1, XEN_PLUG_RELEASE_ONE, XEN_PLUG_RELEASE_ALL };

struct xen_gate {
	uint64_t sealed;  /* the sealed buffer holds output of epochs <= sealed; 0: none */
	uint64_t cur;     /* the epoch running now */
	bool joined;      /* an epoch began while a sealed buffer waited */
	/* Carry out op on every vif; 0 or -errno. */
	int (*plug)(void *ctx, enum xen_plug_op op);
	void *ctx;
};

/* Holding starts with epoch; held says output from before is waiting
 * already (a restarted daemon found the plug in place): it leaves with
 * epoch - 1. */
int xen_gate_hold(struct xen_gate *g, uint64_t epoch, bool held);
/* Epoch `epoch` begins (the guest is paused). */
int xen_gate_mark(struct xen_gate *g, uint64_t epoch);
/* Epochs up to `epoch` are acknowledged by the standby. */
int xen_gate_release(struct xen_gate *g, uint64_t epoch);
/* No more holding: everything leaves. */
int xen_gate_open(struct xen_gate *g);

/* ---- the plumbing: one vif's IFB and plug qdisc, over rtnetlink ---- */

struct xen_netbuf;

/*
 * Set up vif's buffer (or find the one a previous ferryd left: *held is
 * then true). Order: the IFB and its plug qdisc, then the redirect, so
 * that no packet passes unheld; anything that fails is undone, and the
 * error says what (a kernel without sch_plug says so).
 */
int xen_netbuf_setup(const char *vif, struct xen_netbuf **out, bool *held, char *err,
		     size_t errlen);
int xen_netbuf_plug(struct xen_netbuf *nb, enum xen_plug_op op);
/* Release everything, remove the redirect and the IFB. NULL is fine. */
void xen_netbuf_teardown(struct xen_netbuf *nb);
/* Let go of the handle and leave the buffer as it is (a daemon that stops
 * keeps its guest's output held). NULL is fine. */
void xen_netbuf_forget(struct xen_netbuf *nb);
/* The IFB's name for vif (at most 15 characters). */
void xen_netbuf_ifb_name(const char *vif, char out[16]);

#endif
