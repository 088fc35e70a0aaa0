"""GA4 credentials: a service-account or authorized-user JSON (`GA4_CREDENTIALS`: inline or a path),
exchanged for access tokens by `google-auth` at the credentials' own `token_uri` (so the sandbox can
stand in for Google).

Access tokens live in the token store (platform `ga4`, scope = the credentials' variable name), so
runs share one token until it nears expiry and `tokens status` shows the credentials' health. Minting
happens under the store's row lock. `invalid_grant` (key deleted, grant revoked or expired) is an AUTH
error that says "re-authorize", is never retried, and marks the stored token `invalid` until it works again;
other steps and runs within the hour fail from the store without asking again. So does a Data API 401 to a
token minted moments before (`refused`): the credentials work at the token endpoint only.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import requests

from adpipeline import clock
from adpipeline.http.errors import ApiError, ErrorKind
from adpipeline.http.redact import register_secret
from adpipeline.warehouse.tokens import Token, TokenStore

PLATFORM = "ga4"
SCOPES = ["https://www.googleapis.com/auth/analytics.readonly"]
REFRESH_MARGIN = timedelta(minutes=5)  # mint a new token when the current one has less left than this
# after invalid_grant, the same credentials are not presented again for this long (one attempt per run at the
# 4-hourly cadence, none from the other steps of a run); new credentials in the environment are tried at once
REAUTHORIZE_RECHECK = timedelta(hours=1)
# token-endpoint errors that no retry can fix: the credentials themselves must change
_REAUTHORIZE = {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope", "access_denied"}


class CredentialsError(ValueError):
    """GA4 credentials that cannot be used as given (never echoes their content)."""


def load_credentials_info(raw: str, name: str = "GA4_CREDENTIALS") -> dict[str, Any]:
    """The credentials JSON from inline text or a file path; its secrets are registered for redaction."""
    text = (raw or "").strip()
    if not text:
        raise CredentialsError(f"{name} is empty: set it to a service-account or authorized-user JSON (inline or a path)")
    if not text.startswith("{"):
        try:
            text = Path(text).expanduser().read_text()
        except OSError as exc:
            raise CredentialsError(f"{name} is neither inline JSON nor a readable file ({type(exc).__name__})") from None
    try:
        info = json.loads(text)
    except ValueError:
        raise CredentialsError(f"{name} does not contain valid JSON") from None
    if not isinstance(info, dict) or info.get("type") not in ("service_account", "authorized_user"):
        kind = info.get("type") if isinstance(info, dict) else type(info).__name__
        raise CredentialsError(f"{name}: expected a service_account or authorized_user JSON, got type {kind!r}")
    for secret in ("private_key", "private_key_id", "refresh_token", "client_secret"):
        if isinstance(info.get(secret), str):
            register_secret(info[secret])
    return info


class Ga4Auth:
    """Bearer tokens for the GA4 Data API from one set of credentials."""

    def __init__(
        self,
        info: dict[str, Any],
        *,
        name: str = "GA4_CREDENTIALS",
        store: TokenStore | None = None,
        api: str | None = None,
        session: requests.Session | None = None,
        now: Callable[[], datetime] = clock.now,
    ) -> None:
        self.info = info
        self.name = name
        self.store = store
        self.api = api  # the Data API the tokens are sent to: the store hands out only tokens stored for it
        self.session = session or requests.Session()
        self.now = now
        self._token: str | None = None
        self._expires_at: datetime | None = None
        self._rejected: str | None = None  # a token the API answered 401 to: never reuse it from the store
        self._failure: ApiError | None = None  # a re-authorize failure: every later call fails the same way
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return self.info["type"]

    def authorization(self) -> str:
        """`Bearer <token>`, minting (or taking the store's) when the current one is missing or expiring."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._token is None or self._expires_at is None or self._expires_at - self.now() < REFRESH_MARGIN:
                self._obtain()
            return f"Bearer {self._token}"

    def invalidate(self) -> None:
        """The API rejected the current token (401): drop it so the next call mints a fresh one."""
        with self._lock:
            self._rejected, self._token, self._expires_at = self._token, None, None

    def refused(self, error: ApiError) -> ApiError:
        """The Data API answered 401 even to a freshly minted token: the token endpoint accepts these credentials
        but the API does not, so no new token will help. The credentials are marked invalid in the store (status,
        checks and alerts say so; other runs within REAUTHORIZE_RECHECK fail from the store) and every later call
        of this run fails with the same sentence instead of minting again."""
        failure = ApiError(
            ErrorKind.AUTH, f"the GA4 Data API refused a freshly minted access token (401 UNAUTHENTICATED: "
            f"{error.message}). Check that the Google Analytics Data API is enabled for the credentials' project "
            f"and that {self.info.get('client_email') or 'the account'} can sign in, or put working credentials in "
            f"{self.name}", source="ga4", scope=self.name, status=401, code="UNAUTHENTICATED")
        with self._lock:
            self._failure, self._token, self._expires_at = failure, None, None
        if self.store is not None:
            with self.store.locked(PLATFORM, self.name, self.api) as (current, save):
                now = self.now()
                save(replace(current, access_token=None, expires_at=None, status="invalid",
                             last_refresh_attempt_at=now, last_refresh_succeeded=False, last_checked_at=now,
                             last_error=failure.message[:1000]))
        return failure

    # ---- internals ---------------------------------------------------------------------------

    def _obtain(self) -> None:
        if self.store is None:
            self._token, self._expires_at = self._mint()
            return
        with self.store.locked(PLATFORM, self.name, self.api) as (current, save):
            fingerprint = self.store.keyring.fingerprint(json.dumps(self.info, sort_keys=True))
            now = self.now()
            same = current.env_fingerprint == fingerprint
            if (same and current.access_token and current.expires_at
                    and current.expires_at - now >= REFRESH_MARGIN and current.access_token != self._rejected):
                self._token, self._expires_at = current.access_token, current.expires_at  # another run's token
                return
            if (same and current.status == "invalid" and current.last_refresh_attempt_at
                    and now - current.last_refresh_attempt_at < REAUTHORIZE_RECHECK):
                # refused moments ago (another step of this run, a previous run): do not ask again
                self._failure = failure = ApiError(
                    ErrorKind.AUTH, f"{current.last_error} (at {current.last_refresh_attempt_at.astimezone(timezone.utc):%H:%M}Z)",
                    source="ga4", scope=self.name, status=400, code="invalid_grant")
            else:
                failure = self._refresh(current, save, fingerprint, now)
        if failure is not None:  # raised after the lock block, so the failed state above is committed
            raise failure

    def _refresh(self, current: Token, save: Callable[[Token], None], fingerprint: str,
                 now: datetime) -> ApiError | None:
        """Mint a token and record the attempt in the store; the error (not raised) when it failed."""
        try:
            token, expires_at = self._mint()
        except ApiError as exc:
            save(replace(current, access_token=None, expires_at=None, env_fingerprint=fingerprint,
                         status="invalid" if exc.kind is ErrorKind.AUTH else "refresh_failed",
                         last_refresh_attempt_at=now, last_refresh_succeeded=False, last_error=exc.message[:1000]))
            return exc
        save(replace(current, access_token=token, expires_at=expires_at, token_type="Bearer", scopes=SCOPES,
                     env_fingerprint=fingerprint, status="valid", last_refreshed_at=now, last_refresh_attempt_at=now,
                     last_refresh_succeeded=True, last_error=None, refresh_count=current.refresh_count + 1,
                     generation_count=current.generation_count + (current.env_fingerprint != fingerprint)))
        self._token, self._expires_at = token, expires_at
        return None

    def _google_credentials(self):
        if self.kind == "service_account":
            from google.oauth2 import service_account

            return service_account.Credentials.from_service_account_info(self.info, scopes=SCOPES)
        from google.oauth2 import credentials

        user = credentials.Credentials.from_authorized_user_info(self.info, scopes=SCOPES)
        # google-auth ignores an authorized user's token_uri (always Google's); honour it, as for service accounts
        return user.with_token_uri(self.info["token_uri"]) if self.info.get("token_uri") else user

    def _mint(self) -> tuple[str, datetime]:
        from google.auth import exceptions as google_errors
        from google.auth.transport.requests import Request

        try:
            creds = self._google_credentials()
        except (ValueError, KeyError) as exc:
            failure = ApiError(ErrorKind.AUTH, f"unusable credentials ({type(exc).__name__}): fix {self.name}",
                               source="ga4", scope=self.name)
            self._failure = failure
            raise failure from None
        try:
            creds.refresh(Request(session=self.session))
        except google_errors.RefreshError as exc:
            data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
            code = str(data.get("error") or "")
            detail = str(data.get("error_description") or (exc.args[0] if exc.args else ""))
            if code in _REAUTHORIZE or (not code and "invalid_grant" in detail):
                failure = ApiError(ErrorKind.AUTH, f"{code or 'invalid_grant'}: {detail} Re-authorize: "
                                   f"{self._how_to_reauthorize()}", source="ga4", scope=self.name, status=400,
                                   code=code or "invalid_grant")
                self._failure = failure  # never retried, not even by the next property in this run
                raise failure from None
            kind = ErrorKind.TRANSIENT if getattr(exc, "retryable", False) else ErrorKind.AUTH
            raise ApiError(kind, f"token endpoint refused the credentials: {detail}", source="ga4",
                           scope=self.name) from None
        except google_errors.TransportError as exc:
            raise ApiError(ErrorKind.TRANSIENT, f"token endpoint unreachable ({type(exc).__name__})", source="ga4",
                           scope=self.name) from None
        register_secret(creds.token)
        # google-auth dates the expiry on the wall clock; keep the lifetime, on this object's clock
        lifetime = (creds.expiry.replace(tzinfo=timezone.utc) - clock.system_now() if creds.expiry
                    else timedelta(minutes=55))
        return creds.token, self.now() + lifetime

    def _how_to_reauthorize(self) -> str:
        if self.kind == "service_account":
            return f"create a new key for {self.info.get('client_email', '?')} and put its JSON in {self.name}"
        return (f"run the OAuth consent flow again (grants of apps in Testing status die after 7 days) and put "
                f"the new authorized-user JSON in {self.name}")
