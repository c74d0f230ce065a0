/*
 * train_ranks.c - pipe-train's data-parallel step over ranks (ranks.h).
 *
 * Every rank runs the same pipeline with the same seed, so every rank sees
 * the same global batches in the same order whatever the world size; rank
 * r trains on rows [r*b/W, (r+1)*b/W) of each batch of b rows (the global
 * batch is --batch; the shares differ by one row at most, and a rank whose
 * share is empty, at a last batch smaller than the world, computes
 * nothing).  Each rank's gradient is the mean over its rows; the ranks sum
 * gradient x rows and rows, and every rank divides by the total: the mean
 * over the global batch, each sample once.  The same sum carries "stop"
 * (a signal on any rank), so all ranks stop after the same step.
 *
 * The model's step is then: forward + backward (pf_model_grad), gradients
 * to the host, the sum over ranks (floats: rows are exact in them, and the
 * gradients' rounding differs from a run alone's by about 1e-7 relative),
 * back to the device, Adam (pf_model_apply).  Over W ranks the sum's order
 * is fixed with --deterministic (the same model bits for the same world
 * size and seed), else it is MPI_Allreduce's.  (One rank alone does not
 * come here: pipe-train trains as it always did.)
 *
 * On the cpu device the model's gradient buffer is host memory, so the
 * copies down and back and the two passes that weight and divide are
 * work every rank would repeat for nothing: there (d->inplace) each
 * rank's loss gradient is scaled by 1/batch (pf_model_input.grad_scale;
 * the global batch's rows, which every rank knows), and the buckets are
 * summed in place in the model's buffer, which then holds the global
 * mean; --deterministic without --bucket-mb is one bucket of all the
 * gradients, summed in rank order after backward.  (On cuda with MPI the
 * gradients still go through d->buf; with NCCL see train_nccl.c.)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ranks.h"
#include "train.h"

void dist_init(dist *d, ranks *r, int deterministic, size_t nparams)
{
	memset(d, 0, sizeof(*d));
	d->r = r;
	d->world = r ? ranks_world(r) : 1;
	d->rank = r ? ranks_rank(r) : 0;
	d->deterministic = deterministic;
	d->n = nparams;
	if (d->world > 1) {
		d->buf = malloc((nparams + 2) * sizeof(*d->buf));
		if (!d->buf) {
			fprintf(stderr, "pipe-train: rank %d: out of memory\n", d->rank);
			exit(1);
		}
	}
}

/* Close the bucket [lo, hi) ready with layer event j; exits past
 * DIST_MAX_BUCKETS. */
static void add_bucket(dist *d, size_t lo, size_t hi, int j)
{
	if (d->nbuckets == DIST_MAX_BUCKETS) {
		fprintf(stderr, "pipe-train: --bucket-mb %g: more than %d buckets for %zu parameters: give a larger size\n",
			d->bucket_mb, DIST_MAX_BUCKETS, d->n);
		exit(2);
	}
	d->boff[d->nbuckets] = lo;
	d->blen[d->nbuckets] = hi - lo;
	d->bready[d->nbuckets] = j;
	d->nbuckets++;
}

/* The buckets of --bucket-mb: layers in backward order (the last first),
 * whose gradients lie below each other, filled from the top down into
 * buckets of `cap` floats (a bucket may span layers: it is ready with the
 * lowest; a layer larger than what is left is cut). */
static void plan_sized(dist *d, pf_model *m, int L, size_t cap)
{
	size_t lo = 0, hi = 0;
	int have = 0, ready = 0;
	for (int j = 0; j < L; j++) {
		size_t off, len;
		pf_model_layer_grads(m, j, &off, &len);
		size_t top = off + len;
		if (have && lo != top) { /* not adjacent: no bucket across */
			add_bucket(d, lo, hi, ready);
			have = 0;
		}
		while (top > off) {
			if (!have) {
				lo = hi = top;
				have = 1;
			}
			size_t take = top - off < cap - (hi - lo) ? top - off : cap - (hi - lo);
			lo -= take;
			top -= take;
			ready = j;
			if (hi - lo == cap) {
				add_bucket(d, lo, hi, ready);
				have = 0;
			}
		}
	}
	if (have)
		add_bucket(d, lo, hi, ready);
}

void dist_buckets(dist *d, pf_device *dev, pf_model *m)
{
	pf_error err = { 0 };
	int L = pf_model_nlayers(m);
	/* the cpu device's gradients are host memory: summed where they are */
	d->inplace = d->world > 1 && !d->nccl && !strcmp(pf_device_kind(dev), "cpu");
	if (!d->nccl && !d->inplace && (d->world == 1 || (d->deterministic && d->bucket_mb <= 0)))
		return;  /* NCCL, in place: always buckets (their only sums) */
	if (L > DIST_MAX_BUCKETS)
		return;
	d->dev = dev;
	if (!d->inplace && pf_stream_new(dev, &d->copy, &err) < 0)
		die("stream", &err);
	for (int j = 0; j < L; j++)
		if (pf_event_new(dev, &d->ev[j], &err) < 0)
			die("event", &err);
	d->nlayers = L;
	if (d->bucket_mb > 0) {
		double c = d->bucket_mb * 1048576.0 / sizeof(float);
		plan_sized(d, m, L, c < 1 ? 1 : (size_t)c);
		return;
	}
	if (d->deterministic) { /* in place: one sum after backward */
		add_bucket(d, 0, d->n, L - 1);
		return;
	}
	for (int j = 0; j < L; j++) {
		size_t off, len;
		pf_model_layer_grads(m, j, &off, &len);
		add_bucket(d, off, off + len, j);
	}
}

