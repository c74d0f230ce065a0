/*
 * load_rate.c - pipe-load's open loop (--rate): requests leave at
 * scheduled times whatever the server does, as real users' would, so an
 * overloaded server shows as latency and refusals rather than as a client
 * that politely slows down (the "coordinated omission" of closed loops).
 *
 * One thread drives a curl multi handle of max_inflight easy handles (each
 * keeps its connection); a timerfd wakes it at the next scheduled time.
 * A send whose time has come while all handles are busy is dropped and
 * counted.  Latency is measured from the scheduled time, so a client that
 * falls behind adds its lateness to the figures instead of hiding it.
 * A second thread samples the server's /metrics during the window (queue
 * length, resident memory).
 */
#include "config.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

typedef struct xfer {
	CURL *h;
	double sched, sent;
	int measured;
} xfer;

typedef struct vec {
	double *v;
	size_t n, cap;
} vec;

static int push(vec *v, double x)
{
	if (v->n == v->cap) {
		size_t nc = v->cap ? 2 * v->cap : 4096;
		double *p = realloc(v->v, nc * sizeof(double));
		if (!p)
			return -1;
		v->v = p;
		v->cap = nc;
	}
	v->v[v->n++] = x;
	return 0;
}

/* The sampler: /metrics at the window's start, every 50 ms in it (the
 * maxima of the queue and the resident memory), and at its end. */
typedef struct sampler {
	const char *url;
	double t_start, t_end;
	load_rate_res *r;
	pthread_t tid;
} sampler;

static void sleep_until(double t)
{
	double d = t - load_now();
	if (d <= 0)
		return;
	struct timespec ts = { (time_t)d, (long)((d - (double)(time_t)d) * 1e9) };
	nanosleep(&ts, NULL);
}

static void *sample(void *arg)
{
	sampler *s = arg;
	sleep_until(s->t_start);
	s->r->s0 = load_scrape(s->url);
	s->r->queued_max = s->r->s0.queued;
	s->r->rss_max = s->r->s0.rss;
	for (double t = s->t_start + 0.05; t < s->t_end; t += 0.05) {
		sleep_until(t);
		load_srv x = load_scrape(s->url);
		if (x.queued > s->r->queued_max)
			s->r->queued_max = x.queued;
		if (x.rss > s->r->rss_max)
			s->r->rss_max = x.rss;
	}
	sleep_until(s->t_end);
	s->r->s1 = load_scrape(s->url);
	if (s->r->s1.rss > s->r->rss_max)
		s->r->rss_max = s->r->s1.rss;
	return NULL;
}

/* splitmix64, for the Poisson gaps. */
static double uniform(unsigned long long *st)
{
	unsigned long long z = (*st += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return ((double)(z >> 11) + 1.0) / 9007199254740993.0;   /* (0, 1] */
}

/* An answer: classified and timed if it was scheduled in the window. */
static void finish(xfer *x, CURLcode rc, load_rate_res *r, vec *ok, vec *rej)
{
	double t = load_now();
	long code = 0;
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
	if (!x->measured)
		return;
	if (rc == CURLE_OK && code == 200) {
		r->ok++;
		push(ok, (t - x->sched) * 1e3);
	} else if (rc == CURLE_OK && (code == 429 || code == 503)) {
		r->rejected++;
		push(rej, (t - x->sent) * 1e3);
	} else {
		r->errors++;
		r->last_error = rc != CURLE_OK ? -(long)rc : code;
	}
}

static xfer *setup(const load_rate_opts *o, CURLM *m, struct curl_slist *hd)
{
	xfer *x = calloc((size_t)o->max_inflight, sizeof(*x));
	if (!x)
		return NULL;
	for (int i = 0; i < o->max_inflight; i++) {
		CURL *h = x[i].h = curl_easy_init();
		if (!h)
			return x;   /* the caller sees the NULL handle */
		load_post_setup(h, o->url, o->body, o->body_len, hd, 30L);
		curl_easy_setopt(h, CURLOPT_PRIVATE, &x[i]);
	}
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)o->max_inflight);
	return x;
}

/* Arm the timerfd for monotonic time t. */
static void arm(int tfd, double t)
{
	struct itimerspec it = { { 0, 0 }, { (time_t)t, (long)((t - (double)(time_t)t) * 1e9) } };
	if (it.it_value.tv_sec == 0 && it.it_value.tv_nsec == 0)
		it.it_value.tv_nsec = 1;
	timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL);
}

