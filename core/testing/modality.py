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
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

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


def finite(t) -> bool:
    return bool(torch.isfinite(torch.as_tensor(t).float()).all())


def batch_axis_problems(cond, n: int) -> list[str]:
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
        self.parts = None  # the modality's parts (Modality.parts) once ``data`` has run

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
        from . import data, sampling
        from .metrics import check_metrics
        from .symmetry import check_equivariance

        steps = [
            ("data", data.check_data),
            ("network", data.check_network),
            ("loss", data.check_loss),
            ("sampling", sampling.check_sampling),
            ("files", sampling.check_files),
            ("batch_independence", sampling.check_batch_independence),
            ("save_load", sampling.check_save_load),
            ("equivariance", check_equivariance),
            ("metrics", check_metrics),
        ]
        for check, fn in steps:
            if not self.wanted(check):
                continue
            missing = [n for n in NEEDS.get(check, ()) if n in self.broken]
            if missing:
                self.rep.skipped.append((check, self.comp, f"needs {', '.join(missing)}, which failed"))
                self.broken.add(check)
                continue
            result = fn(self)
            if result is SKIPPED:
                continue
            if result is not False:
                self.passed(check)

    # -- shared by the checks -------------------------------------------------------------
    def _denoise(self, x, cond):
        """D(x, σ, cond) of the model under test at the run's σ (no gradients)."""
        with torch.no_grad():
            return self.denoiser(x, self.sigma, cond)

    def _sample(self, model, n, offset=0):
        """``model.sample_raw`` with the kit's sampler, steps, seed and request."""
        o = self.opts
        model.network.eval()
        return model.sample_raw(
            n, sampler=o.sampler, steps=o.steps, seed=o.seed, cond=o.sample_cond, sample_offset=offset
        )
