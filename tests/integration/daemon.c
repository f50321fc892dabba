/* SPDX-License-Identifier: Apache-2.0 */
/* daemon.c — real ferryd processes for integration tests; see daemon.h. */
#include "tests/integration/daemon.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/mtime.h"
#include "common/util.h"
#include "mvm/proto.h"
#include "transport/certs.h"
#include "transport/link.h"

extern char **environ;

static char base[160];          /* the harness's private directory */
static char test_dir[224];      /* BASE/TEST */
static char test_name[64];
static bool test_ok;
static uint64_t test_t0;

/* The daemons of the running test (td_init registers them). */
static struct td *daemons[8];
static unsigned ndaemons;

/*
 * Every process we started or found in one of our run dirs, so that a
 * fatal signal ends them all. Slots are cleared when a process is known to
 * be gone; the signal handler only reads.
 */
static volatile pid_t owned[1024];

static void own(pid_t pid)
{
	int free_slot = -1;

	for (size_t i = 0; i < ARRAY_SIZE(owned); i++) {
		if (owned[i] == pid)
			return;
		if (!owned[i] && free_slot < 0)
			free_slot = (int)i;
	}
	if (free_slot >= 0)
		owned[free_slot] = pid;
}

static void disown(pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(owned); i++)
		if (owned[i] == pid)
			owned[i] = 0;
}

/*
 * Kill every process whose command line names the base directory: the
 * daemons and every runtime they started, also those no scan has seen yet.
 * Only raw system calls (open, getdents64, read, kill): this runs in a
 * signal handler.
 */
static void kill_ours_signal_safe(void)
{
	char dents[4096], path[64], cmd[4096];
	size_t blen = strlen(base);
	int dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long n;

	if (dir < 0 || !blen)
		return;
	while ((n = syscall(SYS_getdents64, dir, dents, sizeof dents)) > 0) {
		for (long off = 0; off < n;) {
			struct linux_dirent64 {
				uint64_t ino;
				int64_t off;
				unsigned short reclen;
				unsigned char type;
				char name[];
			} *e = (void *)(dents + off);
			pid_t pid = 0;
			ssize_t len;
			int fd;

			off += e->reclen;
			for (const char *c = e->name; *c; c++)
				pid = *c >= '0' && *c <= '9' ? pid * 10 + (*c - '0') : -1;
			if (pid <= 0 || pid == getpid())
				continue;
			memcpy(path, "/proc/", 6);
			{
				char digits[16];
				int k = 0, m = 6;

				for (pid_t q = pid; q; q /= 10)
					digits[k++] = (char)('0' + q % 10);
				while (k)
					path[m++] = digits[--k];
				memcpy(path + m, "/cmdline", 9);
			}
			if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
				continue;
			len = read(fd, cmd, sizeof cmd);
			close(fd);
			if (len > 0 && memmem(cmd, (size_t)len, base, blen))
				kill(pid, SIGKILL);
		}
	}
	close(dir);
}

static void on_fatal(int sig)
{
	for (size_t i = 0; i < ARRAY_SIZE(owned); i++)
		if (owned[i] > 0)
			kill(owned[i], SIGKILL);
	kill_ours_signal_safe();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Paths --------------------------------------------------------------------- */

static const char *path_near(const char *env, const char *rel, char *buf, size_t len)
{
	const char *e = getenv(env);
	char exe[PATH_MAX], *slash;
	ssize_t n;

	if (e && *e)
		return e;
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return rel;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (slash)
		*slash = '\0';
	snprintf(buf, len, "%s/../../%s", exe, rel);
	return buf;
}

const char *td_ferryd_path(void)
{
	static char p[PATH_MAX + 32];
	return path_near("FERRYD", "ferryd", p, sizeof p);
}

const char *td_ferry_path(void)
{
	static char p[PATH_MAX + 32];
	return path_near("FERRY", "ferry", p, sizeof p);
}

const char *td_base(void)
{
	return base;
}

/* Group and test set-up ------------------------------------------------------- */

int td_group_setup(void **state)
{
	static const int fatal[] = { SIGTERM, SIGINT, SIGHUP, SIGABRT };

	if (h_group_setup(state))
		return -1;
	snprintf(base, sizeof base, "%s", ferry_run_dir());
	/* Ours end the daemons and the runtimes they started as well (the
	 * harness's handler knows only the PIDs given to h_track_pid). */
	for (size_t i = 0; i < ARRAY_SIZE(fatal); i++)
		signal(fatal[i], on_fatal);
	if (access(td_ferryd_path(), X_OK) != 0)
		fprintf(stderr, "# warning: no ferryd at %s (set $FERRYD)\n", td_ferryd_path());
	return 0;
}

int td_group_teardown(void **state)
{
	kill_ours_signal_safe();
	for (size_t i = 0; i < ARRAY_SIZE(owned); i++) {
		pid_t p = owned[i];

		if (p > 0) {
			kill(p, SIGKILL);
			waitpid(p, NULL, WNOHANG);
			owned[i] = 0;
		}
	}
	return h_group_teardown(state);
}

void td_test_begin(const char *name)
{
	snprintf(test_name, sizeof test_name, "%s", name);
	snprintf(test_dir, sizeof test_dir, "%s/%s", base, name);
	assert_int_equal(mkdir_p(test_dir, 0700), 0);
	test_ok = false;
	ndaemons = 0;
	test_t0 = mono_ns();
}

void td_test_passed(void)
{
	test_ok = true;
}

/* Wait up to timeout_ms for pid (not our child) to be gone or a zombie. */
static bool wait_gone(pid_t pid, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	char path[64], buf[512], *p;
	FILE *f;

	for (;;) {
		bool alive = false;

		snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
		if ((f = fopen(path, "re"))) {
			if (fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')) && p[1] == ' ')
				alive = p[2] != 'Z' && p[2] != 'X';
			fclose(f);
		}
		if (!alive)
			return true;
		if (mono_ns() > until)
			return false;
		h_sleep_ms(5);
	}
}

/* grep the test's logs (daemons' and runtimes') for sanitizer reports:
 * true, and the first lines printed, if there is one. */
static bool sanitizer_reports(void)
{
	static const char pat[] = "ERROR: (Address|Leak|Thread)Sanitizer|runtime error:";
	char cmd[PATH_MAX + 200];

	snprintf(cmd, sizeof cmd, "grep -r -q -E '%s' '%s' 2>/dev/null", pat, test_dir);
	if (system(cmd) != 0)
		return false;
	snprintf(cmd, sizeof cmd, "grep -r -H -E '%s' '%s' 2>/dev/null | head -20 >&2", pat,
		 test_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "# (cannot show the reports)\n");
	return true;
}

int td_test_end(void)
{
	int bad = 0;

	print_message("%s: %.1f s\n", test_name, ns_to_sec(mono_ns() - test_t0));
	/* Daemons first (a stopped one cannot take SIGTERM), then whatever
	 * runtime is left in their run dirs. */
	for (unsigned i = 0; i < ndaemons; i++) {
		struct td *d = daemons[i];

		if (!d->pid)
			continue;
		if (td_is_stopped(d)) {
			td_kill(d);
		} else {
			pid_t pid = d->pid;
			int st = td_term(d, 5000);

			if (st == -1) {
				fprintf(stderr, "# ferryd %s (pid %d) did not exit within 5 s of SIGTERM\n",
					d->name, (int)pid);
				bad = 1;
			} else if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) &&
				   !(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM)) {
				fprintf(stderr, "# ferryd %s: after SIGTERM, exit status 0x%x\n", d->name,
					st);
				bad = 1;
			}
		}
	}
	for (unsigned i = 0; i < ndaemons; i++) {
		pid_t pids[64];
		int n = td_runtimes(daemons[i]->run_dir, NULL, pids, 64);

		for (int k = 0; k < n && k < 64; k++) {
			kill(pids[k], SIGKILL);
			if (!wait_gone(pids[k], 3000))
				fprintf(stderr, "# runtime %d does not die\n", (int)pids[k]);
			disown(pids[k]);
		}
	}
	if (sanitizer_reports()) {
		fprintf(stderr, "# %s: a sanitizer report in the logs (above)\n", test_name);
		bad = 1;
	}
	if (!test_ok || bad)
		for (unsigned i = 0; i < ndaemons; i++)
			td_log_tail(daemons[i], 60);
	for (unsigned i = 0; i < ndaemons; i++) {
		struct td *d = daemons[i];

		free(d->rbuf);
		d->rbuf = NULL;
		d->rlen = d->rcap = 0;
	}
	ndaemons = 0;
	if (test_ok && !bad) {
		char cmd[PATH_MAX + 32];

		snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_dir);
		if (system(cmd) != 0)
			bad = 1;
	}
	return bad ? -1 : 0;
}

