/*
 * pipe-serve - serve models saved by `pipe-train --save` over HTTP, with a
 * dynamic batcher (pf_batcher) in front of each, speaking TF Serving's REST
 * API and the KServe v2 (Open Inference) protocol.
 *
 *   pipe-serve --model-dir DIR [--port 8501] [--max-batch-size 32 ...]
 *
 * DIR is laid out as TF Serving's model base path: DIR/NAME/VERSION/ holds
 * the one file pipe-train --save wrote, whatever its name.  Which
 * versions of each NAME serve is its version policy (serve_versions.c):
 * the highest that loads by default (latest), the N highest, all, or a
 * list; labels name versions.  While serving, a thread brings each model
 * in line with its policy and the disk every --poll-ms: a new version that
 * loads is served (requests already routed to a version no longer served
 * finish on it, and its batcher is drained once none holds it: none is
 * dropped); one that does not load is refused with its reason, logged
 * once, tried again when its files change, and the old versions keep
 * serving.
 *
 * SIGTERM or SIGINT: stop taking connections, answer every request in
 * flight, exit 0.  Exit status 1 on a runtime error, 2 on a usage error.
 */
#include "config.h"

#include <dirent.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "pf_batcher.h"
#include "pf_servable.h"
#include "serve_stats.h"
#include "serve_versions.h"

#define MAX_MODELS 64

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pipe-serve --model-dir DIR [options]\n"
		"  --model-dir DIR          DIR/NAME/VERSION/FILE (a pipe-train --save file)\n"
		"  --port N                 HTTP port (8501; 0 = any free port, printed)\n"
		"  --http-threads N         libmicrohttpd thread pool, one epoll set each (4)\n"
		"  --device KIND            cpu, cuda or auto (cpu)\n"
		"  --feed-depth N           batches through the training device feed, N in\n"
		"                           flight per batch thread (copy of the next overlaps\n"
		"                           the compute of one); 0 = direct: copy, compute, sync (2)\n"
		"batcher (TF Serving / Triton meaning):\n"
		"  --max-batch-size N       rows of a batch, and of a request, at most (32)\n"
		"  --batch-timeout-us N     wait for company at most N us (1000)\n"
		"  --allowed-batch-sizes L  pad a batch up to the next size of L (e.g. 8,16,32)\n"
		"  --preferred-batch-sizes L  run as soon as a size of L can be filled\n"
		"  --num-batch-threads N    batches computed at once (1)\n"
		"  --max-enqueued N         requests queued at most; beyond: 429 at once (1024)\n"
		"  --max-execution-batch-size N  split large requests into batches of N\n"
		"  --preserve-ordering      answer in arrival order\n"
		"  --slo-p99-ms MS          adaptive: batch size limit and wait chosen online\n"
		"                           to hold the p99 (replaces --batch-timeout-us)\n"
		"  --priority-levels N      priority queues (1); v2 parameters.priority 1..N\n"
		"  --default-priority-level N  level of requests without one (1)\n"
		"  --priority-queue-policy LEVEL:MAX_QUEUE:TIMEOUT_US:reject|delay\n"
		"  --request-timeout-us N   reject a request not computed within N us (0 = off)\n"
		"quotas and logs:\n"
		"  --max-body-bytes N       413 beyond (16777216)\n"
		"  --max-instances N        rows per request, 413 beyond (max batch size)\n"
		"  --access-log FILE|-|none one line per request (-: stderr, the default)\n"
		"  --drain-timeout-ms N     on SIGTERM, wait this long for requests (30000)\n"
		"  --poll-ms N              look for new version directories every N ms (1000; 0 = off)\n"
		"  --stats FILE             a stats file for pipe-stat: each batch a step (queue\n"
		"                           wait as stall, compute, rows), adaptive decisions as events\n"
		"versions (TF Serving's model_version_policy and version_labels):\n"
		"  --model-version-policy [NAME=]latest[:N]|all|specific:V[,V...]\n"
		"                           which versions serve (latest = latest:1); NAME= for\n"
		"                           one model, else every model; repeatable\n"
		"  --version-label [NAME:]LABEL=V  /labels/LABEL routes to version V; repeatable\n");
}

