"""TransformersGenerator.generate_batch on a tiny random LLaMA: batching and the shared
prefix cache do not change what greedy decoding writes."""

import pytest

from lectern.device import DeviceCaps, plan
from model.chat_prompt import render
from model.generators.sampling import Sampling
from model.generators.transformers import TransformersGenerator

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXTS = [
    "Turn the statement into a question that it answers.",
    "Statement: The observatory moved to Kelso Hill in 1912.",
    "Statement: Coffee is sold at the kiosk beside the main entrance of the library.",
    "Statement: Fees are due by 1 October.",
    "Where was the observatory moved in 1912?",
]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|im_start|>", "<|im_end|>"]
    # ASCII-only tokens: every reply decodes to whole characters, as a real reply does.
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special)
    tok.train_from_iterator(TEXTS * 3, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=special[0], eos_token=special[1], pad_token=special[1]
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.5,  # large weights: replies differ from prompt to prompt
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    gen = TransformersGenerator(folder, plan(DeviceCaps()), Sampling(max_new_tokens=6))
    gen.warm_up()
    return gen


def conversation(statement: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": TEXTS[0]},
        {"role": "user", "content": TEXTS[1]},
        {"role": "assistant", "content": TEXTS[4]},
        {"role": "user", "content": statement},
    ]


def test_batch_equals_one_at_a_time(tiny_llama):
    convs = [conversation(t) for t in (TEXTS[2], TEXTS[3], "Statement: x.")]
    batch = tiny_llama.generate_batch(convs)
    assert len(batch) == 3
    assert batch == [tiny_llama.generate(c) for c in convs]
    assert len(set(batch)) == 3, "replies depend on the prompt, so a mix-up would show"


def test_reply_prefixes_are_put_in_the_mouth_and_returned(tiny_llama):
    convs = [conversation(TEXTS[2]), conversation(TEXTS[3])]
    both = tiny_llama.generate_batch(convs, max_new_tokens=4, reply_prefixes=["In what year", ""])
    assert both[0].startswith("In what year")
    alone = tiny_llama.generate_batch(convs[:1], max_new_tokens=4, reply_prefixes=["In what year"])
    assert alone == both[:1]
    assert tiny_llama.generate_batch([]) == []
    with pytest.raises(ValueError, match="2 conversations but 1 reply prefixes"):
        tiny_llama.generate_batch(convs, reply_prefixes=[""])


def test_requests_decoded_together_write_what_each_writes_alone(tiny_llama):
    """Continuous batching: rows of different lengths join a batch mid-decoding, are
    padded and masked, and leave it; greedy replies equal generate()'s one at a time."""
    from tests.threads import run_together

    convs = [conversation(t) for t in (TEXTS[2], TEXTS[3], "Statement: x.", TEXTS[1])]
    alone = [tiny_llama.generate_batch([c])[0] for c in convs]  # transformers' generate()
    assert len(set(alone)) == 4
    import torch

    widths: list[int] = []
    no_autograd: list[bool] = []  # a cache built with grad on keeps every step's graph
    batch = tiny_llama._scheduler.batch
    step = batch.step

    def counted() -> object:
        widths.append(len(batch))
        no_autograd.append(torch.is_inference_mode_enabled())
        return step()

    batch.step = counted
    try:
        first = tiny_llama.stream(convs[0])
        head = next(first)  # the first row is decoding before the others arrive
        together = run_together(lambda job: tiny_llama.generate(convs[job + 1]), jobs=3, threads=3)
        assert head + "".join(first) == alone[0]
    finally:
        del batch.step
    assert all(replies == alone[1:] for replies in together)
    assert max(widths) > 1, "the requests never shared a decoding step"
    assert all(no_autograd)


def test_a_batch_row_sees_what_it_would_alone_after_others_join_and_leave(tiny_llama):
    """DecodeBatch: a short row padded under a long one, then the long one leaves and the
    padding no row needs is cut; each step's logits match the row decoded by itself."""
    import torch

    from model.generators.decode_batch import DecodeBatch

    tok = tiny_llama.tokenizer
    short, long = (tok(render(conversation(t), tok))["input_ids"]
                   for t in ("Statement: x.", TEXTS[2]))
    assert len(short) < len(long)
    with torch.inference_mode():
        alone = DecodeBatch(tiny_llama._model)
        row = alone.prefill(short)
        alone.join(row, 5)
        expected = [alone.step()[0]]
        alone.feed([6])
        expected.append(alone.step()[0])

        batch = DecodeBatch(tiny_llama._model)
        batch.join(batch.prefill(long), 7)
        batch.join(batch.prefill(short), 5)
        assert batch._mask.shape == (2, len(long))
        assert int(batch._mask[1].sum()) == len(short)
        first = batch.step()
        batch.feed([8, 6])
        batch.keep([1])  # the long row leaves
        assert len(batch) == 1 and batch._mask.shape == (1, len(short) + 1)
        assert all(layer.keys.shape[2] == len(short) + 1 for layer in batch._cache.layers)
        second = batch.step()
    torch.testing.assert_close(first[1], expected[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(second[0], expected[1], atol=1e-4, rtol=1e-4)


def test_prompt_tokens_are_the_ids_the_model_reads(tiny_llama):
    # What usage reports as prompt_tokens: the chat template's rendering, as encoded.
    conv = conversation(TEXTS[2])
    ids, _ = tiny_llama._prompt(conv)
    assert tiny_llama.count_prompt_tokens(conv) == len(ids)
    assert len(ids) > sum(tiny_llama.count_tokens(m["content"]) for m in conv), "the template's"
    long = conversation("Statement: " + "fees are due " * 1000)
    assert len(tiny_llama._prompt(long)[0]) == tiny_llama.max_input_tokens, "cut, as read"
    assert tiny_llama.count_prompt_tokens(long) == tiny_llama.max_input_tokens
