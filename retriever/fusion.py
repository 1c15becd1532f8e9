"""The hybrid's fusion settings for the encoder being served.

A tuned encoder's folder records the reciprocal-rank fusion fitted for it (see
`retriever.train.fusion_fit`); serving and evaluation fuse with that record, except for
the settings the operator set themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lectern.settings import RetrievalSettings

RECORD_FILE = "lectern-tuning.json"  # the tuned encoder's record
FIELDS = ("rrf_k", "bm25_weight", "dense_weight")


def recorded(folder: Path | None) -> dict[str, Any] | None:
    """The fusion recorded for the encoder in `folder`, if it has one."""
    if folder is None or not (folder / RECORD_FILE).is_file():
        return None
    fitted = json.loads((folder / RECORD_FILE).read_text()).get("fusion")
    return fitted if isinstance(fitted, dict) and all(f in fitted for f in FIELDS) else None


def for_encoder(retrieval: RetrievalSettings, folder: Path | None) -> RetrievalSettings:
    """`retrieval` with the fusion fitted for the encoder in `folder`, for each of its
    settings the operator left at the default (one set by hand or environment wins)."""
    fitted = recorded(folder)
    if fitted is None:
        return retrieval
    update = {f: fitted[f] for f in FIELDS if f not in retrieval.model_fields_set}
    return retrieval.model_copy(update=update) if update else retrieval
