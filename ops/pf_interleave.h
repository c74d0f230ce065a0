/*
 * pf_interleave.h - the interleave of the file sources (shards, tfrecord):
 * which file of an epoch, and which record of it, comes next.  One state
 * machine, exactly tf.data's Dataset.interleave(cycle_length, block_length)
 * in its deterministic mode, over the epoch's file order (pf_ilv_order):
 *
 *   - a cycle of `cycle` slots is visited in turn, starting at slot 0;
 *   - a slot with an open file gives up to `block` records, then the turn
 *     passes to the next slot;
 *   - a file found at its end (on a visit, when it has no record left) is
 *     closed and the turn passes: the slot takes the next file only at its
 *     next visit (so an empty file costs its slot one turn);
 *   - an empty slot takes the next file of the order and reads from it in
 *     the same visit; once the files are used up, empty slots pass;
 *   - the epoch ends when every file was taken and every slot is empty.
 *
 * The caller knows each file's record count up front (shards: from the
 * index) or learns of a file's end by reading it (tfrecord: nrec NULL,
 * then pf_ilv_end when its reader says so).  Records are counted as the
 * caller takes them (pf_ilv_took); a damaged record the caller skips in
 * place still counts when it is taken, so damage never shifts the order
 * of the intact records.
 *
 * Usage, per epoch:
 *     pf_ilv_order(order, n, ...);             the file order
 *     pf_ilv_begin(&v, order, nrec);
 *     while ((k = pf_ilv_next(&v)) >= 0) {      slot k gives the next record:
 *         file order[v.slot[k].file], record v.slot[k].rec (0: the file is new)
 *         ... then pf_ilv_took(&v, k)  (or, counts unknown, pf_ilv_end(&v, k)
 *         when the file has no more, and loop)
 *     }
 *
 * Not thread-safe: one walker per pf_ilv (shards runs two: the plan and
 * the consumer's walk, which must agree).
 */
#ifndef PF_INTERLEAVE_H
#define PF_INTERLEAVE_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"

#define PF_ILV_UNKNOWN UINT64_MAX /* a slot's record count: not known yet */
#define PF_ILV_END (-1)           /* pf_ilv_next: the epoch is over */

typedef struct pf_ilv_slot {
	int32_t file;         /* its file's place in the epoch's order; -1: empty */
	uint64_t rec;         /* records taken from the file so far */
	uint64_t nrec;        /* records the file has (PF_ILV_UNKNOWN: until
			       * pf_ilv_end says) */
} pf_ilv_slot;

typedef struct pf_ilv {
	int cycle, block;     /* cycle_length, block_length (>= 1) */
	int cur;              /* the slot whose turn it is */
	int taken;            /* records taken in this turn */
	int nopen;            /* slots with a file */
	uint32_t next_file, nfiles;
	const uint32_t *order;/* the epoch's file order (file indices) */
	const uint64_t *nrec; /* records per file index; NULL: not known */
	pf_ilv_slot *slot;    /* cycle slots (pf_ilv_init allocates them) */
} pf_ilv;

/*
 * Set up v for `nfiles` files, cycle_length `cycle` and block_length
 * `block` (both >= 1; a cycle longer than nfiles gives the same order as
 * nfiles).  Allocates the slots: 0 or PF_ENOMEM (err says so).  Free with
 * pf_ilv_free (also after a failed init; NULL-safe).
 */
int pf_ilv_init(pf_ilv *v, int cycle, int block, size_t nfiles, pf_error *err);
void pf_ilv_free(pf_ilv *v);

/*
 * The file order of an epoch into order[0..n-1]: 0..n-1, or with
 * shuffle_files a permutation drawn from (seed, op_index, epoch).  Pure:
 * the same arguments give the same order (determinism, resume).
 */
void pf_ilv_order(uint32_t *order, size_t n, int shuffle_files, uint64_t seed,
		  int op_index, uint64_t epoch);

/*
 * Begin an epoch over `order` (v->nfiles entries, kept by pointer) with
 * nrec[f] records in file f (NULL: counts unknown; kept by pointer): every
 * slot empty, slot 0's turn.
 */
void pf_ilv_begin(pf_ilv *v, const uint32_t *order, const uint64_t *nrec);

/* The slow path of pf_ilv_next (ends files, passes turns, opens files). */
int pf_ilv_next_slow(pf_ilv *v);

/*
 * The slot that gives the next record: 0 <= k < cycle, its file and
 * record in v->slot[k] (a file with records: with counts known, empty
 * files are passed over here as tf.data does), or PF_ILV_END (< 0) when
 * the epoch is over.  The caller takes the record (pf_ilv_took) or, counts unknown,
 * reports the file's end (pf_ilv_end) before calling again.
 */
static inline int pf_ilv_next(pf_ilv *v)
{
	const pf_ilv_slot *s = &v->slot[v->cur];
	if (s->file >= 0 && s->rec < s->nrec)
		return v->cur;
	return pf_ilv_next_slow(v);
}

/* The record pf_ilv_next gave from slot k (the current one) is taken. */
static inline void pf_ilv_took(pf_ilv *v, int k)
{
	v->slot[k].rec++;
	if (++v->taken >= v->block) {
		v->taken = 0;
		v->cur = v->cur + 1 == v->cycle ? 0 : v->cur + 1;
	}
}

/* Counts unknown: slot k's file has no record left (found on reading the
 * one pf_ilv_next gave); the next pf_ilv_next closes it and passes. */
static inline void pf_ilv_end(pf_ilv *v, int k)
{
	v->slot[k].nrec = v->slot[k].rec;
}

/*
 * Whole turns of the cycle that can be taken at once (a plan's fast
 * path): the most m such that, from here, m rounds of every slot would
 * each take `block` records from every open slot and change nothing else
 * (no file ends or opens within them, and no slot takes more than room[k]
 * records, the caller's bound: e.g. to stop at its own block boundaries).
 * 0 when the turn is not at its start.  Counts must be known.
 */
uint64_t pf_ilv_rounds(const pf_ilv *v, const uint64_t *room);

/* Take m whole rounds (m <= pf_ilv_rounds): each open slot m * block
 * records further. */
void pf_ilv_skip_rounds(pf_ilv *v, uint64_t m);

#endif
