/*
 * ranks_mpi.c - ranks.h over OpenMPI (built with HAVE_MPI).
 *
 * Every call that waits on other ranks begins with an arrival handshake:
 * each rank sends its call count to every other and waits for theirs,
 * polling with a deadline, so a rank that died or hangs is named by the
 * ranks that waited for it (MPI's own collectives cannot say who is
 * missing).  The handshake also checks that the ranks are at the same
 * call.  Then the data moves: MPI_Iallreduce, or in the deterministic mode
 * every rank's buffer to every rank and a sum in rank order.  Errors
 * return (MPI_ERRORS_RETURN) instead of killing the process, so the
 * message is ours; ranks_abort then ends the job.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ranks.h"

#define TAG_ARRIVE 17
#define TAG_DATA 18
#define TAG_PING 19
#define RANKS_MAX_PENDING 64
#define TAG_PONG 20

struct ranks {
	int world, rank, mpi;
	int local;            /* ranks on this host (MPI_COMM_TYPE_SHARED) */
	double timeout_s, wait_s;
	uint64_t calls;
	unsigned char *parts; /* deterministic sums: world x n values */
	size_t parts_cap;
	MPI_Request *req;     /* 2 x world */
	int *peer;
	uint64_t *seen;       /* arrival: each rank's call count */
	/* liveness: a receive of pings always posted, answered while a
	 * rank waits (so that a rank stuck in a collective with the others
	 * can tell the live ones from the one that holds all back) */
	MPI_Request ping_req;
	int ping_buf, pong_buf;
	/* bucketed sums in flight (ranks_isum_f32); in the ordered mode
	 * (ranks_begin_ordered) each gathers every rank's values into
	 * gath + gat[i], summed in rank order into pbuf[i] when it completes */
	MPI_Request pend[RANKS_MAX_PENDING];
	int npend, ordered;
	float *pbuf[RANKS_MAX_PENDING];
	size_t pn[RANKS_MAX_PENDING], gat[RANKS_MAX_PENDING];
	float *gath;
	size_t gath_cap, gath_used;
};

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int ranks_available(void)
{
	return 1;
}

/* Started by a launcher (mpirun / a PMIx server)? */
static int launched(void)
{
	return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

int ranks_open(ranks **rp, double timeout_s, char *msg, size_t cap)
{
	ranks *r = calloc(1, sizeof(*r));
	*rp = NULL;
	if (!r) {
		snprintf(msg, cap, "out of memory");
		return -1;
	}
	r->world = 1;
	r->timeout_s = timeout_s > 0 ? timeout_s : 60;
	if (launched()) {
		int prov = 0;
		if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &prov) != MPI_SUCCESS) {
			snprintf(msg, cap, "MPI_Init failed");
			free(r);
			return -1;
		}
		r->mpi = 1;
		MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
		MPI_Comm_size(MPI_COMM_WORLD, &r->world);
		MPI_Comm_rank(MPI_COMM_WORLD, &r->rank);
		MPI_Comm node;
		if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL,
					&node) == MPI_SUCCESS) {
			MPI_Comm_size(node, &r->local);
			MPI_Comm_free(&node);
		}
		MPI_Irecv(&r->ping_buf, 1, MPI_INT, MPI_ANY_SOURCE, TAG_PING, MPI_COMM_WORLD,
			  &r->ping_req);
	}
	r->req = calloc(2 * (size_t)r->world + 1, sizeof(*r->req));
	r->peer = calloc(2 * (size_t)r->world, sizeof(*r->peer));
	r->seen = calloc((size_t)r->world, sizeof(*r->seen));
	if (!r->req || !r->peer || !r->seen) {
		snprintf(msg, cap, "out of memory");
		ranks_close(r);
		return -1;
	}
	*rp = r;
	return 0;
}

