"""Synthetic questions for the corpus's own chunks: the training data for encoder tuning.

Self-instruct in the manner of Alpaca and Dromedary, applied to retrieval: the generator
writes a question for a chunk, the question is cleaned, and it is kept only when a
retriever (BM25) ranks its source chunk near the top, so that every kept pair is one the
corpus itself can answer. Only the documents are used, never evaluation questions.

The generator sees one sentence of the chunk, not the whole chunk: with SmolLM2-135M, a
statement-to-question rewrite with one worked example gave specific questions ("Where
was the observatory moved in 1912?") where a whole passage gave generic ones ("What is
the passage about?"), and the prompt is a third as long, which matters because prefill
dominates the cost on CPU.
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lectern.protocols import Generator, Message, Retriever
from lectern.text import words
from lectern.types import Chunk

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_YEAR = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b")
# Questions about the prompt rather than the world: "What's wrong with this sentence?"
_VAGUE = re.compile(
    r"\b(?:this|that|the|these) (?:sentence|statement|passage|text|article|paragraph|"
    r"information|question|answer)s?\b|\bthis one\b|\b(?:is|are|was) (?:this|that|it)\?$|"
    r"\bhere\?$",
    re.IGNORECASE,
)
# A list marker or a "Question:" label before the question, not a number that opens it.
_LEAD = re.compile(
    r"^\s*(?:(?:\d+[.)]|[-*•])\s+|\*\*|(?:question|q)\s*\d*\s*[:.-]\s*)+", re.IGNORECASE
)

SYSTEM = "Turn the statement into a question that it answers."
# One worked example, in chat turns: put into the system message instead, it made the
# 135M model answer rather than ask.
EXAMPLE = (
    "Statement: In 1912 the observatory was moved to Kelso Hill, where its telescope still stands.",
    "Where was the observatory moved in 1912?",
)
MIN_WORDS, MAX_WORDS = 4, 32
SENTENCE_WORDS = (6, 60)  # shorter sentences carry too little; longer ones are cut


@dataclass(frozen=True, slots=True)
class SyntheticQuestion:
    chunk_id: int
    document_id: str
    sentence: str  # what the generator was shown
    raw: str  # the generator's reply
    question: str  # cleaned; empty when rejected before the filter
    status: str  # "kept", or why not: "not a question", "copies the passage", ...
    rank: int | None = None  # the source chunk's rank under the filter, when checked

    @property
    def kept(self) -> bool:
        return self.status == "kept"


def sentences(text: str) -> list[str]:
    """The text's sentences of a useful length (a long one cut to its first words)."""
    lo, hi = SENTENCE_WORDS
    out = []
    for part in _SENTENCE_END.split(" ".join(text.split())):
        tokens = part.split()
        if len(tokens) >= lo:
            out.append(" ".join(tokens[:hi]))
    return out


def pick_sentences(
    chunk: Chunk, n: int, rng: random.Random, exclude: Collection[str] = ()
) -> list[str]:
    """n distinct sentences of the chunk not in `exclude` (fewer if it has fewer), in
    passage order."""
    found = sentences(chunk.text)
    pool = [s for s in found if s not in exclude]
    if not found:  # a list or a table row: its first words stand in
        tokens = chunk.text.split()
        first = " ".join(tokens[: SENTENCE_WORDS[1]])
        return [first] if len(tokens) >= MIN_WORDS and first not in exclude else []
    keep = sorted(rng.sample(range(len(pool)), min(n, len(pool))))
    return [pool[i] for i in keep]


def messages_for(sentence: str) -> list[Message]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": EXAMPLE[0]},
        {"role": "assistant", "content": EXAMPLE[1]},
        {"role": "user", "content": f"Statement: {sentence}"},
    ]


def reply_prefix(sentence: str) -> str:
    """Words put in the generator's mouth: a dated statement gets a question about when.

    Without it the small model asks the vaguest question a sentence allows ("What's the
    story of Nikola Tesla?"); started on "In what year", it names the event.
    """
    return "In what year" if _YEAR.search(sentence) else ""


