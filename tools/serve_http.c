/*
 * serve_http.c - pipe-serve's HTTP side on libmicrohttpd (a thread pool,
 * each thread on its own epoll set): routes for the TF Serving REST API
 * and the KServe v2 protocol, trace ids, quotas, the access log and
 * /metrics.
 *
 * A request's life: the first call of the access handler makes its conn
 * (trace id, start time); body chunks are appended up to max_body_bytes
 * (beyond: 413, the rest discarded); the last call routes it.  An
 * inference parses the body into rows (serve_json.c: a malformed body
 * fails alone, before it reaches a batch), submits them to the model's
 * batcher and suspends the connection; the batcher's done callback
 * resumes it, and the next handler call answers.  conn->mu orders the
 * suspend against a done that comes first.
 */
#include "config.h"

#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"
#include "serve_http.h"

#define RING 8192
/* the refusal histogram's bounds, seconds: "refused within 1 ms" is a goal */
static const double ref_le[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
				 0.01, 0.025, 0.1, 1.0 };
#define NREF (int)(sizeof(ref_le) / sizeof(ref_le[0]))

struct serve_server {
	serve_cfg cfg;
	serve_slot *slots;
	int nslots;
	struct MHD_Daemon *d;
	atomic_int inflight;
	atomic_int draining;           /* new requests get 503 */
	atomic_uint_fast64_t ids;
	pthread_mutex_t mu;            /* the metrics below */
	uint64_t requests, rows, by_code[6];   /* 1xx .. 5xx */
	uint64_t codes[600];
	uint64_t lat_us[RING];
	uint64_t nlat;
	uint64_t refusal_hist[NREF + 1];  /* 429 / 503 answers by time taken */
	double refusal_s;
};

enum { ST_NEW, ST_WAITING, ST_DONE };

