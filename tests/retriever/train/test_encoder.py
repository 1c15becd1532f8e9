"""Encoder tuning from the corpus: question cleaning, the BM25 filter, hard negatives, and
a few fine-tuning steps end to end on a tiny randomly initialised sentence-transformer."""

import json
import random
import re

import numpy as np
import pytest

from lectern.types import Chunk
from retriever import questions as sq
from retriever.embedder import SentenceTransformerEmbedder
from retriever.records import EncoderTuningRecord
from retriever.train.corpus_tuning import tune_from_corpus
from retriever.train.encoder import CONFIG_FILE, TuningReport, retrieval_metrics, trained_chunks
from retriever.train.encoder_config import CorpusTuning, TuningConfig
from retriever.train.encoder_data import Example, batches, mine_examples, split_holdout
from tests.fakes import EchoGenerator

TOPICS = {
    "library": "The Fenmoor library opens at eight on weekdays. Books are lent for 28 days "
    "and can be renewed twice online.",
    "fees": "Tuition fees for the MSc Data Science are EUR 16,800 per year. Fees are due by "
    "1 October and may be paid in two instalments.",
    "housing": "Students apply for campus housing by 31 May. Rooms in Kelso Hall include a "
    "desk, a bed and a shared kitchen.",
    "exams": "A student may retake a failed exam twice. Retake sessions take place in August "
    "at the sports centre.",
    "parking": "Parking permits for the north car park cost EUR 90 per semester. Bicycles "
    "park free in the covered racks.",
    "observatory": "The observatory moved to Kelso Hill in 1912. Its telescope is open to "
    "visitors on clear Friday nights.",
    "canteen": "The canteen serves vegetarian lunches from noon. Coffee is sold at the "
    "kiosk beside the main entrance.",
    "sports": "The sports centre has a swimming pool and a climbing wall. Membership is free "
    "for first-year students.",
    "thesis": "A master's thesis is submitted through the portal. Supervisors grade it "
    "within six weeks of submission.",
    "language": "Dutch courses for beginners start every September. The language centre "
    "also offers academic English writing.",
    "careers": "The careers office reviews CVs on Tuesdays. Employers visit campus for the "
    "job fair in March.",
    "clinic": "The student clinic books appointments by phone. A nurse is on duty every "
    "morning during term.",
}


class KeywordQuestions(EchoGenerator):
    """Asks about the longest words of the statement it is shown (a stand-in generator)."""

    def generate(self, messages):
        self.seen.append(list(messages))
        statement = messages[-1]["content"].removeprefix("Statement: ")
        words = sorted(set(re.findall(r"[A-Za-z]{4,}", statement)), key=lambda w: (-len(w), w))
        return f"Question: What about {' and '.join(words[:3])}?\nAnswer: none"


def chunk(i: int, text: str, doc: str | None = None) -> Chunk:
    return Chunk(i, doc or f"d{i}", text, f"src{i}", f"Title {i}")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Question: Where was the observatory moved?\nAnswer: Kelso",
            "Where was the observatory moved?",
        ),
        (
            '"how many times may a student retake an exam? It is twice."',
            "How many times may a student retake an exam?",
        ),
        ("1. What does the canteen serve at noon ?", "What does the canteen serve at noon?"),
        ("The observatory moved in 1912.", ""),
        ("Why?", ""),
        ("What's wrong with this sentence?", ""),
        ("What kind of setting is this?", ""),
        ("What " + "very " * 40 + "long?", ""),
        ("The observatory moved to Kelso Hill in 1912 and opens on Fridays?", ""),
        ("", ""),
    ],
)
def test_clean_keeps_one_question(raw, expected):
    passage = "The observatory moved to Kelso Hill in 1912 and opens on Fridays."
    question, status = sq.clean(raw, passage)
    assert question == expected
    assert (status == "kept") == bool(expected)


