"""A follow-up question made to stand alone, so that retrieval finds what it is about.

"And what does it cost?" names nothing a passage could match; its earlier turns do.
Two ways, chosen by `conversation.rewrite` (model/eval/conversations.py measures both):

- `HistoryRewriter` searches the follow-up together with the earlier turns' questions and
  answers: no model call, so it adds no latency.
- `GeneratorRewriter` asks the generator to rewrite the follow-up as one question.

A first question (no history) is searched as asked by both. On CoQA and QuAC
(bench/results/eval-conversations.md) the history recovers more than the whole gap
between follow-ups as asked and first questions; SmolLM2-135M's rewrites lose ground
(it answers instead of rewriting) and take half a second a turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal

from lectern.protocols import Message
from lectern.types import Turn
from model.answer import first_words, is_abstention, uncited

RewriteMethod = Literal["history", "generator", "none"]

ANSWER_WORDS = 10  # of each earlier answer: its opening names what the turn was about (chosen
# by bench/results/eval-conversations.md: 10 and 40 words score alike; 10 keeps it short)


def _answer_words(answer: str, limit: int = ANSWER_WORDS) -> str:
    """Citation marks carry no meaning for retrieval; an abstention's words only add noise."""
    return "" if is_abstention(answer) else first_words(uncited(answer), limit)


# Words by which a question leans on what was said before it.
_REFERRING = frozenset([
    "it", "its", "it's", "itself", "they", "them", "their", "theirs", "those", "these",
    "this", "that", "there", "then", "he", "him", "his", "she", "her", "hers", "one", "ones",
    "such", "same", "former", "latter",
])
_LEADS = ("and ", "also ", "so ", "but ", "then ", "what about ", "how about ")
SHORT = 3  # words: "Where?", "Why not?", "What else?" name no subject of their own


def refers_back(question: str) -> bool:
    """Whether `question` needs the earlier turns to be understood: it holds a pronoun
    or demonstrative, opens with a connective ("And what ..."), or is too short to name
    its subject. "What is the capital of Peru?" asked after a fees question does not:
    searched with the fees turn beside it, it would find the fees again."""
    text = question.strip().lower()
    tokens = re.findall(r"[a-z0-9']+", text)  # "What is CSC 340?" names its subject
    return (
        len(tokens) <= SHORT
        or text.startswith(_LEADS)
        or any(t in _REFERRING for t in tokens)
    )


class HistoryRewriter:
    """The follow-up, then the last `turns` earlier questions and answers, newest first.

    referring_only: a question that does not refer back (`refers_back`) is searched as
    asked, so that a change of subject is not pulled back to the earlier one.
    answer_words: of each earlier answer, at most this many words (0: the questions only).
    """

    def __init__(
        self, turns: int = 2, referring_only: bool = True, answer_words: int = ANSWER_WORDS
    ) -> None:
        if turns < 1:
            raise ValueError(f"turns must be at least 1, got {turns}")
        if answer_words < 0:
            raise ValueError(f"answer_words must be 0 or more, got {answer_words}")
        self.turns = turns
        self.referring_only = referring_only
        self.answer_words = answer_words

    def _uses_history(self, question: str, history: Sequence[Turn]) -> bool:
        return bool(history) and (not self.referring_only or refers_back(question))

    def rewrite(self, question: str, history: Sequence[Turn]) -> str:
        if not self._uses_history(question, history):
            return question.strip()
        parts = [question.strip()]
        for turn in reversed(history[-self.turns:]):
            parts += [turn.question.strip(), _answer_words(turn.answer, self.answer_words)]
        return " ".join(p for p in parts if p)

    def focus(self, question: str, history: Sequence[Turn], searched: str) -> str:
        """What the answer must be about: the follow-up and the earlier questions, not
        their answers, whose sentences would otherwise be picked again as the closest."""
        if not self._uses_history(question, history):
            return question.strip()
        earlier = [t.question.strip() for t in reversed(history[-self.turns:])]
        return " ".join([question.strip(), *earlier])


REWRITE_SYSTEM = (
    "Rewrite the user's last question so that it can be understood without the "
    "conversation before it: replace words like it, they, he, she, that and there with "
    "what they refer to. Keep the meaning. Reply with the rewritten question only."
)
_PREFIX = re.compile(r"^\s*(?:standalone|rewritten)?\s*question\s*:\s*", re.IGNORECASE)


class GeneratorRewriter:
    """The generator's rewrite of the follow-up; the follow-up as asked when the reply
    is empty or is no question (a model that answers instead of rewriting)."""

    def __init__(self, generate: Callable[[Sequence[Message]], str], turns: int = 2) -> None:
        if turns < 1:
            raise ValueError(f"turns must be at least 1, got {turns}")
        self._generate = generate
        self.turns = turns

    @staticmethod
    def messages(question: str, history: Sequence[Turn], turns: int) -> list[Message]:
        lines = []
        for turn in history[-turns:]:
            lines += [f"Q: {turn.question.strip()}", f"A: {_answer_words(turn.answer) or '-'}"]
        return [
            {"role": "system", "content": REWRITE_SYSTEM},
            {"role": "user", "content": "Conversation:\n" + "\n".join(lines)
             + f"\n\nLast question: {question.strip()}\nRewritten question:"},
        ]

    def rewrite(self, question: str, history: Sequence[Turn]) -> str:
        if not history:
            return question.strip()
        reply = self._generate(self.messages(question, history, self.turns))
        return cleaned(reply, question)

    def focus(self, question: str, history: Sequence[Turn], searched: str) -> str:
        return searched


def cleaned(reply: str, question: str) -> str:
    """The first line of `reply` without a "Question:" label or quotes, or `question`
    when that leaves nothing usable: empty, over four times the question's length, or no
    question at all (SmolLM2-135M mostly answers instead: "The answer is: 3", which
    searched finds less than the follow-up as asked; eval-conversations.md)."""
    line = next((ln for ln in reply.strip().splitlines() if ln.strip()), "")
    line = _PREFIX.sub("", line).strip().strip("\"'“”").strip()
    if not line.endswith("?") or len(line) > 4 * max(len(question), 40):
        return question.strip()
    return line


class AsAsked:
    """No rewrite: every question is searched as asked."""

    def rewrite(self, question: str, history: Sequence[Turn]) -> str:
        return question.strip()

    def focus(self, question: str, history: Sequence[Turn], searched: str) -> str:
        return question.strip()


Rewriter = HistoryRewriter | GeneratorRewriter | AsAsked


def build_rewriter(
    method: RewriteMethod,
    turns: int,
    generate: Callable[[Sequence[Message]], str],
    referring_only: bool = True,
) -> Rewriter:
    if method == "history":
        return HistoryRewriter(turns, referring_only)
    if method == "generator":
        return GeneratorRewriter(generate, turns)
    if method == "none":
        return AsAsked()
    raise ValueError(f"rewrite: {method!r} is not one of history, generator, none")
