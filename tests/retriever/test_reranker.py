"""The Reranker contract, run against every implementation; the cross-encoder's own tests;
which reranker the service serves, and that it serves without one."""

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from api.service import Lectern
from lectern.errors import ModelNotFoundError, NotReadyError
from lectern.protocols import Reranker
from lectern.settings import Settings
from lectern.types import Chunk, ScoredChunk
from model import prepare
from retriever.cross_encoder import (
    CONFIG_FILE,
    SHIPPED_RERANKER,
    CrossEncoderReranker,
    QueryFocus,
    export_onnx,
    fuse,
)
from retriever.records import RerankerRecord
from tests.fakes import EchoGenerator, OverlapReranker
from tests.threads import run_together

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
    import torch

    from lectern.settings import DEFAULT_ENCODER
    from model.registry import resolve
    from retriever.train.reranker_fit import new_cross_encoder

    folder = tmp_path_factory.mktemp("reranker")
    with torch.random.fork_rng():  # a seeded head: an unlucky draw made torch and int8 ONNX
        torch.manual_seed(0)  # differ by 0.09 here, past test_torch_and_onnx_agree's bound
        ce, _ = new_cross_encoder(resolve(DEFAULT_ENCODER).folder, 1, 64)
    ce.save_pretrained(str(folder))
    export_onnx(folder)  # once: every copy of the folder carries its ONNX file
    return folder


def cross_encoder(backend: str, **kwargs):
    def make(folder) -> CrossEncoderReranker:
        reranker = CrossEncoderReranker(
            folder, backend=backend, max_length=64, batch_size=2, **kwargs
        )
        reranker.warm_up()
        return reranker

    return make


def shipped(**kwargs):
    def make(_folder) -> CrossEncoderReranker:
        reranker = CrossEncoderReranker(SHIPPED_RERANKER, **kwargs)  # as served: onnx
        reranker.warm_up()
        return reranker

    return make


