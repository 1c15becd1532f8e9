"""The OpenAI-compatible API: `POST /v1/chat/completions` and `GET /v1/models`, so that an
OpenAI client (its SDKs, chat front ends) can ask Lectern.

The last message is the question; the user and assistant messages before it are the
conversation's earlier turns, checked like /api/v1/ask's `history`. The answer is Lectern's
(retrieval, the generator, the grounding check), with its citations, `abstained`,
`answer_id` and `standalone_question` as extra fields — in the last chunk too when
streaming, so that they survive it. Errors come in OpenAI's shape (api.errors).
`api.openai_api_key`, when set, is the bearer token both routes require.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Request, Security
from fastapi.params import Depends
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api import errors
from api.conversations import checked_history
from api.deps import ServiceDep
from api.openai_schemas import (
    CHUNK_EVENT,
    ChatAnswer,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatMessage,
    ChatUsage,
    FinalChunk,
    ModelList,
    ModelOut,
    OpenAIErrorOut,
)
from api.routes.ask import checked, to_response
from api.schemas import RETRY_AFTER, AskRequest, AskResponse
from api.security import BearerAuth
from api.streaming import AnswerStream
from lectern.errors import InvalidRequestError, LecternError
from lectern.settings import ApiSettings, ConversationSettings
from lectern.types import AskResult, StreamEvent, TokenEvent, Turn, Usage

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["openai"])
STARTED = int(time.time())  # the models' `created`: when this server began serving them

# Declares the scheme in OpenAPI only; require_api_key checks, with OpenAI's 401.
_bearer = HTTPBearer(
    auto_error=False, scheme_name="openaiApiKey", description="api.openai_api_key"
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "model": OpenAIErrorOut,
        "description": "refused, in OpenAI's error shape: 400 for a body that cannot be read "
        "or is not valid (the last message not the user's, a question or earlier turns over "
        "the limits, n over 1), 401 for a missing or wrong API key (when one is set), 413 "
        "for a body over api.max_body_kb",
    },
    429: {
        "model": OpenAIErrorOut,
        "description": "over the rate limit",
        "headers": {"Retry-After": RETRY_AFTER},
    },
    503: {"model": OpenAIErrorOut, "description": "the models are still loading, or at capacity"},
}


_QUESTION = [{"role": "user", "content": "What are the prerequisites for CSC 340?"}]
_EXAMPLES: dict[str, Any] = {
    "answer": {"summary": "an answer", "value": {"model": "lectern", "messages": _QUESTION}},
    "stream": {
        "summary": "streamed, with the usage chunk",
        "value": {
            "model": "lectern", "messages": _QUESTION, "stream": True,
            "stream_options": {"include_usage": True},
        },
    },
    "follow-up": {
        "summary": "a follow-up: the earlier messages are the conversation",
        "value": {
            "model": "lectern",
            "messages": [
                *_QUESTION,
                {"role": "assistant", "content": "CSC 210 and MAT 220 [1]."},
                {"role": "user", "content": "And who teaches it?"},
            ],
        },
    },
}


def require_api_key(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> None:
    key = request.app.state.settings.api.openai_api_key
    if key is not None:  # hmac.compare_digest, in BearerAuth
        BearerAuth(key, "API key", "the /v1 routes")(request)


def auth(api: ApiSettings) -> list[Depends]:
    """The router's dependencies: the key check, declared (in OpenAPI too) only when a key
    is set, so that an open server's schema does not promise a 401."""
    return [Security(require_api_key)] if api.openai_api_key else []


# -- the question and its earlier turns ------------------------------------------------


