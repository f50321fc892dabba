/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hv/mvm.c — the microVM backend: hv_ops over a running ferry-mvm.
 *
 * The handle holds the runtime's control socket and, received over it with
 * SCM_RIGHTS, the guest RAM memfd and the runtime's /proc/self/pagemap fd.
 * Guest RAM is read and written through hv/memfd_pages.h: preadv/pwritev on
 * the memfd, and short runs of hot populated pages (read often already)
 * copied from a read-only mapping (never written through one: that would
 * allocate holes a fault at a time); the dirty log is harvested with PAGEMAP_SCAN on the pagemap
 * fd.
 */
#include "hv/mvm.h"

#include <endian.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "mvm/config.h"
#include "mvm/name.h"
#include "hv/memfd_pages.h"
#include "hv/pagemap.h"
#include "hv/uffd_postcopy.h"
#include "mvm/context.h"

#ifndef P_PIDFD
#define P_PIDFD 3 /* Linux 5.4; glibc 2.36 headers lack it */
#endif

#define RPC_TIMEOUT_MS 10000
#define VERIFY_TIMEOUT_MS 600000
#define READY_TIMEOUT_MS 30000
#define QUIT_TIMEOUT_MS 5000

struct mvm_dom {
	struct hv_domain hv;
	char name[MVM_NAME_MAX];
	int sock;
	int memfd;
	int pagemap;
	int pidfd;
	pid_t pid;
	pthread_mutex_t rpc_lock; /* one request at a time (output from any thread) */
	pthread_mutex_t write_lock; /* one writer of guest RAM at a time (memfd_pages.h) */
	uint32_t seq;
	uint64_t ram_base;
	uint64_t ram_size;
	uint64_t nr_frames;
	uint32_t page_size;
	unsigned nr_vcpus;
	bool paused;
	bool logdirty;
	/* An output MARK asked for while paused: sent with the unpause (one
	 * round trip to the runtime fewer per replication epoch). 0: none. */
	uint64_t mark;
	uint64_t paused_ns; /* the last pause, as the runtime measured it */
	/* The context the runtime sent with its last pause; while it stays
	 * paused (nothing here loads another) it is the context to save. */
	char *ctx;
	size_t ctx_len;
	bool ctx_valid;
	bool incoming; /* not yet committed (first unpause) */
	bool child;    /* we spawned it (create): we reap it */
	bool kvstore;  /* it has a NIC and a store (MVM_NIC_INFO answers) */
	struct pagemap_scan scan;
	/* Guest RAM's page I/O: the memfd, mapped read-only (short runs are
	 * read from the mapping); created domains track which 2 MiB blocks
	 * were allocated ahead of the first write, until their commit. */
	struct memfd_pages pages;
	/* Post-copy, between postcopy_begin and postcopy_end. */
	struct uffd_pc pc;
	bool postcopy;
};

extern const struct hv_ops hv_mvm_ops;

static struct mvm_dom *dom(struct hv_domain *d) { return (struct mvm_dom *)d; }

static int sys_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
static int sys_pidfd_kill(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Wait up to the deadline for events on fd (a deadline passed: look once).
 * 1 ready, 0 timed out, -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		uint64_t now = mono_ns();
		int ms = now >= deadline ? 0 : (int)DIV_ROUND_UP(deadline - now, NSEC_PER_MSEC);
		int r = poll(&p, 1, ms);

		if (r > 0)
			return 1;
		if (r == 0 && ms == 0)
			return 0; /* a past deadline still looks once */
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

/* Close the fds that came with a message we do not keep. */
static void drop_fds(struct msghdr *msg)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
				close(fd);
			}
}

/*
 * One request/reply exchange over the (nonblocking) control socket, within
 * timeout_ms. The reply body (if any) is copied to rep (at most rep_max
 * bytes); received fds go to fds[0..want_fds). A late reply to an earlier
 * request that timed out is recognised by its sequence number and dropped, so
 * one timeout does not shift every later answer. Returns the runtime's status
 * (0 or -errno, logged with its reason) or a transport error.
 */
