"""Rerank retrieved chunks with a cross-encoder trained by `lectern train reranker`.

A cross-encoder reads the question and a passage together, so it sees which sentence
answers the question, which neither BM25 nor a bi-encoder can. It is also the most
expensive stage: on two CPU cores a 6-layer MiniLM needs about a second for 20 chunks
of 200 tokens. The trained model is therefore shallow (3 layers by default), reads a
short input (question plus the passage's bounded heading and the sentences around the
one sharing most words with the question, 64 tokens in all) and runs as int8 ONNX.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lectern.errors import ModelNotFoundError, NotReadyError
from lectern.optional import require
from lectern.text import words
from lectern.threads import PerThread
from lectern.types import Chunk, ScoredChunk
from retriever.bm25 import stem
from retriever.onnx_encoder import cpu_session
from retriever.records import RerankerRecord

log = logging.getLogger(__name__)

# Trained by `lectern train reranker` and committed as int8 ONNX only (no torch weights),
# so search is reranked out of the box; a reranker trained locally takes precedence.
SHIPPED_RERANKER = Path(__file__).resolve().parent / "weights" / "reranker"
CONFIG_FILE = RerankerRecord.FILE  # training config and metrics, written next to the weights
ONNX_FILE = "model.int8.onnx"
Backend = Literal["torch", "onnx"]
# The weights of the incoming rank tried when a reranker is calibrated (see fuse()).
PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
DEFAULT_MAX_LENGTH = 256  # for a model whose record does not say what it was trained on
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
# The heading reads at most max_length // HEADING_SHARE tokens of the model's window (16
# of 64): even a heading that is still long after lectern.headings shortened it (a title
# of long words) leaves the passage the rest.
HEADING_SHARE = 4


def head_and_body(chunk: Chunk) -> tuple[str, str]:
    """(the heading the models read, the passage text); the heading may be empty."""
    return chunk.model_heading, chunk.text


class QueryFocus:
    """Cuts a passage down to a token budget around the sentence that best matches a query.

    The answer to a question usually sits in the sentence sharing most of its words, or
    just after it; a plain truncation would keep only the passage's first sentences.
    """

    def __init__(self) -> None:
        stopwords = require("bm25s.stopwords", "retrieval")

        self._stop = set(stopwords.STOPWORDS_EN)

    def terms(self, text: str) -> set[str]:
        # BM25's stemmer (English Snowball, one per thread) and bm25s's English stopwords.
        return {stem(w) for w in words(text) if w not in self._stop}

    def apply(
        self,
        query: str,
        passages: Sequence[tuple[str, str]],
        budget: int,
        token_starts: Sequence[Sequence[int]],
    ) -> list[str]:
        """Each (head, body) as one text of at most about `budget` tokens.

        token_starts[i]: where each token of "head\nbody" (or body) starts, in characters;
        one tokenizer pass gives the size of every sentence.
        """
        texts = [_joined(h, b) for h, b in passages]
        long = [i for i, starts in enumerate(token_starts) if len(starts) > budget]
        if not long:
            return texts
        query_terms = self.terms(query)
        for i in long:
            head, body = passages[i]
            starts = token_starts[i]
            offset = len(head) + 1 if head else 0
            spans = [(a + offset, b + offset) for a, b in _sentence_spans(body)]
            first = bisect.bisect_left
            sizes = [first(starts, b) - first(starts, a) for a, b in spans]
            room = budget - bisect.bisect_left(starts, offset)
            sentences = [texts[i][a:b] for a, b in spans]
            texts[i] = self._window(query_terms, sentences, sizes, room, head)
        return texts

    def _window(
        self, query_terms: set[str], sentences: list[str], sizes: list[int], room: int, head: str
    ) -> str:
        if not sentences:
            return head
        scores = [len(query_terms & self.terms(s)) for s in sentences]
        best = max(range(len(sentences)), key=lambda k: (scores[k], -k))
        lo = hi = best
        used = sizes[best]
        grown = True
        while grown:  # forward first: an answer tends to follow the matching sentence
            grown = False
            if hi + 1 < len(sentences) and used + sizes[hi + 1] <= room:
                hi += 1
                used += sizes[hi]
                grown = True
            if lo > 0 and used + sizes[lo - 1] <= room:
                lo -= 1
                used += sizes[lo]
                grown = True
        return _joined(head, " ".join(sentences[lo : hi + 1]))


class CrossEncoderReranker:
    """Scores (query, heading + passage) pairs and keeps the best `top_k`, best first.

    Cheap to construct; `warm_up()` loads the tokenizer and the model (idempotent).
    Scores are the model's logits: higher is more relevant, not a probability.
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        batch_size: int = 32,
        max_length: int | None = None,
        backend: Backend = "onnx",
        threads: int = 0,
        focus: bool = True,
        prior_weight: float | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if max_length is not None and not 16 <= max_length <= 512:
            raise ValueError(f"max_length must be in [16, 512], got {max_length}")
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        if prior_weight is not None and not 0 <= prior_weight <= 10:
            raise ValueError(f"prior_weight must be in [0, 10], got {prior_weight}")
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise ModelNotFoundError(
                str(model_dir), [f"{self.model_dir}: no config.json (not a model folder)"]
            )
        self.batch_size = batch_size
        self.backend: Backend = backend
        self.threads = threads
        self.use_focus = focus
        self.record = RerankerRecord.load(self.model_dir)
        record = self.record or RerankerRecord()
        self.info: dict[str, Any] = self.record.as_dict() if self.record else {}  # for reports
        self.max_length = max_length or record.config.max_length or DEFAULT_MAX_LENGTH
        # Fitted at training time on held-out questions (never on evaluation data).
        self.prior_weight = record.prior_weight if prior_weight is None else prior_weight
        self._tokenizer: Any = None  # the prototype: request threads use copies of it
        self._tokenizers: PerThread[Any] | None = None
        self._session: Any = None
        self._model: Any = None
        self._focus: QueryFocus | None = None

    def warm_up(self) -> None:
        if self._tokenizer is not None:
            return
        transformers = require("transformers", "model")

        tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.model_dir))
        if self.backend == "onnx":
            path = self.model_dir / ONNX_FILE
            if not path.is_file():
                log.info("no %s in %s; exporting it once", ONNX_FILE, self.model_dir)
                export_onnx(self.model_dir)
            self._session = cpu_session(path, self.threads)
        else:
            if not has_torch_weights(self.model_dir):
                raise ModelNotFoundError(str(self.model_dir), [
                    f"{self.model_dir}: no torch weights ({' or '.join(TORCH_WEIGHTS)}); it holds "
                    f"{ONNX_FILE} only, so use backend 'onnx' or train one with "
                    "`lectern train reranker`"
                ])
            self._model = load_cross_encoder(self.model_dir)
        self._focus = QueryFocus() if self.use_focus else None
        self._tokenizers = PerThread.copies_of(tokenizer)
        self._tokenizer = tokenizer

    @property
    def tokenizer(self) -> Any:
        """This thread's tokenizer (a fast tokenizer must not be shared between threads)."""
        if self._tokenizers is None:
            raise NotReadyError("reranker used before warm_up()")
        return self._tokenizers.get()

    def inputs(self, query: str, passages: Sequence[tuple[str, str]]) -> list[str]:
        """The passage texts the model reads for `query`: focused when they are long."""
        return model_inputs(self.tokenizer, self._focus, query, passages, self.max_length)

    def score(self, query: str, passages: Sequence[tuple[str, str]]) -> np.ndarray:
        """One logit per (heading, text) passage, in input order."""
        texts = self.inputs(query, passages)
        tokenizer = self.tokenizer
        out = np.empty(len(texts), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # little padding per batch
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = tokenizer(
                [query] * len(idx),
                [texts[i] for i in idx],
                padding=True,
                truncation="longest_first",
                max_length=self.max_length,
                return_tensors="np",
            )
            out[idx] = self._logits(enc)
        return out

    def score_chunks(self, query: str, chunks: Sequence[Chunk]) -> np.ndarray:
        """One logit per chunk, as rerank() reads them (a calibration scores with this)."""
        return self.score(query, [head_and_body(c) for c in chunks])

    def _logits(self, enc: Any) -> np.ndarray:
        if self._session is not None:
            names = [i.name for i in self._session.get_inputs()]
            feeds = {n: enc[n].astype(np.int64) for n in names}
            return self._session.run(None, feeds)[0].reshape(-1)
        torch = require("torch", "torch")

        with torch.inference_mode():
            feeds = {k: torch.from_numpy(v) for k, v in enc.items() if k in _INPUTS}
            return self._model(feeds)["scores"].float().reshape(-1).numpy()

    def rerank(
        self,
        query: str,
        chunks: Sequence[ScoredChunk],
        top_k: int,
        *,
        prior_weight: float | None = None,
    ) -> list[ScoredChunk]:
        if top_k < 1 or not chunks:
            return []
        if self._tokenizer is None:
            raise NotReadyError("reranker used before warm_up()")
        weight = self.prior_weight if prior_weight is None else prior_weight
        scores = fuse(self.score_chunks(query, [hit.chunk for hit in chunks]), weight)
        # Ties keep the incoming (fused) order.
        order = sorted(range(len(chunks)), key=lambda i: (-float(scores[i]), i))
        return [ScoredChunk(chunks[i].chunk, float(scores[i])) for i in order[:top_k]]


def fuse(logits: np.ndarray, prior_weight: float) -> np.ndarray:
    """Logits standardized over the query's candidates, minus prior_weight * ln(incoming rank).

    The first stage's order is evidence the small reranker does not have (exact term
    statistics over the whole corpus, the bi-encoder's view), and the two err on different
    candidates, so the final order weighs both. Standardizing makes the weight independent
    of the logits' scale. prior_weight 0 (or a single candidate) leaves the logits as they are.
    """
    if prior_weight == 0 or len(logits) < 2:
        return logits
    z = (logits - logits.mean()) / (logits.std() + 1e-6)
    return (z - prior_weight * np.log(np.arange(1, len(logits) + 1))).astype(np.float32)


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, prev = [], 0
    for m in _SENTENCE_BREAK.finditer(text):
        if m.start() > prev:
            spans.append((prev, m.start()))
        prev = m.end()
    if prev < len(text):
        spans.append((prev, len(text)))
    return spans


def model_inputs(
    tokenizer: Any,
    focus: QueryFocus | None,
    query: str,
    passages: Sequence[tuple[str, str]],
    max_length: int,
) -> list[str]:
    """(heading, text) passages as the model reads them next to `query`.

    Each heading keeps at most max_length // HEADING_SHARE tokens; with a focus, a long
    passage is cut to the rest of the room around its best sentence. Training and
    serving both build their inputs here, so the model is trained on exactly what it
    will be shown.
    """
    texts = [_joined(h, b) for h, b in passages]
    offsets = tokenizer(
        [query, *texts], add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )["offset_mapping"]
    starts = [[a for a, _ in row] for row in offsets]
    passages, token_starts = bound_headings(passages, starts[1:], max_length // HEADING_SHARE)
    if focus is None:
        return [_joined(h, b) for h, b in passages]
    # [CLS] query [SEP] passage [SEP]; a long query keeps at most half of the room.
    budget = max(max_length - min(len(starts[0]), max_length // 2) - 3, 8)
    return focus.apply(query, passages, budget, token_starts)


def _joined(head: str, body: str) -> str:
    return f"{head}\n{body}" if head else body


def bound_headings(
    passages: Sequence[tuple[str, str]], token_starts: Sequence[Sequence[int]], limit: int
) -> tuple[list[tuple[str, str]], list[list[int]]]:
    """Each heading cut to its first `limit` tokens, and where the tokens of the new text start.

    token_starts[i]: where each token of "head\nbody" (or body) starts, in characters. A
    heading is cut where its token number `limit` starts, so the tokens kept are the
    ones counted; the body's tokens move left by what was cut.
    """
    out_passages: list[tuple[str, str]] = []
    out_starts: list[list[int]] = []
    for (head, body), starts in zip(passages, token_starts, strict=True):
        starts = list(starts)
        in_head = bisect.bisect_left(starts, len(head)) if head else 0
        if in_head > limit:
            cut = head[: starts[limit]].rstrip()
            shift = len(head) - len(cut) + (0 if cut else 1)  # no heading: no newline either
            starts = (starts[:limit] if cut else []) + [a - shift for a in starts[in_head:]]
            head = cut
        out_passages.append((head, body))
        out_starts.append(starts)
    return out_passages, out_starts


def has_torch_weights(model_dir: Path) -> bool:
    """Whether the folder can run on torch (the shipped reranker is int8 ONNX only)."""
    return any((model_dir / w).is_file() for w in TORCH_WEIGHTS)


def load_cross_encoder(model_dir: Path) -> Any:
    """The saved sentence-transformers CrossEncoder, in eval mode (its modules give "scores")."""
    st = require("sentence_transformers", "retrieval")

    return st.CrossEncoder(str(model_dir), device="cpu", local_files_only=True).eval()


def export_onnx(model_dir: Path) -> Path:
    """Write model_dir/model.int8.onnx (int8 dynamic quantization) from the torch weights.

    On CPUs without VNNI int8 matmuls still run about 1.4x faster than fp32 here, and the
    file is a quarter of the size (~23 MB for 6 layers); the scores move by about 0.01.
    """
    import warnings

    torch = require("torch", "torch")
    quantization = require("onnxruntime.quantization", "retrieval")

    model = load_cross_encoder(model_dir)
    tokenizer = model.tokenizer
    names = [n for n in _INPUTS if n in tokenizer.model_input_names]
    sample = tokenizer(["a question"], ["a passage to score"], return_tensors="pt")

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, args, strict=True)))["scores"]

    target = model_dir / ONNX_FILE
    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        fp32 = Path(tmp) / "model.onnx"
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                Logits(),
                tuple(sample[n] for n in names),
                str(fp32),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names}
                | {"logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        out = Path(tmp) / ONNX_FILE
        quantization.quantize_dynamic(
            str(fp32), str(out), weight_type=quantization.QuantType.QInt8
        )
        os.replace(out, target)
    return target
