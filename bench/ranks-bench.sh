#!/bin/sh
# ranks-bench.sh - pipe-train over 2 MPI ranks on this host (loopback)
# against 1 rank alone, the same global batch and data, alternated ROUNDS
# times (the host is shared and noisy): median images/s of each, the
# median of the per-round ratios, and the 2-rank runs' all-reduce wait.
#
#   bench/ranks-bench.sh [BUILD_DIR] [ROUNDS] [MODEL] [BATCH] [FLAGS] [ALT]
#
# FLAGS go to the 2-rank runs only (--deterministic: one sum after the
# backward pass, instead of buckets overlapping it; --bucket-mb N: sized
# buckets).  Each round also runs the 2 ranks with ALT instead of FLAGS
# (default: FLAGS --rank-read all, every rank reading and decoding all the
# data, the way before each rank read only its blocks; give ALT '' with
# FLAGS '--bucket-mb 1' to set sized buckets against one a layer), and
# the records and bytes each rank decoded are printed for both (--json's
# decoded_records / decoded_bytes).
#
# MODEL defaults to synthetic:20000 (a step of 20 ms of device time per
# global batch, no host CPU: each rank waits its share, the compute-bound
# case the issue's 1.8x goal names); give an MLP (mlp:16-1024-1024-4) for
# a step that computes on the cores the two ranks share.  Data: 20000
# synthetic samples in 4 shards, one epoch.
set -eu
b=${1:-.}
rounds=${2:-5}
model=${3:-synthetic:20000}
batch=${4:-256}
flags=${5:-}
alt=${6---rank-read all}
[ $# -ge 6 ] || alt="$flags --rank-read all"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
"$b/t/train-gen" "$tmp/d.raw" 20000 3
"$b/pipe-pack" raw --record-size 17 --field image:u8[16] --field label:u8 \
	-o "$tmp/d" --shards 4 "$tmp/d.raw" >/dev/null
run() { # run [mpirun ...] -- [FLAGS]
	pre=
	while [ "$1" != -- ]; do pre="$pre $1"; shift; done
	shift
	$pre "$b/pipe-train" --device cpu --model "$model" --batch "$batch" --epochs 1 \
		--json --quiet "$@" "$tmp/d-*.pfs" 2>/dev/null
}
field() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p"; }
arr() { sed -n "s/.*\"$1\":\[\([^]]*\)\].*/\1/p"; }
: >"$tmp/rows"
i=0
while [ $i -lt "$rounds" ]; do
	one=$(run -- | field images_per_sec)
	out=$(run mpirun --oversubscribe -np 2 -- $flags)
	two=$(echo "$out" | field images_per_sec)
	wait_s=$(echo "$out" | field allreduce_wait_s)
	wall=$(echo "$out" | field wall_s)
	ov=$(echo "$out" | field allreduce_overlap)
	dec=$(echo "$out" | arr decoded_records)
	decb=$(echo "$out" | arr decoded_bytes)
	all=$(run mpirun --oversubscribe -np 2 -- $alt)
	twoa=$(echo "$all" | field images_per_sec)
	deca=$(echo "$all" | arr decoded_records)
	decab=$(echo "$all" | arr decoded_bytes)
	echo "$one $two $wait_s $wall $ov $twoa" >>"$tmp/rows"
	echo "round $((i + 1)): 1 rank $one images/s, 2 ranks $two images/s ($(awk -v a="$one" -v b="$two" 'BEGIN { printf "%.2fx", b / a }')), all-reduce wait $wait_s s of $wall s, overlap with backward $ov; decoded per rank: records [$dec] bytes [$decb]"
	echo "         2 ranks '$alt': $twoa images/s ($(awk -v a="$one" -v b="$twoa" 'BEGIN { printf "%.2fx", b / a }')); decoded per rank: records [$deca] bytes [$decab]"
	i=$((i + 1))
done
med() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m1=$(awk '{ print $1 }' "$tmp/rows" | med)
m2=$(awk '{ print $2 }' "$tmp/rows" | med)
mr=$(awk '{ print $2 / $1 }' "$tmp/rows" | med)
lo=$(awk '{ print $2 / $1 }' "$tmp/rows" | sort -g | head -1)
hi=$(awk '{ print $2 / $1 }' "$tmp/rows" | sort -g | tail -1)
mw=$(awk '{ print $3 / $4 }' "$tmp/rows" | med)
echo "model $model, batch $batch, 2-rank flags '${flags}', $rounds rounds: 1 rank median $m1 images/s, 2 ranks median $m2 images/s"
mo=$(awk '{ print $5 }' "$tmp/rows" | med)
ma=$(awk '{ print $6 / $1 }' "$tmp/rows" | med)
echo "2 ranks with '$alt' instead: median of per-round ratios ${ma}x one rank; '$flags' over '$alt': median $(awk '{ print $2 / $6 }' "$tmp/rows" | med)x"
echo "decoded per rank, last round: '$flags' [$dec] records, '$alt' [$deca] records"

echo "buckets' all-reduce time overlapping backward: median $mo"
echo "speedup: median of per-round ratios ${mr}x (range ${lo}-${hi}x); all-reduce wait: median $(awk -v w="$mw" 'BEGIN { printf "%.1f%%", 100 * w }') of the 2-rank runs' wall time"
