"""Feedback on answers, the admin Questions view and its export: what is stored, what
is refused, and that nothing names who asked."""

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient

from tests.api.fake_app import AUTH, fake_app, wait_ready

ANSWERED = "What do international students pay in tuition?"
MISSED = "Is there a dress code for graduation?"


def ask(sample_client, question: str) -> dict:
    return sample_client.post("/api/v1/ask", json={"question": question}).json()


def test_feedback_is_stored_with_the_answer_and_replaced_when_sent_again(sample_client):
    answer = ask(sample_client, ANSWERED)
    sent = sample_client.post("/api/v1/feedback", json={"answer_id": answer["answer_id"],
                                                 "rating": "up"})
    assert sent.status_code == 201 and sent.json()["rating"] == "up"
    again = sample_client.post("/api/v1/feedback", json={
        "answer_id": answer["answer_id"], "rating": "down", "comment": "  Wrong year.  "})
    assert again.status_code == 201
    entry = sample_client.app.state.service.answer_log.get(answer["answer_id"])
    assert (entry.rating, entry.comment) == ("down", "Wrong year.")
    assert entry.question == ANSWERED and entry.answer == answer["answer"]
    assert entry.cited_ids and set(entry.cited_ids) <= set(entry.passage_ids)
    assert entry.mode.startswith("hybrid") and entry.model
    assert entry.timings["total_ms"] == answer["timings"]["total_ms"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"answer_id": "0" * 32, "rating": "up"}, 404, "0000"),
        ({"answer_id": "ID", "rating": "down", "comment": "x" * 1001}, 422,
         "1001 characters, over the limit of 1000"),
        ({"answer_id": "ID", "rating": "meh"}, 422, "rating"),
        ({"answer_id": "", "rating": "up"}, 422, "answer_id"),
    ],
)
def test_bad_feedback_is_refused_and_nothing_is_stored(sample_client, body, status, message):
    answer = ask(sample_client, ANSWERED)
    body = {k: (answer["answer_id"] if v == "ID" else v) for k, v in body.items()}
    response = sample_client.post("/api/v1/feedback", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]
    assert sample_client.app.state.service.answer_log.get(answer["answer_id"]).rating is None


def test_the_questions_view_groups_what_the_documents_missed(sample_client):
    ask(sample_client, ANSWERED)
    missed = [ask(sample_client, MISSED), ask(sample_client, MISSED + " ")]
    down = ask(sample_client, ANSWERED)
    sample_client.post("/api/v1/feedback", json={"answer_id": down["answer_id"], "rating": "down",
                                          "comment": "It is the home fee."})
    assert all(m["abstained"] for m in missed)
    assert sample_client.get("/api/v1/admin/questions").status_code == 401
    view = sample_client.get("/api/v1/admin/questions", headers=AUTH).json()
    assert (view["answers"], view["abstained"], view["rated_down"]) == (4, 2, 1)
    assert view["recent"][0]["id"] == down["answer_id"]  # newest first
    assert view["recent"][0]["comment"] == "It is the home fee."
    groups = {g["example"]: g for g in view["missed"]}
    assert groups[MISSED]["count"] == 2 and groups[MISSED]["abstained"] == 2
    assert groups[ANSWERED]["rated_down"] == 1
    assert view["missed"][0]["example"] == MISSED  # the most frequent first


def test_the_export_writes_every_answer_as_csv_or_jsonl(sample_client):
    ids = {ask(sample_client, ANSWERED)["answer_id"], ask(sample_client, MISSED)["answer_id"]}
    as_csv = sample_client.get("/api/v1/admin/questions/export?format=csv", headers=AUTH)
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {r["id"] for r in rows} == ids
    lines = sample_client.get("/api/v1/admin/questions/export?format=jsonl&missed_only=true",
                       headers=AUTH).text.splitlines()
    assert [json.loads(line)["question"] for line in lines] == [MISSED]


def test_nothing_stored_names_the_client(sample_client, tmp_path):
    answer = ask(sample_client, ANSWERED)
    sample_client.post("/api/v1/feedback", json={"answer_id": answer["answer_id"], "rating": "up"},
                headers={"Cookie": "session=secret-cookie", "X-Forwarded-For": "203.0.113.7"})
    log = sample_client.app.state.service.answer_log
    data = b"".join(p.read_bytes() for p in log.path.parent.glob(log.path.name + "*"))
    for needle in (b"testclient", b"secret-cookie", b"203.0.113.7", b"conversation"):
        assert needle not in data


def test_the_retention_deletes_old_answers(sample_client, monkeypatch):
    from datetime import UTC, datetime, timedelta

    import api.answering as answering

    ask(sample_client, ANSWERED)
    svc = sample_client.app.state.service
    later = datetime.now(UTC) + timedelta(days=svc.settings.feedback.retention_days + 1)
    monkeypatch.setattr(answering, "datetime", type("Later", (), {"now": staticmethod(
        lambda tz=None: later)}))
    assert svc.answerer.purge() == 1 and svc.answer_log.count() == 0


def test_answers_past_the_retention_are_gone_when_the_server_starts(tmp_path):
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    app = fake_app(tmp_path, samples=True)
    svc = app.state.service
    svc.warm_up_generator()
    kept = svc.ask(ANSWERED).answer_id
    old = replace(svc.answer_log.get(kept), id="old-answer",
                  created=datetime.now(UTC) - timedelta(days=91))
    svc.answer_log.record(old)
    with TestClient(app) as client:
        wait_ready(client.get)
        assert svc.answer_log.get("old-answer") is None
        assert svc.answer_log.get(kept) is not None
