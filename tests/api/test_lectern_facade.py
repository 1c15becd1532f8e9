"""Lectern's own logic (api/service.py): readiness, uploads, documents and what ask() reports.

The components are the fakes (hash embedder, echo generator); the store and indexes are real.
"""

from __future__ import annotations

import pytest

from api.service import Lectern
from ingest.pipeline import document_id
from lectern.errors import DocumentNotFoundError, NotReadyError
from lectern.types import AnswerEvent, TokenEvent
from model.answer import IDK
from retriever.corpus import Counts
from tests.fakes import EchoGenerator, HashEmbedder, OverlapReranker

FEES = b"# Fees\n\nHome students pay EUR 2,390 per year. Overseas students pay EUR 9,800.\n"


class Recording(EchoGenerator):
    def __init__(self, reply: str | None = None) -> None:
        super().__init__(reply)
        self.warmed = 0

    def warm_up(self) -> None:
        self.warmed += 1


@pytest.fixture
def cold(settings, embedder):
    svc = Lectern(settings, embedder=embedder, generator=Recording())
    yield svc
    svc.store.close()


# -- readiness -------------------------------------------------------------------------


def test_before_warm_up_nothing_searches_but_the_handed_in_parts_are_there(cold, embedder):
    with pytest.raises(NotReadyError, match=r"^Lectern used before warm_up\(\)$"):
        cold.corpus  # noqa: B018
    assert cold.embedder is embedder
    assert cold.reranker is None
    assert not cold.ready
    with pytest.raises(NotReadyError, match="^the models are still loading; retry shortly$"):
        cold.require_ready()
    with pytest.raises(NotReadyError, match=r"^generator used before warm_up_generator\(\)$"):
        cold.generator  # noqa: B018


def test_an_embedder_is_needed_before_warm_up(settings):
    svc = Lectern(settings, generator=Recording())
    with pytest.raises(NotReadyError, match=r"^Lectern used before warm_up\(\)$"):
        svc.embedder  # noqa: B018
    svc.store.close()


def test_warm_up_is_idempotent_and_ready_needs_both_halves(cold):
    cold.warm_up()
    corpus = cold.corpus
    cold.warm_up()
    assert cold.corpus is corpus
    assert cold.embedder is corpus.embedder
    assert not cold.ready
    cold.warm_up_generator()
    cold.warm_up_generator()
    assert cold.generator.warmed == 1
    assert cold.ready
    cold.require_ready()
    assert cold.fusion == corpus.fusion


def test_a_handed_in_reranker_serves_before_and_after_warm_up(settings, embedder):
    reranker = OverlapReranker()
    svc = Lectern(settings, embedder=embedder, reranker=reranker)
    assert svc.reranker is reranker
    svc.warm_up()
    assert svc.reranker is reranker and svc.corpus.reranker is reranker
    svc.store.close()


def test_counts_before_warm_up_come_from_the_store(cold, settings, embedder, tmp_path):
    assert cold.counts() == Counts(0, 0, 0, 0, 0)
    warm = Lectern(settings, embedder=embedder)
    warm.warm_up()
    (tmp_path / "fees.md").write_bytes(FEES)
    warm.ingest([tmp_path / "fees.md"])
    chunks = warm.store.chunk_count()
    assert chunks >= 1
    warm.store.close()
    again = Lectern(settings, embedder=embedder)
    assert again.counts() == Counts(1, chunks, chunks, 0, 0)
    again.warm_up()
    assert again.counts() == Counts(1, chunks, chunks, chunks, chunks)
    again.store.close()


# -- documents -------------------------------------------------------------------------


def test_an_upload_is_kept_under_the_upload_dir_by_its_safe_name(service, settings):
    result = service.ingest_upload("../Fees 2024.md", FEES)
    path = settings.upload_dir / "Fees 2024.md"
    assert (result.path, result.status) == ("Fees 2024.md", "added")
    assert path.read_bytes() == FEES
    assert result.document_id == document_id(str(path.resolve()))
    assert result.chunks >= 1 and result.detail == ""
    assert not list(settings.upload_dir.glob(".*.part"))
    # Searchable at once: the indexes were refreshed.
    assert service.search("overseas students fee", top_k=1)[0].chunk.document_id == (
        result.document_id
    )


