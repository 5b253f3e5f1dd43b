"""The kit's checks for a modality with parts (:meth:`polydiff.modality.Modality.parts`): the
state is a dict ``{part: Tensor [B, ...]}`` with continuous and categorical parts.

The checks of :mod:`.data`, :mod:`.sampling` and :mod:`.symmetry` call these where the state
is a dict:

- ``data``: ``collate`` gives every part (continuous parts float, categorical parts ``long``
  classes in ``0 … K − 1``), each continuous part lies in its space;
- ``network``: the mixed denoiser ``D(state, t, cond)`` at t = ½ returns x̂₀ shaped like each
  continuous part and finite logits ``[..., K]`` for each categorical part;
- ``loss``: :func:`polydiff.mixed.mixed_loss` is ``[B]``, finite, and trains the network;
- ``sampling``: ``sampling_request`` gives ``{part: shape}`` for every part, ``sample_raw`` a
  state of those shapes, categorical parts inside their classes;
- ``batch_independence`` / ``save_load``: continuous parts agree to the kit's tolerance,
  categorical parts exactly;
- ``equivariance``: permutation of axis 1 of every part, and of axis 2 too for a symmetric
  (edge) part ``[B, N, N]`` (rotations and reflections of mixed
  states are not checked yet: recorded in ``report.skipped``).
"""

from __future__ import annotations

import torch

from polydiff.rng import SampleRNG

from .modality import SKIPPED, batch_axis_problems, describe, finite

T_CHECK = 0.5  # the time at which the network and equivariance checks run


def _continuous(run, name) -> bool:
    from polydiff.mixed import ContinuousPart

    return isinstance(run.parts[name], ContinuousPart)


def _classes(run, name) -> int:
    return run.parts[name].process.num_classes


# -- data ----------------------------------------------------------------------------------------
def check_batch(run, batch, k: int, fix: str):
    """``collate``'s batch of a modality with parts; leaves ``batch``, ``x`` (the dict), ``cond``."""
    x = batch.get("x") if isinstance(batch, dict) else None
    if not isinstance(x, dict) or set(x) != set(run.parts):
        got = sorted(x) if isinstance(x, dict) else type(x).__name__
        run.fail("data", f"collate({k} items) returned x = {got}, not a dict of the parts {sorted(run.parts)}", fix)
        return False
    bad = batch_axis_problems(batch.get("cond"), k)
    for name, v in x.items():
        if not torch.is_tensor(v) or v.ndim < 1 or v.shape[0] != k:
            bad.append(f"x[{name!r}] is {tuple(v.shape) if torch.is_tensor(v) else type(v).__name__}, not [{k}, ...]")
        elif _continuous(run, name):
            if not v.is_floating_point() or not finite(v):
                bad.append(f"x[{name!r}] (continuous) is {v.dtype}, finite: {finite(v)}")
        elif v.dtype != torch.long or v.numel() and (v.min() < 0 or v.max() >= _classes(run, name)):
            bad.append(f"x[{name!r}] (categorical) must be long classes in 0…{_classes(run, name) - 1}")
    if bad:
        run.fail("data", f"collate({k} items): " + "; ".join(bad), fix)
        return False
    run.batch, run.x, run.cond = batch, x, batch.get("cond")
    rng = SampleRNG(run.opts.seed, k)
    for name in x:
        if not _continuous(run, name):
            continue
        try:
            space = run.parts[name].make_space(run.cond)
            moved = (space.project(x[name]) - x[name]).abs().max().item()
            noise = space.randn_like(x[name], rng)
        except Exception as e:
            run.fail(
                "data",
                f"part {name!r}: its space raised {describe(e)}",
                "space(cond) must return a polydiff.spaces object",
            )
            return False
        if moved > 1e-4 * max(1.0, x[name].abs().max().item()) or tuple(noise.shape) != tuple(x[name].shape):
            run.fail(
                "data",
                f"part {name!r} lies outside its space (project moves it by {moved:.3g}) or its noise is "
                f"{tuple(noise.shape)} for {tuple(x[name].shape)}",
                "collate must put each continuous part where its space's project keeps it (centred, padding zero)",
            )
            return False
    return True


