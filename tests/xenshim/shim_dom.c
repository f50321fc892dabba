/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shim_dom.c — the SHIM's "hypervisor": domains as files, and the guest's
 * memory pattern. See shim.h.
 */
#include "tests/xenshim/shim.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef XENSHIM_BIN
#error "XENSHIM_BIN: the path of the xenshim tool"
#endif

const char *shim_host(void)
{
	const char *h = getenv("FERRY_XEN_RUN_DIR");

	return h && *h ? h : NULL;
}

static void path(char *buf, size_t len, const char *host, uint32_t domid, const char *ext)
{
	snprintf(buf, len, "%s/shim/%u.%s", host, domid, ext);
}

static uint64_t words(uint64_t nr)
{
	return (nr + 63) / 64;
}

/* Make a file of size bytes (sparse, zero). */
static int make(const char *p, uint64_t size)
{
	int fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size)) {
		int e = -errno;
		close(fd);
		return e;
	}
	close(fd);
	return 0;
}

/* Domids count up from 1 per host, as Xen's do from boot (domid 0 is
 * dom0's); a lock file serialises the allocation. */
int shim_dom_new(const char *host, const char *name, uint64_t max_memkb, unsigned vcpus,
		 uint32_t *domid)
{
	char p[PATH_MAX];
	struct shim_map m;
	uint32_t id = 0;
	uint64_t nr = max_memkb / 4;
	int lock, r;
	FILE *f;

	snprintf(p, sizeof p, "%s/shim", host);
	if (mkdir(p, 0700) && errno != EEXIST)
		return -errno;
	snprintf(p, sizeof p, "%s/shim/next-domid", host);
	if ((lock = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return -errno;
	flock(lock, LOCK_EX);
	if ((f = fdopen(dup(lock), "r+"))) {
		if (fscanf(f, "%u", &id) != 1)
			id = 1;
		rewind(f);
		fprintf(f, "%u\n", id + 1);
		fclose(f);
	}
	path(p, sizeof p, host, id, "st");
	r = make(p, sizeof(struct shim_dom));
	if (!r)
		path(p, sizeof p, host, id, "ram"), r = make(p, nr * SHIM_PAGE);
	if (!r)
		path(p, sizeof p, host, id, "dirty"), r = make(p, words(nr) * 8);
	if (!r)
		path(p, sizeof p, host, id, "pop"), r = make(p, words(nr) * 8);
	if (!r && !(r = shim_dom_map(host, id, &m))) {
		m.st->domid = id;
		m.st->state = SHIM_BUILDING;
		snprintf(m.st->name, sizeof m.st->name, "%s", name);
		m.st->max_memkb = max_memkb;
		m.st->nr_frames = nr;
		m.st->vcpus = vcpus;
		m.st->type = 1;
		m.st->pause_count = 1;
		m.st->guest_pid = -1;
		m.st->weight = 256;
		for (int i = 0; i < 16; i++)
			m.st->uuid[i] = (uint8_t)(id * 16 + i);
		m.st->tsc.khz = 2000000;
		m.st->params[1] = 0xfeffc; /* HVM_PARAM_STORE_PFN: a non-zero one */
		__atomic_store_n(&m.st->magic, SHIM_MAGIC, __ATOMIC_RELEASE);
		shim_dom_unmap(&m);
		*domid = id;
	}
	close(lock);
	if (r)
		shim_dom_remove(host, id);
	return r;
}

static void *map_file(const char *p, size_t *len, int *fdout)
{
	int fd = open(p, O_RDWR | O_CLOEXEC);
	struct stat st;
	void *m;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) || st.st_size == 0) {
		close(fd);
		errno = ENOENT;
		return NULL;
	}
	*len = (size_t)st.st_size;
	m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fdout)
		*fdout = fd;
	else
		close(fd);
	return m == MAP_FAILED ? NULL : m;
}

int shim_dom_map(const char *host, uint32_t domid, struct shim_map *m)
{
	char p[PATH_MAX];
	size_t len;

	memset(m, 0, sizeof *m);
	m->ramfd = -1;
	path(p, sizeof p, host, domid, "st");
	if (!(m->st = map_file(p, &len, NULL)) || len != sizeof *m->st)
		goto fail;
	path(p, sizeof p, host, domid, "ram");
	if (!(m->ram = map_file(p, &len, &m->ramfd)))
		goto fail;
	path(p, sizeof p, host, domid, "dirty");
	if (!(m->dirty = map_file(p, &len, NULL)))
		goto fail;
	path(p, sizeof p, host, domid, "pop");
	if (!(m->pop = map_file(p, &len, NULL)))
		goto fail;
	return 0;
fail:
	shim_dom_unmap(m);
	return -ENOENT;
}

