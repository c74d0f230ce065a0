/*
 * cache.c - cache: the first complete epoch of the input is stored (in
 * memory chunks, or in a file) and later epochs replay it without running
 * the input.  A cache file is written to "path.tmp.PID" and renamed into
 * place only when the epoch completes, so a partial cache is never used; an
 * epoch cut short (take() after the cache) discards what was stored.
 *
 * Stored element: u64 id, per field (i64 nitems, i64 var_len), then the
 * fields' bytes, each 8-aligned.  A file starts with "PFCACHE1", u32 schema
 * length, the schema block (pf_schema_encode), and holds records framed by a
 * u32 length.  Memory replay hands out views into the chunks (no copy).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_op.h"

#define CACHE_CHUNK (4u << 20)
#define CACHE_MAGIC "PFCACHE1"
#define CACHE_MAX_SCHEMA 8192

typedef struct cache_cfg {
	char *path;           /* NULL: in memory */
	uint64_t max_bytes;
	/* runtime */
	int complete, filling, failed;
	uint64_t limit, stored;
	pf_buf **chunks;      /* memory: filled chunks */
	size_t nchunks, chunk_cap, used; /* used: bytes in the last chunk */
	size_t rd_chunk, rd_off;         /* replay cursor */
	FILE *f;              /* file: writing (fill) or reading (replay) */
	char *tmp;
} cache_cfg;

static size_t al8(size_t x)
{
	return (x + 7) & ~(size_t)7;
}

static size_t hdr_bytes(const pf_schema *s)
{
	return 8 + 16 * (size_t)s->nfields;
}

static size_t ser_bytes(const pf_elem *e)
{
	size_t n = hdr_bytes(e->schema);
	for (int i = 0; i < e->schema->nfields; i++)
		n = al8(n) + pf_elem_field_bytes(e, i);
	return al8(n);
}

static void ser(const pf_elem *e, unsigned char *p)
{
	const pf_schema *s = e->schema;
	memcpy(p, &e->id, 8);
	for (int i = 0; i < s->nfields; i++) {
		memcpy(p + 8 + 16 * i, &e->nitems[i], 8);
		memcpy(p + 16 + 16 * i, &e->var_len[i], 8);
	}
	size_t n = hdr_bytes(s);
	for (int i = 0; i < s->nfields; i++) {
		n = al8(n);
		size_t fb = pf_elem_field_bytes(e, i);
		if (fb)
			memcpy(p + n, e->data[i], fb);
		n += fb;
	}
}

/* Parse a stored element at p (len bytes) into e; views into p. */
static int deser(pf_op *op, unsigned char *p, size_t len, pf_elem *e, pf_error *err)
{
	const pf_schema *s = &op->schema;
	memset(e, 0, sizeof(*e));
	e->schema = s;
	size_t n = hdr_bytes(s);
	if (len < n)
		return pf_op_error(op, err, PF_ECORRUPT, "stored element of %zu bytes is truncated", len);
	memcpy(&e->id, p, 8);
	for (int i = 0; i < s->nfields; i++) {
		memcpy(&e->nitems[i], p + 8 + 16 * i, 8);
		memcpy(&e->var_len[i], p + 16 + 16 * i, 8);
		size_t ds = pf_dtype_size(s->fields[i].dtype);
		n = al8(n);
		if (e->nitems[i] < 0 || (uint64_t)e->nitems[i] > (len - n) / ds)
			return pf_op_error(op, err, PF_ECORRUPT, "stored element %llu: field %d overruns",
					   (unsigned long long)e->id, i);
		e->data[i] = p + n;
		n += (size_t)e->nitems[i] * ds;
	}
	e->buf = p;
	e->nbytes = len;
	return 0;
}

static int cache_prepare(pf_op *op, pf_error *err)
{
	cache_cfg *c = op->cfg;
	pf_op *in = op->in;
	op->schema = in->schema;
	op->elem_bytes = in->elem_bytes;
	op->cardinality = in->cardinality;
	op->buffer_bytes = 0;
	if (!c->path) {
		if (in->cardinality >= 0)
			op->buffer_bytes = (uint64_t)in->cardinality *
				al8(in->elem_bytes + hdr_bytes(&op->schema) + 64) + CACHE_CHUNK;
		if (c->max_bytes && (!op->buffer_bytes || op->buffer_bytes > c->max_bytes))
			op->buffer_bytes = c->max_bytes;
	}
	c->limit = c->max_bytes ? c->max_bytes : op->rt->opts.memory_budget;
	return 0;
}

static void drop_chunks(cache_cfg *c)
{
	for (size_t i = 0; i < c->nchunks; i++)
		pf_buf_unref(c->chunks[i]);
	c->nchunks = 0;
	c->used = 0;
	c->stored = 0;
}

