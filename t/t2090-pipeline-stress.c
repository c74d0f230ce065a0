/*
 * t2090-pipeline-stress: many randomly configured pipelines over uneven
 * shards of tiny blocks, with tiny buffers and random delays in the map,
 * the filter, the sleep op and the consumer, run for several epochs with
 * early stops (the iterator freed mid-epoch while an element is still held)
 * under alarm().  Every completed epoch delivers each surviving record
 * exactly once; a stopped one delivers no duplicate and nothing foreign;
 * deterministic configurations give the same sequence as a second run with
 * other thread counts (map, readers, and the batch's workers, which assemble
 * in parallel after a shuffle or the in-memory cache); after all rounds no thread and no file descriptor is
 * left behind, and the resident memory stays bounded.
 *
 * PF_STRESS_ROUNDS (default 60) sets the number of rounds, PF_STRESS_SEED
 * the seed of the configurations (printed, so a failure can be replayed).
 */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "pf_shard.h"
#include "pipefeed.h"
#include "tap.h"

#include "value_shards.h"

#define NSHARDS 6
static const int shard_sizes[NSHARDS] = { 0, 1, 97, 400, 1333, 50 };
static vs_set set;
static int total;
static pf_error err;

/* A random delay of up to max_us, one call in `one_in`, from a per-thread
 * generator (thread-safe; the delays need not be reproducible). */
static void jitter(int one_in, int max_us)
{
	static _Thread_local uint64_t x;
	if (!x)
		x = (uint64_t)(uintptr_t)&x ^ (uint64_t)time(NULL) ^ 0x9e3779b97f4a7c15ull;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	if (x % (uint64_t)one_in == 0)
		usleep((useconds_t)(x >> 20) % (useconds_t)max_us);
}

static void delay(int64_t v)
{
	(void)v;
	jitter(16, 200);
}

/* Drops the values divisible by 11 (after the map: elements are i64). */
static int keep_fn(void *user, const pf_elem *e, pf_error *er)
{
	(void)user;
	(void)er;
	jitter(32, 100);
	return *(const int64_t *)e->data[0] % 11 != 0;
}

typedef struct cfg {
	int par, unordered, shuffle, cache, cycle, block_len, reads;
	int batch, prefetch, filter, sleep_us, epochs;
	long stop_at;         /* elements into the last epoch; -1 = run it out */
	uint64_t seed;
	int bpar;             /* the batch's workers (1: none; 0: auto) */
} cfg;

static uint64_t rng = 1;
static int pick(int n)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (int)((rng >> 33) % (uint64_t)n);
}

static void random_cfg(cfg *c)
{
	static const int pars[] = { 1, 2, 3, 8 }, shuf[] = { 0, 1, 2, 17, 300 };
	static const int batches[] = { 1, 2, 7, 64 }, cycles[] = { 1, 2, 5 };
	c->par = pars[pick(4)];
	c->unordered = pick(4) == 0;
	c->shuffle = shuf[pick(5)];
	c->cache = pick(3) == 0;
	c->cycle = cycles[pick(3)];
	c->block_len = 1 + 2 * pick(2);
	c->reads = 1 + pick(3);
	c->batch = batches[pick(4)];
	c->prefetch = 1 + pick(2);
	c->filter = pick(2);
	c->sleep_us = pick(4) == 0 ? 1 + pick(20) : 0;
	c->epochs = 1 + pick(3);
	c->stop_at = pick(3) == 0 ? pick(total) : -1;
	c->seed = (uint64_t)pick(1000);
	c->bpar = pick(3); /* after the cache it assembles in parallel */
}

static int expected(void)
{
	int n = 0;
	for (int64_t v = 0; v < total; v++)
		n += v % 11 != 0;
	return n;
}

/*
 * Run c; seq gets the last completed epoch's values (n of them).  Returns 0,
 * or 1 when the check failed (diag says why), or a negative pf code.
 */
