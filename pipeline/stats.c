/*
 * stats.c - the stats file: writer (mapped file, sampler thread, step
 * records, knob events) and validating reader.  Layout: doc/STATS.md.
 *
 * Consistency: one lock serialises the writers of this process (sampler,
 * consumer steps, events).  Readers, possibly in another process, see the
 * same pages; each update is bracketed by two increments of hdr.seq (odd
 * while it is in progress), so a reader that copied the file and found the
 * same even seq before and after has a consistent image.  A finished file
 * also carries a crc32c of all but seq and the crc itself.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <stdio.h>
#include <unistd.h>

#include "pf_checksum.h"
#include "pf_pipeline_int.h"
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
	uint32_t samples, pad;
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
_Static_assert(sizeof(struct disk_stage) == 128, "stage is 128 bytes");
_Static_assert(offsetof(struct disk_hdr, off_drops) == 488, "off_drops at 488");
_Static_assert(sizeof(struct disk_drop) == 512, "dropped sample is 512 bytes");
_Static_assert(sizeof(struct disk_sample) == 48 + 48 * PF_STATS_MAX_STAGES, "sample");
_Static_assert(sizeof(struct disk_step) == 40, "step is 40 bytes");
_Static_assert(sizeof(struct disk_event) == 176, "event is 176 bytes");

/* ---- histogram buckets -------------------------------------------------- */

int pf_stats_bucket(uint64_t v)
{
	if (v < 8)
		return (int)v;
	int e = 63 - __builtin_clzll(v);
	int sub = (int)((v >> (e - 3)) & 7);
	return 8 * (e - 2) + sub;
}

void pf_stats_bucket_range(int b, uint64_t *lo, uint64_t *hi)
{
	if (b < 0)
		b = 0;
	if (b >= PF_STATS_HIST_BUCKETS)
		b = PF_STATS_HIST_BUCKETS - 1;
	if (b < 8) {
		*lo = (uint64_t)b;
		*hi = (uint64_t)b + 1;
		return;
	}
	int e = b / 8 + 2, sub = b % 8;
	*lo = (uint64_t)(8 + sub) << (e - 3);
	uint64_t w = 1ull << (e - 3);
	*hi = *lo > UINT64_MAX - w ? UINT64_MAX : *lo + w;
}

/* ---- layout ------------------------------------------------------------- */

typedef struct layout {
	uint64_t off_stages, off_samples, off_steps, off_hist, off_events, off_drops, bytes;
} layout;

static layout v2_layout(uint32_t nsamples, uint32_t nsteps, uint32_t nevents, uint32_t ndrops)
{
	layout l;
	l.off_stages = HDR_BYTES;
	l.off_samples = l.off_stages + PF_STATS_MAX_STAGES * sizeof(struct disk_stage);
	l.off_steps = l.off_samples + nsamples * sizeof(struct disk_sample);
	l.off_hist = l.off_steps + nsteps * sizeof(struct disk_step);
	l.off_events = l.off_hist + PF_STATS_NHIST * PF_STATS_HIST_BUCKETS * 8;
	l.off_drops = l.off_events + nevents * sizeof(struct disk_event);
	l.bytes = l.off_drops + (uint64_t)ndrops * sizeof(struct disk_drop);
	return l;
}

static uint32_t cap_of(uint32_t want, uint32_t dflt, uint32_t min)
{
	if (!want)
		return dflt;
	return want < min ? min : want > dflt ? dflt : want;
}

/* crc32c of everything but seq (112..119) and body_crc/pad (208..215). */
static uint32_t body_crc(const uint8_t *m, size_t len)
{
	uint32_t c = pf_crc32c(0, m, 112);
	c = pf_crc32c(c, m + 120, 208 - 120);
	return pf_crc32c(c, m + 216, len - 216);
}

/* ---- writer ------------------------------------------------------------- */

