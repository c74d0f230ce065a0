/*
 * parse_example.c - the parse_example map function: a raw record holding a
 * serialized tf.train.Example -> typed fields, with tf.io.parse_example's
 * meaning (lib/example.c reads the wire format).
 *
 *   map(parse_example(image=bytes, label=i64(default=-1), bbox=f32[?],
 *                     mask=f32[2,2](default=0), cls=i64(key="image/class")))
 *
 * One argument per field, in output order: NAME=TYPE[SHAPE](OPTIONS).
 *   TYPE   bytes (one byte string -> u8[?]), i64 (int64_list -> i64) or
 *          f32 (float_list -> f32)
 *   SHAPE  none: a scalar; [D1,D2..]: a FixedLenFeature of that shape;
 *          [?]: a VarLenFeature (any number of values, u8/i64/f32[?], for
 *          padded_batch)
 *   key="feature/key"   the feature's key when it is not NAME
 *   default=V | [V..]   FixedLenFeature's default_value, used when the
 *          Example lacks the feature (a scalar fills the whole shape)
 * and max_bytes=N: the bound on one output element (default 1 MiB).
 *
 * As tf.io.parse_example: a fixed feature must hold exactly prod(SHAPE)
 * values; a missing one without a default, a wrong list type or a wrong
 * count fails the sample, naming the feature (the map op adds the sample,
 * its file and record; with isolate the sample is dropped and logged).  A
 * VarLenFeature that is missing gives length 0; a feature with no list set
 * counts as missing.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_example.h"
#include "pf_map_fns.h"

#define EX_DEFAULT_MAX_BYTES (1u << 20)
#define EX_MAX_DEFAULTS 4096
#define EX_KEY_MAX 128

typedef struct ex_feat {
	char key[EX_KEY_MAX];
	size_t key_len;
	pf_ex_kind want;
	int var;              /* VarLenFeature */
	int64_t count;        /* fixed: values expected */
	int has_def;
	void *def;            /* fixed numbers: count values; bytes: the string */
	size_t def_len;       /* bytes default: its length */
} ex_feat;

typedef struct ex_state {
	int n;
	ex_feat f[PF_MAX_FIELDS];
} ex_state;

static void ex_free(void *p)
{
	ex_state *st = p;
	for (int i = 0; st && i < st->n; i++)
		free(st->f[i].def);
	free(st);
}

/* ---- the argument text ---------------------------------------------------- */

typedef struct ap {
	const char *text, *p;
	pf_error *err;
} ap;

static void ws(ap *a)
{
	while (*a->p == ' ' || *a->p == '\t' || *a->p == '\n' || *a->p == '\r')
		a->p++;
}

static int perr(ap *a, const char *what)
{
	return pf_error_set(a->err, PF_EINVAL, "parse_example: %s at offset %td of '%s'", what,
			    a->p - a->text, a->text);
}

static int is_word(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '/' || c == '-' || c == ':';
}

/* A bare word or a quoted string into buf (NUL-terminated); -1 on error. */
static int word(ap *a, char *buf, size_t cap, size_t *len)
{
	size_t o = 0;
	ws(a);
	if (*a->p == '"' || *a->p == '\'') {
		char q = *a->p++;
		while (*a->p && *a->p != q) {
			if (*a->p == '\\' && a->p[1])
				a->p++;
			if (o + 1 >= cap)
				return perr(a, "string too long");
			buf[o++] = *a->p++;
		}
		if (*a->p != q)
			return perr(a, "unterminated string");
		a->p++;
	} else {
		while (is_word(*a->p)) {
			if (o + 1 >= cap)
				return perr(a, "name too long");
			buf[o++] = *a->p++;
		}
		if (!o)
			return perr(a, "expected a name");
	}
	buf[o] = '\0';
	if (len)
		*len = o;
	return 0;
}

/* A default: a number or a [list] (nested lists flattened), into f->def as
 * f->count values of the feature's type (a single number fills them all),
 * or a string for bytes. */
