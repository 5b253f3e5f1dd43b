"""Guidance: wrappers around a denoiser, composed by name through the ``guidance`` registry.

All act in x̂₀ space of the σ̃ view, where a score change δ∇ln p becomes x̂₀ + σ̃²·δ
(Tweedie: D = x + σ̃²∇ln p_σ̃), so they work for every modality and every sampler.

**One factory signature** for every registered guidance (built-in or a plugin's)::

    factory(denoiser, *, model=None, **options) -> guided

where ``denoiser(x, σ̃, cond) → x̂₀`` and ``guided`` has the same signature (``x`` ``[B, ...]``
in the VE view, σ̃ a scalar or ``[B]``, ``cond`` the batch's cond dict or None). ``model`` is
the :class:`polydiff.model.DiffusionModel` that samples (``None`` outside one), so a guidance
can reach the modality's modules (a classifier, say). Built-ins: ``cfg`` (options ``scale``,
``negative``, ``rescale``) and ``classifier`` (``classifier``, ``target``, ``scale``).

``DiffusionModel.sample(guidance=...)`` takes a CFG scale (a number, as before), a name,
``(name, scale)``, ``(name, {options})`` or a list of those; :func:`build` composes them in
list order — the first wraps the network's denoiser, each next one wraps the result — so
``[("cfg", 3.0), ("classifier", {...})]`` adds the classifier's gradient to the CFG
prediction. The bound functions :func:`cfg` and :func:`classifier_guidance` are the maths.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

from .conditioning import cat_cond, null_cond, requested_cond, to_device
from .errors import PolydiffError


def bind(denoiser, cond):
    """``D(x, σ, cond)`` → ``D(x, σ)``."""
    return lambda x, sigma: denoiser(x, sigma, cond)


def _per_sample_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
    return s.expand(x.shape[0]) if s.numel() == 1 else s


def cfg(denoiser, cond: dict, scale: float, *, uncond: dict | None = None, rescale: float = 0.0):
    """Classifier-free guidance (Ho & Salimans 2022) in x̂₀ space.

    x̂ = x̂_u + w·(x̂_c − x̂_u); w = 1 is the conditional model, w = 0 the unconditional.
    ``uncond`` defaults to ``null_cond(cond)`` (``cond_mask`` = 0); pass a negative
    condition instead for negative prompting. ``rescale`` φ (Lin et al. 2023 §3.4) blends
    in the guided prediction rescaled to the conditional one's per-sample std:
    x̂ ← φ·x̂·std(x̂_c)/std(x̂) + (1 − φ)·x̂. Conditional and unconditional passes are
    batched together (one network call of 2B). ``denoiser(x, σ, cond)``.
    """
    uncond = null_cond(cond) if uncond is None else uncond
    both = cat_cond(cond, uncond)

    def guided(x, sigma):
        sig = _per_sample_sigma(sigma, x)
        out = denoiser(torch.cat([x, x]), sig.repeat(2), both)
        xc, xu = out.chunk(2)
        g = xu + (xc - xu) * scale
        if rescale > 0:
            dims = tuple(range(1, x.ndim))
            std_c = xc.std(dim=dims, keepdim=True)
            std_g = g.std(dim=dims, keepdim=True).clamp(min=1e-12)
            g = rescale * (g * (std_c / std_g)) + (1 - rescale) * g
        return g

    return guided


def classifier_guidance(denoiser, classifier, target, scale: float = 1.0):
    """Classifier guidance (Dhariwal & Nichol 2021; Song et al. 2021 eq. 14) in the σ̃ view.

    ``classifier(x̃, σ̃ [B] float64) → logits [B, C]`` is noise-aware; ``target`` ``[B]`` long
    labels. The guided score is ∇ln p(x̃) + w·∇ln p(y | x̃, σ̃), hence
    x̂₀ ← D(x̃, σ̃) + w·σ̃²·∇ₓ ln p(y | x̃, σ̃). With the exact classifier and w = 1 this is the
    exact class-conditional denoiser (tested on a Gaussian mixture).
    """

    def guided(x, sigma):
        sig = _per_sample_sigma(sigma, x)
        x0 = denoiser(x, sigma)
        with torch.enable_grad():
            xg = x.detach().to(torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype)
            xg.requires_grad_(True)
            logp = torch.log_softmax(classifier(xg, sig), dim=-1)
            sel = logp.gather(1, target.to(logp.device).reshape(-1, 1).long()).sum()
            (grad,) = torch.autograd.grad(sel, xg)
        s2 = (sig**2).to(device=x.device, dtype=grad.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
        return (x0 + (scale * s2 * grad).to(x0.dtype)).detach()

    return guided


def compose(denoiser, *wrappers):
    """Apply ``wrappers`` (each ``f(denoiser) -> denoiser``) in order."""
    for w in wrappers:
        denoiser = w(denoiser)
    return denoiser


# -- registered factories (one signature: factory(denoiser, *, model=None, **options)) ----------------
def classifier_free(denoiser, *, model=None, scale: float, negative: dict | None = None, rescale: float = 0.0):
    """Registered as ``cfg``: :func:`cfg` with the null condition (or ``negative``, a cond dict
    of the same keys — a negative prompt) as the unconditional branch; ``rescale`` φ as in :func:`cfg`."""

    def guided(x, sigma, cond):
        n = x.shape[0]
        neg = None if negative is None else requested_cond(to_device(negative, x.device), n, x.device)
        c = requested_cond(cond, n, x.device, like=neg)
        unc = null_cond(c, n) if neg is None else neg
        return cfg(denoiser, c, float(scale), uncond=unc, rescale=float(rescale))(x, sigma)

    return guided


def classifier(denoiser, *, model=None, classifier, target: Any = "label", scale: float = 1.0):
    """Registered as ``classifier``: :func:`classifier_guidance` per batch.

    ``classifier``: a noise-aware ``f(x̃, σ̃ [B]) → logits [B, C]``, or the name of one of the
    model's modality modules; ``target``: ``[B]`` class labels, or the cond key that holds them."""
    if isinstance(classifier, str):
        modules = model.modality.modules() if model is not None else {}
        if classifier not in modules:
            raise PolydiffError(
                f"guidance 'classifier': no module {classifier!r} on this model's modality; "
                f"modules: {', '.join(sorted(modules)) or '(none)'} — pass the classifier itself"
            )
        classifier = modules[classifier]
    clf = classifier

    def guided(x, sigma, cond):
        y = cond[target] if isinstance(target, str) else target
        return classifier_guidance(lambda z, s: denoiser(z, s, cond), clf, y, scale)(x, sigma)

    return guided


