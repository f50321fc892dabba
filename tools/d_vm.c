/*
 * d_vm.c — the microVMs ferryd owns: the list, records in STATE/vms/, death
 * watches, adoption at start-up. See daemon.h for the locking rules.
 */
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
#include "hv/mvm.h"
#include "mvm/config.h"
#include "tools/daemon.h"

struct vm *vm_new(const char *name)
{
	struct vm *v = calloc(1, sizeof *v);

	if (!v)
		return NULL;
	snprintf(v->name, sizeof v->name, "%s", name);
	v->refs = 1;
	v->pid = -1;
	v->created = time(NULL);
	pthread_mutex_init(&v->hlock, NULL);
	return v;
}

static void vm_free(struct vm *v)
{
	hv_close(v->d);
	if (v->child && v->pid > 0)
		waitpid(v->pid, NULL, WNOHANG);
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

/* Loop thread, once v is off the list: stop watching it, forget its record
 * and drop the list's reference (if it was listed) and the caller's. */
static void forget(struct vm *v, bool was_listed)
{
	if (v->watch) {
		event_free(v->watch);
		v->watch = NULL;
	}
	if (was_listed) {
		vm_record_remove(v->name);
		log_info("%s: no longer on this host", v->name);
		vm_put(v);
	}
	vm_put(v);
}

void vm_forget(void *p)
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
	log_info("%s: its runtime ended", v->name);
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
	json_t *o = json_pack("{s:s, s:s, s:I}", "name", v->name, "config", v->config, "created",
			      (json_int_t)v->created);
	int r;

	if (!o)
		return -ENOMEM;
	snprintf(file, sizeof file, "%s.json", v->name);
	r = write_json_file(vms_dir(dir, sizeof dir), file, o);
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

json_t *vm_json(struct vm *v)
{
	struct mvm_config c;
	char err[128];
	json_t *o;
	const char *state = v->busy ? v->busy : v->paused ? "paused" : "running";

	if (mvm_config_parse(v->config, &c, err, sizeof err))
		memset(&c, 0, sizeof c);
	o = json_pack("{s:s, s:s, s:I, s:i, s:s, s:s, s:i, s:I}", "name", v->name, "state", state,
		      "mem", (json_int_t)c.mem, "vcpus", (int)c.nr_vcpus, "workload", c.workload,
		      "config", v->config, "pid", (int)v->pid, "created", (json_int_t)v->created);
	if (o && v->job[0])
		json_object_set_new(o, "job", json_string(v->job));
	return o;
}

/* Open a guest that may still be held by a previous ferryd's connection for
 * a moment. */
static int open_retry(const char *uri, struct hv_domain **d)
{
	int r;

	for (int i = 0; i < 50; i++) {
		r = hv_open(uri, d);
		if (r != -EBUSY)
			return r;
		usleep(100000);
	}
	return r;
}

/* Adopt a running guest (start-up, on the loop thread): listed, watched,
 * and a reference for the caller. */
struct vm *vm_adopt(const char *name, int64_t created)
{
	struct hv_domain *d;
	struct hv_info info;
	struct vm *v;
	char uri[128];
	int r;

	snprintf(uri, sizeof uri, "mvm:%s", name);
	if ((r = open_retry(uri, &d)))
		return NULL;
	if ((r = hv_info(d, &info)) || !(v = vm_new(name))) {
		hv_close(d);
		return NULL;
	}
	v->d = d;
	v->pid = info.pid;
	v->paused = info.paused;
	v->created = created ? created : time(NULL);
	snprintf(v->config, sizeof v->config, "%s", info.config);
	if (vm_add(v)) {
		vm_put(v);
		return NULL;
	}
	v->refs++;
	vm_watch_start(v); /* on the loop thread: start-up runs there */
	return v;
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
		char name[NAME_LEN], path[600];
		json_t *o;
		json_int_t created = 0;

		if (n < 6 || n - 5 >= sizeof name || strcmp(e->d_name + n - 5, ".json") != 0 ||
		    e->d_name[0] == '.')
			continue;
		snprintf(name, sizeof name, "%.*s", (int)(n - 5), e->d_name);
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if ((o = json_load_file(path, 0, NULL))) {
			json_unpack(o, "{s?I}", "created", &created);
			json_decref(o);
		}
		if (!mvm_name_ok(name)) {
			log_warn("%s: not a microVM name; ignored", path);
			continue;
		}
		struct vm *v = vm_adopt(name, created);

		if (v) {
			log_info("%s: adopted (it kept running while ferryd was down)", name);
			vm_put(v);
		} else {
			log_warn("%s: recorded here, but its runtime is gone; forgetting it", name);
			vm_record_remove(name);
		}
	}
	closedir(dp);
}
