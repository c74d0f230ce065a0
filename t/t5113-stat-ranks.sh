#!/bin/sh
# t5113-stat-ranks: pipe-stat over the stats files of a run's ranks
# (pipe-train --stats FILE over mpirun: FILE on rank 0, FILE.rank1 ...):
# rank 1 given a slow input (a sleep op in its pipeline; mpirun starts the
# two ranks with different --pipeline, the same batches) is named the
# straggler, held back by its input, and the report says what the others'
# waiting costs; --json says the same; ranks with the same work show far
# less waiting.  Skips without OpenMPI.
. "$srcdir/t/tap.sh"
. "$srcdir/t/ranks.sh"
plan 9
tmp=`tap_tmp t5113`
b=$top_builddir
syn_shards "$tmp/syn" 1000 1 3
ok $? "1000 synthetic samples in 3 shards"

args="--device cpu --model mlp:16-32-4 --batch 30 --epochs 2 --quiet --stats $tmp/run.pfstat"
ASAN_OPTIONS=$MPI_ASAN timeout 120 mpirun --oversubscribe \
	-np 1 "$b/pipe-train" $args --pipeline 'map(decode) | shuffle(500) | batch(30) | prefetch(2)' \
		"$tmp/syn-*.pfs" : \
	-np 1 "$b/pipe-train" $args --pipeline 'map(decode) | sleep(1000) | shuffle(500) | batch(30) | prefetch(2)' \
		"$tmp/syn-*.pfs" </dev/null >/dev/null 2>"$tmp/run.log"
ok $? "2 ranks, rank 1's input 1 ms a sample slower"
test -s "$tmp/run.pfstat" && test -s "$tmp/run.pfstat.rank1"
ok $? "  rank 0 wrote run.pfstat, rank 1 run.pfstat.rank1"
out=`"$b/pipe-stat" "$tmp/run.pfstat" "$tmp/run.pfstat.rank1"`
ok $? "pipe-stat over both files"
printf '%s\n' "$out" | sed 's/^/#   /'
like "$out" "straggler:   rank 1" "  names rank 1 the straggler"
like "$out" "held back:   by its input" "  held back by its input"
j=`"$b/pipe-stat" --json "$tmp/run.pfstat" "$tmp/run.pfstat.rank1"`
like "$j" '"straggler":1,"held_back_by":"input"' "  --json: the same"
share=`printf '%s' "$j" | sed -n 's/.*"wait_cost_share":\([0-9.]*\).*/\1/p'`
awk -v s="$share" 'BEGIN { exit !(s > 0.5) }'
ok $? "  the others' wait is most of the run (share $share: 1 s of input a rank against ms of compute)"

# the same work on both ranks (the step dominates): waiting costs little
# (on an idle host no straggler at all; the host's other load makes one
# rank wait a few percent)
ASAN_OPTIONS=$MPI_ASAN timeout 120 mpirun --oversubscribe -np 2 "$b/pipe-train" --device cpu \
	--model synthetic:20000 --batch 50 --epochs 2 --quiet --stats "$tmp/even.pfstat" \
	"$tmp/syn-*.pfs" </dev/null >/dev/null 2>"$tmp/even.log"
out=`"$b/pipe-stat" "$tmp/even.pfstat" "$tmp/even.pfstat.rank1"`
printf '%s\n' "$out" | sed 's/^/#   /'
even=`"$b/pipe-stat" --json "$tmp/even.pfstat" "$tmp/even.pfstat.rank1" |
	sed -n 's/.*"wait_cost_share":\([0-9.]*\).*/\1/p'`
awk -v e="$even" -v s="$share" 'BEGIN { exit !(e != "" && e < s / 2) }'
ok $? "the same work on both ranks: the wait costs $even of the run, under half the slow input's $share"
