"""What `lectern train encoder` is told: the question writing and the tuning settings,
checked when they are made.

Nothing heavy is imported here, so the command line can read the defaults without
loading torch or the retrievers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TuningConfig:
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 2e-5
    warmup_share: float = 0.1
    weight_decay: float = 0.01
    scale: float = 20.0  # MNRL's inverse temperature (cosine similarities x 20)
    negatives: int = 1  # BM25 hard negatives per question
    negative_depth: int = 20  # how deep in the BM25 list to look for them
    holdout_share: float = 0.1  # of the source chunks: their questions are only measured
    max_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be positive, got {value}"
            for name, value in (
                ("epochs", self.epochs),
                ("learning_rate", self.learning_rate),
                ("scale", self.scale),
                ("negative_depth", self.negative_depth),
            )
            if value <= 0
        ]
        if self.batch_size < 2:
            problems.append(
                f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}"
            )
        if self.negatives < 0:
            problems.append(f"negatives must be >= 0, got {self.negatives}")
        if not 0 <= self.holdout_share < 1 or not 0 <= self.warmup_share < 1:
            problems.append(
                f"holdout_share and warmup_share must be in [0, 1), got "
                f"{self.holdout_share}, {self.warmup_share}"
            )
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps must be positive, got {self.max_steps}")
        if problems:
            raise ValueError("; ".join(problems))


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