void dist_free(dist *d)
{
	dist_nccl_close(d);
	for (int j = 0; j < d->nlayers; j++)
		pf_event_free(d->dev, d->ev[j]);
	if (d->copy)
		pf_stream_free(d->dev, d->copy);
	d->nbuckets = d->nlayers = 0;
	d->copy = NULL;
	free(d->buf);
	d->buf = NULL;
}

void dist_fail(dist *d, const char *msg)
{
	fprintf(stderr, "pipe-train: %s\n", msg);
	fflush(stderr);
	ranks_abort(d->r, 1);
	exit(1);
}

void dist_share(const dist *d, uint32_t rows, uint32_t *lo, uint32_t *hi)
{
	*lo = (uint32_t)((uint64_t)rows * (uint64_t)d->rank / (uint64_t)d->world);
	*hi = (uint32_t)((uint64_t)rows * (uint64_t)(d->rank + 1) / (uint64_t)d->world);
}

/* Bytes of one row of x (nin values) and of one label. */
static size_t x_row_bytes(const pf_model_input *in, int nin)
{
	return (size_t)nin * (in->x_type == PF_U8 ? 1 : 4);
}

static size_t label_bytes(const pf_model_input *in)
{
	return in->label_type == PF_LABEL_U8 ? 1 : in->label_type == PF_LABEL_I32 ? 4 : 8;
}

void dist_slice(pf_model_input *in, uint32_t lo, uint32_t hi, int nin)
{
	in->x = (const unsigned char *)in->x + (size_t)lo * x_row_bytes(in, nin);
	in->labels = (const unsigned char *)in->labels + (size_t)lo * label_bytes(in);
	in->rows = (int)(hi - lo);
}

void dist_sum(dist *d, double *v, size_t n, const char *what)
{
	char msg[512];
	if (ranks_sum(d->r, v, n, 1, what, msg, sizeof(msg)) < 0)
		dist_fail(d, msg);
}

/* Bucket b's gradients, once backward has made them (its layer event),
 * to d->buf (scaled by rows), driving the sums already started meanwhile. */
static void bucket_ready(dist *d, pf_model *m, int b, int rows, double *done)
{
	pf_error err = { 0 };
	size_t off = d->boff[b], len = d->blen[b];
	if (rows <= 0 && !d->inplace) {
		memset(d->buf + off, 0, len * sizeof(*d->buf));
		return;
	}
	int q;
	while ((q = pf_event_query(d->dev, d->ev[d->bready[b]])) == 0) {
		ranks_progress(d->r, done);
		struct timespec ts = { 0, 200000 };
		nanosleep(&ts, NULL);
	}
	if (q < 0)
		die("train step", &err);
	if (d->inplace) /* scaled at the loss (grad_scale) */
		return;
	if (pf_model_download_range(m, d->copy, PF_BUF_GRADS, d->buf, off, len, &err) < 0 ||
	    pf_stream_sync(d->dev, d->copy, &err) < 0)
		die("train step", &err);
	for (size_t i = off; i < off + len; i++)
		d->buf[i] *= (float)rows;
}

/* dist_step with buckets: the rows and the stop, then each bucket's
 * gradients summed as soon as backward has them (in rank order with
 * --deterministic). */
static void step_buckets(dist *d, pf_model *m, pf_stream *s, const pf_model_input *in,
			 uint32_t batch, int want_stop, const char *what)
{
	pf_error err = { 0 };
	char msg[512];
	int rows = in ? in->rows : 0;
	float *g = d->inplace ? pf_model_dev_buf(m, PF_BUF_GRADS) : d->buf;
	pf_model_input x = in ? *in : (pf_model_input){ 0 };
	if (d->inplace && rows > 0) {
		x.grad_scale = 1.0f / (float)batch;
	} else if (d->inplace) { /* none here: zeros to the sums */
		if (pf_memset_async(d->dev, s, g, 0, d->n * sizeof(float), &err) < 0)
			die("train step", &err);
		for (int j = 0; j < d->nlayers; j++)
			if (pf_event_record(d->dev, d->ev[j], s, &err) < 0)
				die("train step", &err);
	}
	double start[65], done[65] = { 0 }, bwd_end;
	if ((d->deterministic ? ranks_begin_ordered(d->r, d->n + 2, what, msg, sizeof(msg))
			      : ranks_begin(d->r, what, msg, sizeof(msg))) < 0)
		dist_fail(d, msg);
	d->buf[d->n] = (float)rows;
	d->buf[d->n + 1] = want_stop ? 1 : 0;
	start[0] = now_s();
	if (ranks_isum_f32(d->r, d->buf + d->n, 2, what, msg, sizeof(msg)) < 0)
		dist_fail(d, msg);
	if (rows > 0 && pf_model_grad_layers(m, s, &x, d->ev, &err) < 0)
		die("train step", &err);
	for (int j = 0; j < d->nbuckets; j++) {
		bucket_ready(d, m, j, rows, done);
		start[j + 1] = now_s();
		if (ranks_isum_f32(d->r, g + d->boff[j], d->blen[j], what, msg, sizeof(msg)) < 0)
			dist_fail(d, msg);
	}
	bwd_end = now_s();
	if (ranks_finish(d->r, done, what, msg, sizeof(msg)) < 0)
		dist_fail(d, msg);
	for (int j = 1; j <= d->nbuckets && rows > 0; j++) {
		double end = done[j] > start[j] ? done[j] : start[j];
		d->reduce_s += end - start[j];
		double ov = (end < bwd_end ? end : bwd_end) - start[j];
		d->overlap_s += ov > 0 ? ov : 0;
	}
}

