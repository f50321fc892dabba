/* SPDX-License-Identifier: Apache-2.0 */
/* hv.c — backend registry and the generic wrappers; see hv.h. */
#include "hv/hv.h"

#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"

extern const struct hv_ops hv_mvm_ops;
#ifdef HAVE_XEN
extern const struct hv_ops hv_xen_ops;
#endif

static const struct hv_ops *const backends[] = {
	&hv_mvm_ops,
#ifdef HAVE_XEN
	&hv_xen_ops,
#endif
};

const struct hv_ops *hv_backend(const char *uri, const char **name)
{
	const char *colon = strchr(uri, ':');

	if (!colon)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
		size_t n = strlen(backends[i]->prefix);

		if ((size_t)(colon - uri) == n && memcmp(uri, backends[i]->prefix, n) == 0) {
			*name = colon + 1;
			return backends[i];
		}
	}
	return NULL;
}

const char *hv_default_backend(void)
{
	return backends[0]->prefix;
}

static const struct hv_ops *by_prefix(const char *backend)
{
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
		if (strcmp(backends[i]->prefix, backend) == 0)
			return backends[i];
	return NULL;
}

int hv_uri(char *buf, size_t len, const char *backend, const char *name)
{
	int n;

	if (!backend)
		backend = hv_default_backend();
	if (!by_prefix(backend) || !name_ok(name, HV_NAME_MAX))
		return -EINVAL;
	n = snprintf(buf, len, "%s:%s", backend, name);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

const char *hv_uri_name(const char *uri)
{
	const char *colon = strchr(uri, ':');

	return colon ? colon + 1 : uri;
}

static const struct hv_ops *lookup(const char *uri, const char **name)
{
	const struct hv_ops *ops = hv_backend(uri, name);

	if (!ops)
		log_error("%s: unknown domain URI (expected BACKEND:NAME, e.g. %s:web1)", uri,
			  hv_default_backend());
	return ops;
}

int hv_open(const char *uri, struct hv_domain **out)
{
	const char *name;
	const struct hv_ops *ops = lookup(uri, &name);

	return ops ? ops->open(name, out) : -EINVAL;
}

int hv_create(const char *uri, const char *config, const void *dconf, size_t dconf_len,
	      struct hv_domain **out)
{
	const char *name;
	const struct hv_ops *ops = lookup(uri, &name);

	return ops ? ops->create(name, config, dconf, dconf_len, out) : -EINVAL;
}

int hv_launch(const char *uri, const struct hv_spec *spec, unsigned flags,
	      struct hv_domain **out, char *err, size_t errlen)
{
	const char *name;
	const struct hv_ops *ops = hv_backend(uri, &name);

	if (!ops) {
		snprintf(err, errlen, "%s: unknown domain URI", uri);
		return -EINVAL;
	}
	return ops->launch(name, spec, flags, out, err, errlen);
}

int hv_describe(const char *uri, const char *config, json_t **out, char *err, size_t errlen)
{
	const char *name;
	const struct hv_ops *ops = hv_backend(uri, &name);

	*out = NULL;
	if (!ops) {
		snprintf(err, errlen, "%s: unknown domain URI", uri);
		return -EINVAL;
	}
	return ops->describe(config, out, err, errlen);
}

int hv_list(const char *backend, int (*fn)(void *ctx, const char *name), void *ctx)
{
	const struct hv_ops *ops = by_prefix(backend ? backend : hv_default_backend());

	return ops ? ops->list(fn, ctx) : -EINVAL;
}

int hv_adopt(const char *uri, int timeout_ms, struct hv_domain **out)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	int r;

	/* A previous owner that just ended lets go of the domain a moment
	 * later (its connection closes with it). */
	while ((r = hv_open(uri, out)) == -EBUSY && mono_ns() < until)
		mono_sleep_ns(100 * NSEC_PER_MSEC);
	return r;
}

int hv_extra_number(struct hv_domain *d, enum hv_extra what, const char *key, double *v)
{
	json_t *o, *n;
	int r = hv_extra(d, what, &o);

	if (r)
		return r;
	n = json_object_get(o, key);
	r = json_is_number(n) ? 0 : -ENOENT;
	if (!r)
		*v = json_number_value(n);
	json_decref(o);
	return r;
}

static pthread_mutex_t runtime_user_lock = PTHREAD_MUTEX_INITIALIZER;
static char runtime_user[64] = HV_RUNTIME_USER;

void hv_set_runtime_user(const char *user)
{
	pthread_mutex_lock(&runtime_user_lock);
	snprintf(runtime_user, sizeof runtime_user, "%s", user);
	pthread_mutex_unlock(&runtime_user_lock);
}

int hv_runtime_ids(uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
	char user[sizeof runtime_user], buf[4096], why[300];
	struct passwd pw, *p = NULL;
	int r;

	pthread_mutex_lock(&runtime_user_lock);
	memcpy(user, runtime_user, sizeof user);
	pthread_mutex_unlock(&runtime_user_lock);
	if (!user[0] || geteuid() != 0)
		return 1;
	r = getpwnam_r(user, &pw, buf, sizeof buf, &p);
	if (r || !p) {
		snprintf(why, sizeof why, "runtime user %s: %s; create it (adduser --system "
			 "--group --no-create-home %s) or set runtime-user in ferryd.conf",
			 user, r ? strerror(r) : "no such user", user);
		r = r ? -r : -ENOENT;
	} else if (p->pw_uid == 0 || p->pw_gid == 0) {
		snprintf(why, sizeof why, "runtime user %s is root: guests would run with every "
			 "privilege; name an unprivileged user (or none, to run them as "
			 "ferryd's user)", user);
		r = -EINVAL;
	} else {
		*uid = p->pw_uid;
		*gid = p->pw_gid;
		return 0;
	}
	log_error("%s", why);
	if (err)
		snprintf(err, errlen, "%s", why);
	return r;
}

int hv_domain_config(struct hv_domain *d, void **blob, size_t *len)
{
	*blob = NULL;
	*len = 0;
	return d->ops->domain_config ? d->ops->domain_config(d, blob, len) : 0;
}
