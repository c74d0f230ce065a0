"""The device feed behind Loader(spec, device=...): batches moved into device
memory by the C device feed (cuda/pf_devfeed.h) and exported through DLPack
with their device type, without a host round trip.

    C feeder thread:  pf_iter_next -> pinned staging slot -> copy stream ->
                      device slot k; copy_ev[k] recorded     (pf_devfeed.h)
    next():           pf_devfeed_next: the feed's handoff stream waits for
                      copy_ev[k]; ready[k] is recorded on it
    __dlpack__(S):    cuda: the consumer's stream S waits for ready[k]
                      (pf_foreign_wait_event; the host does not wait)
                      cpu:  the host waits for ready[k] (pf_event_sync);
                      DLPack's stream must then be None
    release:          cuda: an event recorded on each stream S the batch
                      went to, the handoff stream waits for it, then
                      pf_devfeed_release records slot k's done event there:
                      the slot is refilled only after the work the consumer
                      had enqueued on S when it let go (the tensor's death)
                      cpu:  pf_devfeed_release (the host is done with it)

The cpu backend of the device layer runs exactly this path (device memory
is host memory there, kDLCPU), which is what the tests check on a machine
without a GPU.  A DevBatch goes back to its slot when the last tensor over
it dies, on release(), or when the DevBatch is collected; a feed that is
closed while batches are out is freed when the last of them comes back.
"""
import atexit
import ctypes
import sys
import time
import weakref

from . import _lib
from ._lib import lib
from . import _dlpack
from . import _core

_KDL = {"cpu": _dlpack.KDL_CPU, "cuda": _dlpack.KDL_CUDA}


def _raise(rc, err):
    from ._core import _raise as r
    r(rc, err)


def parse_device(device):
    """"cuda", "cuda:1", "cpu" (or a torch.device / jax device's str) ->
    (kind, index)."""
    s = str(device)
    kind, _, idx = s.partition(":")
    if kind not in _KDL:
        raise ValueError("pipefeed: device %r: cuda, cuda:N or cpu (the device "
                         "feed's cpu backend)" % (device,))
    return kind, int(idx or 0)


class Device:
    """An opened pf_device with the feed's handoff stream and events."""

    def __init__(self, device, options=None):
        self.kind, self.index = parse_device(device)
        self.dl = _lib.device_lib()
        err = _lib.pf_error()
        d = ctypes.c_void_p()
        o = _lib.pf_device_opts(index=self.index)
        for k, v in (options or {}).items():
            if k == "index" or k not in dict(o._fields_):
                raise ValueError("pipefeed: device option %r (pf_device_opts: %s)" % (
                    k, ", ".join(n for n, _ in o._fields_ if n != "index")))
            setattr(o, k, int(v))
        rc = self.dl.pf_device_open(ctypes.byref(d), self.kind.encode(),
                                    ctypes.byref(o), ctypes.byref(err))
        if rc < 0:
            _raise(rc, err)
        self.ptr = d
        self.events = []
        self.handoff = self._new(self.dl.pf_stream_new)
        self.done = self.event()       # on a consumer's stream, at release
        self.dlpack_device = (_KDL[self.kind], self.index if self.kind == "cuda" else 0)

    def _new(self, fn):
        err = _lib.pf_error()
        x = ctypes.c_void_p()
        rc = fn(self.ptr, ctypes.byref(x), ctypes.byref(err))
        if rc < 0:
            _raise(rc, err)
        return x

    def event(self):
        e = self._new(self.dl.pf_event_new)
        self.events.append(e)
        return e

    def info(self):
        return self.dl.pf_device_info(self.ptr).decode()

    def __del__(self, _finalizing=sys.is_finalizing):
        if self.ptr is None or _finalizing():
            return
        dl = self.dl
        if self.handoff:
            dl.pf_stream_free(self.ptr, self.handoff)
        for e in self.events:
            dl.pf_event_free(self.ptr, e)
        dl.pf_device_close(self.ptr)
        self.ptr = None


