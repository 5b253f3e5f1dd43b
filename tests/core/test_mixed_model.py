"""A DiffusionModel whose modality has parts (the example plugin's ``pointcloud_labelled``:
continuous positions with zero centre of mass + a masked categorical label per point), used
through the public API: create → train → sample → files; batch independence; save/load;
known-region pinning; the trainer's mixed branch (accumulation, resume); routing errors."""

from __future__ import annotations

import json

import pytest
import torch

import polydiff
from polydiff import checkpoint as ckpt
from polydiff.categorical import named_time_grid, time_grid
from polydiff.errors import CheckpointError, PolydiffError
from polydiff.mixed import mixed_cfg, mixed_known_region, prior_state, sample_mixed
from polydiff.rng import SampleRNG
from polydiff.training import TrainConfig, train

N_POINTS = 8


@pytest.fixture(scope="module")
def trained():
    """(model trained 200 steps on 256 clouds, data, untrained metrics, train result)."""
    torch.manual_seed(0)  # the network's initial weights
    model = polydiff.create("pointcloud_labelled")
    data = model.modality.load_dataset(size=256, n_points=N_POINTS, seed=1)
    untrained = model.modality.evaluate(model.sample(128, steps=20, seed=0))
    res = train(
        model,
        data,
        TrainConfig(steps=200, batch_size=64, lr=3e-3, ema_decay=0.9, progress=False, log_every=50),
    )
    return model, data, untrained, res


def test_create_train_sample_write_read(trained, tmp_path):
    model, data, untrained, res = trained
    assert model.parts is not None and set(model.parts) == {"pos", "label"}
    assert res.steps == 200 and res.losses[-1][1] < res.losses[0][1], res.losses
    samples = model.sample(128, steps=20, seed=0)
    assert len(samples) == 128
    pos = torch.stack([s.pos for s in samples])
    label = torch.stack([s.label for s in samples])
    assert pos.shape == (128, N_POINTS, 2) and label.shape == (128, N_POINTS)
    assert set(label.unique().tolist()) <= {0, 1}  # no mask token left at t = 0
    assert pos.mean(1).abs().max() < 1e-5  # zero centre of mass (the part's space)
    metrics = model.modality.evaluate(samples)
    floor = model.modality.evaluate([data[i] for i in range(128)])
    # 200 steps on 256 clouds (≈ 5 s): labels follow the rings and points lie on their label's
    # ring far better than untrained (seeds 0-3 of this recipe: accuracy 0.83-0.93 vs 0.48-0.65
    # untrained, radius error 0.14-0.19 vs 0.28-0.36)
    acc, err = "pointcloud_labelled_label_accuracy", "pointcloud_labelled_radius_error"
    assert metrics[acc] > max(0.75, untrained[acc] + 0.15), (metrics, untrained)
    assert metrics[err] < 0.75 * untrained[err], (metrics, untrained)
    assert floor[acc] == 1.0 and floor[err] < 0.05
    # files round-trip through the modality's writer/reader
    path = model.modality.write(samples, tmp_path / "clouds.json")[0]
    back = model.modality.read(path)
    assert all(torch.equal(a.label, b.label) and torch.allclose(a.pos, b.pos) for a, b in zip(samples, back))
    assert model.modality.evaluate(back) == pytest.approx(metrics)


@pytest.mark.parametrize("sampler", ["ancestral", "euler", "dpmpp_2m"])
def test_sample_i_alone_equals_sample_i_of_a_batch(trained, sampler):
    model = trained[0]
    batch, _ = model.sample_raw(6, sampler=sampler, steps=12, seed=3)
    for i in (0, 4):
        alone, _ = model.sample_raw(1, sampler=sampler, steps=12, seed=3, sample_offset=i)
        assert torch.equal(alone["label"][0], batch["label"][i])
        assert torch.allclose(alone["pos"][0], batch["pos"][i], atol=1e-5)


