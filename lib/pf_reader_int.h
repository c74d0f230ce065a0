/*
 * pf_reader_int.h - the reader's state, shared by reader.c (requests,
 * submission, the API) and reader_buf.c (the buffer pool).  Internal to
 * lib/.
 */
#ifndef PF_READER_INT_H
#define PF_READER_INT_H

#include <liburing.h>
#include <stddef.h>

#include "pf_reader.h"

#define RD_ALIGN        4096u            /* O_DIRECT alignment of offsets, lengths, memory */
#define RD_MAX_IO       (1u << 30)       /* largest single read syscall */
#define RD_NCLASS       9                /* 4 KiB .. 1 MiB, powers of two */
#define RD_BIG_UNIT     (1u << 20)       /* larger buffers: multiples of 1 MiB */
#define RD_FIXED_SLOTS  1024u            /* registered-buffer table size */
#define RD_FIXED_MAX    (1u << 30)       /* kernel limit on one registered buffer */
#define RD_MAX_QD       4096u
#define RD_MAX_RA       4096u
#define RD_ESHORT       1                /* rreq.err: the file ended before the extent did */


struct rbuf {
	void *mem;          /* RD_ALIGN-aligned, cap bytes */
	size_t cap;
	int fixed;          /* index in the ring's registered-buffer table, or -1 */
	struct rbuf *next;  /* pool free list */
};

enum rq_state { RQ_FREE, RQ_INFLIGHT, RQ_DONE, RQ_CLAIMED, RQ_ORPHAN };

struct rreq {
	int stream;
	size_t seq;
	pf_extent ext;
	int fd;             /* descriptor the read goes through */
	int direct;         /* fd was opened with O_DIRECT */
	uint64_t aoff;      /* where the read starts: ext.offset, rounded down for O_DIRECT */
	size_t need;        /* bytes from aoff that cover the extent */
	size_t want;        /* bytes asked for from aoff (need rounded up for O_DIRECT) */
	size_t done;        /* bytes that came so far */
	int err;            /* 0, a negative errno, or RD_ESHORT */
	enum rq_state state;
	struct rbuf *buf;   /* NULL for a 0-length extent */
	struct rreq *next;  /* free list */
	struct rreq *all;   /* every request allocated, for pf_reader_free */
};

struct rstream {
	char *path;
	int fd;             /* -1 once closed */
	int fd_buf;         /* buffered descriptor once O_DIRECT was refused at read time */
	int direct;         /* fd was opened with O_DIRECT */
	int closed;
	pf_extent *ext;
	size_t n;
	size_t next_sub;    /* next extent to start */
	size_t next_claim;  /* next extent to hand out */
	struct rreq **slot; /* [readahead]: extent seq is in slot[seq % readahead] */
};

struct pf_reader {
	pf_reader_opts o;
	int uring;                     /* 1: io_uring backend, 0: pread */
	struct io_uring ring;
	unsigned inflight;             /* reads in the kernel, orphans included */
	unsigned pending;              /* SQEs prepared, not yet submitted */

	struct rstream *st;
	size_t nst, capst;
	int *active;                   /* streams with extents not yet started */
	size_t nactive, rr;

	size_t held;                   /* bytes of buffers owned by requests */
	size_t pooled;                 /* bytes of buffers in the pool */
	struct rbuf *pool[RD_NCLASS + 1];

	int fixed_avail, fixed_on;     /* sparse table registered / used for new buffers */
	int fixed_free[RD_FIXED_SLOTS];
	unsigned nfixed_free;
	unsigned long nfixed_reads;

	struct rreq *free_req, *all_req;
	size_t max_io;
	pf_reader_fault_fn fault;
	void *fault_user;
};

/* ---- the buffer pool (reader_buf.c) ----
 * Buffers are RD_ALIGN-aligned, reused by size class, and counted in
 * r->held (owned by requests) and r->pooled (free in the pool). */

/* A buffer of at least n bytes for a request, from the pool or new.
 * Without `demand` it fails (NULL) when held bytes would pass max_bytes; with
 * it only when memory runs out.  Pooled buffers are freed as needed so that
 * held + pooled stays within max_bytes.  Registered with the ring when
 * registered buffers are on and a slot is free. */
struct rbuf *pf_rdbuf_get(pf_reader *r, size_t n, int demand);

/* Give a request's buffer back: to the pool, or freed if the pool is full. */
void pf_rdbuf_put(pf_reader *r, struct rbuf *b);

/* Free a buffer that no request uses, unregistering it first. */
void pf_rdbuf_destroy(pf_reader *r, struct rbuf *b);

/* Free every pooled buffer (pf_reader_free). */
void pf_rdbuf_pool_free(pf_reader *r);

#endif /* PF_READER_INT_H */