/* Ports ---------------------------------------------------------------------- */

static bool port_free(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (s < 0)
		return false;
	ok = bind(s, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(s);
	return ok;
}

/*
 * Below the kernel's ephemeral range (32768 up, by default), so that an
 * outgoing connection cannot take the port of a daemon that is being
 * restarted; spread by PID so that concurrent test programs rarely meet.
 */
uint16_t td_free_port(void)
{
	static unsigned next;

	for (unsigned tries = 0; tries < 4000; tries++) {
		uint16_t p = (uint16_t)(20000 + ((unsigned)getpid() * 37 + next++) % 12000);

		if (port_free(p))
			return p;
	}
	fail_msg("no free TCP port in 20000..31999");
	return 0;
}

/* Is something listening on 127.0.0.1:port or 0.0.0.0:port? */
static bool port_listening(uint16_t port)
{
	FILE *f = fopen("/proc/net/tcp", "re");
	char line[512];
	bool yes = false;

	if (!f)
		return false;
	while (fgets(line, sizeof line, f)) {
		unsigned a, p, st;

		if (sscanf(line, " %*d: %x:%x %*x:%*x %x", &a, &p, &st) == 3 && p == port &&
		    st == 0x0a && (a == 0 || a == htonl(INADDR_LOOPBACK)))
			yes = true;
	}
	fclose(f);
	return yes;
}

/* Certificates -------------------------------------------------------------- */

static char pki[200];

void td_make_ca(const char *dir)
{
	struct certs_pair *ca;
	char crt[300], key[300], err[300];
	time_t now = time(NULL);

	assert_int_equal(mkdir_p(dir, 0700), 0);
	snprintf(crt, sizeof crt, "%s/ca.crt", dir);
	snprintf(key, sizeof key, "%s/ca.key", dir);
	if (certs_ca_new("ferry test CA", now - 3600, now + 365 * 86400, &ca, err, sizeof err) ||
	    certs_pair_write(ca, crt, key, true, err, sizeof err))
		fail_msg("test CA in %s: %s", dir, err);
	certs_pair_free(ca);
}

void td_make_cert(const char *ca_dir, const char *dir, const char *name, const char *ip,
		  time_t not_before, time_t not_after)
{
	struct certs_pair *ca, *host;
	struct certs_host_req req = { .name = name, .ips = &ip, .nr_ips = ip ? 1 : 0,
				      .not_before = not_before, .not_after = not_after };
	char crt[300], key[300], err[300];

	assert_int_equal(mkdir_p(dir, 0700), 0);
	snprintf(crt, sizeof crt, "%s/ca.crt", ca_dir);
	snprintf(key, sizeof key, "%s/ca.key", ca_dir);
	if (certs_ca_load(crt, key, &ca, err, sizeof err))
		fail_msg("test CA in %s: %s", ca_dir, err);
	snprintf(crt, sizeof crt, "%s/%s.crt", dir, name);
	snprintf(key, sizeof key, "%s/%s.key", dir, name);
	if (certs_host_new(ca, &req, &host, err, sizeof err) ||
	    certs_pair_write(host, crt, key, true, err, sizeof err))
		fail_msg("test certificate %s: %s", crt, err);
	certs_pair_free(host);
	certs_pair_free(ca);
}

void td_make_client(const char *dir, const char *name, enum certs_role role)
{
	struct certs_pair *ca = NULL, *p = NULL;
	char crt[300], key[300], err[300];
	time_t now = time(NULL);

	snprintf(crt, sizeof crt, "%s/ca.crt", dir);
	snprintf(key, sizeof key, "%s/ca.key", dir);
	if (certs_ca_load(crt, key, &ca, err, sizeof err) ||
	    certs_client_new(ca, name, role, now - 3600, now + 86400, &p, err, sizeof err))
		fail_msg("test client certificate %s in %s: %s", name, dir, err);
	snprintf(crt, sizeof crt, "%s/%s.crt", dir, name);
	snprintf(key, sizeof key, "%s/%s.key", dir, name);
	if (certs_pair_write(p, crt, key, true, err, sizeof err))
		fail_msg("test certificate %s: %s", crt, err);
	certs_pair_free(p);
	certs_pair_free(ca);
}

/* The group's PKI, and a certificate for name in it (made once). */
static void pki_host(const char *name)
{
	char crt[300];
	time_t now = time(NULL);

	if (!pki[0]) {
		snprintf(pki, sizeof pki, "%s/pki", base);
		td_make_ca(pki);
	}
	snprintf(crt, sizeof crt, "%s/%s.crt", pki, name);
	if (access(crt, R_OK) != 0)
		td_make_cert(pki, pki, name, "127.0.0.1", now - 3600, now + 365 * 86400);
}

const char *td_pki(void)
{
	pki_host("T");
	return pki;
}

int td_peer_try_open(uint16_t port, bool plaintext, struct chan **out, char *err, size_t len)
{
	static struct tls_ctx *tls;
	struct link_conf lc = { .timeout_ms = 5000 };
	char hp[32];

	if (!plaintext && !tls) {
		char ca[300], crt[300], key[300];
		struct tls_conf tc = { ca, crt, key };

		snprintf(ca, sizeof ca, "%s/ca.crt", td_pki());
		snprintf(crt, sizeof crt, "%s/T.crt", td_pki());
		snprintf(key, sizeof key, "%s/T.key", td_pki());
		if (tls_ctx_new(&tc, &tls, err, len))
			fail_msg("test TLS context: %s", err);
	}
	lc.tls = plaintext ? NULL : tls;
	snprintf(hp, sizeof hp, "127.0.0.1:%u", port);
	return link_connect(&lc, hp, 0, out, err, len);
}

struct chan *td_peer_open(uint16_t port, bool plaintext)
{
	struct chan *c;
	char err[400];

	if (td_peer_try_open(port, plaintext, &c, err, sizeof err))
		fail_msg("connecting to 127.0.0.1:%u: %s", port, err);
	return c;
}

/* Daemons -------------------------------------------------------------------- */

void td_init(struct td *d, const char *name, int peer_timeout_ms)
{
	memset(d, 0, sizeof *d);
	d->ctl = -1;
	snprintf(d->name, sizeof d->name, "%s", name);
	snprintf(d->dir, sizeof d->dir, "%s/%s", test_dir, name);
	snprintf(d->state_dir, sizeof d->state_dir, "%s/state", d->dir);
	snprintf(d->run_dir, sizeof d->run_dir, "%s/run", d->dir);
	snprintf(d->sock, sizeof d->sock, "%s/run/ferryd.sock", d->dir);
	snprintf(d->log, sizeof d->log, "%s/ferryd.log", d->dir);
	d->peer_timeout_ms = peer_timeout_ms;
	d->port = td_free_port();
	pki_host(name);
	assert_int_equal(mkdir_p(d->state_dir, 0700), 0);
	assert_int_equal(mkdir_p(d->run_dir, 0700), 0);
	assert_true(ndaemons < ARRAY_SIZE(daemons));
	daemons[ndaemons++] = d;
}

void td_log_tail(const struct td *d, unsigned lines)
{
	char cmd[PATH_MAX + 64];

	fprintf(stderr, "# ---- last %u lines of ferryd %s's log (%s) ----\n", lines, d->name,
		d->log);
	snprintf(cmd, sizeof cmd, "tail -n %u '%s' | sed 's/^/#   /' >&2", lines, d->log);
	if (system(cmd) != 0)
		fprintf(stderr, "#   (no log)\n");
}

static void close_ctl(struct td *d)
{
	close_fd(&d->ctl);
	d->rlen = 0;
}

bool td_exited(struct td *d, int *status)
{
	int st;

	if (!d->pid)
		return true;
	if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
		disown(d->pid);
		d->pid = 0;
		close_ctl(d);
		if (status)
			*status = st;
		return true;
	}
	return false;
}

