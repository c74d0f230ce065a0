/*
 * decode_image.c - the decode_image map function: an encoded image (PNG
 * through libpng, JPEG through libjpeg-turbo, WebP through libwebp, each
 * optional at configure time) in a u8[?] field -> a u8[H,W,C] or
 * f32[H,W,C] field, other fields copied.
 *
 *   map(decode_image(field=image, size=[28,28], channels=1, dtype=f32,
 *                    fit=exact|resize|crop, max_pixels=N))
 *
 *   field     the field holding the encoded bytes (default: the only u8[?]
 *             field); the output keeps its name and position
 *   size      [H, W] of the output (required: a batch needs one shape)
 *   channels  1 (gray) or 3 (RGB), converted as libpng / libjpeg-turbo do
 *             (default 3); a WebP is RGB only (its alpha dropped)
 *   dtype     u8 (default) or f32 (value / 255, in [0,1])
 *   fit       exact (default): an image of another size is an error;
 *             resize: bilinear to HxW (tf.image.resize's half-pixel
 *             centers); crop: the centered HxW window (an image smaller
 *             than that is an error)
 *   dct       JPEG's inverse DCT: accurate (default; tf.io.decode_jpeg's
 *             dct_method="INTEGER_ACCURATE") or fast (its default)
 *   max_pixels  images larger than this (from their header) are refused
 *             before anything is allocated (default 2^26)
 *   png       auto (default): the plainest PNGs (8-bit gray or RGB to as
 *             many channels, not interlaced, well formed: lib/pf_png_fast.h)
 *             through pipefeed's fast path (one libdeflate call), others
 *             that libpng's simplified API passes through unchanged (8-bit
 *             or less; gray, RGB or palette without transparency or a gamma
 *             other than sRGB's, to as many channels or gray to RGB) through
 *             libspng, the rest, and any image either one fails on, through
 *             libpng: the pixels and messages are libpng's either way.
 *             libpng: libpng always.  spng / fast: that decoder alone, or an
 *             error saying why this image needs another (tests, benchmarks)
 *
 * The format is found from the first bytes.  A corrupt or truncated image
 * fails the sample with the library's reason (the map adds file, record;
 * isolate drops and logs it).  A format whose library this build lacks
 * fails naming the library; with neither library, decode_image itself is
 * refused when the spec is parsed (pf_fn_resolve).
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_PNG
#include <png.h>
#endif
#ifdef HAVE_TURBOJPEG
#include <turbojpeg.h>
#endif
#ifdef HAVE_WEBP
#include <webp/decode.h>
#endif
#ifdef HAVE_SPNG
#include <spng.h>
#endif

#include "pf_map_fns.h"
#include "pf_png_fast.h"
#include "pf_u8_f32.h"

#define IMG_MAX_PIXELS (1u << 26)

enum fit { FIT_EXACT, FIT_RESIZE, FIT_CROP };
enum pnglib { PNG_AUTO, PNG_LIBPNG, PNG_SPNG, PNG_FAST };

/* Decoded pixels of up to this many bytes go to a buffer on the worker's
 * stack when they cannot go straight into the output (f32, crop, resize). */
#define PX_SMALL 16384

/* fast_decode's and spng_decode's answer for a PNG that they do not take
 * (with png=fast / png=spng, err says why): libpng decodes it. */
#define PNG_NEEDS_LIBPNG 1

typedef struct img_state {
	pf_schema in;
	int field;            /* index of the image field */
	int H, W, C, f32, fastdct;
	enum fit fit;
	enum pnglib png;
	uint64_t max_pixels;
} img_state;

/* Where one image's pixels go: the output field itself when it needs no
 * placing (u8 at the output's size), else small[] or a malloc'd buffer. */
struct pxbuf {
	void *dst;            /* the output field */
	unsigned char *p;     /* the pixels: dst, small or malloc'd */
	int own;              /* p is malloc'd */
	unsigned char small[PX_SMALL];
	unsigned char raw[PX_SMALL]; /* the fast path's inflated rows */
};

