/* SPDX-License-Identifier: Apache-2.0 */
/* fence.c — a protected VM's fencing through etcd; see fence.h. */
#include "daemon/fence.h"
#include "daemon/registry.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "coord/etcd.h"
#include "daemon/core.h"
#include "hv/hv.h"

#define KEY_MAX 160

static struct etcd *E;

struct fence {
	char vm[HV_NAME_MAX];
	char owner_key[KEY_MAX], insync_key[KEY_MAX], host_key[KEY_MAX];
	int64_t lease;
	uint64_t token;
	pthread_t ka;
	pthread_mutex_t m;
	pthread_cond_t c;
	bool stop, running;
	uint64_t valid_until;    /* mono ns (atomic) */
};

int fence_init(char *err, size_t errlen)
{
	int r;

	if (!D.coord[0])
		return 0;
	if ((r = etcd_new(D.coord, D.coord_timeout_ms, &E, err, errlen)))
		return r;
	log_info("fencing: etcd at %s, lease TTL %d s", D.coord, D.coord_ttl_s);
	return 0;
}

void fence_exit(void)
{
	etcd_free(E);
	E = NULL;
}

bool fence_configured(void)
{
	return E != NULL;
}

static void keys(struct fence *f, const char *vm)
{
	snprintf(f->vm, sizeof f->vm, "%s", vm);
	snprintf(f->owner_key, sizeof f->owner_key, "/ferry/vm/%s/owner", vm);
	snprintf(f->insync_key, sizeof f->insync_key, "/ferry/vm/%s/in-sync", vm);
	snprintf(f->host_key, sizeof f->host_key, "/ferry/vm/%s/host", vm);
}

static struct fence *fence_new(const char *vm)
{
	struct fence *f = calloc(1, sizeof *f);

	if (!f)
		return NULL;
	keys(f, vm);
	pthread_mutex_init(&f->m, NULL);
	pthread_cond_init(&f->c, NULL);
	return f;
}

/* What a confirmed keep-alive sent at t0 (or a grant) is worth: valid until
 * t0 + TTL, less a tenth (clock rates differ a little; etcd's own expiry
 * loop only ever makes a lease live longer). */
static void note_valid(struct fence *f, uint64_t t0, int64_t ttl_s)
{
	uint64_t ttl = (uint64_t)ttl_s * NSEC_PER_SEC;

	__atomic_store_n(&f->valid_until, ttl_s > 0 ? t0 + ttl - ttl / 10 : 0, __ATOMIC_RELEASE);
}

static void *ka_main(void *arg)
{
	struct fence *f = arg;
	uint64_t every = (uint64_t)D.coord_ttl_s * NSEC_PER_SEC / 4;
	char err[300];

	pthread_mutex_lock(&f->m);
	while (!f->stop) {
		struct timespec ts = ns_to_ts(real_ns() + every);
		uint64_t t0;
		int64_t ttl = 0;
		int r;

		pthread_cond_timedwait(&f->c, &f->m, &ts);
		if (f->stop)
			break;
		pthread_mutex_unlock(&f->m);
		t0 = mono_ns();
		r = etcd_lease_keepalive(E, f->lease, &ttl, err, sizeof err);
		if (!r) {
			note_valid(f, t0, ttl);
			if (!ttl) {
				log_error("%s: fencing: our lease on %s expired", f->vm, f->owner_key);
				pthread_mutex_lock(&f->m);
				break;
			}
		} else {
			log_warn("%s: fencing: keeping the lease alive: %s", f->vm, err);
		}
		pthread_mutex_lock(&f->m);
	}
	pthread_mutex_unlock(&f->m);
	return NULL;
}

/* A lease and its keep-alive thread. */
static int lease_start(struct fence *f, char *why, size_t len)
{
	uint64_t t0 = mono_ns();
	int r = etcd_lease_grant(E, D.coord_ttl_s, &f->lease, why, len);

	if (r)
		return r;
	note_valid(f, t0, D.coord_ttl_s);
	if ((r = -pthread_create(&f->ka, NULL, ka_main, f))) {
		snprintf(why, len, "starting the keep-alive thread: %s", strerror(-r));
		etcd_lease_revoke(E, f->lease, why, len);
		return r;
	}
	f->running = true;
	return 0;
}

