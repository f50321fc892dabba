/* SPDX-License-Identifier: Apache-2.0 */
/* vm.c — the domains ferryd owns; see vm.h. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/core.h"
#include "daemon/journal.h"
#include "daemon/vm.h"

#define ADOPT_WAIT_MS 5000

struct vm *vm_new(const char *name)
{
	struct vm *v = calloc(1, sizeof *v);

	if (!v)
		return NULL;
	if (hv_uri(v->uri, sizeof v->uri, NULL, name)) {
		free(v);
		return NULL;
	}
	snprintf(v->name, sizeof v->name, "%s", name);
	v->refs = 1;
	v->pid = -1;
	v->created = time(NULL);
	pthread_mutex_init(&v->hlock, NULL);
	return v;
}

static void vm_free(struct vm *v)
{
	hv_close(v->d); /* reaps a runtime we launched, once it ended */
	pthread_mutex_destroy(&v->hlock);
	free(v);
}

struct vm *vm_get(const char *name)
{
	struct vm *v;

	pthread_mutex_lock(&D.lock);
	for (v = D.vms; v && strcmp(v->name, name) != 0; v = v->next)
		;
	if (v)
		v->refs++;
	pthread_mutex_unlock(&D.lock);
	return v;
}

void vm_put(struct vm *v)
{
	bool last;

	if (!v)
		return;
	pthread_mutex_lock(&D.lock);
	last = --v->refs == 0;
	pthread_mutex_unlock(&D.lock);
	if (last)
		vm_free(v);
}

bool vm_name_taken(const char *name)
{
	for (struct vm *v = D.vms; v; v = v->next)
		if (strcmp(v->name, name) == 0)
			return true;
	return false;
}

int vm_busy(struct vm *v, const char *what, const char *job, char *err, size_t errlen)
{
	int r = 0;

	pthread_mutex_lock(&D.lock);
	if (v->dead || !v->listed) {
		snprintf(err, errlen, "%s has ended", v->name);
		r = -ENOENT;
	} else if (v->busy) {
		snprintf(err, errlen, "%s is busy: %s%s%s", v->name, v->busy,
			 v->job[0] ? " in job " : "", v->job);
		r = -EBUSY;
	} else {
		v->busy = what;
		snprintf(v->job, sizeof v->job, "%s", job ? job : "");
	}
	pthread_mutex_unlock(&D.lock);
	return r;
}

void vm_unbusy(struct vm *v)
{
	bool gone;

	pthread_mutex_lock(&D.lock);
	v->busy = NULL;
	v->job[0] = '\0';
	gone = v->dead && v->listed;
	if (gone)
		v->refs++; /* for the call below */
	pthread_mutex_unlock(&D.lock);
	if (gone)
		loop_call(vm_remove, v);
}

int vm_add_locked(struct vm *v)
{
	if (vm_name_taken(v->name))
		return -EEXIST;
	v->listed = true;
	v->refs++;
	v->next = D.vms;
	D.vms = v;
	return 0;
}

int vm_add(struct vm *v)
{
	int r;

	pthread_mutex_lock(&D.lock);
	r = vm_add_locked(v);
	pthread_mutex_unlock(&D.lock);
	return r;
}

void vm_attach(struct vm *v, struct hv_domain *d)
{
	struct hv_info info;

	if (!hv_info(d, &info)) {
		v->pid = info.pid;
		/* The domain's own config: what made it, not what was said. */
		snprintf(v->config, sizeof v->config, "%s", info.config);
	}
	snprintf(v->uri, sizeof v->uri, "%s", d->uri);
	v->d = d;
	vm_describe_net(v);
}

void vm_describe_net(struct vm *v)
{
	json_t *desc = NULL;
	const char *net = NULL;
	char err[128];

	v->net[0] = '\0';
	if (!hv_describe(v->uri, v->config, &desc, err, sizeof err) &&
	    !json_unpack(desc, "{s:s}", "net", &net))
		snprintf(v->net, sizeof v->net, "%s", net);
	json_decref(desc);
}

/* (L) Take v off the list; true if it was on it. */
static bool unlink_locked(struct vm *v)
{
	for (struct vm **pp = &D.vms; *pp; pp = &(*pp)->next)
		if (*pp == v) {
			*pp = v->next;
			v->listed = false;
			return true;
		}
	return false;
}

static void (*gone_cb)(struct vm *v);

void vm_on_gone(void (*fn)(struct vm *v))
{
	gone_cb = fn;
}

