"""Mixed continuous–categorical states against exact answers: a Gaussian mixture whose
component label is a categorical part of the state (closed-form joint denoiser), the ELBO
of an exact discrete model against the true NLL, per-sample randomness, inpainting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from polydiff.bench.sampler_study import sliced_w2
from polydiff.categorical import MaskedProcess, UniformProcess, named_time_grid, restart_time_grid, time_grid
from polydiff.mixed import (
    CategoricalPart,
    ContinuousPart,
    mixed_cfg,
    mixed_elbo,
    mixed_known_region,
    noise_state,
    parts_config,
    parts_from_config,
    prior_state,
    sample_mixed,
    symmetrize,
)
from polydiff.rng import GeneratorRNG, SampleRNG
from polydiff.schedules import VEGeometric

sys.path.insert(0, str(Path(__file__).parent))
from markov import MarkovChain  # noqa: E402
from mixed_gmm import four_components  # noqa: E402

F64 = torch.float64
GMM = four_components()
N = 10000
STEPS = 256  # the documented steps of both mixed samplers on this problem


def _parts(process):
    return {"label": CategoricalPart(process), "pos": ContinuousPart(VEGeometric(0.002, 20.0))}


def _start(parts, n, seed):
    rng = GeneratorRNG(torch.Generator().manual_seed(seed))
    proc = parts["label"].process
    label = proc.sample_forward(torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=F64), rng)
    pos = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed + 1), dtype=F64) * 20.0
    return {"label": label, "pos": pos}, rng


def _label_tv(label):
    freq = torch.bincount(label, minlength=GMM.K).double() / len(label)
    return 0.5 * float((freq - GMM.w).abs().sum())


def _per_label_sw2(label, pos, ref_label, ref_pos):
    out = []
    for k in range(GMM.K):
        m = min(int((label == k).sum()), int((ref_label == k).sum()))
        out.append(sliced_w2(pos[label == k][:m], ref_pos[ref_label == k][:m]))
    return sum(out) / len(out)


def _floors(reps: int = 4):
    tv, sw = [], []
    for r in range(reps):
        a = GMM.sample(N, torch.Generator().manual_seed(100 + r))
        b = GMM.sample(N, torch.Generator().manual_seed(200 + r))
        tv.append(_label_tv(a[0]))
        sw.append(_per_label_sw2(*a, *b))
    return sum(tv) / reps, sum(sw) / reps


@pytest.mark.parametrize("method", ["ancestral", "euler", "dpmpp_2m"])
@pytest.mark.parametrize("proc", ["masked", "uniform"])
def test_joint_of_label_and_position_within_twice_the_floor(proc, method):
    """Label frequencies (TV to the exact weights, mean over 2 seeds) and per-label SW2 of
    the positions within 2× their Monte-Carlo floors (true sample sets of the same size)."""
    process = MaskedProcess(GMM.K) if proc == "masked" else UniformProcess(GMM.K)
    parts = _parts(process)
    den = GMM.denoiser(parts)
    ref = GMM.sample(N, torch.Generator().manual_seed(3))
    tv_floor, sw_floor = _floors()
    tvs, sws = [], []
    for seed in (7, 8):
        state, rng = _start(parts, N, seed)
        out = sample_mixed(lambda s, t: den(s, t), state, time_grid(STEPS), parts=parts, rng=rng, method=method)
        tvs.append(_label_tv(out["label"]))
        sws.append(_per_label_sw2(out["label"], out["pos"], *ref))
    assert sum(tvs) / 2 <= 2 * tv_floor, (tvs, tv_floor)
    assert sum(sws) / 2 <= 2 * sw_floor, (sws, sw_floor)


def _gaussian_pf_ode_error(method: str, steps: int) -> float:
    """RMS distance of ``method``'s continuous part to the exact PF-ODE end point for data
    N(μ, s²I) (x₀ = μ + s (x_T − μ) / √(s² + σ_T²)), from the same starts, time grid ``power:2``."""
    mu, s = torch.tensor([1.0, -2.0], dtype=F64), 0.7
    part = ContinuousPart(VEGeometric(0.002, 20.0))
    x_T = mu + 20.0 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(5), dtype=F64)

    def exact(state, t):
        sigma = part.sigma(t).reshape(-1, 1)
        return {"pos": mu + s * s / (s * s + sigma * sigma) * (state["pos"] - mu)}

    rng = GeneratorRNG(torch.Generator().manual_seed(0))
    out = sample_mixed(exact, {"pos": x_T}, time_grid(steps, rho=2.0), parts={"pos": part}, rng=rng, method=method)
    target = mu + s * (x_T - mu) / (s * s + 20.0**2) ** 0.5
    return float(((out["pos"] - target) ** 2).sum(-1).mean().sqrt())


@pytest.mark.parametrize("proc", ["masked", "uniform"])
def test_a_restart_keeps_the_exact_distribution_and_repairs_a_local_error(proc):
    """Restart sampling with the exact denoiser: exact samples noised to t_r = 0.7 (σ̃ 1.26)
    and brought back in 64 steps stay within 2× the Monte-Carlo floors (label TV, per-label
    SW2); samples whose positions carry an error of 1.0 per coordinate (SW2 ≈ 20× the floor;
    the labels right) come back within 2× the floor (measured 0.037 vs floor 0.029)."""
    process = MaskedProcess(GMM.K) if proc == "masked" else UniformProcess(GMM.K)
    parts = _parts(process)
    den = GMM.denoiser(parts)
    ref = GMM.sample(N, torch.Generator().manual_seed(3))
    tv_floor, sw_floor = _floors()
    label, pos = GMM.sample(N, torch.Generator().manual_seed(4))
    off = pos + torch.randn(pos.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    assert _per_label_sw2(label, off, *ref) > 10 * sw_floor
    grid = torch.cat([torch.zeros(1, dtype=F64), torch.linspace(0.7, 0.0, 65, dtype=F64)])  # rise from 0: a restart
    for start in (pos, off):
        rng = GeneratorRNG(torch.Generator().manual_seed(6))
        out = sample_mixed(lambda s, t: den(s, t), {"label": label, "pos": start}, grid, parts=parts, rng=rng)
        assert _label_tv(out["label"]) <= 2 * tv_floor
        assert _per_label_sw2(out["label"], out["pos"], *ref) <= 2 * sw_floor


def test_a_restart_grid_is_the_main_pass_then_forward_noise_then_its_steps():
    """``power:2+restart:0.3x2,0.1x1`` with 7 calls = 4 steps on power:2, q(x_0.3 | x₀), 2 uniform
    steps, q(x_0.1 | x₀), 1 step — the same random numbers drawn in the same order; the
    network is called 7 times; a rise from t > 0 or a grid outside [0, 1] is refused."""
    parts = _parts(UniformProcess(GMM.K))
    den = GMM.denoiser(parts)
    grid = named_time_grid(7, "power:2+restart:0.3x2,0.1x1")
    assert torch.equal(grid, restart_time_grid(7, rho=2.0, restarts=[(0.3, 2), (0.1, 1)]))
    assert torch.allclose(grid[:5], time_grid(4, rho=2.0)) and grid[5:].tolist() == pytest.approx(
        [0.3, 0.15, 0, 0.1, 0]
    )
    calls = []
    state, rng = _start(parts, 500, 7)
    got = sample_mixed(
        lambda s, t: den(s, t), state, grid, parts=parts, rng=rng, callback=lambda i, t, *a: calls.append(t)
    )
    assert len(calls) == 7
    state, rng = _start(parts, 500, 7)
    want = sample_mixed(lambda s, t: den(s, t), state, time_grid(4, rho=2.0), parts=parts, rng=rng)
    for tr, k in ((0.3, 2), (0.1, 1)):
        want = noise_state(parts, want, torch.full((500,), tr, dtype=F64), rng)
        want = sample_mixed(lambda s, t: den(s, t), want, torch.linspace(tr, 0, k + 1, dtype=F64), parts=parts, rng=rng)
    assert torch.equal(got["label"], want["label"]) and torch.equal(got["pos"], want["pos"])
    for bad in ([1.0, 0.5, 0.7, 0.0], [1.0, 0.0, 1.5, 0.0], [1.0, 0.5, 0.5, 0.0]):
        with pytest.raises(ValueError, match="rise from 0"):
            sample_mixed(lambda s, t: den(s, t), state, bad, parts=parts, rng=rng)
    with pytest.raises(ValueError, match="fewer than the steps"):
        restart_time_grid(3, restarts=[(0.3, 2), (0.1, 1)])


def test_dpmpp_2m_continuous_step_is_second_order_and_beats_ddim():
    """DPM-Solver++(2M) on the continuous part against the exact probability-flow solution of
    a Gaussian: error falls ≈ 4× per doubling of the steps (second order; measured 3.7×;
    1st-order DDIM, ``euler``: 1.9×), and at 20 steps it is under half of DDIM's (0.27×)."""
    e10, e20, e40 = (_gaussian_pf_ode_error("dpmpp_2m", n) for n in (10, 20, 40))
    ddim10, ddim20 = _gaussian_pf_ode_error("euler", 10), _gaussian_pf_ode_error("euler", 20)
    assert e10 / e20 > 3.0 and e20 / e40 > 3.0, (e10, e20, e40)
    assert 1.5 < ddim10 / ddim20 < 2.5, (ddim10, ddim20)
    assert e10 < ddim10 and e20 < 0.5 * ddim20, (e10, ddim10, e20, ddim20)


