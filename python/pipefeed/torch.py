"""pipefeed.torch.Loader: a drop-in for the common DataLoader loop.

    loader = pipefeed.torch.Loader(
        'shards("fmnist-train-*.pfs") | map(decode_f32, par=auto)'
        ' | shuffle(10000) | batch(64) | prefetch', seed=1)
    for epoch in range(5):
        loader.set_epoch(epoch)
        for x, y in loader:            # torch tensors over the batch memory
            loss = F.cross_entropy(model(x.view(-1, 784)), y.long())
            ...
        torch.save({"model": ..., "loader": loader.state_dict()}, path)

Each `for` over the loader is one epoch (the rest of it after a `break`).
The tensors are over the batch memory, no copy (torch.from_numpy over the
batch's __array_interface__ for the dtypes torch and numpy share, else
torch.from_dlpack); the batch goes back to pipefeed's pool when the last
tensor of it is freed, so keep them only as long as needed (or .clone()
what must outlive the step).  The per-batch Python work is a few
microseconds: the field layout is worked out once, and a tensor costs a
ctypes array over the field (holding the batch), numpy's frombuffer and
torch.from_numpy (no ctypes structs or callbacks per tensor, as a DLPack
export has).
"""
import ctypes as _ct
import weakref as _weakref

import torch as _torch

from . import _lib
from ._loader import LoaderBase

try:
    import numpy as _np
except ImportError:     # then every tensor goes through DLPack
    _np = None

# numpy typestrs torch.from_numpy takes (torch has no uint16/32/64 here)
_FROM_NUMPY = {"|u1", "|i1", "<i2", "<i4", "<i8", "<f2", "<f4", "<f8"}


class _Mem:
    """Base of the ctypes byte arrays tensors are made over (one subclass
    per size, made once): a Python subclass has a __dict__, so the
    instance holds the Batch, and the numpy array and tensor over it keep
    the batch from the pool."""


def _mem_type(nbytes, _types={}):
    t = _types.get(nbytes)
    if t is None:
        if len(_types) >= 256:      # sizes seen are few (batch sizes x fields)
            _types.clear()
        t = _types[nbytes] = type("_Mem%d" % nbytes, (_ct.c_char * nbytes, _Mem), {})
    return t


class Loader(LoaderBase):
    """Batches of a pipefeed spec as tuples of tensors in schema order (a
    lone tensor when the batch has one field; `fields` picks and orders
    fields by name).  Options are Pipeline's: seed, cpu_budget,
    memory_budget, nondeterministic, rank and world (the rank's part of
    every epoch, as torch.distributed gives them), split, stats (a stats
    file for pipe-stat).  len(), set_epoch(k) (any k: see LoaderBase),
    state_dict() and load_state_dict() as a DataLoader with a
    DistributedSampler has them.

    device="cuda" (or "cuda:N"): the batches come already in GPU memory,
    moved by the C device feed (pinned staging, a copy stream and events,
    `depth` slots ahead) and handed over through DLPack: the tensors are
    CUDA tensors over the feed's slots, ready on the stream torch is on
    when they are made (the stream waits, the host does not); a slot is
    refilled only after the work enqueued on that stream before its last
    tensor died.  device="cpu" runs the same feed on the device layer's
    cpu backend (CPU tensors over its slots: for tests; without a device,
    the default host path is faster)."""

    def __init__(self, spec, **kw):
        super().__init__(spec, **kw)
        self._plan = None   # per picked field, made at the first batch

    def _make_plan(self, b):
        """Per picked field: (index, numpy dtype or None for the DLPack
        path, dims after the batch one or None when one varies, their
        product, the item size)."""
        idx = self._pick(b)
        sch = b._h.schema(b._e.schema)
        plan = []
        for i in idx:
            name, dt, dims = sch[i]
            ts = _lib.DTYPES[dt][1]
            fixed = all(d != _lib.PF_DIM_VAR for d in dims)
            n = 1
            for d in dims:
                n *= d
            npdt = _np.dtype(ts) if _np is not None and ts in _FROM_NUMPY else None
            plan.append((i, npdt, tuple(dims) if fixed else None, n, int(ts[2:])))
        self._plan = plan
        return plan

    def _tensors(self, b):
        """The batch's picked fields as tensors over its memory: one
        ctypes array (holding the batch), numpy's frombuffer and reshape,
        torch.from_numpy; the DLPack path for what that cannot state."""
        e = b._e
        bs = e.batch
        out = []
        for i, npdt, dims, n, isz in self._plan or self._make_plan(b):
            if npdt is not None and bs and dims is not None and e.nitems[i] == bs * n:
                m = _mem_type(bs * n * isz).from_address(e.data[i])
                m.batch = b
                out.append(_torch.from_numpy(_np.frombuffer(m, npdt).reshape((bs,) + dims)))
            else:
                out.append(_torch.from_dlpack(b[i]))
        return out[0] if len(out) == 1 else tuple(out)

    def _dev_iter(self):
        """device=: each field through torch.from_dlpack (a CUDA tensor
        on the stream torch is on; on the cpu backend a CPU tensor over
        the feed's slot); the slot goes back when the last tensor dies."""
        from_dlpack = _torch.from_dlpack
        box = []
        n = 0
        d = self._dev
        if d.feed is None:
            q = self.pipeline.position()
            start_whole = q["delivered"] == 0 or q["at_end"]
        else:
            start_whole = d.at_end or d.given == 0
        for b in d.batches():
            fs = b.fields()
            ts = [from_dlpack(fs[i]) for i in self._pick(b)]
            self._last = _weakref.ref(b)
            b = fs = None
            n += 1
            box.append(ts[0] if len(ts) == 1 else tuple(ts))
            ts = None
            yield box.pop()
        if start_whole:
            self._len = n

    def __iter__(self):
        if self._dev is not None:
            yield from self._dev_iter()
            return
        p = self.pipeline
        start = p.position()
        whole = start["delivered"] == 0 or start["at_end"]
        n = 0
        nxt = p.next
        box = []
        try:
            while True:
                b = nxt()
                if b is None:
                    break
                box.append(self._tensors(b))
                self._last = _weakref.ref(b)   # (for tests: the batch of the last tensors)
                b = None
                n += 1
                # hand the tensors over without a reference left here: the
                # batch goes back to the pool where the caller drops them
                # (the step's end), not inside the next call (the wait)
                yield box.pop()
        except KeyboardInterrupt:
            p.close()
            raise
        if whole:
            self._len = n
