"""The Meta token lifecycle: inspect, refresh before it is too late, degrade, fail loudly, recover.

Meta user tokens live ~60 days and cannot be refreshed once expired (the incident in
../shared/seeds/meta-etl-prevention-guide.md). So a standalone asset, `meta/access_token`, runs every
30 minutes by its own job, even when nothing changes:
  - inspects the stored token with `/debug_token` (expiry, data-access expiry, scopes, validity);
  - exchanges it (`/oauth/access_token`, `fb_exchange_token`) for a new 60-day token when fewer than
    META_TOKEN_LIFETIME.warn (14 days) are left and the app id/secret are configured;
  - records everything in the token store (`ops.platform_tokens`), which the shared token checks read.
A failing refresh while the token is valid keeps the token in use (status `refresh_failed`, WARN). An expired
or invalidated token is recorded as such, and the Meta data assets then fail fast with the recovery steps
(manual: `adpipeline tokens exchange meta -`). The asset is NOT an upstream of the data assets, so a refresh
never re-runs them.
"""



from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg

from adpipeline import clock as pipeline_clock
from adpipeline.config import SourcesConfig
from adpipeline.conventions import LIGHT_EXECUTOR, OWNER, URGENT_RUN_TAGS
from adpipeline.http import ApiError, ErrorKind, RequestSpec, RetryPolicy, register_secret
from adpipeline.monitoring import thresholds as T
from adpipeline.monitoring.checks import Evaluation, build_check, meta_style_token_checks
from adpipeline.sources.meta.client import MetaClient
from adpipeline.sources.meta.resources import TOKEN_PLATFORM, TOKEN_SCOPE, MetaResource
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.tokens import Token, TokenStore, api_origin, token_states

ACCESS_TOKEN = dg.AssetKey(["meta", "access_token"])
# extraction needs one of the ads permissions; the business accounts need business_management
ADS_SCOPES = ("ads_read", "ads_management")
BUSINESS_SCOPE = "business_management"
RECOVERY_COMMAND = "adpipeline tokens exchange meta -"


def missing_scopes(scopes: list[str] | None) -> list[str]:
    """The required permissions a token lacks, by name ("ads_read or ads_management", "business_management")."""
    granted = set(scopes or ())
    missing = []
    if not granted & set(ADS_SCOPES):
        missing.append(" or ".join(ADS_SCOPES))
    if BUSINESS_SCOPE not in granted:
        missing.append(BUSINESS_SCOPE)
    return missing


@dataclass(frozen=True)
class Inspection:
    """What `/debug_token` says about a token. `expires_at` None = never expires (system user)."""

    is_valid: bool
    expires_at: datetime | None
    data_access_expires_at: datetime | None
    scopes: list[str]
    type: str | None
    error: str | None = None
    error_subcode: int | None = None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _stamp(value: Any) -> datetime | None:
    seconds = int(value or 0)
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds else None


class MetaAuth:
    """`/debug_token` and `/oauth/access_token` on the shared HTTP client (AUTH errors are never retried)."""

    def __init__(self, graph_url: str, app_id: str | None, app_secret: str | None, *,
                 retry: RetryPolicy | None = None) -> None:
        self.graph_url, self.app_id, self.app_secret = graph_url, app_id, app_secret
        self.retry = retry
        register_secret(app_secret)

    @property
    def can_exchange(self) -> bool:
        return bool(self.app_id and self.app_secret)

    def _client(self, access_token: str) -> MetaClient:
        return MetaClient(self.graph_url, access_token, retry=self.retry)

    def debug(self, token: str) -> Inspection:
        """Inspect with the app token when the app is configured, else with the token itself."""
        caller = f"{self.app_id}|{self.app_secret}" if self.can_exchange else token
        register_secret(token)
        with self._client(caller) as client:
            answer = client.call(RequestSpec("GET", "/debug_token", params={"input_token": token}))
        data = (answer or {}).get("data", {})
        error = data.get("error") or {}
        return Inspection(
            is_valid=bool(data.get("is_valid")), expires_at=_stamp(data.get("expires_at")),
            data_access_expires_at=_stamp(data.get("data_access_expires_at")), scopes=list(data.get("scopes") or []),
            type=data.get("type"), error=error.get("message"), error_subcode=error.get("subcode"),
        )

    def exchange(self, token: str) -> str:
        """A (short- or long-lived) valid user token -> a new long-lived (60-day) token."""
        if not self.can_exchange:
            raise ApiError(ErrorKind.AUTH, "cannot exchange a Meta token: the app id and app secret are not set",
                           source="meta")
        register_secret(token)
        with self._client(f"{self.app_id}|{self.app_secret}") as client:
            answer = client.call(RequestSpec("GET", "/oauth/access_token", params={
                "grant_type": "fb_exchange_token", "client_id": self.app_id, "client_secret": self.app_secret,
                "fb_exchange_token": token}))
        new = (answer or {}).get("access_token")
        if not new:
            raise ApiError(ErrorKind.BAD_PAYLOAD, "Meta token exchange answered without an access_token", source="meta")
        register_secret(new)
        return new