class Feed:
    """A pf_devfeed over the pipeline's iterator, which it takes over (with
    the stats file) until it is freed: when closed and no batch of it is
    out any more."""

    def __init__(self, dev, pipeline, depth):
        self.dev = dev
        self.dl = dev.dl
        pipeline._start()
        self.handle = pipeline._h         # the schema lives in the pipeline
        self.it, self.stats = pipeline._it, pipeline._stats
        pipeline._it, pipeline._stats = None, None
        self.ptr = None
        self.held = 0
        self.closing = False
        err = _lib.pf_error()
        if depth in (None, "auto"):
            depth = self.dl.pf_devfeed_default_depth(dev.ptr)
        self.depth = int(depth)
        self.ready = {}
        o = _lib.pf_devfeed_opts(depth=self.depth)
        f = ctypes.c_void_p()
        rc = self.dl.pf_devfeed_new(ctypes.byref(f), dev.ptr, self.it, dev.handoff,
                                    ctypes.byref(o), ctypes.byref(err))
        if rc < 0:
            self._free()
            _raise(rc, err)
        self.ptr = f
        self.err = _lib.pf_error()

    def next(self):
        """The next DevBatch, or None at an epoch's end."""
        if self.held >= self.depth:
            self._wait_for_a_slot()
        if self.held >= self.depth:
            # every slot is out: the feeder cannot fill one, waiting would
            # never end
            raise RuntimeError("pipefeed: all %d device slots are held (tensors of %d "
                               "batches alive): drop some, or give a larger depth="
                               % (self.depth, self.held))
        b = _lib.pf_devbatch()
        err = self.err
        rc = self.dl.pf_devfeed_next(self.ptr, ctypes.byref(b), ctypes.byref(err))
        if rc == _lib.PF_END:
            return None
        if rc < 0:
            _raise(rc, err)
        ev = self.ready.get(b.slot)
        if ev is None:
            ev = self.ready[b.slot] = self.dev.event()
        rc = self.dl.pf_event_record(self.dev.ptr, ev, self.dev.handoff, ctypes.byref(err))
        if rc < 0:
            self._release(b)
            _raise(rc, err)
        self.held += 1
        return DevBatch(self, b, ev)

    def _wait_for_a_slot(self, seconds=2.0):
        """Every slot is out: a consumer that lets go of buffers on its own
        threads (JAX does, once the computations reading them are done)
        may give one back soon; wait for that a little (the GIL free)."""
        import gc
        gc.collect()
        t_end = time.monotonic() + seconds
        while self.held >= self.depth and time.monotonic() < t_end:
            time.sleep(0.002)

    def _release(self, b, streams=()):
        err = _lib.pf_error()
        dl, d = self.dl, self.dev.ptr
        rc = 0
        for s in streams:              # the consumer's work on s comes first
            rc = dl.pf_event_record_foreign(d, self.dev.done, s, ctypes.byref(err))
            if rc == 0:
                rc = dl.pf_stream_wait_event(d, self.dev.handoff, self.dev.done,
                                             ctypes.byref(err))
            if rc < 0:
                break
        if rc < 0:       # the slot cannot be given back safely: keep it
            return rc, err
        rc = dl.pf_devfeed_release(self.ptr, ctypes.byref(b), ctypes.byref(err))
        return rc, err

    def give_back(self, b, streams):
        rc, err = self._release(b, streams)
        self.held -= 1
        if self.closing and self.held == 0:
            self._free()
        if rc < 0:
            _raise(rc, err)

    def get_stats(self):
        st = _lib.pf_devfeed_stats()
        if self.ptr is not None:
            self.dl.pf_devfeed_get_stats(self.ptr, ctypes.byref(st))
        return {k: getattr(st, k) for k, _ in st._fields_}

    def close(self):
        """Stop the feeder; the slots are freed now, or when the last batch
        out comes back.  Idempotent."""
        self.closing = True
        if self.held == 0:
            self._free()

    def _free(self):
        if self.ptr is not None:
            self.dl.pf_devfeed_free(self.ptr)   # joins the feeder, syncs
            self.ptr = None
        if self.ready:
            # the handoff stream's records of them are over once it has run
            dev = self.dev
            self.dl.pf_stream_sync(dev.ptr, dev.handoff, None)
            for e in self.ready.values():
                dev.events.remove(e)
                self.dl.pf_event_free(dev.ptr, e)
            self.ready = {}
        if self.stats is not None:
            lib.pf_stats_detach(self.stats)
            lib.pf_stats_close(self.stats, None)
            self.stats = None
        if self.it is not None:
            lib.pf_iter_free(self.it)
            self.it = None

    def __del__(self, _finalizing=sys.is_finalizing):
        if not _finalizing():
            self._free()


