/* hv.c — backend registry; see hv.h. */
#include "hv/hv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

extern const struct hv_ops hv_mvm_ops;

static const struct hv_ops *const backends[] = {
	&hv_mvm_ops,
};

const struct hv_ops *hv_backend(const char *uri, const char **name)
{
	const char *colon = strchr(uri, ':');

	if (!colon)
		return NULL;
	for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
		size_t n = strlen(backends[i]->prefix);
		if ((size_t)(colon - uri) == n && memcmp(uri, backends[i]->prefix, n) == 0) {
			*name = colon + 1;
			return backends[i];
		}
	}
	return NULL;
}

static const struct hv_ops *lookup(const char *uri, const char **name)
{
	const struct hv_ops *ops = hv_backend(uri, name);

	if (!ops)
		log_error("%s: unknown domain URI (expected BACKEND:NAME, e.g. mvm:web1)", uri);
	return ops;
}

int hv_open(const char *uri, struct hv_domain **out)
{
	const char *name;
	const struct hv_ops *ops = lookup(uri, &name);

	return ops ? ops->open(name, out) : -EINVAL;
}

int hv_create(const char *uri, const char *config, struct hv_domain **out)
{
	const char *name;
	const struct hv_ops *ops = lookup(uri, &name);

	return ops ? ops->create(name, config, out) : -EINVAL;
}
