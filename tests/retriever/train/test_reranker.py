"""Reranker training: reading the four sources, mining negatives, a tiny end-to-end run."""

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from lectern.errors import ConfigError
from retriever.cross_encoder import (
    CONFIG_FILE,
    ONNX_FILE,
    PRIOR_WEIGHTS,
    SHIPPED_RERANKER,
    CrossEncoderReranker,
    QueryFocus,
)
from retriever.records import RerankerRecord
from retriever.train import reranker_data as rd
from retriever.train.reranker import _quota, prepare_data, train
from retriever.train.reranker_config import TrainConfig

TOPICS = [
    ("Volcano", "A volcano is a rupture in the crust of a planet. Lava flows from it when it "
     "erupts.", "What flows from a volcano in an eruption?", "Lava flows from it"),
    ("Glacier", "A glacier is a persistent body of dense ice that moves under its own weight. "
     "Glaciers form where snow accumulates.", "Where do glaciers form?",
     "where snow accumulates"),
    ("Desert", "A desert is a barren area of landscape where little precipitation occurs. "
     "Deserts cover one third of the land surface.", "How much of the land do deserts cover?",
     "one third of the land surface"),
    ("Reef", "A coral reef is an underwater ecosystem built by colonies of coral polyps held "
     "together by calcium carbonate.", "What holds coral polyps together in a reef?",
     "calcium carbonate"),
    ("Comet", "A comet is an icy small body that warms and releases gases when passing close "
     "to the Sun, making a visible tail.", "What makes the visible tail of a comet?",
     "releases gases when passing close to the Sun"),
    ("Tundra", "Tundra is a biome where tree growth is hindered by frigid temperatures and "
     "short growing seasons.", "What hinders tree growth in the tundra?",
     "frigid temperatures and short growing seasons"),
]


def write_sources(root):
    """A few records of each training source, in its file's real format."""
    stories = []
    for i, (title, text, question, span) in enumerate(TOPICS):
        stories.append({
            "source": "wikipedia" if i % 2 else "race", "id": f"s{i}",
            "filename": f"{title}.txt", "name": f"{title}.txt", "story": text,
            "questions": [{"input_text": question, "turn_id": 1},
                          {"input_text": "what did it do?", "turn_id": 2}],
            "answers": [{"span_text": span, "span_start": 0, "span_end": 1,
                         "input_text": span, "turn_id": 1},
                        {"span_text": text[:20], "span_start": 0, "span_end": 1,
                         "input_text": "x", "turn_id": 2}],
            "additional_answers": {},
        })
    (root / "coqa").mkdir()
    (root / "coqa" / "coqa-dev.json").write_text(json.dumps({"version": 1, "data": stories}))
    (root / "boolq").mkdir()
    (root / "boolq" / "combined.jsonl").write_text("".join(
        json.dumps({"question": f"is {t.lower()} a natural feature", "passage": f"{t} -- {x}",
                    "idx": i, "label": True}) + "\n"
        for i, (t, x, _, _) in enumerate(TOPICS)))
    (root / "narrativeqa").mkdir()
    (root / "narrativeqa" / "test.jsonl").write_text("".join(
        json.dumps({"question": q, "answer": [a, a.upper()], "passage": x}) + "\n"
        for _, x, q, a in TOPICS))
    (root / "quac").mkdir()
    (root / "quac" / "test.jsonl").write_text("".join(
        json.dumps({
            "passage": x,
            "question": f"question1: {q}\nquestion2: did it last?\nquestion3: Why so?",
            "answer": f"possible answers for question1:\n{a} {a}\npossible answers for "
                      "question2:\nCANNOTANSWER CANNOTANSWER\npossible answers for "
                      "question3:\nCANNOTANSWER",
        }) + "\n"
        for _, x, q, a in TOPICS))
    return root


def test_squad_is_never_a_training_source():
    assert all("squad" not in path for path in rd.FILES.values())
    with pytest.raises(ValueError, match="unknown training source 'squad'"):
        rd.load_source("squad", "/nonexistent", lambda t: [t], QueryFocus().terms)