def apply_inspection(token: Token, info: Inspection, now: datetime) -> Token:
    """The token row updated from an inspection (expired / invalid / valid, expiry, scopes), checked now."""
    if not info.is_valid:
        expired = info.error_subcode == 463 or (info.expires_at is not None and info.expires_at <= now)
        status = "expired" if expired else "invalid"
        why = info.error or f"token {status}"
        return replace(token, status=status, last_checked_at=now, expires_at=info.expires_at or token.expires_at,
                       last_error=f"Meta token {status}: manual re-authentication required ({why}); run "
                                  f"`{RECOVERY_COMMAND}` with a new short-lived token")
    lacking = missing_scopes(info.scopes)
    return replace(
        token, status="valid", last_checked_at=now, expires_at=info.expires_at, never_expires=info.expires_at is None,
        data_access_expires_at=info.data_access_expires_at, scopes=info.scopes,
        last_error=f"missing permissions: {', '.join(lacking)}" if lacking else None,
    )


@dataclass
class Outcome:
    token: Token
    exchanged: bool = False
    refresh_error: str | None = None
    notes: list[str] = field(default_factory=list)

    def metadata(self, now: datetime) -> dict[str, Any]:
        t = self.token
        days_left = (None if t.never_expires or t.expires_at is None
                     else round((t.expires_at - now) / timedelta(days=1), 2))
        data_days = (None if t.data_access_expires_at is None
                     else round((t.data_access_expires_at - now) / timedelta(days=1), 2))
        return {
            "status": t.status,
            "expires_at": t.expires_at.isoformat() if t.expires_at else ("never" if t.never_expires else None),
            "days_left": days_left,
            "never_expires": t.never_expires,
            "data_access_expires_at": t.data_access_expires_at.isoformat() if t.data_access_expires_at else None,
            "data_access_days_left": data_days,
            "scopes": sorted(t.scopes or []),
            "missing_scopes": missing_scopes(t.scopes) if t.status in ("valid", "refresh_failed") else [],
            "exchanged": self.exchanged,
            "refresh_error": self.refresh_error,
            "refresh_count": t.refresh_count,
            "checked_at": now.isoformat(),
        }


def maintain(store: TokenStore, auth: MetaAuth, now: datetime, env_value: str | None = None) -> Outcome:
    """One pass of the token job: inspect, exchange when due and possible, record. Under the row lock."""
    api = api_origin(auth.graph_url)  # the token store hands out only this API's token
    store.seed_from_environment(TOKEN_PLATFORM, TOKEN_SCOPE, env_value, api=api)
    with store.locked(TOKEN_PLATFORM, TOKEN_SCOPE, api) as (token, save):
        if not token.access_token:
            token = replace(token, status="invalid", last_checked_at=now,
                            last_error=f"no Meta access token stored: run `{RECOVERY_COMMAND}`")
            save(token)
            return Outcome(token)
        try:
            info = auth.debug(token.access_token)
        except ApiError as error:
            if error.kind is not ErrorKind.AUTH or auth.can_exchange:
                raise  # not a verdict on the token (network, app credentials): the run fails, nothing recorded
            # inspected with the token itself, which Meta refused: that is the verdict
            info = Inspection(False, None, None, [], None, error=error.message, error_subcode=_int(error.subcode))
        token = apply_inspection(token, info, now)
        outcome = Outcome(token)
        due = (token.status == "valid" and not token.never_expires and token.expires_at is not None
               and token.expires_at - now < T.META_TOKEN_LIFETIME.warn)
        if due and not auth.can_exchange:
            outcome.notes.append("refresh due but no app id/secret configured: exchange manually")
        elif due:
            attempt = replace(token, last_refresh_attempt_at=now)
            try:
                new = auth.exchange(token.access_token)
                fresh = auth.debug(new)
                token = replace(apply_inspection(attempt, fresh, now), access_token=new, last_refreshed_at=now,
                                last_refresh_succeeded=True, refresh_count=token.refresh_count + 1)
                outcome.exchanged = True
            except ApiError as error:
                # still valid: keep using it, and say so (WARN from the refresh-attempt check)
                outcome.refresh_error = error.message
                token = replace(attempt, status="refresh_failed", last_refresh_succeeded=False,
                                last_error=f"refresh failed, still using the current token: {error.message}")
        outcome.token = token
        save(token)
        return outcome


