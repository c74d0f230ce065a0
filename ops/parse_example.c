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
 *          padded_batch).  bytes[?] is a list of byte strings: two output
 *          fields, NAME (u8[?], the strings joined) and NAME_len (i64[?],
 *          each string's length); bytes[D1,D2..] exactly prod(D) strings
 *          (FixedLenFeature of tf.string with a shape, no default): NAME
 *          (u8[?], joined) and NAME_len (i64[D1,D2..])
 *   key="feature/key"   the feature's key when it is not NAME
 *   default=V | [V..]   FixedLenFeature's default_value, used when the
 *          Example lacks the feature (a scalar fills the whole shape)
 *   seq    (parse_sequence_example only) a feature list, not a context
 *          feature: parse_seq_example.c says what its shapes mean
 *   allow_missing=true  a fixed feature list that is missing is no frames
 * and max_bytes=N: the bound on one output element (default 1 MiB).
 *
 * parse_sequence_example reads a tf.train.SequenceExample: its context
 * features as parse_example reads an Example's, its feature lists as
 * tf.io.parse_sequence_example does.
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
#include "pf_parse_example.h"

#define EX_DEFAULT_MAX_BYTES (1u << 20)
#define EX_MAX_DEFAULTS 4096

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
	if (f->var)
		return perr(a, "a [?] feature takes no default (it is empty when missing)");
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

/* TYPE[SHAPE] into f and the output field o: the dims as written ("?"
 * anywhere; settle() checks them once the options are known). */
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
				f->var++;
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
	}
	if (quoted && *a->p++ != q)
		return perr(a, "unterminated type string");
	return 0;
}

/* true/false (or 1/0) into *v. */
static int parse_bool(ap *a, int *v)
{
	char w[16];
	if (word(a, w, sizeof(w), NULL))
		return PF_EINVAL;
	if (!strcmp(w, "true") || !strcmp(w, "1"))
		*v = 1;
	else if (!strcmp(w, "false") || !strcmp(w, "0"))
		*v = 0;
	else
		return perr(a, "expected true or false");
	return 0;
}