static void log_marker(const struct td *d, const char *what)
{
	FILE *f = fopen(d->log, "ae");

	if (f) {
		fprintf(f, "==== test %s: %s ====\n", test_name, what);
		fclose(f);
	}
}

/* The environment of d's processes: ours, with FERRY_FAILPOINTS and the
 * variables of d->env replaced by extra (if any) and d->env. calloc'd. */
static char **host_env(const struct td *d, char *extra)
{
	size_t n = 0, ne = 0, nd = 0;
	char **envp;

	while (environ[n])
		n++;
	while (nd < ARRAY_SIZE(d->env) && d->env[nd])
		nd++;
	envp = calloc(n + nd + 2, sizeof *envp);
	assert_non_null(envp);
	for (size_t i = 0; i < n; i++) {
		bool keep = strncmp(environ[i], "FERRY_FAILPOINTS=", 17) != 0;

		for (size_t k = 0; keep && k < nd; k++) {
			size_t l = strcspn(d->env[k], "=") + 1;

			keep = strncmp(environ[i], d->env[k], l) != 0;
		}
		if (keep)
			envp[ne++] = environ[i];
	}
	if (extra)
		envp[ne++] = extra;
	for (size_t k = 0; k < nd; k++)
		envp[ne++] = (char *)d->env[k];
	envp[ne] = NULL;
	return envp;
}

