"""The configurations `lectern eval answers` compares: named sets of Settings overrides.

`--config "tuned=models.adapter=/x;generation.max_new_tokens=48"` is the user's settings
with those fields replaced, validated by pydantic (every field's own bounds and the
Settings-wide checks) before any model loads. All configurations answer from one index,
so a field that would change what is indexed (chunking, the encoder, the index type) is
refused rather than silently measured on the wrong index.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from lectern.errors import ConfigError
from lectern.settings import Settings

# Settings the shared index was built with: a configuration may not change them.
INDEX_FIELDS = frozenset(
    {"models.encoder", "models.encoder_backend", "models.cache_dir", "retrieval.index_type"}
)
INDEX_SECTIONS = frozenset({"ingest"})
DEFAULT_NAME = "default"


@dataclass(frozen=True, slots=True)
class AnswerConfig:
    name: str
    overrides: dict[str, Any]  # "section.key" -> the value as given
    settings: Settings


def _value(raw: str) -> Any:
    # A JSON list or object for the list fields (api.cors_origins); "null" for a field
    # whose None means something (models.reranker). Anything else is pydantic's to coerce,
    # so "none" stays the string "none" (models.adapter: the base model, no adapter).
    if raw == "null":
        return None
    if raw.startswith(("[", "{")):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{raw!r} is not JSON: {exc}") from exc
    return raw


def parse_overrides(text: str) -> dict[str, Any]:
    """"a.b=1;c.d=x" -> {"a.b": "1", "c.d": "x"}; each key checked against Settings."""
    out: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        section, dot, field = key.partition(".")
        if not sep or not dot or not field:
            raise ConfigError(f"override {part!r}: write it as section.key=value")
        model = Settings.model_fields.get(section)
        sub = model.annotation if model is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            sections = ", ".join(
                n for n, f in Settings.model_fields.items()
                if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
            )
            raise ConfigError(f"override {part!r}: no settings section {section!r} ({sections})")
        if field not in sub.model_fields:
            raise ConfigError(f"override {part!r}: {section} has no setting {field!r}")
        if key in INDEX_FIELDS or section in INDEX_SECTIONS:
            raise ConfigError(
                f"override {part!r}: every configuration answers from the same index, "
                "which this setting would change; run another evaluation for it"
            )
        if key in out:
            raise ConfigError(f"override {key!r} given twice in {text!r}")
        out[key] = _value(raw.strip())
    return out


def apply_overrides(settings: Settings, overrides: dict[str, Any], name: str) -> Settings:
    """The settings with the overrides in place, validated as a whole."""
    data = settings.model_dump()
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        data[section][field] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"configuration {name!r}: {problems}") from None


def build_configs(
    settings: Settings,
    specs: Sequence[str] = (),
    adapters: Sequence[str] = (),
    generator: str | None = None,
) -> list[AnswerConfig]:
    """The configurations to compare, in the order given.

    specs: "NAME=OVERRIDES" (--config). adapters: one configuration "adapter=REF" each
    (--adapter; "none" is the base model), on `generator` when one is given. A generator
    with no adapter is a configuration "generator=REF" of its own. With none of these,
    the settings as they are, named "default".
    """
    raw: list[tuple[str, dict[str, Any]]] = []
    for spec in specs:
        name, sep, text = spec.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--config {spec!r}: write it as NAME=section.key=value;...")
        raw.append((name.strip(), parse_overrides(text)))
    base = {"models.generator": generator} if generator is not None else {}
    for ref in adapters:
        raw.append((f"adapter={ref}", {**base, **parse_overrides(f"models.adapter={ref}")}))
    if generator is not None and not adapters:
        raw.append((f"generator={generator}", base))
    if not raw:
        raw.append((DEFAULT_NAME, {}))
    names = [n for n, _ in raw]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"configurations named twice: {', '.join(twice)}")
    return [AnswerConfig(n, o, apply_overrides(settings, o, n)) for n, o in raw]
