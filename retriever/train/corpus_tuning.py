"""`lectern train encoder`: from the ingested corpus to a tuned encoder, in one call.

Questions are written for (a sample of) the store's chunks, kept when BM25 finds their
chunk, and the current encoder is fine-tuned on them. Only the documents are read.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lectern.protocols import Generator
from retriever.bm25 import BM25Retriever
from retriever.embedder import passage_fingerprint
from retriever.questions import QuestionWriter, SyntheticQuestion, generate, load
from retriever.train.encoder import TuningReport, tune
from retriever.train.encoder_config import CorpusTuning

if TYPE_CHECKING:
    from retriever.corpus import Corpus

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def write_questions(
    corpus: Corpus, generator: Generator | None, plan: CorpusTuning, log: Log = _quiet
) -> tuple[list[SyntheticQuestion], dict[str, Any]]:
    """Questions for the plan's chunks (resuming its JSONL) and what it took to write them."""
    corpus.warm_up()
    chunks = corpus.store.all_chunks()
    if not plan.generate:
        saved = load(plan.questions) if plan.questions.exists() else []
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

    questions = generate(
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
    serving = corpus.embedder.fingerprint
    # The serving encoder's fingerprint carries the passage format (embedder.PASSAGE_FORMAT)
    # of the vectors stored, which are then what the base model makes of Chunk.model_text.
    if base_fingerprint is not None and serving in (
        base_fingerprint, passage_fingerprint(base_fingerprint)
    ):
        stored = corpus.store.vectors(sorted(chunks), serving)
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
