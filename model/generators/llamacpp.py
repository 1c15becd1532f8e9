"""A GGUF model run by llama.cpp (llama-cpp-python) behind the Generator protocol.

On a CPU llama.cpp decodes the same weights several times faster than transformers. The
prompt is the one the transformers backend builds (model.chat_prompt.render over the
GGUF's own chat template), and tokens are chosen as that backend chooses them: the
repetition penalty over every token seen, the abstention gate at the reply's first
token, then greedy or temperature and top-p. The decoding loop is this module's, over
llama.cpp's evaluation and logits, because llama-cpp-python's samplers apply the
penalty over a window and run custom processors after it.

One thread owns the llama.cpp context and decodes the requests one at a time, each
reply's tokens going to its reader through a queue (up to `max_waiting` wait, beyond
them OverloadedError): a slow reader never holds the context. Sequence 0 of the context
reads the prompt; its n replies decode as sequences 0 to n - 1 of one batch, the others
starting from a copy of the prompt's cache cells (model/generators/llamacpp_context.py),
and what they added is dropped when they end. The system turn is evaluated by itself
and kept in the cache for the next prompt with the same system turn, which evaluates
only the rest. Reusing any longer
common prefix would be faster still, but llama.cpp's logits for a token depend slightly
on the batches it was evaluated in, and a reply must not depend on the question asked
before it.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import queue
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lectern.errors import NotReadyError, OverloadedError
from lectern.optional import require
from lectern.protocols import Message
from model.abstention import threshold_for
from model.answer import ABSTAIN_REPLY
from model.chat_prompt import render, shared_system_turn
from model.chat_prompt import reply_prefixes as prompt_reply_prefixes
from model.generators.abstention_gate import gate_abstention
from model.generators.llamacpp_context import SequenceContext
from model.generators.sampling import Sampling


@dataclass
class _Request:
    ids: list[int]
    shared: int  # lead ids that are the system turn's
    max_new: int
    gate: bool
    n: int = 1  # replies, each from the prompt as read once
    # (reply number, piece) pairs, then _END or an error
    out: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)


_END = object()
# The Llama object is kept for its tokenizer, chat template and vocabulary; its own
# context (one sequence) is left unused at this size.
_UNUSED_CONTEXT = 64


class LlamaCppGenerator:
    def __init__(
        self,
        model_path: Path | str,
        sampling: Sampling | None = None,
        max_input_tokens: int = 2048,
        threads: int | None = None,
        max_waiting: int = 32,
        token_timeout_s: float = 300.0,
        adapter: Path | str | None = None,
        seed: int = 0,
        flash_attention: bool = False,
        max_sequences: int = 8,
    ) -> None:
        """model_path: a .gguf file. threads: for decoding (reading the prompt uses every
        core). adapter: the LoRA folder merged into that file, read for its abstention
        threshold only (the weights are the file's). flash_attention: llama.cpp's fused
        attention kernel, faster at reading a prompt on a CPU, its logits slightly apart.
        max_sequences: sampled replies to one prompt decoded together (more go in turns),
        the context's sequences. llama.cpp reads a prompt 20-35% slower in a context of
        3, 5, 6, 9 or 12 sequences than of 1, 2, 4, 7, 8 or 10 on this machine
        (bench/results/llamacpp_sequences.md); 8 is one of the fast ones."""
        if max_input_tokens < 16:
            raise ValueError(f"max_input_tokens must be at least 16, got {max_input_tokens}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be at least 0, got {max_waiting}")
        if token_timeout_s <= 0:
            raise ValueError(f"token_timeout_s must be positive, got {token_timeout_s}")
        if not 1 <= max_sequences <= 64:
            raise ValueError(f"max_sequences must be in [1, 64], got {max_sequences}")
        self.model_path = Path(model_path)
        if self.model_path.suffix.lower() != ".gguf":
            raise ValueError(f"the llama.cpp backend reads a .gguf file, got {self.model_path}")
        self.sampling = sampling or Sampling()
        self.max_input_tokens = max_input_tokens
        self.threads = threads or os.cpu_count() or 1
        self.max_waiting = max_waiting
        self.token_timeout_s = token_timeout_s
        self.adapter = None if adapter is None else Path(adapter)
        self.flash_attention = flash_attention
        self.max_sequences = max_sequences
        self._rng = np.random.default_rng(seed)
        self._llm: Any = None
        self._context: SequenceContext | None = None
        self._template: _Template | None = None
        self._abstain_id: int | None = None
        self._abstain_threshold = 0.0
        self._eog: frozenset[int] = frozenset()
        self._vocab: Any = None  # llama.cpp's vocabulary handle, for token pieces
        # The system turn at the head of the context's cache, evaluated by itself.
        self._system: tuple[int, ...] | None = None
        self._warm = threading.Lock()
        # Tokenizing reads the model that close() frees: the two never overlap.
        self._using = threading.Lock()
        self._queue: queue.Queue[_Request | None] | None = None
        # A place for the one decoding and each of those waiting, held until it is done.
        self._places = threading.BoundedSemaphore(max_waiting + 1)
        self._worker: threading.Thread | None = None
        self._seconds_per_reply = 1.0
        self._closed = False

    def warm_up(self) -> None:
        with self._warm:
            if self._llm is not None:
                return
            if self._closed:
                raise NotReadyError("generator closed")
            if not self.model_path.is_file():
                raise FileNotFoundError(f"no GGUF file at {self.model_path}")
            llama_cpp = require("llama_cpp", "llamacpp")
            llm = llama_cpp.Llama(str(self.model_path), n_ctx=_UNUSED_CONTEXT,
                                  n_threads=1, logits_all=False, verbose=False)
            try:
                # Room for the longest prompt and a full batch of replies to it.
                self._context = SequenceContext(
                    llm.model,
                    self.max_input_tokens + self.max_sequences * self.sampling.max_new_tokens,
                    self.max_sequences, self.threads, os.cpu_count() or self.threads,
                    self.flash_attention,
                )
            except Exception:
                llm.close()
                raise
            self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
            self._template = _Template(llm, self._vocab)
            self._eog = _end_of_generation(llama_cpp, llm, self._vocab)
            self._abstain_id = llm.tokenize(ABSTAIN_REPLY.encode("utf-8"), add_bos=False)[0]
            given = self.sampling.abstain_threshold
            self._abstain_threshold = threshold_for(self.adapter) if given is None else given
            self._queue = queue.Queue()
            self._llm = llm
            self._worker = threading.Thread(target=self._serve, name="llamacpp", daemon=True)
            self._worker.start()

    @property
    def abstain_threshold(self) -> float:
        return self._abstain_threshold

    def _require(self) -> Any:
        if self._llm is None or self._closed:
            raise NotReadyError("generator used before warm_up()")
        return self._llm

    def _ids(self, text: str, special: bool, add_bos: bool = False) -> list[int]:
        with self._using:
            return self._require().tokenize(text.encode("utf-8"), add_bos=add_bos,
                                            special=special)

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """The prompt's token ids, as the transformers backend builds them (left-cut)."""
        return self._prompt(messages)[0]

    def _prompt(self, messages: Sequence[Message], prefix: str = "") -> tuple[list[int], int]:
        """The prompt's ids, a reply prefix after them, and how many lead ids are its
        system turn's (0: none shared)."""
        self._require()
        template = self._template
        assert template is not None
        text = render(messages, template) + prefix
        if not template.chat_template:  # the tokenizer's own start, as encode() adds it
            return self._ids(text, special=False, add_bos=True)[-self.max_input_tokens :], 0
        ids = self._ids(text, special=True)
        if len(ids) > self.max_input_tokens or not messages or messages[0]["role"] != "system":
            return ids[-self.max_input_tokens :], 0
        system = self._ids(render(messages[:1], template, generation_prompt=False), special=True)
        return ids, shared_system_turn(messages, ids, system)

    def count_tokens(self, text: str) -> int:
        return len(self._ids(text, special=False))

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.prompt_ids(messages))

    def generate(self, messages: Sequence[Message]) -> str:
        return "".join(self.stream(messages))

    def stream(self, messages: Sequence[Message]) -> Iterator[str]:
        """The reply as it is decoded. OverloadedError at once when `max_waiting`
        requests already wait behind the one decoding."""
        ids, shared = self._prompt(messages)
        return _texts(self._reply(self._submit(ids, shared, self.sampling.max_new_tokens,
                                               gate=True)))

    def samples(self, messages: Sequence[Message], n: int) -> list[str]:
        """n replies to `messages`, each drawn as generate() draws one. Greedy decoding
        gives one reply, returned n times. Sampled, the prompt is read once and the
        replies decode together, up to max_sequences at a time, each from the prompt's
        cache and the logits it ended on."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not self.sampling.do_sample:
            return [self.generate(messages)] * n
        ids, shared = self._prompt(messages)
        request = self._submit(ids, shared, self.sampling.max_new_tokens, gate=True, n=n)
        replies = [""] * n
        for i, piece in self._reply(request):
            replies[i] += piece
        return replies

    def generate_batch(
        self,
        conversations: Sequence[Sequence[Message]],
        max_new_tokens: int | None = None,
        reply_prefixes: Sequence[str] | None = None,
        stop: Sequence[str] = (),
    ) -> list[str]:
        """Replies to several conversations, one after another (the context holds one
        sequence). A reply prefix is put in the assistant's mouth and returned as the
        start of its reply; a reply ends with its first stop string, kept, as transformers
        keeps it. The abstention gate is not applied: bulk work writes questions and
        rewrites, never an answer."""
        out = []
        for messages, prefix in zip(
            conversations, prompt_reply_prefixes(conversations, reply_prefixes), strict=True
        ):
            ids, shared = self._prompt(messages, prefix)
            reply = ""
            request = self._submit(ids, shared, max_new_tokens or self.sampling.max_new_tokens,
                                   gate=False)
            for _, piece in self._reply(request):
                reply += piece
                if (end := _stop_end(reply, stop)) is not None:
                    reply = reply[:end]
                    break
            out.append(prefix + reply)
        return out

    def _submit(
        self, ids: list[int], shared: int, max_new: int, gate: bool, n: int = 1
    ) -> _Request:
        self._require()
        assert self._queue is not None
        if not self._places.acquire(blocking=False):
            raise OverloadedError(
                max(1.0, self._seconds_per_reply * (self.max_waiting + 1)),
                "the generator's queue is full",
            )
        request = _Request(ids, shared, max_new, gate, n)
        self._queue.put(request)
        return request

    def _reply(self, request: _Request) -> Generator[tuple[int, str], None, None]:
        try:
            while True:
                try:
                    item = request.out.get(timeout=self.token_timeout_s)
                except queue.Empty:
                    raise TimeoutError(
                        f"no token from the generator in {self.token_timeout_s} s") from None
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.cancelled.set()  # a reader that went away stops the decoding

    def _serve(self) -> None:
        """The decoding thread: the only one that touches the context."""
        assert self._queue is not None
        while (request := self._queue.get()) is not None:
            started = time.perf_counter()
            try:
                if not (self._closed or request.cancelled.is_set()):
                    for piece in self._tokens(request):
                        request.out.put(piece)
                request.out.put(NotReadyError("the server is shutting down")
                                if self._closed else _END)
            except Exception as exc:  # the reader raises it
                request.out.put(exc)
            finally:
                self._places.release()
            self._seconds_per_reply = 0.8 * self._seconds_per_reply + 0.2 * (
                time.perf_counter() - started) / request.n
        self._drain()

    def _drain(self) -> None:
        """Fail what still waits (the thread is stopping) and free the context."""
        assert self._queue is not None
        while True:
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                break
            if left is not None:
                left.out.put(NotReadyError("the server is shutting down"))
                self._places.release()
        with self._using:
            if self._context is not None:
                self._context.close()
                self._context = None
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    def _tokens(self, request: _Request) -> Iterator[tuple[int, str]]:
        """The request's replies as (reply number, piece) pairs."""
        context = self._context
        assert context is not None
        ids = request.ids
        shared = min(request.shared, len(ids) - 1)  # the last prompt token gives the logits
        system = tuple(ids[:shared])
        if shared and self._system == system:
            context.keep(0, shared)  # the system turn as evaluated by itself before
        else:
            context.clear()
            self._system = None
            if shared:
                context.read(ids[:shared], 0)
                self._system = system
        # The first token's logits, kept: every reply starts from them.
        first = context.read(ids[shared:], shared)
        for start in range(0, request.n, self.max_sequences):
            yield from self._batch(request, first, start, min(self.max_sequences,
                                                              request.n - start))

    def _batch(
        self, request: _Request, first: np.ndarray, start: int, k: int
    ) -> Iterator[tuple[int, str]]:
        """Replies start .. start + k - 1, decoded together as sequences 0 .. k - 1."""
        llama_cpp = require("llama_cpp", "llamacpp")
        context, ids, end = self._context, request.ids, len(request.ids)
        assert context is not None
        for seq in range(1, k):
            context.copy(0, seq, end)
        try:
            # The context holds max_input_tokens + max_sequences replies of the configured
            # length; bulk work may ask for more.
            limit = min(request.max_new, (context.n_ctx - end) // k)
            seen = [list(ids) for _ in range(k)]
            text = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(k)]
            active, rows = list(range(k)), [first] * k
            for step in range(limit):
                chosen = []
                for i, logits in zip(active, rows, strict=True):
                    if self._closed or request.cancelled.is_set():
                        return
                    token = self._choose(logits, seen[i], first=request.gate and step == 0)
                    if token in self._eog:
                        continue
                    seen[i].append(token)
                    chosen.append((i, token))
                    # A token that ends inside a character waits for the next (as _Deltas).
                    if piece := text[i].decode(_piece(llama_cpp, self._vocab, token)):
                        yield start + i, piece
                active = [i for i, _ in chosen]
                if not active or step + 1 == limit:
                    return
                rows = context.step([(token, end + step, i) for i, token in chosen])
        finally:
            context.keep(0, end)  # the prompt, for the next batch of replies to it
            for seq in range(1, k):
                context.keep(seq, 0)

    def _choose(self, logits: np.ndarray, seen: list[int], first: bool) -> int:
        s = self.sampling
        scores = logits[None]
        if s.repetition_penalty != 1.0:
            scores = _repetition_penalty(scores, seen, s.repetition_penalty)
        if first:
            scores = gate_abstention(scores, self._abstain_id, self._abstain_threshold)
        if not s.do_sample:
            return int(scores[0].argmax())
        return _sample(scores[0], s.temperature, s.top_p, self._rng)

    def close(self, timeout: float = 1.0) -> None:
        """Refuse new requests; the reply decoding stops after its current token and its
        reader gets NotReadyError, as do those waiting; the context is freed. Idempotent."""
        self._closed = True
        if self._queue is not None:
            self._queue.put(None)  # behind the waiting ones: they are failed by _drain
        if self._worker is not None:
            self._worker.join(timeout)


