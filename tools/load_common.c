/* load_common.c - what pipe-load's modes share (see load.h). */
#include "config.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "load.h"

double load_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double load_pct(double *v, size_t n, double q)
{
	if (!n)
		return 0.0;
	qsort(v, n, sizeof(double), cmp_d);
	return v[(size_t)(q * (double)(n - 1))];
}

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

load_srv load_scrape(const char *url)
{
	load_srv s = { 0 };
	char m[2048];
	const char *p = strstr(url, "://");
	p = p ? strchr(p + 3, '/') : NULL;
	snprintf(m, sizeof(m), "%.*s/metrics", p ? (int)(p - url) : (int)strlen(url), url);
	CURL *h = curl_easy_init();
	if (!h)
		return s;
	buf b = { 0 };
	curl_easy_setopt(h, CURLOPT_URL, m);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	long code = 0;
	if (curl_easy_perform(h) == CURLE_OK &&
	    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200 && b.p) {
		char *save = NULL;
		for (char *l = strtok_r(b.p, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
			char *sp = strrchr(l, ' ');
			if (!sp || l[0] == '#')
				continue;
			double v = atof(sp + 1);
			if (!strncmp(l, "pf_serve_queue_seconds_total{", 29)) s.queue_s += v, s.ok = 1;
			else if (!strncmp(l, "pf_serve_compute_seconds_total{", 31)) s.compute_s += v;
			else if (!strncmp(l, "pf_serve_batches_total{", 23)) s.batches += v;
			else if (!strncmp(l, "pf_serve_rows_total ", 20)) s.rows += v;
			else if (!strncmp(l, "pf_serve_queued{", 16)) s.queued += v;
			else if (!strncmp(l, "process_resident_memory_bytes ", 30)) s.rss = v;
			else if (!strncmp(l, "pf_serve_refusal_seconds_count ", 31)) s.refused = v;
			else if (!strncmp(l, "pf_serve_refusal_seconds_bucket{le=\"0.001\"} ", 44))
				s.refused_1ms = v;
		}
	}
	free(b.p);
	curl_easy_cleanup(h);
	return s;
}

/* A KServe v2 body with the binary tensor extension: the JSON part, then
 * rows * dim little-endian f32. */
static char *make_binary(int rows, int dim, unsigned seed, size_t *len, size_t *json_len)
{
	size_t n = (size_t)rows * dim;
	char j[512];
	int jl = snprintf(j, sizeof(j), "{\"inputs\":[{\"name\":\"input\",\"shape\":[%d,%d],"
			  "\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":%zu}}],"
			  "\"outputs\":[{\"name\":\"logits\",\"parameters\":{\"binary_data\":true}}]}",
			  rows, dim, n * 4);
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

char *load_body(const char *url, int rows, int dim, int binary, unsigned seed,
		size_t *len, size_t *json_len)
{
	*json_len = 0;
	if (binary)
		return make_binary(rows, dim, seed, len, json_len);
	size_t cap = (size_t)rows * dim * 12 + 256;
	char *b = malloc(cap);
	if (!b)
		return NULL;
	int v2 = strlen(url) > 6 && !strcmp(url + strlen(url) - 6, "/infer");
	size_t n = v2 ? (size_t)snprintf(b, cap, "{\"inputs\":[{\"name\":\"input\",\"shape\":[%d,%d],\"datatype\":\"FP32\",\"data\":[",
					 rows, dim)
		      : (size_t)snprintf(b, cap, "{\"instances\":[");
	for (int r = 0; r < rows; r++) {
		if (!v2)
			n += (size_t)snprintf(b + n, cap - n, "%s[", r ? "," : "");
		for (int i = 0; i < dim; i++) {
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

static size_t discard(char *p, size_t sz, size_t n, void *u)
{
	(void)p;
	(void)u;
	return sz * n;
}

void *load_headers(size_t json_len)
{
	struct curl_slist *hd = curl_slist_append(NULL, json_len ? "Content-Type: application/octet-stream"
								  : "Content-Type: application/json");
	char ih[80];
	snprintf(ih, sizeof(ih), "Inference-Header-Content-Length: %zu", json_len);
	if (hd && json_len)
		hd = curl_slist_append(hd, ih);
	return hd;
}

void load_post_setup(void *h, const char *url, const void *body, size_t len,
		     void *hd, long timeout_s)
{
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, (struct curl_slist *)hd);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
}
