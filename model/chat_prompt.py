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


def shared_system_turn(
    messages: Sequence[Message], ids: Sequence[int], system: Sequence[int]
) -> int:
    """How many lead ids of a prompt are its system turn's own (`system`: that turn
    rendered alone, without a generation prompt, and encoded), so that a cache of them
    serves every prompt with the same system turn; 0 when they are not a prefix of `ids`
    (no chat template, a prompt cut from the left) or would leave `ids` nothing else."""
    if not messages or messages[0]["role"] != "system":
        return 0
    shared = len(system) < len(ids) and list(ids[: len(system)]) == list(system)
    return len(system) if shared else 0


def reply_prefixes(conversations: Sequence[object], given: Sequence[str] | None) -> list[str]:
    """One reply prefix per conversation ("" for none), or ValueError for a miscount."""
    if given is None:
        return [""] * len(conversations)
    if len(given) != len(conversations):
        raise ValueError(f"{len(conversations)} conversations but {len(given)} reply prefixes")
    return list(given)
