"""Pipeline, Batch and Field: the C pipeline behind a Python iterator.

Batches are not copied: a Field exposes the batch's memory through
__array_interface__ (numpy.asarray) and __dlpack__ (torch.from_dlpack,
jax.dlpack, numpy.from_dlpack).  A batch goes back to the C pool
(pf_elem_release) when release() is called, when its `with` block ends, or
when the last reference to it is dropped: the Batch object itself, or any
Field, numpy array or DLPack tensor made from it.
"""
import atexit
import ctypes
import sys
import time
import weakref

from . import _lib
from ._lib import lib
from . import _dlpack
from . import _pymap


class PipefeedError(RuntimeError):
    """An error of the C library: .code (negative PF_E* value), .name
    ("PF_ECORRUPT") and the C message (naming the op, file and offset)."""

    def __init__(self, code, message):
        self.code = code
        self.name = _lib.PF_ERRNO.get(code, "PF_E?")
        self.message = message
        super().__init__("%s: %s" % (self.name, message))


class SpecError(PipefeedError, ValueError):
    """The spec string does not parse or build (PF_ESPEC, PF_EINVAL at build)."""


class CorruptError(PipefeedError):
    """Damaged data: PF_ECORRUPT or PF_ETRUNC (the message names the file)."""


def _raise(rc, err, spec=False):
    msg = err.msg.decode("utf-8", "replace")
    if rc in (-5, -6):
        raise CorruptError(rc, msg)
    if spec:
        raise SpecError(rc, msg)
    raise PipefeedError(rc, msg)


class _Handle:
    """Owns the pf_pipeline: freed when the Pipeline object and every batch
    of it are gone (a batch's schema points into the pipeline)."""

    def __init__(self, ptr):
        self.ptr = ptr
        self.fields = {}   # schema address -> parsed fields
        self.held = 0      # batches handed out and not yet released

    def __del__(self, _finalizing=sys.is_finalizing):
        # At interpreter exit objects die in any order (a batch after its
        # pipeline): free nothing then; the C threads were stopped by the
        # atexit hook and the process is ending.
        if self.ptr is not None and not _finalizing():
            lib.pf_pipeline_free(self.ptr)
            self.ptr = None

    def schema(self, sp):
        addr = ctypes.cast(sp, ctypes.c_void_p).value
        f = self.fields.get(addr)
        if f is None:
            s = sp.contents
            f = []
            for i in range(s.nfields):
                fd = s.fields[i]
                f.append((fd.name.decode(), fd.dtype, list(fd.dims[:fd.ndim])))
            self.fields[addr] = f
        return f


class Field:
    """One field of a batch, without a copy: [batch, dims...] (or dims for
    an element), the "?" dimension at the batch's var_len.  Holds the batch."""

    __slots__ = ("batch", "name", "ptr", "dtype", "shape")

    def __init__(self, batch, name, ptr, dtype, shape):
        self.batch = batch
        self.name = name
        self.ptr = ptr
        self.dtype = dtype
        self.shape = tuple(shape)

    @property
    def __array_interface__(self):
        self.batch._check()
        return {"version": 3, "shape": self.shape,
                "typestr": _lib.DTYPES[self.dtype][1],
                "data": (self.ptr or 0, not self.batch._writable)}

    def __dlpack__(self, stream=None, **kw):
        self.batch._check()
        return _dlpack.to_capsule(self.batch, self.ptr, _lib.DTYPES[self.dtype][2],
                                  self.shape)

    def __dlpack_device__(self):
        return (_dlpack.KDL_CPU, 0)

    def __jax_array__(self):
        # jnp.asarray(field): the DLPack path (zero-copy), not a numpy copy
        import jax.dlpack
        return jax.dlpack.from_dlpack(self)

    @property
    def nbytes(self):
        n = 1
        for d in self.shape:
            n *= d
        return n * int(_lib.DTYPES[self.dtype][1][2:])

    def __repr__(self):
        return "<pipefeed.Field %s %s%s at 0x%x>" % (
            self.name, _lib.DTYPES[self.dtype][0], list(self.shape), self.ptr or 0)


