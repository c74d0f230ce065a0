/*
 * stats_read.c - the stats file's validating reader (a snapshot of a file
 * another process may be writing), its histogram buckets and quantiles.
 * Layout: doc/STATS.md; the writer is stats_write.c.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <stdio.h>
#include <unistd.h>

#include "pf_checksum.h"
#include "pf_file.h"
#include "pf_stats.h"
#include "pf_stats_disk.h"

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

/* Check the table sizes in *h against the len bytes of the file, and the
 * state, counts and label: 0, or the PF_E* code with err filled.  A
 * version 1 header gets an empty dropped-sample table. */
static int check_tables(struct disk_hdr *h, const uint8_t *m, size_t len, const char *name,
			pf_error *err)
{
	if (h->file_bytes != len)
		return pf_error_set(err, h->file_bytes > len ? PF_ETRUNC : PF_ECORRUPT,
				    "%s: the header (offset 64) says %llu bytes but the file has %zu%s",
				    name, (unsigned long long)h->file_bytes, len,
				    h->file_bytes > len ? " (truncated)" : "");
	uint64_t end = h->header_bytes;
	int rc;
	if ((rc = region(name, "stage table", h->off_stages, h->max_stages, h->stage_bytes, end, len, &end, err)) ||
	    (rc = region(name, "time series", h->off_samples, h->sample_cap, h->sample_bytes, end, len, &end, err)) ||
	    (rc = region(name, "step ring", h->off_steps, h->step_cap, h->step_bytes, end, len, &end, err)) ||
	    (rc = region(name, "histograms", h->off_hist, h->nhist, (uint64_t)h->hist_buckets * 8, end, len, &end, err)) ||
	    (rc = region(name, "event ring", h->off_events, h->event_cap, h->event_bytes, end, len, &end, err)))
		return rc;
	if (h->version < 2) { /* bytes 488..511 were reserved */
		h->off_drops = 0;
		h->drop_cap = h->drop_bytes = 0;
		h->drops_total = 0;
	} else if (h->drop_cap > 65536 || h->drop_bytes < sizeof(struct disk_drop) ||
		   h->drop_bytes > 65536) {
		return pf_error_set(err, PF_ECORRUPT, "%s: dropped-sample table sizes at offsets 496..503 are out of range",
				    name);
	} else if ((rc = region(name, "dropped-sample table", h->off_drops, h->drop_cap, h->drop_bytes,
				end, len, &end, err))) {
		return rc;
	}
	if (h->seq & 1)
		return pf_error_set(err, PF_ESTATE, "%s: caught in the middle of an update (sequence %llu at offset 112 is odd); read it again",
				    name, (unsigned long long)h->seq);
	if (h->state != ST_RUNNING && h->state != ST_FINISHED)
		return pf_error_set(err, PF_ECORRUPT, "%s: state %u at offset 120 is neither running (1) nor finished (2)",
				    name, h->state);
	if (h->state == ST_FINISHED && pf_stats_body_crc(m, len) != h->body_crc)
		return pf_error_set(err, PF_ECORRUPT, "%s: checksum at offset 208 does not match the contents of the finished file",
				    name);
	if (h->nstages > h->max_stages || h->nsamples > h->sample_cap)
		return pf_error_set(err, PF_ECORRUPT, "%s: %u stages / %llu samples (offsets 124, 144) pass the tables' capacity",
				    name, h->nstages, (unsigned long long)h->nsamples);
	if (!str_ok(h->label, sizeof(h->label)))
		return pf_error_set(err, PF_ECORRUPT, "%s: label at offset 216 is not terminated", name);
	return 0;
}

/* Copy the header of the len bytes at m into *h and check it: 0, or the
 * PF_E* code with err filled (names the offset of what is wrong). */
