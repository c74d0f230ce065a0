/*
 * autotune.c - the AUTOTUNE controller: a thread of the iterator that, every
 * TICK_MS, compares the consumer's stall (the share of wall time
 * pf_iter_next spent waiting on the plan's last stage) with a target and,
 * when the consumer waits, raises the knob of the bottleneck stage:
 *
 *   - parallelism of a map or of shards(+map) whose working threads are
 *     busy (busy time per working thread over the window above BUSY_MIN;
 *     for a map at 1, which maps in the consumer's thread: its share of
 *     the consumer's wait), the busiest first, while the CPU the stages
 *     use plus one more such thread stays within pf_options.cpu_budget
 *     cores.  CPU is measured where a stage measures it (st.cpu_timed: a
 *     map's thread CPU clocks plus run-queue wait), else it is the time
 *     the stage's threads kept busy.  A stage that computes gets at most
 *     cpu_budget workers (threads up to the budget were started with the
 *     iterator; only `active` of them take work, so a step is cheap); a
 *     map whose busy time is mostly off the CPU (WAIT_CPU_MAX: it waits
 *     on I/O, a remote fetch, a sleep) is doubled, past the core count
 *     (its op starts the threads, its units were reserved in the memory
 *     budget at start), while the CPU its workers add fits the budget;
 *   - else the depth of an autotuned prefetch (doubled, up to what the
 *     memory budget reserved for it at start): the input keeps up on
 *     average, so the stalls are bursts a deeper queue absorbs.  A depth
 *     step is kept: it costs no CPU and memory already reserved, and a
 *     30 ms window after it says little (on a 2-core machine a consumer
 *     woken a scheduler tick late fills a 4-deep queue and stops the
 *     producer; a window's rate swings more than any gain of the step, so
 *     judged steps were taken back and the queue stayed too shallow).
 *
 * Decisions are measured over a window of at least WINDOW_MS that starts
 * again after each change, so a change is judged on its own effect: when
 * the window after a step does not deliver at least GAIN_MIN more
 * elements per second than the window before it (the step only cost CPU
 * or memory: the machine's cores are taken by others, or the bursts were
 * not the limit), the step is taken back and that stage's knob is left
 * alone from then on (a window that delivered fewer than JUDGE_MIN elements
 * is extended up to JUDGE_MAX_MS; a step still not judged is kept).  So knobs move a bounded number of times.  Knobs never change the element order (ordered map,
 * shards read in task order), so determinism holds.  Every decision goes
 * to a log of LOG_MAX entries, read with pf_iter_autotune_log.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pf_pipeline_int.h"

#define TICK_MS 10
#define WINDOW_MS 30
#define STALL_MAX 0.03   /* act when the consumer waits more than this */
#define BUSY_MIN 0.60    /* a stage whose threads are busier is a bottleneck */
#define WAIT_CPU_MAX 0.5 /* a stage whose busy time is less CPU than this waits */
#define LOG_MAX 256
#define GAIN_MIN 1.05    /* a step must raise the delivery rate this much */
#define JUDGE_MIN 8      /* elements a window after a step must deliver ... */
#define JUDGE_MAX_MS 500 /* ... within this long, else the step is kept */
#define JUDGE_WAIT_MIN 128 /* the same for a waiting stage's step, and the
			    * window before it: its workers hand out whole
			    * units late, a short window counts 2 or 3 */

struct pf_autotune {
	pf_iter *it;
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int quit;
	pf_autotune_event log[LOG_MAX];
	_Atomic size_t nlog;
	/* the window's start */
	uint64_t w_t, w_wait;
	uint64_t w_busy[64], w_blocked[64], w_cpu[64];
	uint64_t w_out;      /* elements the last stage had delivered */
	/* the last step, judged on the next window */
	int pending;         /* 0 none, 1 parallelism */
	int p_stage, p_old;
	int p_min;           /* elements its judging window must hold */
	int p_settle;        /* the step's first window is not judged (a
			      * waiting stage's new workers deliver only
			      * after a unit's wait) */
	double p_rate;       /* delivery rate of the window before it */
	unsigned char frozen[64];
};