class Releasable:
    """What a batch holding pooled memory shares: release() on leaving a
    with-block and on garbage collection (not at interpreter exit, when
    its pipeline or feed may be gone already: see _Handle).  The class
    defines release(), idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self, _finalizing=sys.is_finalizing):
        if _finalizing():
            return
        try:
            self.release()
        except Exception:
            pass


class Batch(Releasable):
    """A batch (or element) from pf_iter_next: a read-only mapping of field
    name -> Field, in schema order.  `size` is the batch size (0 for an
    element), `id` the first sample's id, `address`/`nbytes` the buffer."""

    def __init__(self, handle, elem):
        self._h = handle
        self._e = elem
        self._released = False
        self.size = elem.batch
        self.id = elem.id
        self._writable = elem.batch > 0
        self._fields = None
        handle.held += 1

    def _check(self):
        if self._released:
            raise ValueError("pipefeed: batch used after release()")

    @property
    def address(self):
        return self._e.buf

    @property
    def nbytes(self):
        return self._e.nbytes

    def fields(self):
        """The Fields in schema order (new objects each call: a Field holds
        its batch, the batch holds no Field, so no reference cycle keeps a
        batch from its pool until the garbage collector runs)."""
        self._check()
        if self._fields is None:
            e = self._e
            out = []
            for i, (name, dt, dims) in enumerate(self._h.schema(e.schema)):
                shape = [e.var_len[i] if d == _lib.PF_DIM_VAR else d for d in dims]
                if e.batch:
                    shape.insert(0, e.batch)
                n = 1
                for d in shape:
                    n *= d
                if n != e.nitems[i]:        # not a shape we can state: flat
                    shape = [e.nitems[i]]
                out.append((name, e.data[i], dt, shape))
            self._fields = out
        return [Field(self, *f) for f in self._fields]

    def lengths(self, key):
        """padded_batch: the 2 x B int32 lengths of a variable field (row k
        holds lengths[0][k] items; lengths[1][k] before the cut), or None."""
        i = key if isinstance(key, int) else self.keys().index(key)
        p = self._e.lengths[i]
        return Field(self, "lengths", p, 6, (2, self.size)) if p else None

    def keys(self):
        self.fields()
        return [f[0] for f in self._fields]

    def __getitem__(self, key):
        self.fields()
        fs = self._fields
        if isinstance(key, int):
            return Field(self, *fs[key])
        for f in fs:
            if f[0] == key:
                return Field(self, *f)
        raise KeyError(key)

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def items(self):
        return [(f.name, f) for f in self.fields()]

    def values(self):
        return list(self.fields())

    def release(self):
        """Give the buffer back to the pool now.  Arrays made from it must
        not be used after this (tensors from __dlpack__ keep the batch
        object alive, but not a released buffer).  Idempotent."""
        if not self._released:
            self._released = True
            self._fields = None
            self._h.held -= 1
            lib.pf_elem_release(ctypes.byref(self._e))

    def __repr__(self):
        return "<pipefeed.Batch of %d at 0x%x: %s>" % (
            self.size, self._e.buf or 0, ", ".join(self.keys()) if not self._released else "released")


_open = weakref.WeakSet()


@atexit.register
def _close_all():
    # Stop the C threads before the interpreter goes away.
    for p in list(_open):
        try:
            p.close()
        except Exception:
            pass


