"""`lectern train`: tune the encoder on the corpus, train the reranker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lectern.settings import Settings

train_app = typer.Typer(no_args_is_help=True, help="Train the reranker or tune the encoder.")
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _torch_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


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
    ] = None,
    per_chunk: Annotated[int, typer.Option(min=1, help="questions per chunk")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="prompts per generate() call")] = 16,
    filter_top_k: Annotated[
        int, typer.Option(min=1, help="keep a question if BM25 ranks its chunk this high")
    ] = 20,
    negatives: Annotated[int, typer.Option(min=0, help="BM25 hard negatives per question")] = 1,
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    train_batch_size: Annotated[int, typer.Option(min=2)] = 32,
    learning_rate: Annotated[float, typer.Option(min=0)] = 2e-5,
    max_steps: Annotated[int | None, typer.Option(min=1)] = None,
    holdout: Annotated[
        float, typer.Option(min=0, max=0.9, help="share of chunks whose questions only measure")
    ] = 0.1,
    seed: Annotated[int, typer.Option()] = 0,
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
    ] = True,
    questions_only: Annotated[
        bool, typer.Option(help="write the questions file, then stop")
    ] = False,
    compare_with: Annotated[
        Path | None,
        typer.Option(help="another encoder folder to measure on the same held-out questions; "
                     "--activate then requires beating it too"),
    ] = None,
) -> None:
    """Tune the encoder on questions the generator writes for the ingested chunks."""
    from datetime import UTC, datetime

    from api.service import Lectern, build_embedder
    from lectern import device
    from lectern.errors import ConfigError
    from model import prepare
    from retriever import reindex
    from retriever.train.corpus_tuning import CorpusTuning, tune_from_corpus, write_questions
    from retriever.train.encoder import TuningConfig

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
    m = settings.models
    where = device.plan(device.probe(), m.device, m.dtype).device
    report = tune_from_corpus(
        service.corpus, generator, base.folder, plan,
        meta={"base_encoder_ref": base.ref, "base_fingerprint": base.fingerprint},
        log=log, device=where, base_fingerprint=base.fingerprint,
    )
    typer.echo(f"tuned encoder: {out} ({report.steps} steps, {report.seconds['train']:.0f} s)")
    typer.echo(f"held-out before: {report.before}")
    typer.echo(f"held-out after:  {report.after}")
    if report.fusion:
        f = report.fusion
        typer.echo(f"fusion fitted on {f['questions']} held-out questions: RRF k {f['rrf_k']}, "
                   f"dense weight {f['dense_weight']:g} (MRR@10 {f['mrr_at_10']}; the default "
                   f"{f['default_mrr_at_10']}, standard error {f['standard_error']})")
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
    typer.echo(f"serving the tuned encoder ({done} chunks re-embedded, new index saved)")


@train_app.command("reranker")
def train_reranker(
    data: Annotated[
        Path, typer.Option(help="the shared training data (coqa/, boolq/, narrativeqa/, quac/)")
    ] = SHARED_DATA,
    out: Annotated[
        Path | None, typer.Option(help="default: <model cache>/reranker, where serving looks")
    ] = None,
    sources: Annotated[str, typer.Option(help="comma-separated")] = "coqa,boolq,narrativeqa,quac",
    questions: Annotated[
        int, typer.Option(min=1, help="training questions, shared evenly over the sources")
    ] = 20000,
    hard_negatives: Annotated[int, typer.Option(min=0, help="BM25 negatives per question")] = 4,
    random_negatives: Annotated[int, typer.Option(min=0)] = 1,
    loss: Annotated[str, typer.Option(help="listwise (softmax per question) or bce")] = "listwise",
    layers: Annotated[int, typer.Option(min=1, help="bottom encoder layers kept")] = 3,
    max_length: Annotated[int, typer.Option(min=32, max=512, help="tokens per pair")] = 64,
    batch_questions: Annotated[int, typer.Option(min=1, help="questions per step")] = 8,
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    lr: Annotated[float, typer.Option(min=0)] = 3e-4,
    head_lr: Annotated[float, typer.Option(min=0, help="the new scoring head's rate")] = 2e-3,
    val_questions: Annotated[int, typer.Option(min=1, help="held-out questions per source")] = 100,
    seed: Annotated[int, typer.Option()] = 13,
    max_minutes: Annotated[
        float | None, typer.Option(min=0, help="stop training early after this long")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads")] = None,
    require_improvement: Annotated[
        bool, typer.Option(help="install only if held-out MRR@10 beats BM25's order")
    ] = True,
    compare_with: Annotated[
        Path | None,
        typer.Option(help="a reranker to measure on the same held-out questions; the new one "
                     "is installed only if it beats it too"),
    ] = None,
    corpus_questions: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False,
                     help="a questions file of `lectern train encoder` for the ingested corpus: "
                     "its kept questions train the reranker too, and installing is decided "
                     "on those from held-out documents"),
    ] = None,
    corpus_val_questions: Annotated[
        int, typer.Option(min=1, help="held-out corpus questions measured, at most")
    ] = 500,
) -> None:
    """Train the cross-encoder reranker from the packaged MiniLM encoder (never on SQuAD)."""
    from contextlib import closing

    from ingest.sqlite_store import SQLiteDocumentStore
    from model import prepare
    from retriever.train import questions as synthetic_questions
    from retriever.train.reranker_corpus import CorpusQuestions
    from retriever.train.reranker import TrainConfig, train

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
        hard_negatives=hard_negatives,
        random_negatives=random_negatives,
        loss=loss,  # type: ignore[arg-type]  # TrainConfig checks it
        layers=layers,
        max_length=max_length,
        batch_questions=batch_questions,
        epochs=epochs,
        lr=lr,
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
            chunks, synthetic_questions.load(corpus_questions), corpus_questions.resolve()
        )
    result = train(config, log=lambda message: typer.echo(message, err=True), corpus=corpus)
    typer.echo(json.dumps(result.info["validation"]["overall"], indent=2))
    if not result.installed:
        typer.echo(f"not installed (no better on held-out): {result.output_dir}")
        raise typer.Exit(1)
    typer.echo(f"reranker saved to {result.output_dir}")
