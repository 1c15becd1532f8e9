"""Make every model the settings name ready to load, offline where possible."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lectern.files import recover_folder
from lectern.settings import Settings
from model.gguf_cache import cache_folder, convert, is_converted
from model.registry import ResolvedModel, parse_pypi, resolve


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


def generator(settings: Settings, install: bool = False, convert_gguf: bool = False) -> Prepared:
    """The generator's loadable folder: a GGUF is served from its safetensors conversion."""
    model = resolve(
        settings.models.generator, allow_download=settings.models.allow_download, install=install
    )
    if model.file is None:
        return Prepared("generator", model, model.folder)
    folder = cache_folder(model, settings.model_cache_dir)
    recover_folder(folder)  # convert() writes it with replace_folder
    if not is_converted(folder):
        folder = convert(model, settings.model_cache_dir) if convert_gguf else model.folder
    return Prepared("generator", model, folder)


def prepare_all(settings: Settings, install: bool = True) -> list[Prepared]:
    enc = encoder(settings, install=install)
    return [
        Prepared("encoder", enc, enc.folder),
        generator(settings, install=install, convert_gguf=True),
    ]
