/* SPDX-License-Identifier: Apache-2.0 */
/* context.c — vCPU context blob; see context.h. */
#include "mvm/context.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

size_t mvm_ctx_encode(const struct mvm_context *c, void *buf)
{
	struct mvm_ctx_hdr h = {
		.magic = htole32(MVM_CTX_MAGIC),
		.version = htole16(MVM_CTX_VERSION),
		.nr_vcpus = htole16((uint16_t)c->nr_vcpus),
		.guest_ns = htole64(c->guest_ns),
		.real_ns = htole64(c->real_ns),
	};
	char *p = buf;

	memcpy(p, &h, sizeof h);
	p += sizeof h;
	for (unsigned i = 0; i < c->nr_vcpus; i++) {
		struct mvm_vcpu_regs r = {
			.seed = htole64(c->regs[i].seed),
			.step = htole64(c->regs[i].step),
			.last_step_ns = htole64(c->regs[i].last_step_ns),
			.max_gap_ns = htole64(c->regs[i].max_gap_ns),
			.resume_gap_ns = htole64(c->regs[i].resume_gap_ns),
		};
		memcpy(p, &r, sizeof r);
		p += sizeof r;
	}
	return (size_t)(p - (char *)buf);
}

int mvm_ctx_decode(const void *buf, size_t len, unsigned expect_vcpus, struct mvm_context *c,
		   char *err, size_t errlen)
{
	struct mvm_ctx_hdr h;
	const char *p = buf;
	unsigned n;

	if (len < sizeof h) {
		snprintf(err, errlen, "context truncated: %zu bytes", len);
		return -EINVAL;
	}
	memcpy(&h, p, sizeof h);
	if (le32toh(h.magic) != MVM_CTX_MAGIC || le16toh(h.version) != MVM_CTX_VERSION) {
		snprintf(err, errlen, "not a microVM context (magic 0x%08x version %u)",
			 le32toh(h.magic), le16toh(h.version));
		return -EINVAL;
	}
	n = le16toh(h.nr_vcpus);
	if (n == 0 || n > MVM_VCPUS_MAX || (expect_vcpus && n != expect_vcpus)) {
		snprintf(err, errlen, "context has %u vCPUs, domain has %u", n, expect_vcpus);
		return -EINVAL;
	}
	if (len != sizeof h + n * sizeof(struct mvm_vcpu_regs) || h.reserved) {
		snprintf(err, errlen, "context of %zu bytes for %u vCPUs", len, n);
		return -EINVAL;
	}
	if (le64toh(h.guest_ns) > MVM_CTX_TIME_MAX || le64toh(h.real_ns) > MVM_CTX_TIME_MAX) {
		snprintf(err, errlen, "context clock out of range");
		return -EINVAL;
	}
	p += sizeof h;
	memset(c, 0, sizeof *c);
	c->nr_vcpus = n;
	c->guest_ns = le64toh(h.guest_ns);
	c->real_ns = le64toh(h.real_ns);
	for (unsigned i = 0; i < n; i++, p += sizeof(struct mvm_vcpu_regs)) {
		struct mvm_vcpu_regs r;
		memcpy(&r, p, sizeof r);
		for (unsigned k = 0; k < 3; k++)
			if (r.reserved[k]) {
				snprintf(err, errlen, "vCPU %u: reserved register set", i);
				return -EINVAL;
			}
		c->regs[i].seed = le64toh(r.seed);
		c->regs[i].step = le64toh(r.step);
		c->regs[i].last_step_ns = le64toh(r.last_step_ns);
		c->regs[i].max_gap_ns = le64toh(r.max_gap_ns);
		c->regs[i].resume_gap_ns = le64toh(r.resume_gap_ns);
	}
	return 0;
}
