/* t2007-pipeline-consumer-helps: the shards op's consumer decodes the
 * epoch's next block itself when the one it needs is not ready (unless
 * consumer_waits).  Which thread decodes a block must change nothing: the
 * same records in the same order, a damaged block skipped and counted the
 * same way.  The map is fused into the source, so it runs where the block
 * is decoded: the test sees on which thread.  And the source's slack
 * buffers give way to a memory budget that has no room for them. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "pf_shard.h"
#include "pipefeed.h"
#include "tap.h"
#include "value_shards.h"

#define NSH 4
#define PER 1500
#define EPOCHS 3

static pthread_t main_thread;
static atomic_long on_main, on_workers;

/* every decoded record: count where; the workers also sleep now and
 * then, so that they fall behind the consumer whatever the machine's
 * speed (or a sanitizer's) */
static void delay(int64_t v)
{
	if (pthread_equal(pthread_self(), main_thread)) {
		atomic_fetch_add(&on_main, 1);
		return;
	}
	atomic_fetch_add(&on_workers, 1);
	if (v % 8 == 0)
		nanosleep(&(struct timespec){ .tv_nsec = 20000 }, NULL);
}

typedef struct run_res {
	int rc;
	char msg[512];
	int64_t *seq;                /* EPOCHS * total values, in order */
	long n[EPOCHS];
	uint64_t corrupt, skipped;
	long main_decoded, worker_decoded;
} run_res;

static void run(vs_set *vs, int waits, int skip, int reads, run_res *r)
{
	pf_error err = { 0 };
	memset(r->n, 0, sizeof(r->n));
	r->rc = 0;
	r->msg[0] = 0;
	atomic_store(&on_main, 0);
	atomic_store(&on_workers, 0);
	pf_options o = { .seed = 11, .cpu_budget = 2 };
	pf_pipeline *p;
	pf_pipeline_new(&p, &o, &err);
	pf_source_opts so = { .cycle_length = NSH, .num_parallel_reads = reads,
			      .shuffle_files = 1, .skip_corrupt = skip,
			      .consumer_waits = waits };
	pf_map_opts mo = { .num_parallel_calls = 1 };
	pf_iter *it = NULL;
	int rc = pf_shards(p, vs->pathv, NSH, &so, &err);
	if (!rc)
		rc = pf_map_func(p, "vs", vs_prepare, vs_decode, vs, "", &mo, &err);
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	for (int ep = 0; ep < EPOCHS && !rc; ep++) {
		pf_elem e;
		while ((rc = pf_iter_next(it, &e, &err)) == 0) {
			if (r->n[ep] < vs->total)
				r->seq[(long)ep * vs->total + r->n[ep]] = *(const int64_t *)e.data[0];
			r->n[ep]++;
			pf_elem_release(&e);
		}
		if (rc == PF_END)
			rc = 0;
	}
	r->rc = rc;
	if (rc)
		snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
	pf_op_stats st;
	r->corrupt = r->skipped = 0;
	if (it && pf_iter_stats(it, 0, &st) == 0) {
		r->corrupt = st.corrupt_blocks;
		r->skipped = st.skipped_records;
	}
	r->main_decoded = atomic_load(&on_main);
	r->worker_decoded = atomic_load(&on_workers);
	pf_iter_free(it);
	pf_pipeline_free(p);
}

/* each value of [0, total) once per epoch, but those of the skipped
 * range [lo, hi) */
static int once_each(const run_res *r, const vs_set *vs, int64_t lo, int64_t hi)
{
	char *seen = malloc((size_t)vs->total);
	int good = seen != NULL;
	for (int ep = 0; good && ep < EPOCHS; ep++) {
		memset(seen, 0, (size_t)vs->total);
		for (long i = 0; i < r->n[ep] && i < vs->total; i++) {
			int64_t v = r->seq[(long)ep * vs->total + i];
			if (v < 0 || v >= vs->total || seen[v] || (v >= lo && v < hi))
				good = 0;
			else
				seen[v] = 1;
		}
		if (r->n[ep] != vs->total - (hi - lo))
			good = 0;
	}
	free(seen);
	return good;
}

static int same(const run_res *a, const run_res *b, const vs_set *vs)
{
	for (int ep = 0; ep < EPOCHS; ep++)
		if (a->n[ep] != b->n[ep] ||
		    memcmp(a->seq + (long)ep * vs->total, b->seq + (long)ep * vs->total,
			   (size_t)a->n[ep] * sizeof(int64_t)))
			return 0;
	return 1;
}

/* Build shards(cycle 4, reads 1) -> shuffle(n) under a 4 MiB budget:
 * PF_EBUDGET or 0; *depth: the source's buffers, *total: the records of
 * one epoch when count is set. */
