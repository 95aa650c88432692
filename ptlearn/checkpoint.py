"""Checkpoints that survive a crash: safetensors weights, a tensors-only trainer state, a JSON card.

A checkpoint is one directory::

    checkpoint/
      model.safetensors   the weights (safetensors: a flat file of tensors, no code inside)
      trainer_state.pt    optimizer, step, RNG states, data position, history (torch.save)
      meta.json           format_version, model class, model config, step (readable by eye)

Why atomic writes. A run can die at any instant: a laptop lid closes, a Colab session expires,
someone presses Ctrl-C twice, the OOM killer fires. If a checkpoint were written in place, a kill
halfway through would leave half a file and destroy the previous good checkpoint with it. So
every file is written to a temporary name in the same directory, flushed and ``fsync``-ed to disk,
then renamed over the real name with ``os.replace`` — a rename within one file system is atomic:
readers see the old file or the new one, never a mix. The directory is switched the same way: the
new checkpoint is built in ``checkpoint.tmp-XXXX``; only when it is complete is the old directory
moved aside (``checkpoint.old-XXXX``) and the new one renamed into place. A kill between those two
renames leaves two complete checkpoints and no ``checkpoint``; :func:`load_checkpoint` notices and
puts the newest complete one back. ``meta.json`` is written last, so a directory holding it is
complete.

Why ``weights_only=True``. ``torch.load`` unpickles, and a pickle can run any code it names. The
trainer state therefore holds only tensors and plain Python containers, and is read with the
restricted unpickler, so a checkpoint downloaded from a stranger cannot execute anything.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import shutil
import tempfile
import uuid
from glob import escape
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_dumps

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
META_FILE = "meta.json"
CHECKPOINT_DIR = "checkpoint"


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DistributedDataParallel (``.module``) or torch.compile (``._orig_mod``)."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


# --- atomic writes -------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (POSIX; Windows cannot open directories)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


# --- RNG state as plain data (torch.load(weights_only=True) accepts only tensors and containers) ---


def capture_rng_state() -> dict:
    """Python, NumPy and torch (CPU + CUDA) RNG states, as tensors, ints and lists."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- weights -------------------------------------------------------------------------------------


def _weights_bytes(model: torch.nn.Module) -> bytes:
    """safetensors bytes of the state dict; tied tensors are stored once and recorded as aliases.

    safetensors refuses two names for one storage (GPT ties its embedding and output head), so a
    tensor that is the same view of the same storage as an earlier one is saved as an alias.
    """
    tensors, aliases, seen = {}, {}, {}
    for name, t in model.state_dict().items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride())
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().to("cpu", copy=True).contiguous()
    bad = [n for n, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"Refusing to save non-finite (NaN/inf) weights: {bad[:5]}.")
    return safetensors_dumps(tensors, metadata={"aliases": json.dumps(aliases)})


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise FileNotFoundError(f"No weights file {file}: is this a ptlearn checkpoint directory?")
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
            aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    except Exception as err:  # safetensors raises its own error types for every kind of damage
        raise ValueError(
            f"Cannot read {file}: {err}. The file is truncated or not a safetensors file; "
            f"copy it again or retrain (an interrupted copy is the usual cause)."
        ) from err
    for alias, source in aliases.items():
        state[alias] = state[source]
    return state


def _check_shapes(model: torch.nn.Module, state: dict[str, torch.Tensor], file: Path) -> None:
    """Raise a ValueError listing every missing, unexpected or mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"  {k}: model expects {tuple(expected[k].shape)}, file has {tuple(state[k].shape)}"
        for k in expected
        if k in state and expected[k].shape != state[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"The weights in {file} do not fit {type(model).__name__}:"]
    lines += ["shape mismatches:", *mismatched] if mismatched else []
    lines += [f"missing keys: {missing}"] if missing else []
    lines += [f"unexpected keys: {unexpected}"] if unexpected else []
    lines.append("Build the model with the config stored in meta.json (model_config).")
    raise ValueError("\n".join(lines))


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module:
    """Load ``model.safetensors`` (a checkpoint directory or the file itself) into ``model``."""
    path = Path(path)
    file = path if path.suffix == ".safetensors" else resolve_checkpoint_dir(path) / WEIGHTS_FILE
    model = unwrap_model(model)
    state = _read_weights(file)
    _check_shapes(model, state, file)
    model.load_state_dict(state)
    return model


# --- the checkpoint directory --------------------------------------------------------------------


def _to_jsonable(config) -> dict | None:
    if config is None:
        return None
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(config, default=str))


def _state_bytes(trainer_state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(trainer_state, buffer)
    return buffer.getvalue()


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    trainer_state: dict | None = None,
    config=None,
) -> Path:
    """Write a complete checkpoint directory at ``path``, replacing any previous one atomically.

    ``trainer_state`` must hold only tensors and plain containers (it is read back with
    ``weights_only=True``); ``config`` (a dataclass or dict, e.g. the TrainConfig) goes into
    meta.json beside the model's own ``model.config``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    _remove_leftovers(path)
    model = unwrap_model(model)
    meta = {
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "model_config": _to_jsonable(getattr(model, "config", None)),
        "train_config": _to_jsonable(config),
        "step": (trainer_state or {}).get("step"),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f"{path.name}.tmp-", dir=path.parent))
    atomic_write_bytes(tmp / WEIGHTS_FILE, _weights_bytes(model))
    if trainer_state is not None:
        atomic_write_bytes(tmp / STATE_FILE, _state_bytes(trainer_state))
    atomic_write_bytes(tmp / META_FILE, json.dumps(meta, indent=2).encode())  # last: marks complete
    _swap_in(tmp, path)
    return path


