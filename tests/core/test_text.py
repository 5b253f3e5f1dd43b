"""polydiff.text: tokenizer, text encoders (core and third-party through the hook),
cross-attention against a hand computation, the null condition, and a prompt-conditioned
model trained and sampled end to end with an encoder registered by a plugin in the test."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import polydiff
from polydiff.errors import PolydiffError
from polydiff.hookspecs import hookimpl
from polydiff.modality import Modality
from polydiff.plugin_manager import get_plugins, reset_plugins
from polydiff.text import (
    BOS,
    CrossAttention,
    CrossAttention2d,
    TextConditioning,
    TinyTextEncoder,
    WordTokenizer,
    build_text_encoder,
    empty_prompt_cond,
    prompt_cond,
    tokenizer_for,
)
from polydiff.training import TrainConfig, train


@pytest.fixture(autouse=True)
def _fresh_manager():
    reset_plugins()
    yield
    reset_plugins()


# -- tokenizer ----------------------------------------------------------------------------------
def test_tokenizer_words_bos_padding_and_case():
    tok = WordTokenizer(vocab_size=512, max_len=8)
    ids, mask = tok(["A soft flute, C#4!", "", "a SOFT flute c#4"])
    assert ids.shape == mask.shape == (3, 8)
    assert (ids[:, 0] == BOS).all() and mask[:, 0].all()
    assert mask.sum(1).tolist() == [5, 1, 5]  # BOS + a, soft, flute, c#4 ; the empty prompt is BOS alone
    assert torch.equal(ids[0], ids[2])  # case and punctuation do not matter
    assert ((ids[0, 1:5] >= 2) & (ids[0, 1:5] < 512)).all() and (ids[0, 5:] == 0).all()
    assert tok.word_id("c#4") != tok.word_id("c4")  # '#' is part of the word
    assert tok(["an unseen word"])[1].sum() == 4  # any word has an id (hashing trick)


def test_tokenizer_refuses_long_prompts_and_non_strings():
    tok = WordTokenizer(max_len=4)
    with pytest.raises(PolydiffError, match="at most 3"):
        tok(["one two three four"])
    with pytest.raises(PolydiffError, match="not a string"):
        tok([3])


def test_prompt_cond_shapes_and_counts():
    tok = WordTokenizer(max_len=6)
    c = prompt_cond("a seven", 3, tok)
    assert c["prompt_ids"].shape == (3, 6) and torch.equal(c["cond_mask"], torch.ones(3))
    assert torch.equal(c["prompt_ids"][0], c["prompt_ids"][2])
    with pytest.raises(PolydiffError, match="2 prompts for 3 samples"):
        prompt_cond(["a", "b"], 3, tok)
    e = empty_prompt_cond(2, tok)
    assert e["prompt_mask"].sum().item() == 2 and e["cond_mask"].sum().item() == 0


# -- encoders and the null condition -------------------------------------------------------------
def test_core_answers_tiny_and_names_unknown_encoders():
    enc = build_text_encoder("tiny", dim=16, layers=1, heads=2)
    assert isinstance(enc, TinyTextEncoder) and enc.dim == 16
    with pytest.raises(PolydiffError, match="no plugin provides the text encoder 'clap'"):
        build_text_encoder("clap")
    assert tokenizer_for("tiny", max_len=5).max_len == 5


def test_padding_does_not_change_the_encoding():
    torch.manual_seed(0)
    enc = TinyTextEncoder(dim=16, layers=2, heads=2, max_len=12).eval()
    short = TinyTextEncoder(dim=16, layers=2, heads=2, max_len=6).eval()
    short.load_state_dict({k: (v[:6] if k == "pos" else v) for k, v in enc.state_dict().items()})
    a = enc(*enc.tokenizer(["a thick seven"]))[0, :4]
    b = short(*short.tokenizer(["a thick seven"]))[0, :4]
    assert torch.allclose(a, b, atol=1e-5)


def test_cond_mask_zero_is_exactly_the_empty_prompt():
    torch.manual_seed(0)
    tc = TextConditioning("tiny", {"dim": 16, "layers": 1, "heads": 2}).eval()
    tok = tc.encoder.tokenizer
    c = prompt_cond(["a thick slanted seven", "a thin one"], 2, tok)
    c["cond_mask"] = torch.tensor([0.0, 1.0])
    ctx, mask, pooled = tc(c, 2, "cpu")
    e_ctx, e_mask, e_pooled = tc(prompt_cond(["", "a thin one"], 2, tok), 2, "cpu")
    assert torch.equal(mask, e_mask) and mask[0].sum() == 1
    assert torch.allclose(pooled, e_pooled, atol=1e-6)
    assert torch.allclose(ctx[mask], e_ctx[e_mask], atol=1e-6)
    # no prompt at all is the null condition too; a real prompt differs from it
    n_ctx, n_mask, n_pooled = tc(None, 2, "cpu")
    assert torch.allclose(n_pooled[0], pooled[0], atol=1e-6)
    assert not torch.allclose(pooled[1], n_pooled[1], atol=1e-3)
    # pooled is the masked mean of the context
    assert torch.allclose(pooled[1], ctx[1][mask[1]].mean(0), atol=1e-6)


# -- cross-attention ------------------------------------------------------------------------------
def test_cross_attention_matches_a_hand_computation_and_ignores_masked_keys():
    torch.manual_seed(0)
    ca = CrossAttention(8, 6, heads=2)
    nn.init.normal_(ca.out.weight)
    x, ctx = torch.randn(2, 5, 8), torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    got = ca(x, ctx, mask)
    q = ca.q(ca.norm(x))
    k, v = ca.kv(ctx).chunk(2, dim=-1)
    want = []
    for b in range(2):
        heads = []
        for h in range(2):
            sl = slice(4 * h, 4 * h + 4)
            s = q[b, :, sl] @ k[b, :, sl].T / math.sqrt(4)
            s = s.masked_fill(~mask[b][None], -math.inf)
            heads.append(torch.softmax(s, -1) @ v[b, :, sl])
        want.append(x[b] + ca.out(torch.cat(heads, -1)))
    assert torch.allclose(got, torch.stack(want), atol=1e-5)
    ctx2 = ctx.clone()
    ctx2[0, 2:] = 100.0  # masked keys and values: no effect
    assert torch.allclose(ca(x, ctx2, mask)[0], got[0], atol=1e-6)
    assert not torch.allclose(ca(x, ctx2, torch.ones_like(mask))[0], got[0], atol=1e-3)


def test_cross_attention_starts_as_the_identity_on_2d_and_1d_maps():
    ca = CrossAttention2d(16, 8)
    ctx, mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    for x in (torch.randn(2, 16, 4, 5), torch.randn(2, 16, 7)):
        assert torch.equal(ca(x, ctx, mask), x)
    nn.init.normal_(ca.attn.out.weight)
    x = torch.randn(2, 16, 4, 5)
    assert ca(x, ctx, mask).shape == x.shape and not torch.allclose(ca(x, ctx, mask), x)


# -- a third-party encoder through the hook, end to end ----------------------------------------
class BagOfWords(nn.Module):
    """The test's own encoder: one embedding per (hashed) word, no attention."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.dim = dim
        self.tokenizer = WordTokenizer(vocab_size=64, max_len=6)
        self.table = nn.Embedding(64, dim)
        self.calls = 0

    def forward(self, ids, mask):
        self.calls += 1
        return self.table(ids)


