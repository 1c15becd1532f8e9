"""LoRA adapters for the generator: which exist, and what each one's training record and
abstention threshold say (model/lora_merge.py checks one fits and merges it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lectern.settings import Settings
from model import abstention, prepare
from model.lora_merge import record_summary

log = logging.getLogger(__name__)

SHIPPED, CONFIGURED = "shipped", "configured"  # the names of adapters not in adapters_dir


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    name: str
    path: Path
    active: bool
    record: dict[str, Any] | None  # the training record's summary, when it has one
    abstain_threshold: float | None = None  # its abstention.json's; None: it has none


# -- which adapters there are -----------------------------------------------------------


def available(
    settings: Settings, active: Path | None, configured: Path | None = None
) -> list[AdapterInfo]:
    """The shipped adapter (for the default generator), every adapter folder under
    prepare.adapters_dir and `configured` (the one the settings name, resolved), each
    once, `active` marked."""
    found: list[tuple[str, Path]] = []
    shipped = prepare.shipped_adapter(settings)
    if shipped is not None:
        found.append((SHIPPED, shipped))
    root = prepare.adapters_dir(settings)
    trained = sorted(p for p in root.iterdir() if prepare.is_adapter(p)) if root.is_dir() else []
    for folder in trained:
        if folder.name in (SHIPPED, CONFIGURED):
            log.warning("adapter folder %s is not listed: its name is reserved", folder)
        else:
            found.append((folder.name, folder))
    if configured is not None and not any(_same(configured, p) for _, p in found):
        found.append((CONFIGURED, configured))
    return [
        AdapterInfo(name, path, active is not None and _same(path, active), record_summary(path),
                    _threshold(path))
        for name, path in found
    ]


def _threshold(folder: Path) -> float | None:
    record = abstention.recorded(folder)
    return None if record is None else record.threshold


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()
