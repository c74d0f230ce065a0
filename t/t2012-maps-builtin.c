/*
 * t2012-maps-builtin: decode, decode_f32 / decode(scale=f32) and normalize
 * give the right typed fields on hand-made records, called directly and
 * inside a pipeline; bad arguments fail at prepare with a clear message.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>

#include "pf_maps.h"
#include "pf_u8_f32.h"
#include "pf_schema.h"
#include "pf_spec.h"
#include "pipefeed.h"
#include "tap.h"

static pf_schema raw_schema(void)
{
	pf_schema s;
	pf_schema_parse(&s, "record: u8[?]", NULL);
	return s;
}

/* prepare name(args) on input `in` (record schema rec); returns rc. */
static int prepare(const char *name, const char *args, const pf_schema *in,
		   const pf_schema *rec, pf_map_ctx *ctx, pf_error *err)
{
	const pf_map_def *d = pf_map_lookup(name);
	memset(ctx, 0, sizeof(*ctx));
	if (!d)
		return pf_error_set(err, PF_EINVAL, "%s not registered", name);
	ctx->in = in;
	ctx->record = rec;
	ctx->args = args;
	ctx->user = d->user;
	return d->prepare(ctx, err);
}

static int call(const char *name, pf_map_ctx *ctx, const pf_elem *in, pf_elem *out,
		pf_error *err)
{
	const pf_map_def *d = pf_map_lookup(name);
	return d->fn(ctx->state ? ctx->state : ctx->user, in, out, err);
}

static void done(pf_map_ctx *ctx)
{
	if (ctx->free_state)
		ctx->free_state(ctx->state);
}

static int near(double a, double b)
{
	return fabs(a - b) < 1e-6;
}

