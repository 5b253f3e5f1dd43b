"""The image modality: pixel or latent diffusion of ``[C, H, W]`` images in [-1, 1],
class-conditional (CFG) and optionally a super-resolution stage.

``config`` (JSON, saved in checkpoints):

- ``dataset``: default data set (``mnist5k``, ``sklearn_digits``, …); fills in the shape.
- ``channels``, ``image_size``, ``num_classes``, ``class_names``: the data's shape.
- ``latent``: ``None`` (pixel diffusion) or ``{"latent_channels", "downsample", "channels",
  "vae_steps", "scale"}``: diffusion on ``scale·μ_VAE(x)`` (Rombach et al. 2022); the VAE is
  trained by :meth:`fit` when ``scale`` is missing and saved with the model (:meth:`modules`).
- ``superres``: ``None`` or ``{"low_size": 14}``: a cascaded stage (Saharia et al. 2022)
  whose network also sees ``cond["lowres"]``, the ``low_size`` image upsampled (bicubic)
  back to ``image_size``.

- ``text``: ``None`` (class labels, the default) or ``{"encoder": "tiny", **encoder options}``:
  a text-prompt model (issue 20). The network gets ``text=`` (and no class embedding);
  :meth:`load_dataset` returns a :class:`~.captions.CaptionedImageDataset` whose items carry a
  caption built from the digit and attributes measured on the image; ``captions`` then holds
  ``{"thresholds", "held_out_triples", "seed", "shear", "shear_prob"}`` (shear: slant augmentation,
  see :class:`~.captions.CaptionedImageDataset`; thresholds fitted on the training data by
  :meth:`fit`, used by the prompt metrics to judge generated images with the same functions).

Cond dicts: ``label`` ``[B]`` long, ``cond_mask`` ``[B]`` (0 = unconditional/null),
``lowres`` ``[B, C, H, W]`` for super-resolution; with ``text``: ``prompt_ids`` /
``prompt_mask`` ``[B, L]`` (:func:`polydiff.text.prompt_cond`) and, when sampling, ``prompt``
(the list of prompt strings, carried to :meth:`decode`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from polydiff.modality import Modality
from polydiff.spaces import EuclideanSpace

from .io import ImageSample, read_samples, write_samples

#: data set name → (channels, image_size, num_classes)
KNOWN_SHAPES = {"mnist5k": (1, 28, 10), "sklearn_digits": (1, 8, 10)}


def upsample_lowres(low: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, C, h, w]`` → bicubic ``[B, C, size, size]`` clamped to [-1, 1] (the SR condition)."""
    return F.interpolate(low.float(), size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, C, H, W]`` → area-averaged ``[B, C, size, size]`` (the low-resolution input)."""
    return F.interpolate(x.float(), size=(size, size), mode="area")


class ImageModality(Modality):
    name = "image"
    default_network = "image_unet"
    default_dataset = "mnist5k"
    default_metrics = (
        "image_class_accuracy",
        "image_fd_ours",
        "image_kid_ours",
        "image_precision_ours",
        "image_recall_ours",
    )
    sigma_data = 0.5

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        c = self.config
        ds = c.setdefault("dataset", self.default_dataset)
        ch, size, k = KNOWN_SHAPES.get(ds, (1, 28, 10))
        c.setdefault("channels", ch)
        c.setdefault("image_size", size)
        c.setdefault("num_classes", k)
        c.setdefault("class_names", [str(i) for i in range(c["num_classes"])])
        c.setdefault("latent", None)
        c.setdefault("superres", None)
        c.setdefault("text", None)
        if c["text"]:
            if c["superres"]:
                raise ValueError("a text-prompt super-resolution stage is not supported")
            c["text"] = {"encoder": "tiny", **(c["text"] if isinstance(c["text"], dict) else {})}
            c["captions"] = {"held_out_triples": None, "seed": 0, **(c.get("captions") or {})}
            if c["captions"]["held_out_triples"] is None:
                from .captions import HELD_OUT_TRIPLES

                c["captions"]["held_out_triples"] = [list(t) for t in HELD_OUT_TRIPLES]
        self.vae = None
        if c["latent"]:
            if c["superres"]:
                raise ValueError("a latent super-resolution stage is not supported: use pixel space")
            from .vae import ConvVAE

            lat = c["latent"] = {
                "latent_channels": 4,
                "downsample": 2,
                "channels": 32,
                "vae_steps": 1500,
                **(c["latent"] if isinstance(c["latent"], dict) else {}),
            }
            if c["image_size"] % (2 ** lat["downsample"]):
                raise ValueError(f"image_size {c['image_size']} is not divisible by 2^{lat['downsample']}")
            self.vae = ConvVAE(c["channels"], lat["latent_channels"], lat["downsample"], lat["channels"]).eval()
        if c["superres"]:
            c["superres"] = {
                "low_size": c["image_size"] // 2,
                **(c["superres"] if isinstance(c["superres"], dict) else {}),
            }

    # -- shape -------------------------------------------------------------------------------
    @property
    def state_shape(self) -> tuple[int, int, int]:
        """Per-sample shape of the diffused state (pixels, or the VAE latent)."""
        c = self.config
        if c["latent"]:
            f = 2 ** c["latent"]["downsample"]
            return (c["latent"]["latent_channels"], c["image_size"] // f, c["image_size"] // f)
        return (c["channels"], c["image_size"], c["image_size"])

    def network_kwargs(self) -> dict:
        ch, size, _ = self.state_shape
        kw = {"in_channels": ch, "image_size": size, "num_classes": int(self.config["num_classes"])}
        if self.config["superres"]:  # the SR stage is conditioned on the low-res image only
            kw.update(cond_channels=int(self.config["channels"]), num_classes=0)
        if self.config["text"]:
            kw.update(text=dict(self.config["text"]), num_classes=0)
        return kw

    def build_network(self, name: str | None = None, **kwargs):
        """As the base class; a text-prompt model needs a network that takes ``text=`` (``image_unet``)."""
        import inspect

        from polydiff.errors import PolydiffError
        from polydiff.plugin_manager import registry

        if kwargs.get("text"):
            cls = registry("network").entry(name or self.default_network).obj
            if "text" not in inspect.signature(cls).parameters:
                raise PolydiffError(
                    f"network {name!r} cannot read text prompts (no text= argument); use image_unet for a "
                    "text-prompt image model"
                )
        return super().build_network(name, **kwargs)

    # -- text prompts --------------------------------------------------------------------------
    @property
    def accepts_prompts(self) -> bool:
        """True for a text-prompt model (``config["text"]`` set)."""
        return bool(self.config["text"])

    def tokenizer(self):
        """The prompt tokenizer of the configured text encoder (:func:`polydiff.text.tokenizer_for`)."""
        from polydiff.text import tokenizer_for

        opts = dict(self.config["text"])
        return tokenizer_for(opts.pop("encoder", "tiny"), **opts)

    @property
    def thresholds(self) -> dict | None:
        """The attribute-word thresholds fitted on the training data (None before :meth:`fit`)."""
        return (self.config.get("captions") or {}).get("thresholds")

    def prompts_for(self, n: int, prompt) -> list[str]:
        """``prompt``: one string (all samples) or a list; a list of another length than ``n``
        is cycled (sample i gets ``prompt[i mod len]``, so saved defaults work for any n)."""
        if isinstance(prompt, str):
            return [prompt] * n
        prompts = list(prompt)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompt must be a string or a non-empty list of strings")
        return [prompts[i % len(prompts)] for i in range(n)]

    def prepare_negative(self, negative: dict, n: int) -> dict:
        """``{"prompt": str | list}`` → the tokenized negative prompt (the same keys as
        :meth:`sampling_request`'s cond); other dicts pass through."""
        if not self.config["text"] or "prompt" not in (negative or {}):
            return negative
        from polydiff.text import prompt_cond

        prompts = self.prompts_for(n, negative["prompt"])
        return {**prompt_cond(prompts, n, self.tokenizer()), "prompt": prompts}

    def modules(self) -> dict:
        return {"vae": self.vae} if self.vae is not None else {}

    # -- data --------------------------------------------------------------------------------
    def load_dataset(self, name: str | None = None, **options):
        """A registered image data set (default: ``config["dataset"]``), fitted (see :meth:`fit`);
        with ``text``, wrapped as a :class:`~.captions.CaptionedImageDataset`."""
        ds = super().load_dataset(name or self.config["dataset"], **options)
        return self.captioned(ds) if self.config["text"] else ds

    def captioned(self, dataset):
        """``dataset`` with a caption per item (thresholds from :meth:`fit`)."""
        from .captions import CaptionedImageDataset

        if self.thresholds is None:
            self.fit(dataset)
        cap = self.config["captions"]
        return CaptionedImageDataset(
            dataset,
            cap["thresholds"],
            seed=int(cap["seed"]),
            held_out_triples=cap["held_out_triples"],
            shear=float(cap.get("shear", 0.0)),
            shear_prob=float(cap.get("shear_prob", 0.5)),
        )

    def fit(self, dataset) -> None:
        c = self.config
        _, C, H, W = dataset.images.shape
        if H != W:
            raise ValueError(f"images must be square, got {H}×{W}")
        if (C, H) != (c["channels"], c["image_size"]):
            raise ValueError(
                f"the data are {C}×{H}×{W} but the model was created for "
                f"{c['channels']}×{c['image_size']}²; create it with "
                f"modality_config={{'channels': {C}, 'image_size': {H}}} (or 'dataset': name)"
            )
        if dataset.num_classes > c["num_classes"]:
            raise ValueError(f"the data have {dataset.num_classes} classes, the model {c['num_classes']}")
        if dataset.class_names:
            c["class_names"] = list(dataset.class_names) + c["class_names"][len(dataset.class_names) :]
        c["data_pixel_std"] = float(dataset.images.std())
        if c["text"] and not (c.get("captions") or {}).get("thresholds"):
            from .captions import fit_thresholds

            c["captions"]["thresholds"] = fit_thresholds(dataset.images)
        if self.vae is not None and "scale" not in c["latent"]:
            self.fit_latent(dataset)

    def fit_latent(self, dataset, steps: int | None = None, progress: bool = True) -> list[float]:
        """Train the VAE on the data set and record the latent scale (1/std of μ)."""
        from .vae import latent_scale, train_vae

        lat = self.config["latent"]
        losses = train_vae(self.vae, dataset.images, steps=steps or lat["vae_steps"], progress=progress)
        lat["scale"] = latent_scale(self.vae, dataset.images)
        lat["vae_final_loss"] = losses[-1]
        return losses

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Pixels ``[B, C, H, W]`` in [-1, 1] → diffusion state (the scaled latent, or the pixels)."""
        if self.vae is None:
            return images
        dev = next(self.vae.parameters()).device
        return self.vae.encode(images.to(dev))[0] * self.config["latent"].get("scale", 1.0)

    @torch.no_grad()
    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Diffusion state → pixels ``[B, C, H, W]`` clamped to [-1, 1]."""
        if self.vae is not None:
            dev = next(self.vae.parameters()).device
            x = self.vae.decode(x.to(dev).float() / self.config["latent"].get("scale", 1.0))
        return x.float().clamp(-1, 1)

    def collate(self, items: list) -> dict:
        x = torch.stack([torch.as_tensor(i["x"]) for i in items]).float()
        if self.config["text"]:
            from polydiff.text import prompt_cond

            from .captions import DIGIT_WORDS

            caps = [
                i["caption"] if "caption" in i else (DIGIT_WORDS[int(i["label"])] if i.get("label", -1) >= 0 else "")
                for i in items
            ]
            return {"x": self.encode(x).cpu(), "cond": prompt_cond(caps, len(caps), self.tokenizer())}
        labels = torch.tensor([int(i.get("label", -1)) for i in items], dtype=torch.long)
        cond = {"label": labels.clamp(min=0), "cond_mask": (labels >= 0).float()}
        if self.config["superres"]:
            cond["lowres"] = upsample_lowres(downsample(x, self.config["superres"]["low_size"]), x.shape[-1])
        return {"x": self.encode(x).cpu(), "cond": cond}

    # -- sampling ------------------------------------------------------------------------------
    def label_index(self, label) -> int:
        names = self.config["class_names"]
        if isinstance(label, str) and label in names:
            return names.index(label)
        try:
            k = int(label)
        except (TypeError, ValueError):
            raise ValueError(f"unknown class {label!r}; classes: {names}") from None
        if not 0 <= k < self.config["num_classes"]:
            raise ValueError(f"class {k} out of range 0..{self.config['num_classes'] - 1}")
        return k

    def labels_for(self, n: int, label) -> torch.Tensor:
        """``label``: one class (int or name), ``"balanced"`` (i mod K) or ``n`` labels."""
        if isinstance(label, str) and label == "balanced":
            return torch.arange(n) % self.config["num_classes"]
        if torch.is_tensor(label) or isinstance(label, (list, tuple)):
            vals = label.tolist() if torch.is_tensor(label) else list(label)
            if len(vals) != n:
                raise ValueError(f"{len(vals)} labels for {n} samples")
            return torch.tensor([self.label_index(v) for v in vals], dtype=torch.long)
        return torch.full((n,), self.label_index(label), dtype=torch.long)

    def sampling_request(self, n: int, cond: dict | None, rng):
        """cond: ``{"label": ...}`` (see :meth:`labels_for`; absent = unconditional) and, for a
        super-resolution stage, ``{"lowres": [n, C, h, w] in [-1, 1]}``. A text model takes
        ``{"prompt": str | list[str]}`` (see :meth:`prompts_for`; a label is turned into the
        digit's word, nothing = the empty prompt, unconditional)."""
        cond = dict(cond or {})
        if self.config["text"]:
            return self.state_shape, self._text_request(n, cond)
        out = {}
        if cond.get("label") is not None and self.config["num_classes"] > 0:
            out["label"] = self.labels_for(n, cond["label"])
            out["cond_mask"] = torch.ones(n)
        else:
            out["label"] = torch.zeros(n, dtype=torch.long)
            out["cond_mask"] = torch.zeros(n)
        if self.config["superres"]:
            low = cond.get("lowres")
            if low is None:
                raise ValueError("a super-resolution stage needs cond={'lowres': tensor [n, C, h, w]}")
            low = torch.as_tensor(low).float()
            low = low[None] if low.ndim == 3 else low
            if low.shape[0] != n:
                raise ValueError(f"{low.shape[0]} low-resolution images for {n} samples")
            out["lowres"] = upsample_lowres(low, self.config["image_size"])
            out["cond_mask"] = torch.ones(n)  # the low-res image always conditions the stage
        return self.state_shape, out

    def _text_request(self, n: int, cond: dict) -> dict:
        from polydiff.text import empty_prompt_cond, prompt_cond

        from .captions import DIGIT_WORDS

        if cond.get("prompt") is not None:
            prompts = self.prompts_for(n, cond["prompt"])
        elif cond.get("label") is not None:
            prompts = [DIGIT_WORDS[int(k)] for k in self.labels_for(n, cond["label"]).tolist()]
        else:
            return {**empty_prompt_cond(n, self.tokenizer()), "prompt": [""] * n}
        return {**prompt_cond(prompts, n, self.tokenizer()), "prompt": prompts}

    def negative(self, label, n: int) -> dict:
        """A negative condition for ``model.sample(..., negative=...)`` (CFG away from ``label``)."""
        return {"label": self.labels_for(n, label), "cond_mask": torch.ones(n)}

    def space(self, cond):
        return EuclideanSpace()

    def decode(self, x: torch.Tensor, cond: dict | None) -> list[ImageSample]:
        px = (self.to_pixels(x).cpu() + 1) / 2
        if self.config["text"] and cond is not None and "prompt" in cond:
            from .captions import parse_prompt

            m = cond.get("cond_mask", torch.ones(px.shape[0])).cpu().tolist()
            out = []
            for i, p in enumerate(cond["prompt"][: px.shape[0]]):
                p = p if m[i] > 0.5 else None
                attrs = parse_prompt(p)
                out.append(ImageSample(px[i], attrs["digit"], prompt=p, attributes=attrs))
            return out
        labels = [None] * px.shape[0]
        if cond is not None and "label" in cond and self.config["num_classes"] > 0:
            m = cond.get("cond_mask", torch.ones(px.shape[0])).cpu()
            labels = [
                int(l) if mm > 0.5 and not self.config["superres"] else None
                for l, mm in zip(cond["label"].cpu().tolist(), m.tolist())
            ]
        return [ImageSample(px[i], labels[i]) for i in range(px.shape[0])]

    def evaluate(self, samples: list, reference=None, metrics=None, **options) -> dict[str, float]:
        """Registered metrics (default reference: ``config["dataset"]``); class accuracy is
        left out of the defaults when no sample carries a label. Samples with prompts add the
        prompt metrics of the attributes they ask for (judged with this model's thresholds)."""
        if metrics is None:
            labelled = any(getattr(s, "label", None) is not None for s in samples)
            metrics = [m for m in self.default_metrics if labelled or m != "image_class_accuracy"]
            from .metrics import prompt_metrics_for

            metrics += prompt_metrics_for(samples)
        if self.thresholds is not None and any(str(m).startswith("image_prompt_") for m in metrics):
            options.setdefault("thresholds", self.thresholds)
        return super().evaluate(samples, reference=reference or self.config["dataset"], metrics=metrics, **options)

    def write(self, samples: list, path: str | Path) -> list[Path]:
        return write_samples(samples, path)

    def read(self, path: str | Path) -> list:
        return read_samples(path, channels=self.config["channels"])
