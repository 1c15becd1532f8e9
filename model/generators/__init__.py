"""Generator backends behind the Generator protocol; `build` picks one from the settings.

Each backend lives in its own module and is imported only when chosen, so serving on
one library never needs the others installed.
"""

from __future__ import annotations

from lectern.device import DevicePlan
from lectern.errors import ConfigError
from lectern.protocols import Generator
from lectern.settings import Settings
from model import prepare
from model.generators.sampling import Sampling
from model.registry import ResolvedModel


def build(settings: Settings, plan: DevicePlan) -> Generator:
    """The generator the settings name, its weights ready on disk but not loaded.

    A GGUF generator is converted here, once, into a safetensors folder under the model
    cache (about 20 s); later calls find the conversion and return at once. The adapter
    `models.adapter` names (prepare.adapter) is merged in when it loads, or for llamacpp
    into a GGUF file exported once (prepare.llamacpp_file). The backend is
    prepare.generator_backend's choice.
    """
    model = prepare.generator(settings).model  # resolved (and its sha256 checked) once
    backend = prepare.generator_backend(settings, plan.device, model)
    if backend == "transformers":
        from model.generators.transformers import TransformersGenerator

        g = settings.generation
        prepared = prepare.generator(settings, convert_gguf=True, model=model)
        return TransformersGenerator(
            prepared.load_from,
            plan,
            _sampling(settings),
            max_input_tokens=g.max_input_tokens,
            max_batch=g.max_batch,
            max_waiting=g.max_waiting,
            decode_threads=g.decode_threads or None,
            adapter=prepare.adapter(settings),
        )
    if backend == "llamacpp":
        return _llamacpp(settings, model)
    raise ConfigError(
        f"unknown generator backend {backend!r}; use auto, transformers or llamacpp")


def _llamacpp(settings: Settings, model: ResolvedModel) -> Generator:
    from model.generators.llamacpp import LlamaCppGenerator

    g = settings.generation
    path = prepare.llamacpp_file(settings, model=model)
    return LlamaCppGenerator(
        path,
        _sampling(settings),
        max_input_tokens=g.max_input_tokens,
        threads=g.decode_threads or None,
        max_waiting=g.max_waiting,
        adapter=prepare.adapter(settings),
        flash_attention=g.llamacpp_flash_attention,
    )


def _sampling(settings: Settings) -> Sampling:
    g = settings.generation
    return Sampling(g.max_new_tokens, g.do_sample, g.temperature, g.top_p, g.repetition_penalty,
                    g.abstain_threshold)
