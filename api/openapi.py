"""/openapi.json as the server behaves: its configured limits and its one error shape.

pydantic fixes a model's bounds when the module is imported, but `api.max_top_k` and
`api.max_question_chars` are read at start-up (api.routes.ask applies them); without
them in the schema a client reading it would send `top_k: 50` and be refused. And FastAPI
documents a 422 as its own `HTTPValidationError`, while api.errors answers every 422 as
`ErrorOut`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from lectern.settings import ApiSettings

_COMPONENTS = "#/components/schemas/"


def describe_the_server(app: FastAPI, api: ApiSettings) -> None:
    """Make `app.openapi()` state the configured limits and the project's 422 body."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # caches it in app.openapi_schema, as FastAPI does
            _state_limits(schema, api)
            _validation_errors_as_error_out(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _state_limits(schema: dict[str, Any], api: ApiSettings) -> None:
    ask = schema["components"]["schemas"]["AskRequest"]["properties"]
    ask["question"]["maxLength"] = api.max_question_chars
    for branch in ask["top_k"]["anyOf"]:
        if branch.get("type") == "integer":
            branch["maximum"] = api.max_top_k


def _validation_errors_as_error_out(schema: dict[str, Any]) -> None:
    for operations in schema["paths"].values():
        for operation in operations.values():
            for media in operation.get("responses", {}).get("422", {}).get("content", {}).values():
                if media.get("schema", {}).get("$ref") == f"{_COMPONENTS}HTTPValidationError":
                    media["schema"] = {"$ref": f"{_COMPONENTS}ErrorOut"}
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)