def test_save_load_gives_the_same_samples(trained, tmp_path):
    model = trained[0]
    model.save(tmp_path / "ckpt")
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert cfg["parts"]["label"]["process"] == {"kind": "masked", "num_classes": 2, "schedule": {"kind": "linear"}}
    assert cfg["parts"]["pos"]["schedule"]["name"] == "vp_linear"
    again = polydiff.load(tmp_path / "ckpt")
    assert again.config()["parts"] == cfg["parts"]
    a, _ = model.sample_raw(5, steps=10, seed=2)
    b, _ = again.sample_raw(5, steps=10, seed=2)
    assert torch.equal(a["label"], b["label"]) and torch.equal(a["pos"], b["pos"])


def _rewrite(path, edit):
    cfg = json.loads((path / "config.json").read_text())
    edit(cfg)
    cfg["content_sha256"] = ckpt.content_hash(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


def test_load_refuses_parts_that_differ_from_the_saved_ones(trained, tmp_path):
    model = trained[0]
    path = model.save(tmp_path / "ckpt")

    # the modality now rebuilds a marginal process where the weights were trained for a masked one
    _rewrite(path, lambda c: c["modality"]["config"].update(process="marginal"))
    with pytest.raises(CheckpointError, match=r"parts differ from the saved ones \(label: saved"):
        polydiff.load(path)
    _rewrite(path, lambda c: c["modality"]["config"].update(process="masked"))
    polydiff.load(path)  # restored: loads again

    _rewrite(path, lambda c: c.pop("parts"))
    with pytest.raises(CheckpointError, match="the checkpoint saved none"):
        polydiff.load(path)
    _rewrite(path, lambda c: c.update(parts=["label"]))
    with pytest.raises(CheckpointError, match="'parts' must be an object"):
        polydiff.load(path)


def test_known_region_pins_labels_and_positions_exactly(trained):
    """mixed_known_region through wrap=: the pinned entries come out exactly (labels bit for
    bit, positions to float32 rounding). Positions are pinned for whole clouds: the final
    zero-centre-of-mass projection shifts a partly pinned cloud by the centre of mass of its
    predicted part."""
    model, data = trained[0], trained[1]
    n = 4
    batch = model.modality.collate([data[i] for i in range(n)])
    known = batch["x"]
    pos_mask = torch.zeros(n, N_POINTS, 2, dtype=torch.bool)
    pos_mask[[0, 2]] = True  # clouds 0 and 2: every position given (label the points)
    label_mask = torch.zeros(n, N_POINTS, dtype=torch.bool)
    label_mask[1, :5] = True  # cloud 1: five labels given (place the points)
    label_mask[2, :2] = True
    wrap = mixed_known_region(model.parts, known, {"pos": pos_mask, "label": label_mask})
    for sampler in ("ancestral", "euler"):
        x, _ = model.sample_raw(n, sampler=sampler, steps=10, seed=5, wrap=lambda d, c: wrap(d))
        # exact up to the float32 rounding of the final zero-centre-of-mass projection
        assert (x["pos"][pos_mask] - known["pos"][pos_mask]).abs().max() < 1e-6
        assert torch.equal(x["label"][label_mask], known["label"][label_mask])
        free, _ = model.sample_raw(n, sampler=sampler, steps=10, seed=5)
        assert not torch.equal(free["label"][label_mask], known["label"][label_mask])


def test_guidance_scale_is_mixed_cfg_with_the_same_noise(trained):
    """sample_raw(guidance=w) is prior_state + sample_mixed over mixed_cfg(w) on time_grid(steps)
    with per-sample generators (seed, offset + i)."""
    model = trained[0]
    x, c = model.sample_raw(3, steps=7, seed=11, guidance=2.5, sample_offset=2)
    rng = SampleRNG(11, 3, offset=2)
    shapes, cond = model.modality.sampling_request(3, None, rng)
    parts = model.parts
    state = prior_state(parts, shapes, rng, cond=cond)
    den = model.denoiser()
    d = mixed_cfg(den, parts, {**cond, "cond_mask": torch.ones(3)}, 2.5)
    want = sample_mixed(d, state, time_grid(7), parts=parts, rng=rng, cond=cond)
    assert torch.equal(x["label"], want["label"]) and torch.equal(x["pos"], want["pos"])


def test_power_time_grid_is_used_and_named(trained):
    """grid="power:ρ" samples on time_grid(steps, rho=ρ): t_i = 1 − (i/steps)^(1/ρ), steps
    shrinking towards t = 0; "uniform" is ρ = 1; anything else is an error naming both forms."""
    g = time_grid(4, rho=2.0)
    assert torch.allclose(g, 1 - torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64).sqrt())
    assert torch.equal(time_grid(4, rho=1.0), time_grid(4)) and (g[:-1] - g[1:]).diff().le(0).all()
    model = trained[0]
    times = []
    model.sample_raw(2, steps=4, seed=0, grid="power:2", callback=lambda i, t, *a: times.append(t))
    assert times == pytest.approx(g[:-1].tolist())
    x, _ = model.sample_raw(2, steps=4, seed=0, grid="uniform")
    y, _ = model.sample_raw(2, steps=4, seed=0)
    assert torch.equal(x["pos"], y["pos"])
    for bad in (
        "karras",
        "power:0.5",
        "power:x",
        "power:2+restart:0.3",
        "power:2+restart:1.5x1",
        "power:2+reset:0.1x1",
    ):
        with pytest.raises(ValueError, match="'uniform' or 'power:<rho>'"):
            model.sample_raw(2, steps=2, grid=bad)


