/*
 * serve_json.c - request bodies into rows of floats, answers into bodies,
 * through jansson (contracts in serve.h).  Every limit is checked before
 * memory is taken: a body can ask for at most max_rows * dim floats.
 */
#include "config.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

#define MAX_DEPTH 8

void serve_input_free(serve_input *in)
{
	free(in->x);
	in->x = NULL;
}

/* Count the numbers of a nested array (NULL json: not an array of
 * numbers); -1 when something else is inside or deeper than MAX_DEPTH. */
static long long count_numbers(const json_t *v, int depth)
{
	if (json_is_number(v) || json_is_boolean(v))
		return 1;
	if (!json_is_array(v) || depth >= MAX_DEPTH)
		return -1;
	long long n = 0;
	size_t i;
	const json_t *e;
	json_array_foreach(v, i, e) {
		long long k = count_numbers(e, depth + 1);
		if (k < 0)
			return -1;
		n += k;
	}
	return n;
}

/* Write the numbers of v (checked by count_numbers) at *dst, advancing. */
static void put_numbers(const json_t *v, float **dst)
{
	if (json_is_number(v)) {
		*(*dst)++ = (float)json_number_value(v);
		return;
	}
	if (json_is_boolean(v)) {
		*(*dst)++ = json_is_true(v) ? 1.0f : 0.0f;
		return;
	}
	size_t i;
	const json_t *e;
	json_array_foreach(v, i, e)
		put_numbers(e, dst);
}

static int fail(int status, char *msg, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(int status, char *msg, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, cap, fmt, ap);
	va_end(ap);
	return status;
}

static json_t *load(const char *body, size_t len, char *msg, size_t cap,
		    int *status)
{
	json_error_t je;
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		*status = fail(400, msg, cap, "malformed JSON at line %d column %d: %s",
			       je.line, je.column, je.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		*status = fail(400, msg, cap, "the body must be a JSON object");
		return NULL;
	}
	return root;
}

/* The value of a named input: v itself, or {"NAME": value} with one key. */
static const json_t *unwrap(const json_t *v, serve_input *in)
{
	if (!json_is_object(v) || json_object_size(v) != 1)
		return v;
	const char *k;
	const json_t *e;
	json_object_foreach((json_t *)v, k, e) {
		snprintf(in->in_name, sizeof(in->in_name), "%s", k);
		return e;
	}
	return v;
}

static int tf_instances(const json_t *inst, int dim, int max_rows,
			serve_input *in, char *msg, size_t cap)
{
	if (!json_is_array(inst) || json_array_size(inst) == 0)
		return fail(400, msg, cap, "instances: expected a non-empty array");
	size_t n = json_array_size(inst);
	if (n > (size_t)max_rows)
		return fail(413, msg, cap, "instances: %zu instances, the quota is %d",
			    n, max_rows);
	for (size_t i = 0; i < n; i++) {
		const json_t *v = unwrap(json_array_get(inst, i), in);
		long long k = count_numbers(v, 0);
		if (k != dim)
			return fail(400, msg, cap,
				    k < 0 ? "instances[%zu]: expected (nested) arrays of numbers"
					  : "instances[%zu]: %lld numbers, the model takes %d",
				    i, k, dim);
	}
	in->x = malloc(n * (size_t)dim * sizeof(float));
	if (!in->x)
		return fail(503, msg, cap, "out of memory");
	float *p = in->x;
	for (size_t i = 0; i < n; i++)
		put_numbers(unwrap(json_array_get(inst, i), in), &p);
	in->rows = (int)n;
	in->api = API_TF_INSTANCES;
	return 200;
}

static int tf_inputs(const json_t *v, int dim, int max_rows, serve_input *in,
		     char *msg, size_t cap)
{
	v = unwrap(v, in);
	long long k = count_numbers(v, 0);
	if (k <= 0 || k % dim)
		return fail(400, msg, cap,
			    k < 0 ? "inputs: expected (nested) arrays of numbers"
				  : "inputs: %lld numbers, not rows of %d", k, dim);
	if (k / dim > max_rows)
		return fail(413, msg, cap, "inputs: %lld rows, the quota is %d", k / dim,
			    max_rows);
	in->x = malloc((size_t)k * sizeof(float));
	if (!in->x)
		return fail(503, msg, cap, "out of memory");
	float *p = in->x;
	put_numbers(v, &p);
	in->rows = (int)(k / dim);
	in->api = API_TF_INPUTS;
	return 200;
}

