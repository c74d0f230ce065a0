/*
 * maps.c - built-in map functions (decode, decode_f32, normalize), the
 * filter registry, and loading plugins (shared objects) by path.
 *
 * The built-ins follow pipefeed.h's two-call contract: prepare() reads the
 * argument text and the schemas once per iterator and builds an immutable
 * state; fn() only reads that state, so it is safe on worker threads.
 * Record bytes are little-endian (pf_schema.h); conversions read them byte
 * by byte, plain copies assume a little-endian host.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pf_error.h"
#include "pf_schema.h"
#include "pf_types.h"
#include "pf_maps.h"
#include "pf_map_fns.h"
#include "pf_u8_f32.h"

#define MAPS_DEFAULT_MAX_BYTES (1u << 20)

/* ---- the argument text of a map function ------------------------------ */


static const char *skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	return s;
}

static int parse_num(const char *fn, const char *text, const char **s, double *out,
		     pf_error *err)
{
	char *end;
	errno = 0;
	*out = strtod(*s, &end);
	if (end == *s || errno == ERANGE || !isfinite(*out))
		return pf_error_set(err, PF_EINVAL, "%s: bad number at offset %td of arguments '%s'",
				    fn, *s - text, text);
	*s = end;
	return 0;
}

/* Parse "k=v, k=[a, b], k=word" into kv[]; *n gets the count. */
int pf_map_kv_parse(const char *fn, const char *text, struct kv *kv, int *n,
		    pf_error *err)
{
	const char *s = skip_ws(text ? text : "");
	int rc;

	*n = 0;
	text = text ? text : "";
	while (*s) {
		struct kv *k;
		size_t len = 0;

		if (*n == MAPS_MAX_KV)
			return pf_error_set(err, PF_EINVAL, "%s: more than %d arguments in '%s'",
					    fn, MAPS_MAX_KV, text);
		k = &kv[(*n)++];
		memset(k, 0, sizeof(*k));
		while (s[len] && s[len] != '=' && s[len] != ',' && s[len] != ' ')
			len++;
		if (!len || len >= sizeof(k->key) || skip_ws(s + len)[0] != '=')
			return pf_error_set(err, PF_EINVAL,
					    "%s: expected name=value at offset %td of arguments '%s'",
					    fn, s - text, text);
		memcpy(k->key, s, len);
		s = skip_ws(skip_ws(s + len) + 1);
		if (*s == '[') {
			s = skip_ws(s + 1);
			k->is_num = 1;
			while (*s != ']') {
				if (k->n == MAPS_MAX_CHANNELS)
					return pf_error_set(err, PF_ELIMIT,
							    "%s: list of '%s' longer than %d",
							    fn, k->key, MAPS_MAX_CHANNELS);
				if ((rc = parse_num(fn, text, &s, &k->num[k->n++], err)))
					return rc;
				s = skip_ws(s);
				if (*s == ',')
					s = skip_ws(s + 1);
				else if (*s != ']')
					return pf_error_set(err, PF_EINVAL,
							    "%s: expected ',' or ']' at offset %td of arguments '%s'",
							    fn, s - text, text);
			}
			s++;
		} else if (*s == '"' || *s == '\'') {
			char q = *s++;
			size_t o = 0;
			while (*s && *s != q) {
				if (*s == '\\' && s[1])
					s++;
				if (o + 1 < sizeof(k->word))
					k->word[o++] = *s;
				s++;
			}
			if (*s != q)
				return pf_error_set(err, PF_EINVAL, "%s: unterminated string in '%s'",
						    fn, text);
			s++;
		} else if ((*s >= '0' && *s <= '9') || *s == '-' || *s == '+' || *s == '.') {
			k->is_num = 1;
			k->n = 1;
			if ((rc = parse_num(fn, text, &s, &k->num[0], err)))
				return rc;
		} else {
			size_t o = 0;
			while (*s && *s != ',' && *s != ' ' && *s != '\t') {
				if (o + 1 < sizeof(k->word))
					k->word[o++] = *s;
				s++;
			}
			if (!o)
				return pf_error_set(err, PF_EINVAL,
						    "%s: expected a value for '%s' in '%s'",
						    fn, k->key, text);
		}
		s = skip_ws(s);
		if (*s == ',')
			s = skip_ws(s + 1);
		else if (*s)
			return pf_error_set(err, PF_EINVAL,
					    "%s: expected ',' at offset %td of arguments '%s'",
					    fn, s - text, text);
	}
	return 0;
}

