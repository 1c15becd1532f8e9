"""LoRA adapters in the transformers generator, on a tiny random LLaMA: merged at load (the
logits peft's unmerged model gives, before int8), refused with what differs when they do
not fit the base, and listed from the model folder."""

import json

import pytest

from lectern.device import DeviceCaps, plan
from lectern.errors import AdapterMismatchError, MissingExtraError
from lectern.settings import Settings
from model import lora_merge, prepare
from model.generators import adapters
from model.generators.transformers import TransformersGenerator, _quantize_dynamic
from tests.model.generators.tiny_lora import lora_adapter, reshaped
from tests.model.tiny import save_tiny

IDS = [[5, 17, 40, 2, 9, 33, 71, 12]]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("base") / "llama")


@pytest.fixture(scope="module")
def adapter(base, tmp_path_factory):
    return lora_adapter(base, tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def wide_adapter(base, tmp_path_factory):
    """An adapter made for a base with another hidden size (48, not 32)."""
    wide = reshaped(base, tmp_path_factory.mktemp("wide") / "base", hidden_size=48)
    return lora_adapter(wide, tmp_path_factory.mktemp("wide-adapter"))


def logits(model):
    import torch

    with torch.inference_mode():
        return model(torch.tensor(IDS)).logits


def loaded(base, adapter=None, cpu_int8=False):
    gen = TransformersGenerator(base, plan(DeviceCaps(), cpu_int8=cpu_int8), adapter=adapter)
    gen.warm_up()
    return gen


def peft_model(base, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter))


def copy_adapter(adapter, tmp_path):
    import shutil

    return shutil.copytree(adapter, tmp_path / "copy")


def refusal(base, adapter):
    gen = TransformersGenerator(base, plan(DeviceCaps()), adapter=adapter)
    with pytest.raises(AdapterMismatchError) as refused:
        gen.warm_up()
    assert gen._scheduler is None  # nothing serves a refused adapter
    message = str(refused.value)
    assert str(adapter) in message and str(base) in message, message
    return message


def test_the_merged_adapter_gives_peft_logits_and_not_the_base_ones(base, adapter):
    import torch

    tuned, plain = loaded(base, adapter), loaded(base)
    try:
        expected = logits(peft_model(base, adapter).eval())  # LoRA applied, not merged
        got = logits(tuned._model)
        assert not torch.allclose(got, logits(plain._model), atol=1e-3)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        # Merged: plain Linear layers, serving as fast as the base.
        assert not [n for n, _ in tuned._model.named_modules() if "lora" in n]
        assert tuned.generate([{"role": "user", "content": "Where?"}]) is not None
    finally:
        tuned.close()
        plain.close()


def test_int8_quantises_the_merged_weights(base, adapter):
    import torch

    gen = loaded(base, adapter, cpu_int8=True)
    try:
        merged_then_int8 = _quantize_dynamic(peft_model(base, adapter).merge_and_unload()).eval()
        torch.testing.assert_close(logits(gen._model), logits(merged_then_int8))
    finally:
        gen.close()


def test_an_adapter_for_another_hidden_size_is_refused(base, wide_adapter):
    message = refusal(base, wide_adapter)
    assert "q_proj takes 32 inputs in the base, the adapter's lora_A 48" in message


def test_peft_size_errors_are_rephrased(base, tmp_path):
    wide = reshaped(base, tmp_path / "wide", hidden_size=48)
    pickled = lora_adapter(wide, tmp_path / "pickled", safe=False)  # no header to pre-check
    message = refusal(base, pickled)
    assert "peft could not load it" in message and "size mismatch" in message


def test_target_modules_the_base_lacks_are_refused(base, adapter, tmp_path):
    folder = copy_adapter(adapter, tmp_path)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["target_modules"] = ["query_key_value", "dense"]  # a Falcon adapter
    (folder / "adapter_config.json").write_text(json.dumps(config))
    message = refusal(base, folder)
    assert "target modules dense, query_key_value are absent from the base" in message
    assert "q_proj" in message  # ... and what the base has instead


