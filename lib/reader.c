/*
 * reader.c - the reader of pf_reader.h: many reads in flight over many
 * files through io_uring, handed back in each stream's order; a pread
 * backend when io_uring cannot be set up.
 *
 * The pieces, in the order they appear (the buffer pool, aligned buffers
 * reused by size class, bounded by max_bytes, optionally registered with
 * the ring for read_fixed, is in reader_buf.c):
 *   requests      - one per extent being read: where it reads, how much came,
 *                   the error if any; recycled through a free list;
 *   progress      - what a read's result means (done, resubmit the rest,
 *                   short read at end of file, error), shared by both backends;
 *   submission    - fill(): start reads round-robin over the streams within
 *                   queue_depth / readahead / max_bytes; reap(): completions;
 *   the API.
 *
 * Memory bound: the bytes of buffers held by requests (in flight, done but
 * unclaimed, or handed out and not yet released) stay within max_bytes for
 * readahead.  The one read the caller is blocked on (the head of the stream
 * it asked for) is started even when that would go over the budget, since
 * nothing the reader can do would free memory while the caller waits: that
 * makes an extent larger than max_bytes readable and rules out a deadlock
 * when other streams' read-ahead fills the budget.  So the bound is
 * max_bytes + one extent + whatever the caller holds unreleased.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pf_reader.h"
#include "pf_reader_int.h"

/*
 * Registered buffers (read_fixed): bench/reader_bench, 256 MiB as 256 KiB
 * extents at queue depth 32, three runs of medians of 5 on the dev VM:
 * buffered reads (page cache warm or cold) showed no steady gain (+4%, -3%,
 * -20% warm; +10%, -6%, -4% cold: noise), O_DIRECT gained in 4 of 6 (+46%,
 * +23%, +16% warm; +6%, +1%, -5% cold), as expected: they save the per-read
 * page pinning that only O_DIRECT does.  So they are on for O_DIRECT
 * readers, off otherwise; pf__reader_debug(r, "fixed", 0|1) overrides.
 */

int pf__reader_debug(pf_reader *r, const char *key, long value);

static const unsigned char rd_empty[1];

/* --------------------------------------------------------------- requests */

static struct rreq *rq_get(pf_reader *r)
{
	struct rreq *q = r->free_req;

	if (q) {
		r->free_req = q->next;
	} else {
		q = calloc(1, sizeof(*q));
		if (!q)
			return NULL;
		q->all = r->all_req;
		r->all_req = q;
	}
	q->buf = NULL;
	q->done = 0;
	q->err = 0;
	q->state = RQ_FREE;
	return q;
}

static void rq_put(pf_reader *r, struct rreq *q)
{
	if (q->buf)
		pf_rdbuf_put(r, q->buf);
	q->buf = NULL;
	q->state = RQ_FREE;
	q->next = r->free_req;
	r->free_req = q;
}

/* --------------------------------------------------------------- progress */

enum { RQ_AGAIN, RQ_END };

/*
 * The buffered descriptor of a stream whose O_DIRECT reads the filesystem
 * refuses (EINVAL at read time); opened once.  -1 if it cannot be opened.
 */
static int stream_buffered_fd(struct rstream *s)
{
	if (s->fd_buf < 0)
		s->fd_buf = open(s->path, O_RDONLY | O_CLOEXEC);
	if (s->fd_buf >= 0)
		s->direct = 0;
	return s->fd_buf;
}

/*
 * Account one read's result `res` (bytes, or a negative errno) to q.
 * RQ_AGAIN: read the rest (q->done says from where); RQ_END: q is complete,
 * q->err says how.  Short reads are normal (io_uring and pread may return
 * fewer bytes than asked); only running out of file before the extent's end
 * is an error (RD_ESHORT).
 */
static int rq_account(pf_reader *r, struct rreq *q, long res)
{
	struct rstream *s = &r->st[q->stream];

	if (res < 0) {
		if (res == -EAGAIN || res == -EINTR)
			return RQ_AGAIN;
		if (res == -EINVAL && q->direct && stream_buffered_fd(s) >= 0) {
			q->fd = s->fd_buf;
			q->direct = 0;
			return RQ_AGAIN;
		}
		q->err = (int)res;
		return RQ_END;
	}
	if (res == 0) {
		q->err = RD_ESHORT; /* end of file before the extent's end */
		return RQ_END;
	}
	q->done += (size_t)res;
	if (q->done >= q->need)
		return RQ_END;
	/* O_DIRECT moves whole blocks except at the end of the file. */
	if (q->direct && q->done % RD_ALIGN) {
		q->err = RD_ESHORT;
		return RQ_END;
	}
	return RQ_AGAIN;
}

