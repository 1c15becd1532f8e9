"""`lectern train generator`: LoRA-tune the generator on grounded QA built from the shared data.

Every option's default is its config field's (model.train.lora_config), which imports
nothing heavy, so `lectern --help` stays fast.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli_train import SHARED_DATA, _torch_threads, train_app
from lectern.settings import Settings
from model.train.lora_config import LoraTrainConfig

_F = LoraTrainConfig.model_fields
# The shipped adapter's recipe (model/weights/generator_lora): every CoQA standalone turn,
# whose short free-form answers are the style a student reads first; fewer QuAC answers,
# which run to 14 words; the 64-token budget the server uses among the budgets.
DEFAULT_SOURCES = "coqa,narrativeqa=1500,quac=400,boolq=600"


def _limits(text: str) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, n = part.partition("=")
        if n and not n.isdigit():
            raise typer.BadParameter(f"{part!r}: use name=count, e.g. coqa=2000")
        out[name.strip()] = int(n) if n else None
    return out


def _corpus(settings: Settings, questions: Path):  # noqa: ANN202 - qa_sources.SourceData
    from contextlib import closing

    from ingest.sqlite_store import SQLiteDocumentStore
    from model.train.qa_sources import corpus_questions
    from retriever.questions import load

    with closing(SQLiteDocumentStore(settings.store_path)) as store:
        return corpus_questions(load(questions), store.all_chunks())


@train_app.command("generator")
def train_generator(
    data: Annotated[Path, typer.Option(help="the shared training data (coqa/, quac/, ...)")]
    = SHARED_DATA,
    out: Annotated[Path | None, typer.Option(help="the adapter's folder (default: "
                                             "<model cache>/adapters/lora)")] = None,
    sources: Annotated[str, typer.Option(help="name=questions, comma-separated; a name "
                                         "alone takes all")] = DEFAULT_SOURCES,
    unanswerable: Annotated[float, typer.Option(min=0, max=0.9, help="share of the examples "
                                                "whose gold passage is left out")] = 0.15,
    abstain: Annotated[float | None, typer.Option(min=0, max=0.9, help="cut abstaining "
                                                  "examples (all kinds) to this share")] = 0.2,
    budgets: Annotated[str, typer.Option(help="context token budgets the prompts are "
                                         "compressed to, one drawn per example")] = "64,96,160",
    rank: Annotated[int, typer.Option(min=1)] = _F["rank"].default,
    alpha: Annotated[int, typer.Option(min=1)] = _F["alpha"].default,
    dropout: Annotated[float, typer.Option(min=0, max=0.99)] = _F["dropout"].default,
    targets: Annotated[str | None, typer.Option(help="modules to adapt, comma-separated "
                                                "(default: per architecture)")] = None,
    mlp: Annotated[bool, typer.Option(help="adapt the MLP as well")] = _F["mlp"].default,
    learning_rate: Annotated[float, typer.Option("--learning-rate", "--lr", min=0)]
    = _F["learning_rate"].default,
    batch_size: Annotated[int, typer.Option(min=1)] = _F["batch_size"].default,
    epochs: Annotated[float, typer.Option(min=0.01)] = _F["epochs"].default,
    eval_every: Annotated[int, typer.Option(min=1)] = _F["eval_every"].default,
    checkpoint_every: Annotated[int, typer.Option(min=1)] = _F["checkpoint_every"].default,
    seed: Annotated[int, typer.Option()] = _F["seed"].default,
    resume: Annotated[bool, typer.Option(help="continue from <out>.checkpoint, on the "
                                         "examples saved in <out>.data")] = False,
    data_only: Annotated[bool, typer.Option(help="build and save the examples, no training")]
    = False,
    corpus_questions: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="a questions file of `lectern train encoder` for the "
        "ingested corpus: each kept question, answered by the sentence it was written from, "
        "trains the generator too (source 'corpus')")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    quantize: Annotated[str, typer.Option(help="auto, none, 8bit or 4bit (QLoRA; CUDA)")]
    = "auto",
) -> None:
    """Tune the generator with LoRA to answer from passages, cite them, and abstain (never
    on SQuAD or any evaluation file)."""
    from api.components import build_embedder
    from ingest.chunker import Chunker
    from lectern import device as devices
    from model import prepare
    from model.train import generator_data
    from model.train.lora import LoraTrainer
    from model.train.precision import train_precision

    def log(message: str) -> None:
        typer.echo(message, err=True)

    _torch_threads(threads)
    settings = Settings()
    out = (out or prepare.adapters_dir(settings) / "lora").resolve()
    config = LoraTrainConfig(
        rank=rank, alpha=alpha, dropout=dropout, mlp=mlp, learning_rate=learning_rate,
        targets=[t.strip() for t in targets.split(",") if t.strip()] if targets else None,
        batch_size=batch_size, epochs=epochs, eval_every=eval_every,
        checkpoint_every=checkpoint_every, seed=seed,
    )
    folder = out.with_name(f"{out.name}.data")
    if resume and (folder / "data-counts.json").is_file():
        built = generator_data.load(folder)
        log(f"examples from {folder}: {len(built.train)} train, {len(built.heldout)} held out")
    else:
        embedder = build_embedder(settings, "cpu")
        embedder.warm_up()
        chunker = Chunker(embedder.count_tokens, settings.ingest.chunk_tokens,
                          settings.ingest.chunk_overlap)
        limits, given = _limits(sources), {}
        if corpus_questions is not None:
            given["corpus"] = _corpus(settings, corpus_questions)
            limits.setdefault("corpus", None)
        built = generator_data.build_generator_data(
            data, embedder, chunker, settings.generation.passages,
            [int(b) for b in budgets.split(",")], limits, unanswerable, seed, log, given,
        )
        generator_data.save(built, folder)
        log(f"examples saved to {folder}")
    if abstain is not None:
        built = generator_data.rebalance(built, abstain, seed)
        log(f"rebalanced to {abstain:.0%} abstentions: {built.counts.train}")
    if data_only:
        return
    prepared = prepare.generator(settings, install=True, convert_gguf=True)
    precision = train_precision(devices.probe(), device, quantize)  # type: ignore[arg-type]
    trainer = LoraTrainer(prepared.load_from, settings.models.generator, config, precision,
                          out, log)
    record = trainer.train(
        [(e.messages, e.target) for e in built.train],
        [(e.messages, e.target) for e in built.heldout],
        built.counts, resume=resume,
        command=shlex.join(["lectern", *sys.argv[1:]]),
    )
    typer.echo(f"adapter saved to {out} ({record.steps} steps, {record.seconds / 60:.1f} min, "
               f"held-out loss {record.heldout[-1].loss if record.heldout else float('nan'):.4f})")
