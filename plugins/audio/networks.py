"""Denoisers for the mel-VAE latent: a small U-Net (Ronneberger et al. 2015, in the DDPM
form of Ho et al. 2020) whose residual blocks take a time + label embedding as a
scale/shift (FiLM / adaptive GroupNorm, Dhariwal & Nichol 2021).

Called as ``net(x_in, time, cond)``: ``x_in [B, C, H, W]`` (latent channels, mel bands/4,
frames/4), ``time [B]`` float32 (EDM c_noise), ``cond`` a dict with ``label [B]`` (long)
and ``cond_mask [B]`` (1 = conditional, 0 = the learned null label, used by CFG and CFG
dropout) or ``None`` (unconditional). Output ``[B, C, H, W]``.

With ``text={"encoder": "tiny", **options}`` the U-Net is conditioned on a prompt instead
(:mod:`polydiff.text`): ``cond`` carries ``prompt_ids [B, L]``, ``prompt_mask [B, L]`` and
``cond_mask [B]`` (0 = the empty prompt, the null condition); a
:class:`polydiff.text.TextConditioning` encodes the prompt, cross-attention blocks
(Rombach et al. 2022) read it at both resolutions (after the lowest level's self-attention
and after the up block), and the pooled prompt embedding is added to the time embedding.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B] → [B, dim]`` (Vaswani et al. 2017), scaled for c_noise ∈ ~[−2, 2]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None] / 4.0
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class LabelEmbedding(nn.Module):
    """``n_classes`` learned vectors plus one learned null vector (index ``n_classes``)
    chosen where ``cond_mask`` is 0 or no label is given."""

    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        self.n_classes = n_classes
        self.table = nn.Embedding(n_classes + 1, dim)

    def forward(self, cond: dict | None, batch: int, device) -> torch.Tensor:
        null = torch.full((batch,), self.n_classes, dtype=torch.long, device=device)
        if not cond or "label" not in cond or self.n_classes == 0:
            return self.table(null)
        lab = cond["label"].to(device=device, dtype=torch.long)
        if "cond_mask" in cond:
            lab = torch.where(cond["cond_mask"].to(device) > 0.5, lab, null)
        return self.table(lab)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions of the lowest resolution."""

    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(8, ch)
        self.attn = nn.MultiheadAttention(ch, heads, batch_first=True)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)
        h, _ = self.attn(h, h, h, need_weights=False)
        return x + h.transpose(1, 2).reshape(B, C, H, W)


