/* SPDX-License-Identifier: Apache-2.0 */
/*
 * util.h — small helpers used everywhere.
 */
#ifndef FERRY_UTIL_H
#define FERRY_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))

/*
 * Parse a size such as "4096", "256K", "512M", "1G" (binary units) into
 * bytes. Returns -EINVAL on syntax errors and -ERANGE above max.
 */
int parse_size(const char *s, uint64_t max, uint64_t *out);

/* Parse a decimal unsigned integer in [min, max]. -EINVAL / -ERANGE. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* pread (or pwrite) exactly len bytes at off, retrying EINTR and short
 * transfers. 0, -EIO on EOF, or -errno. */
int pio_full(int fd, void *buf, size_t len, off_t off, bool write);

/* After a short write of done bytes of iov[*i..n): move *i past the pieces
 * written whole and trim the one written in part. */
void iov_advance(struct iovec *iov, int n, int *i, size_t done);
/* Write all of iov[0..n) to fd (n <= IOV_MAX), across short writes and
 * EINTR: 0 or -errno (-EINVAL if n > IOV_MAX). */
int writev_full(int fd, const struct iovec *iov, int n);

/* A name as ferry takes it for domains, jobs and hosts on the wire and on
 * disk: 1..max-1 of [A-Za-z0-9._-], not starting with '.' or '-' (so it is
 * a safe file name and never an option). */
bool name_ok(const char *s, size_t max);

/* Close an fd if it is >= 0 and set it to -1. */
void close_fd(int *fd);

/* The run directory (runtime sockets, pid files): set explicitly, else
 * $FERRY_RUN_DIR, else /run/ferry. */
void ferry_set_run_dir(const char *dir);
const char *ferry_run_dir(void);
/* "HOST:PORT", "[V6]:PORT" or "HOST" (then defport) into host and port
 * (decimal text); a bare IPv6 address needs brackets. 0 or -EINVAL. */
int parse_host_port(const char *s, unsigned defport, char *host, size_t hlen, char *port,
		    size_t plen);
/* mkdir -p with mode for the missing components. 0 or -errno. */
int mkdir_p(const char *path, unsigned mode);

#endif
