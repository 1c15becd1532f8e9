"""api.security at its edges, beside test_security.py: exact messages, bounds and defaults.

The `clock` fixture (tests/api/conftest.py) replaces api.security's clock.
"""

from __future__ import annotations

import stat

import pytest
from starlette.requests import Request

from api.security import BearerAuth, RateLimiter, admin_token
from lectern.errors import RateLimitedError, UnauthorizedError


def request(authorization: str | None = None, host: str | None = "10.0.0.1") -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": headers,
        "client": (host, 5000) if host is not None else None,
    }
    return Request(scope)


# -- the admin token ---------------------------------------------------------------


def test_a_generated_token_is_kept_private_in_a_data_dir_made_with_its_parents(tmp_path):
    data_dir = tmp_path / "not" / "yet" / "there"
    token = admin_token(None, data_dir)
    path = data_dir / "admin-token"
    assert path.read_text() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # 32 random bytes, URL-safe base64 without padding: 43 characters.
    assert len(token) == 43
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_a_token_is_generated_into_a_data_dir_that_already_exists(tmp_path):
    token = admin_token(None, tmp_path)
    assert (tmp_path / "admin-token").read_text() == token


def test_the_kept_token_is_read_back_stripped_and_not_replaced(tmp_path):
    first = admin_token("", tmp_path)  # an empty setting counts as none
    assert admin_token(None, tmp_path) == first
    (tmp_path / "admin-token").write_text("  edited-by-hand\n")
    assert admin_token(None, tmp_path) == "edited-by-hand"


# -- Bearer ------------------------------------------------------------------------


def test_the_right_token_passes_whatever_the_scheme_case_and_spacing():
    auth = BearerAuth("s3cret")
    assert auth(request("Bearer s3cret")) is None
    assert auth(request("bearer s3cret")) is None
    assert auth(request("BEARER  s3cret ")) is None  # extra spaces around the token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic s3cret", "s3cret"])
def test_a_missing_or_malformed_header_says_how_to_authenticate(header):
    with pytest.raises(UnauthorizedError) as e:
        BearerAuth("s3cret")(request(header))
    assert str(e.value) == "admin routes need 'Authorization: Bearer <admin token>'"


@pytest.mark.parametrize("given", ["wrong", "s3cre", "s3cret2", "S3CRET"])
def test_a_wrong_token_is_refused_as_wrong(given):
    with pytest.raises(UnauthorizedError) as e:
        BearerAuth("s3cret")(request(f"Bearer {given}"))
    assert str(e.value) == "the admin token is wrong"


# -- the rate limiter --------------------------------------------------------------


def test_zero_or_a_negative_limit_is_off(clock):
    for per_minute in (0, -1):
        limit = RateLimiter(per_minute=per_minute)
        for _ in range(5):
            limit(request(host="a"))
        assert limit.tracked_clients == 0


def test_defaults_are_a_sixty_second_window_and_ten_thousand_clients():
    limit = RateLimiter(per_minute=3)
    assert (limit.window_s, limit.max_clients) == (60.0, 10_000)


def test_a_client_whose_last_hit_is_exactly_one_window_old_is_forgotten(clock):
    limit = RateLimiter(per_minute=5, window_s=60.0)
    limit(request(host="a"))
    clock.now += 59.5
    limit(request(host="b"))
    assert limit.tracked_clients == 2  # "a" is still inside its window
    clock.now += 0.5
    limit(request(host="b"))
    assert limit.tracked_clients == 1  # "a" last asked exactly one window ago: idle


def test_exactly_max_clients_active_clients_are_all_kept(clock):
    limit = RateLimiter(per_minute=1, window_s=60.0, max_clients=2)
    limit(request(host="a"))
    limit(request(host="b"))
    assert limit.tracked_clients == 2
    with pytest.raises(RateLimitedError):
        limit(request(host="a"))  # still limited: it was not forgotten
    limit(request(host="c"))
    assert limit.tracked_clients == 2  # one past the bound: the least recently seen goes


def test_one_client_is_the_smallest_bound(clock):
    limit = RateLimiter(per_minute=1, max_clients=1)
    limit(request(host="a"))
    limit(request(host="b"))  # "a" goes: only one client is kept
    assert limit.tracked_clients == 1
    limit(request(host="a"))  # forgotten, so allowed again
    with pytest.raises(ValueError, match=r"^max_clients must be at least 1, got 0$"):
        RateLimiter(per_minute=1, max_clients=0)
