/* SPDX-License-Identifier: Apache-2.0 */
/* confine.c — the runtime's least privilege; see confine.h. */
#include "mvm/confine.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/kcompat.h"
#include "common/log.h"
#include "common/util.h"

int mvm_confine_parse_ids(const char *s, uid_t *uid, gid_t *gid)
{
	unsigned long u, g;
	char *end;

	errno = 0;
	u = strtoul(s, &end, 10);
	if (errno || end == s || *end != ':' || u == 0 || u >= (uid_t)-1)
		return -EINVAL;
	s = end + 1;
	g = strtoul(s, &end, 10);
	if (errno || end == s || *end || g == 0 || g >= (gid_t)-1)
		return -EINVAL;
	*uid = (uid_t)u;
	*gid = (gid_t)g;
	return 0;
}

static int fail(const char *what)
{
	int e = errno;

	log_error("confine: %s: %s", what, strerror(e));
	return -e;
}

int mvm_confine_user(bool change, uid_t uid, gid_t gid)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct none[2];
	uid_t r, e, s;

	if (change && geteuid() != 0) {
		log_error("confine: changing to user %u needs root (running as %u)", (unsigned)uid,
			  (unsigned)geteuid());
		return -EPERM;
	}
	/* The bounding set while we may still empty it (CAP_SETPCAP): what no
	 * exec could ever grant again. */
	for (int c = 0; prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EPERM)
			return fail("dropping the capability bounding set");
	if (change) {
		/* Single-threaded here: the libc calls change the whole process. */
		if (setgroups(0, NULL) < 0)
			return fail("dropping supplementary groups");
		if (setresgid(gid, gid, gid) < 0)
			return fail("changing group");
		if (setresuid(uid, uid, uid) < 0)
			return fail("changing user");
		/* Check, as OpenSSH does: no way back to root. */
		if (getresuid(&r, &e, &s) < 0 || r != uid || e != uid || s != uid ||
		    syscall(SYS_setresuid, 0, 0, 0) == 0) {
			log_error("confine: user change to %u did not hold", (unsigned)uid);
			return -EPERM;
		}
	}
	/* Whatever a root start left (the inheritable set; all of them if
	 * root stays root): none. */
	memset(none, 0, sizeof none);
	if (syscall(SYS_capset, &hdr, none) < 0)
		return fail("dropping capabilities");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return fail("clearing ambient capabilities");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return fail("setting no_new_privs");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return fail("clearing dumpable");
	return 0;
}

/*
 * Every call the runtime makes once it is set up, by name (a call this
 * architecture does not have is skipped), beyond the ones with conditions
 * below: glibc's allocator, locks and time; reading and writing the fds it
 * holds; its sockets and their polling; the control thread's signalfd.
 */
static const char *const allowed[] = {
	/* memory */
	"brk", "mmap", "munmap", "mprotect", "madvise", "mremap",
	/* locks, time (threads are all made, and started, before the filter) */
	"futex", "sched_yield", "gettid", "getpid",
	"clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday", "getrandom",
	"exit", "exit_group", "restart_syscall",
	/* signals (handlers and masks of its own; delivery to itself below) */
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "signalfd4",
	/* the fds it holds */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
	"close", "fcntl", "lseek",
	/* its sockets: the control listener and clients, the guest's NIC */
	"accept", "accept4", "recvmsg", "sendmsg", "recvfrom", "sendto", "shutdown",
	"setsockopt", "getsockopt", "getsockname", "getpeername",
	/* waiting */
	"poll", "ppoll", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
	"epoll_pwait2", "eventfd2",
};

static int allow(scmp_filter_ctx ctx, const char *name, unsigned n, const struct scmp_arg_cmp *c)
{
	int nr = seccomp_syscall_resolve_name(name);
	int r;

	if (nr == __NR_SCMP_ERROR)
		return 0;
	r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, n, c);
	if (r < 0)
		log_error("confine: seccomp rule for %s: %s", name, strerror(-r));
	return r;
}

/* Argument number arg equals v. */
static struct scmp_arg_cmp arg_is(unsigned arg, scmp_datum_t v)
{
	return (struct scmp_arg_cmp){ .arg = arg, .op = SCMP_CMP_EQ, .datum_a = v, .datum_b = 0 };
}

int mvm_confine_syscalls(void)
{
	const struct scmp_arg_cmp to_self = arg_is(0, (scmp_datum_t)getpid());
	const struct scmp_arg_cmp this_thread = arg_is(0, 0);
	const struct scmp_arg_cmp wp = arg_is(1, UFFDIO_WRITEPROTECT);
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	int r = ctx ? 0 : -ENOMEM;

	for (size_t i = 0; !r && i < ARRAY_SIZE(allowed); i++)
		r = allow(ctx, allowed[i], 0, NULL);
	if (!r)
		r = allow(ctx, "kill", 1, &to_self); /* raise(), failpoints' SIGSTOP */
	if (!r)
		r = allow(ctx, "tgkill", 1, &to_self);
	if (!r)
		r = allow(ctx, "sched_setscheduler", 1, &this_thread);
	if (!r)
		r = allow(ctx, "ioctl", 1, &wp);
	/* A binary tree rather than a list: the NIC's thread makes a few calls
	 * per request. A denied call is logged by the kernel. Every thread gets
	 * the filter:
	 * all of them run already, and no clone is allowed, so none is ever
	 * made without it (and no process either). */
	if (!r)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	if (!r)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1);
	if (!r)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (!r)
		r = seccomp_load(ctx);
	if (r)
		log_error("confine: loading the seccomp filter: %s", strerror(-r));
	seccomp_release(ctx);
	return r;
}

static int probe(const char *what, long r)
{
	int e = errno;

	if (r >= 0) {
		log_error("confine probe: %s: ALLOWED", what);
		return 1;
	}
	log_info("confine probe: %s: denied (%s)", what, strerror(e));
	return 0;
}

int mvm_confine_probe(void)
{
	char path[256];
	int n = 0;
	long r;

	r = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
	n += probe("open /etc/passwd", r);
	if (r >= 0)
		close((int)r);
	snprintf(path, sizeof path, "%s/confine-probe", ferry_run_dir());
	r = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	n += probe("create a file", r);
	if (r >= 0) {
		close((int)r);
		unlink(path);
	}
	r = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	n += probe("socket AF_INET", r);
	if (r >= 0)
		close((int)r);
	r = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	n += probe("socket AF_UNIX", r);
	if (r >= 0)
		close((int)r);
	/* A process, not a thread: the child, if any, leaves at once. */
	r = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
	if (r == 0)
		_exit(0);
	n += probe("fork", r);
	r = execve("/bin/true", (char *[]){ "true", NULL }, (char *[]){ NULL });
	n += probe("exec /bin/true", r);
	r = syscall(SYS_setresuid, 0, 0, 0);
	n += probe("become root", r);
	r = syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0);
	n += probe("ptrace", r);
	r = syscall(SYS_unshare, CLONE_NEWUSER);
	n += probe("unshare a user namespace", r);
	r = syscall(SYS_kill, 1, 0);
	n += probe("signal pid 1", r);
	return n;
}
