/*
 * pipeline_bench - Fashion-MNIST through the pipeline, against a naive
 * synchronous loop, zstd's own decode rate, and the in-memory cache.
 *
 *   bench/pipeline_bench [IDX_DIR [RUNS [READ_THREADS [MAP_THREADS]]]]
 *   (defaults: /usr/share/datasets/fashion-mnist, 5, and for C cores:
 *    READ_THREADS C - 1 (at least 1) when C <= 4 else C/2, MAP_THREADS 1 when C <= 4 else
 *    C/4 (the map is cheap next to zstd); -1 = PF_AUTOTUNE)
 *
 * Packs train-{images,labels} into 4 shards under $TMPDIR (pf_shard_writer),
 * then prints medians of RUNS runs:
 *   pipeline : shards(cycle 4, READ_THREADS) -> map(decode_f32, the built-in:
 *              u8 -> f32 [0,1], label -> i32, MAP_THREADS) -> shuffle(10000)
 *              -> batch(64) -> prefetch
 *   serial   : the same without its parallel parts (a near-free map in the
 *              consumer's thread, no prefetch): that thread's CPU time per
 *              element is the cost of the serial path, and 1 / that the most
 *              any number of cores can deliver through it
 *   naive    : one thread: read block, decompress, decode, batch(64); the
 *              decode is decode_f32's own conversion (pf_u8_to_f32), so the
 *              two differ only by the runtime
 *   zstd     : ZSTD_decompress of the same blocks in a loop (1 thread), x cores
 *              (the decode limit); and the same loop on every core
 *              at once, the rate the machine really gives (cores that share
 *              caches, or vCPUs that share a physical core, give less than
 *              cores x one)
 *   cache    : cache (u8 images) -> batch(64), epochs after the first
 * and ends with a summary table.  PIPELINE_BENCH_SERIAL=1 runs only the
 * serial path, PIPELINE_BENCH_PIPELINE=1 only the pipeline (to profile
 * one of them).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "pf_idx.h"
#include "pf_shard.h"
#include "pf_u8_f32.h"
#include "pipefeed.h"
#include "bench_median.h"

#define NSH 4
static char paths[NSH][512];
static const char *pathv[NSH];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds (user + system) of the whole process so far. */
static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
		(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static int die(const char *what, const pf_error *e)
{
	fprintf(stderr, "pipeline_bench: %s: %s\n", what, e->msg);
	return 1;
}

static int pack(const char *idxdir, const char *out, pf_error *err)
{
	char ip[600], lp[600];
	snprintf(ip, sizeof(ip), "%s/train-images-idx3-ubyte.gz", idxdir);
	snprintf(lp, sizeof(lp), "%s/train-labels-idx1-ubyte.gz", idxdir);
	pf_idx *im, *lb;
	int rc = pf_idx_open(&im, ip, err);
	if (rc)
		return rc;
	if ((rc = pf_idx_open(&lb, lp, err))) {
		pf_idx_close(im);
		return rc;
	}
	pf_schema s;
	pf_schema_parse(&s, "image: u8[28,28], label: u8", err);
	uint64_t n = pf_idx_info(im)->count;
	for (int k = 0; k < NSH && !rc; k++) {
		pf_shard_name(paths[k], sizeof(paths[k]), out, (unsigned)k, NSH);
		pathv[k] = paths[k];
		pf_shard_writer *w;
		if ((rc = pf_shard_writer_open(&w, paths[k], &s, NULL, err)))
			break;
		uint64_t lo = n * k / NSH, hi = n * (k + 1) / NSH;
		for (uint64_t i = lo; i < hi && !rc; i++) {
			unsigned char rec[785];
			if (pf_idx_read(im, rec, 1, err) != 1 || pf_idx_read(lb, rec + 784, 1, err) != 1)
				rc = PF_EIO;
			else
				rc = pf_shard_writer_add(w, rec, 785, err);
		}
		if (rc)
			pf_shard_writer_abort(w);
		else
			rc = pf_shard_writer_close(w, err);
	}
	pf_idx_close(im);
	pf_idx_close(lb);
	return rc;
}

/* the naive loop's decode: image u8[28,28] -> f32 in [0,1], label u8 ->
 * i32, with the conversion the built-in decode_f32 uses */
static inline void decode_record(const unsigned char *r, float *img, int32_t *label)
{
	pf_u8_to_f32(img, r, 784);
	*label = r[784];
}

/* map "split": record -> image u8[784], label u8 (for the cache run) */
static int split_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "image: u8[28,28], label: u8", e);
}

