/*
 * pf_op_desc.h - the descriptor every op file exports: its row of the op
 * table (PF_OP_SOURCES in ops/Makemodule.am lists the op files; the build
 * makes ops/pf_op_list.h, the table's rows, from it).
 *
 * A row says everything the layers above need to know about an op without
 * naming it:
 *   - its kind and spec parameters (types, defaults, bounds, help), which
 *     the spec parser, formatter and usage text read (pipeline/spec*.c) and
 *     doc/PIPELINE.md lists (t/t2016 checks they agree);
 *   - build: resolved spec arguments -> a new op; args: the way back, an
 *     op's configuration -> arguments (pf_pipeline_format);
 *   - its vtable (pf_op.h);
 *   - traits and optional hooks that the optimizer (pipeline/plan.c) and
 *     AUTOTUNE (pipeline/autotune.c) use: fusable map, plain batch, a
 *     source that runs a map, an op that only reorders, tunable
 *     parallelism, tunable depth.
 *
 * Adding an op: one file in ops/ that defines `const pf_op_desc
 * pf_op_NAME` (and allocates its ops with pf_op_alloc(&pf_op_NAME, ...)),
 * one line `ops/NAME.c` in PF_OP_SOURCES (ops/Makemodule.am), one test.
 */
#ifndef PF_OP_DESC_H
#define PF_OP_DESC_H

#include <stdint.h>

#include "pf_error.h"

typedef struct pf_op pf_op;
typedef struct pf_op_vt pf_op_vt;

/* What a spec argument is. */
enum pf_param_type {
	PF_PARAM_INT,       /* integer in [min, max] */
	PF_PARAM_INT_AUTO,  /* integer in [min, max], or auto (PF_AUTOTUNE) */
	PF_PARAM_BOOL,      /* true / false */
	PF_PARAM_STR,       /* string or bare word */
	PF_PARAM_PATHS,     /* one or more strings (variadic, or a [list]) */
	PF_PARAM_ENUM,      /* one word of choices */
	PF_PARAM_FN,        /* a function: name, name(args), "lib.so:name" */
};

enum pf_param_flags {
	PF_PARAM_REQ = 1,   /* must be given */
	PF_PARAM_POS = 2,   /* may be given by position */
};

#define PF_OP_MAX_PARAMS 10

/* One spec parameter of an op. */
typedef struct pf_param {
	const char *name;
	enum pf_param_type type;
	unsigned flags;                 /* enum pf_param_flags */
	int64_t min, max;               /* PF_PARAM_INT* bounds */
	int64_t def;                    /* value when not given (INT*, BOOL, ENUM index) */
	const char *const *choices;     /* PF_PARAM_ENUM, NULL-terminated */
	const char *help;
} pf_param;

/* The value of one parameter, resolved against its pf_param (strings are
 * borrowed: they live as long as the spec or the op they came from). */
typedef struct pf_arg {
	int set;                /* given (else i holds the default) */
	int col;                /* spec column where it was given (0: from C) */
	int64_t i;              /* INT, INT_AUTO, BOOL, ENUM (the choice's index) */
	const char *s;          /* STR; FN: the function as written ("lib.so:f", "f") */
	const char *fargs;      /* FN: canonical argument text, "" when none */
	const char *const *sv;  /* PATHS */
	int n;                  /* PATHS: count */
} pf_arg;

/* Traits: what the optimizer may do with an op. */
enum pf_op_trait {
	PF_OP_SOURCE = 1,       /* a source: only first in a pipeline */
	PF_OP_MAP = 2,          /* a map: a pure function per element; it may
				 * run inside a source that takes maps, fill
				 * a plain batch that follows it, and move
				 * after an op that only reorders; at
				 * parallelism 1 it works in its consumer's
				 * thread (AUTOTUNE reads its busy time so) */
	PF_OP_BATCH = 4,        /* a plain batch (hook batch_of): a fusable map
				 * before it may write straight into it */
	PF_OP_TAKES_MAP = 8,    /* a source whose workers can run the map that
				 * follows it (op->fused_map) */
	PF_OP_REORDERS = 16,    /* only reorders its input (a shuffle): a map
				 * may move across it */
};

typedef struct pf_op_desc {
	const char *kind;                 /* "map", "shuffle", ... (spec name) */
	unsigned traits;                  /* enum pf_op_trait */
	const char *help;                 /* one line, for usage and docs */
	pf_param params[PF_OP_MAX_PARAMS];/* spec parameters, in order */
	const pf_op_vt *vt;
	/* Resolved spec arguments a[i] (one per params[i]) -> a new op, or
	 * NULL with err set.  NULL: the op has no spec form (C only). */
	pf_op *(*build)(const pf_arg *a, pf_error *err);
	/* The way back: fill a[i] from op's configuration so that build(a)
	 * would make the same op (strings point into op's configuration).
	 * 0, or a code when the op has no spec form (a function given by
	 * pointer, caller memory).  NULL: the op takes no arguments. */
	int (*args)(const pf_op *op, pf_arg *a, pf_error *err);
	/* PF_OP_BATCH: its batch size, and *drop its drop_remainder. */
	int (*batch_of)(const pf_op *op, int *drop);
	/* AUTOTUNE: set the workers taking work / the depth in use (clamped
	 * to 1..max); return the value now in force.  From the controller's
	 * thread.  NULL: not tunable. */
	int (*set_parallelism)(pf_op *op, int n);
	int (*set_depth)(pf_op *op, int n);
	/* AUTOTUNE: the most depth an autotuned buffer may use when `avail`
	 * bytes of the memory budget are left for it (sets its max depth and
	 * buffer_bytes; never under its starting depth).  At iterator start. */
	void (*fit_depth)(pf_op *op, uint64_t avail);
	/* AUTOTUNE: the most workers an autotuned stage may use beyond the
	 * CPU budget's count (workers that mostly wait use little CPU) when
	 * `avail` bytes of the memory budget are left for their buffers
	 * (sets its max parallelism and adds their worst case to
	 * buffer_bytes; never under what prepare set).  At iterator start,
	 * before fit_depth.  NULL: never beyond the CPU budget's count. */
	void (*fit_parallelism)(pf_op *op, uint64_t avail);
} pf_op_desc;

/* Every op's row, in the order of PF_OP_SOURCES, NULL-terminated. */
extern const pf_op_desc *const pf_op_table[];

/* The row of kind, or NULL. */
const pf_op_desc *pf_op_find(const char *kind);

/* Number of parameters of d. */
int pf_op_nparams(const pf_op_desc *d);

#endif /* PF_OP_DESC_H */
