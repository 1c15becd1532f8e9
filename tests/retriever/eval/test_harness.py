"""The retrieval evaluation harness end to end, on tiny SQuAD and BEIR sets, with fakes."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ingest.pipeline import Ingestor
from lectern.errors import ConfigError
from retriever.eval.datasets import DatasetError, load_beir, load_squad, sample_queries
from retriever.eval.harness import (
    RetrievalEvaluation,
    default_configs,
    markdown,
    parse_configs,
    write_ranks,
)
from retriever.eval.indexing import QueryMemo, plain, tuned_settings
from tests.fakes import HashEmbedder, OverlapReranker

LONG = (
    "Glassblowers in the valley worked in small family shops for centuries. "
    "Each shop kept its own furnace burning through the winter months, and apprentices "
    "learned to gather molten glass on a long iron pipe before shaping it with wooden "
    "paddles and wet newspaper. The best pieces were sold at the spring fair in the "
    "market square, where traders from the coast bought bowls, bottles and window panes. "
    "Over time the shops formed a guild that fixed prices and settled disputes between "
    "masters, and the guild hall still stands beside the church. Colour was the guild's "
    "closest secret: a pinch of cobalt oxide gives the deep cobalt blue tint that made "
    "the valley famous, while manganese clears the green cast of iron in the sand."
)
BEES = ("Honey bees communicate the direction of flowers with a waggle dance, "
        "repeating the figure-of-eight run inside the dark hive.")


def squad_doc() -> dict:
    def qa(qid, question):
        return {"id": qid, "question": question, "answers": [{"text": "x", "answer_start": 0}]}

    return {"version": "1.1", "data": [
        {"title": "Old_Mill_Town", "paragraphs": [
            {"context": "The river Wend flows through the old mill town of Harby, past the "
                        "granary, the tannery and the weir, and north of the town, where "
                        "fishing boats shelter, it does meet the estuary at Selby.",
             "qas": [qa("q-mill", "Where does the river Wend meet the estuary?")]},
            {"context": "River Wend: meet river Wend, meet Wend estuary, estuary.", "qas": []},
        ]},
        {"title": "Glass_Making", "paragraphs": [
            {"context": "To make glass, fine quartz sand is melted with soda ash and lime "
                        "in a furnace at about 1,500 degrees.",
             "qas": [qa("q-glass", "What kind of sand is melted to make glass?"),
                     qa("q-removed", "What is melted with soda ash?")]},
            {"context": LONG,
             "qas": [qa("q-cobalt", "Which oxide gives the cobalt blue tint?")]},
        ]},
        {"title": "Bees", "paragraphs": [{"context": BEES, "qas": []}]},
        {"title": "Bees_Copy", "paragraphs": [
            {"context": BEES,
             "qas": [qa("q-bees", "How do honey bees communicate with a waggle dance?")]},
        ]},
    ]}


def write_squad(folder: Path) -> tuple[Path, Path]:
    path, removed = folder / "squad.json", folder / "removed.json"
    path.write_text(json.dumps(squad_doc()))
    removed.write_text(json.dumps({"canary": "test", "removed": {"q-removed": ["soda"]}}))
    return path, removed


CORPUS = [
    {"_id": "d1", "title": "Cold climates", "text": "Research on solar panel efficiency in "
     "cold climates shows output drops when snow covers the cells for several days."},
    {"_id": "d2", "title": "", "text": "Solar panel efficiency. Solar panel efficiency."},
    {"_id": "d3", "title": "Tides", "text": "Tidal range at the harbour mouth peaks twice "
     "a month, at the spring tides after new and full moon."},
    {"_id": "d4", "title": "Trains", "text": "The night train to the capital leaves at ten."},
    {"_id": "d5", "title": "Tidal range", "text": "Tidal range, tidal range: harbour tidal range."},
]


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in CORPUS))
    queries = [
        {"_id": "q1", "text": "solar panel efficiency"},
        {"_id": "q2", "text": "tidal range harbour"},
        {"_id": "q3", "text": "night train"},
    ]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        "q1\td1\t2\nq1\td2\t1\n"
        "q2\td3\t1\nq2\td5\t0\n"
        "q3\td4\t0\n"
        "q9\td4\t1\n"
    )
    return folder


@pytest.fixture
def squad(tmp_path):
    return load_squad(*write_squad(tmp_path))


def test_squad_loader_keeps_every_paragraph_and_drops_removed_ids(squad):
    assert [i.id for i in squad.items] == [
        "Old_Mill_Town/0", "Old_Mill_Town/1", "Glass_Making/0", "Glass_Making/1", "Bees/0",
        "Bees_Copy/0",
    ]
    assert squad.items[0].title == "Old Mill Town"
    assert [q.id for q in squad.queries] == ["q-mill", "q-glass", "q-cobalt", "q-bees"]
    assert squad.queries[3].qrels == {"Bees_Copy/0": 1.0}
    assert squad.info["removed_ids_skipped"] == 1
    assert squad.info["identical_item_texts"] == 1
    assert squad.source("Bees/0") == "squad/Bees/0"
    assert squad.item_id("squad/Bees/0") == "Bees/0"


def test_squad_loader_reports_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": "1.1"}))
    with pytest.raises(DatasetError, match="no top-level 'data' list"):
        load_squad(bad)
    with pytest.raises(DatasetError, match="cannot read"):
        load_squad(tmp_path / "missing.json")
    path, removed = write_squad(tmp_path)
    removed.write_text(json.dumps({"removed": 5}))
    with pytest.raises(DatasetError, match="got int"):
        load_squad(path, removed)


def test_beir_loader_keeps_queries_with_a_relevant_judgement(tmp_path):
    beir = load_beir(write_beir(tmp_path / "tiny"))
    # q3 has only a 0 judgement, q9 is not in queries.jsonl
    assert [q.id for q in beir.queries] == ["q1", "q2"]
    assert beir.queries[0].qrels == {"d1": 2.0, "d2": 1.0}
    assert beir.queries[1].qrels == {"d3": 1.0, "d5": 0.0}
    assert beir.items[0].title == "Cold climates" and beir.items[1].title == ""
    assert beir.prefix == "beir/tiny/"
    with pytest.raises(DatasetError, match="dev.tsv"):
        load_beir(tmp_path / "tiny", split="dev")


def test_sample_queries_is_seeded_and_keeps_order(squad):
    a = sample_queries(squad, 2, seed=1)
    assert [q.id for q in a.queries] == [q.id for q in sample_queries(squad, 2, seed=1).queries]
    assert len(a.queries) == 2 and a.items == squad.items
    order = [q.id for q in squad.queries]
    assert [order.index(q.id) for q in a.queries] == sorted(order.index(q.id) for q in a.queries)
    assert sample_queries(squad, 99).queries == squad.queries
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        sample_queries(squad, 0)


def test_configs_are_checked_before_any_work():
    assert [s.name for s in parse_configs(["bm25", "hybrid+rerank", "tuned+rerank"])] == [
        "bm25", "hybrid+rerank", "tuned+rerank"]
    with pytest.raises(ConfigError, match="unknown configuration 'hybird'; known: bm25,"):
        parse_configs(["hybird"])
    with pytest.raises(ConfigError, match=r"configurations listed twice: \['bm25', 'bm25'\]"):
        parse_configs(["bm25", "bm25"])
    with pytest.raises(ConfigError, match="rerank_candidates must be at least 1, got 0"):
        RetrievalEvaluation(["bm25"], rerank_candidates=0)
    evaluation = RetrievalEvaluation(["bm25", "hybrid+rerank", "tuned"])
    with pytest.raises(ConfigError, match="hybrid\\+rerank need a reranker"):
        evaluation.require(reranker=False, tuned=True)
    with pytest.raises(ConfigError, match="tuned need a tuned encoder"):
        evaluation.require(reranker=True, tuned=False)
    assert default_configs(reranker=False, tuned=False) == ["bm25", "dense", "hybrid"]
    assert default_configs(reranker=True, tuned=True) == [
        "bm25", "dense", "hybrid", "hybrid+rerank", "tuned+rerank"]


class Clock:
    """A fake perf_counter: time moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