def _swap_in(tmp: Path, path: Path) -> None:
    """Replace directory ``path`` by the complete directory ``tmp``; keep the old one until done."""
    old = path.with_name(f"{path.name}.old-{uuid.uuid4().hex[:8]}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def _siblings(path: Path) -> list[Path]:
    name = escape(path.name)
    return [*path.parent.glob(f"{name}.tmp-*"), *path.parent.glob(f"{name}.old-*")]


def _recover(path: Path) -> None:
    """After a crash between the two renames of :func:`_swap_in`, put the newest complete one back."""
    if path.exists():
        return

    def rank(d: Path):
        step = json.loads((d / META_FILE).read_text()).get("step") or 0
        return step, ".tmp-" in d.name  # the new checkpoint (tmp) wins a tie with the old one

    complete = [d for d in _siblings(path) if (d / META_FILE).is_file()]
    if complete:
        os.replace(max(complete, key=rank), path)
        _fsync_dir(path.parent)


def _remove_leftovers(path: Path) -> None:
    for d in _siblings(path):
        shutil.rmtree(d, ignore_errors=True)


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """``path`` itself if it is a checkpoint directory, else ``path/checkpoint`` (an out_dir)."""
    path = Path(path)
    if not (path / META_FILE).exists():
        inner = path / CHECKPOINT_DIR
        _recover(inner)
        path = inner if inner.is_dir() else path
    _recover(path)
    return path


def read_meta(path: str | os.PathLike) -> dict:
    """meta.json of a checkpoint, checked for presence, syntax and format version."""
    file = resolve_checkpoint_dir(path) / META_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"No checkpoint at {file.parent}: {file} does not exist. Train with "
            f"TrainConfig(out_dir=...) to write one, or pass the directory that holds meta.json."
        )
    try:
        meta = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err}); the checkpoint is damaged.") from err
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{file} has format_version={version!r}, but this ptlearn reads versions up to "
            f"{FORMAT_VERSION}. It was written by a newer ptlearn: upgrade with "
            f"`pip install -U ptlearn-course`."
        )
    return meta


def _read_trainer_state(file: Path, map_location) -> dict | None:
    if not file.exists():
        return None
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as err:  # UnpicklingError (refused object), RuntimeError (bad zip), EOFError
        lines = str(err).splitlines() or [type(err).__name__]
        detail = next((line for line in lines if "Unsupported" in line), lines[0])
        raise ValueError(
            f"Cannot load {file} ({detail.strip()}). It is truncated, not written by ptlearn, or "
            f"holds objects other than tensors and plain containers, which are refused for safety "
            f"(unpickling can run code). Load only the weights with load_model_weights(), or delete "
            f"the checkpoint and train again."
        ) from err


def load_checkpoint(
    path: str | os.PathLike, model: torch.nn.Module | None = None, map_location="cpu"
):
    """Read a checkpoint directory (or an out_dir holding ``checkpoint/``).

    Returns ``{"meta": dict, "trainer_state": dict | None}``; with ``model`` the weights are loaded
    into it, without one the dict also holds ``"state_dict"``.
    """
    path = resolve_checkpoint_dir(path)
    result = {"meta": read_meta(path)}
    if model is not None:
        load_model_weights(model, path)
    else:
        result["state_dict"] = _read_weights(path / WEIGHTS_FILE)
    result["trainer_state"] = _read_trainer_state(path / STATE_FILE, map_location)
    return result
