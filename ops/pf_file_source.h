/*
 * pf_file_source.h - the file sources read one file after another in the
 * consumer's thread (tfrecord, webdataset): one engine for the interleave
 * (pf_interleave.h), the epoch's file order (shuffle_files), the counting
 * pass at start, and the damage policy; a source supplies only the reader
 * of its files (a pf_fsrc_class).  Internal to ops/.
 *
 * Counting pass (prepare): every file is opened and its units (records,
 * samples) stepped over with skip(): the op's cardinality and the largest
 * unit (its element bound) come from it, and a source whose fields come
 * from its files (webdataset) collects them with fields().
 *
 * Damage (skip_corrupt): a unit whose next() fails with PF_ECORRUPT while
 * the class is `recoverable` (the framing around it is sound: a TFRecord
 * data CRC) is dropped and the file read on after it (reopened, the units
 * before stepped over); any other failure (PF_ETRUNC, PF_ECORRUPT of a
 * reader that cannot resync) ends the file there.  Each counts as one
 * corrupt block; skipped_records counts the units known lost (the counting
 * pass stops at a framing error, so what lies beyond one is unknown: with
 * max_corrupt set such a file fails at start).  One warning per file; more
 * than max_corrupt dropped units in an epoch fail the op.  Without
 * skip_corrupt the error stops the op, naming the file.
 *
 * Ids: pf_id_make(file index, unit index in the file), so exactly-once and
 * a dropped sample's file/record are reported as for the other sources.
 */
#ifndef PF_FILE_SOURCE_H
#define PF_FILE_SOURCE_H

#include "pf_op.h"

typedef struct pf_fsrc_class {
	const char *kind;     /* the op's kind, for messages: "tfrecord" */
	const char *unit;     /* what a file holds: "record", "sample" */
	int recoverable;      /* next()'s PF_ECORRUPT: that unit alone is bad */
	/* Open path: 0 and *r, or an error (err names the file). */
	int (*open)(void **r, const char *path, pf_error *err);
	void (*close)(void *r); /* NULL-safe */
	/* Step over the next unit: 0 (*bytes: the element bytes it would
	 * take), PF_END, or an error. */
	int (*skip)(void *r, uint64_t *bytes, pf_error *err);
	/* The next unit as an element of op->schema into *out (storage from
	 * op->rt->pool, id pf_id_make(file, its index)): 0, PF_END, or an
	 * error (PF_ECORRUPT, PF_ETRUNC for damage). */
	int (*next)(void *r, pf_op *op, int file, pf_elem *out, pf_error *err);
	uint64_t (*count)(const void *r); /* units passed (read or skipped) */
	/* Optional: after a file's counting pass, add the fields it saw to *s;
	 * 0 or an error.  NULL: the element is "record: u8[?]". */
	int (*fields)(void *r, pf_schema *s, pf_error *err);
} pf_fsrc_class;

/* A new source op of descriptor d reading paths (globs expanded now: a
 * missing file is an error) with class cls. */
pf_op *pf_fsrc_new(const pf_op_desc *d, const pf_fsrc_class *cls, const char *const *paths,
		   size_t n, const pf_source_opts *o, pf_error *err);

/* The vtable every such source uses, and its way back to spec arguments. */
extern const pf_op_vt pf_fsrc_vt;
int pf_fsrc_args(const pf_op *op, pf_arg *a, pf_error *err);

#endif /* PF_FILE_SOURCE_H */
