"""A small convolutional VAE (Kingma & Welling 2014) for latent diffusion (Rombach et al.
2022): images ``[B, C, H, W]`` in [-1, 1] ↔ latents ``[B, z, H/2^k, W/2^k]``.

Latent diffusion runs the denoiser on ``scale · μ(x)`` where ``scale`` = 1/std of the
training latents (Rombach et al.'s 0.18215 is the same idea) so the latent has unit
variance like EDM's σ_data assumption; :meth:`ConvVAE.decode` maps back to pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .unet import group_norm


class _Res(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            group_norm(ch),
            nn.SiLU(),
            nn.Conv2d(ch, ch, 3, padding=1),
            group_norm(ch),
            nn.SiLU(),
            nn.Conv2d(ch, ch, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


class ConvVAE(nn.Module):
    """Args:
    in_channels: image channels; latent_channels: z; downsample: k halvings;
    channels: width of the convolutions.
    """

    def __init__(self, in_channels: int = 1, latent_channels: int = 4, downsample: int = 2, channels: int = 32):
        super().__init__()
        self.in_channels, self.latent_channels, self.downsample = in_channels, latent_channels, downsample
        enc = [nn.Conv2d(in_channels, channels, 3, padding=1)]
        for _ in range(downsample):
            enc += [_Res(channels), nn.Conv2d(channels, channels, 3, stride=2, padding=1)]
        enc += [_Res(channels), group_norm(channels), nn.SiLU(), nn.Conv2d(channels, 2 * latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(latent_channels, channels, 3, padding=1), _Res(channels)]
        for _ in range(downsample):
            dec += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(channels, channels, 3, padding=1),
                _Res(channels),
            ]
        dec += [group_norm(channels), nn.SiLU(), nn.Conv2d(channels, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``[B, C, H, W]`` → (μ, log σ²), each ``[B, z, H/2^k, W/2^k]``."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30, 20)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z ``[B, z, h, w]`` → images ``[B, C, h·2^k, w·2^k]`` (unbounded; clamp to [-1, 1] for display)."""
        return self.decoder(z)

    def loss(self, x: torch.Tensor, beta: float = 1e-3, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-pixel MSE reconstruction + β·KL(q(z|x) ‖ N(0, I)) per latent entry (a β-VAE)."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        rec = F.mse_loss(self.decode(z), x)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).mean()
        return rec + beta * kl


def train_vae(
    vae: ConvVAE,
    images: torch.Tensor,
    *,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 2e-3,
    beta: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Fit the VAE on ``images`` ``[N, C, H, W]`` in [-1, 1]; returns the loss per step."""
    g = torch.Generator().manual_seed(seed)
    dev = next(vae.parameters()).device
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    vae.train()
    losses = []
    for _ in tqdm(range(steps), desc="train vae", leave=False, disable=not progress):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=g)
        loss = vae.loss(images[idx].to(dev), beta=beta, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    vae.eval()
    return losses


@torch.no_grad()
def latent_scale(vae: ConvVAE, images: torch.Tensor, batch: int = 512) -> float:
    """1 / std of μ(x) over ``images`` (the factor that gives the latent unit variance)."""
    dev = next(vae.parameters()).device
    mus = torch.cat([vae.encode(images[i : i + batch].to(dev))[0].cpu() for i in range(0, images.shape[0], batch)])
    return float(1.0 / mus.std().clamp(min=1e-6))