GuidanceSpec = tuple[str, dict]


def resolve(guidance, *, negative: dict | None = None, rescale: float = 0.0) -> list[GuidanceSpec]:
    """``model.sample``'s ``guidance=`` → ``[(name, options), ...]`` in composition order.

    A number w is CFG at scale w (none at w = 1); ``negative``/``rescale`` (the ``sample``
    keywords) go to the ``cfg`` entry that has none of its own."""
    if guidance is None or isinstance(guidance, (int, float)):
        w = 1.0 if guidance is None else float(guidance)
        if w == 1.0:
            if negative is not None:
                raise PolydiffError(
                    "negative= has no effect without classifier-free guidance: pass guidance=w (w ≠ 1) "
                    "or guidance=('cfg', w)"
                )
            return []
        specs: list[GuidanceSpec] = [("cfg", {"scale": w})]
    else:
        items = [guidance] if isinstance(guidance, (str, tuple)) else list(guidance)
        specs = [_one_spec(it) for it in items]
    out = []
    for name, opts in specs:
        if name == "cfg":
            opts = {
                **({"negative": negative} if negative is not None else {}),
                **({"rescale": rescale} if rescale else {}),
                **opts,
            }
        out.append((name, opts))
    if negative is not None and not any(n == "cfg" for n, _ in out):
        raise PolydiffError("negative= needs a 'cfg' entry in guidance= (the negative prompt is CFG's other branch)")
    return out


def _one_spec(item) -> GuidanceSpec:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        name, arg = item
        if isinstance(arg, (int, float)):
            return name, {"scale": float(arg)}
        if isinstance(arg, dict):
            return name, dict(arg)
    raise PolydiffError(
        f"guidance entry {item!r} is not understood: use a CFG scale (number), a registered name, "
        "(name, scale), (name, {options}) or a list of those"
    )


def build(denoiser, specs: list[GuidanceSpec], *, model=None):
    """Compose registered guidance factories around ``denoiser(x, σ̃, cond)`` (see module docstring)."""
    from .plugin_manager import registry

    reg = registry("guidance")
    for name, opts in specs:
        factory = reg.get(name)
        _check_options(name, factory, opts)
        denoiser = factory(denoiser, model=model, **opts)
    return denoiser


def _check_options(name: str, factory: Callable, opts: dict) -> None:
    """An unknown option is an error naming the guidance and what it accepts (not a TypeError deep inside)."""
    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p, v in list(params.items())[1:] if p != "model" and v.kind is not v.VAR_POSITIONAL]
    unknown = sorted(set(opts) - set(accepted))
    missing = [p for p in accepted if params[p].default is inspect.Parameter.empty and p not in opts]
    if unknown or missing:
        what = f"unknown option(s) {unknown}" if unknown else f"missing option(s) {missing}"
        raise PolydiffError(f"guidance {name!r}: {what}; it accepts: {', '.join(accepted) or '(none)'}")