const char *pf_decode_image_missing(void)
{
#if !defined(HAVE_PNG) && !defined(HAVE_SPNG) && !defined(HAVE_TURBOJPEG)
	return "libpng and libjpeg-turbo (apt-get install libpng-dev libturbojpeg0-dev, then reconfigure)";
#else
	return NULL;
#endif
}

static int fit_arg(const struct kv *k, enum fit *fit, pf_error *err)
{
	static const char *const names[] = { "exact", "resize", "crop" };
	for (int i = 0; i < 3; i++)
		if (!k->is_num && !strcmp(k->word, names[i])) {
			*fit = (enum fit)i;
			return 0;
		}
	return pf_error_set(err, PF_EINVAL, "decode_image: fit must be exact, resize or crop");
}

static int png_arg(const struct kv *k, enum pnglib *png, pf_error *err)
{
	static const char *const names[] = { "auto", "libpng", "spng", "fast" };
	for (int i = 0; i < 4; i++)
		if (!k->is_num && !strcmp(k->word, names[i])) {
			*png = (enum pnglib)i;
			return 0;
		}
	return pf_error_set(err, PF_EINVAL, "decode_image: png must be auto, libpng, spng or fast");
}

/* The arguments into st; the image field's index is found later. */
static int img_args(const char *args, img_state *st, char *field, size_t cap, pf_error *err)
{
	struct kv kv[MAPS_MAX_KV];
	int n, rc;
	if ((rc = pf_map_kv_parse("decode_image", args, kv, &n, err)))
		return rc;
	st->C = 3;
	st->max_pixels = IMG_MAX_PIXELS;
	for (int i = 0; i < n; i++) {
		const struct kv *k = &kv[i];
		if (!strcmp(k->key, "field") && !k->is_num) {
			snprintf(field, cap, "%s", k->word);
		} else if (!strcmp(k->key, "size") && k->is_num && k->n == 2 && k->num[0] >= 1 &&
			   k->num[1] >= 1 && k->num[0] <= 65536 && k->num[1] <= 65536) {
			st->H = (int)k->num[0];
			st->W = (int)k->num[1];
		} else if (!strcmp(k->key, "channels") && k->is_num && k->n == 1 &&
			   (k->num[0] == 1 || k->num[0] == 3)) {
			st->C = (int)k->num[0];
		} else if (!strcmp(k->key, "dtype") && !k->is_num &&
			   (!strcmp(k->word, "u8") || !strcmp(k->word, "f32"))) {
			st->f32 = !strcmp(k->word, "f32");
		} else if (!strcmp(k->key, "dct") && !k->is_num &&
			   (!strcmp(k->word, "fast") || !strcmp(k->word, "accurate"))) {
			st->fastdct = !strcmp(k->word, "fast");
		} else if (!strcmp(k->key, "fit")) {
			if ((rc = fit_arg(k, &st->fit, err)))
				return rc;
		} else if (!strcmp(k->key, "png")) {
			if ((rc = png_arg(k, &st->png, err)))
				return rc;
		} else if (!strcmp(k->key, "max_pixels") && k->is_num && k->n == 1 && k->num[0] >= 1) {
			st->max_pixels = (uint64_t)k->num[0];
		} else {
			return pf_error_set(err, PF_EINVAL,
					    "decode_image: bad argument '%s' (expected field=NAME, size=[H, W], channels=1|3, dtype=u8|f32, fit=exact|resize|crop, dct=accurate|fast, max_pixels=N, png=auto|libpng|spng|fast)",
					    k->key);
		}
	}
	if (!st->H)
		return pf_error_set(err, PF_EINVAL,
				    "decode_image: give the output size, e.g. decode_image(size=[224, 224], fit=resize)");
#ifndef HAVE_SPNG
	if (st->png == PNG_SPNG)
		return pf_error_set(err, PF_EINVAL,
				    "decode_image: png=spng, and this pipefeed was built without libspng (apt-get install libspng-dev, then reconfigure)");
#endif
	if (st->png == PNG_FAST && !pf_png_fast_available())
		return pf_error_set(err, PF_EINVAL,
				    "decode_image: png=fast, and this pipefeed was built without libdeflate (apt-get install libdeflate-dev, then reconfigure)");
#ifndef HAVE_PNG
	if (st->png == PNG_LIBPNG)
		return pf_error_set(err, PF_EINVAL,
				    "decode_image: png=libpng, and this pipefeed was built without libpng (apt-get install libpng-dev, then reconfigure)");
#endif
	return 0;
}

