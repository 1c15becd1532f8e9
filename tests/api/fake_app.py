"""The API app over fake models (hash embedder, echo generator, word-overlap reranker)."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI

from api.app import create_app
from api.service import Lectern
from lectern.settings import ApiSettings, IngestSettings, Settings
from tests.conftest import SAMPLES
from tests.fakes import EchoGenerator, HashEmbedder, OverlapReranker

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPLY = "The international tuition fee is EUR 16,800 per year [1]."


def fake_app(tmp_path: Path, *, samples: bool = False, **api: object) -> FastAPI:
    """An app with `api` settings over the fakes; samples: with the sample PDF and Markdown."""
    settings = Settings(
        data_dir=tmp_path / "data",
        ingest=IngestSettings(max_file_mb=0.05),
        api=ApiSettings(admin_token=TOKEN, **api),
    )
    svc = Lectern(
        settings,
        embedder=HashEmbedder(64),
        generator=EchoGenerator(REPLY),
        reranker=OverlapReranker(),
    )
    if samples:
        svc.ingest([SAMPLES / "pdf", SAMPLES / "markdown"])
    return create_app(settings, svc)


def wait_ready(get: object, path: str = "/health") -> None:
    """Poll `get(path)` (a client's get) until it answers 200; fail after 10 s."""
    for _ in range(200):
        if get(path).status_code == 200:  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("the app never became ready")
