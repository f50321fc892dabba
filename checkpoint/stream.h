/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stream.h — the ferry stream: wire format (docs/stream-format.md is the
 * specification; this header pins it down in C).
 *
 * One format for everything that moves guest state: a migration, a
 * replication epoch, a snapshot file. Little-endian, fixed-width fields;
 * every wire struct's size is asserted.
 *
 *   stream  = magic (8 bytes "FERRYST\n"), then records
 *   record  = stream_rec_hdr, body (length bytes), zero padding to 8,
 *             stream_rec_trl { seq, XXH3-64 over hdr + body + padding + seq }
 *
 * The first record is HEADER, the last END. A reader checks every length
 * against the type's maximum before it allocates or reads the body.
 */
#ifndef FERRY_CHECKPOINT_STREAM_H
#define FERRY_CHECKPOINT_STREAM_H

#include <stddef.h>
#include <stdint.h>

#define STREAM_MAGIC "FERRYST\n"
#define STREAM_MAGIC_LEN 8
#define STREAM_VERSION_MAJOR 1
#define STREAM_VERSION_MINOR 2

/* Record header. */
struct stream_rec_hdr {
	uint32_t type;
	uint32_t flags;  /* STREAM_REC_OPTIONAL; other bits must be zero */
	uint64_t length; /* body bytes, without padding */
};
_Static_assert(sizeof(struct stream_rec_hdr) == 16, "wire size");

/* Record trailer: the channel's sequence number (0 for HEADER, then +1 per
 * record) and the checksum of everything from the header to here. */
struct stream_rec_trl {
	uint64_t seq;
	uint64_t checksum; /* XXH3_64bits(hdr, body, padding, seq), seed 0 */
};
_Static_assert(sizeof(struct stream_rec_trl) == 16, "wire size");

#define STREAM_REC_OPTIONAL 0x1u /* a reader that does not know the type skips it */

enum stream_rec_type {
	STREAM_REC_HEADER = 1,       /* mandatory, first */
	STREAM_REC_PAGES = 2,        /* a batch of pages */
	STREAM_REC_ZERO_EXTENT = 3,  /* a run of frames that are zero */
	STREAM_REC_CONTEXT = 4,      /* vCPU/platform context (opaque to the stream) */
	STREAM_REC_DEVICE = 5,       /* device state (opaque) */
	STREAM_REC_ITER_END = 6,     /* end of a pre-copy iteration, with statistics */
	STREAM_REC_CKPT_BEGIN = 7,   /* replication epoch begins */
	STREAM_REC_CKPT_COMMIT = 8,  /* replication epoch complete */
	STREAM_REC_END = 9,          /* mandatory, last: totals */
	STREAM_REC_DOMAIN_CONFIG = 10, /* the backend's full domain configuration,
				      * right after a HEADER that announces it */
	STREAM_REC_POSTCOPY = 11,    /* post-copy: frames the receiver must not
				      * trust, which arrive after the switch */
	STREAM_REC_TYPE_MAX
};

/* HEADER body: fixed part, then config_len bytes of config text (no NUL). */
enum stream_kind { STREAM_KIND_SNAPSHOT = 1, STREAM_KIND_MIGRATION = 2, STREAM_KIND_REPLICATION = 3 };

struct stream_header {
	uint16_t major;
	uint16_t minor;
	uint32_t kind;      /* enum stream_kind */
	uint32_t page_size; /* 4096 */
	uint32_t config_len;
	uint64_t nr_frames;
	char backend[16];   /* "mvm", NUL-padded */
	char name[64];      /* the domain's name at the source, NUL-padded */
	uint32_t domain_config_len; /* > 0: a DOMAIN_CONFIG record of exactly
				     * this length is the next record (1.1) */
	uint32_t reserved0;
	uint64_t reserved1;
};
_Static_assert(sizeof(struct stream_header) == 120, "wire size");
#define STREAM_CONFIG_MAX 512
/* DOMAIN_CONFIG body: opaque to the stream, read by the backend's create
 * (Xen: the libxl domain configuration and the CPU policy). */
