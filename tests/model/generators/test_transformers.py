"""The generator's device choices (unit) and the real SmolLM2 (integration)."""

import pytest

from lectern.device import DeviceCaps, plan
from model.generators.sampling import Sampling
from model.generators.transformers import TransformersGenerator


def test_cpu_load_uses_sdpa_and_the_planned_dtype():
    import torch

    kw = TransformersGenerator("/nowhere", plan(DeviceCaps())).load_kwargs()
    assert kw == {"dtype": torch.float32, "attn_implementation": "sdpa"}


def test_gpu_load_asks_for_int8_and_flash_attention():
    caps = DeviceCaps(cuda_devices=1, cuda_bf16=True, bitsandbytes=True, flash_attn=True)
    kw = TransformersGenerator("/nowhere", plan(caps)).load_kwargs()
    assert kw["attn_implementation"] == "flash_attention_2"
    assert kw["device_map"] == "auto"
    assert kw["quantization_config"].load_in_8bit


def test_sampling_arguments():
    assert Sampling().kwargs() == {
        "max_new_tokens": 64,
        "repetition_penalty": 1.1,
        "do_sample": False,
    }
    s = Sampling(do_sample=True, temperature=0.3, top_p=0.8).kwargs()
    assert (s["do_sample"], s["temperature"], s["top_p"]) == (True, 0.3, 0.8)


def test_constructor_validates():
    with pytest.raises(ValueError, match="max_input_tokens must be at least 16, got 4"):
        TransformersGenerator("/x", plan(DeviceCaps()), max_input_tokens=4)


def test_more_samples_than_the_scheduler_ever_admits_are_refused_before_any_work():
    gen = TransformersGenerator("/x", plan(DeviceCaps()), max_batch=2, max_waiting=3)
    msgs = [{"role": "user", "content": "Hi"}]
    with pytest.raises(ValueError, match=r"n \(6\) is over max_batch \+ max_waiting \(5\)"):
        gen.samples(msgs, 6)
    with pytest.raises(ValueError, match="n must be at least 1, got 0"):
        gen.samples(msgs, 0)


@pytest.mark.integration
def test_real_smollm2_greedy_generation_and_streaming():
    from lectern.settings import Settings
    from model.prepare import generator
    from tests.conftest import MODEL_CACHE

    prepared = generator(Settings(models={"cache_dir": MODEL_CACHE}), convert_gguf=True)
    gen = TransformersGenerator(prepared.load_from, plan(DeviceCaps()), Sampling(max_new_tokens=12))
    gen.warm_up()
    gen.warm_up()  # idempotent
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    pieces = list(gen.stream(msgs))
    assert len(pieces) > 1
    assert "Paris" in "".join(pieces)
    assert gen.generate(msgs) == "".join(pieces)  # greedy: reproducible


@pytest.mark.integration
def test_system_prompt_kv_cache_gives_the_uncached_answer():
    from lectern.settings import Settings
    from model.prepare import generator
    from tests.conftest import MODEL_CACHE

    prepared = generator(Settings(models={"cache_dir": MODEL_CACHE}), convert_gguf=True)
    # fp32 without int8: dynamic quantisation scales activations per call, so only the
    # unquantised model must give token-for-token the same answer with and without cache.
    gen = TransformersGenerator(prepared.load_from, plan(DeviceCaps()), Sampling(max_new_tokens=16))
    gen.warm_up()
    msgs = [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    gen.prefix_caching = False
    plain = gen.generate(msgs)
    assert gen._prefix is None
    gen.prefix_caching = True
    cached = gen.generate(msgs)
    ids, shared = gen._prompt(msgs)
    assert 0 < shared < len(ids)
    assert gen._prefix is not None and gen._prefix[0] == tuple(ids[:shared])
    assert cached == plain and "Paris" in cached
    # No system turn: nothing to reuse. Another system prompt: its own prefix replaces it.
    assert gen._prompt(msgs[1:])[1] == 0
    other = [{"role": "system", "content": "Be brief."}, msgs[1]]
    other_ids, other_shared = gen._prompt(other)
    gen.generate(other)
    assert gen._prefix[0] == tuple(other_ids[:other_shared])
    # Input cut from the left no longer starts with the system turn.
    gen.max_input_tokens = len(other_ids) - 3
    assert gen._prompt(other) == (other_ids[3:], 0)
    gen.close()
