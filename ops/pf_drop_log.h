/*
 * pf_drop_log.h - reading the dropped-sample log of a map with isolate
 * (ops/drop_log.c): what the pipeline above needs to list the samples
 * (pf_iter_dropped) and count them.  Creating, clearing and adding are
 * declared with the op interface in pf_op.h.
 */
#ifndef PF_DROP_LOG_H
#define PF_DROP_LOG_H

#include <stddef.h>
#include <stdint.h>

struct pf_drop_log;
struct pf_dropped_sample;

/* Copy entry i (0 = the first dropped) of l into *out and return 0, or
 * return PF_END when l keeps fewer than i + 1 entries; either way *kept is
 * the number of entries l keeps (read under the log's lock, with the copy).
 * l must not be NULL. */
int pf_drop_log_get(struct pf_drop_log *l, size_t i, struct pf_dropped_sample *out,
		    size_t *kept);

/* All samples dropped into l since it was made or cleared, kept or not.
 * l must not be NULL. */
uint64_t pf_drop_log_total(struct pf_drop_log *l);

#endif /* PF_DROP_LOG_H */