def _history(messages: list[ChatMessage], settings: ConversationSettings) -> list[Turn]:
    """The user/assistant pairs before the question, checked as /api/v1/ask's history; a
    refusal names the message at fault."""
    turns: list[Turn] = []
    starts: list[int] = []  # each turn's user message
    for i, message in enumerate(messages):
        if message.role == "user":
            turns.append(Turn(message.text(), ""))
            starts.append(i)
        elif message.role == "assistant" and turns:  # a greeting before any question: none
            last = turns[-1]
            answer = "\n".join(a for a in (last.answer, message.text()) if a)
            turns[-1] = Turn(last.question, answer)
    # A chat client sends the whole conversation every time: the newest turns are what
    # a follow-up leans on, so the older ones are dropped rather than refused.
    keep = len(turns) - min(len(turns), settings.max_turns)
    turns, starts = turns[keep:], starts[keep:]
    return checked_history(turns, settings, lambda k: f"messages[{starts[k]}]",
                           question_field="content")


def _question(body: ChatCompletionRequest, request: Request) -> tuple[str, list[Turn]]:
    """The question (rate-limited and bounded by /api/v1/ask's own checks) and the turns."""
    if body.n is not None and body.n > 1:
        raise InvalidRequestError(f"n: {body.n} choices asked; only 1 is supported")
    *earlier, last = body.messages
    where = f"messages[{len(earlier)}]"
    if last.role != "user":
        raise InvalidRequestError(
            f"{where}: the last message must be the user's question, not {last.role!r}"
        )
    try:  # model_construct: `checked` says what is wrong with a blank question
        asked = checked(AskRequest.model_construct(question=last.text()), request)
    except InvalidRequestError as exc:
        raise InvalidRequestError(re.sub(r"^question:", f"{where}.content:", str(exc))) from None
    return asked.question, _history(earlier, request.app.state.settings.conversation)


# -- answers ----------------------------------------------------------------------------


def _usage(usage: Usage | None) -> ChatUsage | None:
    if usage is None:
        return None
    total = usage.prompt_tokens + usage.completion_tokens
    return ChatUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=total,
    )


def _grounding(native: AskResponse) -> dict[str, Any]:
    return {
        "citations": native.citations,
        "abstained": native.abstained,
        "answer_id": native.answer_id,
        "standalone_question": native.standalone_question,
    }


def finish_reason(result: AskResult, max_new_tokens: int) -> Literal["stop", "length"]:
    """"length" when the generator wrote as many tokens as it may (the reply was cut),
    else "stop"."""
    usage = result.usage
    return "length" if usage is not None and usage.completion_tokens >= max_new_tokens \
        else "stop"


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class _Chunks:
    """The events of one streamed completion: one id, one `created`, one model."""

    def __init__(self, model: str, include_usage: bool, max_new_tokens: int) -> None:
        self.id = _completion_id()
        self.max_new_tokens = max_new_tokens
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage

    def _event(self, chunk: ChatCompletionChunk) -> str:
        return f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"

    def _fields(self, choices: list[ChatChunkChoice]) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": choices,
        }
        if self.include_usage:  # OpenAI's: null on every chunk but the usage chunk
            fields["usage"] = None
        return fields

    def delta(self, delta: ChatDelta, finish_reason: str | None = None) -> str:
        choice = ChatChunkChoice(index=0, delta=delta, finish_reason=finish_reason, logprobs=None)
        return self._event(ChatCompletionChunk(**self._fields([choice])))

    def final(self, native: AskResponse, finish: Literal["stop", "length"]) -> str:
        choice = ChatChunkChoice(index=0, delta=ChatDelta(), finish_reason=finish, logprobs=None)
        fields = self._fields([choice])
        return self._event(FinalChunk(**fields, **_grounding(native), answer=native.answer))

    def usage(self, usage: Usage | None) -> str:
        return self._event(ChatCompletionChunk(**{**self._fields([]), "usage": _usage(usage)}))

    def events(self, stream: Iterator[StreamEvent], first: StreamEvent) -> Iterator[str]:
        """The chunks: role first, the tokens, the final one with Lectern's fields, the
        usage one if asked for, then [DONE]; an error once headers are out is one event."""
        try:
            yield self.delta(ChatDelta(role="assistant", content=""))
            streamed = False
            for event in itertools.chain([first], stream):
                if isinstance(event, TokenEvent):
                    streamed = True
                    yield self.delta(ChatDelta(content=event.text))
                    continue
                native = to_response(event.result)
                if not streamed:  # answered without the generator (nothing found): the
                    # abstention is the content, as a client joining deltas expects
                    yield self.delta(ChatDelta(content=native.answer))
                yield self.final(native, finish_reason(event.result, self.max_new_tokens))
                if self.include_usage:
                    yield self.usage(event.result.usage)
        except LecternError as exc:  # headers are sent: report in-band, as OpenAI does
            error = errors.openai_error(errors.status_of(exc), errors.code_of(exc), str(exc))
            yield f"data: {json.dumps(error, ensure_ascii=False)}\n\n"
        except Exception:  # a bug: the client still gets an error, not a cut-off stream
            log.exception("a streamed completion failed")
            error = errors.openai_error(500, "internal_error", "the answer failed; see the log")
            yield f"data: {json.dumps(error)}\n\n"
        finally:
            stream.close()  # its place among the answers in flight is given back
        yield "data: [DONE]\n\n"


