"""Lectern.ask and Lectern.ask_stream: the same answer, and an honest abstention."""

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.service import Lectern
from lectern.errors import NotReadyError
from lectern.settings import ApiSettings, Settings
from lectern.types import AnswerEvent, TokenEvent
from model.answer import IDK
from tests.conftest import SAMPLES
from tests.fakes import EchoGenerator, HashEmbedder

TOKEN = "test-admin-token-0123456789"


class NeverCalled(EchoGenerator):
    def generate(self, messages):
        raise AssertionError("the generator was called with nothing to answer from")


def empty_service(tmp_path) -> Lectern:
    settings = Settings(data_dir=tmp_path / "data", api=ApiSettings(admin_token=TOKEN))
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=NeverCalled())
    svc.warm_up_generator()
    return svc


def test_an_empty_store_abstains_without_calling_the_generator(tmp_path):
    svc = empty_service(tmp_path)
    result = svc.ask("What does CSC 340 require?")
    assert result.answer.abstained and result.answer.text == IDK
    assert result.answer.citations == [] and result.passages == []
    events = list(svc.ask_stream("What does CSC 340 require?"))
    assert len(events) == 1 and isinstance(events[0], AnswerEvent)
    assert events[0].result.answer.abstained and events[0].result.answer.text == IDK
    svc.store.close()


def test_the_api_abstains_on_an_empty_store(tmp_path):
    svc = empty_service(tmp_path)
    with TestClient(create_app(svc.settings, svc)) as client:
        svc.warm_up()
        body = client.post("/api/v1/ask", json={"question": "Who teaches CSC 340?"}).json()
        assert body["abstained"] is True and body["answer"] == IDK and body["citations"] == []
        stream = client.post("/api/v1/ask/stream", json={"question": "Who teaches CSC 340?"})
        assert stream.status_code == 200
        kinds = [line.removeprefix("event: ") for line in stream.text.splitlines()
                 if line.startswith("event: ")]
        assert kinds == ["citations", "done"]
        assert f'"answer": "{IDK}"' in stream.text and '"abstained": true' in stream.text


def test_ask_and_ask_stream_give_the_same_answer(settings):
    reply = "The international tuition fee is EUR 16,800 per year [1]."
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=EchoGenerator(reply))
    svc.ingest([SAMPLES / "pdf", SAMPLES / "markdown"])
    svc.warm_up_generator()
    question = "How much is the international fee for the MSc Data Science?"
    whole = svc.ask(question)
    events = list(svc.ask_stream(question))
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert isinstance(events[-1], AnswerEvent) and len(tokens) == len(reply.split(" "))
    assert "".join(tokens) == reply
    streamed = events[-1].result
    assert streamed.answer == whole.answer and not whole.answer.abstained
    assert [c.id for c in streamed.passages] == [c.id for c in whole.passages]
    assert "16,800" in whole.answer.text and whole.answer.citations
    svc.store.close()


def test_asking_before_the_generator_is_loaded_is_not_ready(settings):
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=EchoGenerator("x"))
    svc.ingest([SAMPLES / "markdown"])
    with pytest.raises(NotReadyError):
        svc.ask("What are the prerequisites for CSC 340?")
    with pytest.raises(NotReadyError):
        list(svc.ask_stream("What are the prerequisites for CSC 340?"))
    svc.store.close()
