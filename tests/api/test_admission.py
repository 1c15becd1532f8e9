"""The bound on answers in flight: beyond it a question is refused at once, as JSON 503
with Retry-After, on both ask routes; /health still answers; places are given back."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from api.admission import Admission
from api.app import create_app
from api.service import Lectern
from lectern.errors import OverloadedError
from tests.conftest import SAMPLES
from tests.fakes import EchoGenerator, HashEmbedder

QUESTION = {"question": "How much is the international fee for the MSc Data Science?"}


class GatedGenerator(EchoGenerator):
    """Holds every reply until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__("The international tuition fee is EUR 16,800 per year [1].")
        self.entered = threading.Event()
        self.gate = threading.Event()

    def generate(self, messages):
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return super().generate(messages)


def test_a_slot_is_refused_beyond_the_limit_and_given_back_on_error():
    admission = Admission(1)
    with admission.slot():
        assert admission.busy == 1
        full = r"as many questions as it allows \(1\); retry in"
        with pytest.raises(OverloadedError, match=full) as refused, admission.slot():
            pass
        assert refused.value.retry_after >= 1
    with pytest.raises(RuntimeError), admission.slot():
        raise RuntimeError("the answer failed")
    assert admission.busy == 0
    with admission.slot():  # free again
        pass
    with pytest.raises(ValueError, match="at least 1, got 0"):
        Admission(0)


@pytest.fixture
def gated(settings):
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"max_answers_in_flight": 1,
                                                       "rate_limit_per_minute": 0})}
    )
    generator = GatedGenerator()
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=generator)
    svc.ingest([SAMPLES / "pdf", SAMPLES / "markdown"])
    svc.warm_up_generator()
    yield svc, generator
    generator.gate.set()
    svc.store.close()


def test_a_question_beyond_the_limit_is_refused_with_json_and_retry_after(gated):
    svc, generator = gated
    with TestClient(create_app(svc.settings, svc)) as client:
        holder = threading.Thread(target=svc.ask, args=(QUESTION["question"],))
        holder.start()
        assert generator.entered.wait(10)
        for route in ("/api/v1/ask", "/api/v1/ask/stream"):
            refused = client.post(route, json=QUESTION)
            assert refused.status_code == 503, route
            assert refused.headers["content-type"] == "application/json"
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["code"] == "overloaded"
        assert client.get("/health").status_code == 200
        generator.gate.set()
        holder.join(10)
        assert client.post("/api/v1/ask", json=QUESTION).status_code == 200
        stream = client.post("/api/v1/ask/stream", json=QUESTION)
        assert stream.status_code == 200 and "event: done" in stream.text
        assert svc.admission.busy == 0  # a finished stream gives its place back


def test_a_stream_closed_early_gives_its_place_back(gated):
    svc, generator = gated
    generator.gate.set()
    events = svc.ask_stream(QUESTION["question"])
    next(events)
    assert svc.admission.busy == 1
    events.close()
    assert svc.admission.busy == 0
