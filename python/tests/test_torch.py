"""pipefeed.torch.Loader: zero-copy tensors, len, set_epoch, state_dict
resume, and a short training run."""
import os
import unittest

from common import env, syn_spec

REQUIRES = ["numpy", "torch"]


def _loader(tail="shuffle(300) | batch(32) | prefetch", **kw):
    from pipefeed.torch import Loader
    return Loader(syn_spec(tail), **kw)


def test_tensors_are_the_batch_memory():
    """torch.from_dlpack gives tensors whose data pointer is the C batch
    buffer's: nothing is copied."""
    import torch
    import pipefeed
    from pipefeed import _dlpack
    with pipefeed.Pipeline(syn_spec("batch(32)"), seed=2) as p:
        b = p.next()
        x = torch.from_dlpack(b["image"])
        y = torch.from_dlpack(b["label"])
        assert x.shape == (32, 16) and x.dtype == torch.uint8 and y.shape == (32,)
        assert x.data_ptr() == b["image"].ptr and y.data_ptr() == b["label"].ptr
        assert b.address <= x.data_ptr() < b.address + b.nbytes
        x[0, 0] = 77                       # same memory, seen from C's side
        import ctypes
        assert ctypes.c_uint8.from_address(b["image"].ptr).value == 77
        addr = b.address
        del b
        assert _dlpack.live_count() == 2   # the tensors hold the batch
        del x
        assert _dlpack.live_count() == 1
        del y
        assert _dlpack.live_count() == 0   # now it is back in the pool
        # the freed buffer is the next one handed out (it went back)
        seen = set()
        for b in p:
            seen.add(b.address)
            b.release()
        assert addr in seen


def test_loader_loop_and_pool():
    import torch
    from pipefeed import _dlpack
    with _loader("shuffle(300) | batch(32) | prefetch(2)", seed=1) as loader:
        ptrs = []
        n = 0
        for epoch in range(4):
            ptrs.append(set())
            for x, y in loader:
                assert x.dtype == torch.uint8 and x.shape[1:] == (16,)
                assert x.shape[0] == y.shape[0] <= 32
                ptrs[-1].add(x.data_ptr())
                n += 1
        assert n == 4 * 32
        seen = set().union(*ptrs)
        assert len(seen) <= 8, "%d distinct buffers for %d batches" % (len(seen), n)
        # steady state: the last epochs use only buffers the first one had
        assert ptrs[2] | ptrs[3] <= ptrs[0] | ptrs[1], (ptrs, "new buffers late")
        assert loader.pipeline.held() == 1  # the loop's last x, y hold it
        del x
        assert loader.pipeline.held() == 1
        del y
        assert loader.pipeline.held() == 0  # back in the pool
        assert _dlpack.live_count() == 0


def test_loader_tensors_are_the_batch_memory():
    """The Loader's own path (torch.from_numpy over a ctypes array that
    holds the batch) is zero-copy too: each tensor's data pointer is its
    field in the batch, which stays out of the pool while a tensor lives."""
    with _loader("batch(32)", seed=2) as loader:
        x, y = next(iter(loader))
        batch = loader._last()
        assert x.data_ptr() == batch["image"].ptr and y.data_ptr() == batch["label"].ptr
        assert x.shape == (32, 16) and y.shape == (32,)
        x[0, 0] = 99                         # same memory, seen from C's side
        import numpy
        assert numpy.asarray(batch["image"])[0, 0] == 99
        assert loader.pipeline.held() == 1
        del batch, x
        assert loader._last() is not None
        assert loader.pipeline.held() == 1   # y holds it
        del y
        assert loader.pipeline.held() == 0 and loader._last() is None


def test_len_and_exactly_once():
    import torch
    from pipefeed.torch import Loader
    with Loader("range(0, 1000) | shuffle(128) | batch(64)", seed=5) as loader:
        assert len(loader) == 16          # by a counting pass, before any epoch
        firsts = []
        for epoch in range(3):
            vals = torch.cat([v.clone() for v in loader])
            assert torch.equal(torch.sort(vals).values, torch.arange(1000))
            firsts.append(vals[:10].tolist())
        assert len(loader) == 16
        assert firsts[0] != firsts[1]
    with Loader("range(0, 10) | repeat | batch(4)") as loader:
        try:
            len(loader)
        except TypeError:
            pass
        else:
            raise AssertionError("len() of an endless loader")


