/*
 * spec_format.c - the way back to text: a parsed spec or a built pipeline
 * in canonical form (required arguments by position, optional ones by
 * name, in parameter order), and the usage text of every op.
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

void spec_sb_putn(struct sbuf *b, const char *s, size_t n)
{
	if (b->len < b->cap) {
		size_t room = b->cap - b->len - 1;
		memcpy(b->p + b->len, s, n < room ? n : room);
		b->p[b->len + (n < room ? n : room)] = '\0';
	}
	b->len += n;
}

void spec_sb_puts(struct sbuf *b, const char *s)
{
	spec_sb_putn(b, s, strlen(s));
}

void spec_sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		spec_sb_putn(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

int spec_is_keyword(const char *s)
{
	return !strcmp(s, "true") || !strcmp(s, "false") || !strcmp(s, "auto");
}

/* Would s read back as one bare word? */
int spec_is_bare_word(const char *s)
{
	if (!s[0] || !spec_is_word_start((unsigned char)s[0]))
		return 0;
	if (s[0] == '.' && spec_is_digit((unsigned char)s[1]))
		return 0;
	for (const char *c = s; *c; c++)
		if (!spec_is_word_char((unsigned char)*c))
			return 0;
	return 1;
}

void spec_sb_quoted(struct sbuf *b, const char *s)
{
	spec_sb_putn(b, "\"", 1);
	for (; *s; s++) {
		switch (*s) {
		case '"': spec_sb_puts(b, "\\\""); break;
		case '\\': spec_sb_puts(b, "\\\\"); break;
		case '\n': spec_sb_puts(b, "\\n"); break;
		case '\t': spec_sb_puts(b, "\\t"); break;
		default: spec_sb_putn(b, s, 1);
		}
	}
	spec_sb_putn(b, "\"", 1);
}