class DevBatch(_core.Releasable):
    """A batch in a device slot of the feed: fields() / [i] give DevFields
    (DLPack with the device's type), release() gives the slot back."""

    def __init__(self, feed, b, ready):
        self._f = feed
        self._b = b
        self._ready = ready
        self._streams = []       # consumer streams it was exported to
        self._synced = False
        self._released = False
        self.size = b.batch
        self.id = b.id
        self.epoch = b.epoch
        self.slot = b.slot

    @property
    def nbytes(self):
        return self._b.nbytes

    def _check(self):
        if self._released:
            raise ValueError("pipefeed: device batch used after release()")

    def handoff(self, stream):
        """Make the data ready for a consumer on `stream` (DLPack's
        argument): cuda: that stream waits for the copy (None: the legacy
        default stream; -1: no synchronization); cpu: the host waits."""
        self._check()
        f = self._f
        dev = f.dev
        err = _lib.pf_error()
        if dev.kind == "cpu":
            if stream not in (None, -1):
                raise BufferError("pipefeed: DLPack stream %r for a kDLCPU array "
                                  "(must be None)" % (stream,))
            if not self._synced:
                rc = f.dl.pf_event_sync(dev.ptr, self._ready, ctypes.byref(err))
                if rc < 0:
                    _raise(rc, err)
                self._synced = True
            return
        if stream == -1:
            return
        s = 1 if stream is None else int(stream)
        if s == 0 or s < -1:
            raise BufferError("pipefeed: DLPack stream %r (0 is ambiguous)" % (stream,))
        if s not in self._streams:
            rc = f.dl.pf_foreign_wait_event(dev.ptr, s, self._ready, ctypes.byref(err))
            if rc < 0:
                _raise(rc, err)
            self._streams.append(s)

    def fields(self):
        self._check()
        sch = self._f.handle.schema(self._b.schema)
        b = self._b
        out = []
        for i, (name, dt, dims) in enumerate(sch):
            n = 1
            for d in dims:
                n *= d
            if all(d != _lib.PF_DIM_VAR for d in dims) and b.nitems[i] == b.batch * n:
                shape = ([b.batch] if b.batch else []) + list(dims)
            else:
                shape = [b.nitems[i]]
            out.append(DevField(self, name, b.data[i], dt, shape))
        return out

    def keys(self):
        return [f.name for f in self.fields()]

    def __getitem__(self, key):
        fs = self.fields()
        if isinstance(key, int):
            return fs[key]
        for f in fs:
            if f.name == key:
                return f
        raise KeyError(key)

    def release(self):
        """Give the slot back (idempotent).  Arrays over it must not be used
        afterwards; on cuda, work already enqueued on the streams it was
        exported to still reads it safely (the slot waits for that work)."""
        if not self._released:
            self._released = True
            self._f.give_back(self._b, self._streams)


class DevField:
    """One field of a DevBatch: __dlpack__ / __dlpack_device__ (the
    device's type: kDLCUDA, or kDLCPU on the cpu backend).  Holds the batch."""

    __slots__ = ("batch", "name", "ptr", "dtype", "shape")

    def __init__(self, batch, name, ptr, dtype, shape):
        self.batch = batch
        self.name = name
        self.ptr = ptr
        self.dtype = dtype
        self.shape = tuple(shape)

    def __dlpack__(self, stream=None, **kw):
        self.batch.handoff(stream)
        return _dlpack.to_capsule(self.batch, self.ptr, _lib.DTYPES[self.dtype][2],
                                  self.shape, device=self.batch._f.dev.dlpack_device)

    def __dlpack_device__(self):
        return self.batch._f.dev.dlpack_device

    def __repr__(self):
        return "<pipefeed.DevField %s %s%s on %s:%d at 0x%x>" % (
            self.name, _lib.DTYPES[self.dtype][0], list(self.shape),
            self.batch._f.dev.kind, self.batch._f.dev.index, self.ptr or 0)


