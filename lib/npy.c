/* npy.c - streaming .npy reader with a strict header parser; see pf_npy.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pf_bswap.h"
#include "pf_file.h"
#include "pf_npy.h"

struct pf_npy {
	pf_file f;                  /* the bytes: a file or a buffer */
	uint64_t next;              /* next record */
	pf_npy_header h;
};

/* ---- the header dict ----------------------------------------------------- */

/* A cursor over the header text; `base` is the file offset of text[0]. */
struct cur {
	const char *s;
	size_t n, i;
	size_t base;
	const char *name;
	pf_error *err;
};

static int bad(struct cur *c, const char *what)
{
	return pf_error_set(c->err, PF_ECORRUPT,
			    "%s: offset %zu: malformed .npy header: %s",
			    c->name, c->base + c->i, what);
}

static void ws(struct cur *c)
{
	while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t'))
		c->i++;
}

static int peek(const struct cur *c)
{
	return c->i < c->n ? (unsigned char)c->s[c->i] : -1;
}

/* A quoted string without escapes into out (cap bytes incl. NUL). */
static int str(struct cur *c, char *out, size_t cap)
{
	int q = peek(c);
	size_t k = 0;

	if (q != '\'' && q != '"')
		return bad(c, "expected a quoted string");
	c->i++;
	while (c->i < c->n && c->s[c->i] != q) {
		unsigned char ch = (unsigned char)c->s[c->i];

		if (ch == '\\' || ch < 0x20 || ch > 0x7e)
			return bad(c, "unexpected character in a string");
		if (k + 1 >= cap)
			return bad(c, "string too long");
		out[k++] = (char)ch;
		c->i++;
	}
	if (c->i >= c->n)
		return bad(c, "unterminated string");
	c->i++;
	out[k] = '\0';
	return 0;
}

static int word(struct cur *c, const char *w)
{
	size_t l = strlen(w);

	if (c->n - c->i >= l && !memcmp(c->s + c->i, w, l)) {
		c->i += l;
		return 1;
	}
	return 0;
}

static int boolean(struct cur *c, int *v)
{
	if (word(c, "True"))
		*v = 1;
	else if (word(c, "False"))
		*v = 0;
	else
		return bad(c, "expected True or False");
	return 0;
}

static int uint_(struct cur *c, uint64_t *v)
{
	uint64_t x = 0;
	size_t start = c->i;

	while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
		if (x > (UINT64_MAX - 9) / 10 || c->i - start > 19)
			return pf_error_set(c->err, PF_ELIMIT,
					    "%s: offset %zu: .npy shape dimension too large",
					    c->name, c->base + start);
		x = x * 10 + (uint64_t)(c->s[c->i] - '0');
		c->i++;
	}
	if (c->i == start)
		return bad(c, "expected a non-negative integer");
	if (peek(c) == 'L') /* Python 2 longs */
		c->i++;
	*v = x;
	return 0;
}

static int shape_tuple(struct cur *c, pf_npy_header *h)
{
	int rc;

	if (peek(c) != '(')
		return bad(c, "expected a tuple for 'shape'");
	c->i++;
	h->ndim = 0;
	for (;;) {
		ws(c);
		if (peek(c) == ')')
			break;
		if (h->ndim >= PF_NPY_MAX_DIMS)
			return pf_error_set(c->err, PF_ELIMIT,
					    "%s: offset %zu: .npy shape has more than %d dimensions",
					    c->name, c->base + c->i, PF_NPY_MAX_DIMS);
		if ((rc = uint_(c, &h->shape[h->ndim])) < 0)
			return rc;
		h->ndim++;
		ws(c);
		if (peek(c) == ',') {
			c->i++;
			continue;
		}
		if (peek(c) != ')')
			return bad(c, "expected ',' or ')' in 'shape'");
	}
	c->i++;
	return 0;
}

