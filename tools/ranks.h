/*
 * ranks.h - the processes of a data-parallel run and the sums between
 * them: pipe-train's only contact with MPI.  Internal to tools/.
 *
 * Two implementations with this one interface: ranks_mpi.c (OpenMPI, built
 * when configure finds it: HAVE_MPI) and ranks_none.c (a single rank).  The
 * core library and the device layer know nothing of MPI: a pipeline learns
 * its rank through pf_options (world, rank) and nothing else.
 *
 * A process is one rank of several only when a launcher started it
 * (mpirun sets OMPI_COMM_WORLD_SIZE): run by hand, pipe-train is rank 0 of
 * 1 and never initializes MPI.
 *
 * Every call that waits on the other ranks waits at most `timeout_s`
 * seconds (ranks_open): then it fails with a message that names the ranks
 * that did not answer, so a rank that died or hangs makes the others fail,
 * not wait for ever.  Calls are made from one thread (the training loop's).
 */
#ifndef PF_TOOLS_RANKS_H
#define PF_TOOLS_RANKS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ranks ranks;

/* Open: *r describes this process (rank 0 of 1 when no launcher started
 * it, or when built without MPI and then a launcher did: that is an
 * error).  0, or -1 with a message in msg. */
int ranks_open(ranks **r, double timeout_s, char *msg, size_t cap);
/* Close (MPI_Finalize); NULL is a no-op. */
void ranks_close(ranks *r);
int ranks_world(const ranks *r);
int ranks_rank(const ranks *r);
/* The ranks on this host, this one included (they share its CPUs). */
int ranks_local(const ranks *r);
/* Whether this build can run over several ranks (1 with MPI). */
int ranks_available(void);

/*
 * Sum buf[0..n) over all ranks, in place, the same result on every rank.
 * deterministic: every rank's buffer is sent to every rank and summed in
 * rank order 0, 1, ..., world - 1 (the same bits for the same inputs and
 * world size, whatever the network did); else MPI_Allreduce.  `what`
 * names the call in messages ("step 12").  0, or -1 with a message naming
 * the rank(s) that did not arrive within the timeout, or the MPI error.
 */
int ranks_sum(ranks *r, double *buf, size_t n, int deterministic, const char *what,
	      char *msg, size_t cap);
/* ranks_sum over floats (gradients: half the bytes of doubles). */
int ranks_sum_f32(ranks *r, float *buf, size_t n, int deterministic, const char *what,
		  char *msg, size_t cap);
/*
 * Bucketed sums (gradients reduced while backward still runs): begin a
 * step (the arrival handshake: ranks_sum's failures), start float sums of
 * buckets in place as they are ready (at most 64 a step; MPI_Iallreduce),
 * drive them while waiting for the next bucket (ranks_progress: the sums
 * left; done_at[i], when given, gets the second sum i completed on the
 * monotonic clock), and wait for them all (ranks_finish, bounded by the
 * timeout, naming a silent rank).  In MPI_Iallreduce's order, or with
 * ranks_begin_ordered in the deterministic one.
 */
int ranks_begin(ranks *r, const char *what, char *msg, size_t cap);
/* ranks_begin for bucketed sums in the deterministic order: each bucket's
 * values of every rank are gathered (MPI_Iallgather) and, when they have
 * arrived (ranks_progress / ranks_finish), summed in rank order, the
 * order of ranks_sum_f32's deterministic mode: so the bits are those of
 * one such sum over all the buckets' values.  `total`: the floats of all
 * the buckets this step will start (room is kept for them). */
int ranks_begin_ordered(ranks *r, size_t total, const char *what, char *msg, size_t cap);
int ranks_isum_f32(ranks *r, float *buf, size_t n, const char *what, char *msg, size_t cap);
int ranks_progress(ranks *r, double *done_at);
int ranks_finish(ranks *r, double *done_at, const char *what, char *msg, size_t cap);
/* Gather: every rank's `n` bytes into all[rank * n] on rank 0 (all unused
 * elsewhere).  Same failures as ranks_sum. */
int ranks_gather(ranks *r, const void *mine, void *all, size_t n, const char *what,
		 char *msg, size_t cap);
/* Broadcast n bytes from rank 0.  Same failures as ranks_sum. */
int ranks_bcast(ranks *r, void *buf, size_t n, const char *what, char *msg, size_t cap);
/* End the whole run now (MPI_Abort with code); returns only without MPI. */
void ranks_abort(ranks *r, int code);
/* Seconds this rank has waited in ranks_sum (arrival of the others and
 * the reduction itself), since ranks_open. */
double ranks_wait_s(const ranks *r);

#endif /* PF_TOOLS_RANKS_H */