def test_error_falls_with_steps():
    parts = _parts(MaskedProcess(GMM.K))
    den = GMM.denoiser(parts)
    ref = GMM.sample(4000, torch.Generator().manual_seed(3))
    errs = []
    for steps in (4, 16, 64):
        state, rng = _start(parts, 4000, 7)
        out = sample_mixed(lambda s, t: den(s, t), state, time_grid(steps), parts=parts, rng=rng)
        errs.append(_per_label_sw2(out["label"], out["pos"], *ref))
    assert errs[0] > errs[1] > errs[2], errs


def test_cfg_on_the_label_moves_samples_to_the_requested_component():
    parts = _parts(MaskedProcess(GMM.K))
    den = GMM.denoiser(parts)
    n, want = 2000, 3  # the rarest component (weight 0.1)
    cond = {"component": torch.full((n,), want), "cond_mask": torch.ones(n)}
    shares = {}
    for w in (0.0, 1.0, 3.0):
        state, rng = _start(parts, n, 11)
        g = mixed_cfg(den, parts, cond, w)
        out = sample_mixed(g, state, time_grid(64), parts=parts, rng=rng)
        near = ((out["pos"] - GMM.mu[want]).norm(dim=1) < 3 * float(GMM.s[want])).double()
        shares[w] = (float((out["label"] == want).double().mean()), float(near.mean()))
    assert abs(shares[0.0][0] - 0.1) < 0.03  # w = 0: the unconditional model
    assert shares[1.0][0] == 1.0 and shares[3.0][0] == 1.0  # conditional and guided: the requested label
    assert shares[3.0][1] > 0.95 and shares[0.0][1] < 0.2


def test_cfg_with_a_negative_condition_moves_away_from_it():
    parts = _parts(MaskedProcess(GMM.K))
    den = GMM.denoiser(parts)
    n = 2000
    neg = {"component": torch.zeros(n, dtype=torch.long), "cond_mask": torch.ones(n)}
    state, rng = _start(parts, n, 12)
    out = sample_mixed(mixed_cfg(den, parts, None, 2.0, uncond=neg), state, time_grid(64), parts=parts, rng=rng)
    assert float((out["label"] == 0).double().mean()) < 0.05  # the unconditional share is 0.4


def test_inpainting_pins_labels_and_positions_exactly():
    parts = _parts(UniformProcess(GMM.K))
    den = GMM.denoiser(parts)
    n = 64
    label, pos = GMM.sample(n, torch.Generator().manual_seed(5))
    km = {"label": torch.arange(n) % 2 == 0, "pos": (torch.arange(n) % 3 == 0)[:, None].expand(n, 2)}
    wrap = mixed_known_region(parts, {"label": label, "pos": pos}, km)
    state, rng = _start(parts, n, 13)
    for method in ("ancestral", "euler"):
        out = sample_mixed(wrap(lambda s, t: den(s, t)), state, time_grid(32), parts=parts, rng=rng, method=method)
        assert torch.equal(out["label"][km["label"]], label[km["label"]])
        assert torch.equal(out["pos"][km["pos"]], pos[km["pos"]])
        assert not torch.equal(out["pos"], pos)  # the rest is sampled


