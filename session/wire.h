/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wire.h — what two ferryd say to each other on a connection, around the
 * stream itself (docs/migration-protocol.md): the session's frames, HELLOs,
 * capabilities and control messages. session.h builds the session on it.
 *
 * 0. Every connection is a channel (transport/): TLS with mutual
 *    authentication unless both hosts run insecure-plaintext. Nothing below
 *    is said before the channel is up.
 * 1. The connecting side sends a HELLO frame; the listener answers with one
 *    frame. A frame is the 16-byte header {"FERRYMIG", le32 version, le32
 *    length} and a JSON object of that length. The header is the same in
 *    every version, so a peer of another version still reads why it was
 *    refused.
 * 2. A "migrate" HELLO offers codecs and a number of channels; the answer
 *    gives the agreed ones and, for more than one channel, a token. The
 *    source then opens each further channel with a "channel" HELLO (job,
 *    index, token). The first connection is channel 0 and carries the
 *    control messages.
 * 3. The source writes one ferry stream (kind MIGRATION) on every channel,
 *    each frame always on the same channel (docs/migration-protocol.md); the
 *    destination answers on channel 0 with 16-byte control messages:
 *    HEARTBEAT (throughout, and when a pass has been applied on every
 *    channel: the source pauses the guest only once its last pass is),
 *    ABORT (with an errno), READY; the source sends GO after END on every
 *    channel; the destination answers RUNNING.
 */
#ifndef FERRY_SESSION_WIRE_H
#define FERRY_SESSION_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "transport/chan.h"

#define WIRE_PROTO_VERSION 2
#define WIRE_FRAME_MAGIC "FERRYMIG"
#define WIRE_FRAME_MAX 65536u /* JSON body */
#define WIRE_DEFAULT_PORT 7480
#define WIRE_ABORT_TEXT_MAX 512
#define WIRE_CHANNELS_MAX 64
#define WIRE_TOKEN_LEN 32 /* hex digits of a channel token */

struct wire_frame_hdr {
	char magic[8];
	uint32_t version; /* le */
	uint32_t len;     /* le, body bytes */
};
_Static_assert(sizeof(struct wire_frame_hdr) == 16, "wire size");

/* Check a received header: 0 and the host-order fields, or -EPROTO. */
int wire_frame_parse_hdr(const struct wire_frame_hdr *h, uint32_t *version, uint32_t *len);

/* Send obj as one frame of our version. 0 or -errno. */
int wire_send_frame(struct chan *c, json_t *obj);
/*
 * Receive one frame within timeout_ms: *out is the JSON object (caller
 * decrefs), *version the peer's. -ETIMEDOUT, -ECONNRESET, -EPROTO (bad
 * header or not a JSON object; err says which), -errno.
 */
int wire_recv_frame(struct chan *c, int timeout_ms, uint32_t *version, json_t **out, char *err,
		   size_t errlen);

/* A frame's body (len bytes) as a JSON object: 0 and *out (the caller
 * decrefs), or -EPROTO with err set. */
int wire_frame_body(const void *body, size_t len, json_t **out, char *err, size_t errlen);
/* A whole refusal frame {"ok": false, "error": why, "retry": retry} into
 * buf (for a listener that refuses before TLS, in plaintext, without a
 * channel): its length, or 0 if it does not fit in len. retry: the refusal
 * is about load, and the same connection may succeed later. */
size_t wire_frame_encode_refusal(void *buf, size_t len, const char *why, bool retry);

/* Capabilities, offered in a migrate HELLO and agreed in the answer (the
 * intersection). The zero page/extent encoding is always on. */
#define WIRE_CAP_LZ4 0x1u
#define WIRE_CAP_DELTA 0x2u
#define WIRE_CAPS_ALL (WIRE_CAP_LZ4 | WIRE_CAP_DELTA)
/* Not a codec: the source may switch to post-copy (the migration's own
 * request, never a configured codec). Agreed only with two or more
 * channels: the last is then the post-copy channel (docs/migration-
 * protocol.md), the others carry the stream. */
#define WIRE_CAP_POSTCOPY 0x4u

