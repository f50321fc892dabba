/* SPDX-License-Identifier: Apache-2.0 */
/* wire.c — the session's frames, HELLOs and control messages; see wire.h. */
#include "session/wire.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mtime.h"
#include "common/util.h"

#define MSG_MAGIC 0x47494d46u /* "FMIG" */

struct wire_msg_wire {
	uint32_t magic;
	uint32_t type;
	uint64_t arg;
};
_Static_assert(sizeof(struct wire_msg_wire) == 16, "wire size");

int wire_frame_parse_hdr(const struct wire_frame_hdr *h, uint32_t *version, uint32_t *len)
{
	if (memcmp(h->magic, WIRE_FRAME_MAGIC, sizeof h->magic) != 0)
		return -EPROTO;
	*version = le32toh(h->version);
	*len = le32toh(h->len);
	if (*len == 0 || *len > WIRE_FRAME_MAX)
		return -EPROTO;
	return 0;
}

int wire_send_frame(struct chan *c, json_t *obj)
{
	char *body = json_dumps(obj, JSON_COMPACT);
	struct wire_frame_hdr h;
	struct iovec v[2];
	size_t len;
	int r;

	if (!body)
		return -ENOMEM;
	len = strlen(body);
	if (len > WIRE_FRAME_MAX) {
		free(body);
		return -EMSGSIZE;
	}
	memcpy(h.magic, WIRE_FRAME_MAGIC, sizeof h.magic);
	h.version = htole32(WIRE_PROTO_VERSION);
	h.len = htole32((uint32_t)len);
	v[0] = (struct iovec){ &h, sizeof h };
	v[1] = (struct iovec){ body, len };
	r = chan_send(c, v, 2, CHAN_WAIT_DEFAULT);
	free(body);
	return r;
}

/* What a failed read of a frame means, in words. */
static void frame_read_error(const struct chan *c, int r, char *err, size_t errlen)
{
	if (r == -ETIMEDOUT)
		snprintf(err, errlen, "no answer in time");
	else if (c->err[0])
		snprintf(err, errlen, "%s", c->err);
	else
		snprintf(err, errlen, "%s", r == -ENODATA || r == -ECONNRESET
						 ? "the connection closed" : strerror(-r));
}

/* Milliseconds left to deadline, at least 1 (0 would mean "do not wait"). */
static int ms_left(uint64_t deadline)
{
	uint64_t now = mono_ns();

	return now >= deadline ? 1 : (int)((deadline - now) / NSEC_PER_MSEC) + 1;
}

int wire_recv_frame(struct chan *c, int timeout_ms, uint32_t *version, json_t **out, char *err,
		   size_t errlen)
{
	uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * NSEC_PER_MSEC;
	struct wire_frame_hdr h;
	uint32_t len;
	char *body;
	int r;

	*out = NULL;
	if ((r = chan_recv(c, &h, sizeof h, ms_left(deadline)))) {
		frame_read_error(c, r, err, errlen);
		return r == -ENODATA ? -ECONNRESET : r;
	}
	if (wire_frame_parse_hdr(&h, version, &len)) {
		snprintf(err, errlen, "the peer does not speak the ferry migration protocol");
		return -EPROTO;
	}
	if (!(body = malloc(len)))
		return -ENOMEM;
	if ((r = chan_recv(c, body, len, ms_left(deadline)))) {
		frame_read_error(c, r, err, errlen);
		free(body);
		return r == -ENODATA ? -ECONNRESET : r;
	}
	r = wire_frame_body(body, len, out, err, errlen);
	free(body);
	return r;
}

int wire_frame_body(const void *body, size_t len, json_t **out, char *err, size_t errlen)
{
	json_error_t je;

	*out = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!*out || !json_is_object(*out)) {
		snprintf(err, errlen, "malformed handshake frame: %s",
			 *out ? "not a JSON object" : je.text);
		json_decref(*out);
		*out = NULL;
		return -EPROTO;
	}
	return 0;
}

size_t wire_frame_encode_refusal(void *buf, size_t len, const char *why, bool retry)
{
	json_t *o = json_pack("{s:b, s:s, s:b}", "ok", 0, "error", why, "retry", retry);
	struct wire_frame_hdr h;
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	size_t n = body ? strlen(body) : 0;

	json_decref(o);
	if (!body || sizeof h + n > len) {
		free(body);
		return 0;
	}
	memcpy(h.magic, WIRE_FRAME_MAGIC, sizeof h.magic);
	h.version = htole32(WIRE_PROTO_VERSION);
	h.len = htole32((uint32_t)n);
	memcpy(buf, &h, sizeof h);
	memcpy((char *)buf + sizeof h, body, n);
	free(body);
	return sizeof h + n;
}

static const struct {
	const char *name;
	uint32_t bit;
} cap_names[] = { { "lz4", WIRE_CAP_LZ4 }, { "delta", WIRE_CAP_DELTA },
		  { "postcopy", WIRE_CAP_POSTCOPY } };