def test_a_sample_does_not_depend_on_its_batch():
    parts = _parts(MaskedProcess(GMM.K))
    den = GMM.denoiser(parts)

    def run(n):
        rng = SampleRNG(21, n)
        state = prior_state(parts, {"label": (), "pos": (2,)}, rng)
        return sample_mixed(lambda s, t: den(s, t), state, time_grid(16), parts=parts, rng=rng)

    big, small = run(6), run(2)
    assert torch.equal(big["label"][:2], small["label"]) and torch.allclose(big["pos"][:2], small["pos"])


def test_symmetric_edge_parts_stay_symmetric():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (3, 5, 5), generator=g)
    s = symmetrize(x)
    assert torch.equal(s, s.transpose(1, 2)) and torch.equal(torch.triu(s, 1), torch.triu(x, 1))
    parts = {"bond": CategoricalPart(MaskedProcess(3), symmetric=True)}
    rng = SampleRNG(0, 4)
    state = prior_state(parts, {"bond": (5, 5)}, rng)

    def den(st, t):
        return {"bond": torch.randn(st["bond"].shape + (3,), generator=torch.Generator().manual_seed(1), dtype=F64)}

    out = sample_mixed(den, state, time_grid(8), parts=parts, rng=rng)
    assert torch.equal(out["bond"], out["bond"].transpose(1, 2)) and int(out["bond"].max()) < 3


@pytest.mark.parametrize("proc,steps", [(UniformProcess(3), 8), (MaskedProcess(3), 1)])
def test_final_argmax_ends_on_the_most_probable_class_and_sample_draws(proc, steps):
    """A network that always predicts p(x₀) = (0.2, 0.5, 0.3): ``final="sample"`` ends with
    those frequencies, ``final="argmax"`` with class 1 everywhere. (A masked variable keeps the
    value it took at an earlier step, so there one step from the all-mask prior is checked.)"""
    parts = {"label": CategoricalPart(proc)}
    logits = torch.tensor([0.2, 0.5, 0.3], dtype=F64).log()

    def den(st, t):
        return {"label": logits.expand(st["label"].shape + (3,))}

    n = 4000
    drawn = sample_mixed(
        den, prior_state(parts, {"label": ()}, SampleRNG(0, n)), time_grid(steps), parts=parts, rng=SampleRNG(0, n)
    )["label"]
    freq = torch.bincount(drawn, minlength=3).double() / n
    assert (freq - torch.tensor([0.2, 0.5, 0.3], dtype=F64)).abs().max() < 0.03
    mode = sample_mixed(
        den,
        prior_state(parts, {"label": ()}, SampleRNG(0, n)),
        time_grid(steps),
        parts=parts,
        rng=SampleRNG(0, n),
        final="argmax",
    )["label"]
    assert int((mode == 1).sum()) == n
    with pytest.raises(ValueError, match="final step"):
        sample_mixed(den, {"label": drawn}, time_grid(2), parts=parts, rng=SampleRNG(0, n), final="mode")


def test_parts_config_round_trip():
    from polydiff.categorical import MarginalProcess
    from polydiff.schedules import SCHEDULES

    parts = {
        "pos": ContinuousPart(VEGeometric(0.01, 10.0), sigma_data=1.2),
        "atom": CategoricalPart(MarginalProcess(3, "cosine", [0.5, 0.3, 0.2]), loss="ce"),
        "bond": CategoricalPart(MaskedProcess(4), symmetric=True),
    }
    back = parts_from_config(parts_config(parts), lambda name, cfg: SCHEDULES[name](**cfg))
    assert parts_config(back) == parts_config(parts)
    assert float(back["pos"].sigma(0.5)) == float(parts["pos"].sigma(0.5))


