"""Run a sentence-transformers BERT-style encoder with onnxruntime.

For one short query on two cores, PyTorch spends most of its ~18 ms in per-operator
overhead; onnxruntime's fused graph gives the same vectors (cosine 1.0 to torch's) in
about 6 ms, and its own thread pool stays fast when called from a server's worker
threads, where PyTorch's OpenMP pool here runs at half speed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lectern.optional import require
from lectern.threads import PerThread

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def pooling_mode(st_model: Any) -> str | None:
    """'mean' or 'cls' when the model pools that way, else None (not exportable here)."""
    pooling = next((m for m in st_model if type(m).__name__ == "Pooling"), None)
    if pooling is None:
        return None
    mode = getattr(pooling, "pooling_mode", None)  # sentence-transformers >= 5
    if isinstance(mode, str):
        return {"mean": "mean", "cls": "cls"}.get(mode)
    if getattr(pooling, "pooling_mode_mean_tokens", False):
        return "mean"
    if getattr(pooling, "pooling_mode_cls_token", False):
        return "cls"
    return None


def export(st_model: Any, path: Path) -> None:
    """Write the transformer of `st_model` as ONNX to `path` (atomically)."""
    import warnings

    torch = require("torch", "torch")

    backbone = st_model[0].auto_model.eval()
    names = [n for n in _INPUTS if n in st_model.tokenizer.model_input_names]

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.backbone(**dict(zip(names, args, strict=True))).last_hidden_state

    sample = st_model.tokenizer(["an example sentence"], return_tensors="pt")
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "hidden"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                Wrapper(),
                tuple(sample[n] for n in names),
                tmp,
                input_names=names,
                output_names=["hidden"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped longest first, a new batch once a text is under half the longest.

    Every text in a batch is padded to its longest, so one long table row among short
    sentences would multiply the work (a question's context: ~150 ms instead of ~40).
    """
    order = np.argsort([-n for n in lengths], kind="stable").tolist()
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and 2 * lengths[i] >= lengths[batches[-1][0]]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def cpu_session(path: Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session for the encoder or the reranker (threads 0: every core)."""
    ort = require("onnxruntime", "retrieval")

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Embedding, reranking and the generator's prefill follow each other on the same
    # cores; idle workers spin-waiting for more work would take the cores from the next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    def __init__(
        self, path: Path, tokenizer: Any, pooling: str, max_length: int, threads: int = 0
    ) -> None:
        self.session = cpu_session(path, threads)
        self.names = [i.name for i in self.session.get_inputs()]
        self._tokenizers = PerThread.copies_of(tokenizer)
        self.pooling = pooling
        self.max_length = max_length

    @property
    def tokenizer(self) -> Any:
        """This thread's tokenizer (a fast tokenizer must not be shared between threads)."""
        return self._tokenizers.get()

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = []
        tokenize = self.tokenizer
        order = length_batches([len(t) for t in texts], batch_size)
        for group in order:
            batch = [texts[i] for i in group]
            enc = tokenize(
                batch,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            feeds = {n: enc[n].astype(np.int64) for n in self.names}
            hidden = self.session.run(None, feeds)[0]
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = enc["attention_mask"][..., None].astype(np.float32)
                pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            out.append(pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None))
        vectors = np.concatenate(out).astype(np.float32)
        result = np.empty_like(vectors)
        result[[i for group in order for i in group]] = vectors
        return result
