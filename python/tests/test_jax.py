"""pipefeed.jax.Loader and JAX's DLPack import: arrays over the batch
memory (zero-copy on the CPU), batches back to the pool, prefetch with
device_put, exactly-once, resume and set_epoch with batches prefetched,
and a small JAX training run (jit, grad)."""
import unittest

from common import syn_spec

REQUIRES = ["numpy", "jax"]


def _loader(tail="shuffle(300) | batch(32) | prefetch", **kw):
    from pipefeed.jax import Loader
    return Loader(syn_spec(tail), **kw)


def test_jax_arrays_are_the_batch_memory():
    """jax.dlpack.from_dlpack and jnp.asarray give arrays whose buffer is
    the C batch's: nothing copied; the batch goes back to the pool when the
    arrays are gone."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import pipefeed
    from pipefeed import _dlpack
    with pipefeed.Pipeline(syn_spec("batch(32)"), seed=2) as p:
        b = p.next()
        x = jax.dlpack.from_dlpack(b["image"])
        y = jnp.asarray(b["label"])
        assert x.shape == (32, 16) and x.dtype == jnp.uint8
        assert y.shape == (32,) and y.dtype == jnp.uint8
        assert x.unsafe_buffer_pointer() == b["image"].ptr
        assert y.unsafe_buffer_pointer() == b["label"].ptr
        assert (np.asarray(x) == np.asarray(b["image"])).all()
        addr = b.address
        del b
        assert _dlpack.live_count() == 2   # the arrays hold the batch
        s = int(x.astype(jnp.int32).sum())  # still readable
        assert s > 0
        del x
        assert _dlpack.live_count() == 1
        del y
        assert _dlpack.live_count() == 0
        seen = set()
        for b in p:
            seen.add(b.address)
            b.release()
        assert addr in seen, "the buffer did not go back to the pool"


def test_loader_prefetch_and_exactly_once():
    """Each epoch holds every element once, with 0, 1 and 3 batches
    prefetched (device_put to the default device); the pipeline is
    `prefetch` batches ahead of the loop."""
    import jax
    import numpy as np
    from pipefeed.jax import Loader
    for pf in (0, 1, 3):
        with Loader("range(0, 1000) | shuffle(128) | batch(64)", seed=5,
                    prefetch=pf, sharding=jax.devices()[0]) as loader:
            orders = []
            for epoch in range(2):
                vals = []
                for k, v in enumerate(loader):
                    assert isinstance(v, jax.Array)
                    if k == 2:
                        assert loader.pipeline.position()["delivered"] == 3 + pf
                    vals.append(np.asarray(v))
                vals = np.concatenate(vals)
                assert (np.sort(vals) == np.arange(1000)).all(), pf
                orders.append(vals)
            assert len(loader) == 16
            assert not (orders[0] == orders[1]).all()
            if pf == 0:
                ref = orders
            else:
                assert all((a == b).all() for a, b in zip(ref, orders)), pf


def test_sharding_and_as_dict():
    import jax
    import numpy as np
    from jax.sharding import SingleDeviceSharding
    dev = jax.devices()[0]
    with _loader("batch(10)", as_dict=True, sharding=SingleDeviceSharding(dev)) as loader:
        b = next(iter(loader))
        assert sorted(b) == ["image", "label"]
        assert b["image"].shape == (10, 16) and b["label"].shape == (10,)
        assert b["image"].sharding == SingleDeviceSharding(dev)
    with _loader("batch(10)", fields=["label", "image"], sharding=[None, dev]) as loader:
        y, x = next(iter(loader))
        assert y.shape == (10,) and x.shape == (10, 16)
        assert np.asarray(x).dtype == np.uint8
    try:
        _loader("batch(10)", sharding=[dev]).__iter__().__next__()
    except ValueError as e:
        assert "shardings" in str(e)
    else:
        raise AssertionError("one sharding for two fields was taken")


def _np_epoch(loader):
    import numpy as np
    return [tuple(np.array(a) for a in t) for t in loader]


def _take(loader, n):
    import numpy as np
    out = []
    it = iter(loader)
    for _ in range(n):
        out.append(tuple(np.array(a) for a in next(it)))
    return out


def _same(a, b):
    return len(a) == len(b) and all(
        all((p == q).all() for p, q in zip(u, v)) for u, v in zip(a, b))


def test_resume_and_set_epoch_with_prefetch():
    """With 3 batches prefetched, state_dict counts what the loop got: a
    loader restored from it delivers exactly the next batches; a loop
    broken off goes on with the prefetched ones; set_epoch(k) jumps ahead
    to epoch k as an uninterrupted run has it."""
    import numpy as np
    with _loader(seed=8, prefetch=3) as ref:
        epochs = [_np_epoch(ref) for _ in range(4)]
    with _loader(seed=8, prefetch=3) as a:
        first = _take(a, 5)                # break after 5 (3 more prefetched)
        sd = a.state_dict()
        assert sd["position"]["delivered"] == 5
        more = _take(a, 2)                 # the loop goes on where it stopped
        assert _same(first + more, epochs[0][:7])
    with _loader(seed=8, prefetch=3) as b:
        b.load_state_dict(sd)
        assert _same(_np_epoch(b), epochs[0][5:])
        assert _same(_np_epoch(b), epochs[1])
    with _loader(seed=8, prefetch=3) as c:
        c.set_epoch(3)                     # from a new loader: far ahead
        assert _same(_np_epoch(c), epochs[3])
        c.set_epoch(1)                     # back
        assert _same(_np_epoch(c), epochs[1])
    assert np.array_equal(epochs[0][0][1], epochs[0][0][1])


def test_jax_training_step():
    """A small JAX model (16-32-4 MLP on the synthetic records, label the
    argmax of the first 4 pixels; jit-compiled SGD step with
    jax.grad) trained for 3 epochs straight from the loader: the loss
    falls, and the batches reach the step without a copy."""
    import jax
    import jax.numpy as jnp
    from pipefeed import _dlpack

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"w1": jax.random.normal(k1, (16, 32)) * 0.1, "b1": jnp.zeros(32),
                "w2": jax.random.normal(k2, (32, 4)) * 0.1, "b2": jnp.zeros(4)}

    def loss_fn(params, x, y):
        x = x.astype(jnp.float32) / 255.0
        h = jax.nn.relu(x @ params["w1"] + params["b1"])
        logits = h @ params["w2"] + params["b2"]
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y.astype(jnp.int32)[:, None], 1))

    @jax.jit
    def step(params, x, y):
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.tree_util.tree_map(lambda p, d: p - 0.5 * d, params, g), loss

    params = init(jax.random.PRNGKey(0))
    losses = []
    with _loader("shuffle(300) | batch(50) | prefetch", seed=1, prefetch=2) as loader:
        for epoch in range(3):
            loader.set_epoch(epoch)
            tot = n = 0
            for x, y in loader:
                params, loss = step(params, x, y)
                tot += float(loss)
                n += 1
            losses.append(tot / n)
        assert n == 20
    assert all(v == v for v in losses), losses          # no NaN
    assert losses[-1] < losses[0], losses
    jax.block_until_ready(params)
    del x, y
    # JAX lets go of an imported buffer once the computations that read it
    # are done, on its own threads: the batches come back soon after
    import gc
    import time
    for _ in range(200):
        if _dlpack.live_count() == 0:
            break
        gc.collect()
        time.sleep(0.05)
    assert _dlpack.live_count() == 0, _dlpack.live_count()


def test_device_feed_cpu_backend():
    """device="cpu": the C device feed's path (the cuda one's, on the
    device layer's cpu backend): arrays over the feed's slots (kDLCPU, no
    copy), the host path's batches bit for bit, the slots back when JAX
    lets go, and state_dict resume."""
    import gc
    import time
    import numpy as np
    from pipefeed import _dlpack

    def epoch(loader):
        return [(np.asarray(x).copy(), np.asarray(y).copy()) for x, y in loader]

    with _loader(seed=4) as H:
        ref = [epoch(H) for _ in range(2)]
    with _loader(seed=4, device="cpu", depth=3) as L:
        it = iter(L)
        x, y = next(it)
        got = [(np.asarray(x).copy(), np.asarray(y).copy())]
        f = L._dev.feed
        ptrs = {x.unsafe_buffer_pointer()}
        for u, v in it:
            got.append((np.asarray(u).copy(), np.asarray(v).copy()))
            ptrs.add(u.unsafe_buffer_pointer())
        assert len(got) == len(ref[0]) and all(
            (a == c).all() and (bb == d).all() for (a, bb), (c, d) in zip(got, ref[0]))
        assert len(ptrs) <= 3, ptrs       # only the 3 slots' memory
        del x, y, u, v
        for _ in range(200):
            if f.held == 0:
                break
            gc.collect()
            time.sleep(0.05)
        assert f.held == 0 and _dlpack.live_count() == 0, (f.held, _dlpack.live_count())
        sd = L.state_dict()               # at the epoch's end: the next
        assert f.held == 1                # epoch's first batch is pulled, kept
    with _loader(seed=4, device="cpu", depth=3) as L2:
        L2.load_state_dict(sd)
        got = epoch(L2)
        assert len(got) == len(ref[1]) and all(
            (a == c).all() and (bb == d).all() for (a, bb), (c, d) in zip(got, ref[1]))