/* Shortest decimal text that reads back as exactly d. */
static void spec_sb_double(struct sbuf *b, double d)
{
	char tmp[40];
	for (int prec = 6; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	/* keep it a float when read back: "1" -> "1.0" */
	if (!strpbrk(tmp, ".eEn"))
		strcat(tmp, ".0");
	spec_sb_puts(b, tmp);
}

void spec_sb_args(struct sbuf *b, const struct arg *args, int n);

static void spec_sb_val(struct sbuf *b, const struct val *v)
{
	switch (v->kind) {
	case V_INT: spec_sb_printf(b, "%" PRId64, v->i); break;
	case V_FLOAT: spec_sb_double(b, v->f); break;
	case V_STR: spec_sb_quoted(b, v->s); break;
	case V_WORD: spec_sb_puts(b, v->s); break;
	case V_CALL:
		if (spec_is_bare_word(v->s) && !spec_is_keyword(v->s))
			spec_sb_puts(b, v->s);
		else
			spec_sb_quoted(b, v->s);
		spec_sb_putn(b, "(", 1);
		spec_sb_args(b, v->args, v->nargs);
		spec_sb_putn(b, ")", 1);
		break;
	case V_LIST:
		spec_sb_putn(b, "[", 1);
		for (int i = 0; i < v->nitems; i++) {
			if (i)
				spec_sb_puts(b, ", ");
			spec_sb_val(b, v->items[i]);
		}
		spec_sb_putn(b, "]", 1);
		break;
	}
}

void spec_sb_args(struct sbuf *b, const struct arg *args, int n)
{
	for (int i = 0; i < n; i++) {
		if (i)
			spec_sb_puts(b, ", ");
		if (args[i].name) {
			spec_sb_puts(b, args[i].name);
			spec_sb_putn(b, "=", 1);
		}
		spec_sb_val(b, args[i].v);
	}
}

static void sb_slot(struct sbuf *b, const pf_param *pr, const pf_arg *sl)
{
	switch (pr->type) {
	case PF_PARAM_INT_AUTO:
		if (sl->i == PF_AUTOTUNE) {
			spec_sb_puts(b, "auto");
			break;
		}
		/* fall through */
	case PF_PARAM_INT:
		spec_sb_printf(b, "%" PRId64, sl->i);
		break;
	case PF_PARAM_BOOL:
		spec_sb_puts(b, sl->i ? "true" : "false");
		break;
	case PF_PARAM_STR:
		spec_sb_quoted(b, sl->s);
		break;
	case PF_PARAM_PATHS:
		for (int i = 0; i < sl->n; i++) {
			if (i)
				spec_sb_puts(b, ", ");
			spec_sb_quoted(b, sl->sv[i]);
		}
		break;
	case PF_PARAM_ENUM:
		spec_sb_puts(b, pr->choices[sl->i]);
		break;
	case PF_PARAM_FN:
		if (spec_is_bare_word(sl->s) && !spec_is_keyword(sl->s))
			spec_sb_puts(b, sl->s);
		else
			spec_sb_quoted(b, sl->s);
		if (sl->fargs[0]) {
			spec_sb_putn(b, "(", 1);
			spec_sb_puts(b, sl->fargs);
			spec_sb_putn(b, ")", 1);
		}
		break;
	}
}

void spec_sb_stage(struct sbuf *b, const pf_op_desc *op, const pf_arg *args)
{
	int np = pf_op_nparams(op), positional = 1, nout = 0;

	spec_sb_puts(b, op->kind);
	for (int k = 0; k < np; k++) {
		const pf_param *pr = &op->params[k];
		const pf_arg *sl = &args[k];
		if (!sl->set) {
			positional = 0;
			continue;
		}
		spec_sb_puts(b, nout++ ? ", " : "(");
		if (!(positional && (pr->flags & PF_PARAM_POS))) {
			positional = 0;
			spec_sb_puts(b, pr->name);
			spec_sb_putn(b, "=", 1);
			if (pr->type == PF_PARAM_PATHS && sl->n > 1) {
				spec_sb_putn(b, "[", 1);
				sb_slot(b, pr, sl);
				spec_sb_putn(b, "]", 1);
				continue;
			}
		}
		sb_slot(b, pr, sl);
	}
	if (nout)
		spec_sb_putn(b, ")", 1);
}

size_t pf_spec_format(const pf_spec *s, char *buf, size_t cap)
{
	struct sbuf b = { buf, cap, 0 };

	if (buf && cap)
		buf[0] = '\0';
	else
		b.cap = 0;
	for (int i = 0; s && i < s->nstages; i++) {
		if (i)
			spec_sb_puts(&b, " | ");
		spec_sb_stage(&b, s->st[i].op, s->st[i].sl);
	}
	return b.len;
}

int pf_spec_normalize(const char *text, char *buf, size_t cap, pf_error *err)
{
	pf_spec *s;
	int rc = pf_spec_parse(&s, text, err);
	if (rc)
		return rc;
	size_t need = pf_spec_format(s, buf, cap);
	pf_spec_free(s);
	if (need >= cap)
		return pf_error_set(err, PF_ELIMIT, "spec: canonical text needs %zu bytes, buffer has %zu",
				    need + 1, cap);
	return 0;
}

size_t pf_spec_usage(char *buf, size_t cap)
{
	struct sbuf b = { buf, cap, 0 };

	if (buf && cap)
		buf[0] = '\0';
	else
		b.cap = 0;
	for (int i = 0; pf_op_table[i]; i++) {
		const pf_op_desc *op = pf_op_table[i];
		int np = pf_op_nparams(op);
		if (!op->build)
			continue;       /* no spec form */
		spec_sb_puts(&b, op->kind);
		if (np)
			spec_sb_putn(&b, "(", 1);
		for (int k = 0; k < np; k++) {
			const pf_param *pr = &op->params[k];
			if (k)
				spec_sb_puts(&b, ", ");
			if (!(pr->flags & PF_PARAM_REQ))
				spec_sb_putn(&b, "[", 1);
			if (!(pr->flags & PF_PARAM_POS))
				spec_sb_printf(&b, "%s=", pr->name);
			spec_sb_puts(&b, pr->type == PF_PARAM_INT_AUTO ? "N|auto" :
				    pr->type == PF_PARAM_BOOL ? "true|false" :
				    pr->type == PF_PARAM_ENUM ? "WORD" :
				    pr->type == PF_PARAM_PATHS ? "\"PATH\"..." :
				    pr->type == PF_PARAM_STR ? "\"STR\"" :
				    pr->type == PF_PARAM_FN ? "FN" : "N");
			if (pr->flags & PF_PARAM_POS)
				spec_sb_printf(&b, " (%s)", pr->name);
			if (!(pr->flags & PF_PARAM_REQ))
				spec_sb_putn(&b, "]", 1);
		}
		if (np)
			spec_sb_putn(&b, ")", 1);
		spec_sb_puts(&b, "\n    ");
		spec_sb_puts(&b, op->help);
		spec_sb_putn(&b, "\n", 1);
	}
	return b.len;
}

int pf_pipeline_format(const pf_pipeline *p, char *buf, size_t cap, pf_error *err)
{
	struct sbuf b = { buf, cap, 0 };

	if (!p)
		return pf_error_set(err, PF_EINVAL, "pf_pipeline_format: NULL pipeline");
	if (buf && cap)
		buf[0] = '\0';
	else
		b.cap = 0;
	for (int i = 0; i < p->nops; i++) {
		const pf_op *op = p->ops[i];
		pf_arg a[PF_OP_MAX_PARAMS];
		int rc;
		memset(a, 0, sizeof(a));
		if (!op->desc->build)
			return pf_error_set(err, PF_EINVAL, "%s: has no spec form", op->label);
		if (op->desc->args && (rc = op->desc->args(op, a, err)))
			return rc;
		if (i)
			spec_sb_puts(&b, " | ");
		spec_sb_stage(&b, op->desc, a);
	}
	if (buf && b.len >= cap)
		return pf_error_set(err, PF_ELIMIT, "pipeline: its spec needs %zu bytes, buffer has %zu",
				    b.len + 1, cap);
	return 0;
}
