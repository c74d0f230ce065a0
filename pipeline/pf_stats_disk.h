/*
 * pf_stats_disk.h - the stats file's on-disk records (version 2), shared by
 * the writer (stats_write.c) and the reader (stats_read.c); internal.
 * Layout and meaning of every field: doc/STATS.md.
 */
#ifndef PF_STATS_DISK_H
#define PF_STATS_DISK_H

#include <stddef.h>
#include <stdint.h>

#include "pf_checksum.h"
#include "pf_stats.h"

#define MAGIC "PFSTATS\0"
#define ENDIAN_MARK 0x01020304u
#define HDR_BYTES 512u
#define ST_RUNNING 1u
#define ST_FINISHED 2u
#define MAX_FILE_BYTES (64u << 20)

/* ---- on-disk records (version 2); native little-endian ----------------
 * Version 2 appends two counters to the stage record and adds the
 * dropped-sample table (header bytes 488..511, reserved in version 1);
 * a version 1 file reads with those as zeros. */

struct disk_hdr {
	char magic[8];
	uint32_t version, header_bytes, endian, max_stages, stage_bytes,
		sample_cap, sample_bytes, step_cap, step_bytes, hist_buckets,
		nhist, event_cap, event_bytes, layout_crc; /* crc of bytes 0..59 */
	uint64_t file_bytes, off_stages, off_samples, off_steps, off_hist,
		off_events;                               /* 64..111 */
	uint64_t seq;                                     /* 112 */
	uint32_t state, nstages;                          /* 120 */
	uint64_t start_unix_ns, interval_ns, nsamples, steps, samples,
		stall_ns, compute_ns, h2d_ns, events_total, updated_ns; /* 128..207 */
	uint32_t body_crc, pad;                           /* 208 */
	char label[256];                                  /* 216 */
	uint64_t sampler_cpu_ns;                          /* 472 */
	uint64_t first_stall_ns;                          /* 480 */
	uint64_t off_drops;                               /* 488: v2 */
	uint32_t drop_cap, drop_bytes;                    /* 496, 500 */
	uint64_t drops_total;                             /* 504 */
};

struct disk_counters {
	uint64_t elements, bytes, busy_ns, wait_ns, blocked_ns;
	int32_t parallelism, depth;
};

struct disk_stage {
	char name[32];
	int32_t autotuned;
	uint32_t pad;
	uint64_t buffer_bytes;
	struct disk_counters now;
	uint64_t corrupt_blocks;
	uint64_t occ_milli;       /* mean elements buffered over the sampler's
				   * ticks, x 1000 (buffer occupancy); OCC_NONE
				   * when the stage does not measure it */
	uint64_t skipped_records; /* v2 */
	uint64_t dropped_samples; /* v2 */
	uint64_t cpu_ns;          /* v2, records of 136 bytes or more */
};
#define V1_STAGE_BYTES 112u

struct disk_drop {
	uint64_t id, record;
	uint32_t file, pad;
	char op[96];
	char path[256];
	char msg[136];
};
#define OCC_NONE UINT64_MAX

struct disk_sample {
	uint64_t t_ns, steps, samples, stall_ns, compute_ns, h2d_ns;
	struct disk_counters st[PF_STATS_MAX_STAGES];
};

struct disk_step {
	uint64_t t_ns, stall_ns, compute_ns, h2d_ns;
	uint32_t samples;
	uint32_t copy_lead_us;   /* was pad (0): see pf_stats_step_copy */
};

struct disk_event {
	uint64_t t_ns;
	int32_t stage, pad;
	int64_t old_value, new_value;
	char knob[16];
	char reason[128];
};

_Static_assert(sizeof(struct disk_hdr) == HDR_BYTES, "header is 512 bytes");
_Static_assert(offsetof(struct disk_hdr, layout_crc) == 60, "layout crc at 60");
_Static_assert(offsetof(struct disk_hdr, seq) == 112, "seq at 112");
_Static_assert(offsetof(struct disk_hdr, body_crc) == 208, "body crc at 208");
_Static_assert(offsetof(struct disk_hdr, label) == 216, "label at 216");
_Static_assert(sizeof(struct disk_counters) == 48, "counters are 48 bytes");
_Static_assert(sizeof(struct disk_stage) == 136, "stage is 136 bytes");
_Static_assert(offsetof(struct disk_hdr, off_drops) == 488, "off_drops at 488");
_Static_assert(sizeof(struct disk_drop) == 512, "dropped sample is 512 bytes");
_Static_assert(sizeof(struct disk_sample) == 48 + 48 * PF_STATS_MAX_STAGES, "sample");
_Static_assert(sizeof(struct disk_step) == 40, "step is 40 bytes");
_Static_assert(sizeof(struct disk_event) == 176, "event is 176 bytes");

/* crc32c of everything but seq (112..119) and body_crc/pad (208..215). */
static inline uint32_t pf_stats_body_crc(const uint8_t *m, size_t len)
{
	uint32_t c = pf_crc32c(0, m, 112);
	c = pf_crc32c(c, m + 120, 208 - 120);
	return pf_crc32c(c, m + 216, len - 216);
}

#endif /* PF_STATS_DISK_H */
