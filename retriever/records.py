"""The records written beside trained weights, each read and written here only.

`reranker.json` sits beside a reranker trained by `lectern train reranker`;
`lectern-tuning.json` beside an encoder tuned by `lectern train encoder`. Each says how
the model was made and what it scored on held-out questions; serving reads back the
reranker's prior weight and input length.

Every record carries a version. A record without one is version 1, written before
records had versions; an older version is brought to the current shape as it is
loaded, and a newer one is refused: this Lectern cannot know what its fields mean.
Fields that no code reads are kept as they are, so loading and saving loses nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from lectern.errors import ConfigError
from lectern.files import atomic_write

# Metric keys are written "mrr@10", as retriever.metrics names them; version 1
# records wrote "mrr_at_10".
_OLD_METRIC = re.compile(r"(?<![A-Za-z0-9])(mrr|recall|ndcg)_at_(\d+)")


class RecordVersionError(ConfigError):
    """A record of a newer version than this Lectern reads."""


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


class Record(BaseModel):
    """A JSON record in a model folder. Subclasses name the file and its current version."""

    model_config = ConfigDict(extra="allow")
    FILE: ClassVar[str]
    VERSION: ClassVar[int]

    version: int  # each record class defaults it to its VERSION

    @classmethod
    def _upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """A record of an older `version`, in the current shape."""
        return data

    @classmethod
    def parse(cls, data: Any, source: str = "") -> Self:
        """The record as stored (`source`: where, for errors): upgraded if older."""
        where = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}not a {cls.FILE} record (a JSON object)")
        version = data.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigError(f"{where}{cls.FILE} version {version!r} is not a record version")
        if version > cls.VERSION:
            raise RecordVersionError(
                f"{where}{cls.FILE} version {version} is newer than this Lectern reads "
                f"(up to {cls.VERSION}); upgrade Lectern to use this model"
            )
        try:
            return cls.model_validate({**cls._upgrade(dict(data), version),
                                       "version": cls.VERSION})
        except ValidationError as exc:
            raise ConfigError(f"{where}not a valid {cls.FILE} record: {exc}") from exc

    @classmethod
    def load(cls, folder: Path) -> Self | None:
        """The record in `folder`; None when it has none.

        A file that cannot be read or is not JSON, or does not hold a record this Lectern
        reads, raises ConfigError naming it.
        """
        path = folder / cls.FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: {cls.FILE} cannot be read: {exc}") from exc
        return cls.parse(data, str(path))

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def save(self, folder: Path) -> Path:
        """Write the record into `folder` (atomically); returns its path."""
        path = folder / self.FILE
        text = json.dumps(self.as_dict(), indent=2) + "\n"
        atomic_write(path, lambda f: f.write(text.encode()))
        return path


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
    # retriever.train.reranker_validation.evaluate's report: "overall", "per_source",
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