class BagPlugin:
    @hookimpl
    def polydiff_text_encoder(self, name, options):
        return BagOfWords(**options) if name == "bag" else None

    @hookimpl
    def polydiff_register_modalities(self, register):
        register("arrows", Arrows)

    @hookimpl
    def polydiff_register_networks(self, register):
        register("arrows_mlp", PromptMLP, modality="arrows")

    @hookimpl
    def polydiff_register_datasets(self, register):
        register("arrows_points", lambda n=400: _arrow_items(n), modality="arrows")


#: caption → cluster centre in the plane
CENTRES = {"up": (0.0, 1.0), "down": (0.0, -1.0), "left": (-1.0, 0.0), "right": (1.0, 0.0)}


class PromptMLP(nn.Module):
    def __init__(self, hidden: int = 64):
        super().__init__()
        self.text = TextConditioning("bag", {"dim": 16})
        self.net = nn.Sequential(nn.Linear(2 + 1 + 16, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.out = nn.Linear(hidden, 2)

    def forward(self, x, time, cond=None):
        _, _, pooled = self.text(cond, x.shape[0], x.device)
        return self.out(self.net(torch.cat([x, time[:, None].to(x.dtype), pooled.to(x.dtype)], 1)))


class Arrows(Modality):
    name = "arrows"
    default_network = "arrows_mlp"
    default_dataset = "arrows_points"
    default_metrics = ()

    def collate(self, items):
        tok = tokenizer_for("bag", dim=16)
        return {
            "x": torch.stack([i["x"] for i in items]),
            "cond": prompt_cond([i["caption"] for i in items], len(items), tok),
        }

    def sampling_request(self, n, cond, rng):
        prompt = (cond or {}).get("prompt")
        tok = tokenizer_for("bag", dim=16)
        return (2,), (empty_prompt_cond(n, tok) if prompt is None else prompt_cond(prompt, n, tok))

    @property
    def accepts_prompts(self):
        return True

    def prepare_negative(self, negative, n):
        return prompt_cond(negative["prompt"], n, tokenizer_for("bag", dim=16))

    def write(self, samples, path):
        return []

    def read(self, path):
        return []


def _arrow_items(n: int = 400) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    names = list(CENTRES)
    items = []
    for i in range(n):
        word = names[i % 4]
        centre = torch.tensor(CENTRES[word])
        items.append({"x": centre + 0.15 * torch.randn(2, generator=g), "caption": f"point {word}"})
    return items


def test_third_party_text_encoder_is_used_end_to_end(tmp_path):
    pm = get_plugins()
    pm.register(BagPlugin(), name="bag_text_plugin")
    torch.manual_seed(0)
    model = polydiff.create("arrows")
    assert isinstance(model.network.text.encoder, BagOfWords)
    cfg = TrainConfig(steps=500, batch_size=64, lr=3e-3, ema_decay=0.9, cond_dropout=0.2, progress=False, device="cpu")
    train(model, _arrow_items(), cfg)
    before = model.ema.text.encoder.calls
    for word, (cx, cy) in CENTRES.items():
        x = torch.stack(model.sample(64, prompt=f"point {word}", sampler="heun", steps=12, guidance=2.0, seed=1))
        assert abs(x[:, 0].mean() - cx) < 0.3 and abs(x[:, 1].mean() - cy) < 0.3, (word, x.mean(0))
    assert model.ema.text.encoder.calls > before  # the plugin's encoder ran during sampling

    # a negative prompt (CFG's other branch) pushes samples away from its cluster
    # (the empty prompt is the null condition: every cluster)
    plain = torch.stack(model.sample(200, prompt="", sampler="heun", steps=12, seed=2))
    neg = torch.stack(model.sample(200, prompt="", negative="point up", guidance=3.0, sampler="heun", steps=12, seed=2))
    share = lambda x: (x[:, 1] > 0.5).float().mean().item()  # noqa: E731
    assert share(plain) > 0.15 and share(neg) <= 0.5 * share(plain), (share(plain), share(neg))

    # the checkpoint rebuilds the plugin's encoder and samples the same
    path = model.save(tmp_path / "arrows")
    again = polydiff.load(path)
    assert isinstance(again.network.text.encoder, BagOfWords)
    a = model.sample_raw(4, cond={"prompt": "point left"}, sampler="heun", steps=6, seed=3)[0]
    b = again.sample_raw(4, cond={"prompt": "point left"}, sampler="heun", steps=6, seed=3)[0]
    assert torch.allclose(a, b, atol=1e-6)
