"""The REST API with fake models: every limit, auth rule and error shape, and the flows."""

import json
import threading
import time

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.service import Lectern
from lectern.settings import ApiSettings, IngestSettings, Settings
from tests.conftest import SAMPLES
from tests.fakes import EchoGenerator, HashEmbedder

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_client(
    tmp_path, reply="The international tuition fee is EUR 16,800 per year [1] [7].", **api
):
    settings = Settings(
        data_dir=tmp_path / "data",
        ingest=IngestSettings(max_file_mb=0.05),
        api=ApiSettings(admin_token=TOKEN, **api),
    )
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=EchoGenerator(reply))
    svc.ingest([SAMPLES / "pdf", SAMPLES / "markdown"])
    return TestClient(create_app(settings, svc))


def wait_ready(client):
    for _ in range(200):
        if client.get("/health").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("never ready")


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        wait_ready(c)
        yield c


def assert_error(resp, status, code, fragment=""):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert fragment in body["error"]["message"]


def test_ask_returns_answer_citations_and_timings(client):
    r = client.post("/api/v1/ask", json={"question": "International fee for MSc Data Science?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert not body["abstained"]
    assert "[7]" not in body["answer"], "a number that was not in the prompt is dropped"
    assert [c["number"] for c in body["citations"]] == [1]
    cite = body["citations"][0]
    assert cite["title"].startswith("Tuition Fees")
    assert cite["url"].startswith(f"/api/v1/documents/{cite['document_id']}/file")
    assert set(body["timings"]) == {"retrieve_ms", "rerank_ms", "generate_ms", "total_ms"}
    assert body["timings"]["total_ms"] >= body["timings"]["generate_ms"]


def test_stream_sends_tokens_then_citations_then_done(client):
    with client.stream(
        "POST", "/api/v1/ask/stream", json={"question": "International fee for MSc Data Science?"}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = "".join(r.iter_text())
    events = [
        (
            b.split("\n")[0].removeprefix("event: "),
            json.loads(b.split("\n")[1].removeprefix("data: ")),
        )
        for b in raw.strip().split("\n\n")
    ]
    kinds = [k for k, _ in events]
    assert kinds[-2:] == ["citations", "done"] and set(kinds[:-2]) == {"token"}
    assert len(kinds) > 4
    streamed = "".join(d["text"] for k, d in events if k == "token")
    assert "EUR 16,800" in streamed
    assert events[-2][1]["citations"][0]["number"] == 1
    assert "total_ms" in events[-1][1]["timings"]


def test_ungrounded_answer_is_replaced_by_a_quoted_sentence(tmp_path):
    with make_client(tmp_path, reply="The fee is EUR 99,999 per year [1].") as c:
        wait_ready(c)
        body = c.post("/api/v1/ask", json={"question": "MSc Data Science international fee"}).json()
    assert "99,999" not in body["answer"]
    assert body["citations"] and body["answer"].endswith(f"[{body['citations'][0]['number']}]")


def test_model_saying_it_does_not_know_abstains(tmp_path):
    with make_client(tmp_path, reply="I don't know.") as c:
        wait_ready(c)
        body = c.post("/api/v1/ask", json={"question": "Who won the 1998 World Cup?"}).json()
    assert body["abstained"] and body["citations"] == []


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"question": "x" * 501}, "over the limit of 500"),
        ({"question": "   "}, "must not be blank"),
        ({"question": ""}, "question"),
        ({"question": "fees?", "top_k": 0}, "top_k"),
        ({"question": "fees?", "top_k": 21}, "21 is over the limit of 20"),
        ({"top_k": 3}, "question"),
    ],
)
def test_ask_limits(client, payload, fragment):
    assert_error(client.post("/api/v1/ask", json=payload), 422, "invalid_request", fragment)
    assert_error(client.post("/api/v1/ask/stream", json=payload), 422, "invalid_request", fragment)


def test_rate_limit_per_client(tmp_path):
    with make_client(tmp_path, rate_limit_per_minute=3) as c:
        wait_ready(c)
        for _ in range(3):
            assert c.post("/api/v1/ask", json={"question": "fee?"}).status_code == 200
        r = c.post("/api/v1/ask", json={"question": "fee?"})
    assert_error(r, 429, "rate_limited", "too many requests")
    assert 1 <= int(r.headers["Retry-After"]) <= 60


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/documents"),
        ("post", "/api/v1/documents"),
        ("delete", "/api/v1/documents/abc"),
    ],
)
def test_admin_routes_need_the_token(client, method, path):
    assert_error(getattr(client, method)(path), 401, "unauthorized", "Bearer")
    wrong = getattr(client, method)(path, headers={"Authorization": "Bearer nope"})
    assert_error(wrong, 401, "unauthorized", "wrong")
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


