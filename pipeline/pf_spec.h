/*
 * pf_spec.h - a pipeline as one line of text, parsed into builder calls.
 *
 *   shards("data/fmnist-train-*.pfs", cycle=4) | map(decode, par=auto)
 *     | cache | shuffle(10000, seed=7) | batch(64) | prefetch(auto)
 *
 * Grammar (whitespace, newlines included, is free between tokens):
 *
 *   spec  := op ( '|' op )*
 *   op    := NAME [ '(' [ arg ( ',' arg )* ] ')' ]
 *   arg   := value | NAME '=' value
 *   value := INTEGER | NUMBER | "string" | 'string' | WORD
 *          | WORD '(' args ')'            a function with arguments (map)
 *          | '[' value ( ',' value )* ']' a list (several paths)
 *
 * Strings take the escapes \\ \" \' \n \t.  A WORD is letters, digits and
 * _ . / : - + * ? ~ not starting with a digit (true, false and auto are
 * words), so `map(mylib.so:fn)` needs no quotes; paths with other
 * characters need them.  Every op and argument, with its type and bounds,
 * is listed by pf_spec_usage() and documented in doc/PIPELINE.md; each op
 * maps to exactly one builder call of pipefeed.h.
 *
 * Errors are PF_ESPEC with a message that starts with the 1-based column
 * (byte) and says what was expected:
 *   "column 23: expected ',' or ')' after argument of shuffle, got 'seed'"
 *
 * Ownership: a pf_spec is a handle (pf_spec_parse / pf_spec_free, free(NULL)
 * is a no-op); building copies everything it needs into the pipeline, so
 * the spec may be freed right after pf_spec_build.  All calls are
 * thread-safe on distinct handles.
 */
#ifndef PF_SPEC_H
#define PF_SPEC_H

#include <stddef.h>

#include "pf_error.h"
#include "pipefeed.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_spec pf_spec;

/*
 * Parse `text` and check every op and argument against the op table (names,
 * types, bounds, required arguments, duplicates).  Builds nothing and
 * touches no file.  On success *s is a new handle (free with pf_spec_free);
 * on failure *s is NULL and the code is PF_ESPEC (message names the
 * column), PF_ELIMIT (longer than 64 KiB) or PF_ENOMEM.
 */
int pf_spec_parse(pf_spec **s, const char *text, pf_error *err);

/* Free a parsed spec.  NULL is a no-op. */
void pf_spec_free(pf_spec *s);

/*
 * Append the spec's ops to p, one builder call each, in order.  A spec
 * that does not start with a source needs a pipeline that has one already.
 * Map functions are looked up in the registry (built-ins are registered
 * first); "lib.so:name" loads lib.so through pf_map_load.  A failing
 * builder call's message is prefixed with its op's column and name:
 * "column 12: map: no map function called \"decod\"".  The ops added
 * before the failure stay in p (free p on error).
 */
int pf_spec_build(const pf_spec *s, pf_pipeline *p, pf_error *err);

/* pf_spec_parse + pf_spec_build + pf_spec_free. */
int pf_spec_apply(pf_pipeline *p, const char *text, pf_error *err);

/*
 * The canonical text of s into buf (NUL-terminated when cap > 0):
 * required arguments by position, the others by name, only those given,
 * in the op table's order; strings quoted; floats in their shortest exact
 * form.  Parsing the result gives the same spec again (and formatting it
 * the same text).  Returns the length needed, without the NUL (snprintf
 * style).
 */
size_t pf_spec_format(const pf_spec *s, char *buf, size_t cap);

/* Parse and format in one call: the canonical form of text.  PF_ELIMIT
 * when buf is too small. */
int pf_spec_normalize(const char *text, char *buf, size_t cap, pf_error *err);

/*
 * The ops of p, built in C or from a spec, as a canonical spec string (the
 * text pf_spec_normalize gives; arguments left at their defaults are not
 * written).  pf_spec_apply of it on a new pipeline builds the same ops.
 * Returns 0; PF_ELIMIT when it needs more than cap bytes (the message says
 * how many; buf then holds a cut copy); PF_EINVAL naming the op when one
 * has no spec form: records in caller memory (pf_records), a map or filter
 * function given by pointer and not registered under its name.
 */
int pf_pipeline_format(const pf_pipeline *p, char *buf, size_t cap, pf_error *err);

/* Number of ops in s, and the name of op i (NULL when out of range). */
int pf_spec_nstages(const pf_spec *s);
const char *pf_spec_stage_op(const pf_spec *s, int i);

/* A reference of every op and its arguments, one op per two lines (for
 * --help output).  Returns the length needed (snprintf style). */
size_t pf_spec_usage(char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* PF_SPEC_H */
