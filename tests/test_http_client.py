"""The shared HTTP client against the real sandbox subprocess (its /_selftest routes and fault injection).
Time is fake: the client's clock and sleep are injected, so retries never really wait."""

from __future__ import annotations

import logging
import pickle
import random
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from adpipeline.http import (
    ApiClient,
    ApiError,
    ApiPermissionError,
    AuthError,
    BadPayloadError,
    BadRequestError,
    ErrorKind,
    NextUrlPaging,
    OffsetPaging,
    PageNumberPaging,
    RequestSpec,
    RetryPolicy,
    ThrottledError,
    TransientError,
    clear_registered_secrets,
    redact,
    register_secret,
)
from adpipeline.sandbox.process import SandboxProcess

ITEMS = "/_selftest/items"
CANARY = "CANARY-SECRET-12345"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    clear_registered_secrets()


def make_client(sandbox: SandboxProcess, fake_time: FakeTime, cls: type[ApiClient] = ApiClient, **retry: Any) -> ApiClient:
    return cls(
        sandbox.base_url,
        source="selftest",
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        rng=random.Random(7),
        retry=RetryPolicy(**retry),
    )


# ---- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503, "count": 2},
        {"drop": True, "count": 2},
        {"truncate": "abort", "count": 2},
        {"truncate": "short", "count": 2},
        {"status": 500, "body": "<html>oops</html>", "content_type": "text/html", "count": 2},
    ],
    ids=["503", "dropped", "truncated-abort", "truncated-short", "500-html"],
)
def test_transient_errors_are_retried_then_succeed(sandbox: SandboxProcess, fake_time: FakeTime, fault: dict) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, **fault}])
    client = make_client(sandbox, fake_time)

    payload = client.get_json(ITEMS, params={"limit": 3}, scope="region-a")

    assert len(payload["results"]) == 3
    assert client.calls == 3 and client.calls_by_scope["region-a"] == 3 and client.retries == 2
    assert sandbox.admin.count("GET /_selftest/items") == 3
    assert len(fake_time.sleeps) == 2
    assert 0 <= fake_time.sleeps[0] <= 1.0 and 0 <= fake_time.sleeps[1] <= 2.0  # full jitter bounds


def test_retries_stop_at_max_attempts_with_exponential_backoff(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "status": 503, "count": None}])
    client = make_client(sandbox, fake_time, max_attempts=4, base_delay=1.0, max_delay=100, jitter=False)

    with pytest.raises(TransientError) as caught:
        client.get_json(ITEMS, scope="region-a")

    assert fake_time.sleeps == [1.0, 2.0, 4.0]
    assert sandbox.admin.count("GET /_selftest/items") == 4 and client.calls == 4
    error = caught.value
    assert error.kind is ErrorKind.TRANSIENT and error.status == 503 and error.attempts == 4 and error.exhausted
    assert str(error).startswith("selftest region-a: temporary failure on GET http://")
    assert "after 4 attempts — retries exhausted; rerun later" in str(error)


def test_backoff_is_capped_at_max_delay(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "status": 502, "count": None}])
    client = make_client(sandbox, fake_time, max_attempts=7, base_delay=1.0, max_delay=5.0, jitter=False)
    with pytest.raises(TransientError):
        client.get_json(ITEMS)
    assert fake_time.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_jitter_stays_within_the_exponential_bounds_and_is_seedable(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "status": 503, "count": None}])
    client = make_client(sandbox, fake_time, max_attempts=6, base_delay=2.0, max_delay=10.0)
    with pytest.raises(TransientError):
        client.get_json(ITEMS)
    caps = [2.0, 4.0, 8.0, 10.0, 10.0]
    assert len(fake_time.sleeps) == 5
    assert all(0 <= s <= cap for s, cap in zip(fake_time.sleeps, caps))
    assert len(set(fake_time.sleeps)) == 5  # really jittered
    policy, rng = RetryPolicy(base_delay=2.0, max_delay=10.0), random.Random(7)
    assert fake_time.sleeps == [policy.backoff(n, rng) for n in range(1, 6)]  # same seed, same waits


