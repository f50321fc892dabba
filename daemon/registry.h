/* SPDX-License-Identifier: Apache-2.0 */
/*
 * registry.h — this host and its VMs in the pool's record, in etcd (the
 * coordination service fencing uses, D.coord; docs/ferryd.md "Pool state"):
 *
 *   /ferry/pool/hosts/HOST   {"name", "migrate", "api", "cpus", "mem_total",
 *                            "mem_committed", "vcpus_committed", "vms",
 *                            "state"}: where to reach the host, what it offers
 *   /ferry/pool/vms/NAME     {"host", "mem", "vcpus", "state"}: where VM NAME
 *                            runs
 *
 * Both are bound to the host's lease (pool-ttl seconds, kept alive by a
 * thread of the registry's own): a host that dies, or loses etcd, drops out
 * with its claims. A VM is published only where it runs: not a copy coming
 * in, not a standby's copy, not a fenced primary's. Every write is
 * conditioned so that a host that lost a VM cannot write it back:
 *
 *  - a protected VM's record is written only while this host's fencing key
 *    for it (/ferry/vm/NAME/owner, fence.h) is the one created at its
 *    token: a deposed primary's write fails;
 *  - any other VM's only while no host owns its fencing key;
 *  - a failover writes the record in the same transaction that gives the
 *    standby the VM (fence.h fence_takeover);
 *  - a VM that left is deleted only if the record is still what this host
 *    wrote (the destination of a migration may have written it already).
 *
 * ferryd works on without etcd (the control socket, the remote API,
 * migrations between hosts); the registry says so once, in the log and in
 * registry_json, and publishes everything again when etcd answers.
 */
#ifndef FERRY_DAEMON_REGISTRY_H
#define FERRY_DAEMON_REGISTRY_H

#include <jansson.h>

#define REGISTRY_PREFIX "/ferry/pool/"
#define REGISTRY_TTL_DEFAULT 10

/* Start, if a coordination service is configured. */
void registry_start(void);
/* Stop: revoke the lease, so that this host and its VMs leave the record
 * at once (a stopped ferryd cannot be driven); then wait for the thread. */
void registry_stop(void);
/* Something it publishes may have changed: look again soon. Any thread. */
void registry_kick(void);
/* {"coord": endpoints or null, "registered": bool, "error": last error if
 * not registered, "lease": id} for the API's host. */
json_t *registry_json(void);

#endif
