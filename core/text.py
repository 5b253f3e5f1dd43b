"""Conditioning on text prompts: tokenizer, text encoders, cross-attention, prompt cond dicts.

A prompt reaches a network as two cond tensors (:func:`prompt_cond`): ``prompt_ids``
``[B, L]`` long and ``prompt_mask`` ``[B, L]`` bool, position 0 always the BOS token.
The network's :class:`TextConditioning` encodes them into a context ``[B, L, D]`` that
:class:`CrossAttention` blocks attend to (queries from the denoiser's features, keys and
values from the prompt; Rombach et al. 2022 §3.3), and a pooled vector for the time
embedding (FiLM, as Imagen's pooled text embedding, Saharia et al. 2022).

The null condition of classifier-free guidance (Ho & Salimans 2022) is the empty prompt:
BOS alone. Where ``cond["cond_mask"]`` is 0 — the trainer's prompt dropout
(``TrainConfig.cond_dropout``) or CFG's unconditional branch — the prompt is replaced by
it, so dropout and guidance need nothing text-specific. A negative prompt is CFG's other
branch: ``model.sample(n, prompt=..., negative="slanted", guidance=w)``.

Text encoders come from the firstresult hook ``polydiff_text_encoder(name, options)``
(:func:`build_text_encoder`). The core answers ``"tiny"``: :class:`TinyTextEncoder`, a
small transformer trained with the diffusion model (nothing can be downloaded here). A
plugin that has a pretrained encoder (CLAP, T5, CLIP) answers its own name with a module
that has ``dim``, ``tokenizer`` and ``forward(ids, mask) -> [B, L, dim]``; freeze it
(``requires_grad_(False)``) if it should not be fine-tuned.
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import PolydiffError

PAD, BOS = 0, 1
_WORD = re.compile(r"[a-z0-9#]+")


class WordTokenizer:
    """Words → ids by the hashing trick (Weinberger et al. 2009): lower-cased words
    (runs of ``a-z0-9#``, so ``"C#4"`` is one word) hashed with CRC-32 into
    ``2 … vocab_size − 1``; 0 pads, 1 is BOS (always position 0). Stateless: any prompt,
    including words never seen in training, has ids, and nothing but ``config()`` needs
    saving. Prompts longer than ``max_len − 1`` words are an error (never silently cut).

    ``tok(prompts)`` → ``(ids [B, max_len] long, mask [B, max_len] bool)``.
    """

    def __init__(self, vocab_size: int = 4096, max_len: int = 32):
        if vocab_size < 3 or max_len < 2:
            raise ValueError("vocab_size must be ≥ 3 and max_len ≥ 2")
        self.vocab_size, self.max_len = int(vocab_size), int(max_len)

    def words(self, prompt: str) -> list[str]:
        return _WORD.findall(prompt.lower())

    def word_id(self, word: str) -> int:
        return 2 + zlib.crc32(word.encode()) % (self.vocab_size - 2)

    def __call__(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(prompts, str):
            prompts = [prompts]
        ids = torch.zeros(len(prompts), self.max_len, dtype=torch.long)
        ids[:, 0] = BOS
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise PolydiffError(f"prompt {i} is {type(p).__name__}, not a string")
            w = self.words(p)
            if len(w) > self.max_len - 1:
                raise PolydiffError(
                    f"prompt {i} has {len(w)} words; this tokenizer takes at most {self.max_len - 1}: {p!r}"
                )
            if w:
                ids[i, 1 : 1 + len(w)] = torch.tensor([self.word_id(x) for x in w])
        return ids, ids != PAD

    def config(self) -> dict:
        return {"vocab_size": self.vocab_size, "max_len": self.max_len}


class TinyTextEncoder(nn.Module):
    """The offline default: word embeddings + learned positions + ``layers`` pre-LN
    transformer encoder layers (Vaswani et al. 2017; Xiong et al. 2020), trained jointly with
    the denoiser. ``forward(ids [B, L], mask [B, L]) -> [B, L, dim]`` (padded positions are
    ignored as keys; their outputs are meaningless and masked downstream)."""

    def __init__(
        self, dim: int = 128, layers: int = 2, heads: int = 4, vocab_size: int = 4096, max_len: int = 32, dropout=0.0
    ):
        super().__init__()
        self.dim = int(dim)
        self.tokenizer = WordTokenizer(vocab_size, max_len)
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.pos = nn.Parameter(torch.zeros(max_len, dim))
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids) + self.pos[: ids.shape[1]][None]
        return self.norm(self.layers(h, src_key_padding_mask=~mask.bool()))


def _ask_hook(name: str, options: dict):
    from .plugin_manager import get_plugins

    return get_plugins().pm.hook.polydiff_text_encoder(name=name, options=dict(options))


def build_text_encoder(name: str = "tiny", **options) -> nn.Module:
    """A text encoder module from the ``polydiff_text_encoder`` hook (firstresult); an error
    names the encoder when no plugin answers."""
    enc = _ask_hook(name, options)
    if enc is None:
        raise PolydiffError(
            f"no plugin provides the text encoder {name!r} (hook polydiff_text_encoder); the core provides 'tiny'"
        )
    for attr in ("dim", "tokenizer"):
        if not hasattr(enc, attr):
            raise PolydiffError(f"text encoder {name!r} ({type(enc).__name__}) has no attribute {attr!r}")
    return enc


_TOKENIZERS: dict[tuple, object] = {}


def tokenizer_for(name: str = "tiny", **options):
    """The tokenizer of text encoder ``name`` (built once per name and options, then cached)."""
    key = (name, repr(sorted(options.items())))
    if key not in _TOKENIZERS:
        if name == "tiny":  # the tiny encoder's tokenizer alone, without building its weights
            _TOKENIZERS[key] = WordTokenizer(**{k: options[k] for k in ("vocab_size", "max_len") if k in options})
        else:
            _TOKENIZERS[key] = build_text_encoder(name, **options).tokenizer
    return _TOKENIZERS[key]


def prompt_cond(prompts: str | Sequence[str], n: int, tokenizer) -> dict:
    """``{"prompt_ids": [n, L], "prompt_mask": [n, L] bool, "cond_mask": ones [n]}``; one
    string is used for all ``n`` samples, a list must have ``n`` prompts."""
    if isinstance(prompts, str):
        prompts = [prompts] * n
    prompts = list(prompts)
    if len(prompts) != n:
        raise PolydiffError(f"{len(prompts)} prompts for {n} samples")
    ids, mask = tokenizer(prompts)
    return {"prompt_ids": ids, "prompt_mask": mask, "cond_mask": torch.ones(n)}


def empty_prompt_cond(n: int, tokenizer) -> dict:
    """The null condition: the empty prompt, ``cond_mask`` 0."""
    out = prompt_cond("", n, tokenizer)
    out["cond_mask"] = torch.zeros(n)
    return out


class TextConditioning(nn.Module):
    """Owns a text encoder; ``forward(cond, batch, device)`` →
    ``(context [B, L, D], key_mask [B, L] bool, pooled [B, D])``.

    Samples whose ``cond_mask`` is 0 — and every sample when ``cond`` has no prompt — get the
    empty prompt (BOS alone), the null condition. ``pooled`` is the masked mean of the context.
    ``encoder_options`` go to :func:`build_text_encoder`; ``out_dim`` adds a linear map to that width.
    """

    def __init__(self, encoder: str = "tiny", encoder_options: dict | None = None, out_dim: int | None = None):
        super().__init__()
        enc: Any = build_text_encoder(encoder, **(encoder_options or {}))  # dim, tokenizer: the hook's contract
        self.encoder = enc
        width = int(enc.dim)
        self.tokenizer = enc.tokenizer
        self.proj = nn.Linear(width, out_dim) if out_dim else nn.Identity()
        self.dim = int(out_dim or width)

    def forward(self, cond: dict | None, batch: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = None if cond is None else cond.get("prompt_ids")
        if cond is None or ids is None:
            ids, mask = self.tokenizer([""] * batch)
            keep = torch.zeros(batch, dtype=torch.bool)
        else:
            mask = cond["prompt_mask"].bool()
            m = cond.get("cond_mask")
            keep = torch.ones(batch, dtype=torch.bool) if m is None else m.reshape(batch).cpu() > 0.5
        ids, mask, keep = ids.to(device), mask.to(device), keep.to(device)
        # null condition: keep BOS only (the empty prompt's tokens, exactly)
        null_ids = torch.where(torch.arange(ids.shape[1], device=device) == 0, BOS, PAD)
        ids = torch.where(keep[:, None], ids, null_ids[None])
        mask = mask & (keep[:, None] | (torch.arange(ids.shape[1], device=device) == 0)[None])
        ctx = self.proj(self.encoder(ids, mask))
        w = mask.to(ctx.dtype)[..., None]
        pooled = (ctx * w).sum(1) / w.sum(1).clamp(min=1.0)
        return ctx, mask, pooled


class CrossAttention(nn.Module):
    """``x + W_o·softmax(q kᵀ/√d) v`` with q from ``LayerNorm(x)`` ``[B, N, Cq]`` and k, v
    from ``context`` ``[B, L, Cc]``; keys where ``key_mask`` is False are ignored. The output
    projection starts at zero (the block is the identity at initialisation)."""

    def __init__(self, query_dim: int, context_dim: int, heads: int = 4):
        super().__init__()
        if query_dim % heads:
            raise ValueError(f"query_dim {query_dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm = nn.LayerNorm(query_dim)
        self.q = nn.Linear(query_dim, query_dim, bias=False)
        self.kv = nn.Linear(context_dim, 2 * query_dim, bias=False)
        self.out = nn.Linear(query_dim, query_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def attend(self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """The attention output alone (before the residual), ``[B, N, Cq]``."""
        B, N, C = x.shape
        h, d = self.heads, C // self.heads
        q = self.q(self.norm(x)).reshape(B, N, h, d).transpose(1, 2)
        k, v = self.kv(context.to(x.dtype)).reshape(B, -1, 2, h, d).permute(2, 0, 3, 1, 4)
        bias = torch.zeros(key_mask.shape, dtype=q.dtype, device=q.device)
        bias = bias.masked_fill(~key_mask.bool(), -math.inf)[:, None, None, :]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(o.transpose(1, 2).reshape(B, N, C))

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        return x + self.attend(x, context, key_mask)


class CrossAttention2d(nn.Module):
    """:class:`CrossAttention` for feature maps ``[B, C, H, W]`` (or 1-D ``[B, C, T]``): the
    positions are the queries (GroupNorm in place of LayerNorm); returns the same shape."""

    def __init__(self, channels: int, context_dim: int, heads: int = 4):
        super().__init__()
        heads = heads if channels % heads == 0 else 1
        self.norm = nn.GroupNorm(next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0), channels)
        self.attn = CrossAttention(channels, context_dim, heads)
        self.attn.norm = nn.Identity()  # type: ignore[assignment]  # normalised here, over groups

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        B, C = x.shape[:2]
        q = self.norm(x).reshape(B, C, -1).transpose(1, 2)
        o = self.attn.attend(q, context, key_mask)
        return x + o.transpose(1, 2).reshape(x.shape)
