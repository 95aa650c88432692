"""Device selection: auto-detection, clear errors for missing accelerators, config scaling."""

from types import SimpleNamespace

import pytest
import torch

from ptlearn import device as device_mod
from ptlearn.device import describe_device, get_device, scale_for_device


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)


def test_cpu_and_auto():
    assert get_device("cpu") == torch.device("cpu")
    expected = (
        "cuda" if torch.cuda.is_available() else "mps" if device_mod._mps_available() else "cpu"
    )
    assert get_device().type == expected
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_falls_back_to_cpu(no_accelerator):
    assert get_device("auto") == torch.device("cpu")


def test_auto_prefers_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("auto") == torch.device("cuda")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps"])
def test_missing_accelerator_is_a_clear_error(no_accelerator, name):
    with pytest.raises(ValueError, match=f"'{name}' was asked for.*Use 'auto' or 'cpu'"):
        get_device(name)


def test_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert get_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="only 1 CUDA GPU"):
        get_device("cuda:1")


def test_unknown_device_name():
    with pytest.raises(ValueError, match="choose one of auto, cpu, cuda, mps"):
        get_device("gpu")


def test_describe_cpu():
    assert describe_device("cpu") == f"cpu ({torch.get_num_threads()} threads)"


def test_describe_cuda(monkeypatch):
    props = SimpleNamespace(name="NVIDIA Test GPU", total_memory=80 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert describe_device("cuda") == "cuda:0 (NVIDIA Test GPU, 80.0 GiB)"
    assert describe_device(torch.device("cuda", 0)).startswith("cuda:0 (NVIDIA")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_describe_real_cuda():
    text = describe_device(get_device("cuda"))
    assert text.startswith("cuda:0 (") and text.endswith(" GiB)")


def test_scale_for_device():
    cpu, gpu = {"d_model": 64, "steps": 300, "batch_size": 32}, {"d_model": 256, "steps": 3000}
    assert scale_for_device(cpu, gpu, device="cpu") == cpu
    assert scale_for_device(cpu, gpu, device="cuda") == {
        "d_model": 256,
        "steps": 3000,
        "batch_size": 32,
    }
    assert scale_for_device(cpu, gpu, device=torch.device("mps"))["d_model"] == 256
    out = scale_for_device(cpu, gpu, device="cpu")
    out["d_model"] = 1
    assert cpu["d_model"] == 64  # a copy, never the caller's dict


def test_scale_for_device_default(no_accelerator):
    assert scale_for_device({"a": 1}, {"a": 2}) == {"a": 1}