json_t *wire_caps_json(uint32_t caps)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < sizeof cap_names / sizeof cap_names[0]; i++)
		if (caps & cap_names[i].bit)
			json_array_append_new(a, json_string(cap_names[i].name));
	return a;
}

int wire_caps_parse(const json_t *a, uint32_t *caps)
{
	const json_t *v;
	size_t k;

	*caps = 0;
	if (!json_is_array(a))
		return -EINVAL;
	json_array_foreach(a, k, v) {
		if (!json_is_string(v))
			return -EINVAL;
		for (size_t i = 0; i < sizeof cap_names / sizeof cap_names[0]; i++)
			if (strcmp(json_string_value(v), cap_names[i].name) == 0)
				*caps |= cap_names[i].bit;
	}
	return 0;
}

int wire_caps_from_text(const char *s, uint32_t *caps)
{
	*caps = 0;
	if (strcmp(s, "none") == 0)
		return 0;
	while (*s) {
		size_t n = strcspn(s, ","), i;

		for (i = 0; i < sizeof cap_names / sizeof cap_names[0]; i++)
			if (strlen(cap_names[i].name) == n && !strncmp(s, cap_names[i].name, n))
				break;
		if (i == sizeof cap_names / sizeof cap_names[0] ||
		    cap_names[i].bit == WIRE_CAP_POSTCOPY) /* not a codec */
			return -EINVAL;
		*caps |= cap_names[i].bit;
		s += n;
		if (*s == ',' && *++s == '\0')
			return -EINVAL;
	}
	return 0;
}

json_t *wire_hello_json(const struct wire_hello *h)
{
	if (h->op == WIRE_OP_RESOLVE)
		return json_pack("{s:s, s:s, s:s}", "op", "resolve", "job", h->job, "from",
				 h->from);
	if (h->op == WIRE_OP_CHANNEL)
		return json_pack("{s:s, s:s, s:s, s:I, s:s}", "op", "channel", "job", h->job,
				 "from", h->from, "index", (json_int_t)h->index, "token", h->token);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:I}", "op",
			      h->op == WIRE_OP_PROTECT ? "protect" : "migrate", "job",
			      h->job, "name", h->name, "config", h->config, "from", h->from,
			      "caps", wire_caps_json(h->caps), "channels", (json_int_t)h->channels);

	if (o && h->peer_timeout_ms)
		json_object_set_new(o, "peer_timeout_ms", json_integer(h->peer_timeout_ms));
	if (o && h->op == WIRE_OP_MIGRATE && h->resume)
		json_object_set_new(o, "resume", json_true());
	if (o && h->op == WIRE_OP_PROTECT) {
		json_object_set_new(o, "heartbeat_ms", json_integer(h->heartbeat_ms));
		json_object_set_new(o, "epoch_ms", json_integer(h->epoch_ms));
		json_object_set_new(o, "fencing", json_boolean(h->fencing));
		if (h->resync)
			json_object_set_new(o, "resync", json_true());
	}
	return o;
}

/* Integer member key of o in [min, max] into *dst; required, or optional
 * (then 1). */
static int get_count(const json_t *o, const char *key, unsigned min, unsigned max,
		     bool required, unsigned *dst, char *err, size_t errlen)
{
	const json_t *v = json_object_get(o, key);

	*dst = 1;
	if (!v && !required)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)min ||
	    json_integer_value(v) > (json_int_t)max) {
		snprintf(err, errlen, "HELLO \"%s\" is not an integer from %u to %u", key, min,
			 max);
		return -EINVAL;
	}
	*dst = (unsigned)json_integer_value(v);
	return 0;
}

bool wire_valid_token(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");

	return n == WIRE_TOKEN_LEN && s[n] == '\0';
}

