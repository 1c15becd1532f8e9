"""LoRA adapters for the tiny models of tests/model/tiny.py, and variants of those models
with another shape, to make adapters that do not fit."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def reshaped(base: Path, folder: Path, seed: int = 2, **config: Any) -> Path:
    """A random model like `base` (its tokenizer, its architecture) with `config` changed,
    e.g. hidden_size=48 or vocab_size=320."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shutil.copytree(base, folder)
    changed = AutoConfig.from_pretrained(base)
    for key, value in config.items():
        setattr(changed, key, value)
    if "hidden_size" in config and hasattr(changed, "intermediate_size"):
        changed.intermediate_size = 2 * changed.hidden_size
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(changed).save_pretrained(folder)
    return folder


def lora_adapter(
    base: Path,
    out: Path,
    *,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
    modules_to_save: tuple[str, ...] = (),
    seed: int = 1,
    safe: bool = True,
) -> Path:
    """A peft LoRA adapter on `base` saved in `out`, its B weights random: peft starts them
    at zero, which would leave the model as it was."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(
            r=4, lora_alpha=8, target_modules=list(targets), lora_dropout=0.0,
            modules_to_save=list(modules_to_save) or None,
        ),
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(out, safe_serialization=safe)
    return out
