"""The modality interface every modality plugin implements.

A modality knows its data (loading, batching, statistics), where its noise lives (the
space), how to turn a sampled tensor back into domain objects (molecules, waveforms,
images, structures), how to write them to real files, and which metrics apply. The core
knows nothing else about it.

Batches are dicts ``{"x": Tensor [B, ...], "cond": dict | None}`` (see
:mod:`polydiff.conditioning` for the cond conventions).

A modality whose state has several named parts, real-valued and categorical (atom positions
and atom types, point positions and point labels), returns them from :meth:`Modality.parts`;
its ``x`` is then a dict ``{part: Tensor [B, ...]}`` and the model trains and samples it
with :mod:`polydiff.mixed` (see :meth:`Modality.parts` for the contract).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .errors import PluginError, RegistryError
from .plugin_contract import check_network_forward
from .spaces import EuclideanSpace


class Modality:
    """Base class. Subclasses set the class attributes and override the hooks they need.

    Required (checked when the plugin registers the class, :mod:`polydiff.plugin_contract`):
    class attributes ``name`` (str, equal to the registered name), ``default_network``
    (str, a registered network), ``default_dataset`` (str, a registered dataset),
    ``default_metrics`` (list/tuple of registered metric names, may be empty), and the
    methods :meth:`sampling_request`, :meth:`write` and :meth:`read`. :meth:`collate` is
    required unless the items are tensors/arrays of one shape. Everything else has a default.

    Instances carry a JSON-able ``config`` (vocabulary, label names, data statistics, …)
    that is saved in checkpoints and passed back to the constructor on load; any
    ``nn.Module`` the modality owns (a VAE, a vocoder) is returned by :meth:`modules` and
    saved with the model.
    """

    name: str = ""
    default_network: str = ""
    default_dataset: str = ""
    default_schedule: str = "edm"
    default_parameterization: str = "edm"
    sigma_data: float = 0.5
    #: metric names that :meth:`evaluate` computes by default
    default_metrics: Sequence[str] = ()
    #: symmetries the denoiser has (checked by :mod:`polydiff.testing`): any of
    #: ``"rotation"``, ``"reflection"``, ``"permutation"`` (of the set axis 1)
    equivariance: tuple[str, ...] = ()
    #: which channels of the state's last axis hold coordinates: ``k`` (the first k) or
    #: ``(start, stop)``; None when the state holds no coordinates
    position_dims: int | tuple[int, int] | None = None
    #: options for the conformance kit (keys of :class:`polydiff.testing.ModalityOptions`:
    #: tiny dataset options, tiny network kwargs, a sampling request, metrics to skip)
    conformance: dict = {}

    def __init__(self, config: dict | None = None):
        self.config: dict = dict(config or {})

    # -- data ----------------------------------------------------------------------
    def load_dataset(self, name: str | None = None, **options) -> Any:
        """A dataset (sequence of items) by registered name; may update ``self.config``
        with data statistics (e.g. the atom-count histogram)."""
        from .plugin_manager import registry

        name = name or self.default_dataset
        reg = registry("dataset")
        entry = reg.entry(name)
        if entry.info.get("modality") not in (None, self.name):
            own = [e.name for e in reg if e.info.get("modality") == self.name]
            raise RegistryError(
                f"dataset {name!r} belongs to modality {entry.info.get('modality')!r}, not {self.name!r}; "
                f"datasets of {self.name!r}: {', '.join(own) or '(none)'}"
            )
        dataset = entry.obj(**options)
        self.fit(dataset)
        return dataset

    def fit(self, dataset) -> None:
        """Record data statistics needed at sampling time in ``self.config``."""

    def item_size(self, item) -> float | None:
        """A number that sets how much padding an item needs in a batch (atoms of a molecule,
        frames of a clip), for training with ``group_by_size``; None (the default): items
        are all the same size."""
        return None

    def collate(self, items: list) -> dict:
        """Items → batch ``{"x": Tensor [B, ...], "cond": dict | None}``.

        The default stacks items that are tensors or arrays of one shape; a modality whose
        items are anything else (dicts, molecules) must implement it."""
        first = items[0] if len(items) else None
        if first is not None and not isinstance(first, (torch.Tensor, np.ndarray, list, tuple, float, int)):
            raise PluginError(
                f"modality {self.name!r} ({type(self).__qualname__}): its items are {type(first).__name__}, which the "
                "default Modality.collate cannot batch (it stacks tensors); implement "
                "collate(items) -> {'x': Tensor [B, ...], 'cond': dict | None}"
            )
        return {"x": torch.stack([torch.as_tensor(i) for i in items]), "cond": None}

    # -- noise space and sampling ------------------------------------------------------
    def space(self, cond: dict | None):
        return EuclideanSpace()

    def parts(self) -> dict | None:
        """The named parts of a mixed continuous–categorical state, or ``None`` (the default:
        the state is one real tensor and everything below holds as written).

        A mixed modality returns ``{name: polydiff.mixed.ContinuousPart |
        polydiff.mixed.CategoricalPart}`` built from ``self.config`` alone (it is called again
        after :meth:`fit` and after loading, and checkpoints store
        :func:`polydiff.mixed.parts_config` of it; loading refuses a checkpoint whose saved parts
        differ from the rebuilt ones). A continuous part brings its schedule, ``sigma_data`` and
        ``space(cond)`` (where its noise lives); a categorical part its process (masked, uniform
        or data-marginal, :mod:`polydiff.categorical`). The other methods then take dicts:

        - ``collate(items)`` → ``{"x": {part: Tensor [B, ...]}, "cond": ...}`` (continuous parts
          float, categorical parts ``long`` clean classes in ``0 … K − 1``);
        - ``sampling_request(n, cond, rng)`` → ``({part: per-sample shape}, cond)``;
        - ``decode(state, cond)`` with ``state = {part: Tensor [n, ...]}``;
        - the network is ``net(state_in, time, cond) → {part: output}``
          (:class:`polydiff.mixed_denoiser.MixedDenoiser`: continuous parts EDM-preconditioned,
          categorical parts as ``long`` indices, ``time`` = t ∈ [0, 1]; outputs F shaped like the
          part, clean-class logits ``[..., K]``).

        ``cond["mask"]`` ``[B, N]`` (padding) also masks categorical parts ``[B, N, ...]`` in the
        loss (pairs ``[B, N, N]`` of a symmetric part by both ends); :meth:`space` and
        :meth:`auxiliary_loss` are not used for a mixed modality.
        """
        return None

    def sampling_request(self, n: int, cond: dict | None, rng) -> tuple[tuple, dict | None]:
        """Per-sample shape (without the batch axis) and the cond tensors for ``n`` samples.

        ``cond`` is the user's request (e.g. ``{"label": "piano_C4"}`` or
        ``{"n_atoms": 9}``); ``rng`` is a :class:`polydiff.rng.SampleRNG` for anything the
        modality must draw per sample (atom counts from the histogram, say).
        """
        raise NotImplementedError(f"modality {self.name!r} does not implement sampling_request")

    def part_loss_weights(self) -> dict[str, float] | None:
        """Per-part weights of the training loss of a mixed state (:meth:`parts`), e.g.
        ``{"pos": 3.0, "bond": 2.0}`` (MiDi weighs its parts so); parts left out weigh 1. The
        default reads ``config["part_loss_weights"]`` (None: every part weighs 1)."""
        w = self.config.get("part_loss_weights")
        return None if not w else {str(k): float(v) for k, v in w.items()}

    @property
    def accepts_prompts(self) -> bool:
        """True when :meth:`sampling_request` takes ``cond={"prompt": ...}`` (a text-conditioned
        model, :mod:`polydiff.text`); ``model.sample(prompt=...)`` refuses a prompt otherwise."""
        return False

    def prepare_negative(self, negative: dict, n: int) -> dict:
        """A negative condition for CFG (``model.sample(..., negative=...)``) as cond tensors
        of ``n`` samples with the keys of :meth:`sampling_request`'s cond. The default returns
        ``negative`` unchanged (already tensors); a text modality tokenizes ``{"prompt": str}``."""
        return negative

    def decode(self, x: torch.Tensor | dict[str, torch.Tensor], cond: dict | None) -> list:
        """Sampled states ``[B, ...]`` (``{part: [B, ...]}`` with :meth:`parts`) → domain objects (one per sample)."""
        return list(x)

    def write(self, samples: list, path: str | Path) -> list[Path]:
        """Write samples to real files (SDF, PDB, WAV, PNG…); returns the paths written."""
        raise NotImplementedError(f"modality {self.name!r} cannot write files")

    def read(self, path: str | Path) -> list:
        """Read samples written by :meth:`write` (for ``polydiff eval``)."""
        raise NotImplementedError(f"modality {self.name!r} cannot read files")

    # -- training ---------------------------------------------------------------------------
    def auxiliary_loss(
        self, x0_hat: torch.Tensor, x0: torch.Tensor, sigmas: torch.Tensor, cond: dict | None, weight: torch.Tensor
    ) -> torch.Tensor | None:
        """Optional extra training term ``[B]`` on the denoised estimate ``x0_hat`` (same
        shape as ``x0``) at noise levels ``sigmas [B]``; ``weight [B]`` is the denoising
        loss weight λ(σ̃). ``None`` (the default) adds nothing."""
        return None

    # -- modules and metrics -------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        """Extra modules (VAE, classifier) saved and loaded with the model."""
        return {}

    def build_network(self, name: str | None = None, **kwargs) -> nn.Module:
        from .plugin_manager import registry

        name = name or self.default_network
        entry = registry("network").entry(name)
        net = entry.obj(**kwargs)
        if not inspect.isclass(entry.obj):  # a factory: its product's forward is checked here
            check_network_forward(net, f"plugin {entry.plugin!r}: network {name!r}")
        return net

    def network_kwargs(self) -> dict:
        """Data-dependent network arguments (input channels, number of classes…)."""
        return {}

    def evaluate(
        self, samples: list, reference: Any = None, metrics: Sequence[str] | None = None, **options
    ) -> dict[str, float]:
        """Registered metrics of this modality on ``samples``."""
        from .plugin_manager import registry

        reg = registry("metric")
        out = {}
        for m in metrics or self.default_metrics:
            out[m] = float(reg.get(m)(samples, reference=reference, **options))
        return out