static int check_header(struct disk_hdr *h, const uint8_t *m, size_t len, const char *name,
			pf_error *err)
{
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
	memcpy(h, m, len < sizeof(*h) ? len : sizeof(*h));
	if (h->endian != ENDIAN_MARK)
		return pf_error_set(err, PF_EFORMAT, "%s: byte order mark at offset 16 is 0x%08x: the file was written on a machine of the other byte order",
				    name, h->endian);
	if (h->version > PF_STATS_VERSION)
		return pf_error_set(err, PF_EVERSION, "%s: stats file version %u (offset 8) is newer than this reader's %u: use a newer pipe-stat",
				    name, h->version, PF_STATS_VERSION);
	if (h->version == 0)
		return pf_error_set(err, PF_ECORRUPT, "%s: version 0 at offset 8 is not valid", name);
	if (len < HDR_BYTES)
		return pf_error_set(err, PF_ETRUNC, "%s: truncated at byte %zu: a stats file header is %u bytes",
				    name, len, HDR_BYTES);
	if (pf_crc32c(0, m, 60) != h->layout_crc)
		return pf_error_set(err, PF_ECORRUPT, "%s: layout checksum at offset 60 does not match the table sizes at 8..59",
				    name);
	if (h->header_bytes < HDR_BYTES || h->header_bytes > 65536 ||
	    h->max_stages < 1 || h->max_stages > 256 ||
	    h->stage_bytes < V1_STAGE_BYTES || h->stage_bytes > 65536 ||
	    h->sample_cap < 2 || h->sample_cap > 65536 ||
	    h->sample_bytes < 48 + 48 * (uint64_t)h->max_stages || h->sample_bytes > 65536 ||
	    h->step_cap < 1 || h->step_cap > 65536 ||
	    h->step_bytes < sizeof(struct disk_step) || h->step_bytes > 65536 ||
	    h->hist_buckets != PF_STATS_HIST_BUCKETS || h->nhist < PF_STATS_NHIST ||
	    h->nhist > 64 || h->event_cap < 1 || h->event_cap > 65536 ||
	    h->event_bytes < sizeof(struct disk_event) || h->event_bytes > 65536)
		return pf_error_set(err, PF_ECORRUPT, "%s: table sizes at offsets 12..59 are out of range",
				    name);
	return check_tables(h, m, len, name, err);
}

/* A snapshot with the header's totals, or NULL when out of memory. */
static pf_stats_snap *snap_new(const struct disk_hdr *h)
{
	pf_stats_snap *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->version = h->version;
	s->finished = h->state == ST_FINISHED;
	s->start_unix_ns = h->start_unix_ns;
	s->updated_ns = h->updated_ns;
	s->interval_ns = h->interval_ns;
	memcpy(s->label, h->label, sizeof(s->label));
	s->sampler_cpu_ns = h->sampler_cpu_ns;
	s->first_stall_ns = h->first_stall_ns;
	s->steps = h->steps;
	s->samples = h->samples;
	s->stall_ns = h->stall_ns;
	s->compute_ns = h->compute_ns;
	s->h2d_ns = h->h2d_ns;
	s->nstages = (int)(h->nstages < PF_STATS_MAX_STAGES ? h->nstages : PF_STATS_MAX_STAGES);
	return s;
}

/* The stage table into s (s->nstages set): 0 or PF_ECORRUPT. */
static int read_stages(pf_stats_snap *s, const struct disk_hdr *h, const uint8_t *m,
		       const char *name, pf_error *err)
{
	for (int i = 0; i < s->nstages; i++) {
		struct disk_stage d;
		uint64_t off = h->off_stages + (uint64_t)i * h->stage_bytes;
		/* a version 1 record is shorter: its later fields read as 0 */
		memset(&d, 0, sizeof(d));
		memcpy(&d, m + off, h->stage_bytes < sizeof(d) ? h->stage_bytes : sizeof(d));
		if (!str_ok(d.name, sizeof(d.name)))
			return pf_error_set(err, PF_ECORRUPT, "%s: stage %d name at offset %llu is not terminated",
					    name, i, (unsigned long long)off);
		memcpy(s->stages[i].name, d.name, sizeof(d.name));
		s->stages[i].autotuned = d.autotuned;
		s->stages[i].buffer_bytes = d.buffer_bytes;
		s->stages[i].corrupt_blocks = d.corrupt_blocks;
		s->stages[i].skipped_records = d.skipped_records;
		s->stages[i].dropped_samples = d.dropped_samples;
		s->stages[i].cpu_ns = d.cpu_ns;
		s->stages[i].occupancy = d.occ_milli == OCC_NONE ? -1.0 : d.occ_milli / 1000.0;
		get_counters(&s->stages[i].now, &d.now);
	}
	return 0;
}

