"""The ``audio`` modality: class-conditional diffusion in the latent of a log-mel VAE
(AudioLDM-style, Liu et al. 2023), decoded by the vocoder hook (Griffin-Lim by default).

Pipeline: waveform ``[N]`` → log-mel ``[n_mels, T]`` (:mod:`.frontend`) → normalised
``(L − mel_mean)/mel_std`` padded to a multiple of 4 frames → VAE posterior mean
``[z, n_mels/4, T'/4]`` → per-channel standardised latent (std 1, so ``sigma_data = 1``).
:meth:`fit` trains the VAE and the scoring classifier on the first data set it sees
(steps from ``config["vae_steps"]``/``config["classifier_steps"]``) and caches the latents
on the data set, so training the denoiser never re-encodes.

Typical use::

    mod = AudioModality({"vae_steps": 400})
    data = mod.load_dataset("audio_notes")          # fits VAE + classifier
    model = polydiff.create(mod)                    # network sized for the labels
    train(model, data, TrainConfig(cond_dropout=0.15))
    clips = model.sample(8, cond={"label": "piano_C4"}, guidance=3.0, seed=0)

Text prompts (issue 20): with ``config["text"] = {"encoder": "tiny", **options}`` the model
is conditioned on captions instead of labels. The default data set is then
``audio_notes_text`` (:func:`.data.captioned_notes`), :meth:`collate` tokenizes each item's
caption (cond ``prompt_ids``, ``prompt_mask``, ``cond_mask``), :meth:`sampling_request`
takes ``cond={"prompt": str | list[str]}`` (or ``{"prompt_cycle": [...]}``: those prompts
in turn), and the decoded :class:`AudioClips` carry ``prompts`` and ``requested`` (the
attributes each prompt names, :func:`.captions.parse_prompt`)::

    mod = AudioModality({"text": {"encoder": "tiny"}})
    data = mod.load_dataset()                        # captioned notes
    model = polydiff.create(mod)
    train(model, data, TrainConfig(cond_dropout=0.1))
    clips = model.sample(4, prompt="a soft flute playing A4", negative="loud", guidance=3.0)
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from polydiff.modality import Modality

from .classifier import MelClassifier, classifier_recipe, stored_or_trained_classifier
from .clips import AudioClips, AudioScorer
from .frontend import FrontendConfig, log_mel, pad_frames
from .vae import MelVAE, train_vae


def prompt_slug(prompt: str, max_len: int = 60) -> str:
    """A file-name-safe form of a prompt (``"a soft flute, C#4"`` → ``a_soft_flute_cs4``)."""
    return re.sub(r"[^a-z0-9]+", "_", prompt.lower().replace("#", "s")).strip("_")[:max_len] or "prompt"


class AudioModality(Modality):
    name = "audio"
    default_network = "audio_unet"
    default_dataset = "audio_notes"
    sigma_data = 1.0
    default_metrics = ("audio_spectral_convergence", "audio_lsd", "audio_mcd")

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        c = self.config
        c.setdefault("frontend", FrontendConfig().to_dict())
        c.setdefault("vae", {"z_channels": 4, "ch": 32})
        c.setdefault("vae_steps", 400)
        c.setdefault("classifier_steps", 300)
        c.setdefault("seed", 0)
        c.setdefault("progress", True)
        c.setdefault("text", None)
        self.frontend = FrontendConfig.from_dict(c["frontend"])
        self.vae = MelVAE(**c["vae"])
        self.vae.eval().requires_grad_(False)
        self.classifier = None
        if c.get("label_names"):
            self._build_classifier()

    def _build_classifier(self):
        self.classifier = MelClassifier(len(self.config["label_names"]))
        self.classifier.eval().requires_grad_(False)

    # -- text prompts --------------------------------------------------------------------
    @property
    def text_config(self) -> dict | None:
        return self.config.get("text") or None

    @property
    def accepts_prompts(self) -> bool:
        return self.text_config is not None

    @property
    def tokenizer(self):
        from polydiff.text import tokenizer_for

        opts = dict(self.text_config or {})
        return tokenizer_for(opts.pop("encoder", "tiny"), **opts)

    def prompt_tensors(self, prompts, n: int) -> dict:
        """Prompt(s) → ``{"prompt_ids", "prompt_mask", "cond_mask", "prompt": [n str]}`` (the
        prompts themselves ride along for :meth:`decode`; networks ignore them)."""
        from polydiff.text import prompt_cond

        if isinstance(prompts, str):
            prompts = [prompts] * n
        prompts = [str(p) for p in prompts]
        out = prompt_cond(prompts, n, self.tokenizer)
        out["prompt"] = prompts
        return out

    def prepare_negative(self, negative: dict, n: int) -> dict:
        """``{"prompt": str | list[str]}`` → cond tensors of the keys :meth:`sampling_request`
        returns (a text model); anything else unchanged."""
        if self.accepts_prompts and isinstance(negative, dict) and "prompt" in negative:
            p = negative["prompt"]
            if not (isinstance(p, str) or (isinstance(p, (list, tuple)) and all(isinstance(v, str) for v in p))):
                return negative  # already tensors
            return self.prompt_tensors(p, n)
        return negative

    def load_dataset(self, name: str | None = None, **options):
        """As :meth:`Modality.load_dataset`; a text model's default is ``audio_notes_text``."""
        if name is None and self.accepts_prompts:
            name = "audio_notes_text"
        return super().load_dataset(name, **options)

    # -- label handling ------------------------------------------------------------------
    @property
    def label_names(self) -> list[str]:
        return list(self.config.get("label_names") or [])

    def label_index(self, label) -> int:
        names = self.label_names
        if isinstance(label, str):
            if label not in names:
                raise ValueError(
                    f"unknown audio label {label!r}; known labels: {', '.join(names) or '(none: fit first)'}"
                )
            return names.index(label)
        i = int(label)
        if not 0 <= i < len(names):
            raise ValueError(f"label index {i} out of range 0..{len(names) - 1}")
        return i

    def cond_tensors(self, cond: dict | None, n: int) -> dict | None:
        """User request → ``{"label": LongTensor [n], "cond_mask": ones [n]}``. ``label`` may be a name, an index,
        a list of ``n`` names/indices, a tensor ``[n]`` or ``"cycle"`` (every label in
        turn). Use it for ``negative=`` too: ``negative=mod.cond_tensors({"label": "organ_C4"}, n)``."""
        if not cond or cond.get("label") is None:
            return None
        lab = cond["label"]
        if torch.is_tensor(lab):
            t = lab.long().reshape(-1)
            t = t.expand(n) if t.numel() == 1 else t
        elif isinstance(lab, str) and lab == "cycle":
            t = torch.arange(n) % max(1, len(self.label_names))
        elif isinstance(lab, (list, tuple)):
            t = torch.tensor([self.label_index(v) for v in lab])
        else:
            t = torch.full((n,), self.label_index(lab), dtype=torch.long)
        if t.shape[0] != n:
            raise ValueError(f"{t.shape[0]} labels for {n} samples")
        return {"label": t.long(), "cond_mask": torch.ones(n)}

    # -- fitting -------------------------------------------------------------------------
    def normalised_mels(self, waves: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` → ``[B, 1, n_mels, T']`` normalised, padded to a multiple of 4 frames."""
        lm = log_mel(waves, self.frontend)
        x = (lm - self.config["mel_mean"]) / self.config["mel_std"]
        fill = (torch.log(torch.tensor(self.frontend.log_floor)) - self.config["mel_mean"]) / self.config["mel_std"]
        return pad_frames(x, MelVAE.downsample, float(fill))[:, None]

    @torch.no_grad()
    def encode(self, waves: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """``[B, N]`` waveforms → standardised latents ``[B, z, n_mels/4, T'/4]`` (posterior means)."""
        dev = next(self.vae.parameters()).device
        out = []
        for i in range(0, waves.shape[0], batch_size):
            mean, _ = self.vae.encode(self.normalised_mels(waves[i : i + batch_size].to(dev)))
            out.append(mean)
        z = torch.cat(out)
        m = torch.tensor(self.config["latent_mean"], device=z.device)[None, :, None, None]
        s = torch.tensor(self.config["latent_std"], device=z.device)[None, :, None, None]
        return (z - m) / s

    @torch.no_grad()
    def decode_log_mel(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised latents ``[B, z, h, w]`` → natural-log mel ``[B, n_mels, T]``."""
        m = torch.tensor(self.config["latent_mean"], device=z.device)[None, :, None, None]
        s = torch.tensor(self.config["latent_std"], device=z.device)[None, :, None, None]
        x = self.vae.to(z.device).decode(z * s + m)[:, 0, :, : self.frontend.n_frames]
        return x * self.config["mel_std"] + self.config["mel_mean"]

    def fit(self, dataset) -> None:
        """Record front-end statistics and labels, train VAE and classifier (first call
        only), cache standardised latents on ``dataset`` (``item["latent"]``)."""
        c = self.config
        names = list(getattr(dataset, "label_names", []))
        if c.get("label_names") and names and names != c["label_names"]:
            raise ValueError(f"data set labels {names[:5]}… differ from the fitted ones {c['label_names'][:5]}…")
        if getattr(dataset, "sample_rate", self.frontend.sample_rate) != self.frontend.sample_rate:
            raise ValueError(
                f"data set is at {dataset.sample_rate} Hz, the front end at {self.frontend.sample_rate} Hz"
            )
        if "mel_mean" not in c:
            lm = log_mel(dataset.waves, self.frontend)
            c["mel_mean"], c["mel_std"] = float(lm.mean()), float(lm.std())
            c["label_names"] = names
            c["n_train_clips"] = len(dataset)
            if self.accepts_prompts:  # what the prompts may name (held-out pairs: the compositional test)
                c["data_provenance"] = getattr(dataset, "provenance", None)
        if not c.get("vae_trained"):
            self.vae.requires_grad_(True)
            log = train_vae(
                self.vae,
                self.normalised_mels(dataset.waves),
                steps=int(c["vae_steps"]),
                seed=int(c["seed"]),
                progress=bool(c["progress"]),
            )
            self.vae.requires_grad_(False)
            c["vae_trained"], c["vae_final_l1"] = True, log[-1][1] if log else None
            c.pop("latent_mean", None)
        if "latent_mean" not in c:
            with torch.no_grad():
                mean, _ = self.vae.encode(self.normalised_mels(dataset.waves))
            c["latent_mean"] = mean.mean((0, 2, 3)).tolist()
            c["latent_std"] = mean.std((0, 2, 3)).clamp(min=1e-6).tolist()
        if self.classifier is None and c.get("label_names"):
            self._build_classifier()
        if self.classifier is not None and not c.get("classifier_trained"):
            mels = self.normalised_mels(dataset.waves)[..., : self.frontend.n_frames]
            recipe = classifier_recipe(
                mels,
                dataset.labels,
                n_classes=len(c["label_names"]),
                steps=int(c["classifier_steps"]),
                seed=int(c["seed"]),
                provenance=getattr(dataset, "provenance", None),
                frontend=self.frontend.to_dict(),
            )
            trained = stored_or_trained_classifier(mels, dataset.labels, recipe, progress=bool(c["progress"]))
            self.classifier.load_state_dict(trained.state_dict())
            self.classifier.eval().requires_grad_(False)
            c["classifier_trained"] = True
        if hasattr(dataset, "set_cache"):
            dataset.set_cache("latent", self.encode(dataset.waves))

    # -- batches and sampling ---------------------------------------------------------------
    def collate(self, items: list) -> dict:
        if all("latent" in it for it in items):
            x = torch.stack([it["latent"] for it in items])
        else:
            x = self.encode(torch.stack([it["wave"] for it in items]))
        if self.accepts_prompts:
            if not all("caption" in it for it in items):
                raise ValueError(
                    "a text-conditioned audio model trains on captioned items (item['caption']): use a captioned "
                    "data set such as 'audio_notes_text'"
                )
            from polydiff.text import prompt_cond

            return {"x": x, "cond": prompt_cond([it["caption"] for it in items], len(items), self.tokenizer)}
        lab = torch.tensor([int(it["label"]) for it in items], dtype=torch.long)
        return {"x": x, "cond": {"label": lab} if self.label_names else None}

    def latent_shape(self) -> tuple[int, int, int]:
        t = self.frontend.n_frames + (-self.frontend.n_frames) % MelVAE.downsample
        return (self.vae.z_channels, self.frontend.n_mels // MelVAE.downsample, t // MelVAE.downsample)

    def sampling_request(self, n: int, cond: dict | None, rng):
        if not self.accepts_prompts:
            return self.latent_shape(), self.cond_tensors(cond, n)
        cond = cond or {}
        if cond.get("label") is not None:
            raise ValueError("this audio model is conditioned on text: pass prompt=... (cond={'prompt': ...})")
        if cond.get("prompt") is not None:
            return self.latent_shape(), self.prompt_tensors(cond["prompt"], n)
        if cond.get("prompt_cycle"):
            cyc = list(cond["prompt_cycle"])
            return self.latent_shape(), self.prompt_tensors([cyc[i % len(cyc)] for i in range(n)], n)
        return self.latent_shape(), None

    def network_kwargs(self) -> dict:
        if self.accepts_prompts:
            return {"in_channels": self.vae.z_channels, "n_classes": 0, "text": dict(self.text_config)}
        return {"in_channels": self.vae.z_channels, "n_classes": len(self.label_names)}

    def modules(self) -> dict:
        out = {"vae": self.vae}
        if self.classifier is not None:
            out["classifier"] = self.classifier
        return out

    @property
    def scorer(self) -> AudioScorer | None:
        if self.classifier is None or "mel_mean" not in self.config:
            return None
        return AudioScorer(
            self.classifier,
            self.frontend,
            self.config["mel_mean"],
            self.config["mel_std"],
            label_names=self.label_names,
        )

    # -- decoding and files ---------------------------------------------------------------------
    def decode(self, x: torch.Tensor, cond: dict | None) -> AudioClips:
        """Latents ``[B, z, h, w]`` → :class:`AudioClips` (waveforms via the vocoder hook)."""
        from .vocoder import vocode

        lm = self.decode_log_mel(x)
        wave = vocode(lm, self.frontend).float().cpu()
        labels = None if not cond or "label" not in cond else cond["label"].cpu()
        names = None if labels is None else [self.label_names[int(i)] for i in labels]
        prompts = None if not cond or cond.get("prompt") is None else list(cond["prompt"])
        if prompts is not None and len(prompts) != wave.shape[0]:
            prompts = None
        return AudioClips(
            wave,
            self.frontend.sample_rate,
            log_mel=lm.cpu(),
            labels=labels,
            names=names,
            scorer=self.scorer,
            frontend=self.frontend.to_dict(),
            prompts=prompts,
        )

    def write(self, samples, path) -> list[Path]:
        from .io import write_wav

        names = getattr(samples, "names", None)
        n = len(samples)
        prompts = getattr(samples, "prompts", None)
        if not names and prompts:
            names = [prompt_slug(p) for p in prompts]
        fnames = [f"{i:04d}_{names[i]}" if names else f"{i:04d}" for i in range(n)]
        sr = getattr(samples, "sample_rate", self.frontend.sample_rate)
        return write_wav(samples, path, sr, names=fnames)

    def read(self, path) -> AudioClips:
        """A folder of WAVs (or one file) → :class:`AudioClips` at the front end's rate and
        length; labels from ``NNNN_<label>.wav`` names when they match the fitted labels."""
        from .io import audio_files, load_clip

        p = Path(path)
        files = [p] if p.is_file() else list(audio_files(p))
        waves = [
            load_clip(f, sample_rate=self.frontend.sample_rate, length=self.frontend.clip_samples, target_dbfs=None)
            for f in files
        ]
        if not waves:
            from polydiff.errors import InputError

            raise InputError("no audio files", file=p, field="files")
        names = [re.sub(r"^\d+_", "", f.stem) for f in files]
        labels = None
        if self.label_names and all(n in self.label_names for n in names):
            labels = torch.tensor([self.label_names.index(n) for n in names])
        return AudioClips(
            torch.stack(waves),
            self.frontend.sample_rate,
            labels=labels,
            names=names,
            scorer=self.scorer,
            frontend=self.frontend.to_dict(),
        )
