/*
 * pf_stats.h - run statistics in a small memory-mapped file: what each stage
 * of a running pipeline produced and where its time went, what the consumer
 * (the training loop) waited for, and every knob change.  `pipe-stat` reads
 * the file while the run goes on or after it.  The byte layout is in
 * doc/STATS.md (versioned).
 *
 * Writing (the program that runs the pipeline):
 *
 *	pf_stats *st;
 *	pf_stats_create(&st, "run.pfstat", NULL, &err);   // creates / truncates
 *	pf_stats_attach(st, it, &err);    // sampler thread: pf_iter_stats every 100 ms
 *	for each step:
 *		... wait for the batch (stall), compute ...
 *		pf_stats_step(st, stall_ns, compute_ns, h2d_ns, batch_size);
 *	pf_stats_detach(st);              // last sample; before pf_iter_free(it)
 *	pf_stats_close(st, &err);         // marks the file finished, checksums it
 *
 * Reading (any process, any time):
 *
 *	pf_stats_snap *s;
 *	pf_stats_read_file(&s, "run.pfstat", &err);   // validated copy
 *	... s->nstages, s->stages[i], s->samples[k], pf_stats_quantile(s, ...) ...
 *	pf_stats_snap_free(s);
 *
 * Ownership and threads: a pf_stats is a handle (create / close; close(NULL)
 * is a no-op).  pf_stats_step and pf_stats_event may be called from any
 * thread, concurrently with the sampler; they take a short lock and never
 * block on I/O (the file is a shared mapping: the kernel writes it back).
 * The iterator given to pf_stats_attach must stay alive until
 * pf_stats_detach (or close) returns.  Readers never lock: the writer bumps
 * a sequence number around each update (odd while writing), and
 * pf_stats_read_file retries a copy that was torn.  A pf_stats_snap is
 * plain memory owned by the caller.
 */
#ifndef PF_STATS_H
#define PF_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"
#include "pipefeed.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_STATS_VERSION 2         /* 2: dropped-sample table, skip/drop counters; reads 1 too */
#define PF_STATS_MAX_STAGES 16    /* stages recorded (later ones are dropped) */
#define PF_STATS_SAMPLE_CAP 1024  /* time-series points kept (see below) */
#define PF_STATS_STEP_CAP 512     /* most recent steps kept one by one */
#define PF_STATS_EVENT_CAP 256    /* most recent knob changes kept */
#define PF_STATS_DROP_CAP 64      /* first dropped samples kept (pf_iter_dropped) */
#define PF_STATS_HIST_BUCKETS 496 /* log-linear ns buckets: 8 per power of 2 */

/* The histograms of per-step times. */
enum pf_stats_hist { PF_STATS_H_STALL = 0, PF_STATS_H_COMPUTE = 1,
		     PF_STATS_H_STEP = 2, PF_STATS_NHIST = 3 };

typedef struct pf_stats pf_stats;

typedef struct pf_stats_opts {
	uint32_t interval_ms;     /* sampling period; 0 = 100 */
	const char *label;        /* what ran (command line, plan); copied, cut to 255 bytes */
	/* table sizes (0 = the default, PF_STATS_*_CAP, which is also the
	 * maximum): smaller files for long-lived processes and test corpora */
	uint32_t sample_cap;      /* time-series points, >= 2 */
	uint32_t step_cap;        /* recent steps, >= 1 */
	uint32_t event_cap;       /* recent knob changes, >= 1 */
	uint32_t drop_cap;        /* dropped samples kept (the first ones), >= 1 */
} pf_stats_opts;

/*
 * Create (or truncate) the stats file at path and map it.  opts may be
 * NULL.  Returns 0 or PF_ENOENT (its directory does not exist) / PF_EIO /
 * PF_ENOSPC / PF_ENOMEM / PF_EINVAL with a message naming the file; *s is
 * NULL on failure.
 */
int pf_stats_create(pf_stats **s, const char *path, const pf_stats_opts *opts,
		    pf_error *err);

