/*
 * model.c - the MLP: parameters, forward, backward and Adam, all enqueued on
 * a device stream through pf_device.h (see pf_model.h for the contract).
 *
 * Shapes (row-major, B rows):  act[l] = relu(act[l-1] W_l + b_l), the last
 * layer without ReLU (logits).  Backward, from the loss gradient
 * dact[L-1] = (softmax - onehot) / B:
 *   dW_l = act[l-1]^T dact[l]      db_l = sum over rows of dact[l]
 *   dact[l-1] = (dact[l] W_l^T) masked by act[l-1] > 0
 * With fused epilogues (cfg.epilogue_off 0, a device that has them) a
 * hidden layer's forward is one pf_gemm_bias_act writing its ReLU mask to
 * aux[l], and dact[l-1] with db_{l-1} is one pf_gemm_drelu_bgrad reading
 * it; a shape the device cannot fuse takes the unfused calls, per layer.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pf_model_int.h"
#include "pf_rng.h"
#include "pf_schema.h"

int pf_model_parse(pf_model_cfg *c, const char *spec, pf_error *err)
{
	if (!spec || strncmp(spec, "mlp:", 4) != 0)
		return pf_error_set(err, PF_EINVAL,
				    "model '%s': column 1: expected mlp:SIZES (e.g. mlp:784-128-10)",
				    spec ? spec : "");
	const char *p = spec + 4;
	int n = 0;
	for (;;) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v < 1 || v > 65536)
			return pf_error_set(err, PF_EINVAL,
					    "model '%s': column %d: expected a size 1..65536",
					    spec, (int)(p - spec) + 1);
		if (n == PF_MLP_MAX_LAYERS + 1)
			return pf_error_set(err, PF_EINVAL,
					    "model '%s': column %d: more than %d layers",
					    spec, (int)(p - spec) + 1,
					    PF_MLP_MAX_LAYERS);
		c->sizes[n++] = (int)v;
		if (*end == 0)
			break;
		if (*end != '-')
			return pf_error_set(err, PF_EINVAL,
					    "model '%s': column %d: expected '-' between sizes",
					    spec, (int)(end - spec) + 1);
		p = end + 1;
	}
	if (n < 2)
		return pf_error_set(err, PF_EINVAL,
				    "model '%s': needs at least an input and an output size",
				    spec);
	c->nsizes = n;
	return 0;
}

/* Uniform float in [-a, a) from 24 random bits. */
static float uniform(pf_rng *r, float a)
{
	return a * ((float)(pf_rng_next(r) >> 40) / 8388608.0f - 1.0f);
}

