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
"""
from __future__ import annotations

import hashlib
import json
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
        clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
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
    directory = Path(directory).resolve()
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise CheckpointError(f"{directory}: config names the file {name!r}, which is not a plain file name")
    p = (directory / name).resolve()
    if p.parent != directory:
        raise CheckpointError(f"{directory}: config path {name!r} escapes the checkpoint directory")
    refuse_pickle(p)
    if p.suffix != ".safetensors":
        raise CheckpointError(f"{directory}: config names {name!r}; only .safetensors weight files are read")
    return p


def read_config(directory: Path) -> dict:
    directory = Path(directory)
    refuse_pickle(directory)
    if directory.is_file():
        raise CheckpointError(f"{directory}: a checkpoint is a directory holding {CONFIG_NAME}")
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.exists():
        raise CheckpointError(f"{directory}: no {CONFIG_NAME} (not a polydiff checkpoint)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict) or "format" not in cfg:
        raise CheckpointError(f"{cfg_path}: missing field 'format'")
    if cfg["format"] > FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: format {cfg['format']} is newer than this polydiff reads ({FORMAT_VERSION})")
    return cfg


def load_tensors(directory: Path, name: str, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    """Load one safetensors file named in the config, verifying its hash."""
    path = safe_member(directory, name)
    if not path.exists():
        raise CheckpointError(f"{directory}: file {name!r} named in {CONFIG_NAME} is missing")
    if expected_sha256 is not None:
        got = sha256_file(path)
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
    atomic_write_json(cfg, directory / CONFIG_NAME)
    return directory
