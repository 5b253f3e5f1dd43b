"""The checkpoint format: a directory with ``config.json`` and safetensors files.

::

    run/
      config.json          polydiff version, plugin name+version, registry keys,
                           hyper-parameters, data statistics, sha256 of every file
      model.safetensors    network (+ modality modules) weights
      ema.safetensors      EMA weights (optional)

Loading never unpickles: only JSON and safetensors are read, a ``.pt``/``.pkl``/``.bin``
path is refused with an explanation, and every file named in the config must be a plain
name inside the directory. Writes are atomic (temporary file, fsync, rename) and
``config.json`` is written last, so a crash leaves the previous checkpoint readable.

``config.json`` carries ``files`` (sha256 of every weight file) and ``content_sha256``,
the sha256 of its own canonical JSON without that field, so a truncated or edited config
is detected as surely as a truncated weight file. Every problem a file can have is
reported as :class:`polydiff.errors.CheckpointError` naming the path.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

FORMAT_VERSION = 1
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}
CONFIG_NAME = "config.json"


def content_hash(config: dict) -> str:
    """sha256 of ``config`` as canonical JSON (sorted keys, no spaces), ``content_sha256`` left out."""
    body = {k: v for k, v in config.items() if k != "content_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save_tensors(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict | None = None) -> str:
    """Save tensors as safetensors atomically; returns the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        clean, seen = {}, set()
        for k, v in tensors.items():
            v = v.detach().to("cpu").contiguous()
            ptr = v.untyped_storage().data_ptr()
            if ptr in seen and v.numel():  # tied weights: safetensors stores each storage once
                v = v.clone()
            seen.add(v.untyped_storage().data_ptr())
            clean[k] = v
        save_file(clean, tmp, metadata=metadata)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        digest = sha256_file(Path(tmp))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return digest
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(obj, path: Path) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def refuse_pickle(path: Path) -> None:
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: refusing to load a {path.suffix} file. polydiff checkpoints are a folder "
            "with config.json + .safetensors; pickle-based files (.pt/.pth/.pkl/.bin/.ckpt) can "
            "run arbitrary code when loaded and are never opened. Convert the weights with "
            "safetensors in a trusted environment first."
        )


def safe_member(directory: Path, name: str) -> Path:
    """``directory/name`` if ``name`` is a plain file name that stays inside ``directory``."""
    try:
        directory = Path(directory).resolve()
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{directory}: not a usable checkpoint directory ({e})") from None
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
        raise CheckpointError(f"{directory}: config names the file {name!r}, which is not a plain file name")
    try:
        p = (directory / name).resolve()
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{directory}: config names the file {name!r}, which cannot be opened ({e})") from None
    if p.parent != directory:
        raise CheckpointError(f"{directory}: config path {name!r} escapes the checkpoint directory")
    refuse_pickle(p)
    if p.suffix != ".safetensors":
        raise CheckpointError(f"{directory}: config names {name!r}; only .safetensors weight files are read")
    return p