static int is_bytes(const pf_field *f)
{
	return f->dtype == PF_U8 && f->ndim == 1 && f->dims[0] == PF_DIM_VAR;
}

int pf_decode_image_prepare(pf_map_ctx *ctx, pf_error *err)
{
	char field[PF_FIELD_NAME_MAX] = "";
	img_state *st = calloc(1, sizeof(*st));
	int rc;
	if (!st)
		return pf_error_set(err, PF_ENOMEM, "decode_image: out of memory");
	if ((rc = img_args(ctx->args, st, field, sizeof(field), err)))
		goto fail;
	st->in = *ctx->in;
	st->field = -1;
	for (int i = 0; i < st->in.nfields; i++) {
		const pf_field *f = &st->in.fields[i];
		if (field[0] ? !strcmp(f->name, field) : is_bytes(f)) {
			if (st->field >= 0) {
				rc = pf_error_set(err, PF_EINVAL,
						  "decode_image: the input has more than one u8[?] field: name one with field=NAME");
				goto fail;
			}
			st->field = i;
		}
	}
	if (st->field < 0 || !is_bytes(&st->in.fields[st->field])) {
		rc = pf_error_set(err, PF_EINVAL,
				  field[0] ? "decode_image: no u8[?] field called '%s' in the input" :
				  "decode_image: the input has no u8[?] field (encoded bytes)%s", field);
		goto fail;
	}
	ctx->out = st->in;
	pf_field *o = &ctx->out.fields[st->field];
	o->dtype = st->f32 ? PF_F32 : PF_U8;
	o->ndim = 3;
	o->dims[0] = st->H;
	o->dims[1] = st->W;
	o->dims[2] = st->C;
	if (pf_schema_record_bytes(&ctx->out) < 0)
		ctx->max_out_bytes = (size_t)pf_field_bytes(o) + (1u << 20);
	ctx->state = st;
	ctx->free_state = free;
	return 0;
fail:
	free(st);
	return rc;
}

/* ---- decoders: header (w, h), then pixels (w * h * C bytes) into b ---- */

static const char *fname(const img_state *st)
{
	return st->in.fields[st->field].name;
}

/* Where a w x h image's pixels go (see struct pxbuf), or NULL (out of
 * memory).  The caller checked w * h against max_pixels. */
static unsigned char *px_at(const img_state *st, int w, int h, struct pxbuf *b)
{
	size_t sz = (size_t)w * (size_t)h * (size_t)st->C;
	if (!st->f32 && w == st->W && h == st->H)
		b->p = b->dst;
	else if (sz <= PX_SMALL)
		b->p = b->small;
	else if ((b->p = malloc(sz ? sz : 1)))
		b->own = 1;
	return b->p;
}

#ifdef HAVE_PNG
static int png_decode(const img_state *st, const unsigned char *p, size_t n, struct pxbuf *b,
		      int *w, int *h, pf_error *err)
{
	png_image im;
	memset(&im, 0, sizeof(im));
	im.version = PNG_IMAGE_VERSION;
	if (!png_image_begin_read_from_memory(&im, p, n))
		return pf_error_set(err, PF_EMAP, "decode_image: field %s: PNG: %s", fname(st),
				    im.message);
	if ((uint64_t)im.width * im.height > st->max_pixels) {
		png_image_free(&im);
		return pf_error_set(err, PF_ELIMIT, "decode_image: field %s: PNG of %ux%u is over max_pixels",
				    fname(st), im.width, im.height);
	}
	int alpha = im.format & PNG_FORMAT_FLAG_ALPHA;
	im.format = st->C == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
	*w = (int)im.width;
	*h = (int)im.height;
	if (!px_at(st, *w, *h, b)) {
		png_image_free(&im);
		return pf_error_set(err, PF_ENOMEM, "decode_image: out of memory");
	}
	/* with no background given, libpng composites an alpha channel onto
	 * what the buffer holds: make that black, not whatever was there */
	if (alpha)
		memset(b->p, 0, PNG_IMAGE_SIZE(im));
	if (!png_image_finish_read(&im, NULL, b->p, 0, NULL))
		return pf_error_set(err, PF_EMAP, "decode_image: field %s: PNG: %s", fname(st),
				    im.message);
	return 0;
}
#endif