/* Fail on keys not in `known` (a NULL-terminated list). */
static int check_keys(const char *fn, const struct kv *kv, int n,
		      const char *const *known)
{
	(void)fn;
	for (int i = 0; i < n; i++) {
		int ok = 0;
		for (int j = 0; known[j]; j++)
			ok |= !strcmp(kv[i].key, known[j]);
		if (!ok)
			return i;
	}
	return -1;
}

static int unknown_key(const char *fn, const char *key, const char *expected,
		       pf_error *err)
{
	return pf_error_set(err, PF_EINVAL, "%s: unknown argument '%s' (expected %s)",
			    fn, key, expected);
}

static int get_max_bytes(const char *fn, const struct kv *k, size_t *out, pf_error *err)
{
	if (!k->is_num || k->n != 1 || k->num[0] < 1 || k->num[0] > (double)(1ull << 40) ||
	    k->num[0] != floor(k->num[0]))
		return pf_error_set(err, PF_EINVAL, "%s: max_bytes must be a positive integer",
				    fn);
	*out = (size_t)k->num[0];
	return 0;
}

/* ---- little-endian integer reads -------------------------------------- */

static int64_t read_int(const unsigned char *p, pf_dtype t, int *overflow)
{
	uint64_t u = 0;
	size_t n = pf_dtype_size(t);

	for (size_t i = 0; i < n; i++)
		u |= (uint64_t)p[i] << (8 * i);
	switch (t) {
	case PF_I8: return (int8_t)u;
	case PF_I16: return (int16_t)u;
	case PF_I32: return (int32_t)u;
	case PF_I64: return (int64_t)u;
	case PF_U64:
		if (u > INT64_MAX) {
			*overflow = 1;
			return 0;
		}
		return (int64_t)u;
	default: return (int64_t)u;     /* u8, u16, u32 */
	}
}

static int is_int_dtype(pf_dtype t)
{
	return t >= PF_U8 && t <= PF_I64;
}

/* ---- decode ------------------------------------------------------------ */

enum conv { CONV_COPY, CONV_U8_F32, CONV_INT_I32 };

struct decode_state {
	pf_schema rec;                  /* the record schema (input bytes) */
	enum conv conv[PF_MAX_FIELDS];
	int64_t inner[PF_MAX_FIELDS];   /* items per step of the "?" dimension */
	/* a fixed-size record schema: its bytes and every record's split */
	int64_t rec_bytes;              /* -1: variable */
	size_t off[PF_MAX_FIELDS];
	int64_t count[PF_MAX_FIELDS];
	int id;                         /* id=1: the "id: i64" field's number; -1 */
};

/* user pointers of the two registrations: the default scale */
static const int scale_none = 0, scale_f32 = 1;

static int is_raw_record(const pf_schema *s)
{
	return s && s->nfields == 1 && s->fields[0].dtype == PF_U8 &&
	       s->fields[0].ndim == 1 && s->fields[0].dims[0] == PF_DIM_VAR;
}