class LatentUNet(nn.Module):
    """Two-level U-Net: ``[B, C, H, W]`` → ``[B, C, H, W]`` (H, W even).

    Args:
        in_channels: latent channels. n_classes: label vocabulary (0 = unconditional).
        ch: base width; ch_mult: width multipliers per level; attention at the lowest level.
        text: ``{"encoder": name, **encoder options}`` to condition on prompts (then
            ``n_classes`` must be 0), or None (labels, the default).
    """

    def __init__(
        self,
        in_channels: int = 4,
        n_classes: int = 0,
        ch: int = 32,
        ch_mult=(1, 2),
        emb_dim: int = 128,
        text: dict | None = None,
    ):
        super().__init__()
        if text and n_classes:
            raise ValueError("a text-conditioned LatentUNet takes no class labels (n_classes must be 0)")
        self.in_channels, self.n_classes = in_channels, n_classes
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label = LabelEmbedding(n_classes, emb_dim)
        self.ch = ch
        c1, c2 = ch * ch_mult[0], ch * ch_mult[1]
        self.inp = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.down1 = ResBlock(c1, c1, emb_dim)
        self.pool = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.mid1 = ResBlock(c2, c2, emb_dim)
        self.attn = SelfAttention(c2)
        self.mid2 = ResBlock(c2, c2, emb_dim)
        self.up = nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1)
        self.up1 = ResBlock(2 * c1, c1, emb_dim)
        self.out = nn.Sequential(nn.GroupNorm(8, c1), nn.SiLU(), nn.Conv2d(c1, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)
        # text modules come last, so a label model's initialisation (and state dict) is unchanged
        self.text = None
        if text:
            from polydiff.text import CrossAttention2d, TextConditioning

            opts = dict(text)
            self.text = TextConditioning(opts.pop("encoder", "tiny"), opts)
            self.text_emb = nn.Linear(self.text.dim, emb_dim)
            self.xattn_mid = CrossAttention2d(c2, self.text.dim)
            self.xattn_up = CrossAttention2d(c1, self.text.dim)

    def forward(self, x: torch.Tensor, time: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        B = x.shape[0]
        emb = self.time_mlp(timestep_embedding(time.reshape(-1).expand(B), self.ch)) + self.label(cond, B, x.device)
        if self.text is not None:
            ctx, key_mask, pooled = self.text(cond, B, x.device)
            emb = emb + self.text_emb(pooled)
        emb = F.silu(emb)
        h1 = self.down1(self.inp(x), emb)
        h = self.pool(h1)
        h = self.attn(self.mid1(h, emb))
        if self.text is not None:
            h = self.xattn_mid(h, ctx, key_mask)
        h = self.mid2(h, emb)
        h = self.up(h)
        h = self.up1(torch.cat([h, h1], dim=1), emb)
        if self.text is not None:
            h = self.xattn_up(h, ctx, key_mask)
        return self.out(h)


def pretrain_text_encoder(
    net: nn.Module,
    dataset,
    *,
    steps: int = 400,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    attributes: tuple = ("timbre", "pitch", "loudness", "duration"),
    progress: bool = False,
) -> list:
    """Warm start of a text-conditioned network's prompt encoder (``net.text``) before the
    diffusion training: linear heads on the pooled prompt embedding predict, for each of
    ``attributes``, the value the caption names or "not named" (cross-entropy, summed), on
    training captions of ``dataset`` (a :class:`~polydiff.plugins.audio.data.CaptionedAudioDataset`;
    the caption of item i at step s is ``dataset.caption(i, 1_000_000 + s)``, a visit number the
    diffusion training never reaches, so its own caption draws are unchanged). Targets are
    :func:`~polydiff.plugins.audio.captions.parse_prompt` of the caption (what it names). The
    heads are discarded; the encoder (and ``net.text``'s projection) keep what they learned, so
    the pooled embedding starts out linearly separating every attribute. Returns
    ``(step, loss, accuracy)`` every 50 steps (accuracy over attributes and samples)."""
    from .captions import parse_prompt

    if getattr(net, "text", None) is None:
        raise ValueError("pretrain_text_encoder needs a text-conditioned network (text=...)")
    dev = next(net.parameters()).device
    values = {a: sorted({str(x[a]) for x in dataset.attributes if a in x}) for a in attributes}
    heads = nn.ModuleDict({a: nn.Linear(net.text.dim, len(v) + 1) for a, v in values.items()}).to(dev)
    opt = torch.optim.AdamW(list(net.text.parameters()) + list(heads.parameters()), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    tok = net.text.encoder.tokenizer
    was_training = net.text.training
    net.text.train()
    log = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="pretrain text encoder", leave=False)
    for step in range(steps):
        idx = torch.randint(0, len(dataset), (batch_size,), generator=g).tolist()
        caps = [dataset.caption(i, 1_000_000 + step) for i in idx]
        named = [parse_prompt(c) for c in caps]
        ids, mask = tok(caps)
        cond = {"prompt_ids": ids, "prompt_mask": mask, "cond_mask": torch.ones(batch_size)}
        _, _, pooled = net.text(cond, batch_size, dev)
        loss, hits = 0.0, []
        for a in attributes:
            target = torch.tensor([values[a].index(p[a]) + 1 if a in p else 0 for p in named], device=dev)
            logits = heads[a](pooled)
            loss = loss + F.cross_entropy(logits, target)
            hits.append((logits.argmax(1) == target).float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0 or step + 1 == steps:
            log.append((step + 1, float(loss.detach()), float(torch.cat(hits).mean())))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    net.text.train(was_training)
    return log
