/* example.c - a checked reader of tf.train.Example and SequenceExample;
 * see pf_example.h. */
#include "config.h"

#include <string.h>

#include "pf_example.h"

/* Wire types of the protobuf encoding. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* A cursor over one message's bytes; base is where offsets count from. */
typedef struct rd {
	const unsigned char *p, *end, *base;
} rd;

/* One field: its number, wire type, and value (vint for varint/fixed
 * types, val/vlen for a length-delimited one). */
typedef struct field {
	uint32_t num;
	int wt;
	uint64_t vint;
	const unsigned char *val;
	size_t vlen;
} field;

static int bad(const rd *r, const unsigned char *at, const char *what, pf_error *err)
{
	if (!r->base)
		return pf_error_set(err, PF_ECORRUPT, "Example: %s inside a feature", what);
	return pf_error_set(err, PF_ECORRUPT, "Example: %s at byte %td", what, at - r->base);
}

/* A varint of at most 10 bytes (protobuf's limit); 0 or -1 when it runs
 * past the end or is longer. */
static int varint(const unsigned char **pp, const unsigned char *end, uint64_t *v)
{
	const unsigned char *p = *pp;
	uint64_t x = 0;
	for (int s = 0; s < 70; s += 7) {
		if (p == end)
			return -1;
		unsigned char c = *p++;
		x |= (uint64_t)(c & 0x7f) << s;
		if (!(c & 0x80)) {
			*v = x;
			*pp = p;
			return 0;
		}
	}
	return -1;
}

/* The next field of r, checked against the bytes left.  Returns 1 (a
 * field), 0 (end of message) or PF_ECORRUPT. */
static int next_field(rd *r, field *f, pf_error *err)
{
	const unsigned char *at = r->p;
	uint64_t tag, n;
	if (r->p == r->end)
		return 0;
	if (varint(&r->p, r->end, &tag))
		return bad(r, at, "bad field tag", err);
	f->wt = (int)(tag & 7);
	if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
		return bad(r, at, "bad field number", err);
	f->num = (uint32_t)(tag >> 3);
	f->val = NULL;
	f->vlen = 0;
	switch (f->wt) {
	case WT_VARINT:
		if (varint(&r->p, r->end, &f->vint))
			return bad(r, at, "bad varint", err);
		return 1;
	case WT_I64:
	case WT_I32:
		n = f->wt == WT_I64 ? 8 : 4;
		if ((uint64_t)(r->end - r->p) < n)
			return bad(r, at, "truncated fixed-size value", err);
		f->vint = 0;
		for (uint64_t i = n; i-- > 0;)
			f->vint = f->vint << 8 | r->p[i];
		r->p += n;
		return 1;
	case WT_LEN:
		if (varint(&r->p, r->end, &n))
			return bad(r, at, "bad length", err);
		if (n > (uint64_t)(r->end - r->p))
			return bad(r, at, "length runs past the end of its message", err);
		f->val = r->p;
		f->vlen = (size_t)n;
		r->p += n;
		return 1;
	default: /* 3, 4: groups (not used by Example); 6, 7: invalid */
		return bad(r, at, f->wt == 3 || f->wt == 4 ? "group wire type" : "bad wire type",
			   err);
	}
}

/* One map entry (key = 1, value = 2): the key and the Feature's pieces. */
static int read_entry(const rd *outer, const unsigned char *p, size_t len, const char **key,
		      size_t *key_len, pf_ex_feature *f, pf_error *err)
{
	rd r = { p, p + len, outer->base };
	field fd;
	int rc;
	*key = (const char *)p; /* an entry without a key: "" (proto3's default) */
	*key_len = 0;
	memset(f, 0, sizeof(*f));
	while ((rc = next_field(&r, &fd, err)) == 1) {
		if (fd.wt != WT_LEN)
			continue; /* a known number with another wire type: unknown */
		if (fd.num == 1) {
			*key = (const char *)fd.val;
			*key_len = fd.vlen;
		} else if (fd.num == 2) {
			if (f->nseg == PF_EX_MAX_SEG)
				return pf_error_set(err, PF_ELIMIT,
						    "Example: a feature's value given more than %d times in one entry at byte %td",
						    PF_EX_MAX_SEG, fd.val - r.base);
			f->seg[f->nseg] = fd.val;
			f->seg_len[f->nseg++] = fd.vlen;
		}
	}
	return rc;
}

/* The entries of one Features message (its pieces merge, so each entry is
 * one more map entry): fn for each.  Returns 0, an error or fn's code. */
static int walk_features(const field *fd, const unsigned char *base, pf_ex_entry_fn fn,
			 void *user, pf_error *err)
{
	rd fs = { fd->val, fd->val + fd->vlen, base };
	field fe;
	int rc;
	while ((rc = next_field(&fs, &fe, err)) == 1) {
		if (fe.num != 1 || fe.wt != WT_LEN)
			continue;
		const char *key;
		size_t klen;
		pf_ex_feature f;
		if ((rc = read_entry(&fs, fe.val, fe.vlen, &key, &klen, &f, err)))
			return rc;
		if ((rc = fn(user, key, klen, &f)))
			return rc;
	}
	return rc;
}

