/*
 * spec_parse.c - spec text -> a generic tree of calls and values; errors
 * name the column.  All memory of one parse lives in one arena, freed at
 * once, so error paths cannot leak.
 *
 *   shards("data/fmnist-train-*.pfs", cycle=4) | map(decode, par=auto)
 *     | cache | shuffle(10000, seed=7) | batch(64) | prefetch(auto)
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

void *spec_arena_alloc(struct arena *a, size_t n)
{
	struct arena_blk *b = a->head;

	n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 8192 ? n : 8192;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->next = a->head;
		b->used = 0;
		b->cap = cap;
		a->head = b;
	}
	void *p = (char *)b->data + b->used;
	b->used += n;
	memset(p, 0, n);
	return p;
}

char *spec_arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *d = spec_arena_alloc(a, n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

void spec_arena_free(struct arena *a)
{
	while (a->head) {
		struct arena_blk *b = a->head;
		a->head = b->next;
		free(b);
	}
}

int spec_err(struct parser *ps, int col, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int spec_err(struct parser *ps, int col, const char *fmt, ...)
{
	char msg[PF_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return pf_error_set(ps->err, PF_ESPEC, "column %d: %s", col, msg);
}

int spec_is_word_start(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       c == '/' || c == '.' || c == '~' || c == '*';
}

int spec_is_word_char(int c)
{
	return spec_is_word_start(c) || (c >= '0' && c <= '9') || c == ':' ||
	       c == '-' || c == '+' || c == '?';
}

int spec_is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* A short printable rendering of the token, for "got ..." in messages. */
const char *spec_tok_desc(const struct tok *t, char *buf, size_t cap)
{
	if (t->k == T_EOF)
		return "end of spec";
	size_t n = t->len > 24 ? 24 : t->len;
	size_t o = 0;
	buf[o++] = '\'';
	for (size_t i = 0; i < n && o + 6 < cap; i++) {
		unsigned char c = (unsigned char)t->p[i];
		if (c >= 0x20 && c < 0x7f)
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
	}
	if (n < t->len && o + 4 < cap) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '\'';
	buf[o] = '\0';
	return buf;
}

static int lex_number(struct parser *ps, size_t start)
{
	const char *s = ps->src;
	size_t i = start, end;
	int is_float = 0;
	char tmp[64];

	if (s[i] == '+' || s[i] == '-')
		i++;
	while (i < ps->len && spec_is_digit(s[i]))
		i++;
	if (i < ps->len && s[i] == '.') {
		is_float = 1;
		i++;
		while (i < ps->len && spec_is_digit(s[i]))
			i++;
	}
	if (i < ps->len && (s[i] == 'e' || s[i] == 'E')) {
		size_t j = i + 1;
		if (j < ps->len && (s[j] == '+' || s[j] == '-'))
			j++;
		if (j < ps->len && spec_is_digit(s[j])) {
			is_float = 1;
			i = j;
			while (i < ps->len && spec_is_digit(s[i]))
				i++;
		}
	}
	end = i;
	/* "12x", "1.5.2", "3k": a number glued to more word characters. */
	while (end < ps->len && spec_is_word_char(s[end]))
		end++;
	ps->t.p = s + start;
	ps->t.len = end - start;
	if (end != i || end - start >= sizeof(tmp)) {
		char d[64];
		ps->t.k = T_WORD;       /* for tok_desc: show the text */
		return spec_err(ps, ps->t.col, "bad number %s",
				spec_tok_desc(&ps->t, d, sizeof(d)));
	}
	memcpy(tmp, s + start, end - start);
	tmp[end - start] = '\0';
	errno = 0;
	if (is_float) {
		ps->t.k = T_FLOAT;
		ps->t.f = strtod(tmp, NULL);
		if (errno == ERANGE || !isfinite(ps->t.f))
			return spec_err(ps, ps->t.col, "number '%s' is out of range", tmp);
	} else {
		ps->t.k = T_INT;
		ps->t.i = strtoll(tmp, NULL, 10);
		if (errno == ERANGE)
			return spec_err(ps, ps->t.col, "number '%s' is out of range", tmp);
		ps->t.f = (double)ps->t.i;
	}
	ps->pos = end;
	return 0;
}

