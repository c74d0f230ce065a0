/*
 * pf_id.h - the sample id: where a record came from, in 64 bits.
 *
 * A file source (shards, tfrecord) gives each record it delivers the id
 *
 *     file << PF_ID_REC_BITS | record
 *
 * where `file` is the index of its file in the source's expanded, sorted
 * file list (not its place in a shuffled epoch order) and `record` its
 * index in that file (for shards: the block's first record + its place in
 * the block; for TFRecord: its frame number).  So an id names the same
 * record whatever the seed, epoch or thread count, and error messages and
 * the dropped-sample log can name the file and record of a sample.
 *
 * Limits: 2^24 files per source, 2^40 records per file.  pf_id_make keeps
 * only the low 40 bits of `record` (a valid one is unchanged).  The layout
 * is part of the public contract (pipefeed.h documents `id`), do not change
 * it.  Header only, no dependencies beyond <stdint.h>.
 */
#ifndef PF_ID_H
#define PF_ID_H

#include <stdint.h>

#define PF_ID_REC_BITS 40
#define PF_ID_REC_MASK ((UINT64_C(1) << PF_ID_REC_BITS) - 1)
#define PF_ID_MAX_FILES (UINT64_C(1) << (64 - PF_ID_REC_BITS))

/* The id of record `rec` of file `file` (both counted from 0). */
static inline uint64_t pf_id_make(uint64_t file, uint64_t rec)
{
	return file << PF_ID_REC_BITS | (rec & PF_ID_REC_MASK);
}

/* The file index of sample id `id`. */
static inline uint64_t pf_id_file(uint64_t id)
{
	return id >> PF_ID_REC_BITS;
}

/* The record index (in its file) of sample id `id`. */
static inline uint64_t pf_id_rec(uint64_t id)
{
	return id & PF_ID_REC_MASK;
}

#endif
