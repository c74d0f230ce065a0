#!/bin/sh
# t6003-python-jax: pipefeed.jax.Loader and jax.dlpack.from_dlpack /
# jnp.asarray over the batch memory (zero-copy on the CPU), prefetch with
# device_put, exactly-once, resume and set_epoch, a small jit-compiled JAX
# training run, and device="cpu" (the C device feed's path on the cpu
# backend) (python/tests/test_jax.py).  JAX (CPU) comes from
# t/requirements-jax.txt, installed into a venv outside the build tree
# (PF_JAX_VENV, default ${TMPDIR:-/tmp}/pipefeed-jax-venv-UID), made once;
# the test skips, saying why, when it cannot be installed (no network).
. "$srcdir/t/tap.sh"
. "$srcdir/t/python.sh"
py_setup t6003
venv=${PF_JAX_VENV:-${TMPDIR:-/tmp}/pipefeed-jax-venv-$(id -u)}
if ! "$venv/bin/python" -c 'import jax, numpy' 2>/dev/null; then
	rm -rf "$venv"
	{ "$PY" -m venv "$venv" &&
	  timeout 600 "$venv/bin/pip" install -q -r "$srcdir/t/requirements-jax.txt"; } \
		>"$top_builddir/t/t6003-pip.log" 2>&1 ||
		skip_all "cannot install t/requirements-jax.txt into $venv (no network?): $(tail -1 "$top_builddir/t/t6003-pip.log")"
fi
PY=$venv/bin/python
# jaxlib throws C++ exceptions: a preloaded sanitizer runtime intercepts
# __cxa_throw only if libstdc++ is loaded with it, not dlopened later.
if [ -n "$san" ] && [ -r "$(dirname "$san")/libstdc++.so.6" ]; then
	san="$san $(dirname "$san")/libstdc++.so.6"
fi
JAX_PLATFORMS=cpu
export JAX_PLATFORMS
py_run test_jax
