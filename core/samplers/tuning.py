"""Step schedules tuned for one model and one sampler: :func:`tune_sigmas`.

Method (after LD3, Tong et al. 2024, "Learning to Discretize Denoising Diffusion ODEs", and
the teacher-trajectory objective of "Optimal Stepsize for Diffusion Sampling", Pei et al.
2025): draw a calibration batch of start states ``x_init`` at σ̃_max, solve the PF-ODE from
each of them to convergence once (the *reference*: adaptive Dormand–Prince at tight
tolerances, then D at σ̃_min, :func:`reference_solution`), and choose the interior knots
of the σ̃ grid that minimise the RMSE between the sampler's final sample and the reference
from the same start:

    min over σ̃₁ > … > σ̃_{N−1} (in [σ̃_min, σ̃_max])  of  RMSE(sampler(D, x_init, [σ̃_max, σ̃₁, …, σ̃_{N−1}, 0]), ref).

The first knot stays at σ̃_max (where ``x_init`` lives) and the grid ends in 0. The search is
derivative-free, so it works with every registered deterministic sampler as the black box it
is and with any denoiser (a network in any dtype, an exact-score model): the best of a few
standard grids (Karras ρ = 7 and ρ = 3, log-SNR uniform with several lower ends) each start
a compass (coordinate pattern) search in log σ̃ with one step size per knot — grown 1.5×
after a successful move, halved after a failed pair — until every step is below ``tol`` or
its share of ``max_evals`` sampler runs is spent; the best end point wins (the objective has
local minima: several starts find lower ones). Each run costs NFE network evaluations on the
calibration batch. Everything is deterministic given ``x_init``.

Stochastic samplers (DPM-Solver++(2M) SDE, Euler ancestral) have no deterministic end point to
match; for them :func:`tune_by_metric` searches the Karras family instead — ρ and σ̃_min of
σ̃_i = (σ̃_max^{1/ρ} + i/(N−1)·(σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ (Karras et al. 2022, eq. 5; a larger
ρ spends more of the N steps at low noise) — scoring each grid by one of the modality's
registered metrics on calibration samples, the way Karras et al. choose ρ and "Align Your
Steps" (Sabour et al. 2024) judge schedules by sample quality rather than ODE error.

Tuning must use calibration noise that is not used for evaluation (``polydiff tune-steps``
draws it from seeds 10,000+; evaluation seeds start at 0). Tuned grids are stored in a
checkpoint as ``model.extra["tuned_grids"] = {sampler: {str(nfe): [σ̃₀, …, 0]}}`` and used by
:meth:`polydiff.model.DiffusionModel.sample` (``grid="tuned"``, or by default when one is
stored for the sampler and NFE in use).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import PolydiffError

F64 = torch.float64
#: the ``model.extra`` key that holds tuned grids
EXTRA_KEY = "tuned_grids"
#: calibration seeds start here (evaluation seeds start at 0)
CALIBRATION_SEED = 10_000


def _spec(sampler):
    from . import SamplerSpec, get_sampler

    spec = sampler if isinstance(sampler, SamplerSpec) else get_sampler(str(sampler))
    if not spec.deterministic or spec.adaptive:
        name = sampler if isinstance(sampler, str) else spec.fn.__name__
        raise PolydiffError(
            f"tune_sigmas: sampler {name!r} is {'adaptive' if spec.adaptive else 'stochastic'}; "
            "step schedules are tuned for deterministic fixed-grid samplers (e.g. unipc, dpmpp_2m, dpmpp_3m, heun)"
        )
    return spec


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    """Root mean (over the batch) squared L2 distance per sample; ``a``, ``b``: ``[B, ...]``."""
    d = (a.to(F64) - b.to(F64)).reshape(a.shape[0], -1)
    return float((d**2).sum(1).mean().sqrt())


def reference_solution(
    denoiser: Callable, x_init: torch.Tensor, sigma_max: float, sigma_min: float, *, space=None, tol: float = 1e-6
) -> torch.Tensor:
    """The converged PF-ODE from ``x_init`` (``[B, ...]`` at σ̃ = ``sigma_max``) to
    ``sigma_min``, then D there: adaptive Dormand–Prince 5(4) with rtol = atol = ``tol``."""
    from .adaptive import sample_ode_rk45

    ends = torch.tensor([float(sigma_max), float(sigma_min), 0.0], dtype=F64)
    return sample_ode_rk45(denoiser, x_init, ends, space=space, rtol=tol, atol=tol)


def _start_grids(steps: int, sigma_min: float, sigma_max: float) -> list[torch.Tensor]:
    """Standard grids the search starts from (the best one on the calibration batch wins)."""
    from .. import discretization as dz

    grids = [dz.karras(steps, sigma_min, sigma_max, 7.0), dz.karras(steps, sigma_min, sigma_max, 3.0)]
    for f in (1.0, 10.0, 100.0):
        lo = sigma_min * f
        if lo < sigma_max / 2 ** max(steps - 1, 1):
            grids.append(dz.exponential(steps, lo, sigma_max))
    return grids


def tune_sigmas(
    denoiser: Callable,
    x_init: torch.Tensor,
    *,
    sampler="unipc",
    nfe: int,
    sigma_max: float,
    sigma_min: float = 0.002,
    reference: torch.Tensor | None = None,
    space=None,
    max_evals: int = 600,
    tol: float = 2e-3,
    restarts: int = 3,
    info: dict | None = None,
    **sampler_options,
) -> torch.Tensor:
    """A σ̃ grid for ``sampler`` at ``nfe`` network evaluations, tuned for ``denoiser``.

    Args:
        denoiser: ``D(x, σ̃) → x̂₀`` (a plain callable; x ``[B, ...]``, σ̃ a float in the VE
            view σ̃ = σ/α, returns ``[B, ...]``).
        x_init: ``[B, ...]`` calibration start states at σ̃ = ``sigma_max`` (noise·σ̃_max in
            the VE view; projected into ``space`` if the model has one). Use seeds disjoint
            from the ones you evaluate on.
        sampler: a registered deterministic sampler name (or a :class:`SamplerSpec`).
        nfe: network-evaluation budget; the grid has ``spec.steps_for_nfe(nfe) + 1`` entries.
        sigma_max / sigma_min: the σ̃ range (data units); knots stay inside it.
        reference: ``[B, ...]`` the converged PF-ODE samples from ``x_init`` (computed with
            :func:`reference_solution` when not given).
        max_evals: sampler runs the search may spend in all (each costs ``nfe`` evaluations
            of D).
        tol: a local search stops when every knot's step in ln σ̃ is below this.
        restarts: local searches, one from each of the best ``restarts`` standard grids
            (the remaining budget shared equally); the best result wins.
        info: a dict that receives ``rmse`` (tuned, calibration batch), ``rmse_start`` (best
            standard grid), ``start_grid``, ``evals``.
        sampler_options: passed to the sampler (e.g. ``order=3`` for ``unipc``).

    Returns: float64 ``[steps + 1]`` σ̃ grid, strictly decreasing, first ``sigma_max``, last 0.
    """
    spec = _spec(sampler)
    if not 0 < sigma_min < sigma_max:
        raise PolydiffError(f"tune_sigmas: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if int(nfe) < 1:
        raise PolydiffError(f"tune_sigmas: nfe must be >= 1, got {nfe}")
    steps = spec.steps_for_nfe(int(nfe))
    opts = {**spec.defaults, **sampler_options}
    sigma_max, sigma_min = float(sigma_max), float(sigma_min)
    if reference is None:
        reference = reference_solution(denoiser, x_init, sigma_max, sigma_min, space=space)
    if reference.shape != x_init.shape:
        raise PolydiffError(f"tune_sigmas: reference shape {tuple(reference.shape)} != x_init {tuple(x_init.shape)}")

    def grid(y: list[float]) -> torch.Tensor:
        return torch.tensor([sigma_max] + [math.exp(v) for v in y] + [0.0], dtype=F64)

    def loss(y: list[float]) -> float:
        with torch.no_grad():
            out = spec.fn(denoiser, x_init, grid(y), space=space, **opts)
        e = rmse(out, reference)
        return e if math.isfinite(e) else math.inf

    starts: list[tuple[float, int, list[float]]] = []
    for g in _start_grids(steps, sigma_min, sigma_max):
        y = [math.log(float(v)) for v in g[1:-1]]
        starts.append((loss(y), len(starts), y))
    starts.sort()
    first = starts[0][0]
    lo, hi = math.log(sigma_min), math.log(sigma_max)
    evals = len(starts)
    best, y = starts[0][0], starts[0][2]
    chosen = starts[: max(1, int(restarts))]
    for j, (e0, _, y0) in enumerate(chosen):  # a local search from each of the best starts
        share = (max_evals - evals) // (len(chosen) - j)
        e1, y1, used = _compass(loss, e0, list(y0), lo, hi, share, tol)
        evals += used
        if e1 < best:
            best, y = e1, y1
    if info is not None:
        info.update({"rmse": best, "rmse_start": first, "start_grid": starts[0][1], "evals": evals})
    return grid(y)


def _compass(loss, best: float, y: list[float], lo: float, hi: float, budget: int, tol: float):
    """Coordinate pattern search on ln σ̃ knots ``y`` (decreasing, inside (lo, hi)): per knot
    try ±step, keep an improvement; a knot's step grows 1.5× after a success and halves after
    a failed pair. Returns (loss, knots, evaluations spent)."""
    step = [0.3] * len(y)
    gap = 1e-4  # the least ln σ̃ gap between neighbouring knots
    evals = 0
    while evals < budget and y and max(step) > tol:
        for k in range(len(y)):
            upper = (hi if k == 0 else y[k - 1]) - gap
            lower = lo if k == len(y) - 1 else y[k + 1] + gap
            moved = False
            for sign in (1.0, -1.0):
                v = min(max(y[k] + sign * step[k], lower), upper)
                if v == y[k] or evals >= budget:
                    continue
                trial = y[:k] + [v] + y[k + 1 :]
                e = loss(trial)
                evals += 1
                if e < best:
                    best, y, moved = e, trial, True
                    break
            step[k] = step[k] * 1.5 if moved else step[k] * 0.5
    return best, y, evals


# ---------------------------------------------------------------------------------------------
# tuned grids of a model
# ---------------------------------------------------------------------------------------------
def stored_grids(model) -> dict:
    """``{sampler: {str(nfe): [σ̃…]}}`` from ``model.extra`` (empty when none are stored)."""
    return dict(model.extra.get(EXTRA_KEY) or {})


def lookup(model, sampler: str, nfe: int | None, steps: int | None = None) -> torch.Tensor | None:
    """The stored grid for ``sampler`` at ``nfe`` (or, with ``nfe`` None, the one with
    ``steps`` steps), as float64 ``[steps + 1]`` (a mixed state's time grid with restarts: one
    entry more per restart); None when there is none."""
    table = stored_grids(model).get(sampler) or {}
    for key, vals in table.items():
        if (nfe is not None and str(key) == str(int(nfe))) or (
            nfe is None and steps is not None and len(vals) == steps + 1
        ):
            return _checked(model, vals, f"tuned grid {sampler}/{key}")
    return None


def describe(model) -> str:
    """The stored (sampler, NFE) pairs, for error messages."""
    pairs = [f"{s}@{k}" for s, t in sorted(stored_grids(model).items()) for k in sorted(t, key=int)]
    return ", ".join(pairs) if pairs else "none"


def check_grid(values, what: str = "grid") -> torch.Tensor:
    """``values`` as a float64 tensor, checked: finite, strictly decreasing, last entry 0."""
    s = torch.as_tensor(values, dtype=F64).flatten()
    if s.numel() < 2 or not bool(torch.isfinite(s).all()) or float(s[-1]) != 0.0 or not bool((s[1:] < s[:-1]).all()):
        raise PolydiffError(f"{what}: a σ̃ grid must be finite, strictly decreasing and end in 0, got {s.tolist()}")
    return s


def _checked(model, values, what: str) -> torch.Tensor:
    """A stored grid checked as what the model samples on: σ̃ (:func:`check_grid`), or for a
    model with a mixed state times 1 → 0, restarts allowed
    (:func:`polydiff.categorical.check_time_grid`)."""
    if model.parts is None:
        return check_grid(values, what)
    from ..categorical import check_time_grid

    try:
        return check_time_grid(values, what)
    except ValueError as e:
        raise PolydiffError(str(e)) from None


def store(model, sampler: str, nfe: int, sigmas) -> None:
    """Put ``sigmas`` into ``model.extra["tuned_grids"][sampler][str(nfe)]`` (JSON floats); a
    mixed state's time grid must take ``nfe`` network calls."""
    what = f"tuned grid {sampler}/{nfe}"
    s = _checked(model, sigmas, what)
    if model.parts is not None:
        from ..categorical import grid_calls

        if grid_calls(s) != int(nfe):
            raise PolydiffError(f"{what}: the time grid takes {grid_calls(s)} network calls, not {int(nfe)}")
    table = stored_grids(model)
    table[sampler] = {**(table.get(sampler) or {}), str(int(nfe)): [float(v) for v in s]}
    model.extra[EXTRA_KEY] = table