def test_fields_option():
    from pipefeed.torch import Loader
    with Loader(syn_spec("batch(10)"), fields=["label"]) as loader:
        y = next(iter(loader))
        assert y.shape == (10,)
    with Loader(syn_spec("batch(10)"), fields=["label", "image"]) as loader:
        y, x = next(iter(loader))
        assert x.shape == (10, 16)
    with Loader(syn_spec("batch(10)"), fields=["nope"]) as loader:
        try:
            next(iter(loader))
        except KeyError as e:
            assert "nope" in str(e)
        else:
            raise AssertionError("no KeyError")


def _take(loader, n):
    out = []
    it = iter(loader)
    for _ in range(n):
        x, y = next(it)
        out.append((x.clone(), y.clone()))
    return out


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a, b):
    import torch
    return len(a) == len(b) and all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1])
                                    for p, q in zip(a, b))


def test_state_dict_resume_bit_identical():
    """A loader restored from state_dict delivers exactly the batches the
    saved one delivers next: mid-epoch and at an epoch's end."""
    import io
    import torch
    with _loader(seed=8) as a:
        _epoch(a)
        _take(a, 5)                        # 5 batches into epoch 1, then a break
        sd = a.state_dict()
        buf = io.BytesIO()
        torch.save(sd, buf)                # it survives a checkpoint file
        rest = _epoch(a)                   # the rest of epoch 1
        sd_end = a.state_dict()
        nxt = _epoch(a)                    # epoch 2
    assert len(rest) == 27 and len(nxt) == 32
    buf.seek(0)
    with _loader(seed=8) as b:
        b.load_state_dict(torch.load(buf))
        assert _same(_epoch(b), rest)
        assert _same(_epoch(b), nxt)
    with _loader(seed=8) as c:
        c.load_state_dict(sd_end)
        assert _same(_epoch(c), nxt)
    with _loader(seed=9) as d:
        try:
            d.load_state_dict(sd)
        except ValueError:
            pass
        else:
            raise AssertionError("a state_dict of another seed was taken")


def test_set_epoch():
    with _loader(seed=3) as a:
        a.set_epoch(0)                     # the next epoch: a no-op
        e0 = _epoch(a)
        a.set_epoch(1)
        e1 = _epoch(a)
        a.set_epoch(0)                     # rewind to an epoch it has run
        again = _epoch(a)
        assert _same(e0, again) and not _same(e0, e1)
        try:
            a.set_epoch(-1)
        except ValueError:
            pass
        else:
            raise AssertionError("set_epoch(-1) was taken")


def test_set_epoch_jumps_ahead():
    """set_epoch(k) for any k gives exactly the batches of epoch k of an
    uninterrupted run: from a new loader, from the middle of an epoch, back
    past what the iterator remembers (a loader restored from a state_dict),
    and with a cache (whose input stops running after the first epoch) and
    a shuffle before it."""
    for tail in ("shuffle(300) | batch(32) | prefetch",
                 "shuffle(100) | cache | shuffle(300) | batch(32)"):
        with _loader(tail, seed=4) as ref:
            epochs = [_epoch(ref) for _ in range(6)]
        assert not _same(epochs[4], epochs[5])
        with _loader(tail, seed=4) as a:
            a.set_epoch(4)                 # a new loader, far ahead
            assert _same(_epoch(a), epochs[4])
            a.set_epoch(5)                 # the next one: a no-op
            assert _same(_epoch(a), epochs[5])
        with _loader(tail, seed=4) as b:
            _take(b, 3)                    # in the middle of epoch 0
            b.set_epoch(2)
            assert _same(_epoch(b), epochs[2])
            assert _same(_epoch(b), epochs[3])     # and on from there
            sd = b.state_dict()
        with _loader(tail, seed=4) as c:
            c.load_state_dict(sd)          # at epoch 4's start, no iterator yet
            c.set_epoch(1)                 # back: run again from epoch 0
            assert _same(_epoch(c), epochs[1])
            c.set_epoch(5)
            assert _same(_epoch(c), epochs[5])