int pf_model_new(pf_model **mp, pf_device *d, const pf_model_cfg *cfg,
		 pf_error *err)
{
	*mp = NULL;
	if (cfg->nsizes < 2 || cfg->nsizes > PF_MLP_MAX_LAYERS + 1 ||
	    cfg->max_batch < 1 || cfg->max_batch > (1 << 20))
		return pf_error_set(err, PF_EINVAL,
				    "model: bad configuration (%d sizes, max batch %d)",
				    cfg->nsizes, cfg->max_batch);
	pf_model *m = calloc(1, sizeof(*m));
	if (!m)
		return pf_error_set(err, PF_ENOMEM, "model: out of memory");
	m->dev = d;
	m->cfg = *cfg;
	if (m->cfg.lr == 0)
		m->cfg.lr = 1e-3f;
	if (m->cfg.b1 == 0)
		m->cfg.b1 = 0.9f;
	if (m->cfg.b2 == 0)
		m->cfg.b2 = 0.999f;
	if (m->cfg.eps == 0)
		m->cfg.eps = 1e-8f;
	m->nlayers = cfg->nsizes - 1;
	size_t off = 0;
	for (int l = 0; l < m->nlayers; l++) {
		m->woff[l] = off;
		off += (size_t)cfg->sizes[l] * cfg->sizes[l + 1];
		m->boff[l] = off;
		off += cfg->sizes[l + 1];
	}
	m->nparams = off;
	size_t B = cfg->max_batch, pb = off * sizeof(float);
	int rc = 0;
	float *host = NULL;
	pf_stream *s = NULL;
	if ((rc = pf_dev_alloc(d, (void **)&m->params, pb, err)) < 0 ||
	    (rc = pf_dev_alloc(d, (void **)&m->grads, pb, err)) < 0 ||
	    (rc = pf_dev_alloc(d, (void **)&m->m, pb, err)) < 0 ||
	    (rc = pf_dev_alloc(d, (void **)&m->v, pb, err)) < 0 ||
	    (rc = pf_dev_alloc(d, (void **)&m->x0,
			       B * cfg->sizes[0] * sizeof(float), err)) < 0 ||
	    (rc = pf_dev_alloc(d, (void **)&m->acc, 6 * sizeof(double), err)) < 0 ||
	    (rc = pf_dev_alloc(d, (void **)&m->t_dev, sizeof(int32_t), err)) < 0)
		goto fail;
	for (int l = 0; l < m->nlayers; l++) {
		size_t n = B * cfg->sizes[l + 1] * sizeof(float);
		if ((rc = pf_dev_alloc(d, (void **)&m->act[l], n, err)) < 0 ||
		    (rc = pf_dev_alloc(d, (void **)&m->dact[l], n, err)) < 0)
			goto fail;
		if (!cfg->epilogue_off && l + 1 < m->nlayers &&
		    (rc = pf_dev_alloc(d, &m->aux[l],
				       pf_epilogue_aux_bytes(cfg->max_batch,
							     cfg->sizes[l + 1]),
				       err)) < 0)
			goto fail;
	}
	host = calloc(off, sizeof(float));
	if (!host) {
		rc = pf_error_set(err, PF_ENOMEM, "model: out of memory");
		goto fail;
	}
	pf_rng r;
	pf_rng_seed(&r, cfg->seed, 0x6d6c70);
	for (int l = 0; l < m->nlayers; l++) {
		int in = cfg->sizes[l], out = cfg->sizes[l + 1];
		float a = l + 1 < m->nlayers ? sqrtf(6.0f / in)
					     : sqrtf(6.0f / (in + out));
		for (size_t i = 0; i < (size_t)in * out; i++)
			host[m->woff[l] + i] = uniform(&r, a);
	}
	if ((rc = pf_stream_new(d, &s, err)) < 0 ||
	    (rc = pf_memcpy_async(d, s, m->params, host, pb, PF_H2D, err)) < 0 ||
	    (rc = pf_memset_async(d, s, m->grads, 0, pb, err)) < 0 ||
	    (rc = pf_memset_async(d, s, m->m, 0, pb, err)) < 0 ||
	    (rc = pf_memset_async(d, s, m->v, 0, pb, err)) < 0 ||
	    (rc = pf_memset_async(d, s, m->acc, 0, 6 * sizeof(double), err)) < 0 ||
	    (rc = pf_memset_async(d, s, m->t_dev, 0, sizeof(int32_t), err)) < 0 ||
	    (rc = pf_stream_sync(d, s, err)) < 0)
		goto fail;
	pf_stream_free(d, s);
	free(host);
	*mp = m;
	return 0;
fail:
	if (s) {
		pf_stream_sync(d, s, NULL);
		pf_stream_free(d, s);
	}
	free(host);
	pf_model_free(m);
	return rc;
}

void pf_model_free(pf_model *m)
{
	if (!m)
		return;
	pf_device *d = m->dev;
	for (int i = 0; i < m->ngraphs; i++)
		pf_graph_free(d, m->graphs[i].g);
	pf_dev_free(d, m->lab0);
	pf_dev_free(d, m->params);
	pf_dev_free(d, m->grads);
	pf_dev_free(d, m->m);
	pf_dev_free(d, m->v);
	pf_dev_free(d, m->x0);
	pf_dev_free(d, m->acc);
	pf_dev_free(d, m->t_dev);
	for (int l = 0; l < m->nlayers; l++) {
		pf_dev_free(d, m->act[l]);
		pf_dev_free(d, m->dact[l]);
		pf_dev_free(d, m->aux[l]);
	}
	free(m);
}

const pf_model_cfg *pf_model_config(const pf_model *m) { return &m->cfg; }
size_t pf_model_nparams(const pf_model *m) { return m->nparams; }
int32_t pf_model_step_count(const pf_model *m) { return m->t_host; }

