"""Checks ``data``, ``network`` and ``loss``: the modality on its own tiny data set.

Each function takes the :class:`~polydiff.testing.modality.ModalityRun` and leaves on it
what later checks use (``mod``, ``x``, ``cond``, ``space``, ``noise``; ``model``,
``denoiser``, ``x_noisy``, ``sigma``, ``d_out``); it returns False when it found a fault.
"""

from __future__ import annotations

import copy
import inspect
import json
import math

import torch

from polydiff.rng import SampleRNG

from . import mixed
from .components import accepts_positional
from .modality import batch_axis_problems, describe, finite


def check_data(run):
    o, cls = run.opts, run.cls
    cfg = copy.deepcopy(o.modality_config)
    run.mod, ok = run.attempt(
        "data",
        f"{cls.__name__}({cfg!r})",
        "the constructor must take config=None or a JSON dict (Modality.__init__(config)) and rebuild "
        "everything else from it",
        cls,
        cfg,
    )
    if not ok:
        return False
    ds_name = o.dataset or run.mod.default_dataset
    args = (o.dataset,) if o.dataset else ()  # None: the modality's own choice (may depend on its config)
    ds, ok = run.attempt(
        "data",
        f"load_dataset({', '.join(map(repr, args))}**{o.dataset_options!r})",
        f"load_dataset calls the loader registered as dataset {ds_name!r} (it must accept these options and "
        "return a sized, indexable data set), then fit(dataset); declare small options in "
        "`conformance = {'dataset_options': {...}}`",
        run.mod.load_dataset,
        *args,
        **o.dataset_options,
    )
    if not ok:
        return False
    run.parts, ok = run.attempt(
        "data",
        "parts()",
        "parts() returns None or {name: polydiff.mixed.ContinuousPart | CategoricalPart} built from config",
        run.mod.parts,
    )
    if not ok:
        return False
    try:
        k = min(len(ds), max(2, o.n_samples))
        items = [ds[i] for i in range(k)]
    except Exception as e:
        run.fail("data", f"data set {ds_name!r}: len()/[i] raised {describe(e)}", "return a sized, indexable data set")
        return False
    if k < 2:
        run.fail("data", f"data set {ds_name!r} has {k} item(s) with {o.dataset_options}", "load at least 2 items")
        return False
    kind = type(items[0]).__name__
    fix = (
        "override Modality.collate(items) to turn a list of your data set's items "
        f"({kind}) into {{'x': Tensor [B, ...], 'cond': dict of [B, ...] tensors | None}}"
    )
    batch, ok = run.attempt("data", f"collate({k} items of type {kind})", fix, run.mod.collate, items)
    if not ok:
        return False
    if run.parts is not None:
        if not mixed.check_batch(run, batch, k, fix.replace("Tensor [B, ...]", "{part: Tensor [B, ...]}")):
            return False
        return None if _config_is_json(run, "after load_dataset/fit") else False
    x = batch.get("x") if isinstance(batch, dict) else None
    if not (torch.is_tensor(x) and x.is_floating_point() and x.ndim >= 2 and x.shape[0] == k):
        got = tuple(x.shape) if torch.is_tensor(x) else type(batch).__name__
        run.fail("data", f"collate({k} items) returned x = {got}, not a float tensor [{k}, ...]", fix)
        return False
    bad = batch_axis_problems(batch.get("cond"), k) + ([] if finite(x) else ["x is not finite"])
    if bad:
        run.fail("data", f"collate({k} items): " + "; ".join(bad), fix)
        return False
    run.batch, run.x, run.cond = batch, x, batch.get("cond")
    if not _config_is_json(run, "after load_dataset/fit"):
        return False
    run.space, ok = run.attempt(
        "data",
        "space(cond) on the collated batch",
        "space(cond) must return a polydiff.spaces object",
        run.mod.space,
        run.cond,
    )
    if not ok:
        return False
    try:
        moved = (run.space.project(x) - x).abs().max().item()
        noise = run.space.randn_like(x, SampleRNG(o.seed, k))
    except Exception as e:
        run.fail("data", f"the space's project/randn_like raised {describe(e)}", "use a polydiff.spaces class")
        return False
    if moved > 1e-4 * max(1.0, x.abs().max().item()):
        run.fail(
            "data",
            f"the collated data lie outside their space: space(cond).project(x) moves x by {moved:.3g}",
            "collate must put data where space().project keeps them (e.g. centre coordinates over the mask for "
            "a ZeroCoMSpace, zero the padding)",
        )
        return False
    if tuple(noise.shape) != tuple(x.shape):
        run.fail(
            "data",
            f"space.randn_like gives {tuple(noise.shape)} for x {tuple(x.shape)}",
            "return noise shaped like x",
        )
        return False
    run.noise = noise


