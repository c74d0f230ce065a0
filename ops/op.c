/*
 * op.c - the op base: allocation, error messages naming the op, and the
 * epoch resets every op goes through (pf_op.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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
