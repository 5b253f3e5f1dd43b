"""Starter models shipped with the package (``polydiff.load("starter:molecule-qm9")``).

Each starter is a checkpoint folder under ``polydiff/starter_models/<name>/`` with a
``MODEL_CARD.md`` (data, recipe, size, metrics as measured, limits). They are trained by
the recipes in ``examples/recipes/`` with polydiff's own trainer; nothing is downloaded.

A starter's checkpoint carries ``extra["sample_defaults"]`` (the sampler, NFE, guidance
and σ̃ range it was tested with) and ``extra["starter"]["check"]``: the key metrics, how
many samples and which seed measure them, the values measured when it was written and the
floors (measured − tolerance) that :func:`measure` must reach — the test suite re-measures
every shipped starter, so a broken model or an incompatible change fails CI.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import CheckpointError

ROOT = Path(__file__).resolve().parent / "starter_models"

#: modality → its default starter
DEFAULT_STARTER = {
    "molecule": "molecule-qm9",
    "protein": "protein-domains",
    "audio": "audio-notes",
    "image": "image-mnist",
    "video": "video-moving-digits",
}


#: modality → its text-prompted starter (:func:`generate` with ``prompt=``)
DEFAULT_TEXT_STARTER = {"image": "image-mnist-text", "audio": "audio-notes-text"}


def starter_for(modality: str, *, prompted: bool = False) -> str:
    """The starter to load for ``modality`` (or a starter's own name); ``prompted``: the
    modality's text-prompted starter (:data:`DEFAULT_TEXT_STARTER`), an error for a modality
    that has none."""
    if not prompted:
        return modality
    if modality not in DEFAULT_TEXT_STARTER and modality in DEFAULT_STARTER:
        raise CheckpointError(
            f"no text-prompted starter for modality {modality!r}; prompts: {', '.join(DEFAULT_TEXT_STARTER)}"
        )
    return DEFAULT_TEXT_STARTER.get(modality, modality)


def available() -> list[str]:
    """Names of the starters present in this installation."""
    if not ROOT.exists():
        return []
    return sorted(p.name for p in ROOT.iterdir() if (p / "config.json").exists())


def starter_path(name: str) -> Path:
    """The checkpoint folder of starter ``name`` (or of a modality's default starter)."""
    name = DEFAULT_STARTER.get(name, name)
    path = ROOT / name
    if not (path / "config.json").exists():
        have = ", ".join(available()) or "(none)"
        raise CheckpointError(f"no starter model {name!r} in this installation; starters: {have}")
    return path


def _as_model(model_or_name):
    from . import load

    return load(f"starter:{model_or_name}") if isinstance(model_or_name, str) else model_or_name


def measure(model_or_name, *, n: int | None = None, seed: int | None = None) -> dict:
    """Re-measure a starter's check metrics: sample ``check["n"]`` items with
    ``check["seed"]`` (the saved sample defaults apply) and evaluate ``check["metrics"]``
    with the modality's registered metrics (``check["options"]`` passed on). Returns
    ``{metric: value}``."""
    model = _as_model(model_or_name)
    check = (model.extra.get("starter") or {}).get("check")
    if not check:
        raise CheckpointError("this model has no starter check (extra['starter']['check'])")
    samples = model.sample(int(n or check["n"]), seed=int(check["seed"] if seed is None else seed))
    return model.modality.evaluate(
        samples, reference=check.get("reference"), metrics=list(check["metrics"]), **(check.get("options") or {})
    )


def write_starter(
    model,
    name: str,
    *,
    metrics: list[str],
    n: int,
    tolerance: dict,
    card: dict,
    seed: int = 0,
    reference=None,
    options: dict | None = None,
    root: Path | None = None,
) -> dict:
    """Measure ``model`` as :func:`measure` will, record the floors (measured − tolerance;
    for lower-is-better metrics: ceilings, measured + tolerance) and save it as starter
    ``name`` with its ``MODEL_CARD.md``.

    ``card``: ``{"title", "data", "recipe", "limits"}`` (markdown strings). Returns the
    check record. Higher-is-better directions come from the metric registry.
    """
    from .plugin_manager import registry

    check = {
        "metrics": list(metrics),
        "n": int(n),
        "seed": int(seed),
        "reference": reference,
        "options": dict(options or {}),
    }
    model.extra["starter"] = {"name": name, "check": check}
    measured = measure(model)
    reg = registry("metric")
    bounds = {}
    for m in metrics:
        hib = reg.entry(m).info.get("higher_is_better")  # absent = no direction (as in the report)
        tol = float(tolerance.get(m, 0.0))
        v = float(measured[m])
        # higher-is-better: a floor; lower-is-better: a ceiling; no direction (a target such
        # as the Rg ratio): a band around the measured value
        bound = v - tol if hib is True else v + tol if hib is False else [v - tol, v + tol]
        bounds[m] = {"measured": v, "higher_is_better": hib, "bound": bound}
        if hib is True and isinstance(bound, float) and bound <= 0:
            # the starters' check metrics are shares and scores ≥ 0: a bound ≤ 0 cannot fail
            raise ValueError(
                f"{name}: bound {bounds[m]['bound']:.4g} for {m} (measured {measured[m]:.4g}, "
                f"tolerance {tol}) cannot fail; lower the tolerance or drop the metric"
            )
    check["bounds"] = bounds
    path = Path(root or ROOT) / name
    model.save(path)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    params = sum(p.numel() for p in model.network.parameters())
    lines = [
        f"# {card.get('title', name)}",
        "",
        f'`polydiff.load("starter:{name}")` — modality `{model.modality.name}`, network '
        f"`{model.network_name}` ({params:,} parameters), checkpoint {size / 2**20:.1f} MiB "
        f"(live + EMA weights; sampling uses EMA).",
        "",
        "## Data",
        "",
        card["data"].strip(),
        "",
        "## Recipe",
        "",
        card["recipe"].strip(),
        "",
        "## Sampling defaults",
        "",
        "```json",
        json.dumps(model.extra.get("sample_defaults", {}), indent=1),
        "```",
        "",
        "## Metrics (re-measured by `tests/core/test_starters.py`)",
        "",
        f"{n} samples, seed {seed}, the sampling defaults above.",
        "",
        "| metric | measured | test bound |",
        "|---|---|---|",
    ]
    for m, b in bounds.items():
        lines.append(f"| {m} | {b['measured']:.4g} | {bound_text(b)} |")
    if card.get("metrics_note"):
        lines += ["", card["metrics_note"].strip()]
    lines += ["", "## Limits", "", card["limits"].strip(), ""]
    (path / "MODEL_CARD.md").write_text("\n".join(lines))
    return check


def check_bounds(model_or_name, measured: dict) -> list[str]:
    """Metrics of a starter (loaded model or name) whose ``measured`` values miss the
    recorded bounds."""
    bounds = _as_model(model_or_name).extra["starter"]["check"]["bounds"]
    bad = []
    for m, b in bounds.items():
        v, hib, bound = measured[m], b["higher_is_better"], b["bound"]
        ok = v >= bound if hib is True else v <= bound if hib is False else bound[0] <= v <= bound[1]
        if not ok:
            bad.append(f"{m} = {v:.4g} misses {bound_text(b)}")
    return bad


def bound_text(b: dict) -> str:
    """``"≥ 0.75"``, ``"≤ 0.05"`` or ``"in [0.9, 1.1]"`` for a recorded bound."""
    if b["higher_is_better"] is True:
        return f"≥ {b['bound']:.4g}"
    if b["higher_is_better"] is False:
        return f"≤ {b['bound']:.4g}"
    return f"in [{b['bound'][0]:.4g}, {b['bound'][1]:.4g}]"


def generate(
    modality: str, n: int = 16, *, seed: int = 0, device: str | None = "cpu", out=None, **sample_kwargs
) -> list:
    """Sample ``n`` items from the modality's starter model (no training, no network); with
    ``prompt=`` (image, audio) from its text-prompted starter (:data:`DEFAULT_TEXT_STARTER`);
    with ``out`` (a file or folder) also write them as the modality's files (SDF, WAV,
    PNG, PDB)."""
    from . import load

    model = load(f"starter:{starter_for(modality, prompted=sample_kwargs.get('prompt') is not None)}", device=device)
    samples = model.sample(n, seed=seed, **sample_kwargs)
    if out is not None:
        model.modality.write(samples, out)
    return samples