# -- network and loss -----------------------------------------------------------------------------
def check_network(run, comp: str):
    """The mixed denoiser on the noised collated batch; leaves ``denoiser``, ``x_noisy``, ``sigma``
    (here the time t), ``d_out``."""
    from polydiff.mixed import noise_state

    k = next(iter(run.x.values())).shape[0]
    run.denoiser = run.model.denoiser(ema=False)
    run.sigma = torch.full((k,), T_CHECK, dtype=torch.float64)
    run.x_noisy = noise_state(run.parts, run.x, run.sigma, SampleRNG(run.opts.seed, k), run.cond)
    fix = (
        "a mixed network is net(state_in, time, cond) -> {part: output}: F shaped like each continuous part, "
        "clean-class logits [..., K] for each categorical part"
    )
    out, ok = run.attempt(
        "network", "D(state, t, cond) on the collated batch", fix, run._denoise, run.x_noisy, run.cond, component=comp
    )
    if not ok:
        return False
    bad = []
    for name, v in run.x.items():
        want = tuple(v.shape) if _continuous(run, name) else tuple(v.shape) + (_classes(run, name),)
        o = out.get(name) if isinstance(out, dict) else None
        if not torch.is_tensor(o) or tuple(o.shape) != want or not finite(o):
            got = f"{tuple(o.shape)} (finite: {finite(o)})" if torch.is_tensor(o) else type(o).__name__
            bad.append(f"part {name!r}: {got}, expected {want}")
    if bad:
        run.fail("network", "D(state, t, cond) returned " + "; ".join(bad), fix, comp)
        return False
    run.d_out = out
    return True


def check_loss(run):
    from polydiff.mixed import mixed_loss
    from polydiff.mixed_model import part_masks

    k = next(iter(run.x.values())).shape[0]
    t = torch.linspace(0.05, 1.0, k, dtype=torch.float64)
    net = run.model.network
    net.train()
    net.zero_grad(set_to_none=True)
    try:
        loss = mixed_loss(
            lambda s, tt: run.denoiser(s, tt, run.cond),
            run.parts,
            run.x,
            t,
            SampleRNG(run.opts.seed + 1, k),
            cond=run.cond,
            masks=part_masks(run.parts, run.x, run.cond),
        )
        loss.mean().backward()
    except Exception as e:
        run.fail(
            "loss", f"the mixed training loss raised {describe(e)}", "the network must be differentiable end to end"
        )
        return False
    finally:
        net.eval()
    if tuple(loss.shape) != (k,) or not finite(loss):
        run.fail("loss", f"the mixed training loss is {tuple(loss.shape)} (finite: {finite(loss)})", "a finite loss")
        return False
    if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters() if p.requires_grad):
        run.fail(
            "loss",
            "the mixed training loss gives no gradient to the network's parameters",
            "the network's outputs must depend on its parameters",
            f"network {run.model.network_name!r}",
        )
        return False
    net.zero_grad(set_to_none=True)
    return True


# -- sampling ----------------------------------------------------------------------------------------
def request_problems(run, shapes) -> list[str]:
    """What is wrong with ``sampling_request``'s ``{part: shape}``."""
    if not isinstance(shapes, dict) or set(shapes) != set(run.parts):
        return [f"shapes {shapes!r:.120} are not {{part: shape}} for the parts {sorted(run.parts)}"]
    bad = []
    for name, shape in shapes.items():
        if not (isinstance(shape, (tuple, list, torch.Size)) and all(isinstance(s, int) for s in shape)):
            bad.append(f"part {name!r}: shape {shape!r}")
        elif len(shape) != run.x[name].ndim - 1:
            bad.append(f"part {name!r}: shape {tuple(shape)} has {len(shape)} axes, collate()'s {run.x[name].ndim - 1}")
    return bad