uint64_t dist_step(dist *d, pf_model *m, pf_stream *s, const pf_model_input *in,
		   uint32_t batch, int want_stop, int *stop, uint64_t step)
{
	pf_error err = { 0 };
	char what[64], msg[512];
	int rows = in ? in->rows : 0;
	if (d->nccl && m)
		return dist_step_nccl(d, m, s, in, want_stop, stop, step);
	snprintf(what, sizeof(what), "all-reduce of step %" PRIu64, step);
	if (!m) { /* no model (synthetic): only the rows and the stop */
		float v[2] = { (float)rows, want_stop ? 1.0f : 0.0f };
		if (ranks_sum_f32(d->r, v, 2, d->deterministic, what, msg, sizeof(msg)) < 0)
			dist_fail(d, msg);
		*stop = v[1] > 0;
		if (!d->steps++)
			d->wait_first = ranks_wait_s(d->r);
		return (uint64_t)v[0];
	}
	if (d->nbuckets) {
		step_buckets(d, m, s, in, batch, want_stop, what);
	} else {
		if (rows > 0) {
			if (pf_model_grad(m, s, in, &err) < 0 ||
			    pf_model_download(m, s, PF_BUF_GRADS, d->buf, &err) < 0)
				die("train step", &err);
			for (size_t i = 0; i < d->n; i++)
				d->buf[i] *= (float)rows;
		} else {
			memset(d->buf, 0, d->n * sizeof(*d->buf));
		}
		d->buf[d->n] = (float)rows;
		d->buf[d->n + 1] = want_stop ? 1 : 0;
		if (ranks_sum_f32(d->r, d->buf, d->n + 2, d->deterministic, what, msg,
				  sizeof(msg)) < 0)
			dist_fail(d, msg);
	}
	if (!d->steps++)
		d->wait_first = ranks_wait_s(d->r);
	float total = d->buf[d->n];
	*stop = d->buf[d->n + 1] > 0;
	if (total <= 0)
		return 0;
	if (d->inplace) { /* already the mean, in the model's buffer */
		if (pf_model_apply(m, s, &err) < 0)
			die("train step", &err);
		return (uint64_t)total;
	}
	float inv = 1.0f / total;
	for (size_t i = 0; i < d->n; i++)
		d->buf[i] *= inv;
	if (pf_model_upload(m, s, PF_BUF_GRADS, d->buf, &err) < 0 ||
	    pf_model_apply(m, s, &err) < 0)
		die("train step", &err);
	return (uint64_t)total;
}

int dist_train(dist *d, pf_model *m, pf_stream *s, const pf_model_input *full, int nin,
	       uint32_t rows, int want_stop, uint64_t step_total, FILE *fpr, uint64_t epoch,
	       uint64_t step, uint64_t hash)
{
	uint32_t lo, hi;
	dist_share(d, rows, &lo, &hi);
	pf_model_input in = *full;
	dist_slice(&in, lo, hi, nin);
	if (fpr)
		fprintf(fpr, "%" PRIu64 " %" PRIu64 " %016" PRIx64 " %u %u\n", epoch + 1,
			step + 1, hash, lo, hi);
	int stop = 0;
	dist_step(d, m, s, hi > lo ? &in : NULL, rows, want_stop, &stop, step_total);
	return stop;
}

int dist_synth(dist *d, pf_device *dev, pf_stream *s, synth *sy, uint32_t step_us,
	       uint32_t rows, int want_stop, uint64_t step_total)
{
	pf_error err = { 0 };
	uint32_t lo, hi;
	dist_share(d, rows, &lo, &hi);
	uint64_t us = rows ? (uint64_t)step_us * (hi - lo) / rows : 0;
	if (us) {
		sy->us = (uint32_t)us;
		synth_step(sy);
		if (pf_stream_sync(dev, s, &err) < 0)
			die("device", &err);
	}
	int stop = 0;
	dist_step(d, NULL, s, NULL, rows, want_stop, &stop, step_total);
	return stop;
}
