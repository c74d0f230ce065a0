# t/serve-lib.sh - what the pipe-serve tests share (sourced after t/tap.sh,
# with b=$top_builddir):
#
#   serve_model TMP [SEED [OUT]]  one epoch of mlp:16-32-4 on the synthetic
#                                 shards TMP/syn-*.pfs (made by syn_shards),
#                                 saved as OUT (default
#                                 TMP/models/syn/1/model.ckpt: a model base
#                                 path with one version)
#   serve_need WHAT...            skip the whole test (skip_all, with the
#                                 reason) unless each is there, in order:
#                                 load (pipe-load), serve (pipe-serve), curl
#   serve_demo_model TMP          the benchmarks' model: one epoch of the demo
#                                 MLP (mlp:784-128-10) on Fashion-MNIST, or
#                                 on synthetic 784-pixel data when the
#                                 dataset is missing, saved in
#                                 TMP/models/fmnist/1
#   serve_start TMP ARGS...       pipe-serve --model-dir TMP/models on a free
#                                 port with ARGS, in the background, its
#                                 stdout in TMP/out and stderr in TMP/err;
#                                 sets $pid, and $port once it listens (empty
#                                 when it did not within 60 s)
serve_model() {
	sm_out=${3:-$1/models/syn/1/model.ckpt}
	mkdir -p "$(dirname "$sm_out")" &&
	timeout 120 "$b/pipe-train" --device cpu --model mlp:16-32-4 --batch 32 --epochs 1 \
		--seed "${2:-1}" --save "$sm_out" "$1/syn-*.pfs" >/dev/null 2>&1
}

serve_need() {
	for sn in "$@"; do
		case $sn in
		load) [ -x "$b/pipe-load" ] || skip_all "pipe-load not built (no libcurl)" ;;
		serve) [ -x "$b/pipe-serve" ] || skip_all "pipe-serve not built" ;;
		curl) command -v curl >/dev/null || skip_all "no curl" ;;
		esac
	done
}

serve_demo_model() {
	sd_fm=/usr/share/datasets/fashion-mnist
	mkdir -p "$1/models/fmnist/1"
	if [ -r "$sd_fm/train-images-idx3-ubyte.gz" ]; then
		"$b/pipe-pack" idx --images "$sd_fm/train-images-idx3-ubyte.gz" \
			--labels "$sd_fm/train-labels-idx1-ubyte.gz" -o "$1/fm" --shards 1 >/dev/null
	else
		echo "(no Fashion-MNIST: synthetic data)"
		head -c $((10000 * 785)) /dev/urandom >"$1/raw"
		"$b/pipe-pack" raw --record-size 785 --field image:u8[784] --field label:u8 \
			-o "$1/fm" --shards 1 "$1/raw" >/dev/null
	fi &&
	"$b/pipe-train" --device cpu --epochs 1 --save "$1/models/fmnist/1/model.ckpt" \
		"$1/fm-*.pfs" >/dev/null 2>&1
}

serve_start() {
	ss_tmp=$1
	shift
	# the redirections below truncate in the background child, which may
	# run after the loop first reads out: a previous server's "listening"
	# line there gave its dead port (all requests refused, and the new
	# server killed by SIGTERM before it blocked the signal: exit 143)
	rm -f "$ss_tmp/out" "$ss_tmp/err"
	"$b/pipe-serve" --model-dir "$ss_tmp/models" --port 0 --access-log none "$@" \
		>"$ss_tmp/out" 2>"$ss_tmp/err" &
	pid=$!
	port=
	# up to 60 s (a sanitizer build loading a large model on a loaded
	# host), ending at once when it listens or exits
	for i in $(seq 600); do
		port=$(awk '/listening/ { print $NF }' "$ss_tmp/out" 2>/dev/null || true)
		[ -n "$port" ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
}
