"""The conversational retrieval benchmark on tiny CoQA- and QuAC-shaped files, with fakes.

With a hold-out share of 0.5, reranker_data.is_validation holds out the stories s-tide
(report half) and s-elm (selection half) and keeps s-bread for training; both QuAC
passages are held out, both in the selection half.
"""

import json

import pytest
from typer.testing import CliRunner

from api.cli import app
from lectern.errors import ConfigError
from lectern.types import Turn
from model.answer import IDK
from model.eval import conversation_report as report
from model.eval.conversation_run import (
    AS_ASKED,
    ConversationRun,
    parse_variant,
    parse_variants,
    run_sets,
    switches,
)
from model.eval.conversations import (
    RULE,
    ConvItem,
    first_span,
    half,
    load_sets,
    read_coqa,
    read_quac,
)
from model.rewrite import ANSWER_WORDS
from retriever.eval.datasets import Query
from retriever.train import reranker_data as rd
from tests.fakes import EchoGenerator, HashEmbedder, OverlapReranker
from tests.retriever.eval.sources import paragraph_split, write_reranker_record
from tests.retriever.eval.test_harness import FakeCrossEncoder

SHARE = 0.5


def _story(sid, paragraphs, turns):
    """turns: (turn_id, question, span or None for unknown, free-form answer)."""
    return {
        "source": "cnn", "id": sid, "filename": f"{sid}.txt", "story": "\n\n".join(paragraphs),
        "questions": [{"turn_id": t, "input_text": q} for t, q, _, _ in turns],
        "answers": [{"turn_id": t, "span_text": s or "unknown", "input_text": a,
                     "span_start": -1 if s is None else 0} for t, _, s, a in turns],
    }


STORIES = [
    _story("s-tide", [
        "The harbour council met on Tuesday to discuss the new ferry timetable for the isles.",
        "Ferries to the northern isles will leave every forty minutes from June onwards.",
    ], [  # in the file out of turn order: turns are read by turn_id
        (2, "How often will they leave?", "will leave every forty minutes from June",
         "every forty minutes"),
        (1, "What did the harbour council discuss on Tuesday?",
         "discuss the new ferry timetable for the isles", "the new ferry timetable"),
        (4, "When does it start?", "every forty minutes from June onwards", "from June"),
        (3, "Is it popular?", None, "unknown"),
    ]),
    _story("s-elm", [
        "A storm closed the mountain pass for three days last winter.",
        "Snow ploughs cleared the mountain road by Friday evening after the storm.",
    ], [(1, "What closed the mountain pass last winter?", "A storm closed the mountain pass",
         "A storm"),
        (2, "Who cleared the road?", "Snow ploughs cleared the mountain road", "snow ploughs")]),
    _story("s-bread", ["Local bakers won a regional prize for their rye bread recipe."],
           [(1, "Which bread recipe won the regional prize?", "their rye bread recipe", "rye")]),
]
SINGER = ("In May 1983, she married Nikos Karvelas, a composer, with whom she worked for "
          "years.\n\nIn November she gave birth to her daughter Sofia in Athens.")
LIGHT = ("The lighthouse on Skerry Point was built in 1852 by the harbour trust.\n\n"
         "Its lamp was electrified in 1931 and automated in 1987.")
QUAC = [
    {"passage": SINGER,
     "question": "question1: what happened in 1983?\nquestion2: did they have any children?"
                 "\nquestion3: did she have other children?",
     # answers out of order: matched by their number
     "answer": "possible answers for question2:\nIn November she gave birth to her daughter "
               "Sofia in Athens. her daughter Sofia.\npossible answers for question1:\nIn May "
               "1983, she married Nikos Karvelas, In May 1983, she married Nikos Karvelas, a "
               "composer,\npossible answers for question3:\nCANNOTANSWER CANNOTANSWER"},
    {"passage": LIGHT,
     "question": "question1: when was the lighthouse on Skerry Point built?\n"
                 "question2: when was its lamp automated?",
     "answer": "possible answers for question1:\nbuilt in 1852 by the harbour trust built in "
               "1852\npossible answers for question2:\nelectrified in 1931 and automated in "
               "1987"},
]


