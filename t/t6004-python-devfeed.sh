#!/bin/sh
# t6004-python-devfeed: Loader(spec, device=...) over the C device feed:
# the cpu backend's path (zero-copy slots, release, exactly-once, resume,
# errors) and, when a GPU answers, CUDA tensors (python/tests/test_device.py;
# skipped without torch, the cuda check without a GPU).
. "$srcdir/t/tap.sh"
. "$srcdir/t/python.sh"
py_setup t6004
PIPEFEED_DEVICE_LIB=$(cd "$top_builddir/cuda/.libs" 2>/dev/null && pwd)/libpipefeed-device.so
[ -r "$PIPEFEED_DEVICE_LIB" ] || skip_all "no shared libpipefeed-device.so in $top_builddir/cuda/.libs"
export PIPEFEED_DEVICE_LIB
py_run test_device
