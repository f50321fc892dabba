/* SPDX-License-Identifier: Apache-2.0 */
/* xen_blob.c — the Xen backend's framed blobs; see xen_blob.h. */
#include "hv/xen_blob.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int xen_blob_next(const void *blob, size_t len, size_t *off, struct xen_rec *rec)
{
	const uint8_t *p = blob;
	uint32_t h[2];
	size_t body, pad;

	if (*off == len)
		return 0;
	if (len - *off < sizeof h)
		return -EINVAL;
	memcpy(h, p + *off, sizeof h);
	body = *off + sizeof h;
	rec->type = le32toh(h[0]);
	rec->len = le32toh(h[1]);
	pad = -(size_t)rec->len & 7;
	if (rec->len > len - body || pad > len - body - rec->len)
		return -EINVAL;
	for (size_t i = 0; i < pad; i++)
		if (p[body + rec->len + i])
			return -EINVAL;
	rec->body = p + body;
	*off = body + rec->len + pad;
	return 1;
}

struct rule {
	uint32_t type;
	const char *name;
	unsigned min, max; /* occurrences */
};

static const struct rule dconf_rules[] = {
	{ XREC_LIBXL_CONFIG, "LIBXL_CONFIG", 1, 1 },
	{ XREC_X86_CPUID_POLICY, "X86_CPUID_POLICY", 0, 1 },
	{ XREC_X86_MSR_POLICY, "X86_MSR_POLICY", 0, 1 },
};
static const struct rule ctx_rules[] = {
	{ XREC_X86_TSC_INFO, "X86_TSC_INFO", 0, 1 },
	{ XREC_HVM_CONTEXT, "HVM_CONTEXT", 1, 1 },
	{ XREC_HVM_PARAMS, "HVM_PARAMS", 0, 1 },
	{ XREC_EMULATOR, "EMULATOR", 0, 1 },
};

/* The fixed shapes of a record's body. */
static const char *shape(const struct xen_rec *r)
{
	const uint8_t *b = r->body;
	uint32_t n;

	switch (r->type) {
	case XREC_X86_TSC_INFO:
		return r->len == 24 ? NULL : "X86_TSC_INFO is not 24 bytes";
	case XREC_HVM_PARAMS:
		if (r->len < 8)
			return "HVM_PARAMS is shorter than its count";
		memcpy(&n, b, 4);
		n = le32toh(n);
		return r->len == 8 + (uint64_t)n * 16 ? NULL : "HVM_PARAMS' count and length disagree";
	case XREC_LIBXL_CONFIG:
		if (r->len < 2 || b[r->len - 1] || memchr(b, 0, r->len - 1))
			return "LIBXL_CONFIG is not one NUL-terminated text";
		return NULL;
	case XREC_HVM_CONTEXT:
		return r->len ? NULL : "HVM_CONTEXT is empty";
	case XREC_X86_CPUID_POLICY:
		return r->len % 24 ? "X86_CPUID_POLICY is not whole leaves" : NULL;
	case XREC_X86_MSR_POLICY:
		return r->len % 16 ? "X86_MSR_POLICY is not whole entries" : NULL;
	default:
		return NULL;
	}
}

int xen_blob_check(enum xen_blob_kind kind, const void *blob, size_t len, char *err,
		   size_t errlen)
{
	const struct rule *rules = kind == XEN_BLOB_CONTEXT ? ctx_rules : dconf_rules;
	size_t nrules = kind == XEN_BLOB_CONTEXT ? sizeof ctx_rules / sizeof *ctx_rules
						 : sizeof dconf_rules / sizeof *dconf_rules;
	unsigned seen[4] = { 0 };
	size_t off = 0;
	struct xen_rec r;
	int e;

	if (len > XEN_BLOB_MAX) {
		snprintf(err, errlen, "%zu bytes (at most %u)", len, XEN_BLOB_MAX);
		return -EINVAL;
	}
	while ((e = xen_blob_next(blob, len, &off, &r)) > 0) {
		size_t i;
		const char *bad;

		for (i = 0; i < nrules && rules[i].type != r.type; i++)
			;
		if (i == nrules) {
			snprintf(err, errlen, "a record of type %#x has no place here", r.type);
			return -EINVAL;
		}
		if (++seen[i] > rules[i].max) {
			snprintf(err, errlen, "more than one %s record", rules[i].name);
			return -EINVAL;
		}
		if ((bad = shape(&r))) {
			snprintf(err, errlen, "%s", bad);
			return -EINVAL;
		}
	}
	if (e < 0) {
		snprintf(err, errlen, "broken framing at byte %zu", off);
		return -EINVAL;
	}
	for (size_t i = 0; i < nrules; i++)
		if (seen[i] < rules[i].min) {
			snprintf(err, errlen, "no %s record", rules[i].name);
			return -EINVAL;
		}
	return 0;
}

const struct xen_rec *xen_blob_find(const void *blob, size_t len, uint32_t type,
				    struct xen_rec *rec)
{
	size_t off = 0;

	while (xen_blob_next(blob, len, &off, rec) > 0)
		if (rec->type == type)
			return rec;
	return NULL;
}

int xen_buf_add(struct xen_buf *b, uint32_t type, const void *body, size_t len)
{
	size_t pad = -len & 7, need = 8 + len + pad;
	uint32_t h[2] = { htole32(type), htole32((uint32_t)len) };

	if (len > XEN_BLOB_MAX || b->len + need > XEN_BLOB_MAX)
		return -E2BIG;
	if (b->len + need > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *p;

		while (cap < b->len + need)
			cap *= 2;
		if (!(p = realloc(b->p, cap)))
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, h, sizeof h);
	if (len)
		memcpy(b->p + b->len + 8, body, len);
	memset(b->p + b->len + 8 + len, 0, pad);
	b->len += need;
	return 0;
}

void xen_buf_free(struct xen_buf *b)
{
	free(b->p);
	*b = (struct xen_buf){ 0 };
}
