/*
 * spec.c - pipeline spec strings: the public calls: one line of text <-> builder calls.
 *
 *   shards("data/fmnist-train-*.pfs", cycle=4) | map(decode, par=auto)
 *     | cache | shuffle(10000, seed=7) | batch(64) | prefetch(auto)
 *
 * The op descriptors (ops/pf_op_desc.h) list every op with its arguments'
 * names, types and bounds; the parser, the formatter and the usage text are
 * all driven by them, and each descriptor's build turns resolved arguments
 * into its op.  Nothing here knows what an op does.
 *
 * Work happens in four steps, each on the output of the one before:
 *   lex/parse  text -> a generic tree (calls, values), errors name the
 *              column (spec_parse.c)
 *   resolve    tree -> per-op typed arguments checked against the
 *              descriptors (spec_resolve.c)
 *   build      arguments -> the descriptors' build -> ops appended to the
 *              pipeline (here)
 *   format     arguments -> canonical text (required arguments positional,
 *              optional ones named, in parameter order; spec_format.c)
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_spec_int.h"
#include "pf_pipeline_int.h"

/* ---- public: parse, format, build ------------------------------------- */

int pf_spec_parse(pf_spec **out, const char *text, pf_error *err)
{
	struct parser ps;
	pf_spec *s;
	char d[64];
	int rc;

	if (!out)
		return pf_error_set(err, PF_EINVAL, "pf_spec_parse: NULL output");
	*out = NULL;
	if (!text)
		return pf_error_set(err, PF_EINVAL, "pf_spec_parse: NULL spec");
	s = calloc(1, sizeof(*s));
	if (!s)
		return pf_error_set(err, PF_ENOMEM, "spec: out of memory");
	memset(&ps, 0, sizeof(ps));
	ps.src = text;
	ps.len = strlen(text);
	ps.a = &s->a;
	ps.err = err;
	if (ps.len > SPEC_MAX_LEN) {
		rc = pf_error_set(err, PF_ELIMIT, "spec: %zu bytes long, at most %u allowed",
				  ps.len, SPEC_MAX_LEN);
		goto fail;
	}
	if ((rc = spec_lex(&ps)))
		goto fail;
	if (ps.t.k == T_EOF) {
		rc = spec_err(&ps, ps.t.col, "empty spec: expected an op, e.g. shards(\"data/*.pfs\")");
		goto fail;
	}
	for (;;) {
		struct val *call;
		if (ps.t.k != T_WORD) {
			rc = spec_err(&ps, ps.t.col, "expected an op name%s, got %s",
				      s->nstages ? " after '|'" : "",
				      spec_tok_desc(&ps.t, d, sizeof(d)));
			goto fail;
		}
		if (s->nstages == SPEC_MAX_STAGES) {
			rc = spec_err(&ps, ps.t.col, "more than %d ops", SPEC_MAX_STAGES);
			goto fail;
		}
		if ((rc = spec_parse_value(&ps, &call, ps.t.s)))
			goto fail;
		if ((rc = spec_resolve_stage(&ps, call, &s->st[s->nstages], s->nstages)))
			goto fail;
		s->nstages++;
		if (ps.t.k == T_EOF)
			break;
		if (ps.t.k != T_PIPE) {
			rc = spec_err(&ps, ps.t.col, "expected '|' or end of spec after %s, got %s",
				      call->s, spec_tok_desc(&ps.t, d, sizeof(d)));
			goto fail;
		}
		if ((rc = spec_lex(&ps)))
			goto fail;
	}
	*out = s;
	return 0;
fail:
	pf_spec_free(s);
	return rc;
}

void pf_spec_free(pf_spec *s)
{
	if (!s)
		return;
	spec_arena_free(&s->a);
	free(s);
}

int pf_spec_nstages(const pf_spec *s)
{
	return s ? s->nstages : 0;
}

const char *pf_spec_stage_op(const pf_spec *s, int i)
{
	if (!s || i < 0 || i >= s->nstages)
		return NULL;
	return s->st[i].op->kind;
}

int pf_spec_build(const pf_spec *s, pf_pipeline *p, pf_error *err)
{
	if (!s || !p)
		return pf_error_set(err, PF_EINVAL, "pf_spec_build: NULL argument");
	if (s->nstages > 0 && !(s->st[0].op->traits & PF_OP_SOURCE) && pf_pipeline_nops(p) == 0) {
		char names[256];
		size_t o = 0;
		names[0] = '\0';
		for (int i = 0; pf_op_table[i] && o < sizeof(names); i++)
			if ((pf_op_table[i]->traits & PF_OP_SOURCE) && pf_op_table[i]->build)
				o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s",
						      o ? ", " : "", pf_op_table[i]->kind);
		return pf_error_set(err, PF_ESPEC,
				    "column %d: a pipeline starts with a source (%s), got %s",
				    s->st[0].col, names, s->st[0].op->kind);
	}
	for (int i = 0; i < s->nstages; i++) {
		const struct stage *st = &s->st[i];
		pf_error e = { 0 };
		int rc = pf_pipeline_add_op(p, st->op->build(st->sl, &e), &e);
		if (rc < 0) {
			const char *m = e.code ? e.msg : pf_strerror(rc);
			size_t n = strlen(st->op->kind);
			if (!strncmp(m, st->op->kind, n) && m[n] == ':' && m[n + 1] == ' ')
				m += n + 2;     /* the builder named the op already */
			return pf_error_set(err, rc, "column %d: %s: %s", st->col,
					    st->op->kind, m);
		}
	}
	return 0;
}

int pf_spec_apply(pf_pipeline *p, const char *text, pf_error *err)
{
	pf_spec *s;
	int rc = pf_spec_parse(&s, text, err);
	if (rc)
		return rc;
	rc = pf_spec_build(s, p, err);
	pf_spec_free(s);
	return rc;
}