#ifdef HAVE_SPNG
/* NULL when libpng's simplified read of this PNG to C channels of 8 bits
 * (no background, sRGB assumed) is the plain expansion spng's G8 / RGB8
 * gives, else what libpng would change.  *e: an spng error reading the
 * chunks before the image data, else 0. */
static const char *spng_unlike(spng_ctx *c, const struct spng_ihdr *ih, int C, int *e)
{
	struct spng_trns t;
	uint32_t g;
	*e = 0;
	if (ih->bit_depth > 8)
		return "16-bit samples (libpng reduces them through its gamma tables)";
	if (ih->color_type & 4)
		return "an alpha channel (libpng composites it)";
	if (C == 1 && ih->color_type != SPNG_COLOR_TYPE_GRAYSCALE)
		return "color to gray (libpng's conversion)";
	if (!(*e = spng_get_trns(c, &t)))
		return "tRNS transparency (libpng composites it)";
	if (*e != SPNG_ECHUNKAVAIL)
		return NULL;
	if (!(*e = spng_get_gama_int(c, &g)) && g != 45455)
		return "a gAMA other than sRGB's (libpng corrects it)";
	if (*e == SPNG_ECHUNKAVAIL)
		*e = 0;
	return NULL;
}

/* The PNG through libspng when that gives libpng's pixels: 0, a negative
 * code (spng's reason in err), or PNG_NEEDS_LIBPNG. */
static int spng_decode(const img_state *st, const unsigned char *p, size_t n, struct pxbuf *b,
		       int *w, int *h, pf_error *err)
{
	struct spng_ihdr ih;
	const char *why = NULL;
	int e, rc = 0;
	if (pf_png_check(p, n, 1)) {
		if (st->png == PNG_SPNG)
			pf_error_set(err, PF_EMAP, "decode_image: field %s: PNG: damaged, or a chunk or zlib stream only libpng decodes as TensorFlow does: png=spng refuses it",
				     fname(st));
		return PNG_NEEDS_LIBPNG;
	}
	spng_ctx *c = spng_ctx_new(0);
	if (!c)
		return pf_error_set(err, PF_ENOMEM, "decode_image: out of memory");
	/* chunk memory: at most the image's own size (it is all in memory) */
	spng_set_chunk_limits(c, n, n);
	if ((e = spng_set_png_buffer(c, p, n)) || (e = spng_get_ihdr(c, &ih))) {
		rc = PF_EMAP;
	} else if ((uint64_t)ih.width * ih.height > st->max_pixels) {
		rc = pf_error_set(err, PF_ELIMIT, "decode_image: field %s: PNG of %ux%u is over max_pixels",
				  fname(st), ih.width, ih.height);
	} else if ((why = spng_unlike(c, &ih, st->C, &e)) || e) {
		rc = e ? PF_EMAP : PNG_NEEDS_LIBPNG;
	} else if (!px_at(st, *w = (int)ih.width, *h = (int)ih.height, b)) {
		rc = pf_error_set(err, PF_ENOMEM, "decode_image: out of memory");
	} else if ((e = spng_decode_image(c, b->p, (size_t)*w * (size_t)*h * (size_t)st->C,
					  st->C == 1 ? SPNG_FMT_G8 : SPNG_FMT_RGB8, 0)) ||
		   (e = spng_decode_chunks(c))) {
		/* spng_decode_chunks: the rest of the file up to IEND, with the
		 * last IDAT's CRC, which libpng checks too */
		rc = PF_EMAP;
	}
	if (rc == PF_EMAP)
		pf_error_set(err, PF_EMAP, "decode_image: field %s: PNG: %s (libspng)", fname(st),
			     spng_strerror(e));
	else if (rc == PNG_NEEDS_LIBPNG)
		pf_error_set(err, PF_EMAP, "decode_image: field %s: PNG with %s: only libpng decodes it as TensorFlow does (png=spng refuses it)",
			     fname(st), why);
	spng_ctx_free(c);
	return rc;
}
#endif

