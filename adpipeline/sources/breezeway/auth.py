"""Per-region Breezeway tokens: reused until 5 minutes before `exp`, then refreshed under the token store's
row lock (the refresh token rotates, so two runs must never both spend it), then regenerated from the
region's client credentials. Auth endpoints allow 1 request per minute: every auth call happens under
the row lock, after the stored last attempt is at least a minute old, so concurrent runs queue on the lock
and reuse the token the first one obtained instead of calling again.

A token whose `exp` is unreadable, or already (nearly) past when it is issued (the API's clock differs from
ours), is reused for the documented 24 h or until a 401, and its status says the expiry is assumed; it never
turns every request into a (1/min-paced) re-authentication. Client credentials the auth endpoint refuses are
remembered (by a keyed fingerprint) and not retried, in this run or the next, until they change.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from adpipeline import clock as pipeline_clock
from adpipeline.http import ApiClient, ApiError, ErrorKind
from adpipeline.warehouse.tokens import Token, TokenStore, api_origin

PLATFORM = "breezeway"
AUTH_PATH = "/public/auth/v1/"
REFRESH_PATH = "/public/auth/v1/refresh"
REFRESH_MARGIN = timedelta(minutes=5)
AUTH_MIN_INTERVAL = timedelta(seconds=60)
ACCESS_LIFETIME = timedelta(hours=24)  # documented; assumed when a token's `exp` cannot be trusted
EXPIRY_ASSUMED = "expiry assumed"  # the token status says so (last_error) when `exp` was not used
CREDENTIALS_REFUSED = "client credentials refused"  # remembered: not retried until the credentials change
CLOCK_REUSE = 1.0  # seconds a clock read serves the per-request token check (see BreezewayAuth._now)


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str = field(repr=False)


def jwt_expiry(token: str | None) -> datetime | None:
    """The `exp` claim of a JWT (read, not verified: the API verifies; we only plan refreshes)."""
    if not token:
        return None
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(int(claims["exp"]), tz=timezone.utc)
    except (IndexError, KeyError, TypeError, ValueError):
        return None


class BreezewayAuth:
    """Tokens of one region. `access_token()` for each request; `rejected(token)` after a 401."""

    def __init__(
        self,
        region: str,
        credentials: Credentials | None,
        store: TokenStore,
        http: ApiClient,
        *,
        missing_credentials: str = "client credentials are not configured",
        clock: Callable[[], datetime] = pipeline_clock.now,
        sleep: Callable[[float], None] = pipeline_clock.sleep,
        monotonic: Callable[[], float] = pipeline_clock.monotonic,
        margin: timedelta = REFRESH_MARGIN,
        min_interval: timedelta = AUTH_MIN_INTERVAL,
    ) -> None:
        self.region = region
        self.credentials = credentials
        self.store = store
        self.http = http
        self.missing_credentials = missing_credentials
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic
        self.margin = margin
        self.min_interval = min_interval
        self.calls: Counter[str] = Counter()  # "generate" / "refresh" calls made by this process
        self._token: Token | None = None
        self._degraded = False  # renewal failed while the token was still valid: use it until it expires
        self._refused: ApiError | None = None  # the API refused a fresh token: no renewal helps for this run
        self._renewed: set[str] = set()  # tokens this run obtained after a 401: a 401 to one of them is final
        self._lock = threading.Lock()  # the threads of one run share one token
        self._read: tuple[datetime, float] | None = None  # the last clock read, and the steady clock's then

    # ---- public --------------------------------------------------------------------------------

    def access_token(self) -> str:
        with self._lock:
            self._raise_refused()
            now = self._now()
            if self._token is None or not (self._usable(self._token, now) or self._valid_degraded(self._token, now)):
                self._token = self._ensure(rejected=None)
            assert self._token.access_token
            return self._token.access_token

    def final_401(self, token: str | None) -> bool:
        """Whether a 401 to `token` is final: a fresh token already refused, or `token` is itself one this run
        got after a 401 (a thread whose first try used it must not renew once more)."""
        with self._lock:
            return self._refused is not None or (token is not None and token in self._renewed)

    def rejected(self, token: str | None) -> str:
        """The API answered 401 to `token`: switch to a newer one (another run's, or refreshed here)."""
        with self._lock:
            self._raise_refused()  # a 401 that reached us after another thread's verdict: final as well
            if self._token is not None and self._token.access_token != token and self._usable(self._token, self.clock()):
                return self._token.access_token  # another thread of this run already replaced it
            self._token = self._ensure(rejected=token)
            assert self._token.access_token
            self._renewed.add(self._token.access_token)
            return self._token.access_token

    def refused(self, token: str | None, error: ApiError) -> None:
        """The API refused `token` although it was just renewed (access revoked...): mark it invalid at once,
        so `adpipeline tokens status`, the token check and its alert agree with the failing run."""
        with self._lock:
            if self._refused is not None:
                return  # said and stored once
            self.store.mark_rejected(PLATFORM, self.region, token, status="invalid", api=api_origin(self.http.base_url),
                                     error=f"the API refused a freshly issued token: {error.describe()}")
            if self._token is not None and self._token.access_token == token:
                self._token = None
            self._refused = error  # the run's other threads stop here instead of renewing once more each

    def _now(self) -> datetime:
        """The time for the per-request token check: the clock read at most once a CLOCK_REUSE, in between carried
        on by the steady clock. Following the sandbox's clock, a read is an HTTP call to it: one per API request
        (under the lock, a batch-1 worker spent 11% of its samples waiting there). A jump of a followed clock is
        seen that much later, against a 5-minute margin; renewing reads the clock itself."""
        steady = self.monotonic()
        if self._read is None or not 0 <= steady - self._read[1] < CLOCK_REUSE:
            self._read = (self.clock(), steady)
        return self._read[0] + timedelta(seconds=steady - self._read[1])

    def _raise_refused(self) -> None:
        """After the API refused a fresh token, nothing more is sent or renewed in this run: the verdict again."""
        if self._refused is not None:
            raise ApiError(self._refused.kind, self._refused.message, source=PLATFORM, scope=self.region,
                           status=self._refused.status)

    # ---- the locked decision -------------------------------------------------------------------

    def _valid_degraded(self, token: Token, now: datetime) -> bool:
        return self._degraded and token.expires_at is not None and token.expires_at > now

    def _usable(self, token: Token, now: datetime, rejected: str | None = None) -> bool:
        return bool(
            token.access_token
            and token.access_token != rejected
            and token.expires_at is not None
            and token.expires_at - now > self.margin
        )

    def _fingerprint(self) -> str | None:
        creds = self.credentials
        return self.store.keyring.fingerprint(f"{creds.client_id}\0{creds.client_secret}") if creds else None

    def _ensure(self, rejected: str | None) -> Token:
        failure: ApiError | None = None
        # the store hands out only a token issued by this API (base URL's host)
        with self.store.locked(PLATFORM, self.region, api_origin(self.http.base_url)) as (token, save):
            now = self.clock()
            token = replace(token, last_checked_at=now)
            # a token the API refused (marked invalid) is renewed, not reused: the runbook's rerun gets a new one
            if token.status != "invalid" and self._usable(token, now, rejected):
                save(token)  # reuse: this run's first look, or another run refreshed while we waited
                return token
            if (token.status == "invalid" and (token.last_error or "").startswith(CREDENTIALS_REFUSED)
                    and token.env_fingerprint is not None and token.env_fingerprint == self._fingerprint()):
                # refused before and unchanged since: say so at once, no auth call, no minute's wait
                at = token.last_refresh_attempt_at
                when = f" (at {at.astimezone(timezone.utc):%Y-%m-%d %H:%M}Z)" if at else ""
                raise ApiError(ErrorKind.AUTH, f"{token.last_error}{when}; not retried until the client credentials "
                               "change", source=PLATFORM, scope=self.region)
            self._pace(token)
            token, failure = self._renew(token, rejected)
            save(token)
        self._degraded = token.status == "refresh_failed"
        if failure is not None:
            raise failure  # after the lock's transaction committed the failure state
        return token

    def _pace(self, token: Token) -> None:
        """Never call an auth endpoint within a minute of the last auth call for this region (any run)."""
        last = token.last_refresh_attempt_at
        if last is None:
            return
        wait = (last + self.min_interval - self.clock()).total_seconds()
        if wait > 0:
            self.sleep(wait)

    def _renew(self, token: Token, rejected: str | None) -> tuple[Token, ApiError | None]:
        """Refresh, else regenerate. Returns the token to save and the error to raise (if no usable token)."""
        now = self.clock()
        refresh_error: str | None = None
        if token.refresh_token and (token.refresh_expires_at is None or token.refresh_expires_at > now):
            try:
                pair = self._call("refresh", REFRESH_PATH, headers={"Authorization": f"JWT {token.refresh_token}"})
                return self._stored(token, pair, now, refreshed=True, error=None), None
            except ApiError as exc:
                refresh_error = f"refresh failed: {exc.describe()}"
        # A failed refresh goes straight to generation: that is the other endpoint, with its own limit.
        try:
            if self.credentials is None:
                raise ApiError(ErrorKind.AUTH, self.missing_credentials, source=PLATFORM, scope=self.region)
            pair = self._call("generate", AUTH_PATH, json={"client_id": self.credentials.client_id,
                                                          "client_secret": self.credentials.client_secret})
        except ApiError as exc:
            failed = self._failed(token, now, rejected, exc, refresh_error)
            return failed, (None if failed.status == "refresh_failed" else exc)
        return self._stored(token, pair, now, refreshed=False, error=refresh_error), None

    def _call(self, kind: str, path: str, **kwargs) -> dict[str, str]:
        self.calls[kind] += 1
        payload = self.http.request_json("POST", path, scope=f"{self.region}/auth", **kwargs)
        if not isinstance(payload, dict) or not payload.get("access_token") or not payload.get("refresh_token"):
            raise ApiError(ErrorKind.BAD_PAYLOAD, f"{kind} answered without a token pair", source=PLATFORM,
                           scope=self.region, method="POST", url=self.http.url_for(path))
        return payload

    def _expiry(self, access_token: str, now: datetime) -> tuple[datetime, str | None]:
        """(expiry to plan with, note): the `exp` claim, unless unreadable or (nearly) past at issue, which
        means the API's clock differs from ours; then the documented lifetime from now, said to be assumed."""
        claimed = jwt_expiry(access_token)
        if claimed is not None and claimed - now > self.margin:
            return claimed, None
        why = ("the token has no readable exp" if claimed is None else
               f"its exp {claimed.isoformat()} is already within {self.margin} of our clock at issue (the API's "
               "clock differs from ours)")
        return now + ACCESS_LIFETIME, (f"{EXPIRY_ASSUMED}: {why}; reused for the documented "
                                       f"{ACCESS_LIFETIME.total_seconds() / 3600:.0f} h or until the API answers 401")

    def _stored(self, token: Token, pair: dict[str, str], now: datetime, *, refreshed: bool, error: str | None) -> Token:
        expires_at, note = self._expiry(pair["access_token"], now)
        return replace(
            token,
            access_token=pair["access_token"],
            refresh_token=pair["refresh_token"],
            token_type="JWT",
            expires_at=expires_at,
            env_fingerprint=self._fingerprint(),
            refresh_expires_at=jwt_expiry(pair["refresh_token"]),
            status="valid",
            last_refreshed_at=now,
            last_refresh_attempt_at=now,
            last_refresh_succeeded=True,
            refresh_count=token.refresh_count + (1 if refreshed else 0),
            generation_count=token.generation_count + (0 if refreshed else 1),
            # why we had to regenerate, if we did; that the expiry is assumed, if it is
            last_error="; ".join(p for p in (note, error) if p) or None,
        )

    def _failed(self, token: Token, now: datetime, rejected: str | None, error: ApiError,
                refresh_error: str | None) -> Token:
        still_valid = bool(token.access_token and token.access_token != rejected
                           and token.expires_at is not None and token.expires_at > now)
        if still_valid:
            status = "refresh_failed"  # keep using it; a WARN until a refresh succeeds
        elif error.kind is ErrorKind.AUTH:
            status = "invalid"  # the credentials themselves are refused: a person must act
        else:
            status = "expired"
        message = "; ".join(p for p in (refresh_error, f"generate failed: {error.describe()}") if p)
        fingerprint = token.env_fingerprint
        if status == "invalid" and self.credentials is not None:
            message, fingerprint = f"{CREDENTIALS_REFUSED}: fix the region's client id/secret; {message}", self._fingerprint()
        return replace(token, status=status, last_refresh_attempt_at=now, last_refresh_succeeded=False,
                       last_error=message[:1000], env_fingerprint=fingerprint)
