"""Which origins may call the API from a browser (issue 15, case 8).

Admin routes never answer a cross-origin preflight, whatever is configured; the public
routes answer the configured widget origins: none but the server's own by default, any
with `*` set explicitly, and `null` only when listed as `null`.
"""

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from lectern.settings import ApiSettings
from tests.api.fake_app import AUTH, fake_app, wait_ready

WIDGET = "https://www.uni.example"
EVIL = "https://evil.example"
# Every public route, with the method a widget uses on it.
PUBLIC = [
    ("POST", "/api/v1/ask"),
    ("POST", "/api/v1/ask/stream"),
    ("GET", "/api/v1/documents/some-id/file"),
    ("GET", "/health"),
]
ADMIN = [
    ("GET", "/api/v1/documents"),
    ("POST", "/api/v1/documents"),
    ("DELETE", "/api/v1/documents/some-id"),
]


@pytest.fixture
def client_for(tmp_path):
    clients = []

    def make(**api):
        client = TestClient(fake_app(tmp_path / str(len(clients)), **api))
        client.__enter__()
        clients.append(client)
        wait_ready(client.get)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def preflight(client, path, origin, method="POST", headers="content-type"):
    request = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=request)


def cors_headers(response):
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-allow")}


def assert_refused(response):
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "cross_origin_refused"
    assert cors_headers(response) == {}


def test_by_default_no_other_origin_may_call_any_route(client_for):
    client = client_for()
    for method, path in PUBLIC:
        assert_refused(preflight(client, path, WIDGET, method))
    asked = client.post("/api/v1/ask", json={"question": "fee?"}, headers={"Origin": WIDGET})
    assert asked.status_code == 200
    assert cors_headers(asked) == {}
    # The server's own pages need no CORS: a same-origin request still works.
    assert client.post("/api/v1/ask", json={"question": "fee?"}).status_code == 200


@pytest.mark.parametrize("origins", [["*"], [WIDGET], [WIDGET, "null", "*"]])
def test_admin_routes_never_answer_a_preflight(client_for, origins):
    client = client_for(cors_origins=origins)
    for method, path in ADMIN:
        r = preflight(client, path, WIDGET, method, headers="authorization")
        assert cors_headers(r) == {}, (method, path)
        assert r.status_code == 405  # OPTIONS is no method of theirs
        # Nor does an admin answer carry a grant a browser would honour.
        r = client.request(method, path, headers={"Origin": WIDGET, **AUTH})
        assert cors_headers(r) == {}, (method, path)


def test_public_routes_answer_the_configured_widget_origin(client_for):
    client = client_for(cors_origins=[WIDGET])
    for method, path in PUBLIC:
        ok = preflight(client, path, WIDGET, method)
        assert ok.status_code == 200, (path, ok.text)
        assert ok.headers["access-control-allow-origin"] == WIDGET
        assert method in ok.headers["access-control-allow-methods"]
        assert_refused(preflight(client, path, EVIL, method))
    asked = client.post("/api/v1/ask", json={"question": "fee?"}, headers={"Origin": WIDGET})
    assert asked.headers["access-control-allow-origin"] == WIDGET
    assert "Retry-After" in asked.headers["access-control-expose-headers"]
    health = client.get("/health", headers={"Origin": WIDGET})
    assert health.headers["access-control-allow-origin"] == WIDGET


def test_a_public_preflight_may_not_send_authorization(client_for):
    # The public routes take no credentials; a widget asking to send a token is refused.
    client = client_for(cors_origins=["*"])
    assert_refused(preflight(client, "/api/v1/ask", WIDGET, headers="authorization"))


def test_star_allows_any_origin_but_null(client_for):
    client = client_for(cors_origins=["*"])
    ok = preflight(client, "/api/v1/ask", EVIL)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "*"
    assert_refused(preflight(client, "/api/v1/ask", "null"))
    asked = client.post("/api/v1/ask", json={"question": "fee?"}, headers={"Origin": "null"})
    assert asked.status_code == 200
    assert cors_headers(asked) == {}


def test_null_is_allowed_when_listed_literally(client_for):
    client = client_for(cors_origins=["null"])
    ok = preflight(client, "/api/v1/ask", "null")
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "null"
    asked = client.post("/api/v1/ask", json={"question": "fee?"}, headers={"Origin": "null"})
    assert asked.headers["access-control-allow-origin"] == "null"
    assert_refused(preflight(client, "/api/v1/ask", WIDGET))


def test_the_default_is_no_origin_and_env_sets_them(monkeypatch):
    assert ApiSettings().cors_origins == []
    monkeypatch.setenv("LECTERN_API__CORS_ORIGINS", f'["{WIDGET}"]')
    from lectern.settings import Settings

    assert Settings().api.cors_origins == [WIDGET]


@pytest.mark.parametrize(
    "bad",
    ["https://www.uni.example/", "www.uni.example", "https://WWW.uni.example",
     "https://www.uni.example:443", "https://www.uni.example/widget", "ftp://uni.example"],
)
def test_an_origin_the_browser_would_never_send_is_refused_at_start(bad):
    with pytest.raises(ValidationError, match="is not an origin") as info:
        ApiSettings(cors_origins=[bad])
    assert repr(bad) in str(info.value)
