/*
 * servable.c - a saved model behind the batcher (contract in
 * pf_servable.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pf_device.h"
#include "pf_model.h"
#include "pf_schema.h"
#include "pf_servable.h"
#include "sv_feed.h"

/* Host clock stamps a host function on the compute stream writes:
 * [slot][0] when the batch's compute begins, [slot][1] when it ends. */
#define SV_MAX_DEPTH 16

typedef struct sv_thread {
	pf_model *m;
	pf_stream *s;        /* the compute stream */
	float *xdev;
	void *hin, *hout;   /* pinned staging for pf_servable_predict */
	sv_feed *feed;      /* feed_depth > 0: the device feed */
	pf_event *done[SV_MAX_DEPTH];   /* slot k's answers are in b->out */
	uint64_t stamp[SV_MAX_DEPTH][2];
	int feed_slot[SV_MAX_DEPTH];    /* the feed's slot of batch slot k */
} sv_thread;

struct pf_servable {
	pf_device *d;
	int nthreads, max_rows, in_dim, out_dim, depth, timeline;
	char arch[256];
	sv_thread *t;
};

static int open_thread(pf_servable *sv, sv_thread *t, const pf_model_cfg *cfg,
		       const char *path, pf_error *err)
{
	int rc;
	size_t in_bytes = (size_t)sv->max_rows * sv->in_dim * sizeof(float);
	if ((rc = pf_model_new(&t->m, sv->d, cfg, err)) < 0 ||
	    (rc = pf_stream_new(sv->d, &t->s, err)) < 0 ||
	    (rc = pf_model_load(t->m, t->s, path, err)) < 0 ||
	    (rc = pf_dev_alloc(sv->d, (void **)&t->xdev, in_bytes, err)) < 0)
		return rc;
	if (!sv->depth)
		return 0;
	if ((rc = sv_feed_new(&t->feed, sv->d, t->s, sv->depth, in_bytes,
			      sv->timeline, err)) < 0)
		return rc;
	for (int k = 0; k < sv->depth; k++)
		if ((rc = pf_event_new(sv->d, &t->done[k], err)) < 0)
			return rc;
	return 0;
}

int pf_servable_open(pf_servable **svp, const char *path, const char *device,
		     int nthreads, int max_rows, pf_error *err)
{
	pf_servable_opts o = { .device = device, .nthreads = nthreads,
			       .max_rows = max_rows };
	return pf_servable_open_opts(svp, path, &o, err);
}

int pf_servable_open_opts(pf_servable **svp, const char *path,
			  const pf_servable_opts *so, pf_error *err)
{
	*svp = NULL;
	int nthreads = so->nthreads, max_rows = so->max_rows;
	const char *device = so->device;
	pf_model_cfg cfg = { 0 };
	int rc = pf_ckpt_read_arch(path, &cfg, err);
	if (rc < 0)
		return rc;
	if (nthreads < 1 || max_rows < 1 || so->feed_depth < 0 ||
	    so->feed_depth > SV_MAX_DEPTH)
		return pf_error_set(err, PF_EINVAL, "%s: %d threads of %d rows, feed depth %d (0..%d)",
				    path, nthreads, max_rows, so->feed_depth, SV_MAX_DEPTH);
	cfg.max_batch = max_rows;
	pf_servable *sv = calloc(1, sizeof(*sv));
	if (!sv || !(sv->t = calloc((size_t)nthreads, sizeof(*sv->t)))) {
		free(sv);
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
	}
	sv->nthreads = nthreads;
	sv->max_rows = max_rows;
	sv->depth = so->feed_depth;
	sv->timeline = so->timeline;
	sv->in_dim = cfg.sizes[0];
	sv->out_dim = cfg.sizes[cfg.nsizes - 1];
	int n = snprintf(sv->arch, sizeof(sv->arch), "mlp:");
	for (int i = 0; i < cfg.nsizes; i++)
		n += snprintf(sv->arch + n, sizeof(sv->arch) - (size_t)n, "%s%d",
			      i ? "-" : "", cfg.sizes[i]);
	pf_device_opts dopts = { 0 };
	if (so->dev)
		dopts = *so->dev;
	if ((rc = pf_device_open(&sv->d, device ? device : "cpu", &dopts, err)) < 0)
		goto fail;
	for (int i = 0; i < nthreads; i++)
		if ((rc = open_thread(sv, &sv->t[i], &cfg, path, err)) < 0)
			goto fail;
	*svp = sv;
	return 0;
fail:
	pf_servable_free(sv);
	return rc;
}

void pf_servable_free(pf_servable *sv)
{
	if (!sv)
		return;
	for (int i = 0; i < sv->nthreads; i++) {
		sv_thread *t = &sv->t[i];
		sv_feed_free(t->feed);   /* waits for the copy stream */
		pf_stream_free(sv->d, t->s);
		for (int k = 0; k < sv->depth; k++)
			pf_event_free(sv->d, t->done[k]);
		pf_dev_free(sv->d, t->xdev);
		pf_host_free(sv->d, t->hin);
		pf_host_free(sv->d, t->hout);
		pf_model_free(t->m);
	}
	free(sv->t);
	pf_device_close(sv->d);
	free(sv);
}

int pf_servable_in_dim(const pf_servable *sv) { return sv->in_dim; }
int pf_servable_out_dim(const pf_servable *sv) { return sv->out_dim; }
const char *pf_servable_arch(const pf_servable *sv) { return sv->arch; }
const char *pf_servable_device(const pf_servable *sv) { return pf_device_info(sv->d); }

