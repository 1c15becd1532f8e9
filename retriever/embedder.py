"""The dense encoder: a sentence-transformers bi-encoder (all-MiniLM-L6-v2 by default)."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lectern.errors import NotReadyError
from lectern.optional import require
from lectern.threads import PerThread
from retriever import onnx_encoder
from retriever.onnx_encoder import OnnxEncoder

log = logging.getLogger(__name__)
# What ingestion and re-indexing embed: Chunk.model_text (the passage under its bounded
# heading; "h1" was the whole heading path). The format is part of the fingerprint the
# store keys vectors by, so a store holding vectors of another text finds them missing
# and re-embeds its chunks on the next start (Corpus.refresh).
PASSAGE_FORMAT = "h2"


def passage_fingerprint(weights: str) -> str:
    """The fingerprint of vectors that encoder `weights` made of today's passage text."""
    return f"{weights}+passages:{PASSAGE_FORMAT}"


class SentenceTransformerEmbedder:
    """Encodes passages and queries into L2-normalised float32 vectors.

    Normalised vectors make inner product equal cosine similarity, which is what the
    FAISS index searches with.
    """

    def __init__(
        self,
        folder: Path | str,
        fingerprint: str,
        device: str = "cpu",
        batch_size: int = 32,
        query_prefix: str = "",
        passage_prefix: str = "",
        onnx_path: Path | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.folder = Path(folder)
        self._fingerprint = fingerprint
        self.device = device
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.onnx_path = onnx_path
        self._model = None
        self._onnx: OnnxEncoder | None = None
        # A question is embedded by dense retrieval and again to pick its context's
        # sentences; the second time should cost nothing. A few entries cover the
        # requests in flight, not a cache of past questions.
        self._recent_queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._recent_lock = threading.Lock()
        self._tokenizers: PerThread[Any] | None = None
        # PyTorch already spreads one encode over every core; calls one at a time keep the
        # model's tokenizer to one thread.
        self._torch_lock = threading.Lock()

    def warm_up(self) -> None:
        if self._model is not None:
            return
        st = require("sentence_transformers", "retrieval")
        hf_logging = require("transformers.utils.logging", "model")

        hf_logging.disable_progress_bar()
        model = st.SentenceTransformer(str(self.folder), device=self.device, local_files_only=True)
        if self.onnx_path is not None and self.device == "cpu":
            self._onnx = self._onnx_for(model)
        self._tokenizers = PerThread.copies_of(model.tokenizer)
        self._model = model

    def _onnx_for(self, model: Any) -> OnnxEncoder | None:
        """An onnxruntime copy of the encoder, exported once; None when it cannot be used."""
        pooling = onnx_encoder.pooling_mode(model)
        if pooling is None:
            log.info("encoder pooling is neither mean nor CLS; staying on PyTorch")
            return None
        try:
            if not self.onnx_path.exists():
                onnx_encoder.export(model, self.onnx_path)
            encoder = OnnxEncoder(self.onnx_path, model.tokenizer, pooling, model.max_seq_length)
            probe = ["Which courses need CSC 210?", "Fees are due by 1 October."]
            same = encoder.encode(probe) * model.encode(probe, normalize_embeddings=True)
            if float(same.sum(axis=1).min()) < 0.999:
                log.warning("ONNX encoder disagrees with PyTorch; staying on PyTorch")
                return None
            return encoder
        except Exception:  # an exporter or runtime gap for this architecture
            log.warning("ONNX export of the encoder failed; staying on PyTorch", exc_info=True)
            return None

    @property
    def model(self):  # noqa: ANN201 - SentenceTransformer, imported lazily
        if self._model is None:
            raise NotReadyError("embedder used before warm_up()")
        return self._model

    @property
    def dimension(self) -> int:
        model = self.model
        # sentence-transformers 5 renamed the method; older releases only have the old name.
        get = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        return int(get())

    @property
    def fingerprint(self) -> str:
        """The weights' fingerprint with the passage format (see passage_fingerprint)."""
        return passage_fingerprint(self._fingerprint)

    @property
    def max_tokens(self) -> int:
        """Tokens the encoder reads of a text, its special tokens included; it cuts the rest."""
        return int(self.model.max_seq_length)

    @property
    def passage_overhead(self) -> int:
        """Tokens of max_tokens every passage spends besides its own: special tokens, prefix."""
        return self._count(self.passage_prefix, special=True)

    def count_tokens(self, text: str) -> int:
        return self._count(text, special=False)

    def _count(self, text: str, special: bool) -> int:
        if self._tokenizers is None:
            raise NotReadyError("embedder used before warm_up()")
        # verbose=False: counting a text longer than the model reads is no error, so no
        # "sequence length is longer than the specified maximum" warning.
        ids = self._tokenizers.get()(text, add_special_tokens=special, verbose=False)
        return len(ids["input_ids"])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._encode([self.passage_prefix + t for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        with self._recent_lock:
            cached = self._recent_queries.get(text)
        if cached is None:
            cached = self._encode([self.query_prefix + text])[0]
            cached.setflags(write=False)  # shared between callers
            with self._recent_lock:
                self._recent_queries[text] = cached
                while len(self._recent_queries) > 4:
                    self._recent_queries.popitem(last=False)
        return cached

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx.encode(texts, self.batch_size)
        with self._torch_lock:
            vectors = self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
