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

from ._loader import LoaderBase


class Loader(LoaderBase):
    """Batches of a pipefeed spec as tuples of tensors in schema order (a
    lone tensor when the batch has one field; `fields` picks and orders
    fields by name).  Options are Pipeline's: seed, cpu_budget,
    memory_budget, nondeterministic, rank and world (the rank's part of
    every epoch, as torch.distributed gives them), split, stats (a stats
    file for pipe-stat).  len(), set_epoch(k) (any k: see LoaderBase),
    state_dict() and load_state_dict() as a DataLoader with a
    DistributedSampler has them."""

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
