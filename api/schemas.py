"""The REST API's request and response bodies (what OpenAPI documents)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class AskRequest(BaseModel):
    question: str = Field(min_length=1, description="the question, in plain text")
    top_k: int | None = Field(None, ge=1, description="passages to answer from")


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
    detail: str


class UploadResponse(BaseModel):
    results: list[UploadResultOut]


class Health(BaseModel):
    status: Literal["ready", "starting"]
    documents: int = 0
    chunks: int = 0


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody
