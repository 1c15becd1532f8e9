"""`lectern calibrate retrieval`: fit this corpus's retrieval settings on its own chunks."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from lectern.settings import Settings

calibrate_app = typer.Typer(
    no_args_is_help=True, help="Fit settings to this corpus (see retriever.calibration_fit)."
)


@calibrate_app.command("retrieval")
def calibrate_retrieval(
    questions: Annotated[
        int | None, typer.Option(help="synthetic questions to fit on (default: the setting)")
    ] = None,
    max_minutes: Annotated[
        float | None, typer.Option(help="time for writing them (default: the setting)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="which chunks are asked about")] = None,
    show: Annotated[int, typer.Option(help="configurations listed, best first")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole record")] = False,
) -> None:
    """Write questions for a sample of the corpus's chunks, score every fusion (BM25 alone
    included) with and without the reranker, record the choice and serve it."""
    from api.service import Lectern

    settings = Settings()
    c = settings.calibration
    update = {k: v for k, v in
              {"questions": questions, "max_minutes": max_minutes, "seed": seed}.items()
              if v is not None}
    settings = settings.model_copy(update={"calibration": c.model_copy(update=update)})
    service = Lectern(settings)
    try:
        record = service.calibrator.fit(lambda line: typer.echo(line, err=True))
    finally:
        service.close()
    if as_json:
        typer.echo(json.dumps(record.as_dict(), indent=2))
        return
    typer.echo(f"chosen: {record.chosen.name}")
    typer.echo(f"why: {record.reason}")
    typer.echo(f"{record.questions} questions ({record.questions_written} written) on "
               f"{record.chunks} chunks in {record.seconds:.0f} s")
    for s in sorted(record.candidates, key=lambda s: -s.mean)[:show]:
        typer.echo(f"  {s.mean:.4f} ± {s.se:.4f}  level {s.level}  gap {s.gap:+.4f} "
                   f"(SE {s.gap_se:.4f})  {s.choice.name}")