struct pf_stats {
	int fd;
	uint8_t *map;
	size_t len;
	struct disk_hdr *h;
	struct disk_stage *stages;
	struct disk_sample *samples;
	struct disk_step *steps;
	uint64_t *hist;
	struct disk_event *events;
	struct disk_drop *drops;
	uint32_t cap_drops;
	uint64_t drop_base;       /* drops_total when the iterator was attached */
	uint64_t t0;              /* CLOCK_MONOTONIC ns at create */
	uint64_t period_ns;       /* sampler period */
	uint64_t last_sample_t;
	uint32_t cap_samples, cap_steps, cap_events;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	pthread_t thr;
	int running, stop;
	pf_iter *it;
	int nst;
	size_t at_seen;           /* autotune decisions copied so far */
	uint64_t at_base;         /* file time when the iterator started */
	int32_t last_par[PF_STATS_MAX_STAGES], last_depth[PF_STATS_MAX_STAGES];
	/* buffer occupancy: sum of each stage's sampled fill, and the ticks */
	double occ_sum[PF_STATS_MAX_STAGES];
	uint64_t occ_n[PF_STATS_MAX_STAGES];
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t pf_stats_elapsed_ns(const pf_stats *s)
{
	return s ? mono_ns() - s->t0 : 0;
}

/* seqlock: odd while the mapped image is being changed (lock held). */
static void begin_update(pf_stats *s)
{
	__atomic_store_n(&s->h->seq, s->h->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void end_update(pf_stats *s)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&s->h->seq, s->h->seq + 1, __ATOMIC_RELEASE);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	memset(dst, 0, cap);
	if (src) {
		size_t n = strlen(src);
		memcpy(dst, src, n < cap - 1 ? n : cap - 1);
	}
}

int pf_stats_create(pf_stats **sp, const char *path, const pf_stats_opts *opts,
		    pf_error *err)
{
	*sp = NULL;
	if (!path || !*path)
		return pf_error_set(err, PF_EINVAL, "stats: no file name given");
	pf_stats *s = calloc(1, sizeof(*s));
	if (!s)
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
	s->cap_samples = cap_of(opts ? opts->sample_cap : 0, PF_STATS_SAMPLE_CAP, 2);
	s->cap_steps = cap_of(opts ? opts->step_cap : 0, PF_STATS_STEP_CAP, 1);
	s->cap_events = cap_of(opts ? opts->event_cap : 0, PF_STATS_EVENT_CAP, 1);
	s->cap_drops = cap_of(opts ? opts->drop_cap : 0, PF_STATS_DROP_CAP, 1);
	layout l = v2_layout(s->cap_samples, s->cap_steps, s->cap_events, s->cap_drops);
	s->len = (size_t)l.bytes;
	/* Built under a temporary name and renamed once its header is
	 * complete, so that a reader waiting for the file (pipe-stat --watch)
	 * never finds it half made. */
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
		free(s);
		return pf_error_set(err, PF_EINVAL, "%s: path too long", path);
	}
	s->fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (s->fd < 0) {
		int e = errno;
		free(s);
		return pf_error_set(err, e == ENOENT ? PF_ENOENT : PF_EIO,
				    "%s: cannot create the stats file: %s", path, strerror(e));
	}
	/* reserve the blocks now: a full disk is an error here, not a SIGBUS
	 * on a later store into the mapping */
	int e = posix_fallocate(s->fd, 0, (off_t)s->len);
	if (e == EINVAL || e == EOPNOTSUPP)
		e = ftruncate(s->fd, (off_t)s->len) ? errno : 0;
	if (e) {
		close(s->fd);
		unlink(tmp);
		free(s);
		return pf_error_set(err, e == ENOSPC ? PF_ENOSPC : PF_EIO,
				    "%s: cannot size the stats file to %zu bytes: %s", path,
				    (size_t)l.bytes, strerror(e));
	}
	s->map = mmap(NULL, s->len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->map == MAP_FAILED) {
		e = errno;
		close(s->fd);
		unlink(tmp);
		free(s);
		return pf_error_set(err, PF_EIO, "%s: cannot map the stats file: %s", path,
				    strerror(e));
	}
	/* the file was just truncated and sized: it reads as zeros, and only
	 * the pages written from now on get dirty (most of the time series
	 * is never touched in a short run) */
	s->h = (struct disk_hdr *)s->map;
	s->stages = (struct disk_stage *)(s->map + l.off_stages);
	s->samples = (struct disk_sample *)(s->map + l.off_samples);
	s->steps = (struct disk_step *)(s->map + l.off_steps);
	s->hist = (uint64_t *)(s->map + l.off_hist);
	s->events = (struct disk_event *)(s->map + l.off_events);
	s->drops = (struct disk_drop *)(s->map + l.off_drops);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->period_ns = (opts && opts->interval_ms ? opts->interval_ms : 100) * 1000000ull;
	s->t0 = mono_ns();

	struct disk_hdr *h = s->h;
	h->seq = 1; /* odd until the header is complete */
	memcpy(h->magic, MAGIC, 8);
	h->version = PF_STATS_VERSION;
	h->header_bytes = HDR_BYTES;
	h->endian = ENDIAN_MARK;
	h->max_stages = PF_STATS_MAX_STAGES;
	h->stage_bytes = sizeof(struct disk_stage);
	h->sample_cap = s->cap_samples;
	h->sample_bytes = sizeof(struct disk_sample);
	h->step_cap = s->cap_steps;
	h->step_bytes = sizeof(struct disk_step);
	h->hist_buckets = PF_STATS_HIST_BUCKETS;
	h->nhist = PF_STATS_NHIST;
	h->event_cap = s->cap_events;
	h->event_bytes = sizeof(struct disk_event);
	h->layout_crc = pf_crc32c(0, s->map, 60);
	h->file_bytes = l.bytes;
	h->off_stages = l.off_stages;
	h->off_samples = l.off_samples;
	h->off_steps = l.off_steps;
	h->off_hist = l.off_hist;
	h->off_events = l.off_events;
	h->off_drops = l.off_drops;
	h->drop_cap = s->cap_drops;
	h->drop_bytes = sizeof(struct disk_drop);
	h->state = ST_RUNNING;
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	h->start_unix_ns = (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec;
	h->interval_ns = s->period_ns;
	copy_str(h->label, sizeof(h->label), opts ? opts->label : NULL);
	end_update(s);
	if (rename(tmp, path) < 0) {
		e = errno;
		munmap(s->map, s->len);
		close(s->fd);
		unlink(tmp);
		pthread_mutex_destroy(&s->lock);
		pthread_cond_destroy(&s->cv);
		free(s);
		return pf_error_set(err, PF_EIO, "%s: cannot rename the stats file into place: %s",
				    path, strerror(e));
	}
	*sp = s;
	return 0;
}

/* Append an event (lock held, inside an update). */
static void put_event(pf_stats *s, uint64_t t, int stage, const char *knob,
		      int64_t ov, int64_t nv, const char *reason)
{
	struct disk_event *e = &s->events[s->h->events_total % s->cap_events];
	memset(e, 0, sizeof(*e));
	e->t_ns = t;
	/* readers check the stage against the table: keep the file valid */
	e->stage = stage >= 0 && (uint32_t)stage < s->h->nstages ? stage : -1;
	e->old_value = ov;
	e->new_value = nv;
	copy_str(e->knob, sizeof(e->knob), knob);
	copy_str(e->reason, sizeof(e->reason), reason);
	s->h->events_total++;
}

void pf_stats_event(pf_stats *s, uint64_t t_ns, int stage, const char *knob,
		    int64_t old_value, int64_t new_value, const char *reason)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	begin_update(s);
	put_event(s, t_ns ? t_ns : mono_ns() - s->t0, stage, knob, old_value,
		  new_value, reason);
	s->h->updated_ns = mono_ns() - s->t0;
	end_update(s);
	pthread_mutex_unlock(&s->lock);
}

