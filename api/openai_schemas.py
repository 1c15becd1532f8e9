"""The OpenAI-compatible API's bodies (api.routes.openai_compat), as OpenAI's Chat
Completions API has them, with Lectern's extra fields on the answer.

Requests are strict (a `"1"` is not a number, `true` not an integer) and take parameters
beyond these (OpenAI adds them often): what Lectern does not act on is accepted and
ignored, and each field below says which.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import CitationOut, PositiveJsonInteger

_REQUEST = ConfigDict(strict=True, extra="allow")


class TextPart(BaseModel):
    model_config = _REQUEST
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = _REQUEST  # name, tool_calls, tool_call_id...: accepted, ignored
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = Field(
        None, description="text, or text parts (joined by newlines); null: no text"
    )

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = _REQUEST
    include_usage: bool | None = Field(
        None, description="send a usage chunk (choices: []) before `data: [DONE]`"
    )


class ChatCompletionRequest(BaseModel):
    model_config = _REQUEST
    model: str = Field(
        description="any id: the answer is Lectern's, and the response names the id "
        "GET /v1/models lists"
    )
    messages: list[ChatMessage] = Field(
        min_length=1,
        description="the last must be a user message: the question (bounded like "
        "/api/v1/ask's); the user and assistant messages before it are the conversation's "
        "earlier turns (bounded by conversation.max_turns and max_turn_chars); system, "
        "developer and tool messages are ignored (Lectern's own instructions hold)",
    )
    stream: bool | None = Field(False, description="server-sent chat.completion.chunk events")
    stream_options: StreamOptions | None = None
    n: PositiveJsonInteger | None = Field(
        None, description="only 1: one answer per question", json_schema_extra={"maximum": 1}
    )
    temperature: float | None = Field(
        None, ge=0, le=2, description="ignored: answers are decoded greedily, reproducibly"
    )
    top_p: float | None = Field(None, ge=0, le=1, description="ignored, as temperature")
    max_tokens: PositiveJsonInteger | None = Field(
        None, description="ignored: the server's generation.max_new_tokens bounds an answer"
    )
    max_completion_tokens: PositiveJsonInteger | None = Field(
        None, description="ignored, as max_tokens"
    )
    stop: str | list[str] | None = Field(None, description="ignored")
    user: str | None = Field(None, description="ignored: nothing that names a user is kept")


class ChatUsage(BaseModel):
    prompt_tokens: int = Field(
        description="the prompt the generator read: its instructions, the passages found, "
        "the earlier turns it sees and the question"
    )
    completion_tokens: int = Field(
        description="the generator's reply, before the grounding check (which may quote a "
        "passage instead)"
    )
    total_tokens: int


class Grounding(BaseModel):
    """Lectern's fields beside OpenAI's: what the answer stands on."""

    citations: list[CitationOut]
    abstained: bool = Field(description="the documents do not answer the question")
    answer_id: str | None = Field(
        description="what POST /api/v1/feedback names; null when answers are not logged"
    )
    standalone_question: str = Field(
        description="what retrieval searched for: the question, or made to stand alone "
        "with the earlier turns"
    )


class ChatAnswer(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatAnswer
    finish_reason: Literal["stop", "length"]
    logprobs: None


class ChatCompletion(Grounding):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage | None = Field(
        description="counted with the generator's tokenizer; null when it has none"
    )


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: Literal["stop", "length"] | None
    logprobs: None


class ChatCompletionChunk(BaseModel):
    id: str = Field(description="the same for every chunk of a completion")
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice] = Field(description="one; none in the usage chunk")
    usage: ChatUsage | None = Field(
        None, description="with stream_options.include_usage: null, but in the usage chunk"
    )


class FinalChunk(ChatCompletionChunk, Grounding):
    answer: str = Field(
        description="the checked answer: the streamed text, unless the grounding check "
        "replaced it (a passage quoted, or an abstention)"
    )


class OpenAIErrorBody(BaseModel):
    message: str
    type: str = Field(
        description="invalid_request_error (4xx), rate_limit_error (429), server_error "
        "(5xx), service_unavailable_error (503)"
    )
    param: str | None = Field(description="the parameter at fault, when one is")
    code: str | None = Field(
        description="invalid_api_key (401), rate_limit_exceeded (429), else the native "
        "API's error code"
    )


class OpenAIErrorOut(BaseModel):
    error: OpenAIErrorBody


class ModelOut(BaseModel):
    id: str
    object: Literal["model"]
    created: int = Field(description="when this server started serving it (Unix seconds)")
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelOut]


def inlined(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON Schema with its references resolved in place, for a stream event's
    contentSchema (FastAPI registers no component for a model only an event names)."""
    schema = model.model_json_schema(mode="serialization")
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    return resolve(schema)


def _data(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": payload,
            }
        },
    }


# One server-sent event of a streamed completion: `data:` only, as OpenAI sends them.
CHUNK_EVENT: dict[str, Any] = {
    "anyOf": [
        {
            "type": "object",
            "required": ["data"],
            "properties": {"data": {"const": "[DONE]"}},
        },
        _data(inlined(FinalChunk)),
        _data(inlined(ChatCompletionChunk)),
        _data(inlined(OpenAIErrorOut)),
    ]
}
