/*
 * interleave.c - the file sources' interleave, tf.data's algorithm (see
 * pf_interleave.h for the rules and the contract).  The hot path
 * (pf_ilv_next, pf_ilv_took) is inline in the header; here: set-up, the
 * epoch's file order, the turns that end or open files, and the whole-round
 * jumps a plan takes where nothing happens.
 */
#include <stdlib.h>
#include <string.h>

#include "pf_interleave.h"
#include "pf_rng.h"

int pf_ilv_init(pf_ilv *v, int cycle, int block, size_t nfiles, pf_error *err)
{
	memset(v, 0, sizeof(*v));
	v->cycle = cycle > 0 ? cycle : 1;
	v->block = block > 0 ? block : 1;
	v->nfiles = (uint32_t)nfiles;
	/* whole cache lines of their own: the consumer writes a slot per
	 * record, and a neighbour on its line that reader threads write
	 * (a block buffer's state) would cost it a miss each time */
	size_t bytes = ((size_t)v->cycle * sizeof(*v->slot) + 63) & ~(size_t)63;
	v->slot = aligned_alloc(64, bytes);
	if (!v->slot)
		return pf_error_set(err, PF_ENOMEM, "interleave: out of memory (%d slots)", v->cycle);
	memset(v->slot, 0, bytes);
	for (int k = 0; k < v->cycle; k++)
		v->slot[k].file = -1;
	return 0;
}

void pf_ilv_free(pf_ilv *v)
{
	if (!v)
		return;
	free(v->slot);
	v->slot = NULL;
}

void pf_ilv_order(uint32_t *order, size_t n, int shuffle_files, uint64_t seed,
		  int op_index, uint64_t epoch)
{
	for (uint32_t i = 0; i < n; i++)
		order[i] = i;
	if (shuffle_files) {
		/* the stream formula both sources always used: their orders
		 * (and so old seeds' file orders) are kept */
		pf_rng r;
		pf_rng_seed(&r, seed, ((uint64_t)op_index << 40) ^ epoch ^ 0x5eed);
		pf_rng_shuffle_u32(&r, order, (uint32_t)n);
	}
}

void pf_ilv_begin(pf_ilv *v, const uint32_t *order, const uint64_t *nrec)
{
	v->order = order;
	v->nrec = nrec;
	v->cur = v->taken = v->nopen = 0;
	v->next_file = 0;
	for (int k = 0; k < v->cycle; k++) {
		v->slot[k].file = -1;
		v->slot[k].rec = v->slot[k].nrec = 0;
	}
}

/* The turn passes to the next slot. */
static void pass(pf_ilv *v)
{
	v->taken = 0;
	v->cur = v->cur + 1 == v->cycle ? 0 : v->cur + 1;
}

int pf_ilv_next_slow(pf_ilv *v)
{
	for (;;) {
		pf_ilv_slot *s = &v->slot[v->cur];
		if (s->file >= 0) {
			if (s->rec < s->nrec)
				return v->cur;
			/* at its end: closed, and the turn passes (the slot
			 * takes the next file at its next visit) */
			s->file = -1;
			v->nopen--;
			pass(v);
		} else if (v->next_file < v->nfiles) {
			/* an empty slot takes the next file, read in this visit */
			uint32_t f = v->next_file++;
			s->file = (int32_t)f;
			s->rec = 0;
			s->nrec = v->nrec ? v->nrec[v->order[f]] : PF_ILV_UNKNOWN;
			v->nopen++;
		} else if (!v->nopen) {
			return PF_ILV_END;
		} else {
			pass(v);
		}
	}
}

uint64_t pf_ilv_rounds(const pf_ilv *v, const uint64_t *room)
{
	if (v->taken || !v->nopen || !v->nrec)
		return 0;
	uint64_t m = UINT64_MAX;
	for (int k = 0; k < v->cycle; k++) {
		const pf_ilv_slot *s = &v->slot[k];
		if (s->file < 0) {
			if (v->next_file < v->nfiles)
				return 0; /* it would take a file */
			continue;
		}
		uint64_t left = s->nrec - s->rec;
		if (room[k] < left)
			left = room[k];
		if (s->rec >= s->nrec || left < (uint64_t)v->block)
			return 0; /* it ends (or the caller stops) within a round */
		if (left / (uint64_t)v->block < m)
			m = left / (uint64_t)v->block;
	}
	return m == UINT64_MAX ? 0 : m;
}

void pf_ilv_skip_rounds(pf_ilv *v, uint64_t m)
{
	for (int k = 0; k < v->cycle; k++)
		if (v->slot[k].file >= 0)
			v->slot[k].rec += m * (uint64_t)v->block;
}
