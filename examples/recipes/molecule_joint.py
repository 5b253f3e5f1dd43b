"""CPU recipe: the bond-aware joint molecule model (issue 18) on QM9 with hydrogens.

Trains ``molecule_joint`` (positions + atom types + formal charges + kekulé bond orders as one
mixed state; network ``egnn_joint``, an EGNN with edge updates) on the same seeded QM9
training subset as the EDM-class recipe ``molecule.py``, with per-part loss weights
(``--weights``, MiDi's λ: positions 3, atom types 0.4, charges 1, bonds 2; Vignac et al.
2023 §4), ELBO loss for the categorical parts, batches grouped by atom count, EMA with
warm-up and a cosine learning-rate decay over a wall-clock budget, then samples molecules
(ancestral sampler, ``--sample-steps`` 100 on the ``power:3`` time grid, the last step taking
the most probable atoms, charges and bonds; on an 8-minute model, 200 samples: bond-aware
molecule stability 0.575 and validity 0.835 against 0.35 and 0.69 with 100 uniform steps,
0.35 / 0.71 with 20 steps on ``power:3``) and scores them with both protocols:
EDM's distance-based stability (bonds inferred from the geometry) and the bond-aware one
(the *predicted* bonds and charges: stability, validity, connected validity, uniqueness), and
the chemistry checks against QM9 (ring-size total variation, 3-ring, O–O and N–N single-bond
share differences).

Side by side with the EDM-class recipe (issue 18's first acceptance point: same data subset,
same budget, one thread each, at the same time)::

    OMP_NUM_THREADS=1 .venv/bin/python examples/recipes/molecule.py --threads 1 --minutes 16 \\
        --n-samples 500 --out runs/side_by_side/edm &
    OMP_NUM_THREADS=1 .venv/bin/python examples/recipes/molecule_joint.py --threads 1 --minutes 16 \\
        --n-samples 500 --out runs/side_by_side/joint

Measured so on 2026-12-02 (2-core machine, both recipes at once, 500 samples each;
``examples/recipes/results/molecule_side_by_side/``): in 16 minutes the EDM-class recipe takes
2,045 steps of 64 and the joint one 1,067 (one step costs twice as much: N×N edge features),
and the joint model is the *worse* of the two at this budget — EDM-protocol molecule
stability 0.002 against 0.004 (atom 0.608 / 0.686), bond-aware molecule stability 0.060,
validity 0.452, connected validity 0.188, ring-size TV 0.371, 274 of 500 failing
sanitisation. The joint model needs more training than 16 CPU minutes: the starter (70
minutes on the full training split) reaches the numbers on its card. Issue 18's side-by-side
targets (≥ 3× EDM-class molecule stability, bond-aware molecule stability ≥ 0.70, connected
validity ≥ 0.85, ring TV ≤ 0.10 at 16 minutes) are not met.

Again on 2026-12-03 with batches of 32 (the starter's) and the starter's 15-call restart grid
(``--batch-size 32 --sample-steps 15 --grid power:3+restart:0.3x2,0.2x2,0.15x2,0.1x2,0.05x2``;
the EDM-class command unchanged; both at once on an otherwise idle machine, 500 samples each;
``examples/recipes/results/molecule_side_by_side_restarts/``): EDM-class 3,034 steps of 64,
EDM-protocol atom / molecule stability 0.657 / 0.000 (0 of 500), validity 0.666, connected
0.250; joint 3,285 steps of 32, EDM-protocol 0.882 / **0.334** (167 of 500), bond-aware atom /
molecule stability 0.986 / **0.766**, validity 0.830, connected validity 0.772, ring-size TV
0.250, 85 of 500 failing sanitisation. The same joint checkpoint with 100 plain steps on
``power:3`` (``benchmarks/molecule_card.py --checkpoint … --n 500 --kwargs '{"nfe": 100, "grid":
"power:3"}'``): EDM 0.839 / 0.192, bond-aware 0.982 / 0.714, validity 0.828, connected 0.688.
Met now: EDM-protocol molecule stability ≥ 3 × the EDM-class recipe's (0.334 against 0.000)
and bond-aware molecule stability ≥ 0.70; still short: connected validity (0.77 < 0.85) and
ring-size TV (0.25 > 0.10: too many 3-membered rings).

With formula conditioning (``--formula``: each molecule's formula is drawn from the training
formulas and gives the atom types; the model generates positions, charges and bonds — see
:mod:`polydiff.plugins.molecule.joint`), side by side again on 2026-12-03 (the same two
commands, the joint one with ``--formula --batch-size 32 --sample-steps 15 --grid
power:3+restart:0.3x2,0.2x2,0.15x2,0.1x2,0.05x2``; both at once, 500 samples each;
``examples/recipes/results/molecule_side_by_side_formula/``; the EDM-class run's last three
training minutes shared the CPU with two evaluation jobs): EDM-class 2,965 steps of 64,
EDM-protocol atom / molecule stability 0.682 / 0.004 (2 of 500), validity 0.706, connected
0.310; joint 3,432 steps of 32, EDM-protocol 0.904 / **0.448** (224 of 500), bond-aware atom /
molecule stability 0.991 / **0.928**, validity **0.966** (17 of 500 fail sanitisation),
connected validity 0.794, uniqueness 0.996, ring-size TV 0.325. The formula fixes the
composition — 412 of 483 valid molecules have 9 heavy atoms (QM9: 83 %; without ``--formula``
133 of 415, and 48 % had 10–13) — and with it validity and stability, but not the rings: 0.60
of the rings are 3-membered (QM9 0.28), 141 molecules have fused 3-rings (QM9 test: none), and
their edges (median 1.41 / 1.47 / 1.52 Å) are real triangles in the generated geometry, not
bonds over long distances; the disconnected 17 % split off small pieces (water, methane,
formaldehyde, H₂). The same checkpoint with 100 plain steps on ``power:3`` (``molecule_card.py``):
validity 0.960, connected 0.788, ring-size TV 0.248. Two schedule variants with ``--formula``,
run as a pair right after (16 minutes each, both at once): positions on ``--schedule vp_linear``
(noisier than the bonds at mid t: the graph first, then the geometry) 3,769 steps, validity
0.954, connected 0.696, ring-size TV 0.277; categorical parts on ``--keep-schedule linear``
(the geometry first) 4,036 steps, validity 0.920, connected 0.826, ring-size TV 0.388 — neither
removes the triangles; nor do a heavier position loss (``--weights pos=8,charge=1,bond=2``: 0.914 /
0.762 / 0.334) or cross-entropy for the categorical parts (``--categorical-loss ce``: 0.894 /
0.680 / 0.373), another pair run the same way. Still short at 16 minutes: connected validity ≥ 0.85 and ring-size
TV ≤ 0.10.

Triangle edge updates (``--triangle-every k``: :class:`~polydiff.plugins.molecule.joint_network.TriangleUpdate`,
AlphaFold 2's triangle multiplicative update, after the edge update of every k-th block) give
the bond state of a pair i–j the bonds of i and j to every third atom — the 3-body term that a
pairwise EGNN lacks when it closes a triangle between two atoms that share a neighbour, and
that keeps a kekulé pattern consistent along a ring. Measured on 2026-12-03 with ``--formula``
(16 minutes, one thread, 500 samples, 15-call grid as above): in every block (2,266 steps, one
step costs 1.4×) ring-size TV 0.087 and 3-ring share within 0.014 of QM9's, but validity 0.760;
every second block (2,797 steps) TV 0.029, validity 0.666; every third (3,173 steps) TV 0.083,
validity 0.896, connected 0.834 — and with 30 calls
(``--sample-steps 30 --grid power:3+restart:0.5x2,0.4x2,0.3x3,0.2x3,0.15x3,0.1x3,0.05x3``, the same
checkpoint) validity 0.928, connected 0.876, TV 0.068. Then side by side with the EDM-class
recipe, twice (both at once each time, the EDM-class command unchanged;
``examples/recipes/results/molecule_side_by_side_triangle/``, the first run's metrics as
``bond2_*``):

    OMP_NUM_THREADS=1 .venv/bin/python examples/recipes/molecule_joint.py --threads 1 --minutes 16 \\
        --n-samples 500 --batch-size 32 --formula --triangle-every 3 --weights pos=3,charge=1,bond=4 \\
        --sample-steps 30 --grid power:3+restart:0.5x2,0.4x2,0.3x3,0.2x3,0.15x3,0.1x3,0.05x3 \\
        --out runs/side_by_side/joint

| | EDM-class (first run; second) | joint, bond weight 2 (first) | joint, bond weight 4 (second) |
|---|---|---|---|
| steps | 2,965; 3,516 of 64 | 3,167 of 32 | 3,605 of 32 |
| EDM atom / molecule stability | 0.663 / 0.000; 0.706 / 0.004 | 0.917 / 0.456 | 0.920 / **0.494** |
| bond-aware atom / molecule stability | – | 0.980 / 0.824 | 0.986 / **0.876** |
| validity / connected validity | 0.610 / 0.264; 0.646 / 0.312 | 0.898 / 0.844 | 0.914 / **0.860** |
| uniqueness | 1.0 | 1.0 | 1.0 |
| ring-size TV to QM9 (3-ring share − QM9's) | – | 0.063 (0.057) | **0.083** (0.067) |

The first run (bond loss weight 2, MiDi's) missed connected validity by 3 molecules; its
checkpoint on other seeds (``benchmarks/molecule_card.py --seed 7``): 0.860 with the 30-call
grid, 0.858 with 50 calls, 0.846 / 0.808 at categorical temperature 0.5 / 0.8. Its failures
were bond patterns: every one of the 51 molecules that failed sanitisation had exactly two atoms
off valence by ±1, two or three bonds apart, mostly in rings (a double bond one position off:
kekulé structures broken by per-pair draws), and 27 of the 449 valid ones split off a small
piece (a lone H in 7, HCN in 6, methane in 5) — so the second run doubled the bond loss weight.
Its checkpoint on seed 7: connected validity 0.860, validity 0.924, ring-size TV 0.070
(``joint_seed7_metrics.json``): 0.860 on 1,000 molecules over both seeds, ±0.011 (one standard
error). Median MMFF94 relaxation 44 kcal/mol against QM9's 4 (rough geometry; the starter: 34).

Continuing a saved model (``--init-from``: its weights, EMA, architecture and modality settings,
a fresh optimiser and cosine schedule; ``training_info`` sums both runs), e.g. a second stage
for the starter::

    OMP_NUM_THREADS=1 .venv/bin/python examples/recipes/molecule_joint.py --threads 1 \\
        --init-from core/starter_models/molecule-qm9 --minutes 55 --lr 3e-4 --batch-size 32 --n-train 0 \\
        --n-samples 1000 --checkpoint-every 2000 --out runs/starter_joint2

Measured so on 2026-12-03 (7,979 more steps of 32 in 55 minutes, one contended thread; 1,000
samples at the card's settings, seed 1, against the shipped starter on the same seeds): EDM
atom stability 0.946 against 0.945, bond-aware validity 0.910 against 0.916, connected validity
0.853 against 0.879 — no gain, so the starter was not replaced.

Writes into ``--out``: ``checkpoint/``, ``samples.sdf`` (with the predicted bonds),
``samples.png`` (16 molecules drawn from their predicted bonds), ``ring_sizes.png`` (ring-size
shares of the valid samples against QM9's test molecules), ``training_curve.png``,
``metrics.json`` (settings, timings, metrics, the raw chemistry numbers) and ``train_log.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/molecule_joint")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--edge-dim", type=int, default=32)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument(
        "--triangle-every",
        type=int,
        default=0,
        help="triangle multiplicative edge updates in every k-th block, counted back from the last (0: none)",
    )
    p.add_argument("--process", default="marginal", choices=["marginal", "masked"])
    p.add_argument("--schedule", default="cosine", help="noise schedule of the positions (a registered schedule)")
    p.add_argument(
        "--keep-schedule", default="cosine", choices=["cosine", "linear"], help="keep schedule of the categorical parts"
    )
    p.add_argument("--weights", default="pos=3,atom=0.4,charge=1,bond=2", help="per-part loss weights")
    p.add_argument("--steps", type=int, default=100000, help="at most this many optimiser steps")
    p.add_argument("--minutes", type=float, default=16.0, help="training budget; the cosine decay ends with it")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--group-by-size", type=int, default=32, help="batches of similar atom counts, sorted in windows of this many"
    )
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument(
        "--categorical-loss", default="elbo", choices=["elbo", "ce"], help="loss of the atom/charge/bond parts"
    )
    p.add_argument(
        "--formula",
        action="store_true",
        help="condition on the molecular formula (element counts), drawn from the training formulas when sampling",
    )
    p.add_argument("--n-train", type=int, default=20000, help="seeded QM9 training subset (as molecule.py)")
    p.add_argument("--n-samples", type=int, default=500)
    p.add_argument("--sample-steps", type=int, default=100, help="ancestral sampler steps")
    p.add_argument(
        "--grid",
        default="power:3",
        help="sampler time grid: uniform, or power:<rho> (steps shrinking towards t = 0), either with restarts "
        "'+restart:<t>x<k>,…' (the starter's card: power:3+restart:0.3x2,0.2x2,0.15x2,0.1x2,0.05x2 at 15 steps)",
    )
    p.add_argument(
        "--final",
        default="argmax",
        choices=["argmax", "sample"],
        help="last step's atom/charge/bond pick: most probable class, or a draw",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="categorical steps drawn from softmax(logits / temperature) (< 1 sharpens; stored in the defaults)",
    )
    p.add_argument("--checkpoint-every", type=int, default=0, help="training checkpoints every this many steps")
    p.add_argument("--resume", action="store_true", help="continue from the newest training checkpoint in --out")
    p.add_argument(
        "--init-from",
        default=None,
        help="warm start: a saved model (e.g. the starter) whose network and EMA weights, architecture and "
        "modality settings this run continues with a fresh optimiser and learning-rate schedule",
    )
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    import polydiff
    from polydiff.plotting import training_curve
    from polydiff.plugins.molecule.chem_checks import (  # ring sizes, 3-rings, O–O / N–N
        CHEMISTRY_CHECKS,
        chemistry_report,
        ring_size_plot,
    )
    from polydiff.plugins.molecule.io import png_grid, write_sdf
    from polydiff.training import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    weights = {k: float(v) for k, v in (kv.split("=") for kv in args.weights.split(",") if kv)}
    if args.formula:  # the atom types are given, not a part of the state
        weights.pop("atom", None)
    if args.init_from:
        # the architecture and modality settings are the saved model's:
        # --hidden/--layers/--triangle-every/--weights are not used
        model = polydiff.load(args.init_from)
        if model.modality.name != "molecule_joint":
            raise SystemExit(f"--init-from {args.init_from}: a {model.modality.name!r} model, not molecule_joint")
        before = dict(model.training_info)
        for key in ("tuned_grids", "starter"):  # tuned for, and checked on, the weights this run changes
            model.extra.pop(key, None)
    else:
        model = polydiff.create(
            "molecule_joint",
            modality_config={
                "process": args.process,
                "schedule": args.schedule,
                "keep_schedule": args.keep_schedule,
                "part_loss_weights": weights,
                "categorical_loss": args.categorical_loss,
                "formula_conditioning": args.formula,
            },
            hidden=args.hidden,
            edge_dim=args.edge_dim,
            layers=args.layers,
            **({"triangle": True, "triangle_every": args.triangle_every} if args.triangle_every else {}),
        )
        before = {}
    t0 = time.perf_counter()
    data = model.modality.load_dataset("qm9_bonds", split="train", limit=args.n_train or None, seed=args.seed)
    data_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.network.parameters())
    print(f"QM9 train subset with bonds: {len(data)} molecules ({data_s:.0f} s); egnn_joint {n_params:,} parameters")

    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        ema_decay=args.ema,
        # from scratch, warm-up: else a 0.999 average over ~1,000 steps still holds 40 % of the initial weights;
        # a warm start keeps averaging into the saved EMA
        ema_warmup=not args.init_from,
        group_by_size=args.group_by_size,
        warmup_steps=200,
        lr_schedule="cosine",
        max_seconds=60 * args.minutes,
        seed=args.seed,
        device="cpu",
        out_dir=str(out),
        log_every=25,
        checkpoint_every=args.checkpoint_every,
        resume="auto" if args.resume else None,
    )
    t0 = time.perf_counter()
    res = train(model, data, cfg)
    train_s = time.perf_counter() - t0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [(r["step"], r["loss"]) for r in log if "loss" in r]  # the log also records checkpoints
    training_curve(losses, out / "training_curve.png", title="molecule_joint on QM9")
    model.training_info = {"steps": res.steps, "seconds": train_s}
    if before:  # a warm start: the totals over both runs, and the earlier run's own numbers
        model.training_info = {
            "steps": int(before.get("steps", 0)) + res.steps,
            "seconds": float(before.get("seconds", 0.0)) + train_s,
            "stages": [*before.get("stages", [before]), {"steps": res.steps, "seconds": train_s}],
        }
    model.extra["sample_defaults"] = {
        "sampler": "ancestral",
        "nfe": args.sample_steps,
        "grid": args.grid,
        "final": args.final,
        **({"temperature": args.temperature} if args.temperature != 1.0 else {}),
    }
    model.save(out / "checkpoint")

    t0 = time.perf_counter()
    mols = []
    for s in range(0, args.n_samples, 100):  # chunks: bounded memory; sample i does not depend on the chunking
        mols += model.sample(
            min(100, args.n_samples - s),
            steps=args.sample_steps,
            seed=args.seed + 1,
            sample_offset=s,
            final=args.final,
            grid=args.grid,
            temperature=args.temperature,
        )
    sample_s = time.perf_counter() - t0
    metrics = model.modality.evaluate(mols, metrics=model.modality.default_metrics)
    chem = chemistry_report(mols)  # one pass: the registered chemistry checks, and the raw numbers behind them
    metrics.update({name: chem[name] for name in CHEMISTRY_CHECKS})
    report = {
        "args": vars(args),
        "data": {"n_train": len(data), "seconds": data_s},
        "network_parameters": n_params,
        "trained": metrics,
        "failures": int(sum(1 for m in mols if m.HasProp("sanitized") and m.GetIntProp("sanitized") == 0)),
        "timing": {
            "train_s": train_s,
            "train_steps": res.steps,
            "sample_s": sample_s,
            "samples_per_s": args.n_samples / sample_s,
        },
    }
    write_sdf(mols, out / "samples.sdf")
    png_grid(mols[:16], out / "samples.png")
    ring_size_plot(
        {"samples": chem["samples"]["ring_hist"], "QM9 test": chem["reference"]["ring_hist"]},
        out / "ring_sizes.png",
        title=f"ring sizes: molecule_joint, {res.steps} steps",
    )
    report["chemistry"] = {"samples": chem["samples"], "QM9 test": chem["reference"]}
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    print("trained  ", "  ".join(f"{k.replace('molecule_', '')}={v:.3f}" for k, v in metrics.items()))
    print(json.dumps(report["timing"]))
    return report


if __name__ == "__main__":
    main()
