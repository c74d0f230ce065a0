/*
 * pf_parse_example.h - what parse_example.c (the argument text, Examples)
 * and parse_seq_example.c (SequenceExamples' feature lists) share: the
 * parsed feature specs and one record's features as found.  Internal to
 * ops/.
 */
#ifndef PF_PARSE_EXAMPLE_H
#define PF_PARSE_EXAMPLE_H

#include "pf_example.h"
#include "pf_maps.h"

#define EX_KEY_MAX 128

/* One feature to read, as its argument gave it. */
typedef struct ex_feat {
	char key[EX_KEY_MAX];
	size_t key_len;
	pf_ex_kind want;
	int var;              /* VarLenFeature (context: T[?]; feature list: T[?,?]) */
	int seq;              /* a feature list of a SequenceExample ((seq) option) */
	int allow_missing;    /* feature list: a missing list is no frames */
	int ragged;           /* a NAME_len field follows: string or frame lengths */
	int fixed_strs;       /* bytes[N..]: count strings, NAME_len of that shape */
	int out, out_len;     /* output field of the values, of the lengths */
	int64_t count;        /* fixed: values expected (a frame's, for a list) */
	int has_def;
	void *def;            /* fixed numbers: count values; bytes: the string */
	size_t def_len;       /* bytes default: its length */
} ex_feat;

typedef struct ex_state {
	int n;
	int sequence;         /* parse_sequence_example: SequenceExample records */
	ex_feat f[PF_MAX_FIELDS];
} ex_state;

/* One record's features as found (the later of a key given twice). */
typedef struct ex_found {
	const ex_state *st;
	pf_ex_feature f[PF_MAX_FIELDS];
	pf_ex_list l[PF_MAX_FIELDS];
	unsigned char has[PF_MAX_FIELDS];
} ex_found;

/* "parse_example: feature 'KEY' (field NAME): M" as PF_EMAP. */
int pf_ex_feat_err(pf_error *err, const ex_feat *f, const pf_schema *out, const char *m);

/* Feature list i of x (st->f[i].seq) into out's fields: the
 * FixedLenSequenceFeature / VarLenFeature meaning (parse_seq_example.c). */
int pf_ex_seq_feature(const ex_found *x, int i, pf_elem *out, pf_error *err);

/* The failed-allocation code of pf_elem_alloc (its err, else PF_ELIMIT). */
static inline int pf_ex_alloc_rc(const pf_error *err)
{
	return err && err->code ? err->code : PF_ELIMIT;
}

#endif /* PF_PARSE_EXAMPLE_H */
