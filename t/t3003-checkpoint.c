/*
 * t3003-checkpoint: model + optimizer checkpoints round-trip exactly, are
 * replaced atomically (no temp file left), and a damaged, truncated,
 * foreign or other-architecture file is refused with a message naming the
 * file and offset, leaving the model unchanged.  On the device named by
 * PF_TEST_DEVICE (cpu by default; t/devtest.h).
 */
#include "config.h"

#include <unistd.h>

#include "pf_model.h"
#include "pf_schema.h"
#include "tap.h"
#include "devtest.h"

static pf_device *dev;
static pf_stream *s;

static void file_patch(const char *path, long off, const void *b, size_t n)
{
	FILE *f = fopen(path, "r+b");
	fseek(f, off, SEEK_SET);
	fwrite(b, 1, n, f);
	fclose(f);
}

static void copy_file(const char *from, const char *to, long len)
{
	char cmd[2048];
	if (len >= 0)
		snprintf(cmd, sizeof(cmd), "head -c %ld '%s' > '%s'", len, from, to);
	else
		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	if (system(cmd) != 0)
		diag("%s failed", cmd);
}

int main(void)
{
	alarm(60);
	pf_error err = { 0 };
	dev = dt_open(NULL);
	plan(13);
	diag("device: %s", pf_device_info(dev));
	const char *dir = tap_tmpdir("t3003");
	if (!dir || pf_stream_new(dev, &s, &err) < 0) {
		diag("setup: %s", err.msg);
		return 1;
	}
	pf_model_cfg c = { .max_batch = 4, .seed = 5, .lr = 0.01f };
	pf_model_parse(&c, "mlp:8-6-3", &err);
	pf_model *m, *m2;
	pf_model_new(&m, dev, &c, &err);
	c.seed = 6;
	pf_model_new(&m2, dev, &c, &err);
	size_t n = pf_model_nparams(m);

	/* train a few steps so the moments and step are not trivial */
	float *x;
	uint8_t *lab;
	pf_dev_alloc(dev, (void **)&x, 4 * 8 * sizeof(float), &err);
	pf_dev_alloc(dev, (void **)&lab, 4, &err);
	float hx[32];
	uint8_t hlab[4];
	for (int i = 0; i < 32; i++)
		hx[i] = (float)((i * 37) % 11) / 11.0f;
	for (int r = 0; r < 4; r++)
		hlab[r] = (uint8_t)(r % 3);
	dt_put(x, hx, sizeof(hx));
	dt_put(lab, hlab, sizeof(hlab));
	pf_model_input in = { .x = x, .x_type = PF_F32, .labels = lab,
			      .label_type = PF_LABEL_U8, .rows = 4 };
	for (int k = 0; k < 5; k++)
		pf_model_train_step(m, s, &in, &err);

	char path[1024], bad[1100];
	snprintf(path, sizeof(path), "%s/model.ckpt", dir);
	ok(pf_model_save(m, s, path, &err) == 0, "save (%s)", err.msg);
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "ls '%s' | grep -q tmp", dir);
	ok(system(cmd) != 0, "no temporary file left beside it");

	ok(pf_model_load(m2, s, path, &err) == 0, "load into a model of the same shape");
	int same = 1;
	float *a = malloc(n * 4), *b = malloc(n * 4);
	for (int w = PF_BUF_PARAMS; w <= PF_BUF_V; w++) {
		if (w == PF_BUF_GRADS)
			continue;
		pf_model_download(m, s, w, a, &err);
		pf_model_download(m2, s, w, b, &err);
		same &= !memcmp(a, b, n * 4);
	}
	ok(same, "parameters and both Adam moments round-trip bit for bit");
	is_int(pf_model_step_count(m2), 5, "the step count round-trips");
	/* the resumed model takes the same next step as the original */
	pf_model_train_step(m, s, &in, &err);
	pf_model_train_step(m2, s, &in, &err);
	pf_model_download(m, s, PF_BUF_PARAMS, a, &err);
	pf_model_download(m2, s, PF_BUF_PARAMS, b, &err);
	ok(!memcmp(a, b, n * 4), "a resumed model continues identically");

	/* damage */
	pf_model_download(m2, s, PF_BUF_PARAMS, a, &err);
	snprintf(bad, sizeof(bad), "%s/flip.ckpt", dir);
	copy_file(path, bad, -1);
	unsigned char z = 0x5a;
	file_patch(bad, 100, &z, 1);
	pf_error e1 = { 0 };
	is_int(pf_model_load(m2, s, bad, &e1), PF_ECORRUPT, "a flipped byte is caught");
	like(e1.msg, "checksum mismatch", "message says checksum");
	pf_model_download(m2, s, PF_BUF_PARAMS, b, &err);
	ok(!memcmp(a, b, n * 4), "the model is unchanged after a refused load");

	snprintf(bad, sizeof(bad), "%s/short.ckpt", dir);
	copy_file(path, bad, 120);
	pf_error e2 = { 0 };
	is_int(pf_model_load(m2, s, bad, &e2), PF_ETRUNC, "a truncated file is refused");

	snprintf(bad, sizeof(bad), "%s/ver.ckpt", dir);
	copy_file(path, bad, -1);
	unsigned char v9 = 9;
	file_patch(bad, 8, &v9, 1);
	pf_error e3 = { 0 };
	is_int(pf_model_load(m2, s, bad, &e3), PF_EVERSION, "another version is refused");

	pf_model_cfg c3 = { .max_batch = 4, .seed = 5 };
	pf_model_parse(&c3, "mlp:8-7-3", &err);
	pf_model *m3;
	pf_model_new(&m3, dev, &c3, &err);
	pf_error e4 = { 0 };
	is_int(pf_model_load(m3, s, path, &e4), PF_EINVAL, "another architecture is refused");
	like(e4.msg, "offset", "message names the offset");

	free(a);
	free(b);
	pf_dev_free(dev, x);
	pf_dev_free(dev, lab);
	pf_model_free(m);
	pf_model_free(m2);
	pf_model_free(m3);
	pf_stream_free(dev, s);
	dt_close();
	pf_device_close(dev);
	return done_testing();
}
