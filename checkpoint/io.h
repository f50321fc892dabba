/* SPDX-License-Identifier: Apache-2.0 */
/*
 * io.h — the byte sink and source a stream is written to and read from.
 *
 * A file descriptor now; the transport channels (TCP, TLS, RDMA) plug in
 * later as other ops with the same contract. Both are blocking: writev takes
 * all of the iovecs or fails; read fills all of len or fails.
 */
#ifndef FERRY_CHECKPOINT_IO_H
#define FERRY_CHECKPOINT_IO_H

#include <stddef.h>
#include <sys/uio.h>

struct xsink {
	/* Write all of iov[0..n); 0 or -errno (-ENOSPC, -EPIPE, ...). */
	int (*writev)(void *ctx, const struct iovec *iov, int n);
	void *ctx;
};

struct xsource {
	/* Read exactly len bytes; 0, -ENODATA at a clean end (no byte read),
	 * -EIO if the data ends part-way, or -errno. */
	int (*read)(void *ctx, void *buf, size_t len);
	void *ctx;
};

/* Sink and source over a file descriptor; ctx points at the int fd. */
int xsink_fd_writev(void *ctx, const struct iovec *iov, int n);
int xsource_fd_read(void *ctx, void *buf, size_t len);
/* Sink over a channel (transport/chan.h); ctx is the struct chan *, each
 * write one chan_send with the channel's own timeout. */
int xsink_chan_writev(void *ctx, const struct iovec *iov, int n);

#endif