/* "<f4" and friends. */
static int parse_descr(struct cur *c, size_t at, pf_npy_header *h)
{
	const char *d = h->descr;
	char order = d[0], kind = d[1];
	int size;
	static const struct { char kind; int size; pf_dtype t; } map[] = {
		{ 'b', 1, PF_U8 }, { 'u', 1, PF_U8 }, { 'i', 1, PF_I8 },
		{ 'u', 2, PF_U16 }, { 'i', 2, PF_I16 }, { 'u', 4, PF_U32 },
		{ 'i', 4, PF_I32 }, { 'u', 8, PF_U64 }, { 'i', 8, PF_I64 },
		{ 'f', 2, PF_F16 }, { 'f', 4, PF_F32 }, { 'f', 8, PF_F64 },
	};

	if (strlen(d) != 3 || !strchr("<>|=", order) || d[2] < '1' || d[2] > '9')
		goto unsupported;
	size = d[2] - '0';
	for (size_t k = 0; k < sizeof(map) / sizeof(map[0]); k++) {
		if (map[k].kind != kind || map[k].size != size)
			continue;
		if (order == '|' && size != 1)
			goto unsupported;
		h->dtype = map[k].t;
		h->swap = order == '>' && size > 1;
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		h->swap = (order == '>' || order == '=') ? 0 : size > 1;
#endif
		return 0;
	}
unsupported:
	return pf_error_set(c->err, PF_EINVAL,
			    "%s: offset %zu: .npy dtype '%s' is not supported "
			    "(b1, i1..i8, u1..u8, f2, f4, f8 with <, >, = or |)",
			    c->name, at, d);
}

static int parse_dict(struct cur *c, pf_npy_header *h)
{
	int have_descr = 0, have_fo = 0, have_shape = 0, fortran = 0, rc;
	size_t descr_at = 0, fo_at = 0;
	char key[32];

	ws(c);
	if (peek(c) != '{')
		return bad(c, "expected '{'");
	c->i++;
	for (;;) {
		size_t key_at;

		ws(c);
		if (peek(c) == '}')
			break;
		key_at = c->i;
		if ((rc = str(c, key, sizeof(key))) < 0)
			return rc;
		ws(c);
		if (peek(c) != ':')
			return bad(c, "expected ':'");
		c->i++;
		ws(c);
		if (!strcmp(key, "descr") && !have_descr) {
			descr_at = c->base + c->i;
			if (peek(c) == '[')
				return pf_error_set(c->err, PF_EINVAL,
						    "%s: offset %zu: structured .npy dtypes are not supported",
						    c->name, descr_at);
			if ((rc = str(c, h->descr, sizeof(h->descr))) < 0)
				return rc;
			have_descr = 1;
		} else if (!strcmp(key, "fortran_order") && !have_fo) {
			fo_at = c->base + c->i;
			if ((rc = boolean(c, &fortran)) < 0)
				return rc;
			have_fo = 1;
		} else if (!strcmp(key, "shape") && !have_shape) {
			if ((rc = shape_tuple(c, h)) < 0)
				return rc;
			have_shape = 1;
		} else {
			c->i = key_at;
			return bad(c, "unknown or repeated key");
		}
		ws(c);
		if (peek(c) == ',') {
			c->i++;
			continue;
		}
		if (peek(c) != '}')
			return bad(c, "expected ',' or '}'");
	}
	c->i++;
	/* padding: spaces, then exactly one '\n' at the very end */
	while (c->i + 1 < c->n && c->s[c->i] == ' ')
		c->i++;
	if (c->i + 1 != c->n || c->s[c->i] != '\n')
		return bad(c, "header does not end with spaces and a newline");
	if (!have_descr || !have_fo || !have_shape) {
		c->i = 0;
		return bad(c, "missing one of 'descr', 'fortran_order', 'shape'");
	}
	if ((rc = parse_descr(c, descr_at, h)) < 0)
		return rc;
	if (fortran && h->ndim > 1)
		return pf_error_set(c->err, PF_EINVAL,
				    "%s: offset %zu: fortran_order is True; only C-order arrays "
				    "are supported (save np.ascontiguousarray(a))",
				    c->name, fo_at);
	return 0;
}

