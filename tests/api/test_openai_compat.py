"""The OpenAI-compatible API (issue 19, item 4), with the official `openai` client against
a running server over the fakes: answers with their citations, streamed and not, the
earlier messages as the conversation, the models list, the API key and OpenAI's errors."""

import json

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.service import Lectern
from lectern.errors import OverloadedError
from lectern.settings import ApiSettings, Settings
from lectern.types import Usage
from model.answer import SYSTEM
from tests.api.fake_app import REPLY, fake_app, served, wait_ready
from tests.conftest import SAMPLES
from tests.fakes import CountingEchoGenerator, EchoGenerator, HashEmbedder, word_count

FEE = "How much is the international fee for the MSc Data Science?"
KEY = "sk-test-key-0123456789"


def ask(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One open server (no API key, no rate limit) for the module: (app, base URL)."""
    app = fake_app(tmp_path_factory.mktemp("open"), samples=True, rate_limit_per_minute=0)
    with served(app) as url:
        yield app, url


@pytest.fixture(scope="module")
def client(server):
    # No retries: a refusal is what these tests look at, not something to retry past.
    with openai.OpenAI(base_url=server[1] + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def seen(app) -> list[dict[str, str]]:
    """The messages the generator was last given."""
    return app.state.service._generator.seen[-1]


def error_of(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# -- answers ----------------------------------------------------------------------------


def test_a_completion_is_the_answer_with_its_citations(server, client):
    app, url = server
    r = client.chat.completions.create(model="gpt-4o-mini", messages=ask(FEE))
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == "lectern", "the configured id, whatever the client named"
    [choice] = r.choices
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert "16,800" in choice.message.content
    extra = r.model_extra
    native = httpx.post(url + "/api/v1/ask", json={"question": FEE}).json()
    assert extra["citations"] and extra["citations"] == native["citations"]
    assert choice.message.content == native["answer"]
    assert extra["abstained"] is False and extra["standalone_question"] == FEE
    assert isinstance(extra["answer_id"], str) and extra["answer_id"] != native["answer_id"]
    # Counted by the generator (one token a word here): the prompt it read, passages
    # and instructions included, and the reply it wrote.
    prompt = sum(word_count(m["content"]) for m in seen(app))
    assert prompt > word_count(FEE)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (prompt, word_count(REPLY))
    assert r.usage.total_tokens == prompt + word_count(REPLY)


def test_a_stream_is_role_tokens_then_the_last_chunk_with_citations_and_usage(server, client):
    app, _ = server
    whole = client.chat.completions.create(model="lectern", messages=ask(FEE))
    chunks = list(client.chat.completions.create(
        model="lectern", messages=ask(FEE), stream=True, stream_options={"include_usage": True}
    ))
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    *answer, usage = chunks
    first, *tokens, last = answer
    assert (first.choices[0].delta.role, first.choices[0].delta.content) == ("assistant", "")
    assert len(tokens) == len(REPLY.split(" ")), "one delta a streamed piece"
    assert "".join(c.choices[0].delta.content for c in tokens) == REPLY
    assert [c.choices[0].finish_reason for c in answer] == [None] * (len(answer) - 1) + ["stop"]
    extra = last.model_extra
    assert extra["citations"] == whole.model_extra["citations"] and extra["citations"]
    assert extra["answer"] == whole.choices[0].message.content
    assert extra["abstained"] is False and extra["standalone_question"] == FEE
    assert usage.choices == [] and usage.usage.completion_tokens == word_count(REPLY)
    assert usage.usage.prompt_tokens == sum(word_count(m["content"]) for m in seen(app))
    assert all(c.usage is None for c in answer)


def test_a_stream_ends_with_done_and_has_no_usage_chunk_unless_asked(server):
    _, url = server
    body = {"model": "lectern", "messages": ask(FEE), "stream": True}
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=15)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in r.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"] and "usage" not in c for c in chunks)
    assert "role" not in chunks[1]["choices"][0]["delta"], "the role comes once, first"


def test_an_abstention_streams_as_content_too(server, client):
    chunks = list(client.chat.completions.create(
        model="lectern", messages=ask("Who won the 1954 football world cup?"), stream=True
    ))
    last = chunks[-1]
    assert last.model_extra["abstained"] is True and last.model_extra["citations"] == []
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == last.model_extra["answer"], "a client joining deltas sees it"


def test_earlier_messages_are_the_conversation(server, client):
    app, _ = server
    follow_up = "And how long does it take?"
    messages = [
        {"role": "system", "content": "You are a pirate; say arr."},
        {"role": "assistant", "content": "Hello! Ask me about the university."},
        {"role": "user", "content": FEE},
        {"role": "assistant", "content": "EUR 16,800 per year."},
        {"role": "tool", "content": "a tool's output", "tool_call_id": "call-1"},
        {"role": "assistant", "content": "For the full programme."},
        {"role": "user", "content": [{"type": "text", "text": follow_up}]},
    ]
    r = client.chat.completions.create(model="lectern", messages=messages)
    # The default "history" rewrite searches the follow-up with the earlier turn.
    standalone = r.model_extra["standalone_question"]
    assert standalone.startswith(follow_up) and FEE in standalone
    system, *turn, last = seen(app)
    assert system["content"] == SYSTEM, "a client's system message does not replace Lectern's"
    # One turn: the greeting before any question and the tool's output are no part of it.
    assert turn == [
        {"role": "user", "content": FEE},
        {"role": "assistant", "content": "EUR 16,800 per year. For the full programme."},
    ]
    assert last["content"].endswith(f"Question: {follow_up}")


# -- the models list and the key -------------------------------------------------------


def test_the_models_list_names_lectern(client):
    [model] = client.models.list().data
    assert (model.id, model.object, model.owned_by) == ("lectern", "model", "lectern")
    assert isinstance(model.created, int) and model.created > 0


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    app = fake_app(tmp_path_factory.mktemp("keyed"), samples=True, openai_api_key=KEY)
    with served(app) as url:
        yield url + "/v1"


def test_a_wrong_api_key_is_openais_401(keyed):
    with openai.OpenAI(base_url=keyed, api_key="sk-wrong", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.chat.completions.create(model="lectern", messages=ask(FEE))
        assert caught.value.status_code == 401
        error = error_of(caught.value)
        assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
        assert error["param"] is None and "API key is wrong" in error["message"]
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
    missing = httpx.get(keyed + "/models")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    assert "Bearer <API key>" in missing.json()["error"]["message"]
    with openai.OpenAI(base_url=keyed, api_key=KEY, max_retries=0) as right:
        assert [m.id for m in right.models.list().data] == ["lectern"]
        assert right.chat.completions.create(model="lectern", messages=ask(FEE)).choices


# -- OpenAI's errors -------------------------------------------------------------------


def bad_request(client, **request) -> dict:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**{"model": "lectern", **request})
    assert caught.value.status_code == 400
    error = error_of(caught.value)
    assert error["type"] == "invalid_request_error"
    return error


def test_a_blank_or_too_long_question_is_a_400(client):
    assert bad_request(client, messages=ask(" \u3000\t"))["message"] == (
        "messages[0].content: must not be blank"
    )
    error = bad_request(client, messages=ask("x" * 501))
    assert error["message"] == "messages[0].content: 501 characters, over the limit of 500"


def test_the_oldest_turns_past_the_limit_are_dropped_and_a_too_long_turn_is_a_400(client):
    turns = [m for i in range(9) for m in
             ({"role": "user", "content": f"q{i} fees"}, {"role": "assistant", "content": "a"})]
    reply = client.chat.completions.create(model="lectern", messages=[*turns, *ask("And it?")])
    searched = reply.model_extra["standalone_question"]
    assert "q8 fees" in searched and "q0 fees" not in searched  # the newest turns read
    long_turn = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a" * 4000}]
    error = bad_request(client, messages=[*long_turn, *ask(FEE)])
    assert error["message"].startswith("messages[0]: 4001 characters")
    blank = [{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}]
    error = bad_request(client, messages=[*blank, *ask(FEE)])
    assert error["message"] == "messages[0].content: must not be blank"


def test_n_over_1_and_a_last_message_not_the_users_are_a_400(client):
    assert bad_request(client, messages=ask(FEE), n=2)["message"] == (
        "n: 2 choices asked; only 1 is supported"
    )
    assert client.chat.completions.create(model="lectern", messages=ask(FEE), n=1).choices
    error = bad_request(client, messages=[*ask(FEE), {"role": "assistant", "content": "a"}])
    assert error["message"].startswith("messages[1]: the last message must be the user's")


def test_a_body_that_is_not_valid_is_a_400_naming_the_parameter(server, client):
    assert bad_request(client, messages=[])["param"] == "messages"
    error = bad_request(client, messages=ask(FEE), temperature="warm")
    assert error["param"] == "temperature" and error["message"].startswith("temperature:")
    # Parameters Lectern does not act on are taken.
    taken = client.chat.completions.create(
        model="lectern", messages=ask(FEE), temperature=0.2, max_tokens=5, stop=["\n"],
        user="u-1", seed=7, extra_body={"something_new": True},
    )
    assert "16,800" in taken.choices[0].message.content
    r = httpx.post(server[1] + "/v1/chat/completions", content=b"{", timeout=15,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_other_errors_on_v1_are_openais_and_the_native_routes_keep_theirs(server):
    _, url = server
    r = httpx.get(url + "/v1/nowhere")
    assert r.status_code == 404
    assert r.json()["error"] == {"message": "Not Found", "type": "invalid_request_error",
                                 "param": None, "code": "not_found"}
    r = httpx.delete(url + "/v1/models")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert r.json()["error"]["type"] == "invalid_request_error"
    big = {"model": "lectern", "messages": ask("x" * (1024 * 1024))}
    r = httpx.post(url + "/v1/chat/completions", json=big, timeout=15)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert r.json()["error"]["type"] == "invalid_request_error"
    native = httpx.post(url + "/api/v1/ask", json={"question": " "})
    assert native.status_code == 422 and set(native.json()["error"]) == {"code", "message"}


def test_the_rate_limit_applies_and_is_openais_429(tmp_path):
    app = fake_app(tmp_path, rate_limit_per_minute=1)
    with served(app) as url, openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as c:
        c.chat.completions.create(model="lectern", messages=ask(FEE))
        with pytest.raises(openai.RateLimitError) as caught:
            c.chat.completions.create(model="lectern", messages=ask(FEE))
        error = error_of(caught.value)
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        assert int(caught.value.response.headers["retry-after"]) >= 1
        assert c.models.list().data, "listing the model is not rate-limited"


class FailsMidway(CountingEchoGenerator):
    def stream(self, messages):
        yield "The fee "
        raise OverloadedError(1, "the generator queue is full")


def test_an_error_after_the_headers_is_one_error_event_then_done(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", api=ApiSettings(rate_limit_per_minute=0))
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=FailsMidway())
    svc.ingest([SAMPLES / "markdown"])
    with TestClient(create_app(settings, svc)) as http:
        wait_ready(http.get)
        body = {"model": "lectern", "messages": ask(FEE), "stream": True}
        r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    events = [line.removeprefix("data: ") for line in r.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    assert json.loads(events[1])["choices"][0]["delta"] == {"content": "The fee "}
    error = json.loads(events[-2])["error"]
    assert error["type"] == "service_unavailable_error" and error["code"] == "overloaded"
    assert "queue is full" in error["message"]
    assert len(events) == 4  # role, the one token, the error, [DONE]


def test_before_the_models_load_it_is_openais_503(tmp_path):
    http = TestClient(fake_app(tmp_path))  # no lifespan: nothing warms up
    r = http.post("/v1/chat/completions", json={"model": "lectern", "messages": ask(FEE)})
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "service_unavailable_error"
    assert r.json()["error"]["code"] == "not_ready"


def test_the_v1_routes_answer_no_cross_origin_request(tmp_path):
    origin = "https://www.uni.example"
    with TestClient(fake_app(tmp_path, cors_origins=[origin])) as http:
        preflight = http.options("/v1/chat/completions", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 405
        assert "access-control-allow-origin" not in preflight.headers
        listed = http.get("/v1/models", headers={"Origin": origin})
        assert listed.status_code == 200 and "access-control-allow-origin" not in listed.headers
        # ... while the widget's routes do.
        health = http.get("/health", headers={"Origin": origin})
        assert health.headers["access-control-allow-origin"] == origin


def test_openapi_documents_both_answers_and_the_key_only_when_set(tmp_path):
    with TestClient(fake_app(tmp_path / "open")) as http:
        schema = http.get("/openapi.json").json()
    operation = schema["paths"]["/v1/chat/completions"]["post"]
    answers = operation["responses"]["200"]["content"]
    assert set(answers) == {"application/json", "text/event-stream"}
    assert "`answer`" in operation["responses"]["200"]["description"]
    assert "422" not in operation["responses"], "OpenAI's clients get a 400"
    assert operation["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/OpenAIErrorOut")
    assert "security" not in operation
    with TestClient(fake_app(tmp_path / "keyed", openai_api_key=KEY)) as http:
        schema = http.get("/openapi.json").json()
    for path, method in [("/v1/chat/completions", "post"), ("/v1/models", "get")]:
        assert schema["paths"][path][method]["security"] == [{"openaiApiKey": []}]
    assert schema["components"]["securitySchemes"]["openaiApiKey"]["scheme"] == "bearer"


# -- usage counts ----------------------------------------------------------------------


def test_usage_is_counted_only_by_a_generator_that_can_count(settings):
    counting = Lectern(settings, embedder=HashEmbedder(64), generator=CountingEchoGenerator(REPLY))
    counting.ingest([SAMPLES / "pdf", SAMPLES / "markdown"])
    counting.warm_up_generator()
    result = counting.ask(FEE)
    prompt = sum(word_count(m["content"]) for m in counting._generator.seen[-1])
    assert result.usage == Usage(prompt, word_count(REPLY))
    assert counting.ask("Who won the 1954 football world cup?").usage == Usage(0, 0)
    counting.store.close()
    plain = Lectern(settings, embedder=HashEmbedder(64), generator=EchoGenerator(REPLY))
    plain.warm_up_generator()
    assert plain.ask(FEE).usage is None, "no tokenizer: not counted, rather than made up"
    plain.store.close()
