/* pipeline.c - the builder: pipeline handles and the op builder calls. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_pipeline_int.h"

int pf_pipeline_new(pf_pipeline **pp, const pf_options *opts, pf_error *err)
{
	*pp = NULL;
	pf_pipeline *p = calloc(1, sizeof(*p));
	if (!p)
		return pf_error_set(err, PF_ENOMEM, "pipeline: out of memory");
	if (opts)
		p->opts = *opts;
	if (!p->opts.memory_budget)
		p->opts.memory_budget = 1ull << 30;
	if (p->opts.cpu_budget <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		p->opts.cpu_budget = n > 0 ? (int)n : 1;
	}
	if (!p->opts.batch_alloc != !p->opts.batch_free) {
		free(p);
		return pf_error_set(err, PF_EINVAL,
				    "pipeline: batch_alloc and batch_free go together");
	}
	if (p->opts.world < 0 || p->opts.world > (1 << 20) || p->opts.rank < 0 ||
	    p->opts.rank >= (p->opts.world > 1 ? p->opts.world : 1) ||
	    p->opts.split < PF_SPLIT_AUTO || p->opts.split > PF_SPLIT_RECORDS) {
		int w = p->opts.world, r = p->opts.rank, sp = p->opts.split;
		free(p);
		return pf_error_set(err, PF_EINVAL,
				    "pipeline: options: need 0 <= rank < world <= 2^20 and a "
				    "pf_split (got rank %d, world %d, split %d)", r, w, sp);
	}
	p->pool = pf_pool_new(0);
	if (p->pool && p->opts.batch_alloc)
		p->batch_pool = pf_pool_new_custom(0, p->opts.batch_alloc,
						   p->opts.batch_free, p->opts.alloc_user);
	if (!p->pool || (p->opts.batch_alloc && !p->batch_pool)) {
		pf_pool_free(p->pool);
		free(p);
		return pf_error_set(err, PF_ENOMEM, "pipeline: out of memory");
	}
	p->rt.opts = p->opts;
	p->rt.pool = p->pool;
	p->rt.batch_pool = p->batch_pool ? p->batch_pool : p->pool;
	*pp = p;
	return 0;
}

void pf_pipeline_free(pf_pipeline *p)
{
	if (!p)
		return;
	if (p->iter)
		pf_iter_free(p->iter);
	for (int i = 0; i < p->nops; i++)
		pf_op_free(p->ops[i]);
	pf_op_free(p->split_op);
	free(p->ops);
	pf_pool_free(p->pool);
	pf_pool_free(p->batch_pool);
	free(p);
}

int pf_pipeline_nops(const pf_pipeline *p)
{
	return p ? p->nops : 0;
}

int pf_pipeline_add_op(pf_pipeline *p, pf_op *op, pf_error *err)
{
	if (!op)
		return err && err->code ? err->code : PF_ENOMEM;
	int is_source = (op->desc->traits & PF_OP_SOURCE) != 0;
	int bad = 0;
	if (p->iter)
		bad = pf_error_set(err, PF_ESTATE, "%s: cannot add ops while an iterator is live",
				   op->desc->kind);
	else if (is_source && p->nops)
		bad = pf_error_set(err, PF_EINVAL, "%s: a source must be the first op",
				   op->desc->kind);
	else if (!is_source && !p->nops)
		bad = pf_error_set(err, PF_EINVAL, "%s: the pipeline has no source yet",
				   op->desc->kind);
	if (!bad && p->nops == p->cap) {
		int cap = p->cap ? 2 * p->cap : 8;
		pf_op **n = realloc(p->ops, cap * sizeof(*n));
		if (!n)
			bad = pf_error_set(err, PF_ENOMEM, "pipeline: out of memory");
		else {
			p->ops = n;
			p->cap = cap;
		}
	}
	if (!bad && p->nops >= 60)
		bad = pf_error_set(err, PF_ELIMIT, "pipeline: more than 60 ops");
	if (bad) {
		pf_op_free(op);
		return bad;
	}
	op->index = p->nops;
	op->rt = &p->rt;
	/* label: kind#index, keeping a "(name)" suffix the constructor set */
	char tail[64] = "";
	const char *paren = strchr(op->label, '(');
	if (paren)
		snprintf(tail, sizeof(tail), "%s", paren);
	snprintf(op->label, sizeof(op->label), "%s#%d%s", op->desc->kind, op->index, tail);
	p->ops[p->nops++] = op;
	return 0;
}

