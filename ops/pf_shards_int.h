/*
 * pf_shards_int.h - the shards source's parts, shared by its two files:
 * ops/shards.c (the op: prepare, start, the consumer's next/borrow, reset,
 * stop) and ops/shards_read.c (the epoch plan, the reads and the worker
 * threads that decode blocks ahead of the consumer).  See shards.c's
 * opening comment for how they work together.  Internal: nothing outside
 * those two files includes it.
 */
#ifndef PF_SHARDS_INT_H
#define PF_SHARDS_INT_H

#include <pthread.h>

#include "pf_interleave.h"
#include "pf_op.h"
#include "pf_shard.h"
#include "pf_source_damage.h"

#define PF_SHARDS_MAX_CYCLE 256 /* the most files interleaved at once */

/* Where a slot of the interleave stands in its file's blocks. */
typedef struct shard_cur {
	uint32_t block;       /* the block of the slot's next record */
	uint32_t rec, nrec;   /* that record's place in it; its records */
	int skipping;         /* consumer: the block is damaged and skipped */
	int entry;            /* consumer: the buffer holding the block */
} shard_cur;

/* An epoch's plan: its file order and block tasks in need order, and its
 * reads' state (per file: stream, tasks not read yet). */
typedef struct shard_plan {
	uint32_t *order;
	uint32_t *task_file, *task_block;
	int *task_entry;      /* the buffer holding each taken task */
	size_t ntasks;
	int *stream;          /* per file: its stream, -1 = none yet */
	uint32_t *left;       /* per file: tasks not read yet */
	uint64_t epoch;       /* the op epoch it is for */
} shard_plan;

enum { E_FREE, E_BUSY, E_READY, E_ERR };

typedef struct shard_entry {
	int state;
	pf_block blk;
	pf_error e;
	/* with a fused map: the block's records mapped by the worker, either
	 * into slab (fixed outputs: canonical layout, `stride` bytes apart)
	 * or as elements in outs */
	unsigned char *slab;
	pf_elem *outs;
	uint32_t nmapped, next_out;
	int map_err;          /* the map failed on record nmapped */
	unsigned char *drop;  /* fused map: record j was dropped (isolate) */
	int ahead;            /* holds a task of the next epoch */
} shard_entry;

typedef struct shards_cfg {
	char **pats;
	size_t npats;
	pf_source_opts o;
	/* resolved by prepare */
	char **paths;
	size_t npaths;
	size_t nmine;         /* files this rank reads: npaths, or with a split
			       * by files (pf_options.world) those f with
			       * f % world == rank */
	int world, rank;      /* the split by files; world 1: none */
	pf_shard **sh;
	int K, P, W;
	int slack;            /* of the W: beyond K + 2P (slack_entries), shed
			       * when the memory budget needs them */
	int P0;               /* workers taking work at start (autotune: fewer than P) */
	size_t max_nrec;
	size_t stride;        /* fused fixed map: slab bytes per record, else 0 */
	int pending;          /* entry whose block is done, released at the next call */
	unsigned char *warned;/* per file: a skipped damaged block was reported */
	uint64_t *salvaged;   /* per file: index damaged, opened by scanning:
			       * the first byte not recovered + 1 (0: intact) */
	/* runtime */
	shard_plan pl;        /* this epoch's */
	shard_plan nx;        /* the next one's, read ahead (valid: nx_ok) */
	int nx_ok;
	size_t npre;          /* its tasks taken ahead */
	size_t next_task, consumed;
	shard_entry *ent;
	int nfree;
	pf_ilv cons;          /* the consumer's interleave walk */
	shard_cur ccur[PF_SHARDS_MAX_CYCLE]; /* ... its place in each slot's blocks */
	pf_ilv pw;            /* the planner's walk (make_plan) */
	shard_cur pcur[PF_SHARDS_MAX_CYCLE];
	uint64_t *fnrec;      /* per file: its records (the blocks' sum) */
	pf_decoder *cdec;     /* the consumer's, when it decodes a task itself */
	pthread_mutex_t lock;
	pthread_cond_t cv_work, cv_done;
	pthread_t *th;
	int nth, idle, pause, quit, started, active, ids;
	/* reads: one pf_reader (io_uring); workers take their turn at it in
	 * task order, so each file's stream is read in block order */
	pf_reader *rd;
	pf_reader_opts ropts;
	pthread_mutex_t rlock;
	pthread_cond_t rcv;
	size_t rturn;         /* the turn: this epoch's tasks, then the next's */
	uint64_t skipped_records; /* this epoch (max_corrupt) */
	pf_damage_count dmg;  /* what reaches op->st, per epoch as delivered */
} shards_cfg;

/*
 * The interleave gave slot k (v->slot[k]): bring its block cursor *cu to
 * the record it gives (the file's first block with records when the file
 * is new, the next such block when the current one is done).  Returns
 * nonzero when that record is its block's first (a new task).
 */
static inline int shards_cursor_at(const shards_cfg *c, const pf_ilv *v, int k, shard_cur *cu)
{
	const pf_ilv_slot *s = &v->slot[k];
	if (s->rec && cu->rec < cu->nrec)
		return cu->rec == 0;
	const pf_shard *sh = c->sh[v->order[s->file]];
	uint32_t b = s->rec ? cu->block + 1 : 0;
	while (pf_shard_block(sh, b)->nrecords == 0)
		b++; /* the file has records left: a block ahead has them */
	cu->block = b;
	cu->rec = 0;
	cu->nrec = pf_shard_block(sh, b)->nrecords;
	return 1;
}

/* ---- shards_read.c: plans, reads, workers -------------------------------- */

/* The plan of op epoch `epoch` into *pl (allocated by pf_shards_plan_alloc):
 * the file order and the block tasks in the order the consumer needs them,
 * no reads yet.  Pure: the same for the same epoch.  Uses c->pw, c->pcur. */
void pf_shards_make_plan(pf_op *op, uint64_t epoch, shard_plan *pl);
/* Allocate *pl's arrays for nb blocks: 0 or -1 (out of memory); free with
 * pf_shards_plan_free (NULL arrays fine). */
int pf_shards_plan_alloc(shards_cfg *c, shard_plan *pl, size_t nb);
void pf_shards_plan_free(shard_plan *pl);

/* Claim task t of plan pl into a free entry (c->lock held; one must be
 * free): the entry. */
int pf_shards_claim_task(shards_cfg *c, shard_plan *pl, size_t t);
/* Read, decode (and map, with a fused map) task t of pl at read turn
 * `turn` into entry e; called and returns with c->lock held, released
 * while it works; publishes the entry E_READY or E_ERR. */
void pf_shards_run_task(pf_op *op, shard_plan *pl, size_t t, size_t turn, int e,
			pf_decoder *d);
/* The worker thread (arg: the op). */
void *pf_shards_worker(void *arg);
/* Pause the workers and wait until all idle (quit: tell them to end, no
 * wait). */
void pf_shards_quiesce(shards_cfg *c, int quit);
/* Release an entry's mapped outputs not handed out. */
void pf_shards_drop_outs(shard_entry *en);
/* Free every entry; with keep_ahead, not those holding tasks read ahead
 * (the first npre of the next plan), which become this epoch's. */
void pf_shards_free_entries(shards_cfg *c, int keep_ahead);
/* Arm the test fault (pf_shards_set_test_fault) on reader rd (NULL ok). */
void pf_shards_arm_test_fault(pf_reader *rd);

#endif
