/*
 * position.c - iterator positions (checkpoint / resume): the ops' epoch
 * counters at the start of recent epochs, and the fast-forward that brings
 * a new iterator to a recorded position.
 */
#include <stdio.h>
#include <string.h>

#include "pf_pipeline_int.h"

/* Remember the ops' epoch counters as the start of it->epoch. */
void pf_iter_snap_epoch(pf_iter *it)
{
	if (!it->pos_ok)
		return;
	pthread_mutex_lock(&it->pos_lock);
	int k = (int)(it->epoch % PF_POS_RING);
	it->ring[k].valid = 1;
	it->ring[k].epoch = it->epoch;
	for (int i = 0; i < it->p->nops; i++)
		it->ring[k].op_epoch[i] = it->p->ops[i]->epoch_mark;
	it->pos_epoch = it->epoch;
	pthread_mutex_unlock(&it->pos_lock);
}

/* Fast-forward a new iterator to pos (see pf_iter_new_at). */
static int seek(pf_iter *it, const pf_iter_pos *pos, pf_error *err)
{
	pf_elem e;
	for (uint64_t k = 0; k < pos->delivered; k++) {
		int rc = pf_iter_next(it, &e, err);
		if (rc == PF_END)
			return pf_error_set(err, PF_EINVAL,
					    "position: epoch %llu has %llu elements, the position is after %llu",
					    (unsigned long long)pos->epoch, (unsigned long long)k,
					    (unsigned long long)pos->delivered);
		if (rc < 0)
			return rc;
		pf_elem_release(&e);
	}
	if (pos->at_end) {
		int rc = pf_iter_next(it, &e, err);
		if (rc == 0) {
			pf_elem_release(&e);
			return pf_error_set(err, PF_EINVAL,
					    "position: epoch %llu has more than the %llu elements the position says it ended after",
					    (unsigned long long)pos->epoch,
					    (unsigned long long)pos->delivered);
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

int pf_iter_new_at(pf_iter **itp, pf_pipeline *p, const pf_iter_pos *pos,
		   pf_error *err)
{
	if (!pos) {
		*itp = NULL;
		return pf_error_set(err, PF_EINVAL, "position: NULL");
	}
	/* another element order: an epoch's start or end means the same */
	if (pos->order != PF_POS_ORDER && pos->delivered && !pos->at_end) {
		*itp = NULL;
		return pf_error_set(err, PF_EVERSION,
				    "position from %s interleave order (version %u, this build's is %d): %llu elements into epoch %llu would resume at other records; resume from an epoch's start or end, or start again",
				    pos->order < PF_POS_ORDER ? "an older" : "a newer", pos->order < 2 ? 1 : pos->order,
				    PF_POS_ORDER, (unsigned long long)pos->delivered,
				    (unsigned long long)pos->epoch);
	}
	int rc = pf_iter_start(itp, p, pos, err);
	if (rc)
		return rc;
	if ((rc = seek(*itp, pos, err)) < 0) {
		pf_iter_free(*itp);
		*itp = NULL;
	}
	return rc;
}

int pf_iter_position(const pf_iter *it, pf_iter_pos *pos, pf_error *err)
{
	memset(pos, 0, sizeof(*pos));
	if (!it)
		return pf_error_set(err, PF_EINVAL, "position: no iterator");
	int rc = pf_iter_epoch_start(it, it->epoch, it->delivered, pos, err);
	if (rc == 0)
		pos->at_end = it->ended ? 1 : 0;
	return rc;
}

int pf_iter_epoch_start(const pf_iter *it, uint64_t epoch, uint64_t n,
			pf_iter_pos *pos, pf_error *err)
{
	memset(pos, 0, sizeof(*pos));
	if (!it)
		return pf_error_set(err, PF_EINVAL, "position: no iterator");
	if (!it->pos_ok)
		return pf_error_set(err, PF_ELIMIT, "position: the pipeline has %d ops, positions keep at most %d",
				    it->p->nops, PF_POS_MAX_OPS);
	pf_iter *w = (pf_iter *)it; /* for the lock only */
	int rc = 0;
	pthread_mutex_lock(&w->pos_lock);
	int k = (int)(epoch % PF_POS_RING);
	if (epoch > it->pos_epoch) {
		rc = pf_error_set(err, PF_ESTATE, "position: epoch %llu has not begun (the iterator is in epoch %llu)",
				  (unsigned long long)epoch, (unsigned long long)it->pos_epoch);
	} else if (!it->ring[k].valid || it->ring[k].epoch != epoch) {
		rc = pf_error_set(err, PF_ELIMIT, "position: epoch %llu is too far behind (the iterator is in epoch %llu and keeps the last %d)",
				  (unsigned long long)epoch, (unsigned long long)it->pos_epoch,
				  PF_POS_RING);
	} else {
		pos->epoch = epoch;
		pos->delivered = n;
		pos->nops = (uint32_t)it->p->nops;
		pos->order = PF_POS_ORDER;
		memcpy(pos->op_epoch, it->ring[k].op_epoch, sizeof(pos->op_epoch));
	}
	pthread_mutex_unlock(&w->pos_lock);
	return rc;
}