int pf_model_input_types(pf_model_input *in, int image_dtype, int label_dtype,
			 pf_error *err)
{
	if (image_dtype != PF_U8 && image_dtype != PF_F32)
		return pf_error_set(err, PF_EINVAL,
				    "model input: images must be u8 or f32, not %s",
				    pf_dtype_name(image_dtype));
	in->x_type = image_dtype;
	switch (label_dtype) {
	case PF_U8: in->label_type = PF_LABEL_U8; break;
	case PF_I32: in->label_type = PF_LABEL_I32; break;
	case PF_I64: in->label_type = PF_LABEL_I64; break;
	default:
		return pf_error_set(err, PF_EINVAL,
				    "model input: labels must be u8, i32 or i64, not %s",
				    pf_dtype_name(label_dtype));
	}
	return 0;
}

static int check_input(const pf_model *m, const pf_model_input *in,
		       pf_error *err)
{
	if (!in->x || !in->labels || in->rows < 1 ||
	    in->rows > m->cfg.max_batch ||
	    (in->x_type != PF_U8 && in->x_type != PF_F32) ||
	    in->label_type < PF_LABEL_U8 || in->label_type > PF_LABEL_I64)
		return pf_error_set(err, PF_EINVAL,
				    "model: bad input (%d rows, max %d)", in->rows,
				    m->cfg.max_batch);
	return 0;
}

#define TRY(x)                                                                 \
	do {                                                                   \
		int rc_ = (x);                                                 \
		if (rc_ < 0)                                                   \
			return rc_;                                            \
	} while (0)

/* Enqueue layer l's forward from a: act[l] = a W_l + b_l (ReLU below the
 * last), fused when the model and device allow, with the ReLU mask into
 * aux[l] when mask (training). */
static int layer_forward(pf_model *m, pf_stream *s, int l, const float *a,
			 int B, int mask, pf_error *err)
{
	pf_device *d = m->dev;
	int k = m->cfg.sizes[l], n = m->cfg.sizes[l + 1];
	int relu = l + 1 < m->nlayers, rc = 1;
	void *aux = mask && relu ? m->aux[l] : NULL;
	m->aux_ok[l] = 0;
	if (!m->cfg.epilogue_off &&
	    (rc = pf_gemm_bias_act(d, s, B, n, k, a, k, m->params + m->woff[l], n,
				   m->params + m->boff[l], relu, m->act[l], aux,
				   err)) < 0)
		return rc;
	if (rc == 0) {
		m->aux_ok[l] = aux != NULL;
		m->fused[0] += mask;
		return 0;
	}
	TRY(pf_gemm(d, s, 0, 0, B, n, k, 1.0f, a, k, m->params + m->woff[l], n,
		    0.0f, m->act[l], n, err));
	return pf_k_bias_act(d, s, m->act[l], m->params + m->boff[l], B, n, relu,
			     err);
}

/* Enqueue the layers of the forward pass: logits in act[nlayers - 1];
 * mask: write the ReLU masks a fused backward reads. */
static int forward_layers(pf_model *m, pf_stream *s, const pf_model_input *in,
			  int mask, pf_error *err)
{
	pf_device *d = m->dev;
	int B = in->rows;
	const float *x = in->x;
	if (mask)
		m->fused[0] = 0;
	if (in->x_type == PF_U8) {
		float sc = in->x_scale ? in->x_scale : 1.0f / 255.0f;
		TRY(pf_k_u8_to_f32(d, s, m->x0, in->x, (size_t)B * m->cfg.sizes[0],
				   sc, err));
		x = m->x0;
	}
	for (int l = 0; l < m->nlayers; l++)
		TRY(layer_forward(m, s, l, l ? m->act[l - 1] : x, B, mask, err));
	return 0;
}

/* Enqueue the forward pass and the loss (with its gradient when grad). */
static int forward(pf_model *m, pf_stream *s, const pf_model_input *in,
		   int grad, double *acc, pf_error *err)
{
	TRY(forward_layers(m, s, in, grad, err));
	pf_device *d = m->dev;
	int B = in->rows;
	int L = m->nlayers - 1;
	return pf_k_softmax_xent(d, s, m->act[L], in->labels, in->label_type, B,
				 m->cfg.sizes[L + 1], grad ? m->dact[L] : NULL,
				 in->grad_scale > 0 ? in->grad_scale : 1.0f / B, acc, err);
}