void ranks_close(ranks *r)
{
	if (!r)
		return;
	if (r->mpi) {
		MPI_Cancel(&r->ping_req);
		MPI_Wait(&r->ping_req, MPI_STATUS_IGNORE);
		MPI_Finalize();
	}
	free(r->parts);
	free(r->gath);
	free(r->req);
	free(r->peer);
	free(r->seen);
	free(r);
}

int ranks_world(const ranks *r) { return r->world; }
int ranks_rank(const ranks *r) { return r->rank; }
int ranks_local(const ranks *r) { return r->local > 0 ? r->local : 1; }
double ranks_wait_s(const ranks *r) { return r->wait_s; }

void ranks_abort(ranks *r, int code)
{
	if (r && r->mpi)
		MPI_Abort(MPI_COMM_WORLD, code);
}

/* Answer a ping that came in (from a rank that wonders who is alive). */
static void serve_ping(ranks *r)
{
	int f = 0;
	MPI_Status st;
	if (!r->mpi || MPI_Test(&r->ping_req, &f, &st) != MPI_SUCCESS || !f)
		return;
	MPI_Request q;
	if (MPI_Isend(&r->pong_buf, 1, MPI_INT, st.MPI_SOURCE, TAG_PONG, MPI_COMM_WORLD, &q) ==
	    MPI_SUCCESS)
		MPI_Request_free(&q);
	MPI_Irecv(&r->ping_buf, 1, MPI_INT, MPI_ANY_SOURCE, TAG_PING, MPI_COMM_WORLD, &r->ping_req);
}

/*
 * A collective did not complete: ping every other rank and wait up to 2 s
 * (answering pings meanwhile); write the ranks that did not answer into
 * msg at `at`.  Returns how many were named.
 */
