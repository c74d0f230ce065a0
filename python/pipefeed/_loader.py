"""What pipefeed.torch.Loader and pipefeed.jax.Loader share: the fields
picked from each batch, len(), set_epoch(), state_dict() and
load_state_dict().  A subclass turns a Batch into what it yields
(_convert) and may hold batches it has pulled but not handed out yet
(_queue: a device prefetch); positions count what the caller was given.
"""
import collections
import ctypes

from . import _lib
from ._core import Pipeline, PipefeedError, _raise


class LoaderBase:
    """Batches of a pipefeed spec as tuples of arrays in schema order (a
    lone array when the batch has one field; `fields` picks and orders
    fields by name).  Options are Pipeline's: seed, cpu_budget,
    memory_budget, nondeterministic, rank and world, split, stats.

    device ("cuda", "cuda:N", or "cpu" for the device feed's cpu backend;
    None: host batches from the pool): batches are moved into device
    memory by the C device feed, `depth` slots ahead (None: the device's
    default, 3 on cuda, 16 on cpu), and exported through DLPack with the
    device's type (see _devfeed).  device_options: pf_device_opts fields
    (tf32, cpu_threads, the cpu backend's test_copy_delay_us, ...)."""

    def __init__(self, spec, *, fields=None, device=None, depth=None,
                 device_options=None, **options):
        self.pipeline = Pipeline(spec, **options)
        self.fields = list(fields) if fields else None
        self._len = None
        self._idx = None
        self._queue = collections.deque()  # pulled, not yet yielded
        self._dev = None
        if device is not None:
            from ._devfeed import DeviceMode
            self._dev = DeviceMode(self, device, depth, device_options)

    @property
    def device(self):
        """The device batches are fed to ("cuda:0", "cpu"), None for host
        batches."""
        d = self._dev
        return None if d is None else "%s:%d" % (d.dev.kind, d.dev.index) \
            if d.dev.kind == "cuda" else "cpu"

    def feed_stats(self):
        """The device feed's counters (pf_devfeed_stats as a dict: batches,
        bytes, host_wait_ns, stall_host_ns, stall_device_ns, ...), {}
        without a device or before the first batch."""
        d = self._dev
        return {} if d is None or d.feed is None else d.feed.get_stats()

    def _pick(self, b):
        if self._idx is None:
            keys = b.keys()
            if self.fields:
                missing = [f for f in self.fields if f not in keys]
                if missing:
                    raise KeyError("pipefeed: no field %s in the batches (%s)"
                                   % (", ".join(missing), ", ".join(keys)))
                self._idx = [keys.index(f) for f in self.fields]
            else:
                self._idx = list(range(len(keys)))
        return self._idx

    def __len__(self):
        """Batches per epoch: counted by the first whole epoch, or before it
        by a counting pass over a second copy of the pipeline (the shards
        are read and the maps run once; nothing is kept)."""
        if self._len is None:
            if "repeat" in self.pipeline.ops():
                raise TypeError("pipefeed: the spec repeats: no length")
            with Pipeline(self.pipeline.spec, **self.pipeline.options) as q:
                self._len = q.skip_epoch()
        return self._len

    # ---- positions: what the caller was given --------------------------
    def _position(self):
        if self._dev is not None:
            return self._dev.position()
        pos = self.pipeline.position()
        if self._queue:
            # the queued batches are of the epoch in progress (a loop over
            # the loader ends with its epoch): not delivered yet
            pos["delivered"] -= len(self._queue)
            pos["at_end"] = 0
        return pos

    @property
    def next_epoch(self):
        """The epoch the next `for` over the loader delivers from."""
        if self._dev is not None:
            return self._dev.next_epoch()
        pos = self._position()
        return pos["epoch"] + (1 if pos["at_end"] else 0)

    def set_epoch(self, epoch):
        """Make the next `for` deliver epoch `epoch`, for any epoch: exactly
        the batches that epoch gives in an uninterrupted run from the start
        (the DistributedSampler habit; starting at epoch k after a restart
        without a state_dict).  A no-op when `epoch` is the next one.  Back
        to one of the last 16 epochs the iterator began: a restart at that
        epoch's recorded start.  Ahead (or further back): the epochs in
        between are run in C and their batches released unseen, since an
        epoch's order depends on what each op did in the epochs before it
        (a cache that filled, a repeat, a shuffle's carried state); the
        cost is that of running those epochs without the training step."""
        epoch = int(epoch)
        if epoch < 0:
            raise ValueError("pipefeed: set_epoch(%d): epochs count from 0" % epoch)
        p = self.pipeline
        nxt = self.next_epoch
        if epoch == nxt:
            return
        self._queue.clear()
        d = self._dev
        if d is not None:
            # back: the feed's iterator knows where that epoch began; else
            # stop the feed where the caller stands and go on below (the
            # next loop starts a feed there)
            if d.feed is not None and epoch < nxt:
                pos = _lib.pf_iter_pos()
                err = _lib.pf_error()
                rc = _lib.lib.pf_iter_epoch_start(d.feed.it, epoch, 0, ctypes.byref(pos),
                                                  ctypes.byref(err))
                if rc == 0:
                    d.drop()
                    p.set_position(pos)
                    return
            pos = d.position()
            d.drop()
            p.set_position(pos)
        if epoch < nxt and p._it is not None:
            pos = _lib.pf_iter_pos()
            err = _lib.pf_error()
            rc = _lib.lib.pf_iter_epoch_start(p._it, epoch, 0, ctypes.byref(pos),
                                              ctypes.byref(err))
            if rc == 0:
                p.set_position(pos)
                return
            if rc != -9:            # PF_ELIMIT: too far back: run from 0
                _raise(rc, err)
        if epoch < nxt:
            p.set_position(p.start_position())
        p.skip_to_epoch(epoch)

    def state_dict(self):
        """The iterator position (small: counters only) and what it belongs to."""
        return {"spec": self.pipeline.spec, "seed": self.pipeline.options["seed"],
                "position": self._position()}

    def load_state_dict(self, state):
        """Resume at a state_dict's position: the next batches are bit for bit
        those the saved loader would have delivered next."""
        if state.get("spec") != self.pipeline.spec or \
                state.get("seed") != self.pipeline.options["seed"]:
            raise ValueError("pipefeed: state_dict of another pipeline (spec or seed differ)")
        self._queue.clear()
        if self._dev is not None:
            self._dev.drop()
        self.pipeline.set_position(state["position"])

    def close(self):
        """Stop the C threads (the device feed's slots are freed once the
        batches out are back); the position is kept for the next loop."""
        self._queue.clear()
        if self._dev is not None:
            try:
                pos = self._dev.position() if self._dev.feed is not None else None
            except PipefeedError:      # a failed feed: the last position stays
                pos = None
            self._dev.drop()
            if pos is not None:
                self.pipeline.set_position(pos)
        self.pipeline.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
