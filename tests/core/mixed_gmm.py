"""A Gaussian mixture whose component label is a categorical part of the state: the joint
of (label, position) has a closed-form denoiser for any categorical process on the label
and Gaussian noise on the position — the ground truth of the mixed-state tests."""

from __future__ import annotations

import math

import torch

F64 = torch.float64


class LabelledMixture:
    """K isotropic components in ``d`` dimensions: weights w_k, means μ_k, stds s_k."""

    def __init__(self, weights, means, stds):
        self.w = torch.as_tensor(weights, dtype=F64) / float(sum(weights))
        self.mu = torch.as_tensor(means, dtype=F64)
        self.s = torch.as_tensor(stds, dtype=F64)
        self.K, self.d = self.mu.shape

    def sample(self, n: int, generator: torch.Generator, component: int | None = None):
        """``(label [n] long, pos [n, d])``; ``component`` fixes the label."""
        if component is None:
            k = torch.multinomial(self.w, n, replacement=True, generator=generator)
        else:
            k = torch.full((n,), int(component), dtype=torch.long)
        z = torch.randn(n, self.d, generator=generator, dtype=F64)
        return k, self.mu[k] + self.s[k, None] * z

    def responsibilities(self, state: dict, t, process, sigma) -> torch.Tensor:
        """p(k | label_t, pos_t) ``[n, K]`` (exact)."""
        pos, lab = state["pos"].to(F64), state["label"]
        v = self.s[None, :] ** 2 + sigma.reshape(-1, 1) ** 2  # [n, K]
        sq = ((pos[:, None, :] - self.mu[None]) ** 2).sum(-1)
        logp = torch.log(self.w)[None] - 0.5 * sq / v - 0.5 * self.d * torch.log(2 * math.pi * v)
        logp = logp + torch.log(process.likelihood(lab, t).clamp(min=1e-300))
        return torch.softmax(logp, dim=-1)

    def denoiser(self, parts):
        """The exact joint denoiser ``D(state, t, cond) → {"label": logits, "pos": x̂₀}``;
        ``cond["component"]`` with ``cond_mask`` 1 conditions on that component."""
        process, pos_part = parts["label"].process, parts["pos"]

        def exact(state, t, cond=None):
            sigma = pos_part.sigma(t)
            r = self.responsibilities(state, t, process, sigma)
            if cond is not None and "component" in cond:
                onehot = torch.nn.functional.one_hot(cond["component"], self.K).to(F64)
                m = cond["cond_mask"].reshape(-1, 1).to(F64)
                r = m * onehot + (1 - m) * r
            pos = state["pos"].to(F64)
            shrink = (self.s[None] ** 2 / (self.s[None] ** 2 + sigma.reshape(-1, 1) ** 2))[..., None]
            comp = self.mu[None] + shrink * (pos[:, None, :] - self.mu[None])  # [n, K, d]
            x0 = (r[..., None] * comp).sum(1)
            return {"label": torch.log(r.clamp(min=1e-300)), "pos": x0}

        return exact


def four_components() -> LabelledMixture:
    return LabelledMixture(
        [0.4, 0.3, 0.2, 0.1], [[-2.0, 0.0], [2.0, 0.5], [0.0, 2.5], [0.5, -2.5]], [0.5, 0.7, 0.4, 0.6]
    )