typedef struct conn {
	serve_server *s;
	struct MHD_Connection *c;
	char trace[72], span_out[80];
	int has_traceparent;
	uint64_t t0;
	char *body;
	size_t len, cap;
	int too_big;
	pthread_mutex_t mu;
	int state, suspended, finished;
	serve_model *m;
	serve_input in;
	float *out;
	pf_batch_req req;
	int status;
	serve_slot *slot;           /* the model routed to */
	size_t resp_bytes;
	char method[8], url[200];
} conn;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static int is_hex(const char *p, int n)
{
	for (int i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return 0;
	return 1;
}

/* The trace id: W3C traceparent's trace-id, else X-Request-Id (printable,
 * at most 64 bytes), else a new one. */
static void set_trace(conn *k)
{
	const char *tp = MHD_lookup_connection_value(k->c, MHD_HEADER_KIND, "traceparent");
	const char *rid = MHD_lookup_connection_value(k->c, MHD_HEADER_KIND, "X-Request-Id");
	uint64_t a = mix(atomic_fetch_add(&k->s->ids, 1) ^ now_ns());
	uint64_t b = mix(a ^ 0x9e3779b97f4a7c15ull);
	if (tp && strlen(tp) == 55 && tp[2] == '-' && tp[35] == '-' && tp[52] == '-' &&
	    is_hex(tp, 2) && is_hex(tp + 3, 32) && is_hex(tp + 36, 16) &&
	    is_hex(tp + 53, 2)) {
		memcpy(k->trace, tp + 3, 32);
		k->trace[32] = 0;
		k->has_traceparent = 1;
		snprintf(k->span_out, sizeof(k->span_out), "00-%.32s-%016" PRIx64 "-%.2s",
			 k->trace, a, tp + 53);
		return;
	}
	if (rid && *rid && strlen(rid) <= 64) {
		int good = 1;
		for (const char *p = rid; *p; p++)
			good &= *p > 32 && *p < 127 && *p != '"' && *p != '\\';
		if (good) {
			snprintf(k->trace, sizeof(k->trace), "%s", rid);
			return;
		}
	}
	snprintf(k->trace, sizeof(k->trace), "%016" PRIx64 "%016" PRIx64, a, b);
}

static void count(serve_server *s, int status, int rows, uint64_t lat_us)
{
	pthread_mutex_lock(&s->mu);
	s->requests++;
	s->rows += (uint64_t)rows;
	if (status >= 100 && status < 600) {
		s->codes[status]++;
		s->by_code[status / 100]++;
	}
	if (status == 200 && rows)
		s->lat_us[s->nlat++ % RING] = lat_us;
	if (status == 429 || status == 503) {
		int i = 0;
		while (i < NREF && lat_us > ref_le[i] * 1e6)
			i++;
		s->refusal_hist[i]++;
		s->refusal_s += lat_us / 1e6;
	}
	pthread_mutex_unlock(&s->mu);
}

/* Queue body (malloc'd, taken) with status and the trace headers. */
static enum MHD_Result reply(conn *k, int status, char *body, size_t len,
			     const char *ctype, size_t json_len)
{
	if (!body) {
		status = 500;
		body = strdup("{\"error\":\"out of memory\"}");
		len = body ? strlen(body) : 0;
	}
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, "Content-Type", ctype);
	MHD_add_response_header(r, "X-Request-Id", k->trace);
	if (k->has_traceparent)
		MHD_add_response_header(r, "traceparent", k->span_out);
	if (json_len) {
		char n[32];
		snprintf(n, sizeof(n), "%zu", json_len);
		MHD_add_response_header(r, "Inference-Header-Content-Length", n);
	}
	k->status = status;
	k->resp_bytes = len;
	enum MHD_Result ret = MHD_queue_response(k->c, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_json(conn *k, int status, char *body)
{
	return reply(k, status, body, body ? strlen(body) : 0, "application/json", 0);
}

static enum MHD_Result reply_error(conn *k, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static enum MHD_Result reply_error(conn *k, int status, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return reply_json(k, status, serve_error_body(msg));
}

static char *dupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dupf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* ---- model routes ---------------------------------------------------------- */

typedef struct route {
	char name[128], version[32], label[64];
	const char *rest;
} route;

/* Parse NAME[/versions/V|/labels/L] then the rest (":predict", "/infer",
 * "/metadata", "/ready", ""). */
static int parse_model(const char *p, route *r)
{
	memset(r, 0, sizeof(*r));
	size_t n = strcspn(p, "/:");
	if (n == 0 || n >= sizeof(r->name))
		return -1;
	memcpy(r->name, p, n);
	p += n;
	if (!strncmp(p, "/versions/", 10)) {
		p += 10;
		n = strcspn(p, "/:");
		if (n == 0 || n >= sizeof(r->version))
			return -1;
		memcpy(r->version, p, n);
		p += n;
	} else if (!strncmp(p, "/labels/", 8)) {
		p += 8;
		n = strcspn(p, "/:");
		if (n == 0 || n >= sizeof(r->label))
			return -1;
		memcpy(r->label, p, n);
		p += n;
	}
	r->rest = p;
	return 0;
}

/* The version r names (see serve_acquire_route), held in k->m until the
 * connection ends; NULL with the reason in why (a 404). */
static serve_model *find_model(conn *k, const route *r, char *why, size_t cap)
{
	for (int i = 0; i < k->s->nslots; i++) {
		serve_slot *slot = &k->s->slots[i];
		if (strcmp(slot->name, r->name))
			continue;
		k->slot = slot;
		return k->m = serve_acquire_route(slot, r->version, r->label, why, cap);
	}
	snprintf(why, cap, "model '%s' is not available", r->name);
	return NULL;
}

static void on_done(pf_batch_req *r)
{
	conn *k = r->arg;
	pthread_mutex_lock(&k->mu);
	k->finished = 1;
	if (k->suspended) {
		k->suspended = 0;
		MHD_resume_connection(k->c);
	}
	pthread_mutex_unlock(&k->mu);
}

static enum MHD_Result answer_infer(conn *k)
{
	serve_model *m = k->m;
	if (k->req.status < 0)
		return reply_error(k, k->req.status == PF_ETIMEDOUT ? 504 : 500,
				   "%s", k->req.err.msg);
	size_t len, json_len;
	char *body = serve_reply(&k->in, k->out, m->out_dim, m->name, m->version,
				 &len, &json_len);
	return reply(k, 200, body, len,
		     json_len ? "application/octet-stream" : "application/json",
		     json_len);
}

static enum MHD_Result submit(conn *k, serve_model *m, int api)
{	/* m is k->m, held */
	char msg[512];
	int status;
	const serve_cfg *cfg = &k->s->cfg;
	if (api == API_V2) {
		const char *h = MHD_lookup_connection_value(k->c, MHD_HEADER_KIND,
							    "Inference-Header-Content-Length");
		size_t jl = k->len;
		if (h) {
			char *end;
			unsigned long long v = strtoull(h, &end, 10);
			if (*end || end == h)
				return reply_error(k, 400, "Inference-Header-Content-Length: '%.40s' is not a number", h);
			jl = v > k->len ? k->len + 1 : (size_t)v;
		}
		status = serve_parse_v2(k->body ? k->body : "", k->len, jl, m->in_dim,
					cfg->max_instances, &k->in, msg, sizeof(msg));
	} else {
		status = serve_parse_tf(k->body ? k->body : "", k->len, m->in_dim,
					cfg->max_instances, &k->in, msg, sizeof(msg));
	}
	if (status != 200)
		return reply_error(k, status, "%s", msg);
	k->out = malloc((size_t)k->in.rows * m->out_dim * sizeof(float));
	if (!k->out)
		return reply_error(k, 503, "out of memory");
	int level = k->in.priority ? k->in.priority : cfg->default_priority;
	if (level > cfg->npriorities)
		level = cfg->npriorities;
	k->req = (pf_batch_req){
		.in = k->in.x, .out = k->out, .rows = k->in.rows,
		.priority = level - 1,
		.timeout_us = k->in.timeout_us ? k->in.timeout_us : cfg->request_timeout_us,
		.done = on_done, .arg = k,
	};
	pf_error err = { 0 };
	pthread_mutex_lock(&k->mu);
	int rc = pf_batcher_submit(m->b, &k->req, &err);
	if (rc < 0) {
		pthread_mutex_unlock(&k->mu);
		return reply_error(k, rc == PF_ELIMIT ? 429 : rc == PF_ESTATE ? 503 : 400,
				   "%s", err.msg);
	}
	k->state = ST_WAITING;
	if (!k->finished) {
		k->suspended = 1;
		MHD_suspend_connection(k->c);
		pthread_mutex_unlock(&k->mu);
		return MHD_YES;
	}
	pthread_mutex_unlock(&k->mu);
	k->state = ST_DONE;
	return answer_infer(k);
}

/* One version's element: TF Serving's status (status) or a string. */
static void version_elem(FILE *f, const char *v, int status)
{
	if (status)
		fprintf(f, "{\"version\":\"%s\",\"state\":\"AVAILABLE\","
			"\"status\":{\"error_code\":\"OK\",\"error_message\":\"\"}}", v);
	else
		fprintf(f, "\"%s\"", v);
}

/* The served versions of slot as a JSON list's elements (version_elem);
 * only m's when m.  malloc'd. */
static char *versions_json(serve_slot *slot, const serve_model *m, int status)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	pthread_mutex_lock(&slot->mu);
	int first = 1;
	for (int i = 0; i < slot->nlive; i++) {
		if (m && slot->live[i] != m)
			continue;
		if (!first)
			fputc(',', f);
		version_elem(f, slot->live[i]->version, status);
		first = 0;
	}
	pthread_mutex_unlock(&slot->mu);
	if (m && first)   /* m was retired since routing: itself still */
		version_elem(f, m->version, status);
	fclose(f);
	return out;
}

/* TF Serving's version status: every served version, or m's alone. */
static char *tf_status(serve_slot *slot, const serve_model *m)
{
	char *v = versions_json(slot, m, 1);
	char *s = v ? dupf("{\"model_version_status\":[%s]}", v) : NULL;
	free(v);
	return s;
}

static char *tf_metadata(const serve_model *m)
{
	return dupf("{\"model_spec\":{\"name\":\"%s\",\"signature_name\":\"\",\"version\":\"%s\"},"
		    "\"metadata\":{\"signature_def\":{\"signature_def\":{\"serving_default\":{"
		    "\"inputs\":{\"input\":{\"dtype\":\"DT_FLOAT\",\"tensor_shape\":{\"dim\":[{\"size\":\"-1\",\"name\":\"\"},{\"size\":\"%d\",\"name\":\"\"}],\"unknown_rank\":false},\"name\":\"input\"}},"
		    "\"outputs\":{\"logits\":{\"dtype\":\"DT_FLOAT\",\"tensor_shape\":{\"dim\":[{\"size\":\"-1\",\"name\":\"\"},{\"size\":\"%d\",\"name\":\"\"}],\"unknown_rank\":false},\"name\":\"logits\"}},"
		    "\"method_name\":\"tensorflow/serving/predict\"}}}}}",
		    m->name, m->version, m->in_dim, m->out_dim);
}

/* KServe v2 model metadata: the versions served (m's alone when one). */
static char *v2_metadata(serve_slot *slot, const serve_model *m, int one)
{
	char *v = versions_json(slot, one ? m : NULL, 0);
	char *s = v ? dupf("{\"name\":\"%s\",\"versions\":[%s],\"platform\":\"pipefeed_mlp\","
			   "\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[-1,%d]}],"
			   "\"outputs\":[{\"name\":\"logits\",\"datatype\":\"FP32\",\"shape\":[-1,%d]}]}",
			   m->name, v, m->in_dim, m->out_dim) : NULL;
	free(v);
	return s;
}

static enum MHD_Result route_models(conn *k, const char *p, int v2, int post)
{
	route r;
	char why[400];
	if (parse_model(p, &r) < 0)
		return reply_error(k, 404, "bad model path '%s'", k->url);
	serve_model *m = find_model(k, &r, why, sizeof(why));
	if (!m)
		return reply_error(k, 404, "%s", why);
	int one = r.version[0] || r.label[0];   /* status / metadata of that version alone */
	const char *rest = r.rest;
	if (!v2 && !strcmp(rest, ":predict"))
		return post ? submit(k, m, API_TF_INSTANCES)
			    : reply_error(k, 405, "%s: use POST", k->url);
	if (v2 && !strcmp(rest, "/infer"))
		return post ? submit(k, m, API_V2)
			    : reply_error(k, 405, "%s: use POST", k->url);
	if (post)
		return reply_error(k, 405, "%s: use GET", k->url);
	if (!v2 && !*rest)
		return reply_json(k, 200, tf_status(k->slot, one ? m : NULL));
	if (!v2 && !strcmp(rest, "/metadata"))
		return reply_json(k, 200, tf_metadata(m));
	if (v2 && !*rest)
		return reply_json(k, 200, v2_metadata(k->slot, m, one));
	if (v2 && !strcmp(rest, "/ready"))
		return reply_json(k, 200, dupf("{\"name\":\"%s\",\"ready\":true}", m->name));
	return reply_error(k, 404, "no route %s", k->url);
}

/* ---- /metrics --------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void put(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void put(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = *buf ? vsnprintf(*buf + *len, *cap - *len, fmt, ap) : -1;
		va_end(ap);
		if (n >= 0 && (size_t)n < *cap - *len) {
			*len += (size_t)n;
			return;
		}
		size_t nc = *cap ? 2 * *cap : 8192;
		char *b = realloc(*buf, nc);
		if (!b)
			return;
		*buf = b;
		*cap = nc;
	}
}

/* The batchers' figures, one metric family after the other (Prometheus
 * wants a family's samples together). */
static void metrics_models(serve_server *s, char **b, size_t *n, size_t *c)
{
	pf_batcher_stats st[64];
	int nm = s->nslots < 64 ? s->nslots : 64;
	for (int i = 0; i < nm; i++) {
		serve_model *m = serve_acquire(&s->slots[i]);
		memset(&st[i], 0, sizeof(st[i]));
		if (m)
			pf_batcher_get_stats(m->b, &st[i]);   /* the highest version's counts */
		serve_release(m);
	}
#define EACH for (int i = 0; i < nm; i++)
#define MN s->slots[i].name
	put(b, n, c, "# TYPE pf_serve_batches_total counter\n");
	EACH put(b, n, c, "pf_serve_batches_total{model=\"%s\"} %" PRIu64 "\n", MN, st[i].batches);
	put(b, n, c, "# TYPE pf_serve_queue_seconds_total counter\n");
	EACH put(b, n, c, "pf_serve_queue_seconds_total{model=\"%s\"} %.6f\n", MN, st[i].queue_ns / 1e9);
	put(b, n, c, "# TYPE pf_serve_compute_seconds_total counter\n");
	EACH put(b, n, c, "pf_serve_compute_seconds_total{model=\"%s\"} %.6f\n", MN, st[i].compute_ns / 1e9);
	put(b, n, c, "# TYPE pf_serve_rejected_total counter\n");
	EACH {
		put(b, n, c, "pf_serve_rejected_total{model=\"%s\",reason=\"queue_full\"} %" PRIu64 "\n", MN, st[i].rejected_full);
		put(b, n, c, "pf_serve_rejected_total{model=\"%s\",reason=\"timeout\"} %" PRIu64 "\n", MN, st[i].rejected_timeout);
	}
	put(b, n, c, "# TYPE pf_serve_queued gauge\n");
	EACH put(b, n, c, "pf_serve_queued{model=\"%s\"} %d\n", MN, st[i].queued);
	put(b, n, c, "# TYPE pf_serve_adaptive_batch_limit gauge\n");
	EACH put(b, n, c, "pf_serve_adaptive_batch_limit{model=\"%s\"} %d\n", MN, st[i].adaptive_batch);
	put(b, n, c, "# TYPE pf_serve_batch_size histogram\n");
	EACH {
		uint64_t cum = 0;
		for (int h = 0; h < PF_BATCH_HIST - 1; h++) {
			cum += st[i].batch_hist[h];
			put(b, n, c, "pf_serve_batch_size_bucket{model=\"%s\",le=\"%d\"} %" PRIu64 "\n", MN, 1 << h, cum);
		}
		put(b, n, c, "pf_serve_batch_size_bucket{model=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", MN, st[i].batches);
		put(b, n, c, "pf_serve_batch_size_sum{model=\"%s\"} %" PRIu64 "\n", MN, st[i].padded_rows);
		put(b, n, c, "pf_serve_batch_size_count{model=\"%s\"} %" PRIu64 "\n", MN, st[i].batches);
	}
#undef EACH
#undef MN
}

static enum MHD_Result metrics(conn *k)
{
	serve_server *s = k->s;
	char *b = NULL;
	size_t n = 0, c = 0;
	static uint64_t lat[RING];
	static pthread_mutex_t lat_mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&lat_mu);
	pthread_mutex_lock(&s->mu);
	size_t nl = s->nlat < RING ? s->nlat : RING;
	memcpy(lat, s->lat_us, nl * sizeof(uint64_t));
	put(&b, &n, &c, "# TYPE pf_serve_requests_total counter\npf_serve_requests_total %" PRIu64 "\n",
	    s->requests);
	put(&b, &n, &c, "# TYPE pf_serve_rows_total counter\npf_serve_rows_total %" PRIu64 "\n", s->rows);
	put(&b, &n, &c, "# TYPE pf_serve_responses_total counter\n");
	for (int i = 100; i < 600; i++)
		if (s->codes[i])
			put(&b, &n, &c, "pf_serve_responses_total{code=\"%d\"} %" PRIu64 "\n", i, s->codes[i]);
	put(&b, &n, &c, "# TYPE pf_serve_errors_total counter\npf_serve_errors_total %" PRIu64 "\n",
	    s->by_code[4] + s->by_code[5]);
	/* refusals (429, 503) from the request's headers to its answer sent */
	put(&b, &n, &c, "# TYPE pf_serve_refusal_seconds histogram\n");
	uint64_t cum = 0;
	for (int i = 0; i <= NREF; i++) {
		cum += s->refusal_hist[i];
		if (i < NREF)
			put(&b, &n, &c, "pf_serve_refusal_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
			    ref_le[i], cum);
	}
	put(&b, &n, &c, "pf_serve_refusal_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
	    "pf_serve_refusal_seconds_sum %.6f\npf_serve_refusal_seconds_count %" PRIu64 "\n",
	    cum, s->refusal_s, cum);
	pthread_mutex_unlock(&s->mu);
	qsort(lat, nl, sizeof(uint64_t), cmp_u64);
	put(&b, &n, &c, "# TYPE pf_serve_latency_seconds summary\n");
	static const double q[] = { 0.5, 0.9, 0.99 };
	for (int i = 0; i < 3; i++)
		put(&b, &n, &c, "pf_serve_latency_seconds{quantile=\"%g\"} %.6f\n", q[i],
		    nl ? lat[(size_t)(q[i] * (double)(nl - 1))] / 1e6 : 0.0);
	pthread_mutex_unlock(&lat_mu);
	metrics_models(s, &b, &n, &c);
	put(&b, &n, &c, "# TYPE pf_serve_inflight gauge\npf_serve_inflight %d\n",
	    atomic_load(&s->inflight));
	/* the standard process metric: the overload test watches it stay flat */
	long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f && fscanf(f, "%*s %ld", &pages) != 1)
		pages = 0;
	if (f)
		fclose(f);
	put(&b, &n, &c, "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n",
	    (long long)pages * sysconf(_SC_PAGESIZE));
	return reply(k, 200, b, n, "text/plain; version=0.0.4", 0);
}