static void abort_file(cache_cfg *c)
{
	if (c->f)
		fclose(c->f);
	c->f = NULL;
	if (c->tmp) {
		unlink(c->tmp);
		free(c->tmp);
		c->tmp = NULL;
	}
}

/* Open the cache file for replay if it is complete and matches the schema. */
static int open_replay(pf_op *op)
{
	cache_cfg *c = op->cfg;
	FILE *f = fopen(c->path, "rb");
	if (!f)
		return 0;
	unsigned char want[CACHE_MAX_SCHEMA];
	size_t wl = pf_schema_encode(&op->schema, want, sizeof(want));
	char magic[8];
	uint32_t sl;
	unsigned char got[CACHE_MAX_SCHEMA];
	if (fread(magic, 1, 8, f) != 8 || memcmp(magic, CACHE_MAGIC, 8) ||
	    fread(&sl, 4, 1, f) != 1 || sl != wl || sl > sizeof(got) ||
	    fread(got, 1, sl, f) != sl || memcmp(got, want, sl)) {
		fclose(f);
		return 0;
	}
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	c->f = f;
	return 1;
}

static int begin_epoch(pf_op *op, pf_error *err)
{
	cache_cfg *c = op->cfg;
	c->rd_chunk = c->rd_off = 0;
	if (c->path) {
		abort_file(c);
		if (open_replay(op)) {
			c->complete = 1;
			c->filling = 0;
			return 0;
		}
		c->complete = 0;
		size_t n = strlen(c->path) + 32;
		c->tmp = malloc(n);
		if (!c->tmp)
			return pf_op_error(op, err, PF_ENOMEM, "out of memory");
		snprintf(c->tmp, n, "%s.tmp.%ld", c->path, (long)getpid());
		c->f = fopen(c->tmp, "wb");
		if (!c->f)
			return pf_op_error(op, err, PF_EIO, "%s: cannot create the cache file", c->tmp);
		setvbuf(c->f, NULL, _IOFBF, 1 << 20);
		unsigned char sb[CACHE_MAX_SCHEMA];
		uint32_t sl = (uint32_t)pf_schema_encode(&op->schema, sb, sizeof(sb));
		if (sl > sizeof(sb) || fwrite(CACHE_MAGIC, 1, 8, c->f) != 8 ||
		    fwrite(&sl, 4, 1, c->f) != 1 || fwrite(sb, 1, sl, c->f) != sl)
			return pf_op_error(op, err, PF_EIO, "%s: write failed", c->tmp);
		c->filling = 1;
		return 0;
	}
	if (!c->complete) {
		drop_chunks(c);
		c->filling = 1;
	}
	return 0;
}

static int cache_start(pf_op *op, pf_error *err)
{
	cache_cfg *c = op->cfg;
	c->complete = c->filling = c->failed = 0;
	return begin_epoch(op, err);
}

static int store_mem(pf_op *op, const pf_elem *e, pf_error *err)
{
	cache_cfg *c = op->cfg;
	size_t need = ser_bytes(e) + 8;
	if (c->stored + need > c->limit)
		return pf_op_error(op, err, PF_EBUDGET,
				   "the in-memory cache passed %llu bytes (%s)",
				   (unsigned long long)c->limit,
				   c->max_bytes ? "its max_bytes" : "the memory budget");
	if (!c->nchunks || c->used + need > c->chunks[c->nchunks - 1]->cap) {
		if (c->nchunks && c->used + 8 <= c->chunks[c->nchunks - 1]->cap)
			memset(c->chunks[c->nchunks - 1]->data + c->used, 0, 8); /* end mark */
		if (c->nchunks == c->chunk_cap) {
			size_t cap = c->chunk_cap ? 2 * c->chunk_cap : 16;
			pf_buf **n = realloc(c->chunks, cap * sizeof(*n));
			if (!n)
				return pf_op_error(op, err, PF_ENOMEM, "out of memory");
			c->chunks = n;
			c->chunk_cap = cap;
		}
		pf_buf *b = pf_buf_get(op->rt->pool, need > CACHE_CHUNK ? need : CACHE_CHUNK);
		if (!b)
			return pf_op_error(op, err, PF_ENOMEM, "out of memory");
		c->chunks[c->nchunks++] = b;
		c->used = 0;
		c->stored += b->cap;
	}
	unsigned char *p = c->chunks[c->nchunks - 1]->data + c->used;
	uint64_t len = need - 8;
	memcpy(p, &len, 8);
	ser(e, p + 8);
	c->used += need;
	return 0;
}

