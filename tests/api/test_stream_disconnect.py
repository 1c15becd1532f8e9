"""A client that goes away mid-answer gives back its place among the answers in flight
at once, on both streaming routes (not when the garbage collector finds the stream)."""

import gc
import time
from collections.abc import Iterator

import httpx
import pytest

from api.app import create_app
from api.service import Lectern
from lectern.settings import ApiSettings, GenerationSettings, IngestSettings, Settings
from tests.api.fake_app import TOKEN, served
from tests.conftest import SAMPLES
from tests.fakes import EchoGenerator, HashEmbedder, OverlapReranker


class Slow(EchoGenerator):
    """Writes a long reply, a word every 50 ms: the client leaves long before its end."""

    def stream(self, messages) -> Iterator[str]:
        for i in range(400):
            time.sleep(0.05)
            yield f"word{i} "


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("disconnect") / "data",
                        ingest=IngestSettings(max_file_mb=0.05),
                        api=ApiSettings(admin_token=TOKEN, rate_limit_per_minute=0),
                        # Every question is answered (not abstained on): the test is about
                        # a stream the client leaves, so there must be one to leave.
                        generation=GenerationSettings(min_relevance=-1))
    svc = Lectern(settings, HashEmbedder(64), Slow("x"), OverlapReranker())
    report = svc.ingest([SAMPLES / "markdown"])
    assert all(r.status == "added" for r in report.results), report
    app = create_app(settings, svc)
    with served(app) as base:
        yield base, svc


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/v1/ask/stream", {"question": "What do international students pay in tuition?"}),
     ("/v1/chat/completions", {"model": "lectern", "stream": True, "messages": [
         {"role": "user", "content": "What do international students pay in tuition?"}]})],
)
def test_a_client_leaving_mid_stream_frees_its_slot(url, path, body):
    base, svc = url
    gc.disable()  # the slot must come back without the collector's help
    try:
        with httpx.Client(timeout=10) as client, client.stream("POST", base + path,
                                                               json=body) as response:
            assert response.status_code == 200
            chunks = response.iter_text()
            first = next(chunks)
            assert svc.admission.busy == 1, first
        for _ in range(100):  # the connection is closed: the slot comes back
            if svc.admission.busy == 0:
                break
            time.sleep(0.05)
        assert svc.admission.busy == 0
    finally:
        gc.enable()