int serve_parse_tf(const char *body, size_t len, int dim, int max_rows,
		   serve_input *in, char *msg, size_t cap)
{
	memset(in, 0, sizeof(*in));
	int status;
	json_t *root = load(body, len, msg, cap, &status);
	if (!root)
		return status;
	const json_t *inst = json_object_get(root, "instances");
	const json_t *inputs = json_object_get(root, "inputs");
	if (inst && inputs)
		status = fail(400, msg, cap, "give instances or inputs, not both");
	else if (inst)
		status = tf_instances(inst, dim, max_rows, in, msg, cap);
	else if (inputs)
		status = tf_inputs(inputs, dim, max_rows, in, msg, cap);
	else
		status = fail(400, msg, cap, "missing 'instances' or 'inputs'");
	json_decref(root);
	if (status != 200)
		serve_input_free(in);
	return status;
}

/* ---- KServe v2 ------------------------------------------------------------ */

static int dtype_size(const char *t)
{
	static const struct { const char *n; int s; } T[] = {
		{ "FP32", 4 }, { "FP64", 8 }, { "INT8", 1 }, { "INT16", 2 },
		{ "INT32", 4 }, { "INT64", 8 }, { "UINT8", 1 }, { "UINT16", 2 },
		{ "UINT32", 4 }, { "UINT64", 8 }, { "BOOL", 1 },
	};
	for (size_t i = 0; i < sizeof(T) / sizeof(T[0]); i++)
		if (!strcmp(t, T[i].n))
			return T[i].s;
	return 0;
}

/* Convert n little-endian values of type t at p into floats.  The type is
 * resolved once, not per element, and FP32 (what clients send) is one
 * copy: this runs for every binary request. */
static void from_binary(const char *t, const unsigned char *p, size_t n, float *x)
{
	enum { F32, F64, I8, U8, I16, U16, I32, U32, I64, U64 } k;
	if (!strcmp(t, "FP32")) {
		memcpy(x, p, n * sizeof(float));
		return;
	}
	k = !strcmp(t, "FP64") ? F64 : !strcmp(t, "INT8") ? I8
	    : !strcmp(t, "UINT8") || !strcmp(t, "BOOL") ? U8
	    : !strcmp(t, "INT16") ? I16 : !strcmp(t, "UINT16") ? U16
	    : !strcmp(t, "INT32") ? I32 : !strcmp(t, "UINT32") ? U32
	    : !strcmp(t, "INT64") ? I64 : U64;
	for (size_t i = 0; i < n; i++) {
		double v = 0;
		switch (k) {
		case F64: memcpy(&v, p + 8 * i, 8); break;
		case I8: v = (int8_t)p[i]; break;
		case U8: v = p[i]; break;
		case I16: { int16_t a; memcpy(&a, p + 2 * i, 2); v = a; break; }
		case U16: { uint16_t a; memcpy(&a, p + 2 * i, 2); v = a; break; }
		case I32: { int32_t a; memcpy(&a, p + 4 * i, 4); v = a; break; }
		case U32: { uint32_t a; memcpy(&a, p + 4 * i, 4); v = a; break; }
		case I64: { int64_t a; memcpy(&a, p + 8 * i, 8); v = (double)a; break; }
		default: { uint64_t a; memcpy(&a, p + 8 * i, 8); v = (double)a; break; }
		}
		x[i] = (float)v;
	}
}

/* rows from the shape: product = rows * dim, the first dimension rows. */
static int v2_shape(const json_t *shape, int dim, long long *rows, char *msg,
		    size_t cap)
{
	if (!json_is_array(shape) || json_array_size(shape) < 1 ||
	    json_array_size(shape) > MAX_DEPTH)
		return fail(400, msg, cap, "inputs[0].shape: expected 1 to %d integers",
			    MAX_DEPTH);
	long long prod = 1;
	size_t i;
	const json_t *e;
	json_array_foreach(shape, i, e) {
		if (!json_is_integer(e) || json_integer_value(e) < 1 ||
		    json_integer_value(e) > (1 << 30))
			return fail(400, msg, cap, "inputs[0].shape[%zu]: expected a positive integer", i);
		prod *= json_integer_value(e);
		if (prod > (1LL << 40))
			return fail(413, msg, cap, "inputs[0].shape: too large");
	}
	if (prod % dim)
		return fail(400, msg, cap, "inputs[0].shape: %lld values, not rows of %d",
			    prod, dim);
	*rows = prod / dim;
	return 200;
}

