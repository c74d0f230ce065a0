/* t2006-pipeline-map-takeback: an autotuned map's worker count moves
 * between 1 (the consumer maps inline) and 2+ (feeder and workers) while
 * the consumer pulls, as the autotuner does when it takes a step back.  A
 * consumer that went to wait for a unit just before the count dropped to 1
 * once waited for good (the feeder needs 2, and nothing woke the
 * consumer): a ThreadSanitizer run of pipe-train (t4105) hung on it.  Here
 * a thread flips the count up and straight back down thousands of times
 * through 200 epochs; every epoch must deliver every value once, in order
 * (the map is ordered), and the run must end.  (The hang's window is a
 * feeder's wake-up: this test did not hit it on the old code in 5 runs;
 * it guards the switching, the fix is argued in map.c and map_pool.c.) */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "pf_op.h"
#include "pf_pipeline_int.h"
#include "pipefeed.h"
#include "tap.h"

#define N 3000
#define EPOCHS 200
static int64_t vals[N];
static const void *recs[N];
static size_t lens[N];

static int cp_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "v: i64", e);
}

static int cp_fn(void *st, const pf_elem *in, pf_elem *out, pf_error *e)
{
	(void)st;
	if (in->nitems[0] != 8)
		return pf_error_set(e, PF_ECORRUPT, "record of %lld bytes", (long long)in->nitems[0]);
	memcpy(out->data[0], in->data[0], 8);
	return 0;
}

static pf_op *map_op;
static atomic_int stop;
static atomic_long flips;

static void *flipper(void *arg)
{
	(void)arg;
	unsigned x = 12345;
	while (!atomic_load(&stop)) {
		/* up for a moment, back down: the feeder, woken, may find the
		 * count at 1 again before it reserved a unit */
		x = x * 1103515245u + 12345u;
		map_op->desc->set_parallelism(map_op, 2 + (int)((x >> 20) % 2));
		for (unsigned k = (x >> 8) % 4; k; k--)
			sched_yield();
		map_op->desc->set_parallelism(map_op, 1);
		atomic_fetch_add(&flips, 1);
		sched_yield();
	}
	return NULL;
}

int main(void)
{
	alarm(120);
	plan(4);
	for (int i = 0; i < N; i++) {
		vals[i] = 7 * i + 1;
		recs[i] = &vals[i];
		lens[i] = 8;
	}
	pf_error err = { 0 };
	pf_options o = { .cpu_budget = 3, .seed = 5 };
	pf_pipeline *p;
	pf_map_opts mo = { .num_parallel_calls = PF_AUTOTUNE };
	int rc = pf_pipeline_new(&p, &o, &err);
	rc = rc ? rc : pf_records(p, recs, lens, N, NULL, &err);
	rc = rc ? rc : pf_map_func(p, "copy", cp_prepare, cp_fn, NULL, "", &mo, &err);
	rc = rc ? rc : pf_batch(p, 4, 0, &err);
	pf_iter *it = NULL;
	rc = rc ? rc : pf_iter_new(&it, p, &err);
	for (int i = 0; !rc && i < it->nstages; i++)
		if (pf_op_traits(it->stages[i]) & PF_OP_MAP)
			map_op = it->stages[i];
	ok(!rc && map_op && map_op->st.max_parallelism >= 2,
	   "an autotuned map+batch with workers to move: %s", rc ? err.msg : "ok");
	if (rc || !map_op) {
		skip(3, "no pipeline");
		return done_testing();
	}
	pthread_t th;
	pthread_create(&th, NULL, flipper, NULL);
	int in_order = 1, epochs = 0;
	for (int ep = 0; ep < EPOCHS && !rc; ep++) {
		pf_elem b;
		int64_t k = 0;
		while ((rc = pf_iter_next(it, &b, &err)) == 0) {
			const int64_t *v = b.data[0];
			for (uint32_t j = 0; j < b.batch; j++, k++)
				in_order &= k < N && v[j] == vals[k];
			pf_elem_release(&b);
		}
		if (rc == PF_END && k == N) {
			rc = 0;
			epochs++;
		} else if (rc == PF_END) {
			in_order = 0;
			rc = 0;
		}
		/* on a loaded machine the flipper may get little CPU while an
		 * epoch runs: each epoch waits for its flip, so the count moves
		 * in every one of them whatever the scheduling */
		while (atomic_load(&flips) < ep + 2)
			sched_yield();
	}
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	ok(epochs == EPOCHS, "%d of %d epochs ended (%ld flips of the worker count)%s%s", epochs,
	   EPOCHS, atomic_load(&flips), rc ? ": " : "", rc ? err.msg : "");
	ok(in_order, "every epoch: every value once, in order");
	ok(atomic_load(&flips) > EPOCHS, "the count moved during the epochs");
	pf_iter_free(it);
	pf_pipeline_free(p);
	return done_testing();
}