def calibration_problem(model, n: int, *, seed: int = CALIBRATION_SEED, ema: bool = True):
    """The model's own sampling problem for ``n`` calibration items: ``(D(x, σ̃), z, space)``
    with D bound to the sampling request's conditions and the saved guidance (the model's
    ``sample_defaults``), ``z`` ``[n, ...]`` unit noise in the model's space, drawn from
    generators ``(seed, i)`` — disjoint from evaluation seeds when ``seed`` ≥ 10,000."""
    from .. import guidance as guidance_mod
    from ..conditioning import to_device
    from ..rng import SampleRNG

    if model.parts is not None:
        raise PolydiffError(
            f"tune-steps: {model.modality.name!r} has a mixed continuous-categorical state; "
            "σ̃ grids apply to continuous models only; tune its time grid by a metric "
            "(tune_by_metric, or polydiff tune-steps --metric NAME --sampler ancestral)"
        )
    defaults = dict(model.extra.get("sample_defaults") or {})
    rng = SampleRNG(seed, n)
    shape, c = model.modality.sampling_request(n, defaults.get("cond"), rng)
    c = to_device(c, model.device)
    space = model.modality.space(c)
    z = space.randn_like(torch.zeros((n,) + tuple(shape), device=model.device), rng)
    specs = guidance_mod.resolve(
        defaults.get("guidance", 1.0), negative=defaults.get("negative"), rescale=defaults.get("guidance_rescale", 0.0)
    )
    den = guidance_mod.bind(guidance_mod.build(model.denoiser(ema), specs, model=model), c)
    return den, z, space


