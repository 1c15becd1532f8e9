"""Training examples for the generator, built as the server builds its prompts.

Each example is what `POST /api/v1/ask` would show the model: a question, passages cut by
`model.context.compress` and numbered by `model.answer.build_messages`, and the reply it
should write. The passages are the gold passage shuffled among BM25 hard distractors from
the same source (RAFT); in a share of the examples the gold passage is left out, and then
the reply is the abstention (ChatQA). Whether an example is answerable is decided on the
prompt as compressed, not on the document: when compression drops the sentence that holds
the answer, the right reply to that prompt is "I don't know".

Split rule, fixed before any run: a document is held out when the first byte of
sha1("<source>/<doc id>") is below 26 (10%); its questions never reach training.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ingest.chunker import Chunker
from ingest.partition import Block
from lectern.protocols import Embedder, Message
from lectern.types import Chunk
from model.answer import ABSTAIN_REPLY, build_messages
from model.context import compress, content_words
from model.eval.metrics import normalize
from model.train.qa_sources import SourceData, SourceDoc, SourceQuestion
from retriever.bm25 import BM25Retriever

HELDOUT_BELOW = 26  # of 256: ~10% of the documents


def held_out(source: str, doc_id: str) -> bool:
    return hashlib.sha1(f"{source}/{doc_id}".encode()).digest()[0] < HELDOUT_BELOW


@dataclass(frozen=True, slots=True)
class Example:
    source: str
    doc_id: str
    question: str
    messages: list[Message]
    target: str
    answerable: bool
    answers: tuple[str, ...]
    kind: str  # "answer", "no gold" (gold left out), "dropped" (compression cut the answer),
    # "unanswerable" (the document itself does not say)
    budget: int
    relevance: float


def chunk_docs(docs: Iterable[SourceDoc], chunker: Chunker, start_id: int = 0) -> list[Chunk]:
    """The documents chunked as `Ingestor.ingest_text` chunks them (paragraphs on blank lines)."""
    chunks: list[Chunk] = []
    next_id = start_id
    for doc in docs:
        blocks = [Block(p.strip(), "text") for p in doc.text.split("\n\n") if p.strip()]
        for position, piece in enumerate(chunker.split(blocks)):
            chunks.append(Chunk(next_id, f"{doc.source}/{doc.doc_id}", piece.text,
                                doc.doc_id, doc.title, piece.section, piece.page, position))
            next_id += 1
    return chunks


def _overlap(a: str, b: str) -> float:
    words = content_words(a)
    return len(words & content_words(b)) / len(words) if words else 0.0


def gold_chunk(q: SourceQuestion, chunks: Sequence[Chunk]) -> Chunk:
    """The chunk of the question's document its evidence (or answer, or question) is in."""
    probe = q.evidence or (q.answers[0] if q.answers and q.source != "boolq" else q.question)
    if q.evidence:
        flat = normalize(q.evidence)
        exact = [c for c in chunks if flat and flat in normalize(c.text)]
        if exact:
            return exact[0]
    return max(chunks, key=lambda c: (_overlap(probe, c.text), _overlap(q.question, c.text)))


def _supported(q: SourceQuestion, gold_text: str, document: str) -> bool | None:
    """Does the prompt's gold passage still hold the answer? None: cannot tell (dropped)."""
    kept = normalize(gold_text)
    answer = normalize(q.answers[0])
    if q.source == "boolq":
        return _overlap(q.question, gold_text) >= 0.3
    if answer and f" {answer} " in f" {normalize(document)} ":  # extractive: must still be there
        return f" {answer} " in f" {kept} "
    if q.evidence:
        return _overlap(q.evidence, gold_text) >= 0.6
    cover = _overlap(q.answers[0], gold_text)
    return True if cover >= 0.6 else (None if cover >= 0.2 else False)


def reply(answer: str, number: int) -> str:
    """The fact first, its passage's number after it: what a student reads first is the answer."""
    return f"{answer[0].upper() + answer[1:]} [{number}]"


