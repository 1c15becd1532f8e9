"""The Embedder contract, run against every implementation, and the encoder's own tests.

The implementations are the real packaged MiniLM on both of its backends, built as the
service builds them (integration: real weights, offline).
"""

import json
import logging

import numpy as np
import pytest

from api.components import build_embedder
from lectern.protocols import Embedder
from lectern.settings import ModelSettings, Settings
from model import prepare
from retriever.embedder import PASSAGE_FORMAT, SentenceTransformerEmbedder, passage_fingerprint
from retriever.onnx_encoder import length_batches, pooling_mode
from tests.threads import run_together

pytestmark = pytest.mark.integration
TEXTS = [
    "What are the prerequisites for CSC 340?",
    "Fees are due by 1 October 2026.",
    "The library loan period is 28 days. " * 20,
    "x",
]
BACKENDS = ["torch", "onnx"]


@pytest.fixture(scope="module")
def packaged():
    """The packaged MiniLM the default settings name (resolved offline)."""
    return prepare.encoder(Settings(_env_file=None))


@pytest.fixture(scope="module")
def backends(tmp_path_factory) -> dict[str, SentenceTransformerEmbedder]:
    """The packaged encoder on each backend, as the service builds it for a CPU."""
    built = {}
    for backend in BACKENDS:
        settings = Settings(
            data_dir=tmp_path_factory.mktemp(f"data-{backend}"),
            models=ModelSettings(encoder_backend=backend),
            _env_file=None,
        )
        embedder = build_embedder(settings, "cpu")
        embedder.warm_up()
        built[backend] = embedder
    return built


@pytest.fixture(params=BACKENDS)
def embedder(request, backends) -> Embedder:
    return backends[request.param]


# -- the Embedder contract --------------------------------------------------------------


def test_is_an_embedder_of_the_packaged_model(embedder, packaged):
    assert isinstance(embedder, Embedder)
    assert embedder.dimension == 384
    # The weights' fingerprint and the passage text its vectors are of (Chunk.model_text).
    assert embedder.fingerprint == passage_fingerprint(packaged.fingerprint)
    assert embedder.fingerprint.startswith(packaged.fingerprint)
    assert PASSAGE_FORMAT in embedder.fingerprint
    embedder.warm_up()  # idempotent: a second warm-up keeps the loaded model
    assert embedder.dimension == 384


def test_vectors_are_unit_length_float32_rows_one_per_text(embedder):
    vectors = embedder.embed_passages(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    query = embedder.embed_query(TEXTS[0])
    assert query.shape == (384,) and query.dtype == np.float32
    assert float(np.linalg.norm(query)) == pytest.approx(1, abs=1e-5)
    assert embedder.embed_passages([]).shape == (0, 384)


def test_a_text_gets_the_same_vector_alone_again_and_in_a_batch(embedder):
    together = embedder.embed_passages(TEXTS)
    assert len(together) == len(TEXTS)
    for i, text in enumerate(TEXTS):
        alone = embedder.embed_passages([text])[0]
        assert float(alone @ together[i]) > 0.9999, text
    np.testing.assert_array_equal(embedder.embed_query(TEXTS[1]), embedder.embed_query(TEXTS[1]))


def test_the_passage_that_answers_is_nearest_to_the_query(embedder):
    passages = [
        "CSC 340 Machine Learning requires CSC 210 and MAT 220.",
        "Tuition fees are due by 1 October.",
        "The library loan period is 28 days.",
    ]
    sims = embedder.embed_passages(passages) @ embedder.embed_query("prerequisites of CSC 340")
    assert int(np.argmax(sims)) == 0
    sims = embedder.embed_passages(passages) @ embedder.embed_query("how long can I keep a book")
    assert int(np.argmax(sims)) == 2


def test_count_tokens_counts_the_model_s_word_pieces(embedder):
    assert embedder.count_tokens("") == 0
    assert embedder.count_tokens("library") == 1
    assert embedder.count_tokens("CSC 340") == 3  # cs, ##c, 340
    sentence = "The library loan period is 28 days."
    assert embedder.count_tokens(sentence) == 8  # the, library, loan, period, is, 28, days, .
    assert embedder.count_tokens(TEXTS[2]) == 20 * 8, "no special tokens, no truncation"


def test_the_window_and_what_a_passage_spends_besides_its_text(embedder):
    assert embedder.max_tokens == 256
    assert embedder.passage_overhead == 2  # [CLS] and [SEP]; MiniLM has no passage prefix


def test_counting_a_text_past_the_window_warns_of_nothing(embedder, caplog):
    # Chunking counts whole sections, so this warning came with every index build.
    from transformers.utils import logging as hf_logging

    embedder._tokenizers.get().deprecation_warnings.clear()  # it warns once per tokenizer
    hf_logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING):
            assert embedder.count_tokens("word " * 600) == 600
    finally:
        hf_logging.disable_propagation()
    assert not [r for r in caplog.records if "longer than the specified" in r.getMessage()]


