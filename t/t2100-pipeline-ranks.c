/* t2100-pipeline-ranks: a pipeline split over ranks (pf_options.world and
 * rank), one pipeline per rank run in this process: over 1..4 ranks, files
 * of uneven sizes, shuffle and file shuffle on and off, two epochs, the
 * ranks' records together are every record of the epoch exactly once
 * (0 duplicates, 0 missing).  With at least as many files as ranks each
 * rank reads whole files (file f on rank f % world; no rank split stage in
 * the plan); with fewer (or PF_SPLIT_RECORDS) every rank keeps records
 * rank, rank + world, ... so the parts differ by at most one record.
 * PF_SPLIT_FILES with too few files and bad rank/world pairs are errors. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_shard.h"
#include "pipefeed.h"
#include "tap.h"
#include "value_shards.h"

#define EPOCHS 2
static pf_error err;

typedef struct dset {
	vs_set s;
	int n;
	int sizes[VS_MAX_SHARDS];
} dset;

typedef struct cfg {
	int world, shuffle, shuffle_files, split, par;
} cfg;

/* Which file value v is in. */
static int file_of(const dset *d, int64_t v)
{
	int64_t at = d->s.base;
	for (int f = 0; f < d->n; f++) {
		if (v < at + d->sizes[f])
			return f;
		at += d->sizes[f];
	}
	return -1;
}

/* Rank r of c's world: append its values of each epoch to got[e] (*n[e]
 * counts), the plan's text to plan.  0 or a code. */
