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

Why this module is longer than 350 lines: it is the one home of everything that must not lose a
learner's work (atomic writes with the user's umask, the two-rename swap and its recovery, the
consistent read of a live folder, the Ctrl-C guard, the refusal of pickles): keeping these in one
file keeps their invariants in one place.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import shutil
import signal
import tempfile
import uuid
from glob import escape
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_dumps

from .validation import state_dict_mismatch

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
META_FILE = "meta.json"
CHECKPOINT_DIR = "checkpoint"
RUN_IDENTITY: dict[Path, dict] = {}  # checkpoint path -> what defines the run (ptlearn.runs)


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


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _usual_mode(path: Path, directory: bool = False) -> None:
    """Give a temporary file (0600) or folder (0700) the mode a plain ``open``/``mkdir`` would:
    0666/0777 minus the umask, so a class folder shared by an instructor stays readable."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


class WriteError(OSError):
    """Writing a file or a checkpoint failed (disk full, permission, a file in the way); the
    message names the path, and nothing half-written is left behind."""


def write_error(err: OSError, path, what: str = "write") -> WriteError:
    """A one-line :class:`WriteError` naming ``path`` and the usual fix for ``err``."""
    import errno

    hints = {
        errno.ENOSPC: "the disk is full: free some space or choose a folder on another disk",
        errno.EDQUOT: "the disk quota is exceeded: free some space or choose another folder",
        errno.EACCES: "permission denied: choose a folder you can write to",
        errno.EPERM: "permission denied: choose a folder you can write to",
        errno.EROFS: "the file system is read-only: choose a folder you can write to",
        errno.ENOTDIR: "a file is in the way where a folder is needed: choose another path",
        errno.EEXIST: "a file is in the way where a folder is needed: choose another path",
        errno.EISDIR: "a folder is in the way where a file is needed: choose another path",
    }
    hint = hints.get(err.errno, err.strerror or str(err))
    new = WriteError(err.errno, f"Cannot {what} {path}: {hint}.")
    new.filename = str(path)
    return new


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The file gets the usual mode (0666 minus the umask), not the 0600 of a temporary file; an
    OSError (disk full, permission) removes the temporary file and is raised as a
    :class:`WriteError` that names ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        _usual_mode(Path(tmp))
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, WriteError):
            raise
        raise write_error(err, path) from err
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


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
    problems = state_dict_mismatch(model.state_dict(), state)  # the diff HF loading uses too
    if not problems:
        return
    lines = [f"The weights in {file} do not fit {type(model).__name__}:", *problems]
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


def to_jsonable(config) -> dict | None:
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
    run_identity: dict | None = None,
) -> Path:
    """Write a complete checkpoint directory at ``path``, replacing any previous one atomically.

    ``trainer_state`` must hold only tensors and plain containers (it is read back with
    ``weights_only=True``); ``config`` (a dataclass or dict, e.g. the TrainConfig) goes into
    meta.json beside the model's own ``model.config``. ``run_identity`` (what defines the run:
    data, tokenizer fingerprint, ``--from`` source, preset, seed; see :mod:`ptlearn.runs`) is
    stored as ``meta["run"]``; without it, one registered for ``path`` in :data:`RUN_IDENTITY`
    is used (how ``ptlearn train`` records it for the Trainer's checkpoints).

    A failure (disk full, permission) removes the half-written folder, keeps the previous
    checkpoint, and raises a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    model = unwrap_model(model)
    meta = {
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "model_config": to_jsonable(getattr(model, "config", None)),
        "train_config": to_jsonable(config),
        "step": (trainer_state or {}).get("step"),
    }
    run = to_jsonable(
        run_identity if run_identity is not None else RUN_IDENTITY.get(path.resolve())
    )
    if run is not None:
        meta["run"] = run
    weights = _weights_bytes(model)  # before touching the disk: refuses NaN weights
    state = _state_bytes(trainer_state) if trainer_state is not None else None
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_checkpoint(path)
        _remove_leftovers(path)
        tmp = Path(tempfile.mkdtemp(prefix=f"{path.name}.tmp-", dir=path.parent))
        _usual_mode(tmp, directory=True)
        atomic_write_bytes(tmp / WEIGHTS_FILE, weights)
        if state is not None:
            atomic_write_bytes(tmp / STATE_FILE, state)
        atomic_write_bytes(tmp / META_FILE, json.dumps(meta, indent=2).encode())  # last: complete
    except OSError as err:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)  # no half-written checkpoint folder stays
        raise write_error(err, path, "write the checkpoint") from err
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    # tmp is complete from here on: an interruption of the swap leaves it for recover_checkpoint
    try:
        _swap_in(tmp, path)
    except OSError as err:
        recover_checkpoint(path)
        raise write_error(err, path, "write the checkpoint") from err
    return path


def _swap_in(tmp: Path, path: Path) -> None:
    """Replace directory ``path`` by the complete directory ``tmp``; keep the old one until done.

    A reader that finds no ``path`` between the two renames puts the newest complete checkpoint
    in place (:func:`recover_checkpoint`): ``tmp`` itself, and then the swap is done; or an old
    one, and then the rename fails and the writer moves it aside again."""
    olds = []
    for _ in range(100):
        if path.exists():
            olds.append(path.with_name(f"{path.name}.old-{uuid.uuid4().hex[:8]}"))
            os.replace(path, olds[-1])
        try:
            os.replace(tmp, path)
            break
        except OSError:
            if path.exists() and not tmp.exists():
                break  # a reader recovered tmp into place: the new checkpoint is there
            if not path.exists():
                raise
    else:
        raise OSError(f"Could not put the new checkpoint in place at {path}")
    _fsync_dir(path.parent)
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)


