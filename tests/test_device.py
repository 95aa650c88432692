"""Device selection: auto-detection, clear errors for missing accelerators, config scaling."""

from types import SimpleNamespace

import pytest
import torch

from ptlearn import device as device_mod
from ptlearn.device import (
    autocast_dtype,
    describe_device,
    get_device,
    needs_grad_scaler,
    scale_for_device,
)


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


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        ((7, 5), torch.float16),
        ((7, 0), torch.float16),
        ((6, 0), torch.float16),
        ((8, 0), torch.bfloat16),
        ((9, 0), torch.bfloat16),
    ],
)
def test_autocast_dtype_follows_native_bf16_not_emulation(monkeypatch, capability, expected):
    # A T4 (7.5) says is_bf16_supported() is True through emulation: fp16 + GradScaler is faster.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert autocast_dtype("cuda") == expected
    assert needs_grad_scaler(autocast_dtype("cuda")) == (expected == torch.float16)


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_autocast_dtype_is_fp32_on_cpu_and_mps_unless_asked(device):
    assert autocast_dtype(device) is None
    assert autocast_dtype(device, "bf16") == torch.bfloat16
    assert autocast_dtype(device, "off") is None
    with pytest.raises(ValueError, match="Unknown AMP mode 'half'"):
        autocast_dtype(device, "half")


def test_trainconfig_accepts_every_device_get_device_returns():
    from ptlearn.training import TrainConfig

    for device in (
        "auto",
        "cpu",
        "cuda",
        "cuda:1",
        "mps",
        torch.device("cpu"),
        torch.device("mps"),
    ):
        assert TrainConfig(max_steps=1, device=device).device == str(device)