static int decode_prepare(pf_map_ctx *ctx, pf_error *err)
{
	static const char *const known[] = { "scale", "max_bytes", "id", NULL };
	const char *fn = *(const int *)ctx->user ? "decode_f32" : "decode";
	struct kv kv[MAPS_MAX_KV];
	int nkv, rc, bad, scale = *(const int *)ctx->user, has_var = 0, want_id = 0;
	size_t max_bytes = MAPS_DEFAULT_MAX_BYTES;
	struct decode_state *st;

	if ((rc = pf_map_kv_parse(fn, ctx->args, kv, &nkv, err)))
		return rc;
	if ((bad = check_keys(fn, kv, nkv, known)) >= 0)
		return unknown_key(fn, kv[bad].key, "scale, max_bytes or id", err);
	for (int i = 0; i < nkv; i++) {
		if (!strcmp(kv[i].key, "id")) {
			if (!kv[i].is_num || kv[i].n != 1 ||
			    (kv[i].num[0] != 0 && kv[i].num[0] != 1))
				return pf_error_set(err, PF_EINVAL, "%s: id must be 0 or 1", fn);
			want_id = kv[i].num[0] != 0;
		} else if (!strcmp(kv[i].key, "scale")) {
			if (!strcmp(kv[i].word, "f32"))
				scale = 1;
			else if (!strcmp(kv[i].word, "none"))
				scale = 0;
			else
				return pf_error_set(err, PF_EINVAL,
						    "%s: scale must be f32 or none, got '%s'",
						    fn, kv[i].is_num ? "a number" : kv[i].word);
		} else if ((rc = get_max_bytes(fn, &kv[i], &max_bytes, err))) {
			return rc;
		}
	}
	if (!is_raw_record(ctx->in))
		return pf_error_set(err, PF_EINVAL,
				    "%s: input is not a raw record (record: u8[?]); decode must follow the source",
				    fn);
	if (!ctx->record || ctx->record->nfields == 0)
		return pf_error_set(err, PF_EINVAL,
				    "%s: the source has no record schema (tfrecord?): nothing to decode (tf.train.Example records: map(parse_example(NAME=TYPE, ...)))",
				    fn);
	st = calloc(1, sizeof(*st));
	if (!st)
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", fn);
	st->rec = *ctx->record;
	ctx->out = *ctx->record;
	for (int i = 0; i < st->rec.nfields; i++) {
		const pf_field *f = &st->rec.fields[i];
		pf_field *o = &ctx->out.fields[i];

		st->conv[i] = CONV_COPY;
		if (scale && f->dtype == PF_U8 && f->ndim >= 1) {
			st->conv[i] = CONV_U8_F32;
			o->dtype = PF_F32;
		} else if (scale && f->ndim == 0 && is_int_dtype(f->dtype)) {
			st->conv[i] = CONV_INT_I32;
			o->dtype = PF_I32;
		}
		st->inner[i] = 1;
		for (int d = 0; d < f->ndim; d++) {
			if (f->dims[d] == PF_DIM_VAR)
				has_var = 1;
			else
				st->inner[i] *= f->dims[d];
		}
	}
	st->id = -1;
	if (want_id) { /* the sample id (pf_id.h) as one more field, last */
		if (ctx->out.nfields >= PF_MAX_FIELDS || pf_schema_find(&ctx->out, "id") >= 0) {
			free(st);
			return pf_error_set(err, PF_EINVAL,
					    "%s: id=1: the record has a field \"id\" already, or no room for one",
					    fn);
		}
		st->id = ctx->out.nfields++;
		pf_field *f = &ctx->out.fields[st->id];
		memset(f, 0, sizeof(*f));
		strcpy(f->name, "id");
		f->dtype = PF_I64;
	}
	if (has_var)
		ctx->max_out_bytes = max_bytes;
	/* fixed-size records all split alike: once here, not per record */
	st->rec_bytes = pf_schema_record_bytes(&st->rec);
	size_t pos = 0;
	for (int i = 0; st->rec_bytes >= 0 && i < st->rec.nfields; i++) {
		st->off[i] = pos;
		st->count[i] = pf_field_count(&st->rec.fields[i]);
		pos += (size_t)st->count[i] * pf_dtype_size(st->rec.fields[i].dtype);
	}
	ctx->state = st;
	ctx->free_state = free;
	return 0;
}

static int decode_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err)
{
	const struct decode_state *st = state;
	const unsigned char *rec = in->data[0];
	size_t offv[PF_MAX_FIELDS];
	int64_t countv[PF_MAX_FIELDS];
	const size_t *off = st->off;
	const int64_t *count = st->count;
	int rc;

	if (st->rec_bytes < 0 || in->nitems[0] != st->rec_bytes) {
		/* variable fields, or a record of the wrong size (the split
		 * names the field it breaks) */
		rc = pf_schema_split(&st->rec, rec, (size_t)in->nitems[0], offv, countv, err);
		if (rc)
			return rc;
		off = offv;
		count = countv;
	}
	for (int i = 0; i < st->rec.nfields; i++) {
		const pf_field *f = &st->rec.fields[i];
		const unsigned char *src = rec + off[i];
		int64_t n = count[i];
		void *dst;

		if (pf_field_count(f) < 0) {
			int64_t vlen = st->inner[i] ? n / st->inner[i] : 0;
			dst = pf_elem_alloc(out, i, vlen, err);
			if (!dst)
				return err && err->code ? err->code : PF_ELIMIT;
		} else {
			dst = out->data[i];
		}
		switch (st->conv[i]) {
		case CONV_COPY:
			memcpy(dst, src, (size_t)n * pf_dtype_size(f->dtype));
			break;
		case CONV_U8_F32:
			pf_u8_to_f32(dst, src, n);
			break;
		case CONV_INT_I32: {
			int32_t *d = dst;
			size_t sz = pf_dtype_size(f->dtype);
			for (int64_t j = 0; j < n; j++) {
				int overflow = 0;
				int64_t v = read_int(src + (size_t)j * sz, f->dtype, &overflow);
				if (overflow || v < INT32_MIN || v > INT32_MAX)
					return pf_error_set(err, PF_EMAP,
							    "decode_f32: field %s: value does not fit i32",
							    f->name);
				d[j] = (int32_t)v;
			}
			break;
		}
		}
	}
	if (st->id >= 0)
		*(int64_t *)out->data[st->id] = (int64_t)in->id;
	return 0;
}

