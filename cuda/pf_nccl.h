/*
 * pf_nccl.h - gradients summed over ranks on the GPU: NCCL's all-reduce,
 * loaded at run time.  Internal (pipe-train's, in cuda/libpfmodel.la).
 *
 * libnccl.so.2 is dlopen'd on first use ($PF_NCCL_LIBRARY names another
 * file): nothing links NCCL and no NCCL header is needed to build, so one
 * binary runs on machines with and without it, as the cuda module does.
 * The handful of entry points used are declared in nccl.c from NCCL's
 * documented C ABI (nccl.h, stable across NCCL 2.x).
 *
 * How the ranks meet: rank 0 calls pf_nccl_unique_id, the caller sends
 * those PF_NCCL_ID_BYTES to every rank by its own means (pipe-train: an
 * MPI broadcast), and every rank calls pf_nccl_open with them.  No MPI
 * here: this layer knows nothing of how the processes were started.
 *
 * Determinism: NCCL fixes the order in which a ring sums for a given
 * number of ranks, topology, NCCL version, algorithm and message size, so
 * the same run gives the same bits on every rank and run after run; it is
 * not the rank order of the host path, and another world size (or
 * another bucket plan) rounds differently.  pf_nccl_open(deterministic)
 * pins NCCL_ALGO=Ring and NCCL_PROTO=Simple when the environment does not
 * set them, so NCCL's tuner cannot pick another algorithm for the same
 * sizes (NCCL documents no bitwise guarantee; this is what it does).
 */
#ifndef PF_NCCL_H
#define PF_NCCL_H

#include <stddef.h>

#include "pf_device.h"
#include "pf_error.h"

#define PF_NCCL_ID_BYTES 128           /* NCCL_UNIQUE_ID_BYTES */
#define PF_NCCL_SONAME "libnccl.so.2"

typedef struct pf_nccl pf_nccl;

/* Load NCCL once per process (the handle is never closed: NCCL keeps
 * threads and state).  *version (may be NULL): NCCL's code, e.g. 22805
 * for 2.28.5.  0, or PF_ENODEV with the reason (the file and dlerror(),
 * or the missing symbol) in err; a failure is remembered. */
int pf_nccl_load(int *version, pf_error *err);

/* A new id for a group of ranks (rank 0 makes it, all use it). */
int pf_nccl_unique_id(unsigned char id[PF_NCCL_ID_BYTES], pf_error *err);

/* Join the group `id` as `rank` of `world` on device d (cuda only:
 * PF_ENODEV otherwise); blocks until every rank has joined.
 * deterministic: see above.  *c is NULL on failure. */
int pf_nccl_open(pf_nccl **c, pf_device *d, int world, int rank,
		 const unsigned char id[PF_NCCL_ID_BYTES], int deterministic,
		 pf_error *err);

/* Enqueue on s the sum over all ranks of the n floats at buf (device
 * memory, in place).  Every rank must enqueue the same sums in the same
 * order.  Errors that surface later: pf_nccl_check. */
int pf_nccl_sum_f32(pf_nccl *c, pf_stream *s, float *buf, size_t n, pf_error *err);

/* An asynchronous NCCL error (a peer gone, a network fault), if any:
 * 0, or PF_EIO naming it. */
int pf_nccl_check(pf_nccl *c, pf_error *err);

/* Abort (ncclCommAbort: collectives in flight are cancelled; use it when
 * a peer is gone) or close (ncclCommDestroy: after the stream's work is
 * done).  NULL is a no-op. */
void pf_nccl_abort(pf_nccl *c);
void pf_nccl_close(pf_nccl *c);

#endif /* PF_NCCL_H */