static void lease_stop(struct fence *f)
{
	if (!f->running)
		return;
	pthread_mutex_lock(&f->m);
	f->stop = true;
	pthread_cond_broadcast(&f->c);
	pthread_mutex_unlock(&f->m);
	pthread_join(f->ka, NULL);
	f->running = false;
}

static void fence_free(struct fence *f)
{
	pthread_mutex_destroy(&f->m);
	pthread_cond_destroy(&f->c);
	free(f);
}

int fence_acquire(const char *vm, struct fence **out, char *why, size_t len)
{
	struct fence *f = fence_new(vm);
	struct etcd_cmp cmp;
	struct etcd_op op[3];
	int64_t rev;
	bool ok;
	int r;

	if (!f) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	if ((r = lease_start(f, why, len))) {
		fence_free(f);
		return r;
	}
	cmp = (struct etcd_cmp){ ETCD_ABSENT, f->owner_key, 0, NULL };
	op[0] = (struct etcd_op){ false, f->owner_key, D.hostname, f->lease };
	op[1] = (struct etcd_op){ false, f->insync_key, "", 0 };
	op[2] = (struct etcd_op){ false, f->host_key, D.hostname, 0 };
	r = etcd_txn(E, &cmp, 1, op, 3, &ok, &rev, why, len);
	if (!r && !ok) {
		char owner[256], w[300];

		if (fence_owner(vm, owner, sizeof owner, w, sizeof w))
			snprintf(owner, sizeof owner, "another host");
		snprintf(why, len, "%s is owned by %s in etcd (%s): it may run there", vm, owner,
			 f->owner_key);
		r = -EEXIST;
	}
	if (r) {
		fence_release(f);
		return r;
	}
	f->token = (uint64_t)rev;
	*out = f;
	log_info("%s: fencing: %s is ours (token %" PRIu64 ", lease %" PRIx64 ")", vm, f->owner_key,
		 f->token, (uint64_t)f->lease);
	return 0;
}

uint64_t fence_token(const struct fence *f)
{
	return f->token;
}

int64_t fence_lease(const struct fence *f)
{
	return f->lease;
}

int fence_resume(const char *vm, int64_t lease, uint64_t token, struct fence **out, char *why,
		 size_t len)
{
	struct fence *f = fence_new(vm);
	uint64_t t0 = mono_ns();
	int64_t ttl = 0;
	int r;

	if (!f) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	if ((r = etcd_lease_keepalive(E, lease, &ttl, why, len)) || !ttl) {
		if (!r)
			snprintf(why, len, "its lease on /ferry/vm/%s/owner expired", vm);
		fence_free(f);
		return r ? r : -ESTALE;
	}
	f->lease = lease;
	f->token = token;
	note_valid(f, t0, ttl);
	if ((r = -pthread_create(&f->ka, NULL, ka_main, f))) {
		snprintf(why, len, "starting the keep-alive thread: %s", strerror(-r));
		fence_free(f);
		return r;
	}
	f->running = true;
	*out = f;
	log_info("%s: fencing: the claim of before the restart lives on (token %" PRIu64 ")", vm,
		 token);
	return 0;
}

bool fence_valid(const struct fence *f)
{
	return mono_ns() < __atomic_load_n(&f->valid_until, __ATOMIC_ACQUIRE);
}

int fence_set_insync(struct fence *f, const char *job, char *why, size_t len)
{
	struct etcd_cmp cmp = { ETCD_CREATED_AT, f->owner_key, (int64_t)f->token, NULL };
	char v[64];
	struct etcd_op op;
	int64_t rev;
	bool ok;
	int r;

	snprintf(v, sizeof v, "%s%s", job[0] ? "job=" : "", job);
	op = (struct etcd_op){ false, f->insync_key, v, 0 };
	if ((r = etcd_txn(E, &cmp, 1, &op, 1, &ok, &rev, why, len)))
		return r;
	if (!ok) {
		snprintf(why, len, "%s is no longer ours (token %" PRIu64 ")", f->owner_key, f->token);
		return -ESTALE;
	}
	log_info("%s: fencing: in sync: %s", f->vm, v[0] ? v : "none");
	return 0;
}

