"""Feedback on an answer (public, like /ask: the widget sends it) and the admin
"Questions" view: what was asked, what the documents missed, grouped by meaning."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.deps import ServiceDep, admin
from api.schemas import (
    ErrorOut,
    FeedbackIn,
    FeedbackOut,
    LoggedAnswerOut,
    QuestionGroupOut,
    QuestionsOut,
)
from api.service import Lectern
from lectern.errors import AnswerNotFoundError, InvalidRequestError
from lectern.protocols import AnswerLog
from lectern.types import LoggedAnswer

router = APIRouter(prefix="/api/v1", tags=["feedback"])
admin_router = APIRouter(
    prefix="/api/v1/admin/questions",
    tags=["feedback"],
    dependencies=[Depends(admin)],
    responses={401: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)
MAX_LISTED = 5000  # answers one view or export reads


def _log(svc: Lectern) -> AnswerLog:
    if svc.answer_log is None:
        raise AnswerNotFoundError("answers are not logged here (feedback.log_answers is false)")
    return svc.answer_log


@router.post(
    "/feedback",
    status_code=201,
    response_model=FeedbackOut,
    responses={
        400: {"model": ErrorOut, "description": "a body that cannot be read (e.g. not UTF-8)"},
        404: {"model": ErrorOut, "description": "no answer has this id"},
        422: {"model": ErrorOut, "description": "a comment over the length limit"},
        429: {"model": ErrorOut, "description": "over the rate limit"},
    },
)
def feedback(body: FeedbackIn, request: Request, svc: ServiceDep) -> FeedbackOut:
    """Thumbs up or down on an answer, with an optional comment; sent again, it replaces."""
    request.app.state.rate_limiter(request)
    limit = svc.settings.feedback.max_comment_chars
    comment = (body.comment or "").strip() or None
    if comment is not None and len(comment) > limit:
        raise InvalidRequestError(f"comment: {len(comment)} characters, over the limit of {limit}")
    entry = _log(svc).rate(body.answer_id, body.rating, comment)
    assert entry.rating is not None and entry.rated_at is not None
    return FeedbackOut(
        answer_id=entry.id, rating=entry.rating, comment=entry.comment, rated_at=entry.rated_at
    )


def _since(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


Days = Annotated[float, Query(gt=0, le=3650, description="how far back to look, in days")]


def _out(entry: LoggedAnswer) -> LoggedAnswerOut:
    return LoggedAnswerOut(
        id=entry.id, created=entry.created, question=entry.question,
        standalone_question=entry.standalone_question, answer=entry.answer,
        abstained=entry.abstained, rating=entry.rating, comment=entry.comment,
    )


@admin_router.get("", response_model=QuestionsOut)
def questions(
    svc: ServiceDep,
    days: Days = 30,
    recent: Annotated[int, Query(ge=0, le=500, description="recent questions listed")] = 50,
) -> QuestionsOut:
    """Recent questions, and the ones abstained on or rated down grouped by meaning:
    each group is a question the documents do not answer well, with how often it came."""
    from model.question_groups import group_questions

    log = _log(svc)
    svc.warm_up()  # the encoder groups the questions
    entries = log.recent(MAX_LISTED, _since(days))
    missed = [e for e in entries if e.abstained or e.rating == "down"]
    groups = group_questions(missed, svc.embedder)
    return QuestionsOut(
        days=days,
        answers=len(entries),
        abstained=sum(e.abstained for e in entries),
        rated_up=sum(e.rating == "up" for e in entries),
        rated_down=sum(e.rating == "down" for e in entries),
        recent=[_out(e) for e in entries[:recent]],
        missed=[
            QuestionGroupOut(
                count=g.count, example=g.example, example_searched=g.example_searched,
                questions=list(g.questions),
                abstained=g.abstained, rated_down=g.rated_down, last_asked=g.last_asked,
                answer_ids=list(g.answer_ids),
            )
            for g in groups
        ],
    )


_EXPORT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the answers of the period, newest first (the newest 5,000, "
        "with an X-Lectern-Truncated header when there may be more)",
        "content": {"text/csv": {"schema": {"type": "string"}},
                    "application/x-ndjson": {"schema": {"type": "string"}}},
    }
}


@admin_router.get("/export", response_class=Response, responses=_EXPORT)
def export(
    svc: ServiceDep,
    format: Annotated[Literal["csv", "jsonl"], Query(description="file format")] = "csv",
    days: Days = 30,
    missed_only: Annotated[bool, Query(description="only abstained or rated down")] = False,
) -> Response:
    """The answers as a CSV or JSONL file (questions, answers, ratings, comments)."""
    from model.answer_export import write_csv, write_jsonl

    entries = _log(svc).recent(MAX_LISTED, _since(days), missed_only=missed_only)
    out = io.StringIO()
    (write_csv if format == "csv" else write_jsonl)(entries, out)
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    name = f"lectern-questions.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if len(entries) == MAX_LISTED:  # there may be more: `lectern feedback export` has all
        headers["X-Lectern-Truncated"] = str(MAX_LISTED)
    return Response(out.getvalue(), media_type=media, headers=headers)
