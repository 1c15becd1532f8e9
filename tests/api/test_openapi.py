"""/openapi.json says what the server does (issue 15, case 9).

Admin routes declare their bearer scheme, every status the server answers is documented
with the body it has, the configured limits are in the schema, `top_k` is an integer as
JSON means one, and HEAD/OPTIONS/405 behave as HTTP says. tests/api/test_schemathesis.py
checks the whole schema against the server; these pin each finding.
"""

import pytest
from fastapi.testclient import TestClient

from ingest.formats import FORMATS
from tests.api.fake_app import AUTH, fake_app, wait_ready

ADMIN_OPERATIONS = [
    ("get", "/api/v1/documents"),
    ("post", "/api/v1/documents"),
    ("delete", "/api/v1/documents/{document_id}"),
]


@pytest.fixture
def client(tmp_path):
    with TestClient(fake_app(tmp_path, samples=True, max_top_k=7, max_question_chars=120)) as c:
        wait_ready(c.get)
        yield c


@pytest.fixture
def schema(client):
    return client.get("/openapi.json").json()


def test_admin_routes_declare_http_bearer(client, schema):
    schemes = schema["components"]["securitySchemes"]
    [(name, scheme)] = schemes.items()
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for method, path in ADMIN_OPERATIONS:
        assert schema["paths"][path][method]["security"] == [{name: []}], (method, path)
    for method, path in [("post", "/api/v1/ask"), ("get", "/health")]:
        assert "security" not in schema["paths"][path][method]
    # The scheme is declared only: the 401 is still the project's JSON one.
    r = client.get("/api/v1/documents")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


def test_a_broken_multipart_upload_is_a_documented_json_400(client, schema):
    r = client.post(
        "/api/v1/documents",
        content=b"not multipart\r\n--other--",
        headers={"Content-Type": "multipart/form-data; boundary=x", **AUTH},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request"
    documented = schema["paths"]["/api/v1/documents"]["post"]["responses"]["400"]
    assert documented["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")


def test_the_schema_states_the_configured_limits(client, schema):
    ask = schema["components"]["schemas"]["AskRequest"]["properties"]
    [integer] = [b for b in ask["top_k"]["anyOf"] if b.get("type") == "integer"]
    assert (integer["minimum"], integer["maximum"]) == (1, 7)
    assert ask["question"]["maxLength"] == 120
    # ... and they are the limits the server applies.
    def status(**body):
        return client.post("/api/v1/ask", json={"question": "fee?", **body}).status_code

    assert status(top_k=7) == 200
    assert status(top_k=8) == 422
    assert status(question="x" * 120) == 200
    assert status(question=" " * 60 + "x" * 61) == 422, "blanks count, as maxLength says"


@pytest.mark.parametrize("value", [True, False, "3", 2.5, [3]])
def test_top_k_must_be_a_json_integer(client, value):
    r = client.post("/api/v1/ask", json={"question": "fee?", "top_k": value})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"].startswith("top_k:")


def test_top_k_as_an_integral_number_is_an_integer(client):
    # JSON Schema's integer is a number with no fraction: 3.0 is one.
    r = client.post("/api/v1/ask", json={"question": "fee?", "top_k": 3.0})
    assert r.status_code == 200, r.text


def test_a_question_of_unicode_blanks_only_is_refused(client, schema):
    for blank in ["   ", "\u3000\u2003", "\t\n"]:
        r = client.post("/api/v1/ask", json={"question": blank})
        assert r.status_code == 422 and "blank" in r.json()["error"]["message"]
    pattern = schema["components"]["schemas"]["AskRequest"]["properties"]["question"]["pattern"]
    assert pattern.startswith("[^")


def test_every_422_is_documented_as_the_json_error_it_is(schema):
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            unprocessable = operation["responses"].get("422")
            if unprocessable:
                ref = unprocessable["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorOut"), (method, path)


def test_the_stream_documents_events_and_json_errors(schema):
    responses = schema["paths"]["/api/v1/ask/stream"]["post"]["responses"]
    assert list(responses["200"]["content"]) == ["text/event-stream"]
    events = responses["200"]["content"]["text/event-stream"]["schema"]["oneOf"]
    names = [e["properties"]["event"]["const"] for e in events]
    assert names == ["token", "citations", "done", "error"]
    for status in ("400", "422", "429", "503"):
        assert list(responses[status]["content"]) == ["application/json"], status
    assert "Retry-After" in responses["429"]["headers"]


def test_a_document_file_is_served_as_a_documented_media_type(client, schema):
    content = schema["paths"]["/api/v1/documents/{document_id}/file"]["get"]["responses"]["200"]
    documented = set(content["content"])
    assert documented == {f.media_type for f in FORMATS.values()}
    for doc in client.get("/api/v1/documents", headers=AUTH).json()["documents"]:
        r = client.get(f"/api/v1/documents/{doc['id']}/file")
        assert r.status_code == 200
        assert r.headers["content-type"].split(";")[0] in documented


@pytest.mark.parametrize("path", ["/health", "/", "/widget.js", "/openapi.json"])
def test_head_answers_like_get_without_a_body(client, path):
    got, head = client.get(path), client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == got.headers["content-length"]


def test_head_of_a_document_file(client):
    [doc, *_] = client.get("/api/v1/documents", headers=AUTH).json()["documents"]
    r = client.head(f"/api/v1/documents/{doc['id']}/file")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == doc["size_bytes"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/documents", "GET, HEAD, POST"),
        ("OPTIONS", "/api/v1/documents", "GET, HEAD, POST"),
        ("GET", "/api/v1/ask", "POST"),
        ("HEAD", "/api/v1/ask", "POST"),
        ("OPTIONS", "/health", "GET, HEAD"),
        ("PATCH", "/api/v1/documents/some-id", "DELETE"),
    ],
)
def test_a_405_names_every_method_of_the_path(client, method, path, allow):
    # OPTIONS is answered only as a CORS preflight on public routes (test_origins.py).
    r = client.request(method, path, headers=AUTH)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    if method != "HEAD":
        assert r.json()["error"]["code"] == "method_not_allowed"
