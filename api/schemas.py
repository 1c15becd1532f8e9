"""The REST API's request and response bodies (what OpenAPI documents)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import Ge
from pydantic import BaseModel, BeforeValidator, Field, Strict

from ingest.formats import FORMATS


def _integral_float_to_int(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer as JSON Schema (so OpenAPI) means one: 3 or 3.0, but not `true` or "3",
# which pydantic's lax mode would take for 1 and 3 and its strict mode refuses with 3.0.
# (The bound goes before the validator, or pydantic writes it as "ge", not "minimum".)
PositiveJsonInteger = Annotated[int, Strict(), Ge(1), BeforeValidator(_integral_float_to_int)]


# What a question may not be made of only: Unicode's White_Space, spelled out, so that the
# route and the schema's pattern agree under every regex engine (Python's \s also counts
# \x1c-\x1f, JavaScript's also U+FEFF).
BLANKS = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
NOT_BLANK = "[^" + "".join(f"\\u{ord(c):04x}" for c in BLANKS) + "]"


class TurnIn(BaseModel):
    question: str = Field(min_length=1, description="an earlier question, as asked")
    answer: str = Field(description="the answer it got")


class AskRequest(BaseModel):
    # The upper bounds come from the settings: api.openapi writes them into the schema.
    # The blank check stays in the route (a clearer message than pydantic's pattern one);
    # the pattern only tells clients what it checks.
    question: str = Field(
        min_length=1,
        description="the question, in plain text, with at least one non-blank character",
        json_schema_extra={"pattern": NOT_BLANK},
    )
    top_k: PositiveJsonInteger | None = Field(None, description="passages to answer from")
    history: list[TurnIn] | None = Field(
        None,
        description="the conversation's earlier turns, oldest first (bounded by "
        "conversation.max_turns and max_turn_chars); not with conversation_id",
    )
    conversation_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="a conversation the server keeps (from an earlier answer's "
        "conversation_id); not with history",
    )


class CitationOut(BaseModel):
    number: int
    document_id: str
    title: str
    section: str | None
    page: int | None
    snippet: str
    url: str = Field(description="the source document, relative to the API base")


class TimingsOut(BaseModel):
    retrieve_ms: float
    rerank_ms: float
    generate_ms: float
    total_ms: float


class AskResponse(BaseModel):
    answer: str
    abstained: bool
    citations: list[CitationOut]
    timings: TimingsOut
    answer_id: str | None = Field(
        description="what POST /api/v1/feedback names; null when answers are not logged"
    )
    standalone_question: str = Field(
        description="what retrieval searched for: the question, or a follow-up made to "
        "stand alone with the earlier turns"
    )
    conversation_id: str | None = Field(
        description="send it with the next question to continue this conversation; null "
        "when the question came with its history (the client keeps the conversation) or the "
        "server keeps none"
    )


class FeedbackIn(BaseModel):
    answer_id: str = Field(min_length=1, max_length=64, description="the answer's answer_id")
    rating: Literal["up", "down"]
    comment: str | None = Field(
        None, description="what was wrong or right (bounded by feedback.max_comment_chars)"
    )


class FeedbackOut(BaseModel):
    answer_id: str
    rating: Literal["up", "down"]
    comment: str | None
    rated_at: datetime


class LoggedAnswerOut(BaseModel):
    id: str
    created: datetime
    question: str
    standalone_question: str
    answer: str
    abstained: bool
    rating: Literal["up", "down"] | None
    comment: str | None


class QuestionGroupOut(BaseModel):
    count: int = Field(description="questions in the group")
    example: str = Field(description="the question nearest the group's meaning, as asked")
    example_searched: str | None = Field(
        description="what was searched for it, when that differs (a follow-up made to stand "
        "alone with its earlier turns)"
    )
    questions: list[str] = Field(
        description="its distinct questions as asked, the most asked first"
    )
    abstained: int
    rated_down: int
    last_asked: datetime
    answer_ids: list[str]


class QuestionsOut(BaseModel):
    days: float
    answers: int = Field(description="answers given in the period")
    abstained: int
    rated_up: int
    rated_down: int
    recent: list[LoggedAnswerOut] = Field(description="the newest answers first")
    missed: list[QuestionGroupOut] = Field(
        description="questions abstained on or rated down, grouped by meaning, the most "
        "frequent first: what the documents do not answer"
    )


class DocumentOut(BaseModel):
    id: str
    title: str
    source: str
    media_type: str
    size_bytes: int
    chunk_count: int
    ingested_at: datetime


class DocumentList(BaseModel):
    documents: list[DocumentOut]


class DeletedOut(BaseModel):
    deleted: DocumentOut


class UploadResultOut(BaseModel):
    filename: str
    status: Literal["added", "updated", "unchanged", "duplicate", "failed"]
    document_id: str | None
    chunks: int
    truncated_chunks: int = Field(
        0, description="chunks longer, under their heading, than the encoder reads: their "
        "end is not embedded (the chunker aims for 0)"
    )
    detail: str


class UploadResponse(BaseModel):
    results: list[UploadResultOut]


class AdapterOut(BaseModel):
    name: str = Field(description="what PUT /api/v1/admin/adapters/active takes")
    path: str = Field(description="its folder, under the data folder when it is there")
    active: bool
    record: dict[str, Any] | None = Field(
        description="its training record's figures (data counts, hyperparameters, held-out "
        "scores), when it has one"
    )
    abstain_threshold: float | None = Field(
        None, description="the abstention threshold recorded for it (abstention.json), read "
        "when it is switched in; null: none was. generation.abstain_threshold, when set, "
        "overrides it"
    )


class AdapterList(BaseModel):
    active: str | None = Field(description="the adapter serving; null: the base model")
    refused: str | None = Field(
        description="why the configured adapter is not serving (refused at start-up)"
    )
    adapters: list[AdapterOut]


class RetrievalServed(BaseModel):
    rrf_k: int
    bm25_weight: float
    dense_weight: float
    rerank: bool
    rerank_prior_weight: float | None = Field(
        description="null: the weight recorded with the reranker"
    )


class CalibrationStatus(BaseModel):
    running: bool = Field(description="a calibration is under way (the old settings serve)")
    started: datetime | None = Field(description="when the one under way started")
    due: bool = Field(description="enough of the corpus changed since the last fit to refit")
    last_error: str | None = Field(description="why the last calibration failed, if it did")
    serving: RetrievalServed = Field(description="the retrieval settings searches use")
    calibration: dict[str, Any] | None = Field(
        description="the record of the calibration serving (retriever.calibration); null: none"
    )


class UseAdapterRequest(BaseModel):
    name: str | None = Field(description="an adapter's name from the list; null: the base model")


class Health(BaseModel):
    status: Literal["ready", "starting"]
    documents: int = 0
    chunks: int = 0


# The Retry-After header of a 429 or 503, as OpenAPI documents it.
RETRY_AFTER = {"description": "seconds to wait before asking again", "schema": {"type": "integer"}}


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


# What GET /api/v1/documents/{id}/file answers: the file in the format it was ingested as.
DOCUMENT_FILE_RESPONSE: dict[str, Any] = {
    "description": "the source file, in its own media type",
    "content": {
        media_type: {"schema": {"type": "string", "format": "binary"}}
        for media_type in sorted({f.media_type for f in FORMATS.values()})
    },
}


def _event(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": payload,
            },
        },
    }


def _object(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# One server-sent event of POST /api/v1/ask/stream: its name and its JSON data.
STREAM_EVENT: dict[str, Any] = {
    "oneOf": [
        _event("token", _object(text={"type": "string"})),
        _event(
            "citations",
            _object(
                answer={"type": "string"},
                abstained={"type": "boolean"},
                citations={"type": "array", "items": _ref("CitationOut")},
                answer_id={"type": ["string", "null"]},
                standalone_question={"type": "string"},
                conversation_id={"type": ["string", "null"]},
            ),
        ),
        _event("done", _object(timings=_ref("TimingsOut"))),
        _event("error", _ref("ErrorOut")),
    ]
}