enum {
	O_DIR = 256, O_PORT, O_HTTPT, O_DEV, O_MAXB, O_TIMEOUT, O_ALLOWED,
	O_PREF, O_NBT, O_MAXENQ, O_MAXEXEC, O_ORDER, O_PLEVELS, O_PDEF,
	O_PPOL, O_REQTO, O_MAXBODY, O_MAXINST, O_ALOG, O_DRAIN, O_POLL, O_SLO,
	O_VPOL, O_VLABEL, O_STATS, O_FEED
};

static const struct option longopts[] = {
	{ "model-dir", 1, 0, O_DIR }, { "port", 1, 0, O_PORT },
	{ "http-threads", 1, 0, O_HTTPT }, { "device", 1, 0, O_DEV },
	{ "max-batch-size", 1, 0, O_MAXB }, { "batch-timeout-us", 1, 0, O_TIMEOUT },
	{ "allowed-batch-sizes", 1, 0, O_ALLOWED },
	{ "preferred-batch-sizes", 1, 0, O_PREF },
	{ "num-batch-threads", 1, 0, O_NBT }, { "max-enqueued", 1, 0, O_MAXENQ },
	{ "max-execution-batch-size", 1, 0, O_MAXEXEC },
	{ "preserve-ordering", 0, 0, O_ORDER }, { "priority-levels", 1, 0, O_PLEVELS },
	{ "default-priority-level", 1, 0, O_PDEF },
	{ "priority-queue-policy", 1, 0, O_PPOL },
	{ "request-timeout-us", 1, 0, O_REQTO }, { "max-body-bytes", 1, 0, O_MAXBODY },
	{ "max-instances", 1, 0, O_MAXINST }, { "access-log", 1, 0, O_ALOG },
	{ "drain-timeout-ms", 1, 0, O_DRAIN }, { "poll-ms", 1, 0, O_POLL },
	{ "slo-p99-ms", 1, 0, O_SLO },
	{ "model-version-policy", 1, 0, O_VPOL }, { "version-label", 1, 0, O_VLABEL },
	{ "stats", 1, 0, O_STATS }, { "feed-depth", 1, 0, O_FEED },
	{ "help", 0, 0, 'h' },
	{ 0, 0, 0, 0 }
};

typedef struct opts {
	const char *dir, *device, *alog, *stats;
	pf_batcher_opts b;
	serve_cfg cfg;
	long long drain_ms, poll_ms;
	serve_policy policy;        /* the default version policy */
	struct { char name[128]; serve_policy p; } npol[MAX_MODELS];
	int nnpol;
	struct { char name[128]; serve_label l; } labels[MAX_MODELS];
	int nlabels;
} opts;

static int num(const char *name, const char *arg, long long lo, long long hi,
	       long long *v)
{
	char *end;
	*v = strtoll(arg, &end, 10);
	if (end == arg || *end || *v < lo || *v > hi) {
		fprintf(stderr, "pipe-serve: --%s: expected %lld..%lld, got '%s'\n", name,
			lo, hi, arg);
		return 2;
	}
	return 0;
}

static int size_list(const char *name, const char *arg, int *v, int *n)
{
	*n = 0;
	const char *p = arg;
	while (*p) {
		char *end;
		long x = strtol(p, &end, 10);
		if (end == p || x < 1 || x > (1 << 20) || *n == PF_BATCH_MAX_SIZES ||
		    (*end && *end != ',')) {
			fprintf(stderr, "pipe-serve: --%s: expected sizes like 8,16,32, got '%s'\n",
				name, arg);
			return 2;
		}
		v[(*n)++] = (int)x;
		p = *end ? end + 1 : end;
	}
	return 0;
}