static int lex_string(struct parser *ps, size_t start)
{
	const char *s = ps->src;
	char q = s[start];
	size_t i = start + 1, o = 0;
	char *out = spec_arena_alloc(ps->a, ps->len - start + 1);

	if (!out)
		return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
	for (;;) {
		if (i >= ps->len)
			return spec_err(ps, (int)start + 1,
					"unterminated string: expected %c before end of spec", q);
		char c = s[i];
		if (c == q)
			break;
		if (c == '\\') {
			if (i + 1 >= ps->len)
				return spec_err(ps, (int)start + 1,
						"unterminated string: expected %c before end of spec", q);
			char e = s[i + 1];
			switch (e) {
			case '\\': case '"': case '\'': out[o++] = e; break;
			case 'n': out[o++] = '\n'; break;
			case 't': out[o++] = '\t'; break;
			default:
				return spec_err(ps, (int)i + 1,
						"unknown escape '\\%c' in string (expected \\\\, \\\", \\', \\n or \\t)",
						(e >= 0x20 && e < 0x7f) ? e : '?');
			}
			i += 2;
			continue;
		}
		if (c == '\0')
			return spec_err(ps, (int)i + 1, "NUL byte inside string");
		out[o++] = c;
		i++;
	}
	out[o] = '\0';
	ps->t.k = T_STR;
	ps->t.s = out;
	ps->t.p = s + start;
	ps->t.len = i + 1 - start;
	ps->pos = i + 1;
	return 0;
}

