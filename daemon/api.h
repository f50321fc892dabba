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

#endif
