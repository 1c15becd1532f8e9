"""Choosing an adapter's abstention threshold from `lectern eval answers` figures.

Each candidate threshold is one configuration of the same adapter, asked the held-out
questions of its training sources twice: as they are (where abstaining is wrong) and
with their own document kept out of retrieval (where it is the only right reply).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from lectern.errors import ConfigError
from model.abstention import AbstentionCalibration, ThresholdScore

# Fixed before any candidate was measured.
RULE = (
    "the threshold with the highest balanced accuracy of the abstain decision, "
    "(probe abstain + 1 - false abstain) / 2, on held-out questions of the training "
    "sources (never an evaluation set); among those within 0.01 of the best, the highest "
    "F1; then the lowest threshold"
)
TOLERANCE = 0.01


def config_name(threshold: float) -> str:
    """The configuration measuring `threshold` (the float's own digits: no two collide)."""
    return f"abstain@{threshold!r}"


def parse_thresholds(text: str) -> list[float]:
    """"0,0.5,0.7" -> [0.0, 0.5, 0.7]; each in [0, 1], at least two, none twice."""
    try:
        values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--calibrate-abstention {text!r}: write thresholds like "
                          "0,0.5,0.7") from None
    bad = [v for v in values if not 0 <= v <= 1]
    if bad:
        raise ConfigError(f"--calibrate-abstention: thresholds must be in [0, 1], got {bad}")
    if len(values) < 2 or len(set(values)) != len(values):
        raise ConfigError(f"--calibrate-abstention {text!r}: give two or more different "
                          "thresholds to choose between")
    return values


def score(threshold: float, figures: Mapping[str, Any]) -> ThresholdScore:
    """One candidate from its configuration's summary (answer_report.summarize)."""
    errors = sum(figures.get("counts", {}).get("errors", {}).values())
    if errors:
        raise ConfigError(f"threshold {threshold:g}: {errors} questions failed, so the "
                          "candidates would be scored on different questions; rerun")
    false, probe = figures["false_abstain"], figures["probe_abstain"]
    if false is None or probe is None:
        raise ConfigError(f"threshold {threshold:g}: no answers to score (every question failed)")
    return ThresholdScore(
        threshold=threshold, f1=figures["f1"]["mean"], f1_se=figures["f1"]["se"],
        false_abstain=false, probe_abstain=probe,
        balanced=round((probe + 1 - false) / 2, 4),
    )


def choose(candidates: Sequence[ThresholdScore]) -> ThresholdScore:
    """The candidate RULE picks."""
    if not candidates:
        raise ConfigError("no abstention thresholds were measured")
    best = max(c.balanced for c in candidates)
    near = [c for c in candidates if c.balanced >= best - TOLERANCE]
    return min(near, key=lambda c: (-c.f1, c.threshold))


def calibration(
    thresholds: Sequence[float], configs: Mapping[str, Mapping[str, Any]], measured_on: str,
    questions: int, command: str,
) -> AbstentionCalibration:
    """The record for the adapter, from the configurations config_name() named."""
    candidates = [score(t, configs[config_name(t)]) for t in thresholds]
    chosen = choose(candidates)
    return AbstentionCalibration(
        created=datetime.now(UTC).isoformat(timespec="seconds"), threshold=chosen.threshold,
        rule=RULE, measured_on=measured_on, questions=questions, candidates=candidates,
        command=command,
    )
