"""Versioned JSON records kept beside trained weights and fitted calibrations.

Every record carries a version. A record without one is version 1, written before
records had versions; an older version is brought to the current shape as it is
loaded, and a newer one is refused: this Lectern cannot know what its fields mean.
Fields that no code reads are kept as they are, so loading and saving loses nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from lectern.errors import ConfigError
from lectern.files import atomic_write


class RecordVersionError(ConfigError):
    """A record of a newer version than this Lectern reads."""


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
