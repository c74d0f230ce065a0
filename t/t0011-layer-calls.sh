#!/bin/sh
# t0011-layer-calls: no call goes up a layer.  The include paths already
# stop an upward #include (t0010 checks the sources too); this checks the
# objects: every pf_* symbol a layer's code uses is defined in that layer
# or one below it (lib <- ops <- pipeline <- cuda <- serve).
b=${top_builddir:-.}
n=0 failed=0
if ! command -v nm >/dev/null; then echo "1..0 # SKIP no nm"; exit 0; fi
defs() { nm --defined-only "$@" 2>/dev/null | awk '$2 ~ /[TDBRVW]/ && $3 ~ /^pf_/ {print $3}'; }
uses() { nm --undefined-only "$@" 2>/dev/null | awk '$NF ~ /^pf_/ {print $NF}'; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/below"
layer() { # name, then the archives or libraries of the layer
	name=$1; shift
	for f in "$@"; do
		if [ ! -f "$f" ]; then
			echo "1..0 # SKIP $f not built (a static-only or partial build)"
			exit 0
		fi
	done
	defs "$@" | sort -u >"$tmp/own"
	sort -u "$tmp/below" "$tmp/own" >"$tmp/seen"
	uses "$@" | sort -u >"$tmp/uses"
	comm -23 "$tmp/uses" "$tmp/seen" >"$tmp/up"
	n=$((n + 1))
	if [ -s "$tmp/up" ]; then
		echo "not ok $n - $name calls only itself and the layers below"
		sed 's/^/#   calls up: /' "$tmp/up"
		failed=1
	else
		echo "ok $n - $name calls only itself and the layers below ($(wc -l <"$tmp/uses") pf_* symbols used)"
	fi
	cp "$tmp/seen" "$tmp/below"
}
layer lib "$b/lib/.libs/libpflib.a"
layer ops "$b/ops/.libs/libpfops.a"
layer pipeline "$b/pipeline/.libs/libpfpipeline.a"
layer cuda "$b/cuda/.libs/libpipefeed-device.so" "$b/cuda/.libs/libpfmodel.a"
layer serve "$b/serve/.libs/libpfserve.a"
echo "1..$n"
exit $failed