static void v2_params(const json_t *root, serve_input *in)
{
	const json_t *p = json_object_get(root, "parameters");
	const json_t *v;
	if ((v = json_object_get(p, "priority")) && json_is_integer(v) &&
	    json_integer_value(v) > 0 && json_integer_value(v) < 1000)
		in->priority = (int)json_integer_value(v);
	if ((v = json_object_get(p, "timeout")) && json_is_integer(v) &&
	    json_integer_value(v) > 0)
		in->timeout_us = (uint64_t)json_integer_value(v);
	if ((v = json_object_get(p, "binary_data_output")) && json_is_true(v))
		in->binary_out = 1;
	const json_t *outs = json_object_get(root, "outputs"), *o;
	size_t i;
	json_array_foreach(outs, i, o) {
		v = json_object_get(json_object_get(o, "parameters"), "binary_data");
		if (v && json_is_boolean(v))
			in->binary_out = json_is_true(v);
	}
	const json_t *id = json_object_get(root, "id");
	if (json_is_string(id))
		snprintf(in->id, sizeof(in->id), "%s", json_string_value(id));
}

static int v2_tensor(const json_t *t, const char *body, size_t len,
		     size_t json_len, int dim, int max_rows, serve_input *in,
		     char *msg, size_t cap)
{
	const json_t *name = json_object_get(t, "name");
	const json_t *dt = json_object_get(t, "datatype");
	if (!json_is_string(name) || !json_is_string(dt))
		return fail(400, msg, cap, "inputs[0]: needs a name and a datatype");
	snprintf(in->in_name, sizeof(in->in_name), "%s", json_string_value(name));
	const char *type = json_string_value(dt);
	int esz = dtype_size(type);
	if (!esz)
		return fail(400, msg, cap, "inputs[0].datatype: '%.32s' (FP32, FP64, INTn, UINTn or BOOL)",
			    type);
	long long rows = 0;
	int st = v2_shape(json_object_get(t, "shape"), dim, &rows, msg, cap);
	if (st != 200)
		return st;
	if (rows > max_rows)
		return fail(413, msg, cap, "inputs[0]: %lld rows, the quota is %d", rows,
			    max_rows);
	size_t n = (size_t)rows * dim;
	const json_t *bsz = json_object_get(json_object_get(t, "parameters"),
					    "binary_data_size");
	const json_t *data = json_object_get(t, "data");
	if (bsz) {
		if (!json_is_integer(bsz) ||
		    (size_t)json_integer_value(bsz) != n * (size_t)esz)
			return fail(400, msg, cap, "inputs[0].parameters.binary_data_size: expected %zu bytes",
				    n * (size_t)esz);
		if (len - json_len < n * (size_t)esz)
			return fail(400, msg, cap, "inputs[0]: binary data of %zu bytes, the body has %zu after the JSON",
				    n * (size_t)esz, len - json_len);
	} else {
		long long k = count_numbers(data, 0);
		if (k != (long long)n)
			return fail(400, msg, cap,
				    k < 0 ? "inputs[0].data: expected (nested) arrays of numbers"
					  : "inputs[0].data: %lld values, the shape says %zu",
				    k, n);
	}
	in->x = malloc(n * sizeof(float));
	if (!in->x)
		return fail(503, msg, cap, "out of memory");
	if (bsz) {
		from_binary(type, (const unsigned char *)body + json_len, n, in->x);
	} else {
		float *p = in->x;
		put_numbers(data, &p);
	}
	in->rows = (int)rows;
	return 200;
}

int serve_parse_v2(const char *body, size_t len, size_t json_len, int dim,
		   int max_rows, serve_input *in, char *msg, size_t cap)
{
	memset(in, 0, sizeof(*in));
	in->api = API_V2;
	if (json_len > len)
		return fail(400, msg, cap, "Inference-Header-Content-Length %zu exceeds the body (%zu bytes)",
			    json_len, len);
	int status;
	json_t *root = load(body, json_len, msg, cap, &status);
	if (!root)
		return status;
	const json_t *inputs = json_object_get(root, "inputs");
	if (!json_is_array(inputs) || json_array_size(inputs) != 1)
		status = fail(400, msg, cap, "inputs: expected an array of one tensor (the model has one input)");
	else
		status = v2_tensor(json_array_get(inputs, 0), body, len, json_len, dim,
				   max_rows, in, msg, cap);
	if (status == 200)
		v2_params(root, in);
	json_decref(root);
	if (status != 200)
		serve_input_free(in);
	return status;
}