static int tunable(const pf_op *op)
{
	return (op->st.max_parallelism > 0 && op->desc->set_parallelism) ||
		(op->st.max_depth > 0 && op->desc->set_depth);
}

/* The CPU a stage that measures it (st.cpu_timed) wanted so far: time on
 * a core plus time runnable but waiting for one (a thread the machine is
 * too busy to run is not a thread that waits for I/O). */
static uint64_t cpu_demand(const pf_op *op)
{
	return atomic_load(&op->st.cpu_ns) + atomic_load(&op->st.runq_ns);
}

static void window_start(struct pf_autotune *t)
{
	pf_iter *it = t->it;
	t->w_t = pf_now_ns();
	t->w_wait = atomic_load(&it->wait_ns);
	t->w_out = atomic_load(&it->stages[it->nstages - 1]->st.elements);
	for (int i = 0; i < it->nstages; i++)
		t->w_busy[i] = atomic_load(&it->stages[i]->st.busy_ns);
	for (int i = 0; i < it->nstages; i++)
		t->w_blocked[i] = atomic_load(&it->stages[i]->st.blocked_ns);
	for (int i = 0; i < it->nstages; i++)
		t->w_cpu[i] = cpu_demand(it->stages[i]);
}

static void log_event(struct pf_autotune *t, int stage, const char *knob, int old,
		      int now, const char *reason)
{
	size_t n = atomic_load(&t->nlog);
	if (n >= LOG_MAX)
		return;
	pf_autotune_event *e = &t->log[n];
	e->t_ns = pf_now_ns() - t->it->t_start;
	e->stage = stage;
	e->knob = knob;
	e->old_value = old;
	e->new_value = now;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
	atomic_store_explicit(&t->nlog, n + 1, memory_order_release);
}

/*
 * Raise the workers of stage s (busy `busy` per worker; `used` CPUs in use
 * over the window): one more worker as busy as the others must fit the CPU
 * budget.  A stage that measures its CPU and whose workers spend most of
 * their busy time off the CPU (WAIT_CPU_MAX) waits: its workers are
 * doubled, past the CPU budget's count if need be, as long as the CPU
 * they add fits the budget; such a step is judged after a settling
 * window, on a window of JUDGE_WAIT_MIN elements, against a window as
 * long before it.  Returns 1 when a step was taken (logged, to be judged
 * on the next window), -1 when the window must grow first, else 0.
 */
static int step_workers(struct pf_autotune *t, int s, double busy, double used,
			double stall, double rate, uint64_t got, uint64_t dt)
{
	pf_iter *it = t->it;
	pf_op *op = it->stages[s];
	int old = op->st.parallelism, budget = it->p->opts.cpu_budget;
	double add = busy > 1 ? 1 : busy; /* one more worker's CPU */
	double frac = -1;                   /* CPU share of the busy time */
	if (op->st.cpu_timed) {
		double db = (double)(atomic_load(&op->st.busy_ns) - t->w_busy[s]);
		double dc = (double)(cpu_demand(op) - t->w_cpu[s]);
		frac = db > 0 ? dc / db : 1;
		if (frac > 1)
			frac = 1;
		add *= frac;
	}
	int waits = frac >= 0 && frac < WAIT_CPU_MAX;
	if (waits && got < JUDGE_WAIT_MIN && dt < (uint64_t)JUDGE_MAX_MS * 1000000u)
		return -1; /* a longer window first: the rate to beat */
	int want = waits ? 2 * old : old + 1;
	if (!waits && want > budget)
		want = budget; /* computing workers: never more than the cores */
	if (want > op->st.max_parallelism)
		want = op->st.max_parallelism;
	while (want > old && used + add * (want - old) > budget)
		want--;
	if (want <= old)
		return 0;
	int nv = op->desc->set_parallelism(op, want);
	if (nv == old)
		return 0;
	char why[112];
	if (waits)
		snprintf(why, sizeof(why),
			 "stall %.0f%%, %s busy %.0f%% per worker at %.0f%% CPU (waits): "
			 "%d of %d workers, %.2f of %d CPUs",
			 100 * stall, op->desc->kind, 100 * (busy > 1 ? 1 : busy), 100 * frac, nv,
			 op->st.max_parallelism, used, budget);
	else if (frac >= 0)
		snprintf(why, sizeof(why),
			 "stall %.1f%%, %s busy %.0f%% per worker at %.0f%% CPU, %.2f of %d CPUs in use",
			 100 * stall, op->desc->kind, 100 * (busy > 1 ? 1 : busy), 100 * frac, used,
			 budget);
	else
		snprintf(why, sizeof(why),
			 "stall %.1f%%, %s busy %.0f%% per worker, %.2f of %d CPUs in use",
			 100 * stall, op->desc->kind, 100 * (busy > 1 ? 1 : busy), used, budget);
	log_event(t, s, "parallelism", old, nv, why);
	t->pending = 1;
	t->p_stage = s;
	t->p_old = old;
	t->p_rate = rate;
	t->p_settle = waits;
	t->p_min = waits ? JUDGE_WAIT_MIN : JUDGE_MIN;
	window_start(t);
	return 1;
}

