"""A llama.cpp context that holds several sequences in one KV cache, over a loaded model.

llama-cpp-python's `Llama` builds a context of one sequence. Replies drawn from one
prompt decode faster as sequences of one batch, each a copy of the prompt's cache
cells (a copy shares the cells, it does not duplicate them): 1.32×, 1.80× and 2.41× for
2, 4 and 8 replies against decoding them one after another
(bench/results/llamacpp_samples.md). llama.cpp's logits for a token depend slightly on
the batch it was evaluated in (by up to ~5% of their scale here between one row and
several), so replies decoded together are not bit for bit the ones decoded alone. One
thread uses a context at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lectern.optional import require


class LlamaContextError(RuntimeError):
    """llama.cpp refused a batch (no room left in the cache, or an internal failure)."""


class SequenceContext:
    """`sequences` sequences over `n_ctx` cache cells shared by all of them (unified)."""

    def __init__(
        self,
        model: Any,
        n_ctx: int,
        sequences: int,
        threads: int,
        threads_batch: int,
        flash_attention: bool,
        n_batch: int = 512,
    ) -> None:
        """model: a loaded llama_model (`Llama.model`); it must outlive the context."""
        if sequences < 1:
            raise ValueError(f"sequences must be at least 1, got {sequences}")
        if n_ctx < 1 or n_batch < 1:
            raise ValueError(f"n_ctx and n_batch must be positive, got {n_ctx}, {n_batch}")
        self._lib = require("llama_cpp", "llamacpp")
        lib = self._lib
        params = lib.llama_context_default_params()
        params.n_ctx, params.n_seq_max, params.kv_unified = n_ctx, sequences, True
        params.n_batch = params.n_ubatch = min(n_batch, n_ctx)
        params.n_threads, params.n_threads_batch = threads, threads_batch
        params.flash_attn_type = (lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attention
                                  else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        ctx = lib.llama_init_from_model(model, params)
        if not ctx:
            raise LlamaContextError(
                f"llama.cpp could not build a context of {n_ctx} cells, {sequences} sequences")
        self._ctx = ctx
        self._memory = lib.llama_get_memory(ctx)
        self.n_ctx = lib.llama_n_ctx(ctx)
        self.n_batch = params.n_batch
        self.sequences = sequences
        self._vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))
        self._batch = lib.llama_batch_init(self.n_batch, 0, 1)

    def read(self, tokens: Sequence[int], start: int, seq: int = 0) -> np.ndarray:
        """Evaluate `tokens` as positions start, start + 1, ... of sequence `seq`, in
        batches of n_batch; the logits after the last one (a copy)."""
        if not tokens:
            raise ValueError("nothing to read")
        for at in range(0, len(tokens), self.n_batch):
            part = tokens[at : at + self.n_batch]
            last = at + len(part) == len(tokens)
            self._decode([(t, start + at + k, seq, last and k == len(part) - 1)
                          for k, t in enumerate(part)])
        return self._logits(-1)

    def step(self, tokens: Sequence[tuple[int, int, int]]) -> list[np.ndarray]:
        """One batch of (token, position, sequence), one token per sequence; each one's
        logits (copies), in order."""
        if not 0 < len(tokens) <= self.n_batch:
            raise ValueError(f"a step takes 1 to {self.n_batch} tokens, got {len(tokens)}")
        self._decode([(t, pos, seq, True) for t, pos, seq in tokens])
        return [self._logits(k) for k in range(len(tokens))]

    def keep(self, seq: int, end: int) -> None:
        """Sequence `seq` keeps its cells before position `end` (0: none)."""
        self._lib.llama_memory_seq_rm(self._memory, seq, end, -1)

    def copy(self, src: int, dst: int, end: int) -> None:
        """Sequence `dst` also owns the cells of `src` before position `end`."""
        self._lib.llama_memory_seq_cp(self._memory, src, dst, 0, end)

    def clear(self) -> None:
        self._lib.llama_memory_clear(self._memory, True)

    def close(self) -> None:
        """Free the batch and the context. Idempotent."""
        if self._ctx is not None:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._ctx = None

    def _decode(self, tokens: Sequence[tuple[int, int, int, bool]]) -> None:
        batch = self._batch
        for k, (token, pos, seq, logits) in enumerate(tokens):
            batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, pos, 1
            batch.seq_id[k][0], batch.logits[k] = seq, logits
        batch.n_tokens = len(tokens)
        if (status := self._lib.llama_decode(self._ctx, batch)) != 0:
            raise LlamaContextError(
                f"llama_decode returned {status} for {len(tokens)} tokens "
                f"(the cache holds {self.n_ctx} cells)")

    def _logits(self, i: int) -> np.ndarray:
        """The logits of the batch's token `i` (-1: the last with logits), as float32."""
        row = self._lib.llama_get_logits_ith(self._ctx, i)
        return np.ctypeslib.as_array(row, shape=(self._vocab,)).astype(np.float32)
