/*
 * load.h - pipe-load's parts, and how they depend on each other:
 *
 *   load_common.c  what every mode shares: the clock, request bodies
 *                  (TF Serving JSON, KServe v2 JSON or binary tensors),
 *                  percentiles, and the server's figures from /metrics
 *   load_rate.c    the open loop (--rate): requests sent at scheduled
 *                  times (fixed or Poisson gaps) from one curl multi
 *                  handle, whatever the answers; latency counted from the
 *                  scheduled time (no coordinated omission)
 *   load_svg.c     --svg: latency against throughput of the levels run
 *   pipe-load.c    options, the closed loop (--concurrency), --sweep
 */
#ifndef PF_LOAD_TOOL_H
#define PF_LOAD_TOOL_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic seconds. */
double load_now(void);

/* Sort v[0..n) and return its q-quantile (0 when n == 0). */
double load_pct(double *v, size_t n, double q);

/* The server's /metrics (pipe-serve's names), summed over its models;
 * ok = 0 when the server has none. */
typedef struct load_srv {
	double queue_s, compute_s, batches, rows;
	double queued;        /* pf_serve_queued: requests waiting now */
	double rss;           /* process_resident_memory_bytes */
	double refused, refused_1ms;  /* refusals, and those answered within 1 ms */
	int ok;
} load_srv;

/* GET the /metrics of the server of url (same scheme, host and port). */
load_srv load_scrape(const char *url);

/* The request headers for a body whose JSON part is json_len bytes long
 * (0: a JSON body; else KServe v2's binary tensor extension and its
 * Inference-Header-Content-Length): a curl_slist the caller frees with
 * curl_slist_free_all, NULL when out of memory. */
void *load_headers(size_t json_len);

/* Point the easy handle h at one POST of body (len bytes) to url with the
 * headers hd (kept by the caller), the response discarded, no signals,
 * TCP_NODELAY and a timeout of timeout_s seconds. */
void load_post_setup(void *h, const char *url, const void *body, size_t len,
		     void *hd, long timeout_s);

/* A request body (malloc'd, *len bytes): TF Serving {"instances"} of rows
 * x dim numbers in [0, 1) from seed, or KServe v2 JSON when the url ends
 * in /infer; with binary, a v2 body with the binary tensor extension and
 * *json_len its JSON part's length (else *json_len = 0).  NULL when out of
 * memory. */
char *load_body(const char *url, int rows, int dim, int binary, unsigned seed,
		size_t *len, size_t *json_len);

/* One open-loop run (load_rate.c). */
typedef struct load_rate_opts {
	const char *url;
	const char *body;
	size_t body_len, json_len;  /* json_len > 0: binary v2 body */
	double rate;                /* requests per second scheduled */
	int poisson;                /* exponential gaps; else fixed 1 / rate */
	unsigned long long seed;    /* for the Poisson gaps */
	double warmup, duration;    /* seconds */
	int max_inflight;           /* beyond it a scheduled send is dropped */
} load_rate_opts;

typedef struct load_rate_res {
	uint64_t scheduled;         /* in the window */
	uint64_t sent, ok, rejected, errors, dropped;
	double sent_rps, ok_rps;    /* achieved rates over the window */
	double p50, p90, p95, p99, max;   /* ok answers, ms from the scheduled time */
	double rej_p50, rej_p99;    /* refusals (429 / 503), ms from the actual send */
	double late_p99;            /* ms between scheduled and actual send */
	long last_error;            /* HTTP code, or -curl code */
	load_srv s0, s1;            /* /metrics at the window's start and end */
	double queued_max, rss_max; /* /metrics sampled during the window */
} load_rate_res;

/* Run o: warm-up, then the measured window; requests scheduled in the
 * window are waited for (up to 30 s) even when answered after it.  0, or
 * -1 when curl could not be set up. */
int load_rate_run(const load_rate_opts *o, load_rate_res *r);

/* One point of a chart: a level's throughput and latencies. */
typedef struct load_point {
	double x_rps;       /* answered requests per second */
	double p50, p99;    /* ms */
	double offered;     /* concurrency or scheduled rate */
} load_point;

/* --svg: p50 and p99 against throughput, one point a level; 0 or -1 with
 * a message on stderr. */
int load_svg(const char *path, const char *title, const char *xname,
	     const load_point *pt, int n);

#endif /* PF_LOAD_TOOL_H */