def test_a_failed_first_upload_leaves_no_file(service, settings):
    result = service.ingest_upload("empty.txt", b"")
    assert (result.path, result.status, result.detail) == ("empty.txt", "failed", "file is empty")
    assert not (settings.upload_dir / "empty.txt").exists()


def test_a_failed_re_upload_puts_the_earlier_file_back(service, settings):
    service.ingest_upload("fees.md", FEES)
    result = service.ingest_upload("fees.md", b"")
    assert result.status == "failed"
    assert (settings.upload_dir / "fees.md").read_bytes() == FEES
    assert service.counts().documents == 1


def test_a_duplicate_upload_is_not_kept(service, settings):
    first = service.ingest_upload("fees.md", FEES)
    dup = service.ingest_upload("copy.md", FEES)
    assert (dup.path, dup.status, dup.document_id) == ("copy.md", "duplicate", first.document_id)
    assert "fees.md" in dup.detail
    assert not (settings.upload_dir / "copy.md").exists()


def test_the_same_upload_again_is_unchanged_and_kept(service, settings):
    service.ingest_upload("fees.md", FEES)
    again = service.ingest_upload("fees.md", FEES)
    assert again.status == "unchanged"
    assert (settings.upload_dir / "fees.md").read_bytes() == FEES


def test_a_changed_upload_replaces_the_document(service):
    first = service.ingest_upload("fees.md", FEES)
    second = service.ingest_upload("fees.md", FEES.replace(b"9,800", b"10,400"))
    assert (second.status, second.document_id) == ("updated", first.document_id)
    hit = service.search("overseas students fee", top_k=1)[0].chunk
    assert "10,400" in hit.text


def test_documents_resolve_by_id_source_or_path(service, tmp_path, monkeypatch):
    path = tmp_path / "fees.md"
    path.write_bytes(FEES)
    service.ingest([path])
    info = service.documents()[0]
    assert service.resolve_document(info.id) == info
    assert service.resolve_document(info.source) == info
    monkeypatch.chdir(tmp_path)
    assert service.resolve_document("fees.md") == info  # relative to the working folder
    with pytest.raises(DocumentNotFoundError) as e:
        service.resolve_document("nothing.md")
    assert e.value.key == "nothing.md"


def test_deleting_an_upload_removes_its_file_but_not_an_ingested_one(service, tmp_path, settings):
    upload = service.ingest_upload("fees.md", FEES)
    own = tmp_path / "hours.txt"
    own.write_text("The library opens at 08:00 on weekdays.")
    service.ingest([own])
    gone = service.delete(upload.document_id)
    assert gone.id == upload.document_id
    assert not (settings.upload_dir / "fees.md").exists()
    service.delete(str(own))
    assert own.exists()
    assert service.documents() == []
    assert service.counts().indexed == 0


def test_a_document_file_is_served_while_it_exists(service, tmp_path):
    path = tmp_path / "fees.md"
    path.write_bytes(FEES)
    service.ingest([path])
    info = service.documents()[0]
    assert service.document_file(info.id) == (info, path.resolve())
    with pytest.raises(DocumentNotFoundError) as e:
        service.document_file("0123456789abcdef")
    assert e.value.key == "0123456789abcdef"
    path.unlink()
    with pytest.raises(DocumentNotFoundError) as e:
        service.document_file(info.id)
    # Named without its server path (outside the data dir: by its name; see shown_source).
    assert e.value.key == f"{info.id} (its file fees.md is gone)"


