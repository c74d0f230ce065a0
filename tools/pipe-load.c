/*
 * pipe-load - a closed-loop load generator for pipe-serve (or any TF
 * Serving / KServe v2 endpoint), in the manner of Triton's perf_analyzer:
 * N clients, each sending its next request as soon as the last one is
 * answered, over keep-alive connections; after a warm-up, a measured
 * window gives throughput and the latency percentiles.
 *
 *   pipe-load http://127.0.0.1:8501/v1/models/fmnist:predict
 *   pipe-load --concurrency 1:64 --duration 5 --dim 784 URL
 *
 * The body is a TF Serving {"instances": [...]} of --rows rows of --dim
 * random numbers in [0, 1) (fixed per client), or a KServe v2 /infer body
 * when the URL ends in /infer, or --body FILE as is.  When the server has
 * /metrics (pipe-serve), the queue and compute time and the mean batch
 * size of the window are read from it.
 *
 * Exit status: 0, 1 when a request failed (a non-200 answer or a
 * connection error; counted and reported), 2 on a usage error.
 */
#include "config.h"

#include <curl/curl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct opts {
	const char *url, *body_file;
	int c_lo, c_hi, rows, dim, json, binary;
	double duration, warmup;
	const char *sweep, *serve;    /* --sweep LISTS --serve CMD */
	double slo_ms, usd_per_hour;
	char url_buf[2048];
} opts;

/* One level's figures. */
typedef struct level {
	double rps, p50, p90, p95, p99, mean_batch;
	uint64_t errors;
} level;

typedef struct client {
	const opts *o;
	const char *body;
	size_t body_len, json_len;   /* json_len > 0: binary v2 body */
	double t_start, t_end;    /* measured window (monotonic seconds) */
	double *lat;              /* latencies in the window, ms */
	size_t nlat, cap;
	uint64_t errors;
	long last_code;
	pthread_t tid;
} client;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t sink(char *p, size_t sz, size_t n, void *u)
{
	return sz * n;
}

/* A KServe v2 body with the binary tensor extension: the JSON part, then
 * rows * dim little-endian f32; *json_len is the JSON part's length. */
static char *make_binary(const opts *o, unsigned seed, size_t *len, size_t *json_len)
{
	size_t n = (size_t)o->rows * o->dim;
	char j[512];
	int jl = snprintf(j, sizeof(j), "{\"inputs\":[{\"name\":\"input\",\"shape\":[%d,%d],"
			  "\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":%zu}}],"
			  "\"outputs\":[{\"name\":\"logits\",\"parameters\":{\"binary_data\":true}}]}",
			  o->rows, o->dim, n * 4);
	char *b = malloc((size_t)jl + n * 4);
	if (!b)
		return NULL;
	memcpy(b, j, (size_t)jl);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		float f = (seed >> 16 & 1023) / 1024.0f;
		memcpy(b + jl + 4 * i, &f, 4);
	}
	*len = (size_t)jl + n * 4;
	*json_len = (size_t)jl;
	return b;
}

static char *make_body(const opts *o, unsigned seed, size_t *len)
{
	size_t cap = (size_t)o->rows * o->dim * 12 + 256;
	char *b = malloc(cap);
	if (!b)
		return NULL;
	int v2 = strlen(o->url) > 6 && !strcmp(o->url + strlen(o->url) - 6, "/infer");
	size_t n = v2 ? (size_t)snprintf(b, cap, "{\"inputs\":[{\"name\":\"input\",\"shape\":[%d,%d],\"datatype\":\"FP32\",\"data\":[",
					 o->rows, o->dim)
		      : (size_t)snprintf(b, cap, "{\"instances\":[");
	for (int r = 0; r < o->rows; r++) {
		if (!v2)
			n += (size_t)snprintf(b + n, cap - n, "%s[", r ? "," : "");
		for (int i = 0; i < o->dim; i++) {
			seed = seed * 1103515245u + 12345u;
			n += (size_t)snprintf(b + n, cap - n, "%s%.3f",
					      i || (v2 && r) ? "," : "", (seed >> 16 & 1023) / 1024.0);
		}
		if (!v2)
			n += (size_t)snprintf(b + n, cap - n, "]");
	}
	n += (size_t)snprintf(b + n, cap - n, v2 ? "]}]}" : "]}");
	*len = n;
	return b;
}

