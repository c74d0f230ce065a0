/* t1022-maps-decode-image: decode_image on the Fashion-MNIST PNGs and JPEGs
 * that TensorFlow wrote (t/data/example/fmnist.tfrecord) gives the pixels
 * tf.io.decode_png / decode_jpeg gave, resize gives tf.image.resize's
 * values, crop the centered window; corrupt, truncated and foreign images
 * fail with the reason (or are dropped under isolate). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "pf_spec.h"
#include "pf_tfrecord.h"
#include "pipefeed.h"
#include "tap.h"

#define N 32
#define PE "map(parse_example(image=bytes, jpeg=bytes, label=i64)) | "
static unsigned char png_px[N][784], jpg_px[N][784], jpa_px[N][784];
static int labels[N];
static float rs14[4][196], rs40[4][1600];
static char dir[1024];
static pf_error err;

static void hex(const char *h, unsigned char *out, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		unsigned v = 0;
		sscanf(h + 2 * k, "%2x", &v);
		out[k] = (unsigned char)v;
	}
}

static int load_expect(void)
{
	char path[1100];
	snprintf(path, sizeof(path), "%s/fmnist.expect", dir);
	FILE *f = fopen(path, "r");
	static char line[40000];
	int np = 0;
	while (f && fgets(line, sizeof(line), f)) {
		int k, lab, s, off;
		if (sscanf(line, "P %d %d %n", &k, &lab, &off) == 2 && k < N) {
			labels[k] = lab;
			hex(line + off, png_px[k], 784);
			np++;
		} else if (sscanf(line, "J %d %n", &k, &off) == 1 && k < N) {
			hex(line + off, jpg_px[k], 784);
		} else if (sscanf(line, "A %d %n", &k, &off) == 1 && k < N) {
			hex(line + off, jpa_px[k], 784);
		} else if (sscanf(line, "S %d %d %n", &k, &s, &off) == 2 && k < 4) {
			float *d = s == 14 ? rs14[k] : rs40[k];
			char *p = line + off;
			for (int i = 0; i < s * s; i++)
				d[i] = strtof(p, &p);
		}
	}
	if (f)
		fclose(f);
	return np;
}

/* Run spec over fmnist.tfrecord; fn(k, elem) per element; returns the count
 * or a negative code. */
typedef int (*check_fn)(int k, const pf_elem *e, void *u);
static int run(const char *maps, check_fn fn, void *u)
{
	char spec[2048];
	snprintf(spec, sizeof(spec),
		 "tfrecord(\"%s/fmnist.tfrecord\") | %s",
		 dir, maps);
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	int rc = pf_pipeline_new(&p, NULL, &err);
	if (!rc)
		rc = pf_spec_apply(p, spec, &err);
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	int k = 0, good = 0;
	pf_elem e;
	while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
		good += fn(k++, &e, u);
		pf_elem_release(&e);
	}
	if (rc != PF_END)
		diag("%s", err.msg);
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc == PF_END ? good : rc;
}

static int count_only(int k, const pf_elem *e, void *u)
{
	(void)k;
	(void)u;
	return e->batch == 8 && e->nitems[0] == 8 * 784;
}

static int chk_png(int k, const pf_elem *e, void *u)
{
	(void)u;
	return e->schema->fields[0].dtype == PF_U8 && e->nitems[0] == 784 &&
	       !memcmp(e->data[0], png_px[k], 784) && *(int64_t *)e->data[2] == labels[k];
}

static int chk_jpg(int k, const pf_elem *e, void *u)
{
	int *maxd = u;
	const unsigned char *d = e->data[1], *want = maxd[1] ? jpg_px[k] : jpa_px[k];
	for (int i = 0; i < 784; i++) {
		int df = abs((int)d[i] - (int)want[i]);
		if (df > *maxd)
			*maxd = df;
	}
	return e->nitems[1] == 784;
}

static int chk_f32(int k, const pf_elem *e, void *u)
{
	(void)u;
	const float *d = e->data[0];
	for (int i = 0; i < 784; i++)
		if (d[i] != (float)png_px[k][i] / 255.0f)
			return 0;
	return 1;
}

static int chk_resize(int k, const pf_elem *e, void *u)
{
	int s = *(int *)u;
	if (k >= 4) /* gen.py wrote TensorFlow's resize of the first 4 */
		return 1;
	const float *d = e->data[0], *want = s == 14 ? rs14[k] : rs40[k];
	for (int i = 0; i < s * s; i++)
		if (fabsf(d[i] * 255.0f - want[i]) > 2e-3f)
			return diag("image %d pixel %d: %g, TensorFlow %g", k, i, d[i] * 255.0f,
				    want[i]), 0;
	return 1;
}

