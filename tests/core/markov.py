"""An exactly solvable discrete data distribution: a first-order Markov chain over length-L
sequences of K classes. Under any categorical process of :mod:`polydiff.categorical` the
variables of x_t are conditionally independent given x₀, each observed through the
emission q(x_t^i | x₀^i), so E[x₀ | x_t] per position is computed exactly by the
forward–backward algorithm — the ground truth the discrete samplers are measured against."""

from __future__ import annotations

import torch

F64 = torch.float64


class MarkovChain:
    """``initial`` [K] and ``transition`` [K, K] (rows sum to 1) over sequences of ``length``."""

    def __init__(self, num_classes: int = 5, length: int = 16, seed: int = 0, concentration: float = 0.4):
        g = torch.Generator().manual_seed(seed)
        dirichlet = torch.distributions.Dirichlet(torch.full((num_classes,), concentration, dtype=F64))
        torch.manual_seed(seed)
        self.initial = torch.distributions.Dirichlet(torch.full((num_classes,), 2.0, dtype=F64)).sample()
        self.transition = dirichlet.sample((num_classes,))
        self.K, self.L = num_classes, length
        self._g = g

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, L]`` long."""
        x = torch.empty(n, self.L, dtype=torch.long)
        x[:, 0] = torch.multinomial(self.initial.expand(n, -1), 1, generator=generator).squeeze(1)
        for i in range(1, self.L):
            x[:, i] = torch.multinomial(self.transition[x[:, i - 1]], 1, generator=generator).squeeze(1)
        return x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) ``[n]`` (nats)."""
        lp = torch.log(self.initial[x[:, 0]])
        return lp + torch.log(self.transition[x[:, :-1], x[:, 1:]]).sum(1)

    def posterior_marginals(self, emission: torch.Tensor) -> torch.Tensor:
        """p(x₀^i = c | observations) ``[n, L, K]`` given emission likelihoods ``[n, L, K]``."""
        n = emission.shape[0]
        fwd = torch.empty(n, self.L, self.K, dtype=F64)
        a = self.initial * emission[:, 0]
        fwd[:, 0] = a / a.sum(-1, keepdim=True)
        for i in range(1, self.L):
            a = (fwd[:, i - 1] @ self.transition) * emission[:, i]
            fwd[:, i] = a / a.sum(-1, keepdim=True)
        bwd = torch.ones(n, self.L, self.K, dtype=F64)
        for i in range(self.L - 2, -1, -1):
            b = (emission[:, i + 1] * bwd[:, i + 1]) @ self.transition.T
            bwd[:, i] = b / b.sum(-1, keepdim=True)
        post = fwd * bwd
        return post / post.sum(-1, keepdim=True)

    def denoiser(self, process):
        """The exact clean-class logits ``D(x_t [n, L], t [n]) → [n, L, K]`` under ``process``."""

        def exact(x_t, t):
            return torch.log(self.posterior_marginals(process.likelihood(x_t, t)).clamp(min=1e-300))

        return exact


def bigram_tv(a: torch.Tensor, b: torch.Tensor, K: int) -> float:
    """Mean over positions i of the total variation between the (x^i, x^{i+1}) frequencies of
    sequence sets ``a`` and ``b`` ``[n, L]``."""

    def freq(x):
        idx = x[:, :-1] * K + x[:, 1:]
        f = torch.zeros(x.shape[1] - 1, K * K, dtype=F64)
        f.scatter_add_(1, idx.T, torch.ones_like(idx.T, dtype=F64))
        return f / x.shape[0]

    return float(0.5 * (freq(a) - freq(b)).abs().sum(1).mean())