class CountingEmbedder(HashEmbedder):
    """Counts its query embeddings; each takes `seconds` on the fake clock."""

    def __init__(self, clock: Clock, seconds: list[float]) -> None:
        super().__init__(dimension=32)
        self.clock, self.seconds = clock, seconds
        self.queries = 0

    def embed_query(self, text):
        self.clock.now += self.seconds[self.queries]
        self.queries += 1
        return super().embed_query(text)


def test_query_memo_embeds_a_query_once_and_replays_its_time(monkeypatch):
    from retriever.eval import indexing

    clock = Clock()
    monkeypatch.setattr(indexing, "time", clock)
    inner = CountingEmbedder(clock, [0.25, 0.5])
    memo = QueryMemo(inner)
    first = memo.embed_query("when does the library open")
    assert inner.queries == 1 and memo.replayed == 0.0
    again = memo.embed_query("when does the library open")
    assert inner.queries == 1 and memo.replayed == 0.25, "the first embedding's time, replayed"
    np.testing.assert_array_equal(first, again)
    memo.embed_query("another question")
    assert inner.queries == 2 and memo.replayed == 0.25
    memo.embed_query("another question")
    memo.embed_query("another question")
    assert inner.queries == 2 and memo.replayed == 0.25 + 0.5 + 0.5
    assert memo.fingerprint == inner.fingerprint and memo.dimension == 32