void pf_stats_step(pf_stats *s, uint64_t stall_ns, uint64_t compute_ns,
		   uint64_t h2d_ns, uint32_t samples)
{
	if (!s)
		return;
	uint64_t t = mono_ns() - s->t0;
	pthread_mutex_lock(&s->lock);
	begin_update(s);
	struct disk_hdr *h = s->h;
	struct disk_step *r = &s->steps[h->steps % s->cap_steps];
	r->t_ns = t;
	r->stall_ns = stall_ns;
	r->compute_ns = compute_ns;
	r->h2d_ns = h2d_ns;
	r->samples = samples;
	r->pad = 0;
	s->hist[PF_STATS_H_STALL * PF_STATS_HIST_BUCKETS + pf_stats_bucket(stall_ns)]++;
	s->hist[PF_STATS_H_COMPUTE * PF_STATS_HIST_BUCKETS + pf_stats_bucket(compute_ns)]++;
	s->hist[PF_STATS_H_STEP * PF_STATS_HIST_BUCKETS +
		pf_stats_bucket(stall_ns + compute_ns)]++;
	if (h->steps == 0)
		h->first_stall_ns = stall_ns;
	h->steps++;
	h->samples += samples;
	h->stall_ns += stall_ns;
	h->compute_ns += compute_ns;
	h->h2d_ns += h2d_ns;
	h->updated_ns = t;
	end_update(s);
	pthread_mutex_unlock(&s->lock);
}

static void fill_counters(struct disk_counters *c, const pf_op_stats *o)
{
	c->elements = o->elements;
	c->bytes = o->bytes;
	c->busy_ns = o->busy_ns;
	c->wait_ns = o->wait_input_ns;
	c->blocked_ns = o->blocked_output_ns;
	c->parallelism = o->parallelism;
	c->depth = o->depth;
}

/* Copy the autotune decisions made since the last tick into the event ring
 * (lock held, inside an update).  Their times are since the iterator
 * started: at_base moves them onto the file's time base. */
static void autotune_events(pf_stats *s)
{
	pf_autotune_event ev;
	while (s->at_seen < 100000 && pf_iter_autotune_log(s->it, s->at_seen, &ev) == 0) {
		char reason[sizeof(ev.reason) + 1];
		memcpy(reason, ev.reason, sizeof(ev.reason));
		reason[sizeof(ev.reason)] = 0;
		put_event(s, s->at_base + ev.t_ns, ev.stage, ev.knob ? ev.knob : "?",
			  ev.old_value, ev.new_value, reason);
		s->at_seen++;
	}
}

/* Copy the dropped samples not recorded yet (the first cap_drops of the
 * file, after those of iterators attached before) and the total (lock
 * held, inside an update). */
static void drop_records(pf_stats *s)
{
	uint64_t total = s->drop_base + pf_iter_ndropped(s->it);
	uint64_t want = total < s->cap_drops ? total : s->cap_drops;
	uint64_t have = s->h->drops_total < s->cap_drops ? s->h->drops_total : s->cap_drops;
	pf_dropped_sample d;
	while (have < want && pf_iter_dropped(s->it, (size_t)(have - s->drop_base), &d) == 0) {
		struct disk_drop *r = &s->drops[have];
		memset(r, 0, sizeof(*r));
		r->id = d.id;
		r->record = d.record;
		r->file = d.file;
		copy_str(r->op, sizeof(r->op), d.op);
		copy_str(r->path, sizeof(r->path), d.path);
		copy_str(r->msg, sizeof(r->msg), d.msg);
		have++;
	}
	/* the records kept are min(total, cap): never claim one not written */
	s->h->drops_total = have < want ? have : total;
}

/* One sampler tick: live counters of every stage, knob changes, and a point
 * of the time series when one is due.  The series keeps at most
 * PF_STATS_SAMPLE_CAP points: when full, every other point is dropped and
 * the spacing doubles, so it always covers the whole run. */