def test_ingest_refreshes_the_indexes_only_when_something_changed(service, tmp_path, monkeypatch):
    path = tmp_path / "fees.md"
    path.write_bytes(FEES)
    refreshed = []
    real = service.refresh
    monkeypatch.setattr(service, "refresh", lambda: (refreshed.append(1), real()))
    service.ingest([path])
    service.ingest([path])
    seen = []
    service.ingest([tmp_path / "missing.md"], seen.append)
    assert refreshed == [1]
    assert [r.status for r in seen] == ["failed"]


# -- answering -------------------------------------------------------------------------


@pytest.fixture
def answering(settings, embedder, tmp_path):
    svc = Lectern(
        settings, embedder=embedder,
        generator=Recording("Overseas students pay EUR 9,800 [1]."),
    )
    svc.warm_up()
    svc.warm_up_generator()
    (tmp_path / "fees.md").write_bytes(FEES)
    svc.ingest([tmp_path / "fees.md"])
    yield svc
    svc.store.close()


def test_ask_answers_from_the_passages_and_times_every_step(answering):
    result = answering.ask("What do overseas students pay?")
    assert not result.answer.abstained
    assert result.answer.text == "Overseas students pay EUR 9,800 [1]."
    assert [c.number for c in result.answer.citations] == [1]
    assert result.passages and "9,800" in result.passages[0].text
    assert result.timings.first_token_ms is None  # no stream, no first token
    # The prompt is built from the same passages.
    [messages] = answering.generator.seen
    assert "Passages:\n[1]" in messages[1]["content"]


def test_an_answer_reads_its_passages_sentence_vectors_from_the_store(answering, embedder):
    # The ingest's refresh stored them, so answering embeds no passage sentence.
    calls = embedder.calls
    result = answering.ask("What do overseas students pay?")
    assert result.passages and embedder.calls == calls
    # A store without them (written before they were kept): embedded per question.
    answering.store.db.execute("DELETE FROM sentence_vectors")
    again = answering.ask("What do overseas students pay?")
    assert embedder.calls == calls + 1
    assert again.passages == result.passages and again.answer == result.answer


def test_ask_stream_sends_the_reply_piece_by_piece_then_the_checked_answer(answering):
    events = list(answering.ask_stream("What do overseas students pay?"))
    assert all(isinstance(e, TokenEvent) for e in events[:-1])
    assert "".join(e.text for e in events[:-1]) == "Overseas students pay EUR 9,800 [1]."
    last = events[-1]
    assert isinstance(last, AnswerEvent)
    assert last.result.answer.text == "Overseas students pay EUR 9,800 [1]."
    assert last.result.timings.first_token_ms is not None  # the stream had a first token


def test_an_off_topic_question_abstains_with_the_passages_it_saw(answering):
    answering.settings.generation.min_relevance = 1.01  # nothing can be this relevant
    result = answering.ask("What do overseas students pay?")
    assert (result.answer.text, result.answer.abstained) == (IDK, True)
    assert result.passages  # what was retrieved is still shown
    assert answering.generator.seen == []
    events = list(answering.ask_stream("What do overseas students pay?"))
    assert len(events) == 1 and events[0].result.answer.abstained


def test_top_k_limits_the_passages_retrieved(answering, tmp_path):
    for i in range(4):
        (tmp_path / f"more{i}.md").write_text(f"# Fees {i}\n\nStudents pay fee number {i}.\n")
    answering.ingest(sorted(tmp_path.glob("more*.md")))
    assert len(answering.ask("What do students pay?", top_k=1).passages) <= 1
    wide = answering.ask("What do students pay?", top_k=5)
    assert 1 < len(wide.passages) <= 5


def test_an_empty_store_abstains_at_once(settings):
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=Recording("Anything [1]."))
    svc.warm_up_generator()
    result = svc.ask("What do overseas students pay?")
    assert (result.answer.text, result.answer.citations, result.answer.abstained) == (
        IDK, [], True
    )
    assert result.passages == [] and svc.generator.seen == []
    svc.store.close()


