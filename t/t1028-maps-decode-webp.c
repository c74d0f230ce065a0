/* t1028-maps-decode-webp: decode_image reads WebP through libwebp: a
 * lossless WebP gives back the very pixels encoded, a lossy one what
 * libwebp's own decoder gives, f32 is value / 255; a truncated WebP, gray
 * output (WebP is RGB) and an image over max_pixels fail with a reason
 * naming WebP.  Skips when built without libwebp. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "pipefeed.h"
#include "tap.h"

#ifdef HAVE_WEBP
#include <webp/decode.h>
#include <webp/encode.h>

#define H 20
#define W 28

/* One element: the WebP bytes through decode_image(args); *out holds a
 * copy of the output field (bytes), or the error. */
static int decode(const unsigned char *webp, size_t n, const char *args, unsigned char *out,
		  size_t cap, pf_error *err)
{
	const void *recs[1] = { webp };
	size_t lens[1] = { n };
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	pf_elem e;
	int rc = pf_pipeline_new(&p, NULL, err);
	if (!rc)
		rc = pf_records(p, recs, lens, 1, NULL, err);
	if (!rc)
		rc = pf_map(p, "decode_image", args, NULL, err);
	if (!rc)
		rc = pf_iter_new(&it, p, err);
	if (!rc && !(rc = pf_iter_next(it, &e, err))) {
		size_t b = (size_t)e.nitems[0] * (e.schema->fields[0].dtype == PF_F32 ? 4 : 1);
		memcpy(out, e.data[0], b < cap ? b : cap);
		pf_elem_release(&e);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc;
}
#endif

int main(void)
{
	alarm(60);
#ifndef HAVE_WEBP
	plan_skip_all("built without libwebp");
#else
	plan(7);
	static unsigned char rgb[H * W * 3], got[H * W * 3 * 4];
	for (int y = 0; y < H; y++)
		for (int x = 0; x < W; x++) {
			unsigned char *q = rgb + (y * W + x) * 3;
			q[0] = (unsigned char)(x * 9);
			q[1] = (unsigned char)(y * 12);
			q[2] = (unsigned char)((x * y) ^ 0x5a);
		}
	uint8_t *ll = NULL, *ly = NULL;
	size_t nll = WebPEncodeLosslessRGB(rgb, W, H, W * 3, &ll);
	size_t nly = WebPEncodeRGB(rgb, W, H, W * 3, 80, &ly);
	ok(nll > 0 && nly > 0, "libwebp wrote a lossless (%zu bytes) and a lossy (%zu bytes) WebP", nll,
	   nly);
	pf_error err = { 0 };
	int rc = decode(ll, nll, "size=[20, 28], channels=3", got, sizeof(got), &err);
	ok(rc == 0 && !memcmp(got, rgb, sizeof(rgb)), "lossless WebP: the very pixels encoded (%s)",
	   rc ? err.msg : "ok");
	err = (pf_error){ 0 };
	rc = decode(ll, nll, "size=[20, 28], channels=3, dtype=f32", got, sizeof(got), &err);
	int f32ok = rc == 0;
	for (int i = 0; f32ok && i < H * W * 3; i++)
		f32ok = ((float *)got)[i] == (float)rgb[i] / 255.0f;
	ok(f32ok, "dtype=f32: value / 255 (%s)", rc ? err.msg : "ok");
	int w = 0, h = 0;
	uint8_t *ref = WebPDecodeRGB(ly, nly, &w, &h);
	err = (pf_error){ 0 };
	rc = decode(ly, nly, "size=[20, 28], channels=3", got, sizeof(got), &err);
	ok(rc == 0 && ref && w == W && h == H && !memcmp(got, ref, sizeof(rgb)),
	   "lossy WebP: what libwebp's own decoder gives (%s)", rc ? err.msg : "ok");
	WebPFree(ref);
	err = (pf_error){ 0 };
	rc = decode(ly, nly / 2, "size=[20, 28], channels=3", got, sizeof(got), &err);
	ok(rc < 0 && strstr(err.msg, "WebP") && strstr(err.msg, "sample 0"),
	   "a truncated WebP fails naming WebP and the sample: %s", err.msg);
	err = (pf_error){ 0 };
	rc = decode(ll, nll, "size=[20, 28], channels=1", got, sizeof(got), &err);
	ok(rc < 0 && strstr(err.msg, "channels=3"), "gray output of a WebP is refused: %s", err.msg);
	err = (pf_error){ 0 };
	rc = decode(ll, nll, "size=[20, 28], channels=3, max_pixels=100", got, sizeof(got), &err);
	ok(rc == PF_ELIMIT && strstr(err.msg, "over max_pixels"), "max_pixels: %s", err.msg);
	WebPFree(ll);
	WebPFree(ly);
	return done_testing();
#endif
}
