"""A trained (or trainable) diffusion model: modality + network + schedule + parameterisation.

``DiffusionModel.sample`` is the one entry point for generation in every modality;
``save``/``load`` use the checkpoint format of :mod:`polydiff.checkpoint`. A modality with
parts (:meth:`polydiff.modality.Modality.parts`: a mixed continuous–categorical state) is routed
to :mod:`polydiff.mixed_model` for sampling, training and checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt
from . import discretization
from . import guidance as guidance_mod
from .conditioning import to_device
from .errors import CheckpointError, PolydiffError
from .guidance import bind
from .mixed import parts_config
from .mixed_model import check_saved_parts
from .modality import Modality
from .parameterization import Denoiser
from .rng import SampleRNG


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but CUDA is not available")
    return dev


def _version() -> str:
    from . import __version__

    return __version__


class DiffusionModel:
    """Args:
    modality: a :class:`Modality` instance (holds data statistics and extra modules).
    network: the denoiser network ``net(x_in, time, cond)``.
    schedule: a :class:`polydiff.schedules.Schedule`.
    parameterization: what the network predicts (``edm``, ``eps``, ``v``, …).
    network_name / network_kwargs: registry key and constructor arguments (saved).
    schedule_name: registry key of the schedule (saved with its config).
    """

    def __init__(
        self,
        modality: Modality,
        network: nn.Module,
        schedule,
        *,
        parameterization: str = "edm",
        network_name: str = "",
        network_kwargs: dict | None = None,
        schedule_name: str | None = None,
        sigma_data: float | None = None,
        plugin: str | None = None,
        extra: dict | None = None,
    ):
        self.modality = modality
        self.network = network
        self.schedule = schedule
        self.schedule_name = schedule_name or schedule.name
        self.parameterization = parameterization
        self.sigma_data = float(modality.sigma_data if sigma_data is None else sigma_data)
        self.network_name = network_name
        self.network_kwargs = dict(network_kwargs or {})
        self.plugin = plugin
        self.extra = dict(extra or {})
        self.ema: nn.Module | None = None
        self.training_info: dict = {}

    # -- construction -----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        modality: str | Modality,
        *,
        network: str | None = None,
        schedule: str | None = None,
        parameterization: str | None = None,
        modality_config: dict | None = None,
        schedule_kwargs: dict | None = None,
        **network_kwargs,
    ) -> "DiffusionModel":
        """Build an untrained model from registry names (defaults from the modality)."""
        from .plugin_manager import get_plugins

        pm = get_plugins()
        plugin: str | None = None
        if isinstance(modality, str):
            entry = pm.registry("modality").entry(modality)
            modality = entry.obj(modality_config)
            plugin = entry.plugin
        elif modality.name in pm.registry("modality"):
            plugin = pm.registry("modality").entry(modality.name).plugin
        assert isinstance(modality, Modality)
        net_name = network or modality.default_network
        kwargs = {**modality.network_kwargs(), **network_kwargs}
        net = modality.build_network(net_name, **kwargs)
        sch_name = schedule or modality.default_schedule
        sch = pm.get("schedule", sch_name)(**(schedule_kwargs or {}))
        return cls(
            modality,
            net,
            sch,
            parameterization=parameterization or modality.default_parameterization,
            network_name=net_name,
            network_kwargs=kwargs,
            schedule_name=sch_name,
            plugin=plugin,
        )

    # -- denoisers ------------------------------------------------------------------------
    @property
    def parts(self) -> dict | None:
        """The modality's parts (:meth:`Modality.parts`), ``None`` for a single continuous tensor."""
        return self.modality.parts()

    def denoiser(self, ema: bool = True):
        """``D(x̃, σ̃, cond) → x̂₀`` (a :class:`Denoiser`); for a modality with parts the mixed
        denoiser ``D(state, t, cond)`` (a :class:`polydiff.mixed_denoiser.MixedDenoiser`)."""
        net = self.ema if (ema and self.ema is not None) else self.network
        parts = self.parts
        if parts is not None:
            from .mixed_denoiser import MixedDenoiser

            return MixedDenoiser(net, parts)
        return Denoiser(net, self.schedule, self.parameterization, self.sigma_data)

    @property
    def device(self) -> torch.device:
        p = next(self.network.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def to(self, device) -> "DiffusionModel":
        device = resolve_device(device)
        self.network.to(device)
        if self.ema is not None:
            self.ema.to(device)
        for m in self.modality.modules().values():
            m.to(device)
        return self

    def init_ema(self) -> nn.Module:
        self.ema = copy.deepcopy(self.network).requires_grad_(False)
        return self.ema

    # -- sampling ---------------------------------------------------------------------------
    def sigma_grid(self, steps: int, grid: str = "karras", **kw) -> torch.Tensor:
        if self.parameterization == "edm" and grid == "karras":
            kw.setdefault("sigma_min", 0.002)
            kw.setdefault("sigma_max", 80.0)
        return discretization.make_grid(grid, self.schedule, steps, **kw)

    def _request_grid(self, sampler: str, spec, grid, steps, nfe, sigma_min, sigma_max) -> torch.Tensor:
        """The σ̃ grid of a sampling call (see :meth:`sample_raw`'s ``grid``)."""
        from .samplers import tuning

        bounds = {k: v for k, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max)) if v is not None}
        if grid == "tuned" or (grid is None and not bounds):
            want_steps = None if nfe is not None else (50 if steps is None else steps)
            tuned = tuning.lookup(self, sampler, nfe if steps is None else None, want_steps)
            if tuned is not None:
                return tuned
            if grid == "tuned":
                asked = f"NFE {nfe}" if nfe is not None and steps is None else f"{want_steps} steps"
                raise PolydiffError(
                    f"grid='tuned': no tuned grid is stored for sampler {sampler!r} at {asked}; stored: "
                    f"{tuning.describe(self)} (run `polydiff tune-steps CHECKPOINT --sampler {sampler} --nfe N`)"
                )
        if steps is None:
            steps = spec.steps_for_nfe(nfe) if nfe is not None else 50
        return self.sigma_grid(steps, grid or "karras", **bounds)

    @torch.no_grad()
    def sample_raw(
        self,
        n: int,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        nfe: int | None = None,
        grid: str | None = None,
        seed: int = 0,
        cond: dict | None = None,
        guidance=1.0,
        negative: dict | str | None = None,
        guidance_rescale: float = 0.0,
        ema: bool = True,
        sigmas: torch.Tensor | None = None,
        sample_offset: int = 0,
        callback=None,
        wrap=None,
        x_init: torch.Tensor | None = None,
        x_T: torch.Tensor | None = None,
        sampling_cond: dict | None = None,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        **sampler_options,
    ) -> tuple[torch.Tensor | dict[str, torch.Tensor], dict | None]:
        """Sample ``n`` states; returns ``(x [n, ...], cond)`` before decoding.

        ``sampler``: a registered sampler (default ``dpmpp_2m``). For a modality with parts
        (:meth:`polydiff.modality.Modality.parts`) ``x`` is ``{part: [n, ...]}``, the sampler is
        ``"ancestral"`` (default), ``"euler"`` or ``"dpmpp_2m"`` over ``steps`` (or ``nfe``) time steps,
        ``guidance`` a CFG scale, ``wrap(denoiser, cond)`` wraps the bound ``D(state, t)`` (e.g.
        :func:`polydiff.mixed.mixed_known_region`), ``grid="power:ρ"`` shrinks the time steps
        towards t = 0 (:func:`polydiff.categorical.time_grid`; default uniform),
        ``final="argmax"`` ends on the most probable categorical values instead of a draw,
        ``temperature=τ`` draws the categorical steps from p̂(x₀ | x_t) ∝ exp(logits/τ),
        ``restart_noise=[γ, …]`` scales each restart's noise (0: the finished sample is
        relabelled and refined; :func:`polydiff.mixed.restart_state`)
        (:func:`polydiff.mixed.sample_mixed`; a checkpoint can set these in
        ``extra["sample_defaults"]``), and the σ̃-grid and initial-state keywords do
        not apply (:mod:`polydiff.mixed_model`).

        ``guidance``: a CFG scale, a registered guidance name, ``(name, scale)``,
        ``(name, {options})`` or a list of those, composed in list order (see
        :mod:`polydiff.guidance`); ``negative`` (a cond dict) and ``guidance_rescale`` are
        CFG's options (a string ``negative`` is a negative prompt, ``{"prompt": negative}``;
        the modality's :meth:`~polydiff.modality.Modality.prepare_negative` turns a request into
        cond tensors). ``wrap(denoiser, cond) -> denoiser`` (bound ``D(x, σ̃)``) is applied
        last: editing tools (known-region inpainting) pin parts of x̂₀ with it.
        Initial state: pure noise σ₀·z by default; ``x_init`` (``[n, ...]``, clean data)
        starts from ``x_init + σ₀·z`` (SDEdit: pass a truncated ``sigmas``); ``x_T``
        (``[n, ...]``) is the exact initial state at σ₀ in the sampler's VE view (noise
        included; DDIM inversion's output, say). With either, the shape comes from it and
        ``sampling_cond`` (or None) replaces the modality's :meth:`sampling_request`.
        Sample i uses generator ``(seed, sample_offset + i)``: results do not depend on ``n``.
        ``sigma_min``/``sigma_max`` bound the σ̃ grid (in the data's units) when ``sigmas``
        is not given. ``grid``: a :func:`polydiff.discretization.make_grid` name, or
        ``"tuned"``: the grid stored for this sampler and NFE by ``polydiff tune-steps``
        (``extra["tuned_grids"]``, :mod:`polydiff.samplers.tuning`; an error names the stored
        pairs when there is none). Left out (None): the tuned grid when one is stored for the
        sampler and NFE (or steps) in use and no σ̃ bounds are given, else ``karras``. The
        sampling network (EMA by default) and the modality's modules run in eval mode for the
        call and get their previous modes back.
        """
        from .samplers import get_sampler

        if negative is not None:
            negative = self.modality.prepare_negative(
                {"prompt": negative} if isinstance(negative, str) else negative, n
            )
        if self.parts is not None:
            from . import mixed_model

            unsupported = {
                "guidance_rescale": guidance_rescale,
                "sigmas": sigmas is not None,
                "x_init": x_init is not None,
                "x_T": x_T is not None,
                "sampling_cond": sampling_cond is not None,
                "sigma_min": sigma_min is not None,
                "sigma_max": sigma_max is not None,
                **{k: True for k in sampler_options if k not in ("final", "temperature", "restart_noise")},
            }
            return mixed_model.sample_raw(
                self,
                n,
                sampler=sampler,
                steps=steps,
                nfe=nfe,
                seed=seed,
                cond=cond,
                guidance=guidance,
                negative=negative,
                ema=ema,
                sample_offset=sample_offset,
                callback=callback,
                wrap=wrap,
                unsupported=unsupported,
                final=sampler_options.get("final") or "sample",
                temperature=1.0
                if sampler_options.get("temperature") is None
                else float(sampler_options["temperature"]),
                grid=grid,
                restart_noise=sampler_options.get("restart_noise"),
            )
        sampler = sampler or "dpmpp_2m"
        spec = get_sampler(sampler)
        _check_sampler_options(sampler, spec, sampler_options)
        if x_init is not None and x_T is not None:
            raise PolydiffError("pass x_init (clean data, noise added) or x_T (the initial state), not both")
        if sigmas is None:
            sigmas = self._request_grid(sampler, spec, grid, steps, nfe, sigma_min, sigma_max)
        dev = self.device
        rng = SampleRNG(seed, n, offset=sample_offset)
        given = x_init if x_init is not None else x_T
        if given is not None:
            shape, c = tuple(given.shape[1:]), sampling_cond
        elif sampling_cond is not None:
            raise PolydiffError("sampling_cond needs x_init or x_T (the shape of the items it describes)")
        else:
            shape, c = self.modality.sampling_request(n, cond, rng)
        c = to_device(c, dev)
        space = self.modality.space(c)
        if x_T is not None:
            x = space.project(x_T.to(device=dev, dtype=torch.float32))
        else:
            x = space.randn_like(torch.zeros((n,) + tuple(shape), device=dev), rng) * float(sigmas[0])
            if x_init is not None:
                x = space.project(x + x_init.to(device=dev, dtype=x.dtype))
        den = self.denoiser(ema)
        specs = guidance_mod.resolve(guidance, negative=negative, rescale=guidance_rescale)
        d = bind(guidance_mod.build(den, specs, model=self), c)
        if wrap is not None:
            d = wrap(d, c)
        opts = {**spec.defaults, **sampler_options}
        with _eval_mode(den.net, *self.modality.modules().values()):
            x = spec.fn(d, x, sigmas, space=space, rng=rng, callback=callback, **opts)
        # The last step returns the network's x̂₀; keep samples inside the space (e.g. zero
        # centre of mass) even where the network itself is not exactly equivariant.
        return space.project(x), c

    def sample(self, n: int, *, prompt: str | list[str] | None = None, **kwargs) -> list:
        """Sample ``n`` items and decode them to domain objects (keywords: :meth:`sample_raw`).

        Options the caller leaves out are taken from ``extra["sample_defaults"]`` (saved with
        the model; e.g. a starter model's tested sampler, NFE, guidance and σ̃ range).
        ``prompt`` (one string, or ``n``) is ``cond["prompt"]`` of a text-conditioned model
        (:mod:`polydiff.text`); a string ``negative`` is a negative prompt (CFG's other branch).
        """
        defaults = dict(self.extra.get("sample_defaults") or {})
        if prompt is not None:
            if not self.modality.accepts_prompts:
                raise PolydiffError(
                    f"this {self.modality.name!r} model is not conditioned on text prompts (its modality config "
                    "has no text encoder: Modality.accepts_prompts is False); use a text-prompted model, "
                    "e.g. polydiff.generate(modality, prompt=...)"
                )
            kwargs["cond"] = {**(defaults.pop("cond", None) or {}), **(kwargs.get("cond") or {}), "prompt": prompt}
        if "steps" in kwargs or "sigmas" in kwargs:
            defaults.pop("nfe", None)
        if "nfe" in kwargs or "sigmas" in kwargs:  # a saved step count must not override the NFE asked for
            defaults.pop("steps", None)
        if "restart_noise" in defaults and _asks_other_grid(defaults, kwargs):
            # a saved restart_noise has one scale per restart of the saved grid only
            defaults.pop("restart_noise")
        if self.parts is not None and "grid" not in kwargs and isinstance(defaults.get("grid"), str):
            defaults["grid"] = _saved_time_grid_for(self, defaults, kwargs)
        if kwargs.get("grid", defaults.get("grid")) in (None, "tuned") and not {"sigma_min", "sigma_max"} & set(kwargs):
            # a tuned grid was tuned over the saved σ̃ range: the saved bounds must not switch it off
            req = {**defaults, **kwargs}
            from .samplers import tuning

            steps = req.get("steps")
            nfe = req.get("nfe") if steps is None else None
            if tuning.lookup(self, req.get("sampler") or "dpmpp_2m", nfe, steps) is not None:
                defaults.pop("sigma_min", None)
                defaults.pop("sigma_max", None)
        kwargs = {**defaults, **kwargs}
        x, c = self.sample_raw(n, **kwargs)
        return self.modality.decode(x, c)

    # -- persistence -----------------------------------------------------------------------------
    def config(self) -> dict:
        from .plugin_manager import get_plugins

        pm = get_plugins()
        plugin = self.plugin or "local"
        parts = self.parts
        extra_keys = {} if parts is None else {"parts": parts_config(parts)}
        return {
            "polydiff_version": _version(),
            "plugin": {"name": plugin, "version": pm.plugins.get(plugin, "local")},
            "modality": {"name": self.modality.name, "config": self.modality.config},
            "network": {"name": self.network_name, "kwargs": self.network_kwargs, **_experts_config(self.network)},
            "schedule": {"name": self.schedule_name, "config": self.schedule.config()},
            "parameterization": {"kind": self.parameterization, "sigma_data": self.sigma_data},
            "training": self.training_info,
            "extra": self.extra,
            **extra_keys,
        }

    def state_tensors(self, ema: bool = False) -> dict[str, torch.Tensor]:
        net = self.ema if ema and self.ema is not None else self.network
        out = {f"network.{k}": v for k, v in net.state_dict().items()}
        if not ema:
            for name, mod in self.modality.modules().items():
                out.update({f"modules.{name}.{k}": v for k, v in mod.state_dict().items()})
        return out

    def save(self, path: str | Path) -> Path:
        files = {"model.safetensors": self.state_tensors()}
        if self.ema is not None:
            files["ema.safetensors"] = self.state_tensors(ema=True)
        return ckpt.write_checkpoint(Path(path), self.config(), files)

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = "cpu", ema: bool = True) -> "DiffusionModel":
        from .plugin_manager import get_plugins

        path = Path(path)
        cfg = ckpt.read_config(path)
        pm = get_plugins()
        try:
            plugin = cfg["plugin"]["name"]
            mod_name = cfg["modality"]["name"]
            net_name = cfg["network"]["name"]
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{path / ckpt.CONFIG_NAME}: missing field {e}") from None
        if plugin != "local":
            pm.require_plugin(plugin, needed_for=f"checkpoint {path}")
        try:
            modality = pm.get("modality", mod_name)(cfg["modality"].get("config"))
            net = _build_saved_network(modality, cfg["network"], path)
            sch_cfg = dict(cfg["schedule"]["config"])
            sch_cfg.pop("name", None)
            schedule = pm.get("schedule", cfg["schedule"]["name"])(**sch_cfg)
            check_saved_parts(modality.parts(), cfg.get("parts"), path)
        except PolydiffError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise CheckpointError(
                f"{path / ckpt.CONFIG_NAME}: cannot rebuild the model from its config ({type(e).__name__}: {e})"
            ) from None
        model = cls(
            modality,
            net,
            schedule,
            parameterization=cfg["parameterization"]["kind"],
            network_name=net_name,
            network_kwargs=cfg["network"].get("kwargs", {}),
            schedule_name=cfg["schedule"]["name"],
            sigma_data=cfg["parameterization"]["sigma_data"],
            plugin=plugin,
            extra=cfg.get("extra", {}),
        )
        model.training_info = cfg.get("training", {})
        files = cfg.get("files", {})
        if "model.safetensors" not in files:
            raise CheckpointError(f"{path}: config.json lists no model.safetensors")
        tensors = ckpt.load_tensors(path, "model.safetensors", files["model.safetensors"])
        _load_prefixed(net, tensors, "network.", path)
        for name, mod in modality.modules().items():
            _load_prefixed(mod, tensors, f"modules.{name}.", path)
        if "ema.safetensors" in files:
            _load_prefixed(
                model.init_ema(), ckpt.load_tensors(path, "ema.safetensors", files["ema.safetensors"]), "network.", path
            )
            if not ema:
                model.ema = None
        if device is not None:
            model.to(device)
        return model


