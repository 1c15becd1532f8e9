"""Write the generator with its LoRA adapter merged in as a GGUF file llama.cpp serves.

The merge is peft's (merge_and_unload) on the float32 transformers model; what it adds to
each weight is added to the base GGUF's own weights, dequantized, under the GGUF's tensor
names. Every tensor the adapter leaves alone keeps the base file's values, and the file
keeps the base file's metadata (tokenizer, chat template), so a merged GGUF differs from
its base only where the adapter does. The float32 result is then quantised by llama.cpp.

Exports are cached by content: the base file's sha256, the adapter's files and the
quantisation name a folder under the model cache, written beside it and renamed into place
(lectern.files), so an interrupted export never leaves a half-written file to serve.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from lectern.errors import AdapterMismatchError, ConfigError
from lectern.files import recover_folder, replace_folder, staging_folder
from lectern.optional import require
from model.lora_merge import ADAPTER_CONFIG, WEIGHTS
from model.registry import sha256_file

# llama.cpp's llama_ftype values (llama.h), one per lectern.settings.GgufQuant.
_FTYPES: dict[str, int] = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "bf16": 32}
_FILE = "model.gguf"
_MARKER = "lectern-gguf-export.json"
# Part of the cache key: a change to how the file is made makes new files.
EXPORT_VERSION = 1
# Architectures whose q and k weights convert_hf_to_gguf.py permutes (LlamaModel.permute):
# llama.cpp's rope pairs a head's halves where transformers pairs neighbours.
_PERMUTED = {"llama"}
# What peft's merge reads of an adapter folder.
_MERGED_FILES = (ADAPTER_CONFIG, WEIGHTS, "adapter_model.bin")


def export_folder(
    base: Path, adapter: Path, quant: str, cache_dir: Path, base_sha: str | None = None
) -> Path:
    """Where the export of `adapter` merged into the GGUF file `base` is cached: keyed by
    what the merge reads (not the training record or abstention.json beside it, which
    calibrating rewrites). base_sha: `base`'s sha256 when the registry has checked it."""
    digest = hashlib.sha256()
    for part in (str(EXPORT_VERSION), quant, base_sha or sha256_file(base)):
        digest.update(part.encode() + b"\0")
    for file in (adapter / name for name in _MERGED_FILES):
        if file.is_file():
            digest.update(file.name.encode() + b"\0" + sha256_file(file).encode() + b"\0")
    name = f"{base.stem}+{adapter.name}-{quant}-{digest.hexdigest()[:16]}"
    return cache_dir / "gguf-exports" / name


def exported(
    base: Path, adapter: Path, quant: str, cache_dir: Path, hf_base: Path,
    base_sha: str | None = None,
) -> Path:
    """The GGUF file of `adapter` merged into `base`, quantised as `quant`; made the first
    time. hf_base: the same base as a transformers folder (model.gguf_cache), which the
    adapter is merged into. base_sha: as for export_folder."""
    if quant not in _FTYPES:
        raise ConfigError(f"unknown GGUF quantisation {quant!r}; use one of {sorted(_FTYPES)}")
    target = export_folder(base, adapter, quant, cache_dir, base_sha)
    recover_folder(target)
    if (target / _MARKER).is_file():
        return target / _FILE
    # AdapterMismatchError, so that the server serves the base GGUF and says why.
    try:
        check_architecture(base)
        deltas = merge_deltas(hf_base, adapter)
    except ConfigError as exc:
        raise AdapterMismatchError(str(adapter), str(base), str(exc)) from exc
    with staging_folder(target) as staging:
        merged = staging / ("f32.gguf" if quant != "f32" else _FILE)
        try:
            write_merged(base, deltas, merged)
        except ConfigError as exc:
            raise AdapterMismatchError(str(adapter), str(base), str(exc)) from exc
        if quant != "f32":
            quantise(merged, staging / _FILE, quant)
            merged.unlink()
        record = {"version": EXPORT_VERSION, "base": str(base), "adapter": str(adapter),
                  "quant": quant, "tensors_changed": len(deltas)}
        (staging / _MARKER).write_text(json.dumps(record, indent=1))
        replace_folder(staging, target)
    return target / _FILE


