/*
 * train_loop.c - pipe-train's runs: the training loop (model, device feed,
 * eval, progress, checkpoints at epoch ends and on SIGINT/SIGTERM, the
 * reports); --model none is train_none.c.  See train.h for how the
 * files of pipe-train depend on each other.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_devfeed.h"
#include "pf_model.h"
#include "pf_stats.h"
#include "pipefeed.h"
#include "ranks.h"
#include "train.h"

/* ==== progress ============================================================ */

typedef struct progress {
	int tty, quiet;
	double last;
} progress;

static void show(progress *pg, int epoch, int epochs, uint64_t step,
		 uint64_t steps_per_epoch, double ips, double stall, double eta)
{
	if (!pg->tty || pg->quiet)
		return;
	double t = now_s();
	if (t - pg->last < 0.1)
		return;
	pg->last = t;
	char bar[24] = "";
	if (steps_per_epoch) {
		int filled = (int)(20.0 * step / steps_per_epoch);
		for (int i = 0; i < 20; i++)
			bar[i] = i < filled ? '#' : '.';
		bar[20] = 0;
		fprintf(stderr, "\r epoch %d/%d [%s] %llu/%llu  %.0f img/s  stall %.1f%%  ETA %.0fs   ",
			epoch + 1, epochs, bar, (unsigned long long)step,
			(unsigned long long)steps_per_epoch, ips, 100 * stall, eta);
	} else {
		fprintf(stderr, "\r epoch %d/%d  %llu steps  %.0f img/s  stall %.1f%%   ",
			epoch + 1, epochs, (unsigned long long)step, ips, 100 * stall);
	}
	fflush(stderr);
}

static void clear_progress(progress *pg)
{
	if (pg->tty && !pg->quiet) {
		fprintf(stderr, "\r%80s\r", "");
		fflush(stderr);
	}
}

/* ==== interruption ======================================================== */

/* The signal that asked us to stop (SIGINT / SIGTERM), 0 while none.  The
 * handler only sets it; the training loop looks at it after each step. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

static void catch_stop_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL); /* mpirun forwards it (not SIGINT) */
}

/* ==== training ============================================================ */

/* Everything a training run holds, from trainer_open to trainer_close. */
typedef struct trainer {
	const opts *o;
	const run_state *rs;  /* where a resumed run starts; NULL: a new run */
	pf_model_cfg mc;
	FILE *out;            /* epoch lines: stdout, or stderr with --json */
	pf_device *dev;
	pf_stream *cs;        /* the compute stream */
	pf_model *m;
	pf_pipeline *tp, *ep; /* train and eval pipelines (ep: NULL without --eval) */
	pf_iter *tit, *eit;
	pf_devfeed *tf, *ef;
	pf_stats *stats;      /* --stats; NULL: none */
	FILE *fpf;            /* --fingerprint; NULL: none */
	const char *ckpt;     /* --checkpoint (or --resume's file); NULL: none */
	progress pg;
	feed_input tin, ein;
	/* the run so far (steps_total, images_total: across resumes) */
	uint64_t e0, k0, step_total, images_total, images, steps_prev_epoch;
	double train_wall, train_loss, train_acc, test_loss, test_acc;
	/* the first batch of the next epoch, taken early to record the
	 * position of the epoch's start (see epoch_checkpoint) */
	pf_devbatch pending;
	int have_pending, pending_rc;
	/* --model synthetic: the batches kept for the preloaded baseline,
	 * and the step times through the pipeline and preloaded (s) */
	preload pre;
	synth sy;
	double step_pipe, step_pre;
	double step_steady;   /* step_pipe without the start-up (below) */
	/* the first step's wait (the start-up: a shuffle buffer filling,
	 * files opening), and whether it was taken */
	double startup_s;
	int started;
	/* over several ranks (train_ranks.c): the sums between them, each
	 * rank's own --fingerprint lines, and the stop all ranks agreed on */
	dist d;
	int dist_on;
	FILE *fpr;
	int stop_now;
	split sp;             /* each rank reads its blocks (train_split.c) */
} trainer;

/* Was a stop asked?  Over several ranks only the one they all agreed on
 * (in the last step's or epoch end's sum) counts, so all stop together. */
