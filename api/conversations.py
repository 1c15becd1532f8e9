"""Conversations the server keeps, so that a client can send `conversation_id` instead
of the whole history: bounded in number (least recently used dropped first), in turns
each, and in age (unused for `expiry_minutes`, forgotten). Memory only: a restart
forgets them, and the client's next question with that id gets a 404 and starts anew.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lectern.errors import ConversationNotFoundError, InvalidRequestError
from lectern.settings import ConversationSettings
from lectern.types import Turn


@dataclass(slots=True)
class _Kept:
    turns: list[Turn] = field(default_factory=list)
    used: float = 0.0


class ConversationStore:
    """Thread-safe: request threads read and extend conversations at once."""

    def __init__(
        self, settings: ConversationSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.settings.kept > 0

    def _expired(self, kept: _Kept, now: float) -> bool:
        return now - kept.used > self.settings.expiry_minutes * 60

    def history(self, conversation_id: str) -> list[Turn]:
        """The kept turns, oldest first; ConversationNotFoundError when unknown or expired."""
        now = self._clock()
        with self._lock:
            kept = self._kept.get(conversation_id)
            if kept is None or self._expired(kept, now):
                self._kept.pop(conversation_id, None)
                raise ConversationNotFoundError(
                    f"conversation_id: no conversation {conversation_id!r} is kept (it expired "
                    "or was never started here); start a new one without conversation_id"
                )
            kept.used = now
            self._kept.move_to_end(conversation_id)
            return list(kept.turns)

    def start(self, turns: Sequence[Turn] = ()) -> str | None:
        """A new conversation holding `turns`; its id (None when none are kept)."""
        if not self.enabled:
            return None
        conversation_id = secrets.token_urlsafe(16)
        now = self._clock()
        with self._lock:
            self._kept[conversation_id] = _Kept(self._bounded(turns), now)
            self._drop(now)
        return conversation_id

    def append(self, conversation_id: str, turn: Turn) -> None:
        """Add `turn`, keeping the newest `max_turns`; a conversation dropped meanwhile
        (expired, or pushed out by newer ones) is not brought back."""
        now = self._clock()
        with self._lock:
            kept = self._kept.get(conversation_id)
            if kept is None:
                return
            kept.turns = self._bounded([*kept.turns, turn])
            kept.used = now
            self._kept.move_to_end(conversation_id)

    def _bounded(self, turns: Sequence[Turn]) -> list[Turn]:
        limit = self.settings.max_turns
        return list(turns[-limit:]) if limit else []

    def _drop(self, now: float) -> None:
        while len(self._kept) > self.settings.kept:
            self._kept.popitem(last=False)
        # Least recently used first: the expired ones are at the front.
        while self._kept:
            oldest = next(iter(self._kept.values()))
            if not self._expired(oldest, now):
                break
            self._kept.popitem(last=False)

    def __len__(self) -> int:
        return len(self._kept)


def checked_history(
    turns: Sequence[Turn],
    settings: ConversationSettings,
    where: Callable[[int], str] = lambda i: f"history[{i}]",
    question_field: str = "question",
) -> list[Turn]:
    """`turns` within the limits, their blanks trimmed; InvalidRequestError naming the
    first turn that is not (the count first: a client sending too many learns that).

    where, question_field: how the message names a turn and its question (the OpenAI
    route's turns are its `messages[k]`, their text `content`)."""
    if len(turns) > settings.max_turns:
        raise InvalidRequestError(
            f"history: {len(turns)} turns, over the limit of {settings.max_turns}"
        )
    out = []
    for i, turn in enumerate(turns):
        question, answer = turn.question.strip(), turn.answer.strip()
        if not question:
            raise InvalidRequestError(f"{where(i)}.{question_field}: must not be blank")
        size = len(turn.question) + len(turn.answer)
        if size > settings.max_turn_chars:
            raise InvalidRequestError(
                f"{where(i)}: {size} characters (question and answer), over the limit of "
                f"{settings.max_turn_chars}"
            )
        out.append(Turn(question, answer))
    return out
