"""`lectern feedback export`: the answer log as a file, or its ratings as preference
pairs for the reward model (model/train/preference_pairs.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer

from lectern.settings import Settings

feedback_app = typer.Typer(
    no_args_is_help=True, help="Answers, their ratings and comments (the answer log)."
)
MAX_EXPORTED = 1_000_000


@feedback_app.command("export")
def export(
    out: Annotated[Path, typer.Argument(help="the file to write")],
    pairs: Annotated[bool, typer.Option(
        "--pairs", help="write preference pairs (thumbs-up vs thumbs-down answers to the "
        "same or a near-identical question) in the reward model's format")] = False,
    format: Annotated[Literal["csv", "jsonl"], typer.Option(
        help="without --pairs: the file format")] = "jsonl",
    days: Annotated[float, typer.Option(min=0.0, help="how far back; 0: everything kept")] = 0,
    missed_only: Annotated[bool, typer.Option(
        help="without --pairs: only answers abstained on or rated down")] = False,
    similarity: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="--pairs: cosine at which two questions count as one")] = 0.9,
) -> None:
    """Write the answer log, or its preference pairs, to OUT."""
    from model.answer_export import write_csv, write_jsonl
    from model.answer_log import SQLiteAnswerLog

    settings = Settings()
    if not settings.feedback_path.exists():
        raise typer.BadParameter(f"no answer log at {settings.feedback_path}", param_hint="out")
    log = SQLiteAnswerLog(settings.feedback_path)
    now = datetime.now(UTC)
    since = now - timedelta(days=days) if days else None
    try:
        # What the retention setting says is gone is not exported, server running or not.
        log.purge(now - timedelta(days=settings.feedback.retention_days))
        entries = log.recent(MAX_EXPORTED, since, missed_only=missed_only and not pairs)
    finally:
        log.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not pairs:
        with out.open("w", encoding="utf-8", newline="") as f:
            n = (write_csv if format == "csv" else write_jsonl)(entries, f)
        typer.echo(f"{n} answers written to {out}")
        return
    _export_pairs(settings, entries, out, similarity)


def _export_pairs(settings: Settings, entries: list, out: Path, similarity: float) -> None:
    from api.service import Lectern
    from model.train.preference_pairs import pairs_from_feedback, write_pairs

    service = Lectern(settings)
    try:
        service.warm_up()  # the encoder tells near-identical questions apart

        def chunk_texts(ids):  # noqa: ANN001, ANN202 - Sequence[int] -> list[str] | None
            chunks = service.store.get_chunks(list(ids))
            return [c.text for c in chunks] if len(chunks) == len(ids) else None

        report = pairs_from_feedback(entries, chunk_texts, service.embedder, similarity)
    finally:
        service.close()
    with out.open("w", encoding="utf-8") as f:
        write_pairs(report.pairs, f)
    typer.echo(
        f"{len(report.pairs)} pairs written to {out} from {report.rated} rated answers "
        f"({report.up} up, {report.down} down; {report.unmatched} down without an up answer "
        f"to the same question, {report.skipped_identical} identical, "
        f"{report.skipped_passages_gone} whose passages are gone)"
    )
