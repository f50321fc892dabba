/*
 * journal.h — ferryd's state directory: the lock that makes one ferryd its
 * owner, and records written as whole JSON files, atomically (a temporary
 * file renamed over the old one), durably (fsync of the file and the
 * directory) where asked.
 */
#ifndef FERRY_DAEMON_JOURNAL_H
#define FERRY_DAEMON_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/*
 * Own state_dir: create it and its jobs/ and vms/, then lock it
 * (STATE/ferryd.lock, flock, held until the process ends). -EBUSY with a
 * sentence in err if another process holds it: then nothing in it has been
 * read or changed.
 */
int journal_open(const char *state_dir, char *err, size_t errlen);

/*
 * Write o as dir/name atomically. durable: fsync the file before the rename
 * and the directory after it (0.6-2 ms here), for the points a crash must
 * not lose; otherwise the record survives a crash of ferryd, not of the
 * host. 0 or -errno (logged).
 */
int journal_write(const char *dir, const char *name, json_t *o, bool durable);

#endif