static int stop_asked(const trainer *t)
{
	return t->dist_on ? t->stop_now : stop_signal != 0;
}

/* Where the current epoch stands (train_epoch). */
typedef struct epoch_run {
	uint64_t e, step, step0, images;
	double t0, tstep;
	pf_devfeed_stats s0;
	uint64_t stall_prev, copy_prev;
} epoch_run;

/* Write the checkpoint: model, optimizer, o and st (atomically: a signal
 * or a crash meanwhile leaves the previous file whole). */
static void save_checkpoint(const trainer *t, const run_state *st0)
{
	size_t len;
	run_state st1 = *st0, *st = &st1;
	st->world = t->d.world;
	if (t->d.rank != 0)
		return; /* the ranks agree (the last sum): rank 0 writes */
	char *text = run_encode(t->o, st, &len);
	if (!text) {
		fprintf(stderr, "pipe-train: --checkpoint: out of memory\n");
		exit(1);
	}
	pf_error err = { 0 };
	if (pf_model_save_run(t->m, t->cs, t->ckpt, text, len, &err) < 0)
		die("--checkpoint", &err);
	free(text);
}

/* The message of an interrupted run (stderr). */
static void say_interrupted(const trainer *t, uint64_t epoch, uint64_t step)
{
	if (t->d.rank != 0)
		return;
	if (t->ckpt)
		fprintf(stderr, "pipe-train: interrupted at epoch %" PRIu64 " step %" PRIu64
			"; checkpoint written to %s; resume with: pipe-train --resume %s\n",
			epoch + 1, step, t->ckpt, t->ckpt);
	else
		fprintf(stderr, "pipe-train: interrupted at epoch %" PRIu64 " step %" PRIu64
			"; no checkpoint written (no --checkpoint was given)\n", epoch + 1, step);
}

/* The eval pipeline, iterator and feed (with --eval). */
static void open_eval(trainer *t, const pf_devfeed_opts *fo)
{
	pf_error err = { 0 };
	const char *ev[1] = { t->o->eval };
	t->ep = build(t->o, ev, 1, 0, t->dev);
	if (pf_iter_new(&t->eit, t->ep, &err) < 0)
		die("eval iterator", &err);
	if (pf_devfeed_new(&t->ef, t->dev, t->eit, t->cs, fo, &err) < 0)
		die("eval prefetch_to_device", &err);
}

/* Open the device, the pipelines, the model (loaded from --resume's file
 * when resuming), the iterators and their device feeds.  Exits on errors. */