def test_sentences_and_prompt():
    text = "Short one. " + TOPICS["observatory"] + " " + "word " * 80
    found = sq.sentences(text)
    assert found[0] == "The observatory moved to Kelso Hill in 1912."
    assert max(len(s.split()) for s in found) == sq.SENTENCE_WORDS[1]
    picked = sq.pick_sentences(chunk(1, text), 2, random.Random(0))
    assert len(picked) == 2 and all(p in found for p in picked)
    assert sq.reply_prefix(found[0]) == "In what year"
    assert sq.reply_prefix("Coffee is sold at the kiosk.") == ""
    messages = sq.messages_for(found[0])
    assert messages[0]["role"] == "system" and messages[-1]["content"].endswith("1912.")


class Batched:
    """A generator with generate_batch: records what it was asked."""

    def __init__(self):
        self.calls = []

    def generate_batch(self, conversations, max_new_tokens, reply_prefixes, stop):
        self.calls.append((len(conversations), max_new_tokens, list(reply_prefixes), stop))
        return [p + " did the telescope open?" for p in reply_prefixes]


def test_writer_batches_prompts_and_passes_prefixes():
    gen = Batched()
    chunks = [chunk(i, TOPICS["observatory"]) for i in range(5)]
    out = list(sq.QuestionWriter(gen, batch_size=2, max_new_tokens=24).write(chunks))
    assert [c[0] for c in gen.calls] == [2, 2, 1]
    assert gen.calls[0][1] == 24 and gen.calls[0][3] == ("?", "\n")
    assert any(p == "In what year" for c in gen.calls for p in c[2])
    statuses = [q.status for q in out]
    assert statuses.count("kept") == 2  # two distinct questions; the rest repeat them
    assert statuses.count("duplicate") == 3


def test_filter_keeps_questions_whose_chunk_bm25_finds(service):
    for name, text in TOPICS.items():
        service.ingestor().ingest_text(f"topic/{name}", name.title(), text)
    service.refresh()
    chunks = service.store.all_chunks()
    fees = next(c for c in chunks if "Tuition" in c.text)
    questions = [
        sq.SyntheticQuestion(
            fees.id, fees.document_id, "", "", "When are tuition fees due?", "kept"
        ),
        sq.SyntheticQuestion(fees.id, fees.document_id, "", "", "Who grades the thesis?", "kept"),
        sq.SyntheticQuestion(fees.id, fees.document_id, "", "", "", "not a question"),
    ]
    out = list(sq.check_retrievable(questions, service.corpus.bm25, top_k=1))
    assert [(q.status, q.rank) for q in out] == [
        ("kept", 1),
        ("not retrievable", None),
        ("not a question", None),
    ]


def test_a_larger_per_chunk_asks_only_for_the_missing_questions(service, tmp_path):
    for name in ("observatory", "fees", "library"):
        service.ingestor().ingest_text(f"topic/{name}", name.title(), TOPICS[name])
    service.refresh()
    chunks = service.store.all_chunks()
    path = tmp_path / "questions.jsonl"
    first = KeywordQuestions()
    one = sq.generate(sq.QuestionWriter(first, batch_size=2), chunks, service.corpus.bm25, 20, path)
    assert len(one) == len(first.seen) == len(chunks)

    second = KeywordQuestions()
    seen_sentences = {q.sentence for q in one}
    progress: list[tuple[int, int]] = []
    two = sq.generate(
        sq.QuestionWriter(second, batch_size=2, per_chunk=2),
        chunks,
        service.corpus.bm25,
        20,
        path,
        lambda done, wanted: progress.append((done, wanted)),
    )
    # Each chunk has two sentences: one more prompt per chunk, on the sentence not yet used.
    assert len(second.seen) == len(chunks)
    asked = [m[-1]["content"].removeprefix("Statement: ") for m in second.seen]
    assert seen_sentences.isdisjoint(asked)
    assert len(two) == 2 * len(chunks)
    assert {q.chunk_id for q in two} == {c.id for c in chunks}
    assert progress and progress[-1][1] == 2 * len(chunks)
    assert len(path.read_text().splitlines()) == 2 * len(chunks)
    # Asking again with the same per_chunk writes nothing new.
    third = KeywordQuestions()
    sq.generate(sq.QuestionWriter(third, per_chunk=2), chunks, service.corpus.bm25, 20, path)
    assert third.seen == []


