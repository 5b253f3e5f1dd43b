"""The benchmark task protocol.

A plugin contributes tasks through ``polydiff_register_benchmarks``::

    @hookimpl
    def polydiff_register_benchmarks(register):
        register("molecule/qm9", BenchmarkTask(name="molecule/qm9", modality="molecule",
                                               model="egnn", run=run_qm9), modality="molecule")

``task.run(ctx)`` trains (budget from ``ctx.budget``), samples over ``ctx.samplers`` ×
``ctx.nfe`` (or the task defaults), computes registered metrics, writes samples (SDF, PDB,
WAV, PNG/GIF) and at least one PNG into ``ctx.out_dir``, and returns rows made by
:func:`make_row` — the ``tasks`` entries of ``results.json`` (schema in
``benchmarks/README.md``). Every row carries reference rows: ``data`` (real-vs-real, the
floor) and ``untrained`` (untrained model or noise, the ceiling).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

#: the file in a task's folder where it reports its phase and step (the runner polls it)
PROGRESS_FILE = "progress.json"


@dataclass
class BenchContext:
    """What a task's ``run`` receives.

    Progress: a task names its phases (``ctx.phase("train", total=steps)``) and reports
    steps within them (``ctx.step(i)``, or the callbacks :meth:`train_callback` and
    :meth:`sample_callback`); the context writes them to ``progress_path`` (at most every
    ``PROGRESS_EVERY_S`` seconds, phase changes at once) for the runner's status line, and
    adds up each phase's wall time in ``phases`` (recorded with the task's result).
    """

    suite: str  # quick | standard | gpu | samplers | …
    device: torch.device
    seed: int
    out_dir: Path  # this task's folder for samples and plots
    samplers: Sequence[str] | None = None  # user override (--samplers)
    nfe: Sequence[int] | None = None  # user override (--nfe)
    progress: bool = True
    progress_path: Path | None = None  # where the runner reads this task's phase and step
    phases: dict = field(default_factory=dict)  # phase → wall seconds so far
    phases_cpu: dict = field(default_factory=dict)  # phase → CPU seconds of this process so far

    PROGRESS_EVERY_S = 0.5

    def __post_init__(self):
        self._phase: str | None = None
        self._phase_t0 = self._phase_c0 = 0.0
        self._step: tuple[int, int | None] = (0, None)
        self._written = 0.0

    def phase(self, name: str, total: int | None = None) -> None:
        """Start phase ``name`` (``total`` steps if known), ending the current one."""
        self.end_phase()
        self._phase, self._phase_t0, self._phase_c0 = name, time.perf_counter(), time.process_time()
        self._step = (0, total)
        self._write(force=True)

    def end_phase(self) -> None:
        """End the current phase (its wall and CPU time are added to ``phases[name]`` and
        ``phases_cpu[name]``)."""
        if self._phase is not None:
            name = self._phase
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - self._phase_t0
            self.phases_cpu[name] = self.phases_cpu.get(name, 0.0) + time.process_time() - self._phase_c0
            self._phase = None

    def step(self, done: int, total: int | None = None) -> None:
        """``done`` of ``total`` (default: the phase's total) steps of the current phase."""
        self._step = (int(done), self._step[1] if total is None else int(total))
        self._write()

    def train_callback(self, total: int) -> Callable:
        """``callback(step, loss)`` for :func:`polydiff.training.train` (0-based steps)."""
        return lambda step, loss=None: self.step(step + 1, total)

    def sample_callback(self, sampler: str, nfe: int) -> Callable:
        """``callback(i, σ̃, x, x̂₀)`` for ``model.sample`` that reports the sampler's step
        ``i + 1`` of the steps ``sampler`` takes at ``nfe`` evaluations (a mixed state's
        ``"ancestral"``/``"euler"``: one evaluation per step)."""
        from ..mixed_model import METHODS
        from ..samplers import get_sampler

        total = int(nfe) if sampler in METHODS else get_sampler(sampler).steps_for_nfe(nfe)
        return lambda i, *_: self.step(min(i + 1, total), total)

    def _write(self, force: bool = False) -> None:
        if self.progress_path is None or self._phase is None:
            return
        now = time.perf_counter()
        if not force and now - self._written < self.PROGRESS_EVERY_S:
            return
        self._written = now
        done, total = self._step
        state = {"phase": self._phase, "step": done, "total": total, "phase_s": now - self._phase_t0}
        tmp = self.progress_path.with_name(self.progress_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.progress_path)
        except OSError:  # progress is a courtesy: never fail a task over it
            pass

    def budget(self, quick, standard, gpu=None, smoke=None):
        """Pick a value by suite budget (``gpu`` falls back to ``standard``, ``smoke`` — the
        runner's own tests — to ``quick``)."""
        if self.suite == "smoke" and smoke is not None:
            return smoke
        if self.suite in ("quick", "smoke"):
            return quick
        if self.suite == "gpu" and gpu is not None:
            return gpu
        return standard

    def sampler_grid(self, default_samplers: Sequence[str], default_nfe: Sequence[int]):
        """(sampler, nfe) pairs to evaluate."""
        return [(s, n) for s in (self.samplers or default_samplers) for n in (self.nfe or default_nfe)]


@dataclass
class BenchmarkTask:
    name: str
    modality: str
    model: str
    run: Callable[[BenchContext], list]
    suites: tuple = ("quick", "standard", "gpu")
    description: str = ""
    #: rough wall time (s) of the quick budget on one CPU thread; with ``--jobs`` > 1 the
    #: runner starts the longest tasks first (a hint for scheduling, never a limit)
    expected_s: float = 0.0
    #: the shipped starter model this task scores (``polydiff.starters``) instead of training
    starter: str = ""


def registered_metric_names(modality: str):
    """``name → registered name``: rows must carry registered metric names (the report reads
    each metric's direction from the registry); a modality's own metric given without its
    modality prefix (``fd_ours`` for ``audio_fd_ours``) is mapped to it."""
    from ..plugin_manager import registry

    reg = registry("metric")

    def canon(name: str) -> str:
        if name in reg:
            return name
        prefixed = f"{modality}_{name}"
        return prefixed if prefixed in reg else name

    return canon


def make_row(
    task: BenchmarkTask | str,
    *,
    modality: str,
    model: str,
    sampler: str,
    nfe: int,
    seed: int,
    metrics: dict,
    reference: dict,
    timing: dict,
    files: Sequence[str | Path] = (),
    **extra,
) -> dict:
    """One ``results.json`` task row (see ``benchmarks/README.md``)."""
    name = task.name if isinstance(task, BenchmarkTask) else task
    canon = registered_metric_names(modality)
    row = {
        "task": name,
        "modality": modality,
        "model": model,
        "sampler": sampler,
        "nfe": int(nfe),
        "seed": int(seed),
        "metrics": {canon(k): float(v) for k, v in metrics.items()},
        "reference": {k: {canon(m): float(x) for m, x in v.items()} for k, v in reference.items()},
        "timing": {k: float(v) for k, v in timing.items()},
        "files": [str(f) for f in files],
    }
    row.update(extra)
    return row


def read_progress(task_dir: Path) -> dict | None:
    """A running task's last reported ``{"phase", "step", "total", "phase_s"}`` (None if none yet)."""
    try:
        return json.loads((Path(task_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None


def progress_text(state: dict | None) -> str:
    """``"train 1200/2400"``, ``"sample 12/40"`` or ``"reference"`` for a progress state."""
    if not state or not state.get("phase"):
        return ""
    if state.get("total"):
        return f"{state['phase']} {state.get('step', 0)}/{state['total']}"
    return str(state["phase"])


def untrained_copy(model, seed: int = 12345):
    """``model`` with its denoiser re-initialised (seeded) and everything else kept: data
    statistics, the modality's trained parts (a latent's VAE, a scorer), sampling defaults.
    The ``untrained`` reference of a task that scores a trained model it did not train."""
    import copy

    torch.manual_seed(seed)
    fresh = model.modality.build_network(model.network_name, **model.network_kwargs)
    u = copy.copy(model)
    u.network = fresh.to(model.device)
    u.init_ema()
    return u


def sample_in_chunks(model, n: int, *, chunk: int | None = None, progress: Callable | None = None, **kwargs) -> list:
    """``model.sample(n, **kwargs)`` drawn ``chunk`` items at a time (the same samples: item i
    uses generator ``(seed, i)`` whatever the batch). On a CPU a graph network's cost per item
    grows with the batch once its edge activations outgrow the caches (the molecule EGNN:
    1.7× per molecule at 256 than at 64). ``progress(done, n)`` after each chunk."""
    chunk = chunk or n
    out: list = []
    for a in range(0, n, chunk):
        out += model.sample(min(chunk, n - a), sample_offset=a, **kwargs)
        if progress is not None:
            progress(len(out), n)
    return out


#: NFE of a starter row's untrained reference (see :func:`score_starter`)
UNTRAINED_NFE = 10


def score_starter(
    ctx: BenchContext,
    task: BenchmarkTask,
    *,
    evaluate: Callable[[list], dict],
    data_row: dict,
    n: int | None = None,
    n_untrained: int | None = None,
    untrained_nfe: int | None = UNTRAINED_NFE,
    pictures: Callable[[list, Path], list] | None = None,
    note: str = "",
    chunk: int | None = None,
) -> list:
    """The row of a task that scores shipped starter ``task.starter`` instead of training.

    Samples ``n`` items (default: the count its model card measures) with the card's seed
    and the checkpoint's sampling defaults, scores them with ``evaluate(samples) → metrics``
    (the modality's task metrics), writes them with the modality's ``write`` (and
    ``pictures(samples, out_dir) → files``), and records ``reference``: ``data_row`` (real
    vs real, computed by the caller) and ``untrained`` (the same network freshly
    initialised, ``n_untrained`` samples, same sampler and seed, ``untrained_nfe`` NFE —
    an untrained network's output is noise at any step count, so a short run shows it at a
    fraction of the card's cost; None, or more than the card's: the card's NFE). ``note`` says what the
    sample count leaves uncertain; the row carries ``starter`` (its name) and ``n_samples``.
    ``chunk``: sample that many at a time (:func:`sample_in_chunks`).
    """
    from .. import load

    ctx.phase("load starter")
    model = load(f"starter:{task.starter}", device=str(ctx.device))
    check = (model.extra.get("starter") or {}).get("check") or {}
    n = int(n or check.get("n") or 16)
    seed = int(check.get("seed", ctx.seed))
    defaults = model.extra.get("sample_defaults") or {}
    sampler, nfe = defaults.get("sampler", "dpmpp_2m"), int(defaults.get("nfe", 50))

    def draw(m, count: int, steps: int = nfe) -> list:  # progress: chunks done, or the sampler's steps
        opts = {} if steps == nfe else {"nfe": steps}
        if chunk and chunk < count:
            return sample_in_chunks(m, count, chunk=chunk, progress=ctx.step, seed=seed, **opts)
        return m.sample(count, seed=seed, callback=ctx.sample_callback(sampler, steps), **opts)

    ctx.phase("reference")
    unt_nfe = min(untrained_nfe or nfe, nfe)
    untrained = evaluate(draw(untrained_copy(model), n_untrained or n, unt_nfe))
    ctx.phase("sample")
    t0 = time.perf_counter()
    samples = draw(model, n)
    sample_s = time.perf_counter() - t0
    ctx.phase("evaluate")
    metrics = evaluate(samples)
    out = Path(ctx.out_dir)
    files = list(model.modality.write(samples, out / f"samples_{sampler}_{nfe}"))
    if pictures is not None:
        files += list(pictures(samples, out))
    row = make_row(
        task,
        modality=model.modality.name,
        model=f"{model.network_name} (starter {task.starter})",
        sampler=sampler,
        nfe=nfe,
        seed=seed,
        metrics=metrics,
        reference={"data": data_row, "untrained": untrained},
        timing={"sample_s": sample_s, "samples_per_s": n / sample_s},
        files=files,
        starter=task.starter,
        n_samples=n,
        n_untrained=n_untrained or n,
        untrained_nfe=unt_nfe,
        sample_defaults=defaults,
    )
    if note:
        row["note"] = note
    return [row]
