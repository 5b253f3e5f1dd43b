"""Checks ``sampling``, ``files``, ``batch_independence`` and ``save_load``.

Each function takes the :class:`~polydiff.testing.modality.ModalityRun`; ``check_sampling``
leaves ``xs``/``cs`` (the states ``sample_raw`` drew) and ``samples`` (decoded) on it, and
``check_files`` leaves ``back`` (what ``read`` returned); each returns False on a fault.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from polydiff.rng import SampleRNG

from . import mixed
from .modality import batch_axis_problems, finite


def check_sampling(run):
    run.broken.add("sample_raw")  # until sample_raw has run
    o, n = run.opts, run.opts.n_samples
    fix = (
        "sampling_request(n, cond, rng) must return (shape without the batch axis, cond dict of [n, ...] tensors "
        "or None), with shape of the same rank as collate()'s x[0]"
    )
    req, ok = run.attempt(
        "sampling",
        f"sampling_request({n}, {o.sample_cond!r}, rng)",
        fix,
        run.mod.sampling_request,
        n,
        o.sample_cond,
        SampleRNG(o.seed, n),
    )
    if not ok:
        return False
    shape = req[0] if isinstance(req, tuple) and len(req) == 2 else None
    if run.parts is not None:
        fix = fix.replace("(shape without the batch axis", "({part: shape without the batch axis}")
        bad = mixed.request_problems(run, shape) + batch_axis_problems(req[1] if shape is not None else None, n)
    elif not (isinstance(shape, (tuple, list, torch.Size)) and all(isinstance(s, int) for s in shape)):
        run.fail("sampling", f"sampling_request returned {req!r:.200}", fix)
        return False
    else:
        bad = batch_axis_problems(req[1], n)
        if len(shape) != run.x.ndim - 1:
            bad.append(f"shape {tuple(shape)} has {len(shape)} axes, collate()'s items {run.x.ndim - 1}")
    if bad:
        run.fail("sampling", "sampling_request: " + "; ".join(bad), fix)
        return False
    res, ok = run.attempt(
        "sampling",
        f"sample_raw({n}, sampler={o.sampler!r}, steps={o.steps}, cond={o.sample_cond!r})",
        "the space, the network and sampling_request's cond must work together (see the message)",
        run._sample,
        run.model,
        n,
    )
    if not ok:
        return False
    run.xs, run.cs = res
    if run.parts is not None:
        bad = mixed.state_problems(run, run.xs, shape, n)
        if bad:
            run.fail("sampling", "sample_raw: " + "; ".join(bad), fix)
            return False
    elif tuple(run.xs.shape) != (n, *shape) or not finite(run.xs):
        run.fail("sampling", f"sample_raw gave {tuple(run.xs.shape)} (finite: {finite(run.xs)})", fix)
        return False
    run.broken.discard("sample_raw")
    fix = "decode(x [B, ...], cond) must return one domain object per sample (a list or sized container of B)"
    run.samples, ok = run.attempt("sampling", f"decode(x [{n}, ...], cond)", fix, run.mod.decode, run.xs, run.cs)
    if not ok:
        return False
    count = _count(run.samples)
    if count != n:
        run.fail("sampling", f"decode returned {count} objects for {n} sampled states", fix)
        return False


def check_files(run):
    out = run.tmp / f"{run.name}_samples"
    fix = "write(samples, path) writes real files and returns their paths; read(path) returns the same samples"
    paths, ok = run.attempt(
        "files", f"write({_count(run.samples)} samples, {out.name!r})", fix, run.mod.write, run.samples, out
    )
    if not ok:
        return False
    if not isinstance(paths, (list, tuple)) or not paths or not all(Path(p).exists() for p in paths):
        run.fail("files", f"write returned {paths!r:.200} (must be a non-empty list of written files)", fix)
        return False
    run.back, ok = run.attempt("files", f"read({out.name!r}) after write", fix, run.mod.read, out)
    if not ok:
        return False
    n, m = _count(run.samples), _count(run.back)
    if m != n:
        run.fail(
            "files",
            f"wrote {n} samples but read back {m}",
            "write must store every sample and read must return them all",
        )
        return False
    t0, t1 = _first_type(run.samples), _first_type(run.back)
    if t0 is not t1:
        run.fail(
            "files",
            f"decode gives {t0.__name__} objects but read gives {t1.__name__}",
            "read must return the objects decode returns (metrics run on both)",
        )
        return False


def check_batch_independence(run):
    n = run.opts.n_samples
    for i in sorted({0, n - 1}):
        res, ok = run.attempt(
            "batch_independence",
            f"sample_raw(1, sample_offset={i})",
            "see the message",
            run._sample,
            run.model,
            1,
            i,
        )
        if not ok:
            return False
        if run.parts is not None:
            diff = mixed.state_difference(run, run.xs, run.cs, i, res[0], res[1])
        else:
            diff = _sample_difference(run.xs, run.cs, i, res[0], res[1])
        if diff is not None:
            run.fail(
                "batch_independence",
                f"sample {i} of a batch of {n} differs from the same sample drawn alone (seed {run.opts.seed}): {diff}",
                "draw per-sample randomness only from the rng argument (one generator per sample), keep the "
                "network free of cross-sample operations (batch norm in train mode, batch statistics) and make "
                "sampling_request's shape independent of n",
            )
            return False


def check_save_load(run):
    from polydiff.model import DiffusionModel

    path = run.tmp / f"{run.name}_model"
    fix = (
        "everything sampling needs must live in Modality.config (JSON, saved) or in modules() (weights, saved); "
        "the constructor must rebuild the same modality from that config"
    )
    _, ok = run.attempt("save_load", "model.save", fix, run.model.save, path)
    if not ok:
        return False
    loaded, ok = run.attempt("save_load", "polydiff.load after save", fix, DiffusionModel.load, path, device="cpu")
    if not ok:
        return False
    before, after = json.loads(json.dumps(run.mod.config)), json.loads(json.dumps(loaded.modality.config))
    if before != after:
        keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        run.fail("save_load", f"the loaded modality's config differs in {keys}", fix)
        return False
    res, ok = run.attempt("save_load", "sampling the loaded model", fix, run._sample, loaded, run.opts.n_samples)
    if not ok:
        return False
    if run.parts is not None:
        n = run.opts.n_samples
        diffs = [mixed.state_difference(run, res[0], res[1], i, run.xs, run.cs, i, tol=1e-5) for i in range(n)]
        diff = next((d for d in diffs if d is not None), None)
        if diff is not None:
            run.fail("save_load", f"the loaded model samples differently ({diff}, same seed)", fix)
            return False
        return None
    d = (res[0] - run.xs).abs().max().item() if res[0].shape == run.xs.shape else float("inf")
    if d > 1e-5 * max(1.0, run.xs.abs().max().item()):
        run.fail("save_load", f"the loaded model samples differently (max |Δx| = {d:.3g}, same seed)", fix)
        return False


def _count(samples) -> int | None:
    try:
        return len(samples)
    except TypeError:
        return None


def _first_type(samples):
    try:
        return type(samples[0])
    except Exception:
        return type(samples)


def _valid_rows(x, cond, i):
    """Sample ``i``'s entries along axis 1 that its ``cond["mask"]`` marks valid (all if no mask)."""
    xi = x[i]
    m = cond.get("mask") if isinstance(cond, dict) else None
    if torch.is_tensor(m) and m.ndim == 2 and xi.ndim >= 1 and m.shape[1] == xi.shape[0]:
        return xi[m[i].cpu() > 0.5]
    return xi


def _sample_difference(xb, cb, i, x1, c1) -> str | None:
    a, b = _valid_rows(xb, cb, i), _valid_rows(x1, c1, 0)
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)} in the batch, {tuple(b.shape)} alone"
    d = (a - b).abs().max().item() if a.numel() else 0.0
    if d > 1e-3 * max(1.0, a.abs().max().item() if a.numel() else 1.0):
        return f"max |Δx| = {d:.3g}"
    return None
