/*
 * cache.c - cache: the first complete epoch of the input is stored (in
 * memory chunks, or in a file) and later epochs replay it without running
 * the input.  An epoch cut short (take() after the cache) discards what was
 * stored.
 *
 * Stored element: u64 id, u32 batch (0 for an element, B for a batch),
 * u32 0, per field (i64 nitems, i64 var_len), then the fields' bytes, each
 * 8-aligned.  Batches of fixed fields are kept as batches; padded batches
 * (whose lengths would need storing too) are refused: cache before them.  Memory replay hands out views into the
 * chunks (no copy); of a fixed-shape schema it lends the fields in place
 * (cache_borrow), so a batch or shuffle after it gathers straight from the
 * chunks, no element built per sample.
 *
 * A cache file: "PFCACHE3", u32 schema length, the schema block
 * (pf_schema_encode), records framed by a u32 length, then the trailer:
 * u32 0xffffffff, u64 record count, u64 bytes of the framed records, and
 * "PFCEND3\0" (version 2 files, whose elements had no batch count, are
 * rebuilt).  It is written to "path.tmp.PID.N" (a name no other writer,
 * in this process or another, uses), flushed, fsynced and renamed into
 * place only when the epoch completes.  A file is replayed only when its
 * header matches the schema and its trailer matches the file's size; the
 * record count is checked again at the end of each replay.  So a writer
 * killed midway leaves only its temp file (never read), a cut or foreign
 * file at path is rebuilt from the input, and two writers filling the same
 * path at once each rename a complete file (the last one stays).
 *
 * A write that fails while filling (ENOSPC, EFBIG past RLIMIT_FSIZE, EIO)
 * is not an error: the temp file is removed, one warning is printed, and the
 * iterator reads its input every epoch from then on (the elements of the
 * epoch in progress are delivered as usual).  A temp file that cannot be
 * created (no such directory, no permission) is an error naming it.
 */
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pf_op.h"

#define CACHE_CHUNK (4u << 20)
#define CACHE_MAGIC "PFCACHE3"
#define CACHE_END_MAGIC "PFCEND3"   /* 8 bytes with its NUL */
#define CACHE_END_MARK 0xffffffffu
#define CACHE_TRAILER (4 + 8 + 8 + 8)
#define CACHE_MAX_SCHEMA 8192

static _Atomic unsigned tmp_serial; /* unique temp names within the process */

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
	uint64_t nrec, rec_bytes;  /* file: records written / to replay, their framed bytes */
	uint64_t replayed;    /* file replay: records read this epoch */
	int bypass;           /* file: a write failed: read the input, no cache */
} cache_cfg;

static size_t al8(size_t x)
{
	return (x + 7) & ~(size_t)7;
}

