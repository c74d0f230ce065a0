#!/bin/sh
# bench/serve-batching.sh - dynamic batching against batching off, in one
# invocation: the demo MLP (mlp:784-128-10, one epoch of Fashion-MNIST by
# pipe-train --save, or of synthetic 784-pixel data when the dataset is
# missing) served by pipe-serve on the cpu backend, loaded by pipe-load in a
# closed loop at CONCURRENCY clients (64): once with --max-batch-size 1
# (batching off) and once with the batcher (--max-batch-size 64
# --batch-timeout-us TIMEOUT), each REPEAT times alternately; prints each
# run and the medians' ratio of requests/s and of p99.
# With SLO=MS, a third arm: --slo-p99-ms MS (adaptive mode).
# SERVE_ARGS: more pipe-serve options for every arm (e.g. --feed-depth 0,
# the direct path instead of the device feed).
#   usage: bench/serve-batching.sh [BUILDDIR]   (env: CONCURRENCY DURATION REPEAT TIMEOUT FORMAT SLO SERVE_ARGS)
set -e
b=${1:-.}
. "$(dirname "$0")/../t/serve-lib.sh"
c=${CONCURRENCY:-64}
d=${DURATION:-5}
rep=${REPEAT:-3}
to=${TIMEOUT:-2000}
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
serve_demo_model "$tmp"
# FORMAT=json: TF Serving instances; binary (default): KServe v2 with
# binary tensors (what perf_analyzer sends), so that JSON number parsing
# does not hide the batcher
fmt=${FORMAT:-binary}
if [ "$fmt" = json ]; then
	url_of() { echo "http://127.0.0.1:$1/v1/models/fmnist:predict"; }
	lopt=
else
	url_of() { echo "http://127.0.0.1:$1/v2/models/fmnist/infer"; }
	lopt=--binary
fi
serve() {
	# shellcheck disable=SC2086 # SERVE_ARGS is a list of options
	serve_start "$tmp" "$@" ${SERVE_ARGS:-}
}
run() { # NAME ARGS...: one server, one pipe-load level; appends "rps p99" to $tmp/NAME
	n=$1; shift
	serve "$@"
	[ -n "$port" ] || { echo "$n: pipe-serve did not start: $(tail -1 "$tmp/err")"; exit 1; }
	line=$("$b/pipe-load" --concurrency "$c" --duration "$d" --warmup 1 --json $lopt "$(url_of $port)" || true)
	kill -TERM $pid; wait $pid || true
	echo "$n: $line"
	echo "$line" | sed 's/.*"rps":\([0-9.]*\).*"p50_ms":\([0-9.]*\).*"p99_ms":\([0-9.]*\).*/\1 \3 \2/' >>"$tmp/$n"
}
echo "pipe-serve, mlp:784-128-10 on cpu, $fmt bodies, concurrency $c, ${d}s windows, $rep runs each${SERVE_ARGS:+, $SERVE_ARGS}"
for r in $(seq "$rep"); do
	run off --max-batch-size 1 --batch-timeout-us 0
	run batching --max-batch-size 64 --batch-timeout-us "$to" --num-batch-threads 1
	[ -z "${SLO:-}" ] || run adaptive --max-batch-size 64 --slo-p99-ms "$SLO"
done
med() { sort -n -k"$2" "$tmp/$1" | awk -v k="$2" '{ v[NR] = $k } END { print v[int((NR + 1) / 2)] }'; }
r0=$(med off 1); r1=$(med batching 1); p0=$(med off 2); p1=$(med batching 2)
m0=$(med off 3); m1=$(med batching 3)
awk -v r0="$r0" -v r1="$r1" -v p0="$p0" -v p1="$p1" -v m0="$m0" -v m1="$m1" -v to="$to" 'BEGIN {
	printf "median req/s: off %.0f, batching %.0f: %.2fx\n", r0, r1, r1 / r0
	printf "median p99 ms: off %.2f, batching %.2f: %.2fx\n", p0, p1, p1 / p0
	printf "median p50 ms: off %.3f, batching %.3f: batching adds %.3f ms (timeout %.3f ms + %.3f)\n",
		m0, m1, m1 - m0, to / 1000, m1 - m0 - to / 1000 }'
if [ -n "${SLO:-}" ]; then
	ra=$(med adaptive 1); pa=$(med adaptive 2)
	awk -v r0="$r0" -v r1="$r1" -v ra="$ra" -v pa="$pa" -v slo="$SLO" 'BEGIN {
		printf "adaptive (--slo-p99-ms %s): median %.0f req/s (%.2fx off, %.2fx the fixed setting), p99 %.2f ms\n",
			slo, ra, ra / r0, ra / r1, pa }'
fi
exit 0
