"""SIGTERM to a real `lectern serve` while it parses an upload: a bounded exit, no orphan file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL_CACHE, free_port, wait_healthy
from tests.ingest.files import slow_text

pytestmark = pytest.mark.integration
TOKEN = "shutdown-admin-token-0000"


def serve(data: Path, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "LECTERN_DATA_DIR": str(data),
        "LECTERN_MODELS__CACHE_DIR": str(MODEL_CACHE),  # the one-time GGUF conversion
        "LECTERN_API__ADMIN_TOKEN": TOKEN,
        "LECTERN_API__PORT": str(port),
        # The ingest below outlasts the 3 s of grace: it is stopped after 2, and the
        # last 3 s are for closing.
        "LECTERN_API__SHUTDOWN_TIMEOUT_S": "6",
    }
    lectern = Path(sys.executable).with_name("lectern")
    with log.open("wb") as out:  # a file, not a pipe nobody reads that could fill up
        return subprocess.Popen([str(lectern), "serve"], env=env, stdout=out, stderr=out)


def test_sigterm_during_an_ingest_exits_within_10_s_and_leaves_no_orphan_upload(tmp_path):
    data, port = tmp_path / "data", free_port()
    # Under every cap, and half a minute of parsing: partition_text tags each paragraph.
    upload = slow_text(tmp_path / "handbook.txt", 20_000)
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = serve(data, port, log)
    try:
        wait_healthy(base, lambda: proc.poll() is None)
        answered: list[httpx.Response | Exception] = []

        def send() -> None:
            try:
                with upload.open("rb") as f:
                    answered.append(httpx.post(
                        f"{base}/api/v1/documents",
                        files={"files": (upload.name, f, "text/plain")},
                        headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=300,
                    ))
            except httpx.HTTPError as exc:  # the server went away mid-request
                answered.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        kept = data / "uploads" / upload.name
        deadline = time.monotonic() + 60
        while not kept.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kept.exists(), "the upload never reached the ingest step"
        time.sleep(1.0)  # the parse is under way; it needs half a minute more
        assert not answered, f"the ingest ended before SIGTERM: {answered}"

        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"`lectern serve` still ran 10 s after SIGTERM during an ingest:\n{tail}")
        sender.join(timeout=10)
        # The ingest was stopped before uvicorn's period ended: the upload answers with the
        # API's JSON error for its file, not uvicorn's plain-text 500 for a cancelled task.
        assert len(answered) == 1 and isinstance(answered[0], httpx.Response), answered
        assert answered[0].status_code == 422, answered[0].text
        assert "shutting down" in answered[0].json()["error"]["message"]
        left = sorted(p.name for p in (data / "uploads").iterdir())
        assert left == [], f"orphan uploads after the shutdown: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
