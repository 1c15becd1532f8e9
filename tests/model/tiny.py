"""Tiny random causal LMs with a chat template, saved as a model folder, for fast tests."""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TEXTS = [
    "You answer questions using only the numbered passages given.",
    "Passages: [1] The observatory moved to Kelso Hill in 1912. [2] Fees are due by 1 October.",
    "Question: When are fees due? Where did the observatory move? I don't know.",
    "1 October [2] Kelso Hill [1] Coffee is sold at the kiosk beside the main entrance.",
]


def save_tiny(folder: Path, arch: str = "llama", seed: int = 0,
              initializer_range: float = 0.02) -> Path:
    """A ~100k-parameter model of `arch` ("llama" or "falcon") and a BPE tokenizer.

    A larger `initializer_range` (0.5) gives logits large enough for a few steps of
    training to move them: at 0.02 the output layer keeps every logit near zero.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        FalconConfig,
        FalconForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(TEXTS * 3, trainers.BpeTrainer(vocab_size=300, special_tokens=special))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=special[0], eos_token=special[1], pad_token=special[1]
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    common = dict(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=4, eos_token_id=fast.eos_token_id,
                  pad_token_id=fast.pad_token_id, initializer_range=initializer_range)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, intermediate_size=64,
                                             num_key_value_heads=2, max_position_embeddings=512))
    elif arch == "falcon":
        model = FalconForCausalLM(FalconConfig(**common, new_decoder_architecture=False,
                                               multi_query=True, alibi=False))
    else:
        raise ValueError(f"unknown arch {arch!r}")
    model.save_pretrained(folder)
    return folder
