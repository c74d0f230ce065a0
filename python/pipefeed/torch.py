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
The tensors are made with torch.from_dlpack: no copy; the batch goes back
to pipefeed's pool when the last tensor of it is freed, so keep them only
as long as needed (or .clone() what must outlive the step).
"""
import torch as _torch

from ._core import Pipeline


class Loader:
    """Batches of a pipefeed spec as tuples of tensors in schema order (a
    lone tensor when the batch has one field; `fields` picks and orders
    fields by name).  Options are Pipeline's: seed, cpu_budget,
    memory_budget, nondeterministic, rank and world (the rank's part of
    every epoch, as torch.distributed gives them), split, stats (a stats
    file for pipe-stat)."""

    def __init__(self, spec, *, fields=None, **options):
        self.pipeline = Pipeline(spec, **options)
        self.fields = list(fields) if fields else None
        self._len = None
        self._idx = None

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

    def __iter__(self):
        p = self.pipeline
        start = p.position()
        whole = start["delivered"] == 0 or start["at_end"]
        n = 0
        for b in p:
            idx = self._pick(b)
            out = tuple(_torch.from_dlpack(b[i]) for i in idx)
            del b
            n += 1
            yield out[0] if len(out) == 1 else out
            del out
        if whole:
            self._len = n

    def __len__(self):
        """Batches per epoch: counted by the first whole epoch, or before it
        by a counting pass over a second copy of the pipeline (the shards
        are read and the maps run once; nothing is kept)."""
        if self._len is None:
            if "repeat" in self.pipeline.ops():
                raise TypeError("pipefeed: the spec repeats: no length")
            with Pipeline(self.pipeline.spec, **self.pipeline.options) as q:
                n = 0
                for b in q:
                    b.release()
                    n += 1
            self._len = n
        return self._len

    def set_epoch(self, epoch):
        """Make the next `for` deliver epoch `epoch`.  The epochs follow each
        other by themselves (each is shuffled by the seed and its number), so
        this is for the DistributedSampler habit: a no-op when `epoch` is the
        next one, a rewind to an epoch the iterator has begun (one of the
        last 16), else ValueError (resume from a state_dict instead)."""
        p = self.pipeline
        nxt = p.next_epoch
        if epoch == nxt:
            return
        if p._it is not None and epoch < nxt:
            import ctypes
            from . import _lib
            from ._core import _raise
            pos = _lib.pf_iter_pos()
            err = _lib.pf_error()
            rc = _lib.lib.pf_iter_epoch_start(p._it, epoch, 0, ctypes.byref(pos),
                                              ctypes.byref(err))
            if rc < 0:
                _raise(rc, err)
            p.set_position(pos)
            return
        raise ValueError("pipefeed: set_epoch(%d): the loader's next epoch is %d; "
                         "epochs run in order (load_state_dict resumes elsewhere)"
                         % (epoch, nxt))

    def state_dict(self):
        """The iterator position (small: counters only) and what it belongs to."""
        return {"spec": self.pipeline.spec, "seed": self.pipeline.options["seed"],
                "position": self.pipeline.position()}

    def load_state_dict(self, state):
        """Resume at a state_dict's position: the next batches are bit for bit
        those the saved loader would have delivered next."""
        if state.get("spec") != self.pipeline.spec or \
                state.get("seed") != self.pipeline.options["seed"]:
            raise ValueError("pipefeed: state_dict of another pipeline (spec or seed differ)")
        self.pipeline.set_position(state["position"])

    def close(self):
        self.pipeline.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