/* ---- answers -------------------------------------------------------------- */

static json_t *rows_json(const float *out, int rows, int odim)
{
	json_t *a = json_array();
	for (int r = 0; a && r < rows; r++) {
		json_t *row = json_array();
		for (int c = 0; row && c < odim; c++)
			json_array_append_new(row, json_real(out[r * odim + c]));
		json_array_append_new(a, row);
	}
	return a;
}

static json_t *v2_reply(const serve_input *in, const float *out, int odim,
			const char *model, const char *version)
{
	json_t *o = json_pack("{s:s, s:s, s:[i, i]}", "name", "logits",
			      "datatype", "FP32", "shape", in->rows, odim);
	if (!o)
		return NULL;
	if (in->binary_out) {
		json_object_set_new(o, "parameters",
				    json_pack("{s:I}", "binary_data_size",
					      (json_int_t)in->rows * odim * 4));
	} else {
		json_t *d = json_array();
		for (int i = 0; d && i < in->rows * odim; i++)
			json_array_append_new(d, json_real(out[i]));
		json_object_set_new(o, "data", d);
	}
	json_t *r = json_pack("{s:s, s:s, s:[o]}", "model_name", model,
			      "model_version", version, "outputs", o);
	if (r && in->id[0])
		json_object_set_new(r, "id", json_string(in->id));
	return r;
}

/* A name that needs no escaping in a JSON string. */
static int plain(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return 0;
	return 1;
}

/* The binary v2 answer without building a JSON tree: its header is the
 * one v2_reply makes, printed directly (what every binary request costs:
 * jansson's pack and dump were a tenth of the server's CPU at 64
 * clients).  Only when nothing needs escaping (no id, plain names); NULL
 * otherwise, and the caller takes the general path. */
static char *v2_binary_fast(const serve_input *in, const float *out, int odim,
			    const char *model, const char *version, size_t *len,
			    size_t *json_len)
{
	if (in->id[0] || !plain(model) || !plain(version) || strlen(model) > 200 ||
	    strlen(version) > 40)
		return NULL;
	size_t bin = (size_t)in->rows * odim * sizeof(float);
	char *b = malloc(400 + bin);
	if (!b)
		return NULL;
	int n = snprintf(b, 400, "{\"model_name\":\"%s\",\"model_version\":\"%s\","
			 "\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP32\","
			 "\"shape\":[%d,%d],\"parameters\":{\"binary_data_size\":%zu}}]}",
			 model, version, in->rows, odim, bin);
	if (n < 0 || n >= 400) {
		free(b);
		return NULL;
	}
	memcpy(b + n, out, bin);
	*len = (size_t)n + bin;
	*json_len = (size_t)n;
	return b;
}

char *serve_reply(const serve_input *in, const float *out, int odim,
		  const char *model, const char *version, size_t *len,
		  size_t *json_len)
{
	json_t *r;
	*json_len = 0;
	if (in->api == API_V2 && in->binary_out) {
		char *b = v2_binary_fast(in, out, odim, model, version, len, json_len);
		if (b)
			return b;
	}
	if (in->api == API_V2)
		r = v2_reply(in, out, odim, model, version);
	else
		r = json_pack("{s:o}", in->api == API_TF_INPUTS ? "outputs" : "predictions",
			      rows_json(out, in->rows, odim));
	if (!r)
		return NULL;
	char *s = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(9));
	json_decref(r);
	if (!s)
		return NULL;
	size_t sl = strlen(s);
	*len = sl;
	if (in->api != API_V2 || !in->binary_out)
		return s;
	size_t bin = (size_t)in->rows * odim * sizeof(float);
	char *b = realloc(s, sl + bin);
	if (!b) {
		free(s);
		return NULL;
	}
	memcpy(b + sl, out, bin);
	*len = sl + bin;
	*json_len = sl;
	return b;
}

char *serve_error_body(const char *msg)
{
	json_t *r = json_pack("{s:s}", "error", msg);
	char *s = r ? json_dumps(r, JSON_COMPACT) : NULL;
	json_decref(r);
	return s;
}