void fence_release(struct fence *f)
{
	char why[300];

	if (!f)
		return;
	lease_stop(f);
	if (f->token) {
		struct etcd_cmp cmp = { ETCD_CREATED_AT, f->owner_key, (int64_t)f->token, NULL };
		struct etcd_op op[2] = { { true, f->owner_key, NULL, 0 },
					 { true, f->insync_key, NULL, 0 } };
		int64_t rev;
		bool ok;

		if (etcd_txn(E, &cmp, 1, op, 2, &ok, &rev, why, sizeof why))
			log_warn("%s: fencing: removing %s: %s", f->vm, f->owner_key, why);
	}
	if (f->lease && etcd_lease_revoke(E, f->lease, why, sizeof why))
		log_warn("%s: fencing: revoking the lease: %s", f->vm, why);
	fence_free(f);
}

void fence_drop(struct fence *f)
{
	if (!f)
		return;
	lease_stop(f);
	fence_free(f);
}

static int read_key(const char *vm, const char *what, char *out, size_t len, char *why,
		    size_t whylen)
{
	char key[KEY_MAX], *v;
	int64_t c, m;
	int r;

	snprintf(key, sizeof key, "/ferry/vm/%s/%s", vm, what);
	if ((r = etcd_get(E, key, &v, &c, &m, why, whylen)))
		return r;
	snprintf(out, len, "%s", v);
	free(v);
	return 0;
}

int fence_owner(const char *vm, char *owner, size_t len, char *why, size_t whylen)
{
	return read_key(vm, "owner", owner, len, why, whylen);
}

int fence_host(const char *vm, char *host, size_t len, char *why, size_t whylen)
{
	return read_key(vm, "host", host, len, why, whylen);
}

int fence_takeover(const char *vm, const char *job, struct fence **out, char *why, size_t len)
{
	struct fence *f = fence_new(vm);
	struct etcd_cmp cmp[2];
	struct etcd_op op[4];
	char me[64], *v = NULL, rec_key[300], rec[400];
	int64_t rev, c, m;
	bool ok;
	int r;

	if (!f) {
		snprintf(why, len, "out of memory");
		return -ENOMEM;
	}
	snprintf(me, sizeof me, "job=%s", job);
	if ((r = lease_start(f, why, len))) {
		fence_free(f);
		return r;
	}
	cmp[0] = (struct etcd_cmp){ ETCD_ABSENT, f->owner_key, 0, NULL };
	cmp[1] = (struct etcd_cmp){ ETCD_VALUE_IS, f->insync_key, 0, me };
	op[0] = (struct etcd_op){ false, f->owner_key, D.hostname, f->lease };
	op[1] = (struct etcd_op){ false, f->insync_key, "", 0 };
	op[2] = (struct etcd_op){ false, f->host_key, D.hostname, 0 };
	/* The pool's record says so in the same breath (registry.h); this
	 * host's registry rewrites it under its lease. */
	snprintf(rec_key, sizeof rec_key, REGISTRY_PREFIX "vms/%s", vm);
	snprintf(rec, sizeof rec, "{\"host\":\"%s\",\"state\":\"failed-over\"}", D.hostname);
	op[3] = (struct etcd_op){ false, rec_key, rec, 0 };
	if (!(r = etcd_txn(E, cmp, 2, op, 4, &ok, &rev, why, len)) && ok) {
		f->token = (uint64_t)rev;
		*out = f;
		log_info("%s: fencing: taken over (token %" PRIu64 ")", vm, f->token);
		return 0;
	}
	if (!r) {
		/* Which condition failed: the in-sync name decides for good, a
		 * live owner only for now. */
		int e = etcd_get(E, f->insync_key, &v, &c, &m, why, len);

		if (e == 0 && strcmp(v, me) != 0) {
			snprintf(why, len, "this host's copy is not the one in sync (etcd's %s says "
				 "\"%s\", this pairing is %s): the primary released output this copy "
				 "lacks", f->insync_key, v, me);
			r = -EPERM;
		} else if (e == -ENOENT) {
			snprintf(why, len, "no pairing is in sync (%s is absent)", f->insync_key);
			r = -EPERM;
		} else if (e) {
			r = e;
		} else {
			snprintf(why, len, "the primary's lease on %s is still alive", f->owner_key);
			r = -EAGAIN;
		}
		free(v);
	}
	fence_release(f); /* no token: nothing of ours to delete */
	return r;
}
