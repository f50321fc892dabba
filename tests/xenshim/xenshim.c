/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xenshim — the SHIM's `xl`: make, list, check and end shim domains, and
 * the guest process that runs one (see shim.h). Not Xen.
 *
 *   xenshim create NAME MEM_KIB [WS_FRAMES [RATE [rw-disk]]]  a running domain
 *   xenshim list                                     domid name state steps
 *   xenshim verify NAME                              pauses it, checks, says
 *   xenshim destroy NAME
 *   xenshim destroy-all                              (test teardown)
 *   xenshim guest HOST DOMID                         (started by the shim)
 *
 * The host is FERRY_XEN_RUN_DIR.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/xenshim/shim.h"

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* ---- the device model: QMP on HOST/qmp-libxl-DOMID ---- */

struct dm {
	struct shim_map *m;
	int lfd;
};

static void qmp_say(int fd, const char *s)
{
	size_t n = strlen(s);

	if (write(fd, s, n) != (ssize_t)n || write(fd, "\r\n", 2) != 2)
		return;
}

static void qmp_serve(struct dm *dm, int fd)
{
	char buf[8192];
	size_t len = 0;

	qmp_say(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7}}, \"capabilities\": []}}");
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
		json_error_t je;
		json_t *req;
		const char *cmd;

		if (n <= 0)
			return;
		len += (size_t)n;
		buf[len] = 0;
		req = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, &je);
		if (!req)
			continue; /* not whole yet */
		len = 0;
		cmd = json_string_value(json_object_get(req, "execute"));
		if (cmd && !strcmp(cmd, "xen-save-devices-state")) {
			/* QEMU writes its device state to the file (qmp_xen_save_devices_state). */
			const char *f = json_string_value(
				json_object_get(json_object_get(req, "arguments"), "filename"));
			FILE *o = f ? fopen(f, "w") : NULL;

			if (o) {
				fwrite(dm->m->st->dev, 1, dm->m->st->dev_len, o);
				fclose(o);
				qmp_say(fd, "{\"return\": {}}");
			} else {
				qmp_say(fd, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"cannot write the file\"}}");
			}
		} else if (cmd && !strcmp(cmd, "xen-load-devices-state")) {
			/* qmp_xen_load_devices_state: the guest must be stopped. */
			const char *f = json_string_value(
				json_object_get(json_object_get(req, "arguments"), "filename"));
			FILE *in = f && dm->m->st->pause_count ? fopen(f, "r") : NULL;
			size_t got = in ? fread(dm->m->st->dev, 1, sizeof dm->m->st->dev, in) : 0;

			if (in) {
				dm->m->st->dev_len = (uint32_t)got;
				fclose(in);
				qmp_say(fd, "{\"return\": {}}");
			} else {
				qmp_say(fd, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"not stopped, or no file\"}}");
			}
		} else if (cmd && (!strcmp(cmd, "qmp_capabilities") || !strcmp(cmd, "stop") ||
				   !strcmp(cmd, "cont"))) {
			qmp_say(fd, "{\"return\": {}}");
		} else {
			qmp_say(fd, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"not in the shim\"}}");
		}
		json_decref(req);
	}
}

static void *dm_main(void *arg)
{
	struct dm *dm = arg;

	for (;;) {
		int fd = accept(dm->lfd, NULL, NULL);

		if (fd < 0)
			continue;
		qmp_serve(dm, fd);
		close(fd);
	}
	return NULL;
}

static int dm_start(const char *host, struct shim_map *m, struct dm *dm)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t t;

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s/qmp-libxl-%u", host, m->st->domid);
	unlink(sa.sun_path);
	dm->m = m;
	dm->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (dm->lfd < 0 || bind(dm->lfd, (struct sockaddr *)&sa, sizeof sa) || listen(dm->lfd, 8))
		return -errno;
	return pthread_create(&t, NULL, dm_main, dm) ? -EAGAIN : 0;
}

/* ---- the vCPU ---- */

static int guest(const char *host, unsigned domid)
{
	struct shim_map m;
	struct dm dm;
	uint64_t t0 = now_ns(), done = 0, born = t0, checked = t0;
	char stf[4200];

	snprintf(stf, sizeof stf, "%s/shim/%u.st", host, domid);
	if (shim_dom_map(host, domid, &m))
		return 1;
	/* The device model answers before the domain counts as started. */
	if (dm_start(host, &m, &dm))
		return 1;
	__atomic_store_n(&m.st->guest_pid, getpid(), __ATOMIC_RELEASE);
	while (m.st->state != SHIM_DYING) {
		uint64_t rate = m.st->regs.rate, cap = m.st->cap, now = now_ns();

		/* A test that died half-way leaves no guest behind for long: it
		 * ends when its domain's files are gone, and after 15 minutes. */
		if (now - checked > 250000000ULL) {
			checked = now;
			if (access(stf, F_OK) || now - born > 900ULL * 1000000000ULL)
				break;
		}

		if (__atomic_load_n(&m.st->pause_count, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&m.st->parked, 1, __ATOMIC_RELEASE);
			usleep(200);
			t0 = now_ns();
			done = 0;
			continue;
		}
		__atomic_store_n(&m.st->parked, 0, __ATOMIC_RELEASE);
		/* A pause that arrived meanwhile waits for this step's end. */
		if (__atomic_load_n(&m.st->pause_count, __ATOMIC_ACQUIRE))
			continue;
		if (m.st->regs.ws)
			shim_step(&m);
		done++;
		m.st->cpu_time_ns += 1000;
		/* The rate, and the scheduler's cap (percent of one CPU). */
		if (cap && cap < 100 * m.st->vcpus && rate == 0)
			rate = 200000;
		if (cap && cap < 100 * m.st->vcpus)
			rate = rate * cap / (100 * m.st->vcpus);
		if (rate) {
			uint64_t due = t0 + done * 1000000000ULL / rate, t = now_ns();

			if (due > t + 200000)
				usleep((useconds_t)((due - t) / 1000));
		}
	}
	return 0;
}

