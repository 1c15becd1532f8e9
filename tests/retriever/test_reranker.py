"""The Reranker contract, run against every implementation, and the cross-encoder's own."""

import json
import logging
import re
import shutil

import numpy as np
import pytest

from api.service import Lectern
from lectern.errors import ModelNotFoundError, NotReadyError
from lectern.protocols import Reranker
from lectern.types import Chunk, ScoredChunk
from retriever.cross_encoder import (
    CONFIG_FILE,
    SHIPPED_RERANKER,
    CrossEncoderReranker,
    QueryFocus,
    fuse,
)
from retriever.records import RerankerRecord
from tests.fakes import EchoGenerator, OverlapReranker

PASSAGES = [
    ("Fees", "The international tuition fee for the MSc Data Science is EUR 16,800 per year."),
    ("CSC 340", "CSC 340 Machine Learning requires CSC 210 and MAT 220 and carries 6 ECTS."),
    ("Housing", "Apply for student housing before 31 May for the autumn semester."),
    ("Library", "The loan period for library books is 28 days and can be renewed twice."),
    ("", "The Student Service Desk is open Monday to Thursday from 09:00 to 16:30."),
]
QUERY = "How long can I keep library books?"


def hits() -> list[ScoredChunk]:
    return [
        ScoredChunk(Chunk(i + 1, f"d{i}", text, f"s{i}.md", title), 1.0 / (i + 1))
        for i, (title, text) in enumerate(PASSAGES)
    ]


@pytest.fixture(scope="module")
def fresh_model(tmp_path_factory):
    """The packaged MiniLM, cut to one layer, with a freshly initialised scoring head."""
    from lectern.settings import DEFAULT_ENCODER
    from model.registry import resolve
    from retriever.train.reranker_fit import new_cross_encoder

    folder = tmp_path_factory.mktemp("reranker")
    ce, _ = new_cross_encoder(resolve(DEFAULT_ENCODER).folder, 1, 64)
    ce.save_pretrained(str(folder))
    return folder


def overlap(_folder) -> Reranker:
    return OverlapReranker()


def cross_encoder(backend: str):
    def make(folder) -> Reranker:
        reranker = CrossEncoderReranker(folder, backend=backend, max_length=64, batch_size=2)
        reranker.warm_up()
        return reranker

    return make