/* ---- the handler ------------------------------------------------------------ */

static enum MHD_Result route_all(conn *k, const char *url, const char *method)
{
	int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	if (!get && !post)
		return reply_error(k, 405, "method %s: use GET or POST", method);
	if (atomic_load(&k->s->draining))
		return reply_error(k, 503, "shutting down: not taking new requests");
	if (k->too_big)
		return reply_error(k, 413, "body over the quota of %zu bytes (max_body_bytes)",
				   k->s->cfg.max_body_bytes);
	if (!strncmp(url, "/v1/models/", 11))
		return route_models(k, url + 11, 0, post);
	if (!strncmp(url, "/v2/models/", 11))
		return route_models(k, url + 11, 1, post);
	if (!get)
		return reply_error(k, 405, "%s: use GET", url);
	if (!strcmp(url, "/v2/health/live"))
		return reply_json(k, 200, dupf("{\"live\":true}"));
	if (!strcmp(url, "/v2/health/ready"))
		return reply_json(k, 200, dupf("{\"ready\":true}"));
	if (!strcmp(url, "/v2") || !strcmp(url, "/v2/"))
		return reply_json(k, 200, dupf("{\"name\":\"pipe-serve\",\"version\":\"%s\","
					       "\"extensions\":[\"binary_tensor_data\"]}",
					       PACKAGE_VERSION));
	if (!strcmp(url, "/metrics"))
		return metrics(k);
	return reply_error(k, 404, "no route %s", url);
}

