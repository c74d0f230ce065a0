/*
 * budget.c - the memory budget at iterator start: every buffer at its worst
 * case must fit pf_options.memory_budget.  Buffers an op can do without
 * give way first; workers beyond the CPU budget's count and autotuned
 * buffers get what the others leave; a refusal
 * names the stage, what it needs, and why it needs that much.
 */
#include <stdio.h>

#include "pf_pipeline_int.h"

static const char *human(uint64_t b, char *buf, size_t cap)
{
	if (b >= 10ull << 20)
		snprintf(buf, cap, "%llu MiB", (unsigned long long)(b >> 20));
	else if (b >= 10ull << 10)
		snprintf(buf, cap, "%llu KiB", (unsigned long long)(b >> 10));
	else
		snprintf(buf, cap, "%llu B", (unsigned long long)b);
	return buf;
}

/* Buffers an op can do without (a source's slack) give way first to a
 * budget that would not fit them. */
static void shed_optional(pf_iter *it, uint64_t budget)
{
	uint64_t sum = 0, opt = 0;
	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		/* an autotuned buffer: at its starting depth, the least it is
		 * fitted to below */
		sum += op->st.max_depth ? (uint64_t)(op->st.depth + 1) * op->elem_bytes :
					  op->buffer_bytes;
		opt += op->optional_bytes;
	}
	if (!opt || sum <= budget)
		return;
	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		op->buffer_bytes -= op->optional_bytes;
		op->optional_bytes = 0;
		op->shed_optional = 1;
	}
}

/* Workers beyond the CPU budget's count (for stages that wait): their
 * units get up to half of what the budget leaves (split between such
 * stages), the other half stays for the autotuned depths fitted after. */
static void fit_workers(pf_iter *it, uint64_t budget)
{
	uint64_t sum = 0;
	int n = 0;
	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		sum += op->st.max_depth && op->desc->fit_depth ?
			(uint64_t)(op->st.depth + 1) * op->elem_bytes : op->buffer_bytes;
		n += op->st.max_parallelism > 0 && op->desc->fit_parallelism != NULL;
	}
	for (int i = 0; n && i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		if (op->st.max_parallelism > 0 && op->desc->fit_parallelism)
			op->desc->fit_parallelism(op, sum < budget ?
						  (budget - sum) / 2 / (uint64_t)n : 0);
	}
}

/* Autotuned buffers: their most depth is what the budget leaves (split
 * between them). */
static void fit_tuned(pf_iter *it, uint64_t budget)
{
	uint64_t sum = 0;
	int ntuned = 0;
	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		if (op->st.max_depth && op->desc->fit_depth)
			ntuned++;
		else
			sum += op->buffer_bytes;
	}
	for (int i = 0; ntuned && i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		if (op->st.max_depth && op->desc->fit_depth)
			op->desc->fit_depth(op, sum < budget ? (budget - sum) / (uint64_t)ntuned : 0);
	}
}

/* Why op's buffers are that large, when a map's bound on one output is
 * the cause (a map with variable-size outputs, or one fused into op):
 * the sentence to add to the refusal, else "". */
static const char *why_large(const pf_op *op, char *buf, size_t cap)
{
	const pf_op *m = op->fused_map ? op->fused_map :
		(pf_op_traits(op) & PF_OP_MAP) && !op->fused_batch ? op : NULL;
	char a[32];
	buf[0] = '\0';
	if (m && !m->canon_bytes && m->elem_bytes)
		snprintf(buf, cap,
			 "; its elements are %s's outputs%s, bounded at %s each by the map function's"
			 " bound on one output element: lower that bound (max_bytes=N of the built-in"
			 " decode and normalize) or raise the budget",
			 m->label, m == op ? "" : " (fused into it)",
			 human(m->elem_bytes, a, sizeof(a)));
	return buf;
}

int pf_budget_check(pf_iter *it, pf_error *err)
{
	uint64_t sum = 0, budget = it->p->opts.memory_budget;
	shed_optional(it, budget);
	fit_workers(it, budget);
	fit_tuned(it, budget);
	for (int i = 0; i < it->nstages; i++) {
		pf_op *op = it->stages[i];
		if (op->buffer_bytes > budget || sum + op->buffer_bytes > budget) {
			char a[32], b[32], c[32], why[320];
			return pf_error_set(err, PF_EBUDGET,
					    "%s: its buffers need %s at worst; with the %s of the ops before it that does not fit the memory budget of %s%s",
					    op->label, human(op->buffer_bytes, a, sizeof(a)),
					    human(sum, b, sizeof(b)), human(budget, c, sizeof(c)),
					    why_large(op, why, sizeof(why)));
		}
		sum += op->buffer_bytes;
	}
	return 0;
}
