"""Trajectory distillation of mixed-state models (:mod:`polydiff.mixed_distill`): the loss
against exact answers on a labelled Gaussian mixture (closed-form joint denoiser), then the
public path — ``distill()`` and ``polydiff distill`` — on the example plugin's
``pointcloud_labelled`` (positions + a categorical label per point)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import polydiff
from polydiff import cli
from polydiff.categorical import UniformProcess, grid_calls
from polydiff.distill import DistillConfig, distill
from polydiff.errors import PolydiffError
from polydiff.mixed import CategoricalPart, ContinuousPart
from polydiff.mixed_distill import TrajectoryLoss, student_intervals, teacher_segment
from polydiff.rng import SampleRNG
from polydiff.schedules import VEGeometric
from polydiff.training import TrainConfig, train

sys.path.insert(0, str(Path(__file__).parent))
from mixed_gmm import four_components  # noqa: E402

F64 = torch.float64
GMM = four_components()


def _gmm_setup(n: int, seed: int = 0):
    parts = {"label": CategoricalPart(UniformProcess(GMM.K)), "pos": ContinuousPart(VEGeometric(0.002, 20.0))}
    label, pos = GMM.sample(n, torch.Generator().manual_seed(seed))
    return parts, GMM.denoiser(parts), {"label": label, "pos": pos}


def test_student_steps_of_a_grid_with_restarts_and_the_teacher_segments():
    grid = [1.0, 0.2, 0.0, 0.2, 0.0, 0.1, 0.0]
    assert student_intervals(grid) == [(1.0, 0.2), (0.2, 0.0), (0.2, 0.0), (0.1, 0.0)]
    seg = teacher_segment(0.5, 0.2, 3, [(0.1, 2)])  # to s > 0: uniform, no restarts
    assert torch.allclose(seg, torch.tensor([0.5, 0.4, 0.3, 0.2], dtype=F64))
    seg = teacher_segment(0.2, 0.0, 2, [(0.3, 2), (0.1, 2)])  # to 0: power:3 steps, then restarts below t
    assert seg[0] == 0.2 and seg[2] == 0.0 and seg.tolist()[3:] == [0.1, 0.05, 0.0]
    assert grid_calls(seg) == 4


@pytest.mark.parametrize("interval", [(1.0, 0.4), (0.6, 0.2), (0.3, 0.0)])
def test_one_teacher_step_inverts_to_the_teachers_x0(interval):
    """With one teacher step the DDIM inversion recovers the teacher's own x̂₀: a student equal
    to the exact denoiser has zero position loss (float64), one off by 0.1 has λ·0.01."""
    parts, exact, x0 = _gmm_setup(256)
    loss = TrajectoryLoss(exact, parts, [1.0, 0.0], teacher_steps=1)
    rng = SampleRNG(1, 256)
    res = loss.part_losses(exact, x0, None, rng, interval)
    assert float(res["pos"].abs().max()) < 1e-20

    def off(state, t, cond=None):
        out = exact(state, t)
        return {**out, "pos": out["pos"] + 0.1}

    sig = parts["pos"].sigma(interval[0])
    lam = float((sig**2 + 0.25) / (sig * 0.5) ** 2)
    res = loss.part_losses(off, x0, None, SampleRNG(1, 256), interval)
    assert torch.allclose(res["pos"], torch.full((256,), lam * 0.01, dtype=F64), rtol=1e-9)


def test_the_categorical_loss_estimates_the_cross_entropy_to_the_teachers_step():
    """The label loss of one teacher step t → s is −log p_S(x_s^T | x_t) for x_s^T drawn from
    the teacher's exact posterior step: its mean over many draws is the cross-entropy
    H(p_T, p_S) (within 4 standard errors, for the teacher itself and a student with biased
    logits), and the paired difference of the two is their KL, so the teacher minimises it."""
    from polydiff.mixed import noise_state

    n, t, s = 20000, 0.9, 0.6
    parts, exact, x0 = _gmm_setup(n, seed=2)
    loss = TrajectoryLoss(exact, parts, [1.0, 0.0], teacher_steps=1)
    bias = torch.tensor([2.0, 0.0, -2.0, 1.0], dtype=F64)

    def biased(state, time, cond=None):
        out = exact(state, time)
        return {**out, "label": out["label"] + bias}

    proc = parts["label"].process
    tt, ss = torch.full((n,), t, dtype=F64), torch.full((n,), s, dtype=F64)
    xt = noise_state(parts, x0, tt, SampleRNG(3, n))  # the x_t that part_losses draws first
    p_t = proc.posterior(xt["label"], torch.softmax(exact(xt, tt)["label"].to(F64), -1), tt, ss)
    got, ce = {}, {}
    for name, student in (("exact", exact), ("biased", biased)):
        got[name] = loss.part_losses(student, x0, None, SampleRNG(3, n), (t, s))["label"]
        p_s = proc.posterior(xt["label"], torch.softmax(student(xt, tt)["label"].to(F64), -1), tt, ss)
        ce[name] = -(p_t * torch.log(p_s)).sum(-1)
        se = float(got[name].std()) / n**0.5
        assert abs(float(got[name].mean()) - float(ce[name].mean())) < 4 * se, (name, got[name].mean(), ce[name].mean())
    kl = ce["biased"] - ce["exact"]
    diff = got["biased"] - got["exact"]  # the same teacher draws: a paired difference
    assert float(kl.mean()) > 0.02
    assert abs(float(diff.mean()) - float(kl.mean())) < 4 * float(diff.std()) / n**0.5


def test_on_policy_steps_start_from_the_students_own_sampler_state():
    """``rollout``: at t = 1 the prior; at a later grid time the student's sampler along the
    grid's prefix (restart rise included), with the same per-sample randomness; the shares
    of batches outside [0, 1] are refused; a segment ending above 0 needs ``open_end``."""
    from polydiff.mixed import prior_state, sample_mixed

    parts, exact, x0 = _gmm_setup(64)
    grid = [1.0, 0.5, 0.0, 0.2, 0.0]
    loss = TrajectoryLoss(exact, parts, grid, teacher_steps=1, on_policy=1.0)
    shapes = {k: tuple(v.shape[1:]) for k, v in x0.items()}
    start = loss.rollout(exact, x0, None, SampleRNG(4, 64), 1.0)
    ref = prior_state(parts, shapes, SampleRNG(4, 64))
    assert all(torch.equal(start[k], ref[k]) for k in parts)
    got = loss.rollout(exact, x0, None, SampleRNG(4, 64), 0.2)
    rng = SampleRNG(4, 64)
    ref = prior_state(parts, shapes, rng)
    ref = sample_mixed(
        exact,
        ref,
        torch.tensor(grid[:4], dtype=F64),
        parts=parts,
        rng=rng,
        method="dpmpp_2m",
        final="argmax",
        open_end=True,
    )
    assert all(torch.equal(got[k], ref[k]) for k in parts)
    with pytest.raises(ValueError, match="time grid"):
        sample_mixed(exact, ref, torch.tensor([0.5, 0.2], dtype=F64), parts=parts, rng=rng)
    with pytest.raises(PolydiffError, match="on_policy"):
        TrajectoryLoss(exact, parts, grid, on_policy=1.5)


def test_step_shares_set_how_often_each_student_step_is_trained(monkeypatch):
    parts, exact, x0 = _gmm_setup(8)
    grid = [1.0, 0.5, 0.0, 0.2, 0.0]  # steps (1, 0.5), (0.5, 0), (0.2, 0)
    seen = []
    loss = TrajectoryLoss(exact, parts, grid, teacher_steps=1, step_shares=[1, 0, 3])
    monkeypatch.setattr(loss, "part_losses", lambda *a, own=False: seen.append(a[-1]) or {"pos": torch.zeros(8)})
    for k in range(400):
        loss(exact, x0, None, SampleRNG(k, 8))
    share = seen.count((0.2, 0.0)) / len(seen)
    assert (0.5, 0.0) not in seen and 0.68 < share < 0.82, share  # 3/4 expected
    for bad in ([1, 1], [0, 0, 0], [1, -1, 1]):
        with pytest.raises(PolydiffError, match="step_shares"):
            TrajectoryLoss(exact, parts, grid, step_shares=bad)


# -- the public path: a mixed plugin model ------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    model = polydiff.create("pointcloud_labelled")
    data = model.modality.load_dataset(size=256, n_points=8, seed=1)
    train(model, data, TrainConfig(steps=200, batch_size=64, lr=3e-3, ema_decay=0.9, progress=False, log_every=50))
    return model


def _cfg(**kw) -> DistillConfig:
    """A 2-call trajectory distillation of the teacher on 256 of its training clouds."""
    data = {"size": 256, "n_points": 8, "seed": 1}
    return DistillConfig(method="trajectory", steps=2, progress=False, dataset_options=data, **kw)


def test_a_distilled_two_call_student_beats_its_teacher_at_two_calls(teacher):
    """Example plugin (points on two rings, a ring label per point): the teacher sampled on the
    student's 2-call grid [1, 0.3, 0] puts labels and radii far off; 100 distillation steps
    (≈ 7 s) bring the student most of the way to the teacher at 50 steps (measured: label accuracy
    0.56 → 0.87, radius error 0.41 → 0.16; teacher at 50 steps 0.95 / 0.13)."""
    cfg = _cfg(train_steps=100, batch_size=64, lr=1e-3, ema_decay=0.9, time_grid=[1.0, 0.3, 0.0])
    student = distill(teacher, cfg).student
    untrained = distill(teacher, replace(cfg, train_steps=0)).student  # the teacher's weights on that grid
    acc, err = "pointcloud_labelled_label_accuracy", "pointcloud_labelled_radius_error"
    before = untrained.modality.evaluate(untrained.sample(1000, seed=5))
    after = student.modality.evaluate(student.sample(1000, seed=5))
    assert after[acc] > before[acc] + 0.2 and after[err] < 0.5 * before[err], (before, after)


def test_distill_a_mixed_model_into_a_two_call_student(teacher, tmp_path):
    res = distill(teacher, _cfg(train_steps=6, batch_size=16, lr=1e-4, segment_steps=2))
    st = res.student
    assert res.steps == 6 and len(res.losses) >= 1
    assert st.extra["sample_defaults"] == {"sampler": "dpmpp_2m", "nfe": 2, "grid": "tuned", "final": "argmax"}
    assert st.extra["tuned_grids"]["dpmpp_2m"]["2"][0] == 1.0 and st.extra["tuned_grids"]["dpmpp_2m"]["2"][-1] == 0.0
    assert st.extra["distill"]["method"] == "trajectory"
    # the teacher is untouched; the student moved
    tw = dict(teacher.ema.named_parameters())
    assert any(not torch.equal(p, tw[k]) for k, p in st.network.named_parameters())
    st.save(tmp_path / "student")
    back = polydiff.load(tmp_path / "student")
    calls = []
    a = back.sample(12, seed=0, callback=lambda *x: calls.append(x[1]))
    assert len(calls) == 2 and len(a) == 12
    b = st.sample(12, seed=0)
    assert all(torch.equal(x.pos, y.pos) and torch.equal(x.label, y.label) for x, y in zip(a, b))


def test_distill_cli_picks_trajectory_for_a_mixed_model_and_refuses_mismatched_methods(teacher, tmp_path, capsys):
    teacher.save(tmp_path / "teacher")
    args = ["distill", str(tmp_path / "teacher"), "--steps", "3", "--train-steps", "2", "--batch-size", "8"]
    args += ["--time-grid", "1,0.3,0,0.2,0", "--segment-steps", "2", "--no-progress", "--out", str(tmp_path / "s")]
    args += ["--data-opt", "size=32", "--data-opt", "n_points=8"]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["method"] == "trajectory" and out["sample_defaults"]["nfe"] == 3
    st = polydiff.load(tmp_path / "s")
    assert st.extra["tuned_grids"]["dpmpp_2m"]["3"] == [1.0, 0.3, 0.0, 0.2, 0.0]
    assert st.extra["distill"]["teacher"] == str(tmp_path / "teacher")  # loadable again
    args[args.index("--out") + 1] = str(tmp_path / "s2")
    assert cli.main([*args, "--init-from", str(tmp_path / "s"), "--no-teacher-restarts", "--train-steps", "0"]) == 0
    again = polydiff.load(tmp_path / "s2")
    assert again.extra["distill"]["config"]["teacher_restarts"] is False
    # --student-kwargs reaches the student: this network cannot grow, so the command fails cleanly
    assert cli.main([*args, "--student-kwargs", '{"layers": 3}', "--train-steps", "0"]) == 1
    assert "defines no grow_init_" in capsys.readouterr().err
    assert all(torch.equal(p, q) for p, q in zip(again.ema.parameters(), st.ema.parameters()))
    with pytest.raises(PolydiffError, match="has parts.*--method trajectory"):
        distill(teacher, DistillConfig(method="consistency", steps=2, train_steps=1, progress=False))
    with pytest.raises(PolydiffError, match="4 network calls, not steps=3"):
        distill(teacher, DistillConfig(method="trajectory", steps=3, time_grid=[1.0, 0.5, 0.2, 0.1, 0.0]))
    image = polydiff.create("image", modality_config={"dataset": "sklearn_digits"}, base_channels=8, channel_mult=[1])
    with pytest.raises(PolydiffError, match="has one tensor.*consistency or progressive or reflow"):
        distill(image, DistillConfig(method="trajectory", steps=2, train_steps=1, progress=False))


def test_warm_start_from_an_earlier_student_and_teacher_completions_without_restarts(teacher, tmp_path, monkeypatch):
    """``init_from`` (``--init-from``) starts the student from another checkpoint's EMA weights
    (0 training steps: exactly them) and refuses a different network; ``teacher_restarts=False``
    (``--no-teacher-restarts``) hands the loss no restarts although the teacher's grid has some."""
    import copy

    import polydiff.distill as distill_mod

    first = distill(teacher, _cfg(train_steps=3, batch_size=8, lr=1e-3, time_grid=[1.0, 0.3, 0.0]))
    first.student.save(tmp_path / "first")
    again = distill(teacher, _cfg(train_steps=0, time_grid=[1.0, 0.3, 0.0], init_from=str(tmp_path / "first")))
    src = dict(first.student.ema.named_parameters())
    assert all(torch.equal(p, src[k]) for k, p in again.student.network.named_parameters())
    tw = dict(teacher.ema.named_parameters())
    assert any(not torch.equal(p, tw[k]) for k, p in again.student.network.named_parameters())
    assert again.student.extra["distill"]["config"]["init_from"] == str(tmp_path / "first")
    wide = polydiff.create("pointcloud_labelled", hidden=16, layers=1)
    wide.save(tmp_path / "wide")
    with pytest.raises(PolydiffError, match="init_from.*cannot start from one with.*defines no grow_init_"):
        distill(teacher, _cfg(train_steps=0, init_from=str(tmp_path / "wide")))
    with pytest.raises(
        PolydiffError, match="the teacher: network 'pointcloud_labelled_deepsets'.*defines no grow_init_"
    ):
        distill(teacher, _cfg(train_steps=0, student_kwargs={"layers": 3}))
    with pytest.raises(PolydiffError, match="init_from.*does not match"):
        distill(teacher, _cfg(train_steps=0, init_from="starter:image-mnist"))
    with pytest.raises(PolydiffError, match="student_kwargs is a dict"):
        distill(teacher, _cfg(train_steps=0, student_kwargs=3))
    with pytest.raises(PolydiffError, match="init_from is a checkpoint folder"):
        distill(teacher, _cfg(train_steps=0, init_from=wide))

    seen = []
    real = distill_mod.TrajectoryLoss
    monkeypatch.setattr(distill_mod, "TrajectoryLoss", lambda *a, **kw: seen.append(kw["restarts"]) or real(*a, **kw))
    with_restarts = copy.deepcopy(teacher)
    with_restarts.extra["sample_defaults"] = {"grid": "power:3+restart:0.2x2", "nfe": 12}
    for flag in (True, False):
        distill(with_restarts, _cfg(train_steps=1, batch_size=8, time_grid=[1.0, 0.3, 0.0], teacher_restarts=flag))
    assert seen == [[(0.2, 2)], []]


