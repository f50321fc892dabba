/* SPDX-License-Identifier: Apache-2.0 */
/*
 * poolgen.h — random pools for the planner's test and benchmark: hosts of
 * 64, 128 or 256 GiB with 16, 32 or 64 vCPUs, VMs of 1-32 GiB and 1-16
 * vCPUs (powers of two, uniform; halved `shift` times, at least 1 vCPU),
 * each placed on the first host with room
 * from a random start (a valid pool, loaded unevenly). Deterministic per
 * seed (its own generator, not rand()).
 */
#ifndef FERRY_TESTS_POOLGEN_H
#define FERRY_TESTS_POOLGEN_H

#include <stdint.h>
#include <stdlib.h>

#include "pool/plan.h"

static inline uint32_t poolgen_next(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(*s >> 33);
}

/* nh hosts into hosts, up to nv VMs into vms (those that found room):
 * returns how many. */
static inline size_t poolgen(uint64_t seed, size_t nh, size_t nv, unsigned shift,
			     struct plan_host *hosts, struct plan_vm *vms)
{
	uint64_t s = seed, *ram = calloc(nh, sizeof *ram), *cpu = calloc(nh, sizeof *cpu);
	size_t n = 0;

	if (!ram || !cpu)
		abort();
	for (size_t h = 0; h < nh; h++)
		hosts[h] = (struct plan_host){ (uint64_t)64 << (30 + poolgen_next(&s) % 3),
					       16u << (poolgen_next(&s) % 3), true };
	for (size_t v = 0; v < nv; v++) {
		struct plan_vm vm = { (uint64_t)1 << (30 + poolgen_next(&s) % 6 - shift),
				      (1u << (poolgen_next(&s) % 5)) >> shift, -1 };

		if (!vm.vcpus)
			vm.vcpus = 1;
		size_t start = poolgen_next(&s) % nh;

		for (size_t k = 0; k < nh; k++) {
			size_t h = (start + k) % nh;

			if (ram[h] + vm.ram <= hosts[h].ram && cpu[h] + vm.vcpus <= hosts[h].cpus) {
				vm.host = (int)h;
				ram[h] += vm.ram;
				cpu[h] += vm.vcpus;
				vms[n++] = vm;
				break;
			}
		}
	}
	free(ram);
	free(cpu);
	return n;
}

#endif