/* The PNG through pipefeed's fast path: 0, a negative code, or
 * PNG_NEEDS_LIBPNG (err says why: not a file the fast path takes). */
static int fast_decode(const img_state *st, const unsigned char *p, size_t n, struct pxbuf *b,
		       int *w, int *h, pf_error *err)
{
	uint32_t fw, fh;
	int ch, rc;
	if (pf_png_fast_header(p, n, &fw, &fh, &ch) || ch != st->C) {
		if (st->png == PNG_FAST)
			pf_error_set(err, PF_EMAP, "decode_image: field %s: PNG: not 8-bit %s without interlacing: png=fast refuses it",
				     fname(st), st->C == 1 ? "gray" : "RGB");
		return PNG_NEEDS_LIBPNG;
	}
	if ((uint64_t)fw * fh > st->max_pixels)
		return pf_error_set(err, PF_ELIMIT, "decode_image: field %s: PNG of %ux%u is over max_pixels",
				    fname(st), fw, fh);
	if (!px_at(st, *w = (int)fw, *h = (int)fh, b))
		return pf_error_set(err, PF_ENOMEM, "decode_image: out of memory");
	if ((rc = pf_png_fast(p, n, b->p, b->raw, sizeof(b->raw))) < 0)
		return pf_error_set(err, rc, "decode_image: out of memory");
	if (rc && st->png == PNG_FAST)
		pf_error_set(err, PF_EMAP, "decode_image: field %s: PNG: damaged, or a chunk or zlib stream the fast path does not take: png=fast refuses it",
			     fname(st));
	if (rc)
		return PNG_NEEDS_LIBPNG;
	return 0;
}

/* A PNG as st->png says: the fast path, else spng for what it decodes as
 * libpng would, else libpng (in auto, also after either one fails, so that
 * libpng's pixels or libpng's message come out). */
static int any_png(const img_state *st, const unsigned char *p, size_t n, struct pxbuf *b,
		   int *w, int *h, pf_error *err)
{
	int rc = PNG_NEEDS_LIBPNG;
	if (st->png == PNG_AUTO || st->png == PNG_FAST) {
		rc = fast_decode(st, p, n, b, w, h, err);
		if (rc <= 0 || st->png == PNG_FAST)
			return rc > 0 ? PF_EMAP : rc;
	}
#ifdef HAVE_SPNG
	if (st->png != PNG_LIBPNG) {
		if (b->own)
			free(b->p);
		b->own = 0;
		if (err)
			err->code = 0;
		rc = spng_decode(st, p, n, b, w, h, err);
#ifdef HAVE_PNG
		if (rc == 0 || rc == PF_ELIMIT || rc == PF_ENOMEM || st->png == PNG_SPNG)
#endif
			return rc > 0 ? PF_EMAP : rc;
	}
#endif
	if (b->own)
		free(b->p);
	b->own = 0;
	if (err) /* libpng's message, not the others' (the first one set wins) */
		err->code = 0;
#ifdef HAVE_PNG
	return png_decode(st, p, n, b, w, h, err);
#else
	return pf_error_set(err, PF_EMAP, "decode_image: field %s: PNG, and this pipefeed was built without libpng",
			    fname(st));
#endif
}

