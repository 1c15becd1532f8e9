"""`lectern train encoder`: from the ingested corpus to a tuned encoder, in one call.

Questions are written for (a sample of) the store's chunks, kept when BM25 finds their
chunk, and the current encoder is fine-tuned on them. Only the documents are read.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lectern.protocols import Generator
from retriever.train import questions as synthetic_questions
from retriever.bm25 import BM25Retriever
from retriever.train.questions import QuestionWriter
from retriever.train.encoder import TuningConfig, TuningReport, tune

if TYPE_CHECKING:
    from retriever.corpus import Corpus

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class CorpusTuning:
    out: Path  # the tuned encoder's new folder
    questions: Path  # JSONL of every generated question; resumed when it exists
    limit: int | None = None  # chunks to write questions for (a seeded sample)
    per_chunk: int = 1
    generation_batch: int = 16
    max_new_tokens: int = 32
    filter_top_k: int = 20
    seed: int = 0
    generate: bool = True  # False: only the questions already in the file
    config: TuningConfig = field(default_factory=TuningConfig)
    compare_with: Path | None = None  # an encoder folder the tuned one must beat

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be positive, got {self.limit}")
        if self.filter_top_k < 1:
            raise ValueError(f"filter_top_k must be positive, got {self.filter_top_k}")
        if self.compare_with is not None and not (self.compare_with / "config.json").is_file():
            raise ValueError(f"compare_with {self.compare_with} is not a model folder")


def _quiet(_: str) -> None:
    pass


def write_questions(
    corpus: Corpus, generator: Generator | None, plan: CorpusTuning, log: Log = _quiet
) -> tuple[list[synthetic_questions.SyntheticQuestion], dict[str, Any]]:
    """Questions for the plan's chunks (resuming its JSONL) and what it took to write them."""
    corpus.warm_up()
    chunks = corpus.store.all_chunks()
    if not plan.generate:
        saved = synthetic_questions.load(plan.questions) if plan.questions.exists() else []
        have = {q.chunk_id for q in saved}
        chunks = [c for c in chunks if c.id in have]
    if plan.limit is not None and plan.limit < len(chunks):
        chunks = sorted(random.Random(plan.seed).sample(chunks, plan.limit), key=lambda c: c.id)
    bm25 = BM25Retriever(corpus.store)
    bm25.sync()
    writer = QuestionWriter(
        generator, plan.generation_batch, plan.max_new_tokens, plan.per_chunk, plan.seed
    )
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        secs = time.perf_counter() - start
        log(f"  questions {done}/{total} ({secs:.0f} s)")

    questions = synthetic_questions.generate(
        writer, chunks, bm25, plan.filter_top_k, plan.questions, progress
    )
    seconds = time.perf_counter() - start
    written = writer.asked
    statuses = Counter(q.status for q in questions)
    stats = {
        "chunks_sampled": len(chunks),
        "questions": len(questions),
        "written_this_run": written,
        "statuses": dict(statuses),
        "kept_share": round(statuses["kept"] / len(questions), 4) if questions else 0.0,
        "generation_seconds_this_run": round(seconds, 1),
        "questions_per_second_this_run": round(written / seconds, 3) if written else None,
    }
    return questions, stats


def tune_from_corpus(
    corpus: Corpus,
    generator: Generator | None,
    base_folder: Path,
    plan: CorpusTuning,
    meta: dict[str, Any] | None = None,
    log: Log = _quiet,
    device: str = "cpu",
    base_fingerprint: str | None = None,
) -> TuningReport:
    """Write and filter questions, then tune the encoder in `base_folder` into plan.out.

    When `base_fingerprint` is the serving encoder's, the store's vectors stand in for
    embedding the corpus with the base model before tuning.
    """
    questions, stats = write_questions(corpus, generator, plan, log)
    log(
        f"{stats['statuses'].get('kept', 0)} of {stats['questions']} questions kept "
        f"({stats['statuses']})"
    )
    chunks = {c.id: c for c in corpus.store.all_chunks()}
    stored = None
    if base_fingerprint is not None and base_fingerprint == corpus.embedder.fingerprint:
        stored = corpus.store.vectors(sorted(chunks), base_fingerprint)
    bm25 = BM25Retriever(corpus.store)
    bm25.sync()

    def step(n: int, total: int, loss: float) -> None:
        if n == 1 or n == total or n % 10 == 0:
            log(f"  step {n}/{total} loss {loss:.4f}")

    return tune(
        base_folder,
        questions,
        chunks,
        bm25,
        plan.out,
        plan.config,
        meta={
            **(meta or {}),
            "questions_file": str(plan.questions),
            "generation": {
                **stats,
                "per_chunk": plan.per_chunk,
                "batch_size": plan.generation_batch,
                "max_new_tokens": plan.max_new_tokens,
                "filter": f"BM25 ranks the source chunk in the top {plan.filter_top_k}",
                "seed": plan.seed,
            },
        },
        device=device,
        on_step=step,
        base_passages=stored,
        compare_with=plan.compare_with,
    )