/* One request (with send_fd riding along if >= 0) and its reply. */
static int rpc_fd_locked(struct mvm_dom *d, unsigned type, const void *body, size_t len, void *rep,
		  size_t rep_max, size_t *rep_len, int *fds, int want_fds, int timeout_ms,
		  int send_fd)
{
	static _Thread_local char buf[MVM_MSG_MAX];
	uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	struct mvm_req_hdr h = {
		.magic = htole32(MVM_REQ_MAGIC),
		.version = htole16(MVM_PROTO_VERSION),
		.type = htole16((uint16_t)type),
		.seq = htole32(++d->seq),
		.body_len = htole32((uint32_t)len),
	};
	struct iovec iov[2] = { { &h, sizeof h }, { (void *)body, len } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	union {
		char b[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} cm;
	char err[160];

	if (send_fd >= 0) {
		struct cmsghdr *c;

		msg.msg_control = cm.b;
		msg.msg_controllen = CMSG_SPACE(sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &send_fd, sizeof send_fd);
	}
	const void *rbody;
	uint32_t rlen;
	int32_t status;
	int got = 0, r;
	ssize_t n;

	while (sendmsg(d->sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			r = -errno;
			log_error("mvm:%s: sending %s: %s", d->name, mvm_msg_name(type),
				  strerror(errno));
			return r;
		}
		if ((r = wait_fd(d->sock, POLLOUT, deadline)) <= 0)
			goto timeout;
	}
	for (;;) {
		struct mvm_rep_hdr rh;

		if ((r = wait_fd(d->sock, POLLIN, deadline)) <= 0)
			goto timeout;
		iov[0] = (struct iovec){ buf, sizeof buf };
		msg = (struct msghdr){ .msg_iov = iov, .msg_iovlen = 1, .msg_control = cm.b,
				       .msg_controllen = sizeof cm.b };
		n = recvmsg(d->sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -ECONNRESET;
			log_error("mvm:%s: runtime gone (%s)", d->name,
				  n < 0 ? strerror(errno) : "exited");
			return r;
		}
		memcpy(&rh, buf, MIN((size_t)n, sizeof rh));
		if ((size_t)n >= sizeof rh && le32toh(rh.magic) == MVM_REP_MAGIC &&
		    (int32_t)(le32toh(rh.seq) - d->seq) < 0) {
			log_debug("mvm:%s: dropping a late reply (#%u)", d->name, le32toh(rh.seq));
			drop_fds(&msg);
			continue;
		}
		break;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
			if (got < want_fds)
				fds[got++] = fd;
			else
				close(fd);
		}
	}
	r = mvm_rep_parse(buf, msg.msg_flags & MSG_TRUNC ? MVM_MSG_MAX + 1 : (size_t)n,
			  (uint16_t)type, d->seq, &status, &rbody, &rlen, err, sizeof err);
	if (r == 0 && status == 0 && (got != want_fds || rlen > rep_max)) {
		snprintf(err, sizeof err, "unexpected reply shape (%d fds, %u bytes)", got, rlen);
		r = -EBADMSG;
	}
	if (r) {
		log_error("mvm:%s: %s: %s", d->name, mvm_msg_name(type), err);
		goto fail;
	}
	if (status) {
		/* The body of an error reply is its reason. A HELLO refused because
		 * another owner holds the domain is the caller's to report (hv.h):
		 * an adopting daemon waits it out without a line per try. */
		log_msg(type == MVM_HELLO && status == -EBUSY ? LOG_DEBUG : LOG_ERROR,
			"mvm:%s: %s refused: %.*s", d->name, mvm_msg_name(type), (int)rlen,
			rlen ? (const char *)rbody : strerror(-status));
		r = status;
		goto fail;
	}
	if (rep)
		memcpy(rep, rbody, rlen);
	if (rep_len)
		*rep_len = rlen;
	return 0;
fail:
	while (got)
		close(fds[--got]);
	return r;
timeout:
	if (r == 0) {
		log_error("mvm:%s: no answer to %s within %d ms", d->name, mvm_msg_name(type),
			  timeout_ms);
		return -ETIMEDOUT;
	}
	log_error("mvm:%s: %s: poll: %s", d->name, mvm_msg_name(type), strerror(-r));
	return r;
}

static int rpc_fd(struct mvm_dom *d, unsigned type, const void *body, size_t len, void *rep,
		  size_t rep_max, size_t *rep_len, int *fds, int want_fds, int timeout_ms,
		  int send_fd)
{
	int r;

	pthread_mutex_lock(&d->rpc_lock);
	r = rpc_fd_locked(d, type, body, len, rep, rep_max, rep_len, fds, want_fds, timeout_ms,
			  send_fd);
	pthread_mutex_unlock(&d->rpc_lock);
	return r;
}

static int rpc(struct mvm_dom *d, unsigned type, const void *body, size_t len, void *rep,
	       size_t rep_max, size_t *rep_len, int *fds, int want_fds, int timeout_ms)
{
	return rpc_fd(d, type, body, len, rep, rep_max, rep_len, fds, want_fds, timeout_ms, -1);
}

static int rpc_simple(struct mvm_dom *d, unsigned type)
{
	return rpc(d, type, NULL, 0, NULL, 0, NULL, NULL, 0, RPC_TIMEOUT_MS);
}

static int rpc_u32(struct mvm_dom *d, unsigned type, uint32_t v)
{
	struct mvm_u32 b = { .v = htole32(v) };
	return rpc(d, type, &b, sizeof b, NULL, 0, NULL, NULL, 0, RPC_TIMEOUT_MS);
}

static int get_info(struct mvm_dom *d, unsigned type, struct mvm_info *i)
{
	size_t len;
	int r = rpc(d, type, NULL, 0, i, sizeof *i, &len, NULL, 0, RPC_TIMEOUT_MS);

	if (r)
		return r;
	if (len != sizeof *i) {
		log_error("mvm:%s: info reply of %zu bytes", d->name, len);
		return -EBADMSG;
	}
	i->name[sizeof i->name - 1] = i->config[sizeof i->config - 1] = '\0';
	return 0;
}

static bool wait_dead(int pidfd, int timeout_ms)
{
	return pidfd >= 0 && wait_fd(pidfd, POLLIN, mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC) == 1;
}

/* Collect our dead child's exit status, if it is ours and dead. */
static void reap(struct mvm_dom *d)
{
	siginfo_t si;

	if (d->child && d->pidfd >= 0 &&
	    waitid((idtype_t)P_PIDFD, (id_t)d->pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid)
		d->child = false;
}

static void mvm_close(struct hv_domain *hd)
{
	struct mvm_dom *d = dom(hd);

	if (!d)
		return;
	if (d->postcopy)
		uffd_pc_free(&d->pc);
	close_fd(&d->sock);
	/* Closing the link ends an uncommitted incoming runtime: wait for it. */
	if (d->child && d->incoming)
		wait_dead(d->pidfd, QUIT_TIMEOUT_MS);
	reap(d);
	/* A runtime cannot remove its own files: whoever sees it dead does. */
	if (wait_dead(d->pidfd, 0))
		mvm_name_tidy(d->name);
	if (d->pages.rmap)
		munmap((void *)d->pages.rmap, d->ram_size);
	close_fd(&d->memfd);
	close_fd(&d->pagemap);
	close_fd(&d->pidfd);
	pagemap_scan_free(&d->scan);
	memfd_pages_free(&d->pages);
	free(d->ctx);
	free(d);
}

/*
 * Take ownership over a connected control socket: HELLO, then the RAM and
 * pagemap fds, checked (seals, size) before they are trusted. child_pidfd
 * (or -1) is the pidfd of a runtime we spawned; the handle takes it over.
 */
static int attach(const char *name, int sock, int child_pidfd, struct hv_domain **out)
{
	struct mvm_dom *d = calloc(1, sizeof *d);

	if (d) {
		pthread_mutex_init(&d->rpc_lock, NULL);
		pthread_mutex_init(&d->write_lock, NULL);
	}
	struct mvm_info info;
	struct mvm_fds f;
	size_t len;
	int fds[2], r, seals;
	off_t size;

	if (!d) {
		close(sock);
		if (child_pidfd >= 0)
			close(child_pidfd);
		return -ENOMEM;
	}
	d->hv.ops = &hv_mvm_ops;
	snprintf(d->hv.uri, sizeof d->hv.uri, "mvm:%s", name);
	snprintf(d->name, sizeof d->name, "%s", name);
	d->sock = sock;
	d->memfd = d->pagemap = -1;
	d->pidfd = child_pidfd;
	d->child = d->incoming = child_pidfd >= 0;
	r = get_info(d, MVM_HELLO, &info);
	if (r)
		goto fail;
	d->page_size = le32toh(info.page_size);
	d->nr_frames = le64toh(info.nr_frames);
	d->nr_vcpus = le32toh(info.nr_vcpus);
	d->paused = le32toh(info.paused);
	d->logdirty = le32toh(info.logdirty);
	d->incoming = le32toh(info.incoming);
	d->pid = (pid_t)le32toh((uint32_t)info.pid);
	d->kvstore = strstr(info.config, "workload=kvstore") != NULL;
	r = rpc(d, MVM_GET_FDS, NULL, 0, &f, sizeof f, &len, fds, 2, RPC_TIMEOUT_MS);
	if (r)
		goto fail;
	d->memfd = fds[0];
	d->pagemap = fds[1];
	d->ram_base = le64toh(f.ram_base);
	d->ram_size = le64toh(f.ram_size);
	r = -EBADMSG;
	seals = fcntl(d->memfd, F_GET_SEALS);
	size = lseek(d->memfd, 0, SEEK_END);
	if (len != sizeof f || d->page_size != MVM_PAGE_SIZE ||
	    d->ram_size != d->nr_frames * d->page_size || d->ram_base % d->page_size) {
		log_error("mvm:%s: runtime reports an inconsistent RAM layout", name);
		goto fail;
	}
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW) ||
	    size != (off_t)d->ram_size) {
		log_error("mvm:%s: guest RAM is not a sealed memfd of %" PRIu64 " bytes", name,
			  d->ram_size);
		goto fail;
	}
	r = pagemap_scan_init(&d->scan, d->pagemap, d->ram_base, d->nr_frames, d->page_size);
	if (r)
		goto fail;
	d->pages = (struct memfd_pages){ .fd = d->memfd, .page_size = d->page_size,
					 .nr_frames = d->nr_frames, .write_lock = &d->write_lock };
	/* Tracked from here, not on first use: several threads may be writing
	 * a created domain's pages at once (a migration's channels). */
	if (d->incoming && (r = memfd_pages_track_blocks(&d->pages)))
		goto fail;
	/* Sealed against shrinking: a read through the mapping cannot fault
	 * past the end. Without it, reads are system calls. */
	void *map = mmap(NULL, d->ram_size, PROT_READ, MAP_SHARED | MAP_NORESERVE, d->memfd, 0);
	d->pages.rmap = map == MAP_FAILED ? NULL : map;
	if (d->pages.rmap && (r = memfd_pages_track_reads(&d->pages)))
		goto fail;
	/* The runtime is alive while it answers, so its pid is still its own
	 * when the pidfd is taken; the PING after proves it. */
	if (d->pidfd < 0)
		d->pidfd = sys_pidfd_open(d->pid);
	if (d->pidfd < 0 || rpc_simple(d, MVM_PING)) {
		r = -ESRCH;
		log_error("mvm:%s: runtime vanished while attaching", name);
		goto fail;
	}
	*out = &d->hv;
	return 0;
fail:
	mvm_close(&d->hv);
	return r;
}

