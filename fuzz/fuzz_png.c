/*
 * fuzz_png - decode_image's PNG decoders against each other: on any bytes,
 * the fast path (png=fast, lib/png_fast.c) and libspng (png=spng) either
 * refuse the file or give exactly libpng's pixels (png=libpng), and the
 * default (png=auto) succeeds exactly when libpng does, with its pixels.
 * The first input byte's bit 0 picks 1 or 3 output channels; the rest is
 * the PNG (its IHDR gives the size asked for; files over 2^16 pixels are
 * skipped).  Aborts on any difference; must never crash or overrun.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipefeed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int pf_decode_image_prepare(pf_map_ctx *ctx, pf_error *err);
int pf_decode_image_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err);

/* Decode img with png=lib into out (bytes): 0, an error code, or 1 when
 * this build lacks lib. */
static int dec(const char *lib, int c, uint32_t w, uint32_t h, const uint8_t *img, size_t n,
	       unsigned char *out)
{
	char args[160];
	pf_schema in;
	pf_error e = { 0 };
	pf_map_ctx ctx;
	pf_elem ie, oe;
	snprintf(args, sizeof(args), "size=[%u, %u], channels=%d, png=%s", h, w, c, lib);
	if (pf_schema_parse(&in, "image: u8[?]", &e))
		abort();
	memset(&ctx, 0, sizeof(ctx));
	ctx.in = &in;
	ctx.args = args;
	if (pf_decode_image_prepare(&ctx, &e))
		return 1;
	memset(&ie, 0, sizeof(ie));
	memset(&oe, 0, sizeof(oe));
	ie.schema = &in;
	ie.data[0] = (void *)img;
	ie.nitems[0] = ie.var_len[0] = (int64_t)n;
	oe.schema = &ctx.out;
	oe.data[0] = out;
	int rc = pf_decode_image_fn(ctx.state, &ie, &oe, &e);
	ctx.free_state(ctx.state);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 + 24)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	int c = data[0] & 1 ? 3 : 1;
	uint32_t w = (uint32_t)p[16] << 24 | (uint32_t)p[17] << 16 | (uint32_t)p[18] << 8 | p[19];
	uint32_t h = (uint32_t)p[20] << 24 | (uint32_t)p[21] << 16 | (uint32_t)p[22] << 8 | p[23];
	if (!w || !h || w > 65536 || h > 65536 || (uint64_t)w * h > 65536)
		return 0;
	size_t ob = (size_t)w * h * (size_t)c;
	uint8_t *img = malloc(n); /* exactly the image: ASan sees overreads */
	unsigned char *ref = malloc(ob), *got = malloc(ob);
	memcpy(img, p, n);
	int lr = dec("libpng", c, w, h, img, n, ref);
	if (lr == 1) /* no libpng: nothing to compare against */
		goto out;
	static const char *const other[] = { "fast", "spng", "auto" };
	for (int k = 0; k < 3; k++) {
		memset(got, 0xa5, ob);
		int r = dec(other[k], c, w, h, img, n, got);
		if (r == 1)
			continue;
		if ((!r && (lr || memcmp(got, ref, ob))) || (k == 2 && !lr && r)) {
			fprintf(stderr, "fuzz_png: png=%s gives %s, libpng %s (%ux%u, channels %d)\n",
				other[k], r ? "an error" : "pixels", lr ? "an error" : "other pixels", w, h, c);
			abort();
		}
	}
out:
	free(got);
	free(ref);
	free(img);
	return 0;
}
