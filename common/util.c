/* SPDX-License-Identifier: Apache-2.0 */
/* util.c — see util.h. */
#include "common/util.h"

#include <ctype.h>
#include <limits.h>
#include <sys/uio.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_size(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: return -EINVAL;
	}
	if (*end && end[1] && !((end[1] == 'i' || end[1] == 'B') &&
				(!end[2] || (end[1] == 'i' && end[2] == 'B' && !end[3]))))
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	v <<= shift;
	if (v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int pio_full(int fd, void *buf, size_t len, off_t off, bool write)
{
	char *p = buf;

	while (len) {
		ssize_t n = write ? pwrite(fd, p, len, off) : pread(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static char run_dir[256];

void ferry_set_run_dir(const char *dir)
{
	snprintf(run_dir, sizeof run_dir, "%s", dir);
}

const char *ferry_run_dir(void)
{
	const char *env;

	if (run_dir[0])
		return run_dir;
	env = getenv("FERRY_RUN_DIR");
	return env && *env ? env : "/run/ferry";
}

int mkdir_p(const char *path, unsigned mode)
{
	char buf[512];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof buf)
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return -errno;
			*p = c;
			if (!c)
				break;
		}
	}
	return 0;
}

int parse_host_port(const char *s, unsigned defport, char *host, size_t hlen, char *port,
		    size_t plen)
{
	const char *colon;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || (end[1] && end[1] != ':') || (size_t)(end - s - 1) >= hlen)
			return -EINVAL;
		snprintf(host, hlen, "%.*s", (int)(end - s - 1), s + 1);
		colon = end[1] ? end + 1 : NULL;
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon)
			return -EINVAL; /* a bare IPv6 address needs brackets */
		if ((size_t)(colon ? colon - s : (long)strlen(s)) >= hlen)
			return -EINVAL;
		snprintf(host, hlen, "%.*s", (int)(colon ? colon - s : (long)strlen(s)), s);
	}
	if (colon) {
		uint64_t p;

		if (parse_u64(colon + 1, 1, 65535, &p))
			return -EINVAL;
		snprintf(port, plen, "%u", (unsigned)p);
	} else {
		snprintf(port, plen, "%u", defport);
	}
	return host[0] ? 0 : -EINVAL;
}

void iov_advance(struct iovec *iov, int n, int *i, size_t done)
{
	while (*i < n && done >= iov[*i].iov_len) {
		done -= iov[*i].iov_len;
		(*i)++;
	}
	if (*i < n) {
		iov[*i].iov_base = (char *)iov[*i].iov_base + done;
		iov[*i].iov_len -= done;
	}
}

bool name_ok(const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	if (n == 0 || n >= max || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

int writev_full(int fd, const struct iovec *iov_in, int n)
{
	struct iovec iov[IOV_MAX];

	if (n > IOV_MAX)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		iov[i] = iov_in[i];
	for (int i = 0; i < n;) {
		ssize_t w = writev(fd, iov + i, n - i);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		iov_advance(iov, n, &i, (size_t)w);
	}
	return 0;
}