static void trainer_open(trainer *t, const opts *o, pf_model_cfg mc, const run_state *rs)
{
	pf_error err = { 0 };
	*t = (trainer){ .o = o, .rs = rs, .mc = mc, .out = o->json ? stderr : stdout,
			.ckpt = o->checkpoint ? o->checkpoint : o->resume,
			.pg = { .tty = isatty(2), .quiet = o->quiet },
			.tin = { .img = -1, .lab = -1 }, .ein = { .img = -1, .lab = -1 },
			.train_loss = NAN, .train_acc = NAN, .test_loss = NAN,
			.test_acc = NAN };
	pf_device_opts dopt = { .tf32 = o->tf32 };
	if (pf_device_open(&t->dev, o->device, &dopt, &err) < 0)
		die("--device", &err);
	int world = o->ranks ? ranks_world(o->ranks) : 1, rank = o->ranks ? ranks_rank(o->ranks) : 0;
	opts ob = *o;
	if (split_wanted(o, world, pf_device_kind(t->dev)))
		ob.read_world = world, ob.read_rank = rank;
	split_open(&t->sp, o, world, rank, ob.read_world > 1);
	t->tp = build(&ob, (const char *const *)o->shards, o->nshards, 1, t->dev);
	if (pf_device_note(t->dev)[0] && !o->quiet)
		fprintf(stderr, "pipe-train: %s\n", pf_device_note(t->dev));
	if (pf_stream_new(t->dev, &t->cs, &err) < 0)
		die("stream", &err);
	/* with --pipeline the batch size is the spec's: size the model for
	 * the largest batch it can see */
	if (o->pipeline && t->mc.max_batch < 4096)
		t->mc.max_batch = 4096;
	if (o->synth_us)
		synth_init(&t->sy, t->dev, t->cs, o->synth_us);
	else if (pf_model_new(&t->m, t->dev, &t->mc, &err) < 0)
		die("model", &err);
	dist_init(&t->d, o->ranks, o->deterministic, t->m ? pf_model_nparams(t->m) : 0);
	t->dist_on = t->d.world > 1;
	t->d.bucket_mb = o->bucket_mb;
	dist_nccl_open(&t->d, t->dev, t->m, o, o->quiet);
	if ((t->dist_on || t->d.nccl) && t->m)
		dist_buckets(&t->d, t->dev, t->m);
	if (rs) {
		/* the epoch's sums so far are all ranks': rank 0 carries them */
		double zero[4] = { 0 };
		if (pf_model_load(t->m, t->cs, o->resume, &err) < 0 ||
		    pf_model_set_acc(t->m, t->cs, PF_ACC_TRAIN, t->d.rank ? zero : rs->acc,
				     &err) < 0)
			die("--resume", &err);
		t->e0 = rs->epoch;
		t->k0 = rs->step;
		t->step_total = rs->steps;
		t->images_total = rs->images;
	}
	if (o->fingerprint && t->dist_on) {
		char fn[4096];
		snprintf(fn, sizeof(fn), "%s.rank%d", o->fingerprint, t->d.rank);
		if (!(t->fpr = fopen(fn, "w"))) {
			fprintf(stderr, "pipe-train: --fingerprint: %s: %s\n", fn, strerror(errno));
			exit(1);
		}
	}
	if (o->fingerprint && t->d.rank == 0 && !(t->fpf = fopen(o->fingerprint, "w"))) {
		fprintf(stderr, "pipe-train: --fingerprint: %s: %s\n", o->fingerprint,
			strerror(errno));
		exit(1);
	}
	if ((rs ? pf_iter_new_at(&t->tit, t->tp, &rs->pos, &err)
		: pf_iter_new(&t->tit, t->tp, &err)) < 0)
		die(rs ? "--resume: iterator" : "iterator", &err);
	t->stats = train_stats_open(o, t->tit);
	pf_devfeed_opts fo = { .depth = o->depth,
			       .epochs = o->epochs - (int64_t)t->e0, .pinned_batches = 1,
			       .zero_copy = !o->zero_copy_off };
	if (pf_devfeed_new(&t->tf, t->dev, t->tit, t->cs, &fo, &err) < 0)
		die("prefetch_to_device", &err);
	if (o->eval)
		open_eval(t, &fo);
	if (!o->quiet && o->synth_us) {
		fprintf(stderr, "pipe-train: %s, model %s (a step of %u us on the compute stream, no host CPU)\n",
			pf_device_info(t->dev), o->model, o->synth_us);
	} else if (!o->quiet) {
		fprintf(stderr, "pipe-train: %s, model %s (%zu parameters)\n",
			pf_device_info(t->dev), o->model, pf_model_nparams(t->m));
		if (rs)
			fprintf(stderr, "pipe-train: resuming %s at epoch %" PRIu64 " step %" PRIu64 "\n",
				o->resume, t->e0 + 1, t->k0);
	}
}

/* Free what trainer_open opened, in the order the device needs.  Returns
 * status, or 1 when the --fingerprint file could not be written. */
static int trainer_close(trainer *t, int status)
{
	pf_error err = { 0 };
	if (t->have_pending)
		pf_devfeed_release(t->tf, &t->pending, &err);
	if ((t->fpf && fclose(t->fpf) != 0) || (t->fpr && fclose(t->fpr) != 0)) {
		fprintf(stderr, "pipe-train: --fingerprint: %s: write failed\n", t->o->fingerprint);
		status = 1;
	}
	dist_free(&t->d);
	split_close(&t->sp);
	pf_devfeed_free(t->tf);
	pf_devfeed_free(t->ef);
	train_stats_close(t->stats);
	pf_iter_free(t->tit);
	pf_iter_free(t->eit);
	pf_pipeline_free(t->tp);       /* its batches are the device's pinned memory */
	pf_pipeline_free(t->ep);
	pf_stream_sync(t->dev, t->cs, NULL);
	preload_free(&t->pre, t->dev);
	pf_model_free(t->m);
	pf_stream_free(t->dev, t->cs);
	pf_device_close(t->dev);
	return status;
}

