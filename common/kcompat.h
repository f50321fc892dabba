/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kcompat.h — Linux UAPI that Debian 12's kernel headers (6.1) lack.
 *
 * The microVM's dirty log needs userfaultfd's asynchronous write-protect mode
 * (UFFD_FEATURE_WP_ASYNC, Linux 6.7) and the PAGEMAP_SCAN ioctl (Linux 6.7).
 * Values are the kernel's ABI (include/uapi/linux/userfaultfd.h and fs.h);
 * they are defined here only when the system headers do not have them, so a
 * newer libc header wins and a mismatch fails to compile rather than at run time.
 */
#ifndef FERRY_KCOMPAT_H
#define FERRY_KCOMPAT_H

#include <linux/fs.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

_Static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg ABI");
_Static_assert(sizeof(struct page_region) == 24, "page_region ABI");

#endif
