/* SPDX-License-Identifier: Apache-2.0 */
/* config.c — microVM config record; see config.h. */
#include "mvm/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "mvm/kvstore.h"

int mvm_config_check(struct mvm_config *c, char *err, size_t errlen)
{
	int r;

	if (c->mem < MVM_PAGE_SIZE || c->mem % MVM_PAGE_SIZE || c->mem > MVM_MEM_MAX) {
		snprintf(err, errlen, "memory size must be a multiple of %u between 4K and 64G",
			 MVM_PAGE_SIZE);
		return -EINVAL;
	}
	if (c->nr_vcpus < 1 || c->nr_vcpus > MVM_VCPUS_MAX) {
		snprintf(err, errlen, "vcpus must be 1..%u", MVM_VCPUS_MAX);
		return -EINVAL;
	}
	if (c->net[0] && !mvm_net_ok(c->net)) {
		snprintf(err, errlen, "net=%s is not a numeric ADDR:PORT ([V6]:PORT for IPv6)",
			 c->net);
		return -EINVAL;
	}
	r = wl_parse(c->workload, c->mem / MVM_PAGE_SIZE, MVM_PAGE_SIZE, &c->wl, err, errlen);
	if (!r && c->wl.kind == WL_KVSTORE) {
		struct kv_layout l;

		r = kv_layout_of(&c->wl, c->mem, &l, err, errlen);
	}
	return r;
}

bool mvm_net_ok(const char *s)
{
	struct in6_addr a6;
	struct in_addr a4;
	char host[64], port[16];
	uint64_t p;

	return parse_host_port(s, 0, host, sizeof host, port, sizeof port) == 0 &&
	       parse_u64(port, 1, 65535, &p) == 0 &&
	       (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1);
}

int mvm_config_parse(const char *s, struct mvm_config *c, char *err, size_t errlen)
{
	char buf[MVM_CONFIG_MAX], *tok, *save = NULL;
	unsigned seen = 0;
	uint64_t v;

	memset(c, 0, sizeof *c);
	if (strlen(s) >= sizeof buf) {
		snprintf(err, errlen, "config record too long");
		return -EINVAL;
	}
	strcpy(buf, s);
	for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		char *val = strchr(tok, '=');
		if (!val)
			goto bad;
		*val++ = '\0';
		if (strcmp(tok, "mem") == 0 && !(seen & 1) &&
		    parse_size(val, MVM_MEM_MAX, &c->mem) == 0)
			seen |= 1;
		else if (strcmp(tok, "vcpus") == 0 && !(seen & 2) &&
			 parse_u64(val, 1, MVM_VCPUS_MAX, &v) == 0)
			c->nr_vcpus = (unsigned)v, seen |= 2;
		else if (strcmp(tok, "workload") == 0 && !(seen & 4) &&
			 strlen(val) < sizeof c->workload)
			strcpy(c->workload, val), seen |= 4;
		else if (strcmp(tok, "net") == 0 && !(seen & 8) && strlen(val) < sizeof c->net)
			strcpy(c->net, val), seen |= 8;
		else
			goto bad;
	}
	if ((seen & 7) != 7) {
		snprintf(err, errlen, "config record needs mem=, vcpus= and workload=");
		return -EINVAL;
	}
	return mvm_config_check(c, err, errlen);
bad:
	snprintf(err, errlen, "bad config item '%s'", tok);
	return -EINVAL;
}

void mvm_config_format(const struct mvm_config *c, char *buf, size_t len)
{
	char wl[256];

	wl_format(&c->wl, MVM_PAGE_SIZE, wl, sizeof wl);
	snprintf(buf, len, "mem=%" PRIu64 " vcpus=%u workload=%s%s%s", c->mem, c->nr_vcpus, wl,
		 c->net[0] ? " net=" : "", c->net);
}

bool mvm_name_ok(const char *name)
{
	return name_ok(name, MVM_NAME_MAX);
}
