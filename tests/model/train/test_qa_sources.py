import json

import pytest

from lectern.errors import ConfigError
from model.train.qa_sources import SOURCES, read_source, standalone


def write(folder, relative, text):
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def shared(tmp_path):
    story = "Tom lives in Leeds. He keeps a red bike in the barn. His sister is Ann."
    write(tmp_path, "coqa/coqa-dev.json", json.dumps({"data": [{
        "id": "s1", "source": "race", "story": story,
        "questions": [{"input_text": "where does Tom live?", "turn_id": 1},
                      {"input_text": "where does he keep it?", "turn_id": 2},
                      {"input_text": "What colour is Tom's bike?", "turn_id": 3},
                      {"input_text": "Who is Tom's brother?", "turn_id": 4}],
        "answers": [{"input_text": "Leeds.", "span_text": "Tom lives in Leeds", "turn_id": 1},
                    {"input_text": "in the barn", "span_text": "in the barn", "turn_id": 2},
                    {"input_text": "red", "span_text": "a red bike", "turn_id": 3},
                    {"input_text": "unknown", "span_text": "", "turn_id": 4}],
    }]}))
    passage = "In 1983 she married Nikos Karvelas, a composer. They had a daughter, Sofia."
    write(tmp_path, "quac/test.jsonl", "\n".join(json.dumps(r) for r in [
        {"passage": passage, "question": "question1: Who did she marry?\nquestion2: When?",
         "answer": "possible answers for question1:\nshe married Nikos Karvelas, a composer. "
                   "Nikos Karvelas\npossible answers for question2:\nIn 1983"},
        {"passage": passage, "question": "question1: Did she win awards?",
         "answer": "possible answers for question1:\nCANNOTANSWER CANNOTANSWER"},
    ]))
    write(tmp_path, "narrativeqa/test.jsonl", json.dumps(
        {"question": "Who is Mark?", "answer": ["A student.", "A loner"],
         "passage": "Mark is a student in Phoenix."}))
    write(tmp_path, "boolq/combined.jsonl", "\n".join(json.dumps(r) for r in [
        {"question": "is leeds in england", "passage": "Leeds -- Leeds is a city in England.",
         "idx": 1, "label": True},
        {"question": "is paris in spain", "passage": "Paris -- Paris is in France.", "idx": 2},
    ]))
    return tmp_path


def test_no_evaluation_file_is_a_training_source():
    assert sorted(SOURCES) == ["boolq", "coqa", "narrativeqa", "quac"]
    assert not any("squad" in path.lower() for path, _ in SOURCES.values())
    with pytest.raises(ConfigError, match="squad"):
        read_source("squad", __import__("pathlib").Path("/nowhere"))


def test_a_missing_file_names_its_path(tmp_path):
    with pytest.raises(ConfigError, match="coqa-dev.json"):
        read_source("coqa", tmp_path)


def test_coqa_keeps_standalone_turns_and_marks_unknown_as_unanswerable(shared):
    data = read_source("coqa", shared)
    asked = {q.question: q for q in data.questions}
    assert set(asked) == {"where does Tom live?", "What colour is Tom's bike?",
                          "Who is Tom's brother?"}
    assert asked["where does Tom live?"].answers == ("Leeds",)
    assert asked["where does Tom live?"].evidence == "Tom lives in Leeds"
    brother = asked["Who is Tom's brother?"]
    assert brother.unanswerable and not brother.answers


def test_quac_takes_the_first_answer_of_the_first_question_only(shared):
    data = read_source("quac", shared)
    assert [(q.question, q.answers, q.unanswerable) for q in data.questions] == [
        ("Who did she marry?", ("she married Nikos Karvelas, a composer",), False),
        ("Did she win awards?", (), True),
    ]


def test_narrativeqa_and_boolq(shared):
    nqa = read_source("narrativeqa", shared)
    assert nqa.questions[0].answers == ("A student", "A loner")
    boolq = read_source("boolq", shared)
    assert [(q.question, q.answers) for q in boolq.questions] == [
        ("Is leeds in england?", ("Yes",))]  # the unlabelled row is no question
    assert [d.title for d in boolq.docs] == ["Leeds", "Paris"]  # but its passage is kept
    assert boolq.docs[0].text == "Leeds is a city in England."


@pytest.mark.parametrize(("question", "turn", "expected"), [
    ("who is the most famous mouse?", 1, True),
    ("about when was he created?", 2, False),
    ("What did the voice start to say?", 3, True),
    ("why?", 2, False),
])
def test_standalone(question, turn, expected):
    assert standalone(question, turn) is expected


def test_the_corpus_questions_are_answered_by_the_sentence_they_were_written_from():
    from lectern.types import Chunk
    from model.train.qa_sources import corpus_questions
    from retriever.questions import SyntheticQuestion

    chunks = [Chunk(1, "doc-a", "CSC 340 is taught by Dr. Marrow. It has 6 ECTS.", "a", "CSC 340"),
              Chunk(2, "doc-b", "Fees are due by 1 October.", "b", "Fees")]
    asked = [SyntheticQuestion(1, "doc-a", "CSC 340 is taught by Dr. Marrow.", "raw",
                               "Who teaches CSC 340?", "kept", 1),
             SyntheticQuestion(2, "doc-b", "Fees are due by 1 October.", "raw", "", "too short")]
    data = corpus_questions(asked, chunks)
    assert [(q.question, q.answers) for q in data.questions] == [
        ("Who teaches CSC 340?", ("CSC 340 is taught by Dr. Marrow",))]
    assert sorted(d.doc_id for d in data.docs) == ["chunk-1", "chunk-2"]  # both distract
