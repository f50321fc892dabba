/* SPDX-License-Identifier: Apache-2.0 */
/*
 * net.h — a guest's service address on this host (docs/kvstore.md): while a
 * guest runs here, ferryd listens on its address for it and hands the
 * listening socket to it (hv_net_attach), and runs the net hook so that the
 * address itself points here (`ferry-net-hook claim`, like Xen's vif scripts or
 * keepalived's notify scripts); when the guest stops running here (GO of a
 * migration away, destroy, death), it takes the socket back and runs
 * `ferry-net-hook release`.
 *
 * The listening socket is made with IP_FREEBIND, so it can exist before the
 * hook has claimed the address; a migration's source lets go of it before it
 * sends GO, so two hosts never listen at once.
 */
#ifndef FERRY_DAEMON_NET_H
#define FERRY_DAEMON_NET_H

#include <stdbool.h>

#include "daemon/vm.h"

/* The guest's address runs here from now on, through its handle d (v->d,
 * or the one a migration is about to resume). Returns 0 (at once for a
 * guest without an address), or -errno (also in v's net state). The claim
 * runs in the background. */
int net_up(struct vm *v, struct hv_domain *d);
/* It no longer runs here: stop its listener; release the address, waiting
 * for the hook when wait (the address must be free before GO). */
void net_down(struct vm *v, bool wait);
/* vm_on_gone's callback: the guest left this host; let its address go. */
void net_gone(struct vm *v);

#endif