static int store_file(pf_op *op, const pf_elem *e, pf_error *err)
{
	cache_cfg *c = op->cfg;
	size_t n = ser_bytes(e);
	unsigned char stackbuf[4096];
	unsigned char *p = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
	if (!p)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	memset(p, 0, n);
	ser(e, p);
	uint32_t len = (uint32_t)n;
	int bad = fwrite(&len, 4, 1, c->f) != 1 || fwrite(p, 1, n, c->f) != n;
	if (p != stackbuf)
		free(p);
	return bad ? pf_op_error(op, err, PF_EIO, "%s: write failed", c->tmp) : 0;
}

static int finish_fill(pf_op *op, pf_error *err)
{
	cache_cfg *c = op->cfg;
	c->filling = 0;
	if (c->path) {
		int bad = fflush(c->f) != 0 || fsync(fileno(c->f)) != 0;
		fclose(c->f);
		c->f = NULL;
		if (bad || rename(c->tmp, c->path) != 0) {
			unlink(c->tmp);
			return pf_op_error(op, err, PF_EIO, "%s: cannot complete the cache file", c->path);
		}
		free(c->tmp);
		c->tmp = NULL;
	}
	c->complete = 1;
	return 0;
}

static int replay(pf_op *op, pf_elem *out, pf_error *err)
{
	cache_cfg *c = op->cfg;
	if (!c->path) {
		while (c->rd_chunk < c->nchunks) {
			pf_buf *b = c->chunks[c->rd_chunk];
			size_t end = c->rd_chunk == c->nchunks - 1 ? c->used : b->cap;
			if (c->rd_off + 8 <= end) {
				uint64_t len;
				memcpy(&len, b->data + c->rd_off, 8);
				if (len == 0 || len > end - c->rd_off - 8) {
					/* chunk tail left unused */
					c->rd_chunk++;
					c->rd_off = 0;
					continue;
				}
				int rc = deser(op, b->data + c->rd_off + 8, (size_t)len, out, err);
				if (rc)
					return rc;
				pf_buf_ref(b);
				out->ref_ = b;
				c->rd_off += 8 + (size_t)len;
				return 0;
			}
			c->rd_chunk++;
			c->rd_off = 0;
		}
		return PF_END;
	}
	uint32_t len;
	if (fread(&len, 4, 1, c->f) != 1)
		return PF_END;
	if (len > (1u << 30))
		return pf_op_error(op, err, PF_ECORRUPT, "%s: record of %u bytes", c->path, len);
	pf_buf *b = pf_buf_get(op->rt->pool, len ? len : 1);
	if (!b)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	if (fread(b->data, 1, len, c->f) != len) {
		pf_buf_unref(b);
		return pf_op_error(op, err, PF_ETRUNC, "%s: truncated record", c->path);
	}
	int rc = deser(op, b->data, len, out, err);
	if (rc) {
		pf_buf_unref(b);
		return rc;
	}
	out->ref_ = b;
	return 0;
}

static int cache_next(pf_op *op, pf_elem *out, pf_error *err)
{
	cache_cfg *c = op->cfg;
	if (c->failed)
		return pf_op_error(op, err, PF_EIO, "%s: cannot start the epoch",
				   c->path ? c->path : "memory");
	if (c->complete)
		return replay(op, out, err);
	int rc = pf_op_next(op->in, out, err);
	if (rc == PF_END)
		return finish_fill(op, err) ?: PF_END;
	if (rc)
		return rc;
	rc = c->path ? store_file(op, out, err) : store_mem(op, out, err);
	if (rc)
		pf_elem_release(out);
	return rc;
}

static void cache_reset(pf_op *op)
{
	cache_cfg *c = op->cfg;
	if (!c->complete) {
		/* cut short: the partial cache is dropped and the input runs again */
		abort_file(c);
		drop_chunks(c);
		pf_op_reset(op->in);
	}
	if (begin_epoch(op, NULL))
		c->failed = 1;
}

static void cache_stop(pf_op *op)
{
	cache_cfg *c = op->cfg;
	abort_file(c);
	drop_chunks(c);
	free(c->chunks);
	c->chunks = NULL;
	c->chunk_cap = 0;
	c->complete = 0;
}

static void cache_destroy(pf_op *op)
{
	free(((cache_cfg *)op->cfg)->path);
}

static const pf_op_vt cache_vt = {
	.kind = "cache", .prepare = cache_prepare, .start = cache_start,
	.next = cache_next, .reset = cache_reset, .stop = cache_stop,
	.destroy = cache_destroy,
};

pf_op *pf_op_cache_new(const char *path, uint64_t max_bytes, pf_error *err)
{
	pf_op *op = pf_op_alloc(&cache_vt, sizeof(cache_cfg), err);
	if (!op)
		return NULL;
	cache_cfg *c = op->cfg;
	c->max_bytes = max_bytes;
	if (path && !(c->path = strdup(path))) {
		free(op->cfg);
		free(op);
		pf_error_set(err, PF_ENOMEM, "cache: out of memory");
		return NULL;
	}
	return op;
}