/* ["lz4","delta"] from a mask, and back (unknown names are ignored: a newer
 * peer may offer more). Parse: -EINVAL if not an array of strings. */
json_t *wire_caps_json(uint32_t caps);
int wire_caps_parse(const json_t *a, uint32_t *caps);
/* "lz4,delta" or "none" (config files, flags). 0 or -EINVAL. */
int wire_caps_from_text(const char *s, uint32_t *caps);

/* What a HELLO asks for. */
enum wire_op { WIRE_OP_MIGRATE = 1, WIRE_OP_RESOLVE = 2, WIRE_OP_CHANNEL = 3,
	       WIRE_OP_PROTECT = 4 /* as migrate, for a standby that stays paused */ };

struct wire_hello {
	enum wire_op op;
	char job[40];     /* the source's job id */
	char name[64];    /* the domain's name (migrate) */
	char config[512]; /* its hv config (migrate) */
	char from[256];   /* the source host's name, informational */
	uint32_t caps;    /* offered (migrate) */
	unsigned channels; /* offered (migrate), 1..WIRE_CHANNELS_MAX */
	unsigned peer_timeout_ms; /* migrate: the source's (0: not said); the
				   * destination heartbeats at a quarter of the
				   * smaller of it and its own */
	unsigned index;    /* channel: which one, 1..channels-1 */
	unsigned heartbeat_ms; /* protect: silence that counts as a lost peer */
	unsigned epoch_ms;     /* protect: the primary's epoch (informational) */
	bool fencing;          /* protect: the pair is fenced by the coordination
				* service (else --unsafe-no-fencing) */
	bool resync;           /* protect: the primary's daemon restarted; the
				* standby's job `job` keeps the copy it has until
				* this sync is whole (staged apart) */
	char token[WIRE_TOKEN_LEN + 1]; /* channel: from the destination's answer */
	bool resume;           /* migrate: reconnect to the paused post-copy of job
				* `job` (docs/migration-protocol.md §7) */
};

/* Build / validate a HELLO body. Parse: 0, or -EINVAL with err set. */
json_t *wire_hello_json(const struct wire_hello *h);
int wire_hello_parse(const json_t *o, struct wire_hello *out, char *err, size_t errlen);

/* Job ids and domain names on the wire are name_ok (common/util.h). */
/* WIRE_TOKEN_LEN lower-case hex digits. */
bool wire_valid_token(const char *s);

/* 16-byte control messages after the handshake. */
enum wire_msg {
	WIRE_READY = 1,     /* destination: all applied, journaled */
	WIRE_GO = 2,        /* source: the point of no return */
	WIRE_RUNNING = 3,   /* destination: resumed; arg = GO-to-resume ns */
	WIRE_HEARTBEAT = 4, /* destination: alive; arg = 0, or n when the first n
			    * passes have arrived and been applied on every channel */
	WIRE_ABORT = 5,     /* destination: giving up; arg = errno */
	/* Replication (docs/stream-format.md): */
	WIRE_CKPT_ACK = 6,  /* backup: epoch arg is applied whole, output of it may leave */
	/* Post-copy (after RUNNING; docs/migration-protocol.md): */
	WIRE_PC_REQ = 7,    /* destination: the guest waits for frame arg; send it
			    * on the post-copy channel (unless it is on its way) */
	WIRE_PC_DONE = 8,   /* destination: every frame is here (arg: how many came
			    * by demand); the source's copy may end */
	WIRE_MSG_MAX
};

int wire_send_msg(struct chan *c, uint32_t type, uint64_t arg);
/* ABORT with errno e and a reason (at most 512 bytes of it): sent without
 * blocking, best effort, as the last thing on the connection. */
void wire_send_abort(struct chan *c, int e, const char *text);
/* Read one message (blocking): 0, -ECONNRESET at end of data, -EPROTO. */
int wire_read_msg(struct chan *c, uint32_t *type, uint64_t *arg);
/* Validate a raw message: 0 and its fields, or -EPROTO. */
int wire_msg_parse(const void *buf16, uint32_t *type, uint64_t *arg);

#endif
