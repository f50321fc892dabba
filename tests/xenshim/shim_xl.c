/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shim_xl.c — the SHIM's libxenlight: the calls hv/xen.c makes, over shim
 * domains (shim.h), including a restore that reads the libxl v2 / libxc v2
 * stream as libxl_stream_read.c and xg_sr_restore.c do and refuses what they
 * refuse. Not Xen. libxl's pure data helpers (the _init/_dispose of its
 * types) are the real ones; these are the calls that need a hypervisor.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <xenctrl.h>
#include <libxl.h>
#include <libxl_utils.h>

#include "tests/xenshim/shim.h"

struct libxl__ctx {
	char host[PATH_MAX];
};

/* tools/libs/light/libxl.c: libxl_ctx_alloc; no hypervisor, no context. */
int libxl_ctx_alloc(libxl_ctx **pctx, int version, unsigned flags, xentoollog_logger *lg)
{
	const char *h = shim_host();

	(void)version, (void)flags, (void)lg;
	if (!h || !(*pctx = calloc(1, sizeof **pctx)))
		return ERROR_FAIL;
	snprintf((*pctx)->host, sizeof (*pctx)->host, "%s", h);
	return 0;
}

/* libxl.c: libxl_ctx_free (NULL is fine). */
int libxl_ctx_free(libxl_ctx *ctx)
{
	free(ctx);
	return 0;
}

/* tools/libs/light/libxl_utils.c: libxl_name_to_domid — ERROR_INVAL if no
 * domain has that name. */
int libxl_name_to_domid(libxl_ctx *ctx, const char *name, uint32_t *domid)
{
	return shim_dom_find(ctx->host, name, domid) ? ERROR_INVAL : 0;
}

/* libxl_utils.c: libxl_domid_to_name — NULL for no such domain. */
char *libxl_domid_to_name(libxl_ctx *ctx, uint32_t domid)
{
	struct shim_map m;
	char *n;

	if (shim_dom_map(ctx->host, domid, &m))
		return NULL;
	n = strdup(m.st->name);
	shim_dom_unmap(&m);
	return n;
}

static void fill_info(libxl_dominfo *di, const struct shim_dom *s)
{
	memcpy(di->uuid.uuid, s->uuid, 16);
	di->domid = s->domid;
	di->paused = s->pause_count > 0;
	di->running = !di->paused;
	di->dying = s->state == SHIM_DYING;
	di->max_memkb = di->current_memkb = s->max_memkb;
	di->cpu_time = s->cpu_time_ns;
	di->vcpu_max_id = s->vcpus - 1;
	di->vcpu_online = s->vcpus;
	di->domain_type = LIBXL_DOMAIN_TYPE_HVM;
}

/* libxl_domain.c: libxl_domain_info — ERROR_DOMAIN_NOTFOUND for a domid
 * that does not exist (it checks the domid xc_domain_getinfolist gives). */
int libxl_domain_info(libxl_ctx *ctx, libxl_dominfo *info_r, uint32_t domid)
{
	struct shim_map m;

	if (shim_dom_map(ctx->host, domid, &m))
		return ERROR_DOMAIN_NOTFOUND;
	if (m.st->magic != SHIM_MAGIC || m.st->state == SHIM_BUILDING) {
		shim_dom_unmap(&m);
		return ERROR_DOMAIN_NOTFOUND;
	}
	if (info_r)
		fill_info(info_r, m.st);
	shim_dom_unmap(&m);
	return 0;
}

struct lister {
	libxl_dominfo *a;
	int n, cap;
};

static int list_one(void *ctx, struct shim_map *m)
{
	struct lister *l = ctx;

	if (m->st->state != SHIM_LIVE || l->n == l->cap)
		return 0;
	libxl_dominfo_init(&l->a[l->n]);
	fill_info(&l->a[l->n++], m->st);
	return 0;
}

/* libxl_domain.c: libxl_list_domain — dom0 first, then every domain. */
libxl_dominfo *libxl_list_domain(libxl_ctx *ctx, int *nb_domain_out)
{
	struct lister l = { calloc(1024, sizeof(libxl_dominfo)), 1, 1024 };

	if (!l.a)
		return NULL;
	libxl_dominfo_init(&l.a[0]); /* dom0 */
	shim_dom_each(ctx->host, list_one, &l);
	*nb_domain_out = l.n;
	return l.a;
}