static int parse_default(ap *a, ex_feat *f)
{
	ws(a);
	if (f->want == PF_EX_BYTES) {
		char s[4096];
		size_t len;
		if (*a->p != '"' && *a->p != '\'')
			return perr(a, "a bytes default is a quoted string");
		if (word(a, s, sizeof(s), &len))
			return PF_EINVAL;
		if (!(f->def = malloc(len ? len : 1)))
			return pf_error_set(a->err, PF_ENOMEM, "parse_example: out of memory");
		memcpy(f->def, s, len);
		f->def_len = len;
		return 0;
	}
	if (f->var)
		return perr(a, "a [?] feature takes no default (it is empty when missing)");
	int64_t n = 0, depth = 0;
	size_t esz = f->want == PF_EX_FLOAT ? 4 : 8;
	f->def = calloc((size_t)f->count, esz);
	if (!f->def)
		return pf_error_set(a->err, PF_ENOMEM, "parse_example: out of memory");
	for (;;) {
		ws(a);
		if (*a->p == '[') {
			depth++;
			a->p++;
			continue;
		}
		if (*a->p == ']' && depth) {
			depth--;
			a->p++;
		} else {
			char *end;
			errno = 0;
			if (n >= f->count)
				return perr(a, "more default values than the shape holds");
			if (f->want == PF_EX_INT64) {
				long long v = strtoll(a->p, &end, 10);
				if (end == a->p || errno == ERANGE || *end == '.' || *end == 'e')
					return perr(a, "expected an integer default");
				((int64_t *)f->def)[n++] = v;
			} else {
				double v = strtod(a->p, &end);
				if (end == a->p || errno == ERANGE)
					return perr(a, "expected a number default");
				((float *)f->def)[n++] = (float)v;
			}
			a->p = end;
		}
		ws(a);
		if (*a->p == ',' && depth) {
			a->p++;
			continue;
		}
		if (*a->p == ']' && depth)
			continue;
		if (!depth)
			break;
		return perr(a, "expected ',' or ']' in a default list");
	}
	if (n == 1) /* a scalar fills the shape */
		for (int64_t k = 1; k < f->count; k++)
			memcpy((char *)f->def + k * (int64_t)esz, f->def, esz);
	else if (n != f->count)
		return perr(a, "the default has fewer values than the shape holds");
	return 0;
}

/* TYPE[SHAPE] into f and the output field o. */
static int parse_type(ap *a, ex_feat *f, pf_field *o)
{
	char t[64];
	ws(a);
	int quoted = *a->p == '"' || *a->p == '\'';
	char q = quoted ? *a->p++ : 0;
	size_t n = 0;
	while (n + 1 < sizeof(t) && ((*a->p >= 'a' && *a->p <= 'z') || (*a->p >= '0' && *a->p <= '9')))
		t[n++] = *a->p++;
	t[n] = '\0';
	if (!strcmp(t, "bytes") || !strcmp(t, "string")) {
		f->want = PF_EX_BYTES;
		o->dtype = PF_U8;
	} else if (!strcmp(t, "i64") || !strcmp(t, "int64")) {
		f->want = PF_EX_INT64;
		o->dtype = PF_I64;
	} else if (!strcmp(t, "f32") || !strcmp(t, "float")) {
		f->want = PF_EX_FLOAT;
		o->dtype = PF_F32;
	} else {
		return perr(a, "expected a type: bytes, i64 or f32");
	}
	f->count = 1;
	if (*a->p == '[') {
		a->p++;
		for (;;) {
			ws(a);
			if (o->ndim == PF_MAX_DIMS)
				return perr(a, "too many dimensions");
			if (*a->p == '?') {
				a->p++;
				f->var = 1;
				o->dims[o->ndim++] = PF_DIM_VAR;
			} else {
				char *end;
				long long d = strtoll(a->p, &end, 10);
				if (end == a->p || d < 1 || d > (1 << 24))
					return perr(a, "expected a dimension (1.. or ?)");
				a->p = end;
				o->dims[o->ndim++] = d;
				f->count *= d;
				if (f->count > (1 << 24))
					return perr(a, "shape too large");
			}
			ws(a);
			if (*a->p == ',') {
				a->p++;
				continue;
			}
			if (*a->p++ != ']')
				return perr(a, "expected ',' or ']' in a shape");
			break;
		}
		if (f->var && o->ndim != 1)
			return perr(a, "a variable-length feature is [?]");
	}
	if (quoted && *a->p++ != q)
		return perr(a, "unterminated type string");
	if (f->want == PF_EX_BYTES) {
		if (o->ndim)
			return perr(a, "bytes is one byte string (u8[?]); lists of strings are not supported");
		o->ndim = 1;
		o->dims[0] = PF_DIM_VAR;
	}
	return 0;
}

