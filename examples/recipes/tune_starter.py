"""Tune a starter's σ̃ grids for its card sampler and score them against the default grid.

    OMP_NUM_THREADS=1 .venv/bin/python examples/recipes/tune_starter.py image-mnist --nfe 4,10,20 \\
        --n-calib 32 --max-evals 100 --out runs/tune/image-mnist.json [--write]

Tunes with :func:`polydiff.samplers.tuning.tune_model` (calibration items from seeds 10,000+,
the card's conditions and guidance), then samples the card's check (its ``n`` and seed 0..)
at each NFE with the default Karras grid and with the tuned grid, and once at the card's NFE
with the card's grid, and evaluates the card's metrics; samples/s are wall-clock sampling
rates on this machine (not a test). ``--write`` stores the grids in the shipped starter's
config.json (content hash recomputed; weights untouched). A starter whose card sampler is
stochastic (molecule-qm9: dpmpp_2m_sde, protein-domains: euler_ancestral) is refused by the
tuner: step schedules are tuned for deterministic samplers. For those, ``--metric NAME`` tunes a
grid for a (stochastic) ``--sampler`` by sample quality instead
(:func:`polydiff.samplers.tuning.tune_by_metric`: Karras ρ × σ̃_min searched on calibration
seeds 10,000+ with the registered metric), e.g.::

    OMP_NUM_THREADS=1 .venv/bin/python examples/recipes/tune_starter.py protein-domains --nfe 10 \
        --sampler dpmpp_2m_sde --metric protein_ca_ca_validity --out runs/tune/protein.json --write
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path

import torch


def main(argv=None) -> int:
    import polydiff
    from polydiff.samplers import tuning
    from polydiff.starters import starter_path

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("starter")
    p.add_argument("--nfe", default="4,10,20")
    p.add_argument("--n-calib", type=int, default=32)
    p.add_argument("--max-evals", type=int, default=100)
    p.add_argument("--out", required=True, help="JSON file for the table")
    p.add_argument("--write", action="store_true", help="store the grids in the shipped starter")
    p.add_argument(
        "--sampler",
        default=None,
        help="a deterministic sampler to tune (default: the card's; needed where the card's sampler is stochastic)",
    )
    p.add_argument("--metric", default=None, help="tune by this registered metric on calibration samples (any sampler)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    model = polydiff.load(f"starter:{a.starter}")
    check, card = model.extra["starter"]["check"], model.extra["sample_defaults"]
    nfes = [int(v) for v in a.nfe.split(",")]
    t0 = time.perf_counter()
    sampler = a.sampler or card["sampler"]
    if a.metric:
        info = {str(k): tuning.tune_by_metric(model, sampler, k, a.metric, n=a.n_calib, log=print) for k in nfes}
    else:
        info = tuning.tune_model(model, sampler, nfes, n=a.n_calib, max_evals=a.max_evals, log=print)
    tune_s = time.perf_counter() - t0

    from polydiff.model import _SAMPLE_KEYWORDS
    from polydiff.samplers import get_sampler

    # another sampler keeps the card's general keywords and those of its options it also takes
    takes = (  # a mixed state's samplers ("ancestral", "euler") are not registered σ̃ samplers
        set(inspect.signature(get_sampler(sampler).fn).parameters) - {"space", "rng", "callback"}
        if model.parts is None
        else set()
    )
    general = {k: v for k, v in card.items() if k in _SAMPLE_KEYWORDS or k in takes}

    def score(**kw) -> dict:
        t = time.perf_counter()
        other = kw.get("sampler", card["sampler"]) != card["sampler"]
        saved = model.extra["sample_defaults"]
        model.extra["sample_defaults"] = general if other else saved
        try:
            samples = model.sample(int(check["n"]), seed=int(check["seed"]), **kw)
        finally:
            model.extra["sample_defaults"] = saved
        dt = time.perf_counter() - t
        metrics = model.modality.evaluate(
            samples, reference=check.get("reference"), metrics=list(check["metrics"]), **(check.get("options") or {})
        )
        return {**metrics, "samples_per_s": int(check["n"]) / dt}

    default_grid = "uniform" if model.parts is not None else "karras"  # a mixed state's time grid
    rows = [
        {"nfe": k, "sampler": sampler, "grid": g, **score(sampler=sampler, nfe=k, grid=g)}
        for k in nfes
        for g in (default_grid, "tuned")
    ]
    rows.append(
        {"nfe": card["nfe"], "sampler": card["sampler"], "grid": "card", **score(grid=card.get("grid", default_grid))}
    )
    for r in rows:
        print(r)
    out = {
        "starter": a.starter,
        "sampler": sampler,
        "card_sampler": card["sampler"],
        "n": check["n"],
        "seed": check["seed"],
        "calibration": {"n": a.n_calib, "seed": tuning.CALIBRATION_SEED, "max_evals": a.max_evals, "seconds": tune_s},
        "tuned": info,
        "rows": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    if a.write:
        tuning.write_tuned_grids(starter_path(a.starter), tuning.stored_grids(model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
