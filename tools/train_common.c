/*
 * train_common.c - what pipe-train's training loop (train_loop.c) and its
 * batch-size sweep (train_sweep.c) share: the clock, exiting on an error,
 * building the pipeline, binding a device batch to the model's input, the
 * damage counters.  Calls nothing else in tools/ (see train.h).
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pf_devfeed.h"
#include "pf_model.h"
#include "pf_spec.h"
#include "pipefeed.h"
#include "train.h"

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void die(const char *what, const pf_error *e)
{
	fprintf(stderr, "pipe-train: %s: %s\n", what, e->msg[0] ? e->msg
							  : pf_strerror(e->code));
	exit(1);
}

/* This rank's share of the host's CPUs: all of them alone; with L ranks
 * on the host, 1/L each (at least one), so that L ranks' pipelines (and
 * their autotuning, pf_options.cpu_budget) do not start L times the
 * threads the host has and take the cores their ranks compute on. */
static int cpu_share(const opts *o)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	int l = o->local_ranks > 1 ? o->local_ranks : 1;
	return n / l > 1 ? (int)(n / l) : 1;
}

/* --read-threads / --map-threads: auto is the device feed's default for
 * this rank's CPUs (pf_devfeed_read_threads / pf_devfeed_map_threads). */
static int read_threads(const opts *o)
{
	return o->read_threads == PF_AUTOTUNE ? pf_devfeed_read_threads(cpu_share(o))
					      : o->read_threads;
}

static int map_threads(const opts *o)
{
	return o->map_threads == PF_AUTOTUNE ? pf_devfeed_map_threads(cpu_share(o))
					     : o->map_threads;
}

/* The training or eval pipeline: shards, then --pipeline or the flags.
 * With a device, batches are built straight in its pinned memory (the
 * pipeline must then be freed before the device is closed). */
pf_pipeline *build(const opts *o, const char *const *files, int nfiles,
			  int train, pf_device *dev)
{
	pf_error err = { 0 };
	pf_options po = { .seed = o->seed };
	if (o->local_ranks > 1)
		po.cpu_budget = cpu_share(o);
	if (dev) {
		po.batch_alloc = pf_devfeed_pinned_alloc;
		po.batch_free = pf_devfeed_pinned_free;
		po.alloc_user = dev;
	}
	pf_pipeline *p;
	if (pf_pipeline_new(&p, &po, &err) < 0)
		die("pipeline", &err);
	pf_source_opts so = { .num_parallel_reads = read_threads(o),
			      .skip_corrupt = o->skip_corrupt,
			      .max_corrupt = o->max_corrupt };
	if (train && o->read_world > 1) { /* this rank's blocks (train_split.c) */
		so.read_world = o->read_world;
		so.read_rank = o->read_rank;
	}
	if (nfiles && pf_shards(p, files, (size_t)nfiles, &so, &err) < 0)
		die("shards", &err);
	const char *spec = train ? o->pipeline : o->eval_pipeline;
	if (spec) {
		if (pf_spec_apply(p, spec, &err) < 0) {
			/* what the user wrote does not build: a usage error */
			fprintf(stderr, "pipe-train: %s: %s\n",
				train ? "--pipeline" : "--eval-pipeline", err.msg);
			exit(err.code == PF_ENOMEM ? 1 : 2);
		}
		return p;
	}
	pf_map_opts mo = { .num_parallel_calls = map_threads(o),
			   .isolate = o->isolate };
	if (pf_map(p, "decode", train && o->read_world > 1 ? "id=1" : "", &mo, &err) < 0 ||
	    (train && o->cache_on && pf_cache(p, o->cache, 0, &err) < 0) ||
	    (train && o->shuffle > 0 && pf_shuffle(p, o->shuffle, NULL, &err) < 0) ||
	    pf_batch(p, o->batch, 0, &err) < 0 ||
	    pf_prefetch(p, o->prefetch, &err) < 0)
		die("pipeline", &err);
	return p;
}

