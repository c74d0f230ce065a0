#!/bin/sh
# t6002-python-torch: pipefeed.torch.Loader: tensors over the batch memory
# (torch.from_dlpack), len, set_epoch, state_dict resume, and a short
# training run of the 784-128-10 MLP on Fashion-MNIST shards
# (python/tests/test_torch.py; skipped without torch, the training run
# without the dataset).
. "$srcdir/t/tap.sh"
. "$srcdir/t/python.sh"
py_setup t6002
d=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ -r "$d/train-images-idx3-ubyte.gz" ] && "$PY" -c 'import torch' 2>/dev/null; then
	"$top_builddir/pipe-pack" idx -q --images "$d/train-images-idx3-ubyte.gz" \
		--labels "$d/train-labels-idx1-ubyte.gz" -o "$PF_TEST_TMP/fm-train" --shards 4 &&
	"$top_builddir/pipe-pack" idx -q --images "$d/t10k-images-idx3-ubyte.gz" \
		--labels "$d/t10k-labels-idx1-ubyte.gz" -o "$PF_TEST_TMP/fm-test" &&
	PF_FMNIST="$PF_TEST_TMP/fm" && export PF_FMNIST
fi
py_run test_torch
