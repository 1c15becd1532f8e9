"""A real `lectern serve` for the benchmarks that drive one over HTTP (load, abuse).

The server gets a data dir of the caller's, the models of var/models (the one-time GGUF
conversion), a free loopback port and its log beside the data dir (a file: no pipe to fill).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LECTERN = Path(sys.executable).with_name("lectern")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(data: Path, **settings: str) -> dict[str, str]:
    """This environment, with the data dir, the model cache and `settings` (LECTERN_*)."""
    return {**os.environ, "LECTERN_DATA_DIR": str(data),
            "LECTERN_MODELS__CACHE_DIR": str(ROOT / "var" / "models"), **settings}


def ingest_samples(data: Path) -> None:
    subprocess.run([str(LECTERN), "ingest", str(ROOT / "samples" / "corpus")],
                   env=env_for(data), check=True, stdout=subprocess.DEVNULL)


def log_of(data: Path) -> Path:
    return data.parent / f"{data.name}-serve.log"


def start(data: Path, **settings: str) -> tuple[subprocess.Popen, str]:
    """A server process on `data`, and its URL (not yet answering)."""
    port = free_port()
    with log_of(data).open("ab") as log:
        proc = subprocess.Popen([str(LECTERN), "serve", "--port", str(port)],
                                env=env_for(data, **settings), stdout=log, stderr=log)
    return proc, f"http://127.0.0.1:{port}"


def wait_answering(proc: subprocess.Popen, url: str, ready: bool = True) -> float:
    """Seconds until /health answers (200 if `ready`; any status: the lifespan start-up ran)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 600:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=5).status_code == 200 or not ready:
                return round(time.monotonic() - t0, 1)
        time.sleep(0.3)
    raise RuntimeError("the server did not answer within 600 s")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still there a minute later."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def serving(data: Path, **settings: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """A ready server on `data`; yields (process, url) and stops it after."""
    proc, url = start(data, **settings)
    try:
        wait_answering(proc, url)
        yield proc, url
    finally:
        stop(proc)