void shim_dom_unmap(struct shim_map *m)
{
	uint64_t nr = m->st ? m->st->nr_frames : 0;

	if (m->ram)
		munmap(m->ram, nr * SHIM_PAGE);
	if (m->dirty)
		munmap(m->dirty, words(nr) * 8);
	if (m->pop)
		munmap(m->pop, words(nr) * 8);
	if (m->st)
		munmap(m->st, sizeof *m->st);
	if (m->ramfd >= 0)
		close(m->ramfd);
	memset(m, 0, sizeof *m);
	m->ramfd = -1;
}

void shim_dom_remove(const char *host, uint32_t domid)
{
	static const char *const ext[] = { "st", "ram", "dirty", "pop" };
	struct shim_map m;
	char p[PATH_MAX];

	if (!shim_dom_map(host, domid, &m)) {
		m.st->state = SHIM_DYING;
		if (m.st->guest_pid > 0 && kill(m.st->guest_pid, SIGKILL) == 0)
			for (int i = 0; i < 200 && kill(m.st->guest_pid, 0) == 0; i++)
				usleep(5000);
		shim_dom_unmap(&m);
	}
	for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
		path(p, sizeof p, host, domid, ext[i]);
		unlink(p);
	}
	snprintf(p, sizeof p, "%s/qmp-libxl-%u", host, domid);
	unlink(p);
}

static int by_domid(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int shim_dom_each(const char *host, int (*fn)(void *ctx, struct shim_map *m), void *ctx)
{
	char p[PATH_MAX];
	uint32_t ids[1024];
	size_t n = 0;
	struct dirent *e;
	DIR *dp;
	int r = 0;

	snprintf(p, sizeof p, "%s/shim", host);
	if (!(dp = opendir(p)))
		return 0;
	while ((e = readdir(dp)) && n < 1024) {
		unsigned id;
		char ext[8];

		if (sscanf(e->d_name, "%u.%7s", &id, ext) == 2 && !strcmp(ext, "st"))
			ids[n++] = id;
	}
	closedir(dp);
	qsort(ids, n, sizeof *ids, by_domid);
	for (size_t i = 0; i < n && !r; i++) {
		struct shim_map m;

		if (shim_dom_map(host, ids[i], &m))
			continue;
		if (__atomic_load_n(&m.st->magic, __ATOMIC_ACQUIRE) == SHIM_MAGIC &&
		    m.st->state != SHIM_DYING)
			r = fn(ctx, &m);
		shim_dom_unmap(&m);
	}
	return r;
}

struct find {
	const char *name;
	uint32_t domid;
};

static int find_one(void *ctx, struct shim_map *m)
{
	struct find *f = ctx;

	if (strcmp(m->st->name, f->name))
		return 0;
	f->domid = m->st->domid;
	return 1;
}

int shim_dom_find(const char *host, const char *name, uint32_t *domid)
{
	struct find f = { name, 0 };

	if (shim_dom_each(host, find_one, &f) != 1)
		return -ENOENT;
	*domid = f.domid;
	return 0;
}

/* The guest runs detached, as a domain does: not the caller's child. */
int shim_guest_start(const char *host, uint32_t domid)
{
	char id[16];
	pid_t pid = fork(), gc;
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		setsid();
		if ((gc = fork()) == 0) {
			int null = open("/dev/null", O_RDWR);

			snprintf(id, sizeof id, "%u", domid);
			if (null >= 0) {
				dup2(null, 0);
				dup2(null, 1);
			}
			execl(XENSHIM_BIN, "xenshim", "guest", host, id, (char *)NULL);
			_exit(127);
		}
		_exit(gc < 0 ? 1 : 0);
	}
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -ECHILD;
	/* As libxl waits for QEMU to be ready: until the guest says it runs. */
	{
		struct shim_map m;
		int r = shim_dom_map(host, domid, &m);

		for (int i = 0; !r && i < 5000 && __atomic_load_n(&m.st->guest_pid, __ATOMIC_ACQUIRE) <= 0; i++)
			usleep(1000);
		if (!r && m.st->guest_pid <= 0)
			r = -ETIMEDOUT;
		shim_dom_unmap(&m);
		return r;
	}
}

