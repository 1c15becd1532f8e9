"""How a generator picks its tokens: the settings every backend reads the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Sampling:
    max_new_tokens: int = 64
    do_sample: bool = False  # greedy by default: answers must be reproducible
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    # abstention_gate: 0 is plain greedy; None: the adapter's recorded threshold.
    abstain_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.abstain_threshold is not None and not 0 <= self.abstain_threshold <= 1:
            raise ValueError(f"abstain_threshold must be in [0, 1], got {self.abstain_threshold}")

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "do_sample": self.do_sample,
        }
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p)
        return kw
