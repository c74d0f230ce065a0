/*
 * t3001-device-cpu: the device named by PF_TEST_DEVICE (cpu by default;
 * `make check-gpu` runs it on cuda) keeps CUDA's stream and event semantics
 * (copies complete later, events complete when their stream reaches them, a
 * cross-stream wait blocks the stream and not the host, FIFO order, under
 * random delays on cpu), its GEMM and kernels match naive loops, and "auto"
 * gives cuda exactly when cuda opens, and otherwise cpu saying why.  Device
 * memory is read and written only through copies (t/devtest.h).
 */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "pf_device.h"
#include "tap.h"
#include "devtest.h"

static pf_device *dev;

/* A gate: a host function that blocks its stream until opened. */
typedef struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int open;
} gate;

static void gate_fn(void *arg)
{
	gate *g = arg;
	pthread_mutex_lock(&g->mu);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = 1;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static atomic_int x_val, y_val;
static void set_x(void *arg) { atomic_store(&x_val, 1); }
static void copy_x_to_y(void *arg) { atomic_store(&y_val, atomic_load(&x_val) + 1); }

static int order_log[300], order_n;
static void log_idx(void *arg) { order_log[order_n++] = (int)(intptr_t)arg; }

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static float frand(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void test_semantics(void)
{
	pf_error err = { 0 };
	pf_stream *a, *b;
	pf_event *ea, *e0;
	ok(pf_stream_new(dev, &a, &err) == 0 && pf_stream_new(dev, &b, &err) == 0,
	   "two streams");
	ok(pf_event_new(dev, &ea, &err) == 0 && pf_event_new(dev, &e0, &err) == 0,
	   "two events");

	/* copy completes later, not at enqueue */
	size_t n = 1 << 20;
	unsigned char *src, *dst;
	pf_host_alloc(dev, (void **)&src, n, &err);
	pf_dev_alloc(dev, (void **)&dst, n, &err);
	for (size_t i = 0; i < n; i++)
		src[i] = (unsigned char)(i * 7);
	unsigned char *back = calloc(n, 1);
	dt_put(dst, back, n);
	gate g1 = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	pf_host_func(dev, a, gate_fn, &g1, &err);
	ok(pf_memcpy_async(dev, a, dst, src, n, PF_H2D, &err) == 0, "copy enqueued");
	pf_event_record(dev, ea, a, &err);
	is_int(pf_event_query(dev, ea), 0, "event not complete while the copy waits");
	back[n - 1] = 1;
	dt_get(back + n - 1, dst + n - 1, 1);       /* the test's own stream */
	ok(back[n - 1] == 0, "destination untouched before the stream runs the copy");
	gate_open(&g1);
	ok(pf_event_sync(dev, ea, &err) == 0, "event_sync returns");
	is_int(pf_event_query(dev, ea), 1, "event complete after the copy");
	dt_get(back, dst, n);
	ok(memcmp(back, src, n) == 0, "copy delivered every byte");

	/* cross-stream wait: blocks stream b, not the host */
	gate g2 = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	atomic_store(&x_val, 0);
	atomic_store(&y_val, 0);
	pf_host_func(dev, a, gate_fn, &g2, &err);
	pf_host_func(dev, a, set_x, NULL, &err);
	pf_event_record(dev, ea, a, &err);
	ok(pf_stream_wait_event(dev, b, ea, &err) == 0,
	   "stream_wait_event returns at once (host not blocked)");
	pf_host_func(dev, b, copy_x_to_y, NULL, &err);
	sleep_ms(30);
	is_int(atomic_load(&y_val), 0, "stream b held by the wait while a is gated");
	uint64_t w0 = pf_stream_wait_ns(dev, b);
	gate_open(&g2);
	pf_stream_sync(dev, b, &err);
	is_int(atomic_load(&y_val), 2, "b ran after a's recorded work (saw x = 1)");
	ok(pf_stream_wait_ns(dev, b) >= w0 + 20000000,
	   "stream_wait_ns counted the blocked time (%llu ns)",
	   (unsigned long long)pf_stream_wait_ns(dev, b));

	/* an event never recorded is complete; waiting on it does not block */
	is_int(pf_event_query(dev, e0), 1, "unrecorded event is complete");
	pf_stream_wait_event(dev, b, e0, &err);
	ok(pf_stream_sync(dev, b, &err) == 0, "wait on unrecorded event does not block");

	/* re-recording moves the event forward */
	gate g3 = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	pf_host_func(dev, a, gate_fn, &g3, &err);
	pf_event_record(dev, ea, a, &err);
	is_int(pf_event_query(dev, ea), 0, "re-recorded event is pending again");
	gate_open(&g3);
	pf_event_sync(dev, ea, &err);
	is_int(pf_event_query(dev, ea), 1, "and completes with its stream");

	/* FIFO order under random delays, interleaved with copies */
	order_n = 0;
	for (int i = 0; i < 300; i++) {
		pf_host_func(dev, a, log_idx, (void *)(intptr_t)i, &err);
		if (i % 10 == 0)
			pf_memcpy_async(dev, a, dst, src, 4096, PF_H2D, &err);
	}
	pf_stream_sync(dev, a, &err);
	int inorder = order_n == 300;
	for (int i = 0; inorder && i < 300; i++)
		inorder = order_log[i] == i;
	ok(inorder, "300 operations ran in enqueue order (ring wraps, delays on)");

	ok(err.code == 0, "no error reported (%s)", err.msg);
	pf_host_free(dev, src);
	pf_dev_free(dev, dst);
	free(back);
	pf_event_free(dev, ea);
	pf_event_free(dev, e0);
	pf_stream_free(dev, a);
	pf_stream_free(dev, b);
}

/* Device buffers of the kernel checks, each with its host mirror h. */
typedef struct dbuf {
	void *d, *h;
	size_t n;
} dbuf;

static void *dbuf_new(dbuf *b, size_t n)
{
	pf_error err = { 0 };
	b->n = n;
	b->h = calloc(1, n);
	if (pf_dev_alloc(dev, &b->d, n, &err) < 0)
		diag("dev_alloc %zu: %s", n, err.msg);
	return b->h;
}
static void up(dbuf *b) { dt_put(b->d, b->h, b->n); }
static void down(dbuf *b) { dt_get(b->h, b->d, b->n); }
static void dbuf_free(dbuf *b)
{
	pf_dev_free(dev, b->d);
	free(b->h);
}

static void test_gemm(void)
{
	pf_error err = { 0 };
	pf_stream *s;
	pf_stream_new(dev, &s, &err);
	unsigned seed = 1;
	int M = 7, N = 5, K = 9, pad = 3;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++) {
			int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad,
			    ldc = N + pad;
			int ar = ta ? K : M, br = tb ? N : K;
			float ref[7 * 8];
			dbuf bA, bB, bC;
			float *A = dbuf_new(&bA, sizeof(float) * ar * lda);
			float *B = dbuf_new(&bB, sizeof(float) * br * ldb);
			float *C = dbuf_new(&bC, sizeof(float) * M * ldc);
			for (int i = 0; i < ar * lda; i++)
				A[i] = frand(&seed);
			for (int i = 0; i < br * ldb; i++)
				B[i] = frand(&seed);
			for (int i = 0; i < M * ldc; i++)
				C[i] = frand(&seed);
			up(&bA);
			up(&bB);
			up(&bC);
			float alpha = 0.75f, beta = -0.5f;
			for (int i = 0; i < M; i++)
				for (int j = 0; j < N; j++) {
					double acc = 0;
					for (int p = 0; p < K; p++)
						acc += (double)(ta ? A[p * lda + i] : A[i * lda + p]) *
						       (tb ? B[j * ldb + p] : B[p * ldb + j]);
					ref[i * N + j] = (float)(alpha * acc + beta * C[i * ldc + j]);
				}
			int rc = pf_gemm(dev, s, ta, tb, M, N, K, alpha, bA.d, lda, bB.d,
					 ldb, beta, bC.d, ldc, &err);
			pf_stream_sync(dev, s, &err);
			down(&bC);
			double maxd = 0;
			for (int i = 0; i < M; i++)
				for (int j = 0; j < N; j++)
					maxd = fmax(maxd, fabs(C[i * ldc + j] - ref[i * N + j]));
			ok(rc == 0 && maxd < 1e-5, "gemm ta=%d tb=%d with padded strides matches the naive loop (max diff %g)",
			   ta, tb, maxd);
			dbuf_free(&bA);
			dbuf_free(&bB);
			dbuf_free(&bC);
		}
	pf_error e2 = { 0 };
	is_int(pf_gemm(dev, s, 0, 0, 4, 4, 4, 1, (float *)&seed, 2, (float *)&seed,
		       4, 0, (float *)&seed, 4, &e2),
	       PF_EINVAL, "gemm with lda < k is refused");
	pf_stream_free(dev, s);
}

/* u8_to_f32, bias_act, relu_grad and bias_grad against loops. */
static void test_elementwise(pf_stream *s, unsigned *seed)
{
	pf_error err = { 0 };
	enum { R = 6, C = 5 };
	dbuf bu8, bf, by, bbias, bdy;
	uint8_t *u8 = dbuf_new(&bu8, 256);
	float *f = dbuf_new(&bf, 256 * sizeof(float));
	for (int i = 0; i < 256; i++)
		u8[i] = (uint8_t)i;
	up(&bu8);
	pf_k_u8_to_f32(dev, s, bf.d, bu8.d, 256, 1.0f / 255, &err);
	pf_stream_sync(dev, s, &err);
	down(&bf);
	int good = 1;
	for (int i = 0; i < 256; i++)
		good &= f[i] == i * (1.0f / 255);
	ok(good, "u8_to_f32 scales every byte");

	float ref[R * C];
	float *y = dbuf_new(&by, sizeof(float) * R * C);
	float *dy = dbuf_new(&bdy, sizeof(float) * R * C);
	float *bias = dbuf_new(&bbias, sizeof(float) * C);
	for (int relu = 0; relu < 2; relu++) {
		for (int i = 0; i < R * C; i++)
			y[i] = frand(seed);
		for (int c = 0; c < C; c++)
			bias[c] = frand(seed);
		for (int i = 0; i < R * C; i++) {
			float z = y[i] + bias[i % C];
			ref[i] = relu && z < 0 ? 0 : z;
		}
		up(&by);
		up(&bbias);
		pf_k_bias_act(dev, s, by.d, bbias.d, R, C, relu, &err);
		pf_stream_sync(dev, s, &err);
		down(&by);
		ok(!memcmp(y, ref, sizeof(ref)), "bias_act relu=%d matches the naive loop",
		   relu);
	}
	for (int i = 0; i < R * C; i++) {
		dy[i] = frand(seed);
		ref[i] = y[i] > 0 ? dy[i] : 0;
	}
	up(&bdy);
	pf_k_relu_grad(dev, s, bdy.d, by.d, R * C, &err);
	pf_stream_sync(dev, s, &err);
	down(&bdy);
	ok(!memcmp(dy, ref, sizeof(ref)), "relu_grad masks where the output is 0");

	float db[C];
	for (int c = 0; c < C; c++) {
		db[c] = 0;
		for (int r = 0; r < R; r++)
			db[c] += dy[r * C + c];
	}
	pf_k_bias_grad(dev, s, bbias.d, bdy.d, R, C, &err);
	pf_stream_sync(dev, s, &err);
	down(&bbias);
	good = 1;
	for (int c = 0; c < C; c++)
		good &= fabsf(bias[c] - db[c]) < 1e-6f;
	ok(good, "bias_grad sums the rows");
	ok(err.code == 0, "elementwise kernels: no error (%s)", err.msg);
	dbuf *all[] = { &bu8, &bf, &by, &bbias, &bdy };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		dbuf_free(all[i]);
}

/* softmax cross-entropy: loss, argmax, gradient, one bad label */
static void test_softmax(pf_stream *s, unsigned *seed)
{
	pf_error err = { 0 };
	enum { R = 6, C = 5 };
	dbuf by, by2, blab, bacc;
	float *y = dbuf_new(&by, sizeof(float) * R * C);
	float *y2 = dbuf_new(&by2, sizeof(float) * R * C);
	int32_t *lab = dbuf_new(&blab, sizeof(int32_t) * R);
	double *acc = dbuf_new(&bacc, 3 * sizeof(double));
	for (int r = 0; r < R; r++)
		lab[r] = r % C;
	lab[3] = 99;
	for (int i = 0; i < R * C; i++)
		y[i] = 3 * frand(seed);
	y[0 * C + 0] = 10;          /* row 0: argmax 0 == label 0 */
	double loss = 0, correct = 0;
	int good = 1;
	float gref[R * C];
	for (int r = 0; r < R; r++) {
		const float *x = y + r * C;
		if (r == 3) {
			for (int c = 0; c < C; c++)
				gref[r * C + c] = 0;
			continue;
		}
		double mx = x[0], sum = 0;
		int am = 0;
		for (int c = 1; c < C; c++)
			if (x[c] > mx)
				mx = x[c], am = c;
		for (int c = 0; c < C; c++)
			sum += exp(x[c] - mx);
		loss += mx + log(sum) - x[lab[r]];
		correct += am == lab[r];
		for (int c = 0; c < C; c++)
			gref[r * C + c] = (float)((exp(x[c] - mx) / sum - (c == lab[r])) * 0.5);
	}
	up(&by);
	up(&blab);
	up(&bacc);
	pf_k_softmax_xent(dev, s, by.d, blab.d, PF_LABEL_I32, R, C, by2.d, 0.5f,
			  bacc.d, &err);
	pf_stream_sync(dev, s, &err);
	down(&by2);
	down(&bacc);
	for (int i = 0; i < R * C; i++)
		good &= fabsf(y2[i] - gref[i]) < 1e-5f;
	ok(fabs(acc[0] - loss) < 1e-4 * (1 + loss), "softmax_xent loss sum %g (want %g)",
	   acc[0], loss);
	ok(acc[1] == correct && correct >= 1, "softmax_xent counts correct rows (%g)",
	   acc[1]);
	is_int((int)acc[2], 1, "softmax_xent counts the out-of-range label");
	ok(good, "softmax_xent gradient = (softmax - onehot) * scale, 0 for the bad row");
	pf_error e2 = { 0 };
	is_int(pf_k_softmax_xent(dev, s, by.d, blab.d, 9, R, C, NULL, 1, bacc.d, &e2),
	       PF_EINVAL, "unknown label type refused");
	ok(err.code == 0, "softmax: no error (%s)", err.msg);
	dbuf_free(&by);
	dbuf_free(&by2);
	dbuf_free(&blab);
	dbuf_free(&bacc);
}

/* Adam: two steps against the formula, the step count on the device */
static void test_adam(pf_stream *s, unsigned *seed)
{
	pf_error err = { 0 };
	enum { N = 11 };
	float wr[N], mr[N], vr[N];
	dbuf bw, bg, bm, bv, bt;
	float *w = dbuf_new(&bw, sizeof(wr)), *g = dbuf_new(&bg, sizeof(wr));
	float *m = dbuf_new(&bm, sizeof(wr));
	dbuf_new(&bv, sizeof(wr));
	int32_t *t = dbuf_new(&bt, sizeof(int32_t));
	for (int i = 0; i < N; i++) {
		wr[i] = w[i] = frand(seed);
		mr[i] = vr[i] = 0;
	}
	up(&bw);
	up(&bm);
	up(&bv);
	up(&bt);
	for (int step = 1; step <= 2; step++) {
		for (int i = 0; i < N; i++)
			g[i] = frand(seed);
		up(&bg);
		pf_k_counter_add(dev, s, bt.d, 1, &err);
		pf_k_adam(dev, s, bw.d, bg.d, bm.d, bv.d, N, 0.01f, 0.9f, 0.999f,
			  1e-8f, bt.d, &err);
		double lr_t = 0.01 * sqrt(1 - pow(0.999, step)) / (1 - pow(0.9, step));
		for (int i = 0; i < N; i++) {
			mr[i] = 0.9f * mr[i] + 0.1f * g[i];
			vr[i] = 0.999f * vr[i] + 0.001f * g[i] * g[i];
			wr[i] -= (float)(lr_t * mr[i] / (sqrt(vr[i]) + 1e-8));
		}
		pf_stream_sync(dev, s, &err);
	}
	down(&bw);
	down(&bm);
	down(&bt);
	int good = *t == 2;
	for (int i = 0; i < N; i++)
		good &= fabsf(w[i] - wr[i]) < 1e-6f && fabsf(m[i] - mr[i]) < 1e-7f;
	ok(good, "counter_add + adam: two steps match the bias-corrected formula");
	ok(err.code == 0, "adam: no error (%s)", err.msg);
	dbuf *all[] = { &bw, &bg, &bm, &bv, &bt };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		dbuf_free(all[i]);
}

/* The slot canary on its own: a good slot, a torn row, poison; the slot
 * is poisoned afterwards and the counters add up across calls. */
static void test_canary(pf_stream *s)
{
	pf_error err = { 0 };
	enum { R = 3000 };
	dbuf bslot, bcnt;
	int64_t *slot = dbuf_new(&bslot, R * sizeof(int64_t));
	int64_t *cnt = dbuf_new(&bcnt, 4 * sizeof(int64_t));
	int64_t sum = 0;
	for (int i = 0; i < R; i++)
		sum += slot[i] = 1000 + i;
	up(&bslot);
	up(&bcnt);
	pf_k_seq_canary(dev, s, bslot.d, R, 1000, 300, bcnt.d, &err);
	pf_stream_sync(dev, s, &err);
	down(&bcnt);
	down(&bslot);
	ok(cnt[0] == 0 && cnt[1] == 0 && cnt[2] == 1 && cnt[3] == sum,
	   "canary: a good slot: 0 torn, 0 poisoned, 1 check, sum %lld (got %lld %lld %lld %lld)",
	   (long long)sum, (long long)cnt[0], (long long)cnt[1], (long long)cnt[2],
	   (long long)cnt[3]);
	int poisoned = 1;
	for (int i = 0; i < R; i++)
		poisoned &= slot[i] == PF_CANARY_POISON;
	ok(poisoned, "canary: the slot is poisoned afterwards");
	/* the slot as it is now (poison) counts R poisoned rows; one row
	 * off by one counts as torn twice (both passes); poison is torn in
	 * the second pass too */
	pf_k_seq_canary(dev, s, bslot.d, R, 1000, 0, bcnt.d, &err);
	pf_stream_sync(dev, s, &err);
	for (int i = 0; i < R; i++)
		slot[i] = 7 + i;
	slot[R / 2] += 1;
	up(&bslot);
	pf_k_seq_canary(dev, s, bslot.d, R, 7, 0, bcnt.d, &err);
	pf_stream_sync(dev, s, &err);
	down(&bcnt);
	ok(cnt[0] == R + 2 && cnt[1] == R && cnt[2] == 3,
	   "canary: poison and a wrong row are counted (torn %lld, poisoned %lld, checks %lld)",
	   (long long)cnt[0], (long long)cnt[1], (long long)cnt[2]);
	pf_error e2 = { 0 };
	is_int(pf_k_seq_canary(dev, s, bslot.d, 0, 0, 0, bcnt.d, &e2), PF_EINVAL,
	       "canary: 0 rows refused");
	ok(err.code == 0, "canary: no error (%s)", err.msg);
	dbuf_free(&bslot);
	dbuf_free(&bcnt);
}

static void test_kernels(void)
{
	pf_error err = { 0 };
	pf_stream *s;
	pf_stream_new(dev, &s, &err);
	unsigned seed = 7;
	test_elementwise(s, &seed);
	test_softmax(s, &seed);
	test_adam(s, &seed);
	test_canary(s);
	pf_stream_free(dev, s);
}

/* "auto" gives cuda exactly when "cuda" opens and passes the launch probe
 * (pf_device_open); otherwise cpu with the reason in its note. */
static void test_open(void)
{
	pf_device *d = NULL, *cu = NULL;
	pf_error err = { 0 }, ec = { 0 };
	int cuda_opens = pf_device_open(&cu, "cuda", NULL, &ec) == 0;
	pf_device_close(cu);
	int rc = pf_device_open(&d, "auto", NULL, &err);
	const char *kind = d ? pf_device_kind(d) : "none";
	ok(rc == 0 && d, "auto opened %s: %s", kind, d ? pf_device_info(d) : err.msg);
	if (d && !strcmp(kind, "cpu"))
		ok(strstr(pf_device_note(d), "using cpu") && !cuda_opens,
		   "auto chose cpu, and cuda does not open (note: %s)", pf_device_note(d));
	else
		ok(d && cuda_opens && !strcmp(kind, "cuda") && !pf_device_note(d)[0],
		   "auto chose cuda, where cuda opens (%s)", d ? pf_device_info(d) : "?");
	if (!strcmp(dt_kind(), "cuda"))
		is_str(kind, "cuda", "PF_TEST_DEVICE=cuda: auto chose the CUDA device");
	else
		ok(1, "PF_TEST_DEVICE=%s: auto gave %s", dt_kind(), kind);
	pf_device_close(d);
	pf_error e2 = { 0 };
	rc = pf_device_open(&d, "cuda", NULL, &e2);
	if (rc == 0) {
		ok(1, "cuda opened: %s", pf_device_info(d));
		pf_device_close(d);
	} else {
#ifdef HAVE_CUDA
		/* the module is built: it must load, and the failure must be
		 * the device query, not dlopen */
		ok(rc == PF_ENODEV && strstr(e2.msg, "no CUDA device"),
		   "cuda without a device: PF_ENODEV from cudaGetDeviceCount (%s)",
		   e2.msg);
#else
		ok(rc == PF_ENODEV, "cuda not built: PF_ENODEV (%s)", e2.msg);
#endif
	}
	pf_error e3 = { 0 };
	is_int(pf_device_open(&d, "tpu", NULL, &e3), PF_EINVAL, "unknown kind refused");
	ok(d == NULL, "no handle on failure");
	pf_device_close(NULL);
}

int main(void)
{
	alarm(120);
	pf_device_opts o = { .test_copy_delay_us = 300, .test_compute_delay_us = 100,
			     .test_seed = 3 };
	dev = dt_open(&o);
	plan(49);
	ok(!strcmp(pf_device_kind(dev), dt_kind()) || !strcmp(dt_kind(), "auto"),
	   "%s backend opened: %s", pf_device_kind(dev), pf_device_info(dev));
	test_semantics();
	test_gemm();
	test_kernels();
	dt_close();
	pf_device_close(dev);
	test_open();
	return done_testing();
}
