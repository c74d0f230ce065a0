# t/python.sh - setup shared by the Python test wrappers t/t60xx-python-*.sh
# (sourced after tap.sh).  py_setup NAME: the interpreter ($PF_PYTHON from
# configure: one with numpy, /usr/bin/python3 by default), the package from
# the source tree and the library from this build tree (never an installed
# copy), a sanitizer runtime preloaded when the library was built with one,
# synthetic shards in $PF_SYN and the C struct layout in $PF_ABI.
# py_run MODULE...: run those python/tests modules as TAP (exec).
py_setup() {
	PY=${PF_PYTHON:-/usr/bin/python3}
	command -v "$PY" >/dev/null 2>&1 || skip_all "no Python interpreter ($PY)"
	"$PY" -c 'import numpy' 2>/dev/null || skip_all "numpy not found for $PY (apt-get install python3-numpy)"
	PIPEFEED_LIB=$(cd "$top_builddir/.libs" 2>/dev/null && pwd)/libpipefeed.so
	[ -r "$PIPEFEED_LIB" ] || skip_all "no shared libpipefeed.so in $top_builddir/.libs"
	PYTHONPATH=$(cd "$top_srcdir/python" && pwd)
	PYTHONDONTWRITEBYTECODE=1
	export PIPEFEED_LIB PYTHONPATH PYTHONDONTWRITEBYTECODE
	# An ASan/TSan library needs its runtime first in an uninstrumented python.
	san=$(ldd "$PIPEFEED_LIB" 2>/dev/null | awk '/lib(a|t)san\.so/ { print $3; exit }')
	# (Preloaded in the python process only: py_run; the tests' own
	# pipe-stat runs go without, a sanitized tool has its runtime linked.)
	if [ -n "$san" ]; then
		ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1"
		export ASAN_OPTIONS
	fi
	PF_TEST_TMP=$(cd "$(tap_tmp "$1")" && pwd)
	syn_shards "$PF_TEST_TMP/syn" 1000 7 4 || { echo "1..1"; echo "not ok 1 - make shards"; exit 1; }
	PF_SYN="$PF_TEST_TMP/syn-*.pfs"
	"$top_builddir/t/py-abi" >"$PF_TEST_TMP/abi" || { echo "1..1"; echo "not ok 1 - t/py-abi"; exit 1; }
	PF_ABI="$PF_TEST_TMP/abi"
	PF_PIPE_STAT=$(cd "$top_builddir" && pwd)/pipe-stat
	export PF_TEST_TMP PF_SYN PF_ABI PF_PIPE_STAT
}
py_run() {
	trap - EXIT
	[ -z "$san" ] || { LD_PRELOAD=$san; PF_SAN_PRELOAD=$san; export LD_PRELOAD PF_SAN_PRELOAD; }
	exec "$PY" "$top_srcdir/python/tests/tap_run.py" "$@"
}
