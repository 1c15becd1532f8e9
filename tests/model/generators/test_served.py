"""ServedGenerator over fake generators: the configured adapter at start-up or, refused, the
base model; switching by name; a refused switch changes nothing."""

import json
import logging

import pytest

from lectern.errors import AdapterMismatchError, AdapterNotFoundError, MissingExtraError
from lectern.settings import Settings
from lectern.types import Usage
from model import prepare
from model.generators.served import ServedGenerator
from tests.fakes import AdapterGenerator, CountingEchoGenerator, EchoGenerator

Q = [{"role": "user", "content": "?"}]


def adapter_folder(path, made_for="fake-base"):
    path.mkdir(parents=True)
    config = {"peft_type": "LORA", "base_model_name_or_path": made_for}
    (path / prepare.ADAPTER_CONFIG).write_text(json.dumps(config))
    return path


@pytest.fixture(autouse=True)
def no_shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "SHIPPED_ADAPTER", tmp_path / "none-shipped")


class Builds:
    """The `build` a ServedGenerator takes, keeping what it built."""

    def __init__(self) -> None:
        self.built: list[AdapterGenerator] = []

    def __call__(self, settings: Settings) -> AdapterGenerator:
        self.built.append(AdapterGenerator(settings))
        return self.built[-1]


def served(tmp_path, adapter=None):
    settings = Settings(data_dir=tmp_path / "data", models={"adapter": adapter})
    builds = Builds()
    return ServedGenerator(settings, builds), builds, settings


def test_the_configured_adapter_serves(tmp_path):
    mine = adapter_folder(tmp_path / "mine")
    gen, builds, _ = served(tmp_path, str(mine))
    gen.warm_up()
    gen.warm_up()
    assert len(builds.built) == 1 and gen.generate(Q) == "Adapter mine [1]."
    assert gen.adapter == mine.resolve() and gen.refused is None
    assert [(a.name, a.active) for a in gen.adapters()] == [("configured", True)]


def test_a_mismatching_adapter_at_start_up_is_logged_and_the_base_serves(tmp_path, caplog):
    wrong = adapter_folder(tmp_path / "wrong", made_for="another-model")
    gen, builds, _ = served(tmp_path, str(wrong))
    with caplog.at_level(logging.ERROR, logger="model.generators.served"):
        gen.warm_up()
    assert gen.ready and gen.generate(Q) == "Adapter base [1]."
    assert gen.adapter is None
    assert "it was made for another-model" in gen.refused
    assert builds.built[0].closed == 1  # the refused one let go
    [record] = caplog.records
    assert "refused, serving the base model" in record.getMessage()
    assert str(wrong) in record.getMessage()


def test_an_adapter_that_cannot_be_found_at_start_up_leaves_the_base_serving(tmp_path):
    gen, builds, _ = served(tmp_path, str(tmp_path / "gone"))
    gen.warm_up()
    assert gen.generate(Q) == "Adapter base [1]." and len(builds.built) == 1
    assert "could not be found" in gen.refused


def test_a_base_model_that_cannot_load_is_not_hidden(tmp_path):
    def build(settings):
        raise MissingExtraError("transformers", "pip install 'lectern[model]'")

    gen = ServedGenerator(Settings(data_dir=tmp_path), build)
    with pytest.raises(MissingExtraError):
        gen.warm_up()
    assert not gen.ready


def test_switching_serves_the_named_adapter_and_null_the_base(tmp_path):
    gen, builds, settings = served(tmp_path)
    v1 = adapter_folder(prepare.adapters_dir(settings) / "v1")
    gen.warm_up()
    assert gen.generate(Q) == "Adapter base [1]."
    active = gen.use("v1")
    assert active.name == "v1" and active.path == v1 and active.active
    assert gen.generate(Q) == "Adapter v1 [1]." and builds.built[0].closed == 1
    assert gen.use("v1").name == "v1" and len(builds.built) == 2  # already serving: no rebuild
    assert gen.use(None) is None and gen.generate(Q) == "Adapter base [1]."


def test_an_unknown_or_mismatching_adapter_leaves_the_serving_one(tmp_path):
    gen, builds, settings = served(tmp_path)
    adapter_folder(prepare.adapters_dir(settings) / "v1")
    adapter_folder(prepare.adapters_dir(settings) / "other", made_for="another-model")
    gen.warm_up()
    with pytest.raises(AdapterNotFoundError, match=r"no adapter named 'v9'; available: 'other'"):
        gen.use("v9")
    with pytest.raises(AdapterMismatchError, match="it was made for another-model"):
        gen.use("other")
    serving = builds.built[0]
    assert gen.current is serving and serving.closed == 0 and builds.built[1].closed == 1
    assert gen.generate(Q) == "Adapter base [1]."


def test_a_switch_before_start_up_loads_that_adapter(tmp_path):
    gen, builds, settings = served(tmp_path)
    adapter_folder(prepare.adapters_dir(settings) / "v1")
    gen.use("v1")
    assert gen.ready and gen.generate(Q) == "Adapter v1 [1]."
    gen.warm_up()
    assert len(builds.built) == 1


def test_usage_is_counted_by_the_serving_generator_or_not_at_all(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    counting = ServedGenerator(settings, Builds(), CountingEchoGenerator("x"))
    counting.warm_up()
    prompt = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Why?"}]
    assert counting.usage(prompt, "Because it is so [1].") == Usage(3, 5)
    plain = ServedGenerator(settings, Builds(), EchoGenerator("x"))  # no tokenizer to count with
    plain.warm_up()
    assert plain.usage(prompt, "Because.") is None
