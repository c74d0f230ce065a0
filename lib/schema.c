/* schema.c - element schemas: text form, binary form, record splitting; see pf_schema.h. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "pf_schema.h"

static const struct {
	const char *name;
	size_t size;
} dtypes[PF_DTYPE_MAX_] = {
	[PF_U8] = {"u8", 1},   [PF_I8] = {"i8", 1},   [PF_U16] = {"u16", 2},
	[PF_I16] = {"i16", 2}, [PF_U32] = {"u32", 4}, [PF_I32] = {"i32", 4},
	[PF_U64] = {"u64", 8}, [PF_I64] = {"i64", 8}, [PF_F16] = {"f16", 2},
	[PF_F32] = {"f32", 4}, [PF_F64] = {"f64", 8},
};

/* Largest element count of one field: keeps every size computation in range. */
#define MAX_FIELD_ELEMS (INT64_C(1) << 40)

size_t pf_dtype_size(pf_dtype t)
{
	return (t > 0 && t < PF_DTYPE_MAX_) ? dtypes[t].size : 0;
}

const char *pf_dtype_name(pf_dtype t)
{
	return (t > 0 && t < PF_DTYPE_MAX_) ? dtypes[t].name : "?";
}

pf_dtype pf_dtype_parse(const char *name, size_t len)
{
	for (int t = 1; t < PF_DTYPE_MAX_; t++)
		if (strlen(dtypes[t].name) == len && !memcmp(dtypes[t].name, name, len))
			return (pf_dtype)t;
	return 0;
}

int64_t pf_field_count(const pf_field *f)
{
	int64_t n = 1;
	for (int i = 0; i < f->ndim; i++) {
		if (f->dims[i] < 0)
			return -1;
		n *= f->dims[i];
	}
	return n;
}

int64_t pf_field_bytes(const pf_field *f)
{
	int64_t n = pf_field_count(f);
	return n < 0 ? -1 : n * (int64_t)pf_dtype_size(f->dtype);
}

int64_t pf_schema_record_bytes(const pf_schema *s)
{
	int64_t total = 0;
	for (int i = 0; i < s->nfields; i++) {
		int64_t b = pf_field_bytes(&s->fields[i]);
		if (b < 0)
			return -1;
		total += b;
	}
	return total;
}

int pf_schema_find(const pf_schema *s, const char *name)
{
	for (int i = 0; i < s->nfields; i++)
		if (!strcmp(s->fields[i].name, name))
			return i;
	return -1;
}

/* Checks shared by the text and binary forms: sizes stay in range, names unique. */
static int field_check(const pf_schema *s, const pf_field *f, pf_error *err,
		       const char *where)
{
	int nvar = 0;
	int64_t n = 1;

	if (!f->name[0])
		return pf_error_set(err, PF_EFORMAT, "%s: empty field name", where);
	if (pf_dtype_size(f->dtype) == 0)
		return pf_error_set(err, PF_EFORMAT, "%s: field '%s': unknown dtype", where, f->name);
	if (f->ndim < 0 || f->ndim > PF_MAX_DIMS)
		return pf_error_set(err, PF_ELIMIT, "%s: field '%s': %d dims (max %d)",
				    where, f->name, f->ndim, PF_MAX_DIMS);
	for (int i = 0; i < f->ndim; i++) {
		if (f->dims[i] == PF_DIM_VAR) {
			nvar++;
			continue;
		}
		if (f->dims[i] < 0 || f->dims[i] > MAX_FIELD_ELEMS)
			return pf_error_set(err, PF_ELIMIT, "%s: field '%s': dim %d out of range",
					    where, f->name, i);
		if (f->dims[i] && n > MAX_FIELD_ELEMS / f->dims[i])
			return pf_error_set(err, PF_ELIMIT, "%s: field '%s': shape too large",
					    where, f->name);
		n *= f->dims[i];
	}
	if (nvar > 1)
		return pf_error_set(err, PF_EFORMAT, "%s: field '%s': more than one '?' dim",
				    where, f->name);
	for (const pf_field *g = s->fields; g < f; g++)
		if (!strcmp(g->name, f->name))
			return pf_error_set(err, PF_EFORMAT, "%s: duplicate field '%s'", where, f->name);
	return 0;
}

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

