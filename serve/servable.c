/*
 * servable.c - a saved model behind the batcher (contract in
 * pf_servable.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_device.h"
#include "pf_model.h"
#include "pf_schema.h"
#include "pf_servable.h"

typedef struct sv_thread {
	pf_model *m;
	pf_stream *s;
	float *xdev;
	void *hin, *hout;   /* pinned staging for pf_servable_predict */
} sv_thread;

struct pf_servable {
	pf_device *d;
	int nthreads, max_rows, in_dim, out_dim;
	char arch[256];
	sv_thread *t;
};

static int open_thread(pf_servable *sv, sv_thread *t, const pf_model_cfg *cfg,
		       const char *path, pf_error *err)
{
	int rc;
	if ((rc = pf_model_new(&t->m, sv->d, cfg, err)) < 0 ||
	    (rc = pf_stream_new(sv->d, &t->s, err)) < 0 ||
	    (rc = pf_model_load(t->m, t->s, path, err)) < 0 ||
	    (rc = pf_dev_alloc(sv->d, (void **)&t->xdev,
			       (size_t)sv->max_rows * sv->in_dim * sizeof(float),
			       err)) < 0)
		return rc;
	return 0;
}

int pf_servable_open(pf_servable **svp, const char *path, const char *device,
		     int nthreads, int max_rows, pf_error *err)
{
	*svp = NULL;
	pf_model_cfg cfg = { 0 };
	int rc = pf_ckpt_read_arch(path, &cfg, err);
	if (rc < 0)
		return rc;
	if (nthreads < 1 || max_rows < 1)
		return pf_error_set(err, PF_EINVAL, "%s: %d threads of %d rows", path,
				    nthreads, max_rows);
	cfg.max_batch = max_rows;
	pf_servable *sv = calloc(1, sizeof(*sv));
	if (!sv || !(sv->t = calloc((size_t)nthreads, sizeof(*sv->t)))) {
		free(sv);
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
	}
	sv->nthreads = nthreads;
	sv->max_rows = max_rows;
	sv->in_dim = cfg.sizes[0];
	sv->out_dim = cfg.sizes[cfg.nsizes - 1];
	int n = snprintf(sv->arch, sizeof(sv->arch), "mlp:");
	for (int i = 0; i < cfg.nsizes; i++)
		n += snprintf(sv->arch + n, sizeof(sv->arch) - (size_t)n, "%s%d",
			      i ? "-" : "", cfg.sizes[i]);
	pf_device_opts dopts = { 0 };
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
		pf_stream_free(sv->d, t->s);
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

void pf_servable_hook(pf_servable *sv, pf_batcher_opts *o)
{
	o->in_bytes = (size_t)sv->in_dim * sizeof(float);
	o->out_bytes = (size_t)sv->out_dim * sizeof(float);
	o->compute = sv_compute;
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
