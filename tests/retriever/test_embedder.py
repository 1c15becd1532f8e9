"""The real MiniLM encoder on both backends (integration): same vectors, same contract."""

import numpy as np
import pytest

from lectern.protocols import Embedder
from lectern.settings import DEFAULT_ENCODER
from model.registry import resolve
from retriever.embedder import SentenceTransformerEmbedder
from retriever.onnx_encoder import length_batches, pooling_mode

pytestmark = pytest.mark.integration
TEXTS = [
    "What are the prerequisites for CSC 340?",
    "Fees are due by 1 October 2026.",
    "The library loan period is 28 days. " * 20,
    "x",
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    m = resolve(DEFAULT_ENCODER)
    onnx_file = tmp_path_factory.mktemp("onnx") / "encoder.onnx"
    fast = SentenceTransformerEmbedder(m.folder, m.fingerprint, onnx_path=onnx_file)
    plain = SentenceTransformerEmbedder(m.folder, m.fingerprint)
    fast.warm_up()
    plain.warm_up()
    return fast, plain, onnx_file


def test_onnx_backend_is_used_and_matches_pytorch(pair):
    fast, plain, onnx_file = pair
    assert fast._onnx is not None and onnx_file.is_file()
    assert plain._onnx is None
    a, b = fast.embed_passages(TEXTS), plain.embed_passages(TEXTS)
    assert a.shape == b.shape == (4, 384) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.9999
    assert float(fast.embed_query(TEXTS[0]) @ plain.embed_query(TEXTS[0])) > 0.9999


def test_embedder_contract(pair):
    fast, _, _ = pair
    assert isinstance(fast, Embedder)
    assert fast.embed_passages([]).shape == (0, 384)
    assert fast.count_tokens("CSC 340") > 1
    q = fast.embed_query("prerequisites of CSC 340")
    sims = fast.embed_passages(TEXTS[:3]) @ q
    assert int(np.argmax(sims)) == 0


def test_exported_file_is_reused(pair):
    _, _, onnx_file = pair
    m = resolve(DEFAULT_ENCODER)
    before = onnx_file.stat().st_mtime_ns
    again = SentenceTransformerEmbedder(m.folder, m.fingerprint, onnx_path=onnx_file)
    again.warm_up()
    assert again._onnx is not None and onnx_file.stat().st_mtime_ns == before


def test_unsupported_pooling_stays_on_pytorch(pair):
    fast, _, _ = pair

    class Odd:
        pooling_mode = "max"

    Odd.__name__ = "Pooling"
    assert pooling_mode([object(), Odd()]) is None
    assert pooling_mode(list(fast.model)) == "mean"


def test_length_batches_keep_long_texts_away_from_short_ones():
    lengths = [10, 150, 40, 35, 12, 9, 30]
    batches = length_batches(lengths, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [1]  # the long row alone: nothing else is padded to 150
    assert batches[1] == [2, 3, 6]  # full at 3
    for b in batches:
        assert len(b) <= 3 and all(2 * lengths[i] >= lengths[b[0]] for i in b)
