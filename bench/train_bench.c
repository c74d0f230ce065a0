/*
 * train_bench - pipe-train against the same model fed by a naive loop.
 *
 *   bench/train_bench TRAIN_GLOB TEST_GLOB [RUNS=3] [EPOCHS=5] [DEVICE=cpu] [BATCH=64]
 *
 * naive:     each step reads and decodes (pread, checksum, zstd, split)
 *            the next B records synchronously on the training thread, builds
 *            the batch, copies it and runs the step, waiting for it before
 *            reading on (files in order, no shuffle: the cheapest possible
 *            naive input).  Its stall is the time spent reading + decoding.
 * pipefeed:  pipe-train --json (pipeline + device prefetch), run as a
 *            child: $PF_PIPE_TRAIN, else ./pipe-train (the build directory).
 * Both on DEVICE (cpu or cuda), mlp:784-128-10, batch BATCH, Adam 1e-3,
 * seed 1.
 * Prints each run and the medians: wall time (training epochs only),
 * images/s, stall share, test accuracy, and the wall-time ratio.
 */
#include "config.h"

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pf_device.h"
#include "pf_model.h"
#include "pf_shard.h"
#include "bench_median.h"

static int B = 64;                 /* batch size */
static const char *dev_kind = "cpu";

typedef struct result {
	double wall, ips, stall, acc;
} result;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fail(const char *what, const pf_error *e)
{
	fprintf(stderr, "train_bench: %s: %s\n", what, e->msg);
	exit(1);
}

/* One pass over the files: every full or final batch goes to step(). */
typedef struct pass {
	pf_device *d;
	pf_stream *s;
	pf_model *m;
	uint8_t *hx, *hl, *dx, *dl;  /* pinned host batch, device batch */
	int train;
	double read_s;               /* reading + decoding + batching */
	long images;                 /* training images */
} pass;

static void step(pass *p, int rows)
{
	pf_error err = { 0 };
	pf_memcpy_async(p->d, p->s, p->dx, p->hx, (size_t)rows * 784, PF_H2D, &err);
	pf_memcpy_async(p->d, p->s, p->dl, p->hl, rows, PF_H2D, &err);
	pf_model_input in = { .x = p->dx, .x_type = PF_U8, .labels = p->dl,
			      .label_type = PF_LABEL_U8, .rows = rows };
	if ((p->train ? pf_model_train_step(p->m, p->s, &in, &err)
		      : pf_model_eval(p->m, p->s, &in, &err)) < 0 ||
	    pf_stream_sync(p->d, p->s, &err) < 0)
		fail("step", &err);
	if (p->train)
		p->images += rows;
}

static void run_pass(pass *p, glob_t *g)
{
	pf_error err = { 0 };
	pf_decoder *dec = pf_decoder_new();
	pf_block blk;
	pf_block_init(&blk);
	int rows = 0;
	double t = now_s();
	for (size_t f = 0; f < g->gl_pathc; f++) {
		pf_shard *sh;
		if (pf_shard_open(&sh, g->gl_pathv[f], 0, &err) < 0)
			fail("open", &err);
		const pf_schema *sc = pf_shard_schema(sh);
		for (uint32_t i = 0; i < pf_shard_nblocks(sh); i++) {
			if (pf_shard_read_block(sh, i, dec, &blk, &err) < 0)
				fail("read", &err);
			for (uint32_t j = 0; j < blk.nrecords; j++) {
				size_t len, off[PF_MAX_FIELDS];
				int64_t cnt[PF_MAX_FIELDS];
				const unsigned char *r = pf_block_record(&blk, j, &len);
				if (pf_schema_split(sc, r, len, off, cnt, &err) < 0)
					fail("decode", &err);
				memcpy(p->hx + (size_t)rows * 784, r + off[0], 784);
				p->hl[rows] = r[off[1]];
				if (++rows == B) {
					p->read_s += now_s() - t;
					step(p, rows);
					rows = 0;
					t = now_s();
				}
			}
		}
		pf_shard_close(sh);
	}
	p->read_s += now_s() - t;
	if (rows)
		step(p, rows);
	pf_block_free(&blk);
	pf_decoder_free(dec);
}