def test_hard_negatives_skip_the_own_document_and_batches_have_unique_chunks():
    chunks = {
        1: chunk(1, "alpha beta gamma", doc="a"),
        2: chunk(2, "alpha beta delta", doc="a"),
        3: chunk(3, "alpha epsilon", doc="b"),
        4: chunk(4, "zeta eta", doc="c"),
    }

    class Fixed:
        def retrieve(self, query, top_k):
            from lectern.types import ScoredChunk

            return [ScoredChunk(chunks[i], 1.0) for i in (1, 2, 3, 4)][:top_k]

    q = sq.SyntheticQuestion(1, "a", "", "", "alpha beta?", "kept")
    (ex,) = mine_examples([q], chunks, Fixed(), negatives=2, depth=10)
    assert ex.negatives == (chunks[3].model_text, chunks[4].model_text)
    # Three questions on each of three chunks: a batch holds each chunk once, so at most
    # three questions, and all nine are used.
    examples = [Example(f"q{i}", i % 3, "p", ("n",)) for i in range(9)]
    out = batches(examples, 4, random.Random(0))
    assert [sorted(e.chunk_id for e in batch) for batch in out] == [[0, 1, 2]] * 3
    assert sorted(e.question for batch in out for e in batch) == [f"q{i}" for i in range(9)]
    # A question left alone has no in-batch negatives: it is dropped, not batched by itself.
    lone = [Example("a", 0, "p", ("n",)), Example("b", 0, "p", ("n",)), Example("c", 1, "p", ())]
    (only,) = batches(lone, 4, random.Random(0))
    assert sorted(e.chunk_id for e in only) == [0, 1]
    train, held = split_holdout(
        [q, *[sq.SyntheticQuestion(i, "x", "", "", "q?", "kept") for i in range(2, 12)]], 0.2, 0
    )
    assert {x.chunk_id for x in train}.isdisjoint({x.chunk_id for x in held})
    assert len({x.chunk_id for x in held}) == 2


def test_trained_chunks_of_an_older_record_are_rebuilt_from_its_questions_file(tmp_path):
    questions = [sq.SyntheticQuestion(i, "d", "", "", f"q{i}?", "kept") for i in range(20)]
    questions.append(sq.SyntheticQuestion(99, "d", "", "", "", "vague"))
    sq.save(questions, tmp_path / "q.jsonl")
    folder = tmp_path / "enc"
    folder.mkdir()
    assert trained_chunks(folder) is None  # not a Lectern-tuned encoder
    record = {"questions_file": str(tmp_path / "q.jsonl"), "config": {"holdout_share": 0.25,
                                                                     "seed": 3}}
    (folder / CONFIG_FILE).write_text(json.dumps(record))
    train, _ = split_holdout(questions[:20], 0.25, 3)
    assert trained_chunks(folder) == {q.chunk_id for q in train} and len(train) == 15
    (folder / CONFIG_FILE).write_text(json.dumps({**record, "trained_chunks": [1, 2]}))
    assert trained_chunks(folder) == {1, 2}  # the record's own list wins
    (tmp_path / "q.jsonl").unlink()
    (folder / CONFIG_FILE).write_text(json.dumps(record))
    assert trained_chunks(folder) is None


def test_a_tuning_improves_only_if_it_beats_its_base_and_the_compared_encoder(tmp_path):
    def report(before: float, after: float, compared: dict | None = None) -> TuningReport:
        r = TuningReport(tmp_path, TuningConfig(), {})
        r.before, r.after = {"mrr@10": before}, {"mrr@10": after}
        r.compared = compared or {}
        return r

    def vs(tuned: float, other: float) -> dict:
        return {"tuned": {"mrr@10": tuned}, "other": {"mrr@10": other}}

    assert report(0.5, 0.6).improves()
    assert not report(0.6, 0.6).improves()
    assert report(0.5, 0.6, vs(0.62, 0.61)).improves()
    assert not report(0.5, 0.6, vs(0.61, 0.62)).improves()
    # No held-out question the other encoder did not train on: no evidence it is beaten.
    assert not report(0.5, 0.6, {"questions": 0, "tuned": {}, "other": {}}).improves()