/* The next training batch: the one taken early at the last epoch's end,
 * else the feed's.  0, PF_END or an error code. */
static int next_train_batch(trainer *t, pf_devbatch *b, pf_error *err)
{
	if (t->have_pending) {
		*b = t->pending;
		t->have_pending = 0;
		return t->pending_rc;
	}
	return pf_devfeed_next(t->tf, b, err);
}

/* One training step on batch b of the epoch er: the step, the counters,
 * the stats file's step record, the progress line. */
static void train_on(trainer *t, epoch_run *er, pf_devbatch *b)
{
	const opts *o = t->o;
	pf_error err = { 0 };
	int ei = (int)er->e;
	if ((o->synth_us || o->preloaded) && !t->dist_on)
		preload_keep(&t->pre, t->dev, t->cs, b);
	if (o->synth_us && t->dist_on) {
		t->stop_now |= dist_synth(&t->d, t->dev, t->cs, &t->sy, o->synth_us, b->batch,
					  stop_signal != 0, t->step_total + 1);
	} else if (o->synth_us) {
		synth_step(&t->sy);
	} else if (t->sp.on) { /* this rank's blocks' rows */
		bind_input(&t->tin, b, t->mc.sizes[0]);
		t->stop_now |= split_train(&t->sp, &t->d, t->dev, t->m, t->cs, &t->tin, b, t->mc.sizes[0],
					   stop_signal != 0, t->step_total + 1, t->fpf, t->fpr,
					   er->e, er->step);
	} else {
		bind_input(&t->tin, b, t->mc.sizes[0]);
		uint64_t h = t->fpf || t->fpr ? batch_hash(t->dev, t->cs, &t->tin, b) : 0;
		if (t->fpf)
			fprintf(t->fpf, "%" PRIu64 " %" PRIu64 " %016" PRIx64 "\n", er->e + 1,
				er->step + 1, h);
		if (t->dist_on || t->d.nccl) { /* (NCCL alone: a group of one) */
			t->stop_now |= dist_train(&t->d, t->m, t->cs, &t->tin.in, t->mc.sizes[0],
						  b->batch, stop_signal != 0, t->step_total + 1,
						  t->fpr, er->e, er->step, h);
		} else if (pf_model_train_step(t->m, t->cs, &t->tin.in, &err) < 0) {
			char what[64];   /* an asynchronous fault names where it surfaced */
			snprintf(what, sizeof(what), "train step (epoch %d, step %llu)", ei,
				 (unsigned long long)er->step);
			die(what, &err);
		}
	}
	pf_devfeed_release(t->tf, b, &err);
	er->step++;
	t->step_total++;
	er->images += b->batch;
	t->images_total += b->batch;
	double tn = now_s(), el = tn - er->t0;
	pf_devfeed_stats sn;
	pf_devfeed_get_stats(t->tf, &sn);
	if (!t->started++)
		t->startup_s = (sn.stall_host_ns + sn.stall_device_ns) * 1e-9;
	if (t->stats) {
		/* the step: its share of the feed's stall, the rest of the
		 * loop's time since the last step is compute */
		uint64_t sc = sn.stall_host_ns + sn.stall_device_ns;
		uint64_t ds = sc - er->stall_prev, tot = (uint64_t)((tn - er->tstep) * 1e9);
		pf_stats_step(t->stats, ds, tot > ds ? tot - ds : 0,
			      sn.copy_ns - er->copy_prev, b->batch);
		er->stall_prev = sc;
		er->copy_prev = sn.copy_ns;
		er->tstep = tn;
	}
	double stall = el > 0 ? ((sn.stall_host_ns - er->s0.stall_host_ns) +
				 (sn.stall_device_ns - er->s0.stall_device_ns)) * 1e-9 / el : 0;
	double eta = t->steps_prev_epoch && er->step ? el / (double)(er->step - er->step0) *
		(double)((o->epochs - ei) * t->steps_prev_epoch - er->step) : 0;
	show(&t->pg, ei, o->epochs, er->step, t->steps_prev_epoch, er->images / el,
	     stall, eta);
}

