/*
 * t3005-cuda-vs-cpu: with a CUDA device, the cuda backend's gradients,
 * Adam steps and captured-graph steps agree with the cpu backend's (same
 * seed, same batch, u8 images converted on the device), and so do the
 * gradients with the fused GEMM epilogues (cuBLASLt RELU_AUX_BIAS /
 * DRELU_BGRAD) and without them (--epilogue=off's path), at batch 32 and
 * 256, wider layers included.  Without one it skips: "1..0 # SKIP no CUDA
 * device".
 */
#include "config.h"

#include <math.h>
#include <unistd.h>

#include "pf_model.h"
#include "pf_schema.h"
#include "tap.h"

enum { B = 32, IN = 64, CLS = 10, BMAX = 256 };

typedef struct side {
	pf_device *d;
	pf_stream *s;
	pf_model *m, *mg;     /* plain, and with graph capture */
	uint8_t *x, *lab;
} side;

static int setup(side *sd, const char *kind, const uint8_t *x, const uint8_t *lab,
		 pf_error *err)
{
	if (pf_device_open(&sd->d, kind, NULL, err) < 0)
		return -1;
	pf_model_cfg c = { .max_batch = BMAX, .seed = 77, .lr = 3e-3f };
	pf_model_parse(&c, "mlp:64-48-32-10", err);
	pf_model_cfg cg = c;
	cg.use_graph = 1;
	if (pf_stream_new(sd->d, &sd->s, err) < 0 ||
	    pf_model_new(&sd->m, sd->d, &c, err) < 0 ||
	    pf_model_new(&sd->mg, sd->d, &cg, err) < 0 ||
	    pf_dev_alloc(sd->d, (void **)&sd->x, BMAX * IN, err) < 0 ||
	    pf_dev_alloc(sd->d, (void **)&sd->lab, BMAX, err) < 0 ||
	    pf_memcpy_async(sd->d, sd->s, sd->x, x, BMAX * IN, PF_H2D, err) < 0 ||
	    pf_memcpy_async(sd->d, sd->s, sd->lab, lab, BMAX, PF_H2D, err) < 0)
		return -1;
	return pf_stream_sync(sd->d, sd->s, err);
}

static double maxdiff(const float *a, const float *b, size_t n, double *scale)
{
	double d = 0, sc = 0;
	for (size_t i = 0; i < n; i++) {
		d = fmax(d, fabs(a[i] - b[i]));
		sc = fmax(sc, fabs(b[i]));
	}
	*scale = sc;
	return d;
}

/* Gradients of a fresh spec model (epilogues on or off) on both sides
 * over the first rows of the batch: 1 check. */
static void grad_vs_cpu(side *cu, side *cp, const char *spec, int epi_off,
			int rows)
{
	pf_error err = { 0 };
	pf_model_cfg c = { .max_batch = BMAX, .seed = 9, .epilogue_off = epi_off };
	pf_model_parse(&c, spec, &err);
	pf_model *mu = NULL, *mp = NULL;
	pf_model_new(&mu, cu->d, &c, &err);
	pf_model_new(&mp, cp->d, &c, &err);
	size_t n = mu && mp ? pf_model_nparams(mu) : 0;
	float *a = calloc(n + 1, 4), *b = calloc(n + 1, 4);
	pf_model_input in = { .x_type = PF_U8, .label_type = PF_LABEL_U8,
			      .rows = rows, .x = cu->x, .labels = cu->lab };
	if (n) {
		pf_model_grad(mu, cu->s, &in, &err);
		in.x = cp->x;
		in.labels = cp->lab;
		pf_model_grad(mp, cp->s, &in, &err);
		pf_model_download(mu, cu->s, PF_BUF_GRADS, a, &err);
		pf_model_download(mp, cp->s, PF_BUF_GRADS, b, &err);
	}
	double sc, d = maxdiff(a, b, n, &sc);
	ok(n && err.code == 0 && d <= 1e-4 * (1 + sc),
	   "%s batch %d, epilogues %s: cuda gradients = cpu's (max diff %g, scale %g; %s)",
	   spec, rows, epi_off ? "off" : "on", d, sc, err.msg);
	free(a);
	free(b);
	pf_model_free(mu);
	pf_model_free(mp);
}