/*
 * Record its stages (names, knobs) and start the sampler thread, which
 * copies pf_iter_stats of every stage into the file every interval and
 * appends a point to the time series.  The autotuner's decisions
 * (pf_iter_autotune_log) are copied into the event ring with their
 * reasons; a knob of a stage it does not tune that changes between two
 * samples is logged as "observed by the sampler".  The samples dropped by
 * maps with isolate (pf_iter_dropped) are copied into the dropped-sample
 * table (the first drop_cap of them; all are counted).  One iterator at a
 * time: PF_ESTATE when one is attached already.
 */
int pf_stats_attach(pf_stats *s, pf_iter *it, pf_error *err);

/* Take a last sample, stop the sampler, forget the iterator.  No-op when
 * none is attached.  Call it before pf_iter_free. */
void pf_stats_detach(pf_stats *s);

/*
 * One consumer step: the time it waited for its batch (stall), the time it
 * computed, the time of its host-to-device copy when known (else 0), and
 * the samples in the batch.  Feeds the totals, the histograms (p50/p99) and
 * the ring of recent steps.  Never fails; NULL s is a no-op.
 */
void pf_stats_step(pf_stats *s, uint64_t stall_ns, uint64_t compute_ns,
		   uint64_t h2d_ns, uint32_t samples);
/*
 * pf_stats_step with where its copy ran: copy_lead_ns = how long before
 * now (the step's end) its host-to-device copy began, so a trace can draw
 * the copy on its own track and show it overlapping earlier compute
 * (stored in microseconds; 0 = not known, as pf_stats_step).
 */
void pf_stats_step_copy(pf_stats *s, uint64_t stall_ns, uint64_t compute_ns,
			uint64_t h2d_ns, uint32_t samples, uint64_t copy_lead_ns);

/*
 * Log a knob change of stage `stage` (or -1 for the consumer; a stage that
 * is not in the attached plan is recorded as -1): knob name
 * ("parallelism", "depth", "cycle_length", ... cut to 15 bytes), old and new
 * values and why (cut to 127 bytes).  t_ns 0 = now; else nanoseconds since
 * the file was created.  NULL s is a no-op.
 */
void pf_stats_event(pf_stats *s, uint64_t t_ns, int stage, const char *knob,
		    int64_t old_value, int64_t new_value, const char *reason);

/* Nanoseconds since the file was created (the files' time base). */
uint64_t pf_stats_elapsed_ns(const pf_stats *s);

/*
 * Detach, mark the file finished, write its checksum, schedule its
 * write-back (without waiting for the disk) and unmap it.  Returns 0 or
 * PF_EIO (the msync failed).  NULL is a no-op.
 */
int pf_stats_close(pf_stats *s, pf_error *err);

/* ==== reading ============================================================ */

/* Counters of one stage at one time (cumulative since the start). */
typedef struct pf_stats_counters {
	uint64_t elements, bytes, busy_ns, wait_ns, blocked_ns;
	int32_t parallelism, depth;
} pf_stats_counters;

typedef struct pf_stats_stage {
	char name[32];
	int32_t autotuned;
	uint64_t buffer_bytes;
	uint64_t corrupt_blocks;     /* damaged blocks skipped (skip_corrupt) */
	uint64_t skipped_records;    /* records lost in them (0 in version 1 files) */
	uint64_t dropped_samples;    /* map with isolate: samples dropped (0 in v1) */
	uint64_t cpu_ns;             /* CPU time its work took, where measured
				      * (pf_op_stats.cpu_ns); 0 otherwise and in
				      * files of 128-byte stage records */
	double occupancy;            /* mean elements in its buffer over the run
				      * (sampled; compare with now.depth); -1 when
				      * the stage does not measure it */
	pf_stats_counters now;       /* latest counters */
} pf_stats_stage;