static int run(const cfg *c, int64_t *seq, long *n, unsigned char *seen)
{
	pf_options o = { .seed = c->seed, .nondeterministic = c->unordered,
			 .cpu_budget = 2, .memory_budget = 8 << 20 };
	pf_pipeline *p;
	int rc = pf_pipeline_new(&p, &o, &err);
	pf_source_opts so = { .cycle_length = c->cycle, .block_length = c->block_len,
			      .num_parallel_reads = c->reads };
	rc = rc ? rc : pf_shards(p, set.pathv, NSHARDS, &so, &err);
	pf_map_opts mo = { .num_parallel_calls = c->par, .unordered = c->unordered };
	rc = rc ? rc : pf_map_func(p, "decode", vs_prepare, vs_decode, &set, "", &mo, &err);
	if (c->filter && !rc)
		rc = pf_filter(p, "keep", keep_fn, NULL, &err);
	if (c->sleep_us && !rc)
		rc = pf_sleep(p, c->sleep_us, &err);
	if (c->cache && !rc)
		rc = pf_cache(p, NULL, 0, &err);
	if (c->shuffle && !rc)
		rc = pf_shuffle(p, c->shuffle, NULL, &err);
	rc = rc ? rc : pf_batch_par(p, c->batch, 0, c->bpar ? c->bpar * 2 - 1 : PF_AUTOTUNE, &err);
	rc = rc ? rc : pf_prefetch(p, c->prefetch, &err);
	pf_iter *it = NULL;
	rc = rc ? rc : pf_iter_new(&it, p, &err);
	int want = c->filter ? expected() : total;
	int bad = 0;
	for (int ep = 0; ep < c->epochs && !rc && !bad; ep++) {
		int last = ep == c->epochs - 1;
		long got = 0;
		memset(seen, 0, (size_t)total);
		pf_elem e;
		while ((rc = pf_iter_next(it, &e, &err)) == 0) {
			for (int64_t k = 0; k < e.nitems[0]; k++) {
				int64_t v = ((int64_t *)e.data[0])[k];
				if (v < 0 || v >= total || seen[v] ||
				    (c->filter && v % 11 == 0)) {
					diag("epoch %d: value %lld foreign or repeated", ep, (long long)v);
					bad = 1;
				} else {
					seen[v] = 1;
					if (got < total)
						seq[got] = v;
				}
				got++;
			}
			jitter(64, 300);          /* a slow consumer at times */
			if (last && c->stop_at >= 0 && got >= c->stop_at) {
				/* early stop: free the iterator with e still held */
				pf_iter_free(it);
				it = NULL;
				pf_elem_release(&e);
				break;
			}
			pf_elem_release(&e);
			if (bad)
				break;
		}
		if (rc == PF_END)
			rc = 0;
		if (!it)
			break;
		if (!rc && !bad && got != want) {
			diag("epoch %d: %ld elements, want %d", ep, got, want);
			bad = 1;
		}
		*n = got;
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc ? rc : bad;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static long status_field(const char *name)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t l = strlen(name);
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, name, l))
			v = atol(line + l);
	if (f)
		fclose(f);
	return v;
}

static void cfg_text(const cfg *c, char *buf, size_t cap)
{
	snprintf(buf, cap, "par %d%s shuffle %d cache %d cycle %d block %d reads %d "
		 "batch %d (par %s) prefetch %d filter %d sleep %d epochs %d stop %ld seed %llu",
		 c->par, c->unordered ? " unordered" : "", c->shuffle, c->cache,
		 c->cycle, c->block_len, c->reads, c->batch,
		 c->bpar == 0 ? "auto" : c->bpar == 1 ? "1" : "3", c->prefetch, c->filter,
		 c->sleep_us, c->epochs, c->stop_at, (unsigned long long)c->seed);
}