/* (key="...", default=...) after a type. */
static int parse_opts(ap *a, ex_feat *f)
{
	ws(a);
	if (*a->p != '(')
		return 0;
	a->p++;
	for (;;) {
		char k[32];
		int rc;
		if ((rc = word(a, k, sizeof(k), NULL)))
			return rc;
		ws(a);
		if (*a->p++ != '=')
			return perr(a, "expected '=' after an option");
		if (!strcmp(k, "key")) {
			if ((rc = word(a, f->key, sizeof(f->key), &f->key_len)))
				return rc;
		} else if (!strcmp(k, "default")) {
			if (f->def)
				return perr(a, "default given twice");
			if ((rc = parse_default(a, f)))
				return rc;
			f->has_def = 1;
		} else {
			return perr(a, "unknown option (expected key or default)");
		}
		ws(a);
		if (*a->p == ',') {
			a->p++;
			continue;
		}
		if (*a->p++ != ')')
			return perr(a, "expected ',' or ')' after an option");
		return 0;
	}
}

/* The whole argument text into st and the output schema. */
static int parse_args(const char *text, ex_state *st, pf_schema *out, size_t *max_bytes,
		      pf_error *err)
{
	ap a = { text, text, err };
	int rc;
	memset(out, 0, sizeof(*out));
	for (ws(&a); *a.p;) {
		char name[EX_KEY_MAX];
		size_t nlen;
		if ((rc = word(&a, name, sizeof(name), &nlen)))
			return rc;
		ws(&a);
		if (*a.p++ != '=')
			return perr(&a, "expected NAME=TYPE");
		if (!strcmp(name, "max_bytes")) {
			char *end;
			long long v = strtoll(a.p, &end, 10);
			if (end == a.p || v < 1 || v > (1ll << 40))
				return perr(&a, "max_bytes must be a positive integer");
			*max_bytes = (size_t)v;
			a.p = end;
		} else {
			if (st->n == PF_MAX_FIELDS)
				return perr(&a, "too many features (at most 16)");
			ex_feat *f = &st->f[st->n];
			pf_field *o = &out->fields[st->n++];
			if (nlen >= PF_FIELD_NAME_MAX || strcspn(name, "/:") != nlen)
				return pf_error_set(err, PF_EINVAL,
						    "parse_example: '%s' is not a field name (letters, digits, _ . -); name the field and give the feature's key: NAME=TYPE(key=\"%s\")",
						    name, name);
			memcpy(o->name, name, nlen + 1);
			memcpy(f->key, name, nlen + 1);
			f->key_len = nlen;
			if ((rc = parse_type(&a, f, o)) || (rc = parse_opts(&a, f)))
				return rc;
		}
		ws(&a);
		if (*a.p == ',')
			a.p++;
		else if (*a.p)
			return perr(&a, "expected ','");
		ws(&a);
	}
	out->nfields = st->n;
	if (!st->n)
		return pf_error_set(err, PF_EINVAL,
				    "parse_example: name the features to read, e.g. parse_example(image=bytes, label=i64)");
	return 0;
}

int pf_parse_example_prepare(pf_map_ctx *ctx, pf_error *err)
{
	const pf_schema *in = ctx->in;
	if (!in || in->nfields != 1 || in->fields[0].dtype != PF_U8 || in->fields[0].ndim != 1 ||
	    in->fields[0].dims[0] != PF_DIM_VAR)
		return pf_error_set(err, PF_EINVAL,
				    "parse_example: input is not a raw record (record: u8[?]); parse_example must follow a tfrecord source");
	ex_state *st = calloc(1, sizeof(*st));
	if (!st)
		return pf_error_set(err, PF_ENOMEM, "parse_example: out of memory");
	size_t max_bytes = EX_DEFAULT_MAX_BYTES;
	pf_schema out;
	int rc = parse_args(ctx->args, st, &out, &max_bytes, err);
	pf_error e = { 0 };
	char txt[1024];
	if (!rc && (rc = pf_schema_format(&out, txt, sizeof(txt)) >= sizeof(txt) ? PF_ELIMIT : 0))
		pf_error_set(err, rc, "parse_example: schema too long");
	if (!rc && (rc = pf_schema_parse(&out, txt, &e))) /* names unique, sizes in range */
		pf_error_set(err, rc, "parse_example: %s", e.msg);
	if (rc) {
		ex_free(st);
		return rc;
	}
	int64_t fixed = 0;
	for (int i = 0; i < out.nfields; i++)
		if (pf_field_bytes(&out.fields[i]) > 0)
			fixed += pf_field_bytes(&out.fields[i]) + 8;
	ctx->out = out;
	ctx->max_out_bytes = (size_t)fixed + max_bytes;
	ctx->state = st;
	ctx->free_state = ex_free;
	return 0;
}

