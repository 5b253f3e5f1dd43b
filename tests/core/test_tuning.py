"""Tuned step schedules (:func:`polydiff.samplers.tune_sigmas`) against the exact-score
mixtures, their storage in checkpoints, ``grid="tuned"`` and ``polydiff tune-steps``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

import polydiff
from polydiff import discretization as dz
from polydiff.errors import PolydiffError
from polydiff.samplers import SAMPLERS, tune_sigmas
from polydiff.samplers.tuning import CALIBRATION_SEED, reference_solution, rmse, store
from polydiff.schedules import DDPMLinear

sys.path.insert(0, str(Path(__file__).parent))
from gmm import circle_mixture, mixture_16d  # noqa: E402

F64 = torch.float64
SCH = DDPMLinear()
S_MAX, S_MIN = SCH.sigma_ve_max, SCH.sigma_ve_min


pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors on a shared 2-core machine


def _noise(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64) * S_MAX


def test_tuned_grid_is_valid_and_beats_karras_on_held_out_noise():
    mix = circle_mixture()
    xc, xe = _noise(300, 2, CALIBRATION_SEED), _noise(500, 2, 0)  # calibration ≠ evaluation seeds
    info: dict = {}
    g = tune_sigmas(mix, xc, sampler="unipc", nfe=5, sigma_max=S_MAX, sigma_min=S_MIN, max_evals=150, info=info)
    assert g.dtype == F64 and g.shape == (6,)
    assert float(g[0]) == pytest.approx(S_MAX) and float(g[-1]) == 0.0
    assert bool((g[1:] < g[:-1]).all()) and float(g[-2]) >= S_MIN
    assert info["rmse"] <= info["rmse_start"] and info["evals"] <= 150
    ref = reference_solution(mix, xe, S_MAX, S_MIN, tol=1e-8)
    run = SAMPLERS["unipc"].fn
    tuned = rmse(run(mix, xe, g), ref)
    karras = rmse(run(mix, xe, dz.karras(5, S_MIN, S_MAX)), ref)
    assert tuned < 0.4 * karras, (tuned, karras)


def test_plain_callable_deterministic_and_reference_given():
    mix = mixture_16d()
    xc = _noise(64, 16, CALIBRATION_SEED + 1)
    ref = reference_solution(mix, xc, S_MAX, S_MIN)

    def den(x, s):  # a plain function, no model object
        return mix.denoise(x, s)

    a = tune_sigmas(den, xc, sampler="dpmpp_2m", nfe=4, sigma_max=S_MAX, sigma_min=S_MIN, reference=ref, max_evals=40)
    b = tune_sigmas(den, xc, sampler="dpmpp_2m", nfe=4, sigma_max=S_MAX, sigma_min=S_MIN, reference=ref, max_evals=40)
    assert torch.equal(a, b)
    heun = tune_sigmas(den, xc, sampler="heun", nfe=5, sigma_max=S_MAX, sigma_min=S_MIN, reference=ref, max_evals=20)
    assert heun.shape == (4,)  # Heun: 3 steps spend 5 evaluations


def test_bad_requests_named():
    mix = circle_mixture()
    x = _noise(8, 2, CALIBRATION_SEED)
    with pytest.raises(PolydiffError, match="stochastic"):
        tune_sigmas(mix, x, sampler="ddpm", nfe=5, sigma_max=S_MAX)
    with pytest.raises(PolydiffError, match="sigma_min"):
        tune_sigmas(mix, x, sampler="unipc", nfe=5, sigma_max=1.0, sigma_min=2.0)
    with pytest.raises(PolydiffError, match="strictly decreasing"):
        store(polydiff.create("pointcloud", hidden=8, layers=1), "unipc", 3, [1.0, 2.0, 0.0])


@pytest.fixture
def small_model():
    torch.manual_seed(0)
    m = polydiff.create("pointcloud", hidden=16, layers=1)
    m.modality.config["n_points"] = 6
    return m


def test_tuned_grid_used_on_request_and_by_default(small_model):
    m = small_model
    with pytest.raises(PolydiffError, match=r"no tuned grid .*'unipc'.*stored: none"):
        m.sample_raw(2, sampler="unipc", nfe=4, grid="tuned")
    g = [80.0, 5.0, 0.5, 0.02, 0.0]
    store(m, "unipc", 4, g)
    tuned, _ = m.sample_raw(2, sampler="unipc", nfe=4, grid="tuned", seed=1)
    explicit, _ = m.sample_raw(2, sampler="unipc", sigmas=torch.tensor(g, dtype=F64), seed=1)
    default, _ = m.sample_raw(2, sampler="unipc", nfe=4, seed=1)
    karras, _ = m.sample_raw(2, sampler="unipc", nfe=4, grid="karras", seed=1)
    assert torch.equal(tuned, explicit) and torch.equal(default, explicit)
    assert not torch.equal(karras, explicit)
    by_steps, _ = m.sample_raw(2, sampler="unipc", steps=4, seed=1)
    assert torch.equal(by_steps, explicit)
    with pytest.raises(PolydiffError, match=r"unipc@4"):
        m.sample_raw(2, sampler="unipc", nfe=6, grid="tuned")
    # saved σ̃ bounds in sample_defaults do not switch the tuned grid off
    m.extra["sample_defaults"] = {"sampler": "unipc", "nfe": 4, "sigma_max": 5.0}
    assert all(torch.equal(a, b) for a, b in zip(m.sample(2, seed=1), m.modality.decode(explicit, None)))


def test_cli_tune_steps_writes_checkpoint(small_model, tmp_path):
    from polydiff.checkpoint import read_config
    from polydiff.cli import main

    small_model.save(tmp_path / "ck")
    assert main(["tune-steps", str(tmp_path / "ck"), "--sampler", "unipc", "--nfe", "3,5", "-n", "8",
                 "--max-evals", "12", "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    cfg = read_config(tmp_path / "ck")  # content hash still valid
    grids = cfg["extra"]["tuned_grids"]["unipc"]
    assert sorted(grids) == ["3", "5"] and len(grids["5"]) == 6 and grids["5"][-1] == 0.0
    assert all(b < a for a, b in zip(grids["5"][:-1], grids["5"][1:]))
    again = polydiff.load(tmp_path / "ck")
    x, _ = again.sample_raw(2, sampler="unipc", nfe=5, grid="tuned")
    assert torch.isfinite(x).all()
    with pytest.raises(SystemExit, match="seed"):
        main(["tune-steps", str(tmp_path / "ck"), "--seed", "3", "--quiet"])
    out = tmp_path / "copy"
    assert main(["tune-steps", str(tmp_path / "ck"), "--sampler", "dpmpp_2m", "--nfe", "4", "-n", "4",
                 "--max-evals", "6", "--quiet", "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    assert set(json.loads((out / "config.json").read_text())["extra"]["tuned_grids"]) == {"unipc", "dpmpp_2m"}


def test_unipc_gauss_is_exact_for_a_gaussian_and_plain_unipc_at_zero():
    """local_var = the data variance: one Gaussian's PF-ODE is solved exactly at any NFE."""
    c, mu = 0.3, torch.tensor([1.0, -2.0], dtype=F64)

    def den(x, s):
        return mu + (x - mu) * (c / (c + s * s))

    x = _noise(16, 2, 5)
    exact = mu + (x - mu) * math.sqrt(c / (c + S_MAX**2))
    run = SAMPLERS["unipc_gauss"].fn
    out = run(den, x, dz.karras(3, S_MIN, S_MAX), local_var=c)
    assert torch.allclose(out, exact, atol=1e-9)
    g = dz.karras(6, S_MIN, S_MAX)
    assert torch.equal(run(den, x, g, local_var=0.0, order=2), SAMPLERS["unipc"].fn(den, x, g, order=2))


