/*
 * png_bench - where a PNG's time goes in pipefeed, against plain libpng on
 * the same images in the same run (one thread, CPU time per image).
 *
 *   png_bench [-r RUNS] [-n IMAGES] [-c CASE] FILE.tfrecord...
 *
 * The "image" bytes feature of the files' tf.train.Examples (PNGs) is held
 * in memory, then, RUNS times, in turn:
 *   libpng-simple   png_image_begin_read_from_memory + png_image_finish_read
 *                   to 8-bit gray (libpng's simplified API)
 *   libpng-rows     png_create_read_struct, a memory read callback,
 *                   png_read_info, the gray/8-bit transforms, png_read_row
 *                   into one buffer, png_destroy_read_struct (the classic
 *                   API, what a careful C caller writes)
 *   spng            spng_ctx_new, spng_set_png_buffer, spng_decode_image
 *                   to G8, spng_ctx_free (libspng, when built with it)
 *   decode_image    records(the PNGs in memory) | map(decode_image(size=
 *                   [28, 28], channels=1, dtype=f32)): decode_image alone
 *                   (png=auto: libspng where it gives libpng's pixels)
 *   decode-libpng   the same with png=libpng
 *   example+decode  tfrecord(FILES) | map(parse_example(image=bytes,
 *                   label=i64)) | map(decode_image(...)) | batch(256), maps
 *                   at par 1: the whole path a record takes
 * Figures: median CPU microseconds per image (process CPU, every thread),
 * and each one's efficiency against each libpng loop (libpng's us / its
 * us: 1.0 = as cheap as libpng alone).  -c CASE (0-5) runs that case alone
 * (for a profiler).  The goal is 0.8 of
 * libpng's single-thread rate per core.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#ifdef HAVE_PNG
#include <png.h>
#endif
#ifdef HAVE_SPNG
#include <spng.h>
#endif

#include "bench_median.h"
#include "bench_pngs.h"
#include "pf_spec.h"
#include "pipefeed.h"

#define MAXRUNS 32
#define NCASE 6

static double cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static unsigned char **img;
static size_t *len, nimg;
static char files[8192];

#ifdef HAVE_PNG
static unsigned char px[1 << 22];

static int simple_one(const unsigned char *p, size_t n)
{
	png_image im;
	memset(&im, 0, sizeof(im));
	im.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_memory(&im, p, n))
		return -1;
	im.format = PNG_FORMAT_GRAY;
	if (PNG_IMAGE_SIZE(im) > sizeof(px) || !png_image_finish_read(&im, NULL, px, 0, NULL))
		return -1;
	return 0;
}

struct mem {
	const unsigned char *p;
	size_t n, off;
};

static void mem_read(png_structp ps, png_bytep out, png_size_t n)
{
	struct mem *m = png_get_io_ptr(ps);
	if (n > m->n - m->off)
		png_error(ps, "read past the end");
	memcpy(out, m->p + m->off, n);
	m->off += n;
}

static int rows_one(const unsigned char *p, size_t n)
{
	png_structp ps = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop pi = ps ? png_create_info_struct(ps) : NULL;
	struct mem m = { p, n, 0 };
	if (!pi || setjmp(png_jmpbuf(ps))) {
		png_destroy_read_struct(&ps, &pi, NULL);
		return -1;
	}
	png_set_read_fn(ps, &m, mem_read);
	png_read_info(ps, pi);
	png_uint_32 w = png_get_image_width(ps, pi), h = png_get_image_height(ps, pi);
	int ct = png_get_color_type(ps, pi);
	png_set_strip_16(ps);
	png_set_packing(ps);
	if (ct == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(ps);
	if (ct == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(ps, pi) < 8)
		png_set_expand_gray_1_2_4_to_8(ps);
	if (ct & PNG_COLOR_MASK_COLOR)
		png_set_rgb_to_gray_fixed(ps, 1, -1, -1);
	if (ct & PNG_COLOR_MASK_ALPHA)
		png_set_strip_alpha(ps);
	png_read_update_info(ps, pi);
	if ((size_t)w * h > sizeof(px))
		png_error(ps, "too large");
	int passes = png_set_interlace_handling(ps);
	for (int pass = 0; pass < passes; pass++)
		for (png_uint_32 y = 0; y < h; y++)
			png_read_row(ps, px + (size_t)y * w, NULL);
	png_read_end(ps, NULL);
	png_destroy_read_struct(&ps, &pi, NULL);
	return 0;
}
#endif

#ifdef HAVE_SPNG
static unsigned char spx[1 << 22];

static int spng_one(const unsigned char *p, size_t n)
{
	spng_ctx *c = spng_ctx_new(0);
	size_t sz;
	int rc = !c || spng_set_png_buffer(c, p, n) || spng_decoded_image_size(c, SPNG_FMT_G8, &sz) ||
		 sz > sizeof(spx) || spng_decode_image(c, spx, sz, SPNG_FMT_G8, 0);
	spng_ctx_free(c);
	return rc ? -1 : 0;
}
#endif

/* One pass of case c: CPU us per image, or -1. */
static double one(int c)
{
	double c0 = cpu();
	uint64_t n = 0;
	if (c == 2) {
#ifdef HAVE_SPNG
		for (size_t i = 0; i < nimg; i++)
			if (spng_one(img[i], len[i]))
				return -1;
		n = nimg;
#else
		return 0; /* not built: shown as "-" */
#endif
	} else if (c < 2) {
#ifdef HAVE_PNG
		for (size_t i = 0; i < nimg; i++)
			if ((c ? rows_one : simple_one)(img[i], len[i]))
				return -1;
		n = nimg;
#else
		return -1;
#endif
	} else {
		char spec[9000];
		pf_pipeline *p = NULL;
		pf_iter *it = NULL;
		pf_error err = { 0 };
		pf_elem e;
		int rc = pf_pipeline_new(&p, NULL, &err);
		if (c < 5) {
			if (!rc)
				rc = pf_records(p, (const void *const *)img, len, nimg, NULL, &err);
			if (!rc)
				rc = pf_map(p, "decode_image",
					    c == 3 ? "size=[28, 28], channels=1, dtype=f32" :
					    "size=[28, 28], channels=1, dtype=f32, png=libpng", NULL, &err);
		} else {
			snprintf(spec, sizeof(spec),
				 "tfrecord(%s, cycle=1) | map(parse_example(image=bytes, label=i64, max_bytes=65536)) | map(decode_image(size=[28, 28], channels=1, dtype=f32)) | batch(256)",
				 files);
			if (!rc)
				rc = pf_spec_apply(p, spec, &err);
		}
		if (!rc)
			rc = pf_iter_new(&it, p, &err);
		while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
			n += e.batch ? e.batch : 1;
			pf_elem_release(&e);
		}
		pf_iter_free(it);
		pf_pipeline_free(p);
		if (rc != PF_END) {
			fprintf(stderr, "png_bench: %s\n", err.msg);
			return -1;
		}
	}
	return n ? (cpu() - c0) / (double)n * 1e6 : c == 2 ? 0 : -1;
}

