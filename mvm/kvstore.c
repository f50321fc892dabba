/* SPDX-License-Identifier: Apache-2.0 */
/* kvstore.c — the key-value store in guest RAM; see kvstore.h. */
#include "mvm/kvstore.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "common/util.h"
#include "common/xxh.h"

#define PAGE 4096u
#define EMPTY 0
#define DELETED 1
#define ENTRY_USED 1
#define ENTRY_FREE 2
#define CLASS_MIN 512u

struct kv_hdr {
	uint64_t magic;
	uint32_t version, reserved;
	uint64_t entries, clients_used, requests, applied, retries, evictions;
	uint64_t bump;                  /* next unused byte of the arena */
	uint64_t free_head[KV_CLASSES]; /* free entries of each class (0: none) */
	uint64_t clock;                 /* requests seen: the clients' idle order */
};

struct kv_entry {
	uint32_t magic;
	uint16_t key_len;
	uint8_t class, state;
	uint32_t val_len;
	uint32_t reserved;
	uint64_t sum;  /* XXH3 of key and value, seeded with both lengths */
	uint64_t next; /* free list */
};
_Static_assert(sizeof(struct kv_entry) == 32, "guest layout");

struct kv_done {
	uint64_t seq, aux;
	uint8_t op, status;
	uint8_t pad[6];
};

struct kv_client {
	uint64_t id; /* 0: unused */
	uint64_t max_seq;
	uint64_t last_active;
	uint32_t window, reserved;
	struct kv_done done[KV_WINDOW_MAX];
};

#define NIC_SLOT_HDR PAGE

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

int kv_layout_of(const struct wl_config *c, uint64_t mem, struct kv_layout *l, char *err,
		 size_t errlen)
{
	uint64_t rest, b = 1;

	memset(l, 0, sizeof *l);
	l->nslots = c->conns;
	l->ring_bytes = c->ring_bytes;
	l->slot_bytes = NIC_SLOT_HDR + 2 * l->ring_bytes;
	l->nic_off = 0;
	l->store_off = PAGE + l->nslots * l->slot_bytes;
	l->client_off = l->store_off + PAGE;
	l->clients = c->kv_clients;
	l->index_off = align_up(l->client_off + l->clients * sizeof(struct kv_client), PAGE);
	if (l->index_off >= mem) {
		snprintf(err, errlen, "kvstore: %" PRIu64 " connections and %" PRIu64
			 " clients need more than %" PRIu64 " bytes of RAM", l->nslots, l->clients,
			 mem);
		return -EINVAL;
	}
	/* Buckets: a word each, and room for half as many entries of the
	 * smallest class, so that the table is at most half full. */
	rest = mem - l->index_off;
	while (b * 2 * (8 + CLASS_MIN / 2) <= rest)
		b *= 2;
	l->buckets = b;
	l->arena_off = align_up(l->index_off + b * 8, PAGE);
	l->arena_end = mem;
	if (b < 64 || l->arena_end < l->arena_off + 64 * 1024) {
		snprintf(err, errlen, "kvstore: too little RAM left for the store (%" PRIu64
			 " bytes)", rest);
		return -EINVAL;
	}
	return 0;
}

static struct kv_hdr *hdr(struct kv_store *s)
{
	return (struct kv_hdr *)(void *)(s->ram + s->l.store_off);
}

static uint64_t *bucket(struct kv_store *s, uint64_t i)
{
	return (uint64_t *)(void *)(s->ram + s->l.index_off) + i;
}

static struct kv_entry *entry(struct kv_store *s, uint64_t off)
{
	return (struct kv_entry *)(void *)(s->ram + off);
}

static struct kv_client *client_at(struct kv_store *s, uint64_t i)
{
	return (struct kv_client *)(void *)(s->ram + s->l.client_off) + i;
}

static uint64_t class_size(unsigned c)
{
	return (uint64_t)CLASS_MIN << c;
}

static uint64_t entry_sum(const void *kv, size_t klen, size_t vlen)
{
	return XXH3_64bits_withSeed(kv, klen + vlen, ((uint64_t)klen << 32) | vlen);
}

void kv_init(struct kv_store *s)
{
	struct kv_hdr *h = hdr(s);

	memset(h, 0, sizeof *h);
	h->magic = KV_STORE_MAGIC;
	h->version = 1;
	h->bump = s->l.arena_off;
}

/* The bucket of key: its index in *pos (the one to insert at if absent),
 * and whether it is there. */