def test_a_restart_grid_name_counts_all_network_calls(trained):
    """grid="power:2+restart:0.3x1,0.1x2" with steps=6: 3 main steps, then restarts of 1 and 2
    steps — 6 network calls at the times of named_time_grid; too few steps is an error."""
    model = trained[0]
    times = []
    model.sample_raw(2, steps=6, seed=0, grid="power:2+restart:0.3x1,0.1x2", callback=lambda i, t, *a: times.append(t))
    want = named_time_grid(6, "power:2+restart:0.3x1,0.1x2")
    assert times == pytest.approx([float(a) for a, b in zip(want[:-1], want[1:]) if b < a])
    assert times == pytest.approx(time_grid(3, rho=2.0)[:-1].tolist() + [0.3, 0.1, 0.05])
    with pytest.raises(ValueError, match="fewer than the steps in all"):
        model.sample_raw(2, steps=3, grid="power:2+restart:0.3x1,0.1x2")


def test_time_grid_tuned_by_metric_is_stored_and_used(trained):
    """tune_by_metric on a mixed model searches the time grid's ρ on calibration seeds, stores
    the best as times 1 → 0, and sampling uses it for grid="tuned" and by default at that step
    count (an explicit grid still wins); grid="tuned" without one names what is stored."""
    import copy

    from polydiff.samplers.tuning import CALIBRATION_SEED, tune_by_metric

    model = copy.deepcopy(trained[0])
    with pytest.raises(PolydiffError, match="no tuned time grid .*'ancestral' at 3 steps; stored: none"):
        model.sample_raw(2, steps=3, grid="tuned")
    metric = "pointcloud_labelled_radius_error"  # lower is better
    info = tune_by_metric(model, "ancestral", 3, metric, n=16, rhos=(1.0, 3.0, 6.0), restart_times=())
    values = [v for *_, v in info["table"]]
    assert [r for r, *_ in info["table"]] == [1.0, 3.0, 6.0] and info["value"] == min(values)
    want = time_grid(3, rho=info["rho"])
    assert info["sigmas"] == pytest.approx(want.tolist())
    x, _ = model.sample_raw(2, steps=3, seed=4, grid="tuned")
    y, _ = model.sample_raw(2, steps=3, seed=4, grid=f"power:{info['rho']:g}")
    z, _ = model.sample_raw(2, steps=3, seed=4)
    assert torch.equal(x["pos"], y["pos"]) and torch.equal(x["pos"], z["pos"])
    again = model.sample(16, seed=CALIBRATION_SEED, sampler="ancestral", nfe=3)
    assert model.modality.evaluate(again, metrics=[metric])[metric] == pytest.approx(info["value"])