/* Enqueue the backward pass (after forward with grad); with ev, record
 * ev[j] once the gradients of layer nlayers - 1 - j are complete. */
static int backward_ev(pf_model *m, pf_stream *s, const pf_model_input *in,
		       pf_event *const *ev, pf_error *err)
{
	pf_device *d = m->dev;
	int B = in->rows;
	const float *x = in->x_type == PF_U8 ? m->x0 : (const float *)in->x;
	int db_done = 0;      /* db_l came with dact[l] from a fused epilogue */
	m->fused[1] = 0;
	for (int l = m->nlayers - 1; l >= 0; l--) {
		int k = m->cfg.sizes[l], n = m->cfg.sizes[l + 1];
		const float *a = l ? m->act[l - 1] : x;
		TRY(pf_gemm(d, s, 1, 0, k, n, B, 1.0f, a, k, m->dact[l], n, 0.0f,
			    m->grads + m->woff[l], n, err));
		if (!db_done)
			TRY(pf_k_bias_grad(d, s, m->grads + m->boff[l], m->dact[l],
					   B, n, err));
		if (ev)
			TRY(pf_event_record(d, ev[m->nlayers - 1 - l], s, err));
		if (l == 0)
			break;
		int rc = 1;
		if (m->aux_ok[l - 1] &&
		    (rc = pf_gemm_drelu_bgrad(d, s, B, k, n, m->dact[l], n,
					      m->params + m->woff[l], n,
					      m->aux[l - 1], m->dact[l - 1],
					      m->grads + m->boff[l - 1], err)) < 0)
			return rc;
		db_done = rc == 0;
		m->fused[1] += db_done;
		if (rc == 0)
			continue;
		TRY(pf_gemm(d, s, 0, 1, B, k, n, 1.0f, m->dact[l], n,
			    m->params + m->woff[l], n, 0.0f, m->dact[l - 1], k, err));
		TRY(pf_k_relu_grad(d, s, m->dact[l - 1], m->act[l - 1],
				   (size_t)B * k, err));
	}
	return 0;
}

static int backward(pf_model *m, pf_stream *s, const pf_model_input *in,
		    pf_error *err)
{
	return backward_ev(m, s, in, NULL, err);
}

static float *buf_of(pf_model *m, int which);

/* The whole training step, enqueued directly. */
static int enqueue_step(pf_model *m, pf_stream *s, const pf_model_input *in,
			pf_error *err)
{
	TRY(forward(m, s, in, 1, m->acc, err));
	TRY(backward(m, s, in, err));
	TRY(pf_k_counter_add(m->dev, s, m->t_dev, 1, err));
	return pf_k_adam(m->dev, s, m->params, m->grads, m->m, m->v, m->nparams,
			 m->cfg.lr, m->cfg.b1, m->cfg.b2, m->cfg.eps, m->t_dev,
			 err);
}

/* The captured graph for this (staged) input, capturing it on first use;
 * NULL when the cache is full (the caller enqueues directly).  Staged
 * inputs share x0 and lab0, so the key is the batch shape. */
static int step_graph(pf_model *m, pf_stream *s, const pf_model_input *in,
		      pf_graph **gp, pf_error *err)
{
	*gp = NULL;
	for (int i = 0; i < m->ngraphs; i++)
		if (m->graphs[i].x == in->x && m->graphs[i].labels == in->labels &&
		    m->graphs[i].rows == in->rows &&
		    m->graphs[i].x_type == in->x_type &&
		    m->graphs[i].label_type == in->label_type) {
			*gp = m->graphs[i].g;
			return 0;
		}
	if (m->ngraphs == PF_MODEL_GRAPHS)
		return 0;
	TRY(pf_graph_begin(m->dev, s, err));
	int rc = enqueue_step(m, s, in, err);
	pf_graph *g = NULL;
	int rc2 = pf_graph_end(m->dev, s, &g, err);
	if (rc < 0 || rc2 < 0) {
		pf_graph_free(m->dev, g);
		return rc < 0 ? rc : rc2;
	}
	m->graphs[m->ngraphs].x = in->x;
	m->graphs[m->ngraphs].labels = in->labels;
	m->graphs[m->ngraphs].rows = in->rows;
	m->graphs[m->ngraphs].x_type = in->x_type;
	m->graphs[m->ngraphs].label_type = in->label_type;
	m->graphs[m->ngraphs].g = g;
	m->ngraphs++;
	*gp = g;
	return 0;
}