static size_t hdr_bytes(const pf_schema *s)
{
	return 16 + 16 * (size_t)s->nfields;
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
	uint32_t b[2] = { e->batch, 0 };
	memcpy(p, &e->id, 8);
	memcpy(p + 8, b, 8);
	for (int i = 0; i < s->nfields; i++) {
		memcpy(p + 16 + 16 * i, &e->nitems[i], 8);
		memcpy(p + 24 + 16 * i, &e->var_len[i], 8);
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
	memcpy(&e->batch, p + 8, 4);
	for (int i = 0; i < s->nfields; i++) {
		memcpy(&e->nitems[i], p + 16 + 16 * i, 8);
		memcpy(&e->var_len[i], p + 24 + 16 * i, 8);
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
	for (int i = 0; in->batched && i < op->schema.nfields; i++)
		if (pf_field_bytes(&op->schema.fields[i]) < 0)
			return pf_op_error(op, err, PF_EINVAL,
					   "its input is padded batches (field \"%s\" is variable-length), whose lengths it does not keep: cache before padded_batch",
					   op->schema.fields[i].name);
	if (!c->path) {
		if (in->cardinality >= 0)
			op->buffer_bytes = (uint64_t)in->cardinality *
				al8(in->elem_bytes + hdr_bytes(&op->schema) + 64) + CACHE_CHUNK;
		if (c->max_bytes && (!op->buffer_bytes || op->buffer_bytes > c->max_bytes))
			op->buffer_bytes = c->max_bytes;
	}
	c->limit = c->max_bytes ? c->max_bytes : op->rt->opts.memory_budget;
	/* in memory, a fixed-shape schema: a stored element's fields, after
	 * its header (a multiple of 8 bytes), are in the canonical layout,
	 * so it can be lent in place (cache_borrow) */
	int64_t off[PF_MAX_FIELDS];
	size_t canon = pf_layout(&op->schema, 1, off);
	int fixed = op->schema.nfields > 0 && canon > 0;
	for (int i = 0; i < op->schema.nfields; i++)
		fixed &= off[i] >= 0;
	/* batches are not lent: a borrower takes samples */
	op->can_borrow = !c->path && fixed && !in->batched;
	op->canon_bytes = op->can_borrow ? canon : 0;
	/* the chunks stay until stop (or the reset of an epoch cut short) */
	op->lend_window = op->can_borrow ? PF_LEND_STABLE : 0;
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

/* Open the cache file for replay if it is complete (its trailer matches
 * its size) and matches the schema; else 0 (the file is rebuilt). */
static int open_replay(pf_op *op)
{
	cache_cfg *c = op->cfg;
	FILE *f = fopen(c->path, "rb");
	if (!f)
		return 0;
	unsigned char want[CACHE_MAX_SCHEMA];
	size_t wl = pf_schema_encode(&op->schema, want, sizeof(want));
	char magic[8];
	uint32_t sl, mark;
	unsigned char got[CACHE_MAX_SCHEMA];
	uint64_t nrec, bytes;
	struct stat stb;
	int good = fstat(fileno(f), &stb) == 0 &&
		fread(magic, 1, 8, f) == 8 && !memcmp(magic, CACHE_MAGIC, 8) &&
		fread(&sl, 4, 1, f) == 1 && sl == wl && sl <= sizeof(got) &&
		fread(got, 1, sl, f) == sl && !memcmp(got, want, sl) &&
		(uint64_t)stb.st_size >= 12 + (uint64_t)sl + CACHE_TRAILER &&
		fseeko(f, stb.st_size - CACHE_TRAILER, SEEK_SET) == 0 &&
		fread(&mark, 4, 1, f) == 1 && mark == CACHE_END_MARK &&
		fread(&nrec, 8, 1, f) == 1 && fread(&bytes, 8, 1, f) == 1 &&
		fread(magic, 1, 8, f) == 8 && !memcmp(magic, CACHE_END_MAGIC, 8) &&
		bytes == (uint64_t)stb.st_size - 12 - sl - CACHE_TRAILER &&
		fseeko(f, 12 + (off_t)sl, SEEK_SET) == 0;
	if (!good) {
		fclose(f);
		return 0;
	}
	setvbuf(f, NULL, _IOFBF, 1 << 20);
	c->f = f;
	c->nrec = nrec;
	c->replayed = 0;
	return 1;
}

/* A write to the temp file failed (errno e): drop the file, warn once, and
 * read the input from now on. */
static void give_up(pf_op *op, int e)
{
	cache_cfg *c = op->cfg;
	fprintf(stderr, "pipefeed: %s: %s: cannot write the cache (%s): reading the input every epoch instead\n",
		op->label, c->path, strerror(e ? e : EIO));
	abort_file(c);
	c->filling = 0;
	c->bypass = 1;
}

static int begin_epoch(pf_op *op, pf_error *err)
{
	cache_cfg *c = op->cfg;
	c->rd_chunk = c->rd_off = 0;
	if (c->path) {
		abort_file(c);
		if (c->bypass) {
			c->complete = c->filling = 0;
			return 0;
		}
		if (open_replay(op)) {
			c->complete = 1;
			c->filling = 0;
			return 0;
		}
		c->complete = 0;
		size_t n = strlen(c->path) + 48;
		c->tmp = malloc(n);
		if (!c->tmp)
			return pf_op_error(op, err, PF_ENOMEM, "out of memory");
		snprintf(c->tmp, n, "%s.tmp.%ld.%u", c->path, (long)getpid(),
			 atomic_fetch_add(&tmp_serial, 1));
		int fd = open(c->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 || !(c->f = fdopen(fd, "wb"))) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			int code = e == ENOENT ? PF_ENOENT : PF_EIO;
			pf_op_error(op, err, code, "%s: cannot create the cache file: %s",
				    c->tmp, strerror(e));
			free(c->tmp);
			c->tmp = NULL;
			return code;
		}
		setvbuf(c->f, NULL, _IOFBF, 1 << 20);
		c->nrec = c->rec_bytes = 0;
		c->filling = 1;
		unsigned char sb[CACHE_MAX_SCHEMA];
		uint32_t sl = (uint32_t)pf_schema_encode(&op->schema, sb, sizeof(sb));
		if (sl > sizeof(sb))
			return pf_op_error(op, err, PF_ELIMIT, "%s: schema too large for a cache file", c->path);
		errno = 0;
		if (fwrite(CACHE_MAGIC, 1, 8, c->f) != 8 || fwrite(&sl, 4, 1, c->f) != 1 ||
		    fwrite(sb, 1, sl, c->f) != sl)
			give_up(op, errno);
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
	c->complete = c->filling = c->failed = c->bypass = 0;
	return begin_epoch(op, err);
}

/* Append a copy of e to the chunks; *at (may be NULL) gets where its
 * serialized form begins. */
static int store_mem(pf_op *op, const pf_elem *e, unsigned char **at, pf_error *err)
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
	if (at)
		*at = p + 8;
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
	errno = 0;
	int bad = n >= CACHE_END_MARK || fwrite(&len, 4, 1, c->f) != 1 || fwrite(p, 1, n, c->f) != n;
	int werr = errno;
	if (p != stackbuf)
		free(p);
	if (bad) {
		give_up(op, n >= CACHE_END_MARK ? EFBIG : werr);
		return 0;
	}
	c->nrec++;
	c->rec_bytes += 4 + (uint64_t)n;
	return 0;
}

static int finish_fill(pf_op *op, pf_error *err)
{
	cache_cfg *c = op->cfg;
	c->filling = 0;
	if (c->path) {
		uint32_t mark = CACHE_END_MARK;
		errno = 0;
		int bad = fwrite(&mark, 4, 1, c->f) != 1 || fwrite(&c->nrec, 8, 1, c->f) != 1 ||
			fwrite(&c->rec_bytes, 8, 1, c->f) != 1 ||
			fwrite(CACHE_END_MAGIC, 1, 8, c->f) != 8 ||
			fflush(c->f) != 0 || fsync(fileno(c->f)) != 0;
		int e = errno;
		if (!bad) {
			bad = fclose(c->f) != 0;
			e = errno;
			c->f = NULL;
		}
		if (bad || rename(c->tmp, c->path) != 0) {
			give_up(op, bad ? e : errno);
			(void)err;
			return 0; /* this epoch came from the input: nothing is lost */
		}
		free(c->tmp);
		c->tmp = NULL;
	}
	c->complete = 1;
	return 0;
}

/* Memory replay: the next stored element from the cursor on (its chunk
 * *bp, its serialized bytes *p, *len), the cursor moved past it; 0 or
 * PF_END.  A chunk ends at an 8-byte zero (its tail left unused). */
static int next_stored(cache_cfg *c, pf_buf **bp, unsigned char **p, size_t *len)
{
	while (c->rd_chunk < c->nchunks) {
		pf_buf *b = c->chunks[c->rd_chunk];
		size_t end = c->rd_chunk == c->nchunks - 1 ? c->used : b->cap;
		uint64_t l = 0;
		if (c->rd_off + 8 <= end)
			memcpy(&l, b->data + c->rd_off, 8);
		if (l == 0 || l > end - c->rd_off - 8) {
			c->rd_chunk++;
			c->rd_off = 0;
			continue;
		}
		*bp = b;
		*p = b->data + c->rd_off + 8;
		*len = (size_t)l;
		c->rd_off += 8 + (size_t)l;
		return 0;
	}
	return PF_END;
}

static int replay(pf_op *op, pf_elem *out, pf_error *err)
{
	cache_cfg *c = op->cfg;
	if (!c->path) {
		pf_buf *b;
		unsigned char *p;
		size_t l;
		int rc = next_stored(c, &b, &p, &l);
		if (!rc)
			rc = deser(op, p, l, out, err);
		if (!rc) {
			pf_buf_ref(b);
			out->ref_ = b;
		}
		return rc;
	}
	uint32_t len;
	off_t at = ftello(c->f);
	if (fread(&len, 4, 1, c->f) != 1)
		return pf_op_error(op, err, PF_ETRUNC, "%s: offset %lld: the file ends before its trailer",
				   c->path, (long long)at);
	if (len == CACHE_END_MARK) {
		if (c->replayed != c->nrec)
			return pf_op_error(op, err, PF_ECORRUPT, "%s: offset %lld: %llu records, the trailer says %llu",
					   c->path, (long long)at, (unsigned long long)c->replayed,
					   (unsigned long long)c->nrec);
		return PF_END;
	}
	if (len > (1u << 30))
		return pf_op_error(op, err, PF_ECORRUPT, "%s: offset %lld: record of %u bytes",
				   c->path, (long long)at, len);
	pf_buf *b = pf_buf_get(op->rt->pool, len ? len : 1);
	if (!b)
		return pf_op_error(op, err, PF_ENOMEM, "out of memory");
	if (fread(b->data, 1, len, c->f) != len) {
		pf_buf_unref(b);
		return pf_op_error(op, err, PF_ETRUNC, "%s: offset %lld: truncated record",
				   c->path, (long long)at);
	}
	int rc = deser(op, b->data, len, out, err);
	if (rc) {
		pf_buf_unref(b);
		return rc;
	}
	out->ref_ = b;
	c->replayed++;
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
	if (rc == PF_END && c->path && !c->filling)
		return PF_END; /* bypass: nothing was stored */
	if (rc == PF_END)
		return finish_fill(op, err) ?: PF_END;
	if (rc)
		return rc;
	if (c->path && !c->filling)
		return 0;
	rc = c->path ? store_file(op, out, err) : store_mem(op, out, NULL, err);
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

/*
 * The in-memory cache of a fixed-shape schema lends its stored copies (see
 * pf_op_vt.borrow): the fields after a record's header.  The chunks live
 * until the iterator stops, so what is lent stays valid longer than the
 * contract asks.  Filling, the input's element is stored, released, and
 * its copy lent.
 */
static int cache_borrow(pf_op *op, const unsigned char **data, size_t *len, uint64_t *id,
			pf_error *err)
{
	cache_cfg *c = op->cfg;
	size_t hdr = hdr_bytes(&op->schema);
	if (c->failed)
		return pf_op_error(op, err, PF_EIO, "memory: cannot start the epoch");
	if (c->complete) {
		pf_buf *b;
		unsigned char *p;
		size_t l;
		int rc = next_stored(c, &b, &p, &l);
		if (rc)
			return rc;
		if (l < hdr + op->canon_bytes)
			return pf_op_error(op, err, PF_ECORRUPT,
					   "stored element of %zu bytes is truncated", l);
		memcpy(id, p, 8);
		*data = p + hdr;
		*len = op->canon_bytes;
		return 0;
	}
	pf_elem e;
	int rc = pf_op_next(op->in, &e, err);
	if (rc == PF_END)
		return finish_fill(op, err) ?: PF_END;
	if (rc)
		return rc;
	unsigned char *at;
	rc = store_mem(op, &e, &at, err);
	pf_elem_release(&e);
	if (rc)
		return rc;
	memcpy(id, at, 8);
	*data = at + hdr;
	*len = op->canon_bytes;
	return 0;
}

static const pf_op_vt cache_vt = {
	.prepare = cache_prepare, .start = cache_start,
	.next = cache_next, .reset = cache_reset, .stop = cache_stop,
	.destroy = cache_destroy, .borrow = cache_borrow,
};

pf_op *pf_op_cache_new(const char *path, uint64_t max_bytes, pf_error *err)
{
	pf_op *op = pf_op_alloc(&pf_op_cache, sizeof(cache_cfg), err);
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

/* The spec's arguments -> a new cache op. */
static pf_op *cache_build(const pf_arg *a, pf_error *err)
{
	return pf_op_cache_new(a[0].set ? a[0].s : NULL, (uint64_t)a[1].i, err);
}

/* The way back: this op's arguments (pf_pipeline_format). */
static int cache_args(const pf_op *op, pf_arg *a, pf_error *err)
{
	(void)err;
	const cache_cfg *c = op->cfg;
	a[0] = (pf_arg){ .set = c->path != NULL, .s = c->path };
	a[1] = (pf_arg){ .set = c->max_bytes != 0, .i = (int64_t)c->max_bytes };
	return 0;
}

const pf_op_desc pf_op_cache = {
	.kind = "cache", .traits = 0,
	.help = "keep the first epoch, replay it afterwards",
	.params = {
		{ "path", PF_PARAM_STR, PF_PARAM_POS, 0, 0, 0, NULL, "cache file (default: in memory)" },
		{ "max_bytes", PF_PARAM_INT, 0, 0, INT64_MAX, 0, NULL,
		  "in-memory bound (default: the memory budget)" },
	},
	.vt = &cache_vt, .build = cache_build, .args = cache_args,
};