int main(void)
{
	alarm(120);
	pf_error err = { 0 };
	side cu = { 0 }, cp = { 0 };
	uint8_t x[BMAX * IN], lab[BMAX];
	for (int i = 0; i < BMAX * IN; i++)
		x[i] = (uint8_t)((i * 131 + 7) % 251);
	for (int r = 0; r < BMAX; r++)
		lab[r] = (uint8_t)(x[r * IN] % CLS);
	if (setup(&cu, "cuda", x, lab, &err) < 0) {
		if (err.code == PF_ENODEV) {
			printf("# %s\n", err.msg);
			plan_skip_all("no CUDA device");
		}
		diag("cuda setup: %s", err.msg);
		return 1;
	}
	plan(13);
	diag("%s", pf_device_info(cu.d));
	ok(setup(&cp, "cpu", x, lab, &err) == 0, "cpu side set up (%s)", err.msg);
	size_t n = pf_model_nparams(cu.m);
	float *a = malloc(n * 4), *b = malloc(n * 4);
	pf_model_input in = { .x_type = PF_U8, .label_type = PF_LABEL_U8, .rows = B };

	pf_model_download(cu.m, cu.s, PF_BUF_PARAMS, a, &err);
	pf_model_download(cp.m, cp.s, PF_BUF_PARAMS, b, &err);
	ok(!memcmp(a, b, n * 4), "same seed, same initial parameters on both backends");

	in.x = cu.x;
	in.labels = cu.lab;
	pf_model_grad(cu.m, cu.s, &in, &err);
	in.x = cp.x;
	in.labels = cp.lab;
	pf_model_grad(cp.m, cp.s, &in, &err);
	pf_model_download(cu.m, cu.s, PF_BUF_GRADS, a, &err);
	pf_model_download(cp.m, cp.s, PF_BUF_GRADS, b, &err);
	double sc, d = maxdiff(a, b, n, &sc);
	ok(d <= 1e-4 * (1 + sc), "gradients agree (max diff %g, scale %g)", d, sc);

	for (int k = 0; k < 20; k++) {
		in.x = cu.x;
		in.labels = cu.lab;
		pf_model_train_step(cu.m, cu.s, &in, &err);
		pf_model_train_step(cu.mg, cu.s, &in, &err);
		in.x = cp.x;
		in.labels = cp.lab;
		pf_model_train_step(cp.m, cp.s, &in, &err);
	}
	pf_model_download(cu.m, cu.s, PF_BUF_PARAMS, a, &err);
	pf_model_download(cp.m, cp.s, PF_BUF_PARAMS, b, &err);
	d = maxdiff(a, b, n, &sc);
	ok(d <= 1e-3 * (1 + sc), "20 Adam steps: parameters agree (max diff %g)", d);
	pf_model_download(cu.mg, cu.s, PF_BUF_PARAMS, b, &err);
	d = maxdiff(a, b, n, &sc);
	ok(d <= 1e-5 * (1 + sc) && err.code == 0,
	   "graph-captured steps = enqueued steps (max diff %g; %s)", d, err.msg);
	for (int off = 0; off <= 1; off++) {
		grad_vs_cpu(&cu, &cp, "mlp:64-48-32-10", off, B);
		grad_vs_cpu(&cu, &cp, "mlp:64-48-32-10", off, BMAX);
		grad_vs_cpu(&cu, &cp, "mlp:64-130-200-10", off, 37);
		grad_vs_cpu(&cu, &cp, "mlp:64-256-256-10", off, BMAX);
	}
	free(a);
	free(b);
	return done_testing();
}