/* The loop: send what is due, collect answers, sleep until the next send
 * or an answer.  Returns once every request sent was answered (or timed
 * out) after the last scheduled time. */
static void drive(const load_rate_opts *o, CURLM *m, xfer *x, int tfd, double t0,
		  load_rate_res *r, vec *ok, vec *rej, vec *late)
{
	int cap = o->max_inflight, nfree = cap, inflight = 0;
	int *freel = malloc((size_t)cap * sizeof(int));
	if (!freel)
		return;
	for (int i = 0; i < cap; i++)
		freel[i] = i;
	double t_start = t0 + o->warmup, t_end = t_start + o->duration;
	double next = t0;
	unsigned long long st = o->seed;
	for (;;) {
		double now = load_now();
		for (; next < t_end && next <= now;
		     next += o->poisson ? -log(uniform(&st)) / o->rate : 1.0 / o->rate) {
			int measured = next >= t_start;
			r->scheduled += (uint64_t)measured;
			if (!nfree) {
				r->dropped += (uint64_t)measured;
				continue;
			}
			xfer *q = &x[freel[--nfree]];
			q->sched = next;
			q->sent = now;
			q->measured = measured;
			curl_multi_add_handle(m, q->h);
			inflight++;
			if (measured) {
				r->sent++;
				push(late, (now - next) * 1e3);
			}
		}
		if (next >= t_end && !inflight)
			break;
		int running;
		curl_multi_perform(m, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			xfer *q;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
			finish(q, msg->data.result, r, ok, rej);
			curl_multi_remove_handle(m, q->h);
			freel[nfree++] = (int)(q - x);
			inflight--;
		}
		struct curl_waitfd w = { .fd = tfd, .events = CURL_WAIT_POLLIN };
		if (next < t_end) {
			if (next <= load_now())
				continue;
			arm(tfd, next);
			curl_multi_poll(m, &w, 1, 1000, NULL);
			uint64_t ticks;
			if (read(tfd, &ticks, sizeof(ticks)) < 0)
				ticks = 0;   /* not yet due: an answer woke us */
		} else {
			curl_multi_poll(m, NULL, 0, 100, NULL);
		}
	}
	free(freel);
}

int load_rate_run(const load_rate_opts *o, load_rate_res *r)
{
	memset(r, 0, sizeof(*r));
	CURLM *m = curl_multi_init();
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct curl_slist *hd = load_headers(o->json_len);
	xfer *x = m ? setup(o, m, hd) : NULL;
	int bad = !m || tfd < 0 || !x;
	for (int i = 0; !bad && i < o->max_inflight; i++)
		bad = !x[i].h;
	vec ok = { 0 }, rej = { 0 }, late = { 0 };
	if (!bad) {
		double t0 = load_now();
		sampler s = { o->url, t0 + o->warmup, t0 + o->warmup + o->duration, r, 0 };
		int sampling = pthread_create(&s.tid, NULL, sample, &s) == 0;
		drive(o, m, x, tfd, t0, r, &ok, &rej, &late);
		if (sampling)
			pthread_join(s.tid, NULL);
		r->sent_rps = (double)r->sent / o->duration;
		r->ok_rps = (double)r->ok / o->duration;
		r->p50 = load_pct(ok.v, ok.n, 0.5);
		r->p90 = load_pct(ok.v, ok.n, 0.9);
		r->p95 = load_pct(ok.v, ok.n, 0.95);
		r->p99 = load_pct(ok.v, ok.n, 0.99);
		r->max = load_pct(ok.v, ok.n, 1.0);
		r->rej_p50 = load_pct(rej.v, rej.n, 0.5);
		r->rej_p99 = load_pct(rej.v, rej.n, 0.99);
		r->late_p99 = load_pct(late.v, late.n, 0.99);
	}
	for (int i = 0; x && i < o->max_inflight; i++)
		if (x[i].h)
			curl_easy_cleanup(x[i].h);
	free(x);
	free(ok.v);
	free(rej.v);
	free(late.v);
	curl_slist_free_all(hd);
	if (m)
		curl_multi_cleanup(m);
	if (tfd >= 0)
		close(tfd);
	return bad ? -1 : 0;
}
