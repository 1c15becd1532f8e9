"""The cross-domain table end to end, with fakes: each dataset on its own corpus."""

import json
import math

import pytest
from typer.testing import CliRunner

from api.cli import app
from lectern.errors import ConfigError
from lectern.reporting import mean_se
from retriever.eval import domains
from retriever.eval.cross_domain import markdown, run_datasets
from retriever.eval.harness import RetrievalEvaluation
from tests.fakes import HashEmbedder, OverlapReranker, word_count
from tests.retriever.eval.sources import (
    SHARE,
    paragraph_split,
    write_reranker_record,
    write_sources,
)
from tests.retriever.eval.test_harness import FakeCrossEncoder, open_service


@pytest.fixture
def sets(tmp_path):
    data = write_sources(tmp_path / "sources")
    cnn, race = domains.load_domains(data, ["coqa-cnn", "coqa-race"], paragraph_split, SHARE)
    return [cnn, domains.with_long_titles(cnn, word_count), race]


def run(sets, settings, tmp_path, configs=("bm25", "bm25+rerank", "dense")):
    opened = []

    def open_corpus(where):
        opened.append(where)
        return open_service(settings.model_copy(update={"data_dir": where}), HashEmbedder(64))

    result, rows = run_datasets(sets, RetrievalEvaluation(list(configs)), open_corpus,
                                tmp_path / "work", OverlapReranker())
    return result, rows, opened


def test_each_dataset_is_indexed_on_its_own(sets, settings, tmp_path):
    result, rows, opened = run(sets, settings, tmp_path)
    assert [p.name for p in opened] == ["coqa-cnn", "coqa-cnn-long-titles", "coqa-race"]
    per = result["datasets"]
    assert list(per) == ["coqa-cnn", "coqa-cnn (long titles)", "coqa-race"]
    # Only the domain's own chunks were searched: cnn has 5 items, race 3.
    assert per["coqa-cnn"]["index"]["base"]["statuses"] == {"added": 5}
    assert per["coqa-race"]["index"]["base"]["statuses"] == {"added": 3}
    assert "settings" in result and "settings" not in per["coqa-cnn"]
    assert "per_query" not in per["coqa-cnn"]
    assert [(r["dataset"], r["query"]) for r in rows] == [
        ("coqa-cnn", "cnn-1/q0"), ("coqa-cnn", "cnn-2/q0"),
        ("coqa-cnn (long titles)", "cnn-1/q0"), ("coqa-cnn (long titles)", "cnn-2/q0"),
        ("coqa-race", "race-2/q0"),
    ]
    assert set(rows[0]["ranks"]) == {"bm25", "bm25+rerank", "dense"}


def test_differences_are_paired_by_query(sets, settings, tmp_path):
    result, rows, _ = run(sets, settings, tmp_path)
    cnn = [r for r in rows if r["dataset"] == "coqa-cnn"]
    diffs = [r["ndcg@10"]["dense"] - r["ndcg@10"]["bm25"] for r in cnn]
    mean, se = mean_se(diffs)
    paired = result["versus_bm25"]["coqa-cnn"]["dense"]
    assert paired == {"mean": round(mean, 4), "se": round(se, 4), "n": 2}
    assert set(result["versus_bm25"]["coqa-cnn"]) == {"bm25+rerank", "dense"}
    # race has one question: a mean, no error
    assert result["versus_bm25"]["coqa-race"]["dense"]["se"] is None
    longs = result["long_minus_short"]
    assert list(longs) == ["coqa-cnn (long titles)"]
    long = {r["query"]: r["ndcg@10"]["bm25"] for r in rows
            if r["dataset"] == "coqa-cnn (long titles)"}
    short = {r["query"]: r["ndcg@10"]["bm25"] for r in cnn}
    expected = mean_se([long[q] - short[q] for q in short])
    assert longs["coqa-cnn (long titles)"]["bm25"]["mean"] == pytest.approx(expected[0],
                                                                            abs=1e-4)


