/*
 * sv_feed.h - the servable's side of the training device feed (push mode
 * of pf_devfeed.h), apart because pf_devfeed.h brings pipefeed.h, whose
 * pf_batch() (the batching op) is not serve/'s pf_batch: no file may
 * include both.  Internal to serve/.
 *
 * One per batch thread, used from that thread only:
 *   sv_feed_put     the batch from pinned src into the next free slot
 *                   (copy stream: wait the slot's done event, copy, record
 *                   its copy event), and make the compute stream wait for
 *                   that copy; *dev is the slot's device memory
 *   (the caller enqueues the forward pass reading *dev on compute)
 *   sv_feed_release record the slot's done event on compute
 */
#ifndef PF_SV_FEED_H
#define PF_SV_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "pf_device.h"
#include "pf_error.h"

typedef struct sv_feed sv_feed;

int sv_feed_new(sv_feed **f, pf_device *d, pf_stream *compute, int depth,
		size_t slot_bytes, int timeline, pf_error *err);
/* 0 with *dev and *slot (the feed's slot) set, or a negative code. */
int sv_feed_put(sv_feed *f, const void *src, size_t nbytes, uint32_t rows,
		void **dev, int *slot, pf_error *err);
int sv_feed_release(sv_feed *f, pf_error *err);
/* pf_devfeed_copy_times of the feed's slot. */
void sv_feed_copy_times(sv_feed *f, int slot, uint64_t *start, uint64_t *end);
void sv_feed_free(sv_feed *f);   /* NULL ok */

#endif /* PF_SV_FEED_H */