static void *run_client(void *arg)
{
	client *c = arg;
	CURL *h = curl_easy_init();
	if (!h) {
		c->errors++;
		return NULL;
	}
	struct curl_slist *hd = curl_slist_append(NULL, c->json_len ? "Content-Type: application/octet-stream"
								    : "Content-Type: application/json");
	char ih[80];
	snprintf(ih, sizeof(ih), "Inference-Header-Content-Length: %zu", c->json_len);
	if (c->json_len)
		hd = curl_slist_append(hd, ih);
	curl_easy_setopt(h, CURLOPT_URL, c->o->url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)c->body_len);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
	for (;;) {
		double t0 = now_s();
		if (t0 >= c->t_end)
			break;
		CURLcode rc = curl_easy_perform(h);
		double t1 = now_s();
		long code = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		if (t0 < c->t_start)
			continue;
		if (rc != CURLE_OK || code != 200) {
			c->errors++;
			c->last_code = rc != CURLE_OK ? -(long)rc : code;
			continue;
		}
		if (t1 > c->t_end)
			break;   /* only requests wholly inside the window */
		if (c->nlat == c->cap) {
			size_t nc = c->cap ? 2 * c->cap : 1024;
			double *l = realloc(c->lat, nc * sizeof(double));
			if (!l)
				break;
			c->lat = l;
			c->cap = nc;
		}
		c->lat[c->nlat++] = (t1 - t0) * 1e3;
	}
	curl_slist_free_all(hd);
	curl_easy_cleanup(h);
	return NULL;
}

/* The server's /metrics: queue and compute seconds, batches, rows (sums
 * over its models); 0 when it has none. */
typedef struct srv { double queue_s, compute_s, batches, rows; int ok; } srv;

typedef struct buf { char *p; size_t n; } buf;

static size_t keep(char *p, size_t sz, size_t n, void *u)
{
	buf *b = u;
	size_t k = sz * n;
	char *q = realloc(b->p, b->n + k + 1);
	if (!q)
		return 0;
	memcpy(q + b->n, p, k);
	b->p = q;
	b->n += k;
	q[b->n] = 0;
	return k;
}