static bool find(struct kv_store *s, const uint8_t *key, size_t klen, uint64_t *pos)
{
	uint64_t mask = s->l.buckets - 1, i = XXH3_64bits(key, klen) & mask, free_at = UINT64_MAX;

	for (uint64_t n = 0; n < s->l.buckets; n++, i = (i + 1) & mask) {
		uint64_t b = *bucket(s, i);
		struct kv_entry *e;

		if (b == EMPTY) {
			*pos = free_at != UINT64_MAX ? free_at : i;
			return false;
		}
		if (b == DELETED) {
			if (free_at == UINT64_MAX)
				free_at = i;
			continue;
		}
		e = entry(s, b);
		if (e->key_len == klen && memcmp(e + 1, key, klen) == 0) {
			*pos = i;
			return true;
		}
	}
	*pos = free_at; /* full of entries and tombstones */
	return false;
}

/* A free entry of class c: 0 if the arena is full. */
static uint64_t alloc(struct kv_store *s, unsigned c)
{
	struct kv_hdr *h = hdr(s);
	uint64_t off = h->free_head[c];

	if (off) {
		h->free_head[c] = entry(s, off)->next;
	} else {
		if (h->bump + class_size(c) > s->l.arena_end)
			return 0;
		off = h->bump;
		h->bump += class_size(c);
	}
	entry(s, off)->class = (uint8_t)c;
	return off;
}

static void release(struct kv_store *s, uint64_t off)
{
	struct kv_entry *e = entry(s, off);
	struct kv_hdr *h = hdr(s);

	e->state = ENTRY_FREE;
	e->next = h->free_head[e->class];
	h->free_head[e->class] = off;
}

static unsigned class_for(size_t klen, size_t vlen)
{
	unsigned c = 0;

	while (c + 1 < KV_CLASSES && class_size(c) < sizeof(struct kv_entry) + klen + vlen)
		c++;
	return c;
}

/* Write key and value into the entry at off and seal it. */
static void fill(struct kv_store *s, uint64_t off, const uint8_t *key, size_t klen,
		 const uint8_t *v1, size_t l1, const uint8_t *v2, size_t l2)
{
	struct kv_entry *e = entry(s, off);
	uint8_t *p = (uint8_t *)(e + 1);

	memcpy(p, key, klen);
	if (l1 && p + klen != v1)
		memmove(p + klen, v1, l1);
	memcpy(p + klen + l1, v2, l2);
	e->magic = KV_ENTRY_MAGIC;
	e->key_len = (uint16_t)klen;
	e->val_len = (uint32_t)(l1 + l2);
	e->state = ENTRY_USED;
	e->reserved = 0;
	e->next = 0;
	e->sum = entry_sum(p, klen, l1 + l2);
}

/* Set key to old ++ add (old: the entry's value when append, else empty). */
static enum kv_status store(struct kv_store *s, const uint8_t *key, size_t klen,
			    const uint8_t *add, size_t alen, bool append, uint64_t *len)
{
	uint64_t pos, off = 0, old;
	bool there = find(s, key, klen, &pos);
	size_t keep = 0;
	unsigned c;

	if (pos == UINT64_MAX)
		return KV_NO_SPACE;
	if (there) {
		old = *bucket(s, pos);
		keep = append ? entry(s, old)->val_len : 0;
	}
	if (keep + alen > KV_VAL_MAX)
		return KV_TOO_BIG;
	c = class_for(klen, keep + alen);
	if (there && entry(s, old)->class >= c) {
		/* In place: appending touches only the new bytes and the header. */
		fill(s, old, key, klen, (uint8_t *)(entry(s, old) + 1) + klen, keep, add, alen);
	} else {
		if (!(off = alloc(s, c)))
			return KV_NO_SPACE;
		fill(s, off, key, klen, there ? (uint8_t *)(entry(s, old) + 1) + klen : NULL, keep,
		     add, alen);
		if (there)
			release(s, old);
		else
			hdr(s)->entries++;
		*bucket(s, pos) = off;
	}
	*len = keep + alen;
	return KV_OK;
}

static enum kv_status delete(struct kv_store *s, const uint8_t *key, size_t klen)
{
	uint64_t pos;

	if (!find(s, key, klen, &pos))
		return KV_NOT_FOUND;
	release(s, *bucket(s, pos));
	*bucket(s, pos) = DELETED;
	hdr(s)->entries--;
	return KV_OK;
}