def exchange_and_store(store: TokenStore, auth: MetaAuth, short_lived: str, now: datetime,
                       env_value: str | None = None) -> Token:
    """The manual recovery path: exchange a new short-lived token, store it, verify it with /debug_token."""
    register_secret(short_lived)
    new = auth.exchange(short_lived)
    info = auth.debug(new)
    with store.locked(TOKEN_PLATFORM, TOKEN_SCOPE, api_origin(auth.graph_url)) as (token, save):
        fingerprint = token.env_fingerprint
        if env_value and not fingerprint:  # the environment's (old) token must not override this one
            fingerprint = store.keyring.fingerprint(env_value)
        token = replace(apply_inspection(token, info, now), access_token=new, env_fingerprint=fingerprint,
                        last_refreshed_at=now, last_refresh_attempt_at=now, last_refresh_succeeded=True,
                        refresh_count=token.refresh_count + 1)
        save(token)
    return token


# -- Dagster: the asset, its job and schedule, its checks ------------------------------------------------------

def _scopes_check(clock: Callable[[], datetime], api: Callable[[], str]) -> dg.AssetChecksDefinition:
    def evaluate(conn, now) -> Evaluation:
        token = next((t for t in token_states(conn, TOKEN_PLATFORM, api()) if t.scope == TOKEN_SCOPE), None)
        if token is None or token.scopes is None:
            return Evaluation(None, "meta token (default): scopes not inspected yet")
        lacking = missing_scopes(token.scopes)
        meta = {"scopes": sorted(token.scopes), "missing_scopes": lacking}
        if not lacking:
            return Evaluation(None, "meta token (default): has the required permissions", meta)
        severity = "ERROR" if any("ads_" in m for m in lacking) else "WARN"
        return Evaluation(severity, f"meta token (default): missing permissions {', '.join(lacking)}: grant them "
                                    f"and exchange a new token (`{RECOVERY_COMMAND}`)", meta)

    return build_check(ACCESS_TOKEN, "token_scopes", "ERROR when the token lacks ads_read/ads_management, WARN "
                       "when it lacks business_management (named).", evaluate, clock=clock, scheduled=True)


def build_token_defs(config: SourcesConfig, *, clock: Callable[[], datetime] = pipeline_clock.now):
    """(asset, job, schedule, checks) of the token lifecycle."""
    meta_config = config.meta

    @dg.asset(key=ACCESS_TOKEN, group_name="meta", kinds={"meta", "python", "postgres"}, owners=[OWNER],
              code_version="1", description=(
                  "The Meta access token's health, every 30 minutes: inspected with debug_token, exchanged for a "
                  "new 60-day token when fewer than 14 days are left, recorded in ops.platform_tokens (never the "
                  "token itself). Standalone: refreshing it never re-runs the data assets."))
    def access_token(context: dg.AssetExecutionContext, meta: MetaResource,
                     warehouse: WarehouseResource) -> dg.MaterializeResult:
        auth = MetaAuth(meta.base_url(), dg.EnvVar(meta_config.app_id_env).get_value(),
                        dg.EnvVar(meta_config.app_secret_env).get_value(),
                        retry=RetryPolicy(max_attempts=meta.retry_attempts, base_delay=meta.retry_base_delay,
                                          max_total_seconds=120))
        now = pipeline_clock.now()
        outcome = maintain(warehouse.token_store(), auth, now, dg.EnvVar(meta.access_token_env).get_value())
        token = outcome.token
        if token.status in ("expired", "invalid"):
            context.log.error(token.last_error or f"Meta token {token.status}")
        elif outcome.refresh_error:
            context.log.warning(token.last_error)
        elif token.last_error:
            context.log.warning(token.last_error)
        for note in outcome.notes:
            context.log.warning(note)
        if outcome.exchanged:
            context.log.info("Meta token exchanged for a new long-lived token")
        return dg.MaterializeResult(metadata=outcome.metadata(now))

    job = dg.define_asset_job("meta_token_job", selection=dg.AssetSelection.assets(ACCESS_TOKEN),
                              description="Inspect and refresh the Meta access token (and run its checks).",
                              tags=URGENT_RUN_TAGS, executor_def=LIGHT_EXECUTOR)
    schedule = dg.ScheduleDefinition(
        name="meta_token", job=job, cron_schedule=config.cadences.meta_token,
        execution_timezone=config.reporting_timezone, default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"The Meta token job ({config.cadences.meta_token}); it runs even when nothing needs exchanging.")
    api = MetaResource(api_version=meta_config.api_version).api  # read when a check runs: the API in use now
    checks = [*meta_style_token_checks(ACCESS_TOKEN, platform=TOKEN_PLATFORM, scope=TOKEN_SCOPE, api=api, clock=clock),
              _scopes_check(clock, api)]
    return access_token, job, schedule, checks
