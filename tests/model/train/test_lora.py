import json

import pytest

from lectern.device import DeviceCaps
from lectern.errors import ConfigError
from model.train.lora import LoraTrainer, Row, batch_loss, batch_order, tokenize
from model.train.lora_config import DataCounts, LoraTrainConfig, default_targets
from model.train.precision import train_precision
from tests.model.tiny import save_tiny

SYSTEM = {"role": "system", "content": "You answer questions using only the passages."}


def example(i: int) -> tuple[list[dict[str, str]], str]:
    q = ["When are fees due?", "Where did the observatory move?"][i % 2]
    a = ["1 October [2]", "Kelso Hill [1]"][i % 2]
    return [SYSTEM, {"role": "user", "content": f"Passages: [1] Kelso Hill. [2] 1 October.\n"
                                                  f"Question: {q}"}], a


DATA = DataCounts(train={"x": {"answer": 8}}, heldout={"x": {"answer": 2}},
                  unanswerable_share=0.0, budgets=[64], passages=2, split_rule="test")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"), initializer_range=0.5)


def trainer(tiny, out, **overrides):
    config = LoraTrainConfig(**{"rank": 4, "alpha": 8, "dropout": 0.1, "learning_rate": 1e-2,
                                "batch_size": 2, "eval_every": 4, "checkpoint_every": 2,
                                "eval_examples": 2, **overrides})
    return LoraTrainer(tiny, "tiny", config, train_precision(DeviceCaps(), "cpu", dtype="float32"),
                       out, log=lambda _: None)


def lora_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_default_targets_per_architecture():
    assert default_targets("llama", mlp=False) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert default_targets("llama", mlp=True)[-3:] == ["gate_proj", "up_proj", "down_proj"]
    assert default_targets("falcon", mlp=False) == ["query_key_value", "dense"]
    assert default_targets("falcon", mlp=True) == [
        "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]
    with pytest.raises(ConfigError, match="gpt2"):
        default_targets("gpt2", mlp=False)


@pytest.mark.parametrize("arch", ["llama", "falcon"])
def test_the_default_targets_exist_in_each_architecture(tmp_path, arch):
    import peft
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(save_tiny(tmp_path / arch, arch))
    targets = default_targets(base.config.model_type, mlp=True)
    model = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=targets))
    adapted = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert adapted == set(targets)


def test_the_loss_is_on_the_reply_tokens_only(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    messages, target = example(0)
    row = tokenize(tok, messages, target, max_tokens=512)
    assert tok.decode(row.ids[row.prompt:]) == target + tok.eos_token
    assert tok.decode(row.ids[:row.prompt]).endswith("<|im_start|>assistant")
    model = AutoModelForCausalLM.from_pretrained(tiny)
    # A different prompt with the same reply changes the loss; the prompt's own tokens
    # are not scored, so a padded batch scores each row as alone.
    other = Row(row.ids[:3] + row.ids[row.prompt:], 3)
    alone = float(batch_loss(model, [row], tok.pad_token_id))
    with_other = float(batch_loss(model, [row, row], tok.pad_token_id))
    assert with_other == pytest.approx(alone, rel=1e-4)
    assert float(batch_loss(model, [other], tok.pad_token_id)) != pytest.approx(alone, rel=1e-3)
    import torch

    labels = torch.tensor([row.ids]).clone()
    labels[0, :row.prompt] = -100
    hf = model(input_ids=torch.tensor([row.ids]), labels=labels).loss
    assert alone == pytest.approx(float(hf), rel=1e-4)


def test_a_long_prompt_is_cut_from_the_left_and_keeps_its_reply(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    messages, target = example(1)
    row = tokenize(tok, messages, target, max_tokens=12)
    assert len(row.ids) == 12 and tok.decode(row.ids[row.prompt:]).startswith(target)


def test_batches_are_seeded_and_cover_every_example_once():
    rows = [Row(list(range(n)), 1) for n in range(2, 40)]
    a, b = batch_order(rows, 4, seed=1), batch_order(rows, 4, seed=1)
    assert a == b and a != batch_order(rows, 4, seed=2)
    assert sorted(i for batch in a for i in batch) == list(range(len(rows)))


def test_a_few_lora_steps_lower_the_held_out_loss_and_save_an_adapter(tiny, tmp_path):
    out = tmp_path / "adapter"
    data = [example(i) for i in range(16)]
    record = trainer(tiny, out, epochs=3, learning_rate=2e-2).train(
        data, data[:2], DATA, command="lectern x")
    assert record.steps == 24 and record.examples_seen == 48
    assert record.heldout[0].step == 0  # the base's loss, before any step
    assert record.heldout[-1].loss < record.heldout[0].loss * 0.8
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    assert (out / "loss.png").stat().st_size > 1000
    saved = json.loads((out / "training-record.json").read_text())
    assert saved["version"] == 1 and saved["command"] == "lectern x"
    assert saved["targets"] == default_targets("llama", mlp=True)
    assert any(float(w.abs().sum()) > 0 for k, w in lora_weights(out).items() if "lora_B" in k)


def test_resuming_from_a_checkpoint_gives_the_same_adapter(tiny, tmp_path):
    import torch

    data = [example(i) for i in range(12)]
    straight = tmp_path / "straight"
    trainer(tiny, straight).train(data, data[:2], DATA)
    # Stop after the step-2 checkpoint (as a crash would), then resume.
    resumed = tmp_path / "resumed"
    first = trainer(tiny, resumed)
    with pytest.raises(KeyboardInterrupt):
        original = first._save_checkpoint

        def stop(*args, **kwargs):
            original(*args, **kwargs)
            raise KeyboardInterrupt

        first._save_checkpoint = stop
        first.train(data, data[:2], DATA)
    assert not resumed.exists() and (tmp_path / "resumed.checkpoint" / "trainer.pt").is_file()
    record = trainer(tiny, resumed).train(data, data[:2], DATA, resume=True)
    assert record.resumed_from_step == 2 and record.steps == 6
    assert not (tmp_path / "resumed.checkpoint").exists()  # finished: nothing to resume
    a, b = lora_weights(straight), lora_weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