/* Connect to NAME's control socket: 0 and *fd, -ENOENT if no runtime
 * listens there, or -errno. quiet: the caller only asks (list). */
static int ctl_connect(const char *name, bool quiet, int *out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[256];
	int fd, r;

	r = mvm_socket_path(name, path, sizeof path, false);
	if (r || strlen(path) >= sizeof sa.sun_path) {
		log_error("mvm:%s: bad microVM name", name);
		return -EINVAL;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A wedged runtime's full backlog makes connect wait: retry, bounded. */
	for (uint64_t until = mono_ns() + RPC_TIMEOUT_MS * NSEC_PER_MSEC;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
			break;
		if (errno == EAGAIN && mono_ns() < until) {
			mono_sleep_ns(10 * NSEC_PER_MSEC);
			continue;
		}
		r = errno == ECONNREFUSED || errno == ENOENT ? -ENOENT
		    : errno == EAGAIN			   ? -ETIMEDOUT
							   : -errno;
		if (!quiet)
			log_error("mvm:%s: no such microVM (%s: %s)", name, path, strerror(errno));
		close(fd);
		return r;
	}
	*out = fd;
	return 0;
}

static int mvm_open(const char *name, struct hv_domain **out)
{
	int fd, r;

	if ((r = ctl_connect(name, false, &fd)))
		return r;
	return attach(name, fd, -1, out);
}

/* Every runtime whose control socket answers a connect is alive. */
static int mvm_list(int (*fn)(void *ctx, const char *name), void *ctx)
{
	char dir[256], name[MVM_NAME_MAX];
	struct dirent *e;
	DIR *dp;
	int n = 0, r = 0, fd;

	snprintf(dir, sizeof dir, "%s/mvm", ferry_run_dir());
	if (!(dp = opendir(dir)))
		return errno == ENOENT ? 0 : -errno;
	while (!r && (e = readdir(dp))) {
		size_t len = strlen(e->d_name);

		if (len <= 5 || len - 5 >= sizeof name || strcmp(e->d_name + len - 5, ".sock") != 0)
			continue;
		snprintf(name, sizeof name, "%.*s", (int)(len - 5), e->d_name);
		if (!mvm_name_ok(name))
			continue;
		if ((r = ctl_connect(name, true, &fd))) {
			if (r == -ENOENT) /* a dead runtime's socket */
				mvm_name_tidy(name);
			r = 0;
			continue;
		}
		close(fd);
		n++;
		r = fn(ctx, name);
	}
	closedir(dp);
	return r ? r : n;
}

/* The config record of spec, checked; defaults: 256 MiB, 1 vCPU, idle. */
static int spec_config(const struct hv_spec *spec, char *config, size_t len, char *err,
		       size_t errlen)
{
	struct mvm_config cfg;

	snprintf(config, len, "mem=%" PRIu64 " vcpus=%u workload=%s%s%s",
		 spec->mem ? spec->mem : (uint64_t)256 << 20, spec->vcpus ? spec->vcpus : 1,
		 spec->detail ? spec->detail : "idle", spec->net ? " net=" : "",
		 spec->net ? spec->net : "");
	return mvm_config_parse(config, &cfg, err, errlen);
}

static int mvm_describe(const char *config, json_t **out, char *err, size_t errlen)
{
	struct mvm_config c;
	int r = mvm_config_parse(config, &c, err, errlen);

	if (r)
		return r;
	*out = json_pack("{s:I, s:i, s:s}", "mem", (json_int_t)c.mem, "vcpus", (int)c.nr_vcpus,
			 "workload", c.workload);
	if (*out && c.net[0])
		json_object_set_new(*out, "net", json_string(c.net));
	return *out ? 0 : -ENOMEM;
}

const char *hv_mvm_runtime_path(void)
{
	static char path[PATH_MAX];
	const char *env = getenv("FERRY_MVM");
	ssize_t n;

	if (env && *env)
		return env;
	n = readlink("/proc/self/exe", path, sizeof path - 32);
	if (n > 0) {
		char *slash;
		path[n] = '\0';
		slash = strrchr(path, '/');
		if (slash) {
			strcpy(slash + 1, "ferry-mvm");
			if (access(path, X_OK) == 0)
				return path;
		}
	}
	return FERRY_LIBEXECDIR "/ferry-mvm";
}

/*
 * Claim NAME and posix_spawn its runtime in its own session with default
 * signal handling. Its fds: 0 and 1 on /dev/null, 2 appended to
 * RUN_DIR/mvm/NAME.log, link (if >= 0) as 3, the write end of a ready pipe
 * as 4, NAME's control socket (bound, listening) as 5 and its lock as 6,
 * nothing else, so that a runtime that outlives the caller holds none of
 * the caller's pipes. It runs as hv_runtime_ids()'s user. Waits until it
 * reports ready. Returns 0 and *pid, or -errno (-EEXIST: NAME is taken).
 */
static int spawn_runtime(const char *name, const char *config, bool incoming, bool paused,
			 int link, pid_t *pid, char *err, size_t errlen)
{
	const char *argv[24];
	int argc = 0, p[2] = { -1, -1 }, ready = -1, lk = -1, lock = -1, ctl = -1, hi_lock = -1,
	    hi_ctl = -1, r, status;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, defs;
	char c, logpath[256], ids[32];
	uid_t uid = 0;
	gid_t gid = 0;

	r = hv_runtime_ids(&uid, &gid, err, errlen);
	if (r < 0)
		return r;
	snprintf(ids, sizeof ids, "%u:%u", (unsigned)uid, (unsigned)gid);
	argv[argc++] = "ferry-mvm";
	argv[argc++] = "--name";
	argv[argc++] = name;
	argv[argc++] = "--run-dir";
	argv[argc++] = ferry_run_dir();
	argv[argc++] = "--config";
	argv[argc++] = config;
	argv[argc++] = "--ready-fd";
	argv[argc++] = "4";
	argv[argc++] = "--listen-fd";
	argv[argc++] = "5";
	argv[argc++] = "--lock-fd";
	argv[argc++] = "6";
	if (r == 0) {
		argv[argc++] = "--user";
		argv[argc++] = ids;
	}
	if (incoming) {
		argv[argc++] = "--incoming";
		argv[argc++] = "--ctl-fd";
		argv[argc++] = "3";
	}
	if (paused)
		argv[argc++] = "--paused";
	argv[argc] = NULL;

	r = mvm_run_path(name, ".log", logpath, sizeof logpath, true);
	if (r)
		return r;
	ctl = mvm_name_claim(name, &lock);
	if (ctl < 0) {
		if (ctl == -EEXIST)
			log_error("mvm:%s: a microVM of this name is already running", name);
		return ctl;
	}
	/* Move the fds above 10 so that the dup2s below never collide. */
	if (pipe2(p, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	ready = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
	close(p[1]);
	hi_ctl = fcntl(ctl, F_DUPFD_CLOEXEC, 10);
	hi_lock = fcntl(lock, F_DUPFD_CLOEXEC, 10);
	if (link >= 0)
		lk = fcntl(link, F_DUPFD_CLOEXEC, 10);
	if (ready < 0 || hi_ctl < 0 || hi_lock < 0 || (link >= 0 && lk < 0)) {
		r = -errno;
		goto out;
	}

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (lk >= 0)
		posix_spawn_file_actions_adddup2(&fa, lk, 3);
	posix_spawn_file_actions_adddup2(&fa, ready, 4);
	posix_spawn_file_actions_adddup2(&fa, hi_ctl, 5);
	posix_spawn_file_actions_adddup2(&fa, hi_lock, 6);
	posix_spawn_file_actions_addclosefrom_np(&fa, 7);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigemptyset(&defs);
	sigaddset(&defs, SIGPIPE);
	sigaddset(&defs, SIGINT);
	sigaddset(&defs, SIGTERM);
	sigaddset(&defs, SIGHUP);
	sigaddset(&defs, SIGCHLD);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &defs);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF);
	r = -posix_spawn(pid, hv_mvm_runtime_path(), &fa, &at, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close_fd(&ready);
	close_fd(&lk);
	close_fd(&hi_ctl);
	close_fd(&hi_lock);
	close_fd(&ctl);
	if (r) {
		log_error("mvm:%s: starting %s: %s", name, hv_mvm_runtime_path(), strerror(-r));
		goto out;
	}
	/* EOF without the byte: it exited; nothing within the time: it hangs. */
	if (wait_fd(p[0], POLLIN, mono_ns() + READY_TIMEOUT_MS * NSEC_PER_MSEC) == 1 &&
	    read(p[0], &c, 1) == 1) {
		r = 0;
		close_fd(&lock); /* the runtime holds it now, for life */
		goto out;
	}
	kill(*pid, SIGKILL);
	while (waitpid(*pid, &status, 0) < 0 && errno == EINTR)
		;
	log_error("mvm:%s: runtime did not start (%s %d); see %s", name,
		  WIFEXITED(status) ? "exit status" : "signal",
		  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), logpath);
	r = -EIO;
out:
	close_fd(&p[0]);
	close_fd(&ready);
	close_fd(&lk);
	close_fd(&hi_ctl);
	close_fd(&hi_lock);
	close_fd(&ctl);
	if (lock >= 0)
		mvm_name_release(name, lock); /* no runtime holds the name */
	return r;
}

int hv_mvm_launch(const char *name, const char *config, bool paused, pid_t *pid)
{
	struct mvm_config cfg;
	char err[256];
	int r;

	if (!mvm_name_ok(name)) {
		log_error("mvm:%s: bad name: use 1-63 letters, digits, '.', '_' or '-'", name);
		return -EINVAL;
	}
	r = mvm_config_parse(config, &cfg, err, sizeof err);
	if (r) {
		log_error("mvm:%s: %s", name, err);
		return r;
	}
	return spawn_runtime(name, config, false, paused, -1, pid, NULL, 0);
}

static int mvm_launch(const char *name, const struct hv_spec *spec, unsigned flags,
		      struct hv_domain **out, char *err, size_t errlen)
{
	char config[HV_CONFIG_MAX];
	int r, sock, pidfd;
	pid_t pid;

	if (!mvm_name_ok(name)) {
		snprintf(err, errlen, "\"%s\" is not a valid name: 1-63 of A-Z a-z 0-9 . _ -, "
			 "not starting with . or -", name);
		return -EINVAL;
	}
	if ((r = spec_config(spec, config, sizeof config, err, errlen)))
		return r;
	err[0] = '\0';
	if ((r = spawn_runtime(name, config, false, flags & HV_LAUNCH_PAUSED, -1, &pid, err,
			       errlen))) {
		if (!err[0])
			snprintf(err, errlen, "%s", r == -EEXIST ? "a runtime of that name is "
				 "already running (not owned by this caller)" : strerror(-r));
		return r;
	}
	/* Our child, not reaped yet: its pid is still its own. */
	pidfd = sys_pidfd_open(pid);
	if (pidfd < 0 || (r = ctl_connect(name, false, &sock))) {
		r = pidfd < 0 ? -errno : r;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close_fd(&pidfd);
		snprintf(err, errlen, "started, but cannot be opened: %s", strerror(-r));
		return r;
	}
	if ((r = attach(name, sock, pidfd, out))) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		snprintf(err, errlen, "started, but cannot be opened: %s", strerror(-r));
	}
	return r;
}