#ifdef HAVE_TURBOJPEG
static int jpeg_decode(const img_state *st, const unsigned char *p, size_t n, struct pxbuf *b,
		       int *w, int *h, pf_error *err)
{
	tjhandle tj = tjInitDecompress();
	int ss, cs, rc = 0;
	if (!tj)
		return pf_error_set(err, PF_ENOMEM, "decode_image: tjInitDecompress failed");
	if (n > (unsigned long)-1 ||
	    tjDecompressHeader3(tj, p, (unsigned long)n, w, h, &ss, &cs)) {
		rc = pf_error_set(err, PF_EMAP, "decode_image: field %s: JPEG: %s", fname(st),
				  tjGetErrorStr2(tj));
	} else if ((uint64_t)*w * (uint64_t)*h > st->max_pixels) {
		rc = pf_error_set(err, PF_ELIMIT, "decode_image: field %s: JPEG of %dx%d is over max_pixels",
				  fname(st), *w, *h);
	} else if (!px_at(st, *w, *h, b)) {
		rc = pf_error_set(err, PF_ENOMEM, "decode_image: out of memory");
	} else if (tjDecompress2(tj, p, (unsigned long)n, b->p, *w, 0, *h,
				 st->C == 1 ? TJPF_GRAY : TJPF_RGB, st->fastdct ? TJFLAG_FASTDCT : 0)) {
		/* warnings too (a truncated image): tf.io.decode_jpeg fails on them */
		rc = pf_error_set(err, PF_EMAP, "decode_image: field %s: JPEG: %s", fname(st),
				  tjGetErrorStr2(tj));
	}
	tjDestroy(tj);
	return rc;
}
#endif

#ifdef HAVE_WEBP
/* WebP (lossy or lossless) to RGB; its alpha, if any, is dropped.  Gray
 * output is refused: WebP has no gray form and no conversion is promised. */
static int webp_decode(const img_state *st, const unsigned char *p, size_t n, struct pxbuf *b,
		       int *w, int *h, pf_error *err)
{
	if (!WebPGetInfo(p, n, w, h))
		return pf_error_set(err, PF_EMAP, "decode_image: field %s: WebP: bad or truncated header",
				    fname(st));
	if ((uint64_t)*w * (uint64_t)*h > st->max_pixels)
		return pf_error_set(err, PF_ELIMIT, "decode_image: field %s: WebP of %dx%d is over max_pixels",
				    fname(st), *w, *h);
	if (st->C != 3)
		return pf_error_set(err, PF_EMAP,
				    "decode_image: field %s: a WebP decodes to RGB only: use channels=3",
				    fname(st));
	size_t stride = (size_t)*w * 3, sz = stride * (size_t)*h;
	if (!px_at(st, *w, *h, b))
		return pf_error_set(err, PF_ENOMEM, "decode_image: out of memory");
	if (!WebPDecodeRGBInto(p, n, b->p, sz, (int)stride)) {
		return pf_error_set(err, PF_EMAP, "decode_image: field %s: WebP: corrupt or truncated image data",
				    fname(st));
	}
	return 0;
}
#endif

/* Bilinear, half-pixel centers (tf.image.resize's "bilinear"). */
static void resize(const unsigned char *s, int sw, int sh, int C, float *d, int dw, int dh)
{
	float sy = (float)sh / (float)dh, sx = (float)sw / (float)dw;
	for (int y = 0; y < dh; y++) {
		float fy = ((float)y + 0.5f) * sy - 0.5f, ly = fy - floorf(fy);
		int y0 = (int)floorf(fy), y1 = (int)ceilf(fy);
		y0 = y0 < 0 ? 0 : y0;
		y1 = y1 > sh - 1 ? sh - 1 : y1;
		for (int x = 0; x < dw; x++) {
			float fx = ((float)x + 0.5f) * sx - 0.5f, lx = fx - floorf(fx);
			int x0 = (int)floorf(fx), x1 = (int)ceilf(fx);
			x0 = x0 < 0 ? 0 : x0;
			x1 = x1 > sw - 1 ? sw - 1 : x1;
			for (int c = 0; c < C; c++) {
				float tl = s[((size_t)y0 * sw + x0) * C + c], tr = s[((size_t)y0 * sw + x1) * C + c];
				float bl = s[((size_t)y1 * sw + x0) * C + c], br = s[((size_t)y1 * sw + x1) * C + c];
				float top = tl + (tr - tl) * lx, bot = bl + (br - bl) * lx;
				d[((size_t)y * dw + x) * C + c] = top + (bot - top) * ly;
			}
		}
	}
}