@pytest.mark.parametrize("proc", ["masked", "uniform"])
def test_elbo_of_the_exact_model_equals_the_true_nll(proc):
    """The discrete-time ELBO (200 steps) of the exact Markov-chain model is the true NLL
    within 1 % (mean over 1,500 sequences; the bound is tight in the continuous-time limit
    because the exact model is the true time reversal)."""
    chain = MarkovChain(num_classes=5, length=16, seed=0)
    process = MaskedProcess(5) if proc == "masked" else UniformProcess(5)
    den = chain.denoiser(process)
    x0 = chain.sample(1500, torch.Generator().manual_seed(5))
    res = mixed_elbo(
        lambda s, t: {"seq": den(s["seq"], t)},
        {"seq": CategoricalPart(process)},
        {"seq": x0},
        GeneratorRNG(torch.Generator().manual_seed(1)),
        steps=200,
    )
    nll = -chain.log_prob(x0)
    assert abs(float(res["total"].mean() / nll.mean()) - 1) < 0.01, (float(res["total"].mean()), float(nll.mean()))
    # a wrong model (uniform clean-class guesses) is far from the bound
    bad = mixed_elbo(
        lambda s, t: {"seq": torch.zeros(s["seq"].shape + (5,), dtype=F64)},
        {"seq": CategoricalPart(process)},
        {"seq": x0[:200]},
        GeneratorRNG(torch.Generator().manual_seed(1)),
        steps=50,
    )
    assert float(bad["total"].mean()) > 1.2 * float(nll[:200].mean())


def test_continuous_elbo_of_an_exact_gaussian_is_its_nll():
    """One continuous part, data N(0, s²I) in 2-D: the exact denoiser is x̂₀ = s²/(s² + σ̃²)·x̃;
    the joint bound approaches −log N(x₀; 0, s²I) as the steps grow (its first-order
    discretisation bias is ≈ d·ln(s/σ̃_min)·ln(σ̃_max/σ̃_min)/steps nats)."""
    s = 0.7
    parts = {"pos": ContinuousPart(VEGeometric(0.01, 20.0))}
    x0 = torch.randn(3000, 2, generator=torch.Generator().manual_seed(2), dtype=F64) * s

    def den(st, t):
        sig = parts["pos"].sigma(t).reshape(-1, 1)
        return {"pos": s * s / (s * s + sig**2) * st["pos"]}

    res = mixed_elbo(den, parts, {"pos": x0}, GeneratorRNG(torch.Generator().manual_seed(3)), steps=2000)
    nll = 0.5 * (x0**2).sum(1) / s**2 + torch.log(torch.tensor(2 * torch.pi * s * s, dtype=F64))
    gap = float(res["total"].mean()) - float(nll.mean())
    assert -0.05 < gap < 0.08, gap


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.25])
def test_temperature_samples_the_sharpened_clean_class_distribution(temperature):
    """One step from the all-masked prior to t = 0 draws x₀ from softmax(logits/τ): class
    frequencies match w^{1/τ}/Σ (20,000 draws, 4 standard errors), and τ = 1 is the default."""
    w = torch.tensor([0.6, 0.3, 0.1], dtype=F64)
    parts = {"label": CategoricalPart(MaskedProcess(3))}
    n = 20000

    def den(state, t):
        return {"label": torch.log(w).expand(len(state["label"]), 3)}

    def run(**kw):
        rng = GeneratorRNG(torch.Generator().manual_seed(11))
        start = {"label": torch.full((n,), 3, dtype=torch.long)}  # the mask state
        return sample_mixed(den, start, time_grid(1), parts=parts, rng=rng, **kw)["label"]

    out = run(temperature=temperature)
    want = w ** (1 / temperature) / (w ** (1 / temperature)).sum()
    freq = torch.bincount(out, minlength=3).double() / n
    assert ((freq - want).abs() <= 4 * (want * (1 - want) / n).sqrt()).all(), (freq, want)
    if temperature == 1.0:
        assert torch.equal(out, run())
    with pytest.raises(ValueError, match="temperature"):
        run(temperature=0.0)


