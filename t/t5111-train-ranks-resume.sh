#!/bin/sh
# t5111-train-ranks-resume: pipe-train over ranks interrupted
# (--stop-after-steps K, and SIGINT on mpirun) and resumed with --resume
# over the same or another number of ranks: rank 0 alone writes the
# checkpoint (world size, seed, the one global position every rank shares,
# the global step), after the step all ranks agreed to stop at; resumed on
# the same world size with --deterministic the final model is bit for bit
# the uninterrupted run's; on another world size the global batches go on
# in the same order (the fingerprints of both parts are the uninterrupted
# run's) and, the rank files of both parts together, every sample of every
# epoch is trained on exactly once (0 duplicates, 0 missing).  Stop steps
# and world sizes: fixed cases plus random ones (T5111_SEED to repeat).
. "$srcdir/t/tap.sh"
. "$srcdir/t/ranks.sh"
plan 36
tmp=`tap_tmp t5111`
b=$top_builddir
syn_shards "$tmp/syn" 1000 1 3
ok $? "1000 synthetic samples in 3 shards"

base="--device cpu --model mlp:16-32-4 --lr 0.01 --seed 7 --shuffle 500 --epochs 3 --batch 30 --deterministic"
# 1000 / 30: 34 steps an epoch (the last of 10 rows), 102 in 3 epochs
run() { # run N OUT [flags]: pipe-train over N ranks (0: no mpirun)
	n=$1 out=$2
	shift 2
	if [ "$n" = 0 ]; then pre=timeout\ 120; else pre="mpirun_n $n"; fi
	$pre "$b/pipe-train" --json --fingerprint "$out.fp" --save "$out.model" "$@" </dev/null \
		>"$out.json" 2>"$out.log"
}
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2"; }
# every sample once per epoch: rank files of the parts; each step's rows
# tile its batch, each (epoch, step) in one part only; prints rows
rows_once() {
	cat "$@" | awk '{ k = $1 " " $2; if ((k, $4) in nx && $5 > $4) bad = 1
		if (!(k in h)) h[k] = $3; else if (h[k] != $3) bad = 1
		if ($5 > $4) { nx[k, $4] = $5; sum[k] += $5 - $4 } }
		END { for (k in h) { at = 0; while ((k, at) in nx) at = nx[k, at]
			if (at != sum[k]) bad = 1; rows += sum[k] }
			print bad ? "mismatch" : rows }'
}

run 2 "$tmp/full" $base "$tmp/syn-*.pfs"
ok $? "the uninterrupted run over 2 ranks"
is "`wc -l <"$tmp/full.fp" | tr -d ' '`" 102 "  one fingerprint line per global step"

# case W1 K W2: stop over W1 ranks after step K, resume over W2
case_() { # case_ W1 K W2 [bits]: bits: also compare the final model
	w1=$1 k=$2 w2=$3 bits=$4 c=$tmp/c$1-$2-$3
	run "$w1" "$c.a" $base --checkpoint "$c.ckpt" --stop-after-steps "$k" "$tmp/syn-*.pfs"
	st=$?
	test -s "$c.ckpt" && grep -aq "^world $w1\$" "$c.ckpt" && grep -aq "^steps $k\$" "$c.ckpt"
	ok $? "$w1 rank(s) stopped after step $k (status $st): the checkpoint says world $w1, step $k"
	run "$w2" "$c.b" --resume "$c.ckpt" --deterministic
	ok $? "  resumed over $w2 rank(s)"
	cat "$c.a.fp" "$c.b.fp" | cmp -s - "$tmp/full.fp"
	ok $? "  the global batches of both parts are the uninterrupted run's, in order"
	r1=`ls "$c.a.fp".rank* 2>/dev/null`
	r2=`ls "$c.b.fp".rank* 2>/dev/null`
	[ -z "$r1" ] && r1=`awk '{ print $0, 0, ($2 == 34 ? 10 : 30) }' "$c.a.fp" >"$c.a.fp.all"; echo "$c.a.fp.all"`
	[ -z "$r2" ] && r2=`awk '{ print $0, 0, ($2 == 34 ? 10 : 30) }' "$c.b.fp" >"$c.b.fp.all"; echo "$c.b.fp.all"`
	is "`rows_once $r1 $r2`" 3000 "  every sample of the 3 epochs exactly once over both parts"
	if [ -n "$bits" ]; then
		cmp -s "$c.b.model" "$tmp/full.model"
		ok $? "  same world size: the final model is bit for bit the uninterrupted run's"
	fi
}
case_ 2 20 2 bits
case_ 2 20 3
case_ 4 34 1
case_ 1 50 4
# random stop steps and world sizes
seed=${T5111_SEED:-`date +%s`}
diag "random cases: T5111_SEED=$seed"
awk -v s="$seed" 'BEGIN { srand(s); for (i = 0; i < 3; i++)
	print 1 + int(rand() * 4), 1 + int(rand() * 100), 1 + int(rand() * 4) }' >"$tmp/cases"
while read -r w1 k w2; do
	case_ "$w1" "$k" "$w2"
done <"$tmp/cases"

# SIGINT on the launcher: every rank stops after the same step, rank 0
# writes the checkpoint, a resume over another world size goes on
ASAN_OPTIONS=$MPI_ASAN timeout --foreground 120 mpirun --oversubscribe -np 2 "$b/pipe-train" $base --epochs 100000 --quiet \
	--checkpoint "$tmp/sig.ckpt" "$tmp/syn-*.pfs" >/dev/null 2>"$tmp/sig.log" &
pid=$!
i=0
while [ ! -s "$tmp/sig.ckpt" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.5
kill -INT $pid
wait $pid
like "`cat "$tmp/sig.log"`" "interrupted at epoch" "SIGINT on mpirun: rank 0 says where all stopped"
is "`grep -c 'interrupted at' "$tmp/sig.log"`" 1 "  one message (rank 0 writes, the others do not)"
grep -aq '^world 2$' "$tmp/sig.ckpt"
ok $? "  the checkpoint records world 2"
timeout 60 "$b/pipe-train" --resume "$tmp/sig.ckpt" --epochs `sed -n 's/^epoch //p' "$tmp/sig.ckpt" | awk '{ print $1 + 2 }'` \
	--json --quiet >"$tmp/sig.json" 2>"$tmp/sig2.log"
ok $? "  resumed alone for the rest of its epoch and one more"