def test_search_and_its_modes_warm_up_on_first_use(settings, embedder, tmp_path):
    svc = Lectern(settings, embedder=embedder)
    assert svc.search("anything") == []  # warms up on its own
    (tmp_path / "fees.md").write_bytes(FEES)
    svc.ingest([tmp_path / "fees.md"])
    for mode in ("hybrid", "dense", "bm25"):
        hits = svc.search("overseas students", top_k=1, mode=mode)
        assert len(hits) == 1 and "9,800" in hits[0].chunk.text
    svc.store.close()


# -- building from settings ------------------------------------------------------------


def test_the_encoder_is_built_from_the_settings_with_its_onnx_file(settings, monkeypatch, tmp_path):
    import hashlib
    from types import SimpleNamespace

    import api.components as service_module

    asked = []

    def encoder(s):
        asked.append(s.models.encoder)
        return SimpleNamespace(folder=tmp_path / "enc", fingerprint="enc@1")

    monkeypatch.setattr(service_module.prepare, "encoder", encoder)
    settings.models.encoder_backend = "onnx"
    settings.ingest.embed_batch_size = 7
    built = service_module.build_embedder(settings, "cpu")
    from retriever.embedder import passage_fingerprint

    # The ONNX file is of the weights alone; the vectors' fingerprint names the passage text.
    key = hashlib.sha256(b"enc@1").hexdigest()[:16]
    assert built.onnx_path == settings.model_cache_dir / f"encoder-{key}.onnx"
    assert (built.folder, built.fingerprint, built.device, built.batch_size) == (
        tmp_path / "enc", passage_fingerprint("enc@1"), "cpu", 7
    )
    assert asked == [settings.models.encoder]
    settings.models.encoder_backend = "torch"
    on_gpu = service_module.build_embedder(settings, "cuda")
    assert (on_gpu.onnx_path, on_gpu.device) == (None, "cuda")


def test_reranking_off_builds_no_reranker(settings):
    from api.service import build_reranker

    settings.retrieval.rerank = False
    assert build_reranker(settings) is None


def test_no_reranker_anywhere_means_none(settings, monkeypatch):
    import api.components as service_module

    settings.retrieval.rerank = True
    monkeypatch.setattr(service_module.prepare, "reranker", lambda s, shipped=None: None)
    assert service_module.build_reranker(settings) is None


def test_the_device_plan_follows_the_model_settings(settings):
    from api.service import device_plan

    settings.models.device = "cpu"
    settings.models.dtype = "float32"
    plan = device_plan(settings)
    assert plan.device == "cpu" and plan.dtype == "float32" and not plan.faiss_gpu


def test_open_corpus_is_warm_and_uses_what_it_is_handed(settings, embedder, tmp_path):
    from api.service import open_corpus
    from ingest.sqlite_store import SQLiteDocumentStore

    store = SQLiteDocumentStore(settings.store_path)
    reranker = OverlapReranker()
    corpus = open_corpus(settings, store=store, embedder=embedder, reranker=reranker)
    assert corpus.embedder is embedder and corpus.reranker is reranker
    assert corpus.store is store
    assert corpus.search("anything", 3, "hybrid") == []  # warmed up: searching works
    store.close()


def test_a_found_reranker_is_built_with_the_configured_backend(settings, monkeypatch, tmp_path):
    import api.components as service_module
    import retriever.cross_encoder as cross_encoder

    built, fallbacks = [], []

    class FakeCrossEncoder:
        def __init__(self, folder, backend="torch"):
            built.append((folder, backend))

    def reranker(s, shipped=None):
        fallbacks.append(shipped)
        return tmp_path

    settings.retrieval.rerank = True
    settings.models.reranker_backend = "onnx"
    monkeypatch.setattr(service_module.prepare, "reranker", reranker)
    monkeypatch.setattr(cross_encoder, "CrossEncoderReranker", FakeCrossEncoder)
    assert isinstance(service_module.build_reranker(settings), FakeCrossEncoder)
    assert built == [(tmp_path, "onnx")]
    assert fallbacks == [cross_encoder.SHIPPED_RERANKER]  # the shipped one is the fallback


