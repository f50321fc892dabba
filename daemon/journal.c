/* journal.c — the state directory and its records; see journal.h. */
#include "daemon/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

int journal_open(const char *state_dir, char *err, size_t errlen)
{
	char path[512];
	int fd;

	for (const char *sub = "jobs"; sub; sub = strcmp(sub, "jobs") == 0 ? "vms" : NULL) {
		snprintf(path, sizeof path, "%s/%s", state_dir, sub);
		if (mkdir_p(path, 0700)) {
			snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
			return -errno;
		}
	}
	snprintf(path, sizeof path, "%s/ferryd.lock", state_dir);
	/* CLOEXEC: a runtime spawned from here must not hold it after us. */
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		snprintf(err, errlen, "%s is in use by another ferryd (%s is locked); "
			 "one ferryd per state directory", state_dir, path);
		close(fd);
		return e == EWOULDBLOCK ? -EBUSY : -e;
	}
	return 0; /* fd stays open: the lock is ours until we exit */
}

int journal_write(const char *dir, const char *name, json_t *o, bool durable)
{
	char tmp[512], path[512], *text = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
	size_t len;
	int fd, dfd, r = 0;

	if (!text)
		return -ENOMEM;
	len = strlen(text);
	text[len] = '\n'; /* json_dumps leaves room for the NUL we overwrite */
	snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
	} else {
		if (!(r = pio_full(fd, text, len + 1, 0, true)) && durable && fsync(fd) < 0)
			r = -errno;
		close(fd);
		if (!r && rename(tmp, path) < 0)
			r = -errno;
		if (r)
			unlink(tmp);
	}
	free(text);
	if (!r && durable && (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		if (fsync(dfd) < 0)
			r = -errno;
		close(dfd);
	}
	if (r)
		log_error("writing %s: %s", path, strerror(-r));
	return r;
}
