/*
 * pf_tfrecord.h - a reader for TFRecord files (uncompressed), with both
 * CRCs checked.
 *
 * A TFRecord file is a sequence of frames:
 *     u64 length (little-endian)
 *     u32 masked crc32c of the 8 length bytes
 *     length bytes of data
 *     u32 masked crc32c of the data
 * where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (pf_crc32c_mask).
 *
 * Safety: a length is checked against its CRC, against PF_TFRECORD_MAX_RECORD
 * and against the bytes left in the file before anything is allocated, so a
 * hostile file cannot make the reader allocate more than the largest record
 * it really holds.  Errors name the file, the record number, the byte offset
 * of its frame and the reason ("bad length crc", "bad data crc",
 * "truncated").
 *
 * Threads: a pf_tfrecord belongs to one thread at a time.
 */
#ifndef PF_TFRECORD_H
#define PF_TFRECORD_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_TFRECORD_HEADER 12               /* length + length crc */
#define PF_TFRECORD_FOOTER 4                /* data crc */
#define PF_TFRECORD_MAX_RECORD (256u << 20) /* largest record accepted */

typedef struct pf_tfrecord pf_tfrecord;

/* Open a TFRecord file.  On success *r owns an open descriptor; free it
 * with pf_tfrecord_close().  On failure *r is NULL. */
int pf_tfrecord_open(pf_tfrecord **r, const char *path, pf_error *err);

/* The same over a file in memory; the buffer must outlive *r, and records
 * returned by pf_tfrecord_next point into it. */
int pf_tfrecord_open_mem(pf_tfrecord **r, const void *buf, size_t len,
			 const char *name, pf_error *err);

void pf_tfrecord_close(pf_tfrecord *r); /* NULL is a no-op */

/*
 * The next record: *data and *len describe it, valid until the next call
 * on r (the reader owns the bytes).  Returns 0; PF_END at a clean end of
 * file; PF_ECORRUPT for a bad length or data CRC; PF_ETRUNC when the file
 * ends inside a frame; PF_ELIMIT for a record over PF_TFRECORD_MAX_RECORD.
 * After an error the reader stays failed.
 */
int pf_tfrecord_next(pf_tfrecord *r, const void **data, size_t *len,
		     pf_error *err);

/*
 * Step over the next record without reading its data (only the length CRC
 * and the frame's bounds are checked): a fast counting pass.  *len gets the
 * record's length.  Returns as pf_tfrecord_next.
 */
int pf_tfrecord_skip(pf_tfrecord *r, uint64_t *len, pf_error *err);

/* Start again from the first record (clears a failure). */
void pf_tfrecord_rewind(pf_tfrecord *r);

/* File offset of the next frame, and the number of records passed so far. */
uint64_t pf_tfrecord_offset(const pf_tfrecord *r);
uint64_t pf_tfrecord_count(const pf_tfrecord *r);
const char *pf_tfrecord_name(const pf_tfrecord *r);

/*
 * Frame a record (for writers and tests): fill head[12] (length and its
 * masked CRC) and tail[4] (the data's masked CRC).
 */
void pf_tfrecord_frame(const void *data, uint64_t len,
		       unsigned char head[PF_TFRECORD_HEADER],
		       unsigned char tail[PF_TFRECORD_FOOTER]);

#ifdef __cplusplus
}
#endif
#endif /* PF_TFRECORD_H */