def test_a_partial_restart_of_the_students_grid_is_trained_on_and_saved_with_it(teacher, tmp_path, capsys):
    """``restart_noise`` (``--restart-noise``): the on-policy state after a γ = 0 restart is the
    student's finished sample itself (relabelled); the student's sampling defaults keep the
    scales, so loading and sampling uses them (as passing them does; a full restart differs),
    a call on another grid drops them, and a wrong count or another method is refused."""
    from polydiff.mixed import sample_mixed

    parts, exact, x0 = _gmm_setup(64)
    grid = [1.0, 0.5, 0.0, 0.2, 0.0]
    loss = TrajectoryLoss(exact, parts, grid, teacher_steps=1, on_policy=1.0, restart_noise=[0.0])
    got = loss.rollout(exact, x0, None, SampleRNG(4, 64), 0.2)
    rng = SampleRNG(4, 64)
    ref = loss.rollout(exact, x0, None, rng, 1.0)
    ref = sample_mixed(
        exact, ref, torch.tensor(grid[:3], dtype=F64), parts=parts, rng=rng, method="dpmpp_2m", final="argmax"
    )
    assert all(torch.equal(got[k], ref[k]) for k in parts)
    for bad in ([0.0, 1.0], [2.0]):
        with pytest.raises(PolydiffError, match="restart_noise needs one scale"):
            TrajectoryLoss(exact, parts, grid, restart_noise=bad)

    teacher.save(tmp_path / "teacher")
    args = ["distill", str(tmp_path / "teacher"), "--steps", "3", "--train-steps", "2", "--batch-size", "8"]
    args += ["--time-grid", "1,0.3,0,0.2,0", "--restart-noise", "0", "--segment-steps", "2", "--no-progress"]
    args += ["--data-opt", "size=32", "--data-opt", "n_points=8", "--out", str(tmp_path / "s")]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["sample_defaults"]["restart_noise"] == [0.0]
    st = polydiff.load(tmp_path / "s")
    a, b, full = (
        st.sample(16, seed=2),
        st.sample(16, seed=2, restart_noise=[0.0]),
        st.sample(16, seed=2, restart_noise=[1.0]),
    )
    assert all(torch.equal(x.pos, y.pos) and torch.equal(x.label, y.label) for x, y in zip(a, b))
    assert not all(torch.equal(x.pos, y.pos) for x, y in zip(a, full))
    assert len(st.sample(4, seed=2, nfe=3, grid="power:3")) == 4  # no restarts there: the saved scales are dropped
    with pytest.raises(PolydiffError, match="restart_noise needs one scale.*1 in"):
        st.sample(4, seed=2, restart_noise=[0.0, 0.0])
    with pytest.raises(PolydiffError, match="restart_noise scales the restarts.*not of method 'consistency'"):
        distill(polydiff.create("pointcloud"), DistillConfig(method="consistency", steps=2, restart_noise=[0.0]))
