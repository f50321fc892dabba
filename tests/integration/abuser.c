/* SPDX-License-Identifier: Apache-2.0 */
/* abuser.c — a stranger at a migration port; see abuser.h. */
#include "tests/integration/abuser.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "transport/tls.h"

#include "tests/integration/harness.h"

#define MAX_IDLE 1024
#define RETRY_MS 10 /* between two garbage or TLS attempts of one thread */

static const struct abuser_conf *C;
static struct tls_ctx *foreign;
static atomic_ulong n_idle, n_garbage, n_tls;
static volatile sig_atomic_t stop;
static int pipe_out = -1;

/* A connection to the listener (blocking if wait, else non-blocking in
 * progress); -1 if none could be made. */
static int dial(bool wait)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(C->port) }, me = {
		.sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | (wait ? 0 : SOCK_NONBLOCK), 0);

	if (fd < 0)
		return -1;
	inet_pton(AF_INET, C->dst, &sa.sin_addr);
	if (C->src && (inet_pton(AF_INET, C->src, &me.sin_addr) != 1 ||
		       bind(fd, (struct sockaddr *)&me, sizeof me))) {
		close(fd);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = { 0, (long)ms * 1000000L };

	nanosleep(&ts, NULL);
}

/* Hold C->idle connections that say nothing; re-open each one as soon as
 * the listener closes it. */
static void *idle_main(void *arg)
{
	static struct pollfd p[MAX_IDLE];
	unsigned n = C->idle < MAX_IDLE ? C->idle : MAX_IDLE;
	char b[4096];

	(void)arg;
	for (unsigned i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = -1 };
	while (!stop) {
		for (unsigned i = 0; i < n; i++)
			if (p[i].fd < 0 && (p[i].fd = dial(false)) >= 0) {
				p[i].events = POLLIN;
				atomic_fetch_add(&n_idle, 1);
			}
		if (poll(p, n, 100) <= 0)
			continue;
		for (unsigned i = 0; i < n; i++) {
			ssize_t r;

			if (p[i].fd < 0 || !p[i].revents)
				continue;
			r = recv(p[i].fd, b, sizeof b, MSG_DONTWAIT);
			if (r == 0 || (r < 0 && errno != EAGAIN)) {
				close(p[i].fd);
				p[i].fd = -1;
			}
		}
	}
	for (unsigned i = 0; i < n; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	return NULL;
}

/* Wait for the listener to close fd (up to 5 s), dropping what it says. */
static void until_closed(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char b[4096];

	while (!stop && poll(&p, 1, 5000) > 0 && recv(fd, b, sizeof b, 0) > 0)
		;
}

/* Connect, send random bytes, wait to be thrown out; again. */
static void *garbage_main(void *arg)
{
	unsigned char junk[512];

	(void)arg;
	while (!stop) {
		int fd = dial(true);

		if (fd >= 0) {
			atomic_fetch_add(&n_garbage, 1);
			if (getrandom(junk, sizeof junk, 0) == sizeof junk)
				junk[0] = junk[0] == 0x16 ? 0x17 : junk[0]; /* not TLS either */
			if (send(fd, junk, sizeof junk, MSG_NOSIGNAL) > 0)
				until_closed(fd);
			close(fd);
		}
		pause_ms(RETRY_MS);
	}
	return NULL;
}

/* A TLS handshake with another CA's certificate; again. */
static void *tls_main(void *arg)
{
	(void)arg;
	while (!stop) {
		struct chan *c;
		char err[256];
		int fd = dial(true);

		if (fd >= 0) {
			atomic_fetch_add(&n_tls, 1);
			if (chan_tls_connect(foreign, fd, C->dst, 3000, &c, err, sizeof err) == 0)
				chan_free(c); /* it should never get here */
			else
				close(fd);
		}
		pause_ms(RETRY_MS);
	}
	return NULL;
}

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void enter_netns(const char *ns)
{
	char path[256];
	int fd;

	snprintf(path, sizeof path, "/var/run/netns/%s", ns);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || setns(fd, CLONE_NEWNET)) {
		perror(path);
		_exit(3);
	}
	close(fd);
}

static void child(void)
{
	pthread_t th[1 + 64 + 64];
	unsigned n = 0;
	char ca[300], crt[300], key[300], err[512];
	struct abuser_stats st;

	signal(SIGTERM, on_term);
	signal(SIGPIPE, SIG_IGN);
	if (C->netns)
		enter_netns(C->netns);
	if (C->tls) {
		struct tls_conf tc = { ca, crt, key };

		snprintf(ca, sizeof ca, "%s/ca.crt", C->tls_pki);
		snprintf(crt, sizeof crt, "%s/%s.crt", C->tls_pki, C->tls_name);
		snprintf(key, sizeof key, "%s/%s.key", C->tls_pki, C->tls_name);
		if (tls_ctx_new(&tc, &foreign, err, sizeof err)) {
			fprintf(stderr, "abuser: %s\n", err);
			_exit(3);
		}
	}
	if (C->idle)
		pthread_create(&th[n++], NULL, idle_main, NULL);
	for (unsigned i = 0; i < C->garbage && i < 64; i++)
		pthread_create(&th[n++], NULL, garbage_main, NULL);
	for (unsigned i = 0; i < C->tls && i < 64; i++)
		pthread_create(&th[n++], NULL, tls_main, NULL);
	while (!stop)
		pause_ms(50);
	for (unsigned i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	st = (struct abuser_stats){ atomic_load(&n_idle), atomic_load(&n_garbage),
				    atomic_load(&n_tls) };
	if (write(pipe_out, &st, sizeof st) != sizeof st)
		_exit(4);
	_exit(0);
}

static int pipes[64][2];
static pid_t pids[64];

pid_t abuser_start(const struct abuser_conf *c)
{
	unsigned slot;
	pid_t pid;

	for (slot = 0; slot < 64 && pids[slot]; slot++)
		;
	assert_true(slot < 64);
	assert_int_equal(pipe2(pipes[slot], O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		C = c;
		pipe_out = pipes[slot][1];
		child();
	}
	close(pipes[slot][1]);
	pids[slot] = pid;
	h_track_pid(pid);
	return pid;
}

void abuser_stop(pid_t pid, struct abuser_stats *out)
{
	int status;

	memset(out, 0, sizeof *out);
	for (unsigned slot = 0; slot < 64; slot++) {
		if (pids[slot] != pid)
			continue;
		kill(pid, SIGTERM);
		if (read(pipes[slot][0], out, sizeof *out) != sizeof *out)
			memset(out, 0, sizeof *out);
		waitpid(pid, &status, 0);
		close(pipes[slot][0]);
		pids[slot] = 0;
		return;
	}
}

void abuser_stop_all(void)
{
	struct abuser_stats st;

	for (unsigned slot = 0; slot < 64; slot++)
		if (pids[slot])
			abuser_stop(pids[slot], &st);
}
