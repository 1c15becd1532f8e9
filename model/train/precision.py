"""Which precision, quantization and attention a LoRA training run uses.

`train_precision()` is a pure function of the probed DeviceCaps (lectern.device is the one
place that looks at GPUs), so every choice is unit-tested without one;
`load_base_for_training()` loads the base model the way the plan says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lectern.device import DeviceCaps, plan
from lectern.errors import ConfigError, MissingExtraError
from lectern.optional import install_hint, require

Half = Literal["bfloat16", "float16"]
Quantize = Literal["none", "8bit", "4bit"]


@dataclass(frozen=True, slots=True)
class TrainPrecision:
    device: Literal["cpu", "cuda"]
    load_dtype: Literal["float32", "bfloat16", "float16"]  # base weights' dtype as loaded
    autocast: Half | None  # torch.autocast dtype for the forward pass, or None
    quantize: Quantize  # bitsandbytes base weights (QLoRA when 4bit)
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"]
    gradient_checkpointing: bool

    def __post_init__(self) -> None:
        if self.device == "cpu" and self.quantize != "none":
            raise ConfigError(
                f"quantize {self.quantize!r} needs CUDA (bitsandbytes); on CPU use 'none'"
            )
        if self.device == "cpu" and "float16" in (self.load_dtype, self.autocast):
            raise ConfigError("dtype 'float16' is not supported on CPU; use bfloat16 or float32")

    @property
    def needs_grad_scaler(self) -> bool:
        # fp16's narrow range underflows small gradients; bf16 has fp32's range and needs none.
        return self.autocast == "float16"

    @property
    def compute_dtype(self) -> str:
        return self.autocast or self.load_dtype

    def describe(self) -> str:
        parts = [f"{self.device}: {self.load_dtype} weights"]
        parts.append(f"{self.autocast} autocast" if self.autocast else "no autocast")
        if self.quantize != "none":
            parts.append("4-bit NF4 base (QLoRA)" if self.quantize == "4bit" else "8-bit base")
        parts.append(self.attn_implementation)
        if self.needs_grad_scaler:
            parts.append("grad scaler")
        if self.gradient_checkpointing:
            parts.append("gradient checkpointing")
        return ", ".join(parts)


def train_precision(
    caps: DeviceCaps,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    quantize: Literal["auto", "none", "8bit", "4bit"] = "auto",
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
) -> TrainPrecision:
    # The same device plan as serving: it picks the device, the half dtype and flash
    # attention, and refuses cuda without a GPU and fp16 on CPU.
    served = plan(caps, device, dtype)
    if served.device == "cpu":
        # The weights and the LoRA optimizer stay fp32; native bf16 autocast halves the step
        # (SmolLM2-135M LoRA, 320 tokens: 0.49 s against 1.01 s). plan() picks bf16 only
        # with native bf16, or when asked for it.
        cpu_autocast: Half | None = "bfloat16" if served.dtype == "bfloat16" else None
        cpu_quantize = "none" if quantize == "auto" else quantize  # TrainPrecision refuses k-bit
        return TrainPrecision("cpu", "float32", cpu_autocast, cpu_quantize, "sdpa", False)
    if served.dtype == "bfloat16" and not caps.cuda_bf16:
        raise ConfigError("dtype 'bfloat16' is not supported by this GPU; use float16 or float32")
    if quantize in ("8bit", "4bit") and not caps.bitsandbytes:
        raise MissingExtraError("bitsandbytes", install_hint("gpu"))
    chosen: Quantize = ("4bit" if caps.bitsandbytes else "none") if quantize == "auto" else quantize
    autocast: Half | None = None if served.dtype == "float32" else served.dtype
    # bf16 weights train as they are; without bf16 the master weights stay fp32 under
    # fp16 autocast, since fp16 weights lose small updates.
    load = "bfloat16" if autocast == "bfloat16" else "float32"
    # Flash attention runs in half precision only; under fp16 autocast transformers casts
    # fp32 inputs to the autocast dtype before calling it.
    attn = served.attn_implementation if autocast else "sdpa"
    # QLoRA's memory saving assumes checkpointing: k-bit weights leave activations as the
    # largest cost. Unquantized, the recompute is not worth its time on the small default.
    return TrainPrecision("cuda", load, autocast, chosen, attn, chosen != "none")


def load_kwargs(precision: TrainPrecision) -> dict[str, Any]:
    """What from_pretrained gets for `precision` (unit-tested without a GPU)."""
    if precision.quantize != "none":
        require("bitsandbytes", "gpu")  # before anything is loaded: the fix is an install
    torch = require("torch", "torch")
    kw: dict[str, Any] = {
        "dtype": getattr(torch, precision.load_dtype),
        "attn_implementation": precision.attn_implementation,
    }
    if precision.device == "cuda":
        kw["device_map"] = {"": 0}  # one card: LoRA training does not shard the base model
    if precision.quantize != "none":
        config = require("transformers", "model").BitsAndBytesConfig
        if precision.quantize == "8bit":
            kw["quantization_config"] = config(load_in_8bit=True)
        else:
            kw["quantization_config"] = config(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=getattr(torch, precision.compute_dtype),
            )
    return kw


def load_base_for_training(folder: Path | str, precision: TrainPrecision) -> Any:
    """The base causal LM from `folder`, loaded and prepared for LoRA as `precision` says."""
    kw = load_kwargs(precision)
    transformers = require("transformers", "model")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        Path(folder), local_files_only=True, **kw
    )
    if precision.quantize != "none":
        peft = require("peft", "model")
        # Casts norms/embeddings to fp32 and freezes the k-bit base; with checkpointing it
        # also makes the inputs require grads so the frozen embeddings pass gradients on.
        model = peft.prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=precision.gradient_checkpointing
        )
    elif precision.gradient_checkpointing:
        # transformers 5 renamed it (the old name warns); 4.x has only the old one.
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)()
        model.enable_input_require_grads()
    if precision.gradient_checkpointing:
        model.config.use_cache = False  # the KV cache is recomputed away under checkpointing
    model.train()
    return model
