"""Lectern.ask and ask_stream pass a SearchFilter down to retrieval."""

from __future__ import annotations

import pytest

from api.service import Lectern
from lectern.settings import IngestSettings, Settings
from lectern.types import AnswerEvent, SearchFilter
from tests.fakes import EchoGenerator, HashEmbedder, OverlapReranker

TEXTS = {
    "library.txt": "The library loan period for books is 28 days. Library books renew twice.",
    "loans.txt": "A library loan of laptops lasts 7 days at the library desk.",
    "fees.txt": "The international tuition fee for the MSc Data Science is EUR 16,800.",
}
QUESTION = "How long is the library loan period for books?"


@pytest.fixture
def generator() -> EchoGenerator:
    return EchoGenerator("The loan period is 28 days [1].")


@pytest.fixture
def service(tmp_path, generator):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in TEXTS.items():
        (folder / name).write_text(text + "\n")
    settings = Settings(
        data_dir=tmp_path / "data",
        ingest=IngestSettings(chunk_tokens=64, chunk_overlap=8, min_section_tokens=8),
        _env_file=None,
    )
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=generator,
                  reranker=OverlapReranker())
    svc.warm_up_generator()
    assert not svc.ingest([folder]).failed
    yield svc
    svc.close()


def document(svc: Lectern, name: str) -> str:
    [doc] = [d.id for d in svc.store.list_documents() if d.source.endswith(name)]
    return doc


def prompted(generator: EchoGenerator) -> str:
    return "\n".join(m["content"] for m in generator.seen[-1])


def test_ask_answers_without_the_kept_out_document(service, generator):
    library = document(service, "library.txt")
    plain = service.ask(QUESTION)
    assert library in [p.document_id for p in plain.passages], "it is what answers"
    assert "28 days" in prompted(generator)
    kept_out = service.ask(QUESTION, filters=SearchFilter(frozenset({library})))
    assert kept_out.passages, "the other documents still answer"
    assert library not in [p.document_id for p in kept_out.passages]
    assert len(generator.seen) == 2 and "28 days" not in prompted(generator)


def test_ask_stream_takes_the_same_filter(service):
    library = document(service, "library.txt")
    events = list(service.ask_stream(QUESTION, filters=SearchFilter(frozenset({library}))))
    assert isinstance(events[-1], AnswerEvent)
    passages = events[-1].result.passages
    assert passages and library not in [p.document_id for p in passages]


def test_keeping_every_document_out_abstains_without_calling_the_generator(service, generator):
    everything = SearchFilter(frozenset(d.id for d in service.store.list_documents()))
    result = service.ask(QUESTION, filters=everything)
    assert result.answer.abstained and result.passages == []
    [final] = list(service.ask_stream(QUESTION, filters=everything))
    assert final.result.answer.abstained and final.result.passages == []
    assert generator.seen == []
