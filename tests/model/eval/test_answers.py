"""The answer harness end to end on a tiny SQuAD set: the serving path with fake models."""

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest.pipeline import document_id
from lectern.errors import ConfigError
from lectern.settings import Settings
from model.answer import IDK
from model.eval.answer_report import markdown, summarize
from model.eval.answers import PIECES, TOKENIZER, AnswerEvaluation, questions
from model.eval.configs import build_configs
from retriever.eval.datasets import load_squad, sample_queries
from retriever.eval.indexing import IndexReport
from tests.fakes import EchoGenerator, HashEmbedder, OverlapReranker, word_count

# The reader's script: question -> (its reply, a text that must stand in the passage it
# cites). No passage holds that text (the probe: its article is out): "I don't know."
SCRIPT = {
    "Where does the river Wend meet the estuary?": ("Selby", "Selby"),
    # the right answer, citing the article's other paragraph: a citation without the answer
    "On which day is the Harby market held?": ("every Tuesday", "river Wend"),
    "What kind of sand is melted to make glass?": ("sand", "quartz sand"),
    "Which oxide gives glass a blue tint?": ("cobalt oxide", "cobalt oxide"),
    "How do honey bees show the way to flowers?": (None, None),  # always abstains
}


def squad_doc() -> dict:
    def qa(qid, question, *answers):
        return {"id": qid, "question": question,
                "answers": [{"text": a, "answer_start": 0} for a in answers]}

    q = list(SCRIPT)
    return {"version": "1.1", "data": [
        {"title": "Old_Mill_Town", "paragraphs": [
            {"context": "The river Wend flows through the old mill town of Harby and meets "
                        "the estuary at Selby.",
             "qas": [qa("q-mill", q[0], "Selby", "at Selby")]},
            {"context": "The Harby market is held every Tuesday in the square by the mill.",
             "qas": [qa("q-market", q[1], "every Tuesday", "Tuesday")]},
        ]},
        {"title": "Glass_Making", "paragraphs": [
            {"context": "To make glass, fine quartz sand is melted with soda ash and lime.",
             "qas": [qa("q-glass", q[2], "fine quartz sand", "quartz sand"),
                     qa("q-removed", "What is melted with soda ash?", "sand")]},
            {"context": "A pinch of cobalt oxide gives glass its deep blue tint.",
             "qas": [qa("q-cobalt", q[3], "cobalt oxide")]},
        ]},
        {"title": "Bees", "paragraphs": [
            {"context": "Honey bees show the way to flowers with a waggle dance in the hive.",
             "qas": [qa("q-bees", q[4], "with a waggle dance", "waggle dance")]},
        ]},
    ]}


def write_squad(folder: Path) -> tuple[Path, Path]:
    path, removed = folder / "squad.json", folder / "removed.json"
    path.write_text(json.dumps(squad_doc()))
    removed.write_text(json.dumps({"removed": {"q-removed": ["sand"]}}))
    return path, removed


