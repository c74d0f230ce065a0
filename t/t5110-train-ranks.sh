#!/bin/sh
# t5110-train-ranks: mpirun -np N pipe-train (N = 1..4, loopback): --batch
# stays the global batch and every rank sees the same global batches in
# the same order as a run alone (the --fingerprint files are equal); each
# rank trains on its rows of every batch, the ranks' rows tile the batch
# (every sample exactly once, uneven shares and a last batch smaller than
# the world included: a rank with no rows contributes nothing and nothing
# hangs); the loss curve equals the run alone within 1e-4 (gradients are
# summed in another order); --deterministic gives the same model bits on
# every run of a world size; --json says world_size and counts all ranks'
# images.  Skips without OpenMPI.
. "$srcdir/t/tap.sh"
. "$srcdir/t/ranks.sh"
plan 50
tmp=`tap_tmp t5110`
b=$top_builddir
syn_shards "$tmp/syn" 1000 1 3
ok $? "1000 synthetic samples in 3 shards"

# train BATCH OUT [flags]: 2 epochs; OUT.json, OUT.log, OUT.fp (+ .rankR)
train() {
	bt=$1 out=$2
	shift 2
	"$@" "$b/pipe-train" --device cpu --model mlp:16-32-4 --batch "$bt" --lr 0.01 \
		--seed 7 --shuffle 500 --epochs 2 --json --fingerprint "$out.fp" \
		--save "$out.model" $flags "$tmp/syn-*.pfs" >"$out.json" 2>"$out.log"
}
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2"; }
losses() { sed -n 's/^epoch \([0-9]*\)\/.*: loss \([0-9.]*\).*/\2/p' "$1" | tr '\n' ' '; }
# tiles FP N: the rank files FP.rank0..N-1 name the same batch at each
# step and their rows [lo, hi) tile [0, rows of the step) without a gap or
# an overlap; prints the rows of all steps ("mismatch" otherwise)
tiles() {
	for r in `seq 0 $(($2 - 1))`; do cat "$1.rank$r"; done |
		awk '{ k = $1 " " $2; if (!(k in h)) h[k] = $3; else if (h[k] != $3) bad = 1
		       if ($5 > $4) { if ((k, $4) in nx) bad = 1; nx[k, $4] = $5; sum[k] += $5 - $4 } }
		     END { for (k in h) { at = 0; while ((k, at) in nx) at = nx[k, at]
		                          if (at != sum[k]) bad = 1; rows += sum[k] }
		           if (bad) print "mismatch"; else print rows }'
}

flags=
train 30 "$tmp/alone"
ok $? "alone: trained"
alone_loss=`losses "$tmp/alone.log"`
diag "alone: losses $alone_loss"

for n in 1 2 3 4; do
	train 30 "$tmp/w$n" mpirun_n $n
	ok $? "mpirun -np $n: trained"
	cmp -s "$tmp/alone.fp" "$tmp/w$n.fp"
	ok $? "  $n rank(s): the same global batches in the same order as alone"
	is "`field world_size "$tmp/w$n.json"`/`field images "$tmp/w$n.json"`" "$n/2000" \
		"  --json: world_size $n, images of all ranks"
	got=`losses "$tmp/w$n.log"`
	awk -v a="$alone_loss" -v g="$got" 'BEGIN { na = split(a, x); ng = split(g, y)
		if (na != 2 || ng != 2) exit 1
		for (i = 1; i <= na; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > 1e-4) exit 1 }
		exit 0 }'
	ok $? "  loss curve $got = alone's $alone_loss within 1e-4"
done
ov=`field allreduce_overlap "$tmp/w2.json"`
awk -v o="$ov" -v s="\`field allreduce_buckets_s "$tmp/w2.json"\`" 'BEGIN { exit !(o >= 0 && o <= 1 && s > 0) }'
ok $? "2 ranks: gradients summed in buckets (one a layer) while backward ran: overlap share $ov"
# every sample once: each step's rows over the ranks tile its batch
for n in 2 3 4; do
	is "`tiles "$tmp/w$n.fp" $n`" 2000 "$n ranks: the ranks' rows add up to every sample of 2 epochs once"
done
# each rank read only its blocks (--rank-read split, the default): block b
# of file f is rank (f + b) % N's, and the 3 files here are one block each
arr() { sed -n "s/.*\"$1\":\[\([^]]*\)\].*/\1/p" "$2"; }
is "`field rank_read "$tmp/w2.json"`/`field rank_read "$tmp/w1.json"`" '"split"/"all"' \
	"--json: rank_read split over ranks (all alone)"
is "`arr decoded_records "$tmp/w4.json" | awk -F, '{ print ($1 > 0) ($2 > 0) ($3 > 0) ($4 > 0) }'`" 1110 \
	"4 ranks over 3 one-block files: ranks 0-2 decoded one file each, rank 3 nothing"
flags="--rank-read all"
train 30 "$tmp/a4" mpirun_n 4
ok $? "--rank-read all over 4 ranks: trained"
cmp -s "$tmp/alone.fp" "$tmp/a4.fp"
ok $? "  the same global batches as alone"
is "`tiles "$tmp/a4.fp" 4`" 2000 "  the ranks' rows add up to every sample of 2 epochs once"
awk -v s="`arr decoded_records "$tmp/w4.json"`" -v a="`arr decoded_records "$tmp/a4.json"`" 'BEGIN {
	ns = split(s, x, ","); na = split(a, y, ","); if (ns != 4 || na != 4) exit 1
	for (i = 1; i <= 4; i++) { sum += x[i]; if (x[i] > m) m = x[i]; if (y[i] < 2000) exit 1 }
	exit !(sum <= y[1] * 1.1 && m <= y[1] * 0.4) }'
