"""The `lectern` command."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api import cli_train_generator  # noqa: F401 - registers `lectern train generator`
from api.cli_calibrate import calibrate_app
from api.cli_feedback import feedback_app
from api.cli_models import models_app
from api.cli_models import prepare as prepare_models
from api.cli_train import train_app
from lectern.errors import LecternError
from lectern.settings import SHUTDOWN_CLOSE_S, Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from lectern.protocols import Embedder, Reranker
    from model.eval.configs import AnswerConfig
    from retriever.calibration import RetrievalCalibration
    from retriever.corpus import Corpus

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Lectern: answers from your own documents, with citations.",
)
documents_app = typer.Typer(no_args_is_help=True, help="List or delete ingested documents.")
app.add_typer(documents_app, name="documents")
eval_app = typer.Typer(no_args_is_help=True, help="Measure retrieval and answer quality.")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")
app.add_typer(calibrate_app, name="calibrate")
app.add_typer(feedback_app, name="feedback")
app.add_typer(models_app, name="models")

SAMPLE_CORPUS = Path(__file__).resolve().parent.parent / "samples" / "corpus"
SAMPLE_QUERIES = [
    "What are the prerequisites for CSC 340?",
    "How much is the international tuition fee for the MSc Data Science?",
]


def _service():  # noqa: ANN202 - api.service.Lectern; imported late to keep --help fast
    from api.service import Lectern

    return Lectern(Settings())


def _shown(source: str) -> str:
    try:
        return os.path.relpath(source)
    except ValueError:
        return source


@app.command()
def ingest(paths: Annotated[list[Path], typer.Argument(help="files or folders")]) -> None:
    """Ingest files (PDF, HTML, DOCX, Markdown, text) and index them."""
    from tqdm import tqdm

    from ingest.pipeline import expand

    files = list(expand(paths))
    service = _service()
    service.warm_up()
    with tqdm(total=len(files), unit="file", file=sys.stderr, disable=None) as bar:

        def progress(result) -> None:  # noqa: ANN001
            bar.update(1)
            if result.status == "failed":
                tqdm.write(f"error: {result.path}: {result.detail}", file=sys.stderr)

        report = service.ingest(files, progress)
    summary = ", ".join(
        f"{report.count(s)} {s}" for s in ("added", "updated", "unchanged", "duplicate", "failed")
    )
    c = service.counts()
    cut = f"{report.truncated} chunks longer than the encoder reads"  # the chunker aims for 0
    typer.echo(f"{summary}; {cut}; store: {c.documents} documents, {c.chunks} chunks")
    if service.calibrator.due():
        typer.echo("retrieval calibration due: `lectern serve` fits it in the background, "
                   "or run `lectern calibrate retrieval`")
    if report.failed:
        raise typer.Exit(1)


@documents_app.command("list")
def documents_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List ingested documents with their chunk counts."""
    docs = _service().documents()
    if as_json:
        typer.echo(json.dumps([asdict(d) for d in docs], default=str, indent=2))
        return
    for d in docs:
        typer.echo(f"{d.id}  {d.chunk_count:5d} chunks  {d.title[:40]:40}  {_shown(d.source)}")
    typer.echo(f"{len(docs)} documents")


@documents_app.command("delete")
def documents_delete(
    keys: Annotated[list[str], typer.Argument(help="document ids or paths")],
) -> None:
    """Delete documents, their chunks and their vectors."""
    service = _service()
    for key in keys:
        info = service.delete(key)
        typer.echo(f"deleted {info.id} ({info.chunk_count} chunks) {_shown(info.source)}")