static srv scrape(const char *url)
{
	srv s = { 0 };
	char m[2048];
	const char *p = strstr(url, "://");
	p = p ? strchr(p + 3, '/') : NULL;
	snprintf(m, sizeof(m), "%.*s/metrics", p ? (int)(p - url) : (int)strlen(url), url);
	CURL *h = curl_easy_init();
	buf b = { 0 };
	curl_easy_setopt(h, CURLOPT_URL, m);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	long code = 0;
	if (curl_easy_perform(h) == CURLE_OK &&
	    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200 && b.p) {
		for (char *l = strtok(b.p, "\n"); l; l = strtok(NULL, "\n")) {
			double v;
			char *sp = strrchr(l, ' ');
			if (!sp || l[0] == '#')
				continue;
			v = atof(sp + 1);
			if (!strncmp(l, "pf_serve_queue_seconds_total{", 29)) s.queue_s += v, s.ok = 1;
			else if (!strncmp(l, "pf_serve_compute_seconds_total{", 31)) s.compute_s += v;
			else if (!strncmp(l, "pf_serve_batches_total{", 23)) s.batches += v;
			else if (!strncmp(l, "pf_serve_rows_total ", 20)) s.rows += v;
		}
	}
	free(b.p);
	curl_easy_cleanup(h);
	return s;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One measured run at concurrency n; prints a line.  Returns the errors. */
static uint64_t run_level(const opts *o, int n, const char *fixed_body, size_t fixed_len,
			  level *lv)
{
	client *cl = calloc((size_t)n, sizeof(*cl));
	char **bodies = calloc((size_t)n, sizeof(char *));
	if (!cl || !bodies) {
		fprintf(stderr, "pipe-load: out of memory\n");
		exit(1);
	}
	double t = now_s();
	for (int i = 0; i < n; i++) {
		cl[i].o = o;
		if (fixed_body) {
			cl[i].body = fixed_body;
			cl[i].body_len = fixed_len;
		} else if (o->binary) {
			bodies[i] = make_binary(o, (unsigned)i * 7919u + 1, &cl[i].body_len,
						&cl[i].json_len);
			cl[i].body = bodies[i];
		} else {
			bodies[i] = make_body(o, (unsigned)i * 7919u + 1, &cl[i].body_len);
			cl[i].body = bodies[i];
		}
		cl[i].t_start = t + o->warmup;
		cl[i].t_end = t + o->warmup + o->duration;
	}
	srv s0 = { 0 }, s1;
	for (int i = 0; i < n; i++)
		pthread_create(&cl[i].tid, NULL, run_client, &cl[i]);
	struct timespec w = { (time_t)o->warmup, (long)((o->warmup - (time_t)o->warmup) * 1e9) };
	nanosleep(&w, NULL);
	s0 = scrape(o->url);
	size_t total = 0;
	uint64_t errors = 0;
	long last = 0;
	for (int i = 0; i < n; i++)
		pthread_join(cl[i].tid, NULL);
	s1 = scrape(o->url);
	for (int i = 0; i < n; i++) {
		total += cl[i].nlat;
		errors += cl[i].errors;
		if (cl[i].last_code)
			last = cl[i].last_code;
	}
	double *all = malloc((total ? total : 1) * sizeof(double));
	size_t k = 0;
	for (int i = 0; i < n; i++) {
		memcpy(all + k, cl[i].lat, cl[i].nlat * sizeof(double));
		k += cl[i].nlat;
		free(cl[i].lat);
		free(bodies[i]);
	}
	qsort(all, total, sizeof(double), cmp_d);
#define PCT(q) (total ? all[(size_t)((q) * (double)(total - 1))] : 0.0)
	double rps = total / o->duration;
	double nb = s1.batches - s0.batches, nr = s1.rows - s0.rows;
	if (lv) {
		*lv = (level){ rps, PCT(0.5), PCT(0.9), PCT(0.95), PCT(0.99),
			       nb > 0 ? nr / nb : 0.0, errors };
		free(all);
		free(cl);
		free(bodies);
		return errors;
	}
	if (o->json)
		printf("{\"concurrency\":%d,\"requests\":%zu,\"errors\":%" PRIu64 ",\"rps\":%.1f,"
		       "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f,"
		       "\"server_queue_ms\":%.3f,\"server_compute_ms\":%.3f,\"mean_batch\":%.2f}\n",
		       n, total, errors, rps, PCT(0.5), PCT(0.9), PCT(0.95), PCT(0.99),
		       nr > 0 && s1.ok ? (s1.queue_s - s0.queue_s) * 1e3 / nr : 0.0,
		       nb > 0 && s1.ok ? (s1.compute_s - s0.compute_s) * 1e3 / nb : 0.0,
		       nb > 0 ? nr / nb : 0.0);
	else {
		printf("%11d %10.1f %8.3f %8.3f %8.3f %8.3f %7" PRIu64, n, rps, PCT(0.5),
		       PCT(0.9), PCT(0.95), PCT(0.99), errors);
		if (s1.ok && nb > 0)
			printf("   queue %.3f ms/row, compute %.3f ms/batch, batch %.1f rows",
			       (s1.queue_s - s0.queue_s) * 1e3 / (nr > 0 ? nr : 1),
			       (s1.compute_s - s0.compute_s) * 1e3 / nb, nr / nb);
		if (errors)
			printf("   (last error: %s %ld)", last < 0 ? "curl" : "HTTP", last < 0 ? -last : last);
		printf("\n");
	}
	fflush(stdout);
	free(all);
	free(cl);
	free(bodies);
	return errors;
}

/* "1,8,32" into v (at most 16): the count, or -1. */
static int int_list(const char *p, long *v)
{
	int n = 0;
	while (*p && n < 16) {
		char *e;
		v[n] = strtol(p, &e, 10);
		if (e == p || v[n] < 0 || (*e && *e != ','))
			return -1;
		n++;
		p = *e ? e + 1 : e;
	}
	return *p ? -1 : n;
}

/* Start `serve` with the setting on a free port; its pid and port. */
static int start_server(const opts *o, long mbs, long to, pid_t *pid, int *port)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "exec %s --port 0 --access-log none --max-batch-size %ld --batch-timeout-us %ld",
		 o->serve, mbs, to);
	int fd[2];
	if (pipe(fd) < 0)
		return -1;
	*pid = fork();
	if (*pid < 0)
		return -1;
	if (*pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	FILE *f = fdopen(fd[0], "r");
	char line[256];
	*port = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "pipe-serve: listening on port %d", port) == 1)
			break;
	if (f)
		fclose(f);   /* the server's later stdout lines go nowhere */
	return *port ? 0 : -1;
}

