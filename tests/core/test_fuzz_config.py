"""Hostile checkpoints: hypothesis-generated config.json text, JSON structures, file names,
safetensors bytes and training states may only raise polydiff's documented
:class:`~polydiff.errors.PolydiffError` (never a KeyError/TypeError/crash), with a fixed
example budget so CI time is bounded."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

sys.path.insert(0, str(Path(__file__).parent))
import trainer_worker as tw  # noqa: E402

from polydiff import checkpoint as ckpt  # noqa: E402
from polydiff.errors import CheckpointError, PolydiffError  # noqa: E402
from polydiff.plugin_manager import get_plugins, reset_plugins  # noqa: E402
from polydiff.training import TrainConfig, train  # noqa: E402
from polydiff.training.checkpointing import apply_training_checkpoint, read_training_checkpoint  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_HEAVY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=20,
)
nasty_names = st.sampled_from(
    [
        "../x.safetensors",
        "/etc/passwd",
        "..",
        ".",
        "",
        "a\x00.safetensors",
        "model.pt",
        "w.pkl",
        "x" * 300 + ".safetensors",
        "sub/dir.safetensors",
        "C:\\evil.safetensors",
        "model.safetensors",
    ]
) | st.text(max_size=40)


def fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="polydiff-fuzz-"))


def only_polydiff_errors(fn, *args):
    try:
        return fn(*args)
    except PolydiffError:
        return None


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_config_bytes(raw):
    d = fresh_dir()
    try:
        (d / "config.json").write_bytes(raw)
        conf = only_polydiff_errors(ckpt.read_config, d)
        assert conf is None or isinstance(conf, dict)
    finally:
        shutil.rmtree(d)


@FUZZ
@given(
    value=json_values,
    fmt=st.sampled_from([1, "1", 2, None, 1.0, True, -1, 10**30]),
    files=st.dictionaries(nasty_names, json_scalars, max_size=3),
    with_hash=st.booleans(),
)
def test_config_json_structures(value, fmt, files, with_hash):
    d = fresh_dir()
    try:
        conf = {"format": fmt, "payload": value, "files": files}
        if with_hash:
            conf["content_sha256"] = ckpt.content_hash(conf)
        (d / "config.json").write_text(json.dumps(conf))
        got = only_polydiff_errors(ckpt.read_config, d)
        if got is not None:  # accepted configs are sound
            assert got["format"] == 1 and all(isinstance(v, (str, type(None))) for v in got["files"].values())
            for name in got["files"]:
                assert ckpt.safe_member(d, name).parent == d.resolve()
    finally:
        shutil.rmtree(d)


@FUZZ
@given(name=nasty_names)
def test_file_names_never_leave_the_directory(name):
    d = fresh_dir()
    try:
        try:
            p = ckpt.safe_member(d, name)
        except CheckpointError:
            return
        assert p.parent == d.resolve() and p.suffix == ".safetensors"
        assert only_polydiff_errors(ckpt.load_tensors, d, name, None) is None  # missing → CheckpointError
    finally:
        shutil.rmtree(d)


VALID = save({"w": torch.arange(12.0).reshape(3, 4), "i": torch.tensor([1, 2, 3])})


@FUZZ
@given(data=st.data())
def test_corrupt_safetensors_bytes(data):
    how = data.draw(st.sampled_from(["random", "truncate", "flip", "header"]))
    raw = bytearray(VALID)
    if how == "random":
        raw = bytearray(data.draw(st.binary(max_size=200)))
    elif how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
    else:  # rewrite the JSON header with hostile content, keeping the 8-byte length prefix valid
        header = json.dumps(data.draw(json_values)).encode()
        raw = bytearray(len(header).to_bytes(8, "little") + header + raw[8:])
    d = fresh_dir()
    try:
        (d / "w.safetensors").write_bytes(bytes(raw))
        got = only_polydiff_errors(ckpt.load_tensors, d, "w.safetensors", None)
        assert got is None or all(torch.is_tensor(v) for v in got.values())
        # with the recorded hash of the valid file, anything changed is refused
        if bytes(raw) != VALID:
            with pytest.raises(CheckpointError):
                ckpt.load_tensors(d, "w.safetensors", hashlib.sha256(VALID).hexdigest())
    finally:
        shutil.rmtree(d)


@pytest.fixture(scope="module")
def training_checkpoint():
    """One real training checkpoint (tiny modality, 4 steps) reused by the fuzz examples."""
    import os

    old_env = os.environ.get("POLYDIFF_PLUGINS")
    os.environ["POLYDIFF_PLUGINS"] = "core"
    reset_plugins()
    get_plugins().register(tw.TinyPlugin(), name="tiny_train_test_plugin")
    out = fresh_dir()
    cfg = TrainConfig(steps=4, batch_size=8, device="cpu", progress=False, out_dir=str(out), checkpoint_every=4)
    train(tw.make_model(0), tw.make_dataset(), cfg)
    yield out / "checkpoints" / "step_000000004"
    shutil.rmtree(out)
    get_plugins().unregister("tiny_train_test_plugin")
    if old_env is None:
        os.environ.pop("POLYDIFF_PLUGINS")
    else:
        os.environ["POLYDIFF_PLUGINS"] = old_env
    reset_plugins()


def _mutate(obj, path: list, value):
    """Replace the entry at ``path`` (list of keys/indices) in a JSON tree."""
    if not path:
        return value
    k = path[0]
    if isinstance(obj, dict) and obj:
        key = sorted(obj)[k % len(obj)]
        obj = dict(obj)
        obj[key] = _mutate(obj[key], path[1:], value)
    elif isinstance(obj, list) and obj:
        obj = list(obj)
        obj[k % len(obj)] = _mutate(obj[k % len(obj)], path[1:], value)
    else:
        return value
    return obj


@FUZZ_HEAVY
@given(where=st.lists(st.integers(0, 50), min_size=1, max_size=5), value=json_values)
def test_mutated_training_state_is_refused_or_sound(training_checkpoint, where, value):
    """Mutate any entry of training_state (hash recomputed, so the schema checks are what
    stands between the file and the trainer); loading and applying raise only CheckpointError."""
    d = fresh_dir()
    try:
        for f in training_checkpoint.iterdir():
            shutil.copy(f, d / f.name)
        conf = json.loads((d / "config.json").read_text())
        conf["training_state"] = _mutate(conf["training_state"], where, value)
        conf["content_sha256"] = ckpt.content_hash(conf)
        (d / "config.json").write_text(json.dumps(conf))
        model = tw.make_model(0)
        model.init_ema()
        opt = torch.optim.AdamW(model.network.parameters(), lr=1e-3)
        try:
            ck = read_training_checkpoint(d)
            apply_training_checkpoint(ck, model, opt, rank=0)
        except CheckpointError:
            return
        # accepted: the optimiser can take a step with what was loaded
        sum(p.sum() for p in model.network.parameters()).backward()
        opt.step()
    finally:
        shutil.rmtree(d)


@FUZZ_HEAVY
@given(
    which=st.sampled_from(["model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng.safetensors"]),
    tensors=st.dictionaries(
        st.sampled_from(
            [
                "state.0.exp_avg",
                "state.0.step",
                "state.9.x",
                "network.net.0.weight",
                "rank0.torch_cpu",
                "rank0.numpy_keys",
                "bogus",
                "state.a.b",
            ]
        ),
        st.sampled_from(
            [
                torch.zeros(0),
                torch.ones(3),
                torch.zeros(5056, dtype=torch.uint8),
                torch.ones(624).long(),
                torch.tensor(1.0),
                torch.zeros(32, 5),
            ]
        ),
        max_size=4,
    ),
)
def test_swapped_tensor_files_are_refused(training_checkpoint, which, tensors):
    """A weight file replaced by other (validly hashed) tensors never gets past loading unchecked."""
    tensors = {k: v.clone() for k, v in tensors.items()}
    d = fresh_dir()
    try:
        for f in training_checkpoint.iterdir():
            shutil.copy(f, d / f.name)
        conf = json.loads((d / "config.json").read_text())
        conf["files"][which] = ckpt.atomic_save_tensors(tensors, d / which)
        conf["content_sha256"] = ckpt.content_hash(conf)
        (d / "config.json").write_text(json.dumps(conf))
        model = tw.make_model(0)
        model.init_ema()
        opt = torch.optim.AdamW(model.network.parameters(), lr=1e-3)
        if which == "optimizer.safetensors" and not tensors:
            apply_training_checkpoint(read_training_checkpoint(d), model, opt, rank=0)  # = a fresh optimiser
            return
        with pytest.raises(CheckpointError):
            apply_training_checkpoint(read_training_checkpoint(d), model, opt, rank=0)
    finally:
        shutil.rmtree(d)


@pytest.fixture(scope="module")
def model_checkpoint(training_checkpoint):
    """The model part of a checkpoint as ``DiffusionModel.save`` writes it."""
    from polydiff.model import DiffusionModel

    d = fresh_dir()
    DiffusionModel.load(training_checkpoint).save(d)
    yield d
    shutil.rmtree(d)


#: fields whose types the checkpoint reader checks itself (``polydiff.checkpoint.MODEL_SCHEMA``)
SCHEMA_PATHS = [
    ["plugin"],
    ["plugin", "name"],
    ["modality"],
    ["modality", "name"],
    ["modality", "config"],
    ["network"],
    ["network", "name"],
    ["network", "kwargs"],
    ["schedule"],
    ["schedule", "name"],
    ["schedule", "config"],
    ["parameterization"],
    ["parameterization", "kind"],
    ["parameterization", "sigma_data"],
    ["training"],
    ["extra"],
    ["files"],
    ["format"],
]


def _load_mutated(model_dir: Path, path: list, value, *, by_name: bool):
    from polydiff.model import DiffusionModel

    d = fresh_dir()
    try:
        for f in model_dir.iterdir():
            shutil.copy(f, d / f.name)
        conf = json.loads((d / "config.json").read_text())
        conf.pop("content_sha256")
        if by_name:
            node = conf
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
        else:
            conf = _mutate(conf, path, value)
        conf["content_sha256"] = ckpt.content_hash(conf)
        (d / "config.json").write_text(json.dumps(conf))
        try:
            DiffusionModel.load(d)
        except PolydiffError:
            pass
    finally:
        shutil.rmtree(d)


@FUZZ_HEAVY
@given(path=st.sampled_from(SCHEMA_PATHS), value=json_values)
def test_model_config_fields_of_the_wrong_type_are_refused(model_checkpoint, path, value):
    if path in (["schedule", "config"], ["network", "kwargs"]):
        assume(not isinstance(value, dict))  # their *contents* go to constructors: see the next test
    _load_mutated(model_checkpoint, path, value, by_name=True)


@FUZZ_HEAVY
@example(where=[4, 0], value={"bogus": 1})  # network.kwargs = {"bogus": 1}
@example(where=[8, 0, 0], value=None)  # schedule.config.<first key> = null
@given(where=st.lists(st.integers(0, 50), min_size=1, max_size=4), value=json_values)
def test_any_mutated_model_config_raises_only_polydiff_errors(model_checkpoint, where, value):
    _load_mutated(model_checkpoint, where, value, by_name=False)
