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
import os
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


def _blas_libraries():
    """Paths of the BLAS libraries with a thread pool of their own that this
    process has loaded (torch built against the system BLAS, as Debian's
    python3-torch is: OpenBLAS through libblas.so.3)."""
    out = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                b = p.rsplit("/", 1)[-1]
                if (b.startswith("libopenblas") or b.startswith("libblis")) and p not in out:
                    out.append(p)
    except OSError:
        pass
    return out


def set_threads(threads="auto"):
    """Size the training loop's compute threads next to the pipeline's:
    torch's intra-op threads (torch.set_num_threads) AND the thread pool of
    the BLAS library torch's GEMMs run on, which torch.set_num_threads
    leaves alone when torch uses the system BLAS (Debian's python3-torch:
    OpenBLAS, one thread per CPU, which spin-wait after each GEMM).
    threads: a count, or "auto": one CPU left to the pipeline's threads,
    max(1, CPUs - 1) (on 2 CPUs: 1).  Returns {"torch": n, "blas": [the
    libraries set]}.  Loader(torch_threads=...) calls it; call it yourself
    to size a loop without a Loader the same way (a fair comparison)."""
    if threads == "auto":
        n = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                    else os.cpu_count() or 1) - 1)
    else:
        n = int(threads)
        if n < 1:
            raise ValueError("pipefeed: torch_threads must be >= 1 or \"auto\", not %r" % (threads,))
    _torch.set_num_threads(n)
    done = []
    for p in _blas_libraries():
        lib = _ct.CDLL(p)
        for fn in ("openblas_set_num_threads", "bli_thread_set_num_threads"):
            f = getattr(lib, fn, None)
            if f is not None:
                f.argtypes = [_ct.c_int]
                f.restype = None
                f(n)
                done.append(p)
                break
    return {"torch": n, "blas": done}


def keep_heap(mmap_threshold=4 << 20, trim_threshold=64 << 20):
    """glibc malloc: keep the memory a training step frees in the heap for
    the next step, instead of handing it back to the kernel and faulting
    it in again, zeroed.  torch's CPU allocator takes every tensor from
    malloc: the 784-128-10 MLP's 400 KB gradient and Adam buffers are over
    glibc's mmap threshold or trimmed off the heap's top each step (about
    130 page faults and 0.45 ms of kernel time a step on the project's
    machine; none after this).  Sets M_MMAP_THRESHOLD and M_TRIM_THRESHOLD
    (mallopt) for the whole process; returns False where there is no
    glibc mallopt.  Loader(keep_heap=True) calls it."""
    try:
        libc = _ct.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [_ct.c_int, _ct.c_int]
    mallopt.restype = _ct.c_int
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) and
                mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))


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

    torch_threads ("auto" or a count; None: leave them): size torch's
    compute threads, and its BLAS library's, next to the pipeline's (see
    set_threads): on a small host torch's default (one thread per CPU, and
    Debian's OpenBLAS pool of one spinning thread per CPU beside it) and
    the pipeline's threads oversubscribe the CPUs.  keep_heap=True: glibc
    keeps the memory each step frees for the next (see keep_heap()).
    Both change process-wide settings, so they are off by default.

    device="cuda" (or "cuda:N"): the batches come already in GPU memory,
    moved by the C device feed (pinned staging, a copy stream and events,
    `depth` slots ahead) and handed over through DLPack: the tensors are
    CUDA tensors over the feed's slots, ready on the stream torch is on
    when they are made (the stream waits, the host does not); a slot is
    refilled only after the work enqueued on that stream before its last
    tensor died.  device="cpu" runs the same feed on the device layer's
    cpu backend (CPU tensors over its slots: for tests; without a device,
    the default host path is faster)."""

    def __init__(self, spec, *, torch_threads=None, keep_heap=False, **kw):
        super().__init__(spec, **kw)
        self._plan = None   # per picked field, made at the first batch
        self.threads = None if torch_threads is None else set_threads(torch_threads)
        if keep_heap:
            globals()["keep_heap"]()

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
