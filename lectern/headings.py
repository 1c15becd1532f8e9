"""The heading the models read with a passage: its title and section, bounded.

BM25 reads a chunk's whole heading path (Chunk.context_text): every word of it is a
search term that costs nothing. The encoder and the reranker read a fixed number of
tokens, and there a title that is a URL (a news corpus: ~40 tokens) or a deep section
path ("Faculty > Department > Programme > Module handbook > ...") takes the room of the
passage. They read this shorter heading instead: the title's own name and the section's
last heading, each a few words.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

TITLE_WORDS = 8
SECTION_WORDS = 8
# Per part, after the words: one long "word" (a hash, a run-on slug) must not fill it.
MAX_CHARS = 64
SECTION_SEPARATOR = " > "  # how the chunker joins a section's heading path

_SCHEME = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//|^www\.", re.IGNORECASE)
_EXTENSION = re.compile(r"\.[a-z][a-z0-9]{0,4}$", re.IGNORECASE)
_SLUG = re.compile(r"[-_+.~,;:=]+")
_LETTERS = re.compile(r"[^\W\d_]{3,}")
# Last path segments that name a page's kind, not its content.
_GENERIC = frozenset({
    "index", "default", "home", "main", "page", "article", "story", "post", "view",
    "content", "print", "amp", "html", "htm", "php", "aspx", "show", "detail", "details",
    "section", "sections", "item", "id",
})


def _capped(text: str, max_words: int) -> str:
    """The first `max_words` words of `text`, cut at a space within MAX_CHARS."""
    kept = " ".join(text.split()[:max_words])
    if len(kept) <= MAX_CHARS:
        return kept
    cut = kept[:MAX_CHARS]
    space = cut.rfind(" ")
    # A cut inside the first word would leave a stub; cut the word itself then.
    return cut[:space] if space > MAX_CHARS // 2 else cut


def is_url_like(title: str) -> bool:
    """A URL, or a path of at least two folders, written without spaces."""
    if not title or any(c.isspace() for c in title):
        return False
    return bool(_SCHEME.match(title)) or len(re.findall(r"[/\\]", title)) >= 2


def _words_of(segment: str) -> str:
    """A de-slugged path segment's words without ids; "" when only ids, dates and page
    kinds are left ("article b44ae4d6d7"): those tell a model nothing. A kind's word in
    a real name stays ("home run derby")."""
    kept = [w for w in segment.split() if not _is_id(w)]
    named = [w for w in kept if w.lower() not in _GENERIC and _LETTERS.search(w)]
    return " ".join(kept) if named else ""


def _is_id(word: str) -> bool:
    """A hash or record id ("b44ae4d6d7"): letters and 3+ digits mixed in 6+ characters.

    Plain numbers stay ("csc 340"), and so do short mixes ("mp3", "covid19").
    """
    digits = sum(c.isdigit() for c in word)
    return len(word) >= 6 and digits >= 3 and digits < len(word)


def url_name(url: str) -> str:
    """A URL's or path's last meaningful segment, de-slugged; its host when none is.

    "https://www.cnn.com/2015/03/12/us/police-chief-resigns/index.html?ref=rss" gives
    "police chief resigns": the query, fragment, extension and the generic "index" go.
    """
    parts = urlsplit(url if not url.lower().startswith("www.") else f"//{url}")
    path = parts.path if parts.netloc or parts.scheme else re.split(r"[?#]", url)[0]
    for segment in reversed([s for s in re.split(r"[/\\]+", unquote(path)) if s]):
        name = _words_of(_SLUG.sub(" ", _EXTENSION.sub("", segment)))
        if name:
            return name
    host = parts.netloc.rsplit("@", 1)[-1].split(":")[0]
    return host.removeprefix("www.") or url


def short_title(title: str) -> str:
    """The title as the models read it: a URL's name, otherwise its first words."""
    title = title.strip()
    return _capped(url_name(title) if is_url_like(title) else title, TITLE_WORDS)


def short_section(section: str) -> str:
    """The section's own heading: the last of its path, its first words."""
    last = section.rsplit(SECTION_SEPARATOR, 1)[-1].strip()
    return _capped(last, SECTION_WORDS)


def model_heading(title: str, section: str | None) -> str:
    """"<short title> > <last section heading>", either part alone, or "" for neither.

    The section is left out when it repeats the title (a document whose first heading
    is its title).
    """
    head = short_title(title)
    own = short_section(section) if section and section != title else ""
    if not own or own.casefold() == head.casefold():
        return head
    return f"{head}{SECTION_SEPARATOR}{own}" if head else own
