"""A :class:`~polydiff.model.DiffusionModel` whose modality has parts: how it samples, trains and
checkpoints (the routing behind ``sample_raw``, the trainer's loss and ``load``).

A modality declares a mixed continuous–categorical state through
:meth:`polydiff.modality.Modality.parts`; the model then

- samples with :func:`polydiff.mixed.sample_mixed` from :func:`polydiff.mixed.prior_state` on the
  time grid :func:`polydiff.categorical.named_time_grid` (uniform, ``grid="power:ρ"``, either with
  restarts ``"+restart:t×k,…"``; ``steps`` network calls in all; a saved default grid applies
  at its saved step count, another count asked of ``sample()`` takes the grid tuned for it or
  else the saved grid's base without restarts; sampler
  ``"ancestral"``, the default, ``"euler"`` or ``"dpmpp_2m"``), with per-sample random numbers
  (:class:`polydiff.rng.SampleRNG`: sample i does not depend on the batch);
- guides with a CFG scale w (:func:`polydiff.mixed.mixed_cfg`, ``negative=`` the other branch)
  and ``wrap(denoiser, cond) → denoiser`` on the bound ``D(state, t)`` — known-region
  inpainting is ``wrap=lambda d, c: polydiff.mixed.mixed_known_region(parts, known,
  known_mask)(d)``;
- trains on :func:`polydiff.mixed.mixed_loss` with t ~ U(t_min, 1] per sample, parts weighted by
  :meth:`~polydiff.modality.Modality.part_loss_weights`;
- saves :func:`polydiff.mixed.parts_config` in ``config.json`` (``"parts"``) and refuses, on load,
  a modality whose rebuilt parts differ from the saved ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .categorical import named_time_grid
from .conditioning import to_device, with_cond_mask
from .errors import CheckpointError, PolydiffError
from .mixed import (
    MIXED_METHODS,
    CategoricalPart,
    Part,
    check_restart_noise,
    mixed_cfg,
    mixed_loss,
    parts_config,
    prior_state,
    sample_mixed,
)
from .rng import SampleRNG

F64 = torch.float64
#: sampler names of mixed models (``sample(sampler=...)``)
METHODS = MIXED_METHODS


# -- sampling -------------------------------------------------------------------------------------
def _times(model, method: str, steps: int, grid: str | None) -> torch.Tensor:
    """The time grid of a sampling call: ``"tuned"`` (or None when one is stored) the grid
    :func:`polydiff.samplers.tuning.tune_by_metric` stored for this sampler and step count,
    else :func:`~polydiff.categorical.time_grid` with ``grid``'s ρ."""
    from .samplers import tuning

    if grid in (None, "tuned"):
        stored = tuning.lookup(model, method, steps)
        if stored is not None:
            return stored
        if grid == "tuned":
            raise PolydiffError(
                f"grid='tuned': no tuned time grid is stored for sampler {method!r} at {steps} steps; "
                f"stored: {tuning.describe(model)} (tune one with polydiff.samplers.tuning.tune_by_metric)"
            )
    return named_time_grid(steps, grid)