#: sample_raw's own keywords (anything else must be an option of the chosen sampler)
_SAMPLE_KEYWORDS = tuple(
    p for p in inspect.signature(DiffusionModel.sample_raw).parameters if p not in ("self", "n", "sampler_options")
)


def _check_sampler_options(name: str, spec, options: dict) -> None:
    """An unknown keyword names itself, what ``sample`` accepts and what the sampler accepts."""
    params = inspect.signature(spec.fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    own = [p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p not in ("space", "rng", "callback")]
    unknown = sorted(set(options) - set(own))
    if unknown:
        raise PolydiffError(
            f"sample() got unexpected keyword(s) {', '.join(map(repr, unknown))}: sample accepts "
            f"{', '.join(_SAMPLE_KEYWORDS)}; sampler {name!r} also accepts {', '.join(own) or '(no options)'}"
        )


@contextlib.contextmanager
def _eval_mode(*modules):
    """Eval mode for ``modules`` (those that are ``nn.Module``) inside the block; previous modes after."""
    mods = [m for m in modules if isinstance(m, nn.Module)]
    was = [m.training for m in mods]
    for m in mods:
        m.eval()
    try:
        yield
    finally:
        for m, w in zip(mods, was):
            m.train(w)


def _experts_config(net: nn.Module) -> dict:
    """The ``network`` config's ``time_experts`` entry of a :class:`~polydiff.experts.TimeExperts` network."""
    from .experts import TimeExperts

    return {"time_experts": {"bounds": list(net.bounds)}} if isinstance(net, TimeExperts) else {}


def _build_saved_network(modality, cfg: dict, path: Path) -> nn.Module:
    """The network of a checkpoint's ``network`` config: one of ``name(**kwargs)``, or with
    ``time_experts`` one per interval of its bounds (:class:`~polydiff.experts.TimeExperts`)."""
    kwargs = cfg.get("kwargs", {})
    experts = cfg.get("time_experts")
    if experts is None:
        return modality.build_network(cfg["name"], **kwargs)
    from .experts import TimeExperts

    bounds = experts.get("bounds") if isinstance(experts, dict) else None
    if not isinstance(bounds, list) or not bounds:
        raise CheckpointError(f"{path / ckpt.CONFIG_NAME}: network.time_experts.bounds must be a list of numbers")
    return TimeExperts([modality.build_network(cfg["name"], **kwargs) for _ in range(len(bounds) + 1)], bounds)


def _load_prefixed(module: nn.Module, tensors: dict, prefix: str, path: Path) -> None:
    sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the architecture ({prefix[:-1]}): "
            f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
        )