def test_restart_schedules_are_tuned_on_the_best_rho_and_stored_with_their_calls(trained):
    """With restarts (the default) tune_by_metric tries, after the ρ grid, restart schedules on
    the best ρ with the same calls; the stored grid is the best row's, whatever it is, and
    grid="tuned" samples on it; a stored grid with the wrong number of calls is refused."""
    import copy

    from polydiff.samplers.tuning import restart_grid_names, store, tune_by_metric

    model = copy.deepcopy(trained[0])
    metric = "pointcloud_labelled_radius_error"  # lower is better
    info = tune_by_metric(model, "ancestral", 5, metric, n=16, rhos=(1.0, 3.0))
    rho = min(info["table"][:2], key=lambda r: r[-1])[0]
    assert info["names"] == ["power:1", "power:3"] + restart_grid_names(5, rho)
    assert restart_grid_names(5, 3.0)[:2] == ["power:3+restart:0.2x3", "power:3+restart:0.2x2"]
    best = min(range(len(info["table"])), key=lambda i: info["table"][i][-1])
    assert info["grid"] == info["names"][best] and info["value"] == info["table"][best][-1]
    assert info["sigmas"] == pytest.approx(named_time_grid(5, info["grid"]).tolist())
    x, _ = model.sample_raw(2, steps=5, seed=4, grid="tuned")
    y, _ = model.sample_raw(2, steps=5, seed=4, grid=info["grid"])
    assert torch.equal(x["pos"], y["pos"]) and torch.equal(x["label"], y["label"])
    with pytest.raises(PolydiffError, match="takes 5 network calls, not 4"):
        store(model, "ancestral", 4, named_time_grid(5, "power:3+restart:0.2x2"))


