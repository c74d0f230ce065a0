/*
 * pipe-serve - serve models saved by `pipe-train --save` over HTTP, with a
 * dynamic batcher (pf_batcher) in front of each, speaking TF Serving's REST
 * API and the KServe v2 (Open Inference) protocol.
 *
 *   pipe-serve --model-dir DIR [--port 8501] [--max-batch-size 32 ...]
 *
 * DIR is laid out as TF Serving's model base path: DIR/NAME/VERSION/ holds
 * the one file pipe-train --save wrote, whatever its name.  Each NAME is
 * served at its highest VERSION that loads (a version that fails to load
 * is skipped with its reason on stderr).  While serving, a thread looks
 * for newer version directories every --poll-ms: one that loads replaces
 * the version serving (requests already routed finish on the old one,
 * whose batcher is drained once none holds it: none is dropped); one that
 * does not is refused with its reason, logged once, tried again when its
 * files change, and the old version keeps serving.
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
#include "serve_http.h"

#define MAX_MODELS 64

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pipe-serve --model-dir DIR [options]\n"
		"  --model-dir DIR          DIR/NAME/VERSION/FILE (a pipe-train --save file)\n"
		"  --port N                 HTTP port (8501; 0 = any free port, printed)\n"
		"  --http-threads N         libmicrohttpd thread pool, one epoll set each (4)\n"
		"  --device KIND            cpu, cuda or auto (cpu)\n"
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
		"  --poll-ms N              look for new version directories every N ms (1000; 0 = off)\n");
}

enum {
	O_DIR = 256, O_PORT, O_HTTPT, O_DEV, O_MAXB, O_TIMEOUT, O_ALLOWED,
	O_PREF, O_NBT, O_MAXENQ, O_MAXEXEC, O_ORDER, O_PLEVELS, O_PDEF,
	O_PPOL, O_REQTO, O_MAXBODY, O_MAXINST, O_ALOG, O_DRAIN, O_POLL, O_SLO
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
	{ "help", 0, 0, 'h' },
	{ 0, 0, 0, 0 }
};

typedef struct opts {
	const char *dir, *device, *alog;
	pf_batcher_opts b;
	serve_cfg cfg;
	long long drain_ms, poll_ms;
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
	case O_ORDER: o->b.preserve_ordering = 1; return 0;
	case O_PPOL: return policy(a, o);
	case O_ALLOWED:
		return size_list("allowed-batch-sizes", a, o->b.allowed_batch_sizes, &o->b.n_allowed);
	case O_PREF:
		return size_list("preferred-batch-sizes", a, o->b.preferred_batch_sizes,
				 &o->b.n_preferred);
	case O_PORT: rc = num("port", a, 0, 65535, &v); o->cfg.port = (int)v; break;
	case O_HTTPT: rc = num("http-threads", a, 1, 256, &v); o->cfg.http_threads = (int)v; break;
	case O_MAXB: rc = num("max-batch-size", a, 1, 1 << 20, &v); o->b.max_batch_size = (int)v; break;
	case O_TIMEOUT: rc = num("batch-timeout-us", a, 0, 60000000, &v); o->b.batch_timeout_us = (uint64_t)v; break;
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
	o->drain_ms = 30000;
	o->poll_ms = 1000;
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

/* The one regular file in dir (not a dotfile, not a save's .tmp.): 0, or
 * -1 with why in msg. */
static int version_file(const char *dir, char *out, size_t cap, char *msg, size_t mcap)
{
	DIR *d = opendir(dir);
	if (!d)
		return snprintf(msg, mcap, "cannot open"), -1;
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d))) {
		char p[4096];
		struct stat st;
		if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp."))
			continue;
		if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) >= sizeof(p))
			continue;
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && n++ == 0 &&
		    (size_t)snprintf(out, cap, "%s", p) >= cap)
			n = 99;  /* a path too long to keep */
	}
	closedir(d);
	if (n != 1)
		return snprintf(msg, mcap, "%d model files (expected one)", n), -1;
	return 0;
}

/* The version directories of base, highest first, below `below` (< 0:
 * any): the next candidate, or -1. */
static long next_version(const char *base, long below)
{
	long best = -1;
	DIR *d = opendir(base);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char *end;
		long v = strtol(e->d_name, &end, 10);
		if (end != e->d_name && !*end && v >= 0 && (below < 0 || v < below) && v > best)
			best = v;
	}
	if (d)
		closedir(d);
	return best;
}

/* A signature of version ver's directory contents (sizes and mtimes), so
 * that a refused version is tried again once its file changes. */
static long long version_sig(const char *base, long ver)
{
	char dir[4200], p[4400];
	snprintf(dir, sizeof(dir), "%s/%ld", base, ver);
	long long sig = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		struct stat st;
		if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, e->d_name) < sizeof(p) &&
		    stat(p, &st) == 0 && S_ISREG(st.st_mode))
			sig += (long long)st.st_size * 1000003 + (long long)st.st_mtime;
	}
	if (d)
		closedir(d);
	return sig;
}

/* The batcher's adaptive decisions, one line each on stderr. */
static void log_adaptive(void *ctx, const char *line)
{
	fprintf(stderr, "pipe-serve: %s\n", line);
}

/* Load version ver of NAME: a new serve_model, or NULL with the reason on
 * stderr. */