/* q's read is over: apply the fault hook, mark it done. */
static void rq_finish(pf_reader *r, struct rreq *q)
{
	q->state = RQ_DONE;
	if (q->err || !r->fault)
		return;
	long v = r->fault(r->fault_user, r->st[q->stream].path, q->ext.offset, q->ext.len);
	if (v < 0) {
		q->err = v < -4095 ? -EIO : (int)v;
	} else if ((unsigned long)v < q->ext.len) {
		q->err = RD_ESHORT;
		q->done = (size_t)(q->ext.offset - q->aoff) + (size_t)v;
	}
}

/* Fill *err for a failed request; returns the code. */
static int rq_error(pf_reader *r, struct rreq *q, pf_error *err)
{
	const char *path = r->st[q->stream].path;
	unsigned long long off = q->ext.offset;

	if (q->err == RD_ESHORT) {
		uint64_t end = q->aoff + q->done;
		uint64_t got = end > q->ext.offset ? end - q->ext.offset : 0;

		if (got > q->ext.len)
			got = q->ext.len;
		return pf_error_set(err, PF_ETRUNC,
				    "%s: offset %llu: short read: got %llu of %u bytes (file ends at %llu?)",
				    path, off, (unsigned long long)got, q->ext.len,
				    (unsigned long long)end);
	}
	return pf_error_set(err, pf_error_from_errno(q->err),
			    "%s: offset %llu: read of %u bytes: %s", path, off,
			    q->ext.len, strerror(-q->err));
}

/* ------------------------------------------------------------- submission */

/* Prepare the SQE that reads the rest of q (at most max_io bytes). */
static void rq_issue(pf_reader *r, struct rreq *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	size_t len = q->want - q->done;
	char *dst = (char *)q->buf->mem + q->done;

	while (!sqe) {
		/* cannot happen while inflight <= SQ size, but be safe */
		io_uring_submit(&r->ring);
		r->pending = 0;
		sqe = io_uring_get_sqe(&r->ring);
	}
	if (len > r->max_io)
		len = r->max_io;
	if (r->fixed_on && q->buf->fixed >= 0) {
		io_uring_prep_read_fixed(sqe, q->fd, dst, (unsigned)len, q->aoff + q->done,
					 q->buf->fixed);
		r->nfixed_reads++;
	} else {
		io_uring_prep_read(sqe, q->fd, dst, (unsigned)len, q->aoff + q->done);
	}
	io_uring_sqe_set_data(sqe, q);
	r->pending++;
}

/* Read q to its end with pread (the fallback backend), then finish it. */
static void rq_pread(pf_reader *r, struct rreq *q)
{
	for (;;) {
		size_t len = q->want - q->done;

		if (len > r->max_io)
			len = r->max_io;
		ssize_t got = pread(q->fd, (char *)q->buf->mem + q->done, len,
				    (off_t)(q->aoff + q->done));
		if (rq_account(r, q, got < 0 ? -(long)errno : (long)got) == RQ_END)
			break;
	}
	rq_finish(r, q);
}

/*
 * Start the stream's next extent (s->next_sub).  Returns 1 when started, 0
 * when there is no room now (memory or queue; never with `demand` unless the
 * queue is full), PF_ENOMEM when memory runs out.  With io_uring the read is
 * queued (not yet submitted); with pread it is read at once.
 */
static int rq_start(pf_reader *r, int sid, int demand)
{
	struct rstream *s = &r->st[sid];
	pf_extent *e = &s->ext[s->next_sub];
	struct rreq *q;

	if (r->uring && e->len && r->inflight >= r->o.queue_depth)
		return 0;
	q = rq_get(r);
	if (!q)
		return PF_ENOMEM;
	q->stream = sid;
	q->seq = s->next_sub;
	q->ext = *e;
	q->fd = s->fd_buf >= 0 ? s->fd_buf : s->fd;
	q->direct = s->direct && q->fd == s->fd;
	q->aoff = q->direct ? e->offset & ~(uint64_t)(RD_ALIGN - 1) : e->offset;
	q->need = (size_t)(e->offset + e->len - q->aoff);
	q->want = q->direct ? (q->need + RD_ALIGN - 1) & ~(size_t)(RD_ALIGN - 1) : q->need;
	if (e->len) {
		q->buf = pf_rdbuf_get(r, q->want, demand);
		if (!q->buf) {
			rq_put(r, q);
			return demand ? PF_ENOMEM : 0;
		}
	}
	s->slot[q->seq % r->o.readahead] = q;
	s->next_sub++;
	if (!e->len) {
		rq_finish(r, q);
	} else if (r->uring) {
		q->state = RQ_INFLIGHT;
		r->inflight++;
		rq_issue(r, q);
	} else {
		rq_pread(r, q);
	}
	return 1;
}

