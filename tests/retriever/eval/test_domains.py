"""The cross-domain evaluation sets, on tiny files shaped like the training sources."""

import json

import pytest

from lectern.errors import ConfigError, DataFileError
from lectern.text import words
from retriever.eval.domains import (
    DOMAINS,
    LONG_TITLE,
    holdout_share,
    load_domains,
    long_title,
    parse_domains,
    with_long_titles,
)
from retriever.train import reranker_data as rd
from tests.fakes import word_count
from tests.retriever.eval.sources import (
    BOOLQ_TOPICS,
    HELD,
    SHARE,
    STORIES,
    paragraph_split,
    write_reranker_record,
    write_sources,
)


def load(folder, names, **kw):
    return load_domains(folder, names, paragraph_split, SHARE, **kw)


@pytest.fixture
def data(tmp_path):
    return write_sources(tmp_path / "data")


def test_the_fixture_holds_out_what_it_says():
    assert {s["id"] for s in STORIES if rd.is_validation(s["id"], SHARE)} == HELD


def test_coqa_is_split_by_its_source_with_every_document_as_items(data):
    cnn, race, wiki = load(data, ["coqa-cnn", "coqa-race", "coqa-wikipedia"])
    assert [d.name for d in (cnn, race, wiki)] == ["coqa-cnn", "coqa-race", "coqa-wikipedia"]
    # Every cnn story's chunk is an item, held out or not: the others are distractors.
    assert [i.id for i in cnn.items] == ["cnn-1/0", "cnn-1/1", "cnn-2/0", "cnn-2/1", "cnn-4/0"]
    assert [i.id for i in race.items] == ["race-1/0", "race-2/0", "race-2/1"]
    assert cnn.items[1].text == "Ferries to the northern islands will leave every forty minutes "\
        "from June."
    assert wiki.items[0].title == "wiki-2" and cnn.items[0].title == ""  # as training titles them
    assert cnn.prefix == "domain/coqa-cnn/"
    assert cnn.info["documents"] == 3 and cnn.info["held_out_documents"] == 2
    assert cnn.info["documents_sampled"] is None and cnn.info["holdout_share"] == SHARE


def test_only_questions_on_held_out_documents_are_asked(data):
    cnn, race = load(data, ["coqa-cnn", "coqa-race"])
    assert [q.text for q in cnn.queries] == [
        "How often will ferries leave for the northern islands?",
        "When was the mountain road cleared by the ploughs?",
    ]  # not cnn-4's (trained on), not the follow-up "Did she agree?"
    assert cnn.info["training_questions_left_out"] == 1
    assert [q.text for q in race.queries] == ["How many oak trees did the class plant?"]
    assert all(q.id.split("/")[0] in HELD for q in cnn.queries + race.queries)


def test_qrels_are_the_chunks_that_hold_the_answer(data):
    (cnn,) = load(data, ["coqa-cnn"])
    assert [q.qrels for q in cnn.queries] == [{"cnn-1/1": 1.0}, {"cnn-2/1": 1.0}]
    assert cnn.info["relevant_per_query"] == 1.0


def test_a_large_domain_keeps_every_held_out_document_and_a_seeded_sample(data):
    (full,) = load(data, ["boolq"], max_items=None)
    assert len(full.items) == len(BOOLQ_TOPICS)
    held = {i.id for i in full.items if rd.is_validation(i.id.split("/")[0], SHARE)}
    assert 0 < len(held) < 8, "the fixture must leave room for a sample"
    (cut,) = load(data, ["boolq"], max_items=8, seed=3)
    assert len(cut.items) == 8
    assert held <= {i.id for i in cut.items}
    assert cut.queries == full.queries  # every held-out question is still asked
    assert cut.info["documents_sampled"] == {
        "seed": 3, "max_items": 8, "chunks_in_domain": len(BOOLQ_TOPICS),
        "note": "every held-out document kept; the others a seeded sample",
    }
    (again,) = load(data, ["boolq"], max_items=8, seed=3)
    assert again.items == cut.items
    others = [{i.id for i in load(data, ["boolq"], max_items=8, seed=s)[0].items}
              for s in range(6)]
    assert len({frozenset(o) for o in others}) > 1, "another seed, another sample"