class DeviceMode:
    """What a Loader does with `device=`: the feed, positions counted in
    what the caller was given (the feeder runs ahead), set_epoch, resume."""

    def __init__(self, loader, device, depth, options=None):
        self.loader = loader
        self.dev = Device(device, options)
        self.depth = depth
        self.feed = None
        self.base = 0          # the iterator's epoch of the feed's epoch 0
        self.epoch = 0         # epoch of what the caller was given last
        self.given = 0         # ... batches of it
        self.at_end = False    # ... and its end
        self.pending = []      # pulled for a position, not given yet
        self.start_pos = None
        self.fresh = True      # nothing given since the feed started
        self.stall_ns = 0      # time the loop waited for the next batch
        self.compute_ns = 0    # time between batches

    def _feed(self):
        if self.feed is None:
            p = self.loader.pipeline
            pos = p.position()
            self.feed = Feed(self.dev, p, self.depth)
            self.start_pos = pos
            self.base = pos["epoch"] + (1 if pos["at_end"] else 0)
            self.epoch = pos["epoch"]
            self.given = pos["delivered"]
            self.at_end = bool(pos["at_end"])
            self.fresh = True
            _open.add(self.feed)
        return self.feed

    def _pull(self):
        if self.pending:
            return self.pending.pop(0)
        return self._feed().next()

    def drop(self):
        """Stop the feed (its slots freed once its batches are back)."""
        self.pending = []
        if self.feed is not None:
            self.feed.close()
            self.feed = None

    def position(self):
        """The pf_iter_pos (as a dict) of what the caller was given."""
        f = self.feed
        if f is None:
            return self.loader.pipeline.position()
        if self.fresh:
            return dict(self.start_pos)     # the iterator may not have begun
        e, n = (self.epoch + 1, 0) if self.at_end else (self.epoch, self.given)
        if self.at_end and not self.pending:
            # the feeder may not have begun epoch e yet: take its first
            # item now (kept for the next loop)
            self.pending.append(f.next())
        pos = _lib.pf_iter_pos()
        err = _lib.pf_error()
        rc = lib.pf_iter_epoch_start(f.it, e, n, ctypes.byref(pos), ctypes.byref(err))
        if rc < 0:
            _raise(rc, err)
        from ._core import _pos_dict
        return _pos_dict(pos)

    def next_epoch(self):
        if self.feed is None:
            return self.loader.pipeline.next_epoch
        return self.epoch + (1 if self.at_end else 0)

    def batches(self):
        """One epoch of DevBatches (the rest of it), counted as given.  The
        caller gets each without a reference left here: its slot goes back
        when the caller drops it (the tensors over it), not at the next
        call.  The stats file (stats=) gets each step's wait and compute."""
        f = self._feed()
        if self.at_end:
            self.epoch += 1
            self.given = 0
            self.at_end = False
        box = []
        t_back = None
        clock = time.perf_counter_ns
        try:
            while True:
                t0 = clock()
                b = self._pull()
                t1 = clock()
                self.stall_ns += t1 - t0
                if t_back is not None:
                    self.compute_ns += t0 - t_back
                    if f.stats is not None:
                        lib.pf_stats_step(f.stats, t1 - t0, t0 - t_back, 0,
                                          b.size if b is not None else 0)
                self.fresh = False
                if b is None:
                    self.at_end = True
                    return
                self.epoch = self.base + b.epoch
                self.given += 1
                box.append(b)
                b = None
                t_back = clock()
                yield box.pop()
        except KeyboardInterrupt:
            self.drop()
            raise


_open = weakref.WeakSet()


@atexit.register
def _close_all():
    # Stop the feeder threads before the interpreter goes away (batches
    # still out do not matter now: nothing will read them).
    for f in list(_open):
        try:
            f.held = 0
            f.close()
        except Exception:
            pass