/* --sweep: the server once per (max_batch_size, batch_timeout_us), one
 * level at the top concurrency each; the table, the best under the SLO
 * marked.  Returns the exit status. */
static int sweep(opts *o, const char *body, size_t blen)
{
	long mbs[16], to[16];
	int nm = -1, nt = -1;
	char spec[512];
	snprintf(spec, sizeof(spec), "%s", o->sweep);
	for (char *t = strtok(spec, " "); t; t = strtok(NULL, " ")) {
		if (!strncmp(t, "max_batch_size=", 15))
			nm = int_list(t + 15, mbs);
		else if (!strncmp(t, "batch_timeout_us=", 17))
			nt = int_list(t + 17, to);
		else if (!strncmp(t, "timeout_us=", 11))
			nt = int_list(t + 11, to);
		else
			nm = nt = -2;
	}
	if (nm < 1 || nt < 1) {
		fprintf(stderr, "pipe-load: --sweep: expected 'max_batch_size=A,B,... batch_timeout_us=X,Y,...'\n");
		return 2;
	}
	const char *path = o->url;
	level lv[256];
	int n = 0, best = -1, rc = 0;
	printf("pipe-load sweep at concurrency %d, %.1f s windows%s\n", o->c_hi, o->duration,
	       o->slo_ms > 0 ? "" : " (no --slo-p99-ms: best = most req/s)");
	printf("max_batch_size timeout_us      req/s   p50 ms   p99 ms  batch  $/M req\n");
	for (int i = 0; i < nm; i++)
		for (int j = 0; j < nt; j++, n++) {
			pid_t pid;
			int port;
			if (start_server(o, mbs[i], to[j], &pid, &port) < 0) {
				fprintf(stderr, "pipe-load: the server did not start: %s\n", o->serve);
				return 1;
			}
			snprintf(o->url_buf, sizeof(o->url_buf), "http://127.0.0.1:%d%s", port, path);
			o->url = o->url_buf;
			run_level(o, o->c_hi, body, blen, &lv[n]);
			kill(pid, SIGTERM);
			waitpid(pid, NULL, 0);
			double cost = lv[n].rps > 0 ? o->usd_per_hour / (lv[n].rps * 3600) * 1e6 : 0;
			printf("%14ld %10ld %10.1f %8.3f %8.3f %6.1f %8.4f%s\n", mbs[i], to[j], lv[n].rps,
			       lv[n].p50, lv[n].p99, lv[n].mean_batch, cost,
			       lv[n].errors ? "  (errors)" : "");
			fflush(stdout);
			if (lv[n].errors)
				rc = 1;
			else if ((o->slo_ms <= 0 || lv[n].p99 <= o->slo_ms) &&
				 (best < 0 || lv[n].rps > lv[best].rps))
				best = n;
		}
	if (best >= 0)
		printf("best%s: max_batch_size %ld, batch_timeout_us %ld: %.1f req/s, p99 %.3f ms\n",
		       o->slo_ms > 0 ? " under the SLO" : "", mbs[best / nt], to[best % nt],
		       lv[best].rps, lv[best].p99);
	else
		printf("no setting holds the SLO of %.3f ms\n", o->slo_ms);
	o->url = path;
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pipe-load [options] URL\n"
		"  --concurrency N|A:B   clients at once; A:B doubles from A to B (1:64)\n"
		"  --duration S          measured window per level, seconds (5)\n"
		"  --warmup S            unmeasured seconds before it (1)\n"
		"  --rows N              rows per request (1)\n"
		"  --dim N               numbers per row (784)\n"
		"  --body FILE           send FILE as the body instead\n"
		"  --binary              KServe v2 body with binary tensors (URL .../infer)\n"
		"  --json                one JSON object per level\n"
		"sweep: run the server once per setting (URL is then the path, e.g.\n"
		"/v2/models/m/infer), at the top of --concurrency:\n"
		"  --sweep 'max_batch_size=1,8,32,64 batch_timeout_us=0,500,2000'\n"
		"  --serve 'pipe-serve --model-dir DIR'  the server command (--port 0 added)\n"
		"  --slo-p99-ms MS       mark the best setting whose p99 holds MS\n"
		"  --usd-per-hour X      cost per million requests at X $/hour (1)\n");
}