def test_a_relabelling_restart_takes_a_noisy_sample_for_the_state_at_its_noise_level():
    """Data N(μ, s²I), exact denoiser: samples carrying Gaussian error of σ_e = 1 per
    coordinate, relabelled (``restart_noise=[0]``: no fresh noise) as the state at t_r with
    σ̃(t_r) = σ_e and brought back along the exact PF-ODE (DPM-Solver++(2M), 32 steps), have the
    data's spread s again (within 2 %); a full restart to the same t_r sees noise √2·σ_e while
    told σ_e and comes back with the spread s·√((s² + 2σ_e²)/(s² + σ_e²)) (1.29·s) the same
    ODE maps it to — both within 2 % of the closed form."""
    mu, s, sigma_e = torch.tensor([1.0, -2.0], dtype=F64), 0.7, 1.0
    part = ContinuousPart(VEGeometric(0.002, 20.0))
    t_r = float(torch.log(torch.tensor(sigma_e / 0.002)) / torch.log(torch.tensor(20.0 / 0.002)))
    assert float(part.sigma(t_r)) == pytest.approx(sigma_e)

    def exact(state, t):
        sigma = part.sigma(t).reshape(-1, 1)
        return {"pos": mu + s * s / (s * s + sigma * sigma) * (state["pos"] - mu)}

    g = torch.Generator().manual_seed(5)
    x0 = mu + s * torch.randn(20000, 2, generator=g, dtype=F64)
    off = x0 + sigma_e * torch.randn(x0.shape, generator=g, dtype=F64)
    grid = torch.cat([torch.zeros(1, dtype=F64), torch.linspace(t_r, 0.0, 33, dtype=F64)])  # uniform in log σ̃
    want = {0.0: s, 1.0: s * ((s * s + 2 * sigma_e**2) / (s * s + sigma_e**2)) ** 0.5}
    for gamma, spread in want.items():
        rng = GeneratorRNG(torch.Generator().manual_seed(6))
        out = sample_mixed(
            exact, {"pos": off}, grid, parts={"pos": part}, rng=rng, method="dpmpp_2m", restart_noise=[gamma]
        )
        assert float(out["pos"].std(0).mean()) == pytest.approx(spread, rel=0.02), gamma
        assert torch.allclose(out["pos"].mean(0), mu, atol=0.03)


def test_restart_noise_scales_the_continuous_noise_keeps_the_labels_and_is_checked():
    """A partial restart (γ = 0.5) hands the next call x₀ + 0.5·σ̃_t·ε and the unchanged labels;
    γ = 1 (and None) is the full restart, bit for bit; γ = 0 draws nothing, so the call sees
    the finished sample itself; a list of the wrong length or outside [0, 1] is refused."""
    parts = _parts(UniformProcess(GMM.K))
    den = GMM.denoiser(parts)
    label, pos = GMM.sample(4000, torch.Generator().manual_seed(4))
    grid = [0.0, 0.5, 0.0]
    sigma = float(parts["pos"].sigma(0.5))
    seen = {}

    def run(noise):
        rng = GeneratorRNG(torch.Generator().manual_seed(6))
        return sample_mixed(
            lambda s, t: den(s, t),
            {"label": label, "pos": pos},
            grid,
            parts=parts,
            rng=rng,
            restart_noise=noise,
            callback=lambda i, t, state, out: seen.__setitem__(noise if noise is None else tuple(noise), state),
        )

    run([0.5])
    st = seen[(0.5,)]
    assert torch.equal(st["label"], label)
    assert float(((st["pos"] - pos) / sigma).std()) == pytest.approx(0.5, rel=0.03)
    full, default = run([1.0]), run(None)
    assert torch.equal(full["pos"], default["pos"]) and torch.equal(full["label"], default["label"])
    assert not torch.equal(seen[(1.0,)]["label"], label)  # a full restart re-noises the labels too
    run([0.0])
    assert torch.equal(seen[(0.0,)]["pos"], pos) and torch.equal(seen[(0.0,)]["label"], label)
    rng = GeneratorRNG(torch.Generator().manual_seed(6))
    for bad in ([1.0, 0.0], [], [1.5], [-0.1], "x"):
        with pytest.raises(ValueError, match="restart_noise needs one scale"):
            sample_mixed(
                lambda s, t: den(s, t), {"label": label, "pos": pos}, grid, parts=parts, rng=rng, restart_noise=bad
            )