void shim_wait_parked(struct shim_map *m)
{
	for (int i = 0; i < 20000; i++) {
		int pid = __atomic_load_n(&m->st->guest_pid, __ATOMIC_ACQUIRE);

		if (pid <= 0 || __atomic_load_n(&m->st->parked, __ATOMIC_ACQUIRE) ||
		    kill(pid, 0) != 0)
			return;
		usleep(100);
	}
}

/* ---- the guest's pattern ---- */

uint64_t shim_ledger_frames(uint64_t nr_frames)
{
	return (nr_frames * 4 + SHIM_PAGE - 1) / SHIM_PAGE;
}

uint64_t shim_mix(uint64_t pfn, uint64_t seq)
{
	uint64_t z = pfn * 0x9e3779b97f4a7c15ULL ^ seq * 0xbf58476d1ce4e5b9ULL;

	if (!seq)
		return 0;
	z ^= z >> 31;
	z *= 0x94d049bb133111ebULL;
	return z ^ (z >> 29);
}

void shim_fill(uint8_t *page, uint64_t pfn, uint64_t seq)
{
	uint64_t *w = (uint64_t *)page, v = shim_mix(pfn, seq);

	w[0] = pfn;
	w[1] = seq;
	for (unsigned i = 2; i < SHIM_PAGE / 8; i++) {
		v ^= v << 13;
		v ^= v >> 7;
		v ^= v << 17;
		w[i] = v;
	}
}

static void mark(struct shim_map *m, uint64_t pfn)
{
	if (__atomic_load_n(&m->st->logdirty, __ATOMIC_ACQUIRE))
		__atomic_fetch_or(&m->dirty[pfn / 64], 1ULL << (pfn % 64), __ATOMIC_RELEASE);
	__atomic_fetch_or(&m->pop[pfn / 64], 1ULL << (pfn % 64), __ATOMIC_RELAXED);
}

void shim_step(struct shim_map *m)
{
	struct shim_regs *g = &m->st->regs;
	uint64_t L = shim_ledger_frames(m->st->nr_frames), pfn, seq, old;
	uint32_t *ledger = (uint32_t *)m->ram;

	g->rng ^= g->rng << 13;
	g->rng ^= g->rng >> 7;
	g->rng ^= g->rng << 17;
	pfn = L + g->rng % g->ws;
	seq = ++g->steps;
	old = ledger[pfn];
	shim_fill(m->ram + pfn * SHIM_PAGE, pfn, seq);
	mark(m, pfn);
	ledger[pfn] = (uint32_t)seq;
	mark(m, pfn * 4 / SHIM_PAGE);
	g->hash += shim_mix(pfn, (uint32_t)seq) - shim_mix(pfn, old);
}

int shim_verify(const struct shim_map *m, char *why, size_t len)
{
	const struct shim_regs *g = &m->st->regs;
	uint64_t nr = m->st->nr_frames, L = shim_ledger_frames(nr), hash = 0;
	const uint32_t *ledger = (const uint32_t *)m->ram;
	uint8_t *want = malloc(SHIM_PAGE);

	if (!want)
		return -ENOMEM;
	if (g->magic != SHIM_REGS_MAGIC) {
		snprintf(why, len, "the guest's registers are not a guest's");
		free(want);
		return -EBADMSG;
	}
	for (uint64_t p = L; p < nr; p++) {
		uint32_t seq = ledger[p];

		hash += shim_mix(p, seq);
		if (seq)
			shim_fill(want, p, seq);
		else
			memset(want, 0, SHIM_PAGE);
		if (memcmp(want, m->ram + p * SHIM_PAGE, SHIM_PAGE)) {
			snprintf(why, len, "frame %llu is not the version %u the ledger says",
				 (unsigned long long)p, seq);
			free(want);
			return -EBADMSG;
		}
	}
	free(want);
	if (hash != g->hash) {
		snprintf(why, len, "the ledger is not the one the vCPU wrote (a stale ledger page)");
		return -EBADMSG;
	}
	return 0;
}

int shim_tool(const char *host, const char *fmt, ...)
{
	char args[256], cmd[PATH_MAX + 512];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof args, fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof cmd, "FERRY_XEN_RUN_DIR='%s' '%s' %s >/dev/null 2>&1", host,
		 XENSHIM_BIN, args);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