def write_data(folder):
    (folder / "coqa").mkdir(parents=True)
    (folder / "coqa" / "coqa-dev.json").write_text(json.dumps({"data": STORIES}))
    (folder / "quac").mkdir()
    (folder / "quac" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QUAC))
    return folder


@pytest.fixture
def data(tmp_path):
    return write_data(tmp_path / "shared")


@pytest.fixture
def sets(data):
    return load_sets(data, ["coqa", "quac"], paragraph_split, SHARE)


def test_the_fixture_holds_out_what_the_docstring_says():
    assert [rd.is_validation(s["id"], SHARE) for s in STORIES] == [True, True, False]
    assert [half(s["id"]) for s in STORIES[:2]] == ["report", "selection"]
    keys = [rd._key(r["passage"]) for r in QUAC]
    assert all(rd.is_validation(k, SHARE) for k in keys)


def test_coqa_turns_in_order_with_gold_answers(data):
    docs, convs = read_coqa(data / "coqa" / "coqa-dev.json")
    assert [d.key for d in docs] == ["s-tide", "s-elm", "s-bread"]
    tide = convs[0]
    assert [q.text for q in tide.questions] == [
        "What did the harbour council discuss on Tuesday?", "How often will they leave?",
        "Is it popular?", "When does it start?"]
    assert tide.answers == ["the new ferry timetable", "every forty minutes", IDK, "from June"]
    assert tide.questions[2].answer is None  # "unknown": not located, never a span


def test_quac_numbered_questions_and_their_answers(data):
    docs, convs = read_quac(data / "quac" / "test.jsonl")
    assert [c.doc for c in convs] == [d.key for d in docs]
    singer = convs[0]
    assert [q.text for q in singer.questions] == [
        "what happened in 1983?", "did they have any children?", "did she have other children?"]
    assert singer.answers == ["In May 1983, she married Nikos Karvelas,",
                              "In November she gave birth to her daughter Sofia in Athens.", IDK]
    assert first_span("built in 1852 by the harbour trust built in 1852", LIGHT) == (
        "built in 1852 by the harbour trust")


def test_items_carry_the_gold_history_and_only_held_out_documents_are_asked(sets):
    coqa, quac = sets
    assert coqa.dataset.info["items"] == 5  # every story's paragraphs, s-bread's too
    assert {i.doc for i in coqa.items} == {"s-tide", "s-elm"}
    tide = {i.turn: i for i in coqa.items if i.doc == "s-tide"}
    # turn 3 ("unknown") is not asked, but stays in turn 4's history
    assert sorted(tide) == [1, 2, 4]
    assert tide[4].history == (
        Turn("What did the harbour council discuss on Tuesday?", "the new ferry timetable"),
        Turn("How often will they leave?", "every forty minutes"),
        Turn("Is it popular?", IDK))
    assert tide[1].query.qrels == {"s-tide/0": 1.0}
    assert tide[2].query.qrels == {"s-tide/1": 1.0}
    assert tide[4].follow_up and not tide[1].follow_up
    assert coqa.dataset.info["turns_not_asked"] == {
        "no answer span (yes/no or unanswerable) in a multi-chunk passage": 1}
    singer = [i for i in quac.items if i.doc == rd._key(SINGER)]
    assert [i.turn for i in singer] == [1, 2]  # CANNOTANSWER on two chunks: not asked
    assert singer[1].query.qrels == {f"{rd._key(SINGER)}/1": 1.0}


def test_halves_split_documents_by_a_hash_of_their_id():
    ids = [f"doc-{n}" for n in range(400)]
    halves = [half(d) for d in ids]
    assert halves == [half(d) for d in ids]  # the same every time
    assert 150 < halves.count("selection") < 250
    held = [h for d, h in zip(ids, halves, strict=True) if rd.is_validation(d, 0.1)]
    assert {"selection", "report"} == set(held)  # not the hold-out's own hash