def open_service(settings, embedder):
    """A corpus as `lectern eval retrieval` opens one: no reranker, queries embedded once."""
    from api.components import open_corpus

    return open_corpus(plain(settings), embedder=QueryMemo(embedder))


def run_squad(squad, settings, configs, rerank_candidates=20, tuned=None):
    base = open_service(settings, HashEmbedder(64))
    try:
        evaluation = RetrievalEvaluation(configs, rerank_candidates=rerank_candidates)
        return evaluation.run(squad, base, tuned, OverlapReranker())
    finally:
        base.store.close()


def test_squad_end_to_end(squad, settings):
    res = run_squad(squad, settings, ["bm25", "bm25+rerank", "dense", "hybrid"])
    bm25, reranked = res["configs"]["bm25"], res["configs"]["bm25+rerank"]
    # BM25 puts the short "River Wend: meet river Wend, ..." paragraph above the one that
    # answers q-mill (rank 2); every other question's paragraph comes first. q-bees is
    # about a paragraph stored once under its identical twin Bees/0: it still counts.
    assert bm25["recall@1"] == 0.75
    assert bm25["recall@5"] == bm25["recall@20"] == 1.0
    assert bm25["mrr@10"] == 0.875
    assert bm25["ndcg@10"] == pytest.approx((3 + 1 / math.log2(3)) / 4, abs=1e-4)
    # The overlap reranker sees that only the answering paragraph has every query word.
    assert reranked["recall@1"] == reranked["mrr@10"] == reranked["ndcg@10"] == 1.0
    assert res["queries_evaluated"] == 4
    assert bm25["latency"]["n"] == 4  # one timing per query (their values are not tested)
    assert set(bm25["latency"]) == {"n", "p50_ms", "p95_ms", "mean_ms", "min_ms", "max_ms"}
    index = res["index"]["base"]
    assert index["statuses"] == {"added": 5, "duplicate": 1}
    assert index["chunks"] > 5  # the long glass paragraph became several chunks
    assert res["encoders"] == {"base": "hash-embedder"}
    assert res["method"]["chunks_searched"] == 50
    for name in ("dense", "hybrid"):
        assert 0.0 < res["configs"][name]["mrr@10"] <= 1.0

    page = markdown(res)
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert [r.split(" | ")[0] for r in rows] == [
        "| `bm25`", "| `bm25+rerank`", "| `dense`", "| `hybrid`"]
    assert "| 0.750 | 1.000 | 1.000 | 0.875 | 0.908 |" in rows[0]
    assert rows[1].endswith("| +0.092 | +0.092 |")  # gain over the row above, over bm25
    assert "1 removed question ids left out" in page


def test_each_mean_has_its_standard_error_and_each_query_its_ranks(squad, settings, tmp_path):
    res = run_squad(squad, settings, ["bm25", "bm25+rerank"])
    bm25 = res["configs"]["bm25"]
    # bm25's per-query nDCG@10: 1/log2(3) for q-mill (rank 2), 1 for the three others
    values = [1 / math.log2(3), 1.0, 1.0, 1.0]
    mean = sum(values) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    assert bm25["se"]["ndcg@10"] == pytest.approx(sd / 2, abs=1e-4)
    assert bm25["se"]["recall@1"] == pytest.approx(0.25, abs=1e-4)  # sd .5 over sqrt(4)
    assert res["configs"]["bm25+rerank"]["se"]["ndcg@10"] == 0.0  # all perfect: no spread
    assert bm25["ndcg@10"] == pytest.approx(mean, abs=1e-4)  # the old keys stay

    rows = {r["query"]: r for r in res["per_query"]}
    assert list(rows) == ["q-mill", "q-glass", "q-cobalt", "q-bees"]
    mill = rows["q-mill"]
    assert mill["text"] == "Where does the river Wend meet the estuary?"
    assert mill["relevant"] == ["Old_Mill_Town/0"]
    # Configurations in the order given, though the rotation ran them in another.
    assert list(mill["ranks"]) == ["bm25", "bm25+rerank"]
    assert mill["ranks"] == {"bm25": 2, "bm25+rerank": 1}
    assert mill["top"] == {"bm25": "Old_Mill_Town/1", "bm25+rerank": "Old_Mill_Town/0"}
    assert mill["ndcg@10"]["bm25"] == pytest.approx(1 / math.log2(3), abs=1e-4)
    assert rows["q-bees"]["relevant"] == ["Bees/0"]  # its paragraph is stored as its twin's
    assert rows["q-bees"]["ranks"]["bm25"] == 1

    page = markdown(res)
    assert "| ± SE |" in page
    assert f"| ±{sd / 2:.3f} |" in page and "| ±0.000 |" in page
    path = write_ranks(tmp_path / "out" / "x.ranks.jsonl", res["per_query"])
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == res["per_query"]


