"""A KL-regularised convolutional VAE on log-mel spectrograms (Kingma & Welling 2014;
the latent-diffusion autoencoder of Rombach et al. 2022 / AudioLDM, Liu et al. 2023, shrunk
for CPUs).

Shapes: normalised log-mel ``[B, 1, n_mels, T]`` (n_mels and T multiples of 4) →
posterior mean/log-variance ``[B, z_channels, n_mels/4, T/4]`` → reconstruction
``[B, 1, n_mels, T]``. Loss: L1 reconstruction + ``kl_weight`` · KL(q(z|x) ‖ N(0, I)) per
element (Rombach et al. use 1e-6 with perceptual/GAN terms; we use plain L1 and 1e-4).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class MelVAE(nn.Module):
    """Encoder: two stride-2 4×4 convs (÷4 in frequency and time), a 3×3 conv block, a 1×1
    projection to (mean, log-variance); the decoder mirrors it with transposed convs.
    ``ch``: base width (kept small: the full-resolution layers dominate CPU time)."""

    downsample = 4

    def __init__(self, z_channels: int = 4, ch: int = 32):
        super().__init__()
        self.z_channels = z_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, ch, 4, stride=2, padding=1),
            nn.GroupNorm(8, ch),
            nn.SiLU(),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1),
            nn.GroupNorm(8, 2 * ch),
            nn.SiLU(),
            _block(2 * ch, 2 * ch),
            nn.Conv2d(2 * ch, 2 * z_channels, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(z_channels, 2 * ch, 3, padding=1),
            nn.GroupNorm(8, 2 * ch),
            nn.SiLU(),
            _block(2 * ch, 2 * ch),
            nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1),
            nn.GroupNorm(8, ch),
            nn.SiLU(),
            nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(ch // 2, 1, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 1, F, T]`` → (mean, logvar) ``[B, z, F/4, T/4]``; logvar clamped to [−30, 20]."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30, 20)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        z = mean + (0.5 * logvar).exp() * eps
        return self.decode(z), mean, logvar


def vae_loss(vae: MelVAE, x: torch.Tensor, kl_weight: float = 1e-4, generator=None) -> tuple[torch.Tensor, dict]:
    """L1 reconstruction (mean per element) + kl_weight · KL (mean per latent element)."""
    rec, mean, logvar = vae(x, generator)
    l1 = (rec - x).abs().mean()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    return l1 + kl_weight * kl, {"l1": float(l1.detach()), "kl": float(kl.detach())}


def train_vae(
    vae: MelVAE,
    mels: torch.Tensor,
    *,
    steps: int = 400,
    batch_size: int = 16,
    lr: float = 2e-3,
    kl_weight: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
) -> list[tuple[int, float]]:
    """Fit ``vae`` on normalised log-mels ``[n, 1, F, T]`` (AdamW, cosine decay); returns
    ``(step, L1)`` every 25 steps."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(1, steps))))
    vae.train()
    dev = next(vae.parameters()).device
    log = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="train mel VAE", leave=False)
    for step in range(steps):
        idx = torch.randint(0, mels.shape[0], (batch_size,), generator=g)
        loss, parts = vae_loss(vae, mels[idx].to(dev), kl_weight, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % 25 == 0 or step + 1 == steps:
            log.append((step + 1, parts["l1"]))
            if bar is not None:
                bar.set_postfix(l1=f"{parts['l1']:.3f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    vae.eval()
    return log