class Reader(EchoGenerator):
    """Answers by SCRIPT, citing the first passage of the prompt that holds its evidence;
    records every prompt's question and passages (what retrieval let through)."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[tuple[str, list[str]]] = []

    def count_tokens(self, text: str) -> int:
        return word_count(text)

    def generate(self, messages):
        self.seen.append(list(messages))
        user = messages[-1]["content"]
        question = user.rsplit("Question: ", 1)[1].strip()
        passages = re.findall(r"^\[(\d+)\] (.*)$", user, re.MULTILINE)
        self.prompts.append((question, [text for _, text in passages]))
        reply, evidence = SCRIPT[question]
        for number, text in passages:
            if reply and evidence in text:
                return f"{reply} [{number}]"
        return "I don't know."


# Every paragraph in the prompt (5 passages, a budget none is cut by), and no relevance
# floor: what the reader sees decides the reply.
WIDE = "generation.passages=5;generation.context_tokens=400;generation.min_relevance=-1"


@pytest.fixture
def squad(tmp_path):
    return load_squad(*write_squad(tmp_path))


def run(squad, settings, configs, tmp_path, workers=1):
    """The harness as the CLI runs it: a shared embedder and index, a Lectern per config
    (the base model, adapter "none", only ever says it does not know)."""
    from api.components import open_corpus
    from api.service import Lectern

    embedder = HashEmbedder(64)
    events, readers = [], {}

    class Recorded(Lectern):
        def close(self, timeout_s: float = 5.0) -> None:
            events.append(("close", self.settings.models.adapter))
            super().close(timeout_s)

    def open_service(s: Settings) -> Lectern:
        events.append(("open", s.models.adapter))
        generator = EchoGenerator(IDK) if s.models.adapter == "none" else Reader()
        readers[s.models.adapter] = generator
        return Recorded(s, embedder=embedder, generator=generator, reranker=OverlapReranker())

    evaluation = AnswerEvaluation(configs, workers=workers)
    index = open_corpus(settings, embedder=embedder)
    try:
        result = evaluation.run(squad, index, open_service, tmp_path / "rows.jsonl")
    finally:
        index.store.close()
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    return result, rows, events, readers


def test_two_configurations_scored_by_hand(squad, settings, tmp_path):
    configs = build_configs(settings, [f"tuned=models.adapter=tuned;{WIDE}",
                                       f"base=models.adapter=none;{WIDE}"])
    result, rows, events, _ = run(squad, settings, configs, tmp_path)
    # Each configuration's service is closed before the next one opens.
    assert events == [("open", "tuned"), ("close", "tuned"), ("open", "none"), ("close", "none")]
    assert result["questions_evaluated"] == 5 and result["index"]["statuses"] == {"added": 5}
    assert Counter((r["config"], r["run"]) for r in rows) == {
        (c, run): 5 for c in ("tuned", "base") for run in ("normal", "probe")}

    tuned = result["configs"]["tuned"]
    # EM: Selby 1, every Tuesday 1, sand 0, cobalt oxide 1, the bees' abstention 0.
    assert tuned["em"]["mean"] == 60.0
    # F1: 1, 1, "sand" against "quartz sand" (P 1, R 1/2) 2/3, 1, 0.
    assert tuned["f1"]["mean"] == pytest.approx(100 * (3 + 2 / 3) / 5, abs=0.01)
    assert tuned["contains"]["mean"] == 0.6
    # Four answers with one citation each; the market answer cites the mill paragraph.
    assert tuned["counts"]["citations"] == 4
    assert tuned["citation_precision"] == 0.75
    assert tuned["gold_cited"] == 0.75
    assert tuned["false_abstain"] == 0.2
    assert tuned["probe_abstain"] == 1.0  # nothing outside a question's article answers it
    assert tuned["gold_in_passages"] == 1.0
    assert tuned["words"] == 1.5  # Selby, every Tuesday, sand, cobalt oxide
    assert tuned["tokens_counted_by"] == TOKENIZER
    assert tuned["first_token"]["n"] == tuned["full_answer"]["n"] == 5  # the normal run

    base = result["configs"]["base"]
    assert base["em"]["mean"] == base["f1"]["mean"] == 0.0 and base["contains"]["mean"] == 0.0
    assert base["false_abstain"] == base["probe_abstain"] == 1.0
    assert base["citation_precision"] is None and base["gold_cited"] is None
    assert base["words"] is None and base["tokens_counted_by"] == PIECES
    assert base["overrides"]["models.adapter"] == "none"

    page = markdown(result)
    lines = [line for line in page.splitlines() if line.startswith("| `")]
    assert lines[0].startswith("| `tuned` | 60.0 ± 24.5 | 73.3 ± 19.4 | 60.0% | 75.0% | 75.0% |"
                               " 20.0% | 100.0% |")
    assert lines[1].startswith("| `base` | 0.0 ± 0.0 | 0.0 ± 0.0 | 0.0% | — | — | 100.0% |")


def test_rows_and_the_probe_filter(squad, settings, tmp_path):
    configs = build_configs(settings, [f"tuned=models.adapter=tuned;{WIDE}"])
    _, rows, _, readers = run(squad, settings, configs, tmp_path)
    by = {(r["question_id"], r["run"]): r for r in rows}
    mill = by["q-mill", "normal"]
    assert mill["answer"] == "Selby [1]" and mill["raw_reply"] == "Selby [1]"
    assert mill["abstained"] is False and mill["tokens"] == 2
    assert mill["scores"] == {"em": 1.0, "f1": 1.0, "contains": 1.0, "citations_with_gold": 1,
                              "cites_gold": True, "gold_in_passages": True, "words": 1}
    mill_doc = document_id("squad/Old_Mill_Town/0")
    assert mill["gold_document"] == mill_doc
    assert mill["citations"][0]["document_id"] == mill_doc
    assert {"retrieve_ms", "rerank_ms", "generate_ms", "total_ms", "first_token_ms",
            "wall_ms"} <= set(mill["timings"])
    assert mill["timings"]["first_token_ms"] is not None
    bees = by["q-bees", "normal"]
    assert bees["abstained"] is True and bees["answer"] == IDK and bees["citations"] == []
    assert bees["scores"]["em"] == bees["scores"]["f1"] == bees["scores"]["contains"] == 0.0

    article = {
        "q-mill": "Old_Mill_Town/0 Old_Mill_Town/1", "q-market": "Old_Mill_Town/0 Old_Mill_Town/1",
        "q-glass": "Glass_Making/0 Glass_Making/1", "q-cobalt": "Glass_Making/0 Glass_Making/1",
        "q-bees": "Bees/0",
    }
    everything = {document_id(f"squad/{i.id}") for i in squad.items}
    for qid, items in article.items():
        own = {document_id(f"squad/{i}") for i in items.split()}
        probe, normal = by[qid, "probe"], by[qid, "normal"]
        shown = {p["document_id"] for p in probe["passages"]}
        assert shown == everything - own, qid  # every other article, none of its own
        assert {p["document_id"] for p in normal["passages"]} == everything
        assert probe["abstained"] is True
    # What the generator was shown in the probe: no passage of the question's article.
    mill_prompts = [p for q, p in readers["tuned"].prompts
                    if q.startswith("Where does the river Wend")]
    assert len(mill_prompts) == 3  # the warm-up question, its normal run, its probe
    assert any("Selby" in t for t in mill_prompts[1])
    assert not any("Harby" in t or "Selby" in t for t in mill_prompts[2])


def test_workers_ask_at_once_and_rows_stay_in_order(squad, settings, tmp_path):
    configs = build_configs(settings, [f"tuned=models.adapter=tuned;{WIDE}"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, rows_one, _, _ = run(squad, settings, configs, tmp_path / "a", workers=1)
    three, rows_three, _, _ = run(squad, settings, configs, tmp_path / "b", workers=3)
    assert three["method"]["workers"] == 3
    key = [(r["question_id"], r["run"], r["answer"]) for r in rows_one]
    assert [(r["question_id"], r["run"], r["answer"]) for r in rows_three] == key
    assert three["configs"]["tuned"]["em"] == one["configs"]["tuned"]["em"]
    assert "cpu_during_answers" in three["configs"]["tuned"]


def test_the_probe_keeps_an_identical_twin_out_too(tmp_path):
    doc = squad_doc()
    doc["data"].append({"title": "Bees_Copy", "paragraphs": [
        {"context": doc["data"][2]["paragraphs"][0]["context"], "qas": []}]})
    path = tmp_path / "twin.json"
    path.write_text(json.dumps(doc))
    squad = load_squad(path)
    ids = [i.id for i in squad.items]
    # As index_dataset reports it: Bees_Copy/0 is stored once, as Bees/0.
    report = IndexReport({**{i: i for i in ids}, "Bees_Copy/0": "Bees/0"}, Counter(), [], 6, 0.0)
    asked = {q.query.id: q for q in questions(squad, report)}
    bees = document_id("squad/Bees/0")
    assert asked["q-bees"].article_documents == {bees}
    assert asked["q-bees"].gold_document == bees
    assert asked["q-mill"].article_documents == {
        document_id("squad/Old_Mill_Town/0"), document_id("squad/Old_Mill_Town/1")}
    assert asked["q-mill"].query.answers == ("Selby", "at Selby")


def test_summary_of_a_failed_question():
    rows = [{"run": "normal", "error": "overloaded", "question_id": "q"},
            {"run": "probe", "error": "overloaded", "question_id": "q"}]
    summary = summarize(rows)
    assert summary["counts"]["errors"] == {"normal": 1, "probe": 1}
    assert summary["counts"]["questions"] == 0 and summary["em"] == {"mean": None, "se": None}
    assert summary["full_answer"] is None and summary["false_abstain"] is None


def test_configurations_are_checked_eagerly(settings):
    with pytest.raises(ConfigError, match="no setting 'max_tokens'"):
        build_configs(settings, ["x=generation.max_tokens=5"])
    with pytest.raises(ConfigError, match="no settings section 'gen'"):
        build_configs(settings, ["x=gen.max_new_tokens=5"])
    with pytest.raises(ConfigError, match="'generation.max_new_tokens=0'|greater than or equal"):
        build_configs(settings, ["x=generation.max_new_tokens=0"])
    with pytest.raises(ConfigError, match="configuration 'x': generation.max_new_tokens"):
        build_configs(settings, ["x=generation.max_new_tokens=many"])
    with pytest.raises(ConfigError, match="same index"):
        build_configs(settings, ["x=ingest.chunk_tokens=100"])
    with pytest.raises(ConfigError, match="same index"):
        build_configs(settings, ["x=models.encoder=other"])
    with pytest.raises(ConfigError, match="named twice: a"):
        build_configs(settings, ["a=generation.passages=2", "a=generation.passages=3"])
    with pytest.raises(ConfigError, match="write it as NAME="):
        build_configs(settings, ["generation.passages"])
    with pytest.raises(ConfigError, match="section.key=value"):
        build_configs(settings, ["x=passages=2"])
    with pytest.raises(ConfigError, match="blank"):
        build_configs(settings, [], adapters=[" "])
    # The Settings-wide check too: more answers in flight than the generator can hold.
    with pytest.raises(ConfigError, match="max_answers_in_flight"):
        build_configs(settings, ["x=generation.max_batch=1;generation.max_waiting=0"])
    with pytest.raises(ConfigError, match="workers must be between 1 and"):
        AnswerEvaluation(build_configs(settings), workers=33)


def test_configuration_shorthands(settings):
    assert [(c.name, c.overrides) for c in build_configs(settings)] == [("default", {})]
    got = build_configs(settings, ["wide=generation.passages=5; generation.do_sample=true"],
                        adapters=["none", "var/adapter"], generator="gen/llama")
    assert [c.name for c in got] == ["wide", "adapter=none", "adapter=var/adapter"]
    assert got[0].settings.generation.passages == 5 and got[0].settings.generation.do_sample
    assert got[0].settings.models.generator == settings.models.generator
    assert got[1].settings.models.adapter == "none"
    assert got[2].settings.models.generator == "gen/llama"
    assert got[2].settings.data_dir == settings.data_dir
    alone = build_configs(settings, generator="gen/llama")
    assert [(c.name, c.settings.models.generator) for c in alone] == [
        ("generator=gen/llama", "gen/llama")]
    nulled = build_configs(settings, ["r=models.reranker=null;api.cors_origins=[\"null\"]"])
    assert nulled[0].settings.models.reranker is None
    assert nulled[0].settings.api.cors_origins == ["null"]


def test_cli_runs_the_seeded_sample_of_the_retrieval_harness(tmp_path, monkeypatch):
    from api import components, service
    from api.cli import app

    real = service.Lectern
    monkeypatch.setattr(components, "build_embedder", lambda s, device: HashEmbedder(64))
    monkeypatch.setattr(service, "Lectern", lambda s, embedder: real(
        s, embedder=embedder, generator=Reader(), reranker=OverlapReranker()))
    path, removed = write_squad(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "eval", "answers", "--squad", str(path), "--removed", str(removed),
        "--limit-questions", "3", "--seed", "1", "--config", f"a={WIDE}",
        "--config", f"b={WIDE};generation.max_new_tokens=32", "--name", "tiny",
        "--out", str(out), "--data-dir", str(tmp_path / "data"),
    ])
    assert result.exit_code == 0, result.output
    sample = sample_queries(load_squad(path, removed), 3, seed=1)
    rows = [json.loads(line) for line in (out / "tiny.jsonl").read_text().splitlines()]
    wanted = [q.id for q in sample.queries]
    for config in ("a", "b"):
        assert [r["question_id"] for r in rows if r["config"] == config and
                r["run"] == "normal"] == wanted
    data = json.loads((out / "tiny.json").read_text())
    assert list(data["configs"]) == ["a", "b"] and data["dataset"]["seed"] == 1
    assert data["dataset"]["removed_ids_skipped"] == 1
    assert "python" in data["environment"]
    assert "| `a` |" in (out / "tiny.md").read_text() and "| `b` |" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--config", "x=ingest.chunk_tokens=100"], "same index"),
    (["--config", "x=generation.nope=1"], "no setting 'nope'"),
    (["--workers", "40"], "workers must be between 1 and"),
    (["--calibrate-abstention", "0,0.5"], "measures one adapter"),
    (["--calibrate-abstention", "0,0.5", "--adapter", "none"], "measures one adapter"),
    (["--calibrate-abstention", "0.5", "--adapter", "x"], "two or more"),
])
def test_cli_refuses_bad_options_before_loading_models(tmp_path, monkeypatch, args, message):
    from api import components
    from api import service as _imported_unpatched  # noqa: F401 - binds the real open_corpus
    from api.cli import app

    def no_models(*_args, **_kwargs):
        raise AssertionError("models loaded before the options were checked")

    monkeypatch.setattr(components, "open_corpus", no_models)
    monkeypatch.setattr(components, "build_embedder", no_models)
    path, _ = write_squad(tmp_path)
    result = CliRunner().invoke(app, ["eval", "answers", "--squad", str(path), *args])
    assert isinstance(result.exception, ConfigError)
    assert message in str(result.exception)


def test_cli_calibrates_the_abstention_of_one_adapter(tmp_path, monkeypatch):
    from api import components, service
    from api.cli import app
    from model.abstention import AbstentionCalibration

    real = service.Lectern
    asked: list[float | None] = []

    def lectern(s, embedder):
        assert (s.models.generator, s.models.adapter) == ("gen/llama", str(adapter))
        asked.append(s.generation.abstain_threshold)
        return real(s, embedder=embedder, generator=Reader(), reranker=OverlapReranker())

    monkeypatch.setattr(components, "build_embedder", lambda s, device: HashEmbedder(64))
    monkeypatch.setattr(service, "Lectern", lectern)
    path, removed = write_squad(tmp_path)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    result = CliRunner().invoke(app, [
        "eval", "answers", "--squad", str(path), "--removed", str(removed),
        "--adapter", str(adapter), "--generator", "gen/llama",
        "--calibrate-abstention", "0,0.8", "--name", "cal",
        "--out", str(tmp_path / "out"),
    ])
    assert result.exit_code == 0, result.output
    assert asked == [0.0, 0.8]  # one configuration per threshold, of that adapter
    record = AbstentionCalibration.load(adapter)
    assert record is not None and [c.threshold for c in record.candidates] == [0.0, 0.8]
    assert record.threshold == 0.0  # the scripted reader ignores it: a tie, the lower one
    assert record.measured_on == str(path.resolve()) and record.questions == 5
    assert "abstention threshold 0 written to" in result.output
    assert list(json.loads((tmp_path / "out" / "cal.json").read_text())["configs"]) == [
        "abstain@0.0", "abstain@0.8"]
