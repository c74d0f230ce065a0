/* idx.c - streaming IDX reader (plain or gzip'd); see pf_idx.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "pf_bswap.h"
#include "pf_file.h"
#include "pf_idx.h"

#define IDX_INBUF (256u << 10)
/* deflate's best case is ~1032:1; with gzip framing this bound is safe */
#define GZ_MAX_RATIO 1100u

struct pf_idx {
	pf_file f;                  /* the bytes: a file or a buffer (size: compressed when gzip) */
	uint64_t in_off;            /* file bytes handed to zlib / copied */
	int gz;
	int z_init;
	int z_end;                  /* the last member ended */
	z_stream zs;
	unsigned char *inbuf;       /* fd + gzip: input window */
	uint64_t out_off;           /* uncompressed bytes produced */
	uint64_t next;              /* next record */
	int failed;
	pf_idx_header h;
};

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static pf_dtype idx_dtype(int code)
{
	switch (code) {
	case 0x08: return PF_U8;
	case 0x09: return PF_I8;
	case 0x0B: return PF_I16;
	case 0x0C: return PF_I32;
	case 0x0D: return PF_F32;
	case 0x0E: return PF_F64;
	default: return 0;
	}
}

int pf_idx_parse_header(pf_idx_header *h, const void *buf, size_t len,
			const char *name, pf_error *err)
{
	const unsigned char *p = buf;
	uint64_t rec;

	memset(h, 0, sizeof(*h));
	if (len < 4)
		return pf_error_set(err, PF_ETRUNC,
				    "%s: offset %zu: truncated IDX header (need 4 bytes)",
				    name, len);
	if (p[0] != 0 || p[1] != 0)
		return pf_error_set(err, PF_EFORMAT,
				    "%s: offset 0: not an IDX file (magic %02x %02x, want 00 00)",
				    name, p[0], p[1]);
	h->type_code = p[2];
	h->dtype = idx_dtype(p[2]);
	if (!h->dtype)
		return pf_error_set(err, PF_EFORMAT,
				    "%s: offset 2: unknown IDX type code 0x%02x",
				    name, p[2]);
	h->ndim = p[3];
	if (h->ndim < 1 || h->ndim > PF_IDX_MAX_DIMS)
		return pf_error_set(err, h->ndim ? PF_ELIMIT : PF_ECORRUPT,
				    "%s: offset 3: IDX file has %d dimensions (1..%d supported)",
				    name, h->ndim, PF_IDX_MAX_DIMS);
	h->header_bytes = 4 + 4 * (size_t)h->ndim;
	if (len < h->header_bytes)
		return pf_error_set(err, PF_ETRUNC,
				    "%s: offset %zu: truncated IDX header (need %zu bytes for %d dims)",
				    name, len, h->header_bytes, h->ndim);
	rec = pf_dtype_size(h->dtype);
	for (int i = 0; i < h->ndim; i++) {
		h->dims[i] = be32(p + 4 + 4 * i);
		if (i == 0)
			continue;
		if (h->dims[i] == 0)
			return pf_error_set(err, PF_ECORRUPT,
					    "%s: offset %d: dimension %d is 0",
					    name, 4 + 4 * i, i);
		if (__builtin_mul_overflow(rec, (uint64_t)h->dims[i], &rec) ||
		    rec > PF_IDX_MAX_RECORD)
			return pf_error_set(err, PF_ELIMIT,
					    "%s: offset %d: dimensions give records over %u bytes",
					    name, 4 + 4 * i, PF_IDX_MAX_RECORD);
	}
	h->count = h->dims[0];
	h->record_bytes = (size_t)rec;
	if (__builtin_mul_overflow(rec, h->count, &h->data_bytes) ||
	    h->data_bytes > PF_IDX_MAX_DATA)
		return pf_error_set(err, PF_ELIMIT,
				    "%s: offset 4: %" PRIu64 " records of %" PRIu64
				    " bytes exceed the %llu-byte data limit",
				    name, h->count, rec, (unsigned long long)PF_IDX_MAX_DATA);
	return 0;
}

/* ---- the byte source: plain or inflated, fd or memory ------------------- */

/* Refill zlib's input when it is empty.  Returns 0 (possibly with no more
 * input: avail_in stays 0) or an error. */
