/*
 * spec.c - pipeline spec strings: one line of text <-> builder calls.
 *
 *   shards("data/fmnist-train-*.pfs", cycle=4) | map(decode, par=auto)
 *     | cache | shuffle(10000, seed=7) | batch(64) | prefetch(auto)
 *
 * One table (op_table below) lists every op with its arguments' names, types
 * and bounds; the parser, the formatter and the usage text are all driven by
 * it, so adding an op is one table entry plus the small function that turns
 * its resolved arguments into its builder call.  Nothing here knows what an
 * op does.
 *
 * Work happens in four steps, each on the output of the one before:
 *   lex/parse  text -> a generic tree (calls, values), errors name the column
 *   resolve    tree -> per-op typed argument slots checked against the table
 *   apply      slots -> pf_pipeline builder calls
 *   format     slots -> canonical text (required arguments positional,
 *              optional ones named, in table order)
 * All memory of one parse lives in one arena, freed at once, so error paths
 * cannot leak.  Every count and depth is bounded (SPEC_MAX_*), so hostile
 * input costs at most a small multiple of its length.
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

#include "pf_error.h"
#include "pipefeed.h"
#include "pf_spec.h"
#include "pf_maps.h"

#define SPEC_MAX_LEN (64u << 10) /* bytes of spec text */
#define SPEC_MAX_STAGES 64
#define SPEC_MAX_ARGS 16         /* per call */
#define SPEC_MAX_LIST 64         /* items of one [list] */
#define SPEC_MAX_DEPTH 4         /* calls/lists nested inside a stage */
#define SPEC_MAX_PARAMS 10       /* parameters of one op */

/* ---- arena: every allocation of one parse, freed together ------------- */

struct arena_blk {
	struct arena_blk *next;
	size_t used, cap;
	max_align_t data[];
};

struct arena {
	struct arena_blk *head;
};

static void *arena_alloc(struct arena *a, size_t n)
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

