/*
 * pf_idx.h - a streaming reader for IDX files (the MNIST family), plain or
 * gzip'd.
 *
 * An IDX file is a 4-byte magic (0x00 0x00 TYPE NDIM), NDIM big-endian u32
 * dimensions, then the data: prod(dims) elements of TYPE, big-endian, in C
 * order.  The first dimension counts records (60000 images), the others give
 * each record's shape (28x28).  Type codes: 0x08 u8, 0x09 i8, 0x0B i16,
 * 0x0C i32, 0x0D f32, 0x0E f64.
 *
 * A gzip'd file is recognised by its magic (1f 8b) and inflated as it is
 * read; concatenated gzip members are accepted.
 *
 * Safety: the header's dimensions are never trusted.  Their product is
 * checked for overflow and against PF_IDX_MAX_RECORD / PF_IDX_MAX_DATA; for
 * a plain file the data size must equal the file size; for a gzip'd file it
 * must be reachable by deflate's maximum ratio from the compressed size, and
 * the stream must then end exactly where the dims say (no missing and no
 * extra bytes, gzip CRC checked).  The reader never inflates more than the
 * caller's buffer plus one probe byte, so memory stays bounded by what the
 * caller asks for.  Errors name the file, the byte offset (uncompressed, and
 * compressed for gzip) and the reason.
 *
 * Threads: a pf_idx belongs to one thread at a time.
 */
#ifndef PF_IDX_H
#define PF_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"
#include "pf_schema.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_IDX_MAX_DIMS (PF_MAX_DIMS + 1)   /* record dimension + field dims */
#define PF_IDX_MAX_RECORD (64u << 20)       /* largest record: 64 MiB */
#define PF_IDX_MAX_DATA (1ull << 40)        /* largest data section: 1 TiB */

/* What the header says, checked. */
typedef struct pf_idx_header {
	int type_code;            /* 0x08 .. 0x0E as in the file */
	pf_dtype dtype;           /* PF_U8, PF_I8, PF_I16, PF_I32, PF_F32, PF_F64 */
	int ndim;                 /* 1 .. PF_IDX_MAX_DIMS */
	uint32_t dims[PF_IDX_MAX_DIMS];
	uint64_t count;           /* dims[0]: number of records */
	size_t record_bytes;      /* prod(dims[1..]) * dtype size (>= 1) */
	uint64_t data_bytes;      /* count * record_bytes */
	size_t header_bytes;      /* 4 + 4 * ndim: offset of the data */
} pf_idx_header;

/*
 * Parse and check an IDX header from the first `len` bytes of a file
 * (uncompressed).  `name` is used in messages.  Returns 0, PF_ETRUNC when
 * len is shorter than the header, PF_EFORMAT for a bad magic or type code,
 * PF_ELIMIT for too many dims or an overflowing / too large size, PF_ECORRUPT
 * for a zero dimension after the first.
 */
int pf_idx_parse_header(pf_idx_header *h, const void *buf, size_t len,
			const char *name, pf_error *err);

typedef struct pf_idx pf_idx;

/*
 * Open an IDX file (plain or gzip'd), read and check its header.  On success
 * *r owns an open file descriptor; free it with pf_idx_close().  On failure
 * *r is NULL.
 */
int pf_idx_open(pf_idx **r, const char *path, pf_error *err);

/* The same over a file already in memory (the fuzz target uses it).  The
 * buffer is not copied and must outlive *r.  `name` is used in messages. */
int pf_idx_open_mem(pf_idx **r, const void *buf, size_t len,
		    const char *name, pf_error *err);

/* Close and free (NULL is a no-op). */
void pf_idx_close(pf_idx *r);

/* The checked header (valid until pf_idx_close). */
const pf_idx_header *pf_idx_info(const pf_idx *r);

/* Nonzero when the file is gzip'd. */
int pf_idx_is_gzip(const pf_idx *r);

/* The file name used in messages. */
const char *pf_idx_name(const pf_idx *r);

/*
 * Describe one record as a schema field called `name` (truncated to fit):
 * the header's dtype and dims[1..] (a scalar when ndim == 1).
 */
void pf_idx_field(const pf_idx *r, const char *name, pf_field *f);

/*
 * Read the next min(n, remaining) records into buf (n * record_bytes bytes
 * of room), converted to little-endian.  Returns the number of records read
 * (0 once every record was read) or a negative PF_E* code: PF_ETRUNC when
 * the data ends early, PF_ECORRUPT for a damaged gzip stream or data beyond
 * what the dims say (checked when the last record is read).  After an error
 * the reader stays failed.
 */
int64_t pf_idx_read(pf_idx *r, void *buf, uint64_t n, pf_error *err);

#ifdef __cplusplus
}
#endif
#endif /* PF_IDX_H */