# -- the encoder's own ------------------------------------------------------------------


def test_threads_embedding_at_once_get_what_one_thread_gets(embedder):
    # Batches of different lengths pad differently; token counts tokenize without
    # truncation: a tokenizer shared between threads mixes those settings up.
    rng = np.random.default_rng(3)
    words = ["the", "library", "opens", "at", "nine", "and", "fees", "are", "due", "by", "october"]
    batches = [[" ".join(rng.choice(words, size=int(rng.integers(1, 200))))
                for _ in range(int(rng.integers(1, 6)))] for _ in range(16)]

    def work(job: int) -> tuple[list[int], bytes]:
        texts = batches[job]
        vectors = embedder.embed_passages(texts)
        return [embedder.count_tokens(t) for t in texts], np.round(vectors, 4).tobytes()

    alone = [work(j) for j in range(len(batches))]
    for per_thread in run_together(work, len(batches)):
        assert [counts for counts, _ in per_thread] == [counts for counts, _ in alone]
        for (_, got), (_, want) in zip(per_thread, alone, strict=True):
            np.testing.assert_allclose(
                np.frombuffer(got, np.float32), np.frombuffer(want, np.float32), atol=2e-4
            )


def test_onnx_backend_is_used_and_matches_pytorch(backends):
    fast, plain = backends["onnx"], backends["torch"]
    assert fast._onnx is not None and fast.onnx_path.is_file()
    assert plain._onnx is None and plain.onnx_path is None
    a, b = fast.embed_passages(TEXTS), plain.embed_passages(TEXTS)
    assert a.shape == b.shape == (4, 384)
    assert (a * b).sum(axis=1).min() > 0.9999
    assert float(fast.embed_query(TEXTS[0]) @ plain.embed_query(TEXTS[0])) > 0.9999


def test_exported_file_is_reused(backends, packaged):
    onnx_file = backends["onnx"].onnx_path
    before = onnx_file.stat().st_mtime_ns
    again = SentenceTransformerEmbedder(packaged.folder, packaged.fingerprint, onnx_path=onnx_file)
    again.warm_up()
    assert again._onnx is not None and onnx_file.stat().st_mtime_ns == before


@pytest.fixture(scope="module")
def max_pooled(tmp_path_factory, packaged):
    """The packaged MiniLM set to max pooling, which the ONNX encoder does not implement."""
    folder = tmp_path_factory.mktemp("max-pooled")
    for item in packaged.folder.iterdir():
        if item.name != "1_Pooling":
            (folder / item.name).symlink_to(item)  # the weights are shared, not copied
    (folder / "1_Pooling").mkdir()
    config = json.loads((packaged.folder / "1_Pooling" / "config.json").read_text())
    assert config["pooling_mode_mean_tokens"] is True
    config.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config))
    return folder


def test_unsupported_pooling_stays_on_pytorch(max_pooled, backends, tmp_path, caplog):
    from sentence_transformers import SentenceTransformer

    onnx_file = tmp_path / "encoder.onnx"
    odd = SentenceTransformerEmbedder(max_pooled, "max-pooled", onnx_path=onnx_file)
    with caplog.at_level(logging.INFO, logger="retriever.embedder"):
        odd.warm_up()
    assert pooling_mode(odd.model) is None
    assert odd._onnx is None, "no ONNX session for a pooling it cannot reproduce"
    assert not onnx_file.exists(), "nor an exported file"
    assert any("staying on PyTorch" in r.getMessage() for r in caplog.records)
    # The vectors are still right: the max-pooled ones, as sentence-transformers makes them.
    vectors = odd.embed_passages(TEXTS)
    reference = SentenceTransformer(str(max_pooled), device="cpu", local_files_only=True)
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    np.testing.assert_allclose(odd.embed_query(TEXTS[0]), expected[0], atol=1e-5)
    mean_pooled = backends["torch"].embed_passages(TEXTS)
    assert (vectors * mean_pooled).sum(axis=1).max() < 0.99, "not the mean-pooled vectors"


def test_pooling_mode_reads_the_model_s_pooling(backends):
    assert pooling_mode(backends["torch"].model) == "mean"
    assert pooling_mode([object()]) is None  # no Pooling module at all


def test_length_batches_keep_long_texts_away_from_short_ones():
    lengths = [10, 150, 40, 35, 12, 9, 30]
    batches = length_batches(lengths, batch_size=3)
    # Longest first; a row joins a batch while twice its length reaches the batch's first.
    assert batches == [[1], [2, 3, 6], [4, 0, 5]]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