def test_a_query_whose_item_is_not_found_has_no_rank(tmp_path, settings):
    beir = load_beir(write_beir(tmp_path / "tiny"))
    service = open_service(settings, HashEmbedder(64))
    try:
        res = RetrievalEvaluation(["bm25"], depth=1).run(beir, service)
    finally:
        service.store.close()
    # One chunk searched: q2's top is the judged non-relevant d5, its d3 is not reached.
    ranks = {r["query"]: r["ranks"]["bm25"] for r in res["per_query"]}
    assert ranks == {"q1": 1, "q2": None}


def test_the_calibrated_configuration_searches_as_the_corpus_serves():
    spec = parse_configs(["bm25", "calibrated"])[1]
    assert spec.served and not spec.rerank and spec.mode == "hybrid"
    evaluation = RetrievalEvaluation(["bm25", "calibrated", "dense"])
    assert [s.name for s in evaluation.only("calibrated").specs] == ["calibrated"]
    assert [s.name for s in evaluation.without("calibrated").specs] == ["bm25", "dense"]
    assert RetrievalEvaluation(["calibrated"]).without("calibrated") is None


def test_rerank_only_reorders_the_candidates(squad, settings):
    res = run_squad(squad, settings, ["bm25", "bm25+rerank"], rerank_candidates=1)
    # One candidate: nothing to reorder, the rest of the ranking follows unchanged.
    assert res["configs"]["bm25+rerank"]["mrr@10"] == res["configs"]["bm25"]["mrr@10"] == 0.875


def test_tuned_encoder_gets_its_own_index(squad, settings, tmp_path):
    emb = HashEmbedder(128, "tuned-hash")
    emb.folder = tmp_path / "tuned-model"  # its record holds a fusion an older Lectern fitted
    emb.folder.mkdir()
    fitted = {"rrf_k": 20, "bm25_weight": 1.0, "dense_weight": 0.75}
    (emb.folder / "lectern-tuning.json").write_text(json.dumps({"fusion": fitted}))
    tuned = open_service(tuned_settings(settings, "tuned-model"), emb)
    try:
        res = run_squad(squad, settings, ["bm25", "tuned", "tuned+rerank"], tuned=tuned)
    finally:
        tuned.store.close()
    assert tuned.settings.data_dir == settings.data_dir / "tuned"
    assert tuned.settings.models.encoder == "tuned-model"
    assert res["encoders"] == {"base": "hash-embedder", "tuned": "tuned-hash"}
    assert res["index"]["tuned"]["statuses"] == {"added": 5, "duplicate": 1}
    assert res["configs"]["tuned+rerank"]["recall@1"] == 1.0
    assert "`tuned`: hybrid with the tuned encoder" in markdown(res)
    # The record's fusion is not served: a corpus's own calibration chooses the fusion.
    default = {"rrf_k": 60, "bm25_weight": 1.0, "dense_weight": 1.0}
    assert res["fusion"] == {"base": default, "tuned": default}


def test_a_data_dir_is_reused_but_must_hold_only_the_dataset(squad, settings):
    first = run_squad(squad, settings, ["bm25"])
    again = run_squad(squad, settings, ["bm25"])
    assert again["index"]["base"]["statuses"] == {"unchanged": 5, "duplicate": 1}
    assert again["configs"]["bm25"]["mrr@10"] == first["configs"]["bm25"]["mrr@10"]
    service = open_service(settings, HashEmbedder(64))
    Ingestor(service.store, service.embedder, settings.ingest).ingest_text(
        "elsewhere/1", "Other", "A document of another corpus."
    )
    service.store.close()
    with pytest.raises(DatasetError, match="1 documents that are not part of"):
        run_squad(squad, settings, ["bm25"])