static enum MHD_Result first_call(serve_server *s, struct MHD_Connection *c,
				  const char *url, const char *method, void **con_cls)
{
	conn *k = calloc(1, sizeof(*k));
	if (!k)
		return MHD_NO;
	k->s = s;
	k->c = c;
	k->t0 = now_ns();
	pthread_mutex_init(&k->mu, NULL);
	snprintf(k->method, sizeof(k->method), "%s", method);
	snprintf(k->url, sizeof(k->url), "%s", url);
	set_trace(k);
	atomic_fetch_add(&s->inflight, 1);
	*con_cls = k;
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body_bytes) {
		k->too_big = 1;
		return reply_error(k, 413, "body of %s bytes over the quota of %zu bytes (max_body_bytes)",
				   cl, s->cfg.max_body_bytes);
	}
	return MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c,
			       const char *url, const char *method,
			       const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	serve_server *s = cls;
	conn *k = *con_cls;
	if (!k)
		return first_call(s, c, url, method, con_cls);
	if (k->status)   /* answered early (413): discard the rest */
		return (*upload_size = 0, MHD_YES);
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (k->too_big || k->len + n > s->cfg.max_body_bytes) {
			k->too_big = 1;
			return MHD_YES;
		}
		if (k->len + n + 1 > k->cap) {
			size_t nc = k->cap ? k->cap : 4096;
			while (nc < k->len + n + 1)
				nc *= 2;
			char *b = realloc(k->body, nc);
			if (!b)
				return MHD_NO;
			k->body = b;
			k->cap = nc;
		}
		memcpy(k->body + k->len, upload, n);
		k->len += n;
		k->body[k->len] = 0;
		return MHD_YES;
	}
	if (k->state == ST_WAITING) {
		pthread_mutex_lock(&k->mu);
		int fin = k->finished;
		pthread_mutex_unlock(&k->mu);
		if (!fin)
			return MHD_YES;
		k->state = ST_DONE;
		return answer_infer(k);
	}
	return route_all(k, url, method);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	serve_server *s = cls;
	conn *k = *con_cls;
	if (!k)
		return;
	*con_cls = NULL;
	uint64_t us = (now_ns() - k->t0) / 1000;
	count(s, k->status, k->status == 200 ? k->in.rows : 0, us);
	if (s->cfg.access_log) {
		time_t t = time(NULL);
		struct tm tm;
		char ts[32];
		gmtime_r(&t, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
		fprintf(s->cfg.access_log,
			"%s %s %s %d %zu %.3fms trace=%s rows=%d queue_us=%" PRIu64
			" compute_us=%" PRIu64 " batch=%d%s\n",
			ts, k->method, k->url, k->status, k->resp_bytes, us / 1e3, k->trace,
			k->in.rows, k->req.queue_ns / 1000, k->req.compute_ns / 1000,
			k->req.batch_rows,
			toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed)");
		fflush(s->cfg.access_log);
	}
	if (k->state == ST_WAITING && !k->finished) {
		/* the client went away while its rows are in a batch: the
		 * batcher still holds k; wait for it (bounded by the batch) */
		for (;;) {
			pthread_mutex_lock(&k->mu);
			int fin = k->finished;
			pthread_mutex_unlock(&k->mu);
			if (fin)
				break;
			usleep(200);
		}
	}
	serve_release(k->m);
	serve_input_free(&k->in);
	free(k->out);
	free(k->body);
	pthread_mutex_destroy(&k->mu);
	free(k);
	atomic_fetch_sub(&s->inflight, 1);
}