static void sample(pf_stats *s, int force)
{
	pf_op_stats o[PF_STATS_MAX_STAGES];
	int n = s->nst;
	for (int i = 0; i < n; i++)
		if (pf_iter_stats(s->it, i, &o[i]) < 0)
			memset(&o[i], 0, sizeof(o[i]));
	uint64_t t = mono_ns() - s->t0;
	pthread_mutex_lock(&s->lock);
	begin_update(s);
	struct disk_hdr *h = s->h;
	autotune_events(s);
	drop_records(s);
	for (int i = 0; i < n; i++) {
		fill_counters(&s->stages[i].now, &o[i]);
		if (o[i].occupancy >= 0) {
			s->occ_sum[i] += (double)o[i].occupancy;
			s->occ_n[i]++;
		}
		s->stages[i].occ_milli = s->occ_n[i]
			? (uint64_t)(s->occ_sum[i] * 1000.0 / (double)s->occ_n[i]) : OCC_NONE;
		s->stages[i].autotuned = o[i].autotuned;
		s->stages[i].corrupt_blocks = o[i].corrupt_blocks;
		s->stages[i].skipped_records = o[i].skipped_records;
		s->stages[i].dropped_samples = o[i].dropped_samples;
		/* the autotuner logs its own decisions, with reasons; a knob
		 * that changes on a stage it does not tune is logged here */
		if (!o[i].autotuned && o[i].parallelism != s->last_par[i])
			put_event(s, t, i, "parallelism", s->last_par[i], o[i].parallelism,
				  "observed by the sampler");
		if (!o[i].autotuned && o[i].depth != s->last_depth[i])
			put_event(s, t, i, "depth", s->last_depth[i], o[i].depth,
				  "observed by the sampler");
		s->last_par[i] = o[i].parallelism;
		s->last_depth[i] = o[i].depth;
	}
	if (force || h->nsamples == 0 || t - s->last_sample_t + s->period_ns / 2 >= h->interval_ns) {
		if (h->nsamples == s->cap_samples) {
			for (size_t k = 1; k < s->cap_samples / 2; k++)
				s->samples[k] = s->samples[2 * k];
			h->nsamples = s->cap_samples / 2;
			h->interval_ns *= 2;
		}
		struct disk_sample *p = &s->samples[h->nsamples];
		memset(p, 0, sizeof(*p));
		p->t_ns = t;
		p->steps = h->steps;
		p->samples = h->samples;
		p->stall_ns = h->stall_ns;
		p->compute_ns = h->compute_ns;
		p->h2d_ns = h->h2d_ns;
		for (int i = 0; i < n; i++)
			p->st[i] = s->stages[i].now;
		h->nsamples++;
		s->last_sample_t = t;
	}
	h->updated_ns = t;
	end_update(s);
	pthread_mutex_unlock(&s->lock);
}

static void *sampler(void *arg)
{
	pf_stats *s = arg;
	struct timespec cpu;
	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t when = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec +
				s->period_ns;
		ts.tv_sec = (time_t)(when / 1000000000u);
		ts.tv_nsec = (long)(when % 1000000000u);
		while (!s->stop && pthread_cond_timedwait(&s->cv, &s->lock, &ts) != ETIMEDOUT)
			;
		if (s->stop)
			break;
		pthread_mutex_unlock(&s->lock);
		sample(s, 0);
		pthread_mutex_lock(&s->lock);
		/* what the sampler costs, for pipe-stat to report (the next
		 * update publishes it) */
		if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0)
			s->h->sampler_cpu_ns = (uint64_t)cpu.tv_sec * 1000000000u +
					       (uint64_t)cpu.tv_nsec;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int pf_stats_attach(pf_stats *s, pf_iter *it, pf_error *err)
{
	if (!s || !it)
		return pf_error_set(err, PF_EINVAL, "stats: attach needs a stats file and an iterator");
	if (s->it)
		return pf_error_set(err, PF_ESTATE, "stats: an iterator is attached already");
	int n = pf_iter_nstages(it);
	if (n > PF_STATS_MAX_STAGES)
		n = PF_STATS_MAX_STAGES;
	pthread_mutex_lock(&s->lock);
	begin_update(s);
	s->it = it;
	s->nst = n;
	s->at_seen = 0;
	s->drop_base = s->h->drops_total;
	uint64_t waited, since_start, now_t = mono_ns() - s->t0;
	pf_iter_stall(it, &waited, &since_start);
	s->at_base = now_t > since_start ? now_t - since_start : 0;
	for (int i = 0; i < n; i++) {
		pf_op_stats o;
		if (pf_iter_stats(it, i, &o) < 0)
			memset(&o, 0, sizeof(o));
		memset(&s->stages[i], 0, sizeof(s->stages[i]));
		copy_str(s->stages[i].name, sizeof(s->stages[i].name), o.name);
		s->stages[i].buffer_bytes = o.buffer_bytes;
		s->stages[i].autotuned = o.autotuned;
		fill_counters(&s->stages[i].now, &o);
		s->last_par[i] = o.parallelism;
		s->last_depth[i] = o.depth;
	}
	s->h->nstages = (uint32_t)n;
	end_update(s);
	s->stop = 0;
	pthread_mutex_unlock(&s->lock);
	sample(s, 1);
	int e = pthread_create(&s->thr, NULL, sampler, s);
	if (e) {
		s->it = NULL;
		return pf_error_set(err, PF_ENOMEM, "stats: cannot start the sampler thread: %s",
				    strerror(e));
	}
	s->running = 1;
	return 0;
}

void pf_stats_detach(pf_stats *s)
{
	if (!s || !s->it)
		return;
	if (s->running) {
		pthread_mutex_lock(&s->lock);
		s->stop = 1;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->thr, NULL);
		s->running = 0;
	}
	sample(s, 1);
	s->it = NULL;
}