/* libxl_domain.c: libxl_domain_pause / unpause → xc_domain_pause /
 * unpause (counted pauses; xen/common/domain.c domain_pause_by_
 * systemcontroller waits until the vCPUs are descheduled). */
int libxl_domain_pause(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how)
{
	struct shim_map m;

	(void)ao_how;
	if (shim_dom_map(ctx->host, domid, &m))
		return ERROR_DOMAIN_NOTFOUND;
	__atomic_fetch_add(&m.st->pause_count, 1, __ATOMIC_ACQ_REL);
	shim_wait_parked(&m);
	shim_dom_unmap(&m);
	return 0;
}

/* libxl_domain.c: libxl_domain_unpause → xc_domain_unpause, which fails on
 * a domain with no toolstack pause to undo. */
int libxl_domain_unpause(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how)
{
	struct shim_map m;
	int r = 0;

	(void)ao_how;
	if (shim_dom_map(ctx->host, domid, &m))
		return ERROR_DOMAIN_NOTFOUND;
	if (m.st->pause_count == 0)
		r = ERROR_INVAL; /* do_domctl: -EINVAL, not paused */
	else
		__atomic_fetch_sub(&m.st->pause_count, 1, __ATOMIC_ACQ_REL);
	shim_dom_unmap(&m);
	return r;
}

/* libxl_domain.c: libxl_domain_rename — old_name must match, new_name be
 * free. */
int libxl_domain_rename(libxl_ctx *ctx, uint32_t domid, const char *old_name,
			const char *new_name)
{
	struct shim_map m;
	uint32_t other;
	int r = 0;

	if (!shim_dom_find(ctx->host, new_name, &other) && other != domid)
		return ERROR_INVAL;
	if (shim_dom_map(ctx->host, domid, &m))
		return ERROR_DOMAIN_NOTFOUND;
	if (old_name && strcmp(m.st->name, old_name))
		r = ERROR_INVAL;
	else
		snprintf(m.st->name, sizeof m.st->name, "%s", new_name);
	shim_dom_unmap(&m);
	return r;
}

/* libxl_domain.c: libxl_domain_destroy — the domain and its device model
 * go. */
int libxl_domain_destroy(libxl_ctx *ctx, uint32_t domid, const libxl_asyncop_how *ao_how)
{
	struct shim_map m;

	(void)ao_how;
	if (shim_dom_map(ctx->host, domid, &m))
		return ERROR_DOMAIN_NOTFOUND;
	shim_dom_unmap(&m);
	shim_dom_remove(ctx->host, domid);
	return 0;
}

/* ---- the configuration: the fields the shim keeps, in libxl's JSON keys
 * (libxl_types.idl: c_info.type/name, b_info.max_vcpus/max_memkb/
 * target_memkb, disks[].readwrite); libxl's generated _to_json/_from_json
 * keep every field, the shim these. ---- */

char *libxl_domain_config_to_json(libxl_ctx *ctx, libxl_domain_config *p)
{
	json_t *o = json_pack("{s:{s:s, s:s?}, s:{s:i, s:I, s:I}}", "c_info", "type", "hvm", "name",
			      p->c_info.name, "b_info", "max_vcpus", p->b_info.max_vcpus,
			      "max_memkb", (json_int_t)p->b_info.max_memkb, "target_memkb",
			      (json_int_t)p->b_info.target_memkb);
	char *s;

	(void)ctx;
	if (o && p->num_disks) {
		json_t *a = json_array();

		for (int i = 0; i < p->num_disks; i++)
			json_array_append_new(a, json_pack("{s:i}", "readwrite", p->disks[i].readwrite));
		json_object_set_new(o, "disks", a);
	}
	s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

/* libxl_domain_config_from_json: ERROR_INVAL for what it cannot parse. */
int libxl_domain_config_from_json(libxl_ctx *ctx, libxl_domain_config *p, const char *s)
{
	json_error_t je;
	json_t *o = json_loads(s, 0, &je);
	const char *type = NULL, *name = NULL;
	json_int_t vcpus = 0, max = 0, target = 0;
	int r = ERROR_INVAL;
	json_t *disks = NULL;

	(void)ctx;
	if (o && !json_unpack(o, "{s:{s:s, s?s}, s:{s:I, s:I, s:I}, s?o}", "c_info", "type", &type,
			      "name", &name, "b_info", "max_vcpus", &vcpus, "max_memkb", &max,
			      "target_memkb", &target, "disks", &disks) &&
	    !strcmp(type, "hvm") && vcpus > 0 && max > 0) {
		size_t i;
		json_t *dk;

		p->c_info.type = LIBXL_DOMAIN_TYPE_HVM;
		p->c_info.name = name ? strdup(name) : NULL;
		p->b_info.max_vcpus = (int)vcpus;
		p->b_info.max_memkb = (uint64_t)max;
		p->b_info.target_memkb = (uint64_t)target;
		/* disks: [{"vdev": "xvda", "readwrite": 1}], as libxl writes them */
		if (json_is_array(disks) && json_array_size(disks)) {
			p->disks = calloc(json_array_size(disks), sizeof *p->disks);
			json_array_foreach(disks, i, dk) {
				libxl_device_disk_init(&p->disks[i]);
				p->disks[i].readwrite =
					(int)json_integer_value(json_object_get(dk, "readwrite"));
				p->num_disks++;
			}
		}
		r = 0;
	}
	json_decref(o);
	return r;
}

/* libxl_domain.c: libxl_retrieve_domain_configuration — the stored JSON
 * (libxl keeps it in /var/lib/xen/userdata-d.*; the shim in the domain). */
int libxl_retrieve_domain_configuration(libxl_ctx *ctx, uint32_t domid,
					libxl_domain_config *d_config,
					const libxl_asyncop_how *ao_how)
{
	struct shim_map m;
	int r;

	(void)ao_how;
	if (shim_dom_map(ctx->host, domid, &m))
		return ERROR_DOMAIN_NOTFOUND;
	r = libxl_domain_config_from_json(ctx, d_config, m.st->config_json);
	shim_dom_unmap(&m);
	return r;
}

/* libxl_device.c: libxl_device_nic_list — the shim's guests have no vifs
 * (their network is not imitated): an empty list. */
libxl_device_nic *libxl_device_nic_list(libxl_ctx *ctx, uint32_t domid, int *num)
{
	(void)ctx, (void)domid;
	*num = 0;
	return NULL;
}

/* ---- restore ---- */

struct rd {
	int fd;
	struct shim_map m;
	char why[160];
	uint64_t pages;
	bool static_end, ctx_seen;
	uint8_t *buf;
};

static int rx(struct rd *r, void *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t k = read(r->fd, (uint8_t *)p + done, n - done);

		if (k <= 0) {
			snprintf(r->why, sizeof r->why, "the stream ended early");
			return -1;
		}
		done += (size_t)k;
	}
	return 0;
}

/* One record (either stream's framing: u32 type, u32 length, body, pad). */
static int record(struct rd *r, uint32_t *type, uint32_t *len, size_t max)
{
	uint32_t h[2];
	uint8_t pad[8];

	if (rx(r, h, sizeof h))
		return -1;
	*type = le32toh(h[0]);
	*len = le32toh(h[1]);
	if (*len > max) {
		snprintf(r->why, sizeof r->why, "record %#x of %u bytes", *type, *len);
		return -1;
	}
	if (rx(r, r->buf, *len) || rx(r, pad, -*len & 7))
		return -1;
	return 0;
}

#define MAX_REC (8u + 1024u * 8u + 1024u * 4096u)

/* xg_sr_restore.c: process_page_data — count within MAX_BATCH_SIZE, each
 * pfn inside the p2m, only known types, the length exactly the header, the
 * pfns and one page for each type with data. */
static int page_data(struct rd *r, uint32_t len)
{
	uint32_t count;
	uint64_t *pfns = (uint64_t *)(r->buf + 8);
	uint8_t *data;
	uint32_t with_data = 0;

	memcpy(&count, r->buf, 4);
	count = le32toh(count);
	if (!r->static_end) {
		snprintf(r->why, sizeof r->why, "PAGE_DATA before STATIC_DATA_END");
		return -1;
	}
	if (len < 8 || count == 0 || count > 1024 || len < 8 + 8 * count) {
		snprintf(r->why, sizeof r->why, "PAGE_DATA with count %u in %u bytes", count, len);
		return -1;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint64_t e = le64toh(pfns[i]), pfn = e & 0x000fffffffffffffULL, type = e >> 32;

		if (pfn >= r->m.st->nr_frames) {
			snprintf(r->why, sizeof r->why, "pfn %#llx beyond the p2m", (unsigned long long)pfn);
			return -1;
		}
		if (type != XEN_DOMCTL_PFINFO_NOTAB && type != XEN_DOMCTL_PFINFO_XTAB) {
			snprintf(r->why, sizeof r->why, "pfn %#llx of type %#llx", (unsigned long long)pfn,
				 (unsigned long long)type);
			return -1;
		}
		with_data += type == XEN_DOMCTL_PFINFO_NOTAB;
	}
	if (len != 8 + 8 * count + 4096 * with_data) {
		snprintf(r->why, sizeof r->why, "PAGE_DATA of %u bytes for %u pages", len, with_data);
		return -1;
	}
	data = r->buf + 8 + 8 * count;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t e = le64toh(pfns[i]), pfn = e & 0x000fffffffffffffULL;

		if (e >> 32)
			continue;
		memcpy(r->m.ram + pfn * 4096, data, 4096);
		r->m.pop[pfn / 64] |= 1ULL << (pfn % 64);
		data += 4096;
		r->pages++;
	}
	return 0;
}

/* xg_sr_restore.c: restore — the image and domain headers, then records to
 * END; v3 needs STATIC_DATA_END before any page. */
static int libxc_stream(struct rd *r)
{
	struct {
		uint64_t marker;
		uint32_t id, version;
		uint16_t options, res1;
		uint32_t res2;
	} ih;
	struct {
		uint32_t type;
		uint16_t page_shift, res1;
		uint32_t xen_major, xen_minor;
	} dh;
	uint32_t type, len;

	if (rx(r, &ih, sizeof ih) || rx(r, &dh, sizeof dh))
		return -1;
	if (ih.marker != ~0ULL || ntohl(ih.id) != 0x58454E46u || ntohl(ih.version) != 3 ||
	    ntohs(ih.options) != 0) {
		snprintf(r->why, sizeof r->why, "not a libxc v3 image header");
		return -1;
	}
	if (le32toh(dh.type) != 2 || le16toh(dh.page_shift) != 12) {
		snprintf(r->why, sizeof r->why, "domain header: type %u, page shift %u",
			 le32toh(dh.type), le16toh(dh.page_shift));
		return -1;
	}
	for (;;) {
		if (record(r, &type, &len, MAX_REC))
			return -1;
		switch (type) {
		case 0x00: /* END */
			if (!r->ctx_seen) {
				snprintf(r->why, sizeof r->why, "END without HVM_CONTEXT");
				return -1;
			}
			return 0;
		case 0x01:
			if (page_data(r, len))
				return -1;
			break;
		case 0x08: /* X86_TSC_INFO */
			if (len != 24)
				goto bad;
			memcpy(&r->m.st->tsc, r->buf, 24);
			break;
		case 0x09: /* HVM_CONTEXT: the guest's registers */
			if (len != sizeof r->m.st->regs)
				goto bad;
			memcpy(&r->m.st->regs, r->buf, len);
			r->ctx_seen = true;
			break;
		case 0x0a: { /* HVM_PARAMS */
			uint32_t n;

			memcpy(&n, r->buf, 4);
			if (len < 8 || len != 8 + 16 * le32toh(n))
				goto bad;
			for (uint32_t i = 0; i < le32toh(n); i++) {
				uint64_t kv[2];

				memcpy(kv, r->buf + 8 + 16 * i, 16);
				if (kv[0] < 64)
					r->m.st->params[kv[0]] = kv[1];
			}
			break;
		}
		case 0x10: /* STATIC_DATA_END */
			if (r->static_end || len)
				goto bad;
			r->static_end = true;
			break;
		case 0x11: /* X86_CPUID_POLICY */
			if (r->static_end || len % 24 || len > sizeof r->m.st->cpuid)
				goto bad;
			memcpy(r->m.st->cpuid, r->buf, len);
			r->m.st->ncpuid = len / 24;
			break;
		case 0x12: /* X86_MSR_POLICY */
			if (r->static_end || len % 16 || len > sizeof r->m.st->msr)
				goto bad;
			memcpy(r->m.st->msr, r->buf, len);
			r->m.st->nmsr = len / 16;
			break;
		default:
			if (!(type & 0x80000000u)) {
				snprintf(r->why, sizeof r->why, "unknown mandatory libxc record %#x", type);
				return -1;
			}
		}
	}
bad:
	snprintf(r->why, sizeof r->why, "libxc record %#x: %u bytes, or out of place", type, len);
	return -1;
}

/* libxl_stream_read.c: the libxl header (big-endian), LIBXC_CONTEXT (no
 * body; the libxc stream follows), EMULATOR_CONTEXT, END. */
static int libxl_stream(struct rd *r)
{
	struct {
		uint64_t ident;
		uint32_t version, options;
	} h;
	uint32_t type, len;
	bool libxc = false;

	if (rx(r, &h, sizeof h))
		return -1;
	if (be64toh(h.ident) != 0x4c6962786c466d74ULL || be32toh(h.version) != 2 || h.options) {
		snprintf(r->why, sizeof r->why, "not a libxl v2 stream header");
		return -1;
	}
	for (;;) {
		if (record(r, &type, &len, 1u << 20))
			return -1;
		switch (type) {
		case 0: /* END */
			if (!libxc) {
				snprintf(r->why, sizeof r->why, "END before LIBXC_CONTEXT");
				return -1;
			}
			return 0;
		case 1: /* LIBXC_CONTEXT */
			if (len || libxc || libxc_stream(r))
				return r->why[0] ? -1 : (snprintf(r->why, sizeof r->why,
								  "a second or non-empty LIBXC_CONTEXT"), -1);
			libxc = true;
			break;
		case 3: { /* EMULATOR_CONTEXT: {id, index}, then QEMU's state */
			uint32_t id;

			memcpy(&id, r->buf, 4);
			if (len < 8 || le32toh(id) != 2 || len - 8 > sizeof r->m.st->dev) {
				snprintf(r->why, sizeof r->why, "EMULATOR_CONTEXT of %u bytes", len);
				return -1;
			}
			r->m.st->dev_len = len - 8;
			memcpy(r->m.st->dev, r->buf + 8, len - 8);
			break;
		}
		default:
			snprintf(r->why, sizeof r->why, "unknown libxl record %#x", type);
			return -1;
		}
	}
}

/*
 * libxl_create.c: libxl_domain_create_restore — make the domain (named
 * d_config's name), read the stream into it, and leave it paused. A stream
 * that fails anywhere destroys what was made (domcreate_complete's
 * destroy on error) and returns ERROR_FAIL.
 */
int libxl_domain_create_restore(libxl_ctx *ctx, libxl_domain_config *d_config, uint32_t *domid,
				int restore_fd, int send_back_fd,
				const libxl_domain_restore_params *params,
				const libxl_asyncop_how *ao_how,
				const libxl_asyncprogress_how *aop_console_how)
{
	struct rd r = { .fd = restore_fd };
	uint32_t id, other;
	int e = ERROR_FAIL;
	char *json;

	(void)send_back_fd, (void)ao_how, (void)aop_console_how;
	if (params->stream_version != 2 || params->checkpointed_stream != LIBXL_CHECKPOINTED_STREAM_NONE)
		return ERROR_INVAL;
	if (!d_config->c_info.name || !shim_dom_find(ctx->host, d_config->c_info.name, &other))
		return ERROR_INVAL;
	if (shim_dom_new(ctx->host, d_config->c_info.name, d_config->b_info.max_memkb,
			 (unsigned)d_config->b_info.max_vcpus, &id))
		return ERROR_FAIL;
	if (shim_dom_map(ctx->host, id, &r.m) || !(r.buf = malloc(MAX_REC)))
		goto out;
	if (libxl_stream(&r)) {
		fprintf(stderr, "xenshim: restore of %s failed: %s\n", d_config->c_info.name, r.why);
		goto out;
	}
	json = libxl_domain_config_to_json(ctx, d_config);
	snprintf(r.m.st->config_json, sizeof r.m.st->config_json, "%s", json ? json : "");
	free(json);
	r.m.st->pause_count = 1;
	r.m.st->state = SHIM_LIVE;
	e = shim_guest_start(ctx->host, id) ? ERROR_FAIL : 0;
	*domid = id;
out:
	free(r.buf);
	shim_dom_unmap(&r.m);
	if (e)
		shim_dom_remove(ctx->host, id);
	return e;
}
