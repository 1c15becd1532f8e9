import re

import pytest

from ingest.chunker import Chunker
from model.answer import ABSTAIN_REPLY, build_messages
from model.train import generator_data
from model.train.lora_data import (
    ExampleBuilder,
    build_examples,
    held_out,
    rebalanced,
)
from model.train.qa_sources import SourceData, SourceDoc, SourceQuestion
from tests.fakes import HashEmbedder, word_count

TOPICS = ["river", "castle", "violin", "glacier", "comet", "harbour", "orchard", "tunnel",
          "falcon", "lantern", "meadow", "quarry"]


def corpus(n_docs: int = 12) -> SourceData:
    docs, questions = [], []
    for i, topic in enumerate(TOPICS[:n_docs]):
        text = (f"The {topic} of Vale {i} was built in {1800 + i}. "
                f"Its keeper was named Keeper{i}. Visitors to the {topic} come in spring.")
        docs.append(SourceDoc("coqa", f"d{i}", f"Vale {topic}", text))
        questions.append(SourceQuestion("coqa", f"d{i}", f"Who was the keeper of the {topic}?",
                                        (f"Keeper{i}",), f"Its keeper was named Keeper{i}"))
    return SourceData(docs, questions)


def builder(data: SourceData, seed: int = 0) -> ExampleBuilder:
    return ExampleBuilder(data, HashEmbedder(), Chunker(word_count, 200, 20), passages=3,
                          budgets=[256], seed=seed)


def numbered(example) -> list[str]:
    return re.findall(r"^\[(\d+)\] (.*)$", example.messages[1]["content"], re.MULTILINE)


def test_the_gold_passage_is_shown_among_distractors_of_other_documents_and_cited():
    b = builder(corpus())
    for q in corpus().questions:
        e = b.build(q, without_gold=False)
        assert e is not None and e.answerable and e.kind == "answer"
        shown = numbered(e)
        assert len(shown) == 3
        gold = [n for n, text in shown if q.answers[0] in text]
        assert len(gold) == 1, "exactly one passage (the gold) holds the answer"
        assert e.target == f"{q.answers[0]} [{gold[0]}]"


def test_the_prompt_is_the_one_the_server_builds():
    b = builder(corpus())
    q = corpus().questions[0]
    e = b.build(q, without_gold=False)
    assert e.messages[0] == build_messages(q.question, [])[0]  # the same system turn
    assert e.messages[1]["content"].endswith(f"Question: {q.question}")


def test_an_example_without_its_gold_passage_abstains():
    b = builder(corpus())
    for q in corpus().questions:
        e = b.build(q, without_gold=True)
        assert e.target == ABSTAIN_REPLY and not e.answerable and e.kind == "no gold"
        assert all(q.answers[0] not in text for _, text in numbered(e))


def test_the_unanswerable_share_is_what_is_asked():
    data = corpus()
    many = SourceData(data.docs, data.questions * 25)
    examples = build_examples(builder(many), many.questions, None, 0.2, seed=3)
    share = sum(e.kind == "no gold" for e in examples) / len(examples)
    assert len(examples) == 300 and 0.13 < share < 0.27
    assert build_examples(builder(many), many.questions, None, 0.2, seed=3) == examples


def test_rebalancing_keeps_every_answer_and_cuts_abstentions_to_the_share():
    data = corpus()
    many = SourceData(data.docs, data.questions * 25)
    examples = build_examples(builder(many), many.questions, None, 0.6, seed=1)
    cut = rebalanced(examples, 0.25, seed=0)
    answers = [e for e in examples if e.answerable]
    assert [e for e in cut if e.answerable] == answers
    assert sum(not e.answerable for e in cut) == round(len(answers) / 3)
    with pytest.raises(ValueError, match="abstain_share"):
        rebalanced(examples, 1.0, 0)


def test_compression_dropping_the_answer_makes_the_reply_an_abstention():
    doc = SourceDoc("coqa", "long", "Vale", " ".join(
        f"Sentence {i} is about the weather in the hills." for i in range(30))
        + " The keeper was Keeper9.")
    data = SourceData([doc, *corpus().docs], [])
    q = SourceQuestion("coqa", "long", "What is sentence 3 about in the hills?", ("Keeper9",),
                       "The keeper was Keeper9")
    b = ExampleBuilder(data, HashEmbedder(), Chunker(word_count, 400, 20), 3, [16], 0)
    e = b.build(q, without_gold=False)
    assert e.kind in {"dropped", "no gold"} and e.target == ABSTAIN_REPLY


def test_the_held_out_split_is_by_document_and_fixed():
    ids = [f"doc{i}" for i in range(2000)]
    out = [i for i in ids if held_out("coqa", i)]
    assert 0.07 < len(out) / len(ids) < 0.13
    assert out == [i for i in ids if held_out("coqa", i)]


def test_the_data_never_mixes_held_out_documents_into_training(tmp_path, monkeypatch):
    data = corpus(12)
    many = SourceData([SourceDoc("coqa", f"x{i}", "", d.text) for i in range(20)
                       for d in data.docs[:1]] + data.docs, data.questions)
    monkeypatch.setattr(generator_data, "read_source", lambda name, _: many)
    built = generator_data.build_generator_data(
        tmp_path, HashEmbedder(), Chunker(word_count, 200, 20), 3, [256], {"coqa": None}, 0.0,
        log=lambda _: None)
    assert all(not held_out("coqa", e.doc_id) for e in built.train)
    assert all(held_out("coqa", e.doc_id) for e in built.heldout)
    with pytest.raises(ValueError, match="squad"):
        generator_data.build_generator_data(tmp_path, HashEmbedder(), Chunker(word_count, 200, 20),
                                            3, [256], {"squad": None}, 0.0)
    generator_data.save(built, tmp_path / "d")
    again = generator_data.load(tmp_path / "d")
    assert again.train == built.train and again.counts == built.counts