static int mvm_create(const char *name, const char *config, const void *dconf,
		      size_t dconf_len, struct hv_domain **out)
{
	struct mvm_config cfg;
	char err[256];
	int sv[2], r, pidfd;
	pid_t pid;

	if (!mvm_name_ok(name)) {
		log_error("mvm:%s: bad name", name);
		return -EINVAL;
	}
	if (dconf || dconf_len) {
		log_error("mvm:%s: a domain config record is not a microVM's", name);
		return -EINVAL;
	}
	r = mvm_config_parse(config, &cfg, err, sizeof err);
	if (r) {
		log_error("mvm:%s: config from the source: %s", name, err);
		return r;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	r = spawn_runtime(name, config, true, true, sv[1], &pid, NULL, 0);
	close(sv[1]);
	if (r) {
		close(sv[0]);
		return r;
	}
	/* Our child: its pid cannot be reused before we reap it. */
	pidfd = sys_pidfd_open(pid);
	if (pidfd < 0) {
		r = -errno;
		close(sv[0]);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return r;
	}
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
		r = -errno;
		close(sv[0]);
		sys_pidfd_kill(pidfd, SIGKILL);
		waitpid(pid, NULL, 0);
		close(pidfd);
		return r;
	}
	return attach(name, sv[0], pidfd, out);
}

