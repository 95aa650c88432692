"""Where real corpora come from: a data directory, the user cache, or a one-time download.

A dataset ``NAME`` (``tinyshakespeare``, ``sst2``, ``ag_news``) is a folder of files. It resolves in
this order:

1. ``$PTLEARN_DATA_DIR/NAME`` — a folder you prepared (CI and the tests point it at ``shared/data``);
2. ``~/.cache/ptlearn/NAME`` — the user cache (move it with ``$PTLEARN_CACHE_DIR``);
3. a download into that cache: the raw file for Tiny Shakespeare, HF ``datasets`` for SST-2 and
   AG News, written out in the same layout as a data directory;
4. otherwise one :class:`DataNotFoundError` that says what to do.

Layout of a data directory::

    tinyshakespeare/input.txt        char-level LM corpus (1.1 MB)
    sst2/train.tsv, sst2/dev.tsv     GLUE SST-2: a header line, then label<TAB>sentence
    ag_news/test.csv                 AG News test split: label,title,description (labels 1-4)

Downloads are atomic: files are written into a temporary folder inside the cache, checked against
a known sha256 where there is one, and only then moved into place with ``os.replace``. A failed or
interrupted download leaves nothing behind, so a half-written file is never mistaken for data.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DataNotFoundError",
    "TINYSHAKESPEARE_SHA256",
    "TINYSHAKESPEARE_URL",
    "dataset_dir",
    "fetch_url",
    "get_cache_dir",
]

TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

LAYOUT = """\
  tinyshakespeare/input.txt
  sst2/train.tsv, sst2/dev.tsv
  ag_news/test.csv"""


class DataNotFoundError(FileNotFoundError):
    """A real corpus is in none of the places ptlearn looks and could not be downloaded."""


def get_cache_dir() -> Path:
    """The download cache: ``$PTLEARN_CACHE_DIR`` if set, else ``~/.cache/ptlearn``."""
    env = os.environ.get("PTLEARN_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ptlearn"


def fetch_url(url: str, dest_path: Path) -> None:
    """Download ``url`` into ``dest_path`` (tests replace this function to stay offline)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest_path, "wb") as f:
        shutil.copyfileobj(response, f)


def _download_hf_dataset(path: str, config: str | None, split: str) -> list[dict]:
    """Rows of one split of a HF hub dataset, as dicts (tests replace this function)."""
    try:
        import datasets  # lazy: a heavy import that only downloads need
    except ImportError as err:
        raise ImportError(
            "Downloading this corpus needs HF `datasets`: pip install datasets"
        ) from err
    return list(datasets.load_dataset(path, config, split=split))


def _write_tinyshakespeare(folder: Path) -> None:
    fetch_url(TINYSHAKESPEARE_URL, folder / "input.txt")


def _write_sst2(folder: Path) -> None:
    # headers as in the reference data directory (GLUE's own TSVs have sentence<TAB>label)
    for split, filename, header in [
        ("train", "train.tsv", "label\tsentence"),
        ("validation", "dev.tsv", "label\tcontent"),
    ]:
        rows = _download_hf_dataset("nyu-mll/glue", "sst2", split)
        with open(folder / filename, "w", encoding="utf-8", newline="\n") as f:
            f.write(header + "\n")
            for row in rows:
                sentence = " ".join(row["sentence"].split())  # no tabs/newlines inside a row
                f.write(f"{row['label']}\t{sentence}\n")


def _write_ag_news(folder: Path) -> None:
    # HF's AG News already joins title and description into "text": keep it as the description.
    rows = _download_hf_dataset("fancyzhx/ag_news", None, "test")
    with open(folder / "test.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["label", "title", "description"])
        for row in rows:
            writer.writerow([row["label"] + 1, "", row["text"]])  # labels 0-3 -> 1-4


@dataclass(frozen=True)
class _Source:
    files: tuple[str, ...]
    write: Callable[[Path], None]  # writes every file of the dataset into a folder
    sha256: dict[str, str]  # file name -> known checksum


_SOURCES = {
    "tinyshakespeare": _Source(
        ("input.txt",), _write_tinyshakespeare, {"input.txt": TINYSHAKESPEARE_SHA256}
    ),
    "sst2": _Source(("train.tsv", "dev.tsv"), _write_sst2, {}),
    "ag_news": _Source(("test.csv",), _write_ag_news, {}),
}


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB chunks (a corpus never has to fit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(name: str, source: _Source, target: Path) -> None:
    """Write the dataset into a temporary folder beside ``target``, verify, then move it in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", suffix=".part", dir=target.parent))
    try:
        source.write(tmp)  # calls fetch_url / _download_hf_dataset, looked up at call time
        for filename, expected in source.sha256.items():
            actual = file_sha256(tmp / filename)
            if actual != expected:
                raise ValueError(
                    f"checksum mismatch for {name}/{filename}: sha256 {actual}, expected "
                    f"{expected}. The download was corrupted or the file changed upstream; "
                    "nothing was saved."
                )
        target.mkdir(exist_ok=True)
        for filename in source.files:
            os.replace(tmp / filename, target / filename)  # atomic on one filesystem
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _not_found_message(name: str, files: tuple[str, ...], looked: list[str], cause) -> str:
    places = "\n".join(f"  - {place}" for place in looked)
    reason = (str(cause).strip().splitlines() or [""])[0]  # its first line: HF errors run long
    return (
        f"Could not find the '{name}' data ({', '.join(files)}). Looked in:\n{places}\n"
        f"and the download failed: {type(cause).__name__}: {reason}\n"
        "To fix it, either connect to the internet and run again (the data is downloaded once "
        f"into {get_cache_dir()}), or set the environment variable PTLEARN_DATA_DIR to a folder "
        f"with this layout:\n{LAYOUT}"
    )


def dataset_dir(name: str) -> Path:
    """The folder holding dataset ``name``, downloading it into the cache if it is nowhere else.

    Raises :class:`DataNotFoundError` when it is not found and cannot be downloaded: one
    exception whose message names the cause, without the download's own traceback chained to it
    (a notebook shows the learner one error; the cause stays in ``__context__``).
    """
    if name not in _SOURCES:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(_SOURCES)}.")
    source = _SOURCES[name]
    env = os.environ.get("PTLEARN_DATA_DIR")
    folders = [Path(env).expanduser() / name] if env else []
    cached = get_cache_dir() / name
    looked = [f"$PTLEARN_DATA_DIR/{name} = {folders[0]}" if env else "$PTLEARN_DATA_DIR (not set)"]
    looked.append(f"the cache {cached}")
    for folder in [*folders, cached]:
        if all((folder / f).is_file() for f in source.files):
            return folder
    try:
        _download(name, source, cached)
    except Exception as err:
        raise DataNotFoundError(_not_found_message(name, source.files, looked, err)) from None
    return cached
