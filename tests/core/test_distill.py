"""Distillation to few-step students (polydiff.distill): through the plugin API for the
example point-cloud plugin (a third-party modality) and the built-in image plugin.

The toy target: 2-D rings of points (examples/pointcloud). A teacher at 2 NFE collapses
every cloud towards its mean; a distilled 2-step student must put the points back on rings,
measured by the 1-D Wasserstein distance between the sampled and the data's point radii."""

from __future__ import annotations

import json

import pytest
import torch

import polydiff
from polydiff import cli
from polydiff.distill import DistillConfig, distill, set_student_defaults, student_sigmas
from polydiff.errors import PolydiffError
from polydiff.parameterization import Denoiser
from polydiff.samplers import get_sampler
from polydiff.training import TrainConfig, train

DATA = {"size": 512, "n_points": 8}


def _radius_w1(samples, data) -> float:
    """W1 between the point radii (distance to the cloud's centre) of samples and data."""
    a = torch.stack(list(samples)).norm(dim=-1).flatten().sort().values
    b = torch.stack([data[i] for i in range(len(samples))]).norm(dim=-1).flatten().sort().values
    return float((a - b).abs().mean())


@pytest.fixture(scope="module")
def teacher():
    """A small point-cloud teacher (EDM), trained for a few seconds."""
    torch.manual_seed(0)
    model = polydiff.create("pointcloud", hidden=64, layers=2)
    data = model.modality.load_dataset(**DATA)
    train(model, data, TrainConfig(steps=300, batch_size=64, lr=2e-3, progress=False, device="cpu", tensorboard=False))
    return model, data


def _cfg(**kw) -> DistillConfig:
    base = dict(steps=2, train_steps=300, batch_size=64, lr=2e-4, progress=False, dataset_options=DATA)
    return DistillConfig(**{**base, **kw})


@pytest.mark.parametrize("method", ["consistency", "progressive"])
def test_two_step_student_beats_the_teacher_at_two_steps(teacher, method):
    model, data = teacher
    res = distill(model, _cfg(method=method, teacher_steps=16, lr=1e-3))
    st = res.student
    d = st.extra["sample_defaults"]
    assert (
        d["nfe"] == 2 and d["grid"] == "tuned" and d["sampler"] == {"consistency": "consistency"}.get(method, "euler")
    )
    sig = student_sigmas(st)
    assert len(sig) == 3 and sig[-1] == 0 and bool((sig[:-1] > sig[1:]).all())
    student = _radius_w1(st.sample(256, seed=5, sampler=d["sampler"], sigmas=sig), data)
    # the teacher's best 2-NFE sample: deterministic samplers on the Karras grid and on the student's
    teacher_2 = min(
        _radius_w1(model.sample(256, seed=5, sampler=s, **grid), data)
        for s in ("euler", "dpmpp_2m", "heun")
        for grid in ({"nfe": 2}, {"sigmas": sig})
        if not (s == "heun" and "sigmas" in grid)
    )
    teacher_50 = _radius_w1(model.sample(256, seed=5, sampler="dpmpp_2m", steps=50), data)
    assert student < 0.6 * teacher_2, (student, teacher_2, teacher_50)
    assert res.steps == 300 and res.losses[-1][1] < res.losses[0][1]


def test_progressive_rounds_halve_the_steps(teacher):
    model, _ = teacher
    res = distill(model, _cfg(method="progressive", teacher_steps=16, train_steps=30))
    assert [(r["teacher_steps"], r["student_steps"]) for r in res.rounds] == [(16, 8), (8, 4), (4, 2)]
    assert sum(r["train_steps"] for r in res.rounds) == res.steps == 30


