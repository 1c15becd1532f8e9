"""The llama.cpp backend: its token choice matches transformers', its prompt is the
transformers backend's, it refuses what it cannot serve."""

import threading

import numpy as np
import pytest

from lectern.device import DeviceCaps, plan
from lectern.errors import ConfigError, NotReadyError, OverloadedError
from lectern.settings import GenerationSettings, Settings
from model import generators, prepare
from model.generators.llamacpp import (
    LlamaCppGenerator,
    _repetition_penalty,
    _sample,
    _stop_end,
)
from model.generators.sampling import Sampling
from tests.conftest import MODEL_CACHE

MESSAGES = [
    {"role": "system", "content": "Answer from the passages. Cite them as [n]."},
    {"role": "user", "content": "[1] Fees are due by 1 September.\n\nWhen are fees due?"},
]


def test_the_repetition_penalty_is_transformers_own():
    torch = pytest.importorskip("torch")
    from transformers import RepetitionPenaltyLogitsProcessor

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(1, 50)).astype(np.float32)
    seen = [3, 7, 7, 12, 49, 0]
    given = scores.copy()
    ours = _repetition_penalty(scores, seen, 1.3)
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([seen]), torch.tensor(given))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6)
    assert not np.array_equal(ours, given)
    assert np.array_equal(scores, given), "the caller's scores are not touched"


def test_top_p_keeps_the_smallest_set_holding_the_mass_and_draws_from_it():
    row = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(0)
    drawn = {_sample(row, 1.0, 0.7, rng) for _ in range(300)}
    assert drawn == {0, 1}  # 0.5 < 0.7, 0.8 >= 0.7: the second token crosses and stays
    assert {_sample(row, 1.0, 1.0, rng) for _ in range(2000)} == {0, 1, 2, 3}
    cold = [_sample(row, 0.05, 1.0, rng) for _ in range(200)]
    assert cold.count(0) > 190  # a low temperature is nearly greedy


def test_a_reply_ends_with_its_first_stop_string_kept():
    assert _stop_end("Question: a?\nAnswer", ["\n", "?"]) == 12  # "Question: a?"
    assert _stop_end("two\n\nlines", ["\n\n"]) == 5
    assert _stop_end("no stop here", ["\n\n"]) is None
    assert _stop_end("anything", []) is None