/* Copy string member key of o into dst[max]; required or optional. */
static int get_str(const json_t *o, const char *key, char *dst, size_t max, bool required,
		   char *err, size_t errlen)
{
	const json_t *v = json_object_get(o, key);

	dst[0] = '\0';
	if (!v) {
		if (!required)
			return 0;
		snprintf(err, errlen, "HELLO lacks \"%s\"", key);
		return -EINVAL;
	}
	if (!json_is_string(v) || json_string_length(v) >= max ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(err, errlen, "HELLO \"%s\" is not a string of under %zu bytes", key, max);
		return -EINVAL;
	}
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

int wire_hello_parse(const json_t *o, struct wire_hello *out, char *err, size_t errlen)
{
	char op[16];
	int r;

	memset(out, 0, sizeof *out);
	if ((r = get_str(o, "op", op, sizeof op, true, err, errlen)))
		return r;
	if (strcmp(op, "migrate") == 0) {
		out->op = WIRE_OP_MIGRATE;
	} else if (strcmp(op, "resolve") == 0) {
		out->op = WIRE_OP_RESOLVE;
	} else if (strcmp(op, "channel") == 0) {
		out->op = WIRE_OP_CHANNEL;
	} else if (strcmp(op, "protect") == 0) {
		out->op = WIRE_OP_PROTECT;
	} else {
		snprintf(err, errlen, "unknown HELLO op \"%s\"", op);
		return -EINVAL;
	}
	if ((r = get_str(o, "job", out->job, sizeof out->job, true, err, errlen)) ||
	    (r = get_str(o, "from", out->from, sizeof out->from, false, err, errlen)))
		return r;
	if (!name_ok(out->job, sizeof out->job)) {
		snprintf(err, errlen, "HELLO job id is not valid");
		return -EINVAL;
	}
	if (out->op == WIRE_OP_RESOLVE)
		return 0;
	if (out->op == WIRE_OP_CHANNEL) {
		if ((r = get_count(o, "index", 1, WIRE_CHANNELS_MAX - 1, true, &out->index, err,
				   errlen)) ||
		    (r = get_str(o, "token", out->token, sizeof out->token, true, err, errlen)))
			return r;
		if (!wire_valid_token(out->token)) {
			snprintf(err, errlen, "HELLO token is not valid");
			return -EINVAL;
		}
		return 0;
	}
	if ((r = get_count(o, "channels", 1, WIRE_CHANNELS_MAX, false, &out->channels, err,
			   errlen)))
		return r;
	if (json_object_get(o, "peer_timeout_ms") &&
	    (r = get_count(o, "peer_timeout_ms", 100, 3600000, true, &out->peer_timeout_ms, err,
			   errlen)))
		return r;
	if ((r = get_str(o, "name", out->name, sizeof out->name, true, err, errlen)) ||
	    (r = get_str(o, "config", out->config, sizeof out->config, true, err, errlen)))
		return r;
	if (out->op == WIRE_OP_MIGRATE && json_object_get(o, "resume")) {
		if (!json_is_boolean(json_object_get(o, "resume"))) {
			snprintf(err, errlen, "HELLO \"resume\" is not a boolean");
			return -EINVAL;
		}
		out->resume = json_is_true(json_object_get(o, "resume"));
	}
	if (out->op == WIRE_OP_PROTECT) {
		const json_t *f = json_object_get(o, "fencing");

		if ((r = get_count(o, "heartbeat_ms", 20, 600000, true, &out->heartbeat_ms, err,
				   errlen)) ||
		    (r = get_count(o, "epoch_ms", 1, 60000, true, &out->epoch_ms, err, errlen)))
			return r;
		if (!json_is_boolean(f)) {
			snprintf(err, errlen, "HELLO \"fencing\" is not a boolean");
			return -EINVAL;
		}
		out->fencing = json_is_true(f);
		f = json_object_get(o, "resync");
		if (f && !json_is_boolean(f)) {
			snprintf(err, errlen, "HELLO \"resync\" is not a boolean");
			return -EINVAL;
		}
		out->resync = json_is_true(f);
	}
	/* No "caps": a peer that offers nothing beyond zero pages. */
	if (json_object_get(o, "caps") && wire_caps_parse(json_object_get(o, "caps"), &out->caps)) {
		snprintf(err, errlen, "HELLO \"caps\" is not an array of strings");
		return -EINVAL;
	}
	if (!name_ok(out->name, sizeof out->name)) {
		snprintf(err, errlen, "HELLO domain name \"%s\" is not valid", out->name);
		return -EINVAL;
	}
	return 0;
}

int wire_send_msg(struct chan *c, uint32_t type, uint64_t arg)
{
	struct wire_msg_wire m = { htole32(MSG_MAGIC), htole32(type), htole64(arg) };
	struct iovec v = { &m, sizeof m };

	return chan_send(c, &v, 1, CHAN_WAIT_DEFAULT);
}

void wire_send_abort(struct chan *c, int e, const char *text)
{
	size_t len = strnlen(text, WIRE_ABORT_TEXT_MAX);
	struct wire_msg_wire m = { htole32(MSG_MAGIC), htole32(WIRE_ABORT),
				  htole64(((uint64_t)(uint32_t)e << 32) | len) };
	struct iovec v[2] = { { &m, sizeof m }, { (void *)text, len } };

	/* Best effort: the link may be gone or full; the source finds out anyway. */
	chan_send(c, v, 2, 0);
}

int wire_msg_parse(const void *buf16, uint32_t *type, uint64_t *arg)
{
	struct wire_msg_wire m;

	memcpy(&m, buf16, sizeof m);
	*type = le32toh(m.type);
	*arg = le64toh(m.arg);
	if (le32toh(m.magic) != MSG_MAGIC || *type < WIRE_READY || *type >= WIRE_MSG_MAX)
		return -EPROTO;
	return 0;
}

int wire_read_msg(struct chan *c, uint32_t *type, uint64_t *arg)
{
	struct wire_msg_wire m;
	int r = chan_recv(c, &m, sizeof m, CHAN_WAIT_DEFAULT);

	if (r)
		return r == -ENODATA ? -ECONNRESET : r;
	return wire_msg_parse(&m, type, arg);
}
