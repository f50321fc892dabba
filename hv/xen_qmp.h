/* SPDX-License-Identifier: Apache-2.0 */
/*
 * xen_qmp.h — one command to a Xen domain's device model (QEMU) over QMP.
 *
 * libxl starts QEMU for an HVM guest with a QMP socket at
 * XEN_RUN_DIR/qmp-libxl-DOMID; libxl itself connects to it per operation,
 * which is what this does too: connect, read the greeting, negotiate
 * capabilities, run one command, read its answer (skipping events), close.
 */
#ifndef FERRY_HV_XEN_QMP_H
#define FERRY_HV_XEN_QMP_H

#include <stddef.h>

#include <jansson.h>

/*
 * Run cmd with args (taken over; NULL for none) on the QMP socket at path,
 * waiting at most timeout_ms for everything. 0; -ECONNREFUSED / -ENOENT if
 * nothing listens; -ETIMEDOUT; -EPROTO for an answer that is no QMP, and
 * -EIO for a QMP error, with QEMU's description in err.
 */
int xen_qmp(const char *path, const char *cmd, json_t *args, int timeout_ms, char *err,
	    size_t errlen);

#endif
