/*
 * webdataset.c - source: the samples of WebDataset tar shards (read with
 * libarchive, so .tar.gz and other filters too).  The members of a sample
 * are consecutive and share a key: "dir/000123.jpg" + "dir/000123.cls" is
 * one element with fields "jpg" and "cls" (WebDataset's rule: the key ends
 * at the first dot of the file name; the rest, lower-cased, is the field).
 * Every field is u8[?] (the member's bytes); the fields are the
 * extensions of every file's samples, sorted, found by the counting pass;
 * a sample without one of them has it empty (length 0).  Members that are
 * not regular files, or whose name has no dot (or starts with one), are
 * not part of any sample; an extension twice in one sample is an error
 * (as in WebDataset).
 *
 *   webdataset("shards-{000..099}.tar", cycle=4, shuffle_files=true, ...)
 *
 * Paths take WebDataset's brace expansion ({000..099}: a zero-padded
 * range; {a,b}: a list) before globs.  Interleave, file order, counting
 * pass and damage policy are the file sources' (ops/file_source.c): tar
 * has no checksum over data, so damage is what breaks the framing (a bad
 * header, a truncated member): the sample it hits and the rest of the
 * file are lost (skip_corrupt), or the op stops naming file and member.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_LIBARCHIVE
#include <archive.h>
#include <archive_entry.h>
#endif

#include "pf_file_source.h"

#define WDS_MAX_MEMBER (256u << 20) /* largest member accepted */
#define WDS_MAX_PATHS 100000        /* brace expansion's bound */

#ifdef HAVE_LIBARCHIVE

typedef struct wds {
	struct archive *a;
	char *path;
	uint64_t count;        /* samples passed */
	int pending;           /* a member's header read, its data not yet */
	char key[1024];        /* the pending member's key and field */
	char ext[PF_FIELD_NAME_MAX];
	uint64_t size, off;    /* its size, and its header's offset */
	int failed, eof;
	pf_schema seen;        /* fields met so far (sorted) */
} wds;

/* libarchive's reason, which it leaves NULL for some cuts. */
static const char *aerr(struct archive *a)
{
	const char *m = archive_error_string(a);
	return m ? m : "truncated or unreadable (libarchive gives no reason)";
}

static int wds_open(void **out, const char *path, pf_error *err)
{
	wds *w = calloc(1, sizeof(*w));
	*out = NULL;
	if (!w || !(w->path = strdup(path)) || !(w->a = archive_read_new())) {
		if (w)
			free(w->path);
		free(w);
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
	}
	archive_read_support_format_tar(w->a);
	archive_read_support_filter_all(w->a);
	if (archive_read_open_filename(w->a, path, 1 << 16) != ARCHIVE_OK) {
		int rc = pf_error_set(err, PF_EFORMAT, "%s: %s", path, aerr(w->a));
		archive_read_free(w->a);
		free(w->path);
		free(w);
		return rc;
	}
	*out = w;
	return 0;
}

static void wds_close(void *r)
{
	wds *w = r;
	if (!w)
		return;
	archive_read_free(w->a);
	free(w->path);
	free(w);
}

/* Split a member name into key and field (WebDataset's rule); 0 when the
 * member is not part of a sample. */
static int split_name(const char *name, char *key, size_t kcap, char *ext, size_t ecap)
{
	const char *base = strrchr(name, '/');
	base = base ? base + 1 : name;
	const char *dot = strchr(base, '.');
	if (!dot || dot == base || !dot[1])
		return 0;
	size_t kl = (size_t)(dot - name), el = strlen(dot + 1);
	if (kl >= kcap || el >= ecap)
		return -1;
	memcpy(key, name, kl);
	key[kl] = '\0';
	for (size_t i = 0; i <= el; i++)
		ext[i] = (char)tolower((unsigned char)dot[1 + i]);
	for (size_t i = 0; i < el; i++)
		if (!isalnum((unsigned char)ext[i]) && ext[i] != '_' && ext[i] != '.' && ext[i] != '-')
			return -1;
	return 1;
}

