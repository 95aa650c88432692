"""Real text corpora: Tiny Shakespeare (language modelling), SST-2 and AG News (classification).

Every loader finds its files through :func:`ptlearn.data.sources.dataset_dir` (data directory,
cache, download) and splits deterministically, so every notebook and test sees the same rows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .sources import dataset_dir
from .sst2 import read_split

__all__ = [
    "AG_NEWS_CLASSES",
    "SST2_CLASSES",
    "LabeledTexts",
    "load_ag_news",
    "load_sst2",
    "load_tinyshakespeare",
    "read_ag_news_csv",
    "read_sst2_tsv",
    "train_val_split",
]

SST2_CLASSES = ["negative", "positive"]
AG_NEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
SPLIT_SEED = 0  # fixed: the held-out rows must be the same everywhere
SST2_VALIDATION_SIZE = 872  # as many rows as the official dev set
AG_NEWS_SPLIT_PER_CLASS = {"validation": 200, "test": 200}  # the rest (1,500 a class) is train


@dataclass
class LabeledTexts:
    """A text-classification split: ``texts[i]`` has label ``labels[i]`` (an index into ``classes``).

    ``data[i]`` is the pair ``(text, label)``; ``len(data)`` is the number of examples.
    """

    texts: list[str]
    labels: list[int]
    classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.texts[i], self.labels[i]


MIN_CORPUS_CHARS = 1_000  # fewer characters cannot fill a train and a validation split


def read_text_file(path: Path) -> str:
    """A text file as UTF-8, with a byte-order mark (Windows editors, Excel) removed; any other
    encoding is a ValueError that names the file and says how to convert it."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path} is not UTF-8 text (byte {data[err.start]:#04x} on line {line}): save it "
            f"again as UTF-8 (e.g. `iconv -f latin1 -t utf-8`, or 'UTF-8' in your editor's Save "
            f"As)."
        ) from None