/* Spawn d's ferryd with these failpoints; its pid is owned (killed at the
 * end of the test whatever happens). */
static void spawn_ferryd(struct td *d, const char *failpoints)
{
	char port[32], pto[16], fpenv[300], marker[400];
	const char *argv[56];
	char nch[16];
	char **envp;
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int argc = 0, r;

	assert_int_equal(d->pid, 0);
	snprintf(d->failpoints, sizeof d->failpoints, "%s", failpoints ? failpoints : "");
	snprintf(port, sizeof port, "%s:%u", d->netns ? "0.0.0.0" : "127.0.0.1", d->port);
	snprintf(pto, sizeof pto, "%d", d->peer_timeout_ms);
	if (d->netns) {
		/* ip execs ferryd: the pid is ferryd's. */
		argv[argc++] = "/usr/sbin/ip";
		argv[argc++] = "netns";
		argv[argc++] = "exec";
		argv[argc++] = d->netns;
	}
	argv[argc++] = td_ferryd_path();
	/* Never the machine's /etc/ferry/ferryd.conf. */
	argv[argc++] = d->config_flag ? d->config_flag : "--config";
	argv[argc++] = d->config ? d->config : "/dev/null";
	if (d->codecs) {
		argv[argc++] = "--codecs";
		argv[argc++] = d->codecs;
	}
	if (d->plaintext) {
		argv[argc++] = "--insecure-plaintext";
	} else {
		argv[argc++] = "--pki-dir";
		argv[argc++] = d->pki_dir ? d->pki_dir : td_pki();
	}
	if (d->allow_from) {
		argv[argc++] = "--allow-from";
		argv[argc++] = d->allow_from;
	}
	if (d->channels) {
		snprintf(nch, sizeof nch, "%u", d->channels);
		argv[argc++] = "--channels";
		argv[argc++] = nch;
	}
	argv[argc++] = "--socket";
	argv[argc++] = d->sock;
	argv[argc++] = "--listen";
	argv[argc++] = port;
	argv[argc++] = "--state-dir";
	argv[argc++] = d->state_dir;
	argv[argc++] = "--run-dir";
	argv[argc++] = d->run_dir;
	argv[argc++] = "--peer-timeout-ms";
	argv[argc++] = pto;
	argv[argc++] = "--log-level";
	argv[argc++] = "debug";
	if (!d->hostname_from_config) {
		argv[argc++] = "--hostname";
		argv[argc++] = d->name;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(d->extra_args) && d->extra_args[i]; i++)
		argv[argc++] = d->extra_args[i];
	argv[argc] = NULL;

	if (d->failpoints[0])
		snprintf(fpenv, sizeof fpenv, "FERRY_FAILPOINTS=%s", d->failpoints);
	envp = host_env(d, d->failpoints[0] ? fpenv : NULL);

	snprintf(marker, sizeof marker, "start #%u, port %u, failpoints \"%s\"", d->starts + 1,
		 d->port, d->failpoints);
	log_marker(d, marker);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_adddup2(&fa, 2, 1);
	r = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	free(envp);
	if (r)
		fail_msg("cannot start %s: %s", argv[0], strerror(r));
	d->pid = pid;
	d->starts++;
	own(pid);
}

int td_run_to_exit(struct td *d, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	int st = 0;

	spawn_ferryd(d, NULL);
	while (!td_exited(d, &st)) {
		if (mono_ns() > until) {
			td_log_tail(d, 40);
			td_kill(d);
			fail_msg("ferryd %s did not exit within %d ms", d->name, timeout_ms);
		}
		h_sleep_ms(10);
	}
	return st;
}

void td_start(struct td *d, const char *failpoints)
{
	uint64_t until;

	spawn_ferryd(d, failpoints);
	/* Up when the control socket answers and the listener listens. */
	until = mono_ns() + 15 * NSEC_PER_SEC;
	for (;;) {
		int st;

		if (td_exited(d, &st)) {
			td_log_tail(d, 40);
			fail_msg("ferryd %s exited at start-up (status 0x%x)", d->name, st);
		}
		if (d->ctl < 0)
			d->ctl = td_connect(d);
		if (d->ctl >= 0) {
			char *line = td_raw_call(d->ctl, "{\"op\":\"version\"}", 16, 5000);

			if (line) {
				free(line);
				/* In a namespace, its port is not ours to probe. */
				if (d->netns || port_listening(d->port))
					return;
			} else {
				close_ctl(d);
			}
		}
		if (mono_ns() > until) {
			td_log_tail(d, 40);
			fail_msg("ferryd %s: no control socket answering at %s, or no listener on "
				 "port %u, 15 s after start", d->name, d->sock, d->port);
		}
		h_sleep_ms(10);
	}
}

void td_kill(struct td *d)
{
	if (!d->pid)
		return;
	close_ctl(d);
	kill(d->pid, SIGKILL);
	waitpid(d->pid, NULL, 0);
	disown(d->pid);
	d->pid = 0;
	log_marker(d, "SIGKILLed");
}

int td_term(struct td *d, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	int st;

	if (!d->pid)
		return 0;
	close_ctl(d);
	kill(d->pid, SIGTERM);
	for (;;) {
		pid_t r = waitpid(d->pid, &st, WNOHANG);

		if (r == d->pid || (r < 0 && errno == ECHILD))
			break;
		if (mono_ns() > until) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, NULL, 0);
			disown(d->pid);
			d->pid = 0;
			return -1;
		}
		h_sleep_ms(5);
	}
	disown(d->pid);
	d->pid = 0;
	return st;
}

static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p, s = 0;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "re")))
		return 0;
	if (fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')) && p[1] == ' ')
		s = p[2];
	fclose(f);
	return s;
}

