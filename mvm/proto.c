/* SPDX-License-Identifier: Apache-2.0 */
/* proto.c — control message validation; see proto.h. */
#include "mvm/proto.h"

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mvm/context.h"

static const char *const names[MVM_MSG_TYPE_MAX] = {
	[MVM_HELLO] = "hello",		 [MVM_INFO] = "info",
	[MVM_GET_FDS] = "get-fds",	 [MVM_PAUSE] = "pause",
	[MVM_UNPAUSE] = "unpause",	 [MVM_THROTTLE] = "throttle",
	[MVM_LOGDIRTY] = "logdirty",	 [MVM_GET_CONTEXT] = "get-context",
	[MVM_SET_CONTEXT] = "set-context", [MVM_VERIFY] = "verify",
	[MVM_QUIT] = "quit",		 [MVM_PING] = "ping",
	[MVM_COMMIT] = "commit",	 [MVM_NET_ATTACH] = "net-attach",
	[MVM_OUTPUT] = "output",	 [MVM_NIC_INFO] = "nic-info",
	[MVM_GET_UFFD] = "get-uffd",
};

const char *mvm_msg_name(unsigned type)
{
	return type < MVM_MSG_TYPE_MAX && names[type] ? names[type] : "unknown";
}

/* 0 = no body; SIZE_MAX never happens. Variable bodies are marked by
 * body_exact() returning false. */
size_t mvm_req_body_max(unsigned type)
{
	switch (type) {
	case MVM_THROTTLE:
	case MVM_LOGDIRTY:
		return sizeof(struct mvm_u32);
	case MVM_SET_CONTEXT:
		return MVM_CONTEXT_MAX;
	case MVM_OUTPUT:
	case MVM_UNPAUSE:
		return sizeof(struct mvm_output);
	default:
		return 0;
	}
}

static int body_exact(unsigned type)
{
	return type != MVM_SET_CONTEXT;
}

/* A body of n bytes is what type takes: its size exactly, at most it for a
 * variable one, and none or all of it for UNPAUSE (its mark is optional). */
static bool body_ok(unsigned type, size_t n)
{
	size_t max = mvm_req_body_max(type);

	if (type == MVM_UNPAUSE)
		return n == 0 || n == max;
	return body_exact(type) ? n == max : n <= max;
}

#define FAIL(code, ...) \
	do { \
		snprintf(err, errlen, __VA_ARGS__); \
		return (code); \
	} while (0)

int mvm_req_parse(const void *buf, size_t len, int nfds, struct mvm_req *out, char *err,
		  size_t errlen)
{
	struct mvm_req_hdr h;
	size_t max;

	memset(out, 0, sizeof *out);
	if (len > MVM_MSG_MAX)
		FAIL(-EMSGSIZE, "oversized request (more than %u bytes)", MVM_MSG_MAX);
	if (len < sizeof h)
		FAIL(-EBADMSG, "truncated request: %zu bytes, header is %zu", len, sizeof h);
	memcpy(&h, buf, sizeof h);
	out->seq = le32toh(h.seq);
	out->type = le16toh(h.type);
	if (le32toh(h.magic) != MVM_REQ_MAGIC)
		FAIL(-EBADMSG, "bad magic 0x%08x", le32toh(h.magic));
	if (le16toh(h.version) != MVM_PROTO_VERSION)
		FAIL(-EPROTONOSUPPORT, "protocol version %u, runtime speaks %u",
		     le16toh(h.version), MVM_PROTO_VERSION);
	if (out->type == 0 || out->type >= MVM_MSG_TYPE_MAX)
		FAIL(-EOPNOTSUPP, "unknown request type %u", (unsigned)out->type);
	if (nfds > (out->type == MVM_NET_ATTACH))
		FAIL(-EBADMSG, "%s request carries %d file descriptors, expected %s",
		     mvm_msg_name(out->type), nfds, out->type == MVM_NET_ATTACH ? "at most one" : "none");
	if ((size_t)le32toh(h.body_len) != len - sizeof h)
		FAIL(-EBADMSG, "%s request: header says %u body bytes, packet has %zu",
		     mvm_msg_name(out->type), le32toh(h.body_len), len - sizeof h);
	max = mvm_req_body_max(out->type);
	if (!body_ok(out->type, len - sizeof h))
		FAIL(-EBADMSG, "%s request: body of %zu bytes, expected %s%zu",
		     mvm_msg_name(out->type), len - sizeof h,
		     out->type == MVM_UNPAUSE ? "0 or " : body_exact(out->type) ? "" : "at most ",
		     max);
	out->body = (const char *)buf + sizeof h;
	out->body_len = (uint32_t)(len - sizeof h);
	return 0;
}

int mvm_rep_parse(const void *buf, size_t len, uint16_t type, uint32_t seq, int32_t *status,
		  const void **body, uint32_t *body_len, char *err, size_t errlen)
{
	struct mvm_rep_hdr h;

	if (len > MVM_MSG_MAX)
		FAIL(-EMSGSIZE, "oversized reply");
	if (len < sizeof h)
		FAIL(-EBADMSG, "truncated reply: %zu bytes", len);
	memcpy(&h, buf, sizeof h);
	if (le32toh(h.magic) != MVM_REP_MAGIC || le16toh(h.version) != MVM_PROTO_VERSION)
		FAIL(-EBADMSG, "bad reply magic or version");
	if (le16toh(h.type) != type || le32toh(h.seq) != seq)
		FAIL(-EBADMSG, "reply to %s #%u, expected %s #%u", mvm_msg_name(le16toh(h.type)),
		     le32toh(h.seq), mvm_msg_name(type), seq);
	if ((size_t)le32toh(h.body_len) != len - sizeof h)
		FAIL(-EBADMSG, "reply length mismatch");
	*status = (int32_t)le32toh((uint32_t)h.status);
	*body = (const char *)buf + sizeof h;
	*body_len = (uint32_t)(len - sizeof h);
	return 0;
}