def test_gap_recovered_arithmetic():
    assert report.gap_recovered(0.6, 0.2, 0.5) == pytest.approx(0.75)
    assert report.gap_recovered(0.6, 0.2, 0.1) == pytest.approx(-0.25)
    assert report.gap_recovered(0.3, 0.4, 0.5) is None  # no gap to recover


H1, H2 = f"history:1:w{ANSWER_WORDS}", f"history:2:w{ANSWER_WORDS}"


def _row(doc, half_, turn, scores):
    return {"dataset": "coqa", "doc": doc, "half": half_, "turn": turn,
            "scores": {v: {"served": {"recall@5": s, "mrr@10": s},
                           "bm25": {"recall@5": 0.0, "mrr@10": 0.0}}
                       for v, s in scores.items()}}


def test_summary_pairs_each_variant_with_the_same_follow_ups_as_asked():
    rows = [_row("d1", "selection", 1, {AS_ASKED: 1.0}),
            _row("d2", "selection", 1, {AS_ASKED: 0.8}),
            _row("d1", "selection", 2, {AS_ASKED: 0.0, H2: 1.0}),
            _row("d1", "selection", 3, {AS_ASKED: 0.5, H2: 0.5}),
            _row("d2", "selection", 2, {AS_ASKED: 1.0, H2: 1.0, "generator:2": 0.0})]
    variants = parse_variants("history:2,generator:2")
    sel = report.summarize(rows, variants)["selection"]["coqa"]
    assert sel["first"]["served"]["mrr@10"] == 0.9
    h = sel["variants"][H2]["served"]
    assert (h["n"], h["mrr@10"], h["as_asked"]["mrr@10"]) == (3, 0.8333, 0.5)
    vs = h["versus"]["mrr@10"]
    # per question b - a = 1, 0, 0: gain 1/3 ± 1/3; gap (0.8333 - 0.5) / (0.9 - 0.5)
    assert (vs["gain"], vs["gain_se"]) == (0.3333, 0.3333)
    assert vs["gap"] == pytest.approx(0.8333, abs=1e-4)
    assert vs["gap_se"] == pytest.approx(0.8333, abs=1e-4)
    g = sel["variants"]["generator:2"]["served"]  # its one follow-up: a = 1.0 beats first
    assert g["n"] == 1 and g["versus"]["mrr@10"]["gap"] is None


COSTS = {"history:1": (0, 1), "history:2": (0, 2), "generator:2": (1, 2)}


def test_a_cheaper_variant_within_one_se_of_the_best_wins():
    scores = {
        "history:1": {"coqa": report.Score(0.75, 0.1, 0.3, 0.04),
                      "quac": report.Score(0.95, 0.1, 0.3, 0.04)},
        "history:2": {"coqa": report.Score(0.80, 0.1, 0.3, 0.04),
                      "quac": report.Score(0.90, 0.1, 0.3, 0.04)},
        "generator:2": {"coqa": report.Score(0.90, 0.2, 0.3, 0.08),
                        "quac": report.Score(0.85, 0.2, 0.3, 0.08)},
    }
    choice = report.select(scores, COSTS)
    assert choice["best"] == "generator:2"  # its worst dataset, 0.85, beats the others'
    assert choice["scores"]["generator:2"]["worst_dataset"] == "quac"
    assert choice["chosen"] == "history:1"  # 0.75 >= 0.85 - 0.2, and no model, one turn


def test_changes_of_subject_take_another_documents_history_and_count_the_loss():
    first = ConvItem("coqa", "d1", "selection", 1, (), Query("d1/t1", "Who built the mill?",
                                                                {"d1/0": 1.0}))
    own = ConvItem("coqa", "d1", "selection", 2, (Turn("q", "a"),), Query("d1/t2", "x", {}))
    other = ConvItem("coqa", "d2", "selection", 2, (Turn("Where is the bay?", "North"),),
                     Query("d2/t2", "y", {}))
    assert switches([first], [own, other]) == [(first, other.history)]
    rows = [
        {**_row("d1", "selection", 1, {AS_ASKED: 1.0}), "query": "d1/t1"},
        {**_row("d1", "selection", 1, {AS_ASKED: 1.0, H1: 1.0, f"{H1}:all": 0.25}),
         "query": "d1/t1", "switch": True},
    ]
    sel = report.summarize(rows, parse_variants("history:1,history:1:all"))["selection"]
    assert sel["coqa"]["first"]["served"]["n"] == 1  # the switch row is not a first turn
    losses = report.switch_losses(sel)
    assert losses[H1]["loss"] == 0.0 and losses[f"{H1}:all"]["loss"] == 0.75


