/*
 * source_damage.c - what the file sources (shards, tfrecord) do with
 * damage under skip_corrupt: the one warning per file, the max_corrupt
 * limit per epoch, and the refusal of a file whose loss cannot be counted
 * while a limit is set.  One wording for both sources.
 */
#include <stdio.h>

#include "pf_op.h"

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
