"""Admin token and rate limiter as units: fake requests and a fake clock, no server.

The clock is api.security's own `time` swapped for a fake one: the tests move time
forward by hand, so nothing here depends on how fast the machine is.
"""

import os
import stat

import pytest
from starlette.requests import Request

from api.security import BearerAuth, RateLimiter, admin_token
from lectern.errors import RateLimitedError, UnauthorizedError


def request(host: str | None = "10.0.0.1", headers: dict[str, str] | None = None) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/ask",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (host, 5000) if host is not None else None,
    }
    return Request(scope)


def allowed(limiter: RateLimiter, host: str | None = "10.0.0.1") -> bool:
    try:
        limiter(request(host))
    except RateLimitedError:
        return False
    return True


def retry_after(limiter: RateLimiter, host: str = "10.0.0.1") -> float:
    with pytest.raises(RateLimitedError) as info:
        limiter(request(host))
    return info.value.retry_after


# ------------------------------------------------------------------------ rate limit --


def test_the_limit_is_per_minute_per_client(clock):
    limiter = RateLimiter(3)
    assert [allowed(limiter) for _ in range(4)] == [True, True, True, False]


def test_each_client_address_has_its_own_bucket(clock):
    limiter = RateLimiter(2)
    assert allowed(limiter, "10.0.0.1") and allowed(limiter, "10.0.0.1")
    assert not allowed(limiter, "10.0.0.1")
    # Another address is untouched by the first one's hits, and vice versa.
    assert allowed(limiter, "10.0.0.2") and allowed(limiter, "10.0.0.2")
    assert not allowed(limiter, "10.0.0.2")
    assert not allowed(limiter, "10.0.0.1")
    assert allowed(limiter, "192.168.1.7")


def test_requests_without_a_client_address_share_one_bucket(clock):
    limiter = RateLimiter(1)
    assert allowed(limiter, None)
    assert not allowed(limiter, None)
    assert allowed(limiter, "10.0.0.1")


def test_hits_expire_after_the_window(clock):
    limiter = RateLimiter(2, window_s=60)
    assert allowed(limiter) and allowed(limiter)
    clock.now += 59.9
    assert not allowed(limiter), "still inside the window"
    clock.now += 0.1  # exactly one window after the hits
    assert allowed(limiter) and allowed(limiter)
    assert not allowed(limiter)


def test_the_window_slides_one_hit_at_a_time(clock):
    limiter = RateLimiter(2, window_s=60)
    start = clock.now
    assert allowed(limiter)  # t=0
    clock.now = start + 10
    assert allowed(limiter)  # t=10
    clock.now = start + 25
    assert not allowed(limiter)  # a refused request is not counted as a hit
    clock.now = start + 60
    assert allowed(limiter), "the hit at t=0 expired; the one at t=10 is still in"
    clock.now = start + 65
    assert not allowed(limiter), "t=10 and t=60 are both inside the window"
    clock.now = start + 70
    assert allowed(limiter)


def test_retry_after_is_when_the_oldest_hit_expires(clock):
    limiter = RateLimiter(2, window_s=60)
    start = clock.now
    limiter(request())
    clock.now = start + 10
    limiter(request())
    clock.now = start + 25
    assert retry_after(limiter) == pytest.approx(35)  # the hit at t=0 leaves at t=60
    clock.now = start + 59
    assert retry_after(limiter) == pytest.approx(1)
    clock.now = start + 61
    limiter(request())  # t=0 is gone; the hits are now t=10 and t=61
    assert retry_after(limiter) == pytest.approx(9)  # t=10 leaves at t=70
    assert "retry in 9 s" in str(RateLimitedError(9))


def test_a_zero_limit_turns_the_limiter_off(clock):
    limiter = RateLimiter(0)
    assert all(allowed(limiter) for _ in range(1000))


def test_idle_clients_are_forgotten_so_memory_stays_bounded(clock):
    limiter = RateLimiter(1, window_s=60, max_clients=50)
    for i in range(50):
        limiter(request(f"10.0.1.{i}"))
    assert limiter.tracked_clients == 50
    clock.now += 61  # every one of them is idle now
    limiter(request("10.0.2.1"))
    limiter(request("10.0.2.2"))
    assert limiter.tracked_clients <= 2, "clients with no hit in the window are dropped"
    # Forgetting an idle client loses nothing: its hits had expired anyway.
    assert allowed(limiter, "10.0.1.3")
    assert not allowed(limiter, "10.0.1.3")
    assert not allowed(limiter, "10.0.2.1"), "clients still in their window are kept"


def test_past_max_clients_the_least_recently_seen_are_forgotten_first(clock):
    limiter = RateLimiter(1, window_s=60, max_clients=5)
    for i in range(20):  # all within one window: a flood of addresses
        limiter(request(f"10.0.1.{i}"))
        clock.now += 1
    assert limiter.tracked_clients == 5, "memory stays bounded within the window too"
    # The five seen last are still limited; the first ones were forgotten.
    assert not any(allowed(limiter, f"10.0.1.{i}") for i in range(15, 20))
    assert allowed(limiter, "10.0.1.0")
    assert limiter.tracked_clients == 5


def test_a_refused_client_counts_as_recently_seen(clock):
    limiter = RateLimiter(1, window_s=60, max_clients=2)
    limiter(request("10.0.0.1"))
    limiter(request("10.0.0.2"))
    assert not allowed(limiter, "10.0.0.1")  # refused, and now the most recent
    limiter(request("10.0.0.3"))  # evicts 10.0.0.2, the least recently seen
    assert not allowed(limiter, "10.0.0.1")
    assert allowed(limiter, "10.0.0.2")


def test_max_clients_must_be_positive():
    with pytest.raises(ValueError, match="max_clients must be at least 1, got 0"):
        RateLimiter(1, max_clients=0)


# ---------------------------------------------------------------------- admin token --


def test_a_generated_admin_token_is_kept_in_a_file_only_its_owner_can_read(tmp_path):
    data = tmp_path / "data"
    old = os.umask(0)  # the file's mode must not depend on the umask
    try:
        token = admin_token(None, data)
    finally:
        os.umask(old)
    path = data / "admin-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token
    assert len(token) >= 32
    assert admin_token(None, data) == token, "generated once, then reused"
    assert admin_token(None, tmp_path / "other") != token


def test_a_configured_admin_token_is_used_and_nothing_is_written(tmp_path):
    configured = "configured-token-0123456789"
    assert admin_token(configured, tmp_path / "data") == configured
    assert not (tmp_path / "data").exists()


def test_bearer_auth():
    auth = BearerAuth("right-token-0123456789")
    auth(request(headers={"Authorization": "Bearer right-token-0123456789"}))
    auth(request(headers={"Authorization": "bearer right-token-0123456789"}))
    for header, message in [
        (None, "need 'Authorization: Bearer"),
        ("Basic right-token-0123456789", "need 'Authorization: Bearer"),
        ("Bearer ", "need 'Authorization: Bearer"),
        ("Bearer right-token-012345678", "the admin token is wrong"),
        ("Bearer right-token-0123456789x", "the admin token is wrong"),
    ]:
        headers = {"Authorization": header} if header is not None else {}
        with pytest.raises(UnauthorizedError, match=message):
            auth(request(headers=headers))
