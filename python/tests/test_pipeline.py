"""pipefeed.Pipeline / Batch / Field over the C library (numpy only)."""
import ctypes
import os
import signal
import subprocess
import sys
import time

from common import damaged_copy, env, syn_spec, tool_env

REQUIRES = ["numpy"]


def _np():
    import numpy
    return numpy


def test_abi_matches_c():
    """_lib.py's ctypes structs have the C compiler's sizes and offsets."""
    from pipefeed import _lib
    want = {}
    with open(env("PF_ABI")) as f:
        for line in f:
            k, v = line.split()
            want[k] = int(v)
    bad = []
    for sname, cls in _lib.STRUCTS.items():
        if want.get(sname) != ctypes.sizeof(cls):
            bad.append("%s: size %s in C, %d in ctypes" % (sname, want.get(sname), ctypes.sizeof(cls)))
        for fname, _ in cls._fields_:
            k = "%s.%s" % (sname, {"in_": "in"}.get(fname, fname))
            if want.get(k) != getattr(cls, fname).offset:
                bad.append("%s: offset %s in C, %d in ctypes" % (k, want.get(k), getattr(cls, fname).offset))
    from pipefeed import _core
    for k, v in (("PF_POS_ORDER", _core.POS_ORDER), ("PF_POS_MAX_OPS", _lib.PF_POS_MAX_OPS),
                 ("PF_MAX_FIELDS", _lib.PF_MAX_FIELDS), ("PF_ERROR_MSG_MAX", _lib.PF_ERROR_MSG_MAX)):
        if want.get(k) != v:
            bad.append("%s: %s in C, %s in Python" % (k, want.get(k), v))
    checked = sum(1 + len(c._fields_) for c in _lib.STRUCTS.values())
    assert checked >= 50 and not bad, "\n".join(bad)


def test_library_is_the_build_trees():
    import pipefeed
    want = os.environ.get("PIPEFEED_LIB")
    if want:
        assert os.path.samefile(pipefeed.library_path, want), pipefeed.library_path


def test_numpy_sees_the_batch_memory():
    import pipefeed
    np = _np()
    with pipefeed.Pipeline(syn_spec(), seed=3) as p:
        b = p.next()
        assert b.keys() == ["image", "label"] and b.size == 32
        img, lab = b["image"], b["label"]
        x = np.asarray(img)
        y = np.asarray(lab)
        assert x.shape == (32, 16) and x.dtype == np.uint8 and y.shape == (32,)
        assert x.__array_interface__["data"][0] == img.ptr
        assert b.address <= img.ptr and img.ptr + 32 * 16 <= b.address + b.nbytes
        assert b.address <= lab.ptr and lab.ptr + 32 <= b.address + b.nbytes
        # the same memory: a write through one view shows in a new view and
        # in the C buffer itself
        x[0, 0] = 201
        assert np.asarray(b["image"])[0, 0] == 201
        assert ctypes.c_uint8.from_address(img.ptr).value == 201
        z = np.from_dlpack(b["image"])
        assert z.__array_interface__["data"][0] == img.ptr
        del x, y, z, img, lab
        b.release()


def test_release_and_reuse():
    """Released batches go back to the pool: three epochs of 32 batches use
    a handful of buffers, whichever way a batch is given back."""
    import pipefeed
    from pipefeed import _dlpack
    np = _np()
    addrs = set()
    n = 0
    with pipefeed.Pipeline(syn_spec("batch(32) | prefetch(2)"), seed=1) as p:
        for b in p:                          # epoch 0: explicit release
            addrs.add(b.address)
            b.release()
            n += 1
        for b in p:                          # epoch 1: with-block
            with b:
                addrs.add(b.address)
                np.asarray(b["image"]).sum()
            n += 1
        for b in p:                          # epoch 2: dropped references
            x = np.asarray(b["image"])
            c = b["label"].__dlpack__()
            addrs.add(b.address)
            n += 1
            del b, x, c
    assert n == 3 * 32, n
    assert len(addrs) <= 8, "%d buffers for %d batches" % (len(addrs), n)
    assert _dlpack.live_count() == 0


def test_use_after_release_refused():
    import pipefeed
    with pipefeed.Pipeline(syn_spec(), seed=1) as p:
        b = p.next()
        f = b["image"]
        b.release()
        b.release()  # idempotent
        for call in (lambda: b["image"], lambda: f.__array_interface__, lambda: f.__dlpack__()):
            try:
                call()
            except ValueError as e:
                assert "after release" in str(e)
            else:
                raise AssertionError("no error after release")