/* Read the next member that belongs to a sample into w's pending slot.
 * 0, PF_END (clean end of the archive), PF_ETRUNC (damage), PF_EFORMAT. */
static int next_member(wds *w, pf_error *err)
{
	for (;;) {
		struct archive_entry *e;
		uint64_t off = (uint64_t)archive_read_header_position(w->a);
		if (w->eof)
			return PF_END;
		int r = archive_read_next_header(w->a, &e);
		if (r == ARCHIVE_EOF) {
			w->eof = 1;
			return PF_END;
		}
		if (r < ARCHIVE_WARN) {
			w->failed = 1;
			return pf_error_set(err, PF_ETRUNC, "%s: damaged tar at byte %llu: %s", w->path,
					    (unsigned long long)off, aerr(w->a));
		}
		if (archive_entry_filetype(e) != AE_IFREG)
			continue;
		const char *name = archive_entry_pathname(e);
		int s = split_name(name ? name : "", w->key, sizeof(w->key), w->ext, sizeof(w->ext));
		if (s < 0)
			return pf_error_set(err, PF_EFORMAT,
					    "%s: member '%s': its extension is not a field name (letters, digits, _ . -; at most %d)",
					    w->path, name, PF_FIELD_NAME_MAX - 1);
		if (!s)
			continue;
		if (archive_entry_size(e) < 0 || (uint64_t)archive_entry_size(e) > WDS_MAX_MEMBER)
			return pf_error_set(err, PF_ELIMIT, "%s: member '%s' is larger than %u bytes",
					    w->path, name, WDS_MAX_MEMBER);
		w->size = (uint64_t)archive_entry_size(e);
		w->off = off;
		w->pending = 1;
		return 0;
	}
}

/* Add field name to s in sorted order (no-op when there). */
static int add_field(pf_schema *s, const char *name, const char *path, pf_error *err)
{
	int i = 0;
	while (i < s->nfields && strcmp(s->fields[i].name, name) < 0)
		i++;
	if (i < s->nfields && !strcmp(s->fields[i].name, name))
		return 0;
	if (s->nfields == PF_MAX_FIELDS)
		return pf_error_set(err, PF_ELIMIT, "%s: more than %d different extensions", path,
				    PF_MAX_FIELDS);
	memmove(&s->fields[i + 1], &s->fields[i], sizeof(pf_field) * (size_t)(s->nfields - i));
	memset(&s->fields[i], 0, sizeof(pf_field));
	snprintf(s->fields[i].name, PF_FIELD_NAME_MAX, "%s", name);
	s->fields[i].dtype = PF_U8;
	s->fields[i].ndim = 1;
	s->fields[i].dims[0] = PF_DIM_VAR;
	s->nfields++;
	return 0;
}

/*
 * One sample: its members, read (into dst at 8-aligned offsets, up to cap
 * bytes, their field index by schema s) or stepped over (dst NULL).  The
 * sample ends at the next key or a clean end; damage on the way loses it.
 * *bytes gets its size as an element.  0, PF_END, or an error.
 */
