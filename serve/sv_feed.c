/*
 * sv_feed.c - the servable's device feed (contract in sv_feed.h): a
 * pf_devfeed in push mode and the batch taken from it.
 */
#include "config.h"

#include <stdlib.h>

#include "pf_devfeed.h"
#include "sv_feed.h"

struct sv_feed {
	pf_devfeed *f;
	pf_devbatch cur;   /* taken by put, given back by release */
	int held;
};

int sv_feed_new(sv_feed **fp, pf_device *d, pf_stream *compute, int depth,
		size_t slot_bytes, int timeline, pf_error *err)
{
	*fp = NULL;
	sv_feed *f = calloc(1, sizeof(*f));
	if (!f)
		return pf_error_set(err, PF_ENOMEM, "servable: out of memory");
	pf_devfeed_opts fo = { .depth = depth, .slot_bytes = slot_bytes,
			       .timeline = timeline };
	int rc = pf_devfeed_new(&f->f, d, NULL, compute, &fo, err);
	if (rc < 0) {
		free(f);
		return rc;
	}
	*fp = f;
	return 0;
}

int sv_feed_put(sv_feed *f, const void *src, size_t nbytes, uint32_t rows,
		void **dev, int *slot, pf_error *err)
{
	if (f->held && sv_feed_release(f, err) < 0)
		return err ? err->code : PF_ESTATE;
	int rc = pf_devfeed_put(f->f, src, nbytes, rows, err);
	if (rc < 0)
		return rc;
	rc = pf_devfeed_next(f->f, &f->cur, err);
	if (rc != 0)
		return rc < 0 ? rc : pf_error_set(err, PF_ESTATE,
						  "servable: the device feed is empty after a put");
	f->held = 1;
	*dev = f->cur.data[0];
	*slot = f->cur.slot;
	return 0;
}

int sv_feed_release(sv_feed *f, pf_error *err)
{
	if (!f->held)
		return 0;
	f->held = 0;
	return pf_devfeed_release(f->f, &f->cur, err);
}

void sv_feed_copy_times(sv_feed *f, int slot, uint64_t *start, uint64_t *end)
{
	pf_devfeed_copy_times(f->f, slot, start, end);
}

void sv_feed_free(sv_feed *f)
{
	if (!f)
		return;
	sv_feed_release(f, NULL);
	pf_devfeed_free(f->f);
	free(f);
}