static int chk_crop(int k, const pf_elem *e, void *u)
{
	(void)u;
	const unsigned char *d = e->data[0];
	for (int y = 0; y < 20; y++)
		if (memcmp(d + y * 20, png_px[k] + (y + 4) * 28 + 4, 20))
			return 0;
	return 1;
}

static int chk_rgb(int k, const pf_elem *e, void *u)
{
	(void)u;
	const unsigned char *d = e->data[0];
	for (int i = 0; i < 784; i++)
		if (d[3 * i] != png_px[k][i] || d[3 * i + 1] != png_px[k][i] || d[3 * i + 2] != png_px[k][i])
			return 0;
	return e->nitems[0] == 784 * 3;
}

/* the first image's PNG and JPEG bytes (for the damaged copies) */
static unsigned char first_png[4096], first_jpg[4096];
static size_t first_png_n, first_jpg_n;
static int grab(int k, const pf_elem *e, void *u)
{
	(void)u;
	if (k == 0 && e->nitems[0] < 4096 && e->nitems[1] < 4096) {
		memcpy(first_png, e->data[0], (size_t)e->nitems[0]);
		first_png_n = (size_t)e->nitems[0];
		memcpy(first_jpg, e->data[1], (size_t)e->nitems[1]);
		first_jpg_n = (size_t)e->nitems[1];
	}
	return 1;
}

static void put(FILE *f, const void *d, size_t n)
{
	unsigned char h[PF_TFRECORD_HEADER], t[PF_TFRECORD_FOOTER];
	pf_tfrecord_frame(d, n, h, t);
	fwrite(h, 1, sizeof(h), f);
	fwrite(d, 1, n, f);
	fwrite(t, 1, sizeof(t), f);
}

