/*
 * drop_log.c - the dropped-sample log of a map with isolate: the first
 * PF_DROPPED_LOG_MAX samples whose map function failed, and the count of
 * all of them.  Written by the map op (ops/map.c, and a map fused into a
 * shards source), read by the pipeline (pf_iter_dropped, the stats file).
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_drop_log.h"
#include "pf_op.h"

struct pf_drop_log {
	pthread_mutex_t lock;
	_Atomic uint64_t total;       /* all drops, kept or not */
	size_t n;                     /* kept (at most PF_DROPPED_LOG_MAX) */
	pf_dropped_sample ent[PF_DROPPED_LOG_MAX];
};

struct pf_drop_log *pf_drop_log_new(void)
{
	struct pf_drop_log *l = calloc(1, sizeof(*l));
	if (l)
		pthread_mutex_init(&l->lock, NULL);
	return l;
}

void pf_drop_log_free(struct pf_drop_log *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

void pf_drop_log_clear(struct pf_drop_log *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->n = 0;
	atomic_store(&l->total, 0);
	pthread_mutex_unlock(&l->lock);
}

void pf_drop_log_add(struct pf_drop_log *l, uint64_t id, const char *path,
		     const char *op, const char *msg)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	atomic_fetch_add(&l->total, 1);
	if (l->n < PF_DROPPED_LOG_MAX) {
		pf_dropped_sample *d = &l->ent[l->n++];
		memset(d, 0, sizeof(*d));
		d->id = id;
		d->file = (uint32_t)pf_id_file(id);
		d->record = pf_id_rec(id);
		snprintf(d->path, sizeof(d->path), "%s", path ? path : "");
		snprintf(d->op, sizeof(d->op), "%s", op ? op : "");
		snprintf(d->msg, sizeof(d->msg), "%s", msg ? msg : "");
	}
	pthread_mutex_unlock(&l->lock);
}

int pf_drop_log_get(struct pf_drop_log *l, size_t i, pf_dropped_sample *out, size_t *kept)
{
	pthread_mutex_lock(&l->lock);
	size_t n = l->n;
	if (i < n)
		*out = l->ent[i];
	pthread_mutex_unlock(&l->lock);
	*kept = n;
	return i < n ? 0 : PF_END;
}

uint64_t pf_drop_log_total(struct pf_drop_log *l)
{
	return atomic_load(&l->total);
}