int main(void)
{
	alarm(300);   /* a deadlock fails the test instead of hanging make check */
	const char *d = tap_tmpdir("t2090");
	if (!d)
		plan_skip_all("no scratch directory");
	char dir[600];
	snprintf(dir, sizeof(dir), "%s/s", d);
	vs_delay = delay;
	if (vs_write(&set, dir, shard_sizes, NSHARDS, 0, 40, 300, &err) == 0)
		total = set.total;
	else {
		printf("1..0 # SKIP cannot write shards: %s\n", err.msg);
		return 1;
	}
	const char *e = getenv("PF_STRESS_ROUNDS");
	int rounds = e ? atoi(e) : 60;
	e = getenv("PF_STRESS_SEED");
	rng = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
	diag("PF_STRESS_SEED=%llu PF_STRESS_ROUNDS=%d", (unsigned long long)rng, rounds);

	int64_t *seq = calloc((size_t)total, sizeof(int64_t));
	int64_t *seq2 = calloc((size_t)total, sizeof(int64_t));
	unsigned char *seen = malloc((size_t)total);
	/* the baselines are taken after round 1: a sanitizer's runtime starts
	 * its own thread lazily */
	long fds0 = -1, threads0 = -1;
	long rss_after_first = -1;
	int failed = 0, determinism_checked = 0;
	for (int r = 0; r < rounds; r++) {
		cfg c;
		random_cfg(&c);
		char text[300];
		cfg_text(&c, text, sizeof(text));
		long n = 0;
		pf_error_clear(&err);
		int rc = run(&c, seq, &n, seen);
		if (rc) {
			failed++;
			ok(0, "round %d: %s", r, text);
			diag("rc %d: %s", rc, rc < 0 ? err.msg : "check failed");
			continue;
		}
		/* deterministic and run out: the same sequence with other threads */
		if (!c.unordered && c.stop_at < 0) {
			cfg c2 = c;
			c2.par = c.par == 1 ? 8 : 1;
			c2.reads = c.reads == 1 ? 3 : 1;
			c2.prefetch = 3 - c.prefetch;
			c2.bpar = c.bpar == 2 ? 1 : 2;
			long n2 = 0;
			rc = run(&c2, seq2, &n2, seen);
			int same = !rc && n2 == n &&
				   !memcmp(seq, seq2, sizeof(int64_t) * (size_t)(n < total ? n : total));
			determinism_checked++;
			if (!same) {
				failed++;
				ok(0, "round %d: same order with other thread counts: %s", r, text);
				continue;
			}
		}
		if (r == 0) {
			rss_after_first = status_field("VmRSS:");
			fds0 = count_dir("/proc/self/fd");
			threads0 = status_field("Threads:");
		}
	}
	ok(!failed, "%d random rounds: exactly once per completed epoch, no duplicate "
	   "before an early stop, %d checked for the same order across thread counts",
	   rounds, determinism_checked);
	long fds1 = count_dir("/proc/self/fd"), threads1 = status_field("Threads:");
	ok(fds0 < 0 || fds1 == fds0, "no file descriptor left behind (%ld before, %ld after)", fds0, fds1);
	/* threads may take a moment to be reaped after join: none should stay */
	for (int i = 0; i < 50 && threads0 >= 0 && threads1 != threads0; i++) {
		usleep(10000);
		threads1 = status_field("Threads:");
	}
	ok(threads0 < 0 || threads1 == threads0, "no thread left behind (%ld before, %ld after)", threads0, threads1);
	long rss = status_field("VmRSS:");
#if defined(__SANITIZE_ADDRESS__)
	/* ASan keeps freed memory in quarantine (256 MiB); LeakSanitizer
	 * checks for leaks at exit instead */
	rss_after_first = -1;
#endif
	ok(rss_after_first < 0 || rss < rss_after_first + 64 * 1024,
	   "resident memory bounded: %ld kB after round 1, %ld kB at the end", rss_after_first, rss);
	free(seq);
	free(seq2);
	free(seen);
	return done_testing();
}