def sample_raw(
    model,
    n: int,
    *,
    sampler: str | None,
    steps: int | None,
    nfe: int | None,
    seed: int,
    cond: dict | None,
    guidance,
    negative: dict | None,
    ema: bool,
    sample_offset: int,
    callback,
    wrap,
    unsupported: dict,
    final: str = "sample",
    temperature: float = 1.0,
    grid: str | None = None,
    restart_noise=None,
) -> tuple[dict, dict | None]:
    """``DiffusionModel.sample_raw`` for a modality with parts: ``(state {part: [n, ...]}, cond)``.

    ``steps`` (default 50; ``nfe`` is the same number: one network call per step) time steps
    from t = 1 to 0 (``grid``: ``"uniform"``, ``"power:ρ"`` — steps shrinking towards t = 0,
    :func:`~polydiff.categorical.time_grid` —, either followed by restarts
    ``"+restart:0.3x2,0.15x2"`` (:func:`~polydiff.categorical.restart_time_grid`: the steps
    after the main pass re-noise the finished sample to t and take k steps back; ``steps``
    counts all network calls), or ``"tuned"``, the grid stored for the sampler
    and step count by :func:`~polydiff.samplers.tuning.tune_by_metric`; None: the stored one if
    any, else uniform); ``final``: the last step's
    categorical pick (``"sample"`` or ``"argmax"``) and ``temperature`` the categorical
    steps' and ``restart_noise`` the noise scale γ of each restart (1 full, 0 none: the
    finished sample relabelled; :func:`polydiff.mixed.restart_state`)
    (:func:`polydiff.mixed.sample_mixed`);
    ``unsupported``: ``sample_raw``'s keywords that only
    continuous models take, with the values given (any that is set is an error)."""
    from .model import _eval_mode

    name = model.modality.name
    method = sampler or "ancestral"
    if method not in METHODS:
        raise PolydiffError(
            f"sampler {sampler!r} does not sample modality {name!r} (a state with parts "
            f"{list(model.parts)}): mixed models sample with {' or '.join(map(repr, METHODS))}"
        )
    given = sorted(k for k, v in unsupported.items() if v)
    if given:
        raise PolydiffError(
            f"sample() keyword(s) {', '.join(map(repr, given))} apply to continuous models only; modality "
            f"{name!r} has parts (sample it with sampler, steps/nfe, final, seed, cond, guidance, negative, wrap, "
            "callback, sample_offset)"
        )
    if steps is None:
        steps = int(nfe) if nfe is not None else 50
    times = _times(model, method, int(steps), grid)
    try:
        check_restart_noise(restart_noise, times)
    except ValueError as e:
        raise PolydiffError(f"modality {name!r}, grid {grid!r} at {steps} steps: {e}") from None
    parts = model.parts
    dev = model.device
    rng = SampleRNG(seed, n, offset=sample_offset)
    shapes, c = model.modality.sampling_request(n, cond, rng)
    if not isinstance(shapes, dict) or set(shapes) != set(parts):
        raise PolydiffError(
            f"modality {name!r}: sampling_request must return ({{part: per-sample shape}}, cond) for the parts "
            f"{sorted(parts)}; got {shapes!r:.200}"
        )
    c = to_device(c, dev)
    state = prior_state(parts, shapes, rng, cond=c, device=dev)
    den = model.denoiser(ema)
    d = _guided(den, parts, c, guidance, negative, n, dev)
    if wrap is not None:
        d = wrap(d, c)
    with _eval_mode(den.net, *model.modality.modules().values()):
        state = sample_mixed(
            d,
            state,
            times,
            parts=parts,
            rng=rng,
            method=method,
            cond=c,
            callback=callback,
            final=final,
            temperature=temperature,
            restart_noise=restart_noise,
        )
    return state, c


def _guided(den, parts, cond, guidance, negative, n: int, dev):
    """The bound ``D(state, t)``: plain at w = 1, else classifier-free guidance at scale w."""
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)):
        raise PolydiffError(
            f"guidance={guidance!r}: a model with parts takes a classifier-free guidance scale (a number) only"
        )
    w = float(guidance)
    if w == 1.0:
        if negative is not None:
            raise PolydiffError("negative= has no effect without classifier-free guidance: pass guidance=w (w ≠ 1)")
        return lambda state, t: den(state, t, cond)
    c = cond if cond is None or "cond_mask" in cond else with_cond_mask(cond, 1.0, n)
    neg = None if negative is None else to_device(negative, dev)
    return mixed_cfg(den, parts, c, w, uncond=neg)


# -- training -----------------------------------------------------------------------------------------
def sample_times(rng: SampleRNG, t_min: float) -> torch.Tensor:
    """``[B]`` float64 training times t ~ U(t_min, 1], one uniform from each sample's generator."""
    u = torch.cat([torch.rand(1, generator=g, dtype=F64) for g in rng.generators])
    return 1.0 - (1.0 - float(t_min)) * u