def test_the_constructor_validates_cheaply(tmp_path):
    gguf = tmp_path / "m.gguf"
    with pytest.raises(ValueError, match="reads a .gguf file, got .*model.safetensors"):
        LlamaCppGenerator(tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        LlamaCppGenerator(gguf, threads=0)
    with pytest.raises(ValueError, match="max_input_tokens must be at least 16, got 8"):
        LlamaCppGenerator(gguf, max_input_tokens=8)
    with pytest.raises(ValueError, match=r"max_sequences must be in \[1, 64\], got 0"):
        LlamaCppGenerator(gguf, max_sequences=0)
    gen = LlamaCppGenerator(gguf)  # nothing is read before warm_up
    with pytest.raises(NotReadyError):
        gen.generate(MESSAGES)
    with pytest.raises(FileNotFoundError, match="no GGUF file at .*m.gguf"):
        gen.warm_up()


def _settings(**models) -> Settings:
    return Settings(models={"cache_dir": MODEL_CACHE, "generator_backend": "llamacpp", **models},
                    generation=GenerationSettings(max_new_tokens=24))


def test_the_base_gguf_serves_without_an_adapter_and_the_export_with_one(monkeypatch, tmp_path):
    made = []

    def exported(base, adapter, quant, cache_dir, hf_base, base_sha):
        made.append((base, adapter, quant))
        return tmp_path / "merged.gguf"

    monkeypatch.setattr(prepare.gguf_export, "exported", exported)
    model = prepare.generator(_settings()).model
    plain = generators.build(_settings(adapter="none"), plan(DeviceCaps()))
    assert plain.model_path == model.folder / model.file and plain.adapter is None and not made

    tuned = generators.build(_settings(gguf_quant="q4_0"), plan(DeviceCaps()))
    assert tuned.model_path == tmp_path / "merged.gguf"
    assert tuned.adapter == prepare.SHIPPED_ADAPTER  # its abstention threshold is read
    assert made == [(model.folder / model.file, prepare.SHIPPED_ADAPTER, "q4_0")]


def test_a_generator_that_is_not_a_gguf_file_is_a_clear_error(tmp_path):
    from tests.model.tiny import save_tiny

    folder = save_tiny(tmp_path / "tiny")
    with pytest.raises(ConfigError, match="runs a GGUF file; .*tiny is not one"):
        generators.build(_settings(generator=str(folder), adapter="none"), plan(DeviceCaps()))


@pytest.mark.integration
def test_the_shipped_adapter_is_served_merged_into_a_gguf():
    from model.generators.served import ServedGenerator

    served = ServedGenerator(_settings(), lambda s: generators.build(s, plan(DeviceCaps())))
    served.warm_up()
    try:
        assert isinstance(served.current, LlamaCppGenerator) and served.refused is None
        assert served.adapter == prepare.SHIPPED_ADAPTER
        assert served.current.model_path.parent.parent.name == "gguf-exports"
        assert "q8_0" in served.current.model_path.parent.name
        assert "1 September" in served.generate(MESSAGES)
    finally:
        served.close()


@pytest.fixture(scope="module")
def llama() -> LlamaCppGenerator:
    gen = generators.build(_settings(adapter="none"), plan(DeviceCaps()))
    gen.warm_up()
    yield gen
    gen.close()


@pytest.mark.integration
def test_the_prompt_is_token_for_token_the_transformers_backends(llama):
    from transformers import AutoTokenizer

    from model.chat_prompt import encode, render

    settings = _settings(adapter="none")
    tok = AutoTokenizer.from_pretrained(prepare.generator(settings, convert_gguf=True).load_from)
    assert llama.prompt_ids(MESSAGES) == encode(render(MESSAGES, tok), tok)
    assert llama.count_tokens("CSC 340 carries 6 ECTS.") == len(
        tok("CSC 340 carries 6 ECTS.", add_special_tokens=False)["input_ids"])


@pytest.mark.integration
def test_a_reply_does_not_depend_on_what_was_asked_before(llama):
    other = [MESSAGES[0], {"role": "user", "content": "What is the capital of France?"}]
    alone = [{"role": "user", "content": "What is the capital of France?"}]
    first = llama.generate(MESSAGES)
    assert first.startswith("Fees are due")
    for before in (other, MESSAGES, alone, MESSAGES):  # another question, the same, none
        llama.generate(before)
        assert llama.generate(MESSAGES) == first
    assert llama.generate(alone) == llama.generate(alone)


def _decoded(gen: LlamaCppGenerator, ids: list[int], shared: int, gate: bool) -> list[str]:
    return [piece for _, piece in gen._reply(gen._submit(ids, shared, 4, gate))]


@pytest.mark.integration
def test_the_abstention_gate_reads_the_first_token_only(llama):
    ids, shared = llama._prompt(MESSAGES)
    assert 0 < shared < len(ids)
    greedy = _decoded(llama, ids, shared, gate=False)
    first, second = (llama._ids(p, special=False)[0] for p in greedy[:2])
    assert first != second
    saved = llama._abstain_id
    llama._abstain_threshold = 1.0
    try:
        llama._abstain_id = first  # stand-in for the abstention's first token
        assert _decoded(llama, ids, shared, gate=True)[0] != greedy[0]
        assert _decoded(llama, ids, shared, gate=False) == greedy
        llama._abstain_id = second  # a later token is never refused
        assert _decoded(llama, ids, shared, gate=True) == greedy
        llama._abstain_id = first  # every one of several replies is gated at its start
        gated = llama.samples(MESSAGES, 3)
        assert len(gated) == 3 and all(not r.startswith(greedy[0]) for r in gated)
    finally:
        llama._abstain_threshold, llama._abstain_id = 0.0, saved


@pytest.mark.integration
def test_bulk_replies_take_their_prefix_and_keep_their_stop_string(llama):
    out = llama.generate_batch([MESSAGES, MESSAGES], max_new_tokens=16,
                               reply_prefixes=["Fees are due", ""], stop=[" on"])
    assert out[0].startswith("Fees are due")
    assert out[1].endswith(" on") and out[1].count(" on") == 1


def _fresh(sampling: Sampling | None = None, **kwargs) -> LlamaCppGenerator:
    gen = generators.build(_settings(adapter="none"), plan(DeviceCaps()))
    assert isinstance(gen, LlamaCppGenerator)
    fresh = LlamaCppGenerator(gen.model_path, sampling or gen.sampling, **kwargs)
    fresh.warm_up()
    return fresh


def _hold_decoding(gen: LlamaCppGenerator, after: int) -> threading.Event:
    """The decoding thread stops before its token number `after` + 1 until the event."""
    release, chosen, choose = threading.Event(), [0], gen._choose

    def held(*args, **kwargs):
        chosen[0] += 1
        if chosen[0] > after:
            assert release.wait(30)
        return choose(*args, **kwargs)

    gen._choose = held  # type: ignore[method-assign]
    return release


@pytest.mark.integration
def test_more_new_tokens_than_the_context_holds_end_the_reply_instead_of_failing():
    gen = _fresh(max_input_tokens=64)  # a context of 64 + 24 new tokens, llama.cpp rounds up
    try:
        long = [MESSAGES[0], {"role": "user", "content": "Repeat: " + "fees are due " * 50}]
        assert len(gen.prompt_ids(long)) == 64  # cut from the left to the input budget
        (reply,) = gen.generate_batch([long], max_new_tokens=400)
        room = gen._context.n_ctx - 64
        assert room < 400 and reply and len(gen._ids(reply, special=False)) <= room + 1
    finally:
        gen.close()


@pytest.mark.integration
def test_requests_beyond_the_queue_are_refused_at_once_and_a_slow_reader_holds_nothing():
    gen = _fresh(max_waiting=1)
    release = _hold_decoding(gen, after=0)
    try:
        unread = gen.stream(MESSAGES)  # decoding (held); its reader never reads
        waiting = gen.stream(MESSAGES)  # the one place to wait
        with pytest.raises(OverloadedError, match="queue is full"):
            gen.stream(MESSAGES)
        release.set()
        assert "".join(waiting).startswith("Fees are due")  # served, the first one unread
        assert gen.generate(MESSAGES).startswith("Fees are due")  # the places are free
        assert "".join(unread).startswith("Fees are due")
    finally:
        release.set()
        gen.close()


@pytest.mark.integration
def test_close_stops_a_reply_midway_and_fails_those_waiting():
    gen = _fresh(max_waiting=4)
    release = _hold_decoding(gen, after=1)
    decoding = gen.stream(MESSAGES)
    first = next(decoding)  # the second token is held
    waiting = gen.stream(MESSAGES)
    threading.Timer(0.5, release.set).start()  # lets the decoding thread see the close
    gen.close(timeout=30)
    assert first
    with pytest.raises(NotReadyError, match="shutting down"):
        list(decoding)
    with pytest.raises(NotReadyError, match="shutting down"):
        list(waiting)
    with pytest.raises(NotReadyError):
        gen.stream(MESSAGES)
    assert gen._llm is None  # the context is freed
    gen.close()  # idempotent


def test_sampling_is_validated_where_it_is_defined():
    with pytest.raises(ValueError, match="abstain_threshold"):
        Sampling(abstain_threshold=2)


@pytest.mark.integration
def test_a_token_longer_than_32_bytes_comes_out_whole(llama):
    import llama_cpp

    from model.generators.llamacpp import _piece

    llm = llama._llm
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    pieces = {t: _piece(llama_cpp, vocab, t) for t in range(llm.n_vocab())}
    long = [t for t, p in pieces.items() if len(p) > 32]
    assert long, "the vocabulary has pieces over 32 bytes (runs of spaces)"
    assert all(llama._ids(pieces[t].decode("utf-8"), special=False) == [t] for t in long[:5])


@pytest.mark.integration
def test_sampled_replies_decode_together_each_from_the_prompt(llama):
    # llama.cpp's logits for a batch of several rows differ from one row's by up to ~5% of
    # their scale, so a near-greedy reply may part from the greedy one at a near tie; its
    # start, where the margins are wide, is the prompt's.
    greedy = llama.generate(MESSAGES)
    near_greedy = Sampling(max_new_tokens=24, do_sample=True, temperature=0.01, top_p=1.0)
    gen = _fresh(near_greedy, max_sequences=2)  # 5 replies: batches of 2, 2 and 1
    try:
        replies = gen.samples(MESSAGES, 5)
        assert len(replies) == 5 and all(r.startswith("Fees") for r in replies)
        assert replies[4] == greedy  # a batch of one decodes as generate() does
        assert gen.generate(MESSAGES) == greedy  # the replies' cells were dropped
    finally:
        gen.close()


@pytest.mark.integration
def test_sequences_of_one_batch_read_their_own_cells_only(llama):
    from model.generators.llamacpp_context import LlamaContextError, SequenceContext

    context = SequenceContext(llama._llm.model, 32, 3, 1, 1, flash_attention=False)
    try:
        france = llama._ids("The capital city of France is the city of", special=False)
        count = llama._ids("One, two, three, four, five, six,", special=False)
        paris, seven = (llama._ids(w, special=False)[0] for w in (" Paris", " seven"))
        # Sequence 1 holds one text, sequence 2 the other; each one's next token is read
        # in the same batch.
        assert context.read(france[:-1], 0, seq=1).shape == (llama._llm.n_vocab(),)
        context.read(count[:-1], 0, seq=2)
        a, b = context.step([(france[-1], len(france) - 1, 1), (count[-1], len(count) - 1, 2)])
        assert int(a.argmax()) == paris and int(b.argmax()) == seven
        context.keep(2, 0)
        context.copy(1, 2, len(france))  # sequence 2 now holds the first text
        (c,) = context.step([(paris, len(france), 2)])
        (d,) = context.step([(paris, len(france), 1)])  # the same text, its own cells
        assert np.allclose(c, d, atol=1e-3)
        with pytest.raises(ValueError, match="1 to 32 tokens, got 0"):
            context.step([])
        context.clear()
        too_long = (count * (context.n_ctx // len(count) + 2))[: context.n_ctx + 8]
        with pytest.raises(LlamaContextError, match=f"cache holds {context.n_ctx} cells"):
            context.read(too_long, 0)  # llama.cpp rounds the 32 cells asked for up
    finally:
        context.close()
        context.close()  # idempotent
    with pytest.raises(ValueError, match="sequences must be at least 1, got 0"):
        SequenceContext(llama._llm.model, 32, 0, 1, 1, flash_attention=False)


@pytest.mark.integration
def test_flash_attention_is_a_setting_that_serves():
    settings = Settings(
        models={"cache_dir": MODEL_CACHE, "generator_backend": "llamacpp", "adapter": "none"},
        generation=GenerationSettings(max_new_tokens=24, llamacpp_flash_attention=True))
    gen = generators.build(settings, plan(DeviceCaps()))
    assert isinstance(gen, LlamaCppGenerator) and gen.flash_attention
    assert not generators.build(_settings(adapter="none"), plan(DeviceCaps())).flash_attention
    gen.warm_up()
    try:
        assert gen.generate(MESSAGES).startswith("Fees")
    finally:
        gen.close()