def test_student_checkpoint_round_trip_and_sample_defaults(teacher, tmp_path):
    model, _ = teacher
    st = distill(model, _cfg(method="consistency", train_steps=5)).student
    st.save(tmp_path / "s")
    again = polydiff.load(tmp_path / "s")
    assert again.parameterization == "consistency_edm"
    assert again.extra["tuned_grids"] == st.extra["tuned_grids"]
    assert again.extra["distill"]["method"] == "consistency"
    sig = student_sigmas(again)
    a = st.sample(4, seed=1, sampler="consistency", sigmas=sig)
    b = again.sample(4, seed=1, sampler="consistency", sigmas=sig)
    assert torch.allclose(torch.stack(a), torch.stack(b))
    # the saved defaults alone (sampler, NFE, grid="tuned") reproduce it
    assert torch.allclose(torch.stack(again.sample(4, seed=1)), torch.stack(b))
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    grid = cfg["extra"]["tuned_grids"]["consistency"]["2"]
    assert grid[-1] == 0.0 and all(x > y for x, y in zip(grid, grid[1:]))
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in (tmp_path / "s").iterdir())


def test_consistency_parameterisation_is_exact_at_sigma_min(teacher):
    model, _ = teacher
    st = distill(model, _cfg(method="consistency", train_steps=0)).student
    den = st.denoiser()
    x = torch.randn(3, 8, 2)
    s_min = st.schedule.sigma_ve_min
    assert torch.equal(den(x, s_min, {"mask": torch.ones(3, 8)}), x)
    # away from σ̃_min the untrained student is its teacher's denoiser (same weights)
    base = Denoiser(st.ema, st.schedule, "edm", st.sigma_data)
    c = {"mask": torch.ones(3, 8)}
    torch.testing.assert_close(den(x, 10.0, c), base(x, 10.0, c), rtol=1e-3, atol=1e-3)


def test_consistency_sampler_one_step_is_the_denoiser_and_more_need_rng():
    spec = get_sampler("consistency")
    x = torch.randn(4, 3)

    def den(z, s):
        return z * 0.5

    out = spec.fn(den, x, torch.tensor([2.0, 0.0], dtype=torch.float64))
    assert torch.equal(out, x * 0.5)
    with pytest.raises(ValueError, match="rng"):
        spec.fn(den, x, torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64))


def test_reflow_straightens_a_rectified_flow_model():
    """Reflow (Liu et al. 2023): after it, 2 Euler steps from z land nearer the teacher's
    converged ODE sample from the same z than the teacher's own 2 Euler steps."""
    torch.manual_seed(0)
    model = polydiff.create("pointcloud", schedule="rectified_flow", parameterization="flow", hidden=64, layers=2)
    data = model.modality.load_dataset(**DATA)
    train(model, data, TrainConfig(steps=300, batch_size=64, lr=2e-3, progress=False, device="cpu", tensorboard=False))
    res = distill(model, _cfg(method="reflow", reflow_pairs=512, reflow_nfe=20, train_steps=300))
    st = res.student
    assert st.extra["sample_defaults"]["sampler"] == "euler"
    sig = student_sigmas(st)
    z = torch.randn(128, 8, 2)
    z = z - z.mean(1, keepdim=True)
    c = {"mask": torch.ones(128, 8)}
    ref = model.sample_raw(128, sampler="dpmpp_2m", steps=40, x_T=z * float(sig[0]), sampling_cond=c)[0]
    kw = dict(sampler="euler", sigmas=sig, x_T=z * float(sig[0]), sampling_cond=c)
    err_student = (st.sample_raw(128, **kw)[0] - ref).norm(dim=-1).mean()
    err_teacher = (model.sample_raw(128, **kw)[0] - ref).norm(dim=-1).mean()
    assert err_student < 0.7 * err_teacher, (err_student, err_teacher)


def test_errors_name_the_problem(teacher):
    model, _ = teacher
    with pytest.raises(PolydiffError, match="unknown distillation method 'magic'"):
        distill(model, _cfg(method="magic"))
    with pytest.raises(PolydiffError, match="student steps"):
        distill(model, _cfg(steps=0))
    with pytest.raises(PolydiffError, match="power of 2"):
        distill(model, _cfg(method="progressive", steps=2, teacher_steps=12))
    with pytest.raises(PolydiffError, match="reflow needs a rectified-flow model"):
        distill(model, _cfg(method="reflow"))
    with pytest.raises(PolydiffError, match="sigmas has 2 entries"):
        distill(model, _cfg(sigmas=[80.0, 0.0]))
    with pytest.raises(PolydiffError, match="strictly decreasing"):
        set_student_defaults(model, "consistency", [1.0, 2.0, 0.0])
    labelled = polydiff.create("pointcloud_labelled")
    with pytest.raises(PolydiffError, match="has parts"):
        distill(labelled, _cfg())