def merge_deltas(hf_base: Path, adapter: Path) -> dict[str, Any]:
    """What merging `adapter` adds to each weight of the float32 model in `hf_base`, by its
    transformers name, as float32 numpy arrays (out, in)."""
    transformers = require("transformers", "model")
    torch = require("torch", "model")
    from model.lora_merge import merged

    model = transformers.AutoModelForCausalLM.from_pretrained(hf_base, dtype=torch.float32)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    after = merged(model, adapter, hf_base).state_dict()
    deltas: dict[str, Any] = {}
    for name, weight in after.items():
        change = weight.detach().float() - before[name].float()
        if torch.count_nonzero(change):
            deltas[name] = change.numpy()
    return deltas


def check_architecture(base: Path, reader: Any = None) -> str:
    """The GGUF file's architecture; ConfigError for one whose layout is not known here."""
    gguf = require("gguf", "model")
    arch = _field(reader or gguf.GGUFReader(base), "general.architecture")
    if arch not in _PERMUTED:
        raise ConfigError(
            f"exporting an adapter into a {arch!r} GGUF ({base}) is not supported (llama "
            "only); serve it with generator_backend transformers"
        )
    return arch


def write_merged(base: Path, deltas: dict[str, Any], out: Path) -> None:
    """Write `base` as float32 with `deltas` (transformers names) added to its weights."""
    gguf = require("gguf", "model")
    np = require("numpy", "model")
    reader = gguf.GGUFReader(base)
    arch = check_architecture(base, reader)
    heads = {"attn_q": int(_field(reader, f"{arch}.attention.head_count")),
             "attn_k": int(_field(reader, f"{arch}.attention.head_count_kv"))}
    blocks = int(_field(reader, f"{arch}.block_count"))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], blocks)
    by_gguf: dict[str, Any] = {}
    for hf_name, delta in deltas.items():
        stem, _, kind = hf_name.rpartition(".")
        mapped = names.get_name(stem)
        if mapped is None:
            raise ConfigError(f"the adapter changes {hf_name}, which has no GGUF tensor")
        role = mapped.rsplit(".", 1)[-1]
        by_gguf[f"{mapped}.{kind}"] = _permute(delta, heads[role]) if role in heads else delta

    writer = gguf.GGUFWriter(out, arch)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in {"general.architecture",
                                                            "general.file_type"}:
            continue
        sub = field.types[1] if len(field.types) > 1 else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub)
    writer.add_file_type(_FTYPES["f32"])
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        values = values.reshape(tuple(int(n) for n in reversed(tensor.shape)))
        delta = by_gguf.pop(tensor.name, None)
        if delta is not None:
            if delta.shape != values.shape:
                raise ConfigError(f"{tensor.name}: the adapter's change is {delta.shape}, the "
                                  f"GGUF weight {values.shape}")
            values = values + delta
        writer.add_tensor(tensor.name, np.ascontiguousarray(values))
    if by_gguf:
        raise ConfigError(f"the adapter changes tensors the GGUF lacks: {sorted(by_gguf)}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def quantise(source: Path, out: Path, quant: str) -> None:
    """llama.cpp's own quantisation of the GGUF file `source` (llama_model_quantize)."""
    llama_cpp = require("llama_cpp", "llamacpp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _FTYPES[quant]
    # llama-cpp-python prints llama.cpp's log (a line per tensor here) at whatever this
    # logger's level lets through; warnings and errors still show.
    quiet = logging.getLogger("llama-cpp-python")
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))
    try:
        rc = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(),
                                            ctypes.byref(params))
    finally:
        quiet.setLevel(level)
    if rc != 0:
        raise RuntimeError(f"llama.cpp could not quantise {source} to {quant} (code {rc})")


def _permute(weight: Any, heads: int) -> Any:
    """A transformers q/k weight (out, in) in llama.cpp's rope order."""
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _field(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        raise ConfigError(f"the GGUF file has no {key}")
    return field.contents()