def test_each_source_is_read_once_for_all_its_domains(data, monkeypatch):
    calls = []
    real = rd.load_source
    monkeypatch.setattr(rd, "load_source", lambda name, *a, **k: calls.append(name)
                        or real(name, *a, **k))
    load(data, ["coqa-cnn", "coqa-race", "boolq"])
    assert calls == ["coqa", "boolq"]


def test_long_titles_keep_the_queries_and_carry_no_word_of_the_text(data):
    (cnn,) = load(data, ["coqa-cnn"])
    long = with_long_titles(cnn, word_count)
    assert long.queries == cnn.queries and long.name == "coqa-cnn (long titles)"
    assert [i.id for i in long.items] == [i.id for i in cnn.items]
    assert [i.text for i in long.items] == [i.text for i in cnn.items]
    titles = [i.title for i in long.items]
    assert len(set(titles)) == len(titles), "each item's own"
    assert titles == [i.title for i in with_long_titles(cnn).items], "deterministic"
    assert titles[0] == long_title("cnn-1/0")
    assert titles[0].startswith("https://www.example.edu/news/")
    for item in long.items:
        assert not set(words(item.title)) & set(words(item.text))
    assert long.info["long_titles"]["of"] == "coqa-cnn"
    assert long.info["long_titles"]["template"] == LONG_TITLE
    assert long.info["long_titles"]["title_tokens_median"] == word_count(titles[0])


def test_long_titles_are_about_forty_encoder_tokens():
    from retriever.cross_encoder import SHIPPED_RERANKER
    from retriever.eval.domains import token_count

    count = token_count(SHIPPED_RERANKER)
    sizes = sorted(count(long_title(f"doc-{n}/{n % 3}")) for n in range(200))
    assert 36 <= sizes[100] <= 46, sizes[100]


def test_the_hold_out_share_comes_from_the_reranker_record(tmp_path):
    from retriever.cross_encoder import SHIPPED_RERANKER

    assert holdout_share(SHIPPED_RERANKER) == 0.1  # the shipped reranker's val_fraction
    assert holdout_share(write_reranker_record(tmp_path / "r", 0.25)) == 0.25
    with pytest.raises(ConfigError, match="names no hold-out share"):
        holdout_share(write_reranker_record(tmp_path / "none", None))
    with pytest.raises(ConfigError, match="names no hold-out share"):
        holdout_share(tmp_path / "missing")


def test_training_split_chunks_as_the_reranker_was_trained(tmp_path):
    from retriever.cross_encoder import SHIPPED_RERANKER
    from retriever.eval.domains import token_count, training_split

    split, count = training_split(SHIPPED_RERANKER), token_count(SHIPPED_RERANKER)
    text = "\n\n".join(" ".join(f"word{n}{m}" for m in range(60)) for n in range(6))
    pieces = split(text)
    assert len(pieces) > 1
    assert max(count(p) for p in pieces) <= 200  # the record's chunk_tokens


def test_domain_names_are_checked(data):
    assert parse_domains(None) == list(DOMAINS)
    assert parse_domains(" coqa-cnn, boolq ") == ["coqa-cnn", "boolq"]
    with pytest.raises(ConfigError, match="unknown domain 'coqa-news'; known: coqa-race"):
        parse_domains("coqa-news")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_domains("boolq,boolq")
    with pytest.raises(ConfigError, match="unknown domain 'squad'"):
        load(data, ["squad"])
    assert "squad" not in DOMAINS


def test_missing_or_bad_source_files_are_named(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="quac"):
        load(data, ["quac"])
    (data / "coqa" / "coqa-dev.json").write_text(json.dumps({"data": [{"id": "x"}]}))
    with pytest.raises(DataFileError, match="coqa-dev.json: not a coqa file"):
        load(data, ["coqa-race"])


def test_a_titled_item_keeps_its_title_as_the_urls_slug():
    from lectern.headings import model_heading

    url = long_title("boolq/abc/0", "Home Run Derby")
    assert "/section/home-run-derby-" in url
    assert url == long_title("boolq/abc/0", "Home Run Derby"), "deterministic"
    # What the encoder and the reranker read of it: the title's words, nothing else.
    assert model_heading(url, None) == "home run derby"
    assert model_heading(long_title("cnn-1/0"), None) == "news"