def part_masks(parts: dict[str, Part], x0: dict, cond: dict | None) -> dict | None:
    """``{categorical part: bool mask}`` from the node mask ``cond["mask"]`` ``[B, N]``: a part
    ``[B, N, ...]`` is valid where its node is; a symmetric part ``[B, N, N]`` where both ends are.
    ``None`` without a node mask."""
    m = None if cond is None else cond.get("mask")
    if not torch.is_tensor(m) or m.ndim != 2:
        return None
    out = {}
    for name, part in parts.items():
        if not isinstance(part, CategoricalPart):
            continue
        x = x0[name]
        if x.ndim < 2 or tuple(x.shape[:2]) != tuple(m.shape):
            continue
        valid = (m > 0.5).to(x.device)
        if part.symmetric and x.ndim >= 3 and x.shape[2] == m.shape[1]:
            valid = valid[:, :, None] & valid[:, None, :]
        out[name] = valid.reshape(valid.shape + (1,) * (x.ndim - valid.ndim)).expand(x.shape)
    return out or None


def training_loss(den, model, batch: dict, rng: SampleRNG, cond_dropout: float, t_min: float, dev) -> torch.Tensor:
    """Per-sample loss ``[m]`` of a micro-batch of a mixed modality (the trainer's mixed branch):
    t ~ U(t_min, 1], then the CFG-dropout coin, then the noise, all from sample j's generator."""
    x0 = {k: v.to(dev) for k, v in batch["x"].items()}
    cond = to_device(batch.get("cond"), dev)
    t = sample_times(rng, t_min)
    if cond_dropout > 0:
        keep = torch.cat([(torch.rand(1, generator=g) >= cond_dropout) for g in rng.generators])
        cond = with_cond_mask(cond, keep.float().to(dev), len(rng))
    parts = model.parts
    weights = model.modality.part_loss_weights()
    unknown = sorted(set(weights or ()) - set(parts))
    if unknown:
        raise PolydiffError(f"part_loss_weights name unknown part(s) {unknown}; parts: {sorted(parts)}")
    return mixed_loss(
        lambda state, tt: den(state, tt, cond),
        parts,
        x0,
        t,
        rng,
        cond=cond,
        weights=weights,
        masks=part_masks(parts, x0, cond),
    )


# -- checkpoints --------------------------------------------------------------------------------------
def check_saved_parts(parts: dict[str, Part] | None, saved: dict | None, path: Path) -> None:
    """Refuse a checkpoint whose saved ``parts`` (``config.json``) differ from the modality's
    rebuilt ones (:class:`~polydiff.errors.CheckpointError` naming the parts that differ)."""
    if parts is None and saved is None:
        return
    where = path / "config.json"
    if saved is not None and not isinstance(saved, dict):
        raise CheckpointError(f"{where}: field 'parts' must be an object (part name -> process config)")
    if parts is None:
        raise CheckpointError(f"{where}: the checkpoint has parts {sorted(saved or {})} but the modality has none")
    if saved is None:
        raise CheckpointError(
            f"{where}: the modality has parts {sorted(parts)} but the checkpoint saved none (written by a "
            "version of the modality without parts?)"
        )
    now = json.loads(json.dumps(parts_config(parts)))
    differ = sorted(k for k in set(now) | set(saved) if not _same(now.get(k), saved.get(k)))
    if differ:
        detail = "; ".join(f"{k}: saved {saved.get(k)!r:.160}, rebuilt {now.get(k)!r:.160}" for k in differ)
        raise CheckpointError(
            f"{where}: the modality's parts differ from the saved ones ({detail}); the weights were trained for "
            "the saved processes"
        )


def _same(a, b) -> bool:
    """JSON values equal, floats to 1e-9 relative."""
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)):
            return a == b
        return isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b
