"""The answer benchmark behind `lectern eval answers`.

A SQuAD-format set is indexed through the ingest path (the retrieval harness's
`index_dataset`: one document per paragraph), then every sampled question is asked, per
configuration, through the serving code of POST /api/v1/ask: a service built from that
configuration's settings, its `ask_stream` (so the first token is seen), default top_k.
Each question is asked twice: as it is, and as the unanswerable probe, with every
document of its own article kept out of retrieval, where the only right reply is the
abstention. One row per question and run; `answer_report` sums them up.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from ingest.pipeline import document_id
from lectern.errors import ConfigError, LecternError
from lectern.protocols import Generator
from lectern.reporting import CpuMonitor
from lectern.settings import Settings
from lectern.types import AnswerEvent, AskResult, SearchFilter, StreamEvent, TokenEvent
from model.eval.answer_report import summarize
from model.eval.configs import AnswerConfig
from model.eval.metrics import answer_scores, citation_hits, words
from retriever.corpus import Corpus
from retriever.eval.datasets import Dataset, DatasetError, Query
from retriever.eval.indexing import IndexReport, Log, index_dataset, quiet

Run = Literal["normal", "probe"]
RUNS: tuple[Run, ...] = ("normal", "probe")
# How a reply's tokens are counted: the raw streamed text re-tokenized by the generator's
# own tokenizer when it has one (the real one does), else one per streamed piece.
TOKENIZER = "the generator's tokenizer on the raw reply"
PIECES = "one per streamed piece"


class AnswerService(Protocol):
    """What the harness needs of api.service.Lectern (handed in: eval never imports api)."""

    @property
    def generator(self) -> Generator: ...

    def warm_up(self) -> None: ...

    def warm_up_generator(self) -> None: ...

    def ask_stream(
        self, question: str, top_k: int | None = None, filters: SearchFilter | None = None
    ) -> Iterator[StreamEvent]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Question:
    query: Query
    gold_document: str  # the document its paragraph is stored as
    article_documents: frozenset[str]  # every document of its article: the probe's filter


def questions(dataset: Dataset, report: IndexReport) -> list[Question]:
    """The dataset's questions with their gold paragraph's and article's documents.

    An article is the paragraphs sharing a title (load_squad's items). A paragraph stored
    once under an identical twin elsewhere counts as that twin's document, so the probe
    keeps the twin out too: its text would answer the question.
    """
    def stored(item_id: str) -> str:
        return document_id(dataset.source(report.stored_as.get(item_id, item_id)))

    title_of = {item.id: item.title for item in dataset.items}
    articles: dict[str, set[str]] = {}
    for item in dataset.items:
        articles.setdefault(item.title, set()).add(stored(item.id))
    out = []
    for q in dataset.queries:
        gold = next(i for i, grade in q.qrels.items() if grade > 0)
        out.append(Question(q, stored(gold), frozenset(articles[title_of[gold]])))
    return out


class AnswerEvaluation:
    """Asks every question of every configuration, normal and probe, and scores the replies.

    workers: questions asked at once from as many threads, as concurrent clients would
    (the generator batches them). warmup: questions asked first and not recorded, so the
    first timed answer pays no lazy initialisation.
    """

    def __init__(
        self, configs: Sequence[AnswerConfig], *, workers: int = 1, warmup: int = 1
    ) -> None:
        if not configs:
            raise ConfigError("no configuration to evaluate")
        if warmup < 0:
            raise ConfigError(f"warmup must be 0 or more, got {warmup}")
        for c in configs:
            room = c.settings.api.max_answers_in_flight
            if not 1 <= workers <= room:
                raise ConfigError(
                    f"workers must be between 1 and api.max_answers_in_flight ({room}) of "
                    f"configuration {c.name!r}, got {workers}"
                )
        self.configs = list(configs)
        self.workers = workers
        self.warmup = warmup

    def run(
        self,
        dataset: Dataset,
        corpus: Corpus,
        open_service: Callable[[Settings], AnswerService],
        rows_path: Path | None = None,
        log: Log = quiet,
    ) -> dict[str, Any]:
        """Index the dataset on `corpus`, then answer with each configuration in turn.

        Each configuration's service is opened, used and closed (its generator with it)
        before the next one loads, so two generators never share the memory. Rows go to
        `rows_path` (JSONL) as they are made; the summary is returned.
        """
        if not any(q.answers for q in dataset.queries):
            raise DatasetError(f"{dataset.name} has no questions with gold answers")
        log(f"indexing {len(dataset.items)} paragraphs")
        report = index_dataset(corpus, dataset, log)
        # A question without a gold answer (SQuAD 2.0's impossible ones) cannot be scored.
        asked = [q for q in questions(dataset, report) if q.query.answers]
        texts = {c.id: c.text for c in corpus.store.all_chunks()}  # citations' full text
        rows_file = rows_path.open("w", encoding="utf-8") if rows_path else None

        def keep(row: dict[str, Any]) -> None:
            # Written as they come: a long run stopped half-way keeps what it measured.
            if rows_file is not None:
                rows_file.write(json.dumps(row) + "\n")
                rows_file.flush()

        configs: dict[str, Any] = {}
        try:
            for config in self.configs:
                log(f"configuration {config.name}: {len(asked)} questions, normal and probe")
                service = open_service(config.settings)
                try:
                    rows, facts = self._answer(config, service, asked, texts, keep, log)
                finally:
                    service.close()  # and its generator, before the next one loads
                    del service
                    gc.collect()  # so the weights are gone, not only unreferenced
                configs[config.name] = {
                    "overrides": config.overrides, **facts, **summarize(rows)}
        finally:
            if rows_file is not None:
                rows_file.close()
        return {
            "evaluation": "answers",
            "dataset": {"name": dataset.name, **dataset.info},
            "questions_evaluated": len(asked),
            "questions_without_answers": len(dataset.queries) - len(asked),
            "method": {
                "workers": self.workers,
                "warmup_questions": min(self.warmup, len(asked)),
                "runs": list(RUNS),
                "top_k": "default (generation.passages)",
            },
            "configs": configs,
            "index": report.summary(),
            "rows": str(rows_path) if rows_path else None,
        }

    def _answer(
        self,
        config: AnswerConfig,
        service: AnswerService,
        asked: Sequence[Question],
        texts: dict[int, str],
        keep: Callable[[dict[str, Any]], None],
        log: Log,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        service.warm_up()
        service.warm_up_generator()
        count = getattr(service.generator, "count_tokens", None)
        for q in asked[: self.warmup]:
            _ask(service, q, "normal")
        # Each question's probe right after it: a change in machine load over the run
        # falls on both runs alike.
        tasks = [(q, run) for q in asked for run in RUNS]

        def one(task: tuple[Question, Run]) -> dict[str, Any]:
            q, run = task
            return _row(config.name, q, run, _ask(service, q, run), texts, count)

        rows: list[dict[str, Any]] = []
        monitor = CpuMonitor()  # other processes' load skews the latencies
        start = time.perf_counter()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="eval-ask") as pool:
            for row in pool.map(one, tasks):  # in task order, whichever thread ends first
                rows.append(row)
                keep(row)
                if len(rows) % 100 == 0:
                    log(f"  {config.name}: {len(rows)}/{len(tasks)} answers "
                        f"({time.perf_counter() - start:.0f} s)")
        wall = time.perf_counter() - start
        cpu = monitor.stop()
        return rows, {"wall_seconds": round(wall, 2), "cpu_during_answers": cpu,
                      "tokens_counted_by": TOKENIZER if count else PIECES}


@dataclass(slots=True)
class _Asked:
    result: AskResult | None
    pieces: list[str]
    wall_ms: float
    error: str | None = None


def _ask(service: AnswerService, q: Question, run: Run) -> _Asked:
    """One question through ask_stream, as the stream route consumes it."""
    filters = SearchFilter(exclude_documents=q.article_documents) if run == "probe" else None
    pieces: list[str] = []
    result = None
    start = time.perf_counter()
    try:
        # The route strips blanks off the question before asking.
        for event in service.ask_stream(q.query.text.strip(), filters=filters):
            if isinstance(event, TokenEvent):
                pieces.append(event.text)
            elif isinstance(event, AnswerEvent):
                result = event.result
    except LecternError as exc:  # one failed question is a row, not the end of the run
        return _Asked(None, pieces, (time.perf_counter() - start) * 1000, f"{exc}")
    return _Asked(result, pieces, (time.perf_counter() - start) * 1000)


def _row(
    config: str,
    q: Question,
    run: Run,
    asked: _Asked,
    texts: dict[int, str],
    count: Callable[[str], int] | None,
) -> dict[str, Any]:
    raw = "".join(asked.pieces)
    row: dict[str, Any] = {
        "question_id": q.query.id, "config": config, "run": run,
        "question": q.query.text, "gold_answers": list(q.query.answers),
    }
    if asked.result is None:
        return {**row, "error": asked.error or "the stream ended without an answer",
                "wall_ms": round(asked.wall_ms, 2)}
    answer = asked.result.answer
    cited = answer.citations
    return {
        **row,
        "answer": answer.text,
        "abstained": answer.abstained,
        "raw_reply": raw,  # the model's own text, before the grounding check
        "citations": [{"number": c.number, "chunk_id": c.chunk_id,
                       "document_id": c.document_id} for c in cited],
        "passages": [{"chunk_id": p.id, "document_id": p.document_id}
                     for p in asked.result.passages],
        "gold_document": q.gold_document,
        "scores": {
            **answer_scores(answer.text, q.query.answers, answer.abstained),
            "citations_with_gold": sum(citation_hits(
                (texts.get(c.chunk_id, "") for c in cited), q.query.answers)),
            "cites_gold": any(c.document_id == q.gold_document for c in cited),
            "gold_in_passages": any(
                p.document_id == q.gold_document for p in asked.result.passages),
            "words": words(answer.text) if not answer.abstained else 0,
        },
        "tokens": (count(raw) if count else len(asked.pieces)) if raw else 0,
        "timings": {**asdict(asked.result.timings), "wall_ms": round(asked.wall_ms, 2)},
    }
