/* SPDX-License-Identifier: Apache-2.0 */
/* client.c — the control socket, client side; see client.h. */
#include "cli/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"
#include "cli/opts.h"

#define REPLY_MAX (16u << 20)

static char sock_path[256];

void client_set_socket(const char *path)
{
	snprintf(sock_path, sizeof sock_path, "%s", path);
}

const char *client_socket(void)
{
	const char *env = getenv("FERRY_SOCKET");

	if (!sock_path[0]) {
		if (env && *env)
			snprintf(sock_path, sizeof sock_path, "%s", env);
		else
			snprintf(sock_path, sizeof sock_path, "%.200s/ferryd.sock", ferry_run_dir());
	}
	return sock_path;
}

int client_open(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *p = client_socket();
	int fd;

	if (strlen(p) >= sizeof sa.sun_path) {
		cli_error("socket path too long: %s", p);
		return -1;
	}
	strcpy(sa.sun_path, p);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		cli_error("cannot reach ferryd at %s: %s (is ferryd running? --socket PATH or "
			  "FERRY_SOCKET selects another)", p, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

void client_close(int fd)
{
	if (fd >= 0)
		close(fd);
}

json_t *client_call(int fd, json_t *req)
{
	char *text = json_dumps(req, JSON_COMPACT), *buf = NULL;
	size_t len = 0, cap = 0;
	json_error_t je;
	json_t *reply;

	json_decref(req);
	if (!text)
		return NULL;
	len = strlen(text);
	text[len] = '\n';
	for (size_t off = 0; off < len + 1;) {
		ssize_t w = send(fd, text + off, len + 1 - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			cli_error("sending to ferryd: %s", strerror(errno));
			free(text);
			return NULL;
		}
		off += (size_t)w;
	}
	free(text);
	len = 0;
	for (;;) {
		ssize_t n;

		if (len == cap) {
			char *nb;

			cap = cap ? cap * 2 : 4096;
			if (cap > REPLY_MAX || !(nb = realloc(buf, cap))) {
				cli_error("reply from ferryd too long");
				free(buf);
				return NULL;
			}
			buf = nb;
		}
		n = recv(fd, buf + len, cap - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			cli_error("ferryd closed the connection%s%s", n ? ": " : "",
				n ? strerror(errno) : "");
			free(buf);
			return NULL;
		}
		len += (size_t)n;
		if (buf[len - 1] == '\n')
			break;
	}
	reply = json_loadb(buf, len, 0, &je);
	free(buf);
	if (!reply || !json_is_object(reply)) {
		cli_error("malformed reply from ferryd");
		json_decref(reply);
		return NULL;
	}
	return reply;
}

json_t *client_call1(json_t *req)
{
	int fd = client_open();
	json_t *r;

	if (fd < 0) {
		json_decref(req);
		return NULL;
	}
	r = client_call(fd, req);
	client_close(fd);
	return r;
}

bool client_ok(json_t *reply)
{
	if (!reply)
		return false;
	if (json_is_true(json_object_get(reply, "ok")))
		return true;
	cli_error("%s", json_string_value(json_object_get(reply, "error"))
					       ? json_string_value(json_object_get(reply, "error"))
					       : "request failed");
	json_decref(reply);
	return false;
}

void print_json(json_t *o)
{
	json_dumpf(o, stdout, JSON_COMPACT);
	putchar('\n');
	fflush(stdout);
}

const char *fmt_bytes(double b, char *buf, size_t len)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	unsigned i = 0;

	while (b >= 1024 && i < 4) {
		b /= 1024;
		i++;
	}
	snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", b, u[i]);
	return buf;
}