static int split_fn(void *st, const pf_elem *in, pf_elem *out, pf_error *e)
{
	memcpy(out->data[0], in->data[0], 784);
	*(unsigned char *)out->data[1] = ((const unsigned char *)in->data[0])[784];
	return 0;
}

/* map "label": record -> label i32 only (a near-free map: what is left
 * is the runtime's own per-element cost) */
static int lab_prepare(pf_map_ctx *ctx, pf_error *e)
{
	return pf_schema_parse(&ctx->out, "label: i32", e);
}

static int lab_fn(void *st, const pf_elem *in, pf_elem *out, pf_error *e)
{
	/* touch every cache line of the record, as a real decode (or the
	 * parallel map's copy of it) does, at next to no compute */
	const unsigned char *r = in->data[0];
	unsigned x = 0;
	for (int i = 0; i < 784; i += 64)
		x ^= r[i];
	*(int32_t *)out->data[0] = r[784] | (int32_t)(x & 0x100);
	return 0;
}

/* The shards' compressed blocks in memory, for zstd's own rate. */
struct zblocks {
	void **stored;
	size_t *slen, *rlen, nblk, raw_max;
	uint64_t recs, raw_total;
	ZSTD_DCtx *dc;
	void *dst;
};

static int zload(struct zblocks *z, pf_error *err)
{
	size_t cap = 0;
	memset(z, 0, sizeof(*z));
	for (int k = 0; k < NSH; k++) {
		pf_shard *s;
		if (pf_shard_open(&s, paths[k], 0, err))
			return -1;
		FILE *f = fopen(paths[k], "rb");
		if (!f) {
			pf_shard_close(s);
			return pf_error_set(err, PF_EIO, "%s: cannot open", paths[k]);
		}
		for (uint32_t i = 0; i < pf_shard_nblocks(s); i++) {
			const pf_block_info *bi = pf_shard_block(s, i);
			if (z->nblk == cap) {
				cap = cap ? 2 * cap : 64;
				z->stored = realloc(z->stored, cap * sizeof(*z->stored));
				z->slen = realloc(z->slen, cap * sizeof(*z->slen));
				z->rlen = realloc(z->rlen, cap * sizeof(*z->rlen));
			}
			z->stored[z->nblk] = malloc(bi->stored_len);
			fseek(f, (long)(bi->offset + PF_SHARD_BLOCK_HEADER_SIZE), SEEK_SET);
			if (fread(z->stored[z->nblk], 1, bi->stored_len, f) != bi->stored_len) {
				fclose(f);
				pf_shard_close(s);
				return pf_error_set(err, PF_EIO, "%s: short read", paths[k]);
			}
			z->slen[z->nblk] = bi->stored_len;
			z->rlen[z->nblk] = bi->raw_len;
			if (bi->raw_len > z->raw_max)
				z->raw_max = bi->raw_len;
			z->recs += bi->nrecords;
			z->raw_total += bi->raw_len;
			z->nblk++;
		}
		fclose(f);
		pf_shard_close(s);
	}
	z->dst = malloc(z->raw_max);
	z->dc = ZSTD_createDCtx();
	return z->dst && z->dc ? 0 : pf_error_set(err, PF_ENOMEM, "zstd: out of memory");
}

/* One pass of ZSTD_decompressDCtx over every block: its seconds, or -1. */
static double zpass(struct zblocks *z)
{
	double t0 = now();
	for (size_t i = 0; i < z->nblk; i++) {
		size_t r = ZSTD_decompressDCtx(z->dc, z->dst, z->raw_max, z->stored[i], z->slen[i]);
		if (ZSTD_isError(r) || r != z->rlen[i]) {
			fprintf(stderr, "zstd: block %zu: %s\n", i, ZSTD_getErrorName(r));
			return -1;
		}
	}
	return now() - t0;
}