def test_warm_up_builds_the_encoder_for_the_planned_device(settings, monkeypatch):
    import api.components as service_module

    devices = []

    def build(s, device_name):
        devices.append((s, device_name))
        return HashEmbedder(16)

    monkeypatch.setattr(service_module, "build_embedder", build)
    settings.models.device = "cpu"
    svc = Lectern(settings)
    svc.warm_up()
    assert devices == [(settings, "cpu")] and svc.embedder.dimension == 16
    assert svc.corpus.store is svc.store  # the service's own store, not a second one
    svc.store.close()


def test_relevance_exactly_at_the_minimum_is_answered(answering, monkeypatch):
    import api.answering as answering_module

    real = answering_module.compress

    def fixed(*args, **kwargs):
        c = real(*args, **kwargs)
        return type(c)(c.passages, c.best, 0.5)

    monkeypatch.setattr(answering_module, "compress", fixed)
    answering.settings.generation.min_relevance = 0.5
    assert not answering.ask("What do overseas students pay?").answer.abstained
    answering.settings.generation.min_relevance = 0.51
    off = answering.ask("What do overseas students pay?")
    assert off.answer.abstained and off.answer.citations == [] and off.passages


def test_deleting_an_upload_whose_file_is_gone_still_deletes(service, settings):
    upload = service.ingest_upload("fees.md", FEES)
    (settings.upload_dir / "fees.md").unlink()
    assert service.delete(upload.document_id).id == upload.document_id
    assert service.documents() == []


def test_search_passes_the_rerank_choice_on(settings, embedder, tmp_path):
    reranker = OverlapReranker()
    svc = Lectern(settings, embedder=embedder, reranker=reranker)
    (tmp_path / "fees.md").write_bytes(FEES)
    svc.ingest([tmp_path / "fees.md"])
    svc.search("overseas students", top_k=1, rerank=False)
    assert reranker.calls == 0
    svc.search("overseas students", top_k=1, rerank=True)
    assert reranker.calls == 1
    svc.store.close()


def test_switching_the_encoder_reports_progress(service, tmp_path):
    (tmp_path / "fees.md").write_bytes(FEES)
    service.ingest([tmp_path / "fees.md"])
    progress = []
    service.switch_encoder(HashEmbedder(32, "enc-b"), on_progress=lambda d, t: progress.append(t))
    assert progress and progress[-1] == service.store.chunk_count()
    assert service.embedder.fingerprint == "enc-b"


def test_the_reranker_scores_the_answer_settings_candidates(settings, embedder, tmp_path):
    reranker = OverlapReranker()
    settings.generation.rerank_candidates = 2
    svc = Lectern(settings, embedder=embedder, generator=Recording("Fee [1]."), reranker=reranker)
    svc.warm_up_generator()
    for i in range(5):
        (tmp_path / f"fee{i}.md").write_text(f"# Fees {i}\n\nStudents pay fee number {i}.\n")
    svc.ingest(sorted(tmp_path.glob("fee*.md")))
    svc.ask("What fee do students pay?")
    assert reranker.candidates == [2]
    svc.store.close()


def test_timings_are_the_clock_s_differences_to_two_decimals(answering, monkeypatch):
    import api.answering as answering_module

    monkeypatch.setattr(answering_module, "elapsed_ms", lambda start: 123.456)
    t = answering.ask("What do overseas students pay?").timings
    assert t.retrieve_ms == round(123.456 - t.rerank_ms, 2)  # the reranker's time is apart
    assert (t.generate_ms, t.total_ms) == (123.456, 123.456)
    answering.settings.generation.min_relevance = 1.01
    assert answering.ask("What do overseas students pay?").timings.total_ms == 123.456


def test_an_empty_store_still_reports_its_time(settings, monkeypatch):
    import api.answering as answering_module

    monkeypatch.setattr(answering_module, "elapsed_ms", lambda start: 7.5)
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=Recording("Anything [1]."))
    svc.warm_up_generator()
    t = svc.ask("What do overseas students pay?").timings
    assert (t.retrieve_ms, t.total_ms) == (round(7.5 - t.rerank_ms, 2), 7.5)
    svc.store.close()