static int sample(wds *w, const pf_schema *s, unsigned char *dst, size_t cap, pf_elem *out,
		  uint64_t *bytes, pf_error *err)
{
	char key[1024], seen[PF_MAX_FIELDS + 1][PF_FIELD_NAME_MAX];
	int rc, n = 0;
	uint64_t pos = 0;
	if (w->failed)
		return pf_error_set(err, PF_ETRUNC, "%s: read past damage", w->path);
	if (!w->pending && (rc = next_member(w, err)))
		return rc;
	snprintf(key, sizeof(key), "%s", w->key);
	do {
		for (int i = 0; i < n; i++)
			if (!strcmp(seen[i], w->ext))
				return pf_error_set(err, PF_EFORMAT, "%s: sample '%s' has two '%s' members",
						    w->path, key, w->ext);
		if (n == PF_MAX_FIELDS)
			return pf_error_set(err, PF_ELIMIT, "%s: sample '%s' has more than %d members",
					    w->path, key, PF_MAX_FIELDS);
		snprintf(seen[n++], PF_FIELD_NAME_MAX, "%s", w->ext);
		if ((rc = add_field(&w->seen, w->ext, w->path, err)))
			return rc;
		pos = (pos + 7) & ~(uint64_t)7;
		w->pending = 0;
		if (dst) {
			int f = pf_schema_find(s, w->ext);
			if (f < 0 || pos + w->size > cap)
				return pf_error_set(err, PF_EFORMAT,
						    "%s: sample '%s' changed since the counting pass", w->path, key);
			la_ssize_t got = 0, r = 1;
			while ((uint64_t)got < w->size &&
			       (r = archive_read_data(w->a, dst + pos + got, (size_t)(w->size - (uint64_t)got))) > 0)
				got += r;
			if ((uint64_t)got < w->size) {
				w->failed = 1;
				return pf_error_set(err, PF_ETRUNC, "%s: member '%s.%s' (header at byte %llu): %s",
						    w->path, key, w->ext, (unsigned long long)w->off,
						    r < 0 ? aerr(w->a) : "truncated");
			}
			out->data[f] = dst + pos;
			out->nitems[f] = out->var_len[f] = (int64_t)w->size;
		} else if (archive_read_data_skip(w->a) < ARCHIVE_WARN) {
			w->failed = 1;
			return pf_error_set(err, PF_ETRUNC, "%s: member '%s.%s' (header at byte %llu): %s",
					    w->path, key, w->ext, (unsigned long long)w->off,
					    aerr(w->a));
		}
		pos += w->size;
		rc = next_member(w, err);
	} while (!rc && !strcmp(w->key, key));
	if (rc && rc != PF_END)
		return rc; /* the sample is lost with the damage after it */
	*bytes = pos + 8 * PF_MAX_FIELDS;
	w->count++;
	return 0;
}

static int wds_skip(void *r, uint64_t *bytes, pf_error *err)
{
	return sample(r, NULL, NULL, 0, NULL, bytes, err);
}

static int wds_next(void *r, pf_op *op, int file, pf_elem *out, pf_error *err)
{
	wds *w = r;
	size_t cap = op->elem_bytes ? (size_t)op->elem_bytes : 1;
	pf_buf *b = pf_buf_get(op->rt->pool, cap);
	uint64_t bytes;
	if (!b)
		return pf_error_set(err, PF_ENOMEM, "out of memory");
	memset(out, 0, sizeof(*out));
	out->schema = &op->schema;
	for (int i = 0; i < op->schema.nfields; i++)
		out->data[i] = b->data;
	int rc = sample(w, &op->schema, b->data, cap, out, &bytes, err);
	if (rc) {
		pf_buf_unref(b);
		memset(out, 0, sizeof(*out));
		return rc;
	}
	out->id = pf_id_make((uint64_t)file, w->count - 1);
	out->buf = b->data;
	out->nbytes = (size_t)(bytes - 8 * PF_MAX_FIELDS);
	out->ref_ = b;
	return 0;
}

static uint64_t wds_count(const void *r)
{
	return ((const wds *)r)->count;
}

static int wds_fields(void *r, pf_schema *s, pf_error *err)
{
	const wds *w = r;
	for (int i = 0; i < w->seen.nfields; i++) {
		int rc = add_field(s, w->seen.fields[i].name, w->path, err);
		if (rc)
			return rc;
	}
	return 0;
}

static const pf_fsrc_class wds_class = {
	.kind = "webdataset", .unit = "sample", .recoverable = 0,
	.open = wds_open, .close = wds_close, .skip = wds_skip, .next = wds_next,
	.count = wds_count, .fields = wds_fields,
};
#endif /* HAVE_LIBARCHIVE */

/* ---- brace expansion ------------------------------------------------------ */

typedef struct plist {
	char **v;
	size_t n, cap;
} plist;

