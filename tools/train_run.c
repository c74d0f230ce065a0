/*
 * train_run.c - pipe-train's run section of a checkpoint: the options that
 * define a run and where it stands, as text (see train.h).
 */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

/*
 * A checkpoint's run section (cuda/pf_model.h keeps it as opaque bytes) is
 * text, one "key value" per line after a first line "pipe-train run 1";
 * string values escape backslash and newline as \\ and \n; absent keys are
 * unset options; doubles are written with %a (exact).  Keys:
 *   options: pipeline, eval_pipeline, model, eval, cache_on, cache, batch,
 *     shuffle, epochs, lr, seed, skip_corrupt, max_corrupt, isolate, shard
 *     (once per SHARDS argument, in order); defaults a resume may override:
 *     map_threads, read_threads, prefetch, depth, device, graph
 *   state: world (the ranks that trained: every rank saw the same global
 *     batches, so the one position below is every rank's, and a resume
 *     over another world size goes on with the same global batches),
 *     done (1: all epochs ran), epoch (0-based) and step (batches of
 *     it trained on), steps and images (totals), acc (the epoch's train
 *     loss sum, correct, bad labels, rows), pos_epoch, pos_delivered,
 *     pos_at_end, pos_nops, pos_op_epochs (comma-separated), pos_order
 *     (absent: 1, an older build's element order): the train
 *     iterator's pf_iter_pos (a finished run has it too when it was
 *     recorded: after the last epoch's end, for a resume with more epochs).
 */
#define RUN_HEAD "pipe-train run 1\n"