/* The record of client id: the connection's hint first, then a scan. */
static struct kv_client *client_find(struct kv_store *s, struct kv_conn *conn, uint64_t id)
{
	if (conn && conn->cidx < s->l.clients && client_at(s, conn->cidx)->id == id)
		return client_at(s, conn->cidx);
	for (uint64_t i = 0; i < s->l.clients; i++)
		if (client_at(s, i)->id == id) {
			if (conn)
				conn->cidx = (uint32_t)i;
			return client_at(s, i);
		}
	return NULL;
}

/* A record for a new client: an unused one, else the idlest one's. */
static struct kv_client *client_new(struct kv_store *s, uint64_t id, uint32_t window)
{
	struct kv_client *c = NULL, *idle = NULL;

	for (uint64_t i = 0; i < s->l.clients && !c; i++) {
		struct kv_client *k = client_at(s, i);

		if (!k->id)
			c = k;
		else if (!idle || k->last_active < idle->last_active)
			idle = k;
	}
	if (!c) {
		c = idle;
		hdr(s)->evictions++;
	} else {
		hdr(s)->clients_used++;
	}
	memset(c, 0, sizeof *c);
	c->id = id;
	c->window = window;
	return c;
}

static size_t reply(void *out, enum kv_op op, enum kv_status st, uint64_t seq, uint64_t aux,
		    const void *val, size_t vlen)
{
	struct kv_rep_hdr h;

	kv_rep_hdr_make(&h, op, st, seq, aux, vlen);
	memcpy(out, &h, sizeof h);
	if (vlen)
		memcpy((uint8_t *)out + sizeof h, val, vlen);
	return sizeof h + vlen;
}

static size_t hello(struct kv_store *s, struct kv_conn *conn, const struct kv_req *rq, void *out)
{
	struct kv_client *c = client_find(s, conn, rq->client);

	if (!c) {
		/* A client that says it sent requests before, whose record is
		 * gone: they may have been applied; never risk applying again. */
		if (rq->seq > 1)
			return reply(out, KV_HELLO, KV_UNKNOWN_CLIENT, rq->seq, 0, NULL, 0);
		c = client_new(s, rq->client, rq->window);
		conn->cidx = (uint32_t)(c - client_at(s, 0));
	}
	c->last_active = hdr(s)->clock;
	conn->client = rq->client;
	conn->window = c->window;
	conn->hello = 1;
	return reply(out, KV_HELLO, KV_OK, rq->seq, c->window, NULL, 0);
}

size_t kv_handle(struct kv_store *s, struct kv_conn *conn, const struct kv_req *rq, void *out)
{
	struct kv_hdr *h = hdr(s);
	struct kv_client *c;
	struct kv_done *d;
	enum kv_status st = KV_OK;
	uint64_t aux = 0, pos, len;

	h->clock++;
	h->requests++;
	if (rq->op == KV_HELLO)
		return hello(s, conn, rq, out);
	if (!conn->hello || conn->client != rq->client || !(c = client_find(s, conn, rq->client)))
		return reply(out, rq->op, KV_UNKNOWN_CLIENT, rq->seq, 0, NULL, 0);
	c->last_active = h->clock;
	if (rq->seq + c->window <= c->max_seq)
		return reply(out, rq->op, KV_TOO_OLD, rq->seq, 0, NULL, 0);
	if (rq->op == KV_GET) {
		if (!find(s, rq->key, rq->key_len, &pos))
			return reply(out, KV_GET, KV_NOT_FOUND, rq->seq, 0, NULL, 0);
		struct kv_entry *e = entry(s, *bucket(s, pos));

		return reply(out, KV_GET, KV_OK, rq->seq, e->val_len,
			     (uint8_t *)(e + 1) + e->key_len, e->val_len);
	}
	d = &c->done[rq->seq % c->window];
	if (d->seq == rq->seq) {
		/* A retry: the recorded outcome, not a second application. */
		h->retries++;
		return reply(out, (enum kv_op)d->op, (enum kv_status)d->status, rq->seq, d->aux, NULL,
			     0);
	}
	switch (rq->op) {
	case KV_PUT:
		st = store(s, rq->key, rq->key_len, rq->val, rq->val_len, false, &len);
		break;
	case KV_DELETE:
		st = delete(s, rq->key, rq->key_len);
		break;
	case KV_APPEND:
		if (s->drop_append) { /* test hook: acknowledged, not applied */
			st = KV_OK;
			len = rq->val_len;
		} else {
			st = store(s, rq->key, rq->key_len, rq->val, rq->val_len, true, &len);
			if (st == KV_OK && s->double_append) /* test hook: applied twice */
				store(s, rq->key, rq->key_len, rq->val, rq->val_len, true, &len);
		}
		aux = st == KV_OK ? len : 0;
		break;
	default:
		st = KV_BAD_REQUEST;
	}
	if (st == KV_OK)
		h->applied++;
	*d = (struct kv_done){ .seq = rq->seq, .aux = aux, .op = (uint8_t)rq->op,
			       .status = (uint8_t)st };
	if (rq->seq > c->max_seq)
		c->max_seq = rq->seq;
	return reply(out, rq->op, st, rq->seq, aux, NULL, 0);
}

