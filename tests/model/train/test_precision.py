"""The training precision plan (every branch, no GPU) and loading a tiny base model."""

import sys
import types

import pytest

from lectern.device import DeviceCaps
from lectern.errors import ConfigError, MissingExtraError
from model.train.precision import (
    TrainPrecision,
    load_base_for_training,
    load_kwargs,
    train_precision,
)

GPU = DeviceCaps(cuda_devices=1, cuda_bf16=True, bitsandbytes=True, flash_attn=True)
OLD_GPU = DeviceCaps(cuda_devices=1, cuda_bf16=False, bitsandbytes=True, flash_attn=True)
FA2 = "flash_attention_2"
CPU_FP32 = ("cpu", "float32", None, "none", "sdpa", False)


def fields(p: TrainPrecision) -> tuple:
    return (p.device, p.load_dtype, p.autocast, p.quantize, p.attn_implementation,
            p.gradient_checkpointing)


@pytest.mark.parametrize(("caps", "kw", "expected"), [
    (DeviceCaps(), {}, CPU_FP32),
    (DeviceCaps(cpu_bf16=True), {}, ("cpu", "float32", "bfloat16", "none", "sdpa", False)),
    (DeviceCaps(cpu_bf16=True), {"dtype": "float32"}, CPU_FP32),
    (DeviceCaps(), {"dtype": "bfloat16"}, ("cpu", "float32", "bfloat16", "none", "sdpa", False)),
    (DeviceCaps(), {"quantize": "none"}, CPU_FP32),
    (GPU, {"device": "cpu"}, CPU_FP32),
    # QLoRA on a bf16 GPU with flash attention
    (GPU, {}, ("cuda", "bfloat16", "bfloat16", "4bit", FA2, True)),
    (GPU, {"quantize": "8bit"}, ("cuda", "bfloat16", "bfloat16", "8bit", FA2, True)),
    (GPU, {"quantize": "none"}, ("cuda", "bfloat16", "bfloat16", "none", FA2, False)),
    # fp32 master weights under fp16 autocast when the GPU has no bf16
    (OLD_GPU, {}, ("cuda", "float32", "float16", "4bit", FA2, True)),
    (GPU, {"dtype": "float16"}, ("cuda", "float32", "float16", "4bit", FA2, True)),
    # flash attention is for half precision only
    (GPU, {"dtype": "float32"}, ("cuda", "float32", None, "4bit", "sdpa", True)),
    (DeviceCaps(cuda_devices=1, cuda_bf16=True), {},
     ("cuda", "bfloat16", "bfloat16", "none", "sdpa", False)),
])
def test_the_plan_for_each_machine_and_request(caps, kw, expected):
    assert fields(train_precision(caps, **kw)) == expected


def test_only_fp16_autocast_needs_a_grad_scaler():
    assert train_precision(OLD_GPU).needs_grad_scaler
    assert not train_precision(GPU).needs_grad_scaler
    assert not train_precision(DeviceCaps(cpu_bf16=True)).needs_grad_scaler


@pytest.mark.parametrize("quantize", ["8bit", "4bit"])
def test_kbit_on_cpu_is_refused_naming_the_value(quantize):
    with pytest.raises(ConfigError, match=f"quantize '{quantize}' needs CUDA"):
        train_precision(DeviceCaps(), quantize=quantize)
    with pytest.raises(ConfigError, match=f"'{quantize}'"):
        train_precision(GPU, device="cpu", quantize=quantize)
    with pytest.raises(ConfigError, match=f"'{quantize}'"):
        TrainPrecision("cpu", "float32", None, quantize, "sdpa", False)


def test_impossible_requests_are_config_errors():
    with pytest.raises(ConfigError, match="'float16' is not supported on CPU"):
        train_precision(DeviceCaps(), dtype="float16")
    with pytest.raises(ConfigError, match="'cuda' but no CUDA device"):
        train_precision(DeviceCaps(), device="cuda")
    with pytest.raises(ConfigError, match="'bfloat16' is not supported by this GPU"):
        train_precision(OLD_GPU, dtype="bfloat16")


def test_asking_for_kbit_without_bitsandbytes_names_the_gpu_extra():
    no_bnb = DeviceCaps(cuda_devices=1, cuda_bf16=True)
    with pytest.raises(MissingExtraError, match=r"bitsandbytes .*lectern\[gpu\]"):
        train_precision(no_bnb, quantize="4bit")


def test_describe_is_one_line_with_every_choice():
    assert train_precision(OLD_GPU).describe() == (
        "cuda: float32 weights, float16 autocast, 4-bit NF4 base (QLoRA), flash_attention_2, "
        "grad scaler, gradient checkpointing"
    )
    assert train_precision(DeviceCaps()).describe() == "cpu: float32 weights, no autocast, sdpa"


def test_qlora_load_arguments(monkeypatch):
    import torch

    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))
    kw = load_kwargs(train_precision(OLD_GPU))
    q = kw["quantization_config"]
    assert (q.load_in_4bit, q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant) == (
        True, "nf4", True
    )
    assert q.bnb_4bit_compute_dtype == torch.float16
    assert (kw["dtype"], kw["device_map"]) == (torch.float32, {"": 0})
    assert load_kwargs(train_precision(GPU, quantize="8bit"))["quantization_config"].load_in_8bit
    assert load_kwargs(train_precision(DeviceCaps())) == {
        "dtype": torch.float32, "attn_implementation": "sdpa"
    }


def test_loading_kbit_without_bitsandbytes_fails_before_loading(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # as if not installed
    precision = TrainPrecision("cuda", "bfloat16", "bfloat16", "4bit", "sdpa", True)
    with pytest.raises(MissingExtraError, match=r"lectern\[gpu\]"):
        load_base_for_training(tmp_path / "never-read", precision)


def tiny_llama(folder):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def lora_backward(model):
    """The LoRA weights get gradients through the loaded base; the base stays frozen."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    ids = torch.randint(0, 96, (2, 12), device=model.device)
    model(input_ids=ids, labels=ids).loss.backward()
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_tiny_llama_loads_trainable_in_float32_on_cpu(tmp_path, checkpointing):
    import torch

    precision = TrainPrecision("cpu", "float32", None, "none", "sdpa", checkpointing)
    model = load_base_for_training(tiny_llama(tmp_path), precision)
    assert model.training and model.dtype == torch.float32
    assert model.config._attn_implementation == "sdpa"
    assert model.is_activation_checkpointing == checkpointing
    assert model.config.use_cache is not checkpointing
    lora_backward(model)


@pytest.mark.gpu
def test_qlora_on_a_real_gpu(tmp_path):
    import importlib.util

    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("needs a CUDA device and bitsandbytes")
    from lectern.device import probe

    precision = train_precision(probe(), device="cuda", quantize="4bit")
    model = load_base_for_training(tiny_llama(tmp_path), precision)
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert model.is_activation_checkpointing
    with torch.autocast("cuda", dtype=getattr(torch, precision.compute_dtype)):
        lora_backward(model)