static int src_refill(pf_idx *r, pf_error *err)
{
	if (r->zs.avail_in > 0 || r->in_off >= r->f.size)
		return 0;
	if (r->f.fd < 0) {
		uint64_t left = r->f.size - r->in_off;
		size_t n = left > UINT_MAX ? UINT_MAX : (size_t)left;

		r->zs.next_in = (unsigned char *)r->f.mem + r->in_off;
		r->zs.avail_in = (uInt)n;
		r->in_off += n;
		return 0;
	}
	for (;;) {
		ssize_t n = pread(r->f.fd, r->inbuf, IDX_INBUF, (off_t)r->in_off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pf_error_set(err, pf_error_from_errno(-errno),
					    "%s: offset %" PRIu64 ": read: %s",
					    r->f.name, r->in_off, strerror(errno));
		if (n == 0) /* file shrank under us */
			r->f.size = r->in_off;
		r->zs.next_in = r->inbuf;
		r->zs.avail_in = (uInt)n;
		r->in_off += (uint64_t)n;
		return 0;
	}
}

/* Compressed bytes consumed so far. */
static uint64_t src_in_pos(const pf_idx *r)
{
	return r->in_off - r->zs.avail_in;
}

/* Inflate up to n bytes into dst; *got < n only at the end of the stream. */
static int src_read_gz(pf_idx *r, unsigned char *dst, size_t n, size_t *got,
		       pf_error *err)
{
	*got = 0;
	while (*got < n && !r->z_end) {
		int rc, zr;
		size_t chunk = n - *got;

		if ((rc = src_refill(r, err)) < 0)
			return rc;
		if (chunk > UINT_MAX)
			chunk = UINT_MAX;
		r->zs.next_out = dst + *got;
		r->zs.avail_out = (uInt)chunk;
		zr = inflate(&r->zs, Z_NO_FLUSH);
		*got += chunk - r->zs.avail_out;
		r->out_off += chunk - r->zs.avail_out;
		if (zr == Z_STREAM_END) {
			/* another gzip member may follow */
			if ((rc = src_refill(r, err)) < 0)
				return rc;
			if (r->zs.avail_in == 0) {
				r->z_end = 1;
				break;
			}
			if (inflateReset(&r->zs) != Z_OK)
				return pf_error_set(err, PF_ENOMEM,
						    "%s: inflateReset failed", r->f.name);
			continue;
		}
		if (zr == Z_OK)
			continue;
		/* no progress: fine when zlib only wants more input and
		 * there is more; truncation when the file is done */
		if (zr == Z_BUF_ERROR && r->zs.avail_in == 0) {
			if (r->in_off < r->f.size)
				continue;
			return pf_error_set(err, PF_ETRUNC,
					    "%s: offset %" PRIu64 " (compressed offset %" PRIu64
					    "): truncated gzip stream",
					    r->f.name, r->out_off, src_in_pos(r));
		}
		if (zr == Z_MEM_ERROR)
			return pf_error_set(err, PF_ENOMEM, "%s: inflate: out of memory",
					    r->f.name);
		return pf_error_set(err, PF_ECORRUPT,
				    "%s: offset %" PRIu64 " (compressed offset %" PRIu64
				    "): corrupt gzip stream: %s",
				    r->f.name, r->out_off, src_in_pos(r),
				    r->zs.msg ? r->zs.msg : "inflate error");
	}
	return 0;
}

/* Read up to n uncompressed bytes; *got < n only at the end of the data. */
static int src_read(pf_idx *r, void *dst, size_t n, size_t *got, pf_error *err)
{
	if (r->gz)
		return src_read_gz(r, dst, n, got, err);
	*got = 0;
	if (r->out_off >= r->f.size)
		return 0;
	if (n > r->f.size - r->out_off)
		n = (size_t)(r->f.size - r->out_off);
	{
		ssize_t k = pf_file_read_some(&r->f, dst, n, r->out_off, err);

		if (k < 0)
			return (int)k;
		*got = (size_t)k;
		r->out_off += (uint64_t)k;
	}
	return 0;
}

/* ---- open / close -------------------------------------------------------- */

static int idx_start(pf_idx *r, pf_error *err)
{
	unsigned char hb[4 + 4 * PF_IDX_MAX_DIMS];
	size_t got;
	int rc;
	pf_idx_header *h = &r->h;

	if (r->f.size >= 2) {
		unsigned char m[2];

		if ((rc = pf_file_read(&r->f, m, 2, 0, err)) < 0)
			return rc;
		r->gz = m[0] == 0x1f && m[1] == 0x8b;
	}
	if (r->gz) {
		if (r->f.fd >= 0 && !(r->inbuf = malloc(IDX_INBUF)))
			return pf_error_set(err, PF_ENOMEM, "%s: out of memory", r->f.name);
		/* 15 + 16: gzip wrapper only (not zlib, not raw) */
		if (inflateInit2(&r->zs, 15 + 16) != Z_OK)
			return pf_error_set(err, PF_ENOMEM, "%s: inflateInit failed",
					    r->f.name);
		r->z_init = 1;
	}
	/* the header: the 4-byte magic says how long it is */
	if ((rc = src_read(r, hb, 4, &got, err)) < 0)
		return rc;
	if (got == 4 && hb[3] >= 1 && hb[3] <= PF_IDX_MAX_DIMS) {
		size_t more;

		if ((rc = src_read(r, hb + 4, 4 * (size_t)hb[3], &more, err)) < 0)
			return rc;
		got += more;
	}
	if ((rc = pf_idx_parse_header(h, hb, got, r->f.name, err)) < 0)
		return rc;

	if (!r->gz) {
		uint64_t want = h->header_bytes + h->data_bytes;

		if (r->f.size < want)
			return pf_error_set(err, PF_ETRUNC,
					    "%s: offset %" PRIu64 ": truncated: the dims need %"
					    PRIu64 " records of %zu bytes (%" PRIu64
					    " bytes in all), the file has %" PRIu64,
					    r->f.name, r->f.size, h->count, h->record_bytes,
					    want, r->f.size);
		if (r->f.size > want)
			return pf_error_set(err, PF_ECORRUPT,
					    "%s: offset %" PRIu64 ": %" PRIu64
					    " bytes after the last of the %" PRIu64
					    " records the dims describe",
					    r->f.name, want, r->f.size - want, h->count);
	} else {
		/* deflate cannot expand more than ~1032:1; reject dims no
		 * stream of this size can hold before reading anything */
		uint64_t cap;

		if (__builtin_mul_overflow(r->f.size, (uint64_t)GZ_MAX_RATIO, &cap))
			cap = UINT64_MAX;
		if (h->data_bytes > cap)
			return pf_error_set(err, PF_ECORRUPT,
					    "%s: offset 4: the dims claim %" PRIu64
					    " data bytes, more than a %" PRIu64
					    "-byte gzip file can hold",
					    r->f.name, h->data_bytes, r->f.size);
	}
	return 0;
}

static int idx_new(pf_idx **out, pf_error *err)
{
	pf_idx *r = calloc(1, sizeof(*r));

	*out = r;
	if (!r)
		return pf_error_set(err, PF_ENOMEM, "out of memory");
	r->f.fd = -1;
	return 0;
}

int pf_idx_open(pf_idx **out, const char *path, pf_error *err)
{
	pf_idx *r;
	int rc;

	*out = NULL;
	if ((rc = idx_new(&r, err)) < 0)
		return rc;
	if ((rc = pf_file_open(&r->f, path, err)) < 0)
		goto fail;
	if ((rc = idx_start(r, err)) < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	pf_idx_close(r);
	return rc;
}

int pf_idx_open_mem(pf_idx **out, const void *buf, size_t len,
		const char *name, pf_error *err)
{
	pf_idx *r;
	int rc;

	*out = NULL;
	if ((rc = idx_new(&r, err)) < 0)
		return rc;
	if ((rc = pf_file_open_mem(&r->f, buf, len, name, err)) < 0)
		goto fail;
	if ((rc = idx_start(r, err)) < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	pf_idx_close(r);
	return rc;
}

void pf_idx_close(pf_idx *r)
{
	if (!r)
		return;
	if (r->z_init)
		inflateEnd(&r->zs);
	pf_file_close(&r->f);
	free(r->inbuf);
	free(r);
}

const pf_idx_header *pf_idx_info(const pf_idx *r)
{
	return &r->h;
}

int pf_idx_is_gzip(const pf_idx *r)
{
	return r->gz;
}

const char *pf_idx_name(const pf_idx *r)
{
	return r->f.name;
}

void pf_idx_field(const pf_idx *r, const char *name, pf_field *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->dtype = r->h.dtype;
	f->ndim = r->h.ndim - 1;
	for (int i = 1; i < r->h.ndim; i++)
		f->dims[i - 1] = r->h.dims[i];
}

int64_t pf_idx_read(pf_idx *r, void *buf, uint64_t n, pf_error *err)
{
	const pf_idx_header *h = &r->h;
	uint64_t left = h->count - r->next;
	size_t want, got;
	int rc;

	if (r->failed)
		return pf_error_set(err, PF_ESTATE, "%s: reader failed earlier", r->f.name);
	if (n > left)
		n = left;
	if (n == 0)
		return 0;
	if (n > SIZE_MAX / h->record_bytes)
		n = SIZE_MAX / h->record_bytes;
	want = (size_t)n * h->record_bytes;
	if ((rc = src_read(r, buf, want, &got, err)) < 0)
		goto fail;
	if (got < want) {
		uint64_t rec = r->next + got / h->record_bytes;

		rc = pf_error_set(err, PF_ETRUNC,
				  "%s: offset %" PRIu64 ": truncated: data ends in record %"
				  PRIu64 " of the %" PRIu64 " the header declares",
				  r->f.name, r->out_off, rec, h->count);
		goto fail;
	}
	r->next += n;
	if (r->next == h->count) {
		/* the last record: the data must end here (this also makes
		 * zlib check the gzip trailer's CRC and length) */
		unsigned char probe;

		if ((rc = src_read(r, &probe, 1, &got, err)) < 0)
			goto fail;
		if (got) {
			rc = pf_error_set(err, PF_ECORRUPT,
					  "%s: offset %" PRIu64 ": data continues after the %"
					  PRIu64 " records the header declares",
					  r->f.name, r->out_off - 1, h->count);
			goto fail;
		}
	}
	pf_bswap_elems(buf, want, pf_dtype_size(h->dtype));
	return (int64_t)n;
fail:
	r->failed = 1;
	return rc;
}