/* Image and label fields of a batch schema, or exit with a message. */
void find_fields(const pf_schema *s, int *img, int *lab)
{
	*img = pf_schema_find(s, "image");
	*lab = pf_schema_find(s, "label");
	for (int i = 0; i < s->nfields; i++) {
		if (*img < 0 && s->fields[i].ndim > 0)
			*img = i;
		if (*lab < 0 && s->fields[i].ndim == 0)
			*lab = i;
	}
	if (*img < 0 || *lab < 0) {
		char txt[512];
		pf_schema_format(s, txt, sizeof(txt));
		fprintf(stderr, "pipe-train: batches (%s) need an array field (image) and a scalar field (label)\n",
			txt);
		exit(1);
	}
}

/*
 * Point the model input at a device batch.  The first batch of a feed fixes
 * its field indices and dtypes (train and eval feeds each have their own:
 * their pipelines may differ, u8 images in one and f32 in the other).
 */
void bind_input(feed_input *fi, const pf_devbatch *b, int nin)
{
	pf_error err = { 0 };
	if (fi->img < 0) {
		find_fields(b->schema, &fi->img, &fi->lab);
		if (pf_model_input_types(&fi->in, b->schema->fields[fi->img].dtype,
					 b->schema->fields[fi->lab].dtype, &err) < 0)
			die("batch", &err);
		int64_t per = pf_field_count(&b->schema->fields[fi->img]);
		if (per != nin) {
			fprintf(stderr, "pipe-train: model input is %d values but '%s' has %lld per sample\n",
				nin, b->schema->fields[fi->img].name, (long long)per);
			exit(1);
		}
	}
	fi->in.x = b->data[fi->img];
	fi->in.labels = b->data[fi->lab];
	fi->in.rows = (int)b->batch;
}

/* The damaged-input counters of the done: line and the JSON object, summed
 * over the iterator's stages. */
damage damage_sum(const pf_iter *it)
{
	damage d = { 0 };
	for (int i = 0; it && i < pf_iter_nstages(it); i++) {
		pf_op_stats s;
		if (pf_iter_stats(it, i, &s) < 0)
			continue;
		d.skipped_records += s.skipped_records;
		d.corrupt_blocks += s.corrupt_blocks;
		d.dropped_samples += s.dropped_samples;
	}
	return d;
}

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

uint64_t row_hash(uint64_t k, const unsigned char *x, size_t xn, const unsigned char *lab,
		  size_t ln)
{
	uint64_t h = fnv1a(fnv1a(1469598103934665603ull, x, xn), lab, ln);
	h += (k + 1) * 0x9e3779b97f4a7c15ull; /* splitmix64 of (hash, row) */
	h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
	h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
	return h ^ (h >> 31);
}

/* --fingerprint's hash of batch b: the sum (mod 2^64) of its rows'
 * row_hash, the image and label bytes copied back from the device (a
 * testing aid: it syncs the stream).  A sum over rows, so ranks that each
 * hold some rows of a batch add up their parts to the same hash. */
uint64_t batch_hash(pf_device *dev, pf_stream *cs, const feed_input *fi,
		   const pf_devbatch *b)
{
	static unsigned char *host;
	static size_t cap;
	pf_error err = { 0 };
	size_t n[2], at = 0;
	int fields[2] = { fi->img, fi->lab };
	for (int k = 0; k < 2; k++)
		n[k] = (size_t)b->nitems[fields[k]] *
		       pf_dtype_size(b->schema->fields[fields[k]].dtype);
	if (n[0] + n[1] > cap) {
		unsigned char *q = realloc(host, n[0] + n[1]);
		if (!q) {
			fprintf(stderr, "pipe-train: --fingerprint: out of memory\n");
			exit(1);
		}
		host = q;
		cap = n[0] + n[1];
	}
	for (int k = 0; k < 2; k++) {
		if (pf_memcpy_async(dev, cs, host + at, b->data[fields[k]], n[k], PF_D2H,
				    &err) < 0 ||
		    pf_stream_sync(dev, cs, &err) < 0)
			die("--fingerprint", &err);
		at += n[k];
	}
	uint64_t h = 0, rows = b->batch ? b->batch : 1;
	size_t xr = n[0] / rows, lr = n[1] / rows;
	for (uint64_t k = 0; k < rows; k++)
		h += row_hash(k, host + k * xr, xr, host + n[0] + k * lr, lr);
	return h;
}
