"""Calibrating a served corpus: fit, save, serve without a restart, fail safely."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from api.service import Lectern
from lectern.errors import CalibrationRunningError
from lectern.settings import CalibrationSettings, IngestSettings, Settings
from retriever import calibration
from retriever.calibration import Choice, RetrievalCalibration
from tests.fakes import HashEmbedder, OverlapReranker

TOPICS = ["volcano", "glacier", "harbour", "orchard", "meteor", "lantern", "falcon",
          "canyon", "violin", "marble"]


class AskingGenerator:
    """Asks about the first two nouns of a fixture sentence; `fail` makes it raise."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls = 0

    def warm_up(self) -> None:
        pass

    def generate(self, messages: Sequence[dict[str, str]]) -> str:
        self.calls += 1
        if self.fail:
            raise RuntimeError("the generator broke")
        said = messages[-1]["content"].removeprefix("Statement:").split()
        return f"Who studied the {said[1]} by the {said[4]}?"

    def stream(self, messages: Sequence[dict[str, str]]) -> Iterator[str]:
        yield self.generate(messages)

    def close(self) -> None:
        pass


def make(tmp_path: Path, generator: AskingGenerator, **calib: object) -> Lectern:
    settings = Settings(
        data_dir=tmp_path / "data", _env_file=None,
        ingest=IngestSettings(chunk_tokens=64, chunk_overlap=8, min_section_tokens=8),
        calibration=CalibrationSettings(
            **{"questions": 20, "min_chunks": 5, "auto_share": 0.0, **calib}
        ),
    )
    svc = Lectern(settings, embedder=HashEmbedder(), generator=generator,
                  reranker=OverlapReranker())
    svc.calibrator.background = True  # as the server runs it
    svc.warm_up()
    return svc


def fill(svc: Lectern, n: int = 30, start: int = 0) -> None:
    pairs = [(a, b) for a in TOPICS for b in TOPICS if a != b][start : start + n]
    for i, (a, b) in enumerate(pairs, start=start):
        svc.ingestor().ingest_text(
            f"notes/{i}", f"Notes {i}", f"The {a} near the {b} was studied in {1900 + i}."
        )


def chosen(fingerprint: str, **fields: object) -> RetrievalCalibration:
    return RetrievalCalibration(
        created="2026-12-01T00:00:00+00:00", encoder=fingerprint, reranker="OverlapReranker",
        chunks=30, max_chunk_id=29,
        questions=20, questions_written=20, seconds=1.0, rule="test",
        chosen=Choice(**fields), reason="test",
    )


def ids(hits) -> list[int]:
    return [h.chunk.id for h in hits]


def test_serving_switches_to_a_new_calibration_without_a_restart(tmp_path: Path) -> None:
    svc = make(tmp_path, AskingGenerator())
    fill(svc)
    svc.refresh()
    corpus, q = svc.corpus, "volcano glacier orchard"
    fp = corpus.embedder.fingerprint
    bm25 = ids(corpus.retriever("bm25").retrieve(q, 5))
    dense = ids(corpus.retriever("dense").retrieve(q, 5))
    assert bm25 != dense  # else the switch below would show nothing
    corpus.use_calibration(chosen(fp, dense_weight=0.0, rerank=False))
    assert ids(corpus.search(q, 5)) == bm25
    corpus.use_calibration(chosen(fp, bm25_weight=0.0, rerank=False))
    assert ids(corpus.search(q, 5)) == dense
    corpus.use_calibration(chosen(fp, rerank=True, rerank_prior_weight=0.5))
    corpus.search(q, 5)
    assert svc.reranker.prior_weights[-1] == 0.5  # the calibrated weight reaches it


def test_a_calibration_for_another_encoder_is_refused(tmp_path: Path) -> None:
    svc = make(tmp_path, AskingGenerator())
    fill(svc)
    svc.refresh()
    before = svc.corpus.retrieval
    with pytest.raises(ValueError, match="not the one serving"):
        svc.corpus.use_calibration(chosen("another-encoder", dense_weight=0.0))
    assert svc.corpus.retrieval == before and svc.corpus.calibration is None