/* ---- one record ------------------------------------------------------------ */

typedef struct ex_found {
	const ex_state *st;
	pf_ex_feature f[PF_MAX_FIELDS];
	unsigned char has[PF_MAX_FIELDS];
} ex_found;

static int on_entry(void *user, const char *key, size_t key_len, const pf_ex_feature *f)
{
	ex_found *x = user;
	for (int i = 0; i < x->st->n; i++)
		if (x->st->f[i].key_len == key_len && !memcmp(x->st->f[i].key, key, key_len)) {
			x->f[i] = *f; /* a later entry of the key replaces it */
			x->has[i] = 1;
		}
	return 0;
}

/* "parse_example: feature 'KEY' (field NAME): M" */
static int feat_err(pf_error *err, const ex_feat *f, const pf_field *o, const char *m)
{
	if (strcmp(f->key, o->name))
		return pf_error_set(err, PF_EMAP, "parse_example: feature '%s' (field %s): %s",
				    f->key, o->name, m);
	return pf_error_set(err, PF_EMAP, "parse_example: feature '%s': %s", f->key, m);
}

/* Feature i is missing (or has no list): its default, [] or an error. */
static int missing(const ex_feat *f, const pf_field *o, int i, pf_elem *out, pf_error *err)
{
	if (f->var) {
		if (!pf_elem_alloc(out, i, 0, err))
			return err && err->code ? err->code : PF_ELIMIT;
		return 0;
	}
	if (!f->has_def)
		return feat_err(err, f, o, "required (no default) but not in the Example");
	if (f->want == PF_EX_BYTES) {
		void *d = pf_elem_alloc(out, i, (int64_t)f->def_len, err);
		if (!d)
			return err && err->code ? err->code : PF_ELIMIT;
		memcpy(d, f->def, f->def_len);
		return 0;
	}
	memcpy(out->data[i], f->def, (size_t)f->count * (f->want == PF_EX_FLOAT ? 4 : 8));
	return 0;
}

static int one_feature(const ex_found *x, int i, pf_elem *out, pf_error *err)
{
	const ex_feat *f = &x->st->f[i];
	const pf_field *o = &out->schema->fields[i];
	pf_ex_info info = { 0 };
	pf_error e = { 0 };
	char m[160];
	int rc;
	if (x->has[i] && (rc = pf_ex_feature_info(&x->f[i], &info, &e)))
		return feat_err(err, f, o, e.msg);
	if (info.kind == PF_EX_NONE)
		return missing(f, o, i, out, err);
	if (info.kind != f->want) {
		snprintf(m, sizeof(m), "is a %s, expected a %s", pf_ex_kind_name(info.kind),
			 pf_ex_kind_name(f->want));
		return feat_err(err, f, o, m);
	}
	if (f->want == PF_EX_BYTES) {
		pf_ex_bytes v;
		if (info.count != 1) {
			snprintf(m, sizeof(m), "holds %lld byte strings, expected 1",
				 (long long)info.count);
			return feat_err(err, f, o, m);
		}
		pf_ex_feature_read(&x->f[i], &info, &v);
		void *d = pf_elem_alloc(out, i, (int64_t)v.len, err);
		if (!d)
			return err && err->code ? err->code : PF_ELIMIT;
		memcpy(d, v.p, v.len);
		return 0;
	}
	void *d;
	if (f->var) {
		if (!(d = pf_elem_alloc(out, i, info.count, err)))
			return err && err->code ? err->code : PF_ELIMIT;
	} else {
		if (info.count != f->count) {
			snprintf(m, sizeof(m), "holds %lld values, expected %lld (its shape)",
				 (long long)info.count, (long long)f->count);
			return feat_err(err, f, o, m);
		}
		d = out->data[i];
	}
	pf_ex_feature_read(&x->f[i], &info, d);
	return 0;
}

int pf_parse_example_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err)
{
	ex_found x;
	int rc;
	x.st = state;
	memset(x.has, 0, sizeof(x.has));
	pf_error e = { 0 };
	if ((rc = pf_example_walk(in->data[0], (size_t)in->nitems[0], on_entry, &x, &e)))
		return pf_error_set(err, rc, "parse_example: %s", e.msg);
	for (int i = 0; i < x.st->n; i++)
		if ((rc = one_feature(&x, i, out, err)))
			return rc;
	return 0;
}
