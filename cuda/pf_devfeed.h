/*
 * pf_devfeed.h - device prefetch: batches from a pf_iter copied to the device
 * on a copy stream, `depth` slots deep (2 = double buffering).
 *
 *   feeder thread:  b = pf_iter_next(it)                  (host batch)
 *                   wait (host) copy_ev[k]                (staging k reusable)
 *                   memcpy b -> pinned staging[k]; release b
 *                   copy stream: wait done_ev[k]          (compute left slot k)
 *                   copy stream: staging[k] -> device slot k; record copy_ev[k]
 *   consumer:       pf_devfeed_next: take slot k; compute stream waits copy_ev[k]
 *                   ... enqueue the step reading slot k on the compute stream ...
 *                   pf_devfeed_release: record done_ev[k] on the compute stream
 *
 * A slot is written only after the compute that read it has finished (the
 * copy stream waits on done_ev), and read only after its copy has finished
 * (the compute stream waits on copy_ev): neither wait blocks the host.
 * Released slots are refilled in the order they were released (FIFO), so
 * with depth >= 2 a copy overlaps the steps enqueued after the one it
 * waits for.  The
 * consumer blocks only when no batch is ready; that wait, when the compute
 * stream has nothing left to run, and the compute stream's own waits on
 * copy events are the stall (pf_devfeed_stats).
 *
 * Why a staging copy: pipefeed.h lets no consumer supply the batch buffer
 * allocator, so batches are built in pageable pool memory; the feeder copies
 * each into a pinned staging slot on its own thread (one host memcpy off the
 * training loop's path).  With a pinned-pool hook in the runtime the batch
 * would be built in staging[k] directly and this copy would go.
 *
 * Ownership and threads: the feed takes over `it` (only its thread calls
 * pf_iter_next until pf_devfeed_free; the caller frees it afterwards) and
 * uses `compute` (the caller's) for the waits and done events.  next and
 * release are called from one consumer thread.  A batch from next must be
 * released before the next call to pf_devfeed_free.
 */
#ifndef PF_DEVFEED_H
#define PF_DEVFEED_H

#include <stddef.h>
#include <stdint.h>

#include "pf_device.h"
#include "pipefeed.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_devfeed pf_devfeed;

typedef struct pf_devfeed_opts {
	int depth;            /* device slots, 1..16; 0 = 2 (double buffering);
			       * PF_AUTOTUNE = pf_devfeed_default_depth(d) */
	size_t slot_bytes;    /* bytes per slot; 0 = the first batch's size
			       * (a later, larger batch fails with PF_ELIMIT) */
	int64_t epochs;       /* epochs the feeder runs, then stops; 0 = no limit */
	int pinned_batches;   /* the pipeline builds batches in this device's
			       * pinned memory (pf_options.batch_alloc =
			       * pf_devfeed_pinned_alloc): copy straight from
			       * the batch, no staging copy; the batch is kept
			       * until its copy has completed */
	int zero_copy;        /* with pinned_batches, on a device whose memory
			       * is host memory (pf_device_reads_host: the cpu
			       * backend): no device slot and no copy; the
			       * compute stream reads the pipeline's batch in
			       * place, and the batch goes back to the pipeline
			       * once the step that used it is done (its slot's
			       * done event).  Elsewhere it is ignored: the copy
			       * is made (and in push mode: pf_devfeed_put
			       * copies).  pf_devfeed_stats.zero_copy says which */
	int timeline;         /* push mode: time each copy on the copy stream
			       * (two host functions a batch) for
			       * pf_devfeed_copy_times */
} pf_devfeed_opts;

/*
 * pf_options.batch_alloc / batch_free for batches built straight in pinned
 * host memory of a device (user = the pf_device *):
 *
 *	pf_options po = { .batch_alloc = pf_devfeed_pinned_alloc,
 *			  .batch_free = pf_devfeed_pinned_free, .alloc_user = dev };
 *	... pf_devfeed_opts fo = { .pinned_batches = 1 };
 *
 * The pipeline must be freed before the device is closed.
 */
void *pf_devfeed_pinned_alloc(void *dev, size_t bytes);
void pf_devfeed_pinned_free(void *dev, void *p, size_t bytes);

/* A batch in a device slot.  data[i] are device pointers into the slot,
 * laid out as the host batch was (structure-of-arrays, one buffer); with
 * zero copy, pointers into the host batch itself. */
typedef struct pf_devbatch {
	int slot;
	uint32_t batch;               /* B */
	uint64_t id;                  /* first sample's id */
	uint64_t seq;                 /* batches delivered before this one */
	uint64_t epoch;               /* epoch it belongs to (0 first) */
	const pf_schema *schema;
	void *data[PF_MAX_FIELDS];
	int64_t nitems[PF_MAX_FIELDS];
	size_t nbytes;
} pf_devbatch;