serve_server *serve_http_start(const serve_cfg *cfg, serve_slot *slots,
			       int n, int *port)
{
	serve_server *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cfg = *cfg;
	s->slots = slots;
	s->nslots = n;
	pthread_mutex_init(&s->mu, NULL);
	atomic_init(&s->inflight, 0);
	atomic_init(&s->draining, 0);
	atomic_init(&s->ids, (uint64_t)getpid() << 32);
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
			 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	s->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, handler, s,
				MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads,
				MHD_OPTION_NOTIFY_COMPLETED, completed, s,
				MHD_OPTION_CONNECTION_LIMIT, 4096u,
				/* libmicrohttpd zeroes a connection's whole
				 * memory pool after every request (32 KiB by
				 * default: 7% of the server's CPU at 64
				 * clients); headers and the read buffer fit
				 * in 16 KiB, bodies stream through handler */
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384,
				MHD_OPTION_CONNECTION_TIMEOUT, 60u,
				MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
				MHD_OPTION_END);
	if (!s->d) {
		fprintf(stderr, "pipe-serve: cannot listen on port %d\n", cfg->port);
		pthread_mutex_destroy(&s->mu);
		free(s);
		return NULL;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	*port = di ? di->port : cfg->port;
	return s;
}

int serve_http_drain_stop(serve_server *s, int timeout_ms)
{
	atomic_store(&s->draining, 1);
	MHD_socket fd = MHD_quiesce_daemon(s->d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	int left = 0;
	for (int waited = 0; waited <= timeout_ms; waited += 5) {
		left = atomic_load(&s->inflight);
		if (!left)
			break;
		usleep(5000);
	}
	MHD_stop_daemon(s->d);
	pthread_mutex_destroy(&s->mu);
	free(s);
	return left;
}
