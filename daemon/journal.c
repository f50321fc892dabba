/* SPDX-License-Identifier: Apache-2.0 */
/* journal.c — the state directory and its records; see journal.h. */
#include "daemon/journal.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>


#include "common/log.h"
#include "common/util.h"
#include "common/xxh.h"

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

/*
 * Write len bytes at buf as dir/name atomically: a temporary file renamed
 * over it; durable: the file fsync'd before the rename and the directory
 * after it. 0 or -errno.
 */
static int replace_file(const char *dir, const char *name, const void *buf, size_t len,
			bool durable)
{
	char tmp[512], path[512];
	int fd, dfd, r = 0;

	snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return -errno;
	if (!(r = pio_full(fd, (void *)buf, len, 0, true)) && durable && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (!r && rename(tmp, path) < 0)
		r = -errno;
	if (r) {
		unlink(tmp);
		return r;
	}
	if (durable && (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		if (fsync(dfd) < 0)
			r = -errno;
		close(dfd);
	}
	return r;
}

int journal_write(const char *dir, const char *name, json_t *o, bool durable)
{
	char *text = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
	size_t len;
	int r;

	if (!text)
		return -ENOMEM;
	len = strlen(text);
	text[len] = '\n'; /* json_dumps leaves room for the NUL we overwrite */
	r = replace_file(dir, name, text, len + 1, durable);
	free(text);
	if (r)
		log_error("writing %s/%s: %s", dir, name, strerror(-r));
	return r;
}

/* ---- slot files ---- */

#define SLOT_MAGIC "FERRYREC"
#define SLOT_VERSION 1
#define SLOT_MIN (16 * 1024)
#define SLOT_MAX (1024 * 1024)
#define FILE_MAX (2 * SLOT_MAX)

struct slot_hdr {
	char magic[8];
	uint32_t version;
	uint32_t len;
	uint64_t seq;
	uint64_t sum;
};
_Static_assert(sizeof(struct slot_hdr) == 32, "on-disk size");

static uint64_t slot_sum(uint64_t seq, uint32_t len, const void *text)
{
	uint64_t v[2] = { htole64(seq), htole64(len) };

	return XXH3_64bits_withSeed(text, len, XXH3_64bits(v, sizeof v));
}

/* The slot at p (size bytes): its seq, and its text in *text, *len; or 0. */
static uint64_t slot_valid(const unsigned char *p, size_t size, const char **text, size_t *len)
{
	struct slot_hdr h;
	uint32_t n;

	if (size < sizeof h)
		return 0;
	memcpy(&h, p, sizeof h);
	n = le32toh(h.len);
	if (memcmp(h.magic, SLOT_MAGIC, 8) || le32toh(h.version) != SLOT_VERSION || !h.seq ||
	    n > size - sizeof h || slot_sum(le64toh(h.seq), n, p + sizeof h) != le64toh(h.sum))
		return 0;
	*text = (const char *)p + sizeof h;
	*len = n;
	return le64toh(h.seq);
}

json_t *journal_parse(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	const char *text[2] = { 0 };
	size_t tlen[2] = { 0 };
	uint64_t seq[2] = { 0 };
	json_t *o = NULL;

	if (len < 8 || memcmp(p, SLOT_MAGIC, 8) != 0)
		return json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (len % 2 || len > FILE_MAX)
		return NULL;
	for (int i = 0; i < 2; i++)
		seq[i] = slot_valid(p + (size_t)i * (len / 2), len / 2, &text[i], &tlen[i]);
	/* The newer valid slot; the other if the newer one's text is not JSON. */
	for (int k = 0, i = seq[1] > seq[0]; k < 2 && !o; k++, i ^= 1)
		if (seq[i])
			o = json_loadb(text[i], tlen[i], JSON_REJECT_DUPLICATES, NULL);
	return o;
}

json_t *journal_load(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	json_t *o = NULL;
	struct stat st;
	void *buf;

	if (fd < 0)
		return NULL;
	if (!fstat(fd, &st) && st.st_size > 0 && st.st_size <= FILE_MAX &&
	    (buf = malloc((size_t)st.st_size))) {
		if (!pio_full(fd, buf, (size_t)st.st_size, 0, false))
			o = journal_parse(buf, (size_t)st.st_size);
		free(buf);
	}
	close(fd);
	return o;
}

/* Fill slot at buf (size bytes) with seq and text. */
static void slot_fill(unsigned char *buf, uint64_t seq, const char *text, size_t len)
{
	struct slot_hdr h = { .version = htole32(SLOT_VERSION), .len = htole32((uint32_t)len),
			      .seq = htole64(seq), .sum = htole64(slot_sum(seq, (uint32_t)len, text)) };

	memcpy(h.magic, SLOT_MAGIC, 8);
	memcpy(buf, &h, sizeof h);
	memcpy(buf + sizeof h, text, len);
}

/* Make dir/name anew: slot 0 holds text as seq, slot 1 is empty; durable. */
static int slots_create(const char *dir, const char *name, uint64_t seq, const char *text,
			size_t len)
{
	size_t slot = SLOT_MIN;
	unsigned char *buf;
	int r;

	while (slot < 2 * (len + sizeof(struct slot_hdr)))
		slot *= 2;
	if (slot > SLOT_MAX)
		return -EFBIG;
	if (!(buf = calloc(2, slot)))
		return -ENOMEM;
	slot_fill(buf, seq, text, len);
	r = replace_file(dir, name, buf, 2 * slot, true);
	free(buf);
	return r;
}

/*
 * Write text as record *seq + 1 into the slot of fd (an existing slot file)
 * that does not hold its newest valid record: a torn slot first, else the
 * older one. -EAGAIN if the file is not one to write into, or the text
 * does not fit (the caller makes it anew, with *seq as the highest seen).
 */
static int slots_update(int fd, const char *text, size_t len, bool durable, uint64_t *seq)
{
	uint64_t s[2], top = 0;
	unsigned char *buf;
	struct stat st;
	const char *t;
	size_t slot, n;
	int i, r;

	*seq = 0;
	if (fstat(fd, &st) < 0)
		return -errno;
	slot = (size_t)st.st_size / 2;
	if (st.st_size % 2 || slot < SLOT_MIN || slot > SLOT_MAX || !(buf = malloc(2 * slot)))
		return -EAGAIN;
	if ((r = pio_full(fd, buf, 2 * slot, 0, false))) {
		free(buf);
		return r;
	}
	for (i = 0; i < 2; i++) {
		struct slot_hdr h;

		memcpy(&h, buf + (size_t)i * slot, sizeof h);
		if (!memcmp(h.magic, SLOT_MAGIC, 8))
			top = MAX(top, le64toh(h.seq)); /* torn or not: later than it */
		s[i] = slot_valid(buf + (size_t)i * slot, slot, &t, &n);
	}
	*seq = top;
	if ((!s[0] && !s[1]) || len + sizeof(struct slot_hdr) > slot) {
		free(buf);
		return -EAGAIN;
	}
	i = s[0] > s[1]; /* the older, or a torn one (0): never the newest valid */
	slot_fill(buf, top + 1, text, len);
	r = pio_full(fd, buf, sizeof(struct slot_hdr) + len, (off_t)((size_t)i * slot), true);
	free(buf);
	if (!r && durable && fdatasync(fd) < 0)
		r = -errno;
	return r;
}

int journal_slots_write(const char *dir, const char *name, json_t *o, bool durable)
{
	char path[512], *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	uint64_t seq = 0;
	size_t len;
	int fd, r;

	if (!text)
		return -ENOMEM;
	len = strlen(text);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	if ((fd = open(path, O_RDWR | O_CLOEXEC)) >= 0) {
		r = slots_update(fd, text, len, durable, &seq);
		close(fd);
	} else {
		r = errno == ENOENT ? -EAGAIN : -errno;
	}
	if (r == -EAGAIN)
		r = slots_create(dir, name, seq + 1, text, len);
	free(text);
	if (r)
		log_error("writing %s: %s", path, strerror(-r));
	return r;
}