def test_exactly_once_over_epochs():
    """Every element once per epoch, reshuffled between epochs."""
    import pipefeed
    np = _np()
    orders = []
    with pipefeed.Pipeline("range(0, 1000) | shuffle(100) | batch(64) | prefetch",
                           seed=11, cpu_budget=2) as p:
        for _ in range(3):
            vals = np.concatenate([np.asarray(b["value"]).copy() for b in p])
            assert vals.dtype == np.int64 and len(vals) == 1000
            assert (np.sort(vals) == np.arange(1000)).all()
            orders.append(vals)
    assert not (orders[0] == orders[1]).all() and not (orders[1] == orders[2]).all()
    # shards: the shuffled epoch holds exactly the records of a plain pass
    def rows(tail, seed):
        with pipefeed.Pipeline(syn_spec(tail), seed=seed) as q:
            return np.concatenate([np.concatenate([np.asarray(b["image"]),
                                                   np.asarray(b["label"])[:, None]], 1)
                                   for b in q])
    plain = rows("batch(50)", 1)
    shuf = rows("shuffle(300) | batch(50, drop=true)", 5)
    assert len(plain) == 1000 and len(shuf) == 1000
    key = lambda a: sorted(map(bytes, a))
    assert key(plain) == key(shuf) and not (plain == shuf).all()


def test_ranks_split_every_epoch_once():
    """rank/world: the ranks' parts of an epoch hold every element once
    (records split: range has no files), whatever the world size."""
    import pipefeed
    np = _np()
    for world in (2, 3):
        parts = []
        for rank in range(world):
            with pipefeed.Pipeline("range(0, 1001) | shuffle(100) | batch(64)", seed=3,
                                   rank=rank, world=world) as p:
                parts.append(np.concatenate([np.asarray(b["value"]).copy() for b in p]))
        allv = np.concatenate(parts)
        assert len(allv) == 1001 and (np.sort(allv) == np.arange(1001)).all(), world
        assert all(abs(len(x) - 1001 / world) <= 1 for x in parts), [len(x) for x in parts]
    try:
        pipefeed.Pipeline("range(0, 10)", rank=2, world=2)
    except ValueError as e:
        assert "rank" in str(e)
    else:
        raise AssertionError("rank 2 of world 2 was accepted")


def test_same_seed_same_batches_any_threads():
    import pipefeed
    np = _np()
    spec = syn_spec("shuffle(200) | batch(40) | prefetch", files=None).replace(
        "map(decode)", "map(decode_f32, par=auto)")
    def run(cpu):
        with pipefeed.Pipeline(spec, seed=9, cpu_budget=cpu) as p:
            return [np.asarray(b["image"]).tobytes() + np.asarray(b["label"]).tobytes()
                    for e in range(2) for b in p]
    assert run(1) == run(4)


def test_position_resume_bit_identical():
    import pipefeed
    np = _np()
    spec = syn_spec("shuffle(300) | batch(24) | prefetch")
    grab = lambda b: np.asarray(b["image"]).tobytes() + np.asarray(b["label"]).tobytes()
    with pipefeed.Pipeline(spec, seed=4) as p:
        for b in p:
            pass
        for _ in range(7):
            p.next()
        pos = p.position()
        assert pos["epoch"] == 1 and pos["delivered"] == 7 and not pos["at_end"]
        rest = [grab(b) for b in p] + [grab(b) for b in p]
    with pipefeed.Pipeline(spec, seed=4) as q:
        q.set_position(pos)
        again = [grab(b) for b in q] + [grab(b) for b in q]
    assert rest == again and len(rest) == 42 - 7 + 42


def test_spec_error_names_the_column():
    import pipefeed
    try:
        pipefeed.Pipeline('range(0, 10) | shuffle(10 seed=1)')
    except pipefeed.SpecError as e:
        assert e.name == "PF_ESPEC" and "column" in e.message, e
    else:
        raise AssertionError("no SpecError")
    try:
        pipefeed.Pipeline('range(0, 10) | map(no_such_fn)')
    except pipefeed.PipefeedError as e:
        assert "no_such_fn" in str(e), e
    else:
        raise AssertionError("no error for an unknown map")


def test_missing_file_error():
    import pipefeed
    p = pipefeed.Pipeline('shards("/nonexistent/dir/x-*.pfs") | batch(4)')
    try:
        p.next()
    except pipefeed.PipefeedError as e:
        assert "/nonexistent/dir/x-*.pfs" in str(e), e
    else:
        raise AssertionError("no error")


