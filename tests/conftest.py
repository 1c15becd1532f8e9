from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
# A calibration in the background would call the generator behind a test's back; the
# tests of it switch it on themselves.
os.environ.setdefault("LECTERN_CALIBRATION__AUTO_SHARE", "0")

from lectern.settings import IngestSettings, Settings
from tests.fakes import HashEmbedder

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "corpus"
SHARED = ROOT.parent / "shared" / "data"
# Converted models outlive one test run: the GGUF conversion takes half a minute.
MODEL_CACHE = ROOT / ".cache" / "test-models"


def in_ci() -> bool:
    """Whether this run is CI's (CI=true there), where no test may skip."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def free_port() -> int:
    """A loopback port free now (a server started right after binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, alive: Callable[[], bool], timeout_s: float = 600.0) -> None:
    """Until `base`/health answers 200 while `alive()`; the models load in the background."""
    import httpx

    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline and alive():
        try:
            status = httpx.get(f"{base}/health", timeout=5).status_code
        except httpx.HTTPError:  # not listening yet
            status = None
        if status == 200:
            return
        time.sleep(0.5)
    raise AssertionError(f"the server did not become ready (last /health status: {status})")


def require_or_skip(condition: object, reason: str, *, allow_module_level: bool = False) -> None:
    """Skip with `reason` unless `condition` holds; in CI, fail loudly instead.

    CI must run every test: a missing browser or data set there is a broken setup, not a
    reason to pass quietly. allow_module_level: call at import time to skip a whole module
    (in CI the module then fails to collect, which fails the run).
    """
    if condition:
        return
    if in_ci():
        pytest.fail(f"required in CI (CI=true), so not skipped: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """In CI a skipped test fails, except one marked `gpu`: CI's machines have no GPU."""
    report = yield
    expected_failure = hasattr(report, "wasxfail")  # xfail reports count as skipped too
    if report.skipped and not expected_failure and in_ci() and not item.get_closest_marker("gpu"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (only `gpu` tests may skip there): {report.longrepr}"
    return report


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        ingest=IngestSettings(chunk_tokens=64, chunk_overlap=8, min_section_tokens=8),
    )


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder(dimension=64)


@pytest.fixture
def service(settings: Settings, embedder: HashEmbedder):
    from api.service import Lectern

    svc = Lectern(settings, embedder=embedder)
    svc.warm_up()
    yield svc
    svc.store.close()


def write_docx(path: Path, heading: str, paragraphs: list[str]) -> Path:
    import docx

    d = docx.Document()
    d.add_heading(heading, level=1)
    for p in paragraphs:
        d.add_paragraph(p)
    d.save(str(path))
    return path


def write_pdf(path: Path, pages: list[tuple[str, str]]) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    for heading, body in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 18)
        pdf.cell(0, 12, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, body)
    pdf.output(str(path))
    return path
