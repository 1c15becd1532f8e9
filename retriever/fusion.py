"""The hybrid's fusion settings for the encoder being served.

A tuned encoder's record (retriever.records.EncoderTuningRecord) holds the
reciprocal-rank fusion fitted for it by `lectern train encoder`; serving and evaluation
fuse with it, except for the settings the operator set themselves.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lectern.errors import ConfigError
from lectern.settings import RetrievalSettings
from retriever.records import FUSION_FIELDS, EncoderTuningRecord

RECORD_FILE = EncoderTuningRecord.FILE  # the tuned encoder's record
FIELDS = FUSION_FIELDS

log = logging.getLogger(__name__)


def recorded(folder: Path | None) -> dict[str, Any] | None:
    """The fusion recorded for the encoder in `folder`, if it has one (and all of it).

    Serving reads this as it starts: a record that cannot be read (not JSON, not a
    record, or of a newer version) is logged as a warning naming it and the reason, and
    counts as none, so the default fusion applies instead of serving refusing to start.
    """
    if folder is None:
        return None
    try:
        record = EncoderTuningRecord.load(folder)
    except ConfigError as exc:
        log.warning("ignoring the encoder's fusion record, so the default fusion applies: %s",
                    exc)
        return None
    if record is None or record.fusion is None:
        return None
    return record.fusion.model_dump()


def for_encoder(retrieval: RetrievalSettings, folder: Path | None) -> RetrievalSettings:
    """`retrieval` with the fusion fitted for the encoder in `folder`, for each of its
    settings the operator left at the default (one set by hand or environment wins)."""
    fitted = recorded(folder)
    if fitted is None:
        return retrieval
    update = {f: fitted[f] for f in FIELDS if f not in retrieval.model_fields_set}
    return retrieval.model_copy(update=update) if update else retrieval
