"""Images that are always available offline: scikit-learn's bundled 8x8 handwritten digits.

1,797 grey-scale digits (0-9) of 8x8 pixels: small enough for a Vision Transformer to train on a
laptop CPU in a minute, with 2x2 patches giving a 4x4 grid of 16 patch tokens.
"""

from __future__ import annotations

import torch

__all__ = ["DIGITS_CLASSES", "load_digits"]

DIGITS_CLASSES = [str(d) for d in range(10)]


def load_digits(split: str = "train", test_size: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 digits as ``(pixel_values, labels)``: float ``[N, 1, 8, 8]`` in [0, 1], long ``[N]``.

    The split is stratified by digit with a fixed seed (0): ``test_size`` of the images (20%,
    360 of 1,797) for ``"test"``, the rest (1,437) for ``"train"``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    try:
        from sklearn.datasets import load_digits as sklearn_digits  # lazy: optional dependency
        from sklearn.model_selection import train_test_split
    except ImportError as err:
        raise ImportError("load_digits needs scikit-learn: pip install scikit-learn") from err
    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8]
    labels = torch.tensor(digits.target, dtype=torch.long)  # [N]
    train_idx, test_idx = train_test_split(
        range(len(labels)), test_size=test_size, stratify=digits.target, random_state=0
    )
    idx = torch.tensor(sorted(train_idx if split == "train" else test_idx))
    return images[idx], labels[idx]
