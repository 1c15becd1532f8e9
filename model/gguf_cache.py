"""Convert a GGUF checkpoint once into a safetensors folder that loads in seconds.

transformers dequantizes a GGUF file on every load (about 20 s for SmolLM2-135M on two
cores); the converted folder loads in about 2 s. The cache is keyed by the file's sha256,
so a changed file is converted again, and written to a folder beside it then renamed into
place, so an interrupted conversion never leaves a half-written cache behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from lectern.files import recover_folder, replace_folder, staging_folder
from lectern.optional import require
from model.registry import ResolvedModel, sha256_file

_MARKER = "lectern-gguf.json"


def cache_folder(model: ResolvedModel, cache_dir: Path) -> Path:
    if model.file is None:
        raise ValueError(f"{model.ref} is not a GGUF file")
    digest = model.sha256 or sha256_file(model.folder / model.file)
    return cache_dir / f"{Path(model.file).stem}-{digest[:16]}"


def is_converted(folder: Path) -> bool:
    return (folder / _MARKER).is_file()


def convert(model: ResolvedModel, cache_dir: Path) -> Path:
    """Return the safetensors folder for `model`, converting it the first time."""
    target = cache_folder(model, cache_dir)
    recover_folder(target)  # a conversion interrupted while replacing an older one
    if is_converted(target):
        return target
    transformers = require("transformers", "model")
    require("gguf", "model")  # what transformers reads the file with

    cache_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model.folder, gguf_file=model.file)
    lm = transformers.AutoModelForCausalLM.from_pretrained(model.folder, gguf_file=model.file)
    # The weights are already dequantized in memory; left in place, these make
    # save_pretrained write a config that claims a GGUF quantization it no longer has.
    lm.hf_quantizer = None
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    # A folder at `target` without the marker is an older conversion's leftover: replaced.
    with staging_folder(target) as staging:
        lm.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / _MARKER).write_text(json.dumps({"source": model.ref, "file": model.file}))
        replace_folder(staging, target)
    return target
