"""The REST API with the real small models (SmolLM2-135M, MiniLM) on the sample corpus."""

import json
import time

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from lectern.settings import ApiSettings, ModelSettings, Settings
from tests.conftest import MODEL_CACHE, SAMPLES

pytestmark = pytest.mark.integration
TOKEN = "integration-admin-token-000"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from api.service import Lectern

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("api"),
        models=ModelSettings(cache_dir=MODEL_CACHE),
        api=ApiSettings(admin_token=TOKEN, rate_limit_per_minute=0),
    )
    svc = Lectern(settings)
    assert not svc.ingest([SAMPLES]).failed
    with TestClient(create_app(settings, svc)) as c:
        for _ in range(600):
            if c.get("/health").status_code == 200:
                break
            time.sleep(0.2)
        assert c.get("/health").json()["status"] == "ready"
        yield c


@pytest.mark.parametrize(
    ("question", "source", "fact"),
    [
        (
            "What is the home tuition fee for the BA History?",
            "tuition-fees-and-deadlines-2026-27.pdf",
            "2,390",
        ),
        ("What are the prerequisites for CSC 340?", "bsc-computer-science.html", "CSC 210"),
    ],
)
def test_sample_question_answered_with_a_correct_citation(client, question, source, fact):
    body = client.post("/api/v1/ask", json={"question": question}).json()
    assert not body["abstained"], body
    assert fact in body["answer"]
    titles = {c["document_id"]: c for c in body["citations"]}
    docs = {d["id"]: d for d in client.get("/api/v1/documents", headers=AUTH).json()["documents"]}
    assert any(docs[i]["source"].endswith(source) for i in titles), body


@pytest.mark.parametrize(
    "question", ["What is the capital of France?", "How do I bake sourdough bread?"]
)
def test_off_topic_questions_abstain(client, question):
    body = client.post("/api/v1/ask", json={"question": question}).json()
    assert body["abstained"] and body["citations"] == []
    assert "don't know" in body["answer"]


def test_streaming_yields_tokens_then_citations(client):
    with client.stream(
        "POST",
        "/api/v1/ask/stream",
        json={"question": "What is the home tuition fee for the BA History?"},
    ) as r:
        raw = "".join(r.iter_text())
    kinds = [b.split("\n")[0].removeprefix("event: ") for b in raw.strip().split("\n\n")]
    assert kinds.count("token") >= 3
    assert kinds[-2:] == ["citations", "done"]
    final = json.loads(raw.strip().split("\n\n")[-2].split("\n")[1].removeprefix("data: "))
    assert final["citations"] and "2,390" in final["answer"]


def test_upload_then_ask_then_delete(client, tmp_path):
    doc = (
        b"# Fenmoor Rowing Club\n\nThe Fenmoor Rowing Club trains on the river Wend every "
        b"Saturday at 07:30. Membership costs EUR 45 per semester.\n"
    )
    r = client.post(
        "/api/v1/documents",
        headers=AUTH,
        files=[("files", ("rowing-club.md", doc, "text/markdown"))],
    )
    doc_id = r.json()["results"][0]["document_id"]
    q = {"question": "When does the Fenmoor Rowing Club train?"}
    body = client.post("/api/v1/ask", json=q).json()
    assert doc_id in {c["document_id"] for c in body["citations"]}, body
    assert client.delete(f"/api/v1/documents/{doc_id}", headers=AUTH).status_code == 200
    after = client.post("/api/v1/ask", json=q).json()
    assert doc_id not in {c["document_id"] for c in after["citations"]}
