/*
 * pf_source_damage.h - the damage counters of the file sources (shards,
 * tfrecord), per epoch as delivered.
 *
 * A source can run ahead of the iterator's epoch: a shuffle whose input
 * ended begins the input's next epoch while it drains (pf_op_reset_ahead),
 * so the source meets that epoch's damaged blocks before the iterator has
 * begun it, and maybe in an epoch the run never delivers.  Counting them
 * in the stage's pf_op_stats then would count the last epoch's damage
 * twice (a run of N epochs read N + 1 epochs' worth).  So a source counts
 * into a pf_damage_count tagged with its epoch, and the counts reach
 * op->st (corrupt_blocks, skipped_records) once the iterator has begun
 * that epoch (its epoch is <= op->epoch_mark, which pf_op_reset and
 * pf_op_mark_epochs set, a reset ahead does not): at once when the source
 * is not ahead, else at the source's next count, settle or reset after
 * the iterator caught up.  Counts of an epoch read ahead and abandoned are
 * dropped.  The per-epoch max_corrupt limit is the source's own business
 * (it counts the epoch it reads).
 */
#ifndef PF_SOURCE_DAMAGE_H
#define PF_SOURCE_DAMAGE_H

#include <stdint.h>

#include "pf_op.h"

typedef struct pf_damage_count {
	uint64_t epoch;           /* the source epoch of the counts held */
	uint64_t blocks, records; /* counted in it, not in op->st yet */
} pf_damage_count;

/* Start counting afresh (iterator start): nothing held. */
void pf_damage_init(pf_damage_count *d);

/* `blocks` damaged blocks losing `records` records, met in source epoch
 * `epoch` (the op's epoch counter as of that epoch's records): held, or
 * counted in op->st when the iterator has begun that epoch.  Counts held
 * for an earlier epoch are settled first (or dropped: never delivered). */
void pf_damage_count_add(pf_op *op, pf_damage_count *d, uint64_t epoch, uint64_t blocks,
			 uint64_t records);

/* Move counts held into op->st if the iterator has begun their epoch
 * (cheap: call it at each block or file the source begins). */
void pf_damage_settle(pf_op *op, pf_damage_count *d);

#endif
