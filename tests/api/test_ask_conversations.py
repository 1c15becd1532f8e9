"""Follow-up questions over the API: history or a kept conversation, the question
searched for, and bad input refused with nothing stored."""

import json

import pytest

from api.service import Lectern
from lectern.settings import ConversationSettings, Settings
from lectern.types import Turn
from tests.api.fake_app import REPLY
from tests.conftest import SAMPLES
from tests.fakes import EchoGenerator, HashEmbedder, OverlapReranker

FIRST = "What do international students pay in tuition?"
FOLLOW_UP = "And when is the deadline for it?"


def logged(sample_client) -> int:
    return sample_client.app.state.service.answer_log.count()


def events(text: str) -> list[tuple[str, dict]]:
    out, name = [], None
    for line in text.splitlines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            out.append((name, json.loads(line.removeprefix("data: "))))
    return out


def test_a_first_question_starts_a_conversation_and_a_follow_up_continues_it(sample_client):
    first = sample_client.post("/api/v1/ask", json={"question": FIRST}).json()
    assert first["standalone_question"] == FIRST
    assert first["answer_id"] and first["conversation_id"]
    generator = sample_client.app.state.service._generator
    second = sample_client.post(
        "/api/v1/ask", json={"question": FOLLOW_UP, "conversation_id": first["conversation_id"]}
    ).json()
    assert second["conversation_id"] == first["conversation_id"]
    assert second["answer_id"] != first["answer_id"]
    # Searched with the earlier turn beside it; the generator saw that turn as asked.
    assert second["standalone_question"].startswith(FOLLOW_UP)
    assert FIRST in second["standalone_question"]
    prompt = generator.seen[-1]
    assert prompt[1] == {"role": "user", "content": FIRST}
    assert prompt[2]["role"] == "assistant" and "[" not in prompt[2]["content"]
    assert prompt[-1]["content"].endswith(f"Question: {FOLLOW_UP}")


def test_history_sent_by_the_client_is_used_the_same_way(sample_client):
    history = [{"question": FIRST, "answer": "EUR 16,800 a year [1]."}]
    body = sample_client.post(
        "/api/v1/ask", json={"question": FOLLOW_UP, "history": history}
    ).json()
    assert FIRST in body["standalone_question"] and "16,800" in body["standalone_question"]
    # The client keeps its conversation: the server keeps none for it.
    assert body["conversation_id"] is None
    assert len(sample_client.app.state.service.conversations) == 0


def test_the_stream_carries_the_ids_and_continues_the_conversation(sample_client):
    first = sample_client.post("/api/v1/ask/stream", json={"question": FIRST})
    final = dict(events(first.text))["citations"]
    assert final["answer_id"] and final["standalone_question"] == FIRST
    second = sample_client.post(
        "/api/v1/ask/stream",
        json={"question": FOLLOW_UP, "conversation_id": final["conversation_id"]},
    )
    final2 = dict(events(second.text))["citations"]
    assert FIRST in final2["standalone_question"]
    assert final2["conversation_id"] == final["conversation_id"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"question": FOLLOW_UP, "conversation_id": "never-started"}, 404, "never-started"),
        ({"question": FOLLOW_UP, "history": [{"question": "q?", "answer": "a."}] * 9}, 422,
         "9 turns, over the limit of 8"),
        ({"question": FOLLOW_UP, "history": [{"question": "q?", "answer": "a" * 4000}]}, 422,
         "history[0]: 4002 characters"),
        ({"question": FOLLOW_UP, "history": [{"question": " ", "answer": "a."}]}, 422,
         "must not be blank"),
        ({"question": FOLLOW_UP, "history": [{"question": "q?", "answer": "a."}],
          "conversation_id": "x"}, 422, "not both"),
        ({"question": FOLLOW_UP, "history": [{"question": "q?"}]}, 422, "answer"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/ask", "/api/v1/ask/stream"])
def test_bad_conversations_are_refused_with_nothing_stored(
    sample_client, path, body, status, message
):
    before = logged(sample_client)
    kept = len(sample_client.app.state.service.conversations)
    response = sample_client.post(path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert message in response.json()["error"]["message"]
    assert logged(sample_client) == before
    assert len(sample_client.app.state.service.conversations) == kept


def test_a_new_subject_is_searched_as_asked_unless_history_is_for_every_follow_up(tmp_path):
    new_subject = "When does the library open on Sundays?"
    turns = [Turn(FIRST, "EUR 16,800 a year [1].")]
    searched = {}
    for history_for in ("referring", "every"):
        settings = Settings(data_dir=tmp_path / history_for,
                            conversation=ConversationSettings(history_for=history_for))
        svc = Lectern(settings, HashEmbedder(64), EchoGenerator(REPLY), OverlapReranker())
        svc.ingest([SAMPLES / "markdown"])
        svc.warm_up_generator()
        searched[history_for] = svc.ask(new_subject, history=turns).standalone_question
        svc.close()
    assert searched["referring"] == new_subject
    assert searched["every"].startswith(new_subject) and FIRST in searched["every"]
