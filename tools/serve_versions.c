/*
 * serve_versions.c - pipe-serve's model directory: version policies
 * (latest N, all, specific, as TF Serving's model_version_policy), labels,
 * loading versions and reconciling the set served with the disk while
 * serving (see serve_versions.h).
 */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "serve_stats.h"
#include "serve_versions.h"

/* ---- flags ------------------------------------------------------------------ */

/* Split "NAME<sep>REST" when sep comes before any '=' ... : the name, and
 * the rest; no sep: name "" and arg whole. */
static const char *split_name(const char *arg, char sep, char *name, size_t ncap)
{
	const char *s = strchr(arg, sep);
	name[0] = 0;
	if (!s || s == arg || (size_t)(s - arg) >= ncap)
		return arg;
	memcpy(name, arg, (size_t)(s - arg));
	name[s - arg] = 0;
	return s + 1;
}

static int version_list(const char *p, serve_policy *pol)
{
	pol->n = 0;
	while (*p) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v < 0 || pol->n == SERVE_MAX_VERSIONS || (*end && *end != ','))
			return -1;
		pol->v[pol->n++] = v;
		p = *end ? end + 1 : end;
	}
	return pol->n ? 0 : -1;
}

int serve_policy_parse(const char *arg, char *name, size_t ncap, serve_policy *p)
{
	const char *s = strchr(arg, '=') ? split_name(arg, '=', name, ncap) : (name[0] = 0, arg);
	memset(p, 0, sizeof(*p));
	char *end;
	int rc = 0;
	if (!strcmp(s, "latest")) {
		p->kind = SERVE_LATEST;
		p->n = 1;
	} else if (!strncmp(s, "latest:", 7)) {
		p->kind = SERVE_LATEST;
		p->n = (int)strtol(s + 7, &end, 10);
		rc = *end || end == s + 7 || p->n < 1 || p->n > SERVE_MAX_VERSIONS ? -1 : 0;
	} else if (!strcmp(s, "all")) {
		p->kind = SERVE_ALL;
	} else if (!strncmp(s, "specific:", 9)) {
		p->kind = SERVE_SPECIFIC;
		rc = version_list(s + 9, p);
	} else {
		rc = -1;
	}
	if (rc < 0)
		fprintf(stderr, "pipe-serve: --model-version-policy: expected [NAME=]latest[:N], all "
			"or specific:V[,V...] (N and the list at most %d), got '%s'\n",
			SERVE_MAX_VERSIONS, arg);
	return rc;
}

int serve_label_parse(const char *arg, char *name, size_t ncap, serve_label *l)
{
	const char *eq = strchr(arg, '=');
	const char *c = strchr(arg, ':');
	const char *s = c && eq && c < eq ? split_name(arg, ':', name, ncap) : (name[0] = 0, arg);
	eq = strchr(s, '=');
	char *end = NULL;
	long v = eq ? strtol(eq + 1, &end, 10) : -1;
	size_t n = eq ? (size_t)(eq - s) : 0;
	int good = eq && n > 0 && n < sizeof(l->name) && end != eq + 1 && !*end && v >= 0;
	for (size_t i = 0; good && i < n; i++)
		good = s[i] != '/' && s[i] != ':' && s[i] > 32 && s[i] < 127;
	if (!good) {
		fprintf(stderr, "pipe-serve: --version-label: expected [NAME:]LABEL=VERSION "
			"(LABEL without '/' or ':'), got '%s'\n", arg);
		return -1;
	}
	memcpy(l->name, s, n);
	l->name[n] = 0;
	l->version = v;
	return 0;
}

/* ---- the directory ------------------------------------------------------------ */

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

static int cmp_desc(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return x > y ? -1 : x < y;
}

/* The version directories of base (numeric names), highest first, at most
 * cap: the count. */
static int disk_versions(const char *base, long *v, int cap)
{
	int n = 0;
	DIR *d = opendir(base);
	struct dirent *e;
	while (d && (e = readdir(d)) && n < cap) {
		char *end;
		long x = strtol(e->d_name, &end, 10);
		if (end != e->d_name && !*end && x >= 0)
			v[n++] = x;
	}
	if (d)
		closedir(d);
	qsort(v, (size_t)n, sizeof(long), cmp_desc);
	return n;
}

