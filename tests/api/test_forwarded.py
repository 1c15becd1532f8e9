"""X-Forwarded-For is believed only from configured proxies (issue 15, case 6).

A real uvicorn server on loopback, configured the way `lectern serve` configures it: with
uvicorn's defaults a client on 127.0.0.1 named a new address per request and was never
rate-limited.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from pydantic import ValidationError

from api import cli
from api.forwarded import uvicorn_proxy_options
from lectern.settings import ApiSettings
from tests.api.fake_app import TOKEN, fake_app, served

LIMIT = 3
QUESTION = {"question": "What is the international fee?"}


@contextmanager
def serving(tmp_path, **api) -> Iterator[httpx.Client]:
    """A uvicorn server on a free loopback port, over the fakes; a client for it."""
    app = fake_app(tmp_path, rate_limit_per_minute=LIMIT, **api)
    options = uvicorn_proxy_options(app.state.settings.api.trusted_proxies)
    with served(app, **options) as url, httpx.Client(base_url=url, timeout=15) as client:
        yield client


def ask(client: httpx.Client, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post("/api/v1/ask", json=QUESTION, headers=headers).status_code


def test_rotating_x_forwarded_for_does_not_escape_the_rate_limit(tmp_path):
    with serving(tmp_path) as client:
        assert [ask(client) for _ in range(LIMIT)] == [200] * LIMIT
        assert ask(client) == 429
        rotated = [ask(client, f"203.0.113.{i}") for i in range(1, 41)]
    assert rotated == [429] * 40


def test_a_configured_proxys_forwarded_address_is_the_client(tmp_path):
    with serving(tmp_path, trusted_proxies=["127.0.0.1"]) as client:
        assert [ask(client, "203.0.113.7") for _ in range(LIMIT)] == [200] * LIMIT
        assert ask(client, "203.0.113.7") == 429
        # Behind the proxy, another client has its own bucket, and so has the proxy.
        assert ask(client, "203.0.113.8") == 200
        assert ask(client) == 200


def test_addresses_forged_before_the_proxys_entry_are_ignored(tmp_path):
    # A proxy appends the address it saw; whatever the client sent stands to its left.
    with serving(tmp_path, trusted_proxies=["127.0.0.1"]) as client:
        statuses = [ask(client, f"198.51.100.{i}, 203.0.113.7") for i in range(1, LIMIT + 6)]
    assert statuses == [200] * LIMIT + [429] * 5


def test_a_proxy_network_is_trusted_and_other_addresses_are_not(tmp_path):
    with serving(tmp_path, trusted_proxies=["10.0.0.0/8"]) as client:
        assert [ask(client) for _ in range(LIMIT)] == [200] * LIMIT
        assert [ask(client, f"203.0.113.{i}") for i in range(1, 6)] == [429] * 5


def test_serve_passes_the_trusted_proxies_to_uvicorn(tmp_path, monkeypatch):
    from types import SimpleNamespace

    calls = []
    service = SimpleNamespace(stop_ingests=lambda: None)
    monkeypatch.setattr(
        "api.graceful.graceful_server",
        lambda config, stop: SimpleNamespace(run=lambda: calls.append(config)),
    )
    app = SimpleNamespace(state=SimpleNamespace(service=service))
    monkeypatch.setattr("api.app.create_app", lambda settings: app)
    monkeypatch.setenv("LECTERN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LECTERN_API__ADMIN_TOKEN", TOKEN)
    monkeypatch.delenv("LECTERN_API__TRUSTED_PROXIES", raising=False)
    cli.serve(host="127.0.0.1", port=8123)
    monkeypatch.setenv("LECTERN_API__TRUSTED_PROXIES", '["10.0.0.5", "172.16.0.0/12"]')
    cli.serve(host="127.0.0.1", port=8123)
    assert [(c.proxy_headers, c.forwarded_allow_ips) for c in calls] == [
        (False, []),
        (True, ["10.0.0.5", "172.16.0.0/12"]),
    ]
    assert calls[0].timeout_graceful_shutdown == 7.0  # 10 s in all, the last 3 to close


@pytest.mark.parametrize("bad", ["localhost", "*", "10.0.0.300", "proxy.uni.example"])
def test_a_trusted_proxy_must_be_an_address_or_network(bad):
    with pytest.raises(ValidationError, match="not an IP address or network") as info:
        ApiSettings(trusted_proxies=[bad])
    assert repr(bad) in str(info.value)