/* The histograms into s; each must count every step once: 0 or PF_ECORRUPT. */
static int read_hist(pf_stats_snap *s, const struct disk_hdr *h, const uint8_t *m,
		     const char *name, pf_error *err)
{
	for (int k = 0; k < PF_STATS_NHIST; k++) {
		uint64_t sum = 0;
		uint64_t off = h->off_hist + (uint64_t)k * h->hist_buckets * 8;
		memcpy(s->hist[k], m + off, sizeof(s->hist[k]));
		for (int b = 0; b < PF_STATS_HIST_BUCKETS; b++)
			sum += s->hist[k][b];
		if (sum != h->steps)
			return pf_error_set(err, PF_ECORRUPT, "%s: histogram %d at offset %llu counts %llu steps, the header %llu",
					    name, k, (unsigned long long)off, (unsigned long long)sum,
					    (unsigned long long)h->steps);
	}
	return 0;
}

/* Size and allocate the time series, the steps, events and dropped samples
 * kept: 0 or PF_ENOMEM. */
static int alloc_tables(pf_stats_snap *s, const struct disk_hdr *h, const char *name,
			pf_error *err)
{
	s->nsamples = (size_t)h->nsamples;
	s->samples_ts = calloc(s->nsamples ? s->nsamples : 1, sizeof(*s->samples_ts));
	s->nsteps = (size_t)(h->steps < h->step_cap ? h->steps : h->step_cap);
	s->steprecs = calloc(s->nsteps ? s->nsteps : 1, sizeof(*s->steprecs));
	s->events_total = h->events_total;
	s->nevents = (size_t)(h->events_total < h->event_cap ? h->events_total : h->event_cap);
	s->events = calloc(s->nevents ? s->nevents : 1, sizeof(*s->events));
	s->drops_total = h->drops_total;
	s->ndrops = (size_t)(h->drops_total < h->drop_cap ? h->drops_total : h->drop_cap);
	s->drops = calloc(s->ndrops ? s->ndrops : 1, sizeof(*s->drops));
	if (!s->samples_ts || !s->steprecs || !s->events || !s->drops)
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", name);
	return 0;
}

/* The time series into s (in time order): 0 or PF_ECORRUPT. */
static int read_samples(pf_stats_snap *s, const struct disk_hdr *h, const uint8_t *m,
			const char *name, pf_error *err)
{
	for (size_t k = 0; k < s->nsamples; k++) {
		struct disk_sample d;
		uint64_t off = h->off_samples + k * h->sample_bytes;
		/* a record may be shorter than v1's when max_stages is smaller */
		memset(&d, 0, sizeof(d));
		memcpy(&d, m + off, h->sample_bytes < sizeof(d) ? h->sample_bytes : sizeof(d));
		pf_stats_sample *p = &s->samples_ts[k];
		if (k && d.t_ns < s->samples_ts[k - 1].t_ns)
			return pf_error_set(err, PF_ECORRUPT, "%s: sample %zu at offset %llu goes back in time",
					    name, k, (unsigned long long)off);
		p->t_ns = d.t_ns;
		p->steps = d.steps;
		p->samples = d.samples;
		p->stall_ns = d.stall_ns;
		p->compute_ns = d.compute_ns;
		p->h2d_ns = d.h2d_ns;
		for (int i = 0; i < s->nstages; i++)
			get_counters(&p->st[i], &d.st[i]);
	}
	return 0;
}

/* The last steps of the ring into s, oldest first. */
static void read_steps(pf_stats_snap *s, const struct disk_hdr *h, const uint8_t *m)
{
	uint64_t first = h->steps - s->nsteps;
	for (size_t k = 0; k < s->nsteps; k++) {
		struct disk_step d;
		uint64_t off = h->off_steps + ((first + k) % h->step_cap) * h->step_bytes;
		memcpy(&d, m + off, sizeof(d));
		s->steprecs[k].t_ns = d.t_ns;
		s->steprecs[k].stall_ns = d.stall_ns;
		s->steprecs[k].compute_ns = d.compute_ns;
		s->steprecs[k].h2d_ns = d.h2d_ns;
		s->steprecs[k].samples = d.samples;
		s->steprecs[k].copy_lead_us = d.copy_lead_us;
	}
}

