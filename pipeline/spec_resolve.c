/*
 * spec_resolve.c - a parsed call -> its op's typed arguments, checked
 * against the parameters of the op's descriptor (types, bounds, required,
 * positional); messages name the column and suggest close names.
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

/* Edit distance (bounded inputs), for "did you mean". */
static int edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int row[64];

	if (la > 63 || lb > 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int diag = row[0];
		row[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int up = row[j];
			int best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

const pf_op_desc *spec_find_op(const char *kind)
{
	const pf_op_desc *d = pf_op_find(kind);
	return d && d->build ? d : NULL;
}

/* The ops a spec may name, "a, b, c". */
static void op_names(char *buf, size_t cap)
{
	size_t o = 0;
	buf[0] = '\0';
	for (int i = 0; pf_op_table[i] && o < cap; i++)
		if (pf_op_table[i]->build)
			o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? ", " : "",
					      pf_op_table[i]->kind);
}

static void param_names(const pf_op_desc *op, char *buf, size_t cap)
{
	size_t o = 0;
	int n = pf_op_nparams(op);
	buf[0] = '\0';
	for (int i = 0; i < n && o < cap; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s%s",
				      i == 0 ? "" : i == n - 1 ? " or " : ", ",
				      op->params[i].name);
}

static const char *type_desc(const pf_param *pr)
{
	switch (pr->type) {
	case PF_PARAM_INT: return "an integer";
	case PF_PARAM_INT_AUTO: return "an integer or auto";
	case PF_PARAM_BOOL: return "true or false";
	case PF_PARAM_STR: return "a string";
	case PF_PARAM_PATHS: return "a quoted path or glob";
	case PF_PARAM_ENUM: return "one of the words listed";
	case PF_PARAM_FN: return "a function name";
	}
	return "a value";
}

static const char *val_desc(const struct val *v, char *buf, size_t cap)
{
	switch (v->kind) {
	case V_INT: snprintf(buf, cap, "integer %s", v->text); break;
	case V_FLOAT: snprintf(buf, cap, "number %s", v->text); break;
	case V_STR: snprintf(buf, cap, "string \"%.32s\"", v->s); break;
	case V_WORD: snprintf(buf, cap, "'%.32s'", v->s); break;
	case V_CALL: snprintf(buf, cap, "call %.32s(...)", v->s); break;
	case V_LIST: snprintf(buf, cap, "a list"); break;
	}
	return buf;
}

/* ---- resolve: tree -> typed slots ------------------------------------- */

static int range_err(struct parser *ps, const struct val *v, const pf_op_desc *op,
		     const pf_param *pr)
{
	return spec_err(ps, v->col, "argument '%s' of %s: %" PRId64
			" is out of range (%" PRId64 " to %" PRId64 ")",
			pr->name, op->kind, v->i, pr->min, pr->max);
}

static int type_err(struct parser *ps, const struct val *v, const pf_op_desc *op,
		    const pf_param *pr)
{
	char d[80];
	return spec_err(ps, v->col, "argument '%s' of %s: expected %s, got %s",
			pr->name, op->kind, type_desc(pr), val_desc(v, d, sizeof(d)));
}

static int add_path(struct parser *ps, pf_arg *sl, const struct val *v,
		    const pf_op_desc *op, const pf_param *pr)
{
	if (v->kind != V_STR && v->kind != V_WORD)
		return type_err(ps, v, op, pr);
	if (!v->s[0])
		return spec_err(ps, v->col, "argument '%s' of %s: empty path", pr->name, op->kind);
	if (sl->n == SPEC_MAX_LIST)
		return spec_err(ps, v->col, "argument '%s' of %s: more than %d paths",
				pr->name, op->kind, SPEC_MAX_LIST);
	const char **sv = (const char **)sl->sv;   /* this parse's own array */
	if (!sv) {
		sv = spec_arena_alloc(ps->a, sizeof(*sv) * SPEC_MAX_LIST);
		if (!sv)
			return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
		sl->sv = sv;
	}
	sv[sl->n++] = v->s;
	return 0;
}

/* Check v against parameter pr and store it in sl. */
static int set_slot(struct parser *ps, const pf_op_desc *op, const pf_param *pr,
		    pf_arg *sl, const struct val *v)
{
	int rc;

	switch (pr->type) {
	case PF_PARAM_INT_AUTO:
		if (v->kind == V_WORD && !strcmp(v->s, "auto")) {
			sl->i = PF_AUTOTUNE;
			break;
		}
		/* fall through */
	case PF_PARAM_INT:
		if (v->kind != V_INT)
			return type_err(ps, v, op, pr);
		if (v->i < pr->min || v->i > pr->max)
			return range_err(ps, v, op, pr);
		sl->i = v->i;
		break;
	case PF_PARAM_BOOL:
		if (v->kind != V_WORD || (strcmp(v->s, "true") && strcmp(v->s, "false")))
			return type_err(ps, v, op, pr);
		sl->i = !strcmp(v->s, "true");
		break;
	case PF_PARAM_STR:
		if (v->kind != V_STR && v->kind != V_WORD)
			return type_err(ps, v, op, pr);
		if (!v->s[0])
			return spec_err(ps, v->col, "argument '%s' of %s: empty string",
					pr->name, op->kind);
		sl->s = v->s;
		break;
	case PF_PARAM_PATHS:
		if (v->kind == V_LIST) {
			if (!v->nitems)
				return spec_err(ps, v->col, "argument '%s' of %s: empty list",
						pr->name, op->kind);
			for (int i = 0; i < v->nitems; i++)
				if ((rc = add_path(ps, sl, v->items[i], op, pr)))
					return rc;
			break;
		}
		if ((rc = add_path(ps, sl, v, op, pr)))
			return rc;
		break;
	case PF_PARAM_ENUM: {
		char list[128];
		size_t o = 0;
		if (v->kind == V_WORD || v->kind == V_STR) {
			for (int i = 0; pr->choices[i]; i++)
				if (!strcmp(pr->choices[i], v->s)) {
					sl->i = i;
					goto done;
				}
		}
		list[0] = '\0';
		for (int i = 0; pr->choices[i] && o < sizeof(list); i++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s",
					      i ? " or " : "", pr->choices[i]);
		char d[80];
		return spec_err(ps, v->col, "argument '%s' of %s: expected %s, got %s",
				pr->name, op->kind, list, val_desc(v, d, sizeof(d)));
	}
	case PF_PARAM_FN: {
		struct sbuf b = { NULL, 0, 0 };
		if (v->kind != V_WORD && v->kind != V_STR && v->kind != V_CALL)
			return type_err(ps, v, op, pr);
		if (!v->s[0] || (v->kind != V_CALL && spec_is_keyword(v->s) && v->kind == V_WORD))
			return type_err(ps, v, op, pr);
		sl->s = v->s;
		sl->fargs = "";
		if (v->kind == V_CALL && v->nargs) {
			spec_sb_args(&b, v->args, v->nargs);       /* measure */
			char *t = spec_arena_alloc(ps->a, b.len + 1);
			if (!t)
				return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
			b.p = t;
			b.cap = b.len + 1;
			b.len = 0;
			spec_sb_args(&b, v->args, v->nargs);
			sl->fargs = t;
		}
		break;
	}
	}
done:
	sl->set = 1;
	sl->col = v->col;
	return 0;
}

int spec_resolve_stage(struct parser *ps, const struct val *call, struct stage *st,
			 int index)
{
	const pf_op_desc *op = spec_find_op(call->s);
	char names[256];
	int np, next_pos = 0, seen_named = 0, rc;

	if (!op) {
		const char *best = NULL;
		int bestd = 3;
		for (int i = 0; pf_op_table[i]; i++) {
			if (!pf_op_table[i]->build)
				continue;
			int d = edit_distance(call->s, pf_op_table[i]->kind);
			if (d < bestd) {
				bestd = d;
				best = pf_op_table[i]->kind;
			}
		}
		if (best)
			return spec_err(ps, call->col, "unknown op '%.64s' (did you mean '%s'?)",
					call->s, best);
		op_names(names, sizeof(names));
		return spec_err(ps, call->col, "unknown op '%.64s' (expected one of: %s)",
				call->s, names);
	}
	if ((op->traits & PF_OP_SOURCE) && index > 0)
		return spec_err(ps, call->col,
				"%s is a source: it can only be the first op of a pipeline",
				op->kind);
	memset(st, 0, sizeof(*st));
	st->op = op;
	st->col = call->col;
	np = pf_op_nparams(op);
	for (int a = 0; a < call->nargs; a++) {
		const struct arg *ar = &call->args[a];
		int k;

		if (!ar->name) {
			if (seen_named)
				return spec_err(ps, ar->col,
						"positional argument after named ones in %s", op->kind);
			/* a variadic parameter takes every further positional */
			if (next_pos > 0 && op->params[next_pos - 1].type == PF_PARAM_PATHS) {
				k = next_pos - 1;
			} else {
				while (next_pos < np && !(op->params[next_pos].flags & PF_PARAM_POS))
					next_pos++;
				if (next_pos >= np) {
					int npos = 0;
					for (int i = 0; i < np; i++)
						npos += !!(op->params[i].flags & PF_PARAM_POS);
					return spec_err(ps, ar->col,
							"too many arguments for %s (it takes %d by position)",
							op->kind, npos);
				}
				k = next_pos++;
			}
		} else {
			seen_named = 1;
			for (k = 0; k < np; k++)
				if (!strcmp(op->params[k].name, ar->name))
					break;
			if (k == np) {
				param_names(op, names, sizeof(names));
				if (np == 0)
					return spec_err(ps, ar->col, "%s takes no arguments", op->kind);
				return spec_err(ps, ar->col,
						"unknown argument '%.64s' for %s (expected %s)",
						ar->name, op->kind, names);
			}
			if (st->sl[k].set)
				return spec_err(ps, ar->col,
						"argument '%s' of %s given twice (first at column %d)",
						ar->name, op->kind, st->sl[k].col);
		}
		int first_col = st->sl[k].set ? st->sl[k].col : ar->v->col;
		if ((rc = set_slot(ps, op, &op->params[k], &st->sl[k], ar->v)))
			return rc;
		st->sl[k].col = first_col;
	}
	for (int k = 0; k < np; k++) {
		const pf_param *pr = &op->params[k];
		if ((pr->flags & PF_PARAM_REQ) && !st->sl[k].set)
			return spec_err(ps, call->has_parens ? call->close_col : call->col +
					(int)strlen(call->s),
					"%s needs argument '%s' (%s)", op->kind, pr->name, pr->help);
		if (!st->sl[k].set)
			st->sl[k].i = pr->def;
	}
	return 0;
}

