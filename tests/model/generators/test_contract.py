"""The Generator contract, on every backend `model.generators.build` can choose."""

import pytest

from lectern.device import DeviceCaps, plan
from lectern.errors import ConfigError, NotReadyError
from lectern.protocols import Generator
from lectern.settings import GenerationSettings, Settings
from model import generators
from tests.conftest import MODEL_CACHE

BACKENDS = ["transformers", "llamacpp"]  # every backend, and auto chooses one of them
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def settings_for(backend: str, **generation: object) -> Settings:
    models = {"cache_dir": MODEL_CACHE, "generator_backend": backend, "cpu_int8": False}
    if backend in ("llamacpp", "auto"):  # it serves the GGUF file as it is
        models["adapter"] = "none"
    return Settings(models=models,
                    generation=GenerationSettings(max_new_tokens=12, **generation))


def test_the_backends_listed_are_all_the_settings_allow():
    from typing import get_args

    from lectern.settings import ModelSettings

    allowed = get_args(ModelSettings.model_fields["generator_backend"].annotation)
    assert sorted(allowed) == sorted([*BACKENDS, "auto"])


@pytest.fixture(scope="module", params=BACKENDS)
def generator(request) -> Generator:
    gen = generators.build(settings_for(request.param), plan(DeviceCaps()))
    with pytest.raises(NotReadyError):
        gen.generate(QUESTION)
    gen.warm_up()
    gen.warm_up()  # idempotent
    return gen


@pytest.mark.integration
def test_it_is_a_generator(generator):
    assert isinstance(generator, Generator)


@pytest.mark.integration
def test_the_stream_joined_is_the_reply(generator):
    pieces = list(generator.stream(QUESTION))
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == generator.generate(QUESTION)  # greedy: the same reply
    assert "Paris" in "".join(pieces)


@pytest.mark.integration
def test_the_reply_stays_within_max_new_tokens(generator):
    long = [{"role": "user", "content": "Count from one to one hundred in words."}]
    words = generator.generate(long).split()
    # Every word takes at least one token, so 12 new tokens hold at most 12 words; the
    # model would go on to a hundred.
    assert 3 <= len(words) <= 12


def test_an_unknown_backend_is_a_clear_error():
    s = settings_for("transformers")
    wrong = s.model_copy(update={"models": s.models.model_copy(update={"generator_backend": "x"})})
    with pytest.raises(ConfigError,
                       match="unknown generator backend 'x'; use auto, transformers or llamacpp"):
        generators.build(wrong, plan(DeviceCaps()))


@pytest.mark.integration
def test_auto_builds_llama_cpp_on_this_cpu_and_transformers_without_it(monkeypatch):
    from model.generators.llamacpp import LlamaCppGenerator
    from model.generators.transformers import TransformersGenerator

    s = settings_for("auto")
    assert isinstance(generators.build(s, plan(DeviceCaps())), LlamaCppGenerator)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    assert isinstance(generators.build(s, plan(DeviceCaps())), TransformersGenerator)


@pytest.mark.integration
def test_a_reply_is_the_same_read_whole_or_from_a_stream_abandoned_midway(generator):
    stream = generator.stream(QUESTION)
    first = next(iter(stream))
    stream.close()  # the reader went away: the next request is served all the same
    assert generator.generate(QUESTION).startswith(first)


@pytest.mark.integration
def test_greedy_samples_are_the_reply_n_times(generator):
    # llama.cpp reads the prompt once for all of them: a later reply that started from
    # the logits or the cache the one before it left would differ.
    assert generator.samples(QUESTION, 3) == [generator.generate(QUESTION)] * 3
    with pytest.raises(ValueError, match="n must be at least 1, got 0"):
        generator.samples(QUESTION, 0)


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
def test_sampled_samples_are_drawn_apart_within_the_limit(backend):
    import torch

    torch.manual_seed(0)  # transformers draws from torch's generator, llama.cpp its own
    gen = generators.build(
        settings_for(backend, do_sample=True, temperature=1.5, top_p=1.0), plan(DeviceCaps())
    )
    gen.warm_up()
    try:
        word = [{"role": "user", "content": "Write one sentence about anything at all."}]
        replies = gen.samples(word, 4)
    finally:
        gen.close()
    assert len(replies) == 4 and all(isinstance(r, str) and r for r in replies)
    assert len(set(replies)) > 1  # at temperature 1.5 four equal 12-token replies: a bug
    assert all(len(r.split()) <= 12 for r in replies)