/* (key="...", default=..., seq, allow_missing=B) after a type. */
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
		if (!strcmp(k, "seq") && (*a->p == ',' || *a->p == ')')) {
			f->seq = 1;
		} else if (*a->p++ != '=') {
			return perr(a, "expected '=' after an option");
		} else if (!strcmp(k, "key")) {
			if ((rc = word(a, f->key, sizeof(f->key), &f->key_len)))
				return rc;
		} else if (!strcmp(k, "default")) {
			if (f->def)
				return perr(a, "default given twice");
			if ((rc = parse_default(a, f)))
				return rc;
			f->has_def = 1;
		} else if (!strcmp(k, "seq")) {
			if ((rc = parse_bool(a, &f->seq)))
				return rc;
		} else if (!strcmp(k, "allow_missing")) {
			if ((rc = parse_bool(a, &f->allow_missing)))
				return rc;
		} else {
			return perr(a, "unknown option (expected key, default, seq or allow_missing)");
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

/* Feature f's shape checked for its kind (a feature or a feature list),
 * and its output fields: the values (out->fields[f->out], as parse_type
 * left it) and, for a ragged one, NAME_len (i64[?]) after it. */
static int settle(ap *a, ex_feat *f, pf_schema *out, int sequence)
{
	pf_field *o = &out->fields[f->out];
	int64_t ldims[PF_MAX_DIMS] = { PF_DIM_VAR };
	int lndim = 1;
	if (f->seq && !sequence)
		return perr(a, "a feature list (seq) is read by parse_sequence_example");
	if (!f->seq) {
		if (f->var && o->ndim != 1)
			return perr(a, "a variable-length feature is [?]");
		f->fixed_strs = f->want == PF_EX_BYTES && o->ndim && !f->var;
		if (f->fixed_strs && f->has_def)
			return perr(a, "a bytes[N] feature takes no default (every Example must hold its N strings)");
		if (f->fixed_strs) { /* NAME_len gets the shape */
			memcpy(ldims, o->dims, sizeof(ldims));
			lndim = o->ndim;
		}
		if (f->want == PF_EX_BYTES && !f->var) {
			o->ndim = 1; /* the strings' bytes, joined */
			o->dims[0] = PF_DIM_VAR;
		}
		f->ragged = f->want == PF_EX_BYTES && (f->var || f->fixed_strs);
	} else {
		if (!o->ndim || o->dims[0] != PF_DIM_VAR)
			return perr(a, "a feature list's shape starts with ? (its frames): T[?], T[?, D..] or T[?, ?]");
		if (f->has_def)
			return perr(a, "a feature list takes no default");
		if (f->var == 2 && o->ndim == 2) { /* VarLenFeature: values + frame lengths */
			if (f->want == PF_EX_BYTES)
				return perr(a, "bytes[?, ?] (several strings a frame) is not supported; bytes[?] is one string a frame");
			f->var = 1;
			f->ragged = 1;
			o->ndim = 1;
		} else if (f->var != 1) {
			return perr(a, "a feature list is T[?] or T[?, D..] (FixedLenSequenceFeature) or T[?, ?] (VarLenFeature)");
		} else {
			f->var = 0; /* FixedLenSequenceFeature: count values a frame */
			if (f->want == PF_EX_BYTES && o->ndim != 1)
				return perr(a, "a feature list of byte strings is bytes[?] (one string a frame)");
			f->ragged = f->want == PF_EX_BYTES;
		}
		if (f->allow_missing && f->var)
			return perr(a, "allow_missing is for a FixedLenSequenceFeature (a [?, ?] list is empty when missing)");
	}
	if (f->allow_missing && !f->seq)
		return perr(a, "allow_missing is for a feature list (seq)");
	f->out_len = -1;
	if (!f->ragged)
		return 0;
	if (out->nfields == PF_MAX_FIELDS)
		return perr(a, "too many output fields (at most 16, a list of strings or a ragged list takes 2)");
	f->out_len = out->nfields++;
	pf_field *l = &out->fields[f->out_len];
	size_t nl = strlen(o->name);
	if (nl + 4 >= sizeof(l->name))
		return perr(a, "field name too long for its _len field");
	memcpy(l->name, o->name, nl);
	memcpy(l->name + nl, "_len", 5);
	l->dtype = PF_I64;
	l->ndim = lndim;
	memcpy(l->dims, ldims, sizeof(l->dims[0]) * (size_t)lndim);
	return 0;
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
			if (st->n == PF_MAX_FIELDS || out->nfields == PF_MAX_FIELDS)
				return perr(&a, "too many features (at most 16 output fields)");
			ex_feat *f = &st->f[st->n++];
			f->out = out->nfields++;
			pf_field *o = &out->fields[f->out];
			if (nlen >= PF_FIELD_NAME_MAX || strcspn(name, "/:") != nlen)
				return pf_error_set(err, PF_EINVAL,
						    "parse_example: '%s' is not a field name (letters, digits, _ . -); name the field and give the feature's key: NAME=TYPE(key=\"%s\")",
						    name, name);
			memcpy(o->name, name, nlen + 1);
			memcpy(f->key, name, nlen + 1);
			f->key_len = nlen;
			if ((rc = parse_type(&a, f, o)) || (rc = parse_opts(&a, f)) ||
			    (rc = settle(&a, f, out, st->sequence)))
				return rc;
		}
		ws(&a);
		if (*a.p == ',')
			a.p++;
		else if (*a.p)
			return perr(&a, "expected ','");
		ws(&a);
	}
	if (!st->n)
		return pf_error_set(err, PF_EINVAL,
				    "parse_example: name the features to read, e.g. parse_example(image=bytes, label=i64)");
	return 0;
}

/* parse_example and parse_sequence_example: the arguments, the output
 * schema and its bound. */