def sigma_range(model) -> tuple[float, float]:
    """(σ̃_min, σ̃_max) the model samples over by default (its default grid's ends)."""
    defaults = dict(model.extra.get("sample_defaults") or {})
    bounds = {k: float(defaults[k]) for k in ("sigma_min", "sigma_max") if k in defaults}
    g = model.sigma_grid(2, "karras", **bounds)
    return float(g[-2]), float(g[0])


def tune_model(
    model, sampler: str, nfe_list, *, n: int = 64, seed: int = CALIBRATION_SEED, max_evals: int = 400, log=None
) -> dict:
    """Tune and store grids for ``sampler`` at each NFE of ``nfe_list`` on ``n`` calibration
    items of the model's own sampling request (seeds ``(seed, i)``); returns per-NFE info
    (calibration RMSE before/after, evaluations). The reference is computed once."""
    from .. import model as model_mod

    den, z, space = calibration_problem(model, n, seed=seed)
    lo, hi = sigma_range(model)
    x = space.project(z * hi)
    out = {}
    net = model.ema if model.ema is not None else model.network
    with torch.no_grad(), model_mod._eval_mode(net, *model.modality.modules().values()):
        ref = reference_solution(den, x, hi, lo, space=space, tol=1e-5)
        for k in nfe_list:
            info: dict = {}
            g = tune_sigmas(
                den, x, sampler=sampler, nfe=int(k), sigma_max=hi, sigma_min=lo, reference=ref, space=space,
                max_evals=max_evals, info=info,
            )  # fmt: skip
            store(model, sampler, int(k), g)
            out[str(int(k))] = {**info, "sigmas": [float(v) for v in g]}
            if log is not None:
                log(f"{sampler}@{k}: calibration RMSE {info['rmse_start']:.4g} -> {info['rmse']:.4g}")
    return out


