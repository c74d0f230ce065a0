#!/bin/sh
# t6001-python-pipeline: the Python package (python/pipefeed) over this
# build's libpipefeed.so: struct layout against C, zero-copy numpy views,
# batches back to the pool, exactly-once, resume, errors naming the file,
# Ctrl-C, the stats file (python/tests/test_pipeline.py; skipped without
# numpy).
. "$srcdir/t/tap.sh"
. "$srcdir/t/python.sh"
py_setup t6001
py_run test_pipeline