class _Template:
    """The GGUF's chat template behind the two members model.chat_prompt.render reads."""

    def __init__(self, llm: Any, vocab: Any) -> None:
        self.chat_template: str | None = llm.metadata.get("tokenizer.chat_template")
        self._formatters: dict[bool, Any] = {}
        if self.chat_template:
            llama_cpp = require("llama_cpp", "llamacpp")
            chat_format = require("llama_cpp.llama_chat_format", "llamacpp")

            def special(token: int) -> str:
                return _piece(llama_cpp, vocab, token, special=True).decode("utf-8", "replace")

            self._formatters = {
                g: chat_format.Jinja2ChatFormatter(
                    self.chat_template, eos_token=special(llm.token_eos()),
                    bos_token=special(llm.token_bos()), add_generation_prompt=g,
                ) for g in (True, False)
            }

    def apply_chat_template(
        self, messages: list[Message], add_generation_prompt: bool, tokenize: bool
    ) -> str:
        return self._formatters[add_generation_prompt](messages=messages).prompt


def _texts(replies: Generator[tuple[int, str], None, None]) -> Iterator[str]:
    """The pieces of a single reply; closing this closes the reply (its reader left)."""
    try:
        for _, piece in replies:
            yield piece
    finally:
        replies.close()


def _repetition_penalty(scores: np.ndarray, seen: Sequence[int], penalty: float) -> np.ndarray:
    """transformers' RepetitionPenaltyLogitsProcessor: every token seen so far, its logit
    divided by `penalty` when positive and multiplied when negative."""
    out = scores.copy()
    idx = np.unique(np.asarray(seen, dtype=np.int64))
    picked = out[0, idx]
    out[0, idx] = np.where(picked < 0, picked * penalty, picked / penalty)
    return out


