/*
 * t3101-batcher-model: a model saved as pipe-train --save saves it, served
 * through pf_servable behind the batcher on the cpu backend: every
 * request's batched answer (2 batch threads, 8 producers) equals its
 * unbatched answer (pf_servable_predict on its rows alone) bit for bit when
 * every batch has one GEMM shape (allowed_batch_sizes {8}: batch-mates and
 * position in the batch change nothing), and within 1e-5 with the same
 * argmax when batch sizes vary (OpenBLAS's kernels round by shape); and a
 * file that is not a checkpoint is refused naming it.
 */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_batcher.h"
#include "pf_device.h"
#include "pf_model.h"
#include "pf_servable.h"
#include "tap.h"
#include "model_file.h"

#define NREQ 400
#define IN 20
#define OUT 5
#ifndef PADDED
#define PADDED 8
#endif

static float ins[NREQ][4 * IN], ref[NREQ][4 * OUT], got[NREQ][4 * OUT];
static int rows_of[NREQ];

typedef struct prod {
	pf_batcher *b;
	int id, fails;
	char msg[256];
} prod;

static void *producer(void *arg)
{
	prod *p = arg;
	for (int k = p->id; k < NREQ; k += 8) {
		pf_batch_req r = { 0 };
		r.in = ins[k];
		r.out = got[k];
		r.rows = rows_of[k];
		pf_error err = { 0 };
		if (pf_batcher_run(p->b, &r, &err) < 0) {
			p->fails++;
			snprintf(p->msg, sizeof(p->msg), "%s", err.msg);
		}
	}
	return NULL;
}

/* Run every request through a batcher on sv (allowed sizes {8} when
 * fixed) and compare with ref: bitwise when fixed, else within 1e-5 with
 * the same argmax.  Two checks. */
static void diff_run(pf_servable *sv, int fixed, const char *title)
{
	pf_error err = { 0 };
	pf_batcher_opts o = { 0 };
	pf_servable_hook(sv, &o);
	o.max_batch_size = 8;
	o.max_execution_batch_size = 8;
	o.batch_timeout_us = 2000;
	o.allowed_batch_sizes[0] = 8;
	o.n_allowed = fixed;
	o.num_batch_threads = 2;
	pf_batcher *b = NULL;
	if (pf_batcher_new(&b, &o, &err) < 0) {
		ok(0, "batcher: %s", err.msg);
		ok(0, "%s", title);
		return;
	}
	memset(got, 0, sizeof(got));
	pthread_t th[8];
	prod p[8];
	for (int i = 0; i < 8; i++) {
		p[i] = (prod){ b, i, 0, "" };
		pthread_create(&th[i], NULL, producer, &p[i]);
	}
	int fails = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(th[i], NULL);
		fails += p[i].fails;
		if (p[i].fails)
			diag("producer %d: %s", i, p[i].msg);
	}
	pf_batcher_stats st;
	pf_batcher_get_stats(b, &st);
	pf_batcher_free(b);
	ok(fails == 0 && st.batches < NREQ,
	   "400 requests of 1-4 rows from 8 producers answered in %llu batches (%.2f rows a batch, %s)",
	   (unsigned long long)st.batches,
	   st.batches ? (double)st.rows / st.batches : 0.0,
	   fixed ? "padded to 8" : "unpadded");
	int diff = 0, argmax_diff = 0;
	float maxd = 0;
	for (int k = 0; k < NREQ; k++)
		for (int r = 0; r < rows_of[k]; r++) {
			int ag = 0, ar = 0;
			for (int c = 0; c < OUT; c++) {
				float g = got[k][r * OUT + c], w = ref[k][r * OUT + c];
				if (memcmp(&g, &w, sizeof(float)) != 0)
					diff++;
				if (fabsf(g - w) > maxd)
					maxd = fabsf(g - w);
				if (g > got[k][r * OUT + ag])
					ag = c;
				if (w > ref[k][r * OUT + ar])
					ar = c;
			}
			argmax_diff += ag != ar;
		}
	ok(fixed ? diff == 0 : (maxd <= 1e-5f && argmax_diff == 0),
	   "%s (%d floats differ, max |d| %g, %d argmax differ)", title, diff, maxd,
	   argmax_diff);
}

int main(void)
{
	plan(7);
	const char *dir = tap_tmpdir("t3101");
	char path[600];
	snprintf(path, sizeof(path), "%s/model.ckpt", dir ? dir : ".");
	if (save_model(path, "mlp:20-16-5", 4) < 0)
		return 1;
	pf_servable *sv = NULL;
	pf_error err = { 0 };
	int rc = pf_servable_open(&sv, path, "cpu", 2, 8, &err);
	ok(rc == 0 && pf_servable_in_dim(sv) == IN && pf_servable_out_dim(sv) == OUT,
	   "the saved model opens with its architecture from the file (%s) %s",
	   sv ? pf_servable_arch(sv) : "-", err.msg);
	if (rc < 0)
		return done_testing();
	unsigned seed = 7;
	for (int k = 0; k < NREQ; k++) {
		rows_of[k] = 1 + (int)(rand_r(&seed) % 4);
		for (int i = 0; i < rows_of[k] * IN; i++)
			ins[k][i] = (float)(rand_r(&seed) % 256) / 255.0f;
	}
	int bad = 0;
	for (int k = 0; k < NREQ; k++) {
		static float pin[8 * IN], pout[8 * OUT];
		memset(pin, 0, sizeof(pin));
		memcpy(pin, ins[k], sizeof(float) * rows_of[k] * IN);
		bad |= pf_servable_predict(sv, pin, PADDED, pout, &err) < 0;
		memcpy(ref[k], pout, sizeof(float) * rows_of[k] * OUT);
	}
	ok(!bad, "unbatched answers computed (%s)", err.msg);

	diff_run(sv, 1, "with allowed_batch_sizes {8} (one GEMM shape): every batched answer equals the unbatched one bit for bit");
	for (int k = 0; k < NREQ; k++)
		pf_servable_predict(sv, ins[k], rows_of[k], ref[k], &err);
	diff_run(sv, 0, "with batches of any size: every answer within 1e-5 of the unbatched one (OpenBLAS rounds by GEMM shape), same argmax");
	pf_servable_free(sv);

	FILE *f = fopen(path, "wb");
	if (f) {
		fputs("not a checkpoint", f);
		fclose(f);
	}
	pf_error e2 = { 0 };
	rc = pf_servable_open(&sv, path, "cpu", 1, 8, &e2);
	ok(rc < 0 && sv == NULL && strstr(e2.msg, path),
	   "a file that is not a checkpoint is refused naming it: %s", e2.msg);
	return done_testing();
}
