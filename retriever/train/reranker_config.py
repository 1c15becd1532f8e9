"""What `lectern train reranker` is told: its settings, checked when they are made.

Nothing heavy is imported here, so the command line can read the defaults without
loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from lectern.errors import ConfigError

# The shared training sets, by name, and their file under the data folder.
FILES = {
    "coqa": "coqa/coqa-dev.json",
    "boolq": "boolq/combined.jsonl",
    "narrativeqa": "narrativeqa/test.jsonl",
    "quac": "quac/test.jsonl",
}
SOURCES = tuple(FILES)

Loss = Literal["listwise", "bce"]
# What the `questions` quota is shared over. "source": the four files, what a small one
# cannot use going to the others (BoolQ then gives most questions). "domain": each kind of
# text (CoQA's seven story sources apart, see reranker_data.domain_of), none above an even
# share; it trains on fewer questions, and on held-out documents it lost to "source" on
# the worst domain and on 8 of the 10 (bench/results/reranker-domains.md).
Balance = Literal["source", "domain"]
# How the backbone's token states become the one vector the head scores: sentence-
# transformers' pooling modes, "+" concatenating several ("mean+max").
Pooling = Literal["mean", "max", "mean+max", "cls"]
POOLINGS: tuple[str, ...] = get_args(Pooling)
# A domain with fewer held-out questions than this is reported but not judged on: one
# question moves its MRR@10 by several hundredths.
MIN_JUDGED = 20


@dataclass(frozen=True, slots=True)
class TrainConfig:
    data_dir: Path
    output_dir: Path
    backbone: Path  # a sentence-transformers or transformers model folder
    backbone_ref: str = ""  # how the settings named it, for the record
    sources: tuple[str, ...] = SOURCES
    questions: int = 20000  # training questions, shared out evenly (see Balance)
    balance: Balance = "source"
    hard_negatives: int = 4
    random_negatives: int = 1
    loss: Loss = "listwise"
    layers: int = 3
    max_length: int = 64
    pooling: Pooling = "mean"
    batch_questions: int = 8
    epochs: int = 1
    learning_rate: float = 3e-4
    # The head starts from random weights and must learn before the backbone gets any
    # useful gradient; at the backbone's rate that takes most of a short run.
    head_lr: float = 2e-3
    warmup_share: float = 0.05
    weight_decay: float = 0.01
    holdout_share: float = 0.1  # of the documents: their questions are only measured
    val_questions: int = 100  # per domain, whatever `balance` is
    val_depth: int = 20  # BM25 candidates reranked per held-out question
    mine_depth: int = 30
    chunk_tokens: int = 200
    chunk_overlap: int = 32
    seed: int = 13
    max_minutes: float | None = None  # stop early (and say so) rather than overrun
    log_every: int = 20
    # The 12M-parameter word-embedding table gets a dense Adam update every step, and a
    # run of a few thousand steps cannot move it usefully.
    freeze_embeddings: bool = True
    require_improvement: bool = True  # install only if it beats BM25 on held-out MRR@10
    # Another reranker measured on the same held-out questions; with require_improvement
    # the new one must beat it too, so a retraining never replaces a better model.
    compare_with: Path | None = None
    # With a corpus (see reranker_corpus): at most this many of its held-out questions are
    # measured, and the prior weight and the install decision rest on them.
    corpus_val_questions: int = 500

    def __post_init__(self) -> None:
        checks = {
            "questions": self.questions >= 1,
            "hard_negatives": self.hard_negatives >= 0,
            "random_negatives": self.random_negatives >= 0,
            "layers": self.layers >= 1,
            "max_length": 32 <= self.max_length <= 512,
            "batch_questions": self.batch_questions >= 1,
            "epochs": self.epochs >= 1,
            "learning_rate": 0 < self.learning_rate < 1,
            "head_lr": 0 < self.head_lr < 1,
            "warmup_share": 0 <= self.warmup_share < 1,
            "holdout_share": 0 < self.holdout_share < 1,
            "val_questions": self.val_questions >= 1,
            "corpus_val_questions": self.corpus_val_questions >= 1,
            "val_depth": self.val_depth >= 2,
            "mine_depth": self.mine_depth >= self.hard_negatives,
        }
        bad = [f"{k}={getattr(self, k)!r}" for k, ok in checks.items() if not ok]
        if self.hard_negatives + self.random_negatives < 1:
            bad.append("hard_negatives + random_negatives must be >= 1")
        if self.compare_with is not None and self.require_improvement and (
            self.val_questions < MIN_JUDGED
        ):
            bad.append(f"val_questions={self.val_questions} (at least {MIN_JUDGED} to judge "
                       "a domain against the compared reranker)")
        if self.balance not in ("domain", "source"):
            bad.append(f"balance={self.balance!r} (source or domain)")
        if self.pooling not in POOLINGS:
            bad.append(f"pooling={self.pooling!r} (one of {', '.join(POOLINGS)})")
        if self.loss not in ("listwise", "bce"):
            bad.append(f"loss={self.loss!r} (listwise or bce)")
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not self.sources:
            bad.append(f"sources={list(self.sources)!r} (known: {', '.join(SOURCES)})")
        if bad:
            raise ConfigError("invalid reranker training config: " + "; ".join(bad))