ok $? "  decoded records per rank: all `arr decoded_records "$tmp/a4.json"`, split `arr decoded_records "$tmp/w4.json"` (each block by one rank)"
awk '{ print $5 - $4 }' "$tmp/a4.fp.rank0" "$tmp/a4.fp.rank3" | sort -u | tr '\n' ' ' >"$tmp/shares"
is "`cat "$tmp/shares"`" "2 3 7 8 " "  batch 30: shares of 7 and 8 rows, the last batch's 2 and 3"

# a last batch smaller than the world: 1000 = 3 x 333 + 1, so at the last
# step of an epoch three of four ranks have no rows
train 333 "$tmp/tail4" mpirun_n 4
ok $? "batch 333 over 4 ranks (all): trained (ranks without rows at the last step did not hang)"
is "`field images "$tmp/tail4.json"`" 2000 "  images: every sample of the 2 epochs"
is "`awk '$1 == 1 && $2 == 4 { print $4 "-" $5 }' "$tmp/tail4.fp.rank0" "$tmp/tail4.fp.rank1" "$tmp/tail4.fp.rank2" "$tmp/tail4.fp.rank3" | tr '\n' ' '`" \
	"0-0 0-0 0-0 0-1 " "  the last step: ranks 0-2 have no rows, rank 3 has the one"
is "`tiles "$tmp/tail4.fp" 4`" 2000 "  the rows tile every batch"
flags=
train 333 "$tmp/tail4s" mpirun_n 4
ok $? "batch 333 over 4 ranks (split): trained"
is "`tiles "$tmp/tail4s.fp" 4`/`cat "$tmp/tail4s.fp.rank"* | awk '$1 == 1 && $2 == 4 { n++ } END { print n }'`" 2000/1 \
	"  the rows tile every batch; the last step's one row is one rank's"
train 333 "$tmp/tail1"
awk -v a="`losses "$tmp/tail1.log"`" -v g="`losses "$tmp/tail4.log"`" 'BEGIN { split(a, x); split(g, y)
	for (i = 1; i <= 2; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > 1e-4 || x[i] == "") exit 1 } }'
ok $? "  its loss curve is the run alone's within 1e-4"

# --deterministic: the same bits for the same world size and seed
flags=--deterministic
train 30 "$tmp/d2a" mpirun_n 2 && train 30 "$tmp/d2b" mpirun_n 2
ok $? "--deterministic over 2 ranks, twice"
cmp -s "$tmp/d2a.model" "$tmp/d2b.model"
ok $? "  the two models are bit for bit the same"
is "`field deterministic "$tmp/d2a.json"`/`field allreduce_buckets "$tmp/d2a.json"`" true/1 \
	"  --json says deterministic, and one bucket (one sum in rank order after backward, in place)"
train 30 "$tmp/d3a" mpirun_n 3 && train 30 "$tmp/d3b" mpirun_n 3
cmp -s "$tmp/d3a.model" "$tmp/d3b.model"
ok $? "  over 3 ranks too"
# --bucket-mb: gradients summed in sized buckets while backward runs; in
# rank order with --deterministic, so the bits of the one sum after it
flags="--deterministic --bucket-mb 0.001"
train 30 "$tmp/b2" mpirun_n 2 && train 30 "$tmp/b3" mpirun_n 3
ok $? "--deterministic --bucket-mb 0.001 (262 floats) over 2 and 3 ranks"
nb=`field allreduce_buckets "$tmp/b2.json"`
test "$nb" -ge 3 && awk -v s="\`field allreduce_buckets_s "$tmp/b2.json"\`" 'BEGIN { exit !(s > 0) }'
ok $? "  $nb buckets of 1 KiB (676 parameters), summed while backward ran"
cmp -s "$tmp/b2.model" "$tmp/d2a.model" && cmp -s "$tmp/b3.model" "$tmp/d3a.model"
ok $? "  the models are bit for bit those of one sum after backward (2 and 3 ranks)"
flags="--bucket-mb 0.00001"
train 30 "$tmp/bmany" mpirun_n 2
st=$?
is "$st/`grep -q 'more than 63 buckets' "$tmp/bmany.log" && echo said`" 2/said \
	"  --bucket-mb too small for 63 buckets: a usage error saying so"
flags="--bucket-mb 0"
train 30 "$tmp/bzero"
is $? 2 "  --bucket-mb 0: a usage error"
flags=--deterministic
train 30 "$tmp/d1" mpirun_n 1
cmp -s "$tmp/d1.model" "$tmp/alone.model"
ok $? "  one rank under mpirun: the model of the run alone, bit for bit"

# the synthetic consumer over ranks: each waits its share of the step
mpirun_n 2 "$b/pipe-train" --device cpu --model synthetic:200 --batch 30 --epochs 2 --json \
	--quiet "$tmp/syn-*.pfs" </dev/null >"$tmp/synth.json" 2>"$tmp/synth.log"
ok $? "--model synthetic:200 over 2 ranks"
is "`field world_size "$tmp/synth.json"`/`field images "$tmp/synth.json"`" "2/2000" \
	"  world_size 2, images of both ranks"

# what does not run over ranks says so
flags=
mpirun_n 2 "$b/pipe-train" --device cpu --model none "$tmp/syn-*.pfs" >/dev/null 2>"$tmp/none.log"
st=$?
test $st -ne 0
ok $? "--model none over 2 ranks is refused (status $st)"
like "`cat "$tmp/none.log"`" "only a model trains" "  saying why"