static int plist_add(plist *l, char *s, pf_error *err)
{
	if (!s)
		return pf_error_set(err, PF_ENOMEM, "webdataset: out of memory");
	if (l->n == WDS_MAX_PATHS) {
		free(s);
		return pf_error_set(err, PF_ELIMIT, "webdataset: braces expand to more than %d paths",
				    WDS_MAX_PATHS);
	}
	if (l->n == l->cap) {
		size_t c = l->cap ? 2 * l->cap : 16;
		char **v = realloc(l->v, c * sizeof(*v));
		if (!v) {
			free(s);
			return pf_error_set(err, PF_ENOMEM, "webdataset: out of memory");
		}
		l->v = v;
		l->cap = c;
	}
	l->v[l->n++] = s;
	return 0;
}

/* "pre" + alt + "post" for each alternative of the first {...} of pat,
 * recursively; a pattern without braces is itself. */
static int expand(const char *pat, plist *l, pf_error *err)
{
	const char *o = strchr(pat, '{'), *c = o ? strchr(o, '}') : NULL;
	if (!o || !c)
		return plist_add(l, strdup(pat), err);
	size_t pre = (size_t)(o - pat), in = (size_t)(c - o - 1);
	char body[256], *dd;
	if (in >= sizeof(body))
		return pf_error_set(err, PF_ELIMIT, "webdataset: braces too long in '%s'", pat);
	memcpy(body, o + 1, in);
	body[in] = '\0';
	char buf[4096];
	long long a, b;
	int wa, wb, rc;
	if ((dd = strstr(body, "..")) && sscanf(body, "%lld%n", &a, &wa) == 1 && body + wa == dd &&
	    sscanf(dd + 2, "%lld%n", &b, &wb) == 1 && !dd[2 + wb]) {
		int width = (body[0] == '0' && wa > 1) || (dd[2] == '0' && wb > 1) ?
			(wa > wb ? wa : wb) : 0;
		for (long long i = a; a <= b ? i <= b : i >= b; i += a <= b ? 1 : -1) {
			snprintf(buf, sizeof(buf), "%.*s%0*lld%s", (int)pre, pat, width, i, c + 1);
			if ((rc = expand(buf, l, err)))
				return rc;
		}
		return 0;
	}
	for (char *s = body, *e;; s = e + 1) {
		e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		snprintf(buf, sizeof(buf), "%.*s%.*s%s", (int)pre, pat, (int)len, s, c + 1);
		if ((rc = expand(buf, l, err)))
			return rc;
		if (!e)
			return 0;
	}
}

pf_op *pf_op_webdataset_new(const char *const *paths, size_t n, const pf_source_opts *o,
			    pf_error *err)
{
#ifndef HAVE_LIBARCHIVE
	(void)paths;
	(void)n;
	(void)o;
	pf_error_set(err, PF_EINVAL,
		     "webdataset: this pipefeed was built without libarchive (apt-get install libarchive-dev, then reconfigure)");
	return NULL;
#else
	plist l = { 0 };
	int rc = 0;
	for (size_t i = 0; !rc && i < n; i++)
		rc = expand(paths[i], &l, err);
	pf_op *op = rc ? NULL : pf_fsrc_new(&pf_op_webdataset, &wds_class, (const char *const *)l.v,
					    l.n, o, err);
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i]);
	free(l.v);
	return op;
#endif
}

/* The spec's arguments -> a new webdataset op. */
static pf_op *webdataset_build(const pf_arg *a, pf_error *err)
{
	pf_source_opts o;
	pf_source_opts_from_args(a, &o);
	return pf_op_webdataset_new(a[0].sv, (size_t)a[0].n, &o, err);
}

const pf_op_desc pf_op_webdataset = {
	.kind = "webdataset", .traits = PF_OP_SOURCE,
	.help = "samples of WebDataset tar shards (one field per extension)",
	.params = { PF_SOURCE_PARAMS },
	.vt = &pf_fsrc_vt, .build = webdataset_build, .args = pf_fsrc_args,
};