/* ---- normalize --------------------------------------------------------- */

struct norm_state {
	pf_schema s;
	int apply[PF_MAX_FIELDS];
	int nmean, nstd;
	float mean[MAPS_MAX_CHANNELS], inv_std[MAPS_MAX_CHANNELS];
};

static int norm_prepare(pf_map_ctx *ctx, pf_error *err)
{
	static const char *const known[] = { "mean", "std", "field", "max_bytes", NULL };
	const char *fn = "normalize";
	struct kv kv[MAPS_MAX_KV];
	const struct kv *mean = NULL, *sd = NULL;
	const char *field = NULL;
	size_t max_bytes = MAPS_DEFAULT_MAX_BYTES;
	int nkv, rc, bad, napply = 0, has_var = 0;
	struct norm_state *st;

	if ((rc = pf_map_kv_parse(fn, ctx->args, kv, &nkv, err)))
		return rc;
	if ((bad = check_keys(fn, kv, nkv, known)) >= 0)
		return unknown_key(fn, kv[bad].key, "mean, std, field or max_bytes", err);
	for (int i = 0; i < nkv; i++) {
		if (!strcmp(kv[i].key, "mean"))
			mean = &kv[i];
		else if (!strcmp(kv[i].key, "std"))
			sd = &kv[i];
		else if (!strcmp(kv[i].key, "field"))
			field = kv[i].word;
		else if ((rc = get_max_bytes(fn, &kv[i], &max_bytes, err)))
			return rc;
	}
	if (!mean || !sd || !mean->is_num || !sd->is_num || !mean->n || !sd->n)
		return pf_error_set(err, PF_EINVAL,
				    "normalize: needs mean=NUMBER|[LIST] and std=NUMBER|[LIST] (got '%s')",
				    ctx->args);
	st = calloc(1, sizeof(*st));
	if (!st)
		return pf_error_set(err, PF_ENOMEM, "normalize: out of memory");
	st->s = *ctx->in;
	st->nmean = mean->n;
	st->nstd = sd->n;
	for (int c = 0; c < mean->n; c++)
		st->mean[c] = (float)mean->num[c];
	for (int c = 0; c < sd->n; c++) {
		if (!(sd->num[c] > 0 || sd->num[c] < 0)) {
			rc = pf_error_set(err, PF_EINVAL, "normalize: std must not be 0");
			goto fail;
		}
		st->inv_std[c] = (float)(1.0 / sd->num[c]);
	}
	for (int i = 0; i < st->s.nfields; i++) {
		const pf_field *f = &st->s.fields[i];
		int64_t last;

		if (pf_field_count(f) < 0)
			has_var = 1;
		if (field ? strcmp(field, f->name) != 0 : (f->dtype != PF_F32 || f->ndim == 0))
			continue;
		if (f->dtype != PF_F32) {
			rc = pf_error_set(err, PF_EINVAL,
					  "normalize: field %s is %s, not f32 (decode it with decode_f32 first)",
					  f->name, pf_dtype_name(f->dtype));
			goto fail;
		}
		last = f->ndim ? f->dims[f->ndim - 1] : 1;
		if ((st->nmean > 1 && last != st->nmean) || (st->nstd > 1 && last != st->nstd)) {
			rc = pf_error_set(err, PF_EINVAL,
					  "normalize: field %s has %" PRId64 " channels (last dimension) but mean has %d and std %d values",
					  f->name, last, st->nmean, st->nstd);
			goto fail;
		}
		st->apply[i] = 1;
		napply++;
	}
	if (!napply) {
		if (field)
			rc = pf_error_set(err, PF_EINVAL, "normalize: no field named '%s'", field);
		else
			rc = pf_error_set(err, PF_EINVAL, "normalize: the input has no f32 array field");
		goto fail;
	}
	ctx->out = st->s;
	if (has_var)
		ctx->max_out_bytes = max_bytes;
	ctx->state = st;
	ctx->free_state = free;
	return 0;
fail:
	free(st);
	return rc;
}

