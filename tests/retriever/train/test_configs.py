"""The training configs: light to import, and the one source of the command line's defaults."""

import dataclasses
import subprocess
import sys

import pytest
import typer.main

from api.cli_train import default, train_app
from retriever.train.encoder_config import CorpusTuning, TuningConfig
from retriever.train.reranker_config import TrainConfig

HEAVY = ("torch", "transformers", "sentence_transformers", "onnxruntime", "numpy")


@pytest.mark.parametrize("module", [
    "retriever.train.reranker_config", "retriever.train.encoder_config", "api.cli_train",
])
def test_the_configs_and_the_command_line_import_nothing_heavy(module):
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def _with_defaults(config):
    return {f.name for f in dataclasses.fields(config)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}


def _command(name):
    return typer.main.get_command(train_app).commands[name]


# Option -> (config class, field), where the command line's name is not the field's.
RENAMED = {
    "encoder": {"batch_size": (CorpusTuning, "generation_batch"),
                "train_batch_size": (TuningConfig, "batch_size"),
                "holdout": (TuningConfig, "holdout_share")},
    "reranker": {},
}


@pytest.mark.parametrize(("command", "configs"), [
    ("encoder", (CorpusTuning, TuningConfig)), ("reranker", (TrainConfig,)),
])
def test_every_option_named_like_a_config_field_defaults_to_it(command, configs):
    checked = 0
    for param in _command(command).params:
        where = RENAMED[command].get(param.name) or next(
            ((c, param.name) for c in configs if param.name in _with_defaults(c)), None
        )
        if where is None:  # a setting of the command itself, or a required field (--out)
            continue
        expected = default(*where)
        if param.name == "sources":
            expected = ",".join(expected)
        assert param.default == expected, param.name
        checked += 1
    assert checked == (13 if command == "encoder" else 19)


def test_the_reranker_learning_rate_keeps_lr_as_an_alias():
    command = _command("reranker")
    for flag in ("--learning-rate", "--lr"):
        assert command.make_context("reranker", [flag, "0.001"]).params["learning_rate"] == 0.001


def test_default_names_what_it_cannot_find():
    assert default(CorpusTuning, "config") == TuningConfig()
    with pytest.raises(ValueError, match="TrainConfig.data_dir has no default"):
        default(TrainConfig, "data_dir")
    with pytest.raises(ValueError, match="TrainConfig has no field 'lr'"):
        default(TrainConfig, "lr")