def test_readers_pair_questions_with_the_chunk_holding_the_answer(tmp_path):
    root = write_sources(tmp_path)
    focus = QueryFocus()

    def halves(text):  # two chunks per document, so the answer has to be located
        words = text.split()
        return [" ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])]

    coqa = rd.load_source("coqa", root, halves, focus.terms)
    assert coqa.read == 12 and len(coqa.examples) == 6
    assert coqa.dropped["follow-up question (pronoun or under 3 words)"] == 6
    by_id = {c.id: c for c in coqa.chunks}
    for e in coqa.examples:
        span = next(t[3] for t in TOPICS if t[2] == e.question)
        assert span.split()[-1] in by_id[e.positive].text
    assert {c.title for c in coqa.chunks} == {"", "Glacier", "Reef", "Tundra"}
    quac = rd.load_source("quac", root, halves, focus.terms, first_id=1000)
    assert quac.read == 18 and len(quac.examples) == 6
    assert min(c.id for c in quac.chunks) == 1000
    boolq = rd.load_source("boolq", root, lambda t: [t], focus.terms)
    assert boolq.chunks[0].title == "Volcano" and boolq.chunks[0].text.startswith("A volcano")
    assert len(rd.load_source("narrativeqa", root, halves, focus.terms).examples) >= 5


def test_groups_hold_the_positive_first_then_negatives_that_do_not_answer(tmp_path):
    data = rd.load_source("boolq", write_sources(tmp_path), lambda t: [t], QueryFocus().terms)
    miner = rd.NegativeMiner(data.chunks)
    groups = rd.build_groups(data.examples, miner, 2, 1, 5, random.Random(0), candidates=4)
    assert len(groups) == len(data.examples) == len(TOPICS), "one group per question"
    for e, g in zip(data.examples, groups, strict=True):
        assert g.chunks[0].id == e.positive and len(g.chunks) == 4
        assert not {c.id for c in g.chunks[1:]} & e.relevant
        assert len({c.id for c in g.chunks}) == 4
        assert 1 <= len(g.candidates) <= 4


def test_quota_shares_evenly_and_passes_on_what_a_source_lacks():
    assert _quota({"a": 10, "b": 10}, 8) == {"a": 4, "b": 4}
    assert _quota({"a": 1, "b": 10, "c": 10}, 9) == {"a": 1, "b": 4, "c": 4}
    assert sum(_quota({"a": 3, "b": 2}, 100).values()) == 5


def test_quota_without_spill_caps_every_part_at_the_even_share():
    # BoolQ-like: one large part cannot take what the small ones lack.
    assert _quota({"a": 1, "b": 10, "c": 100}, 30, spill=False) == {"a": 1, "b": 10, "c": 10}
    assert _quota({"a": 10, "b": 10, "c": 10}, 4, spill=False) == {"a": 2, "b": 1, "c": 1}
    assert _quota({"a": 0, "b": 10}, 4, spill=False) == {"a": 0, "b": 4}


def test_domain_balance_shares_the_quota_over_coqa_story_sources_and_validates_per_domain(
    tmp_path,
):
    from transformers import AutoTokenizer

    from lectern.settings import DEFAULT_ENCODER
    from model.registry import resolve

    tokenizer = AutoTokenizer.from_pretrained(str(resolve(DEFAULT_ENCODER).folder))
    data = write_sources(tmp_path)
    coqa = rd.load_source("coqa", data, lambda t: [t], QueryFocus().terms)
    assert {e.doc: e.domain for e in coqa.examples} == {
        f"s{i}": "coqa-wikipedia" if i % 2 else "coqa-race" for i in range(len(TOPICS))
    }

    def prepared(balance, questions):
        cfg = TrainConfig(data, tmp_path / "o", tmp_path, questions=questions, hard_negatives=2,
                          holdout_share=0.5, val_questions=5, mine_depth=4, seed=3,
                          balance=balance)
        return prepare_data(cfg, tokenizer, random.Random(3), log=lambda _: None)

    parts = {"coqa-race", "coqa-wikipedia", "boolq", "narrativeqa", "quac"}
    # 15 over five parts is 3 each; coqa-race has fewer training questions than that (3
    # stories, some held out) and BoolQ more, so without spill the total stays below 15.
    by_domain = prepared("domain", 15)
    assert set(by_domain.quota) == parts
    assert by_domain.available["coqa-race"] < 3 < by_domain.available["boolq"]
    assert by_domain.quota["coqa-race"] == by_domain.available["coqa-race"]
    assert by_domain.quota["boolq"] == 3, "no part above the even share"
    assert sum(by_domain.quota.values()) < 15
    assert len(by_domain.groups) == sum(by_domain.quota.values())
    trained = Counter(next(e.domain for e in coqa.examples if e.question == g.question)
                      if g.source == "coqa" else g.source for g in by_domain.groups)
    assert trained == {p: n for p, n in by_domain.quota.items() if n}
    # Every Wikipedia story trains at this hold-out; race has held-out stories.
    assert "coqa-race" in by_domain.val_groups and set(by_domain.val_groups) <= parts
    assert {g.question for g in by_domain.val_groups["coqa-race"]} == {
        e.question for e in coqa.examples if e.domain == "coqa-race"
        and rd.is_validation(e.doc, 0.5)}
    by_source = prepared("source", 15)  # spill: what one source lacks goes to the others
    assert set(by_source.quota) == set(rd.SOURCES) and sum(by_source.quota.values()) == 15
    # Held out per domain whatever training shares over, so both are judged the same way.
    assert {d: [g.question for g in gs] for d, gs in by_source.val_groups.items()} == {
        d: [g.question for g in gs] for d, gs in by_domain.val_groups.items()}
    with pytest.raises(ConfigError, match="balance='topic'"):
        TrainConfig(tmp_path, tmp_path / "o", tmp_path, balance="topic")  # type: ignore[arg-type]


def test_config_names_the_bad_value(tmp_path):
    with pytest.raises(ConfigError, match="layers=0"):
        TrainConfig(tmp_path, tmp_path / "o", tmp_path, layers=0)
    with pytest.raises(ConfigError, match=r"pooling='attention' \(one of mean, max"):
        TrainConfig(tmp_path, tmp_path / "o", tmp_path, pooling="attention")
    with pytest.raises(ConfigError, match="loss='hinge'"):
        TrainConfig(tmp_path, tmp_path / "o", tmp_path, loss="hinge")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"sources=\['squad'\] \(known: coqa, boolq"):
        TrainConfig(tmp_path, tmp_path / "o", tmp_path, sources=("squad",))
    with pytest.raises(ConfigError, match="learning_rate=0; warmup_share=1; holdout_share=1"):
        TrainConfig(tmp_path, tmp_path / "o", tmp_path, learning_rate=0, warmup_share=1,
                    holdout_share=1)