static serve_model *load_version(const opts *o, const char *name, long ver)
{
	char vdir[4400], msg[600];
	snprintf(vdir, sizeof(vdir), "%s/%s/%ld", o->dir, name, ver);
	serve_model *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	snprintf(m->name, sizeof(m->name), "%.127s", name);
	snprintf(m->version, sizeof(m->version), "%ld", ver);
	atomic_init(&m->refs, 0);
	if (version_file(vdir, m->path, sizeof(m->path), msg, sizeof(msg)) < 0) {
		fprintf(stderr, "pipe-serve: %s: version %ld refused: %s\n", vdir, ver, msg);
		free(m);
		return NULL;
	}
	int cap = o->b.max_execution_batch_size ? o->b.max_execution_batch_size
						: o->b.max_batch_size;
	int nt = o->b.num_batch_threads ? o->b.num_batch_threads : 1;
	pf_error err = { 0 };
	pf_batcher_opts bo = o->b;
	if (pf_servable_open(&m->sv, m->path, o->device, nt, cap, &err) < 0) {
		fprintf(stderr, "pipe-serve: %s: version %ld refused: %s\n", name, ver, err.msg);
		free(m);
		return NULL;
	}
	pf_servable_hook(m->sv, &bo);
	bo.log = log_adaptive;
	if (pf_batcher_new(&m->b, &bo, &err) < 0) {
		fprintf(stderr, "pipe-serve: %s\n", err.msg);
		pf_servable_free(m->sv);
		exit(2);
	}
	m->in_dim = pf_servable_in_dim(m->sv);
	m->out_dim = pf_servable_out_dim(m->sv);
	fprintf(stderr, "pipe-serve: model %s version %s: %s on %s (%s)\n", name, m->version,
		pf_servable_arch(m->sv), pf_servable_device(m->sv), m->path);
	return m;
}

static void free_version(serve_model *m)
{
	pf_batcher_free(m->b);   /* answers anything still queued */
	pf_servable_free(m->sv);
	free(m);
}

/* Load NAME at its highest version that loads into slot. */
static int load_model(const opts *o, const char *name, serve_slot *slot)
{
	char base[4200];
	snprintf(base, sizeof(base), "%s/%s", o->dir, name);
	memset(slot, 0, sizeof(*slot));
	snprintf(slot->name, sizeof(slot->name), "%.127s", name);
	slot->refused = -1;
	pthread_mutex_init(&slot->mu, NULL);
	for (long v = next_version(base, -1); v >= 0; v = next_version(base, v)) {
		if ((slot->cur = load_version(o, name, v)))
			return 0;
		if (slot->refused < 0) {
			slot->refused = v;
			slot->refused_sig = version_sig(base, v);
		}
	}
	return -1;
}

/* The reloader's pass over one slot: a newer version that loads replaces
 * cur (a refused one is logged once, tried again when its files change);
 * retired versions no request holds any more are freed. */
static void reload_slot(const opts *o, serve_slot *slot)
{
	char base[4200];
	snprintf(base, sizeof(base), "%s/%s", o->dir, slot->name);
	long cur = strtol(slot->cur->version, NULL, 10);
	long v = next_version(base, -1);
	if (v > cur) {
		long long sig = version_sig(base, v);
		if (v != slot->refused || sig != slot->refused_sig) {
			serve_model *m = load_version(o, slot->name, v);
			if (m) {
				pthread_mutex_lock(&slot->mu);
				serve_model *old = slot->cur;
				slot->cur = m;
				old->next = slot->retired;
				slot->retired = old;
				pthread_mutex_unlock(&slot->mu);
				fprintf(stderr, "pipe-serve: model %s: version %s serves now (was %s)\n",
					slot->name, m->version, old->version);
			} else {
				slot->refused = v;
				slot->refused_sig = sig;
				fprintf(stderr, "pipe-serve: model %s: version %s keeps serving\n",
					slot->name, slot->cur->version);
			}
		}
	}
	pthread_mutex_lock(&slot->mu);
	serve_model **pp = &slot->retired;
	while (*pp) {
		serve_model *m = *pp;
		if (atomic_load(&m->refs) == 0) {
			*pp = m->next;
			pthread_mutex_unlock(&slot->mu);
			free_version(m);
			pthread_mutex_lock(&slot->mu);
			pp = &slot->retired;
		} else {
			pp = &m->next;
		}
	}
	pthread_mutex_unlock(&slot->mu);
}

typedef struct reloader {
	const opts *o;
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
		long long ns = ts.tv_nsec + r->o->poll_ms * 1000000LL;
		ts.tv_sec += (time_t)(ns / 1000000000LL);
		ts.tv_nsec = (long)(ns % 1000000000LL);
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		if (r->stop)
			break;
		pthread_mutex_unlock(&r->mu);
		for (int i = 0; i < r->n; i++)
			reload_slot(r->o, &r->slots[i]);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

static int load_models(const opts *o, serve_slot *slots)
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
		if (load_model(o, e->d_name, &slots[n]) == 0)
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
	int n = load_models(&o, slots);
	if (n <= 0) {
		fprintf(stderr, "pipe-serve: no model to serve under %s\n", o.dir);
		return 1;
	}
	int port;
	serve_server *s = serve_http_start(&o.cfg, slots, n, &port);
	if (!s)
		return 1;
	reloader rl = { .o = &o, .slots = slots, .n = n, .stop = 0 };
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
		while (slots[i].retired) {
			serve_model *m = slots[i].retired;
			slots[i].retired = m->next;
			free_version(m);
		}
		free_version(slots[i].cur);
		pthread_mutex_destroy(&slots[i].mu);
	}
	if (o.cfg.access_log && o.cfg.access_log != stderr)
		fclose(o.cfg.access_log);
	fprintf(stderr, "pipe-serve: stopped (%d requests unanswered)\n", left);
	return left ? 1 : 0;
}
