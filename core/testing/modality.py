"""Run-time checks of one modality on its own tiny data.

The steps, each a check name of :data:`MODALITY_CHECKS`:

``data``  construct from ``conformance["modality_config"]`` → ``load_dataset`` (tiny options)
          → ``collate`` → ``space(cond)`` keeps the batch where it is; config stays JSON.
``network``  the default network built from ``network_kwargs()``: ``forward(x, time, cond)``,
          ``D(x, σ, cond)`` has x's shape and is finite.
``loss``  the diffusion loss with ``auxiliary_loss`` is ``[B]``, finite, and trains the network.
``sampling``  ``sampling_request`` → ``sample_raw`` (``euler``, 2 steps) → ``decode`` gives one
          object per sample.
``files``  ``write`` → ``read`` gives the samples back (count, type, metric values).
``batch_independence``  sample i alone equals sample i of a batch (same seed).
``save_load``  save → load reproduces the modality config and the samples.
``equivariance``  declared symmetries hold for the denoiser (see :mod:`.symmetry`).
``metrics``  every metric of the modality gives a finite float on the samples.

``data``, ``network`` and ``sampling`` run whenever a later check needs them.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from polydiff.rng import SampleRNG

from .components import accepts_positional
from .report import ConformanceReport

MODALITY_CHECKS = (
    "data",
    "network",
    "loss",
    "sampling",
    "files",
    "batch_independence",
    "save_load",
    "equivariance",
    "metrics",
)
#: what a check needs before it can run
NEEDS = {
    "network": ("data",),
    "loss": ("data", "network"),
    "sampling": ("data", "network"),
    "files": ("data", "network", "sampling"),
    "batch_independence": ("data", "network", "sample_raw"),  # sample_raw: sampling short of decode
    "save_load": ("data", "network", "sample_raw"),
    "equivariance": ("data", "network"),
    "metrics": ("data", "network", "sampling"),
}
#: returned by a check that found nothing to check (it says why in ``report.skipped``)
SKIPPED = "skipped"
#: a metric refusing the kit's samples this way is "not applicable", not broken
REFUSALS = (ValueError, LookupError)


@dataclass
class ModalityOptions:
    """How the kit exercises a modality. Defaults come from the class attribute
    ``conformance`` (a dict with these keys), ``equivariance`` and ``position_dims``;
    keyword arguments of :func:`check_modality` override them."""

    modality_config: dict | None = None  # constructor config (e.g. fewer VAE steps)
    dataset: str | None = None  # default: Modality.default_dataset
    dataset_options: dict = field(default_factory=dict)  # make it tiny: limit=, size=, n=…
    network: str | None = None  # default: Modality.default_network
    network_kwargs: dict = field(default_factory=dict)  # make it tiny: hidden=, layers=…
    sample_cond: dict | None = None  # the request passed to sampling_request / sample
    n_samples: int = 4
    sampler: str = "euler"
    steps: int = 2
    skip_metrics: tuple = ()  # metrics too slow for a unit test (classifier training…)
    equivariance: tuple | None = None
    position_dims: object = None
    seed: int = 0
    #: keys of the class's ``conformance`` that are not options (reported, then ignored)
    unknown_declared: tuple = ()

    @classmethod
    def resolve(cls, modality_cls, overrides: dict) -> "ModalityOptions":
        known = {f.name for f in fields(cls)} - {"unknown_declared"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown conformance option(s) {unknown}; known: {sorted(known)}")
        declared = getattr(modality_cls, "conformance", None)
        declared = dict(declared) if isinstance(declared, dict) else {}
        bad = tuple(sorted(set(declared) - known))
        declared = {k: v for k, v in declared.items() if k in known}
        opts = cls(**copy.deepcopy({**declared, **overrides}), unknown_declared=bad)
        if opts.equivariance is None:
            opts.equivariance = tuple(getattr(modality_cls, "equivariance", ()) or ())
        if opts.position_dims is None:
            opts.position_dims = getattr(modality_cls, "position_dims", None)
        opts.skip_metrics = tuple(opts.skip_metrics)
        return opts


def describe(e: BaseException, limit: int = 300) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finite(t) -> bool:
    return bool(torch.isfinite(torch.as_tensor(t).float()).all())


def _batch_axis_problems(cond, n: int) -> list[str]:
    if cond is None:
        return []
    if not isinstance(cond, dict):
        return [f"cond is a {type(cond).__name__}, not a dict or None"]
    return [
        f"cond[{k!r}] has shape {tuple(v.shape)}, not [{n}, ...]"
        for k, v in cond.items()
        if torch.is_tensor(v) and (v.ndim == 0 or v.shape[0] != n)
    ]


class ModalityRun:
    """The state of one modality's checks (modality, batch, model, samples)."""

    def __init__(self, cls, opts: ModalityOptions, rep: ConformanceReport, selected, tmp: Path, plugin=None):
        self.cls, self.opts, self.rep, self.tmp, self.plugin = cls, opts, rep, Path(tmp), plugin
        self.selected = set(selected)
        self.name = getattr(cls, "name", "") or cls.__name__
        self.comp = f"modality {self.name!r}"
        self.broken: set[str] = set()

    # -- bookkeeping -------------------------------------------------------------------
    def fail(self, check: str, message: str, fix: str, component: str | None = None) -> None:
        component = component or self.comp
        self.rep.add(check, component, message, fix)
        self.broken.add(check)
        if (check, self.comp) in self.rep.passed:  # a later check found a fault of an earlier one
            self.rep.passed.remove((check, self.comp))

    def passed(self, check: str, component: str | None = None) -> None:
        if check not in self.broken:
            self.rep.passed.append((check, component or self.comp))

    def attempt(self, check, what, fix, fn, *args, component=None, **kwargs):
        """``(result, True)``, or record ``what raised …`` with ``fix`` and return ``(None, False)``."""
        try:
            return fn(*args, **kwargs), True
        except Exception as e:  # the plugin's code: every failure becomes a finding
            self.fail(check, f"{what} raised {describe(e)}", fix, component)
            return None, False

    def wanted(self, check: str) -> bool:
        needs = {"sampling" if n == "sample_raw" else n for c in self.selected for n in NEEDS.get(c, ())}
        return check in self.selected or check in needs

    def run(self) -> None:
        if not any(c in self.selected for c in MODALITY_CHECKS):
            return
        if self.opts.unknown_declared:
            known = sorted(f.name for f in fields(ModalityOptions) if f.name != "unknown_declared")
            self.fail(
                "components",
                f"conformance names unknown option(s) {list(self.opts.unknown_declared)} (ignored)",
                f"use the keys of polydiff.testing.ModalityOptions: {', '.join(known)}",
            )
        steps = [
            ("data", self.check_data),
            ("network", self.check_network),
            ("loss", self.check_loss),
            ("sampling", self.check_sampling),
            ("files", self.check_files),
            ("batch_independence", self.check_batch_independence),
            ("save_load", self.check_save_load),
            ("equivariance", self.check_equivariance),
            ("metrics", self.check_metrics),
        ]
        for check, fn in steps:
            if not self.wanted(check):
                continue
            missing = [n for n in NEEDS.get(check, ()) if n in self.broken]
            if missing:
                self.rep.skipped.append((check, self.comp, f"needs {', '.join(missing)}, which failed"))
                self.broken.add(check)
                continue
            result = fn()
            if result is SKIPPED:
                continue
            if result is not False:
                self.passed(check)

    # -- data --------------------------------------------------------------------------
    def check_data(self):
        o, cls = self.opts, self.cls
        cfg = copy.deepcopy(o.modality_config)
        self.mod, ok = self.attempt(
            "data",
            f"{cls.__name__}({cfg!r})",
            "the constructor must take config=None or a JSON dict (Modality.__init__(config)) and rebuild "
            "everything else from it",
            cls,
            cfg,
        )
        if not ok:
            return False
        ds_name = o.dataset or self.mod.default_dataset
        args = (o.dataset,) if o.dataset else ()  # None: the modality's own choice (may depend on its config)
        ds, ok = self.attempt(
            "data",
            f"load_dataset({', '.join(map(repr, args))}**{o.dataset_options!r})",
            f"load_dataset calls the loader registered as dataset {ds_name!r} (it must accept these options and "
            "return a sized, indexable data set), then fit(dataset); declare small options in "
            "`conformance = {'dataset_options': {...}}`",
            self.mod.load_dataset,
            *args,
            **o.dataset_options,
        )
        if not ok:
            return False
        try:
            k = min(len(ds), max(2, o.n_samples))
            items = [ds[i] for i in range(k)]
        except Exception as e:
            self.fail(
                "data", f"data set {ds_name!r}: len()/[i] raised {describe(e)}", "return a sized, indexable data set"
            )
            return False
        if k < 2:
            self.fail("data", f"data set {ds_name!r} has {k} item(s) with {o.dataset_options}", "load at least 2 items")
            return False
        kind = type(items[0]).__name__
        fix = (
            "override Modality.collate(items) to turn a list of your data set's items "
            f"({kind}) into {{'x': Tensor [B, ...], 'cond': dict of [B, ...] tensors | None}}"
        )
        batch, ok = self.attempt("data", f"collate({k} items of type {kind})", fix, self.mod.collate, items)
        if not ok:
            return False
        x = batch.get("x") if isinstance(batch, dict) else None
        if not (torch.is_tensor(x) and x.is_floating_point() and x.ndim >= 2 and x.shape[0] == k):
            got = tuple(x.shape) if torch.is_tensor(x) else type(batch).__name__
            self.fail("data", f"collate({k} items) returned x = {got}, not a float tensor [{k}, ...]", fix)
            return False
        bad = _batch_axis_problems(batch.get("cond"), k) + ([] if _finite(x) else ["x is not finite"])
        if bad:
            self.fail("data", f"collate({k} items): " + "; ".join(bad), fix)
            return False
        self.batch, self.x, self.cond = batch, x, batch.get("cond")
        if not self._config_is_json("after load_dataset/fit"):
            return False
        self.space, ok = self.attempt(
            "data",
            "space(cond) on the collated batch",
            "space(cond) must return a polydiff.spaces object",
            self.mod.space,
            self.cond,
        )
        if not ok:
            return False
        try:
            moved = (self.space.project(x) - x).abs().max().item()
            noise = self.space.randn_like(x, SampleRNG(o.seed, k))
        except Exception as e:
            self.fail("data", f"the space's project/randn_like raised {describe(e)}", "use a polydiff.spaces class")
            return False
        if moved > 1e-4 * max(1.0, x.abs().max().item()):
            self.fail(
                "data",
                f"the collated data lie outside their space: space(cond).project(x) moves x by {moved:.3g}",
                "collate must put data where space().project keeps them (e.g. centre coordinates over the mask for "
                "a ZeroCoMSpace, zero the padding)",
            )
            return False
        if tuple(noise.shape) != tuple(x.shape):
            self.fail(
                "data",
                f"space.randn_like gives {tuple(noise.shape)} for x {tuple(x.shape)}",
                "return noise shaped like x",
            )
            return False
        self.noise = noise

    def _config_is_json(self, when: str) -> bool:
        try:
            json.dumps(self.mod.config)
            return True
        except (TypeError, ValueError) as e:
            self.fail(
                "data",
                f"Modality.config is not JSON ({when}): {describe(e)}",
                "keep only str/number/bool/None/list/dict values in self.config (it is saved in config.json); "
                "tensors and modules belong in modules()",
            )
            return False

    # -- network and loss ----------------------------------------------------------------
    def check_network(self):
        from polydiff.model import DiffusionModel

        o = self.opts
        net = o.network or self.mod.default_network
        comp = f"network {net!r}"
        self.model, ok = self.attempt(
            "network",
            f"DiffusionModel.create(modality, network={net!r}, **{o.network_kwargs!r})",
            f"the network class must accept network_kwargs() = {self._safe(self.mod.network_kwargs)!r} plus the "
            "kit's conformance network_kwargs",
            DiffusionModel.create,
            self.mod,
            network=o.network,
            **o.network_kwargs,
            component=comp,
        )
        if not ok:
            return False
        if not accepts_positional(self.model.network.forward, 3):
            self.fail(
                "network",
                f"forward{_signature(self.model.network.forward)} cannot be called as forward(x, time, cond)",
                "define forward(self, x, time, cond=None): the core always passes the batch's cond dict",
                comp,
            )
            return False
        self.model.network.eval()
        self.denoiser = self.model.denoiser(ema=False)
        sig = float(self.model.sigma_data)
        self.x_noisy = self.space.project(self.x + sig * self.noise)
        self.sigma = torch.full((self.x.shape[0],), sig, dtype=torch.float64)
        out, ok = self.attempt(
            "network",
            "D(x, σ, cond) on the collated batch",
            "the network must run on collate()'s batch: forward(x [B, ...], time [B], cond) -> [B, ...] like x",
            self._denoise,
            self.x_noisy,
            self.cond,
            component=comp,
        )
        if not ok:
            return False
        if tuple(out.shape) != tuple(self.x.shape) or not _finite(out):
            self.fail(
                "network",
                f"D(x, σ, cond) returned {tuple(out.shape)} (finite: {_finite(out)}) for x {tuple(self.x.shape)}",
                "return a finite tensor shaped like x",
                comp,
            )
            return False
        self.d_out = out

    def _denoise(self, x, cond):
        with torch.no_grad():
            return self.denoiser(x, self.sigma, cond)

    @staticmethod
    def _safe(fn):
        try:
            return fn()
        except Exception as e:
            return f"<raised {describe(e)}>"

    def check_loss(self):
        from polydiff.losses import diffusion_loss

        k = self.x.shape[0]
        sd = float(self.model.sigma_data)
        sigmas = torch.logspace(math.log10(0.05 * sd), math.log10(2 * sd), k, dtype=torch.float64)
        fix = "auxiliary_loss(x0_hat, x0, sigmas, cond, weight) must return None or a finite tensor [B]"
        aux, ok = self.attempt(
            "loss",
            "auxiliary_loss on the collated batch",
            fix,
            self.mod.auxiliary_loss,
            self.x,
            self.x,
            sigmas,
            self.cond,
            torch.ones(k),
        )
        if not ok:
            return False
        if aux is not None and (not torch.is_tensor(aux) or tuple(aux.shape) != (k,) or not _finite(aux)):
            self.fail("loss", f"auxiliary_loss returned {_shape_of(aux)} for a batch of {k}", fix)
            return False
        net = self.model.network
        net.train()
        net.zero_grad(set_to_none=True)
        try:
            loss = diffusion_loss(
                self.denoiser,
                self.x,
                self.cond,
                self.space,
                SampleRNG(self.opts.seed + 1, k),
                torch.Generator().manual_seed(self.opts.seed),
                sigmas=sigmas,
                auxiliary=self.mod.auxiliary_loss,
            )
            loss.mean().backward()
        except Exception as e:
            self.fail(
                "loss", f"the training loss raised {describe(e)}", "the network must be differentiable end to end"
            )
            return False
        finally:
            net.eval()
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        if tuple(loss.shape) != (k,) or not _finite(loss):
            self.fail(
                "loss", f"the training loss is {_shape_of(loss)}", "the loss must be finite on the collated batch"
            )
            return False
        if not any(g is not None and g.abs().sum() > 0 for g in grads):
            self.fail(
                "loss",
                "the training loss gives no gradient to the network's parameters",
                "the network's output must depend on its parameters (forward must use them)",
                f"network {self.model.network_name!r}",
            )
            return False
        net.zero_grad(set_to_none=True)

    # -- sampling and files ---------------------------------------------------------------
    def _sample(self, model, n, offset=0):
        o = self.opts
        model.network.eval()
        return model.sample_raw(
            n, sampler=o.sampler, steps=o.steps, seed=o.seed, cond=o.sample_cond, sample_offset=offset
        )

    def check_sampling(self):
        self.broken.add("sample_raw")  # until sample_raw has run
        o, n = self.opts, self.opts.n_samples
        fix = (
            "sampling_request(n, cond, rng) must return (shape without the batch axis, cond dict of [n, ...] tensors "
            "or None), with shape of the same rank as collate()'s x[0]"
        )
        req, ok = self.attempt(
            "sampling",
            f"sampling_request({n}, {o.sample_cond!r}, rng)",
            fix,
            self.mod.sampling_request,
            n,
            o.sample_cond,
            SampleRNG(o.seed, n),
        )
        if not ok:
            return False
        shape = req[0] if isinstance(req, tuple) and len(req) == 2 else None
        if not (isinstance(shape, (tuple, list, torch.Size)) and all(isinstance(s, int) for s in shape)):
            self.fail("sampling", f"sampling_request returned {req!r:.200}", fix)
            return False
        bad = _batch_axis_problems(req[1], n)
        if len(shape) != self.x.ndim - 1:
            bad.append(f"shape {tuple(shape)} has {len(shape)} axes, collate()'s items {self.x.ndim - 1}")
        if bad:
            self.fail("sampling", "sampling_request: " + "; ".join(bad), fix)
            return False
        res, ok = self.attempt(
            "sampling",
            f"sample_raw({n}, sampler={o.sampler!r}, steps={o.steps}, cond={o.sample_cond!r})",
            "the space, the network and sampling_request's cond must work together (see the message)",
            self._sample,
            self.model,
            n,
        )
        if not ok:
            return False
        self.xs, self.cs = res
        if tuple(self.xs.shape) != (n, *shape) or not _finite(self.xs):
            self.fail("sampling", f"sample_raw gave {tuple(self.xs.shape)} (finite: {_finite(self.xs)})", fix)
            return False
        self.broken.discard("sample_raw")
        fix = "decode(x [B, ...], cond) must return one domain object per sample (a list or sized container of B)"
        self.samples, ok = self.attempt(
            "sampling", f"decode(x [{n}, ...], cond)", fix, self.mod.decode, self.xs, self.cs
        )
        if not ok:
            return False
        count = _count(self.samples)
        if count != n:
            self.fail("sampling", f"decode returned {count} objects for {n} sampled states", fix)
            return False

    def check_files(self):
        out = self.tmp / f"{self.name}_samples"
        fix = "write(samples, path) writes real files and returns their paths; read(path) returns the same samples"
        paths, ok = self.attempt(
            "files", f"write({_count(self.samples)} samples, {out.name!r})", fix, self.mod.write, self.samples, out
        )
        if not ok:
            return False
        if not isinstance(paths, (list, tuple)) or not paths or not all(Path(p).exists() for p in paths):
            self.fail("files", f"write returned {paths!r:.200} (must be a non-empty list of written files)", fix)
            return False
        self.back, ok = self.attempt("files", f"read({out.name!r}) after write", fix, self.mod.read, out)
        if not ok:
            return False
        n, m = _count(self.samples), _count(self.back)
        if m != n:
            self.fail(
                "files",
                f"wrote {n} samples but read back {m}",
                "write must store every sample and read must return them all",
            )
            return False
        t0, t1 = _first_type(self.samples), _first_type(self.back)
        if t0 is not t1:
            self.fail(
                "files",
                f"decode gives {t0.__name__} objects but read gives {t1.__name__}",
                "read must return the objects decode returns (metrics run on both)",
            )
            return False

    def check_batch_independence(self):
        n = self.opts.n_samples
        for i in sorted({0, n - 1}):
            res, ok = self.attempt(
                "batch_independence",
                f"sample_raw(1, sample_offset={i})",
                "see the message",
                self._sample,
                self.model,
                1,
                i,
            )
            if not ok:
                return False
            diff = _sample_difference(self.xs, self.cs, i, res[0], res[1])
            if diff is not None:
                self.fail(
                    "batch_independence",
                    f"sample {i} of a batch of {n} differs from the same sample drawn alone (seed {self.opts.seed}): "
                    f"{diff}",
                    "draw per-sample randomness only from the rng argument (one generator per sample), keep the "
                    "network free of cross-sample operations (batch norm in train mode, batch statistics) and make "
                    "sampling_request's shape independent of n",
                )
                return False

    def check_save_load(self):
        from polydiff.model import DiffusionModel

        path = self.tmp / f"{self.name}_model"
        fix = (
            "everything sampling needs must live in Modality.config (JSON, saved) or in modules() (weights, saved); "
            "the constructor must rebuild the same modality from that config"
        )
        _, ok = self.attempt("save_load", "model.save", fix, self.model.save, path)
        if not ok:
            return False
        loaded, ok = self.attempt("save_load", "polydiff.load after save", fix, DiffusionModel.load, path, device="cpu")
        if not ok:
            return False
        before, after = json.loads(json.dumps(self.mod.config)), json.loads(json.dumps(loaded.modality.config))
        if before != after:
            keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            self.fail("save_load", f"the loaded modality's config differs in {keys}", fix)
            return False
        res, ok = self.attempt("save_load", "sampling the loaded model", fix, self._sample, loaded, self.opts.n_samples)
        if not ok:
            return False
        d = (res[0] - self.xs).abs().max().item() if res[0].shape == self.xs.shape else float("inf")
        if d > 1e-5 * max(1.0, self.xs.abs().max().item()):
            self.fail("save_load", f"the loaded model samples differently (max |Δx| = {d:.3g}, same seed)", fix)
            return False

    def check_equivariance(self):
        from .symmetry import check_equivariance

        return check_equivariance(self)

    def check_metrics(self):
        from .metrics import check_metrics

        return check_metrics(self)