int pf_npy_parse_header(pf_npy_header *h, const void *buf, size_t len,
			const char *name, pf_error *err)
{
	const unsigned char *p = buf;
	size_t pre, hlen;
	uint64_t rec;
	struct cur c;
	int rc;

	memset(h, 0, sizeof(*h));
	if (len < 10)
		return pf_error_set(err, PF_ETRUNC, "%s: offset %zu: truncated .npy preamble",
				    name, len);
	if (memcmp(p, "\x93NUMPY", 6))
		return pf_error_set(err, PF_EFORMAT, "%s: offset 0: not a .npy file (bad magic)",
				    name);
	h->major = p[6];
	h->minor = p[7];
	if (h->major < 1 || h->major > 3)
		return pf_error_set(err, PF_EVERSION,
				    "%s: offset 6: .npy format version %d.%d is not supported (1.x-3.x)",
				    name, h->major, h->minor);
	if (h->major == 1) {
		pre = 10;
		hlen = (size_t)p[8] | (size_t)p[9] << 8;
	} else {
		pre = 12;
		if (len < pre)
			return pf_error_set(err, PF_ETRUNC,
					    "%s: offset %zu: truncated .npy preamble", name, len);
		hlen = (size_t)p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 |
		       (size_t)p[11] << 24;
	}
	if (hlen > PF_NPY_MAX_HEADER)
		return pf_error_set(err, PF_ELIMIT,
				    "%s: offset 8: .npy header of %zu bytes (limit %u)",
				    name, hlen, PF_NPY_MAX_HEADER);
	if (len < pre + hlen)
		return pf_error_set(err, PF_ETRUNC,
				    "%s: offset %zu: truncated .npy header (%zu bytes announced)",
				    name, len, hlen);
	c = (struct cur){ (const char *)p + pre, hlen, 0, pre, name, err };
	if ((rc = parse_dict(&c, h)) < 0)
		return rc;
	if (h->ndim == 0)
		return pf_error_set(err, PF_EINVAL,
				    "%s: a 0-d .npy array has no record dimension", name);
	rec = pf_dtype_size(h->dtype);
	for (int i = 1; i < h->ndim; i++)
		if (__builtin_mul_overflow(rec, h->shape[i], &rec) ||
		    rec > PF_NPY_MAX_RECORD)
			return pf_error_set(err, PF_ELIMIT,
					    "%s: the .npy shape gives records over %u bytes",
					    name, PF_NPY_MAX_RECORD);
	h->count = h->shape[0];
	h->record_bytes = (size_t)rec;
	if (__builtin_mul_overflow(rec, h->count, &h->data_bytes))
		return pf_error_set(err, PF_ELIMIT, "%s: the .npy shape overflows",
				    name);
	h->data_offset = pre + hlen;
	return 0;
}

/* ---- the reader ---------------------------------------------------------- */

static int npy_read_at(pf_npy *r, void *dst, size_t n, uint64_t off,
		       pf_error *err)
{
	return pf_file_read(&r->f, dst, n, off, err);
}

