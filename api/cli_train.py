"""`lectern train`: tune the encoder on the corpus, train the reranker.

Each option's default is its config field's (retriever.train.encoder_config and
reranker_config, which import nothing heavy, so `lectern --help` stays fast).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lectern.optional import require
from lectern.settings import Settings
from retriever.train.encoder_config import CorpusTuning, TuningConfig
from retriever.train.reranker_config import POOLINGS, TrainConfig

train_app = typer.Typer(no_args_is_help=True, help="Train the reranker or tune the encoder.")
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def default(config: type[Any], name: str) -> Any:
    """The default of the dataclass `config`'s field `name`."""
    for f in dataclasses.fields(config):
        if f.name != name:
            continue
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        raise ValueError(f"{config.__name__}.{name} has no default")
    raise ValueError(f"{config.__name__} has no field {name!r}")


def _torch_threads(threads: int | None) -> None:
    if threads is not None:
        require("torch", "torch").set_num_threads(threads)


@train_app.command("encoder")
def train_encoder(
    out: Annotated[
        Path | None,
        typer.Option(help="new folder for the tuned encoder (default: <model cache>/"
                     "encoder-tuned-<UTC time>)"),
    ] = None,
    questions: Annotated[
        Path | None,
        typer.Option(help="synthetic questions JSONL, resumed if it exists "
                     "(default: <out>.questions.jsonl)"),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="write questions for a seeded sample of N chunks")
    ] = default(CorpusTuning, "limit"),
    per_chunk: Annotated[
        int, typer.Option(min=1, help="questions per chunk")
    ] = default(CorpusTuning, "per_chunk"),
    batch_size: Annotated[
        int, typer.Option(min=1, help="prompts per generate() call")
    ] = default(CorpusTuning, "generation_batch"),
    filter_top_k: Annotated[
        int, typer.Option(min=1, help="keep a question if BM25 ranks its chunk this high")
    ] = default(CorpusTuning, "filter_top_k"),
    negatives: Annotated[
        int, typer.Option(min=0, help="BM25 hard negatives per question")
    ] = default(TuningConfig, "negatives"),
    epochs: Annotated[int, typer.Option(min=1)] = default(TuningConfig, "epochs"),
    train_batch_size: Annotated[
        int, typer.Option(min=2)
    ] = default(TuningConfig, "batch_size"),
    learning_rate: Annotated[
        float, typer.Option(min=0)
    ] = default(TuningConfig, "learning_rate"),
    max_steps: Annotated[int | None, typer.Option(min=1)] = default(TuningConfig, "max_steps"),
    holdout: Annotated[
        float, typer.Option(min=0, max=0.9, help="share of chunks whose questions only measure")
    ] = default(TuningConfig, "holdout_share"),
    seed: Annotated[
        int, typer.Option(help="seeds the chunk sample, the hold-out split and training")
    ] = default(TuningConfig, "seed"),
    int8: Annotated[
        bool,
        typer.Option(help="generator in int8: faster, but its questions were far worse here"),
    ] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads")] = None,
    activate: Annotated[
        bool,
        typer.Option(help="if held-out MRR@10 improved (and beat --compare-with), re-index "
                     "with the tuned encoder and serve it"),
    ] = False,
    generate: Annotated[
        bool, typer.Option(help="--no-generate: train on the questions file as it is")
    ] = default(CorpusTuning, "generate"),
    questions_only: Annotated[
        bool, typer.Option(help="write the questions file, then stop")
    ] = False,
    compare_with: Annotated[
        Path | None,
        typer.Option(help="another encoder folder to measure on the same held-out questions; "
                     "--activate then requires beating it too"),
    ] = default(CorpusTuning, "compare_with"),  # noqa: B008 - read once, at import
) -> None:
    """Tune the encoder on questions the generator writes for the ingested chunks."""
    from datetime import UTC, datetime

    from api.components import build_embedder, device_plan
    from api.service import Lectern
    from lectern.errors import ConfigError
    from model import prepare
    from retriever import reindex
    from retriever.train.corpus_tuning import tune_from_corpus, write_questions

    _torch_threads(threads)
    user = Settings()
    settings = user.model_copy(
        update={"models": user.models.model_copy(update={"cpu_int8": int8})}
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = (out or settings.model_cache_dir / f"encoder-tuned-{stamp}").resolve()
    plan = CorpusTuning(
        out=out,
        questions=questions or out.with_name(out.name + ".questions.jsonl"),
        limit=limit,
        per_chunk=per_chunk,
        generation_batch=batch_size,
        filter_top_k=filter_top_k,
        seed=seed,
        generate=generate,
        compare_with=compare_with.resolve() if compare_with else None,
        config=TuningConfig(
            epochs=epochs, batch_size=train_batch_size, learning_rate=learning_rate,
            negatives=negatives, holdout_share=holdout, max_steps=max_steps, seed=seed,
        ),
    )
    if out.exists() and not questions_only:
        raise ConfigError(f"{out} exists; tuned encoders are versioned, give a new --out")
    service = Lectern(settings)
    service.warm_up()
    if generate:
        service.warm_up_generator()
    generator = service.generator if generate else None
    base = prepare.encoder(reindex.serving_settings(settings))

    def log(message: str) -> None:
        typer.echo(message, err=True)

    if questions_only:
        _, stats = write_questions(service.corpus, generator, plan, log)
        typer.echo(json.dumps(stats, indent=2))
        typer.echo(f"questions: {plan.questions}")
        return
    where = device_plan(settings).device
    report = tune_from_corpus(
        service.corpus, generator, base.folder, plan,
        meta={"base_encoder_ref": base.ref, "base_fingerprint": base.fingerprint},
        log=log, device=where, base_fingerprint=base.fingerprint,
    )
    typer.echo(f"tuned encoder: {out} ({report.steps} steps, {report.seconds['train']:.0f} s)")
    typer.echo(f"held-out before: {report.before}")
    typer.echo(f"held-out after:  {report.after}")
    if report.compared:
        c = report.compared
        typer.echo(f"on {c['questions']} held-out questions {c['encoder']} did not train on: "
                   f"it {c['other']}, tuned {c['tuned']}")
    if not activate:
        return
    if not report.improves():
        typer.echo("not activated: held-out MRR@10 did not beat the base or the compared encoder")
        raise typer.Exit(1)
    tuned = settings.model_copy(
        update={"models": settings.models.model_copy(update={"encoder": str(out)})}
    )
    done = service.switch_encoder(
        build_embedder(tuned, where), ref=str(out),
        on_progress=lambda n, total: log(f"  re-embedded {n}/{total} chunks"),
    )
    typer.echo(f"serving the tuned encoder ({done} chunks re-embedded, new index saved); "
               "its retrieval calibration is fitted when `lectern serve` starts, or by "
               "`lectern calibrate retrieval`")


@train_app.command("reranker")
def train_reranker(
    data: Annotated[
        Path, typer.Option(help="the shared training data (coqa/, boolq/, narrativeqa/, quac/)")
    ] = SHARED_DATA,
    out: Annotated[
        Path | None, typer.Option(help="default: <model cache>/reranker, where serving looks")
    ] = None,
    sources: Annotated[
        str, typer.Option(help="comma-separated")
    ] = ",".join(default(TrainConfig, "sources")),
    questions: Annotated[
        int, typer.Option(min=1, help="training questions, shared evenly (see --balance)")
    ] = default(TrainConfig, "questions"),
    balance: Annotated[
        str, typer.Option(help="source: per file, a small one's unused share to the others; "
                          "domain: an even share per kind of text, none larger")
    ] = default(TrainConfig, "balance"),
    hard_negatives: Annotated[
        int, typer.Option(min=0, help="BM25 negatives per question")
    ] = default(TrainConfig, "hard_negatives"),
    random_negatives: Annotated[
        int, typer.Option(min=0)
    ] = default(TrainConfig, "random_negatives"),
    loss: Annotated[
        str, typer.Option(help="listwise (softmax per question) or bce")
    ] = default(TrainConfig, "loss"),
    layers: Annotated[
        int, typer.Option(min=1, help="bottom encoder layers kept")
    ] = default(TrainConfig, "layers"),
    max_length: Annotated[
        int, typer.Option(min=32, max=512, help="tokens per pair")
    ] = default(TrainConfig, "max_length"),
    pooling: Annotated[
        str, typer.Option(help=f"token states to one vector: {', '.join(POOLINGS)}")
    ] = default(TrainConfig, "pooling"),
    batch_questions: Annotated[
        int, typer.Option(min=1, help="questions per step")
    ] = default(TrainConfig, "batch_questions"),
    epochs: Annotated[int, typer.Option(min=1)] = default(TrainConfig, "epochs"),
    learning_rate: Annotated[
        float, typer.Option("--learning-rate", "--lr", min=0)
    ] = default(TrainConfig, "learning_rate"),
    head_lr: Annotated[
        float, typer.Option(min=0, help="the new scoring head's rate")
    ] = default(TrainConfig, "head_lr"),
    val_questions: Annotated[
        int, typer.Option(min=1, help="held-out questions per domain")
    ] = default(TrainConfig, "val_questions"),
    seed: Annotated[int, typer.Option()] = default(TrainConfig, "seed"),
    max_minutes: Annotated[
        float | None, typer.Option(min=0, help="stop training early after this long")
    ] = default(TrainConfig, "max_minutes"),
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads")] = None,
    require_improvement: Annotated[
        bool, typer.Option(help="install only if held-out MRR@10 beats BM25's order")
    ] = default(TrainConfig, "require_improvement"),
    compare_with: Annotated[
        Path | None,
        typer.Option(help="a reranker to measure on the same held-out questions; the new one "
                     "is installed only if it beats it too"),
    ] = default(TrainConfig, "compare_with"),  # noqa: B008 - read once, at import
    corpus_questions: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False,
                     help="a questions file of `lectern train encoder` for the ingested corpus: "
                     "its kept questions train the reranker too, and installing is decided "
                     "on those from held-out documents"),
    ] = None,
    corpus_val_questions: Annotated[
        int, typer.Option(min=1, help="held-out corpus questions measured, at most")
    ] = default(TrainConfig, "corpus_val_questions"),
) -> None:
    """Train the cross-encoder reranker from the packaged MiniLM encoder (never on SQuAD)."""
    from contextlib import closing

    from ingest.sqlite_store import SQLiteDocumentStore
    from model import prepare
    from retriever.questions import load as load_questions
    from retriever.train.reranker import train
    from retriever.train.reranker_corpus import CorpusQuestions

    _torch_threads(threads)
    settings = Settings()
    backbone = prepare.encoder(settings, install=True)
    config = TrainConfig(
        data_dir=data,
        output_dir=(out or prepare.default_reranker_dir(settings)).resolve(),
        backbone=backbone.folder,
        backbone_ref=backbone.fingerprint,
        sources=tuple(s.strip() for s in sources.split(",") if s.strip()),
        questions=questions,
        balance=balance,  # type: ignore[arg-type]  # TrainConfig checks it
        hard_negatives=hard_negatives,
        random_negatives=random_negatives,
        loss=loss,  # type: ignore[arg-type]  # TrainConfig checks it
        layers=layers,
        max_length=max_length,
        pooling=pooling,  # type: ignore[arg-type]  # TrainConfig checks it
        batch_questions=batch_questions,
        epochs=epochs,
        learning_rate=learning_rate,
        head_lr=head_lr,
        val_questions=val_questions,
        seed=seed,
        max_minutes=max_minutes,
        require_improvement=require_improvement,
        compare_with=compare_with.resolve() if compare_with else None,
        corpus_val_questions=corpus_val_questions,
    )
    corpus = None
    if corpus_questions is not None:
        with closing(SQLiteDocumentStore(settings.store_path)) as store:
            chunks = store.all_chunks()
        corpus = CorpusQuestions(
            chunks, load_questions(corpus_questions), corpus_questions.resolve()
        )
    result = train(config, log=lambda message: typer.echo(message, err=True), corpus=corpus)
    typer.echo(json.dumps(result.info["validation"]["overall"], indent=2))
    if not result.installed:
        typer.echo(f"not installed (no better on held-out): {result.output_dir}")
        raise typer.Exit(1)
    typer.echo(f"reranker saved to {result.output_dir}")