/* ---- the tool ---- */

static int list_one(void *ctx, struct shim_map *m)
{
	(void)ctx;
	printf("%u %s %s %llu\n", m->st->domid, m->st->name,
	       m->st->state == SHIM_LIVE ? (m->st->pause_count ? "paused" : "running") : "building",
	       (unsigned long long)m->st->regs.steps);
	return 0;
}

static int destroy_one(void *ctx, struct shim_map *m)
{
	const char *host = ctx;

	shim_dom_remove(host, m->st->domid);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: xenshim create NAME MEM_KIB [WS_FRAMES [RATE [rw-disk]]] | list | verify NAME |\n"
			"               destroy NAME | destroy-all | guest HOST DOMID\n"
			"  (a SHIM of Xen for tests; the host is FERRY_XEN_RUN_DIR)\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *host = shim_host();
	struct shim_map m;
	uint32_t domid;
	int r;

	if (argc >= 4 && !strcmp(argv[1], "guest"))
		return guest(argv[2], (unsigned)strtoul(argv[3], NULL, 10));
	if (argc < 2 || !host)
		return usage();
	if (!strcmp(argv[1], "create") && argc >= 4) {
		uint64_t kib = strtoull(argv[3], NULL, 10);

		if (kib < 64 || (r = shim_dom_new(host, argv[2], kib, 1, &domid))) {
			fprintf(stderr, "xenshim: cannot create %s\n", argv[2]);
			return 1;
		}
		shim_dom_map(host, domid, &m);
		m.st->regs.magic = SHIM_REGS_MAGIC;
		m.st->regs.ws = argc > 4 ? strtoull(argv[4], NULL, 10) : 1024;
		m.st->regs.rate = argc > 5 ? strtoull(argv[5], NULL, 10) : 2000;
		m.st->regs.rng = 0x2545f4914f6cdd1dULL ^ domid;
		if (m.st->regs.ws + shim_ledger_frames(m.st->nr_frames) > m.st->nr_frames)
			m.st->regs.ws = m.st->nr_frames - shim_ledger_frames(m.st->nr_frames);
		m.st->dev_len = (uint32_t)snprintf((char *)m.st->dev, sizeof m.st->dev,
						   "SHIMDEV %s", argv[2]);
		snprintf(m.st->config_json, sizeof m.st->config_json,
			 "{\"c_info\":{\"type\":\"hvm\",\"name\":\"%s\"},\"b_info\":{\"max_vcpus\":1,"
			 "\"max_memkb\":%llu,\"target_memkb\":%llu}%s}", argv[2],
			 (unsigned long long)kib, (unsigned long long)kib,
			 argc > 6 && !strcmp(argv[6], "rw-disk")
				 ? ",\"disks\":[{\"vdev\":\"xvda\",\"readwrite\":1}]" : "");
		m.st->ncpuid = 2;
		m.st->nmsr = 1;
		memset(m.st->cpuid, 0x11, 48);
		memset(m.st->msr, 0x22, 16);
		m.st->state = SHIM_LIVE;
		m.st->pause_count = 0;
		shim_dom_unmap(&m);
		if (shim_guest_start(host, domid))
			return 1;
		printf("%u\n", domid);
		return 0;
	}
	if (!strcmp(argv[1], "list"))
		return shim_dom_each(host, list_one, NULL);
	if (!strcmp(argv[1], "destroy-all"))
		return shim_dom_each(host, destroy_one, (void *)host);
	if (argc < 3)
		return usage();
	if (shim_dom_find(host, argv[2], &domid)) {
		fprintf(stderr, "xenshim: no domain %s\n", argv[2]);
		return 1;
	}
	if (!strcmp(argv[1], "destroy")) {
		shim_dom_remove(host, domid);
		return 0;
	}
	if (!strcmp(argv[1], "verify")) {
		char why[256] = "ok";

		if (shim_dom_map(host, domid, &m))
			return 1;
		__atomic_fetch_add(&m.st->pause_count, 1, __ATOMIC_ACQ_REL);
		shim_wait_parked(&m);
		r = shim_verify(&m, why, sizeof why);
		printf("{\"verified\": %s, \"result\": \"%s\", \"steps\": %llu}\n", r ? "false" : "true",
		       why, (unsigned long long)m.st->regs.steps);
		__atomic_fetch_sub(&m.st->pause_count, 1, __ATOMIC_ACQ_REL);
		shim_dom_unmap(&m);
		return r ? 1 : 0;
	}
	return usage();
}