bool td_is_stopped(const struct td *d)
{
	char s = d->pid ? proc_state(d->pid) : 0;
	return s == 'T' || s == 't';
}

void td_wait_stopped(struct td *d, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;

	for (;;) {
		int st;

		if (td_is_stopped(d))
			return;
		if (td_exited(d, &st))
			fail_msg("ferryd %s exited (status 0x%x) instead of stopping at failpoint %s",
				 d->name, st, d->failpoints);
		if (mono_ns() > until)
			fail_msg("ferryd %s did not stop at failpoint \"%s\" within %d ms", d->name,
				 d->failpoints, timeout_ms);
		h_sleep_ms(2);
	}
}

/* Control connection ------------------------------------------------------------ */

int td_connect(const struct td *d)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(d->sock) >= sizeof sa.sun_path)
		fail_msg("socket path too long: %s", d->sock);
	strcpy(sa.sun_path, d->sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Read one line (without its newline) from fd: peek for the newline, then
 * take exactly the line, so that nothing after it is consumed. */
char *td_read_line(int fd, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	assert_non_null(buf);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = mono_ns();
		ssize_t n;
		char *nl;

		if (now >= until)
			break;
		if (poll(&p, 1, (int)((until - now) / NSEC_PER_MSEC) + 1) <= 0)
			continue;
		if (cap - len < 4096) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		n = recv(fd, buf + len, cap - len - 1, MSG_PEEK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		nl = memchr(buf + len, '\n', (size_t)n);
		if (nl)
			n = nl - (buf + len) + 1;
		n = recv(fd, buf + len, (size_t)n, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (nl) {
			buf[len - 1] = '\0';
			return buf;
		}
	}
	free(buf);
	return NULL;
}

char *td_raw_call(int fd, const char *line, size_t len, int timeout_ms)
{
	if (!send_all(fd, line, len) || !send_all(fd, "\n", 1))
		return NULL;
	return td_read_line(fd, timeout_ms);
}

static json_t *vcall(struct td *d, const char *fmt, va_list ap)
{
	json_error_t je;
	json_t *req = json_vpack_ex(&je, 0, fmt, ap), *rep;
	char *text, *line;

	if (!req)
		fail_msg("bad request format %s: %s", fmt, je.text);
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	assert_non_null(text);
	if (!d->pid)
		fail_msg("request %s to ferryd %s, which is not running", text, d->name);
	if (d->ctl < 0 && (d->ctl = td_connect(d)) < 0)
		fail_msg("ferryd %s: cannot connect to %s: %s", d->name, d->sock, strerror(errno));
	line = td_raw_call(d->ctl, text, strlen(text), 30000);
	if (!line) {
		int st = 0;
		bool gone = td_exited(d, &st);

		td_log_tail(d, 40);
		fail_msg("ferryd %s gave no answer to %s (%s)", d->name, text,
			 gone ? "it exited" : td_is_stopped(d) ? "it is stopped" : "timeout or EOF");
	}
	rep = json_loads(line, 0, &je);
	if (!rep || !json_is_object(rep) || !json_is_boolean(json_object_get(rep, "ok")))
		fail_msg("ferryd %s answered %s with \"%s\": not an object with a boolean \"ok\"",
			 d->name, text, line);
	free(line);
	free(text);
	return rep;
}

json_t *td_call(struct td *d, const char *fmt, ...)
{
	va_list ap;
	json_t *r;

	va_start(ap, fmt);
	r = vcall(d, fmt, ap);
	va_end(ap);
	return r;
}

static char *dump(const json_t *o)
{
	return json_dumps(o, JSON_COMPACT);
}

json_t *td_ok(struct td *d, const char *fmt, ...)
{
	va_list ap, ap2;
	json_t *r;

	va_start(ap, fmt);
	va_copy(ap2, ap);
	r = vcall(d, fmt, ap);
	if (!json_is_true(json_object_get(r, "ok"))) {
		json_t *req = json_vpack_ex(NULL, 0, fmt, ap2);
		fail_msg("ferryd %s refused %s: %s", d->name, dump(req), dump(r));
	}
	va_end(ap2);
	va_end(ap);
	return r;
}

json_t *td_err(struct td *d, const char *fmt, ...)
{
	va_list ap, ap2;
	json_t *r;

	va_start(ap, fmt);
	va_copy(ap2, ap);
	r = vcall(d, fmt, ap);
	if (!json_is_false(json_object_get(r, "ok")) || !json_is_string(json_object_get(r, "error")) ||
	    !json_string_length(json_object_get(r, "error"))) {
		json_t *req = json_vpack_ex(NULL, 0, fmt, ap2);
		fail_msg("ferryd %s: %s should be refused with an error, answer: %s", d->name,
			 dump(req), dump(r));
	}
	va_end(ap2);
	va_end(ap);
	return r;
}

const char *td_errstr(const json_t *reply)
{
	const char *s = json_string_value(json_object_get(reply, "error"));
	return s ? s : "";
}

const char *td_jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

double td_jnum(const json_t *o, const char *path)
{
	char key[64];
	const char *dot;
	json_t *v;

	while ((dot = strchr(path, '.'))) {
		snprintf(key, sizeof key, "%.*s", (int)(dot - path), path);
		o = json_object_get(o, key);
		path = dot + 1;
	}
	v = json_object_get(o, path);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The API ------------------------------------------------------------------------- */

void td_create(struct td *d, const char *vm, const char *mem, unsigned vcpus,
	       const char *workload)
{
	json_t *r = td_ok(d, "{s:s, s:s, s:s, s:i, s:s}", "op", "create", "name", vm, "mem", mem,
			  "vcpus", (int)vcpus, "workload", workload);
	json_decref(r);
	td_runtimes(d->run_dir, vm, NULL, 0); /* remember its PID */
}

void td_destroy(struct td *d, const char *vm)
{
	json_decref(td_ok(d, "{s:s, s:s}", "op", "destroy", "name", vm));
}

json_t *td_info(struct td *d, const char *vm)
{
	json_t *r = td_call(d, "{s:s, s:s}", "op", "info", "name", vm), *v;

	if (!json_is_true(json_object_get(r, "ok"))) {
		json_decref(r);
		return NULL;
	}
	v = json_object_get(r, "vm");
	if (!json_is_object(v))
		fail_msg("ferryd %s: info %s without a \"vm\" object: %s", d->name, vm, dump(r));
	json_incref(v);
	json_decref(r);
	return v;
}

bool td_listed(struct td *d, const char *vm, char *state)
{
	json_t *r = td_ok(d, "{s:s}", "op", "list"), *vms = json_object_get(r, "vms"), *v;
	size_t i;
	bool found = false;

	if (!json_is_array(vms))
		fail_msg("ferryd %s: list without a \"vms\" array: %s", d->name, dump(r));
	json_array_foreach(vms, i, v) {
		if (strcmp(td_jstr(v, "name"), vm) == 0) {
			found = true;
			if (state)
				snprintf(state, 32, "%s", td_jstr(v, "state"));
		}
	}
	json_decref(r);
	return found;
}

void td_verify_ok(struct td *d, const char *vm)
{
	json_t *r = td_ok(d, "{s:s, s:s}", "op", "verify", "name", vm);

	if (!json_is_true(json_object_get(r, "verified")) ||
	    strcmp(td_jstr(r, "result"), "ok") != 0)
		fail_msg("ferryd %s: verify %s: %s", d->name, vm, dump(r));
	json_decref(r);
}

/* The steps of a running guest as the daemon's info reports them. info
 * leaves them out while something else holds the microVM's handle (a job,
 * a verify on another connection): try again for up to a second. */
static double steps_of(struct td *d, const char *vm)
{
	uint64_t until = mono_ns() + NSEC_PER_SEC;

	for (;;) {
		json_t *v = td_info(d, vm);
		double s;

		if (!v)
			fail_msg("ferryd %s: no microVM %s (info failed)", d->name, vm);
		s = td_jnum(v, "steps");
		if (!isnan(s)) {
			json_decref(v);
			return s;
		}
		if (mono_ns() > until)
			fail_msg("ferryd %s: info %s has no \"steps\" for a second: %s", d->name, vm,
				 dump(v));
		json_decref(v);
		h_sleep_ms(10);
	}
}

void td_wait_running(struct td *d, const char *vm, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	double s0 = steps_of(d, vm), s;

	for (;;) {
		h_sleep_ms(10);
		s = steps_of(d, vm);
		if (s > s0)
			return;
		if (mono_ns() > until)
			fail_msg("ferryd %s: %s made no step in %d ms (steps stay %.0f): not running",
				 d->name, vm, timeout_ms, s);
	}
}

/* The runtime's own step counter: the daemon's info may leave it out while
 * a job holds the microVM. */
void td_assert_frozen(struct td *d, const char *vm, unsigned ms)
{
	struct td_rt_info a, b;
	int r;

	if ((r = td_rt_info(d->run_dir, vm, &a)))
		fail_msg("%s on %s: its runtime does not answer INFO: %s", vm, d->name, strerror(-r));
	h_sleep_ms(ms);
	if ((r = td_rt_info(d->run_dir, vm, &b)))
		fail_msg("%s on %s: its runtime does not answer INFO: %s", vm, d->name, strerror(-r));
	if (b.steps != a.steps || !a.paused || !b.paused)
		fail_msg("ferryd %s: %s should be paused but stepped from %lu to %lu in %u ms "
			 "(runtime paused=%d)", d->name, vm, (unsigned long)a.steps,
			 (unsigned long)b.steps, ms, b.paused);
}

char *td_migrate(struct td *src, const char *vm, uint16_t port, const char *extra, ...)
{
	char dest[32], *text, *id;
	json_t *req, *rep;
	va_list ap;

	snprintf(dest, sizeof dest, "127.0.0.1:%u", port);
	req = json_pack("{s:s, s:s, s:s}", "op", "migrate", "name", vm, "dest", dest);
	if (extra) {
		char fmt[256];
		json_error_t je;
		json_t *more;

		snprintf(fmt, sizeof fmt, "{%s}", extra);
		va_start(ap, extra);
		more = json_vpack_ex(&je, 0, fmt, ap);
		va_end(ap);
		if (!more)
			fail_msg("bad format %s: %s", fmt, je.text);
		json_object_update(req, more);
		json_decref(more);
	}
	text = dump(req);
	rep = td_call(src, "O", req);
	json_decref(req);
	if (!json_is_true(json_object_get(rep, "ok")) || !json_is_string(json_object_get(rep, "job")))
		fail_msg("ferryd %s: %s was refused: %s", src->name, text, dump(rep));
	id = strdup(td_jstr(rep, "job"));
	json_decref(rep);
	free(text);
	return id;
}

json_t *td_job(struct td *d, const char *job)
{
	json_t *r = td_ok(d, "{s:s, s:s}", "op", "status", "job", job), *j = json_object_get(r, "job");

	if (!json_is_object(j) || !json_is_string(json_object_get(j, "state")))
		fail_msg("ferryd %s: status %s without a job object with a state: %s", d->name, job,
			 dump(r));
	json_incref(j);
	json_decref(r);
	return j;
}

json_t *td_wait_job(struct td *d, const char *job, const char *want, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;

	for (;;) {
		json_t *j = td_job(d, job);
		const char *s = td_jstr(j, "state");

		if (want ? strcmp(s, want) == 0 : strcmp(s, "active") != 0)
			return j;
		if (mono_ns() > until)
			fail_msg("ferryd %s: job %s still %s after %d ms (waiting for %s): %s", d->name,
				 job, s, timeout_ms, want ? want : "it to end", dump(j));
		json_decref(j);
		h_sleep_ms(20);
	}
}

/* Processes ------------------------------------------------------------------------ */

/* argv of pid into buf (NUL-separated), its count; -1 if gone. */
static int read_argv(pid_t pid, char *buf, size_t len, const char **argv, int max)
{
	char path[64];
	ssize_t n;
	int fd, argc = 0;

	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	for (char *p = buf; p < buf + n && argc < max; p += strlen(p) + 1)
		argv[argc++] = p;
	return argc;
}

static const char *arg_after(const char **argv, int argc, const char *opt)
{
	for (int i = 0; i + 1 < argc; i++)
		if (strcmp(argv[i], opt) == 0)
			return argv[i + 1];
	return NULL;
}

int td_runtimes(const char *run_dir, const char *vm, pid_t *pids, int max)
{
	DIR *dir = opendir("/proc");
	struct dirent *e;
	int n = 0;

	assert_non_null(dir);
	while ((e = readdir(dir))) {
		char buf[4096];
		const char *argv[32], *rd, *nm, *slash;
		pid_t pid;
		int argc;
		char s;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid = (pid_t)atoi(e->d_name);
		if ((argc = read_argv(pid, buf, sizeof buf, argv, 32)) < 1)
			continue;
		slash = strrchr(argv[0], '/');
		if (strcmp(slash ? slash + 1 : argv[0], "ferry-mvm") != 0)
			continue;
		rd = arg_after(argv, argc, "--run-dir");
		nm = arg_after(argv, argc, "--name");
		if (!rd || strcmp(rd, run_dir) != 0 || !nm || (vm && strcmp(nm, vm) != 0))
			continue;
		s = proc_state(pid);
		if (!s || s == 'Z' || s == 'X')
			continue;
		own(pid);
		if (pids && n < max)
			pids[n] = pid;
		n++;
	}
	closedir(dir);
	return n;
}

void td_wait_no_runtime(const char *run_dir, const char *vm, int timeout_ms)
{
	uint64_t until = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	pid_t pids[8];
	int n;

	while ((n = td_runtimes(run_dir, vm, pids, 8)) > 0) {
		if (mono_ns() > until)
			fail_msg("%d ferry-mvm runtime(s) for %s still alive in %s after %d ms "
				 "(pid %d)", n, vm ? vm : "any microVM", run_dir, timeout_ms,
				 (int)pids[0]);
		h_sleep_ms(10);
	}
}

int td_fd_count(pid_t pid, int *memfds)
{
	char path[64], link[PATH_MAX];
	struct dirent *e;
	DIR *dir;
	int n = 0, m = 0;

	snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
	if (!(dir = opendir(path)))
		return -1;
	while ((e = readdir(dir))) {
		char p[320];
		ssize_t l;

		if (e->d_name[0] == '.')
			continue;
		n++;
		snprintf(p, sizeof p, "%s/%s", path, e->d_name);
		l = readlink(p, link, sizeof link - 1);
		if (l > 0) {
			link[l] = '\0';
			if (strncmp(link, "/memfd:", 7) == 0)
				m++;
		}
	}
	closedir(dir);
	if (memfds)
		*memfds = m;
	return n;
}

void td_assert_quiet(struct td *d)
{
	json_t *r = td_ok(d, "{s:s}", "op", "list"), *v, *jobs;
	uint64_t until = mono_ns() + 5 * NSEC_PER_SEC;
	size_t i;
	int memfds = 0;

	if (json_array_size(json_object_get(r, "vms")) != 0)
		fail_msg("ferryd %s should have no microVM left, lists %s", d->name, dump(r));
	json_decref(r);
	r = td_ok(d, "{s:s}", "op", "jobs");
	jobs = json_object_get(r, "jobs");
	if (!json_is_array(jobs))
		fail_msg("ferryd %s: jobs without a \"jobs\" array: %s", d->name, dump(r));
	json_array_foreach(jobs, i, v)
		if (strcmp(td_jstr(v, "state"), "active") == 0 ||
		    strcmp(td_jstr(v, "state"), "unresolved") == 0)
			fail_msg("ferryd %s: job still %s at rest: %s", d->name, td_jstr(v, "state"),
				 dump(v));
	json_decref(r);
	td_wait_no_runtime(d->run_dir, NULL, 5000);
	/* A runtime just ended: give the daemon a moment to notice and close
	 * what it held of it. */
	for (;;) {
		if (td_fd_count(d->pid, &memfds) < 0)
			fail_msg("ferryd %s is gone", d->name);
		if (memfds == 0)
			break;
		if (mono_ns() > until)
			fail_msg("ferryd %s holds %d memfd(s) with no microVM left", d->name, memfds);
		h_sleep_ms(20);
	}
}

/* Leak records ---------------------------------------------------------------------- */

static struct {
	char what[96];
	int first, last;
} fd_records[64];
static unsigned n_fd_records;

void td_fd_record(const char *test, const struct td *d, int first, int last)
{
	if (n_fd_records < ARRAY_SIZE(fd_records)) {
		snprintf(fd_records[n_fd_records].what, sizeof fd_records[0].what, "%s, ferryd %s",
			 test, d->name);
		fd_records[n_fd_records].first = first;
		fd_records[n_fd_records].last = last;
		n_fd_records++;
	}
}

void td_check_fd_records(int slack)
{
	int bad = 0;

	for (unsigned i = 0; i < n_fd_records; i++) {
		bool grew = fd_records[i].last > fd_records[i].first + slack;

		print_message("%s: %d fds after round 1, %d after the last round%s\n",
			      fd_records[i].what, fd_records[i].first, fd_records[i].last,
			      grew ? "  <-- grew" : "");
		bad += grew;
	}
	if (bad)
		fail_msg("%d daemon(s) hold more fds after the last round than after the first "
			 "(slack %d)", bad, slack);
}

int td_leftover_processes(char *desc, size_t len)
{
	DIR *dir = opendir("/proc");
	struct dirent *e;
	size_t off = 0;
	int n = 0;

	assert_non_null(dir);
	desc[0] = '\0';
	while ((e = readdir(dir))) {
		char buf[4096], s;
		const char *argv[32];
		pid_t pid;
		int argc;
		bool ours = false;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid = (pid_t)atoi(e->d_name);
		if (pid == getpid() || (argc = read_argv(pid, buf, sizeof buf, argv, 32)) < 1)
			continue;
		for (int i = 0; i < argc; i++)
			if (strncmp(argv[i], base, strlen(base)) == 0)
				ours = true;
		s = proc_state(pid);
		if (!ours || !s || s == 'Z' || s == 'X')
			continue;
		if (off < len)
			off += (size_t)snprintf(desc + off, len - off, "%s%d (%s)", n ? ", " : "",
					       (int)pid, argv[0]);
		n++;
	}
	closedir(dir);
	return n;
}

/* The runtime's own view --------------------------------------------------------------- */

int td_rt_info(const char *run_dir, const char *vm, struct td_rt_info *out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct mvm_req_hdr h = { .magic = htole32(MVM_REQ_MAGIC),
				 .version = htole16(MVM_PROTO_VERSION),
				 .type = htole16(MVM_INFO), .seq = htole32(1), .body_len = 0 };
	char rep[MVM_MSG_MAX], err[128];
	struct mvm_info i;
	const void *body;
	uint32_t blen;
	int32_t status;
	ssize_t n;
	int fd, r = 0;

	if ((size_t)snprintf(sa.sun_path, sizeof sa.sun_path, "%s/mvm/%s.sock", run_dir, vm) >=
	    sizeof sa.sun_path)
		return -ENAMETOOLONG;
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    send(fd, &h, sizeof h, MSG_NOSIGNAL) != (ssize_t)sizeof h) {
		r = -errno;
		goto out;
	}
	{
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 5000) != 1) {
			r = -ETIMEDOUT;
			goto out;
		}
	}
	n = recv(fd, rep, sizeof rep, 0);
	if (n < 0) {
		r = -errno;
		goto out;
	}
	if ((r = mvm_rep_parse(rep, (size_t)n, MVM_INFO, 1, &status, &body, &blen, err,
			       sizeof err)))
		goto out;
	if (status) {
		r = status;
		goto out;
	}
	if (blen != sizeof i) {
		r = -EBADMSG;
		goto out;
	}
	memcpy(&i, body, sizeof i);
	out->paused = le32toh(i.paused) != 0;
	out->logdirty = le32toh(i.logdirty) != 0;
	out->incoming = le32toh(i.incoming) != 0;
	out->throttle = le32toh(i.throttle);
	out->pid = (pid_t)(int32_t)le32toh((uint32_t)i.pid);
	out->steps = le64toh(i.steps);
	out->resume_gap_ns = le64toh(i.resume_gap_ns);
out:
	close(fd);
	return r;
}