/*
 * A graph's input: the batch staged, outside the graph, into the model's
 * fixed buffers (u8 converted into x0, f32 copied there, the labels copied
 * into lab0), so that one graph per batch shape serves every device slot
 * instead of one per slot pointer.  *out describes the staged batch.
 */
static int stage_input(pf_model *m, pf_stream *s, const pf_model_input *in,
		       pf_model_input *out, pf_error *err)
{
	static const size_t label_bytes[] = { 0, 1, 4, 8 };
	size_t n = (size_t)in->rows * m->cfg.sizes[0];
	if (!m->lab0)
		TRY(pf_dev_alloc(m->dev, &m->lab0, (size_t)m->cfg.max_batch * 8, err));
	if (in->x_type == PF_U8)
		TRY(pf_k_u8_to_f32(m->dev, s, m->x0, in->x, n,
				   in->x_scale ? in->x_scale : 1.0f / 255.0f, err));
	else
		TRY(pf_memcpy_async(m->dev, s, m->x0, in->x, n * sizeof(float), PF_D2D,
				    err));
	TRY(pf_memcpy_async(m->dev, s, m->lab0, in->labels,
			    (size_t)in->rows * label_bytes[in->label_type], PF_D2D, err));
	*out = *in;
	out->x = m->x0;
	out->x_type = PF_F32;
	out->labels = m->lab0;
	return 0;
}

int pf_model_train_step(pf_model *m, pf_stream *s, const pf_model_input *in,
			pf_error *err)
{
	TRY(check_input(m, in, err));
	pf_graph *g = NULL;
	pf_model_input staged;
	if (m->cfg.use_graph && pf_graph_supported(m->dev)) {
		TRY(stage_input(m, s, in, &staged, err));
		in = &staged;
		TRY(step_graph(m, s, in, &g, err));
	}
	if (g)
		TRY(pf_graph_launch(m->dev, g, s, err));
	else
		TRY(enqueue_step(m, s, in, err));
	m->t_host++;
	m->rows[PF_ACC_TRAIN] += in->rows;
	return 0;
}

int pf_model_grad(pf_model *m, pf_stream *s, const pf_model_input *in,
		  pf_error *err)
{
	TRY(check_input(m, in, err));
	TRY(forward(m, s, in, 1, m->acc, err));
	TRY(backward(m, s, in, err));
	m->rows[PF_ACC_TRAIN] += in->rows;
	return 0;
}

int pf_model_grad_layers(pf_model *m, pf_stream *s, const pf_model_input *in,
			 pf_event *const *ev, pf_error *err)
{
	TRY(check_input(m, in, err));
	TRY(forward(m, s, in, 1, m->acc, err));
	TRY(backward_ev(m, s, in, ev, err));
	m->rows[PF_ACC_TRAIN] += in->rows;
	return 0;
}

int pf_model_nlayers(const pf_model *m)
{
	return m->nlayers;
}

void pf_model_fused_layers(const pf_model *m, int fused[2])
{
	fused[0] = m->fused[0];
	fused[1] = m->fused[1];
}

void pf_model_layer_grads(const pf_model *m, int j, size_t *off, size_t *len)
{
	int l = m->nlayers - 1 - j;
	*off = m->woff[l];
	*len = (l + 1 < m->nlayers ? m->woff[l + 1] : m->nparams) - m->woff[l];
}

int pf_model_download_range(pf_model *m, pf_stream *s, int which, float *host,
			    size_t off, size_t len, pf_error *err)
{
	float *b = buf_of(m, which);
	if (!b || off > m->nparams || len > m->nparams - off)
		return pf_error_set(err, PF_EINVAL, "model: no buffer %d range %zu+%zu", which,
				    off, len);
	return pf_memcpy_async(m->dev, s, host + off, b + off, len * sizeof(float), PF_D2H,
			       err);
}

