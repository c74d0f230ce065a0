/*
 * padded_batch.c - batch elements whose fields may be variable-length: each
 * variable field becomes [B, L, other dims...] with L the longest sample of
 * the batch, at most max_len (the per-batch quota is B * max_len items), zero
 * padded, plus 2 x B int32 lengths: [0, B) the items each row holds (what
 * code indexing a row may read), [B, 2B) each sample's length before
 * truncation (the same unless it was cut); longer samples are truncated or
 * rejected (PF_ELIMIT naming the sample) as configured.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_op.h"

typedef struct padded_cfg {
	int size;
	pf_padded_opts o;
	pf_elem *held;
	size_t per[PF_MAX_FIELDS];   /* bytes per item of the "?" dim (var) or per sample (fixed) */
	int var[PF_MAX_FIELDS];
} padded_cfg;

static size_t al64(size_t x)
{
	return (x + 63) & ~(size_t)63;
}

static int padded_prepare(pf_op *op, pf_error *err)
{
	padded_cfg *c = op->cfg;
	pf_op *in = op->in;
	if (in->batched)
		return pf_op_error(op, err, PF_EINVAL, "%s", PF_BATCHED_TWICE);
	op->batched = 1;
	op->schema = in->schema;
	size_t bound = 0;
	for (int i = 0; i < op->schema.nfields; i++) {
		const pf_field *f = &op->schema.fields[i];
		int64_t per = 1;
		c->var[i] = 0;
		for (int d = 0; d < f->ndim; d++) {
			if (f->dims[d] == PF_DIM_VAR)
				c->var[i] = 1;
			else
				per *= f->dims[d];
		}
		c->per[i] = (size_t)per * pf_dtype_size(f->dtype);
		/* the quota: size x max_len items (a bound past size_t fails
		 * the memory budget, naming this op) */
		size_t q;
		if (__builtin_mul_overflow((size_t)c->size, c->var[i] ? (size_t)c->o.max_len : 1, &q) ||
		    __builtin_mul_overflow(q, c->per[i], &q) || q > SIZE_MAX / 4 ||
		    bound + al64(q) + al64((size_t)c->size * 8) < bound) {
			bound = SIZE_MAX / 2;
			continue;
		}
		if (c->var[i])
			bound += al64(q) + al64((size_t)c->size * 8);
		else
			bound += al64(q);
		if (bound > SIZE_MAX / 4)
			bound = SIZE_MAX / 2;
	}
	op->elem_bytes = bound ? bound : 1;
	op->buffer_bytes = op->elem_bytes + (uint64_t)c->size * in->elem_bytes;
	op->cardinality = in->cardinality < 0 ? in->cardinality :
		(c->o.drop_remainder ? in->cardinality / c->size :
		 (in->cardinality + c->size - 1) / c->size);
	return 0;
}

static int padded_start(pf_op *op, pf_error *err)
{
	padded_cfg *c = op->cfg;
	c->held = calloc((size_t)c->size, sizeof(pf_elem));
	return c->held ? 0 : pf_op_error(op, err, PF_ENOMEM, "out of memory");
}

static void release_held(padded_cfg *c, int n)
{
	for (int k = 0; k < n; k++)
		pf_elem_release(&c->held[k]);
}