def test_beir_graded_end_to_end(tmp_path, settings):
    beir = load_beir(write_beir(tmp_path / "tiny"))
    service = open_service(settings, HashEmbedder(64))
    try:
        res = RetrievalEvaluation(["bm25"]).run(beir, service)
    finally:
        service.store.close()
    bm25 = res["configs"]["bm25"]
    # q1 {d1: 2, d2: 1}: BM25 ranks the short d2 first, then d1.
    # q2 {d3: 1, d5: 0}: the judged non-relevant d5 comes first, then d3.
    q1_ndcg = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    q2_ndcg = 1 / math.log2(3)
    assert bm25["recall@1"] == 0.25  # (1/2 + 0) / 2
    assert bm25["recall@5"] == 1.0
    assert bm25["mrr@10"] == 0.75  # (1 + 1/2) / 2
    assert bm25["ndcg@10"] == pytest.approx((q1_ndcg + q2_ndcg) / 2, abs=1e-4)


class FakeCrossEncoder(OverlapReranker):
    def __init__(self, model_dir, max_length=None):
        super().__init__()
        self.model_dir = model_dir
        self.max_length = max_length or 64  # a trained reranker's record has its window
        self.info = {"config": {"from": str(model_dir)}}


def test_cli_writes_json_and_markdown(tmp_path, settings, monkeypatch):
    from api import components
    from api.cli import app
    from retriever import cross_encoder

    monkeypatch.setattr(components, "build_embedder", lambda s, device: HashEmbedder(64))
    monkeypatch.setattr(cross_encoder, "CrossEncoderReranker", FakeCrossEncoder)
    folder = write_beir(tmp_path / "tiny")
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, [
        "eval", "retrieval", "--beir", str(folder), "--configs", "bm25,dense,bm25+rerank",
        "--reranker", str(tmp_path / "ce"), "--name", "tiny", "--out-dir", str(out),
        "--data-dir", str(tmp_path / "data"),
    ])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "tiny.json").read_text())
    assert list(data["configs"]) == ["bm25", "dense", "bm25+rerank"]
    assert data["configs"]["bm25"]["mrr@10"] == 0.75
    # The overlap reranker scores both candidates of each query 1.0 (each holds every
    # query word) and breaks the tie by chunk id, i.e. corpus order: d1 before d2, d3
    # before d5. So q1 is perfect (R@1 1/2), and q2's relevant d3 moves to the top.
    reranked = data["configs"]["bm25+rerank"]
    assert (reranked["recall@1"], reranked["mrr@10"], reranked["ndcg@10"]) == (0.75, 1.0, 1.0)
    assert data["method"]["reranker"] == "FakeCrossEncoder"
    assert data["run"]["reranker_info"] == {"config": {"from": str(tmp_path / "ce")}}
    assert data["run"]["rerank_window"] == 64, "without --rerank-window: the model's own"
    assert data["run"]["data_dir"] == str(tmp_path / "data")
    assert "python" in data["environment"]
    assert "| `bm25` | 0.250 | 1.000 | 1.000 | 0.750 |" in (out / "tiny.md").read_text()
    assert "per_query" not in data, "the rows go to their own file"
    rows = [json.loads(line) for line in (out / "tiny.ranks.jsonl").read_text().splitlines()]
    assert [r["query"] for r in rows] == ["q1", "q2"]
    assert rows[1]["ranks"] == {"bm25": 2, "dense": rows[1]["ranks"]["dense"], "bm25+rerank": 1}


@pytest.mark.parametrize(("args", "message"), [
    ([], "one of --squad"),
    (["--squad", "squad.json"], "one of --squad"),
    (["--removed", "removed.json"], "--removed goes with --squad"),
    (["--configs", "bm25,hybrid+rerank"], "need a reranker"),
    (["--configs", "tuned"], "need a tuned encoder"),
    (["--configs", "bm25,nope"], "unknown configuration 'nope'"),
])
def test_cli_refuses_bad_options_before_loading_models(tmp_path, monkeypatch, args, message):
    from api import components
    from api.cli import app

    def no_models(*_args, **_kwargs):
        raise AssertionError("models loaded before the options were checked")

    monkeypatch.setattr(components, "open_corpus", no_models)
    monkeypatch.setattr(components, "build_embedder", no_models)
    folder = write_beir(tmp_path / "tiny")
    source = ["--beir", str(folder)] if args else []
    result = CliRunner().invoke(app, ["eval", "retrieval", *source, *args])
    assert isinstance(result.exception, ConfigError)
    assert message in str(result.exception)
