"""The calibration record, how serving applies it, and switching to a new one live."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lectern.errors import ConfigError
from lectern.records import RecordVersionError
from lectern.settings import RetrievalSettings, Settings
from retriever import calibration
from retriever.calibration import Choice, RetrievalCalibration


def record(encoder: str = "hash-embedder", **chosen: object) -> RetrievalCalibration:
    return RetrievalCalibration(
        created="2026-12-01T00:00:00+00:00", encoder=encoder, reranker=None, chunks=10,
        max_chunk_id=9, questions=50, questions_written=300, seconds=12.5, rule="test",
        chosen=Choice(**chosen), reason="because",
    )


def test_the_record_round_trips(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)
    saved = record(dense_weight=0.0, rerank=False)
    path = calibration.save(settings, saved)
    assert path.parent == calibration.folder(settings, "hash-embedder")
    loaded = calibration.load(settings, "hash-embedder")
    assert loaded == saved and loaded.version == RetrievalCalibration.VERSION


def test_a_newer_record_is_refused_and_serving_falls_back(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)
    path = calibration.save(settings, record())
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "version": RetrievalCalibration.VERSION + 1}))
    with pytest.raises(RecordVersionError):
        RetrievalCalibration.load(path.parent)
    assert calibration.load(settings, "hash-embedder") is None  # logged, not fatal
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        RetrievalCalibration.load(path.parent)
    assert calibration.load(settings, "hash-embedder") is None


def test_a_record_of_another_encoder_is_not_applied(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)
    saved = record("other-encoder")
    target = calibration.folder(settings, "hash-embedder")
    target.mkdir(parents=True)
    saved.save(target)
    assert calibration.load(settings, "hash-embedder") is None


def test_the_operators_explicit_settings_win() -> None:
    chosen = Choice(rrf_k=20, dense_weight=0.5, rerank=False, rerank_prior_weight=0.25)
    applied = calibration.applied(RetrievalSettings(), chosen)
    assert (applied.rrf_k, applied.dense_weight, applied.rerank,
            applied.rerank_prior_weight) == (20, 0.5, False, 0.25)
    mine = calibration.applied(RetrievalSettings(rerank=True, dense_weight=2.0), chosen)
    # One fusion field set by the operator keeps the calibration's fusion out whole.
    assert (mine.rrf_k, mine.dense_weight, mine.rerank) == (60, 2.0, True)
    assert mine.rerank_prior_weight == 0.25
    # The operator's BM25 alone and a calibrated encoder alone never make both weights 0.
    dense_alone = Choice(bm25_weight=0.0, rerank=False)
    bm25_only = calibration.applied(RetrievalSettings(dense_weight=0.0), dense_alone)
    assert (bm25_only.bm25_weight, bm25_only.dense_weight) == (1.0, 0.0)
    assert calibration.applied(RetrievalSettings(), None) == RetrievalSettings()


def test_changed_share_counts_added_and_removed_chunks() -> None:
    r = record()  # fitted on 10 chunks, ids 0..9
    assert calibration.changed_share(r, range(10)) == 0
    assert calibration.changed_share(r, range(12)) == pytest.approx(0.2)  # two added
    assert calibration.changed_share(r, range(7)) == pytest.approx(0.3)  # three removed
    assert calibration.changed_share(r, [*range(5), 10, 11]) == pytest.approx(0.7)


def test_choice_names() -> None:
    assert Choice(dense_weight=0, rerank=False).name == "bm25"
    assert Choice(bm25_weight=0, rerank=True, rerank_prior_weight=1).name == "dense +rerank w1"
    assert Choice(rrf_k=20, dense_weight=1.5, rerank=False).name == "hybrid k20 1:1.5"


def test_the_reranker_a_record_names() -> None:
    class Folder:
        model_dir = Path("/models/reranker")
        record = type("R", (), {"created": "2026-11-23T07:33:47+00:00"})()

    assert calibration.reranker_id(None) is None
    assert calibration.reranker_id(Folder()) == "reranker@2026-11-23T07:33:47+00:00"
    assert calibration.reranker_id(object()) == "object"
