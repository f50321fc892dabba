/*
 * precopy.h — live pre-copy migration of one domain over one connection
 * (DESIGN.md §6): iteration 0 sends every frame, later iterations what the
 * dirty log reports, until the expected downtime is under the target; then
 * stop-and-copy, and the READY / GO / RUNNING commit.
 *
 * The connection is a connected stream socket (TCP now; the transport layer
 * plugs in later). The source writes one ferry stream (kind MIGRATION) and
 * then exchanges the commit messages below; the point of no return is the
 * source handing GO to the socket. Before it, any failure rolls back: the
 * source runs on, the destination discards its copy.
 *
 * Not here yet (issue 4): ferryd and its journal, heartbeats, TLS,
 * bandwidth limit, resolving a failure after GO.
 */
#ifndef FERRY_MIGRATE_PRECOPY_H
#define FERRY_MIGRATE_PRECOPY_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/codec.h"
#include "hv/hv.h"

enum noconv_policy { NOCONV_STOP, NOCONV_THROTTLE, NOCONV_ABORT };

struct migrate_opts {
	uint64_t downtime_ns;     /* target; default 300 ms */
	unsigned max_iters;       /* default 30 */
	enum noconv_policy on_no_converge;
	struct codec_opts codec;
	int timeout_ms;           /* for each commit message; default 30 s */
};

void migrate_opts_default(struct migrate_opts *o);

struct migrate_stats {
	uint64_t setup_ns, total_ns, downtime_ns, expected_downtime_ns;
	uint64_t bytes;           /* stream bytes sent */
	uint64_t pages[STREAM_ENC_MAX];
	uint64_t zero_frames;
	unsigned iterations;
	uint64_t dirty_rate;      /* pages/s in the last iteration */
	uint64_t throughput;      /* bytes/s over the pre-copy phase */
	unsigned throttle;        /* percent at the end */
	bool committed;           /* GO was sent */
};

/* Source side. d is open and running; on success it has been destroyed
 * (it runs on the destination). Returns 0 or -errno with a reason. */
int migrate_send(struct hv_domain *d, int sock, const struct migrate_opts *o,
		 struct migrate_stats *st, char *err, size_t errlen);

/* Destination side: create the domain from the stream (name overrides the
 * source's name if given), commit on GO. On success *out is the running
 * domain's handle. */
int migrate_recv(int sock, const char *name, int timeout_ms, struct hv_domain **out,
		 char *err, size_t errlen);

#endif