def read_config(directory: Path) -> dict:
    """Parse and check ``directory/config.json``: JSON object, integer ``format`` this
    version reads, ``files`` mapping plain names to sha256 strings, matching
    ``content_sha256`` when present. Raises :class:`CheckpointError` otherwise."""
    directory = Path(directory)
    refuse_pickle(directory)
    cfg_path = directory / CONFIG_NAME
    try:
        if directory.is_file():
            raise CheckpointError(f"{directory}: a checkpoint is a directory holding {CONFIG_NAME}")
        if not cfg_path.is_file():
            raise CheckpointError(f"{directory}: no {CONFIG_NAME} (not a polydiff checkpoint)")
        text = cfg_path.read_bytes().decode("utf-8")
        cfg = json.loads(text)
    except CheckpointError:
        raise
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, int too long
        raise CheckpointError(f"{cfg_path}: not valid JSON ({str(e)[:200]})") from None
    except OSError as e:
        raise CheckpointError(f"{cfg_path}: cannot be read ({e})") from None
    if not isinstance(cfg, dict) or "format" not in cfg:
        raise CheckpointError(f"{cfg_path}: missing field 'format'")
    fmt = cfg["format"]
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise CheckpointError(f"{cfg_path}: field 'format' must be a positive integer, got {fmt!r:.80}")
    if fmt > FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: format {fmt} is newer than this polydiff reads ({FORMAT_VERSION})")
    files = cfg.get("files", {})
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, type(None))) for k, v in files.items()
    ):
        raise CheckpointError(f"{cfg_path}: field 'files' must map file names to sha256 strings")
    for name in files:
        safe_member(directory, name)
    if "modality" in cfg:
        check_model_config(cfg, cfg_path)
    if "content_sha256" in cfg:
        try:
            expected = content_hash(cfg)
        except (ValueError, RecursionError) as e:
            raise CheckpointError(f"{cfg_path}: content cannot be hashed ({e})") from None
        if cfg["content_sha256"] != expected:
            raise CheckpointError(
                f"{cfg_path}: content hash does not match the recorded content_sha256: "
                "the config is corrupt, truncated or was edited by hand"
            )
    return cfg


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: section → {field: (predicate, description)} of a model checkpoint's config.json
MODEL_SCHEMA = {
    "plugin": {"name": (lambda v: isinstance(v, str) and v != "", "a non-empty string")},
    "modality": {
        "name": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
        "config": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    },
    "network": {
        "name": (lambda v: isinstance(v, str), "a string"),
        "kwargs": (lambda v: isinstance(v, dict), "an object"),
    },
    "schedule": {
        "name": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
        "config": (lambda v: isinstance(v, dict), "an object"),
    },
    "parameterization": {
        "kind": (lambda v: isinstance(v, str), "a string"),
        "sigma_data": (lambda v: _is_number(v) and v > 0, "a positive number"),
    },
}
OPTIONAL_FIELDS = {("network", "kwargs")}


def check_model_config(cfg: dict, cfg_path: Path) -> None:
    """The sections :meth:`polydiff.model.DiffusionModel.load` reads have the right types
    (registry names are strings, hyper-parameters objects, σ_data a positive number)."""
    for section, fields in MODEL_SCHEMA.items():
        sec = cfg.get(section)
        if not isinstance(sec, dict):
            raise CheckpointError(f"{cfg_path}: field {section!r} must be an object")
        for name, (ok, what) in fields.items():
            if name not in sec and (section, name) in OPTIONAL_FIELDS:
                continue
            if name not in sec or not ok(sec[name]):
                raise CheckpointError(f"{cfg_path}: field '{section}.{name}' must be {what}")
    for section in ("training", "extra"):
        if section in cfg and not isinstance(cfg[section], dict):
            raise CheckpointError(f"{cfg_path}: field {section!r} must be an object")


def load_tensors(directory: Path, name: str, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    """Load one safetensors file named in the config, verifying its hash."""
    path = safe_member(directory, name)
    try:
        present = path.is_file()
    except OSError as e:  # name too long, permission denied …
        raise CheckpointError(f"{directory}: file {name!r} named in {CONFIG_NAME} cannot be opened ({e})") from None
    if not present:
        raise CheckpointError(f"{directory}: file {name!r} named in {CONFIG_NAME} is missing")
    if expected_sha256 is not None:
        try:
            got = sha256_file(path)
        except OSError as e:
            raise CheckpointError(f"{path}: cannot be read ({e})") from None
        if got != expected_sha256:
            raise CheckpointError(
                f"{path}: content hash {got[:12]}… does not match {CONFIG_NAME} ({expected_sha256[:12]}…): "
                "the file is corrupt or truncated"
            )
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None


def write_checkpoint(directory: Path, config: dict, files: Mapping[str, Mapping[str, torch.Tensor]]) -> Path:
    """Write ``files`` (name → tensors) then ``config.json`` with their hashes, atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for name, tensors in files.items():
        safe_member(directory, name)
        hashes[name] = atomic_save_tensors(tensors, directory / name)
    cfg = dict(config)
    cfg["format"] = FORMAT_VERSION
    cfg["files"] = hashes
    cfg = json.loads(json.dumps(cfg))  # what a reader will see (tuples → lists)
    cfg["content_sha256"] = content_hash(cfg)
    atomic_write_json(cfg, directory / CONFIG_NAME)
    return directory