static int mvm_info(struct hv_domain *hd, struct hv_info *o)
{
	struct mvm_dom *d = dom(hd);
	struct mvm_info i;
	int r = get_info(d, MVM_INFO, &i);

	if (r)
		return r;
	memset(o, 0, sizeof *o);
	o->page_size = le32toh(i.page_size);
	o->nr_vcpus = le32toh(i.nr_vcpus);
	o->nr_frames = le64toh(i.nr_frames);
	o->paused = le32toh(i.paused);
	o->logdirty = le32toh(i.logdirty);
	o->incoming = le32toh(i.incoming);
	o->pid = (int32_t)le32toh((uint32_t)i.pid);
	snprintf(o->config, sizeof o->config, "%s", i.config);
	return 0;
}

static int mvm_pause(struct hv_domain *hd)
{
	struct mvm_dom *d = dom(hd);
	int r;

	d->ctx_valid = false;
	if (!d->ctx && !(d->ctx = malloc(MVM_CONTEXT_MAX)))
		return -ENOMEM;
	r = rpc(d, MVM_PAUSE, NULL, 0, d->ctx, MVM_CONTEXT_MAX, &d->ctx_len, NULL, 0,
		RPC_TIMEOUT_MS);
	if (r == 0)
		d->paused = d->ctx_valid = true;
	return r;
}

