/* SPDX-License-Identifier: Apache-2.0 */
/* inventory.c — the pool's record, read; see inventory.h. */
#include "pool/inventory.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static int by_host_name(const void *a, const void *b)
{
	return strcmp(((const struct pool_host *)a)->name, ((const struct pool_host *)b)->name);
}

static int by_vm_name(const void *a, const void *b)
{
	return strcmp(((const struct pool_vm *)a)->name, ((const struct pool_vm *)b)->name);
}

/* A short printable name, copied; false if it is not one. */
static bool name_copy(const char *s, char *out, size_t len)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n >= len)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '/')
			return false;
	memcpy(out, s, n + 1);
	return true;
}

static bool u64_of(const json_t *o, const char *key, uint64_t *v)
{
	const json_t *j = json_object_get(o, key);

	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return false;
	*v = (uint64_t)json_integer_value(j);
	return true;
}

static bool str_of(const json_t *o, const char *key, char *out, size_t len, bool empty_ok)
{
	const char *s = json_string_value(json_object_get(o, key));

	if (!s || strlen(s) >= len || (!empty_ok && !*s))
		return false;
	memcpy(out, s, strlen(s) + 1);
	return true;
}

static bool host_parse(const struct etcd_kv *kv, struct pool_host *h)
{
	json_t *o = json_loads(kv->value, 0, NULL);
	uint64_t cpus = 0, vc = 0, vms = 0;
	bool ok;

	memset(h, 0, sizeof *h);
	ok = o && strncmp(kv->key, POOL_HOSTS_PREFIX, strlen(POOL_HOSTS_PREFIX)) == 0 &&
	     name_copy(kv->key + strlen(POOL_HOSTS_PREFIX), h->name, sizeof h->name) &&
	     str_of(o, "migrate", h->migrate, sizeof h->migrate, false) &&
	     str_of(o, "api", h->api, sizeof h->api, true) &&
	     str_of(o, "state", h->state, sizeof h->state, false) && u64_of(o, "cpus", &cpus) &&
	     u64_of(o, "vcpus_committed", &vc) && u64_of(o, "mem_total", &h->mem_total) &&
	     u64_of(o, "mem_committed", &h->mem_committed) && u64_of(o, "vms", &vms) &&
	     cpus <= UINT32_MAX && vc <= UINT32_MAX && vms <= UINT32_MAX;
	h->cpus = (uint32_t)cpus;
	h->vcpus_committed = (uint32_t)vc;
	h->vms = (unsigned)vms;
	json_decref(o);
	return ok;
}

static bool vm_parse(const struct etcd_kv *kv, struct pool_vm *v)
{
	json_t *o = json_loads(kv->value, 0, NULL);
	uint64_t vcpus = 0;
	bool ok;

	memset(v, 0, sizeof *v);
	/* A failover's first word has only host and state (fence.h). */
	ok = o && strncmp(kv->key, POOL_VMS_PREFIX, strlen(POOL_VMS_PREFIX)) == 0 &&
	     name_copy(kv->key + strlen(POOL_VMS_PREFIX), v->name, sizeof v->name) &&
	     name_copy(json_string_value(json_object_get(o, "host")), v->host, sizeof v->host) &&
	     str_of(o, "state", v->state, sizeof v->state, false) &&
	     (!json_object_get(o, "mem") || u64_of(o, "mem", &v->mem)) &&
	     (!json_object_get(o, "vcpus") || u64_of(o, "vcpus", &vcpus)) && vcpus <= UINT32_MAX;
	v->vcpus = (uint32_t)vcpus;
	json_decref(o);
	return ok;
}

