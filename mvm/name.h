/* SPDX-License-Identifier: Apache-2.0 */
/*
 * name.h — a microVM's name on this host: its files under RUN_DIR/mvm/ and
 * the claim that makes it one runtime's.
 *
 * NAME is claimed by an exclusive flock on NAME.lock, held for as long as
 * any fd of that open file stays open. ferryd takes the claim and binds the
 * control socket NAME.sock before it starts the runtime, and hands both to
 * it; the runtime holds them for life, so the kernel releases the claim
 * however the runtime ends. The runtime cannot remove its files (it runs
 * confined, without access to RUN_DIR): whoever sees it dead removes them
 * under the claim, and the next claimant replaces what is left.
 */
#ifndef FERRY_MVM_NAME_H
#define FERRY_MVM_NAME_H

#include <stdbool.h>
#include <stddef.h>

/* RUN_DIR/mvm/NAME<ext>, e.g. ".lock", ".log"; with create, make the
 * directory (0700). -EINVAL for a bad name. */
int mvm_run_path(const char *name, const char *ext, char *path, size_t len, bool create);
/* RUN_DIR/mvm/NAME.sock. */
int mvm_socket_path(const char *name, char *path, size_t len, bool create);

/* Take NAME's lock: its fd, or -EEXIST if a live runtime holds it. */
int mvm_name_lock(const char *name);
/* Claim NAME: its lock (*lock_fd) and its control socket, bound afresh and
 * listening (SOCK_SEQPACKET, 0600, non-blocking), whose fd is returned.
 * -EEXIST if NAME is taken. */
int mvm_name_claim(const char *name, int *lock_fd);
/* With the lock held: remove NAME's socket and lock file, then drop the lock. */
void mvm_name_release(const char *name, int lock_fd);
/* NAME's runtime is dead: remove its files unless NAME was claimed again. */
void mvm_name_tidy(const char *name);

#endif