/* Decoded px (w x h) -> the output field at dst, as st says. */
static int place(const img_state *st, const unsigned char *px, int w, int h, void *dst,
		 pf_error *err)
{
	size_t row = (size_t)st->W * st->C, n = row * st->H;
	if (st->fit == FIT_RESIZE && (w != st->W || h != st->H)) {
		float *t = st->f32 ? dst : malloc(n * sizeof(float));
		if (!t)
			return pf_error_set(err, PF_ENOMEM, "decode_image: out of memory");
		resize(px, w, h, st->C, t, st->W, st->H);
		for (size_t i = 0; i < n; i++) {
			if (st->f32)
				t[i] *= 1.0f / 255.0f;
			else
				((unsigned char *)dst)[i] = (unsigned char)lrintf(t[i]);
		}
		if (!st->f32)
			free(t);
		return 0;
	}
	if (w < st->W || h < st->H || (st->fit == FIT_EXACT && (w != st->W || h != st->H)))
		return pf_error_set(err, PF_EMAP,
				    "decode_image: field %s: image is %dx%d (HxW), expected %dx%d%s",
				    fname(st), h, w, st->H, st->W,
				    st->fit == FIT_EXACT ? " (fit=resize or fit=crop to change it)" : "");
	int y0 = (h - st->H) / 2, x0 = (w - st->W) / 2;
	if (w == st->W) { /* whole rows: one run (the common case, no crop) */
		const unsigned char *s = px + (size_t)y0 * row;
		if (st->f32)
			pf_u8_to_f32_hot(dst, s, (int64_t)n);
		else
			memcpy(dst, s, n);
		return 0;
	}
	for (int y = 0; y < st->H; y++) {
		const unsigned char *s = px + ((size_t)(y0 + y) * w + x0) * st->C;
		if (st->f32)
			pf_u8_to_f32_hot((float *)dst + y * row, s, (int64_t)row);
		else
			memcpy((unsigned char *)dst + y * row, s, row);
	}
	return 0;
}

static int decode(const img_state *st, const unsigned char *p, size_t n, void *dst,
		  pf_error *err)
{
	struct pxbuf b;
	int w = 0, h = 0, rc;
	b.dst = dst;
	b.p = NULL;
	b.own = 0;
	if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) {
#if defined(HAVE_PNG) || defined(HAVE_SPNG)
		rc = any_png(st, p, n, &b, &w, &h, err);
#else
		return pf_error_set(err, PF_EMAP, "decode_image: field %s: a PNG, and this pipefeed was built without libpng",
				    fname(st));
#endif
	} else if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) {
#ifdef HAVE_TURBOJPEG
		rc = jpeg_decode(st, p, n, &b, &w, &h, err);
#else
		return pf_error_set(err, PF_EMAP, "decode_image: field %s: a JPEG, and this pipefeed was built without libjpeg-turbo",
				    fname(st));
#endif
	} else if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) {
#ifdef HAVE_WEBP
		rc = webp_decode(st, p, n, &b, &w, &h, err);
#else
		return pf_error_set(err, PF_EMAP, "decode_image: field %s: a WebP, and this pipefeed was built without libwebp",
				    fname(st));
#endif
	} else {
		return pf_error_set(err, PF_EMAP,
				    "decode_image: field %s: not a PNG, JPEG or WebP (%zu bytes, first %02x %02x %02x %02x)",
				    fname(st), n, n > 0 ? p[0] : 0, n > 1 ? p[1] : 0, n > 2 ? p[2] : 0,
				    n > 3 ? p[3] : 0);
	}
	if (!rc && b.p != dst) /* decoded straight into the output otherwise */
		rc = place(st, b.p, w, h, dst, err);
	if (b.own)
		free(b.p);
	return rc;
}

int pf_decode_image_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err)
{
	const img_state *st = state;
	for (int i = 0; i < st->in.nfields; i++) {
		const pf_field *f = &st->in.fields[i];
		size_t bytes = (size_t)in->nitems[i] * pf_dtype_size(f->dtype);
		int rc;
		if (i == st->field) {
			if ((rc = decode(st, in->data[i], (size_t)in->nitems[i], out->data[i], err)))
				return rc;
		} else if (pf_field_count(f) < 0) {
			void *d = pf_elem_alloc(out, i, in->var_len[i], err);
			if (!d)
				return err && err->code ? err->code : PF_ELIMIT;
			memcpy(d, in->data[i], bytes);
		} else {
			memcpy(out->data[i], in->data[i], bytes);
		}
	}
	return 0;
}