typedef struct sbuf {
	char *p;
	size_t n, cap;
	int oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
	va_list ap;
	for (int pass = 0; pass < 2 && !b->oom; pass++) {
		va_start(ap, fmt);
		int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->oom = 1;
			return;
		}
		if (b->p && b->n + (size_t)k < b->cap) {
			b->n += (size_t)k;
			return;
		}
		size_t cap = (b->cap ? 2 * b->cap : 1024) + (size_t)k;
		char *q = realloc(b->p, cap);
		if (!q) {
			b->oom = 1;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
}

static void sb_str(sbuf *b, const char *key, const char *v)
{
	if (!v)
		return;
	sb_add(b, "%s ", key);
	for (; *v; v++) {
		if (*v == '\\')
			sb_add(b, "\\\\");
		else if (*v == '\n')
			sb_add(b, "\\n");
		else
			sb_add(b, "%c", *v);
	}
	sb_add(b, "\n");
}

static void run_encode_into(sbuf *b, const opts *o, const run_state *st)
{
	sb_add(b, RUN_HEAD);
	sb_str(b, "pipeline", o->pipeline);
	sb_str(b, "eval_pipeline", o->eval_pipeline);
	sb_str(b, "model", o->model);
	sb_str(b, "eval", o->eval);
	sb_add(b, "cache_on %d\n", o->cache_on);
	sb_str(b, "cache", o->cache);
	sb_add(b, "batch %d\nshuffle %d\nepochs %d\nlr %a\nseed %" PRIu64 "\n",
	       o->batch, o->shuffle, o->epochs, o->lr, o->seed);
	sb_add(b, "skip_corrupt %d\nmax_corrupt %" PRId64 "\nisolate %d\n",
	       o->skip_corrupt, o->max_corrupt, o->isolate);
	for (int i = 0; i < o->nshards; i++)
		sb_str(b, "shard", o->shards[i]);
	sb_add(b, "map_threads %d\nread_threads %d\nprefetch %d\ndepth %d\ngraph %d\n",
	       o->map_threads, o->read_threads, o->prefetch, o->depth, o->graph);
	sb_str(b, "device", o->device);
	sb_add(b, "world %d\n", st->world > 0 ? st->world : 1);
	sb_add(b, "done %d\nepoch %" PRIu64 "\nstep %" PRIu64 "\nsteps %" PRIu64
	       "\nimages %" PRIu64 "\nacc %a %a %a %a\n",
	       st->done, st->epoch, st->step, st->steps, st->images,
	       st->acc[0], st->acc[1], st->acc[2], st->acc[3]);
	if (!st->done || st->has_pos) {
		sb_add(b, "pos_epoch %" PRIu64 "\npos_delivered %" PRIu64
		       "\npos_at_end %u\npos_nops %u\npos_op_epochs ",
		       st->pos.epoch, st->pos.delivered, st->pos.at_end, st->pos.nops);
		for (uint32_t i = 0; i < st->pos.nops && i < PF_POS_MAX_OPS; i++)
			sb_add(b, "%s%" PRIu64, i ? "," : "", st->pos.op_epoch[i]);
		sb_add(b, "\npos_order %u\n", st->pos.order);
	}
}

/* Unescape v in place (see sb_str). */
static char *unescape(char *v)
{
	char *w = v;
	for (char *r = v; *r; r++) {
		if (*r == '\\' && r[1]) {
			r++;
			*w++ = *r == 'n' ? '\n' : *r;
		} else {
			*w++ = *r;
		}
	}
	*w = 0;
	return v;
}

static int parse_u64(const char *v, uint64_t *out)
{
	char *end;
	if (!*v || *v == '-')
		return -1;
	*out = strtoull(v, &end, 10);
	return *end ? -1 : 0;
}

static int parse_int(const char *v, int *out)
{
	char *end;
	long x = strtol(v, &end, 10);
	if (!*v || *end || x < INT32_MIN || x > INT32_MAX)
		return -1;
	*out = (int)x;
	return 0;
}

/*
 * Parse run section text (modified in place; o's strings then point into
 * it, so it must live as long as o) into options r (defaults already in
 * it) and state st.  Returns 0, or -1 with a message in msg naming the
 * line.
 */
int run_decode(char *text, opts *r, run_state *st, char *msg, size_t cap)
{
	memset(st, 0, sizeof(*st));
	r->cache = r->pipeline = r->eval_pipeline = r->eval = NULL;
	r->nshards = 0;
	size_t hl = strlen(RUN_HEAD);
	if (strncmp(text, RUN_HEAD, hl)) {
		snprintf(msg, cap, "no pipe-train run section (a checkpoint of --save, or of another version)");
		return -1;
	}
	int nl = 0, maxsh = 0;
	for (char *c = text; *c; c++)
		maxsh += *c == '\n';
	r->shards = calloc((size_t)maxsh + 1, sizeof(char *));
	if (!r->shards) {
		snprintf(msg, cap, "out of memory");
		return -1;
	}
	int have_pos = 0;
	for (char *line = text + hl, *next; *line; line = next) {
		nl++;
		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		else
			next = line + strlen(line);
		char *v = strchr(line, ' ');
		if (!v) {
			snprintf(msg, cap, "line %d: no value", nl + 1);
			return -1;
		}
		*v++ = 0;
		const char *k = line;
		int bad = 0;
		if (!strcmp(k, "pipeline")) r->pipeline = unescape(v);
		else if (!strcmp(k, "eval_pipeline")) r->eval_pipeline = unescape(v);
		else if (!strcmp(k, "model")) r->model = unescape(v);
		else if (!strcmp(k, "eval")) r->eval = unescape(v);
		else if (!strcmp(k, "cache")) r->cache = unescape(v);
		else if (!strcmp(k, "device")) r->device = unescape(v);
		else if (!strcmp(k, "shard")) r->shards[r->nshards++] = unescape(v);
		else if (!strcmp(k, "cache_on")) bad = parse_int(v, &r->cache_on);
		else if (!strcmp(k, "batch")) bad = parse_int(v, &r->batch);
		else if (!strcmp(k, "shuffle")) bad = parse_int(v, &r->shuffle);
		else if (!strcmp(k, "epochs")) bad = parse_int(v, &r->epochs);
		else if (!strcmp(k, "skip_corrupt")) bad = parse_int(v, &r->skip_corrupt);
		else if (!strcmp(k, "isolate")) bad = parse_int(v, &r->isolate);
		else if (!strcmp(k, "map_threads")) bad = parse_int(v, &r->map_threads);
		else if (!strcmp(k, "read_threads")) bad = parse_int(v, &r->read_threads);
		else if (!strcmp(k, "prefetch")) bad = parse_int(v, &r->prefetch);
		else if (!strcmp(k, "depth")) bad = parse_int(v, &r->depth);
		else if (!strcmp(k, "graph")) bad = parse_int(v, &r->graph);
		else if (!strcmp(k, "done")) bad = parse_int(v, &st->done);
		else if (!strcmp(k, "world")) bad = parse_int(v, &st->world);
		else if (!strcmp(k, "seed")) bad = parse_u64(v, &r->seed);
		else if (!strcmp(k, "epoch")) bad = parse_u64(v, &st->epoch);
		else if (!strcmp(k, "step")) bad = parse_u64(v, &st->step);
		else if (!strcmp(k, "steps")) bad = parse_u64(v, &st->steps);
		else if (!strcmp(k, "images")) bad = parse_u64(v, &st->images);
		else if (!strcmp(k, "pos_epoch")) bad = parse_u64(v, &st->pos.epoch);
		else if (!strcmp(k, "pos_delivered")) bad = parse_u64(v, &st->pos.delivered);
		else if (!strcmp(k, "max_corrupt")) {
			char *end;
			r->max_corrupt = strtoll(v, &end, 10);
			bad = !*v || *end;
		} else if (!strcmp(k, "lr")) {
			char *end;
			r->lr = strtod(v, &end);
			bad = !*v || *end;
		} else if (!strcmp(k, "acc")) {
			char *end = v;
			for (int i = 0; i < 4 && !bad; i++) {
				char *s0 = end;
				st->acc[i] = strtod(s0, &end);
				bad = end == s0;
			}
			bad = bad || *end;
		} else if (!strcmp(k, "pos_at_end") || !strcmp(k, "pos_nops")) {
			uint64_t x;
			bad = parse_u64(v, &x) || x > PF_POS_MAX_OPS;
			if (k[4] == 'a')
				st->pos.at_end = (uint32_t)(x != 0);
			else
				st->pos.nops = (uint32_t)x;
		} else if (!strcmp(k, "pos_order")) {
			uint64_t x;
			bad = parse_u64(v, &x) || x > UINT32_MAX;
			st->pos.order = (uint32_t)x;
		} else if (!strcmp(k, "pos_op_epochs")) {
			uint32_t i = 0;
			for (char *t = v; *t && !bad; i++) {
				char *end;
				if (i >= PF_POS_MAX_OPS || *t == '-') {
					bad = 1;
					break;
				}
				st->pos.op_epoch[i] = strtoull(t, &end, 10);
				bad = end == t || (*end && *end != ',');
				t = *end ? end + 1 : end;
			}
			have_pos = !bad && i == st->pos.nops;
			bad = bad || !have_pos;
		}
		/* unknown keys: written by a newer pipe-train, ignored */
		if (bad) {
			snprintf(msg, cap, "line %d: bad value for '%s'", nl + 1, k);
			return -1;
		}
	}
	if (!st->done && !have_pos) {
		snprintf(msg, cap, "no iterator position");
		return -1;
	}
	st->has_pos = have_pos;
	if (r->batch < 1 || r->epochs < 1 || !r->model) {
		snprintf(msg, cap, "batch, epochs or model missing");
		return -1;
	}
	return 0;
}

int same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

char *run_encode(const opts *o, const run_state *st, size_t *len)
{
	sbuf b = { 0 };
	run_encode_into(&b, o, st);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.n;
	return b.p;
}