def test_retrieval_metrics_rank_each_question_s_own_chunk_among_all_chunks():
    # Twelve chunks, each embedded as its own axis; each question's vector is written out.
    chunks = {i: chunk(i, f"passage {i}") for i in range(1, 13)}
    axis = {c.model_text: np.eye(12, dtype=np.float32)[i - 1] for i, c in chunks.items()}

    def question(own: int, weights: dict[int, float]) -> sq.SyntheticQuestion:
        text = f"q{own}?"
        vector = np.zeros(12, dtype=np.float32)
        for i, w in weights.items():
            vector[i - 1] = w
        axis[text] = vector
        return sq.SyntheticQuestion(own, f"d{own}", "", "", text, "kept")

    questions = [
        question(1, {1: 1.0}),  # its chunk first: rank 1
        question(2, {3: 0.9, 2: 0.5}),  # chunk 3 above it: rank 2
        question(12, {**{i: 1.0 for i in range(1, 12)}, 12: 0.5}),  # rank 12, past @10
        question(4, {4: 1.0, 5: 1.0}),  # a tie with chunk 5 goes to its own: rank 1
    ]
    calls = []

    def encode(texts):
        calls.append(len(texts))
        return np.stack([axis[t] for t in texts])

    expected = {
        "questions": 4,
        "recall@1": 0.5,  # ranks 1 and 1 of 1, 2, 12, 1
        "recall@5": 0.75,
        "recall@10": 0.75,
        "mrr@10": 0.625,  # (1 + 1/2 + 0 + 1) / 4
    }
    assert retrieval_metrics(encode, questions, chunks) == expected
    assert calls == [12, 4], "the chunks once, then the questions"
    passages = np.eye(12, dtype=np.float32)  # the chunks' vectors in id order, at hand
    assert retrieval_metrics(encode, questions, chunks, passages) == expected
    assert calls == [12, 4, 4], "chunk vectors at hand are not encoded again"
    assert retrieval_metrics(encode, [], chunks) == {}


def test_config_validates_eagerly():
    with pytest.raises(ValueError, match="batch_size must be at least 2.*got 1"):
        TuningConfig(batch_size=1)
    with pytest.raises(ValueError, match="holdout_share.*got 1.5"):
        TuningConfig(holdout_share=1.5)
    with pytest.raises(ValueError, match="max_new_tokens >= 8.*got 1, 1, 2"):
        sq.QuestionWriter(EchoGenerator(), batch_size=1, max_new_tokens=2)


