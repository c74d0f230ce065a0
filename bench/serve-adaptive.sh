#!/bin/sh
# bench/serve-adaptive.sh - the adaptive batcher against the best fixed
# setting, in one invocation: the demo MLP (mlp:784-128-10, one epoch of
# Fashion-MNIST, or of synthetic 784-pixel data when it is missing) on the
# cpu backend, KServe v2 binary bodies, CONCURRENCY (64) closed-loop
# clients.  First `pipe-load --sweep` over max_batch_size SIZES
# (1,8,32,64) x batch_timeout_us TIMEOUTS (0,500,2000) with --slo-p99-ms
# SLO (20) finds the best fixed setting under the SLO; then REPEAT (3)
# runs of pipe-serve --slo-p99-ms SLO --max-batch-size (the largest size)
# alternate with REPEAT runs of that best setting.  Prints the sweep's
# table, each run, and the medians: the adaptive mode's req/s over the
# best fixed setting's (goal >= 0.90) and both p99s against the SLO.
#   usage: bench/serve-adaptive.sh [BUILDDIR]  (env: CONCURRENCY DURATION REPEAT SLO SIZES TIMEOUTS)
set -e
b=${1:-.}
c=${CONCURRENCY:-64}
d=${DURATION:-4}
rep=${REPEAT:-3}
slo=${SLO:-20}
sizes=${SIZES:-1,8,32,64}
tos=${TIMEOUTS:-0,500,2000}
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
pid=
fm=/usr/share/datasets/fashion-mnist
mkdir -p "$tmp/models/fmnist/1"
if [ -r "$fm/train-images-idx3-ubyte.gz" ]; then
	"$b/pipe-pack" idx --images "$fm/train-images-idx3-ubyte.gz" \
		--labels "$fm/train-labels-idx1-ubyte.gz" -o "$tmp/fm" --shards 1 >/dev/null
else
	echo "(no Fashion-MNIST: synthetic data)"
	head -c $((10000 * 785)) /dev/urandom >"$tmp/raw"
	"$b/pipe-pack" raw --record-size 785 --field image:u8[784] --field label:u8 \
		-o "$tmp/fm" --shards 1 "$tmp/raw" >/dev/null
fi
"$b/pipe-train" --device cpu --epochs 1 --save "$tmp/models/fmnist/1/model.ckpt" \
	"$tmp/fm-*.pfs" >/dev/null 2>&1
echo "pipe-serve, mlp:784-128-10 on cpu, binary bodies, concurrency $c, ${d}s windows, SLO p99 $slo ms"
"$b/pipe-load" --sweep "max_batch_size=$sizes batch_timeout_us=$tos" \
	--serve "$b/pipe-serve --model-dir $tmp/models" --slo-p99-ms "$slo" \
	--concurrency "$c" --duration "$d" --warmup 1 --binary /v2/models/fmnist/infer | tee "$tmp/sweep"
best=$(sed -n 's/^best under the SLO: max_batch_size \([0-9]*\), batch_timeout_us \([0-9]*\):.*/\1 \2/p' "$tmp/sweep")
[ -n "$best" ] || { echo "no fixed setting holds the SLO"; exit 0; }
set -- $best
bmbs=$1 bto=$2
top=$(echo "$sizes" | tr ',' '\n' | sort -n | tail -1)
run() { # NAME ARGS...
	n=$1; shift
	"$b/pipe-serve" --model-dir "$tmp/models" --port 0 --access-log none "$@" >"$tmp/out" 2>"$tmp/err" &
	pid=$!
	port=
	for i in $(seq 100); do
		port=$(awk '/listening/ { print $NF }' "$tmp/out" 2>/dev/null || true)
		[ -n "$port" ] && break
		sleep 0.1
	done
	line=$("$b/pipe-load" --concurrency "$c" --duration "$d" --warmup 1 --json --binary \
		"http://127.0.0.1:$port/v2/models/fmnist/infer" || true)
	kill -TERM $pid; wait $pid || true
	pid=
	echo "$n: $line"
	echo "$line" | sed 's/.*"rps":\([0-9.]*\).*"p99_ms":\([0-9.]*\).*/\1 \2/' >>"$tmp/$n"
}
for r in $(seq "$rep"); do
	run fixed --max-batch-size "$bmbs" --batch-timeout-us "$bto"
	run adaptive --max-batch-size "$top" --slo-p99-ms "$slo"
done
med() { sort -n -k"$2" "$tmp/$1" | awk -v k="$2" '{ v[NR] = $k } END { print v[int((NR + 1) / 2)] }'; }
awk -v rf="$(med fixed 1)" -v ra="$(med adaptive 1)" -v pf="$(med fixed 2)" -v pa="$(med adaptive 2)" \
	-v slo="$slo" -v m="$bmbs" -v t="$bto" -v top="$top" 'BEGIN {
	printf "best fixed (max_batch_size %s, batch_timeout_us %s): median %.0f req/s, p99 %.2f ms\n", m, t, rf, pf
	printf "adaptive (--slo-p99-ms %s, --max-batch-size %s): median %.0f req/s, p99 %.2f ms\n", slo, top, ra, pa
	printf "adaptive / best fixed: %.2fx req/s (goal >= 0.90); SLO %s ms held: fixed %s, adaptive %s\n",
		ra / rf, slo, pf <= slo ? "yes" : "no", pa <= slo ? "yes" : "no" }'