static int parse(int argc, char **argv, opts *o)
{
	static const struct option lo[] = {
		{ "concurrency", 1, 0, 'c' }, { "duration", 1, 0, 'd' },
		{ "warmup", 1, 0, 'w' }, { "rows", 1, 0, 'r' }, { "dim", 1, 0, 'D' },
		{ "body", 1, 0, 'b' }, { "json", 0, 0, 'j' }, { "binary", 0, 0, 'B' },
		{ "sweep", 1, 0, 'S' }, { "serve", 1, 0, 's' }, { "slo-p99-ms", 1, 0, 'L' },
		{ "usd-per-hour", 1, 0, 'U' }, { "help", 0, 0, 'h' },
		{ 0, 0, 0, 0 }
	};
	*o = (opts){ .c_lo = 1, .c_hi = 64, .rows = 1, .dim = 784, .duration = 5, .warmup = 1,
		     .usd_per_hour = 1 };
	int c;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		char *e = NULL;
		switch (c) {
		case 'c':
			o->c_lo = (int)strtol(optarg, &e, 10);
			o->c_hi = *e == ':' ? (int)strtol(e + 1, &e, 10) : o->c_lo;
			if (*e || o->c_lo < 1 || o->c_hi < o->c_lo || o->c_hi > 4096)
				return fprintf(stderr, "pipe-load: --concurrency: expected N or A:B (1..4096), got '%s'\n", optarg), 2;
			break;
		case 'd': o->duration = strtod(optarg, &e); if (*e || o->duration <= 0) return fprintf(stderr, "pipe-load: --duration: expected seconds > 0\n"), 2; break;
		case 'w': o->warmup = strtod(optarg, &e); if (*e || o->warmup < 0) return fprintf(stderr, "pipe-load: --warmup: expected seconds >= 0\n"), 2; break;
		case 'r': o->rows = (int)strtol(optarg, &e, 10); if (*e || o->rows < 1 || o->rows > 65536) return fprintf(stderr, "pipe-load: --rows: expected 1..65536\n"), 2; break;
		case 'D': o->dim = (int)strtol(optarg, &e, 10); if (*e || o->dim < 1 || o->dim > 1 << 20) return fprintf(stderr, "pipe-load: --dim: expected 1..1048576\n"), 2; break;
		case 'b': o->body_file = optarg; break;
		case 'j': o->json = 1; break;
		case 'B': o->binary = 1; break;
		case 'S': o->sweep = optarg; break;
		case 's': o->serve = optarg; break;
		case 'L': o->slo_ms = strtod(optarg, &e); if (*e || o->slo_ms <= 0) return fprintf(stderr, "pipe-load: --slo-p99-ms: expected milliseconds > 0\n"), 2; break;
		case 'U': o->usd_per_hour = strtod(optarg, &e); if (*e || o->usd_per_hour <= 0) return fprintf(stderr, "pipe-load: --usd-per-hour: expected dollars > 0\n"), 2; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	o->url = argv[optind];
	if (!o->sweep != !o->serve)
		return fprintf(stderr, "pipe-load: --sweep and --serve go together\n"), 2;
	if (o->sweep && o->url[0] != '/')
		return fprintf(stderr, "pipe-load: with --sweep, URL is the path (e.g. /v2/models/m/infer)\n"), 2;
	return 0;
}

int main(int argc, char **argv)
{
	opts o;
	int rc = parse(argc, argv, &o);
	if (rc)
		return rc;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	char *body = NULL;
	size_t blen = 0;
	if (o.body_file) {
		FILE *f = fopen(o.body_file, "rb");
		if (!f || fseek(f, 0, SEEK_END) < 0 || (blen = (size_t)ftell(f), fseek(f, 0, SEEK_SET)) < 0 ||
		    !(body = malloc(blen + 1)) || fread(body, 1, blen, f) != blen) {
			fprintf(stderr, "pipe-load: --body %s: cannot read\n", o.body_file);
			return 2;
		}
		fclose(f);
	}
	if (o.sweep) {
		int r = sweep(&o, body, blen);
		free(body);
		curl_global_cleanup();
		return r;
	}
	if (!o.json)
		printf("concurrency      req/s   p50 ms   p90 ms   p95 ms   p99 ms  errors\n");
	uint64_t errors = 0;
	for (int n = o.c_lo; n <= o.c_hi; n = n * 2 > o.c_hi && n < o.c_hi ? o.c_hi : n * 2)
		errors += run_level(&o, n, body, blen, NULL);
	free(body);
	curl_global_cleanup();
	return errors ? 1 : 0;
}
