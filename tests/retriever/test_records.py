"""The records beside trained weights: old ones load, new ones round-trip, newer are refused."""

import json

import pytest

from lectern.errors import ConfigError
from lectern.records import RecordVersionError
from retriever.cross_encoder import SHIPPED_RERANKER
from retriever.records import EncoderTuningRecord, RerankerRecord, metric_key

# As `lectern train encoder` wrote it before records had a version.
OLD_TUNING = {
    "kind": "lectern-tuned-encoder",
    "base_encoder": "/models/minilm",
    "base_fingerprint": "minilm-53aa",
    "questions_file": "/models/encoder-tuned-v1.questions.jsonl",
    "generation": {"per_chunk": 2, "seed": 0},
    "config": {"epochs": 1, "batch_size": 32, "learning_rate": 2e-5, "warmup_share": 0.1,
               "holdout_share": 0.2, "max_steps": None, "seed": 4},
    "counts": {"questions_kept": 40},
    "held_out_before": {"questions": 8, "recall_at_1": 0.5, "recall_at_10": 1.0,
                        "mrr_at_10": 0.6},
    "held_out_after": {"questions": 8, "recall_at_1": 0.625, "recall_at_10": 1.0,
                       "mrr_at_10": 0.7},
    "compared": {},
    "fusion": {"rrf_k": 20, "bm25_weight": 1.0, "dense_weight": 1.5, "questions": 8,
               "mrr_at_10": 0.8, "default_mrr_at_10": 0.7, "standard_error": 0.03,
               "grid": [{"rrf_k": 20, "bm25_weight": 1.0, "dense_weight": 1.5,
                         "mrr_at_10": 0.8}]},
    "steps": 3,
    "losses": [1.2, 1.1, 0.9],
    "trained_chunks": [1, 2, 3],
}


def test_the_shipped_reranker_record_loads_with_its_prior_weight():
    path = SHIPPED_RERANKER / RerankerRecord.FILE
    stored = path.read_bytes()
    raw = json.loads(stored)
    assert "version" not in raw and "lr" in raw["config"], "the shipped record is version 1"
    record = RerankerRecord.load(SHIPPED_RERANKER)
    assert record is not None and path.read_bytes() == stored, "loading never rewrites it"
    assert record.prior_weight == raw["prior_weight"] == 1.0
    assert record.version == RerankerRecord.VERSION
    assert record.config.max_length == raw["config"]["max_length"] == 64
    assert record.config.layers == 3 and record.config.backbone_layers == 6
    config = record.as_dict()["config"]
    # The knobs under today's names, nothing else renamed or lost.
    assert config["learning_rate"] == raw["config"]["lr"]
    assert config["warmup_share"] == raw["config"]["warmup_ratio"]
    assert config["holdout_share"] == raw["config"]["val_fraction"]
    assert not {"lr", "warmup_ratio", "val_fraction"} & set(config)
    assert config["head_lr"] == raw["config"]["head_lr"] and config["seed"] == 13
    assert record.data == raw["data"] and record.training == raw["training"]
    assert record.total_seconds == raw["total_seconds"]
    # Metrics under today's keys.
    overall = record.validation["overall"]
    assert overall["fused"]["mrr@10"] == raw["validation"]["overall"]["fused"]["mrr_at_10"]
    assert overall["bm25"]["recall@20"] == raw["validation"]["overall"]["bm25"]["recall_at_20"]
    compared = record.validation["compared"]["overall"]["fused"]
    assert set(compared) == {"mrr@10", "recall@1", "recall@5", "recall@20"}
    assert record.validation["mrr@10_by_prior_weight"]["1.0"] == 0.6443


def test_a_reranker_record_round_trips(tmp_path):
    record = RerankerRecord(
        created="2026-12-01T00:00:00+00:00",
        config={"max_length": 48, "layers": 1, "learning_rate": 3e-4, "sources": ["coqa"]},
        data={"train_questions": 12},
        validation={"overall": {"questions": 3, "fused": {"mrr@10": 0.5}}},
        prior_weight=0.75,
        total_seconds=12.5,
        anything_else={"kept": [1, 2]},
    )
    path = record.save(tmp_path)
    assert path == tmp_path / "reranker.json"
    assert json.loads(path.read_text())["version"] == RerankerRecord.VERSION
    again = RerankerRecord.load(tmp_path)
    assert again == record and again.as_dict() == record.as_dict()
    assert again.as_dict()["anything_else"] == {"kept": [1, 2]}
    assert again.config.max_length == 48 and again.prior_weight == 0.75
    assert RerankerRecord.load(tmp_path / "missing") is None


