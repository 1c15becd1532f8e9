import itertools

import pytest

from ingest.chunker import Chunker
from ingest.partition import Block
from tests.fakes import word_count


def words(n: int, stem: str = "w") -> str:
    return " ".join(f"{stem}{i}" for i in range(n))


def test_headings_stay_with_their_text_and_form_a_path():
    blocks = [
        Block("Handbook", "title", depth=0),
        Block("Fees", "title", depth=1),
        Block(words(20, "fee"), "text"),
        Block("Deadlines", "title", depth=1),
        Block(words(20, "day"), "text"),
    ]
    pieces = Chunker(word_count, chunk_tokens=50, overlap=5, min_section_tokens=5).split(blocks)
    assert [p.section for p in pieces] == ["Handbook > Fees", "Handbook > Deadlines"]
    assert pieces[0].text.startswith("Handbook\n\nFees\n\nfee0")
    assert pieces[1].text.startswith("Deadlines\n\nday0")


def test_every_chunk_respects_the_token_budget_and_overlaps():
    blocks = [Block("Long section", "title", depth=0)] + [
        Block(words(30, f"p{j}x"), "text") for j in range(10)
    ]
    pieces = Chunker(word_count, chunk_tokens=40, overlap=10, min_section_tokens=0).split(blocks)
    assert len(pieces) > 5
    assert all(word_count(p.text) <= 40 for p in pieces)
    joined = " ".join(p.text for p in pieces)
    for j in range(10):  # nothing is lost
        assert f"p{j}x29" in joined


def test_a_paragraph_longer_than_a_chunk_is_split_with_overlap():
    blocks = [Block(words(120), "text")]
    pieces = Chunker(word_count, chunk_tokens=40, overlap=10, min_section_tokens=0).split(blocks)
    assert len(pieces) >= 3
    assert all(word_count(p.text) <= 40 for p in pieces)
    for a, b in itertools.pairwise(pieces):
        shared = set(a.text.split()) & set(b.text.split())
        assert 1 <= len(shared) <= 10


def test_short_sections_merge_forward():
    blocks = [
        Block("Faculty of Science", "title", depth=0),
        Block("BSc Biology", "title", depth=1),
        Block(words(30), "text"),
        Block("Tiny", "title", depth=1),
        Block("two words", "text"),
    ]
    pieces = Chunker(word_count, chunk_tokens=100, overlap=0, min_section_tokens=10).split(blocks)
    assert len(pieces) == 1
    # The heading-only "Faculty of Science" run is named by the section it introduces.
    assert pieces[0].section == "Faculty of Science > BSc Biology"
    assert "two words" in pieces[0].text


def test_pages_follow_the_text():
    blocks = [Block("Manual", "title", page=1, depth=0)] + [
        Block(words(30, f"pg{p}w"), "text", page=p) for p in (1, 2, 3)
    ]
    pieces = Chunker(word_count, chunk_tokens=35, overlap=0, min_section_tokens=0).split(blocks)
    pages = {p.page for p in pieces}
    assert pages == {1, 2, 3}
    for p in pieces:
        first = next(w for w in p.text.split() if w.startswith("pg"))
        assert first.startswith(f"pg{p.page}w")


def test_text_before_any_heading_has_no_section():
    pieces = Chunker(word_count, 50, 0, 0).split([Block("just text here", "text")])
    assert pieces[0].section is None and pieces[0].text == "just text here"


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_are_rejected(size, overlap):
    with pytest.raises(ValueError, match=str(size) if size == 0 else "overlap"):
        Chunker(word_count, size, overlap)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_tokens": 0}, "max_tokens must be positive, got 0"),
     ({"special_tokens": -1}, "special_tokens must be >= 0, got -1")],
)
def test_a_bad_window_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Chunker(word_count, 50, 5, **kwargs)


DEEP = [
    Block("Faculty of Science", "title", depth=0),
    Block("Department of Computing", "title", depth=1),
    Block("BSc Computer Science", "title", depth=2),
    Block("Module handbook for the second year of study and its assessments", "title", depth=3),
]
LONG_TITLE = "Regulations for taught programmes of the University of Fenmoor 2025 to 2026 edition"


def test_a_long_heading_takes_its_tokens_from_the_piece_not_from_the_encoder():
    from lectern.headings import model_heading

    blocks = [*DEEP, *(Block(words(25, f"p{j}x"), "text") for j in range(8))]
    chunker = Chunker(word_count, chunk_tokens=60, overlap=5, min_section_tokens=10,
                      max_tokens=40, special_tokens=2)
    pieces = chunker.split(blocks, LONG_TITLE)
    assert {p.section for p in pieces} == {" > ".join(b.text for b in DEEP)}
    heading = model_heading(LONG_TITLE, pieces[0].section)
    assert heading.endswith("> Module handbook for the second year of study")
    assert chunker.budget(LONG_TITLE, pieces[0].section) == 40 - 2 - word_count(heading) < 60
    # What the encoder reads of every piece (special tokens, heading, text) fits its window.
    assert all(2 + word_count(f"{heading}\n{p.text}") <= 40 for p in pieces)
    joined = " ".join(p.text for p in pieces)
    assert all(f"p{j}x24" in joined for j in range(8)), "nothing is lost"
    # Without a window, or with room to spare, the chunk size alone decides.
    for wide in (Chunker(word_count, 60, 5, 10), Chunker(word_count, 60, 5, 10, max_tokens=512)):
        assert wide.budget(LONG_TITLE, pieces[0].section) == 60
        assert max(word_count(p.text) for p in wide.split(blocks, LONG_TITLE)) > 40


def test_a_window_smaller_than_any_heading_still_leaves_a_quarter_of_the_chunk():
    chunker = Chunker(word_count, chunk_tokens=40, overlap=5, min_section_tokens=0,
                      max_tokens=8, special_tokens=2)
    assert chunker.budget(LONG_TITLE, "Fees") == 10
    pieces = chunker.split([Block(words(100), "text")], LONG_TITLE)
    assert len(pieces) >= 10 and all(word_count(p.text) <= 10 for p in pieces)