int pf_stats_close(pf_stats *s, pf_error *err)
{
	if (!s)
		return 0;
	pf_stats_detach(s);
	pthread_mutex_lock(&s->lock);
	begin_update(s);
	s->h->state = ST_FINISHED;
	s->h->updated_ns = mono_ns() - s->t0;
	s->h->body_crc = body_crc(s->map, s->len);
	end_update(s);
	pthread_mutex_unlock(&s->lock);
	/* schedule the write-back; waiting for the disk (MS_SYNC) would cost
	 * the run milliseconds for nothing a reader needs (readers see the
	 * page cache) */
	int rc = 0;
	if (msync(s->map, s->len, MS_ASYNC) != 0)
		rc = pf_error_set(err, PF_EIO, "stats: cannot write the stats file back: %s",
				  strerror(errno));
	munmap(s->map, s->len);
	close(s->fd);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return rc;
}

/* ---- reader ------------------------------------------------------------- */

static int str_ok(const char *p, size_t cap)
{
	return memchr(p, 0, cap) != NULL;
}

/* A region of cap records of `bytes` each at off must lie in [lo, len). */
static int region(const char *name, const char *what, uint64_t off, uint64_t cap,
		  uint64_t bytes, uint64_t lo, uint64_t len, uint64_t *end, pf_error *err)
{
	/* caps and record sizes are bounded (< 2^16 each): no overflow */
	uint64_t sz = cap * bytes;
	if (off < lo || off > len || sz > len - off)
		return pf_error_set(err, PF_ECORRUPT,
				    "%s: %s at offset %llu (%llu bytes) is outside the file or overlaps the previous table (file %llu bytes)",
				    name, what, (unsigned long long)off, (unsigned long long)sz,
				    (unsigned long long)len);
	*end = off + sz;
	return 0;
}

static void get_counters(pf_stats_counters *c, const struct disk_counters *d)
{
	c->elements = d->elements;
	c->bytes = d->bytes;
	c->busy_ns = d->busy_ns;
	c->wait_ns = d->wait_ns;
	c->blocked_ns = d->blocked_ns;
	c->parallelism = d->parallelism;
	c->depth = d->depth;
}