/* One decision over the current window; returns 1 when a knob changed. */
static int decide(struct pf_autotune *t)
{
	pf_iter *it = t->it;
	uint64_t now = pf_now_ns(), dt = now - t->w_t;
	if (dt < (uint64_t)WINDOW_MS * 1000000u)
		return 0;
	uint64_t dwait = atomic_load(&it->wait_ns) - t->w_wait;
	double stall = (double)dwait / (double)dt;
	if (stall > 1)
		stall = 1; /* a wait begun before the window */
	double rate = (double)(atomic_load(&it->stages[it->nstages - 1]->st.elements) - t->w_out) *
		1e9 / (double)dt;
	char why[112];
	if (t->pending && t->p_settle) {
		t->p_settle = 0;
		window_start(t);
		return 0;
	}
	if (t->pending) {
		int s = t->p_stage;
		/* a window of a few large batches (or one spanning an epoch's
		 * start, while a shuffle buffer refills) says nothing about
		 * the step: wait for JUDGE_MIN elements, and keep a step that
		 * cannot be judged rather than freeze its knob */
		uint64_t got = atomic_load(&it->stages[it->nstages - 1]->st.elements) - t->w_out;
		if (got < (uint64_t)t->p_min && dt < (uint64_t)JUDGE_MAX_MS * 1000000u)
			return 0;
		t->pending = 0;
		if (got >= (uint64_t)t->p_min && rate < t->p_rate * GAIN_MIN) {
			pf_op *op = it->stages[s];
			int cur = op->st.parallelism;
			int nv = op->desc->set_parallelism(op, t->p_old);
			t->frozen[s] = 1;
			snprintf(why, sizeof(why),
				 "taken back: %.0f/s after the step, %.0f/s before (no gain)",
				 rate, t->p_rate);
			log_event(t, s, "parallelism", cur, nv, why);
		}
		window_start(t);
		return 1;
	}
	if (stall <= STALL_MAX) {
		window_start(t);
		return 0;
	}
	/* CPU in use: the cores the stages' threads used over the window
	 * (measured where a stage measures it, else the time they kept
	 * busy: threads that wait use none) */
	double used = 0;
	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		if (op->st.cpu_timed)
			used += (double)(cpu_demand(op) - t->w_cpu[i]) / (double)dt;
		else if (op->st.self_timed || ((pf_op_traits(op) & PF_OP_MAP) && op->run))
			used += (double)(atomic_load(&op->st.busy_ns) - t->w_busy[i]) / (double)dt;
	}
	/* the busiest parallel stage that may grow */
	int best = -1;
	double best_busy = 0;
	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		if (!op->desc->set_parallelism || op->st.parallelism < 1)
			continue;
		int a = op->st.parallelism;
		if (op->st.max_parallelism <= a || t->frozen[i])
			continue;
		/* a map at 1 works in the consumer's thread: its share of the
		 * consumer's waiting; else busy time per working thread */
		double dbusy = (double)(atomic_load(&op->st.busy_ns) - t->w_busy[i]);
		double busy = (pf_op_traits(op) & PF_OP_MAP) && a < 2 ? dbusy / (double)dwait :
			dbusy / ((double)dt * a);
		if (busy > best_busy) {
			best_busy = busy;
			best = i;
		}
	}
	if (best >= 0 && best_busy >= BUSY_MIN) {
		uint64_t got = atomic_load(&it->stages[it->nstages - 1]->st.elements) - t->w_out;
		int st = step_workers(t, best, best_busy, used, stall, rate, got, dt);
		if (st)
			return st > 0; /* stepped, or the window goes on */
	}
	for (int i = it->nstages - 1; i >= 0; i--) {
		pf_op *op = it->stages[i];
		if (op->st.max_depth <= 0 || !op->desc->set_depth ||
		    op->st.depth >= op->st.max_depth || t->frozen[i])
			continue;
		/* a deeper queue helps only when it did fill up (the producer
		 * keeps up on average, stalls are bursts); else it only holds
		 * more memory */
		double full = (double)(atomic_load(&op->st.blocked_ns) - t->w_blocked[i]) /
			(double)dt;
		/* a wait is counted when it ends, whole: one begun before the
		 * window can add more than the window; a share is at most 1 */
		if (full > 1)
			full = 1;
		/* full nearly all the time: the producer is ahead and the
		 * consumer's waits are after this queue (a device feed) */
		if (full < 0.05 || full > 0.9)
			continue;
		int old = op->st.depth;
		int nv = op->desc->set_depth(op, 2 * old);
		if (nv == old)
			continue;
		snprintf(why, sizeof(why),
			 "stall %.1f%%, queue full %.1f%% of the time (bursts): deeper buffer",
			 100 * stall, 100 * full);
		log_event(t, i, "depth", old, nv, why);
		window_start(t); /* kept: not judged (see the top) */
		return 1;
	}
	window_start(t);
	return 0;
}

