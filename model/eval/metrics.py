"""Answer metrics: SQuAD v1.1's exact match and token F1, containment, citation checks.

`normalize` is the official evaluation script's normalisation (evaluate-v1.1.py):
lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace.
EM and F1 are the maximum over the gold answers, as the script takes them. Lectern's
answers carry "[1]" markers, which no gold answer has, so every score is computed on
the text with its markers stripped; an abstention scores 0 whatever its words are.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

from model.answer import _CITE  # the one pattern of a citation marker, as answers write it

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text: str) -> str:
    """The official SQuAD v1.1 normalisation, step for step."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def strip_citations(text: str) -> str:
    """The text without its [1] / [1, 2] markers, whitespace tidied ("Paris [1]." -> "Paris.")."""
    return " ".join(_CITE.sub("", text).split()).replace(" .", ".").replace(" ,", ",")


def _f1(prediction: str, gold: str) -> float:
    pred, true = normalize(prediction).split(), normalize(gold).split()
    same = sum((Counter(pred) & Counter(true)).values())
    if same == 0:  # also when either side is empty: v1.1 scores that 0, unlike v2.0
        return 0.0
    precision, recall = same / len(pred), same / len(true)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0."""
    norm = normalize(prediction)
    return float(any(norm == normalize(g) for g in golds))


def f1(prediction: str, golds: Sequence[str]) -> float:
    """The best token F1 against any gold answer (0.0 with no gold answer)."""
    return max((_f1(prediction, g) for g in golds), default=0.0)


def contains(text: str, golds: Sequence[str]) -> bool:
    """Whether a normalised gold answer occurs in the normalised text, at word boundaries.

    Word boundaries, because "1,500" must not be found in "11500" nor "art" in "start". A
    gold answer that normalises to nothing ("The") is found nowhere.
    """
    padded = f" {normalize(text)} "
    return any(g and f" {g} " in padded for g in map(normalize, golds))


def answer_scores(text: str, golds: Sequence[str], abstained: bool) -> dict[str, float]:
    """EM, F1 (both 0-1) and contains (0 or 1) of one reply; an abstention scores 0."""
    if abstained:
        return {"em": 0.0, "f1": 0.0, "contains": 0.0}
    shown = strip_citations(text)
    return {"em": exact_match(shown, golds), "f1": f1(shown, golds),
            "contains": float(contains(shown, golds))}


def citation_hits(cited_texts: Iterable[str], golds: Sequence[str]) -> list[bool]:
    """For each cited passage (its full stored text), whether it holds a gold answer."""
    return [contains(text, golds) for text in cited_texts]


def words(text: str) -> int:
    """An answer's length in words: whitespace-separated, citation markers left out."""
    return len(strip_citations(text).split())
