#!/bin/sh
# t5116-train-ranks-nccl: pipe-train --allreduce auto|mpi|nccl without a
# GPU: a bad value is a usage error; --allreduce nccl where NCCL cannot
# serve (the cpu device; a cuda device whose libnccl.so.2 does not load)
# says why in one line on rank 0 and trains as before (alone, or with the
# host sums over MPI), --json saying which sums were used; auto on cpu
# says nothing; the choice changes no bits on cpu (the same model as
# --allreduce mpi).  NCCL itself runs in bench/device-check.sh (world 1)
# when a GPU answers.  The MPI checks skip without OpenMPI.
. "$srcdir/t/tap.sh"
plan 14
tmp=`tap_tmp t5116`
b=$top_builddir
skip() { tap_n=$((tap_n + 1)); echo "ok $tap_n # SKIP $1"; }
syn_shards "$tmp/syn" 600 5 2
ok $? "600 synthetic samples in 2 shards"
# train OUT [launcher...] -- [flags]: one epoch; OUT.json, OUT.log, OUT.model
train() {
	out=$1
	shift
	pre=
	while [ "$1" != -- ]; do pre="$pre $1"; shift; done
	shift
	$pre "$b/pipe-train" --device cpu --model mlp:16-32-4 --batch 50 --lr 0.01 --seed 3 \
		--shuffle 200 --epochs 1 --json --quiet --save "$out.model" "$@" \
		"$tmp/syn-*.pfs" >"$out.json" 2>"$out.log"
}
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$2"; }

"$b/pipe-train" --allreduce ring "$tmp/syn-*.pfs" >/dev/null 2>"$tmp/bad.log"
is $? 2 "--allreduce ring: usage error (exit 2)"
like "`cat "$tmp/bad.log"`" "expected auto, mpi or nccl, got 'ring'" "... naming the values"

train "$tmp/plain" --
train "$tmp/one" -- --allreduce nccl
ok $? "alone on cpu with --allreduce nccl: trains (exit 0)"
like "`cat "$tmp/one.log"`" "--allreduce nccl: NCCL needs the cuda device (this run's is cpu): training as one rank alone" \
	"... one line saying why not NCCL"
is "`field allreduce "$tmp/one.json"`" '"none"' "... --json: allreduce none"
cmp -s "$tmp/one.model" "$tmp/plain.model"
ok $? "... the same model bits as without --allreduce"

# a cuda device without NCCL: only where a GPU answers
PF_NCCL_LIBRARY=/nonexistent/libnccl.so.2 "$b/pipe-train" --device cuda --model mlp:16-32-4 \
	--batch 50 --epochs 1 --json --quiet --allreduce nccl "$tmp/syn-*.pfs" \
	>"$tmp/cu.json" 2>"$tmp/cu.log"
if grep -q "no CUDA device" "$tmp/cu.log"; then
	skip "no CUDA device: the missing-NCCL message on cuda is checked where one answers"
else
	like "`cat "$tmp/cu.log"`" "NCCL not loaded: /nonexistent/libnccl.so.2" \
		"cuda, libnccl.so.2 missing: the message names the file"
fi

if ! grep -q '^#define HAVE_MPI 1' "$b/config.h" 2>/dev/null || ! command -v mpirun >/dev/null; then
	for i in 1 2 3 4 5 6; do skip "pipe-train built without MPI (libopenmpi-dev)"; done
	exit $((tap_fail > 0))
fi
. "$srcdir/t/ranks.sh"
train "$tmp/two" mpirun_n 2 -- --allreduce nccl --deterministic
ok $? "2 ranks on cpu with --allreduce nccl: trains (exit 0)"
n=`grep -c "NCCL needs the cuda device (this run's is cpu): gradients summed on the host over MPI" "$tmp/two.log"`
is "$n" 1 "... one line, from rank 0, saying the host sums over MPI are used"
is "`field allreduce "$tmp/two.json"`" '"mpi"' "... --json: allreduce mpi"
train "$tmp/auto" mpirun_n 2 -- --deterministic
like "`field allreduce "$tmp/auto.json"`" mpi "2 ranks, auto on cpu: the host sums"
grep -q NCCL "$tmp/auto.log"
is $? 1 "... and nothing said of NCCL"
train "$tmp/mpi" mpirun_n 2 -- --allreduce mpi --deterministic
cmp -s "$tmp/mpi.model" "$tmp/two.model" && cmp -s "$tmp/mpi.model" "$tmp/auto.model"
ok $? "--allreduce mpi, auto and nccl (on cpu) give the same model bits (--deterministic)"
exit $((tap_fail > 0))