# Question words a reply may be started on (see opened_prefix).
OPENERS = ("What", "Which", "How", "Who", "When", "Where")


def opened_prefix(sentence: str) -> str:
    """reply_prefix, else a question word picked by the sentence's hash.

    Left to itself the 135M model mostly restates or edits the sentence: on the sample
    corpus 9 of 105 replies were usable questions; started on a question word, 37 were,
    and replies were shorter (20 s instead of 83 s for the batch). The word varies so the
    questions do not all ask "what".
    """
    return reply_prefix(sentence) or OPENERS[zlib.crc32(sentence.encode()) % len(OPENERS)]


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def clean(raw: str, passage: str) -> tuple[str, str]:
    """(question, "kept") or ("", why it was dropped): one question ending in '?'."""
    lines = [ln for ln in raw.strip().splitlines() if ln.strip()]
    text = _LEAD.sub("", lines[0] if lines else "").strip().strip("\"'“”‘’*").strip()
    if "?" not in text:
        return "", "not a question"
    text = " ".join(text[: text.index("?")].split()).rstrip(" ,;:") + "?"
    found = words(text)
    if len(found) < MIN_WORDS:
        return "", "too short"
    if len(found) > MAX_WORDS:
        return "", "too long"
    if _VAGUE.search(text):
        return "", "vague"
    run = _longest_common_run(found, words(passage))
    if run >= 12 or (run >= 6 and run >= 0.8 * len(found)):
        return "", "copies the passage"
    return text[0].upper() + text[1:], "kept"


class QuestionWriter:
    """Writes, cleans and de-duplicates questions for chunks, a batch of prompts at a time.

    A generator with `generate_batch` (TransformersGenerator) gets several prompts per
    call; any other Generator is called once per prompt and gets no reply prefix. With
    no generator, only replies saved earlier can be judged.
    """

    def __init__(
        self,
        generator: Generator | None,
        batch_size: int = 16,
        max_new_tokens: int = 32,
        per_chunk: int = 1,
        seed: int = 0,
        prefix: Callable[[str], str] = reply_prefix,
    ) -> None:
        if batch_size < 1 or max_new_tokens < 8 or per_chunk < 1:
            raise ValueError(
                "batch_size and per_chunk must be >= 1 and max_new_tokens >= 8, got "
                f"{batch_size}, {per_chunk}, {max_new_tokens}"
            )
        self.generator = generator
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.per_chunk = per_chunk
        self.seed = seed
        self.prefix = prefix  # the words each reply starts with, for a sentence
        self.asked = 0  # prompts sent to the generator
        self._seen: set[str] = set()

    def _replies(self, batch: list[tuple[Chunk, str]]) -> list[str]:
        if self.generator is None:
            raise ValueError(f"no generator to write questions for {len(batch)} prompts")
        self.asked += len(batch)
        batched = getattr(self.generator, "generate_batch", None)
        if batched is None:
            return [self.generator.generate(messages_for(s)) for _, s in batch]
        return batched(
            [messages_for(s) for _, s in batch],
            max_new_tokens=self.max_new_tokens,
            reply_prefixes=[self.prefix(s) for _, s in batch],
            stop=("?", "\n"),
        )

    def judge(self, chunk: Chunk, sentence: str, raw: str) -> SyntheticQuestion:
        """The reply cleaned, or rejected with the reason (a repeat of one seen before)."""
        question, status = clean(raw, chunk.text)
        key = " ".join(words(question))
        if status == "kept" and key in self._seen:
            question, status = "", "duplicate"
        self._seen.add(key)
        return SyntheticQuestion(chunk.id, chunk.document_id, sentence, raw, question, status)

    def write(
        self, chunks: Iterable[Chunk], asked: Mapping[int, Collection[str]] | None = None
    ) -> Iterator[SyntheticQuestion]:
        """Questions (kept or rejected, with the reason) in batches as they are generated.

        asked[chunk id]: sentences already prompted for; a chunk gets per_chunk minus
        those, on other sentences.
        """
        asked = asked or {}
        rng = random.Random(self.seed)
        prompts = [
            (c, s)
            for c in chunks
            for s in pick_sentences(
                c, self.per_chunk - len(asked.get(c.id, ())), rng, asked.get(c.id, ())
            )
        ]
        rng.shuffle(prompts)
        # Similar lengths in one batch (left padding is prefill work that buys nothing),
        # sorted within windows only: a run stopped early has still sampled the corpus
        # evenly, not just its shortest sentences.
        window = 8 * self.batch_size
        for w in range(0, len(prompts), window):
            prompts[w : w + window] = sorted(prompts[w : w + window], key=lambda p: len(p[1]))
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            for (chunk, sentence), raw in zip(batch, self._replies(batch), strict=True):
                yield self.judge(chunk, sentence, raw)


