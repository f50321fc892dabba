/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ram.c — guest RAM: a sealed memfd, mapped shared, registered with
 * userfaultfd for asynchronous write-protect (the kernel's dirty log).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/kcompat.h"
#include "common/log.h"
#include "mvm/runtime.h"

int mvm_ram_setup(struct mvm *m)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		/* MISSING_SHMEM: post-copy's holder of the fd registers
		 * missing-page faults on this memfd-backed range. */
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
			    UFFD_FEATURE_MISSING_SHMEM,
	};
	struct uffdio_register reg;
	size_t len = m->cfg.mem;

	m->memfd = memfd_create("ferry-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (m->memfd < 0)
		return log_error("%s: memfd_create: %s", m->name, strerror(errno)), -errno;
	if (ftruncate(m->memfd, (off_t)len) < 0)
		return log_error("%s: sizing guest RAM to %zu bytes: %s", m->name, len,
				 strerror(errno)), -errno;
	/* The owner checks these: the RAM can neither shrink under its reads
	 * nor grow, and nobody can change the seals. */
	if (fcntl(m->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return log_error("%s: sealing guest RAM: %s", m->name, strerror(errno)), -errno;
	m->ram = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, m->memfd, 0);
	if (m->ram == MAP_FAILED)
		return log_error("%s: mapping guest RAM: %s", m->name, strerror(errno)), -errno;
	/* Guest RAM is guest state: keep it out of core dumps. */
	madvise(m->ram, len, MADV_DONTDUMP);

	/* main() made one that sees kernel faults if it could (root), for
	 * post-copy. Else user mode only: all an unprivileged process gets
	 * unless vm.unprivileged_userfaultfd is set, and all the dirty log
	 * needs, since asynchronous write-protect resolves every fault itself,
	 * the kernel's own writes (the NIC's) included. */
	if (m->uffd < 0)
		m->uffd = (int)syscall(SYS_userfaultfd,
				       O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (m->uffd < 0)
		return log_error("%s: userfaultfd: %s", m->name, strerror(errno)), -errno;
	if (ioctl(m->uffd, UFFDIO_API, &api) < 0)
		return log_error("%s: userfaultfd async write-protect is not available "
				 "(needs Linux 6.7+): %s", m->name, strerror(errno)), -errno;
	memset(&reg, 0, sizeof reg);
	reg.range.start = (uintptr_t)m->ram;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_WP;
	if (ioctl(m->uffd, UFFDIO_REGISTER, &reg) < 0)
		return log_error("%s: registering guest RAM for write-protect: %s", m->name,
				 strerror(errno)), -errno;
	return 0;
}

/*
 * Logging on: write-protect all of guest RAM (holes get uffd-wp markers), so
 * that the next write to any page is recorded. Off: drop the protection so
 * that writes cost nothing.
 */
int mvm_ram_logdirty(struct mvm *m, bool on)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)m->ram, .len = m->cfg.mem },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	if (ioctl(m->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		int e = errno;
		log_error("%s: write-protecting guest RAM: %s", m->name, strerror(e));
		return -e;
	}
	m->logdirty = on;
	return 0;
}
