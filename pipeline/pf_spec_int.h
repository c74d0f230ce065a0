/*
 * pf_spec_int.h - internal: what the spec files share.
 *
 *   spec_parse.c    text -> a generic tree (calls, values); errors name the
 *                   column; the arena all of one parse lives in
 *   spec_resolve.c  tree -> per-op typed arguments (pf_arg), checked
 *                   against the op descriptors' parameters (pf_op_desc.h)
 *   spec_format.c   arguments -> canonical text; usage; a built pipeline
 *                   back to a spec (pf_pipeline_format)
 *   spec.c          the public calls: parse, build, apply
 *
 * Nothing here knows what an op does: the descriptors say it all.  Every
 * count and depth is bounded (SPEC_MAX_*), so hostile input costs at most
 * a small multiple of its length.  The functions below are hidden: not
 * part of libpipefeed's interface.
 */
#ifndef PF_SPEC_INT_H
#define PF_SPEC_INT_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"
#include "pf_op_desc.h"
#include "pf_spec.h"
#include "pipefeed.h"

#define PF_HIDDEN __attribute__((visibility("hidden")))

#define SPEC_MAX_LEN (64u << 10) /* bytes of spec text */
#define SPEC_MAX_STAGES 64
#define SPEC_MAX_ARGS 16         /* per call */
#define SPEC_MAX_LIST 64         /* items of one [list] */
#define SPEC_MAX_DEPTH 4         /* calls/lists nested inside a stage */

/* ---- arena: every allocation of one parse, freed together ------------- */

struct arena_blk {
	struct arena_blk *next;
	size_t used, cap;
	max_align_t data[];
};

struct arena {
	struct arena_blk *head;
};

PF_HIDDEN void *spec_arena_alloc(struct arena *a, size_t n);
PF_HIDDEN char *spec_arena_strndup(struct arena *a, const char *s, size_t n);
PF_HIDDEN void spec_arena_free(struct arena *a);

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

/* A PF_ESPEC error "column COL: ..." (returns the code). */
PF_HIDDEN int spec_err(struct parser *ps, int col, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Characters of a bare word, and digits. */
PF_HIDDEN int spec_is_word_start(int c);
PF_HIDDEN int spec_is_word_char(int c);
PF_HIDDEN int spec_is_digit(int c);
/* A short printable rendering of a token, for "got ..." in messages. */
PF_HIDDEN const char *spec_tok_desc(const struct tok *t, char *buf, size_t cap);
/* The next token into ps->t. */
PF_HIDDEN int spec_lex(struct parser *ps);
/* A value (the current token starts it); ctx names the call in messages. */
PF_HIDDEN int spec_parse_value(struct parser *ps, struct val **out, const char *ctx);

/* One op of a parsed spec: its descriptor and resolved arguments. */
struct stage {
	const pf_op_desc *op;
	int col;
	pf_arg sl[PF_OP_MAX_PARAMS];
};

struct pf_spec {
	struct arena a;
	int nstages;
	struct stage st[SPEC_MAX_STAGES];
};

/* The call (stage `index` of the spec) -> *st, checked against its op's
 * parameters.  0 or PF_ESPEC naming the column. */
PF_HIDDEN int spec_resolve_stage(struct parser *ps, const struct val *call,
				 struct stage *st, int index);
/* An op a spec may name (it has a build), or NULL. */
PF_HIDDEN const pf_op_desc *spec_find_op(const char *kind);

/* ---- canonical text of values ----------------------------------------- */

struct sbuf {
	char *p;
	size_t cap, len;        /* len counts what was needed, even past cap */
};

PF_HIDDEN void spec_sb_putn(struct sbuf *b, const char *s, size_t n);
PF_HIDDEN void spec_sb_puts(struct sbuf *b, const char *s);
PF_HIDDEN void spec_sb_printf(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* s in double quotes, escaped. */
PF_HIDDEN void spec_sb_quoted(struct sbuf *b, const char *s);
/* Call arguments as canonical text. */
PF_HIDDEN void spec_sb_args(struct sbuf *b, const struct arg *args, int n);
/* "true", "false", "auto"; would s read back as one bare word? */
PF_HIDDEN int spec_is_keyword(const char *s);
PF_HIDDEN int spec_is_bare_word(const char *s);
/* Stage text: the op's name and its given arguments (required ones by
 * position, the rest by name, in parameter order). */
PF_HIDDEN void spec_sb_stage(struct sbuf *b, const pf_op_desc *op, const pf_arg *sl);

#endif /* PF_SPEC_INT_H */
