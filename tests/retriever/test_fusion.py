import json
import logging

import pytest

from lectern.settings import RetrievalSettings, Settings
from retriever.fusion import RECORD_FILE, for_encoder, recorded
from tests.fakes import HashEmbedder


def _record(folder, fusion):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD_FILE).write_text(json.dumps({"fusion": fusion}))
    return folder


def test_a_recorded_fusion_applies_unless_the_operator_set_it(tmp_path, monkeypatch):
    folder = _record(tmp_path / "enc", {"rrf_k": 20, "bm25_weight": 1.0, "dense_weight": 0.75})
    applied = for_encoder(RetrievalSettings(), folder)
    assert (applied.rrf_k, applied.bm25_weight, applied.dense_weight) == (20, 1.0, 0.75)
    assert for_encoder(RetrievalSettings(), None) == RetrievalSettings()
    assert for_encoder(RetrievalSettings(), tmp_path / "no-record") == RetrievalSettings()
    # A setting from the environment wins over the record; the others still apply.
    monkeypatch.setenv("LECTERN_RETRIEVAL__RRF_K", "60")
    mixed = for_encoder(Settings().retrieval, folder)
    assert (mixed.rrf_k, mixed.dense_weight) == (60, 0.75)
    # An incomplete record is ignored rather than half applied.
    partial = _record(tmp_path / "partial", {"rrf_k": 20})
    assert for_encoder(RetrievalSettings(), partial) == RetrievalSettings()


def test_the_service_fuses_with_its_encoder_s_recorded_fusion(settings, tmp_path):
    from api.service import Lectern

    emb = HashEmbedder(32)
    emb.folder = _record(tmp_path / "enc", {"rrf_k": 10, "bm25_weight": 1.0, "dense_weight": 2.0})
    svc = Lectern(settings, embedder=emb)
    svc.warm_up()
    assert svc.fusion == {"rrf_k": 10, "bm25_weight": 1.0, "dense_weight": 2.0}
    hybrid = svc.corpus.retriever("hybrid")
    assert hybrid.rrf_k == 10
    assert [w for _, w in hybrid.retrievers] == [1.0, 2.0]
    plain = Lectern(settings.model_copy(update={"data_dir": tmp_path / "other"}), HashEmbedder(32))
    plain.warm_up()
    assert plain.corpus.retriever("hybrid").rrf_k == 60 and plain.fusion["dense_weight"] == 1.0
    svc.store.close()
    plain.store.close()


@pytest.mark.parametrize("text", ["{not json", '{"version": 99, "fusion": {}}', "[1, 2]",
                                  '{"fusion": {"rrf_k": "twenty", "bm25_weight": 1,'
                                  ' "dense_weight": 1}}'])
def test_an_unreadable_record_means_the_default_fusion_and_a_warning(tmp_path, caplog, text):
    folder = tmp_path / "enc"
    folder.mkdir()
    (folder / RECORD_FILE).write_text(text)
    with caplog.at_level(logging.WARNING, logger="retriever.fusion"):
        assert recorded(folder) is None
        assert for_encoder(RetrievalSettings(), folder) == RetrievalSettings()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "the operator is told"
    assert all(str(folder / RECORD_FILE) in r.getMessage() for r in warnings)