def test_tune_steps_cli_tunes_a_mixed_time_grid_by_metric(trained, tmp_path, capsys):
    """`polydiff tune-steps CK --metric M --sampler ancestral` stores the best time grid (plain or
    with restarts) in the checkpoint's config; without --metric a mixed state is refused with a
    pointer to it."""
    import json

    from polydiff.cli import main
    from polydiff.samplers.tuning import lookup

    trained[0].save(tmp_path / "ck")
    assert main(["tune-steps", str(tmp_path / "ck"), "--sampler", "ancestral", "--nfe", "4", "--quiet"]) == 1
    assert "--metric NAME" in capsys.readouterr().err
    argv = ["tune-steps", str(tmp_path / "ck"), "--sampler", "ancestral", "--nfe", "4", "-n", "8", "--quiet"]
    assert main([*argv, "--metric", "pointcloud_labelled_radius_error"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tuned"]["4"]
    stored = lookup(polydiff.load(tmp_path / "ck"), "ancestral", 4)
    assert stored is not None and stored.tolist() == pytest.approx(named_time_grid(4, res["grid"]).tolist())


def test_an_asked_nfe_overrides_saved_steps_and_the_reverse(trained):
    import copy

    model = copy.deepcopy(trained[0])
    seen = []
    model.extra["sample_defaults"] = {"steps": 6}
    model.sample(1, nfe=3, callback=lambda i, *a: seen.append(i))
    assert seen == [0, 1, 2]
    seen.clear()
    model.extra["sample_defaults"] = {"nfe": 6}
    model.sample(1, steps=2, callback=lambda i, *a: seen.append(i))
    assert seen == [0, 1]


def test_a_saved_time_grid_belongs_to_its_saved_step_count(trained):
    """Sample defaults with a restart grid at 6 steps: sample() uses it at 6; asked for 4 steps,
    the grid tuned for 4 if one is stored, else the saved grid's base (power:2, no restarts);
    an explicit grid always wins."""
    import copy

    from polydiff.samplers.tuning import store

    model = copy.deepcopy(trained[0])
    model.extra["sample_defaults"] = {"nfe": 6, "grid": "power:2+restart:0.2x2"}

    def times(**kw):
        seen = []
        model.sample(1, callback=lambda i, t, *a: seen.append(t), **kw)
        return pytest.approx(seen)

    assert times() == [*time_grid(4, rho=2.0)[:-1].tolist(), 0.2, 0.1]
    assert times(nfe=4) == time_grid(4, rho=2.0)[:-1].tolist()
    assert times(nfe=4, grid="uniform") == time_grid(4)[:-1].tolist()
    store(model, "ancestral", 4, named_time_grid(4, "power:5+restart:0.1x1"))
    assert times(nfe=4) == [*time_grid(3, rho=5.0)[:-1].tolist(), 0.1]


def test_routing_errors_name_what_mixed_models_accept(trained):
    model = trained[0]
    with pytest.raises(PolydiffError, match="'ancestral' or 'euler' or 'dpmpp_2m'"):
        model.sample_raw(2, sampler="heun", steps=2)
    with pytest.raises(PolydiffError, match="'x_init'.*continuous models only"):
        model.sample_raw(2, steps=2, x_init=torch.zeros(2, N_POINTS, 2))
    with pytest.raises(PolydiffError, match="'s_churn'"):
        model.sample_raw(2, steps=2, s_churn=1.0)
    with pytest.raises(PolydiffError, match="a number"):
        model.sample_raw(2, steps=2, guidance=("cfg", 2.0))
    with pytest.raises(PolydiffError, match="negative="):
        model.sample_raw(2, steps=2, negative={"mask": torch.ones(2, N_POINTS)})
    # temperature reaches the categorical steps (τ = 1: the default draw; τ ≤ 0: an error)
    x, _ = model.sample_raw(2, steps=3, seed=0, temperature=1.0)
    assert torch.equal(x["label"], model.sample_raw(2, steps=3, seed=0)[0]["label"])
    with pytest.raises(ValueError, match="temperature"):
        model.sample_raw(2, steps=3, temperature=0.0)
    # nfe is the number of steps (one network call each)
    seen = []
    model.sample_raw(2, nfe=5, callback=lambda i, *a: seen.append(i))
    assert seen == [0, 1, 2, 3, 4]


def _fresh(seed=0):
    torch.manual_seed(seed)  # the same initial weights
    model = polydiff.create("pointcloud_labelled", hidden=16, layers=1)
    data = model.modality.load_dataset(size=32, n_points=N_POINTS, seed=seed)
    return model, data


def test_gradient_accumulation_gives_the_same_steps():
    """batch 8 in one micro-batch or in two: the same per-sample times and noise, so the same
    losses and weights (up to float summation order)."""
    out = []
    for accum in (1, 2):
        model, data = _fresh()
        res = train(
            model, data, TrainConfig(steps=3, batch_size=8, grad_accum=accum, lr=1e-3, progress=False, log_every=1)
        )
        out.append((res.losses, [p.detach().clone() for p in model.network.parameters()]))
    assert [v for _, v in out[0][0]] == pytest.approx([v for _, v in out[1][0]], rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(out[0][1], out[1][1]))


def test_resume_continues_bit_for_bit(tmp_path):
    cfg = dict(batch_size=8, lr=1e-3, progress=False, log_every=1, checkpoint_every=2, out_dir=str(tmp_path / "a"))
    model, data = _fresh()
    train(model, data, TrainConfig(steps=4, **cfg))
    straight = [p.detach().clone() for p in model.network.parameters()]
    cfg["out_dir"] = str(tmp_path / "b")
    model, data = _fresh()
    train(model, data, TrainConfig(steps=2, **cfg))
    model, data = _fresh()
    res = train(model, data, TrainConfig(steps=4, resume="auto", **cfg))
    assert res.start_step == 2
    assert all(torch.equal(a, b) for a, b in zip(straight, model.network.parameters()))


def test_torchrun_two_cpu_processes_equal_one_process(tmp_path):
    """The mixed branch under DDP (gloo, 2 processes): the same global batch gives the same
    losses and weights as one process (each sample's t, coin and noise come from its position)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    worker = Path(__file__).parent / "mixed_trainer_worker.py"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ddp, one = str(tmp_path / "ddp.safetensors"), str(tmp_path / "one.safetensors")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", str(worker), ddp]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    proc = subprocess.run([sys.executable, str(worker), one], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = {k: json.loads(Path(k + ".json").read_text()) for k in (ddp, one)}
    assert info[ddp]["world_size"] == 2 and info[one]["world_size"] == 1
    assert [v for _, v in info[ddp]["losses"]] == pytest.approx([v for _, v in info[one]["losses"]], rel=1e-5)
    a, b = load_file(ddp), load_file(one)
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_marginal_process_from_the_data_and_no_parts_for_a_continuous_modality(tmp_path):
    """config {"process": "marginal"}: fit records the label frequencies, the label part's prior
    is them (no mask token: 2 network states), and the model samples, saves and loads; a
    modality without parts keeps its config free of them."""
    torch.manual_seed(0)
    model = polydiff.create("pointcloud_labelled", modality_config={"process": "marginal"}, hidden=16, layers=1)
    data = model.modality.load_dataset(size=200, n_points=N_POINTS, p_outer=0.8, seed=2)
    freq = torch.stack([data[i].label for i in range(len(data))]).double().mean()
    marg = model.modality.config["label_marginals"]
    assert marg == pytest.approx([1 - float(freq), float(freq)]) and marg[1] > 0.7
    proc = model.parts["label"].process
    assert proc.name == "marginal" and torch.allclose(proc.prior(), torch.tensor(marg, dtype=torch.float64))
    model = polydiff.create("pointcloud_labelled", modality_config=model.modality.config, hidden=16, layers=1)
    assert model.network.label_emb.num_embeddings == 2  # network_kwargs from the parts
    x, _ = model.sample_raw(3, steps=4, seed=0)
    assert set(x["label"].unique().tolist()) <= {0, 1}
    model.save(tmp_path / "m")
    assert polydiff.load(tmp_path / "m").config()["parts"]["label"]["process"]["marginals"] == pytest.approx(marg)
    assert polydiff.create("pointcloud").parts is None and "parts" not in polydiff.create("pointcloud").config()


def test_part_loss_weights_scale_each_part_of_the_training_loss():
    """config["part_loss_weights"] reaches mixed_loss: the loss with weights (a, b) equals a·(pos
    loss) + b·(label loss), each measured alone with the other part's weight 0; an unknown part
    name is an error."""
    from polydiff.mixed_model import training_loss

    torch.manual_seed(0)
    model = polydiff.create("pointcloud_labelled")
    data = model.modality.load_dataset(size=8, n_points=N_POINTS, seed=1)
    model.modality.fit(data)
    batch = model.modality.collate([data[i] for i in range(8)])
    den = model.denoiser(ema=False)
    pos_name, label_name = list(model.parts)

    def loss(weights):
        model.modality.config["part_loss_weights"] = weights
        return training_loss(den, model, batch, SampleRNG(5, 8), 0.0, 1e-3, "cpu")

    only_pos = loss({label_name: 0.0})
    only_label = loss({pos_name: 0.0})
    both = loss({pos_name: 3.0, label_name: 0.5})
    assert torch.allclose(both, 3.0 * only_pos + 0.5 * only_label, rtol=1e-6)
    assert torch.allclose(loss(None), only_pos + only_label, rtol=1e-6)
    with pytest.raises(PolydiffError, match="unknown part"):
        loss({"bonds": 2.0})