/* Loop thread, once v is off the list: stop watching it, forget its record
 * and drop the list's reference (if it was listed) and the caller's. */
static void forget(struct vm *v, bool was_listed)
{
	if (v->watch) {
		event_free(v->watch);
		v->watch = NULL;
	}
	if (was_listed) {
		if (gone_cb)
			gone_cb(v); /* e.g. its service address is let go */
		vm_record_remove(v->name);
		log_info("%s: no longer on this host", v->name);
		vm_put(v);
	}
	vm_put(v);
}

static void vm_forget(void *p)
{
	forget(p, true);
}

/* The guest left this host (migrated away): off the list now, so that no
 * one sees it after its job says so; its watch and record go on the loop. */
void vm_unlist(struct vm *v)
{
	bool was;

	pthread_mutex_lock(&D.lock);
	was = unlink_locked(v);
	v->dead = true;
	v->refs++; /* for vm_forget */
	pthread_mutex_unlock(&D.lock);
	if (was)
		loop_call(vm_forget, v);
	else
		vm_put(v);
}

/* Loop thread; consumes one reference (the caller's). */
void vm_remove(void *p)
{
	struct vm *v = p;
	bool was;

	pthread_mutex_lock(&D.lock);
	was = unlink_locked(v);
	pthread_mutex_unlock(&D.lock);
	forget(v, was);
}

/* The runtime ended (killed, destroyed, migrated away). */
static void vm_died(evutil_socket_t fd, short what, void *arg)
{
	struct vm *v = arg;
	bool now;

	(void)fd, (void)what;
	pthread_mutex_lock(&D.lock);
	v->dead = true;
	now = !v->busy && v->listed;
	if (now)
		v->refs++;
	pthread_mutex_unlock(&D.lock);
	if (!now)
		return; /* the operation holding it finishes, then removes it */
	log_info("%s: it ended", v->name);
	vm_remove(v);
}

void vm_watch_start(void *p)
{
	struct vm *v = p;
	int fd;

	if (v->d && !v->watch && hv_watch(v->d, &fd) == 0) {
		v->watch = event_new(D.base, fd, EV_READ, vm_died, v);
		event_add(v->watch, NULL);
	}
	vm_put(v);
}

static char *vms_dir(char *buf, size_t len)
{
	snprintf(buf, len, "%s/vms", D.state_dir);
	return buf;
}

int vm_record_write(struct vm *v)
{
	char dir[300], file[NAME_LEN + 8];
	json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "name", v->name, "uri", v->uri, "config",
			      v->config, "created", (json_int_t)v->created);
	int r;

	if (!o)
		return -ENOMEM;
	snprintf(file, sizeof file, "%s.json", v->name);
	r = journal_write(vms_dir(dir, sizeof dir), file, o, false); /* see vm.h */
	json_decref(o);
	return r;
}

void vm_record_remove(const char *name)
{
	char path[512];

	snprintf(path, sizeof path, "%s/vms/%s.json", D.state_dir, name);
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("removing %s: %s", path, strerror(errno));
}

/* MemAvailable of /proc/meminfo in bytes, 0 if unknown. */
static uint64_t mem_available(void)
{
	unsigned long long kib = 0;
	char line[128];
	FILE *f = fopen("/proc/meminfo", "re");

	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kib * 1024;
}

json_t *vms_capacity(void)
{
	uint64_t total = D.host_mem, committed = 0;
	long cpus = D.host_cpus ? (long)D.host_cpus : sysconf(_SC_NPROCESSORS_ONLN);
	json_int_t vcpus = 0, vms = 0;

	if (!total)
		total = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	pthread_mutex_lock(&D.lock);
	for (struct vm *v = D.vms; v; v = v->next) {
		json_t *o = vm_json(v);

		committed += (uint64_t)json_integer_value(json_object_get(o, "mem"));
		vcpus += json_integer_value(json_object_get(o, "vcpus"));
		vms++;
		json_decref(o);
	}
	pthread_mutex_unlock(&D.lock);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "cpus", (json_int_t)cpus,
			 "vcpus_committed", vcpus, "mem_total", (json_int_t)total, "mem_committed",
			 (json_int_t)committed, "mem_free",
			 (json_int_t)(committed < total ? total - committed : 0), "mem_available",
			 (json_int_t)mem_available(), "vms", vms);
}

