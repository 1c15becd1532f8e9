"""lectern.sentences: one split of a passage into sentences, for the store and the
compressor alike."""

from lectern.sentences import SPLIT_VERSION, passage_sentences, sentence_key, sentences
from lectern.types import Chunk


def test_sentences_keep_titles_together():
    assert sentences("Taught by Dr. Ilse Marrow. Next one!\nHeading") == [
        "Taught by Dr. Ilse Marrow.",
        "Next one!",
        "Heading",
    ]




def test_a_passage_s_headings_are_not_its_sentences():
    chunk = Chunk(1, "d", "Fees:\nHome students pay EUR 2,390.\nBA History", "/d/f.md",
                  "Tuition Fees", "BA History > Fees")
    assert passage_sentences(chunk) == ["Home students pay EUR 2,390."]
    only_heading = Chunk(2, "d", "Fees:", "/d/f.md", "Tuition Fees", "Fees")
    assert passage_sentences(only_heading) == ["Fees:"]  # the text itself, not nothing


def test_the_key_names_the_encoder_and_the_split_version():
    assert sentence_key("minilm#abc") == f"minilm#abc|sentences-v{SPLIT_VERSION}"
    assert sentence_key("a") != sentence_key("b")
