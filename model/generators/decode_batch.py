"""Sequences decoded together: one KV cache whose rows join and leave between steps.

Decoding a small model on CPU is bound by reading the weights, not by arithmetic: a step
for eight sequences costs about twice a step for one (13 ms vs 25 ms for SmolLM2-135M,
int8, one thread), so requests that decode together finish far sooner than in turn.
A request is prefilled alone (its cache starts from a copy of the shared system-prompt
cache when there is one) and then joins the batch: the shorter of the two caches is
left-padded to the other's length and the padding masked out, so every row attends to
exactly its own tokens at its own positions, as it would alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lectern.optional import require


@dataclass(slots=True)
class Prefilled:
    """One prompt's cache and the logits for its first new token."""

    cache: Any  # transformers DynamicCache, batch of one
    length: int
    logits: Any  # (vocab,)


def batchable(cache: Any) -> bool:
    """Whether rows of this cache can be padded and stacked (plain full-attention layers).

    A sliding-window or quantized layer keeps a different view of the past than its
    keys and values, so such models decode one request at a time.
    """
    DynamicLayer = require("transformers.cache_utils", "model").DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _pad_left(t: Any, width: int) -> Any:
    """`t` with `width` zero columns in front of its sequence axis (-2 for K/V, -1 masks)."""
    torch = require("torch", "torch")

    if width == 0:
        return t
    axis = -2 if t.dim() == 4 else -1
    shape = list(t.shape)
    shape[axis] = width
    return torch.cat([t.new_zeros(shape), t], dim=axis)


class DecodeBatch:
    """The tensors of the rows being decoded; used by one thread (the scheduler's)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._cache: Any = None
        self._mask: Any = None  # (rows, length): 1 for a real token, 0 for padding
        self._positions: Any = None  # (rows,): each row's next position
        self._last: Any = None  # (rows, 1): each row's newest token

    def __len__(self) -> int:
        return 0 if self._last is None else int(self._last.shape[0])

    def new_cache(self) -> Any:
        return require("transformers", "model").DynamicCache(config=self.model.config)

    def prefill(self, ids: list[int], cache: Any = None, cached: int = 0) -> Prefilled:
        """Run the prompt `ids` through the model; `cache` already holds its first `cached`."""
        torch = require("torch", "torch")

        cache = self.new_cache() if cache is None else cache
        tail = torch.tensor([ids[cached:]], device=self.model.device)
        out = self.model(input_ids=tail, cache=cache, use_cache=True, logits_to_keep=1)
        return Prefilled(cache, len(ids), out.logits[0, -1])

    def join(self, row: Prefilled, token: int) -> None:
        """Add a prefilled row whose first new token is `token` (it is fed at the next step)."""
        torch = require("torch", "torch")

        device = self.model.device
        mask = torch.ones((1, row.length), dtype=torch.long, device=device)
        position = torch.tensor([row.length], device=device)
        last = torch.tensor([[token]], device=device)
        if self._last is None:
            self._cache, self._mask, self._positions, self._last = row.cache, mask, position, last
            return
        width = max(self._mask.shape[1], row.length)
        merged = self.new_cache()
        for i, (mine, theirs) in enumerate(zip(self._cache.layers, row.cache.layers, strict=True)):
            keys = torch.cat([_pad_left(mine.keys, width - self._mask.shape[1]),
                              _pad_left(theirs.keys, width - row.length)])
            values = torch.cat([_pad_left(mine.values, width - self._mask.shape[1]),
                                _pad_left(theirs.values, width - row.length)])
            merged.update(keys, values, i)
        self._mask = torch.cat([_pad_left(self._mask, width - self._mask.shape[1]),
                                _pad_left(mask, width - row.length)])
        self._cache = merged
        self._positions = torch.cat([self._positions, position])
        self._last = torch.cat([self._last, last])

    def step(self) -> Any:
        """Feed every row its newest token; the logits for the next one, (rows, vocab)."""
        torch = require("torch", "torch")

        self._mask = torch.cat([self._mask, self._mask.new_ones((len(self), 1))], dim=1)
        out = self.model(
            input_ids=self._last,
            attention_mask=self._mask,
            position_ids=self._positions[:, None],
            cache=self._cache,
            use_cache=True,
        )
        self._positions = self._positions + 1
        return out.logits[:, -1]

    def feed(self, tokens: list[int]) -> None:
        """The tokens chosen from the last step's logits, one per row, in row order."""
        torch = require("torch", "torch")

        self._last = torch.tensor(tokens, device=self.model.device)[:, None]

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (in this order); padding no row needs any more is cut off."""
        torch = require("torch", "torch")

        if not rows:
            self._cache = self._mask = self._positions = self._last = None
            return
        if rows == list(range(len(self))):
            return
        index = torch.tensor(rows, device=self.model.device)
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]
        self._positions = self._positions[index]
        self._last = self._last[index]
        unused = int((self._mask.cumsum(dim=1) == 0).all(dim=0).sum())
        if unused:  # the longest row left: no column before its start is attended
            trimmed = self.new_cache()
            for i, layer in enumerate(self._cache.layers):
                trimmed.update(layer.keys[:, :, unused:], layer.values[:, :, unused:], i)
            self._cache, self._mask = trimmed, self._mask[:, unused:]