static int name_silent(ranks *r, char *msg, size_t cap, int at)
{
	int n = 0, named = 0, one = 1;
	int *pong = calloc((size_t)r->world, sizeof(int));
	MPI_Request *q = calloc(2 * (size_t)r->world, sizeof(*q));
	if (!pong || !q) {
		free(pong);
		free(q);
		return 0;
	}
	for (int k = 0; k < r->world; k++) {
		if (k == r->rank)
			continue;
		MPI_Irecv(&pong[k], 1, MPI_INT, k, TAG_PONG, MPI_COMM_WORLD, &q[2 * n]);
		MPI_Isend(&one, 1, MPI_INT, k, TAG_PING, MPI_COMM_WORLD, &q[2 * n + 1]);
		n++;
	}
	double end = mono_s() + 2;
	int left = n;
	while (left && mono_s() < end) {
		serve_ping(r);
		left = 0;
		for (int i = 0; i < n; i++) {
			int f = 1;
			if (q[2 * i] != MPI_REQUEST_NULL)
				MPI_Test(&q[2 * i], &f, MPI_STATUS_IGNORE);
			left += !f;
		}
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	for (int k = 0, i = 0; k < r->world; k++) {
		if (k == r->rank)
			continue;
		if (q[2 * i] != MPI_REQUEST_NULL && at > 0 && (size_t)at < cap)
			at += snprintf(msg + at, cap - (size_t)at, "%s %d", named++ ? "," : "", k);
		i++;
	}
	/* the requests of silent ranks stay posted: the job ends next */
	free(pong);
	free(q);
	return named;
}

/*
 * Wait for requests req[0..n) until the deadline.  peer[i] is the rank
 * request i talks to (-1: a collective).  0, or -1 with a message naming
 * the ranks whose requests did not complete (or the MPI error).
 */
static int wait_reqs(ranks *r, int n, const char *what, char *msg, size_t cap)
{
	double t0 = mono_s(), deadline = t0 + r->timeout_s;
	int spins = 0;
	for (;;) {
		int done = 0;
		int rc = MPI_Testall(n, r->req, &done, MPI_STATUSES_IGNORE);
		if (rc != MPI_SUCCESS) {
			char es[MPI_MAX_ERROR_STRING];
			int len = 0;
			MPI_Error_string(rc, es, &len);
			int at = snprintf(msg, cap, "rank %d: %s: %s; waiting on rank(s)", r->rank,
					  what, es);
			for (int i = 0; i < n && at > 0 && (size_t)at < cap; i++)
				if (r->req[i] != MPI_REQUEST_NULL && r->peer[i] >= 0)
					at += snprintf(msg + at, cap - (size_t)at, " %d", r->peer[i]);
			return -1;
		}
		if (done)
			break;
		serve_ping(r);
		if (mono_s() > deadline) {
			int at = snprintf(msg, cap, "rank %d: %s: no answer within %.0f s from rank(s)",
					  r->rank, what, r->timeout_s);
			int named = 0;
			for (int i = 0; i < n && at > 0 && (size_t)at < cap; i++) {
				int f = 0;
				if (r->req[i] != MPI_REQUEST_NULL)
					MPI_Test(&r->req[i], &f, MPI_STATUS_IGNORE);
				if (r->req[i] != MPI_REQUEST_NULL && r->peer[i] >= 0 &&
				    (i == 0 || r->peer[i] != r->peer[i - 1])) {
					at += snprintf(msg + at, cap - (size_t)at, "%s %d",
						       named++ ? "," : "", r->peer[i]);
				}
			}
			if (!named && at > 0 && (size_t)at < cap &&
			    !name_silent(r, msg, cap, at))
				snprintf(msg + at, cap - (size_t)at, " (none silent: the collective)");
			if (at > 0 && (size_t)at < cap)
				snprintf(msg + strlen(msg), cap - strlen(msg),
					 ": a rank died or hangs");
			return -1;
		}
		if (++spins > 2000) { /* past the first few ms: poll gently */
			struct timespec ts = { 0, 50000 };
			nanosleep(&ts, NULL);
		}
	}
	r->wait_s += mono_s() - t0;
	return 0;
}

/* The arrival handshake: every rank at the same call, or a message
 * naming who is not. */
static int arrive(ranks *r, const char *what, char *msg, size_t cap)
{
	uint64_t me = ++r->calls;
	int n = 0;
	for (int k = 0; k < r->world; k++) {
		if (k == r->rank)
			continue;
		r->peer[n] = k;
		MPI_Irecv(&r->seen[k], 1, MPI_UINT64_T, k, TAG_ARRIVE, MPI_COMM_WORLD, &r->req[n++]);
		r->peer[n] = k;
		MPI_Isend(&me, 1, MPI_UINT64_T, k, TAG_ARRIVE, MPI_COMM_WORLD, &r->req[n++]);
	}
	if (wait_reqs(r, n, what, msg, cap))
		return -1;
	for (int k = 0; k < r->world; k++)
		if (k != r->rank && r->seen[k] != me) {
			snprintf(msg, cap, "rank %d: %s: rank %d is at call %llu, this rank at %llu: "
				 "the ranks disagree", r->rank, what, k,
				 (unsigned long long)r->seen[k], (unsigned long long)me);
			return -1;
		}
	return 0;
}

/* Every rank's buffer (n values of `size` bytes: float or double) to
 * every rank, summed in rank order. */
static int sum_ordered(ranks *r, void *buf, size_t n, size_t size, const char *what,
		       char *msg, size_t cap)
{
	size_t need = (size_t)r->world * n * size;
	if (need > r->parts_cap) {
		unsigned char *p = realloc(r->parts, need);
		if (!p) {
			snprintf(msg, cap, "rank %d: %s: out of memory", r->rank, what);
			return -1;
		}
		r->parts = p;
		r->parts_cap = need;
	}
	MPI_Datatype t = size == 4 ? MPI_FLOAT : MPI_DOUBLE;
	memcpy(r->parts + (size_t)r->rank * n * size, buf, n * size);
	int q = 0;
	for (int k = 0; k < r->world; k++) {
		if (k == r->rank)
			continue;
		r->peer[q] = k;
		MPI_Irecv(r->parts + (size_t)k * n * size, (int)n, t, k, TAG_DATA,
			  MPI_COMM_WORLD, &r->req[q++]);
		r->peer[q] = k;
		MPI_Isend(buf, (int)n, t, k, TAG_DATA, MPI_COMM_WORLD, &r->req[q++]);
	}
	if (wait_reqs(r, q, what, msg, cap))
		return -1;
	if (size == 4) {
		const float *p = (const float *)r->parts;
		float *o = buf;
		for (size_t i = 0; i < n; i++) {
			float s = p[i];
			for (int k = 1; k < r->world; k++)
				s += p[(size_t)k * n + i];
			o[i] = s;
		}
	} else {
		const double *p = (const double *)r->parts;
		double *o = buf;
		for (size_t i = 0; i < n; i++) {
			double s = p[i];
			for (int k = 1; k < r->world; k++)
				s += p[(size_t)k * n + i];
			o[i] = s;
		}
	}
	return 0;
}

static int sum_any(ranks *r, void *buf, size_t n, size_t size, int deterministic,
		   const char *what, char *msg, size_t cap)
{
	if (r->world == 1)
		return 0;
	if (n > (size_t)1 << 30) {
		snprintf(msg, cap, "rank %d: %s: %zu values: too many", r->rank, what, n);
		return -1;
	}
	if (arrive(r, what, msg, cap))
		return -1;
	if (deterministic)
		return sum_ordered(r, buf, n, size, what, msg, cap);
	r->peer[0] = -1;
	if (MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, size == 4 ? MPI_FLOAT : MPI_DOUBLE,
			   MPI_SUM, MPI_COMM_WORLD, &r->req[0]) != MPI_SUCCESS) {
		snprintf(msg, cap, "rank %d: %s: MPI_Iallreduce failed", r->rank, what);
		return -1;
	}
	return wait_reqs(r, 1, what, msg, cap);
}