static void damaged(void)
{
	const char *t = tap_tmpdir("t1022");
	char path[700];
	snprintf(path, sizeof(path), "%s/bad.tfrecord", t);
	FILE *f = fopen(path, "wb");
	unsigned char png2[4096];
	memcpy(png2, first_png, first_png_n);
	png2[first_png_n / 2] ^= 0x55; /* a flipped byte in the image data: CRC/zlib error */
	put(f, first_png, first_png_n);          /* 0: good */
	put(f, first_png, first_png_n / 2);      /* 1: truncated PNG */
	put(f, "GIF89a....", 10);                /* 2: not PNG/JPEG */
	put(f, first_jpg, first_jpg_n * 2 / 3);  /* 3: truncated JPEG */
	put(f, png2, first_png_n);               /* 4: corrupt PNG */
	fclose(f);
	static const char *const want[] = { NULL, "PNG: ", "not a PNG, JPEG or WebP", "JPEG: ", "PNG: " };
	for (int k = 1; k < 5; k++) {
		char spec[1024];
		snprintf(spec, sizeof(spec),
			 "tfrecord(\"%s\") | skip(%d) | take(1) | map(decode_image(size=[28, 28], channels=1))",
			 path, k);
		pf_pipeline *p = NULL;
		pf_iter *it = NULL;
		pf_error e = { 0 };
		pf_elem el;
		int rc = pf_pipeline_new(&p, NULL, &e);
		if (!rc)
			rc = pf_spec_apply(p, spec, &e);
		if (!rc)
			rc = pf_iter_new(&it, p, &e);
		if (!rc)
			rc = pf_iter_next(it, &el, &e);
		char rec[40];
		snprintf(rec, sizeof(rec), "record %d)", k);
		ok(rc < 0 && strstr(e.msg, want[k]) && strstr(e.msg, "decode_image: field record") &&
		   strstr(e.msg, "bad.tfrecord") && strstr(e.msg, rec),
		   "damaged image %d fails naming file, record and reason", k);
		diag("%s", e.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	/* isolate: the good one is delivered, the four others dropped */
	char spec[1024];
	snprintf(spec, sizeof(spec),
		 "tfrecord(\"%s\") | map(decode_image(size=[28, 28], channels=1), isolate=true, par=2)", path);
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	pf_elem el;
	int rc = pf_pipeline_new(&p, NULL, &err), n = 0, same = 0;
	if (!rc)
		rc = pf_spec_apply(p, spec, &err);
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	while (!rc && (rc = pf_iter_next(it, &el, &err)) == 0) {
		same = !memcmp(el.data[0], png_px[0], 784);
		n++;
		pf_elem_release(&el);
	}
	ok(rc == PF_END && n == 1 && same && pf_iter_ndropped(it) == 4,
	   "isolate: the good image out, the 4 damaged ones dropped and logged");
	pf_iter_free(it);
	pf_pipeline_free(p);
}

int main(void)
{
	alarm(60);
	const char *src = getenv("srcdir");
	snprintf(dir, sizeof(dir), "%s/t/data/example", src ? src : ".");
#if !defined(HAVE_PNG) || !defined(HAVE_TURBOJPEG)
	plan_skip_all("built without libpng or libjpeg-turbo");
#endif
	plan(21);
	is_int(load_expect(), N, "fmnist.expect: the pixels TensorFlow decoded");
	is_int(run(PE "map(decode_image(field=image, size=[28, 28], channels=1))", chk_png, NULL), N,
	       "PNG -> u8[28,28,1]: every pixel equals tf.io.decode_png's, labels kept");
	/* each PNG decoder alone on TensorFlow's PNGs (libpng's writer, a
	 * 1 KiB zlib window): png=auto takes the fast path for all of them */
	is_int(run(PE "map(decode_image(field=image, size=[28, 28], channels=1, png=libpng))", chk_png, NULL), N,
	       "png=libpng: every pixel equals tf.io.decode_png's");
#ifdef HAVE_LIBDEFLATE
	is_int(run(PE "map(decode_image(field=image, size=[28, 28], channels=1, png=fast), par=3)", chk_png, NULL), N,
	       "png=fast (pipefeed's fast path) on 3 workers takes every one, with tf.io.decode_png's pixels");
#else
	skip(1, "built without libdeflate");
#endif
#ifdef HAVE_SPNG
	is_int(run(PE "map(decode_image(field=image, size=[28, 28], channels=1, png=spng))", chk_png, NULL), N,
	       "png=spng (libspng) takes every one, with tf.io.decode_png's pixels");
#else
	skip(1, "built without libspng");
#endif
	int maxd[2] = { 0, 0 };
	is_int(run(PE "map(decode_image(field=jpeg, size=[28, 28], channels=1), par=3)", chk_jpg, maxd), N,
	       "JPEG -> u8[28,28,1] with 3 workers");
	ok(maxd[0] == 0, "JPEG: every pixel equals tf.io.decode_jpeg(dct_method=INTEGER_ACCURATE)'s (off by %d)", maxd[0]);
	maxd[1] = 1;
	is_int(run(PE "map(decode_image(field=jpeg, size=[28, 28], channels=1, dct=fast))", chk_jpg, maxd), N,
	       "JPEG with dct=fast");
	ok(maxd[0] == 0, "dct=fast: every pixel equals tf.io.decode_jpeg's default (off by %d)", maxd[0]);
	is_int(run("map(parse_example(image=bytes, label=i64)) | map(decode_image(field=image, size=[28, 28], channels=1, dtype=f32)) | batch(8)",
		   count_only, NULL), 4, "dtype=f32 fused with batch(8): 4 batches");
	is_int(run(PE "map(decode_image(field=image, size=[28, 28], channels=1, dtype=f32))", chk_f32, NULL), N,
	       "dtype=f32: pixel / 255");
	int s = 14;
	is_int(run(PE "map(decode_image(field=image, size=[14, 14], channels=1, dtype=f32, fit=resize))",
		   chk_resize, &s), N, "fit=resize to 14x14: tf.image.resize's values (within 2e-3)");
	s = 40;
	is_int(run(PE "map(decode_image(field=image, size=[40, 40], channels=1, dtype=f32, fit=resize))",
		   chk_resize, &s), N, "fit=resize up to 40x40: tf.image.resize's values");
	is_int(run(PE "map(decode_image(field=image, size=[20, 20], channels=1, fit=crop))", chk_crop, NULL), N,
	       "fit=crop to 20x20: the centered window");
	is_int(run(PE "map(decode_image(field=image, size=[28, 28]))", chk_rgb, NULL), N,
	       "channels=3 (default) from gray: R = G = B");
	int rc = run(PE "map(decode_image(field=image, size=[32, 32], channels=1))", chk_png, NULL);
	ok(rc < 0 && strstr(err.msg, "image is 28x28 (HxW), expected 32x32"),
	   "fit=exact: another size is an error that says both sizes");
	run(PE "take(1)", grab, NULL);
	damaged();
	return done_testing();
}
