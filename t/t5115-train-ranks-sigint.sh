#!/bin/sh
# t5115-train-ranks-sigint: a job of pipe-train ranks stopped by a signal
# on its launcher exits 130 after a consistent checkpoint.  pipe-mpirun
# (SIGINT and SIGTERM become SIGUSR1, which mpirun forwards): every rank
# stops after the same step, rank 0 alone writes the checkpoint, the job
# exits 130, and a resume over another world size goes on with the global
# batches of an uninterrupted run (its fingerprints and the interrupted
# part's, concatenated, are the uninterrupted run's).  SIGUSR1 to a plain
# mpirun does the same; SIGINT to a plain mpirun still checkpoints but
# mpirun exits 1 (OpenMPI aborts the job; said in pipe-mpirun(1)).
# Skips without OpenMPI or setsid.
. "$srcdir/t/tap.sh"
. "$srcdir/t/ranks.sh"
command -v setsid >/dev/null 2>&1 || skip_all "no setsid"
env --default-signal=INT true 2>/dev/null || skip_all "env has no --default-signal (coreutils < 8.31)"
plan 15
tmp=`tap_tmp t5115`
b=$top_builddir
syn_shards "$tmp/syn" 1000 1 3
ok $? "1000 synthetic samples in 3 shards"
base="--device cpu --model mlp:16-32-4 --lr 0.01 --seed 7 --shuffle 500 --batch 30 --deterministic"

# bg NAME LAUNCHER...: a long run (many epochs) in the background, its
# checkpoint NAME.ckpt; sets pid once the first epoch's checkpoint exists
bg() {
	name=$1
	shift
	# (a shell without job control starts a background job with SIGINT
	# ignored, and an ignored signal cannot be trapped: undo that, as a
	# terminal's foreground job would have it)
	ASAN_OPTIONS=$MPI_ASAN env --default-signal=INT "$@" --oversubscribe -np 2 "$b/pipe-train" $base --epochs 100000 \
		--quiet --fingerprint "$tmp/$name.fp" --checkpoint "$tmp/$name.ckpt" \
		"$tmp/syn-*.pfs" </dev/null >/dev/null 2>"$tmp/$name.log" &
	pid=$!
	# the watchdog: the launcher and, pipe-mpirun's mpirun being in a
	# session of its own (its id: mpirun's pid), that session
	( sleep 120; for m in `pgrep -P $pid` $pid; do pkill -KILL -s $m; done 2>/dev/null
	  kill -KILL $pid 2>/dev/null ) &
	dog=$!
	i=0
	while [ ! -s "$tmp/$name.ckpt" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	sleep 0.5
}
finish() { # finish: wait for the job; st its status
	wait $pid
	st=$?
	kill $dog 2>/dev/null
	wait $dog 2>/dev/null
}

for sig in INT TERM; do
	bg "w$sig" "$srcdir/tools/pipe-mpirun"
	kill -$sig $pid
	finish
	is $st 130 "pipe-mpirun -np 2, SIG$sig: the job exits 130"
	is "`grep -c 'interrupted at' "$tmp/w$sig.log"`" 1 "  one rank says where all stopped"
	grep -aq '^world 2$' "$tmp/w$sig.ckpt"
	ok $? "  the checkpoint records world 2"
done

# the checkpoint is consistent: a resume over 3 ranks goes on with the
# global batches of an uninterrupted run
ep=`sed -n 's/^epoch //p' "$tmp/wINT.ckpt" | awk '{ print $1 + 2 }'`
mpirun_n 3 "$b/pipe-train" --resume "$tmp/wINT.ckpt" --epochs "$ep" --quiet \
	--fingerprint "$tmp/r.fp" </dev/null >/dev/null 2>"$tmp/r.log"
ok $? "resumed over 3 ranks to the end of epoch $ep"
timeout 120 "$b/pipe-train" $base --epochs "$ep" --quiet --fingerprint "$tmp/u.fp" \
	"$tmp/syn-*.pfs" </dev/null >/dev/null 2>&1
cat "$tmp/wINT.fp" "$tmp/r.fp" | cmp -s - "$tmp/u.fp"
ok $? "  the interrupted part's batches, then the resume's: the uninterrupted run's"
diag "  stopped after global step `sed -n 's/^steps //p' "$tmp/wINT.ckpt"`"

# SIGUSR1 to a plain mpirun: forwarded, the same
bg usr1 mpirun
kill -USR1 $pid
finish
is $st 130 "mpirun -np 2, SIGUSR1 (forwarded to the ranks): the job exits 130"
is "`grep -c 'interrupted at' "$tmp/usr1.log"`" 1 "  one rank says where all stopped"

# SIGINT to a plain mpirun: the ranks checkpoint, mpirun exits 1
bg int mpirun
kill -INT $pid
finish
is $st 1 "mpirun -np 2, SIGINT: mpirun aborts the job and exits 1 (why pipe-mpirun)"
like "`cat "$tmp/int.log"`" "interrupted at" "  the ranks still stopped together and checkpointed"

"$srcdir/tools/pipe-mpirun" --help >"$tmp/help" 2>&1
ok $? "pipe-mpirun --help"
like "`cat "$tmp/help"`" "exit 130" "  says what it is for"