static void *autotune_thread(void *arg)
{
	struct pf_autotune *t = arg;
	pthread_mutex_lock(&t->lock);
	window_start(t);
	while (!t->quit) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&t->cv, &t->lock, &ts);
		if (t->quit)
			break;
		pthread_mutex_unlock(&t->lock);
		decide(t);
		pthread_mutex_lock(&t->lock);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

int pf_autotune_start(pf_iter *it, pf_error *err)
{
	int any = 0;
	for (int i = 0; i < it->nstages; i++)
		any |= tunable(it->stages[i]);
	it->tune = NULL;
	if (!any)
		return 0;
	struct pf_autotune *t = calloc(1, sizeof(*t));
	if (!t)
		return pf_error_set(err, PF_ENOMEM, "autotune: out of memory");
	t->it = it;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cv, NULL);
	if (pthread_create(&t->th, NULL, autotune_thread, t) != 0) {
		pthread_mutex_destroy(&t->lock);
		pthread_cond_destroy(&t->cv);
		free(t);
		return pf_error_set(err, PF_ENOMEM, "autotune: cannot start its thread");
	}
	it->tune = t;
	return 0;
}

void pf_autotune_stop(struct pf_autotune *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->quit = 1;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->th, NULL);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cv);
	free(t);
}

int pf_iter_autotune_log(const pf_iter *it, size_t i, pf_autotune_event *out)
{
	if (!it || !it->tune || !out)
		return PF_END;
	struct pf_autotune *t = it->tune;
	if (i >= atomic_load_explicit(&t->nlog, memory_order_acquire))
		return PF_END;
	*out = t->log[i];
	return 0;
}