#: the Karras ρ values and σ̃_min multiples :func:`tune_by_metric` tries by default
METRIC_RHOS = (3.0, 5.0, 7.0, 10.0, 14.0, 20.0, 30.0)
METRIC_SIGMA_MIN_FACTORS = (1.0, 2.5, 5.0)
#: the time-grid ρ values tried by default for a model with a mixed state
TIME_GRID_RHOS = (1.0, 2.0, 3.0, 4.0, 5.0, 7.0)
#: restart schedules tried by default for a mixed state (the re-noising times, highest first;
#: :func:`polydiff.categorical.restart_time_grid`), each with the main pass taking these shares
#: of the network calls and the restarts sharing the rest evenly
RESTART_TIMES = (
    (0.2,),
    (0.3, 0.1),
    (0.2, 0.1),
    (0.3, 0.15, 0.05),
    (0.2, 0.1, 0.05),
    (0.3, 0.2, 0.1, 0.05),
    (0.3, 0.2, 0.15, 0.1, 0.05),
    (0.3, 0.25, 0.2, 0.15, 0.1, 0.05),
)
RESTART_MAIN_SHARES = (0.4, 0.6)


def restart_grid_names(nfe: int, rho: float, restart_times=RESTART_TIMES, shares=RESTART_MAIN_SHARES) -> list[str]:
    """Grid names (``"power:ρ+restart:t×k,…"``) of the restart candidates at ``nfe`` network
    calls: every schedule of ``restart_times`` with the main pass on ``power:ρ`` taking each
    share of ``shares`` of the calls (at least one) and the restarts the rest, split evenly
    (earlier restarts take the remainder); schedules with fewer calls left than restarts are
    skipped; duplicates once."""
    names: list[str] = []
    for times in restart_times:
        for share in shares:
            main = max(1, round(share * nfe))
            rest = nfe - main
            if rest < len(times):
                continue
            ks = [rest // len(times) + (1 if i < rest % len(times) else 0) for i in range(len(times))]
            name = f"power:{rho:g}+restart:" + ",".join(f"{t:g}x{k}" for t, k in zip(times, ks))
            if name not in names:
                names.append(name)
    return names


def tune_by_metric(
    model,
    sampler: str,
    nfe: int,
    metric: str,
    *,
    n: int = 16,
    seed: int = CALIBRATION_SEED,
    rhos=None,
    sigma_min_factors=METRIC_SIGMA_MIN_FACTORS,
    restart_times=RESTART_TIMES,
    log=None,
) -> dict:
    """Tune and store the grid of ``sampler`` at ``nfe`` by sample quality: every Karras grid
    with ρ in ``rhos`` (default :data:`METRIC_RHOS`) and σ̃_min = factor × the model's σ̃_min
    (``sigma_min_factors``) from the model's σ̃_max samples ``n`` calibration items (seeds
    ``(seed, i)``, disjoint from evaluation seeds; the model's other sample defaults apply),
    scored by the registered ``metric`` of the model's modality in its better direction; the
    best grid is stored (:func:`store`). Works for any sampler, stochastic ones included.

    A model with a mixed state searches its time grid instead (stored as times 1 → 0 and used
    by ``grid="tuned"`` or by default at that step count): first the ρ ≥ 1 of ``"power:ρ"``
    (default :data:`TIME_GRID_RHOS`), then, on the best ρ, restart schedules with the same
    ``nfe`` network calls (:func:`restart_grid_names` of ``restart_times``; ``()`` tries none;
    Xu et al. 2023, :func:`polydiff.categorical.restart_time_grid`). Returns ``{"sigmas",
    "rho", "sigma_min", "value", "grid", "table": [(ρ, σ̃_min, value), …], "names": [grid
    name per table row]}`` (σ̃_min None and ``grid`` the best grid's name for a mixed state)."""
    from .. import discretization
    from ..categorical import named_time_grid
    from ..plugin_manager import registry

    higher = registry("metric").entry(metric).info.get("higher_is_better", True) is not False
    nfe = int(nfe)
    table: list[tuple[float, float | None, float]] = []
    names: list[str] = []
    best: dict | None = None

    def consider(rho: float, smin: float | None, grid: torch.Tensor, kw: dict, name: str) -> None:
        nonlocal best
        samples = model.sample(n, seed=seed, sampler=sampler, **kw)
        v = float(model.modality.evaluate(samples, metrics=[metric])[metric])
        table.append((rho, smin, v))
        names.append(name)
        if log is not None:
            log(f"{sampler}@{nfe} {name}: {metric} {v:.4g}")
        if best is None or (v > best["value"] if higher else v < best["value"]):
            best = {"sigmas": grid, "rho": rho, "sigma_min": smin, "value": v, "grid": name}

    if model.parts is not None:
        for r in TIME_GRID_RHOS if rhos is None else rhos:
            if float(r) >= 1.0:
                name = f"power:{float(r):g}"
                consider(float(r), None, named_time_grid(nfe, name), {"nfe": nfe, "grid": name}, name)
        if best is not None:
            rho = best["rho"]
            for name in restart_grid_names(nfe, rho, restart_times):
                consider(rho, None, named_time_grid(nfe, name), {"nfe": nfe, "grid": name}, name)
    else:
        lo, hi = sigma_range(model)
        for r in METRIC_RHOS if rhos is None else rhos:
            for f in sigma_min_factors:
                sig = discretization.karras(nfe, lo * float(f), hi, float(r))
                consider(
                    float(r), lo * float(f), sig, {"sigmas": sig}, f"karras rho {float(r):g} sigma_min {lo * f:.4g}"
                )
    if best is None:
        raise ValueError(f"no grid to try: rhos {rhos}, sigma_min_factors {sigma_min_factors}")
    store(model, sampler, nfe, best["sigmas"])
    return {**best, "sigmas": [float(x) for x in best["sigmas"]], "table": table, "names": names}


def write_tuned_grids(path, grids: dict) -> None:
    """Store ``grids`` (``{sampler: {str(nfe): [σ̃…]}}``) as ``extra["tuned_grids"]`` of the
    checkpoint folder ``path`` in place: config.json only (weights untouched), its
    ``content_sha256`` recomputed, written atomically."""
    from pathlib import Path

    from ..checkpoint import CONFIG_NAME, atomic_write_json, content_hash, read_config

    cfg = read_config(Path(path))
    cfg.setdefault("extra", {})[EXTRA_KEY] = grids
    cfg["content_sha256"] = content_hash(cfg)
    atomic_write_json(cfg, Path(path) / CONFIG_NAME)
