"""The abstention, allowed only when the model is confident of it.

A tuned model opens "I don't know." whenever that reply is its single most likely start,
even when it puts most of its probability on the different answers it could give. The
gate lets the abstention through at the first reply token only when its probability is
at least a threshold (`generation.abstain_threshold`), measured on held-out questions;
otherwise the model's next best start is taken and it answers. Later tokens are never
touched, so an answer already begun is decoded as the model would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lectern.optional import require


def gate_abstention(scores: Any, token_id: int | None, threshold: float) -> Any:
    """`scores` (1, vocab), a torch tensor or a numpy array, with the abstention's first
    token masked when it is less likely than `threshold`. 0 (or no token) leaves the
    scores as they are: plain greedy."""
    if threshold <= 0 or token_id is None:
        return scores
    numpy = isinstance(scores, np.ndarray)
    if numpy:
        row = scores[0].astype(np.float64)
        e = np.exp(row - row.max())
        p = e[token_id] / e.sum()
    else:
        torch = require("torch", "torch")
        p = torch.softmax(scores[0], dim=-1)[token_id]
    if float(p) >= threshold:
        return scores
    out = scores.copy() if numpy else scores.clone()
    out[0, token_id] = float("-inf")
    return out
