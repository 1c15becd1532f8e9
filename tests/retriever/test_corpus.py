"""retriever.corpus: vectors of an earlier passage text are replaced on the next start,
and every chunk has its sentence vectors from the serving encoder."""

import numpy as np

from ingest.pipeline import Ingestor
from ingest.sqlite_store import SQLiteDocumentStore
from lectern.sentences import passage_sentences, sentence_key
from retriever.corpus import Corpus
from retriever.embedder import passage_fingerprint
from tests.fakes import HashEmbedder

URL = "https://news.example.com/2015/03/12/world/library-opening-hours-change-in-spring/index.html"
TEXT = "The library now opens at eight.\n\nOn Sundays it stays closed until noon."


def test_vectors_of_another_passage_text_are_re_embedded_from_the_model_text(settings):
    store = SQLiteDocumentStore(settings.store_path)
    try:
        # Stored as before the passage format was part of the fingerprint.
        writer = Ingestor(store, HashEmbedder(fingerprint="minilm#53aa"), settings.ingest)
        assert writer.ingest_text("news:1", URL, TEXT).status == "added"
        chunks = store.all_chunks()
        old = store.vectors(store.chunk_ids(), "minilm#53aa")
        # The same weights, today's passage text: another fingerprint, so no vector yet.
        embedder = HashEmbedder(fingerprint=passage_fingerprint("minilm#53aa"))
        assert len(store.ids_without_vectors(embedder.fingerprint)) == len(chunks)
        corpus = Corpus(settings, store, embedder)
        corpus.warm_up()
        assert len(store.ids_without_vectors(embedder.fingerprint)) == 0
        new = store.vectors(store.chunk_ids(), embedder.fingerprint)
        assert np.allclose(new, embedder.embed_passages([c.model_text for c in chunks]))
        assert not np.allclose(new, embedder.embed_passages([c.context_text for c in chunks]))
        assert np.allclose(store.vectors(store.chunk_ids(), "minilm#53aa"), old)
        assert len(corpus.index) == len(chunks), "the index is built from the new vectors"
        top = corpus.search("library opening hours Sundays", top_k=1, mode="dense")
        assert top and top[0].chunk.document_id == chunks[0].document_id
    finally:
        store.close()


def test_every_chunk_gets_its_sentence_vectors_from_the_serving_encoder(settings):
    store = SQLiteDocumentStore(settings.store_path)
    try:
        embedder = HashEmbedder(fingerprint="enc-a")
        writer = Ingestor(store, embedder, settings.ingest)
        assert writer.ingest_text("news:1", URL, TEXT).status == "added"
        corpus = Corpus(settings, store, embedder)
        corpus.warm_up()  # the start after an ingest: refresh
        key = sentence_key(embedder.fingerprint)
        assert len(store.ids_without_sentence_vectors(key)) == 0
        chunks = store.all_chunks()
        kept = store.sentence_vectors([c.id for c in chunks], key)
        for c in chunks:
            np.testing.assert_allclose(
                kept[c.id], embedder.embed_passages(passage_sentences(c)), rtol=1e-6)
        # An ingest after the start: its refresh adds them too.
        assert writer.ingest_text("news:2", URL + "2", "Fines are EUR 0.20 a day.").status \
            == "added"
        corpus.refresh()
        assert len(store.ids_without_sentence_vectors(key)) == 0
        # A new encoder: its own sentence vectors, the old ones kept.
        other = HashEmbedder(32, fingerprint="enc-b")
        corpus.switch_encoder(other)
        assert len(store.ids_without_sentence_vectors(sentence_key("enc-b"))) == 0
        assert len(store.ids_without_sentence_vectors(key)) == 0
    finally:
        store.close()