static void submit(pf_reader *r)
{
	if (r->pending) {
		int ret = io_uring_submit(&r->ring);

		if (ret >= 0)
			r->pending = 0;
	}
}

/*
 * Start read-ahead: one read per stream per round, round-robin, until the
 * queue, the streams' readahead or the memory budget says stop; submit.
 */
static void fill(pf_reader *r)
{
	int progress = 1;

	if (!r->uring)
		return;
	while (progress && r->nactive && r->inflight < r->o.queue_depth) {
		progress = 0;
		for (size_t k = 0; k < r->nactive && r->inflight < r->o.queue_depth; k++) {
			int sid = r->active[(r->rr + k) % r->nactive];
			struct rstream *s = &r->st[sid];

			if (s->next_sub < s->n && s->next_sub - s->next_claim < r->o.readahead &&
			    rq_start(r, sid, 0) > 0)
				progress = 1;
		}
		/* streams with every extent started leave the round */
		size_t j = 0;
		for (size_t k = 0; k < r->nactive; k++) {
			struct rstream *s = &r->st[r->active[k]];

			if (!s->closed && s->next_sub < s->n)
				r->active[j++] = r->active[k];
		}
		r->nactive = j;
		if (r->nactive)
			r->rr = (r->rr + 1) % r->nactive;
	}
	submit(r);
}

/* One completion: account it, resubmit the rest or finish the request. */
static void complete(pf_reader *r, struct rreq *q, int res)
{
	if (q->state == RQ_ORPHAN) {
		r->inflight--;
		rq_put(r, q);
		return;
	}
	if (rq_account(r, q, res) == RQ_AGAIN) {
		rq_issue(r, q);
		return;
	}
	r->inflight--;
	rq_finish(r, q);
}

/* Submit what is prepared, wait for at least one completion (if `wait`), process them all. */
static void reap(pf_reader *r, int wait)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	if (wait) {
		int ret;

		do
			ret = io_uring_submit_and_wait(&r->ring, 1);
		while (ret == -EINTR);
		if (ret >= 0)
			r->pending = 0;
	}
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		complete(r, io_uring_cqe_get_data(cqe), cqe->res);
		n++;
	}
	io_uring_cq_advance(&r->ring, n);
	submit(r);
}

/* -------------------------------------------------------------------- API */

static void warn_fallback(int ret)
{
	static int warned;

	if (!__atomic_exchange_n(&warned, 1, __ATOMIC_SEQ_CST))
		fprintf(stderr, "pipefeed: io_uring unavailable (%s); falling back to pread\n",
			strerror(-ret));
}

int pf_reader_new(pf_reader **out, const pf_reader_opts *opts, pf_error *err)
{
	pf_reader *r;
	int ret;

	if (!out)
		return pf_error_set(err, PF_EINVAL, "pf_reader_new: NULL reader pointer");
	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return pf_error_set(err, PF_ENOMEM, "pf_reader_new: out of memory");
	if (opts)
		r->o = *opts;
	if (!r->o.queue_depth)
		r->o.queue_depth = 32;
	if (r->o.queue_depth > RD_MAX_QD)
		r->o.queue_depth = RD_MAX_QD;
	if (!r->o.readahead)
		r->o.readahead = 4;
	if (r->o.readahead > RD_MAX_RA)
		r->o.readahead = RD_MAX_RA;
	if (!r->o.max_bytes)
		r->o.max_bytes = (size_t)64 << 20;
	r->max_io = RD_MAX_IO;
	if (!r->o.force_pread) {
		ret = io_uring_queue_init(r->o.queue_depth, &r->ring, IORING_SETUP_COOP_TASKRUN);
		if (ret == -EINVAL)
			ret = io_uring_queue_init(r->o.queue_depth, &r->ring, 0);
		if (ret < 0)
			warn_fallback(ret);
		else
			r->uring = 1;
	}
	if (r->uring && io_uring_register_buffers_sparse(&r->ring, RD_FIXED_SLOTS) == 0) {
		r->fixed_avail = 1;
		r->fixed_on = r->o.o_direct != 0;
		for (unsigned i = 0; i < RD_FIXED_SLOTS; i++)
			r->fixed_free[r->nfixed_free++] = (int)(RD_FIXED_SLOTS - 1 - i);
	}
	*out = r;
	return 0;
}

