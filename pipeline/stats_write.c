/*
 * stats_write.c - the stats file's writer: the mapped file, the sampler
 * thread, step records and knob events.  Layout: doc/STATS.md; the reader
 * is stats_read.c.
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

#include "pf_drop_log.h"
#include "pf_pipeline_int.h"
#include "pf_stats.h"
#include "pf_stats_disk.h"

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

/* Fill the header of a new file (seq left odd: the caller's end_update
 * publishes it). */
static void write_header(pf_stats *s, const layout *l, const pf_stats_opts *opts)
{
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
	h->file_bytes = l->bytes;
	h->off_stages = l->off_stages;
	h->off_samples = l->off_samples;
	h->off_steps = l->off_steps;
	h->off_hist = l->off_hist;
	h->off_events = l->off_events;
	h->off_drops = l->off_drops;
	h->drop_cap = s->cap_drops;
	h->drop_bytes = sizeof(struct disk_drop);
	h->state = ST_RUNNING;
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	h->start_unix_ns = (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec;
	h->interval_ns = s->period_ns;
	copy_str(h->label, sizeof(h->label), opts ? opts->label : NULL);
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

	write_header(s, &l, opts);
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
	pf_stats_step_copy(s, stall_ns, compute_ns, h2d_ns, samples, 0);
}

void pf_stats_step_copy(pf_stats *s, uint64_t stall_ns, uint64_t compute_ns,
			uint64_t h2d_ns, uint32_t samples, uint64_t copy_lead_ns)
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
	r->copy_lead_us = copy_lead_ns / 1000 > UINT32_MAX ? UINT32_MAX
							    : (uint32_t)(copy_lead_ns / 1000);
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
		s->stages[i].cpu_ns = o[i].cpu_ns;
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
	s->h->body_crc = pf_stats_body_crc(s->map, s->len);
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

/* ---- the dropped samples of the running plan ---------------------------- */

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
		size_t n;
		if (pf_drop_log_get(l, i, out, &n) == 0)
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
			n += pf_drop_log_total(l);
	}
	return n;
}