void kv_stats(const struct kv_store *s, struct kv_stats *st)
{
	const struct kv_hdr *h = (const struct kv_hdr *)(const void *)(s->ram + s->l.store_off);

	*st = (struct kv_stats){ h->entries, h->clients_used, h->requests, h->applied, h->retries,
				 h->evictions, h->bump - s->l.arena_off };
}

/* ---- verify ---- */

#define BAD(...) \
	do { \
		snprintf(why, whylen, __VA_ARGS__); \
		r = 0; \
		goto out; \
	} while (0)

/* Read and check the entry at off: 0 and its key in key[KV_KEY_MAX] (and
 * its header), 1 if it is not a sound used entry (why set), or -errno. */
static int read_entry(const struct kv_layout *l, kv_read_fn read, void *ctx, uint64_t off,
		      struct kv_entry *e, uint8_t *kvbuf, char *why, size_t whylen)
{
	int r;

	if (off < l->arena_off || off + sizeof *e > l->arena_end || (off - l->arena_off) % CLASS_MIN) {
		snprintf(why, whylen, "entry offset %" PRIu64 " is outside the arena", off);
		return 1;
	}
	if ((r = read(ctx, off, e, sizeof *e)))
		return r;
	if (e->magic != KV_ENTRY_MAGIC || e->class >= KV_CLASSES || e->state != ENTRY_USED ||
	    e->key_len == 0 || e->key_len > KV_KEY_MAX || e->val_len > KV_VAL_MAX ||
	    sizeof *e + e->key_len + e->val_len > class_size(e->class) ||
	    off + class_size(e->class) > l->arena_end) {
		snprintf(why, whylen, "entry at %" PRIu64 " has a malformed header", off);
		return 1;
	}
	if ((r = read(ctx, off + sizeof *e, kvbuf, (size_t)e->key_len + e->val_len)))
		return r;
	if (entry_sum(kvbuf, e->key_len, e->val_len) != e->sum) {
		snprintf(why, whylen, "entry at %" PRIu64 ": checksum mismatch (key %.*s)", off,
			 (int)MIN(e->key_len, 64), (char *)kvbuf);
		return 1;
	}
	return 0;
}

/* The client table: one record per id; what each records lies in its window. */
static int verify_clients(const struct kv_layout *l, kv_read_fn read, void *ctx,
			  uint64_t *used, char *why, size_t whylen)
{
	struct kv_client *c = malloc(sizeof *c);
	uint64_t *ids = calloc(l->clients, sizeof *ids);
	int r = -ENOMEM;

	*used = 0;
	if (!c || !ids)
		goto out;
	for (uint64_t i = 0; i < l->clients; i++) {
		if ((r = read(ctx, l->client_off + i * sizeof *c, c, sizeof *c)))
			goto out;
		if (!c->id)
			continue;
		if (c->window < 1 || c->window > KV_WINDOW_MAX)
			BAD("client %016" PRIx64 ": window %u", c->id, c->window);
		for (uint64_t k = 0; k < *used; k++)
			if (ids[k] == c->id)
				BAD("client %016" PRIx64 " has two records", c->id);
		ids[(*used)++] = c->id;
		for (unsigned k = 0; k < c->window; k++) {
			const struct kv_done *d = &c->done[k];

			if (!d->seq)
				continue;
			if (d->seq % c->window != k || d->seq > c->max_seq ||
			    d->op < KV_PUT || d->op >= KV_OP_MAX || d->op == KV_GET ||
			    d->status >= KV_STATUS_MAX)
				BAD("client %016" PRIx64 ": record of seq %" PRIu64 " is inconsistent "
				    "(window %u, highest seq %" PRIu64 ")", c->id, d->seq, c->window,
				    c->max_seq);
		}
	}
	r = 0;
out:
	free(c);
	free(ids);
	return r;
}

