/* SPDX-License-Identifier: Apache-2.0 */
/* net.c — a guest's service address on this host; see net.h. */
#include "daemon/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mtime.h"
#include "common/util.h"
#include "daemon/core.h"

extern char **environ;

/* A listening socket on addr ("ADDR:PORT"), bound even where the address
 * is not (yet) this host's. */
static int listen_on(const char *addr, char *why, size_t len)
{
	struct sockaddr_storage ss = { 0 };
	char host[64], port[16];
	uint64_t p;
	socklen_t sl;
	int fd, one = 1, af, e;

	if (parse_host_port(addr, 0, host, sizeof host, port, sizeof port) ||
	    parse_u64(port, 1, 65535, &p)) {
		snprintf(why, len, "%s is not ADDR:PORT", addr);
		return -EINVAL;
	}
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		af = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)p);
		sl = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		af = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)p);
		sl = sizeof(struct sockaddr_in6);
	} else {
		snprintf(why, len, "%s is not a numeric address", host);
		return -EINVAL;
	}
	ss.ss_family = (sa_family_t)af;
	if ((fd = socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (af == AF_INET)
		setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
	else
		setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, sl) == 0 && listen(fd, 256) == 0)
		return fd;
fail:
	e = errno;
	snprintf(why, len, "listening on %s: %s", addr, strerror(e));
	if (fd >= 0)
		close(fd);
	return -e;
}

/* Run the hook: HOOK ACTION VM ADDR, within the hook timeout. */
static int run_hook(const char *action, const char *vm, const char *addr, char *why, size_t len)
{
	const char *argv[] = { D.net_hook, action, vm, addr, NULL };
	bool late = false;
	pid_t pid;
	int r, st, pidfd;

	if ((r = posix_spawn(&pid, D.net_hook, NULL, NULL, (char *const *)argv, environ))) {
		snprintf(why, len, "%s %s: cannot run %.120s: %s", action, addr, D.net_hook, strerror(r));
		return -r;
	}
	/* Our child, not reaped: its pid is its own until waitpid. */
	if ((pidfd = (int)syscall(SYS_pidfd_open, pid, 0)) >= 0) {
		struct pollfd p = { .fd = pidfd, .events = POLLIN };

		if (poll(&p, 1, D.net_hook_timeout_ms) == 0) {
			kill(pid, SIGKILL);
			late = true;
		}
		close(pidfd);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (late) {
		snprintf(why, len, "%s %s: the hook took longer than %d ms; killed", action, addr,
			 D.net_hook_timeout_ms);
		return -ETIMEDOUT;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		snprintf(why, len, "%s %s: the hook failed (%s %d)", action, addr,
			 WIFEXITED(st) ? "exit status" : "signal",
			 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		return -EIO;
	}
	snprintf(why, len, "%s %s: done", action, addr);
	return 0;
}

/* What a hook run reports into the VM's net state and the log. */
static void hook_result(struct vm *v, const char *action, int r, const char *why)
{
	pthread_mutex_lock(&D.lock);
	if (r)
		snprintf(v->net_state, sizeof v->net_state, "%.190s", why);
	else
		snprintf(v->net_state, sizeof v->net_state, "%s",
			 strcmp(action, "claim") == 0 ? "listening, address claimed"
						      : "address released");
	pthread_mutex_unlock(&D.lock);
	if (r)
		log_error("%s: net hook: %s", v->name, why);
	else
		log_info("%s: net hook: %s", v->name, why);
}

#define NET_BUSY_WAIT_MS 1000

struct claim {
	struct vm *v;
	char action[16];
};

static void *hook_main(void *p)
{
	struct claim *c = p;
	char why[256];
	int r = run_hook(c->action, c->v->name, c->v->net, why, sizeof why);

	hook_result(c->v, c->action, r, why);
	vm_put(c->v);
	free(c);
	thread_done();
	return NULL;
}

/* Run the hook for v in the background. */
static void hook_async(struct vm *v, const char *action)
{
	struct claim *c = calloc(1, sizeof *c);

	if (!c)
		return;
	c->v = v;
	snprintf(c->action, sizeof c->action, "%s", action);
	pthread_mutex_lock(&D.lock);
	v->refs++;
	pthread_mutex_unlock(&D.lock);
	if (spawn_thread(hook_main, c)) {
		vm_put(v);
		free(c);
	}
}

int net_up(struct vm *v, struct hv_domain *d)
{
	char why[256];
	int fd, r;

	if (!v->net[0] || !d)
		return 0;
	/* A process that held the address here (a killed runtime, the old
	 * primary on a shared test host) may take a moment to let go. */
	for (uint64_t until = mono_ns() + NET_BUSY_WAIT_MS * NSEC_PER_MSEC;
	     (fd = listen_on(v->net, why, sizeof why)) == -EADDRINUSE && mono_ns() < until;)
		mono_sleep_ns(20 * NSEC_PER_MSEC);
	if (fd < 0) {
		r = fd;
	} else if ((r = hv_net_attach(d, fd))) {
		snprintf(why, sizeof why, "handing %s its listener: %s", v->name, strerror(-r));
	}
	if (r) {
		log_error("%s: service address %s: %s", v->name, v->net, why);
		pthread_mutex_lock(&D.lock);
		snprintf(v->net_state, sizeof v->net_state, "%.190s", why);
		pthread_mutex_unlock(&D.lock);
		return r;
	}
	pthread_mutex_lock(&D.lock);
	v->net_up = true;
	snprintf(v->net_state, sizeof v->net_state, "listening");
	pthread_mutex_unlock(&D.lock);
	if (D.net_hook[0])
		hook_async(v, "claim");
	return 0;
}

void net_down(struct vm *v, bool wait)
{
	char why[256];
	bool up;
	int r;

	pthread_mutex_lock(&D.lock);
	up = v->net_up;
	v->net_up = false;
	pthread_mutex_unlock(&D.lock);
	if (!up)
		return;
	if (v->d && !v->dead)
		hv_net_attach(v->d, -1);
	if (!D.net_hook[0])
		return;
	if (!wait) {
		hook_async(v, "release");
		return;
	}
	r = run_hook("release", v->name, v->net, why, sizeof why);
	hook_result(v, "release", r, why);
}

void net_gone(struct vm *v)
{
	net_down(v, false);
}
