/*
 * serve_stats.h - pipe-serve's stats file (serve_stats.c): a serving run
 * in the format pipe-stat reads (doc/STATS.md), one step per batch.
 */
#ifndef PF_SERVE_STATS_H
#define PF_SERVE_STATS_H

#include <stdint.h>

struct pf_stats;

/* Create the file at path, labelled with the command line, marked as a
 * serving run (the consumer event "serving": old = max_batch_size, new =
 * batch_timeout_us, -1 in adaptive mode); NULL with the reason on stderr. */
struct pf_stats *serve_stats_open(const char *path, int argc, char **argv,
				  int max_batch_size, long long timeout_us);

/* One batch: its oldest request's queue wait (the step's stall), its
 * compute, its copy (h2d_ns, and copy_lead_ns: how long before now it
 * began; 0s when not timed), its rows from requests (the step's
 * samples).  Any thread. */
void serve_stats_batch(struct pf_stats *st, uint64_t wait_ns, uint64_t compute_ns,
		       uint64_t h2d_ns, uint64_t copy_lead_ns, uint32_t rows);

/* An adaptive change of the batch size limit (a consumer event, knob
 * batch_limit). */
void serve_stats_limit(struct pf_stats *st, int from, int to, const char *why);

/* Finish the file; 0 or -1 with the reason on stderr. */
int serve_stats_close(struct pf_stats *st);

#endif /* PF_SERVE_STATS_H */