int main(void)
{
	pf_error err = { 0 };
	pf_schema raw = raw_schema(), rec, in2;
	pf_map_ctx ctx;
	char txt[256];

	ok(pf_maps_init(&err) == 0 && pf_map_lookup("decode") && pf_map_lookup("decode_f32") &&
	   pf_map_lookup("normalize"), "built-ins are registered");
	ok(pf_maps_init(&err) == 0, "pf_maps_init is idempotent");

	/* image: u8[2,3], label: u8  -- one record, 7 bytes */
	pf_schema_parse(&rec, "image: u8[2,3], label: u8", NULL);
	unsigned char r1[7] = { 0, 255, 51, 128, 1, 254, 9 };
	pf_elem in = { 0 }, out = { 0 };
	in.schema = &raw;
	in.data[0] = r1;
	in.nitems[0] = 7;
	in.var_len[0] = 7;

	/* decode_f32 */
	ok(prepare("decode_f32", "", &raw, &rec, &ctx, &err) == 0, "decode_f32: prepare");
	pf_schema_format(&ctx.out, txt, sizeof(txt));
	is_str(txt, "image: f32[2,3], label: i32", "decode_f32: image -> f32, label -> i32");
	float img[6];
	int32_t lab = -1;
	out.schema = &ctx.out;
	out.data[0] = img;
	out.data[1] = &lab;
	ok(call("decode_f32", &ctx, &in, &out, &err) == 0, "decode_f32: call");
	ok(img[0] == 0.0f && img[1] == 1.0f && near(img[2], 0.2) && near(img[3], 128.0 / 255) &&
	   near(img[4], 1.0 / 255) && near(img[5], 254.0 / 255), "decode_f32: pixels / 255 in [0,1]");
	is_int(lab, 9, "decode_f32: label 9 as i32");
	done(&ctx);

	/* every byte value, through each implementation this CPU has (avx2:
	 * FMA-corrected multiply; sse2: divide; table), on 32-byte aligned,
	 * 16-byte aligned and misaligned output, with a tail of 4: the very
	 * floats (float)v / 255.0f gives */
	{
		pf_schema rec2;
		pf_schema_parse(&rec2, "image: u8[260], label: u8", NULL);
		unsigned char r2[261];
		for (int v = 0; v < 260; v++)
			r2[v] = (unsigned char)(v < 256 ? v : 255 - v);
		r2[260] = 3;
		pf_elem in2e = { 0 };
		in2e.schema = &raw;
		in2e.data[0] = r2;
		in2e.nitems[0] = 261;
		in2e.var_len[0] = 261;
		static float big[272] __attribute__((aligned(32)));
		static const char *const impls[] = { "avx2", "sse2", "table" };
		int tried = 0;
		for (int m = 0; m < 3; m++) {
			if (pf_u8_to_f32_use(impls[m])) {
				char why[64];
				snprintf(why, sizeof(why), "decode_f32 %s: this CPU lacks it", impls[m]);
				skip(4, why);
				continue;
			}
			tried++;
			is_str(pf_u8_to_f32_impl(), impls[m], "decode_f32 uses %s when told to", impls[m]);
			static const int mis[] = { 0, 4, 1 };
			int exact = 1, ran = 1;
			for (int a = 0; a < 3; a++) {
				float *dst = big + mis[a];  /* 32-aligned, 16-aligned, 4 bytes off */
				memset(big, 0xff, sizeof(big));
				ran &= prepare("decode_f32", "", &raw, &rec2, &ctx, &err) == 0 &&
				       (out.schema = &ctx.out, out.data[0] = dst, out.data[1] = &lab,
					call("decode_f32", &ctx, &in2e, &out, &err) == 0);
				for (int v = 0; v < 260; v++) {
					float want = (float)r2[v] / 255.0f;
					exact &= memcmp(&dst[v], &want, sizeof(float)) == 0;
				}
				/* nothing written past the end */
				exact &= ((uint32_t *)big)[mis[a] + 260] == 0xffffffffu;
				done(&ctx);
			}
			ok(ran, "decode_f32 (%s) of 260 pixels on 3 alignments", impls[m]);
			ok(exact, "%s: every byte value gives (float)v / 255.0f bit for bit, at every alignment",
			   impls[m]);
			int hot = 1; /* decode_image's plain-store variant: the same floats */
			for (int a = 0; a < 3; a++) {
				float *dst = big + mis[a];
				memset(big, 0xff, sizeof(big));
				pf_u8_to_f32_hot(dst, r2, 260);
				for (int v = 0; v < 260; v++) {
					float want = (float)r2[v] / 255.0f;
					hot &= memcmp(&dst[v], &want, sizeof(float)) == 0;
				}
				hot &= ((uint32_t *)big)[mis[a] + 260] == 0xffffffffu;
			}
			ok(hot, "%s: pf_u8_to_f32_hot gives the same floats, at every alignment", impls[m]);
		}
		ok(tried >= 1 && pf_u8_to_f32_use(NULL) == 0, "the best implementation is back in use (%s)",
		   pf_u8_to_f32_impl());
	}

	/* decode(scale=f32) is the same function */
	ok(prepare("decode", "scale=f32", &raw, &rec, &ctx, &err) == 0, "decode(scale=f32): prepare");
	pf_schema_format(&ctx.out, txt, sizeof(txt));
	is_str(txt, "image: f32[2,3], label: i32", "decode(scale=f32): same schema as decode_f32");
	done(&ctx);

	/* decode keeps dtypes */
	ok(prepare("decode", "", &raw, &rec, &ctx, &err) == 0, "decode: prepare");
	pf_schema_format(&ctx.out, txt, sizeof(txt));
	is_str(txt, "image: u8[2,3], label: u8", "decode: dtypes kept");
	unsigned char img8[6], lab8 = 0;
	out.schema = &ctx.out;
	out.data[0] = img8;
	out.data[1] = &lab8;
	ok(call("decode", &ctx, &in, &out, &err) == 0 && !memcmp(img8, r1, 6) && lab8 == 9,
	   "decode: bytes copied as they are");
	/* a short record is an error, not a read past the end */
	in.nitems[0] = 6;
	pf_error_clear(&err);
	ok(call("decode", &ctx, &in, &out, &err) < 0, "decode: a short record fails");
	/* and a long one (the fixed-size split is precomputed: the length
	 * is still checked) */
	unsigned char r1x[8] = { 0, 255, 51, 128, 1, 254, 9, 7 };
	in.data[0] = r1x;
	in.nitems[0] = 8;
	pf_error_clear(&err);
	ok(call("decode", &ctx, &in, &out, &err) < 0 && strstr(err.msg, "record of 8 bytes"),
	   "decode: a long record fails, naming its size: %s", err.msg);
	in.data[0] = r1;
	in.nitems[0] = 7;
	done(&ctx);

	/* multi-byte labels: u16 and a too-large i64 */
	pf_schema r16;
	pf_schema_parse(&r16, "x: u8[1], a: u16, b: i64", NULL);
	unsigned char rb[11] = { 7, 0x40, 0x9c, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	pf_elem in16 = { 0 };
	in16.schema = &raw;
	in16.data[0] = rb;
	in16.nitems[0] = 11;
	ok(prepare("decode_f32", "", &raw, &r16, &ctx, &err) == 0, "decode_f32 on u16/i64: prepare");
	float x;
	int32_t a = 0, b = 0;
	out.schema = &ctx.out;
	out.data[0] = &x;
	out.data[1] = &a;
	out.data[2] = &b;
	ok(call("decode_f32", &ctx, &in16, &out, &err) == 0 && a == 40000 && b == -2 &&
	   near(x, 7.0 / 255), "decode_f32: u16 40000 and i64 -2 read little-endian into i32");
	rb[10] = 0x7f; /* b = INT64_MAX - 1 */
	pf_error_clear(&err);
	ok(call("decode_f32", &ctx, &in16, &out, &err) == PF_EMAP, "decode_f32: an i64 beyond i32 fails");
	like(err.msg, "field b", "  message names the field");
	done(&ctx);

	/* decode's errors */
	pf_error_clear(&err);
	ok(prepare("decode", "scale=f16", &raw, &rec, &ctx, &err) == PF_EINVAL, "decode(scale=f16) refused");
	like(err.msg, "scale must be f32 or none", "  message says what is allowed");
	pf_error_clear(&err);
	ok(prepare("decode", "scal=f32", &raw, &rec, &ctx, &err) == PF_EINVAL, "decode: unknown argument refused");
	like(err.msg, "unknown argument 'scal'", "  message names it");
	pf_error_clear(&err);
	ok(prepare("decode", "", &rec, &rec, &ctx, &err) == PF_EINVAL, "decode on decoded input refused");
	pf_schema none = { 0 };
	pf_error_clear(&err);
	ok(prepare("decode", "", &raw, &none, &ctx, &err) == PF_EINVAL, "decode without a record schema refused");
	like(err.msg, "no record schema", "  message says so");

	/* normalize */
	pf_schema_parse(&in2, "image: f32[2,2], label: i32", NULL);
	ok(prepare("normalize", "mean=0.5, std=0.25", &in2, NULL, &ctx, &err) == 0, "normalize: prepare");
	float xi[4] = { 0, 0.5f, 1, 0.25f }, yo[4];
	int32_t li = 3, lo = 0;
	pf_elem en = { 0 }, eo = { 0 };
	en.schema = &in2;
	en.data[0] = xi;
	en.nitems[0] = 4;
	en.data[1] = &li;
	en.nitems[1] = 1;
	eo.schema = &ctx.out;
	eo.data[0] = yo;
	eo.data[1] = &lo;
	ok(call("normalize", &ctx, &en, &eo, &err) == 0 && near(yo[0], -2) && near(yo[1], 0) &&
	   near(yo[2], 2) && near(yo[3], -1) && lo == 3,
	   "normalize: (x - 0.5) / 0.25 on the f32 field, label copied");
	done(&ctx);

	pf_schema rgb;
	pf_schema_parse(&rgb, "pix: f32[2,3]", NULL);
	ok(prepare("normalize", "mean=[0.1, 0.2, 0.3], std=[1, 2, 4]", &rgb, NULL, &ctx, &err) == 0,
	   "normalize per channel: prepare");
	float p6[6] = { 1, 1, 1, 0.1f, 0.2f, 0.3f }, q6[6];
	en.schema = &rgb;
	en.data[0] = p6;
	en.nitems[0] = 6;
	eo.schema = &ctx.out;
	eo.data[0] = q6;
	ok(call("normalize", &ctx, &en, &eo, &err) == 0 && near(q6[0], 0.9) && near(q6[1], 0.4) &&
	   near(q6[2], 0.175) && near(q6[3], 0) && near(q6[4], 0) && near(q6[5], 0),
	   "normalize per channel: channel = last dimension");
	done(&ctx);

	pf_error_clear(&err);
	ok(prepare("normalize", "mean=[0.1, 0.2], std=1", &rgb, NULL, &ctx, &err) == PF_EINVAL,
	   "normalize: 2 means for 3 channels refused");
	like(err.msg, "3 channels", "  message names the channel count");
	pf_error_clear(&err);
	ok(prepare("normalize", "mean=0, std=0", &rgb, NULL, &ctx, &err) == PF_EINVAL, "normalize: std=0 refused");
	pf_error_clear(&err);
	ok(prepare("normalize", "mean=0.5", &rgb, NULL, &ctx, &err) == PF_EINVAL, "normalize: std missing refused");
	pf_error_clear(&err);
	ok(prepare("normalize", "mean=0, std=1, field=image", &rec, NULL, &ctx, &err) == PF_EINVAL,
	   "normalize on a u8 field refused");
	like(err.msg, "not f32", "  message says decode it first");
	pf_error_clear(&err);
	ok(prepare("normalize", "mean=0, std=1, field=nope", &rgb, NULL, &ctx, &err) == PF_EINVAL,
	   "normalize: unknown field refused");
	pf_error_clear(&err);
	ok(prepare("normalize", "mean=0,, std=1", &rgb, NULL, &ctx, &err) == PF_EINVAL,
	   "normalize: malformed argument text refused");

	/* In a pipeline: records in memory, the rest as a spec. */
	{
		static unsigned char recs[5][5];
		const void *rp[5];
		size_t lens[5];
		pf_schema rs;
		pf_pipeline *p;
		pf_elem e;
		pf_iter *it = NULL;
		int nb = 0, good = 1, rc;

		pf_schema_parse(&rs, "image: u8[2,2], label: u8", NULL);
		for (int i = 0; i < 5; i++) {
			for (int j = 0; j < 4; j++)
				recs[i][j] = (unsigned char)(i * 50 + j);
			recs[i][4] = (unsigned char)(i + 1);
			rp[i] = recs[i];
			lens[i] = 5;
		}
		pf_error_clear(&err);
		rc = pf_pipeline_new(&p, NULL, &err);
		rc = rc ? rc : pf_records(p, rp, lens, 5, &rs, &err);
		rc = rc ? rc : pf_spec_apply(p, "map(decode_f32, par=2) | map(normalize(mean=0.5, std=0.5)) | batch(2)", &err);
		rc = rc ? rc : pf_iter_new(&it, p, &err);
		ok(rc == 0, "records + spec \"map(decode_f32, par=2) | map(normalize(...)) | batch(2)\" starts");
		if (rc)
			diag("%s", err.msg);
		while (rc == 0 && (rc = pf_iter_next(it, &e, &err)) == 0) {
			const float *im = e.data[0];
			const int32_t *lb = e.data[1];
			for (uint32_t k = 0; k < e.batch; k++) {
				int i = nb * 2 + (int)k;
				good &= lb[k] == i + 1;
				for (int j = 0; j < 4; j++)
					good &= near(im[k * 4 + j], ((i * 50 + j) / 255.0 - 0.5) / 0.5);
			}
			good &= e.schema->fields[0].dtype == PF_F32 && e.schema->fields[1].dtype == PF_I32;
			nb++;
			pf_elem_release(&e);
		}
		ok(rc == PF_END && nb == 3 && good, "3 batches of f32 images in [-1,1] and i32 labels");
		if (rc != PF_END)
			diag("%s", err.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}

	/* Variable-length field through decode_f32: pf_elem_alloc path. */
	{
		static unsigned char v0[] = { 3, 0, 0, 0, 10, 20, 255, 1 };
		static unsigned char v1[] = { 0, 0, 0, 0, 2 };
		const void *rp[2] = { v0, v1 };
		size_t lens[2] = { sizeof(v0), sizeof(v1) };
		pf_schema rs;
		pf_pipeline *p;
		pf_iter *it = NULL;
		pf_elem e;
		int n = 0, good = 1, rc;

		pf_schema_parse(&rs, "tokens: u8[?], label: u8", NULL);
		pf_error_clear(&err);
		rc = pf_pipeline_new(&p, NULL, &err);
		rc = rc ? rc : pf_records(p, rp, lens, 2, &rs, &err);
		rc = rc ? rc : pf_spec_apply(p, "map(decode(scale=f32, max_bytes=4096))", &err);
		rc = rc ? rc : pf_iter_new(&it, p, &err);
		ok(rc == 0, "variable-length record through decode(scale=f32): starts");
		if (rc)
			diag("%s", err.msg);
		while (rc == 0 && (rc = pf_iter_next(it, &e, &err)) == 0) {
			const float *t = e.data[0];
			const int32_t *l = e.data[1];
			if (n == 0)
				good &= e.var_len[0] == 3 && near(t[0], 10 / 255.0) && near(t[2], 1.0) && *l == 1;
			else
				good &= e.var_len[0] == 0 && *l == 2;
			n++;
			pf_elem_release(&e);
		}
		ok(rc == PF_END && n == 2 && good, "var field: lengths 3 and 0, values scaled, labels i32");
		if (rc != PF_END)
			diag("%s", err.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	return done_testing();
}