def rank_of(question: str, chunk_id: int, retriever: Retriever, top_k: int) -> int | None:
    for rank, hit in enumerate(retriever.retrieve(question, top_k), start=1):
        if hit.chunk.id == chunk_id:
            return rank
    return None


def check_retrievable(
    questions: Iterable[SyntheticQuestion], retriever: Retriever, top_k: int = 20
) -> Iterator[SyntheticQuestion]:
    """Keep a clean question only when the retriever ranks its source chunk in the top k.

    A question whose own chunk cannot be found for it is off-topic or too vague to teach
    the encoder anything but noise.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be positive, got {top_k}")
    for q in questions:
        if not q.kept:
            yield q
            continue
        rank = rank_of(q.question, q.chunk_id, retriever, top_k)
        status = "kept" if rank is not None else "not retrievable"
        yield SyntheticQuestion(
            q.chunk_id, q.document_id, q.sentence, q.raw, q.question, status, rank
        )


def save(questions: Iterable[SyntheticQuestion], path: Path, append: bool = False) -> int:
    """Write questions as JSON lines; a whole-file write replaces the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path if append else path.with_name(f".{path.name}.part")
    n = 0
    with target.open("a" if append else "w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps(asdict(q), ensure_ascii=False) + "\n")
            n += 1
    if not append:
        target.replace(path)
    return n


def load(path: Path) -> list[SyntheticQuestion]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(SyntheticQuestion(**json.loads(line)))
    return out


def generate(
    writer: QuestionWriter,
    chunks: Sequence[Chunk],
    retriever: Retriever,
    top_k: int,
    path: Path,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[SyntheticQuestion]:
    """Questions for the chunks, resuming from (and appending to) the JSONL at `path`.

    Generation is the slow step (minutes per hundred chunks on CPU), so every batch is
    appended as it is done, and a run that stopped picks up at the chunks it had not
    reached; a run with a larger per_chunk asks only for the questions each chunk lacks.
    `on_batch(questions done, questions wanted)` reports progress.
    """
    by_id = {c.id: c for c in chunks}
    stored = load(path) if path.exists() else []
    cached = [q for q in stored if q.chunk_id in by_id]
    others = [q for q in stored if q.chunk_id not in by_id]  # another sample's: kept as is
    # Replies are the expensive part and are kept; cleaning and filtering are redone, so
    # a changed rule or --filter-top-k applies to them without asking the generator again.
    out = list(
        check_retrievable(
            (writer.judge(by_id[q.chunk_id], q.sentence, q.raw) for q in cached), retriever, top_k
        )
    )
    asked: dict[int, set[str]] = defaultdict(set)
    for q in out:
        asked[q.chunk_id].add(q.sentence)
    todo = [c for c in chunks if len(asked[c.id]) < writer.per_chunk]
    wanted = len(out) + sum(writer.per_chunk - len(asked[c.id]) for c in todo)
    batch: list[SyntheticQuestion] = []
    for q in check_retrievable(writer.write(todo, asked), retriever, top_k):
        batch.append(q)
        if len(batch) >= writer.batch_size:
            save(batch, path, append=True)
            out += batch
            batch = []
            if on_batch is not None:
                on_batch(len(out), wanted)
    out += batch
    save([*others, *out], path)  # every reply with its verdict under today's rules
    return out