/*
 * A runtime that has not run for a while (a halted guest, whose RAM the
 * dirty log's enable write-protected whole) answers its first request ~10 ms
 * late on this kind of host, wherever that request comes: it is the host
 * catching up on the process's page tables (a 1 GiB guest: a ping 9.6 ms,
 * the pause after it 0.3 ms). A ping now pays that before the pause.
 */
static void mvm_warm(struct hv_domain *hd)
{
	rpc_simple(dom(hd), MVM_PING);
}

static int mvm_unpause(struct hv_domain *hd)
{
	struct mvm_dom *d = dom(hd);
	struct mvm_output o = { .op = htole32(MVM_OUTPUT_MARK) };
	struct mvm_u64 gap = { 0 };
	size_t len = 0;
	int r;

	d->ctx_valid = false;
	d->paused_ns = 0;
	o.epoch = htole64(__atomic_exchange_n(&d->mark, 0, __ATOMIC_ACQ_REL));
	r = rpc(d, MVM_UNPAUSE, &o, o.epoch ? sizeof o : 0, &gap, sizeof gap, &len, NULL, 0,
		RPC_TIMEOUT_MS);
	if (r == 0) {
		d->paused = d->incoming = false;
		d->paused_ns = len == sizeof gap ? le64toh(gap.v) : 0;
	}
	return r;
}

static uint64_t mvm_paused_ns(struct hv_domain *hd)
{
	return dom(hd)->paused_ns;
}

static int mvm_commit(struct hv_domain *hd)
{
	int r = rpc_simple(dom(hd), MVM_COMMIT);
	if (r == 0)
		dom(hd)->incoming = false;
	return r;
}

static int mvm_throttle(struct hv_domain *hd, unsigned pct)
{
	if (pct > 99)
		return -EINVAL;
	return rpc_u32(dom(hd), MVM_THROTTLE, pct);
}

static int mvm_logdirty(struct hv_domain *hd, bool on)
{
	int r = rpc_u32(dom(hd), MVM_LOGDIRTY, on);
	if (r == 0)
		dom(hd)->logdirty = on;
	return r;
}

static int mvm_logdirty_enable(struct hv_domain *hd) { return mvm_logdirty(hd, true); }
static int mvm_logdirty_disable(struct hv_domain *hd) { return mvm_logdirty(hd, false); }

/* The kernel's dirty log of the runtime's RAM; see hv/pagemap.h. */
static int64_t mvm_harvest(struct hv_domain *hd, struct bitmap *dirty, unsigned flags)
{
	struct mvm_dom *d = dom(hd);
	int64_t n;

	if (!d->logdirty) {
		log_error("mvm:%s: harvest without dirty logging enabled", d->name);
		return -EINVAL;
	}
	if ((flags & HV_HARVEST_FINAL) && !d->paused) {
		log_error("mvm:%s: FINAL harvest of a running guest", d->name);
		return -EBUSY;
	}
	n = pagemap_harvest(&d->scan, dirty, !(flags & HV_HARVEST_PEEK));
	if (n < 0)
		log_error("mvm:%s: PAGEMAP_SCAN: %s", d->name,
			  n == -ESRCH ? "runtime has exited"
			  : n == -EIO ? "kernel returned an impossible region"
				      : strerror((int)-n));
	return n;
}

static int64_t mvm_populated(struct hv_domain *hd, struct bitmap *out)
{
	return memfd_pages_populated(&dom(hd)->pages, out);
}

static int page_io(struct mvm_dom *d, const uint64_t *frames, size_t n, void *const *bufs,
		   bool write)
{
	int r = memfd_pages_io(&d->pages, frames, n, bufs, write);

	if (r)
		log_error("mvm:%s: %s guest RAM: %s", d->name, write ? "writing" : "reading",
			  strerror(-r));
	return r;
}

/* The frames an engine reads are populated (dirty, or in the populated
 * set), so reading them through the mapping allocates nothing. */
static int mvm_read_pages(struct hv_domain *hd, const uint64_t *frames, size_t n,
			  void *const *bufs)
{
	struct mvm_dom *d = dom(hd);

	/* Reading a missing frame through the memfd would make it present,
	 * as zero. */
	for (size_t i = 0; d->postcopy && i < n; i++)
		if (uffd_pc_missing(&d->pc, frames[i]))
			return -EAGAIN;
	return page_io(d, frames, n, bufs, false);
}

static int mvm_write_pages(struct hv_domain *hd, const uint64_t *frames, size_t n,
			   const void *const *bufs)
{
	struct mvm_dom *d = dom(hd);
	int r;

	if (d->postcopy) {
		if ((r = uffd_pc_place(&d->pc, frames, n, bufs)))
			log_error("mvm:%s: placing frames: %s", d->name, strerror(-r));
		return r;
	}
	if (d->incoming) /* until the commit: see memfd_pages.h, "Fresh memory" */
		memfd_pages_prealloc(&d->pages, frames, n);
	return page_io(d, frames, n, (void *const *)bufs, true);
}

static int mvm_discard_pages(struct hv_domain *hd, const uint64_t *frames, size_t n)
{
	struct mvm_dom *d = dom(hd);
	int r = d->postcopy ? uffd_pc_zero(&d->pc, frames, n)
			    : memfd_pages_discard(&d->pages, frames, n);

	if (r)
		log_error("mvm:%s: discarding frames: %s", d->name, strerror(-r));
	return r;
}

/* Post-copy through the runtime's userfaultfd (hv/uffd_postcopy.h):
 * begin (missing given; paused) or reattach (missing found). */