/*
 * A stop was asked (a signal or --stop-after-steps) after a step of epoch
 * er.  Was that the epoch's last batch?  Then return PF_END: the epoch
 * finishes as usual (eval, epoch line) and its checkpoint is written, so a
 * resume re-reads nothing.  Else the position is "epoch e, `step` batches
 * trained on" (the feeder may be further ahead; the batch looked at is not
 * trained on): write that checkpoint (with one), say so and return 130.
 */
static int stop_mid_epoch(trainer *t, const epoch_run *er)
{
	pf_error err = { 0 };
	pf_devbatch nb;
	int nrc = pf_devfeed_next(t->tf, &nb, &err);
	if (nrc == PF_END)
		return PF_END;
	if (nrc < 0)
		die("training input", &err);
	pf_devfeed_release(t->tf, &nb, &err);
	clear_progress(&t->pg);
	run_state st = { .epoch = er->e, .step = er->step, .steps = t->step_total,
			 .images = t->images_total };
	if (t->ckpt) {
		if (pf_model_read_acc(t->m, t->cs, PF_ACC_TRAIN, st.acc, 0, &err) < 0)
			die("device", &err);
		if (t->dist_on) /* the epoch's sums of all ranks */
			dist_sum(&t->d, st.acc, 4, "the checkpoint's sums");
		if (pf_iter_epoch_start(t->tit, er->e, er->step, &st.pos, &err) < 0)
			die("--checkpoint: position", &err);
		save_checkpoint(t, &st);
	}
	say_interrupted(t, er->e, er->step);
	return 130;
}

/* The training steps of epoch er, up to its end (returns 0) or a stop in
 * its middle (returns 130). */
static int train_epoch(trainer *t, epoch_run *er)
{
	pf_error err = { 0 };
	for (;;) {
		pf_devbatch b;
		int rc = next_train_batch(t, &b, &err);
		if (rc < 0)
			die("training input", &err);
		if (rc != 0)
			return 0;
		train_on(t, er, &b);
		if (t->o->stop_after && t->step_total >= t->o->stop_after && !stop_asked(t)) {
			/* --stop-after-steps: the same path (on every rank at
			 * the same step) */
			stop_signal = SIGINT;
			t->stop_now = 1;
		}
		if (stop_asked(t))
			return stop_mid_epoch(t, er) == PF_END ? 0 : 130;
	}
}

/* Evaluate the model on the eval feed's next epoch: test loss and
 * accuracy. */
static void eval_epoch(trainer *t)
{
	pf_error err = { 0 };
	pf_devbatch b;
	double acc[4];
	int rc;
	while ((rc = pf_devfeed_next(t->ef, &b, &err)) == 0) {
		bind_input(&t->ein, &b, t->mc.sizes[0]);
		if (pf_model_eval(t->m, t->cs, &t->ein.in, &err) < 0)
			die("eval", &err);
		pf_devfeed_release(t->ef, &b, &err);
	}
	if (rc < 0)
		die("eval input", &err);
	if (pf_model_read_acc(t->m, t->cs, PF_ACC_EVAL, acc, 1, &err) < 0)
		die("device", &err);
	t->test_loss = acc[3] ? acc[0] / acc[3] : NAN;
	t->test_acc = acc[3] ? acc[1] / acc[3] : NAN;
}

/* The end of epoch er's steps: its loss and accuracy, wall time and stall,
 * the eval, the epoch line. */