/* One point of the time series: consumer totals and every stage's counters. */
typedef struct pf_stats_sample {
	uint64_t t_ns;
	uint64_t steps, samples, stall_ns, compute_ns, h2d_ns;
	pf_stats_counters st[PF_STATS_MAX_STAGES];
} pf_stats_sample;

typedef struct pf_stats_steprec {
	uint64_t t_ns;               /* end of the step, since the start */
	uint64_t stall_ns, compute_ns, h2d_ns;
	uint32_t samples;
	uint32_t copy_lead_us;       /* its copy began this long before t_ns;
				      * 0 = not known (pf_stats_step_copy) */
} pf_stats_steprec;

typedef struct pf_stats_eventrec {
	uint64_t t_ns;
	int32_t stage;               /* -1: the consumer */
	int64_t old_value, new_value;
	char knob[16];
	char reason[128];
} pf_stats_eventrec;

/* A sample dropped by a map with isolate (pf_dropped_sample, as recorded). */
typedef struct pf_stats_droprec {
	uint64_t id;                 /* sample id (lib/pf_id.h: file, record) */
	uint64_t record;
	uint32_t file;
	char op[96];
	char path[256];              /* "" when the source has no files */
	char msg[136];
} pf_stats_droprec;

/* A validated copy of a stats file. */
typedef struct pf_stats_snap {
	uint32_t version;
	int finished;                /* the writer closed the file */
	uint64_t start_unix_ns;
	uint64_t updated_ns;         /* last update, since the start */
	uint64_t interval_ns;        /* current spacing of the time series */
	char label[256];
	uint64_t sampler_cpu_ns;     /* CPU time the sampler thread used */
	uint64_t first_stall_ns;     /* the first step's stall (start-up) */
	/* consumer totals */
	uint64_t steps, samples, stall_ns, compute_ns, h2d_ns;
	int nstages;
	pf_stats_stage stages[PF_STATS_MAX_STAGES];
	size_t nsamples;             /* oldest first */
	pf_stats_sample *samples_ts;
	size_t nsteps;               /* recent steps, oldest first */
	pf_stats_steprec *steprecs;
	size_t nevents;              /* recent events, oldest first */
	uint64_t events_total;       /* events ever logged */
	pf_stats_eventrec *events;
	uint64_t drops_total;        /* samples dropped in all (version 2) */
	size_t ndrops;               /* the first ones, recorded */
	pf_stats_droprec *drops;
	uint64_t hist[PF_STATS_NHIST][PF_STATS_HIST_BUCKETS];
} pf_stats_snap;

/*
 * Parse and validate a stats file image of len bytes (name is used in
 * messages).  Every size, count, offset and string is checked; a torn image
 * (odd sequence number) is PF_ESTATE, a finished file whose checksum does
 * not match is PF_ECORRUPT, a file from a newer writer is PF_EVERSION, a
 * foreign file PF_EFORMAT, a short one PF_ETRUNC; messages name the byte
 * offset.  On success *out is a new snapshot (pf_stats_snap_free).
 */
int pf_stats_parse(pf_stats_snap **out, const void *buf, size_t len,
		   const char *name, pf_error *err);

/* Read path consistently (retrying copies torn by a live writer, for up to
 * about a second) and parse it.  Same codes as pf_stats_parse, and PF_ENOENT
 * / PF_EIO. */
int pf_stats_read_file(pf_stats_snap **out, const char *path, pf_error *err);

/* Free a snapshot.  NULL is a no-op. */
void pf_stats_snap_free(pf_stats_snap *s);

/* The q-quantile (0..1) of histogram h, in ns (the middle of its bucket,
 * within 6.25%); 0 when it is empty. */
uint64_t pf_stats_quantile(const pf_stats_snap *s, int h, double q);

/* The bucket of a value and a bucket's [lo, hi) range (for tests). */
int pf_stats_bucket(uint64_t ns);
void pf_stats_bucket_range(int b, uint64_t *lo, uint64_t *hi);

#ifdef __cplusplus
}
#endif
#endif /* PF_STATS_H */