def _completion(result: AskResult, model: str, max_new_tokens: int) -> ChatCompletion:
    native = to_response(result)
    return ChatCompletion(
        id=_completion_id(),
        object="chat.completion",
        created=int(time.time()),
        model=model,
        choices=[
            ChatChoice(
                index=0,
                message=ChatAnswer(role="assistant", content=native.answer),
                finish_reason=finish_reason(result, max_new_tokens),
                logprobs=None,
            )
        ],
        usage=_usage(result.usage),
        **_grounding(native),
    )


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": CHUNK_EVENT}},
            "description": "JSON, or with `stream: true` server-sent `data:` events: "
            "chat.completion.chunk objects with one id (the first's delta is the role, "
            "then the content as it is generated; the last has finish_reason `stop` "
            "(`length` when the reply was cut at generation.max_new_tokens) and "
            "Lectern's citations, abstained, answer_id, standalone_question and `answer`, "
            "the checked text, which replaces the streamed text when the grounding check "
            "quoted a passage or abstained), a usage chunk with "
            "stream_options.include_usage, then `[DONE]`; an error after the first event "
            "is one event with an OpenAI error object",
        },
        **_ERRORS,
    },
)
def chat_completions(
    body: Annotated[ChatCompletionRequest, Body(openapi_examples=_EXAMPLES)],
    request: Request,
    svc: ServiceDep,
) -> ChatCompletion | StreamingResponse:
    """Answer the last user message from the documents, with citations, as OpenAI would.

    Streaming, the content deltas are the generator's text as it comes; the grounding
    check runs once it is whole and may replace it (a passage quoted instead of a claim
    no passage holds, or an abstention), so the last chunk carries `answer`, the text to
    show, beside the citations. Usage is counted with the generator's tokenizer: the
    prompt it read (instructions, passages, turns, question) and the reply it wrote.
    temperature, top_p, max_tokens, stop and user are accepted and ignored; n must be 1.
    """
    question, history = _question(body, request)
    svc.require_ready()
    model = request.app.state.settings.api.openai_model
    if not body.stream:
        return _completion(svc.ask(question, history=history), model,
                           svc.settings.generation.max_new_tokens)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    stream = svc.ask_stream(question, history=history)
    # The first event (a place among the answers in flight, retrieval, the first token)
    # comes before the headers, so a refusal or failure there is a real HTTP error.
    first = next(stream)
    chunks = _Chunks(model, include_usage, svc.settings.generation.max_new_tokens)
    return AnswerStream(chunks.events(stream, first))


@router.get("/models", response_model=ModelList, responses={"4XX": _ERRORS["4XX"]})
def models(request: Request) -> ModelList:
    """The one model: Lectern answering from its documents (api.openai_model)."""
    model = request.app.state.settings.api.openai_model
    return ModelList(
        object="list",
        data=[ModelOut(id=model, object="model", created=STARTED, owned_by="lectern")],
    )