def test_the_context_budget_setting_cuts_the_passages(answering, tmp_path):
    long = " ".join(f"Filler sentence number {i} about nothing at all." for i in range(40))
    (tmp_path / "long.md").write_text(f"# Overseas fees\n\n{long} Overseas students pay more.\n")
    answering.ingest([tmp_path / "long.md"])
    answering.settings.generation.context_tokens = 16
    result = answering.ask("What do overseas students pay?")
    assert sum(len(p.text.split()) for p in result.passages) <= 16


def test_an_uncited_reply_is_cited_by_the_passage_that_supports_it(answering):
    answering.generator.reply = "Overseas students pay EUR 9,800."
    result = answering.ask("What do overseas students pay?")
    assert result.answer.text == "Overseas students pay EUR 9,800. [1]"
    events = list(answering.ask_stream("What do overseas students pay?"))
    assert events[-1].result.answer.text == "Overseas students pay EUR 9,800. [1]"


def test_ask_stream_passes_top_k_on(answering, tmp_path):
    for i in range(4):
        (tmp_path / f"more{i}.md").write_text(f"# Fees {i}\n\nStudents pay fee number {i}.\n")
    answering.ingest(sorted(tmp_path.glob("more*.md")))
    [event] = [e for e in answering.ask_stream("What do students pay?", top_k=1)
               if isinstance(e, AnswerEvent)]
    assert len(event.result.passages) <= 1


def test_warm_up_builds_the_reranker_when_none_is_handed_in(settings, embedder, monkeypatch):
    import api.service as service_module

    built = OverlapReranker()
    monkeypatch.setattr(service_module, "build_reranker", lambda s: built)
    svc = Lectern(settings, embedder=embedder)
    svc.warm_up()
    assert svc.reranker is built
    svc.store.close()


def test_the_device_plan_passes_the_device_and_int8_settings_on(settings, monkeypatch):
    import api.components as service_module
    from lectern.device import DeviceCaps

    monkeypatch.setattr(service_module.device, "probe", lambda: DeviceCaps(cuda_devices=1))
    settings.models.device = "cpu"  # a GPU is there, but the settings keep to the CPU
    settings.models.dtype = "float32"
    settings.models.cpu_int8 = True
    plan = service_module.device_plan(settings)
    assert (plan.device, plan.dtype, plan.dynamic_int8) == ("cpu", "float32", True)
    settings.models.cpu_int8 = False
    assert service_module.device_plan(settings).dynamic_int8 is False
    settings.models.device = "auto"
    assert service_module.device_plan(settings).device == "cuda"


def test_open_corpus_opens_the_settings_store_and_builds_the_encoder(settings, monkeypatch):
    import api.components as service_module
    from ingest.sqlite_store import SQLiteDocumentStore
    from lectern.device import DeviceCaps

    built = []

    def build(s, device_name):
        built.append((s, device_name))
        return HashEmbedder(16)

    monkeypatch.setattr(service_module.device, "probe", lambda: DeviceCaps())
    monkeypatch.setattr(service_module, "build_embedder", build)
    corpus = service_module.open_corpus(settings)
    assert isinstance(corpus.store, SQLiteDocumentStore)
    assert corpus.store.path == settings.store_path
    assert built == [(settings, "cpu")] and corpus.embedder.dimension == 16
    assert corpus.search("anything", 3, "hybrid") == []
    corpus.store.close()


