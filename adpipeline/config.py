"""The sources config (`adpipeline.yaml`): parsed and validated into typed objects.

This is the one file read when the Dagster definitions load. It names scopes (ad accounts,
regions, properties), their time zones and currencies, and the NAMES of environment variables that
hold secrets; secrets themselves are only ever read from the environment at run time.
"""

from __future__ import annotations

import os
import re
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from dagster._utils.schedules import is_valid_cron_string
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIG_ENV = "ADPIPELINE_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "adpipeline.yaml"


class ConfigError(ValueError):
    """The sources config is missing or invalid; the message names the file and the bad key."""


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as America/Jamaica)") from exc
    return value


def _currency(value: str) -> str:
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ValueError(f"currency must be a 3-letter ISO 4217 code, got {value!r}")
    return value


def _env_name(value: str) -> str:
    if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
        raise ValueError(f"{value!r} is not an environment variable NAME (secrets never go in this file)")
    return value


def _cron(value: str) -> str:
    if not is_valid_cron_string(value):
        raise ValueError(f"invalid cron expression {value!r}")
    return value


TimeZone = Annotated[str, AfterValidator(_time_zone)]
Currency = Annotated[str, AfterValidator(_currency)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Cron = Annotated[str, AfterValidator(_cron)]


def _require_unique(values: list, where: str, key: str) -> None:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {key} {value!r} in {where}")
        seen.add(value)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Meta reports the same purchases under overlapping action types; which ones depends on the account's setup.
# The first type present in a row is its conversions (never a sum). omni_purchase is what Ads Manager shows
# as "Purchases"; an account with only the web pixel reports offsite_conversion.fb_pixel_purchase alone.
DEFAULT_PURCHASE_ACTION_TYPES = (
    "omni_purchase", "purchase", "offsite_conversion.fb_pixel_purchase", "onsite_web_purchase",
    "onsite_web_app_purchase", "app_custom_event.fb_mobile_purchase",
)


def _action_types(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("list at least one action type")
    _require_unique(value, "purchase_action_types", "action type")
    return value


ActionTypes = Annotated[list[str], AfterValidator(_action_types)]


class MetaAccount(_Model):
    id: Annotated[str, Field(pattern=r"^act_\d+$")]
    name: str
    timezone: TimeZone
    currency: Currency
    purchase_action_types: ActionTypes | None = None  # None: meta.purchase_action_types


class MetaConfig(_Model):
    api_version: Annotated[str, Field(pattern=r"^v\d+\.\d+$")] = "v24.0"
    access_token_env: EnvName = "META_ACCESS_TOKEN"
    app_id_env: EnvName = "META_APP_ID"
    app_secret_env: EnvName = "META_APP_SECRET"
    attribution_window_days: Annotated[int, Field(ge=1, le=28)] = 28
    # the first day partition (backfills start here); Meta serves insights for the last 37 months
    history_start: date = date(2025, 1, 1)
    purchase_action_types: ActionTypes = list(DEFAULT_PURCHASE_ACTION_TYPES)  # ordered: the first present wins
    accounts: list[MetaAccount] = []

    @model_validator(mode="after")
    def _unique_ids(self) -> MetaConfig:
        _require_unique([a.id for a in self.accounts], "meta.accounts", "id")
        return self

    def purchase_types(self, account: MetaAccount) -> tuple[str, ...]:
        """The account's ordered preference of purchase action types (its own list, else the default)."""
        return tuple(account.purchase_action_types or self.purchase_action_types)


class BreezewayRegion(_Model):
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    company_id: int
    timezone: TimeZone
    currency: Currency = "USD"
    client_id_env: EnvName | None = None
    client_secret_env: EnvName | None = None

    @property
    def client_id_var(self) -> str:
        return self.client_id_env or f"BREEZEWAY_{self.code.upper()}_CLIENT_ID"

    @property
    def client_secret_var(self) -> str:
        return self.client_secret_env or f"BREEZEWAY_{self.code.upper()}_CLIENT_SECRET"


class BreezewayConfig(_Model):
    regions: list[BreezewayRegion] = []

    @model_validator(mode="after")
    def _unique_codes(self) -> BreezewayConfig:
        _require_unique([r.code for r in self.regions], "breezeway.regions", "code")
        return self


class Ga4Property(_Model):
    id: Annotated[str, Field(pattern=r"^\d+$")]
    name: str
    timezone: TimeZone
    currency: Currency


# GA4 metricHeaders types (each maps to a Postgres column type in sources/ga4/reports.py)
Ga4MetricType = Literal[
    "TYPE_INTEGER", "TYPE_FLOAT", "TYPE_SECONDS", "TYPE_MILLISECONDS", "TYPE_MINUTES", "TYPE_HOURS",
    "TYPE_STANDARD", "TYPE_CURRENCY", "TYPE_FEET", "TYPE_MILES", "TYPE_METERS", "TYPE_KILOMETERS",
]
Column = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class Ga4Dimension(_Model):
    name: str  # the GA4 API name
    column: Column | None = None  # default: the name in snake_case


class Ga4Metric(_Model):
    name: str  # the GA4 API name
    type: Ga4MetricType  # the type GA4 reports for it in metricHeaders (a mismatch fails the pull)
    column: Column | None = None


class Ga4Report(_Model):
    """One report = asset ga4/<name> landing in raw_ga4.<name> (created from this declaration when absent)."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    description: str
    dimensions: list[str | Ga4Dimension]  # besides `date`, which every report has first
    metrics: Annotated[list[Ga4Metric], Field(min_length=1)]


class Ga4Config(_Model):
    credentials_env: EnvName = "GA4_CREDENTIALS"
    restatement_days: Annotated[int, Field(ge=0, le=30)] = 3
    history_start: date = date(2026, 1, 1)  # the first day partition (backfills start here)
    reports: list[Ga4Report] | None = None  # None: the built-in reports (sources/ga4/reports.py)
    # the properties' quota (standard: 200,000 tokens a day, 40,000 an hour; GA360: 2,000,000 and 400,000):
    # propertyQuota reports what a request consumed and what remains, so the share left needs the limit
    tokens_per_day: Annotated[int, Field(ge=1)] = 200_000
    tokens_per_hour: Annotated[int, Field(ge=1)] = 40_000
    properties: list[Ga4Property] = []

    @model_validator(mode="after")
    def _unique_ids(self) -> Ga4Config:
        _require_unique([p.id for p in self.properties], "ga4.properties", "id")
        _require_unique([r.name for r in self.reports or ()], "ga4.reports", "name")
        return self


class Cadences(_Model):
    meta_hourly: Cron = "0 6-22 * * *"
    meta_restatement: Cron = "15 2 * * *"
    meta_token: Cron = "*/30 * * * *"
    breezeway_reservations: Cron = "0 * * * *"
    breezeway_daily: Cron = "30 4 * * *"
    ga4: Cron = "0 */4 * * *"


class AlertSink(_Model):
    """One route: where alerts of these severities (and sources) go. Secrets (webhook URLs, which carry a
    token in their path; SMTP passwords) are named by environment variable, never written here."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    type: Literal["slack", "webhook", "email"]
    severities: list[Literal["critical", "warning"]] = ["critical", "warning"]
    sources: list[str] = []  # empty: every source (meta, breezeway, ga4, and signals without one)
    url_env: EnvName | None = None  # slack, webhook
    routing_key_env: EnvName | None = None  # webhook: a PagerDuty Events v2 integration key
    smtp_host: str | None = None  # email
    smtp_port: int = 587
    starttls: bool = True
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    sender: str | None = None
    recipients: list[str] = []

    @model_validator(mode="after")
    def _complete(self) -> AlertSink:
        if self.type in ("slack", "webhook") and not self.url_env:
            raise ValueError(f"alert sink {self.name!r}: a {self.type} sink needs url_env")
        if self.type == "email" and not (self.smtp_host and self.sender and self.recipients):
            raise ValueError(f"alert sink {self.name!r}: an email sink needs smtp_host, sender and recipients")
        if self.type == "email" and bool(self.username_env) != bool(self.password_env):
            raise ValueError(f"alert sink {self.name!r}: give both username_env and password_env, or neither")
        return self

    def routes(self, severity: str, source: str | None) -> bool:
        return severity in self.severities and (not self.sources or source in self.sources)


class AlertsConfig(_Model):
    """Routing and pacing of alert messages. ops.alerts and the log always receive every alert."""

    ui_base_url: str = "http://localhost:3000"  # links in messages point at this Dagster UI
    # where docs/runbooks/ is served (e.g. the repo's page on your Git host): the UI links each check there;
    # unset, the links are file URLs of this checkout, which work only where the code location runs
    runbook_base_url: str | None = None
    renotify_critical_minutes: Annotated[int, Field(ge=1)] = 240  # an open critical alert is repeated this often
    summary_after: Annotated[int, Field(ge=1)] = 5  # more messages than this due at once for a sink: one summary
    sinks: list[AlertSink] = []

    @model_validator(mode="after")
    def _unique_names(self) -> AlertsConfig:
        _require_unique([s.name for s in self.sinks], "alerts.sinks", "name")
        return self


class SourcesConfig(_Model):
    reporting_timezone: TimeZone = "America/Jamaica"
    meta: MetaConfig = Field(default_factory=MetaConfig)
    breezeway: BreezewayConfig = Field(default_factory=BreezewayConfig)
    ga4: Ga4Config = Field(default_factory=Ga4Config)
    cadences: Cadences = Field(default_factory=Cadences)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)


def _describe(error: dict) -> str:
    location = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key"
    if error["type"] == "string_pattern_mismatch":  # name the value: a stray quote is hard to spot otherwise
        return f"{location}: {error['input']!r} is not allowed (it must match {error['ctx']['pattern']})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def parse_config(text: str, source: str = "<string>") -> SourcesConfig:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        return SourcesConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None


def load_config(path: str | os.PathLike | None = None) -> SourcesConfig:
    path = Path(path) if path else config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"sources config not found: {path} (set {CONFIG_ENV} to its path)") from None
    return parse_config(text, str(path))


@lru_cache(maxsize=1)
def get_config() -> SourcesConfig:
    """The config for this process, read once (definitions load calls this)."""
    return load_config()