def test_resume_continues_bit_for_bit(teacher, tmp_path):
    model, _ = teacher
    full = distill(model, _cfg(train_steps=10, out_dir=str(tmp_path / "a"), checkpoint_every=5)).student
    distill(model, _cfg(train_steps=5, out_dir=str(tmp_path / "b"), checkpoint_every=5))
    resumed = distill(model, _cfg(train_steps=10, out_dir=str(tmp_path / "b"), checkpoint_every=5, resume=True))
    assert resumed.steps == 10
    for p, q in zip(full.network.parameters(), resumed.student.network.parameters()):
        assert torch.equal(p, q)


def test_cli_distill_writes_a_loadable_student(teacher, tmp_path, capsys):
    model, _ = teacher
    model.save(tmp_path / "teacher")
    rc = cli.main(
        [
            "distill",
            str(tmp_path / "teacher"),
            "--method",
            "progressive",
            "--steps",
            "4",
            "--teacher-steps",
            "8",
            "--train-steps",
            "4",
            "--out",
            str(tmp_path / "student"),
            "--data-opt",
            "size=64",
            "--data-opt",
            "n_points=8",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["sample_defaults"] == {"sampler": "euler", "nfe": 4, "grid": "tuned"}
    st = polydiff.load(tmp_path / "student")
    assert len(student_sigmas(st)) == 5
    assert cli.main(["distill", str(tmp_path / "teacher"), "--steps", "0", "--out", str(tmp_path / "x")]) == 1


def test_guided_image_teacher_is_distilled_with_its_guidance(tmp_path):
    """Built-in image plugin: a class-conditional teacher whose defaults carry CFG is
    distilled with the guidance baked in; the student's defaults need no CFG."""
    torch.manual_seed(0)
    model = polydiff.create(
        "image", modality_config={"dataset": "sklearn_digits"}, base_channels=16, channel_mult=[1], num_res_blocks=1
    )
    data = model.modality.load_dataset()
    train(model, data, TrainConfig(steps=20, batch_size=32, lr=1e-3, cond_dropout=0.2, progress=False, device="cpu"))
    model.extra["sample_defaults"] = {"sampler": "dpmpp_2m", "nfe": 10, "guidance": 3.0, "cond": {"label": "balanced"}}
    res = distill(model, DistillConfig(method="consistency", steps=2, train_steps=3, batch_size=16, progress=False))
    st = res.student
    assert st.extra["distill"]["guidance_distilled"] == 3.0
    assert "guidance" not in st.extra["sample_defaults"]
    assert st.extra["sample_defaults"]["cond"] == {"label": "balanced"}
    st.save(tmp_path / "s")
    samples = polydiff.load(tmp_path / "s").sample(10, sampler="consistency", sigmas=student_sigmas(st), seed=0)
    assert [s.label for s in samples] == list(range(10))


SHIPPED = ["image-mnist-2step", "molecule-qm9-4step"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_student_still_meets_its_bounds(name):
    """A distilled starter (if shipped) re-measured with its stored grid and checked against
    the bounds its card records (examples/recipes/distill.py --starter wrote them)."""
    from polydiff import starters

    if name not in starters.available():
        pytest.skip(f"{name} is not shipped in this installation")
    model = polydiff.load(f"starter:{name}")
    check = model.extra["starter"]["check"]
    assert model.extra["sample_defaults"]["nfe"] <= 4
    grid = {} if model.parts is not None else {"sigmas": student_sigmas(model)}  # mixed: its stored time grid
    samples = model.sample(int(check["n"]), seed=int(check["seed"]), **grid)
    measured = model.modality.evaluate(samples, metrics=list(check["metrics"]), **(check.get("options") or {}))
    assert not starters.check_bounds(model, measured), measured
