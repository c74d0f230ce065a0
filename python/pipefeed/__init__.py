"""pipefeed: the pipefeed C data pipeline behind a Python iterator, zero-copy.

    import pipefeed
    with pipefeed.Pipeline('shards("fmnist-train-*.pfs") | map(decode_f32, par=auto)'
                           ' | shuffle(10000) | batch(64) | prefetch', seed=1) as p:
        for b in p:                      # one epoch
            x = numpy.asarray(b["image"])  # the batch's memory itself
            ...
            b.release()                  # or drop it: back to the pool

PyTorch: pipefeed.torch.Loader; JAX: pipefeed.jax.Loader (each imported on
its own, so neither framework needs the other).  With device="cuda" they
yield batches already in GPU memory, moved by the C device feed and
exported through DLPack with kDLCUDA and the stream handshake
(libpipefeed-device.so, loaded on first use; device="cpu" runs the same
path on the device layer's cpu backend).  The library is
libpipefeed.so: $PIPEFEED_LIB, else the build tree around this package,
else the installed one.
"""
from ._core import (Pipeline, Batch, Field, PipefeedError, SpecError,
                    CorruptError)
from ._lib import path as library_path
from ._pymap import register_map

__all__ = ["Pipeline", "Batch", "Field", "PipefeedError", "SpecError",
           "CorruptError", "library_path", "register_map"]
__version__ = "0.1.0"