static char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *d = arena_alloc(a, n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static void arena_free(struct arena *a)
{
	while (a->head) {
		struct arena_blk *b = a->head;
		a->head = b->next;
		free(b);
	}
}

/* ---- the generic tree ------------------------------------------------- */

enum val_kind { V_INT, V_FLOAT, V_STR, V_WORD, V_CALL, V_LIST };

struct val;

struct arg {
	const char *name;       /* NULL: positional */
	int col;                /* column of the name, or of the value */
	struct val *v;
};

struct val {
	enum val_kind kind;
	int col;
	int64_t i;              /* V_INT */
	double f;               /* V_INT, V_FLOAT */
	const char *s;          /* V_STR, V_WORD, V_CALL (the name) */
	const char *text;       /* the source text of a number, for messages */
	struct arg *args;       /* V_CALL */
	int nargs;
	int has_parens;         /* V_CALL written with "(...)" */
	int close_col;          /* V_CALL: column of ')' */
	struct val **items;     /* V_LIST */
	int nitems;
};

/* ---- lexer ------------------------------------------------------------ */

enum tok_kind {
	T_EOF, T_WORD, T_INT, T_FLOAT, T_STR, T_LP, T_RP, T_COMMA, T_EQ,
	T_PIPE, T_LB, T_RB
};

struct tok {
	enum tok_kind k;
	int col;
	const char *p;          /* source text */
	size_t len;
	int64_t i;
	double f;
	const char *s;          /* T_STR (unescaped) and T_WORD, in the arena */
};

struct parser {
	const char *src;
	size_t len, pos;
	struct arena *a;
	pf_error *err;
	struct tok t;           /* the current token */
	int depth;
};

static int spec_err(struct parser *ps, int col, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int spec_err(struct parser *ps, int col, const char *fmt, ...)
{
	char msg[PF_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return pf_error_set(ps->err, PF_ESPEC, "column %d: %s", col, msg);
}

static int is_word_start(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       c == '/' || c == '.' || c == '~' || c == '*';
}

static int is_word_char(int c)
{
	return is_word_start(c) || (c >= '0' && c <= '9') || c == ':' ||
	       c == '-' || c == '+' || c == '?';
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* A short printable rendering of the token, for "got ..." in messages. */
static const char *tok_desc(const struct tok *t, char *buf, size_t cap)
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
	while (i < ps->len && is_digit(s[i]))
		i++;
	if (i < ps->len && s[i] == '.') {
		is_float = 1;
		i++;
		while (i < ps->len && is_digit(s[i]))
			i++;
	}
	if (i < ps->len && (s[i] == 'e' || s[i] == 'E')) {
		size_t j = i + 1;
		if (j < ps->len && (s[j] == '+' || s[j] == '-'))
			j++;
		if (j < ps->len && is_digit(s[j])) {
			is_float = 1;
			i = j;
			while (i < ps->len && is_digit(s[i]))
				i++;
		}
	}
	end = i;
	/* "12x", "1.5.2", "3k": a number glued to more word characters. */
	while (end < ps->len && is_word_char(s[end]))
		end++;
	ps->t.p = s + start;
	ps->t.len = end - start;
	if (end != i || end - start >= sizeof(tmp)) {
		char d[64];
		ps->t.k = T_WORD;       /* for tok_desc: show the text */
		return spec_err(ps, ps->t.col, "bad number %s",
				tok_desc(&ps->t, d, sizeof(d)));
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
	char *out = arena_alloc(ps->a, ps->len - start + 1);

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
static int lex(struct parser *ps)
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
		if (is_digit(c) || ((c == '-' || c == '+' || c == '.') && i + 1 < ps->len &&
				    (is_digit(s[i + 1]) ||
				     (s[i + 1] == '.' && c != '.' && i + 2 < ps->len && is_digit(s[i + 2])))))
			return lex_number(ps, i);
		if (is_word_start(c)) {
			size_t j = i;
			while (j < ps->len && is_word_char(s[j]))
				j++;
			ps->t.k = T_WORD;
			ps->t.len = j - i;
			ps->t.s = arena_strndup(ps->a, s + i, j - i);
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

static int parse_value(struct parser *ps, struct val **out, const char *ctx);

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

	if ((rc = lex(ps)))
		return rc;
	if (ps->t.k == T_RP) {
		call->close_col = ps->t.col;
		return lex(ps);
	}
	for (;;) {
		struct val *v;
		int col = ps->t.col;

		if (ps->t.k == T_EOF || ps->t.k == T_RP || ps->t.k == T_COMMA ||
		    ps->t.k == T_EQ || ps->t.k == T_PIPE || ps->t.k == T_RB)
			return spec_err(ps, ps->t.col, "expected an argument of %s, got %s",
					ctx, tok_desc(&ps->t, d, sizeof(d)));
		if (n == SPEC_MAX_ARGS)
			return spec_err(ps, col, "too many arguments for %s (at most %d)",
					ctx, SPEC_MAX_ARGS);
		if ((rc = parse_value(ps, &v, ctx)))
			return rc;
		args[n].name = NULL;
		args[n].col = col;
		if (ps->t.k == T_EQ) {
			if (v->kind != V_WORD)
				return spec_err(ps, ps->t.col,
						"expected ',' or ')' after argument of %s, got '='", ctx);
			args[n].name = v->s;
			int eq_col = ps->t.col;
			if ((rc = lex(ps)))
				return rc;
			if (ps->t.k == T_EOF || ps->t.k == T_RP || ps->t.k == T_COMMA ||
			    ps->t.k == T_EQ || ps->t.k == T_PIPE || ps->t.k == T_RB)
				return spec_err(ps, ps->t.col > eq_col ? ps->t.col : eq_col + 1,
						"expected a value after '%s=' in %s, got %s",
						v->s, ctx, tok_desc(&ps->t, d, sizeof(d)));
			if ((rc = parse_value(ps, &v, ctx)))
				return rc;
		}
		args[n++].v = v;
		if (ps->t.k == T_COMMA) {
			if ((rc = lex(ps)))
				return rc;
			continue;
		}
		if (ps->t.k == T_RP) {
			call->close_col = ps->t.col;
			break;
		}
		return spec_err(ps, ps->t.col, "expected ',' or ')' after argument of %s, got %s",
				ctx, tok_desc(&ps->t, d, sizeof(d)));
	}
	call->args = arena_alloc(ps->a, sizeof(struct arg) * (size_t)n);
	if (!call->args)
		return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
	memcpy(call->args, args, sizeof(struct arg) * (size_t)n);
	call->nargs = n;
	return lex(ps);
}

/* value := INT | FLOAT | STR | WORD [ '(' args ')' ] | '[' values ']' */
static int parse_value(struct parser *ps, struct val **out, const char *ctx)
{
	struct val *v = arena_alloc(ps->a, sizeof(*v));
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
		v->text = arena_strndup(ps->a, ps->t.p, ps->t.len);
		if (!v->text)
			return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
		return lex(ps);
	case T_STR:             /* a quoted name may take arguments too */
	case T_WORD:
		v->kind = ps->t.k == T_STR ? V_STR : V_WORD;
		v->s = ps->t.s;
		if ((rc = lex(ps)))
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
		if ((rc = lex(ps)))
			return rc;
		while (ps->t.k != T_RB) {
			if (n == SPEC_MAX_LIST)
				return spec_err(ps, ps->t.col, "list longer than %d items",
						SPEC_MAX_LIST);
			if (ps->t.k == T_EOF || ps->t.k == T_RP || ps->t.k == T_COMMA ||
			    ps->t.k == T_EQ || ps->t.k == T_PIPE)
				return spec_err(ps, ps->t.col, "expected a list item or ']' in %s, got %s",
						ctx, tok_desc(&ps->t, d, sizeof(d)));
			if ((rc = parse_value(ps, &items[n++], ctx)))
				return rc;
			if (ps->t.k == T_COMMA) {
				if ((rc = lex(ps)))
					return rc;
				if (ps->t.k == T_RB)
					return spec_err(ps, ps->t.col,
							"expected a list item after ',' in %s, got ']'", ctx);
			} else if (ps->t.k != T_RB) {
				return spec_err(ps, ps->t.col,
						"expected ',' or ']' after list item in %s, got %s",
						ctx, tok_desc(&ps->t, d, sizeof(d)));
			}
		}
		ps->depth--;
		v->items = arena_alloc(ps->a, sizeof(*v->items) * (size_t)(n ? n : 1));
		if (!v->items)
			return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
		memcpy(v->items, items, sizeof(*v->items) * (size_t)n);
		v->nitems = n;
		return lex(ps);
	}
	default:
		return spec_err(ps, ps->t.col, "expected a value in %s, got %s", ctx,
				tok_desc(&ps->t, d, sizeof(d)));
	}
}

/* ---- the op table ----------------------------------------------------- */

enum param_type {
	P_INT,          /* integer in [min, max] */
	P_INT_AUTO,     /* integer in [min, max], or auto (PF_AUTOTUNE) */
	P_BOOL,         /* true / false */
	P_STR,          /* string or bare word */
	P_PATHS,        /* one or more strings (variadic, or a [list]) */
	P_ENUM,         /* one word of param.choices */
	P_FN,           /* a function: name, name(args), "lib.so:name" */
};

enum param_flags {
	F_REQ = 1,      /* must be given */
	F_POS = 2,      /* may be given by position */
};

struct param {
	const char *name;
	enum param_type type;
	unsigned flags;
	int64_t min, max;
	int64_t def;                    /* value when not given (P_INT*, P_BOOL, P_ENUM) */
	const char *const *choices;     /* P_ENUM, NULL-terminated */
	const char *help;
};

/* The resolved value of one parameter. */
struct slot {
	int set;
	int col;                /* where it was given */
	int64_t i;              /* P_INT, P_INT_AUTO, P_BOOL, P_ENUM (index) */
	const char *s;          /* P_STR, P_FN (the function's name) */
	const char *fargs;      /* P_FN: canonical argument text ("" when none) */
	const char **sv;        /* P_PATHS */
	int n;
};

struct stage;
typedef int (*build_fn)(pf_pipeline *p, const struct stage *st, pf_error *err);

enum op_flags { OP_SOURCE = 1 };

struct op {
	const char *name;
	unsigned flags;
	build_fn build;
	const char *help;
	struct param params[SPEC_MAX_PARAMS];
};

struct stage {
	const struct op *op;
	int col;
	struct slot sl[SPEC_MAX_PARAMS];
};

struct pf_spec {
	struct arena a;
	int nstages;
	struct stage st[SPEC_MAX_STAGES];
};

static const char *const pad_choices[] = { "truncate", "reject", NULL };

static int build_source(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_range(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_map(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_filter(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_take(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_skip(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_repeat(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_shard(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_sleep(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_cache(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_shuffle(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_batch(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_padded_batch(pf_pipeline *p, const struct stage *st, pf_error *err);
static int build_prefetch(pf_pipeline *p, const struct stage *st, pf_error *err);

#define I64MAX INT64_MAX
#define SOURCE_PARAMS                                                           \
	{ "paths", P_PATHS, F_REQ | F_POS, 0, 0, 0, NULL,                       \
	  "file names or glob patterns, quoted (\"data/x-*.pfs\")" },           \
	{ "cycle", P_INT_AUTO, 0, 1, 4096, 0, NULL,                             \
	  "files read at once, interleaved (default 4)" },                      \
	{ "block", P_INT, 0, 1, 1 << 20, 0, NULL,                               \
	  "consecutive records from one file per turn (default 1)" },           \
	{ "reads", P_INT_AUTO, 0, 1, 1024, 0, NULL,                             \
	  "read/decode threads (default 1)" },                                  \
	{ "shuffle_files", P_BOOL, 0, 0, 1, 0, NULL,                            \
	  "shuffle the file order by the seed, every epoch" },                  \
	{ "skip_corrupt", P_BOOL, 0, 0, 1, 0, NULL,                             \
	  "drop damaged blocks (counted) instead of failing" },                 \
	{ "max_corrupt", P_INT, 0, 0, I64MAX, 0, NULL,                          \
	  "with skip_corrupt: fail past this many dropped records an epoch (default 0: no limit)" }, \
	{ "consumer_waits", P_BOOL, 0, 0, 1, 0, NULL,                           \
	  "shards: the thread pulling records never decodes a block itself" }

/*
 * THE op table: names, arguments, types and bounds of every op a spec can
 * name.  Parser, formatter, usage text and doc/PIPELINE.md follow it.
 */
static const struct op op_table[] = {
	{ "shards", OP_SOURCE, build_source, "records of pfs shard files",
	  { SOURCE_PARAMS } },
	{ "tfrecord", OP_SOURCE, build_source, "records of TFRecord files",
	  { SOURCE_PARAMS } },
	{ "range", OP_SOURCE, build_range, "the integers start, start+step, ... < stop",
	  { { "start", P_INT, F_REQ | F_POS, INT64_MIN, I64MAX, 0, NULL, "first value" },
	    { "stop", P_INT, F_REQ | F_POS, INT64_MIN, I64MAX, 0, NULL, "end (excluded)" },
	    { "step", P_INT, F_POS, 1, I64MAX, 1, NULL, "increment (default 1)" } } },
	{ "map", 0, build_map, "apply a map function to each element",
	  { { "fn", P_FN, F_REQ | F_POS, 0, 0, 0, NULL,
	      "registered name, name(args), or lib.so:name" },
	    { "par", P_INT_AUTO, 0, 1, 1024, 1, NULL, "parallel calls (default 1)" },
	    { "ordered", P_BOOL, 0, 0, 1, 1, NULL,
	      "keep input order (default true)" },
	    { "isolate", P_BOOL, 0, 0, 1, 0, NULL,
	      "drop (and log) samples the function fails on instead of failing" } } },
	{ "filter", 0, build_filter, "keep the elements a predicate accepts",
	  { { "fn", P_FN, F_REQ | F_POS, 0, 0, 0, NULL,
	      "registered filter name, or lib.so:name" } } },
	{ "take", 0, build_take, "the first n elements of each epoch",
	  { { "n", P_INT, F_REQ | F_POS, 0, I64MAX, 0, NULL, "count" } } },
	{ "skip", 0, build_skip, "drop the first n elements of each epoch",
	  { { "n", P_INT, F_REQ | F_POS, 0, I64MAX, 0, NULL, "count" } } },
	{ "repeat", 0, build_repeat, "repeat the input count times (default forever)",
	  { { "count", P_INT, F_POS, 1, I64MAX, -1, NULL, "repetitions" } } },
	{ "shard", 0, build_shard, "keep every num-th element from index (rank split)",
	  { { "num", P_INT, F_REQ | F_POS, 1, 1 << 20, 0, NULL, "number of shards" },
	    { "index", P_INT, F_REQ | F_POS, 0, (1 << 20) - 1, 0, NULL,
	      "this shard, 0 <= index < num" } } },
	{ "sleep", 0, build_sleep, "delay each element (tests, benchmarks)",
	  { { "us", P_INT, F_REQ | F_POS, 0, 60000000, 0, NULL, "microseconds" } } },
	{ "cache", 0, build_cache, "keep the first epoch, replay it afterwards",
	  { { "path", P_STR, F_POS, 0, 0, 0, NULL, "cache file (default: in memory)" },
	    { "max_bytes", P_INT, 0, 0, I64MAX, 0, NULL,
	      "in-memory bound (default: the memory budget)" } } },
	{ "shuffle", 0, build_shuffle, "shuffle through a buffer of elements",
	  { { "buffer", P_INT, F_REQ | F_POS, 1, (int64_t)1 << 31, 0, NULL, "buffer size" },
	    { "seed", P_INT, 0, 0, I64MAX, 0, NULL,
	      "seed (default: derived from the pipeline's)" },
	    { "reshuffle", P_BOOL, 0, 0, 1, 1, NULL,
	      "a new order every epoch (default true)" } } },
	{ "batch", 0, build_batch, "group size elements into one batch",
	  { { "size", P_INT, F_REQ | F_POS, 1, 1 << 24, 0, NULL, "batch size" },
	    { "drop", P_BOOL, 0, 0, 1, 0, NULL, "drop the last, smaller batch" } } },
	{ "padded_batch", 0, build_padded_batch,
	  "batch, padding variable fields to the longest (at most max_len)",
	  { { "size", P_INT, F_REQ | F_POS, 1, 1 << 24, 0, NULL, "batch size" },
	    { "max_len", P_INT, F_REQ, 1, I64MAX, 0, NULL,
	      "bound on the variable dimension" },
	    { "over", P_ENUM, 0, 0, 1, PF_PAD_TRUNCATE, pad_choices,
	      "longer samples: truncate or reject" },
	    { "drop", P_BOOL, 0, 0, 1, 0, NULL, "drop the last, smaller batch" } } },
	{ "prefetch", 0, build_prefetch, "run the input ahead on a thread",
	  { { "depth", P_INT_AUTO, F_POS, 1, 1 << 16, PF_AUTOTUNE, NULL,
	      "elements buffered (default auto)" } } },
};

#define NOPS ((int)(sizeof(op_table) / sizeof(op_table[0])))

static int op_nparams(const struct op *op)
{
	int n = 0;
	while (n < SPEC_MAX_PARAMS && op->params[n].name)
		n++;
	return n;
}

static const struct op *op_find(const char *name)
{
	for (int i = 0; i < NOPS; i++)
		if (!strcmp(op_table[i].name, name))
			return &op_table[i];
	return NULL;
}

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

static void op_names(char *buf, size_t cap)
{
	size_t o = 0;
	buf[0] = '\0';
	for (int i = 0; i < NOPS && o < cap; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", op_table[i].name);
}

static void param_names(const struct op *op, char *buf, size_t cap)
{
	size_t o = 0;
	int n = op_nparams(op);
	buf[0] = '\0';
	for (int i = 0; i < n && o < cap; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s%s",
				      i == 0 ? "" : i == n - 1 ? " or " : ", ",
				      op->params[i].name);
}

static const char *type_desc(const struct param *pr)
{
	switch (pr->type) {
	case P_INT: return "an integer";
	case P_INT_AUTO: return "an integer or auto";
	case P_BOOL: return "true or false";
	case P_STR: return "a string";
	case P_PATHS: return "a quoted path or glob";
	case P_ENUM: return "one of the words listed";
	case P_FN: return "a function name";
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

/* ---- canonical text of values ----------------------------------------- */

struct sbuf {
	char *p;
	size_t cap, len;        /* len counts what was needed, even past cap */
};

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
	if (b->len < b->cap) {
		size_t room = b->cap - b->len - 1;
		memcpy(b->p + b->len, s, n < room ? n : room);
		b->p[b->len + (n < room ? n : room)] = '\0';
	}
	b->len += n;
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		sb_putn(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static int is_keyword(const char *s)
{
	return !strcmp(s, "true") || !strcmp(s, "false") || !strcmp(s, "auto");
}

/* Would s read back as one bare word? */
static int is_bare_word(const char *s)
{
	if (!s[0] || !is_word_start((unsigned char)s[0]))
		return 0;
	if (s[0] == '.' && is_digit((unsigned char)s[1]))
		return 0;
	for (const char *c = s; *c; c++)
		if (!is_word_char((unsigned char)*c))
			return 0;
	return 1;
}

static void sb_quoted(struct sbuf *b, const char *s)
{
	sb_putn(b, "\"", 1);
	for (; *s; s++) {
		switch (*s) {
		case '"': sb_puts(b, "\\\""); break;
		case '\\': sb_puts(b, "\\\\"); break;
		case '\n': sb_puts(b, "\\n"); break;
		case '\t': sb_puts(b, "\\t"); break;
		default: sb_putn(b, s, 1);
		}
	}
	sb_putn(b, "\"", 1);
}

/* Shortest decimal text that reads back as exactly d. */
static void sb_double(struct sbuf *b, double d)
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
	sb_puts(b, tmp);
}

static void sb_args(struct sbuf *b, const struct arg *args, int n);

static void sb_val(struct sbuf *b, const struct val *v)
{
	switch (v->kind) {
	case V_INT: sb_printf(b, "%" PRId64, v->i); break;
	case V_FLOAT: sb_double(b, v->f); break;
	case V_STR: sb_quoted(b, v->s); break;
	case V_WORD: sb_puts(b, v->s); break;
	case V_CALL:
		if (is_bare_word(v->s) && !is_keyword(v->s))
			sb_puts(b, v->s);
		else
			sb_quoted(b, v->s);
		sb_putn(b, "(", 1);
		sb_args(b, v->args, v->nargs);
		sb_putn(b, ")", 1);
		break;
	case V_LIST:
		sb_putn(b, "[", 1);
		for (int i = 0; i < v->nitems; i++) {
			if (i)
				sb_puts(b, ", ");
			sb_val(b, v->items[i]);
		}
		sb_putn(b, "]", 1);
		break;
	}
}

static void sb_args(struct sbuf *b, const struct arg *args, int n)
{
	for (int i = 0; i < n; i++) {
		if (i)
			sb_puts(b, ", ");
		if (args[i].name) {
			sb_puts(b, args[i].name);
			sb_putn(b, "=", 1);
		}
		sb_val(b, args[i].v);
	}
}

/* ---- resolve: tree -> typed slots ------------------------------------- */

static int range_err(struct parser *ps, const struct val *v, const struct op *op,
		     const struct param *pr)
{
	return spec_err(ps, v->col, "argument '%s' of %s: %" PRId64
			" is out of range (%" PRId64 " to %" PRId64 ")",
			pr->name, op->name, v->i, pr->min, pr->max);
}

static int type_err(struct parser *ps, const struct val *v, const struct op *op,
		    const struct param *pr)
{
	char d[80];
	return spec_err(ps, v->col, "argument '%s' of %s: expected %s, got %s",
			pr->name, op->name, type_desc(pr), val_desc(v, d, sizeof(d)));
}

static int add_path(struct parser *ps, struct slot *sl, const struct val *v,
		    const struct op *op, const struct param *pr)
{
	if (v->kind != V_STR && v->kind != V_WORD)
		return type_err(ps, v, op, pr);
	if (!v->s[0])
		return spec_err(ps, v->col, "argument '%s' of %s: empty path", pr->name, op->name);
	if (sl->n == SPEC_MAX_LIST)
		return spec_err(ps, v->col, "argument '%s' of %s: more than %d paths",
				pr->name, op->name, SPEC_MAX_LIST);
	if (!sl->sv) {
		sl->sv = arena_alloc(ps->a, sizeof(*sl->sv) * SPEC_MAX_LIST);
		if (!sl->sv)
			return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
	}
	sl->sv[sl->n++] = v->s;
	return 0;
}

/* Check v against parameter pr and store it in sl. */
static int set_slot(struct parser *ps, const struct op *op, const struct param *pr,
		    struct slot *sl, const struct val *v)
{
	int rc;

	switch (pr->type) {
	case P_INT_AUTO:
		if (v->kind == V_WORD && !strcmp(v->s, "auto")) {
			sl->i = PF_AUTOTUNE;
			break;
		}
		/* fall through */
	case P_INT:
		if (v->kind != V_INT)
			return type_err(ps, v, op, pr);
		if (v->i < pr->min || v->i > pr->max)
			return range_err(ps, v, op, pr);
		sl->i = v->i;
		break;
	case P_BOOL:
		if (v->kind != V_WORD || (strcmp(v->s, "true") && strcmp(v->s, "false")))
			return type_err(ps, v, op, pr);
		sl->i = !strcmp(v->s, "true");
		break;
	case P_STR:
		if (v->kind != V_STR && v->kind != V_WORD)
			return type_err(ps, v, op, pr);
		if (!v->s[0])
			return spec_err(ps, v->col, "argument '%s' of %s: empty string",
					pr->name, op->name);
		sl->s = v->s;
		break;
	case P_PATHS:
		if (v->kind == V_LIST) {
			if (!v->nitems)
				return spec_err(ps, v->col, "argument '%s' of %s: empty list",
						pr->name, op->name);
			for (int i = 0; i < v->nitems; i++)
				if ((rc = add_path(ps, sl, v->items[i], op, pr)))
					return rc;
			break;
		}
		if ((rc = add_path(ps, sl, v, op, pr)))
			return rc;
		break;
	case P_ENUM: {
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
				pr->name, op->name, list, val_desc(v, d, sizeof(d)));
	}
	case P_FN: {
		struct sbuf b = { NULL, 0, 0 };
		if (v->kind != V_WORD && v->kind != V_STR && v->kind != V_CALL)
			return type_err(ps, v, op, pr);
		if (!v->s[0] || (v->kind != V_CALL && is_keyword(v->s) && v->kind == V_WORD))
			return type_err(ps, v, op, pr);
		sl->s = v->s;
		sl->fargs = "";
		if (v->kind == V_CALL && v->nargs) {
			sb_args(&b, v->args, v->nargs);       /* measure */
			char *t = arena_alloc(ps->a, b.len + 1);
			if (!t)
				return pf_error_set(ps->err, PF_ENOMEM, "spec: out of memory");
			b.p = t;
			b.cap = b.len + 1;
			b.len = 0;
			sb_args(&b, v->args, v->nargs);
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

static int resolve_stage(struct parser *ps, const struct val *call, struct stage *st,
			 int index)
{
	const struct op *op = op_find(call->s);
	char names[256];
	int np, next_pos = 0, seen_named = 0, rc;

	if (!op) {
		const char *best = NULL;
		int bestd = 3;
		for (int i = 0; i < NOPS; i++) {
			int d = edit_distance(call->s, op_table[i].name);
			if (d < bestd) {
				bestd = d;
				best = op_table[i].name;
			}
		}
		if (best)
			return spec_err(ps, call->col, "unknown op '%.64s' (did you mean '%s'?)",
					call->s, best);
		op_names(names, sizeof(names));
		return spec_err(ps, call->col, "unknown op '%.64s' (expected one of: %s)",
				call->s, names);
	}
	if ((op->flags & OP_SOURCE) && index > 0)
		return spec_err(ps, call->col,
				"%s is a source: it can only be the first op of a pipeline",
				op->name);
	memset(st, 0, sizeof(*st));
	st->op = op;
	st->col = call->col;
	np = op_nparams(op);
	for (int a = 0; a < call->nargs; a++) {
		const struct arg *ar = &call->args[a];
		int k;

		if (!ar->name) {
			if (seen_named)
				return spec_err(ps, ar->col,
						"positional argument after named ones in %s", op->name);
			/* a variadic parameter takes every further positional */
			if (next_pos > 0 && op->params[next_pos - 1].type == P_PATHS) {
				k = next_pos - 1;
			} else {
				while (next_pos < np && !(op->params[next_pos].flags & F_POS))
					next_pos++;
				if (next_pos >= np) {
					int npos = 0;
					for (int i = 0; i < np; i++)
						npos += !!(op->params[i].flags & F_POS);
					return spec_err(ps, ar->col,
							"too many arguments for %s (it takes %d by position)",
							op->name, npos);
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
					return spec_err(ps, ar->col, "%s takes no arguments", op->name);
				return spec_err(ps, ar->col,
						"unknown argument '%.64s' for %s (expected %s)",
						ar->name, op->name, names);
			}
			if (st->sl[k].set)
				return spec_err(ps, ar->col,
						"argument '%s' of %s given twice (first at column %d)",
						ar->name, op->name, st->sl[k].col);
		}
		int first_col = st->sl[k].set ? st->sl[k].col : ar->v->col;
		if ((rc = set_slot(ps, op, &op->params[k], &st->sl[k], ar->v)))
			return rc;
		st->sl[k].col = first_col;
	}
	for (int k = 0; k < np; k++) {
		const struct param *pr = &op->params[k];
		if ((pr->flags & F_REQ) && !st->sl[k].set)
			return spec_err(ps, call->has_parens ? call->close_col : call->col +
					(int)strlen(call->s),
					"%s needs argument '%s' (%s)", op->name, pr->name, pr->help);
		if (!st->sl[k].set)
			st->sl[k].i = pr->def;
	}
	return 0;
}

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
	if ((rc = lex(&ps)))
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
				      tok_desc(&ps.t, d, sizeof(d)));
			goto fail;
		}
		if (s->nstages == SPEC_MAX_STAGES) {
			rc = spec_err(&ps, ps.t.col, "more than %d ops", SPEC_MAX_STAGES);
			goto fail;
		}
		if ((rc = parse_value(&ps, &call, ps.t.s)))
			goto fail;
		if ((rc = resolve_stage(&ps, call, &s->st[s->nstages], s->nstages)))
			goto fail;
		s->nstages++;
		if (ps.t.k == T_EOF)
			break;
		if (ps.t.k != T_PIPE) {
			rc = spec_err(&ps, ps.t.col, "expected '|' or end of spec after %s, got %s",
				      call->s, tok_desc(&ps.t, d, sizeof(d)));
			goto fail;
		}
		if ((rc = lex(&ps)))
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
	arena_free(&s->a);
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
	return s->st[i].op->name;
}

static void sb_slot(struct sbuf *b, const struct param *pr, const struct slot *sl)
{
	switch (pr->type) {
	case P_INT_AUTO:
		if (sl->i == PF_AUTOTUNE) {
			sb_puts(b, "auto");
			break;
		}
		/* fall through */
	case P_INT:
		sb_printf(b, "%" PRId64, sl->i);
		break;
	case P_BOOL:
		sb_puts(b, sl->i ? "true" : "false");
		break;
	case P_STR:
		sb_quoted(b, sl->s);
		break;
	case P_PATHS:
		for (int i = 0; i < sl->n; i++) {
			if (i)
				sb_puts(b, ", ");
			sb_quoted(b, sl->sv[i]);
		}
		break;
	case P_ENUM:
		sb_puts(b, pr->choices[sl->i]);
		break;
	case P_FN:
		if (is_bare_word(sl->s) && !is_keyword(sl->s))
			sb_puts(b, sl->s);
		else
			sb_quoted(b, sl->s);
		if (sl->fargs[0]) {
			sb_putn(b, "(", 1);
			sb_puts(b, sl->fargs);
			sb_putn(b, ")", 1);
		}
		break;
	}
}

static void sb_stage(struct sbuf *b, const struct stage *st)
{
	const struct op *op = st->op;
	int np = op_nparams(op), positional = 1, nout = 0;

	sb_puts(b, op->name);
	for (int k = 0; k < np; k++) {
		const struct param *pr = &op->params[k];
		const struct slot *sl = &st->sl[k];
		if (!sl->set) {
			positional = 0;
			continue;
		}
		sb_puts(b, nout++ ? ", " : "(");
		if (!(positional && (pr->flags & F_POS))) {
			positional = 0;
			sb_puts(b, pr->name);
			sb_putn(b, "=", 1);
			if (pr->type == P_PATHS && sl->n > 1) {
				sb_putn(b, "[", 1);
				sb_slot(b, pr, sl);
				sb_putn(b, "]", 1);
				continue;
			}
		}
		sb_slot(b, pr, sl);
	}
	if (nout)
		sb_putn(b, ")", 1);
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
			sb_puts(&b, " | ");
		sb_stage(&b, &s->st[i]);
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

int pf_spec_build(const pf_spec *s, pf_pipeline *p, pf_error *err)
{
	if (!s || !p)
		return pf_error_set(err, PF_EINVAL, "pf_spec_build: NULL argument");
	if (s->nstages > 0 && !(s->st[0].op->flags & OP_SOURCE) && pf_pipeline_nops(p) == 0)
		return pf_error_set(err, PF_ESPEC,
				    "column %d: a pipeline starts with a source (shards, tfrecord or range), got %s",
				    s->st[0].col, s->st[0].op->name);
	for (int i = 0; i < s->nstages; i++) {
		const struct stage *st = &s->st[i];
		pf_error e = { 0 };
		int rc = st->op->build(p, st, &e);
		if (rc < 0) {
			const char *m = e.code ? e.msg : pf_strerror(rc);
			size_t n = strlen(st->op->name);
			if (!strncmp(m, st->op->name, n) && m[n] == ':' && m[n + 1] == ' ')
				m += n + 2;     /* the builder named the op already */
			return pf_error_set(err, rc, "column %d: %s: %s", st->col,
					    st->op->name, m);
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

size_t pf_spec_usage(char *buf, size_t cap)
{
	struct sbuf b = { buf, cap, 0 };

	if (buf && cap)
		buf[0] = '\0';
	else
		b.cap = 0;
	for (int i = 0; i < NOPS; i++) {
		const struct op *op = &op_table[i];
		int np = op_nparams(op);
		sb_puts(&b, op->name);
		if (np)
			sb_putn(&b, "(", 1);
		for (int k = 0; k < np; k++) {
			const struct param *pr = &op->params[k];
			if (k)
				sb_puts(&b, ", ");
			if (!(pr->flags & F_REQ))
				sb_putn(&b, "[", 1);
			if (!(pr->flags & F_POS))
				sb_printf(&b, "%s=", pr->name);
			sb_puts(&b, pr->type == P_INT_AUTO ? "N|auto" :
				    pr->type == P_BOOL ? "true|false" :
				    pr->type == P_ENUM ? "WORD" :
				    pr->type == P_PATHS ? "\"PATH\"..." :
				    pr->type == P_STR ? "\"STR\"" :
				    pr->type == P_FN ? "FN" : "N");
			if (pr->flags & F_POS)
				sb_printf(&b, " (%s)", pr->name);
			if (!(pr->flags & F_REQ))
				sb_putn(&b, "]", 1);
		}
		if (np)
			sb_putn(&b, ")", 1);
		sb_puts(&b, "\n    ");
		sb_puts(&b, op->help);
		sb_putn(&b, "\n", 1);
	}
	return b.len;
}

/* ---- builders: resolved slots -> builder calls ------------------------ */

static int build_source(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	pf_source_opts o;

	memset(&o, 0, sizeof(o));
	o.cycle_length = st->sl[1].set ? (int)st->sl[1].i : 0;
	o.block_length = st->sl[2].set ? (int)st->sl[2].i : 0;
	o.num_parallel_reads = st->sl[3].set ? (int)st->sl[3].i : 0;
	o.shuffle_files = (int)st->sl[4].i;
	o.skip_corrupt = (int)st->sl[5].i;
	o.max_corrupt = st->sl[6].i;
	o.consumer_waits = (int)st->sl[7].i;
	if (!strcmp(st->op->name, "tfrecord"))
		return pf_tfrecords(p, st->sl[0].sv, (size_t)st->sl[0].n, &o, err);
	return pf_shards(p, st->sl[0].sv, (size_t)st->sl[0].n, &o, err);
}

static int build_range(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	return pf_range(p, st->sl[0].i, st->sl[1].i, st->sl[2].i, err);
}

/* "lib.so:name" -> load lib, *name = "name"; a plain name is left alone. */
static int split_lib(const char *fn, const char **name, pf_error *err)
{
	const char *colon = strrchr(fn, ':');
	char path[4096];

	*name = fn;
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

static int build_map(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	pf_map_opts o;
	const char *name;
	int rc;

	if ((rc = pf_maps_init(err)))
		return rc;
	if ((rc = split_lib(st->sl[0].s, &name, err)))
		return rc;
	memset(&o, 0, sizeof(o));
	o.num_parallel_calls = st->sl[1].set ? (int)st->sl[1].i : 0;
	o.unordered = !st->sl[2].i;
	o.isolate = (int)st->sl[3].i;
	return pf_map(p, name, st->sl[0].fargs, &o, err);
}

static int build_filter(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	const char *name;
	pf_filter_fn fn;
	void *user;
	int rc;

	if ((rc = pf_maps_init(err)))
		return rc;
	if ((rc = split_lib(st->sl[0].s, &name, err)))
		return rc;
	if (st->sl[0].fargs[0])
		return pf_error_set(err, PF_EINVAL, "filter functions take no arguments (got %s(%s))",
				    name, st->sl[0].fargs);
	if (pf_filter_lookup(name, &fn, &user) != 0)
		return pf_error_set(err, PF_EINVAL, "no filter function registered as '%s'", name);
	return pf_filter(p, name, fn, user, err);
}

static int build_take(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	return pf_take(p, st->sl[0].i, err);
}

static int build_skip(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	return pf_skip(p, st->sl[0].i, err);
}

static int build_repeat(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	return pf_repeat(p, st->sl[0].i, err);
}

static int build_shard(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	if (st->sl[1].i >= st->sl[0].i)
		return pf_error_set(err, PF_EINVAL, "index %" PRId64 " must be below num %" PRId64,
				    st->sl[1].i, st->sl[0].i);
	return pf_rank_shard(p, (int)st->sl[0].i, (int)st->sl[1].i, err);
}

static int build_sleep(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	return pf_sleep(p, st->sl[0].i, err);
}

static int build_cache(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	return pf_cache(p, st->sl[0].set ? st->sl[0].s : NULL, (uint64_t)st->sl[1].i, err);
}

static int build_shuffle(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	pf_shuffle_opts o;

	memset(&o, 0, sizeof(o));
	o.seed_set = st->sl[1].set;
	o.seed = (uint64_t)st->sl[1].i;
	o.no_reshuffle = !st->sl[2].i;
	return pf_shuffle(p, st->sl[0].i, &o, err);
}

static int build_batch(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	return pf_batch(p, (int)st->sl[0].i, (int)st->sl[1].i, err);
}

static int build_padded_batch(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	pf_padded_opts o;

	memset(&o, 0, sizeof(o));
	o.max_len = st->sl[1].i;
	o.policy = (int)st->sl[2].i == 1 ? PF_PAD_REJECT : PF_PAD_TRUNCATE;
	o.drop_remainder = (int)st->sl[3].i;
	return pf_padded_batch(p, (int)st->sl[0].i, &o, err);
}

static int build_prefetch(pf_pipeline *p, const struct stage *st, pf_error *err)
{
	return pf_prefetch(p, (int)st->sl[0].i, err);
}
