# t/serve-lib.sh - what the pipe-serve tests share (sourced after t/tap.sh,
# with b=$top_builddir):
#
#   serve_model TMP [SEED [OUT]]  one epoch of mlp:16-32-4 on the synthetic
#                                 shards TMP/syn-*.pfs (made by syn_shards),
#                                 saved as OUT (default
#                                 TMP/models/syn/1/model.ckpt: a model base
#                                 path with one version)
#   serve_start TMP ARGS...       pipe-serve --model-dir TMP/models on a free
#                                 port with ARGS, in the background, its
#                                 stdout in TMP/out and stderr in TMP/err;
#                                 sets $pid, and $port once it listens (empty
#                                 when it did not within 10 s)
serve_model() {
	sm_out=${3:-$1/models/syn/1/model.ckpt}
	mkdir -p "$(dirname "$sm_out")" &&
	timeout 120 "$b/pipe-train" --device cpu --model mlp:16-32-4 --batch 32 --epochs 1 \
		--seed "${2:-1}" --save "$sm_out" "$1/syn-*.pfs" >/dev/null 2>&1
}

serve_start() {
	ss_tmp=$1
	shift
	"$b/pipe-serve" --model-dir "$ss_tmp/models" --port 0 --access-log none "$@" \
		>"$ss_tmp/out" 2>"$ss_tmp/err" &
	pid=$!
	port=
	# up to 60 s (a sanitizer build loading a large model on a loaded
	# host), ending at once when it listens or exits
	for i in $(seq 600); do
		port=$(awk '/listening/ { print $NF }' "$ss_tmp/out" 2>/dev/null)
		[ -n "$port" ] && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
}