# Every Reranker in the product: the cross-encoder on both backends, and the shipped
# weights as the service loads them (int8 ONNX, the record's prior weight).
IMPLEMENTATIONS = {
    "cross-encoder-torch": cross_encoder("torch"),
    "cross-encoder-onnx": cross_encoder("onnx"),
    "shipped-onnx": shipped(),
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def reranker(request) -> Reranker:
    folder = None if request.param == "shipped-onnx" else request.getfixturevalue("fresh_model")
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


def test_the_given_chunks_come_back_unchanged_with_the_reranker_s_scores(reranker):
    given = hits()
    out = reranker.rerank(QUERY, given, len(given))
    assert sorted(h.chunk.id for h in out) == [h.chunk.id for h in given]
    by_id = {h.chunk.id: h.chunk for h in given}
    assert all(h.chunk == by_id[h.chunk.id] for h in out)
    assert [h.score for h in out] != [h.score for h in given], "scores are the reranker's"


# Without the prior (weight 0) a score is the model's logit for the pair alone.
LOGITS_ONLY = {
    "cross-encoder-torch": cross_encoder("torch", prior_weight=0.0),
    "cross-encoder-onnx": cross_encoder("onnx", prior_weight=0.0),
    "shipped-onnx": shipped(prior_weight=0.0),
}


@pytest.mark.parametrize("name", list(LOGITS_ONLY))
def test_a_chunk_scores_the_same_alone_and_in_a_batch(name, request):
    folder = None if name == "shipped-onnx" else request.getfixturevalue("fresh_model")
    reranker = LOGITS_ONLY[name](folder)
    together = {h.chunk.id: h.score for h in reranker.rerank(QUERY, hits(), 100)}
    assert len(together) == len(PASSAGES)
    # int8 activations are quantized per batch, so padding moves scores a little: by up
    # to 3% of the logits' spread on the shipped weights (whose logits span about 9).
    spread = max(together.values()) - min(together.values())
    for hit in hits():
        alone = reranker.rerank(QUERY, [hit], 1)[0]
        assert alone.score == pytest.approx(together[hit.chunk.id], abs=0.05 + 0.03 * spread)


def test_threads_reranking_at_once_get_what_one_thread_gets(reranker):
    # Passages of very different lengths: every batch pads and truncates differently, so
    # a tokenizer shared between threads hands one thread another's settings.
    rng = np.random.default_rng(7)
    vocab = "library opens at nine fees for international students course needs calculus"
    words = vocab.split()
    jobs = []
    for j in range(12):
        chunks = [
            ScoredChunk(Chunk(j * 20 + i, f"d{i}", " ".join(
                rng.choice(words, size=int(rng.integers(3, 300)))) + ".", f"s{i}", f"T{i}"), 1.0)
            for i in range(20)
        ]
        jobs.append((" ".join(rng.choice(words, size=int(rng.integers(2, 20)))), chunks))

    def ranked(job: int) -> list[int]:
        query, chunks = jobs[job]
        return [h.chunk.id for h in reranker.rerank(query, chunks, 5)]

    alone = [ranked(j) for j in range(len(jobs))]
    for per_thread in run_together(ranked, len(jobs)):
        assert per_thread == alone


def test_torch_and_onnx_agree(fresh_model):
    torch_r, onnx_r = cross_encoder("torch")(fresh_model), cross_encoder("onnx")(fresh_model)
    a = {h.chunk.id: h.score for h in torch_r.rerank(QUERY, hits(), 10)}
    b = {h.chunk.id: h.score for h in onnx_r.rerank(QUERY, hits(), 10)}
    assert a.keys() == b.keys()
    assert max(abs(a[i] - b[i]) for i in a) < 0.05


def test_fake_overlap_reranker_puts_the_passage_with_the_query_words_first():
    """A check of the fake, not of product code: the service tests below rely on it."""
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


def write_docs(folder):
    folder.mkdir()
    for i, (title, text) in enumerate(PASSAGES):
        (folder / f"p{i}.md").write_text(f"# {title or 'Desk'}\n\n{text}\n")
    return folder


LIBRARY = "p3.md"  # the file of PASSAGES[3], what LIBRARY_QUERY asks for
LIBRARY_QUERY = "library books loan period renewed"


def file_of(chunk: Chunk) -> str:
    return Path(chunk.source).name


def test_service_reranks_the_fused_candidates(settings, embedder, tmp_path):
    reranker = OverlapReranker()
    svc = Lectern(settings, embedder=embedder, generator=EchoGenerator(), reranker=reranker)
    try:
        svc.ingest([write_docs(tmp_path / "docs")])
        top = svc.search(LIBRARY_QUERY, top_k=2)
        assert reranker.calls == 1 and len(top) == 2
        assert file_of(top[0].chunk) == LIBRARY
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
        assert result.passages and file_of(result.passages[0]) == LIBRARY
    finally:
        svc.store.close()


def test_service_without_any_reranker_says_so(settings, embedder, caplog, monkeypatch, tmp_path):
    monkeypatch.setattr("retriever.cross_encoder.SHIPPED_RERANKER", tmp_path / "none")
    caplog.set_level(logging.INFO, logger="api.components")
    svc = Lectern(settings, embedder=embedder)
    try:
        svc.warm_up()
        assert svc.reranker is None
        assert any("no reranker at" in r.getMessage() for r in caplog.records)
    finally:
        svc.store.close()


# The three ways a search goes unreranked; each must serve the first stage's hits.
NOT_RERANKED = ["no reranker exists", "rerank=False asked", "reranking off in the settings"]


def unreranked_service(how, settings, embedder, monkeypatch, tmp_path):
    """A service over PASSAGES that does not rerank, `how` says why; and its reranker."""
    monkeypatch.setattr("retriever.cross_encoder.SHIPPED_RERANKER", tmp_path / "none")
    reranker = None if how == "no reranker exists" else OverlapReranker()
    if how == "reranking off in the settings":
        settings.retrieval.rerank = False
    svc = Lectern(settings, embedder=embedder, generator=EchoGenerator(), reranker=reranker)
    svc.ingest([write_docs(tmp_path / "docs")])
    assert svc.reranker is reranker
    return svc, reranker


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
@pytest.mark.parametrize("how", NOT_RERANKED)
def test_search_without_reranking_serves_the_first_stage_hits(
    how, mode, settings, embedder, monkeypatch, tmp_path
):
    svc, reranker = unreranked_service(how, settings, embedder, monkeypatch, tmp_path)
    try:
        rerank = False if how == "rerank=False asked" else None
        top = svc.search(LIBRARY_QUERY, top_k=3, mode=mode, rerank=rerank)
        assert top and file_of(top[0].chunk) == LIBRARY
        assert top == svc.corpus.retriever(mode).retrieve(LIBRARY_QUERY, 3), (
            "not reranked: exactly the first stage's hits, in its order"
        )
        wide = svc.search("the student", top_k=len(PASSAGES), mode=mode, rerank=rerank)
        assert wide == svc.corpus.retriever(mode).retrieve("the student", len(PASSAGES))
        assert len(wide) >= 2, "a query matching several passages gets several"
        assert reranker is None or reranker.calls == 0
    finally:
        svc.store.close()


@pytest.mark.parametrize("how", ["no reranker exists", "reranking off in the settings"])
def test_ask_without_reranking_answers_from_the_first_stage_hits(
    how, settings, embedder, monkeypatch, tmp_path
):
    svc, reranker = unreranked_service(how, settings, embedder, monkeypatch, tmp_path)
    try:
        svc.warm_up_generator()
        result = svc.ask("What is the library loan period for books?")
        assert result.passages, "the passages retrieved are what the answer is made from"
        assert file_of(result.passages[0]) == LIBRARY
        assert svc.generator.seen, "with passages to answer from, the model is asked"
        assert result.timings.rerank_ms == 0.0, "nothing was reranked"
        assert reranker is None or reranker.calls == 0
    finally:
        svc.store.close()


def copy_reranker(source, folder, prior_weight: float):
    """A copy of a reranker folder whose record tells it apart (by its prior weight)."""
    shutil.copytree(source, folder)
    (folder / CONFIG_FILE).write_text(json.dumps({"prior_weight": prior_weight, "config": {}}))
    return folder


SHIPPED_PRIOR = RerankerRecord.load(SHIPPED_RERANKER).prior_weight


@pytest.mark.parametrize(
    ("named", "trained", "serves"),
    [
        (True, True, "named"),  # LECTERN_MODELS__RERANKER wins over everything
        (False, True, "trained"),  # then <model cache>/reranker
        (False, False, "shipped"),  # then the one shipped with the project
    ],
)
def test_service_serves_the_named_then_the_trained_then_the_shipped_reranker(
    named, trained, serves, embedder, fresh_model, monkeypatch, tmp_path
):
    if not (SHIPPED_RERANKER / "config.json").is_file():
        pytest.fail(f"the shipped reranker is missing from {SHIPPED_RERANKER}")
    folders = {"shipped": SHIPPED_RERANKER}
    if named:
        folders["named"] = copy_reranker(fresh_model, tmp_path / "named", 0.5)
        monkeypatch.setenv("LECTERN_MODELS__RERANKER", str(folders["named"]))
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)
    if trained:
        folders["trained"] = copy_reranker(
            fresh_model, prepare.default_reranker_dir(settings), 1.5
        )
    assert settings.model_cache_dir / "reranker" == prepare.default_reranker_dir(settings)
    priors = {"named": 0.5, "trained": 1.5, "shipped": SHIPPED_PRIOR}
    assert len(set(priors.values())) == 3, "the records tell the three apart"
    svc = Lectern(settings, embedder=embedder)
    try:
        svc.warm_up()
        served = svc.reranker
        assert isinstance(served, CrossEncoderReranker)
        assert served.model_dir == folders[serves]
        assert served.prior_weight == served.record.prior_weight == priors[serves]
        assert served.backend == "onnx"
        assert svc.corpus.reranker is served, "the corpus searches with it"
    finally:
        svc.store.close()