/* The entries of one FeatureLists message: key = 1, value (a FeatureList)
 * = 2.  TensorFlow's parser rejects an entry that gives its value twice,
 * and so does this one. */
static int walk_lists(const field *fd, const unsigned char *base, pf_ex_list_fn fn,
		      void *user, pf_error *err)
{
	rd fs = { fd->val, fd->val + fd->vlen, base };
	field fe;
	int rc;
	while ((rc = next_field(&fs, &fe, err)) == 1) {
		if (fe.num != 1 || fe.wt != WT_LEN)
			continue;
		rd r = { fe.val, fe.val + fe.vlen, base };
		field fv;
		const char *key = (const char *)fe.val;
		size_t klen = 0;
		pf_ex_list l = { NULL, 0, base };
		int nval = 0;
		while ((rc = next_field(&r, &fv, err)) == 1) {
			if (fv.wt != WT_LEN)
				continue;
			if (fv.num == 1) {
				key = (const char *)fv.val;
				klen = fv.vlen;
			} else if (fv.num == 2) {
				if (nval++)
					return bad(&r, fv.val, "a feature list given twice in one map entry",
						   err);
				l.p = fv.val;
				l.len = fv.vlen;
			}
		}
		if (rc || (rc = fn(user, key, klen, &l)))
			return rc;
	}
	return rc;
}

int pf_example_walk(const void *buf, size_t len, pf_ex_entry_fn fn, void *user,
		    pf_error *err)
{
	return pf_seq_example_walk(buf, len, fn, NULL, user, err);
}

int pf_seq_example_walk(const void *buf, size_t len, pf_ex_entry_fn fn, pf_ex_list_fn list_fn,
			void *user, pf_error *err)
{
	const unsigned char *b = buf ? buf : (const unsigned char *)"";
	rd ex = { b, b + len, b };
	field fd;
	int rc;
	while ((rc = next_field(&ex, &fd, err)) == 1) {
		if (fd.wt != WT_LEN)
			continue;
		if (fd.num == 1)
			rc = walk_features(&fd, b, fn, user, err);
		else if (fd.num == 2 && list_fn)
			rc = walk_lists(&fd, b, list_fn, user, err);
		if (rc)
			return rc;
	}
	return rc;
}

int pf_ex_list_next(const pf_ex_list *l, size_t *pos, pf_ex_feature *frame, pf_error *err)
{
	if (!l->p || *pos >= l->len)
		return 0;
	rd r = { l->p + *pos, l->p + l->len, l->base };
	field fd;
	int rc;
	while ((rc = next_field(&r, &fd, err)) == 1) {
		*pos = (size_t)(r.p - l->p);
		if (fd.num != 1 || fd.wt != WT_LEN)
			continue;
		memset(frame, 0, sizeof(*frame));
		frame->nseg = 1;
		frame->seg[0] = fd.val;
		frame->seg_len[0] = fd.vlen;
		return 1;
	}
	*pos = l->len;
	return rc;
}

/* Values in one list message of kind k (checked), added to *count. */
static int count_list(pf_ex_kind k, const unsigned char *p, size_t len, int64_t *count,
		      pf_error *err)
{
	rd r = { p, p + len, NULL };
	field fd;
	int rc;
	while ((rc = next_field(&r, &fd, err)) == 1) {
		if (fd.num != 1)
			continue;
		if (k == PF_EX_BYTES && fd.wt == WT_LEN) {
			(*count)++;
		} else if (k == PF_EX_FLOAT && fd.wt == WT_I32) {
			(*count)++;
		} else if (k == PF_EX_FLOAT && fd.wt == WT_LEN) {
			if (fd.vlen % 4)
				return pf_error_set(err, PF_ECORRUPT,
						    "Example: packed float_list of %zu bytes (not a multiple of 4)",
						    fd.vlen);
			*count += (int64_t)(fd.vlen / 4);
		} else if (k == PF_EX_INT64 && fd.wt == WT_VARINT) {
			(*count)++;
		} else if (k == PF_EX_INT64 && fd.wt == WT_LEN) {
			const unsigned char *q = fd.val, *e = fd.val + fd.vlen;
			uint64_t v;
			while (q < e) {
				if (varint(&q, e, &v))
					return pf_error_set(err, PF_ECORRUPT,
							    "Example: bad varint in packed int64_list");
				(*count)++;
			}
		}
		/* field 1 with another wire type: an unknown field, skipped */
	}
	return rc; /* 0, or the error next_field set */
}