def test_the_amendment_takes_the_least_switch_loss_among_variants_reaching_the_goal():
    scores = {
        H1: {"coqa": report.Score(0.82, 0.05, 0.3, 0.02)},
        f"{H1}:all": {"coqa": report.Score(0.95, 0.05, 0.35, 0.02)},
        H2: {"coqa": report.Score(0.70, 0.05, 0.2, 0.02)},
    }
    costs = {H1: (0, 1), f"{H1}:all": (0, 1), H2: (0, 2)}
    losses = {H1: {"loss": 0.01, "se": 0.01}, f"{H1}:all": {"loss": 0.3, "se": 0.05},
              H2: {"loss": 0.0, "se": 0.0}}
    choice = report.select_amended(scores, costs, losses)
    assert choice["rule_alone"] == f"{H1}:all"  # the rule alone: the best follow-up score
    assert choice["reaching_goal"] == [H1, f"{H1}:all"]  # H2 is under 0.8 of the gap
    assert choice["chosen"] == H1 and choice["amended"]
    # Nobody reaches the goal: the rule decides alone.
    low = {n: {"coqa": report.Score(0.5, 0.05, 0.1, 0.02)} for n in scores}
    assert report.select_amended(low, costs, losses)["amended"] is False


def test_a_clearly_better_variant_wins():
    scores = {
        "history:1": {"coqa": report.Score(0.5, 0.05, 0.2, 0.02)},
        "history:2": {"coqa": report.Score(0.6, 0.05, 0.2, 0.02)},
        "generator:2": {"coqa": report.Score(0.9, 0.05, 0.4, 0.02)},
    }
    choice = report.select(scores, COSTS)
    assert (choice["best"], choice["chosen"]) == ("generator:2", "generator:2")
    # A dataset without a gap is left out of the minimum.
    scores["history:2"]["quac"] = report.Score(None, None, -0.5, 0.1)
    assert report.select(scores, COSTS)["scores"]["history:2"]["worst_dataset"] == "coqa"
    # A variant with no gap anywhere: every variant is scored by its gain instead.
    scores["history:1"] = {"coqa": report.Score(None, None, 0.1, 0.02)}
    choice = report.select(scores, COSTS)
    assert choice["by"] == "gain" and choice["chosen"] == "generator:2"
    assert choice["scores"]["history:2"]["score"] == -0.5


def test_the_default_variants_parse_and_name_their_answer_words():
    names = [v.name for v in parse_variants(None)]
    assert names[0] == AS_ASKED and len(set(names)) == len(names)
    assert "history:2:w40" in names and "history:2:w10" in names and "history:2:w40:all" in names


def test_variants_are_parsed_and_checked():
    assert parse_variant("history:2:w0").answer_words == 0
    every = parse_variant("history:2:w10:all")
    assert (every.answer_words, every.referring_only) == (10, False)
    assert parse_variant("history:2").name == f"history:2:w{ANSWER_WORDS}"  # says what ran
    assert parse_variant("generator:1").calls_model
    assert parse_variant("history:3").cost == (0, 3) < parse_variant("generator:1").cost
    assert [v.name for v in parse_variants("history:1,none")] == [AS_ASKED, H1]
    for bad in ("history:0", "generator:2:w5", "generator:2:all", "history", "condense:2"):
        with pytest.raises(ConfigError, match="unknown variant"):
            parse_variant(bad)
    with pytest.raises(ConfigError, match="no rewrite variant"):
        parse_variants("none")