def _config_is_json(run, when: str) -> bool:
    try:
        json.dumps(run.mod.config)
        return True
    except (TypeError, ValueError) as e:
        run.fail(
            "data",
            f"Modality.config is not JSON ({when}): {describe(e)}",
            "keep only str/number/bool/None/list/dict values in run.config (it is saved in config.json); "
            "tensors and modules belong in modules()",
        )
        return False


# -- network and loss ----------------------------------------------------------------
def check_network(run):
    from polydiff.model import DiffusionModel

    o = run.opts
    net = o.network or run.mod.default_network
    comp = f"network {net!r}"
    run.model, ok = run.attempt(
        "network",
        f"DiffusionModel.create(modality, network={net!r}, **{o.network_kwargs!r})",
        f"the network class must accept network_kwargs() = {_safe(run.mod.network_kwargs)!r} plus the "
        "kit's conformance network_kwargs",
        DiffusionModel.create,
        run.mod,
        network=o.network,
        **o.network_kwargs,
        component=comp,
    )
    if not ok:
        return False
    if not accepts_positional(run.model.network.forward, 3):
        run.fail(
            "network",
            f"forward{_signature(run.model.network.forward)} cannot be called as forward(x, time, cond)",
            "define forward(self, x, time, cond=None): the core always passes the batch's cond dict",
            comp,
        )
        return False
    run.model.network.eval()
    if run.parts is not None:
        return None if mixed.check_network(run, comp) else False
    run.denoiser = run.model.denoiser(ema=False)
    sig = float(run.model.sigma_data)
    run.x_noisy = run.space.project(run.x + sig * run.noise)
    run.sigma = torch.full((run.x.shape[0],), sig, dtype=torch.float64)
    out, ok = run.attempt(
        "network",
        "D(x, σ, cond) on the collated batch",
        "the network must run on collate()'s batch: forward(x [B, ...], time [B], cond) -> [B, ...] like x",
        run._denoise,
        run.x_noisy,
        run.cond,
        component=comp,
    )
    if not ok:
        return False
    if tuple(out.shape) != tuple(run.x.shape) or not finite(out):
        run.fail(
            "network",
            f"D(x, σ, cond) returned {tuple(out.shape)} (finite: {finite(out)}) for x {tuple(run.x.shape)}",
            "return a finite tensor shaped like x",
            comp,
        )
        return False
    run.d_out = out


def _safe(fn):
    try:
        return fn()
    except Exception as e:
        return f"<raised {describe(e)}>"


def check_loss(run):
    from polydiff.losses import diffusion_loss

    if run.parts is not None:
        return None if mixed.check_loss(run) else False

    k = run.x.shape[0]
    sd = float(run.model.sigma_data)
    sigmas = torch.logspace(math.log10(0.05 * sd), math.log10(2 * sd), k, dtype=torch.float64)
    fix = "auxiliary_loss(x0_hat, x0, sigmas, cond, weight) must return None or a finite tensor [B]"
    aux, ok = run.attempt(
        "loss",
        "auxiliary_loss on the collated batch",
        fix,
        run.mod.auxiliary_loss,
        run.x,
        run.x,
        sigmas,
        run.cond,
        torch.ones(k),
    )
    if not ok:
        return False
    if aux is not None and (not torch.is_tensor(aux) or tuple(aux.shape) != (k,) or not finite(aux)):
        run.fail("loss", f"auxiliary_loss returned {_shape_of(aux)} for a batch of {k}", fix)
        return False
    net = run.model.network
    net.train()
    net.zero_grad(set_to_none=True)
    try:
        loss = diffusion_loss(
            run.denoiser,
            run.x,
            run.cond,
            run.space,
            SampleRNG(run.opts.seed + 1, k),
            torch.Generator().manual_seed(run.opts.seed),
            sigmas=sigmas,
            auxiliary=run.mod.auxiliary_loss,
        )
        loss.mean().backward()
    except Exception as e:
        run.fail("loss", f"the training loss raised {describe(e)}", "the network must be differentiable end to end")
        return False
    finally:
        net.eval()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    if tuple(loss.shape) != (k,) or not finite(loss):
        run.fail("loss", f"the training loss is {_shape_of(loss)}", "the loss must be finite on the collated batch")
        return False
    if not any(g is not None and g.abs().sum() > 0 for g in grads):
        run.fail(
            "loss",
            "the training loss gives no gradient to the network's parameters",
            "the network's output must depend on its parameters (forward must use them)",
            f"network {run.model.network_name!r}",
        )
        return False
    net.zero_grad(set_to_none=True)


# -- sampling and files ---------------------------------------------------------------


def _signature(fn) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"


def _shape_of(t) -> str:
    return f"shape {tuple(t.shape)} (finite: {finite(t)})" if torch.is_tensor(t) else repr(t)[:100]
