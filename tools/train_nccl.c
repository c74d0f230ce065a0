/*
 * train_nccl.c - pipe-train's gradients summed on the GPU with NCCL
 * (--allreduce, cuda/pf_nccl.h), instead of on the host over MPI.
 *
 * The choice (allreduce_choose): NCCL when the device is cuda, NCCL loads
 * (libnccl.so.2, at run time) and, over several ranks, every rank can; else
 * the host path of train_ranks.c, with one line on stderr saying why when
 * NCCL was asked for (--allreduce nccl) or would have served (auto, cuda).
 * All ranks take the same path: they agree on it in a sum first.
 *
 * The step (dist_step_nccl): the rows and the stop are summed over MPI
 * first, as on the host path (the arrival handshake: a rank gone is named
 * within --rank-timeout before any NCCL work is enqueued).  With the total
 * T known before backward, each rank's loss gradient is scaled by 1/T
 * (pf_model_input.grad_scale) instead of 1/rows, so the sum of the ranks'
 * gradients is the global batch's mean: no kernel is needed to weight or
 * divide them.  Backward records an event as each layer's gradients are
 * done; a second stream waits for them and sums each bucket (the plan of
 * train_ranks.c: one a layer, or --bucket-mb) in place in the model's
 * device gradient buffer, while backward goes on; the compute stream waits
 * for the last sum, then Adam.  The host waits for a step's sums only at
 * the next step (bounded by --rank-timeout, NCCL's asynchronous errors
 * polled meanwhile), so it stays one step ahead of the device.
 *
 * Determinism: see pf_nccl.h (NCCL's ring order, fixed for a world size,
 * topology, NCCL version and bucket plan; --deterministic pins NCCL_ALGO
 * and NCCL_PROTO).  Rank-order sums, bit-identical whatever the network,
 * are the host path's: --allreduce mpi --deterministic.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pf_nccl.h"
#include "ranks.h"
#include "train.h"

int allreduce_parse(const char *s)
{
	return !strcmp(s, "auto") ? AR_AUTO : !strcmp(s, "mpi") ? AR_MPI :
	       !strcmp(s, "nccl") ? AR_NCCL : -1;
}

int allreduce_choose(int want, const char *kind, int world, char *note, size_t cap)
{
	pf_error err = { 0 };
	note[0] = 0;
	if (want == AR_MPI || (want == AR_AUTO && (world == 1 || strcmp(kind, "cuda"))))
		return 0;
	const char *then = world > 1 ? "gradients summed on the host over MPI" :
				       "training as one rank alone";
	const char *who = want == AR_NCCL ? "--allreduce nccl: " : "";
	if (strcmp(kind, "cuda")) {
		snprintf(note, cap, "%sNCCL needs the cuda device (this run's is %s): %s", who,
			 kind, then);
		return 0;
	}
	if (pf_nccl_load(NULL, &err) < 0) {
		snprintf(note, cap, "%s%.300s: %s", who, err.msg, then);
		return 0;
	}
	return 1;
}

/* Every rank's verdict (1: NCCL) summed: NCCL only when all have it. */
static int agree(dist *d, int mine, char *note, size_t cap)
{
	if (d->world == 1)
		return mine;
	double v[2] = { mine ? 1 : 0, 0 };
	dist_sum(d, v, 2, "the choice of all-reduce");
	if ((int)v[0] == d->world || (int)v[0] == 0)
		return (int)v[0] == d->world;
	if (mine)
		snprintf(note, cap, "NCCL is missing on %d of %d ranks: gradients summed on the host over MPI",
			 d->world - (int)v[0], d->world);
	return 0;
}

void dist_nccl_open(dist *d, pf_device *dev, pf_model *m, const opts *o, int quiet)
{
	pf_error err = { 0 };
	char note[512], msg[512];
	int want = o->allreduce;
	d->timeout_s = o->rank_timeout;
	d->allreduce = d->world > 1 ? "mpi" : "none";
	if (!m || want == AR_MPI) /* (no model: only rows are summed) */
		return;
	int use = allreduce_choose(want, pf_device_kind(dev), d->world, note, sizeof(note));
	use = agree(d, use, note, sizeof(note));
	if (use)
		d->allreduce = "nccl";
	if (note[0] && d->rank == 0 && (want == AR_NCCL || !quiet))
		fprintf(stderr, "pipe-train: %s\n", note);
	if (!use)
		return;
	unsigned char id[PF_NCCL_ID_BYTES] = { 0 };
	if (d->rank == 0 && pf_nccl_unique_id(id, &err) < 0)
		die("NCCL", &err);
	if (d->world > 1 && ranks_bcast(d->r, id, sizeof(id), "NCCL's id", msg, sizeof(msg)) < 0)
		dist_fail(d, msg);
	if (pf_nccl_open(&d->nccl, dev, d->world, d->rank, id, d->deterministic, &err) < 0)
		die("NCCL", &err);
	if (pf_stream_new(dev, &d->comm, &err) < 0 || pf_event_new(dev, &d->comm_done, &err) < 0)
		die("NCCL stream", &err);
	d->dev = dev;
}