def state_problems(run, xs, shapes, n: int) -> list[str]:
    """What is wrong with a sampled state ``xs`` for ``shapes`` and ``n`` samples."""
    if not isinstance(xs, dict) or set(xs) != set(run.parts):
        return [f"sample_raw gave {type(xs).__name__}, not {{part: tensor}}"]
    bad = []
    for name, v in xs.items():
        if tuple(v.shape) != (n, *shapes[name]) or not finite(v):
            bad.append(f"part {name!r}: {tuple(v.shape)} (finite: {finite(v)})")
        elif not _continuous(run, name) and v.numel() and (v.min() < 0 or v.max() >= _classes(run, name)):
            bad.append(f"part {name!r}: classes outside 0…{_classes(run, name) - 1} (a mask token left?)")
    return bad


def state_difference(run, xb: dict, cb, i: int, x1: dict, c1, j: int = 0, tol: float = 1e-3) -> str | None:
    """How sample ``i`` of ``xb`` differs from sample ``j`` of ``x1`` (None: it does not):
    continuous parts within ``tol`` (relative to max(1, max |x|)), categorical parts exactly."""
    from .sampling import _valid_rows

    for name in run.parts:
        a, b = _valid_rows(xb[name], cb, i), _valid_rows(x1[name], c1, j)
        if a.shape != b.shape:
            return f"part {name!r}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
        if not a.numel():
            continue
        if _continuous(run, name):
            d = (a - b).abs().max().item()
            if d > tol * max(1.0, a.abs().max().item()):
                return f"part {name!r}: max |Δx| = {d:.3g}"
        elif not torch.equal(a, b):
            return f"part {name!r}: {int((a != b).sum())} of {a.numel()} classes differ"
    return None


# -- equivariance ------------------------------------------------------------------------------------
def check_permutation(run, decl) -> object:
    """Permutation equivariance of the mixed denoiser over axis 1 of every part (and cond)."""
    from .symmetry import TOLERANCE

    others = [s for s in decl if s != "permutation"]
    if others:
        run.rep.skipped.append(
            ("equivariance", run.comp, f"{others}: rotations/reflections of a state with parts are not checked yet")
        )
    if "permutation" not in decl:
        return SKIPPED
    first = next(iter(run.x_noisy.values()))
    if first.ndim < 2 or any(v.ndim < 2 or v.shape[1] != first.shape[1] for v in run.x_noisy.values()):
        run.fail(
            "equivariance",
            "declares permutation equivariance but the parts do not share a set axis 1",
            "every part must be [B, N, ...] over the same N",
        )
        return False
    B, N = first.shape[:2]
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(run.opts.seed + 7))

    def p(v, pairs: bool = False):
        if not (torch.is_tensor(v) and v.ndim >= 2 and tuple(v.shape[:2]) == (B, N)):
            return v
        v = v[:, perm.to(v.device)]
        # a symmetric (edge) part [B, N, N, ...]: its columns index the same atoms
        return v[:, :, perm.to(v.device)] if pairs and v.ndim >= 3 and v.shape[2] == N else v

    def edges(name) -> bool:
        from polydiff.mixed import CategoricalPart

        part = run.parts[name]
        return isinstance(part, CategoricalPart) and part.symmetric

    cond = None if run.cond is None else {k: p(v) for k, v in run.cond.items()}
    got = run._denoise({k: p(v, edges(k)) for k, v in run.x_noisy.items()}, cond)
    for name, out in run.d_out.items():
        err = (got[name] - p(out, edges(name))).abs().max().item() / max(1.0, out.abs().max().item())
        if err > TOLERANCE:
            run.fail(
                "equivariance",
                f"declares permutation equivariance but part {name!r} of D(πx) differs from π·D(x) by {err:.3g} "
                "(relative) for a random permutation of axis 1",
                "make the network treat the set symmetrically (no positional embeddings, symmetric pooling) or "
                "remove 'permutation' from equivariance",
                f"network {run.model.network_name!r}",
            )
            return False
    return True