class Pipeline:
    """A pipeline from a spec string (pipe-train --pipeline's language, see
    doc/PIPELINE.md), with the options of pf_options:

        seed, cpu_budget (worker threads; 0 = online CPUs), memory_budget
        (bytes; 0 = 1 GiB), nondeterministic; rank and world (this process's
        part of every epoch when world > 1, e.g. torch.distributed's
        get_rank() and get_world_size(): all ranks' parts hold every record
        once) and split ("auto": whole files per rank when there are at
        least `world` files, else records; "files"; "records"); stats (a
        path: the stats file pipe-stat reads, with this loop's wait and
        compute per step).

    Iterating gives the batches of one epoch (the rest of it, after a
    `break`); the next loop runs the next epoch.  close() (or `with`, or
    garbage collection) stops the C threads; batches stay valid.
    """

    _SPLITS = {"auto": 0, "files": 1, "records": 2}

    def __init__(self, spec, *, seed=0, cpu_budget=0, memory_budget=0,
                 nondeterministic=False, rank=0, world=1, split="auto", stats=None):
        self.spec = spec
        if split not in self._SPLITS:
            raise ValueError("pipefeed: split must be auto, files or records, not %r" % (split,))
        if world < 1 or not 0 <= rank < world:
            raise ValueError("pipefeed: need 0 <= rank < world (rank %d, world %d)" % (rank, world))
        self.options = dict(seed=seed, cpu_budget=cpu_budget,
                            memory_budget=memory_budget,
                            nondeterministic=nondeterministic,
                            rank=rank, world=world, split=split)
        opts = _lib.pf_options(memory_budget=memory_budget, cpu_budget=cpu_budget,
                               seed=seed, nondeterministic=1 if nondeterministic else 0,
                               world=world, rank=rank, split=self._SPLITS[split])
        err = _lib.pf_error()
        p = ctypes.c_void_p()
        rc = lib.pf_pipeline_new(ctypes.byref(p), ctypes.byref(opts), ctypes.byref(err))
        if rc < 0:
            _raise(rc, err)
        self._h = _Handle(p)
        rc = lib.pf_spec_apply(p, spec.encode(), ctypes.byref(err))
        if rc < 0:
            _raise(rc, err, spec=True)
        self._it = None
        self._err = _lib.pf_error()  # next()'s, read only when it fails
        self._warned = False       # Python maps: warned once
        self._pending = None       # pf_iter_pos for the next start
        self._ended = False        # the last call returned PF_END
        self._stats_path = stats
        self._stats = None
        self._t_back = None        # when the last batch went to the caller
        self.stall_ns = 0          # time this loop waited in next()
        self.compute_ns = 0        # time between batches
        _open.add(self)

    # ---- the C iterator ------------------------------------------------
    def _start(self):
        if self._it is not None:
            return
        err = _lib.pf_error()
        it = ctypes.c_void_p()
        if self._pending is not None:
            rc = lib.pf_iter_new_at(ctypes.byref(it), self._h.ptr,
                                    ctypes.byref(self._pending), ctypes.byref(err))
            ended = bool(self._pending.at_end)
        else:
            rc = lib.pf_iter_new(ctypes.byref(it), self._h.ptr, ctypes.byref(err))
            ended = False
        if rc < 0:
            _raise(rc, err)
        self._it = it
        self._pending = None
        self._ended = ended
        if self._stats_path:
            st = ctypes.c_void_p()
            so = _lib.pf_stats_opts(label=("python: " + self.spec).encode()[:255])
            rc = lib.pf_stats_create(ctypes.byref(st), str(self._stats_path).encode(),
                                     ctypes.byref(so), ctypes.byref(err))
            if rc == 0:
                rc = lib.pf_stats_attach(st, it, ctypes.byref(err))
                self._stats = st
            if rc < 0:
                self.close()
                _raise(rc, err)
        if not self._warned:
            self._warned = True
            _pymap.warn(self.spec, self._stats)

    def next(self):
        """The next Batch, or None at the end of the epoch (the call after
        that begins the next epoch)."""
        if self._it is None:
            self._start()
        t0 = time.perf_counter_ns()
        if self._t_back is not None:
            self.compute_ns += t0 - self._t_back
        e = _lib.pf_elem()
        err = self._err
        try:
            rc = _iter_next(self._it, e, err)   # (argtypes: passed by reference)
        except BaseException:
            self.close()
            raise
        t1 = time.perf_counter_ns()
        self.stall_ns += t1 - t0
        if self._stats is not None and self._t_back is not None:
            lib.pf_stats_step(self._stats, t1 - t0, t0 - self._t_back, 0, e.batch)
        self._t_back = None
        if rc == _lib.PF_END:
            self._ended = True
            return None
        if rc < 0:
            _raise(rc, err)
        self._ended = False
        b = Batch(self._h, e)
        self._t_back = time.perf_counter_ns()
        return b

    def __iter__(self):
        try:
            while True:
                b = self.next()
                if b is None:
                    return
                yield b
                del b
        except KeyboardInterrupt:
            self.close()
            raise

    def close(self):
        """Stop the C threads and free the iterator (the position is kept:
        the next iteration resumes where this one stood).  Idempotent."""
        if self._it is not None:
            try:
                pos = self.position()
                self._pending = _pos_struct(pos)
            except PipefeedError:
                self._pending = None
            if self._stats is not None:
                lib.pf_stats_detach(self._stats)
                lib.pf_stats_close(self._stats, None)
                self._stats = None
            lib.pf_iter_free(self._it)
            self._it = None
            self._t_back = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ---- positions -------------------------------------------------------
    def position(self):
        """Where the iterator stands (pf_iter_position) as a dict of ints:
        epoch, delivered, at_end, order, op_epoch (a list)."""
        if self._it is None:
            if self._pending is not None:
                return _pos_dict(self._pending)
            n = lib.pf_pipeline_nops(self._h.ptr)
            return {"epoch": 0, "delivered": 0, "at_end": 0, "order": POS_ORDER,
                    "op_epoch": [0] * n}
        pos = _lib.pf_iter_pos()
        err = _lib.pf_error()
        rc = lib.pf_iter_position(self._it, ctypes.byref(pos), ctypes.byref(err))
        if rc < 0:
            _raise(rc, err)
        return _pos_dict(pos)

    def set_position(self, pos):
        """Resume at a position from position(): the iterator is restarted
        there (pf_iter_new_at) at the next iteration, and delivers the same
        batches, bit for bit, as the one the position was taken from."""
        st = _pos_struct(pos)
        if st.nops != lib.pf_pipeline_nops(self._h.ptr):
            raise ValueError("pipefeed: position of a pipeline with %d ops, this one has %d"
                             % (st.nops, lib.pf_pipeline_nops(self._h.ptr)))
        self.close()
        self._pending = st

    def start_position(self):
        """The position of a new pipeline: epoch 0 before its first element."""
        n = lib.pf_pipeline_nops(self._h.ptr)
        return {"epoch": 0, "delivered": 0, "at_end": 0, "order": POS_ORDER,
                "op_epoch": [0] * n}

    def skip_epoch(self):
        """Run the rest of the epoch in progress (or the next one, at an
        epoch's end) and release its elements unseen; returns how many
        there were.  No stats steps are recorded for them."""
        self._start()
        e = _lib.pf_elem()
        err = _lib.pf_error()
        ref_e, ref_err = ctypes.byref(e), ctypes.byref(err)
        nxt, release = lib.pf_iter_next, lib.pf_elem_release
        it = self._it
        self._t_back = None
        n = 0
        try:
            while True:
                rc = nxt(it, ref_e, ref_err)
                if rc == _lib.PF_END:
                    self._ended = True
                    return n
                if rc < 0:
                    _raise(rc, err)
                self._ended = False
                release(ref_e)
                n += 1
        except KeyboardInterrupt:
            self.close()
            raise

    def skip_to_epoch(self, epoch):
        """Run (and release unseen) what is left before epoch `epoch`, so
        that the next iteration delivers epoch `epoch` exactly as an
        uninterrupted run does.  A no-op when it is the next epoch;
        ValueError when the iterator is past it."""
        nxt = self.next_epoch
        if epoch < nxt:
            raise ValueError("pipefeed: epoch %d is behind the next one (%d)" % (epoch, nxt))
        if epoch > nxt and "repeat" in self.ops():
            raise ValueError("pipefeed: the spec repeats: its epochs do not end")
        while nxt < epoch:
            self.skip_epoch()
            nxt += 1

    @property
    def next_epoch(self):
        """The epoch the next iteration delivers from."""
        p = self.position()
        return p["epoch"] + (1 if p["at_end"] else 0)

    def ops(self):
        """The spec's op names, in order."""
        s = ctypes.c_void_p()
        err = _lib.pf_error()
        rc = lib.pf_spec_parse(ctypes.byref(s), self.spec.encode(), ctypes.byref(err))
        if rc < 0:
            _raise(rc, err, spec=True)
        try:
            return [lib.pf_spec_stage_op(s, i).decode()
                    for i in range(lib.pf_spec_nstages(s))]
        finally:
            lib.pf_spec_free(s)

    # ---- introspection -------------------------------------------------
    def describe(self):
        """The optimized plan ("shards -> map+batch(64) -> prefetch(4)")."""
        self._start()
        buf = ctypes.create_string_buffer(1024)
        lib.pf_iter_describe(self._it, buf, 1024)
        return buf.value.decode()

    def stats(self):
        """Per-stage counters of the running plan (pf_iter_stats), as dicts."""
        if self._it is None:
            return []
        out = []
        for i in range(lib.pf_iter_nstages(self._it)):
            s = _lib.pf_op_stats()
            if lib.pf_iter_stats(self._it, i, ctypes.byref(s)) == 0:
                d = {k: getattr(s, k) for k, _ in _lib.pf_op_stats._fields_}
                d["name"] = d["name"].decode() if d["name"] else ""
                out.append(d)
        return out

    def held(self):
        """Batches of this pipeline handed out and not released yet (alive
        in a Batch, or in an array or tensor made from one)."""
        return self._h.held

    def stall(self):
        """(ns pf_iter_next waited for input, ns since the iterator started)."""
        if self._it is None:
            return (0, 0)
        w, t = ctypes.c_uint64(), ctypes.c_uint64()
        lib.pf_iter_stall(self._it, ctypes.byref(w), ctypes.byref(t))
        return (w.value, t.value)


POS_ORDER = 2  # PF_POS_ORDER of pipefeed.h (t6001 checks it)
_iter_next = lib.pf_iter_next


def _pos_dict(p):
    return {"epoch": p.epoch, "delivered": p.delivered, "at_end": p.at_end,
            "order": p.order, "op_epoch": list(p.op_epoch[:p.nops])}


def _pos_struct(d):
    if isinstance(d, _lib.pf_iter_pos):
        return d
    p = _lib.pf_iter_pos()
    ops = list(d["op_epoch"])
    if len(ops) > _lib.PF_POS_MAX_OPS:
        raise ValueError("pipefeed: position with %d ops (at most %d)"
                         % (len(ops), _lib.PF_POS_MAX_OPS))
    p.epoch = int(d["epoch"])
    p.delivered = int(d["delivered"])
    p.at_end = int(d["at_end"])
    p.order = int(d.get("order", POS_ORDER))
    p.nops = len(ops)
    for i, v in enumerate(ops):
        p.op_epoch[i] = int(v)
    return p