def _signature(fn) -> str:
    import inspect

    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"


def _shape_of(t) -> str:
    return f"shape {tuple(t.shape)} (finite: {_finite(t)})" if torch.is_tensor(t) else repr(t)[:100]


def _count(samples) -> int | None:
    try:
        return len(samples)
    except TypeError:
        return None


def _first_type(samples):
    try:
        return type(samples[0])
    except Exception:
        return type(samples)


def _valid_rows(x, cond, i):
    """Sample ``i``'s entries along axis 1 that its ``cond["mask"]`` marks valid (all if no mask)."""
    xi = x[i]
    m = cond.get("mask") if isinstance(cond, dict) else None
    if torch.is_tensor(m) and m.ndim == 2 and xi.ndim >= 1 and m.shape[1] == xi.shape[0]:
        return xi[m[i].cpu() > 0.5]
    return xi


def _sample_difference(xb, cb, i, x1, c1) -> str | None:
    a, b = _valid_rows(xb, cb, i), _valid_rows(x1, c1, 0)
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)} in the batch, {tuple(b.shape)} alone"
    d = (a - b).abs().max().item() if a.numel() else 0.0
    if d > 1e-3 * max(1.0, a.abs().max().item() if a.numel() else 1.0):
        return f"max |Δx| = {d:.3g}"
    return None