IMPLEMENTATIONS = {
    "overlap": overlap,
    "cross-encoder-torch": cross_encoder("torch"),
    "cross-encoder-onnx": cross_encoder("onnx"),
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def reranker(request) -> Reranker:
    folder = request.getfixturevalue("fresh_model") if "cross" in request.param else None
    return IMPLEMENTATIONS[request.param](folder)


def test_is_a_reranker(reranker):
    assert isinstance(reranker, Reranker)


@pytest.mark.parametrize("k", [1, 3, 100])
def test_top_k_of_the_given_chunks_best_first(reranker, k):
    given = hits()
    out = reranker.rerank(QUERY, given, k)
    assert len(out) == min(k, len(given))
    scores = [h.score for h in out]
    assert scores == sorted(scores, reverse=True)
    assert all(np.isfinite(scores))
    ids = [h.chunk.id for h in out]
    assert len(set(ids)) == len(ids) and set(ids) <= {h.chunk.id for h in given}


def test_nothing_in_or_nothing_wanted_gives_nothing(reranker):
    assert reranker.rerank(QUERY, [], 5) == []
    assert reranker.rerank(QUERY, hits(), 0) == []


def test_a_chunk_scores_the_same_alone_and_in_a_batch(reranker):
    together = {h.chunk.id: h.score for h in reranker.rerank(QUERY, hits(), 100)}
    for hit in hits():
        alone = reranker.rerank(QUERY, [hit], 1)[0]
        # int8 activations are quantized per batch, so padding moves scores a little
        assert alone.score == pytest.approx(together[hit.chunk.id], abs=0.05)


def test_torch_and_onnx_agree(fresh_model):
    torch_r, onnx_r = cross_encoder("torch")(fresh_model), cross_encoder("onnx")(fresh_model)
    a = {h.chunk.id: h.score for h in torch_r.rerank(QUERY, hits(), 10)}
    b = {h.chunk.id: h.score for h in onnx_r.rerank(QUERY, hits(), 10)}
    assert a.keys() == b.keys()
    assert max(abs(a[i] - b[i]) for i in a) < 0.05


def test_overlap_reranker_puts_the_answer_first():
    assert OverlapReranker().rerank("library books loan period", hits(), 1)[0].chunk.id == 4


def test_constructor_checks_its_arguments(tmp_path, fresh_model):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        CrossEncoderReranker(tmp_path)
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        CrossEncoderReranker(fresh_model, batch_size=0)
    with pytest.raises(ValueError, match="max_length must be in .*got 4"):
        CrossEncoderReranker(fresh_model, max_length=4)
    with pytest.raises(ValueError, match="prior_weight must be in .*got -1"):
        CrossEncoderReranker(fresh_model, prior_weight=-1)
    with pytest.raises(ValueError, match="'tensorflow'"):
        CrossEncoderReranker(fresh_model, backend="tensorflow")  # type: ignore[arg-type]
    cold = CrossEncoderReranker(fresh_model, backend="torch")
    with pytest.raises(NotReadyError):
        cold.rerank(QUERY, hits(), 3)
    cold.warm_up()
    model = cold._model
    cold.warm_up()
    assert cold._model is model, "warm_up is idempotent"


def test_focus_keeps_the_heading_and_the_matching_sentences():
    focus = QueryFocus()
    filler = " ".join(f"Sentence {i} is about nothing in particular." for i in range(40))
    body = f"{filler} The library loan period is 28 days. Renewals are allowed twice. {filler}"

    def word_starts(head, text):  # one "token" per word
        return [m.start() for m in re.finditer(r"\S+", f"{head}\n{text}" if head else text)]

    short = ("Title", "Short text.")
    assert focus.apply("loan period", [short], 50, [word_starts(*short)]) == ["Title\nShort text."]
    rules = ("Library rules", body)
    (text,) = focus.apply("library loan period", [rules], 30, [word_starts(*rules)])
    assert text.startswith("Library rules\n")
    assert "loan period is 28 days" in text and "Renewals are allowed twice." in text
    assert len(text.split()) <= 30


def test_service_reranks_the_fused_candidates(settings, embedder, tmp_path):
    (tmp_path / "docs").mkdir()
    for i, (title, text) in enumerate(PASSAGES):
        (tmp_path / "docs" / f"p{i}.md").write_text(f"# {title or 'Desk'}\n\n{text}\n")
    reranker = OverlapReranker()
    svc = Lectern(settings, embedder=embedder, generator=EchoGenerator(), reranker=reranker)
    try:
        svc.ingest([tmp_path / "docs"])
        top = svc.search("library books loan period renewed", top_k=2)
        assert reranker.calls == 1 and len(top) == 2
        assert "library" in top[0].chunk.text
        assert [h.score for h in top] == sorted((h.score for h in top), reverse=True)
        svc.search("library books", top_k=2, rerank=False)
        assert reranker.calls == 1
        wide = svc.search("library", top_k=8)
        assert len(wide) == len(PASSAGES)
        assert reranker.candidates[-1] == min(len(PASSAGES), settings.retrieval.rerank_candidates)
        svc.warm_up_generator()
        calls = reranker.calls
        settings.generation.rerank_candidates = 2
        result = svc.ask("What is the library loan period for books?")
        assert reranker.calls == calls + 1
        assert reranker.candidates[-1] == 2, "answering reranks its own, shorter, candidate list"
        assert result.timings.rerank_ms >= 0 and result.timings.retrieve_ms > 0
    finally:
        svc.store.close()


def test_service_without_any_reranker_says_so_and_serves(
    settings, embedder, caplog, monkeypatch, tmp_path
):
    monkeypatch.setattr("retriever.cross_encoder.SHIPPED_RERANKER", tmp_path / "none")
    caplog.set_level(logging.INFO, logger="api.service")
    svc = Lectern(settings, embedder=embedder)
    try:
        svc.warm_up()
        assert svc.reranker is None
        assert any("no reranker at" in r.getMessage() for r in caplog.records)
        assert svc.search("anything", top_k=3) == []
    finally:
        svc.store.close()


def test_service_loads_the_trained_reranker_from_the_model_cache(settings, embedder, fresh_model):
    shutil.copytree(fresh_model, settings.model_cache_dir / "reranker")
    svc = Lectern(settings.model_copy(deep=True), embedder=embedder)
    try:
        svc.warm_up()
        assert isinstance(svc.reranker, CrossEncoderReranker)
    finally:
        svc.store.close()


def test_a_locally_trained_reranker_wins_over_the_shipped_one(settings, fresh_model, tmp_path):
    from model import prepare

    shipped = tmp_path / "shipped"
    shutil.copytree(fresh_model, shipped)
    assert prepare.reranker(settings, shipped=shipped) == shipped
    assert prepare.reranker(settings, shipped=tmp_path / "missing") is None
    shutil.copytree(fresh_model, settings.model_cache_dir / "reranker")
    assert prepare.reranker(settings, shipped=shipped) == settings.model_cache_dir / "reranker"


def test_service_serves_the_shipped_reranker_when_none_is_trained(settings, embedder):
    if not (SHIPPED_RERANKER / "config.json").is_file():
        pytest.fail(f"the shipped reranker is missing from {SHIPPED_RERANKER}")
    svc = Lectern(settings, embedder=embedder)
    try:
        svc.warm_up()
        assert isinstance(svc.reranker, CrossEncoderReranker)
        assert svc.reranker.model_dir == SHIPPED_RERANKER
    finally:
        svc.store.close()


def test_the_shipped_reranker_is_onnx_only_and_says_so_for_torch():
    record = RerankerRecord.load(SHIPPED_RERANKER)
    assert record is not None
    info = record.as_dict()
    assert "squad" not in json.dumps(info["data"]["sources"]).lower()
    assert info["validation"]["overall"]["reranked"]["mrr@10"] > (
        info["validation"]["overall"]["bm25"]["mrr@10"]
    )
    with pytest.raises(ModelNotFoundError, match="no torch weights"):
        CrossEncoderReranker(SHIPPED_RERANKER, backend="torch").warm_up()
    assert CrossEncoderReranker(SHIPPED_RERANKER).prior_weight == info["prior_weight"]
    onnx = CrossEncoderReranker(SHIPPED_RERANKER, prior_weight=0.0)  # the logits alone
    onnx.warm_up()
    best = onnx.rerank(QUERY, hits(), 1)[0]
    assert "loan period" in best.chunk.text


def test_fuse_weighs_the_logits_against_the_incoming_rank():
    logits = np.array([0.0, 0.0, 5.0, 0.0], dtype=np.float32)
    assert fuse(logits, 0.0) is logits
    assert fuse(logits[:1], 2.0)[0] == 0.0
    light = fuse(logits, 0.25)
    assert int(np.argmax(light)) == 2, "a clear reranker verdict overrides a mild prior"
    assert light[0] > light[1] > light[3], "among equal logits the incoming order decides"
    heavy = fuse(logits, 10.0)
    assert int(np.argmax(heavy)) == 0, "a heavy prior keeps the first stage's order"
    assert fuse(logits * 100, 0.25).tolist() == pytest.approx(light.tolist(), abs=1e-4), (
        "standardized: the logits' scale does not change the weighting"
    )


def test_rerank_applies_the_prior_weight_from_the_model_record(fresh_model, tmp_path):
    folder = tmp_path / "weighted"
    shutil.copytree(fresh_model, folder)
    (folder / CONFIG_FILE).write_text(json.dumps({"prior_weight": 10.0, "config": {}}))
    weighted = CrossEncoderReranker(folder, backend="torch")
    weighted.warm_up()
    assert weighted.prior_weight == 10.0
    given = hits()[:3]  # 10 * ln(3/2) exceeds any spread of three standardized logits
    assert [h.chunk.id for h in weighted.rerank(QUERY, given, 3)] == [h.chunk.id for h in given]
    assert CrossEncoderReranker(folder, prior_weight=0.0).prior_weight == 0.0
