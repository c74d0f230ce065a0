/* t2000-pipeline-exactly-once: shards -> map -> [shuffle] -> [cache] ->
 * batch -> prefetch delivers every record exactly once for every mix of
 * map parallelism, ordered/unordered, shuffle, cache and cycle_length over
 * uneven shards (one empty); the same seed gives the same order whatever
 * the thread count (the batch's workers too: with par 8 the batch gets 3,
 * which assemble in parallel after the in-memory cache); another seed
 * another order; epochs reshuffle. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "pf_shard.h"
#include "pipefeed.h"
#include "tap.h"

#include "value_shards.h"

#define NSHARDS 5
static const int shard_sizes[NSHARDS] = { 37, 0, 513, 1, 200 };
static vs_set set;
static int total;
static char dir[520], tmpd[512];
static pf_error err;

/* uneven work makes completion order differ */
static void delay(int64_t v)
{
	if (v % 7 == 0)
		usleep(50);
}

typedef struct cfg {
	int par, unordered, shuffle, cache, cycle;
	uint64_t seed;
	int shuffle_files, no_reshuffle;
	int bpar;             /* the batch's workers; 0: auto */
} cfg;

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* Run `epochs` epochs; seq[e] gets epoch e's values.  Returns 0 or a code. */
static int run(const cfg *c, int epochs, int64_t **seq, long *n, char *plan, size_t plan_cap)
{
	pf_options o = { .seed = c->seed, .nondeterministic = c->unordered, .cpu_budget = 2 };
	pf_pipeline *p;
	int rc = pf_pipeline_new(&p, &o, &err);
	pf_source_opts so = { .cycle_length = c->cycle, .num_parallel_reads = 2,
			      .shuffle_files = c->shuffle_files };
	rc = rc ? rc : pf_shards(p, set.pathv, NSHARDS, &so, &err);
	pf_map_opts mo = { .num_parallel_calls = c->par, .unordered = c->unordered };
	rc = rc ? rc : pf_map_func(p, "decode", vs_prepare, vs_decode, &set, "", &mo, &err);
	pf_shuffle_opts sho = { .no_reshuffle = c->no_reshuffle };
	if (c->shuffle && !rc)
		rc = pf_shuffle(p, 64, &sho, &err);
	char cpath[700];
	snprintf(cpath, sizeof(cpath), "%s/cache-%d-%d-%d-%d", tmpd, c->par, c->unordered, c->shuffle, c->cycle);
	if (c->cache && !rc)
		rc = pf_cache(p, c->cache == 2 ? cpath : NULL, 0, &err);
	rc = rc ? rc : pf_batch_par(p, 7, 0, c->bpar ? c->bpar : PF_AUTOTUNE, &err);
	rc = rc ? rc : pf_prefetch(p, 2, &err);
	pf_iter *it = NULL;
	rc = rc ? rc : pf_iter_new(&it, p, &err);
	if (!rc && plan)
		pf_iter_describe(it, plan, plan_cap);
	for (int ep = 0; ep < epochs && !rc; ep++) {
		pf_elem e;
		n[ep] = 0;
		while ((rc = pf_iter_next(it, &e, &err)) == 0) {
			for (int64_t k = 0; k < e.nitems[0]; k++)
				if (n[ep] < total)
					seq[ep][n[ep]++] = ((int64_t *)e.data[0])[k];
				else
					n[ep]++;
			pf_elem_release(&e);
		}
		if (rc == PF_END)
			rc = 0;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	unlink(cpath);
	return rc;
}

static int exactly_once(const int64_t *v, long n)
{
	if (n != total)
		return 0;
	int64_t *s = malloc(sizeof(*s) * (size_t)n);
	memcpy(s, v, sizeof(*s) * (size_t)n);
	qsort(s, (size_t)n, sizeof(*s), cmp64);
	int good = 1;
	for (long i = 0; i < n; i++)
		good &= s[i] == 1000 + i;
	free(s);
	return good;
}

int main(void)
{
	alarm(240);
	const char *d = tap_tmpdir("t2000");
	if (!d)
		plan_skip_all("no scratch directory");
	snprintf(dir, sizeof(dir), "%s/s", d);
	snprintf(tmpd, sizeof(tmpd), "%s", d);
	vs_delay = delay;
	if (vs_write(&set, dir, shard_sizes, NSHARDS, 1000, 50, 700, &err) == 0)
		total = set.total;
	else {
		printf("1..0 # SKIP cannot write shards: %s\n", err.msg);
		return 1;
	}
	int64_t *seq[3];
	for (int i = 0; i < 3; i++)
		seq[i] = calloc((size_t)total, sizeof(int64_t));
	long n[3];
	static const int pars[] = { 1, 2, 8 }, cycles[] = { 1, 3, 16 };

	for (int pi = 0; pi < 3; pi++)
		for (int un = 0; un <= 1; un++)
			for (int sh = 0; sh <= 1; sh++)
				for (int ca = 0; ca <= 2; ca++)
					for (int ci = 0; ci < 3; ci++) {
						cfg c = { pars[pi], un, sh, ca, cycles[ci], 42, 0, 0,
							  pi == 2 ? 3 : 0 };
						char plan[256] = "";
						pf_error_clear(&err);
						int rc = run(&c, 2, seq, n, plan, sizeof(plan));
						int good = !rc && exactly_once(seq[0], n[0]) &&
							exactly_once(seq[1], n[1]);
						if (ca && good)
							good = !memcmp(seq[0], seq[1], sizeof(int64_t) * (size_t)total);
						ok(good, "par=%d %s shuffle=%d cache=%s cycle=%d: exactly once%s [%s]",
						   c.par, un ? "unordered" : "ordered", sh,
						   ca == 0 ? "off" : ca == 1 ? "memory" : "file", c.cycle,
						   ca ? ", epoch 2 = epoch 1" : "", plan);
						if (rc)
							diag("rc %d: %s", rc, err.msg);
						else if (!good)
							diag("n %ld %ld first %lld %lld", n[0], n[1], (long long)seq[0][0], (long long)seq[1][0]);
					}

	/* determinism across thread counts */
	int64_t *ref = calloc((size_t)total, sizeof(int64_t));
	cfg c = { 1, 0, 1, 0, 3, 7, 1, 0 };
	char plan[256];
	int rc = run(&c, 2, seq, n, plan, sizeof(plan));
	memcpy(ref, seq[0], sizeof(int64_t) * (size_t)total);
	ok(!rc && exactly_once(ref, n[0]), "reference run (par 1, shuffled files and buffer)");
	ok(memcmp(seq[0], seq[1], sizeof(int64_t) * (size_t)total) != 0, "epoch 2 is reshuffled");
	for (int pi = 1; pi < 3; pi++) {
		c.par = pars[pi];
		rc = run(&c, 1, seq, n, NULL, 0);
		ok(!rc && !memcmp(seq[0], ref, sizeof(int64_t) * (size_t)total),
		   "same seed, par %d: the same order as par 1", c.par);
	}
	/* the batch assembled by 1 and by 3 workers after the in-memory cache */
	cfg b1 = { 2, 0, 1, 1, 3, 7, 1, 0, 1 }, b3 = b1;
	b3.bpar = 3;
	int64_t *one = calloc((size_t)total, sizeof(int64_t));
	rc = run(&b1, 2, seq, n, NULL, 0);
	if (!rc)
		memcpy(one, seq[1], sizeof(int64_t) * (size_t)total);
	int rc3 = rc ? rc : run(&b3, 2, seq, n, plan, sizeof(plan));
	ok(!rc && !rc3 && exactly_once(seq[1], n[1]) &&
	   !memcmp(one, seq[1], sizeof(int64_t) * (size_t)total),
	   "batch par 3 after the cache: the order of par 1, epoch 2 too [%s]", plan);
	free(one);
	c.par = 8;
	c.seed = 8;
	rc = run(&c, 1, seq, n, NULL, 0);
	ok(!rc && exactly_once(seq[0], n[0]) && memcmp(seq[0], ref, sizeof(int64_t) * (size_t)total),
	   "another seed: another order");
	c.seed = 7;
	c.no_reshuffle = 1;
	c.shuffle_files = 0;
	rc = run(&c, 2, seq, n, NULL, 0);
	ok(!rc && !memcmp(seq[0], seq[1], sizeof(int64_t) * (size_t)total),
	   "no_reshuffle and no file shuffle: epochs equal");
	/* fusion: a fixed-shape map right after shards runs in the source's
	 * workers, straight into the block's slot storage, and the batch
	 * gathers from there (map+batch fusion is for other sources: t2003) */
	cfg f = { 2, 0, 0, 0, 3, 1, 0, 0 };
	run(&f, 1, seq, n, plan, sizeof(plan));
	like(plan, "shards+map -> batch", "map fused into the source: %s", plan);

	for (int i = 0; i < 3; i++)
		free(seq[i]);
	free(ref);
	return done_testing();
}
