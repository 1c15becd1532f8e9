"""The public question-answering routes."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from api import errors
from api.conversations import checked_history
from api.deps import ServiceDep
from api.schemas import (
    BLANKS,
    RETRY_AFTER,
    STREAM_EVENT,
    AskRequest,
    AskResponse,
    CitationOut,
    ErrorOut,
    TimingsOut,
)
from api.service import Lectern
from api.streaming import AnswerStream
from lectern.errors import InvalidRequestError, LecternError
from lectern.types import AskResult, TokenEvent, Turn

router = APIRouter(prefix="/api/v1", tags=["ask"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "a body that cannot be read (e.g. not UTF-8)"},
    404: {"model": ErrorOut, "description": "a conversation_id the server does not keep"},
    422: {
        "model": ErrorOut,
        "description": "a question, top_k or history outside the limits, or both history "
        "and conversation_id",
    },
    429: {
        "model": ErrorOut,
        "description": "over the rate limit",
        "headers": {"Retry-After": RETRY_AFTER},
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
    if body.history and body.conversation_id is not None:
        raise InvalidRequestError("history and conversation_id: send one of them, not both")
    return body.model_copy(update={"question": question})


class Conversation:
    """The earlier turns a question brings, and where its own turn is kept afterwards."""

    def __init__(self, body: AskRequest, svc: Lectern) -> None:
        self._store = svc.conversations
        self.id = body.conversation_id
        # A client sending the history keeps the conversation itself: none is kept for it.
        self._client_kept = body.history is not None
        if self.id is not None:  # its turns were checked when they came
            self.history = self._store.history(self.id)
        else:
            turns = [Turn(t.question, t.answer) for t in body.history or ()]
            self.history = checked_history(turns, svc.settings.conversation)

    def keep(self, question: str, result: AskResult) -> str | None:
        """Add this turn; the id to continue with (a new conversation for a question that
        named none and sent no history; None for a client that keeps its own)."""
        turn = Turn(question, result.answer.text)
        if self._client_kept:
            return None
        if self.id is None:
            self.id = self._store.start([turn])
        else:
            self._store.append(self.id, turn)
        return self.id


CheckedAsk = Annotated[AskRequest, Depends(checked)]


def to_response(result: AskResult, conversation_id: str | None = None) -> AskResponse:
    t = result.timings
    return AskResponse(
        answer_id=result.answer_id or None,
        standalone_question=result.standalone_question,
        conversation_id=conversation_id,
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
    conversation = Conversation(body, svc)
    result = svc.ask(body.question, body.top_k, history=conversation.history)
    return to_response(result, conversation.keep(body.question, result))


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
    conversation = Conversation(body, svc)
    stream = svc.ask_stream(body.question, body.top_k, history=conversation.history)
    # The first event (a place among the answers in flight, retrieval, the first token)
    # comes before the headers, so a refusal or failure there is a real HTTP error.
    first = next(stream)

    def events() -> Iterator[str]:
        try:
            for event in itertools.chain([first], stream):
                if isinstance(event, TokenEvent):
                    yield _sse("token", {"text": event.text})
                    continue
                final = to_response(event.result, conversation.keep(body.question, event.result))
                yield _sse(
                    "citations",
                    {
                        "answer": final.answer,
                        "abstained": final.abstained,
                        "citations": [c.model_dump() for c in final.citations],
                        "answer_id": final.answer_id,
                        "standalone_question": final.standalone_question,
                        "conversation_id": final.conversation_id,
                    },
                )
                yield _sse("done", {"timings": final.timings.model_dump()})
        except LecternError as exc:  # headers are sent: report in-band
            yield _sse("error", {"error": {"code": errors.code_of(exc), "message": str(exc)}})
        finally:
            stream.close()  # its place among the answers in flight is given back

    return AnswerStream(events())