def _text_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (BOM removed, universal newlines)."""
    return read_text_file(path).splitlines()


def load_tinyshakespeare() -> str:
    """The Tiny Shakespeare corpus (Karpathy's char-rnn), one 1.1 MB string."""
    path = dataset_dir("tinyshakespeare") / "input.txt"
    text = read_text_file(path)
    if len(text) < MIN_CORPUS_CHARS:
        raise ValueError(
            f"{path} holds only {len(text)} characters; a corpus needs at least "
            f"{MIN_CORPUS_CHARS:,} (delete the file to download it again)."
        )
    return text


def train_val_split(data, val_fraction: float = 0.1):
    """Split a corpus (str, list or tensor) the nanoGPT way: first 90% train, last 10% validation.

    A contiguous split (not a shuffle) keeps validation text unseen: shuffled windows of one
    text would overlap the training windows.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    n = int(len(data) * (1.0 - val_fraction))
    return data[:n], data[n:]


def _malformed(path: Path, bad_lines: list[int], expected: str) -> ValueError:
    shown = ", ".join(map(str, bad_lines[:10])) + (" ..." if len(bad_lines) > 10 else "")
    return ValueError(
        f"{path}: {len(bad_lines)} malformed row(s) at line(s) {shown}; expected {expected}. "
        "Fix or re-download the file (delete it and run again)."
    )


def read_sst2_tsv(path: Path) -> tuple[list[str], list[int]]:
    """Read an SST-2 TSV: a header naming a ``label`` column and a text column, then rows of
    label (0 or 1) and sentence separated by one tab. Either column order is accepted."""
    texts, labels, bad = [], [], []
    lines = _text_lines(path)  # BOM removed; CRLF files read the same
    if not lines:
        raise ValueError(
            f"{path} is empty; expected a header line 'label<TAB>sentence', then rows."
        )
    header = [h.strip() for h in lines[0].split("\t")]
    if len(header) != 2 or "label" not in header:
        raise _malformed(path, [1], "a header line 'label<TAB>sentence'")
    label_col = header.index("label")
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or fields[label_col].strip() not in ("0", "1"):
            bad.append(line_no)
            continue
        labels.append(int(fields[label_col]))
        texts.append(fields[1 - label_col].strip())
    if bad:
        raise _malformed(path, bad, "label<TAB>sentence with label 0 or 1")
    if not texts:
        raise ValueError(
            f"{path} holds only its header, no rows: delete it and run again to download it, or "
            f"fill it with label<TAB>sentence rows."
        )
    return texts, labels


def read_ag_news_csv(path: Path) -> tuple[list[str], list[int]]:
    """Read an AG News CSV (``label,title,description``, labels 1-4, optional header) into
    texts ``title + " " + description`` and labels 0-3. The corpus writes line breaks as a
    backslash; they become spaces."""
    texts, labels, bad = [], [], []
    reader = csv.reader(io.StringIO(read_text_file(path), newline=""))
    for row in reader:
        if reader.line_num == 1 and row and row[0].strip() == "label":
            continue
        if not row:
            continue
        if len(row) != 3 or row[0].strip() not in ("1", "2", "3", "4"):
            bad.append(reader.line_num)
            continue
        labels.append(int(row[0]) - 1)
        texts.append(" ".join(f"{row[1]} {row[2]}".replace("\\", " ").split()))
    if bad:
        raise _malformed(path, bad, "label,title,description with label 1-4")
    if not texts:
        raise ValueError(
            f"{path} holds no rows: delete it and run again to download it, or fill it with "
            f"label,title,description rows."
        )
    return texts, labels


def _check_split(split: str) -> None:
    if split not in ("train", "validation", "test"):
        raise ValueError(f"split must be 'train', 'validation' or 'test', got {split!r}.")


def _seeded_permutation(n: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()


def load_sst2(split: str = "train") -> LabeledTexts:
    """Stanford Sentiment Treebank (GLUE SST-2): movie-review phrases, 0 = negative, 1 = positive.

    GLUE hides the labels of its test set, so ptlearn makes its own three splits:

    - ``"test"``: the official dev set (``dev.tsv``, 872 sentences) — what papers report;
    - ``"validation"``: 872 whole sentences held out of ``train.tsv`` by a fixed seed;
    - ``"train"``: the rows of ``train.tsv`` (phrases and sentences, about 60,800, in file order)
      that share no phrase of 4 or more words with a validation or test sentence
      (:func:`ptlearn.data.sst2.leak_free_split` says why and how).
    """
    _check_split(split)
    folder = dataset_dir("sst2")
    if split == "test":
        texts, labels = read_sst2_tsv(folder / "dev.tsv")
        return LabeledTexts(texts, labels, list(SST2_CLASSES))
    texts, labels, train_rows, validation_rows = read_split(folder, read_sst2_tsv)  # no leak: .sst2
    keep = validation_rows if split == "validation" else train_rows
    return LabeledTexts([texts[i] for i in keep], [labels[i] for i in keep], list(SST2_CLASSES))


def load_ag_news(split: str = "train") -> LabeledTexts:
    """AG News topic classification: 4 classes, :data:`AG_NEWS_CLASSES` (labels 0-3).

    Only the official test split (7,600 articles, 1,900 a class) ships in the data directory, so
    it is split by class with a fixed seed: 6,000 train / 800 validation / 800 test, each split
    balanced (1,500 / 200 / 200 a class) and kept in file order. Text is title + " " + description.
    """
    _check_split(split)
    texts, labels = read_ag_news_csv(dataset_dir("ag_news") / "test.csv")
    keep = []
    for c in range(len(AG_NEWS_CLASSES)):
        rows = [i for i, y in enumerate(labels) if y == c]
        order = [rows[j] for j in _seeded_permutation(len(rows))]
        n_test, n_val = AG_NEWS_SPLIT_PER_CLASS["test"], AG_NEWS_SPLIT_PER_CLASS["validation"]
        parts = {
            "test": order[:n_test],
            "validation": order[n_test : n_test + n_val],
            "train": order[n_test + n_val :],
        }
        keep += parts[split]
    keep.sort()
    return LabeledTexts([texts[i] for i in keep], [labels[i] for i in keep], list(AG_NEWS_CLASSES))