static int npy_start(pf_npy *r, pf_error *err)
{
	unsigned char pre[PF_NPY_PREAMBLE];
	unsigned char *buf;
	size_t n = r->f.size < sizeof(pre) ? (size_t)r->f.size : sizeof(pre);
	size_t plen = 10, hlen, need;
	pf_npy_header *h = &r->h;
	uint64_t tail;
	int rc;

	if ((rc = npy_read_at(r, pre, n, 0, err)) < 0)
		return rc;
	if (n < 10 || memcmp(pre, "\x93NUMPY", 6) || pre[6] < 1 || pre[6] > 3)
		return pf_npy_parse_header(h, pre, n, r->f.name, err);
	/* the preamble says how long the header is; read exactly that much
	 * (bounded: the parser reports a header over the limit) */
	hlen = pre[8] | (size_t)pre[9] << 8;
	if (pre[6] >= 2 && n >= 12) {
		plen = 12;
		hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
	}
	if (hlen > PF_NPY_MAX_HEADER)
		hlen = PF_NPY_MAX_HEADER + 1;
	need = plen + hlen;
	if (need > r->f.size)
		need = (size_t)r->f.size;
	if (!(buf = malloc(need)))
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", r->f.name);
	rc = npy_read_at(r, buf, need, 0, err);
	if (rc == 0)
		rc = pf_npy_parse_header(h, buf, need, r->f.name, err);
	free(buf);
	if (rc < 0)
		return rc;
	/* the parser checked that the header fits: size >= data_offset */
	tail = r->f.size - h->data_offset;
	if (tail < h->data_bytes)
		return pf_error_set(err, PF_ETRUNC,
				    "%s: offset %" PRIu64 ": truncated: the shape needs %"
				    PRIu64 " data bytes after offset %" PRIu64
				    ", the file has %" PRIu64,
				    r->f.name, r->f.size, h->data_bytes, h->data_offset, tail);
	if (tail > h->data_bytes)
		return pf_error_set(err, PF_ECORRUPT,
				    "%s: offset %" PRIu64 ": %" PRIu64
				    " bytes after the data the shape describes",
				    r->f.name, h->data_offset + h->data_bytes,
				    tail - h->data_bytes);
	return 0;
}

static int npy_new(pf_npy **out, pf_error *err)
{
	pf_npy *r = calloc(1, sizeof(*r));

	*out = r;
	if (!r)
		return pf_error_set(err, PF_ENOMEM, "out of memory");
	r->f.fd = -1;
	return 0;
}

int pf_npy_open(pf_npy **out, const char *path, pf_error *err)
{
	pf_npy *r;
	int rc;

	*out = NULL;
	if ((rc = npy_new(&r, err)) < 0)
		return rc;
	if ((rc = pf_file_open(&r->f, path, err)) < 0)
		goto fail;
	if ((rc = npy_start(r, err)) < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	pf_npy_close(r);
	return rc;
}

int pf_npy_open_mem(pf_npy **out, const void *buf, size_t len,
		   const char *name, pf_error *err)
{
	pf_npy *r;
	int rc;

	*out = NULL;
	if ((rc = npy_new(&r, err)) < 0)
		return rc;
	if ((rc = pf_file_open_mem(&r->f, buf, len, name, err)) < 0)
		goto fail;
	if ((rc = npy_start(r, err)) < 0)
		goto fail;
	*out = r;
	return 0;
fail:
	pf_npy_close(r);
	return rc;
}

void pf_npy_close(pf_npy *r)
{
	if (!r)
		return;
	pf_file_close(&r->f);
	free(r);
}

const pf_npy_header *pf_npy_info(const pf_npy *r)
{
	return &r->h;
}

const char *pf_npy_name(const pf_npy *r)
{
	return r->f.name;
}

void pf_npy_field(const pf_npy *r, const char *name, pf_field *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->dtype = r->h.dtype;
	f->ndim = r->h.ndim - 1;
	for (int i = 1; i < r->h.ndim; i++)
		f->dims[i - 1] = (int64_t)r->h.shape[i];
}

int64_t pf_npy_read(pf_npy *r, void *buf, uint64_t n, pf_error *err)
{
	const pf_npy_header *h = &r->h;
	size_t es = pf_dtype_size(h->dtype), bytes;
	int rc;

	if (n > h->count - r->next)
		n = h->count - r->next;
	if (n == 0)
		return 0;
	if (h->record_bytes && n > SIZE_MAX / h->record_bytes)
		n = SIZE_MAX / h->record_bytes;
	bytes = (size_t)n * h->record_bytes;
	rc = npy_read_at(r, buf, bytes, h->data_offset + r->next * h->record_bytes, err);
	if (rc < 0)
		return rc;
	if (h->swap)
		pf_bswap_elems(buf, bytes, es);
	r->next += n;
	return (int64_t)n;
}
