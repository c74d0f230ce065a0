/* elem.c - elements: layout, pooled storage, compaction, release. */
#include <stdlib.h>
#include <string.h>

#include "pf_op.h"

static const pf_schema record_schema = {
	.nfields = 1,
	.fields = { { .name = "record", .dtype = PF_U8, .ndim = 1, .dims = { PF_DIM_VAR } } },
};
static const pf_schema value_schema = {
	.nfields = 1,
	.fields = { { .name = "value", .dtype = PF_I64, .ndim = 0 } },
};

const pf_schema *pf_record_schema(void)
{
	return &record_schema;
}

const pf_schema *pf_value_schema(void)
{
	return &value_schema;
}

static size_t align_up(size_t x, size_t a)
{
	return (x + a - 1) & ~(a - 1);
}

size_t pf_layout(const pf_schema *s, uint32_t B, int64_t off[PF_MAX_FIELDS])
{
	size_t a = B > 1 ? 64 : 8, pos = 0;
	for (int i = 0; i < s->nfields; i++) {
		int64_t fb = pf_field_bytes(&s->fields[i]);
		if (fb < 0) {
			off[i] = -1;
			continue;
		}
		pos = align_up(pos, a);
		off[i] = (int64_t)pos;
		pos += (size_t)fb * (B ? B : 1);
	}
	return pos;
}

int pf_elem_make(pf_rt *rt, const pf_schema *s, size_t bytes, pf_elem *e,
		 pf_error *err)
{
	int64_t off[PF_MAX_FIELDS];
	size_t fixed = pf_layout(s, 1, off);
	pf_buf *b = pf_buf_get(rt->pool, bytes > fixed ? bytes : fixed);
	memset(e, 0, sizeof(*e));
	if (!b)
		return pf_error_set(err, PF_ENOMEM, "out of memory (element of %zu bytes)",
				    bytes);
	e->schema = s;
	e->buf = b->data;
	e->ref_ = b;
	e->nbytes = fixed;
	for (int i = 0; i < s->nfields; i++) {
		if (off[i] < 0)
			continue;
		e->data[i] = b->data + off[i];
		e->nitems[i] = pf_field_count(&s->fields[i]);
	}
	return 0;
}

void *pf_elem_alloc(pf_elem *out, int field, int64_t len, pf_error *err)
{
	if (!out || !out->schema || field < 0 || field >= out->schema->nfields ||
	    len < 0) {
		pf_error_set(err, PF_EINVAL, "pf_elem_alloc: bad field %d or length", field);
		return NULL;
	}
	const pf_field *f = &out->schema->fields[field];
	int64_t per = 1;
	int var = 0;
	for (int d = 0; d < f->ndim; d++) {
		if (f->dims[d] == PF_DIM_VAR)
			var = 1;
		else
			per *= f->dims[d];
	}
	pf_buf *b = out->ref_;
	if (!var || !b || out->batch) {
		pf_error_set(err, PF_EINVAL, "pf_elem_alloc: field \"%s\" is not variable-length",
			     f->name);
		return NULL;
	}
	size_t dsz = pf_dtype_size(f->dtype);
	size_t pos = align_up(out->nbytes, 8);
	size_t unit = (size_t)per * dsz;
	if (pos > b->cap || (unit && (uint64_t)len > (b->cap - pos) / unit)) {
		pf_error_set(err, PF_ELIMIT,
			     "field \"%s\": %lld items do not fit the %zu-byte element bound",
			     f->name, (long long)len, b->cap);
		return NULL;
	}
	out->data[field] = (unsigned char *)out->buf + pos;
	out->nitems[field] = len * per;
	out->var_len[field] = len;
	out->nbytes = pos + (size_t)len * (size_t)per * dsz;
	return out->data[field];
}

void pf_elem_view(const pf_schema *s, const unsigned char *d, size_t len,
		  uint64_t id, pf_elem *e)
{
	memset(e, 0, sizeof(*e));
	e->schema = s;
	e->id = id;
	e->buf = (void *)d;
	e->nbytes = len;
	if (pf_schema_record_bytes(s) < 0) {
		/* the record schema: one u8[?] field */
		e->data[0] = (void *)d;
		e->nitems[0] = e->var_len[0] = (int64_t)len;
		return;
	}
	int64_t off[PF_MAX_FIELDS];
	pf_layout(s, 1, off);
	for (int i = 0; i < s->nfields; i++) {
		e->data[i] = (unsigned char *)d + off[i];
		e->nitems[i] = pf_field_count(&s->fields[i]);
	}
}

void pf_elem_view_again(pf_elem *e, const unsigned char *d, size_t len, uint64_t id)
{
	const unsigned char *old = e->buf;
	if (pf_schema_record_bytes(e->schema) < 0) {
		e->data[0] = (void *)d;
		e->nitems[0] = e->var_len[0] = (int64_t)len;
	} else {
		for (int i = 0; i < e->schema->nfields; i++)
			e->data[i] = (unsigned char *)d + ((const unsigned char *)e->data[i] - old);
	}
	e->buf = (void *)d;
	e->nbytes = len;
	e->id = id;
}

int pf_elem_from_bytes(pf_rt *rt, const pf_schema *s, const unsigned char *d,
		       size_t len, uint64_t id, pf_elem *out, pf_error *err)
{
	pf_buf *b = pf_buf_get(rt->pool, len ? len : 1);
	if (!b) {
		memset(out, 0, sizeof(*out));
		return pf_error_set(err, PF_ENOMEM, "out of memory (element of %zu bytes)", len);
	}
	memcpy(b->data, d, len);
	pf_elem_view(s, b->data, len, id, out);
	out->ref_ = b;
	return 0;
}

size_t pf_elem_field_bytes(const pf_elem *e, int i)
{
	return (size_t)e->nitems[i] * pf_dtype_size(e->schema->fields[i].dtype);
}

void pf_elem_release(pf_elem *e)
{
	if (!e)
		return;
	pf_buf_unref(e->ref_);
	memset(e, 0, sizeof(*e));
}

int pf_elem_compact(pf_rt *rt, pf_elem *in, pf_elem *out, pf_error *err)
{
	const pf_schema *s = in->schema;
	int inside = in->buf != NULL;
	size_t need = 0;
	for (int i = 0; i < s->nfields; i++) {
		const unsigned char *d = in->data[i];
		size_t fb = pf_elem_field_bytes(in, i);
		need = align_up(need, 8) + fb;
		if (d && (d < (unsigned char *)in->buf ||
			  d + fb > (unsigned char *)in->buf + in->nbytes))
			inside = 0;
		if (in->lengths[i])
			inside = 0;
	}
	if (inside && in->nbytes <= need + 64 && in->ref_ &&
	    atomic_load(&((pf_buf *)in->ref_)->refs) == 1) {
		/* already compact and not shared: keep it */
		*out = *in;
		memset(in, 0, sizeof(*in));
		return 0;
	}
	pf_buf *b = pf_buf_get(rt->pool, need ? need : 1);
	if (!b) {
		pf_elem_release(in);
		return pf_error_set(err, PF_ENOMEM, "out of memory (%zu bytes)", need);
	}
	*out = *in;
	out->buf = b->data;
	out->ref_ = b;
	size_t pos = 0;
	for (int i = 0; i < s->nfields; i++) {
		size_t fb = pf_elem_field_bytes(in, i);
		pos = align_up(pos, 8);
		out->data[i] = b->data + pos;
		if (fb)
			memcpy(b->data + pos, in->data[i], fb);
		pos += fb;
	}
	out->nbytes = pos;
	pf_elem_release(in);
	return 0;
}
