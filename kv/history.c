/* SPDX-License-Identifier: Apache-2.0 */
/* history.c — chunks and history lines; see history.h. */
#include "kv/history.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define HEAD 32 /* "{" 16 ":" 8 ":" 4 "|" */

/* The filler byte at position i of (client, seq)'s chunk. */
static char filler(uint64_t client, uint32_t seq, size_t i)
{
	uint64_t z = client * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)seq << 20) ^ i;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return (char)('a' + (z ^ (z >> 31)) % 26);
}

void chunk_make(void *buf, uint64_t client, uint32_t seq, size_t len)
{
	char *p = buf, head[HEAD + 1];

	snprintf(head, sizeof head, "{%016" PRIx64 ":%08" PRIx32 ":%04zx|", client, seq, len);
	memcpy(p, head, HEAD);
	for (size_t i = HEAD; i + 1 < len; i++)
		p[i] = filler(client, seq, i);
	p[len - 1] = '}';
}

static bool hex(const char *p, int n, uint64_t *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		char c = p[i];
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
			     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16;

		if (d > 15)
			return false;
		*v = *v << 4 | d;
	}
	return true;
}

int chunk_parse(const void *val, size_t len, struct chunk_id *ids, int max)
{
	const char *p = val;
	size_t off = 0;
	int n = 0;

	while (off < len) {
		uint64_t client, seq, clen;

		if (len - off < HEAD || p[off] != '{' || p[off + 17] != ':' || p[off + 26] != ':' ||
		    p[off + 31] != '|' || !hex(p + off + 1, 16, &client) ||
		    !hex(p + off + 18, 8, &seq) || !hex(p + off + 27, 4, &clen) ||
		    clen < CHUNK_MIN || clen > len - off || p[off + clen - 1] != '}' || n == max)
			return -1;
		for (size_t i = HEAD; i + 1 < clen; i++)
			if (p[off + i] != filler(client, (uint32_t)seq, i))
				return -1;
		ids[n++] = (struct chunk_id){ client, (uint32_t)seq };
		off += clen;
	}
	return n;
}

void hist_write(FILE *f, const struct hist *h)
{
	fprintf(f, "%016" PRIx64 " %" PRIu64 " %s %s %u %c %s %" PRIu64 " %" PRIu64 " %" PRIu64 " ",
		h->client, h->seq, kv_op_name(h->op), h->key, h->len, h->outcome,
		kv_status_name(h->status), h->aux, h->start_ns, h->end_ns);
	if (h->nres < 0) {
		fputs("!", f);
	} else if (!h->nres) {
		fputs("-", f);
	} else {
		for (int i = 0; i < h->nres; i++)
			fprintf(f, "%s%016" PRIx64 ":%08" PRIx32, i ? "," : "", h->res[i].client,
				h->res[i].seq);
	}
	fputc('\n', f);
}

int hist_parse(const char *line, struct hist *h)
{
	char op[16], st[24], out, res[4096];
	int i;

	memset(h, 0, sizeof *h);
	if (sscanf(line, "%" SCNx64 " %" SCNu64 " %15s %63s %u %c %23s %" SCNu64 " %" SCNu64
		   " %" SCNu64 " %4095s", &h->client, &h->seq, op, h->key, &h->len, &out, st,
		   &h->aux, &h->start_ns, &h->end_ns, res) != 11)
		return -EINVAL;
	for (i = KV_HELLO; i < KV_OP_MAX && strcmp(kv_op_name(i), op); i++)
		;
	h->op = (enum kv_op)i;
	for (i = 0; i < KV_STATUS_MAX && strcmp(kv_status_name(i), st); i++)
		;
	h->status = (enum kv_status)i;
	if (h->op >= KV_OP_MAX || h->status >= KV_STATUS_MAX ||
	    (out != OUT_ACK && out != OUT_FAILED && out != OUT_UNKNOWN))
		return -EINVAL;
	h->outcome = (enum outcome)out;
	if (strcmp(res, "!") == 0) {
		h->nres = -1;
	} else if (strcmp(res, "-") != 0) {
		char *save = NULL, *tok;

		h->res = calloc(HIST_CHUNKS_MAX, sizeof *h->res);
		if (!h->res)
			return -ENOMEM;
		for (tok = strtok_r(res, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			uint64_t seq;

			if (h->nres == HIST_CHUNKS_MAX ||
			    sscanf(tok, "%" SCNx64 ":%" SCNx64, &h->res[h->nres].client, &seq) != 2)
				return -EINVAL;
			h->res[h->nres++].seq = (uint32_t)seq;
		}
	}
	return 0;
}