/* zstd on every core at once: each thread runs `rounds` passes over the
 * shared blocks with a context and buffer of its own */
struct zjob {
	struct zblocks z;
	int rounds;
	pthread_t th;
};

static void *zjob_run(void *arg)
{
	struct zjob *j = arg;
	j->z.dst = malloc(j->z.raw_max);
	j->z.dc = ZSTD_createDCtx();
	for (int r = 0; j->z.dst && j->z.dc && r < j->rounds; r++)
		if (zpass(&j->z) < 0)
			break;
	ZSTD_freeDCtx(j->z.dc);
	free(j->z.dst);
	return NULL;
}

static void zfree(struct zblocks *z)
{
	ZSTD_freeDCtx(z->dc);
	free(z->dst);
	for (size_t i = 0; i < z->nblk; i++)
		free(z->stored[i]);
	free(z->stored);
	free(z->slen);
	free(z->rlen);
}

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/*
 * The serial path: shards -> [shuffle(10000)] -> map(label)+batch(64) with
 * the map in the consumer's thread and no prefetch, so this thread runs
 * every per-element step that is not parallel (the interleave hand-off,
 * the shuffle, the batch gather).  Its CPU time per element bounds what
 * the pipeline can deliver on any number of cores: 1 / that.
 */
static double serial_us(const pf_options *o, const pf_source_opts *so, int shuffle, int runs,
			double *ips, pf_error *err)
{
	pf_pipeline *p;
	pf_iter *it;
	pf_map_opts one = { .num_parallel_calls = 1 };
	pf_source_opts waits = *so;
	waits.consumer_waits = 1; /* this thread's own work only */
	pf_pipeline_new(&p, o, err);
	if (pf_shards(p, pathv, NSH, &waits, err) ||
	    pf_map_func(p, "label", lab_prepare, lab_fn, NULL, "", &one, err) ||
	    (shuffle && pf_shuffle(p, 10000, NULL, err)) || pf_batch(p, 64, 0, err) ||
	    pf_iter_new(&it, p, err)) {
		pf_pipeline_free(p);
		return -1;
	}
	double *us = calloc((size_t)runs, sizeof(double));
	for (int r = 0; r < runs; r++) {
		pf_elem b;
		long n = 0;
		double c0 = thread_cpu_s(), t0 = now();
		while (pf_iter_next(it, &b, err) == 0) {
			n += b.batch;
			pf_elem_release(&b);
		}
		us[r] = (thread_cpu_s() - c0) * 1e6 / (n ? n : 1);
		ips[r] = n / (now() - t0);
	}
	double m = bench_median(us, runs);
	free(us);
	pf_iter_free(it);
	pf_pipeline_free(p);
	return m;
}

/*
 * The serial path as it runs in the parallel pipeline: shards -> shuffle
 * -> map+batch with 2 map workers, whose feeder thread pulls every record
 * through the shards' hand-out and the shuffle (the stages that work
 * inline), the source's consumer only waiting (it does not decode blocks
 * itself, which would put parallel work on that thread).  Its CPU time
 * per image (pf_op_stats.serial_cpu_ns), median of `runs` epochs.
 */