json_t *vm_json(struct vm *v)
{
	const char *state = v->busy ? v->busy : v->paused ? "paused" : "running";
	json_t *o, *desc = NULL;
	char err[128];

	o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:i}", "name", v->name, "uri", v->uri,
		      "state", state, "config", v->config, "pid", (int)v->pid, "created",
		      (json_int_t)v->created, "mem", (json_int_t)0, "vcpus", 0);
	/* What the config asks for, in the backend's words (mem, vcpus, ...). */
	if (o && !hv_describe(v->uri, v->config, &desc, err, sizeof err))
		json_object_update(o, desc);
	json_decref(desc);
	if (o && v->job[0])
		json_object_set_new(o, "job", json_string(v->job));
	if (o && v->net[0])
		json_object_set_new(o, "net_state", json_string(v->net_state[0] ? v->net_state
								    : "not listening here"));
	return o;
}

/* Adopt the domain recorded as name (start-up, on the loop thread):
 * listed and watched. 0, or the error of hv_adopt. */
static int adopt(const char *name, const char *uri, int64_t created)
{
	struct hv_domain *d;
	struct hv_info info;
	struct vm *v;
	int r;

	if ((r = hv_adopt(uri, ADOPT_WAIT_MS, &d)))
		return r;
	if ((r = hv_info(d, &info)) || !(v = vm_new(name))) {
		hv_close(d);
		return r ? r : -ENOMEM;
	}
	vm_attach(v, d);
	v->paused = info.paused;
	v->created = created ? created : time(NULL);
	/* Its runtime kept listening on its address while ferryd was down. */
	v->net_up = v->net[0] != '\0';
	snprintf(v->net_state, sizeof v->net_state, "%s", v->net_up ? "listening (adopted)" : "");
	if (vm_add(v)) {
		vm_put(v);
		return -EEXIST;
	}
	vm_watch_start(v); /* on the loop thread (start-up runs there); takes our reference */
	return 0;
}

/* hv_list: a domain alive on this host that ferryd does not own. */
static int unowned(void *ctx, const char *name)
{
	struct vm *v = vm_get(name);
	char path[512];

	(void)ctx;
	snprintf(path, sizeof path, "%s/vms/%s.json", D.state_dir, name);
	if (v)
		vm_put(v);
	else if (access(path, F_OK) != 0) /* a kept record was reported already */
		log_warn("%s: runs on this host but is not recorded here: not adopted (started "
			 "by hand, or by another ferryd with this run directory?)", name);
	return 0;
}

void vms_adopt(void)
{
	char dir[300];
	DIR *dp = opendir(vms_dir(dir, sizeof dir));
	struct dirent *e;

	if (!dp)
		return;
	while ((e = readdir(dp))) {
		size_t n = strlen(e->d_name);
		char name[NAME_LEN], path[600], uri[HV_URI_MAX] = "";
		const char *ruri = NULL;
		json_int_t created = 0;
		json_t *o;
		int r;

		if (n < 6 || n - 5 >= sizeof name || strcmp(e->d_name + n - 5, ".json") != 0 ||
		    e->d_name[0] == '.')
			continue;
		snprintf(name, sizeof name, "%.*s", (int)(n - 5), e->d_name);
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if ((o = json_load_file(path, 0, NULL))) {
			json_unpack(o, "{s?I, s?s}", "created", &created, "uri", &ruri);
			if (ruri)
				snprintf(uri, sizeof uri, "%s", ruri);
			json_decref(o);
		}
		/* Records from before URIs were kept name the default backend. */
		if (!name_ok(name, NAME_LEN) || (!uri[0] && hv_uri(uri, sizeof uri, NULL, name)) ||
		    strcmp(hv_uri_name(uri), name) != 0) {
			log_warn("%s: not a domain record; ignored", path);
			continue;
		}
		r = adopt(name, uri, created);
		if (!r) {
			log_info("%s: adopted (it kept running while ferryd was down)", name);
		} else if (r == -ENOENT) {
			log_warn("%s: recorded here, but it is gone; forgetting it", name);
			vm_record_remove(name);
		} else {
			/* It may be alive: never forget it (its record stays for the
			 * next start), but say so. */
			log_error("%s: recorded here, but it cannot be adopted (%s); its record is "
				  "kept and ferryd will try again when it restarts", name,
				  r == -EBUSY ? "another process holds it" : strerror(-r));
		}
	}
	closedir(dp);
	/* What runs here besides: said once, left alone. */
	hv_list(NULL, unowned, NULL);
}