static int prepare(pf_map_ctx *ctx, int sequence, pf_error *err)
{
	const char *fn = sequence ? "parse_sequence_example" : "parse_example";
	const pf_schema *in = ctx->in;
	if (!in || in->nfields != 1 || in->fields[0].dtype != PF_U8 || in->fields[0].ndim != 1 ||
	    in->fields[0].dims[0] != PF_DIM_VAR)
		return pf_error_set(err, PF_EINVAL,
				    "%s: input is not a raw record (record: u8[?]); %s must follow a tfrecord source",
				    fn, fn);
	ex_state *st = calloc(1, sizeof(*st));
	if (!st)
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", fn);
	st->sequence = sequence;
	size_t max_bytes = EX_DEFAULT_MAX_BYTES;
	pf_schema out;
	int rc = parse_args(ctx->args, st, &out, &max_bytes, err);
	pf_error e = { 0 };
	char txt[1024];
	if (!rc && (rc = pf_schema_format(&out, txt, sizeof(txt)) >= sizeof(txt) ? PF_ELIMIT : 0))
		pf_error_set(err, rc, "%s: schema too long", fn);
	if (!rc && (rc = pf_schema_parse(&out, txt, &e))) /* names unique, sizes in range */
		pf_error_set(err, rc, "%s: %s", fn, e.msg);
	if (rc) {
		ex_free(st);
		return rc;
	}
	int64_t fixed = 0;
	for (int i = 0; i < out.nfields; i++)
		if (pf_field_bytes(&out.fields[i]) > 0)
			fixed += pf_field_bytes(&out.fields[i]) + 8;
	ctx->out = out;
	ctx->max_out_bytes = (size_t)fixed + max_bytes + 8 * (size_t)out.nfields;
	ctx->state = st;
	ctx->free_state = ex_free;
	return 0;
}

int pf_parse_example_prepare(pf_map_ctx *ctx, pf_error *err)
{
	return prepare(ctx, 0, err);
}

int pf_parse_seq_example_prepare(pf_map_ctx *ctx, pf_error *err)
{
	return prepare(ctx, 1, err);
}

/* ---- one record ------------------------------------------------------------ */

static int on_entry(void *user, const char *key, size_t key_len, const pf_ex_feature *f)
{
	ex_found *x = user;
	for (int i = 0; i < x->st->n; i++)
		if (!x->st->f[i].seq && x->st->f[i].key_len == key_len &&
		    !memcmp(x->st->f[i].key, key, key_len)) {
			x->f[i] = *f; /* a later entry of the key replaces it */
			x->has[i] = 1;
		}
	return 0;
}

static int on_list(void *user, const char *key, size_t key_len, const pf_ex_list *l)
{
	ex_found *x = user;
	for (int i = 0; i < x->st->n; i++)
		if (x->st->f[i].seq && x->st->f[i].key_len == key_len &&
		    !memcmp(x->st->f[i].key, key, key_len)) {
			x->l[i] = *l;
			x->has[i] = 1;
		}
	return 0;
}

int pf_ex_feat_err(pf_error *err, const ex_feat *f, const pf_schema *out, const char *m)
{
	const char *what = f->seq ? "feature list" : "feature";
	const char *name = out->fields[f->out].name;
	if (strcmp(f->key, name))
		return pf_error_set(err, PF_EMAP, "%s '%s' (field %s): %s", what, f->key, name, m);
	return pf_error_set(err, PF_EMAP, "%s '%s': %s", what, f->key, m);
}

/* Feature f is missing (or has no list): its default, [] or an error. */
static int missing(const ex_feat *f, pf_elem *out, pf_error *err)
{
	if (f->var) {
		if (!pf_elem_alloc(out, f->out, 0, err) ||
		    (f->ragged && !pf_elem_alloc(out, f->out_len, 0, err)))
			return pf_ex_alloc_rc(err);
		return 0;
	}
	if (!f->has_def)
		return pf_ex_feat_err(err, f, out->schema, "required (no default) but not in the Example");
	if (f->want == PF_EX_BYTES) {
		void *d = pf_elem_alloc(out, f->out, (int64_t)f->def_len, err);
		if (!d)
			return pf_ex_alloc_rc(err);
		memcpy(d, f->def, f->def_len);
		return 0;
	}
	memcpy(out->data[f->out], f->def, (size_t)f->count * (f->want == PF_EX_FLOAT ? 4 : 8));
	return 0;
}

