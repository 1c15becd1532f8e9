"""Tune the bi-encoder on synthetic questions: hard negatives from BM25, in-batch negatives.

DPR's recipe with sentence-transformers' MultipleNegativesRankingLoss: each question is
scored against its own chunk, one or more BM25 hard negatives, and every other passage in
the batch, and the loss is the cross-entropy of picking its own chunk. Questions and
passages share one encoder, so the tuned model is a drop-in replacement for the current
one (same dimension, same query/passage handling).

The training loop is plain PyTorch: sentence-transformers' trainer needs the `datasets`
package, which Lectern does not otherwise install, and a loop of a few hundred steps
needs nothing it offers.

The settings are in encoder_config, the training data in encoder_data, and what is
written beside the weights is retriever.records.EncoderTuningRecord.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lectern.files import replace_folder, staging_folder
from lectern.optional import require
from lectern.protocols import Retriever
from lectern.types import Chunk
from retriever.metrics import MRR, mean_scores, score_rank
from retriever.questions import SyntheticQuestion
from retriever.questions import load as load_questions
from retriever.records import EncoderTuningRecord
from retriever.train.encoder_config import TuningConfig
from retriever.train.encoder_data import Example, batches, mine_examples, split_holdout

log = logging.getLogger(__name__)
CONFIG_FILE = EncoderTuningRecord.FILE


@dataclass(slots=True)
class TuningReport:
    folder: Path
    config: TuningConfig
    counts: dict[str, int]
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    trained_chunks: list[int] = field(default_factory=list)
    # Another encoder against the tuned one, on held-out questions neither trained on.
    compared: dict[str, Any] = field(default_factory=dict)

    def improves(self) -> bool:
        """Whether the tuned encoder beats its base and, if one was measured, the compared one."""
        if self.after.get(MRR, 0) <= self.before.get(MRR, 0):
            return False
        if not self.compared:
            return True
        # No fair questions to compare on counts as not beating it: activation is not undone.
        return self.compared["tuned"].get(MRR, 0) > self.compared["other"].get(MRR, 0)


def retrieval_metrics(
    encode: Callable[[list[str]], np.ndarray],
    questions: Sequence[SyntheticQuestion],
    chunks: Mapping[int, Chunk],
    passages: np.ndarray | None = None,
) -> dict[str, float]:
    """Dense recall@1/5/10 and MRR@10 of the questions' own chunks among all chunks.

    `passages`: the chunks' vectors in id order, when they are at hand already.
    """
    if not questions:
        return {}
    ids = np.array(sorted(chunks), dtype=np.int64)
    if passages is None:
        passages = encode([chunks[int(i)].model_text for i in ids])
    queries = encode([q.question for q in questions])
    scores = queries @ passages.T
    own = scores[np.arange(len(questions)), np.searchsorted(ids, [q.chunk_id for q in questions])]
    # Ties go to the question's own chunk.
    ranks = 1 + (scores > own[:, None]).sum(axis=1)
    mean = mean_scores([score_rank(int(r), (1, 5, 10), 10) for r in ranks])
    return {"questions": len(questions), **{k: round(v, 4) for k, v in mean.items()}}


def trained_chunks(folder: Path) -> set[int] | None:
    """Ids of the chunks whose questions trained the tuned encoder in `folder`.

    Read from its record; records older than that list are rebuilt from the questions
    file, hold-out share and seed. None when it has no record or the file is gone, as for
    an encoder tuned elsewhere.
    """
    record = EncoderTuningRecord.load(folder)
    if record is None:
        return None
    if record.trained_chunks is not None:
        return set(record.trained_chunks)
    questions = Path(record.questions_file or "")
    if not questions.is_file():
        return None
    default = TuningConfig()
    share, seed = record.config.holdout_share, record.config.seed
    kept = [q for q in load_questions(questions) if q.kept]
    train, _ = split_holdout(
        kept,
        default.holdout_share if share is None else share,
        default.seed if seed is None else seed,
    )
    return {q.chunk_id for q in train}


def compare(
    other_folder: Path,
    encode: Callable[[list[str]], np.ndarray],
    held_out: Sequence[SyntheticQuestion],
    chunks: Mapping[int, Chunk],
    device: str = "cpu",
    passages: np.ndarray | None = None,
) -> dict[str, Any]:
    """The tuned encoder (`encode`; `passages`, its vectors of the chunks in id order, if at
    hand) against another one, on the held-out questions whose chunks the other did not
    train on: a fair test that a new tuning beats an older one."""
    st = require("sentence_transformers", "retrieval")

    seen = trained_chunks(other_folder)
    fair = [q for q in held_out if seen is None or q.chunk_id not in seen]
    other = st.SentenceTransformer(str(other_folder), device=device, local_files_only=True)
    return {
        "encoder": str(other_folder),
        "its_training_chunks_known": seen is not None,
        "questions": len(fair),
        "other": retrieval_metrics(_encoder(other), fair, chunks),
        "tuned": retrieval_metrics(encode, fair, chunks, passages),
    }


def _encoder(model: Any, batch_size: int = 64) -> Callable[[list[str]], np.ndarray]:
    def encode(texts: list[str]) -> np.ndarray:
        vectors = model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    return encode


def _features(model: Any, texts: list[str]) -> dict[str, Any]:
    # sentence-transformers 6 renamed `tokenize` to `preprocess`.
    prepare = getattr(model, "preprocess", None) or model.tokenize
    return {k: v.to(model.device) if hasattr(v, "to") else v for k, v in prepare(texts).items()}


def _train(
    model: Any,
    examples: Sequence[Example],
    config: TuningConfig,
    on_step: Callable[[int, int, float], None] | None,
) -> list[float]:
    torch = require("torch", "torch")
    try:
        losses = require("sentence_transformers.sentence_transformer.losses", "retrieval")
    except ImportError:  # sentence-transformers < 6 keeps them at the top level
        losses = require("sentence_transformers.losses", "retrieval")

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    plan = [b for _ in range(config.epochs) for b in batches(examples, config.batch_size, rng)]
    plan = plan[: config.max_steps] if config.max_steps is not None else plan
    loss_fn = losses.MultipleNegativesRankingLoss(model, scale=config.scale)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    warmup = max(1, int(len(plan) * config.warmup_share))

    def linear(step: int) -> float:  # warm up, then decay to zero
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (len(plan) - step) / max(1, len(plan) - warmup))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, linear)
    losses: list[float] = []
    model.train()
    try:
        for step, batch in enumerate(plan, start=1):
            columns = [[ex.question for ex in batch], [ex.positive for ex in batch]]
            columns += [[ex.negatives[i] for ex in batch] for i in range(config.negatives)]
            features = [_features(model, col) for col in columns]
            loss = loss_fn(features, None)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(round(float(loss.detach()), 4))
            if on_step is not None:
                on_step(step, len(plan), losses[-1])
    finally:
        model.eval()
    return losses


def tune(
    base_folder: Path,
    questions: Sequence[SyntheticQuestion],
    chunks: Mapping[int, Chunk],
    retriever: Retriever,
    out: Path,
    config: TuningConfig,
    meta: Mapping[str, Any] | None = None,
    device: str = "cpu",
    on_step: Callable[[int, int, float], None] | None = None,
    base_passages: np.ndarray | None = None,
    compare_with: Path | None = None,
) -> TuningReport:
    """Fine-tune the encoder in `base_folder` on the kept questions; save it to `out`.

    `base_passages`, the base encoder's vectors of the chunks in id order (the store has
    them), saves embedding the corpus once more for the before-tuning measurement.
    `compare_with`: another encoder folder to measure against the tuned one (see compare).

    `out` is a new version and must not exist yet: a tuned model is never overwritten,
    because an index built from it is named by its folder. The folder appears complete
    or not at all (written beside it, then renamed).
    """
    st = require("sentence_transformers", "retrieval")

    if out.exists():
        raise FileExistsError(f"{out} exists; tuned encoders are versioned, pick a new folder")
    kept = [q for q in questions if q.kept]
    unknown = {q.chunk_id for q in kept} - set(chunks)
    if unknown:
        raise ValueError(
            f"{len(unknown)} questions name chunks this corpus does not have (e.g. chunk "
            f"{min(unknown)}): the questions file was made from another store"
        )
    train_q, held_q = split_holdout(kept, config.holdout_share, config.seed)
    t0 = time.perf_counter()
    examples = mine_examples(
        train_q, chunks, retriever, config.negatives, config.negative_depth, config.seed
    )
    report = TuningReport(
        out,
        config,
        {
            "chunks_in_corpus": len(chunks),
            "questions_generated": len(questions),
            "questions_kept": len(kept),
            "train_questions": len(train_q),
            "train_examples": len(examples),
            "held_out_questions": len(held_q),
            "held_out_chunks": len({q.chunk_id for q in held_q}),
        },
    )
    if len(examples) < 2:
        raise ValueError(f"{len(examples)} training examples; at least 2 are needed")
    report.trained_chunks = sorted({ex.chunk_id for ex in examples})
    report.seconds["mine_negatives"] = round(time.perf_counter() - t0, 2)
    model = st.SentenceTransformer(str(base_folder), device=device, local_files_only=True)
    encode = _encoder(model)
    t0 = time.perf_counter()
    report.before = retrieval_metrics(encode, held_q, chunks, base_passages)
    report.seconds["measure_before"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    report.losses = _train(model, examples, config, on_step)
    report.steps = len(report.losses)
    report.seconds["train"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    tuned_passages = encode([chunks[i].model_text for i in sorted(chunks)])
    report.after = retrieval_metrics(encode, held_q, chunks, tuned_passages)
    report.seconds["measure_after"] = round(time.perf_counter() - t0, 2)
    if compare_with is not None:
        t0 = time.perf_counter()
        report.compared = compare(compare_with, encode, held_q, chunks, device, tuned_passages)
        report.seconds["compare"] = round(time.perf_counter() - t0, 2)
    _save(model, out, report, {"base_encoder": str(base_folder), **(meta or {})})
    return report


def describe(report: TuningReport, meta: Mapping[str, Any]) -> EncoderTuningRecord:
    """The tuned encoder's record: `meta` (where its base and questions came from) and
    the report."""
    return EncoderTuningRecord.model_validate({
        **meta,
        "config": asdict(report.config),
        "counts": report.counts,
        "held_out_before": report.before,
        "held_out_after": report.after,
        "compared": report.compared,
        "steps": report.steps,
        "seconds": report.seconds,
        "loss_first_last": [report.losses[0], report.losses[-1]] if report.losses else [],
        "losses": report.losses,
        # The questions file is re-judged by later runs; this says what trained the model.
        "trained_chunks": report.trained_chunks,
    })


def _save(model: Any, out: Path, report: TuningReport, meta: Mapping[str, Any]) -> None:
    with staging_folder(out) as staging:
        model.save(str(staging))
        describe(report, meta).save(staging)
        replace_folder(staging, out)
    log.info("tuned encoder saved to %s", out)