int pf_ex_feature_info(const pf_ex_feature *f, pf_ex_info *info, pf_error *err)
{
	memset(info, 0, sizeof(*info));
	for (int s = 0; s < f->nseg; s++) {
		rd r = { f->seg[s], f->seg[s] + f->seg_len[s], NULL };
		const unsigned char *at = r.p;
		field fd;
		int rc;
		while ((rc = next_field(&r, &fd, err)) == 1) {
			if (fd.num < 1 || fd.num > 3 || fd.wt != WT_LEN) {
				at = r.p;
				continue;
			}
			if ((pf_ex_kind)fd.num != info->kind) { /* oneof: the last kind wins */
				info->kind = (pf_ex_kind)fd.num;
				info->count = 0;
				info->seg = s;
				info->off = (size_t)(at - f->seg[s]);
			}
			if ((rc = count_list(info->kind, fd.val, fd.vlen, &info->count, err)))
				return rc;
			at = r.p;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

static uint64_t le32(const unsigned char *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

/* Copy the values of one list message into dst from index *n on. */
static void read_list(pf_ex_kind k, const unsigned char *p, size_t len, void *dst,
		      int64_t *n, int64_t max)
{
	rd r = { p, p + len, NULL };
	field fd;
	while (*n < max && next_field(&r, &fd, NULL) == 1) {
		if (fd.num != 1)
			continue;
		if (k == PF_EX_BYTES && fd.wt == WT_LEN) {
			((pf_ex_bytes *)dst)[(*n)++] = (pf_ex_bytes){ fd.val, fd.vlen };
		} else if (k == PF_EX_FLOAT && (fd.wt == WT_I32 || fd.wt == WT_LEN)) {
			const unsigned char *q = fd.wt == WT_LEN ? fd.val : NULL;
			size_t m = fd.wt == WT_LEN ? fd.vlen / 4 : 1;
			for (size_t i = 0; i < m && *n < max; i++) {
				uint32_t u = (uint32_t)(q ? le32(q + 4 * i) : fd.vint);
				float x;
				memcpy(&x, &u, sizeof(x));
				((float *)dst)[(*n)++] = x;
			}
		} else if (k == PF_EX_INT64 && fd.wt == WT_VARINT) {
			((int64_t *)dst)[(*n)++] = (int64_t)fd.vint;
		} else if (k == PF_EX_INT64 && fd.wt == WT_LEN) {
			const unsigned char *q = fd.val, *e = fd.val + fd.vlen;
			uint64_t v;
			while (q < e && *n < max && !varint(&q, e, &v))
				((int64_t *)dst)[(*n)++] = (int64_t)v;
		}
	}
}

void pf_ex_feature_read(const pf_ex_feature *f, const pf_ex_info *info, void *dst)
{
	int64_t n = 0;
	if (info->kind == PF_EX_NONE)
		return;
	for (int s = info->seg; s < f->nseg && n < info->count; s++) {
		size_t off = s == info->seg ? info->off : 0;
		rd r = { f->seg[s] + off, f->seg[s] + f->seg_len[s], NULL };
		field fd;
		while (n < info->count && next_field(&r, &fd, NULL) == 1)
			if (fd.num == (uint32_t)info->kind && fd.wt == WT_LEN)
				read_list(info->kind, fd.val, fd.vlen, dst, &n, info->count);
	}
}

/* Each byte string of a checked bytes feature, in order, to fn (at most
 * info->count of them). */
static void each_bytes(const pf_ex_feature *f, const pf_ex_info *info,
		       void (*fn)(void *u, int64_t k, const unsigned char *p, size_t len), void *u)
{
	int64_t n = 0;
	if (info->kind != PF_EX_BYTES)
		return;
	for (int s = info->seg; s < f->nseg && n < info->count; s++) {
		size_t off = s == info->seg ? info->off : 0;
		rd r = { f->seg[s] + off, f->seg[s] + f->seg_len[s], NULL };
		field fd;
		while (n < info->count && next_field(&r, &fd, NULL) == 1) {
			if (fd.num != PF_EX_BYTES || fd.wt != WT_LEN)
				continue;
			rd l = { fd.val, fd.val + fd.vlen, NULL };
			field fv;
			while (n < info->count && next_field(&l, &fv, NULL) == 1)
				if (fv.num == 1 && fv.wt == WT_LEN)
					fn(u, n++, fv.val, fv.vlen);
		}
	}
}

struct lens_acc {
	int64_t *lens;
	int64_t total;
};

static void acc_len(void *u, int64_t k, const unsigned char *p, size_t len)
{
	struct lens_acc *a = u;
	(void)p;
	if (a->lens)
		a->lens[k] = (int64_t)len;
	a->total += (int64_t)len;
}

int64_t pf_ex_bytes_lengths(const pf_ex_feature *f, const pf_ex_info *info, int64_t *lens)
{
	struct lens_acc a = { lens, 0 };
	each_bytes(f, info, acc_len, &a);
	return a.total;
}

static void join_one(void *u, int64_t k, const unsigned char *p, size_t len)
{
	unsigned char **d = u;
	(void)k;
	if (len)
		memcpy(*d, p, len);
	*d += len;
}

void pf_ex_bytes_join(const pf_ex_feature *f, const pf_ex_info *info, void *dst)
{
	unsigned char *d = dst;
	each_bytes(f, info, join_one, &d);
}

const char *pf_ex_kind_name(pf_ex_kind k)
{
	switch (k) {
	case PF_EX_BYTES: return "bytes_list";
	case PF_EX_FLOAT: return "float_list";
	case PF_EX_INT64: return "int64_list";
	default: return "no list";
	}
}
