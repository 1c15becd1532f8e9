import pytest

from lectern.device import DeviceCaps, plan, probe
from lectern.errors import ConfigError

GPU = DeviceCaps(cuda_devices=1, cuda_bf16=True, bitsandbytes=True, flash_attn=True, faiss_gpus=1)


def test_cpu_machine_gets_sdpa_fp32_and_cpu_faiss():
    p = plan(DeviceCaps())
    assert (p.device, p.dtype, p.load_in_8bit, p.attn_implementation, p.faiss_gpu) == (
        "cpu",
        "float32",
        False,
        "sdpa",
        False,
    )


def test_cpu_int8_only_on_fp32_cpu():
    assert plan(DeviceCaps(), cpu_int8=True).dynamic_int8
    assert not plan(DeviceCaps(), cpu_int8=False).dynamic_int8
    assert not plan(DeviceCaps(), dtype="bfloat16", cpu_int8=True).dynamic_int8
    assert not plan(GPU, cpu_int8=True).dynamic_int8


def test_cpu_with_native_bf16_prefers_int8_and_else_bf16():
    assert plan(DeviceCaps(cpu_bf16=True), cpu_int8=True).dtype == "float32"
    assert plan(DeviceCaps(cpu_bf16=True), cpu_int8=True).dynamic_int8
    assert plan(DeviceCaps(cpu_bf16=True), cpu_int8=False).dtype == "bfloat16"


def test_gpu_with_everything_takes_int8_flash_attention_and_faiss_gpu():
    p = plan(GPU)
    assert (p.device, p.dtype, p.load_in_8bit, p.attn_implementation, p.faiss_gpu) == (
        "cuda",
        "bfloat16",
        True,
        "flash_attention_2",
        True,
    )


def test_gpu_without_optional_packages_falls_back_to_fp16_sdpa():
    p = plan(DeviceCaps(cuda_devices=1))
    assert (p.dtype, p.load_in_8bit, p.attn_implementation, p.faiss_gpu) == (
        "float16",
        False,
        "sdpa",
        False,
    )


def test_forcing_cpu_on_a_gpu_machine():
    p = plan(GPU, device="cpu")
    assert p.device == "cpu" and not p.load_in_8bit and not p.faiss_gpu


def test_asking_for_cuda_without_one_is_an_error():
    with pytest.raises(ConfigError, match="no CUDA device"):
        plan(DeviceCaps(), device="cuda")


def test_fp16_on_cpu_is_an_error():
    with pytest.raises(ConfigError, match="float16"):
        plan(DeviceCaps(), dtype="float16")


def test_probe_on_this_machine_matches_torch():
    import torch

    caps = probe()
    assert caps.cuda_devices == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_the_plan_for_this_machine_uses_cuda_exactly_when_it_has_a_device():
    # Runs everywhere (CI has no GPU, and CI never skips): on a GPU runner it checks cuda.
    caps = probe()
    assert plan(caps).device == ("cuda" if caps.cuda_devices else "cpu")
