"""Words of a text, as the reranker's query focus, its training data, the question writer
and the test fakes compare them.

A word is a run of word characters (what regex `\\w` matches) in the lower-cased
text: no stemming and no stopwords; a caller that needs those applies them to this
list. The answer generator's context picker has a purpose and rules of its own
(model.context.content_words).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased, in order, repeats kept."""
    return _WORD.findall(text.lower())
