"""`lectern models` (prepare everything) and `lectern models export-gguf` (the adapter
merged into the GGUF generator), with the export itself replaced by a recorder."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from model import prepare
from tests.conftest import MODEL_CACHE


@pytest.fixture
def exports(monkeypatch, tmp_path) -> list[tuple[Path, Path, str]]:
    made: list[tuple[Path, Path, str]] = []

    def exported(base: Path, adapter: Path, quant: str, cache_dir: Path, hf: Path,
                 base_sha: str | None) -> Path:
        made.append((base, adapter, quant))
        return tmp_path / f"{quant}.gguf"

    monkeypatch.setattr(prepare.gguf_export, "exported", exported)
    monkeypatch.setenv("LECTERN_MODELS__CACHE_DIR", str(MODEL_CACHE))
    return made


def test_export_gguf_merges_the_configured_adapter_at_the_quantisation_asked(exports, tmp_path):
    result = CliRunner().invoke(app, ["models", "export-gguf", "--quant", "q4_0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "q4_0.gguf")
    assert [(a, q) for _, a, q in exports] == [(prepare.SHIPPED_ADAPTER, "q4_0")]


def test_export_gguf_refuses_a_bad_quantisation_and_no_adapter(exports, monkeypatch):
    bad = CliRunner().invoke(app, ["models", "export-gguf", "--quant", "q3"])
    assert bad.exit_code == 2 and "q3" in bad.output
    none = CliRunner().invoke(app, ["models", "export-gguf", "--adapter", "none"])
    assert none.exit_code == 2 and "no adapter to merge" in none.output
    assert not exports


def test_models_alone_prepares_and_with_llamacpp_lists_the_served_gguf(exports, monkeypatch):
    monkeypatch.setenv("LECTERN_MODELS__GENERATOR_BACKEND", "llamacpp")
    result = CliRunner().invoke(app, ["models", "--no-install"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["encoder", "generator", "adapter", "gguf",
                                                   "backend"]
    assert "q8_0.gguf" in lines[3]  # models.gguf_quant's default
    assert "sha256" in lines[1]  # the base's, checked
    assert "sha256" not in lines[3]  # an export is not that file
    assert lines[4].split()[1] == "llamacpp"