int pf_stats_parse(pf_stats_snap **out, const void *buf, size_t len,
		   const char *name, pf_error *err)
{
	const uint8_t *m = buf;
	struct disk_hdr h;
	*out = NULL;
	if (!name)
		name = "stats";
	if (len < 8 || memcmp(m, MAGIC, len < 8 ? len : 8) != 0) {
		if (len < 8 && memcmp(m, MAGIC, len) == 0)
			return pf_error_set(err, PF_ETRUNC, "%s: truncated at byte %zu: a stats file header is %u bytes",
					    name, len, HDR_BYTES);
		return pf_error_set(err, PF_EFORMAT, "%s: not a pipefeed stats file (no PFSTATS magic at offset 0)",
				    name);
	}
	if (len < 20)
		return pf_error_set(err, PF_ETRUNC, "%s: truncated at byte %zu: a stats file header is %u bytes",
				    name, len, HDR_BYTES);
	memcpy(&h, m, len < sizeof(h) ? len : sizeof(h));
	if (h.endian != ENDIAN_MARK)
		return pf_error_set(err, PF_EFORMAT, "%s: byte order mark at offset 16 is 0x%08x: the file was written on a machine of the other byte order",
				    name, h.endian);
	if (h.version > PF_STATS_VERSION)
		return pf_error_set(err, PF_EVERSION, "%s: stats file version %u (offset 8) is newer than this reader's %u: use a newer pipe-stat",
				    name, h.version, PF_STATS_VERSION);
	if (h.version == 0)
		return pf_error_set(err, PF_ECORRUPT, "%s: version 0 at offset 8 is not valid", name);
	if (len < HDR_BYTES)
		return pf_error_set(err, PF_ETRUNC, "%s: truncated at byte %zu: a stats file header is %u bytes",
				    name, len, HDR_BYTES);
	if (pf_crc32c(0, m, 60) != h.layout_crc)
		return pf_error_set(err, PF_ECORRUPT, "%s: layout checksum at offset 60 does not match the table sizes at 8..59",
				    name);
	if (h.header_bytes < HDR_BYTES || h.header_bytes > 65536 ||
	    h.max_stages < 1 || h.max_stages > 256 ||
	    h.stage_bytes < V1_STAGE_BYTES || h.stage_bytes > 65536 ||
	    h.sample_cap < 2 || h.sample_cap > 65536 ||
	    h.sample_bytes < 48 + 48 * (uint64_t)h.max_stages || h.sample_bytes > 65536 ||
	    h.step_cap < 1 || h.step_cap > 65536 ||
	    h.step_bytes < sizeof(struct disk_step) || h.step_bytes > 65536 ||
	    h.hist_buckets != PF_STATS_HIST_BUCKETS || h.nhist < PF_STATS_NHIST ||
	    h.nhist > 64 || h.event_cap < 1 || h.event_cap > 65536 ||
	    h.event_bytes < sizeof(struct disk_event) || h.event_bytes > 65536)
		return pf_error_set(err, PF_ECORRUPT, "%s: table sizes at offsets 12..59 are out of range",
				    name);
	if (h.file_bytes != len)
		return pf_error_set(err, h.file_bytes > len ? PF_ETRUNC : PF_ECORRUPT,
				    "%s: the header (offset 64) says %llu bytes but the file has %zu%s",
				    name, (unsigned long long)h.file_bytes, len,
				    h.file_bytes > len ? " (truncated)" : "");
	uint64_t end = h.header_bytes;
	int rc;
	if ((rc = region(name, "stage table", h.off_stages, h.max_stages, h.stage_bytes, end, len, &end, err)) ||
	    (rc = region(name, "time series", h.off_samples, h.sample_cap, h.sample_bytes, end, len, &end, err)) ||
	    (rc = region(name, "step ring", h.off_steps, h.step_cap, h.step_bytes, end, len, &end, err)) ||
	    (rc = region(name, "histograms", h.off_hist, h.nhist, (uint64_t)h.hist_buckets * 8, end, len, &end, err)) ||
	    (rc = region(name, "event ring", h.off_events, h.event_cap, h.event_bytes, end, len, &end, err)))
		return rc;
	if (h.version < 2) { /* bytes 488..511 were reserved */
		h.off_drops = 0;
		h.drop_cap = h.drop_bytes = 0;
		h.drops_total = 0;
	} else if (h.drop_cap > 65536 || h.drop_bytes < sizeof(struct disk_drop) ||
		   h.drop_bytes > 65536) {
		return pf_error_set(err, PF_ECORRUPT, "%s: dropped-sample table sizes at offsets 496..503 are out of range",
				    name);
	} else if ((rc = region(name, "dropped-sample table", h.off_drops, h.drop_cap, h.drop_bytes,
				end, len, &end, err))) {
		return rc;
	}
	if (h.seq & 1)
		return pf_error_set(err, PF_ESTATE, "%s: caught in the middle of an update (sequence %llu at offset 112 is odd); read it again",
				    name, (unsigned long long)h.seq);
	if (h.state != ST_RUNNING && h.state != ST_FINISHED)
		return pf_error_set(err, PF_ECORRUPT, "%s: state %u at offset 120 is neither running (1) nor finished (2)",
				    name, h.state);
	if (h.state == ST_FINISHED && body_crc(m, len) != h.body_crc)
		return pf_error_set(err, PF_ECORRUPT, "%s: checksum at offset 208 does not match the contents of the finished file",
				    name);
	if (h.nstages > h.max_stages || h.nsamples > h.sample_cap)
		return pf_error_set(err, PF_ECORRUPT, "%s: %u stages / %llu samples (offsets 124, 144) pass the tables' capacity",
				    name, h.nstages, (unsigned long long)h.nsamples);
	if (!str_ok(h.label, sizeof(h.label)))
		return pf_error_set(err, PF_ECORRUPT, "%s: label at offset 216 is not terminated", name);

	pf_stats_snap *s = calloc(1, sizeof(*s));
	if (!s)
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", name);
	s->version = h.version;
	s->finished = h.state == ST_FINISHED;
	s->start_unix_ns = h.start_unix_ns;
	s->updated_ns = h.updated_ns;
	s->interval_ns = h.interval_ns;
	memcpy(s->label, h.label, sizeof(s->label));
	s->sampler_cpu_ns = h.sampler_cpu_ns;
	s->first_stall_ns = h.first_stall_ns;
	s->steps = h.steps;
	s->samples = h.samples;
	s->stall_ns = h.stall_ns;
	s->compute_ns = h.compute_ns;
	s->h2d_ns = h.h2d_ns;
	s->nstages = (int)(h.nstages < PF_STATS_MAX_STAGES ? h.nstages : PF_STATS_MAX_STAGES);
	for (int i = 0; i < s->nstages; i++) {
		struct disk_stage d;
		uint64_t off = h.off_stages + (uint64_t)i * h.stage_bytes;
		/* a version 1 record is shorter: its later fields read as 0 */
		memset(&d, 0, sizeof(d));
		memcpy(&d, m + off, h.stage_bytes < sizeof(d) ? h.stage_bytes : sizeof(d));
		if (!str_ok(d.name, sizeof(d.name))) {
			pf_stats_snap_free(s);
			return pf_error_set(err, PF_ECORRUPT, "%s: stage %d name at offset %llu is not terminated",
					    name, i, (unsigned long long)off);
		}
		memcpy(s->stages[i].name, d.name, sizeof(d.name));
		s->stages[i].autotuned = d.autotuned;
		s->stages[i].buffer_bytes = d.buffer_bytes;
		s->stages[i].corrupt_blocks = d.corrupt_blocks;
		s->stages[i].skipped_records = d.skipped_records;
		s->stages[i].dropped_samples = d.dropped_samples;
		s->stages[i].occupancy = d.occ_milli == OCC_NONE ? -1.0 : d.occ_milli / 1000.0;
		get_counters(&s->stages[i].now, &d.now);
	}

	/* histograms: every step is counted once in each */
	for (int k = 0; k < PF_STATS_NHIST; k++) {
		uint64_t sum = 0;
		uint64_t off = h.off_hist + (uint64_t)k * h.hist_buckets * 8;
		memcpy(s->hist[k], m + off, sizeof(s->hist[k]));
		for (int b = 0; b < PF_STATS_HIST_BUCKETS; b++)
			sum += s->hist[k][b];
		if (sum != h.steps) {
			pf_stats_snap_free(s);
			return pf_error_set(err, PF_ECORRUPT, "%s: histogram %d at offset %llu counts %llu steps, the header %llu",
					    name, k, (unsigned long long)off, (unsigned long long)sum,
					    (unsigned long long)h.steps);
		}
	}

	s->nsamples = (size_t)h.nsamples;
	s->samples_ts = calloc(s->nsamples ? s->nsamples : 1, sizeof(*s->samples_ts));
	s->nsteps = (size_t)(h.steps < h.step_cap ? h.steps : h.step_cap);
	s->steprecs = calloc(s->nsteps ? s->nsteps : 1, sizeof(*s->steprecs));
	s->events_total = h.events_total;
	s->nevents = (size_t)(h.events_total < h.event_cap ? h.events_total : h.event_cap);
	s->events = calloc(s->nevents ? s->nevents : 1, sizeof(*s->events));
	s->drops_total = h.drops_total;
	s->ndrops = (size_t)(h.drops_total < h.drop_cap ? h.drops_total : h.drop_cap);
	s->drops = calloc(s->ndrops ? s->ndrops : 1, sizeof(*s->drops));
	if (!s->samples_ts || !s->steprecs || !s->events || !s->drops) {
		pf_stats_snap_free(s);
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", name);
	}
	for (size_t k = 0; k < s->nsamples; k++) {
		struct disk_sample d;
		uint64_t off = h.off_samples + k * h.sample_bytes;
		/* a record may be shorter than v1's when max_stages is smaller */
		memset(&d, 0, sizeof(d));
		memcpy(&d, m + off, h.sample_bytes < sizeof(d) ? h.sample_bytes : sizeof(d));
		pf_stats_sample *p = &s->samples_ts[k];
		if (k && d.t_ns < s->samples_ts[k - 1].t_ns) {
			pf_stats_snap_free(s);
			return pf_error_set(err, PF_ECORRUPT, "%s: sample %zu at offset %llu goes back in time",
					    name, k, (unsigned long long)off);
		}
		p->t_ns = d.t_ns;
		p->steps = d.steps;
		p->samples = d.samples;
		p->stall_ns = d.stall_ns;
		p->compute_ns = d.compute_ns;
		p->h2d_ns = d.h2d_ns;
		for (int i = 0; i < s->nstages; i++)
			get_counters(&p->st[i], &d.st[i]);
	}
	uint64_t first = h.steps - s->nsteps;
	for (size_t k = 0; k < s->nsteps; k++) {
		struct disk_step d;
		uint64_t off = h.off_steps + ((first + k) % h.step_cap) * h.step_bytes;
		memcpy(&d, m + off, sizeof(d));
		s->steprecs[k].t_ns = d.t_ns;
		s->steprecs[k].stall_ns = d.stall_ns;
		s->steprecs[k].compute_ns = d.compute_ns;
		s->steprecs[k].h2d_ns = d.h2d_ns;
		s->steprecs[k].samples = d.samples;
	}
	first = h.events_total - s->nevents;
	for (size_t k = 0; k < s->nevents; k++) {
		struct disk_event d;
		uint64_t off = h.off_events + ((first + k) % h.event_cap) * h.event_bytes;
		memcpy(&d, m + off, sizeof(d));
		if (!str_ok(d.knob, sizeof(d.knob)) || !str_ok(d.reason, sizeof(d.reason)) ||
		    d.stage < -1 || d.stage >= s->nstages) {
			pf_stats_snap_free(s);
			return pf_error_set(err, PF_ECORRUPT, "%s: event at offset %llu: bad stage or unterminated text",
					    name, (unsigned long long)off);
		}
		pf_stats_eventrec *e = &s->events[k];
		e->t_ns = d.t_ns;
		e->stage = d.stage;
		e->old_value = d.old_value;
		e->new_value = d.new_value;
		memcpy(e->knob, d.knob, sizeof(e->knob));
		memcpy(e->reason, d.reason, sizeof(e->reason));
	}
	for (size_t k = 0; k < s->ndrops; k++) {
		struct disk_drop d;
		uint64_t off = h.off_drops + k * h.drop_bytes;
		memcpy(&d, m + off, sizeof(d));
		if (!str_ok(d.op, sizeof(d.op)) || !str_ok(d.path, sizeof(d.path)) ||
		    !str_ok(d.msg, sizeof(d.msg))) {
			pf_stats_snap_free(s);
			return pf_error_set(err, PF_ECORRUPT, "%s: dropped sample at offset %llu: unterminated text",
					    name, (unsigned long long)off);
		}
		pf_stats_droprec *r = &s->drops[k];
		r->id = d.id;
		r->record = d.record;
		r->file = d.file;
		memcpy(r->op, d.op, sizeof(r->op));
		memcpy(r->path, d.path, sizeof(r->path));
		memcpy(r->msg, d.msg, sizeof(r->msg));
	}
	*out = s;
	return 0;
}

