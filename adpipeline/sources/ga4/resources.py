"""The Dagster resource that gives GA4 assets an API client."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import Field

from adpipeline.sources.ga4.auth import Ga4Auth, load_credentials_info
from adpipeline.sources.ga4.client import DEFAULT_BASE_URL, MAX_PAGE_SIZE, Ga4Client, QuotaPolicy
from adpipeline.warehouse.tokens import TokenStore, api_origin

API_URL_ENV = "GA4_DATA_API_URL"


def default_api_url() -> str:
    return os.environ.get(API_URL_ENV) or DEFAULT_BASE_URL


class Ga4Resource(dg.ConfigurableResource):
    """GA4 Data API access. `credentials` is a service-account or authorized-user JSON, inline or a path
    (set it from the environment: `EnvVar("GA4_CREDENTIALS")`); `base_url` unset -> GA4_DATA_API_URL,
    else Google's API."""

    credentials: str
    credentials_name: str = "GA4_CREDENTIALS"  # the token-store scope and what error messages tell you to fix
    base_url: str | None = None
    page_size: int = Field(default=100_000, ge=1, le=MAX_PAGE_SIZE)
    max_quota_wait_seconds: float = Field(default=QuotaPolicy().max_wait, ge=0)
    # the property's quota limits (propertyQuota reports consumption and what is left, not the limit)
    tokens_per_day: int = Field(default=QuotaPolicy().tokens_per_day, ge=1)
    tokens_per_hour: int = Field(default=QuotaPolicy().tokens_per_hour, ge=1)

    def api_url(self) -> str:
        return self.base_url or default_api_url()

    def client(self, token_store: TokenStore | None = None, **overrides: Any) -> Ga4Client:
        """A client for one run. Its token comes from (and goes to) `token_store` when given."""
        info = load_credentials_info(self.credentials, self.credentials_name)
        auth = Ga4Auth(info, name=self.credentials_name, store=token_store, api=api_origin(self.api_url()))
        overrides.setdefault("quota", QuotaPolicy(max_wait=self.max_quota_wait_seconds,
                                                  tokens_per_day=self.tokens_per_day,
                                                  tokens_per_hour=self.tokens_per_hour))
        return Ga4Client(self.api_url(), auth=auth, **overrides)