static void epoch_end(trainer *t, const epoch_run *er)
{
	const opts *o = t->o;
	pf_error err = { 0 };
	double acc[4] = { NAN, NAN, 0, 0 };
	/* the epoch ends when its steps have run (a real loop reads its
	 * loss; the synthetic one has none: it waits for the stream) */
	if (o->synth_us ? pf_stream_sync(t->dev, t->cs, &err) < 0
			: pf_model_read_acc(t->m, t->cs, PF_ACC_TRAIN, acc, 1, &err) < 0) {
		char what[80];   /* device work of the epoch faults here at the latest */
		snprintf(what, sizeof(what), "device, end of epoch %llu (after step %llu)",
			 (unsigned long long)er->e, (unsigned long long)er->step);
		die(what, &err);
	}
	if (t->dist_on) {
		/* the loss of all ranks' rows, and a stop any rank was asked
		 * for: all go on, or all stop, after this epoch */
		double v[5] = { acc[0], acc[1], acc[2], acc[3], stop_signal != 0 };
		dist_sum(&t->d, v, 5, "the epoch's end");
		memcpy(acc, v, sizeof(acc));
		t->stop_now |= v[4] > 0;
	}
	double el = now_s() - er->t0;
	t->train_wall += el;
	pf_devfeed_stats s1;
	pf_devfeed_get_stats(t->tf, &s1);
	double stall = ((s1.stall_host_ns - er->s0.stall_host_ns) +
			(s1.stall_device_ns - er->s0.stall_device_ns)) * 1e-9 / el;
	t->train_loss = acc[3] ? acc[0] / acc[3] : NAN;
	t->train_acc = acc[3] ? acc[1] / acc[3] : NAN;
	t->images += er->images;
	t->steps_prev_epoch = er->step;
	if (t->ef)
		eval_epoch(t);
	clear_progress(&t->pg);
	if (!o->quiet) {
		fprintf(t->out, "epoch %d/%d:", (int)er->e + 1, o->epochs);
		if (!o->synth_us)
			fprintf(t->out, " loss %.4f acc %.4f", t->train_loss, t->train_acc);
		if (t->ef)
			fprintf(t->out, " test_loss %.4f test_acc %.4f", t->test_loss,
				t->test_acc);
		fprintf(t->out, " images/s %.0f stall %.2f%%\n", er->images / el,
			100 * stall);
		fflush(t->out);
	}
}

/*
 * The checkpoint at the end of epoch e (with --checkpoint, or when a stop
 * was asked): the position is the next epoch's start, which the iterator
 * records when it begins that epoch; taking the next batch now (kept for
 * the next epoch) guarantees it has.  Returns 130 when a stop was asked
 * before the last epoch, else 0.
 */
static int epoch_checkpoint(trainer *t, uint64_t e, uint64_t step)
{
	pf_error err = { 0 };
	run_state st = { .epoch = e + 1, .steps = t->step_total, .images = t->images_total };
	if (e + 1 >= (uint64_t)t->o->epochs) {
		st.done = 1;
		/* the position after the last epoch's end, for a resume with
		 * more epochs: the feed has taken the iterator's PF_END (it
		 * handed it over under its lock) and calls it no more, so
		 * reading the position here is safe */
		if (t->ckpt && pf_iter_position(t->tit, &st.pos, &err) == 0 &&
		    st.pos.at_end && st.pos.epoch == e)
			st.has_pos = 1;
	} else if (t->ckpt) {
		t->pending_rc = pf_devfeed_next(t->tf, &t->pending, &err);
		if (t->pending_rc < 0)
			die("training input", &err);
		t->have_pending = 1;
		if (pf_iter_epoch_start(t->tit, e + 1, 0, &st.pos, &err) < 0)
			die("--checkpoint: position", &err);
	}
	if (t->ckpt)
		save_checkpoint(t, &st);
	if (stop_asked(t) && !st.done) {
		say_interrupted(t, e, step);
		return 130;
	}
	return 0;
}