@app.command()
def search(
    query: str,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=100)] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, dense or bm25")] = "hybrid",
) -> None:
    """Print the chunks that best match QUERY, with source and score."""
    hits = _service().search(query, top_k, mode)  # type: ignore[arg-type]
    if not hits:
        typer.echo("no results")
    for rank, hit in enumerate(hits, start=1):
        c = hit.chunk
        where = c.title if not c.section or c.section == c.title else f"{c.title} > {c.section}"
        page = f" p.{c.page}" if c.page else ""
        typer.echo(f"{rank}. [{hit.score:.4f}] {_shown(c.source)}{page} — {where}")
        snippet = " ".join(c.text.split())
        typer.echo(f"   {snippet[:300]}{'…' if len(snippet) > 300 else ''}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default: settings.api.host")] = None,
    port: Annotated[int | None, typer.Option(help="default: settings.api.port")] = None,
) -> None:
    """Serve the REST API, the chat widget demo page (/) and the admin page (/admin)."""
    import logging

    from lectern.optional import require

    uvicorn = require("uvicorn", "api")

    from api.app import create_app
    from api.forwarded import uvicorn_proxy_options
    from api.graceful import graceful_server
    from api.security import admin_token

    settings = Settings()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host, port = host or settings.api.host, port or settings.api.port
    token_file = settings.data_dir / "admin-token"
    admin_token(settings.api.admin_token, settings.data_dir)
    where = "LECTERN_API__ADMIN_TOKEN" if settings.api.admin_token else token_file
    typer.echo(f"Lectern on http://{host}:{port}  (admin: /admin, token in {where})")
    application = create_app(settings)
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        log_level="info",
        # After SIGTERM, requests get this long; then the lifespan's shutdown cancels
        # what is left (Lectern.close), within SHUTDOWN_CLOSE_S. Unset, uvicorn waits for them
        # without end.
        timeout_graceful_shutdown=settings.api.shutdown_timeout_s - SHUTDOWN_CLOSE_S,
        **uvicorn_proxy_options(settings.api.trusted_proxies),
    )
    graceful_server(config, application.state.service.stop_ingests).run()


