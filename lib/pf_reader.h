/*
 * pf_reader.h - many reads in flight over many files, results in per-file order.
 *
 * The reader is the shards op's I/O engine.  A caller registers *streams*:
 * one file and the list of byte ranges (extents) to read from it, in order
 * (for a shard: each block's header+payload).  The reader keeps up to
 * `queue_depth` reads in flight across all streams through io_uring, at most
 * `readahead` per stream, and pf_reader_next(stream) hands back that
 * stream's next extent, in the stream's order, waiting only if it has not
 * completed yet.  Interleaving streams (cycle_length) is the caller's
 * choice: it asks streams in whatever order it likes.
 *
 * If io_uring cannot be set up (io_uring_queue_init fails, as in some
 * sandboxes) the reader falls back to pread, printing one warning line to
 * stderr once per process; pf_reader_backend() says which is in use.
 *
 * Threads: one pf_reader is driven by one thread at a time.
 * Errors: a failed or short read is returned by pf_reader_next for that
 * extent, naming the file, the offset and the reason; other streams go on.
 */
#ifndef PF_READER_H
#define PF_READER_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pf_reader pf_reader;

/*
 * Memory: buffers held by the reader (reads in flight, done but unclaimed, or
 * handed out and not yet released) stay within max_bytes for read-ahead.  The
 * read pf_reader_next is waiting for is started even over the budget (nothing
 * else could free memory while the caller waits), so an extent larger than
 * max_bytes is readable and a stream is never starved by the others'
 * read-ahead: the bound is max_bytes + one extent + what the caller holds.
 * Buffers are pooled: steady state allocates nothing per read.
 */
typedef struct pf_reader_opts {
	unsigned queue_depth;  /* reads in flight in all; 0 = 32 (at most 4096) */
	unsigned readahead;    /* reads in flight or done-but-unclaimed per stream; 0 = 4 */
	size_t max_bytes;      /* bound on buffered bytes in all (see above); 0 = 64 MiB */
	int o_direct;          /* open with O_DIRECT, read through aligned buffers (a
				  file whose filesystem refuses O_DIRECT is read buffered) */
	int force_pread;       /* skip io_uring (tests of the fallback) */
} pf_reader_opts;

/* One byte range to read: [offset, offset + len). */
typedef struct pf_extent {
	uint64_t offset;
	uint32_t len;
	uint32_t tag;          /* caller's (e.g. block number); returned with the data */
} pf_extent;

/* A completed read, valid until pf_reader_release. */
typedef struct pf_read {
	int stream;
	size_t seq;            /* position of the extent in its stream */
	uint32_t tag;
	uint64_t offset;
	const void *data;
	size_t len;
	void *priv_;           /* reader's */
} pf_read;

int pf_reader_new(pf_reader **r, const pf_reader_opts *opts, pf_error *err);
/*
 * Cancel what is in flight (waits for the kernel to finish with the reads'
 * buffers), close the streams' files, free.  Reads handed out and not
 * released are freed too: their data pointers become invalid.  NULL is a no-op.
 */
void pf_reader_free(pf_reader *r);
/* "io_uring" or "pread". */
const char *pf_reader_backend(const pf_reader *r);

/*
 * Open `path` and register the extents to read from it (copied).  Returns
 * the stream id (>= 0) or a negative PF_E* code (file missing: PF_ENOENT,
 * message names the path).  Reads start at once, within the limits.
 */
int pf_reader_add_stream(pf_reader *r, const char *path,
			 const pf_extent *ext, size_t n, pf_error *err);

/*
 * The stream's next extent, in order.  Returns 0 with *out filled, PF_END
 * when the stream has no more extents, or a negative code for that extent
 * (its read failed or came back short; message: file, offset, reason).
 * After an error the stream moves on to its next extent, so a caller that
 * skips damaged data can continue (PF_ENOMEM excepted: the same extent is
 * tried again by the next call).  *err is cleared on entry.  A stream closed
 * with pf_reader_close_stream gives PF_END; an unknown stream PF_EINVAL.
 */
int pf_reader_next(pf_reader *r, int stream, pf_read *out, pf_error *err);

/* Give a completed read's buffer back (required; it bounds memory). */
void pf_reader_release(pf_reader *r, pf_read *rd);

/*
 * Stop a stream early: drop its reads (those in the kernel are discarded when
 * they complete), close its file.  Reads already handed out stay valid until
 * released.  Idempotent.
 */
void pf_reader_close_stream(pf_reader *r, int stream);

/*
 * Fault injection for tests (both backends): when set, fn is called once for
 * every extent whose read completed without error (0-length ones included),
 * with the stream's path and the extent's offset and length; a negative errno
 * return makes the read fail with that errno (PF_EIO for -EIO), a value
 * 0 <= v < len makes it short (v bytes: PF_ETRUNC, as if the file ended
 * there), anything else leaves it alone.  NULL fn turns it off.
 */
typedef long (*pf_reader_fault_fn)(void *user, const char *path,
				   uint64_t offset, size_t len);
void pf_reader_set_fault(pf_reader *r, pf_reader_fault_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif /* PF_READER_H */