static double feeder_us(const pf_options *o, const pf_source_opts *so, int runs, pf_error *err)
{
	pf_pipeline *p;
	pf_iter *it;
	pf_source_opts waits = *so;
	waits.consumer_waits = 1;
	pf_map_opts two = { .num_parallel_calls = 2 };
	pf_pipeline_new(&p, o, err);
	if (pf_shards(p, pathv, NSH, &waits, err) || pf_map(p, "decode_f32", "", &two, err) ||
	    pf_shuffle(p, 10000, NULL, err) || pf_batch(p, 64, 0, err) ||
	    pf_iter_new(&it, p, err)) {
		pf_pipeline_free(p);
		return -1;
	}
	double *us = calloc((size_t)runs, sizeof(double));
	uint64_t c0 = 0, n0 = 0;
	for (int r = 0; r < runs; r++) {
		pf_elem b;
		while (pf_iter_next(it, &b, err) == 0)
			pf_elem_release(&b);
		uint64_t c1 = 0, n1 = 0;
		for (int i = 1; i < pf_iter_nstages(it); i++) {
			pf_op_stats st, in;
			pf_iter_stats(it, i, &st);
			pf_iter_stats(it, i - 1, &in);
			if (st.serial_cpu_ns) {
				c1 = st.serial_cpu_ns;
				n1 = in.elements;
			}
		}
		us[r] = n1 > n0 ? (double)(c1 - c0) / 1e3 / (double)(n1 - n0) : 0;
		c0 = c1;
		n0 = n1;
	}
	double m = bench_median(us, runs);
	free(us);
	pf_iter_free(it);
	pf_pipeline_free(p);
	return m;
}

/* One epoch; returns images, sets *bytes (batch bytes delivered). */
static double first_s; /* seconds from an epoch's start to its first batch */

static long epoch(pf_iter *it, double *bytes, pf_error *err)
{
	pf_elem b;
	long n = 0;
	*bytes = 0;
	double t0 = now();
	first_s = 0;
	while (pf_iter_next(it, &b, err) == 0) {
		if (!n)
			first_s = now() - t0;
		n += b.batch;
		*bytes += (double)b.nitems[0] * 4 + (double)b.nitems[1] * 4;
		pf_elem_release(&b);
	}
	return err->code ? -1 : n;
}