static int norm_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err)
{
	const struct norm_state *st = state;

	for (int i = 0; i < st->s.nfields; i++) {
		const pf_field *f = &st->s.fields[i];
		int64_t n = in->nitems[i];
		void *dst;

		if (pf_field_count(f) < 0) {
			dst = pf_elem_alloc(out, i, in->var_len[i], err);
			if (!dst)
				return err && err->code ? err->code : PF_ELIMIT;
		} else {
			dst = out->data[i];
		}
		if (!st->apply[i]) {
			memcpy(dst, in->data[i], (size_t)n * pf_dtype_size(f->dtype));
			continue;
		}
		const float *x = in->data[i];
		float *y = dst;
		int cm = st->nmean, cs = st->nstd;
		for (int64_t j = 0; j < n; j++)
			y[j] = (x[j] - st->mean[cm > 1 ? j % cm : 0]) * st->inv_std[cs > 1 ? j % cs : 0];
	}
	return 0;
}

/* ---- registration ------------------------------------------------------ */

static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;
static int builtin_rc;
static pf_error builtin_err;

static void register_builtins(void)
{
	struct { const char *name; pf_map_prepare_fn prep; pf_map_fn fn; const void *user; } b[] = {
		{ "decode", decode_prepare, decode_fn, &scale_none },
		{ "decode_f32", decode_prepare, decode_fn, &scale_f32 },
		{ "normalize", norm_prepare, norm_fn, NULL },
		{ "parse_example", pf_parse_example_prepare, pf_parse_example_fn, NULL },
		{ "parse_sequence_example", pf_parse_seq_example_prepare, pf_parse_seq_example_fn,
		  NULL },
		{ "decode_image", pf_decode_image_prepare, pf_decode_image_fn, NULL },
	};
	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
		const pf_map_def *d = pf_map_lookup(b[i].name);
		if (d && d->fn == b[i].fn)
			continue;
		int rc = pf_map_register(b[i].name, b[i].prep, b[i].fn, (void *)b[i].user,
					 &builtin_err);
		if (rc && !builtin_rc)
			builtin_rc = rc;
	}
}

int pf_maps_init(pf_error *err)
{
	pthread_once(&builtin_once, register_builtins);
	if (builtin_rc)
		return pf_error_set(err, builtin_rc, "built-in map functions: %s", builtin_err.msg);
	return 0;
}

/* Registered when the library is loaded, so pf_map(p, "decode", ...) works
 * without a call to pf_maps_init. */
__attribute__((constructor)) static void maps_ctor(void)
{
	pf_maps_init(NULL);
}

/* ---- filters ----------------------------------------------------------- */

#define FILTERS_MAX 256

static struct filter_def {
	char name[PF_MAP_NAME_MAX];
	pf_filter_fn fn;
	void *user;
} filters[FILTERS_MAX];
static int nfilters;
static pthread_mutex_t filters_lock = PTHREAD_MUTEX_INITIALIZER;

int pf_filter_register(const char *name, pf_filter_fn fn, void *user, pf_error *err)
{
	int rc = 0;

	if (!name || !name[0] || strlen(name) >= PF_MAP_NAME_MAX || !fn)
		return pf_error_set(err, PF_EINVAL, "pf_filter_register: bad name or NULL function");
	pthread_mutex_lock(&filters_lock);
	for (int i = 0; i < nfilters; i++)
		if (!strcmp(filters[i].name, name))
			rc = pf_error_set(err, PF_EINVAL, "filter '%s' is already registered", name);
	if (!rc && nfilters == FILTERS_MAX)
		rc = pf_error_set(err, PF_ELIMIT, "filter registry full (%d entries)", FILTERS_MAX);
	if (!rc) {
		snprintf(filters[nfilters].name, PF_MAP_NAME_MAX, "%s", name);
		filters[nfilters].fn = fn;
		filters[nfilters].user = user;
		nfilters++;
	}
	pthread_mutex_unlock(&filters_lock);
	return rc;
}

