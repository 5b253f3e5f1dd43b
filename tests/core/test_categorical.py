"""Categorical processes against closed forms, and the discrete samplers against an exactly
solvable Markov chain (E[x₀ | x_t] by forward–backward)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from polydiff.categorical import (
    KeepSchedule,
    MarginalProcess,
    MaskedProcess,
    UniformProcess,
    ancestral_step,
    categorical_loss,
    euler_step,
    process_from_config,
    sample_categorical,
    time_grid,
)
from polydiff.rng import GeneratorRNG, SampleRNG

sys.path.insert(0, str(Path(__file__).parent))
from markov import MarkovChain, bigram_tv  # noqa: E402

F64 = torch.float64
PROCESSES = {
    "masked": lambda: MaskedProcess(4, "linear"),
    "uniform": lambda: UniformProcess(4, "cosine"),
    "marginal": lambda: MarginalProcess(4, "linear", [0.5, 0.25, 0.15, 0.10]),
}


def _transition(process, t, s):
    """The S×S matrix q(x_t | x_s) = α(t|s)·I + (1 − α(t|s))·1πᵀ, built independently."""
    a = float(process.schedule.alpha(t) / process.schedule.alpha(s))
    S = process.num_states
    return a * torch.eye(S, dtype=F64) + (1 - a) * process.prior()[None, :].expand(S, S)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_forward_marginal_is_the_product_of_transitions(name):
    """q(x_t | x₀) = [Q(s|0) Q(t|s)] row x₀ for any s < t (Markov), and ends at the prior."""
    p = PROCESSES[name]()
    x0 = torch.arange(4)
    t, s = 0.7, 0.3
    q_t = p.marginal(x0, torch.full((4,), t, dtype=F64))
    via = (_transition(p, s, 0.0) @ _transition(p, t, s))[:4]
    assert torch.allclose(q_t, via, atol=1e-12)
    assert torch.allclose(p.marginal(x0, torch.ones(4, dtype=F64)), p.prior().expand(4, -1), atol=1e-12)
    assert torch.allclose(p.marginal(x0, torch.zeros(4, dtype=F64)), torch.eye(p.num_states, dtype=F64)[:4])


@pytest.mark.parametrize("name", list(PROCESSES))
def test_posterior_equals_bayes_on_the_transition_matrices(name):
    p = PROCESSES[name]()
    t, s = 0.8, 0.35
    Qs0, Qts = _transition(p, s, 0.0), _transition(p, t, s)
    for x0 in range(4):
        for xt in range(p.num_states):
            joint = Qs0[x0] * Qts[:, xt]  # q(x_s | x₀)·q(x_t | x_s) over x_s
            if joint.sum() == 0:
                continue
            want = joint / joint.sum()
            got = p.posterior(torch.tensor([xt]), torch.eye(4, dtype=F64)[[x0]], torch.tensor([t]), torch.tensor([s]))
            assert torch.allclose(got[0], want, atol=1e-12), (x0, xt)


@pytest.mark.parametrize("name", list(PROCESSES))
def test_posterior_with_a_predicted_distribution_is_the_mixture_over_x0(name):
    p = PROCESSES[name]()
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(6, 4, generator=g, dtype=F64), -1)
    xt = torch.tensor([0, 1, 2, 3, p.num_states - 1, 2])
    t, s = torch.full((6,), 0.6, dtype=F64), torch.full((6,), 0.2, dtype=F64)
    got = p.posterior(xt, probs, t, s)
    restricted = p.restrict(probs, xt, t)
    want = sum(restricted[:, c : c + 1] * p.posterior(xt, torch.eye(4, dtype=F64)[[c] * 6], t, s) for c in range(4))
    assert torch.allclose(got, want, atol=1e-12)
    # at s = 0 the step returns the clean-class distribution itself
    end = p.posterior(xt, probs, t, torch.zeros(6, dtype=F64))
    assert torch.allclose(end[:, :4], restricted, atol=1e-12)


def test_masked_carry_over_and_mdlm_weight():
    """An unmasked token never changes; the ELBO loss of the masked process is MDLM's
    −α'/(1 − α)·CE on masked tokens."""
    p = MaskedProcess(3, "linear")
    probs = torch.softmax(torch.randn(1, 3, dtype=F64), -1)
    post = p.posterior(torch.tensor([1]), probs, torch.tensor([0.5]), torch.tensor([0.2]))
    assert torch.allclose(post, torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=F64))
    x0 = torch.tensor([[0, 2, 1]])
    xt = torch.tensor([[3, 2, 3]])  # positions 0 and 2 masked
    logits = torch.randn(1, 3, 3, dtype=F64)
    t = torch.tensor([0.6], dtype=F64)
    loss = categorical_loss(p, logits, x0, xt, t, kind="elbo", steps=100000)
    ce = torch.nn.functional.cross_entropy(logits[0], x0[0], reduction="none")
    want = (1 / 0.6) * (ce[0] + ce[2])
    assert torch.allclose(loss, want.reshape(1), rtol=1e-3)
    masked_only = categorical_loss(p, logits, x0, xt, t, kind="ce", mask=torch.tensor([[True, False, True]]))
    assert torch.allclose(masked_only, (ce[0] + ce[2]).reshape(1))