@pytest.mark.parametrize(("loss", "balance", "pooling"),
                         [("listwise", "domain", "mean+max"), ("bce", "source", "mean")])
def test_tiny_training_run_saves_a_working_reranker_with_its_record(
    tmp_path, loss, balance, pooling
):
    from lectern.settings import DEFAULT_ENCODER
    from model.registry import resolve

    out = tmp_path / "models" / "reranker"
    (tmp_path / "data").mkdir()
    cfg = TrainConfig(
        data_dir=write_sources(tmp_path / "data"),
        output_dir=out, backbone=resolve(DEFAULT_ENCODER).folder, questions=12,
        hard_negatives=2, random_negatives=1, loss=loss, layers=1, max_length=48,
        batch_questions=3, holdout_share=0.5, val_questions=3, val_depth=4, mine_depth=4,
        seed=3, log_every=1, require_improvement=False, compare_with=SHIPPED_RERANKER,
        balance=balance, pooling=pooling,
    )
    lines = []
    result = train(cfg, log=lines.append)
    assert result.output_dir == out
    assert {"config.json", ONNX_FILE, CONFIG_FILE} <= {p.name for p in out.iterdir()}
    assert not out.with_name("reranker.partial").exists()
    record = RerankerRecord.load(out)
    assert record is not None and record.version == RerankerRecord.VERSION
    info = record.as_dict()
    assert info == json.loads((out / CONFIG_FILE).read_text())
    assert info["config"]["seed"] == 3 and info["config"]["loss"] == loss
    assert info["config"]["pooling"] == pooling
    assert info["config"]["learning_rate"] == cfg.learning_rate and "lr" not in info["config"]
    assert info["config"]["backbone_layers"] == 6
    assert set(info["data"]["sources"]) == set(rd.SOURCES)
    parts = info["data"]["parts"]
    if balance == "source":
        assert set(parts) == set(rd.SOURCES) and info["data"]["train_questions"] == 12
    else:  # CoQA's two story sources are domains of their own; none above 12 // 5 + 1
        assert {"coqa-race", "coqa-wikipedia", "boolq"} <= set(parts)
        assert "coqa" not in parts and max(p["train_questions"] for p in parts.values()) <= 3
    taken = sum(p["train_questions"] for p in parts.values())
    assert info["data"]["train_questions"] == taken
    assert all(p["train_questions"] <= p["available"] for p in parts.values())
    assert info["training"]["steps"] == -(-taken // 3) and info["training"]["pairs"] == 4 * taken
    held = info["data"]["validation_questions"]
    assert "coqa-race" in held and "coqa" not in held, "held out per domain in both balances"
    assert set(info["validation"]["per_source"]) == {d for d, n in held.items() if n}
    assert "pairs_per_second" in info["training"]  # a measured rate: its value is not tested
    overall = info["validation"]["overall"]
    assert overall["questions"] > 0 and 0 <= overall["reranked"]["mrr@10"] <= 1
    assert 0 <= overall["accuracy"] <= 1
    assert info["prior_weight"] in PRIOR_WEIGHTS
    assert overall["fused"]["mrr@10"] >= overall["reranked"]["mrr@10"], (
        "weight 0 (the logits alone) is among those tried"
    )
    assert any("pairs/s" in line for line in lines)
    compared = info["validation"]["compared"]
    assert compared["model"] == str(SHIPPED_RERANKER)
    assert compared["overall"]["questions"] == overall["questions"]
    assert compared["prior_weight"] in PRIOR_WEIGHTS

    reranker = CrossEncoderReranker(out)
    reranker.warm_up()
    assert reranker.max_length == 48 and reranker.info["config"]["layers"] == 1
    assert reranker.prior_weight == info["prior_weight"]
    assert len(reranker.score("Where do glaciers form?", [("Glacier", "Snow piles up.")])) == 1


def test_held_out_questions_do_not_depend_on_the_training_quota(tmp_path):
    from transformers import AutoTokenizer

    from lectern.settings import DEFAULT_ENCODER
    from model.registry import resolve

    tokenizer = AutoTokenizer.from_pretrained(str(resolve(DEFAULT_ENCODER).folder))
    data = write_sources(tmp_path)

    def held_out(questions):
        cfg = TrainConfig(data, tmp_path / "o", tmp_path, questions=questions, hard_negatives=2,
                          holdout_share=0.5, val_questions=2, mine_depth=4, seed=3,
                          balance="source")  # so 12 are there to take; the rule is the same
        prepared = prepare_data(cfg, tokenizer, random.Random(3), log=lambda _: None)
        return prepared, {s: [(g.question, [c.id for c in g.chunks]) for g in gs]
                          for s, gs in prepared.val_groups.items()}

    few, few_val = held_out(4)
    many, many_val = held_out(12)
    assert len(few.groups) == 4 and len(many.groups) == 12
    assert sum(map(len, few_val.values())) > 0
    assert few_val == many_val


def corpus_questions(tmp_path):
    """An ingested corpus (chunk ids as a store numbers them) and a questions file for it."""
    from lectern.types import Chunk
    from retriever.questions import SyntheticQuestion
    from retriever.train.reranker_corpus import CorpusQuestions

    chunks, questions = [], []
    for i, (title, text, question, _) in enumerate(TOPICS):
        words = text.split()
        first, second = " ".join(words[:8]), " ".join(words[8:])
        for pos, part in enumerate((first, second)):
            chunks.append(Chunk(100 + 2 * i + pos, f"doc-{i}", part, f"{title}.md", title,
                                position=pos))
        questions.append(SyntheticQuestion(100 + 2 * i + 1, f"doc-{i}", second, question,
                                           question, "kept", 1))
        questions.append(SyntheticQuestion(100 + 2 * i, f"doc-{i}", first, "A volcano.", "",
                                           "not a question"))
    return CorpusQuestions(chunks, questions, tmp_path / "questions.jsonl")


def test_corpus_questions_become_a_source_whose_documents_chunks_all_count():
    from retriever.train.reranker_corpus import corpus_source

    corpus = corpus_questions(Path("/q"))
    data = corpus_source(corpus, first_id=1000)
    assert [c.id for c in data.chunks] == list(range(1000, 1012))
    assert [c.text for c in data.chunks] == [c.text for c in corpus.chunks]
    assert data.documents == 6 and data.read == 12 and len(data.examples) == 6
    assert data.dropped == {"not kept: not a question": 6}
    glacier = next(e for e in data.examples if e.question == "Where do glaciers form?")
    by_id = {c.id: c for c in data.chunks}
    assert by_id[glacier.positive].text.endswith("Glaciers form where snow accumulates.")
    assert glacier.relevant == {glacier.positive - 1, glacier.positive}  # both of its chunks
    assert glacier.doc == "doc-1" and glacier.source == "corpus"


def test_a_questions_file_of_another_store_is_refused():
    from retriever.train.reranker_corpus import CorpusQuestions

    corpus = corpus_questions(Path("/q"))
    with pytest.raises(ConfigError, match=r"chunks this store does not have \(e.g. chunk 101\)"):
        CorpusQuestions(corpus.chunks[2:], corpus.questions, Path("/q"))
    with pytest.raises(ConfigError, match="no kept questions"):
        CorpusQuestions(corpus.chunks, [q for q in corpus.questions if not q.kept], Path("/q"))


def test_a_tiny_run_with_corpus_questions_trains_and_measures_on_them(tmp_path):
    from lectern.settings import DEFAULT_ENCODER
    from model.registry import resolve

    out = tmp_path / "models" / "reranker"
    (tmp_path / "data").mkdir()
    cfg = TrainConfig(
        data_dir=write_sources(tmp_path / "data"), sources=("boolq",),
        output_dir=out, backbone=resolve(DEFAULT_ENCODER).folder, questions=2,
        hard_negatives=1, random_negatives=1, layers=1, max_length=48, batch_questions=4,
        holdout_share=0.5, val_questions=2, val_depth=4, mine_depth=4, seed=3,
        require_improvement=False, compare_with=SHIPPED_RERANKER,
    )
    corpus = corpus_questions(tmp_path)
    held = [e for e in range(6) if rd.is_validation(f"doc-{e}", 0.5)]
    assert 0 < len(held) < 6, "the fixture needs corpus documents on both sides"
    result = train(cfg, log=lambda _: None, corpus=corpus)
    info = result.info
    assert info["data"]["corpus_questions"] == str(corpus.path)
    assert info["data"]["parts"]["corpus"]["train_questions"] == 6 - len(held)
    assert info["data"]["validation_questions"]["corpus"] == len(held)
    assert info["data"]["train_questions"] == 2 + 6 - len(held)
    assert info["validation"]["fitted_on"] == "corpus"
    measured = info["validation"]["per_source"]["corpus"]
    assert measured["questions"] == len(held)
    assert info["validation"]["compared"]["per_source"]["corpus"]["questions"] == len(held)