def _open(settings):
    from api.components import open_corpus

    def opened(where):
        return open_corpus(settings.model_copy(update={"data_dir": where}),
                           embedder=HashEmbedder(64), reranker=OverlapReranker())
    return opened


def test_every_turn_is_searched_and_the_generator_rewrites_its_sample(sets, settings, tmp_path):
    generator = EchoGenerator("Who cleared the mountain road after the storm?")
    run = ConversationRun(parse_variants("history:1,history:1:all,generator:2"),
                          model_followups=1)
    result, rows = run_sets(sets, run, _open(settings), tmp_path / "work", generator.generate)
    coqa = {r["query"]: r for r in rows if r["dataset"] == "coqa" and not r.get("switch")}
    assert set(coqa["s-tide/t1"]["scores"]) == {AS_ASKED}  # a first turn: as asked only
    tide4 = coqa["s-tide/t4"]
    assert tide4["texts"][H1] == "When does it start? Is it popular?"  # IDK adds no words
    # "Who cleared the road?" does not refer back: searched as asked unless ":all"
    elm2 = coqa["s-elm/t2"]["texts"]
    assert elm2[H1] == "Who cleared the road?"
    assert elm2[f"{H1}:all"] == (
        "Who cleared the road? What closed the mountain pass last winter? A storm")
    assert tide4["relevant"] == ["s-tide/1"]
    sampled = [r for r in rows if "generator:2" in r["scores"]]
    assert len([r for r in sampled if r["dataset"] == "coqa"]) == 1  # one per set
    assert len(generator.seen) >= 2 and "Conversation:" in generator.seen[-1][-1]["content"]
    assert result["datasets"]["coqa"]["index"]["statuses"] == {"added": 5}
    assert set(result["datasets"]["coqa"]["rewrite_latency"]) == {
        AS_ASKED, H1, f"{H1}:all", "generator:2"}
    with pytest.raises(ConfigError, match="no generator"):
        run_sets(sets, run, _open(settings), tmp_path / "again")


def test_cli_writes_json_markdown_and_rows(data, tmp_path, monkeypatch):
    from api import components
    from model import generators
    from retriever import cross_encoder
    from retriever.eval import domains

    monkeypatch.setenv("LECTERN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(components, "build_embedder", lambda s, device: HashEmbedder(64))
    monkeypatch.setattr(cross_encoder, "CrossEncoderReranker", FakeCrossEncoder)
    monkeypatch.setattr(domains, "training_split", lambda folder: paragraph_split)
    monkeypatch.setattr(generators, "build", lambda s, plan: EchoGenerator())
    ce = write_reranker_record(tmp_path / "ce", SHARE)
    out = tmp_path / "results" / "conv"
    result = CliRunner().invoke(app, [
        "eval", "conversations", "--data", str(data), "--reranker", str(ce),
        "--variants", "history:1,history:2,generator:2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["selection"]["chosen"] in {H1, H2, "generator:2"}
    assert written["run"]["holdout_share"] == SHARE and written["rule"] == RULE
    assert set(written["halves"]) == {"selection", "report"}
    page = out.with_suffix(".md").read_text()
    assert "## Report half" in page and "(c) gold standalone form" in page
    assert f"**{written['selection']['chosen']}**" in page and RULE in page
    assert "min wall clock, load average" in page
    rows = out.parent / "conv.rows.jsonl"
    lines = [json.loads(line) for line in rows.read_text().splitlines()]
    assert len([r for r in lines if not r.get("switch")]) == 9  # tide 1, 2, 4; elm 1, 2; quac 2 + 2
    # Each first question once more as a change of subject (another document's turns).
    assert len([r for r in lines if r.get("switch")]) == 4


def test_cli_refuses_a_bad_variant_before_loading_models(data, monkeypatch):
    from api import components

    def no_models(*_args, **_kwargs):
        raise AssertionError("models loaded before the options were checked")

    monkeypatch.setattr(components, "build_embedder", no_models)
    result = CliRunner().invoke(app, ["eval", "conversations", "--data", str(data),
                                      "--variants", "history:0"])
    assert isinstance(result.exception, ConfigError)
