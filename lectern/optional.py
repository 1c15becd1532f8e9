"""Optional dependencies, imported in the branch that needs them.

Lectern's heavy dependencies come in extras (`pip install 'lectern[model]'`), and torch
is installed by hand first so that a CPU machine gets the CPU build. A missing one fails
with the command that installs it, not with a bare ImportError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lectern.errors import MissingExtraError

EXTRAS = ("ingest", "retrieval", "model", "llamacpp", "api", "gpu", "dev")
TORCH = "torch"  # not an extra: its build depends on the machine


def install_hint(extra: str) -> str:
    if extra == TORCH:
        return "pip install torch==2.13.0 (the CPU build; a CUDA build on a GPU machine)"
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)} or {TORCH!r}")
    return f"pip install 'lectern[{extra}]'"


def require(module: str, extra: str) -> ModuleType:
    """`module`, imported; MissingExtraError naming `extra` when it (or a dependency of it
    that the extra brings) is not installed."""
    hint = install_hint(extra)  # checked before importing: a typo fails in every test run
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        # torch missing beneath an extra is not fixed by the extra: pip would pull a CUDA
        # build of it. The machine's own torch comes first.
        if missing.split(".")[0] == TORCH:
            hint = install_hint(TORCH)
        raise MissingExtraError(missing, hint) from exc