const char *pf_reader_backend(const pf_reader *r)
{
	return r && r->uring ? "io_uring" : "pread";
}

void pf_reader_close_stream(pf_reader *r, int sid)
{
	struct rstream *s;

	if (!r || sid < 0 || (size_t)sid >= r->nst || r->st[sid].closed)
		return;
	s = &r->st[sid];
	for (size_t i = s->next_claim; i < s->next_sub; i++) {
		struct rreq *q = s->slot[i % r->o.readahead];

		/* a read in the kernel keeps its buffer until its completion comes */
		if (q->state == RQ_INFLIGHT)
			q->state = RQ_ORPHAN;
		else
			rq_put(r, q);
	}
	s->closed = 1;
	s->next_claim = s->next_sub = s->n;
	/*
	 * The kernel holds its own reference to the file of a submitted read,
	 * so closing now is safe for the orphans.
	 */
	submit(r);
	if (s->fd >= 0)
		close(s->fd);
	if (s->fd_buf >= 0)
		close(s->fd_buf);
	s->fd = s->fd_buf = -1;
	free(s->ext);
	free(s->slot);
	s->ext = NULL;
	s->slot = NULL;
	for (size_t k = 0; k < r->nactive; k++) {
		if (r->active[k] == sid) {
			r->active[k] = r->active[--r->nactive];
			break;
		}
	}
	fill(r);
}

void pf_reader_free(pf_reader *r)
{
	if (!r)
		return;
	r->nactive = 0; /* start nothing new while the streams close */
	for (size_t i = 0; i < r->nst; i++)
		pf_reader_close_stream(r, (int)i);
	if (r->uring) {
		/* drain: the orphans' buffers are the kernel's until they complete */
		submit(r);
		while (r->inflight)
			reap(r, 1);
		io_uring_queue_exit(&r->ring);
		r->fixed_avail = 0;
	}
	for (struct rreq *q = r->all_req, *next; q; q = next) {
		next = q->all;
		if (q->buf) /* handed out and never released */
			pf_rdbuf_destroy(r, q->buf);
		free(q);
	}
	pf_rdbuf_pool_free(r);
	for (size_t i = 0; i < r->nst; i++)
		free(r->st[i].path);
	free(r->st);
	free(r->active);
	free(r);
}

int pf_reader_add_stream(pf_reader *r, const char *path, const pf_extent *ext, size_t n,
			 pf_error *err)
{
	struct rstream *s;
	int fd, direct;

	if (!r || !path || (n && !ext))
		return pf_error_set(err, PF_EINVAL, "pf_reader_add_stream: %s",
				    !r ? "NULL reader" : !path ? "NULL path" : "NULL extents");
	if (r->nst >= INT_MAX)
		return pf_error_set(err, PF_ELIMIT, "%s: too many streams", path);
	if (n > SIZE_MAX / sizeof(*ext))
		return pf_error_set(err, PF_ELIMIT, "%s: too many extents", path);
	for (size_t i = 0; i < n; i++) {
		if (ext[i].offset > (uint64_t)INT64_MAX - ext[i].len)
			return pf_error_set(err, PF_EINVAL,
					    "%s: extent %zu: offset %llu + %u bytes is past the largest file offset",
					    path, i, (unsigned long long)ext[i].offset, ext[i].len);
	}
	direct = r->o.o_direct != 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
	if (fd < 0 && direct && errno == EINVAL) {
		/* the filesystem refuses O_DIRECT: read this file buffered */
		direct = 0;
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0) {
		int e = errno;

		return pf_error_set(err, pf_error_from_errno(-e), "%s: cannot open: %s", path,
				    strerror(e));
	}
	if (r->nst == r->capst) {
		size_t cap = r->capst ? r->capst * 2 : 8;
		struct rstream *st = realloc(r->st, cap * sizeof(*st));
		int *act = st ? realloc(r->active, cap * sizeof(*act)) : NULL;

		if (st)
			r->st = st;
		if (act)
			r->active = act;
		if (!st || !act) {
			close(fd);
			return pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
		}
		r->capst = cap;
	}
	s = &r->st[r->nst];
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->fd_buf = -1;
	s->direct = direct;
	s->n = n;
	s->path = strdup(path);
	s->ext = malloc(n ? n * sizeof(*ext) : 1);
	s->slot = calloc(r->o.readahead, sizeof(*s->slot));
	if (!s->path || !s->ext || !s->slot) {
		free(s->path);
		free(s->ext);
		free(s->slot);
		close(fd);
		return pf_error_set(err, PF_ENOMEM, "%s: out of memory", path);
	}
	if (n)
		memcpy(s->ext, ext, n * sizeof(*ext));
	if (n)
		r->active[r->nactive++] = (int)r->nst;
	r->nst++;
	fill(r);
	return (int)(r->nst - 1);
}