def test_service_loads_the_trained_reranker_from_the_model_cache(settings, embedder, fresh_model):
    cached = copy_reranker(fresh_model, settings.model_cache_dir / "reranker", 1.5)
    svc = Lectern(settings.model_copy(deep=True), embedder=embedder)
    try:
        svc.warm_up()
        assert isinstance(svc.reranker, CrossEncoderReranker)
        assert svc.reranker.model_dir == cached != SHIPPED_RERANKER
        assert svc.reranker.record == RerankerRecord.load(cached)
        assert svc.reranker.record != RerankerRecord.load(SHIPPED_RERANKER)
        assert svc.reranker.prior_weight == 1.5 != SHIPPED_PRIOR
    finally:
        svc.store.close()


def test_a_named_reranker_that_is_not_there_is_an_error(embedder, monkeypatch, tmp_path):
    monkeypatch.setenv("LECTERN_MODELS__RERANKER", str(tmp_path / "no-such-reranker"))
    svc = Lectern(Settings(data_dir=tmp_path / "data", _env_file=None), embedder=embedder)
    try:
        with pytest.raises(ModelNotFoundError, match="no-such-reranker"):
            svc.warm_up()
    finally:
        svc.store.close()


def test_service_has_no_reranker_when_reranking_is_off(embedder, fresh_model, monkeypatch,
                                                        tmp_path):
    monkeypatch.setenv("LECTERN_RETRIEVAL__RERANK", "false")
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)
    assert settings.retrieval.rerank is False
    copy_reranker(fresh_model, prepare.default_reranker_dir(settings), 1.5)  # even with one
    svc = Lectern(settings, embedder=embedder)
    try:
        svc.warm_up()
        assert svc.reranker is None and svc.corpus.reranker is None
    finally:
        svc.store.close()


def test_a_locally_trained_reranker_wins_over_the_shipped_one(settings, fresh_model, tmp_path):
    stand_in = tmp_path / "shipped"
    shutil.copytree(fresh_model, stand_in)
    assert prepare.reranker(settings, shipped=stand_in) == stand_in
    assert prepare.reranker(settings, shipped=tmp_path / "missing") is None
    shutil.copytree(fresh_model, settings.model_cache_dir / "reranker")
    assert prepare.reranker(settings, shipped=stand_in) == settings.model_cache_dir / "reranker"


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