def test_an_old_tuning_record_loads_with_its_fusion_kept(tmp_path):
    (tmp_path / EncoderTuningRecord.FILE).write_text(json.dumps(OLD_TUNING))
    record = EncoderTuningRecord.load(tmp_path)
    assert record is not None and record.version == EncoderTuningRecord.VERSION
    assert record.fusion is not None and record.fusion["dense_weight"] == 1.5
    assert record.config.holdout_share == 0.2 and record.config.seed == 4
    assert record.trained_chunks == [1, 2, 3]
    assert record.questions_file == OLD_TUNING["questions_file"]
    assert record.held_out_after == {"questions": 8, "recall@1": 0.625, "recall@10": 1.0,
                                     "mrr@10": 0.7}
    kept = record.as_dict()
    assert kept["fusion"]["default_mrr@10"] == 0.7 and kept["fusion"]["grid"][0]["mrr@10"] == 0.8
    assert kept["generation"] == OLD_TUNING["generation"] and kept["losses"] == [1.2, 1.1, 0.9]
    # Saved and loaded again, it is the same record.
    record.save(tmp_path)
    assert EncoderTuningRecord.load(tmp_path) == record


def test_a_tuning_record_without_a_fusion_loads():
    assert EncoderTuningRecord.parse({"fusion": None}).fusion is None
    assert EncoderTuningRecord.parse({}).kind == "lectern-tuned-encoder"


@pytest.mark.parametrize("record_class", [RerankerRecord, EncoderTuningRecord])
def test_a_record_of_a_newer_version_is_refused(tmp_path, record_class):
    newer = record_class.VERSION + 1
    (tmp_path / record_class.FILE).write_text(json.dumps({"version": newer, "prior_weight": 1}))
    expected = (
        rf"{record_class.FILE} version {newer} is newer than this Lectern reads "
        rf"\(up to {record_class.VERSION}\); upgrade Lectern"
    )
    with pytest.raises(RecordVersionError, match=expected) as refused:
        record_class.load(tmp_path)
    assert str(tmp_path) in str(refused.value), "the error names the file"
    assert isinstance(refused.value, ConfigError)


def test_a_record_that_is_not_one_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="version 'two' is not a record version"):
        RerankerRecord.parse({"version": "two"})
    with pytest.raises(ConfigError, match="not a reranker.json record"):
        RerankerRecord.parse([1, 2])
    with pytest.raises(ConfigError, match="not a valid reranker.json record"):
        RerankerRecord.parse({"prior_weight": "heavy"})


def test_old_metric_keys_are_renamed_and_others_are_not():
    assert metric_key("mrr_at_10") == "mrr@10"
    assert metric_key("recall_at_20") == "recall@20"
    assert metric_key("default_mrr_at_10") == "default_mrr@10"
    assert metric_key("mrr_at_10_by_prior_weight") == "mrr@10_by_prior_weight"
    for kept in ("mrr@10", "questions", "prior_weight", "rrf_k", "summrr_at_1"):
        assert metric_key(kept) == kept


@pytest.mark.parametrize("text", ["{not json", "", '{"version": 2,', "\udcff"])
@pytest.mark.parametrize("record_class", [RerankerRecord, EncoderTuningRecord])
def test_a_corrupt_record_file_is_a_config_error_naming_it(tmp_path, record_class, text):
    path = tmp_path / record_class.FILE
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError, match="cannot be read") as refused:
        record_class.load(tmp_path)
    assert str(path) in str(refused.value)


def test_nulls_in_fields_serving_does_not_read_are_not_refused():
    tuning = EncoderTuningRecord.parse({
        **OLD_TUNING, "compared": None, "held_out_before": None, "held_out_after": None,
        "kind": None, "config": None,
    })
    assert (tuning.compared, tuning.held_out_before, tuning.held_out_after) == ({}, {}, {})
    assert tuning.kind == "lectern-tuned-encoder"
    assert tuning.config.holdout_share is None and tuning.config.seed is None
    reranker = RerankerRecord.parse({"prior_weight": 0.5, "validation": None, "data": None,
                                     "training": None, "config": None, "created": None})
    assert (reranker.validation, reranker.data, reranker.training) == ({}, {}, {})
    assert reranker.config.max_length is None and reranker.prior_weight == 0.5
    # What serving does read is still checked.
    with pytest.raises(ConfigError, match="not a valid reranker.json record"):
        RerankerRecord.parse({"prior_weight": None})
