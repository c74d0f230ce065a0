/*
 * parse_seq_example.c - the feature lists of parse_sequence_example: a
 * tf.train.SequenceExample's feature_lists entry (one Feature a frame) ->
 * output fields, with tf.io.parse_sequence_example's meaning:
 *
 *   T[?, D..](seq)  FixedLenSequenceFeature([D..], T): every frame holds
 *                   prod(D) values; out T[?, D..] (frames first)
 *   T[?](seq)       FixedLenSequenceFeature([], T): one value a frame
 *   bytes[?](seq)   FixedLenSequenceFeature([], tf.string): one string a
 *                   frame; out the strings joined (u8[?]) and NAME_len
 *                   (i64[?], each frame's string length)
 *   T[?, ?](seq)    VarLenFeature(T): any number of values a frame; out the
 *                   values in frame order (T[?]) and NAME_len (i64[?], each
 *                   frame's count), the values and row lengths of
 *                   TensorFlow's ragged form
 *
 * A missing list fails the sample unless allow_missing=true (then no
 * frames) or it is a [?, ?] list (empty); a frame of another list type, or
 * of a fixed list with a wrong count, fails it naming the list and frame.
 * A frame with no list set holds no values (as in TensorFlow).  The
 * argument text and the context features are parse_example.c's.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "pf_parse_example.h"

/* What the first pass over a list found. */
typedef struct seq_count {
	int64_t frames, values, bytes;
} seq_count;

/* Check every frame of list i against its spec and count it. */
static int seq_check(const ex_found *x, int i, const pf_schema *s, seq_count *c,
		     pf_error *err)
{
	const ex_feat *f = &x->st->f[i];
	pf_ex_feature fr;
	pf_ex_info info;
	pf_error e = { 0 };
	size_t pos = 0;
	char m[PF_ERROR_MSG_MAX / 2];
	int rc;
	memset(c, 0, sizeof(*c));
	while ((rc = pf_ex_list_next(&x->l[i], &pos, &fr, &e)) == 1) {
		if ((rc = pf_ex_feature_info(&fr, &info, &e))) {
			snprintf(m, sizeof(m), "frame %lld: %.200s", (long long)c->frames, e.msg);
			return pf_ex_feat_err(err, f, s, m);
		}
		if (info.kind != PF_EX_NONE && info.kind != f->want) {
			snprintf(m, sizeof(m), "frame %lld is a %s, expected a %s",
				 (long long)c->frames, pf_ex_kind_name(info.kind),
				 pf_ex_kind_name(f->want));
			return pf_ex_feat_err(err, f, s, m);
		}
		if (!f->var && info.count != f->count) {
			snprintf(m, sizeof(m), "frame %lld holds %lld %s, expected %lld",
				 (long long)c->frames, (long long)info.count,
				 f->want == PF_EX_BYTES ? "byte strings" : "values",
				 (long long)f->count);
			return pf_ex_feat_err(err, f, s, m);
		}
		c->frames++;
		c->values += info.count;
		if (f->want == PF_EX_BYTES)
			c->bytes += pf_ex_bytes_lengths(&fr, &info, NULL);
	}
	if (rc < 0)
		return pf_ex_feat_err(err, f, s, e.msg);
	return 0;
}

int pf_ex_seq_feature(const ex_found *x, int i, pf_elem *out, pf_error *err)
{
	const ex_feat *f = &x->st->f[i];
	seq_count c = { 0, 0, 0 };
	int rc;
	if (!x->has[i] && !f->var && !f->allow_missing)
		return pf_ex_feat_err(err, f, out->schema,
				      "required but not in the SequenceExample's feature_lists (allow_missing=true reads it as no frames)");
	if (x->has[i] && (rc = seq_check(x, i, out->schema, &c, err)))
		return rc;
	/* the outputs: NAME_len first (its frames), then the values */
	int64_t *lens = NULL;
	if (f->ragged && !(lens = pf_elem_alloc(out, f->out_len, c.frames, err)))
		return pf_ex_alloc_rc(err);
	int64_t items = f->want == PF_EX_BYTES ? c.bytes : f->var ? c.values : c.frames;
	unsigned char *d = pf_elem_alloc(out, f->out, items, err);
	if (!d)
		return pf_ex_alloc_rc(err);
	size_t esz = f->want == PF_EX_BYTES ? 1 : f->want == PF_EX_FLOAT ? 4 : 8;
	pf_ex_feature fr;
	pf_ex_info info;
	size_t pos = 0;
	for (int64_t k = 0; k < c.frames && pf_ex_list_next(&x->l[i], &pos, &fr, NULL) == 1; k++) {
		if (pf_ex_feature_info(&fr, &info, NULL))
			break; /* checked in seq_check: cannot happen */
		if (f->want == PF_EX_BYTES) {
			int64_t n = pf_ex_bytes_lengths(&fr, &info, NULL);
			pf_ex_bytes_join(&fr, &info, d);
			lens[k] = n;
			d += n;
			continue;
		}
		pf_ex_feature_read(&fr, &info, d);
		d += (size_t)info.count * esz;
		if (lens)
			lens[k] = info.count;
	}
	return 0;
}