def test_damaged_shard_raises_with_the_file():
    import pipefeed
    dst, bad = damaged_copy("damaged", 2)
    spec = syn_spec("batch(32)", files=os.path.join(dst, "*.pfs"))
    n = 0
    with pipefeed.Pipeline(spec) as p:
        try:
            for b in p:
                n += 1
        except pipefeed.CorruptError as e:
            assert bad in str(e) and "offset" in str(e), e
            assert e.name in ("PF_ECORRUPT", "PF_ETRUNC")
        else:
            raise AssertionError("no CorruptError after %d batches" % n)
        try:
            p.next()  # a failed iterator keeps its error
        except pipefeed.CorruptError:
            pass
        else:
            raise AssertionError("the error did not stick")
    # skip_corrupt: the rest is delivered
    spec = spec.replace("cycle=4)", "cycle=4, skip_corrupt=true)")
    with pipefeed.Pipeline(spec) as p:
        got = sum(b.size for b in p)
    assert 0 < got < 1000


CHILD = r"""
import sys, pipefeed
p = pipefeed.Pipeline(sys.argv[1] + " | sleep(2000) | batch(2) | prefetch(2)")
print("started", flush=True)
n = 0
for epoch in range(1000):
    for b in p:
        n += 1
"""


def test_ctrl_c_stops_cleanly():
    """SIGINT in the loop: KeyboardInterrupt, the C threads stop, the
    process exits promptly."""
    spec = 'shards("%s")' % env("PF_SYN") + " | map(decode)"
    c = subprocess.Popen([sys.executable, "-c", CHILD, spec], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=os.environ)
    assert c.stdout.readline().strip() == b"started"
    time.sleep(0.3)
    c.send_signal(signal.SIGINT)
    try:
        out, errout = c.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        c.kill()
        raise AssertionError("no exit 20 s after SIGINT")
    assert c.returncode != 0 and b"KeyboardInterrupt" in errout, errout[-2000:]
    assert b"Fatal" not in errout and b"Segmentation" not in errout, errout[-2000:]


def test_stats_file_for_pipe_stat():
    import pipefeed
    tmp = env("PF_TEST_TMP")
    path = os.path.join(tmp, "py.pfstat")
    with pipefeed.Pipeline(syn_spec("batch(16) | prefetch"), seed=1, stats=path) as p:
        for e in range(2):
            for b in p:
                b.release()
                time.sleep(0.002)
    r = subprocess.run([env("PF_PIPE_STAT"), path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=tool_env())
    out = r.stdout.decode()
    assert r.returncode == 0 and "shards" in out and "python" in out, out[-1500:]


def test_python_map():
    """A map written in Python: same results for any par, its exception
    as the sample's error, a warning that it runs under the GIL (stderr and
    the stats file)."""
    import contextlib
    import io
    import pipefeed
    np = _np()

    def scale(f):
        if f["label"] == 255:
            raise ZeroDivisionError("label 255")
        return {"image": f["image"] / 255.0 * 2 - 1, "label": int(f["label"]) * 10}

    pipefeed.register_map("py_scale", scale, "image: f32[16], label: i64")
    try:
        pipefeed.register_map("py_scale", scale, "image: f32[16]")
    except ValueError:
        pass
    else:
        raise AssertionError("a name registered twice")
    path = os.path.join(env("PF_TEST_TMP"), "pymap.pfstat")
    ref = []
    with pipefeed.Pipeline(syn_spec("batch(50)"), seed=1) as p:
        for b in p:
            ref.append((np.asarray(b["image"]).astype(np.float32) / 255.0 * 2 - 1,
                        np.asarray(b["label"]).astype(np.int64) * 10))
    for par in (1, 3):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            with pipefeed.Pipeline(syn_spec("map(py_scale, par=%d) | batch(50)" % par), seed=1,
                                   stats=path) as p:
                got = [(np.asarray(b["image"]).copy(), np.asarray(b["label"]).copy()) for b in p]
        assert "py_scale runs under the GIL" in err.getvalue(), err.getvalue()
        assert len(got) == len(ref) == 20
        for (a, l), (ra, rl) in zip(got, ref):
            assert a.dtype == np.float32 and l.dtype == np.int64
            assert np.allclose(a, ra, atol=1e-6) and (l == rl).all()
    r = subprocess.run([env("PF_PIPE_STAT"), path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=tool_env())
    assert "under the GIL" in r.stdout.decode(), r.stdout.decode()[-2000:]

    def bad(f):
        raise KeyError("no way")
    pipefeed.register_map("py_bad", bad, "label: u8")
    with contextlib.redirect_stderr(io.StringIO()):
        with pipefeed.Pipeline(syn_spec("map(py_bad) | batch(5)")) as p:
            try:
                p.next()
            except pipefeed.PipefeedError as e:
                assert e.name == "PF_EMAP" and "python: KeyError: 'no way'" in str(e), e
                assert "py_bad" in str(e) and "syn-0000" in str(e), e
            else:
                raise AssertionError("no error from the Python map")