@pytest.fixture
def tiny_encoder(tmp_path_factory):
    """A 2-layer, 32-wide BERT sentence-transformer with a vocabulary of the fixture's words."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny-encoder")
    hf = root / "hf"
    hf.mkdir()
    words = sorted({w.lower() for t in TOPICS.values() for w in re.findall(r"\w+", t)})
    words += ["title", "what", "about", "and", "when", "who"]
    (hf / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(words)])
    )
    tok = BertTokenizerFast(vocab_file=str(hf / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(hf)
    import torch

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(hf)
    model = SentenceTransformer(str(hf), device="cpu", local_files_only=True)  # mean pooling
    model.save(str(root / "st"))
    return root / "st"


def test_tuning_end_to_end_on_a_tiny_encoder(settings, tmp_path, tiny_encoder):
    from api.service import Lectern

    base = SentenceTransformerEmbedder(tiny_encoder, "tiny-base")
    svc = Lectern(settings, embedder=base)
    svc.warm_up()
    for name, text in TOPICS.items():
        assert svc.ingestor().ingest_text(f"topic/{name}", name.title(), text).status == "added"
    svc.refresh()
    generator = KeywordQuestions()
    plan = CorpusTuning(
        out=tmp_path / "models" / "encoder-tuned-v1",
        questions=tmp_path / "models" / "encoder-tuned-v1.questions.jsonl",
        per_chunk=2,
        generation_batch=4,
        config=TuningConfig(
            batch_size=4, epochs=2, max_steps=3, holdout_share=0.25, learning_rate=1e-3
        ),
    )
    report = tune_from_corpus(
        svc, generator, tiny_encoder, plan, meta={"corpus": "fixture"}, base_fingerprint="tiny-base"
    )

    # Questions: every chunk asked about, each saved with its fate; only clean ones kept.
    lines = [json.loads(x) for x in plan.questions.read_text().splitlines()]
    assert len(generator.seen) == len(lines) >= len(TOPICS)
    assert {x["chunk_id"] for x in lines} == {c.id for c in svc.store.all_chunks()}
    kept = [x for x in lines if x["status"] == "kept"]
    assert kept and all(x["question"].endswith("?") and x["rank"] >= 1 for x in kept)
    # Training: three steps, a held-out measurement either side, a versioned folder.
    assert report.steps == 3 and len(report.losses) == 3
    assert report.counts["held_out_chunks"] == round(len({x["chunk_id"] for x in kept}) * 0.25)
    assert set(report.before) == set(report.after) >= {"recall@1", "mrr@10"}
    # "Before" was measured on the store's vectors: the same as embedding afresh.
    held = split_holdout([sq.SyntheticQuestion(**x) for x in kept], 0.25, 0)[1]
    chunks = {c.id: c for c in svc.store.all_chunks()}
    assert retrieval_metrics(base.embed_passages, held, chunks) == report.before
    record = EncoderTuningRecord.load(plan.out)
    assert record is not None and record.version == EncoderTuningRecord.VERSION
    saved = record.as_dict()
    assert saved == json.loads((plan.out / CONFIG_FILE).read_text())
    assert saved["corpus"] == "fixture" and saved["base_encoder"] == str(tiny_encoder)
    assert saved["config"]["max_steps"] == 3 and saved["generation"]["per_chunk"] == 2
    assert saved["counts"]["questions_kept"] == len(kept)
    # The fusion is the corpus's calibration's to choose, not the encoder's record's.
    assert saved["fusion"] is None and len(held) > 0
    assert saved["held_out_after"] == report.after
    assert not list(plan.out.parent.glob(".*part*")), "no half-written folder is left"

    tuned = SentenceTransformerEmbedder(plan.out, "tiny-tuned")
    tuned.warm_up()
    text = svc.store.all_chunks()[0].model_text
    assert not np.allclose(tuned.embed_passages([text]), base.embed_passages([text]))
    with pytest.raises(FileExistsError, match="versioned"):
        tune_from_corpus(svc, generator, tiny_encoder, plan)

    trained = {x["chunk_id"] for x in kept} - {q.chunk_id for q in held}
    assert set(saved["trained_chunks"]) == trained

    # A rerun reuses the replies in the questions file instead of asking the generator
    # again, and judges them by its own rules. Measured against the first tuned encoder,
    # it uses only held-out questions whose chunks that one did not train on.
    asked = len(generator.seen)
    again = CorpusTuning(
        out=tmp_path / "models" / "v2",
        questions=plan.questions,
        filter_top_k=1,
        config=TuningConfig(
            batch_size=4, epochs=2, max_steps=3, holdout_share=0.9, learning_rate=1e-3
        ),
        compare_with=plan.out,
    )
    second = tune_from_corpus(svc, generator, tiny_encoder, again)
    assert len(generator.seen) == asked
    lines = [json.loads(x) for x in plan.questions.read_text().splitlines()]
    assert len(lines) == asked and {x["rank"] for x in lines if x["status"] == "kept"} == {1}
    kept_again = [sq.SyntheticQuestion(**x) for x in lines if x["status"] == "kept"]
    held_again = split_holdout(kept_again, 0.9, 0)[1]
    fair = [q for q in held_again if q.chunk_id not in trained]
    assert 0 < len(fair) < len(held_again)
    c = second.compared
    assert c["encoder"] == str(plan.out) and c["its_training_chunks_known"]
    assert c["questions"] == c["tuned"]["questions"] == c["other"]["questions"] == len(fair)
    assert c["other"] == retrieval_metrics(tuned.embed_passages, fair, chunks)

    # The tuned encoder goes into service through the versioned re-index.
    assert svc.switch_encoder(tuned, ref=str(plan.out)) == svc.counts().chunks
    assert svc.search("Tuition fees", top_k=3, mode="dense")
    svc.store.close()
