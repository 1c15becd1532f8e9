"""Which hardware paths to take. The one place that looks at GPUs.

`probe()` reads the machine; `plan()` is a pure function of what was read and the
settings, so the choice it makes is unit-tested without a GPU.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

from lectern.errors import ConfigError
from lectern.optional import require

DType = Literal["float32", "bfloat16", "float16"]


@dataclass(frozen=True, slots=True)
class DeviceCaps:
    cuda_devices: int = 0
    cuda_bf16: bool = False
    cpu_bf16: bool = False
    bitsandbytes: bool = False
    flash_attn: bool = False
    faiss_gpus: int = 0


@dataclass(frozen=True, slots=True)
class DevicePlan:
    device: Literal["cpu", "cuda"]
    dtype: DType
    load_in_8bit: bool
    attn_implementation: Literal["sdpa", "flash_attention_2"]
    faiss_gpu: bool
    dynamic_int8: bool = False  # CPU: int8 weights, dynamic activation quantization


def probe() -> DeviceCaps:
    torch = require("torch", "torch")  # heavy: only when the plan is needed

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:  # faiss-cpu has no get_num_gpus; without faiss at all there is no FAISS GPU
        faiss_gpus = require("faiss", "retrieval").get_num_gpus()
    except (ImportError, AttributeError):
        faiss_gpus = 0
    return DeviceCaps(
        cuda_devices=cuda,
        cuda_bf16=bool(cuda) and torch.cuda.is_bf16_supported(),
        cpu_bf16=_cpu_has_bf16(),
        bitsandbytes=bool(cuda) and importlib.util.find_spec("bitsandbytes") is not None,
        flash_attn=bool(cuda) and importlib.util.find_spec("flash_attn") is not None,
        faiss_gpus=faiss_gpus,
    )


def _cpu_has_bf16() -> bool:
    # Native bf16 matmuls (AVX512-BF16 / AMX) make bf16 about twice as fast as fp32 on
    # CPU; without them bf16 is emulated and slower, so fp32 is the better default.
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def plan(
    caps: DeviceCaps,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
    cpu_int8: bool = False,
) -> DevicePlan:
    if device == "cuda" and caps.cuda_devices == 0:
        raise ConfigError("models.device is 'cuda' but no CUDA device is visible")
    use_cuda = caps.cuda_devices > 0 and device != "cpu"
    if use_cuda:
        chosen: DType = dtype if dtype != "auto" else ("bfloat16" if caps.cuda_bf16 else "float16")
        return DevicePlan(
            device="cuda",
            dtype=chosen,
            load_in_8bit=caps.bitsandbytes,
            attn_implementation="flash_attention_2" if caps.flash_attn else "sdpa",
            faiss_gpu=caps.faiss_gpus > 0,
        )
    if dtype == "float16":
        raise ConfigError("models.dtype 'float16' is not supported on CPU; use bfloat16")
    # int8 weights beat native bf16 on CPU: in the serving process (SmolLM2-135M, 2-core
    # EPYC with avx512_bf16) 58 tokens/s against 25, the same 12 of 16 sample answers
    # right (bench/results/answer-dtype-*.md). bf16 is the choice only without int8.
    native_bf16 = caps.cpu_bf16 and not cpu_int8
    cpu_dtype: DType = dtype if dtype != "auto" else ("bfloat16" if native_bf16 else "float32")
    return DevicePlan(
        device="cpu",
        dtype=cpu_dtype,
        load_in_8bit=False,
        attn_implementation="sdpa",
        faiss_gpu=False,
        # Decoding a small model on CPU is memory-bound: int8 weights read a quarter of
        # the bytes (measured here: 2x faster decode, 2.5x faster prefill than fp32).
        dynamic_int8=cpu_int8 and cpu_dtype == "float32",
    )