/* A sum of version ver's directory contents (sizes and mtimes), so that a
 * refused version is tried again once its file changes. */
static long long version_sig(const char *base, long ver)
{
	char dir[4300], p[4600];
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

/* ---- the stats file: a batch is a step ------------------------------------------ */

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The servable's compute, timed: one step of the stats file with the
 * batch's oldest request's queue wait as its stall, the compute as its
 * compute, its rows from requests as its samples. */
static int stat_compute(void *ctx, pf_batch *b, pf_error *err)
{
	serve_model *m = ctx;
	if (m->hook.complete)    /* the device feed: a step once it completes */
		return m->hook.compute(m->hook.ctx, b, err);
	uint64_t t0 = mono_ns();
	int rc = m->hook.compute(m->hook.ctx, b, err);
	serve_stats_batch(m->hook.st, b->wait_ns, mono_ns() - t0, 0, 0, (uint32_t)b->rows);
	return rc;
}

/* The device feed's batch, completed: timed on the streams (copy on the
 * copy stream, compute from the compute stream starting it to its answers
 * here), its copy placed before the step's end for a trace. */
static int stat_complete(void *ctx, pf_batch *b, pf_error *err)
{
	serve_model *m = ctx;
	int rc = m->hook.complete(m->hook.ctx, b, err);
	uint64_t now = mono_ns(), comp = 0, h2d = 0, lead = 0;
	if (b->compute_start_ns && b->compute_start_ns <= now)
		comp = now - b->compute_start_ns;
	if (b->copy_start_ns && b->copy_end_ns >= b->copy_start_ns && b->copy_start_ns <= now) {
		h2d = b->copy_end_ns - b->copy_start_ns;
		lead = now - b->copy_start_ns;
	}
	serve_stats_batch(m->hook.st, b->wait_ns, comp, h2d, lead, (uint32_t)b->rows);
	return rc;
}

static void *stat_alloc(void *ctx, int thread, size_t n)
{
	serve_model *m = ctx;
	return m->hook.alloc ? m->hook.alloc(m->hook.ctx, thread, n) : malloc(n);
}

static void stat_free(void *ctx, int thread, void *p)
{
	serve_model *m = ctx;
	if (m->hook.free)
		m->hook.free(m->hook.ctx, thread, p);
	else
		free(p);
}

/* The adaptive decisions on stderr, and as consumer events (knob
 * batch_limit) of the stats file. */
static void stat_log(void *ctx, const char *line)
{
	serve_model *m = ctx;
	int from, to;
	fprintf(stderr, "pipe-serve: %s\n", line);
	if (sscanf(line, "adaptive: batch limit %d -> %d", &from, &to) == 2)
		serve_stats_limit(m->hook.st, from, to, line + 10);
}

/* Put m between its batcher and its servable (bo has the servable's hooks). */
static void stat_wrap(serve_model *m, struct pf_stats *st, pf_batcher_opts *bo)
{
	m->hook.compute = bo->compute;
	m->hook.complete = bo->complete;
	m->hook.alloc = bo->alloc;
	m->hook.free = bo->free;
	m->hook.ctx = bo->ctx;
	m->hook.st = st;
	bo->compute = stat_compute;
	if (bo->complete)
		bo->complete = stat_complete;
	bo->alloc = stat_alloc;
	bo->free = stat_free;
	bo->log = stat_log;
	bo->ctx = m;
}

/* Load version ver of NAME: a new serve_model, or NULL with the reason on
 * stderr. */
static serve_model *load_version(const serve_load_cfg *o, const char *name, long ver)
{
	char vdir[4400], msg[600];
	snprintf(vdir, sizeof(vdir), "%s/%s/%ld", o->dir, name, ver);
	serve_model *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	snprintf(m->name, sizeof(m->name), "%.127s", name);
	snprintf(m->version, sizeof(m->version), "%ld", ver);
	m->ver = ver;
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
	pf_servable_opts so = { .device = o->device, .nthreads = nt, .max_rows = cap,
				.feed_depth = o->b.depth, .timeline = o->stats != NULL };
	if (pf_servable_open_opts(&m->sv, m->path, &so, &err) < 0) {
		fprintf(stderr, "pipe-serve: %s: version %ld refused: %s\n", name, ver, err.msg);
		free(m);
		return NULL;
	}
	pf_servable_hook(m->sv, &bo);
	bo.log = log_adaptive;
	if (o->stats)
		stat_wrap(m, o->stats, &bo);
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

/* ---- reconciling ---------------------------------------------------------------- */

static serve_model *live_find(serve_slot *s, long v)
{
	for (int i = 0; i < s->nlive; i++)
		if (s->live[i]->ver == v)
			return s->live[i];
	return NULL;
}

/* Is v refused with the same files as when it was? */
static int still_refused(serve_slot *s, long v, long long sig)
{
	for (int i = 0; i < s->nrefused; i++)
		if (s->refused[i].v == v)
			return s->refused[i].sig == sig;
	return 0;
}

static void set_refused(serve_slot *s, long v, long long sig, int refused)
{
	int i = 0;
	while (i < s->nrefused && s->refused[i].v != v)
		i++;
	if (!refused) {
		if (i < s->nrefused)
			s->refused[i] = s->refused[--s->nrefused];
		return;
	}
	if (i == s->nrefused) {
		if (s->nrefused == SERVE_MAX_VERSIONS)
			i = 0;   /* forget the oldest entry: it is tried again */
		else
			s->nrefused++;
	}
	s->refused[i].v = v;
	s->refused[i].sig = sig;
}

static int wanted(const serve_policy *p, long v)
{
	if (p->kind != SERVE_SPECIFIC)
		return 1;
	for (int i = 0; i < p->n; i++)
		if (p->v[i] == v)
			return 1;
	return 0;
}

/* The live version v, or v loaded now (NULL: refused, now or before). */
static serve_model *get_version(const serve_load_cfg *cfg, serve_slot *s, const char *base,
				long v)
{
	serve_model *m = live_find(s, v);
	if (m)
		return m;
	long long sig = version_sig(base, v);
	if (still_refused(s, v, sig))
		return NULL;
	m = load_version(cfg, s->name, v);
	set_refused(s, v, sig, !m);
	if (!m && s->nlive)
		fprintf(stderr, "pipe-serve: model %s: version %s keeps serving\n", s->name,
			s->live[0]->version);
	return m;
}

/* Retire (under mu) every version of old[] not in the new set. */
static void retire_rest(serve_slot *s, serve_model **old, int nold)
{
	for (int i = 0; i < nold; i++) {
		int kept = 0;
		for (int j = 0; j < s->nlive; j++)
			kept |= s->live[j] == old[i];
		if (!kept) {
			old[i]->next = s->retired;
			s->retired = old[i];
		}
	}
}

static void log_changes(serve_slot *s, serve_model **old, int nold)
{
	for (int j = 0; j < s->nlive; j++) {
		int was = 0;
		for (int i = 0; i < nold; i++)
			was |= old[i] == s->live[j];
		if (!was && nold)
			fprintf(stderr, "pipe-serve: model %s: version %s serves now (was %s)\n",
				s->name, s->live[j]->version, old[0]->version);
	}
	for (int i = 0; i < nold; i++) {
		int kept = 0;
		for (int j = 0; j < s->nlive; j++)
			kept |= s->live[j] == old[i];
		if (!kept)
			fprintf(stderr, "pipe-serve: model %s: version %s no longer served (policy)\n",
				s->name, old[i]->version);
	}
}

static void free_unheld(serve_slot *s)
{
	pthread_mutex_lock(&s->mu);
	serve_model **pp = &s->retired;
	while (*pp) {
		serve_model *m = *pp;
		if (atomic_load(&m->refs) == 0) {
			*pp = m->next;
			pthread_mutex_unlock(&s->mu);
			free_version(m);
			pthread_mutex_lock(&s->mu);
			pp = &s->retired;
		} else {
			pp = &m->next;
		}
	}
	pthread_mutex_unlock(&s->mu);
}

int serve_versions_sync(const serve_load_cfg *cfg, serve_slot *s)
{
	char base[4200];
	snprintf(base, sizeof(base), "%s/%s", cfg->dir, s->name);
	long disk[256];
	int nd = disk_versions(base, disk, 256);
	serve_model *next[SERVE_MAX_VERSIONS];
	int nn = 0;
	int limit = s->policy.kind == SERVE_LATEST ? s->policy.n : SERVE_MAX_VERSIONS;
	for (int i = 0; i < nd && nn < limit; i++) {
		if (!wanted(&s->policy, disk[i]))
			continue;
		serve_model *m = get_version(cfg, s, base, disk[i]);
		if (m)
			next[nn++] = m;
	}
	if (!nn) {   /* nothing the policy wants loads: the old ones keep serving */
		free_unheld(s);
		return s->nlive;
	}
	serve_model *old[SERVE_MAX_VERSIONS];
	pthread_mutex_lock(&s->mu);
	int nold = s->nlive;
	memcpy(old, s->live, sizeof(old));
	memcpy(s->live, next, (size_t)nn * sizeof(next[0]));
	s->nlive = nn;
	retire_rest(s, old, nold);
	pthread_mutex_unlock(&s->mu);
	log_changes(s, old, nold);
	free_unheld(s);
	return nn;
}

void serve_versions_free(serve_slot *s)
{
	while (s->retired) {
		serve_model *m = s->retired;
		s->retired = m->next;
		free_version(m);
	}
	for (int i = 0; i < s->nlive; i++)
		free_version(s->live[i]);
	s->nlive = 0;
}

/* ---- routing ------------------------------------------------------------------ */

serve_model *serve_acquire(serve_slot *slot)
{
	pthread_mutex_lock(&slot->mu);
	serve_model *m = slot->nlive ? slot->live[0] : NULL;
	if (m)
		atomic_fetch_add(&m->refs, 1);
	pthread_mutex_unlock(&slot->mu);
	return m;
}

void serve_release(serve_model *m)
{
	if (m)
		atomic_fetch_sub(&m->refs, 1);
}

/* "2, 1" (the live versions), under mu. */
static void serving(serve_slot *s, char *out, size_t cap)
{
	size_t n = 0;
	out[0] = 0;
	for (int i = 0; i < s->nlive && n < cap; i++)
		n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "", s->live[i]->version);
}

serve_model *serve_acquire_route(serve_slot *s, const char *version, const char *label,
				 char *why, size_t cap)
{
	long v = -1;
	char *end;
	if (version[0]) {
		v = strtol(version, &end, 10);
		if (*end || v < 0)
			return snprintf(why, cap, "version '%s' of model '%s' is not a number",
					version, s->name), NULL;
	} else if (label[0]) {
		int i = 0;
		while (i < s->nlabels && strcmp(s->labels[i].name, label))
			i++;
		if (i < s->nlabels)
			v = s->labels[i].version;
		else if (strcmp(label, "latest"))
			return snprintf(why, cap, "label '%s' is not defined for model '%s'", label,
					s->name), NULL;
	}
	pthread_mutex_lock(&s->mu);
	serve_model *m = v < 0 ? (s->nlive ? s->live[0] : NULL) : live_find(s, v);
	if (m) {
		atomic_fetch_add(&m->refs, 1);
	} else {
		char list[200];
		serving(s, list, sizeof(list));
		if (label[0] && v >= 0)
			snprintf(why, cap, "label '%s' of model '%s' names version %ld, which is not "
				 "served (serving %s)", label, s->name, v, list);
		else
			snprintf(why, cap, "version %ld of model '%s' is not served (serving %s)", v,
				 s->name, list);
	}
	pthread_mutex_unlock(&s->mu);
	return m;
}
