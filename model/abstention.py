"""How sure a tuned generator must be before it says "I don't know", recorded per adapter.

The threshold of the abstention gate (model.generators.abstention_gate) depends on the
adapter: each one spreads its probability differently. `lectern eval answers
--calibrate-abstention` measures candidate thresholds on held-out questions, chooses one
by a fixed rule (model.eval.abstention_fit) and writes `abstention.json` into the
adapter's folder; serving reads it back when `generation.abstain_threshold` is unset,
so an adapter switched in live brings its own threshold.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field

from lectern.errors import ConfigError
from lectern.records import Record

log = logging.getLogger(__name__)


class ThresholdScore(BaseModel):
    threshold: float
    f1: float  # mean over the normal run's questions, 0-100
    f1_se: float | None = None
    false_abstain: float  # share of the normal run's questions abstained on
    probe_abstain: float  # share of the probe's (own article kept out) abstained on
    balanced: float  # (probe_abstain + 1 - false_abstain) / 2


class AbstentionCalibration(Record):
    """abstention.json: the chosen threshold, the rule, and every candidate's figures."""

    FILE: ClassVar[str] = "abstention.json"
    VERSION: ClassVar[int] = 1

    version: int = VERSION
    created: str
    threshold: float = Field(ge=0, le=1)
    rule: str
    measured_on: str  # the held-out file the candidates were asked from
    questions: int
    candidates: list[ThresholdScore]
    command: str = ""


def recorded(adapter: Path) -> AbstentionCalibration | None:
    """The adapter's abstention.json; None without one.

    A record that cannot be read is logged and counts as none: the adapter still serves.
    """
    try:
        return AbstentionCalibration.load(adapter)
    except ConfigError as exc:
        log.warning("ignoring the abstention calibration, so the reply is greedy: %s", exc)
        return None


def threshold_for(adapter: Path | None) -> float:
    """The adapter's recorded threshold; 0 (greedy) without an adapter or a record."""
    record = None if adapter is None else recorded(adapter)
    return 0.0 if record is None else record.threshold
