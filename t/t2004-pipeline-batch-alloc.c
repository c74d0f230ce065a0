/* t2004-pipeline-batch-alloc: pf_options.batch_alloc/batch_free: every
 * batch buffer of batch, padded_batch and map+batch comes from the
 * allocator, and every block it gave is given back (none leaks). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "pipefeed.h"
#include "tap.h"

#define MAXB 4096
static pf_error err;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct { void *p; size_t n; } blocks[MAXB];
static long nalloc, nfree, bad_free;

static void *my_alloc(void *user, size_t bytes)
{
	void *p = aligned_alloc(64, bytes);
	pthread_mutex_lock(&lock);
	(*(long *)user)++;
	for (int i = 0; p && i < MAXB; i++)
		if (!blocks[i].p) {
			blocks[i].p = p;
			blocks[i].n = bytes;
			break;
		}
	nalloc++;
	pthread_mutex_unlock(&lock);
	return p;
}

static void my_free(void *user, void *p, size_t bytes)
{
	pthread_mutex_lock(&lock);
	int found = 0;
	for (int i = 0; i < MAXB; i++)
		if (blocks[i].p == p) {
			found = blocks[i].n == bytes;
			blocks[i].p = NULL;
			break;
		}
	bad_free += !found;
	nfree++;
	pthread_mutex_unlock(&lock);
	free(p);
}

/* Is [p, p + n) inside a block from my_alloc? */
static int from_alloc(const void *p, size_t n)
{
	const unsigned char *c = p;
	int in = 0;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < MAXB && !in; i++) {
		const unsigned char *b = blocks[i].p;
		in = b && c >= b && c + n <= b + blocks[i].n;
	}
	pthread_mutex_unlock(&lock);
	return in;
}

static int dbl_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "twice: i64", e);
}

static int dbl_fn(void *st, const pf_elem *in, pf_elem *out, pf_error *e)
{
	*(int64_t *)out->data[0] = 2 * *(const int64_t *)in->data[0];
	return 0;
}

/* kind 0: range -> batch(16); 1: range -> map -> batch(8) (map+batch);
 * 2: records -> padded_batch(4) */
static int run(int kind, int par, long *calls, char *plan, size_t cap, long *nb, long *inside)
{
	static unsigned char recs[50][10];
	static const void *rp[50];
	static size_t lens[50];
	for (int i = 0; i < 50; i++) {
		rp[i] = recs[i];
		lens[i] = (size_t)(i % 10) + 1;
		memset(recs[i], i, sizeof(recs[i]));
	}
	pf_options o = { .seed = 1, .batch_alloc = my_alloc, .batch_free = my_free,
			 .alloc_user = calls };
	pf_pipeline *p;
	int rc = pf_pipeline_new(&p, &o, &err);
	if (rc)
		return rc;
	pf_map_opts mo = { .num_parallel_calls = par };
	pf_padded_opts po = { .max_len = 10 };
	if (kind == 0)
		rc = pf_range(p, 0, 1000, 1, &err) || pf_batch(p, 16, 0, &err);
	else if (kind == 1)
		rc = pf_range(p, 0, 1000, 1, &err) ||
			pf_map_func(p, "dbl", dbl_prepare, dbl_fn, NULL, "", &mo, &err) ||
			pf_batch(p, 8, 0, &err);
	else
		rc = pf_records(p, rp, lens, 50, NULL, &err) || pf_padded_batch(p, 4, &po, &err);
	pf_iter *it = NULL;
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	if (!rc)
		pf_iter_describe(it, plan, cap);
	pf_elem b[3];
	*nb = *inside = 0;
	/* hold a few batches at once so that several buffers are live */
	for (int ep = 0; ep < 2 && !rc; ep++) {
		int k = 0;
		while ((rc = pf_iter_next(it, &b[k % 3], &err)) == 0) {
			(*nb)++;
			*inside += from_alloc(b[k % 3].buf, b[k % 3].nbytes);
			k++;
			if (k >= 3)
				pf_elem_release(&b[k % 3]);
		}
		for (int j = 0; j < 3; j++)
			pf_elem_release(&b[j]);
		rc = rc == PF_END ? 0 : rc;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc;
}

int main(void)
{
	alarm(60);
	plan(8);
	static const char *names[] = { "batch", "map+batch (2 workers)", "padded_batch" };
	for (int kind = 0; kind < 3; kind++) {
		long calls = 0, nb, inside;
		char plan_[256] = "";
		nalloc = nfree = bad_free = 0;
		int rc = run(kind, 2, &calls, plan_, sizeof(plan_), &nb, &inside);
		ok(!rc && nb > 0 && inside == nb && calls > 0,
		   "%s: all %ld batches in allocator memory (%ld allocations) [%s]", names[kind], nb,
		   calls, plan_);
		ok(nalloc == nfree && !bad_free, "%s: every block given back (%ld/%ld)", names[kind],
		   nfree, nalloc);
		if (kind == 1)
			like(plan_, "map+batch(8)", "map fused into batch on a range source");
	}
	pf_options o = { .batch_alloc = my_alloc };
	pf_pipeline *p;
	ok(pf_pipeline_new(&p, &o, &err) == PF_EINVAL, "batch_alloc without batch_free is refused");
	return done_testing();
}