/* The end of the run: --save, then the done: line or the JSON object. */
static void report(trainer *t)
{
	const opts *o = t->o;
	pf_error err = { 0 };
	pf_devfeed_stats st;
	pf_devfeed_get_stats(t->tf, &st);
	double wall = t->train_wall;
	double stall_share = wall > 0 ? (st.stall_host_ns + st.stall_device_ns) * 1e-9 / wall : 0;
	damage dm = damage_sum(t->tit);
	int fu[2] = { 0, 0 };
	if (t->m)
		pf_model_fused_layers(t->m, fu);
	if (o->save && t->d.rank == 0 && pf_model_save(t->m, t->cs, o->save, &err) < 0)
		die("--save", &err);
	if (o->json) {
		printf("{\"device\":\"%s\",\"model\":\"%s\",\"world_size\":%d,"
		       "\"deterministic\":%s,\"allreduce_wait_s\":%.3f,\"allreduce_buckets_s\":%.3f,"
		       "\"allreduce_overlap\":%.4f,\"allreduce_buckets\":%d,\"bucket_mb\":%g,"
		       "\"epochs\":%d,\"batch\":%d,"
		       "\"steps\":%" PRIu64 ",\"images\":%" PRIu64 ",\"wall_s\":%.3f,"
		       "\"images_per_sec\":%.1f,\"stall_share\":%.4f,"
		       "\"stall_host_s\":%.3f,\"stall_device_s\":%.3f,"
		       "\"feeder_input_s\":%.3f,\"feeder_slot_s\":%.3f,\"h2d_copy_s\":%.3f,"
		       "\"skipped_records\":%" PRIu64 ",\"corrupt_blocks\":%" PRIu64
		       ",\"dropped_samples\":%" PRIu64 ",\"resumed\":%s,\"math\":\"%s\","
		       "\"fused_layers_forward\":%d,\"fused_layers_backward\":%d,\"zero_copy\":%s,",
		       pf_device_kind(t->dev), o->model, t->d.world,
		       o->deterministic && t->d.world > 1 ? "true" : "false",
		       o->ranks ? ranks_wait_s(o->ranks) : 0.0, t->d.reduce_s,
		       t->d.reduce_s > 0 ? t->d.overlap_s / t->d.reduce_s : 0.0, t->d.nbuckets,
		       o->bucket_mb, o->epochs, o->batch,
		       t->step_total, t->images_total,
		       wall, wall > 0 ? t->images / wall : 0, stall_share,
		       st.stall_host_ns * 1e-9, st.stall_device_ns * 1e-9,
		       st.feeder_input_ns * 1e-9, st.feeder_slot_ns * 1e-9, st.copy_ns * 1e-9,
		       dm.skipped_records, dm.corrupt_blocks, dm.dropped_samples,
		       t->rs ? "true" : "false", pf_device_math(t->dev), fu[0], fu[1],
		       st.zero_copy ? "true" : "false");
		split_json(&t->sp, o);
		printf("\"allreduce\":\"%s\",", t->d.allreduce ? t->d.allreduce : "none");
		if (t->step_pre > 0)
			printf("\"step_s\":%.6f,\"preloaded_step_s\":%.6f,\"never_starves_ratio\":%.4f,"
			       "\"startup_s\":%.4f,\"never_starves_ratio_steady\":%.4f,",
			       t->step_pipe, t->step_pre, t->step_pipe / t->step_pre, t->startup_s,
			       t->step_steady / t->step_pre);
		if (o->synth_us)
			printf("\"train_loss\":null,\"train_accuracy\":null,");
		else
			printf("\"train_loss\":%.6f,\"train_accuracy\":%.4f,", t->train_loss,
			       t->train_acc);
		if (t->ef)
			printf("\"test_loss\":%.6f,\"test_accuracy\":%.4f}\n", t->test_loss,
			       t->test_acc);
		else
			printf("\"test_loss\":null,\"test_accuracy\":null}\n");
	} else if (!o->quiet) {
		printf("done: %" PRIu64 " images in %.2fs, %.0f images/s, stall %.2f%%, "
		       "skipped_records %" PRIu64 ", corrupt_blocks %" PRIu64
		       ", dropped_samples %" PRIu64 "\n",
		       t->images, wall, wall > 0 ? t->images / wall : 0,
		       100 * stall_share, dm.skipped_records, dm.corrupt_blocks,
		       dm.dropped_samples);
		printf("math: %s\n", pf_device_math(t->dev));
		if (t->step_pre > 0)
			printf("never-starves ratio %.3f: step %.3f ms through the pipeline, %.3f ms preloaded"
			       " (%.3f after the start-up's %.1f ms)\n",
			       t->step_pipe / t->step_pre, t->step_pipe * 1e3, t->step_pre * 1e3,
			       t->step_steady / t->step_pre, t->startup_s * 1e3);
	}
}

/*
 * The model's preloaded baseline (--preloaded): `steps` training steps of a
 * fresh model (the same configuration and seed) over the batches kept, no
 * pipeline, the stream synced before and after.  Seconds per step.
 */
