/* SPDX-License-Identifier: Apache-2.0 */
/* xen_qmp.c — one QMP command to QEMU; see xen_qmp.h. */
#include "hv/xen_qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/mtime.h"
#include "common/util.h"

#define QMP_LINE_MAX (64u << 10)

struct qmp {
	int fd;
	uint64_t deadline;
	char buf[QMP_LINE_MAX];
	size_t len;
};

static int wait_io(struct qmp *q, short ev)
{
	struct pollfd p = { .fd = q->fd, .events = ev };
	int64_t left = (int64_t)(q->deadline - mono_ns()) / 1000000;
	int n;

	if (left <= 0)
		return -ETIMEDOUT;
	n = poll(&p, 1, (int)left);
	return n < 0 ? -errno : n == 0 ? -ETIMEDOUT : 0;
}

/* The next JSON message (one per line, as QEMU writes them). */
static int get(struct qmp *q, json_t **out)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		ssize_t n;
		int r;

		if (nl) {
			json_error_t je;
			size_t l = (size_t)(nl - q->buf) + 1;

			*out = json_loadb(q->buf, l, 0, &je);
			memmove(q->buf, q->buf + l, q->len - l);
			q->len -= l;
			return *out && json_is_object(*out) ? 0 : (json_decref(*out), -EPROTO);
		}
		if (q->len == sizeof q->buf)
			return -EPROTO;
		if ((r = wait_io(q, POLLIN)))
			return r;
		n = read(q->fd, q->buf + q->len, sizeof q->buf - q->len);
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return -errno;
		if (n == 0)
			return -EPROTO;
		if (n > 0)
			q->len += (size_t)n;
	}
}

static int put(struct qmp *q, json_t *msg)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	size_t len, done = 0;
	int r = 0;

	json_decref(msg);
	if (!s)
		return -ENOMEM;
	len = strlen(s);
	while (!r && done < len) {
		ssize_t n = write(q->fd, s + done, len - done);

		if (n > 0)
			done += (size_t)n;
		else if (n < 0 && errno != EINTR && errno != EAGAIN)
			r = -errno;
		else
			r = wait_io(q, POLLOUT);
	}
	free(s);
	return r;
}

/* Send one command and read its answer, skipping asynchronous events. */
static int execute(struct qmp *q, const char *cmd, json_t *args, char *err, size_t errlen)
{
	json_t *m = json_pack("{s:s}", "execute", cmd), *a;
	int r;

	if (!m) {
		json_decref(args);
		return -ENOMEM;
	}
	if (args)
		json_object_set_new(m, "arguments", args);
	if ((r = put(q, m)))
		return r;
	for (;;) {
		if ((r = get(q, &a)))
			return r;
		if (json_object_get(a, "return")) {
			json_decref(a);
			return 0;
		}
		if (json_object_get(a, "error")) {
			const char *d = json_string_value(
				json_object_get(json_object_get(a, "error"), "desc"));

			snprintf(err, errlen, "QEMU refused %s: %s", cmd, d ? d : "(no description)");
			json_decref(a);
			return -EIO;
		}
		json_decref(a); /* an event */
	}
}

int xen_qmp(const char *path, const char *cmd, json_t *args, int timeout_ms, char *err,
	    size_t errlen)
{
	static struct qmp q_zero;
	struct qmp *q = malloc(sizeof *q);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	json_t *greet = NULL;
	int r;

	if (!q) {
		json_decref(args);
		return -ENOMEM;
	}
	*q = q_zero;
	q->deadline = mono_ns() + (uint64_t)timeout_ms * 1000000;
	if (strlen(path) >= sizeof sa.sun_path) {
		r = -ENAMETOOLONG;
		goto out;
	}
	memcpy(sa.sun_path, path, strlen(path));
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (q->fd < 0) {
		r = -errno;
		goto out;
	}
	if (connect(q->fd, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS) {
		r = -errno;
		snprintf(err, errlen, "no device model answers at %s: %s", path, strerror(errno));
		goto out;
	}
	if ((r = get(q, &greet)) || !json_object_get(greet, "QMP")) {
		r = r ? r : -EPROTO;
		snprintf(err, errlen, "%s: no QMP greeting (%s)", path, strerror(-r));
		goto out;
	}
	if ((r = execute(q, "qmp_capabilities", NULL, err, errlen)))
		goto out;
	r = execute(q, cmd, args, err, errlen);
	args = NULL;
	if (r && r != -EIO)
		snprintf(err, errlen, "%s to %s: %s", cmd, path, strerror(-r));
out:
	json_decref(args);
	json_decref(greet);
	if (q->fd > 0)
		close(q->fd);
	free(q);
	return r;
}