int pf_reader_next(pf_reader *r, int sid, pf_read *out, pf_error *err)
{
	struct rstream *s;
	struct rreq *q;

	pf_error_clear(err);
	if (!r || !out || sid < 0 || (size_t)sid >= r->nst)
		return pf_error_set(err, PF_EINVAL, "pf_reader_next: no stream %d", sid);
	s = &r->st[sid];
	for (;;) {
		if (s->closed || s->next_claim == s->n)
			return PF_END;
		q = s->slot[s->next_claim % r->o.readahead];
		if (!q || s->next_sub == s->next_claim) {
			/* not started yet: this one goes first, over budget if it must */
			int ret = rq_start(r, sid, 1);

			if (ret < 0)
				return pf_error_set(err, ret, "%s: offset %llu: out of memory for %u bytes",
						    s->path,
						    (unsigned long long)s->ext[s->next_claim].offset,
						    s->ext[s->next_claim].len);
			if (ret == 0)
				reap(r, 1); /* queue full: wait for room */
			continue;
		}
		if (q->state == RQ_INFLIGHT) {
			fill(r);
			reap(r, 1);
			continue;
		}
		break;
	}
	s->slot[s->next_claim % r->o.readahead] = NULL;
	s->next_claim++;
	if (q->err) {
		int ret = rq_error(r, q, err);

		rq_put(r, q);
		fill(r);
		return ret;
	}
	q->state = RQ_CLAIMED;
	out->stream = sid;
	out->seq = q->seq;
	out->tag = q->ext.tag;
	out->offset = q->ext.offset;
	out->data = q->buf ? (const char *)q->buf->mem + (q->ext.offset - q->aoff)
			   : (const void *)rd_empty;
	out->len = q->ext.len;
	out->priv_ = q;
	fill(r);
	return 0;
}

void pf_reader_release(pf_reader *r, pf_read *rd)
{
	struct rreq *q;

	if (!r || !rd || !rd->priv_)
		return;
	q = rd->priv_;
	rd->priv_ = NULL;
	rd->data = NULL;
	if (q->state != RQ_CLAIMED)
		return;
	rq_put(r, q);
	fill(r);
}

void pf_reader_set_fault(pf_reader *r, pf_reader_fault_fn fn, void *user)
{
	if (!r)
		return;
	r->fault = fn;
	r->fault_user = user;
}

/*
 * Internal knobs for the tests and the benchmark; not part of the API (the
 * prototype is repeated where it is used, not in pf_reader.h):
 *   "max_io" VALUE     cap each read syscall at VALUE bytes (rounded down to
 *                      a multiple of 4 KiB, at least 4 KiB) so that the
 *                      short-read resubmission path runs;
 *   "fixed" 0|1        registered buffers (read_fixed) for buffers allocated
 *                      from now on; PF_ENODEV when the ring cannot have them;
 *   "held"             returns the bytes of buffers held by requests;
 *   "outstanding" SID  returns the stream's reads in flight or unclaimed;
 *   "fixed_reads"      returns how many reads went through read_fixed.
 * Returns PF_EINVAL for an unknown key.
 */
int pf__reader_debug(pf_reader *r, const char *key, long value)
{
	if (!r || !key)
		return PF_EINVAL;
	if (!strcmp(key, "max_io")) {
		size_t v = value > 0 ? (size_t)value & ~(size_t)(RD_ALIGN - 1) : RD_MAX_IO;

		r->max_io = v < RD_ALIGN ? RD_ALIGN : v > RD_MAX_IO ? RD_MAX_IO : v;
		return 0;
	}
	if (!strcmp(key, "fixed")) {
		if (value && !r->fixed_avail)
			return PF_ENODEV;
		r->fixed_on = value != 0;
		return 0;
	}
	if (!strcmp(key, "held"))
		return r->held > INT_MAX ? INT_MAX : (int)r->held;
	if (!strcmp(key, "outstanding")) {
		if (value < 0 || (size_t)value >= r->nst)
			return PF_EINVAL;
		return (int)(r->st[value].next_sub - r->st[value].next_claim);
	}
	if (!strcmp(key, "fixed_reads"))
		return r->nfixed_reads > INT_MAX ? INT_MAX : (int)r->nfixed_reads;
	return PF_EINVAL;
}
