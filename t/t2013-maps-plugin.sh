#!/bin/sh
# t2013-maps-plugin: map and filter functions loaded from a shared object
# named in a spec (map(lib.so:name)), built here with the project's $CC.
: "${top_builddir:=.}" "${top_srcdir:=.}"
abs_builddir=$(cd "$top_builddir" && pwd)
abs_srcdir=$(cd "$top_srcdir" && pwd)
helper="$abs_builddir/t/spec-helper"
tmp="$abs_builddir/t/tmp-t2013"
rm -rf "$tmp" && mkdir -p "$tmp" || exit 1
CC=${CC:-$(sed -n 's/^CC = //p' "$abs_builddir/Makefile")}
CC=${CC:-cc}
n=0 failed=0
check() { # title, then a command: ok when it succeeds
	title=$1; shift
	n=$((n + 1))
	if "$@"; then echo "ok $n - $title"; else echo "not ok $n - $title"; failed=1; fi
}

# Skip only when the compiler cannot make a shared object at all; a plugin
# that does not compile against the public headers is a failure.
printf 'int not_a_plugin(void) { return 0; }\n' >"$tmp/noinit.c"
if ! $CC -shared -fPIC -o "$tmp/noinit.so" "$tmp/noinit.c" 2>"$tmp/cc.err"; then
	echo "1..0 # SKIP cannot build a shared object with '$CC': $(head -1 "$tmp/cc.err")"
	exit 0
fi
if ! $CC -shared -fPIC -I"$abs_srcdir/lib" -I"$abs_srcdir/ops" -I"$abs_srcdir/pipeline" \
	-I"$abs_builddir" -o "$tmp/plug.so" "$abs_srcdir/t/spec-plugin.c" 2>"$tmp/cc.err"; then
	echo "1..1"; echo "not ok 1 - the plugin compiles against the public headers"
	sed 's/^/# /' "$tmp/cc.err"; exit 1
fi
echo "1..9"

so="$tmp/plug.so"
"$helper" run "range(0, 10) | map(\"$so:times3\", par=2) | filter(\"$so:is_even\")" >"$tmp/out1" 2>"$tmp/err1"
printf '0\n6\n12\n18\n24\n' >"$tmp/want1"
check "map(lib.so:times3) | filter(lib.so:is_even) from one plugin" cmp -s "$tmp/out1" "$tmp/want1"
[ -s "$tmp/err1" ] && sed 's/^/# /' "$tmp/err1"

"$helper" run "range(0, 3) | map(\"$so:add\"(k=5)) | map(\"$so:add\"(k=-1))" >"$tmp/out2" 2>&1
printf '4\n5\n6\n' >"$tmp/want2"
check "arguments reach the plugin's prepare (add(k=5), add(k=-1))" cmp -s "$tmp/out2" "$tmp/want2"

(cd "$tmp" && "$helper" run "range(1, 3) | map(plug.so:times3)") >"$tmp/out3" 2>&1
printf '3\n6\n' >"$tmp/want3"
check "a bare file name is loaded from the current directory" cmp -s "$tmp/out3" "$tmp/want3"

! "$helper" run "range(0, 3) | map(\"$tmp/missing.so:f\")" >"$tmp/out4" 2>&1
check "a missing library fails" test $? -eq 0
check "  and the message names the column and the library" \
	grep -q "column 15: map: $tmp/missing.so: cannot load plugin" "$tmp/out4"

! "$helper" load "$tmp/noinit.so" >"$tmp/out5" 2>&1
check "a library without pf_plugin_init is refused" test $? -eq 0
check "  and the message says so" grep -q "not a pipefeed plugin (no pf_plugin_init" "$tmp/out5"

! "$helper" run "range(0, 3) | map(\"$so:nope\")" >"$tmp/out6" 2>&1
check "a function the plugin does not register fails (column 15)" grep -q "column 15: map" "$tmp/out6"

"$helper" run "range(0, 3) | map(\"$so:add\"(j=1))" >"$tmp/out7" 2>&1
check "the plugin's own argument error comes back" grep -q "add: expected k=N, got 'j=1'" "$tmp/out7"

for f in 1 2 3 4 5 6 7; do [ -f "$tmp/out$f" ] && { echo "# out$f:"; sed 's/^/#   /' "$tmp/out$f"; }; done | head -40
[ $failed = 0 ] && rm -rf "$tmp"
exit $failed
