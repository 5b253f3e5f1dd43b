"""A learned discrete diffusion model: a small network trained with ``categorical_loss`` (masked
process, ELBO weighting) on the exactly known Markov chain of ``markov.py`` reaches the bigram
statistics of the chain when sampled with ``ancestral_step`` (slow: ≈ 35 s on one thread)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from polydiff.categorical import MaskedProcess, ancestral_step, categorical_loss, time_grid
from polydiff.rng import GeneratorRNG

sys.path.insert(0, str(Path(__file__).parent))
from markov import MarkovChain, bigram_tv  # noqa: E402

CHAIN = MarkovChain(num_classes=5, length=16, seed=0)
K, L = CHAIN.K, CHAIN.L


class MLPDenoiser(nn.Module):
    """Clean-class logits ``[B, L, K]`` of all L tokens (K + 1 states, the mask included) at t:
    token embeddings flattened → 3 residual SiLU layers with a sinusoidal time embedding."""

    def __init__(self, width: int = 512, emb: int = 16):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(200.0), 16)))
        self.tok = nn.Embedding(K + 1, emb)
        self.time = nn.Linear(32, width)
        self.inp = nn.Linear(emb * L, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(2))
        self.out = nn.Linear(width, L * K)

    def forward(self, x, t):
        e = t.float()[:, None] * self.freqs[None]
        h = nn.functional.silu(self.inp(self.tok(x).flatten(1)) + self.time(torch.cat([e.sin(), e.cos()], -1)))
        for layer in self.hidden:
            h = h + nn.functional.silu(layer(h))
        return self.out(h).reshape(-1, L, K)


def _train(process, steps: int = 1000, batch: int = 256, lr: float = 2e-3) -> MLPDenoiser:
    """Fresh chain samples every step; t ~ U(10⁻³, 1]; loss = ELBO per token."""
    torch.manual_seed(0)
    net = MLPDenoiser()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(1)
    rng = GeneratorRNG(g)
    for _ in range(steps):
        x0 = CHAIN.sample(batch, g)
        t = 1e-3 + (1 - 1e-3) * torch.rand(batch, generator=g, dtype=torch.float64)
        x_t = process.sample_forward(x0, t, rng)
        loss = categorical_loss(process, net(x_t, t), x0, x_t, t, kind="elbo").mean() / L
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def _sample(net, process, n: int, steps: int, seed: int) -> torch.Tensor:
    rng = GeneratorRNG(torch.Generator().manual_seed(seed))
    x = torch.full((n, L), process.mask_index, dtype=torch.long)
    times = time_grid(steps)
    for i in range(steps):
        t, s = times[i].expand(n), times[i + 1].expand(n)
        x = ancestral_step(process, x, net(x, t), t, s, rng)
    return x


def _independent_positions(n: int, seed: int) -> torch.Tensor:
    """Each position drawn from the chain's own marginal, independently: the right unigrams, no bigrams."""
    g = torch.Generator().manual_seed(seed)
    marg = [CHAIN.initial]
    for _ in range(L - 1):
        marg.append(marg[-1] @ CHAIN.transition)
    return torch.stack([torch.multinomial(m, n, replacement=True, generator=g) for m in marg], 1)


@pytest.mark.slow
def test_learned_masked_model_reaches_the_chain_bigrams():
    """n = 5,000 sequences sampled with ancestral_step at 32 steps: bigram TV (mean over
    positions) to a fresh true set within 3× the Monte-Carlo floor (mean TV between independent
    true sets of the same size). Measured: 1,000 training steps give 1.7× the floor (2.4× at
    8 steps, 1.5× at 64); a model with the right marginals but no bigrams is far outside (10×)."""
    process = MaskedProcess(K)
    net = _train(process)
    n = 5000
    truth = CHAIN.sample(n, torch.Generator().manual_seed(3))
    floor = (
        sum(
            bigram_tv(
                CHAIN.sample(n, torch.Generator().manual_seed(100 + k)),
                CHAIN.sample(n, torch.Generator().manual_seed(200 + k)),
                K,
            )
            for k in range(3)
        )
        / 3
    )
    err = bigram_tv(_sample(net, process, n, 32, seed=7), truth, K)
    no_bigrams = bigram_tv(_independent_positions(n, 5), truth, K)
    assert err <= 3 * floor, (err, floor)
    assert no_bigrams > 3 * floor, (no_bigrams, floor)  # the threshold tells learnt bigrams apart
    assert set(_sample(net, process, 64, 32, seed=8).unique().tolist()) <= set(range(K))  # no mask left