static int policy(const char *arg, opts *o)
{
	int lvl, maxq;
	unsigned long long to;
	char act[16];
	if (sscanf(arg, "%d:%d:%llu:%15s", &lvl, &maxq, &to, act) != 4 || lvl < 1 ||
	    lvl > PF_BATCH_MAX_PRIORITIES || maxq < 0 ||
	    (strcmp(act, "reject") && strcmp(act, "delay"))) {
		fprintf(stderr, "pipe-serve: --priority-queue-policy: expected LEVEL:MAX_QUEUE:TIMEOUT_US:reject|delay, got '%s'\n",
			arg);
		return 2;
	}
	pf_batch_queue_policy *p = &o->b.prio[lvl - 1];
	p->max_queue_size = maxq;
	p->default_timeout_us = to;
	p->timeout_action = strcmp(act, "delay") ? PF_BATCH_REJECT : PF_BATCH_DELAY;
	return 0;
}

static int one_opt(int c, const char *a, opts *o)
{
	long long v = 0;
	int rc = 0;
	switch (c) {
	case O_DIR: o->dir = a; return 0;
	case O_DEV: o->device = a; return 0;
	case O_ALOG: o->alog = a; return 0;
	case O_STATS: o->stats = a; return 0;
	case O_ORDER: o->b.preserve_ordering = 1; return 0;
	case O_PPOL: return policy(a, o);
	case O_VPOL: {
		char name[128];
		serve_policy p;
		if (serve_policy_parse(a, name, sizeof(name), &p) < 0)
			return 2;
		if (!name[0]) {
			o->policy = p;
			return 0;
		}
		if (o->nnpol == MAX_MODELS)
			return fprintf(stderr, "pipe-serve: --model-version-policy: at most %d\n", MAX_MODELS), 2;
		snprintf(o->npol[o->nnpol].name, sizeof(o->npol[0].name), "%s", name);
		o->npol[o->nnpol++].p = p;
		return 0;
	}
	case O_VLABEL:
		if (o->nlabels == MAX_MODELS)
			return fprintf(stderr, "pipe-serve: --version-label: at most %d\n", MAX_MODELS), 2;
		if (serve_label_parse(a, o->labels[o->nlabels].name, sizeof(o->labels[0].name),
				      &o->labels[o->nlabels].l) < 0)
			return 2;
		o->nlabels++;
		return 0;
	case O_ALLOWED:
		return size_list("allowed-batch-sizes", a, o->b.allowed_batch_sizes, &o->b.n_allowed);
	case O_PREF:
		return size_list("preferred-batch-sizes", a, o->b.preferred_batch_sizes,
				 &o->b.n_preferred);
	case O_PORT: rc = num("port", a, 0, 65535, &v); o->cfg.port = (int)v; break;
	case O_HTTPT: rc = num("http-threads", a, 1, 256, &v); o->cfg.http_threads = (int)v; break;
	case O_MAXB: rc = num("max-batch-size", a, 1, 1 << 20, &v); o->b.max_batch_size = (int)v; break;
	case O_TIMEOUT: rc = num("batch-timeout-us", a, 0, 60000000, &v); o->b.batch_timeout_us = (uint64_t)v; break;
	case O_FEED: rc = num("feed-depth", a, 0, 16, &v); o->b.depth = (int)v; break;
	case O_NBT: rc = num("num-batch-threads", a, 1, 256, &v); o->b.num_batch_threads = (int)v; break;
	case O_MAXENQ: rc = num("max-enqueued", a, 1, 1 << 24, &v); o->b.max_enqueued = (int)v; break;
	case O_MAXEXEC: rc = num("max-execution-batch-size", a, 1, 1 << 20, &v); o->b.max_execution_batch_size = (int)v; break;
	case O_PLEVELS: rc = num("priority-levels", a, 1, PF_BATCH_MAX_PRIORITIES, &v); o->b.npriorities = (int)v; break;
	case O_PDEF: rc = num("default-priority-level", a, 1, PF_BATCH_MAX_PRIORITIES, &v); o->cfg.default_priority = (int)v; break;
	case O_REQTO: rc = num("request-timeout-us", a, 0, 3600000000LL, &v); o->cfg.request_timeout_us = (uint64_t)v; break;
	case O_MAXBODY: rc = num("max-body-bytes", a, 1, 1LL << 32, &v); o->cfg.max_body_bytes = (size_t)v; break;
	case O_MAXINST: rc = num("max-instances", a, 1, 1 << 20, &v); o->cfg.max_instances = (int)v; break;
	case O_DRAIN: rc = num("drain-timeout-ms", a, 0, 3600000, &v); o->drain_ms = v; break;
	case O_POLL: rc = num("poll-ms", a, 0, 3600000, &v); o->poll_ms = v; break;
	case O_SLO: {
		char *end;
		o->b.slo_p99_ms = strtod(a, &end);
		if (end == a || *end || !(o->b.slo_p99_ms > 0 && o->b.slo_p99_ms < 3600e3)) {
			fprintf(stderr, "pipe-serve: --slo-p99-ms: expected milliseconds > 0, got '%s'\n", a);
			return 2;
		}
		return 0;
	}
	default: usage(stderr); return 2;
	}
	return rc;
}