def _siblings(path: Path) -> list[Path]:
    name = escape(path.name)
    return [*path.parent.glob(f"{name}.tmp-*"), *path.parent.glob(f"{name}.old-*")]


def _step_of(folder: Path) -> int:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        return int(meta.get("step") or 0) if isinstance(meta, dict) else 0
    except (OSError, ValueError, TypeError):
        return -1  # unreadable: ranked last


def recover_checkpoint(path: str | os.PathLike) -> bool:
    """After a crash between the two renames of :func:`_swap_in` (no ``path``, but a complete
    ``path.old-*`` or ``path.tmp-*`` beside it), put the newest complete one back.

    Call it before deciding whether there is a checkpoint to resume. Returns True when it moved
    one into place. A folder it cannot write leaves things as they are (readers then see none).
    """
    path = Path(path)
    if path.exists():
        return False

    def rank(d: Path):
        return _step_of(d), ".tmp-" in d.name  # the new checkpoint (tmp) wins a tie with the old

    complete = [d for d in _siblings(path) if (d / META_FILE).is_file()]
    if not complete:
        return False
    try:
        os.replace(max(complete, key=rank), path)
        _fsync_dir(path.parent)
    except OSError:
        return path.exists()  # another process recovered it first, or a read-only folder
    return True


_recover = recover_checkpoint  # the old private name


def _remove_leftovers(path: Path) -> None:
    for d in _siblings(path):
        shutil.rmtree(d, ignore_errors=True)


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """``path`` itself if it is a checkpoint directory, else ``path/checkpoint`` (an out_dir)."""
    path = Path(path)
    if not (path / META_FILE).exists():
        inner = path / CHECKPOINT_DIR
        _recover(inner)
        if inner.is_dir() or _siblings(inner):  # an out_dir; its checkpoint may be mid-swap
            path = inner
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
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON ({err}); the checkpoint is damaged.") from err
    if not isinstance(meta, dict):
        raise ValueError(
            f"{file} holds a JSON {type(meta).__name__}, not an object with format_version, "
            f"model_class and model_config; the checkpoint is damaged or not ptlearn's."
        )
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
    into it, without one the dict also holds ``"state_dict"``. Reading a live run's folder is
    safe: when a new checkpoint is swapped in while the files are read, they are read again, so
    meta, weights and state always come from one checkpoint.
    """
    source = path
    for attempt in range(READ_ATTEMPTS):
        path = resolve_checkpoint_dir(source)
        before = _identity(path)
        try:
            result = {"meta": read_meta(path)}
            if model is not None:
                load_model_weights(model, path)
            else:
                result["state_dict"] = _read_weights(path / WEIGHTS_FILE)
            result["trainer_state"] = _read_trainer_state(path / STATE_FILE, map_location)
        except (OSError, ValueError):
            swapping = before is None or _identity(path) != before  # gone or replaced meanwhile
            if attempt + 1 == READ_ATTEMPTS or not swapping:
                raise  # really missing or damaged, not swapped while reading
            continue
        if _identity(path) == before:  # no new checkpoint was swapped in while reading
            return result
    raise RuntimeError(f"{source} kept changing while it was read; try again.")


READ_ATTEMPTS = 20


def _identity(path: Path):
    """Which directory ``path`` is now: a swap puts another one (another inode) there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


# --- stopping cleanly on Ctrl-C ------------------------------------------------------------


class StepBoundaryInterrupt:
    """ptlearn's one Ctrl-C guard, a context manager around a training loop: the first Ctrl-C
    (SIGINT, also a notebook's interrupt button) only sets :attr:`interrupted`, so the loop can
    finish its step, save a checkpoint and stop cleanly; a second Ctrl-C raises KeyboardInterrupt
    at once. ``say`` (optional) tells the user so when the first one arrives.

    The Trainer's loop enters one; ``ptlearn train`` enters one around ``fit()`` (with ``say``)
    and stops at the step's end through :class:`ptlearn.runs.StopGuard`. A guard takes Ctrl-C
    only from Python's own handler, so the Trainer's inner one then stays out of the way: the
    caller's stays in charge. Inactive (Ctrl-C unchanged) off the main thread, or with
    ``enabled=False`` (DDP ranks, which must all stop alike).
    """

    def __init__(self, enabled: bool = True, say=None):
        self.enabled, self.say = enabled, say
        self.interrupted, self._previous = False, None

    def _on_sigint(self, signum, frame) -> None:
        self.interrupted = True
        signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
        if self.say is not None:
            self.say("stopping after this step (press Ctrl-C again to abort at once)")

    def __enter__(self) -> StepBoundaryInterrupt:
        if self.enabled and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            try:
                self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            except ValueError:  # not the main thread
                self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            try:
                signal.signal(signal.SIGINT, self._previous)
            except ValueError:
                pass
            self._previous = None


def interrupted_message(step: int, checkpoint, how: str) -> str:
    """The one line after a clean Ctrl-C stop."""
    saved = f"checkpoint saved in {checkpoint}" if checkpoint else "no checkpoint (no out_dir)"
    return f"interrupted at step {step}; {saved}. {how}"
