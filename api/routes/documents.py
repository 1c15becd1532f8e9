"""Document administration (bearer token) and the public source-file links citations use."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import FileResponse

from api.deps import ServiceDep, admin
from api.schemas import (
    DOCUMENT_FILE_RESPONSE,
    DeletedOut,
    DocumentList,
    DocumentOut,
    ErrorOut,
    UploadResponse,
    UploadResultOut,
)
from api.service import Lectern
from api.upload_names import upload_path
from ingest.formats import format_of
from lectern.errors import FileTooLargeError, InvalidRequestError
from lectern.types import DocumentInfo

_ERRORS = {code: {"model": ErrorOut} for code in (401, 404, 413, 415, 422)}


router = APIRouter(prefix="/api/v1/documents", tags=["documents"])
admin_router = APIRouter(
    prefix="/api/v1/documents", tags=["documents"], dependencies=[Depends(admin)], responses=_ERRORS
)


def _out(info: DocumentInfo, svc: Lectern) -> DocumentOut:
    return DocumentOut(
        id=info.id,
        title=info.title,
        source=svc.shown_source(info.source),
        media_type=info.media_type,
        size_bytes=info.size_bytes,
        chunk_count=info.chunk_count,
        ingested_at=info.ingested_at,
    )


@admin_router.get("", response_model=DocumentList)
def list_documents(svc: ServiceDep) -> DocumentList:
    """Every ingested document with its chunk count."""
    return DocumentList(documents=[_out(d, svc) for d in svc.documents()])


def _read_limited(upload: UploadFile, max_bytes: int) -> bytes:
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileTooLargeError(
            upload.filename or "upload", f"over the {max_bytes / 2**20:.1f} MiB upload limit"
        )
    return data


@admin_router.post(
    "",
    response_model=UploadResponse,
    responses={400: {"model": ErrorOut, "description": "a body that is not valid multipart"}},
)
def upload(
    request: Request,
    files: Annotated[list[UploadFile], File(description="one or many files")],
    svc: ServiceDep,
) -> UploadResponse:
    """Upload one or many files; each is ingested and indexed, or reported failed."""
    settings = request.app.state.settings
    if len(files) > settings.api.max_upload_files:
        raise InvalidRequestError(
            f"{len(files)} files in one upload; the limit is {settings.api.max_upload_files}"
        )
    max_bytes = settings.ingest.max_file_bytes
    # Check every file against the limits before ingesting any, so a rejected request
    # changes nothing. The format is that of the name the file is kept (and served) by.
    kept = [(f, str(upload_path(f.filename or "upload"))) for f in files]
    for _, name in kept:
        format_of(name)
    payloads = [(name, _read_limited(f, max_bytes)) for f, name in kept]
    results = [svc.ingest_upload(name, data) for name, data in payloads]
    out = [
        UploadResultOut(
            filename=r.path,
            status=r.status,
            document_id=r.document_id,
            chunks=r.chunks,
            truncated_chunks=r.truncated,
            detail=r.detail,
        )
        for r in results
    ]
    if all(r.status == "failed" for r in results):
        raise InvalidRequestError("; ".join(f"{r.path}: {r.detail}" for r in results))
    return UploadResponse(results=out)


@admin_router.delete("/{document_id}", response_model=DeletedOut)
def delete(document_id: str, svc: ServiceDep) -> DeletedOut:
    """Delete a document with its chunks and vectors (and an uploaded file)."""
    return DeletedOut(deleted=_out(svc.delete(document_id), svc))


@router.get(
    "/{document_id}/file",
    response_class=FileResponse,
    responses={200: DOCUMENT_FILE_RESPONSE, 404: {"model": ErrorOut}},
)
def document_file(document_id: str, svc: ServiceDep) -> FileResponse:
    """The original file a citation points to."""
    info, path = svc.document_file(document_id)
    # Documents are third-party content: an HTML page must not run scripts with the
    # API's origin (where the admin page keeps its token).
    return FileResponse(
        path,
        media_type=info.media_type,
        filename=path.name,
        content_disposition_type="inline",
        headers={"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"},
    )