#define STREAM_DOMAIN_CONFIG_MAX (64u << 10)

/* PAGES body: stream_pages, count x stream_page, then the data of each page
 * in order (data_len bytes each, no padding between). */
enum stream_enc {
	STREAM_ENC_ZERO = 0,  /* no data: the page is zero */
	STREAM_ENC_RAW = 1,   /* page_size bytes */
	STREAM_ENC_LZ4 = 2,   /* an LZ4 block that decodes to exactly page_size bytes */
	STREAM_ENC_DELTA = 3, /* XOR against the last version sent, run-length coded */
	STREAM_ENC_MAX
};

struct stream_pages {
	uint32_t count; /* 1..STREAM_PAGES_MAX */
	uint32_t reserved;
};
_Static_assert(sizeof(struct stream_pages) == 8, "wire size");

struct stream_page {
	uint64_t frame;
	uint32_t encoding; /* enum stream_enc */
	uint32_t data_len;
};
_Static_assert(sizeof(struct stream_page) == 16, "wire size");

#define STREAM_PAGES_MAX 512

struct stream_zero_extent {
	uint64_t first;
	uint64_t count;
};
_Static_assert(sizeof(struct stream_zero_extent) == 16, "wire size");

struct stream_iter_end {
	uint64_t iteration;
	uint64_t pages;     /* pages sent in this iteration */
	uint64_t dirty;     /* pages the log reported */
	uint64_t duration_ns;
};
_Static_assert(sizeof(struct stream_iter_end) == 32, "wire size");

/* CKPT_BEGIN and CKPT_COMMIT body. In BEGIN, records and digest are 0; in
 * COMMIT they cover this channel's records of the epoch (after its BEGIN,
 * before its COMMIT): their count, and a chain of their trailer checksums,
 * d = XXH3_64bits_withSeed(le64 checksum, 8, d) from d = 0. */
struct stream_ckpt {
	uint64_t epoch;
	uint64_t token;   /* the fencing token the primary holds (0: none) */
	uint64_t records;
	uint64_t digest;
};
_Static_assert(sizeof(struct stream_ckpt) == 32, "wire size");

/* POSTCOPY body (1.2; only in a migration whose session agreed
 * WIRE_CAP_POSTCOPY): the frames in [first, first + count) whose bit is set
 * are missing at the receiver from here on — their content is stale or
 * absent, and they come after the switch-over, by demand or in the
 * background. words = ceil(count / 64) le64 words follow, bit i of word j
 * standing for frame first + 64 j + i; bits past count are zero. first is a
 * multiple of 64. A large domain's set takes several records. */
struct stream_postcopy {
	uint64_t first;
	uint64_t count;
};
_Static_assert(sizeof(struct stream_postcopy) == 16, "wire size");
#define STREAM_POSTCOPY_FRAMES_MAX (1ull << 21) /* per record: 256 KiB of bits */

/* END body: totals over the whole stream before END. */
struct stream_end {
	uint64_t records; /* records before END, HEADER included */
	uint64_t pages;   /* page entries in PAGES records */
	uint64_t zero_frames; /* frames covered by ZERO_EXTENT records */
	uint64_t bytes;   /* stream bytes before END, magic included */
};
_Static_assert(sizeof(struct stream_end) == 32, "wire size");

#define STREAM_CONTEXT_MAX (1u << 20)
#define STREAM_SKIP_MAX (64ULL << 20) /* largest unknown optional record */
#define STREAM_DEVICE_MAX (16u << 20)

/* The largest body a record of this type may have; 0 for an unknown type. */
uint64_t stream_rec_max(uint32_t type, uint32_t page_size);
const char *stream_rec_name(uint32_t type);
const char *stream_enc_name(uint32_t enc);

#endif