int main(int argc, char **argv)
{
	int runs = 7, only = -1;
	size_t max = (size_t)-1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-r") && i + 1 < argc) {
			runs = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
			only = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
			max = (size_t)atoll(argv[++i]);
		} else if (argv[i][0] != '-') {
			size_t l = strlen(files);
			snprintf(files + l, sizeof(files) - l, "%s\"%s\"", l ? ", " : "", argv[i]);
		} else {
			fprintf(stderr, "usage: png_bench [-r RUNS] [-n IMAGES] [-c CASE] FILE.tfrecord...\n");
			return 2;
		}
	}
	if (!files[0] || runs < 1 || runs > MAXRUNS) {
		fprintf(stderr, "usage: png_bench [-r RUNS] [-n IMAGES] [-c CASE] FILE.tfrecord...\n");
		return 2;
	}
	if (bench_load_pngs("png_bench", files, max, &img, &len, &nimg) || !nimg)
		return 1;
	static const char *const name[NCASE] = { "libpng-simple", "libpng-rows", "spng",
						  "decode_image", "decode-libpng", "example+decode" };
	double us[NCASE][MAXRUNS], eff[NCASE][2][MAXRUNS];
	if (only >= 0 && only < NCASE) {
		for (int r = 0; r < runs; r++)
			if ((us[only][r] = one(only)) < 0)
				return 1;
		printf("%-16s %10.2f us/image\n", name[only], bench_median(us[only], runs));
		return 0;
	}
	for (int r = 0; r < runs; r++)
		for (int c = 0; c < NCASE; c++)
			if ((us[c][r] = one(c)) < 0)
				return 1;
	for (int r = 0; r < runs; r++) /* per-run ratios: the drift cancels */
		for (int c = 0; c < NCASE; c++)
			for (int b = 0; b < 2; b++)
				eff[c][b][r] = us[c][r] > 0 ? us[b][r] / us[c][r] : 0;
	printf("png_bench: %zu PNGs (%s), %d runs, one thread, CPU us per image (median)\n", nimg,
	       files, runs);
	printf("%-16s %10s %14s %14s\n", "case", "us/image", "eff vs simple", "eff vs rows");
	for (int c = 0; c < NCASE; c++)
		printf("%-16s %10.2f %14.2f %14.2f\n", name[c], bench_median(us[c], runs),
		       bench_median(eff[c][0], runs), bench_median(eff[c][1], runs));
	return 0;
}