static int pread_all(int fd, void *buf, size_t n, off_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, (char *)buf + got, n - got, off + (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : (int)got;
		got += (size_t)r;
	}
	return (int)got;
}

int pf_stats_read_file(pf_stats_snap **out, const char *path, pf_error *err)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return pf_error_set(err, e == ENOENT ? PF_ENOENT : PF_EIO, "%s: cannot open: %s",
				    path, strerror(e));
	}
	int rc = 0;
	uint8_t *buf = NULL;
	for (int attempt = 0; attempt < 200; attempt++) {
		struct stat st;
		if (fstat(fd, &st) < 0) {
			rc = pf_error_set(err, PF_EIO, "%s: cannot stat: %s", path, strerror(errno));
			break;
		}
		if ((uint64_t)st.st_size > MAX_FILE_BYTES) {
			rc = pf_error_set(err, PF_ELIMIT, "%s: %llu bytes is larger than any stats file (%u MiB at most)",
					  path, (unsigned long long)st.st_size, MAX_FILE_BYTES >> 20);
			break;
		}
		size_t len = (size_t)st.st_size;
		free(buf);
		buf = malloc(len ? len : 1);
		if (!buf) {
			rc = pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
			break;
		}
		uint64_t s1 = 0, s2 = 0;
		int got = pread_all(fd, buf, len, 0);
		if (got < 0) {
			rc = pf_error_set(err, PF_EIO, "%s: read error: %s", path, strerror(-got));
			break;
		}
		if (len >= 120) {
			memcpy(&s1, buf + 112, 8);
			if (pread_all(fd, &s2, 8, 112) != 8)
				s2 = s1 + 1;
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
		}
		pf_error e = { 0 };
		rc = pf_stats_parse(out, buf, (size_t)got, path, &e);
		/* a copy torn by the writer (odd or changed seq, or a check
		 * that failed on a half-written image): try again */
		if (rc == 0 && s1 == s2)
			break;
		if (rc == 0) {
			pf_stats_snap_free(*out);
			*out = NULL;
		}
		if (rc != 0 && s1 == s2 && !(s1 & 1) && rc != PF_ESTATE) {
			pf_error_set(err, e.code, "%s", e.msg);
			break; /* stable and bad: a real error */
		}
		if (attempt == 199) {
			rc = rc ? rc : PF_ESTATE;
			if (e.code)
				pf_error_set(err, e.code, "%s", e.msg);
			else
				pf_error_set(err, PF_ESTATE, "%s: changing too fast to read a consistent copy", path);
			break;
		}
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
	}
	free(buf);
	close(fd);
	return rc;
}

