"""The bounded heading the encoder and the reranker read (lectern.headings)."""

import pytest

from lectern.headings import (
    MAX_CHARS,
    SECTION_WORDS,
    TITLE_WORDS,
    is_url_like,
    model_heading,
    short_section,
    short_title,
    url_name,
)
from lectern.types import Chunk

NEWS_URL = (
    "https://www.cnn.com/2015/03/12/us/ferguson-police-chief-resigns-after-justice-report/"
    "index.html?eref=rss_topstories&utm_source=feed#comments"
)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (NEWS_URL, "ferguson police chief resigns after justice report"),
        ("http://dailymail.co.uk/news/article-3012345/Dog-bites-postman.html", "Dog bites postman"),
        ("www.uni.example/study/msc-data-science/fees_and_funding.php", "fees and funding"),
        ("https://x.org/wiki/Caf%C3%A9_society", "Café society"),
        ("docs/handbooks/module_guide.pdf", "module guide"),
        # Nothing in the path names the page: dates, ids and page kinds are passed over.
        ("https://news.example.com/2020/05/a1b2c3d4e5f6/index.html", "news.example.com"),
        ("https://www.example.com/", "example.com"),
    ],
)
def test_a_url_is_named_by_its_last_meaningful_path_segment(url, name):
    assert is_url_like(url)
    assert url_name(url) == name
    assert short_title(url) == name  # short enough already


@pytest.mark.parametrize("title", ["MSc Data Science", "I/O", "fees.pdf", "a/b", "Fees / Funding"])
def test_a_title_that_is_no_url_is_not_taken_for_one(title):
    assert not is_url_like(title)
    assert short_title(title) == title


def test_a_long_title_keeps_its_first_words():
    title = "MSc Data Science Programme Handbook for the Academic Year 2025 to 2026, Edition 3"
    assert short_title(title) == " ".join(title.split()[:TITLE_WORDS])
    assert short_title("  Fees   and\n funding ") == "Fees and funding"


def test_a_url_of_many_words_is_cut_to_the_title_s_words():
    slug = "-".join(f"word{i}" for i in range(30))
    assert short_title(f"https://news.example.com/2021/{slug}.html").split() == [
        f"word{i}" for i in range(TITLE_WORDS)
    ]


def test_one_very_long_word_is_cut_to_the_character_cap():
    word = "Supercalifragilisticexpialidocious" * 5
    assert short_title(word) == word[:MAX_CHARS]
    words = " ".join(["extraordinarily"] * 6)
    cut = short_title(words)
    assert len(cut) <= MAX_CHARS and cut.split() == ["extraordinarily"] * len(cut.split())


def test_a_deep_section_path_keeps_its_last_heading():
    path = "Faculty of Science > Department of Computing > BSc Computer Science > Module handbook"
    assert short_section(path) == "Module handbook"
    long = "Handbook > " + " ".join(f"w{i}" for i in range(20))
    assert short_section(long).split() == [f"w{i}" for i in range(SECTION_WORDS)]


@pytest.mark.parametrize(
    ("title", "section", "heading"),
    [
        ("Handbook", "Faculty > Programme > Module handbook > Assessment", "Handbook > Assessment"),
        ("Fees", None, "Fees"),
        ("Fees", "Fees", "Fees"),  # a section that repeats the title is left out
        ("Fees", "Handbook > fees", "Fees"),
        ("", "Admissions > Deadlines", "Deadlines"),
        ("", None, ""),
        (NEWS_URL, "Reactions", "ferguson police chief resigns after justice report > Reactions"),
    ],
)
def test_the_model_heading_is_the_short_title_and_the_last_section(title, section, heading):
    assert model_heading(title, section) == heading


def test_a_chunk_s_model_text_has_the_bounded_heading_and_context_text_the_whole_path():
    section = "Faculty of Science > Department of Computing > BSc Computer Science > Fees"
    chunk = Chunk(1, "d", "International: EUR 18,000.", "s.html", NEWS_URL, section)
    assert chunk.model_heading == model_heading(NEWS_URL, section)
    assert chunk.model_text == (
        "ferguson police chief resigns after justice report > Fees\nInternational: EUR 18,000."
    )
    # BM25 keeps reading every word of the path and the title.
    assert chunk.context_text == f"{NEWS_URL} > {section}\nInternational: EUR 18,000."
    bare = Chunk(2, "d", "Just text.", "s.txt", "")
    assert bare.model_text == bare.context_text == "Just text."


def test_ids_and_page_kinds_are_dropped_but_numbers_stay() -> None:
    from lectern.headings import url_name

    assert url_name("https://www.example.edu/news/2017/05/17/section/article-b44ae4d6d7/"
                    "index.html?utm_source=newsletter") == "news"
    assert url_name("https://www.uni.example/faculty/csc-340-operating-systems") == (
        "csc 340 operating systems")
    assert url_name("https://www.example.com/a1b2c3/") == "example.com"
    assert url_name("https://www.example.com/covid19-rules") == "covid19 rules"
