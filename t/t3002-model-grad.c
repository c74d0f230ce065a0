/*
 * t3002-model-grad: the MLP on the device named by PF_TEST_DEVICE (cpu by
 * default; t/devtest.h): spec parsing, deterministic
 * init, backward against central finite differences of the loss, u8 input
 * equal to the f32 input it scales to, Adam steps that lower the loss;
 * fused GEMM epilogues against the unfused path (bit for bit on cpu).
 */
#include "config.h"

#include <math.h>
#include <unistd.h>

#include "pf_model.h"
#include "pf_schema.h"
#include "tap.h"
#include "devtest.h"

static pf_device *dev;
static pf_stream *s;

static float frand(unsigned *st)
{
	*st = *st * 1103515245u + 12345u;
	return ((*st >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* Mean loss of the batch (eval accumulators). */
static double loss_of(pf_model *m, const pf_model_input *in)
{
	double acc[4];
	pf_model_read_acc(m, s, PF_ACC_EVAL, acc, 1, NULL);
	pf_model_eval(m, s, in, NULL);
	pf_model_read_acc(m, s, PF_ACC_EVAL, acc, 1, NULL);
	return acc[0] / acc[3];
}

static void test_parse(void)
{
	pf_model_cfg c = { 0 };
	pf_error err = { 0 };
	ok(pf_model_parse(&c, "mlp:784-128-10", &err) == 0 && c.nsizes == 3 &&
	   c.sizes[0] == 784 && c.sizes[1] == 128 && c.sizes[2] == 10,
	   "mlp:784-128-10 parses into 3 sizes");
	pf_error e1 = { 0 }, e2 = { 0 }, e3 = { 0 };
	is_int(pf_model_parse(&c, "mlp:784-x-10", &e1), PF_EINVAL, "bad size refused");
	like(e1.msg, "column 9", "error names the column");
	is_int(pf_model_parse(&c, "mlp:10", &e2), PF_EINVAL, "one size refused");
	is_int(pf_model_parse(&c, "cnn:1-2", &e3), PF_EINVAL, "unknown model refused");
}

/*
 * Fused epilogues (pf_gemm_bias_act / pf_gemm_drelu_bgrad) against the
 * unfused path, same seed and batch: gradients after one pass and
 * parameters after 10 Adam steps.  The cpu backend computes the fused
 * calls as the unfused ones, so they must be equal bit for bit; cuda
 * (cuBLASLt) agrees to rounding.  A hidden layer of 130 units pads the
 * mask rows (128 bits).  2 checks per spec.
 */
static void test_epilogue(const char *spec, int B)
{
	pf_error err = { 0 };
	pf_model_cfg c = { .max_batch = B, .seed = 5, .lr = 1e-2f };
	pf_model_parse(&c, spec, &err);
	pf_model_cfg coff = c;
	coff.epilogue_off = 1;
	pf_model *mon = NULL, *moff = NULL;
	pf_model_new(&mon, dev, &c, &err);
	pf_model_new(&moff, dev, &coff, &err);
	int in0 = c.sizes[0], cls = c.sizes[c.nsizes - 1];
	uint8_t *hx = malloc((size_t)B * in0), *x = NULL, *lab = NULL;
	uint8_t *hl = malloc(B);
	unsigned st = 3;
	for (int i = 0; i < B * in0; i++)
		hx[i] = (uint8_t)((frand(&st) + 1) * 127);
	for (int r = 0; r < B; r++)
		hl[r] = (uint8_t)(r % cls);
	pf_dev_alloc(dev, (void **)&x, (size_t)B * in0, &err);
	pf_dev_alloc(dev, (void **)&lab, B, &err);
	dt_put(x, hx, (size_t)B * in0);
	dt_put(lab, hl, B);
	pf_model_input in = { .x = x, .x_type = PF_U8, .labels = lab,
			      .label_type = PF_LABEL_U8, .rows = B };
	size_t n = mon && moff ? pf_model_nparams(mon) : 0;
	float *a = calloc(n + 1, 4), *b = calloc(n + 1, 4);
	double tol = dt_on_cpu() ? 0 : 1e-5, d = 0, sc = 0;
	pf_model_grad(mon, s, &in, &err);
	pf_model_grad(moff, s, &in, &err);
	pf_model_download(mon, s, PF_BUF_GRADS, a, &err);
	pf_model_download(moff, s, PF_BUF_GRADS, b, &err);
	for (size_t i = 0; i < n; i++) {
		d = fmax(d, fabs(a[i] - b[i]));
		sc = fmax(sc, fabs(b[i]));
	}
	ok(n && err.code == 0 && (tol ? d <= tol * (1 + sc) : !memcmp(a, b, n * 4)),
	   "%s batch %d: fused epilogues give the unfused gradients (%s; max diff %g; %s)",
	   spec, B, tol ? "to rounding" : "bit for bit", d, err.msg);
	for (int k = 0; k < 10; k++) {
		pf_model_train_step(mon, s, &in, &err);
		pf_model_train_step(moff, s, &in, &err);
	}
	pf_model_download(mon, s, PF_BUF_PARAMS, a, &err);
	pf_model_download(moff, s, PF_BUF_PARAMS, b, &err);
	d = sc = 0;
	for (size_t i = 0; i < n; i++) {
		d = fmax(d, fabs(a[i] - b[i]));
		sc = fmax(sc, fabs(b[i]));
	}
	ok(n && err.code == 0 &&
	   (tol ? d <= 100 * tol * (1 + sc) : !memcmp(a, b, n * 4)),
	   "%s batch %d: and the same parameters after 10 Adam steps (max diff %g)",
	   spec, B, d);
	free(a);
	free(b);
	free(hx);
	free(hl);
	pf_dev_free(dev, x);
	pf_dev_free(dev, lab);
	pf_model_free(mon);
	pf_model_free(moff);
}

int main(void)
{
	alarm(120);
	pf_error err = { 0 };
	dev = dt_open(NULL);
	plan(21);
	diag("device: %s", pf_device_info(dev));
	if (pf_stream_new(dev, &s, &err) < 0) {
		diag("%s", err.msg);
		return 1;
	}
	test_parse();

	pf_model_cfg c = { .max_batch = 8, .seed = 42, .lr = 1e-2f };
	pf_model_parse(&c, "mlp:6-5-4-3", &err);
	pf_model *m, *m2, *m3;
	ok(pf_model_new(&m, dev, &c, &err) == 0, "model 6-5-4-3 created (%s)", err.msg);
	size_t n = pf_model_nparams(m);
	is_int(n, 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3, "parameter count");
	pf_model_new(&m2, dev, &c, &err);
	pf_model_cfg c3 = c;
	c3.seed = 43;
	pf_model_new(&m3, dev, &c3, &err);
	float *p1 = calloc(n, 4), *p2 = calloc(n, 4), *p3 = calloc(n, 4),
	      *g = calloc(n, 4);
	pf_model_download(m, s, PF_BUF_PARAMS, p1, &err);
	pf_model_download(m2, s, PF_BUF_PARAMS, p2, &err);
	pf_model_download(m3, s, PF_BUF_PARAMS, p3, &err);
	ok(!memcmp(p1, p2, n * 4) && memcmp(p1, p3, n * 4),
	   "init is a function of the seed (same seed same weights, other seed other)");

	/* a batch: f32 inputs that are exact u8/255 values, i32 labels */
	enum { B = 5 };
	float *x, hx[B * 6];
	uint8_t *xu, hxu[B * 6];
	int32_t *lab, hlab[B];
	pf_dev_alloc(dev, (void **)&x, sizeof(float) * B * 6, &err);
	pf_dev_alloc(dev, (void **)&xu, B * 6, &err);
	pf_dev_alloc(dev, (void **)&lab, sizeof(int32_t) * B, &err);
	unsigned st = 9;
	for (int i = 0; i < B * 6; i++) {
		hxu[i] = (uint8_t)((frand(&st) + 1) * 127);
		hx[i] = hxu[i] * (1.0f / 255.0f);
	}
	for (int r = 0; r < B; r++)
		hlab[r] = r % 3;
	dt_put(x, hx, sizeof(hx));
	dt_put(xu, hxu, sizeof(hxu));
	dt_put(lab, hlab, sizeof(hlab));
	pf_model_input in = { .x = x, .x_type = PF_F32, .labels = lab,
			      .label_type = PF_LABEL_I32, .rows = B };
	pf_model_input inu = in;
	inu.x = xu;
	inu.x_type = PF_U8;

	/* backward vs finite differences over every parameter; biases start
	 * at 0, which puts pre-activations of all-zero rows exactly on the
	 * ReLU kink (where a difference quotient is one-sided): move them */
	for (size_t i = 0; i < n; i++)
		p1[i] += 0.1f * frand(&st);
	pf_model_upload(m, s, PF_BUF_PARAMS, p1, &err);
	pf_model_grad(m, s, &in, &err);
	pf_model_download(m, s, PF_BUF_GRADS, g, &err);
	float *p = calloc(n, 4);
	memcpy(p, p1, n * 4);
	int bad = 0;
	double maxrel = 0;
	for (size_t i = 0; i < n; i++) {
		float h = 1e-2f, save = p[i];
		p[i] = save + h;
		pf_model_upload(m, s, PF_BUF_PARAMS, p, &err);
		double lp = loss_of(m, &in);
		p[i] = save - h;
		pf_model_upload(m, s, PF_BUF_PARAMS, p, &err);
		double lm = loss_of(m, &in);
		p[i] = save;
		double num = (lp - lm) / (2.0 * h);
		double d = fabs(num - g[i]);
		if (d > 2e-4 + 2e-2 * fabs(num)) {
			bad++;
			diag("param %zu: backward %g, finite difference %g", i, g[i], num);
		}
		if (fabs(num) > 1e-3)
			maxrel = fmax(maxrel, d / fabs(num));
	}
	pf_model_upload(m, s, PF_BUF_PARAMS, p1, &err);
	ok(bad == 0, "backward matches central finite differences on all %zu parameters (max rel diff %.2g)",
	   n, maxrel);
	double gn = 0;
	for (size_t i = 0; i < n; i++)
		gn += g[i] * g[i];
	ok(gn > 1e-6, "gradient is not zero (|g|^2 = %g)", gn);

	/* u8 input gives the same loss and gradients as its f32 scaling */
	float *gu = calloc(n, 4);
	pf_model_grad(m, s, &inu, &err);
	pf_model_download(m, s, PF_BUF_GRADS, gu, &err);
	double md = 0;
	for (size_t i = 0; i < n; i++)
		md = fmax(md, fabs(gu[i] - g[i]));
	ok(md < 1e-6, "u8 input converted on the device = f32 input (max grad diff %g)", md);

	/* Adam lowers the loss on a fixed batch */
	double l0 = loss_of(m, &in);
	for (int k = 0; k < 200; k++)
		pf_model_train_step(m, s, &in, &err);
	double l1 = loss_of(m, &in);
	ok(l1 < 0.5 * l0, "200 Adam steps lower the loss (%.4f -> %.4f)", l0, l1);
	is_int(pf_model_step_count(m), 200, "step count");
	pf_error e4 = { 0 };
	pf_model_input big = in;
	big.rows = 9;
	is_int(pf_model_train_step(m, s, &big, &e4), PF_EINVAL, "rows over max_batch refused");
	ok(err.code == 0, "no error (%s)", err.msg);
	test_epilogue("mlp:6-5-4-3", 5);
	test_epilogue("mlp:20-130-7-3", 64);
	test_epilogue("mlp:33-64-64-10", 256);

	pf_dev_free(dev, x);
	pf_dev_free(dev, xu);
	pf_dev_free(dev, lab);
	free(p);
	free(p1);
	free(p2);
	free(p3);
	free(g);
	free(gu);
	pf_model_free(m);
	pf_model_free(m2);
	pf_model_free(m3);
	pf_stream_free(dev, s);
	dt_close();
	pf_device_close(dev);
	return done_testing();
}