int main(int argc, char **argv)
{
	const char *idxdir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
	int runs = argc > 2 ? atoi(argv[2]) : 5;
	if (runs < 1 || runs > 100)
		runs = 5;
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char out[512];
	snprintf(out, sizeof(out), "%s/pipeline_bench-%ld/fmnist", tmp, (long)getpid());
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/pipeline_bench-%ld'", tmp, (long)getpid());
	if (system(cmd) != 0)
		return 1;
	pf_error err = { 0 };
	if (pack(idxdir, out, &err))
		return die("packing", &err);
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	printf("pipeline_bench: Fashion-MNIST train, %d shards, %ld cores, medians of %d runs; "
	       "u8 -> f32 by %s\n", NSH, cores, runs, pf_u8_to_f32_impl());

	double *ips = calloc((size_t)runs, sizeof(double)), *mbs = calloc((size_t)runs, sizeof(double));

	/* (1) the pipeline */
	pf_options o = { .cpu_budget = (int)cores, .seed = 1 };
	pf_pipeline *p;
	pf_pipeline_new(&p, &o, &err);
	/* up to 4 cores: a worker per core but one, whose core the serial
	 * path shares with the decode it helps with (ops/shards.c) */
	int rt = cores <= 4 ? (cores > 1 ? (int)cores - 1 : 1) : (int)cores / 2;
	int mt = cores <= 4 ? 1 : (int)cores / 4; /* the map is cheap next to zstd */
	if (argc > 3)
		rt = atoi(argv[3]) < 0 ? PF_AUTOTUNE : atoi(argv[3]);
	if (argc > 4)
		mt = atoi(argv[4]) < 0 ? PF_AUTOTUNE : atoi(argv[4]);
	if (!rt || !mt)
		rt = mt = 1;
	pf_source_opts so = { .cycle_length = 4, .num_parallel_reads = rt };
	pf_map_opts mo = { .num_parallel_calls = mt };
	char rts[16], mts[16];
	snprintf(rts, sizeof(rts), rt == PF_AUTOTUNE ? "auto" : "%d", rt);
	snprintf(mts, sizeof(mts), mt == PF_AUTOTUNE ? "auto" : "%d", mt);
	printf("READ_THREADS %s, MAP_THREADS %s\n", rts, mts);

	/* the serial path, with and without the shuffle (PIPELINE_BENCH_SERIAL=1:
	 * only this, e.g. to profile it) */
	double ser_ips[2] = { 0, 0 }, ser_us[2];
	int only_serial = getenv("PIPELINE_BENCH_SERIAL") != NULL;
	for (int sh = only_serial; sh < 2 && !getenv("PIPELINE_BENCH_PIPELINE"); sh++) {
		if ((ser_us[sh] = serial_us(&o, &so, sh, runs, ips, &err)) < 0)
			return die("serial path", &err);
		ser_ips[sh] = bench_median(ips, runs);
		printf("serial    %-60s %10.0f images/s, %.3f CPU-us/image in the consumer\n",
		       sh ? "shards -> shuffle -> map(label)+batch, all in 1 thread" :
		       "shards -> map(label)+batch, all in 1 thread", ser_ips[sh], ser_us[sh]);
	}

	double feed_us = 0;
	if (!getenv("PIPELINE_BENCH_PIPELINE")) {
		if ((feed_us = feeder_us(&o, &so, runs, &err)) < 0)
			return die("serial path as it runs", &err);
		printf("serial    %-60s %10s          %.3f CPU-us/image in the map's feeder thread\n",
		       "shards -> shuffle -> map+batch (2 workers), as it runs", "", feed_us);
	}

	if (only_serial) {
		pf_pipeline_free(p);
		for (int k = 0; k < NSH; k++)
			unlink(paths[k]);
		snprintf(cmd, sizeof(cmd), "rmdir '%s/pipeline_bench-%ld'", tmp, (long)getpid());
		return system(cmd) != 0;
	}

	if (pf_shards(p, pathv, NSH, &so, &err) ||
	    pf_map(p, "decode_f32", "", &mo, &err) ||
	    pf_shuffle(p, 10000, NULL, &err) || pf_batch(p, 64, 0, &err) ||
	    pf_prefetch(p, PF_AUTOTUNE, &err))
		return die("building", &err);
	pf_iter *it;
	if (pf_iter_new(&it, p, &err))
		return die("starting", &err);
	char plan[256];
	pf_iter_describe(it, plan, sizeof(plan));
	/* after the runs, epochs paired with a pass of zstd alone right after
	 * each: the host's other tenants change both alike within a pair, so
	 * the median of the pairs' ratios is the fairer "/ decode limit"
	 * (the blocks serve (3) too) */
	struct zblocks zb;
	if (zload(&zb, &err))
		return die("loading blocks for zstd", &err);
	double *pair = calloc((size_t)runs, sizeof(double));
	long imgs = 0, total_imgs = 0;
	double cpu = 0, wall = 0;
	double *firsts = calloc((size_t)runs, sizeof(double));
	for (int r = 0; r < runs; r++) {
		double bytes, c0 = cpu_s(), t0 = now();
		imgs = epoch(it, &bytes, &err);
		double dt = now() - t0;
		cpu += cpu_s() - c0;
		if (imgs < 0)
			return die("running", &err);
		ips[r] = imgs / dt;
		mbs[r] = bytes / dt / 1e6;
		total_imgs += imgs;
		wall += dt;
		firsts[r] = first_s * 1e3;
	}
	/* then the pairs: an epoch untimed (it begins with what the source
	 * read ahead in the pause before it, work done outside any timing),
	 * the next one timed, a pause for the read-ahead to settle, a zstd
	 * pass alone */
	for (int r = 0; r < runs; r++) {
		double bytes;
		if (epoch(it, &bytes, &err) < 0)
			return die("running", &err);
		double t0 = now();
		long n = epoch(it, &bytes, &err);
		double dt = now() - t0;
		if (n < 0)
			return die("running", &err);
		nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
		double zt = zpass(&zb);
		if (zt <= 0)
			return 1;
		pair[r] = n / dt / (cores * zb.recs / zt);
	}
	double pipe_cpu_us = cpu * 1e6 / total_imgs;
	double pair_lo = pair[0], pair_hi = pair[0];
	for (int r = 1; r < runs; r++) {
		pair_lo = pair[r] < pair_lo ? pair[r] : pair_lo;
		pair_hi = pair[r] > pair_hi ? pair[r] : pair_hi;
	}
	double pipe_pair = bench_median(pair, runs);
	free(pair);
	double pipe_ips = bench_median(ips, runs), pipe_mbs = bench_median(mbs, runs);
	double first_ms = bench_median(firsts, runs);
	free(firsts);
	printf("pipeline  %-60s %10.0f images/s %8.1f MB/s (f32 batches), %.2f CPU-us/image\n",
	       plan, pipe_ips, pipe_mbs, pipe_cpu_us);
	printf("  / decode limit, each epoch against a zstd pass right after it: median %.2f "
	       "(%.2f-%.2f over %d pairs)   (goal >= 0.5)\n", pipe_pair, pair_lo, pair_hi, runs);
	printf("  first batch of an epoch after %.1f ms (the shuffle buffer filling): %.0f%% of "
	       "an epoch's time\n", first_ms, 100 * first_ms / 1e3 / (wall / runs));
	for (int i = 0; i < pf_iter_nstages(it); i++) {
		pf_op_stats st;
		pf_iter_stats(it, i, &st);
		printf("  stage %d %-10s out %9llu  busy %7.1f ms  wait-in %7.1f ms  blocked-out %7.1f ms  par %d depth %d\n",
		       i, st.name, (unsigned long long)st.elements, st.busy_ns / 1e6,
		       st.wait_input_ns / 1e6, st.blocked_output_ns / 1e6, st.parallelism, st.depth);
		if (!strcmp(st.name, "map+batch") && st.parallelism > 1)
			printf("  (map+batch's feeder thread runs the serial path: pulling from its input "
			       "took %.0f%% of the wall time; near 100%% = the serial path is the limit)\n",
			       100 * st.wait_input_ns / 1e9 / wall);
	}
	pf_autotune_event ev;
	for (size_t i = 0; pf_iter_autotune_log(it, i, &ev) == 0; i++)
		printf("  autotune %7.1f ms: stage %d %s %d -> %d (%s)\n", ev.t_ns / 1e6, ev.stage,
		       ev.knob, ev.old_value, ev.new_value, ev.reason);
	pf_iter_free(it);
	pf_pipeline_free(p);
	if (getenv("PIPELINE_BENCH_PIPELINE")) {
		zfree(&zb);
		for (int k = 0; k < NSH; k++)
			unlink(paths[k]);
		snprintf(cmd, sizeof(cmd), "rmdir '%s/pipeline_bench-%ld'", tmp, (long)getpid());
		return system(cmd) != 0;
	}

	/* stage by stage: where the time goes */
	for (int variant = 0; variant < 5; variant++) {
		static const char *names[] = { "shards", "shards+map", "shards+map+batch (fused)",
					       "shards+map+shuffle+batch",
					       "shards+shuffle(records)+map+batch (fused)" };
		pf_pipeline_new(&p, &o, &err);
		pf_shards(p, pathv, NSH, &so, &err);
		if (variant == 4)
			pf_shuffle(p, 10000, NULL, &err);
		if (variant >= 1)
			pf_map(p, "decode_f32", "", &mo, &err);
		if (variant == 3)
			pf_shuffle(p, 10000, NULL, &err);
		if (variant >= 2)
			pf_batch(p, 64, 0, &err);
		if (pf_iter_new(&it, p, &err))
			return die("starting", &err);
		for (int r = 0; r < runs; r++) {
			pf_elem b;
			long n = 0;
			double t0 = now();
			while (pf_iter_next(it, &b, &err) == 0) {
				n += b.batch ? b.batch : 1;
				pf_elem_release(&b);
			}
			ips[r] = n / (now() - t0);
		}
		printf("  only %-55s %10.0f images/s\n", names[variant], bench_median(ips, runs));
		pf_iter_free(it);
		pf_pipeline_free(p);
	}


	/* (2) naive synchronous loop */
	double ncpu0 = cpu_s();
	long ntotal = 0;
	for (int r = 0; r < runs; r++) {
		double t0 = now();
		long n = 0;
		float *img = malloc(64 * 784 * sizeof(float));
		int32_t *lab = malloc(64 * sizeof(int32_t));
		int fill = 0;
		for (int k = 0; k < NSH; k++) {
			pf_shard *s;
			if (pf_shard_open(&s, paths[k], 0, &err))
				return die("naive open", &err);
			pf_decoder *d = pf_decoder_new();
			pf_block b;
			pf_block_init(&b);
			for (uint32_t i = 0; i < pf_shard_nblocks(s); i++) {
				if (pf_shard_read_block(s, i, d, &b, &err))
					return die("naive read", &err);
				for (uint32_t j = 0; j < b.nrecords; j++) {
					size_t len;
					const unsigned char *rec = pf_block_record(&b, j, &len);
					decode_record(rec, img + fill * 784, lab + fill);
					if (++fill == 64)
						fill = 0;
					n++;
				}
			}
			pf_block_free(&b);
			pf_decoder_free(d);
			pf_shard_close(s);
		}
		free(img);
		free(lab);
		double dt = now() - t0;
		ips[r] = n / dt;
		ntotal += n;
	}
	double naive_cpu_us = (cpu_s() - ncpu0) * 1e6 / ntotal;
	double naive_ips = bench_median(ips, runs);
	printf("naive     %-60s %10.0f images/s, %.2f CPU-us/image\n",
	       "read+decompress+decode+batch, 1 thread", naive_ips, naive_cpu_us);

	/* (3) zstd's own decode rate on the same blocks */
	double z_ips = 0, zall_ips = 0;
	{
		for (int r = 0; r < runs; r++) {
			double dt = zpass(&zb);
			if (dt <= 0)
				return 1;
			ips[r] = zb.recs / dt;
			mbs[r] = zb.raw_total / dt / 1e6;
		}
		z_ips = bench_median(ips, runs);
		double z_mbs = bench_median(mbs, runs);
		printf("zstd      %-60s %10.0f images/s %8.1f MB/s raw; x %ld cores = %.0f images/s\n",
		       "ZSTD_decompressDCtx, same blocks, 1 thread", z_ips, z_mbs, cores, z_ips * cores);
		/* every core at once */
		struct zjob *jobs = calloc((size_t)cores, sizeof(*jobs));
		for (int r = 0; jobs && r < runs; r++) {
			double t0 = now();
			long k, started = 0;
			for (k = 0; k < cores; k++) {
				jobs[k] = (struct zjob){ .z = zb, .rounds = 2 };
				if (pthread_create(&jobs[k].th, NULL, zjob_run, &jobs[k]) == 0)
					started++;
				else
					break;
			}
			for (long q = 0; q < started; q++)
				pthread_join(jobs[q].th, NULL);
			ips[r] = 2.0 * zb.recs * started / (now() - t0);
		}
		zall_ips = jobs ? bench_median(ips, runs) : 0;
		free(jobs);
		printf("zstd      %-60s %10.0f images/s (%.2f x one core)\n",
		       "the same on every core at once", zall_ips, zall_ips / z_ips);
		printf("=> pipeline / decode limit (zstd x cores) = %.2f   (goal >= 0.5; "
		       "epoch by epoch against a zstd pass after each: %.2f)\n",
		       pipe_ips / (z_ips * cores), pipe_pair);
		printf("=> pipeline / naive loop               = %.2f   (goal >= 1; the issue's 10 is out of reach:\n"
		       "   the decode limit itself is only %.2f x the naive loop here)\n",
		       pipe_ips / naive_ips, z_ips * cores / naive_ips);
		printf("=> CPU per image, pipeline / naive     = %.2f   (load-independent cost of the runtime)\n",
		       pipe_cpu_us / naive_cpu_us);
		double la[1];
		if (getloadavg(la, 1) == 1)
			printf("   (load average %.2f on %ld cores while measuring: other processes share them)\n",
			       la[0], cores);
		zfree(&zb);
	}

	/* (4) from the in-memory cache (u8 images) */
	pf_pipeline_new(&p, &o, &err);
	if (pf_shards(p, pathv, NSH, &so, &err) ||
	    pf_map_func(p, "split", split_prepare, split_fn, NULL, "", &mo, &err) ||
	    pf_cache(p, NULL, 0, &err) || pf_batch(p, 64, 0, &err))
		return die("building cache run", &err);
	if (pf_iter_new(&it, p, &err))
		return die("starting cache run", &err);
	double bytes;
	if (epoch(it, &bytes, &err) < 0)
		return die("filling the cache", &err);
	for (int r = 0; r < runs; r++) {
		double t0 = now();
		imgs = epoch(it, &bytes, &err);
		double dt = now() - t0;
		ips[r] = imgs / dt;
		mbs[r] = imgs * 785.0 / dt / 1e6;
	}
	pf_iter_describe(it, plan, sizeof(plan));
	double cache_ips = bench_median(ips, runs);
	printf("cache     %-60s %10.0f images/s %8.1f MB/s (u8)   (goal >= 5M)\n", plan,
	       cache_ips, bench_median(mbs, runs));

	/* the summary */
	double lim = z_ips * cores;
	printf("\nsummary: %ld cores, READ_THREADS %s, MAP_THREADS %s, medians of %d runs\n",
	       cores, rts, mts, runs);
	printf("  %-44s %12s %11s %9s %9s\n", "", "images/s", "CPU-us/img", "/limit", "/naive");
	printf("  %-44s %12.0f %11.2f %9.2f %9.2f   goal /limit >= 0.5\n",
	       "pipeline (compressed shards)", pipe_ips, pipe_cpu_us, pipe_ips / lim,
	       pipe_ips / naive_ips);
	printf("  %-44s %12s %11s %9.2f %9s   (median of %d epoch/zstd pairs)\n",
	       "  the same, paired epoch by epoch", "", "", pipe_pair, "", runs);
	printf("  %-44s %12.0f %11.2f %9.2f %9.2f\n", "naive loop, 1 thread", naive_ips,
	       naive_cpu_us, naive_ips / lim, 1.0);
	printf("  %-44s %12.0f %11.2f %9.2f %9.2f   (zstd x %ld cores)\n", "decode limit",
	       lim, 1e6 / z_ips, 1.0, lim / naive_ips, cores);
	printf("  %-44s %12.0f %11s %9.2f %9.2f   (measured; pipeline / this = %.2f)\n",
	       "zstd on every core at once", zall_ips, "-", zall_ips / lim, zall_ips / naive_ips,
	       pipe_ips / zall_ips);
	printf("  %-44s %12.0f %11.3f %9.2f %9.2f   (1 / serial CPU)\n",
	       "serial path bound, shuffle", 1e6 / ser_us[1], ser_us[1],
	       1e6 / ser_us[1] / lim, 1e6 / ser_us[1] / naive_ips);
	printf("  %-44s %12.0f %11.3f %9.2f %9.2f   (1 / serial CPU)\n",
	       "serial path bound, no shuffle", 1e6 / ser_us[0], ser_us[0],
	       1e6 / ser_us[0] / lim, 1e6 / ser_us[0] / naive_ips);
	if (feed_us > 0)
		printf("  %-44s %12.0f %11.3f %9.2f %9.2f   (the map's feeder thread in the pipeline's runs)\n",
		       "serial path as it ran", 1e6 / feed_us, feed_us, 1e6 / feed_us / lim,
		       1e6 / feed_us / naive_ips);
	printf("  %-44s %12.0f %11s %9s %9.2f   goal >= 5M\n", "cache -> batch", cache_ips, "-",
	       "-", cache_ips / naive_ips);
	double bound = feed_us > 0 ? feed_us : ser_us[1];
	printf("  expected on N cores: about min(N x %.0f (zstd), %.0f (serial path%s)) images/s\n",
	       z_ips, 1e6 / bound, feed_us > 0 ? " as it ran" : "");
	pf_iter_free(it);
	pf_pipeline_free(p);

	for (int k = 0; k < NSH; k++)
		unlink(paths[k]);
	snprintf(cmd, sizeof(cmd), "rmdir '%s/pipeline_bench-%ld'", tmp, (long)getpid());
	if (system(cmd) != 0)
		return 1;
	free(ips);
	free(mbs);
	return 0;
}
