/*
 * op.c - the op base: allocation, error messages naming the op, and the
 * epoch resets every op goes through (pf_op.h), the threads' CPU probes.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "pf_op.h"

pf_op *pf_op_alloc(const pf_op_desc *d, size_t cfg_size, pf_error *err)
{
	pf_op *op = calloc(1, sizeof(*op));
	if (op && cfg_size) {
		op->cfg = calloc(1, cfg_size);
		if (!op->cfg) {
			free(op);
			op = NULL;
		}
	}
	if (!op) {
		pf_error_set(err, PF_ENOMEM, "%s: out of memory", d->kind);
		return NULL;
	}
	op->desc = d;
	op->vt = d->vt;
	snprintf(op->label, sizeof(op->label), "%s", d->kind);
	return op;
}

void pf_op_free(pf_op *op)
{
	if (!op)
		return;
	if (op->vt->destroy)
		op->vt->destroy(op);
	free(op->cfg);
	free(op);
}

int pf_op_error(pf_op *op, pf_error *err, int code, const char *fmt, ...)
{
	char msg[PF_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return pf_error_set(err, code, "%s: %s", op->label, msg);
}

/* nonzero while this thread runs a pf_op_reset_ahead */
static _Thread_local int resetting_ahead;

void pf_op_reset(pf_op *op)
{
	if (!op)
		return;
	if (op->vt->reset)
		op->vt->reset(op);
	else
		pf_op_reset(op->in);
	op->epoch++;
	if (!resetting_ahead)
		op->epoch_mark = op->epoch;
	op->at_end = 0;
	op->st.sample = 0;  /* the next call, the epoch's first, is timed once */
}

void pf_op_reset_ahead(pf_op *op)
{
	resetting_ahead++;
	pf_op_reset(op);
	resetting_ahead--;
}

void pf_op_mark_epochs(pf_op *op)
{
	for (; op; op = op->in)
		op->epoch_mark = op->epoch;
}

uint64_t pf_thread_cpu_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The thread's run-queue wait (ns) from its schedstat ("on-cpu runq
 * slices"), or 0 when the kernel has no such file. */
static uint64_t probe_runq(const pf_cpu_probe *p)
{
	char b[96];
	if (p->fd < 0)
		return 0;
	ssize_t n = pread(p->fd, b, sizeof(b) - 1, 0);
	if (n <= 0)
		return 0;
	b[n] = '\0';
	unsigned long long on = 0, rq = 0;
	if (sscanf(b, "%llu %llu", &on, &rq) != 2)
		return 0;
	return rq;
}

void pf_cpu_probe_open(pf_cpu_probe *p, uint64_t now)
{
	/* the on-CPU figure comes from the thread CPU clock (schedstat's
	 * lags by up to a scheduler tick for a thread that runs on) */
	p->fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	p->t = now;
	p->cpu = pf_thread_cpu_ns();
	p->runq = probe_runq(p);
}

static void probe_read(pf_cpu_probe *p, pf_stage_stats *st, uint64_t now)
{
	uint64_t cpu = pf_thread_cpu_ns(), rq = probe_runq(p);
	if (cpu > p->cpu)
		pf_stat_add(&st->cpu_ns, cpu - p->cpu);
	if (rq > p->runq)
		pf_stat_add(&st->runq_ns, rq - p->runq);
	p->cpu = cpu;
	p->runq = rq;
	p->t = now;
}

void pf_cpu_probe_tick(pf_cpu_probe *p, pf_stage_stats *st, uint64_t now)
{
	if (now - p->t >= PF_CPU_PROBE_NS)
		probe_read(p, st, now);
}

void pf_cpu_probe_close(pf_cpu_probe *p, pf_stage_stats *st)
{
	if (p->fd < 0 && !p->t)
		return;
	probe_read(p, st, pf_now_ns());
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
}