int ranks_sum(ranks *r, double *buf, size_t n, int deterministic, const char *what,
	      char *msg, size_t cap)
{
	return sum_any(r, buf, n, sizeof(*buf), deterministic, what, msg, cap);
}

int ranks_sum_f32(ranks *r, float *buf, size_t n, int deterministic, const char *what,
		  char *msg, size_t cap)
{
	return sum_any(r, buf, n, sizeof(*buf), deterministic, what, msg, cap);
}

int ranks_gather(ranks *r, const void *mine, void *all, size_t n, const char *what,
		 char *msg, size_t cap)
{
	if (r->world == 1) {
		memcpy(all, mine, n);
		return 0;
	}
	if (arrive(r, what, msg, cap))
		return -1;
	r->peer[0] = -1;
	if (MPI_Igather(mine, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD,
			&r->req[0]) != MPI_SUCCESS) {
		snprintf(msg, cap, "rank %d: %s: MPI_Igather failed", r->rank, what);
		return -1;
	}
	return wait_reqs(r, 1, what, msg, cap);
}

int ranks_bcast(ranks *r, void *buf, size_t n, const char *what, char *msg, size_t cap)
{
	if (r->world == 1)
		return 0;
	if (arrive(r, what, msg, cap))
		return -1;
	r->peer[0] = -1;
	if (MPI_Ibcast(buf, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD, &r->req[0]) != MPI_SUCCESS) {
		snprintf(msg, cap, "rank %d: %s: MPI_Ibcast failed", r->rank, what);
		return -1;
	}
	return wait_reqs(r, 1, what, msg, cap);
}

int ranks_begin(ranks *r, const char *what, char *msg, size_t cap)
{
	r->npend = 0;
	r->ordered = 0;
	return r->world == 1 ? 0 : arrive(r, what, msg, cap);
}

