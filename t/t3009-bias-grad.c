/*
 * t3009-bias-grad: pf_k_bias_grad on the device named by PF_TEST_DEVICE
 * (cpu by default; t/devtest.h) against a double-precision sum on the host
 * and against the cpu backend, for shapes that are and are not multiples of
 * the cuda kernel's 32 x 32 block (batch 64, 256, 1024 among them), and
 * run twice on the same input: the same bits (no atomics, a fixed order).
 */
#include "config.h"

#include <math.h>
#include <unistd.h>

#include "pf_device.h"
#include "tap.h"
#include "devtest.h"

static const int shapes[][2] = {
	{ 64, 10 }, { 256, 48 }, { 1024, 128 }, { 1000, 33 }, { 1, 1 },
	{ 37, 65 }, { 3, 1000 }, { 4099, 7 },
};
#define NSHAPES (int)(sizeof(shapes) / sizeof(shapes[0]))

/* db for dy[rows, cols] on device d (host in, host out); 0 or a code. */
static int bias_grad_on(pf_device *d, const float *dy, int rows, int cols,
			float *db, pf_error *err)
{
	float *ddy = NULL, *ddb = NULL;
	pf_stream *s = NULL;
	size_t n = (size_t)rows * cols * sizeof(float);
	int rc = 0;
	if ((rc = pf_stream_new(d, &s, err)) < 0 ||
	    (rc = pf_dev_alloc(d, (void **)&ddy, n, err)) < 0 ||
	    (rc = pf_dev_alloc(d, (void **)&ddb, cols * sizeof(float), err)) < 0 ||
	    (rc = pf_memcpy_async(d, s, ddy, dy, n, PF_H2D, err)) < 0 ||
	    (rc = pf_k_bias_grad(d, s, ddb, ddy, rows, cols, err)) < 0 ||
	    (rc = pf_memcpy_async(d, s, db, ddb, cols * sizeof(float), PF_D2H,
				  err)) < 0)
		goto out;
	rc = pf_stream_sync(d, s, err);
out:
	if (s) {
		pf_stream_sync(d, s, NULL);
		pf_stream_free(d, s);
	}
	pf_dev_free(d, ddy);
	pf_dev_free(d, ddb);
	return rc;
}

int main(void)
{
	alarm(120);
	pf_device *dev = dt_open(NULL), *cpu = NULL;
	pf_error err = { 0 };
	plan(3 * NSHAPES + 1);
	diag("%s", pf_device_info(dev));
	ok(pf_device_open(&cpu, "cpu", NULL, &err) == 0, "cpu backend opened (%s)",
	   err.msg);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < NSHAPES; i++) {
		int rows = shapes[i][0], cols = shapes[i][1];
		size_t n = (size_t)rows * cols;
		float *dy = malloc(n * sizeof(float));
		float *a = calloc(cols, sizeof(float)), *b = calloc(cols, sizeof(float));
		float *c = calloc(cols, sizeof(float));
		double *ref = calloc(cols, sizeof(double)), *mag = calloc(cols, sizeof(double));
		for (size_t j = 0; j < n; j++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			dy[j] = (float)((double)(x >> 40) / 8388608.0 - 1.0);
			ref[j % cols] += dy[j];
			mag[j % cols] += fabs(dy[j]);
		}
		int rc = bias_grad_on(dev, dy, rows, cols, a, &err);
		rc = rc < 0 ? rc : bias_grad_on(dev, dy, rows, cols, b, &err);
		rc = rc < 0 ? rc : bias_grad_on(cpu, dy, rows, cols, c, &err);
		double dref = 0, dcpu = 0;
		int bad = -1;
		for (int k = 0; k < cols; k++) {
			/* float sums of rows terms: error <= rows * eps * sum |dy| */
			double tol = 2.0 * rows * 6e-8 * mag[k] + 1e-30;
			double e1 = fabs(a[k] - ref[k]) / tol, e2 = fabs(a[k] - c[k]) / tol;
			dref = fmax(dref, e1);
			dcpu = fmax(dcpu, e2);
			if ((e1 > 1 || e2 > 1) && bad < 0)
				bad = k;
		}
		ok(rc == 0 && dref <= 1, "%dx%d: within rounding of the double sum "
		   "(worst %.3g of the bound; %s)", rows, cols, dref, err.msg);
		ok(rc == 0 && dcpu <= 1, "%dx%d: agrees with the cpu backend "
		   "(worst %.3g of the bound%s)", rows, cols, dcpu,
		   bad >= 0 ? ", see first bad column" : "");
		ok(rc == 0 && !memcmp(a, b, cols * sizeof(float)),
		   "%dx%d: a second run gives the same bits", rows, cols);
		free(dy);
		free(a);
		free(b);
		free(c);
		free(ref);
		free(mag);
	}
	pf_device_close(cpu);
	dt_close();
	pf_device_close(dev);
	return done_testing();
}