void pf_stats_snap_free(pf_stats_snap *s)
{
	if (!s)
		return;
	free(s->samples_ts);
	free(s->steprecs);
	free(s->events);
	free(s->drops);
	free(s);
}

uint64_t pf_stats_quantile(const pf_stats_snap *s, int h, double q)
{
	if (!s || h < 0 || h >= PF_STATS_NHIST)
		return 0;
	uint64_t total = 0;
	for (int b = 0; b < PF_STATS_HIST_BUCKETS; b++)
		total += s->hist[h][b];
	if (!total)
		return 0;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	/* the smallest bucket where the cumulative count reaches q * total */
	double want = q * (double)total;
	uint64_t cum = 0;
	for (int b = 0; b < PF_STATS_HIST_BUCKETS; b++) {
		cum += s->hist[h][b];
		if (cum && (double)cum >= want) {
			uint64_t lo, hi;
			pf_stats_bucket_range(b, &lo, &hi);
			return lo + (hi - lo) / 2;
		}
	}
	return 0;
}

/* ---- the dropped-sample log (maps with isolate) ------------------------- */

struct pf_drop_log {
	pthread_mutex_t lock;
	_Atomic uint64_t total;       /* all drops, kept or not */
	size_t n;                     /* kept (at most PF_DROPPED_LOG_MAX) */
	pf_dropped_sample ent[PF_DROPPED_LOG_MAX];
};

struct pf_drop_log *pf_drop_log_new(void)
{
	struct pf_drop_log *l = calloc(1, sizeof(*l));
	if (l)
		pthread_mutex_init(&l->lock, NULL);
	return l;
}

void pf_drop_log_free(struct pf_drop_log *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

void pf_drop_log_clear(struct pf_drop_log *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->n = 0;
	atomic_store(&l->total, 0);
	pthread_mutex_unlock(&l->lock);
}

void pf_drop_log_add(struct pf_drop_log *l, uint64_t id, const char *path,
		     const char *op, const char *msg)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	atomic_fetch_add(&l->total, 1);
	if (l->n < PF_DROPPED_LOG_MAX) {
		pf_dropped_sample *d = &l->ent[l->n++];
		memset(d, 0, sizeof(*d));
		d->id = id;
		d->file = (uint32_t)pf_id_file(id);
		d->record = pf_id_rec(id);
		snprintf(d->path, sizeof(d->path), "%s", path ? path : "");
		snprintf(d->op, sizeof(d->op), "%s", op ? op : "");
		snprintf(d->msg, sizeof(d->msg), "%s", msg ? msg : "");
	}
	pthread_mutex_unlock(&l->lock);
}

/* The logs of the running plan: every stage's own, and the map fused into
 * a shards source. */
static struct pf_drop_log *stage_log(const pf_iter *it, int i)
{
	const pf_op *op = it->stages[i];
	return op->drops ? op->drops : op->fused_map ? op->fused_map->drops : NULL;
}

int pf_iter_dropped(const pf_iter *it, size_t i, pf_dropped_sample *out)
{
	for (int k = 0; it && k < it->nstages; k++) {
		struct pf_drop_log *l = stage_log(it, k);
		if (!l)
			continue;
		pthread_mutex_lock(&l->lock);
		size_t n = l->n;
		if (i < n)
			*out = l->ent[i];
		pthread_mutex_unlock(&l->lock);
		if (i < n)
			return 0;
		i -= n;
	}
	return PF_END;
}

uint64_t pf_iter_ndropped(const pf_iter *it)
{
	uint64_t n = 0;
	for (int k = 0; it && k < it->nstages; k++) {
		struct pf_drop_log *l = stage_log(it, k);
		if (l)
			n += atomic_load(&l->total);
	}
	return n;
}