def test_training_smoke_fmnist():
    """The 784-128-10 MLP, Adam, batch 64, 1 epoch on the Fashion-MNIST
    training shards: test accuracy over 80%."""
    import torch
    from pipefeed.torch import Loader
    fm = os.environ.get("PF_FMNIST")
    if not fm:
        raise unittest.SkipTest("Fashion-MNIST shards not made (dataset-fashion-mnist)")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = Loader('shards("%s-train-*.pfs") | map(decode_f32, par=auto) | shuffle(10000)'
                   ' | batch(64) | prefetch' % fm, seed=1)
    test = Loader('shards("%s-test-*.pfs") | map(decode_f32) | batch(1000)' % fm)
    assert len(train) == 938
    steps = 0
    for x, y in train:
        loss = torch.nn.functional.cross_entropy(model(x.view(-1, 784)), y.long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    assert steps == 938
    right = total = 0
    with torch.no_grad():
        for x, y in test:
            right += (model(x.view(-1, 784)).argmax(1) == y.long()).sum().item()
            total += len(y)
    assert total == 10000 and right / total > 0.80, right / total
    train.close()
    test.close()


def test_set_threads_sizes_torch_and_its_blas():
    """torch_threads= / set_threads(): torch's intra-op threads and the
    pool of the BLAS library torch's GEMMs run on (Debian's torch:
    OpenBLAS, which torch.set_num_threads leaves alone)."""
    import ctypes
    import torch
    from pipefeed.torch import Loader, set_threads, _blas_libraries
    torch.ones(8, 8) @ torch.ones(8, 8)        # the BLAS is loaded by now
    before = torch.get_num_threads()
    try:
        with Loader(syn_spec("batch(32)"), torch_threads=1) as L:
            assert L.threads["torch"] == 1 and torch.get_num_threads() == 1
        for p in _blas_libraries():
            f = getattr(ctypes.CDLL(p), "openblas_get_num_threads", None)
            if f is not None:
                assert f() == 1, (p, f())
                assert p in L.threads["blas"]
        auto = set_threads("auto")["torch"]
        import os
        assert auto == max(1, len(os.sched_getaffinity(0)) - 1)
        try:
            set_threads(0)
        except ValueError:
            pass
        else:
            raise AssertionError("set_threads(0) accepted")
    finally:
        set_threads(before)


def _mlp_faults_per_step(keep):
    """Page faults per step of the 784-128-10 MLP's training step (Adam),
    in a fresh process, with or without keep_heap()."""
    import subprocess
    import sys
    code = r"""
import resource, sys, torch
from pipefeed.torch import keep_heap, set_threads
set_threads(1)
if sys.argv[1] == "1":
    assert keep_heap()
m = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
opt = torch.optim.Adam(m.parameters(), lr=1e-3)
x, y = torch.rand(64, 784), torch.randint(0, 10, (64,))
def steps(n):
    for _ in range(n):
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
steps(20)
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
steps(100)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 100.0)
"""
    out = subprocess.run([sys.executable, "-c", code, "1" if keep else "0"],
                         stdout=subprocess.PIPE, check=True).stdout
    return float(out.decode().split()[-1])


def test_keep_heap_stops_page_faults_per_step():
    """keep_heap(): the MLP's training step stops faulting pages in each
    step (glibc's defaults hand the freed gradient/Adam buffers back to
    the kernel: about 130 faults a step here)."""
    if os.environ.get("PF_SAN_PRELOAD"):
        raise unittest.SkipTest("malloc is the sanitizer's here (%s), not glibc's"
                                % os.path.basename(os.environ["PF_SAN_PRELOAD"]))
    base = _mlp_faults_per_step(False)
    kept = _mlp_faults_per_step(True)
    if base < 5:
        raise unittest.SkipTest("this malloc does not fault per step (%.1f faults/step)" % base)
    assert kept < 5, "%.1f page faults a step with keep_heap() (%.1f without)" % (kept, base)
