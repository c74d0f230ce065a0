/*
 * source_damage.c - what the file sources (shards, tfrecord) do with
 * damage under skip_corrupt: the one warning per file, the max_corrupt
 * limit per epoch, and the refusal of a file whose loss cannot be counted
 * while a limit is set.  One wording for both sources.  And the counts
 * of what was skipped, per epoch as delivered (pf_source_damage.h).
 */
#include <stdatomic.h>
#include <stdio.h>

#include "pf_op.h"
#include "pf_source_damage.h"

void pf_source_warn_damage(pf_op *op, unsigned char *warned, const char *path,
			   const char *unit, const char *why)
{
	if (*warned)
		return;
	*warned = 1;
	fprintf(stderr, "pipefeed: %s: skipping damaged %s(s) of %s: %s\n",
		op->label, unit, path, why);
}

int pf_source_check_max_corrupt(pf_op *op, const pf_source_opts *o,
				uint64_t skipped, const char *why, pf_error *err)
{
	if (o->max_corrupt <= 0 || skipped <= (uint64_t)o->max_corrupt)
		return 0;
	return pf_op_error(op, err, PF_ECORRUPT,
			   "%s; more than %lld corrupt records (max_corrupt), %llu skipped this epoch",
			   why, (long long)o->max_corrupt, (unsigned long long)skipped);
}

int pf_source_check_countable(pf_op *op, const pf_source_opts *o, int rc,
			      const char *why, pf_error *err)
{
	if (o->max_corrupt <= 0)
		return 0;
	return pf_op_error(op, err, rc,
			   "%s (the records lost are unknown: more than max_corrupt %lld may be)",
			   why, (long long)o->max_corrupt);
}

/* ---- counts per epoch as delivered (pf_source_damage.h) ----------------- */

void pf_damage_init(pf_damage_count *d)
{
	d->epoch = 0;
	d->blocks = d->records = 0;
}

void pf_damage_settle(pf_op *op, pf_damage_count *d)
{
	if (!d->blocks && !d->records)
		return;
	if (d->epoch > atomic_load_explicit(&op->epoch_mark, memory_order_relaxed))
		return; /* read ahead: the iterator has not begun it */
	pf_stat_add(&op->st.corrupt_blocks, d->blocks);
	pf_stat_add(&op->st.skipped_records, d->records);
	d->blocks = d->records = 0;
}

void pf_damage_count_add(pf_op *op, pf_damage_count *d, uint64_t epoch, uint64_t blocks,
			 uint64_t records)
{
	if (epoch != d->epoch) {
		pf_damage_settle(op, d);
		d->blocks = d->records = 0; /* still held: an epoch never delivered */
		d->epoch = epoch;
	}
	d->blocks += blocks;
	d->records += records;
	pf_damage_settle(op, d);
}