static int padded_next(pf_op *op, pf_elem *out, pf_error *err)
{
	padded_cfg *c = op->cfg;
	const pf_schema *s = &op->schema;
	int n = 0, rc = 0;
	int64_t L[PF_MAX_FIELDS] = { 0 };
	for (; n < c->size; n++) {
		rc = pf_op_next(op->in, &c->held[n], err);
		if (rc)
			break;
		for (int i = 0; i < s->nfields; i++) {
			if (!c->var[i])
				continue;
			int64_t len = c->held[n].var_len[i];
			if (len > c->o.max_len && c->o.policy == PF_PAD_REJECT) {
				uint64_t id = c->held[n].id;
				const char *path = pf_op_sample_path(op, id);
				char where[400] = "";
				if (path)
					snprintf(where, sizeof(where), " (%s, record %llu)", path,
						 (unsigned long long)pf_id_rec(id));
				rc = pf_op_error(op, err, PF_ELIMIT,
						 "sample %llu%s: field \"%s\" has %lld items, over the quota of %lld per sample (max_len)",
						 (unsigned long long)id, where, s->fields[i].name,
						 (long long)len, (long long)c->o.max_len);
				release_held(c, n + 1);
				return rc;
			}
			if (len > c->o.max_len)
				len = c->o.max_len;
			if (len > L[i])
				L[i] = len;
		}
	}
	if (rc < 0 || (rc == PF_END && (!n || c->o.drop_remainder))) {
		release_held(c, n);
		return rc;
	}
	size_t off[PF_MAX_FIELDS], loff[PF_MAX_FIELDS], pos = 0;
	for (int i = 0; i < s->nfields; i++) {
		off[i] = pos;
		if (c->var[i]) {
			pos += al64((size_t)n * (size_t)L[i] * c->per[i]);
			loff[i] = pos;
			pos += al64((size_t)n * 8);   /* stored, then true lengths */
		} else {
			pos += al64((size_t)n * c->per[i]);
		}
	}
	pf_buf *b = pf_buf_get(op->rt->batch_pool, pos ? pos : 1);
	if (!b) {
		release_held(c, n);
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	}
	memset(out, 0, sizeof(*out));
	out->schema = s;
	out->batch = (uint32_t)n;
	out->id = c->held[0].id;
	out->buf = b->data;
	out->ref_ = b;
	out->nbytes = pos;
	for (int i = 0; i < s->nfields; i++) {
		unsigned char *base = b->data + off[i];
		out->data[i] = base;
		if (!c->var[i]) {
			for (int k = 0; k < n; k++)
				memcpy(base + (size_t)k * c->per[i], c->held[k].data[i], c->per[i]);
			out->nitems[i] = (int64_t)n * pf_field_count(&s->fields[i]);
			continue;
		}
		size_t row = (size_t)L[i] * c->per[i];
		int32_t *lens = (int32_t *)(b->data + loff[i]);
		for (int k = 0; k < n; k++) {
			int64_t len = c->held[k].var_len[i];
			/* max_len <= 2^31 (checked by the builder), so a sample
			 * longer than that was cut: its true length saturates */
			lens[n + k] = len > INT32_MAX ? INT32_MAX : (int32_t)len;
			if (len > L[i])
				len = L[i];
			size_t nb = (size_t)len * c->per[i];
			if (nb)
				memcpy(base + (size_t)k * row, c->held[k].data[i], nb);
			memset(base + (size_t)k * row + nb, 0, row - nb);
			lens[k] = (int32_t)len;
		}
		out->lengths[i] = lens;
		out->var_len[i] = L[i];
		out->nitems[i] = (int64_t)n * (int64_t)(row / pf_dtype_size(s->fields[i].dtype));
	}
	release_held(c, n);
	return 0;
}

static void padded_stop(pf_op *op)
{
	padded_cfg *c = op->cfg;
	free(c->held);
	c->held = NULL;
}

static const pf_op_vt padded_vt = {
	.prepare = padded_prepare, .start = padded_start,
	.next = padded_next, .stop = padded_stop,
};

pf_op *pf_op_padded_batch_new(int size, const pf_padded_opts *o, pf_error *err)
{
	if (size < 1 || !o || o->max_len < 1 || o->max_len > (1ll << 31) ||
	    (o->policy != PF_PAD_TRUNCATE && o->policy != PF_PAD_REJECT)) {
		pf_error_set(err, PF_EINVAL,
			     "padded_batch: need size >= 1, options with max_len in 1..2^31 and a valid policy");
		return NULL;
	}
	pf_op *op = pf_op_alloc(&pf_op_padded_batch, sizeof(padded_cfg), err);
	if (op) {
		padded_cfg *c = op->cfg;
		c->size = size;
		c->o = *o;
	}
	return op;
}

static const char *const pad_choices[] = { "truncate", "reject", NULL };

/* The spec's arguments -> a new padded_batch op. */
static pf_op *padded_batch_build(const pf_arg *a, pf_error *err)
{
	pf_padded_opts o = { .max_len = a[1].i,
			      .policy = a[2].i == 1 ? PF_PAD_REJECT : PF_PAD_TRUNCATE,
			      .drop_remainder = (int)a[3].i };
	return pf_op_padded_batch_new((int)a[0].i, &o, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int padded_batch_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	const padded_cfg *c = op->cfg;
	a[0] = (pf_arg){ .set = 1, .i = c->size };
	a[1] = (pf_arg){ .set = 1, .i = c->o.max_len };
	a[2] = (pf_arg){ .set = c->o.policy != PF_PAD_TRUNCATE, .i = c->o.policy == PF_PAD_REJECT };
	a[3] = (pf_arg){ .set = c->o.drop_remainder != 0, .i = c->o.drop_remainder != 0 };
	return 0;
}

const pf_op_desc pf_op_padded_batch = {
	.kind = "padded_batch", .traits = 0,
	.help = "batch, padding variable fields to the longest (at most max_len)",
	.params = {
		{ "size", PF_PARAM_INT, PF_PARAM_REQ | PF_PARAM_POS, 1, 1 << 24, 0, NULL, "batch size" },
		{ "max_len", PF_PARAM_INT, PF_PARAM_REQ, 1, INT64_MAX, 0, NULL,
		  "bound on the variable dimension" },
		{ "over", PF_PARAM_ENUM, 0, 0, 1, PF_PAD_TRUNCATE, pad_choices,
		  "longer samples: truncate or reject" },
		{ "drop", PF_PARAM_BOOL, 0, 0, 1, 0, NULL, "drop the last, smaller batch" },
	},
	.vt = &padded_vt, .build = padded_batch_build, .args = padded_batch_args,
};
