"""Messages to token ids, one way for serving and for training.

The tuned generator must be trained on exactly the ids the server feeds it, so both the
serving generator and `lectern train generator` render prompts here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lectern.protocols import Message


def render(messages: Sequence[Message], tok: Any, *, generation_prompt: bool = True) -> str:
    """The chat template's text; a model without one gets a plain transcript."""
    if tok.chat_template:
        return tok.apply_chat_template(
            list(messages), add_generation_prompt=generation_prompt, tokenize=False
        )
    text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)
    return text + "\n\nAssistant:" if generation_prompt else text


def encode(prompt: str, tok: Any) -> list[int]:
    """A rendered prompt's ids (a chat template holds its own special tokens)."""
    return tok(prompt, add_special_tokens=not tok.chat_template)["input_ids"]


def reply_ids(reply: str, tok: Any) -> list[int]:
    """The ids of an assistant reply as the model writes it: the text, then end-of-turn."""
    ids = tok(reply, add_special_tokens=False)["input_ids"]
    return [*ids, tok.eos_token_id] if tok.eos_token_id is not None else ids