static double preload_run_model(trainer *t, uint64_t steps)
{
	pf_error err = { 0 };
	pf_model *m;
	if (!t->pre.n)
		return 0;
	if (pf_model_new(&m, t->dev, &t->mc, &err) < 0)
		die("--preloaded: model", &err);
	feed_input fi = { .img = -1, .lab = -1 };
	if (pf_stream_sync(t->dev, t->cs, &err) < 0)
		die("--preloaded", &err);
	double t0 = now_s();
	for (uint64_t k = 0; k < steps; k++) {
		bind_input(&fi, &t->pre.b[k % (uint64_t)t->pre.n], t->mc.sizes[0]);
		if (pf_model_train_step(m, t->cs, &fi.in, &err) < 0)
			die("--preloaded: train step", &err);
	}
	if (pf_stream_sync(t->dev, t->cs, &err) < 0)
		die("--preloaded", &err);
	double el = now_s() - t0;
	pf_model_free(m);
	return el / (double)steps;
}

/*
 * The preloaded baseline, after the run (--model synthetic, or
 * --preloaded): as many steps as this run took, over the batches kept
 * (preload_keep), with no pipeline.  The stats file's sampler stops first
 * (the pipeline is done; the file keeps the run), and the ratio goes into
 * the file as a consumer event "never_starves" (old: preloaded step ns,
 * new: step ns through the pipeline; doc/STATS.md), which pipe-stat
 * reports.
 */
static void preloaded_baseline(trainer *t)
{
	const opts *o = t->o;
	uint64_t steps = t->step_total - (t->rs ? t->rs->steps : 0);
	if ((!o->synth_us && !o->preloaded) || !steps || t->dist_on)
		return;
	pf_stats_detach(t->stats);
	t->step_pipe = t->train_wall / (double)steps;
	/* without the start-up (the first step's wait): what a run long
	 * enough to amortize it would show */
	t->step_steady = (t->train_wall - t->startup_s) / (double)steps;
	t->step_pre = o->synth_us ? preload_run(&t->pre, &t->sy, steps)
				  : preload_run_model(t, steps);
	if (t->stats && t->step_pre > 0) {
		char why[128];
		snprintf(why, sizeof(why), "never-starves ratio %.4f over %" PRIu64
			 " steps: step through the pipeline / step over preloaded batches",
			 t->step_pipe / t->step_pre, steps);
		pf_stats_event(t->stats, 0, -1, "never_starves", (int64_t)(t->step_pre * 1e9),
			       (int64_t)(t->step_pipe * 1e9), why);
	}
}

/* The epochs from where the run stands to the last, then the report.
 * Returns 0, or 130 when stopped. */
static int train_epochs(trainer *t)
{
	for (uint64_t e = t->e0; e < (uint64_t)t->o->epochs; e++) {
		epoch_run er = { .e = e, .step = e == t->e0 ? t->k0 : 0, .t0 = now_s() };
		er.step0 = er.step;
		er.tstep = er.t0;
		pf_devfeed_get_stats(t->tf, &er.s0);
		er.stall_prev = er.s0.stall_host_ns + er.s0.stall_device_ns;
		er.copy_prev = er.s0.copy_ns;
		if (train_epoch(t, &er) == 130)
			return 130;
		epoch_end(t, &er);
		if (!t->ckpt && !stop_asked(t))
			continue;
		if (epoch_checkpoint(t, e, er.step) == 130)
			return 130;
	}
	preloaded_baseline(t);
	if (t->dist_on && t->stats) /* for pipe-stat over the ranks' files */
		pf_stats_event(t->stats, 0, -1, "allreduce_wait", t->d.rank,
			       (int64_t)((ranks_wait_s(t->o->ranks) - t->d.wait_first) * 1e9),
			       "rank (old), ns it waited in all-reduces after the first step (new)");
	split_sums(&t->sp, &t->d, t->tit);
	report(t);
	return 0;
}

int run_training(const opts *o, pf_model_cfg mc, const run_state *rs)
{
	catch_stop_signals();
	trainer t;
	trainer_open(&t, o, mc, rs);
	int status = train_epochs(&t);
	return trainer_close(&t, status);
}
