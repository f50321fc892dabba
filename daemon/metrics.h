/* SPDX-License-Identifier: Apache-2.0 */
/*
 * metrics.h — ferryd's figures in Prometheus' text format (version 0.0.4),
 * served as GET /metrics by the remote API: names in base units (seconds,
 * bytes) with the ferry_ prefix, counters since ferryd started. The list
 * and what each means: docs/ferryd.md, "Metrics".
 */
#ifndef FERRY_DAEMON_METRICS_H
#define FERRY_DAEMON_METRICS_H

#include <stddef.h>

/* Start counting (job.h job_listen); once, at start-up. */
void metrics_init(void);
/* The remote API answered a request with status; any thread. */
void metrics_api_request(int status);
/* The whole exposition, malloc'd (caller frees), NULL if out of memory. */
char *metrics_render(void);

#endif
