"""What a run folder holds, who is using it, and how a run stops: the safety of ``ptlearn train``.

- :func:`run_identity` records what defines a run (model and its config, data and a fingerprint of
  it, the tokenizer's fingerprint, the ``--from`` source, preset, seed); the checkpoint stores it
  (``meta.json["run"]``) and :func:`identity_difference` says, in one line, how another run
  differs, so a run folder is never resumed by a different experiment.
- :func:`foreign_files` finds files in a folder that ptlearn would overwrite but did not write.
- :class:`FolderLock` is an advisory lock: one process at a time per run folder.
- :class:`StopGuard` (a Trainer callback) stops the run after the step that is running once the
  Ctrl-C guard (:class:`~ptlearn.checkpoint.StepBoundaryInterrupt`, the Trainer's own) caught a
  Ctrl-C, and writes a checkpoint every ``seconds`` of training (a kill loses at most that).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from .checkpoint import (
    CHECKPOINT_DIR,
    META_FILE,
    WEIGHTS_FILE,
    StepBoundaryInterrupt,
    to_jsonable,
    write_error,
)
from .data.sources import file_sha256
from .training.callbacks import Callback

LOCK_FILE = ".ptlearn.lock"
RUN_FILES = ("tokenizer.json", "recipe.json")  # what `ptlearn train` writes beside checkpoint/
DEFAULT_CHECKPOINT_SECONDS = 60.0


class RunFolderError(Exception):
    """A run folder cannot be used as asked (another run's checkpoint, a lock, foreign files)."""


class RunInterrupted(Exception):
    """Raised at a step boundary after Ctrl-C (SIGINT), so the run can save and stop cleanly."""


# --- identity ----------------------------------------------------------------------------------


def tokenizer_fingerprint(tokenizer) -> str | None:
    """sha256 of what the tokenizer saves (its vocabulary and rules); None without one."""
    if tokenizer is None:
        return None
    if hasattr(tokenizer, "tokenizer") and hasattr(tokenizer.tokenizer, "to_str"):
        text = json.dumps(json.loads(tokenizer.tokenizer.to_str()), sort_keys=True)  # canonical
    elif hasattr(tokenizer, "tokens"):
        text = json.dumps([tokenizer.tokens, getattr(tokenizer, "special_tokens", [])])
    else:
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def data_fingerprint(data: str | None) -> str | None:
    """sha256 of a real corpus's files; ``"generated"`` for the synthetic, seeded ones."""
    from .data.sources import _SOURCES, dataset_dir

    if data not in _SOURCES:
        return "generated" if data else None
    folder = dataset_dir(data)
    digest = hashlib.sha256()
    for name in _SOURCES[data].files:
        digest.update(file_sha256(folder / name).encode())
    return digest.hexdigest()


def source_fingerprint(from_dir) -> dict | None:
    """Where a fine-tune starts: the resolved ``--from`` folder and a hash of its weights."""
    if not from_dir:
        return None
    folder = Path(from_dir).resolve()
    weights = folder / CHECKPOINT_DIR / WEIGHTS_FILE
    return {
        "path": str(folder),
        "weights_sha256": file_sha256(weights) if weights.is_file() else None,
    }


def run_identity(info: dict, model_config, tokenizer=None, seed: int = 0) -> dict:
    """What defines a run: resuming it with any of this different would train something else."""
    return {
        "model": info.get("model"),
        "data": info.get("data"),
        "data_sha256": data_fingerprint(info.get("data")),
        "preset": info.get("preset"),
        "seed": seed,
        "model_config": to_jsonable(model_config),
        "tokenizer_sha256": tokenizer_fingerprint(tokenizer),
        "from": source_fingerprint(info.get("from_dir")),
    }


_WHAT = {
    "model": "model",
    "data": "data",
    "data_sha256": "data (the corpus file changed)",
    "preset": "preset",
    "seed": "seed",
    "model_config": "model config",
    "tokenizer_sha256": "tokenizer (another vocabulary)",
    "from": "--from source",
}


def _short(value) -> str:
    if isinstance(value, dict) and "path" in value:
        return str(value["path"])
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def recorded_identity(out: Path) -> dict | None:
    """What the run in ``out`` recorded: ``meta.json["run"]``, else the older ``recipe.json``."""
    meta_file = out / CHECKPOINT_DIR / META_FILE
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict) and isinstance(meta.get("run"), dict):
        return meta["run"]
    try:  # a folder written before run identities: recipe.json names model, data, preset, from
        info = json.loads((out / "recipe.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    from_dir = info.get("from_dir")
    return {
        "model": info.get("model"),
        "data": info.get("data"),
        "preset": info.get("preset"),
        "from": {"path": str(Path(from_dir).resolve())} if from_dir else None,
    }


def identity_difference(recorded: dict | None, current: dict) -> str | None:
    """One phrase naming what differs (``None`` when every recorded field matches)."""
    if not recorded:
        return None
    diffs = []
    for key, what in _WHAT.items():
        if key not in recorded:
            continue
        old, new = recorded[key], current.get(key)
        if key == "from" and old and new:
            same = old.get("path") == new.get("path") and (
                "weights_sha256" not in old
                or old.get("weights_sha256") == new.get("weights_sha256")
            )
            if same:
                continue
            if old.get("path") == new.get("path"):
                diffs.append("--from source (its weights changed since)")
                continue
        elif old == new:
            continue
        diffs.append(f"{what} {_short(old)} (now {_short(new)})")
    return "; ".join(diffs) or None


def saved_tokenizer(out: Path, data: str | None):
    """The tokenizer a resumable run in ``out`` trained with (its ``tokenizer.json``), when the
    checkpoint is of the same ``data``; else None. A resumed run must read text with it: a
    WordPiece vocabulary trained again can give the same pieces other ids."""
    from .tokenization import load_tokenizer

    file = out / "tokenizer.json"
    recorded = recorded_identity(out)
    if not ((out / CHECKPOINT_DIR).is_dir() and file.is_file() and recorded):
        return None
    if recorded.get("data") != data:
        return None  # another corpus: the identity check refuses it
    tokenizer = load_tokenizer(file)
    wanted = recorded.get("tokenizer_sha256")
    return tokenizer if wanted is None or tokenizer_fingerprint(tokenizer) == wanted else None


# --- foreign files -----------------------------------------------------------------------------


def foreign_files(out: Path) -> list[Path]:
    """Files ptlearn would overwrite in ``out`` though no ptlearn run wrote them there (a folder
    with neither ``checkpoint/`` nor ``recipe.json`` is not a run folder)."""
    if (out / CHECKPOINT_DIR).exists() or (out / "recipe.json").is_file():
        return []
    return [out / name for name in RUN_FILES if (out / name).exists()]


# --- one process per folder ---------------------------------------------------------------------


class FolderLock:
    """An advisory lock on ``folder/.ptlearn.lock`` (``fcntl.flock``; POSIX only, a no-op
    elsewhere), held until :meth:`release` or the process ends: the kernel drops it even after
    SIGKILL, so a crashed run never leaves a stale lock."""

    def __init__(self, folder: Path):
        self.folder, self.fd = Path(folder), None

    def acquire(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here
            return self
        file = self.folder / LOCK_FILE
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise write_error(err, file, "create the lock file") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunFolderError(
                f"{self.folder} is in use by another ptlearn run (pid {other}): wait for it to "
                f"finish, or choose another --out."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# --- stopping cleanly -------------------------------------------------------------------------


def checkpoint_seconds() -> float:
    """Seconds of training between time-based checkpoints (``$PTLEARN_CHECKPOINT_SECONDS``)."""
    value = os.environ.get("PTLEARN_CHECKPOINT_SECONDS")
    try:
        return float(value) if value else DEFAULT_CHECKPOINT_SECONDS
    except ValueError:
        return DEFAULT_CHECKPOINT_SECONDS


class StopGuard(Callback):
    """A Trainer callback for ``ptlearn train``: a checkpoint every ``seconds`` of training (None:
    none), and a clean stop once ``ctrl_c`` (ptlearn's one Ctrl-C guard, entered around ``fit()``)
    has caught a Ctrl-C: at the end of the running step :class:`RunInterrupted` is raised, for the
    command to save and say how to continue; a second Ctrl-C interrupts at once."""

    def __init__(self, seconds: float | None, ctrl_c: StepBoundaryInterrupt):
        self.seconds, self.ctrl_c = seconds, ctrl_c
        self._last = time.monotonic()

    def on_train_begin(self, trainer) -> None:
        self._last = time.monotonic()

    def on_step_end(self, trainer, step: int, logs: dict) -> None:
        if self.ctrl_c.interrupted:
            raise RunInterrupted(f"interrupted at step {step}")
        if self.seconds is not None and time.monotonic() - self._last >= self.seconds:
            trainer.save_checkpoint()
            self._last = time.monotonic()