@app.command()
def demo(
    corpus: Annotated[Path, typer.Option(help="folder to ingest")] = SAMPLE_CORPUS,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Prepare the models, ingest the sample corpus, search it, then serve it."""
    prepare_models(install=True)
    ingest([corpus])
    for q in SAMPLE_QUERIES:
        typer.echo(f"\n$ lectern search {q!r} --top-k 3")
        search(q, top_k=3, mode="hybrid")
    if serve_after:
        serve()


@eval_app.command("retrieval")
def eval_retrieval(
    squad: Annotated[
        Path | None,
        typer.Option(help="SQuAD-format JSON; a question's relevant item is its paragraph"),
    ] = None,
    removed: Annotated[
        Path | None, typer.Option(help="with --squad: JSON of question ids to leave out")
    ] = None,
    beir: Annotated[
        Path | None,
        typer.Option(help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv"),
    ] = None,
    split: Annotated[str, typer.Option(help="with --beir: the qrels split")] = "test",
    domains: Annotated[
        Path | None,
        typer.Option(help="the training data folder (../shared/data): a table over the "
                     "reranker's domains, held-out documents only; with --squad, a row for it"),
    ] = None,
    only: Annotated[
        str | None, typer.Option(help="with --domains: comma-separated domains (default: all)")
    ] = None,
    long_titles: Annotated[
        bool, typer.Option(help="with --domains: also each domain with ~40-token URL titles")
    ] = False,
    max_items: Annotated[
        int, typer.Option(min=1, help="with --domains: a larger domain keeps its held-out "
                          "documents and a seeded sample of the rest, up to N chunks")
    ] = 4000,
    configs: Annotated[
        str | None,
        typer.Option(help="comma-separated: bm25, dense, hybrid, tuned, tuned-dense, each "
                     "optionally +rerank; default: every one the given models allow"),
    ] = None,
    reranker: Annotated[
        str | None, typer.Option(help="cross-encoder model folder, for the +rerank configurations")
    ] = None,
    tuned_encoder: Annotated[
        str | None, typer.Option(help="sentence-transformers model folder (or any encoder "
                                      "reference), for the tuned configurations")
    ] = None,
    rerank_candidates: Annotated[
        int, typer.Option(min=1, max=1000, help="top chunks the reranker reorders")
    ] = 20,
    rerank_window: Annotated[
        int | None, typer.Option(min=16, max=512, help="tokens the reranker reads per pair "
                                 "(default: what it was trained with)")
    ] = None,
    limit_queries: Annotated[
        int | None, typer.Option(min=1, help="evaluate a seeded random sample of N queries "
                                 "(with --domains: per dataset, default 300)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the query sample")] = 0,
    calibration_questions: Annotated[
        int, typer.Option(min=10, help="with --domains: synthetic questions each corpus's "
                          "calibration (the 'calibrated' configuration) is fitted on")
    ] = 300,
    name: Annotated[
        str | None, typer.Option(help="output file stem (default: eval-squad / eval-beir-<dir>)")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="index here and reuse it next time (default: a temporary dir)"),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option(help="where <name>.json and .md go (default: bench/results)")
    ] = None,
) -> None:
    """Recall@1/5/20, MRR@10, nDCG@10 (± SE) and p50 latency of retriever configurations."""
    import shlex
    import tempfile

    from lectern.errors import ConfigError
    from lectern.reporting import RESULTS_DIR, environment, write_results
    from retriever.eval.datasets import load_beir, load_squad, sample_queries
    from retriever.eval.harness import RetrievalEvaluation, default_configs, markdown, write_ranks
    from retriever.eval.indexing import tuned_settings

    if domains is not None:
        _eval_domains(domains, only, long_titles, max_items, squad, removed, beir, configs,
                      reranker, tuned_encoder, rerank_candidates, rerank_window,
                      limit_queries, seed, calibration_questions, name, data_dir, out_dir)
        return
    source = squad or beir
    if source is None or (squad and beir):
        raise ConfigError("give one of --squad FILE or --beir DIR")
    if removed is not None and squad is None:
        raise ConfigError("--removed goes with --squad")
    names = (
        [c for c in configs.split(",") if c.strip()]
        if configs
        else default_configs(reranker is not None, tuned_encoder is not None)
    )
    evaluation = RetrievalEvaluation(names, rerank_candidates=rerank_candidates)
    evaluation.require(reranker is not None, tuned_encoder is not None)
    if rerank_window is not None and not evaluation.needs_reranker:
        raise ConfigError("--rerank-window goes with a +rerank configuration")
    dataset = load_squad(source, removed) if squad else load_beir(source, split)
    dataset = sample_queries(dataset, limit_queries, seed)
    stem = name or ("eval-squad" if squad else f"eval-beir-{source.name}")

    def log(message: str) -> None:
        typer.echo(message, err=True)

    with tempfile.TemporaryDirectory(prefix="lectern-eval-") as tmp:
        settings = _eval_settings(data_dir or Path(tmp))
        rerank = None
        if reranker is not None and evaluation.needs_reranker:
            # Imported only here: loading a cross-encoder pulls in transformers.
            from retriever.cross_encoder import CrossEncoderReranker

            rerank = CrossEncoderReranker(Path(reranker), max_length=rerank_window)
            rerank.warm_up()
        base = _eval_corpus(settings)
        tuned = None
        try:
            if tuned_encoder is not None and evaluation.needs_tuned:
                tuned = _eval_corpus(tuned_settings(settings, tuned_encoder))
            result = evaluation.run(dataset, base, tuned, rerank, log)
        finally:
            for corpus in (base, tuned):
                if corpus is not None:
                    corpus.store.close()
    result["run"] = {
        "command": shlex.join(["lectern", *sys.argv[1:]]),
        "reranker": reranker,
        "reranker_info": getattr(rerank, "info", None),  # its training config and metrics
        "rerank_window": getattr(rerank, "max_length", None),
        "tuned_encoder": tuned_encoder,
        "data_dir": str(data_dir) if data_dir else None,
    }
    result["environment"] = environment()
    ranks = write_ranks((out_dir or RESULTS_DIR) / f"{stem}.ranks.jsonl", result.pop("per_query"))
    page = markdown(result)
    json_path, md_path = write_results(stem, result, page, out_dir or RESULTS_DIR)
    typer.echo(page)
    typer.echo(f"\nwrote {json_path}, {md_path} and {ranks}")


def _eval_settings(data_dir: Path) -> Settings:
    user = Settings()
    # The user's model cache, not the data dir's: the encoder's ONNX export is made once.
    models = user.models.model_copy(update={"cache_dir": user.model_cache_dir.resolve()})
    return user.model_copy(update={"data_dir": data_dir.resolve(), "models": models})


def _eval_corpus(
    settings: Settings, reranker: Reranker | None = None, encoder: Embedder | None = None
) -> Corpus:
    """A corpus to evaluate on; each query is embedded once across the configurations
    sharing it. Without `reranker` it reranks nothing itself (the +rerank configurations
    rerank); with one, it searches as it would serve (the calibrated configuration).
    encoder: one already loaded (several datasets share it); default: built here."""
    from api.components import build_embedder, device_plan, open_corpus
    from retriever.eval.indexing import QueryMemo, plain

    if encoder is None:
        encoder = build_embedder(settings, device_plan(settings).device)
    embedder = QueryMemo(encoder)
    if reranker is None:
        return open_corpus(plain(settings), embedder=embedder)
    return open_corpus(settings, embedder=embedder, reranker=reranker)


def _domain_calibration(
    questions: int, log: Callable[[str], None]
) -> Callable[[Corpus], RetrievalCalibration]:
    """Each corpus calibrated by itself, with one generator loaded for all of them."""
    from api.calibration_runner import Calibrator
    from api.components import device_plan
    from model import generators

    settings = Settings()
    generator = generators.build(settings, device_plan(settings))
    generator.warm_up()

    def fit(corpus: Corpus) -> RetrievalCalibration:
        c = corpus.settings.calibration.model_copy(update={"questions": questions})
        own = corpus.settings.model_copy(update={"calibration": c})
        return Calibrator(own, lambda: corpus, lambda: generator).fit(log)

    return fit


def _eval_domains(
    data: Path, only: str | None, long_titles: bool, max_items: int, squad: Path | None,
    removed: Path | None, beir: Path | None, configs: str | None, reranker: str | None,
    tuned_encoder: str | None, rerank_candidates: int, rerank_window: int | None,
    limit: int | None, seed: int,
    calibration_questions: int, name: str | None, data_dir: Path | None, out_dir: Path | None,
) -> None:
    """`lectern eval retrieval --domains`: one table, a row per domain (see cross_domain)."""
    import shlex
    import shutil
    import tempfile

    from api.components import build_embedder, device_plan
    from lectern.errors import ConfigError
    from lectern.reporting import RESULTS_DIR, environment, write_results
    from retriever.cross_encoder import SHIPPED_RERANKER, CrossEncoderReranker
    from retriever.eval import cross_domain, domains
    from retriever.eval.datasets import load_squad, sample_queries
    from retriever.eval.harness import RetrievalEvaluation, write_ranks

    if beir is not None or tuned_encoder is not None:
        raise ConfigError("--domains goes with --squad only, not --beir or --tuned-encoder")
    if removed is not None and squad is None:
        raise ConfigError("--removed goes with --squad")
    names = domains.parse_domains(only)

    def log(message: str) -> None:
        typer.echo(message, err=True)

    evaluation = RetrievalEvaluation(
        [c for c in configs.split(",") if c.strip()] if configs
        else list(cross_domain.DEFAULT_CONFIGS),
        rerank_candidates=rerank_candidates,
    )
    calibrated = any(s.served for s in evaluation.specs)
    if rerank_window is not None and not (evaluation.needs_reranker or calibrated):
        raise ConfigError("--rerank-window goes with a +rerank or the calibrated configuration")
    # The held-out documents are those of the reranker evaluated: the shipped one unless
    # another is given.
    folder = Path(reranker) if reranker else SHIPPED_RERANKER
    share = domains.holdout_share(folder)
    limit = limit or 300
    sets = domains.load_domains(data, names, domains.training_split(folder), share,
                                max_items=max_items, seed=seed)
    sets = [sample_queries(d, limit, seed) for d in sets]
    rerank = None
    if evaluation.needs_reranker or calibrated:
        rerank = CrossEncoderReranker(folder, max_length=rerank_window)
        rerank.warm_up()
    calibrate = _domain_calibration(calibration_questions, log) if calibrated else None
    if long_titles:
        count = domains.token_count(folder)
        sets = [v for d in sets for v in (d, domains.with_long_titles(d, count))]
    if squad is not None:
        sets.append(sample_queries(load_squad(squad, removed), limit, seed))
    stem = name or "eval-domains"

    with tempfile.TemporaryDirectory(prefix="lectern-eval-") as tmp:
        work = (data_dir or Path(tmp)).resolve()
        shared = _eval_settings(work)  # the encoder, loaded once for every dataset
        encoder = build_embedder(shared, device_plan(shared).device)

        def opened(where: Path) -> Corpus:
            # A reused --data-dir holds the last run's calibrations: the fixed
            # configurations are measured with none, and each run fits its own.
            shutil.rmtree(where / "calibration", ignore_errors=True)
            return _eval_corpus(_eval_settings(where), rerank if calibrated else None, encoder)

        result, rows = cross_domain.run_datasets(
            sets, evaluation, opened, work, rerank, log, calibrate,
        )
    result["run"] = {
        "command": shlex.join(["lectern", *sys.argv[1:]]),
        "reranker": str(folder),
        "reranker_info": getattr(rerank, "info", None),
        "rerank_window": getattr(rerank, "max_length", None),
        "holdout_share": share,
        "data_dir": str(data_dir) if data_dir else None,
    }
    result["environment"] = environment()
    out = out_dir or RESULTS_DIR
    ranks = write_ranks(out / f"{stem}.ranks.jsonl", rows)
    page = cross_domain.markdown(result)
    json_path, md_path = write_results(stem, result, page, out)
    typer.echo(page)
    typer.echo(f"\nwrote {json_path}, {md_path} and {ranks}")


@eval_app.command("answers")
def eval_answers(
    squad: Annotated[Path, typer.Option(help="SQuAD-format JSON: its paragraphs are indexed")],
    removed: Annotated[
        Path | None, typer.Option(help="JSON of question ids to leave out")
    ] = None,
    config: Annotated[
        list[str] | None,
        typer.Option(help="repeatable NAME=section.key=value;... (Settings overrides), e.g. "
                     "'tuned=models.adapter=var/models/adapter'"),
    ] = None,
    adapter: Annotated[
        list[str] | None,
        typer.Option(help="repeatable: a configuration with this adapter ('none': the base "
                     "model), on --generator when given"),
    ] = None,
    generator: Annotated[
        str | None, typer.Option(help="generator for the --adapter configurations, or one "
                                      "configuration of its own without --adapter")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="questions asked at once")] = 1,
    limit_questions: Annotated[
        int | None, typer.Option(min=1, help="evaluate a seeded random sample of N questions")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the question sample")] = 0,
    name: Annotated[str, typer.Option(help="output file stem")] = "answers-squad",
    data_dir: Annotated[
        Path | None,
        typer.Option(help="index here and reuse it next time (default: a temporary dir)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="folder for <name>.jsonl/.json/.md "
                                       "(default: <data dir>/eval/<name>)")
    ] = None,
    calibrate_abstention: Annotated[
        str | None,
        typer.Option(help="comma-separated abstention thresholds to measure the one --adapter "
                     "at; the rule's choice is written to <adapter>/abstention.json. Use the "
                     "held-out file `lectern train generator` writes, never an evaluation set"),
    ] = None,
) -> None:
    """EM, F1, citations, abstentions (normal and probe) and latency of answer configurations."""
    import shlex
    import tempfile

    from api.components import build_embedder, device_plan, open_corpus
    from api.service import Lectern
    from lectern.reporting import environment
    from model.eval.answer_report import markdown, write
    from model.eval.answers import AnswerEvaluation
    from model.eval.configs import build_configs
    from retriever.eval.datasets import load_squad, sample_queries

    user = Settings()
    folder = (out or (data_dir or user.data_dir) / "eval" / name).resolve()
    with tempfile.TemporaryDirectory(prefix="lectern-eval-") as tmp:
        where = (data_dir or Path(tmp)).resolve()
        # The user's model cache, not the data dir's: conversions are made once.
        models = user.models.model_copy(update={"cache_dir": user.model_cache_dir.resolve()})
        base = user.model_copy(update={"data_dir": where, "models": models})
        # Every option is checked before a model loads.
        thresholds = None
        if calibrate_abstention is not None:
            thresholds, configs = _abstention_configs(
                base, calibrate_abstention, config, adapter, generator)
        else:
            configs = build_configs(base, config or [], adapter or [], generator)
        evaluation = AnswerEvaluation(configs, workers=workers)
        dataset = sample_queries(load_squad(squad, removed), limit_questions, seed)
        folder.mkdir(parents=True, exist_ok=True)
        embedder = build_embedder(base, device_plan(base).device)  # one for every config
        index = open_corpus(base, embedder=embedder)
        try:
            result = evaluation.run(
                dataset, index, lambda s: Lectern(s, embedder=embedder),
                folder / f"{name}.jsonl", lambda m: typer.echo(m, err=True),
            )
        finally:
            index.store.close()
    result["run"] = {"command": shlex.join(["lectern", *sys.argv[1:]]),
                     "data_dir": str(data_dir) if data_dir else None}
    result["settings"] = base.model_dump(mode="json")
    result["environment"] = environment()
    json_path, md_path = write(result, name, folder)
    typer.echo(markdown(result))
    typer.echo(f"\nwrote {folder / f'{name}.jsonl'}, {json_path} and {md_path}")
    if thresholds is not None:
        from model import prepare
        from model.eval.abstention_fit import calibration

        record = calibration(thresholds, result["configs"], str(squad.resolve()),
                             result["questions_evaluated"], result["run"]["command"])
        target = prepare.adapter(configs[0].settings)
        assert target is not None  # _abstention_configs refuses the base model
        typer.echo(f"abstention threshold {record.threshold:g} written to "
                   f"{record.save(target)}")


def _abstention_configs(
    base: Settings, text: str, config: list[str] | None, adapter: list[str] | None,
    generator: str | None,
) -> tuple[list[float], list[AnswerConfig]]:
    """One configuration per threshold of the one adapter being calibrated (on
    `generator` when one is given)."""
    from lectern.errors import ConfigError
    from model.eval.abstention_fit import config_name, parse_thresholds
    from model.eval.configs import AnswerConfig, apply_overrides

    thresholds, refs = parse_thresholds(text), adapter or []
    if config or len(refs) != 1 or refs[0].strip().lower() == "none":
        raise ConfigError("--calibrate-abstention measures one adapter: give exactly one "
                          "--adapter (not none) and no --config")
    fixed: dict[str, Any] = {"models.adapter": refs[0]}
    if generator is not None:
        fixed["models.generator"] = generator
    configs = []
    for t in thresholds:
        name, overrides = config_name(t), {**fixed, "generation.abstain_threshold": t}
        configs.append(AnswerConfig(name, overrides, apply_overrides(base, overrides, name)))
    return thresholds, configs


@eval_app.command("conversations")
def eval_conversations(
    data: Annotated[Path, typer.Option(help="the shared data folder (../shared/data)")],
    sets: Annotated[str, typer.Option(help="comma-separated: coqa, quac")] = "coqa,quac",
    variants: Annotated[
        str | None,
        typer.Option(help="comma-separated: none, history:N[:wK][:all] (K answer words; "
                     ":all: every follow-up, not only those referring back), generator:N; "
                     "default: none, history:1..3:w40, history:2:w40:all, history:2:w0, "
                     "history:2:w10, generator:2"),
    ] = None,
    max_followups: Annotated[
        int | None, typer.Option(min=1, help="a seeded sample of N follow-ups per set, for "
                                 "every variant (default: all)")
    ] = None,
    model_followups: Annotated[
        int, typer.Option(min=1, help="of those, the seeded N per set the generator "
                          "variants rewrite")
    ] = 120,
    seed: Annotated[int, typer.Option(help="seed of the samples")] = 0,
    reranker: Annotated[
        str | None, typer.Option(help="reranker folder: it reranks, and only its held-out "
                                 "documents are asked about (default: the shipped one)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="output stem: <out>.json, .md, .rows.jsonl "
                                  "(default: bench/results/eval-conversations)")
    ] = None,
) -> None:
    """R@5, MRR@10 of follow-ups searched as asked and rewritten; the rewrite's default."""
    import shlex
    import tempfile
    import time

    from api.components import build_embedder, device_plan, open_corpus
    from lectern.reporting import RESULTS_DIR, environment, write_results
    from model.eval import conversation_report
    from model.eval.conversation_run import ConversationRun, parse_variants, run_sets
    from model.eval.conversations import load_sets, parse_sets
    from retriever.cross_encoder import SHIPPED_RERANKER, CrossEncoderReranker
    from retriever.eval import domains
    from retriever.eval.harness import write_ranks

    began, load = time.perf_counter(), os.getloadavg()[0]
    chosen, names = parse_variants(variants), parse_sets(sets)  # before any model loads
    user = Settings()
    run = ConversationRun(chosen, candidates=user.generation.rerank_candidates,
                          max_followups=max_followups, model_followups=model_followups,
                          seed=seed)
    folder = Path(reranker) if reranker else SHIPPED_RERANKER
    share = domains.holdout_share(folder)
    loaded = load_sets(data, names, domains.training_split(folder), share)
    stem = out or RESULTS_DIR / "eval-conversations"

    def log(message: str) -> None:
        typer.echo(message, err=True)

    rerank = CrossEncoderReranker(folder)
    rerank.warm_up()
    with tempfile.TemporaryDirectory(prefix="lectern-eval-") as tmp:
        work = _eval_settings(Path(tmp))
        generator = None
        if run.calls_model:  # built as `lectern eval answers` builds it (Lectern's)
            from model import generators

            generator = generators.build(work, device_plan(work))
            generator.warm_up()
        encoder = build_embedder(work, device_plan(work).device)  # one for every set
        try:
            result, rows = run_sets(
                loaded, run,
                lambda where: open_corpus(_eval_settings(where), embedder=encoder,
                                          reranker=rerank),
                work.data_dir, generator.generate if generator else None, log,
            )
        finally:
            if generator is not None:
                generator.close()
    result = conversation_report.complete(result, rows, chosen)
    result["run"] = {
        "command": shlex.join(["lectern", *sys.argv[1:]]), "reranker": str(folder),
        "holdout_share": share, "generator": work.models.generator if run.calls_model else None,
        "adapter": work.models.adapter, "wall_seconds": round(time.perf_counter() - began, 1),
        "loadavg_1m_start": load, "loadavg_1m_end": os.getloadavg()[0],
    }
    result["environment"] = environment()
    page = conversation_report.markdown(result, chosen)
    json_path, md_path = write_results(stem.name, result, page, stem.parent)
    rows_path = write_ranks(stem.parent / f"{stem.name}.rows.jsonl", rows)
    typer.echo(page)
    typer.echo(f"\nwrote {json_path}, {md_path} and {rows_path}")


def main() -> None:
    try:
        app()
    except LecternError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