static int postcopy_arm(struct mvm_dom *d, struct bitmap *missing, bool reattach, int *fd)
{
	struct mvm_u32 f;
	size_t len = 0;
	int ufd = -1, r;

	if (d->postcopy || (!reattach && !d->paused))
		return -EBUSY;
	r = rpc(d, MVM_GET_UFFD, NULL, 0, &f, sizeof f, &len, &ufd, 1, RPC_TIMEOUT_MS);
	if (r || len != sizeof f || ufd < 0) {
		if (ufd >= 0)
			close(ufd);
		log_error("mvm:%s: post-copy: the runtime gives no userfaultfd (%s)", d->name,
			  r ? strerror(-r) : "bad reply");
		return r == -EINVAL || !r ? -EOPNOTSUPP : r;
	}
	if (d->kvstore && !(le32toh(f.v) & MVM_UFFD_KERNEL)) {
		close(ufd);
		log_error("mvm:%s: post-copy: the runtime's userfaultfd sees user-mode faults only "
			  "(it was not started as root), and its NIC receives into guest RAM",
			  d->name);
		return -EOPNOTSUPP;
	}
	d->pc = (struct uffd_pc){ .uffd = ufd, .base = d->ram_base, .page_size = d->page_size,
				  .nr_frames = d->nr_frames };
	r = reattach ? uffd_pc_reattach(&d->pc, &d->pages, missing)
		     : uffd_pc_begin(&d->pc, &d->pages, missing);
	if (r) {
		log_error("mvm:%s: post-copy: %s", d->name, strerror(-r));
		uffd_pc_free(&d->pc);
		return r;
	}
	d->postcopy = true;
	*fd = d->pc.uffd;
	return 0;
}

static int mvm_postcopy_begin(struct hv_domain *hd, const struct bitmap *missing, int *fd)
{
	return postcopy_arm(dom(hd), (struct bitmap *)missing, false, fd);
}

static int mvm_postcopy_reattach(struct hv_domain *hd, struct bitmap *missing, int *fd)
{
	return postcopy_arm(dom(hd), missing, true, fd);
}

static int mvm_postcopy_faults(struct hv_domain *hd, uint64_t *frames, size_t max,
			       uint64_t *left)
{
	struct mvm_dom *d = dom(hd);
	int r;

	if (!d->postcopy)
		return -EINVAL;
	if ((r = uffd_pc_faults(&d->pc, frames, max, left)) < 0)
		log_error("mvm:%s: post-copy faults: %s", d->name, strerror(-r));
	return r;
}

static int mvm_postcopy_end(struct hv_domain *hd)
{
	struct mvm_dom *d = dom(hd);
	int r;

	if (!d->postcopy)
		return 0;
	if ((r = uffd_pc_end(&d->pc)))
		return r;
	d->postcopy = false;
	uffd_pc_free(&d->pc);
	return 0;
}

static int mvm_save_context(struct hv_domain *hd, void **blob, size_t *len)
{
	struct mvm_dom *d = dom(hd);
	void *b = malloc(MVM_CONTEXT_MAX);
	int r;

	if (!b)
		return -ENOMEM;
	if (d->paused && d->ctx_valid) {
		memcpy(b, d->ctx, d->ctx_len);
		*len = d->ctx_len;
		*blob = b;
		return 0;
	}
	r = rpc(d, MVM_GET_CONTEXT, NULL, 0, b, MVM_CONTEXT_MAX, len, NULL, 0, RPC_TIMEOUT_MS);
	if (r) {
		free(b);
		return r;
	}
	*blob = b;
	return 0;
}

static int mvm_load_context(struct hv_domain *hd, const void *blob, size_t len)
{
	if (len > MVM_CONTEXT_MAX)
		return -EINVAL;
	dom(hd)->ctx_valid = false;
	return rpc(dom(hd), MVM_SET_CONTEXT, blob, len, NULL, 0, NULL, NULL, 0, RPC_TIMEOUT_MS);
}

static int mvm_watch(struct hv_domain *hd, int *fd)
{
	*fd = dom(hd)->pidfd;
	return 0;
}

static int mvm_destroy(struct hv_domain *hd)
{
	struct mvm_dom *d = dom(hd);

	rpc_simple(d, MVM_QUIT);
	if (!wait_dead(d->pidfd, QUIT_TIMEOUT_MS)) {
		log_warn("mvm:%s: runtime did not quit; killing it", d->name);
		sys_pidfd_kill(d->pidfd, SIGKILL);
		if (!wait_dead(d->pidfd, QUIT_TIMEOUT_MS)) {
			log_error("mvm:%s: runtime survives SIGKILL", d->name);
			return -ETIMEDOUT;
		}
	}
	reap(d);
	mvm_name_tidy(d->name);
	return 0;
}

int hv_mvm_stats(struct hv_domain *hd, struct hv_mvm_stats *out)
{
	struct mvm_info i;
	int r;

	if (hd->ops != &hv_mvm_ops)
		return -EOPNOTSUPP;
	r = get_info(dom(hd), MVM_INFO, &i);
	if (r)
		return r;
	out->steps = le64toh(i.steps);
	out->halted = le32toh(i.halted);
	out->incoming = le32toh(i.incoming);
	out->max_gap_ns = le64toh(i.max_gap_ns);
	out->resume_gap_ns = le64toh(i.resume_gap_ns);
	return 0;
}

int hv_mvm_verify(struct hv_domain *hd, struct mvm_verify *v)
{
	size_t len;
	int r;

	if (hd->ops != &hv_mvm_ops)
		return -EOPNOTSUPP;
	r = rpc(dom(hd), MVM_VERIFY, NULL, 0, v, sizeof *v, &len, NULL, 0, VERIFY_TIMEOUT_MS);
	if (r)
		return r;
	if (len != sizeof *v)
		return -EBADMSG;
	v->why = le32toh(v->why);
	v->frame = le64toh(v->frame);
	v->expected_gen = le64toh(v->expected_gen);
	v->found_gen = le64toh(v->found_gen);
	v->pages_checked = le64toh(v->pages_checked);
	v->pages_written = le64toh(v->pages_written);
	v->msg[sizeof v->msg - 1] = '\0';
	return 0;
}

