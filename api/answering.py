"""One question answered: the follow-up made to stand alone, the passages found for it,
the generator's reply checked against them, and the answer kept in the answer log.

`Lectern` owns one `Answerer` and hands it the corpus and the serving generator; the
admission of a question (its place among those in flight) stays with `Lectern`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

from lectern.protocols import AnswerLog, Embedder, Message
from lectern.sentences import sentence_key
from lectern.settings import Settings
from lectern.timing import elapsed_ms
from lectern.types import (
    NO_TOKENS,
    Answer,
    AnswerEvent,
    AskResult,
    LoggedAnswer,
    SearchFilter,
    StreamEvent,
    Timings,
    TokenEvent,
    Turn,
)
from model.answer import IDK, assemble, build_messages
from model.context import Compressed, compress
from model.generators.served import ServedGenerator
from model.rewrite import build_rewriter
from retriever.corpus import Corpus

log = logging.getLogger(__name__)
PURGE_EVERY_S = 3600.0  # the retention is in days: an hourly sweep keeps it to the hour


class Answerer:
    def __init__(
        self,
        settings: Settings,
        corpus: Callable[[], Corpus],
        embedder: Callable[[], Embedder],
        generators: ServedGenerator,
        answer_log: AnswerLog | None,
    ) -> None:
        self.settings = settings
        self._corpus = corpus
        self._embedder = embedder
        self._generators = generators
        self.answer_log = answer_log
        c = settings.conversation
        self.rewriter = build_rewriter(
            c.rewrite, c.rewrite_turns, generators.generate, c.history_for == "referring"
        )
        self._purged_at: float | None = None
        self._purge_lock = threading.Lock()

    # -- the steps ---------------------------------------------------------------------

    def _context(
        self,
        question: str,
        history: Sequence[Turn],
        top_k: int | None,
        timings: Timings,
        start: float,
        filters: SearchFilter | None,
    ) -> AskResult | tuple[Compressed, str]:
        """The compressed passages to answer from and the question searched for, or the
        abstention when there are none."""
        g = self.settings.generation
        corpus = self._corpus()
        standalone = self.rewriter.rewrite(question, history)
        focus = self.rewriter.focus(question, history, standalone)
        hits, rerank_ms = corpus.search_timed(
            standalone, top_k or g.passages, "hybrid", None, g.rerank_candidates, filters=filters
        )
        timings.rerank_ms = rerank_ms
        timings.retrieve_ms = round(elapsed_ms(start) - rerank_ms, 2)
        passages = [h.chunk for h in hits]
        if not passages:  # nothing retrieved: no model call, an honest abstention
            timings.total_ms = elapsed_ms(start)
            return AskResult(Answer(IDK, [], True), [], timings, standalone, usage=NO_TOKENS)
        self._generators.require()  # before compressing: a request then fails fast
        # The sentences kept, the relevance gate and the quote fallback follow the focus.
        embedder = self._embedder()
        # Stored at ingest (lectern.sentences): embedding them here costs most of what
        # the steps before the generator take.
        stored = corpus.store.sentence_vectors(
            [p.id for p in passages], sentence_key(embedder.fingerprint)
        )
        context = compress(focus, passages, embedder, g.context_tokens, stored=stored)
        if context.relevance < g.min_relevance:  # off-topic: nothing here answers it
            timings.total_ms = elapsed_ms(start)
            return AskResult(
                Answer(IDK, [], True), context.passages, timings, standalone, usage=NO_TOKENS
            )
        return context, standalone

    def _messages(
        self, question: str, history: Sequence[Turn], context: Compressed
    ) -> list[Message]:
        turns = self.settings.conversation.prompt_turns
        return build_messages(question, context.passages, history[-turns:] if turns else ())

    def _result(
        self,
        messages: list[Message],
        reply: str,
        context: Compressed,
        standalone: str,
        timings: Timings,
        start: float,
    ) -> AskResult:
        g = self.settings.generation
        fallback = context.best if g.quote_fallback else None
        answer = assemble(reply, context.passages, g.min_support, fallback)
        # Counted from the prompt and the reply as the generator had them (the checked
        # answer may be a quote instead): what the OpenAI route reports as usage.
        usage = self._generators.usage(messages, reply)
        timings.total_ms = elapsed_ms(start)
        return AskResult(answer, context.passages, timings, standalone, usage=usage)

    # -- answering -------------------------------------------------------------------

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        filters: SearchFilter | None = None,
        history: Sequence[Turn] = (),
    ) -> AskResult:
        start = time.perf_counter()
        timings = Timings()
        found = self._context(question, history, top_k, timings, start, filters)
        if isinstance(found, AskResult):
            return self._logged(question, found)
        context, standalone = found
        gen_start = time.perf_counter()
        messages = self._messages(question, history, context)
        reply = self._generators.generate(messages)
        timings.generate_ms = elapsed_ms(gen_start)  # no first token: the reply comes whole
        result = self._result(messages, reply, context, standalone, timings, start)
        return self._logged(question, result)

    def ask_stream(
        self,
        question: str,
        top_k: int | None = None,
        filters: SearchFilter | None = None,
        history: Sequence[Turn] = (),
    ) -> Iterator[StreamEvent]:
        start = time.perf_counter()
        timings = Timings()
        found = self._context(question, history, top_k, timings, start, filters)
        if isinstance(found, AskResult):
            yield AnswerEvent(self._logged(question, found))
            return
        context, standalone = found
        gen_start = time.perf_counter()
        pieces: list[str] = []
        messages = self._messages(question, history, context)
        for piece in self._generators.stream(messages):
            if timings.first_token_ms is None:
                timings.first_token_ms = elapsed_ms(start)
            pieces.append(piece)
            yield TokenEvent(piece)
        timings.generate_ms = elapsed_ms(gen_start)
        result = self._result(messages, "".join(pieces), context, standalone, timings, start)
        yield AnswerEvent(self._logged(question, result))

    # -- the answer log --------------------------------------------------------------

    def _mode(self) -> str:
        corpus = self._corpus()
        reranked = corpus.retrieval.rerank and corpus.reranker is not None
        return "hybrid+rerank" if reranked else "hybrid"

    def _logged(self, question: str, result: AskResult) -> AskResult:
        """`result` with its answer id, once the log has kept it. A log that fails (a
        full disk) costs the answer its id, not the answer: feedback is then refused."""
        if self.answer_log is None:
            return result
        answer_id = uuid.uuid4().hex
        adapter = self._generators.adapter
        entry = LoggedAnswer(
            id=answer_id,
            created=datetime.now(UTC),
            question=question,
            standalone_question=result.standalone_question or question,
            answer=result.answer.text,
            abstained=result.answer.abstained,
            passage_ids=[c.id for c in result.passages],
            cited_ids=[c.chunk_id for c in result.answer.citations],
            mode=self._mode(),
            model=self.settings.models.generator,
            adapter=adapter.name if adapter is not None else None,
            timings=dataclasses.asdict(result.timings),
        )
        try:
            self.answer_log.record(entry)
        except Exception:
            log.exception("the answer log could not keep answer %s", answer_id)
            return result
        result.answer_id = answer_id
        try:
            self._purge_now_and_then()
        except Exception:  # the answer is kept and rated as usual; the next sweep retries
            log.exception("the answer log's retention sweep failed")
        return result

    def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        with self._purge_lock:
            if self._purged_at is not None and now - self._purged_at < PURGE_EVERY_S:
                return
            self._purged_at = now
        self.purge()

    def purge_at_start(self) -> int:
        """The start-up sweep (the server's, before its first request): what expired
        while it was down is gone before anything reads the log."""
        self._purged_at = time.monotonic()
        return self.purge()

    def purge(self) -> int:
        """Delete the answers older than the retention; how many were deleted."""
        if self.answer_log is None:
            return 0
        days = self.settings.feedback.retention_days
        return self.answer_log.purge(datetime.now(UTC) - timedelta(days=days))