def test_a_fit_is_saved_served_and_read_back_after_a_restart(tmp_path: Path) -> None:
    svc = make(tmp_path, AskingGenerator())
    fill(svc)
    svc.refresh()
    record = svc.calibrator.fit()
    assert svc.corpus.calibration == record and record.questions == 20
    fp = svc.corpus.embedder.fingerprint
    assert calibration.load(svc.settings, fp, "OverlapReranker") == record
    svc.close()
    again = make(tmp_path, AskingGenerator())
    assert again.corpus.calibration == record
    assert again.corpus.retrieval.dense_weight == record.chosen.dense_weight


def _wait(svc: Lectern) -> None:
    thread = svc.calibrator._thread
    assert thread is not None
    thread.join(60)
    assert not thread.is_alive()


def test_a_failed_background_fit_keeps_the_old_one(tmp_path: Path) -> None:
    gen = AskingGenerator()
    svc = make(tmp_path, gen, auto_share=0.2)
    fill(svc, 20)
    svc.refresh()  # never calibrated: a fit starts in the background
    _wait(svc)
    first = svc.corpus.calibration
    assert first is not None and svc.calibrator.last_error is None
    gen.fail = True
    fill(svc, 20, start=20)  # doubles the corpus: due again
    svc.refresh()
    _wait(svc)
    assert "the generator broke" in (svc.calibrator.last_error or "")
    assert svc.corpus.calibration == first
    fp = svc.corpus.embedder.fingerprint
    assert calibration.load(svc.settings, fp, "OverlapReranker") == first


def test_a_fit_is_due_only_when_enough_changed(tmp_path: Path) -> None:
    svc = make(tmp_path, AskingGenerator(), auto_share=0.5)
    fill(svc, 4)
    svc.refresh()
    assert not svc.calibrator.due()  # under min_chunks
    fill(svc, 26, start=4)
    assert svc.calibrator.due()  # never fitted
    svc.calibrator.fit()
    assert not svc.calibrator.due()
    fill(svc, 10, start=30)  # a third more: under the share
    assert not svc.calibrator.due()
    fill(svc, 10, start=40)
    assert svc.calibrator.due()
    off = make(tmp_path / "off", AskingGenerator(), auto_share=0.0)
    fill(off, 30)
    assert not off.calibrator.due() and not off.calibrator.after_change()


def test_one_fit_at_a_time(tmp_path: Path) -> None:
    svc = make(tmp_path, AskingGenerator())
    fill(svc)
    svc.refresh()
    gate, entered = threading.Event(), threading.Event()
    slow = svc.calibrator._generator

    def held():
        entered.set()
        gate.wait(10)
        return slow()

    svc.calibrator._generator = held
    worker = threading.Thread(target=svc.calibrator.fit)
    worker.start()
    entered.wait(10)
    with pytest.raises(CalibrationRunningError, match="already running"):
        svc.calibrator.fit()
    gate.set()
    worker.join(30)
    assert svc.corpus.calibration is not None


def test_only_the_server_fits_in_the_background(tmp_path: Path) -> None:
    svc = make(tmp_path, AskingGenerator(), auto_share=0.2)
    svc.calibrator.background = False  # a CLI command: it exits before a fit would end
    fill(svc)
    svc.refresh()
    assert svc.calibrator.due() and svc.calibrator._thread is None


def test_a_calibration_fitted_with_another_reranker_is_not_served(tmp_path: Path) -> None:
    svc = make(tmp_path, AskingGenerator())
    fill(svc)
    svc.refresh()
    record = svc.calibrator.fit()
    assert record.reranker == "OverlapReranker"
    svc.close()
    other = chosen(record.encoder, dense_weight=0.0)
    other = other.model_copy(update={"reranker": "reranker@2026-11-23T07:33:47+00:00"})
    calibration.save(svc.settings, other)
    again = make(tmp_path, AskingGenerator(), auto_share=0.2)
    assert again.corpus.calibration is None  # the settings serve, and a fit is due
    assert again.corpus.retrieval.dense_weight == 1.0 and again.calibrator.due()
    with pytest.raises(ValueError, match="reranker"):
        again.corpus.use_calibration(other)