def _asks_other_grid(defaults: dict, kwargs: dict) -> bool:
    """Whether a sampling call's keywords ask for another grid than the saved defaults'
    (another sampler, grid name or step count)."""
    for key in ("sampler", "grid"):
        if key in kwargs and kwargs[key] != defaults.get(key):
            return True
    asked = kwargs.get("steps", kwargs.get("nfe"))
    saved = defaults.get("steps", defaults.get("nfe"))
    return asked is not None and (saved is None or int(asked) != int(saved))


def _saved_time_grid_for(model, defaults: dict, kwargs: dict) -> str:
    """The saved time grid of a mixed model for a call that may ask another step count: the
    saved grid belongs to the saved count (a restart schedule fixes its steps), so at another
    count the grid stored for it (``"tuned"``) or else the saved grid's base (``"power:ρ"``
    without its restarts) is used."""
    from .samplers import tuning

    saved = defaults["grid"]
    asked = kwargs.get("steps", kwargs.get("nfe"))
    if asked is None or int(asked) == int(defaults.get("steps", defaults.get("nfe", asked))):
        return saved
    sampler = kwargs.get("sampler", defaults.get("sampler")) or "ancestral"
    if tuning.lookup(model, sampler, int(asked)) is not None:
        return "tuned"
    return saved.split("+", 1)[0]