def test_the_table_has_a_row_per_dataset_with_errors(sets, settings, tmp_path):
    result, _, _ = run(sets, settings, tmp_path)
    page = markdown(result)
    lines = page.splitlines()
    header = next(line for line in lines if line.startswith("| dataset | queries"))
    assert header == "| dataset | queries | items | `bm25` | `bm25+rerank` | `dense` |"
    cnn = result["datasets"]["coqa-cnn"]["configs"]
    cell = f"{cnn['bm25']['ndcg@10']:.3f} ± {cnn['bm25']['se']['ndcg@10']:.3f}"
    assert f"| coqa-cnn | 2 | 5 | {cell} |" in page
    assert any(line.startswith("| coqa-cnn (long titles) | 2 | 5 |") for line in lines)
    race = result["datasets"]["coqa-race"]["configs"]["bm25"]["ndcg@10"]
    assert f"| coqa-race | 1 | 3 | {race:.3f} |" in page  # one question: no ± SE
    # The mean weighs each domain once; long-title rows are not domains of their own.
    # Its error is unknown while one domain's is (race: one question).
    mean = (cnn["bm25"]["ndcg@10"] + race) / 2
    assert f"| mean of 2 domains |  |  | {mean:.3f} |" in page
    result["datasets"]["coqa-race"]["configs"]["bm25"]["se"]["ndcg@10"] = 0.04
    se = math.sqrt(cnn["bm25"]["se"]["ndcg@10"] ** 2 + 0.04**2) / 2
    assert f"| mean of 2 domains |  |  | {mean:.3f} ± {se:.3f} |" in markdown(result)
    assert "minus `bm25`, ± the paired standard error" in page
    assert "long titles minus short titles" in page
    assert "coqa-cnn (long titles): titles of a median" in page


def test_datasets_must_have_distinct_names(sets, settings, tmp_path):
    with pytest.raises(ConfigError, match="each once"):
        run([sets[0], sets[0]], settings, tmp_path)


def test_the_calibrated_column_is_each_corpus_after_its_own_calibration(
    sets, settings, tmp_path
):
    from retriever.calibration import Choice, RetrievalCalibration

    fitted = []

    def calibrate(corpus):
        fitted.append(corpus.settings.data_dir.name)
        # Measured before the fit: the fixed hybrid is the default one.
        assert corpus.fusion["dense_weight"] == 1.0
        record = RetrievalCalibration(
            created="now", encoder=corpus.embedder.fingerprint, chunks=1, max_chunk_id=0,
            questions=2, questions_written=2, seconds=0.0, rule="test",
            chosen=Choice(dense_weight=0.0, rerank=False), reason="test",
        )
        corpus.use_calibration(record)
        return record

    def open_corpus(where):
        return open_service(settings.model_copy(update={"data_dir": where}), HashEmbedder(64))

    result, rows = run_datasets(
        sets, RetrievalEvaluation(["bm25", "hybrid", "calibrated"]), open_corpus,
        tmp_path / "work", None, calibrate=calibrate,
    )
    assert fitted == ["coqa-cnn", "coqa-cnn-long-titles", "coqa-race"]
    for r in rows:  # BM25 alone was chosen: the calibrated column is BM25's
        assert set(r["ranks"]) == {"bm25", "hybrid", "calibrated"}
        assert r["ranks"]["calibrated"] == r["ranks"]["bm25"]
    cnn = result["datasets"]["coqa-cnn"]
    assert cnn["calibration"]["chosen"]["dense_weight"] == 0.0
    assert cnn["configs"]["calibrated"]["ndcg@10"] == cnn["configs"]["bm25"]["ndcg@10"]
    with pytest.raises(ConfigError, match="needs a calibration"):
        run_datasets(sets, RetrievalEvaluation(["calibrated"]), open_corpus, tmp_path / "w2")


