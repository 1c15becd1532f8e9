"""The GGUF export: a tiny llama merged with a random LoRA, written by model.gguf_export and
read by llama.cpp, gives the merged transformers model's logits."""

from pathlib import Path

import numpy as np
import pytest

from lectern.errors import AdapterMismatchError, ConfigError
from lectern.settings import Settings
from model import gguf_export, prepare
from model.registry import sha256_file
from tests.conftest import MODEL_CACHE
from tests.model.generators.tiny_lora import lora_adapter

pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IDS = [1, 504, 3458, 314, 4649, 28, 253, 3458, 282, 10332, 314]


def _packaged_gguf() -> Path:
    model = prepare.generator(Settings(models={"cache_dir": MODEL_CACHE})).model
    return model.folder / model.file


def _tiny_llama(folder: Path) -> Path:
    """A random 2-layer llama with the packaged GGUF's vocabulary size, rope 1e5 and GQA
    (4 query heads, 2 key/value heads), saved for transformers."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rope_theta=100000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=True, max_position_embeddings=256,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # large enough weights that a wrong permutation shows in logits
        for p in model.parameters():
            p.normal_(0, 0.2)
    model.save_pretrained(folder)
    return folder


def _as_gguf(hf: Path, out: Path) -> Path:
    """`hf` written as an F32 llama GGUF the way llama.cpp's converter writes one (q and k
    permuted), with the packaged file's tokenizer."""
    import torch
    from safetensors.torch import load_file

    reader = gguf.GGUFReader(_packaged_gguf())
    writer = gguf.GGUFWriter(out, "llama")
    dims = {"llama.block_count": 2, "llama.embedding_length": 64,
            "llama.feed_forward_length": 128, "llama.attention.head_count": 4,
            "llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 16,
            "llama.context_length": 256}
    for field in reader.fields.values():
        if field.name.startswith(("GGUF.", "general.")) or field.name in dims:
            continue
        sub = field.types[1] if len(field.types) > 1 else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub)
    for key, value in dims.items():
        writer.add_uint32(key, value)
    writer.add_file_type(0)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
    for name, weight in load_file(hf / "model.safetensors").items():
        if name == "lm_head.weight":
            continue  # tied: llama.cpp reads token_embd
        stem, _, kind = name.rpartition(".")
        mapped = names.get_name(stem)
        w = weight.to(torch.float32).numpy()
        if mapped.endswith("attn_q"):
            w = gguf_export._permute(w, 4)
        elif mapped.endswith("attn_k"):
            w = gguf_export._permute(w, 2)
        writer.add_tensor(f"{mapped}.{kind}", np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _llama_logits(path: Path) -> np.ndarray:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=64, logits_all=True, n_threads=2, verbose=False)
    llm.eval(IDS)
    return np.array(llm.scores[: len(IDS)])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("export")
    hf = _tiny_llama(root / "hf")
    return hf, _as_gguf(hf, root / "tiny.gguf"), lora_adapter(hf, root / "lora", targets=TARGETS)


@pytest.mark.integration
def test_the_merged_gguf_gives_the_merged_models_logits(tiny, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from model.lora_merge import merged

    hf, base, adapter = tiny
    model = merged(AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32), adapter, hf)
    with torch.no_grad():
        want = model(torch.tensor([IDS])).logits[0].numpy()
    scale = np.abs(want).max()

    assert np.abs(_llama_logits(base) - want).max() > 0.1 * scale  # the adapter matters
    path = gguf_export.exported(base, adapter, "f32", tmp_path, hf)
    assert np.abs(_llama_logits(path) - want).max() < 1e-3 * scale

    made = path.stat().st_mtime_ns
    assert gguf_export.exported(base, adapter, "f32", tmp_path, hf) == path  # cached
    assert path.stat().st_mtime_ns == made
    q8 = gguf_export.exported(base, adapter, "q8_0", tmp_path, hf)
    assert q8 != path and q8.stat().st_size < path.stat().st_size / 2
    assert (_llama_logits(q8).argmax(-1) == want.argmax(-1)).mean() >= 0.8


def test_an_unknown_quantisation_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="unknown GGUF quantisation 'q3'"):
        gguf_export.exported(tmp_path / "x.gguf", tmp_path, "q3", tmp_path, tmp_path)


def test_another_adapter_or_quantisation_is_another_file(tmp_path):
    base = tmp_path / "base.gguf"
    base.write_bytes(b"GGUF")
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, weights in ((one, b"a"), (two, b"b")):
        folder.mkdir()
        (folder / "adapter_config.json").write_text("{}")
        (folder / "adapter_model.safetensors").write_bytes(weights)
    q8 = gguf_export.export_folder(base, one, "q8_0", tmp_path)
    assert q8 == gguf_export.export_folder(base, one, "q8_0", tmp_path)
    # The sha256 the registry checked stands for the file's own.
    assert q8 == gguf_export.export_folder(base, one, "q8_0", tmp_path, sha256_file(base))
    assert q8 != gguf_export.export_folder(base, two, "q8_0", tmp_path)
    assert q8 != gguf_export.export_folder(base, one, "q4_0", tmp_path)
    (one / "abstention.json").write_text('{"threshold": 0.7}')  # calibrating writes it
    (one / "training-record.json").write_text("{}")
    assert q8 == gguf_export.export_folder(base, one, "q8_0", tmp_path)
    base.write_bytes(b"GGUF2")
    assert q8 != gguf_export.export_folder(base, one, "q8_0", tmp_path)


def test_every_quantisation_the_settings_allow_has_a_llama_cpp_type():
    from typing import get_args

    from lectern.settings import GgufQuant

    assert sorted(gguf_export._FTYPES) == sorted(get_args(GgufQuant))


def test_an_architecture_without_a_known_layout_is_refused_before_any_merge(tmp_path):
    path = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(path, "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ConfigError, match="'gpt2' GGUF .*is not supported.*transformers"):
        gguf_export.write_merged(path, {}, tmp_path / "out.gguf")
    adapter = tmp_path / "lora"
    adapter.mkdir()
    # A mismatch (the server then serves the base GGUF), found before the HF base, which
    # does not exist here, is read.
    with pytest.raises(AdapterMismatchError, match="'gpt2' GGUF"):
        gguf_export.exported(path, adapter, "q8_0", tmp_path, tmp_path / "no-such-base")