/* The last events of the ring into s, oldest first: 0 or PF_ECORRUPT. */
static int read_events(pf_stats_snap *s, const struct disk_hdr *h, const uint8_t *m,
		       const char *name, pf_error *err)
{
	uint64_t first = h->events_total - s->nevents;
	for (size_t k = 0; k < s->nevents; k++) {
		struct disk_event d;
		uint64_t off = h->off_events + ((first + k) % h->event_cap) * h->event_bytes;
		memcpy(&d, m + off, sizeof(d));
		if (!str_ok(d.knob, sizeof(d.knob)) || !str_ok(d.reason, sizeof(d.reason)) ||
		    d.stage < -1 || d.stage >= s->nstages)
			return pf_error_set(err, PF_ECORRUPT, "%s: event at offset %llu: bad stage or unterminated text",
					    name, (unsigned long long)off);
		pf_stats_eventrec *e = &s->events[k];
		e->t_ns = d.t_ns;
		e->stage = d.stage;
		e->old_value = d.old_value;
		e->new_value = d.new_value;
		memcpy(e->knob, d.knob, sizeof(e->knob));
		memcpy(e->reason, d.reason, sizeof(e->reason));
	}
	return 0;
}

/* The dropped samples kept into s: 0 or PF_ECORRUPT. */
static int read_drops(pf_stats_snap *s, const struct disk_hdr *h, const uint8_t *m,
		      const char *name, pf_error *err)
{
	for (size_t k = 0; k < s->ndrops; k++) {
		struct disk_drop d;
		uint64_t off = h->off_drops + k * h->drop_bytes;
		memcpy(&d, m + off, sizeof(d));
		if (!str_ok(d.op, sizeof(d.op)) || !str_ok(d.path, sizeof(d.path)) ||
		    !str_ok(d.msg, sizeof(d.msg)))
			return pf_error_set(err, PF_ECORRUPT, "%s: dropped sample at offset %llu: unterminated text",
					    name, (unsigned long long)off);
		pf_stats_droprec *r = &s->drops[k];
		r->id = d.id;
		r->record = d.record;
		r->file = d.file;
		memcpy(r->op, d.op, sizeof(r->op));
		memcpy(r->path, d.path, sizeof(r->path));
		memcpy(r->msg, d.msg, sizeof(r->msg));
	}
	return 0;
}

int pf_stats_parse(pf_stats_snap **out, const void *buf, size_t len,
		   const char *name, pf_error *err)
{
	const uint8_t *m = buf;
	struct disk_hdr h;
	*out = NULL;
	if (!name)
		name = "stats";
	int rc = check_header(&h, m, len, name, err);
	if (rc)
		return rc;
	pf_stats_snap *s = snap_new(&h);
	if (!s)
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", name);
	if ((rc = read_stages(s, &h, m, name, err)) || (rc = read_hist(s, &h, m, name, err)) ||
	    (rc = alloc_tables(s, &h, name, err)) || (rc = read_samples(s, &h, m, name, err))) {
		pf_stats_snap_free(s);
		return rc;
	}
	read_steps(s, &h, m);
	if ((rc = read_events(s, &h, m, name, err)) || (rc = read_drops(s, &h, m, name, err))) {
		pf_stats_snap_free(s);
		return rc;
	}
	*out = s;
	return 0;
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
		ssize_t got = pf_pread_full(fd, buf, len, 0, NULL);
		if (got < 0) {
			rc = pf_error_set(err, PF_EIO, "%s: read error: %s", path, strerror((int)-got));
			break;
		}
		if (len >= 120) {
			memcpy(&s1, buf + 112, 8);
			if (pf_pread_full(fd, &s2, 8, 112, NULL) != 8)
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
