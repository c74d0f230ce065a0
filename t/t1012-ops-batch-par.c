/* t1012-ops-batch-par: parallel batch assembly (batch(par=N) over an input
 * that lends its elements: the in-memory cache, a shuffle over it in
 * reference mode) gives the batches of the one-thread gather, in the same
 * order, for any worker count: whole epochs, an epoch cut short by take(),
 * batches held while the next ones are assembled, the last partial batch
 * (and drop=true), and an error of the input after some batches. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipefeed.h"
#include "pf_spec.h"
#include "tap.h"

#define N 10007
#define EPOCHS 3

static pf_error err;

typedef struct run {
	int64_t *v;      /* values in output order, all epochs */
	int n, cap;
	int batches[EPOCHS];
	int rc[EPOCHS];  /* how each epoch ended */
	char msg[EPOCHS][256];
	int par;         /* the batch stage's workers */
} run;

static void push(run *r, int64_t x)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 4096;
		r->v = realloc(r->v, (size_t)r->cap * sizeof(*r->v));
	}
	r->v[r->n++] = x;
}

/* Run spec for EPOCHS epochs into *r; `hold` batches of each epoch are kept
 * unreleased until its end (and checked then). */
static int run_spec(const char *spec, int hold, run *r)
{
	pf_pipeline *p;
	pf_iter *it;
	memset(r, 0, sizeof(*r));
	memset(&err, 0, sizeof(err));
	pf_pipeline_new(&p, NULL, &err);
	if (pf_spec_apply(p, spec, &err) || pf_iter_new(&it, p, &err)) {
		diag("%s: %s", spec, err.msg);
		pf_pipeline_free(p);
		return -1;
	}
	int good = 0;
	for (int i = 0; i < pf_iter_nstages(it); i++) {
		pf_op_stats st;
		if (!pf_iter_stats(it, i, &st) && !strncmp(st.name, "batch", 5))
			r->par = st.parallelism;
	}
	for (int ep = 0; ep < EPOCHS; ep++) {
		pf_elem held[8];
		int64_t first[8];
		int nh = 0, rc;
		pf_elem e;
		while ((rc = pf_iter_next(it, &e, &err)) == 0) {
			r->batches[ep]++;
			for (int64_t k = 0; k < e.nitems[0]; k++)
				push(r, ((const int64_t *)e.data[0])[k]);
			if (nh < hold && nh < 8) {
				first[nh] = ((const int64_t *)e.data[0])[0];
				held[nh++] = e;
			} else {
				pf_elem_release(&e);
			}
		}
		r->rc[ep] = rc;
		snprintf(r->msg[ep], sizeof(r->msg[ep]), "%s", rc < 0 ? err.msg : "");
		for (int k = 0; k < nh; k++) {
			good |= ((const int64_t *)held[k].data[0])[0] != first[k];
			pf_elem_release(&held[k]);
		}
		if (rc < 0)
			break;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return good ? -2 : 0;
}

/* The same values, batches and ends as the reference. */
static int same(const run *a, const run *b)
{
	if (a->n != b->n || memcmp(a->v, b->v, (size_t)a->n * sizeof(*a->v)))
		return 0;
	for (int ep = 0; ep < EPOCHS; ep++)
		if (a->batches[ep] != b->batches[ep] || a->rc[ep] != b->rc[ep] ||
		    strcmp(a->msg[ep], b->msg[ep]))
			return 0;
	return 1;
}

/* Every epoch of a whole run holds 0..N-1 once each. */
static int exactly_once(const run *r)
{
	if (r->n != EPOCHS * N)
		return 0;
	for (int ep = 0; ep < EPOCHS; ep++) {
		unsigned char *seen = calloc(N, 1);
		int ok = 1;
		for (int k = 0; k < N; k++) {
			int64_t x = r->v[ep * N + k];
			ok &= x >= 0 && x < N && !seen[x];
			if (x >= 0 && x < N)
				seen[x] = 1;
		}
		free(seen);
		if (!ok)
			return 0;
	}
	return 1;
}

/* fmt has one %s for the batch's arguments. */
static void matrix(const char *fmt, const char *title, int whole, int hold)
{
	char spec[512];
	run ref, r;
	snprintf(spec, sizeof(spec), fmt, "par=1");
	if (run_spec(spec, hold, &ref)) {
		ok(0, "%s: the one-thread run", title);
		return;
	}
	if (whole)
		ok(exactly_once(&ref), "%s: par=1 gives every element once per epoch", title);
	const char *pars[] = { "par=2", "par=3", "par=8", "par=auto" };
	for (size_t i = 0; i < sizeof(pars) / sizeof(*pars); i++) {
		snprintf(spec, sizeof(spec), fmt, pars[i]);
		int rc = run_spec(spec, hold, &r);
		int want = atoi(pars[i] + 4);
		if (want && r.par != want)
			diag("%s: the batch stage runs %d workers, not %d", spec, r.par, want);
		ok(rc == 0 && same(&ref, &r) && (!want || r.par == want),
		   "%s: %s gives the same batches in the same order%s",
		   title, pars[i], hold ? " (batches held stay intact)" : "");
		free(r.v);
	}
	free(ref.v);
}

int main(void)
{
	matrix("range(0, 10007) | cache | shuffle(1000, seed=5) | batch(64, %s)",
	       "cache | shuffle | batch", 1, 0);
	matrix("range(0, 10007) | cache | batch(100, %s)", "cache | batch", 1, 0);
	matrix("range(0, 10007) | cache | shuffle(1000, seed=5) | batch(64, drop=true, %s)",
	       "drop=true", 0, 0);
	matrix("range(0, 10007) | cache | shuffle(1000, seed=5) | batch(64, %s) | take(7)",
	       "cut short by take(7)", 0, 0);
	matrix("range(0, 10007) | cache | shuffle(1000, seed=5) | batch(32, %s)",
	       "8 batches held", 0, 8);
	/* the cache's bound is passed after 4096 elements (32 bytes each,
	 * 4 MiB chunks: the second chunk does not fit): the batches before
	 * come out, then the error */
	run ref;
	const char *bad = "range(0, 200000) | cache(max_bytes=5000000) | batch(64, %s)";
	char spec[256];
	snprintf(spec, sizeof(spec), bad, "par=1");
	int rc = run_spec(spec, 0, &ref);
	ok(rc == 0 && ref.rc[0] == PF_EBUDGET && ref.batches[0] > 0,
	   "the cache's bound fails the epoch after %d batches", ref.batches[0]);
	free(ref.v);
	matrix(bad, "an input error", 0, 0);
	return done_testing();
}
