"""Seeded data order shared by every rank, and each rank's share of a global batch.

Like :class:`torch.utils.data.DistributedSampler` with ``set_epoch``, every rank draws the
same permutation of the dataset for epoch ``e`` from the seed ``(seed, e)``; unlike it,
the permutation is cut into *global* batches (``batch_size`` items per optimiser step,
epochs run into each other so no item is dropped or repeated within an epoch) and each
global batch is split between ranks and gradient-accumulation micro-batches. The result
is that the items and their per-sample random numbers of a step do not depend on how many
processes share the work, which is what makes 2-process training equal 1-process training.

With ``sizes`` (one per item, e.g. atoms per molecule) the permutation is *grouped by size*
(as fairseq's and Hugging Face's ``group_by_length``): it is cut into windows of
``group_window`` global batches, each window is sorted by size and cut into batches, and the
window's batches are shuffled. Every item still appears once per epoch; a batch then holds
items of similar size, so a modality that pads to the largest item of a batch (molecules:
N×N pair features) pads far less.

The state is two integers (epoch, position), saved in training checkpoints.
"""

from __future__ import annotations

import torch


class GlobalBatchOrder:
    """Endless global batches of dataset indices.

    Args:
        n_items: dataset length (> 0).
        batch_size: items per optimiser step over all ranks.
        seed: data-order seed; epoch ``e`` uses ``torch.randperm`` seeded with
            ``seed * 1000003 + e``.
        sizes: optional ``n_items`` sizes: group batches by size (module docstring).
        group_window: global batches per sorting window (with ``sizes``).
    """

    def __init__(self, n_items: int, batch_size: int, seed: int, sizes=None, group_window: int = 32):
        if n_items <= 0:
            raise ValueError("cannot train on an empty dataset")
        self.n, self.batch_size, self.seed = int(n_items), int(batch_size), int(seed)
        self.epoch, self.pos = 0, 0
        self._perm: list[int] | None = None
        if sizes is not None and len(sizes) != self.n:
            raise ValueError(f"sizes has {len(sizes)} entries for {self.n} items")
        if group_window < 1:
            raise ValueError("group_window must be >= 1")
        self.sizes = None if sizes is None else torch.as_tensor([float(v) for v in sizes])
        self.group_window = int(group_window)

    def _perm_for(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1000003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        if self.sizes is None:
            return perm.tolist()
        out: list[int] = []
        span = self.batch_size * self.group_window
        for s in range(0, self.n, span):
            window = perm[s : s + span]
            window = window[torch.sort(self.sizes[window], stable=True).indices]
            batches = list(torch.split(window, self.batch_size))
            for b in torch.randperm(len(batches), generator=g).tolist():
                out += batches[b].tolist()
        return out

    def next(self) -> list[int]:
        """The next ``batch_size`` indices (same list on every rank)."""
        if self._perm is None:
            self._perm = self._perm_for(self.epoch)
        idx: list[int] = []
        while len(idx) < self.batch_size:
            if self.pos >= self.n:
                self.epoch += 1
                self.pos = 0
                self._perm = self._perm_for(self.epoch)
            take = self._perm[self.pos : self.pos + self.batch_size - len(idx)]
            idx += take
            self.pos += len(take)
        return idx

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed, "n_items": self.n}

    def load_state(self, state: dict) -> None:
        if int(state["n_items"]) != self.n:
            raise ValueError(f"checkpoint's data order is for {state['n_items']} items, the dataset has {self.n}")
        self.epoch, self.pos, self.seed = int(state["epoch"]), int(state["pos"]), int(state["seed"])
        self._perm = None


def micro_batch_positions(batch_size: int, world_size: int, accum: int, rank: int, micro: int) -> range:
    """Positions in the global batch that ``rank`` handles in accumulation step ``micro``.

    The global batch is cut into ``world_size * accum`` equal chunks; chunk
    ``micro * world_size + rank`` goes to (rank, micro). ``batch_size`` must divide evenly.
    """
    chunks = world_size * accum
    if batch_size % chunks:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by world_size × grad_accum = {world_size} × {accum}"
        )
    m = batch_size // chunks
    c = micro * world_size + rank
    return range(c * m, (c + 1) * m)