float *pf_model_dev_buf(pf_model *m, int which)
{
	return buf_of(m, which);
}

int pf_model_apply(pf_model *m, pf_stream *s, pf_error *err)
{
	TRY(pf_k_counter_add(m->dev, s, m->t_dev, 1, err));
	TRY(pf_k_adam(m->dev, s, m->params, m->grads, m->m, m->v, m->nparams,
		      m->cfg.lr, m->cfg.b1, m->cfg.b2, m->cfg.eps, m->t_dev, err));
	m->t_host++;
	return 0;
}

int pf_model_eval(pf_model *m, pf_stream *s, const pf_model_input *in,
		  pf_error *err)
{
	TRY(check_input(m, in, err));
	TRY(forward(m, s, in, 0, m->acc + 3, err));
	m->rows[PF_ACC_EVAL] += in->rows;
	return 0;
}

int pf_model_predict(pf_model *m, pf_stream *s, const pf_model_input *in,
		     float *logits, pf_error *err)
{
	if (!in->x || !logits || in->rows < 1 || in->rows > m->cfg.max_batch ||
	    (in->x_type != PF_U8 && in->x_type != PF_F32))
		return pf_error_set(err, PF_EINVAL,
				    "model: bad predict input (%d rows, max %d)",
				    in->rows, m->cfg.max_batch);
	TRY(forward_layers(m, s, in, 0, err));
	int L = m->nlayers - 1;
	return pf_memcpy_async(m->dev, s, logits, m->act[L],
			       (size_t)in->rows * m->cfg.sizes[L + 1] * sizeof(float),
			       PF_D2H, err);
}

int pf_model_read_acc(pf_model *m, pf_stream *s, int which, double out[4],
		      int reset, pf_error *err)
{
	if (which != PF_ACC_TRAIN && which != PF_ACC_EVAL)
		return pf_error_set(err, PF_EINVAL, "model: no accumulator %d", which);
	double h[3];
	double *a = m->acc + 3 * which;
	TRY(pf_memcpy_async(m->dev, s, h, a, sizeof(h), PF_D2H, err));
	if (reset)
		TRY(pf_memset_async(m->dev, s, a, 0, sizeof(h), err));
	TRY(pf_stream_sync(m->dev, s, err));
	out[0] = h[0];
	out[1] = h[1];
	out[2] = h[2];
	out[3] = m->rows[which];
	if (reset)
		m->rows[which] = 0;
	return 0;
}

static float *buf_of(pf_model *m, int which)
{
	switch (which) {
	case PF_BUF_PARAMS: return m->params;
	case PF_BUF_GRADS: return m->grads;
	case PF_BUF_M: return m->m;
	case PF_BUF_V: return m->v;
	}
	return NULL;
}

int pf_model_download(pf_model *m, pf_stream *s, int which, float *host,
		      pf_error *err)
{
	float *b = buf_of(m, which);
	if (!b)
		return pf_error_set(err, PF_EINVAL, "model: no buffer %d", which);
	TRY(pf_memcpy_async(m->dev, s, host, b, m->nparams * sizeof(float),
			    PF_D2H, err));
	return pf_stream_sync(m->dev, s, err);
}

int pf_model_upload(pf_model *m, pf_stream *s, int which, const float *host,
		    pf_error *err)
{
	float *b = buf_of(m, which);
	if (!b)
		return pf_error_set(err, PF_EINVAL, "model: no buffer %d", which);
	TRY(pf_memcpy_async(m->dev, s, b, host, m->nparams * sizeof(float),
			    PF_H2D, err));
	return pf_stream_sync(m->dev, s, err);
}

int pf_model_set_step(pf_model *m, pf_stream *s, int32_t t, pf_error *err)
{
	int32_t h = t;
	TRY(pf_memcpy_async(m->dev, s, m->t_dev, &h, sizeof(h), PF_H2D, err));
	TRY(pf_stream_sync(m->dev, s, err));
	m->t_host = t;
	return 0;
}