int pf_schema_parse(pf_schema *s, const char *text, pf_error *err)
{
	const char *p = text;

	memset(s, 0, sizeof(*s));
#define COL ((int)(p - text) + 1)
	for (;;) {
		pf_field *f;
		const char *q;
		char where[48];

		p = skip_ws(p);
		if (s->nfields == PF_MAX_FIELDS)
			return pf_error_set(err, PF_ELIMIT, "schema column %d: more than %d fields",
					    COL, PF_MAX_FIELDS);
		f = &s->fields[s->nfields];
		for (q = p; isalnum((unsigned char)*q) || *q == '_' || *q == '.' || *q == '-'; q++)
			;
		if (q == p)
			return pf_error_set(err, PF_EFORMAT, "schema column %d: expected a field name", COL);
		if ((size_t)(q - p) >= PF_FIELD_NAME_MAX)
			return pf_error_set(err, PF_ELIMIT, "schema column %d: field name longer than %d",
					    COL, PF_FIELD_NAME_MAX - 1);
		memcpy(f->name, p, (size_t)(q - p));
		p = skip_ws(q);
		if (*p != ':')
			return pf_error_set(err, PF_EFORMAT, "schema column %d: expected ':' after '%s'",
					    COL, f->name);
		p = skip_ws(p + 1);
		for (q = p; isalnum((unsigned char)*q); q++)
			;
		f->dtype = pf_dtype_parse(p, (size_t)(q - p));
		if (!f->dtype)
			return pf_error_set(err, PF_EFORMAT,
					    "schema column %d: expected a dtype (u8 i8 u16 i16 u32 i32 u64 i64 f16 f32 f64)",
					    COL);
		p = skip_ws(q);
		if (*p == '[') {
			p = skip_ws(p + 1);
			while (*p != ']') {
				if (f->ndim == PF_MAX_DIMS)
					return pf_error_set(err, PF_ELIMIT, "schema column %d: more than %d dims",
							    COL, PF_MAX_DIMS);
				if (*p == '?') {
					f->dims[f->ndim++] = PF_DIM_VAR;
					p++;
				} else if (isdigit((unsigned char)*p)) {
					int64_t v = 0;
					while (isdigit((unsigned char)*p)) {
						v = v * 10 + (*p++ - '0');
						if (v > MAX_FIELD_ELEMS)
							return pf_error_set(err, PF_ELIMIT,
									    "schema column %d: dimension too large", COL);
					}
					f->dims[f->ndim++] = v;
				} else {
					return pf_error_set(err, PF_EFORMAT,
							    "schema column %d: expected a dimension or '?'", COL);
				}
				p = skip_ws(p);
				if (*p == ',')
					p = skip_ws(p + 1);
				else if (*p != ']')
					return pf_error_set(err, PF_EFORMAT,
							    "schema column %d: expected ',' or ']'", COL);
			}
			p = skip_ws(p + 1);
		}
		snprintf(where, sizeof(where), "schema column %d", COL);
		int rc = field_check(s, f, err, where);
		if (rc)
			return rc;
		s->nfields++;
		if (*p == '\0')
			return 0;
		if (*p != ',')
			return pf_error_set(err, PF_EFORMAT, "schema column %d: expected ',' or end", COL);
		p++;
	}
#undef COL
}

size_t pf_schema_format(const pf_schema *s, char *buf, size_t cap)
{
	size_t n = 0;
	char tmp[64];

#define PUT(str)                                                   \
	do {                                                       \
		size_t l_ = strlen(str);                           \
		if (n + l_ < cap)                                  \
			memcpy(buf + n, str, l_);                  \
		else if (n < cap)                                  \
			memcpy(buf + n, str, cap - n - 1);         \
		n += l_;                                           \
	} while (0)
	for (int i = 0; i < s->nfields; i++) {
		const pf_field *f = &s->fields[i];
		if (i)
			PUT(", ");
		PUT(f->name);
		PUT(": ");
		PUT(pf_dtype_name(f->dtype));
		if (f->ndim) {
			PUT("[");
			for (int d = 0; d < f->ndim; d++) {
				if (f->dims[d] == PF_DIM_VAR)
					snprintf(tmp, sizeof(tmp), "%s?", d ? "," : "");
				else
					snprintf(tmp, sizeof(tmp), "%s%lld", d ? "," : "",
						 (long long)f->dims[d]);
				PUT(tmp);
			}
			PUT("]");
		}
	}
#undef PUT
	if (cap)
		buf[n < cap ? n : cap - 1] = '\0';
	return n;
}

