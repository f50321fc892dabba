/* SPDX-License-Identifier: Apache-2.0 */
/*
 * inventory.h — the pool as its record in etcd says it is (ferryd's
 * registry, daemon/registry.h): the hosts, where to reach them and what
 * they offer, and where each VM runs. What a pool manager plans from.
 *
 * The record is read in two listings (hosts, then VMs); a VM recorded on a
 * host that is not (its host just left) is kept with host_index -1.
 */
#ifndef FERRY_POOL_INVENTORY_H
#define FERRY_POOL_INVENTORY_H

#include <stddef.h>
#include <stdint.h>

#include "coord/etcd.h"
#include "pool/plan.h"

#define POOL_HOSTS_PREFIX "/ferry/pool/hosts/"
#define POOL_VMS_PREFIX "/ferry/pool/vms/"
#define POOL_NAME_LEN 64
#define POOL_ADDR_LEN 300

struct pool_host {
	char name[POOL_NAME_LEN];
	char migrate[POOL_ADDR_LEN]; /* HOST:PORT of its migration listener */
	char api[POOL_ADDR_LEN];     /* HOST:PORT of its remote API, "" if none */
	char state[16];              /* "running", "stopping" */
	uint32_t cpus, vcpus_committed;
	uint64_t mem_total, mem_committed;
	unsigned vms;
};

struct pool_vm {
	char name[POOL_NAME_LEN];
	char host[POOL_NAME_LEN];
	char state[32];
	uint64_t mem;
	uint32_t vcpus;
	int host_index;              /* into hosts, -1 if its host is not listed */
};

struct pool_inv {
	struct pool_host *hosts;     /* by name */
	size_t nhosts;
	struct pool_vm *vms;         /* by name */
	size_t nvms;
};

/* Read the record: 0, or etcd's error (etcd.h) with err set. */
int pool_inv_read(struct etcd *e, struct pool_inv *out, char *err, size_t errlen);
/* The same from listings already read (pure; fuzzed): records that are not
 * what the registry writes are skipped, and counted in *skipped. 0 or
 * -ENOMEM. */
int pool_inv_parse(const struct etcd_kv *hosts, size_t nh, const struct etcd_kv *vms, size_t nv,
		   struct pool_inv *out, unsigned *skipped);
void pool_inv_free(struct pool_inv *inv);
/* The index of host name, -1 if none. */
int pool_inv_host(const struct pool_inv *inv, const char *name);

/* The planner's view: hosts (RAM, vCPUs = cpus × vcpu_ratio; accepts
 * unless its name is in no_accept, or it is not running) and the VMs on
 * listed hosts, whose indices into inv->vms go to vm_of (caller frees
 * hosts, vms and vm_of). 0 or -ENOMEM. */
int pool_inv_plan(const struct pool_inv *inv, double vcpu_ratio, const char *const *no_accept,
		  size_t nno, struct plan_pool *out, int **vm_of);
void pool_inv_plan_free(struct plan_pool *p, int *vm_of);

#endif