/* One batch on thread t: copy in, forward, logits back, sync. */
static int run_rows(pf_servable *sv, sv_thread *t, const void *in, int rows,
		    void *out, pf_error *err)
{
	int rc;
	if (rows > sv->max_rows)
		return pf_error_set(err, PF_ELIMIT, "servable: %d rows (at most %d)",
				    rows, sv->max_rows);
	pf_model_input mi = { .x = t->xdev, .x_type = PF_F32, .rows = rows };
	if ((rc = pf_memcpy_async(sv->d, t->s, t->xdev, in,
				  (size_t)rows * sv->in_dim * sizeof(float),
				  PF_H2D, err)) < 0 ||
	    (rc = pf_model_predict(t->m, t->s, &mi, out, err)) < 0)
		return rc;
	return pf_stream_sync(sv->d, t->s, err);
}

static int sv_compute(void *ctx, pf_batch *b, pf_error *err)
{
	pf_servable *sv = ctx;
	if (b->thread >= sv->nthreads)
		return pf_error_set(err, PF_EINVAL, "servable: batch thread %d (opened for %d)",
				    b->thread, sv->nthreads);
	return run_rows(sv, &sv->t[b->thread], b->in, b->padded_rows, b->out, err);
}

static void *sv_alloc(void *ctx, int thread, size_t n)
{
	pf_servable *sv = ctx;
	void *p = NULL;
	return pf_host_alloc(sv->d, &p, n, NULL) < 0 ? NULL : p;
}

static void sv_free(void *ctx, int thread, void *p)
{
	pf_servable *sv = ctx;
	pf_host_free(sv->d, p);
}

/* A host function on the compute stream: the time it ran there. */
static void stamp(void *p)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	*(uint64_t *)p = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The feed path's launch: the batch (already in pinned b->in) into the
 * thread's device feed (the copy stream copies it once the slot is free),
 * the forward pass and the logits' copy into b->out on the compute stream
 * (which waits for that copy), then slot k's done event.  Nothing here
 * waits for the device. */
static int sv_launch(void *ctx, pf_batch *b, pf_error *err)
{
	pf_servable *sv = ctx;
	if (b->thread >= sv->nthreads || b->slot >= sv->depth || b->padded_rows > sv->max_rows)
		return pf_error_set(err, PF_EINVAL,
				    "servable: batch thread %d slot %d of %d rows (opened for %d threads, depth %d, %d rows)",
				    b->thread, b->slot, b->padded_rows, sv->nthreads,
				    sv->depth, sv->max_rows);
	sv_thread *t = &sv->t[b->thread];
	uint64_t *ts = t->stamp[b->slot];
	void *x;
	int rc;
	if ((rc = sv_feed_put(t->feed, b->in,
			      (size_t)b->padded_rows * sv->in_dim * sizeof(float),
			      (uint32_t)b->padded_rows, &x, &t->feed_slot[b->slot],
			      err)) < 0)
		return rc;
	pf_model_input mi = { .x = x, .x_type = PF_F32, .rows = b->padded_rows };
	if ((sv->timeline && (rc = pf_host_func(sv->d, t->s, stamp, &ts[0], err)) < 0) ||
	    (rc = pf_model_predict(t->m, t->s, &mi, b->out, err)) < 0 ||
	    (sv->timeline && (rc = pf_host_func(sv->d, t->s, stamp, &ts[1], err)) < 0)) {
		sv_feed_release(t->feed, NULL);
		return rc;
	}
	if ((rc = sv_feed_release(t->feed, err)) < 0)
		return rc;
	return pf_event_record(sv->d, t->done[b->slot], t->s, err);
}

/* The feed path's complete: wait for slot k's done event; the copy and
 * compute times when timed. */
static int sv_complete(void *ctx, pf_batch *b, pf_error *err)
{
	pf_servable *sv = ctx;
	sv_thread *t = &sv->t[b->thread];
	int rc = pf_event_sync(sv->d, t->done[b->slot], err);
	if (rc < 0 || !sv->timeline)
		return rc;
	sv_feed_copy_times(t->feed, t->feed_slot[b->slot], &b->copy_start_ns,
			   &b->copy_end_ns);
	b->compute_start_ns = t->stamp[b->slot][0];
	b->compute_end_ns = t->stamp[b->slot][1];
	return 0;
}

void pf_servable_hook(pf_servable *sv, pf_batcher_opts *o)
{
	o->in_bytes = (size_t)sv->in_dim * sizeof(float);
	o->out_bytes = (size_t)sv->out_dim * sizeof(float);
	o->compute = sv->depth ? sv_launch : sv_compute;
	o->complete = sv->depth ? sv_complete : NULL;
	o->depth = sv->depth ? sv->depth : 1;
	o->ctx = sv;
	o->alloc = sv_alloc;
	o->free = sv_free;
}

int pf_servable_predict(pf_servable *sv, const float *in, int rows, float *out,
			pf_error *err)
{
	sv_thread *t = &sv->t[0];
	int rc;
	size_t ib = (size_t)sv->max_rows * sv->in_dim * sizeof(float);
	size_t ob = (size_t)sv->max_rows * sv->out_dim * sizeof(float);
	if (!t->hin && ((rc = pf_host_alloc(sv->d, &t->hin, ib, err)) < 0 ||
			(rc = pf_host_alloc(sv->d, &t->hout, ob, err)) < 0))
		return rc;
	if (rows < 1 || rows > sv->max_rows)
		return pf_error_set(err, PF_ELIMIT, "servable: %d rows (1..%d)", rows,
				    sv->max_rows);
	memcpy(t->hin, in, (size_t)rows * sv->in_dim * sizeof(float));
	if ((rc = run_rows(sv, t, t->hin, rows, t->hout, err)) < 0)
		return rc;
	memcpy(out, t->hout, (size_t)rows * sv->out_dim * sizeof(float));
	return 0;
}