def fake_models(monkeypatch, tmp_path):
    """The CLI over fakes: hash embedder, fake cross-encoder, fixture sources; returns the
    sources folder, the reranker folder and the output folder."""
    from api import components
    from retriever import cross_encoder

    monkeypatch.setattr(components, "build_embedder", lambda s, device: HashEmbedder(64))
    monkeypatch.setattr(cross_encoder, "CrossEncoderReranker", FakeCrossEncoder)
    monkeypatch.setattr(domains, "training_split", lambda folder: paragraph_split)
    monkeypatch.setattr(domains, "token_count", lambda folder: word_count)
    monkeypatch.setenv("LECTERN_DATA_DIR", str(tmp_path / "user-data"))
    data = write_sources(tmp_path / "sources")
    return data, write_reranker_record(tmp_path / "reranker"), tmp_path / "out"


def test_cli_runs_the_domains_into_one_table(tmp_path, settings, monkeypatch):
    data, reranker, out = fake_models(monkeypatch, tmp_path)
    result = CliRunner().invoke(app, [
        "eval", "retrieval", "--domains", str(data), "--only", "coqa-cnn,boolq",
        "--long-titles", "--configs", "bm25,bm25+rerank", "--reranker", str(reranker),
        "--limit-queries", "1", "--out-dir", str(out), "--rerank-window", "128",
    ])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "eval-domains.json").read_text())
    assert saved["run"]["rerank_window"] == 128, "the window given reaches the reranker"
    assert list(saved["datasets"]) == [
        "coqa-cnn", "coqa-cnn (long titles)", "boolq", "boolq (long titles)"]
    assert saved["run"]["holdout_share"] == SHARE  # read from the reranker's record
    cnn = saved["datasets"]["coqa-cnn"]
    assert cnn["queries_evaluated"] == 1 and cnn["dataset"]["queries_sampled"] == 1
    rows = [json.loads(x) for x in (out / "eval-domains.ranks.jsonl").read_text().splitlines()]
    assert [r["dataset"] for r in rows] == list(saved["datasets"])
    assert rows[0]["query"] == rows[1]["query"], "long titles ask the same questions"
    page = (out / "eval-domains.md").read_text()
    assert "| coqa-cnn (long titles) | 1 | 5 |" in page


@pytest.mark.parametrize(("args", "message"), [
    (["--beir", "x"], "--domains goes with --squad only"),
    (["--only", "coqa-news"], "unknown domain 'coqa-news'"),
    (["--configs", "bm25,hybrid", "--rerank-window", "128"], "--rerank-window goes with"),
])
def test_cli_refuses_bad_domain_options_before_loading_models(tmp_path, monkeypatch, args,
                                                              message):
    from api import components

    def no_models(*_args, **_kwargs):
        raise AssertionError("models loaded before the options were checked")

    monkeypatch.setattr(components, "build_embedder", no_models)
    monkeypatch.setattr(domains, "training_split", no_models)
    data = write_sources(tmp_path / "sources")
    result = CliRunner().invoke(app, ["eval", "retrieval", "--domains", str(data), *args])
    assert isinstance(result.exception, ConfigError), result.output
    assert message in str(result.exception)


class _Asking:
    """A generator for the calibration: asks about three words of the sentence."""

    def warm_up(self) -> None:
        pass

    def generate(self, messages):
        said = messages[-1]["content"].removeprefix("Statement:").split()
        return f"What is said about {' '.join(said[1:4])}?"

    def stream(self, messages):
        yield self.generate(messages)


def test_cli_calibrates_each_corpus_for_the_calibrated_column(tmp_path, monkeypatch):
    from model import generators

    monkeypatch.setattr(generators, "build", lambda s, plan: _Asking())
    data, reranker, out = fake_models(monkeypatch, tmp_path)
    result = CliRunner().invoke(app, [
        "eval", "retrieval", "--domains", str(data), "--only", "coqa-cnn",
        "--configs", "bm25,calibrated", "--reranker", str(reranker),
        "--calibration-questions", "10", "--out-dir", str(out),
    ])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "eval-domains.json").read_text())
    cnn = saved["datasets"]["coqa-cnn"]
    assert set(cnn["configs"]) == {"bm25", "calibrated"}
    record = cnn["calibration"]
    assert record["questions"] >= 2 and record["chunks"] == 5 and record["reason"]
    page = (out / "eval-domains.md").read_text()
    assert "`calibrated`" in page