def test_retries_stop_at_max_total_seconds(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "status": 503, "count": None}])
    client = make_client(sandbox, fake_time, max_attempts=10, base_delay=4.0, jitter=False, max_total_seconds=10.0)
    with pytest.raises(TransientError) as caught:
        client.get_json(ITEMS)
    assert fake_time.sleeps == [4.0]  # a further 8 s wait would pass the 10 s budget
    assert caught.value.attempts == 2 and sandbox.admin.count() == 2


@pytest.mark.parametrize(
    ("status", "error_type", "kind"),
    [(401, AuthError, ErrorKind.AUTH), (403, ApiPermissionError, ErrorKind.PERMISSION), (400, BadRequestError, ErrorKind.BAD_REQUEST)],
)
def test_auth_permission_and_bad_request_are_never_retried(
    sandbox: SandboxProcess, fake_time: FakeTime, status: int, error_type: type, kind: ErrorKind
) -> None:
    body = {"error": {"message": "Error validating access token", "code": 190, "error_subcode": 463}}
    sandbox.admin.add_faults([{"path": ITEMS, "status": status, "body": body, "count": None}])
    client = make_client(sandbox, fake_time)

    with pytest.raises(error_type) as caught:
        client.get_json(ITEMS, scope="act_123")

    assert sandbox.admin.count("GET /_selftest/items") == 1 and client.calls == 1
    assert fake_time.sleeps == []
    error = caught.value
    assert isinstance(error, ApiError) and error.kind is kind and error.status == status
    assert (error.code, error.subcode) == (190, 463)
    assert str(error).endswith("not retried")
    assert "code 190/463: Error validating access token" in str(error)


def test_429_waits_as_long_as_retry_after_says(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "status": 429, "headers": {"Retry-After": "30"}}])
    client = make_client(sandbox, fake_time)
    assert client.get_json(ITEMS)["results"]
    assert fake_time.sleeps == [30.0]
    assert sandbox.admin.count() == 2


def test_429_waiting_beyond_the_budget_is_raised_at_once(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "status": 429, "headers": {"Retry-After": "3600"}}])
    client = make_client(sandbox, fake_time, max_total_seconds=300)
    with pytest.raises(ThrottledError) as caught:
        client.get_json(ITEMS, scope="nashville")
    assert fake_time.sleeps == [] and sandbox.admin.count() == 1
    assert caught.value.retry_after == 3600
    assert "the API asks for 3600s" in str(caught.value)


def test_non_json_payload_is_bad_payload_and_not_retried(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "status": 200, "body": "<html>login</html>", "content_type": "text/html"}])
    client = make_client(sandbox, fake_time)
    with pytest.raises(BadPayloadError, match="expected JSON, got text/html"):
        client.get_json(ITEMS)
    assert sandbox.admin.count() == 1
    # the raw response is still available to callers that do not expect JSON
    sandbox.admin.add_faults([{"path": ITEMS, "status": 200, "body": "plain", "content_type": "text/plain"}])
    assert client.request("GET", ITEMS).text == "plain"


