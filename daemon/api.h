/* SPDX-License-Identifier: Apache-2.0 */
/*
 * api.h — ferryd's control API handlers (docs/ferryd.md).
 */
#ifndef FERRY_DAEMON_API_H
#define FERRY_DAEMON_API_H

#include <jansson.h>

/* Handle one request that passed api_check (api/api.h): the reply object.
 * May block when the op is marked slow. */
json_t *api_handle(json_t *req);
/* Handle req (taken) on a task thread of its own; done(reply, arg) runs on
 * the loop thread with the reply (done's to free). 0, or -errno if no
 * thread could start (nothing is called; req is still the caller's). */
int api_run_async(json_t *req, void (*done)(json_t *reply, void *arg), void *arg);

#endif