/* The NIC's and the store's figures of a kvstore guest, into o. */
static void nic_json(struct mvm_dom *d, json_t *o)
{
	struct mvm_nic_info n;
	size_t len;

	if (rpc(d, MVM_NIC_INFO, NULL, 0, &n, sizeof n, &len, NULL, 0, RPC_TIMEOUT_MS) ||
	    len != sizeof n)
		return;
	json_object_set_new(o, "nic", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:I, s:I}",
		"incarnation", (json_int_t)le64toh(n.incarnation), "connections",
		(json_int_t)le64toh(n.open), "accepted", (json_int_t)le64toh(n.accepted),
		"refused", (json_int_t)le64toh(n.refused), "rx_bytes",
		(json_int_t)le64toh(n.rx_bytes), "tx_bytes", (json_int_t)le64toh(n.tx_bytes),
		"held_bytes", (json_int_t)le64toh(n.held_bytes), "gated", le32toh(n.gated) != 0,
		"epoch", (json_int_t)le64toh(n.epoch), "released", (json_int_t)le64toh(n.released)));
	json_object_set_new(o, "store", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		"entries", (json_int_t)le64toh(n.entries), "clients", (json_int_t)le64toh(n.clients),
		"requests", (json_int_t)le64toh(n.requests), "applied",
		(json_int_t)le64toh(n.applied), "retries_answered", (json_int_t)le64toh(n.retries),
		"evictions", (json_int_t)le64toh(n.evictions), "arena_bytes",
		(json_int_t)le64toh(n.arena_used)));
}

static int mvm_extra(struct hv_domain *hd, enum hv_extra what, json_t **out)
{
	struct hv_mvm_stats s;
	struct mvm_verify v;
	int r;

	switch (what) {
	case HV_EXTRA_STATS:
		if ((r = hv_mvm_stats(hd, &s)))
			return r;
		*out = json_pack("{s:I, s:i, s:f, s:f}", "steps", (json_int_t)s.steps, "halted",
				 (int)s.halted, "max_gap_ms", ns_to_ms(s.max_gap_ns), "resume_gap_ms",
				 ns_to_ms(s.resume_gap_ns));
		if (*out && dom(hd)->kvstore)
			nic_json(dom(hd), *out);
		break;
	case HV_EXTRA_VERIFY:
		if ((r = hv_mvm_verify(hd, &v)))
			return r;
		*out = json_pack("{s:b, s:s, s:s, s:I, s:I}", "verified", v.why == MVM_VERIFY_OK,
				 "result", v.why == MVM_VERIFY_OK ? "ok" : v.msg, "why",
				 wl_why_name(v.why), "pages_checked", (json_int_t)v.pages_checked,
				 "pages_written", (json_int_t)v.pages_written);
		break;
	default:
		return -EOPNOTSUPP;
	}
	return *out ? 0 : -ENOMEM;
}

static int mvm_net_attach(struct hv_domain *hd, int fd)
{
	int r = rpc_fd(dom(hd), MVM_NET_ATTACH, NULL, 0, NULL, 0, NULL, NULL, 0, RPC_TIMEOUT_MS, fd);

	if (fd >= 0)
		close(fd); /* the runtime has its own copy now (or refused it) */
	return r;
}

/*
 * A MARK while this handle holds the guest paused goes with the unpause:
 * nothing is written while every writer is parked, so the mark falls at
 * the same place in the output, one round trip fewer. Any other op first
 * sends a mark still pending (a RELEASE may come from another thread while
 * the guest is still paused: an epoch sent paused, acknowledged before the
 * unpause); whichever thread takes it sends it.
 */
static int mvm_output(struct hv_domain *hd, enum hv_output op, uint64_t epoch)
{
	struct mvm_output o = { .op = htole32((uint32_t)op), .epoch = htole64(epoch) };
	struct mvm_dom *d = dom(hd);
	uint64_t mark;
	int r;

	if (op == HV_OUTPUT_MARK && d->paused && epoch && d->kvstore) {
		__atomic_store_n(&d->mark, epoch, __ATOMIC_RELEASE);
		return 0;
	}
	if ((mark = __atomic_exchange_n(&d->mark, 0, __ATOMIC_ACQ_REL))) {
		struct mvm_output m = { .op = htole32(MVM_OUTPUT_MARK), .epoch = htole64(mark) };

		if ((r = rpc(d, MVM_OUTPUT, &m, sizeof m, NULL, 0, NULL, NULL, 0, RPC_TIMEOUT_MS)))
			return r;
	}
	return rpc(d, MVM_OUTPUT, &o, sizeof o, NULL, 0, NULL, NULL, 0, RPC_TIMEOUT_MS);
}

const struct hv_ops hv_mvm_ops = {
	.prefix = "mvm",
	.open = mvm_open,
	.close = mvm_close,
	.create = mvm_create,
	.launch = mvm_launch,
	.list = mvm_list,
	.describe = mvm_describe,
	.info = mvm_info,
	.commit = mvm_commit,
	.pause = mvm_pause,
	.unpause = mvm_unpause,
	.warm = mvm_warm,
	.paused_ns = mvm_paused_ns,
	.throttle = mvm_throttle,
	.logdirty_enable = mvm_logdirty_enable,
	.logdirty_disable = mvm_logdirty_disable,
	.logdirty_harvest = mvm_harvest,
	.populated = mvm_populated,
	.read_pages = mvm_read_pages,
	.write_pages = mvm_write_pages,
	.discard_pages = mvm_discard_pages,
	.save_context = mvm_save_context,
	.load_context = mvm_load_context,
	.watch = mvm_watch,
	.destroy = mvm_destroy,
	.extra = mvm_extra,
	.net_attach = mvm_net_attach,
	.output = mvm_output,
	.postcopy_begin = mvm_postcopy_begin,
	.postcopy_reattach = mvm_postcopy_reattach,
	.postcopy_faults = mvm_postcopy_faults,
	.postcopy_end = mvm_postcopy_end,
};