/* Read the next token into ps->t.  Returns 0 or PF_ESPEC / PF_ENOMEM. */
int spec_lex(struct parser *ps)
{
	const char *s = ps->src;
	size_t i = ps->pos;

	while (i < ps->len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	memset(&ps->t, 0, sizeof(ps->t));
	ps->t.col = (int)i + 1;
	ps->t.p = s + i;
	ps->t.len = 1;
	if (i >= ps->len) {
		ps->t.k = T_EOF;
		ps->t.len = 0;
		ps->pos = i;
		return 0;
	}
	unsigned char c = (unsigned char)s[i];
	switch (c) {
	case '(': ps->t.k = T_LP; break;
	case ')': ps->t.k = T_RP; break;
	case ',': ps->t.k = T_COMMA; break;
	case '=': ps->t.k = T_EQ; break;
	case '|': ps->t.k = T_PIPE; break;
	case '[': ps->t.k = T_LB; break;
	case ']': ps->t.k = T_RB; break;
	case '"': case '\'':
		return lex_string(ps, i);
	default:
		if (spec_is_digit(c) || ((c == '-' || c == '+' || c == '.') && i + 1 < ps->len &&
				    (spec_is_digit(s[i + 1]) ||
				     (s[i + 1] == '.' && c != '.' && i + 2 < ps->len && spec_is_digit(s[i + 2])))))
			return lex_number(ps, i);
		if (spec_is_word_start(c)) {
			size_t j = i;
			while (j < ps->len && spec_is_word_char(s[j]))
				j++;
			/* a shape glued to a word is part of it: f32[?], u8[28,28] */
			if (j < ps->len && s[j] == '[') {
				size_t k = j + 1;
				while (k < ps->len && (spec_is_digit(s[k]) || s[k] == '?' || s[k] == ',' || s[k] == ' '))
					k++;
				if (k < ps->len && s[k] == ']')
					j = k + 1;
			}
			ps->t.k = T_WORD;
			ps->t.len = j - i;
			ps->t.s = spec_arena_strndup(ps->a, s + i, j - i);
			if (!ps->t.s)
				return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
			ps->pos = j;
			return 0;
		}
		if (c >= 0x20 && c < 0x7f)
			return spec_err(ps, ps->t.col, "unexpected character '%c'", c);
		return spec_err(ps, ps->t.col, "unexpected byte 0x%02x", c);
	}
	ps->pos = i + 1;
	return 0;
}

/* ---- parser: text -> tree --------------------------------------------- */

int spec_parse_value(struct parser *ps, struct val **out, const char *ctx);

/*
 * Parse "(arg, name=value, ...)" after a call's name; the current token is
 * '('.  `ctx` names the call in messages.
 */
static int parse_arglist(struct parser *ps, struct val *call)
{
	struct arg args[SPEC_MAX_ARGS];
	int n = 0, rc;
	char d[64];
	const char *ctx = call->s;

	if ((rc = spec_lex(ps)))
		return rc;
	if (ps->t.k == T_RP) {
		call->close_col = ps->t.col;
		return spec_lex(ps);
	}
	for (;;) {
		struct val *v;
		int col = ps->t.col;

		if (ps->t.k == T_EOF || ps->t.k == T_RP || ps->t.k == T_COMMA ||
		    ps->t.k == T_EQ || ps->t.k == T_PIPE || ps->t.k == T_RB)
			return spec_err(ps, ps->t.col, "expected an argument of %s, got %s",
					ctx, spec_tok_desc(&ps->t, d, sizeof(d)));
		if (n == SPEC_MAX_ARGS)
			return spec_err(ps, col, "too many arguments for %s (at most %d)",
					ctx, SPEC_MAX_ARGS);
		if ((rc = spec_parse_value(ps, &v, ctx)))
			return rc;
		args[n].name = NULL;
		args[n].col = col;
		if (ps->t.k == T_EQ) {
			if (v->kind != V_WORD)
				return spec_err(ps, ps->t.col,
						"expected ',' or ')' after argument of %s, got '='", ctx);
			args[n].name = v->s;
			int eq_col = ps->t.col;
			if ((rc = spec_lex(ps)))
				return rc;
			if (ps->t.k == T_EOF || ps->t.k == T_RP || ps->t.k == T_COMMA ||
			    ps->t.k == T_EQ || ps->t.k == T_PIPE || ps->t.k == T_RB)
				return spec_err(ps, ps->t.col > eq_col ? ps->t.col : eq_col + 1,
						"expected a value after '%s=' in %s, got %s",
						v->s, ctx, spec_tok_desc(&ps->t, d, sizeof(d)));
			if ((rc = spec_parse_value(ps, &v, ctx)))
				return rc;
		}
		args[n++].v = v;
		if (ps->t.k == T_COMMA) {
			if ((rc = spec_lex(ps)))
				return rc;
			continue;
		}
		if (ps->t.k == T_RP) {
			call->close_col = ps->t.col;
			break;
		}
		return spec_err(ps, ps->t.col, "expected ',' or ')' after argument of %s, got %s",
				ctx, spec_tok_desc(&ps->t, d, sizeof(d)));
	}
	call->args = spec_arena_alloc(ps->a, sizeof(struct arg) * (size_t)n);
	if (!call->args)
		return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
	memcpy(call->args, args, sizeof(struct arg) * (size_t)n);
	call->nargs = n;
	return spec_lex(ps);
}

/* value := INT | FLOAT | STR | WORD [ '(' args ')' ] | '[' values ']' */
int spec_parse_value(struct parser *ps, struct val **out, const char *ctx)
{
	struct val *v = spec_arena_alloc(ps->a, sizeof(*v));
	int rc;
	char d[64];

	if (!v)
		return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
	v->col = ps->t.col;
	*out = v;
	switch (ps->t.k) {
	case T_INT:
	case T_FLOAT:
		v->kind = ps->t.k == T_INT ? V_INT : V_FLOAT;
		v->i = ps->t.i;
		v->f = ps->t.f;
		v->text = spec_arena_strndup(ps->a, ps->t.p, ps->t.len);
		if (!v->text)
			return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
		return spec_lex(ps);
	case T_STR:             /* a quoted name may take arguments too */
	case T_WORD:
		v->kind = ps->t.k == T_STR ? V_STR : V_WORD;
		v->s = ps->t.s;
		if ((rc = spec_lex(ps)))
			return rc;
		if (ps->t.k != T_LP)
			return 0;
		if (++ps->depth > SPEC_MAX_DEPTH)
			return spec_err(ps, ps->t.col, "arguments nested too deeply (at most %d levels)",
					SPEC_MAX_DEPTH);
		v->kind = V_CALL;
		v->has_parens = 1;
		rc = parse_arglist(ps, v);
		ps->depth--;
		return rc;
	case T_LB: {
		struct val *items[SPEC_MAX_LIST];
		int n = 0;

		if (++ps->depth > SPEC_MAX_DEPTH)
			return spec_err(ps, ps->t.col, "arguments nested too deeply (at most %d levels)",
					SPEC_MAX_DEPTH);
		v->kind = V_LIST;
		if ((rc = spec_lex(ps)))
			return rc;
		while (ps->t.k != T_RB) {
			if (n == SPEC_MAX_LIST)
				return spec_err(ps, ps->t.col, "list longer than %d items",
						SPEC_MAX_LIST);
			if (ps->t.k == T_EOF || ps->t.k == T_RP || ps->t.k == T_COMMA ||
			    ps->t.k == T_EQ || ps->t.k == T_PIPE)
				return spec_err(ps, ps->t.col, "expected a list item or ']' in %s, got %s",
						ctx, spec_tok_desc(&ps->t, d, sizeof(d)));
			if ((rc = spec_parse_value(ps, &items[n++], ctx)))
				return rc;
			if (ps->t.k == T_COMMA) {
				if ((rc = spec_lex(ps)))
					return rc;
				if (ps->t.k == T_RB)
					return spec_err(ps, ps->t.col,
							"expected a list item after ',' in %s, got ']'", ctx);
			} else if (ps->t.k != T_RB) {
				return spec_err(ps, ps->t.col,
						"expected ',' or ']' after list item in %s, got %s",
						ctx, spec_tok_desc(&ps->t, d, sizeof(d)));
			}
		}
		ps->depth--;
		v->items = spec_arena_alloc(ps->a, sizeof(*v->items) * (size_t)(n ? n : 1));
		if (!v->items)
			return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
		memcpy(v->items, items, sizeof(*v->items) * (size_t)n);
		v->nitems = n;
		return spec_lex(ps);
	}
	default:
		return spec_err(ps, ps->t.col, "expected a value in %s, got %s", ctx,
				spec_tok_desc(&ps->t, d, sizeof(d)));
	}
}