@pytest.mark.parametrize("order", [2, 3])
def test_unipc_bh1_matches_diffusers(order):
    """variant='bh1' against diffusers' UniPCMultistepScheduler(solver_type='bh1'), which ends
    at σ_min (its step into σ = 0 with B(h) = h is NaN in 0.42.1), same grid, same start."""
    diffusers = pytest.importorskip("diffusers")
    mix = circle_mixture()
    eps = mix.eps_table_model(SCH.alphas_cumprod)
    sc = diffusers.UniPCMultistepScheduler(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
        timestep_spacing="trailing", solver_type="bh1", solver_order=order, final_sigmas_type="sigma_min",
    )  # fmt: skip
    sc.set_timesteps(8)
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    x = z.float()
    for t in sc.timesteps:
        x = sc.step(eps(sc.scale_model_input(x, t), t), t, x).prev_sample
    sig = sc.sigmas.double()  # σ̃ at the timesteps, then σ̃_min
    ours = SAMPLERS["unipc"].fn(mix, z * math.sqrt(1 + float(sig[0]) ** 2), sig, variant="bh1", order=order)
    assert torch.allclose(ours / math.sqrt(1 + float(sig[-1]) ** 2), x.double(), atol=5e-5)
    bh2 = SAMPLERS["unipc"].fn(mix, z * math.sqrt(1 + float(sig[0]) ** 2), sig, order=order)
    assert not torch.allclose(ours, bh2, atol=1e-3)


def test_tune_by_metric_keeps_the_best_karras_grid_in_the_metric_direction(small_model):
    """A stochastic sampler's grid by sample quality: every (ρ, σ̃_min) pair is scored on the
    calibration seeds, the best in the metric's direction (pointcloud_ring_error: lower) is
    stored, and re-sampling with the stored grid on those seeds gives the recorded value."""
    from polydiff.samplers.tuning import lookup, tune_by_metric

    m = small_model
    info = tune_by_metric(
        m, "euler_ancestral", 4, "pointcloud_ring_error", n=6, rhos=(3.0, 7.0), sigma_min_factors=(1.0, 5.0)
    )
    values = [v for *_, v in info["table"]]
    assert len(values) == 4 and info["value"] == min(values) and len(set(values)) > 1
    stored = lookup(m, "euler_ancestral", 4)
    assert stored is not None and torch.allclose(stored, torch.tensor(info["sigmas"], dtype=F64))
    again = m.sample(6, seed=CALIBRATION_SEED, sampler="euler_ancestral", nfe=4, grid="tuned")
    assert m.modality.evaluate(again, metrics=["pointcloud_ring_error"])["pointcloud_ring_error"] == pytest.approx(
        info["value"]
    )
