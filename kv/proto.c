/* SPDX-License-Identifier: Apache-2.0 */
/* proto.c — the kvstore protocol; see proto.h. */
#include "kv/proto.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

static const char *const op_names[KV_OP_MAX] = { "?", "hello", "put", "get", "delete", "append" };
static const char *const status_names[KV_STATUS_MAX] = {
	"ok", "not-found", "too-old", "bad-request", "no-space", "too-big", "unknown-client"
};

const char *kv_op_name(enum kv_op op)
{
	return (unsigned)op < KV_OP_MAX ? op_names[op] : "?";
}

const char *kv_status_name(enum kv_status st)
{
	return (unsigned)st < KV_STATUS_MAX ? status_names[st] : "?";
}

bool kv_status_applied(enum kv_op op, enum kv_status st)
{
	return st == KV_OK || (st == KV_NOT_FOUND && (op == KV_GET || op == KV_DELETE));
}

bool kv_status_not_applied(enum kv_status st)
{
	return st == KV_BAD_REQUEST || st == KV_NO_SPACE || st == KV_TOO_BIG ||
	       st == KV_UNKNOWN_CLIENT;
}

#define FAIL(...) \
	do { \
		snprintf(err, errlen, __VA_ARGS__); \
		return -EPROTO; \
	} while (0)

int kv_req_parse(const void *buf, size_t len, struct kv_req *out, size_t *used, char *err,
		 size_t errlen)
{
	struct kv_req_hdr h;
	size_t klen, vlen;
	const uint8_t *p = buf;

	/* A stranger is told as soon as its first 4 bytes are in. */
	if (len >= 4) {
		uint32_t m;

		memcpy(&m, p, 4);
		if (le32toh(m) != KV_REQ_MAGIC)
			FAIL("not a kvstore request (bad magic)");
	}
	if (len < sizeof h)
		return -EAGAIN;
	memcpy(&h, p, sizeof h);
	if (le32toh(h.magic) != KV_REQ_MAGIC)
		FAIL("not a kvstore request (bad magic)");
	if (h.op < KV_HELLO || h.op >= KV_OP_MAX)
		FAIL("unknown op %u", h.op);
	if (h.flags || h.reserved)
		FAIL("reserved bits set");
	klen = le16toh(h.key_len);
	vlen = le32toh(h.val_len);
	if (klen > KV_KEY_MAX)
		FAIL("key of %zu bytes: at most %d", klen, KV_KEY_MAX);
	if (vlen > KV_VAL_MAX)
		FAIL("value of %zu bytes: at most %d", vlen, KV_VAL_MAX);
	switch (h.op) {
	case KV_HELLO:
		if (klen || vlen != 4)
			FAIL("hello carries no key and a 4-byte window");
		break;
	case KV_GET:
	case KV_DELETE:
		if (!klen || vlen)
			FAIL("%s takes a key and no value", op_names[h.op]);
		break;
	default:
		if (!klen)
			FAIL("%s needs a key", op_names[h.op]);
	}
	if (len < sizeof h + klen + vlen)
		return -EAGAIN;
	memset(out, 0, sizeof *out);
	out->op = (enum kv_op)h.op;
	out->client = le64toh(h.client);
	out->seq = le64toh(h.seq);
	out->key = p + sizeof h;
	out->key_len = klen;
	out->val = p + sizeof h + klen;
	out->val_len = vlen;
	if (h.op == KV_HELLO) {
		uint32_t w;

		memcpy(&w, out->val, 4);
		out->window = le32toh(w);
		if (out->window < 1 || out->window > KV_WINDOW_MAX)
			FAIL("window %u: 1 to %d", out->window, KV_WINDOW_MAX);
		if (!out->client || !out->seq)
			FAIL("hello needs a client id and a sequence number above 0");
	} else if (!out->seq) {
		FAIL("sequence number 0");
	}
	*used = sizeof h + klen + vlen;
	return 0;
}

int kv_rep_parse(const void *buf, size_t len, struct kv_rep *out, size_t *used, char *err,
		 size_t errlen)
{
	struct kv_rep_hdr h;
	size_t vlen;

	if (len < sizeof h)
		return -EAGAIN;
	memcpy(&h, buf, sizeof h);
	if (le32toh(h.magic) != KV_REP_MAGIC)
		FAIL("not a kvstore reply (bad magic)");
	if (h.op < KV_HELLO || h.op >= KV_OP_MAX || h.status >= KV_STATUS_MAX || h.reserved ||
	    h.reserved2)
		FAIL("malformed reply header");
	vlen = le32toh(h.val_len);
	if (vlen > KV_VAL_MAX || (vlen && (h.op != KV_GET || h.status != KV_OK)))
		FAIL("reply with a value of %zu bytes", vlen);
	if (len < sizeof h + vlen)
		return -EAGAIN;
	out->op = (enum kv_op)h.op;
	out->status = (enum kv_status)h.status;
	out->seq = le64toh(h.seq);
	out->aux = le64toh(h.aux);
	out->val = (const uint8_t *)buf + sizeof h;
	out->val_len = vlen;
	*used = sizeof h + vlen;
	return 0;
}

void kv_req_hdr_make(struct kv_req_hdr *h, enum kv_op op, uint64_t client, uint64_t seq,
		     size_t key_len, size_t val_len)
{
	*h = (struct kv_req_hdr){ .magic = htole32(KV_REQ_MAGIC), .op = (uint8_t)op,
				  .key_len = htole16((uint16_t)key_len),
				  .val_len = htole32((uint32_t)val_len), .client = htole64(client),
				  .seq = htole64(seq) };
}

void kv_rep_hdr_make(struct kv_rep_hdr *h, enum kv_op op, enum kv_status st, uint64_t seq,
		     uint64_t aux, size_t val_len)
{
	*h = (struct kv_rep_hdr){ .magic = htole32(KV_REP_MAGIC), .op = (uint8_t)op,
				  .status = (uint8_t)st, .val_len = htole32((uint32_t)val_len),
				  .seq = htole64(seq), .aux = htole64(aux) };
}

size_t kv_req_make(void *buf, enum kv_op op, uint64_t client, uint64_t seq, const void *key,
		   size_t key_len, const void *val, size_t val_len)
{
	struct kv_req_hdr h;
	uint8_t *p = buf;

	kv_req_hdr_make(&h, op, client, seq, key_len, val_len);
	memcpy(p, &h, sizeof h);
	if (key_len)
		memcpy(p + sizeof h, key, key_len);
	if (val_len && val)
		memcpy(p + sizeof h + key_len, val, val_len);
	return sizeof h + key_len + val_len;
}