def test_weights_for_a_module_the_base_lacks_are_refused(base, adapter, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = copy_adapter(adapter, tmp_path)
    weights = load_file(folder / "adapter_model.safetensors")
    renamed = {k.replace("layers.1.self_attn.v_proj", "layers.1.self_attn.qkv_proj"): v
               for k, v in weights.items()}
    save_file(renamed, folder / "adapter_model.safetensors")
    message = refusal(base, folder)
    assert "it adapts model.layers.1.self_attn.qkv_proj, which the base does not have" in message


def test_another_vocabulary_is_refused(base, tmp_path):
    other = reshaped(base, tmp_path / "other", vocab_size=320)
    folder = lora_adapter(other, tmp_path / "lm-head", modules_to_save=("lm_head",))
    message = refusal(base, folder)
    vocab = json.loads((base / "config.json").read_text())["vocab_size"]
    assert f"lm_head.weight has a vocabulary of 320 tokens, the base has {vocab}" in message


def test_the_training_record_s_vocabulary_and_architecture_are_checked(base, adapter, tmp_path):
    folder = copy_adapter(adapter, tmp_path)
    (folder / lora_merge.RECORD).write_text(json.dumps({"model_type": "llama", "vocab_size": 7}))
    assert "trained with a vocabulary of 7 tokens" in refusal(base, folder)
    (folder / lora_merge.RECORD).write_text(json.dumps({"model_type": "falcon"}))
    assert "trained on a falcon model, the base is llama" in refusal(base, folder)


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (None, "it has no adapter_config.json: not a peft adapter"),
        ("{not json", "its adapter_config.json is not JSON"),
        ("[1, 2]", "its adapter_config.json is not a JSON object"),
        ('{"peft_type": "IA3"}', "peft_type is 'IA3'; only LORA adapters are served"),
    ],
)
def test_a_missing_or_invalid_config_is_refused(base, adapter, tmp_path, config, reason):
    folder = copy_adapter(adapter, tmp_path)
    path = folder / "adapter_config.json"
    path.unlink() if config is None else path.write_text(config)
    assert reason in refusal(base, folder)


def test_missing_weights_are_refused(base, adapter, tmp_path):
    folder = copy_adapter(adapter, tmp_path)
    (folder / "adapter_model.safetensors").unlink()
    assert "it has no adapter_model.safetensors" in refusal(base, folder)


def test_without_peft_the_error_names_the_model_extra(base, adapter, monkeypatch):
    import sys

    from transformers import AutoModelForCausalLM

    monkeypatch.setitem(sys.modules, "peft", None)  # import peft now fails
    model = AutoModelForCausalLM.from_pretrained(base)
    with pytest.raises(MissingExtraError, match=r"pip install 'lectern\[model\]'"):
        lora_merge.merged(model, adapter, base)


def test_build_hands_the_generator_the_adapter_the_settings_name(base, adapter):
    from model import generators

    def built(ref):
        settings = Settings(models={"generator": str(base), "adapter": ref})
        return generators.build(settings, plan(DeviceCaps()))

    assert built(str(adapter)).adapter == adapter.resolve()
    assert built("none").adapter is None


# -- listing -----------------------------------------------------------------------------


@pytest.fixture
def shipped(tmp_path, monkeypatch, adapter):
    folder = copy_adapter(adapter, tmp_path / "shipped")
    monkeypatch.setattr(prepare, "SHIPPED_ADAPTER", folder)
    return folder


def trained(settings, name, source):
    import shutil

    folder = prepare.adapters_dir(settings) / name
    shutil.copytree(source, folder)
    return folder


def test_the_shipped_configured_and_trained_adapters_are_listed_once(
    shipped, adapter, tmp_path
):
    settings = Settings(data_dir=tmp_path / "data")
    v1 = trained(settings, "v1", adapter)
    (v1 / lora_merge.RECORD).write_text(json.dumps(
        {"steps": 40, "seconds": 61.5, "heldout_replies": {"f1": 41.0}, "data": {"a": {"b": 1}},
         "targets": ["q_proj"]}
    ))
    (prepare.adapters_dir(settings) / "notes").mkdir()  # no adapter_config.json: not listed
    listed = adapters.available(settings, active=v1)
    assert [(a.name, a.path, a.active) for a in listed] == [
        ("shipped", shipped, False), ("v1", v1, True)
    ]
    # The record's flat figures only.
    assert listed[1].record == {"steps": 40, "seconds": 61.5, "heldout_replies": {"f1": 41.0}}
    assert listed[0].record is None
    # An adapter configured elsewhere is listed as "configured"; one in the folder by its name.
    listed = adapters.available(settings, active=adapter, configured=adapter)
    assert [(a.name, a.active) for a in listed] == [
        ("shipped", False), ("v1", False), ("configured", True)
    ]
    listed = adapters.available(settings, active=None, configured=v1)
    assert [a.name for a in listed] == ["shipped", "v1"]


def test_the_shipped_adapter_is_only_for_the_default_generator(shipped, base, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", models={"generator": str(base)})
    assert adapters.available(settings, active=None) == []
    assert prepare.adapter(settings) is None


def test_reserved_names_and_unreadable_records_are_not_fatal(shipped, adapter, tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    trained(settings, "shipped", adapter)  # would shadow the shipped one
    broken = trained(settings, "v2", adapter)
    (broken / lora_merge.RECORD).write_text("{")
    listed = adapters.available(settings, active=None)
    assert [(a.name, a.path) for a in listed] == [("shipped", shipped), ("v2", broken)]
    assert listed[1].record is None