def _sample(row: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """transformers' temperature then top-p warpers, then a draw."""
    z = row.astype(np.float64) / temperature
    order = np.argsort(-z)
    p = np.exp(z[order] - z[order[0]])
    p /= p.sum()
    # Tokens past the top-p mass go, the first one past it stays (as transformers keeps it).
    # (top_p 1 keeps every token: the sum can fall short of 1 by rounding.)
    keep = min(int(np.searchsorted(np.cumsum(p), top_p)) + 1, len(p))
    kept = p[:keep] / p[:keep].sum()
    return int(order[rng.choice(keep, p=kept)])


def _stop_end(text: str, stop: Sequence[str]) -> int | None:
    """Where `text` ends when cut after its first stop string (kept); None for none."""
    found = [(i, i + len(s)) for s in stop if s and (i := text.find(s)) >= 0]
    return min(found)[1] if found else None


def _piece(llama_cpp: Any, vocab: Any, token: int, special: bool = False) -> bytes:
    """A token's bytes (`special`: "<|im_end|>" as its text, else nothing). llama-cpp-
    python's detokenize reads at most 32 bytes per token and cuts a longer one (a run of
    spaces in a code vocabulary) without a word."""
    size = 64
    while True:
        buffer = (ctypes.c_char * size)()
        n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, special)
        if n >= 0:
            return bytes(buffer[:n])
        size = -n  # too small: llama.cpp says how many bytes the piece needs


def _end_of_generation(llama_cpp: Any, llm: Any, vocab: Any) -> frozenset[int]:
    """Every token that ends a turn (end of text, <|im_end|>, ...), as llama.cpp marks them."""
    return frozenset(t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t))
