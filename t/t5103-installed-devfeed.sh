#!/bin/sh
# t5103-installed-devfeed: the device feed is part of the installed library.
# `make install DESTDIR=` of this build into a temporary root, then, using
# only what was installed: pkg-config pipefeed-device gives the flags, each
# installed header compiles on its own, and an out-of-tree program
# (t/t5103-devfeed-user.c) built with those flags runs range | batch through
# the device feed on the cpu device with the library's defaults and checks
# every value of every batch, copied back from the device.  When the build
# has the cuda module, the installed library finds the installed module
# (beside itself, under DESTDIR too).
. "$srcdir/t/tap.sh"
. "$top_builddir/t/build-env.sh"
PKG_CONFIG=${PKG_CONFIG:-pkg-config}
command -v "$PKG_CONFIG" >/dev/null 2>&1 || skip_all "no pkg-config"
set -- $CC
command -v "$1" >/dev/null 2>&1 || skip_all "no C compiler ($CC)"
plan 11

tmp=`mktemp -d "${TMPDIR:-/tmp}/pf-t5103.XXXXXX"` || exit 1
trap 'rm -rf "$tmp"; exit $tap_fail' EXIT
root=$tmp/root

# The build's own make, not the one running this test (its jobserver and
# flags are not ours).
(unset MAKEFLAGS MFLAGS MAKELEVEL; cd "$top_builddir" && $MAKE install DESTDIR="$root") \
	>"$tmp/install.log" 2>&1
st=$?
ok $st "make install DESTDIR=$root"
[ $st -eq 0 ] || tail -20 "$tmp/install.log" | sed 's/^/# /'

missing=
for f in "$libdir/libpipefeed-device.so" "$libdir/libpipefeed.so" \
	 "$includedir/pipefeed/pf_devfeed.h" "$includedir/pipefeed/pf_device.h" \
	 "$includedir/pipefeed/pipefeed.h" "$pkgconfigdir/pipefeed-device.pc" \
	 "$pkgconfigdir/pipefeed.pc"; do
	test -e "$root$f" || missing="$missing $f"
done
is "$missing" "" "the library, its headers and pipefeed-device.pc are installed"

PKG_CONFIG_PATH=$root$pkgconfigdir
PKG_CONFIG_SYSROOT_DIR=$root
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
flags=`$PKG_CONFIG --cflags --libs pipefeed-device`
ok $? "pkg-config --cflags --libs pipefeed-device"
diag "flags: $flags"
case "$flags" in
*-lpipefeed-device*-lpipefeed*) ok 0 "the flags link libpipefeed-device, then libpipefeed" ;;
*) ok 1 "the flags link libpipefeed-device, then libpipefeed" ;;
esac
case "$flags" in
*blas*) ok 1 "no BLAS on the shared link line (Libs.private only)" ;;
*) ok 0 "no BLAS on the shared link line (Libs.private only)" ;;
esac

# Each installed header on its own, from the install's include dir only.
bad=
for h in "$root$includedir"/pipefeed/*.h; do
	h=${h##*/}
	printf '#include <pipefeed/%s>\nint pf_t5103_unused;\n' "$h" >"$tmp/h.c"
	$CC $CFLAGS -std=c11 -Wall -Wextra -Werror $flags -fsyntax-only "$tmp/h.c" \
		>"$tmp/h.log" 2>&1 || { bad="$bad $h"; sed 's/^/# /' "$tmp/h.log" | head -5; }
done
is "$bad" "" "every installed header compiles alone"

$CC $CFLAGS -std=c11 -Wall -Wextra -Werror -o "$tmp/user" \
	"$srcdir/t/t5103-devfeed-user.c" $flags $LDFLAGS >"$tmp/cc.log" 2>&1
st=$?
ok $st "an out-of-tree program builds against the install"
[ $st -eq 0 ] && rm -f "$tmp/cc.log" || sed 's/^/# /' "$tmp/cc.log" | head -20

LD_LIBRARY_PATH=$root$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
unset PF_CUDA_MODULE
out=`timeout 120 "$tmp/user" auto 2>&1`
st=$?
printf '%s\n' "$out" | sed 's/^/# /'
ok $st "it runs a pipeline through the device feed"
like "$out" "batches 64 values OK" \
	"2 epochs x 32 batches of range(0, 1000) | batch(32), every value right"
like "$out" "depth 16 read_threads(16) 8 map_threads(16) 4" \
	"the library's defaults: 16 slots on cpu, 8 read and 4 map threads on 16 CPUs"

if [ -e "$root$pkglibdir/pf_cuda.so" ]; then
	case "$out" in
	*"module not loaded"*) ok 1 "the installed library finds the installed cuda module" ;;
	*) ok 0 "the installed library finds the installed cuda module" ;;
	esac
else
	ok 0 "# SKIP the cuda module is not built"
fi
