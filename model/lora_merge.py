"""Whether a LoRA adapter fits a base model, and merging it in (peft's merge_and_unload).

An adapter is a peft folder (adapter_config.json + adapter_model.safetensors). One that
does not fit the base is refused before anything is merged, with what differs: peft would
either fail with a wall of tensor names or, for a module the base lacks, load nothing for
it and say so only in a warning. Both the transformers generator (merged before the CPU's
int8 quantisation) and the GGUF export (merged, then written for llama.cpp) merge here.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from lectern.errors import AdapterMismatchError
from lectern.optional import require

log = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"  # what makes a folder a (peft) adapter
RECORD = "training-record.json"  # written beside the adapter by `lectern train generator`
WEIGHTS = "adapter_model.safetensors"
# peft's saved keys: "base_model.model.<module>.<part>[.weight]", the adapter name dropped.
_PREFIX = "base_model.model."
_LORA_KEY = re.compile(
    r"^(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B"
    r"|lora_magnitude_vector)(?:\.weight)?$"
)


def record_summary(folder: Path) -> dict[str, Any] | None:
    """The training record's top-level figures: its scalars and its flat mappings (counts
    per source, hyperparameters, held-out scores), not lists or deeper structure."""
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("unreadable training record %s: %s", path, exc)
        return None
    if not isinstance(record, dict):
        return None
    return {k: v for k, v in record.items() if _scalar(v) or (
        isinstance(v, dict) and all(_scalar(x) for x in v.values())
    )}


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


# -- does it fit, and merging it ---------------------------------------------------------


def merged(model: Any, adapter: Path, base: Path | str) -> Any:
    """`model` with the adapter's weights merged in (peft's merge_and_unload).

    Raises AdapterMismatchError, before merging, when the adapter does not fit `model`;
    MissingExtraError (the `model` extra) without peft.
    """
    check(model, adapter, base)
    peft = require("peft", "model")
    try:
        tuned = peft.PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:  # size mismatch, unknown modules
        raise _mismatch(adapter, base, f"peft could not load it: {_first_lines(exc)}") from exc
    return tuned.merge_and_unload()


def check(model: Any, adapter: Path, base: Path | str) -> None:
    """AdapterMismatchError unless the adapter fits `model` (`base` names it in messages).

    Checked: a readable LoRA adapter_config.json, target modules the base has, every
    weight's module in the base with the dimensions the weight was made for, the
    vocabulary (the embedding rows the adapter carries, or its training record's
    `vocab_size`) and the architecture its training record names (`model_type`).
    """
    config = _config(adapter, base)
    modules = dict(model.named_modules())
    _check_targets(config.get("target_modules"), modules, adapter, base)
    vocab = model.get_input_embeddings().weight.shape[0]
    shapes = _weight_shapes(adapter, base)
    params = {name: tuple(p.shape) for name, p in model.named_parameters()}
    for key, shape in shapes.items():
        reason = _misfit(key.removeprefix(_PREFIX), shape, modules, params, vocab)
        if reason is not None:
            raise _mismatch(adapter, base, reason)
    record = record_summary(adapter) or {}
    kind, recorded = record.get("model_type"), record.get("vocab_size")
    base_kind = getattr(getattr(model, "config", None), "model_type", None)
    if isinstance(kind, str) and base_kind is not None and kind != base_kind:
        raise _mismatch(adapter, base, f"it was trained on a {kind} model, the base is {base_kind}")
    if isinstance(recorded, int) and recorded != vocab:
        raise _mismatch(
            adapter, base, f"it was trained with a vocabulary of {recorded} tokens, "
            f"the base has {vocab}"
        )


def _config(adapter: Path, base: Path | str) -> dict[str, Any]:
    path = adapter / ADAPTER_CONFIG
    if not path.is_file():
        raise _mismatch(adapter, base, f"it has no {ADAPTER_CONFIG}: not a peft adapter")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _mismatch(adapter, base, f"its {ADAPTER_CONFIG} is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise _mismatch(adapter, base, f"its {ADAPTER_CONFIG} is not a JSON object")
    if config.get("peft_type") != "LORA":
        # Only LoRA is trained and measured here; merging is what makes serving it free.
        raise _mismatch(
            adapter, base, f"peft_type is {config.get('peft_type')!r}; only LORA adapters "
            "are served"
        )
    return config


def _check_targets(
    targets: object, modules: dict[str, Any], adapter: Path, base: Path | str
) -> None:
    """peft's rule: a listed name matches a module named so or ending in ".name"; a string
    is a regular expression over the whole module name ("all-linear": every Linear)."""
    if targets is None or targets == "all-linear":
        return
    names = [n for n in modules if n]
    if isinstance(targets, str):
        if not any(re.fullmatch(targets, n) for n in names):
            raise _mismatch(adapter, base, f"no module of the base matches {targets!r}")
        return
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise _mismatch(adapter, base, f"target_modules {targets!r} is not a list of names")
    present = {t for t in targets if any(n == t or n.endswith("." + t) for n in names)}
    if not present:  # the ones peft would find are checked weight by weight below
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in modules.items() if _is_linear(m)})
        raise _mismatch(
            adapter, base, f"its target modules {', '.join(sorted(targets))} are absent from "
            f"the base, whose linear layers are {', '.join(leaves) or 'none'}"
        )


def _weight_shapes(adapter: Path, base: Path | str) -> dict[str, tuple[int, ...]]:
    """Each saved tensor's shape, read from the safetensors header (nothing is loaded)."""
    path = adapter / WEIGHTS
    if not path.is_file():
        if (adapter / "adapter_model.bin").is_file():
            return {}  # a pickled adapter: peft's own size checks (rephrased) are the check
        raise _mismatch(adapter, base, f"it has no {WEIGHTS}")
    safetensors = require("safetensors", "model")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types for a broken header
        raise _mismatch(adapter, base, f"its {WEIGHTS} cannot be read: {exc}") from exc