static result naive(glob_t *train, glob_t *test, int epochs)
{
	pf_error err = { 0 };
	pass p = { 0 };
	pf_model_cfg c = { .max_batch = B, .seed = 1, .lr = 1e-3f };
	pf_model_parse(&c, "mlp:784-128-10", &err);
	if (pf_device_open(&p.d, dev_kind, NULL, &err) < 0 ||
	    pf_stream_new(p.d, &p.s, &err) < 0 ||
	    pf_model_new(&p.m, p.d, &c, &err) < 0 ||
	    pf_host_alloc(p.d, (void **)&p.hx, B * 784, &err) < 0 ||
	    pf_host_alloc(p.d, (void **)&p.hl, B, &err) < 0 ||
	    pf_dev_alloc(p.d, (void **)&p.dx, B * 784, &err) < 0 ||
	    pf_dev_alloc(p.d, (void **)&p.dl, B, &err) < 0)
		fail("setup", &err);
	double wall = 0, acc[4];
	for (int e = 0; e < epochs; e++) {
		double t0 = now_s();
		p.train = 1;
		run_pass(&p, train);
		wall += now_s() - t0;
		p.train = 0;
		pf_model_read_acc(p.m, p.s, PF_ACC_EVAL, acc, 1, &err);
		double r = p.read_s;
		run_pass(&p, test);
		p.read_s = r;
	}
	pf_model_read_acc(p.m, p.s, PF_ACC_EVAL, acc, 1, &err);  /* last pass */
	result res = { wall, p.images / wall, p.read_s / wall, acc[3] ? acc[1] / acc[3] : 0 };
	pf_host_free(p.d, p.hx);
	pf_host_free(p.d, p.hl);
	pf_dev_free(p.d, p.dx);
	pf_dev_free(p.d, p.dl);
	pf_model_free(p.m);
	pf_stream_free(p.d, p.s);
	pf_device_close(p.d);
	return res;
}

static double field(const char *json, const char *name)
{
	char key[64];
	snprintf(key, sizeof(key), "\"%s\":", name);
	const char *p = strstr(json, key);
	return p ? atof(p + strlen(key)) : -1;
}

static result piped(const char *train, const char *test, int epochs)
{
	char cmd[4096], out[4096] = "";
	const char *prog = getenv("PF_PIPE_TRAIN");
	snprintf(cmd, sizeof(cmd),
		 "'%s' --device %s --epochs %d --batch %d --seed 1 --json --quiet --eval '%s' '%s'",
		 prog && prog[0] ? prog : "./pipe-train", dev_kind, epochs, B, test,
		 train);
	FILE *f = popen(cmd, "r");
	if (!f || !fgets(out, sizeof(out), f) || pclose(f) != 0) {
		fprintf(stderr, "train_bench: %s failed (run from the build directory)\n", cmd);
		exit(1);
	}
	result r = { field(out, "wall_s"), field(out, "images_per_sec"),
		     field(out, "stall_share"), field(out, "test_accuracy") };
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: train_bench TRAIN_GLOB TEST_GLOB [RUNS] [EPOCHS] [DEVICE] [BATCH]\n");
		return 2;
	}
	int runs = argc > 3 ? atoi(argv[3]) : 3, epochs = argc > 4 ? atoi(argv[4]) : 5;
	if (argc > 5)
		dev_kind = argv[5];
	if (argc > 6)
		B = atoi(argv[6]);
	if (runs < 1 || runs > 50 || epochs < 1 || B < 1 || B > 65536)
		return 2;
	glob_t gt, ge;
	if (glob(argv[1], 0, NULL, &gt) || glob(argv[2], 0, NULL, &ge)) {
		fprintf(stderr, "train_bench: no files match\n");
		return 1;
	}
	double v[2][4][50];
	for (int r = 0; r < runs; r++) {
		result a = naive(&gt, &ge, epochs), b = piped(argv[1], argv[2], epochs);
		result both[2] = { a, b };
		for (int k = 0; k < 2; k++) {
			v[k][0][r] = both[k].wall;
			v[k][1][r] = both[k].ips;
			v[k][2][r] = both[k].stall;
			v[k][3][r] = both[k].acc;
			printf("run %d %-8s wall %6.2fs  %7.0f images/s  stall %5.1f%%  test acc %.4f\n",
			       r + 1, k ? "pipefeed" : "naive", both[k].wall, both[k].ips,
			       100 * both[k].stall, both[k].acc);
		}
	}
	double m[2][4];
	for (int k = 0; k < 2; k++)
		for (int j = 0; j < 4; j++)
			m[k][j] = bench_median(v[k][j], runs);
	printf("median of %d runs, %d epochs, %s backend, mlp:784-128-10, batch %d:\n",
	       runs, epochs, dev_kind, B);
	printf("  naive     wall %6.2fs  %7.0f images/s  stall %5.1f%%  test acc %.4f\n",
	       m[0][0], m[0][1], 100 * m[0][2], m[0][3]);
	printf("  pipefeed  wall %6.2fs  %7.0f images/s  stall %5.1f%%  test acc %.4f\n",
	       m[1][0], m[1][1], 100 * m[1][2], m[1][3]);
	printf("  wall-time ratio naive / pipefeed: %.2fx\n", m[0][0] / m[1][0]);
	globfree(&gt);
	globfree(&ge);
	return 0;
}
