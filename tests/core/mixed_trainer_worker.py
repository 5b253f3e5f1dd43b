"""Helper for the mixed-model trainer test (not a test module): trains the example's
``pointcloud_labelled`` (a state with a continuous and a categorical part) for a few steps and,
on rank 0, writes the network's weights to ``OUT`` and the loss curve to ``OUT.json``.

    python tests/core/mixed_trainer_worker.py OUT          # or under torchrun
"""

from __future__ import annotations

import json
import sys

import torch
from safetensors.torch import save_file

import polydiff
from polydiff.training import TrainConfig, train


def main(out: str) -> int:
    torch.manual_seed(0)  # the same initial weights on every rank and in every run
    model = polydiff.create("pointcloud_labelled", hidden=16, layers=1)
    data = model.modality.load_dataset(size=32, n_points=8, seed=0)
    cfg = TrainConfig(steps=4, batch_size=8, lr=1e-3, progress=False, log_every=1, cond_dropout=0.3, seed=7)
    res = train(model, data, cfg)
    if res.rank == 0:
        save_file({k: v.contiguous() for k, v in model.network.state_dict().items()}, out)
        with open(out + ".json", "w") as f:
            json.dump({"losses": res.losses, "world_size": res.world_size}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