def test_open_corpus_closes_only_the_store_it_opened_when_warming_up_fails(
    settings, embedder, monkeypatch
):
    import api.components as service_module
    from ingest.sqlite_store import SQLiteDocumentStore

    class Tracked(SQLiteDocumentStore):
        closed = False

        def close(self) -> None:
            self.closed = True
            super().close()

    stores = []

    class Failing:
        def __init__(self, settings, store, *args, **kwargs):
            stores.append(store)

        def warm_up(self) -> None:
            raise RuntimeError("no index")

    monkeypatch.setattr(service_module, "SQLiteDocumentStore", Tracked)
    monkeypatch.setattr(service_module, "Corpus", Failing)
    with pytest.raises(RuntimeError, match="^no index$"):
        service_module.open_corpus(settings, embedder=embedder)
    [opened] = stores
    assert isinstance(opened, Tracked) and opened.closed
    handed = Tracked(settings.store_path)
    with pytest.raises(RuntimeError, match="^no index$"):
        service_module.open_corpus(settings, store=handed, embedder=embedder)
    assert stores[-1] is handed and not handed.closed  # the caller's store stays open
    handed.close()


def test_open_corpus_puts_the_index_on_the_gpu_the_plan_names(settings, embedder, monkeypatch):
    import api.components as service_module
    from lectern.device import DevicePlan

    gpu = DevicePlan("cuda", "float16", False, "sdpa", faiss_gpu=True)
    seen = []

    class Recorded:
        def __init__(self, settings, store, embedder, reranker, use_gpu=False):
            seen.append(use_gpu)

        def warm_up(self) -> None:
            pass

    monkeypatch.setattr(service_module, "device_plan", lambda s: gpu)
    monkeypatch.setattr(service_module, "Corpus", Recorded)
    svc = Lectern(settings, embedder=embedder)
    service_module.open_corpus(settings, store=svc.store, embedder=embedder)
    assert seen == [True]
    svc.store.close()


def test_a_handed_in_store_is_the_one_served(settings, embedder, tmp_path):
    from ingest.sqlite_store import SQLiteDocumentStore

    store = SQLiteDocumentStore(tmp_path / "elsewhere.sqlite3")
    svc = Lectern(settings, embedder=embedder, store=store)
    assert svc.store is store
    svc.warm_up()
    assert svc.corpus.store is store
    store.close()


def test_warm_up_generator_builds_the_configured_one_for_the_device_plan(
    settings, embedder, monkeypatch
):
    import api.service as service_module

    plan, planned, built = object(), [], []

    def device_plan(s):
        planned.append(s)
        return plan

    def build(s, p):
        built.append((s, p))
        return Recording()

    monkeypatch.setattr(service_module, "device_plan", device_plan)
    monkeypatch.setattr(service_module.generators, "build", build)
    svc = Lectern(settings, embedder=embedder)
    svc.warm_up_generator()
    assert planned == [settings] and built == [(settings, plan)]
    assert svc.generator.warmed == 1
    svc.store.close()


def test_a_handed_in_generator_is_used_and_none_is_built(settings, embedder, monkeypatch):
    import api.service as service_module

    def build(s, p):
        raise AssertionError("a generator was built although one was handed in")

    monkeypatch.setattr(service_module.generators, "build", build)
    generator = Recording()
    svc = Lectern(settings, embedder=embedder, generator=generator)
    svc.warm_up_generator()
    assert svc.generator is generator and generator.warmed == 1
    svc.store.close()


def test_search_returns_as_many_hits_as_top_k_asks(service, tmp_path):
    for i in range(4):
        (tmp_path / f"fee{i}.md").write_text(f"# Fees {i}\n\nStudents pay fee number {i}.\n")
    service.ingest(sorted(tmp_path.glob("fee*.md")))
    assert len(service.search("What fee do students pay?", top_k=1)) == 1
    assert len(service.search("What fee do students pay?", top_k=3)) == 3


def test_an_uploaded_pdf_reports_its_pages(service, tmp_path):
    from tests.conftest import write_pdf

    pdf = write_pdf(
        tmp_path / "fees.pdf", [("Fees", "Home EUR 2,390."), ("Deadlines", "Apply by 1 May.")]
    )
    result = service.ingest_upload("fees.pdf", pdf.read_bytes())
    assert (result.path, result.status, result.pages) == ("fees.pdf", "added", 2)