int pf_schema_split(const pf_schema *s, const void *rec, size_t len,
		    size_t off[PF_MAX_FIELDS], int64_t count[PF_MAX_FIELDS],
		    pf_error *err)
{
	const unsigned char *p = rec;
	size_t pos = 0;

	for (int i = 0; i < s->nfields; i++) {
		const pf_field *f = &s->fields[i];
		size_t esz = pf_dtype_size(f->dtype);
		int64_t n = pf_field_count(f);

		if (n < 0) {
			/* variable: u32 count of the '?' dim, times the fixed dims */
			uint32_t c;
			int64_t fixed = 1;
			if (len - pos < 4)
				return pf_error_set(err, PF_ECORRUPT,
						    "record of %zu bytes: field '%s' count at byte %zu runs past the end",
						    len, f->name, pos);
			memcpy(&c, p + pos, 4);
			pos += 4;
			for (int d = 0; d < f->ndim; d++)
				if (f->dims[d] != PF_DIM_VAR)
					fixed *= f->dims[d];
			/* c comes from the file: bound it before multiplying */
			if (fixed && (uint64_t)c > (len - pos) / (esz ? esz : 1) / (uint64_t)fixed)
				return pf_error_set(err, PF_ECORRUPT,
						    "record of %zu bytes: field '%s' count %u at byte %zu runs past the end",
						    len, f->name, c, pos - 4);
			n = (int64_t)c * fixed;
		}
		if ((uint64_t)n > (len - pos) / (esz ? esz : 1))
			return pf_error_set(err, PF_ECORRUPT,
					    "record of %zu bytes: field '%s' (%lld x %s) at byte %zu runs past the end",
					    len, f->name, (long long)n, pf_dtype_name(f->dtype), pos);
		off[i] = pos;
		count[i] = n;
		pos += (size_t)n * esz;
	}
	if (pos != len)
		return pf_error_set(err, PF_ECORRUPT,
				    "record of %zu bytes: %zu trailing bytes after the last field",
				    len, len - pos);
	return 0;
}

/* Binary form: u16 nfields; per field: u8 name_len, name, u8 dtype, u8 ndim, i64 dims[ndim] (LE). */
size_t pf_schema_encode(const pf_schema *s, void *buf, size_t cap)
{
	unsigned char *out = buf;
	size_t n = 0;

#define PUTB(src, l)                                         \
	do {                                                 \
		if (n + (l) <= cap)                          \
			memcpy(out + n, (src), (l));         \
		n += (l);                                    \
	} while (0)
	uint16_t nf = (uint16_t)s->nfields;
	PUTB(&nf, 2);
	for (int i = 0; i < s->nfields; i++) {
		const pf_field *f = &s->fields[i];
		unsigned char b[3];
		b[0] = (unsigned char)strlen(f->name);
		PUTB(b, 1);
		PUTB(f->name, b[0]);
		b[1] = (unsigned char)f->dtype;
		b[2] = (unsigned char)f->ndim;
		PUTB(b + 1, 2);
		for (int d = 0; d < f->ndim; d++)
			PUTB(&f->dims[d], 8);
	}
#undef PUTB
	return n;
}

int pf_schema_decode(pf_schema *s, const void *buf, size_t len, pf_error *err)
{
	const unsigned char *p = buf;
	size_t pos = 2;
	uint16_t nf;

	memset(s, 0, sizeof(*s));
	if (len < 2)
		return pf_error_set(err, PF_ECORRUPT, "schema block: %zu bytes, too short", len);
	memcpy(&nf, p, 2);
	if (nf > PF_MAX_FIELDS)
		return pf_error_set(err, PF_ELIMIT, "schema block: %u fields (max %d)", nf, PF_MAX_FIELDS);
	for (int i = 0; i < nf; i++) {
		pf_field *f = &s->fields[i];
		char where[48];
		size_t nl;

		if (pos >= len)
			goto trunc;
		nl = p[pos++];
		if (nl >= PF_FIELD_NAME_MAX || len - pos < nl + 2)
			goto trunc;
		memcpy(f->name, p + pos, nl);
		if (memchr(f->name, '\0', nl))
			return pf_error_set(err, PF_ECORRUPT, "schema block: field %d: NUL in name", i);
		pos += nl;
		f->dtype = (pf_dtype)p[pos++];
		f->ndim = p[pos++];
		if (f->ndim > PF_MAX_DIMS || len - pos < (size_t)f->ndim * 8)
			goto trunc;
		for (int d = 0; d < f->ndim; d++, pos += 8)
			memcpy(&f->dims[d], p + pos, 8);
		snprintf(where, sizeof(where), "schema block field %d", i);
		int rc = field_check(s, f, err, where);
		if (rc)
			return rc;
		s->nfields = i + 1;
	}
	if (pos != len)
		return pf_error_set(err, PF_ECORRUPT, "schema block: %zu trailing bytes", len - pos);
	return 0;
trunc:
	return pf_error_set(err, PF_ECORRUPT, "schema block: field runs past its %zu bytes", len);
}
