/*
 * wire.h — what two ferryd say to each other on a migration connection,
 * around the stream itself (docs/migration-protocol.md).
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
#ifndef FERRY_MIGRATE_WIRE_H
#define FERRY_MIGRATE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "transport/chan.h"

#define MIG_PROTO_VERSION 2
#define MIG_FRAME_MAGIC "FERRYMIG"
#define MIG_FRAME_MAX 65536u /* JSON body */
#define MIG_DEFAULT_PORT 7480
#define MIG_ABORT_TEXT_MAX 512
#define MIG_CHANNELS_MAX 64
#define MIG_TOKEN_LEN 32 /* hex digits of a channel token */

struct mig_frame_hdr {
	char magic[8];
	uint32_t version; /* le */
	uint32_t len;     /* le, body bytes */
};
_Static_assert(sizeof(struct mig_frame_hdr) == 16, "wire size");

/* Check a received header: 0 and the host-order fields, or -EPROTO. */
int mig_frame_parse_hdr(const struct mig_frame_hdr *h, uint32_t *version, uint32_t *len);

/* Send obj as one frame of our version. 0 or -errno. */
int mig_send_frame(struct chan *c, json_t *obj);
/*
 * Receive one frame within timeout_ms: *out is the JSON object (caller
 * decrefs), *version the peer's. -ETIMEDOUT, -ECONNRESET, -EPROTO (bad
 * header or not a JSON object; err says which), -errno.
 */
int mig_recv_frame(struct chan *c, int timeout_ms, uint32_t *version, json_t **out, char *err,
		   size_t errlen);

/* Capabilities, offered in a migrate HELLO and agreed in the answer (the
 * intersection). The zero page/extent encoding is always on. */
#define MIG_CAP_LZ4 0x1u
#define MIG_CAP_DELTA 0x2u
#define MIG_CAPS_ALL (MIG_CAP_LZ4 | MIG_CAP_DELTA)

/* ["lz4","delta"] from a mask, and back (unknown names are ignored: a newer
 * peer may offer more). Parse: -EINVAL if not an array of strings. */
json_t *mig_caps_json(uint32_t caps);
int mig_caps_parse(const json_t *a, uint32_t *caps);
/* "lz4,delta" or "none" (config files, flags). 0 or -EINVAL. */
int mig_caps_from_text(const char *s, uint32_t *caps);

/* What a HELLO asks for. */
enum mig_op { MIG_OP_MIGRATE = 1, MIG_OP_RESOLVE = 2, MIG_OP_CHANNEL = 3 };

struct mig_hello {
	enum mig_op op;
	char job[40];     /* the source's job id */
	char name[64];    /* the domain's name (migrate) */
	char config[512]; /* its hv config (migrate) */
	char from[256];   /* the source host's name, informational */
	uint32_t caps;    /* offered (migrate) */
	unsigned channels; /* offered (migrate), 1..MIG_CHANNELS_MAX */
	unsigned peer_timeout_ms; /* migrate: the source's (0: not said); the
				   * destination heartbeats at a quarter of the
				   * smaller of it and its own */
	unsigned index;    /* channel: which one, 1..channels-1 */
	char token[MIG_TOKEN_LEN + 1]; /* channel: from the destination's answer */
};

/* Build / validate a HELLO body. Parse: 0, or -EINVAL with err set. */
json_t *mig_hello_json(const struct mig_hello *h);
int mig_hello_parse(const json_t *o, struct mig_hello *out, char *err, size_t errlen);

/* A job id and a domain name as the wire allows them: [A-Za-z0-9._-],
 * 1..max-1 characters, not starting with '.' or '-'. */
bool mig_valid_id(const char *s, size_t max);
/* MIG_TOKEN_LEN lower-case hex digits. */
bool mig_valid_token(const char *s);

/* 16-byte control messages after the handshake. */
enum mig_msg {
	MIG_READY = 1,     /* destination: all applied, journaled */
	MIG_GO = 2,        /* source: the point of no return */
	MIG_RUNNING = 3,   /* destination: resumed; arg = GO-to-resume ns */
	MIG_HEARTBEAT = 4, /* destination: alive; arg = 0, or n when the first n
			    * passes have arrived and been applied on every channel */
	MIG_ABORT = 5,     /* destination: giving up; arg = errno */
};

int mig_send_msg(struct chan *c, uint32_t type, uint64_t arg);
/* ABORT with errno e and a reason (at most 512 bytes of it): sent without
 * blocking, best effort, as the last thing on the connection. */
void mig_send_abort(struct chan *c, int e, const char *text);
/* Read one message (blocking): 0, -ECONNRESET at end of data, -EPROTO. */
int mig_read_msg(struct chan *c, uint32_t *type, uint64_t *arg);
/* Validate a raw message: 0 and its fields, or -EPROTO. */
int mig_msg_parse(const void *buf16, uint32_t *type, uint64_t *arg);

#endif
