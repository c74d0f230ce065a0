/*
 * fuzz_serve_json - pipe-serve's request path on arbitrary bytes: the body
 * parsers (TF Serving :predict and KServe v2 /infer with binary tensors,
 * tools/serve_json.c), then the parsed rows through a pf_batcher (an
 * identity compute: every row must come back as it went in) and the
 * answer's encoding.  The first byte picks the API and the model's input
 * width, the next two the v2 JSON part's length.  Must never crash, read
 * out of bounds, allocate without bound, or lose a row.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/serve.h"
#include "pf_batcher.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int identity(void *ctx, pf_batch *b, pf_error *err)
{
	size_t row = *(const size_t *)ctx;
	memcpy(b->out, b->in, (size_t)b->padded_rows * row);
	return 0;
}

static pf_batcher *batcher[3];
static size_t row_bytes[3];
static const int dims[3] = { 1, 4, 16 };

static pf_batcher *get_batcher(int d)
{
	if (!batcher[d]) {
		pf_batcher_opts o = { 0 };
		row_bytes[d] = (size_t)dims[d] * sizeof(float);
		o.in_bytes = o.out_bytes = row_bytes[d];
		o.compute = identity;
		o.ctx = &row_bytes[d];
		o.max_batch_size = 8;
		o.allowed_batch_sizes[0] = 8;
		o.n_allowed = 1;
		if (pf_batcher_new(&batcher[d], &o, NULL) < 0)
			abort();
	}
	return batcher[d];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	int v2 = data[0] & 1, d = (data[0] >> 1) % 3, dim = dims[d];
	size_t jl = (size_t)data[1] | (size_t)data[2] << 8;
	const char *body = (const char *)data + 3;
	size -= 3;
	if (jl == 0 || jl > size)
		jl = size;
	serve_input in;
	char msg[512];
	int st = v2 ? serve_parse_v2(body, size, jl, dim, 8, &in, msg, sizeof(msg))
		    : serve_parse_tf(body, size, dim, 8, &in, msg, sizeof(msg));
	if (st != 200) {
		if (!msg[0])
			abort();   /* every refusal says why */
		return 0;
	}
	if (in.rows < 1 || in.rows > 8 || !in.x)
		abort();
	float *out = malloc((size_t)in.rows * dim * sizeof(float));
	if (!out)
		abort();
	pf_batch_req r = { .in = in.x, .out = out, .rows = in.rows };
	if (pf_batcher_run(get_batcher(d), &r, NULL) < 0 ||
	    memcmp(out, in.x, (size_t)in.rows * dim * sizeof(float)) != 0)
		abort();   /* a row lost or changed on its way through a batch */
	size_t len, json_len;
	free(serve_reply(&in, out, dim, "m", "1", &len, &json_len));
	free(serve_error_body(msg));
	free(out);
	serve_input_free(&in);
	return 0;
}