static int parse(int argc, char **argv, opts *o)
{
	memset(o, 0, sizeof(*o));
	o->device = "cpu";
	o->alog = "-";
	o->cfg.port = 8501;
	o->cfg.http_threads = 4;
	o->cfg.max_body_bytes = 16u << 20;
	o->cfg.default_priority = 1;
	o->b.max_batch_size = 32;
	o->b.batch_timeout_us = 1000;
	o->b.depth = 2;   /* --feed-depth: through the device feed */
	o->drain_ms = 30000;
	o->poll_ms = 1000;
	o->policy = (serve_policy){ .kind = SERVE_LATEST, .n = 1 };
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		int rc = one_opt(c, optarg, o);
		if (rc)
			return rc;
	}
	if (optind < argc || !o->dir) {
		fprintf(stderr, "pipe-serve: %s\n", optind < argc ? "unexpected argument" : "--model-dir DIR is required");
		usage(stderr);
		return 2;
	}
	if (!o->b.npriorities)
		o->b.npriorities = 1;
	if (o->cfg.default_priority > o->b.npriorities) {
		fprintf(stderr, "pipe-serve: --default-priority-level %d over --priority-levels %d\n",
			o->cfg.default_priority, o->b.npriorities);
		return 2;
	}
	o->cfg.npriorities = o->b.npriorities;
	if (!o->cfg.max_instances)
		o->cfg.max_instances = o->b.max_batch_size;
	return 0;
}

static int is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

typedef struct reloader {
	const serve_load_cfg *o;
	long long poll_ms;
	serve_slot *slots;
	int n;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
} reloader;

