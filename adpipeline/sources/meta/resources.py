"""The Meta resource: where the Graph API is and which token to use."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from adpipeline.http import ApiError, ErrorKind, RetryPolicy, redact
from adpipeline.sources.meta.client import MetaClient
from adpipeline.warehouse.resource import WarehouseResource
from adpipeline.warehouse.tokens import api_origin

GRAPH_URL_ENV = "META_GRAPH_URL"
TOKEN_PLATFORM, TOKEN_SCOPE = "meta", "default"


class MetaResource(dg.ConfigurableResource):
    """Meta Marketing API access for the `meta/*` assets.

    The token is read at run time from the environment variable NAMED by `access_token_env` (never from
    config or code) and goes through the token store: the environment value seeds it, after which the
    store's newer token (refreshed by the token job) wins until the environment value changes.
    """

    api_version: str = "v24.0"
    graph_url: str | None = None  # default: $META_GRAPH_URL, else https://graph.facebook.com/{api_version}
    access_token_env: str = "META_ACCESS_TOKEN"
    page_limit: int = 1000
    slow_down_at: float = 75.0  # usage percent above which calls are spaced out
    max_wait_seconds: float = 600.0  # per call; an account throttled for longer fails for this run
    retry_attempts: int = 5
    window_days: int = 7  # insights days fetched as one time_range and committed together, per account
    concurrency: int = 4  # Graph calls in flight at once for this API (insights opens twice as many windows)
    concurrency_per_account: int = 2  # insights windows (so calls) at once for one ad account
    retry_base_delay: float = 1.0

    def base_url(self) -> str:
        return (self.graph_url or os.environ.get(GRAPH_URL_ENV)
                or f"https://graph.facebook.com/{self.api_version}").rstrip("/")

    def api(self) -> str:
        """The API the token belongs to: the store hands out a token only for the host that issued it."""
        return api_origin(self.base_url())

    def access_token(self, warehouse: WarehouseResource) -> str:
        env_value = dg.EnvVar(self.access_token_env).get_value()
        token = warehouse.token_store().seed_from_environment(TOKEN_PLATFORM, TOKEN_SCOPE, env_value, api=self.api())
        if token is None or not token.access_token:
            raise ApiError(ErrorKind.AUTH, f"no Meta access token for {self.api()}: set {self.access_token_env} (or "
                           "store one with `adpipeline tokens exchange meta -`)", source="meta")
        if token.status in ("expired", "invalid"):
            raise ApiError(ErrorKind.AUTH, f"Meta token {token.status}: manual re-authentication required.",
                           source="meta")
        return token.access_token

    def client(self, warehouse: WarehouseResource, **overrides: Any) -> MetaClient:
        options: dict[str, Any] = {
            "page_limit": self.page_limit,
            "slow_down_at": self.slow_down_at,
            "max_in_flight": self.concurrency,
            "retry": RetryPolicy(max_attempts=self.retry_attempts, base_delay=self.retry_base_delay,
                                 max_total_seconds=self.max_wait_seconds),
            **overrides,
        }
        token = self.access_token(warehouse)
        client = MetaClient(self.base_url(), token, **options)
        client.on_auth_rejected = lambda error: self.rejected(warehouse, token, error)
        return client

    def rejected(self, warehouse: WarehouseResource, token: str, error: ApiError) -> None:
        """Meta refused the token (190, 102...): the store says so at once, so `adpipeline tokens status`,
        the token checks and their alerts agree with the failing run (not only after the next token job)."""
        status = "expired" if str(error.subcode) == "463" else "invalid"
        warehouse.token_store().mark_rejected(TOKEN_PLATFORM, TOKEN_SCOPE, token, status=status, api=self.api(),
                                              error=f"rejected by the Graph API (code {error.code}, subcode "
                                                    f"{error.subcode}): {redact(error.message)}")
