/* SPDX-License-Identifier: Apache-2.0 */
/*
 * config.h — a microVM's config record: what it takes to create a matching
 * domain elsewhere. Text, "mem=BYTES vcpus=N workload=SPEC [net=ADDR:PORT]",
 * the form that hv_info.config carries and `ferry-mvm --config` accepts.
 * net is the guest's service address: it moves with the guest.
 */
#ifndef FERRY_MVM_CONFIG_H
#define FERRY_MVM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mvm/workload.h"

#define MVM_MEM_MAX (64ULL << 30)
#define MVM_PAGE_SIZE 4096

struct mvm_config {
	uint64_t mem;       /* bytes, a multiple of the page size */
	unsigned nr_vcpus;  /* 1..MVM_VCPUS_MAX */
	char workload[256]; /* spec, as wl_parse takes it */
	struct wl_config wl;
	char net[64];       /* "ADDR:PORT" (numeric), or empty */
};

/* Check mem, vcpus and parse the workload into c->wl. -EINVAL + reason. */
int mvm_config_check(struct mvm_config *c, char *err, size_t errlen);
/* Parse "mem=... vcpus=... workload=... [net=...]" (any order; the first
 * three required). */
int mvm_config_parse(const char *s, struct mvm_config *c, char *err, size_t errlen);
void mvm_config_format(const struct mvm_config *c, char *buf, size_t len);

/* A service address: numeric "ADDR:PORT" or "[V6]:PORT", port 1..65535. */
bool mvm_net_ok(const char *s);
/* A valid microVM name: 1-63 of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool mvm_name_ok(const char *name);

#endif