int ranks_begin_ordered(ranks *r, size_t total, const char *what, char *msg, size_t cap)
{
	if (ranks_begin(r, what, msg, cap))
		return -1;
	size_t need = (size_t)r->world * total;
	if (r->world > 1 && need > r->gath_cap) {
		float *g = realloc(r->gath, need * sizeof(*g));
		if (!g) {
			snprintf(msg, cap, "rank %d: %s: out of memory", r->rank, what);
			return -1;
		}
		r->gath = g;
		r->gath_cap = need;
	}
	r->ordered = 1;
	r->gath_used = 0;
	return 0;
}

/* Ordered sum i has arrived: every rank's values, summed in rank order
 * (sum_ordered's order: the same bits). */
static void sum_gathered(ranks *r, int i)
{
	const float *p = r->gath + r->gat[i];
	size_t n = r->pn[i];
	float *o = r->pbuf[i];
	for (size_t j = 0; j < n; j++) {
		float s = p[j];
		for (int k = 1; k < r->world; k++)
			s += p[(size_t)k * n + j];
		o[j] = s;
	}
}

int ranks_isum_f32(ranks *r, float *buf, size_t n, const char *what, char *msg, size_t cap)
{
	if (r->world == 1)
		return 0;
	if (r->npend == RANKS_MAX_PENDING || n > (size_t)1 << 30) {
		snprintf(msg, cap, "rank %d: %s: too many sums at once", r->rank, what);
		return -1;
	}
	if (r->ordered) {
		if (r->gath_used + (size_t)r->world * n > r->gath_cap) {
			snprintf(msg, cap, "rank %d: %s: more values than ranks_begin_ordered said",
				 r->rank, what);
			return -1;
		}
		r->pbuf[r->npend] = buf;
		r->pn[r->npend] = n;
		r->gat[r->npend] = r->gath_used;
		r->gath_used += (size_t)r->world * n;
		if (MPI_Iallgather(buf, (int)n, MPI_FLOAT, r->gath + r->gat[r->npend], (int)n,
				   MPI_FLOAT, MPI_COMM_WORLD, &r->pend[r->npend]) != MPI_SUCCESS) {
			snprintf(msg, cap, "rank %d: %s: MPI_Iallgather failed", r->rank, what);
			return -1;
		}
	} else if (MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
				  &r->pend[r->npend]) != MPI_SUCCESS) {
		snprintf(msg, cap, "rank %d: %s: MPI_Iallreduce failed", r->rank, what);
		return -1;
	}
	r->npend++;
	return 0;
}

int ranks_progress(ranks *r, double *done_at)
{
	int left = 0;
	serve_ping(r);
	for (int i = 0; i < r->npend; i++) {
		int f = 1;
		if (r->pend[i] != MPI_REQUEST_NULL) {
			MPI_Test(&r->pend[i], &f, MPI_STATUS_IGNORE);
			if (f && r->ordered)
				sum_gathered(r, i);
			if (f && done_at)
				done_at[i] = mono_s();
		}
		left += !f;
	}
	return left;
}

int ranks_finish(ranks *r, double *done_at, const char *what, char *msg, size_t cap)
{
	double t0 = mono_s(), deadline = t0 + r->timeout_s;
	while (r->world > 1 && ranks_progress(r, done_at)) {
		if (mono_s() > deadline) {
			int at = snprintf(msg, cap, "rank %d: %s: no answer within %.0f s from rank(s)",
					  r->rank, what, r->timeout_s);
			if (!name_silent(r, msg, cap, at))
				snprintf(msg + at, cap - (size_t)at, " (none silent)");
			snprintf(msg + strlen(msg), cap - strlen(msg), ": a rank died or hangs");
			return -1;
		}
		struct timespec ts = { 0, 20000 };
		nanosleep(&ts, NULL);
	}
	r->wait_s += mono_s() - t0;
	r->npend = 0;
	return 0;
}