static void *reload_thread(void *arg)
{
	reloader *r = arg;
	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		long long ns = ts.tv_nsec + r->poll_ms * 1000000LL;
		ts.tv_sec += (time_t)(ns / 1000000000LL);
		ts.tv_nsec = (long)(ns % 1000000000LL);
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		if (r->stop)
			break;
		pthread_mutex_unlock(&r->mu);
		for (int i = 0; i < r->n; i++)
			serve_versions_sync(r->o, &r->slots[i]);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* Set up slot for model name: its policy and labels (the flags naming it,
 * else the default), then its versions.  0, or -1 when none serves. */
static int load_model(const opts *o, const serve_load_cfg *lc, const char *name,
		      serve_slot *slot)
{
	memset(slot, 0, sizeof(*slot));
	snprintf(slot->name, sizeof(slot->name), "%.127s", name);
	pthread_mutex_init(&slot->mu, NULL);
	slot->policy = o->policy;
	for (int i = 0; i < o->nnpol; i++)
		if (!strcmp(o->npol[i].name, name))
			slot->policy = o->npol[i].p;
	for (int i = 0; i < o->nlabels; i++)
		if ((!o->labels[i].name[0] || !strcmp(o->labels[i].name, name)) &&
		    slot->nlabels < SERVE_MAX_LABELS)
			slot->labels[slot->nlabels++] = o->labels[i].l;
	if (serve_versions_sync(lc, slot) > 0)
		return 0;
	pthread_mutex_destroy(&slot->mu);
	return -1;
}

/* A name the flags give that is not a model directory: a usage error. */
static int check_names(const opts *o, const serve_slot *slots, int n)
{
	for (int k = 0; k < o->nnpol + o->nlabels; k++) {
		const char *nm = k < o->nnpol ? o->npol[k].name : o->labels[k - o->nnpol].name;
		int found = !nm[0];
		for (int i = 0; i < n && !found; i++)
			found = !strcmp(slots[i].name, nm);
		if (!found) {
			fprintf(stderr, "pipe-serve: --%s names model '%s', which is not served from %s\n",
				k < o->nnpol ? "model-version-policy" : "version-label", nm, o->dir);
			return -1;
		}
	}
	return 0;
}

static int load_models(const opts *o, const serve_load_cfg *lc, serve_slot *slots)
{
	DIR *d = opendir(o->dir);
	if (!d) {
		fprintf(stderr, "pipe-serve: --model-dir %s: cannot open\n", o->dir);
		return -1;
	}
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < MAX_MODELS) {
		char p[4096];
		if ((size_t)snprintf(p, sizeof(p), "%s/%s", o->dir, e->d_name) >= sizeof(p) ||
		    e->d_name[0] == '.' || !is_dir(p))
			continue;
		if (load_model(o, lc, e->d_name, &slots[n]) == 0)
			n++;
		else
			fprintf(stderr, "pipe-serve: %s: no version loads\n", p);
	}
	closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	opts o;
	int rc = parse(argc, argv, &o);
	if (rc)
		return rc;
	/* Block the stop signals in every thread; main waits for them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(o.alog, "-"))
		o.cfg.access_log = stderr;
	else if (strcmp(o.alog, "none")) {
		o.cfg.access_log = fopen(o.alog, "a");
		if (!o.cfg.access_log) {
			fprintf(stderr, "pipe-serve: --access-log %s: cannot open\n", o.alog);
			return 1;
		}
	}
	static serve_slot slots[MAX_MODELS];
	serve_load_cfg lc = { o.dir, o.device, o.b, NULL };
	if (o.stats && !(lc.stats = serve_stats_open(o.stats, argc, argv, o.b.max_batch_size,
						     o.b.slo_p99_ms > 0 ? -1 : (long long)o.b.batch_timeout_us)))
		return 1;
	int n = load_models(&o, &lc, slots);
	if (n <= 0) {
		fprintf(stderr, "pipe-serve: no model to serve under %s\n", o.dir);
		return 1;
	}
	if (check_names(&o, slots, n) < 0)
		return 2;
	int port;
	serve_server *s = serve_http_start(&o.cfg, slots, n, &port);
	if (!s)
		return 1;
	reloader rl = { .o = &lc, .poll_ms = o.poll_ms, .slots = slots, .n = n, .stop = 0 };
	pthread_mutex_init(&rl.mu, NULL);
	pthread_cond_init(&rl.cv, NULL);
	pthread_t rtid;
	int reloading = o.poll_ms > 0 && pthread_create(&rtid, NULL, reload_thread, &rl) == 0;
	printf("pipe-serve: listening on port %d\n", port);
	fflush(stdout);
	int sig;
	sigwait(&set, &sig);
	fprintf(stderr, "pipe-serve: %s: draining\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	int left = serve_http_drain_stop(s, (int)o.drain_ms);
	if (reloading) {
		pthread_mutex_lock(&rl.mu);
		rl.stop = 1;
		pthread_cond_signal(&rl.cv);
		pthread_mutex_unlock(&rl.mu);
		pthread_join(rtid, NULL);
	}
	for (int i = 0; i < n; i++) {
		serve_versions_free(&slots[i]);
		pthread_mutex_destroy(&slots[i].mu);
	}
	if (lc.stats && serve_stats_close(lc.stats) < 0)
		left = left ? left : 1;
	if (o.cfg.access_log && o.cfg.access_log != stderr)
		fclose(o.cfg.access_log);
	fprintf(stderr, "pipe-serve: stopped (%d requests unanswered)\n", left);
	return left ? 1 : 0;
}
