"""The records written beside trained weights, each read and written here only.

`reranker.json` sits beside a reranker trained by `lectern train reranker`;
`lectern-tuning.json` beside an encoder tuned by `lectern train encoder`. Each says how
the model was made and what it scored on held-out questions; serving reads back the
reranker's prior weight and input length. How every record is versioned and read:
lectern.records.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from lectern.records import Record

# Metric keys are written "mrr@10", as retriever.metrics names them; version 1
# records wrote "mrr_at_10".
_OLD_METRIC = re.compile(r"(?<![A-Za-z0-9])(mrr|recall|ndcg)_at_(\d+)")


def metric_key(key: str) -> str:
    """A metric's key in the current style: "mrr_at_10" -> "mrr@10"."""
    return _OLD_METRIC.sub(r"\1@\2", key)


def metric_keys(value: Any) -> Any:
    """`value` with every mapping key, at any depth, in the current metric style."""
    if isinstance(value, dict):
        return {metric_key(k) if isinstance(k, str) else k: metric_keys(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [metric_keys(v) for v in value]
    return value


def _default_if_null(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A field validator (mode "before"): null reads as the field's default.

    For the fields serving does not read: a null there, from a record edited by hand or
    written by another tool, must not refuse the model it describes.
    """
    if value is None:
        return cls.model_fields[info.field_name].get_default(call_default_factory=True)
    return value


class RerankerSettings(BaseModel):
    """The training config as recorded; serving reads the input length from it."""

    model_config = ConfigDict(extra="allow")

    max_length: int | None = None  # tokens per (question, passage) pair it was trained on
    layers: int | None = None
    backbone_layers: int | None = None  # of the backbone it was cut from


# Version 1 named these knobs as the reranker's training config then did.
_RERANKER_V1_NAMES = {
    "lr": "learning_rate",
    "warmup_ratio": "warmup_share",
    "val_fraction": "holdout_share",
}


class RerankerRecord(Record):
    """reranker.json: how a reranker was trained and how it did on held-out questions."""

    FILE: ClassVar[str] = "reranker.json"
    VERSION: ClassVar[int] = 2  # 2: the config's knobs renamed, metrics keyed "mrr@10"

    version: int = VERSION
    created: str | None = None
    config: RerankerSettings = Field(default_factory=RerankerSettings)
    data: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    # retriever.train.reranker_validation.evaluate's report: "overall", "per_source" (keyed
    # by domain; by source in records made before the domains), "worst_domain",
    # "compared", the fitted "prior_weight"
    validation: dict[str, Any] = Field(default_factory=dict)
    # Fitted on held-out questions; serving fuses the logits with the incoming rank by it.
    prior_weight: float = 0.0
    total_seconds: float | None = None

    # Serving reads prior_weight and config.max_length; a null config is "not recorded".
    _null_is_default = field_validator(
        "config", "data", "training", "validation", mode="before"
    )(_default_if_null)

    @field_validator("validation", mode="before")
    @classmethod
    def _metric_keys(cls, value: Any) -> Any:
        return metric_keys(value)

    @classmethod
    def _upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        config = data.get("config")
        if version < 2 and isinstance(config, dict):
            data["config"] = {_RERANKER_V1_NAMES.get(k, k): v for k, v in config.items()}
        return data


class TuningSettings(BaseModel):
    """The tuning config as recorded; its split of the questions is rebuilt from these.

    None: the record does not say (the caller falls back on today's default).
    """

    model_config = ConfigDict(extra="allow")

    holdout_share: float | None = None
    seed: int | None = None


class EncoderTuningRecord(Record):
    """lectern-tuning.json: how an encoder was tuned and what it scored."""

    FILE: ClassVar[str] = "lectern-tuning.json"
    VERSION: ClassVar[int] = 2  # 2: metrics keyed "mrr@10"

    version: int = VERSION
    kind: str = "lectern-tuned-encoder"
    config: TuningSettings = Field(default_factory=TuningSettings)
    questions_file: str | None = None
    # The chunks whose questions trained it; older records rebuild them from the
    # questions file, the hold-out share and the seed.
    trained_chunks: list[int] | None = None
    # The fusion an older `lectern train encoder` fitted; kept as written, never served:
    # each corpus's own calibration (retriever.calibration) chooses the fusion now.
    fusion: dict[str, Any] | None = None
    # What tuning measured, for the operator; serving reads none of it, so a null in a
    # record written by hand or by another tool reads as "not measured" ({}).
    held_out_before: dict[str, int | float] = Field(default_factory=dict)
    held_out_after: dict[str, int | float] = Field(default_factory=dict)
    compared: dict[str, Any] = Field(default_factory=dict)

    _null_is_default = field_validator(
        "kind", "config", "held_out_before", "held_out_after", "compared", mode="before"
    )(_default_if_null)

    @field_validator("held_out_before", "held_out_after", "compared", mode="before")
    @classmethod
    def _metric_keys(cls, value: Any) -> Any:
        return metric_keys(value)

    @field_validator("fusion", mode="before")
    @classmethod
    def _fusion_keys(cls, value: Any) -> Any:
        return metric_keys(value)
