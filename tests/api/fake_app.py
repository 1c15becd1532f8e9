"""The API app over fake models (hash embedder, echo generator, word-overlap reranker)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.service import Lectern
from lectern.settings import ApiSettings, IngestSettings, Settings
from tests.conftest import SAMPLES
from tests.fakes import CountingEchoGenerator, HashEmbedder, OverlapReranker

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
        generator=CountingEchoGenerator(REPLY),
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


@contextmanager
def served(app: FastAPI, **options: object) -> Iterator[str]:
    """`app` under a real uvicorn on a free loopback port (`options`: uvicorn.Config's),
    ready; yields its base URL and stops it after."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **options))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the kernel picks the port: no race with other tests
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            if server.started or not thread.is_alive():
                break
            thread.join(0.05)
        assert server.started, "uvicorn did not start"
        wait_ready(lambda path: httpx.get(url + path, timeout=15))
        yield url
    finally:
        # Stopping is the shutdown tests' subject, not this helper's: a bound, no assert.
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
