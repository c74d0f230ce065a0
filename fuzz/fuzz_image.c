/*
 * fuzz_image - decode_image's glue on arbitrary bytes: the format sniffing,
 * libpng's, libjpeg-turbo's and libwebp's error paths, the max_pixels check before
 * allocating, and the exact / crop / resize placement into u8 and f32
 * outputs (the first input byte picks the fit, dtype and channels; the
 * rest is the image).  Must never crash, read or write out of bounds, or
 * allocate past max_pixels.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipefeed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* decode_image's two calls (ops/pf_map_fns.h; exported by the library) */
int pf_decode_image_prepare(pf_map_ctx *ctx, pf_error *err);
int pf_decode_image_fn(void *state, const pf_elem *in, pf_elem *out, pf_error *err);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const args[8] = {
		"size=[28, 28], channels=1", "size=[28, 28], channels=3, dtype=f32",
		"size=[7, 9], channels=1, fit=resize", "size=[40, 33], channels=3, fit=resize, dtype=f32",
		"size=[5, 5], channels=1, fit=crop", "size=[1, 1], channels=3, fit=crop, dtype=f32",
		"size=[28, 28], channels=1, dct=fast", "size=[64, 64], channels=3, fit=resize, max_pixels=4096",
	};
	if (!size)
		return 0;
	pf_schema in;
	pf_error e = { 0 };
	if (pf_schema_parse(&in, "image: u8[?]", &e))
		abort();
	pf_map_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.in = &in;
	ctx.args = args[data[0] & 7];
	if (pf_decode_image_prepare(&ctx, &e))
		abort();
	size_t n = size - 1;
	uint8_t *img = malloc(n ? n : 1); /* exactly the image: ASan sees overreads */
	memcpy(img, data + 1, n);
	size_t ob = (size_t)pf_field_bytes(&ctx.out.fields[0]);
	unsigned char *o = malloc(ob);
	pf_elem ie, oe;
	memset(&ie, 0, sizeof(ie));
	memset(&oe, 0, sizeof(oe));
	ie.schema = &in;
	ie.data[0] = img;
	ie.nitems[0] = ie.var_len[0] = (int64_t)n;
	oe.schema = &ctx.out;
	oe.data[0] = o;
	pf_decode_image_fn(ctx.state, &ie, &oe, &e);
	free(o);
	free(img);
	ctx.free_state(ctx.state);
	return 0;
}