/* A bytes feature's strings: one (bytes) or a list (bytes[?] / bytes[N]:
 * joined, and their lengths in NAME_len). */
static int bytes_feature(const ex_feat *f, const pf_ex_feature *ft, const pf_ex_info *info,
			 pf_elem *out, pf_error *err)
{
	char m[160];
	if (!f->ragged && info->count != 1) {
		snprintf(m, sizeof(m), "holds %lld byte strings, expected 1", (long long)info->count);
		return pf_ex_feat_err(err, f, out->schema, m);
	}
	if (f->fixed_strs && info->count != f->count) {
		snprintf(m, sizeof(m), "holds %lld byte strings, expected %lld (its shape)",
			 (long long)info->count, (long long)f->count);
		return pf_ex_feat_err(err, f, out->schema, m);
	}
	int64_t *lens = NULL;
	if (f->fixed_strs)
		lens = out->data[f->out_len];
	else if (f->ragged && !(lens = pf_elem_alloc(out, f->out_len, info->count, err)))
		return pf_ex_alloc_rc(err);
	int64_t total = pf_ex_bytes_lengths(ft, info, lens);
	void *d = pf_elem_alloc(out, f->out, total, err);
	if (!d)
		return pf_ex_alloc_rc(err);
	pf_ex_bytes_join(ft, info, d);
	return 0;
}

static int one_feature(const ex_found *x, int i, pf_elem *out, pf_error *err)
{
	const ex_feat *f = &x->st->f[i];
	pf_ex_info info = { 0 };
	pf_error e = { 0 };
	char m[160];
	int rc;
	if (x->has[i] && (rc = pf_ex_feature_info(&x->f[i], &info, &e)))
		return pf_ex_feat_err(err, f, out->schema, e.msg);
	if (info.kind == PF_EX_NONE)
		return missing(f, out, err);
	if (info.kind != f->want) {
		snprintf(m, sizeof(m), "is a %s, expected a %s", pf_ex_kind_name(info.kind),
			 pf_ex_kind_name(f->want));
		return pf_ex_feat_err(err, f, out->schema, m);
	}
	if (f->want == PF_EX_BYTES)
		return bytes_feature(f, &x->f[i], &info, out, err);
	void *d;
	if (f->var) {
		if (!(d = pf_elem_alloc(out, f->out, info.count, err)))
			return pf_ex_alloc_rc(err);
	} else {
		if (info.count != f->count) {
			snprintf(m, sizeof(m), "holds %lld values, expected %lld (its shape)",
				 (long long)info.count, (long long)f->count);
			return pf_ex_feat_err(err, f, out->schema, m);
		}
		d = out->data[f->out];
	}
	pf_ex_feature_read(&x->f[i], &info, d);
	return 0;
}

/* One record of either kind: walk it, then each feature in order. */
static int parse_record(const ex_state *st, const pf_elem *in, pf_elem *out, pf_error *err)
{
	const char *fn = st->sequence ? "parse_sequence_example" : "parse_example";
	ex_found x;
	int rc;
	x.st = st;
	memset(x.has, 0, sizeof(x.has));
	pf_error e = { 0 };
	rc = pf_seq_example_walk(in->data[0], (size_t)in->nitems[0], on_entry,
				 st->sequence ? on_list : NULL, &x, &e);
	if (rc)
		return pf_error_set(err, rc, "%s: %s", fn, e.msg);
	for (int i = 0; i < st->n; i++) {
		rc = st->f[i].seq ? pf_ex_seq_feature(&x, i, out, &e) : one_feature(&x, i, out, &e);
		if (rc)
			return pf_error_set(err, rc, "%s: %s", fn, e.msg);
	}
	return 0;
}

int pf_parse_example_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err)
{
	return parse_record(state, in, out, err);
}

int pf_parse_seq_example_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err)
{
	return parse_record(state, in, out, err);
}