typedef struct pf_devfeed_stats {
	uint64_t batches, bytes;      /* delivered to the consumer */
	uint64_t host_wait_ns;        /* consumer blocked in next() */
	uint64_t stall_host_ns;       /* ... while the compute stream was idle */
	uint64_t stall_device_ns;     /* compute stream blocked on copy events */
	uint64_t feeder_input_ns;     /* feeder waiting in pf_iter_next */
	uint64_t feeder_slot_ns;      /* feeder waiting for a free slot */
	uint64_t copy_ns;             /* host-to-device copy time on the copy
				       * stream (device time, completed copies) */
	int zero_copy;                /* the batches are read in place (no
				       * copy: see pf_devfeed_opts.zero_copy) */
} pf_devfeed_stats;

/* Start the feeder thread on it.  Slots are allocated on the first batch. */
int pf_devfeed_new(pf_devfeed **f, pf_device *d, pf_iter *it,
		   pf_stream *compute, const pf_devfeed_opts *opts,
		   pf_error *err);

/*
 * The next batch into *b and make the compute stream wait for its copy.
 * Returns 0, PF_END at the end of an epoch (the following call starts the
 * next epoch's batches; after the last epoch of opts.epochs it keeps
 * returning PF_END), or the pipeline's / device's error (sticky).
 */
int pf_devfeed_next(pf_devfeed *f, pf_devbatch *b, pf_error *err);

/* Done with b: its slot may be refilled once the work enqueued on the
 * compute stream so far has run.  Never blocks. */
int pf_devfeed_release(pf_devfeed *f, pf_devbatch *b, pf_error *err);

/*
 * Push mode, for a producer that forms batches itself (pipe-serve's batch
 * threads): pf_devfeed_new with it == NULL and opts.slot_bytes > 0 starts
 * no feeder thread and allocates the slots at once; the producer hands
 * each batch in with pf_devfeed_put, and the consumer takes it with
 * pf_devfeed_next (PF_END when none was put) and releases it as above.
 * The protocol is the same: the copy stream waits for the done event of
 * the step that last read the slot, the compute stream for the copy.
 *
 * pf_devfeed_put: batch (rows, for the record) of nbytes from src, host
 * memory from pf_host_alloc, copied straight to the next free slot's
 * device memory (no staging copy).  src must not change until the step
 * that reads the batch has completed (the caller's own event after it
 * says when).  Waits for a free slot: producer and consumer on one thread
 * must release each batch before the next put.  PF_EINVAL when nbytes
 * exceeds slot_bytes, PF_ESTATE on a feed with a pipeline.
 *
 * pf_devfeed_copy_times: with opts.timeline, the host clock
 * (CLOCK_MONOTONIC, ns) when the copy stream began and ended slot's last
 * copy; valid once a step that read the slot has completed; 0s otherwise.
 */
int pf_devfeed_put(pf_devfeed *f, const void *src, size_t nbytes, uint32_t batch,
		   pf_error *err);
void pf_devfeed_copy_times(pf_devfeed *f, int slot, uint64_t *start, uint64_t *end);

/* Snapshot of the counters (any thread). */
void pf_devfeed_get_stats(pf_devfeed *f, pf_devfeed_stats *out);

/* Stop the feeder (even mid-epoch), wait for both streams' use of the
 * slots, free them.  NULL is a no-op. */
void pf_devfeed_free(pf_devfeed *f);

/* ==== defaults: what pipe-train's "auto" means ========================== */

/*
 * The device slots to use on d (what depth = PF_AUTOTUNE gives): 16 (the
 * most) on the cpu backend, 3 on cuda.  On the cpu backend the copy stream
 * (or, with zero copy, the feeder waiting for a step's done event) is a
 * thread that must be scheduled between compute steps, and its wake-up
 * jitter shows as stall unless batches run well ahead (Fashion-MNIST at
 * batch 64: 7-8% stall at depth 2, 5% at 4, 3.5% at 8; with zero copy and
 * a synthetic step at 80% of the pipeline's rate, a never-starves ratio of
 * 1.07 at 16 against 1.16 at 8, 8 of 8 alternated pairs better).  A GPU's
 * copy engine has no such jitter: double buffering plus one.  d must not
 * be NULL.
 */
int pf_devfeed_default_depth(const pf_device *d);

/*
 * Thread counts to start a pipeline that feeds a device with, on a host of
 * ncpus CPUs (0 or less: the CPUs online now):
 *   pf_devfeed_read_threads  pf_source_opts.num_parallel_reads (read and
 *                            decompress): half the CPUs, 1..8
 *   pf_devfeed_map_threads   pf_map_opts.num_parallel_calls (decode): a
 *                            quarter of the CPUs, 2..8 (two or more give
 *                            the map its feeder thread)
 * Up to 4 CPUs both return PF_AUTOTUNE.  Why not always AUTOTUNE: it raises
 * a knob one step per 30 ms window, too slowly for a run of a second on
 * many cores (an H100 host with 16 CPUs: the shards stayed at 1 thread and
 * the GPU waited 64% of the time at batch 1024); these are where
 * bench/pipeline_bench measured best there.  Never fail.
 */
int pf_devfeed_read_threads(int ncpus);
int pf_devfeed_map_threads(int ncpus);

#ifdef __cplusplus
}
#endif
#endif /* PF_DEVFEED_H */