def test_keep_schedules_and_config_round_trip():
    for kind in KeepSchedule.KINDS:
        k = KeepSchedule(kind)
        t = torch.linspace(0.05, 0.95, 7, dtype=F64)
        h = 1e-6
        assert torch.allclose(k.d_alpha(t), (k.alpha(t + h) - k.alpha(t - h)) / (2 * h), atol=1e-7)
        assert float(k.alpha(0.0)) == 1.0 and abs(float(k.alpha(1.0))) < 1e-12
    for make in PROCESSES.values():
        p = make()
        q = process_from_config(p.config())
        assert type(q) is type(p) and torch.equal(q.prior(), p.prior()) and q.schedule.kind == p.schedule.kind


def test_sampling_is_per_sample_and_follows_the_probabilities():
    probs = torch.tensor([[0.1, 0.6, 0.3]], dtype=F64).expand(4, 5, 3)
    a = sample_categorical(probs, SampleRNG(0, 4))
    b = sample_categorical(probs[:2], SampleRNG(0, 2))
    assert torch.equal(a[:2], b)  # sample i does not depend on its batch
    big = sample_categorical(
        torch.tensor([[0.1, 0.6, 0.3]], dtype=F64).expand(200000, 3), GeneratorRNG(torch.Generator().manual_seed(0))
    )
    freq = torch.bincount(big, minlength=3).double() / 200000
    assert torch.allclose(freq, torch.tensor([0.1, 0.6, 0.3], dtype=F64), atol=0.005)


def test_marginal_process_fits_frequencies():
    x0 = torch.tensor([[0, 0, 1, 2], [0, 1, 1, 3]])
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    p = MarginalProcess.fit(x0, 4, mask=mask)
    assert torch.allclose(p.prior(), torch.tensor([3, 3, 1, 0], dtype=F64) / 7)


# -- the Markov chain: exact E[x₀ | x_t] -----------------------------------------------------------------
CHAIN = MarkovChain(num_classes=5, length=16, seed=0)
#: the steps at which each sampler is documented to reach 2× the Monte-Carlo floor on this chain
DOCUMENTED_STEPS = 32


def _sample_chain(process, step, steps: int, n: int, seed: int) -> torch.Tensor:
    rng = GeneratorRNG(torch.Generator().manual_seed(seed))
    den = CHAIN.denoiser(process)
    x = process.sample_prior((CHAIN.L,), SampleRNG(seed, n)) if n <= 64 else None
    if x is None:
        x = process.sample_forward(torch.zeros(n, CHAIN.L, dtype=torch.long), torch.ones(n, dtype=F64), rng)
    times = time_grid(steps)
    for i in range(steps):
        t, s = times[i].expand(n), times[i + 1].expand(n)
        x = step(process, x, den(x, t), t, s, rng)
    return x


def _floor(n: int, pairs: int = 3) -> float:
    vals = [
        bigram_tv(
            CHAIN.sample(n, torch.Generator().manual_seed(100 + k)),
            CHAIN.sample(n, torch.Generator().manual_seed(200 + k)),
            CHAIN.K,
        )
        for k in range(pairs)
    ]
    return sum(vals) / len(vals)


@pytest.mark.parametrize("proc", ["masked", "uniform"])
@pytest.mark.parametrize("step", [ancestral_step, euler_step], ids=["ancestral", "ctmc_euler"])
def test_chain_bigrams_within_twice_the_floor(proc, step):
    """n = 10,000 sequences: bigram TV (mean over positions) to a fresh true set within 2× the
    Monte-Carlo floor (mean TV of independent true pairs) at the documented steps; the
    error falls with steps (2 → 8 → documented)."""
    process = MaskedProcess(5) if proc == "masked" else UniformProcess(5)
    n = 10000
    truth = CHAIN.sample(n, torch.Generator().manual_seed(3))
    floor = _floor(n)
    errs = [bigram_tv(_sample_chain(process, step, k, n, 7), truth, CHAIN.K) for k in (2, 8, DOCUMENTED_STEPS)]
    assert errs[-1] <= 2 * floor, (errs, floor)
    assert errs[0] > errs[1] > errs[2], errs
