/*
 * serve.h - pipe-serve's parts, and how they depend on each other:
 *
 *   serve_json.c   request bodies (TF Serving REST, KServe v2 with the
 *                  binary tensor extension) into rows of floats, and
 *                  answers back into bodies; jansson only, no HTTP (the
 *                  fuzz target fuzz/fuzz_serve_json links it alone)
 *   serve_http.c   libmicrohttpd: routes, trace ids, quotas, the access
 *                  log, /metrics; a request's rows go to the model's
 *                  pf_batcher and the connection is suspended until its
 *                  done callback resumes it
 *   pipe-serve.c   options, the model directory, signals (SIGTERM drains)
 */
#ifndef PF_SERVE_TOOL_H
#define PF_SERVE_TOOL_H

#include <stddef.h>
#include <stdint.h>

enum serve_api { API_TF_INSTANCES = 1, API_TF_INPUTS, API_V2 };

/* A parsed inference request. */
typedef struct serve_input {
	int api;
	float *x;               /* rows * dim, malloc'd (serve_input_free) */
	int rows;
	char id[128];           /* v2 "id" (echoed) */
	char in_name[64];       /* v2 input name / TF named input */
	int priority;           /* v2 parameters.priority (0 = default) */
	uint64_t timeout_us;    /* v2 parameters.timeout */
	int binary_out;         /* v2: answer with the binary extension */
} serve_input;

void serve_input_free(serve_input *in);

/*
 * Parse a TF Serving :predict body ("instances" rows or "inputs" columns)
 * of rows of dim numbers, at most max_rows rows.  Returns an HTTP status:
 * 200 with *in filled, or 400 / 413 with a message in msg naming the
 * field ("instances[3]: 783 numbers, the model takes 784").
 */
int serve_parse_tf(const char *body, size_t len, int dim, int max_rows,
		   serve_input *in, char *msg, size_t cap);

/*
 * Parse a KServe v2 /infer body.  json_len: the JSON part's length (the
 * Inference-Header-Content-Length header; len when absent); the bytes
 * after it hold binary tensors (binary_data_size parameters).  Datatypes
 * FP32, FP64, INT8..INT64, UINT8..UINT64, BOOL; the shape's product must be
 * rows * dim.  Returns 200 or 400 / 413 as serve_parse_tf.
 */
int serve_parse_v2(const char *body, size_t len, size_t json_len, int dim,
		   int max_rows, serve_input *in, char *msg, size_t cap);

/*
 * The answer body for in (rows x odim logits in out), malloc'd, *len bytes;
 * for a binary v2 answer *json_len is the JSON part's length (0 when all
 * JSON).  NULL when out of memory.
 */
char *serve_reply(const serve_input *in, const float *out, int odim,
		  const char *model, const char *version, size_t *len,
		  size_t *json_len);

/* {"error": msg} (malloc'd, NUL-terminated). */
char *serve_error_body(const char *msg);

#endif /* PF_SERVE_TOOL_H */
