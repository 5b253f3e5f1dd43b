"""Measure the molecule starter as its model card reports it: 1,000 molecules, all metrics.

Samples ``--n`` molecules of ``starter:molecule-qm9`` (or ``--checkpoint``, any
``molecule_joint`` checkpoint; seed ``--seed``, chunks of 100; sample
i does not depend on the chunking) with the card's defaults or the ``generate()`` keywords of
``--kwargs`` (JSON), and scores them with both protocols (EDM distance-based and bond-aware),
novelty against QM9-train, the chemistry checks against QM9-test and, unless ``--no-mmff``,
the median MMFF94 relaxation drop. Writes ``metrics.json``, ``samples.sdf`` (predicted bonds)
and ``samples.png`` (16 molecules) to ``--out``::

    .venv/bin/python benchmarks/molecule_card.py --out runs/card/card15
    .venv/bin/python benchmarks/molecule_card.py --kwargs '{"nfe": 10}' --out runs/card/tuned10
    .venv/bin/python benchmarks/molecule_card.py --kwargs '{"nfe": 100, "grid": "power:3"}' --out runs/card/plain100

2026-12-03, one thread each (the card's table): card 41 s, ``nfe=10`` 30 s, 100 plain steps
261 s for 1,000 molecules.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument(
        "--checkpoint", default="starter:molecule-qm9", help="a molecule_joint checkpoint (default: the starter)"
    )
    p.add_argument("--kwargs", default="{}", help="JSON keywords for model.sample (default: the card's)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-mmff", action="store_true", help="skip the MMFF94 relaxation (minutes for 1,000)")
    a = p.parse_args(argv)

    import torch

    import polydiff
    from polydiff.plugins.molecule.chem_checks import CHEMISTRY_CHECKS
    from polydiff.plugins.molecule.io import png_grid, write_sdf

    torch.set_num_threads(a.threads)
    kw = json.loads(a.kwargs)
    model = polydiff.load(a.checkpoint)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mols: list = []
    for s in range(0, a.n, 100):
        mols += model.sample(min(100, a.n - s), seed=a.seed, sample_offset=s, **kw)
    sample_s = time.perf_counter() - t0
    names = [*model.modality.default_metrics, "molecule_joint_novelty", *CHEMISTRY_CHECKS]
    if not a.no_mmff:
        names.append("molecule_joint_mmff_strain")
    metrics = model.modality.evaluate(mols, metrics=names)
    failures = sum(1 for m in mols if m.HasProp("sanitized") and m.GetIntProp("sanitized") == 0)
    report = {
        "checkpoint": a.checkpoint,
        "kwargs": kw,
        "sample_defaults": model.extra.get("sample_defaults"),
        "n": a.n,
        "seed": a.seed,
        "threads": a.threads,
        "sample_s": sample_s,
        "molecules_per_s": a.n / sample_s,
        "sanitisation_failures": failures,
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    write_sdf(mols, out / "samples.sdf")
    png_grid(mols[:16], out / "samples.png")
    for k, v in report["metrics"].items():
        print(f"{k}: {v:.4g}")
    print(f"{a.n} molecules in {sample_s:.0f} s, {failures} fail sanitisation")
    return report


if __name__ == "__main__":
    main()
