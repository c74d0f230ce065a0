#!/bin/sh
# never-starves.sh - the never-starve issue's case, end to end: the
# pipeline's standalone rate (pipe-train --model none, RUNS runs), a
# synthetic consumer whose step is set for FRAC of that rate (a step that
# waits on the compute stream, no host CPU: a GPU step), and RUNS runs of
# it through the pipeline, each followed by the same steps over preloaded
# batches.  Prints each run and the medians of the never-starves ratio
# (the issue's figure: the step time through the pipeline, start-up
# included, over the step time preloaded), of the same without the start-up
# (the first batch's wait: the shuffle buffer filling), of the start-up and
# of the stall share.
#
#   bench/never-starves.sh [BUILD_DIR] [RUNS] [EPOCHS] [FRAC] [BATCH]
#
# Defaults: 5 runs, 5 epochs, 0.8, batch 64, the pipeline
# map(decode_f32) | shuffle(10000) | batch(BATCH) | prefetch(auto) over
# the Fashion-MNIST shards of `make demo` (demo-data/).  The host's load
# average is printed before and after: the machine is shared.  FLAGS (the
# environment) go to the synthetic runs, e.g. FLAGS=--zero-copy=off.
set -eu
b=${1:-.}
runs=${2:-5}
epochs=${3:-5}
frac=${4:-0.8}
batch=${5:-64}
data=${DATA:-demo-data/fmnist-train-*.pfs}
pipe="map(decode_f32) | shuffle(10000) | batch($batch) | prefetch(auto)"
# shellcheck disable=SC2086
set -- $data
[ -e "$1" ] || { echo "never-starves: no shards at $data (make demo writes them)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
field() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$2"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
i=0
while [ $i -lt "$runs" ]; do
	"$b/pipe-train" --model none --epochs "$epochs" --json --quiet --pipeline "$pipe" \
		"$@" >"$tmp/none.json" 2>/dev/null
	field images_per_sec "$tmp/none.json" >>"$tmp/rate"
	i=$((i + 1))
done
rate=$(median <"$tmp/rate")
step=$(awk "BEGIN { s = int($batch / ($frac * $rate) * 1e6 + 0.5); print s < 1 ? 1 : s }")
echo "standalone: $rate images/s (median of $runs runs of $epochs epochs) -> synthetic:$step ($frac of it at batch $batch)"
i=0
while [ $i -lt "$runs" ]; do
	# shellcheck disable=SC2086
	"$b/pipe-train" --model synthetic:"$step" --epochs "$epochs" --json --quiet \
		${FLAGS:-} --pipeline "$pipe" "$@" >"$tmp/s.json" 2>/dev/null
	r=$(field never_starves_ratio "$tmp/s.json")
	rs=$(field never_starves_ratio_steady "$tmp/s.json")
	su=$(field startup_s "$tmp/s.json")
	st=$(field stall_share "$tmp/s.json")
	echo "run $((i + 1)): ratio $r, without the start-up $rs, start-up $su s, stall $st"
	echo "$r" >>"$tmp/r"
	echo "$rs" >>"$tmp/rs"
	echo "$su" >>"$tmp/su"
	echo "$st" >>"$tmp/st"
	i=$((i + 1))
done
echo "median: never-starves ratio $(median <"$tmp/r") (goal <= 1.02), without the start-up $(median <"$tmp/rs"), start-up $(median <"$tmp/su") s, stall share $(median <"$tmp/st") (goal < 0.02)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
