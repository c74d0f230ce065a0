"""Loader(spec, device=...): batches moved by the C device feed
(cuda/pf_devfeed.h) and exported through DLPack with the device's type.
On a machine without a GPU the device layer's cpu backend runs the same
path (kDLCPU, memory in the feed's slots); the cuda checks skip."""
import os
import unittest

from common import damaged_copy, env, syn_spec

REQUIRES = ["numpy", "torch"]
SPEC_TAIL = "shuffle(300) | batch(32) | prefetch"


def _loader(device="cpu", tail=SPEC_TAIL, **kw):
    from pipefeed.torch import Loader
    kw.setdefault("seed", 5)
    return Loader(syn_spec(tail), device=device, **kw)


def _host(tail=SPEC_TAIL, **kw):
    from pipefeed.torch import Loader
    kw.setdefault("seed", 5)
    return Loader(syn_spec(tail), **kw)


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def _same(a, b):
    return len(a) == len(b) and all(
        x.shape == u.shape and bool((x == u).all()) and bool((y == v).all())
        for (x, y), (u, v) in zip(a, b))


def test_cpu_feed_tensors_are_the_slot_memory():
    """device="cpu": each tensor is the feed's slot memory (kDLCPU), no
    copy: its data pointer is the DevField's, inside the slot."""
    import torch
    from pipefeed import _dlpack
    with _loader(depth=4) as L:
        assert L.device == "cpu"
        it = iter(L)
        x, y = next(it)
        b = L._last()
        fx, fy = b["image"], b["label"]
        assert fx.__dlpack_device__() == (_dlpack.KDL_CPU, 0)
        assert x.device.type == "cpu" and x.dtype == torch.uint8 and x.shape == (32, 16)
        assert x.data_ptr() == fx.ptr and y.data_ptr() == fy.ptr
        lo = b._b.data[0]
        assert lo <= y.data_ptr() < lo + b.nbytes
        x[0, 0] = 201                     # the same memory, seen from C's side
        import ctypes
        assert ctypes.c_uint8.from_address(fx.ptr).value == 201
        try:
            fx.__dlpack__(stream=7)       # kDLCPU takes no stream
        except BufferError:
            pass
        else:
            raise AssertionError("a stream for a kDLCPU export was accepted")
        # the cpu backend has no streams of other libraries: the handshake
        # there is the host's wait, and the foreign calls say so
        import pipefeed
        from pipefeed import _lib
        dev = L._dev.dev
        err = _lib.pf_error()
        rc = dev.dl.pf_foreign_wait_event(dev.ptr, 7, dev.done, ctypes.byref(err))
        assert rc == -1 and b"no streams of other libraries" in err.msg, (rc, err.msg)
        del b, fx, fy
        assert _dlpack.live_count() == 2
        del x, y, it
        assert _dlpack.live_count() == 0


def test_cpu_feed_release_returns_slots():
    """A slot goes back to the feed when the last tensor over it dies (or
    at release()): over epochs only `depth` slot addresses are seen, and
    holding every slot is refused instead of hanging."""
    with _loader(depth=3) as L:
        seen = set()
        for epoch in range(3):
            for x, y in L:
                seen.add(x.data_ptr())
                assert L._dev.feed.held == 1, L._dev.feed.held
        assert len(seen) == 3, seen
        del x, y
        assert L._dev.feed.held == 0
        held = []
        it = iter(L)
        for _ in range(3):
            held.append(next(it))
        assert L._dev.feed.held == 3
        try:
            next(it)
        except RuntimeError as e:
            assert "all 3 device slots are held" in str(e), e
        else:
            raise AssertionError("a 4th batch with 3 slots held")
        held.pop()                        # one slot back: it goes on
        held.append(next(iter(L)))
        b = L._last()
        b.release()                       # explicit release, idempotent
        b.release()
        assert L._dev.feed.held == 2
        del held, b
        assert L._dev.feed.held == 0


