/* SPDX-License-Identifier: Apache-2.0 */
/* io.c — file-descriptor sink and source; see io.h. */
#include "checkpoint/io.h"
#include "common/util.h"
#include "transport/chan.h"

#include <errno.h>
#include <limits.h>
#include <unistd.h>

int xsink_fd_writev(void *ctx, const struct iovec *iov, int n)
{
	return writev_full(*(int *)ctx, iov, n);
}

int xsink_chan_writev(void *ctx, const struct iovec *iov, int n)
{
	return chan_send(ctx, iov, n, CHAN_WAIT_DEFAULT);
}

int xsource_fd_read(void *ctx, void *buf, size_t len)
{
	int fd = *(int *)ctx;
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t r = read(fd, p + got, len - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return got ? -EIO : -ENODATA;
		got += (size_t)r;
	}
	return 0;
}