/* The command line ---------------------------------------------------------------- */

int td_cli(const struct td *d, char **out, ...)
{
	const char *argv[32];
	char outpath[300], errpath[300];
	posix_spawn_file_actions_t fa;
	uint64_t until = mono_ns() + 60 * NSEC_PER_SEC;
	int argc = 0, r, st;
	char **envp;
	va_list ap;
	pid_t pid;
	FILE *f;

	argv[argc++] = td_ferry_path();
	argv[argc++] = "--socket";
	argv[argc++] = d->sock;
	va_start(ap, out);
	while (argc < 31 && (argv[argc] = va_arg(ap, const char *)))
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	snprintf(outpath, sizeof outpath, "%s/cli.out", d->dir);
	snprintf(errpath, sizeof errpath, "%s/cli.err", d->dir);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, outpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	envp = host_env(d, NULL);
	r = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, envp);
	free(envp);
	posix_spawn_file_actions_destroy(&fa);
	if (r)
		fail_msg("cannot run %s: %s", argv[0], strerror(r));
	own(pid);
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			break;
		if (mono_ns() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			disown(pid);
			fail_msg("%s %s %s: no exit within 60 s", argv[0], argv[3], argc > 4 ? argv[4] : "");
		}
		h_sleep_ms(5);
	}
	disown(pid);
	if (out) {
		long len;

		*out = NULL;
		if ((f = fopen(outpath, "re"))) {
			fseek(f, 0, SEEK_END);
			len = ftell(f);
			rewind(f);
			*out = calloc(1, (size_t)(len > 0 ? len : 0) + 1);
			if (*out && len > 0 && fread(*out, 1, (size_t)len, f) != (size_t)len)
				(*out)[0] = '\0';
			fclose(f);
		}
		assert_non_null(*out);
	}
	if (!WIFEXITED(st)) {
		char cmd[400];

		snprintf(cmd, sizeof cmd, "sed 's/^/#   /' '%s' >&2", errpath);
		if (system(cmd) != 0)
			fprintf(stderr, "#   (no stderr)\n");
		fail_msg("%s %s died (status 0x%x)", argv[0], argv[3], st);
	}
	return WEXITSTATUS(st);
}

const char *td_src_path(const char *rel, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", FERRY_SRCDIR, rel);
	return buf;
}

const char *td_net_hook(void)
{
	static char p[PATH_MAX];

	return td_src_path("daemon/ferry-net-hook", p, sizeof p);
}

void td_wait_net_state(struct td *d, const char *vm, const char *want)
{
	uint64_t until = mono_ns() + 10 * NSEC_PER_SEC;

	for (;;) {
		json_t *v = td_info(d, vm);
		bool ok = v && !strcmp(td_jstr(v, "net_state"), want);

		if (ok) {
			json_decref(v);
			return;
		}
		if (mono_ns() > until)
			fail_msg("%s on %s: net_state %s, not %s", vm, d->name,
				 v ? td_jstr(v, "net_state") : "?", want);
		json_decref(v);
		h_sleep_ms(50);
	}
}
