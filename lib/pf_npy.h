/*
 * pf_npy.h - a streaming reader for NumPy .npy files (format versions 1.0,
 * 2.0 and 3.0), C order only.
 *
 * A .npy file is the magic "\x93NUMPY", a major and minor version byte, a
 * little-endian header length (u16 for 1.x, u32 for 2.x and 3.x), and the
 * header: a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }
 * padded with spaces and ended by '\n'.  The array data follows.
 *
 * The first dimension of the shape counts records; the others give each
 * record's shape.  Supported dtypes: b1 (read as u8), i1 u1 i2 u2 i4 u4 i8
 * u8 f2 f4 f8, with byte order '<', '>', '=' (native) or '|' (one-byte
 * types).  Big-endian data is converted to little-endian as it is read.
 *
 * Safety: the header is parsed strictly (exactly the keys descr,
 * fortran_order and shape, each once; no other Python syntax), its length
 * is bounded by PF_NPY_MAX_HEADER, the shape's product is checked for
 * overflow and against PF_NPY_MAX_RECORD, and the data size must equal what
 * follows the header in the file.  fortran_order True is refused (unless the
 * array has at most one dimension, where both orders are the same bytes).
 *
 * Threads: a pf_npy belongs to one thread at a time.
 */
#ifndef PF_NPY_H
#define PF_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"
#include "pf_schema.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_NPY_MAX_HEADER (64u << 10)      /* header dict bytes */
#define PF_NPY_MAX_DIMS (PF_MAX_DIMS + 1)  /* record dimension + field dims */
#define PF_NPY_MAX_RECORD (256u << 20)     /* largest record: 256 MiB */
#define PF_NPY_PREAMBLE 12                 /* enough to know the header length */

typedef struct pf_npy_header {
	int major, minor;          /* format version */
	char descr[16];            /* as written, e.g. "<f4" */
	pf_dtype dtype;
	int swap;                  /* data is big-endian: swap while reading */
	int ndim;                  /* 1 .. PF_NPY_MAX_DIMS */
	uint64_t shape[PF_NPY_MAX_DIMS];
	uint64_t count;            /* shape[0]: number of records */
	size_t record_bytes;       /* prod(shape[1..]) * itemsize (may be 0) */
	uint64_t data_offset;      /* where the data starts */
	uint64_t data_bytes;       /* count * record_bytes */
} pf_npy_header;

/*
 * Parse the preamble and header from the first `len` bytes of a file.
 * `name` is used in messages.  Returns 0; PF_ETRUNC when len is shorter than
 * the preamble plus the header it announces (the file reader uses the
 * preamble alone first to learn how much to read); PF_EFORMAT for a bad
 * magic, PF_EVERSION for an unknown version, PF_ECORRUPT for a malformed
 * header (the message names the header byte offset), PF_EINVAL for an
 * unsupported dtype or Fortran order, PF_ELIMIT for too many dims or too
 * large sizes.
 */
int pf_npy_parse_header(pf_npy_header *h, const void *buf, size_t len,
			const char *name, pf_error *err);

typedef struct pf_npy pf_npy;

/*
 * Open a .npy file and check its header and its size (the file must end
 * exactly where the data does).  On success *r owns an open descriptor;
 * free it with pf_npy_close().  On failure *r is NULL.
 */
int pf_npy_open(pf_npy **r, const char *path, pf_error *err);

/* The same over a file in memory; the buffer must outlive *r. */
int pf_npy_open_mem(pf_npy **r, const void *buf, size_t len,
		    const char *name, pf_error *err);

void pf_npy_close(pf_npy *r); /* NULL is a no-op */

const pf_npy_header *pf_npy_info(const pf_npy *r);
const char *pf_npy_name(const pf_npy *r);

/* Describe one record as a schema field called `name` (truncated to fit). */
void pf_npy_field(const pf_npy *r, const char *name, pf_field *f);

/*
 * Read the next min(n, remaining) records into buf (n * record_bytes bytes
 * of room), little-endian.  Returns the number read (0 at the end) or a
 * negative PF_E* code (an I/O error, or PF_ETRUNC when the file shrank).
 */
int64_t pf_npy_read(pf_npy *r, void *buf, uint64_t n, pf_error *err);

#ifdef __cplusplus
}
#endif
#endif /* PF_NPY_H */
