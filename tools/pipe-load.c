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

#include "load.h"

typedef struct opts {
	const char *url, *body_file;
	int c_lo, c_hi, rows, dim, json, binary;
	double duration, warmup;
	const char *sweep, *serve;    /* --sweep LISTS --serve CMD */
	double slo_ms, usd_per_hour;
	double rates[16];             /* --rate R[,R...]: the open loop */
	int nrates, poisson, max_inflight;
	unsigned long long seed;
	const char *svg;
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

static void *run_client(void *arg)
{
	client *c = arg;
	CURL *h = curl_easy_init();
	if (!h) {
		c->errors++;
		return NULL;
	}
	struct curl_slist *hd = load_headers(c->json_len);
	load_post_setup(h, c->o->url, c->body, c->body_len, hd, 60L);
	for (;;) {
		double t0 = load_now();
		if (t0 >= c->t_end)
			break;
		CURLcode rc = curl_easy_perform(h);
		double t1 = load_now();
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

/* One measured run at concurrency n: its figures in *lv, and a line on
 * stdout when print.  Returns the errors. */
static uint64_t run_level(const opts *o, int n, const char *fixed_body, size_t fixed_len,
			  level *lv, int print)
{
	client *cl = calloc((size_t)n, sizeof(*cl));
	char **bodies = calloc((size_t)n, sizeof(char *));
	if (!cl || !bodies) {
		fprintf(stderr, "pipe-load: out of memory\n");
		exit(1);
	}
	double t = load_now();
	for (int i = 0; i < n; i++) {
		cl[i].o = o;
		if (fixed_body) {
			cl[i].body = fixed_body;
			cl[i].body_len = fixed_len;
		} else {
			bodies[i] = load_body(o->url, o->rows, o->dim, o->binary,
					      (unsigned)i * 7919u + 1, &cl[i].body_len,
					      &cl[i].json_len);
			if (!bodies[i]) {
				fprintf(stderr, "pipe-load: out of memory\n");
				exit(1);
			}
			cl[i].body = bodies[i];
		}
		cl[i].t_start = t + o->warmup;
		cl[i].t_end = t + o->warmup + o->duration;
	}
	load_srv s0 = { 0 }, s1;
	for (int i = 0; i < n; i++)
		pthread_create(&cl[i].tid, NULL, run_client, &cl[i]);
	struct timespec w = { (time_t)o->warmup, (long)((o->warmup - (time_t)o->warmup) * 1e9) };
	nanosleep(&w, NULL);
	s0 = load_scrape(o->url);
	size_t total = 0;
	uint64_t errors = 0;
	long last = 0;
	for (int i = 0; i < n; i++)
		pthread_join(cl[i].tid, NULL);
	s1 = load_scrape(o->url);
	for (int i = 0; i < n; i++) {
		total += cl[i].nlat;
		errors += cl[i].errors;
		if (cl[i].last_code)
			last = cl[i].last_code;
	}
	double *all = malloc((total ? total : 1) * sizeof(double));
	size_t k = 0;
	for (int i = 0; i < n; i++) {
		if (cl[i].nlat)
			memcpy(all + k, cl[i].lat, cl[i].nlat * sizeof(double));
		k += cl[i].nlat;
		free(cl[i].lat);
		free(bodies[i]);
	}
#define PCT(q) load_pct(all, total, (q))
	double rps = total / o->duration;
	double nb = s1.batches - s0.batches, nr = s1.rows - s0.rows;
	*lv = (level){ rps, PCT(0.5), PCT(0.9), PCT(0.95), PCT(0.99),
		       nb > 0 ? nr / nb : 0.0, errors };
	if (print && o->json)
		printf("{\"concurrency\":%d,\"requests\":%zu,\"errors\":%" PRIu64 ",\"rps\":%.1f,"
		       "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f,"
		       "\"server_queue_ms\":%.3f,\"server_compute_ms\":%.3f,\"mean_batch\":%.2f}\n",
		       n, total, errors, rps, PCT(0.5), PCT(0.9), PCT(0.95), PCT(0.99),
		       nr > 0 && s1.ok ? (s1.queue_s - s0.queue_s) * 1e3 / nr : 0.0,
		       nb > 0 && s1.ok ? (s1.compute_s - s0.compute_s) * 1e3 / nb : 0.0,
		       nb > 0 ? nr / nb : 0.0);
	else if (print) {
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

/* One open-loop level at rate: a line on stdout, the point in *pt.
 * Returns the errors (refusals, 429 and 503, are not errors: they are the
 * server's answer to overload, counted apart). */
static uint64_t run_rate(const opts *o, double rate, const char *fixed_body,
			 size_t fixed_len, load_point *pt)
{
	size_t len = fixed_len, jl = 0;
	char *own = fixed_body ? NULL : load_body(o->url, o->rows, o->dim, o->binary, 1, &len, &jl);
	if (!fixed_body && !own) {
		fprintf(stderr, "pipe-load: out of memory\n");
		exit(1);
	}
	load_rate_opts ro = { o->url, fixed_body ? fixed_body : own, len, jl, rate, o->poisson,
			      o->seed, o->warmup, o->duration, o->max_inflight };
	load_rate_res r;
	if (load_rate_run(&ro, &r) < 0) {
		fprintf(stderr, "pipe-load: cannot set up %d curl handles\n", o->max_inflight);
		exit(1);
	}
	free(own);
	double nb = r.s1.batches - r.s0.batches, nr = r.s1.rows - r.s0.rows;
	double qms = nr > 0 && r.s1.ok ? (r.s1.queue_s - r.s0.queue_s) * 1e3 / nr : 0.0;
	double cms = nb > 0 && r.s1.ok ? (r.s1.compute_s - r.s0.compute_s) * 1e3 / nb : 0.0;
	double nref = r.s1.refused - r.s0.refused;
	double fast = nref > 0 ? 100.0 * (r.s1.refused_1ms - r.s0.refused_1ms) / nref : 100.0;
	*pt = (load_point){ r.ok_rps, r.p50, r.p99, rate };
	if (o->json)
		printf("{\"rate\":%.1f,\"arrivals\":\"%s\",\"scheduled\":%" PRIu64 ",\"sent\":%" PRIu64
		       ",\"ok\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"dropped\":%" PRIu64
		       ",\"errors\":%" PRIu64 ",\"sent_rps\":%.1f,\"ok_rps\":%.1f,\"p50_ms\":%.3f,"
		       "\"p90_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
		       "\"refused_p50_ms\":%.3f,\"refused_p99_ms\":%.3f,\"late_p99_ms\":%.3f,"
		       "\"server_refused_1ms_pct\":%.1f,\"server_queued_max\":%.0f,\"server_rss_max_mb\":%.1f,\"server_rss_start_mb\":%.1f,"
		       "\"server_queue_ms\":%.3f,\"server_compute_ms\":%.3f,\"mean_batch\":%.2f}\n",
		       rate, o->poisson ? "poisson" : "fixed", r.scheduled, r.sent, r.ok, r.rejected,
		       r.dropped, r.errors, r.sent_rps, r.ok_rps, r.p50, r.p90, r.p95, r.p99, r.max,
		       r.rej_p50, r.rej_p99, r.late_p99, fast, r.queued_max, r.rss_max / 1048576.0,
		       r.s0.rss / 1048576.0, qms, cms, nb > 0 ? nr / nb : 0.0);
	else {
		printf("%9.1f %9.1f %9.1f %8.3f %8.3f %8.3f %8.3f %8" PRIu64 " %8.3f %7" PRIu64
		       " %6" PRIu64, rate, r.sent_rps, r.ok_rps, r.p50, r.p90, r.p95, r.p99,
		       r.rejected, r.rej_p99, r.dropped, r.errors);
		if (r.s1.ok)
			printf("   queue max %.0f, rss %.1f MB, batch %.1f rows", r.queued_max,
			       r.rss_max / 1048576.0, nb > 0 ? nr / nb : 0.0);
		if (r.s1.ok && nref > 0)
			printf(", %.1f%% refused within 1 ms", fast);
		if (r.errors)
			printf("   (last error: %s %ld)", r.last_error < 0 ? "curl" : "HTTP",
			       r.last_error < 0 ? -r.last_error : r.last_error);
		printf("\n");
	}
	fflush(stdout);
	return r.errors;
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
			run_level(o, o->c_hi, body, blen, &lv[n], 0);
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
	if (o->svg) {
		load_point pt[256];
		for (int i = 0; i < n; i++)
			pt[i] = (load_point){ lv[i].rps, lv[i].p50, lv[i].p99, i + 1 };
		if (load_svg(o->svg, "pipe-load --sweep", "setting (row of the table)", pt, n) < 0)
			rc = 1;
	}
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
		"  --svg FILE            chart: p50 and p99 against answered req/s, a point a level\n"
		"open loop (instead of --concurrency):\n"
		"  --rate R[,R...]       send R requests/s whatever the answers, a level per R;\n"
		"                        latency counted from each request's scheduled time;\n"
		"                        prints sent and answered req/s, refusals (429/503) and\n"
		"                        their p99, drops (all --max-inflight busy)\n"
		"  --arrivals poisson|fixed  gaps between sends (poisson)\n"
		"  --seed N              for the Poisson gaps (1)\n"
		"  --max-inflight N      requests outstanding at most; beyond: dropped (1024)\n"
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
		{ "rate", 1, 0, 'R' }, { "arrivals", 1, 0, 'A' }, { "seed", 1, 0, 'e' },
		{ "max-inflight", 1, 0, 'M' }, { "svg", 1, 0, 'g' },
		{ 0, 0, 0, 0 }
	};
	*o = (opts){ .c_lo = 1, .c_hi = 64, .rows = 1, .dim = 784, .duration = 5, .warmup = 1,
		     .usd_per_hour = 1, .poisson = 1, .seed = 1, .max_inflight = 1024 };
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
		case 'R': {
			const char *q = optarg;
			for (o->nrates = 0; *q && o->nrates < 16; o->nrates++) {
				double r = strtod(q, &e);
				if (e == q || !(r > 0 && r <= 1e7) || (*e && *e != ','))
					break;
				o->rates[o->nrates] = r;
				q = *e ? e + 1 : e;
			}
			if (*q || !o->nrates)
				return fprintf(stderr, "pipe-load: --rate: expected requests/s > 0 like 500 or 100,200,400 (at most 16), got '%s'\n", optarg), 2;
			break;
		}
		case 'A':
			if (strcmp(optarg, "poisson") && strcmp(optarg, "fixed"))
				return fprintf(stderr, "pipe-load: --arrivals: expected poisson or fixed, got '%s'\n", optarg), 2;
			o->poisson = !strcmp(optarg, "poisson");
			break;
		case 'e': o->seed = strtoull(optarg, &e, 10); if (*e || e == optarg) return fprintf(stderr, "pipe-load: --seed: expected a number\n"), 2; break;
		case 'M': o->max_inflight = (int)strtol(optarg, &e, 10); if (*e || o->max_inflight < 1 || o->max_inflight > 65536) return fprintf(stderr, "pipe-load: --max-inflight: expected 1..65536\n"), 2; break;
		case 'g': o->svg = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	o->url = argv[optind];
	if (o->nrates && o->sweep)
		return fprintf(stderr, "pipe-load: --rate and --sweep do not go together (the sweep is closed-loop)\n"), 2;
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
	uint64_t errors = 0;
	load_point pt[32];
	int np = 0;
	if (o.nrates) {
		if (!o.json)
			printf("   rate/s    sent/s      ok/s   p50 ms   p90 ms   p95 ms   p99 ms  refused ref p99  dropped errors\n");
		for (int i = 0; i < o.nrates; i++)
			errors += run_rate(&o, o.rates[i], body, blen, &pt[np++]);
	} else {
		if (!o.json)
			printf("concurrency      req/s   p50 ms   p90 ms   p95 ms   p99 ms  errors\n");
		for (int n = o.c_lo; n <= o.c_hi && np < 32;
		     n = n * 2 > o.c_hi && n < o.c_hi ? o.c_hi : n * 2) {
			level lv;
			errors += run_level(&o, n, body, blen, &lv, 1);
			pt[np++] = (load_point){ lv.rps, lv.p50, lv.p99, n };
		}
	}
	free(body);
	if (o.svg && load_svg(o.svg, o.nrates ? "pipe-load: open loop" : "pipe-load: closed loop",
			      o.nrates ? "offered requests/s (--rate)" : "clients (--concurrency)",
			      pt, np) < 0)
		errors++;
	curl_global_cleanup();
	return errors ? 1 : 0;
}
