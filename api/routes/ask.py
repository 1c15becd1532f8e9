"""The public question-answering routes."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from api import errors
from api.deps import ServiceDep
from api.schemas import (
    BLANKS,
    STREAM_EVENT,
    AskRequest,
    AskResponse,
    CitationOut,
    ErrorOut,
    TimingsOut,
)
from lectern.errors import InvalidRequestError, LecternError
from lectern.types import AskResult, TokenEvent

router = APIRouter(prefix="/api/v1", tags=["ask"])
_RETRY_AFTER = {"description": "seconds to wait before asking again", "schema": {"type": "integer"}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "a body that cannot be read (e.g. not UTF-8)"},
    422: {"model": ErrorOut, "description": "a question or top_k outside the limits"},
    429: {
        "model": ErrorOut,
        "description": "over the rate limit",
        "headers": {"Retry-After": _RETRY_AFTER},
    },
    503: {"model": ErrorOut, "description": "the models are still loading"},
}


def checked(body: AskRequest, request: Request) -> AskRequest:
    """Apply the limits from settings (pydantic's Field bounds are fixed at import)."""
    api = request.app.state.settings.api
    request.app.state.rate_limiter(request)
    question = body.question.strip(BLANKS)
    if not question:
        raise InvalidRequestError("question: must not be blank")
    # The question as sent is measured, blanks included: that is the maxLength OpenAPI states.
    if len(body.question) > api.max_question_chars:
        raise InvalidRequestError(
            f"question: {len(body.question)} characters, over the limit of "
            f"{api.max_question_chars}"
        )
    if body.top_k is not None and body.top_k > api.max_top_k:
        raise InvalidRequestError(f"top_k: {body.top_k} is over the limit of {api.max_top_k}")
    return AskRequest(question=question, top_k=body.top_k)


CheckedAsk = Annotated[AskRequest, Depends(checked)]


def to_response(result: AskResult) -> AskResponse:
    t = result.timings
    return AskResponse(
        answer=result.answer.text,
        abstained=result.answer.abstained,
        citations=[
            CitationOut(
                number=c.number,
                document_id=c.document_id,
                title=c.title,
                section=c.section,
                page=c.page,
                snippet=c.snippet,
                url=f"/api/v1/documents/{c.document_id}/file"
                + (f"#page={c.page}" if c.page else ""),
            )
            for c in result.answer.citations
        ],
        timings=TimingsOut(
            retrieve_ms=t.retrieve_ms,
            rerank_ms=t.rerank_ms,
            generate_ms=t.generate_ms,
            total_ms=t.total_ms,
        ),
    )


@router.post("/ask", response_model=AskResponse, responses=_ERRORS)
def ask(body: CheckedAsk, svc: ServiceDep) -> AskResponse:
    """Answer a question from the documents, with citations; abstains when they don't say."""
    svc.require_ready()
    return to_response(svc.ask(body.question, body.top_k))


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post(
    "/ask/stream",
    # StreamingResponse has no media type of its own, so the 200 is only the events
    # below and the errors are JSON, as they are sent.
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": STREAM_EVENT}},
            "description": "`token` events ({text}), then `citations` "
            "({answer, abstained, citations}), then `done` ({timings})",
        },
        **_ERRORS,
    },
)
def ask_stream(body: CheckedAsk, svc: ServiceDep) -> StreamingResponse:
    """The same answer as server-sent events: tokens as they are generated, then citations."""
    svc.require_ready()
    stream = svc.ask_stream(body.question, body.top_k)
    # The first event (a place among the answers in flight, retrieval, the first token)
    # comes before the headers, so a refusal or failure there is a real HTTP error.
    first = next(stream)

    def events() -> Iterator[str]:
        try:
            for event in itertools.chain([first], stream):
                if isinstance(event, TokenEvent):
                    yield _sse("token", {"text": event.text})
                    continue
                final = to_response(event.result)
                yield _sse(
                    "citations",
                    {
                        "answer": final.answer,
                        "abstained": final.abstained,
                        "citations": [c.model_dump() for c in final.citations],
                    },
                )
                yield _sse("done", {"timings": final.timings.model_dump()})
        except LecternError as exc:  # headers are sent: report in-band
            yield _sse("error", {"error": {"code": errors.code_of(exc), "message": str(exc)}})

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
