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

#include "pf_map_fns.h"
#include "pf_u8_f32.h"

#define IMG_MAX_PIXELS (1u << 26)

enum fit { FIT_EXACT, FIT_RESIZE, FIT_CROP };

typedef struct img_state {
	pf_schema in;
	int field;            /* index of the image field */
	int H, W, C, f32, fastdct;
	enum fit fit;
	uint64_t max_pixels;
} img_state;

const char *pf_decode_image_missing(void)
{
#if !defined(HAVE_PNG) && !defined(HAVE_TURBOJPEG)
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
		} else if (!strcmp(k->key, "max_pixels") && k->is_num && k->n == 1 && k->num[0] >= 1) {
			st->max_pixels = (uint64_t)k->num[0];
		} else {
			return pf_error_set(err, PF_EINVAL,
					    "decode_image: bad argument '%s' (expected field=NAME, size=[H, W], channels=1|3, dtype=u8|f32, fit=exact|resize|crop, dct=accurate|fast, max_pixels=N)",
					    k->key);
		}
	}
	if (!st->H)
		return pf_error_set(err, PF_EINVAL,
				    "decode_image: give the output size, e.g. decode_image(size=[224, 224], fit=resize)");
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

/* ---- decoders: header (w, h), then pixels into dst (w * h * C bytes) ---- */

static const char *fname(const img_state *st)
{
	return st->in.fields[st->field].name;
}

#ifdef HAVE_PNG
static int png_decode(const img_state *st, const unsigned char *p, size_t n,
		      unsigned char **px, int *w, int *h, pf_error *err)
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
	im.format = st->C == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
	*px = malloc(PNG_IMAGE_SIZE(im));
	if (!*px) {
		png_image_free(&im);
		return pf_error_set(err, PF_ENOMEM, "decode_image: out of memory");
	}
	if (!png_image_finish_read(&im, NULL, *px, 0, NULL)) {
		free(*px);
		*px = NULL;
		return pf_error_set(err, PF_EMAP, "decode_image: field %s: PNG: %s", fname(st),
				    im.message);
	}
	*w = (int)im.width;
	*h = (int)im.height;
	return 0;
}
#endif

#ifdef HAVE_TURBOJPEG
static int jpeg_decode(const img_state *st, const unsigned char *p, size_t n,
		       unsigned char **px, int *w, int *h, pf_error *err)
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
	} else if (!(*px = malloc((size_t)*w * (size_t)*h * (size_t)st->C))) {
		rc = pf_error_set(err, PF_ENOMEM, "decode_image: out of memory");
	} else if (tjDecompress2(tj, p, (unsigned long)n, *px, *w, 0, *h,
				 st->C == 1 ? TJPF_GRAY : TJPF_RGB, st->fastdct ? TJFLAG_FASTDCT : 0)) {
		/* warnings too (a truncated image): tf.io.decode_jpeg fails on them */
		rc = pf_error_set(err, PF_EMAP, "decode_image: field %s: JPEG: %s", fname(st),
				  tjGetErrorStr2(tj));
		free(*px);
		*px = NULL;
	}
	tjDestroy(tj);
	return rc;
}
#endif

#ifdef HAVE_WEBP
/* WebP (lossy or lossless) to RGB; its alpha, if any, is dropped.  Gray
 * output is refused: WebP has no gray form and no conversion is promised. */
static int webp_decode(const img_state *st, const unsigned char *p, size_t n,
		       unsigned char **px, int *w, int *h, pf_error *err)
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
	if (!(*px = malloc(sz)))
		return pf_error_set(err, PF_ENOMEM, "decode_image: out of memory");
	if (!WebPDecodeRGBInto(p, n, *px, sz, (int)stride)) {
		free(*px);
		*px = NULL;
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
	unsigned char *px = NULL;
	int w = 0, h = 0, rc;
	if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) {
#ifdef HAVE_PNG
		rc = png_decode(st, p, n, &px, &w, &h, err);
#else
		return pf_error_set(err, PF_EMAP, "decode_image: field %s: a PNG, and this pipefeed was built without libpng",
				    fname(st));
#endif
	} else if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) {
#ifdef HAVE_TURBOJPEG
		rc = jpeg_decode(st, p, n, &px, &w, &h, err);
#else
		return pf_error_set(err, PF_EMAP, "decode_image: field %s: a JPEG, and this pipefeed was built without libjpeg-turbo",
				    fname(st));
#endif
	} else if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) {
#ifdef HAVE_WEBP
		rc = webp_decode(st, p, n, &px, &w, &h, err);
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
	if (!rc)
		rc = place(st, px, w, h, dst, err);
	free(px);
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