def _misfit(
    key: str,
    shape: tuple[int, ...],
    modules: dict[str, Any],
    params: dict[str, tuple[int, ...]],
    vocab: int,
) -> str | None:
    """What is wrong with one saved tensor against the base, or None when it fits."""
    lora = _LORA_KEY.match(key)
    if lora is None:
        # A whole module saved beside the LoRA weights (modules_to_save: an lm_head).
        if key in params and params[key] != shape:
            if len(shape) == 2 and shape[1:] == params[key][1:] and params[key][0] == vocab:
                return f"its {key} has a vocabulary of {shape[0]} tokens, the base has {vocab}"
            return f"its {key} has shape {list(shape)}, the base's {list(params[key])}"
        return None  # anything else is peft's to judge
    name, part = lora["module"], lora["part"]
    module = modules.get(name)
    if module is None:
        return f"it adapts {name}, which the base does not have"
    if part.startswith("lora_embedding"):
        rows = getattr(module, "num_embeddings", None)
        if part == "lora_embedding_A" and rows is not None and shape[-1] != rows:
            return f"its {name} has a vocabulary of {shape[-1]} tokens, the base has {rows}"
        return None
    inputs, outputs = getattr(module, "in_features", None), getattr(module, "out_features", None)
    if part == "lora_A" and inputs is not None and shape[-1] != inputs:
        return f"{name} takes {inputs} inputs in the base, the adapter's lora_A {shape[-1]}"
    if part in ("lora_B", "lora_magnitude_vector") and outputs is not None and (
        shape[0] != outputs
    ):
        return f"{name} has {outputs} outputs in the base, the adapter's {part} {shape[0]}"
    return None


def _is_linear(module: Any) -> bool:
    return hasattr(module, "in_features") and hasattr(module, "out_features")


def _mismatch(adapter: Path, base: Path | str, reason: str) -> AdapterMismatchError:
    return AdapterMismatchError(str(adapter), str(base), reason)


def _first_lines(exc: BaseException, lines: int = 2) -> str:
    return " ".join(line.strip() for line in str(exc).strip().splitlines()[:lines])
