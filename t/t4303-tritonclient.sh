#!/bin/sh
# t4303-tritonclient: Triton's Python client, tritonclient.http from PyPI,
# unchanged, against pipe-serve (t/t4303-tritonclient.py): health, model
# metadata, infer with binary and JSON tensors (the same logits), an
# unknown model's error.  The client is installed from
# t/requirements-serve.txt into a venv outside the build tree
# (PF_SERVE_VENV, default ${TMPDIR:-/tmp}/pipefeed-serve-venv-UID), made
# once; the test skips when python3 or the package index is unavailable.
. "$srcdir/t/tap.sh"
b=$top_builddir
. "$srcdir/t/serve-lib.sh"
serve_need serve
command -v python3 >/dev/null || skip_all "no python3"
venv=${PF_SERVE_VENV:-${TMPDIR:-/tmp}/pipefeed-serve-venv-$(id -u)}
if ! "$venv/bin/python" -c 'import tritonclient.http' 2>/dev/null; then
	rm -rf "$venv"
	{ python3 -m venv "$venv" &&
	  timeout 600 "$venv/bin/pip" install -q -r "$srcdir/t/requirements-serve.txt"; } \
		>"$b/t/t4303-pip.log" 2>&1 ||
		skip_all "cannot install t/requirements-serve.txt into $venv (no network?): $(tail -1 "$b/t/t4303-pip.log")"
fi
plan 8
tmp=`tap_tmp t4303`
syn_shards "$tmp/syn" 1000 1 1 && serve_model "$tmp"
ok $? "a model to serve"
serve_start "$tmp" --max-batch-size 4 --allowed-batch-sizes 4
timeout 120 "$venv/bin/python" "$srcdir/t/t4303-tritonclient.py" "127.0.0.1:$port" syn |
	while read -r line; do
		case $line in
		"ok "*) ok 0 "${line#ok * - }" ;;
		"not ok "*) ok 1 "${line#not ok * - }" ;;
		*) diag "$line" ;;
		esac
	done >"$tmp/tap"
cat "$tmp/tap"
# (the loop ran in a subshell: its failures count here)
tap_fail=$((tap_fail + $(grep -c '^not ok' "$tmp/tap")))
kill -TERM $pid
wait $pid
