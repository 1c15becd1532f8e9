"""TransformersGenerator.generate_batch on a tiny random LLaMA: batching and the shared
prefix cache do not change what greedy decoding writes."""

import pytest

from lectern.device import DeviceCaps, plan
from model.generators.transformers import Sampling, TransformersGenerator

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