/* The typed builder calls of pipefeed.h: each one the op's constructor.
 * (An op without one is reached through its spec form, pf_spec_apply.) */
int pf_shards(pf_pipeline *p, const char *const *paths, size_t n,
	      const pf_source_opts *o, pf_error *err)
{
	if (o && (o->read_world < 0 || o->read_world > (1 << 20) || o->read_rank < 0 ||
		  o->read_rank >= (o->read_world > 1 ? o->read_world : 1)))
		return pf_error_set(err, PF_EINVAL,
				    "shards: read_rank %d of read_world %d: want 0 <= rank < world",
				    o->read_rank, o->read_world);
	return pf_pipeline_add_op(p, pf_op_shards_new(paths, n, o, err), err);
}

int pf_tfrecords(pf_pipeline *p, const char *const *paths, size_t n,
		const pf_source_opts *o, pf_error *err)
{
	if (o && o->read_world > 1)
		return pf_error_set(err, PF_EINVAL,
				    "tfrecord: read_world: only shards can leave other ranks' blocks unread");
	return pf_pipeline_add_op(p, pf_op_tfrecord_new(paths, n, o, err), err);
}

int pf_range(pf_pipeline *p, int64_t start, int64_t stop, int64_t step,
	     pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_range_new(start, stop, step, err), err);
}

int pf_records(pf_pipeline *p, const void *const *recs, const size_t *lens,
	       size_t n, const pf_schema *rs, pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_records_new(recs, lens, n, rs, err), err);
}

int pf_map(pf_pipeline *p, const char *name, const char *args,
	   const pf_map_opts *o, pf_error *err)
{
	const pf_map_def *d = name ? pf_map_lookup(name) : NULL;
	if (!d)
		return pf_error_set(err, PF_EINVAL, "map: no map function called \"%s\"",
				    name ? name : "(null)");
	return pf_pipeline_add_op(p, pf_op_map_new(d->name, d->prepare, d->fn, d->user, args, o, err),
				  err);
}

int pf_map_func(pf_pipeline *p, const char *name, pf_map_prepare_fn prepare,
		pf_map_fn fn, void *user, const char *args,
		const pf_map_opts *o, pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_map_new(name, prepare, fn, user, args, o, err), err);
}

int pf_filter(pf_pipeline *p, const char *name, pf_filter_fn fn, void *user,
	      pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_filter_new(name, fn, user, err), err);
}

int pf_take(pf_pipeline *p, int64_t n, pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_take_new(n, err), err);
}

int pf_skip(pf_pipeline *p, int64_t n, pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_skip_new(n, err), err);
}

int pf_repeat(pf_pipeline *p, int64_t count, pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_repeat_new(count, err), err);
}

int pf_rank_shard(pf_pipeline *p, int num, int index, pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_shard_new(num, index, err), err);
}

int pf_sleep(pf_pipeline *p, int64_t us, pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_sleep_new(us, err), err);
}

int pf_cache(pf_pipeline *p, const char *path, uint64_t max_bytes, pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_cache_new(path, max_bytes, err), err);
}

int pf_shuffle(pf_pipeline *p, int64_t size, const pf_shuffle_opts *o,
	       pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_shuffle_new(size, o, err), err);
}

int pf_batch(pf_pipeline *p, int size, int drop, pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_batch_new(size, drop, PF_AUTOTUNE, err), err);
}

int pf_batch_par(pf_pipeline *p, int size, int drop, int num_parallel_calls, pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_batch_new(size, drop, num_parallel_calls, err), err);
}

int pf_padded_batch(pf_pipeline *p, int size, const pf_padded_opts *o,
		    pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_padded_batch_new(size, o, err), err);
}

int pf_prefetch(pf_pipeline *p, int depth, pf_error *err)
{
	return pf_pipeline_add_op(p, pf_op_prefetch_new(depth, err), err);
}
