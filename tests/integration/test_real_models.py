"""The real packaged models, end to end: GGUF conversion, the MiniLM encoder, the CLI."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from lectern.settings import Settings
from tests.conftest import MODEL_CACHE, SAMPLES

pytestmark = pytest.mark.integration
QUERIES = [json.loads(line) for line in (SAMPLES.parent / "queries.jsonl").read_text().splitlines()]


def test_gguf_generator_converts_once_and_loads():
    from transformers import AutoConfig

    from model.gguf_cache import is_converted
    from model.prepare import generator

    settings = Settings(models={"cache_dir": MODEL_CACHE})
    prepared = generator(settings, convert_gguf=True)
    assert is_converted(prepared.load_from)
    assert (prepared.load_from / "model.safetensors").is_file()
    config = AutoConfig.from_pretrained(prepared.load_from)
    assert config.model_type == "llama"
    assert getattr(config, "quantization_config", None) is None
    again = generator(settings, convert_gguf=False)
    assert again.load_from == prepared.load_from


@pytest.fixture(scope="module")
def sample_service(tmp_path_factory):
    from api.service import Lectern

    svc = Lectern(Settings(data_dir=tmp_path_factory.mktemp("data")))
    report = svc.ingest([SAMPLES])
    assert not report.failed, report.failed
    assert report.truncated == 0, "the chunker keeps every chunk inside the encoder's window"
    yield svc
    svc.store.close()


def test_real_encoder_properties(sample_service):
    emb = sample_service.embedder
    assert emb.dimension == 384
    v = emb.embed_query("tuition fee")
    assert v.shape == (384,) and abs(float((v * v).sum()) - 1) < 1e-4
    assert all(
        emb.passage_overhead + emb.count_tokens(c.model_text) <= emb.max_tokens
        for c in sample_service.store.all_chunks()
    )


@pytest.mark.parametrize(
    "q",
    [
        q
        for q in QUERIES
        if any(k in q["query"] for k in ("CSC", "BIO", "DSC", "MAT", "fee", "pay"))
    ],
    ids=lambda q: q["query"],
)
def test_course_code_and_fee_questions_rank_the_right_chunk_first(sample_service, q):
    top = sample_service.search(q["query"], top_k=5)[0].chunk
    assert top.source.endswith(q["source"])
    assert q["expect"] in " ".join(top.text.split())


def test_every_sample_question_in_the_top_five(sample_service):
    misses = []
    for q in QUERIES:
        hits = sample_service.search(q["query"], top_k=5)
        if not any(
            h.chunk.source.endswith(q["source"]) and q["expect"] in " ".join(h.chunk.text.split())
            for h in hits
        ):
            misses.append(q["query"])
    assert misses == []


def test_cli_ingest_search_list_delete(tmp_path, monkeypatch):
    from api.cli import app

    monkeypatch.setenv("LECTERN_DATA_DIR", str(tmp_path / "data"))
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLES / "html", docs)
    (docs / "notes.pptx").write_bytes(b"x")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(docs)])
    assert result.exit_code == 0, result.output  # folders skip unsupported files
    assert "6 added" in result.output and "0 failed" in result.output
    assert "0 chunks longer than the encoder reads" in result.output
    bad = runner.invoke(app, ["ingest", str(docs / "notes.pptx"), str(docs / "ba-history.html")])
    assert bad.exit_code == 1 and "unsupported file type '.pptx'" in bad.output
    assert "1 unchanged" in bad.output
    found = runner.invoke(
        app, ["search", "What are the prerequisites for CSC 340?", "--top-k", "2"]
    )
    assert found.exit_code == 0
    first = found.output.splitlines()[0]
    assert first.startswith("1. [") and "bsc-computer-science.html" in first
    listed = runner.invoke(app, ["documents", "list"])
    assert "6 documents" in listed.output
    gone = runner.invoke(app, ["documents", "delete", str(docs / "bsc-computer-science.html")])
    assert gone.exit_code == 0 and "deleted" in gone.output
    after = runner.invoke(app, ["search", "CSC 340 Machine Learning", "--top-k", "5"])
    assert "bsc-computer-science.html" not in after.output