def test_cpu_feed_same_batches_as_host_exactly_once():
    """The device feed delivers, epoch by epoch, the host path's batches
    bit for bit (nothing dropped, doubled or torn by the slots), and every
    element once per epoch, reshuffled between epochs."""
    import torch
    from pipefeed.torch import Loader
    # copies that sleep mid-way (the cpu backend's test hook): a tensor
    # handed over before its copy completed would show a torn batch
    with _host() as H, _loader(depth=2, device_options={"test_copy_delay_us": 3000,
                                                        "test_seed": 9}) as L:
        for epoch in range(3):
            assert _same(_epoch(H), _epoch(L)), "epoch %d differs" % epoch
        assert len(L) == len(H) == 32
    firsts = []
    with Loader("range(0, 1000) | shuffle(128) | batch(64) | prefetch", seed=5,
                device="cpu", depth=2) as L:
        for epoch in range(3):
            vals = torch.cat([v.clone() for v in L])
            assert torch.equal(torch.sort(vals).values, torch.arange(1000))
            firsts.append(vals[:10].tolist())
    assert firsts[0] != firsts[1] != firsts[2]


def test_cpu_feed_resume_and_set_epoch():
    """state_dict mid-epoch and at an epoch's end, then load_state_dict in
    a new loader: the next batches are the uninterrupted run's, bit for
    bit; set_epoch goes ahead and back."""
    with _host() as H:
        ref = [_epoch(H) for _ in range(4)]
    with _loader(depth=4) as L:
        got = []
        it = iter(L)
        for _ in range(10):
            x, y = next(it)
            got.append((x.clone(), y.clone()))
        del x, y
        sd = L.state_dict()               # the feeder is ahead: counts what was given
        assert sd["position"]["epoch"] == 0 and sd["position"]["delivered"] == 10
    with _loader(depth=4) as L2:
        L2.load_state_dict(sd)
        rest = _epoch(L2)
        assert _same(got + rest, ref[0])
        sd2 = L2.state_dict()             # at the epoch's end
        assert _same(_epoch(L2), ref[1])
    with _loader(depth=4) as L3:
        L3.load_state_dict(sd2)
        assert _same(_epoch(L3), ref[1])
        L3.set_epoch(3)                   # ahead
        assert _same(_epoch(L3), ref[3])
        L3.set_epoch(1)                   # back
        assert _same(_epoch(L3), ref[1])
        assert L3.next_epoch == 2


def test_cpu_feed_damaged_shard_and_stats():
    """A damaged shard's error comes up from the feeder thread as
    CorruptError naming the file; the feed's counters are readable."""
    import pipefeed
    dst, bad = damaged_copy("damaged-dev", 1)
    from pipefeed.torch import Loader
    L = Loader(syn_spec("batch(32)", files=os.path.join(dst, "*.pfs")), device="cpu")
    n = 0
    try:
        for x, y in L:
            n += 1
    except pipefeed.CorruptError as e:
        assert bad in str(e), e
    else:
        raise AssertionError("no CorruptError after %d batches" % n)
    st = L.feed_stats()
    assert st["batches"] == n and st["bytes"] == n * 32 * 17, (st, n)
    L.close()


def test_cuda_feed():
    """device="cuda": CUDA tensors over the feed's device slots, equal to
    the host path's batches, and a training step on them.  Skipped when
    no GPU answers."""
    import torch
    import pipefeed
    from pipefeed import _dlpack
    if not torch.cuda.is_available():
        raise unittest.SkipTest("torch sees no CUDA device (torch %s)" % torch.__version__)
    try:
        L = _loader("cuda", depth=3)
        it = iter(L)
        x, y = next(it)
    except pipefeed.PipefeedError as e:
        raise unittest.SkipTest("pipefeed's cuda device: %s" % e)
    b = L._last()
    assert b["image"].__dlpack_device__() == (_dlpack.KDL_CUDA, 0)
    assert x.is_cuda and x.data_ptr() == b["image"].ptr
    del b
    with _host() as H:
        ref = _epoch(H)
    got = [(x.cpu(), y.cpu())] + [(u.cpu(), v.cpu()) for u, v in it]
    assert _same(got, ref)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):            # another stream: the handshake follows it
        for x, y in L:
            w = (x.float() * 2).sum() + y.sum()
    torch.cuda.synchronize()
    assert bool(torch.isfinite(w))
    L.close()