void dist_nccl_close(dist *d)
{
	if (!d->nccl)
		return;
	pf_stream_sync(d->dev, d->comm, NULL);
	pf_nccl_close(d->nccl);
	pf_event_free(d->dev, d->comm_done);
	pf_stream_free(d->dev, d->comm);
	d->nccl = NULL;
	d->comm = NULL;
	d->comm_done = NULL;
}

/* The last step's sums done, within --rank-timeout (NCCL's asynchronous
 * errors polled meanwhile); else the job ends naming the step. */
static void wait_prev(dist *d)
{
	pf_error err = { 0 };
	char msg[600];
	if (!d->nccl_pending)
		return;
	double t0 = now_s(), limit = d->timeout_s > 0 ? d->timeout_s : 60;
	int q;
	while ((q = pf_event_query(d->dev, d->comm_done)) == 0) {
		if (pf_nccl_check(d->nccl, &err) < 0)
			break;
		if (now_s() - t0 > limit) {
			pf_error_set(&err, PF_ETIMEDOUT, "not done after %g s (a rank gone or hung?)",
				     limit);
			break;
		}
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	if (q == 1) {
		d->nccl_pending = 0;
		return;
	}
	snprintf(msg, sizeof(msg), "rank %d: NCCL all-reduce of step %" PRIu64 ": %s", d->rank,
		 d->nccl_step, q < 0 ? "device error" : err.msg);
	pf_nccl_abort(d->nccl);
	d->nccl = NULL;
	dist_fail(d, msg);
}

uint64_t dist_step_nccl(dist *d, pf_model *m, pf_stream *s, const pf_model_input *in,
			int want_stop, int *stop, uint64_t step)
{
	pf_error err = { 0 };
	char what[64], msg[512];
	int rows = in ? in->rows : 0;
	wait_prev(d);
	snprintf(what, sizeof(what), "all-reduce of step %" PRIu64, step);
	float v[2] = { (float)rows, want_stop ? 1.0f : 0.0f };
	if (d->world > 1 && ranks_sum_f32(d->r, v, 2, 0, what, msg, sizeof(msg)) < 0)
		dist_fail(d, msg);
	*stop = v[1] > 0;
	if (!d->steps++ && d->r)
		d->wait_first = ranks_wait_s(d->r);
	if (v[0] <= 0)
		return 0;
	float *g = pf_model_dev_buf(m, PF_BUF_GRADS);
	if (rows > 0) {
		pf_model_input x = *in;
		x.grad_scale = 1.0f / v[0];
		if (pf_model_grad_layers(m, s, &x, d->ev, &err) < 0)
			die("train step", &err);
	} else { /* none here: zeros to the sums */
		if (pf_memset_async(d->dev, s, g, 0, d->n * sizeof(float), &err) < 0)
			die("train step", &err);
		for (int j = 0; j < d->nlayers; j++)
			if (pf_event_record(d->dev, d->ev[j], s, &err) < 0)
				die("train step", &err);
	}
	for (int b = 0; b < d->nbuckets; b++)
		if (pf_stream_wait_event(d->dev, d->comm, d->ev[d->bready[b]], &err) < 0 ||
		    pf_nccl_sum_f32(d->nccl, d->comm, g + d->boff[b], d->blen[b], &err) < 0)
			die(what, &err);
	if (pf_event_record(d->dev, d->comm_done, d->comm, &err) < 0 ||
	    pf_stream_wait_event(d->dev, s, d->comm_done, &err) < 0 ||
	    pf_model_apply(m, s, &err) < 0)
		die("train step", &err);
	d->nccl_pending = 1;
	d->nccl_step = step;
	return (uint64_t)v[0];
}
