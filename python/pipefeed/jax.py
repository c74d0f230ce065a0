"""pipefeed.jax.Loader: pipefeed batches as jax.Array, zero-copy on the CPU.

    loader = pipefeed.jax.Loader(
        'shards("fmnist-train-*.pfs") | map(decode_f32, par=auto)'
        ' | shuffle(10000) | batch(64) | prefetch', seed=1, prefetch=2)
    for epoch in range(5):
        loader.set_epoch(epoch)
        for x, y in loader:            # jax.Arrays
            params, opt_state = train_step(params, opt_state, x, y)

Each field becomes a jax.Array through jax.dlpack.from_dlpack (DLPack):
on the CPU it is the batch memory itself, nothing copied, and the batch goes
back to pipefeed's pool when the last array over it is freed.  A single
Field works with jnp.asarray too (Field.__jax_array__, the same path).

device="cuda" (or "cuda:N"; "cpu": the device layer's cpu backend, the
same code path) moves the batches with the C device feed instead (pinned
staging, a copy stream, `depth` slots ahead) and hands them to JAX through
DLPack with that device's type and the stream handshake; `prefetch` and
`sharding` do not apply then.

`sharding` (None, a jax.Device or any jax.sharding.Sharding, or one per
field): when given, each array is jax.device_put there as soon as its batch
is pulled, `prefetch` batches ahead of the loop (flax's
prefetch_to_device habit, without tying it to pmap): device_put is
asynchronous, so the copies to an accelerator overlap the step.  When
None, arrays stay where DLPack put them (the CPU, zero-copy) and
`prefetch` only holds that many converted batches ahead.  The loader's
position (state_dict, set_epoch) counts the batches the loop was given,
not those prefetched.  For several processes, give rank and world (as
jax.process_index() and jax.process_count()); each process then gets its
own part of every epoch, to assemble with
jax.make_array_from_process_local_data.
"""
import jax as _jax
import jax.dlpack as _jdl

from ._loader import LoaderBase


def to_jax(field):
    """One field (a pipefeed Field) as a jax.Array over the same memory (CPU)."""
    return _jdl.from_dlpack(field)


class Loader(LoaderBase):
    """Batches of a pipefeed spec as tuples of jax.Arrays in schema order (a
    lone array when the batch has one field; `fields` picks and orders
    fields by name; as_dict=True yields {name: array}).  prefetch: batches
    converted (and device_put, see `sharding`) ahead of the loop, 0 for
    none.  Options are Pipeline's: seed, cpu_budget, memory_budget,
    nondeterministic, rank and world, split, stats.  len(), set_epoch(k)
    (any k), state_dict() and load_state_dict() as in pipefeed.torch."""

    def __init__(self, spec, *, fields=None, prefetch=2, sharding=None,
                 as_dict=False, **options):
        if prefetch < 0:
            raise ValueError("pipefeed: prefetch must be >= 0, not %r" % (prefetch,))
        if options.get("device") is not None and sharding is not None:
            raise ValueError("pipefeed: give device= (the C device feed) or sharding= "
                             "(device_put), not both")
        super().__init__(spec, fields=fields, **options)
        self.prefetch = int(prefetch)
        self.sharding = sharding
        self.as_dict = as_dict
        self._names = None

    def _shardings(self, n):
        s = self.sharding
        if isinstance(s, (list, tuple)):
            if len(s) != n:
                raise ValueError("pipefeed: %d shardings for %d fields" % (len(s), n))
            return list(s)
        return [s] * n

    def _convert(self, b):
        idx = self._pick(b)
        arrays = [_jdl.from_dlpack(b[i]) for i in idx]
        if self.sharding is not None:
            arrays = [a if s is None else _jax.device_put(a, s)
                      for a, s in zip(arrays, self._shardings(len(arrays)))]
        if self.as_dict:
            if self._names is None:
                keys = b.keys()
                self._names = [keys[i] for i in idx]
            return dict(zip(self._names, arrays))
        return arrays[0] if len(arrays) == 1 else tuple(arrays)

    def _dev_iter(self):
        """device=: the device feed is the prefetch (depth slots): each
        batch's fields through jax.dlpack.from_dlpack, as they come."""
        box = []
        for b in self._dev.batches():
            box.append(self._convert(b))
            b = None
            yield box.pop()

    def __iter__(self):
        if self._dev is not None:
            yield from self._dev_iter()
            return
        p = self.pipeline
        q = self._queue
        start = p.position()
        whole = not q and (start["delivered"] == 0 or start["at_end"])
        n = 0
        if not (q and p._ended):      # else the queue holds the epoch's end
            for b in p:
                q.append(self._convert(b))
                del b
                n += 1
                if len(q) > self.prefetch:
                    yield q.popleft()
        while q:
            yield q.popleft()
        if whole:
            self._len = n