class ExampleBuilder:
    """Examples for one source's questions, over that source's chunks."""

    def __init__(
        self,
        data: SourceData,
        embedder: Embedder,
        chunker: Chunker,
        passages: int,
        budgets: Sequence[int],
        seed: int = 0,
        start_id: int = 0,
    ) -> None:
        if passages < 2:
            raise ValueError(f"passages must be at least 2 (gold + a distractor), got {passages}")
        if not budgets or min(budgets) < 16:
            raise ValueError(f"budgets must be token budgets of at least 16, got {list(budgets)}")
        self.embedder = embedder
        self.passages = passages
        self.budgets = list(budgets)
        self.rng = random.Random(seed)
        self.chunks = chunk_docs(data.docs, chunker, start_id)
        self.by_doc: dict[str, list[Chunk]] = {}
        for c in self.chunks:
            self.by_doc.setdefault(c.source, []).append(c)
        self.docs = {d.doc_id: d for d in data.docs}
        self.bm25 = BM25Retriever()  # built from these chunks, never synced
        self.bm25.build(self.chunks)

    def distractors(self, question: str, doc_id: str, n: int) -> list[Chunk]:
        """Hard negatives: the best BM25 chunks of other documents, a random n of the top 2n."""
        found = self.bm25.retrieve(question, 6 * n + 10)
        hits = [h.chunk for h in found if h.chunk.source != doc_id]
        pool = hits[: 2 * n]
        if len(pool) < n:  # a question BM25 finds little for: any other chunks
            others = [c for c in self.rng.sample(self.chunks, min(len(self.chunks), 4 * n))
                      if c.source != doc_id and c not in pool]
            pool += others
        return self.rng.sample(pool, n) if len(pool) >= n else pool

    def build(self, q: SourceQuestion, without_gold: bool) -> Example | None:
        chunks = self.by_doc.get(q.doc_id)
        if not chunks:
            return None
        gold = gold_chunk(q, chunks)
        if without_gold:
            shown = self.distractors(q.question, q.doc_id, self.passages)
        else:
            shown = [gold, *self.distractors(q.question, q.doc_id, self.passages - 1)]
            self.rng.shuffle(shown)
        budget = self.rng.choice(self.budgets)
        context = compress(q.question, shown, self.embedder, budget)
        messages = build_messages(q.question, context.passages)
        kept = [i for i, p in enumerate(context.passages, start=1) if p.id == gold.id]
        if without_gold or q.unanswerable or not kept:
            kind = "no gold" if without_gold or not kept else "unanswerable"
            return Example(q.source, q.doc_id, q.question, messages, ABSTAIN_REPLY, False,
                           q.answers, kind, budget, context.relevance)
        supported = _supported(q, context.passages[kept[0] - 1].text, self.docs[q.doc_id].text)
        if supported is None:
            return None
        if not supported:
            return Example(q.source, q.doc_id, q.question, messages, ABSTAIN_REPLY, False,
                           q.answers, "dropped", budget, context.relevance)
        return Example(q.source, q.doc_id, q.question, messages, reply(q.answers[0], kept[0]),
                       True, q.answers, "answer", budget, context.relevance)


Log = Callable[[str], None]


def build_examples(
    builder: ExampleBuilder,
    questions: Sequence[SourceQuestion],
    limit: int | None,
    unanswerable_share: float,
    seed: int,
) -> list[Example]:
    """Up to `limit` examples of these questions; `unanswerable_share` of them lose their gold."""
    if not 0 <= unanswerable_share < 1:
        raise ValueError(f"unanswerable_share must be in [0, 1), got {unanswerable_share}")
    rng = random.Random(seed)
    order = list(questions)
    rng.shuffle(order)
    if limit is not None:
        order = order[:limit]
    out = []
    for q in order:
        example = builder.build(q, without_gold=rng.random() < unanswerable_share)
        if example is not None:
            out.append(example)
    return out


def counts(examples: Iterable[Example]) -> dict[str, dict[str, int]]:
    """Examples per source and kind, for the training record."""
    table: dict[str, Counter[str]] = {}
    for e in examples:
        table.setdefault(e.source, Counter())[e.kind] += 1
    return {s: dict(c) for s, c in sorted(table.items())}


def rebalanced(examples: Sequence[Example], abstain_share: float, seed: int) -> list[Example]:
    """The examples with abstentions cut to `abstain_share` of the whole, per source.

    Compression leaves the answer out of many prompts (the gold passage shortlisted away,
    or its answer sentence), and on top of the examples built without a gold passage
    that made 30-45% of the replies "I don't know" on CoQA and QuAC: a model trained so
    abstains where it should answer. Answers are all kept; abstentions of every kind are
    sampled down in proportion.
    """
    if not 0 <= abstain_share < 1:
        raise ValueError(f"abstain_share must be in [0, 1), got {abstain_share}")
    rng = random.Random(seed)
    out: list[Example] = []
    for source in sorted({e.source for e in examples}):
        mine = [e for e in examples if e.source == source]
        answers = [e for e in mine if e.answerable]
        idk = [e for e in mine if not e.answerable]
        want = round(len(answers) * abstain_share / (1 - abstain_share))
        keep = set(map(id, rng.sample(idk, want))) if want < len(idk) else set(map(id, idk))
        out.extend(e for e in mine if e.answerable or id(e) in keep)
    return out