def test_upload_limits(client, tmp_path):
    big = ("files", ("big.txt", b"word " * 20_000, "text/plain"))
    assert_error(
        client.post("/api/v1/documents", headers=AUTH, files=[big]),
        413,
        "file_too_large",
        "upload limit",
    )
    png = ("files", ("logo.png", b"\x89PNG....", "image/png"))
    ok = ("files", ("ok.md", b"# Ok\n\nFine.\n", "text/markdown"))
    assert_error(
        client.post("/api/v1/documents", headers=AUTH, files=[ok, png]),
        415,
        "unsupported_file_type",
        "'.png'",
    )
    listed = client.get("/api/v1/documents", headers=AUTH).json()["documents"]
    assert all(d["title"] != "Ok" for d in listed), "a rejected request ingests nothing"
    many = [("files", (f"f{i}.md", b"# T\n\ntext\n", "text/markdown")) for i in range(21)]
    assert_error(
        client.post("/api/v1/documents", headers=AUTH, files=many),
        422,
        "invalid_request",
        "the limit is 20",
    )
    corrupt = ("files", ("broken.pdf", b"%PDF-1.4 nonsense", "application/pdf"))
    assert_error(
        client.post("/api/v1/documents", headers=AUTH, files=[corrupt]),
        422,
        "invalid_request",
        "broken.pdf",
    )


def test_upload_ask_delete(client):
    doc = b"# Parking\n\nThe Fenmoor staff car park permit costs EUR 240 per semester.\n"
    r = client.post(
        "/api/v1/documents", headers=AUTH, files=[("files", ("parking.md", doc, "text/markdown"))]
    )
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert result["status"] == "added" and result["chunks"] >= 1
    doc_id = result["document_id"]
    listed = {d["id"]: d for d in client.get("/api/v1/documents", headers=AUTH).json()["documents"]}
    assert listed[doc_id]["chunk_count"] == result["chunks"]

    file = client.get(f"/api/v1/documents/{doc_id}/file")
    assert file.status_code == 200 and file.content == doc
    assert file.headers["content-security-policy"] == "sandbox"

    def cited(question):
        body = client.post("/api/v1/ask", json={"question": question, "top_k": 5}).json()
        return {c["document_id"] for c in body["citations"]}

    client.app.state.service._generator.reply = "A permit costs EUR 240 per semester [1]."
    assert doc_id in cited("How much is the car park permit per semester?")
    gone = client.delete(f"/api/v1/documents/{doc_id}", headers=AUTH)
    assert gone.status_code == 200 and gone.json()["deleted"]["id"] == doc_id
    assert doc_id not in cited("How much is the car park permit per semester?")
    assert_error(client.get(f"/api/v1/documents/{doc_id}/file"), 404, "document_not_found")
    assert_error(
        client.delete(f"/api/v1/documents/{doc_id}", headers=AUTH), 404, "document_not_found"
    )
    assert not (client.app.state.settings.upload_dir / "parking.md").exists()


def test_health_is_503_until_the_models_are_warm(tmp_path):
    gate = threading.Event()

    class SlowGenerator(EchoGenerator):
        def warm_up(self):
            gate.wait(10)

    settings = Settings(data_dir=tmp_path / "d", api=ApiSettings(admin_token=TOKEN))
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=SlowGenerator("x"))
    with TestClient(create_app(settings, svc)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "starting"
        assert_error(c.post("/api/v1/ask", json={"question": "fee?"}), 503, "not_ready")
        gate.set()
        wait_ready(c)
        assert c.get("/health").json() == {"status": "ready", "documents": 0, "chunks": 0}


def test_openapi_documents_every_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) >= {
        "/api/v1/ask",
        "/api/v1/ask/stream",
        "/api/v1/documents",
        "/api/v1/documents/{document_id}",
        "/api/v1/documents/{document_id}/file",
        "/health",
    }
    assert "422" in paths["/api/v1/ask"]["post"]["responses"]
    assert "401" in paths["/api/v1/documents"]["get"]["responses"]


def test_unknown_route_is_a_json_404(client):
    assert_error(client.get("/api/v1/nothing"), 404, "not_found")