static int build(vs_set *vs, int64_t n, int count, int *depth, long *total)
{
	pf_error err = { 0 };
	pf_options o = { .seed = 3, .cpu_budget = 2, .memory_budget = 4u << 20 };
	pf_pipeline *p;
	pf_pipeline_new(&p, &o, &err);
	pf_source_opts so = { .cycle_length = NSH, .num_parallel_reads = 1 };
	pf_iter *it = NULL;
	int rc = pf_shards(p, vs->pathv, NSH, &so, &err);
	if (!rc)
		rc = pf_shuffle(p, n, NULL, &err);
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	pf_op_stats st;
	*depth = !rc && pf_iter_stats(it, 0, &st) == 0 ? st.depth : -1;
	*total = 0;
	pf_elem e;
	while (!rc && count && (rc = pf_iter_next(it, &e, &err)) == 0) {
		(*total)++;
		pf_elem_release(&e);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc == PF_END ? 0 : rc;
}

/* The source's slack buffers are the first to give way to the memory
 * budget: a pipeline that fits without them still builds. */
static void budget_sheds_slack(vs_set *vs)
{
	int d;
	long tot;
	int64_t lo = 1, hi = 1 << 24; /* builds at lo, not at hi */
	if (build(vs, lo, 0, &d, &tot) || build(vs, hi, 0, &d, &tot) != PF_EBUDGET) {
		ok(0, "budget: shuffle(1) builds and shuffle(2^24) does not");
		return;
	}
	while (hi - lo > 1) {
		int64_t mid = lo + (hi - lo) / 2;
		if (build(vs, mid, 0, &d, &tot) == 0)
			lo = mid;
		else
			hi = mid;
	}
	int rc = build(vs, lo, 1, &d, &tot);
	ok(rc == 0 && tot == vs->total,
	   "budget: the largest shuffle that fits (%lld) runs an epoch whole (%ld of %d)",
	   (long long)lo, tot, vs->total);
	is_int(d, NSH + 2, "budget: with it the source does without its slack buffers");
	build(vs, lo / 2, 0, &d, &tot);
	ok(d > NSH + 2, "budget: with room to spare it keeps them (%d buffers)", d);
	is_int(build(vs, lo + 1, 0, &d, &tot), PF_EBUDGET, "budget: one element more fails");
}

int main(void)
{
	alarm(120);
	main_thread = pthread_self();
	vs_delay = delay;
	char dir[600];
	snprintf(dir, sizeof(dir), "%s/v", tap_tmpdir("t2007"));
	int sizes[NSH] = { PER, PER + 7, PER - 13, PER + 101 };
	vs_set vs;
	pf_error err = { 0 };
	/* small blocks: dozens per shard */
	int rc = vs_write(&vs, dir, sizes, NSH, 0, 23, 1024, &err);
	is_int(rc, 0, "shards written: %s", err.msg);
	if (rc)
		return done_testing();
	run_res a, b;
	a.seq = calloc((size_t)EPOCHS * vs.total, sizeof(int64_t));
	b.seq = calloc((size_t)EPOCHS * vs.total, sizeof(int64_t));

	for (int reads = 1; reads <= 2; reads++) {
		run(&vs, 0, 0, reads, &a);
		run(&vs, 1, 0, reads, &b);
		ok(a.rc == 0 && b.rc == 0, "reads %d: both runs end cleanly (%s%s)", reads, a.msg, b.msg);
		ok(once_each(&a, &vs, 0, 0) && once_each(&b, &vs, 0, 0),
		   "reads %d: every record once an epoch, %d epochs, both ways", reads, EPOCHS);
		ok(same(&a, &b, &vs), "reads %d: the consumer decoding changes nothing in the order", reads);
		ok(a.main_decoded > 0, "reads %d: the consumer decoded records itself (%ld of %ld)",
		   reads, a.main_decoded, a.main_decoded + a.worker_decoded);
		is_int(b.main_decoded, 0, "reads %d: with consumer_waits it decoded none", reads);
	}

	budget_sheds_slack(&vs);

	/* damage one block in the middle of the third shard: skipped and
	 * counted alike, whoever decoded it */
	pf_shard *sh;
	rc = pf_shard_open(&sh, vs.pathv[2], 0, &err);
	is_int(rc, 0, "open shard 2: %s", err.msg);
	if (rc)
		return done_testing();
	uint32_t blk = pf_shard_nblocks(sh) / 2;
	const pf_block_info *bi = pf_shard_block(sh, blk);
	long off = (long)(bi->offset + PF_SHARD_BLOCK_HEADER_SIZE + bi->stored_len / 2);
	int64_t lo = (int64_t)(sizes[0] + sizes[1]) + (int64_t)bi->first_record;
	int64_t hi = lo + bi->nrecords;
	pf_shard_close(sh);
	FILE *f = fopen(vs.pathv[2], "r+b");
	int c = f && fseek(f, off, SEEK_SET) == 0 ? fgetc(f) : EOF;
	ok(c != EOF && fseek(f, off, SEEK_SET) == 0 && fputc(c ^ 0x5a, f) != EOF && fclose(f) == 0,
	   "flipped a byte of block %u of shard 2 (records %lld..%lld)", blk, (long long)lo,
	   (long long)hi - 1);
	run(&vs, 0, 1, 1, &a);
	run(&vs, 1, 1, 1, &b);
	ok(a.rc == 0 && b.rc == 0, "skip_corrupt: both runs end cleanly (%s%s)", a.msg, b.msg);
	ok(once_each(&a, &vs, lo, hi) && once_each(&b, &vs, lo, hi),
	   "skip_corrupt: every other record once an epoch, the damaged block's none");
	ok(same(&a, &b, &vs), "skip_corrupt: the same order both ways");
	ok(a.corrupt == EPOCHS && b.corrupt == EPOCHS && a.skipped == b.skipped &&
	   a.skipped == (uint64_t)(hi - lo) * EPOCHS,
	   "skip_corrupt: counted alike (corrupt blocks %llu / %llu, records %llu / %llu)",
	   (unsigned long long)a.corrupt, (unsigned long long)b.corrupt,
	   (unsigned long long)a.skipped, (unsigned long long)b.skipped);
	run(&vs, 0, 0, 1, &a);
	ok(a.rc == PF_ECORRUPT && strstr(a.msg, vs.pathv[2]) && strstr(a.msg, "offset"),
	   "without skip_corrupt the damage fails the epoch, naming file and offset (%s)", a.msg);
	free(a.seq);
	free(b.seq);
	return done_testing();
}
