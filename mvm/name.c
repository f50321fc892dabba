/* SPDX-License-Identifier: Apache-2.0 */
/* name.c — a microVM's name on this host; see name.h. */
#include "mvm/name.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "mvm/config.h"

int mvm_run_path(const char *name, const char *ext, char *path, size_t len, bool create)
{
	int n;

	if (!mvm_name_ok(name))
		return -EINVAL;
	n = snprintf(path, len, "%s/mvm", ferry_run_dir());
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	if (create) {
		int r = mkdir_p(path, 0700);
		if (r)
			return r;
	}
	n = snprintf(path, len, "%s/mvm/%s%s", ferry_run_dir(), name, ext);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int mvm_socket_path(const char *name, char *path, size_t len, bool create)
{
	return mvm_run_path(name, ".sock", path, len, create);
}

int mvm_name_lock(const char *name)
{
	char path[256];
	struct stat a, b;
	int fd, r = mvm_run_path(name, ".lock", path, sizeof path, true);

	if (r)
		return r;
	for (;;) {
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			return -errno;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			r = errno == EWOULDBLOCK ? -EEXIST : -errno;
			close(fd);
			return r;
		}
		/* The previous holder may have unlinked the file between our open
		 * and our flock: then the lock is on a dead inode; take it anew. */
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
		    a.st_ino == b.st_ino)
			return fd;
		close(fd);
	}
}

int mvm_name_claim(const char *name, int *lock_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[sizeof sa.sun_path + 64];
	int fd, lock, r;

	r = mvm_socket_path(name, path, sizeof path, true);
	if (r)
		return r;
	if (strlen(path) >= sizeof sa.sun_path)
		return log_error("%s: socket path too long", path), -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	lock = mvm_name_lock(name);
	if (lock < 0)
		return lock;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		goto fail;
	}
	/* We hold the lock: a socket already there is a dead runtime's. The
	 * directory is 0700; the mode is for whoever loosens it. */
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, 8) < 0) {
		r = -errno;
		log_error("%s: binding %s: %s", name, path, strerror(errno));
		close(fd);
		goto fail;
	}
	*lock_fd = lock;
	return fd;
fail:
	mvm_name_release(name, lock);
	return r;
}

void mvm_name_release(const char *name, int lock_fd)
{
	char path[256];

	if (mvm_socket_path(name, path, sizeof path, false) == 0)
		unlink(path);
	if (mvm_run_path(name, ".lock", path, sizeof path, false) == 0)
		unlink(path);
	close(lock_fd);
}

void mvm_name_tidy(const char *name)
{
	int lock = mvm_name_lock(name);

	if (lock >= 0)
		mvm_name_release(name, lock);
}