int pf_filter_lookup(const char *name, pf_filter_fn *fn, void **user)
{
	int rc = PF_EINVAL;

	pthread_mutex_lock(&filters_lock);
	for (int i = 0; name && i < nfilters; i++)
		if (!strcmp(filters[i].name, name)) {
			*fn = filters[i].fn;
			*user = filters[i].user;
			rc = 0;
		}
	pthread_mutex_unlock(&filters_lock);
	return rc;
}

/* ---- plugins ----------------------------------------------------------- */

#define PLUGINS_MAX 64

static struct plugin {
	char *path;
	void *handle;
	int init_rc;            /* what pf_plugin_init returned */
} plugins[PLUGINS_MAX];
static int nplugins;
static pthread_mutex_t plugins_lock = PTHREAD_MUTEX_INITIALIZER;

int pf_map_load(const char *path, pf_error *err)
{
	char local[4096];
	const char *open_path = path;
	struct stat sb;
	void *h;
	pf_plugin_init_fn init;
	int rc = 0;

	if (!path || !path[0])
		return pf_error_set(err, PF_EINVAL, "pf_map_load: empty path");
	if (!strchr(path, '/') && stat(path, &sb) == 0) {
		if (snprintf(local, sizeof(local), "./%s", path) >= (int)sizeof(local))
			return pf_error_set(err, PF_ELIMIT, "pf_map_load: path too long");
		open_path = local;
	}
	pthread_mutex_lock(&plugins_lock);
	for (int i = 0; i < nplugins; i++)
		if (!strcmp(plugins[i].path, path)) {
			if (plugins[i].init_rc)
				rc = pf_error_set(err, plugins[i].init_rc,
						  "%s: its %s failed when it was loaded", path,
						  PF_PLUGIN_INIT_SYMBOL);
			goto out;
		}
	if (nplugins == PLUGINS_MAX) {
		rc = pf_error_set(err, PF_ELIMIT, "%s: more than %d plugins loaded", path, PLUGINS_MAX);
		goto out;
	}
	h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		rc = pf_error_set(err, PF_ENOENT, "%s: cannot load plugin: %s", path,
				  e ? e : "dlopen failed");
		goto out;
	}
	*(void **)&init = dlsym(h, PF_PLUGIN_INIT_SYMBOL);
	if (!init) {
		dlclose(h);
		rc = pf_error_set(err, PF_EINVAL, "%s: not a pipefeed plugin (no %s function)",
				  path, PF_PLUGIN_INIT_SYMBOL);
		goto out;
	}
	plugins[nplugins].path = strdup(path);
	if (!plugins[nplugins].path) {
		dlclose(h);
		rc = pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	plugins[nplugins].handle = h;
	nplugins++;
	/* Kept loaded even when init fails: it may have registered some
	 * functions before failing, and those must stay callable. */
	pf_error e = { 0 };
	rc = init(&e);
	if (rc)
		rc = plugins[nplugins - 1].init_rc = pf_error_set(err, rc < 0 ? rc : PF_EINVAL, "%s: %s failed: %s", path,
				  PF_PLUGIN_INIT_SYMBOL, e.code ? e.msg : pf_strerror(rc));
out:
	pthread_mutex_unlock(&plugins_lock);
	return rc;
}

int pf_fn_resolve(const char *fn, const char **name, pf_error *err)
{
	const char *colon = strrchr(fn, ':');
	char path[4096];
	int rc;

	*name = fn;
	if ((rc = pf_maps_init(err)))
		return rc;
	if (!strcmp(fn, "decode_image") && pf_decode_image_missing())
		return pf_error_set(err, PF_EINVAL, "decode_image: this pipefeed was built without %s",
				    pf_decode_image_missing());
	if (!colon)
		return 0;
	if (colon == fn || !colon[1])
		return pf_error_set(err, PF_EINVAL, "'%s': expected LIBRARY.so:FUNCTION", fn);
	if ((size_t)(colon - fn) >= sizeof(path))
		return pf_error_set(err, PF_ELIMIT, "library path too long");
	memcpy(path, fn, (size_t)(colon - fn));
	path[colon - fn] = '\0';
	*name = colon + 1;
	return pf_map_load(path, err);
}
