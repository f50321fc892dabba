/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_pool_inv.c — libFuzzer target for the pool manager's reading of the
 * pool's record (pool/inventory.c pool_inv_parse): keys and values as etcd
 * lists them, written by any host (or anyone with access to etcd).
 * Input: records separated by NUL bytes, each "KEY\n VALUE"; the first
 * byte's low bit says whether they are hosts' or VMs' records.
 *
 * Whatever comes in: every host and VM kept has a name that is a path
 * segment, hosts are sorted and unique lookups find them, every VM's
 * host_index is its host's or -1, and nothing kept exceeds its bounds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/inventory.h"

#include "tests/fuzz/check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXREC 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct etcd_kv kv[MAXREC];
	struct pool_inv inv;
	size_t n = 0, off = 1;
	unsigned skipped;

	if (size < 1)
		return 0;
	while (off < size && n < MAXREC) {
		const uint8_t *z = memchr(data + off, 0, size - off);
		size_t len = z ? (size_t)(z - (data + off)) : size - off;
		char *rec = strndup((const char *)data + off, len), *nl;

		if (!rec)
			abort();
		nl = strchr(rec, '\n');
		kv[n].key = rec;
		kv[n].value = nl ? nl + 1 : rec + strlen(rec);
		if (nl)
			*nl = '\0';
		kv[n].create_rev = kv[n].mod_rev = 1;
		n++;
		off += len + 1;
	}
	/* Half the records as hosts, half as VMs, or all of one kind. */
	if (data[0] & 1)
		CHECK(!pool_inv_parse(kv, n / 2, kv + n / 2, n - n / 2, &inv, &skipped));
	else
		CHECK(!pool_inv_parse(kv, n, NULL, 0, &inv, &skipped));
	CHECK(inv.nhosts + inv.nvms + skipped == n);
	for (size_t i = 0; i < inv.nhosts; i++) {
		CHECK(inv.hosts[i].name[0] && !strchr(inv.hosts[i].name, '/'));
		CHECK(i == 0 || strcmp(inv.hosts[i - 1].name, inv.hosts[i].name) <= 0);
		CHECK(pool_inv_host(&inv, inv.hosts[i].name) >= 0);
	}
	for (size_t i = 0; i < inv.nvms; i++) {
		int h = inv.vms[i].host_index;

		CHECK(inv.vms[i].name[0] && inv.vms[i].host[0]);
		CHECK(h == -1 || (h >= 0 && (size_t)h < inv.nhosts &&
				  !strcmp(inv.hosts[h].name, inv.vms[i].host)));
	}
	pool_inv_free(&inv);
	for (size_t i = 0; i < n; i++)
		free(kv[i].key);
	return 0;
}