class UsageAwareClient(ApiClient):
    """What a source does: its own error rules in classify, proactive slow-down in throttle."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.throttled: list[str | None] = []

    def classify(self, response: requests.Response) -> ApiError | None:
        if response.status_code == 400 and response.json().get("error", {}).get("code") == 17:
            return ApiError(ErrorKind.THROTTLED, "user request limit reached", status=400, code=17, retry_after=60)
        return super().classify(response)

    def throttle(self, response: requests.Response) -> None:
        usage = response.headers.get("X-App-Usage")
        self.throttled.append(usage)
        if usage and '"call_count":95' in usage:
            self.sleep(5.0)


def test_throttle_hook_sees_every_success_and_may_sleep(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "headers": {"X-App-Usage": '{"call_count":95}'}}])
    client = make_client(sandbox, fake_time, cls=UsageAwareClient)
    client.get_json(ITEMS)
    client.get_json(ITEMS)
    assert client.throttled == ['{"call_count":95}', None]
    assert fake_time.sleeps == [5.0]


def test_source_specific_classification_is_retried_with_its_wait(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "status": 400, "body": {"error": {"code": 17, "message": "(#17) limit"}}}])
    client = make_client(sandbox, fake_time, cls=UsageAwareClient)
    assert client.get_json(ITEMS)["results"]
    assert fake_time.sleeps == [60.0] and sandbox.admin.count() == 2


# ---- paging ------------------------------------------------------------------------------------


def test_cursor_paging_with_short_and_empty_pages_yields_every_row_once(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    client = make_client(sandbox, fake_time)
    first = RequestSpec("GET", "/_selftest/cursor", params={"limit": 10, "access_token": "sandbox-token"})
    strategy = NextUrlPaging()
    pages = client.paginate(first, strategy, scope="act_1")

    page_one = next(pages)
    assert sandbox.admin.count() == 1  # lazy: nothing fetched ahead
    sandbox.admin.add_faults([{"path": "/_selftest/cursor", "status": 503}])  # a failure mid-listing
    rest = list(pages)
    sizes = [len(strategy.rows(p)) for p in [page_one, *rest]]
    ids = [row["id"] for p in [page_one, *rest] for row in strategy.rows(p)]

    assert ids == list(range(1, 101))
    assert 0 in sizes and any(0 < s < 10 for s in sizes)  # empty and short pages were followed
    assert "next" not in rest[-1]["paging"]
    assert sandbox.admin.count() == len(sizes) + 1  # one retried page
    assert client.calls == len(sizes) + 1


def test_page_number_paging(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    client = make_client(sandbox, fake_time)
    rows = list(client.paginate_rows(RequestSpec("GET", ITEMS, params={"limit": 30}), PageNumberPaging()))
    assert [r["id"] for r in rows] == list(range(1, 251))
    assert sandbox.admin.count() == 9
    # a bare array is one page
    assert PageNumberPaging().next_request(RequestSpec(url="/people"), [{"id": 1}]) is None


def test_offset_paging(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    client = make_client(sandbox, fake_time)
    first = RequestSpec("POST", "/_selftest/report", json={"limit": "50", "offset": "0"})
    rows = list(client.paginate_rows(first, OffsetPaging()))
    assert len(rows) == 120 and len({r["dimensionValues"][0]["value"] for r in rows}) == 120
    assert sandbox.admin.count("POST /_selftest/report") == 3


# ---- secrets -----------------------------------------------------------------------------------


def test_canary_secret_never_reaches_logs_or_exceptions(
    sandbox: SandboxProcess, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")  # the CLI's logging set-up (run in-process elsewhere) quiets it
    register_secret(CANARY)
    client = make_client(sandbox, fake_time, max_attempts=2)
    auth = {"Authorization": f"Bearer {CANARY}"}
    params = {"limit": 5, "access_token": CANARY}
    errors: list[ApiError] = []

    # success (urllib3 logs the full request line at DEBUG), paging through next URLs carrying the token
    client.get_json(ITEMS, params=params, headers=auth)
    list(client.paginate(RequestSpec("GET", "/_selftest/cursor", params=params, headers=auth), NextUrlPaging()))
    # retried then exhausted, on a dropped connection (requests puts the URL in its message)
    sandbox.admin.add_faults([{"path": ITEMS, "drop": True, "count": 2}])
    with pytest.raises(TransientError) as caught:
        client.get_json(ITEMS, params=params, headers=auth)
    errors.append(caught.value)
    # the server echoes the token in its error body
    echo = {"error": {"message": f"Invalid OAuth access token {CANARY}", "code": 190}}
    sandbox.admin.add_faults([{"path": ITEMS, "status": 401, "body": echo}])
    with pytest.raises(AuthError) as caught:
        client.get_json(ITEMS, params=params, headers=auth)
    errors.append(caught.value)
    logging.getLogger("somewhere.else").warning("token was %s, headers %s", CANARY, auth, exc_info=caught.value)

    for error in errors:
        for text in (str(error), repr(error), error.url or "", error.message, str(pickle.loads(pickle.dumps(error)))):
            assert CANARY not in text
        assert error.__cause__ is None and error.__context__ is None
    assert "access_token=***" in (errors[0].url or "")
    assert caplog.records, "expected log records"
    assert any("retrying in" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert any("urllib3" in r.name for r in caplog.records)
    for record in caplog.records:
        assert CANARY not in record.getMessage()
    assert CANARY not in caplog.text


def test_credentials_sent_by_the_client_are_registered_automatically(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    client = make_client(sandbox, fake_time)
    client.get_json(ITEMS, headers={"Authorization": "JWT some-opaque-region-token"}, params={"client_secret": "s3cr3t-value"})
    assert redact("free text some-opaque-region-token and s3cr3t-value") == "free text *** and ***"


def test_redaction_patterns() -> None:
    assert redact("https://g/v24.0/me?fields=id&access_token=EAAG1&after=x") == "https://g/v24.0/me?fields=id&access_token=***&after=x"
    assert redact("client_id=1&client_secret=abc&fb_exchange_token=t") == "client_id=1&client_secret=***&fb_exchange_token=***"
    assert redact('{"access_token": "ya29.x", "expires_in": 3599, "code": 190}') == '{"access_token": "***", "expires_in": 3599, "code": 190}'
    assert redact("{'Authorization': 'JWT abc.def'}") == "{'Authorization': 'JWT ***'}"
    assert redact("token eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln here") == "token *** here"
    assert redact("next=https%3A%2F%2Fg%3Faccess_token%3DXYZ%26after%3D1") == "next=https%3A%2F%2Fg%3Faccess_token%3D***%26after%3D1"
    # reprs: secrets masked, harmless look-alikes kept
    assert redact("Token(access_token='abc', refresh_token=None, tz=ZoneInfo(key='UTC'))") == (
        "Token(access_token='***', refresh_token=None, tz=ZoneInfo(key='UTC'))"
    )
    assert redact("HTTP 400, code 190/463: Session has expired") == "HTTP 400, code 190/463: Session has expired"
    # connection URLs: the password goes, the rest stays (also for a DSN nobody registered)
    assert redact("warehouse postgresql://postgres:Zq9-x_7@127.0.0.1:5432/warehouse") == (
        "warehouse postgresql://postgres:***@127.0.0.1:5432/warehouse")
    assert redact("postgresql+psycopg2://u:p%40ss@h/db") == "postgresql+psycopg2://u:***@h/db"
    assert redact("postgresql://postgres@127.0.0.1:5432/x http://h:8080/p") == "postgresql://postgres@127.0.0.1:5432/x http://h:8080/p"


def test_a_source_rule_that_trips_on_a_non_json_body_falls_back_to_the_status(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    sandbox.admin.add_faults([{"path": ITEMS, "status": 400, "body": "<html>proxy</html>", "content_type": "text/html"}])
    client = make_client(sandbox, fake_time, cls=UsageAwareClient)  # its classify calls response.json()
    with pytest.raises(BadRequestError, match=r"HTTP 400: HTML page"):
        client.get_json(ITEMS, scope="act_9")


def test_a_rejected_token_is_replaced_and_the_call_retried_exactly_once(sandbox: SandboxProcess, fake_time: FakeTime) -> None:
    class Refreshing(ApiClient):
        tokens = iter(["first-token-aaaa", "second-token-bbbb", "third-token-cccc"])
        rejected = 0

        def prepare(self, spec):  # a fresh token per attempt once the old one is dropped
            self.current = getattr(self, "current", None) or next(self.tokens)
            return spec.replace(headers={"Authorization": f"Bearer {self.current}"})

        def token_rejected(self, spec):
            self.rejected += 1
            self.current = None
            return True

    client = Refreshing(sandbox.base_url, source="t", clock=fake_time.clock, sleep=fake_time.sleep)
    sandbox.admin.add_faults([{"path": ITEMS, "status": 401, "count": 1}])
    assert client.get_json(ITEMS) is not None
    assert client.rejected == 1 and sandbox.admin.count("GET /_selftest/items") == 2 and fake_time.sleeps == []

    sandbox.admin.add_faults([{"path": ITEMS, "status": 401, "count": 2}])
    with pytest.raises(AuthError):  # a fresh token refused too: final, no loop
        client.get_json(ITEMS)
    assert client.rejected == 2 and sandbox.admin.count("GET /_selftest/items") == 4
