#!/bin/sh
# t5001-readme-example: doc/example.c (the README's example) compiles
# against the build tree's headers and libpipefeed like a user's program,
# reads shards made here, and its spec-string form gives the same epoch.
: "${top_builddir:=.}" "${top_srcdir:=.}"
abs_builddir=$(cd "$top_builddir" && pwd)
abs_srcdir=$(cd "$top_srcdir" && pwd)
tmp="$abs_builddir/t/tmp-t5001"
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
mk() { sed -n "s/^$1 = //p" "$abs_builddir/Makefile"; }
CC=${CC:-$(mk CC)}
CC=${CC:-cc}
cflags="$(mk SAN_CFLAGS) $(mk PTHREAD_CFLAGS)"
n=0 failed=0
check() {
	title=$1; shift
	n=$((n + 1))
	if "$@"; then echo "ok $n - $title"; else echo "not ok $n - $title"; failed=1; fi
}

# the installed layout: PREFIX/include/pipefeed/*.h, as pkg-config's Cflags expect
mkdir -p "$tmp/include/pipefeed" &&
	cp "$abs_srcdir"/lib/pf_*.h "$abs_srcdir"/pipeline/pipefeed.h "$abs_srcdir"/pipeline/pf_spec.h \
	"$abs_srcdir"/ops/pf_maps.h "$tmp/include/pipefeed/" || exit 1
if ! $CC -std=c11 -Wall -Werror $cflags -I"$tmp/include" \
	-o "$tmp/example" "$abs_srcdir/doc/example.c" \
	-L"$abs_builddir/.libs" -Wl,-rpath,"$abs_builddir/.libs" -lpipefeed \
	$(mk PTHREAD_LIBS) 2>"$tmp/cc.err"; then
	if ! command -v "${CC%% *}" >/dev/null 2>&1; then
		echo "1..0 # SKIP no C compiler ($CC)"
		exit 0
	fi
	echo "1..1"
	echo "not ok 1 - doc/example.c compiles"
	sed 's/^/# /' "$tmp/cc.err"
	exit 1
fi
echo "1..6"
check "doc/example.c compiles with -Wall -Werror against the build tree" true

"$abs_builddir/t/spec-helper" mkshards "$tmp" fmnist-train 3 50 >"$tmp/want" || exit 1
want=$(cat "$tmp/want")
"$tmp/example" "$tmp/fmnist-train-*.pfs" >"$tmp/out1" 2>&1
out1=$(cat "$tmp/out1")
echo "# shards: $want"
echo "# example: $out1"
field() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
check "example: 150 samples in 5 batches of at most 32" \
	test "$(field samples "$out1")" = 150 -a "$(field batches "$out1")" = 5
check "example: every label once (sum $(field label_sum "$want"))" \
	test "$(field label_sum "$out1")" = "$(field label_sum "$want")"
check "example: pixels decoded to [0,1] (mean $(field pixel_mean "$want"))" \
	test "$(field pixel_mean "$out1")" = "$(field pixel_mean "$want")"

spec="shards(\"$tmp/fmnist-train-*.pfs\", cycle=2) | map(decode_f32, par=auto) | shuffle(1000, seed=7) | batch(32) | prefetch(auto)"
"$tmp/example" "$tmp/fmnist-train-*.pfs" "$spec" >"$tmp/out2" 2>&1
echo "# spec:    $(cat "$tmp/out2")"
check "the spec string gives the same epoch, same order, as the C calls" cmp -s "$tmp/out1" "$tmp/out2"

"$tmp/example" "$tmp/fmnist-train-*.pfs" >"$tmp/out3" 2>&1
check "a second run gives the same order (seed 7)" cmp -s "$tmp/out1" "$tmp/out3"
[ $failed = 0 ] && rm -rf "$tmp"
exit $failed