int pool_inv_parse(const struct etcd_kv *hosts, size_t nh, const struct etcd_kv *vms, size_t nv,
		   struct pool_inv *out, unsigned *skipped)
{
	memset(out, 0, sizeof *out);
	*skipped = 0;
	if ((nh && !(out->hosts = calloc(nh, sizeof *out->hosts))) ||
	    (nv && !(out->vms = calloc(nv, sizeof *out->vms)))) {
		pool_inv_free(out);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nh; i++) {
		if (host_parse(&hosts[i], &out->hosts[out->nhosts]))
			out->nhosts++;
		else
			(*skipped)++;
	}
	if (out->nhosts)
		qsort(out->hosts, out->nhosts, sizeof *out->hosts, by_host_name);
	for (size_t i = 0; i < nv; i++) {
		struct pool_vm *v = &out->vms[out->nvms];

		if (!vm_parse(&vms[i], v)) {
			(*skipped)++;
			continue;
		}
		out->nvms++;
	}
	if (out->nvms)
		qsort(out->vms, out->nvms, sizeof *out->vms, by_vm_name);
	for (size_t i = 0; i < out->nvms; i++)
		out->vms[i].host_index = pool_inv_host(out, out->vms[i].host);
	return 0;
}

int pool_inv_read(struct etcd *e, struct pool_inv *out, char *err, size_t errlen)
{
	struct etcd_kv *h = NULL, *v = NULL;
	size_t nh = 0, nv = 0;
	unsigned skipped;
	int r;

	memset(out, 0, sizeof *out);
	if ((r = etcd_list(e, POOL_HOSTS_PREFIX, &h, &nh, err, errlen)) ||
	    (r = etcd_list(e, POOL_VMS_PREFIX, &v, &nv, err, errlen)))
		goto out;
	if ((r = pool_inv_parse(h, nh, v, nv, out, &skipped)))
		snprintf(err, errlen, "out of memory");
out:
	etcd_kvs_free(h, nh);
	etcd_kvs_free(v, nv);
	return r;
}

void pool_inv_free(struct pool_inv *inv)
{
	free(inv->hosts);
	free(inv->vms);
	memset(inv, 0, sizeof *inv);
}

int pool_inv_host(const struct pool_inv *inv, const char *name)
{
	size_t lo = 0, hi = inv->nhosts;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(inv->hosts[mid].name, name);

		if (!c)
			return (int)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

int pool_inv_plan(const struct pool_inv *inv, double vcpu_ratio, const char *const *no_accept,
		  size_t nno, struct plan_pool *out, int **vm_of)
{
	struct plan_host *h = calloc(inv->nhosts ? inv->nhosts : 1, sizeof *h);
	struct plan_vm *v = calloc(inv->nvms ? inv->nvms : 1, sizeof *v);
	int *of = calloc(inv->nvms ? inv->nvms : 1, sizeof *of);
	size_t n = 0;

	if (!h || !v || !of) {
		free(h);
		free(v);
		free(of);
		return -ENOMEM;
	}
	for (size_t i = 0; i < inv->nhosts; i++) {
		const struct pool_host *ph = &inv->hosts[i];
		double c = (double)ph->cpus * vcpu_ratio;

		h[i].ram = ph->mem_total;
		h[i].cpus = c >= UINT32_MAX ? UINT32_MAX : (uint32_t)c;
		h[i].accepts = strcmp(ph->state, "running") == 0;
		for (size_t k = 0; k < nno; k++)
			if (!strcmp(no_accept[k], ph->name))
				h[i].accepts = false;
	}
	for (size_t i = 0; i < inv->nvms; i++) {
		if (inv->vms[i].host_index < 0)
			continue;
		v[n] = (struct plan_vm){ inv->vms[i].mem, inv->vms[i].vcpus,
					 inv->vms[i].host_index };
		of[n++] = (int)i;
	}
	*out = (struct plan_pool){ h, inv->nhosts, v, n };
	*vm_of = of;
	return 0;
}

void pool_inv_plan_free(struct plan_pool *p, int *vm_of)
{
	free((void *)p->hosts);
	free((void *)p->vms);
	free(vm_of);
	memset(p, 0, sizeof *p);
}