static int run_rank(const dset *d, const cfg *c, int r, int64_t **got, long *n,
		    char *plan, size_t cap)
{
	pf_options o = { .seed = 5, .cpu_budget = 2, .world = c->world, .rank = r,
			 .split = c->split };
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	int rc = pf_pipeline_new(&p, &o, &err);
	pf_source_opts so = { .cycle_length = 2, .num_parallel_reads = 2,
			      .shuffle_files = c->shuffle_files };
	rc = rc ? rc : pf_shards(p, d->s.pathv, (size_t)d->n, &so, &err);
	pf_map_opts mo = { .num_parallel_calls = c->par };
	rc = rc ? rc : pf_map_func(p, "decode", vs_prepare, vs_decode, (void *)&d->s, "",
				   &mo, &err);
	if (c->shuffle && !rc)
		rc = pf_shuffle(p, 16, NULL, &err);
	rc = rc ? rc : pf_batch(p, 5, 0, &err);
	rc = rc ? rc : pf_prefetch(p, 2, &err);
	rc = rc ? rc : pf_iter_new(&it, p, &err);
	if (!rc)
		pf_iter_describe(it, plan, cap);
	for (int e = 0; e < EPOCHS && !rc; e++) {
		pf_elem b;
		while ((rc = pf_iter_next(it, &b, &err)) == 0) {
			for (int64_t k = 0; k < b.nitems[0]; k++)
				got[e][n[e]++] = ((int64_t *)b.data[0])[k];
			pf_elem_release(&b);
		}
		if (rc == PF_END)
			rc = 0;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Duplicates and missing values of got[0..n) against base .. base+total. */
static void count(const dset *d, int64_t *got, long n, long *dup, long *miss)
{
	qsort(got, (size_t)n, sizeof(*got), cmp64);
	*dup = *miss = 0;
	long i = 0;
	for (int64_t v = d->s.base; v < d->s.base + d->s.total; v++) {
		long k = 0;
		while (i < n && got[i] == v) {
			k++;
			i++;
		}
		*miss += k == 0;
		*dup += k > 1 ? k - 1 : 0;
	}
	*dup += n - i; /* values out of range */
}

/* All ranks of c over d: exactly once per epoch, and the split the plan
 * shows is the one expected (files: each rank's values from its files). */
static void check(const dset *d, const cfg *c, int want_files)
{
	int64_t *all[EPOCHS], *mine[EPOCHS];
	long nall[EPOCHS] = { 0 };
	for (int e = 0; e < EPOCHS; e++) {
		all[e] = calloc((size_t)d->s.total + 1, sizeof(int64_t));
		mine[e] = calloc((size_t)d->s.total + 1, sizeof(int64_t));
	}
	int rc = 0, files_ok = 1, planned_ok = 1;
	long most = 0, least = d->s.total;
	char plan0[256] = "";
	for (int r = 0; r < c->world && !rc; r++) {
		long nm[EPOCHS] = { 0 };
		char plan[256] = "";
		rc = run_rank(d, c, r, mine, nm, plan, sizeof(plan));
		if (r == c->world - 1)
			snprintf(plan0, sizeof(plan0), "%s", plan);
		int has_split = strstr(plan, "-> shard") != NULL;
		planned_ok &= c->world == 1 ? !has_split : has_split == !want_files;
		for (int e = 0; e < EPOCHS && !rc; e++) {
			if (nall[e] + nm[e] > d->s.total) {
				rc = -1;
				break;
			}
			for (long k = 0; k < nm[e]; k++) {
				if (want_files && file_of(d, mine[e][k]) % c->world != r)
					files_ok = 0;
				all[e][nall[e]++] = mine[e][k];
			}
		}
		if (nm[0] > most)
			most = nm[0];
		if (nm[0] < least)
			least = nm[0];
	}
	long dup[EPOCHS] = { 0 }, miss[EPOCHS] = { 0 };
	for (int e = 0; e < EPOCHS; e++)
		count(d, all[e], nall[e], &dup[e], &miss[e]);
	diag("plan: %s", plan0);
	ok(!rc && !dup[0] && !miss[0] && !dup[1] && !miss[1] && planned_ok &&
	   (!want_files || files_ok) && (want_files || c->world == 1 || most - least <= 1),
	   "%d files, world %d, shuffle %d, shuffle_files %d, split %d, par %d: "
	   "0 duplicates, 0 missing, by %s (dups %ld/%ld, missing %ld/%ld, ranks %ld-%ld%s%s)",
	   d->n, c->world, c->shuffle, c->shuffle_files, c->split, c->par,
	   want_files ? "files" : "records", dup[0], dup[1], miss[0], miss[1], least, most,
	   rc ? ", failed: " : "", rc ? err.msg : "");
	for (int e = 0; e < EPOCHS; e++) {
		free(all[e]);
		free(mine[e]);
	}
}

static int make(dset *d, const char *dir, const int *sizes, int n, int64_t base)
{
	d->n = n;
	memcpy(d->sizes, sizes, sizeof(*sizes) * (size_t)n);
	return vs_write(&d->s, dir, sizes, n, base, 40, 300, &err);
}

int main(void)
{
	alarm(240);
	const char *tmp = tap_tmpdir("t2100");
	if (!tmp)
		plan_skip_all("no scratch directory");
	static const int five[] = { 61, 140, 3, 97, 29 }, two[] = { 45, 8 };
	static dset d5, d2;
	char da[600], db[600];
	snprintf(da, sizeof(da), "%s/five", tmp);
	snprintf(db, sizeof(db), "%s/two", tmp);
	if (make(&d5, da, five, 5, 1000) || make(&d2, db, two, 2, 5000)) {
		printf("1..0 # SKIP cannot write shards: %s\n", err.msg);
		return 1;
	}
	plan(4 * 2 * 2 * 3 + 4 * 2 + 3);
	for (int w = 1; w <= 4; w++)
		for (int sh = 0; sh <= 1; sh++)
			for (int sf = 0; sf <= 1; sf++) {
				cfg c = { w, sh, sf, PF_SPLIT_AUTO, 1 + sh };
				check(&d5, &c, w > 1);            /* 5 files >= w: files */
				check(&d2, &c, w == 2);           /* 2 files: files at 2 */
				c.split = PF_SPLIT_RECORDS;
				check(&d5, &c, 0);
			}
	for (int w = 1; w <= 4; w++)
		for (int sh = 0; sh <= 1; sh++) {
			cfg c = { w, sh, 0, PF_SPLIT_FILES, 2 };
			if (w <= 2)
				check(&d2, &c, w > 1);
			else
				check(&d5, &c, 1);
		}

	/* too few files for a split by files: an error naming the source */
	cfg c = { 3, 0, 0, PF_SPLIT_FILES, 1 };
	int64_t *g[EPOCHS] = { calloc(64, 8), calloc(64, 8) };
	long gn[EPOCHS] = { 0 };
	char plan[256];
	pf_error_clear(&err);
	int rc = run_rank(&d2, &c, 0, g, gn, plan, sizeof(plan));
	ok(rc == PF_EINVAL && strstr(err.msg, "split by files"),
	   "split=files over 3 ranks of 2 files fails: %s", err.msg);
	free(g[0]);
	free(g[1]);

	pf_pipeline *p = NULL;
	pf_options bad = { .world = 2, .rank = 2 };
	pf_error_clear(&err);
	ok(pf_pipeline_new(&p, &bad, &err) == PF_EINVAL && !p && strstr(err.msg, "rank 2"),
	   "rank 2 of world 2 is refused: %s", err.msg);
	pf_options bad2 = { .world = 0, .rank = 1 };
	pf_error_clear(&err);
	ok(pf_pipeline_new(&p, &bad2, &err) == PF_EINVAL && !p,
	   "rank 1 without a world is refused: %s", err.msg);
	return done_testing();
}