int kv_verify(const struct kv_layout *l, kv_read_fn read, void *ctx, uint64_t *checked,
	      char *why, size_t whylen)
{
	uint8_t *seen = NULL, *kvbuf = malloc(KV_KEY_MAX + KV_VAL_MAX);
	uint64_t *bk = malloc(4096 * sizeof *bk), live = 0, clients;
	uint64_t nunits = (l->arena_end - l->arena_off) / CLASS_MIN;
	struct kv_hdr h;
	struct kv_entry e;
	char ewhy[160];
	int r = -ENOMEM;

	why[0] = '\0';
	*checked = 0;
	if (!kvbuf || !bk || !(seen = calloc(nunits / 8 + 1, 1)))
		goto out;
	if ((r = read(ctx, l->store_off, &h, sizeof h)))
		goto out;
	if (h.magic != KV_STORE_MAGIC || h.version != 1)
		BAD("no kvstore header in guest RAM");
	if (h.bump < l->arena_off || h.bump > l->arena_end || (h.bump - l->arena_off) % CLASS_MIN)
		BAD("arena pointer %" PRIu64 " out of bounds", h.bump);
	/* The index: every bucket's entry sound, reachable from its key's hash. */
	for (uint64_t i0 = 0; i0 < l->buckets; i0 += 4096) {
		uint64_t n = MIN((uint64_t)4096, l->buckets - i0);

		if ((r = read(ctx, l->index_off + i0 * 8, bk, n * 8)))
			goto out;
		for (uint64_t k = 0; k < n; k++) {
			uint64_t b = bk[k], home, unit;

			if (b == EMPTY || b == DELETED)
				continue;
			if ((r = read_entry(l, read, ctx, b, &e, kvbuf, ewhy, sizeof ewhy)) < 0)
				goto out;
			if (r)
				BAD("bucket %" PRIu64 ": %s", i0 + k, ewhy);
			unit = (b - l->arena_off) / CLASS_MIN;
			if (b + class_size(e.class) > h.bump)
				BAD("bucket %" PRIu64 ": entry beyond the arena pointer", i0 + k);
			if (seen[unit / 8] & (1u << unit % 8))
				BAD("entry at %" PRIu64 " is in the index twice", b);
			seen[unit / 8] |= (uint8_t)(1u << unit % 8);
			/* Its probe chain from home to here holds no empty bucket. */
			home = XXH3_64bits(kvbuf, e.key_len) & (l->buckets - 1);
			for (uint64_t p = home; p != i0 + k; p = (p + 1) & (l->buckets - 1)) {
				uint64_t w;

				if ((r = read(ctx, l->index_off + p * 8, &w, 8)))
					goto out;
				if (w == EMPTY)
					BAD("key %.*s sits at bucket %" PRIu64 ", beyond an empty bucket "
					    "on its probe chain", (int)MIN(e.key_len, 64), (char *)kvbuf,
					    i0 + k);
			}
			live++;
			(*checked)++;
		}
	}
	if (live != h.entries)
		BAD("the index holds %" PRIu64 " entries, the header counts %" PRIu64, live,
		    h.entries);
	/* The arena: every used entry is in the index; the rest are free. */
	for (uint64_t off = l->arena_off; off < h.bump;) {
		uint64_t unit = (off - l->arena_off) / CLASS_MIN;

		if ((r = read(ctx, off, &e, sizeof e)))
			goto out;
		if (e.magic != KV_ENTRY_MAGIC || e.class >= KV_CLASSES ||
		    (e.state != ENTRY_USED && e.state != ENTRY_FREE))
			BAD("arena at %" PRIu64 ": not an entry", off);
		if (e.state == ENTRY_USED && !(seen[unit / 8] & (1u << unit % 8)))
			BAD("entry at %" PRIu64 " is live but in no bucket (lost from the index)", off);
		if (e.state == ENTRY_FREE && (seen[unit / 8] & (1u << unit % 8)))
			BAD("entry at %" PRIu64 " is free but indexed", off);
		off += class_size(e.class);
	}
	/* Free lists: free entries of their class, no cycle. */
	for (unsigned c = 0; c < KV_CLASSES; c++) {
		uint64_t n = 0;

		for (uint64_t off = h.free_head[c]; off; off = e.next) {
			if (off < l->arena_off || off >= h.bump || ++n > nunits)
				BAD("free list %u is broken", c);
			if ((r = read(ctx, off, &e, sizeof e)))
				goto out;
			if (e.state != ENTRY_FREE || e.class != c)
				BAD("free list %u holds an entry that is not free", c);
		}
	}
	if ((r = verify_clients(l, read, ctx, &clients, why, whylen)) || why[0])
		goto out;
	if (clients != h.clients_used)
		BAD("%" PRIu64 " client records, the header counts %" PRIu64, clients, h.clients_used);
	r = 0;
out:
	free(seen);
	free(kvbuf);
	free(bk);
	return r;
}
